//! `openat2(2)`, the one way the sentry opens a path: beneath its /proc handle (`hostproc`) or in
//! the sandbox root (`vfs`). At the bottom of the sentry's modules: it imports none of them.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// `openat2(dirfd, path, flags, mode, resolve)`, retried on EAGAIN/EINTR. An empty path means
/// `dirfd` itself (".", resolved under the same rules). Hand-written: libc has the syscall number
/// but no `open_how`, and nix's wrapper would add a second spelling of the same thing.
pub fn openat2(
    dirfd: RawFd,
    path: &str,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd, i32> {
    let p = if path.trim_start_matches('/').is_empty() {
        "."
    } else {
        path.trim_start_matches('/')
    };
    let c = std::ffi::CString::new(p).map_err(|_| libc::EINVAL)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            mode as u64 & 0o7777
        } else {
            0
        },
        resolve,
    };
    loop {
        // SAFETY: openat2 with a valid open_how.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = last_errno();
        if e != libc::EAGAIN && e != libc::EINTR {
            return Err(e);
        }
    }
}
