//! The microVM's network through the qemu engine (TCG here, so one boot per case): the test
//! makes two network namespaces joined by a veth pair (the "sandbox" one, as an engine would give
//! it, and a "peer" one), gives the sandbox's path in the spec, and checks
//! - a server in the guest (busybox httpd) answers a client in the peer namespace, at the
//!   address the sandbox's veth had;
//! - a client in the guest reaches a server in the peer namespace over IPv4 and IPv6;
//! - the guest cannot reach the host's loopback (a listener on the host's 127.0.0.1 sees nothing);
//! - the VM process runs in the sandbox's namespace, and delete gives the veth back its
//!   addresses and routes with no tap left; so does a create that fails after the plumbing.
//!
//! Traffic stays inside the test's namespaces and loopback. Needs what qemu_boot.rs needs, plus
//! iproute2 and a guest kernel built with networking (kernels/config-fragment).

mod common;

use common::qemu::{build_agent, create_captured, read_all, skip_reason, wait, Env};
use hako_contract::{Backend, Sandbox};
use hako_microvm::MicrovmBackend;
use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Root and iproute2: what making namespaces needs.
fn ip_skip_reason() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if Command::new("ip").arg("-V").output().is_err()
        || Command::new("tc").arg("-V").output().is_err()
    {
        return Some("iproute2 (ip, tc) is not installed".into());
    }
    None
}

fn net_skip_reason() -> Option<String> {
    if let Some(r) = ip_skip_reason().or_else(skip_reason) {
        return Some(r);
    }
    let k = std::fs::canonicalize(hako_microvm::assets::default_kernel()).ok()?;
    let cfg = std::fs::read_to_string(format!("{}.config", k.display())).unwrap_or_default();
    if !cfg.lines().any(|l| l == "CONFIG_VIRTIO_NET=y") {
        return Some(format!(
            "the guest kernel {} has no virtio-net (rebuild it with kernels/build.sh)",
            k.display()
        ));
    }
    None
}

/// Two named network namespaces joined by a veth pair; removed on drop.
struct Netns {
    sb: String,
    peer: String,
}

const SB_V4: &str = "10.231.7.2";
const PEER_V4: &str = "10.231.7.1";
const SB_V6: &str = "fd00:231:7::2";
const PEER_V6: &str = "fd00:231:7::1";

impl Netns {
    fn new(tag: &str) -> Netns {
        let id = format!("hk{}{tag}", std::process::id());
        let n = Netns {
            sb: format!("{id}-sb"),
            peer: format!("{id}-peer"),
        };
        ip(&["netns", "add", &n.sb]);
        ip(&["netns", "add", &n.peer]);
        let (a, b) = (format!("{id}a"), format!("{id}b"));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &a, "netns", &n.sb, "name", "eth0"]);
        ip(&["link", "set", &b, "netns", &n.peer, "name", "eth0"]);
        for (ns, v4, v6) in [(&n.sb, SB_V4, SB_V6), (&n.peer, PEER_V4, PEER_V6)] {
            let x = |args: &[&str]| {
                let mut v = vec!["-n", ns.as_str()];
                v.extend_from_slice(args);
                ip(&v);
            };
            x(&["link", "set", "lo", "up"]);
            x(&["link", "set", "eth0", "mtu", "1400", "up"]);
            x(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
            x(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
        }
        // A route the guest must get: the default through the peer.
        ip(&["-n", &n.sb, "route", "add", "default", "via", PEER_V4]);
        n
    }

    fn sb_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.sb)
    }

    /// `ip -n sb ...`
    fn sb(&self, args: &[&str]) -> String {
        let mut v = vec!["-n", self.sb.as_str()];
        v.extend_from_slice(args);
        ip(&v)
    }

    fn in_peer(&self, prog: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.peer]).args(prog);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in [&self.sb, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The guest's server, from the peer namespace, at the address the veth had (None when it never
/// answers while the sandbox lives).
fn served_to_peer(n: &Netns, pid: i32) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = n
            .in_peer(&[
                "timeout",
                "5",
                "busybox",
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://{SB_V4}:8080/index.html"),
            ])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        if o.status.success() {
            return Some(String::from_utf8_lossy(&o.stdout).into_owned());
        }
        if Instant::now() > deadline || !hako_contract::proc::is_alive(pid, None) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The MAC of the sandbox namespace's veth.
fn veth_mac(n: &Netns) -> String {
    let link = n.sb(&["-o", "link", "show", "dev", "eth0"]);
    link.split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string()
}

fn with_netns(spec: &mut oci_spec::runtime::Spec, path: &Path) {
    let mut linux = spec.linux().clone().unwrap();
    let mut nss: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Network)
        .collect();
    nss.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(path)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(nss));
    spec.set_linux(Some(linux));
}

/// What the sandbox's veth looks like as an engine left it: addresses and routes.
fn veth_state(n: &Netns) -> (String, String) {
    let a = n.sb(&["-o", "addr", "show", "dev", "eth0", "scope", "global"]);
    let addrs: Vec<&str> = a
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    let r = n.sb(&["route", "show", "dev", "eth0"]);
    (addrs.join(" "), r.trim().to_string())
}

fn assert_given_back(n: &Netns, before: &(String, String)) {
    assert_eq!(
        &veth_state(n),
        before,
        "the veth got its addresses and routes back"
    );
    let links = n.sb(&["-o", "link", "show"]);
    assert!(!links.contains("hako-tap"), "a tap was left: {links}");
    let q = Command::new("tc")
        .args(["-n", &n.sb, "qdisc", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let q = String::from_utf8_lossy(&q.stdout);
    assert!(!q.contains("ingress"), "the tc ingress qdisc was left: {q}");
}

/// The cases that boot a guest, one after the other: `create_captured` swaps the process's
/// stdout and stderr, so two at once would take each other's.
#[test]
fn guests_with_a_network() {
    guest_serves_and_reaches_the_peer_namespace_but_not_host_loopback();
    sandboxes_with_a_network_restore_from_a_template_with_their_own_macs();
}

fn guest_serves_and_reaches_the_peer_namespace_but_not_host_loopback() {
    if let Some(why) = net_skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    build_agent();
    let env = Env::new("net");
    let rootfs = env.dir.join("bundle/rootfs");
    // (busybox wget's own -T crashes in Debian's busybox-static: timeout(1) instead.)
    for c in ["wget", "httpd", "timeout", "ip"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(c)).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::write(rootfs.join("www/index.html"), "served from the guest\n").unwrap();
    let peer_dir = env.dir.join("peer-www");
    std::fs::create_dir_all(&peer_dir).unwrap();
    std::fs::write(peer_dir.join("p.txt"), "peer says hi\n").unwrap();

    let n = Netns::new("a");
    let before = veth_state(&n);
    let before_mac = veth_mac(&n);
    assert!(
        before.0.contains(SB_V4) && before.1.contains("default via"),
        "{before:?}"
    );
    let _peer_server = Killed(
        n.in_peer(&[
            "busybox",
            "httpd",
            "-f",
            "-p",
            "8081",
            "-h",
            &peer_dir.to_string_lossy(),
        ])
        .spawn()
        .unwrap(),
    );
    // A listener on the host's loopback: the guest must not reach it.
    let host_lo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host_lo.set_nonblocking(true).unwrap();
    let lo_port = host_lo.local_addr().unwrap().port();

    let script = format!(
        "ip -4 route show default; ip -o link show eth0; \
         timeout 30 wget -q -O - http://{PEER_V4}:8081/p.txt; echo v4=$?; \
         timeout 30 wget -q -O - 'http://[{PEER_V6}]:8081/p.txt'; echo v6=$?; \
         timeout 5 wget -q -O - http://127.0.0.1:{lo_port}/ >/dev/null 2>&1; echo lo=$?; \
         exec httpd -f -p 8080 -h /www"
    );
    let mut spec = env.spec(
        &["/bin/sh", "-c", &script],
        &[(hako_microvm::knobs::VMM, "qemu")],
    );
    with_netns(&mut spec, &n.sb_path());
    let b = MicrovmBackend::new();
    b.check(&spec, &env.bundle).unwrap();
    let (state, fifo) = env.sandbox_dir("n1");
    let req = env.request("n1", &spec, &state, &fifo);
    let (res, out, err) = create_captured(&b, &req);
    let created = res.unwrap();
    // While the sandbox exists its veth has no address of its own and the VM is in its namespace.
    assert_eq!(veth_state(&n).0, "", "the guest owns the addresses");
    let vm = std::fs::read_to_string(state.join("microvm-vm.pid")).unwrap();
    let vm_pid: i32 = vm.split_whitespace().next().unwrap().parse().unwrap();
    let vm_ns = std::fs::metadata(format!("/proc/{vm_pid}/ns/net"))
        .unwrap()
        .ino();
    assert_eq!(
        vm_ns,
        std::fs::metadata(n.sb_path()).unwrap().ino(),
        "the VM runs in the sandbox's namespace"
    );
    hako_contract::start_gate::release(&fifo, || hako_contract::proc::is_alive(created.pid, None))
        .unwrap();

    let served = served_to_peer(&n, created.pid);

    let sb = Sandbox {
        id: "n1",
        bundle: &env.bundle,
        spec: &spec,
        state_dir: &state,
        pid: created.pid,
        alive: true,
        data: &created.data,
        global: &env.global,
    };
    b.kill(&sb, libc::SIGKILL, false).unwrap();
    wait(created.pid);
    let (out, err) = (read_all(out), read_all(err));
    let console = std::fs::read_to_string(state.join("microvm-console.log")).unwrap_or_default();
    assert_eq!(
        served.as_deref(),
        Some("served from the guest\n"),
        "the guest's server never answered; stdout {out:?} stderr {err:?} console {console}"
    );
    assert!(
        out.contains("peer says hi\nv4=0\n") && out.contains("peer says hi\nv6=0\n"),
        "the guest's client: {out:?} {err:?}"
    );
    // The veth's default route and MTU, and its MAC on the guest's interface.
    assert!(
        out.starts_with(&format!("default via {PEER_V4} dev eth0")),
        "{out:?}"
    );
    let mac = &before_mac;
    assert!(
        out.contains("mtu 1400 ") && out.contains(&format!("link/ether {mac} ")),
        "{out:?}"
    );
    assert!(
        out.contains("lo=") && !out.contains("lo=0\n"),
        "the guest reached 127.0.0.1: {out:?}"
    );
    assert!(
        host_lo.accept().is_err(),
        "the host's loopback listener got a connection"
    );
    let sb = Sandbox { alive: false, ..sb };
    b.delete(&sb).unwrap();
    assert_given_back(&n, &before);

    // A create that fails after the plumbing (no such program) gives everything back too.
    let mut spec = env.spec(
        &["/bin/no-such-program"],
        &[(hako_microvm::knobs::VMM, "qemu")],
    );
    with_netns(&mut spec, &n.sb_path());
    let (state, fifo) = env.sandbox_dir("n2");
    let req = env.request("n2", &spec, &state, &fifo);
    let (res, _o, _e) = create_captured(&b, &req);
    let e = format!("{:#}", res.unwrap_err());
    assert!(e.contains("/bin/no-such-program"), "{e}");
    assert_given_back(&n, &before);
    drop(n);
    std::fs::remove_dir_all(&env.dir).unwrap();
}

#[test]
fn a_namespace_without_a_veth_is_refused_with_nothing_changed() {
    if let Some(why) = ip_skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let name = format!("hk{}-empty", std::process::id());
    ip(&["netns", "add", &name]);
    let path = Path::new("/run/netns").join(&name);
    let e = format!("{:#}", hako_microvm::net::plumb(&path).unwrap_err());
    let links = ip(&["-n", &name, "-o", "link", "show"]);
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    assert!(e.contains("no interface but lo"), "{e}");
    assert!(!links.contains("hako-tap"), "{links}");
    // Not a network namespace at all.
    let e = format!(
        "{:#}",
        hako_microvm::net::plumb(Path::new("/proc/self/ns/uts")).unwrap_err()
    );
    assert!(e.contains("is not a network namespace"), "{e}");
    // The caller's own (here the host's) network namespace: its interface is never taken.
    let e = format!(
        "{:#}",
        hako_microvm::net::plumb(Path::new("/proc/self/ns/net")).unwrap_err()
    );
    assert!(e.contains("is the host's network namespace"), "{e}");
}

/// Snapshot boot with a network: two sandboxes, each in its own namespace, restore from one
/// template that has a virtio-net device (made on a placeholder tap in a namespace of its own,
/// which goes away with it); each guest's interface gets its veth's MAC and serves at its
/// veth's address.
fn sandboxes_with_a_network_restore_from_a_template_with_their_own_macs() {
    if let Some(why) = net_skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    build_agent();
    let env = Env::new("netsnap");
    let rootfs = env.dir.join("bundle/rootfs");
    for c in ["httpd", "ip"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(c)).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::write(rootfs.join("www/index.html"), "served from the guest\n").unwrap();
    let nets = [Netns::new("s1"), Netns::new("s2")];
    let b = MicrovmBackend::new();
    let mut macs = vec![];
    for (i, n) in nets.iter().enumerate() {
        let before = veth_state(n);
        let mac = veth_mac(n);
        let id = format!("ns{i}");
        let mut spec = env.spec(
            &[
                "/bin/sh",
                "-c",
                "ip -o link show eth0; exec httpd -f -p 8080 -h /www",
            ],
            &[(hako_microvm::knobs::VMM, "qemu")],
        );
        with_netns(&mut spec, &n.sb_path());
        let (state, fifo) = env.sandbox_dir(&id);
        let req = env.request(&id, &spec, &state, &fifo);
        let (res, out, err) = create_captured(&b, &req);
        let created = res.unwrap_or_else(|e| panic!("create {id}: {e:#}"));
        hako_contract::start_gate::release(&fifo, || {
            hako_contract::proc::is_alive(created.pid, None)
        })
        .unwrap();
        let served = served_to_peer(n, created.pid);
        let sb = Sandbox {
            id: &id,
            bundle: &env.bundle,
            spec: &spec,
            state_dir: &state,
            pid: created.pid,
            alive: true,
            data: &created.data,
            global: &env.global,
        };
        b.kill(&sb, libc::SIGKILL, false).unwrap();
        wait(created.pid);
        let (out, err) = (read_all(out), read_all(err));
        let console =
            std::fs::read_to_string(state.join("microvm-console.log")).unwrap_or_default();
        assert_eq!(
            created.data["boot"].as_str(),
            Some("snapshot"),
            "{id}: {:?} stderr {err:?}",
            created.data
        );
        assert_eq!(
            served.as_deref(),
            Some("served from the guest\n"),
            "{id}: the restored guest's server never answered; stdout {out:?} stderr {err:?} console {console}"
        );
        assert!(
            out.contains(&format!("link/ether {mac} ")) && out.contains("mtu 1400 "),
            "{id}: the guest's interface has not its veth's MAC {mac} and MTU: {out:?}"
        );
        let sb = Sandbox { alive: false, ..sb };
        b.delete(&sb).unwrap();
        assert_given_back(n, &before);
        macs.push(mac);
    }
    assert_ne!(macs[0], macs[1], "the two veths' MACs");
    // One template, with the network layout; no tap of it is left on the host.
    let tdir = env.global.root.join(hako_microvm::template::DIR);
    let made: Vec<_> = std::fs::read_dir(&tdir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("manifest.json").exists())
        .map(|e| std::fs::read_to_string(e.path().join("manifest.json")).unwrap())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].contains("virtio-net on a tap"), "{}", made[0]);
    assert!(!ip(&["-o", "link", "show"]).contains(hako_microvm::net::TAP));
    drop(nets);
    std::fs::remove_dir_all(&env.dir).unwrap();
}
