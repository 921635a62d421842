//! Directories and their entries: getdents64, getcwd, chdir, and the calls that add, remove or
//! rename an entry (mkdir, mknod, rmdir, unlink, rename, link, symlink). Each entry change is
//! permission-checked against the caller's virtual creds, then made on the parent's host
//! descriptor, never through a host path.

use super::{dirfd_of, err, errno, Call, Outcome, CHUNK};
use crate::kernel::creds::{may, Entry};
use crate::kernel::{Cwd, Kernel};
use crate::platform::Platform;
use crate::vfs::{fstat_fd, normalize, FileKind, HeldDir, HostKind, Node, Synth};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use syscalls::Sysno;

/// Change the entry `$p` (relative to `$dirfd`) of its parent directory with `$call(parent fd,
/// name)`, after the permission check of what the call does to the entry (`Entry`, default
/// `Create`).
macro_rules! host_at {
    ($k:expr, $tid:expr, $dirfd:expr, $p:expr, $call:expr) => {
        host_at!($k, $tid, $dirfd, $p, Entry::Create, $call)
    };
    ($k:expr, $tid:expr, $dirfd:expr, $p:expr, $what:expr, $call:expr) => {{
        let parent = $k.host_parent($tid, $dirfd, &$p).and_then(|(pfd, name)| {
            $k.may_change($tid, pfd.as_raw_fd(), &name, $what)?;
            Ok((pfd, name))
        });
        match parent {
            Err(e) => err(e),
            Ok((pfd, name)) => {
                if $what != Entry::Create {
                    // A name goes away: paths the walk cached may now lead elsewhere.
                    $k.vfs.dirs.borrow_mut().changed();
                }
                #[allow(clippy::redundant_closure_call)]
                let rc = ($call)(pfd.as_raw_fd(), name.as_ptr());
                if rc < 0 {
                    err(errno())
                } else {
                    Outcome::Ret(0)
                }
            }
        }
    }};
}

pub fn getdents64<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let f = match k.file(c.tid, c.a[0]) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    let count = (c.a[2] as usize).min(CHUNK);
    let mut fb = f.borrow_mut();
    let out = match &mut fb.kind {
        FileKind::Host {
            fd,
            kind: HostKind::Dir,
        } => {
            // Not zero-filled first: the caller's buffer may be up to a chunk (1 MiB) and
            // the directory a few entries (issue 17: no large per-call fill).
            let mut buf: Vec<u8> = Vec::with_capacity(count);
            // SAFETY: getdents64 writes at most `count` bytes into the buffer's spare capacity
            // (that large); only what it wrote is then counted as the buffer's contents.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    count,
                )
            };
            if n < 0 {
                return err(errno());
            }
            // SAFETY: the kernel wrote the first n bytes (n <= count).
            unsafe { buf.set_len(n as usize) };
            buf
        }
        FileKind::Dir { entries, pos } => {
            let mut buf = Vec::new();
            while *pos < entries.len() {
                let e = &entries[*pos];
                let reclen = (19 + e.name.len() + 1 + 7) & !7;
                if buf.len() + reclen > count {
                    if buf.is_empty() {
                        return err(libc::EINVAL);
                    }
                    break;
                }
                let start = buf.len();
                buf.extend_from_slice(&e.ino.to_ne_bytes());
                buf.extend_from_slice(&((*pos + 1) as i64).to_ne_bytes());
                buf.extend_from_slice(&(reclen as u16).to_ne_bytes());
                buf.push(e.dtype);
                buf.extend_from_slice(e.name.as_bytes());
                buf.resize(start + reclen, 0);
                *pos += 1;
            }
            buf
        }
        _ => return err(libc::ENOTDIR),
    };
    drop(fb);
    match k.write_bytes(c.tid, c.a[1], &out) {
        Ok(()) => Outcome::Ret(out.len() as i64),
        Err(e) => err(e),
    }
}
pub fn getcwd<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    // A removed cwd has no path: ENOENT, as Linux's getcwd.
    let mut cwd = tri!(k.cwd_path(tid)).into_bytes();
    cwd.push(0);
    if cwd.len() > a[1] as usize {
        return err(libc::ERANGE);
    }
    match k.write_bytes(tid, a[0], &cwd) {
        Ok(()) => Outcome::Ret(cwd.len() as i64),
        Err(e) => err(e),
    }
}

/// chdir, fchdir. The new cwd is the directory itself (`Cwd`): a rename moves it along.
pub fn chdir<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let target = if s == chdir {
        let p = tri!(k.read_path(tid, a[0]));
        match k.lookup(tid, libc::AT_FDCWD, &p, true) {
            Err(e) => return err(e),
            Ok(Node::Synth(Synth::Dir(_))) => {
                let joined = if p.starts_with('/') {
                    p.clone()
                } else {
                    format!("{}/{p}", tri!(k.cwd_path(tid)))
                };
                Cwd::Path(normalize(&joined))
            }
            Ok(Node::Synth(_)) => return err(libc::ENOTDIR),
            // The directory itself: a path in the root, or a removed directory's "." (Linux
            // lets a process chdir into it there, as fchdir).
            Ok(node) => {
                let fd = tri!(node.open_host(&k.vfs, libc::O_PATH | libc::O_DIRECTORY, 0));
                // chdir needs search permission on the directory.
                match fstat_fd(fd.as_raw_fd()) {
                    Ok(st) if may(&st, &k.creds(tid), 1) => {}
                    Ok(_) => return err(libc::EACCES),
                    Err(e) => return err(e),
                }
                let at = k
                    .vfs
                    .virt_path_of(fd.as_raw_fd())
                    .unwrap_or_else(|| match &node {
                        Node::Host(rel) => normalize(&format!("/{rel}")),
                        _ => "/".to_string(),
                    });
                Cwd::Held(Rc::new(HeldDir::new(fd, at)))
            }
        }
    } else {
        let f = tri!(k.file(tid, a[0]));
        let fb = f.borrow();
        if !fb.is_dir() {
            return err(libc::ENOTDIR);
        }
        match fb.host_fd() {
            // The same directory, even a removed one (Linux lets fchdir into it).
            Some(h) => {
                let at = match k.vfs.dir_path(&fb, h) {
                    Ok(Some(p)) => p,
                    _ => fb.path.clone(),
                };
                // SAFETY: F_DUPFD_CLOEXEC of our own descriptor.
                let d = unsafe { libc::fcntl(h, libc::F_DUPFD_CLOEXEC, 0) };
                if d < 0 {
                    return err(errno());
                }
                // SAFETY: `d` is a new descriptor of ours.
                let fd = unsafe { OwnedFd::from_raw_fd(d) };
                Cwd::Held(Rc::new(HeldDir::new(fd, at)))
            }
            None => Cwd::Path(fb.path.clone()),
        }
    };
    k.proc_of(tid).borrow_mut().cwd = target;
    Outcome::Ret(0)
}

/// mkdir, mkdirat.
pub fn mkdir<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (dirfd, p, mode) = if s == mkdir {
        (libc::AT_FDCWD, tri!(k.read_path(tid, a[0])), a[1])
    } else {
        (dirfd_of(a[0]), tri!(k.read_path(tid, a[1])), a[2])
    };
    let um = k.proc_of(tid).borrow().umask;
    let cr = k.creds(tid);
    // SAFETY: *at syscalls on our fds.
    host_at!(k, tid, dirfd, p, |d, n| unsafe {
        let rc = libc::mkdirat(d, n, (mode as u32 & !um) as libc::mode_t);
        if rc == 0 && cr.euid != 0 {
            libc::fchownat(d, n, cr.euid, cr.egid, libc::AT_SYMLINK_NOFOLLOW);
        }
        rc
    })
}

/// mknod, mknodat: fifos and regular files only.
pub fn mknod<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (dirfd, p, mode) = if s == mknod {
        (libc::AT_FDCWD, tri!(k.read_path(tid, a[0])), a[1] as u32)
    } else {
        (dirfd_of(a[0]), tri!(k.read_path(tid, a[1])), a[2] as u32)
    };
    let fmt = mode & libc::S_IFMT;
    if fmt != libc::S_IFIFO && fmt != libc::S_IFREG && fmt != 0 {
        return err(libc::EPERM);
    }
    let um = k.proc_of(tid).borrow().umask;
    // SAFETY: mknodat of a fifo or regular file only.
    host_at!(k, tid, dirfd, p, |d, n| unsafe {
        libc::mknodat(d, n, (mode & !um) as libc::mode_t, 0)
    })
}

pub fn rmdir<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let p = tri!(k.read_path(tid, a[0]));
    // SAFETY: unlinkat on our fd.
    host_at!(k, tid, libc::AT_FDCWD, p, Entry::Remove, |d, n| unsafe {
        libc::unlinkat(d, n, libc::AT_REMOVEDIR)
    })
}

/// unlink, unlinkat.
pub fn unlink<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (dirfd, p, flags) = if s == unlink {
        (libc::AT_FDCWD, tri!(k.read_path(tid, a[0])), 0)
    } else {
        (dirfd_of(a[0]), tri!(k.read_path(tid, a[1])), a[2] as i32)
    };
    // SAFETY: unlinkat on our fd.
    host_at!(k, tid, dirfd, p, Entry::Remove, |d, n| unsafe {
        libc::unlinkat(d, n, flags & libc::AT_REMOVEDIR)
    })
}

/// rename, renameat, renameat2.
pub fn rename<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (d1, p1, d2, p2, flags) = if s == rename {
        (
            libc::AT_FDCWD,
            tri!(k.read_path(tid, a[0])),
            libc::AT_FDCWD,
            tri!(k.read_path(tid, a[1])),
            0,
        )
    } else {
        (
            dirfd_of(a[0]),
            tri!(k.read_path(tid, a[1])),
            dirfd_of(a[2]),
            tri!(k.read_path(tid, a[3])),
            if s == renameat2 { a[4] } else { 0 },
        )
    };
    let (f1, n1) = match k.host_parent(tid, d1, &p1) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let (f2, n2) = match k.host_parent(tid, d2, &p2) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    if let Err(e) = k
        .may_change(tid, f1.as_raw_fd(), &n1, Entry::Remove)
        .and_then(|()| k.may_change(tid, f2.as_raw_fd(), &n2, Entry::Replace))
    {
        return err(e);
    }
    // Both names change: paths the search-permission walk cached may now lead elsewhere.
    k.vfs.dirs.borrow_mut().changed();
    // SAFETY: renameat2 between our fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            f1.as_raw_fd(),
            n1.as_ptr(),
            f2.as_raw_fd(),
            n2.as_ptr(),
            flags,
        )
    };
    if rc < 0 {
        err(errno())
    } else {
        Outcome::Ret(0)
    }
}

/// link, linkat.
pub fn link<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (d1, p1, d2, p2) = if s == link {
        (
            libc::AT_FDCWD,
            tri!(k.read_path(tid, a[0])),
            libc::AT_FDCWD,
            tri!(k.read_path(tid, a[1])),
        )
    } else {
        (
            dirfd_of(a[0]),
            tri!(k.read_path(tid, a[1])),
            dirfd_of(a[2]),
            tri!(k.read_path(tid, a[3])),
        )
    };
    let (f1, n1) = match k.host_parent(tid, d1, &p1) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let (f2, n2) = match k.host_parent(tid, d2, &p2) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    if let Err(e) = k.may_change(tid, f2.as_raw_fd(), &n2, Entry::Create) {
        return err(e);
    }
    // SAFETY: linkat between our fds (no symlink following).
    let rc = unsafe { libc::linkat(f1.as_raw_fd(), n1.as_ptr(), f2.as_raw_fd(), n2.as_ptr(), 0) };
    if rc < 0 {
        err(errno())
    } else {
        Outcome::Ret(0)
    }
}

/// symlink, symlinkat.
pub fn symlink<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (target, dirfd, p) = if s == symlink {
        (
            tri!(k.read_path(tid, a[0])),
            libc::AT_FDCWD,
            tri!(k.read_path(tid, a[1])),
        )
    } else {
        (
            tri!(k.read_path(tid, a[0])),
            dirfd_of(a[1]),
            tri!(k.read_path(tid, a[2])),
        )
    };
    let t = match crate::vfs::cstr(&target) {
        Ok(t) => t,
        Err(e) => return err(e),
    };
    // SAFETY: symlinkat into our fd; the target is only text (resolved in-root later).
    host_at!(k, tid, dirfd, p, |d, n| unsafe {
        libc::symlinkat(t.as_ptr(), d, n)
    })
}
