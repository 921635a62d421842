//! The sandbox's network: the engine's veth, handed to the guest.
//!
//! When the spec names a network namespace by path (podman's, or one a caller made with a veth
//! in it), the backend, inside that namespace:
//! 1. finds the veth (the one interface other than `lo`) and records its MAC, MTU, addresses and
//!    routes;
//! 2. makes a tap (not persistent: it goes away with the last fd, so a dead sandbox leaves none);
//! 3. joins veth and tap with a tc ingress qdisc on each and a u32 match-all filter whose action
//!    is `mirred egress redirect` to the other (Kata's "tcfilter" model): every frame the veth
//!    receives leaves through the tap into the guest, and every frame the guest sends leaves
//!    through the veth;
//! 4. flushes the veth's addresses (its routes go with them), so the guest owns them.
//!
//! The guest's virtio-net device gets the veth's MAC, and the agent the addresses and routes
//! ([`NetConfig`]). The VM process itself runs in the namespace, so the engine has no view of the
//! host's network. [`Attached::undo`] puts the veth back (filters removed, addresses and routes
//! restored) on a failed create and on delete.
//!
//! Addresses, routes and tc go through iproute2's `ip` and `tc` (run inside the namespace): the
//! Rust netlink crates (rtnetlink, netlink-packet-route) are async or leave the tc u32 + mirred
//! message layout to the caller, and iproute2 is on every host that runs podman or Kata. The tap
//! is made with the TUNSETIFF ioctl, which has no command-line equivalent for an fd.

use anyhow::{bail, Context, Result};
use hako_agent::proto::{NetConfig, NetRoute};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tap's name inside the sandbox's namespace.
pub const TAP: &str = "hako-tap0";

/// The network namespace path the spec asks the sandbox to join, if any. A network namespace
/// without a path (a new, empty one) and no network namespace at all both mean no network.
pub fn netns_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .and_then(|n| n.path().clone())
}

/// What was changed in the namespace, to undo it (kept in the sandbox's state for `delete`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attached {
    pub netns: PathBuf,
    pub veth: String,
    pub net: NetConfig,
}

/// The live pieces the VM needs: the tap and the namespace, as fds the engine inherits.
#[derive(Debug)]
pub struct Plumbed {
    pub attached: Attached,
    pub tap: OwnedFd,
    pub netns: OwnedFd,
}

fn open_netns(path: &Path) -> Result<OwnedFd> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("opening the network namespace {}", path.display()))?;
    // SAFETY: an ioctl with no argument on our fd.
    let ty = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
    if ty != libc::CLONE_NEWNET {
        bail!("{} is not a network namespace", path.display());
    }
    Ok(f.into())
}

/// `_IO(0xb7, 0x3)` from linux/nsfs.h.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Run `f` on a thread that has joined the namespace `ns` (namespaces are per thread, so the
/// caller's own stays as it was).
fn in_netns<T: Send>(ns: &OwnedFd, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on this thread only; it ends with the scope.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("joining the sandbox's network namespace");
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the network setup thread panicked"))?
    })
}

/// Run an iproute2 command inside the namespace; its stdout.
fn run(ns: RawFd, prog: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    // SAFETY: setns is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {prog} (iproute2 is needed for microvm networking)"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    link_type: String,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    addr_info: Vec<IpAddrEntry>,
}

#[derive(Deserialize)]
struct IpAddrEntry {
    local: String,
    prefixlen: u8,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize)]
struct IpRoute {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
}

/// A route as `ip route` prints it, into ours: kernel routes (made from an address) and
/// link-local ones are left to the guest's kernel.
fn route_of(r: IpRoute) -> Option<NetRoute> {
    if r.protocol.as_deref() == Some("kernel") || r.dst.starts_with("fe80:") {
        return None;
    }
    let dst = match r.dst.as_str() {
        "default" => None,
        d => {
            let (a, l) = match d.split_once('/') {
                Some((a, l)) => (a.to_string(), l.parse().ok()?),
                None => (d.to_string(), if d.contains(':') { 128 } else { 32 }),
            };
            Some((a, l))
        }
    };
    Some(NetRoute {
        dst,
        gateway: r.gateway,
    })
}

/// Find the veth, make the tap, mirror them, and move the addresses to the guest. On any error
/// whatever was done is undone.
pub fn plumb(netns: &Path) -> Result<Plumbed> {
    let ns = open_netns(netns)?;
    // Never the host's own network (or the caller's): its interface would be taken from it.
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let this = id(&PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd())));
    for host in ["/proc/1/ns/net", "/proc/self/ns/net"] {
        if this.is_some() && this == id(Path::new(host)) {
            bail!(
                "{} is the host's network namespace ({host}): a microvm sandbox takes over the namespace's interface, so it must be the engine's own",
                netns.display()
            );
        }
    }
    let fd = ns.as_raw_fd();
    let links: Vec<IpLink> = serde_json::from_str(&run(fd, "ip", &["-j", "link", "show"])?)
        .context("parsing `ip -j link show`")?;
    let candidates: Vec<&IpLink> = links
        .iter()
        .filter(|l| l.ifname != "lo" && l.ifname != TAP)
        .collect();
    let veth = match candidates.as_slice() {
        [one] if one.link_type == "ether" => *one,
        [one] => bail!(
            "the network namespace's interface {} is not an Ethernet link ({})",
            one.ifname,
            one.link_type
        ),
        [] => bail!(
            "the network namespace {} has no interface but lo: nothing to give the guest",
            netns.display()
        ),
        more => bail!(
            "the network namespace {} has {} interfaces besides lo; a microvm guest takes exactly one",
            netns.display(),
            more.len()
        ),
    };
    let name = veth.ifname.clone();
    let addrs: Vec<IpAddrInfo> =
        serde_json::from_str(&run(fd, "ip", &["-j", "addr", "show", "dev", &name])?)
            .context("parsing `ip -j addr show`")?;
    let addrs: Vec<(String, u8)> = addrs
        .into_iter()
        .flat_map(|a| a.addr_info)
        .filter(|a| a.scope != "link" && a.scope != "host")
        .map(|a| (a.local, a.prefixlen))
        .collect();
    let mut routes = vec![];
    for fam in ["-4", "-6"] {
        let rs: Vec<IpRoute> =
            serde_json::from_str(&run(fd, "ip", &["-j", fam, "route", "show", "dev", &name])?)
                .context("parsing `ip -j route show`")?;
        routes.extend(rs.into_iter().filter_map(route_of));
    }
    let attached = Attached {
        netns: netns.to_path_buf(),
        veth: name.clone(),
        net: NetConfig {
            mac: veth.address.clone(),
            mtu: veth.mtu,
            addrs,
            routes,
        },
    };
    let tap = in_netns(&ns, make_tap)?;
    let wire = || -> Result<()> {
        run(
            fd,
            "ip",
            &["link", "set", TAP, "mtu", &veth.mtu.to_string(), "up"],
        )?;
        for (from, to) in [(name.as_str(), TAP), (TAP, name.as_str())] {
            run(fd, "tc", &["qdisc", "add", "dev", from, "ingress"])?;
            run(
                fd,
                "tc",
                &[
                    "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32",
                    "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
                ],
            )?;
        }
        run(fd, "ip", &["addr", "flush", "dev", &name])?;
        Ok(())
    };
    if let Err(e) = wire() {
        drop(tap);
        let _ = attached.undo_in(&ns);
        return Err(e.context(format!("connecting {name} to the guest")));
    }
    Ok(Plumbed {
        attached,
        tap,
        netns: ns,
    })
}

/// A tap in the calling thread's namespace, without packet information headers, with the
/// virtio-net header the device models pass through (offloads negotiated later, if ever).
fn make_tap() -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun")?;
    // struct ifreq: 16 bytes of name, then the flags.
    let mut req = [0u8; 40];
    req[..TAP.len()].copy_from_slice(TAP.as_bytes());
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as u16;
    req[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes an ifreq-sized buffer.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating the tap (TUNSETIFF)");
    }
    Ok(f.into())
}

/// The MAC of a template's placeholder virtio-net device (locally administered). A restored
/// guest's agent gives its interface the sandbox's MAC.
pub const PLACEHOLDER_MAC: &str = "02:68:6b:00:00:01";

/// A template's network: a tap like a sandbox's, in a new network namespace of its own that
/// nothing names (no bind mount). Both go away with the last fd (ours and the template VM's),
/// so a template build leaves no namespace or tap behind.
pub fn placeholder() -> Result<(OwnedFd, OwnedFd)> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(OwnedFd, OwnedFd)> {
            // SAFETY: unshare on this thread only; it ends with the scope.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("a network namespace for the template (unshare)");
            }
            let ns = open_netns(Path::new("/proc/thread-self/ns/net"))?;
            Ok((make_tap()?, ns))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the template network thread panicked"))?
    })
}

/// What a tap offers the engine's virtio-net device, as one line: the tap's flags, the kernel's
/// tun features and each offload the tap accepts (probed with `TUNSETOFFLOAD`, then reset to
/// none, which is how the engine finds it too). A restored device keeps the features it
/// negotiated on the template's tap, so the sandbox's tap must offer the same.
pub fn tap_profile(tap: RawFd) -> Result<String> {
    let mut req = [0u8; 40];
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETIFF fills an ifreq-sized buffer, TUNGETFEATURES an unsigned int.
    unsafe {
        if libc::ioctl(tap, libc::TUNGETIFF, req.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("TUNGETIFF on the tap");
        }
        if libc::ioctl(tap, libc::TUNGETFEATURES, &mut features) != 0 {
            return Err(std::io::Error::last_os_error()).context("TUNGETFEATURES on the tap");
        }
    }
    let flags = u16::from_ne_bytes([req[16], req[17]]);
    let mut offloads = vec![];
    for (name, f) in [
        ("csum", 0),
        ("tso4", libc::TUN_F_TSO4),
        ("tso6", libc::TUN_F_TSO6),
        ("tso-ecn", libc::TUN_F_TSO4 | libc::TUN_F_TSO_ECN),
        ("ufo", libc::TUN_F_UFO),
        ("uso4", libc::TUN_F_USO4),
        ("uso6", libc::TUN_F_USO6),
    ] {
        let want: libc::c_ulong = (libc::TUN_F_CSUM | f).into();
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { libc::ioctl(tap, libc::TUNSETOFFLOAD, want) } == 0 {
            offloads.push(name);
        }
    }
    // SAFETY: as above.
    if unsafe { libc::ioctl(tap, libc::TUNSETOFFLOAD, 0 as libc::c_ulong) } != 0 {
        return Err(std::io::Error::last_os_error()).context("resetting the tap's offloads");
    }
    Ok(format!(
        "tap flags {flags:#x}, tun features {features:#x}, offloads {}",
        offloads.join(",")
    ))
}

impl Attached {
    /// Remove the filters and give the veth back its addresses and routes. The tap goes away by
    /// itself with the VM. A namespace that is gone already (the engine tore it down) has
    /// nothing left to undo.
    pub fn undo(&self) -> Result<()> {
        let ns = match open_netns(&self.netns) {
            Ok(ns) => ns,
            Err(_) if !self.netns.exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.undo_in(&ns)
    }

    fn undo_in(&self, ns: &OwnedFd) -> Result<()> {
        let fd = ns.as_raw_fd();
        let v = self.veth.as_str();
        let links = run(fd, "ip", &["-j", "link", "show", "dev", v]);
        if links.is_err() {
            return Ok(()); // the veth is gone with its peer
        }
        let _ = run(fd, "tc", &["qdisc", "del", "dev", v, "ingress"]);
        let _ = run(fd, "ip", &["link", "del", TAP]);
        let mut errs = vec![];
        for (a, l) in &self.net.addrs {
            let cidr = format!("{a}/{l}");
            if let Err(e) = run(fd, "ip", &["addr", "replace", &cidr, "dev", v]) {
                errs.push(format!("{e:#}"));
            }
        }
        let direct = self.net.routes.iter().filter(|r| r.gateway.is_none());
        let via = self.net.routes.iter().filter(|r| r.gateway.is_some());
        for r in direct.chain(via) {
            let dst = r
                .dst
                .as_ref()
                .map_or("default".to_string(), |(a, l)| format!("{a}/{l}"));
            let mut args = vec!["route", "replace", dst.as_str()];
            if let Some(g) = &r.gateway {
                args.extend(["via", g.as_str()]);
            }
            args.extend(["dev", v]);
            if let Err(e) = run(fd, "ip", &args) {
                errs.push(format!("{e:#}"));
            }
        }
        if !errs.is_empty() {
            bail!("restoring {v}: {}", errs.join("; "));
        }
        Ok(())
    }
}

/// Keep an fd open across exec (it was made close-on-exec). For `pre_exec`.
pub fn inherit(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd number; async-signal-safe.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFD);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
