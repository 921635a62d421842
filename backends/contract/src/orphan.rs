//! What a `create` that died before it wrote state.json leaves for `delete --force` to find.
//!
//! The front end removes everything a backend made from the id, the spec and the state
//! directory alone ([`crate::Backend::delete_orphan`]). One thing they do not give is the pid of
//! a host process forked before the crash, which may sit blocked on the start fifo for ever
//! when no cgroup holds it: a backend notes it here right after the fork, in the state
//! directory, with its /proc start time so that a recycled pid is never killed.

use std::path::Path;

/// The file in the state directory that holds `pid start_time` of the host process.
pub const HOST_PID_FILE: &str = "host.pid";

/// Note the host process that `create` just forked (best effort: a state directory that cannot
/// be written fails the create a moment later anyway).
pub fn note_host_pid(state_dir: &Path, pid: i32) {
    if let Some(start) = crate::proc::start_time(pid) {
        let _ = std::fs::write(state_dir.join(HOST_PID_FILE), format!("{pid} {start}"));
    }
}

/// The host process noted by [`note_host_pid`], as (pid, start time).
pub fn host_pid(state_dir: &Path) -> Option<(i32, u64)> {
    let s = std::fs::read_to_string(state_dir.join(HOST_PID_FILE)).ok()?;
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}
