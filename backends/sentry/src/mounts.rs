//! Mounts the sentry makes in its private mount namespace, all by descriptor.
//!
//! Every destination from the bundle (a spec mount, `process.cwd`) is resolved inside the sandbox
//! root with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so a symlink in the rootfs
//! (`/data -> /proc`, `/x -> /etc`) resolves to a place inside the root, as it would for the
//! workload. Missing components are created one at a time on the resolved parent descriptor
//! (`mkdirat`, `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`), and the new mount is attached to the
//! resolved descriptor with the new mount API (`open_tree`/`fsopen` + `move_mount` with
//! `MOVE_MOUNT_T_EMPTY_PATH`), never to a path the host kernel would walk again.
//!
//! The wrappers are hand-written: libc has the syscall numbers and structs, nix has no binding for
//! the new mount API.

use crate::vfs::{cstr, normalize, Vfs};
use anyhow::{bail, Result};
use std::ffi::CString;
use std::io::Error;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Every mount hako makes for a sandbox carries these: nothing the workload writes (a setuid
/// binary, a device node) means anything to the host through it.
pub const ALWAYS: u64 = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;

fn fd_ret(r: libc::c_long, what: &str) -> Result<OwnedFd> {
    if r < 0 {
        bail!("{what}: {}", Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

fn rc(r: libc::c_long, what: &str) -> Result<()> {
    if r < 0 {
        bail!("{what}: {}", Error::last_os_error());
    }
    Ok(())
}

/// A detached copy of the host tree at `src` (recursive for rbind).
pub fn clone_tree(src: &str, recursive: bool) -> Result<OwnedFd> {
    let c = CString::new(src)?;
    let flags = libc::OPEN_TREE_CLONE
        | libc::OPEN_TREE_CLOEXEC
        | if recursive {
            libc::AT_RECURSIVE as libc::c_uint
        } else {
            0
        };
    // SAFETY: open_tree with a valid C string.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    fd_ret(r, &format!("bind source {src}"))
}

/// A new, detached tmpfs mount with the given `key=value` parameters (mode, size, nr_inodes).
pub fn new_tmpfs(params: &[(&str, &str)], attrs: u64) -> Result<OwnedFd> {
    new_fs("tmpfs", params, attrs)
}

/// A new, detached mount of a file system of type `fstype` that needs no source (tmpfs, a new
/// devpts instance), with the given `key=value` parameters.
pub fn new_fs(fstype: &str, params: &[(&str, &str)], attrs: u64) -> Result<OwnedFd> {
    let t = CString::new(fstype)?;
    // SAFETY: fsopen/fsconfig/fsmount with valid C strings and descriptors we own.
    unsafe {
        let fs = fd_ret(
            libc::syscall(libc::SYS_fsopen, t.as_ptr(), libc::FSOPEN_CLOEXEC),
            &format!("fsopen({fstype})"),
        )?;
        for (k, v) in params {
            let (ck, cv) = (CString::new(*k)?, CString::new(*v)?);
            rc(
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    libc::FSCONFIG_SET_STRING,
                    ck.as_ptr(),
                    cv.as_ptr(),
                    0,
                ),
                &format!("{fstype} option {k}={v}"),
            )?;
        }
        rc(
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                libc::FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_char>(),
                0,
            ),
            &format!("creating a {fstype}"),
        )?;
        fd_ret(
            libc::syscall(
                libc::SYS_fsmount,
                fs.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC,
                attrs,
            ),
            &format!("fsmount({fstype})"),
        )
    }
}

/// Set mount attributes on the mount at `fd` (which must be the root of a mount).
pub fn set_attrs(fd: RawFd, set: u64, recursive: bool) -> Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr on our descriptor with a valid struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    rc(r, "mount_setattr")
}

/// Attach the detached mount `tree` onto the (already resolved) destination `target`.
pub fn attach(tree: &OwnedFd, target: &OwnedFd) -> Result<()> {
    // SAFETY: move_mount between two descriptors we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    rc(r, "move_mount")
}

/// Whether the mount behind `fd` is read-only.
pub fn is_readonly(fd: RawFd) -> Result<bool> {
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatvfs into a local struct.
    if unsafe { libc::fstatvfs(fd, &mut s) } != 0 {
        bail!("fstatvfs: {}", Error::last_os_error());
    }
    Ok(s.f_flag & libc::ST_RDONLY != 0)
}

/// Resolve `dest` (an absolute path as the workload names it) inside the root, creating what is
/// missing: directories on the way, and the last component as a directory (`dir`) or an empty
/// file. Returns an O_PATH descriptor of the destination. Nothing is ever created or opened
/// outside the root: each component is created on the descriptor of its resolved parent, never
/// following a symlink in the last component (a dangling symlink is an error, not a hint).
pub fn resolve_in_root(root: &Vfs, dest: &str, dir: bool) -> Result<OwnedFd> {
    let norm = normalize(dest);
    let rel = norm.trim_start_matches('/');
    if rel.is_empty() {
        return root
            .open("", libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| anyhow::anyhow!("opening the root: {}", Error::from_raw_os_error(e)));
    }
    let comps: Vec<&str> = rel.split('/').collect();
    let mut cur = root
        .open("", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| anyhow::anyhow!("opening the root: {}", Error::from_raw_os_error(e)))?;
    for (i, name) in comps.iter().enumerate() {
        let prefix = comps[..=i].join("/");
        let last = i + 1 == comps.len();
        let want_dir = !last || dir;
        let oflags = libc::O_PATH | if want_dir { libc::O_DIRECTORY } else { 0 };
        let fail = |e: i32| anyhow::anyhow!("/{prefix}: {}", Error::from_raw_os_error(e));
        match root.open(&prefix, oflags, 0) {
            Ok(fd) => cur = fd,
            Err(libc::ENOENT) => {
                let c = cstr(name).map_err(fail)?;
                // SAFETY: *at calls on the resolved parent's descriptor.
                let r = unsafe {
                    if want_dir {
                        libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755)
                    } else {
                        let fd = libc::openat(
                            cur.as_raw_fd(),
                            c.as_ptr(),
                            libc::O_WRONLY
                                | libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_NOFOLLOW
                                | libc::O_CLOEXEC,
                            0o644,
                        );
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        fd.min(0)
                    }
                };
                if r != 0 {
                    let e = Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                    if e == libc::EEXIST {
                        // It was there but did not resolve: a symlink leading out of the root
                        // or nowhere. Followed inside the root, it leads nowhere: refused.
                        bail!("/{prefix} is a symlink that leads nowhere inside the root");
                    }
                    return Err(fail(e));
                }
                cur = root.open(&prefix, oflags, 0).map_err(fail)?;
            }
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // Absolute symlink to a host directory: dangling inside the root, so refused.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        // Symlinks that resolve inside the root (to its /etc), however they are spelt.
        std::os::unix::fs::symlink("/etc", root.join("etc-abs")).unwrap();
        std::os::unix::fs::symlink("../../../etc", root.join("etc-rel")).unwrap();
        let v = Vfs::new(root.to_str().unwrap()).unwrap();
        assert!(resolve_in_root(&v, "/abs/a", true).is_err());
        assert!(resolve_in_root(&v, "/abs", false).is_err());
        resolve_in_root(&v, "/etc-abs/a/b", true).unwrap();
        resolve_in_root(&v, "/etc-rel/c", true).unwrap();
        resolve_in_root(&v, "/etc-abs/file", false).unwrap();
        resolve_in_root(&v, "/../../outside/d", true).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(root.join("etc/a/b").is_dir());
        assert!(root.join("etc/c").is_dir());
        assert!(root.join("etc/file").is_file());
        assert!(root.join("outside/d").is_dir());
    }
}
