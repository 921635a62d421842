//! Small facts about host processes, read from /proc.

use std::fs;

/// The start time of `pid` (field 22 of /proc/PID/stat, in clock ticks since boot). Together
/// with the pid it names a process uniquely, so a recycled pid is never taken for ours.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The one-letter state of `pid` (R, S, D, Z, T, ...).
pub fn state_letter(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// True when `pid` is alive, not a zombie, and started at `start` (when given).
pub fn is_alive(pid: i32, start: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match state_letter(pid) {
        None | Some('Z') | Some('X') => false,
        Some(_) => start.is_none() || start_time(pid) == start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let me = std::process::id() as i32;
        let st = start_time(me).expect("own start time");
        assert!(is_alive(me, Some(st)));
        assert!(!is_alive(me, Some(st + 1)));
        assert!(!is_alive(0, None));
    }
}
