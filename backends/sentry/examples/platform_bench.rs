//! Round-trip cost of one intercepted getpid under each interception mechanism the sentry could
//! use (its Platform candidates), against the native syscall:
//!   native | PTRACE_SYSEMU | seccomp RET_TRACE + ptrace (the sentry's platform) | seccomp USER_NOTIF
//!   | seccomp RET_TRAP + a SIGSYS handler handing the call over through shared memory (the
//!   systrap prototype: spin a bounded time, then sleep on a futex; 1, 2 and 4 threads)
//! `cargo run -p hako-sentry --release --example platform_bench [iterations]` (root).

use std::time::Instant;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

/// BPF: getpid -> `action`, everything else allowed.
fn filter(action: u32) -> Vec<libc::sock_filter> {
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: 0x15,
        jt,
        jf,
        k,
    };
    vec![
        stmt(0x20, 0), // ld [nr]
        jeq(libc::SYS_getpid as u32, 0, 1),
        stmt(0x06, action),
        stmt(0x06, SECCOMP_RET_ALLOW),
    ]
}

fn install(action: u32, flags: libc::c_ulong) -> i32 {
    let f = filter(action);
    let prog = libc::sock_fprog {
        len: f.len() as u16,
        filter: f.as_ptr() as *mut _,
    };
    // SAFETY: seccomp(2) with a valid program.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const _,
        ) as i32
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
        // SAFETY: raw getpid.
        unsafe { libc::syscall(libc::SYS_getpid) };
    }
    // SAFETY: write into the shared page, then leave.
    unsafe {
        *out = t.elapsed().as_nanos() as f64 / n as f64;
        libc::syscall(libc::SYS_exit_group, 0);
        libc::_exit(0)
    }
}

fn native(n: u64) -> f64 {
    let out = shared();
    // SAFETY: fork for the measurement child.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child_loop(n, out);
    }
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    unsafe { *out }
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
            if r.orig_rax as i64 == libc::SYS_getpid {
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
            install(SECCOMP_RET_TRACE, 0);
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

#[repr(C)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: [u64; 8], // struct seccomp_data (nr, arch, ip, args[6]) = 64 bytes
}
#[repr(C)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}
const NOTIF_RECV: libc::c_ulong = 0xc0502100;
const NOTIF_SEND: libc::c_ulong = 0xc0182101;

fn user_notif(n: u64) -> f64 {
    notif_round_trips(n, false, false)
}

/// The floor of the `samecpu` platform: the same round trip with
/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` set on the listener (each side woken on the other's CPU).
fn user_notif_sync(n: u64) -> f64 {
    notif_round_trips(n, true, false)
}

/// The same, with the tracer polling the listener and three idle fds (a signalfd, a listening
/// socket, a pipe: like the sentry's SIGCHLD fd and `hako exec` hub) before each RECV, as the
/// sentry's event loop did before it blocked in RECV (issue 17).
fn user_notif_sync_poll(n: u64) -> f64 {
    notif_round_trips(n, true, true)
}

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS` and its one flag (not in the libc crate).
const NOTIF_SET_FLAGS: libc::c_ulong = 0x4008_2104;
const USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

fn notif_round_trips(n: u64, sync_wake: bool, poll_first: bool) -> f64 {
    let out = shared();
    // SAFETY: fork + seccomp listener handed over through pidfd_getfd.
    unsafe {
        let fdslot = shared() as *mut i32;
        let pid = libc::fork();
        if pid == 0 {
            let fd = install(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
            std::ptr::write_volatile(fdslot, fd + 1);
            // Wait for the supervisor to grab the listener (busy wait: no syscalls).
            while std::ptr::read_volatile(fdslot) != 0 {}
            child_loop(n, out);
        }
        while std::ptr::read_volatile(fdslot) == 0 {}
        let cfd = std::ptr::read_volatile(fdslot) - 1;
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        let lfd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, cfd, 0) as i32;
        std::ptr::write_volatile(fdslot, 0);
        if lfd < 0 {
            eprintln!("pidfd_getfd: {}", std::io::Error::last_os_error());
            libc::kill(pid, libc::SIGKILL);
            return f64::NAN;
        }
        if sync_wake && libc::ioctl(lfd, NOTIF_SET_FLAGS, USER_NOTIF_FD_SYNC_WAKE_UP) != 0 {
            eprintln!("SYNC_WAKE_UP: {}", std::io::Error::last_os_error());
        }
        let idle = idle_fds();
        let mut pfds: Vec<libc::pollfd> = std::iter::once(lfd)
            .chain(idle.iter().copied())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut handled = 0;
        while handled < n {
            if poll_first
                && (libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) < 1
                    || pfds[0].revents & libc::POLLIN == 0)
            {
                break;
            }
            let mut req: Notif = std::mem::zeroed();
            if libc::ioctl(lfd, NOTIF_RECV, &mut req) != 0 {
                break;
            }
            let mut resp = Resp {
                id: req.id,
                val: 1,
                error: 0,
                flags: 0,
            };
            libc::ioctl(lfd, NOTIF_SEND, &mut resp);
            handled += 1;
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        for fd in idle.into_iter().chain([lfd, pidfd]) {
            libc::close(fd);
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
    println!("getpid round trip, {n} calls, ns/call (median of 5)");
    let med = |f: fn(u64) -> f64| {
        let mut v: Vec<f64> = (0..5).map(|_| f(n)).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[2]
    };
    println!("native                          {:>8.0}", med(native));
    println!("PTRACE_SYSEMU                   {:>8.0}", med(sysemu));
    println!(
        "seccomp RET_TRACE + ptrace      {:>8.0}",
        med(seccomp_trace)
    );
    println!("seccomp RET_USER_NOTIF          {:>8.0}", med(user_notif));
    println!(
        "seccomp RET_USER_NOTIF, sync    {:>8.0}",
        med(user_notif_sync)
    );
    println!(
        "  the same, poll first (4 fds)  {:>8.0}",
        med(user_notif_sync_poll)
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

/// The systrap prototype. The "workload" (a forked child, its threads) traps getpid with
/// `SECCOMP_RET_TRAP`; its SIGSYS handler (the stub) writes the call into its thread's slot of a
/// shared page, rings the server if it sleeps, spins up to the budget for the answer, then sleeps
/// on the slot's futex; the "sentry" (the parent) spins over the slots up to the budget after its
/// last request, then sleeps on a doorbell futex. Nothing of the real platform (stub injection at
/// exec, slot validation, emulated sigaction for SIGSYS): this measures the handover alone.
mod systrap {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
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
            super::install(SECCOMP_RET_TRAP, 0);
            let hs: Vec<_> = (0..threads)
                .map(|i| {
                    std::thread::spawn(move || {
                        SLOT.with(|c| c.set(i));
                        let t = Instant::now();
                        for _ in 0..calls {
                            // SAFETY: raw getpid (trapped).
                            unsafe { libc::syscall(libc::SYS_getpid) };
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
                        if nr == libc::SYS_getpid as u64 {
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
