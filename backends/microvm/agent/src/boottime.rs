//! The guest's boot time as the agent sees it, reported to the host before Ready.

use hako_agent::proto::Frame;

/// `CLOCK_BOOTTIME` (ns) when `main()` began: the guest kernel's boot time as far as the guest
/// can tell (that clock starts at the kernel's timekeeping init, so the very first instructions
/// of the kernel are not in it; under TCG it is the emulator's virtual time).
pub(crate) static AGENT_START_NS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

pub(crate) fn boottime_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The end of each set-up step so far: its name and `CLOCK_BOOTTIME` then (the Steps frame).
static STEPS: std::sync::Mutex<Vec<(&'static str, u64)>> = std::sync::Mutex::new(Vec::new());

/// Note that the set-up step `name` ends now.
pub(crate) fn mark(name: &'static str) {
    let now = boottime_ns();
    if let Ok(mut s) = STEPS.lock() {
        s.push((name, now));
    }
}

/// Forget the steps so far (a restored guest's set-up starts at Go: what the template did
/// before its save is not this sandbox's).
pub(crate) fn restart_steps() {
    if let Ok(mut s) = STEPS.lock() {
        s.clear();
    }
}

/// The Steps frame sent right before BootTimes.
pub(crate) fn steps() -> Frame {
    let s = STEPS.lock().map(|s| s.clone()).unwrap_or_default();
    Frame::Steps(s.into_iter().map(|(n, t)| (n.to_string(), t)).collect())
}

/// The BootTimes frame sent right before Ready.
pub(crate) fn boot_times() -> Frame {
    Frame::BootTimes {
        agent_start_ns: AGENT_START_NS.load(std::sync::atomic::Ordering::Relaxed),
        ready_ns: boottime_ns(),
    }
}
