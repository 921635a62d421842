//! Tests of the harness itself: skip logic, the plot against the JSON, and (as root with runc
//! installed) a short real run whose JSON and SVG agree.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use hako_bench::microvm;
use hako_bench::model::{
    Category, Kind, Machine, MicrovmSplit, Report, Sample, Settings, Skipped, SubjectReport,
    SyntheticVmm,
};
use hako_bench::subjects::{self, Ctx, Plan};
use hako_bench::{plot, workloads::Workloads};

/// Run the bench with `flags`, `--no-progress`, and its JSON (`b.json`), plot (`b.svg`) and work
/// dir in `dir`; it must end with 0.
fn real_run(flags: &[&str], dir: &Path) {
    let mut args = vec!["hako-bench".to_string(), "--no-progress".into()];
    args.extend(flags.iter().map(|s| s.to_string()));
    for (flag, name) in [
        ("--json", "b.json"),
        ("--plot", "b.svg"),
        ("--work-dir", "work"),
    ] {
        args.push(flag.into());
        args.push(dir.join(name).display().to_string());
    }
    assert_eq!(hako_bench::main_with_args(args).unwrap(), 0);
}

/// The real runs make this process a subreaper that reaps every orphan it does not wait for:
/// two at once would reap each other's sandboxes. They take this lock.
static REAL_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn plan_with_path(path: OsString, hako: Option<&Path>) -> Plan {
    Plan {
        backends: vec!["container".into(), "wasm".into()],
        peers: subjects::PEERS.iter().map(|s| s.to_string()).collect(),
        hako: hako.map(Path::to_path_buf),
        kernel: None,
        density: 3,
        density_vm: 1,
        search_path: path,
    }
}

#[test]
fn peers_not_on_path_are_skipped_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let w = Workloads::prepare(&d.path().join("work")).unwrap();
    let empty = d.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let (subjects, skipped) = subjects::plan(&plan_with_path(empty.into_os_string(), None), &w);
    assert!(
        subjects.is_empty(),
        "nothing can run: {:?}",
        subjects.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for peer in ["runc", "crun", "runsc", "wasmtime", "wasm-interp"] {
        // node-wasi is looked up as `node`.
        let s = skipped
            .iter()
            .find(|s| s.name == peer)
            .unwrap_or_else(|| panic!("{peer} not listed as skipped"));
        assert_eq!(s.kind, Kind::Peer);
        assert!(s.reason.contains("not installed"), "{peer}: {}", s.reason);
    }
    let n = skipped.iter().find(|s| s.name == "node-wasi").unwrap();
    assert!(n.reason.contains("node not on PATH"), "{}", n.reason);
    let q = skipped.iter().find(|s| s.name == "qemu-microvm").unwrap();
    assert!(
        q.reason.contains("qemu-system-x86_64 not on PATH"),
        "{}",
        q.reason
    );
    // No hako binary: every requested backend is skipped and says how to get one.
    for b in [
        "hako-container",
        "hako-wasm",
        "hako-wasm-cold",
        "hako-container-hello",
    ] {
        let s = skipped
            .iter()
            .find(|s| s.name == b)
            .unwrap_or_else(|| panic!("{b} not skipped"));
        assert!(s.reason.contains("hako"), "{b}: {}", s.reason);
    }
}

#[test]
fn a_peer_that_fails_its_probe_is_skipped_with_its_error() {
    let d = tempfile::tempdir().unwrap();
    let w = Workloads::prepare(&d.path().join("work")).unwrap();
    if let Err(e) = &w.busybox_rootfs {
        eprintln!("skipping: {e}");
        return;
    }
    let bin = d.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("runc");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'runc: this fake runtime refuses to run' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut p = plan_with_path(bin.into_os_string(), None);
    p.backends.clear();
    p.peers = vec!["runc".into()];
    let (subjects, skipped) = subjects::plan(&p, &w);
    assert!(skipped.is_empty());
    assert_eq!(subjects.len(), 1);
    let ctx = Ctx {
        dir: d.path().join("work"),
        tag: "t".into(),
        mem: None,
        timeout: Duration::from_secs(10),
    };
    std::fs::create_dir_all(ctx.dir.join("tmp")).unwrap();
    let e = subjects[0].probe(&ctx).unwrap_err();
    assert!(e.starts_with("not usable here"), "{e}");
    assert!(e.contains("this fake runtime refuses to run"), "{e}");
}

fn synthetic_report() -> Report {
    let mut subjects = Vec::new();
    for (i, (name, cat, kind)) in [
        ("crun", Category::Container, Kind::Peer),
        ("hako-container", Category::Container, Kind::Backend),
        ("runsc", Category::Sentry, Kind::Peer),
        ("hako-wasm", Category::Wasm, Kind::Backend),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = SubjectReport::new(name, kind, cat, "/bin/true");
        for it in 0..7 {
            s.samples.push(Sample {
                iteration: it,
                warmup: it == 0,
                total_ms: 5.0 * (i + 1) as f64 + it as f64,
                runtime_maxrss_kb: 3000 + 100 * i as u64,
                sandbox_maxrss_kb: Some(2000),
                cgroup_peak_kb: Some(1500 + 1000 * i as u64),
                ..Default::default()
            });
        }
        // A failed sample is recorded but neither counted nor plotted.
        s.samples.push(Sample {
            iteration: 7,
            error: Some("boom".into()),
            ..Default::default()
        });
        s.summarize();
        subjects.push(s);
    }
    test_report(6, subjects, None)
}

/// A report of these subjects (ratios computed), as a run with `runs` measured runs makes.
fn test_report(
    runs: usize,
    subjects: Vec<SubjectReport>,
    synthetic: Option<SyntheticVmm>,
) -> Report {
    let mut r = Report {
        tool: "test".into(),
        command: vec![],
        started_unix: 0,
        duration_s: 0.0,
        machine: Machine::detect("test".into()),
        settings: Settings {
            runs,
            warmup: 1,
            ..Default::default()
        },
        subjects,
        skipped: vec![],
        vmm_synthetic: synthetic,
        microvm_split: vec![],
        trap_floor: None,
    };
    r.compute_ratios();
    r
}

/// Check an SVG against the JSON of the same report: valid XML, both axes described, every
/// subject with samples labelled in both panels, one point per counted sample, the memory series
/// in the legend.
fn check_svg_against_json(svg: &str, json: &serde_json::Value) {
    let doc = roxmltree::Document::parse(svg).expect("the plot is valid XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    for t in [
        plot::STARTUP_CAPTION,
        plot::STARTUP_Y,
        plot::MEMORY_CAPTION,
        plot::MEMORY_Y,
    ] {
        assert!(texts.iter().any(|x| x == t), "missing text {t:?}");
    }
    for t in plot::MEMORY_SERIES {
        assert!(texts.iter().any(|x| x == t), "missing legend {t:?}");
    }
    let mut expected_points = 0;
    let mut names = BTreeSet::new();
    for s in json["subjects"].as_array().unwrap() {
        if s["startup_ms"].is_null() {
            continue;
        }
        let name = s["name"].as_str().unwrap();
        names.insert(name.to_string());
        let n = texts.iter().filter(|x| x.as_str() == name).count();
        assert_eq!(n, 2, "{name} should label both panels, found {n}");
        let counted = s["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["warmup"] == false && x["error"].is_null())
            .count();
        assert_eq!(
            counted as u64,
            s["startup_ms"]["n"].as_u64().unwrap(),
            "{name}"
        );
        expected_points += counted;
    }
    assert!(!names.is_empty());
    let circles = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert_eq!(
        circles, expected_points,
        "one point per counted startup sample"
    );
}

#[test]
fn svg_is_valid_and_matches_the_json() {
    let r = synthetic_report();
    let json = serde_json::to_value(&r).unwrap();
    let svg = plot::render_svg(&r).unwrap();
    check_svg_against_json(&svg, &json);
    // And the statistics in the JSON are those of the counted samples.
    let crun = &json["subjects"][0];
    assert_eq!(crun["startup_ms"]["n"], 6);
    assert_eq!(crun["startup_ms"]["median"], 8.5);
    assert_eq!(crun["failed_samples"], 1);
    assert_eq!(crun["startup_ratio"], 1.0);
    let hc = &json["subjects"][1];
    // hako-container: samples 11..=16, median 13.5, against crun's 8.5.
    assert!((hc["startup_ratio"].as_f64().unwrap() - 13.5 / 8.5).abs() < 1e-9);
}

/// `hako-bench | head`: a reader that went away ends the bench by SIGPIPE, quietly (no panic),
/// as it ends runc; the files are written before the report.
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let d = tempfile::tempdir().unwrap();
    let j = d.path().join("r.json");
    let svg = d.path().join("r.svg");
    std::fs::write(&j, serde_json::to_vec(&synthetic_report()).unwrap()).unwrap();
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both ends are fresh fds this test owns.
    let (rd, wr) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(rd);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hako-bench"))
        .arg("--replot")
        .arg(&j)
        .arg("--plot")
        .arg(&svg)
        .stdout(wr)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {err}",
        o.status
    );
    assert!(err.is_empty(), "{err}");
    assert!(svg.is_file());
}

#[test]
fn replot_from_json_round_trips() {
    let r = synthetic_report();
    let d = tempfile::tempdir().unwrap();
    let j = d.path().join("r.json");
    let svg = d.path().join("r.svg");
    std::fs::write(&j, serde_json::to_vec(&r).unwrap()).unwrap();
    let args = vec![
        "hako-bench".to_string(),
        "--replot".into(),
        j.display().to_string(),
        "--plot".into(),
        svg.display().to_string(),
    ];
    assert_eq!(hako_bench::main_with_args(args).unwrap(), 0);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    check_svg_against_json(&std::fs::read_to_string(&svg).unwrap(), &json);
    assert_eq!(
        std::fs::read_to_string(&svg).unwrap(),
        plot::render_svg(&r).unwrap()
    );
}

/// The trap floor and the shell rows' floor ratios go into the JSON and come back; a report
/// written before they existed still loads.
#[test]
fn the_trap_floor_round_trips_and_old_reports_load() {
    use hako_bench::floor::{FloorRow, TrapFloor};
    use hako_bench::shellwork::{ShellReport, ShellRow};
    let mut r = synthetic_report();
    let shell_row = |variant: &str, s: f64, traps: Option<u64>| ShellRow {
        variant: variant.into(),
        workload: "find".into(),
        best_s: Some(s),
        runs_s: vec![s],
        traps,
        top: vec![],
        errors: vec![],
        floor_ratio: None,
    };
    let mut runc = SubjectReport::new("runc", Kind::Peer, Category::Container, "/bin/true");
    runc.shell = Some(ShellReport {
        rows: vec![shell_row("runc", 0.064, None)],
    });
    let mut sentry =
        SubjectReport::new("hako-sentry", Kind::Backend, Category::Sentry, "/bin/true");
    sentry.shell = Some(ShellReport {
        rows: vec![shell_row("hako-sentry/samecpu", 0.3, Some(15_600))],
    });
    r.subjects.push(runc);
    r.subjects.push(sentry);
    r.trap_floor = Some(TrapFloor {
        rows: vec![
            FloorRow {
                key: "sigsys".into(),
                label: "in-thread RET_TRAP + SIGSYS handler".into(),
                ns: Some(2500.0),
                calls: 10_000,
                rounds: 3,
                error: None,
                took_s: 0.01,
            },
            FloorRow {
                key: "spin".into(),
                label: "spin".into(),
                ns: None,
                calls: 50_000,
                rounds: 3,
                error: Some("skipped: 1 CPU usable here".into()),
                took_s: 0.0,
            },
        ],
        took_s: 0.25,
        error: None,
    });
    r.compute_ratios();
    let ratio = |r: &Report| {
        r.subjects
            .iter()
            .find(|s| s.name == "hako-sentry")
            .and_then(|s| s.shell.as_ref())
            .and_then(|sh| sh.rows[0].floor_ratio)
    };
    assert!((ratio(&r).unwrap() - 1.609_375).abs() < 1e-9);
    let j = serde_json::to_value(&r).unwrap();
    let back: Report = serde_json::from_value(j.clone()).unwrap();
    assert_eq!(back.trap_floor, r.trap_floor);
    assert_eq!(ratio(&back), ratio(&r));
    assert!(back.table().contains("trap floor on this machine"));

    // Without the new fields, as an older hako bench wrote it.
    let mut old = j;
    old.as_object_mut().unwrap().remove("trap_floor");
    for s in old["subjects"].as_array_mut().unwrap() {
        if let Some(rows) = s.pointer_mut("/shell/rows").and_then(|r| r.as_array_mut()) {
            for row in rows {
                row.as_object_mut().unwrap().remove("floor_ratio");
            }
        }
    }
    let back: Report = serde_json::from_value(old).unwrap();
    assert_eq!(back.trap_floor, None);
    assert_eq!(ratio(&back), None);
    assert!(!back.table().contains("trap floor on this machine"));
}

#[test]
fn table_lists_ratios_and_skips() {
    let mut r = synthetic_report();
    r.skipped.push(Skipped {
        name: "wasmtime".into(),
        kind: Kind::Peer,
        category: Category::Wasm,
        reason: "not installed (wasmtime not on PATH)".into(),
    });
    let t = r.table();
    assert!(t.contains("hako-container"));
    assert!(t.contains("1.59x"), "{t}");
    assert!(t.contains("wasmtime") && t.contains("not installed"), "{t}");
}

/// A short real run against runc (root only, runc installed): the JSON has the samples the
/// flags asked for and the SVG agrees with it; nothing is left in the cgroup tree.
#[test]
fn short_real_run_against_runc() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root to run containers");
        return;
    }
    if hako_bench::procs::which("runc").is_none() {
        eprintln!("skipping: runc not installed");
        return;
    }
    let _one_at_a_time = REAL_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("b.json");
    let svg = d.path().join("b.svg");
    real_run(
        &[
            "--backends",
            "none",
            "--peers",
            "runc,wasmtime",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--density",
            "2",
            "--syscall-runs",
            "1",
            "--syscall-loops",
            "1000",
            "--idle-secs",
            "1",
            "--net-secs",
            "1",
            "--shell-runs",
            "1",
        ],
        d.path(),
    );
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runc = j["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "runc")
        .expect("runc measured");
    assert_eq!(runc["samples"].as_array().unwrap().len(), 4);
    assert_eq!(runc["startup_ms"]["n"], 3);
    assert!(runc["startup_ms"]["median"].as_f64().unwrap() > 0.0);
    assert!(runc["runtime_rss_mib"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(runc["density"]["started"], 2);
    assert_eq!(runc["syscall"].as_array().unwrap().len(), 1);
    // Traps from 1, 2 and 4 threads, 10 000 calls from one, and a sandbox idle for 1 s.
    let trap = &runc["trap"];
    let threads: Vec<u64> = trap["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["threads"].as_u64().unwrap())
        .collect();
    assert_eq!(threads, [1, 2, 4], "{trap}");
    assert!(
        trap["threads"][2]["ns_per_call"].as_f64().unwrap() > 0.0,
        "{trap}"
    );
    assert_eq!(trap["long_calls"], 10_000);
    assert!(trap["long_run_s"].as_f64().unwrap() > 0.0, "{trap}");
    assert_eq!(trap["idle"]["sleep_s"], 1);
    assert!(
        trap["idle"]["lifecycle_cpu_s"].as_f64().unwrap() > 0.0,
        "{trap}"
    );
    // One second of HTTP requests to busybox httpd in runc, through the bench's own namespace.
    assert!(
        runc["net"]["requests"].as_u64().unwrap() > 0,
        "{}",
        runc["net"]
    );
    assert_eq!(runc["net"]["peer"], "crun");
    // The shell work: find | xargs cat and dd | sha256sum, each run once and checked (the
    // workload's output is the tree's line count, the digest of 200 MiB of zeros).
    let rows = runc["shell"]["rows"].as_array().expect("shell rows");
    let work: Vec<&str> = rows
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(work, ["find", "dd"], "{}", runc["shell"]);
    for r in rows {
        assert_eq!(r["variant"], "runc");
        assert!(r["best_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    }
    if hako_bench::procs::which("wasmtime").is_none() {
        let w = j["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "wasmtime")
            .expect("wasmtime listed as skipped");
        assert!(w["reason"].as_str().unwrap().contains("not installed"));
    }
    check_svg_against_json(&std::fs::read_to_string(&svg).unwrap(), &j);
    let leftovers: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/memory/hako-bench")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|n| !n
            .to_string_lossy()
            .starts_with(&format!("hb{}-", std::process::id()))),
        "{leftovers:?}"
    );
}

/// A report with both microvm subjects and the synthetic hako VMM, with known splits.
fn microvm_report() -> Report {
    let split = |engine: &str, i: f64, agent: bool| MicrovmSplit {
        engine: engine.into(),
        accel: "tcg".into(),
        guest_mib: 128,
        vmm_start_ms: Some(200.0 + i),
        kernel_boot_ms: Some(1000.0 + i),
        agent_setup_ms: agent.then_some(100.0 + i),
        ready_ms: Some(if agent { 1300.0 } else { 1200.0 } + 3.0 * i),
        run_ms: Some(if agent { 150.0 } else { 40.0 } + i),
        vmm_rss_kib: Some(if agent { 76 * 1024 } else { 61 * 1024 }),
        guest_rss_kib: Some(32 * 1024),
        ..Default::default()
    };
    let mut subjects = Vec::new();
    for (name, kind, agent) in [
        ("hako-microvm", Kind::Backend, true),
        ("qemu-microvm", Kind::Peer, false),
    ] {
        let mut s = SubjectReport::new(name, kind, Category::Microvm, "/bin/true");
        for it in 0..5 {
            s.samples.push(Sample {
                iteration: it,
                warmup: it == 0,
                total_ms: 2000.0 + it as f64,
                // The warm-up's split is far off: it must not count.
                microvm: Some(split("qemu", if it == 0 { 1e6 } else { it as f64 }, agent)),
                ..Default::default()
            });
        }
        // A failed sample with a split is not counted either.
        s.samples.push(Sample {
            iteration: 5,
            error: Some("boom".into()),
            microvm: Some(split("qemu", 1e6, agent)),
            ..Default::default()
        });
        s.summarize();
        subjects.push(s);
    }
    let synthetic = SyntheticVmm {
        runs_linux: false,
        probe: "probe guest stopped: KVM internal error: emulation failure".into(),
        samples: (0..3)
            .map(|i| MicrovmSplit {
                engine: "hako".into(),
                accel: "kvm".into(),
                guest_mib: 128,
                vmm_start_ms: Some(8.0 + i as f64),
                vmm_build_ms: Some(7.5),
                vmm_rss_kib: Some(2560 + 10 * i),
                guest_rss_kib: Some(36),
                fork_rss_kib: Some(1024),
                ..Default::default()
            })
            .collect(),
        error: None,
        restore: None,
    };
    test_report(4, subjects, Some(synthetic))
}

#[test]
fn microvm_split_rows_table_and_json() {
    let r = microvm_report();
    let rows = &r.microvm_split;
    assert_eq!(
        rows.iter()
            .map(|x| (x.subject.as_str(), x.engine.as_str(), x.n))
            .collect::<Vec<_>>(),
        [
            ("hako-microvm", "qemu/tcg", 4),
            ("qemu-microvm", "qemu/tcg", 4),
            (microvm::SYNTHETIC_NAME, "hako/kvm", 3)
        ]
    );
    // Counted samples 1..=4: medians at i = 2.5.
    let h = &rows[0];
    assert_eq!(h.vmm_start_ms, Some(202.5));
    assert_eq!(h.kernel_boot_ms, Some(1002.5));
    assert_eq!(h.agent_setup_ms, Some(102.5));
    assert_eq!(h.run_ms, Some(152.5));
    assert_eq!(h.boot_to_exit_ms, Some(1300.0 + 7.5 + 150.0 + 2.5));
    assert_eq!(h.vmm_rss_mib, Some(76.0));
    let q = &rows[1];
    assert_eq!(q.agent_setup_ms, None);
    assert_eq!(q.boot_to_exit_ms, Some(1200.0 + 7.5 + 40.0 + 2.5));
    assert_eq!(q.boot_to_exit_ratio, Some(1.0));
    assert!((h.boot_to_exit_ratio.unwrap() - 1460.0 / 1250.0).abs() < 1e-9);
    assert!((h.vmm_rss_ratio.unwrap() - 76.0 / 61.0).abs() < 1e-9);
    let v = &rows[2];
    assert_eq!(v.vmm_start_ms, Some(9.0));
    assert_eq!((v.kernel_boot_ms, v.boot_to_exit_ms), (None, None));
    assert!((v.vmm_rss_mib.unwrap() - 2570.0 / 1024.0).abs() < 1e-9);
    assert_eq!((v.vmm_rss_ratio, v.boot_to_exit_ratio), (None, None));

    let t = r.table();
    assert!(t.contains("microvm create-to-exit split"), "{t}");
    for needle in [
        "hako-microvm        qemu/tcg",
        "qemu-microvm        qemu/tcg",
        "hako-vmm-synthetic  hako/kvm",
        "1.17x",
        "1.25x",
        "≤100",
        "≤5",
        "Linux cannot boot on this host's KVM: probe guest stopped",
    ] {
        assert!(t.contains(needle), "{needle:?} missing in\n{t}");
    }

    // The JSON has the split per sample and the summarized rows; it reads back to the same table.
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(
        j["subjects"][0]["samples"][1]["microvm"]["kernel_boot_ms"],
        1001.0
    );
    assert_eq!(j["microvm_split"][0]["subject"], "hako-microvm");
    assert_eq!(j["vmm_synthetic"]["samples"].as_array().unwrap().len(), 3);
    let back: Report = serde_json::from_value(j.clone()).unwrap();
    assert_eq!(back.table(), t);

    // A report from before the split (no such fields) still reads, for --replot.
    let mut old = j;
    old.as_object_mut().unwrap().remove("vmm_synthetic");
    old.as_object_mut().unwrap().remove("microvm_split");
    for s in old["subjects"].as_array_mut().unwrap() {
        for x in s["samples"].as_array_mut().unwrap() {
            x.as_object_mut().unwrap().remove("microvm");
        }
    }
    let old: Report = serde_json::from_value(old).unwrap();
    assert!(old.vmm_synthetic.is_none());
    assert!(!old.table().contains("microvm create-to-exit split"));
}

/// As root with qemu and the guest kernel: the plain-qemu peer gets its boot split from its
/// /init's line and its memory beyond guest RAM from smaps; hako's VMM runs the synthetic guest
/// when /dev/kvm opens (hako-microvm itself is skipped: no hako binary is given).
#[test]
fn short_real_run_qemu_peer_split_and_synthetic_vmm() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    if hako_bench::procs::which("qemu-system-x86_64").is_none() {
        eprintln!("skipping: qemu-system-x86_64 not installed");
        return;
    }
    if let Err(e) = hako_bench::workloads::find_kernel(None) {
        eprintln!("skipping: {e}");
        return;
    }
    let _one_at_a_time = REAL_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("b.json");
    real_run(
        &[
            "--backends",
            "microvm",
            "--peers",
            "qemu",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--density",
            "0",
            "--syscall-runs",
            "0",
            "--net-secs",
            "0",
            "--hako",
            "/nonexistent/hako",
        ],
        d.path(),
    );
    let r: Report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let q = r
        .subjects
        .iter()
        .find(|s| s.name == "qemu-microvm")
        .expect("qemu-microvm measured");
    let counted: Vec<&Sample> = q.samples.iter().filter(|s| s.error.is_none()).collect();
    assert_eq!(counted.len(), 2, "{:?}", q.samples);
    for s in counted {
        let m = s.microvm.as_ref().expect("a split for every qemu sample");
        let kernel = m.kernel_boot_ms.unwrap();
        assert!(kernel > 0.0 && kernel < m.ready_ms.unwrap(), "{m:?}");
        assert!(m.run_ms.unwrap() >= 0.0, "{m:?}");
        assert!(m.boot_to_exit_ms().unwrap() <= s.total_ms, "{m:?} {s:?}");
        assert!(
            m.vmm_rss_kib.unwrap() > 0 && m.guest_rss_kib.unwrap() > 0,
            "{m:?}"
        );
        assert_eq!(m.agent_setup_ms, None);
    }
    assert!(r.microvm_split.iter().any(|x| x.subject == "qemu-microvm"));
    assert!(r.skipped.iter().any(|s| s.name == "hako-microvm"));
    let v = r.vmm_synthetic.as_ref().expect("synthetic VMM attempted");
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
    {
        assert_eq!(v.samples.len(), 2, "{v:?}");
        assert!(!v.probe.is_empty());
        for m in &v.samples {
            assert!(m.vmm_start_ms.unwrap() > 0.0, "{m:?}");
            assert!(m.vmm_build_ms.unwrap() <= m.vmm_start_ms.unwrap(), "{m:?}");
            assert!(m.vmm_rss_kib.unwrap() > 0, "{m:?}");
            assert!(m.guest_rss_kib.is_some(), "{m:?}");
        }
        assert!(r
            .microvm_split
            .iter()
            .any(|x| x.subject == microvm::SYNTHETIC_NAME));
    } else {
        assert!(v.error.as_ref().unwrap().contains("/dev/kvm"), "{v:?}");
    }
}

/// The hako binary of this workspace's target dir, if one was built.
fn built_hako() -> Option<std::path::PathBuf> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    ["target/debug/hako", "target/release/hako"]
        .iter()
        .map(|p| ws.join(p))
        .find(|p| p.is_file())
}

/// The bench's network namespaces and host-side veths of this process (its tag is the pid).
fn net_leftovers() -> Vec<String> {
    let pid = std::process::id();
    let mut left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("hako-bench-{pid}-")))
                .collect()
        })
        .unwrap_or_default();
    let (_, host_if, sb_if, _, _) = hako_bench::netbench::names(&pid.to_string(), 0);
    let prefixes = [
        host_if.trim_end_matches('0').to_string(),
        sb_if.trim_end_matches('0').to_string(),
    ];
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| n.starts_with(p.as_str())) {
                left.push(n);
            }
        }
    }
    left
}

/// As root with a built hako and iproute2: the network workload for the container backend
/// answers requests through the bench's own namespace, and leaves no namespace or veth behind.
#[test]
fn network_workload_container_backend() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root to make network namespaces");
        return;
    }
    if hako_bench::procs::which("ip").is_none() {
        eprintln!("skipping: ip (iproute2) not installed");
        return;
    }
    let Some(hako) = built_hako() else {
        eprintln!("skipping: no hako binary in target/ (cargo build -p hako)");
        return;
    };
    let _one_at_a_time = REAL_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("b.json");
    let hako_s = hako.display().to_string();
    real_run(
        &[
            "--backends",
            "container,wasm",
            "--peers",
            "none",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--density",
            "0",
            "--syscall-runs",
            "0",
            "--idle-secs",
            "0",
            "--net-secs",
            "1",
            "--shell-runs",
            "0",
            "--hako",
            &hako_s,
        ],
        d.path(),
    );
    let r: Report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r.settings.net_secs, 1);
    let c = r
        .subjects
        .iter()
        .find(|s| s.name == "hako-container")
        .expect("hako-container measured");
    let n = c.net.as_ref().expect("a network run for hako-container");
    assert!(n.skipped.is_none(), "{n:?}");
    assert!(n.requests > 0, "{n:?}");
    assert!(n.rps.unwrap() > 0.0, "{n:?}");
    assert_eq!(n.latency_ms.unwrap().n as u64, n.requests);
    // crun was not asked for: no ratio, but the peer is named.
    assert_eq!(n.peer.as_deref(), Some("crun"));
    assert_eq!(n.rps_ratio, None);
    // The wasm subjects say why they have no network run.
    let w = r.subjects.iter().find(|s| s.name == "hako-wasm").unwrap();
    let why = w.net.as_ref().unwrap().skipped.as_deref().unwrap();
    assert!(why.contains("no sockets"), "{why}");
    assert!(net_leftovers().is_empty(), "{:?}", net_leftovers());
}
