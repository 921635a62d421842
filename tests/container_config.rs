//! Each config.json field the container backend honours, set through a bundle and checked from
//! inside the container with `hako run` (the crate's own tests cover the same ground through the
//! contract; these prove the CLI path end to end).

mod common;
use common::*;
use serde_json::{json, Value};

/// Run `script` in a busybox container whose config `edit` changed; return (stdout, status).
fn run_with(edit: impl FnOnce(&mut Value), script: &str) -> (String, i32) {
    let h = Hako::new();
    let mut b = Bundle::busybox(&["sh", "-c", script]);
    b.edit(edit);
    let id = unique("cfg");
    let o = h.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert!(h.leftovers().is_empty(), "run left {:?}", h.leftovers());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let code = o.status.code().unwrap_or(-1);
    if code != 0 {
        eprintln!("stderr of {script:?}: {err}");
    }
    (stdout(&o), code)
}

fn status_field(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {out}"))
        .trim()
        .to_string()
}

#[test]
fn hostname_env_cwd_and_user() {
    skip_unless!(need_root());
    let (out, code) = run_with(
        |c| {
            c["hostname"] = json!("box-1");
            c["process"]["env"] = json!(["PATH=/bin", "COLOUR=teal"]);
            c["process"]["cwd"] = json!("/tmp");
            c["process"]["user"] =
                json!({"uid": 1234, "gid": 4321, "additionalGids": [77, 88], "umask": 63});
        },
        "echo $(hostname) $COLOUR $(pwd) $(id -u) $(id -g) $(id -G); umask",
    );
    assert_eq!(code, 0);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        "box-1 teal /tmp 1234 4321 4321 77 88"
    );
    assert_eq!(lines.next().unwrap(), "0077");
}

#[test]
fn capabilities_and_no_new_privileges() {
    skip_unless!(need_root());
    // CAP_KILL (5) and CAP_NET_BIND_SERVICE (10) only: 0x420.
    let (out, code) = run_with(
        |c| {
            let caps = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
            c["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps, "inheritable": caps});
            c["process"]["noNewPrivileges"] = json!(true);
        },
        "cat /proc/self/status",
    );
    assert_eq!(code, 0);
    for f in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
        assert_eq!(status_field(&out, f), "0000000000000420", "{f}");
    }
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    let (out, _) = run_with(
        |c| c["process"]["noNewPrivileges"] = json!(false),
        "cat /proc/self/status",
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
}

#[test]
fn rlimits_and_oom_score_adj() {
    skip_unless!(need_root());
    let (out, code) = run_with(
        |c| {
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 321, "soft": 123}, {"type": "RLIMIT_NPROC", "hard": 500, "soft": 400}]);
            c["process"]["oomScoreAdj"] = json!(345);
        },
        "ulimit -n; ulimit -Hn; ulimit -u; cat /proc/self/oom_score_adj",
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["123", "321", "400", "345"]
    );
}

#[test]
fn masked_readonly_paths_and_readonly_root() {
    skip_unless!(need_root());
    let (out, code) = run_with(
        |c| c["root"]["readonly"] = json!(true),
        "cat /proc/keys /proc/timer_list 2>&1 | wc -c; echo x > /proc/sys/kernel/hostname 2>/dev/null && echo sys-writable || echo sys-ro; \
         touch /newfile 2>/dev/null && echo root-writable || echo root-ro; ls /sys/firmware | wc -l",
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "sys-ro", "root-ro", "0"]
    );
    let (out, _) = run_with(|_| {}, "touch /newfile && echo root-writable");
    assert_eq!(out.trim(), "root-writable");
}

#[test]
fn mounts_with_flags_and_devices() {
    skip_unless!(need_root());
    let host = std::env::temp_dir().join(unique("bind"));
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from host\n").unwrap();
    let h2 = host.clone();
    let (out, code) = run_with(
        move |c| {
            let m = c["mounts"].as_array_mut().unwrap();
            m.push(json!({"destination": "/data", "type": "bind", "source": h2, "options": ["rbind", "ro"]}));
            m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "noexec"]}));
            c["linux"]["devices"] = json!([{"path": "/dev/fuse-like", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 0, "gid": 0}]);
            c["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]);
        },
        "cat /data/f; touch /data/g 2>/dev/null && echo bind-rw || echo bind-ro; grep ' /scratch ' /proc/mounts | grep -o noexec; \
         echo hi > /dev/fuse-like && echo dev-ok; ls /dev/null /dev/zero /dev/urandom /dev/tty >/dev/null && echo defaults",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["from host", "bind-ro", "noexec", "dev-ok", "defaults"]
    );
    assert!(!host.join("g").exists());
    std::fs::remove_dir_all(&host).unwrap();
}

#[test]
fn seccomp_profile_errno_and_argument_conditions() {
    skip_unless!(need_root());
    let (out, code) = run_with(
        |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                    {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
                ]
            });
        },
        "mkdir /tmp/d 2>&1; grep Seccomp: /proc/self/status",
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("Permission denied"),
        "EACCES (13) expected: {out}"
    );
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn cgroup_limits_memory_oom_and_pids() {
    skip_unless!(need_root());
    // 16 MiB memory, no swap: a 64 MiB allocation in the container is OOM-killed.
    // dd's one 64 MiB block is its own memory: the OOM killer ends it (SIGKILL: status 137).
    let (fill, code) = run_with(
        |c| c["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20}),
        "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo rc=$?",
    );
    assert_eq!(
        fill.trim(),
        "rc=137",
        "the 64 MiB allocation should be OOM-killed"
    );
    let (out, _) = run_with(
        |c| c["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20}),
        "cat /proc/self/cgroup | grep memory",
    );
    assert!(out.contains("memory"), "{out}");
    assert_eq!(code, 0);
    let (out, _) = run_with(
        |c| c["linux"]["resources"]["pids"] = json!({"limit": 5}),
        "exec 2>&1; for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; echo end",
    );
    assert!(out.contains("can't fork"), "pids limit not enforced: {out}");
}

#[test]
fn namespaces_new_and_joined_by_path() {
    skip_unless!(need_root());
    // A new network namespace has only lo.
    let (out, _) = run_with(|_| {}, "ls /sys/class/net");
    assert_eq!(out.trim(), "lo");
    // Joining the host's network namespace by path shows the host's interfaces.
    let (out, _) = run_with(
        |c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "network");
            ns.push(
                json!({"type": "network", "path": format!("/proc/{}/ns/net", std::process::id())}),
            );
        },
        "readlink /proc/self/ns/net",
    );
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(out.trim(), host.to_str().unwrap());
}
