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
            FileKind::Host { fd, .. } => {
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
    Synth(Synth),
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
        Ok(Vfs {
            root: unsafe { OwnedFd::from_raw_fd(fd) },
            root_path: root_path.trim_end_matches('/').to_string(),
            pts: None,
            console: None,
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

    pub fn stat(&self, rel: &str, follow: bool) -> Result<libc::stat, i32> {
        let fd = self.open(
            rel,
            libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW },
            0,
        )?;
        fstat_fd(fd.as_raw_fd())
    }

    /// Virtual path of a host fd of ours (via the sentry's own /proc, by descriptor).
    pub fn virt_path_of(&self, fd: RawFd) -> Option<String> {
        let p = crate::hostproc::fd_path(fd).ok()?;
        let s = p.to_str()?;
        let rest = s.strip_prefix(&self.root_path)?;
        Some(if rest.is_empty() {
            "/".to_string()
        } else {
            rest.to_string()
        })
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
