//! Where a microVM sandbox's time goes from the host process's start to the workload's exit,
//! and what the VM process costs in memory beyond the guest's RAM. The host process writes it
//! to `<state>/microvm-timings.json` ([`FILE`]) once the guest is ready, and again when the
//! workload has exited; `delete` removes it. `hako bench` reads it (see docs/benchmarks.md).
//!
//! The split of "spawn → Ready" (host clock) into three parts uses the guest's own clock, sent
//! by the agent in its BootTimes frame: `CLOCK_BOOTTIME` at the agent's `main()` and just
//! before Ready.
//!
//! - **kernel boot** = guest `CLOCK_BOOTTIME` at the agent's `main()`. That clock starts when the
//!   guest kernel initializes timekeeping, so it leaves out the kernel's very first
//!   instructions (PVH entry, early page tables, the parts of `start_kernel` before
//!   `timekeeping_init`), which land in "VMM start" instead.
//! - **agent setup** = guest time from the agent's `main()` to Ready (mounts, config disk,
//!   overlay, the workload's fork and setup up to its exec).
//! - **VMM start** = host time spawn → Ready minus the guest's uptime at Ready: everything before
//!   the guest clock started (the VMM's own start, firmware, the kernel's first instructions),
//!   plus the agent port's latency for the Ready frame.
//!
//! Under TCG (no usable KVM) the guest clock is the emulator's virtual clock, which follows the
//! host clock while the vCPU runs but is not the same clock: the three parts then add up to
//! `ready_ms` by construction, and "VMM start" absorbs any drift between the two clocks (it can
//! even come out slightly negative if the guest clock ran fast).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The file in the sandbox's state directory.
pub const FILE: &str = "microvm-timings.json";
/// Its temporary name while it is written (`<file>.tmp`, renamed over [`FILE`]).
pub const TMP_FILE: &str = "microvm-timings.json.tmp";

/// The contents of [`FILE`]. Times in ms on the host's monotonic clock unless named `_ns`
/// (guest `CLOCK_BOOTTIME`); memory in KiB.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// `qemu` or `hako`.
    pub engine: String,
    /// `snapshot` (restored from a template) or `cold` (booted from scratch).
    #[serde(default)]
    pub boot: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    pub guest_mib: u64,
    /// Host process entry → just before the engine starts the VM (cgroup join, socket pair).
    pub host_setup_ms: f64,
    /// The engine's spawn call (qemu: fork + exec; hako: fork).
    pub spawn_ms: f64,
    /// Spawn start → the agent's Ready frame received.
    pub ready_ms: f64,
    /// Guest `CLOCK_BOOTTIME` at the agent's `main()`, ns (from the BootTimes frame).
    pub agent_start_ns: Option<u64>,
    /// Guest `CLOCK_BOOTTIME` just before the agent sent Ready, ns.
    pub ready_ns: Option<u64>,
    /// The agent's set-up steps in order, each with its cost in guest ms (from the Steps frame,
    /// [`step_costs`]); they add up to `agent_setup_ms`, bar the Ready frame's own sending.
    #[serde(default)]
    pub agent_steps_ms: Vec<(String, f64)>,
    /// See the module docs: `ready_ms - ready_ns`.
    pub vmm_start_ms: Option<f64>,
    /// `agent_start_ns`, in ms.
    pub kernel_boot_ms: Option<f64>,
    /// `ready_ns - agent_start_ns`, in ms.
    pub agent_setup_ms: Option<f64>,
    /// Rss of the VM process outside the guest-RAM mapping, measured once after Ready (rule:
    /// [`hako_contract::proc::split_vm_rss`]).
    pub vmm_rss_kib: Option<u64>,
    /// Rss of the guest-RAM mapping at the same moment (guest memory touched by then).
    pub guest_rss_kib: Option<u64>,
    /// Pss of the guest-RAM mapping: below its Rss when pages are shared (a restored VM's
    /// unwritten pages are the template file's page cache, shared by every copy).
    #[serde(default)]
    pub guest_pss_kib: Option<u64>,
    /// Start frame sent → the workload's Exit frame received.
    pub run_ms: Option<f64>,
    /// Exit frame received → the VM process ended and was reaped (the host process kills it
    /// once the Exit frame is in: the guest's own reset would take longer).
    pub vm_exit_ms: Option<f64>,
    /// The host process's timeline ([`mark`]): each point's name and its time in ms since the
    /// host process's entry. From entry to Ready it says where the host's own time goes
    /// (cgroup, qemu's exec, its QMP greeting, the restore, Go, Ready); after Start, where the
    /// time between the Exit frame and the host process's exit goes.
    #[serde(default)]
    pub host_marks_ms: Vec<(String, f64)>,
}

thread_local! {
    static MARKS: std::cell::RefCell<Vec<(&'static str, Instant)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Note that the host process reached the point `what` now (for [`Timings::host_marks_ms`] and
/// `create --debug`). A few hundred ns each: an `Instant` pushed on a thread-local list.
pub fn mark(what: &'static str) {
    let now = Instant::now();
    MARKS.with(|m| m.borrow_mut().push((what, now)));
}

/// The points noted so far, in ms since `since`.
pub fn marks_since(since: Instant) -> Vec<(String, f64)> {
    MARKS.with(|m| {
        m.borrow()
            .iter()
            .map(|(w, t)| (w.to_string(), ms_between(since, *t)))
            .collect()
    })
}

/// Kernel boot / agent setup / VMM start, ms (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub vmm_start_ms: f64,
    pub kernel_boot_ms: f64,
    pub agent_setup_ms: f64,
}

/// Split the host's spawn → Ready time with the guest's two BootTimes readings. None when the
/// readings are inconsistent (Ready before the agent started).
pub fn split(spawn_to_ready: Duration, agent_start_ns: u64, ready_ns: u64) -> Option<Split> {
    let setup_ns = ready_ns.checked_sub(agent_start_ns)?;
    let ms = |ns: u64| ns as f64 / 1e6;
    Some(Split {
        vmm_start_ms: spawn_to_ready.as_secs_f64() * 1e3 - ms(ready_ns),
        kernel_boot_ms: ms(agent_start_ns),
        agent_setup_ms: ms(setup_ns),
    })
}

/// Each step's cost in ms: its end (guest ns) minus the previous step's end, the first's minus
/// `agent_start_ns`. A step that ends before the one before it (never, with one clock) costs 0.
pub fn step_costs(agent_start_ns: u64, steps: &[(String, u64)]) -> Vec<(String, f64)> {
    let mut prev = agent_start_ns;
    steps
        .iter()
        .map(|(name, end)| {
            let cost = end.saturating_sub(prev) as f64 / 1e6;
            prev = prev.max(*end);
            (name.clone(), cost)
        })
        .collect()
}

fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1e3
}

/// The host process's time points up to Ready.
pub struct BootPoints {
    /// Host process entry.
    pub entered: Instant,
    /// Just before `engine.spawn`.
    pub spawn: Instant,
    /// `engine.spawn` returned.
    pub spawned: Instant,
    /// The Ready frame was read.
    pub ready: Instant,
}

impl Timings {
    /// The boot part: the host's time points, the guest's BootTimes (when the agent sent them)
    /// and the VM process's memory, read now from its smaps. `restored_ram` is the template's
    /// RAM file when the VM was restored from one: then there is no kernel boot, "VMM start"
    /// is the restore (the engine's spawn call, which returns once the VM runs), and the
    /// agent's setup runs from the Go frame to Ready.
    pub fn after_ready(
        engine: &str,
        kvm: bool,
        guest_mib: u64,
        p: &BootPoints,
        boot_times: Option<(u64, u64)>,
        vm_pid: libc::pid_t,
        restored_ram: Option<std::path::PathBuf>,
    ) -> Timings {
        let mut t = Timings {
            engine: engine.to_string(),
            boot: if restored_ram.is_some() {
                "snapshot"
            } else {
                "cold"
            }
            .to_string(),
            accel: if kvm { "kvm" } else { "tcg" }.to_string(),
            guest_mib,
            host_setup_ms: ms_between(p.entered, p.spawn),
            spawn_ms: ms_between(p.spawn, p.spawned),
            ready_ms: ms_between(p.spawn, p.ready),
            ..Default::default()
        };
        if let (Some((start, ready)), true) = (boot_times, restored_ram.is_some()) {
            t.agent_start_ns = Some(start);
            t.ready_ns = Some(ready);
            t.vmm_start_ms = Some(t.spawn_ms);
            t.kernel_boot_ms = Some(0.0);
            t.agent_setup_ms = ready.checked_sub(start).map(|d| d as f64 / 1e6);
        } else if let Some((start, ready)) = boot_times {
            t.agent_start_ns = Some(start);
            t.ready_ns = Some(ready);
            if let Some(s) = split(p.ready.saturating_duration_since(p.spawn), start, ready) {
                t.vmm_start_ms = Some(s.vmm_start_ms);
                t.kernel_boot_ms = Some(s.kernel_boot_ms);
                t.agent_setup_ms = Some(s.agent_setup_ms);
            }
        }
        if let Some(r) =
            hako_contract::proc::vm_rss_file(vm_pid, guest_mib << 20, restored_ram.as_deref())
        {
            t.vmm_rss_kib = Some(r.vmm_kib);
            t.guest_rss_kib = Some(r.guest_kib);
            t.guest_pss_kib = Some(r.guest_pss_kib);
        }
        t
    }

    /// The run part: Start sent, Exit frame received, the VM process gone.
    pub fn after_exit(&mut self, started: Instant, exited: Instant, vm_gone: Instant) {
        self.run_ms = Some(ms_between(started, exited));
        self.vm_exit_ms = Some(ms_between(exited, vm_gone));
    }

    /// Write `path` atomically: `<path>.tmp`, renamed over it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
    }

    pub fn read(path: &Path) -> std::io::Result<Timings> {
        let data = std::fs::read(path)?;
        serde_json::from_slice(&data).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_adds_up_to_ready() {
        // Host saw Ready 2000 ms after spawn; the guest's clock read 1500 ms at the agent's
        // main and 1800 ms at Ready: 200 ms before the guest clock, 1500 ms kernel, 300 ms agent.
        let s = split(Duration::from_millis(2000), 1_500_000_000, 1_800_000_000).unwrap();
        assert_eq!(s.kernel_boot_ms, 1500.0);
        assert_eq!(s.agent_setup_ms, 300.0);
        assert!((s.vmm_start_ms - 200.0).abs() < 1e-9);
        assert!((s.vmm_start_ms + s.kernel_boot_ms + s.agent_setup_ms - 2000.0).abs() < 1e-9);
        // A guest clock ahead of the host's shows as a negative VMM start, not hidden.
        let s = split(Duration::from_millis(100), 90_000_000, 120_000_000).unwrap();
        assert!((s.vmm_start_ms + 20.0).abs() < 1e-9);
        // Ready before the agent started: inconsistent.
        assert_eq!(split(Duration::from_millis(100), 5, 4), None);
    }

    #[test]
    fn after_ready_fills_the_split_and_own_memory() {
        let t0 = Instant::now();
        let p = BootPoints {
            entered: t0,
            spawn: t0 + Duration::from_millis(3),
            spawned: t0 + Duration::from_millis(5),
            ready: t0 + Duration::from_millis(1003),
        };
        // Our own pid as the "VM": no 128 MiB guest mapping here, so no memory figures.
        let t = Timings::after_ready(
            "qemu",
            false,
            128,
            &p,
            Some((600_000_000, 900_000_000)),
            std::process::id() as i32,
            None,
        );
        assert_eq!((t.engine.as_str(), t.accel.as_str()), ("qemu", "tcg"));
        assert_eq!(t.boot, "cold");
        assert!((t.host_setup_ms - 3.0).abs() < 1e-6);
        assert!((t.spawn_ms - 2.0).abs() < 1e-6);
        assert!((t.ready_ms - 1000.0).abs() < 1e-6);
        assert_eq!(t.kernel_boot_ms, Some(600.0));
        assert_eq!(t.agent_setup_ms, Some(300.0));
        assert!((t.vmm_start_ms.unwrap() - 100.0).abs() < 1e-6);
        assert_eq!(t.vmm_rss_kib, None);
        // Without BootTimes (an older agent) the split stays empty, the rest is there.
        let t = Timings::after_ready("hako", true, 128, &p, None, 0, None);
        assert_eq!(t.accel, "kvm");
        assert_eq!((t.kernel_boot_ms, t.vmm_start_ms), (None, None));
        assert!(t.ready_ms > 0.0);
        // Restored from a template: no kernel boot, the restore is the spawn call, the agent's
        // setup runs from Go (guest 5.000 s) to Ready (5.030 s).
        let t = Timings::after_ready(
            "qemu",
            false,
            128,
            &p,
            Some((5_000_000_000, 5_030_000_000)),
            0,
            Some("/t/ram".into()),
        );
        assert_eq!(t.boot, "snapshot");
        assert_eq!(t.kernel_boot_ms, Some(0.0));
        assert!((t.vmm_start_ms.unwrap() - 2.0).abs() < 1e-6);
        assert!((t.agent_setup_ms.unwrap() - 30.0).abs() < 1e-6);
    }

    #[test]
    fn step_costs_are_the_gaps_between_step_ends() {
        // Each step costs its end minus the previous end, the first from the agent's start
        // (Go, in a restored guest).
        let steps = [
            ("config".to_string(), 5_004_000_000),
            ("mount-rootfs".to_string(), 5_029_500_000),
            ("odd".to_string(), 5_029_000_000),
        ];
        let c = step_costs(5_000_000_000, &steps);
        let names: Vec<_> = c.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["config", "mount-rootfs", "odd"]);
        assert!((c[0].1 - 4.0).abs() < 1e-6);
        assert!((c[1].1 - 25.5).abs() < 1e-6);
        assert_eq!(c[2].1, 0.0);
    }

    #[test]
    fn marks_are_kept_in_order_relative_to_a_start() {
        let t0 = Instant::now();
        mark("one");
        mark("two");
        let m = marks_since(t0);
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[names.len() - 2..], ["one", "two"]);
        let (a, b) = (m[m.len() - 2].1, m[m.len() - 1].1);
        assert!(0.0 <= a && a <= b, "{a} {b}");
    }

    #[test]
    fn written_atomically_and_read_back() {
        let d = std::env::temp_dir().join(format!("hako-timings-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join(FILE);
        let t0 = Instant::now();
        let mut t = Timings {
            engine: "qemu".into(),
            accel: "tcg".into(),
            guest_mib: 128,
            ready_ms: 2000.0,
            kernel_boot_ms: Some(1500.0),
            vmm_rss_kib: Some(61000),
            ..Default::default()
        };
        t.write(&f).unwrap();
        assert_eq!(Timings::read(&f).unwrap(), t);
        t.after_exit(
            t0,
            t0 + Duration::from_millis(250),
            t0 + Duration::from_millis(260),
        );
        t.write(&f).unwrap();
        let back = Timings::read(&f).unwrap();
        assert!((back.run_ms.unwrap() - 250.0).abs() < 1e-6);
        assert!((back.vm_exit_ms.unwrap() - 10.0).abs() < 1e-6);
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![FILE.to_string()], "no temporary file left");
        assert_eq!(format!("{FILE}.tmp"), TMP_FILE);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
