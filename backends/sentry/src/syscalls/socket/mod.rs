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
//! - options: an allow-list (`opts::sockopt_allowed`); others ENOPROTOOPT;
//! - credentials: the host knows every socket of the sandbox as the sentry's, so SO_PEERCRED and
//!   received SCM_CREDENTIALS name the sandbox task that made the peer socket (found through the
//!   kernel's socket diagnostics), and a peer outside the sandbox as pid 0 with the overflow ids.
//!
//! This file has the calls; `addr` the addresses, `control` the control messages, `creds` the
//! credentials, `opts` the options and ioctls.

use super::read_write::{gather, iovecs, until_all};
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

mod addr;
mod control;
mod creds;
mod opts;

use addr::*;
use control::*;
use creds::*;
pub use opts::{getsockopt, ioctl, setsockopt};

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
                    k.fds_of(tid).borrow_mut().close(out[0]);
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
        k.fds_of(c.tid).borrow_mut().close(v as i32);
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
        super::read_write::sigpipe(k, c.tid);
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

/// Send the tracee's buffers `iov`. On a blocking stream socket (not O_NONBLOCK, no
/// MSG_DONTWAIT) the call ends only when every byte is sent, as Linux's
/// ([`until_all`]): a signal ends it with the count sent so far, SO_SNDTIMEO with the count
/// (EAGAIN if nothing was sent), a peer that goes with the count (Linux raises no SIGPIPE for a
/// partial send; the next one gets EPIPE and SIGPIPE). Control messages go with the first bytes
/// only; MSG_OOB marks the last byte only. Any other socket (datagram, seqpacket): one send of
/// at most [`CHUNK`], whole or not at all.
#[allow(clippy::too_many_arguments)]
fn send_iov<P: Platform>(
    k: &Kernel<P>,
    c: &mut Call,
    h: RawFd,
    nb: bool,
    iov: &[(u64, usize)],
    to: Option<&HostAddr>,
    control: &[u8],
    flags: i32,
) -> Outcome {
    let total = iov.iter().fold(0usize, |t, v| t.saturating_add(v.1));
    let all = !nb
        && flags & libc::MSG_DONTWAIT == 0
        && sockopt_int(h, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM);
    if !all {
        let data = tri!(gather(k, c.tid, iov, 0, total.min(CHUNK)));
        return do_send(k, c, h, nb, &data, to, control, flags);
    }
    until_all(c, h, total, |c, done| {
        let data = tri!(gather(k, c.tid, iov, done, (total - done).min(CHUNK)));
        let (ctl, mut fl) = if done == 0 {
            (control, flags)
        } else {
            (&[][..], flags | libc::MSG_NOSIGNAL)
        };
        if done + data.len() < total {
            fl &= !libc::MSG_OOB;
        }
        do_send(k, c, h, nb, &data, to, ctl, fl)
    })
}

/// sendto (and send, which libc makes a sendto).
pub fn sendto<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, nb) = tri!(sock(k, c.tid, c.a[0]));
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
    let iov = [(c.a[1], c.a[2] as usize)];
    send_iov(k, c, h, nb, &iov, to.as_ref(), &[], c.a[3] as i32)
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

pub fn sendmsg<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, nb) = tri!(sock(k, c.tid, c.a[0]));
    let m = tri!(read_msghdr(k, c.tid, c.a[1]));
    let iov = tri!(iovecs(k, c.tid, m[2], m[3]));
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
    send_iov(k, c, h, nb, &iov, to.as_ref(), &control, c.a[2] as i32)
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
}
