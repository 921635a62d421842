//! CLI-level tests of every subcommand on the container backend, and of bad input: each bad
//! input must give exit 1, one error line (also in the --log file, JSON with --log-format json),
//! and leave no state directory, cgroup or process behind.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn run_prints_output_and_returns_the_exit_code() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = Bundle::busybox(&["sh", "-c", "echo hello from $(hostname); exit 3"]);
    let id = unique("run");
    let o = h.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert_eq!(
        stdout(&o),
        "hello from hako\n",
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(
        h.leftovers().is_empty(),
        "run left state behind: {:?}",
        h.leftovers()
    );
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "run left cgroups: {:?}",
        cgroup_dirs_named(&id)
    );
}

#[test]
fn create_start_kill_delete_follow_the_lifecycle() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.05; done",
    ]);
    let id = unique("life");
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
    assert_eq!(st["id"], id.as_str());
    // The backend is a field of hako's own; the annotations are config.json's (none here).
    assert_eq!(st["backend"], "container");
    assert!(st.get("annotations").is_none(), "{st}");
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(st["pid"], json!(pid));
    // The created process has not run the workload yet: it is not `sh`.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!comm.contains("trap"), "workload ran before start: {comm}");
    // start of a created container works once, then it is running.
    h.ok(&["start", &id]);
    h.wait_status(&id, "running");
    let err = h.fails(&["start", &id]);
    assert!(err.contains("running"), "{err}");
    // delete without --force refuses a running container.
    let err = h.fails(&["delete", &id]);
    assert!(err.contains("running"), "{err}");
    // `ps` lists the init pid; `list` shows the container.
    let pids: Vec<i64> = serde_json::from_str(&h.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    let table = h.ok(&["ps", &id]);
    assert!(
        table.lines().count() >= 2 && table.contains(&pid.to_string()),
        "{table}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&h.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    assert!(h.ok(&["list", "-q"]).contains(&id));
    // TERM by name reaches the workload, whose trap exits.
    h.ok(&["kill", &id, "TERM"]);
    h.wait_status(&id, "stopped");
    assert_eq!(h.state(&id)["pid"], 0);
    h.ok(&["delete", &id]);
    assert!(h.leftovers().is_empty());
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "{:?}",
        cgroup_dirs_named(&id)
    );
    let err = h.fails(&["state", &id]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn signals_by_number_and_delete_force() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("force");
    h.ok(&["run", "--detach", "--bundle", b.dir.to_str().unwrap(), &id]);
    h.wait_status(&id, "running");
    let pid = h.state(&id)["pid"].as_i64().unwrap() as i32;
    h.ok(&["kill", &id, "9"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);

    let id2 = unique("force");
    h.ok(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id2]);
    let pid2 = h.state(&id2)["pid"].as_i64().unwrap() as i32;
    h.ok(&["delete", "--force", &id2]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid2}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid2}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    );
    assert!(h.leftovers().is_empty());
    let _ = pid;
}

#[test]
fn exec_runs_in_the_container() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("exec");
    h.ok(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id]);
    // Args form, with env and cwd; the exit code comes back.
    let o = h.run(&[
        "exec",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/etc",
        &id,
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(hostname); exit 5",
    ]);
    assert_eq!(
        stdout(&o),
        "hi /etc hako\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(5));
    // Same pid namespace as the init: sleep is pid 1 there.
    let o = h.ok(&["exec", &id, "cat", "/proc/1/cmdline"]);
    assert!(o.starts_with("sleep"), "{o}");
    // hako exec queues signals from before the process exists: the process itself blocks none.
    let o = h.ok(&["exec", &id, "grep", "SigBlk", "/proc/self/status"]);
    assert_eq!(o.split_whitespace().nth(1), Some("0000000000000000"), "{o}");
    // --cap, in both spellings runc takes: the capability is in the process's sets.
    for cap in ["CAP_SYS_ADMIN", "sys_admin"] {
        let o = h.ok(&[
            "exec",
            "--cap",
            cap,
            &id,
            "grep",
            "CapEff",
            "/proc/self/status",
        ]);
        let eff = u64::from_str_radix(o.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert!(eff & (1 << 21) != 0, "{cap}: {o}");
    }
    let e = h.fails(&["exec", "--cap", "CAP_NOPE", &id, "true"]);
    assert!(e.contains("unknown capability"), "{e}");
    // --process FILE form, detached with a pid file.
    let pf = b.dir.join("process.json");
    std::fs::write(&pf, json!({"args": ["sh", "-c", "echo detached > /tmp/out"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}).to_string()).unwrap();
    let pidfile = b.dir.join("exec.pid");
    h.ok(&[
        "exec",
        "--process",
        pf.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    assert!(
        std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
            > 0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = h.run(&["exec", &id, "cat", "/tmp/out"]);
        if stdout(&o) == "detached\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "detached exec never wrote its file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.ok(&["delete", "--force", &id]);
}

#[test]
fn pause_resume_and_update() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("pause");
    h.ok(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id]);
    h.ok(&["pause", &id]);
    assert_eq!(h.status(&id), "paused");
    let err = h.fails(&["pause", &id]);
    assert!(err.contains("paused"), "{err}");
    h.ok(&["resume", &id]);
    assert_eq!(h.status(&id), "running");
    let err = h.fails(&["resume", &id]);
    assert!(err.contains("running"), "{err}");
    // update: pids limit and memory, read back from the container's own cgroup files.
    let pid = h.state(&id)["pid"].as_i64().unwrap();
    let cgroup_file = |controller: &str, file: &str| -> String {
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let v1 = cg.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrls
                .split(',')
                .any(|c| c == controller)
                .then(|| format!("/sys/fs/cgroup/{controller}{path}/{file}"))
        });
        let path = v1.unwrap_or_else(|| {
            format!(
                "/sys/fs/cgroup/unified{}/{file}",
                cg.lines().find_map(|l| l.strip_prefix("0::")).unwrap()
            )
        });
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .to_string()
    };
    h.ok(&["update", "--pids-limit", "77", "--memory", "64m", &id]);
    assert_eq!(cgroup_file("pids", "pids.max"), "77");
    assert_eq!(
        cgroup_file("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    // --resources from stdin, as containerd sends it.
    let mut child = h
        .cmd()
        .args(["update", "--resources", "-", &id])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids":{"limit":55}}"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(cgroup_file("pids", "pids.max"), "55");
    h.ok(&["delete", "--force", &id]);
}

#[test]
fn hooks_run_with_state_on_stdin() {
    skip_unless!(need_root());
    let h = Hako::new();
    let mut b = Bundle::busybox(&["true"]);
    let out = b.dir.join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo {name} \"$s\" >> {}", out.display())]});
    b.edit(|c| {
        c["hooks"] = json!({
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "startContainer": [{"path": "/bin/true"}],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")]
        })
    });
    let id = unique("hooks");
    h.ok(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    let log = std::fs::read_to_string(&out).unwrap();
    let kinds: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["createRuntime", "createContainer", "poststart", "poststop"],
        "{log}"
    );
    for l in log.lines() {
        let state: serde_json::Value = serde_json::from_str(l.split_once(' ').unwrap().1).unwrap();
        assert_eq!(state["id"], id.as_str());
    }
    assert!(
        log.lines()
            .last()
            .unwrap()
            .contains("\"status\":\"stopped\""),
        "{log}"
    );

    // A failing createRuntime hook fails create and leaves nothing behind.
    b.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]}));
    let b2 = Bundle::busybox(&["sleep", "100"]);
    let _ = b2;
    let id = unique("hookfail");
    let err = h.fails(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert!(err.contains("createRuntime hook"), "{err}");
    assert!(h.leftovers().is_empty(), "{:?}", h.leftovers());
    assert!(cgroup_dirs_named(&id).is_empty());
}

#[test]
fn spec_and_features() {
    let dir = std::env::temp_dir().join(unique("spec"));
    std::fs::create_dir_all(&dir).unwrap();
    let h = Hako::new();
    h.ok(&["spec", "--bundle", dir.to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert!(spec["ociVersion"].as_str().unwrap().starts_with("1."));
    assert!(spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "pid"));
    let err = h.fails(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(err.contains("exists"), "{err}");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    h.ok(&["spec", "--rootless", "--bundle", dir.to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert!(spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "user"));
    std::fs::remove_dir_all(&dir).unwrap();

    let f: serde_json::Value = serde_json::from_str(&h.ok(&["features"])).unwrap();
    assert!(f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "createRuntime"));
    assert!(f["io.hako.backends"]["container"].is_object(), "{f}");
}

/// Every bad input: exit 1, one line on stderr, the same message in the JSON log, nothing left.
#[test]
fn bad_input_is_one_clear_error_and_leaves_nothing() {
    skip_unless!(need_root());
    let h = Hako::new();
    let logf = std::env::temp_dir()
        .join(unique("log"))
        .with_extension("json");
    let check = |args: &[&str], want: &str| {
        let mut full = vec!["--log", logf.to_str().unwrap(), "--log-format", "json"];
        full.extend_from_slice(args);
        let err = h.fails(&full);
        assert!(
            err.to_lowercase().contains(&want.to_lowercase()),
            "hako {args:?}: {err:?} lacks {want:?}"
        );
        let last = std::fs::read_to_string(&logf)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_string();
        let entry: serde_json::Value = serde_json::from_str(&last).unwrap();
        assert_eq!(entry["level"], "error");
        assert!(
            err.contains(entry["msg"].as_str().unwrap()),
            "log {entry} vs stderr {err}"
        );
        assert!(
            h.leftovers().is_empty(),
            "hako {args:?} left {:?}",
            h.leftovers()
        );
    };
    let mut b = Bundle::busybox(&["true"]);
    let bd = b.dir.to_str().unwrap().to_string();

    std::fs::write(b.dir.join("config.json"), "{ not json").unwrap();
    check(&["create", "--bundle", &bd, &unique("bad")], "config.json");
    b.save();
    check(
        &["create", "--bundle", "/nonexistent/bundle", &unique("bad")],
        "not found",
    );
    check(
        &["create", "--bundle", &bd, "../escape"],
        "invalid container id",
    );
    check(&["create", "--bundle", &bd, "a/b"], "invalid container id");
    b.edit(|c| c["root"]["path"] = json!("no-such-rootfs"));
    check(&["create", "--bundle", &bd, &unique("bad")], "rootfs");
    b.edit(|c| c["root"]["path"] = json!("rootfs"));
    b.edit(|c| c["linux"]["namespaces"] = json!([{"type": "bogus"}]));
    check(
        &["create", "--bundle", &bd, &unique("bad")],
        "linux.namespaces[0].type",
    );
    b.edit(|c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "pid"}, {"type": "uts"}])
    });
    b.edit(|c| c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOTIFY", "syscalls": []}));
    check(
        &["create", "--bundle", &bd, &unique("bad")],
        "SCMP_ACT_NOTIFY",
    );
    b.edit(|c| c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_DANCE"}));
    check(&["create", "--bundle", &bd, &unique("bad")], "seccomp");
    b.edit(|c| {
        c["linux"].as_object_mut().unwrap().remove("seccomp");
        c["annotations"] = json!({"io.hako.frobnicate": "yes"});
    });
    check(
        &["create", "--bundle", &bd, &unique("bad")],
        "unknown annotation io.hako.frobnicate",
    );
    b.edit(|c| c["annotations"] = json!({"io.hako.backend": "teleport"}));
    check(
        &["create", "--bundle", &bd, &unique("bad")],
        "unknown backend",
    );
    b.edit(|c| c["annotations"] = json!({}));
    b.edit(|c| c["process"]["args"] = json!(["/no/such/program"]));
    // The program is looked up in the container at create time, as runc does.
    check(
        &["create", "--bundle", &bd, &unique("noexec")],
        "/no/such/program",
    );
    b.edit(|c| c["process"]["args"] = json!(["sleep", "100"]));

    // Duplicate id, unknown signal, start of a running container, ops on missing ones.
    let id = unique("dup");
    h.ok(&["create", "--bundle", &bd, &id]);
    let err = h.fails(&["create", "--bundle", &bd, &id]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(h.leftovers(), vec![id.clone()]);
    let err = h.fails(&["kill", &id, "SIGFOO"]);
    assert!(err.contains("unknown signal"), "{err}");
    let err = h.fails(&["pause", &id]);
    assert!(err.contains("created"), "{err}");
    h.ok(&["delete", &id]);
    assert!(h.leftovers().is_empty());
    assert!(cgroup_dirs_named(&id).is_empty());
    // delete --force of a missing container is a success, as with runc (engines rely on it).
    h.ok(&["delete", "--force", "nope"]);
    for args in [
        vec!["start", "nope"],
        vec!["kill", "nope"],
        vec!["delete", "nope"],
        vec!["state", "nope"],
    ] {
        check(&args, "does not exist");
    }
    let _ = std::fs::remove_file(&logf);
}

/// Every backend says in `hako features` what it refuses and how it runs rootless.
#[test]
fn features_list_each_backends_refusals() {
    let h = Hako::new();
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["features"])).unwrap();
    let per = v["io.hako.backends"].as_object().unwrap();
    assert!(per.contains_key("container"));
    for (name, f) in per {
        let refuses = f["io.hako.refuses"].as_array();
        assert!(
            refuses.is_some_and(|r| !r.is_empty() && r.iter().all(|x| x.is_string())),
            "{name}: no io.hako.refuses list"
        );
        assert!(
            f["io.hako.rootless"].is_string(),
            "{name}: no io.hako.rootless"
        );
    }
}

/// The binary carries its relative relocations packed (DT_RELR, see build.rs): with RELA entries
/// every hako process starts with 1.3 MiB more resident, which the memory bench shows.
#[test]
fn binary_packs_its_relative_relocations() {
    let out = match std::process::Command::new("readelf")
        .args(["-d", common::HAKO])
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!("skipped: readelf (binutils) is not usable here");
            return;
        }
    };
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(
        dynamic.contains("(RELR)"),
        "no DT_RELR in {}:\n{dynamic}",
        common::HAKO
    );
    assert!(
        dynamic.contains("PIE"),
        "hako must stay position-independent:\n{dynamic}"
    );
}
