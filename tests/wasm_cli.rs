//! The wasm backend through the `hako` CLI, as engines drive it: backend selection by
//! annotation and by the wasm magic, run, create/start/state/pause/resume/kill/delete, exit
//! codes and traps, the console socket, and bad inputs (one clear error, exit 1, nothing left).
//! Modules are built here from WAT with Debian's wabt (`wat2wasm`).

mod common;

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const HAKO: &str = env!("CARGO_BIN_EXE_hako");
const HELLO: &str = include_str!("fixtures/wasm/hello.wat");
const GREETING: &str = "Hello from WebAssembly on hako!\n";
static SEQ: AtomicUsize = AtomicUsize::new(0);

fn why_skip() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if Command::new("wat2wasm").arg("--version").output().is_err() {
        return Some("wat2wasm missing (apt-get install wabt)".into());
    }
    None
}

macro_rules! skip_unless_ready {
    () => {
        if let Some(why) = why_skip() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

struct Env {
    dir: PathBuf,
    root: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = std::env::temp_dir().join(format!(
            "hako-wasm-cli-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let root = dir.join("root");
        fs::create_dir_all(&root).unwrap();
        Env { dir, root }
    }

    fn id(&self, p: &str) -> String {
        format!(
            "{p}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// A bundle with the module built from `wat` at /app.wasm (or `raw` bytes).
    fn bundle(&self, module: Module, extra: Value) -> PathBuf {
        let b = self.dir.join(self.id("b"));
        fs::create_dir_all(b.join("rootfs")).unwrap();
        let target = b.join("rootfs/app.wasm");
        match module {
            Module::Wat(src) => {
                let wat = b.join("m.wat");
                fs::write(&wat, src).unwrap();
                let o = Command::new("wat2wasm")
                    .arg(&wat)
                    .arg("-o")
                    .arg(&target)
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "wat2wasm: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            Module::Raw(bytes) => fs::write(&target, bytes).unwrap(),
        }
        let mut spec = json!({
            "ociVersion": "1.2.0",
            "process": {"args": ["/app.wasm"], "env": ["PATH=/"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "linux": {}
        });
        merge(&mut spec, extra);
        fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        b
    }

    fn hako(&self, args: &[&str]) -> Output {
        Command::new(HAKO)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// For `create` of a sandbox that outlives the call: its host process inherits stdio, so
    /// pipes would stay open until the module exits. stdout/stderr go to files instead.
    fn hako_detached(&self, args: &[&str]) -> (bool, String) {
        let log = self.dir.join(format!("{}.stderr", self.id("create")));
        let st = Command::new(HAKO)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        (st.success(), fs::read_to_string(&log).unwrap_or_default())
    }

    fn state(&self, id: &str) -> Option<Value> {
        let o = self.hako(&["state", id]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).unwrap())
    }

    /// Nothing but the module cache under the state root, and no process naming our bundle.
    fn nothing_left(&self) {
        let left: Vec<_> = fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "wasm-cache")
            .collect();
        assert!(left.is_empty(), "state left behind: {left:?}");
        let o = self.hako(&["list", "--format", "json"]);
        if o.status.success() {
            let s = String::from_utf8_lossy(&o.stdout);
            assert!(
                s.trim() == "[]" || s.trim() == "null" || s.trim().is_empty(),
                "containers left: {s}"
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

enum Module<'a> {
    Wat(&'a str),
    Raw(Vec<u8>),
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_status(e: &Env, id: &str, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if e.state(id).is_some_and(|s| s["status"] == want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn wasm_cli_run_chosen_by_every_selector() {
    skip_unless_ready!();
    let e = Env::new();
    let selectors = [
        json!({}),
        json!({"io.hako.backend": "wasm"}),
        json!({"run.oci.handler": "wasm"}),
        json!({"module.wasm.image/variant": "compat"}),
        json!({"module.wasm.image/variant": "compat-smart"}),
    ];
    for ann in selectors {
        let b = e.bundle(
            Module::Wat(HELLO),
            json!({"annotations": ann, "process": {"args": ["/app.wasm", "one", "two"]}}),
        );
        let id = e.id("run");
        let o = e.hako(&["run", "--bundle", b.to_str().unwrap(), &id]);
        assert_eq!(o.status.code(), Some(0), "{ann}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), format!("{GREETING}one\ntwo\n"), "{ann}");
    }
    e.nothing_left();
}

#[test]
fn wasm_cli_exit_code_and_trap() {
    skip_unless_ready!();
    let e = Env::new();
    let exit7 = r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $x (param i32)))
                   (memory (export "memory") 1) (func (export "_start") (call $x (i32.const 7))))"#;
    let b = e.bundle(Module::Wat(exit7), json!({}));
    let o = e.hako(&["run", "--bundle", b.to_str().unwrap(), &e.id("x")]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    let trap = r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;
    let b = e.bundle(Module::Wat(trap), json!({}));
    let o = e.hako(&["run", "--bundle", b.to_str().unwrap(), &e.id("t")]);
    assert_eq!(o.status.code(), Some(134), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("wasm trap"), "{}", text(&o.stderr));
    e.nothing_left();
}

#[test]
fn wasm_cli_lifecycle_pause_resume_kill() {
    skip_unless_ready!();
    let e = Env::new();
    let spin =
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))"#;
    let b = e.bundle(Module::Wat(spin), json!({}));
    let id = e.id("life");
    let pidfile = e.dir.join("pid");
    let (ok, err) = e.hako_detached(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    assert!(ok, "{err}");
    let st = e.state(&id).unwrap();
    assert_eq!(st["status"], "created");
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(st["pid"], pid);
    assert!(e.hako(&["start", &id]).status.success());
    assert_eq!(e.state(&id).unwrap()["status"], "running");
    assert!(e.hako(&["pause", &id]).status.success());
    assert_eq!(e.state(&id).unwrap()["status"], "paused");
    assert!(e.hako(&["resume", &id]).status.success());
    assert_eq!(e.state(&id).unwrap()["status"], "running");
    // SIGTERM (as a number, as podman sends it) stops the infinite loop.
    assert!(e.hako(&["kill", &id, "15"]).status.success());
    assert!(wait_status(&e, &id, "stopped"), "still {:?}", e.state(&id));
    assert!(e.hako(&["delete", &id]).status.success());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    );
    e.nothing_left();
}

#[test]
fn wasm_cli_bad_inputs_are_one_clear_error() {
    skip_unless_ready!();
    let e = Env::new();
    let missing_import = r#"(module (import "env" "nope" (func)) (memory (export "memory") 1) (func (export "_start")))"#;
    let cases: Vec<(&str, Module, Value, &str)> = vec![
        (
            "not wasm",
            Module::Raw(b"just text\n".to_vec()),
            json!({"annotations": {"io.hako.backend": "wasm"}}),
            "is not a WebAssembly module",
        ),
        (
            "invalid",
            Module::Raw(b"\0asm\x01\0\0\0\x01\x05\xff\xff\xff\xff\xff".to_vec()),
            json!({}),
            "is not a valid WebAssembly module",
        ),
        (
            "missing import",
            Module::Wat(missing_import),
            json!({}),
            "env::nope",
        ),
        (
            "missing entry",
            Module::Wat(HELLO),
            json!({"annotations": {"io.hako.backend": "wasm"}, "process": {"args": ["/absent.wasm"]}}),
            "not found in the rootfs",
        ),
        (
            "unknown knob",
            Module::Wat(HELLO),
            json!({"annotations": {"io.hako.wasm.nonsense": "1"}}),
            "io.hako.wasm.nonsense",
        ),
    ];
    for (what, module, extra, want) in cases {
        let b = e.bundle(module, extra);
        let id = e.id("bad");
        for cmd in ["create", "run"] {
            let o = e.hako(&[cmd, "--bundle", b.to_str().unwrap(), &id]);
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{what} ({cmd}): {err}");
            assert!(err.contains(want), "{what} ({cmd}): {err}");
            assert_eq!(
                err.trim().lines().count(),
                1,
                "{what} ({cmd}): one line: {err}"
            );
            assert!(
                e.state(&id).is_none(),
                "{what}: the container exists after a failed {cmd}"
            );
            e.nothing_left();
        }
    }
}

#[test]
fn wasm_cli_console_socket_gets_the_pty() {
    skip_unless_ready!();
    let e = Env::new();
    let b = e.bundle(
        Module::Wat(HELLO),
        json!({"process": {"terminal": true, "args": ["/app.wasm", "tty"]}}),
    );
    let sock_path = e.dir.join("console.sock");
    let receiver = common::console_receiver(&sock_path);
    let id = e.id("tty");
    let o = e.hako(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &id,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let master = receiver.join().unwrap();
    assert!(e.hako(&["start", &id]).status.success());
    // Until the module is done (EIO once the slave side is closed).
    let s = common::read_until(&master, "tty\n");
    assert!(s.starts_with(GREETING) && s.contains("tty\n"), "{s:?}");
    assert!(wait_status(&e, &id, "stopped"));
    assert!(e.hako(&["delete", &id]).status.success());
    e.nothing_left();
}
