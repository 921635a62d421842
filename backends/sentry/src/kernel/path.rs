//! Path resolution: a path the workload names, relative to its cwd or a directory descriptor,
//! leads either into the overlay root (resolved later, in-root, by `vfs`) or to a node of the
//! synthesized trees (`procfs`). The kernel's search-permission walk and the parent-directory
//! checks of calls that change a directory entry are here too.

use super::creds::{may, may_entry, Creds, Entry, DAC_OVERRIDE, DAC_READ_SEARCH};
use super::{Cwd, Kernel};
use crate::openat2::{openat2, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};
use crate::platform::Platform;
use crate::vfs::{cstr, fstat_fd, is_synthetic, normalize, Node, Synth};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

impl<P: Platform> Kernel<P> {
    /// Resolve `path` for `tid` (relative to `dirfd` or its cwd).
    pub fn lookup(&self, tid: i32, dirfd: i32, path: &str, follow: bool) -> Result<Node, i32> {
        if path.is_empty() {
            return Err(libc::ENOENT);
        }
        let joined = if path.starts_with('/') {
            path.to_string()
        } else {
            let join = |base: &str| format!("{}/{}", base.trim_end_matches('/'), path);
            // A removed directory has no path (ENOENT): Linux finds in it only itself (".")
            // and its "..", to where it was removed from.
            let removed = |h: RawFd| -> Result<Result<String, Node>, i32> {
                if path.split('/').all(|c| c.is_empty() || c == ".") {
                    return self.removed_itself(tid, h).map(Err);
                }
                self.vfs.from_removed(h, path).map(Ok)
            };
            let found = if dirfd == libc::AT_FDCWD {
                let cwd = self.proc_of(tid).borrow().cwd.clone();
                match &cwd {
                    Cwd::Held(d) => match d.path(&self.vfs) {
                        Ok(base) => Ok(join(&base)),
                        Err(libc::ENOENT) => removed(d.fd())?,
                        Err(e) => return Err(e),
                    },
                    Cwd::Path(base) => Ok(join(base)),
                }
            } else {
                let f = self.fds_of(tid).borrow().get(dirfd).ok_or(libc::EBADF)?;
                let f = f.borrow();
                if !f.is_dir() {
                    return Err(libc::ENOTDIR);
                }
                match f.host_fd().map(|h| (h, self.vfs.dir_path(&f, h))) {
                    Some((_, Ok(Some(base)))) => Ok(join(&base)),
                    Some((h, Err(libc::ENOENT))) => removed(h)?,
                    Some((_, Err(e))) => return Err(e),
                    Some((_, Ok(None))) | None => Ok(join(&f.path)),
                }
            };
            match found {
                Ok(joined) => joined,
                Err(itself) => return Ok(itself),
            }
        };
        self.lookup_abs(tid, &joined, follow, 0)
    }

    /// "." of removed directory `h` (a cwd or a directory descriptor): the directory itself,
    /// by a new `O_PATH` descriptor of it. The lookup of "." needs search permission on it, as
    /// every step of a lookup does.
    fn removed_itself(&self, tid: i32, h: RawFd) -> Result<Node, i32> {
        let fd = self.vfs.reopen_dir(h, libc::O_PATH | libc::O_DIRECTORY)?;
        let creds = self.proc_of(tid).borrow().creds.clone();
        if !creds.capable(DAC_READ_SEARCH)
            && !creds.capable(DAC_OVERRIDE)
            && !may(&fstat_fd(fd.as_raw_fd())?, &creds, 1)
        {
            return Err(libc::EACCES);
        }
        Ok(Node::Removed(fd))
    }

    pub fn lookup_abs(
        &self,
        tid: i32,
        joined: &str,
        follow: bool,
        depth: u32,
    ) -> Result<Node, i32> {
        if depth > 16 {
            return Err(libc::ELOOP);
        }
        let norm = normalize(joined);
        if !is_synthetic(&norm) {
            let rel = joined.trim_start_matches('/').to_string();
            self.may_walk(tid, &rel)?;
            return Ok(Node::Host(rel));
        }
        let comps: Vec<&str> = norm.split('/').filter(|c| !c.is_empty()).collect();
        // Walk, following synthetic symlinks met on the way.
        for i in 1..=comps.len() {
            let node = self.synth_at(tid, &comps[..i])?;
            let last = i == comps.len();
            if let Node::Synth(Synth::Link(target)) = &node {
                if !last || follow {
                    let base = format!("/{}", comps[..i - 1].join("/"));
                    let t = if target.starts_with('/') {
                        target.clone()
                    } else {
                        format!("{base}/{target}")
                    };
                    let rest = comps[i..].join("/");
                    let next = if rest.is_empty() {
                        t
                    } else {
                        format!("{}/{}", t.trim_end_matches('/'), rest)
                    };
                    return self.lookup_abs(tid, &next, follow, depth + 1);
                }
            }
            if last {
                if follow {
                    if let Node::Synth(Synth::Fd(_)) = node {
                        return Ok(node);
                    }
                }
                return Ok(node);
            }
            if !matches!(node, Node::Synth(Synth::Dir(_))) {
                // /proc/<pid>/fd/<n>/x and similar.
                if let Node::Synth(Synth::Fd(_)) = node {
                    return Err(libc::ENOTDIR);
                }
                return Err(libc::ENOTDIR);
            }
        }
        Err(libc::ENOENT)
    }

    /// Search permission on every directory the path walks through (the kernel checks it at
    /// each step of a lookup; the sentry's in-root open runs as root and would not). Each
    /// leading prefix is resolved in the root, symlinks followed, and must be searchable. A
    /// prefix that does not resolve is left to the call itself to report. Callers holding
    /// CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE pass every directory: no walk.
    ///
    /// A prefix the walk has met before, with no name or mode in the root changed since, is
    /// answered from [`crate::vfs::DirCache`] without a host call. Others are reached from the
    /// prefix before them by a one-component openat2 (beneath it, no symlinks) when the walk
    /// holds that prefix's descriptor, else by resolving the prefix from the root; a component
    /// the one-component step cannot take (a symlink, "..", an error) is also resolved from the
    /// root. So the answer is the same as resolving every prefix from the root, and a path n
    /// deep costs at most n lookups, none once its directories are known (issue 17).
    pub fn may_walk(&self, tid: i32, rel: &str) -> Result<(), i32> {
        let creds = self.proc_of(tid).borrow().creds.clone();
        if creds.capable(DAC_READ_SEARCH) || creds.capable(DAC_OVERRIDE) {
            return Ok(());
        }
        let comps: Vec<&str> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        // `prefix` is comps[..i] joined: the root itself (the empty prefix) first. `dir` is its
        // descriptor when the walk opened it (None for the root: the root's own descriptor,
        // or for a prefix the cache answered: not opened).
        let mut prefix = String::new();
        let mut dir: Option<OwnedFd> = None;
        let mut have_fd = true;
        for i in 0..comps.len() {
            if i > 0 {
                if i > 1 {
                    prefix.push('/');
                }
                prefix.push_str(comps[i - 1]);
            }
            let cached = self.vfs.dirs.borrow().get(&prefix);
            let st = match cached {
                Some(meta) => {
                    have_fd = false;
                    dir = None;
                    meta.as_stat()
                }
                None => {
                    if i > 0 {
                        let step = (have_fd && comps[i - 1] != "..")
                            .then(|| {
                                let at = dir.as_ref().unwrap_or(&self.vfs.root).as_raw_fd();
                                openat2(
                                    at,
                                    comps[i - 1],
                                    libc::O_PATH,
                                    0,
                                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
                                )
                                .ok()
                            })
                            .flatten();
                        let fd = match step {
                            Some(fd) => fd,
                            None => match self.vfs.open(&prefix, libc::O_PATH, 0) {
                                Ok(fd) => fd,
                                Err(_) => return Ok(()),
                            },
                        };
                        dir = Some(fd);
                        have_fd = true;
                    }
                    let at = dir.as_ref().unwrap_or(&self.vfs.root).as_raw_fd();
                    let Ok(st) = fstat_fd(at) else {
                        return Ok(());
                    };
                    // The cache keeps the last directory's descriptor (the parent of the name
                    // looked up: the one a stat will use); the others it only describes.
                    let keep = if i + 1 == comps.len() {
                        dir.take()
                    } else {
                        None
                    };
                    self.vfs.dirs.borrow_mut().put(&prefix, &st, keep);
                    st
                }
            };
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR && !may(&st, &creds, 1) {
                return Err(libc::EACCES);
            }
        }
        Ok(())
    }

    /// The permission to change the entry `name` of directory `dir` (see [`may_entry`]).
    pub fn may_change(
        &self,
        tid: i32,
        dir: RawFd,
        name: &std::ffi::CStr,
        what: Entry,
    ) -> Result<(), i32> {
        may_entry(dir, name, &self.creds(tid), what)
    }

    /// Creating `path`: write and search permission on its directory.
    pub fn may_create(&self, tid: i32, dirfd: i32, path: &str, creds: &Creds) -> Result<(), i32> {
        let (pfd, name) = self.host_parent(tid, dirfd, path)?;
        may_entry(pfd.as_raw_fd(), &name, creds, Entry::Create)
    }

    /// Parent fd + name for a path syscall on the host side; synthetic paths are read-only.
    pub fn host_parent(
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
        if is_synthetic(&norm) && path.starts_with('/') {
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
                Ok((fd, cstr(name)?))
            }
            // Nothing is made in a removed directory.
            Node::Removed(_) => Err(libc::ENOENT),
            Node::Synth(_) => Err(libc::EROFS),
        }
    }
}
