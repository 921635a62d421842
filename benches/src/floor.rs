//! The machine's trap floor (issue 17): what the bare interception mechanisms cost on this
//! machine, measured once per run beside the sentry's rows, so that a report shows what bounds
//! each of the sentry's ratios. The measurements are `hako_sentry::platform::floor` (shared with
//! the sentry's `platform_bench` example): native getppid, an in-thread `SECCOMP_RET_TRAP` +
//! SIGSYS handler, a seccomp user-notification round trip between two processes without and with
//! `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`, and a spinning shared-memory round trip across two CPUs.
//!
//! From them the shell-work table gets its "floor x" column: the lowest ratio to runc that any
//! design intercepting each call could reach here, `(runc_s + traps × sigsys_floor) / runc_s`
//! ([`lower_bound`]); the syscall table shows the user-notification floor beside the sentry's
//! getpid.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Rounds of each measurement (the median is kept).
pub const ROUNDS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FloorRow {
    /// `native`, `sigsys`, `notify`, `notify_sync` or `spin`.
    pub key: String,
    pub label: String,
    /// Median over the rounds, ns per call.
    pub ns: Option<f64>,
    /// Calls per round.
    pub calls: u64,
    pub rounds: usize,
    /// Why there is no figure (one line; "skipped: ..." where the machine cannot have one).
    pub error: Option<String>,
    /// Wall time of the row's rounds, s.
    pub took_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TrapFloor {
    pub rows: Vec<FloorRow>,
    /// Wall time of the whole measurement, s.
    pub took_s: f64,
    /// Why nothing was measured.
    pub error: Option<String>,
}

impl TrapFloor {
    /// The figure of one row.
    pub fn ns(&self, key: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.key == key).and_then(|r| r.ns)
    }

    /// The in-thread SIGSYS trap: the floor of any design that intercepts each call.
    pub fn sigsys_ns(&self) -> Option<f64> {
        self.ns("sigsys")
    }

    /// The user-notification round trip the sentry's default platform stands on: with
    /// SYNC_WAKE_UP where the kernel has it (samecpu), else without (hybrid).
    pub fn notify_ns(&self) -> Option<f64> {
        self.ns("notify_sync").or_else(|| self.ns("notify"))
    }
}

/// Measure every row, `rounds` rounds each (a few hundred ms in all on this machine).
#[cfg(feature = "floor")]
pub fn measure(rounds: usize) -> TrapFloor {
    use hako_sentry::platform::floor::{median_of, Row};
    let t = std::time::Instant::now();
    let rows = Row::ALL
        .iter()
        .map(|&r| {
            let calls = r.calls();
            let t = std::time::Instant::now();
            let (ns, error) = match median_of(rounds, || r.measure(calls)) {
                Ok(ns) => (Some(ns), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            };
            FloorRow {
                key: r.key().into(),
                label: r.label().into(),
                ns,
                calls,
                rounds,
                error,
                took_s: t.elapsed().as_secs_f64(),
            }
        })
        .collect();
    TrapFloor {
        rows,
        took_s: t.elapsed().as_secs_f64(),
        error: None,
    }
}

/// Without the `floor` feature hako-sentry is not in this binary.
#[cfg(not(feature = "floor"))]
pub fn measure(_rounds: usize) -> TrapFloor {
    TrapFloor {
        error: Some(
            "not measured: hako-bench was built without the \"floor\" feature (hako-sentry)".into(),
        ),
        ..Default::default()
    }
}

/// The lowest ratio to runc a design that intercepts each of `traps` calls could reach here:
/// runc's own time plus one in-thread trap (`trap_ns`) per call, over runc's time. None when a
/// figure is missing (no runc row in the run, no trap count, no floor).
pub fn lower_bound(runc_s: Option<f64>, traps: Option<u64>, trap_ns: Option<f64>) -> Option<f64> {
    let (runc, traps, ns) = (runc_s?, traps?, trap_ns?);
    if !(runc > 0.0 && ns.is_finite() && ns >= 0.0) {
        return None;
    }
    Some((runc + traps as f64 * ns / 1e9) / runc)
}

/// The "trap floor on this machine" table.
pub fn table(f: &TrapFloor) -> String {
    let mut o = String::new();
    let rounds = f.rows.first().map_or(ROUNDS, |r| r.rounds);
    let _ = writeln!(
        o,
        "\ntrap floor on this machine (ns per call, median of {rounds} rounds, no sentry involved; measured in {:.2} s)",
        f.took_s
    );
    for r in &f.rows {
        let what = match r.key.as_str() {
            "sigsys" => "  floor of any per-call interception (\"floor x\" in the shell work)",
            "notify_sync" => "  floor of the samecpu platform",
            "notify" => "  floor of the hybrid platform",
            _ => "",
        };
        match (r.ns, &r.error) {
            (Some(ns), _) => {
                let _ = writeln!(o, "  {:<40} {:>9.1}{what}", r.label, ns);
            }
            (None, e) => {
                let _ = writeln!(
                    o,
                    "  {:<40} {:>9}  {}",
                    r.label,
                    "-",
                    e.as_deref().unwrap_or("")
                );
            }
        }
    }
    if let Some(e) = &f.error {
        let _ = writeln!(o, "  {e}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor() -> TrapFloor {
        let row = |key: &str, ns: Option<f64>, error: Option<&str>| FloorRow {
            key: key.into(),
            label: format!("the {key} row"),
            ns,
            calls: 100,
            rounds: 3,
            error: error.map(String::from),
            took_s: 0.01,
        };
        TrapFloor {
            rows: vec![
                row("native", Some(180.0), None),
                row("sigsys", Some(2500.0), None),
                row("notify", Some(31000.0), None),
                row("notify_sync", Some(5000.0), None),
                row("spin", None, Some("skipped: 1 CPU usable here")),
            ],
            took_s: 0.3,
            error: None,
        }
    }

    #[test]
    fn the_lower_bound_adds_one_floor_trap_per_call_to_runc() {
        // find: runc 64 ms, 15 600 traps at 2.5 µs → (0.064 + 0.039) / 0.064.
        let b = lower_bound(Some(0.064), Some(15_600), Some(2500.0)).unwrap();
        assert!((b - 1.609_375).abs() < 1e-9, "{b}");
        // No traps: runc itself.
        assert_eq!(lower_bound(Some(1.1), Some(0), Some(2500.0)), Some(1.0));
        // Missing runc (not in the run, or no best run), traps or floor: no bound.
        assert_eq!(lower_bound(None, Some(15_600), Some(2500.0)), None);
        assert_eq!(lower_bound(Some(0.0), Some(15_600), Some(2500.0)), None);
        assert_eq!(lower_bound(Some(0.064), None, Some(2500.0)), None);
        assert_eq!(lower_bound(Some(0.064), Some(15_600), None), None);
        assert_eq!(lower_bound(Some(0.064), Some(1), Some(f64::NAN)), None);
    }

    #[test]
    fn the_floor_picks_its_rows() {
        let f = floor();
        assert_eq!(f.sigsys_ns(), Some(2500.0));
        assert_eq!(f.notify_ns(), Some(5000.0));
        let mut old_kernel = f.clone();
        old_kernel.rows.retain(|r| r.key != "notify_sync");
        assert_eq!(old_kernel.notify_ns(), Some(31000.0));
        assert_eq!(TrapFloor::default().sigsys_ns(), None);
    }

    #[test]
    fn the_table_shows_figures_and_reasons() {
        let t = table(&floor());
        assert!(t.contains("trap floor on this machine"), "{t}");
        assert!(t.contains("the sigsys row") && t.contains("2500.0"), "{t}");
        assert!(t.contains("skipped: 1 CPU usable here"), "{t}");
        let none = table(&TrapFloor {
            error: Some("not measured: no floor".into()),
            ..Default::default()
        });
        assert!(none.contains("not measured: no floor"), "{none}");
    }

    #[test]
    fn the_floor_round_trips_through_json() {
        let f = floor();
        let j = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<TrapFloor>(&j).unwrap(), f);
        // Fields added later default.
        let old: TrapFloor =
            serde_json::from_str(r#"{"rows": [{"key": "sigsys", "ns": 2.0}]}"#).unwrap();
        assert_eq!(old.sigsys_ns(), Some(2.0));
    }

    /// The real measurement, where this binary has it: every row has a figure or a reason.
    #[cfg(feature = "floor")]
    #[test]
    fn a_real_floor_has_a_figure_or_a_reason_per_row() {
        // SAFETY: geteuid has no side effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: not root");
            return;
        }
        let f = measure(1);
        assert_eq!(f.rows.len(), 5);
        for r in &f.rows {
            match (r.ns, &r.error) {
                (Some(ns), None) => assert!(ns.is_finite() && ns > 0.0, "{r:?}"),
                // Only what the machine may lack: the flag (Linux < 6.6), a second CPU.
                (None, Some(e)) if r.key == "notify_sync" => {
                    assert!(e.contains("SYNC_WAKE_UP"), "{r:?}")
                }
                (None, Some(e)) if r.key == "spin" => assert!(e.starts_with("skipped:"), "{r:?}"),
                _ => panic!("{r:?}"),
            }
        }
        assert!(f.error.is_none() && f.took_s > 0.0, "{f:?}");
    }
}
