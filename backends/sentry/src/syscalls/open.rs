//! open, openat, openat2 and creat: a path to an open file, either a host file opened in-root
//! (with the kernel's permission checks made against the caller's virtual creds) or a node of
//! the synthesized trees.

use super::{dirfd_of, err, errno, r, Call, Outcome};
use crate::kernel::creds::may;
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{fstat_fd, normalize, FileKind, HostKind, Node, OpenFile, Synth};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use syscalls::Sysno;

/// open, openat, creat, openat2.
pub fn open<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let (dirfd, p, flags, mode) = match s {
        open => (
            libc::AT_FDCWD,
            tri!(k.read_path(tid, a[0])),
            a[1] as i32,
            a[2] as u32,
        ),
        creat => (
            libc::AT_FDCWD,
            tri!(k.read_path(tid, a[0])),
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            a[1] as u32,
        ),
        openat => (
            dirfd_of(a[0]),
            tri!(k.read_path(tid, a[1])),
            a[2] as i32,
            a[3] as u32,
        ),
        _ => {
            let how: [u64; 3] = match k.read_val(tid, a[2]) {
                Ok(h) => h,
                Err(e) => return err(e),
            };
            (
                dirfd_of(a[0]),
                tri!(k.read_path(tid, a[1])),
                how[0] as i32,
                how[1] as u32,
            )
        }
    };
    let opened = open_path(k, tid, dirfd, &p, flags, mode);
    if opened.as_ref().err() == Some(&libc::ENXIO)
        && c.notif.is_some()
        && waits_for_a_reader(k, tid, dirfd, &p, flags)
    {
        // A blocking open of a FIFO for writing waits for a reader on Linux. The sentry opens
        // host files non-blocking (it must never block itself), which gives ENXIO instead, so
        // the call parks and tries again. The kernel offers nothing to wait on for "a reader
        // opened" (poll needs an open end), so it looks again every FIFO_RETRY: one in-root
        // open per look while a writer waits. A signal ends the wait as on Linux (the event
        // loop's parked-call handling: EINTR or a restart). Only on the notification
        // platforms: a call parked at a ptrace stop is not ended by a signal, so there the open
        // still fails with ENXIO (docs/backends/sentry.md, "Not done / known limits").
        return Outcome::Park(Vec::new(), Some(std::time::Instant::now() + FIFO_RETRY));
    }
    r(opened.and_then(|f| k.install(tid, f, flags & libc::O_CLOEXEC != 0)))
}

/// How often a blocking open of a FIFO for writing looks for a reader again.
const FIFO_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Whether an open that failed with ENXIO is a blocking write-only open of a FIFO of the root
/// (no reader yet): what Linux would wait in rather than fail.
fn waits_for_a_reader<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    dirfd: i32,
    path: &str,
    flags: i32,
) -> bool {
    if flags & libc::O_NONBLOCK != 0 || flags & libc::O_ACCMODE != libc::O_WRONLY {
        return false;
    }
    let follow = flags & libc::O_NOFOLLOW == 0;
    match k.lookup(tid, dirfd, path, follow) {
        Ok(Node::Host(rel)) => k
            .vfs
            .stat(&rel, follow)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO),
        _ => false,
    }
}

/// Open `path` (already read from the tracee) with open(2) flags.
pub fn open_path<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    dirfd: i32,
    path: &str,
    flags: i32,
    mode: u32,
) -> Result<OpenFile, i32> {
    // With O_PATH, Linux ignores every flag but these (the host's openat2 would refuse them).
    let flags = if flags & libc::O_PATH != 0 {
        flags & (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
    } else {
        flags
    };
    let follow = flags & libc::O_NOFOLLOW == 0;
    let node = k.lookup(tid, dirfd, path, follow)?;
    let acc = flags & libc::O_ACCMODE;
    let writing = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
    match node {
        Node::Synth(s) => {
            let vpath = normalize(&if path.starts_with('/') {
                path.to_string()
            } else {
                format!("{}/{}", k.cwd_path(tid)?, path)
            });
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
                Synth::Pty(name) => {
                    // A new open of the host node (ptmx: a new pty). Never the sentry's
                    // controlling terminal; non-blocking on the host side, like every stream.
                    let pts = k.vfs.pts.as_ref().ok_or(libc::ENOENT)?;
                    let c = crate::vfs::cstr(&name)?;
                    // SAFETY: openat on our own devpts descriptor, a plain name.
                    let fd = unsafe {
                        libc::openat(
                            pts.as_raw_fd(),
                            c.as_ptr(),
                            (flags & libc::O_ACCMODE)
                                | libc::O_NOCTTY
                                | libc::O_NONBLOCK
                                | libc::O_CLOEXEC
                                | libc::O_NOFOLLOW,
                        )
                    };
                    if fd < 0 {
                        return Err(errno());
                    }
                    let path = if name == "ptmx" {
                        "/dev/ptmx".to_string()
                    } else {
                        format!("/dev/pts/{name}")
                    };
                    Ok(OpenFile::new(
                        FileKind::Host {
                            // SAFETY: just opened, owned here.
                            fd: unsafe { OwnedFd::from_raw_fd(fd) },
                            kind: HostKind::Stream,
                        },
                        &path,
                        flags,
                    ))
                }
                Synth::Link(_) => Err(libc::ELOOP),
                Synth::Fd(f) => {
                    // Re-open through /proc/self/fd: share the description (as a dup).
                    let fb = f.borrow();
                    let kind = match &fb.kind {
                        FileKind::Host { fd, kind } => {
                            // SAFETY: dup of our own fd.
                            let d =
                                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
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
                        FileKind::Epoll(_) | FileKind::Signal { .. } => return Err(libc::ENXIO),
                    };
                    Ok(OpenFile::new(kind, &fb.path, flags))
                }
            }
        }
        // "." of a removed directory: the directory itself, which nothing can be made as.
        Node::Removed(_) if flags & libc::O_CREAT != 0 => Err(if flags & libc::O_EXCL != 0 {
            libc::EEXIST
        } else {
            libc::EISDIR
        }),
        node => {
            // Where it was found: the path the lookup resolved in the root (relative to the
            // cwd or the directory descriptor), or where the host says a removed directory was.
            let vpath = match &node {
                Node::Host(rel) => normalize(&format!("/{rel}")),
                Node::Removed(fd) => k.vfs.virt_path_of(fd.as_raw_fd()).unwrap_or_default(),
                Node::Synth(_) => return Err(libc::EROFS),
            };
            let creds = k.creds(tid);
            let umask = k.proc_of(tid).borrow().umask;
            let base = if flags & libc::O_PATH != 0 {
                flags & !libc::O_CLOEXEC
            } else {
                (flags & !(libc::O_CLOEXEC | libc::O_NOCTTY)) | libc::O_NONBLOCK | libc::O_NOCTTY
            };
            let mut created = false;
            let fd = if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL == 0 {
                match node.open_host(&k.vfs, base & !libc::O_CREAT, 0) {
                    Ok(fd) => fd,
                    Err(libc::ENOENT) => {
                        created = true;
                        k.may_create(tid, dirfd, path, &creds)?;
                        node.open_host(&k.vfs, base | libc::O_EXCL, mode & !umask)?
                    }
                    Err(e) => return Err(e),
                }
            } else {
                created = flags & libc::O_CREAT != 0;
                if created {
                    k.may_create(tid, dirfd, path, &creds)?;
                }
                node.open_host(&k.vfs, base, mode & !umask)?
            };
            let st = fstat_fd(fd.as_raw_fd())?;
            let fmt = st.st_mode & libc::S_IFMT;
            if fmt == libc::S_IFCHR || fmt == libc::S_IFBLK {
                // Device nodes in the rootfs would reach host devices: never.
                return Err(libc::EACCES);
            }
            if fmt == libc::S_IFDIR && flags & libc::O_CREAT != 0 {
                // O_CREAT of a directory that is there: Linux refuses it even read-only.
                return Err(libc::EISDIR);
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
