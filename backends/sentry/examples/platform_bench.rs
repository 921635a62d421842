//! Round-trip cost of one intercepted call ([`floor::NR`], getppid) under each interception
//! mechanism the sentry could use (its Platform candidates), against the native syscall:
//!   the machine's trap floor (`hako_sentry::platform::floor`, shared with `hako bench`: native,
//!   in-thread RET_TRAP + SIGSYS, seccomp USER_NOTIF with and without SYNC_WAKE_UP, a spinning
//!   shared-memory round trip across two CPUs) | PTRACE_SYSEMU | seccomp RET_TRACE + ptrace |
//!   seccomp RET_TRAP + a SIGSYS handler handing the call over through shared memory (the
//!   systrap prototype: spin a bounded time, then sleep on a futex; 1, 2 and 4 threads)
//! `cargo run -p hako-sentry --release --example platform_bench [iterations]` (root).

use std::time::Instant;

use hako_sentry::platform::{bpf, floor};

/// The trap filter (NR -> `action`, everything else allowed) under no new privileges, in a
/// forked child.
fn install(action: u32) {
    let f = bpf::build(
        &[(floor::NR as u32, bpf::Rule::Action(action))],
        bpf::RET_ALLOW,
    );
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if let Err(e) = bpf::install(&f, false) {
        eprintln!("seccomp: {e}");
        // SAFETY: leave the forked child.
        unsafe { libc::_exit(1) };
    }
}

/// Shared page where the child writes its measured ns/call.
fn shared() -> *mut f64 {
    // SAFETY: anonymous shared mapping.
    unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        ) as *mut f64
    }
}

fn child_loop(n: u64, out: *mut f64) -> ! {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: a syscall without arguments.
        unsafe { libc::syscall(floor::NR) };
    }
    // SAFETY: write into the shared page, then leave.
    unsafe {
        *out = t.elapsed().as_nanos() as f64 / n as f64;
        libc::syscall(libc::SYS_exit_group, 0);
        libc::_exit(0)
    }
}

fn sysemu(n: u64) -> f64 {
    let out = shared();
    // SAFETY: fork + ptrace for the measurement child.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::raise(libc::SIGSTOP);
            child_loop(n, out);
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            0,
            libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACESYSGOOD,
        );
        libc::ptrace(31 /* PTRACE_SYSEMU */, pid, 0, 0);
        loop {
            libc::waitpid(pid, &mut st, 0);
            if !libc::WIFSTOPPED(st) {
                break;
            }
            let mut r: libc::user_regs_struct = std::mem::zeroed();
            libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut r);
            if r.orig_rax as i64 == floor::NR {
                r.rax = 1;
                libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &r);
                libc::ptrace(31, pid, 0, 0);
            } else {
                // Anything else (the final exit): the measurement is done.
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut st, 0);
                break;
            }
        }
        *out
    }
}

fn seccomp_trace(n: u64) -> f64 {
    let out = shared();
    // SAFETY: fork + ptrace + seccomp for the measurement child.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::raise(libc::SIGSTOP);
            install(bpf::RET_TRACE);
            child_loop(n, out);
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            0,
            libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACESECCOMP,
        );
        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
        loop {
            libc::waitpid(pid, &mut st, 0);
            if !libc::WIFSTOPPED(st) {
                break;
            }
            if (st >> 16) == libc::PTRACE_EVENT_SECCOMP {
                let mut r: libc::user_regs_struct = std::mem::zeroed();
                libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut r);
                r.orig_rax = u64::MAX;
                r.rax = 1;
                libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &r);
                libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
            } else {
                libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
            }
        }
        *out
    }
}

/// Three fds that never become readable: a signalfd (for SIGUSR2, blocked), a listening unix
/// socket, the read end of a pipe whose write end stays open (leaked on purpose: it must outlive
/// the measurement).
fn idle_fds() -> [i32; 3] {
    // SAFETY: plain fd-making syscalls into locals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let sfd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        let sock = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as u16;
        libc::bind(
            sock,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sa_family_t>() as u32, // autobind
        );
        libc::listen(sock, 4);
        let mut p = [0i32; 2];
        libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC);
        [sfd, sock, p[0]]
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    println!("getppid round trip, {n} calls, ns/call (median of 5)");
    let row = |label: &str, r: anyhow::Result<f64>| match r {
        Ok(ns) => println!("{label:<40} {ns:>8.0}"),
        Err(e) => println!("{label:<40} {:>8}   ({e:#})", "-"),
    };
    for r in floor::Row::ALL {
        row(r.label(), floor::median_of(5, || r.measure(n)));
    }
    // The sync round trip with the server polling the listener and three idle fds (a signalfd,
    // a listening socket, a pipe: like the sentry's SIGCHLD fd and `hako exec` hub) before each
    // RECV, as the sentry's event loop did before it blocked in RECV (issue 17).
    let idle = idle_fds();
    row(
        "  the same, poll first (4 fds)",
        floor::median_of(5, || floor::notify(n, true, &idle)),
    );
    let med = |f: fn(u64) -> f64| {
        let mut v: Vec<f64> = (0..5).map(|_| f(n)).collect();
        v.sort_by(f64::total_cmp);
        v[2]
    };
    println!("{:<40} {:>8.0}", "PTRACE_SYSEMU", med(sysemu));
    println!(
        "{:<40} {:>8.0}",
        "seccomp RET_TRACE + ptrace",
        med(seccomp_trace)
    );
    if std::env::var_os("PLATFORM_BENCH_NO_SYSTRAP").is_some() {
        return;
    }
    use systrap::Mode::*;
    for (spin_us, mode) in [
        (0u64, Spin),
        (5, Spin),
        (20, Spin),
        (5, Yield),
        (20, Yield),
        (5, Adaptive),
        (20, Adaptive),
    ] {
        for threads in [1usize, 2, 4] {
            let mut v: Vec<(f64, f64)> = (0..5)
                .map(|_| systrap::run(n / threads as u64, threads, spin_us, mode))
                .collect();
            v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            println!(
                "RET_TRAP + shm, {:<8} {spin_us:>2} µs, {threads} thr {:>8.0}   (server CPU {:.0}% of wall)",
                format!("{mode:?}"),
                v[2].0,
                v[2].1 * 100.0
            );
        }
    }
}

/// The systrap prototype. The "workload" (a forked child, its threads) traps getppid with
/// `SECCOMP_RET_TRAP`; its SIGSYS handler (the stub) writes the call into its thread's slot of a
/// shared page, rings the server if it sleeps, spins up to the budget for the answer, then sleeps
/// on the slot's futex; the "sentry" (the parent) spins over the slots up to the budget after its
/// last request, then sleeps on a doorbell futex. Nothing of the real platform (stub injection at
/// exec, slot validation, emulated sigaction for SIGSYS): this measures the handover alone.
mod systrap {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    const IDLE: u32 = 0;
    const REQ: u32 = 1;
    const DONE: u32 = 2;
    const SLOTS: usize = 8;

    #[repr(C, align(64))]
    struct Slot {
        state: AtomicU32,
        client_sleeps: AtomicU32,
        /// The CPU the stub trapped on.
        cpu: AtomicU32,
        nr: AtomicU64,
        ret: AtomicU64,
    }

    #[repr(C)]
    struct Page {
        doorbell: AtomicU32,
        server_sleeps: AtomicU32,
        spin_ns: AtomicU64,
        mode: AtomicU32,
        /// Stubs spinning right now (the adaptive mode).
        spinners: AtomicU32,
        /// Online CPUs, read once before the run (sysconf reads a file: no syscall in the stub).
        cpus: AtomicU32,
        /// The CPU the server last ran on.
        server_cpu: AtomicU32,
        /// ns/call each thread measured.
        out: [AtomicU64; SLOTS],
        slots: [Slot; SLOTS],
    }

    static mut PAGE: *const Page = std::ptr::null();
    thread_local!(static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

    fn futex(w: &AtomicU32, op: i32, val: u32) {
        // SAFETY: a futex word in our shared mapping.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                w.as_ptr(),
                op,
                val,
                std::ptr::null::<libc::timespec>(),
            )
        };
    }

    /// The stub: runs on SIGSYS in the trapping thread.
    extern "C" fn on_sigsys(_: i32, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
        // SAFETY: the kernel hands a valid ucontext; PAGE is set before the filter.
        unsafe {
            let g = &mut (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs;
            let p = &*PAGE;
            let s = &p.slots[SLOT.with(|c| c.get())];
            // seccomp rolled RAX back to the syscall number.
            s.nr.store(g[libc::REG_RAX as usize] as u64, SeqCst);
            let me = libc::sched_getcpu() as u32;
            s.cpu.store(me, SeqCst);
            s.state.store(REQ, SeqCst);
            if p.server_sleeps.load(SeqCst) != 0 {
                p.doorbell.fetch_add(1, SeqCst);
                futex(&p.doorbell, libc::FUTEX_WAKE, 1);
            }
            let mode = Mode::from(p.mode.load(SeqCst));
            let mut budget = Duration::from_nanos(p.spin_ns.load(SeqCst));
            // Adaptive: spin only while the server is awake on another CPU and a CPU is left
            // for it (the server and the spinning stubs together no more than the CPUs).
            let mut counted = false;
            if mode == Mode::Adaptive {
                let cpus = p.cpus.load(SeqCst);
                if p.server_sleeps.load(SeqCst) != 0 || p.server_cpu.load(SeqCst) == me {
                    budget = Duration::ZERO;
                } else {
                    counted = true;
                    if p.spinners.fetch_add(1, SeqCst) + 2 > cpus {
                        budget = Duration::ZERO;
                    }
                }
            }
            let t = Instant::now();
            while s.state.load(SeqCst) != DONE {
                if t.elapsed() < budget {
                    relax(mode == Mode::Yield);
                    continue;
                }
                if counted {
                    p.spinners.fetch_sub(1, SeqCst);
                    counted = false;
                }
                s.client_sleeps.store(1, SeqCst);
                if s.state.load(SeqCst) != DONE {
                    futex(&s.state, libc::FUTEX_WAIT, REQ);
                }
                s.client_sleeps.store(0, SeqCst);
            }
            if counted {
                p.spinners.fetch_sub(1, SeqCst);
            }
            g[libc::REG_RAX as usize] = s.ret.load(SeqCst) as i64;
            s.state.store(IDLE, SeqCst);
        }
    }

    /// (median ns per call the threads saw, server CPU time / wall time).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        /// Spin with the pause instruction up to the budget.
        Spin,
        /// Spin with sched_yield up to the budget.
        Yield,
        /// Spin (pause) only while the other side is awake on another CPU and a CPU is free
        /// for it.
        Adaptive,
    }

    impl From<u32> for Mode {
        fn from(v: u32) -> Mode {
            match v {
                1 => Mode::Yield,
                2 => Mode::Adaptive,
                _ => Mode::Spin,
            }
        }
    }

    pub fn run(calls: u64, threads: usize, spin_us: u64, mode: Mode) -> (f64, f64) {
        // SAFETY: an anonymous shared mapping, zeroed, shared with the child across fork.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Page>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *const Page
        };
        let p = unsafe { &*page };
        p.spin_ns.store(spin_us * 1000, SeqCst);
        p.mode.store(mode as u32, SeqCst);
        // SAFETY: sysconf has no side effects.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
        p.cpus.store(cpus as u32, SeqCst);
        // SAFETY: fork; the child only installs its handler and filter and runs the loops.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                PAGE = page;
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigsys as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
            }
            super::install(libc::SECCOMP_RET_TRAP);
            let hs: Vec<_> = (0..threads)
                .map(|i| {
                    std::thread::spawn(move || {
                        SLOT.with(|c| c.set(i));
                        let t = Instant::now();
                        for _ in 0..calls {
                            // SAFETY: a syscall without arguments (trapped).
                            unsafe { libc::syscall(super::floor::NR) };
                        }
                        let ns = t.elapsed().as_nanos() as u64 / calls;
                        // SAFETY: PAGE is set above.
                        unsafe { (*PAGE).out[i].store(ns, SeqCst) };
                    })
                })
                .collect();
            for h in hs {
                let _ = h.join();
            }
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let budget = Duration::from_nanos(spin_us * 1000);
        let mut served = 0u64;
        let mut last = Instant::now();
        // The CPU of the last stub served (adaptive: the server does not spin on that CPU).
        let mut last_cpu = u32::MAX;
        while served < calls * threads as u64 {
            let mut any = false;
            // SAFETY: no arguments (vDSO or rseq, no trap).
            let here = unsafe { libc::sched_getcpu() } as u32;
            p.server_cpu.store(here, SeqCst);
            for s in &p.slots[..threads] {
                if s.state.load(SeqCst) == REQ {
                    last_cpu = s.cpu.load(SeqCst);
                    let nr = s.nr.load(SeqCst);
                    s.ret.store(
                        if nr == super::floor::NR as u64 {
                            1
                        } else {
                            u64::MAX - 37
                        },
                        SeqCst,
                    );
                    s.state.store(DONE, SeqCst);
                    if s.client_sleeps.load(SeqCst) != 0 {
                        futex(&s.state, libc::FUTEX_WAKE, 1);
                    }
                    served += 1;
                    any = true;
                }
            }
            if any {
                last = Instant::now();
                continue;
            }
            let spin = mode != Mode::Adaptive || last_cpu != here;
            if spin && last.elapsed() < budget {
                relax(mode == Mode::Yield);
                continue;
            }
            let bell = p.doorbell.load(SeqCst);
            p.server_sleeps.store(1, SeqCst);
            if !p.slots[..threads]
                .iter()
                .any(|s| s.state.load(SeqCst) == REQ)
            {
                futex(&p.doorbell, libc::FUTEX_WAIT, bell);
            }
            p.server_sleeps.store(0, SeqCst);
            last = Instant::now();
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = thread_cpu() - cpu0;
        let mut st = 0;
        // SAFETY: our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        let mut v: Vec<u64> = (0..threads).map(|i| p.out[i].load(SeqCst)).collect();
        v.sort();
        // SAFETY: our mapping, no longer used.
        unsafe { libc::munmap(page as *mut _, std::mem::size_of::<Page>()) };
        (v[threads / 2] as f64, cpu / wall)
    }

    fn relax(yield_: bool) {
        if yield_ {
            // SAFETY: no arguments.
            unsafe { libc::sched_yield() };
        } else {
            std::hint::spin_loop();
        }
    }

    fn thread_cpu() -> f64 {
        let mut t: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: a valid timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }
}
