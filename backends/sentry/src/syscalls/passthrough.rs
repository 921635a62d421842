//! Pipe reads and writes that run in the task (issue 17). On the notification platforms the
//! first `read`/`readv` of a pipe read end, or `write`/`writev` of a write end, puts a
//! descriptor of that pipe end into the task's own table at the very number the task used
//! (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SETFD`, close-on-exec) and answers
//! `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: the host kernel runs the call, which blocks, wakes, is
//! interrupted, restarts and raises SIGPIPE as Linux's does, with no copy through the sentry.
//! Later calls on that number only answer CONTINUE. The ptrace platform keeps the sentry's copy.
//! Only pipes the sandbox made qualify (`Pass::Pipe`), never inherited stdio.
//!
//! What keeps it sound:
//! - The descriptor is the pipe end's own open file description (`Pass::Made`, reopened
//!   through the sentry's /proc/self/fd; pipes have no offset), carrying the workload's
//!   O_NONBLOCK, kept in step on `fcntl(F_SETFL)` and `FIONBIO` ([`sync_nonblock`]). Dups share
//!   the open file and so this description, as Linux's dups share their flags.
//! - Which numbers hold one is recorded with the sentry's fd table (`FdEntry::installed`), so
//!   threads share the record and fork copies it as the kernel does the real table; exec drops
//!   both (close-on-exec). A new entry at a number is never installed, so a number whose object
//!   changed is never run natively on the old one.
//! - No stale host reference outlives the number: `close` and `close_range` of an installed
//!   number are answered CONTINUE after the sentry's own table is updated (the kernel closes the
//!   real one too); `dup2`/`dup3` onto one replace the real one with ADDFD SETFD
//!   ([`replace`]). Otherwise a writer would never see EPIPE, nor a reader EOF.
//! - The workload gains nothing: no syscall it may run natively takes a descriptor, and the
//!   pipe is one it already reads.

use super::{Call, Outcome};
use crate::kernel::{FileRef, Kernel};
use crate::platform::Platform;
use crate::vfs::{OpenFile, Pass};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Calls that may end as CONTINUE on a notification because of this module: the reads and
/// writes, and the closes that must close the real descriptor too.
pub const CONTINUED: [i64; 6] = [
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_close_range,
];

/// For a `read`/`readv` (`write`/`writev`) of vfd `c.a[0]` (file `f`) that came as a
/// notification: `Some(Native)` when the call is to run in the task (installing the pipe end
/// first if needed), None for the sentry's own path (not a pipe end of the sandbox open for
/// that, a ptrace stop, or the install failed).
pub fn read<P: Platform>(k: &mut Kernel<P>, c: &Call, f: &FileRef) -> Option<Outcome> {
    pass_call(k, c, f, libc::O_RDONLY)
}

/// See [`read`].
pub fn write<P: Platform>(k: &mut Kernel<P>, c: &Call, f: &FileRef) -> Option<Outcome> {
    pass_call(k, c, f, libc::O_WRONLY)
}

fn pass_call<P: Platform>(k: &mut Kernel<P>, c: &Call, f: &FileRef, acc: i32) -> Option<Outcome> {
    let id = c.notif?;
    if f.borrow().flags & libc::O_ACCMODE != acc {
        return None;
    }
    let vfd = c.a[0] as i32;
    let fds = k.fds_of(c.tid);
    if fds.borrow().installed(vfd) {
        return Some(Outcome::Native);
    }
    let pass = pass_fd(&mut f.borrow_mut()).ok()?;
    // The number may be past the task's real RLIMIT_NOFILE (the sentry's is virtual): then
    // the sentry reads for it, as before.
    k.plat.add_fd(id, pass, vfd).ok()?;
    fds.borrow_mut().map.get_mut(&vfd)?.installed = true;
    Some(Outcome::Native)
}

/// The pass-through descriptor of pipe end `f`, made on first use; an error if `f` is no pipe
/// end of the sandbox, or a write end whose readers are all gone (ENXIO).
fn pass_fd(f: &mut OpenFile) -> Result<RawFd, i32> {
    match &f.pass {
        Pass::No => return Err(libc::EINVAL),
        Pass::Made(p) => return Ok(p.as_raw_fd()),
        Pass::Pipe => {}
    }
    let h = f.host_fd().ok_or(libc::EINVAL)?;
    // A new open file description of the very pipe, through the magic link of the sentry's own
    // descriptor (not a path anyone else resolves). O_NONBLOCK at open: a FIFO open never waits
    // for the other side then; the workload's flag is set just after.
    let dir = crate::hostproc::open("self/fd", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let name = std::ffi::CString::new(h.to_string()).expect("digits");
    // SAFETY: openat on our own directory descriptor, a fresh fd on success.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            (f.flags & libc::O_ACCMODE) | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(super::errno());
    }
    // SAFETY: just opened, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_nonblock(fd.as_raw_fd(), f.flags & libc::O_NONBLOCK != 0)?;
    let raw = fd.as_raw_fd();
    f.pass = Pass::Made(fd);
    Ok(raw)
}

fn set_nonblock(fd: RawFd, on: bool) -> Result<(), i32> {
    let fl = if on { libc::O_NONBLOCK } else { 0 };
    // SAFETY: fcntl on our own descriptor. A pipe has no other status flag to keep but O_NONBLOCK
    // (the access mode is fixed; O_APPEND means nothing on a pipe; O_DIRECT is never set).
    if unsafe { libc::fcntl(fd, libc::F_SETFL, fl) } < 0 {
        return Err(super::errno());
    }
    Ok(())
}

/// After the workload changed `f.flags` (fcntl F_SETFL, ioctl FIONBIO): the pass-through
/// description, which the tasks' real tables share, takes the new O_NONBLOCK.
pub fn sync_nonblock(f: &OpenFile) {
    if let Pass::Made(p) = &f.pass {
        // Cannot fail on a descriptor the sentry holds.
        let _ = set_nonblock(p.as_raw_fd(), f.flags & libc::O_NONBLOCK != 0);
    }
}

/// `dup2`/`dup3` of file `f` onto vfd `target` of `c.tid`, before the sentry's table changes:
/// if `target` is installed, the real descriptor there is replaced (ADDFD SETFD) with `f`'s
/// pass-through descriptor when `f` is a pipe end of the sandbox (`Ok(true)`: the new entry is
/// installed),
/// else with an inert one (`Ok(false)`), so the old pipe is no longer held by the task.
pub fn replace<P: Platform>(
    k: &mut Kernel<P>,
    c: &Call,
    f: &FileRef,
    target: i32,
) -> Result<bool, i32> {
    let installed = k.fds_of(c.tid).borrow().installed(target);
    if !installed {
        return Ok(false);
    }
    // Only a notification platform installs, and there every dup2 is a notification.
    let id = c.notif.ok_or(libc::EIO)?;
    if let Ok(pass) = pass_fd(&mut f.borrow_mut()) {
        k.plat.add_fd(id, pass, target)?;
        return Ok(true);
    }
    k.plat.add_fd(id, inert()?, target)?;
    Ok(false)
}

/// A descriptor that holds nothing: the read end of a pipe whose write end is closed. It fills a
/// real number whose pipe must go when the sentry's entry there becomes a file it does not pass.
fn inert() -> Result<RawFd, i32> {
    static INERT: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = INERT.get() {
        return Ok(fd.as_raw_fd());
    }
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(super::errno());
    }
    // SAFETY: fresh fds we own; the write end is closed at once.
    let (rd, _wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(INERT.get_or_init(|| rd).as_raw_fd())
}

/// Whether a trapped read/readv/write/writev of `fd` by `tid` runs in the task (its
/// -ERESTARTSYS is then the host's, for a signal that ended a real wait).
pub fn runs_in_task<P: Platform>(k: &Kernel<P>, tid: i32, nr: i64, fd: u64) -> bool {
    [
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_write,
        libc::SYS_writev,
    ]
    .contains(&nr)
        && k.fds_of(tid).borrow().installed(fd as i32)
}
