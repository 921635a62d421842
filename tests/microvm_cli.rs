//! CLI-level tests of the microvm backend through the qemu engine (TCG on these machines: each
//! boot takes seconds, so there are three). Needs root, qemu-system-x86_64, mkfs.ext4, the
//! guest kernel (kernels/build.sh) and the guest agent (backends/microvm/agent/build.sh, run
//! here when needed).

#![cfg(feature = "microvm")]

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn need_microvm() -> Option<String> {
    if let Some(why) = need_root() {
        return Some(why);
    }
    let k = hako_microvm::assets::default_kernel();
    if let Err(e) = hako_microvm::assets::check_kernel(&k) {
        return Some(format!("no guest kernel: {e:#}"));
    }
    if let Err(e) = hako_microvm::qemu::Qemu::find() {
        return Some(format!("{e:#}"));
    }
    None
}

/// Build the static guest agent and point hako at it.
fn agent() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("backends/microvm/agent/build.sh");
    let out = std::process::Command::new(script)
        .output()
        .expect("agent/build.sh");
    assert!(
        out.status.success(),
        "agent build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn microvm_bundle(args: &[&str]) -> Bundle {
    let mut b = Bundle::busybox(args);
    b.edit(|c| {
        c["annotations"] =
            serde_json::json!({"io.hako.backend": "microvm", "io.hako.microvm.vmm": "qemu"})
    });
    b
}

fn hako(agent: &str) -> Hako {
    std::env::set_var("HAKO_AGENT", agent);
    Hako::new()
}

/// State entries other than the backend's content cache.
fn containers_left(h: &Hako) -> Vec<String> {
    h.leftovers()
        .into_iter()
        .filter(|n| n != "microvm-cache")
        .collect()
}

/// Processes (hako host processes, VMs) of this state root: the root followed by '/' or the end
/// of an argument, so that another test's root with a longer number does not match.
fn vm_processes(h: &Hako) -> Vec<i32> {
    let root = h.root.to_str().unwrap();
    let mut v = processes_mentioning(&format!("{root}/"));
    v.extend(processes_mentioning(&format!("{root}\0")));
    v.sort();
    v.dedup();
    v
}

fn guest_release() -> String {
    let k = std::fs::canonicalize(hako_microvm::assets::default_kernel()).unwrap();
    let cfg = std::fs::read_to_string(format!("{}.config", k.display())).unwrap();
    cfg.lines()
        .find_map(|l| {
            l.strip_prefix("# Linux/")
                .and_then(|r| r.strip_suffix(" Kernel Configuration"))
        })
        .and_then(|r| r.split_whitespace().nth(1))
        .unwrap()
        .to_string()
}

/// `hako <args>` for commands that leave a sandbox running (create, run --detach): its host
/// process inherits hako's stdio, so capture nothing that would stay open; stderr goes to a file.
fn detached(h: &Hako, args: &[&str]) {
    let err = std::env::temp_dir().join(unique("mvm-stderr"));
    let st = h
        .cmd()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    let msg = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = std::fs::remove_file(&err);
    assert!(st.success(), "hako {args:?}: {st}: {msg}");
}

#[test]
fn microvm_run_prints_output_exit_code_and_guest_kernel() {
    skip_unless!(need_microvm());
    let h = hako(&agent());
    let b = microvm_bundle(&[
        "sh",
        "-c",
        "echo hello from $(hostname); uname -r; echo to-stderr >&2; exit 3",
    ]);
    let id = unique("mvm-run");
    let o = h.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        stdout(&o),
        format!("hello from hako\n{}\n", guest_release()),
        "stderr: {err}"
    );
    assert_eq!(err, "to-stderr\n");
    assert_eq!(o.status.code(), Some(3));
    assert!(
        containers_left(&h).is_empty(),
        "run left state behind: {:?}",
        containers_left(&h)
    );
    assert!(vm_processes(&h).is_empty(), "a VM was left behind");
}

#[test]
fn microvm_create_start_kill_delete() {
    skip_unless!(need_microvm());
    let h = hako(&agent());
    let b = microvm_bundle(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo up; while true; do sleep 0.1; done",
    ]);
    let id = unique("mvm-life");
    let pidfile = b.dir.join("pid");
    h.ok(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    let st = h.state(&id);
    assert_eq!(st["status"], "created");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(st["pid"], pid);
    h.ok(&["start", &id]);
    h.wait_status(&id, "running");
    // The host cgroup holds the host process and the VM; freezing it pauses the guest.
    assert!(
        !cgroup_dirs_named(&id).is_empty(),
        "no host cgroup for {id}"
    );
    h.ok(&["pause", &id]);
    assert_eq!(h.status(&id), "paused");
    h.ok(&["resume", &id]);
    assert_eq!(h.status(&id), "running");
    // Give the guest shell time to install its trap before TERM arrives.
    std::thread::sleep(Duration::from_millis(1500));
    h.ok(&["kill", &id, "TERM"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
    assert!(containers_left(&h).is_empty(), "{:?}", containers_left(&h));
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "delete left cgroups: {:?}",
        cgroup_dirs_named(&id)
    );
    assert!(vm_processes(&h).is_empty(), "a VM was left behind");
}

#[test]
fn microvm_delete_force_stops_the_vm() {
    skip_unless!(need_microvm());
    let h = hako(&agent());
    let b = microvm_bundle(&["sleep", "600"]);
    let id = unique("mvm-force");
    detached(
        &h,
        &["run", "--detach", "--bundle", b.dir.to_str().unwrap(), &id],
    );
    h.wait_status(&id, "running");
    assert!(!vm_processes(&h).is_empty(), "the VM runs");
    h.ok(&["delete", "--force", &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vm_processes(&h).is_empty() {
        assert!(Instant::now() < deadline, "the VM outlived delete --force");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(containers_left(&h).is_empty(), "{:?}", containers_left(&h));
}

#[test]
fn microvm_bad_input_is_one_error_and_leaves_nothing() {
    skip_unless!(need_microvm());
    let h = hako(&agent());
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "io.hako.microvm.kernel",
            "/nonexistent/vmlinux".into(),
            "does not exist",
        ),
        ("io.hako.microvm.kernel", "/etc/passwd".into(), "not an ELF"),
        ("io.hako.microvm.memory", "16M".into(), "below the 32 MiB"),
        (
            "io.hako.microvm.image-budget",
            "1M".into(),
            "over the microvm image budget",
        ),
        (
            "io.hako.microvm.vmm",
            "firecracker".into(),
            "use hako, qemu or auto",
        ),
    ];
    for (key, value, want) in cases {
        let mut b = microvm_bundle(&["true"]);
        b.edit(|c| c["annotations"][key] = value.clone());
        let id = unique("mvm-bad");
        let err = h.fails(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
        assert!(err.contains(want), "{key}={value}: {err}");
        assert!(
            containers_left(&h).is_empty(),
            "{key}: left {:?}",
            containers_left(&h)
        );
        assert!(vm_processes(&h).is_empty(), "{key}: a process was left");
    }
    // A writable host directory cannot be shared with the guest: refused, not dropped.
    let mut b = microvm_bundle(&["true"]);
    let src = b.dir.join("vol");
    std::fs::create_dir_all(&src).unwrap();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/vol", "type": "bind", "source": src, "options": ["rbind", "rw"]}))
    });
    let err = h.fails(&[
        "run",
        "--bundle",
        b.dir.to_str().unwrap(),
        &unique("mvm-bad"),
    ]);
    assert!(
        err.contains("cannot share a writable host directory"),
        "{err}"
    );
    assert!(containers_left(&h).is_empty());
}
