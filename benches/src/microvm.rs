//! The microvm create-to-exit split: where a microVM's time goes (VMM start, kernel boot, agent
//! setup, start → exit) and what the VMM costs in memory beyond the guest's RAM, for
//!
//! - `hako-microvm`: read from the `microvm-timings.json` its host process writes into the
//!   sandbox's state directory (see `hako_microvm::timings`, docs/backends/microvm.md);
//! - `qemu-microvm`: the plain-qemu peer; its `/init` prints the guest's `CLOCK_BOOTTIME` when it
//!   starts, the harness timestamps that line on qemu's stdout and samples qemu's smaps then;
//! - hako's own VMM with a synthetic guest ([`measure_synthetic`], when the `vmm` feature is
//!   built and `/dev/kvm` opens): `Vmm::new` → the guest's first instruction, and the forked
//!   VMM process's memory beyond guest RAM while that guest waits. Where KVM cannot boot Linux
//!   (this project's machines: `kvm_pvm`) that is all hako's VMM can show.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::model::{Category, MicrovmSplit, Report, SplitRow, SyntheticVmm};
use crate::stats::{ratio, summarize};

/// Guest RAM of the plain-qemu peer (`-m`) and of the synthetic VMM guest; hako-microvm's default.
pub const GUEST_MIB: u64 = 128;
/// The line the plain-qemu peer's `/init` prints first: `hako-bench-boot uptime_ns=<N>`.
pub const BOOT_MARK: &str = "hako-bench-boot";
/// The brief's goals where hardware virtualization exists (Firecracker promises ≤ 125 ms to
/// /sbin/init and ≤ 5 MiB).
pub const GOAL_BOOT_TO_EXIT_MS: f64 = 100.0;
pub const GOAL_VMM_MIB: f64 = 5.0;
/// The microvm subject pinned to a cold boot (`io.hako.microvm.boot=cold`), measured in the same
/// run as `hako-microvm` (snapshot boot, the default).
pub const COLD_NAME: &str = "hako-microvm-cold";
/// The issue's target for snapshot create→exit against cold create→exit (qemu engine).
pub const GOAL_SNAPSHOT_RATIO: f64 = 0.25;

/// Name of the synthetic hako VMM row.
pub const SYNTHETIC_NAME: &str = "hako-vmm-synthetic";

/// Read the timings file the microvm backend's host process left in the sandbox's state
/// directory, with hako-microvm's own reader.
#[cfg(feature = "vmm")]
pub fn read_timings(state_dir: &Path) -> Result<MicrovmSplit, String> {
    let path = state_dir.join(hako_microvm::timings::FILE);
    let t = hako_microvm::timings::Timings::read(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(MicrovmSplit {
        engine: t.engine,
        boot: t.boot,
        accel: t.accel,
        guest_mib: t.guest_mib,
        vmm_start_ms: t.vmm_start_ms,
        kernel_boot_ms: t.kernel_boot_ms,
        agent_setup_ms: t.agent_setup_ms,
        ready_ms: Some(t.ready_ms),
        run_ms: t.run_ms,
        vmm_rss_kib: t.vmm_rss_kib,
        guest_rss_kib: t.guest_rss_kib,
        ..Default::default()
    })
}

/// Without the `vmm` feature hako-microvm (and its timings file format) is not in this binary.
#[cfg(not(feature = "vmm"))]
pub fn read_timings(_state_dir: &Path) -> Result<MicrovmSplit, String> {
    Err("hako-bench was built without the \"vmm\" feature (hako-microvm)".into())
}

/// The guest uptime in a `hako-bench-boot uptime_ns=<N>` (or `hako-bench-exit=0
/// uptime_ns=<N>`) line.
pub fn parse_uptime_ns(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix("uptime_ns="))
        .and_then(|v| v.trim().parse().ok())
}

/// The plain-qemu peer's split from what the harness saw on its stdout: when (since spawn) the
/// boot line came, with which guest uptime, and when the exit line came.
pub fn qemu_peer_split(
    boot_line_at: Duration,
    uptime_ns: u64,
    exit_line_at: Option<Duration>,
    rss: Option<hako_contract::proc::VmRss>,
) -> MicrovmSplit {
    let ready = boot_line_at.as_secs_f64() * 1e3;
    let kernel = uptime_ns as f64 / 1e6;
    MicrovmSplit {
        engine: "qemu".into(),
        accel: "tcg".into(),
        guest_mib: GUEST_MIB,
        vmm_start_ms: Some(ready - kernel),
        kernel_boot_ms: Some(kernel),
        agent_setup_ms: None,
        ready_ms: Some(ready),
        run_ms: exit_line_at.map(|e| e.saturating_sub(boot_line_at).as_secs_f64() * 1e3),
        vmm_rss_kib: rss.map(|r| r.vmm_kib),
        guest_rss_kib: rss.map(|r| r.guest_kib),
        ..Default::default()
    }
}

fn median(v: impl Iterator<Item = f64>) -> Option<f64> {
    summarize(&v.collect::<Vec<_>>()).map(|s| s.median)
}

fn row(subject: &str, engine: String, xs: &[&MicrovmSplit]) -> SplitRow {
    let kib = |k: u64| k as f64 / 1024.0;
    SplitRow {
        subject: subject.to_string(),
        engine,
        n: xs.len(),
        vmm_start_ms: median(xs.iter().filter_map(|s| s.vmm_start_ms)),
        kernel_boot_ms: median(xs.iter().filter_map(|s| s.kernel_boot_ms)),
        agent_setup_ms: median(xs.iter().filter_map(|s| s.agent_setup_ms)),
        run_ms: median(xs.iter().filter_map(|s| s.run_ms)),
        boot_to_exit_ms: median(xs.iter().filter_map(|s| s.boot_to_exit_ms())),
        vmm_rss_mib: median(xs.iter().filter_map(|s| s.vmm_rss_kib).map(kib)),
        guest_rss_mib: median(xs.iter().filter_map(|s| s.guest_rss_kib).map(kib)),
        boot_to_exit_ratio: None,
        vmm_rss_ratio: None,
    }
}

/// The split rows of a report: each microvm subject per engine (counted samples only), then
/// the synthetic hako VMM; ratios against the qemu-microvm peer (not for the synthetic row).
pub fn split_rows(r: &Report) -> Vec<SplitRow> {
    let mut rows = Vec::new();
    for s in r
        .subjects
        .iter()
        .filter(|s| s.category == Category::Microvm)
    {
        let good: Vec<&MicrovmSplit> = s
            .samples
            .iter()
            .filter(|x| !x.warmup && x.error.is_none())
            .filter_map(|x| x.microvm.as_ref())
            .collect();
        let mut engines: Vec<String> = good.iter().map(|x| x.engine_label()).collect();
        engines.sort();
        engines.dedup();
        for e in engines {
            let xs: Vec<&MicrovmSplit> = good
                .iter()
                .copied()
                .filter(|x| x.engine_label() == e)
                .collect();
            rows.push(row(&s.name, e, &xs));
        }
    }
    if let Some(v) = &r.vmm_synthetic {
        if !v.samples.is_empty() {
            let xs: Vec<&MicrovmSplit> = v.samples.iter().collect();
            rows.push(row(SYNTHETIC_NAME, "hako/kvm".into(), &xs));
        }
    }
    let peer = rows
        .iter()
        .find(|x| x.subject == Category::Microvm.baseline())
        .cloned();
    if let Some(p) = peer {
        // Not for the synthetic guest: a stub against a booting Linux compares nothing alike.
        for x in rows.iter_mut().filter(|x| x.subject != SYNTHETIC_NAME) {
            x.boot_to_exit_ratio = ratio(x.boot_to_exit_ms, p.boot_to_exit_ms);
            x.vmm_rss_ratio = ratio(x.vmm_rss_mib, p.vmm_rss_mib);
        }
    }
    rows
}

/// The "microvm create-to-exit split" table (empty when there is nothing to show).
pub fn split_table(r: &Report) -> String {
    let rows = split_rows(r);
    let mut o = String::new();
    let synthetic = r.vmm_synthetic.as_ref();
    if rows.is_empty() && synthetic.and_then(|v| v.error.as_ref()).is_none() {
        return o;
    }
    let f1 = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    let f2 = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    let rx = |v: Option<f64>| v.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        o,
        "\nmicrovm create-to-exit split (medians; ms, VMM RSS = VM process RSS beyond guest RAM, MiB; ratio vs {})",
        Category::Microvm.baseline()
    );
    let _ = writeln!(
        o,
        "{:<19} {:<9} {:>3} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "subject",
        "engine",
        "n",
        "vmm-start",
        "kernel",
        "agent",
        "start→exit",
        "boot→exit",
        "b→e-rat",
        "vmm-rss",
        "rss-rat",
        "guest-rss",
    );
    for x in &rows {
        let _ = writeln!(
            o,
            "{:<19} {:<9} {:>3} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
            x.subject,
            x.engine,
            x.n,
            f1(x.vmm_start_ms),
            f1(x.kernel_boot_ms),
            f1(x.agent_setup_ms),
            f1(x.run_ms),
            f1(x.boot_to_exit_ms),
            rx(x.boot_to_exit_ratio),
            f2(x.vmm_rss_mib),
            rx(x.vmm_rss_ratio),
            f2(x.guest_rss_mib),
        );
    }
    let _ = writeln!(
        o,
        "{:<19} {:<9} {:>3} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8} {:>8}",
        "goal (brief §4)",
        "hw virt",
        "",
        "",
        "",
        "",
        "",
        format!("≤{GOAL_BOOT_TO_EXIT_MS:.0}"),
        "",
        format!("≤{GOAL_VMM_MIB:.0}"),
    );
    let _ = writeln!(
        o,
        "  vmm-start = VM spawn → ready minus the guest's uptime then (VMM start, firmware, the kernel before its clock starts); kernel = guest CLOCK_BOOTTIME at agent/init start; agent = agent start → Ready (guest clock); boot→exit = VM spawn → workload exit (host clock). Under TCG the guest clock is emulated time."
    );
    if let Some(line) = snapshot_vs_cold(r) {
        let _ = writeln!(o, "{line}");
    }
    if let Some(v) = synthetic {
        if !v.samples.is_empty() {
            let _ = writeln!(
                o,
                "  {} = {}; vmm-start = Vmm::new → the guest's first instruction; fork-inherited RSS median {} MiB",
                SYNTHETIC_NAME,
                v.label(),
                f2(median(
                    v.samples
                        .iter()
                        .filter_map(|s| s.fork_rss_kib)
                        .map(|k| k as f64 / 1024.0)
                ))
            );
        }
        if let Some(e) = &v.error {
            let _ = writeln!(o, "  {SYNTHETIC_NAME}: {e}");
        }
    }
    o
}

/// Median create → start → exit (the CLI's create, start and wait, host clock) of a subject's
/// counted samples.
fn create_to_exit_ms(r: &Report, subject: &str) -> Option<f64> {
    let s = r.subjects.iter().find(|s| s.name == subject)?;
    median(
        s.samples
            .iter()
            .filter(|x| !x.warmup && x.error.is_none())
            .filter_map(|x| Some(x.create_ms? + x.start_ms? + x.wait_ms?)),
    )
}

/// "snapshot vs cold": hako-microvm (snapshot boot) against hako-microvm-cold, same run.
pub fn snapshot_vs_cold(r: &Report) -> Option<String> {
    let snap = create_to_exit_ms(r, "hako-microvm")?;
    let cold = create_to_exit_ms(r, COLD_NAME)?;
    let ratio = snap / cold;
    Some(format!(
        "  snapshot vs cold boot (same run, CLI create → start → exit, medians): {snap:.1} ms vs {cold:.1} ms = {ratio:.2}x (target ≤ {GOAL_SNAPSHOT_RATIO:.2}x{})",
        if ratio <= GOAL_SNAPSHOT_RATIO { ": met" } else { ": not met" }
    ))
}

/// The guest-RAM Rss and Pss (KiB) of a microVM sandbox's VM process, found through the pid its
/// host process recorded in the state directory. The guest RAM of a restored VM is its private
/// mapping of the template's RAM file.
#[cfg(feature = "vmm")]
pub fn guest_memory(state_dir: &Path) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(state_dir.join("microvm-vm.pid")).ok()?;
    let pid: i32 = s.split_whitespace().next()?.parse().ok()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let ram = smaps.lines().find_map(|l| {
        let path = l.split_whitespace().nth(5)?;
        (path.contains(hako_microvm::template::DIR) && path.ends_with("/ram")).then_some(path)
    });
    let r = hako_contract::proc::split_vm_rss_file(&smaps, GUEST_MIB << 20, ram)?;
    Some((r.guest_kib, r.guest_pss_kib))
}

#[cfg(not(feature = "vmm"))]
pub fn guest_memory(_state_dir: &Path) -> Option<(u64, u64)> {
    None
}

/// Run `warmup + runs` synthetic VMs one after another (warm-up ones not kept), through
/// hako-microvm's own measurement ([`hako_microvm::measure`]).
#[cfg(feature = "vmm")]
pub fn measure_synthetic(
    scratch: &Path,
    cache: &Path,
    runs: usize,
    warmup: usize,
    timeout: Duration,
) -> SyntheticVmm {
    let mut out = SyntheticVmm::default();
    let guest = match hako_microvm::measure::SyntheticGuest::new(scratch, GUEST_MIB) {
        Ok(g) => g,
        Err(e) => {
            out.error = Some(format!("not measured: {e:#}"));
            return out;
        }
    };
    let _ = std::fs::create_dir_all(cache);
    let (runs_linux, why) = hako_microvm::hako_engine::probe(cache);
    out.runs_linux = runs_linux;
    out.probe = why;
    let mut errors = 0;
    for i in 0..warmup + runs {
        if crate::procs::interrupted() {
            break;
        }
        match guest.measure(timeout) {
            Ok(r) if i >= warmup => out.samples.push(MicrovmSplit {
                engine: "hako".into(),
                accel: "kvm".into(),
                guest_mib: GUEST_MIB,
                vmm_start_ms: r.vmm_start.map(|d| d.as_secs_f64() * 1e3),
                vmm_build_ms: Some(r.vmm_build.as_secs_f64() * 1e3),
                fork_rss_kib: Some(r.fork_rss_kib),
                vmm_rss_kib: r.rss.map(|r| r.vmm_kib),
                guest_rss_kib: r.rss.map(|r| r.guest_kib),
                ..Default::default()
            }),
            Ok(_) => {}
            Err(e) => {
                errors += 1;
                out.error = Some(format!("{errors} failed run(s), last: {e:#}"));
                if errors >= 3 && out.samples.is_empty() {
                    break;
                }
            }
        }
    }
    out
}

/// Without the `vmm` feature hako's VMM is not in this binary.
#[cfg(not(feature = "vmm"))]
pub fn measure_synthetic(
    _scratch: &Path,
    _cache: &Path,
    _runs: usize,
    _warmup: usize,
    _timeout: Duration,
) -> SyntheticVmm {
    SyntheticVmm {
        error: Some(
            "not measured: hako-bench was built without the \"vmm\" feature (hako's VMM)".into(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_lines_parse() {
        assert_eq!(
            parse_uptime_ns("hako-bench-boot uptime_ns=1234567\r"),
            Some(1234567)
        );
        assert_eq!(parse_uptime_ns("hako-bench-exit=0 uptime_ns=99"), Some(99));
        assert_eq!(parse_uptime_ns("hako-bench-boot"), None);
        assert_eq!(parse_uptime_ns("uptime_ns=x"), None);
    }

    #[test]
    fn peer_split_arithmetic() {
        let rss = hako_contract::proc::VmRss {
            vmm_kib: 2048,
            guest_kib: 512,
            guest_mapping_kib: 131072,
            guest_pss_kib: 512,
        };
        let s = qemu_peer_split(
            Duration::from_millis(1500),
            1_200_000_000,
            Some(Duration::from_millis(1540)),
            Some(rss),
        );
        assert!((s.vmm_start_ms.unwrap() - 300.0).abs() < 1e-9);
        assert_eq!(s.kernel_boot_ms, Some(1200.0));
        assert_eq!(s.agent_setup_ms, None);
        assert!((s.run_ms.unwrap() - 40.0).abs() < 1e-9);
        assert!((s.boot_to_exit_ms().unwrap() - 1540.0).abs() < 1e-9);
        assert_eq!((s.vmm_rss_kib, s.guest_rss_kib), (Some(2048), Some(512)));
        assert_eq!(s.engine_label(), "qemu/tcg");
        // No exit line: no run time, so no boot→exit either.
        let s = qemu_peer_split(Duration::from_millis(10), 5_000_000, None, None);
        assert_eq!(
            (s.run_ms, s.boot_to_exit_ms(), s.vmm_rss_kib),
            (None, None, None)
        );
    }

    #[cfg(feature = "vmm")]
    #[test]
    fn backend_timings_file_reads_into_the_split() {
        // The fields hako_microvm::timings::Timings writes.
        let d = std::env::temp_dir().join(format!("hako-bench-split-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(hako_microvm::timings::FILE);
        std::fs::write(
            &p,
            r#"{"engine":"qemu","accel":"tcg","guest_mib":128,"host_setup_ms":8.2,"spawn_ms":5.7,
               "ready_ms":1381.6,"agent_start_ns":1003874830,"ready_ns":1112922923,
               "vmm_start_ms":268.7,"kernel_boot_ms":1003.8,"agent_setup_ms":109.0,
               "vmm_rss_kib":76280,"guest_rss_kib":32768,"run_ms":144.8,"vm_exit_ms":15.8}"#,
        )
        .unwrap();
        let s = read_timings(&d).unwrap();
        assert_eq!(s.engine_label(), "qemu/tcg");
        assert_eq!(s.kernel_boot_ms, Some(1003.8));
        assert_eq!(s.vmm_rss_kib, Some(76280));
        assert!((s.boot_to_exit_ms().unwrap() - (1381.6 + 144.8)).abs() < 1e-9);
        std::fs::write(&p, "{not json").unwrap();
        assert!(read_timings(&d)
            .unwrap_err()
            .contains(hako_microvm::timings::FILE));
        std::fs::remove_dir_all(&d).unwrap();
        assert!(read_timings(&d).is_err());
    }
}
