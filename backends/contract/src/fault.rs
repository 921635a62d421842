//! Deterministic fault injection for the fault suite (`tests/faults.rs`).
//!
//! `HAKO_FAULT=<op>:<step>` makes hako SIGKILL itself when it reaches that named step, so a
//! test can stop `create`, `start`, `exec` or `delete` at an exact place, as an engine's
//! timeout or the OOM killer would. Unset (the normal case) each point costs one cached
//! lookup. The steps are listed in docs/reliability.md; a name no point uses does nothing.
//!
//! Only the process that runs the command reaches a point: a backend calls [`point`] in the
//! `create` process, never in a host process it forked (which would inherit the variable).

use std::sync::OnceLock;

/// The environment variable naming the step to die at.
pub const ENV: &str = "HAKO_FAULT";

/// SIGKILL this process if `HAKO_FAULT` names `step` (`"create:cgroup"`, `"delete:backend"`, ...).
pub fn point(step: &str) {
    static WANT: OnceLock<Option<String>> = OnceLock::new();
    let want = WANT.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()));
    if want.as_deref() == Some(step) {
        // SAFETY: kill(2) of ourselves; SIGKILL cannot be caught, so nothing runs after it.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        // The signal is delivered before kill returns for a single-threaded process; a
        // multi-threaded one may run a little further: never past this point.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
