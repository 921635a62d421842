//! timerfd_create, timerfd_settime, timerfd_gettime: a host timerfd the sentry owns
//! (non-blocking on the host side), read, polled and watched by epoll like any other stream.

use super::{err, errno, r, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{FileKind, HostKind, OpenFile};
use std::os::fd::{FromRawFd, OwnedFd};

/// timerfd_create. The clocks a timerfd may use; the alarm clocks (CAP_WAKE_ALARM, a host
/// resource) are refused with EPERM, as Linux does without the capability.
pub fn timerfd_create<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (clock, flags) = (c.a[0] as i32, c.a[1] as i32);
    match clock {
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME => {}
        libc::CLOCK_REALTIME_ALARM | libc::CLOCK_BOOTTIME_ALARM => return err(libc::EPERM),
        _ => return err(libc::EINVAL),
    }
    if flags & !(libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) != 0 {
        return err(libc::EINVAL);
    }
    // SAFETY: a timerfd owned by the sentry.
    let fd = unsafe { libc::timerfd_create(clock, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if fd < 0 {
        return err(errno());
    }
    // SAFETY: just made, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    r(k.install(
        c.tid,
        OpenFile::new(
            FileKind::Host {
                fd,
                kind: HostKind::Stream,
            },
            "anon_inode:[timerfd]",
            libc::O_RDWR | (flags & libc::O_NONBLOCK),
        ),
        flags & libc::TFD_CLOEXEC != 0,
    ))
}

const ITIMERSPEC: usize = std::mem::size_of::<libc::itimerspec>();

/// The host fd of the timerfd the sandbox names (any other file: EINVAL, as Linux says).
fn timer<P: Platform>(k: &Kernel<P>, c: &Call) -> Result<(crate::kernel::FileRef, i32), i32> {
    let f = k.file(c.tid, c.a[0])?;
    let h = {
        let fb = f.borrow();
        match fb.host_fd() {
            Some(h) if fb.path == "anon_inode:[timerfd]" => h,
            _ => return Err(libc::EINVAL),
        }
    };
    Ok((f, h))
}

fn itimerspec_bytes(t: &libc::itimerspec) -> Vec<u8> {
    let v = [
        t.it_interval.tv_sec,
        t.it_interval.tv_nsec,
        t.it_value.tv_sec,
        t.it_value.tv_nsec,
    ];
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// timerfd_settime(fd, flags, new, old).
pub fn timerfd_settime<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h) = tri!(timer(k, c));
    let b = tri!(k.read_bytes(c.tid, c.a[2], ITIMERSPEC));
    let w = |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    let new = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: w(0),
            tv_nsec: w(1),
        },
        it_value: libc::timespec {
            tv_sec: w(2),
            tv_nsec: w(3),
        },
    };
    // SAFETY: zeroed plain data.
    let mut old: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: our own timerfd; the host checks the flags and the values.
    if unsafe { libc::timerfd_settime(h, c.a[1] as i32, &new, &mut old) } != 0 {
        return err(errno());
    }
    if c.a[3] != 0 {
        tri!(k.write_bytes(c.tid, c.a[3], &itimerspec_bytes(&old)));
    }
    Outcome::Ret(0)
}

/// timerfd_gettime(fd, cur).
pub fn timerfd_gettime<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h) = tri!(timer(k, c));
    // SAFETY: zeroed plain data.
    let mut cur: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: our own timerfd.
    if unsafe { libc::timerfd_gettime(h, &mut cur) } != 0 {
        return err(errno());
    }
    tri!(k.write_bytes(c.tid, c.a[1], &itimerspec_bytes(&cur)));
    Outcome::Ret(0)
}
