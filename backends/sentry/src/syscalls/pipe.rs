//! pipe and pipe2: a host pipe the sentry owns, non-blocking on the host side; the workload's
//! O_NONBLOCK is kept in the open file and honoured by the sentry. On the notification platforms
//! their reads and writes run in the task instead (passthrough.rs).

use super::{err, errno, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{fstat_fd, FileKind, HostKind, OpenFile, Pass};
use std::os::fd::{FromRawFd, OwnedFd};

pub fn pipe<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    make_pipe(k, c, 0)
}

pub fn pipe2<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let flags = c.a[1] as i32;
    make_pipe(k, c, flags)
}

fn make_pipe<P: Platform>(k: &mut Kernel<P>, c: &Call, flags: i32) -> Outcome {
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
    let end = |fd, acc| {
        let mut f = OpenFile::new(
            FileKind::Host {
                fd,
                kind: HostKind::Stream,
            },
            &name,
            acc | vflags,
        );
        f.pass = Pass::Pipe;
        f
    };
    let r = k.install(c.tid, end(rd, libc::O_RDONLY), cloexec);
    let r = match r {
        Ok(r) => r,
        Err(e) => return err(e),
    };
    let w = match k.install(c.tid, end(wr, libc::O_WRONLY), cloexec) {
        Ok(w) => w,
        Err(e) => {
            k.fds_of(c.tid).borrow_mut().close(r as i32);
            return err(e);
        }
    };
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&(r as i32).to_ne_bytes());
    b[4..].copy_from_slice(&(w as i32).to_ne_bytes());
    match k.write_bytes(c.tid, c.a[0], &b) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    }
}
