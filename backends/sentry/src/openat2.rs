//! `openat2(2)`, the one way the sentry opens a path: beneath its /proc handle (`hostproc`) or in
//! the sandbox root (`vfs`). At the bottom of the sentry's modules: it imports none of them. The
//! call itself is `hako_linux::inroot::openat2`; this adapter gives the errno as the error, as
//! the syscall handlers need it.

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

pub use hako_linux::inroot::{
    RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV,
};

pub fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `openat2(dirfd, path, flags, mode, resolve)`, retried on EAGAIN/EINTR. An empty path means
/// `dirfd` itself (".", resolved under the same rules).
pub fn openat2(
    dirfd: RawFd,
    path: &str,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd, i32> {
    // SAFETY: the caller's descriptor, borrowed for this call only.
    let dir = unsafe { BorrowedFd::borrow_raw(dirfd) };
    hako_linux::inroot::openat2(dir, std::path::Path::new(path), flags, mode, resolve)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
}
