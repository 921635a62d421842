//! ioctl: FIOCLEX, FIONCLEX and FIONBIO on any descriptor; terminal queries and settings
//! (TCGETS/TCSETS*, TIOCGWINSZ/TIOCSWINSZ, TIOCGPGRP), FIONREAD, and the pty master's
//! TIOCGPTN, TIOCSPTLCK and TIOCGPTPEER on the sandbox's own streams; on sockets, the reads
//! `syscalls::socket::ioctl` allows. Everything else is ENOTTY.

use super::{err, errno, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;

/// The kernel's `struct termios` (TCGETS/TCSETS), not glibc's larger one.
const KERNEL_TERMIOS: usize = 36;

pub fn ioctl<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let f = match k.file(c.tid, c.a[0]) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    let req = c.a[1];
    let fb = f.borrow();
    match req {
        x if x == libc::FIOCLEX || x == libc::FIONCLEX => {
            drop(fb);
            let fds = k.fds_of(c.tid);
            if let Some(e) = fds.borrow_mut().map.get_mut(&(c.a[0] as i32)) {
                e.cloexec = x == libc::FIOCLEX;
            }
            return Outcome::Ret(0);
        }
        x if x == libc::FIONBIO => {
            let on = k.read_val::<i32>(c.tid, c.a[2]).unwrap_or(0) != 0;
            drop(fb);
            let mut fb = f.borrow_mut();
            if on {
                fb.flags |= libc::O_NONBLOCK
            } else {
                fb.flags &= !libc::O_NONBLOCK
            }
            super::passthrough::sync_nonblock(&fb);
            return Outcome::Ret(0);
        }
        _ => {}
    }
    let Some(h) = fb.host_fd().filter(|_| fb.is_stream()) else {
        return err(libc::ENOTTY);
    };
    if fb.path.starts_with("socket:") {
        if let Some(out) = super::socket::ioctl(k, c, h) {
            return out;
        }
    }
    // Only terminal queries and settings, on the sandbox's own stdio or pipes.
    let size = match req {
        x if x == libc::TCGETS => KERNEL_TERMIOS,
        x if x == libc::TCSETS || x == libc::TCSETSW || x == libc::TCSETSF => KERNEL_TERMIOS,
        x if x == libc::TIOCGWINSZ || x == libc::TIOCSWINSZ => std::mem::size_of::<libc::winsize>(),
        x if x == libc::FIONREAD => 4,
        // A pty master of the sandbox's own devpts: its number, and (un)locking its peer.
        x if x == libc::TIOCGPTN || x == libc::TIOCSPTLCK => 4,
        x if x == libc::TIOCGPTPEER => {
            // Open the peer of this master: a new file of the sandbox's.
            let flags = c.a[2] as i32
                & (libc::O_ACCMODE | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK);
            // SAFETY: ioctl on our own fd; the peer is opened non-blocking and close-on-exec
            // on the host side, never as the sentry's controlling terminal.
            let d = unsafe {
                libc::ioctl(
                    h,
                    libc::TIOCGPTPEER,
                    (flags & libc::O_ACCMODE) | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                )
            };
            if d < 0 {
                return err(errno());
            }
            let mut n: u32 = 0;
            // SAFETY: ioctl into a local.
            unsafe { libc::ioctl(h, libc::TIOCGPTN, &mut n) };
            let f = crate::vfs::OpenFile::new(
                crate::vfs::FileKind::Host {
                    // SAFETY: just made, owned here.
                    fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(d) },
                    kind: crate::vfs::HostKind::Stream,
                },
                &format!("/dev/pts/{n}"),
                flags & !libc::O_CLOEXEC,
            );
            drop(fb);
            return super::r(k.install(c.tid, f, flags & libc::O_CLOEXEC != 0));
        }
        x if x == libc::TIOCGPGRP => {
            let mut pg: i32 = 0;
            // SAFETY: ioctl into a local.
            if unsafe { libc::ioctl(h, libc::TIOCGPGRP, &mut pg) } != 0 {
                return err(errno());
            }
            let v = k.virt_of(pg);
            return match k.write_val(c.tid, c.a[2], &v) {
                Ok(()) => Outcome::Ret(0),
                Err(e) => err(e),
            };
        }
        _ => return err(libc::ENOTTY),
    };
    let setting = matches!(req, x if x == libc::TCSETS || x == libc::TCSETSW || x == libc::TCSETSF || x == libc::TIOCSWINSZ || x == libc::TIOCSPTLCK);
    let mut buf = if setting {
        match k.read_bytes(c.tid, c.a[2], size) {
            Ok(b) => b,
            Err(e) => return err(e),
        }
    } else {
        vec![0u8; size]
    };
    // SAFETY: ioctl with a buffer of the size the request needs.
    if unsafe { libc::ioctl(h, req as _, buf.as_mut_ptr()) } != 0 {
        return err(errno());
    }
    if !setting {
        if let Err(e) = k.write_bytes(c.tid, c.a[2], &buf) {
            return err(e);
        }
    }
    Outcome::Ret(0)
}
