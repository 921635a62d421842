//! Sockets: socketpair(AF_UNIX) only; socket(2) is refused (the sandbox has no network).

use super::{err, errno, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{FileKind, HostKind, OpenFile};
use std::os::fd::{FromRawFd, OwnedFd};

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
            0,
            sv.as_mut_ptr(),
        )
    } != 0
    {
        return err(errno());
    }
    let cloexec = ty & libc::SOCK_CLOEXEC != 0;
    let vfl = libc::O_RDWR
        | if ty & libc::SOCK_NONBLOCK != 0 {
            libc::O_NONBLOCK
        } else {
            0
        };
    let mut out = [0i32; 2];
    for i in 0..2 {
        // SAFETY: fresh fds we own.
        let fd = unsafe { OwnedFd::from_raw_fd(sv[i]) };
        match k.install(
            tid,
            OpenFile::new(
                FileKind::Host {
                    fd,
                    kind: HostKind::Stream,
                },
                "socket:[0]",
                vfl,
            ),
            cloexec,
        ) {
            Ok(v) => out[i] = v as i32,
            Err(e) => return err(e),
        }
    }
    match k.write_val(tid, a[3], &out) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    }
}

/// socket: no network, the sandbox has no interfaces; AF_UNIX sockets need the sentry's socket
/// layer, which is not implemented beyond socketpair.
pub fn socket<P: Platform>(_k: &mut Kernel<P>, _c: &mut Call) -> Outcome {
    err(libc::EAFNOSUPPORT)
}
