//! What is measured: hako's backends and the peer runtimes, each driven the same way.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cgroup::{Memory, SampleCgroup};
use crate::microvm;
use crate::model::{Category, Density, Kind, Sample, Skipped, SyscallSample};
use crate::procs::{self, Io};
use crate::workloads::{self, Workloads};

#[derive(Debug, Clone)]
pub enum Driver {
    /// An OCI runtime CLI: `bin <globals> --root R create|start|kill|delete ...`.
    Oci {
        bin: PathBuf,
        globals: Vec<String>,
        /// A fresh state root per sample (cold caches).
        fresh_root: bool,
        rootfs: PathBuf,
        args: Vec<String>,
        /// Workload for density (an idle sandbox), if there is one.
        idle_args: Option<Vec<String>>,
        annotations: Vec<(String, String)>,
    },
    /// A plain command that runs the workload to completion (qemu, a wasm CLI).
    Direct {
        argv: Vec<String>,
        /// A VM whose `/init` prints [`crate::microvm::BOOT_MARK`]: split its boot and sample
        /// its memory beyond guest RAM (the plain-qemu peer).
        boot_split: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    pub kind: Kind,
    pub category: Category,
    pub workload: String,
    pub driver: Driver,
    /// Text stdout must contain for a sample to count (proves the workload really ran).
    pub expect: Option<String>,
    pub version: Option<String>,
    /// Runs the getpid/pread loop (OCI subjects with the busybox rootfs).
    pub syscall_bench: bool,
    /// How many idle sandboxes to start, or why density is not measured.
    pub density: Result<usize, String>,
}

/// Shared run settings.
pub struct Ctx {
    pub dir: PathBuf,
    pub tag: String,
    pub mem: Option<Memory>,
    pub timeout: Duration,
}

impl Ctx {
    pub(crate) fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join("tmp").join(name)
    }
}

/// The peers the harness knows, by the name `--peers` uses.
pub const PEERS: &[&str] = &[
    "runc",
    "crun",
    "runsc",
    "qemu",
    "wasmtime",
    "node-wasi",
    "wasm-interp",
];
pub const BACKENDS: &[&str] = &["container", "sentry", "microvm", "wasm"];

/// Find `name` on the given search path (PATH syntax).
pub fn locate(name: &str, search_path: &OsStr) -> Result<PathBuf, String> {
    std::env::split_paths(search_path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| format!("not installed ({name} not on PATH)"))
}

fn version_of(bin: &Path, arg: &str) -> Option<String> {
    let o = std::process::Command::new(bin).arg(arg).output().ok()?;
    let s = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

pub struct Plan {
    pub backends: Vec<String>,
    pub peers: Vec<String>,
    pub hako: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub density: usize,
    pub density_vm: usize,
    pub search_path: std::ffi::OsString,
}

/// Decide the subjects; those that cannot run at all are returned as skipped, with the reason.
pub fn plan(p: &Plan, w: &Workloads) -> (Vec<Subject>, Vec<Skipped>) {
    let mut subjects = Vec::new();
    let mut skipped = Vec::new();
    let mut skip = |name: &str, kind, category, reason: String| {
        skipped.push(Skipped {
            name: name.to_string(),
            kind,
            category,
            reason,
        })
    };
    let bb = w.busybox_rootfs.clone();
    let true_args = vec!["/bin/true".to_string()];
    let sleep_args = Some(vec!["/bin/sleep".to_string(), "3600".to_string()]);

    let oci = |bin: PathBuf,
               globals: Vec<&str>,
               rootfs: PathBuf,
               args: Vec<String>,
               idle: Option<Vec<String>>| Driver::Oci {
        bin,
        globals: globals.into_iter().map(String::from).collect(),
        fresh_root: false,
        rootfs,
        args,
        idle_args: idle,
        annotations: vec![],
    };

    // hako's backends.
    let hako = p.hako.clone().filter(|h| h.is_file());
    let hako_version = hako.as_ref().and_then(|h| version_of(h, "--version"));
    for b in BACKENDS
        .iter()
        .filter(|b| p.backends.iter().any(|x| x == *b))
    {
        let name = format!("hako-{b}");
        let cat = match *b {
            "container" => Category::Container,
            "sentry" => Category::Sentry,
            "microvm" => Category::Microvm,
            _ => Category::Wasm,
        };
        let Some(h) = hako.clone() else {
            let why = match &p.hako {
                Some(x) => format!(
                    "hako binary {} not found (cargo build --release, or --hako PATH)",
                    x.display()
                ),
                None => "no hako binary (cargo build --release, or --hako PATH)".to_string(),
            };
            skip(&name, Kind::Backend, cat, why.clone());
            if *b == "wasm" {
                skip("hako-wasm-cold", Kind::Backend, cat, why.clone());
                skip("hako-container-hello", Kind::Backend, cat, why);
            }
            continue;
        };
        let globals = vec!["--backend", b];
        if *b == "wasm" {
            let wasm_ann = vec![("io.hako.backend".to_string(), "wasm".to_string())];
            for (n, fresh) in [("hako-wasm", false), ("hako-wasm-cold", true)] {
                let mut d = oci(
                    h.clone(),
                    globals.clone(),
                    w.wasm_rootfs.clone(),
                    vec!["/hello.wasm".into()],
                    Some(vec!["/sleep.wasm".into()]),
                );
                if let Driver::Oci {
                    fresh_root,
                    annotations,
                    ..
                } = &mut d
                {
                    *fresh_root = fresh;
                    *annotations = wasm_ann.clone();
                }
                subjects.push(Subject {
                    name: n.into(),
                    kind: Kind::Backend,
                    category: cat,
                    workload: if fresh {
                        "hello.wasm, empty module cache (cold)"
                    } else {
                        "hello.wasm (warm)"
                    }
                    .into(),
                    driver: d,
                    expect: Some("hello".into()),
                    version: hako_version.clone(),
                    syscall_bench: false,
                    density: if fresh {
                        Err("same as hako-wasm".into())
                    } else {
                        Ok(p.density)
                    },
                });
            }
            // The wasm baseline: the container backend running a static hello.
            match (&bb, &w.hello) {
                (Ok(r), Ok(_)) => subjects.push(Subject {
                    name: "hako-container-hello".into(),
                    kind: Kind::Backend,
                    category: Category::Wasm,
                    workload: "static C hello (busybox rootfs)".into(),
                    driver: oci(
                        h.clone(),
                        vec!["--backend", "container"],
                        r.clone(),
                        vec!["/bin/hello".into()],
                        None,
                    ),
                    expect: Some("hello".into()),
                    version: hako_version.clone(),
                    syscall_bench: false,
                    density: Err("see hako-container".into()),
                }),
                (Err(e), _) | (_, Err(e)) => skip(
                    "hako-container-hello",
                    Kind::Backend,
                    Category::Wasm,
                    e.clone(),
                ),
            }
            continue;
        }
        let Ok(r) = bb.clone() else {
            skip(&name, Kind::Backend, cat, bb.clone().unwrap_err());
            continue;
        };
        let density = if cat == Category::Microvm {
            Ok(p.density.min(p.density_vm))
        } else {
            Ok(p.density)
        };
        subjects.push(Subject {
            name,
            kind: Kind::Backend,
            category: cat,
            workload: "/bin/true (busybox-static rootfs)".into(),
            driver: oci(
                h.clone(),
                globals,
                r.clone(),
                true_args.clone(),
                sleep_args.clone(),
            ),
            expect: None,
            version: hako_version.clone(),
            syscall_bench: cat != Category::Microvm && w.sysbench.is_ok(),
            density,
        });
        if cat == Category::Microvm {
            // The cold boot next to the snapshot boot (the default), in the same run.
            let mut d = oci(h.clone(), vec!["--backend", b], r, true_args.clone(), None);
            if let Driver::Oci { annotations, .. } = &mut d {
                *annotations = vec![("io.hako.microvm.boot".into(), "cold".into())];
            }
            subjects.push(Subject {
                name: microvm::COLD_NAME.into(),
                kind: Kind::Backend,
                category: cat,
                workload: "/bin/true (busybox-static rootfs), io.hako.microvm.boot=cold".into(),
                driver: d,
                expect: None,
                version: hako_version.clone(),
                syscall_bench: false,
                density: Err("see hako-microvm (restored from its template)".into()),
            });
        }
    }

    // Peers.
    for peer in PEERS.iter().filter(|x| p.peers.iter().any(|y| y == *x)) {
        match *peer {
            "runc" | "crun" | "runsc" => {
                let cat = if *peer == "runsc" {
                    Category::Sentry
                } else {
                    Category::Container
                };
                let bin = match locate(peer, &p.search_path) {
                    Ok(b) => b,
                    Err(e) => {
                        skip(peer, Kind::Peer, cat, e);
                        continue;
                    }
                };
                let Ok(r) = bb.clone() else {
                    skip(peer, Kind::Peer, cat, bb.clone().unwrap_err());
                    continue;
                };
                let globals = if *peer == "runsc" {
                    vec!["--platform=ptrace", "--network=none"]
                } else {
                    vec![]
                };
                subjects.push(Subject {
                    name: peer.to_string(),
                    kind: Kind::Peer,
                    category: cat,
                    workload: "/bin/true (busybox-static rootfs)".into(),
                    version: version_of(&bin, "--version"),
                    driver: oci(bin, globals, r, true_args.clone(), sleep_args.clone()),
                    expect: None,
                    syscall_bench: w.sysbench.is_ok(),
                    density: Ok(p.density),
                });
            }
            "qemu" => {
                let name = "qemu-microvm";
                let qemu = match locate("qemu-system-x86_64", &p.search_path) {
                    Ok(b) => b,
                    Err(e) => {
                        skip(name, Kind::Peer, Category::Microvm, e);
                        continue;
                    }
                };
                let kernel = match workloads::find_kernel(p.kernel.as_deref()) {
                    Ok(k) => k,
                    Err(e) => {
                        skip(name, Kind::Peer, Category::Microvm, e);
                        continue;
                    }
                };
                let initrd = match &w.initramfs {
                    Ok(i) => i.clone(),
                    Err(e) => {
                        skip(
                            name,
                            Kind::Peer,
                            Category::Microvm,
                            format!("no initramfs: {e}"),
                        );
                        continue;
                    }
                };
                let mut argv: Vec<String> = vec![qemu.display().to_string()];
                argv.extend(
                    [
                        "-M",
                        "microvm",
                        "-m",
                        "128",
                        "-smp",
                        "1",
                        "-nodefaults",
                        "-no-user-config",
                        "-display",
                        "none",
                        "-serial",
                        "stdio",
                        "-no-reboot",
                        "-kernel",
                    ]
                    .map(String::from),
                );
                argv.push(kernel.display().to_string());
                argv.push("-initrd".into());
                argv.push(initrd.display().to_string());
                argv.push("-append".into());
                argv.push("console=ttyS0 reboot=t panic=-1 quiet rdinit=/init".into());
                subjects.push(Subject {
                    name: name.into(),
                    kind: Kind::Peer,
                    category: Category::Microvm,
                    workload: format!(
                        "boot {} (TCG) + initramfs, /bin/true, reboot",
                        kernel.display()
                    ),
                    version: version_of(&qemu, "--version"),
                    driver: Driver::Direct {
                        argv,
                        boot_split: true,
                    },
                    expect: Some("hako-bench-exit=0".into()),
                    syscall_bench: false,
                    density: Err("no create/start split; each VM boots CPU-bound under TCG".into()),
                });
            }
            "wasmtime" | "wasm-interp" | "node-wasi" => {
                let exe = if *peer == "node-wasi" { "node" } else { peer };
                let bin = match locate(exe, &p.search_path) {
                    Ok(b) => b,
                    Err(e) => {
                        skip(peer, Kind::Peer, Category::Wasm, e);
                        continue;
                    }
                };
                let m = w.hello_wasm.display().to_string();
                let argv = match *peer {
                    "wasmtime" => vec![bin.display().to_string(), "run".into(), m],
                    "node-wasi" => vec![
                        bin.display().to_string(),
                        w.node_wasi_js.display().to_string(),
                        m,
                    ],
                    _ => vec![bin.display().to_string(), "--wasi".into(), m],
                };
                subjects.push(Subject {
                    name: peer.to_string(),
                    kind: Kind::Peer,
                    category: Category::Wasm,
                    workload: match *peer {
                        "wasmtime" => "wasmtime run hello.wasm",
                        "node-wasi" => "node + node:wasi (V8), hello.wasm",
                        _ => "wasm-interp --wasi hello.wasm (wabt interpreter)",
                    }
                    .into(),
                    version: version_of(&bin, "--version"),
                    driver: Driver::Direct {
                        argv,
                        boot_split: false,
                    },
                    expect: Some("hello".into()),
                    syscall_bench: false,
                    density: Err("a CLI runs to completion: no idle sandbox".into()),
                });
            }
            _ => unreachable!(),
        }
    }
    (subjects, skipped)
}

/// Explain well-known refusals.
pub fn hint(subject: &str, err: &str) -> String {
    if subject == "crun" && err.contains("hybrid mode not supported") {
        return format!(
            "{err} — crun refuses cgroup v1 hybrid hosts while hugetlb sits on the cgroup2 mount; \
             fix: mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb none /sys/fs/cgroup/hugetlb \
             (or run with --mount-hugetlb)"
        );
    }
    err.to_string()
}

impl Subject {
    pub fn slug(&self) -> String {
        self.name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }

    /// One measured run of the trivial workload.
    pub fn sample(&self, ctx: &Ctx, iteration: usize, warmup: bool) -> Sample {
        let label = format!("{iteration}");
        let mut s = match &self.driver {
            Driver::Oci { args, .. } => self.oci_lifecycle(ctx, &label, args).map(|(s, _)| s),
            Driver::Direct { argv, boot_split } => self.direct(ctx, &label, argv, *boot_split),
        }
        .unwrap_or_else(|e| Sample {
            error: Some(hint(&self.name, &format!("{e:#}"))),
            ..Default::default()
        });
        s.iteration = iteration;
        s.warmup = warmup;
        s
    }

    /// A first run; an error makes the subject skipped ("not usable here").
    pub fn probe(&self, ctx: &Ctx) -> Result<Sample, String> {
        let s = self.sample(ctx, 0, true);
        match &s.error {
            Some(e) => Err(format!("not usable here: {e}")),
            None => Ok(s),
        }
    }

    fn direct(&self, ctx: &Ctx, label: &str, argv: &[String], boot_split: bool) -> Result<Sample> {
        let id = format!("hb{}-{}-{label}", ctx.tag, self.slug());
        let cg = make_cgroup(ctx, &id);
        let out = ctx.scratch(&format!("{}.out", self.slug()));
        let err = ctx.scratch(&format!("{}.err", self.slug()));
        let procs_files: Vec<PathBuf> = cg.iter().map(|c| c.procs_file()).collect();
        let io = Io {
            stdout: Some(out.clone()),
            stderr: err.clone(),
        };
        let mut split = None;
        let r = if boot_split {
            // Timestamp qemu's stdout lines; when /init's first line comes, read qemu's smaps.
            procs::run_watch(
                argv,
                &io,
                &procs_files,
                ctx.timeout,
                microvm::BOOT_MARK,
                |pid| hako_contract::proc::vm_rss(pid, microvm::GUEST_MIB << 20),
            )
            .map(|w| {
                let line_at = |mark: &str| w.lines.iter().find(|(_, l)| l.contains(mark));
                if let Some((at, line)) = line_at(microvm::BOOT_MARK) {
                    if let Some(up) = microvm::parse_uptime_ns(line) {
                        let exit = line_at("hako-bench-exit=").map(|(t, _)| *t);
                        split = Some(microvm::qemu_peer_split(*at, up, exit, w.marked.flatten()));
                    }
                }
                w.finished
            })
        } else {
            procs::run(argv, &io, &procs_files, ctx.timeout)
        };
        let peak = cg.as_ref().and_then(|c| c.peak_bytes());
        if let Some(c) = cg {
            c.destroy();
        }
        procs::reap_zombies();
        let f = r?;
        if !f.success() {
            bail!("{} ({})", f.describe(), procs::tail(&err, 3));
        }
        check_expect(&self.expect, &out, &err)?;
        let ms = f.elapsed.as_secs_f64() * 1e3;
        Ok(Sample {
            total_ms: ms,
            runtime_maxrss_kb: f.maxrss_kb,
            sandbox_maxrss_kb: Some(f.maxrss_kb),
            runtime_cpu_ms: f.cpu_ms,
            cgroup_peak_kb: peak.map(|b| b / 1024),
            microvm: split,
            ..Default::default()
        })
    }

    pub(crate) fn oci_cmd(&self, root: &Path, rest: &[&str]) -> Vec<String> {
        let Driver::Oci { bin, globals, .. } = &self.driver else {
            unreachable!()
        };
        let mut v = vec![bin.display().to_string()];
        v.extend(globals.iter().cloned());
        v.push("--root".into());
        v.push(root.display().to_string());
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    }

    pub(crate) fn oci_root(&self, ctx: &Ctx, id: &str) -> PathBuf {
        let Driver::Oci { fresh_root, .. } = &self.driver else {
            unreachable!()
        };
        if *fresh_root {
            ctx.dir.join("roots").join(id)
        } else {
            ctx.dir.join("roots").join(self.slug())
        }
    }

    fn write_config(
        &self,
        bundle: &Path,
        args: &[String],
        cgroups_path: Option<&str>,
    ) -> Result<()> {
        let Driver::Oci {
            rootfs,
            annotations,
            ..
        } = &self.driver
        else {
            unreachable!()
        };
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let ann: Vec<(&str, &str)> = annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        workloads::write_bundle(
            bundle,
            &workloads::oci_config(rootfs, &a, cgroups_path, &ann),
        )
    }

    /// create → start → wait for exit → delete, each phase timed; returns the sample and the
    /// workload's stdout.
    pub fn oci_lifecycle(
        &self,
        ctx: &Ctx,
        label: &str,
        args: &[String],
    ) -> Result<(Sample, String)> {
        self.oci_lifecycle_keeping(ctx, label, args, None)
    }

    /// [`Subject::oci_lifecycle`], copying the sentry's account (`sentry/stats.json` in the
    /// container's state directory, left there with `io.hako.sentry.stats=true`) to `stats`
    /// before the delete removes it.
    pub fn oci_lifecycle_keeping(
        &self,
        ctx: &Ctx,
        label: &str,
        args: &[String],
        stats: Option<&Path>,
    ) -> Result<(Sample, String)> {
        let id = format!("hb{}-{}-{label}", ctx.tag, self.slug());
        let root = self.oci_root(ctx, &id);
        std::fs::create_dir_all(&root)?;
        let cg = make_cgroup(ctx, &id);
        let bundle = ctx.dir.join("bundles").join(self.slug());
        self.write_config(
            &bundle,
            args,
            cg.as_ref().map(|c| c.cgroups_path("ctr")).as_deref(),
        )?;
        let pidfile = bundle.join("pid");
        let _ = std::fs::remove_file(&pidfile);
        let out = ctx.scratch(&format!("{}.out", self.slug()));
        let err = ctx.scratch(&format!("{}.err", self.slug()));
        let procs_files: Vec<PathBuf> = cg.iter().map(|c| c.procs_file()).collect();
        let io_out = Io {
            stdout: Some(out.clone()),
            stderr: err.clone(),
        };
        let io = Io {
            stdout: None,
            stderr: err.clone(),
        };

        let mut sandbox_pid = 0;
        let r = (|| -> Result<Sample> {
            let t0 = Instant::now();
            let bundle_s = bundle.display().to_string();
            let pid_s = pidfile.display().to_string();
            let c = procs::run(
                &self.oci_cmd(
                    &root,
                    &["create", "--bundle", &bundle_s, "--pid-file", &pid_s, &id],
                ),
                &io_out,
                &procs_files,
                ctx.timeout,
            )?;
            if !c.success() {
                bail!("create: {} ({})", c.describe(), procs::tail(&err, 3));
            }
            let t1 = Instant::now();
            let pid: i32 = std::fs::read_to_string(&pidfile)
                .with_context(|| format!("reading pid file {}", pidfile.display()))?
                .trim()
                .parse()
                .context("pid file content")?;
            procs::protect(pid);
            sandbox_pid = pid;
            let s = procs::run(
                &self.oci_cmd(&root, &["start", &id]),
                &io,
                &procs_files,
                ctx.timeout,
            )?;
            if !s.success() {
                procs::kill(pid, libc::SIGKILL);
                bail!("start: {} ({})", s.describe(), procs::tail(&err, 3));
            }
            let t2 = Instant::now();
            let waited =
                procs::wait_pid(pid, ctx.timeout).context("waiting for the sandbox to exit")?;
            let t3 = Instant::now();
            if let Some(to) = stats {
                let _ = std::fs::copy(root.join(&id).join("sentry/stats.json"), to);
            }
            // The microvm backend's host process left its boot/run split in the state dir.
            let split = (self.category == Category::Microvm)
                .then(|| microvm::read_timings(&root.join(&id)).ok())
                .flatten();
            let d = procs::run(
                &self.oci_cmd(&root, &["delete", &id]),
                &io,
                &procs_files,
                ctx.timeout,
            )?;
            if !d.success() {
                bail!("delete: {} ({})", d.describe(), procs::tail(&err, 3));
            }
            let t4 = Instant::now();
            if let Some((st, _, _)) = waited {
                if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
                    bail!(
                        "workload: {}",
                        procs::Finished {
                            status: st,
                            maxrss_kb: 0,
                            cpu_ms: 0.0,
                            elapsed: Duration::ZERO,
                            harness: Duration::ZERO,
                        }
                        .describe()
                    );
                }
            }
            // Each phase less the harness's own cgroup move of the CLI it ran (procs::Joined).
            let ms = |a: Instant, b: Instant, less: Duration| {
                (b - a).saturating_sub(less).as_secs_f64() * 1e3
            };
            let none = Duration::ZERO;
            let harness = c.harness + s.harness + d.harness;
            Ok(Sample {
                total_ms: ms(t0, t4, harness),
                create_ms: Some(ms(t0, t1, c.harness)),
                start_ms: Some(ms(t1, t2, s.harness)),
                wait_ms: Some(ms(t2, t3, none)),
                delete_ms: Some(ms(t3, t4, d.harness)),
                runtime_maxrss_kb: c.maxrss_kb.max(s.maxrss_kb).max(d.maxrss_kb),
                sandbox_maxrss_kb: waited.map(|(_, r, _)| r),
                runtime_cpu_ms: c.cpu_ms + s.cpu_ms + d.cpu_ms,
                sandbox_cpu_ms: waited.map(|(_, _, cpu)| cpu),
                microvm: split,
                ..Default::default()
            })
        })();
        procs::unprotect(sandbox_pid);
        let r = r.map(|mut s| {
            s.cgroup_peak_kb = cg.as_ref().and_then(|c| c.peak_bytes()).map(|b| b / 1024);
            s
        });
        if r.is_err() {
            let _ = procs::run(
                &self.oci_cmd(&root, &["delete", "--force", &id]),
                &io,
                &[],
                Duration::from_secs(20),
            );
        }
        if let Some(c) = cg {
            c.destroy();
        }
        procs::reap_zombies();
        if let Driver::Oci {
            fresh_root: true, ..
        } = &self.driver
        {
            let _ = std::fs::remove_dir_all(&root);
        }
        let s = r?;
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        check_expect(&self.expect, &out, &err)?;
        Ok((s, stdout))
    }

    /// getpid and pread cost measured inside the sandbox.
    pub fn syscall_sample(&self, ctx: &Ctx, label: &str, loops: u64) -> Result<SyscallSample> {
        let args = vec!["/bin/sysbench".to_string(), loops.to_string()];
        let me = Subject {
            expect: Some("getpid_ns=".into()),
            ..self.clone()
        };
        let (_, out) = me.oci_lifecycle(ctx, label, &args)?;
        parse_sysbench(&out).with_context(|| format!("sysbench output {out:?}"))
    }

    /// Start `n` idle sandboxes one after the other, time it, read the memory they hold,
    /// then kill and delete every one of them.
    pub fn density(&self, ctx: &Ctx, n: usize, budget: Duration) -> Density {
        let Driver::Oci {
            idle_args: Some(idle),
            ..
        } = &self.driver
        else {
            return Density {
                requested: n,
                started: 0,
                total_ms: 0.0,
                cgroup_usage_kb: None,
                guest_rss_kb: None,
                guest_pss_kb: None,
                cleanup_ms: 0.0,
                error: Some("no idle workload".into()),
            };
        };
        let group = format!("hb{}-{}-density", ctx.tag, self.slug());
        let cg = make_cgroup(ctx, &group);
        let root = ctx
            .dir
            .join("roots")
            .join(format!("{}-density", self.slug()));
        let _ = std::fs::create_dir_all(&root);
        let err = ctx.scratch(&format!("{}.err", self.slug()));
        let io = Io {
            stdout: None,
            stderr: err.clone(),
        };
        let procs_files: Vec<PathBuf> = cg.iter().map(|c| c.procs_file()).collect();
        let mut started: Vec<(String, i32, PathBuf)> = Vec::new();
        let mut error = None;
        let t0 = Instant::now();
        for i in 0..n {
            let id = format!("hb{}-{}-d{i}", ctx.tag, self.slug());
            let bundle = ctx
                .dir
                .join("bundles")
                .join(format!("{}-d{i}", self.slug()));
            let res = (|| -> Result<i32> {
                self.write_config(
                    &bundle,
                    idle,
                    cg.as_ref()
                        .map(|c| c.cgroups_path(&format!("c{i}")))
                        .as_deref(),
                )?;
                let pidfile = bundle.join("pid");
                let _ = std::fs::remove_file(&pidfile);
                let (b, p) = (bundle.display().to_string(), pidfile.display().to_string());
                let c = procs::run(
                    &self.oci_cmd(&root, &["create", "--bundle", &b, "--pid-file", &p, &id]),
                    &io,
                    &procs_files,
                    ctx.timeout,
                )?;
                if !c.success() {
                    bail!("create #{i}: {} ({})", c.describe(), procs::tail(&err, 3));
                }
                let pid: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
                procs::protect(pid);
                let s = procs::run(
                    &self.oci_cmd(&root, &["start", &id]),
                    &io,
                    &procs_files,
                    ctx.timeout,
                )?;
                if !s.success() {
                    procs::kill(pid, libc::SIGKILL);
                    bail!("start #{i}: {} ({})", s.describe(), procs::tail(&err, 3));
                }
                Ok(pid)
            })();
            match res {
                Ok(pid) => started.push((id, pid, bundle)),
                Err(e) => {
                    error = Some(format!("{e:#}"));
                    let _ = procs::run(
                        &self.oci_cmd(&root, &["delete", "--force", &id]),
                        &io,
                        &[],
                        Duration::from_secs(20),
                    );
                    let _ = std::fs::remove_dir_all(&bundle);
                    break;
                }
            }
            if procs::interrupted() {
                error = Some(format!("interrupted after {} of {n}", started.len()));
                break;
            }
            if t0.elapsed() > budget {
                error = Some(format!(
                    "stopped after {} of {n}: time budget {:?} used",
                    started.len(),
                    budget
                ));
                break;
            }
        }
        let total_ms = t0.elapsed().as_secs_f64() * 1e3;
        // Let them settle into idleness, and check they are all still alive.
        std::thread::sleep(Duration::from_millis(200));
        let dead = started
            .iter()
            .filter(|(_, pid, _)| !procs::alive(*pid))
            .count();
        if dead > 0 && error.is_none() {
            error = Some(format!("{dead} of the idle sandboxes exited early"));
        }
        let usage = cg.as_ref().and_then(|c| c.usage_bytes()).map(|b| b / 1024);
        let guest: Vec<(u64, u64)> = if self.category == Category::Microvm {
            started
                .iter()
                .filter_map(|(id, _, _)| microvm::guest_memory(&root.join(id)))
                .collect()
        } else {
            vec![]
        };
        let (guest_rss_kb, guest_pss_kb) = if guest.is_empty() {
            (None, None)
        } else {
            (
                Some(guest.iter().map(|g| g.0).sum()),
                Some(guest.iter().map(|g| g.1).sum()),
            )
        };
        let tc = Instant::now();
        for (id, _, _) in &started {
            let _ = procs::run(
                &self.oci_cmd(&root, &["kill", id, "9"]),
                &io,
                &[],
                Duration::from_secs(20),
            );
        }
        for (id, pid, bundle) in &started {
            let _ = procs::wait_pid(*pid, Duration::from_secs(20));
            procs::unprotect(*pid);
            let _ = procs::run(
                &self.oci_cmd(&root, &["delete", "--force", id]),
                &io,
                &[],
                Duration::from_secs(20),
            );
            let _ = std::fs::remove_dir_all(bundle);
        }
        if let Some(c) = cg {
            c.destroy();
        }
        procs::reap_zombies();
        let cleanup_ms = tc.elapsed().as_secs_f64() * 1e3;
        Density {
            requested: n,
            started: started.len() - dead.min(started.len()),
            total_ms,
            cgroup_usage_kb: usage,
            guest_rss_kb,
            guest_pss_kb,
            cleanup_ms,
            error,
        }
    }
}

fn make_cgroup(ctx: &Ctx, name: &str) -> Option<SampleCgroup> {
    ctx.mem
        .as_ref()
        .and_then(|m| SampleCgroup::create(m, name).ok())
}

fn check_expect(expect: &Option<String>, out: &Path, err: &Path) -> Result<()> {
    if let Some(e) = expect {
        let got = std::fs::read_to_string(out).unwrap_or_default();
        if !got.contains(e.as_str()) {
            bail!(
                "workload output lacks {e:?} (stdout: {:?}, stderr: {})",
                got.chars().take(200).collect::<String>(),
                procs::tail(err, 3)
            );
        }
    }
    Ok(())
}

pub fn parse_sysbench(out: &str) -> Option<SyscallSample> {
    let mut g = None;
    let mut r = None;
    for tok in out.split_whitespace() {
        if let Some(v) = tok.strip_prefix("getpid_ns=") {
            g = v.parse().ok();
        } else if let Some(v) = tok.strip_prefix("read_ns=") {
            r = v.parse().ok();
        }
    }
    Some(SyscallSample {
        getpid_ns: g?,
        read_ns: r?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysbench_output_parses() {
        let s = parse_sysbench("getpid_ns=123.4 read_ns=56.0\n").unwrap();
        assert_eq!((s.getpid_ns, s.read_ns), (123.4, 56.0));
        assert!(parse_sysbench("garbage").is_none());
    }

    #[test]
    fn crun_hybrid_refusal_gets_the_fix() {
        let h = hint("crun", "create: exit status 1 (cgroups in hybrid mode not supported, drop all controllers from cgroupv2)");
        assert!(h.contains("mount -t cgroup -o hugetlb"));
        assert_eq!(hint("runc", "boom"), "boom");
    }
}
