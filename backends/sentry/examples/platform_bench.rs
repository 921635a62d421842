//! Round-trip cost of one intercepted getpid under each interception mechanism the sentry could
//! use (its Platform candidates), against the native syscall:
//!   native | PTRACE_SYSEMU | seccomp RET_TRACE + ptrace (the sentry's platform) | seccomp USER_NOTIF
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
        let mut handled = 0;
        while handled < n {
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
        *out
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
}
