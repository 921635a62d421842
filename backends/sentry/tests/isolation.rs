mod common;

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap()
}

#[test]
fn refused_syscalls_never_reach_the_host() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let before = host_hostname();
    let spec = b.spec(
        &["sh", "-c", "hostname evil-name; echo rc=$?; mount -t tmpfs none /tmp; echo rc=$?; unshare -n true; echo rc=$?; hostname"],
        serde_json::json!({"annotations": {"io.hako.sentry.stats": "true"}}),
    );
    let mut stats = Vec::new();
    let (code, out, err) = b.run_spec_with(
        &spec,
        |_, _| {},
        |state| stats = std::fs::read(state.join("sentry/stats.json")).unwrap(),
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "rc=1\nrc=1\nrc=1\nsentry-test\n", "stderr: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(host_hostname(), before);
    // The sentry's own account: each of these was trapped and refused, never run on the host.
    let j: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    for sc in ["mount", "unshare"] {
        assert!(
            j["refused"][sc].as_u64().unwrap_or(0) >= 1,
            "{sc} not refused by the sentry: {j}"
        );
    }
    assert!(
        j["emulated"]["sethostname"].as_u64().unwrap_or(0) >= 1,
        "{j}"
    );
    assert!(j["emulated"]["uname"].as_u64().unwrap_or(0) >= 1, "{j}");
}

#[test]
fn no_escape_through_dotdot_symlinks_or_proc_root() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let secret = b.dir.path().join("host-secret");
    std::fs::write(&secret, "HOST SECRET\n").unwrap();
    std::os::unix::fs::symlink(&secret, b.rootfs().join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../host-secret", b.rootfs().join("rel-link"))
        .unwrap();
    let (code, out, err) = b.run(&[
        "sh",
        "-c",
        "cat /../../host-secret; cat /abs-link; cat /rel-link; cat /proc/self/root/../host-secret; cat /proc/1/root/etc/hostname; ls /proc/self/root/ | grep -c host-secret; echo done",
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(!out.contains("HOST SECRET"), "escaped: {out}");
    assert_eq!(out, "sentry-box\n0\ndone\n", "stderr: {err}");
    let _ = &secret;
}

#[test]
fn host_devices_and_host_proc_unreachable() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    // A device node inside the image must not open the host device.
    let node = b.rootfs().join("disk");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: mknod of a char device node (1:3, /dev/null) in our temp rootfs.
    unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    let (code, out, err) = b.run(&["sh", "-c", "echo x > /disk; echo rc=$?; ls /proc | grep -c '^[0-9]'; cat /proc/1/status | grep TracerPid; echo ok"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.starts_with("rc=1\n"), "{out} {err}");
    // Only the sandbox's own processes show up in /proc (sh, ls, grep... at most a handful).
    let n: usize = out.lines().nth(1).unwrap().parse().unwrap();
    assert!((1..=4).contains(&n), "{out}");
    assert!(out.contains("TracerPid:\t0"), "{out}");
}

#[test]
fn workload_runs_unprivileged_on_the_host_and_in_a_trap_filter() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    // The tracee's real host identity is unprivileged with no capabilities, whatever the spec says; the
    // sandbox sees its virtual identity (root here).
    let marker = b.dir.path().join("marker");
    let spec = b.spec(&["sh", "-c", "id -u; sleep 1"], serde_json::json!({}));
    let rootfs_dir = b.dir.path().to_path_buf();
    let probe = std::thread::spawn(move || {
        // Find the tracee (a process whose cwd is inside our overlay root) and read its host status.
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let Ok(root) = std::fs::read_link(format!("/proc/{pid}/root")) else {
                    continue;
                };
                if root.starts_with(&rootfs_dir) && root.ends_with("merged") {
                    let status =
                        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                    // The workload once it runs its program: not the sentry's child still
                    // setting itself up (chrooted already, not yet filtered).
                    let running = ["busybox", "sh", "sleep", "id"]
                        .iter()
                        .any(|n| status.lines().any(|l| l == format!("Name:\t{n}")));
                    if !running {
                        continue;
                    }
                    std::fs::write(&marker, status).unwrap();
                    return;
                }
            }
        }
    });
    let (code, out, err) = b.run_spec(&spec);
    probe.join().unwrap();
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "0\n");
    let status =
        std::fs::read_to_string(b.dir.path().join("marker")).expect("tracee not found on the host");
    // A host uid of the sandbox's own (see security.rs), never root nor a shared nobody.
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:\t"))
        .expect("Uid line");
    let uid: u64 = uid.split('\t').next().unwrap().parse().unwrap();
    assert!(uid >= 1 << 31, "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("TracerPid:") && !l.ends_with("\t0")),
        "{status}"
    );
}
