//! Spawning the runtimes under test, timing them and collecting their rusage.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What one finished child process cost.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// Raw wait status.
    pub status: i32,
    /// ru_maxrss of the child (and of its descendants it waited for), KiB.
    pub maxrss_kb: u64,
    /// User + system CPU time of the child and the descendants it waited for, ms.
    pub cpu_ms: f64,
    /// From the spawn to the child's exit, less [`Finished::harness`].
    pub elapsed: Duration,
    /// The harness's own time inside the child before its exec: moving itself into the sample's
    /// cgroups (see [`join_cgroups_in_child`]). Callers that time a child with clocks of their
    /// own subtract it.
    pub harness: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }
    pub fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

/// Make this process the reaper of orphaned descendants, so the sandboxes that `X create`
/// leaves behind become our children: we can then wait4() them and read their ru_maxrss.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r != 0 {
        bail!(
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Reap every exited child without blocking (orphans reparented to us).
pub fn reap_zombies() {
    loop {
        let mut st = 0;
        // SAFETY: plain waitpid.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

/// How a command's stdio is wired.
pub struct Io {
    pub stdout: Option<PathBuf>,
    pub stderr: PathBuf,
}

/// Run `argv` to completion, inside `cgroup_procs` (a `cgroup.procs` file) when given, with
/// stdin from /dev/null, stdout to a file or /dev/null, stderr to a file. Kills it after `timeout`.
pub fn run(
    argv: &[String],
    io: &Io,
    cgroup_procs: &[PathBuf],
    timeout: Duration,
) -> Result<Finished> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    match &io.stdout {
        Some(p) => {
            cmd.stdout(File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => cmd.stdout(Stdio::null()),
    };
    cmd.stderr(
        File::create(&io.stderr).with_context(|| format!("creating {}", io.stderr.display()))?,
    );
    let join = join_cgroups_in_child(&mut cmd, cgroup_procs)?;
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", argv[0]))?;
    let harness = join.map(|j| j.took()).unwrap_or_default();
    let pid = child.id() as i32;
    let (status, maxrss_kb, cpu_ms) =
        wait_pid(pid, timeout)?.with_context(|| format!("{} is not our child", argv[0]))?;
    Ok(Finished {
        status,
        maxrss_kb,
        cpu_ms,
        elapsed: start.elapsed().saturating_sub(harness),
        harness,
    })
}

/// What [`run_watch`] saw.
pub struct Watched<T> {
    pub finished: Finished,
    /// Every stdout line (without its line ending) with when it arrived, since the spawn.
    pub lines: Vec<(Duration, String)>,
    /// What `on_mark` returned, called with the child's pid as the first line containing the
    /// mark arrived (None when no line did).
    pub marked: Option<T>,
}

/// [`run`], with stdout read as it comes: each line timestamped (and still written to
/// `io.stdout`), and `on_mark(pid)` called while the child runs, at the first line containing
/// `mark` (to sample the child at that moment).
pub fn run_watch<T: Send>(
    argv: &[String],
    io: &Io,
    cgroup_procs: &[PathBuf],
    timeout: Duration,
    mark: &str,
    on_mark: impl FnOnce(i32) -> T + Send,
) -> Result<Watched<T>> {
    use std::io::{BufRead, Write};
    let mut copy = match &io.stdout {
        Some(p) => Some(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => None,
    };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            File::create(&io.stderr)
                .with_context(|| format!("creating {}", io.stderr.display()))?,
        );
    let join = join_cgroups_in_child(&mut cmd, cgroup_procs)?;
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", argv[0]))?;
    let harness = join.map(|j| j.took()).unwrap_or_default();
    let pid = child.id() as i32;
    let stdout = child.stdout.take().context("child stdout")?;
    std::thread::scope(|sc| {
        let reader = sc.spawn(move || {
            let mut lines = Vec::new();
            let mut marked = None;
            let mut on_mark = Some(on_mark);
            let mut r = std::io::BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // From the spawn, less the harness's own cgroup move, as `elapsed` is.
                let at = start.elapsed().saturating_sub(harness);
                if let Some(f) = copy.as_mut() {
                    let _ = f.write_all(&buf);
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                if line.contains(mark) {
                    if let Some(f) = on_mark.take() {
                        marked = Some(f(pid));
                    }
                }
                lines.push((at, line));
            }
            (lines, marked)
        });
        let waited = wait_pid(pid, timeout);
        let (lines, marked) = reader.join().expect("stdout reader");
        let (status, maxrss_kb, cpu_ms) =
            waited?.with_context(|| format!("{} is not our child", argv[0]))?;
        Ok(Watched {
            finished: Finished {
                status,
                maxrss_kb,
                cpu_ms,
                elapsed: start.elapsed().saturating_sub(harness),
                harness,
            },
            lines,
            marked,
        })
    })
}

/// The child's report of its own cgroup moves: two CLOCK_MONOTONIC stamps (before, after),
/// written into a pipe before its exec, read once `spawn` has returned (after the exec).
pub struct Joined(File);

impl Joined {
    /// How long the child took to move itself (zero if it could not say).
    fn took(mut self) -> Duration {
        use std::io::Read;
        let mut b = [0u8; 32];
        if self.0.read_exact(&mut b).is_err() {
            return Duration::ZERO;
        }
        let at = |o: usize| {
            let sec = i64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
            let ns = i64::from_ne_bytes(b[o + 8..o + 16].try_into().unwrap());
            Duration::new(sec.max(0) as u64, ns.clamp(0, 999_999_999) as u32)
        };
        at(16).saturating_sub(at(0))
    }
}

/// Make the child move itself into each cgroup (write "0" to cgroup.procs) before exec, so
/// everything it does is charged there from its first page. The move is the harness's, not the
/// runtime's (engines do not move the runtime into the container's cgroup), and on cgroup v1 it
/// waits for an RCU grace period, which takes milliseconds while a sandbox keeps a CPU busy
/// (a microVM after create): the child stamps the clock around it, and [`Joined::took`] tells
/// the caller how much of the child's time to take off.
fn join_cgroups_in_child(cmd: &mut Command, cgroup_procs: &[PathBuf]) -> Result<Option<Joined>> {
    if cgroup_procs.is_empty() {
        return Ok(None);
    }
    let paths: Vec<CString> = cgroup_procs
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()).context("cgroup path with NUL"))
        .collect::<Result<_>>()?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe for the cgroup move's time");
    }
    // SAFETY: both descriptors were just made and are owned here; the write end lives in the
    // closure, so it closes with the Command.
    let (read, write) = unsafe {
        (
            File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: the closure only calls async-signal-safe functions (clock_gettime, open, write,
    // close) on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            let stamp = |b: &mut [u8]| {
                let mut ts: libc::timespec = std::mem::zeroed();
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
                b[..8].copy_from_slice(&(ts.tv_sec as i64).to_ne_bytes());
                b[8..16].copy_from_slice(&(ts.tv_nsec as i64).to_ne_bytes());
            };
            let mut b = [0u8; 32];
            stamp(&mut b[..16]);
            for p in &paths {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                if r != 1 {
                    return Err(e);
                }
            }
            stamp(&mut b[16..]);
            // A pipe holds far more than 32 bytes: this never blocks.
            libc::write(write.as_raw_fd(), b.as_ptr().cast(), b.len());
            Ok(())
        });
    }
    Ok(Some(Joined(read)))
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Turn SIGINT/SIGTERM into a flag, so a run stopped with ^C still kills and deletes the idle
/// sandboxes it started and removes its cgroups before it prints what it has.
pub fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_interrupt as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Pids that must not be reaped by the zombie sweep (the sandbox we will wait4 for).
static PROTECTED: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());
/// signalfd for SIGCHLD, or -1 before [`setup_sigchld`].
static SIGFD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

pub fn protect(pid: i32) {
    PROTECTED.lock().unwrap().push(pid);
}

pub fn unprotect(pid: i32) {
    PROTECTED.lock().unwrap().retain(|p| *p != pid);
}

/// Block SIGCHLD in this thread and take it through a signalfd, so that while we wait for one
/// process we can reap the orphans (reparented to us as subreaper) that exit meanwhile: a
/// runtime that polls `kill(pid, 0)` for its helper to go away (runsc's gofer) would otherwise
/// wait for our zombie until its own timeout. Spawned children get an empty signal mask from std.
pub fn setup_sigchld() -> Result<()> {
    if SIGFD.load(std::sync::atomic::Ordering::SeqCst) >= 0 {
        return Ok(());
    }
    // SAFETY: plain sigset manipulation and signalfd creation.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("pthread_sigmask: {}", std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            bail!("signalfd: {}", std::io::Error::last_os_error());
        }
        SIGFD.store(fd, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(())
}

fn drain_sigfd(fd: i32) {
    let mut buf = [0u8; 128 * 8];
    // SAFETY: reading into a local buffer.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Reap exited children other than `keep` and the protected pids.
pub fn reap_untracked(keep: i32) {
    let protected = PROTECTED.lock().unwrap().clone();
    let skip = |p: i32| p == keep || protected.contains(&p);
    // Fast path: peek at the first zombie with WNOWAIT.
    loop {
        // SAFETY: zeroed siginfo is valid; waitid fills it.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut si,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        let pid = unsafe { si.si_pid() };
        if r != 0 || pid == 0 {
            return;
        }
        if skip(pid) {
            break;
        }
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    }
    // A protected zombie hides the others from waitid: look for our zombie children in /proc.
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if skip(pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|x| x.parse::<i32>().ok());
        if state == Some("Z") && ppid == Some(me) {
            let mut st = 0;
            unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        }
    }
}

/// Wait for `pid` to exit, at most `timeout`. If it is our child (directly or as a reparented
/// orphan), reap it and return its wait status and ru_maxrss; if it is not, return `None` once
/// it is gone. On timeout the process is SIGKILLed and an error returned.
pub fn wait_pid(pid: i32, timeout: Duration) -> Result<Option<(i32, u64, f64)>> {
    // SAFETY: pidfd_open has no memory arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            // Already reaped by someone else, or gone.
            return Ok(try_reap(pid));
        }
        bail!("pidfd_open({pid}): {e}");
    }
    let sigfd = SIGFD.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfds = [
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let nfds = if sigfd >= 0 { 2 } else { 1 };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: valid pollfds.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), nfds, ms) };
        if r > 0 && pfds[0].revents != 0 {
            break;
        }
        if r > 0 && pfds[1].revents != 0 {
            drain_sigfd(sigfd);
            reap_untracked(pid);
            continue;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            unsafe { libc::close(pidfd) };
            bail!("poll(pidfd): {e}");
        }
        if left.is_zero() {
            // SAFETY: signalling by pidfd cannot hit a recycled pid.
            unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, pidfd, libc::SIGKILL, 0, 0);
                libc::close(pidfd);
            }
            let _ = try_reap_blocking(pid);
            bail!("pid {pid} still running after {:?}; killed", timeout);
        }
    }
    unsafe { libc::close(pidfd) };
    Ok(try_reap_blocking(pid))
}

fn wait4(pid: i32, flags: i32) -> Option<(i32, u64, f64)> {
    let mut st = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut st, flags, &mut ru) };
        if r == pid {
            let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
            return Some((st, ru.ru_maxrss as u64, tv(ru.ru_utime) + tv(ru.ru_stime)));
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

fn try_reap(pid: i32) -> Option<(i32, u64, f64)> {
    wait4(pid, libc::WNOHANG)
}

/// The process has exited (pidfd readable); reap it if it is ours.
fn try_reap_blocking(pid: i32) -> Option<(i32, u64, f64)> {
    wait4(pid, 0)
}

/// Whether a process exists (zombie or not).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub fn kill(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: plain kill.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Find an executable by name on PATH (or check a path given with a slash).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The last few non-empty lines of a file, for error reasons.
pub fn tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = v.len().saturating_sub(lines);
    v[start..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_collects_status_and_rss() {
        let d = tempfile::tempdir().unwrap();
        let io = Io {
            stdout: Some(d.path().join("out")),
            stderr: d.path().join("err"),
        };
        let argv: Vec<String> = ["/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = run(&argv, &io, &[], Duration::from_secs(10)).unwrap();
        assert!(!f.success());
        assert_eq!(libc::WEXITSTATUS(f.status), 3);
        assert!(f.maxrss_kb > 0);
        assert_eq!(
            std::fs::read_to_string(d.path().join("out")).unwrap(),
            "hi\n"
        );
        assert_eq!(tail(&d.path().join("err"), 2), "oops");
    }

    /// The child's own cgroup move is reported as `harness` and left out of `elapsed`: here the
    /// "cgroup.procs" is a fifo nobody opens for 300 ms (counted from before the spawn), so the
    /// move takes well over 100 ms.
    #[test]
    fn the_harness_cgroup_move_is_reported_and_not_timed() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("cgroup.procs");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::read(&fifo).unwrap()
            })
        };
        let io = Io {
            stdout: None,
            stderr: d.path().join("err"),
        };
        let argv = vec!["/bin/true".to_string()];
        let t = Instant::now();
        let f = run(&argv, &io, &[fifo], Duration::from_secs(10)).unwrap();
        let wall = t.elapsed();
        assert!(f.success());
        assert_eq!(reader.join().unwrap(), b"0");
        assert!(f.harness >= Duration::from_millis(100), "{:?}", f.harness);
        assert!(f.elapsed + f.harness <= wall, "{f:?} vs {wall:?}");
    }

    #[test]
    fn wait_pid_times_out_and_kills() {
        let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let e = wait_pid(pid, Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("killed"), "{e}");
        assert!(!alive(pid));
        // Already reaped by wait_pid.
        assert!(child.try_wait().is_err());
    }

    #[test]
    fn run_watch_timestamps_lines_and_samples_at_the_mark() {
        let d = tempfile::tempdir().unwrap();
        let io = Io {
            stdout: Some(d.path().join("out")),
            stderr: d.path().join("err"),
        };
        let argv: Vec<String> = [
            "/bin/sh",
            "-c",
            "echo one; sleep 0.2; printf 'MARK two\\r\\n'; sleep 0.2; echo three; exit 4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let w = run_watch(&argv, &io, &[], Duration::from_secs(10), "MARK", |pid| {
            // The child is alive when its marked line is read.
            (pid, alive(pid))
        })
        .unwrap();
        assert_eq!(libc::WEXITSTATUS(w.finished.status), 4);
        let texts: Vec<&str> = w.lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(texts, ["one", "MARK two", "three"]);
        assert!(w.lines[0].0 < w.lines[1].0 && w.lines[1].0 < w.lines[2].0);
        let (pid, was_alive) = w.marked.unwrap();
        assert!(pid > 0 && was_alive);
        assert_eq!(
            std::fs::read_to_string(d.path().join("out")).unwrap(),
            "one\nMARK two\r\nthree\n"
        );
        // No marked line: nothing sampled.
        let argv: Vec<String> = ["/bin/true"].iter().map(|s| s.to_string()).collect();
        let w = run_watch(&argv, &io, &[], Duration::from_secs(10), "MARK", |_| ()).unwrap();
        assert!(w.finished.success() && w.marked.is_none() && w.lines.is_empty());
    }

    #[test]
    fn which_finds_sh_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("hako-bench-no-such-runtime").is_none());
    }
}
