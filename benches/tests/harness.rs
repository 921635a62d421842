//! Tests of the harness itself: skip logic, the plot against the JSON, and (as root with runc
//! installed) a short real run whose JSON and SVG agree.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use hako_bench::report::{Machine, Report, Settings, SubjectReport};
use hako_bench::subjects::{self, Category, Ctx, Kind, Plan, Sample};
use hako_bench::{plot, workloads::Workloads};

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
    let mut r = Report {
        tool: "test".into(),
        command: vec![],
        started_unix: 0,
        duration_s: 0.0,
        machine: Machine::detect("test".into()),
        settings: Settings {
            runs: 6,
            warmup: 1,
            ..Default::default()
        },
        subjects,
        skipped: vec![],
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

#[test]
fn table_lists_ratios_and_skips() {
    let mut r = synthetic_report();
    r.skipped.push(subjects::Skipped {
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
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("b.json");
    let svg = d.path().join("b.svg");
    let args: Vec<String> = [
        "hako-bench",
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
        "--no-progress",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--json".into(),
        json.display().to_string(),
        "--plot".into(),
        svg.display().to_string(),
        "--work-dir".into(),
        d.path().join("work").display().to_string(),
    ])
    .collect();
    assert_eq!(hako_bench::main_with_args(args).unwrap(), 0);
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
