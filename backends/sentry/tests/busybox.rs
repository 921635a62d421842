mod common;

#[test]
fn echo_cat_ls_and_exit_code() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let (code, out, err) = b.run(&["sh", "-c", "echo hi; cat /etc/hostname; ls /"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.starts_with("hi\nsentry-box\n"),
        "stdout: {out:?} stderr: {err}"
    );
    for d in ["bin", "etc", "tmp"] {
        assert!(out.lines().any(|l| l == d), "ls / lacks {d}: {out:?}");
    }
    let (code, _, _) = b.run(&["sh", "-c", "exit 42"]);
    assert_eq!(code, 42);
}

#[test]
fn pipes_fork_wait_background_jobs() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let (code, out, err) = b.run(&["sh", "-c", "echo a | cat; echo one two three | wc -w; (sleep 0.1; echo bg) & echo fg; wait; seq 1 2000 | tail -n 1"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "a\n3\nfg\nbg\n2000\n", "stderr: {err}");
}

#[test]
fn files_dirs_and_overlay() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let script = "mkdir -p /work/d && echo hello > /work/d/f && cat /work/d/f && ls /work/d && \
                  echo changed > /etc/data.txt && cat /etc/data.txt && rm /work/d/f && ls /work/d | wc -l && \
                  cd /work && pwd && ln -s d l && ls -l l | grep -c d && mv d e && ls";
    let (code, out, err) = b.run(&["sh", "-c", script]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out, "hello\nf\nchanged\n0\n/work\n1\ne\nl\n",
        "stderr: {err}"
    );
    // The bundle's rootfs is untouched: writes went to the sentry's overlay.
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("etc/data.txt")).unwrap(),
        "original\n"
    );
    assert!(!b.rootfs().join("work").exists());
}

#[test]
fn proc_uname_and_ps() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let (code, out, err) = b.run(&["sh", "-c", "uname -r; uname -s; hostname; cat /proc/version; echo $$; cat /proc/self/status | grep -E '^(Pid|PPid|Uid):'; ps -o pid,args | head -3; head -1 /proc/meminfo; grep -c processor /proc/cpuinfo"]);
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "4.4.0-hako-sentry");
    assert_eq!(lines[1], "Linux");
    assert_eq!(lines[2], "sentry-test");
    assert!(
        lines[3].starts_with("Linux version 4.4.0-hako-sentry"),
        "{out}"
    );
    assert_eq!(lines[4], "1", "the shell is pid 1 in the sandbox");
    assert!(out.contains("Uid:\t0\t0\t0\t0"), "{out}");
    assert!(out.contains("PID"), "ps header: {out}");
    assert!(out.contains("MemTotal:"), "{out}");
    let host_uname = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    assert!(
        !out.contains(String::from_utf8_lossy(&host_uname.stdout).trim()),
        "host kernel release leaked: {out}"
    );
}

#[test]
fn ptrace_only_platform_runs_the_same_script() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let spec = b.spec(
        &[
            "sh",
            "-c",
            "echo a | cat; (echo bg) & wait; cat /etc/hostname; uname -r; exit 7",
        ],
        serde_json::json!({"annotations": {"io.hako.sentry.platform": "ptrace"}}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(
        out, "a\nbg\nsentry-box\n4.4.0-hako-sentry\n",
        "stderr: {err}"
    );
}

/// stat, lstat and the like answer the same before and after the tree changes under them, and
/// as runc's do: the sentry answers a stat of dir/name from a cached descriptor of dir (issue
/// 17), which every rename, removal, chmod and chown must drop.
#[test]
fn stat_answers_follow_changes_and_match_runc() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let root = b.rootfs();
    // Each path with lstat (stat -c) and stat (stat -L -c); an error prints its message. The
    // tree is made in the sandbox, so that mv renames it (overlayfs refuses to rename a
    // directory of the lower layer: mv would copy and remove).
    let script = r#"
umask 022; mkdir -p /t/d/sub && echo file >/t/d/f && echo g >/t/d/sub/g
ln -s f /t/d/link; ln -s nowhere /t/d/dangling; ln -s /t/d/sub /t/d/dirlink; ln -s .. /t/up
s() { for p in /t/d/f /t/d/link /t/d/dangling /t/d/dirlink /t/d/dirlink/g /t/d/sub/. \
        /t/d/sub/.. /t/d/f/ /t/d/f/x /t/d/missing/x /t/d/sub/../f /t/up/t/d/f /t/d /t; do
        stat -c "$1 %n %F %a" "$p" 2>&1; stat -L -c "$1 -L %n %F %a" "$p" 2>&1
      done; }
s first; s again
mv /t/d /t/e && mkdir /t/d && echo other >/t/d/f && chmod 600 /t/d/f
s moved
ln -s /t/e/sub /t/d/sub && chmod 700 /t/e/sub
s chmodded
rm /t/d/f && ln -s /t/e/f /t/d/f
s replaced
"#;
    let args = ["/bin/sh", "-c", script];
    let (code, out, err) = b.run(&args);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    for line in [
        "first /t/d/f regular file 644",
        "again -L /t/d/link regular file 644",
        "again /t/d/dirlink symbolic link 777",
        "again -L /t/d/dirlink/g regular file 644",
        "again -L /t/d/sub/. directory 755",
        "moved /t/d/f regular file 600",
        "chmodded /t/d/sub/. directory 700",
        "replaced /t/d/f symbolic link 777",
        "replaced -L /t/d/f regular file 644",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
    }
    match common::run_peer("runc", &root, &args, serde_json::json!({})) {
        Err(why) => eprintln!("SKIP (runc part): {why}"),
        Ok((code, runc_out, err)) => {
            assert_eq!(code, 0, "runc: {err}");
            assert_eq!(out, runc_out, "the sentry and runc disagree");
        }
    }
}

/// Lookups through a directory descriptor follow the directory as Linux's: after a rename, a new
/// directory under the old name, fchdir, and removal (tests/programs/dirfd_walk.c). The sentry
/// keeps a directory's in-root path with its open file and must forget it when a name in the
/// root changes (`Vfs::dir_path`, issue 17).
#[test]
fn lookups_through_a_directory_descriptor_follow_the_directory() {
    common::program_as_linux_runs_it(
        "dirfd_walk",
        &[],
        "walk ok\nrename ok\nnew name ok\nfchdir ok\nremoved ok\n",
    );
}

/// The cwd follows the directory as Linux's: renamed by the process or by a child, getcwd,
/// /proc/self/cwd and relative lookups follow it; removed, getcwd and relative lookups give
/// ENOENT (tests/programs/cwd_follow.c). The sentry once kept the cwd as a string.
#[test]
fn the_cwd_follows_its_directory() {
    common::program_as_linux_runs_it(
        "cwd_follow",
        &[],
        "rename ok\nmoved by another ok\nremoved ok\n",
    );
}

/// A blocking open of a FIFO for writing waits for a reader, as on Linux, on every platform:
/// the sentry opens host files non-blocking and used to fail it with ENXIO, which left the
/// reader that came later waiting forever. A signal ends the wait. Not on the ptrace platform,
/// where a parked call is not ended by a signal and the open still fails with ENXIO.
#[test]
fn a_fifo_writer_waits_for_its_reader() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let script = "mkfifo /tmp/f /tmp/g || exit 9; \
        (echo hi > /tmp/f; echo $? > /tmp/rc) & sleep 0.3; timeout 5 cat /tmp/f; wait; \
        echo \"writer rc=$(cat /tmp/rc)\"; \
        (echo x > /tmp/g) & w=$!; sleep 0.2; kill $w; wait $w; echo \"killed rc=$?\"; \
        rm /tmp/f /tmp/g /tmp/rc";
    for platform in ["samecpu", "hybrid"] {
        let spec = b.spec(
            &["sh", "-c", script],
            serde_json::json!({"annotations": {"io.hako.sentry.platform": platform}}),
        );
        let (code, out, err) = b.run_spec(&spec);
        assert_eq!(code, 0, "{platform}: stdout {out:?} stderr: {err}");
        assert_eq!(
            out, "hi\nwriter rc=0\nkilled rc=143\n",
            "{platform}: stderr: {err}"
        );
    }
}
