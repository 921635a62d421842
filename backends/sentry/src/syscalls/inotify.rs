//! inotify_init, inotify_init1, inotify_add_watch, inotify_rm_watch: a host inotify instance
//! the sentry owns (non-blocking on the host side), read, polled and watched by epoll like any
//! other stream. A watch's path is resolved in the sandbox's root (as the workload would see
//! it) to a descriptor, checked for read permission against the caller's virtual creds, and
//! the host watch is put on that descriptor, never on a path the host resolves.

use super::{err, errno, r, Call, Outcome};
use crate::kernel::creds::may;
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{fstat_fd, FileKind, HostKind, Node, OpenFile};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use syscalls::Sysno;

const PATH: &str = "anon_inode:inotify";

pub fn inotify_init<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let flags = if c.s == Sysno::inotify_init1 {
        c.a[0] as i32
    } else {
        0
    };
    if flags & !(libc::IN_NONBLOCK | libc::IN_CLOEXEC) != 0 {
        return err(libc::EINVAL);
    }
    // SAFETY: an inotify instance owned by the sentry.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return err(errno());
    }
    let f = OpenFile::new(
        FileKind::Host {
            // SAFETY: just made, owned here.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            kind: HostKind::Stream,
        },
        PATH,
        libc::O_RDONLY | (flags & libc::O_NONBLOCK),
    );
    r(k.install(c.tid, f, flags & libc::IN_CLOEXEC != 0))
}

/// The host fd of the inotify instance the sandbox names (any other file: EINVAL).
fn instance<P: Platform>(k: &Kernel<P>, c: &Call) -> Result<(crate::kernel::FileRef, i32), i32> {
    let f = k.file(c.tid, c.a[0])?;
    let h = {
        let fb = f.borrow();
        match fb.host_fd() {
            Some(h) if fb.path == PATH => h,
            _ => return Err(libc::EINVAL),
        }
    };
    Ok((f, h))
}

pub fn inotify_add_watch<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, ifd) = tri!(instance(k, c));
    let path = tri!(k.read_path(c.tid, c.a[1]));
    let mask = c.a[2] as u32;
    let follow = mask & libc::IN_DONT_FOLLOW == 0;
    let target = match tri!(k.lookup(c.tid, libc::AT_FDCWD, &path, follow)) {
        // /proc, /sys and /dev (but /dev/shm) change by no write a watch would see.
        Node::Synth(_) => return err(libc::EACCES),
        node => {
            let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
            tri!(node.open_host(&k.vfs, libc::O_PATH | nofollow, 0))
        }
    };
    let st = tri!(fstat_fd(target.as_raw_fd()));
    if !may(&st, &k.creds(c.tid), 4) {
        return err(libc::EACCES);
    }
    r(watch_fd(
        ifd,
        target.as_raw_fd(),
        mask & !libc::IN_DONT_FOLLOW,
    ))
}

/// inotify_add_watch has no descriptor-relative form: the sentry (single-threaded) steps into
/// its own host /proc/self/fd for the call, names the descriptor there (the magic link leads
/// to exactly the file it holds), and steps back.
fn watch_fd(ifd: i32, fd: i32, mask: u32) -> Result<i64, i32> {
    let dir = crate::hostproc::open("self/fd", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    // SAFETY: open the current directory, to come back to it.
    let back = unsafe {
        libc::open(
            c".".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if back < 0 {
        return Err(errno());
    }
    // SAFETY: just opened, owned here.
    let back = unsafe { OwnedFd::from_raw_fd(back) };
    // SAFETY: fchdir to our own descriptor.
    if unsafe { libc::fchdir(dir.as_raw_fd()) } != 0 {
        return Err(errno());
    }
    let name = std::ffi::CString::new(fd.to_string()).unwrap();
    // SAFETY: a watch on our own descriptor, by its name in our /proc/<pid>/fd.
    let wd = unsafe { libc::inotify_add_watch(ifd, name.as_ptr(), mask) };
    let e = errno();
    // SAFETY: back to where the sentry was.
    unsafe { libc::fchdir(back.as_raw_fd()) };
    if wd < 0 {
        return Err(e);
    }
    Ok(wd as i64)
}

pub fn inotify_rm_watch<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, ifd) = tri!(instance(k, c));
    // SAFETY: our own inotify instance.
    if unsafe { libc::inotify_rm_watch(ifd, c.a[1] as i32) } != 0 {
        return err(errno());
    }
    Outcome::Ret(0)
}
