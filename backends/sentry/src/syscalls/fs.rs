//! File syscalls: descriptors, I/O, paths, directories, pipes, poll.

use super::{caps, err, Call, Outcome};
use crate::kernel::{Creds, Kernel};
use crate::platform::Platform;
use crate::vfs::procfs::{synth_ino, Synth};
use crate::vfs::{fstat_fd, normalize, DevKind, FileKind, HostKind, Node, OpenFile};
use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use syscalls::Sysno;

const CHUNK: usize = 1 << 20;
const STDIO_CHUNK: usize = 4096;
/// The kernel's `struct termios` (TCGETS/TCSETS), not glibc's larger one.
const KERNEL_TERMIOS: usize = 36;

type FileRef = Rc<RefCell<OpenFile>>;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn ready(fd: RawFd, ev: i16) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: ev,
        revents: 0,
    };
    // SAFETY: poll on one of our fds without waiting.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

fn r(v: Result<i64, i32>) -> Outcome {
    match v {
        Ok(v) => Outcome::Ret(v),
        Err(e) => err(e),
    }
}

/// May `c` access the file `st` for `want` (r=4, w=2, x=1)? The kernel's
/// `generic_permission`: the owner/group/other bits, then CAP_DAC_READ_SEARCH (read, and search
/// of directories) and CAP_DAC_OVERRIDE (anything, but exec only of a file with some x bit).
pub fn may(st: &libc::stat, c: &Creds, want: u32) -> bool {
    let bits = if st.st_uid == c.euid {
        (st.st_mode >> 6) & 7
    } else if c.in_group(st.st_gid) {
        (st.st_mode >> 3) & 7
    } else {
        st.st_mode & 7
    };
    if bits & want == want {
        return true;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return (want & 2 == 0 && c.capable(caps::DAC_READ_SEARCH))
            || c.capable(caps::DAC_OVERRIDE);
    }
    (want == 4 && c.capable(caps::DAC_READ_SEARCH))
        || ((want & 1 == 0 || st.st_mode & 0o111 != 0) && c.capable(caps::DAC_OVERRIDE))
}

/// What a path call does to the entry `name` of a directory, for [`may_entry`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// mkdir, mknod, symlink, link target, O_CREAT: an existing entry is EEXIST first.
    Create,
    /// unlink, rmdir, rename source: a missing entry is ENOENT first.
    Remove,
    /// rename target: may or may not exist.
    Replace,
}

/// May `c` change the entry `name` of directory `dir`? Write and search on the directory, and
/// in a sticky directory ownership of the entry or the directory (or CAP_FOWNER). Errors come
/// in the kernel's order: EEXIST / ENOENT from the lookup before EACCES, so `mkdir -p` of an
/// existing directory in a read-only parent still sees EEXIST.
fn may_entry(dir: RawFd, name: &std::ffi::CStr, c: &Creds, what: Entry) -> Result<(), i32> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat on our fd into a local struct.
    let exists =
        unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0;
    match (what, exists) {
        (Entry::Create, true) => return Err(libc::EEXIST),
        (Entry::Remove, false) => return Err(libc::ENOENT),
        _ => {}
    }
    let dst = fstat_fd(dir)?;
    if !may(&dst, c, 3) {
        return Err(libc::EACCES);
    }
    if exists
        && dst.st_mode & libc::S_ISVTX != 0
        && st.st_uid != c.euid
        && dst.st_uid != c.euid
        && !c.capable(caps::FOWNER)
    {
        return Err(libc::EPERM);
    }
    Ok(())
}

/// chown's rule (the kernel's `chown_ok`/`chgrp_ok`): CAP_CHOWN, or the owner leaving the
/// owner as it is and choosing a group of its own.
fn may_chown(st: &libc::stat, c: &Creds, uid: u32, gid: u32) -> bool {
    if c.capable(caps::CHOWN) {
        return true;
    }
    let owner = st.st_uid == c.euid;
    (uid == u32::MAX || (owner && uid == st.st_uid))
        && (gid == u32::MAX || (owner && (gid == st.st_gid || c.in_group(gid))))
}

/// chmod's rule: the owner or CAP_FOWNER; the setgid bit is dropped for a file whose group the
/// caller is not in, unless CAP_FSETID. Returns the mode to apply.
fn chmod_mode(st: &libc::stat, c: &Creds, mode: u32) -> Result<u32, i32> {
    if !c.owns(st) {
        return Err(libc::EPERM);
    }
    let mut mode = mode & 0o7777;
    if !c.in_group(st.st_gid) && !c.capable(caps::FSETID) {
        mode &= !libc::S_ISGID;
    }
    Ok(mode)
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
    }
    st
}

fn file_stat(f: &OpenFile) -> Result<libc::stat, i32> {
    match &f.kind {
        FileKind::Host { fd, .. } => fstat_fd(fd.as_raw_fd()),
        FileKind::Synth { data, .. } => Ok(synth_stat(&Synth::File(data.clone()), &f.path)),
        FileKind::Dir { .. } => Ok(synth_stat(&Synth::Dir(vec![]), &f.path)),
        FileKind::Dev(k) => Ok(synth_stat(&Synth::Dev(*k), &f.path)),
        FileKind::Epoll(_) => Ok(synth_stat(&Synth::File(vec![]), "anon_inode:[eventpoll]")),
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

impl<P: Platform> Kernel<P> {
    pub fn file(&self, tid: i32, fd: u64) -> Result<FileRef, i32> {
        let p = self.proc_of(tid);
        let p = p.borrow();
        let f = p.fds.borrow().get(fd as i32).ok_or(libc::EBADF);
        f
    }

    fn install(&self, tid: i32, f: OpenFile, cloexec: bool) -> Result<i64, i32> {
        let p = self.proc_of(tid);
        let p = p.borrow();
        let fd = p
            .fds
            .borrow_mut()
            .alloc(0, Rc::new(RefCell::new(f)), cloexec)?;
        Ok(fd as i64)
    }

    fn creds(&self, tid: i32) -> Creds {
        self.proc_of(tid).borrow().creds.clone()
    }

    /// Open `path` (already read from the tracee) with open(2) flags.
    pub fn open_path(
        &self,
        tid: i32,
        dirfd: i32,
        path: &str,
        flags: i32,
        mode: u32,
    ) -> Result<OpenFile, i32> {
        let follow = flags & libc::O_NOFOLLOW == 0;
        let node = self.lookup(tid, dirfd, path, follow)?;
        let acc = flags & libc::O_ACCMODE;
        let writing = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let vpath = normalize(&if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{}", self.proc_of(tid).borrow().cwd, path)
        });
        match node {
            Node::Synth(s) => {
                if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
                    return Err(libc::EEXIST);
                }
                match s {
                    Synth::File(d) => {
                        if writing {
                            return Err(libc::EACCES);
                        }
                        if flags & libc::O_DIRECTORY != 0 {
                            return Err(libc::ENOTDIR);
                        }
                        Ok(OpenFile::new(
                            FileKind::Synth { data: d, pos: 0 },
                            &vpath,
                            flags,
                        ))
                    }
                    Synth::Dir(entries) => {
                        if writing {
                            return Err(libc::EISDIR);
                        }
                        Ok(OpenFile::new(
                            FileKind::Dir { entries, pos: 0 },
                            &vpath,
                            flags,
                        ))
                    }
                    Synth::Dev(k) => Ok(OpenFile::new(FileKind::Dev(k), &vpath, flags)),
                    Synth::Link(_) => Err(libc::ELOOP),
                    Synth::Fd(f) => {
                        // Re-open through /proc/self/fd: share the description (as a dup).
                        let fb = f.borrow();
                        let kind = match &fb.kind {
                            FileKind::Host { fd, kind } => {
                                // SAFETY: dup of our own fd.
                                let d = unsafe {
                                    libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3)
                                };
                                if d < 0 {
                                    return Err(errno());
                                }
                                FileKind::Host {
                                    fd: unsafe { OwnedFd::from_raw_fd(d) },
                                    kind: *kind,
                                }
                            }
                            FileKind::Synth { data, .. } => FileKind::Synth {
                                data: data.clone(),
                                pos: 0,
                            },
                            FileKind::Dir { entries, .. } => FileKind::Dir {
                                entries: entries.clone(),
                                pos: 0,
                            },
                            FileKind::Dev(k) => FileKind::Dev(*k),
                            FileKind::Epoll(_) => return Err(libc::ENXIO),
                        };
                        Ok(OpenFile::new(kind, &fb.path, flags))
                    }
                }
            }
            Node::Host(rel) => {
                let creds = self.creds(tid);
                let umask = self.proc_of(tid).borrow().umask;
                let base = (flags & !(libc::O_CLOEXEC | libc::O_NOCTTY))
                    | libc::O_NONBLOCK
                    | libc::O_NOCTTY;
                let mut created = false;
                let fd = if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL == 0 {
                    match self.vfs.open(&rel, base & !libc::O_CREAT, 0) {
                        Ok(fd) => fd,
                        Err(libc::ENOENT) => {
                            created = true;
                            self.may_create(tid, dirfd, path, &creds)?;
                            self.vfs.open(&rel, base | libc::O_EXCL, mode & !umask)?
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    created = flags & libc::O_CREAT != 0;
                    if created {
                        self.may_create(tid, dirfd, path, &creds)?;
                    }
                    self.vfs.open(&rel, base, mode & !umask)?
                };
                let st = fstat_fd(fd.as_raw_fd())?;
                let fmt = st.st_mode & libc::S_IFMT;
                if fmt == libc::S_IFCHR || fmt == libc::S_IFBLK {
                    // Device nodes in the rootfs would reach host devices: never.
                    return Err(libc::EACCES);
                }
                if created && creds.euid != 0 {
                    // SAFETY: fchown on our fd.
                    unsafe { libc::fchown(fd.as_raw_fd(), creds.euid, creds.egid) };
                } else if !created && flags & libc::O_PATH == 0 {
                    let want = match acc {
                        libc::O_RDONLY => 4,
                        libc::O_WRONLY => 2,
                        _ => 6,
                    } | if flags & libc::O_TRUNC != 0 { 2 } else { 0 };
                    if !may(&st, &creds, want) {
                        return Err(libc::EACCES);
                    }
                }
                let kind = match fmt {
                    libc::S_IFDIR => HostKind::Dir,
                    libc::S_IFREG => HostKind::Regular,
                    _ => HostKind::Stream,
                };
                Ok(OpenFile::new(
                    FileKind::Host { fd, kind },
                    &vpath,
                    flags & !libc::O_CLOEXEC,
                ))
            }
        }
    }

    fn do_read(
        &mut self,
        c: &Call,
        f: &FileRef,
        addr: u64,
        count: usize,
        off: Option<i64>,
    ) -> Outcome {
        let mut fb = f.borrow_mut();
        if fb.flags & libc::O_ACCMODE == libc::O_WRONLY {
            return err(libc::EBADF);
        }
        let count = count.min(CHUNK);
        let data: Vec<u8> = match &mut fb.kind {
            FileKind::Host { fd, kind } => {
                let h = fd.as_raw_fd();
                if *kind == HostKind::Dir {
                    return err(libc::EISDIR);
                }
                if *kind == HostKind::Stream && off.is_none() && !ready(h, libc::POLLIN) {
                    if fb.flags & libc::O_NONBLOCK != 0 {
                        return err(libc::EAGAIN);
                    }
                    return Outcome::Park(vec![(h, libc::POLLIN)], c.deadline);
                }
                let mut buf = vec![0u8; count];
                // SAFETY: read into our buffer.
                let n = unsafe {
                    match off {
                        Some(o) => libc::pread(h, buf.as_mut_ptr().cast(), count, o),
                        None => libc::read(h, buf.as_mut_ptr().cast(), count),
                    }
                };
                if n < 0 {
                    let e = errno();
                    if e == libc::EAGAIN && fb.flags & libc::O_NONBLOCK == 0 {
                        return Outcome::Park(vec![(h, libc::POLLIN)], c.deadline);
                    }
                    return err(e);
                }
                buf.truncate(n as usize);
                buf
            }
            FileKind::Synth { data, pos } => {
                let start = off.map(|o| o as usize).unwrap_or(*pos).min(data.len());
                let end = (start + count).min(data.len());
                if off.is_none() {
                    *pos = end;
                }
                data[start..end].to_vec()
            }
            FileKind::Dir { .. } => return err(libc::EISDIR),
            FileKind::Epoll(_) => return err(libc::EINVAL),
            FileKind::Dev(DevKind::Null) => Vec::new(),
            FileKind::Dev(DevKind::Zero | DevKind::Full) => vec![0u8; count],
            FileKind::Dev(DevKind::Random) => {
                let mut b = vec![0u8; count.min(65536)];
                // SAFETY: getrandom into our buffer.
                unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
                b
            }
        };
        drop(fb);
        match self.write_bytes(c.tid, addr, &data) {
            Ok(()) => Outcome::Ret(data.len() as i64),
            Err(e) => err(e),
        }
    }

    fn do_write(&mut self, c: &Call, f: &FileRef, data: &[u8], off: Option<i64>) -> Outcome {
        let fb = f.borrow();
        if fb.flags & libc::O_ACCMODE == libc::O_RDONLY && !matches!(fb.kind, FileKind::Dev(_)) {
            return err(libc::EBADF);
        }
        match &fb.kind {
            FileKind::Host { fd, kind } => {
                let h = fd.as_raw_fd();
                let mut len = data.len();
                if *kind == HostKind::Stream {
                    if !ready(h, libc::POLLOUT) {
                        if fb.flags & libc::O_NONBLOCK != 0 {
                            return err(libc::EAGAIN);
                        }
                        return Outcome::Park(vec![(h, libc::POLLOUT)], c.deadline);
                    }
                    // Our own pipes are non-blocking; inherited stdio may not be: never block.
                    // SAFETY: fcntl query.
                    let fl = unsafe { libc::fcntl(h, libc::F_GETFL) };
                    if fl & libc::O_NONBLOCK == 0 {
                        len = len.min(STDIO_CHUNK);
                    }
                }
                if *kind == HostKind::Regular {
                    self.kill_suid(c.tid, h);
                }
                // SAFETY: write from our buffer.
                let n = unsafe {
                    match off {
                        Some(o) => libc::pwrite(h, data.as_ptr().cast(), len, o),
                        None => libc::write(h, data.as_ptr().cast(), len),
                    }
                };
                if n < 0 {
                    let e = errno();
                    if e == libc::EAGAIN && fb.flags & libc::O_NONBLOCK == 0 {
                        return Outcome::Park(vec![(h, libc::POLLOUT)], c.deadline);
                    }
                    if e == libc::EPIPE {
                        let tg = self.proc_of(c.tid).borrow().host_pid;
                        // SAFETY: signal our own tracee as the kernel would.
                        unsafe { libc::syscall(libc::SYS_tgkill, tg, c.tid, libc::SIGPIPE) };
                    }
                    return err(e);
                }
                Outcome::Ret(n as i64)
            }
            FileKind::Dev(DevKind::Full) => err(libc::ENOSPC),
            FileKind::Dev(_) => Outcome::Ret(data.len() as i64),
            FileKind::Synth { .. } | FileKind::Dir { .. } => err(libc::EBADF),
            FileKind::Epoll(_) => err(libc::EINVAL),
        }
    }

    fn iovecs(&self, tid: i32, addr: u64, cnt: u64) -> Result<Vec<(u64, usize)>, i32> {
        if cnt > 1024 {
            return Err(libc::EINVAL);
        }
        let raw = self.read_bytes(tid, addr, cnt as usize * 16)?;
        Ok(raw
            .chunks(16)
            .map(|ch| {
                (
                    u64::from_ne_bytes(ch[..8].try_into().unwrap()),
                    u64::from_ne_bytes(ch[8..].try_into().unwrap()) as usize,
                )
            })
            .collect())
    }

    fn write_stat(&self, tid: i32, addr: u64, st: &libc::stat) -> Outcome {
        match self.write_val(tid, addr, st) {
            Ok(()) => Outcome::Ret(0),
            Err(e) => err(e),
        }
    }

    fn stat_node(&self, tid: i32, dirfd: i32, path: &str, follow: bool) -> Result<libc::stat, i32> {
        match self.lookup(tid, dirfd, path, follow)? {
            Node::Host(rel) => self.vfs.stat(&rel, follow),
            Node::Synth(Synth::Fd(f)) if !follow => {
                let p = f.borrow().path.clone();
                Ok(synth_stat(&Synth::Link(p), path))
            }
            Node::Synth(s) => Ok(synth_stat(&s, &normalize(path))),
        }
    }

    fn getdents(&mut self, c: &Call) -> Outcome {
        let f = match self.file(c.tid, c.a[0]) {
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
                let mut buf = vec![0u8; count];
                // SAFETY: getdents64 into our buffer.
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
                buf.truncate(n as usize);
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
        match self.write_bytes(c.tid, c.a[1], &out) {
            Ok(()) => Outcome::Ret(out.len() as i64),
            Err(e) => err(e),
        }
    }

    /// A write by a caller without CAP_FSETID clears the file's setuid bit (and setgid, if group
    /// executable), as the kernel's `file_remove_privs`; the host would not, the sentry being
    /// root with CAP_FSETID.
    fn kill_suid(&self, tid: i32, h: RawFd) {
        if self.creds(tid).capable(caps::FSETID) {
            return;
        }
        let Ok(st) = fstat_fd(h) else { return };
        let mut kill = st.st_mode & libc::S_ISUID;
        if st.st_mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
            kill |= libc::S_ISGID;
        }
        if kill != 0 {
            // SAFETY: fchmod on our own fd.
            unsafe { libc::fchmod(h, st.st_mode & 0o7777 & !kill) };
        }
    }

    /// The permission check of a metadata change (chmod, chown, truncate, utimes families) on
    /// the file `st`, with the syscall's arguments `a`; returns the mode chmod applies.
    fn may_setattr(&self, tid: i32, s: Sysno, a: &[u64; 6], st: &libc::stat) -> Result<u32, i32> {
        use Sysno::*;
        let c = self.creds(tid);
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
                let ts: [libc::timespec; 2] = self.read_val(tid, a[2])?;
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

    /// The permission to change the entry `name` of directory `dir` (see [`may_entry`]).
    fn may_change(
        &self,
        tid: i32,
        dir: RawFd,
        name: &std::ffi::CStr,
        what: Entry,
    ) -> Result<(), i32> {
        may_entry(dir, name, &self.creds(tid), what)
    }

    /// Creating `path`: write and search permission on its directory.
    fn may_create(&self, tid: i32, dirfd: i32, path: &str, creds: &Creds) -> Result<(), i32> {
        let (pfd, name) = self.host_parent(tid, dirfd, path)?;
        may_entry(pfd.as_raw_fd(), &name, creds, Entry::Create)
    }

    /// Parent fd + name for a path syscall on the host side; synthetic paths are read-only.
    fn host_parent(
        &self,
        tid: i32,
        dirfd: i32,
        path: &str,
    ) -> Result<(OwnedFd, std::ffi::CString), i32> {
        let norm = normalize(&if path.starts_with('/') {
            path.to_string()
        } else {
            "/x/".to_string() + path
        });
        if crate::vfs::procfs::is_synthetic(&norm) && path.starts_with('/') {
            return Err(libc::EROFS);
        }
        // Look the parent up through the VFS (dirfd/cwd relative), then take the last component.
        let t = path.trim_end_matches('/');
        let (dir, name) = match t.rfind('/') {
            Some(0) => ("/", &t[1..]),
            Some(i) => (&t[..i], &t[i + 1..]),
            None => (".", t),
        };
        if name.is_empty() || name == "." || name == ".." {
            return Err(if t.is_empty() {
                libc::EEXIST
            } else {
                libc::EINVAL
            });
        }
        match self.lookup(tid, dirfd, dir, true)? {
            Node::Host(rel) => {
                let fd = self.vfs.open(&rel, libc::O_PATH | libc::O_DIRECTORY, 0)?;
                Ok((fd, crate::vfs::cstr(name)?))
            }
            Node::Synth(_) => Err(libc::EROFS),
        }
    }

    fn pipe(&mut self, c: &Call, flags: i32) -> Outcome {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 into a local array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return err(errno());
        }
        let cloexec = flags & libc::O_CLOEXEC != 0;
        let vflags = flags & libc::O_NONBLOCK;
        // SAFETY: fresh fds we own.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let name = format!("pipe:[{}]", fstat_fd(fds[0]).map(|s| s.st_ino).unwrap_or(0));
        let r = self.install(
            c.tid,
            OpenFile::new(
                FileKind::Host {
                    fd: rd,
                    kind: HostKind::Stream,
                },
                &name,
                libc::O_RDONLY | vflags,
            ),
            cloexec,
        );
        let r = match r {
            Ok(r) => r,
            Err(e) => return err(e),
        };
        let w = match self.install(
            c.tid,
            OpenFile::new(
                FileKind::Host {
                    fd: wr,
                    kind: HostKind::Stream,
                },
                &name,
                libc::O_WRONLY | vflags,
            ),
            cloexec,
        ) {
            Ok(w) => w,
            Err(e) => {
                self.proc_of(c.tid)
                    .borrow()
                    .fds
                    .borrow_mut()
                    .close(r as i32);
                return err(e);
            }
        };
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(r as i32).to_ne_bytes());
        b[4..].copy_from_slice(&(w as i32).to_ne_bytes());
        match self.write_bytes(c.tid, c.a[0], &b) {
            Ok(()) => Outcome::Ret(0),
            Err(e) => err(e),
        }
    }

    /// poll/ppoll over virtual fds.
    fn poll(&mut self, c: &Call, fds_addr: u64, nfds: u64, timeout_ms: Option<i64>) -> Outcome {
        if nfds > 4096 {
            return err(libc::EINVAL);
        }
        let raw = match self.read_bytes(c.tid, fds_addr, nfds as usize * 8) {
            Ok(r) => r,
            Err(e) => return err(e),
        };
        let mut host = Vec::new();
        let mut out = raw.clone();
        let mut nready = 0;
        for i in 0..nfds as usize {
            let fd = i32::from_ne_bytes(raw[i * 8..i * 8 + 4].try_into().unwrap());
            let ev = i16::from_ne_bytes(raw[i * 8 + 4..i * 8 + 6].try_into().unwrap());
            let mut rev: i16 = 0;
            if fd >= 0 {
                match self.file(c.tid, fd as u64) {
                    Err(_) => rev = libc::POLLNVAL,
                    Ok(f) => match f.borrow().host_fd() {
                        Some(h) if f.borrow().is_stream() => {
                            let mut p = libc::pollfd {
                                fd: h,
                                events: ev,
                                revents: 0,
                            };
                            // SAFETY: poll our fd without waiting.
                            unsafe { libc::poll(&mut p, 1, 0) };
                            rev = p.revents;
                            host.push((h, ev));
                        }
                        _ => {
                            rev = ev
                                & (libc::POLLIN
                                    | libc::POLLOUT
                                    | libc::POLLRDNORM
                                    | libc::POLLWRNORM)
                        }
                    },
                }
            }
            if rev != 0 {
                nready += 1;
            }
            out[i * 8 + 6..i * 8 + 8].copy_from_slice(&rev.to_ne_bytes());
        }
        let expired = c.deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if nready == 0 && timeout_ms != Some(0) && !expired {
            let dl = c.deadline.or_else(|| {
                timeout_ms
                    .filter(|&t| t > 0)
                    .map(|t| std::time::Instant::now() + std::time::Duration::from_millis(t as u64))
            });
            return Outcome::Park(host, dl);
        }
        match self.write_bytes(c.tid, fds_addr, &out) {
            Ok(()) => Outcome::Ret(nready),
            Err(e) => err(e),
        }
    }

    fn fcntl(&mut self, c: &Call) -> Outcome {
        let fd = c.a[0] as i32;
        let p = self.proc_of(c.tid);
        let p = p.borrow();
        let mut t = p.fds.borrow_mut();
        let Some(e) = t.map.get(&fd).cloned() else {
            return err(libc::EBADF);
        };
        match c.a[1] as i32 {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => r(t
                .alloc(
                    c.a[2] as i32,
                    e.file.clone(),
                    c.a[1] as i32 == libc::F_DUPFD_CLOEXEC,
                )
                .map(|v| v as i64)),
            libc::F_GETFD => Outcome::Ret(if e.cloexec {
                libc::FD_CLOEXEC as i64
            } else {
                0
            }),
            libc::F_SETFD => {
                t.map.get_mut(&fd).unwrap().cloexec = c.a[2] as i32 & libc::FD_CLOEXEC != 0;
                Outcome::Ret(0)
            }
            libc::F_GETFL => Outcome::Ret(e.file.borrow().flags as i64),
            libc::F_SETFL => {
                let mut f = e.file.borrow_mut();
                let changeable = libc::O_APPEND | libc::O_NONBLOCK;
                f.flags = (f.flags & !changeable) | (c.a[2] as i32 & changeable);
                if let FileKind::Host { fd, kind } = &f.kind {
                    if *kind != HostKind::Stream {
                        // SAFETY: fcntl on our fd.
                        unsafe {
                            libc::fcntl(
                                fd.as_raw_fd(),
                                libc::F_SETFL,
                                (c.a[2] as i32 & libc::O_APPEND) | libc::O_NONBLOCK,
                            )
                        };
                    }
                }
                Outcome::Ret(0)
            }
            libc::F_GETLK
            | libc::F_SETLK
            | libc::F_SETLKW
            | libc::F_OFD_GETLK
            | libc::F_OFD_SETLK
            | libc::F_OFD_SETLKW => {
                // Locks between sandbox processes are advisory; accept them.
                if c.a[1] as i32 == libc::F_GETLK || c.a[1] as i32 == libc::F_OFD_GETLK {
                    // report "unlocked": l_type = F_UNLCK
                    let _ = self.write_bytes(c.tid, c.a[2], &(libc::F_UNLCK as i16).to_ne_bytes());
                }
                Outcome::Ret(0)
            }
            libc::F_GETPIPE_SZ => Outcome::Ret(65536),
            libc::F_SETPIPE_SZ => Outcome::Ret(c.a[2] as i64),
            _ => err(libc::EINVAL),
        }
    }

    fn ioctl(&mut self, c: &Call) -> Outcome {
        let f = match self.file(c.tid, c.a[0]) {
            Ok(f) => f,
            Err(e) => return err(e),
        };
        let req = c.a[1];
        let fb = f.borrow();
        match req {
            x if x == libc::FIOCLEX || x == libc::FIONCLEX => {
                drop(fb);
                let p = self.proc_of(c.tid);
                let p = p.borrow();
                if let Some(e) = p.fds.borrow_mut().map.get_mut(&(c.a[0] as i32)) {
                    e.cloexec = x == libc::FIOCLEX;
                }
                return Outcome::Ret(0);
            }
            x if x == libc::FIONBIO => {
                let on = self.read_val::<i32>(c.tid, c.a[2]).unwrap_or(0) != 0;
                drop(fb);
                let mut fb = f.borrow_mut();
                if on {
                    fb.flags |= libc::O_NONBLOCK
                } else {
                    fb.flags &= !libc::O_NONBLOCK
                }
                return Outcome::Ret(0);
            }
            _ => {}
        }
        let Some(h) = fb.host_fd().filter(|_| fb.is_stream()) else {
            return err(libc::ENOTTY);
        };
        // Only terminal queries and settings, on the sandbox's own stdio or pipes.
        let size = match req {
            x if x == libc::TCGETS => KERNEL_TERMIOS,
            x if x == libc::TCSETS || x == libc::TCSETSW || x == libc::TCSETSF => KERNEL_TERMIOS,
            x if x == libc::TIOCGWINSZ || x == libc::TIOCSWINSZ => {
                std::mem::size_of::<libc::winsize>()
            }
            x if x == libc::FIONREAD => 4,
            x if x == libc::TIOCGPGRP => {
                let mut pg: i32 = 0;
                // SAFETY: ioctl into a local.
                if unsafe { libc::ioctl(h, libc::TIOCGPGRP, &mut pg) } != 0 {
                    return err(errno());
                }
                let v = self.virt_of(pg);
                return match self.write_val(c.tid, c.a[2], &v) {
                    Ok(()) => Outcome::Ret(0),
                    Err(e) => err(e),
                };
            }
            _ => return err(libc::ENOTTY),
        };
        let setting = matches!(req, x if x == libc::TCSETS || x == libc::TCSETSW || x == libc::TCSETSF || x == libc::TIOCSWINSZ);
        let mut buf = if setting {
            match self.read_bytes(c.tid, c.a[2], size) {
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
            if let Err(e) = self.write_bytes(c.tid, c.a[2], &buf) {
                return err(e);
            }
        }
        Outcome::Ret(0)
    }
}

fn dirfd_of(v: u64) -> i32 {
    v as i32
}

/// File syscalls; `None` when `s` is not one of them.
pub fn handle<P: Platform>(k: &mut Kernel<P>, s: Sysno, c: &mut Call) -> Option<Outcome> {
    use Sysno::*;
    let a = c.a;
    let tid = c.tid;
    macro_rules! path {
        ($addr:expr) => {
            match k.read_path(tid, $addr) {
                Ok(p) => p,
                Err(e) => return Some(err(e)),
            }
        };
    }
    macro_rules! file {
        ($fd:expr) => {
            match k.file(tid, $fd) {
                Ok(f) => f,
                Err(e) => return Some(err(e)),
            }
        };
    }
    macro_rules! host_at {
        ($dirfd:expr, $p:expr, $call:expr) => {
            host_at!($dirfd, $p, Entry::Create, $call)
        };
        // `$what`: what the call does to the entry (see `Entry`).
        ($dirfd:expr, $p:expr, $what:expr, $call:expr) => {{
            let parent = k.host_parent(tid, $dirfd, &$p).and_then(|(pfd, name)| {
                k.may_change(tid, pfd.as_raw_fd(), &name, $what)?;
                Ok((pfd, name))
            });
            match parent {
                Err(e) => err(e),
                Ok((pfd, name)) => {
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
    Some(match s {
        read => {
            let f = file!(a[0]);
            k.do_read(c, &f, a[1], a[2] as usize, None)
        }
        pread64 => {
            let f = file!(a[0]);
            if a[3] as i64 > 0 && f.borrow().is_stream() {
                return Some(err(libc::ESPIPE));
            }
            k.do_read(c, &f, a[1], a[2] as usize, Some(a[3] as i64))
        }
        write | pwrite64 => {
            let f = file!(a[0]);
            let len = (a[2] as usize).min(CHUNK);
            let data = match k.read_bytes(tid, a[1], len) {
                Ok(d) => d,
                Err(e) => return Some(err(e)),
            };
            let off = if s == pwrite64 {
                Some(a[3] as i64)
            } else {
                None
            };
            k.do_write(c, &f, &data, off)
        }
        readv | preadv | preadv2 => {
            let f = file!(a[0]);
            let iov = match k.iovecs(tid, a[1], a[2]) {
                Ok(v) => v,
                Err(e) => return Some(err(e)),
            };
            // Read into the first non-empty buffer (a short read is allowed).
            let Some(&(base, len)) = iov.iter().find(|v| v.1 > 0) else {
                return Some(Outcome::Ret(0));
            };
            let off = if s == readv || a[3] as i64 == -1 {
                None
            } else {
                Some(a[3] as i64)
            };
            k.do_read(c, &f, base, len, off)
        }
        writev | pwritev | pwritev2 => {
            let f = file!(a[0]);
            let iov = match k.iovecs(tid, a[1], a[2]) {
                Ok(v) => v,
                Err(e) => return Some(err(e)),
            };
            let mut data = Vec::new();
            for (base, len) in iov {
                if data.len() + len > CHUNK {
                    break;
                }
                match k.read_bytes(tid, base, len) {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(e) => return Some(err(e)),
                }
            }
            let off = if s == writev || a[3] as i64 == -1 {
                None
            } else {
                Some(a[3] as i64)
            };
            k.do_write(c, &f, &data, off)
        }
        open | openat | creat | openat2 => {
            let (dirfd, p, flags, mode) = match s {
                open => (libc::AT_FDCWD, path!(a[0]), a[1] as i32, a[2] as u32),
                creat => (
                    libc::AT_FDCWD,
                    path!(a[0]),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                    a[1] as u32,
                ),
                openat => (dirfd_of(a[0]), path!(a[1]), a[2] as i32, a[3] as u32),
                _ => {
                    let how: [u64; 3] = match k.read_val(tid, a[2]) {
                        Ok(h) => h,
                        Err(e) => return Some(err(e)),
                    };
                    (dirfd_of(a[0]), path!(a[1]), how[0] as i32, how[1] as u32)
                }
            };
            r(k.open_path(tid, dirfd, &p, flags, mode)
                .and_then(|f| k.install(tid, f, flags & libc::O_CLOEXEC != 0)))
        }
        close => {
            let p = k.proc_of(tid);
            let p = p.borrow();
            let ok = p.fds.borrow_mut().close(a[0] as i32);
            if ok {
                Outcome::Ret(0)
            } else {
                err(libc::EBADF)
            }
        }
        close_range => {
            let p = k.proc_of(tid);
            let p = p.borrow();
            let mut t = p.fds.borrow_mut();
            let (lo, hi) = (a[0] as i32, a[1].min(i32::MAX as u64) as i32);
            let keys: Vec<i32> = t.map.range(lo..=hi).map(|(k, _)| *k).collect();
            for fd in keys {
                if a[2] & libc::CLOSE_RANGE_CLOEXEC as u64 != 0 {
                    t.map.get_mut(&fd).unwrap().cloexec = true;
                } else {
                    t.close(fd);
                }
            }
            Outcome::Ret(0)
        }
        lseek => {
            let f = file!(a[0]);
            let mut fb = f.borrow_mut();
            match &mut fb.kind {
                FileKind::Host { fd, kind } => {
                    if *kind == HostKind::Stream {
                        return Some(err(libc::ESPIPE));
                    }
                    // SAFETY: lseek on our fd.
                    let n = unsafe { libc::lseek(fd.as_raw_fd(), a[1] as i64, a[2] as i32) };
                    if n < 0 {
                        err(errno())
                    } else {
                        Outcome::Ret(n)
                    }
                }
                FileKind::Synth { data, pos } => {
                    let base = match a[2] as i32 {
                        libc::SEEK_SET => 0,
                        libc::SEEK_CUR => *pos as i64,
                        libc::SEEK_END => data.len() as i64,
                        _ => return Some(err(libc::EINVAL)),
                    };
                    let n = base + a[1] as i64;
                    if n < 0 {
                        return Some(err(libc::EINVAL));
                    }
                    *pos = n as usize;
                    Outcome::Ret(n)
                }
                FileKind::Dir { pos, .. } => {
                    if a[2] as i32 == libc::SEEK_SET {
                        *pos = a[1] as usize;
                        Outcome::Ret(a[1] as i64)
                    } else {
                        err(libc::EINVAL)
                    }
                }
                FileKind::Dev(_) => Outcome::Ret(0),
                FileKind::Epoll(_) => err(libc::ESPIPE),
            }
        }
        fstat => {
            let f = file!(a[0]);
            let st = file_stat(&f.borrow());
            match st {
                Ok(st) => k.write_stat(tid, a[1], &st),
                Err(e) => err(e),
            }
        }
        stat | lstat => {
            let p = path!(a[0]);
            match k.stat_node(tid, libc::AT_FDCWD, &p, s == stat) {
                Ok(st) => k.write_stat(tid, a[1], &st),
                Err(e) => err(e),
            }
        }
        newfstatat | statx => {
            let (dirfd, flags) = (
                dirfd_of(a[0]),
                if s == newfstatat {
                    a[3] as i32
                } else {
                    a[2] as i32
                },
            );
            let p = path!(a[1]);
            let st = if p.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
                if dirfd == libc::AT_FDCWD {
                    let cwd = k.proc_of(tid).borrow().cwd.clone();
                    k.stat_node(tid, dirfd, &cwd, true)
                } else {
                    k.file(tid, dirfd as u64)
                        .and_then(|f| file_stat(&f.borrow()))
                }
            } else {
                k.stat_node(tid, dirfd, &p, flags & libc::AT_SYMLINK_NOFOLLOW == 0)
            };
            match st {
                Err(e) => err(e),
                Ok(st) if s == newfstatat => k.write_stat(tid, a[2], &st),
                Ok(st) => match k.write_val(tid, a[4], &statx_of(&st)) {
                    Ok(()) => Outcome::Ret(0),
                    Err(e) => err(e),
                },
            }
        }
        getdents64 => k.getdents(c),
        access | faccessat | faccessat2 => {
            let (dirfd, p, mode, flags) = if s == access {
                (libc::AT_FDCWD, path!(a[0]), a[1] as u32, 0)
            } else {
                (
                    dirfd_of(a[0]),
                    path!(a[1]),
                    a[2] as u32,
                    if s == faccessat2 { a[3] as i32 } else { 0 },
                )
            };
            match k.stat_node(tid, dirfd, &p, flags & libc::AT_SYMLINK_NOFOLLOW == 0) {
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
        readlink | readlinkat => {
            let (dirfd, p, buf, size) = if s == readlink {
                (libc::AT_FDCWD, path!(a[0]), a[1], a[2])
            } else {
                (dirfd_of(a[0]), path!(a[1]), a[2], a[3])
            };
            let target = match k.lookup(tid, dirfd, &p, false) {
                Err(e) => return Some(err(e)),
                Ok(Node::Synth(Synth::Link(t))) => t,
                Ok(Node::Synth(Synth::Fd(f))) => f.borrow().path.clone(),
                Ok(Node::Synth(_)) => return Some(err(libc::EINVAL)),
                Ok(Node::Host(rel)) => {
                    let fd = match k.vfs.open(&rel, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                        Ok(fd) => fd,
                        Err(e) => return Some(err(e)),
                    };
                    let mut b = vec![0u8; 4096];
                    // SAFETY: readlinkat with an empty path on an O_PATH symlink fd.
                    let n = unsafe {
                        libc::readlinkat(
                            fd.as_raw_fd(),
                            c"".as_ptr(),
                            b.as_mut_ptr().cast(),
                            b.len(),
                        )
                    };
                    if n < 0 {
                        let e = errno();
                        return Some(err(if e == libc::ENOENT { libc::EINVAL } else { e }));
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
        getcwd => {
            let mut cwd = k.proc_of(tid).borrow().cwd.clone().into_bytes();
            cwd.push(0);
            if cwd.len() > a[1] as usize {
                return Some(err(libc::ERANGE));
            }
            match k.write_bytes(tid, a[0], &cwd) {
                Ok(()) => Outcome::Ret(cwd.len() as i64),
                Err(e) => err(e),
            }
        }
        chdir | fchdir => {
            let target = if s == chdir {
                let p = path!(a[0]);
                let cwd = k.proc_of(tid).borrow().cwd.clone();
                let joined = if p.starts_with('/') {
                    p.clone()
                } else {
                    format!("{cwd}/{p}")
                };
                match k.lookup(tid, libc::AT_FDCWD, &p, true) {
                    Err(e) => return Some(err(e)),
                    Ok(Node::Synth(Synth::Dir(_))) => normalize(&joined),
                    Ok(Node::Synth(_)) => return Some(err(libc::ENOTDIR)),
                    Ok(Node::Host(rel)) => {
                        match k.vfs.open(&rel, libc::O_PATH | libc::O_DIRECTORY, 0) {
                            Err(e) => return Some(err(e)),
                            Ok(fd) => {
                                // chdir needs search permission on the directory.
                                match fstat_fd(fd.as_raw_fd()) {
                                    Ok(st) if may(&st, &k.creds(tid), 1) => {}
                                    Ok(_) => return Some(err(libc::EACCES)),
                                    Err(e) => return Some(err(e)),
                                }
                                k.vfs
                                    .virt_path_of(fd.as_raw_fd())
                                    .unwrap_or_else(|| normalize(&joined))
                            }
                        }
                    }
                }
            } else {
                let f = file!(a[0]);
                let fb = f.borrow();
                if !fb.is_dir() {
                    return Some(err(libc::ENOTDIR));
                }
                fb.host_fd()
                    .and_then(|h| k.vfs.virt_path_of(h))
                    .unwrap_or_else(|| fb.path.clone())
            };
            k.proc_of(tid).borrow_mut().cwd = target;
            Outcome::Ret(0)
        }
        mkdir | mkdirat => {
            let (dirfd, p, mode) = if s == mkdir {
                (libc::AT_FDCWD, path!(a[0]), a[1])
            } else {
                (dirfd_of(a[0]), path!(a[1]), a[2])
            };
            let um = k.proc_of(tid).borrow().umask;
            let cr = k.creds(tid);
            // SAFETY: *at syscalls on our fds.
            host_at!(dirfd, p, |d, n| unsafe {
                let rc = libc::mkdirat(d, n, (mode as u32 & !um) as libc::mode_t);
                if rc == 0 && cr.euid != 0 {
                    libc::fchownat(d, n, cr.euid, cr.egid, libc::AT_SYMLINK_NOFOLLOW);
                }
                rc
            })
        }
        mknod | mknodat => {
            let (dirfd, p, mode) = if s == mknod {
                (libc::AT_FDCWD, path!(a[0]), a[1] as u32)
            } else {
                (dirfd_of(a[0]), path!(a[1]), a[2] as u32)
            };
            let fmt = mode & libc::S_IFMT;
            if fmt != libc::S_IFIFO && fmt != libc::S_IFREG && fmt != 0 {
                return Some(err(libc::EPERM));
            }
            let um = k.proc_of(tid).borrow().umask;
            // SAFETY: mknodat of a fifo or regular file only.
            host_at!(dirfd, p, |d, n| unsafe {
                libc::mknodat(d, n, (mode & !um) as libc::mode_t, 0)
            })
        }
        rmdir => {
            let p = path!(a[0]);
            // SAFETY: unlinkat on our fd.
            host_at!(libc::AT_FDCWD, p, Entry::Remove, |d, n| unsafe {
                libc::unlinkat(d, n, libc::AT_REMOVEDIR)
            })
        }
        unlink | unlinkat => {
            let (dirfd, p, flags) = if s == unlink {
                (libc::AT_FDCWD, path!(a[0]), 0)
            } else {
                (dirfd_of(a[0]), path!(a[1]), a[2] as i32)
            };
            // SAFETY: unlinkat on our fd.
            host_at!(dirfd, p, Entry::Remove, |d, n| unsafe {
                libc::unlinkat(d, n, flags & libc::AT_REMOVEDIR)
            })
        }
        rename | renameat | renameat2 => {
            let (d1, p1, d2, p2, flags) = if s == rename {
                (libc::AT_FDCWD, path!(a[0]), libc::AT_FDCWD, path!(a[1]), 0)
            } else {
                (
                    dirfd_of(a[0]),
                    path!(a[1]),
                    dirfd_of(a[2]),
                    path!(a[3]),
                    if s == renameat2 { a[4] } else { 0 },
                )
            };
            let (f1, n1) = match k.host_parent(tid, d1, &p1) {
                Ok(v) => v,
                Err(e) => return Some(err(e)),
            };
            let (f2, n2) = match k.host_parent(tid, d2, &p2) {
                Ok(v) => v,
                Err(e) => return Some(err(e)),
            };
            if let Err(e) = k
                .may_change(tid, f1.as_raw_fd(), &n1, Entry::Remove)
                .and_then(|()| k.may_change(tid, f2.as_raw_fd(), &n2, Entry::Replace))
            {
                return Some(err(e));
            }
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
        link | linkat => {
            let (d1, p1, d2, p2) = if s == link {
                (libc::AT_FDCWD, path!(a[0]), libc::AT_FDCWD, path!(a[1]))
            } else {
                (dirfd_of(a[0]), path!(a[1]), dirfd_of(a[2]), path!(a[3]))
            };
            let (f1, n1) = match k.host_parent(tid, d1, &p1) {
                Ok(v) => v,
                Err(e) => return Some(err(e)),
            };
            let (f2, n2) = match k.host_parent(tid, d2, &p2) {
                Ok(v) => v,
                Err(e) => return Some(err(e)),
            };
            if let Err(e) = k.may_change(tid, f2.as_raw_fd(), &n2, Entry::Create) {
                return Some(err(e));
            }
            // SAFETY: linkat between our fds (no symlink following).
            let rc = unsafe {
                libc::linkat(f1.as_raw_fd(), n1.as_ptr(), f2.as_raw_fd(), n2.as_ptr(), 0)
            };
            if rc < 0 {
                err(errno())
            } else {
                Outcome::Ret(0)
            }
        }
        symlink | symlinkat => {
            let (target, dirfd, p) = if s == symlink {
                (path!(a[0]), libc::AT_FDCWD, path!(a[1]))
            } else {
                (path!(a[0]), dirfd_of(a[1]), path!(a[2]))
            };
            let t = match crate::vfs::cstr(&target) {
                Ok(t) => t,
                Err(e) => return Some(err(e)),
            };
            // SAFETY: symlinkat into our fd; the target is only text (resolved in-root later).
            host_at!(dirfd, p, |d, n| unsafe {
                libc::symlinkat(t.as_ptr(), d, n)
            })
        }
        chmod | fchmodat | chown | lchown | fchownat | truncate | utimensat | utimes | utime
        | futimesat => {
            // Path-based metadata changes: open the object (O_PATH) in-root, then act on it.
            let (dirfd, p, follow) = match s {
                chmod | chown | truncate | utimes | utime => (libc::AT_FDCWD, path!(a[0]), true),
                lchown => (libc::AT_FDCWD, path!(a[0]), false),
                fchmodat => (dirfd_of(a[0]), path!(a[1]), true),
                fchownat => (
                    dirfd_of(a[0]),
                    path!(a[1]),
                    a[4] as i32 & libc::AT_SYMLINK_NOFOLLOW == 0,
                ),
                futimesat => (dirfd_of(a[0]), path!(a[1]), true),
                _ => {
                    if a[1] == 0 {
                        // utimensat(fd, NULL, ...): the fd itself
                        let f = file!(a[0]);
                        let Some(h) = f.borrow().host_fd() else {
                            return Some(err(libc::EROFS));
                        };
                        if let Err(e) = fstat_fd(h).and_then(|st| k.may_setattr(tid, s, &a, &st)) {
                            return Some(err(e));
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
                        return Some(if rc < 0 {
                            err(errno())
                        } else {
                            Outcome::Ret(0)
                        });
                    }
                    (
                        dirfd_of(a[0]),
                        path!(a[1]),
                        a[3] as i32 & libc::AT_SYMLINK_NOFOLLOW == 0,
                    )
                }
            };
            let rel = match k.lookup(tid, dirfd, &p, follow) {
                Err(e) => return Some(err(e)),
                Ok(Node::Synth(_)) => return Some(err(libc::EPERM)),
                Ok(Node::Host(rel)) => rel,
            };
            let oflags = if s == truncate {
                libc::O_WRONLY
            } else {
                libc::O_PATH
            } | if follow { 0 } else { libc::O_NOFOLLOW };
            let fd = match k.vfs.open(&rel, oflags, 0) {
                Ok(fd) => fd,
                Err(e) => return Some(err(e)),
            };
            let h = fd.as_raw_fd();
            // The permission decision is the sentry's: the host call below runs as root.
            let newmode = match fstat_fd(h).and_then(|st| k.may_setattr(tid, s, &a, &st)) {
                Ok(m) => m,
                Err(e) => return Some(err(e)),
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
        fchmod | fchown | ftruncate | fsync | fdatasync | fallocate | flock | fadvise64
        | syncfs => {
            let f = file!(a[0]);
            let Some(h) = f.borrow().host_fd() else {
                return Some(
                    if matches!(s, fsync | fdatasync | flock | fadvise64 | syncfs) {
                        Outcome::Ret(0)
                    } else {
                        err(libc::EINVAL)
                    },
                );
            };
            let newmode = if matches!(s, fchmod | fchown) {
                match fstat_fd(h).and_then(|st| k.may_setattr(tid, s, &a, &st)) {
                    Ok(m) => m,
                    Err(e) => return Some(err(e)),
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
        sync => Outcome::Ret(0),
        dup => {
            let f = file!(a[0]);
            r(k.proc_of(tid)
                .borrow()
                .fds
                .borrow_mut()
                .alloc(0, f, false)
                .map(|v| v as i64))
        }
        dup2 | dup3 => {
            let f = file!(a[0]);
            if a[0] == a[1] {
                return Some(if s == dup3 {
                    err(libc::EINVAL)
                } else {
                    Outcome::Ret(a[1] as i64)
                });
            }
            let cloexec = s == dup3 && a[2] as i32 & libc::O_CLOEXEC != 0;
            r(k.proc_of(tid)
                .borrow()
                .fds
                .borrow_mut()
                .set(a[1] as i32, f, cloexec)
                .map(|_| a[1] as i64))
        }
        fcntl => k.fcntl(c),
        ioctl => k.ioctl(c),
        pipe => k.pipe(c, 0),
        pipe2 => k.pipe(c, a[1] as i32),
        poll => {
            let t = a[2] as i32 as i64;
            k.poll(c, a[0], a[1], if t < 0 { None } else { Some(t) })
        }
        ppoll => {
            let t = if a[2] == 0 {
                None
            } else {
                match k.read_val::<libc::timespec>(tid, a[2]) {
                    Ok(ts) => Some(ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000),
                    Err(e) => return Some(err(e)),
                }
            };
            k.poll(c, a[0], a[1], t)
        }
        select | pselect6 => select_impl(k, c, s == pselect6),
        epoll_create | epoll_create1 | epoll_ctl | epoll_wait | epoll_pwait => epoll_impl(k, s, c),
        statfs | fstatfs => {
            let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: statfs of the sandbox root (one filesystem as far as the workload sees).
            let rc = unsafe { libc::fstatfs(k.vfs.root.as_raw_fd(), &mut sf) };
            if rc < 0 {
                return Some(err(errno()));
            }
            if s == fstatfs {
                if let Err(e) = k.file(tid, a[0]) {
                    return Some(err(e));
                }
            }
            match k.write_val(tid, a[1], &sf) {
                Ok(()) => Outcome::Ret(0),
                Err(e) => err(e),
            }
        }
        umask => {
            let p = k.proc_of(tid);
            let old = p.borrow().umask;
            p.borrow_mut().umask = a[0] as u32 & 0o777;
            Outcome::Ret(old as i64)
        }
        sendfile | copy_file_range => {
            // Copy through the sentry: read then write, at most one chunk. Stream inputs are
            // refused (EINVAL), as callers then fall back to read/write.
            let (out_fd, in_fd, off_ptr, count) = if s == sendfile {
                (a[0], a[1], a[2], a[3])
            } else {
                (a[2], a[0], a[1], a[4])
            };
            let fin = file!(in_fd);
            let fout = file!(out_fd);
            if fin.borrow().is_stream() || fin.borrow().is_dir() {
                return Some(err(libc::EINVAL));
            }
            let h = fin.borrow().host_fd();
            let pos = if off_ptr != 0 {
                match k.read_val::<i64>(tid, off_ptr) {
                    Ok(v) => v,
                    Err(e) => return Some(err(e)),
                }
            } else {
                match (&fin.borrow().kind, h) {
                    // SAFETY: query our fd's offset.
                    (_, Some(h)) => unsafe { libc::lseek(h, 0, libc::SEEK_CUR) },
                    (FileKind::Synth { pos, .. }, None) => *pos as i64,
                    _ => 0,
                }
            };
            let data = fin
                .borrow()
                .read_at(pos.max(0) as u64, (count as usize).min(CHUNK));
            if data.is_empty() {
                return Some(Outcome::Ret(0));
            }
            let out = k.do_write(c, &fout, &data, None);
            if let Outcome::Ret(n) = &out {
                if *n > 0 {
                    if off_ptr != 0 {
                        let _ = k.write_val(tid, off_ptr, &(pos + *n));
                    } else if let Some(h) = h {
                        // SAFETY: advance our fd's offset by what was written.
                        unsafe { libc::lseek(h, pos + *n, libc::SEEK_SET) };
                    } else if let FileKind::Synth { pos: p, .. } = &mut fin.borrow_mut().kind {
                        *p += *n as usize;
                    }
                }
            }
            out
        }
        socketpair => {
            if a[0] as i32 != libc::AF_UNIX {
                return Some(err(libc::EAFNOSUPPORT));
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
                return Some(err(errno()));
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
                    Err(e) => return Some(err(e)),
                }
            }
            match k.write_val(tid, a[3], &out) {
                Ok(()) => Outcome::Ret(0),
                Err(e) => err(e),
            }
        }
        socket => {
            // No network: the sandbox has no interfaces. AF_UNIX sockets need the sentry's
            // socket layer, which is not implemented beyond socketpair.
            err(libc::EAFNOSUPPORT)
        }
        eventfd | eventfd2 => {
            let flags = if s == eventfd2 { a[1] as i32 } else { 0 };
            // SAFETY: eventfd owned by the sentry.
            let fd = unsafe {
                libc::eventfd(
                    a[0] as u32,
                    libc::EFD_NONBLOCK | libc::EFD_CLOEXEC | (flags & libc::EFD_SEMAPHORE),
                )
            };
            if fd < 0 {
                return Some(err(errno()));
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
        _ => return None,
    })
}

fn epoll_impl<P: Platform>(k: &mut Kernel<P>, s: Sysno, c: &Call) -> Outcome {
    use crate::vfs::EpollItem;
    let a = c.a;
    match s {
        Sysno::epoll_create | Sysno::epoll_create1 => {
            if s == Sysno::epoll_create && (a[0] as i32) <= 0 {
                return err(libc::EINVAL);
            }
            let cloexec = s == Sysno::epoll_create1 && a[0] as i32 & libc::EPOLL_CLOEXEC != 0;
            r(k.install(
                c.tid,
                OpenFile::new(
                    FileKind::Epoll(Default::default()),
                    "anon_inode:[eventpoll]",
                    libc::O_RDWR,
                ),
                cloexec,
            ))
        }
        Sysno::epoll_ctl => {
            let ep = match k.file(c.tid, a[0]) {
                Ok(f) => f,
                Err(e) => return err(e),
            };
            let target = match k.file(c.tid, a[2]) {
                Ok(f) => f,
                Err(e) => return err(e),
            };
            if Rc::ptr_eq(&ep, &target) {
                return err(libc::EINVAL);
            }
            {
                let t = target.borrow();
                let pollable =
                    t.is_stream() || matches!(t.kind, FileKind::Dev(_) | FileKind::Epoll(_));
                if !pollable {
                    return err(libc::EPERM);
                }
            }
            let op = a[1] as i32;
            let ev = if op == libc::EPOLL_CTL_DEL {
                None
            } else {
                match k.read_bytes(c.tid, a[3], 12) {
                    Ok(b) => Some((
                        u32::from_ne_bytes(b[..4].try_into().unwrap()),
                        u64::from_ne_bytes(b[4..].try_into().unwrap()),
                    )),
                    Err(e) => return err(e),
                }
            };
            let mut epb = ep.borrow_mut();
            let FileKind::Epoll(set) = &mut epb.kind else {
                return err(libc::EINVAL);
            };
            set.retain(|_, it| it.file.strong_count() > 0);
            let fd = a[2] as i32;
            match (op, ev) {
                (libc::EPOLL_CTL_ADD, Some((events, data))) => {
                    if set.contains_key(&fd) {
                        return err(libc::EEXIST);
                    }
                    set.insert(
                        fd,
                        EpollItem {
                            file: Rc::downgrade(&target),
                            events,
                            data,
                        },
                    );
                }
                (libc::EPOLL_CTL_MOD, Some((events, data))) => match set.get_mut(&fd) {
                    Some(it) => {
                        it.events = events;
                        it.data = data;
                    }
                    None => return err(libc::ENOENT),
                },
                (libc::EPOLL_CTL_DEL, _) => {
                    if set.remove(&fd).is_none() {
                        return err(libc::ENOENT);
                    }
                }
                _ => return err(libc::EINVAL),
            }
            Outcome::Ret(0)
        }
        _ => {
            // epoll_wait / epoll_pwait (the signal mask of epoll_pwait is not applied).
            let ep = match k.file(c.tid, a[0]) {
                Ok(f) => f,
                Err(e) => return err(e),
            };
            let max = a[2] as i32;
            if max <= 0 {
                return err(libc::EINVAL);
            }
            let timeout = a[3] as i32;
            let mut out: Vec<u8> = Vec::new();
            let mut host = Vec::new();
            let mut n = 0;
            {
                let mut epb = ep.borrow_mut();
                let FileKind::Epoll(set) = &mut epb.kind else {
                    return err(libc::EINVAL);
                };
                set.retain(|_, it| it.file.strong_count() > 0);
                for it in set.values_mut() {
                    if n >= max
                        || it.events & !(libc::EPOLLET as u32 | libc::EPOLLONESHOT as u32) == 0
                    {
                        continue;
                    }
                    let Some(f) = it.file.upgrade() else { continue };
                    let want = (it.events & 0xffff) as i16 | libc::POLLERR | libc::POLLHUP;
                    let got = match f.borrow().host_fd() {
                        Some(h) => {
                            host.push((h, want));
                            let mut p = libc::pollfd {
                                fd: h,
                                events: want,
                                revents: 0,
                            };
                            // SAFETY: poll our fd without waiting.
                            unsafe { libc::poll(&mut p, 1, 0) };
                            p.revents
                        }
                        None => want & (libc::POLLIN | libc::POLLOUT),
                    };
                    if got != 0 {
                        out.extend_from_slice(&(got as u16 as u32).to_ne_bytes());
                        out.extend_from_slice(&it.data.to_ne_bytes());
                        n += 1;
                        if it.events & libc::EPOLLONESHOT as u32 != 0 {
                            it.events = 0;
                        }
                    }
                }
            }
            let expired = c.deadline.is_some_and(|d| std::time::Instant::now() >= d);
            if n == 0 && timeout != 0 && !expired {
                let dl = c.deadline.or_else(|| {
                    (timeout > 0).then(|| {
                        std::time::Instant::now() + std::time::Duration::from_millis(timeout as u64)
                    })
                });
                return Outcome::Park(host, dl);
            }
            match k.write_bytes(c.tid, a[1], &out) {
                Ok(()) => Outcome::Ret(n as i64),
                Err(e) => err(e),
            }
        }
    }
}

fn select_impl<P: Platform>(k: &mut Kernel<P>, c: &Call, pselect: bool) -> Outcome {
    let a = c.a;
    let nfds = (a[0] as usize).min(1024);
    let words = nfds.div_ceil(64);
    let read_set = |addr: u64| -> Result<Vec<u64>, i32> {
        if addr == 0 {
            return Ok(vec![0; words]);
        }
        let b = k.read_bytes(c.tid, addr, words * 8)?;
        Ok(b.chunks(8)
            .map(|x| u64::from_ne_bytes(x.try_into().unwrap()))
            .collect())
    };
    let (rs, ws, es) = match (read_set(a[1]), read_set(a[2]), read_set(a[3])) {
        (Ok(r), Ok(w), Ok(e)) => (r, w, e),
        _ => return err(libc::EFAULT),
    };
    let timeout: Option<i64> = if a[4] == 0 {
        None
    } else if pselect {
        k.read_val::<libc::timespec>(c.tid, a[4])
            .ok()
            .map(|t| t.tv_sec * 1000 + t.tv_nsec / 1_000_000)
    } else {
        k.read_val::<libc::timeval>(c.tid, a[4])
            .ok()
            .map(|t| t.tv_sec * 1000 + t.tv_usec / 1000)
    };
    let (mut ro, mut wo, eo) = (vec![0u64; words], vec![0u64; words], vec![0u64; words]);
    let mut n = 0;
    let mut host = Vec::new();
    for fd in 0..nfds {
        let (w, b) = (fd / 64, 1u64 << (fd % 64));
        let want_r = rs[w] & b != 0;
        let want_w = ws[w] & b != 0;
        if !want_r && !want_w && es[w] & b == 0 {
            continue;
        }
        let f = match k.file(c.tid, fd as u64) {
            Ok(f) => f,
            Err(e) => return err(e),
        };
        let fb = f.borrow();
        let (rr, wr) = match fb.host_fd() {
            Some(h) if fb.is_stream() => {
                let mut ev = 0;
                if want_r {
                    ev |= libc::POLLIN;
                }
                if want_w {
                    ev |= libc::POLLOUT;
                }
                host.push((h, ev));
                let mut p = libc::pollfd {
                    fd: h,
                    events: ev,
                    revents: 0,
                };
                // SAFETY: poll our fd without waiting.
                unsafe { libc::poll(&mut p, 1, 0) };
                (
                    p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
                    p.revents & (libc::POLLOUT | libc::POLLERR) != 0,
                )
            }
            _ => (true, true),
        };
        if want_r && rr {
            ro[w] |= b;
            n += 1;
        }
        if want_w && wr {
            wo[w] |= b;
            n += 1;
        }
    }
    let expired = c.deadline.is_some_and(|d| std::time::Instant::now() >= d);
    if n == 0 && timeout != Some(0) && !expired {
        let dl = c.deadline.or_else(|| {
            timeout
                .filter(|&t| t > 0)
                .map(|t| std::time::Instant::now() + std::time::Duration::from_millis(t as u64))
        });
        return Outcome::Park(host, dl);
    }
    let put = |addr: u64, v: &Vec<u64>| {
        if addr != 0 {
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
            let _ = k.write_bytes(c.tid, addr, &b);
        }
    };
    put(a[1], &ro);
    put(a[2], &wo);
    put(a[3], &eo);
    Outcome::Ret(n)
}
