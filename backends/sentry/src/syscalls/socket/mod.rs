//! Sockets, gVisor's "hostinet" model: every socket of the sandbox is a host socket the sentry
//! owns. The sentry lives in the sandbox's network namespace, so the host stack it reaches is that
//! namespace's only. The sentry copies every buffer, address and control message through itself:
//! no workload pointer reaches the host. It checks:
//!
//! - families: AF_UNIX, AF_INET, AF_INET6; NETLINK_ROUTE sockets that only send `RTM_GET*`
//!   requests; raw, packet and ping sockets only with CAP_NET_RAW in the sandbox; anything else
//!   EAFNOSUPPORT;
//! - AF_UNIX paths: resolved inside the sandbox's root (`bind` creates the socket file in the
//!   parent directory found there, `connect`/`sendto` open the socket file there) and handed to
//!   the host as a `/proc/self/fd` path of that descriptor, never as a host path;
//! - control messages: SCM_RIGHTS numbers go through the fd table both ways (only the sandbox's
//!   own open files leave; no directory from outside its root comes in);
//!   SCM_CREDENTIALS must name the sender's own virtual ids;
//! - options: an allow-list (`sockopt_allowed`); others ENOPROTOOPT;
//! - credentials: the host knows every socket of the sandbox as the sentry's, so SO_PEERCRED and
//!   received SCM_CREDENTIALS name the sandbox task that made the peer socket (found through the
//!   kernel's socket diagnostics), and a peer outside the sandbox as pid 0 with the overflow ids.

use super::read_write::iovecs;
use super::{err, errno, Call, Outcome, CHUNK};
use crate::kernel::creds::{may, SETGID, SETUID};
use crate::kernel::Creds;
use crate::kernel::{FileRef, Kernel};
use crate::platform::Platform;
use crate::vfs::{fstat_fd, FileKind, HostKind, Node, OpenFile};
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};
use syscalls::Sysno;

/// SIOCATMARK (asm-generic sockios.h; not in libc).
const SIOCATMARK: u64 = 0x8905;
/// The id a credential the sandbox cannot see shows as (the kernel's overflowuid).
const OVERFLOW_ID: u32 = 65534;
/// CAP_NET_BIND_SERVICE.
const NET_BIND_SERVICE: u32 = 10;
/// CAP_NET_RAW.
const NET_RAW: u32 = 13;
/// The largest socket address (`struct sockaddr_storage`).
const ADDR_MAX: usize = 128;
/// The largest control buffer the sentry copies.
const CONTROL_MAX: usize = 4096;

thread_local! {
    /// Host name of a bound AF_UNIX socket ("<fd>/<name>" under the sentry's /proc/self/fd) ->
    /// the sandbox's path, to give addresses back as the sandbox named them. A later bind
    /// through the same descriptor number and name replaces an entry: names only, never access.
    static NAMES: RefCell<HashMap<Vec<u8>, Vec<u8>>> = RefCell::new(HashMap::new());
    /// Socket inode -> the sandbox task that made the socket (socket, socketpair, accept; listen
    /// updates it): its virtual pid and credentials then. The host records the sentry as every
    /// socket's owner; this is what the sandbox's peers learn instead.
    static OWNERS: RefCell<HashMap<u64, (u32, Creds)>> = RefCell::new(HashMap::new());
}

/// Record task `tid` as the maker of host socket `h` (see `OWNERS`).
fn record_owner<P: Platform>(k: &Kernel<P>, tid: i32, h: RawFd) {
    if let Ok(st) = fstat_fd(h) {
        let vpid = k.proc_of(tid).borrow().vpid as u32;
        OWNERS.with(|o| o.borrow_mut().insert(st.st_ino, (vpid, k.creds(tid))));
    }
}

/// The inode of the AF_UNIX socket connected to the socket with inode `ino`, from the kernel's
/// socket diagnostics (`NETLINK_SOCK_DIAG`, `UDIAG_SHOW_PEER`) in the sentry's, that is the
/// sandbox's, network namespace. Hand-written: no crate the project uses speaks sock_diag.
fn unix_peer(ino: u64) -> Option<u64> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_PEER: u32 = 4;
    const UNIX_DIAG_PEER: u16 = 2;
    // SAFETY: a netlink socket of our own.
    let s = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if s < 0 {
        return None;
    }
    // SAFETY: just made, ours.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]); // seq, port id
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, pad
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&u32::try_from(ino).ok()?.to_ne_bytes());
    req.extend_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // no cookie
                                       // SAFETY: send/recv on our socket with our buffers (the kernel is the only peer).
    unsafe {
        if libc::send(s.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) != req.len() as isize {
            return None;
        }
        let mut b = [0u8; 1024];
        let n = libc::recv(s.as_raw_fd(), b.as_mut_ptr().cast(), b.len(), 0);
        let b = &b[..usize::try_from(n).ok()?];
        let u16_at = |o: usize| Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?));
        let u32_at = |o: usize| Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?));
        if u16_at(4)? != SOCK_DIAG_BY_FAMILY {
            return None; // NLMSG_ERROR: no such socket
        }
        let end = (u32_at(0)? as usize).min(b.len());
        // After the header and unix_diag_msg (16 bytes): attributes {len, type, value}.
        let mut off = 32;
        while off + 4 <= end {
            let (len, ty) = (u16_at(off)? as usize, u16_at(off + 2)?);
            if len < 4 {
                break;
            }
            if ty == UNIX_DIAG_PEER {
                return u32_at(off + 4).filter(|&p| p != 0).map(u64::from);
            }
            off += (len + 3) & !3;
        }
        None
    }
}

/// The sandbox task that made the socket connected to `h` (an AF_UNIX peer made by the
/// sentry for the sandbox), as `(vpid, creds)`.
fn peer_owner(h: RawFd) -> Option<(u32, Creds)> {
    let peer = unix_peer(fstat_fd(h).ok()?.st_ino)?;
    OWNERS.with(|o| o.borrow().get(&peer).cloned())
}

/// Credentials (pid, uid, gid) the host reports for the peer of `h` (`pid` the host's), as the
/// sandbox must see them: a peer the sentry made names the sandbox task behind it (`effective`:
/// its effective ids, as SO_PEERCRED; else its real ones, as SCM_CREDENTIALS); anyone else is
/// outside the sandbox's view: pid 0 and the overflow ids (no credentials at all: as the host).
fn guest_creds(h: RawFd, pid: i32, uid: u32, gid: u32, effective: bool) -> [u32; 3] {
    // SAFETY: getpid cannot fail.
    if pid == unsafe { libc::getpid() } {
        return match peer_owner(h) {
            Some((vpid, c)) if effective => [vpid, c.euid, c.egid],
            Some((vpid, c)) => [vpid, c.ruid, c.rgid],
            None => [0, OVERFLOW_ID, OVERFLOW_ID],
        };
    }
    let map = |id: u32| if id == u32::MAX { id } else { OVERFLOW_ID };
    [0, map(uid), map(gid)]
}

/// getsockopt(SO_PEERCRED).
fn peercred<P: Platform>(k: &Kernel<P>, c: &Call, h: RawFd) -> Outcome {
    let room = tri!(k.read_val::<u32>(c.tid, c.a[4])) as usize;
    let mut uc = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut l = std::mem::size_of::<libc::ucred>() as u32;
    // SAFETY: getsockopt into our own struct.
    if unsafe {
        libc::getsockopt(
            h,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut uc as *mut libc::ucred).cast(),
            &mut l,
        )
    } != 0
    {
        return err(errno());
    }
    let v: Vec<u8> = guest_creds(h, uc.pid, uc.uid, uc.gid, true)
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    let n = v.len().min(room);
    tri!(k.write_bytes(c.tid, c.a[3], &v[..n]));
    tri!(k.write_val(c.tid, c.a[4], &(n as u32)));
    Outcome::Ret(0)
}

fn sockopt_int(h: RawFd, level: i32, opt: i32) -> Result<i32, i32> {
    let mut v: i32 = 0;
    let mut l = 4u32;
    // SAFETY: getsockopt into a local int.
    if unsafe { libc::getsockopt(h, level, opt, (&mut v as *mut i32).cast(), &mut l) } != 0 {
        return Err(errno());
    }
    Ok(v)
}

/// The socket behind descriptor `fd`: (its open file, host fd, the workload's O_NONBLOCK).
fn sock<P: Platform>(k: &Kernel<P>, tid: i32, fd: u64) -> Result<(FileRef, RawFd, bool), i32> {
    let f = k.file(tid, fd)?;
    let (h, nb) = {
        let fb = f.borrow();
        let h = fb
            .host_fd()
            .filter(|_| fb.is_stream())
            .ok_or(libc::ENOTSOCK)?;
        (h, fb.flags & libc::O_NONBLOCK != 0)
    };
    if fstat_fd(h)?.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(libc::ENOTSOCK);
    }
    Ok((f, h, nb))
}

/// Is host fd `h` a netlink socket? (Its sends are filtered.)
pub fn is_netlink(h: RawFd) -> bool {
    sockopt_int(h, libc::SOL_SOCKET, libc::SO_DOMAIN) == Ok(libc::AF_NETLINK)
}

/// A netlink message stream that only asks (RTM_GET*: type 18 + 4k) and never changes state.
fn netlink_reads_only(data: &[u8]) -> bool {
    let mut off = 0;
    while off + 16 <= data.len() {
        let len = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(data[off + 4..off + 6].try_into().unwrap());
        if len < 16 || ty < libc::RTM_GETLINK || ty & 3 != 2 {
            return false;
        }
        off += (len + 3) & !3;
    }
    off >= data.len()
}

fn install_socket<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    fd: OwnedFd,
    nonblock: bool,
    cloexec: bool,
) -> Result<i64, i32> {
    let ino = fstat_fd(fd.as_raw_fd()).map(|s| s.st_ino).unwrap_or(0);
    record_owner(k, tid, fd.as_raw_fd());
    let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
    k.install(
        tid,
        OpenFile::new(
            FileKind::Host {
                fd,
                kind: HostKind::Stream,
            },
            &format!("socket:[{ino}]"),
            flags,
        ),
        cloexec,
    )
}

pub fn socket<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (dom, ty, proto) = (c.a[0] as i32, c.a[1] as i32, c.a[2] as i32);
    let base = ty & 0xf;
    let raw = k.creds(c.tid).capable(NET_RAW);
    match dom {
        libc::AF_UNIX => {
            if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&base) {
                return err(libc::ESOCKTNOSUPPORT);
            }
            if proto != 0 {
                return err(libc::EPROTONOSUPPORT);
            }
        }
        libc::AF_INET | libc::AF_INET6 => match (base, proto) {
            (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => {}
            (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => {}
            (libc::SOCK_RAW, _) | (libc::SOCK_DGRAM, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6)
                if raw => {}
            (libc::SOCK_RAW, _) | (libc::SOCK_DGRAM, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) => {
                return err(libc::EPERM)
            }
            _ => return err(libc::EPROTONOSUPPORT),
        },
        libc::AF_PACKET if raw => {}
        libc::AF_PACKET => return err(libc::EPERM),
        libc::AF_NETLINK => {
            if proto != libc::NETLINK_ROUTE {
                return err(libc::EPROTONOSUPPORT);
            }
            if base != libc::SOCK_RAW && base != libc::SOCK_DGRAM {
                return err(libc::ESOCKTNOSUPPORT);
            }
        }
        _ => return err(libc::EAFNOSUPPORT),
    }
    // SAFETY: a new host socket, non-blocking on the host (the sentry never blocks in it).
    let h = unsafe { libc::socket(dom, base | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) };
    if h < 0 {
        return err(errno());
    }
    // SAFETY: a fresh descriptor of ours.
    let fd = unsafe { OwnedFd::from_raw_fd(h) };
    super::r(install_socket(
        k,
        c.tid,
        fd,
        ty & libc::SOCK_NONBLOCK != 0,
        ty & libc::SOCK_CLOEXEC != 0,
    ))
}

pub fn socketpair<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    if a[0] as i32 != libc::AF_UNIX {
        return err(libc::EAFNOSUPPORT);
    }
    let mut sv = [0i32; 2];
    let ty = a[1] as i32;
    // SAFETY: socketpair into a local array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            (ty & 0xf) | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            a[2] as i32,
            sv.as_mut_ptr(),
        )
    } != 0
    {
        return err(errno());
    }
    // SAFETY: fresh fds we own.
    let fds = unsafe { [OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])] };
    let mut out = [0i32; 2];
    for (i, fd) in fds.into_iter().enumerate() {
        let nb = ty & libc::SOCK_NONBLOCK != 0;
        match install_socket(k, tid, fd, nb, ty & libc::SOCK_CLOEXEC != 0) {
            Ok(v) => out[i] = v as i32,
            Err(e) => {
                if i == 1 {
                    k.proc_of(tid).borrow().fds.borrow_mut().close(out[0]);
                }
                return err(e);
            }
        }
    }
    match k.write_val(tid, a[3], &out) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    }
}

/// What a socket address is used for: a path is created by bind, opened by the others.
#[derive(PartialEq, Clone, Copy)]
enum Use {
    Bind,
    Reach,
}

/// A socket address ready for the host, with the descriptors its path form needs alive.
struct HostAddr {
    bytes: Vec<u8>,
    /// An AF_UNIX path, relative to the sentry's /proc/self/fd (see `with_proc_cwd`).
    path: bool,
    _keep: Vec<OwnedFd>,
    /// For bind: (host name, the sandbox's path).
    name: Option<(Vec<u8>, Vec<u8>)>,
}

/// Run `f` with the sentry's working directory at its own `/proc/self/fd` (opened beneath the
/// verified host procfs descriptor: `/proc` in the sentry's mount namespace is the sandbox's,
/// see hostproc), so that an AF_UNIX path "<fd>" or "<fd>/<name>" names, through the kernel's
/// link for descriptor <fd>, a socket file or directory the sentry resolved inside the root.
/// No host path is involved, and the workload cannot swap a component: the link is the
/// descriptor itself. The sentry is single-threaded, so nothing else sees the changed cwd.
fn with_proc_cwd<R>(f: impl FnOnce() -> R) -> Result<R, i32> {
    let dir = crate::hostproc::open("self/fd", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    // SAFETY: open the current directory as an O_PATH descriptor.
    let cwd = unsafe { libc::open(c".".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if cwd < 0 {
        return Err(errno());
    }
    // SAFETY: a fresh descriptor.
    let cwd = unsafe { OwnedFd::from_raw_fd(cwd) };
    // SAFETY: fchdir to our own directory descriptor; the sentry is single-threaded.
    if unsafe { libc::fchdir(dir.as_raw_fd()) } != 0 {
        return Err(errno());
    }
    let r = f();
    // SAFETY: back to where we were.
    unsafe { libc::fchdir(cwd.as_raw_fd()) };
    Ok(r)
}

/// The workload's socket address at `addr` (`len` bytes), checked and rewritten for the host.
fn host_addr<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    h: RawFd,
    addr: u64,
    len: usize,
    what: Use,
) -> Result<HostAddr, i32> {
    if !(2..=ADDR_MAX).contains(&len) {
        return Err(libc::EINVAL);
    }
    let b = k.read_bytes(tid, addr, len)?;
    let fam = u16::from_ne_bytes([b[0], b[1]]) as i32;
    let dom = sockopt_int(h, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if fam != dom && !(fam == libc::AF_UNSPEC && what == Use::Reach) {
        return Err(libc::EAFNOSUPPORT);
    }
    if fam != libc::AF_UNIX || len <= 2 || b[2] == 0 {
        // Inet addresses, unnamed and abstract AF_UNIX names: as given (the abstract namespace
        // is the network namespace's, which is the sandbox's).
        return Ok(HostAddr {
            bytes: b,
            path: false,
            _keep: Vec::new(),
            name: None,
        });
    }
    let raw = &b[2..];
    let path = &raw[..raw.iter().position(|&x| x == 0).unwrap_or(raw.len())];
    let path = std::str::from_utf8(path)
        .map_err(|_| libc::EINVAL)?
        .to_string();
    let creds = k.creds(tid);
    let (dirfd, tail, keep_name) = match what {
        Use::Bind => {
            let (pfd, name) = k.host_parent(tid, libc::AT_FDCWD, &path)?;
            crate::kernel::creds::may_entry(
                pfd.as_raw_fd(),
                &name,
                &creds,
                crate::kernel::creds::Entry::Create,
            )?;
            let n = name.to_bytes().to_vec();
            (pfd, n, true)
        }
        Use::Reach => {
            let rel = match k.lookup(tid, libc::AT_FDCWD, &path, true)? {
                Node::Host(rel) => rel,
                Node::Synth(_) => return Err(libc::ECONNREFUSED),
            };
            k.may_walk(tid, &rel)?;
            let fd = k.vfs.open(&rel, libc::O_PATH, 0)?;
            let st = fstat_fd(fd.as_raw_fd())?;
            if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
                return Err(libc::ECONNREFUSED);
            }
            if !may(&st, &creds, 2) {
                return Err(libc::EACCES);
            }
            (fd, Vec::new(), false)
        }
    };
    let mut host = format!("{}", dirfd.as_raw_fd()).into_bytes();
    if !tail.is_empty() {
        host.push(b'/');
        host.extend_from_slice(&tail);
    }
    if host.len() >= 108 {
        return Err(libc::ENAMETOOLONG);
    }
    let mut bytes = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    bytes.extend_from_slice(&host);
    bytes.push(0);
    Ok(HostAddr {
        bytes,
        path: true,
        _keep: vec![dirfd],
        // Linux gives a bound name back as bind was given it (relative or not).
        name: keep_name.then(|| (host, path.into_bytes())),
    })
}

/// A host socket address as the sandbox should see it (AF_UNIX names the sentry bound for the
/// sandbox are given back as the sandbox's paths).
fn guest_addr(b: &[u8]) -> Vec<u8> {
    if b.len() > 2 && u16::from_ne_bytes([b[0], b[1]]) as i32 == libc::AF_UNIX && b[2] != 0 {
        let raw = &b[2..];
        let p = &raw[..raw.iter().position(|&x| x == 0).unwrap_or(raw.len())];
        if let Some(v) = NAMES.with(|m| m.borrow().get(p).cloned()) {
            let mut out = b[..2].to_vec();
            out.extend_from_slice(&v);
            out.push(0);
            return out;
        }
    }
    b.to_vec()
}

/// Give the workload a socket address: at most `*lenp` bytes at `addr`, the full length in
/// `*lenp`. Nothing when `addr` is null.
fn put_addr<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    addr: u64,
    lenp: u64,
    host: &[u8],
) -> Result<(), i32> {
    if addr == 0 || lenp == 0 {
        return Ok(());
    }
    let g = guest_addr(host);
    let room = k.read_val::<u32>(tid, lenp)? as usize;
    k.write_bytes(tid, addr, &g[..g.len().min(room)])?;
    k.write_val(tid, lenp, &(g.len() as u32))
}

/// The host call's result, or park the task until `h` is ready for `ev` when the call would
/// block and the workload's socket blocks.
fn or_park(r: isize, h: RawFd, ev: i16, nb: bool, c: &Call) -> Result<isize, Box<Outcome>> {
    if r >= 0 {
        return Ok(r);
    }
    let e = errno();
    if (e == libc::EAGAIN || e == libc::EINPROGRESS || e == libc::EALREADY) && !nb {
        // A blocking connect that runs out of SO_SNDTIMEO says it is still in progress.
        let late = if e == libc::EAGAIN {
            libc::EAGAIN
        } else {
            libc::EINPROGRESS
        };
        return Err(Box::new(park(h, ev, c, late)));
    }
    Err(Box::new(err(e)))
}

/// Park a blocking call on `h` until it is ready for `ev`, or, for a socket with SO_RCVTIMEO
/// (reading, accepting) or SO_SNDTIMEO (writing, connecting), until that much time has passed:
/// then the call fails with `late` (EAGAIN; EINPROGRESS for connect), as Linux's does. The
/// deadline is taken when the call first parks and kept across its retries (`Call::deadline`).
/// Anything that is not a socket (a pipe) waits for its descriptor alone.
pub(crate) fn park(h: RawFd, ev: i16, c: &Call, late: i32) -> Outcome {
    if let Some(d) = c.deadline {
        if Instant::now() >= d {
            return err(late);
        }
        return Outcome::Park(vec![(h, ev)], Some(d));
    }
    let opt = if ev & libc::POLLOUT != 0 {
        libc::SO_SNDTIMEO
    } else {
        libc::SO_RCVTIMEO
    };
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut l = std::mem::size_of::<libc::timeval>() as u32;
    // SAFETY: getsockopt into our own struct (ENOTSOCK for a pipe: no timeout).
    let ok = unsafe {
        libc::getsockopt(
            h,
            libc::SOL_SOCKET,
            opt,
            (&mut tv as *mut libc::timeval).cast(),
            &mut l,
        )
    } == 0;
    let limit = Duration::from_secs(tv.tv_sec.max(0) as u64)
        + Duration::from_micros(tv.tv_usec.max(0) as u64);
    let deadline = (ok && !limit.is_zero()).then(|| Instant::now() + limit);
    Outcome::Park(vec![(h, ev)], deadline)
}

pub fn bind<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, _) = tri!(sock(k, c.tid, c.a[0]));
    let ha = tri!(host_addr(k, c.tid, h, c.a[1], c.a[2] as usize, Use::Bind));
    // Ports below 1024 take CAP_NET_BIND_SERVICE in the sandbox's capability model (the host's
    // check is about the sentry, which holds no capability: see namespaces::new_netns_setup).
    let fam = u16::from_ne_bytes([ha.bytes[0], ha.bytes[1]]) as i32;
    if (fam == libc::AF_INET || fam == libc::AF_INET6) && ha.bytes.len() >= 4 {
        let port = u16::from_be_bytes([ha.bytes[2], ha.bytes[3]]);
        if port != 0 && port < 1024 && !k.creds(c.tid).capable(NET_BIND_SERVICE) {
            return err(libc::EACCES);
        }
    }
    let r = tri!(with_proc_cwd(|| {
        // SAFETY: bind with an address in our own buffer.
        unsafe { libc::bind(h, ha.bytes.as_ptr().cast(), ha.bytes.len() as u32) }
    }));
    if r != 0 {
        return err(errno());
    }
    if let Some((host, virt)) = ha.name {
        if let Some(d) = ha._keep.first() {
            own_socket_file(k, c.tid, d.as_raw_fd(), &host);
        }
        NAMES.with(|m| m.borrow_mut().insert(host, virt));
    }
    Outcome::Ret(0)
}

/// The socket file bind just made (`host`: "<dirfd>/<name>") gets the mode and owner Linux
/// gives it: 0777 less the caller's umask, the caller's virtual ids (the sentry made it). It
/// is reached through an O_PATH descriptor that does not follow a symlink, and only if it is a
/// socket: the sandbox may have replaced the name meanwhile.
fn own_socket_file<P: Platform>(k: &Kernel<P>, tid: i32, dir: RawFd, host: &[u8]) {
    let Some(slash) = host.iter().position(|&b| b == b'/') else {
        return;
    };
    let Ok(name) = std::ffi::CString::new(&host[slash + 1..]) else {
        return;
    };
    let (um, cr) = (k.proc_of(tid).borrow().umask, k.creds(tid));
    // SAFETY: openat on our directory fd; the result is ours.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    // SAFETY: just opened, ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if !fstat_fd(fd.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK) {
        return;
    }
    // SAFETY: attribute changes on our O_PATH descriptor itself (AT_EMPTY_PATH).
    unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            0o777 & !um,
            libc::AT_EMPTY_PATH,
        );
        if cr.euid != 0 {
            libc::fchownat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                cr.euid,
                cr.egid,
                libc::AT_EMPTY_PATH,
            );
        }
    }
}

pub fn connect<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, nb) = tri!(sock(k, c.tid, c.a[0]));
    let ha = tri!(host_addr(k, c.tid, h, c.a[1], c.a[2] as usize, Use::Reach));
    let r = tri!(with_proc_cwd(|| {
        // SAFETY: connect with an address in our own buffer.
        unsafe { libc::connect(h, ha.bytes.as_ptr().cast(), ha.bytes.len() as u32) }
    }));
    if r != 0 && !nb {
        match errno() {
            // A blocking connect parked on EINPROGRESS and retried: it is done...
            libc::EISCONN => return Outcome::Ret(0),
            // ... or it failed: the host keeps saying EALREADY and the error is in SO_ERROR.
            libc::EALREADY => match sockopt_int(h, libc::SOL_SOCKET, libc::SO_ERROR) {
                Ok(0) => {}
                Ok(e) | Err(e) => return err(e),
            },
            _ => {}
        }
        // (errno is still the connect's: sockopt_int succeeded without setting it)
    }
    match or_park(r as isize, h, libc::POLLOUT, nb, c) {
        Ok(_) => Outcome::Ret(0),
        Err(o) => *o,
    }
}

pub fn listen<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, _) = tri!(sock(k, c.tid, c.a[0]));
    // SAFETY: listen on our socket.
    if unsafe { libc::listen(h, c.a[1] as i32) } != 0 {
        return err(errno());
    }
    // Linux gives a listener's connecting peers the credentials of the task that called listen.
    record_owner(k, c.tid, h);
    Outcome::Ret(0)
}

/// accept, accept4.
pub fn accept<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, nb) = tri!(sock(k, c.tid, c.a[0]));
    let flags = if c.s == Sysno::accept4 {
        c.a[3] as i32
    } else {
        0
    };
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        return err(libc::EINVAL);
    }
    let mut ss = [0u8; ADDR_MAX];
    let mut sl = ADDR_MAX as u32;
    // SAFETY: accept4 into our own buffers.
    let r = unsafe {
        libc::accept4(
            h,
            ss.as_mut_ptr().cast(),
            &mut sl,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    let r = match or_park(r as isize, h, libc::POLLIN, nb, c) {
        Ok(r) => r as RawFd,
        Err(o) => return *o,
    };
    // SAFETY: a fresh descriptor of ours.
    let fd = unsafe { OwnedFd::from_raw_fd(r) };
    let v = tri!(install_socket(
        k,
        c.tid,
        fd,
        flags & libc::SOCK_NONBLOCK != 0,
        flags & libc::SOCK_CLOEXEC != 0
    ));
    if let Err(e) = put_addr(k, c.tid, c.a[1], c.a[2], &ss[..sl as usize]) {
        k.proc_of(c.tid).borrow().fds.borrow_mut().close(v as i32);
        return err(e);
    }
    Outcome::Ret(v)
}

/// getsockname, getpeername.
pub fn getname<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, _) = tri!(sock(k, c.tid, c.a[0]));
    let mut ss = [0u8; ADDR_MAX];
    let mut sl = ADDR_MAX as u32;
    // SAFETY: into our own buffers.
    let r = unsafe {
        if c.s == Sysno::getsockname {
            libc::getsockname(h, ss.as_mut_ptr().cast(), &mut sl)
        } else {
            libc::getpeername(h, ss.as_mut_ptr().cast(), &mut sl)
        }
    };
    if r != 0 {
        return err(errno());
    }
    if c.a[1] == 0 || c.a[2] == 0 {
        return err(libc::EFAULT);
    }
    super::r(put_addr(k, c.tid, c.a[1], c.a[2], &ss[..sl as usize]).map(|_| 0))
}

pub fn shutdown<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, _) = tri!(sock(k, c.tid, c.a[0]));
    // SAFETY: shutdown of our socket.
    if unsafe { libc::shutdown(h, c.a[1] as i32) } != 0 {
        return err(errno());
    }
    Outcome::Ret(0)
}

const SEND_FLAGS: i32 = libc::MSG_DONTWAIT
    | libc::MSG_MORE
    | libc::MSG_NOSIGNAL
    | libc::MSG_OOB
    | libc::MSG_EOR
    | libc::MSG_CONFIRM
    | libc::MSG_DONTROUTE;
const RECV_FLAGS: i32 = libc::MSG_DONTWAIT
    | libc::MSG_PEEK
    | libc::MSG_TRUNC
    | libc::MSG_WAITALL
    | libc::MSG_OOB
    | libc::MSG_CMSG_CLOEXEC
    | libc::MSG_ERRQUEUE;

/// One send through the host: data, an optional address, control messages (already host form).
#[allow(clippy::too_many_arguments)]
fn do_send<P: Platform>(
    k: &Kernel<P>,
    c: &Call,
    h: RawFd,
    nb: bool,
    data: &[u8],
    to: Option<&HostAddr>,
    control: &[u8],
    flags: i32,
) -> Outcome {
    if flags & !SEND_FLAGS != 0 {
        return err(libc::EOPNOTSUPP);
    }
    if is_netlink(h) && !netlink_reads_only(data) {
        return err(libc::EPERM);
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    // SAFETY: zeroed msghdr filled with our own buffers below.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    if let Some(a) = to {
        m.msg_name = a.bytes.as_ptr() as *mut _;
        m.msg_namelen = a.bytes.len() as u32;
    }
    if !control.is_empty() {
        m.msg_control = control.as_ptr() as *mut _;
        m.msg_controllen = control.len();
    }
    // SAFETY: sendmsg of our own buffers; MSG_NOSIGNAL: the sentry raises SIGPIPE itself.
    let send = || unsafe { libc::sendmsg(h, &m, flags | libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    let r = match to {
        // A path address is relative to the sentry's /proc/self/fd.
        Some(a) if a.path => match with_proc_cwd(send) {
            Ok(r) => r,
            Err(e) => return err(e),
        },
        _ => send(),
    };
    if r < 0 && errno() == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
        let tg = k.proc_of(c.tid).borrow().host_pid;
        // SAFETY: signal our own tracee as the kernel would.
        unsafe { libc::syscall(libc::SYS_tgkill, tg, c.tid, libc::SIGPIPE) };
        return err(libc::EPIPE);
    }
    match or_park(
        r,
        h,
        libc::POLLOUT,
        nb || flags & libc::MSG_DONTWAIT != 0,
        c,
    ) {
        Ok(n) => Outcome::Ret(n as i64),
        Err(o) => *o,
    }
}

/// sendto (and send, which libc makes a sendto).
pub fn sendto<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, nb) = tri!(sock(k, c.tid, c.a[0]));
    let data = tri!(k.read_bytes(c.tid, c.a[1], (c.a[2] as usize).min(CHUNK)));
    let to = if c.a[4] != 0 {
        Some(tri!(host_addr(
            k,
            c.tid,
            h,
            c.a[4],
            c.a[5] as usize,
            Use::Reach
        )))
    } else {
        None
    };
    do_send(k, c, h, nb, &data, to.as_ref(), &[], c.a[3] as i32)
}

/// The raw `struct msghdr` fields: (name, namelen, iov, iovlen, control, controllen, flags).
fn read_msghdr<P: Platform>(k: &Kernel<P>, tid: i32, addr: u64) -> Result<[u64; 7], i32> {
    let b = k.read_bytes(tid, addr, 56)?;
    let q = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
    Ok([
        q(0),
        q(8) & 0xffff_ffff,
        q(16),
        q(24),
        q(32),
        q(40),
        q(48) & 0xffff_ffff,
    ])
}

fn cmsg_align(n: usize) -> usize {
    (n + 7) & !7
}

/// Rewrite the workload's control messages for the host: SCM_RIGHTS numbers become the host
/// descriptors of the sandbox's own open files (kept alive in `keep`), SCM_CREDENTIALS must be
/// the sender's own (virtual) ids and carry its host pid.
fn host_control<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    b: &[u8],
    keep: &mut Vec<FileRef>,
) -> Result<Vec<u8>, i32> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= b.len() {
        let len = u64::from_ne_bytes(b[off..off + 8].try_into().unwrap()) as usize;
        let level = i32::from_ne_bytes(b[off + 8..off + 12].try_into().unwrap());
        let ty = i32::from_ne_bytes(b[off + 12..off + 16].try_into().unwrap());
        if len < 16 || off + len > b.len() {
            return Err(libc::EINVAL);
        }
        let data = &b[off + 16..off + len];
        let mut body = Vec::new();
        match (level, ty) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                for ch in data.chunks_exact(4) {
                    let v = i32::from_ne_bytes(ch.try_into().unwrap());
                    let f = k.file(tid, v as u64)?;
                    // Only files the host can carry: a synthesized one has no host descriptor.
                    let h = f.borrow().host_fd().ok_or(libc::EBADF)?;
                    body.extend_from_slice(&h.to_ne_bytes());
                    keep.push(f);
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                if data.len() < 12 {
                    return Err(libc::EINVAL);
                }
                let pid = i32::from_ne_bytes(data[0..4].try_into().unwrap());
                let uid = u32::from_ne_bytes(data[4..8].try_into().unwrap());
                let gid = u32::from_ne_bytes(data[8..12].try_into().unwrap());
                let cr = k.creds(tid);
                let p = k.proc_of(tid);
                let vpid = p.borrow().vpid;
                let uid_ok = [cr.ruid, cr.euid, cr.suid].contains(&uid) || cr.capable(SETUID);
                let gid_ok = [cr.rgid, cr.egid, cr.sgid].contains(&gid) || cr.capable(SETGID);
                if pid != vpid || !uid_ok || !gid_ok {
                    return Err(libc::EPERM);
                }
                // The host checks credentials against the sender, the sentry, which holds no
                // capability: what it can carry is its own (see `guest_control`).
                // SAFETY: getpid/geteuid/getegid cannot fail.
                let own = unsafe { [libc::getpid() as u32, libc::geteuid(), libc::getegid()] };
                for v in own {
                    body.extend_from_slice(&v.to_ne_bytes());
                }
            }
            _ => return Err(libc::EINVAL),
        }
        let start = out.len();
        out.extend_from_slice(&((16 + body.len()) as u64).to_ne_bytes());
        out.extend_from_slice(&level.to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(&body);
        out.resize(start + cmsg_align(16 + body.len()), 0);
        off += cmsg_align(len);
    }
    Ok(out)
}

pub fn sendmsg<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, nb) = tri!(sock(k, c.tid, c.a[0]));
    let m = tri!(read_msghdr(k, c.tid, c.a[1]));
    let mut data = Vec::new();
    for (base, len) in tri!(iovecs(k, c.tid, m[2], m[3])) {
        if data.len() + len > CHUNK {
            break;
        }
        data.extend_from_slice(&tri!(k.read_bytes(c.tid, base, len)));
    }
    let to = if m[0] != 0 && m[1] != 0 {
        Some(tri!(host_addr(
            k,
            c.tid,
            h,
            m[0],
            m[1] as usize,
            Use::Reach
        )))
    } else {
        None
    };
    let mut keep = Vec::new();
    let control = if m[4] != 0 && m[5] != 0 {
        if m[5] as usize > CONTROL_MAX {
            return err(libc::ENOBUFS);
        }
        let raw = tri!(k.read_bytes(c.tid, m[4], m[5] as usize));
        tri!(host_control(k, c.tid, &raw, &mut keep))
    } else {
        Vec::new()
    };
    do_send(k, c, h, nb, &data, to.as_ref(), &control, c.a[2] as i32)
}

/// Received control messages for the sandbox: host descriptors become new descriptors of the
/// receiver, host pids virtual ones. A received directory that is not inside the sandbox's root
/// is closed and the message marked truncated: it would be a way out of the root.
fn guest_control<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    h: RawFd,
    b: &[u8],
    cloexec: bool,
    trunc: &mut bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= b.len() {
        let len = u64::from_ne_bytes(b[off..off + 8].try_into().unwrap()) as usize;
        let level = i32::from_ne_bytes(b[off + 8..off + 12].try_into().unwrap());
        let ty = i32::from_ne_bytes(b[off + 12..off + 16].try_into().unwrap());
        if len < 16 || off + len > b.len() {
            break;
        }
        let data = &b[off + 16..off + len];
        let mut body = Vec::new();
        match (level, ty) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                for ch in data.chunks_exact(4) {
                    // SAFETY: the kernel just installed this descriptor in the sentry for us.
                    let fd =
                        unsafe { OwnedFd::from_raw_fd(i32::from_ne_bytes(ch.try_into().unwrap())) };
                    match guest_file(k, fd) {
                        Some(f) => match k.install(tid, f, cloexec) {
                            Ok(v) => body.extend_from_slice(&(v as i32).to_ne_bytes()),
                            Err(_) => *trunc = true,
                        },
                        None => *trunc = true,
                    }
                }
                if body.is_empty() {
                    off += cmsg_align(len);
                    continue;
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if data.len() >= 12 => {
                // A sender in the sandbox reaches the host as the sentry itself: the message
                // names the task that made the sending socket (never the sentry's host ids);
                // a sender outside, pid 0 and the overflow ids.
                let pid = i32::from_ne_bytes(data[0..4].try_into().unwrap());
                let uid = u32::from_ne_bytes(data[4..8].try_into().unwrap());
                let gid = u32::from_ne_bytes(data[8..12].try_into().unwrap());
                for v in guest_creds(h, pid, uid, gid, false) {
                    body.extend_from_slice(&v.to_ne_bytes());
                }
            }
            _ => body.extend_from_slice(data),
        }
        let start = out.len();
        out.extend_from_slice(&((16 + body.len()) as u64).to_ne_bytes());
        out.extend_from_slice(&level.to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(&body);
        out.resize(start + cmsg_align(16 + body.len()), 0);
        off += cmsg_align(len);
    }
    out
}

/// An open file for a descriptor received from the host, or None if it must not come in.
fn guest_file<P: Platform>(k: &Kernel<P>, fd: OwnedFd) -> Option<OpenFile> {
    let h = fd.as_raw_fd();
    let st = fstat_fd(h).ok()?;
    // SAFETY: F_GETFL on our descriptor.
    let fl = unsafe { libc::fcntl(h, libc::F_GETFL) };
    let acc = fl & libc::O_ACCMODE;
    let (kind, path) = match st.st_mode & libc::S_IFMT {
        // A directory outside the root would be a way out of it (*at calls relative to it).
        libc::S_IFDIR => (HostKind::Dir, k.vfs.virt_path_of(h)?),
        // A regular file names no other file: one from outside the root (a memfd, a peer's
        // file) comes in under a name that is not a path of the sandbox.
        libc::S_IFREG => {
            let name = k
                .vfs
                .virt_path_of(h)
                .unwrap_or_else(|| match crate::hostproc::fd_path(h) {
                    Ok(p) if p.to_string_lossy().starts_with("/memfd:") => {
                        p.to_string_lossy().into_owned()
                    }
                    _ => format!("anon_inode:[file {}]", st.st_ino),
                });
            (HostKind::Regular, name)
        }
        libc::S_IFSOCK => (HostKind::Stream, format!("socket:[{}]", st.st_ino)),
        libc::S_IFIFO => (HostKind::Stream, format!("pipe:[{}]", st.st_ino)),
        _ => return None,
    };
    if kind == HostKind::Stream {
        // The sentry never blocks in a stream: make the description non-blocking.
        // SAFETY: F_SETFL on our descriptor.
        unsafe { libc::fcntl(h, libc::F_SETFL, fl | libc::O_NONBLOCK) };
    }
    Some(OpenFile::new(
        FileKind::Host { fd, kind },
        &path,
        acc | (fl & libc::O_APPEND),
    ))
}

/// What one receive got: (length, data, address, control, msg flags).
type Received = (isize, Vec<u8>, Vec<u8>, Vec<u8>, i32);

/// One receive through the host into our buffers.
fn do_recv(h: RawFd, len: usize, clen: usize, flags: i32) -> Result<Received, i32> {
    let mut buf = vec![0u8; len];
    let mut ss = vec![0u8; ADDR_MAX];
    let mut ctl = vec![0u8; clen];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    // SAFETY: zeroed msghdr filled with our own buffers.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    m.msg_name = ss.as_mut_ptr().cast();
    m.msg_namelen = ADDR_MAX as u32;
    if clen > 0 {
        m.msg_control = ctl.as_mut_ptr().cast();
        m.msg_controllen = clen;
    }
    // SAFETY: recvmsg into our own buffers; received fds close-on-exec in the sentry.
    let n = unsafe {
        libc::recvmsg(
            h,
            &mut m,
            flags | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return Err(errno());
    }
    buf.truncate((n as usize).min(len));
    ss.truncate(m.msg_namelen as usize);
    ctl.truncate(if clen > 0 { m.msg_controllen } else { 0 });
    Ok((n, buf, ss, ctl, m.msg_flags))
}

/// recvfrom (and recv).
pub fn recvfrom<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, nb) = tri!(sock(k, c.tid, c.a[0]));
    let flags = c.a[3] as i32;
    if flags & !RECV_FLAGS != 0 {
        return err(libc::EOPNOTSUPP);
    }
    let len = (c.a[2] as usize).min(CHUNK);
    let (n, buf, ss, _, _) = match do_recv(h, len, 0, flags & !libc::MSG_WAITALL) {
        Ok(v) => v,
        Err(e) => {
            let block = !nb && flags & libc::MSG_DONTWAIT == 0;
            if e == libc::EAGAIN && block {
                return park(h, libc::POLLIN, c, libc::EAGAIN);
            }
            return err(e);
        }
    };
    tri!(k.write_bytes(c.tid, c.a[1], &buf));
    tri!(put_addr(k, c.tid, c.a[4], c.a[5], &ss));
    Outcome::Ret(n as i64)
}

pub fn recvmsg<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, nb) = tri!(sock(k, c.tid, c.a[0]));
    let flags = c.a[2] as i32;
    if flags & !RECV_FLAGS != 0 {
        return err(libc::EOPNOTSUPP);
    }
    let m = tri!(read_msghdr(k, c.tid, c.a[1]));
    let iov = tri!(iovecs(k, c.tid, m[2], m[3]));
    let total = iov.iter().map(|v| v.1).sum::<usize>().min(CHUNK);
    let clen = (m[5] as usize).min(CONTROL_MAX);
    let clen = if m[4] == 0 { 0 } else { clen };
    let (n, buf, ss, ctl, mut mflags) = match do_recv(h, total, clen, flags & !libc::MSG_WAITALL) {
        Ok(v) => v,
        Err(e) => {
            if e == libc::EAGAIN && !nb && flags & libc::MSG_DONTWAIT == 0 {
                return park(h, libc::POLLIN, c, libc::EAGAIN);
            }
            return err(e);
        }
    };
    // Scatter the data into the workload's buffers.
    let mut off = 0;
    for (base, len) in iov {
        if off >= buf.len() {
            break;
        }
        let end = (off + len).min(buf.len());
        tri!(k.write_bytes(c.tid, base, &buf[off..end]));
        off = end;
    }
    let mut trunc = false;
    let g = guest_control(
        k,
        c.tid,
        h,
        &ctl,
        flags & libc::MSG_CMSG_CLOEXEC != 0,
        &mut trunc,
    );
    if trunc {
        mflags |= libc::MSG_CTRUNC;
    }
    // Name: at most the workload's namelen bytes; namelen, controllen and flags written back.
    let mut namelen = 0u32;
    if m[0] != 0 && !ss.is_empty() {
        let ga = guest_addr(&ss);
        tri!(k.write_bytes(c.tid, m[0], &ga[..ga.len().min(m[1] as usize)]));
        namelen = ga.len() as u32;
    }
    tri!(k.write_val(c.tid, c.a[1] + 8, &namelen));
    let g = &g[..g.len().min(clen)];
    if !g.is_empty() {
        tri!(k.write_bytes(c.tid, m[4], g));
    }
    tri!(k.write_val(c.tid, c.a[1] + 40, &(g.len() as u64)));
    tri!(k.write_val(c.tid, c.a[1] + 48, &mflags));
    Outcome::Ret(n as i64)
}

/// The options a workload may get or set, with the largest value length each takes.
fn sockopt_allowed(level: i32, opt: i32, set: bool) -> Option<usize> {
    use libc::*;
    let int = Some(4);
    match (level, opt) {
        (SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT | SO_KEEPALIVE | SO_BROADCAST | SO_RCVBUF)
        | (SOL_SOCKET, SO_SNDBUF | SO_OOBINLINE | SO_RCVLOWAT | SO_PASSCRED | SO_TIMESTAMP)
        | (SOL_SOCKET, SO_DONTROUTE | SO_PRIORITY) => int,
        (SOL_SOCKET, SO_LINGER) => Some(8),
        (SOL_SOCKET, SO_RCVTIMEO | SO_SNDTIMEO) => Some(16),
        (SOL_SOCKET, SO_ERROR | SO_TYPE | SO_DOMAIN | SO_PROTOCOL | SO_ACCEPTCONN) if !set => int,
        (IPPROTO_TCP, TCP_NODELAY | TCP_MAXSEG | TCP_KEEPIDLE | TCP_KEEPINTVL | TCP_KEEPCNT)
        | (IPPROTO_TCP, TCP_CORK | TCP_QUICKACK | TCP_DEFER_ACCEPT | TCP_FASTOPEN)
        | (IPPROTO_TCP, TCP_USER_TIMEOUT | TCP_SYNCNT | TCP_LINGER2 | TCP_WINDOW_CLAMP) => int,
        (IPPROTO_TCP, TCP_INFO) if !set => Some(256),
        (IPPROTO_TCP, TCP_CONGESTION) => Some(16),
        (IPPROTO_IP, IP_TOS | IP_TTL | IP_MULTICAST_TTL | IP_MULTICAST_LOOP | IP_RECVERR)
        | (IPPROTO_IP, IP_PKTINFO | IP_MTU_DISCOVER | IP_RECVTOS | IP_RECVTTL | IP_FREEBIND) => int,
        (IPPROTO_IP, IP_HDRINCL) => int,
        (IPPROTO_IP, IP_MTU) if !set => int,
        (IPPROTO_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP) if set => Some(12),
        (IPPROTO_IPV6, IPV6_V6ONLY | IPV6_UNICAST_HOPS | IPV6_MULTICAST_HOPS)
        | (IPPROTO_IPV6, IPV6_MULTICAST_LOOP | IPV6_RECVPKTINFO | IPV6_TCLASS | IPV6_RECVERR)
        | (IPPROTO_IPV6, IPV6_MTU_DISCOVER | IPV6_RECVTCLASS) => int,
        (IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP | IPV6_DROP_MEMBERSHIP) if set => Some(20),
        _ => None,
    }
}

pub fn setsockopt<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, _) = tri!(sock(k, c.tid, c.a[0]));
    let (level, opt, len) = (c.a[1] as i32, c.a[2] as i32, c.a[4] as usize);
    let Some(max) = sockopt_allowed(level, opt, true) else {
        return err(libc::ENOPROTOOPT);
    };
    let v = tri!(k.read_bytes(c.tid, c.a[3], len.min(max)));
    // SAFETY: setsockopt with a value in our own buffer.
    if unsafe { libc::setsockopt(h, level, opt, v.as_ptr().cast(), v.len() as u32) } != 0 {
        return err(errno());
    }
    Outcome::Ret(0)
}

pub fn getsockopt<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, _) = tri!(sock(k, c.tid, c.a[0]));
    let (level, opt) = (c.a[1] as i32, c.a[2] as i32);
    if (level, opt) == (libc::SOL_SOCKET, libc::SO_PEERCRED) {
        return peercred(k, c, h);
    }
    let Some(max) = sockopt_allowed(level, opt, false) else {
        return err(libc::ENOPROTOOPT);
    };
    let room = tri!(k.read_val::<u32>(c.tid, c.a[4])) as usize;
    let mut v = vec![0u8; max];
    let mut l = max as u32;
    // SAFETY: getsockopt into our own buffer.
    if unsafe { libc::getsockopt(h, level, opt, v.as_mut_ptr().cast(), &mut l) } != 0 {
        return err(errno());
    }
    let n = (l as usize).min(room);
    tri!(k.write_bytes(c.tid, c.a[3], &v[..n]));
    tri!(k.write_val(c.tid, c.a[4], &(n as u32)));
    Outcome::Ret(0)
}

/// Socket ioctls the sandbox may make: reads of its own socket's queue state and of the
/// network namespace's interfaces (struct ifreq by name or index); nothing that changes an
/// interface. None: not a socket request (the caller goes on).
pub fn ioctl<P: Platform>(k: &Kernel<P>, c: &Call, h: RawFd) -> Option<Outcome> {
    let req = c.a[1];
    let size = match req {
        SIOCATMARK | libc::TIOCOUTQ => 4,
        libc::SIOCGIFNAME
        | libc::SIOCGIFINDEX
        | libc::SIOCGIFFLAGS
        | libc::SIOCGIFADDR
        | libc::SIOCGIFNETMASK
        | libc::SIOCGIFMTU
        | libc::SIOCGIFHWADDR
        | libc::SIOCGIFBRDADDR => 40,
        _ => return None,
    };
    let ifreq = size == 40;
    let mut buf = if ifreq {
        match k.read_bytes(c.tid, c.a[2], size) {
            Ok(b) => b,
            Err(e) => return Some(err(e)),
        }
    } else {
        vec![0u8; size]
    };
    // SAFETY: ioctl with a buffer of the size the request needs.
    if unsafe { libc::ioctl(h, req as _, buf.as_mut_ptr()) } != 0 {
        return Some(err(errno()));
    }
    Some(match k.write_bytes(c.tid, c.a[2], &buf) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(ty: u16) -> Vec<u8> {
        let mut m = 20u32.to_ne_bytes().to_vec();
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0u8; 14]);
        m
    }

    #[test]
    fn netlink_only_gets() {
        assert!(netlink_reads_only(&nlmsg(libc::RTM_GETLINK)));
        assert!(netlink_reads_only(&nlmsg(libc::RTM_GETROUTE)));
        let mut two = nlmsg(libc::RTM_GETADDR);
        two.extend(nlmsg(libc::RTM_GETNEIGH));
        assert!(netlink_reads_only(&two));
        assert!(!netlink_reads_only(&nlmsg(libc::RTM_NEWADDR)));
        assert!(!netlink_reads_only(&nlmsg(libc::RTM_DELROUTE)));
        let mut mixed = nlmsg(libc::RTM_GETLINK);
        mixed.extend(nlmsg(libc::RTM_SETLINK));
        assert!(!netlink_reads_only(&mixed));
        assert!(!netlink_reads_only(&[1, 2, 3]));
    }

    #[test]
    fn options_allow_list() {
        assert!(sockopt_allowed(libc::SOL_SOCKET, libc::SO_REUSEADDR, true).is_some());
        assert!(sockopt_allowed(libc::SOL_SOCKET, libc::SO_ERROR, true).is_none());
        assert!(sockopt_allowed(libc::SOL_SOCKET, libc::SO_ERROR, false).is_some());
        for (l, o) in [
            (libc::SOL_SOCKET, libc::SO_BINDTODEVICE),
            (libc::SOL_SOCKET, libc::SO_ATTACH_FILTER),
            (libc::SOL_SOCKET, libc::SO_MARK),
            (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE),
            (libc::SOL_SOCKET, libc::SO_PEERCRED),
        ] {
            assert!(sockopt_allowed(l, o, true).is_none());
            assert!(sockopt_allowed(l, o, false).is_none());
        }
    }
}
