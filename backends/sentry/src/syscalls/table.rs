//! The syscall table: [`disposition`] is the single source of truth for every x86_64 syscall.
//! Each is passed through to the host (the trap filter's allowlist is generated from it),
//! implemented by the sentry (the entry carries the handler dispatch calls), or refused with an
//! errno. `docs/backends/sentry.md` carries the table it generates
//! (`cargo run -p hako-sentry --example syscall_table`), and a test keeps it up to date.

use super::*;
use crate::kernel::Kernel;
use crate::platform::Platform;
use syscalls::Sysno;

/// The platform the non-generic views of the table (trap filter, docs) name; a table entry's
/// disposition does not depend on it.
type Any = crate::platform::ptrace::SeccompPtrace;

/// A syscall implementation: what dispatch calls with the trapped call.
pub type Handler<P> = fn(&mut Kernel<P>, &mut Call) -> Outcome;

/// A syscall the sentry implements: its handler and the topic file (`syscalls/<topic>.rs`)
/// that holds it.
pub struct Imp<P: Platform> {
    pub run: Handler<P>,
    pub topic: &'static str,
}

impl<P: Platform> Clone for Imp<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P: Platform> Copy for Imp<P> {}

pub enum Disp<P: Platform> {
    /// Always runs on the host, never stops in the sentry.
    Native(&'static str),
    /// Runs on the host when any of the conditions holds; otherwise trapped and implemented.
    NativeWhen(&'static [Cond], Imp<P>, &'static str),
    /// Implemented by the sentry.
    Emulated(Imp<P>),
    /// Trapped and refused with this errno.
    Refused(i32, &'static str),
}

impl<P: Platform> Clone for Disp<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P: Platform> Copy for Disp<P> {}

/// `imp!(topic::handler)`: the handler `syscalls::topic::handler` for this table's platform.
macro_rules! imp {
    ($m:ident :: $f:ident) => {
        Imp {
            run: super::$m::$f::<P>,
            topic: stringify!($m),
        }
    };
}

/// `emulated!(topic::handler)`: implemented by that handler.
macro_rules! emulated {
    ($m:ident :: $f:ident) => {
        Disp::Emulated(imp!($m::$f))
    };
}

/// An argument condition under which a syscall may run natively: `(arg & mask) == value`.
#[derive(Debug, Clone, Copy)]
pub struct Cond {
    pub arg: u8,
    pub mask: u64,
    pub value: u64,
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
pub fn disposition<P: Platform>(s: Sysno) -> Disp<P> {
    use Disp::*;
    use Sysno::*;
    match s {
        brk | munmap | mremap | mprotect | madvise | msync | mincore | mlock | munlock | mlock2 | mlockall | munlockall
        | pkey_alloc | pkey_free | pkey_mprotect | membarrier => Native(MM),
        set_robust_list | set_tid_address | arch_prctl | rseq => Native("thread-local state on the caller's own memory"),
        futex => NativeWhen(FUTEX_NO_TID, imp!(process::futex), "wait/wake/requeue run natively; the PI operations (the futex word names an owner tid) are refused with ENOSYS"),
        rt_sigaction | rt_sigprocmask | rt_sigreturn | rt_sigpending | rt_sigsuspend | rt_sigtimedwait | sigaltstack
        | restart_syscall | pause => Native(SIG),
        nanosleep | gettimeofday | time | alarm | setitimer | getitimer | timer_settime | timer_gettime | timer_getoverrun
        | timer_delete => Native(TIME),
        clock_gettime | clock_getres | clock_nanosleep | timer_create => NativeWhen(CLOCK_NO_PID, imp!(process::clock), "clocks that name no pid run natively; a CPU-time clock of a pid is translated to the sandbox's own tasks (EINVAL for any other pid), clock fds EINVAL"),
        exit | exit_group => Native("ends the caller; the sentry sees the exit"),
        getrandom => Native("entropy only"),
        sched_yield | getcpu | times | getrusage | getrlimit | setrlimit => Native(SELF),
        mmap => NativeWhen(MAP_ANON, imp!(mm::mmap), "anonymous mappings run natively; file mappings are emulated (anonymous map + copy)"),
        prctl => NativeWhen(PRCTL_SAFE, imp!(caps::prctl), "only per-process options that cannot widen privileges run natively; others EINVAL"),
        prlimit64 | sched_getaffinity | sched_setaffinity | sched_getparam | sched_getscheduler | sched_setscheduler
        | sched_setparam | get_robust_list => {
            NativeWhen(PID_ZERO, imp!(process::own_pid), "pid 0 (the caller) runs natively; a virtual pid of the caller is rewritten to 0; others EPERM")
        }


        // --- implemented by the sentry: files ---
        read => emulated!(read_write::read),
        pread64 => emulated!(read_write::pread64),
        readv | preadv | preadv2 => emulated!(read_write::readv),
        write | pwrite64 => emulated!(read_write::write),
        writev | pwritev | pwritev2 => emulated!(read_write::writev),
        lseek => emulated!(read_write::lseek),
        sendfile | copy_file_range => emulated!(read_write::sendfile),
        open | openat | creat | openat2 => emulated!(open::open),
        close => emulated!(fd::close),
        close_range => emulated!(fd::close_range),
        dup => emulated!(fd::dup),
        dup2 | dup3 => emulated!(fd::dup2),
        fcntl => emulated!(fd::fcntl),
        fstat => emulated!(stat::fstat),
        stat | lstat => emulated!(stat::stat),
        newfstatat | statx => emulated!(stat::newfstatat),
        access | faccessat | faccessat2 => emulated!(stat::access),
        readlink | readlinkat => emulated!(stat::readlink),
        statfs | fstatfs => emulated!(stat::statfs),
        getdents64 => emulated!(dir::getdents64),
        getcwd => emulated!(dir::getcwd),
        chdir | fchdir => emulated!(dir::chdir),
        mkdir | mkdirat => emulated!(dir::mkdir),
        mknod | mknodat => emulated!(dir::mknod),
        rmdir => emulated!(dir::rmdir),
        unlink | unlinkat => emulated!(dir::unlink),
        rename | renameat | renameat2 => emulated!(dir::rename),
        link | linkat => emulated!(dir::link),
        symlink | symlinkat => emulated!(dir::symlink),
        chmod | fchmodat | chown | lchown | fchownat | truncate | utimensat | utimes | utime
        | futimesat => emulated!(attr::setattr_path),
        fchmod | fchown | ftruncate | fsync | fdatasync | fallocate | flock | fadvise64
        | syncfs => emulated!(attr::setattr_fd),
        sync => emulated!(attr::sync),
        ioctl => emulated!(ioctl::ioctl),
        pipe => emulated!(pipe::pipe),
        pipe2 => emulated!(pipe::pipe2),
        poll => emulated!(poll::poll),
        ppoll => emulated!(poll::ppoll),
        select | pselect6 => emulated!(poll::select),
        epoll_create | epoll_create1 => emulated!(epoll::epoll_create),
        epoll_ctl => emulated!(epoll::epoll_ctl),
        epoll_wait | epoll_pwait | epoll_pwait2 => emulated!(epoll::epoll_wait),
        socketpair => emulated!(socket::socketpair),
        socket => emulated!(socket::socket),
        bind => emulated!(socket::bind),
        connect => emulated!(socket::connect),
        listen => emulated!(socket::listen),
        accept | accept4 => emulated!(socket::accept),
        getsockname | getpeername => emulated!(socket::getname),
        shutdown => emulated!(socket::shutdown),
        sendto => emulated!(socket::sendto),
        recvfrom => emulated!(socket::recvfrom),
        sendmsg => emulated!(socket::sendmsg),
        recvmsg => emulated!(socket::recvmsg),
        setsockopt => emulated!(socket::setsockopt),
        getsockopt => emulated!(socket::getsockopt),
        eventfd | eventfd2 => emulated!(eventfd::eventfd),
        signalfd | signalfd4 => emulated!(signalfd::signalfd),
        timerfd_create => emulated!(timerfd::timerfd_create),
        timerfd_settime => emulated!(timerfd::timerfd_settime),
        timerfd_gettime => emulated!(timerfd::timerfd_gettime),
        memfd_create => emulated!(memfd::memfd_create),
        inotify_init | inotify_init1 => emulated!(inotify::inotify_init),
        inotify_add_watch => emulated!(inotify::inotify_add_watch),
        inotify_rm_watch => emulated!(inotify::inotify_rm_watch),
        shmget | semget | msgget => emulated!(ipc::get),
        shmat => emulated!(ipc::shmat),
        shmdt => Native("detaches a segment from the caller's own address space"),
        semop | semtimedop => emulated!(ipc::semop),
        msgsnd => emulated!(ipc::msgsnd),
        msgrcv => emulated!(ipc::msgrcv),
        shmctl | semctl | msgctl => emulated!(ipc::ctl),
        mq_open => emulated!(mqueue::mq_open),
        mq_unlink => emulated!(mqueue::mq_unlink),
        mq_timedsend => emulated!(mqueue::mq_timedsend),
        mq_timedreceive => emulated!(mqueue::mq_timedreceive),
        mq_notify => emulated!(mqueue::mq_notify),
        mq_getsetattr => emulated!(mqueue::mq_getsetattr),
        // --- implemented by the sentry: processes, identity, signals, system ---
        getpid | gettid | getppid | getuid | geteuid | getgid | getegid | setfsuid | setfsgid => {
            emulated!(process::getid)
        }
        getresuid | getresgid => emulated!(process::getresid),
        getgroups => emulated!(process::getgroups),
        getpgrp | setsid => emulated!(process::native),
        getpgid | getsid => emulated!(process::getpgid),
        setpgid => emulated!(process::setpgid),
        wait4 | waitid => emulated!(process::wait),
        clone | fork | vfork => emulated!(process::clone),
        execve => emulated!(process::execve),
        umask => emulated!(process::umask),
        uname => emulated!(process::uname),
        sethostname | setdomainname | syslog => emulated!(process::eperm),
        sysinfo => emulated!(process::sysinfo),
        getpriority => emulated!(process::getpriority),
        setpriority => emulated!(process::setpriority),
        kill => emulated!(signal::kill),
        tkill | tgkill => emulated!(signal::tkill),
        rt_sigqueueinfo | rt_tgsigqueueinfo => emulated!(signal::sigqueueinfo),
        setuid | setgid | setreuid | setregid | setresuid | setresgid => emulated!(caps::setid),
        setgroups => emulated!(caps::setgroups),
        capget => emulated!(caps::capget),
        capset => emulated!(caps::capset),
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
        if s == Sysno::mmap {
            // Writable shared file mappings come as notifications, on every platform: the
            // sentry puts the file in the task's own table and lets the mapping run natively
            // (syscalls/mm.rs).
            let anon = MAP_ANON.iter().map(|c| (c.arg, c.mask, c.value)).collect();
            let w = libc::PROT_WRITE as u64;
            rules.push((
                nr,
                Rule::Tiers {
                    tiers: vec![
                        (anon, RET_ALLOW),
                        (
                            vec![(3, 0x3, libc::MAP_SHARED as u64), (2, w, w)],
                            RET_USER_NOTIF,
                        ),
                        (vec![(3, 0x3, 0x3), (2, w, w)], RET_USER_NOTIF), // MAP_SHARED_VALIDATE
                    ],
                    otherwise: RET_TRACE,
                },
            ));
            continue;
        }
        match disposition::<Any>(s) {
            Disp::Native(_) => rules.push((nr, Rule::Action(RET_ALLOW))),
            Disp::NativeWhen(conds, ..) => rules.push((
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

/// One row of the compatibility table.
pub fn table() -> Vec<(usize, &'static str, Disp<Any>)> {
    Sysno::iter()
        .map(|s| (s.id() as usize, s.name(), disposition(s)))
        .collect()
}

/// The compatibility table as markdown (what docs/backends/sentry.md carries).
pub fn table_markdown() -> String {
    let rows = table();
    let count = |f: fn(&Disp<Any>) -> bool| rows.iter().filter(|r| f(&r.2)).count();
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
            Disp::NativeWhen(_, _, w) => ("native if / emulated".to_string(), w.to_string()),
            Disp::Emulated(i) => ("implemented".to_string(), format!("sentry ({})", i.topic)),
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
