//! Processes, identities, signals and the system's identity (uname, sysinfo).

use super::{err, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::procfs::{RELEASE, SYSNAME, VERSION};
use crate::vfs::{normalize, Node};
use std::os::fd::AsRawFd;
use syscalls::Sysno;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn field(s: &str) -> [libc::c_char; 65] {
    let mut f = [0 as libc::c_char; 65];
    for (i, b) in s.bytes().take(64).enumerate() {
        f[i] = b as libc::c_char;
    }
    f
}

impl<P: Platform> Kernel<P> {
    /// Host pids for a kill(2)-style target. Empty: ESRCH.
    fn kill_targets(&self, tid: i32, pid: i32) -> Vec<i32> {
        let me = self.proc_of(tid).borrow().host_pid;
        let all_procs = || {
            let mut v: Vec<i32> = self
                .tasks
                .values()
                .map(|t| t.proc.borrow().host_pid)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        match pid {
            p if p > 0 => self
                .host_of(p)
                .map(|h| vec![self.tasks[&h].proc.borrow().host_pid])
                .unwrap_or_default(),
            0 | -1 => {
                // SAFETY: getpgid of our own tracee.
                let pg = unsafe { libc::getpgid(me) };
                all_procs()
                    .into_iter()
                    .filter(|&h| {
                        if pid == 0 {
                            (unsafe { libc::getpgid(h) }) == pg
                        } else {
                            h != me && h != self.init_host
                        }
                    })
                    .collect()
            }
            p => match self.host_of(-p) {
                Some(hpg) => all_procs()
                    .into_iter()
                    .filter(|&h| (unsafe { libc::getpgid(h) }) == hpg)
                    .collect(),
                None => vec![],
            },
        }
    }

    /// The creds of the process whose leader has this host pid.
    fn creds_of(&self, host_pid: i32) -> Option<crate::kernel::Creds> {
        self.tasks
            .values()
            .map(|t| t.proc.borrow())
            .find(|p| p.host_pid == host_pid)
            .map(|p| p.creds.clone())
    }

    fn execve(&mut self, c: &mut Call) -> Outcome {
        let path = match self.read_path(c.tid, c.a[0]) {
            Ok(p) => p,
            Err(e) => return err(e),
        };
        let rel = match self.lookup(c.tid, libc::AT_FDCWD, &path, true) {
            Err(e) => return err(e),
            Ok(Node::Synth(_)) => return err(libc::EACCES),
            Ok(Node::Host(rel)) => rel,
        };
        let fd = match self.vfs.open(&rel, libc::O_PATH, 0) {
            Ok(fd) => fd,
            Err(e) => return err(e),
        };
        let st = match crate::vfs::fstat_fd(fd.as_raw_fd()) {
            Ok(s) => s,
            Err(e) => return err(e),
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return err(libc::EACCES);
        }
        let creds = self.proc_of(c.tid).borrow().creds.clone();
        if !super::fs::may(&st, &creds, 1) {
            return err(libc::EACCES);
        }
        // The canonical in-root path; the tracee runs chrooted at the overlay root, so the host
        // execve (the one syscall the kernel runs on a path) resolves exactly this file.
        let canon = self
            .vfs
            .virt_path_of(fd.as_raw_fd())
            .unwrap_or_else(|| normalize(&format!("/{rel}")));
        let mut bytes = canon.clone().into_bytes();
        bytes.push(0);
        let addr = (c.regs.rsp - 4096 - bytes.len() as u64) & !15;
        if let Err(e) = self.write_bytes(c.tid, addr, &bytes) {
            return err(e);
        }
        c.regs.rdi = addr;
        self.tasks.get_mut(&c.tid).unwrap().pending_exec = Some(canon);
        Outcome::Native
    }
}

pub fn handle<P: Platform>(k: &mut Kernel<P>, s: Sysno, c: &mut Call) -> Option<Outcome> {
    use Sysno::*;
    let a = c.a;
    let tid = c.tid;
    let proc = k.proc_of(tid);
    Some(match s {
        getpid => Outcome::Ret(proc.borrow().vpid as i64),
        gettid => Outcome::Ret(k.tasks[&tid].vtid as i64),
        getppid => Outcome::Ret(proc.borrow().vppid as i64),
        getuid => Outcome::Ret(proc.borrow().creds.ruid as i64),
        geteuid => Outcome::Ret(proc.borrow().creds.euid as i64),
        getgid => Outcome::Ret(proc.borrow().creds.rgid as i64),
        getegid => Outcome::Ret(proc.borrow().creds.egid as i64),
        getresuid | getresgid => {
            let cr = proc.borrow().creds.clone();
            let v = if s == getresuid {
                [cr.ruid, cr.euid, cr.suid]
            } else {
                [cr.rgid, cr.egid, cr.sgid]
            };
            for (i, x) in v.iter().enumerate() {
                if let Err(e) = k.write_val(tid, a[i], x) {
                    return Some(err(e));
                }
            }
            Outcome::Ret(0)
        }
        getgroups => {
            let g = proc.borrow().creds.groups.clone();
            if a[0] == 0 {
                return Some(Outcome::Ret(g.len() as i64));
            }
            if (a[0] as usize) < g.len() {
                return Some(err(libc::EINVAL));
            }
            let b: Vec<u8> = g.iter().flat_map(|x| x.to_ne_bytes()).collect();
            match k.write_bytes(tid, a[1], &b) {
                Ok(()) => Outcome::Ret(g.len() as i64),
                Err(e) => err(e),
            }
        }
        // fsuid/fsgid follow euid/egid (not modelled separately): report, never change.
        setfsuid => Outcome::Ret(proc.borrow().creds.euid as i64),
        setfsgid => Outcome::Ret(proc.borrow().creds.egid as i64),
        // Process groups and sessions run natively: the sandbox has its own pid namespace, whose
        // pids are the virtual ones, so arguments and results need no translation. A pid that
        // is not one of the sandbox's live tasks is refused before the host sees it.
        getpgrp | setsid => Outcome::Native,
        getpgid | getsid => {
            if a[0] != 0 && k.host_of(a[0] as i32).is_none() {
                return Some(err(libc::ESRCH));
            }
            Outcome::Native
        }
        setpgid => {
            for (i, &v) in a[..2].iter().enumerate() {
                if v != 0 && k.host_of(v as i32).is_none() {
                    return Some(err(if i == 0 { libc::ESRCH } else { libc::EPERM }));
                }
            }
            Outcome::Native
        }
        kill => {
            let targets = k.kill_targets(tid, a[0] as i32);
            if targets.is_empty() {
                return Some(err(libc::ESRCH));
            }
            // Only the processes the caller may signal (same uid, or CAP_KILL); none: EPERM.
            let me = proc.borrow().creds.clone();
            let targets: Vec<i32> = targets
                .into_iter()
                .filter(|&h| k.creds_of(h).is_some_and(|t| me.may_signal(&t)))
                .collect();
            if targets.is_empty() {
                return Some(err(libc::EPERM));
            }
            for h in targets {
                // SAFETY: signal a process of this sandbox.
                if unsafe { libc::kill(h, a[1] as i32) } != 0 {
                    return Some(err(errno()));
                }
            }
            Outcome::Ret(0)
        }
        tkill | tgkill => {
            let (tg, t, sig) = if s == tkill {
                (None, a[0] as i32, a[1] as i32)
            } else {
                (Some(a[0] as i32), a[1] as i32, a[2] as i32)
            };
            let Some(ht) = k.task_of(t) else {
                return Some(err(libc::ESRCH));
            };
            let htg = k.tasks[&ht].proc.borrow().host_pid;
            if let Some(tg) = tg {
                if k.host_of(tg) != Some(htg) {
                    return Some(err(libc::ESRCH));
                }
            }
            if !proc
                .borrow()
                .creds
                .may_signal(&k.tasks[&ht].proc.borrow().creds)
            {
                return Some(err(libc::EPERM));
            }
            // SAFETY: signal a thread of this sandbox.
            if unsafe { libc::syscall(libc::SYS_tgkill, htg, ht, sig) } != 0 {
                return Some(err(errno()));
            }
            Outcome::Ret(0)
        }
        rt_sigqueueinfo | rt_tgsigqueueinfo => {
            // Translated, permission-checked against the virtual creds, then run natively by
            // the caller itself (so the kernel's own rule for a caller-made si_code, "only to
            // yourself", compares the right pids).
            let (tg, t) = if s == rt_sigqueueinfo {
                (a[0] as i32, None)
            } else {
                if a[0] as i32 <= 0 || a[1] as i32 <= 0 {
                    return Some(err(libc::EINVAL));
                }
                (a[0] as i32, Some(a[1] as i32))
            };
            let Some(hl) = k.host_of(tg) else {
                return Some(err(libc::ESRCH));
            };
            let htg = k.tasks[&hl].proc.borrow().host_pid;
            let target = match t {
                None => hl,
                Some(t) => match k.task_of(t) {
                    Some(ht) if k.tasks[&ht].proc.borrow().host_pid == htg => ht,
                    _ => return Some(err(libc::ESRCH)),
                },
            };
            if !proc
                .borrow()
                .creds
                .may_signal(&k.tasks[&target].proc.borrow().creds)
            {
                return Some(err(libc::EPERM));
            }
            // The caller's own pid namespace reads the (virtual) ids as they are.
            Outcome::Native
        }
        wait4 | waitid => {
            // Waiting for children runs natively: they are the caller's own children, and in
            // the sandbox's pid namespace the pids it passes and gets back are the virtual ones.
            if s == waitid && a[0] as i32 == 3 {
                // P_PIDFD: the sandbox holds no pidfd (pidfd_open, CLONE_PIDFD are refused).
                return Some(err(libc::EBADF));
            }
            Outcome::Native
        }
        clone | fork | vfork => {
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
                return Some(err(libc::EPERM));
            }
            if s == clone
                && flags & libc::CLONE_THREAD as u64 == 0
                && flags & libc::CLONE_FILES as u64 != 0
            {
                // Two processes sharing one fd table: supported (Rc-shared table).
            }
            k.tasks.get_mut(&tid).unwrap().pending_clone = Some(flags);
            // The child's pid the host returns is its pid in the sandbox's namespace: virtual.
            Outcome::Native
        }
        execve => k.execve(c),
        uname => {
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
        sethostname | setdomainname => err(libc::EPERM),
        syslog => err(libc::EPERM),
        sysinfo => {
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
        getpriority => Outcome::Ret(20),
        setpriority => Outcome::Ret(0),
        prlimit64 | sched_getaffinity | sched_setaffinity | sched_getparam | sched_getscheduler
        | sched_setscheduler | sched_setparam | get_robust_list => {
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
        clock_gettime | clock_getres | clock_nanosleep | timer_create => {
            // Only negative clock ids trap (CLOCK_NO_PID): `(~pid << 3) | type`, with type 3 a
            // clock fd. The pid must be a live task of the sandbox (glibc's
            // pthread_getcpuclockid hands out the tid it learnt from set_tid_address/clone,
            // which is the virtual one); it runs natively in the sandbox's pid namespace.
            let clk = a[0] as i32;
            if clk & 7 == 3 {
                return Some(err(libc::EINVAL));
            }
            let pid = !(clk >> 3);
            if pid != 0 && k.task_of(pid).is_none() {
                return Some(err(libc::EINVAL));
            }
            Outcome::Native
        }
        prctl => err(libc::EINVAL),
        // Only the PI operations trap (see FUTEX_NO_TID): refused, as a kernel without
        // CONFIG_FUTEX_PI does.
        futex => err(libc::ENOSYS),
        _ => return None,
    })
}
