//! Signals between the sandbox's processes: kill, tkill, tgkill, rt_sigqueueinfo and
//! rt_tgsigqueueinfo, translated from virtual pids and checked against the virtual creds; the
//! init (virtual pid 1) gets from inside the sandbox only the signals it handles, as on Linux.

use super::{err, errno, Call, Outcome};
use crate::kernel::{Creds, Kernel};
use crate::platform::Platform;
use syscalls::Sysno;

pub fn kill<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let proc = k.proc_of(c.tid);
    let (a, tid) = (c.a, c.tid);
    let targets = kill_targets(k, tid, a[0] as i32);
    if targets.is_empty() {
        return err(libc::ESRCH);
    }
    // Only the processes the caller may signal (same uid, or CAP_KILL); none: EPERM.
    let me = proc.borrow().creds.clone();
    let targets: Vec<i32> = targets
        .into_iter()
        .filter(|&h| creds_of(k, h).is_some_and(|t| me.may_signal(&t)))
        .collect();
    if targets.is_empty() {
        return err(libc::EPERM);
    }
    for h in targets {
        if init_ignores(k, h, a[1] as i32) {
            continue;
        }
        // SAFETY: signal a process of this sandbox.
        if unsafe { libc::kill(h, a[1] as i32) } != 0 {
            return err(errno());
        }
    }
    Outcome::Ret(0)
}

/// tkill, tgkill.
pub fn tkill<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let proc = k.proc_of(c.tid);
    use Sysno::*;
    let (a, s) = (c.a, c.s);
    let (tg, t, sig) = if s == tkill {
        (None, a[0] as i32, a[1] as i32)
    } else {
        (Some(a[0] as i32), a[1] as i32, a[2] as i32)
    };
    let Some(ht) = k.task_of(t) else {
        return err(libc::ESRCH);
    };
    let htg = k.tasks[&ht].proc.borrow().host_pid;
    if let Some(tg) = tg {
        if k.host_of(tg) != Some(htg) {
            return err(libc::ESRCH);
        }
    }
    if !proc
        .borrow()
        .creds
        .may_signal(&k.tasks[&ht].proc.borrow().creds)
    {
        return err(libc::EPERM);
    }
    if init_ignores(k, htg, sig) {
        return Outcome::Ret(0);
    }
    // SAFETY: signal a thread of this sandbox.
    if unsafe { libc::syscall(libc::SYS_tgkill, htg, ht, sig) } != 0 {
        return err(errno());
    }
    Outcome::Ret(0)
}

/// rt_sigqueueinfo, rt_tgsigqueueinfo.
pub fn sigqueueinfo<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let proc = k.proc_of(c.tid);
    use Sysno::*;
    let (a, s) = (c.a, c.s);
    // Translated, permission-checked against the virtual creds, then run natively by
    // the caller itself (so the kernel's own rule for a caller-made si_code, "only to
    // yourself", compares the right pids).
    let (tg, t) = if s == rt_sigqueueinfo {
        (a[0] as i32, None)
    } else {
        if a[0] as i32 <= 0 || a[1] as i32 <= 0 {
            return err(libc::EINVAL);
        }
        (a[0] as i32, Some(a[1] as i32))
    };
    let Some(hl) = k.host_of(tg) else {
        return err(libc::ESRCH);
    };
    let htg = k.tasks[&hl].proc.borrow().host_pid;
    let target = match t {
        None => hl,
        Some(t) => match k.task_of(t) {
            Some(ht) if k.tasks[&ht].proc.borrow().host_pid == htg => ht,
            _ => return err(libc::ESRCH),
        },
    };
    if !proc
        .borrow()
        .creds
        .may_signal(&k.tasks[&target].proc.borrow().creds)
    {
        return err(libc::EPERM);
    }
    // The caller's own pid namespace reads the (virtual) ids as they are.
    Outcome::Native
}

/// SIGKILL or SIGSTOP from inside the sandbox to its init (pid 1 of the sandbox's pid
/// namespace), which Linux ignores: the init of a pid namespace gets from its own namespace only
/// the signals it has a handler for. The host kernel applies that rule to every other signal by
/// itself, also when the sentry sends it, but lets these two through from the sentry, which is
/// in the parent namespace (`hako kill KILL` is meant to work). The call still succeeds.
fn init_ignores<P: Platform>(k: &Kernel<P>, host_pid: i32, sig: i32) -> bool {
    host_pid == k.init_host && (sig == libc::SIGKILL || sig == libc::SIGSTOP)
}

/// Host pids for a kill(2)-style target. Empty: ESRCH.
fn kill_targets<P: Platform>(k: &Kernel<P>, tid: i32, pid: i32) -> Vec<i32> {
    let me = k.proc_of(tid).borrow().host_pid;
    let all_procs = || {
        let mut v: Vec<i32> = k.tasks.values().map(|t| t.proc.borrow().host_pid).collect();
        v.sort();
        v.dedup();
        v
    };
    match pid {
        p if p > 0 => k
            .host_of(p)
            .map(|h| vec![k.tasks[&h].proc.borrow().host_pid])
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
                        h != me && h != k.init_host
                    }
                })
                .collect()
        }
        p => match k.host_of(-p) {
            Some(hpg) => all_procs()
                .into_iter()
                .filter(|&h| (unsafe { libc::getpgid(h) }) == hpg)
                .collect(),
            None => vec![],
        },
    }
}

/// The creds of the process whose leader has this host pid.
fn creds_of<P: Platform>(k: &Kernel<P>, host_pid: i32) -> Option<Creds> {
    k.tasks
        .values()
        .map(|t| t.proc.borrow())
        .find(|p| p.host_pid == host_pid)
        .map(|p| p.creds.clone())
}
