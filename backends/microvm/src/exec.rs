//! `hako exec` into a running microVM.
//!
//! The sandbox's host process owns the only channel into the guest (the agent port), so an exec
//! goes through it:
//!
//! ```text
//! hako exec ──fork──► exec client (the pid `exec` reports; exits like the exec'd process)
//!                       │ <state>/microvm-exec.sock: bare frames
//!                       ▼   Exec(json), Stdin, StdinEof, Signal, Winsize ─►
//!                     host process (Hub): gives the exec an id, and on the agent port wraps
//!                       │ its frames in Tagged(id, ..) ◄─ Ready, Stdout, Stderr, Error, Exit
//!                       ▼
//!                     guest agent: forks the process into the workload's mount namespace
//! ```
//!
//! The client is to the exec'd process what the host process is to the workload: its stdio is
//! the process's stdio (or the pty it sent over `--console-socket`), the signals it gets are
//! forwarded, and it ends with the same exit code or by the same signal. If the client dies
//! (SIGKILL), the host process kills the exec'd process; when the workload ends, the agent kills
//! every exec'd process and reports each as killed.

use crate::hub::short_path;
use crate::relay::{block_signals, exit_like, make_raw, relay, winsize};
use crate::relay::{Port, VM_FAILED};
use anyhow::{bail, Context, Result};
use hako_agent::proto::{ExitStatus, Frame, FrameReader};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `hako exec` waits for the guest to start the process.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `hako exec`'s side: ask the host process at `sock_path` to run `process` (a JSON
/// `ProcessSpec`), wait until the guest has started it (or say why it could not), then fork the
/// client that relays its stdio and exits like it. Returns the client's pid.
pub fn start(sock_path: &Path, process_json: String, tty: Option<OwnedFd>) -> Result<i32> {
    let (p, _dir) = short_path(sock_path)?;
    let mut sock = UnixStream::connect(&p).context("connecting to the sandbox's host process")?;
    sock.write_all(&Frame::Exec(process_json).encode())
        .context("sending the exec request")?;
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match reader.next_frame().map_err(anyhow::Error::msg)? {
            Some(Frame::Ready) => break,
            Some(Frame::Error(m)) => bail!("{m}"),
            Some(_) => continue,
            None => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "the guest did not start the process within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        sock.set_read_timeout(Some(left))?;
        match sock.read(&mut buf) {
            Ok(0) => bail!("the sandbox ended before the process started"),
            Ok(n) => reader.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e).context("reading from the sandbox's host process"),
        }
    }
    sock.set_read_timeout(None)?;
    // SAFETY: the caller (`hako exec`) is single-threaded; the child never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        let code = run_exec_client(sock, reader, tty);
        // SAFETY: leaving the process.
        unsafe { libc::_exit(code) }
    }
    Ok(pid)
}

/// The exec client, in the child `hako exec` forked once the guest
/// started the process: relay until its Exit frame, then end like it. Returns the exit code.
pub fn run_exec_client(sock: UnixStream, reader: FrameReader, tty: Option<OwnedFd>) -> i32 {
    let mut keep = vec![sock.as_raw_fd()];
    keep.extend(tty.as_ref().map(|t| t.as_raw_fd()));
    hako_linux::process::close_fds_except(&keep);
    // SAFETY: ignoring SIGPIPE: a closed stdout must not kill the relay.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let run = || -> Result<Option<ExitStatus>> {
        if let Some(tty) = &tty {
            // SAFETY: new session so the pty becomes our controlling terminal.
            unsafe { libc::setsid() };
            hako_contract::console::adopt_as_stdio(tty)?;
            make_raw(0);
        }
        let sigfd = block_signals(&hako_contract::signal::forwarded())?;
        let mut port = Port {
            sock,
            reader,
            buf: vec![0u8; 64 * 1024],
        };
        if let Some(ws) = winsize(0) {
            let _ = port.send(&Frame::Winsize(ws.0, ws.1));
        }
        Ok(relay(&mut port, &sigfd, None, None)?.0)
    };
    match run() {
        Ok(Some(s)) => exit_like(s),
        Ok(None) => {
            // The VM went away (killed, deleted) and took the process with it.
            let _ = writeln!(
                std::io::stderr(),
                "hako: microvm: the sandbox ended before the exec'd process reported its exit status"
            );
            exit_like(ExitStatus::Signaled(libc::SIGKILL))
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "hako: microvm: exec: {e:#}");
            VM_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames that came in the same read as the exec's Ready are relayed at once, not when more
    /// bytes happen to arrive (they would sit in the reader until the exec'd process ended).
    #[test]
    fn client_relays_frames_buffered_with_ready() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut reader = FrameReader::new();
        reader.push(&Frame::Stdout(b"early\n".to_vec()).encode());
        reader.push(&Frame::Exit(hako_agent::proto::ExitStatus::Exited(4)).encode());
        let mut out = [0; 2];
        // SAFETY: pipe(2) into a valid array.
        assert_eq!(unsafe { libc::pipe(out.as_mut_ptr()) }, 0);
        // SAFETY: the child only runs the exec client (which closes what it does not need).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: make the pipe the child's stdout.
            unsafe { libc::dup2(out[1], 1) };
            let code = run_exec_client(theirs, reader, None);
            // SAFETY: leaving the child.
            unsafe { libc::_exit(code) }
        }
        // SAFETY: the parent's copy of the write end.
        unsafe { libc::close(out[1]) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut st = 0;
        // SAFETY: waitpid on our child.
        while unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } == 0 {
            if Instant::now() > deadline {
                // SAFETY: end the stuck child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut st, 0);
                }
                panic!("the exec client sat on frames it had already read");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut text = String::new();
        // SAFETY: the read end is ours.
        let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(out[0]) };
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "early\n");
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 4, "{st:#x}");
        drop(ours);
    }
}
