//! stat and its relatives (fstat, lstat, newfstatat, statx), access, readlink, statfs: what the
//! workload learns about a file without opening it. Synthesized nodes get a stat made up here.

use super::{dirfd_of, err, errno, Call, Outcome};
use crate::kernel::creds::may;
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{fstat_fd, normalize, synth_ino, DevKind, FileKind, Node, OpenFile, Synth};
use std::os::fd::AsRawFd;
use syscalls::Sysno;

pub fn fstat<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let f = tri!(k.file(tid, a[0]));
    let st = file_stat(&f.borrow());
    match st {
        Ok(st) => write_stat(k, tid, a[1], &st),
        Err(e) => err(e),
    }
}

/// stat, lstat.
pub fn stat<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let p = tri!(k.read_path(tid, a[0]));
    match stat_node(k, tid, libc::AT_FDCWD, &p, s == stat) {
        Ok(st) => write_stat(k, tid, a[1], &st),
        Err(e) => err(e),
    }
}

/// newfstatat, statx.
pub fn newfstatat<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (dirfd, flags) = (
        dirfd_of(a[0]),
        if s == newfstatat {
            a[3] as i32
        } else {
            a[2] as i32
        },
    );
    let p = tri!(k.read_path(tid, a[1]));
    let st = if p.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        if dirfd == libc::AT_FDCWD {
            // The cwd itself (a removed one too, as on Linux).
            let cwd = k.proc_of(tid).borrow().cwd.clone();
            match cwd {
                crate::kernel::Cwd::Held(d) => fstat_fd(d.fd()),
                crate::kernel::Cwd::Path(p) => stat_node(k, tid, dirfd, &p, true),
            }
        } else {
            k.file(tid, dirfd as u64)
                .and_then(|f| file_stat(&f.borrow()))
        }
    } else {
        stat_node(k, tid, dirfd, &p, flags & libc::AT_SYMLINK_NOFOLLOW == 0)
    };
    match st {
        Err(e) => err(e),
        Ok(st) if s == newfstatat => write_stat(k, tid, a[2], &st),
        Ok(st) => match k.write_val(tid, a[4], &statx_of(&st)) {
            Ok(()) => Outcome::Ret(0),
            Err(e) => err(e),
        },
    }
}

/// access, faccessat, faccessat2.
pub fn access<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (dirfd, p, mode, flags) = if s == access {
        (libc::AT_FDCWD, tri!(k.read_path(tid, a[0])), a[1] as u32, 0)
    } else {
        (
            dirfd_of(a[0]),
            tri!(k.read_path(tid, a[1])),
            a[2] as u32,
            if s == faccessat2 { a[3] as i32 } else { 0 },
        )
    };
    match stat_node(k, tid, dirfd, &p, flags & libc::AT_SYMLINK_NOFOLLOW == 0) {
        Err(e) => err(e),
        Ok(st) => {
            let c = k.creds(tid);
            if mode == 0 || may(&st, &c, mode & 7) {
                Outcome::Ret(0)
            } else {
                err(libc::EACCES)
            }
        }
    }
}

/// readlink, readlinkat.
pub fn readlink<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (dirfd, p, buf, size) = if s == readlink {
        (libc::AT_FDCWD, tri!(k.read_path(tid, a[0])), a[1], a[2])
    } else {
        (dirfd_of(a[0]), tri!(k.read_path(tid, a[1])), a[2], a[3])
    };
    let target = match k.lookup(tid, dirfd, &p, false) {
        Err(e) => return err(e),
        Ok(Node::Synth(Synth::Link(t))) => t,
        Ok(Node::Synth(Synth::Fd(f))) => f.borrow().path.clone(),
        // "." of a removed directory: a directory, no link.
        Ok(Node::Synth(_) | Node::Removed(_)) => return err(libc::EINVAL),
        Ok(Node::Host(rel)) => {
            let fd = match k.vfs.open(&rel, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                Ok(fd) => fd,
                Err(e) => return err(e),
            };
            let mut b = vec![0u8; 4096];
            // SAFETY: readlinkat with an empty path on an O_PATH symlink fd.
            let n = unsafe {
                libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), b.as_mut_ptr().cast(), b.len())
            };
            if n < 0 {
                let e = errno();
                return err(if e == libc::ENOENT { libc::EINVAL } else { e });
            }
            b.truncate(n as usize);
            String::from_utf8_lossy(&b).into_owned()
        }
    };
    let bytes = target.as_bytes();
    let n = bytes.len().min(size as usize);
    match k.write_bytes(tid, buf, &bytes[..n]) {
        Ok(()) => Outcome::Ret(n as i64),
        Err(e) => err(e),
    }
}

/// statfs, fstatfs: the sandbox root's file system.
pub fn statfs<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    // The file system of a host-backed file (the root's overlay, a bind mount, the /dev/shm
    // tmpfs); a synthesized file reports the root's.
    let mut opened = None;
    let h = if s == fstatfs {
        match k.file(tid, a[0]) {
            Ok(f) => f.borrow().host_fd(),
            Err(e) => return err(e),
        }
    } else {
        let p = match k.read_path(tid, a[0]) {
            Ok(p) => p,
            Err(e) => return err(e),
        };
        match k.lookup(tid, libc::AT_FDCWD, &p, true) {
            Ok(Node::Synth(_)) => None,
            Ok(node) => match node.open_host(&k.vfs, libc::O_PATH, 0) {
                Ok(fd) => Some(opened.insert(fd).as_raw_fd()),
                Err(e) => return err(e),
            },
            Err(e) => return err(e),
        }
    };
    let h = h.unwrap_or(k.vfs.root.as_raw_fd());
    // SAFETY: fstatfs of one of our descriptors into a local struct.
    let rc = unsafe { libc::fstatfs(h, &mut sf) };
    if rc < 0 {
        return err(errno());
    }
    match k.write_val(tid, a[1], &sf) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    }
}

fn write_stat<P: Platform>(k: &Kernel<P>, tid: i32, addr: u64, st: &libc::stat) -> Outcome {
    match k.write_val(tid, addr, st) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    }
}
pub fn stat_node<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    dirfd: i32,
    path: &str,
    follow: bool,
) -> Result<libc::stat, i32> {
    match k.lookup(tid, dirfd, path, follow)? {
        Node::Host(rel) => k.vfs.stat_cached(&rel, follow),
        Node::Removed(fd) => fstat_fd(fd.as_raw_fd()),
        Node::Synth(Synth::Fd(f)) if !follow => {
            let p = f.borrow().path.clone();
            Ok(synth_stat(&Synth::Link(p), path))
        }
        Node::Synth(s) => Ok(synth_stat(&s, &normalize(path))),
    }
}
fn synth_stat(s: &Synth, path: &str) -> libc::stat {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = 0x3; // "proc"
    st.st_ino = synth_ino(path);
    st.st_nlink = 1;
    st.st_blksize = 4096;
    match s {
        Synth::File(d) => {
            st.st_mode = libc::S_IFREG | 0o444;
            st.st_size = d.len() as i64;
        }
        Synth::Dir(_) => {
            st.st_mode = libc::S_IFDIR | 0o555;
            st.st_nlink = 2;
        }
        Synth::Link(t) => {
            st.st_mode = libc::S_IFLNK | 0o777;
            st.st_size = t.len() as i64;
        }
        Synth::Dev(k) => {
            st.st_mode = libc::S_IFCHR | 0o666;
            let minor = match k {
                DevKind::Null => 3,
                DevKind::Zero => 5,
                DevKind::Full => 7,
                DevKind::Random => 9,
            };
            st.st_rdev = libc::makedev(1, minor);
        }
        Synth::Fd(f) => return file_stat(&f.borrow()).unwrap_or(st),
        Synth::Pty(n) => {
            // ptmx is (5, 2); pty N is (136, N) — the numbers Linux gives them.
            st.st_mode = libc::S_IFCHR | if n == "ptmx" { 0o666 } else { 0o620 };
            st.st_rdev = match n.parse::<u32>() {
                Ok(n) => libc::makedev(136, n),
                Err(_) => libc::makedev(5, 2),
            };
        }
    }
    st
}

pub fn file_stat(f: &OpenFile) -> Result<libc::stat, i32> {
    match &f.kind {
        FileKind::Host { fd, .. } => fstat_fd(fd.as_raw_fd()),
        FileKind::Synth { data, .. } => Ok(synth_stat(&Synth::File(data.clone()), &f.path)),
        FileKind::Dir { .. } => Ok(synth_stat(&Synth::Dir(vec![]), &f.path)),
        FileKind::Dev(k) => Ok(synth_stat(&Synth::Dev(*k), &f.path)),
        FileKind::Epoll(_) => Ok(synth_stat(&Synth::File(vec![]), "anon_inode:[eventpoll]")),
        FileKind::Signal { .. } => Ok(synth_stat(&Synth::File(vec![]), "anon_inode:[signalfd]")),
    }
}

fn statx_of(st: &libc::stat) -> libc::statx {
    let mut x: libc::statx = unsafe { std::mem::zeroed() };
    x.stx_mask = libc::STATX_BASIC_STATS;
    x.stx_blksize = st.st_blksize as u32;
    x.stx_nlink = st.st_nlink as u32;
    x.stx_uid = st.st_uid;
    x.stx_gid = st.st_gid;
    x.stx_mode = st.st_mode as u16;
    x.stx_ino = st.st_ino;
    x.stx_size = st.st_size as u64;
    x.stx_blocks = st.st_blocks as u64;
    x.stx_atime.tv_sec = st.st_atime;
    x.stx_atime.tv_nsec = st.st_atime_nsec as u32;
    x.stx_mtime.tv_sec = st.st_mtime;
    x.stx_mtime.tv_nsec = st.st_mtime_nsec as u32;
    x.stx_ctime.tv_sec = st.st_ctime;
    x.stx_ctime.tv_nsec = st.st_ctime_nsec as u32;
    x.stx_rdev_major = libc::major(st.st_rdev);
    x.stx_rdev_minor = libc::minor(st.st_rdev);
    x.stx_dev_major = libc::major(st.st_dev);
    x.stx_dev_minor = libc::minor(st.st_dev);
    x
}
