//! hako's VMM restoring a snapshot, beside building a VM, in the same run: the synthetic guest
//! of [`crate::microvm::measure_synthetic`], each VM in its own forked, jailed, seccomp-filtered
//! VMM process as the backend's hako engine runs one ([`hako_microvm::measure`]).
//!
//! Per round, one `Vmm::new` and one `Vmm::restore` of the same guest (snapshotted once while
//! it waits halted), each timed to the guest's first instruction. Then `copies` restored copies
//! at once, idle, for the memory they share with the snapshot's file: each copy's guest memory
//! Rss against Pss, and the restored VMM's own Rss beyond guest memory.

use std::fmt::Write as _;
#[cfg(feature = "vmm")]
use std::path::Path;
#[cfg(feature = "vmm")]
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Issue 15's target for restore → the guest's first instruction, ms.
pub const GOAL_RESTORE_MS: f64 = 5.0;

/// One restored copy's memory while all `copies` are up, KiB.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CopyMemory {
    /// The VMM process's Rss beyond guest memory.
    pub vmm_kib: Option<u64>,
    /// Its mapping of the snapshot's memory file: resident, proportional, its own written pages.
    pub guest_rss_kib: Option<u64>,
    pub guest_pss_kib: Option<u64>,
    pub guest_private_dirty_kib: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VmmRestore {
    pub guest_mib: u64,
    /// `Vmm::new` → first guest instruction, ms, one per round.
    pub new_ms: Vec<f64>,
    /// `Vmm::restore` → first guest instruction, ms, one per round.
    pub restore_ms: Vec<f64>,
    /// Where a restore's time went (the last round's, `Phases::describe`).
    pub restore_phases: String,
    /// The VMM process's Rss beyond guest memory: built (per round) and restored (per round).
    pub new_vmm_kib: Vec<u64>,
    pub restored_vmm_kib: Vec<u64>,
    /// The copies up at once.
    pub copies: Vec<CopyMemory>,
    pub error: Option<String>,
}

/// Measure `rounds` rounds (after one warm-up) and `copies` copies at once.
#[cfg(feature = "vmm")]
pub fn measure(scratch: &Path, rounds: usize, copies: usize, timeout: Duration) -> VmmRestore {
    let guest_mib = crate::microvm::GUEST_MIB;
    let mut out = VmmRestore {
        guest_mib,
        ..Default::default()
    };
    let _ = std::fs::create_dir_all(scratch);
    let guest = match hako_microvm::measure::SyntheticGuest::new(scratch, guest_mib) {
        Ok(g) => g,
        Err(e) => {
            out.error = Some(format!("not measured: {e:#}"));
            return out;
        }
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for round in 0..=rounds {
        if crate::procs::interrupted() {
            break;
        }
        let built = guest.measure(timeout);
        let restored = guest
            .measure_restore(1, timeout)
            .and_then(|mut v| v.pop().ok_or_else(|| anyhow::anyhow!("no restored copy")));
        match (built, restored) {
            (Ok(b), Ok(r)) if round > 0 => {
                if let (Some(n), Some(x)) = (b.vmm_start, r.to_first_exit) {
                    out.new_ms.push(ms(n));
                    out.restore_ms.push(ms(x));
                }
                out.new_vmm_kib.extend(b.rss.map(|m| m.vmm_kib));
                out.restored_vmm_kib.extend(r.rss.map(|m| m.vmm_kib));
                out.restore_phases = r.phases;
            }
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => {
                out.error = Some(format!("round {round}: {e:#}"));
                return out;
            }
        }
    }
    match guest.measure_restore(copies, timeout) {
        Ok(runs) => {
            out.copies = runs
                .iter()
                .map(|r| CopyMemory {
                    vmm_kib: r.rss.map(|m| m.vmm_kib),
                    guest_rss_kib: r.memory.as_ref().map(|m| m.rss_kib),
                    guest_pss_kib: r.memory.as_ref().map(|m| m.pss_kib),
                    guest_private_dirty_kib: r.memory.as_ref().map(|m| m.private_dirty_kib),
                })
                .collect()
        }
        Err(e) => out.error = Some(format!("{copies} copies at once: {e:#}")),
    }
    out
}

/// Without the `vmm` feature hako's VMM is not in this binary.
#[cfg(not(feature = "vmm"))]
pub fn measure(
    _scratch: &std::path::Path,
    _rounds: usize,
    _copies: usize,
    _timeout: std::time::Duration,
) -> VmmRestore {
    VmmRestore {
        error: Some(
            "not measured: hako-bench was built without the \"vmm\" feature (hako's VMM)".into(),
        ),
        ..Default::default()
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn median_kib(v: &[u64]) -> Option<f64> {
    median(&v.iter().map(|&k| k as f64).collect::<Vec<_>>())
}

/// The "hako VMM restore" table (empty when nothing was measured and nothing went wrong).
pub fn table(r: &VmmRestore) -> String {
    let mut o = String::new();
    if r.new_ms.is_empty() && r.copies.is_empty() && r.error.is_none() {
        return o;
    }
    let f = |v: Option<f64>, unit: &str| {
        v.map(|x| format!("{x:.2} {unit}"))
            .unwrap_or_else(|| "-".into())
    };
    let mib = |k: Option<f64>| k.map(|k| k / 1024.0);
    let _ = writeln!(
        o,
        "\nhako VMM, synthetic guest ({} MiB), each VM a forked, jailed, seccomp-filtered VMM process (medians of {} rounds)",
        r.guest_mib,
        r.new_ms.len()
    );
    let _ = writeln!(
        o,
        "  Vmm::new → first guest instruction       {:>10}   VMM RSS beyond guest memory {}",
        f(median(&r.new_ms), "ms"),
        f(mib(median_kib(&r.new_vmm_kib)), "MiB")
    );
    let _ = writeln!(
        o,
        "  Vmm::restore → first guest instruction   {:>10}   VMM RSS beyond guest memory {}   (target ≤ {GOAL_RESTORE_MS} ms)",
        f(median(&r.restore_ms), "ms"),
        f(mib(median_kib(&r.restored_vmm_kib)), "MiB")
    );
    if let (Some(n), Some(x)) = (median(&r.new_ms), median(&r.restore_ms)) {
        if n > 0.0 {
            let _ = writeln!(o, "  restore / new: {:.2}x", x / n);
        }
    }
    if !r.restore_phases.is_empty() {
        let _ = writeln!(o, "  a restore's phases: {}", r.restore_phases);
    }
    if !r.copies.is_empty() {
        let sum =
            |g: fn(&CopyMemory) -> Option<u64>| -> u64 { r.copies.iter().filter_map(g).sum() };
        let _ = writeln!(
            o,
            "  {} restored copies up at once: guest memory Rss {} KiB, Pss {} KiB, private dirty {} KiB (sum over the copies; each maps the snapshot file copy-on-write); VMM RSS beyond guest memory {} per copy",
            r.copies.len(),
            sum(|c| c.guest_rss_kib),
            sum(|c| c.guest_pss_kib),
            sum(|c| c.guest_private_dirty_kib),
            f(
                mib(median_kib(
                    &r.copies.iter().filter_map(|c| c.vmm_kib).collect::<Vec<_>>()
                )),
                "MiB"
            ),
        );
    }
    if let Some(e) = &r.error {
        let _ = writeln!(o, "  hako VMM restore: {e}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_both_rows_the_ratio_and_the_sharing() {
        let r = VmmRestore {
            guest_mib: 128,
            new_ms: vec![9.0, 10.0, 11.0],
            restore_ms: vec![2.0, 1.0, 3.0],
            restore_phases: "read state 0.1 ms".into(),
            new_vmm_kib: vec![2048],
            restored_vmm_kib: vec![3072],
            copies: vec![
                CopyMemory {
                    vmm_kib: Some(3072),
                    guest_rss_kib: Some(100),
                    guest_pss_kib: Some(50),
                    guest_private_dirty_kib: Some(4),
                };
                2
            ],
            error: None,
        };
        let t = table(&r);
        assert!(t.contains("Vmm::new → first guest instruction"), "{t}");
        assert!(t.contains("10.00 ms"), "{t}");
        assert!(t.contains("2.00 ms"), "{t}");
        assert!(t.contains("restore / new: 0.20x"), "{t}");
        assert!(t.contains("2 restored copies up at once: guest memory Rss 200 KiB, Pss 100 KiB, private dirty 8 KiB"), "{t}");
        assert!(t.contains("3.00 MiB per copy"), "{t}");
        assert_eq!(table(&VmmRestore::default()), "");
    }

    /// The measurement itself, where it can run: both rows filled and the copies share.
    #[cfg(feature = "vmm")]
    #[test]
    fn synthetic_restore_is_measured_beside_new() {
        // SAFETY: geteuid has no arguments.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/kvm").exists() {
            eprintln!("SKIP: needs root (the VMM's jail) and /dev/kvm");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let r = measure(dir.path(), 3, 10, Duration::from_secs(30));
        if let Some(e) = &r.error {
            if e.starts_with("not measured") {
                eprintln!("SKIP: {e}");
                return;
            }
            panic!("{e}");
        }
        assert_eq!(r.new_ms.len(), 3, "{r:?}");
        assert_eq!(r.restore_ms.len(), 3, "{r:?}");
        assert_eq!(r.copies.len(), 10, "{r:?}");
        let rss: u64 = r.copies.iter().filter_map(|c| c.guest_rss_kib).sum();
        let pss: u64 = r.copies.iter().filter_map(|c| c.guest_pss_kib).sum();
        assert!(pss < rss, "the copies share the snapshot's pages: {r:?}");
        println!("{}", table(&r));
    }
}
