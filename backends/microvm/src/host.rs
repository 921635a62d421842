//! The sandbox's host process: the process `create` forks, whose lifetime is the sandbox and whose
//! exit status is the workload's.
//!
//! It starts the VM (a child process, via an [`Engine`]), waits for the guest agent's Ready frame
//! and tells `create` the sandbox is built (or why it is not), blocks on the start fifo, then
//! sends Start and relays: guest stdout/stderr frames to its own stdout/stderr, its stdin to the
//! guest, the signals it receives to the workload. The Exit frame carries the workload's status;
//! the host process ends the same way (same exit code, or killed by the same signal).

use crate::engine::{Engine, VmSpec};
use crate::hub::Hub;
use crate::relay::{
    block_signals, exit_like, make_raw, pfd, poll, read_signals, relay, vm_exited, winsize, Port,
    VM_FAILED,
};
use anyhow::{Context, Result};
use hako_agent::proto::Frame;
use hako_contract::host_process::Readiness;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the guest may take from VM start to the agent's Ready (TCG on a busy 2-core machine
/// boots in ~2.5 s; this is a safety net, not a budget).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// After the Exit frame, how long the guest may take to reset before its VM is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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
    /// Restore this template instead of booting (cold boot when that fails).
    pub restore: Option<Restore>,
}

/// A template to restore ([`crate::template`]): its directory and the command line it booted
/// with.
pub struct Restore {
    pub template: PathBuf,
    pub cmdline: String,
    /// The restored VM's disks, in the template's layout: the agent disk and the rootfs image
    /// (no config disk: its image goes to the agent after Go).
    pub disks: Vec<crate::engine::Disk>,
    /// The config disk's image.
    pub config: Vec<u8>,
}

/// What the host process tells `create` with Ready: whether the guest was restored from a
/// template, and why not when one was asked for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BootReport {
    pub snapshot: bool,
    pub fallback: Option<String>,
    /// Where the host process's time went, for create's `--debug` lines.
    #[serde(default)]
    pub steps: String,
    /// The agent's set-up steps and their cost in guest ms ([`crate::timings::step_costs`]),
    /// for `create --debug`.
    #[serde(default)]
    pub agent_steps_ms: Vec<(String, f64)>,
}

/// A VM whose agent said Ready.
struct Booted {
    port: Port,
    vm_pid: libc::pid_t,
    boot_times: Option<(u64, u64)>,
    /// The agent's Steps frame: each set-up step's name and guest time at its end.
    steps: Vec<(String, u64)>,
    spawn: Instant,
    spawned: Instant,
    snapshot: bool,
    fallback: Option<String>,
}

/// Why a boot did not reach Ready.
enum BootErr {
    /// The agent reported the sandbox's own error (a missing program, a bad mount): booting
    /// again would end the same way.
    Agent(anyhow::Error),
    /// The VM did not come up (it died, hung or the restore broke); it is gone now.
    Vm(anyhow::Error),
}

/// Join the sandbox's cgroup (when it has one and we are not in it yet).
fn join_once(plan: &HostPlan, joined: &mut bool) -> Result<()> {
    if let (Some(cg), false) = (&plan.cgroup, *joined) {
        cg.add_pid(std::process::id() as i32)
            .context("joining the sandbox's cgroup")?;
        crate::timings::mark("cgroup joined");
    }
    *joined = true;
    Ok(())
}

/// Restore the plan's template when it has one, and boot cold when there is none or the
/// restored VM does not come up. The host process is in the sandbox's cgroup when this
/// returns, and so is the VM (see [`run`] for the order).
fn boot(plan: &HostPlan, sigfd: &OwnedFd, joined: &mut bool) -> Result<Booted> {
    let mut fallback = None;
    if let Some(r) = &plan.restore {
        let mut vm = plan.vm.clone();
        vm.cmdline = r.cmdline.clone();
        vm.disks = r.disks.clone();
        let (host_end, guest_end) = UnixStream::pair().context("socketpair for the agent port")?;
        let spawn = Instant::now();
        crate::timings::mark("restore: spawn");
        let spawned =
            if *joined {
                plan.engine
                    .spawn_restored(vm, &r.template, guest_end.into())
            } else {
                // The VM moves into the cgroup while qemu starts; we follow after Go.
                let cg = plan.cgroup.as_ref();
                plan.engine
                    .spawn_restored_placed(vm, &r.template, guest_end.into(), &mut |pid| match cg {
                        Some(cg) => cg
                            .add_pid(pid)
                            .context("moving the VM into the sandbox's cgroup"),
                        None => Ok(()),
                    })
            };
        match spawned {
            Ok(vm_pid) => {
                let spawned = Instant::now();
                crate::timings::mark("restore: running");
                record_vm_pid(plan, vm_pid);
                let mut port = Port::new(host_end);
                let went = go_frames(&r.config).and_then(|frames| {
                    frames
                        .iter()
                        .try_for_each(|f| port.send(f))
                        .context("sending Go and the config to the restored guest")
                });
                crate::timings::mark("Go and config sent");
                // The guest sets up its sandbox now (tens of ms at least): time enough for the
                // host process to join the cgroup its VM is already in.
                let went = went.and_then(|()| join_once(plan, joined));
                let res = match went {
                    Ok(()) => wait_ready(&mut port, sigfd, vm_pid, &plan.vm, spawn),
                    Err(e) => {
                        kill_vm(vm_pid);
                        Err(BootErr::Vm(e))
                    }
                };
                match res {
                    Ok((boot_times, steps)) => {
                        return Ok(Booted {
                            port,
                            vm_pid,
                            boot_times,
                            steps,
                            spawn,
                            spawned,
                            snapshot: true,
                            fallback: None,
                        })
                    }
                    Err(BootErr::Agent(e)) => return Err(e),
                    Err(BootErr::Vm(e)) => fallback = Some(format!("{e:#}")),
                }
            }
            Err(e) => fallback = Some(format!("{e:#}")),
        }
    }
    // A cold boot's VM is forked into the cgroup: the host process joins it first.
    join_once(plan, joined)?;
    let (host_end, guest_end) = UnixStream::pair().context("socketpair for the agent port")?;
    let spawn = Instant::now();
    let vm_pid = plan.engine.spawn(plan.vm.clone(), guest_end.into())?;
    let spawned = Instant::now();
    record_vm_pid(plan, vm_pid);
    let mut port = Port::new(host_end);
    match wait_ready(&mut port, sigfd, vm_pid, &plan.vm, spawn) {
        Ok((boot_times, steps)) => Ok(Booted {
            port,
            vm_pid,
            boot_times,
            steps,
            spawn,
            spawned,
            snapshot: false,
            fallback,
        }),
        Err(BootErr::Agent(e) | BootErr::Vm(e)) => Err(e),
    }
}

fn record_vm_pid(plan: &HostPlan, vm_pid: libc::pid_t) {
    let _ = std::fs::write(
        &plan.vm_pid_file,
        format!(
            "{vm_pid} {}",
            hako_contract::proc::start_time(vm_pid).unwrap_or(0)
        ),
    );
}

/// The first frame a restored guest gets: the wall clock and 64 fresh random bytes.
/// Go, then the config disk image in pieces a frame holds.
fn go_frames(config: &[u8]) -> Result<Vec<Frame>> {
    let mut frames = vec![go_frame(config.len() as u64)?];
    frames.extend(
        config
            .chunks(hako_agent::proto::MAX_PAYLOAD)
            .map(|c| Frame::Config(c.to_vec())),
    );
    Ok(frames)
}

fn go_frame(config_len: u64) -> Result<Frame> {
    let mut entropy = vec![0u8; 64];
    // SAFETY: getrandom into a buffer of that length.
    let n = unsafe { libc::getrandom(entropy.as_mut_ptr().cast(), entropy.len(), 0) };
    if n != entropy.len() as isize {
        return Err(std::io::Error::last_os_error()).context("getrandom for the guest's entropy");
    }
    let realtime_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the host clock is before 1970")?
        .as_nanos() as u64;
    Ok(Frame::Go {
        realtime_ns,
        config_len,
        entropy,
    })
}

/// What the agent reported of its own times before Ready: its BootTimes and its Steps.
type GuestTimes = (Option<(u64, u64)>, Vec<(String, u64)>);

/// Read the agent port until the agent says Ready; its BootTimes and Steps when it sent them.
fn wait_ready(
    port: &mut Port,
    sigfd: &OwnedFd,
    vm_pid: libc::pid_t,
    vm: &VmSpec,
    boot_start: Instant,
) -> std::result::Result<GuestTimes, BootErr> {
    let (serial_log, engine_log) = (&vm.serial_log, &vm.engine_log);
    let vm_err = |e: anyhow::Error| BootErr::Vm(e);
    let mut errors = vec![];
    let mut boot_times = None;
    let mut steps = vec![];
    loop {
        let left = BOOT_TIMEOUT.saturating_sub(boot_start.elapsed());
        if left.is_zero() {
            kill_vm(vm_pid);
            return Err(BootErr::Vm(anyhow::anyhow!(
                "the guest did not come up within {} s{}",
                BOOT_TIMEOUT.as_secs(),
                diagnostics(serial_log, engine_log)
            )));
        }
        let mut fds = [
            pfd(port.sock.as_raw_fd(), libc::POLLIN),
            pfd(sigfd.as_raw_fd(), libc::POLLIN),
        ];
        poll(&mut fds, Some(left)).map_err(vm_err)?;
        let mut eof = false;
        if fds[0].revents != 0 {
            eof = !port.fill().map_err(vm_err)?;
        }
        let mut ready = false;
        while let Some(f) = port
            .reader
            .next_frame()
            .map_err(|e| vm_err(anyhow::Error::msg(e)))?
        {
            match f {
                Frame::Ready => ready = true,
                Frame::Error(m) => errors.push(m),
                Frame::BootTimes {
                    agent_start_ns,
                    ready_ns,
                } => boot_times = Some((agent_start_ns, ready_ns)),
                Frame::Steps(s) => steps = s,
                _ => {}
            }
        }
        if ready {
            return Ok((boot_times, steps));
        }
        let _ = read_signals(sigfd);
        if eof || !errors.is_empty() {
            // The agent gave up (it resets the guest after an Error) or the VM died.
            let st = wait_vm(vm_pid, SHUTDOWN_GRACE);
            if !errors.is_empty() {
                return Err(BootErr::Agent(anyhow::anyhow!("{}", errors.join("; "))));
            }
            return Err(BootErr::Vm(anyhow::anyhow!(
                "the VM stopped before the guest agent was ready ({}){}",
                describe_wait(st),
                diagnostics(serial_log, engine_log)
            )));
        }
        if let Some(st) = vm_exited(vm_pid) {
            return Err(BootErr::Vm(anyhow::anyhow!(
                "the VM stopped before the guest agent was ready ({}){}",
                describe_wait(Some(st)),
                diagnostics(serial_log, engine_log)
            )));
        }
    }
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
    // The tap and the network namespace the engine gets (crate::net).
    keep.extend(plan.vm.net.iter().flat_map(|n| [n.tap_fd, n.netns_fd]));
    hako_linux::process::close_fds_except(&keep);
    crate::timings::mark("fds closed");
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
    // The host process and the VM must both be in the sandbox's cgroup before create returns.
    // Each cgroup v1 move costs an RCU grace period per hierarchy (10-15 ms for a process on a
    // hybrid host), so where the engine can place a restored VM before its guest runs, the VM
    // is moved while qemu starts and the host process follows while the guest sets up;
    // otherwise the host joins first and the VM is forked into it.
    let mut joined = false;
    if plan.restore.is_none() || !plan.engine.places_before_resume() {
        join_once(&plan, &mut joined)?;
    }
    let sigfd = block_signals(&[libc::SIGCHLD])?;
    let Booted {
        mut port,
        vm_pid,
        boot_times,
        steps,
        spawn: boot_start,
        spawned,
        snapshot,
        fallback,
    } = boot(&plan, &sigfd, &mut joined)?;
    crate::timings::mark("Ready");
    let points = crate::timings::BootPoints {
        entered,
        spawn: boot_start,
        spawned,
        ready: Instant::now(),
    };
    let agent_steps_ms = boot_times
        .map(|(start, _)| crate::timings::step_costs(start, &steps))
        .unwrap_or_default();
    if let Some(r) = ready.take() {
        let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e3;
        let marks: Vec<String> = crate::timings::marks_since(entered)
            .iter()
            .map(|(w, t)| format!("{w} {t:.1}"))
            .collect();
        let steps = format!(
            "set-up {:.1} ms, engine {} {:.1} ms, then Ready in {:.1} ms; host process timeline (ms since its entry): {}",
            ms(points.entered, points.spawn),
            if snapshot { "restore" } else { "spawn" },
            ms(points.spawn, points.spawned),
            ms(points.spawned, points.ready),
            marks.join(", "),
        );
        r.ready(BootReport {
            snapshot,
            fallback,
            steps,
            agent_steps_ms: agent_steps_ms.clone(),
        })?;
    }
    // After telling create, so the measurement (smaps of the VM) does not delay it.
    let mut timings = crate::timings::Timings::after_ready(
        plan.engine.name(),
        plan.vm.kvm,
        plan.vm.memory_mib,
        &points,
        boot_times,
        vm_pid,
        snapshot
            .then(|| {
                plan.restore
                    .as_ref()
                    .map(|r| r.template.join(crate::qemu::RAM_FILE))
            })
            .flatten(),
    );
    timings.agent_steps_ms = agent_steps_ms;
    let _ = timings.write(&plan.timings_file);

    // Created: wait for `hako start`. Until then our signals keep their default actions, so
    // `kill` of a created sandbox ends it (and the VM dies with us).
    if let Err(e) = hako_contract::start_gate::wait(&plan.start_fifo) {
        kill_vm(vm_pid);
        return Err(e);
    }
    crate::timings::mark("start: fifo opened");
    // The one list of forwarded signals (hako_contract::signal), and SIGCHLD for the VM.
    let mut sigs = hako_contract::signal::forwarded();
    sigs.push(libc::SIGCHLD);
    let sigfd = block_signals(&sigs)?;
    let mut hub = match Hub::bind(&plan.exec_sock) {
        Ok(h) => h,
        Err(e) => {
            kill_vm(vm_pid);
            return Err(e.context("the exec socket"));
        }
    };
    port.send(&Frame::Start).context("starting the workload")?;
    let started = Instant::now();
    crate::timings::mark("start: Start sent");
    if let Some(ws) = winsize(0) {
        let _ = port.send(&Frame::Winsize(ws.0, ws.1));
    }
    let (status, reaped) = relay(&mut port, &sigfd, Some(vm_pid), Some(&mut hub))?;
    let exited = Instant::now();
    crate::timings::mark("run: Exit frame");
    drop(hub);
    let _ = std::fs::remove_file(&plan.exec_sock);
    let st = match reaped {
        Some(st) => Some(st),
        // The workload's status is final, and the guest holds nothing the host still needs (its
        // disks are read-only, its writable layer is guest memory): end the VM now instead of
        // waiting for the guest's own reset (its shutdown path costs tens of ms under TCG).
        None if status.is_some() => {
            kill_vm(vm_pid);
            None
        }
        None => wait_vm(vm_pid, SHUTDOWN_GRACE),
    };
    crate::timings::mark("run: VM reaped");
    if status.is_some() {
        timings.after_exit(started, exited, Instant::now());
        timings.host_marks_ms = crate::timings::marks_since(entered);
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
