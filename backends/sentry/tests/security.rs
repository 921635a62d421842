//! Attacks on the sentry from a hostile bundle, each asserting that the host is untouched
//! (issue 10: escapes 2, 3 and 4, `root.readonly`, `root.path = /`). Where runsc is installed and
//! runs here, the same hostile bundle is given to it too, and must hold there as well.
//!
//! Run: `cargo test -p hako-sentry --test security` (as root; skips with a reason otherwise).

mod common;

use hako_contract::Backend;
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

/// Every path under `dir` (relative), with its kind and content: to show a tree is unchanged.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut ents: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).unwrap())
            } else if m.is_dir() {
                format!("dir {:o}", m.mode() & 0o7777)
            } else {
                let data = std::fs::read(&p).unwrap_or_default();
                format!(
                    "file {:o} {} {:x}",
                    m.mode() & 0o7777,
                    data.len(),
                    fnv(&data)
                )
            };
            out.push((p.strip_prefix(base).unwrap().to_path_buf(), what));
            if m.is_dir() && !m.file_type().is_symlink() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn fnv(d: &[u8]) -> u64 {
    d.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The standard mounts a runtime expects (the sentry synthesizes them; runsc mounts its own).
fn std_mounts() -> Vec<serde_json::Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ]
}

struct Runsc {
    code: i32,
    out: String,
    err: String,
    /// runsc refused the bundle (set-up failed before the workload ran).
    refused: bool,
}

fn runsc_bin() -> Option<PathBuf> {
    ["/usr/bin/runsc", "/usr/local/bin/runsc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn runsc_raw(runsc: &Path, b: &common::Bundle, spec: &oci_spec::runtime::Spec) -> Runsc {
    let bundle = b.dir.path();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(spec).unwrap(),
    )
    .unwrap();
    let state = tempfile::Builder::new()
        .prefix("runsc-state-")
        .tempdir()
        .unwrap();
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!(
        "hako-sec-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let out = std::process::Command::new(runsc)
        .arg("--root")
        .arg(state.path())
        .args(["--network=none", "run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = std::process::Command::new(runsc)
        .arg("--root")
        .arg(state.path())
        .args(["delete", "--force", &id])
        .output();
    let _ = std::fs::remove_file(bundle.join("config.json"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    Runsc {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        refused: err.contains("running container: ") || err.contains("creating container"),
        err,
    }
}

/// Run the same bundle under runsc (`runsc run`), if runsc is installed and can run here (probed
/// once with a trivial bundle). Returns None (after printing why) when it cannot.
fn runsc(b: &common::Bundle, spec: &oci_spec::runtime::Spec) -> Option<Runsc> {
    static PROBE: std::sync::Mutex<Option<Result<(), String>>> = std::sync::Mutex::new(None);
    let Some(bin) = runsc_bin() else {
        eprintln!("SKIP (runsc part): runsc is not installed");
        return None;
    };
    let mut p = PROBE.lock().unwrap_or_else(|e| e.into_inner());
    let probe = p.get_or_insert_with(|| {
        let pb = common::busybox_bundle().ok_or("no busybox bundle")?;
        let r = runsc_raw(
            &bin,
            &pb,
            &pb.spec(&["true"], json!({"mounts": std_mounts()})),
        );
        if r.code == 0 {
            Ok(())
        } else {
            Err(format!("exit {}: {}", r.code, r.err.trim()))
        }
    });
    if let Err(why) = probe {
        eprintln!("SKIP (runsc part): runsc cannot run here: {why}");
        return None;
    }
    drop(p);
    Some(runsc_raw(&bin, b, spec))
}

/// Escape 2: a rootfs symlink `/data -> /proc` plus a bind mount at `/data`. On the old sentry
/// the bind landed on the sentry's own /proc; the sentry then read `/proc/cpuinfo` (here a
/// symlink to a root-only host file) for the workload, and ran chmod/utimensat through
/// `/proc/self/fd/N` (here symlinks to a host file), so the workload read the secret and made the
/// host file `-rwsrwxrwx`.
#[test]
fn bind_over_proc_through_a_rootfs_symlink_reaches_nothing_on_the_host() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let host = tempfile::Builder::new()
        .prefix("hako-sec-host-")
        .tempdir()
        .unwrap();
    let secret = host.path().join("secret");
    std::fs::write(&secret, "model name\t: HOST-SECRET-7f3a\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, "host file\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = (mode(&victim), mtime(&victim));
    // The attacker's directory, to be laid over the sentry's /proc.
    let fake = host.path().join("fakeproc");
    std::fs::create_dir_all(fake.join("self/fd")).unwrap();
    std::os::unix::fs::symlink(&secret, fake.join("cpuinfo")).unwrap();
    for n in 0..256 {
        std::os::unix::fs::symlink(&victim, fake.join(format!("self/fd/{n}"))).unwrap();
    }
    let fake_before = snapshot(&fake);
    std::os::unix::fs::symlink("/proc", b.rootfs().join("data")).unwrap();
    let script = "grep 'model name' /proc/cpuinfo | head -n 1; \
                  chmod 4777 /etc/data.txt; echo chmod=$?; \
                  touch -d '2001-01-01 00:00' /etc/data.txt; echo touch=$?; \
                  touch /etc/data.txt; ls -l /etc/data.txt; echo done";
    let mut mounts = std_mounts();
    mounts.push(
        json!({"destination": "/data", "type": "bind", "source": fake, "options": ["rbind", "rw"]}),
    );
    // Both platforms (they read different host proc files).
    for platform in ["ptrace", "hybrid"] {
        let spec = b.spec(
            &["sh", "-c", script],
            json!({"mounts": mounts, "annotations": {"io.hako.sentry.platform": platform}}),
        );
        let (code, out, err) = b.run_spec(&spec);
        assert!(
            !out.contains("HOST-SECRET"),
            "{platform}: the sandbox read a root-only host file: {out}"
        );
        assert_eq!(
            (mode(&victim), mtime(&victim)),
            before,
            "{platform}: the host file's mode or times were changed from the sandbox"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n");
        assert_eq!(snapshot(&fake), fake_before);
        assert_eq!(code, 0, "{platform}: stdout: {out}\nstderr: {err}");
        assert!(out.contains("done"), "{platform}: {out}\n{err}");
        assert!(
            out.contains("chmod=0") && out.contains("-rwsrwxrwx"),
            "{platform}: {out}\n{err}"
        );
    }
    let spec = b.spec(&["sh", "-c", script], json!({"mounts": mounts}));

    if let Some(r) = runsc(&b, &spec) {
        assert!(!r.refused, "runsc refused the bundle: {}", r.err);
        assert!(r.out.contains("done"), "runsc: {} {}", r.out, r.err);
        assert!(!r.out.contains("HOST-SECRET"), "runsc: {}", r.out);
        assert_eq!(
            (mode(&victim), mtime(&victim)),
            before,
            "runsc: {} {}",
            r.out,
            r.err
        );
        eprintln!("runsc held (exit {})", r.code);
    }
}

/// Escape 2: mount destinations and `process.cwd` through rootfs symlinks that point at host
/// directories. On the old sentry the host kernel followed them: directories, files and mounts
/// were made outside the rootfs, as root.
#[test]
fn mount_destinations_and_cwd_never_leave_the_rootfs() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let host = tempfile::Builder::new()
        .prefix("hako-sec-host-")
        .tempdir()
        .unwrap();
    let hostdir = host.path().join("hostdir");
    std::fs::create_dir_all(&hostdir).unwrap();
    let src = host.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let srcfile = host.path().join("srcfile");
    std::fs::write(&srcfile, "bound\n").unwrap();
    // The same absolute path exists inside the rootfs: there the symlinks resolve, in the root.
    let inroot = b.rootfs().join(hostdir.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inroot).unwrap();
    std::os::unix::fs::symlink(&hostdir, b.rootfs().join("abs")).unwrap();
    let rel = format!("../../../../../../../..{}", hostdir.display());
    std::os::unix::fs::symlink(&rel, b.rootfs().join("rel")).unwrap();
    let mut mounts = std_mounts();
    mounts.push(json!({"destination": "/abs/tmpfs", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(json!({"destination": "/rel/bind/dir", "type": "bind", "source": src, "options": ["rbind"]}));
    mounts.push(json!({"destination": "/abs/file", "type": "bind", "source": srcfile, "options": ["bind", "ro"]}));
    let spec = b.spec(
        &["sh", "-c", "cat /abs/file; ls -d /abs/tmpfs /rel/bind/dir /abs/made-cwd; echo x > /abs/tmpfs/f && echo tmpfs-ok"],
        json!({"mounts": mounts, "process": {"cwd": "/rel/made-cwd"}}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(
        out, "bound\n/abs/made-cwd\n/abs/tmpfs\n/rel/bind/dir\ntmpfs-ok\n",
        "stderr: {err}"
    );
    assert_eq!(
        std::fs::read_dir(&hostdir).unwrap().count(),
        0,
        "created on the host, outside the rootfs: {:?}",
        snapshot(&hostdir)
    );
    assert_eq!(std::fs::read_dir(&src).unwrap().count(), 0);
    if let Some(r) = runsc(&b, &spec) {
        // runsc does not follow a symlink in a mount destination: it refuses the bundle. Either
        // way, nothing may appear on the host.
        assert_eq!(
            std::fs::read_dir(&hostdir).unwrap().count(),
            0,
            "runsc created on the host: {} {}",
            r.out,
            r.err
        );
        assert_eq!(
            std::fs::read_dir(&src).unwrap().count(),
            0,
            "runsc: {}",
            r.err
        );
        eprintln!(
            "runsc held ({})",
            if r.refused {
                "refused the bundle"
            } else {
                "ran it"
            }
        );
    }

    // A symlink that leads nowhere inside the root: refused, and still nothing on the host.
    std::fs::remove_dir_all(&inroot).unwrap();
    let mut mounts = std_mounts();
    mounts.push(json!({"destination": "/abs/tmpfs", "type": "tmpfs", "source": "tmpfs"}));
    let spec = b.spec(&["true"], json!({"mounts": mounts}));
    let e = b.create_error(&spec);
    assert!(e.contains("mount destination /abs/tmpfs"), "{e}");
    let spec = b.spec(&["true"], json!({"process": {"cwd": "/abs/cwd"}}));
    let e = b.create_error(&spec);
    assert!(e.contains("process.cwd /abs/cwd"), "{e}");
    assert_eq!(std::fs::read_dir(&hostdir).unwrap().count(), 0);
}

/// Escape 3: `io.hako.sentry.stats=<host path>` made the root sentry write its JSON over any host
/// file; an image can set annotations. Now the value is a boolean and the account goes to the
/// container's state directory only.
#[test]
fn stats_annotation_cannot_name_a_host_file() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let host = tempfile::Builder::new()
        .prefix("hako-sec-host-")
        .tempdir()
        .unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, "root-only host file\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let spec = b.spec(
        &["true"],
        json!({"annotations": {"io.hako.sentry.stats": victim}}),
    );
    let e = SentryBackend::new().check(&spec, b.dir.path()).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("io.hako.sentry.stats") && e.contains("\"true\" or \"false\""),
        "{e}"
    );
    let e = b.create_error(&spec);
    assert!(e.contains("io.hako.sentry.stats"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root-only host file\n"
    );
    // The boolean form: the account lands in the state directory, 0600.
    let spec = b.spec(
        &["true"],
        json!({"annotations": {"io.hako.sentry.stats": "true"}}),
    );
    let mut seen = None;
    let (code, _, err) = b.run_spec_with(
        &spec,
        |_, _| {},
        |state| {
            let p = state.join("sentry/stats.json");
            seen = Some((mode(&p), std::fs::read(&p).unwrap()));
        },
    );
    assert_eq!(code, 0, "{err}");
    let (m, data) = seen.unwrap();
    assert_eq!(m, 0o600);
    let j: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(j["status"]["code"], 0, "{j}");
}

use hako_sentry::SentryBackend;

/// Escape 4: a setuid-root binary made inside the sandbox lands in the overlay's upper layer on
/// the host. No other host user may reach it (the state directory is 0700), and every mount the
/// sentry makes is nosuid,nodev.
#[test]
fn setuid_file_made_inside_is_unreachable_from_the_host() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let sig = tempfile::Builder::new()
        .prefix("hako-sec-sig-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(sig.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut mounts = std_mounts();
    mounts.push(
        json!({"destination": "/sig", "type": "bind", "source": sig.path(), "options": ["rbind"]}),
    );
    mounts.push(json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs"}));
    let spec = b.spec(
        &[
            "sh",
            "-c",
            "cp /bin/busybox /suid-sh && chmod 4755 /suid-sh && ls -l /suid-sh && touch /sig/ready; \
             while [ ! -e /sig/go ]; do sleep 0.05; done; echo done",
        ],
        json!({"mounts": mounts}),
    );
    let mut mounts_seen = Vec::new();
    let mut checked = false;
    let (code, out, err) = b.run_spec_with(
        &spec,
        |pid, state| {
            // Wait for the workload to have made its setuid file (no timing asserted).
            while !sig.path().join("ready").exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
                assert!(hako_contract::proc::is_alive(pid, None), "sandbox died");
            }
            let merged = state.join("sentry/merged");
            let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
            for l in info.lines() {
                let f: Vec<&str> = l.split(' ').collect();
                if Path::new(f[4]).starts_with(&merged) {
                    mounts_seen.push((f[4].to_string(), f[5].to_string()));
                }
            }
            std::fs::write(sig.path().join("go"), "").unwrap();
        },
        |state| {
            // Open the way down to the sentry's directory as a typical state root would be
            // (0755), so that only the sentry's own modes stand between a host user and the file.
            for d in [b.dir.path(), state] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let dir = state.join("sentry");
            assert_eq!(mode(&dir), 0o700, "state dir {}", dir.display());
            assert_eq!(mode(&dir.join("upper")), 0o700);
            assert_eq!(mode(&dir.join("work")), 0o700);
            let suid = dir.join("upper/root/suid-sh");
            // The attack's setup worked: the file is there, setuid root...
            assert_eq!(mode(&suid), 0o4755);
            assert_eq!(std::fs::symlink_metadata(&suid).unwrap().uid(), 0);
            // ...and an unprivileged host user cannot reach it; nor when the state dir was
            // opened up by someone (upper/ is 0700 on its own).
            for open_up in [false, true] {
                if open_up {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
                }
                use std::os::unix::process::CommandExt;
                let o = std::process::Command::new(common::busybox().unwrap())
                    .args(["sh", "-c"])
                    .arg(format!("{} id -u", suid.display()))
                    .uid(65534)
                    .gid(65534)
                    .output()
                    .unwrap();
                assert!(
                    !o.status.success(),
                    "a host user ran the setuid file: {o:?}"
                );
                assert!(
                    String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
                    "{o:?}"
                );
            }
            checked = true;
        },
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("-rwsr-xr-x") && out.ends_with("done\n"),
        "{out}"
    );
    assert!(checked);
    assert!(mounts_seen.len() >= 3, "{mounts_seen:?}");
    for (at, opts) in &mounts_seen {
        let o: Vec<&str> = opts.split(',').collect();
        assert!(
            o.contains(&"nosuid") && o.contains(&"nodev"),
            "mount at {at} lacks nosuid,nodev: {opts}"
        );
    }
}

/// `root.readonly: true` (the default of `hako spec`): the old sentry's read-only overlay failed
/// and the fallback bound the rootfs read-write, so the workload's writes changed the bundle on
/// the host. Now the root is read-only (EROFS) and the bundle is untouched; mount points the spec
/// needs are made in the sentry's upper layer, not in the bundle.
#[test]
fn readonly_root_is_read_only_and_the_bundle_is_untouched() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let before = snapshot(&b.rootfs());
    let mut mounts = std_mounts();
    mounts.push(json!({"destination": "/run/made", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k", "mode=700"]}));
    let script = "echo evil > /etc/data.txt; echo w=$?; touch /newfile; echo t=$?; \
                  mkdir /newdir; echo m=$?; rm /etc/hostname; echo r=$?; chmod 4777 /bin/busybox; echo c=$?; \
                  echo ok > /run/made/f && cat /run/made/f; \
                  dd if=/dev/zero of=/run/made/big bs=1k count=200 2>/dev/null; echo dd=$?; cat /etc/data.txt";
    let spec = b.spec(
        &["sh", "-c", script],
        json!({"root": {"readonly": true}, "mounts": mounts, "process": {"cwd": "/work/dir"}}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(
        out, "w=1\nt=1\nm=1\nr=1\nc=1\nok\ndd=1\noriginal\n",
        "stderr: {err}"
    );
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(snapshot(&b.rootfs()), before, "the bundle's rootfs changed");

    let spec = b.spec(
        &["sh", "-c", script],
        json!({"root": {"readonly": true}, "mounts": mounts}),
    );
    if let Some(r) = runsc(&b, &spec) {
        assert!(!r.refused, "runsc refused the bundle: {}", r.err);
        assert!(
            r.out.contains("w=1\nt=1\nm=1\nr=1\nc=1\n"),
            "runsc: {} {}",
            r.out,
            r.err
        );
        assert_eq!(
            snapshot(&b.rootfs()),
            before,
            "runsc changed the bundle's rootfs"
        );
        eprintln!("runsc held (exit {})", r.code);
    }
}

/// Compile an attacker's C program statically into the rootfs at `/attack`; None (after printing
/// why) when gcc or a static libc is missing.
fn static_c(b: &common::Bundle, src: &str) -> Option<()> {
    let c = b.dir.path().join("attack.c");
    std::fs::write(&c, src).unwrap();
    match std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(b.rootfs().join("attack"))
        .arg(&c)
        .output()
    {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            eprintln!(
                "SKIP: gcc -static failed (libc6-dev?): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("SKIP: no gcc: {e}");
            None
        }
    }
}

/// The same with a static C program: every write path the sentry implements (open for write,
/// O_TMPFILE, create, rename, unlink, link, chmod, chown, truncate, utimes, mkfifo...) gets
/// EROFS on a read-only root, and the bundle is unchanged.
#[test]
fn readonly_root_refuses_every_write_syscall() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if static_c(&b, include_str!("attacks/ro_writer.c")).is_none() {
        return;
    }
    let before = snapshot(&b.rootfs());
    let spec = b.spec(&["/attack"], json!({"root": {"readonly": true}}));
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(out.lines().count(), 15, "{out}");
    for l in out.lines() {
        assert!(
            l.ends_with(&format!(" {}", libc::EROFS)),
            "not EROFS: {l}\n{out}"
        );
    }
    assert_eq!(snapshot(&b.rootfs()), before, "the bundle's rootfs changed");

    let spec = b.spec(
        &["/attack"],
        json!({"root": {"readonly": true}, "mounts": std_mounts()}),
    );
    if let Some(r) = runsc(&b, &spec) {
        assert!(!r.refused, "runsc refused the bundle: {}", r.err);
        assert_eq!(r.out.lines().count(), 15, "runsc: {} {}", r.out, r.err);
        for l in r.out.lines() {
            assert!(!l.ends_with(" 0"), "runsc let this through: {l}\n{}", r.out);
        }
        assert_eq!(
            snapshot(&b.rootfs()),
            before,
            "runsc changed the bundle's rootfs"
        );
        eprintln!(
            "runsc held (exit {}): {}",
            r.code,
            r.out.replace('\n', ", ")
        );
    }
}

/// `root.path` naming the host's root, however it is spelt, is refused.
#[test]
fn host_root_as_rootfs_is_refused() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    std::os::unix::fs::symlink("/", b.dir.path().join("hostroot")).unwrap();
    for root in [
        json!("/"),
        json!("/../"),
        json!("/usr/.."),
        json!("hostroot"),
    ] {
        let spec = b.spec(&["true"], json!({"root": {"path": root}}));
        let e = SentryBackend::new().check(&spec, b.dir.path()).unwrap_err();
        assert!(
            format!("{e:#}").contains("host's root directory"),
            "{root}: {e:#}"
        );
    }
    // Nor may a mount cover the root itself (spelt "/" or "/x/..").
    for dest in ["/", "/etc/.."] {
        let spec = b.spec(
            &["true"],
            json!({"mounts": [{"destination": dest, "type": "bind", "source": "/", "options": ["rbind"]}]}),
        );
        let e = SentryBackend::new().check(&spec, b.dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("a mount at /"), "{dest}: {e:#}");
    }
    // The bundle's own rootfs is fine.
    let spec = b.spec(&["true"], json!({}));
    SentryBackend::new().check(&spec, b.dir.path()).unwrap();
}

/// The status line `key` of a /proc status text, e.g. "Uid" -> "0\t0\t0\t0".
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

fn ns_link(pid: &str, ns: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap()
}

/// Defence in depth (issue 10). Before: every sandbox's workload ran as host uid 65534 with a
/// full bounding set, in the host's pid and user namespaces (`set_tid_address`, which runs
/// natively, handed it its host tid), and the sentry held nearly every capability. Now two
/// sandboxes started from the same bundle: each workload has a pid and a user namespace of its
/// own, a host uid of its own from the sandbox range (neither 0 nor 65534), no capability and an
/// empty bounding set; the tids the host kernel hands it are its virtual pids; its sentry runs
/// as that host uid too (fsuid 0) and keeps exactly the file capabilities (CHOWN, DAC_OVERRIDE,
/// DAC_READ_SEARCH, FOWNER, FSETID), in the bounding set too; what an engine finds at /proc in the sentry's mount namespace (`podman top`)
/// is the sandbox's own process table. runsc, given the same program, also shows it its own tids.
#[test]
fn workload_has_its_own_pid_and_user_namespace_and_host_id() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if static_c(&b, include_str!("attacks/host_identity.c")).is_none() {
        return;
    }
    let sync = b.dir.path().join("sync");
    std::fs::create_dir(&sync).unwrap();
    let mounts =
        json!([{"destination": "/sync", "type": "bind", "source": sync, "options": ["rbind"]}]);
    let spec = b.spec(&["/attack", "/sync/go"], json!({ "mounts": mounts }));
    let sandboxes = [b.start(&spec).unwrap(), b.start(&spec).unwrap()];
    // Each workload prints its lines, then waits for /sync/go: look at the host side meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = vec![];
    for r in &sandboxes {
        let init = loop {
            let out = std::fs::read_to_string(r.state.path().join("stdout")).unwrap_or_default();
            let kids = r.children();
            if out.contains("fork ") && kids.len() == 1 {
                break kids[0].to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the workload never got going: {out:?} {kids:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let st = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
        let uid = status_field(&st, "Uid");
        let ids: Vec<u64> = uid.split('\t').map(|v| v.parse().unwrap()).collect();
        assert!(ids.iter().all(|&i| i == ids[0]), "{uid}");
        let host_uid = ids[0];
        assert!(
            host_uid != 0 && host_uid != 65534,
            "the workload runs as host uid {host_uid}"
        );
        assert!(
            (1u64 << 31..(1u64 << 31) + (1 << 20)).contains(&host_uid),
            "host uid {host_uid} outside the sandbox range"
        );
        assert_eq!(status_field(&st, "Gid"), uid);
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status_field(&st, set), "0000000000000000", "{set}: {st}");
        }
        assert_eq!(status_field(&st, "NSpid"), format!("{init}\t1"), "{st}");
        for ns in ["pid", "user"] {
            assert_ne!(
                ns_link(&init, ns),
                ns_link("self", ns),
                "the workload shares the host's {ns} namespace"
            );
        }
        // The id is reserved for this sandbox while it lives.
        let lock = PathBuf::from("/run/hako-sentry-ids").join(host_uid.to_string());
        assert_eq!(std::fs::read_to_string(&lock).unwrap(), r.id);
        // The sentry: the sandbox's host id too (so the host kernel lets it signal and trace
        // its own sandbox only), fsuid/fsgid 0 for the files it makes, and the file
        // capabilities only.
        let sst = std::fs::read_to_string(format!("/proc/{}/status", r.pid)).unwrap();
        let ids = format!("{host_uid}\t{host_uid}\t{host_uid}\t0");
        assert_eq!(status_field(&sst, "Uid"), ids, "sentry: {sst}");
        assert_eq!(status_field(&sst, "Gid"), ids, "sentry: {sst}");
        assert_eq!(status_field(&sst, "Groups"), "", "sentry: {sst}");
        let keep = format!("{:016x}", 0b11111);
        for (set, want) in [
            ("CapInh", "0000000000000000"),
            ("CapPrm", keep.as_str()),
            ("CapEff", keep.as_str()),
            ("CapBnd", keep.as_str()),
            ("CapAmb", "0000000000000000"),
        ] {
            assert_eq!(status_field(&sst, set), want, "sentry {set}: {sst}");
        }
        // /proc in the sentry's mount namespace lists the sandbox's processes only.
        let listed: Vec<String> = std::fs::read_dir(format!("/proc/{}/root/proc", r.pid))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<i32>().is_ok())
            .collect();
        assert_eq!(listed, ["1"], "the sentry's /proc lists {listed:?}");
        seen.push((
            host_uid,
            ns_link(&init, "pid"),
            ns_link(&init, "user"),
            lock,
            init.parse::<i32>().unwrap(),
        ));
    }
    assert_ne!(seen[0].0, seen[1].0, "two sandboxes share a host uid");
    assert_ne!(seen[0].1, seen[1].1);
    assert_ne!(seen[0].2, seen[1].2);
    confused_sentry(&b, seen[0].0, seen[0].4, sandboxes[1].pid);
    std::fs::write(sync.join("go"), "").unwrap();
    let check = |out: &str| {
        let words: Vec<Vec<&str>> = out.lines().map(|l| l.split(' ').collect()).collect();
        assert_eq!(words.len(), 3, "{out}");
        // "pid P set_tid_address T": the tid the host kernel gives is the virtual pid.
        assert_eq!(words[0][1], words[0][3], "{out}");
        assert_eq!(words[1][1], words[1][3], "{out}");
        // fork and waitpid return the child's virtual pid.
        assert_eq!(words[2][1], words[1][1], "{out}");
        assert_eq!(words[2][3], words[1][1], "{out}");
    };
    for r in sandboxes {
        let (code, out, err) = r.wait_and_delete(|_| {});
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        assert!(out.starts_with("pid 1 set_tid_address 1\n"), "{out}");
        check(&out);
    }
    for s in &seen {
        assert!(!s.3.exists(), "{} outlived its sandbox", s.3.display());
    }

    let spec = b.spec(&["/attack"], json!({ "mounts": std_mounts() }));
    if let Some(r) = runsc(&b, &spec) {
        assert!(!r.refused, "runsc refused the bundle: {}", r.err);
        assert_eq!(r.code, 0, "runsc: {} {}", r.out, r.err);
        check(&r.out);
        eprintln!("runsc held: {}", r.out.replace('\n', ", "));
    }
}

/// What a confused or compromised sentry of sandbox A could do with the credentials it keeps
/// (attacks/sentry_creds.c takes exactly them, on the host, while A and B run). Before, the
/// sentry was root with nearly every capability: it could signal, trace and read any host
/// process. Now the host kernel lets it signal its own workload only: a host root process
/// (SIGCONT to a `sleep`) and sandbox B's sentry get EPERM; ptrace and process_vm_readv of B's
/// sentry EPERM; B's sentry's and the root process's /proc/<pid>/environ EACCES.
fn confused_sentry(b: &common::Bundle, host_id: u64, own_init: i32, other_sentry: i32) {
    let bin = b.dir.path().join("sentry_creds");
    let c = b.dir.path().join("sentry_creds.c");
    std::fs::write(&c, include_str!("attacks/sentry_creds.c")).unwrap();
    let out = std::process::Command::new("gcc")
        .arg("-o")
        .arg(&bin)
        .arg(&c)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut root = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let out = std::process::Command::new(&bin)
        .args([
            host_id.to_string(),
            own_init.to_string(),
            other_sentry.to_string(),
            root.id().to_string(),
        ])
        .output()
        .unwrap();
    let _ = root.kill();
    let _ = root.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    let want = [
        ("kill-own-workload", 0),
        ("kill-host-root-process", libc::EPERM),
        ("kill-other-sentry", libc::EPERM),
        ("ptrace-other-sentry", libc::EPERM),
        ("vm-read-other-sentry", libc::EPERM),
        ("environ-other-sentry", libc::EACCES),
        ("environ-host-root-process", libc::EACCES),
    ];
    let got: Vec<(String, i32)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    let want: Vec<(String, i32)> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, want, "{text}");
}
