//! The sentry backend through the `hako` CLI: run, the create/start/kill/delete lifecycle,
//! backend choice by annotation and by `--backend`, bad input, and isolation as the CLI sees it.

mod common;
use common::*;
use serde_json::json;

fn sentry_bundle(args: &[&str]) -> Bundle {
    let mut b = Bundle::busybox(args);
    b.edit(|c| {
        c["annotations"] = json!({"io.hako.backend": "sentry"});
    });
    b
}

#[test]
fn sentry_run_prints_output_exit_code_and_kernel_identity() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = sentry_bundle(&[
        "sh",
        "-c",
        "echo hello from $(hostname); uname -r; cat /etc/hostname; echo a | cat; exit 3",
    ]);
    let id = unique("srun");
    let o = h.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert_eq!(
        stdout(&o),
        "hello from hako\n4.4.0-hako-sentry\nrootfs-file\na\n",
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(
        h.leftovers().is_empty(),
        "run left state: {:?}",
        h.leftovers()
    );
    assert!(processes_mentioning(&id).is_empty());
}

#[test]
fn sentry_by_global_backend_flag() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = Bundle::busybox(&["cat", "/proc/version"]);
    let id = unique("sflag");
    let o = h.run(&[
        "--backend",
        "sentry",
        "run",
        "--bundle",
        b.dir.to_str().unwrap(),
        &id,
    ]);
    assert!(
        stdout(&o).starts_with("Linux version 4.4.0-hako-sentry"),
        "{o:?}"
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn sentry_create_start_kill_delete_lifecycle() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = sentry_bundle(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.05; done",
    ]);
    let id = unique("slife");
    let pidfile = b.dir.join("pid");
    h.ok(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(h.status(&id), "created");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(h.state(&id)["pid"], json!(pid));
    h.ok(&["start", &id]);
    h.wait_status(&id, "running");
    let ps = h.ok(&["ps", "--format", "json", &id]);
    let pids: Vec<i32> = serde_json::from_str(&ps).unwrap();
    assert!(pids.contains(&pid) && pids.len() >= 2, "ps: {ps}");
    h.ok(&["kill", &id, "15"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
    assert!(h.leftovers().is_empty());
    assert!(processes_mentioning(&id).is_empty());
    // The sentry's state (overlay upper dir) went with it, and the rootfs was never written.
    assert!(!b.rootfs().join("upper").exists());
}

#[test]
fn sentry_rejects_unknown_knobs_and_leaves_nothing() {
    skip_unless!(need_root());
    let h = Hako::new();
    let mut b = sentry_bundle(&["true"]);
    b.edit(|c| {
        c["annotations"]["io.hako.sentry.nonsense"] = json!("1");
    });
    let id = unique("sbad");
    let err = h.fails(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert!(err.contains("io.hako.sentry.nonsense"), "{err}");
    assert!(h.leftovers().is_empty());
    let b2 = sentry_bundle(&["/no/such/program"]);
    b2.save();
    let err = h.fails(&["create", "--bundle", b2.dir.to_str().unwrap(), &id]);
    assert!(err.contains("not found"), "{err}");
    assert!(h.leftovers().is_empty());
    assert!(processes_mentioning(&id).is_empty());
}

#[test]
fn sentry_pause_resume_and_cgroup_cleanup() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = sentry_bundle(&["sh", "-c", "while true; do sleep 0.05; done"]);
    let id = unique("spause");
    h.ok(&["run", "--detach", "--bundle", b.dir.to_str().unwrap(), &id]);
    h.wait_status(&id, "running");
    assert!(
        !cgroup_dirs_named(&id).is_empty(),
        "the sentry runs in the container's cgroup"
    );
    h.ok(&["pause", &id]);
    assert_eq!(h.status(&id), "paused");
    h.ok(&["resume", &id]);
    assert_eq!(h.status(&id), "running");
    // The workload's host id is reserved for this sandbox (a lock file naming it); a sentry
    // killed outright cannot give it back itself: `delete` does.
    let held = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/run/hako-sentry-ids")
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t == id))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(held().len(), 1, "no host id reserved for {id}");
    h.ok(&["kill", &id, "9"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
    assert!(held().is_empty(), "host id lock left: {:?}", held());
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "left cgroups: {:?}",
        cgroup_dirs_named(&id)
    );
    assert!(processes_mentioning(&id).is_empty());
}

#[test]
fn sentry_enforces_the_spec_seccomp_profile_too() {
    skip_unless!(need_root());
    let h = Hako::new();
    let mut b = sentry_bundle(&[
        "sh",
        "-c",
        "mkdir /made && echo made; echo rc=$?; echo still here",
    ]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    let id = unique("sseccomp");
    let o = h.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert_eq!(
        stdout(&o),
        "rc=1\nstill here\n",
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn sentry_console_socket_gets_the_pty() {
    skip_unless!(need_root());
    let h = Hako::new();
    let mut b = sentry_bundle(&[
        "sh",
        "-c",
        "tty >/dev/null && echo is-a-tty; stty size >/dev/null 2>&1; echo done",
    ]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let sock_path = b.dir.join("console.sock");
    let receiver = console_receiver(&sock_path);
    let id = unique("stty");
    h.ok(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &id,
    ]);
    let master = receiver.join().unwrap();
    h.ok(&["start", &id]);
    assert_eq!(read_until(&master, "done\n"), "is-a-tty\ndone\n");
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
}
