//! eventfd and eventfd2: a host eventfd the sentry owns (non-blocking on the host side).

use super::{err, errno, r, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{FileKind, HostKind, OpenFile};
use std::os::fd::{FromRawFd, OwnedFd};
use syscalls::Sysno;

/// eventfd, eventfd2.
pub fn eventfd<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let flags = if s == eventfd2 { a[1] as i32 } else { 0 };
    // SAFETY: eventfd owned by the sentry.
    let fd = unsafe {
        libc::eventfd(
            a[0] as u32,
            libc::EFD_NONBLOCK | libc::EFD_CLOEXEC | (flags & libc::EFD_SEMAPHORE),
        )
    };
    if fd < 0 {
        return err(errno());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let vfl = libc::O_RDWR | (flags & libc::O_NONBLOCK);
    r(k.install(
        tid,
        OpenFile::new(
            FileKind::Host {
                fd,
                kind: HostKind::Stream,
            },
            "anon_inode:[eventfd]",
            vfl,
        ),
        flags & libc::O_CLOEXEC != 0,
    ))
}
