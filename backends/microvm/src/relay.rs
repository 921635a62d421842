//! The relay between a frame channel to the guest (the agent port, or an exec client's socket to
//! the host process) and this process's stdio and signals, shared by the host process
//! ([`crate::host`]) and the exec client ([`crate::exec`]): guest stdout/stderr frames to fds 1
//! and 2, stdin to the guest, the signals it receives forwarded, until the Exit frame. The host
//! process also passes exec clients' frames through its [`Hub`].

use crate::hub::Hub;
use anyhow::{Context, Result};
use hako_agent::proto::{ExitStatus, Frame, FrameReader};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Exit status of the host process when the VM ended without reporting the workload's status.
pub const VM_FAILED: i32 = 255;

/// The host end of the agent port as a frame channel.
pub(crate) struct Port {
    pub(crate) sock: UnixStream,
    pub(crate) reader: FrameReader,
    pub(crate) buf: Vec<u8>,
}

impl Port {
    pub(crate) fn new(sock: UnixStream) -> Port {
        Port {
            sock,
            reader: FrameReader::new(),
            buf: vec![0u8; 64 * 1024],
        }
    }

    pub(crate) fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        self.sock.write_all(&f.encode())
    }

    /// Read what is there; false at EOF.
    pub(crate) fn fill(&mut self) -> Result<bool> {
        match self.sock.read(&mut self.buf) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.reader.push(&self.buf[..n]);
                Ok(true)
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted
                    || e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(e).context("reading the agent port"),
        }
    }
}

pub(crate) fn block_signals(sigs: &[i32]) -> Result<OwnedFd> {
    // SAFETY: sigset manipulation and signalfd on this single-threaded process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("signalfd");
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// `sigqueue` value with which `kill --all` marks a signal meant for every guest process.
pub const SIGNAL_ALL_MARK: usize = 0x6861_6b6f;

/// The signals pending on a signalfd, each with whether `kill --all` sent it.
pub(crate) fn read_signals(fd: &OwnedFd) -> Vec<(i32, bool)> {
    let mut out = vec![];
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    loop {
        let sz = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: read into a properly sized struct.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                sz,
            )
        };
        if n != sz as isize {
            return out;
        }
        let all = info.ssi_code == libc::SI_QUEUE && info.ssi_ptr as usize == SIGNAL_ALL_MARK;
        out.push((info.ssi_signo as i32, all));
    }
}

pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> Result<()> {
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: valid pollfd array.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
        return Err(std::io::Error::last_os_error()).context("poll");
    }
    Ok(())
}

pub(crate) fn pfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// The VM's status if it has ended (reaped), without blocking.
pub(crate) fn vm_exited(pid: libc::pid_t) -> Option<i32> {
    let mut st = 0;
    // SAFETY: waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    (r == pid).then_some(st)
}

/// The exit code that ends this process the way the guest process ended; for a signal, it
/// first tries to die by the same signal.
pub(crate) fn exit_like(status: ExitStatus) -> i32 {
    match status {
        ExitStatus::Exited(c) => c & 0xff,
        ExitStatus::Signaled(s) => hako_contract::signal::die_like(s),
    }
}

pub(crate) fn winsize(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ into a valid struct.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

pub(crate) fn make_raw(fd: RawFd) {
    // SAFETY: termios on our fd.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
}

pub(crate) fn write_all_fd(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: write from a live buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        data = &data[n as usize..];
    }
    true
}

/// Relay until the Exit frame (Some) or the agent port closes without one (None). The second
/// value is the VM's wait status when the relay already reaped it.
///
/// The host process relays for the workload (`vm_pid` its VM, `hub` the exec clients it
/// multiplexes onto the port); an exec client relays for its exec'd process with neither.
pub(crate) fn relay(
    port: &mut Port,
    sigfd: &OwnedFd,
    vm_pid: Option<libc::pid_t>,
    mut hub: Option<&mut Hub>,
) -> Result<(Option<ExitStatus>, Option<i32>)> {
    let mut stdin_open = true;
    let (mut out_ok, mut err_ok) = (true, true);
    let mut inbuf = vec![0u8; 16 * 1024];
    let mut open = true;
    loop {
        // Whole frames first, before waiting for more bytes: some may have been read together
        // with the frame that ended the previous phase (an exec client's Ready, say).
        while let Some(f) = port.reader.next_frame().map_err(anyhow::Error::msg)? {
            match f {
                Frame::Stdout(d) => out_ok = out_ok && write_all_fd(1, &d),
                Frame::Stderr(d) => err_ok = err_ok && write_all_fd(2, &d),
                Frame::Error(m) => {
                    let _ = writeln!(std::io::stderr(), "hako: microvm: {m}");
                }
                Frame::Exit(s) => return Ok((Some(s), None)),
                Frame::Tagged(id, f) => {
                    if let Some(h) = hub.as_deref_mut() {
                        h.from_guest(id, *f, &mut port.sock)?;
                    }
                }
                _ => {}
            }
        }
        if !open {
            return Ok((None, None));
        }
        let mut fds = vec![
            pfd(port.sock.as_raw_fd(), libc::POLLIN),
            pfd(sigfd.as_raw_fd(), libc::POLLIN),
            pfd(if stdin_open { 0 } else { -1 }, libc::POLLIN),
        ];
        let hub_fds = hub.as_ref().map(|h| h.poll_fds()).unwrap_or_default();
        fds.extend(hub_fds.iter().map(|&fd| pfd(fd, libc::POLLIN)));
        poll(&mut fds, None)?;
        if fds[0].revents != 0 {
            open = port.fill()?;
        }
        if let Some(h) = hub.as_deref_mut() {
            let ready: Vec<RawFd> = fds[3..]
                .iter()
                .filter(|f| f.revents != 0)
                .map(|f| f.fd)
                .collect();
            if !ready.is_empty() {
                h.service(&ready, &mut port.sock)?;
            }
        }
        if fds[1].revents != 0 {
            for (s, all) in read_signals(sigfd) {
                match s {
                    libc::SIGCHLD => {
                        // The VM ended; the port reaches EOF right after, which ends the loop.
                        if let Some(st) = vm_pid.and_then(vm_exited) {
                            drain_after_exit(port)?;
                            return Ok((port_exit(port), Some(st)));
                        }
                    }
                    libc::SIGWINCH => {
                        if let Some((r, c)) = winsize(0) {
                            let _ = port.send(&Frame::Winsize(r, c));
                        }
                    }
                    s if all => {
                        let _ = port.send(&Frame::SignalAll(s));
                    }
                    s => {
                        let _ = port.send(&Frame::Signal(s));
                    }
                }
            }
        }
        if stdin_open && fds[2].revents != 0 {
            // SAFETY: read into our buffer.
            let n = unsafe { libc::read(0, inbuf.as_mut_ptr().cast(), inbuf.len()) };
            if n > 0 {
                if port
                    .send(&Frame::Stdin(inbuf[..n as usize].to_vec()))
                    .is_err()
                {
                    stdin_open = false;
                }
            } else if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
            {
                stdin_open = false;
                let _ = port.send(&Frame::StdinEof);
            }
        }
    }
}

/// After the VM ended, read whatever it left in the socket.
pub(crate) fn drain_after_exit(port: &mut Port) -> Result<()> {
    port.sock.set_nonblocking(true).ok();
    loop {
        match port.sock.read(&mut port.buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                let chunk = port.buf[..n].to_vec();
                port.reader.push(&chunk);
            }
            Err(_) => return Ok(()),
        }
    }
}

/// Frames left after the VM ended: deliver output, return the exit status if it is there.
pub(crate) fn port_exit(port: &mut Port) -> Option<ExitStatus> {
    while let Ok(Some(f)) = port.reader.next_frame() {
        match f {
            Frame::Stdout(d) => {
                write_all_fd(1, &d);
            }
            Frame::Stderr(d) => {
                write_all_fd(2, &d);
            }
            Frame::Error(m) => {
                let _ = writeln!(std::io::stderr(), "hako: microvm: {m}");
            }
            Frame::Exit(s) => return Some(s),
            _ => {}
        }
    }
    None
}
