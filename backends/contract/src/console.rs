//! The console socket protocol (runc's `--console-socket`): the runtime makes a pty, keeps the
//! slave for the workload, and sends the master to the engine over a unix socket with SCM_RIGHTS.

use anyhow::{Context, Result};
use nix::pty::{openpty, OpenptyResult};
use nix::sys::socket::{
    connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Make a pty and send its master to `socket_path`. Returns the slave for the workload's stdio.
pub fn send_pty_master(socket_path: &Path) -> Result<OwnedFd> {
    let OpenptyResult { master, slave } = openpty(None, None).context("openpty")?;
    send_fd(socket_path, &master)
        .with_context(|| format!("console socket {}", socket_path.display()))?;
    Ok(slave)
}

/// Send a pty master made elsewhere (e.g. inside the container's devpts) to `socket_path`.
pub fn send_master(socket_path: &Path, master: &OwnedFd) -> Result<()> {
    send_fd(socket_path, master)
        .with_context(|| format!("console socket {}", socket_path.display()))
}

fn send_fd(socket_path: &Path, fd: &OwnedFd) -> Result<()> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket")?;
    let addr = UnixAddr::new(socket_path).context("socket path")?;
    connect(sock.as_raw_fd(), &addr).context("connect")?;
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    // The payload is the pty's name, as runc sends it; engines only use the fd.
    let name = b"/dev/ptmx";
    let iov = [IoSlice::new(name)];
    sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .context("sendmsg")?;
    Ok(())
}

/// Make `slave` the controlling terminal and stdio of the calling process (in the workload,
/// after `setsid`).
pub fn adopt_as_stdio(slave: &OwnedFd) -> Result<()> {
    let fd = slave.as_raw_fd();
    // SAFETY: plain ioctl/dup2 on fds we own.
    unsafe {
        if libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
            return Err(std::io::Error::last_os_error()).context("TIOCSCTTY");
        }
        for target in 0..3 {
            if libc::dup2(fd, target) < 0 {
                return Err(std::io::Error::last_os_error()).context("dup2 pty");
            }
        }
    }
    Ok(())
}
