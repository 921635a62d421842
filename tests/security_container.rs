//! Attacks on the container backend's runtime binary (the CVE-2019-5736 class), written as an
//! attacker would: a static program inside the container that goes for `/proc/<pid>/exe` of
//! whatever hako clones in, holds it, and tries to reopen it for writing once the runtime is
//! gone; and a `#!/proc/self/exe` script as the program `exec` runs.
//!
//! Each test runs a *copy* of the hako binary as "the installed runtime", so an attack that gets
//! through damages only the copy, and asserts the copy is byte for byte what it was. Where runc
//! is installed the same attack runs against a copy of runc in the same test.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The attacker, compiled once per test run (None when there is no C compiler).
fn attacker() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/security/proc_exe_attack.c");
        let out = std::env::temp_dir().join(unique("proc-exe-attack"));
        let ok = Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(out)
    })
    .as_deref()
}

fn need_attacker() -> Option<String> {
    need_root().or_else(|| {
        attacker()
            .is_none()
            .then(|| "gcc -static is not available to build the attacker".to_string())
    })
}

/// A runtime binary copied to a private place: what the attack aims at. Driven as any runtime
/// is in these tests (`Hako` pointed at the copy, with a state root of its own).
struct Runtime {
    dir: PathBuf,
    /// Always Some until drop, which ends the runtime's containers before removing `dir`.
    rt: Option<Hako>,
    bin: PathBuf,
    original: Vec<u8>,
}

impl Runtime {
    fn copy_of(path: &Path) -> Runtime {
        let dir = std::env::temp_dir().join(unique("runtime-copy"));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join(path.file_name().unwrap());
        std::fs::copy(path, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let original = std::fs::read(&bin).unwrap();
        let rt = Hako {
            root: dir.join("state"),
            bin: bin.clone(),
        };
        Runtime {
            dir,
            rt: Some(rt),
            bin,
            original,
        }
    }

    fn h(&self) -> &Hako {
        self.rt.as_ref().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.h().run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.h().ok(args)
    }

    /// (st_dev, st_ino) of the binary, as the attacker's fstat reports them.
    fn ident(&self) -> (u64, u64) {
        let m = std::fs::metadata(&self.bin).unwrap();
        (m.dev(), m.ino())
    }

    fn assert_untouched(&self) {
        let now = std::fs::read(&self.bin).unwrap();
        assert!(
            now == self.original,
            "the runtime binary {} was modified from inside the container",
            self.bin.display()
        );
    }

    fn wait_stopped(&self, id: &str) {
        self.h().wait_status(id, "stopped");
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Its containers first (Hako's drop deletes them with the binary), then the copy.
        drop(self.rt.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the attacker printed: the (pid, dev, ino) it opened, the pids it was refused, and the
/// (dev, ino) it wrote.
#[derive(Debug, Default)]
struct Findings {
    opened: Vec<(i64, u64, u64)>,
    denied: Vec<(i64, i32)>,
    wrote: Vec<(u64, u64)>,
    done: bool,
}

fn findings(out: &str) -> Findings {
    let mut f = Findings::default();
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["OPENED", p, d, i] => {
                f.opened
                    .push((p.parse().unwrap(), d.parse().unwrap(), i.parse().unwrap()))
            }
            ["DENIED", p, e] => f.denied.push((p.parse().unwrap(), e.parse().unwrap())),
            ["WROTE", d, i] => f.wrote.push((d.parse().unwrap(), i.parse().unwrap())),
            ["DONE", ..] => f.done = true,
            _ => {}
        }
    }
    f
}

fn bundle_with_attacker(args: &[&str]) -> Bundle {
    let b = Bundle::busybox(args);
    let dst = b.rootfs().join("attack");
    std::fs::copy(attacker().unwrap(), &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The second way in: a script whose interpreter is the runtime itself.
    let evil = b.rootfs().join("evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    b
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(prog))
            .find(|c| c.is_file())
    })
}

/// A created (not started) container's init runs the runtime's code and waits on the start
/// gate for as long as the engine likes. A process exec'd into it goes for /proc/1/exe once
/// (returned), and a second one holds whatever it can get and tries to write it once `start`
/// has made the init exec the workload, so that the runtime's text is no longer busy.
fn created_init_attack(rt: &Runtime, b: &Bundle) -> (Findings, Findings) {
    let id = unique("created");
    rt.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    let once = findings(&rt.ok(&["exec", &id, "/attack", "once"]));
    assert!(once.done, "the attacker did not finish: {once:?}");
    let log = b.rootfs().join("tmp/created-findings");
    let _ = std::fs::remove_file(&log);
    rt.ok(&[
        "exec",
        "--detach",
        &id,
        "sh",
        "-c",
        "/attack race 3 > /tmp/created-findings 2>&1",
    ]);
    let t = Instant::now();
    while !log.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    rt.ok(&["start", &id]);
    let t = Instant::now();
    let mut held = Findings::default();
    while t.elapsed() < Duration::from_secs(20) {
        held = findings(&std::fs::read_to_string(&log).unwrap_or_default());
        if held.done {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = rt.run(&["delete", "--force", &id]);
    assert!(held.done, "the holding attacker did not finish: {held:?}");
    (once, held)
}

#[test]
fn a_created_containers_init_does_not_hand_out_the_runtime_binary() {
    skip_unless!(need_attacker());
    let b = bundle_with_attacker(&["sleep", "60"]);
    let rt = Runtime::copy_of(Path::new(HAKO));
    let me = rt.ident();
    let (once, held) = created_init_attack(&rt, &b);
    assert!(
        !once
            .opened
            .iter()
            .chain(&held.opened)
            .any(|&(_, d, i)| (d, i) == me),
        "the container opened the host's hako binary: {once:?} {held:?}"
    );
    assert!(
        once.denied.iter().any(|&(p, _)| p == 1),
        "the attacker was not refused /proc/1/exe: {once:?}"
    );
    assert!(
        !held.wrote.contains(&me),
        "the attacker wrote hako: {held:?}"
    );
    rt.assert_untouched();

    // The same attack on runc, where it is installed. runc's init may be opened (it runs from
    // a detached read-only bind mount of its binary) but never written.
    let Some(runc) = which("runc") else {
        eprintln!("SKIPPED (peer): runc is not installed");
        return;
    };
    let peer = Runtime::copy_of(&runc);
    let (_, held) = created_init_attack(&peer, &b);
    assert!(
        !held.wrote.contains(&peer.ident()),
        "runc: the attacker wrote runc: {held:?}"
    );
    peer.assert_untouched();
}

/// The workload races every process the runtime clones in with `exec`; `progs` is what each
/// exec runs. Returns what the attacker found once the container has stopped.
fn exec_race(rt: &Runtime, progs: &[&str], rounds: usize) -> Findings {
    let b = bundle_with_attacker(&["sh", "-c", "/attack race 4 > /tmp/findings 2>&1"]);
    let id = unique("race");
    rt.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    rt.ok(&["start", &id]);
    // Let the attacker start spinning.
    let started = Instant::now();
    while !b.rootfs().join("tmp/findings").exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..rounds {
        for p in progs {
            // The script exits with a usage error: its status is not the point.
            let _ = rt.run(&["exec", &id, p]);
        }
    }
    rt.wait_stopped(&id);
    let out = std::fs::read_to_string(b.rootfs().join("tmp/findings")).unwrap_or_default();
    let _ = rt.run(&["delete", "--force", &id]);
    let f = findings(&out);
    assert!(f.done, "the attacker did not finish: {out}");
    f
}

#[test]
fn exec_children_do_not_hand_out_the_runtime_binary() {
    skip_unless!(need_attacker());
    let rt = Runtime::copy_of(Path::new(HAKO));
    let f = exec_race(&rt, &["/bin/true"], 12);
    assert!(
        !f.opened.iter().any(|&(_, d, i)| (d, i) == rt.ident()),
        "the container opened the host's hako binary through an exec'd process: {f:?}"
    );
    // (It may write the container's own binaries, /bin/true among them: they are its own.)
    assert!(
        !f.wrote.contains(&rt.ident()),
        "the attacker wrote hako: {f:?}"
    );
    rt.assert_untouched();
}

#[test]
fn a_proc_self_exe_script_cannot_overwrite_the_runtime() {
    skip_unless!(need_attacker());
    let rt = Runtime::copy_of(Path::new(HAKO));
    let f = exec_race(&rt, &["/evil"], 8);
    // The script runs the runtime's binary as a container process, so the attacker may well
    // open it: it must not be able to write it, then or after the runtime has exited.
    assert!(
        !f.wrote.contains(&rt.ident()),
        "the attacker wrote hako: {f:?}"
    );
    rt.assert_untouched();
    eprintln!(
        "attacker opened {} executable(s), wrote none",
        f.opened.len()
    );
}

/// A state.json whose start time was lost (or removed by whoever can write the state root)
/// must not turn `delete --force` into a kill of whatever host process has that pid now.
#[test]
fn delete_force_never_signals_an_unverified_pid() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = Bundle::busybox(&["sleep", "60"]);
    let id = unique("nullstart");
    h.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    // An unrelated host process, and the state pointed at it with no start time.
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let state = h.root.join(&id).join("state.json");
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let init = rec["pid"].as_i64().unwrap();
    rec["pid"] = serde_json::json!(victim.id());
    rec["pid_start"] = serde_json::Value::Null;
    std::fs::write(&state, serde_json::to_vec(&rec).unwrap()).unwrap();
    assert_eq!(
        h.status(&id),
        "stopped",
        "an unverified pid counts as stopped"
    );
    let _ = h.run(&["kill", &id, "KILL"]);
    h.ok(&["delete", "--force", &id]);
    assert!(
        victim.try_wait().unwrap().is_none(),
        "delete --force killed an unrelated host process"
    );
    let _ = victim.kill();
    let _ = victim.wait();
    // SAFETY: the container's own init, which the test made; cleaned up by hand.
    unsafe { libc::kill(init as i32, libc::SIGKILL) };
}

/// `delete` unmounts only what the container left on the host (a shared rootfsPropagation
/// propagates its mounts back), never a mount the engine or an admin made under the rootfs.
#[test]
fn delete_leaves_alone_the_mounts_it_did_not_make() {
    skip_unless!(need_root());
    for propagation in [None, Some("shared")] {
        let h = Hako::new();
        let mut b = Bundle::busybox(&["true"]);
        if let Some(p) = propagation {
            b.edit(|c| c["linux"]["rootfsPropagation"] = serde_json::json!(p));
        }
        let admin = b.rootfs().join("mnt/admin");
        std::fs::create_dir_all(&admin).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "admin-tmpfs"])
            .arg(&admin)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting the admin's tmpfs");
        std::fs::write(admin.join("keep"), "x").unwrap();
        let before = mounts_at_or_below(&b.rootfs());
        let o = h.run(&["run", "--bundle", b.dir.to_str().unwrap(), &unique("mnt")]);
        let after = mounts_at_or_below(&b.rootfs());
        let still = admin.join("keep").exists();
        let _ = Command::new("umount").arg("-l").arg(&admin).status();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            still,
            "{propagation:?}: delete unmounted a mount it did not make"
        );
        assert_eq!(
            after, before,
            "{propagation:?}: the mounts under the rootfs changed"
        );
    }
}

fn mounts_at_or_below(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(&dir))
        .collect();
    v.sort();
    v
}
