//! Rootless: hako as an unprivileged user, under rootless podman and directly, with crun run
//! beside it in the same test as the reference.
//!
//! The test (as root) makes an unprivileged user `hako-rootless` with a subordinate id range in
//! /etc/subuid and /etc/subgid and a runtime dir /run/user/UID, copies the hako binary where
//! that user can run it, and then runs everything as that user through `runuser` with a clean
//! environment (HOME, USER, XDG_RUNTIME_DIR, PATH), as a login would give it.

#[macro_use]
#[path = "support/engines.rs"]
mod engines;

use engines::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const USER: &str = "hako-rootless";
/// A subordinate range unlikely to collide with a distribution's defaults (100000+).
const SUB_START: u32 = 1_200_000;
const SUB_COUNT: u32 = 65536;

/// One rootless user at a time: the tests share it (and its podman pause process).
static ONE: Mutex<()> = Mutex::new(());

struct User {
    uid: u32,
    home: PathBuf,
    xdg: PathBuf,
}

fn ensure_line(file: &str, line: &str) {
    let cur = fs::read_to_string(file).unwrap_or_default();
    if !cur.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
        let mut s = cur;
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(line);
        s.push('\n');
        fs::write(file, s).unwrap();
    }
}

/// Why the rootless tests cannot run here, if they cannot.
fn missing_tools() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the test must run as root to make its unprivileged user".into());
    }
    let absent: Vec<&str> = ["useradd", "runuser", "newuidmap", "newgidmap"]
        .into_iter()
        .filter(|b| which(b).is_none())
        .collect();
    (!absent.is_empty()).then(|| format!("not installed: {}", absent.join(", ")))
}

/// The one rootless user, locked for this test, and a scratch dir of its own; None (the reason
/// printed) where the test cannot run here.
fn rootless(missing_too: Option<String>) -> Option<(std::sync::MutexGuard<'static, ()>, Scratch)> {
    if let Some(why) = missing_tools().or(missing_too) {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    Some((one, Scratch::new()))
}

fn user() -> User {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, USER]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let out = run_cmd(
            Command::new(which("useradd").unwrap()).args(["-m", "-s", "/bin/sh", USER]),
            None,
            CMD_TIMEOUT,
        );
        assert!(out.ok(), "useradd: {}", out.describe());
    }
    let uid = id("-u").expect("the rootless user exists");
    let range = format!("{USER}:{SUB_START}:{SUB_COUNT}");
    ensure_line("/etc/subuid", &range);
    ensure_line("/etc/subgid", &range);
    let home = PathBuf::from(format!("/home/{USER}"));
    fs::create_dir_all(&home).unwrap();
    let xdg = PathBuf::from(format!("/run/user/{uid}"));
    fs::create_dir_all(&xdg).unwrap();
    for d in [&home, &xdg] {
        chown(d, uid);
    }
    fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).unwrap();
    User { uid, home, xdg }
}

fn chown(p: &Path, uid: u32) {
    let gid = Command::new("id")
        .args(["-g", USER])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(uid);
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

fn chown_r(p: &Path, uid: u32) {
    let out = run_cmd(
        Command::new("chown").arg("-R").arg(format!("{uid}")).arg(p),
        None,
        CMD_TIMEOUT,
    );
    assert!(out.ok(), "chown: {}", out.describe());
}

/// A scratch dir for one test, owned by the rootless user, with the runtimes it may run.
struct Scratch {
    dir: Option<tempfile::TempDir>,
    user: User,
    hako: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let user = user();
        let dir = short_tempdir("rootless");
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        // The build tree may not be reachable by another user (CI clones under root's home).
        let hako = d.join("hako");
        fs::copy(env!("CARGO_BIN_EXE_hako"), &hako).unwrap();
        fs::set_permissions(&hako, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["root", "runroot", "tmp", "image", "work"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                d.join("root").display(),
                d.join("runroot").display()
            ),
        )
        .unwrap();
        fs::write(
            d.join("containers.conf"),
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        chown_r(d, user.uid);
        Scratch {
            dir: Some(dir),
            user,
            hako,
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// `args` as the rootless user, in a login-like environment.
    fn as_user(&self, args: &[&str]) -> Out {
        let mut c = Command::new(which("runuser").unwrap());
        c.args(["-u", USER, "--", "env", "-i"])
            .arg(format!("HOME={}", self.user.home.display()))
            .arg(format!("USER={USER}"))
            .arg(format!("LOGNAME={USER}"))
            .arg(format!("XDG_RUNTIME_DIR={}", self.user.xdg.display()))
            .arg(format!("PATH={}", full_path()))
            .arg(format!(
                "CONTAINERS_STORAGE_CONF={}",
                self.path().join("storage.conf").display()
            ))
            .arg(format!(
                "CONTAINERS_CONF={}",
                self.path().join("containers.conf").display()
            ))
            .arg(format!("TMPDIR={}", self.path().join("tmp").display()))
            .args(args)
            .current_dir(self.path().join("work"));
        run_cmd(&mut c, None, CMD_TIMEOUT)
    }

    fn podman(&self, runtime: &str, args: &[&str]) -> Out {
        let d = self.path();
        let mut all: Vec<String> = vec![
            "podman".into(),
            "--runtime".into(),
            runtime.into(),
            "--root".into(),
            d.join("root").display().to_string(),
            "--runroot".into(),
            d.join("runroot").display().to_string(),
            "--tmpdir".into(),
            d.join("tmp").display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if matches!(args.first().map(String::as_str), Some("run" | "create")) {
            args.insert(1, "--network=none".into());
        }
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.as_user(&refs)
    }

    /// Whatever is left of hako's containers for this user (podman's cleanup passes no
    /// --root); the backends' content caches (`*-cache`) are meant to stay.
    fn hako_state_left(&self) -> Vec<String> {
        fs::read_dir(self.user.xdg.join("hako"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with("-cache"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.podman("crun", &["rm", "--all", "--force", "--time", "0"]);
        // The user's podman pause process and anything else it left.
        let _ = Command::new("pkill").args(["-KILL", "-u", USER]).status();
        if let Some(d) = self.dir.take() {
            for m in unmount_all_under(d.path()) {
                eprintln!("cleanup unmounted {}", m.display());
            }
            drop(d);
        }
    }
}

/// A rootfs of the host's busybox-static and its applets.
fn busybox_rootfs(dir: &Path) {
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("busybox-static (scripts/setup installs it)");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy(&bb, dir.join("bin/busybox")).unwrap();
    let list = Command::new(&bb).arg("--list").output().unwrap();
    for a in String::from_utf8_lossy(&list.stdout).lines() {
        if a != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(a));
        }
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

fn expect(out: &Out, what: &str) -> String {
    assert!(out.ok(), "{what}: {}", out.describe());
    out.stdout.clone()
}

/// The issue's scenarios under rootless podman with `runtime`; returns a transcript that must be
/// the same for crun and hako.
fn podman_scenarios(s: &Scratch, runtime: &str) -> Vec<(String, String)> {
    let img = IMAGE;
    let mut t = vec![];
    let mut rec = |name: &str, v: String| t.push((name.to_string(), v));
    let o = s.podman(
        runtime,
        &["run", "--rm", img, "sh", "-c", "echo hello; exit 3"],
    );
    rec("echo", format!("{} rc={}", o.stdout.trim(), o.code()));
    let o = s.podman(runtime, &["run", "--rm", img, "id"]);
    rec("id", expect(&o, "id").trim().to_string());
    let o = s.podman(runtime, &["run", "--rm", "--user", "1000", img, "id", "-u"]);
    rec("user", expect(&o, "--user 1000").trim().to_string());
    // A volume: a file the container's root makes is the user's on the host.
    let vol = s.path().join(format!("vol-{}", runtime.len()));
    fs::create_dir_all(&vol).unwrap();
    chown(&vol, s.user.uid);
    let spec = format!("{}:/vol", vol.display());
    let o = s.podman(
        runtime,
        &[
            "run",
            "--rm",
            "-v",
            &spec,
            img,
            "sh",
            "-c",
            "echo x > /vol/f",
        ],
    );
    expect(&o, "volume");
    let owner = std::os::unix::fs::MetadataExt::uid(&fs::metadata(vol.join("f")).unwrap());
    rec(
        "volume owner is the user",
        (owner == s.user.uid).to_string(),
    );
    // -d, exec, stop.
    let o = s.podman(runtime, &["run", "-d", img, "sleep", "60"]);
    let id = expect(&o, "run -d").trim().to_string();
    let o = s.podman(runtime, &["exec", &id, "sh", "-c", "echo in-exec; exit 5"]);
    rec("exec", format!("{} rc={}", o.stdout.trim(), o.code()));
    let o = s.podman(runtime, &["stop", "-t", "1", &id]);
    expect(&o, "stop");
    let o = s.podman(runtime, &["rm", &id]);
    expect(&o, "rm");
    let o = s.podman(
        runtime,
        &[
            "run",
            "--rm",
            "--read-only",
            img,
            "sh",
            "-c",
            "touch /x 2>/dev/null; echo rc=$?",
        ],
    );
    rec("read-only", expect(&o, "--read-only").trim().to_string());
    let o = s.podman(runtime, &["run", "--rm", "-t", img, "tty"]);
    rec(
        "tty",
        expect(&o, "-t").trim().trim_end_matches('\r').to_string(),
    );
    let o = s.podman(
        runtime,
        &[
            "run",
            "--rm",
            "--cap-drop",
            "ALL",
            img,
            "grep",
            "CapEff",
            "/proc/self/status",
        ],
    );
    rec("cap-drop", expect(&o, "--cap-drop ALL").trim().to_string());
    // Loopback under --network none: a TCP connection to 127.0.0.1 inside the container.
    let o = s.podman(
        runtime,
        &[
            "run",
            "--rm",
            img,
            "sh",
            "-c",
            "(echo pong | nc -l -p 8099 127.0.0.1 >/dev/null &) ; sleep 0.3; nc 127.0.0.1 8099 </dev/null",
        ],
    );
    rec("loopback", format!("{} rc={}", o.stdout.trim(), o.code()));
    t
}

#[test]
fn rootless_podman_runs_hako_as_it_runs_crun() {
    skip_unless!(["podman", "conmon", "crun"]);
    let Some((_one, s)) = rootless(None) else {
        return;
    };
    let archive = build_busybox_archive(&s.path().join("image"), &[]);
    chown_r(&s.path().join("image"), s.user.uid);
    expect(
        &s.podman("crun", &["load", "-i", archive.to_str().unwrap()]),
        "podman load",
    );
    let reference = podman_scenarios(&s, "crun");
    let hako = s.hako.display().to_string();
    let got = podman_scenarios(&s, &hako);
    for ((name, want), (_, have)) in reference.iter().zip(&got) {
        assert_eq!(
            have, want,
            "rootless podman, {name}: hako differs from crun"
        );
    }
    // Sanity of the reference itself, so that "same as crun" means "right".
    let get = |k: &str| reference.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("echo"), "hello rc=3");
    assert_eq!(get("user"), "1000");
    assert_eq!(get("volume owner is the user"), "true");
    assert_eq!(get("loopback"), "pong rc=0");
    let left = s.hako_state_left();
    assert!(left.is_empty(), "hako state left behind: {left:?}");
}

#[test]
fn rootless_user_runs_hako_directly() {
    let Some((_one, s)) = rootless(None) else {
        return;
    };
    let hako = s.hako.display().to_string();
    // A busybox bundle of the user's own.
    let bundle = s.path().join("work/bundle");
    busybox_rootfs(&bundle.join("rootfs"));
    chown_r(&s.path().join("work"), s.user.uid);
    let b = bundle.display().to_string();
    expect(
        &s.as_user(&[&hako, "spec", "--rootless", "--bundle", &b]),
        "spec --rootless",
    );
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    v["process"]["terminal"] = serde_json::json!(false);
    v["process"]["args"] = serde_json::json!(["sh", "-c", "echo hi from $(id -u); exit 7"]);
    fs::write(&cfg, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    chown(&cfg, s.user.uid);

    // run: output and exit code, no flags at all.
    let o = s.as_user(&[&hako, "run", "--bundle", &b, "direct-run"]);
    assert_eq!(o.stdout.trim(), "hi from 0", "{}", o.describe());
    assert_eq!(o.code(), 7, "{}", o.describe());

    // create / start / state / exec / delete.
    v["process"]["args"] = serde_json::json!(["sleep", "60"]);
    fs::write(&cfg, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    expect(
        &s.as_user(&[&hako, "create", "--bundle", &b, "direct"]),
        "create",
    );
    let st = expect(&s.as_user(&[&hako, "state", "direct"]), "state");
    assert!(st.contains("\"created\""), "{st}");
    expect(&s.as_user(&[&hako, "start", "direct"]), "start");
    let o = s.as_user(&[
        &hako,
        "exec",
        "direct",
        "sh",
        "-c",
        "echo exec $(id -u); exit 4",
    ]);
    assert_eq!(o.stdout.trim(), "exec 0", "{}", o.describe());
    assert_eq!(o.code(), 4);
    let st = expect(&s.as_user(&[&hako, "state", "direct"]), "state");
    assert!(st.contains("\"running\""), "{st}");
    expect(
        &s.as_user(&[&hako, "delete", "--force", "direct"]),
        "delete",
    );
    let left = s.hako_state_left();
    assert!(left.is_empty(), "state left behind: {left:?}");
    // The state went under XDG_RUNTIME_DIR, not /run/hako.
    assert!(s.user.xdg.join("hako").is_dir());

    // Without a user namespace a user cannot make the others: one clear line, nothing left.
    let mut plain = v.clone();
    plain["linux"]["namespaces"] = serde_json::json!(plain["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "user")
        .cloned()
        .collect::<Vec<_>>());
    let linux = plain["linux"].as_object_mut().unwrap();
    linux.remove("uidMappings");
    linux.remove("gidMappings");
    fs::write(&cfg, serde_json::to_vec_pretty(&plain).unwrap()).unwrap();
    let o = s.as_user(&[&hako, "run", "--bundle", &b, "no-userns"]);
    assert_eq!(o.code(), 1, "{}", o.describe());
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.describe());
    assert!(
        o.stderr.contains("needs a user namespace"),
        "{}",
        o.describe()
    );
    assert!(s.hako_state_left().is_empty());
}

/// A WASI module that prints "hi" and exits 3.
const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hi\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8)) (i32.store (i32.const 4) (i32.const 3))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
    (call $exit (i32.const 3))))"#;

/// `hako spec --rootless` in a fresh bundle of the user's, then `edit` on the config.
fn rootless_bundle(
    s: &Scratch,
    name: &str,
    fill: impl FnOnce(&Path),
    edit: impl FnOnce(&mut serde_json::Value),
) -> String {
    let bundle = s.path().join("work").join(name);
    fs::create_dir_all(bundle.join("rootfs")).unwrap();
    fill(&bundle.join("rootfs"));
    chown_r(&bundle, s.user.uid);
    let b = bundle.display().to_string();
    let hako = s.hako.display().to_string();
    expect(
        &s.as_user(&[&hako, "spec", "--rootless", "--bundle", &b]),
        "spec --rootless",
    );
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    v["process"]["terminal"] = serde_json::json!(false);
    edit(&mut v);
    fs::write(&cfg, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    chown(&cfg, s.user.uid);
    b
}

#[test]
fn rootless_user_runs_the_wasm_backend() {
    let Some((_one, s)) = rootless(missing(&["wat2wasm"])) else {
        return;
    };
    let b = rootless_bundle(
        &s,
        "wasm",
        |rootfs| {
            let wat = rootfs.join("m.wat");
            fs::write(&wat, HELLO_WAT).unwrap();
            let out = run_cmd(
                Command::new("wat2wasm")
                    .arg(&wat)
                    .arg("-o")
                    .arg(rootfs.join("app.wasm")),
                None,
                CMD_TIMEOUT,
            );
            assert!(out.ok(), "{}", out.describe());
        },
        |v| {
            v["process"]["args"] = serde_json::json!(["/app.wasm"]);
            v["annotations"] = serde_json::json!({"io.hako.backend": "wasm"});
        },
    );
    let hako = s.hako.display().to_string();
    let o = s.as_user(&[&hako, "run", "--bundle", &b, "rl-wasm"]);
    assert_eq!(o.stdout.trim(), "hi", "{}", o.describe());
    assert_eq!(o.code(), 3, "{}", o.describe());
    let left = s.hako_state_left();
    assert!(left.is_empty(), "state left behind: {left:?}");
}

#[test]
fn rootless_user_runs_the_sentry_backend() {
    let Some((_one, s)) = rootless(None) else {
        return;
    };
    // The spec of `hako spec --rootless`: a user namespace mapping 0 onto the user, no network
    // namespace; the sentry makes its own user namespace (and a network one inside it).
    let b = rootless_bundle(&s, "sentry", busybox_rootfs, |v| {
        v["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "echo hi from $(id -u) pid $$; touch /made-inside; ls -n /made-inside; exit 6"
        ]);
        v["annotations"] = serde_json::json!({"io.hako.backend": "sentry"});
        v["root"]["readonly"] = serde_json::json!(false);
    });
    let hako = s.hako.display().to_string();
    let o = s.as_user(&[&hako, "run", "--bundle", &b, "rl-sentry"]);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"hi from 0 pid 1"), "{}", o.describe());
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.contains(" 0 ") && l.ends_with("/made-inside")),
        "{}",
        o.describe()
    );
    assert_eq!(o.code(), 6, "{}", o.describe());
    // Nothing left: no state, and the bundle's rootfs was never written (the overlay's upper
    // layer was in the state dir).
    assert!(!Path::new(&b).join("rootfs/made-inside").exists());

    // What the sandbox is on the host (looked at by this test, as root): the sentry holds no
    // capability in the host's user namespace (its five are its own namespace's); the workload
    // runs as the user, in pid, user and network namespaces of its own, with nothing.
    let cfg = Path::new(&b).join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    v["process"]["args"] = serde_json::json!(["sleep", "60"]);
    fs::write(&cfg, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    expect(
        &s.as_user(&[&hako, "create", "--bundle", &b, "rl-sentry-d"]),
        "create",
    );
    expect(&s.as_user(&[&hako, "start", "rl-sentry-d"]), "start");
    let st = expect(&s.as_user(&[&hako, "state", "rl-sentry-d"]), "state");
    let sentry = serde_json::from_str::<serde_json::Value>(&st).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let mut init = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            // The sentry's children but its exec spawner (named `hako-spawner`).
            init = fs::read_to_string(format!("/proc/{sentry}/task/{sentry}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .find(|p| {
                    fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default()
                        != "hako-spawner\n"
                })
                .unwrap_or_default()
                .to_string();
            fs::read_to_string(format!("/proc/{init}/status"))
                .is_ok_and(|t| t.contains("Seccomp:\t2"))
        }),
        "the workload never started under sentry {sentry}"
    );
    let field = |pid: &str, k: &str| {
        let t = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        t.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:\t")))
            .unwrap_or_else(|| panic!("no {k}: {t}"))
            .to_string()
    };
    let ns = |pid: &str, n: &str| fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
    let me = s.user.uid.to_string();
    let sp = sentry.to_string();
    assert_eq!(field(&init, "Uid"), [me.as_str(); 4].join("\t"));
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(&init, set), "0000000000000000", "workload {set}");
    }
    assert_eq!(field(&init, "NSpid"), format!("{init}\t1"));
    for n in ["pid", "user", "net"] {
        assert_ne!(
            ns(&init, n),
            ns("self", n),
            "the workload shares the host's {n}"
        );
    }
    assert_ne!(ns(&init, "user"), ns(&sp, "user"));
    assert_ne!(
        ns(&sp, "user"),
        ns("self", "user"),
        "the sentry is in the host's user namespace"
    );
    assert_eq!(field(&sp, "Uid"), [me.as_str(); 4].join("\t"));
    assert_eq!(field(&sp, "CapEff"), format!("{:016x}", 0x1f));
    expect(
        &s.as_user(&[&hako, "delete", "--force", "rl-sentry-d"]),
        "delete",
    );
    let left = s.hako_state_left();
    assert!(left.is_empty(), "state left behind: {left:?}");
}

/// Rootless podman runs hako as root of a user namespace that maps only the user's ids: the
/// sentry's own namespace goes inside it.
#[test]
fn rootless_podman_runs_the_sentry_backend() {
    skip_unless!(["podman", "conmon"]);
    let Some((_one, s)) = rootless(None) else {
        return;
    };
    let archive = build_busybox_archive(&s.path().join("image"), &[]);
    chown_r(&s.path().join("image"), s.user.uid);
    let hako = s.hako.display().to_string();
    expect(
        &s.podman(&hako, &["load", "-i", archive.to_str().unwrap()]),
        "podman load",
    );
    let o = s.podman(
        &hako,
        &[
            "run",
            "--rm",
            "--annotation",
            "io.hako.backend=sentry",
            IMAGE,
            "sh",
            "-c",
            "echo hi from $(id -u) pid $$ on $(uname -r); exit 6",
        ],
    );
    assert_eq!(
        o.stdout.trim(),
        "hi from 0 pid 1 on 4.4.0-hako-sentry",
        "{}",
        o.describe()
    );
    assert_eq!(o.code(), 6, "{}", o.describe());
    let left = s.hako_state_left();
    assert!(left.is_empty(), "hako state left behind: {left:?}");
}

#[cfg(feature = "microvm")]
#[test]
fn rootless_user_runs_the_microvm_backend() {
    let kernel = hako_microvm::assets::default_kernel();
    let agent = hako_microvm::assets::find_agent();
    let why = hako_microvm::assets::check_kernel(&kernel)
        .map_err(|e| format!("no guest kernel: {e:#}"))
        .and_then(|_| hako_microvm::qemu::Qemu::find().map_err(|e| format!("{e:#}")))
        .and_then(|_| agent.as_ref().map_err(|e| format!("{e:#}")).map(|_| ()))
        .err();
    let Some((_one, s)) = rootless(why) else {
        return;
    };
    let agent = agent.unwrap();
    // Beside the copied hako, where it looks first: the build tree may be closed to the user.
    fs::copy(&agent, s.path().join("hako-agent")).unwrap();
    fs::set_permissions(
        s.path().join("hako-agent"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let b = rootless_bundle(&s, "microvm", busybox_rootfs, |v| {
        v["process"]["args"] = serde_json::json!(["sh", "-c", "echo hi from $(id -u); exit 5"]);
        v["annotations"] =
            serde_json::json!({"io.hako.backend": "microvm", "io.hako.microvm.vmm": "auto"});
    });
    let hako = s.hako.display().to_string();
    let o = s.as_user(&[&hako, "run", "--bundle", &b, "rl-microvm"]);
    assert_eq!(o.stdout.trim(), "hi from 0", "{}", o.describe());
    assert_eq!(o.code(), 5, "{}", o.describe());
    let left = s.hako_state_left();
    assert!(left.is_empty(), "state left behind: {left:?}");
}
