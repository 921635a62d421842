//! Metadata changes: chmod, chown, truncate and the utimes family, by path or by descriptor,
//! and the descriptor calls that only flush or hint (fsync, fdatasync, fallocate, flock...).
//! The permission decision is the sentry's (`may_setattr`): the host call runs as root.

use super::{dirfd_of, err, errno, Call, Outcome};
use crate::kernel::creds::{chmod_mode, may, may_chown};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{fstat_fd, Node};
use std::os::fd::AsRawFd;
use syscalls::Sysno;

/// chmod, fchmodat, chown, lchown, fchownat, truncate, utimensat, utimes, utime, futimesat:
/// open the object (O_PATH) in-root, then act on that descriptor.
pub fn setattr_path<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    // Path-based metadata changes: open the object (O_PATH) in-root, then act on it.
    let (dirfd, p, follow) = match s {
        chmod | chown | truncate | utimes | utime => {
            (libc::AT_FDCWD, tri!(k.read_path(tid, a[0])), true)
        }
        lchown => (libc::AT_FDCWD, tri!(k.read_path(tid, a[0])), false),
        fchmodat => (dirfd_of(a[0]), tri!(k.read_path(tid, a[1])), true),
        fchownat => (
            dirfd_of(a[0]),
            tri!(k.read_path(tid, a[1])),
            a[4] as i32 & libc::AT_SYMLINK_NOFOLLOW == 0,
        ),
        futimesat => (dirfd_of(a[0]), tri!(k.read_path(tid, a[1])), true),
        _ => {
            if a[1] == 0 {
                // utimensat(fd, NULL, ...): the fd itself
                let f = tri!(k.file(tid, a[0]));
                let Some(h) = f.borrow().host_fd() else {
                    return err(libc::EROFS);
                };
                if let Err(e) = fstat_fd(h).and_then(|st| may_setattr(k, tid, s, &a, &st)) {
                    return err(e);
                }
                let ts = if a[2] == 0 {
                    None
                } else {
                    k.read_val::<[libc::timespec; 2]>(tid, a[2]).ok()
                };
                // SAFETY: futimens on our fd.
                let rc = unsafe {
                    libc::futimens(h, ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()))
                };
                return if rc < 0 {
                    err(errno())
                } else {
                    Outcome::Ret(0)
                };
            }
            (
                dirfd_of(a[0]),
                tri!(k.read_path(tid, a[1])),
                a[3] as i32 & libc::AT_SYMLINK_NOFOLLOW == 0,
            )
        }
    };
    let node = match k.lookup(tid, dirfd, &p, follow) {
        Err(e) => return err(e),
        Ok(Node::Synth(_)) => return err(libc::EPERM),
        Ok(node) => node,
    };
    let oflags = if s == truncate {
        libc::O_WRONLY
    } else {
        libc::O_PATH
    } | if follow { 0 } else { libc::O_NOFOLLOW };
    let fd = match node.open_host(&k.vfs, oflags, 0) {
        Ok(fd) => fd,
        Err(e) => return err(e),
    };
    let h = fd.as_raw_fd();
    // The permission decision is the sentry's: the host call below runs as root.
    let newmode = match fstat_fd(h).and_then(|st| {
        dir_mode_changes(k, s, &st);
        may_setattr(k, tid, s, &a, &st)
    }) {
        Ok(m) => m,
        Err(e) => return err(e),
    };
    // SAFETY: metadata calls on our (O_PATH) fd itself, never through a /proc path.
    let rc = unsafe {
        match s {
            chmod | fchmodat => libc::syscall(
                libc::SYS_fchmodat2,
                h,
                c"".as_ptr(),
                newmode as libc::mode_t & 0o7777,
                libc::AT_EMPTY_PATH,
            ) as i32,
            chown | lchown => libc::fchownat(
                h,
                c"".as_ptr(),
                a[1] as u32,
                a[2] as u32,
                libc::AT_EMPTY_PATH,
            ),
            fchownat => libc::fchownat(
                h,
                c"".as_ptr(),
                a[2] as u32,
                a[3] as u32,
                libc::AT_EMPTY_PATH,
            ),
            truncate => libc::ftruncate(h, a[1] as i64),
            utimensat => {
                let ts = if a[2] == 0 {
                    None
                } else {
                    k.read_val::<[libc::timespec; 2]>(tid, a[2]).ok()
                };
                libc::utimensat(
                    h,
                    c"".as_ptr(),
                    ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
                    libc::AT_EMPTY_PATH,
                )
            }
            _ => libc::utimensat(h, c"".as_ptr(), std::ptr::null(), libc::AT_EMPTY_PATH),
        }
    };
    if rc < 0 {
        err(errno())
    } else {
        Outcome::Ret(0)
    }
}

/// fchmod, fchown, ftruncate, fsync, fdatasync, fallocate, flock, fadvise64, syncfs.
pub fn setattr_fd<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let f = tri!(k.file(tid, a[0]));
    let Some(h) = f.borrow().host_fd() else {
        return if matches!(s, fsync | fdatasync | flock | fadvise64 | syncfs) {
            Outcome::Ret(0)
        } else {
            err(libc::EINVAL)
        };
    };
    let newmode = if matches!(s, fchmod | fchown) {
        match fstat_fd(h).and_then(|st| {
            dir_mode_changes(k, s, &st);
            may_setattr(k, tid, s, &a, &st)
        }) {
            Ok(m) => m,
            Err(e) => return err(e),
        }
    } else {
        0
    };
    // SAFETY: calls on our own fd.
    let rc = unsafe {
        match s {
            fchmod => libc::fchmod(h, newmode as libc::mode_t),
            fchown => libc::fchown(h, a[1] as u32, a[2] as u32),
            ftruncate => libc::ftruncate(h, a[1] as i64),
            fsync | syncfs => libc::fsync(h),
            fdatasync => libc::fdatasync(h),
            fallocate => libc::fallocate(h, a[1] as i32, a[2] as i64, a[3] as i64),
            flock => 0,
            _ => 0,
        }
    };
    if rc < 0 {
        err(errno())
    } else {
        Outcome::Ret(0)
    }
}

/// A chmod or chown of a directory changes who may search it: drop what the search-permission
/// walk cached (`vfs::DirCache`). Other files and other metadata calls leave it alone.
fn dir_mode_changes<P: Platform>(k: &Kernel<P>, s: Sysno, st: &libc::stat) {
    use Sysno::*;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR
        && matches!(
            s,
            chmod | fchmodat | fchmod | chown | lchown | fchownat | fchown
        )
    {
        k.vfs.dirs.borrow_mut().changed();
    }
}

/// The permission check of a metadata change (chmod, chown, truncate, utimes families) on
/// the file `st`, with the syscall's arguments `a`; returns the mode chmod applies.
fn may_setattr<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    s: Sysno,
    a: &[u64; 6],
    st: &libc::stat,
) -> Result<u32, i32> {
    use Sysno::*;
    let c = k.creds(tid);
    let chown_to = |u: u64, g: u64| {
        if may_chown(st, &c, u as u32, g as u32) {
            Ok(0)
        } else {
            Err(libc::EPERM)
        }
    };
    // Setting times to "now": the owner, CAP_FOWNER, or anyone who may write the file.
    let touch = || {
        if c.owns(st) || may(st, &c, 2) {
            Ok(0)
        } else {
            Err(libc::EACCES)
        }
    };
    match s {
        chmod | fchmod => chmod_mode(st, &c, a[1] as u32),
        fchmodat => chmod_mode(st, &c, a[2] as u32),
        chown | lchown | fchown => chown_to(a[1], a[2]),
        fchownat => chown_to(a[2], a[3]),
        truncate => {
            if may(st, &c, 2) {
                Ok(0)
            } else {
                Err(libc::EACCES)
            }
        }
        utimensat if a[2] != 0 => {
            let ts: [libc::timespec; 2] = k.read_val(tid, a[2])?;
            let now = |t: &libc::timespec| t.tv_nsec == libc::UTIME_NOW;
            let omit = |t: &libc::timespec| t.tv_nsec == libc::UTIME_OMIT;
            if ts.iter().all(omit) || ts.iter().all(|t| now(t) || omit(t)) {
                touch()
            } else if c.owns(st) {
                Ok(0)
            } else {
                Err(libc::EPERM)
            }
        }
        // utimensat(NULL times), and utimes/utime/futimesat, which apply "now".
        _ => touch(),
    }
}

/// sync: the sandbox's writes reach the overlay as the host's page cache has them; nothing to do.
pub fn sync<P: Platform>(_k: &mut Kernel<P>, _c: &mut Call) -> Outcome {
    Outcome::Ret(0)
}
