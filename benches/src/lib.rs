//! hako's shared benchmark: every available hako backend against the installed peer runtimes
//! (runc, crun, runsc, qemu `-M microvm`, a wasm CLI), on the same workloads, in one run,
//! interleaved round-robin per iteration so machine drift hits everyone alike.
//!
//! Entry points: [`main_with_args`] (argv-style, `args[0]` is the program name) or
//! [`BenchArgs`] (a clap `Args` struct the `hako bench` subcommand can flatten) with [`run`].

pub mod cgroup;
pub mod floor;
pub mod microvm;
pub mod model;
pub mod netbench;
pub mod plot;
pub mod procs;
pub mod report;
pub mod shellwork;
pub mod stats;
pub mod subjects;
pub mod trapcost;
pub mod vmmrestore;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use model::{Category, Machine, Report, Settings, Skipped, SubjectReport};
use subjects::{Ctx, Plan, Subject, BACKENDS, PEERS};

/// Compare hako's backends with runc, crun, runsc, qemu -M microvm and a wasm CLI.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// hako backends to measure (comma-separated; "none" for none)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "container,sentry,microvm,wasm"
    )]
    pub backends: Vec<String>,
    /// Peer runtimes to measure (comma-separated; "none" for none)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "runc,crun,runsc,qemu,wasmtime,node-wasi,wasm-interp"
    )]
    pub peers: Vec<String>,
    /// Measured runs per subject
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Warm-up runs per subject (recorded, not counted)
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Write every sample here as JSON
    #[arg(long, default_value = "hako-bench.json")]
    pub json: PathBuf,
    /// Write the SVG plot here
    #[arg(long, default_value = "hako-bench.svg")]
    pub plot: PathBuf,
    /// The hako binary (default: this binary when it is hako, else target/release/hako,
    /// target/debug/hako, or hako on PATH)
    #[arg(long)]
    pub hako: Option<PathBuf>,
    /// Guest kernel for the qemu peer (default: /var/cache/hako/kernels/vmlinux)
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Idle sandboxes to start per subject for the density test (0: skip)
    #[arg(long, default_value_t = 50)]
    pub density: usize,
    /// Cap on idle microVMs (each boots a kernel)
    #[arg(long, default_value_t = 2)]
    pub density_vm: usize,
    /// Runs of the getpid/pread loop per subject, best one reported (0: skip)
    #[arg(long, default_value_t = 5)]
    pub syscall_runs: usize,
    /// Iterations of each loop inside one syscall run
    #[arg(long, default_value_t = 20000)]
    pub syscall_loops: u64,
    /// Runs of the fork- and I/O-heavy shell work per subject and sentry platform, best one
    /// reported (0: skip)
    #[arg(long, default_value_t = 3)]
    pub shell_runs: usize,
    /// Seconds a sandbox sleeps for the CPU-while-idle measurement (0: skip)
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,
    /// Seconds of HTTP requests to a busybox httpd in each sandbox, client outside (0: skip)
    #[arg(long, default_value_t = 3)]
    pub net_secs: u64,
    /// Working directory for bundles, state roots and scratch files
    #[arg(long, default_value = "/var/tmp/hako-bench")]
    pub work_dir: PathBuf,
    /// Mount hugetlb as a cgroup v1 hierarchy when crun refuses this hybrid host
    #[arg(long)]
    pub mount_hugetlb: bool,
    /// Per-command timeout in seconds
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// No progress bar
    #[arg(long)]
    pub no_progress: bool,
    /// Measure nothing: redraw --plot from an earlier run's JSON file
    #[arg(long, value_name = "JSON")]
    pub replot: Option<PathBuf>,
}

#[derive(Debug, Parser)]
#[command(name = "hako-bench", about = "hako's shared benchmark")]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// The report on stdout; a closed pipe ends the process quietly, as it does `hako list`.
fn out(text: String) -> Result<()> {
    hako_contract::stdout::text(text)
}

/// argv-style entry point; `args[0]` is the program name. Returns the exit code.
pub fn main_with_args(args: Vec<String>) -> Result<i32> {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return Ok(code);
        }
    };
    run(cli.args)
}

fn default_hako() -> Option<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_name().and_then(|n| n.to_str()) == Some("hako") {
            return Some(exe);
        }
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    for p in ["target/release/hako", "target/debug/hako"] {
        if ws.join(p).is_file() {
            return Some(ws.join(p));
        }
    }
    procs::which("hako")
}

fn validate(list: &[String], known: &[&str], what: &str) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for x in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if x == "none" {
            continue;
        }
        if x == "all" {
            v.extend(known.iter().map(|s| s.to_string()));
            continue;
        }
        if !known.contains(&x) {
            bail!("unknown {what} {x:?} (known: {})", known.join(", "));
        }
        v.push(x.to_string());
    }
    Ok(v)
}

/// Is crun refused because hugetlb sits on the cgroup2 mount of a hybrid host?
pub fn hugetlb_on_unified() -> bool {
    std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .map(|c| c.split_whitespace().any(|x| x == "hugetlb"))
        .unwrap_or(false)
}

fn mount_hugetlb() -> Result<()> {
    std::fs::create_dir_all("/sys/fs/cgroup/hugetlb")?;
    let st = std::process::Command::new("mount")
        .args([
            "-t",
            "cgroup",
            "-o",
            "hugetlb",
            "none",
            "/sys/fs/cgroup/hugetlb",
        ])
        .status()
        .context("running mount")?;
    if !st.success() {
        bail!("mount -t cgroup -o hugetlb failed: {st}");
    }
    Ok(())
}

/// Run the benchmark. Returns the exit code (0 when the run completed, whatever was skipped).
pub fn run(a: BenchArgs) -> Result<i32> {
    if let Some(j) = &a.replot {
        let data = std::fs::read(j).with_context(|| format!("reading {}", j.display()))?;
        let report: Report =
            serde_json::from_slice(&data).with_context(|| format!("parsing {}", j.display()))?;
        std::fs::write(&a.plot, plot::render_svg(&report)?)
            .with_context(|| format!("writing {}", a.plot.display()))?;
        out(format!(
            "{}{}{}{}plot: {}\n",
            report.table(),
            trapcost::table(&report.subjects),
            shellwork::table(&report.subjects, report.trap_floor.as_ref()),
            netbench::table(&report.subjects),
            a.plot.display()
        ))?;
        return Ok(0);
    }
    let backends = validate(&a.backends, BACKENDS, "backend")?;
    let peers = validate(&a.peers, PEERS, "peer")?;
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let began = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    procs::become_subreaper()?;
    procs::setup_sigchld()?;
    procs::catch_interrupts();
    if a.mount_hugetlb && hugetlb_on_unified() {
        mount_hugetlb()?;
        eprintln!("mounted hugetlb as a cgroup v1 hierarchy at /sys/fs/cgroup/hugetlb");
    }
    let dir = std::path::absolute(&a.work_dir)?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::create_dir_all(dir.join("bundles"))?;
    std::fs::create_dir_all(dir.join("roots"))?;
    cgroup::remove_stale();
    let mem = cgroup::detect();
    let cg_desc = match &mem {
        Ok(cgroup::Memory::V1(p)) => format!("v1 memory at {}", p.display()),
        Ok(cgroup::Memory::V2(p)) => format!("v2 at {}", p.display()),
        Err(e) => e.clone(),
    };
    let ctx = Ctx {
        dir: dir.clone(),
        tag: format!("{}", std::process::id()),
        mem: mem.ok(),
        timeout: Duration::from_secs(a.timeout),
    };
    let w = workloads::Workloads::prepare(&dir)?;
    let trap_ok = trapcost::install(&w)
        .map_err(|e| eprintln!("skipping the threaded getppid loop and the idle CPU: {e}"))
        .is_ok();
    let shell_expect = shellwork::install(&w)
        .map_err(|e| eprintln!("skipping the shell work: {e}"))
        .ok();
    let shell_runs = if shell_expect.is_some() {
        a.shell_runs
    } else {
        0
    };
    let plan = Plan {
        backends,
        peers,
        hako: a.hako.clone().or_else(default_hako),
        kernel: a.kernel.clone(),
        density: a.density,
        density_vm: a.density_vm,
        search_path: std::env::var_os("PATH").unwrap_or_else(|| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        }),
    };
    let (planned, mut skipped) = subjects::plan(&plan, &w);

    let pb = if a.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .unwrap(),
    );
    pb.set_length(planned.len() as u64);

    // Probe: one run each; what fails is skipped with the reason.
    let mut active: Vec<(Subject, SubjectReport)> = Vec::new();
    for s in planned {
        pb.set_message(format!("probing {}", s.name));
        match s.probe(&ctx) {
            Ok(first) => {
                let mut rep = SubjectReport::new(&s.name, s.kind, s.category, &s.workload);
                rep.version = s.version.clone();
                rep.first_run_ms = Some(first.total_ms);
                rep.density_note = s.density.clone().err();
                active.push((s, rep));
            }
            Err(reason) => {
                pb.println(format!("skipping {}: {reason}", s.name));
                skipped.push(Skipped {
                    name: s.name.clone(),
                    kind: s.kind,
                    category: s.category,
                    reason,
                });
            }
        }
        pb.inc(1);
    }

    let iters = a.warmup + a.runs;
    let syscall_subjects = active.iter().filter(|(s, _)| s.syscall_bench).count();
    let density_subjects = active
        .iter()
        .filter(|(s, _)| matches!(s.density, Ok(n) if n > 0) && a.density > 0)
        .count();
    let synthetic_vmm = plan.backends.iter().any(|b| b == "microvm");
    // The machine's trap floor, once, when sentry subjects run the syscall loops.
    let trap_floor_planned = a.syscall_runs > 0
        && active
            .iter()
            .any(|(s, _)| s.category == Category::Sentry && s.syscall_bench);
    pb.set_length(
        pb.position()
            + (iters * active.len()
                + a.syscall_runs * syscall_subjects
                + density_subjects
                + if trap_ok {
                    trapcost::planned(&active, a.syscall_runs, a.idle_secs)
                } else {
                    0
                }
                + shellwork::planned(&active, shell_runs)
                + netbench::planned(&active, a.net_secs)
                + usize::from(synthetic_vmm)
                + usize::from(trap_floor_planned)) as u64,
    );

    // Startup and memory, round-robin.
    for it in 0..iters {
        let warm = it < a.warmup;
        for (s, rep) in active.iter_mut() {
            pb.inc(1);
            if rep.gave_up.is_some() || procs::interrupted() {
                continue;
            }
            pb.set_message(format!(
                "{} run {}/{}{}",
                s.name,
                it + 1,
                iters,
                if warm { " (warm-up)" } else { "" }
            ));
            let smp = s.sample(&ctx, it + 1, warm);
            if let Some(e) = &smp.error {
                pb.println(format!("{} run {}: {e}", s.name, it + 1));
            }
            rep.samples.push(smp);
            let n = rep.samples.len();
            if n >= 3 && rep.samples[n - 3..].iter().all(|x| x.error.is_some()) {
                let last = rep.samples[n - 1].error.clone().unwrap_or_default();
                let why = format!("gave up after 3 failed runs in a row (last: {last})");
                pb.println(format!("{}: {why}", s.name));
                rep.gave_up = Some(why);
            }
        }
    }

    // hako's own VMM with a synthetic guest, next to the microvm subjects (the only way to see
    // it where KVM cannot boot Linux).
    let vmm_synthetic = if synthetic_vmm && !procs::interrupted() {
        pb.set_message("hako VMM, synthetic guest");
        let mut v = microvm::measure_synthetic(
            &dir.join("tmp"),
            &dir.join("roots").join("hako-microvm").join("microvm-cache"),
            a.runs,
            a.warmup.min(1),
            Duration::from_secs(a.timeout),
        );
        // The same guest restored from a snapshot, beside Vmm::new, and 10 copies at once.
        pb.set_message("hako VMM, synthetic guest restored");
        v.restore = Some(vmmrestore::measure(
            &dir.join("tmp").join("vmm-restore"),
            a.runs,
            10,
            Duration::from_secs(a.timeout),
        ));
        pb.inc(1);
        Some(v)
    } else {
        None
    };

    // The machine's trap floor, just before the sandboxes' syscall loops it bounds.
    let trap_floor = if trap_floor_planned && !procs::interrupted() {
        pb.set_message("the machine's trap floor");
        let f = floor::measure(floor::ROUNDS);
        pb.inc(1);
        Some(f)
    } else {
        None
    };

    // Syscall cost, round-robin.
    for r in 0..a.syscall_runs {
        for (s, rep) in active
            .iter_mut()
            .filter(|(s, r)| s.syscall_bench && r.gave_up.is_none() && !procs::interrupted())
        {
            pb.set_message(format!(
                "{} getpid loop {}/{}",
                s.name,
                r + 1,
                a.syscall_runs
            ));
            match s.syscall_sample(&ctx, &format!("sys{r}"), a.syscall_loops) {
                Ok(x) => rep.syscall.push(x),
                Err(e) => pb.println(format!("{} syscall run {}: {e:#}", s.name, r + 1)),
            }
            pb.inc(1);
        }
    }

    // Trapped syscalls from 1, 2 and 4 threads, and the CPU an idle sandbox uses (the /bin/true
    // lifecycle's CPU, subtracted from it, is summarized here first).
    for (_, rep) in active.iter_mut() {
        rep.summarize();
    }
    trapcost::measure(
        &mut active,
        &ctx,
        if trap_ok { a.syscall_runs } else { 0 },
        a.syscall_loops,
        if trap_ok { a.idle_secs } else { 0 },
        &|m| {
            pb.set_message(m);
            pb.inc(1);
        },
    );

    // find | xargs cat and dd | sha256sum, every sentry platform as its own row.
    if let Some(expect) = &shell_expect {
        shellwork::measure(&mut active, &ctx, shell_runs, expect, &|m| {
            pb.set_message(m);
            pb.inc(1);
        });
    }

    // Requests per second of an HTTP server in each sandbox, one subject at a time.
    netbench::measure(&mut active, &ctx, a.net_secs, &|m| {
        pb.set_message(m);
        pb.inc(1);
    });

    // Density, one subject at a time (each is a batch of sandboxes alive at once).
    if a.density > 0 {
        for (s, rep) in active.iter_mut() {
            let Ok(n) = s.density.clone() else { continue };
            if rep.gave_up.is_some() || procs::interrupted() {
                continue;
            }
            if n == 0 {
                continue;
            }
            pb.set_message(format!("{} density: {n} idle sandboxes", s.name));
            rep.density = Some(s.density(&ctx, n, Duration::from_secs(a.timeout)));
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    cgroup::remove_top();
    if procs::interrupted() {
        eprintln!("interrupted: the report below has what was measured so far");
    }

    let mut report = Report {
        tool: format!("hako-bench {}", env!("CARGO_PKG_VERSION")),
        command: std::env::args().collect(),
        started_unix,
        duration_s: 0.0,
        machine: Machine::detect(cg_desc),
        settings: Settings {
            runs: a.runs,
            warmup: a.warmup,
            density: a.density,
            density_vm: a.density_vm,
            syscall_runs: a.syscall_runs,
            syscall_loops: a.syscall_loops,
            net_secs: a.net_secs,
        },
        subjects: active.into_iter().map(|(_, r)| r).collect(),
        skipped,
        vmm_synthetic,
        microvm_split: vec![],
        trap_floor,
    };
    for s in report.subjects.iter_mut() {
        s.summarize();
    }
    report.compute_ratios();
    report.duration_s = began.elapsed().as_secs_f64();

    // The files first: a reader that goes away early (`hako bench | head`) loses no data.
    std::fs::write(&a.json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", a.json.display()))?;
    std::fs::write(&a.plot, plot::render_svg(&report)?)
        .with_context(|| format!("writing {}", a.plot.display()))?;
    out(format!(
        "{}{}{}{}machine: {} cpus ({}), {} MiB, kernel {}; cgroup memory: {}; took {:.0} s\nsamples: {}   plot: {}\n",
        report.table(),
        trapcost::table(&report.subjects),
        shellwork::table(&report.subjects, report.trap_floor.as_ref()),
        netbench::table(&report.subjects),
        report.machine.cpus,
        report.machine.cpu,
        report.machine.mem_total_mib,
        report.machine.kernel,
        report.machine.cgroup_memory,
        report.duration_s,
        a.json.display(),
        a.plot.display()
    ))?;
    Ok(0)
}
