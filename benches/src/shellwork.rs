//! Shell work that is heavy on forks and I/O (issue 17), for every subject that runs the syscall
//! loops and, for the sentry, for each of its platforms in the same run:
//!
//! - **find**: `find /usr -name '*.py' | xargs cat | wc -l` over a generated tree of Python-like
//!   sources in the busybox rootfs ([`TREE_PKGS`] × [`TREE_SUBDIRS`] directories of
//!   [`TREE_FILES`] files, like a Python standard library: ~2 000 `.py` files, ~10 MB);
//! - **dd**: `dd if=/dev/zero bs=1M count=200 | sha256sum`, 200 MB through a pipe.
//!
//! Block sizes, as busybox uses them (checked with strace): `dd` reads and writes 1 MiB per call
//! (`bs=1M`; its default would be 512 bytes), `sha256sum` and `wc` read 4 KiB per call, `cat`
//! copies a whole file with one `sendfile` (16 MiB chunks). So dd+sha256sum is ~51 200 reads of
//! 4 KiB on the reading side: a cost per trap shows there as much as a cost per byte.
//!
//! The sentry runs with `io.hako.sentry.stats=true`; the account it leaves in its state directory
//! gives the number of trapped calls of each run, so the report shows both the number of traps
//! and the wall time (hence the cost per trap).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::{Category, SubjectReport};
use crate::subjects::{Ctx, Driver, Subject};
use crate::workloads::Workloads;

pub const TREE_PKGS: usize = 24;
pub const TREE_SUBDIRS: usize = 8;
pub const TREE_FILES: usize = 10;
/// Where the tree goes in the busybox rootfs (the only thing under `/usr` there).
const TREE_DIR: &str = "usr/lib/python-tree";

/// The sentry platforms measured, each as its own row.
pub const SENTRY_PLATFORMS: &[&str] = &["samecpu", "hybrid", "ptrace"];

/// The two workloads: (short name, shell command).
pub const WORKLOADS: [(&str, &str); 2] = [
    ("find", "find /usr -name '*.py' | xargs cat | wc -l"),
    (
        "dd",
        "dd if=/dev/zero bs=1M count=200 2>/dev/null | sha256sum",
    ),
];

/// sha256 of 200 MiB of zeros: what `dd` piped into `sha256sum` must print.
const DD_SHA256: &str = "72abf2ca8f36943ebe2e49ca3a51d409ca5f0bfcffab6c9d25643c17c32889da";

/// Lines of file `i` of the tree (varied, 20–299).
fn lines_of(i: usize) -> usize {
    20 + (i * 7919) % 280
}

/// Write the tree (once: a marker holds the total line count); returns the total line count of
/// its `.py` files, which `wc -l` must print.
fn make_tree(rootfs: &Path) -> Result<usize> {
    let top = rootfs.join(TREE_DIR);
    let marker = top.join("LINES");
    let total: usize = (0..TREE_PKGS * TREE_SUBDIRS * TREE_FILES)
        .map(lines_of)
        .sum();
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(&total.to_string()) {
        return Ok(total);
    }
    let _ = std::fs::remove_dir_all(&top);
    let mut n = 0;
    for p in 0..TREE_PKGS {
        for s in 0..TREE_SUBDIRS {
            let d = top.join(format!("pkg{p:02}")).join(format!("sub{s}"));
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            // A file find must skip.
            std::fs::write(d.join("README.txt"), "not python\n")?;
            for f in 0..TREE_FILES {
                let mut text = String::new();
                for l in 0..lines_of(n) {
                    let _ = writeln!(
                        text,
                        "def f_{p}_{s}_{f}_{l}(x):  # generated for hako bench: {}",
                        l * 31 % 97
                    );
                }
                std::fs::write(d.join(format!("mod{f}.py")), text)?;
                n += 1;
            }
        }
    }
    std::fs::write(&marker, total.to_string())?;
    Ok(total)
}

/// Put the tree and the applets the workloads use in the busybox rootfs; returns the expected
/// output of each workload.
pub fn install(w: &Workloads) -> Result<[String; 2], String> {
    let r = w.busybox_rootfs.as_ref().map_err(|e| e.clone())?;
    for applet in ["find", "xargs", "cat", "wc", "dd", "sha256sum"] {
        let l = r.join("bin").join(applet);
        if std::fs::symlink_metadata(&l).is_err() {
            std::os::unix::fs::symlink("busybox", &l)
                .map_err(|e| format!("linking {}: {e}", l.display()))?;
        }
    }
    let lines = make_tree(r).map_err(|e| format!("generating the source tree: {e:#}"))?;
    Ok([lines.to_string(), DD_SHA256.to_string()])
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellRow {
    /// The subject, or `hako-sentry/<platform>`.
    pub variant: String,
    pub workload: String,
    /// Best of the runs, s (from `start` to the sandbox's exit).
    pub best_s: Option<f64>,
    pub runs_s: Vec<f64>,
    /// Trapped calls of the best run, where the subject counts them (the sentry).
    pub traps: Option<u64>,
    /// The most frequent trapped calls of that run.
    pub top: Vec<(String, u64)>,
    pub errors: Vec<String>,
    /// The lowest ratio to runc any per-call interception could reach here with this row's
    /// traps (see [`crate::floor::lower_bound`]); set with the report's ratios.
    #[serde(default)]
    pub floor_ratio: Option<f64>,
}

/// The rows of one subject (one per workload, per sentry platform).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ShellReport {
    pub rows: Vec<ShellRow>,
}

/// The sentry's account of one run: total trapped calls, and the top 4 by count.
type Account = (u64, Vec<(String, u64)>);

fn read_stats(p: &Path) -> Result<Account> {
    let j: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
    )?;
    let mut v: Vec<(String, u64)> = j["emulated"]
        .as_object()
        .context("no \"emulated\" in the sentry's stats")?
        .iter()
        .filter_map(|(k, n)| n.as_u64().map(|n| (k.clone(), n)))
        .collect();
    let total = v.iter().map(|x| x.1).sum();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(4);
    Ok((total, v))
}

/// The variants of one subject: itself, or the sentry once per platform (with its account on).
fn variants(s: &Subject) -> Vec<(String, Subject)> {
    if s.category != Category::Sentry || s.name != "hako-sentry" {
        return vec![(s.name.clone(), s.clone())];
    }
    SENTRY_PLATFORMS
        .iter()
        .map(|p| {
            let mut v = s.clone();
            v.name = format!("{}-{p}", s.name);
            if let Driver::Oci { annotations, .. } = &mut v.driver {
                annotations.push(("io.hako.sentry.platform".into(), p.to_string()));
                annotations.push(("io.hako.sentry.stats".into(), "true".into()));
            }
            (format!("{}/{p}", s.name), v)
        })
        .collect()
}

impl Subject {
    /// One run of `cmd`: (seconds from start to exit, the sentry's account if it left one).
    fn shell_run(
        &self,
        ctx: &Ctx,
        label: &str,
        cmd: &str,
        expect: &str,
    ) -> Result<(f64, Option<Account>)> {
        let me = Subject {
            expect: Some(expect.to_string()),
            ..self.clone()
        };
        let stats = ctx.scratch(&format!("{}-{label}.stats.json", self.slug()));
        let _ = std::fs::remove_file(&stats);
        let args = vec!["/bin/sh".to_string(), "-c".into(), cmd.into()];
        let (s, _) = me.oci_lifecycle_keeping(ctx, label, &args, Some(&stats))?;
        if let Some(e) = s.error {
            bail!("{e}");
        }
        let secs = (s.start_ms.unwrap_or(0.0) + s.wait_ms.unwrap_or(0.0)) / 1e3;
        let acct = if stats.exists() {
            Some(read_stats(&stats)?)
        } else {
            None
        };
        Ok((secs, acct))
    }
}

/// Run both workloads `runs` times for every subject of the syscall loops (and every sentry
/// platform), round-robin per run.
pub fn measure(
    active: &mut [(Subject, SubjectReport)],
    ctx: &Ctx,
    runs: usize,
    expect: &[String; 2],
    progress: &dyn Fn(String),
) {
    let mut reports: Vec<ShellReport> = active.iter().map(|_| ShellReport::default()).collect();
    let subjects: Vec<(usize, Vec<(String, Subject)>)> = active
        .iter()
        .enumerate()
        .filter(|(_, (s, r))| s.syscall_bench && r.gave_up.is_none())
        .map(|(i, (s, _))| (i, variants(s)))
        .collect();
    for (i, vs) in &subjects {
        for (name, _) in vs {
            for (w, _) in WORKLOADS {
                reports[*i].rows.push(ShellRow {
                    variant: name.clone(),
                    workload: w.to_string(),
                    best_s: None,
                    runs_s: vec![],
                    traps: None,
                    top: vec![],
                    errors: vec![],
                    floor_ratio: None,
                });
            }
        }
    }
    for r in 0..runs {
        for (wi, (w, cmd)) in WORKLOADS.iter().enumerate() {
            for (i, vs) in &subjects {
                for (name, v) in vs {
                    if crate::procs::interrupted() {
                        return;
                    }
                    progress(format!("{name}: {w} run {}/{runs}", r + 1));
                    let row = reports[*i]
                        .rows
                        .iter_mut()
                        .find(|x| &x.variant == name && x.workload == *w)
                        .expect("row made above");
                    match v.shell_run(ctx, &format!("{w}{r}"), cmd, &expect[wi]) {
                        Ok((secs, acct)) => {
                            row.runs_s.push(secs);
                            if row.best_s.is_none_or(|b| secs < b) {
                                row.best_s = Some(secs);
                                if let Some((n, top)) = acct {
                                    row.traps = Some(n);
                                    row.top = top;
                                }
                            }
                        }
                        Err(e) => row.errors.push(format!("run {}: {e:#}", r + 1)),
                    }
                }
            }
        }
    }
    for ((_, rep), sr) in active.iter_mut().zip(reports) {
        if !sr.rows.is_empty() {
            rep.shell = Some(sr);
        }
    }
}

/// How many steps [`measure`] reports.
pub fn planned(active: &[(Subject, SubjectReport)], runs: usize) -> usize {
    active
        .iter()
        .filter(|(s, _)| s.syscall_bench)
        .map(|(s, _)| variants(s).len() * WORKLOADS.len() * runs)
        .sum()
}

/// runc's best run of workload `w`, where runc ran it.
fn runc_s<'a>(rows: impl IntoIterator<Item = &'a ShellRow>, w: &str) -> Option<f64> {
    rows.into_iter()
        .find(|r| r.variant == "runc" && r.workload == w)
        .and_then(|r| r.best_s)
}

/// A row's floor ratio: runc's best run of the same workload plus one in-thread trap of `floor`
/// per trapped call of the row.
fn floor_ratio(
    rows: &[&ShellRow],
    r: &ShellRow,
    floor: Option<&crate::floor::TrapFloor>,
) -> Option<f64> {
    crate::floor::lower_bound(
        runc_s(rows.iter().copied(), &r.workload),
        r.traps,
        floor.and_then(|f| f.sigsys_ns()),
    )
}

/// Fill every row's [`ShellRow::floor_ratio`] from the run's trap floor.
pub fn apply_floor(subjects: &mut [SubjectReport], floor: Option<&crate::floor::TrapFloor>) {
    let ratios: Vec<Vec<Option<f64>>> = {
        let rows: Vec<&ShellRow> = subjects
            .iter()
            .filter_map(|s| s.shell.as_ref())
            .flat_map(|r| &r.rows)
            .collect();
        subjects
            .iter()
            .map(|s| {
                s.shell.as_ref().map_or(vec![], |sh| {
                    sh.rows
                        .iter()
                        .map(|r| floor_ratio(&rows, r, floor))
                        .collect()
                })
            })
            .collect()
    };
    for (s, rs) in subjects.iter_mut().zip(ratios) {
        if let Some(sh) = s.shell.as_mut() {
            for (r, x) in sh.rows.iter_mut().zip(rs) {
                r.floor_ratio = x;
            }
        }
    }
}

/// The table: seconds, ratio to runc's best run, the floor ratio, traps and µs per trap.
pub fn table(subjects: &[SubjectReport], floor: Option<&crate::floor::TrapFloor>) -> String {
    let rows: Vec<&ShellRow> = subjects
        .iter()
        .filter_map(|s| s.shell.as_ref())
        .flat_map(|r| &r.rows)
        .collect();
    let mut o = String::new();
    if rows.is_empty() {
        return o;
    }
    let base = |w: &str| runc_s(rows.iter().copied(), w);
    let _ = writeln!(
        o,
        "\nshell work, best run (s from start to exit; ratio to runc; trapped calls, wall µs per trap)"
    );
    for (w, cmd) in WORKLOADS {
        let _ = writeln!(o, "  {w}: {cmd}");
    }
    let _ = writeln!(
        o,
        "  floor x: the lowest ratio to runc any design that intercepts each call could reach on this machine, (runc s + traps × in-thread SIGSYS trap) / runc s{}",
        match floor.and_then(|f| f.sigsys_ns()) {
            Some(ns) => format!(" (the trap: {:.2} µs, measured in this run)", ns / 1e3),
            None => " (\"-\": no trap floor or no runc row in this run)".into(),
        }
    );
    let _ = writeln!(
        o,
        "{:<21} {:>5} {:>8} {:>7} {:>7} {:>9} {:>8}  most trapped",
        "subject", "work", "s", "x runc", "floor x", "traps", "µs/trap"
    );
    for r in &rows {
        let ratio = match (r.best_s, base(&r.workload)) {
            (Some(s), Some(b)) if b > 0.0 => format!("{:.2}", s / b),
            _ => "-".into(),
        };
        let per = match (r.best_s, r.traps) {
            (Some(s), Some(n)) if n > 0 => format!("{:.1}", s * 1e6 / n as f64),
            _ => "-".into(),
        };
        let top: Vec<String> = r.top.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(
            o,
            "{:<21} {:>5} {:>8} {:>7} {:>7} {:>9} {:>8}  {}",
            r.variant,
            r.workload,
            r.best_s.map_or("-".into(), |s| format!("{s:.3}")),
            ratio,
            floor_ratio(&rows, r, floor).map_or("-".into(), |x| format!("{x:.2}")),
            r.traps.map_or("-".into(), |n| n.to_string()),
            per,
            top.join(", ")
        );
        for e in &r.errors {
            let _ = writeln!(o, "  {} {}: {e}", r.variant, r.workload);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_counts_its_lines() {
        let d = tempfile::tempdir().unwrap();
        let total = make_tree(d.path()).unwrap();
        let mut counted = 0;
        let mut files = 0;
        for p in std::fs::read_dir(d.path().join(TREE_DIR)).unwrap() {
            let p = p.unwrap().path();
            if !p.is_dir() {
                continue;
            }
            for s in std::fs::read_dir(p).unwrap() {
                for f in std::fs::read_dir(s.unwrap().path()).unwrap() {
                    let f = f.unwrap().path();
                    if f.extension().is_some_and(|e| e == "py") {
                        files += 1;
                        counted += std::fs::read_to_string(&f).unwrap().lines().count();
                    }
                }
            }
        }
        assert_eq!(files, TREE_PKGS * TREE_SUBDIRS * TREE_FILES);
        assert_eq!(counted, total);
        // A second call reuses the tree.
        assert_eq!(make_tree(d.path()).unwrap(), total);
    }

    #[test]
    fn the_dd_digest_is_that_of_200_mib_of_zeros() {
        use std::io::Write;
        let Ok(mut c) = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("SKIPPED: no sha256sum on the host");
            return;
        };
        let zeros = vec![0u8; 1 << 20];
        let mut i = c.stdin.take().unwrap();
        for _ in 0..200 {
            i.write_all(&zeros).unwrap();
        }
        drop(i);
        let out = c.wait_with_output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(DD_SHA256));
    }

    fn row(variant: &str, workload: &str, best_s: f64, traps: Option<u64>) -> ShellRow {
        ShellRow {
            variant: variant.into(),
            workload: workload.into(),
            best_s: Some(best_s),
            runs_s: vec![best_s],
            traps,
            top: vec![],
            errors: vec![],
            floor_ratio: None,
        }
    }

    fn subject(name: &str, cat: Category, rows: Vec<ShellRow>) -> SubjectReport {
        let mut s = SubjectReport::new(name, crate::model::Kind::Backend, cat, "/bin/true");
        s.shell = Some(ShellReport { rows });
        s
    }

    fn floor(sigsys_ns: f64) -> crate::floor::TrapFloor {
        crate::floor::TrapFloor {
            rows: vec![crate::floor::FloorRow {
                key: "sigsys".into(),
                label: "in-thread trap".into(),
                ns: Some(sigsys_ns),
                calls: 10,
                rounds: 3,
                error: None,
                took_s: 0.01,
            }],
            took_s: 0.1,
            error: None,
        }
    }

    #[test]
    fn the_floor_column_uses_the_runs_runc_row() {
        let mut subjects = vec![
            subject(
                "runc",
                Category::Container,
                vec![
                    row("runc", "find", 0.064, None),
                    row("runc", "dd", 1.1, None),
                ],
            ),
            subject(
                "hako-sentry",
                Category::Sentry,
                vec![
                    row("hako-sentry/samecpu", "find", 0.3, Some(15_600)),
                    row("hako-sentry/samecpu", "dd", 1.8, Some(51_600)),
                ],
            ),
        ];
        let f = floor(2500.0);
        apply_floor(&mut subjects, Some(&f));
        let rows = &subjects[1].shell.as_ref().unwrap().rows;
        // (0.064 + 15 600 × 2.5 µs) / 0.064 and (1.1 + 51 600 × 2.5 µs) / 1.1.
        assert!((rows[0].floor_ratio.unwrap() - 1.609_375).abs() < 1e-9);
        assert!((rows[1].floor_ratio.unwrap() - 1.117_272_7).abs() < 1e-6);
        // runc counts no traps: no bound for its own rows.
        assert_eq!(
            subjects[0].shell.as_ref().unwrap().rows[0].floor_ratio,
            None
        );
        let t = table(&subjects, Some(&f));
        assert!(t.contains("floor x") && t.contains("2.50 µs"), "{t}");
        let line = t
            .lines()
            .find(|l| l.starts_with("hako-sentry/samecpu") && l.contains(" find "))
            .unwrap();
        assert!(line.contains(" 4.69 ") && line.contains(" 1.61 "), "{line}");

        // Without runc in the run, or without a floor: "-".
        subjects.remove(0);
        apply_floor(&mut subjects, Some(&f));
        assert_eq!(
            subjects[0].shell.as_ref().unwrap().rows[0].floor_ratio,
            None
        );
        let t = table(&subjects, None);
        let line = t
            .lines()
            .find(|l| l.starts_with("hako-sentry/samecpu") && l.contains(" find "))
            .unwrap();
        assert!(!line.contains("1.61"), "{line}");
        assert!(t.contains("no trap floor or no runc row"), "{t}");
    }

    #[test]
    fn stats_are_summed_and_ranked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        std::fs::write(
            &p,
            r#"{"emulated": {"read": 10, "write": 3, "openat": 5, "close": 5, "fstat": 1}, "refused": {}}"#,
        )
        .unwrap();
        let (n, top) = read_stats(&p).unwrap();
        assert_eq!(n, 24);
        assert_eq!(
            top,
            vec![
                ("read".into(), 10),
                ("close".into(), 5),
                ("openat".into(), 5),
                ("write".into(), 3)
            ]
        );
    }
}
