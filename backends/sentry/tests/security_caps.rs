//! Attacks on the sentry's model of capabilities and pids (issue 10: "sentry ignores
//! capabilities", "sentry leaks host pids"), each a static C program run inside the sandbox, and
//! the same program under runc / runsc where they run here.
//!
//! Run: `cargo test -p hako-sentry --test security_caps` (as root; needs gcc and a static libc).

mod common;

use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// Docker's default capability set (what `docker run` / `podman run` give without --cap-drop).
const DOCKER_DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn mask(caps: &[&str]) -> String {
    let n = |c: &str| match c {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_DAC_READ_SEARCH" => 2,
        "CAP_FOWNER" => 3,
        "CAP_FSETID" => 4,
        "CAP_KILL" => 5,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_SETPCAP" => 8,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_CHROOT" => 18,
        "CAP_MKNOD" => 27,
        "CAP_AUDIT_WRITE" => 29,
        "CAP_SETFCAP" => 31,
        _ => panic!("{c}"),
    };
    format!("{:016x}", caps.iter().map(|c| 1u64 << n(c)).sum::<u64>())
}

/// `process.capabilities` with the same list in every set but ambient (runc's `--cap-add`
/// shape: bounding, effective, permitted, inheritable).
fn caps_json(caps: &[&str]) -> serde_json::Value {
    json!({"capabilities": {
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": []
    }})
}

/// A busybox bundle with the probe at /probe and the files it attacks.
fn probe_bundle(program: &str) -> Option<common::Bundle> {
    let b = common::busybox_bundle()?;
    let root = b.rootfs();
    common::compile_attack(program, &root.join("probe"))?;
    std::fs::write(root.join("secret"), "ROOT ONLY\n").unwrap();
    std::fs::set_permissions(root.join("secret"), PermissionsExt::from_mode(0o000)).unwrap();
    std::fs::write(root.join("other"), "user 1000's\n").unwrap();
    std::fs::set_permissions(root.join("other"), PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::create_dir(root.join("otherdir")).unwrap();
    std::fs::create_dir(root.join("closed")).unwrap();
    std::fs::write(root.join("closed/inside"), "in a closed dir\n").unwrap();
    std::fs::set_permissions(root.join("closed"), PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(root.join("tmp/rootfile"), "root's\n").unwrap();
    std::fs::set_permissions(root.join("tmp/rootfile"), PermissionsExt::from_mode(0o666)).unwrap();
    for f in ["other", "otherdir", "closed"] {
        std::os::unix::fs::chown(root.join(f), Some(1000), Some(1000)).unwrap();
    }
    Some(b)
}

fn lines(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=').or_else(|| l.split_once(":\t"))?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn check(out: &str, want: &[(&str, &str)], who: &str) {
    let got = lines(out);
    for (k, v) in want {
        assert_eq!(
            got.get(*k).map(String::as_str),
            Some(*v),
            "{who}: {k} (full output:\n{out})"
        );
    }
}

/// The same program (`args`) under runc on the same rootfs must print the same lines.
fn compare_with_runc(
    b: &common::Bundle,
    args: &[&str],
    process: serde_json::Value,
    sentry_out: &str,
) {
    match common::run_peer("runc", &b.rootfs(), args, process) {
        Err(why) => eprintln!("SKIP (runc part): {why}"),
        Ok((code, out, err)) => {
            assert_eq!(code, 0, "runc: {err}");
            assert_eq!(sentry_out, out, "the sentry and runc disagree");
        }
    }
}

fn assert_host_rootfs_untouched(b: &common::Bundle) {
    let root = b.rootfs();
    let s = std::fs::metadata(root.join("secret")).unwrap();
    assert_eq!(
        (s.uid(), s.mode() & 0o7777),
        (0, 0o000),
        "host /secret changed"
    );
    let o = std::fs::metadata(root.join("other")).unwrap();
    assert_eq!(
        (o.uid(), o.mode() & 0o7777),
        (1000, 0o644),
        "host /other changed"
    );
    assert!(!root.join("otherdir/mine").exists());
}

#[test]
fn cap_drop_all_root_is_refused_like_runc() {
    let Some(b) = probe_bundle("caps_probe") else {
        return;
    };
    let process = caps_json(&[]);
    let spec = b.spec(&["/probe"], json!({ "process": process }));
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    let zero = "0000000000000000";
    let mut want = vec![
        ("capbset_read_kill", "0"),
        ("ambient_is_set_chown", "0"),
        ("keepcaps", "0"),
        ("read_secret", "EACCES"),
        ("write_other", "EACCES"),
        ("mkdir_in_otherdir", "EACCES"),
        ("chdir_closed_dir", "EACCES"),
        ("read_inside_closed_dir", "EACCES"),
        ("stat_inside_closed_dir", "EACCES"),
        ("chown_secret", "EPERM"),
        ("chmod_other", "EPERM"),
        // Root without capabilities still owns root's files and directories.
        ("chmod_secret_setuid", "ok"),
        ("unlink_etc_data", "ok"),
        ("unlink_roots_file_in_sticky_tmp", "ok"),
        ("child_setresuid", "EPERM"),
        ("capset_raise_sys_admin", "EPERM"),
        ("keepcaps_setuid", "EPERM"),
        ("bset_drop_sys_chroot", "EPERM"),
        ("ambient_raise_chown", "EPERM"),
        ("setuid_1000", "EPERM"),
        // Still uid 0: setuid(0) names the caller's own real uid, which needs no capability.
        ("setuid_back_to_0", "ok"),
        ("uid", "0 euid=0"),
    ];
    for tag in ["start", "end"] {
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            want.push((Box::leak(format!("{tag}.{set}").into_boxed_str()), zero));
        }
    }
    check(&out, &want, "sentry");
    assert_host_rootfs_untouched(&b);
    compare_with_runc(&b, &["/probe"], process, &out);
}

#[test]
fn default_caps_root_may_do_what_linux_allows_and_no_more() {
    let Some(b) = probe_bundle("caps_probe") else {
        return;
    };
    let process = caps_json(DOCKER_DEFAULT);
    let spec = b.spec(&["/probe"], json!({ "process": process }));
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    let set = mask(DOCKER_DEFAULT);
    let no_chroot = format!(
        "{:016x}",
        u64::from_str_radix(&set, 16).unwrap() & !(1 << 18)
    );
    let zero = "0000000000000000";
    check(
        &out,
        &[
            ("start.CapInh", &set),
            ("start.CapPrm", &set),
            ("start.CapEff", &set),
            ("start.CapBnd", &set),
            ("start.CapAmb", zero),
            ("capbset_read_kill", "1"),
            ("read_secret", "ok"),
            ("write_other", "ok"),
            ("mkdir_in_otherdir", "ok"),
            ("chdir_closed_dir", "ok"),
            ("chown_secret", "ok"),
            ("chmod_other", "ok"),
            ("chmod_secret_setuid", "ok"),
            ("unlink_etc_data", "ok"),
            ("child_setresuid", "ok"),
            ("capset_drop_kill_eff", "ok"),
            // Without CAP_KILL in the effective set, root may not signal uid 1000.
            ("kill_other_uid", "EPERM"),
            ("capset_restore", "ok"),
            ("kill_after_restore", "ok"),
            ("capset_raise_sys_admin", "EPERM"),
            // keepcaps: setuid keeps the permitted set, empties the effective set.
            ("keepcaps_setuid", "ok"),
            ("keepcaps.CapPrm", &set),
            ("keepcaps.CapEff", zero),
            // Bounding drop, keepcaps, ambient raise, execve as uid 1000.
            ("bset_drop_sys_chroot", "ok"),
            ("setresuid_1000_keepcaps", "ok"),
            ("kept.CapPrm", &set),
            ("kept.CapEff", zero),
            ("kept.CapAmb", zero),
            ("ambient_raise_chown", "ok"),
            ("exec.CapInh", &set),
            ("exec.CapPrm", "0000000000000001"),
            ("exec.CapEff", "0000000000000001"),
            ("exec.CapAmb", "0000000000000001"),
            ("exec.CapBnd", &no_chroot),
            // setuid(1000) leaves uid 0 for good: every capability goes with it.
            ("setuid_1000", "ok"),
            ("setuid_back_to_0", "EPERM"),
            ("uid", "1000 euid=1000"),
            ("end.CapPrm", zero),
            ("end.CapEff", zero),
            ("end.CapBnd", &set),
        ],
        "sentry",
    );
    assert_host_rootfs_untouched(&b);
    compare_with_runc(&b, &["/probe"], process, &out);
}

#[test]
fn non_root_user_cannot_touch_root_files() {
    let Some(b) = probe_bundle("caps_probe") else {
        return;
    };
    let mut process = caps_json(DOCKER_DEFAULT);
    process["user"] = json!({"uid": 1000, "gid": 1000});
    let spec = b.spec(&["/probe"], json!({ "process": process }));
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    let set = mask(DOCKER_DEFAULT);
    let zero = "0000000000000000";
    check(
        &out,
        &[
            // A non-root execve keeps only the ambient set.
            ("start.CapInh", &set),
            ("start.CapPrm", zero),
            ("start.CapEff", zero),
            ("start.CapBnd", &set),
            ("read_secret", "EACCES"),
            ("write_other", "ok"),
            ("chown_secret", "EPERM"),
            ("chmod_secret_setuid", "EPERM"),
            ("unlink_etc_data", "EACCES"),
            ("unlink_roots_file_in_sticky_tmp", "EPERM"),
            ("mkdir_existing_etc", "EEXIST"),
            ("unlink_missing_in_etc", "ENOENT"),
            ("creat_excl_existing_passwd", "EEXIST"),
            ("setuid_back_to_0", "EPERM"),
            ("uid", "1000 euid=1000"),
        ],
        "sentry",
    );
    assert_host_rootfs_untouched(&b);
    compare_with_runc(&b, &["/probe"], process, &out);
}

#[test]
fn dac_read_search_reads_but_does_not_write() {
    let Some(b) = probe_bundle("caps_probe") else {
        return;
    };
    let process = caps_json(&["CAP_DAC_READ_SEARCH"]);
    let spec = b.spec(&["/probe"], json!({ "process": process }));
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    check(
        &out,
        &[
            ("start.CapEff", "0000000000000004"),
            ("read_secret", "ok"),
            ("write_other", "EACCES"),
            ("mkdir_in_otherdir", "EACCES"),
            // Searching a directory is what DAC_READ_SEARCH is for.
            ("chdir_closed_dir", "ok"),
            ("read_inside_closed_dir", "ok"),
            ("chown_secret", "EPERM"),
        ],
        "sentry",
    );
    compare_with_runc(&b, &["/probe"], process, &out);
}

/// The search-permission walk (kernel/path.rs, `may_walk`) takes one component at a time from
/// the directory before it, and hands the rest to a resolution from the root at a symlink or a
/// "..": a closed directory deep in the tree, reached straight, through absolute and relative
/// symlinks and through "..", denies root without capabilities exactly as Linux does.
#[test]
fn search_permission_holds_through_deep_paths_symlinks_and_dotdot() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let root = b.rootfs();
    for d in ["deep/a/b/closed", "deep/a/b/open"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("deep/a/b/closed/inside"), "closed\n").unwrap();
    std::fs::write(root.join("deep/a/b/open/file"), "open\n").unwrap();
    std::os::unix::fs::chown(root.join("deep/a/b/closed"), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(
        root.join("deep/a/b/closed"),
        PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::symlink("/deep/a/b/closed", root.join("abs_closed")).unwrap();
    std::os::unix::fs::symlink("/deep/a/b/open", root.join("abs_open")).unwrap();
    std::os::unix::fs::symlink("b/closed", root.join("deep/a/rel_closed")).unwrap();
    std::os::unix::fs::symlink("../../..", root.join("deep/a/b/up")).unwrap();
    let paths = [
        "/deep/a/b/closed/inside",
        "/deep/a/b/open/file",
        "/abs_closed/inside",
        "/abs_open/file",
        "/deep/a/rel_closed/inside",
        "/deep/a/b/open/../closed/inside",
        "/deep/a/b/closed/../open/file",
        "/deep/a/b/up/deep/a/b/closed/inside",
        "/deep/a/b/up/deep/a/b/open/file",
    ];
    let script = paths
        .iter()
        .map(|p| format!("if cat {p} >/dev/null 2>&1; then echo {p}=ok; else echo {p}=no; fi"))
        .collect::<Vec<_>>()
        .join("; ");
    let process = caps_json(&[]);
    let args = ["/bin/sh", "-c", script.as_str()];
    let spec = b.spec(&args, json!({ "process": process }));
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    // Looking up ".." in the closed directory needs search permission on it too.
    let want: Vec<(&str, &str)> = paths
        .iter()
        .map(|p| {
            let open = p.ends_with("file") && !p.contains("closed");
            (*p, if open { "ok" } else { "no" })
        })
        .collect();
    check(&out, &want, "sentry");
    compare_with_runc(&b, &args, process, &out);
}

/// The sentry caches what its search-permission walk learnt about directories (issue 17); a
/// chmod or a rename the sandbox makes must take effect on the very next lookup, for every
/// user, and the same lines must come out as under runc.
#[test]
fn search_permission_follows_chmod_and_rename_at_once() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let root = b.rootfs();
    if common::compile_c("programs/asuser.c", &root.join("asuser")).is_none() {
        return;
    }
    std::fs::create_dir_all(root.join("w/d/sub")).unwrap();
    std::fs::write(root.join("w/d/sub/f"), "f\n").unwrap();
    std::os::unix::fs::chown(root.join("w/d"), Some(1000), Some(1000)).unwrap();
    // User 1000 owns /w/d; user 1001 only passes through. Each `t` is one `cat` by one user;
    // the first lookups fill the cache, the changes must empty it. The directories renamed
    // are made in the sandbox: overlayfs refuses to rename a directory of the lower layer
    // (EXDEV), and mv would copy and remove instead.
    let script = [
        "t() { if /asuser $1 /bin/cat $2 >/dev/null 2>&1; then echo $3=ok; else echo $3=no; fi; }",
        "mkdir -p /w/open/sub /w/closed/sub && echo f >/w/open/sub/f && echo f >/w/closed/sub/f",
        "chmod 700 /w/closed",
        "t 1001 /w/d/sub/f warm",
        "t 1001 /w/d/sub/f warm_again",
        "/asuser 1000 /bin/chmod 700 /w/d",
        "t 1001 /w/d/sub/f after_chmod",
        "t 1000 /w/d/sub/f owner_after_chmod",
        "/asuser 1000 /bin/chmod 755 /w/d",
        "t 1001 /w/d/sub/f after_chmod_back",
        "t 1001 /w/open/sub/f open",
        "cd /w/open && t 1001 sub/f open_relative && cd /",
        "mv /w/open /w/old && mv /w/closed /w/open",
        "t 1001 /w/open/sub/f after_rename",
        "cd /w && t 1001 open/sub/f after_rename_relative && cd /",
        "t 1001 /w/old/sub/f old_name",
    ]
    .join("\n");
    let process = caps_json(&["CAP_SETUID", "CAP_SETGID"]);
    let args = ["/bin/sh", "-c", script.as_str()];
    let spec = b.spec(&args, json!({ "process": process }));
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    let want = [
        ("warm", "ok"),
        ("warm_again", "ok"),
        ("after_chmod", "no"),
        ("owner_after_chmod", "ok"),
        ("after_chmod_back", "ok"),
        ("open", "ok"),
        ("open_relative", "ok"),
        ("after_rename", "no"),
        ("after_rename_relative", "no"),
        ("old_name", "ok"),
    ];
    check(&out, &want, "sentry");
    // runc's run starts from the bundle's rootfs as the test made it (the sentry's changes
    // stayed in its overlay).
    compare_with_runc(&b, &args, process, &out);
}

/// One call of the scan: its name, how many pids it answered for, the first of them.
type ScanLine = (String, usize, Vec<i32>);

/// Parse the scan's output: the sandbox's own pids, and per call the pids that answered.
fn scan_results(out: &str) -> (Vec<i32>, Vec<ScanLine>) {
    let mut own = vec![];
    let mut calls = vec![];
    for l in out.lines() {
        if l.starts_with("self=") {
            own = l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
        } else {
            let mut w = l.split_whitespace();
            let name = w.next().unwrap().to_string();
            let n: usize = w.next().unwrap().parse().unwrap();
            calls.push((name, n, w.map(|p| p.parse().unwrap()).collect()));
        }
    }
    (own, calls)
}

/// Every call answers only for the sandbox's own tasks: their pids, and the tids its threads
/// learn from set_tid_address (under the sentry, the host tids of the sandbox's own threads,
/// which glibc keeps and hands to clock_gettime through pthread_getcpuclockid).
fn assert_only_own_pids(out: &str, who: &str) {
    eprintln!("{who} scan:\n{out}");
    let (own, calls) = scan_results(out);
    assert_eq!(own.len(), 4, "{who}: {out}");
    assert_eq!(calls.len(), 9, "{who}: {out}");
    for (name, n, pids) in calls {
        assert!(
            n <= own.len() && pids.iter().all(|p| own.contains(p)),
            "{who}: {name} answered for pids outside the sandbox ({own:?}): {n} {pids:?}"
        );
    }
}

#[test]
fn pid_scan_sees_only_the_sandbox() {
    let Some(b) = probe_bundle("pid_scan") else {
        return;
    };
    // Both platforms: the trap filter differs (user notifications or ptrace stops).
    for platform in ["hybrid", "ptrace"] {
        let spec = b.spec(
            &["/probe"],
            json!({"annotations": {"io.hako.sentry.platform": platform}}),
        );
        let (code, out, err) = b.run_spec(&spec);
        assert_eq!(code, 0, "{platform}: stderr: {err}\n{out}");
        assert_only_own_pids(&out, &format!("sentry ({platform})"));
        // The PI futex calls are refused outright (their futex word names a host tid).
        for l in out.lines().filter(|l| l.starts_with("futex_")) {
            assert!(l.ends_with(" 0"), "{platform}: {l}");
        }
    }
    for peer in ["runsc", "runc"] {
        match common::run_peer(peer, &b.rootfs(), &["/probe"], json!({})) {
            Err(why) => eprintln!("SKIP ({peer} part): {why}"),
            Ok((code, pout, perr)) => {
                assert_eq!(code, 0, "{peer}: {perr}");
                assert_only_own_pids(&pout, peer);
            }
        }
    }
}

#[test]
fn pi_futexes_are_refused_and_other_mutexes_keep_working() {
    let Some(b) = probe_bundle("futex_compat") else {
        return;
    };
    let (code, out, err) = b.run(&["/probe"]);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    check(
        &out,
        &[
            // glibc probes FUTEX_UNLOCK_PI, sees ENOSYS, and refuses PI mutexes cleanly.
            ("pi_mutex_init", "ENOTSUP"),
            ("plain_counter", "200000"),
            // Robust mutexes still see their owner die: the tid in the futex word is the one
            // the host kernel knows the thread by.
            ("robust_after_owner_died", "EOWNERDEAD"),
            ("pthread_kill_other", "ok"),
            ("thread_cpu_clock", "ok"),
            ("usr1_delivered", "1"),
            ("sigqueue_self", "ok"),
            ("sigqueue_value", "42 from_self=1"),
        ],
        "sentry",
    );
}
