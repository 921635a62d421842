//! A process's stdio relayed as frames on the agent port, and its stdin fed from them.

use crate::sys::{errno, Res};
use hako_agent::proto::{self, ExitStatus, Frame};
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

/// One process whose stdio the agent relays: the workload (`tag` None, frames untagged) or an
/// exec'd process (`tag` Some(id), frames inside [`Frame::Tagged`]).
pub(crate) struct Proc {
    pub(crate) tag: Option<u32>,
    pub(crate) pid: libc::pid_t,
    pub(crate) stdin_w: Option<OwnedFd>,
    pub(crate) stdout_r: Option<OwnedFd>,
    pub(crate) stderr_r: Option<OwnedFd>,
    /// The pty master when `terminal`.
    pub(crate) pty: Option<OwnedFd>,
    pub(crate) stdin_buf: Vec<u8>,
    pub(crate) stdin_eof: bool,
    pub(crate) status: Option<ExitStatus>,
}

impl Proc {
    /// Write what is buffered for its stdin; close it (or type ^D on its terminal) at EOF.
    pub(crate) fn feed_stdin(&mut self) {
        let target = self
            .stdin_w
            .as_ref()
            .or(self.pty.as_ref())
            .map(|f| f.as_raw_fd());
        let Some(fd) = target else { return };
        if !self.stdin_buf.is_empty() {
            // SAFETY: write from our buffer.
            let n =
                unsafe { libc::write(fd, self.stdin_buf.as_ptr().cast(), self.stdin_buf.len()) };
            if n > 0 {
                self.stdin_buf.drain(..n as usize);
            } else if n < 0 && errno().raw_os_error() == Some(libc::EPIPE) {
                self.stdin_buf.clear();
            }
        }
        if self.stdin_eof && self.stdin_buf.is_empty() {
            if self.stdin_w.take().is_none() {
                if let Some(p) = &self.pty {
                    // ^D on the terminal, as a person typing EOF would.
                    // SAFETY: write one byte.
                    unsafe { libc::write(p.as_raw_fd(), b"\x04".as_ptr().cast(), 1) };
                }
            }
            self.stdin_eof = false;
        }
    }

    /// Relay what its output fds hold now (all of it when they are blocking), then close them.
    pub(crate) fn drain(&mut self, port: &mut fs::File, buf: &mut [u8]) -> Res<()> {
        for (i, out) in [(0, true), (1, false), (2, true)] {
            loop {
                let src = match i {
                    0 => &mut self.stdout_r,
                    1 => &mut self.stderr_r,
                    _ => &mut self.pty,
                };
                if src.is_none() || !relay(src, port, buf, self.tag, out)? {
                    break;
                }
            }
            match i {
                0 => self.stdout_r = None,
                1 => self.stderr_r = None,
                _ => self.pty = None,
            }
        }
        Ok(())
    }
}

/// Send a frame about the workload (`tag` None) or exec `tag`.
pub(crate) fn send(port: &mut fs::File, tag: Option<u32>, f: Frame) -> Res<()> {
    let f = match tag {
        Some(id) => Frame::Tagged(id, Box::new(f)),
        None => f,
    };
    port.write_all(&f.encode())
        .map_err(|e| format!("write agent port: {e}"))
}

/// Read what is there from `src` and send it as frames; close `src` at EOF. True when it read
/// something (more may follow).
pub(crate) fn relay(
    src: &mut Option<OwnedFd>,
    port: &mut fs::File,
    buf: &mut [u8],
    tag: Option<u32>,
    stdout: bool,
) -> Res<bool> {
    let Some(fd) = src.as_ref() else {
        return Ok(false);
    };
    // Leave room for the tag in the frame's payload limit.
    let chunk = buf.len().min(proto::MAX_PAYLOAD / 2);
    // SAFETY: read into our buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), chunk) };
    if n > 0 {
        let d = buf[..n as usize].to_vec();
        send(
            port,
            tag,
            if stdout {
                Frame::Stdout(d)
            } else {
                Frame::Stderr(d)
            },
        )?;
        return Ok(true);
    }
    if n == 0 || errno().raw_os_error() != Some(libc::EAGAIN) {
        // EOF, or EIO on a pty master whose slave side is all closed.
        *src = None;
    }
    Ok(false)
}
