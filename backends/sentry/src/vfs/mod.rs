//! The sentry's virtual file system.
//!
//! - `/` is the bundle rootfs seen through a copy-on-write overlay that the sentry mounts in its
//!   own private mount namespace (upper and work directories in the container's state dir; the
//!   bundle rootfs is never written). Every host path is resolved by `openat2` with
//!   `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` against a descriptor of that root, so `..` and
//!   absolute or relative symlinks cannot leave it.
//! - `/proc`, `/sys` and `/dev` are synthesized by the sentry (`kernel/procfs.rs`); the host's are never
//!   reachable (so `/proc/self/root` is "/" of the sandbox). `/dev/shm` alone is a real tmpfs in
//!   the root.

use crate::openat2::{last_errno, openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use std::cell::RefCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevKind {
    Null,
    Zero,
    Full,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Regular,
    Dir,
    /// Pipes, sockets, ttys, fifos: reads and writes may block, so the sentry polls first.
    Stream,
}

#[derive(Debug, Clone)]
pub struct DirEnt {
    pub name: String,
    pub ino: u64,
    pub dtype: u8,
}

/// One registration in an epoll set.
pub struct EpollItem {
    /// Weak: like Linux, the registration goes away with the last reference to the file.
    pub file: std::rc::Weak<std::cell::RefCell<OpenFile>>,
    pub events: u32,
    pub data: u64,
    /// The host fd registered in the set's host epoll instance (a file with no host fd, such as
    /// /dev/null, is always ready and evaluated by the sentry: None).
    pub host: Option<RawFd>,
    /// A duplicate of the file's host fd, made when that host fd is already registered in this
    /// set (the same file under two of the sandbox's fds, which Linux allows and a host epoll
    /// instance refuses for one host fd). It keeps the file open while registered.
    pub dup: Option<OwnedFd>,
    /// An edge-triggered or one-shot item without a host fd has reported its readiness.
    pub fired: bool,
}

/// An epoll instance: the sandbox's interest list, keyed by its fd, and the host epoll instance
/// that watches the host fds behind it (so edge-triggered and one-shot registrations behave as
/// the host kernel's do; the host's event data is the sandbox's fd).
pub struct EpollSet {
    pub host: OwnedFd,
    pub items: std::collections::BTreeMap<i32, EpollItem>,
}

pub enum FileKind {
    /// An epoll instance: the interest list and its host epoll instance.
    Epoll(EpollSet),
    Host {
        fd: OwnedFd,
        kind: HostKind,
    },
    Synth {
        data: Vec<u8>,
        pos: usize,
    },
    Dir {
        entries: Vec<DirEnt>,
        pos: usize,
    },
    Dev(DevKind),
    /// A signalfd: the signals it reads (never SIGKILL or SIGSTOP) and a host signalfd with that
    /// mask. A signalfd reads the signals of the task that reads it, so only the workload's task
    /// itself may read it; the sentry never does (`syscalls/signalfd.rs`).
    Signal {
        fd: OwnedFd,
        mask: u64,
    },
}

pub struct OpenFile {
    pub kind: FileKind,
    /// Virtual path (for /proc/self/fd and dirfd-relative lookups).
    pub path: String,
    /// Status flags (O_ACCMODE, O_APPEND, O_NONBLOCK...) as the workload sees them.
    pub flags: i32,
    /// Whether this pipe end may be handed to the tasks (`syscalls::passthrough`).
    pub pass: Pass,
    /// A directory's in-root path as [`Vfs::dir_path`] last found it, with the
    /// [`DirCache::generation`] it was found at.
    dir_path: RefCell<Option<(String, u64)>>,
}

/// Whether a file may be put into the tasks' own tables so that its reads and writes run there
/// (`syscalls::passthrough`): only pipe ends the sandbox made.
#[derive(Default)]
pub enum Pass {
    /// Never (every file but the sandbox's own pipes: inherited stdio stays the sentry's).
    #[default]
    No,
    /// A pipe end of the sandbox, not handed over yet.
    Pipe,
    /// Its own open file description for the tasks' tables, made at first use; its
    /// O_NONBLOCK is `OpenFile::flags`'s.
    Made(OwnedFd),
}

impl OpenFile {
    pub fn new(kind: FileKind, path: &str, flags: i32) -> Self {
        OpenFile {
            kind,
            path: path.to_string(),
            flags,
            pass: Pass::No,
            dir_path: RefCell::new(None),
        }
    }

    pub fn host_fd(&self) -> Option<RawFd> {
        match &self.kind {
            FileKind::Host { fd, .. } => Some(fd.as_raw_fd()),
            _ => None,
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(
            self.kind,
            FileKind::Host {
                kind: HostKind::Stream,
                ..
            }
        )
    }

    pub fn is_dir(&self) -> bool {
        matches!(
            self.kind,
            FileKind::Host {
                kind: HostKind::Dir,
                ..
            } | FileKind::Dir { .. }
        )
    }

    /// Contents at `offset` (up to `len` bytes, fewer at the end of the file), for an emulated
    /// file mmap and for `sendfile`.
    pub fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        match &self.kind {
            FileKind::Host { fd, kind } => {
                // Not zero-filled first: `sendfile` asks for up to a whole chunk (1 MiB) and
                // mostly gets a few KiB, and zeroing the chunk was the largest single cost of
                // the sentry in `cat` of many small files (issue 17).
                let mut buf: Vec<u8> = Vec::with_capacity(len);
                while buf.len() < len {
                    let got = buf.len();
                    // SAFETY: pread writes at most `len - got` bytes into the buffer's spare
                    // capacity (at least that large), and only what it wrote is then counted
                    // as the buffer's contents.
                    unsafe {
                        let n = libc::pread(
                            fd.as_raw_fd(),
                            buf.as_mut_ptr().add(got).cast(),
                            len - got,
                            (offset as usize + got) as i64,
                        );
                        if n <= 0 {
                            break;
                        }
                        buf.set_len(got + n as usize);
                    }
                    if *kind == HostKind::Regular && buf.len() < len {
                        // A short read of a regular file is its end: no second pread to be
                        // told so (`cat` of a small file, issue 17). Callers take a short
                        // count as sendfile's and a file mmap's end.
                        break;
                    }
                }
                buf
            }
            FileKind::Synth { data, .. } => {
                let o = (offset as usize).min(data.len());
                data[o..(o + len).min(data.len())].to_vec()
            }
            _ => Vec::new(),
        }
    }
}

/// A directory the sandbox holds by itself, not by its name: a task's current directory. Linux
/// keeps the directory (a rename moves it, a removal leaves it without a path), and so does the
/// sentry: its own `O_PATH` descriptor of it, resolved in the root, whose in-root path
/// [`Vfs::where_is`] finds again after a name in the root changed.
pub struct HeldDir {
    fd: OwnedFd,
    /// Where it was when it was taken: the answer when the host cannot say.
    taken_at: String,
    /// Its path as [`Vfs::where_is`] last found it.
    kept: RefCell<Option<(String, u64)>>,
}

impl HeldDir {
    /// Hold directory `fd` (a descriptor of the sentry's, resolved in the root), found at
    /// `path`.
    pub fn new(fd: OwnedFd, path: String) -> Self {
        HeldDir {
            fd,
            taken_at: path,
            kept: RefCell::new(None),
        }
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Its in-root path now; ENOENT once it is removed.
    pub fn path(&self, vfs: &Vfs) -> Result<String, i32> {
        Ok(vfs
            .where_is(&self.kept, self.fd())?
            .unwrap_or_else(|| self.taken_at.clone()))
    }

    /// What a `/proc/<pid>/cwd` link to it reads: its path, or "<path> (deleted)" once removed.
    pub fn link(&self, vfs: &Vfs) -> String {
        self.path(vfs)
            .ok()
            .or_else(|| vfs.virt_path_of(self.fd()))
            .unwrap_or_else(|| self.taken_at.clone())
    }
}

/// Lexically normalize an absolute path ("/a/./b/../c" -> "/a/c"); ".." at the root stays at "/".
pub fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let mut s = String::from("/");
    s.push_str(&out.join("/"));
    s
}

/// A node of the synthesized trees (see `kernel::procfs`).
pub enum Synth {
    File(Vec<u8>),
    Dir(Vec<DirEnt>),
    Link(String),
    Dev(DevKind),
    /// /proc/<pid>/fd/<n> opened through: the same open file.
    Fd(Rc<RefCell<OpenFile>>),
    /// A node of the sandbox's own devpts instance (`ptmx`, or a pty's number): each open of
    /// it opens the host node anew.
    Pty(String),
}

/// Where a path leads.
pub enum Node {
    /// A path in the overlay root (relative, no leading '/').
    Host(String),
    /// A removed directory itself: "." relative to it, which Linux still finds though no path
    /// leads to it any more. Held by an `O_PATH` descriptor of the sentry's, made from the
    /// cwd's or the directory descriptor's by [`Vfs::reopen_dir`].
    Removed(OwnedFd),
    Synth(Synth),
}

impl Node {
    /// Open a node of the root with open(2) `flags`: a path resolved in the root, or a removed
    /// directory through "." of its descriptor. EROFS for a synthesized node (callers that
    /// reach here have handled those).
    pub fn open_host(&self, vfs: &Vfs, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
        match self {
            Node::Host(rel) => vfs.open(rel, flags, mode),
            Node::Removed(fd) => vfs.reopen_dir(fd.as_raw_fd(), flags),
            Node::Synth(_) => Err(libc::EROFS),
        }
    }
}

/// The rootfs side of the VFS.
pub struct Vfs {
    pub root: OwnedFd,
    /// Host path of the merged root (only to turn host fd paths back into virtual ones).
    pub root_path: String,
    /// The root of the sandbox's own devpts instance (a detached mount the sentry holds),
    /// behind /dev/ptmx and /dev/pts; None where it could not be made.
    pub pts: Option<OwnedFd>,
    /// The console (the pty slave the spec's terminal gave), which /dev/tty opens for a task
    /// whose controlling terminal it is.
    pub console: Option<Rc<RefCell<OpenFile>>>,
    /// What the search-permission walk learnt about the root's directories (see [`DirCache`]).
    pub dirs: RefCell<DirCache>,
}

pub fn synth_ino(path: &str) -> u64 {
    // FNV-1a: stable inode numbers for synthetic files.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in path.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h | 1
}

pub fn is_synthetic(norm: &str) -> bool {
    let under = |p: &str| norm == p || norm.starts_with(&format!("{p}/"));
    // /dev/shm is a tmpfs in the root (a mount of the spec's, else the sentry's own);
    // /dev/mqueue the sandbox's IPC namespace's mqueue file system.
    ["/proc", "/sys", "/dev"].iter().any(|p| under(p)) && !under(SHM) && !under(MQUEUE)
}

/// The sandbox's shared-memory directory: a real tmpfs, not a synthesized node.
pub const SHM: &str = "/dev/shm";

/// The sandbox's POSIX message queues: a real mqueue mount, not a synthesized node.
pub const MQUEUE: &str = "/dev/mqueue";

pub fn cstr(s: &str) -> Result<CString, i32> {
    CString::new(s).map_err(|_| libc::EINVAL)
}

impl Vfs {
    pub fn new(root_path: &str) -> std::io::Result<Vfs> {
        let c = CString::new(root_path).map_err(std::io::Error::other)?;
        // SAFETY: open a directory by path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let root = unsafe { OwnedFd::from_raw_fd(fd) };
        let dev = fstat_fd(root.as_raw_fd())
            .map_err(std::io::Error::from_raw_os_error)?
            .st_dev;
        Ok(Vfs {
            root,
            root_path: root_path.trim_end_matches('/').to_string(),
            pts: None,
            console: None,
            dirs: RefCell::new(DirCache::new(dev)),
        })
    }

    /// openat2 inside the root. `rel` may contain "..", symlinks: all stay inside.
    pub fn open(&self, rel: &str, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
        openat2(
            self.root.as_raw_fd(),
            rel,
            flags,
            mode,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        )
    }

    /// `tree` (a detached tmpfs mount the sentry just made for the sandbox) is a file system
    /// only the sandbox changes: [`DirCache`] and the kept paths of directories take it as
    /// they take the root. Before the sandbox runs.
    pub fn own_tmpfs(&self, tree: &OwnedFd) -> std::io::Result<()> {
        let st = fstat_fd(tree.as_raw_fd()).map_err(std::io::Error::from_raw_os_error)?;
        self.dirs.borrow_mut().own_fs(st.st_dev);
        Ok(())
    }

    /// The parent directory (as an O_PATH fd) and the last component, for *at() calls.
    pub fn parent(&self, rel: &str) -> Result<(OwnedFd, CString), i32> {
        let t = rel.trim_end_matches('/');
        let (dir, name) = match t.rfind('/') {
            Some(i) => (&t[..i], &t[i + 1..]),
            None => ("", t),
        };
        if name.is_empty() || name == "." || name == ".." {
            return Err(libc::EBUSY);
        }
        let fd = self.open(dir, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok((fd, cstr(name)?))
    }

    /// [`Vfs::stat`] for the workload's stat calls. When `rel` is dir/name with a plain name
    /// and dir is (or can be made) a directory of [`DirCache`], one `fstatat` on that
    /// directory's descriptor; otherwise, and for a symlink to follow, [`Vfs::stat`]. (The
    /// sentry's own set-up uses [`Vfs::stat`]: it fills no cache before the sandbox runs.)
    pub fn stat_cached(&self, rel: &str, follow: bool) -> Result<libc::stat, i32> {
        if let Some(st) = self.stat_in_parent(rel, follow) {
            return st;
        }
        self.stat(rel, follow)
    }

    /// The one-`fstatat` stat of [`Vfs::stat_cached`]; None where it does not apply.
    fn stat_in_parent(&self, rel: &str, follow: bool) -> Option<Result<libc::stat, i32>> {
        let comps: Vec<&str> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let (&name, dir) = comps.split_last()?;
        if name == ".." || rel.ends_with('/') || rel.ends_with("/.") {
            return None;
        }
        let key = dir.join("/");
        if self.dirs.borrow().elsewhere(&key) {
            return None;
        }
        let cached = self.dirs.borrow().fd(&key);
        let pfd = match cached {
            Some(fd) => fd,
            None => {
                // Open the directory in the root and keep it if the cache takes it (a
                // directory of the overlay root).
                let fd = self.open(&key, libc::O_PATH | libc::O_DIRECTORY, 0).ok()?;
                let st = fstat_fd(fd.as_raw_fd()).ok()?;
                if !self.dirs.borrow_mut().put(&key, &st, Some(fd)) {
                    return None;
                }
                self.dirs.borrow().fd(&key)?
            }
        };
        let c = cstr(name).ok()?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat of one plain name (no '/', not "." or "..") without following a
        // symlink, in a directory of ours, into a local struct.
        let rc = unsafe {
            libc::fstatat(
                pfd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Some(Err(last_errno()));
        }
        if follow && st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            // The link is resolved from the root.
            return None;
        }
        Some(Ok(st))
    }

    /// stat of `rel` in the root: an in-root `openat2` of the whole path, then `fstat`.
    pub fn stat(&self, rel: &str, follow: bool) -> Result<libc::stat, i32> {
        let fd = self.open(
            rel,
            libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW },
            0,
        )?;
        fstat_fd(fd.as_raw_fd())
    }

    /// The in-root path of open directory `f` with host descriptor `h`, for lookups relative
    /// to it (`*at` calls with a directory descriptor, `fchdir`): [`Vfs::where_is`] with the
    /// answer kept in `f`.
    pub fn dir_path(&self, f: &OpenFile, h: RawFd) -> Result<Option<String>, i32> {
        self.where_is(&f.dir_path, h)
    }

    /// Where the directory of host descriptor `h` is now, as an in-root path; Err(ENOENT) once
    /// it is removed (Linux looks nothing up in a removed directory and has no path for it);
    /// None where the host cannot say (not a directory under the root's path).
    ///
    /// The sentry's own `/proc/self/fd` link says where the directory is now
    /// ([`Vfs::virt_path_of`]: a `getpid` and a `readlink`); a directory of the overlay root
    /// keeps that answer in `kept` until a name or a mode in the root changes
    /// ([`DirCache::changed`], which every rename, unlink, rmdir, and chmod or chown of a
    /// directory in the sandbox calls first; a new name moves no directory), so a walk that
    /// stats every entry of a directory through its descriptor asks once, not once per entry
    /// (issue 17). So does a directory of a tmpfs of the sandbox's own; one of a bind mount
    /// (which the host may change under the sandbox) is asked every time, as [`DirCache`]
    /// does.
    ///
    /// A removed directory's link reads "<path> (deleted)"; a directory really named so is
    /// told apart by looking that name up in the root: it is not this directory.
    ///
    /// The path is only a starting point: every lookup from it still resolves in the root
    /// (`openat2(RESOLVE_IN_ROOT)`), so even a stale one could not lead outside the root.
    pub fn where_is(
        &self,
        kept: &RefCell<Option<(String, u64)>>,
        h: RawFd,
    ) -> Result<Option<String>, i32> {
        let gen = self.dirs.borrow().generation;
        if let Some((p, g)) = &*kept.borrow() {
            if *g == gen {
                return Ok(Some(p.clone()));
            }
        }
        let Some(p) = self.virt_path_of(h) else {
            return Ok(None);
        };
        let st = fstat_fd(h)?;
        if p.ends_with(" (deleted)") {
            let same = self
                .open(
                    p.trim_start_matches('/'),
                    libc::O_PATH | libc::O_NOFOLLOW,
                    0,
                )
                .and_then(|fd| fstat_fd(fd.as_raw_fd()))
                .is_ok_and(|o| (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino));
            if !same {
                return Err(libc::ENOENT);
            }
        }
        if st.st_nlink > 0 && self.dirs.borrow().takes(&st) {
            *kept.borrow_mut() = Some((p.clone(), gen));
        }
        Ok(Some(p))
    }

    /// Where a lookup of `rel` from removed directory `h` starts (see [`Vfs::where_is`]):
    /// Linux finds no name in a removed directory, but still walks its "..", to the directory
    /// it was removed from. So a leading ".." (after any ".") leads to that parent's path now;
    /// anything else is ENOENT. ("." alone, the directory itself, is [`Node::Removed`]: the
    /// caller, `Kernel::lookup`, takes it first.)
    ///
    /// The parent is opened with a plain `openat(h, "..")`: `h` is a directory of the root that
    /// is not the root (the root cannot be removed) nor a mount's root (a mount point cannot be
    /// removed), so its parent is in the root too; and its path only starts a lookup that
    /// resolves in the root, as every other.
    pub fn from_removed(&self, h: RawFd, rel: &str) -> Result<String, i32> {
        let rel = rel.trim_start_matches("./").trim_start_matches('/');
        let rest = match rel.split_once('/') {
            Some(("..", rest)) => rest,
            None if rel == ".." => "",
            _ => return Err(libc::ENOENT),
        };
        // SAFETY: openat of ".." on our own descriptor; the new descriptor is owned below.
        let fd = unsafe {
            libc::openat(
                h,
                c"..".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: a new descriptor of ours.
        let parent = unsafe { OwnedFd::from_raw_fd(fd) };
        let base = self
            .where_is(&RefCell::new(None), parent.as_raw_fd())?
            .ok_or(libc::ENOENT)?;
        Ok(format!("{}/{rest}", base.trim_end_matches('/')))
    }

    /// Open directory `h` again, by "." of it, with open(2) `flags` (an `O_CREAT` or a write
    /// access is EISDIR from the host, as for any directory). Only for a removed directory,
    /// which no path reaches: "." of a descriptor is that very directory, so this can reach
    /// nothing else, in the root or out of it.
    pub fn reopen_dir(&self, h: RawFd, flags: i32) -> Result<OwnedFd, i32> {
        // SAFETY: openat of "." on our own descriptor; the new descriptor is owned below.
        let fd = unsafe { libc::openat(h, c".".as_ptr(), flags | libc::O_CLOEXEC, 0) };
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: a new descriptor of ours.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Virtual path of a host fd of ours (via the sentry's own /proc, by descriptor).
    pub fn virt_path_of(&self, fd: RawFd) -> Option<String> {
        let p = crate::hostproc::fd_path(fd).ok()?;
        let s = p.to_str()?;
        let rest = s.strip_prefix(&self.root_path)?;
        // A sibling of the root that shares its name as a prefix (`<root>-other`) is not in it.
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        Some(if rest.is_empty() {
            "/".to_string()
        } else {
            rest.to_string()
        })
    }
}

/// The owner, group and mode of a directory of the root, as the search-permission walk
/// (`kernel::path`) needs them to decide whether a task may pass through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl DirMeta {
    /// A stat carrying only what [`crate::kernel::creds::may`] looks at.
    pub fn as_stat(&self) -> libc::stat {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = self.mode;
        st.st_uid = self.uid;
        st.st_gid = self.gid;
        st
    }
}

/// The directories the search-permission walk has met, by their path in the root as the
/// workload spelt it ("usr/lib", symlinks and ".." not resolved), with their owner, group and
/// mode. A lookup of a/b/c/d then checks search permission on a, a/b and a/b/c without
/// opening and `fstat`ing each of them again (issue 17: that walk was ~15 host syscalls of
/// every path lookup in `find`).
///
/// Keyed by path, not by (dev, ino): the inode of a prefix is only known once the prefix is
/// resolved, which is the `openat2` this cache saves. A path names the same directory, with the
/// same mode, until a name or a mode in the root changes; every such change in the sandbox is a
/// call the sentry makes for it (rename, unlink, rmdir, mkdir, mknod, link, symlink, chmod,
/// chown; the sandbox has no mount, xattr or ACL calls), and each first calls
/// [`DirCache::changed`], which drops every entry. The cache holds directories of the file
/// systems only the sandbox changes (by their `st_dev`): the overlay root and the tmpfs mounts
/// the sentry made for it (its own `/dev/shm`, the spec's tmpfs mounts: new instances, mounted
/// in the sentry's private mount namespace, [`DirCache::own_fs`]). Bind mounts, whose contents
/// the host may change under the sandbox, are walked every time. Changes to the overlay's
/// layers from outside are not allowed by overlayfs while it is mounted, so they are not a way
/// for the cache to go stale.
///
/// It is only the permission check that is cached. Every open and stat still resolves its path
/// with `openat2(RESOLVE_IN_ROOT)`, so even a stale entry could only give a wrong EACCES or a
/// wrong pass of the *virtual* search check; it can never lead a lookup outside the root.
///
/// It also keeps a few of those directories open (`O_PATH`), so that a stat of a/b/c/name is
/// one `fstatat(a/b/c, "name", AT_SYMLINK_NOFOLLOW)` instead of an in-root `openat2` of the
/// whole path, an `fstat` and a `close` ([`Vfs::stat`]). That descriptor was itself resolved in
/// the root, and a single component other than "." and ".." looked up without following a
/// symlink cannot leave the directory it is looked up in (a symlink found there is resolved
/// from the root as before), so that too stays inside the root even if the entry were stale.
pub struct DirCache {
    /// The `st_dev` of the file systems it takes: the root's first, then the sandbox's own
    /// tmpfs mounts.
    devs: Vec<u64>,
    map: std::collections::HashMap<String, DirMeta>,
    fds: std::collections::HashMap<String, Rc<OwnedFd>>,
    /// Paths found to be directories of other file systems (mounts), which the cache does not
    /// take: a stat below them goes straight to the in-root `openat2`.
    elsewhere: std::collections::HashSet<String>,
    /// Bumped by every [`DirCache::changed`]: how many times the cache was dropped.
    pub generation: u64,
}

/// Past this many directories the cache starts again empty (a bound on the sentry's memory).
const DIR_CACHE_MAX: usize = 8192;
/// Past this many open directories the cache closes them all (a bound on the sentry's fds).
const DIR_FDS_MAX: usize = 64;

impl DirCache {
    pub fn new(root_dev: u64) -> Self {
        DirCache {
            devs: vec![root_dev],
            map: std::collections::HashMap::new(),
            fds: std::collections::HashMap::new(),
            elsewhere: std::collections::HashSet::new(),
            generation: 0,
        }
    }

    pub fn get(&self, path: &str) -> Option<DirMeta> {
        self.map.get(path).copied()
    }

    /// Take the directories of the file system `dev` too: a tmpfs the sentry made for the
    /// sandbox, which nothing but the sandbox changes. Before the sandbox runs.
    pub fn own_fs(&mut self, dev: u64) {
        if !self.devs.contains(&dev) {
            self.devs.push(dev);
        }
    }

    /// Remember `st` for `path` if it is a directory it takes ([`DirCache::takes`]), and `fd` (the
    /// directory `path` resolved to in the root, `st` its fstat) if one is given. Returns
    /// whether it was remembered.
    pub fn put(&mut self, path: &str, st: &libc::stat, fd: Option<OwnedFd>) -> bool {
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return false;
        }
        if !self.devs.contains(&st.st_dev) {
            if self.elsewhere.len() >= DIR_CACHE_MAX {
                self.elsewhere.clear();
            }
            self.elsewhere.insert(path.to_string());
            return false;
        }
        if self.map.len() >= DIR_CACHE_MAX {
            self.map.clear();
        }
        self.map.insert(
            path.to_string(),
            DirMeta {
                mode: st.st_mode,
                uid: st.st_uid,
                gid: st.st_gid,
            },
        );
        if let Some(fd) = fd {
            if self.fds.len() >= DIR_FDS_MAX {
                self.fds.clear();
            }
            self.fds.insert(path.to_string(), Rc::new(fd));
        }
        true
    }

    /// Whether `st` is a directory of a file system this cache takes (the overlay root, a
    /// tmpfs of the sandbox's own).
    pub fn takes(&self, st: &libc::stat) -> bool {
        st.st_mode & libc::S_IFMT == libc::S_IFDIR && self.devs.contains(&st.st_dev)
    }

    /// The open directory of `path`, if the cache holds one.
    pub fn fd(&self, path: &str) -> Option<Rc<OwnedFd>> {
        self.fds.get(path).cloned()
    }

    /// Is `path` a directory of a file system it does not take (as far as it knows)?
    pub fn elsewhere(&self, path: &str) -> bool {
        self.elsewhere.contains(path)
    }

    /// A name or a mode in the root is about to change: forget everything.
    pub fn changed(&mut self) {
        self.map.clear();
        self.fds.clear();
        self.elsewhere.clear();
        self.generation += 1;
    }
}

pub fn fstat_fd(fd: RawFd) -> Result<libc::stat, i32> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat with AT_EMPTY_PATH on our fd.
    if unsafe { libc::fstatat(fd, c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) } != 0 {
        return Err(last_errno());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_clamps_at_root() {
        assert_eq!(normalize("/a/./b/../c"), "/a/c");
        assert_eq!(normalize("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("/proc/self/../1"), "/proc/1");
    }

    /// The one-`fstatat` stat answers as the in-root `openat2` stat does, for every kind of
    /// path, symlinks leading out of the root among them, before and after the cache drops.
    #[test]
    fn cached_stat_answers_as_the_in_root_stat() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/b/file"), "in").unwrap();
        std::fs::write(dir.path().join("outside"), "out").unwrap();
        std::fs::create_dir(dir.path().join("outdir")).unwrap();
        for (target, link) in [
            ("file", "a/b/rel"),
            ("/a/b/file", "a/b/abs"),
            ("../../../outside", "a/b/escape"),
            ("/../outdir", "a/b/escape_dir"),
            ("c", "a/b/dirlink"),
            ("nowhere", "a/b/dangling"),
        ] {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        }
        let v = Vfs::new(root.to_str().unwrap()).unwrap();
        let rels = [
            "a/b/file",
            "a/b/rel",
            "a/b/abs",
            "a/b/escape",
            "a/b/escape_dir",
            "a/b/dirlink",
            "a/b/dangling",
            "a/b/c",
            "a/b/c/",
            "a/b/c/.",
            "a/b/c/..",
            "a/b/..",
            "a/../..",
            "a/b/file/",
            "a/b/file/x",
            "a/b/missing",
            "a/missing/x",
            "a/b/dirlink/..",
            "a/b/escape_dir/x",
            "a//b/./file",
            "a",
            "",
            ".",
        ];
        let key = |r: Result<libc::stat, i32>| r.map(|st| (st.st_dev, st.st_ino, st.st_mode));
        for round in 0..3 {
            for rel in rels {
                for follow in [true, false] {
                    assert_eq!(
                        key(v.stat_cached(rel, follow)),
                        key(v.stat(rel, follow)),
                        "{rel:?} follow={follow} round {round}"
                    );
                }
            }
            if round == 1 {
                v.dirs.borrow_mut().changed();
            }
        }
        // The parents it opened are cached, and a drop empties the cache.
        assert!(v.dirs.borrow().fd("a/b").is_some());
        v.dirs.borrow_mut().changed();
        assert!(v.dirs.borrow().fd("a/b").is_none());
        assert!(v.dirs.borrow().get("a/b").is_none());
    }

    /// A held directory's path follows a rename once the cache drops; a removed one has none,
    /// even when a directory is named as the host names a removed one.
    #[test]
    fn a_held_directory_follows_a_rename_and_has_no_path_once_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        let v = Vfs::new(root.to_str().unwrap()).unwrap();
        let fd = v.open("a", libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        let held = HeldDir::new(fd, "/a".into());
        assert_eq!(held.path(&v), Ok("/a".into()));
        std::fs::rename(root.join("a"), root.join("b")).unwrap();
        v.dirs.borrow_mut().changed();
        assert_eq!(held.path(&v), Ok("/b".into()));
        std::fs::create_dir(root.join("b (deleted)")).unwrap();
        std::fs::remove_dir(root.join("b")).unwrap();
        v.dirs.borrow_mut().changed();
        assert_eq!(held.path(&v), Err(libc::ENOENT));
        assert_eq!(held.link(&v), "/b (deleted)");
        // Nothing is found in it but "..".
        assert_eq!(v.from_removed(held.fd(), "../x/y"), Ok("/x/y".into()));
        assert_eq!(v.from_removed(held.fd(), "./.."), Ok("/".into()));
        for rel in ["x", ".", "", "b (deleted)", ".../x"] {
            assert_eq!(v.from_removed(held.fd(), rel), Err(libc::ENOENT), "{rel:?}");
        }
        // "." of it is the removed directory itself, not the one named as the host names it.
        let itself = v.reopen_dir(held.fd(), libc::O_PATH).unwrap();
        let key = |st: libc::stat| (st.st_dev, st.st_ino);
        assert_eq!(
            fstat_fd(itself.as_raw_fd()).map(key),
            fstat_fd(held.fd()).map(key)
        );
        assert_ne!(
            fstat_fd(itself.as_raw_fd()).map(key),
            v.stat("b (deleted)", false).map(key)
        );
    }

    #[test]
    fn a_sibling_sharing_the_root_name_as_prefix_is_not_in_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("root-other/x")).unwrap();
        let v = Vfs::new(root.to_str().unwrap()).unwrap();
        let inside = std::fs::File::open(root.join("a")).unwrap();
        let sibling = std::fs::File::open(dir.path().join("root-other/x")).unwrap();
        assert_eq!(v.virt_path_of(inside.as_raw_fd()).as_deref(), Some("/a"));
        assert_eq!(v.virt_path_of(sibling.as_raw_fd()), None);
    }

    #[test]
    fn dir_cache_takes_only_directories_of_the_root() {
        let mut c = DirCache::new(7);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = libc::S_IFDIR | 0o700;
        st.st_dev = 7;
        st.st_uid = 1000;
        assert!(c.put("a", &st, None));
        assert_eq!(
            c.get("a").map(|m| (m.mode, m.uid)),
            Some((libc::S_IFDIR | 0o700, 1000))
        );
        st.st_dev = 8;
        assert!(!c.put("mnt", &st, None));
        assert!(c.get("mnt").is_none() && c.elsewhere("mnt"));
        assert!(!c.takes(&st));
        // A tmpfs of the sandbox's own is taken as the root is.
        c.own_fs(9);
        st.st_dev = 9;
        assert!(c.takes(&st) && c.put("dev/shm", &st, None));
        assert!(c.get("dev/shm").is_some());
        st.st_dev = 7;
        st.st_mode = libc::S_IFREG | 0o644;
        assert!(!c.put("f", &st, None));
        assert!(c.get("f").is_none());
        c.changed();
        assert!(c.get("a").is_none() && !c.elsewhere("mnt"));
        assert_eq!(c.generation, 1);
    }

    #[test]
    fn openat2_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/inside"), "in").unwrap();
        std::fs::write(dir.path().join("outside"), "out").unwrap();
        std::os::unix::fs::symlink("/../../outside", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("rel")).unwrap();
        let v = Vfs::new(root.to_str().unwrap()).unwrap();
        assert!(v.open("etc/inside", libc::O_RDONLY, 0).is_ok());
        assert_eq!(
            v.open("../outside", libc::O_RDONLY, 0).err(),
            Some(libc::ENOENT)
        );
        assert_eq!(v.open("abs", libc::O_RDONLY, 0).err(), Some(libc::ENOENT));
        assert_eq!(v.open("rel", libc::O_RDONLY, 0).err(), Some(libc::ENOENT));
        assert_eq!(
            v.open("etc/../../../outside", libc::O_RDONLY, 0).err(),
            Some(libc::ENOENT)
        );
    }
}
