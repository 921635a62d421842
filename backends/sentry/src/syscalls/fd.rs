//! The descriptor table: close, close_range, dup, dup2, dup3, fcntl.

use super::{err, r, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{FileKind, HostKind};
use std::os::fd::AsRawFd;
use syscalls::Sysno;

pub fn close<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let fds = k.fds_of(tid);
    let mut t = fds.borrow_mut();
    let installed = t.installed(a[0] as i32);
    if !t.close(a[0] as i32) {
        return err(libc::EBADF);
    }
    if installed {
        // The task's real table holds the pipe at this number (passthrough.rs): the kernel
        // closes it too, so no reference to the pipe outlives the number.
        return Outcome::Native;
    }
    Outcome::Ret(0)
}

pub fn close_range<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let (unshare, cloexec) = (
        libc::CLOSE_RANGE_UNSHARE as u64,
        libc::CLOSE_RANGE_CLOEXEC as u64,
    );
    if a[2] & !(unshare | cloexec) != 0 || a[0] as u32 > a[1] as u32 {
        return err(libc::EINVAL);
    }
    if a[2] & unshare != 0 {
        // Linux first gives the caller its own copy of the table (its threads and CLONE_FILES
        // siblings keep theirs), then closes in the copy.
        k.unshare_fds(tid);
    }
    let fds = k.fds_of(tid);
    let mut t = fds.borrow_mut();
    let (lo, hi) = (
        a[0] as u32 as i32,
        (a[1] as u32).min(i32::MAX as u32) as i32,
    );
    let cloexec = a[2] & cloexec != 0;
    // Installed pipes (passthrough.rs) are close-on-exec in the task already; closed, they must
    // go from its real table too: the kernel's own close_range then runs. With
    // CLOSE_RANGE_UNSHARE it always runs, so that the task's real table is unshared as the
    // sentry's record of it was (else a sibling's later close or install of a pipe would
    // change a table the caller's record no longer follows).
    let native = (!cloexec && t.any_installed(lo, hi)) || a[2] & unshare != 0;
    let keys: Vec<i32> = t.map.range(lo..=hi).map(|(k, _)| *k).collect();
    for fd in keys {
        if cloexec {
            t.map.get_mut(&fd).unwrap().cloexec = true;
        } else {
            t.close(fd);
        }
    }
    if native {
        return Outcome::Native;
    }
    Outcome::Ret(0)
}

pub fn dup<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let f = tri!(k.file(tid, a[0]));
    r(k.fds_of(tid)
        .borrow_mut()
        .alloc(0, f, false)
        .map(|v| v as i64))
}

/// dup2, dup3.
pub fn dup2<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let f = tri!(k.file(tid, a[0]));
    if a[0] == a[1] {
        return if s == dup3 {
            err(libc::EINVAL)
        } else {
            Outcome::Ret(a[1] as i64)
        };
    }
    let cloexec = s == dup3 && a[2] as i32 & libc::O_CLOEXEC != 0;
    // Onto a number whose pipe is in the task's real table: replace that one too.
    let installed = tri!(super::passthrough::replace(k, c, &f, a[1] as i32));
    let fds = k.fds_of(tid);
    let mut t = fds.borrow_mut();
    tri!(t.set(a[1] as i32, f, cloexec));
    t.map.get_mut(&(a[1] as i32)).unwrap().installed = installed;
    Outcome::Ret(a[1] as i64)
}

pub fn fcntl<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let fd = c.a[0] as i32;
    let fds = k.fds_of(c.tid);
    let mut t = fds.borrow_mut();
    let Some(e) = t.map.get(&fd).cloned() else {
        return err(libc::EBADF);
    };
    match c.a[1] as i32 {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => r(t
            .alloc(
                c.a[2] as i32,
                e.file.clone(),
                c.a[1] as i32 == libc::F_DUPFD_CLOEXEC,
            )
            .map(|v| v as i64)),
        libc::F_GETFD => Outcome::Ret(if e.cloexec {
            libc::FD_CLOEXEC as i64
        } else {
            0
        }),
        libc::F_SETFD => {
            t.map.get_mut(&fd).unwrap().cloexec = c.a[2] as i32 & libc::FD_CLOEXEC != 0;
            Outcome::Ret(0)
        }
        libc::F_GETFL => Outcome::Ret(e.file.borrow().flags as i64),
        libc::F_SETFL => {
            let mut f = e.file.borrow_mut();
            let changeable = libc::O_APPEND | libc::O_NONBLOCK;
            f.flags = (f.flags & !changeable) | (c.a[2] as i32 & changeable);
            super::passthrough::sync_nonblock(&f);
            if let FileKind::Host { fd, kind } = &f.kind {
                if *kind != HostKind::Stream {
                    // SAFETY: fcntl on our fd.
                    unsafe {
                        libc::fcntl(
                            fd.as_raw_fd(),
                            libc::F_SETFL,
                            (c.a[2] as i32 & libc::O_APPEND) | libc::O_NONBLOCK,
                        )
                    };
                }
            }
            Outcome::Ret(0)
        }
        libc::F_GETLK
        | libc::F_SETLK
        | libc::F_SETLKW
        | libc::F_OFD_GETLK
        | libc::F_OFD_SETLK
        | libc::F_OFD_SETLKW => {
            // Locks between sandbox processes are advisory; accept them.
            if c.a[1] as i32 == libc::F_GETLK || c.a[1] as i32 == libc::F_OFD_GETLK {
                // report "unlocked": l_type = F_UNLCK
                let _ = k.write_bytes(c.tid, c.a[2], &(libc::F_UNLCK as i16).to_ne_bytes());
            }
            Outcome::Ret(0)
        }
        libc::F_ADD_SEALS | libc::F_GET_SEALS => {
            // Seals live on the sentry's own file (a memfd; any other file: EINVAL from the host).
            let Some(h) = e.file.borrow().host_fd() else {
                return err(libc::EINVAL);
            };
            // SAFETY: fcntl on our fd with an integer argument.
            let v = unsafe { libc::fcntl(h, c.a[1] as i32, c.a[2] as libc::c_int) };
            if v < 0 {
                return err(super::errno());
            }
            Outcome::Ret(v as i64)
        }
        libc::F_GETPIPE_SZ => Outcome::Ret(65536),
        libc::F_SETPIPE_SZ => Outcome::Ret(c.a[2] as i64),
        _ => err(libc::EINVAL),
    }
}
