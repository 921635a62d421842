//! Signal names and numbers as `kill` accepts them: `TERM`, `SIGTERM`, `sigterm`, `15`.

use anyhow::{bail, Result};

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Signals no forwarder passes on: the two no process can catch, the synchronous faults
/// (SEGV, BUS, ILL, FPE, TRAP, SYS: a forwarder that gets one has a fault of its own, and the
/// sentry's tracing uses TRAP and SYS), SIGCHLD (the forwarder's own children) and SIGPIPE (its
/// own closed output).
const NOT_FORWARDED: [i32; 10] = [
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGCHLD,
    libc::SIGPIPE,
];

/// The one list of signals forwarded to the workload, by every process that stands between a
/// caller and it: `hako run` and `hako exec` in the front end, the sentry and its exec clients,
/// the microvm host process and its exec clients. Every other signal from 1 to SIGRTMAX, the
/// real-time ones included, except the two glibc keeps for itself (32 and 33, below SIGRTMIN).
pub fn forwarded() -> Vec<i32> {
    (1..=libc::SIGRTMAX())
        .filter(|s| !NOT_FORWARDED.contains(s) && !(32..libc::SIGRTMIN()).contains(s))
        .collect()
}

/// Parse a signal given by name or number; real-time signals as `RTMIN+N` or their number.
pub fn parse(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=libc::SIGRTMAX()).contains(&n) {
            return Ok(n);
        }
        bail!(
            "unknown signal {s:?}: numbers run from 1 to {}",
            libc::SIGRTMAX()
        );
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some((_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = if rest.is_empty() {
            Some(0)
        } else {
            rest.strip_prefix('+').and_then(|r| r.parse::<i32>().ok())
        };
        if let Some(off) = off {
            let n = libc::SIGRTMIN() + off;
            if n <= libc::SIGRTMAX() {
                return Ok(n);
            }
        }
    }
    bail!("unknown signal {s:?}")
}

/// End this process by signal `sig`, as the sandbox's process ended (a host process or exec
/// client whose exit status must be the workload's): default action, no core dump, unblocked,
/// raised. Returns 128 + `sig` for the rare signal whose default action is not to terminate.
pub fn die_like(sig: i32) -> i32 {
    // SAFETY: plain signal-state calls on this process, then kill of ourselves.
    unsafe {
        let rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &rl);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
    }
    128 + sig
}

#[cfg(test)]
mod tests {
    use super::{forwarded, parse};

    #[test]
    fn forwarded_signals() {
        let f = forwarded();
        for s in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGWINCH,
            libc::SIGTSTP,
        ] {
            assert!(f.contains(&s), "{s} not forwarded");
        }
        assert!(f.contains(&libc::SIGRTMIN()) && f.contains(&libc::SIGRTMAX()));
        for s in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGCHLD,
            libc::SIGSEGV,
            32,
            33,
        ] {
            assert!(!f.contains(&s), "{s} forwarded");
        }
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("TERM").unwrap(), 15);
        assert_eq!(parse("SIGKILL").unwrap(), 9);
        assert_eq!(parse("sigusr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse("15").unwrap(), 15);
        assert_eq!(parse("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        assert!(parse("SIGFOO").is_err());
        assert!(parse("0").is_err());
        assert!(parse("99").is_err());
    }
}
