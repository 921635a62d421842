//! Terminals: raw mode for the agent port, a pty made inside the workload's root, its master
//! passed to the agent over a socket, window sizes.

use crate::sys::{cstr, errno, Res};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) fn make_raw(fd: RawFd) -> Res<()> {
    // SAFETY: termios calls on an fd we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(format!("tcgetattr agent port: {}", errno()));
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(format!("tcsetattr agent port: {}", errno()));
        }
    }
    Ok(())
}

pub(crate) fn openpty(ptmx: &str, size: Option<(u16, u16)>) -> Res<(OwnedFd, OwnedFd)> {
    let path = cstr(ptmx)?;
    // SAFETY: open and the pty ioctls on fds we own.
    unsafe {
        let m = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if m < 0 {
            return Err(format!("open {ptmx}: {}", errno()));
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(format!("unlockpt: {}", errno()));
        }
        let mut name = [0 as libc::c_char; 64];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(format!("ptsname: {}", errno()));
        }
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(format!(
                "open {:?}: {}",
                CStr::from_ptr(name.as_ptr()),
                errno()
            ));
        }
        if let Some((r, c)) = size {
            set_winsize(m, r, c);
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}

/// Send `fd` over the unix socket `sock` (SCM_RIGHTS).
pub(crate) fn send_fd(sock: RawFd, fd: RawFd) -> Res<()> {
    // SAFETY: a correctly sized control buffer for one fd.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        if libc::sendmsg(sock, &msg, 0) < 0 {
            return Err(format!("sending the pty master: {}", errno()));
        }
    }
    Ok(())
}

/// Receive one fd sent by [`send_fd`]; None when the peer closed without sending.
pub(crate) fn recv_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    // SAFETY: a correctly sized control buffer for one fd.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        if libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) <= 0 {
            return None;
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        Some(OwnedFd::from_raw_fd(std::ptr::read_unaligned(
            libc::CMSG_DATA(c).cast::<RawFd>(),
        )))
    }
}

pub(crate) fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid struct.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}
