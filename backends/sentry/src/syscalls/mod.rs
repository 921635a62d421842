//! The sentry's system call table and dispatcher.
//!
//! [`disposition`] is the single source of truth for every x86_64 syscall: implemented by the
//! sentry, passed through to the host (the trap filter's allowlist is generated from it), or
//! refused with an errno. `docs/backends/sentry.md` carries the table it generates
//! (`cargo run -p hako-sentry --example syscall_table`), and a test keeps it up to date.

pub mod caps;
pub mod fs;
pub mod mm;
pub mod process;

use crate::kernel::{Fixup, Kernel};
use crate::platform::{self, Platform, Regs};
use std::os::fd::RawFd;
use std::time::Instant;
use syscalls::Sysno;

/// How a trapped syscall ends.
pub enum Outcome {
    /// Return this value without running the host syscall.
    Ret(i64),
    /// Run the (possibly rewritten) syscall on the host.
    Native,
    /// Run it on the host and fix its result at syscall exit.
    NativeThen(Fixup),
    /// Block: retry when one of these host fds is ready or at the deadline.
    Park(Vec<(RawFd, i16)>, Option<Instant>),
}

pub fn err(e: i32) -> Outcome {
    Outcome::Ret(-(e as i64))
}

/// An argument condition under which a syscall may run natively: `(arg & mask) == value`.
#[derive(Debug, Clone, Copy)]
pub struct Cond {
    pub arg: u8,
    pub mask: u64,
    pub value: u64,
}

#[derive(Debug, Clone, Copy)]
pub enum Disp {
    /// Always runs on the host, never stops in the sentry.
    Native(&'static str),
    /// Runs on the host when any of the conditions holds; otherwise trapped and emulated.
    NativeWhen(&'static [Cond], &'static str),
    /// Implemented by the sentry.
    Emulated(&'static str),
    /// Trapped and refused with this errno.
    Refused(i32, &'static str),
}

const MAP_ANON: &[Cond] = &[Cond {
    arg: 3,
    mask: libc::MAP_ANONYMOUS as u64,
    value: libc::MAP_ANONYMOUS as u64,
}];
const PID_ZERO: &[Cond] = &[Cond {
    arg: 0,
    mask: u64::MAX,
    value: 0,
}];
/// futex commands that never name a thread: the priority-inheritance ones (LOCK_PI 6,
/// UNLOCK_PI 7, TRYLOCK_PI 8, WAIT_REQUEUE_PI 11, CMP_REQUEUE_PI 12, LOCK_PI2 13) read an
/// owner tid from the futex word, which the host kernel would resolve among *host* tids (an
/// oracle for every host pid), so they are trapped and refused.
const FUTEX_NO_TID: &[Cond] = &{
    const fn op(cmd: u64) -> Cond {
        Cond {
            arg: 1,
            mask: 0x7f, // the command, without FUTEX_PRIVATE_FLAG / FUTEX_CLOCK_REALTIME
            value: cmd,
        }
    }
    // WAIT, WAKE, REQUEUE, CMP_REQUEUE, WAKE_OP, WAIT_BITSET, WAKE_BITSET
    [op(0), op(1), op(3), op(4), op(5), op(9), op(10)]
};
/// A clock id that names no pid: a negative id is a CPU-time clock of the pid encoded in it
/// (`(~pid << 3) | type`) or a clock fd, which the host would resolve among host pids and fds.
const CLOCK_NO_PID: &[Cond] = &[Cond {
    arg: 0,
    mask: 0x8000_0000,
    value: 0,
}];
const PRCTL_SAFE: &[Cond] = &[
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_SET_NAME as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_GET_NAME as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_SET_PDEATHSIG as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_GET_PDEATHSIG as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_GET_DUMPABLE as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_SET_DUMPABLE as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_SET_NO_NEW_PRIVS as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_GET_NO_NEW_PRIVS as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_SET_VMA as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_GET_THP_DISABLE as u64,
    },
    Cond {
        arg: 0,
        mask: u64::MAX,
        value: libc::PR_SET_THP_DISABLE as u64,
    },
];

const MM: &str = "memory management of the caller's own address space";
const SIG: &str = "the caller's own signal state";
const TIME: &str = "reads clocks or sleeps; no shared state";
const SELF: &str = "acts on the calling process or thread only";

/// The disposition of every syscall number.
pub fn disposition(s: Sysno) -> Disp {
    use Disp::*;
    use Sysno::*;
    match s {
        // --- native: the trap filter's allowlist ---
        brk | munmap | mremap | mprotect | madvise | msync | mincore | mlock | munlock | mlock2 | mlockall | munlockall
        | pkey_alloc | pkey_free | pkey_mprotect | membarrier => Native(MM),
        set_robust_list | set_tid_address | arch_prctl | rseq => Native("thread-local state on the caller's own memory"),
        futex => NativeWhen(FUTEX_NO_TID, "wait/wake/requeue run natively; the PI operations (the futex word names an owner tid) are refused with ENOSYS"),
        rt_sigaction | rt_sigprocmask | rt_sigreturn | rt_sigpending | rt_sigsuspend | rt_sigtimedwait | sigaltstack
        | restart_syscall | pause => Native(SIG),
        nanosleep | gettimeofday | time | alarm | setitimer | getitimer | timer_settime | timer_gettime | timer_getoverrun
        | timer_delete => Native(TIME),
        clock_gettime | clock_getres | clock_nanosleep | timer_create => NativeWhen(CLOCK_NO_PID, "clocks that name no pid run natively; a CPU-time clock of a pid is translated to the sandbox's own tasks (EINVAL for any other pid), clock fds EINVAL"),
        exit | exit_group => Native("ends the caller; the sentry sees the exit"),
        getrandom => Native("entropy only"),
        sched_yield | getcpu | times | getrusage | getrlimit | setrlimit => Native(SELF),
        mmap => NativeWhen(MAP_ANON, "anonymous mappings run natively; file mappings are emulated (anonymous map + copy)"),
        prctl => NativeWhen(PRCTL_SAFE, "only per-process options that cannot widen privileges run natively; others EINVAL"),
        prlimit64 | sched_getaffinity | sched_setaffinity | sched_getparam | sched_getscheduler | sched_setscheduler
        | sched_setparam | get_robust_list => {
            NativeWhen(PID_ZERO, "pid 0 (the caller) runs natively; a virtual pid of the caller is rewritten to 0; others EPERM")
        }

        // --- implemented by the sentry: files ---
        read | write | readv | writev | pread64 | pwrite64 | preadv | pwritev | preadv2 | pwritev2 | open | openat
        | openat2 | creat | close | close_range | lseek | fstat | stat | lstat | newfstatat | statx | getdents64 | access
        | faccessat | faccessat2 | readlink | readlinkat | getcwd | chdir | fchdir | mkdir | mkdirat | rmdir | unlink
        | unlinkat | rename | renameat | renameat2 | link | linkat | symlink | symlinkat | chmod | fchmod | fchmodat
        | chown | fchown | lchown | fchownat | truncate | ftruncate | utimensat | utimes | utime | futimesat | fsync
        | fdatasync | syncfs | sync | fadvise64 | fallocate | flock | dup | dup2 | dup3 | fcntl | ioctl | pipe | pipe2
        | poll | ppoll | select | pselect6 | statfs | fstatfs | umask | sendfile | copy_file_range | socketpair | socket
        | eventfd | eventfd2 | mknod | mknodat | epoll_create | epoll_create1 | epoll_ctl | epoll_wait | epoll_pwait => Emulated("vfs"),
        // --- implemented by the sentry: processes, identity, system ---
        getpid | gettid | getppid | getuid | geteuid | getgid | getegid | getresuid | getresgid | getgroups | setuid
        | setgid | setreuid | setregid | setresuid | setresgid | setgroups | setfsuid | setfsgid | capget | capset
        | getpgrp | getpgid | setpgid | getsid | setsid | kill | tkill | tgkill | rt_sigqueueinfo | rt_tgsigqueueinfo
        | wait4 | waitid | clone | fork | vfork
        | execve | uname | sethostname | setdomainname | sysinfo | getpriority | setpriority | syslog => Emulated("process"),
        clone3 => Refused(libc::ENOSYS, "callers fall back to clone(2), which is implemented"),
        execveat => Refused(libc::ENOSYS, "not implemented (execve is)"),

        // --- refused: privileged or host-global ---
        mount | umount2 | pivot_root | chroot | swapon | swapoff | reboot | kexec_load | kexec_file_load | init_module
        | finit_module | delete_module | acct | settimeofday | clock_settime | clock_adjtime | adjtimex | iopl | ioperm
        | quotactl | quotactl_fd | ptrace | process_vm_readv | process_vm_writev | kcmp | unshare | setns | bpf
        | perf_event_open | fanotify_init | open_by_handle_at | name_to_handle_at | lookup_dcookie | userfaultfd | vhangup
        | fsopen | fsmount | fsconfig | fspick | move_mount | open_tree | mount_setattr | pidfd_open | pidfd_getfd
        | pidfd_send_signal | process_madvise | set_mempolicy | mbind | migrate_pages | move_pages | keyctl | add_key
        | request_key | personality | modify_ldt | nfsservctl | uselib | ustat | sysfs | _sysctl | create_module
        | get_kernel_syms | query_module | ioprio_set | ioprio_get => Refused(libc::EPERM, "privileged or host-global: never reaches the host"),
        _ => Refused(libc::ENOSYS, "not implemented"),
    }
}

/// Syscalls whose implementation rewrites registers or needs the syscall-exit stop: always
/// `SECCOMP_RET_TRACE`, also on the hybrid platform.
pub const NEEDS_REGS: &[Sysno] = {
    use Sysno::*;
    &[
        execve,
        clone,
        fork,
        vfork,
        wait4,
        waitid,
        getpgrp,
        getpgid,
        setpgid,
        getsid,
        setsid,
        mmap,
        prlimit64,
        sched_getaffinity,
        sched_setaffinity,
        sched_getparam,
        sched_getscheduler,
        sched_setscheduler,
        sched_setparam,
        get_robust_list,
        rt_sigqueueinfo,
        rt_tgsigqueueinfo,
        clock_gettime,
        clock_getres,
        clock_nanosleep,
        timer_create,
    ]
};

/// Build the tracee's trap filter from [`disposition`]: allowlisted syscalls run natively,
/// everything else stops in the sentry — through the user-notification fd on the hybrid
/// platform (`SECCOMP_RET_USER_NOTIF`), or as a ptrace stop (`SECCOMP_RET_TRACE`).
pub fn trap_filter(hybrid: bool) -> Vec<libc::sock_filter> {
    use crate::platform::bpf::{build, Rule, RET_ALLOW, RET_TRACE, RET_USER_NOTIF};
    let default = if hybrid { RET_USER_NOTIF } else { RET_TRACE };
    let trap = |s: Sysno| {
        if hybrid && !NEEDS_REGS.contains(&s) {
            RET_USER_NOTIF
        } else {
            RET_TRACE
        }
    };
    let mut rules = Vec::new();
    for s in Sysno::iter() {
        let nr = s.id() as u32;
        match disposition(s) {
            Disp::Native(_) => rules.push((nr, Rule::Action(RET_ALLOW))),
            Disp::NativeWhen(conds, _) => rules.push((
                nr,
                Rule::Cond {
                    conds: conds.iter().map(|c| (c.arg, c.mask, c.value)).collect(),
                    action_if: RET_ALLOW,
                    otherwise: trap(s),
                },
            )),
            _ if trap(s) != default => rules.push((nr, Rule::Action(trap(s)))),
            _ => {}
        }
    }
    build(&rules, default)
}

/// The per-call context handed to implementations.
pub struct Call<'a> {
    pub tid: i32,
    pub regs: &'a mut Regs,
    pub a: [u64; 6],
    pub deadline: Option<Instant>,
}

/// Dispatch one trapped syscall.
pub fn handle<P: Platform>(
    k: &mut Kernel<P>,
    tid: i32,
    nr: i64,
    regs: &mut Regs,
    deadline: Option<Instant>,
) -> Outcome {
    let a = platform::args(regs);
    let mut c = Call {
        tid,
        regs,
        a,
        deadline,
    };
    let Some(s) = Sysno::new(nr as usize) else {
        return err(libc::ENOSYS);
    };
    let out = match disposition(s) {
        Disp::Refused(e, _) => {
            *k.stats.refused.entry(s.name().to_string()).or_default() += 1;
            return err(e);
        }
        Disp::Native(_) => Outcome::Native, // only reachable if another filter traps it
        Disp::NativeWhen(..) | Disp::Emulated(_) => {
            let handlers = [fs::handle, caps::handle, process::handle, mm::handle];
            match handlers.iter().find_map(|h| h(k, s, &mut c)) {
                Some(o) => o,
                None => err(libc::ENOSYS),
            }
        }
    };
    *k.stats.emulated.entry(s.name().to_string()).or_default() += 1;
    out
}

/// One row of the compatibility table.
pub fn table() -> Vec<(usize, &'static str, Disp)> {
    Sysno::iter()
        .map(|s| (s.id() as usize, s.name(), disposition(s)))
        .collect()
}

/// The compatibility table as markdown (what docs/backends/sentry.md carries).
pub fn table_markdown() -> String {
    let rows = table();
    let count = |f: fn(&Disp) -> bool| rows.iter().filter(|r| f(&r.2)).count();
    let mut s = String::new();
    s += &format!(
        "{} x86_64 syscalls: {} implemented by the sentry, {} native (always), {} native under a condition (emulated otherwise), {} refused.\n\n",
        rows.len(),
        count(|d| matches!(d, Disp::Emulated(_))),
        count(|d| matches!(d, Disp::Native(_))),
        count(|d| matches!(d, Disp::NativeWhen(..))),
        count(|d| matches!(d, Disp::Refused(..))),
    );
    s += "| nr | syscall | disposition | notes |\n|---:|---|---|---|\n";
    for (nr, name, d) in rows {
        let (what, why) = match d {
            Disp::Native(w) => ("native".to_string(), w.to_string()),
            Disp::NativeWhen(_, w) => ("native if / emulated".to_string(), w.to_string()),
            Disp::Emulated(w) => ("implemented".to_string(), format!("sentry ({w})")),
            Disp::Refused(e, w) => (format!("refused: {}", errno_name(e)), w.to_string()),
        };
        s += &format!("| {nr} | {name} | {what} | {why} |\n");
    }
    s
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ENOSYS => "ENOSYS",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        _ => "errno",
    }
}
