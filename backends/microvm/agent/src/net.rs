//! The guest's network: `lo` up, and the virtio-net interface the host described (by its MAC)
//! given the veth's MTU, addresses and routes.
//!
//! rtnetlink by hand: three fixed message kinds (link up/MTU, new address, new route) are about
//! a hundred lines over libc, where a netlink crate would add its dependency tree to the guest's
//! static `/init`, which otherwise needs only libc and serde.

use crate::sys::{errno, Res};
use hako_agent::proto::{NetConfig, NetRoute};
use std::fs;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// Kernel uapi values libc does not export for musl.
const IFA_F_NODAD: u8 = 0x02;
const RTPROT_BOOT: u8 = 3;

/// Bring `lo` up: the same in every sandbox, so a template does it before its save.
pub(crate) fn lo_up() -> Res<()> {
    Netlink::open()?.link(ifindex("lo")?, None, None)
}

/// Bring `lo` up (a guest `restored` from a template has it up already: [`lo_up`]); when `net`
/// is given, configure its interface. In a restored guest the interface still has the
/// template's placeholder MAC: it is the one interface besides `lo`, and gets the sandbox's MAC
/// here (the device learns it through its control queue, so it filters frames for the new
/// address).
pub(crate) fn configure(net: Option<&NetConfig>, restored: bool) -> Res<()> {
    if !restored {
        lo_up()?;
    }
    let Some(net) = net else { return Ok(()) };
    let nl = Netlink::open()?;
    let (name, mac) = if restored {
        (only_link()?, Some(parse_mac(&net.mac)?))
    } else {
        (by_mac(&net.mac)?, None)
    };
    let idx = ifindex(&name)?;
    nl.link(idx, Some(net.mtu).filter(|m| *m > 0), mac)?;
    for (a, len) in &net.addrs {
        let ip: IpAddr = a.parse().map_err(|_| format!("net: bad address {a:?}"))?;
        nl.addr(idx, ip, *len)
            .map_err(|e| format!("net: address {a}/{len} on {name}: {e}"))?;
    }
    // Routes without a gateway first: a gateway must be reachable when its route is added.
    let (direct, via): (Vec<&NetRoute>, Vec<&NetRoute>) =
        net.routes.iter().partition(|r| r.gateway.is_none());
    for r in direct.into_iter().chain(via) {
        nl.route(idx, r)
            .map_err(|e| format!("net: route {r:?} on {name}: {e}"))?;
    }
    Ok(())
}

fn ifindex(name: &str) -> Res<i32> {
    let c = crate::sys::cstr(name)?;
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(format!("net: no interface {name}: {}", errno()));
    }
    Ok(i as i32)
}

/// The name of the interface whose MAC is `mac` (from sysfs, which the agent mounted).
fn by_mac(mac: &str) -> Res<String> {
    let want = mac.to_ascii_lowercase();
    let dir = fs::read_dir("/sys/class/net").map_err(|e| format!("net: /sys/class/net: {e}"))?;
    for e in dir.flatten() {
        let a = fs::read_to_string(e.path().join("address")).unwrap_or_default();
        if a.trim() == want {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
    }
    Err(format!(
        "net: no interface with MAC {mac} (the guest kernel found no virtio-net device)"
    ))
}

/// The one interface besides `lo` (a restored guest's virtio-net).
fn only_link() -> Res<String> {
    let dir = fs::read_dir("/sys/class/net").map_err(|e| format!("net: /sys/class/net: {e}"))?;
    let names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("net: the restored guest has no network interface".into()),
        more => Err(format!(
            "net: the restored guest has interfaces {more:?}, not one"
        )),
    }
}

fn parse_mac(mac: &str) -> Res<[u8; 6]> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("net: bad MAC {mac:?}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("net: bad MAC {mac:?}"))
}

struct Netlink {
    fd: OwnedFd,
    seq: std::cell::Cell<u32>,
}

/// Appends one rtattr (type, payload), padded to 4 bytes.
fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

impl Netlink {
    fn open() -> Res<Netlink> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(format!("net: netlink socket: {}", errno()));
        }
        // SAFETY: a fresh fd we own.
        Ok(Netlink {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: std::cell::Cell::new(1),
        })
    }

    /// Send one request (`ty`, the fixed header `body` and its attributes) and wait for its ack.
    fn request(&self, ty: u16, flags: u16, body: &[u8]) -> Res<()> {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(
            &(flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes(),
        );
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: a live buffer; the kernel is the default destination of a netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(format!("netlink send: {}", errno()));
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: a live buffer.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(format!("netlink recv: {}", errno()));
            }
            let n = n as usize;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                let mty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
                let mseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
                if len < 16 || off + len > n {
                    return Err("netlink: short message".into());
                }
                if mty == libc::NLMSG_ERROR as u16 && mseq == seq && len >= 20 {
                    let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                    return match code {
                        0 => Ok(()),
                        c => Err(std::io::Error::from_raw_os_error(-c).to_string()),
                    };
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    /// Set the link up (and its MTU, and its MAC).
    fn link(&self, idx: i32, mtu: Option<u32>, mac: Option<[u8; 6]>) -> Res<()> {
        // struct ifinfomsg: family, pad, type, index, flags, change.
        let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        b.extend_from_slice(&idx.to_ne_bytes());
        b.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        b.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        if let Some(m) = mtu {
            attr(&mut b, libc::IFLA_MTU, &m.to_ne_bytes());
        }
        if let Some(m) = mac {
            attr(&mut b, libc::IFLA_ADDRESS, &m);
        }
        self.request(libc::RTM_NEWLINK, 0, &b)
            .map_err(|e| format!("net: link {idx} up: {e}"))
    }

    fn addr(&self, idx: i32, ip: IpAddr, len: u8) -> Res<()> {
        // struct ifaddrmsg: family, prefixlen, flags, scope, index. No duplicate address
        // detection: the address was the veth's a moment ago and is the guest's alone now.
        let mut b = vec![family(&ip), len, IFA_F_NODAD, libc::RT_SCOPE_UNIVERSE];
        b.extend_from_slice(&(idx as u32).to_ne_bytes());
        attr(&mut b, libc::IFA_LOCAL, &ip_bytes(&ip));
        attr(&mut b, libc::IFA_ADDRESS, &ip_bytes(&ip));
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        self.request(libc::RTM_NEWADDR, flags, &b)
    }

    fn route(&self, idx: i32, r: &NetRoute) -> Res<()> {
        let gw: Option<IpAddr> = match &r.gateway {
            Some(g) => Some(g.parse().map_err(|_| format!("bad gateway {g:?}"))?),
            None => None,
        };
        let dst: Option<(IpAddr, u8)> = match &r.dst {
            Some((a, l)) => Some((a.parse().map_err(|_| format!("bad destination {a:?}"))?, *l)),
            None => None,
        };
        let fam = match (&dst, &gw) {
            (Some((a, _)), _) | (None, Some(a)) => family(a),
            (None, None) => return Err("a route needs a destination or a gateway".into()),
        };
        let scope = if gw.is_some() {
            libc::RT_SCOPE_UNIVERSE
        } else {
            libc::RT_SCOPE_LINK
        };
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut b = vec![
            fam,
            dst.map_or(0, |d| d.1),
            0,
            0,
            libc::RT_TABLE_MAIN,
            RTPROT_BOOT,
            scope,
            libc::RTN_UNICAST,
        ];
        b.extend_from_slice(&0u32.to_ne_bytes());
        if let Some((a, _)) = &dst {
            attr(&mut b, libc::RTA_DST, &ip_bytes(a));
        }
        if let Some(g) = &gw {
            attr(&mut b, libc::RTA_GATEWAY, &ip_bytes(g));
        }
        attr(&mut b, libc::RTA_OIF, &(idx as u32).to_ne_bytes());
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        self.request(libc::RTM_NEWROUTE, flags, &b)
    }
}
