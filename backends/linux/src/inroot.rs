//! Paths from a bundle, resolved inside the sandbox's root: every symlink and `..` as if the
//! root were `/`, so nothing a bundle or a workload wrote can lead out of it.
//!
//! Two forms:
//! - [`open`]: a descriptor, by openat2(2) with `RESOLVE_IN_ROOT` (Linux 5.6): the kernel walks
//!   the path, so a rename racing the walk cannot lead out either. Kernels without openat2 (or a
//!   seccomp filter that refuses it with ENOSYS) fall back to [`join`] and an `O_NOFOLLOW` open
//!   of the result: the same answer, but a symlink swapped in between the walk and the open of a
//!   directory on the way can still escape. Use it where the root is not shared with a running
//!   workload, or prefer a kernel with openat2.
//! - [`join`]: a host path, for calls that need one (mount targets that may not exist yet). A
//!   lexical walk that reads each symlink it meets; missing components are taken as written.
//!
//! libc and std only: the microvm guest agent (a static musl binary) uses it too.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// The kernel's `struct open_how`. Hand-written: libc has the syscall number but not the struct
/// on every target (musl among them).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): `path` below `dir` with `flags` (O_CLOEXEC always added) and the `resolve` rules.
/// Leading slashes are dropped and an empty path means `dir` itself; `mode` counts with O_CREAT
/// or O_TMPFILE only. Retried on EAGAIN and EINTR.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let c = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            (mode & 0o7777) as u64
        } else {
            0
        },
        resolve,
    };
    loop {
        // SAFETY: openat2 with a valid open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            return Err(e);
        }
    }
}

/// `path` with its leading slashes dropped, the rest as written (a trailing slash or a `.` keeps
/// its meaning for the kernel); "." when nothing is left.
fn relative(path: &Path) -> PathBuf {
    let b = path.as_os_str().as_bytes();
    let start = b.iter().position(|&c| c != b'/').unwrap_or(b.len());
    if start == b.len() {
        PathBuf::from(".")
    } else {
        PathBuf::from(std::ffi::OsStr::from_bytes(&b[start..]))
    }
}

/// Open `path` (absolute or relative, in the sandbox's view) inside the directory `root`,
/// symlinks and `..` resolved as if `root` were `/`; magic links (/proc/*/fd) are refused.
pub fn open(root: BorrowedFd<'_>, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    match openat2(
        root,
        path,
        flags,
        mode,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            // No openat2: walk in user space from the root's host path, then refuse a symlink
            // in the last place.
            let root_path = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))?;
            let host = join(&root_path, path)?;
            let c = CString::new(host.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte")
            })?;
            // SAFETY: open with a valid C string.
            let fd = unsafe {
                libc::open(
                    c.as_ptr(),
                    flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    mode as libc::c_uint,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor we own.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        r => r,
    }
}

/// Join `path` to `root`, resolving symlinks as if `root` were `/` (nothing escapes): `..` at
/// the root stays there, an absolute link target restarts at the root. Components that do not
/// exist are taken as written. More than 255 symlinks on the way is an error (ELOOP).
pub fn join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut todo: VecDeque<OsString> = components(path);
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let cand = resolved.join(&c);
        match std::fs::symlink_metadata(root.join(&cand)) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(io::Error::other(format!(
                        "too many symlinks resolving {}",
                        path.display()
                    )));
                }
                let target = std::fs::read_link(root.join(&cand))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for t in components(&target).into_iter().rev() {
                    todo.push_front(t);
                }
            }
            _ => resolved = cand,
        }
    }
    Ok(root.join(resolved))
}

fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn tree(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hako-inroot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), "in").unwrap();
        std::os::unix::fs::symlink("/a", d.join("abs")).unwrap();
        std::os::unix::fs::symlink("../..", d.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink("/../../../etc/hostname", d.join("out")).unwrap();
        d
    }

    #[test]
    fn join_stays_inside() {
        let d = tree("join");
        assert_eq!(join(&d, Path::new("/abs/b")).unwrap(), d.join("a/b"));
        assert_eq!(join(&d, Path::new("/a/b/up/etc")).unwrap(), d.join("etc"));
        assert_eq!(join(&d, Path::new("/../../x")).unwrap(), d.join("x"));
        assert_eq!(join(&d, Path::new("out")).unwrap(), d.join("etc/hostname"));
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        assert!(join(&d, Path::new("/loop")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn open_stays_inside() {
        let d = tree("open");
        let root = std::fs::File::open(&d).unwrap();
        let f = open(
            root.as_fd(),
            Path::new("/abs/b/up/a/b/f"),
            libc::O_RDONLY,
            0,
        );
        let mut got = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(f.unwrap()), &mut got).unwrap();
        assert_eq!(got, "in");
        // The link to the host's /etc/hostname resolves to the root's own etc/hostname: absent.
        let e = open(root.as_fd(), Path::new("/out"), libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        // Empty and "/" name the root itself; a trailing slash still means "a directory".
        assert!(open(root.as_fd(), Path::new("/"), libc::O_PATH, 0).is_ok());
        assert!(open(root.as_fd(), Path::new(""), libc::O_PATH, 0).is_ok());
        let e = open(root.as_fd(), Path::new("/a/b/f/"), libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
