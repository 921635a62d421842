//! CLI-level tests of the microvm backend through the qemu engine (TCG on these machines: each
//! boot takes seconds, so there are three). Needs root, qemu-system-x86_64, mkfs.ext4, the
//! guest kernel (kernels/build.sh) and the guest agent (backends/microvm/agent/build.sh, run
//! here when needed).

#![cfg(feature = "microvm")]

mod common;
use common::*;
use std::time::{Duration, Instant};

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
    let h = hako(&microvm_agent());
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

/// The guest's `/` is exactly the bundle's rootfs, as with every other backend and runc: no
/// `/lost+found` from mkfs.ext4 (issue 13). Every spec mount's destination is already in the
/// bundle, so `ls -a /` must list the bundle's top directory and nothing else.
#[test]
fn microvm_root_is_exactly_the_bundles_rootfs() {
    skip_unless!(need_microvm());
    let h = hako(&microvm_agent());
    let b = microvm_bundle(&["ls", "-a", "/"]);
    let mut want: Vec<String> = std::fs::read_dir(b.rootfs())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    want.sort();
    want.splice(0..0, [".".to_string(), "..".to_string()]);
    let o = h.run(&[
        "run",
        "--bundle",
        b.dir.to_str().unwrap(),
        &unique("mvm-ls"),
    ]);
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        want,
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn microvm_create_start_kill_delete() {
    skip_unless!(need_microvm());
    let h = hako(&microvm_agent());
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
    let pid = read_pid(&pidfile);
    assert_eq!(st["pid"], pid);
    // Once create returns, the host process and its VM are in every hierarchy of the host
    // cgroup (a restored VM is moved there while qemu starts, the host process after Go).
    // The processes that name the state root: the host process and its VM.
    let procs_of_root = vm_processes(&h);
    assert!(
        procs_of_root.contains(&pid) && procs_of_root.len() == 2,
        "the host process {pid} and its VM: {procs_of_root:?}"
    );
    let dirs = cgroup_dirs_named(&id);
    assert!(!dirs.is_empty(), "no host cgroup for {id}");
    for d in &dirs {
        let procs: Vec<i32> = std::fs::read_to_string(d.join("cgroup.procs"))
            .unwrap()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        for want in &procs_of_root {
            assert!(
                procs.contains(want),
                "{want} not in {}: {procs:?}",
                d.display()
            );
        }
    }
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

/// `hako --debug create`, start, wait, delete of bundle `b`: create's stderr and the
/// sandbox's timings. The workload's stdout lands in `b.dir/out` (the host process inherits
/// create's stdout and stderr).
fn snapshot_create_start_delete(h: &Hako, b: &Bundle, prefix: &str) -> (String, serde_json::Value) {
    let id = unique(prefix);
    let (out, err) = (b.dir.join("out"), b.dir.join("err"));
    let st = h
        .cmd()
        .args([
            "--debug",
            "--log",
            b.dir.join("log.json").to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.dir.to_str().unwrap(),
            &id,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    let created_err = std::fs::read_to_string(&err).unwrap();
    assert!(st.success(), "{created_err}");
    h.ok(&["start", &id]);
    h.wait_status(&id, "stopped");
    let t: serde_json::Value = serde_json::from_slice(
        &std::fs::read(h.root.join(&id).join("microvm-timings.json")).unwrap(),
    )
    .unwrap();
    h.ok(&["delete", &id]);
    (created_err, t)
}

/// Snapshot boot through the CLI: `hako microvm warm` makes the template, a create with the
/// default annotations restores it (its timings say so, and no debug line says "cold"), the
/// bundle's workload runs; `hako features` reports the boot modes.
#[test]
fn microvm_warm_then_create_restores_the_template() {
    skip_unless!(need_microvm());
    let h = hako(&microvm_agent());
    let dir = h.ok(&["microvm", "warm"]);
    let dir = std::path::Path::new(dir.trim());
    assert!(dir.join("manifest.json").is_file(), "{}", dir.display());
    assert!(dir.starts_with(h.root.join("microvm-cache/templates")));
    // A second warm checks it (checksums included) and keeps it.
    assert_eq!(h.ok(&["microvm", "warm"]).trim(), dir.to_str().unwrap());
    let b = microvm_bundle(&["sh", "-c", "echo restored $(hostname)"]);
    let (created_err, t) = snapshot_create_start_delete(&h, &b, "mvm-snap");
    assert!(!created_err.contains("cold"), "{created_err}");
    assert_eq!(t["boot"], "snapshot", "{t}");
    // The backend's debug lines reach --log too, as JSON, not only stderr.
    let log = std::fs::read_to_string(b.dir.join("log.json")).unwrap();
    let phases: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| {
            e["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("microvm: create: "))
        })
        .collect();
    assert!(
        phases
            .iter()
            .any(|e| e["level"] == "debug" && e["msg"].as_str().unwrap().contains("host process")),
        "{log}"
    );
    assert!(
        created_err.contains("hako: debug: microvm: create: "),
        "{created_err}"
    );
    assert_eq!(
        std::fs::read_to_string(b.dir.join("out")).unwrap(),
        "restored hako\n"
    );
    assert!(containers_left(&h).is_empty(), "{:?}", containers_left(&h));
    assert!(vm_processes(&h).is_empty(), "a VM was left behind");
    let f: serde_json::Value = serde_json::from_str(&h.ok(&["features"])).unwrap();
    let boot = &f["io.hako.backends"]["microvm"]["boot"];
    assert_eq!(boot["default"], "snapshot", "{boot}");
    assert!(
        boot["snapshot"]["qemu"]
            .as_str()
            .unwrap()
            .starts_with("available"),
        "{boot}"
    );
}

#[test]
fn microvm_delete_force_stops_the_vm() {
    skip_unless!(need_microvm());
    let h = hako(&microvm_agent());
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
    let h = hako(&microvm_agent());
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
        (
            "io.hako.microvm.boot",
            "warm".into(),
            "use snapshot or cold",
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

/// A running microVM sandbox for exec tests: the workload leaves a file in its root, then idles.
fn running_vm(h: &Hako, prefix: &str) -> (Bundle, String) {
    let b = microvm_bundle(&[
        "sh",
        "-c",
        "echo from-the-workload > /made-by-workload; exec sleep 600",
    ]);
    let id = unique(prefix);
    h.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    // Created, not started: there is no workload to join yet.
    let err = h.fails(&["exec", &id, "true"]);
    assert!(err.contains("has not been started"), "{err}");
    h.ok(&["start", &id]);
    h.wait_status(&id, "running");
    // The workload writes its file right after start.
    exec_until(
        h,
        &id,
        &["test", "-f", "/made-by-workload"],
        true,
        "the workload never wrote its file",
    );
    (b, id)
}

#[test]
fn microvm_exec_runs_in_the_workloads_root() {
    skip_unless!(need_microvm());
    let h = hako(&microvm_agent());
    let (_b, id) = running_vm(&h, "mvm-exec");

    // Output, stderr and exit code; the workload's file (same root and mount namespace) and the
    // guest kernel.
    let o = h.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /made-by-workload; uname -r; echo to-stderr >&2; exit 5",
    ]);
    assert_eq!(
        stdout(&o),
        format!("from-the-workload\n{}\n", guest_release()),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "to-stderr\n");
    assert_eq!(o.status.code(), Some(5));

    // --user, --env, --cwd; stdin reaches the process, and its EOF ends it.
    exec_identity_and_stdin(&h, &id, "65534:65534", "through the guest");

    // A program that is not there: one error line, exit 1.
    let err = h.fails(&["exec", &id, "/no/such/program"]);
    assert!(err.contains("no such file in the rootfs"), "{err}");
    // A process file with a host AppArmor profile is refused.
    let pf = std::env::temp_dir().join(unique("mvm-process.json"));
    std::fs::write(
        &pf,
        r#"{"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "apparmorProfile": "x"}"#,
    )
    .unwrap();
    let err = h.fails(&["exec", "--process", pf.to_str().unwrap(), &id]);
    let _ = std::fs::remove_file(&pf);
    assert!(err.contains("AppArmor"), "{err}");

    h.ok(&["kill", &id, "KILL"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
    assert!(containers_left(&h).is_empty(), "{:?}", containers_left(&h));
    assert!(vm_processes(&h).is_empty(), "a process was left behind");
}

#[test]
fn microvm_exec_signals_tty_and_teardown() {
    skip_unless!(need_microvm());
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let h = hako(&microvm_agent());
    let (b, id) = running_vm(&h, "mvm-exec2");

    // A signal to `hako exec` reaches the process, which exits as its trap says.
    let mut child = h
        .cmd()
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo trapped; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "trapped\n");
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(7));

    // --detach --pid-file: the pid is the exec client; killing it kills the guest process.
    let pidfile = b.dir.join("exec.pid");
    let client = exec_detached(
        &h,
        &id,
        &pidfile,
        &["sh", "-c", "echo $$ > /exec-pid; exec sleep 600"],
    );
    exec_until(
        &h,
        &id,
        &["test", "-s", "/exec-pid"],
        true,
        "the detached exec never ran",
    );
    h.ok(&["exec", &id, "sh", "-c", "kill -0 $(cat /exec-pid)"]);
    kill(Pid::from_raw(client), Signal::SIGKILL).unwrap();
    wait_gone(client, "the killed exec client");
    exec_until(
        &h,
        &id,
        &["sh", "-c", "kill -0 $(cat /exec-pid)"],
        false,
        "the guest process outlived its exec client",
    );

    // --tty with --console-socket: the process gets a terminal of the guest.
    let sock_path = b.dir.join("console.sock");
    let receiver = console_receiver(&sock_path);
    let mut child = h
        .cmd()
        .args([
            "exec",
            "--tty",
            "--console-socket",
            sock_path.to_str().unwrap(),
            &id,
            "sh",
            "-c",
            "tty; exit 9",
        ])
        .spawn()
        .unwrap();
    let master = receiver.join().unwrap();
    let out = read_until(&master, "\n");
    assert!(out.starts_with("/dev/pts/"), "tty printed {out:?}");
    // The terminal stays open until the process is done (closing it would hang it up).
    assert_eq!(child.wait().unwrap().code(), Some(9));
    drop(master);

    // When the workload ends, exec'd processes end with it, killed.
    let client = exec_detached(&h, &id, &pidfile, &["sleep", "600"]);
    h.ok(&["kill", &id, "TERM"]);
    h.wait_status(&id, "stopped");
    wait_gone(client, "an exec client after its sandbox ended");
    h.ok(&["delete", &id]);
    assert!(containers_left(&h).is_empty(), "{:?}", containers_left(&h));
    assert!(vm_processes(&h).is_empty(), "a process was left behind");
}

/// `hako <args>` in a private mount namespace whose `/dev` lacks `kvm` (a tmpfs holding the
/// usual nodes, bound from the real /dev): a host without KVM, as far as hako can tell.
fn without_kvm(h: &Hako, args: &[&str]) -> std::process::Output {
    let script = "set -e; keep=$(mktemp -d); mount --bind /dev \"$keep\"; \
        mount -t tmpfs -o size=64k,mode=755 tmpfs /dev; \
        for d in null zero full random urandom tty ptmx; do touch /dev/$d; mount --bind \"$keep/$d\" /dev/$d; done; \
        mkdir /dev/pts /dev/shm; mount --bind \"$keep/pts\" /dev/pts; mount -t tmpfs tmpfs /dev/shm; \
        umount -l \"$keep\"; rmdir \"$keep\"; test ! -e /dev/kvm; exec \"$@\"";
    std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(HAKO)
        .arg("--root")
        .arg(&h.root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare")
}

#[test]
fn microvm_without_dev_kvm() {
    skip_unless!(need_microvm());
    let h = hako(&microvm_agent());
    // vmm=hako needs KVM: one clear error, nothing left.
    let mut b = microvm_bundle(&["true"]);
    b.edit(|c| c["annotations"]["io.hako.microvm.vmm"] = "hako".into());
    let o = without_kvm(
        &h,
        &[
            "run",
            "--bundle",
            b.dir.to_str().unwrap(),
            &unique("mvm-nokvm"),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/dev/kvm does not exist"), "{err}");
    assert!(containers_left(&h).is_empty(), "{:?}", containers_left(&h));
    // auto falls back to qemu with software emulation.
    let mut b = microvm_bundle(&["sh", "-c", "echo booted without kvm; uname -r"]);
    b.edit(|c| c["annotations"]["io.hako.microvm.vmm"] = "auto".into());
    let id = unique("mvm-nokvm");
    let o = without_kvm(&h, &["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("booted without kvm\n{}\n", guest_release()),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success());
    assert!(containers_left(&h).is_empty(), "{:?}", containers_left(&h));
    assert!(vm_processes(&h).is_empty(), "a VM was left behind");
}

/// `run` re-executes hako from a sealed view of its binary (src/exe.rs), whose
/// /proc/self/exe names no directory: the guest agent must still be found by where hako is
/// installed (here: the build tree), with no HAKO_AGENT to help.
#[test]
fn microvm_finds_its_agent_after_the_sealed_reexec() {
    skip_unless!(need_microvm());
    microvm_agent();
    let h = Hako::new();
    let b = microvm_bundle(&["sh", "-c", "exit 4"]);
    let id = unique("mvm-agent");
    let st = h
        .cmd()
        .env_remove("HAKO_AGENT")
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        st.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

/// `hako microvm prune`: with a real template and rootfs image in the cache, the default age
/// keeps both (just used), `--all --dry-run` lists both and removes nothing, `--all` removes
/// both with their sizes on disk; the next create makes the template again and restores it.
#[test]
fn microvm_prune_all_then_create_rebuilds() {
    skip_unless!(need_microvm());
    let h = hako(&microvm_agent());
    let tmpl = h.ok(&["microvm", "warm"]).trim().to_string();
    let b = microvm_bundle(&["sh", "-c", "echo first"]);
    let (err, t) = snapshot_create_start_delete(&h, &b, "mvm-prune");
    assert_eq!(t["boot"], "snapshot", "{t} {err}");
    let cache = h.root.join("microvm-cache");
    let images = || -> Vec<String> {
        std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("rootfs-"))
            .collect()
    };
    assert_eq!(images().len(), 1);
    let kept = h.ok(&["microvm", "prune"]);
    assert_eq!(kept.trim(), "removed 0 items: 0.0 MiB in total");
    let dry = h.ok(&["microvm", "prune", "--all", "--dry-run"]);
    assert!(
        dry.contains(&format!("would remove {tmpl} (template, --all)")),
        "{dry}"
    );
    assert!(std::path::Path::new(&tmpl).is_dir());
    assert_eq!(images().len(), 1);
    let gone = h.ok(&["microvm", "prune", "--all"]);
    let lines: Vec<&str> = gone.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("removed {tmpl} (template, --all): "))),
        "{gone}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/rootfs-") && l.contains("(rootfs image, --all)")),
        "{gone}"
    );
    assert!(lines.last().unwrap().starts_with("removed "), "{gone}");
    assert!(!std::path::Path::new(&tmpl).exists());
    assert!(images().is_empty());
    // The next create makes the template again, and restores it.
    let b = microvm_bundle(&["sh", "-c", "echo again"]);
    let (err, t) = snapshot_create_start_delete(&h, &b, "mvm-prune");
    assert!(err.contains("made the template"), "{err}");
    assert_eq!(t["boot"], "snapshot", "{t} {err}");
    assert_eq!(
        std::fs::read_to_string(b.dir.join("out")).unwrap(),
        "again\n"
    );
    assert!(std::path::Path::new(&tmpl).join("manifest.json").is_file());
    assert!(containers_left(&h).is_empty(), "{:?}", containers_left(&h));
}

/// An unparsable `--older-than` is one error line and a non-zero exit, before anything goes.
#[test]
fn microvm_prune_refuses_a_bad_age() {
    let h = Hako::new();
    let err = h.fails(&["microvm", "prune", "--older-than", "7 days"]);
    assert!(err.contains("not a duration"), "{err}");
}
