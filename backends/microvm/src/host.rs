//! The sandbox's host process: the process `create` forks, whose lifetime is the sandbox and whose
//! exit status is the workload's.
//!
//! It starts the VM (a child process, via an [`Engine`]), waits for the guest agent's Ready frame
//! and tells `create` the sandbox is built (or why it is not), blocks on the start fifo, then
//! sends Start and relays: guest stdout/stderr frames to its own stdout/stderr, its stdin to the
//! guest, the signals it receives to the workload. The Exit frame carries the workload's status;
//! the host process ends the same way (same exit code, or killed by the same signal).

use crate::engine::{Engine, VmSpec};
use crate::exec;
use anyhow::{bail, Context, Result};
use hako_agent::proto::{ExitStatus, Frame, FrameReader};
use hako_contract::host_process::Readiness;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the guest may take from VM start to the agent's Ready (TCG on a busy 2-core machine
/// boots in ~2.5 s; this is a safety net, not a budget).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// After the Exit frame, how long the guest may take to reset before its VM is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Exit status of the host process when the VM ended without reporting the workload's status.
pub const VM_FAILED: i32 = 255;

/// Everything the host process needs; made by `create` before it forks.
pub struct HostPlan {
    pub engine: Box<dyn Engine>,
    pub vm: VmSpec,
    pub start_fifo: PathBuf,
    /// Where the VM's pid is written (for `delete` to make sure it is gone).
    pub vm_pid_file: PathBuf,
    /// Where the host process listens for `hako exec` once the workload runs.
    pub exec_sock: PathBuf,
    /// The pty slave when process.terminal and a console socket were given.
    pub tty: Option<OwnedFd>,
    /// The host cgroup the host process (and so the VM) joins before the VM starts.
    pub cgroup: Option<hako_linux::cgroups::CgroupManager>,
    /// Where the boot/run split and the VM's memory are written ([`crate::timings`]).
    pub timings_file: PathBuf,
}

/// The host end of the agent port as a frame channel.
struct Port {
    sock: UnixStream,
    reader: FrameReader,
    buf: Vec<u8>,
}

impl Port {
    fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        self.sock.write_all(&f.encode())
    }

    /// Read what is there; false at EOF.
    fn fill(&mut self) -> Result<bool> {
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

fn block_signals(sigs: &[i32]) -> Result<OwnedFd> {
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
fn read_signals(fd: &OwnedFd) -> Vec<(i32, bool)> {
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

fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> Result<()> {
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: valid pollfd array.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
        return Err(std::io::Error::last_os_error()).context("poll");
    }
    Ok(())
}

fn pfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// The VM's status if it has ended (reaped), without blocking.
fn vm_exited(pid: libc::pid_t) -> Option<i32> {
    let mut st = 0;
    // SAFETY: waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    (r == pid).then_some(st)
}

fn kill_vm(pid: libc::pid_t) {
    // SAFETY: signal and reap our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
}

/// The last lines of the engine's log and of the guest's serial log, on one line, for error
/// messages (the logs themselves live in the state directory).
pub fn diagnostics(serial_log: &Path, engine_log: &Path) -> String {
    let tail = |p: &Path, n: usize| -> String {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    };
    let mut out = String::new();
    let e = tail(engine_log, 3);
    if !e.is_empty() {
        out.push_str(&format!("; engine: {e}"));
    }
    let s = tail(serial_log, 4);
    if !s.is_empty() {
        out.push_str(&format!("; guest console: {s}"));
    }
    out
}

/// Run the host process. `ready` reports Ready once the guest is, or the set-up's error (see
/// `hako_contract::host_process`). Never returns.
pub fn main(plan: HostPlan, ready: Readiness) -> ! {
    let entered = Instant::now();
    // Keep only stdio, the report pipe and the pty: an inherited fd (the front end's lock on the
    // container directory, say) must not live as long as the sandbox.
    let mut keep = vec![ready.as_raw_fd()];
    keep.extend(plan.tty.as_ref().map(|t| t.as_raw_fd()));
    hako_linux::process::close_fds_except(&keep);
    let mut ready = Some(ready);
    let code = match run(plan, &mut ready, entered) {
        Ok(code) => code,
        Err(e) => {
            match ready.take() {
                Some(r) => r.fail(&e),
                None => {
                    let _ = writeln!(std::io::stderr(), "hako: microvm: {e:#}");
                }
            }
            VM_FAILED
        }
    };
    // SAFETY: leaving the process.
    unsafe { libc::_exit(code) }
}

fn run(mut plan: HostPlan, ready: &mut Option<Readiness>, entered: Instant) -> Result<i32> {
    // SAFETY: ignoring SIGPIPE: a closed stdout must not kill the sandbox.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if let Some(tty) = plan.tty.take() {
        // SAFETY: new session so the pty becomes our controlling terminal.
        unsafe { libc::setsid() };
        hako_contract::console::adopt_as_stdio(&tty)?;
        make_raw(0);
    }
    let serial_log = plan.vm.serial_log.clone();
    let engine_log = plan.vm.engine_log.clone();
    if let Some(cg) = &plan.cgroup {
        cg.add_pid(std::process::id() as i32)
            .context("joining the sandbox's cgroup")?;
    }
    let (host_end, guest_end) = UnixStream::pair().context("socketpair for the agent port")?;
    let vm = plan.vm.clone().with_port(guest_end.into());
    let sigfd = block_signals(&[libc::SIGCHLD])?;
    let boot_start = Instant::now();
    let vm_pid = plan.engine.spawn(vm)?;
    let spawned = Instant::now();
    let _ = std::fs::write(
        &plan.vm_pid_file,
        format!(
            "{vm_pid} {}",
            hako_contract::proc::start_time(vm_pid).unwrap_or(0)
        ),
    );
    let mut port = Port {
        sock: host_end,
        reader: FrameReader::new(),
        buf: vec![0u8; 64 * 1024],
    };

    // Boot: wait for Ready.
    let mut errors = vec![];
    let mut boot_times = None;
    loop {
        let left = BOOT_TIMEOUT.saturating_sub(boot_start.elapsed());
        if left.is_zero() {
            kill_vm(vm_pid);
            bail!(
                "the guest did not come up within {} s{}",
                BOOT_TIMEOUT.as_secs(),
                diagnostics(&serial_log, &engine_log)
            );
        }
        let mut fds = [
            pfd(port.sock.as_raw_fd(), libc::POLLIN),
            pfd(sigfd.as_raw_fd(), libc::POLLIN),
        ];
        poll(&mut fds, Some(left))?;
        let mut eof = false;
        if fds[0].revents != 0 {
            eof = !port.fill()?;
        }
        let mut ready = false;
        while let Some(f) = port.reader.next_frame().map_err(anyhow::Error::msg)? {
            match f {
                Frame::Ready => ready = true,
                Frame::Error(m) => errors.push(m),
                Frame::BootTimes {
                    agent_start_ns,
                    ready_ns,
                } => boot_times = Some((agent_start_ns, ready_ns)),
                _ => {}
            }
        }
        if ready {
            break;
        }
        let _ = read_signals(&sigfd);
        if eof || !errors.is_empty() {
            // The agent gave up (it resets the guest after an Error) or the VM died.
            let st = wait_vm(vm_pid, SHUTDOWN_GRACE);
            if !errors.is_empty() {
                bail!("{}", errors.join("; "));
            }
            bail!(
                "the VM stopped before the guest agent was ready ({}){}",
                describe_wait(st),
                diagnostics(&serial_log, &engine_log)
            );
        }
        if let Some(st) = vm_exited(vm_pid) {
            bail!(
                "the VM stopped before the guest agent was ready ({}){}",
                describe_wait(Some(st)),
                diagnostics(&serial_log, &engine_log)
            );
        }
    }
    let points = crate::timings::BootPoints {
        entered,
        spawn: boot_start,
        spawned,
        ready: Instant::now(),
    };
    if let Some(r) = ready.take() {
        r.ready(())?;
    }
    // After telling create, so the measurement (smaps of the VM) does not delay it.
    let mut timings = crate::timings::Timings::after_ready(
        plan.engine.name(),
        plan.vm.kvm,
        plan.vm.memory_mib,
        &points,
        boot_times,
        vm_pid,
    );
    let _ = timings.write(&plan.timings_file);

    // Created: wait for `hako start`. Until then our signals keep their default actions, so
    // `kill` of a created sandbox ends it (and the VM dies with us).
    if let Err(e) = hako_contract::start_gate::wait(&plan.start_fifo) {
        kill_vm(vm_pid);
        return Err(e);
    }
    // The one list of forwarded signals (hako_contract::signal), and SIGCHLD for the VM.
    let mut sigs = hako_contract::signal::forwarded();
    sigs.push(libc::SIGCHLD);
    let sigfd = block_signals(&sigs)?;
    let mut hub = match exec::Hub::bind(&plan.exec_sock) {
        Ok(h) => h,
        Err(e) => {
            kill_vm(vm_pid);
            return Err(e.context("the exec socket"));
        }
    };
    port.send(&Frame::Start).context("starting the workload")?;
    let started = Instant::now();
    if let Some(ws) = winsize(0) {
        let _ = port.send(&Frame::Winsize(ws.0, ws.1));
    }
    let (status, reaped) = relay(&mut port, &sigfd, Some(vm_pid), Some(&mut hub))?;
    let exited = Instant::now();
    drop(hub);
    let _ = std::fs::remove_file(&plan.exec_sock);
    let st = match reaped {
        Some(st) => Some(st),
        None => wait_vm(vm_pid, SHUTDOWN_GRACE),
    };
    if status.is_some() {
        timings.after_exit(started, exited, Instant::now());
        let _ = timings.write(&plan.timings_file);
    }
    let _ = std::fs::remove_file(&plan.vm_pid_file);
    match status {
        Some(s) => Ok(exit_like(s)),
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "hako: microvm: the VM stopped without reporting the workload's exit status ({}){}",
                describe_wait(st),
                diagnostics(&serial_log, &engine_log)
            );
            Ok(VM_FAILED)
        }
    }
}

/// The exit code that ends this process the way the guest process ended; for a signal, it
/// first tries to die by the same signal.
fn exit_like(status: ExitStatus) -> i32 {
    match status {
        ExitStatus::Exited(c) => c & 0xff,
        ExitStatus::Signaled(s) => hako_contract::signal::die_like(s),
    }
}

/// The exec client (see [`crate::exec`]), in the child `hako exec` forked once the guest
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

/// Wait up to `grace` for the VM to end by itself, then kill it. Its wait status when it ended.
fn wait_vm(pid: libc::pid_t, grace: Duration) -> Option<i32> {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(st) = vm_exited(pid) {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    kill_vm(pid);
    None
}

fn describe_wait(st: Option<i32>) -> String {
    match st {
        None => "killed after it stopped answering".into(),
        Some(st) if libc::WIFEXITED(st) => {
            format!("engine exited with status {}", libc::WEXITSTATUS(st))
        }
        Some(st) if libc::WIFSIGNALED(st) => {
            format!("engine killed by signal {}", libc::WTERMSIG(st))
        }
        Some(st) => format!("wait status {st:#x}"),
    }
}

fn winsize(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ into a valid struct.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

fn make_raw(fd: RawFd) {
    // SAFETY: termios on our fd.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
}

fn write_all_fd(fd: RawFd, mut data: &[u8]) -> bool {
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
fn relay(
    port: &mut Port,
    sigfd: &OwnedFd,
    vm_pid: Option<libc::pid_t>,
    mut hub: Option<&mut exec::Hub>,
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
fn drain_after_exit(port: &mut Port) -> Result<()> {
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
fn port_exit(port: &mut Port) -> Option<ExitStatus> {
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
