//! The results: every sample (JSON), the summary table with ratios (terminal).

use std::fmt::Write as _;

use crate::model::{Category, Kind, Report, Sample, SubjectReport};
use crate::stats::{ratio, summarize, Stats};

const MIB: f64 = 1024.0;

impl SubjectReport {
    pub fn new(name: &str, kind: Kind, category: Category, workload: &str) -> SubjectReport {
        SubjectReport {
            name: name.to_string(),
            kind,
            category,
            workload: workload.to_string(),
            version: None,
            baseline: category.baseline().to_string(),
            first_run_ms: None,
            samples: vec![],
            startup_ms: None,
            cpu_ms: None,
            runtime_rss_mib: None,
            sandbox_rss_mib: None,
            cgroup_peak_mib: None,
            peak_mib: None,
            startup_ratio: None,
            cpu_ratio: None,
            memory_ratio: None,
            failed_samples: 0,
            syscall: vec![],
            getpid_ns: None,
            read_ns: None,
            getpid_ratio: None,
            density: None,
            density_note: None,
            gave_up: None,
            trap: None,
            net: None,
            shell: None,
        }
    }

    /// Fill the statistics from the samples.
    pub fn summarize(&mut self) {
        let good: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| !s.warmup && s.error.is_none())
            .collect();
        self.failed_samples = self.samples.iter().filter(|s| s.error.is_some()).count();
        self.startup_ms = summarize(&good.iter().map(|s| s.total_ms).collect::<Vec<_>>());
        self.cpu_ms = summarize(&good.iter().map(|s| s.cpu_ms()).collect::<Vec<_>>());
        self.runtime_rss_mib = summarize(
            &good
                .iter()
                .map(|s| s.runtime_maxrss_kb as f64 / MIB)
                .collect::<Vec<_>>(),
        );
        self.sandbox_rss_mib = summarize(
            &good
                .iter()
                .filter_map(|s| s.sandbox_maxrss_kb)
                .map(|k| k as f64 / MIB)
                .collect::<Vec<_>>(),
        );
        self.cgroup_peak_mib = summarize(
            &good
                .iter()
                .filter_map(|s| s.cgroup_peak_kb)
                .map(|k| k as f64 / MIB)
                .collect::<Vec<_>>(),
        );
        self.peak_mib = summarize(
            &good
                .iter()
                .map(|s| s.peak_kb() as f64 / MIB)
                .collect::<Vec<_>>(),
        );
        self.getpid_ns = summarize(&self.syscall.iter().map(|s| s.getpid_ns).collect::<Vec<_>>());
        self.read_ns = summarize(&self.syscall.iter().map(|s| s.read_ns).collect::<Vec<_>>());
    }
}

impl Report {
    /// Ratios against each category's baseline (crun, runsc, qemu-microvm, hako-container-hello).
    /// getpid cost of the sentry is compared with runsc; of containers with crun.
    pub fn compute_ratios(&mut self) {
        let med = |name: &str, f: &dyn Fn(&SubjectReport) -> Option<Stats>| {
            self.subjects
                .iter()
                .find(|s| s.name == name)
                .and_then(f)
                .map(|s| s.median)
        };
        let mut ratios = Vec::new();
        for s in &self.subjects {
            let b = &s.baseline;
            ratios.push((
                ratio(s.startup_ms.map(|x| x.median), med(b, &|x| x.startup_ms)),
                ratio(s.cpu_ms.map(|x| x.median), med(b, &|x| x.cpu_ms)),
                ratio(s.peak_mib.map(|x| x.median), med(b, &|x| x.peak_mib)),
                // Best of N for the loop: a microbenchmark's noise on a shared machine only adds.
                ratio(
                    s.getpid_ns.map(|x| x.min),
                    self.subjects
                        .iter()
                        .find(|x| {
                            x.name
                                == if s.category == Category::Sentry {
                                    "runsc"
                                } else {
                                    "crun"
                                }
                        })
                        .and_then(|x| x.getpid_ns)
                        .map(|x| x.min),
                ),
            ));
        }
        for (s, (a, cpu, b, c)) in self.subjects.iter_mut().zip(ratios) {
            s.startup_ratio = a;
            s.cpu_ratio = cpu;
            s.memory_ratio = b;
            s.getpid_ratio = c;
        }
        self.microvm_split = crate::microvm::split_rows(self);
        crate::shellwork::apply_floor(&mut self.subjects, self.trap_floor.as_ref());
    }

    pub fn table(&self) -> String {
        let mut o = String::new();
        let f1 = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
        let f2 = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        let rx = |v: Option<f64>| v.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "startup = create→start→exit→delete (ms, {} runs after {} warm-up, interleaved); cpu-ms = user+sys CPU of runtime and sandbox; memory = MiB; ratio = subject / baseline (lower is better)",
            self.settings.runs, self.settings.warmup
        );
        let _ = writeln!(
            o,
            "{:<10} {:<21} {:>8} {:>8} {:>7} {:>8} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>6}  baseline",
            "category",
            "subject",
            "median",
            "p90",
            "spread",
            "ratio",
            "cpu-ms",
            "cpu-rat",
            "runtime",
            "sandbox",
            "cg-peak",
            "mem-rat",
            "fails",
        );
        for cat in [
            Category::Container,
            Category::Sentry,
            Category::Microvm,
            Category::Wasm,
        ] {
            for s in self.subjects.iter().filter(|s| s.category == cat) {
                let _ = writeln!(
                    o,
                    "{:<10} {:<21} {:>8} {:>8} {:>7} {:>8} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>6}  {}",
                    cat.name(),
                    s.name,
                    f2(s.startup_ms.map(|x| x.median)),
                    f2(s.startup_ms.map(|x| x.p90)),
                    f2(s.startup_ms.map(|x| x.spread)),
                    rx(s.startup_ratio),
                    f1(s.cpu_ms.map(|x| x.median)),
                    rx(s.cpu_ratio),
                    f1(s.runtime_rss_mib.map(|x| x.median)),
                    f1(s.sandbox_rss_mib.map(|x| x.median)),
                    f1(s.cgroup_peak_mib.map(|x| x.median)),
                    rx(s.memory_ratio),
                    s.failed_samples,
                    s.baseline
                );
            }
        }
        if self
            .subjects
            .iter()
            .any(|s| s.first_run_ms.is_some() && s.name.starts_with("hako-wasm"))
        {
            for s in self
                .subjects
                .iter()
                .filter(|s| s.name.starts_with("hako-wasm"))
            {
                let _ = writeln!(
                    o,
                    "  {} first run (probe): {} ms",
                    s.name,
                    f2(s.first_run_ms)
                );
            }
        }
        o.push_str(&crate::microvm::split_table(self));
        if let Some(v) = self.vmm_synthetic.as_ref().and_then(|v| v.restore.as_ref()) {
            o.push_str(&crate::vmmrestore::table(v));
        }
        if self.subjects.iter().any(|s| !s.syscall.is_empty()) {
            let _ = writeln!(
                o,
                "\nsyscall cost inside the sandbox (ns per call, best of {} runs of {} loops)",
                self.settings.syscall_runs, self.settings.syscall_loops
            );
            let notify = self.trap_floor.as_ref().and_then(|f| f.notify_ns());
            let _ = writeln!(
                o,
                "{:<10} {:<21} {:>10} {:>10} {:>10} {:>13}",
                "category", "subject", "getpid", "pread64", "ratio", "notify floor"
            );
            for s in self.subjects.iter().filter(|s| !s.syscall.is_empty()) {
                let _ = writeln!(
                    o,
                    "{:<10} {:<21} {:>10} {:>10} {:>10} {:>13}",
                    s.category.name(),
                    s.name,
                    f1(s.getpid_ns.map(|x| x.min)),
                    f1(s.read_ns.map(|x| x.min)),
                    rx(s.getpid_ratio),
                    if s.name.starts_with("hako-sentry") {
                        f1(notify)
                    } else {
                        String::new()
                    }
                );
            }
            let _ = writeln!(
                o,
                "  (ratio: getpid vs runsc for the sentry category, vs crun otherwise; notify floor: a bare seccomp user-notification round trip on this machine, with SYNC_WAKE_UP where the kernel has it, the least a trap costs the sentry's default platform)"
            );
        }
        if let Some(f) = &self.trap_floor {
            o.push_str(&crate::floor::table(f));
        }
        let dens: Vec<&SubjectReport> = self
            .subjects
            .iter()
            .filter(|s| s.density.is_some())
            .collect();
        if !dens.is_empty() {
            let _ = writeln!(
                o,
                "\ndensity: idle sandboxes started one after another, then all killed and deleted (guest Rss/Pss: microVM guest RAM of all of them, MiB; Pss below Rss = shared with the template)"
            );
            let _ = writeln!(
                o,
                "{:<21} {:>9} {:>10} {:>10} {:>12} {:>12} {:>12}  note",
                "subject", "started", "total ms", "ms each", "MiB each", "guest Rss", "guest Pss"
            );
            for s in dens {
                let d = s.density.as_ref().unwrap();
                let each = |v: f64| {
                    if d.started > 0 {
                        Some(v / d.started as f64)
                    } else {
                        None
                    }
                };
                let _ = writeln!(
                    o,
                    "{:<21} {:>9} {:>10} {:>10} {:>12} {:>12} {:>12}  {}",
                    s.name,
                    format!("{}/{}", d.started, d.requested),
                    f1(Some(d.total_ms)),
                    f1(each(d.total_ms)),
                    f2(d.cgroup_usage_kb.and_then(|k| each(k as f64 / MIB))),
                    f2(d.guest_rss_kb.map(|k| k as f64 / MIB)),
                    f2(d.guest_pss_kb.map(|k| k as f64 / MIB)),
                    d.error.clone().unwrap_or_default()
                );
            }
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(o, "\nskipped:");
            for s in &self.skipped {
                let _ = writeln!(o, "  {:<21} {}", s.name, s.reason);
            }
        }
        for s in self.subjects.iter().filter(|s| s.gave_up.is_some()) {
            let _ = writeln!(o, "  {}: {}", s.name, s.gave_up.clone().unwrap_or_default());
        }
        for s in self.subjects.iter().filter(|s| s.failed_samples > 0) {
            if let Some(e) = s.samples.iter().find_map(|x| x.error.clone()) {
                let _ = writeln!(
                    o,
                    "  {} had {} failed samples, e.g.: {}",
                    s.name, s.failed_samples, e
                );
            }
        }
        o
    }
}
