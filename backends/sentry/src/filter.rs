//! The sentry's own seccomp filter (seccompiler), installed once the workload's first process is
//! forked: the sentry can then only do what implementing the workload's syscalls needs (file I/O
//! on its own descriptors, ptrace and process_vm_* on its tracees, memory, signals, and messages
//! on the exec socket it made before, and the sandbox's sockets: `socket` only for the families
//! `syscalls::socket` serves). No mount, exec, clone or namespace call; anything else fails with
//! EPERM.

use anyhow::Result;
use seccompiler::{SeccompAction, SeccompFilter};
use std::collections::BTreeMap;
use syscalls::Sysno;

pub const SENTRY_ALLOWED: &[Sysno] = {
    use Sysno::*;
    &[
        read,
        write,
        readv,
        writev,
        pread64,
        pwrite64,
        // `cat` of a file into a sandbox pipe: one sendfile between two of the sentry's own
        // descriptors instead of a read and a write (syscalls/read_write.rs, issue 17).
        sendfile,
        openat,
        openat2,
        close,
        close_range,
        fstat,
        newfstatat,
        statx,
        lseek,
        getdents64,
        mkdirat,
        unlinkat,
        renameat2,
        linkat,
        symlinkat,
        readlink,
        readlinkat,
        chmod,
        fchmod,
        fchmodat,
        fchmodat2,
        fchown,
        fchownat,
        ftruncate,
        fallocate,
        utimensat,
        fsync,
        fdatasync,
        fcntl,
        dup,
        dup3,
        ioctl,
        pipe2,
        socketpair,
        eventfd2,
        signalfd4,
        epoll_create1,
        epoll_ctl,
        epoll_wait,
        epoll_pwait,
        timerfd_create,
        timerfd_settime,
        timerfd_gettime,
        memfd_create,
        inotify_init1,
        inotify_add_watch,
        inotify_rm_watch,
        fchdir,
        poll,
        ppoll,
        wait4,
        waitid,
        ptrace,
        process_vm_readv,
        process_vm_writev,
        kill,
        tgkill,
        getpgid,
        rt_sigaction,
        rt_sigprocmask,
        rt_sigreturn,
        sigaltstack,
        mmap,
        munmap,
        mremap,
        mprotect,
        brk,
        madvise,
        futex,
        clock_gettime,
        clock_nanosleep,
        nanosleep,
        getpid,
        gettid,
        geteuid,
        getegid,
        exit,
        exit_group,
        sched_getaffinity,
        sysinfo,
        getrandom,
        fstatfs,
        statfs,
        prlimit64,
        setrlimit,
        sched_yield,
        getcwd,
        restart_syscall,
        mknodat,
        pidfd_open,
        pidfd_getfd,
        // Whether a forked tracee holds a pipe the sentry handed over (kernel/fdtable.rs,
        // `clone_for_fork`): it compares descriptors, as ptrace on the tracee could read them.
        kcmp,
        // `hako exec`: accept on the exec socket, receive the client's stdio, answer it and the
        // spawner (see exec/); and the sandbox's sockets (syscalls/socket/, which also
        // changes directory to its own /proc/self/fd for AF_UNIX paths). `socket` itself is
        // allowed below for the families the sentry serves only.
        accept4,
        recvmsg,
        sendmsg,
        bind,
        connect,
        listen,
        getsockname,
        getpeername,
        shutdown,
        sendto,
        recvfrom,
        setsockopt,
        getsockopt,
        fchdir,
        shmget,
        shmctl,
        semget,
        semctl,
        msgget,
        msgctl,
        mq_open,
        mq_unlink,
        mq_timedsend,
        mq_timedreceive,
        mq_notify,
        mq_getsetattr,
    ]
};

/// The socket families the sentry may open for the sandbox (defence in depth under
/// `syscalls::socket::socket`, which decides per call).
const SOCKET_FAMILIES: &[i32] = &[
    libc::AF_UNIX,
    libc::AF_INET,
    libc::AF_INET6,
    libc::AF_NETLINK,
    libc::AF_PACKET,
];

pub fn sentry_filter() -> Result<seccompiler::BpfProgram> {
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = SENTRY_ALLOWED
        .iter()
        .map(|s| (s.id() as i64, vec![]))
        .collect();
    let families = SOCKET_FAMILIES
        .iter()
        .map(|&f| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                f as u64,
            )?])
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    rules.insert(Sysno::socket.id() as i64, families);
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        std::env::consts::ARCH.try_into()?,
    )?;
    Ok(f.try_into()?)
}
