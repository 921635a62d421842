//! The machine's trap floor: what the bare interception mechanisms cost on this machine, with
//! nothing of the sentry in them. Each bounds what a platform built on it can reach here:
//!
//! - [`Row::Native`]: the call itself, not intercepted;
//! - [`Row::Sigsys`]: seccomp `SECCOMP_RET_TRAP` and a SIGSYS handler in the trapping thread that
//!   writes the answer into the signal frame and returns. The floor of any design that hands calls
//!   over from a stub in the workload (gVisor's systrap), before any hand-over;
//! - [`Row::Notify`] / [`Row::NotifySync`]: a seccomp user-notification round trip between two
//!   processes, a server blocked in `SECCOMP_IOCTL_NOTIF_RECV` answering at once, without and
//!   with `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (the floor of the hybrid and samecpu platforms);
//! - [`Row::Spin`]: a round trip through shared memory between two threads spinning on two CPUs
//!   (what a hand-over costs when neither side sleeps).
//!
//! Every row traps [`NR`] (`getppid`, as `hako bench`'s threaded loop does) and returns ns per
//! call. The filters go on forked children only, never on the caller; every child is killed and
//! reaped before a function returns, whatever happened, and a child that does not finish within
//! a deadline is an error. Used by `examples/platform_bench.rs` and by `hako bench`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::bpf;

/// The call every row makes.
pub const NR: libc::c_long = libc::SYS_getppid;
/// What an intercepted call returns: a workload that gets anything else was not intercepted.
const ANSWER: i64 = 0x6861_6b6f;

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Native,
    Sigsys,
    Notify,
    NotifySync,
    Spin,
}

impl Row {
    pub const ALL: [Row; 5] = [
        Row::Native,
        Row::Sigsys,
        Row::Notify,
        Row::NotifySync,
        Row::Spin,
    ];

    /// A stable name (JSON keys).
    pub fn key(self) -> &'static str {
        match self {
            Row::Native => "native",
            Row::Sigsys => "sigsys",
            Row::Notify => "notify",
            Row::NotifySync => "notify_sync",
            Row::Spin => "spin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Row::Native => "native getppid",
            Row::Sigsys => "in-thread RET_TRAP + SIGSYS handler",
            Row::Notify => "user-notif round trip, 2 processes",
            Row::NotifySync => "the same with SYNC_WAKE_UP",
            Row::Spin => "shared-memory spin round trip, 2 CPUs",
        }
    }

    /// Calls per round that keep three rounds of every row to a few hundred ms here (see
    /// docs/benchmarks.md, "The machine's trap floor").
    pub fn calls(self) -> u64 {
        match self {
            Row::Native => 50_000,
            Row::Sigsys => 10_000,
            Row::Notify => 1_000,
            Row::NotifySync => 5_000,
            Row::Spin => 50_000,
        }
    }

    /// One round of `calls` calls: ns per call.
    pub fn measure(self, calls: u64) -> Result<f64> {
        match self {
            Row::Native => native(calls),
            Row::Sigsys => sigsys(calls),
            Row::Notify => notify(calls, false, &[]),
            Row::NotifySync => notify(calls, true, &[]),
            Row::Spin => spin(calls),
        }
    }
}

/// The median of `rounds` results of `f` (the first error, if any).
pub fn median_of(rounds: usize, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut v = (0..rounds.max(1))
        .map(|_| f())
        .collect::<Result<Vec<f64>>>()?;
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// How long a round may take before it is an error (a loaded machine is slow, a stuck one never
/// ends): 10 s plus 100 µs per call.
fn deadline(calls: u64) -> Duration {
    Duration::from_secs(10) + Duration::from_micros(100u64.saturating_mul(calls))
}

/// Warm-up calls before the timed ones.
fn warmup(calls: u64) -> u64 {
    (calls / 10).min(1000)
}

fn per_call(took: Duration, calls: u64) -> Result<f64> {
    if calls == 0 {
        bail!("no calls to measure");
    }
    let ns = took.as_nanos() as f64 / calls as f64;
    if !(ns.is_finite() && ns > 0.0) {
        bail!("measured {ns} ns per call");
    }
    Ok(ns)
}

/// The call, not intercepted (in the caller).
pub fn native(calls: u64) -> Result<f64> {
    for _ in 0..warmup(calls) {
        // SAFETY: a syscall without arguments.
        unsafe { libc::syscall(NR) };
    }
    let t = Instant::now();
    for _ in 0..calls {
        // SAFETY: as above.
        unsafe { libc::syscall(NR) };
    }
    per_call(t.elapsed(), calls)
}

/// Where a child failed (the page's `stage`).
#[derive(Clone, Copy)]
#[repr(u32)]
enum Stage {
    None = 0,
    NoNewPrivs,
    Filter,
    Handler,
    Answer,
    SyncWake,
    Poll,
    Recv,
    Send,
}

impl Stage {
    fn what(v: u32) -> &'static str {
        match v {
            1 => "PR_SET_NO_NEW_PRIVS",
            2 => "installing the seccomp filter",
            3 => "installing the SIGSYS handler",
            4 => "the trapped call",
            5 => "setting SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP",
            6 => "poll on the listener",
            7 => "SECCOMP_IOCTL_NOTIF_RECV",
            8 => "SECCOMP_IOCTL_NOTIF_SEND",
            _ => "?",
        }
    }
}

/// The page the children and the caller share (`MAP_SHARED`, so it survives fork).
#[repr(C)]
struct Page {
    /// The workload's listener fd + 1, once installed.
    listener: AtomicI32,
    /// The server is ready: the workload may start.
    go: AtomicU32,
    /// ns per call the workload measured, as f64 bits.
    ns: AtomicU64,
    /// The calls the server answers: the check, the warm-up and the timed ones.
    total: AtomicU64,
    /// Where a child failed ([`Stage`]), its errno, and what a wrong answer was.
    stage: AtomicU32,
    errno: AtomicI32,
    got: AtomicI64,
}

struct Shared(std::ptr::NonNull<Page>);

const PAGE_LEN: std::num::NonZeroUsize =
    match std::num::NonZeroUsize::new(std::mem::size_of::<Page>()) {
        Some(n) => n,
        None => panic!("an empty Page"),
    };

impl Shared {
    fn new() -> Result<Shared> {
        use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
        // SAFETY: a fresh anonymous shared mapping (zeroed: every field starts at 0).
        let p = unsafe {
            mmap_anonymous(
                None,
                PAGE_LEN,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .context("mapping a shared page")?;
        Ok(Shared(p.cast()))
    }

    fn page(&self) -> &Page {
        // SAFETY: a live mapping of a Page, made of atomics only.
        unsafe { self.0.as_ref() }
    }

    /// What a child reported, as one line.
    fn failure(&self) -> Option<anyhow::Error> {
        let p = self.page();
        let stage = p.stage.load(Ordering::SeqCst);
        if stage == Stage::None as u32 {
            return None;
        }
        if stage == Stage::Answer as u32 {
            return Some(anyhow::anyhow!(
                "the trapped call returned {} instead of the injected answer: not intercepted",
                p.got.load(Ordering::SeqCst)
            ));
        }
        Some(anyhow::anyhow!(
            "{}: {}",
            Stage::what(stage),
            std::io::Error::from_raw_os_error(p.errno.load(Ordering::SeqCst))
        ))
    }

    fn ns(&self) -> Result<f64> {
        let ns = f64::from_bits(self.page().ns.load(Ordering::SeqCst));
        if !(ns.is_finite() && ns > 0.0) {
            bail!("the workload measured {ns} ns per call");
        }
        Ok(ns)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: our mapping; every child that used it is reaped by now (Kid's drop runs first:
        // kids are declared after the page).
        let _ = unsafe { nix::sys::mman::munmap(self.0.cast(), PAGE_LEN.get()) };
    }
}

/// In a child: record where it failed and leave.
fn fail(p: &Page, stage: Stage) -> ! {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    p.errno.store(errno, Ordering::SeqCst);
    p.stage.store(stage as u32, Ordering::SeqCst);
    // SAFETY: leave the forked child without running the parent's destructors.
    unsafe { libc::_exit(1) }
}

/// A forked child: killed and reaped on drop unless it was reaped already.
struct Kid {
    pid: i32,
    pidfd: OwnedFd,
    done: bool,
}

impl Kid {
    /// Fork; the child runs `f`, which must only make raw syscalls (no allocation, no lock: the
    /// caller may have other threads) and should leave by `_exit` itself.
    fn spawn(f: impl FnOnce()) -> Result<Kid> {
        // SAFETY: getpid has no side effects.
        let parent = unsafe { libc::getpid() };
        // SAFETY: fork; the child runs `f` alone (see above).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            // Die with the caller's thread, even when it is killed before it can reap us (and
            // if it is gone already, now).
            // SAFETY: prctl and getppid with integer arguments, before any filter.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if libc::getppid() != parent {
                    libc::_exit(126);
                }
            }
            f();
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(127) };
        }
        // SAFETY: pidfd_open on our own child.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: our child, not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
            }
            return Err(e).context("pidfd_open");
        }
        Ok(Kid {
            pid,
            // SAFETY: a fresh fd we own.
            pidfd: unsafe { OwnedFd::from_raw_fd(fd) },
            done: false,
        })
    }

    /// Reap it if it has exited; Err when it did not exit with status 0.
    fn try_reap(&mut self) -> Result<bool> {
        let mut st = 0;
        // SAFETY: our child.
        let r = unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG | libc::__WALL) };
        if r == 0 {
            return Ok(false);
        }
        self.done = true;
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // Another thread of the caller reaped it (a test harness sweeping zombies): its
            // status is lost, but the shared page still says whether it succeeded.
            if e.raw_os_error() == Some(libc::ECHILD) {
                return Ok(true);
            }
            return Err(e).context("waitpid");
        }
        if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
            Ok(true)
        } else if libc::WIFSIGNALED(st) {
            bail!(
                "a measuring child was killed by signal {}",
                libc::WTERMSIG(st)
            )
        } else {
            bail!(
                "a measuring child exited with status {}",
                libc::WEXITSTATUS(st)
            )
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if !self.done {
            // SAFETY: our child, not reaped yet.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL);
            }
        }
    }
}

/// Wait for every kid to exit with status 0, until `limit` has passed since `start`.
fn wait_all(kids: &mut [&mut Kid], start: Instant, limit: Duration) -> Result<()> {
    loop {
        for k in kids.iter_mut().filter(|k| !k.done) {
            k.try_reap()?;
        }
        let mut fds: Vec<libc::pollfd> = kids
            .iter()
            .filter(|k| !k.done)
            .map(|k| libc::pollfd {
                fd: k.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if fds.is_empty() {
            return Ok(());
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            bail!("the measurement did not finish in {} s", limit.as_secs());
        }
        // SAFETY: a valid pollfd array.
        let r = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                left.as_millis().min(i32::MAX as u128) as i32 + 1,
            )
        };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(std::io::Error::last_os_error()).context("poll on the children");
        }
    }
}

/// In the workload child: prove one call is intercepted, warm up, time `calls` calls, leave.
fn workload(p: &Page, warm: u64, calls: u64) -> ! {
    // SAFETY: a syscall without arguments (intercepted).
    let got = unsafe { libc::syscall(NR) };
    if got != ANSWER {
        p.got.store(got, Ordering::SeqCst);
        fail(p, Stage::Answer);
    }
    for _ in 0..warm {
        // SAFETY: as above.
        unsafe { libc::syscall(NR) };
    }
    let t = Instant::now();
    for _ in 0..calls {
        // SAFETY: as above.
        unsafe { libc::syscall(NR) };
    }
    let ns = t.elapsed().as_nanos() as f64 / calls.max(1) as f64;
    p.ns.store(ns.to_bits(), Ordering::SeqCst);
    // SAFETY: leave the forked child without running the parent's destructors.
    unsafe { libc::_exit(0) }
}

/// The trap filter: [`NR`] gets `action`, everything else runs.
fn filter(action: u32) -> Vec<libc::sock_filter> {
    bpf::build(&[(NR as u32, bpf::Rule::Action(action))], bpf::RET_ALLOW)
}

/// In a child: no new privileges (so an unprivileged caller may filter), then the filter.
fn install(p: &Page, prog: &[libc::sock_filter], listener: bool) -> RawFd {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        fail(p, Stage::NoNewPrivs);
    }
    match bpf::install(prog, listener) {
        Ok(fd) => fd,
        Err(_) => fail(p, Stage::Filter),
    }
}

extern "C" fn on_sigsys(_: libc::c_int, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel passes the interrupted context; the return value goes in its RAX.
    unsafe {
        (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RAX as usize] = ANSWER;
    }
}

/// `SECCOMP_RET_TRAP` and a SIGSYS handler that answers in the trapping thread (in a forked
/// child).
pub fn sigsys(calls: u64) -> Result<f64> {
    let prog = filter(libc::SECCOMP_RET_TRAP);
    let shared = Shared::new()?;
    let p = shared.page();
    let start = Instant::now();
    let mut w = Kid::spawn(|| {
        // SAFETY: sigaction and sigprocmask with local, initialised structures.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsys as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
                fail(p, Stage::Handler);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGSYS);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        install(p, &prog, false);
        workload(p, warmup(calls), calls)
    })?;
    if let Err(e) = wait_all(&mut [&mut w], start, deadline(calls)) {
        return Err(shared.failure().unwrap_or(e));
    }
    shared.ns()
}

/// A seccomp user-notification round trip: a workload child traps [`NR`], a server child blocked
/// in `SECCOMP_IOCTL_NOTIF_RECV` answers at once. `sync_wake` sets
/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` on the listener. When `also` is not empty the server polls
/// the listener and those fds (which should never become ready, like the sentry's other event
/// sources) before each RECV.
pub fn notify(calls: u64, sync_wake: bool, also: &[RawFd]) -> Result<f64> {
    let prog = filter(bpf::RET_USER_NOTIF);
    let shared = Shared::new()?;
    let p = shared.page();
    let warm = warmup(calls);
    p.total.store(1 + warm + calls, Ordering::SeqCst);
    let start = Instant::now();
    let limit = deadline(calls);
    let mut w = Kid::spawn(|| {
        let fd = install(p, &prog, true);
        p.listener.store(fd + 1, Ordering::SeqCst);
        // No syscall while waiting: the server must take the listener first.
        while p.go.load(Ordering::SeqCst) == 0 {
            std::hint::spin_loop();
        }
        workload(p, warm, calls)
    })?;
    // The workload's listener, taken through its pidfd.
    let fd = loop {
        let fd = p.listener.load(Ordering::SeqCst);
        if fd > 0 {
            break fd - 1;
        }
        if let Err(e) = w.try_reap().and_then(|gone| {
            if gone {
                bail!("the workload left before it made a listener")
            }
            Ok(())
        }) {
            return Err(shared.failure().unwrap_or(e));
        }
        if start.elapsed() > limit {
            bail!("the workload made no listener in {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    // SAFETY: pidfd_getfd on our own child's fd.
    let l = unsafe { libc::syscall(libc::SYS_pidfd_getfd, w.pidfd.as_raw_fd(), fd, 0) } as RawFd;
    if l < 0 {
        return Err(std::io::Error::last_os_error()).context("pidfd_getfd of the listener");
    }
    // SAFETY: a fresh fd we own.
    let listener = unsafe { OwnedFd::from_raw_fd(l) };
    let mut pfds: Vec<libc::pollfd> = std::iter::once(l)
        .chain(also.iter().copied())
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut s = Kid::spawn(|| {
        if sync_wake && super::samecpu::set_sync_wake(l).is_err() {
            fail(p, Stage::SyncWake);
        }
        p.go.store(1, Ordering::SeqCst);
        for _ in 0..p.total.load(Ordering::SeqCst) {
            if pfds.len() > 1 {
                // SAFETY: a valid pollfd array.
                let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
                if r < 1 || pfds[0].revents & libc::POLLIN == 0 {
                    fail(p, Stage::Poll);
                }
            }
            // SAFETY: the kernel wants a zeroed request; plain ioctls on our listener.
            unsafe {
                let mut req: libc::seccomp_notif = std::mem::zeroed();
                if libc::ioctl(l, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) != 0 {
                    fail(p, Stage::Recv);
                }
                let mut resp = libc::seccomp_notif_resp {
                    id: req.id,
                    val: ANSWER,
                    error: 0,
                    flags: 0,
                };
                if libc::ioctl(l, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) != 0 {
                    fail(p, Stage::Send);
                }
            }
        }
        // SAFETY: leave the forked child without running the parent's destructors.
        unsafe { libc::_exit(0) }
    })?;
    drop(listener);
    if let Err(e) = wait_all(&mut [&mut w, &mut s], start, limit) {
        return Err(shared.failure().unwrap_or(e));
    }
    shared.ns()
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .context("sched_getaffinity")?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

fn pin(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .with_context(|| format!("CPU {cpu} out of range"))?;
    // Pid 0: the calling thread only.
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning a thread to CPU {cpu}"))
}

/// A round trip through shared memory between two threads pinned to two CPUs, both spinning (in
/// two threads of the caller, made and joined here). Err on a machine with one usable CPU.
pub fn spin(calls: u64) -> Result<f64> {
    let cpus = allowed_cpus()?;
    if cpus.len() < 2 {
        bail!(
            "skipped: {} CPU usable here, the spin round trip needs two",
            cpus.len()
        );
    }
    spin_on(cpus[0], cpus[1], calls)
}

fn spin_on(a: usize, b: usize, calls: u64) -> Result<f64> {
    let req = AtomicU64::new(0);
    let resp = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let warm = warmup(calls);
    let total = warm + calls;
    let limit = deadline(calls);
    let start = Instant::now();
    let halt = |e: anyhow::Error| {
        stop.store(true, Ordering::SeqCst);
        e
    };
    std::thread::scope(|sc| {
        let server = sc.spawn(|| -> Result<()> {
            pin(b).map_err(halt)?;
            for i in 1..=total {
                while req.load(Ordering::Acquire) != i {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::hint::spin_loop();
                }
                resp.store(i, Ordering::Release);
            }
            Ok(())
        });
        let client = sc.spawn(|| -> Result<f64> {
            pin(a).map_err(halt)?;
            let mut t = Instant::now();
            for i in 1..=total {
                if i == warm + 1 {
                    t = Instant::now();
                }
                req.store(i, Ordering::Release);
                let mut spins = 0u32;
                while resp.load(Ordering::Acquire) != i {
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(4096) {
                        if stop.load(Ordering::Relaxed) {
                            bail!("the serving thread stopped");
                        }
                        if start.elapsed() > limit {
                            return Err(halt(anyhow::anyhow!(
                                "the spin round trips did not finish in {} s (CPUs busy?)",
                                limit.as_secs()
                            )));
                        }
                    }
                    std::hint::spin_loop();
                }
            }
            per_call(t.elapsed(), calls)
        });
        let c = client
            .join()
            .map_err(|_| anyhow::anyhow!("the spinning client thread panicked"))
            .and_then(|r| r);
        stop.store(true, Ordering::SeqCst);
        let s = server
            .join()
            .map_err(|_| anyhow::anyhow!("the spinning server thread panicked"))
            .and_then(|r| r);
        // The server's error (a failed pin) explains the client's.
        s?;
        c
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_and_errors_carry() {
        let mut v = [5.0, 1.0, 3.0].into_iter();
        assert_eq!(median_of(3, || Ok(v.next().unwrap())).unwrap(), 3.0);
        let mut n = 0;
        let e = median_of(3, || {
            n += 1;
            if n == 2 {
                bail!("round two failed")
            }
            Ok(1.0)
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "round two failed");
    }

    /// Whether the kernel has seccomp filters (a `Seccomp:` line in /proc/self/status).
    fn seccomp_here() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
            .unwrap_or(false)
    }

    /// Every row, with a few calls: a finite, positive ns per call, and no child left.
    #[test]
    fn every_row_measures_a_positive_cost() {
        // SAFETY: geteuid has no side effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: not root (pidfd_getfd of a child's listener)");
            return;
        }
        if !seccomp_here() {
            eprintln!("SKIPPED: this kernel has no seccomp filters");
            return;
        }
        for row in Row::ALL {
            if row == Row::NotifySync && !super::super::samecpu::supported() {
                eprintln!(
                    "SKIPPED {}: no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP",
                    row.key()
                );
                continue;
            }
            let calls = if row == Row::Notify { 50 } else { 300 };
            match median_of(3, || row.measure(calls)) {
                Ok(ns) => assert!(ns.is_finite() && ns > 0.0, "{}: {ns}", row.key()),
                Err(e) if row == Row::Spin && e.to_string().starts_with("skipped:") => {
                    eprintln!("SKIPPED {}: {e}", row.key())
                }
                Err(e) => panic!("{}: {e:#}", row.key()),
            }
        }
    }

    /// The poll-first variant answers the same calls.
    #[test]
    fn notify_with_polled_fds_measures_too() {
        // SAFETY: geteuid has no side effects.
        if unsafe { libc::geteuid() } != 0 || !seccomp_here() {
            eprintln!("SKIPPED: not root, or no seccomp filters");
            return;
        }
        let (r, w) = nix::unistd::pipe().unwrap();
        let ns = notify(100, false, &[r.as_raw_fd()]).unwrap();
        assert!(ns.is_finite() && ns > 0.0);
        drop(w);
    }
}
