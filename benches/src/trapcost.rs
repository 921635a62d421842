//! Two measurements made for the sentry's trap path (issue 17), taken for every subject that can
//! run them:
//!
//! - **threads**: the cost of a trapped syscall (`getppid`) while 1, 2 and 4 threads of one
//!   process make them at once (`/bin/threadbench` in the busybox rootfs), and the wall time of
//!   200 000 calls from one thread;
//! - **idle CPU**: the CPU time (user + system, runtime and sandbox) of a sandbox whose workload
//!   sleeps `--idle-secs`, minus the same subject's median `/bin/true` lifecycle, so what is left
//!   is what the sandbox costs while its workload does nothing.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::SubjectReport;
use crate::subjects::{Ctx, Driver, Subject};
use crate::workloads::Workloads;

/// `threadbench CALLS THREADS`: every thread makes CALLS getppid calls (after a short warm-up and
/// a barrier) and times its own loop; prints the wall time from the first start to the last end,
/// and the ns per call a thread saw (its loop's time / CALLS, averaged over the threads).
pub const THREADBENCH_C: &str = r#"#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static long calls;
static pthread_barrier_t go;
struct span { double start, end; };
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static void *loop(void *arg) {
    struct span *s = arg;
    for (int i = 0; i < 100; i++) syscall(SYS_getppid);
    pthread_barrier_wait(&go);
    s->start = now();
    for (long i = 0; i < calls; i++) syscall(SYS_getppid);
    s->end = now();
    return 0;
}
int main(int argc, char **argv) {
    calls = argc > 1 ? atol(argv[1]) : 20000;
    int n = argc > 2 ? atoi(argv[2]) : 1;
    if (n < 1 || n > 64 || calls < 1) { fprintf(stderr, "usage: threadbench CALLS THREADS(1-64)\n"); return 2; }
    pthread_t t[64];
    struct span s[64];
    pthread_barrier_init(&go, 0, n);
    for (int i = 0; i < n; i++) if (pthread_create(&t[i], 0, loop, &s[i])) { perror("pthread_create"); return 1; }
    double first = 0, last = 0, per = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], 0);
        if (i == 0 || s[i].start < first) first = s[i].start;
        if (s[i].end > last) last = s[i].end;
        per += (s[i].end - s[i].start) / calls;
    }
    printf("threads=%d calls=%ld wall_ns=%.0f ns_per_call=%.1f\n", n, calls, last - first, per / n);
    return 0;
}
"#;

/// A WASI module that sleeps once for 10 s (poll_oneoff on the monotonic clock) and returns.
pub const SLEEP10_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 0))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 10000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"#;

/// The thread counts measured.
pub const THREADS: [u32; 3] = [1, 2, 4];
/// Calls of the single-thread timing run (the issue's `200k getppid`); fewer when the loops asked
/// for are short (10 × `--syscall-loops`).
pub const LONG_CALLS: u64 = 200_000;

/// Put `/bin/threadbench` in the busybox rootfs and `/sleep10.wasm` in the wasm rootfs.
pub fn install(w: &Workloads) -> Result<(), String> {
    let bin = w.dir.join("bin");
    let tb = crate::workloads::compile_static(&bin, "threadbench", THREADBENCH_C)?;
    let r = w.busybox_rootfs.as_ref().map_err(|e| e.clone())?;
    let dst = r.join("bin/threadbench");
    std::fs::copy(&tb, &dst).map_err(|e| format!("copying threadbench: {e}"))?;
    let wasm = wat::parse_str(SLEEP10_WAT).map_err(|e| format!("assembling sleep10.wat: {e}"))?;
    std::fs::write(w.wasm_rootfs.join("sleep10.wasm"), wasm)
        .map_err(|e| format!("writing sleep10.wasm: {e}"))?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadCost {
    pub threads: u32,
    /// Best of the runs: wall time / calls per thread, ns.
    pub ns_per_call: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TrapReport {
    pub threads: Vec<ThreadCost>,
    /// Wall time of `long_calls` getppid calls from one thread, s.
    pub long_run_s: Option<f64>,
    pub long_calls: u64,
    pub idle: Option<IdleCpu>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleCpu {
    pub sleep_s: u64,
    /// CPU time of the whole sleeping lifecycle, s.
    pub lifecycle_cpu_s: f64,
    /// The same subject's median `/bin/true` lifecycle CPU time, s (when measured).
    pub true_cpu_s: Option<f64>,
    /// lifecycle_cpu_s − true_cpu_s: what the sandbox cost while idle.
    pub idle_cpu_s: f64,
}

fn parse(out: &str) -> Result<(f64, f64)> {
    let field = |k: &str| -> Result<f64> {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .with_context(|| format!("no {k} in {out:?}"))?
            .parse::<f64>()
            .with_context(|| format!("bad {k} in {out:?}"))
    };
    Ok((field("wall_ns=")?, field("ns_per_call=")?))
}

/// The workload that sleeps `secs` for this subject: the busybox `sleep` where its idle workload
/// is busybox's, the 10-s WASI module for wasm.
fn sleep_args(s: &Subject, secs: u64) -> Option<Vec<String>> {
    let Driver::Oci {
        idle_args: Some(idle),
        ..
    } = &s.driver
    else {
        return None;
    };
    match idle.first().map(String::as_str) {
        Some("/bin/sleep") => Some(vec!["/bin/sleep".into(), secs.to_string()]),
        Some("/sleep.wasm") if secs == 10 => Some(vec!["/sleep10.wasm".into()]),
        _ => None,
    }
}

impl Subject {
    /// One threadbench run inside the sandbox: (wall ns, ns per call).
    fn threadbench(&self, ctx: &Ctx, label: &str, calls: u64, threads: u32) -> Result<(f64, f64)> {
        let args = vec![
            "/bin/threadbench".to_string(),
            calls.to_string(),
            threads.to_string(),
        ];
        let me = Subject {
            expect: Some("ns_per_call=".into()),
            ..self.clone()
        };
        let (_, out) = me.oci_lifecycle(ctx, label, &args)?;
        parse(&out)
    }

    /// The CPU an idle sandbox uses over `secs` (see the module's doc).
    pub fn idle_cpu(&self, ctx: &Ctx, secs: u64, rep: &SubjectReport) -> Result<IdleCpu> {
        let Some(args) = sleep_args(self, secs) else {
            bail!("no sleeping workload for this subject");
        };
        let (s, _) = self.oci_lifecycle(ctx, "idle", &args)?;
        if let Some(e) = s.error {
            bail!("{e}");
        }
        let lifecycle = s.cpu_ms() / 1e3;
        let true_cpu = rep.cpu_ms.map(|c| c.median / 1e3);
        Ok(IdleCpu {
            sleep_s: secs,
            lifecycle_cpu_s: lifecycle,
            true_cpu_s: true_cpu,
            idle_cpu_s: (lifecycle - true_cpu.unwrap_or(0.0)).max(0.0),
        })
    }
}

/// Run both measurements for every subject that can: the thread costs for the subjects of the
/// getpid loop (`runs` runs each, best kept), the idle CPU for every OCI subject (`idle_secs` 0:
/// skipped).
pub fn measure(
    active: &mut [(Subject, SubjectReport)],
    ctx: &Ctx,
    runs: usize,
    loops: u64,
    idle_secs: u64,
    progress: &dyn Fn(String),
) {
    for (s, rep) in active.iter_mut() {
        if rep.gave_up.is_some() || crate::procs::interrupted() {
            continue;
        }
        let mut t = TrapReport::default();
        if s.syscall_bench && runs > 0 {
            for &n in &THREADS {
                progress(format!("{}: getppid with {n} thread(s)", s.name));
                let mut best: Option<f64> = None;
                for r in 0..runs {
                    match s.threadbench(ctx, &format!("thr{n}-{r}"), loops, n) {
                        Ok((_, ns)) => best = Some(best.map_or(ns, |b: f64| b.min(ns))),
                        Err(e) => t.errors.push(format!("{n} threads, run {}: {e:#}", r + 1)),
                    }
                }
                if let Some(ns) = best {
                    t.threads.push(ThreadCost {
                        threads: n,
                        ns_per_call: ns,
                    });
                }
            }
            t.long_calls = LONG_CALLS.min(loops.saturating_mul(10));
            progress(format!("{}: {} getppid calls", s.name, t.long_calls));
            match s.threadbench(ctx, "long", t.long_calls, 1) {
                Ok((wall, _)) => t.long_run_s = Some(wall / 1e9),
                Err(e) => t.errors.push(format!("{} calls: {e:#}", t.long_calls)),
            }
        }
        if idle_secs > 0 && sleep_args(s, idle_secs).is_some() {
            progress(format!("{}: idle for {idle_secs} s", s.name));
            match s.idle_cpu(ctx, idle_secs, rep) {
                Ok(i) => t.idle = Some(i),
                Err(e) => t.errors.push(format!("idle: {e:#}")),
            }
        }
        if !t.threads.is_empty() || t.idle.is_some() || !t.errors.is_empty() {
            rep.trap = Some(t);
        }
    }
}

/// How many steps [`measure`] reports (for the progress bar).
pub fn planned(active: &[(Subject, SubjectReport)], runs: usize, idle_secs: u64) -> usize {
    active
        .iter()
        .map(|(s, _)| {
            let thr = if s.syscall_bench && runs > 0 {
                THREADS.len() + 1
            } else {
                0
            };
            thr + usize::from(idle_secs > 0 && sleep_args(s, idle_secs).is_some())
        })
        .sum()
}

/// The two tables.
pub fn table(subjects: &[SubjectReport]) -> String {
    let mut o = String::new();
    let with_threads: Vec<_> = subjects
        .iter()
        .filter_map(|s| s.trap.as_ref().map(|t| (s, t)))
        .filter(|(_, t)| !t.threads.is_empty() || t.long_run_s.is_some())
        .collect();
    if !with_threads.is_empty() {
        let _ = writeln!(
            o,
            "\ntrapped getppid with threads at once (ns per call one thread sees, best run)"
        );
        let _ = writeln!(
            o,
            "{:<21} {:>10} {:>10} {:>10} {:>16}",
            "subject", "1 thread", "2 threads", "4 threads", "N calls, 1 thread"
        );
        for (s, t) in with_threads {
            let col = |n: u32| {
                t.threads
                    .iter()
                    .find(|c| c.threads == n)
                    .map_or("-".to_string(), |c| format!("{:.1}", c.ns_per_call))
            };
            let _ = writeln!(
                o,
                "{:<21} {:>10} {:>10} {:>10} {:>16}",
                s.name,
                col(1),
                col(2),
                col(4),
                t.long_run_s.map_or("-".to_string(), |x| format!(
                    "{}k: {x:.3} s",
                    t.long_calls / 1000
                ))
            );
        }
    }
    let idle: Vec<_> = subjects
        .iter()
        .filter_map(|s| {
            s.trap
                .as_ref()
                .and_then(|t| t.idle.as_ref())
                .map(|i| (s, i))
        })
        .collect();
    if let Some((_, first)) = idle.first() {
        let _ = writeln!(
            o,
            "\nCPU while idle: a sandbox that sleeps {} s (CPU s, lifecycle minus the /bin/true one)",
            first.sleep_s
        );
        let _ = writeln!(
            o,
            "{:<21} {:>10} {:>12} {:>10}",
            "subject", "idle CPU", "whole run", "/bin/true"
        );
        for (s, i) in idle {
            let _ = writeln!(
                o,
                "{:<21} {:>10.3} {:>12.3} {:>10}",
                s.name,
                i.idle_cpu_s,
                i.lifecycle_cpu_s,
                i.true_cpu_s.map_or("-".to_string(), |x| format!("{x:.3}"))
            );
        }
    }
    for s in subjects {
        for e in s.trap.iter().flat_map(|t| &t.errors) {
            let _ = writeln!(o, "  {}: {e}", s.name);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threadbench_output_parses() {
        let (wall, ns) =
            parse("threads=2 calls=1000 wall_ns=5000000 ns_per_call=5000.0\n").unwrap();
        assert_eq!(wall, 5e6);
        assert_eq!(ns, 5000.0);
        assert!(parse("getpid_ns=1").is_err());
    }

    #[test]
    fn the_sleep10_module_assembles() {
        let m = wat::parse_str(SLEEP10_WAT).unwrap();
        assert_eq!(&m[..4], b"\0asm");
    }

    /// The threaded loop builds and reports what it did, where a static C toolchain exists.
    #[test]
    fn threadbench_runs_natively() {
        let dir = tempfile_dir();
        let bin = match crate::workloads::compile_static(&dir, "threadbench", THREADBENCH_C) {
            Ok(b) => b,
            Err(why) => {
                eprintln!("SKIPPED: no static C toolchain: {why}");
                return;
            }
        };
        let o = std::process::Command::new(&bin)
            .args(["50", "2"])
            .output()
            .unwrap();
        assert!(o.status.success());
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("threads=2 calls=50 "), "{out}");
        parse(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hako-bench-trapcost-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
