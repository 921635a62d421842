//! POSIX message queues. The queues are the host kernel's, in the sandbox's own IPC namespace
//! (see `ipc.rs` for why that namespace serves only the sandbox), made and opened by the sentry:
//! the descriptor `mq_open` gives is the sentry's host fd (kept non-blocking), behind a virtual
//! fd like any other file, so `read` (the queue's status line), `poll`, `epoll`, `fstat`,
//! `fchmod` and `close` work as on a file. Permissions are the sentry's, as for files: a new
//! queue gets the caller's virtual owner and umask, an existing one is checked against the
//! caller's virtual credentials; `mq_unlink` follows the sticky rule of the queues' directory.
//! A send to a full queue or a receive from an empty one parks the task until the host fd is
//! ready (or the absolute timeout passes: ETIMEDOUT); a non-blocking descriptor gets EAGAIN.
//!
//! `mq_notify`: removing a registration and `SIGEV_NONE` are the host's; `SIGEV_SIGNAL` and
//! `SIGEV_THREAD` are refused with ENOSYS: the host would notify the sentry, which owns the
//! queue descriptor, not the task.

use super::{err, errno, Call, Outcome};
use crate::kernel::{creds, Kernel};
use crate::platform::Platform;
use crate::vfs::{fstat_fd, FileKind, OpenFile};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The longest queue name (NAME_MAX).
const NAME_MAX: usize = 255;
const MQ_PRIO_MAX: u64 = 32768;

/// `struct mq_attr` as the kernel reads and writes it (four longs and four reserved).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MqAttr {
    flags: i64,
    maxmsg: i64,
    msgsize: i64,
    curmsgs: i64,
    reserved: [i64; 4],
}

fn name<P: Platform>(k: &Kernel<P>, c: &Call) -> Result<std::ffi::CString, i32> {
    let n = k.read_cstr(c.tid, c.a[0], NAME_MAX + 1)?;
    if n.is_empty() || n.contains('/') {
        // The kernel's queues live in one flat directory (glibc strips the leading '/').
        return Err(if n.is_empty() {
            libc::ENOENT
        } else {
            libc::EACCES
        });
    }
    crate::vfs::cstr(&n)
}

fn host_open(
    name: &std::ffi::CStr,
    flags: i32,
    mode: u32,
    attr: Option<&MqAttr>,
) -> Result<OwnedFd, i32> {
    let a = attr.map_or(std::ptr::null(), |a| a as *const MqAttr);
    // SAFETY: mq_open with a NUL-terminated name and, when given, our attribute struct.
    let fd = unsafe { libc::syscall(libc::SYS_mq_open, name.as_ptr(), flags, mode, a) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `mq_open(name, oflag, mode, attr)`.
pub fn mq_open<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let n = tri!(name(k, c));
    let flags = c.a[1] as i32;
    let acc = flags & libc::O_ACCMODE;
    if acc == libc::O_ACCMODE
        || flags
            & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC)
            != 0
    {
        return err(libc::EINVAL);
    }
    let creds = k.creds(c.tid);
    let umask = k.proc_of(c.tid).borrow().umask;
    let base = acc | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let mut created = false;
    let fd = if flags & libc::O_CREAT != 0 {
        let attr = if c.a[3] != 0 {
            Some(tri!(k.read_val::<MqAttr>(c.tid, c.a[3])))
        } else {
            None
        };
        let mode = (c.a[2] as u32) & 0o777 & !umask;
        match host_open(&n, base | libc::O_CREAT | libc::O_EXCL, mode, attr.as_ref()) {
            Ok(fd) => {
                created = true;
                // SAFETY: fchmod/fchown of our queue: exactly the mode asked (the sentry's
                // own umask plays no part) and the caller's virtual owner.
                unsafe {
                    libc::fchmod(fd.as_raw_fd(), mode);
                    if creds.euid != 0 || creds.egid != 0 {
                        libc::fchown(fd.as_raw_fd(), creds.euid, creds.egid);
                    }
                }
                fd
            }
            Err(libc::EEXIST) if flags & libc::O_EXCL == 0 => tri!(host_open(&n, base, 0, None)),
            Err(e) => return err(e),
        }
    } else {
        tri!(host_open(&n, base, 0, None))
    };
    if !created {
        let st = tri!(fstat_fd(fd.as_raw_fd()));
        let want = match acc {
            libc::O_RDONLY => 4,
            libc::O_WRONLY => 2,
            _ => 6,
        };
        if !creds::may(&st, &creds, want) {
            return err(libc::EACCES);
        }
    }
    let path = format!("/{}", n.to_string_lossy());
    let f = OpenFile::new(
        FileKind::Host {
            fd,
            kind: crate::vfs::HostKind::Regular,
        },
        &path,
        acc | (flags & libc::O_NONBLOCK),
    );
    super::r(k.install(c.tid, f, flags & libc::O_CLOEXEC != 0))
}

/// `mq_unlink(name)`: the queues' directory is sticky (1777), so the queue's owner or
/// CAP_FOWNER.
pub fn mq_unlink<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let n = tri!(name(k, c));
    let fd = tri!(host_open(
        &n,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        0,
        None
    ));
    let st = tri!(fstat_fd(fd.as_raw_fd()));
    if !k.creds(c.tid).owns(&st) {
        return err(libc::EACCES);
    }
    // SAFETY: a NUL-terminated name.
    if unsafe { libc::syscall(libc::SYS_mq_unlink, n.as_ptr()) } < 0 {
        return err(errno());
    }
    Outcome::Ret(0)
}

/// The host fd behind a queue descriptor, whether the task may use it for `acc` (O_RDONLY to
/// receive, O_WRONLY to send, None for either), whether it is non-blocking, and the queue's attributes (EBADF
/// for a descriptor that is not a queue, as the host says).
fn queue<P: Platform>(
    k: &Kernel<P>,
    c: &Call,
    acc: Option<i32>,
) -> Result<(RawFd, bool, MqAttr), i32> {
    let f = k.file(c.tid, c.a[0])?;
    let fb = f.borrow();
    let FileKind::Host { fd, .. } = &fb.kind else {
        return Err(libc::EBADF);
    };
    let mode = fb.flags & libc::O_ACCMODE;
    if acc.is_some_and(|acc| mode != libc::O_RDWR && mode != acc) {
        return Err(libc::EBADF);
    }
    let mut a = MqAttr::default();
    // SAFETY: mq_getsetattr into our struct (EBADF unless a queue).
    if unsafe { libc::syscall(libc::SYS_mq_getsetattr, fd.as_raw_fd(), 0, &mut a) } < 0 {
        return Err(errno());
    }
    // The host fd stays open while `f` is in the task's table; the sentry is single-threaded.
    Ok((fd.as_raw_fd(), fb.flags & libc::O_NONBLOCK != 0, a))
}

/// The call's deadline: the one it parked with, or its absolute CLOCK_REALTIME timeout.
fn deadline<P: Platform>(k: &Kernel<P>, c: &Call, at: u64) -> Result<Option<Instant>, i32> {
    if c.deadline.is_some() || at == 0 {
        return Ok(c.deadline);
    }
    let ts: libc::timespec = k.read_val(c.tid, at)?;
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return Err(libc::EINVAL);
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let ns = |t: &libc::timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    let left = (ns(&ts) - ns(&now)).max(0) as u64;
    Ok(Some(Instant::now() + Duration::from_nanos(left)))
}

/// Would block: EAGAIN for a non-blocking descriptor, ETIMEDOUT past the deadline, else park.
fn wait(h: RawFd, ev: i16, nonblock: bool, dl: Option<Instant>) -> Outcome {
    if nonblock {
        err(libc::EAGAIN)
    } else if dl.is_some_and(|d| Instant::now() >= d) {
        err(libc::ETIMEDOUT)
    } else {
        Outcome::Park(vec![(h, ev)], dl)
    }
}

/// `mq_timedsend(mqd, msg, len, prio, abs_timeout)`.
pub fn mq_timedsend<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let [_, msg, len, prio, at, _] = c.a;
    let (h, nonblock, a) = tri!(queue(k, c, Some(libc::O_WRONLY)));
    if prio >= MQ_PRIO_MAX {
        return err(libc::EINVAL);
    }
    if len > a.msgsize as u64 {
        return err(libc::EMSGSIZE);
    }
    let dl = tri!(deadline(k, c, at));
    let data = tri!(k.read_bytes(c.tid, msg, len as usize));
    // SAFETY: send our copy on our non-blocking queue fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedsend,
            h,
            data.as_ptr(),
            data.len(),
            prio,
            0,
        )
    };
    match r {
        r if r >= 0 => Outcome::Ret(0),
        _ if errno() == libc::EAGAIN => wait(h, libc::POLLOUT, nonblock, dl),
        _ => err(errno()),
    }
}

/// `mq_timedreceive(mqd, buf, len, prio, abs_timeout)`.
pub fn mq_timedreceive<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let [_, buf, len, prio, at, _] = c.a;
    let (h, nonblock, a) = tri!(queue(k, c, Some(libc::O_RDONLY)));
    if len < a.msgsize as u64 {
        return err(libc::EMSGSIZE);
    }
    let dl = tri!(deadline(k, c, at));
    let mut data = vec![0u8; a.msgsize as usize];
    let mut p: u32 = 0;
    // SAFETY: receive into our buffer of the queue's message size.
    let n = unsafe {
        libc::syscall(
            libc::SYS_mq_timedreceive,
            h,
            data.as_mut_ptr(),
            data.len(),
            &mut p,
            0,
        )
    };
    if n < 0 {
        return match errno() {
            libc::EAGAIN => wait(h, libc::POLLIN, nonblock, dl),
            e => err(e),
        };
    }
    tri!(k.write_bytes(c.tid, buf, &data[..n as usize]));
    if prio != 0 {
        tri!(k.write_val(c.tid, prio, &p));
    }
    Outcome::Ret(n)
}

/// `mq_notify(mqd, sevp)`: see the module doc.
pub fn mq_notify<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let f = tri!(k.file(c.tid, c.a[0]));
    let fb = f.borrow();
    let FileKind::Host { fd, .. } = &fb.kind else {
        return err(libc::EBADF);
    };
    let ev: Option<libc::sigevent> = if c.a[1] == 0 {
        None
    } else {
        let ev: libc::sigevent = tri!(k.read_val(c.tid, c.a[1]));
        if ev.sigev_notify != libc::SIGEV_NONE {
            return err(libc::ENOSYS);
        }
        Some(ev)
    };
    let sevp = ev
        .as_ref()
        .map_or(std::ptr::null(), |e| e as *const libc::sigevent);
    // SAFETY: mq_notify on our fd with our copy of a SIGEV_NONE request, or none.
    if unsafe { libc::syscall(libc::SYS_mq_notify, fd.as_raw_fd(), sevp) } < 0 {
        return err(errno());
    }
    Outcome::Ret(0)
}

/// `mq_getsetattr(mqd, new, old)`: only O_NONBLOCK can be set, and it is the descriptor's own
/// (the sentry's host fd stays non-blocking).
pub fn mq_getsetattr<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_, nonblock, mut a) = tri!(queue(k, c, None));
    a.flags = if nonblock { libc::O_NONBLOCK as i64 } else { 0 };
    if c.a[1] != 0 {
        let new: MqAttr = tri!(k.read_val(c.tid, c.a[1]));
        let f = tri!(k.file(c.tid, c.a[0]));
        let mut fb = f.borrow_mut();
        fb.flags = (fb.flags & !libc::O_NONBLOCK) | (new.flags as i32 & libc::O_NONBLOCK);
    }
    if c.a[2] != 0 {
        tri!(k.write_val(c.tid, c.a[2], &a));
    }
    Outcome::Ret(0)
}
