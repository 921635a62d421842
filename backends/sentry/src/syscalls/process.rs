//! Processes and the system's identity: ids, process groups and sessions, clone/fork, execve,
//! wait, uname, sysinfo, priorities, scheduler and clock calls that name a pid.

use super::{err, Call, Outcome};
use crate::kernel::creds::may;
use crate::kernel::procfs::{RELEASE, SYSNAME, VERSION};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{fstat_fd, normalize, Node};
use std::os::fd::AsRawFd;
use syscalls::Sysno;

fn field(s: &str) -> [libc::c_char; 65] {
    let mut f = [0 as libc::c_char; 65];
    for (i, b) in s.bytes().take(64).enumerate() {
        f[i] = b as libc::c_char;
    }
    f
}

/// getpid, gettid, getppid, getuid, geteuid, getgid, getegid, and setfsuid/setfsgid, which
/// follow euid/egid (fsuid/fsgid are not modelled separately): report, never change.
pub fn getid<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let proc = k.proc_of(c.tid);
    let p = proc.borrow();
    match c.s {
        getpid => Outcome::Ret(p.vpid as i64),
        gettid => Outcome::Ret(k.tasks[&c.tid].vtid as i64),
        getppid => Outcome::Ret(p.vppid as i64),
        getuid => Outcome::Ret(p.creds.ruid as i64),
        geteuid | setfsuid => Outcome::Ret(p.creds.euid as i64),
        getgid => Outcome::Ret(p.creds.rgid as i64),
        _ => Outcome::Ret(p.creds.egid as i64),
    }
}

/// getresuid, getresgid.
pub fn getresid<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let proc = k.proc_of(c.tid);
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let cr = proc.borrow().creds.clone();
    let v = if s == getresuid {
        [cr.ruid, cr.euid, cr.suid]
    } else {
        [cr.rgid, cr.egid, cr.sgid]
    };
    for (i, x) in v.iter().enumerate() {
        if let Err(e) = k.write_val(tid, a[i], x) {
            return err(e);
        }
    }
    Outcome::Ret(0)
}

pub fn getgroups<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let proc = k.proc_of(c.tid);
    let (a, tid) = (c.a, c.tid);
    let g = proc.borrow().creds.groups.clone();
    if a[0] == 0 {
        return Outcome::Ret(g.len() as i64);
    }
    if (a[0] as usize) < g.len() {
        return err(libc::EINVAL);
    }
    let b: Vec<u8> = g.iter().flat_map(|x| x.to_ne_bytes()).collect();
    match k.write_bytes(tid, a[1], &b) {
        Ok(()) => Outcome::Ret(g.len() as i64),
        Err(e) => err(e),
    }
}

/// getpgrp, setsid. Process groups and sessions run natively: the sandbox has its own pid
/// namespace, whose pids are the virtual ones, so arguments and results need no translation. A
/// pid that is not one of the sandbox's live tasks is refused before the host sees it.
pub fn native<P: Platform>(_k: &mut Kernel<P>, _c: &mut Call) -> Outcome {
    Outcome::Native
}

/// getpgid, getsid.
pub fn getpgid<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let a = c.a;
    if a[0] != 0 && k.host_of(a[0] as i32).is_none() {
        return err(libc::ESRCH);
    }
    Outcome::Native
}

pub fn setpgid<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let a = c.a;
    for (i, &v) in a[..2].iter().enumerate() {
        if v != 0 && k.host_of(v as i32).is_none() {
            return err(if i == 0 { libc::ESRCH } else { libc::EPERM });
        }
    }
    Outcome::Native
}

/// wait4, waitid.
pub fn wait<P: Platform>(_k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, s) = (c.a, c.s);
    // Waiting for children runs natively: they are the caller's own children, and in
    // the sandbox's pid namespace the pids it passes and gets back are the virtual ones.
    if s == waitid && a[0] as i32 == 3 {
        // P_PIDFD: the sandbox holds no pidfd (pidfd_open, CLONE_PIDFD are refused).
        return err(libc::EBADF);
    }
    Outcome::Native
}

/// clone, fork, vfork.
pub fn clone<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let flags = match s {
        clone => a[0],
        fork => libc::SIGCHLD as u64,
        _ => (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64,
    };
    let forbidden = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_PTRACE
        | libc::CLONE_UNTRACED
        | libc::CLONE_PIDFD) as u64;
    if flags & forbidden != 0 {
        return err(libc::EPERM);
    }
    if s == clone && flags & libc::CLONE_THREAD as u64 == 0 && flags & libc::CLONE_FILES as u64 != 0
    {
        // Two processes sharing one fd table: supported (Rc-shared table).
    }
    k.tasks.get_mut(&tid).unwrap().pending_clone = Some(flags);
    // The child's pid the host returns is its pid in the sandbox's namespace: virtual.
    Outcome::Native
}

pub fn uname<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    u.sysname = field(SYSNAME);
    u.nodename = field(&k.cfg.hostname);
    u.release = field(RELEASE);
    u.version = field(VERSION);
    u.machine = field("x86_64");
    u.domainname = field("(none)");
    match k.write_val(tid, a[0], &u) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    }
}

/// sethostname, setdomainname, syslog.
pub fn eperm<P: Platform>(_k: &mut Kernel<P>, _c: &mut Call) -> Outcome {
    err(libc::EPERM)
}

pub fn sysinfo<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: sysinfo into a local struct; rewritten below.
    unsafe { libc::sysinfo(&mut si) };
    si.uptime = k.cfg.started.elapsed().as_secs() as i64;
    si.loads = [0; 3];
    si.procs = k.tasks.len() as u16;
    if let Some(l) = k.cfg.mem_limit {
        let unit = si.mem_unit.max(1) as u64;
        si.totalram = si.totalram.min(l / unit);
        si.freeram = si.freeram.min(si.totalram);
    }
    si.totalswap = 0;
    si.freeswap = 0;
    match k.write_val(tid, a[0], &si) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    }
}

pub fn getpriority<P: Platform>(_k: &mut Kernel<P>, _c: &mut Call) -> Outcome {
    Outcome::Ret(20)
}

pub fn setpriority<P: Platform>(_k: &mut Kernel<P>, _c: &mut Call) -> Outcome {
    Outcome::Ret(0)
}

/// prlimit64, sched_{get,set}affinity, sched_{get,set}param, sched_{get,set}scheduler,
/// get_robust_list.
pub fn own_pid<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let proc = k.proc_of(c.tid);
    let (a, tid) = (c.a, c.tid);
    // Natively allowed for pid 0 only; the caller's own virtual pid is rewritten to 0.
    let me = proc.borrow().vpid;
    if a[0] as i32 == me || a[0] as i32 == k.tasks[&tid].vtid {
        c.regs.rdi = 0;
        Outcome::Native
    } else if k.host_of(a[0] as i32).is_some() {
        err(libc::EPERM)
    } else {
        err(libc::ESRCH)
    }
}

/// clock_gettime, clock_getres, clock_nanosleep, timer_create.
pub fn clock<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let a = c.a;
    // Only negative clock ids trap (CLOCK_NO_PID): `(~pid << 3) | type`, with type 3 a
    // clock fd. The pid must be a live task of the sandbox (glibc's
    // pthread_getcpuclockid hands out the tid it learnt from set_tid_address/clone,
    // which is the virtual one); it runs natively in the sandbox's pid namespace.
    let clk = a[0] as i32;
    if clk & 7 == 3 {
        return err(libc::EINVAL);
    }
    let pid = !(clk >> 3);
    if pid != 0 && k.task_of(pid).is_none() {
        return err(libc::EINVAL);
    }
    Outcome::Native
}

/// futex: only the PI operations trap (see `FUTEX_NO_TID`): refused, as a kernel without
/// CONFIG_FUTEX_PI does.
pub fn futex<P: Platform>(_k: &mut Kernel<P>, _c: &mut Call) -> Outcome {
    err(libc::ENOSYS)
}

pub fn execve<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let path = match k.read_path(c.tid, c.a[0]) {
        Ok(p) => p,
        Err(e) => return err(e),
    };
    let rel = match k.lookup(c.tid, libc::AT_FDCWD, &path, true) {
        Err(e) => return err(e),
        // A removed directory ("." of it) is no program either.
        Ok(Node::Synth(_) | Node::Removed(_)) => return err(libc::EACCES),
        Ok(Node::Host(rel)) => rel,
    };
    let fd = match k.vfs.open(&rel, libc::O_PATH, 0) {
        Ok(fd) => fd,
        Err(e) => return err(e),
    };
    let st = match fstat_fd(fd.as_raw_fd()) {
        Ok(s) => s,
        Err(e) => return err(e),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return err(libc::EACCES);
    }
    let creds = k.proc_of(c.tid).borrow().creds.clone();
    if !may(&st, &creds, 1) {
        return err(libc::EACCES);
    }
    // The canonical in-root path; the tracee runs chrooted at the overlay root, so the host
    // execve (the one syscall the kernel runs on a path) resolves exactly this file.
    let canon = k
        .vfs
        .virt_path_of(fd.as_raw_fd())
        .unwrap_or_else(|| normalize(&format!("/{rel}")));
    let mut bytes = canon.clone().into_bytes();
    bytes.push(0);
    let addr = (c.regs.rsp - 4096 - bytes.len() as u64) & !15;
    if let Err(e) = k.write_bytes(c.tid, addr, &bytes) {
        return err(e);
    }
    c.regs.rdi = addr;
    k.tasks.get_mut(&c.tid).unwrap().pending_exec = Some(canon);
    Outcome::Native
}

pub fn umask<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let p = k.proc_of(c.tid);
    let old = p.borrow().umask;
    p.borrow_mut().umask = c.a[0] as u32 & 0o777;
    Outcome::Ret(old as i64)
}
