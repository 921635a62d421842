//! Foreground waiting for `run` and `exec`: forward the signals hako receives to the workload,
//! reap what reparents to us, and turn the wait status into an exit code (128+N for signal N).
//! Also the terminal relay used when `run`/`exec` allocate a pty with no `--console-socket`.

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Become a child subreaper, so a workload that double-forks is still ours to wait for.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// The signals hako forwards (`hako_contract::signal::forwarded`, the one list), and SIGCHLD,
/// which wakes the wait to reap.
fn forwarded() -> SigSet {
    // SAFETY: sigemptyset/sigaddset on a local set; the numbers are valid signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in hako_contract::signal::forwarded() {
            libc::sigaddset(&mut set, s);
        }
        libc::sigaddset(&mut set, libc::SIGCHLD);
        SigSet::from_sigset_t_unchecked(set)
    }
}

/// Block the forwarded signals in this thread (and in threads it starts afterwards), so they
/// queue for [`wait_forwarding`] instead of killing hako.
pub fn block_signals() -> Result<()> {
    forwarded().thread_block().context("blocking signals")
}

/// Wait for `pid` (a child of ours) while forwarding every catchable signal to it.
pub fn wait_forwarding(pid: i32) -> Result<i32> {
    let set = forwarded();
    set.thread_block().context("blocking signals")?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let target = Pid::from_raw(pid);
    loop {
        // Reap everything that is ready; our workload's status ends the wait.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(ws) if ws.pid() == Some(target) => {
                    if let Some(c) = exit_code(ws) {
                        let _ = set.thread_unblock();
                        return Ok(c);
                    }
                }
                Ok(_) => {}
                Err(Errno::ECHILD) => {
                    let _ = set.thread_unblock();
                    bail!("process {pid} is not a child of hako: its exit status is unknown");
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("waitpid"),
            }
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let sig = info.ssi_signo as i32;
                if sig != libc::SIGCHLD {
                    // SAFETY: kill with a valid signal number.
                    unsafe { libc::kill(pid, sig) };
                }
            }
            Ok(None) => {}
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("reading signalfd"),
        }
    }
}

/// A unix socket hako listens on itself, standing in for an engine's console socket when
/// `run`/`exec` are asked for a terminal in the foreground.
pub struct ConsoleListener {
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleListener {
    pub fn new(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join(format!("console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).context("console socket")?;
        Ok(ConsoleListener { path, listener })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Take the pty master the backend sent.
    pub fn receive(self) -> Result<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let (stream, _) = self.listener.accept().context("accepting console socket")?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .context("recvmsg")?;
        for c in msg.cmsgs().context("cmsgs")? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just gave us this fd.
                    return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
                }
            }
        }
        bail!("the console socket carried no pty")
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copy our stdin to the pty master and the master to our stdout until the workload exits;
/// our own terminal (if stdin is one) is put in raw mode meanwhile. Call [`block_signals`]
/// first. Returns the output copier, to be joined (briefly) once the workload has exited.
pub fn relay_pty(master: OwnedFd) -> std::thread::JoinHandle<()> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RESTORE.with(|r| *r.borrow_mut() = saved.clone());
    }
    // The workload's terminal gets our terminal's size.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a properly sized winsize.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
    let m_in = master.try_clone().expect("dup pty master");
    std::thread::spawn(move || {
        let mut from = std::io::stdin();
        let mut to = std::fs::File::from(m_in);
        let _ = std::io::copy(&mut from, &mut to);
    });
    std::thread::spawn(move || {
        let mut from = std::fs::File::from(master);
        let mut to = std::io::stdout();
        let _ = std::io::copy(&mut from, &mut to);
    })
}

/// Let the output copier drain what the workload wrote last (at most 500 ms: a background
/// process may hold the pty open forever).
pub fn drain(out: std::thread::JoinHandle<()>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while !out.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

thread_local! {
    static RESTORE: std::cell::RefCell<Option<nix::sys::termios::Termios>> = const { std::cell::RefCell::new(None) };
}

/// Give our terminal its settings back after [`relay_pty`].
pub fn restore_terminal() {
    RESTORE.with(|r| {
        if let Some(t) = r.borrow_mut().take() {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &t,
            );
        }
    });
}
