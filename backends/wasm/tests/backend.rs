//! The wasm backend driven through the backend contract, as the front end drives it: check,
//! create (fork, left at the start gate), release, wait, kill/pause/resume, delete.
//!
//! `harness = false`: one thread, like `hako create`, so forking and swapping fds 1 and 2
//! around `create` (to capture the module's output) is safe. Run with
//! `cargo test -p hako-wasm --test backend [-- NAME-FILTER]`.

use hako_contract::formats::is_wasm_file;
use hako_contract::{start_gate, Backend, CreateRequest, Created, GlobalOptions, Sandbox, Spec};
use hako_wasm::{WasmBackend, TRAP_EXIT};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ECHO: &str = include_str!("modules/echo.wat");
const EXIT7: &str = include_str!("modules/exit7.wat");
const TRAP: &str = include_str!("modules/trap.wat");
const SPIN: &str = include_str!("modules/spin.wat");
const GROW: &str = include_str!("modules/grow.wat");
const MISSING_IMPORT: &str = include_str!("modules/missing_import.wat");
const FILES: &str = include_str!("modules/files.wat");
const PROBE_C: &str = include_str!("modules/probe.c");

struct T {
    base: PathBuf,
    n: u32,
}

struct Run {
    status: WaitStatus,
    out: String,
    err: String,
    data: Value,
}

struct Made {
    id: String,
    dir: PathBuf,
    spec: Spec,
    state_dir: PathBuf,
    global: GlobalOptions,
    created: Created,
    out: PathBuf,
    err: PathBuf,
}

fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("test WAT parses")
}

impl T {
    fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    /// A bundle with `module` at /app.wasm in its rootfs and `process` merged into the spec.
    fn bundle(&mut self, module: &[u8], extra: Value) -> PathBuf {
        self.n += 1;
        let dir = self.base.join(format!("b{}", self.n));
        fs::create_dir_all(dir.join("rootfs")).unwrap();
        fs::write(dir.join("rootfs/app.wasm"), module).unwrap();
        let mut spec = json!({
            "ociVersion": "1.2.0",
            "process": {"args": ["/app.wasm"], "env": ["PATH=/usr/bin:/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "linux": {}
        });
        merge(&mut spec, extra);
        fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        dir
    }

    fn spec(dir: &Path) -> Spec {
        let mut spec = Spec::load(dir.join("config.json")).unwrap();
        // As the front end does: root.path made absolute.
        let mut root = spec.root().clone().unwrap();
        root.set_path(dir.join(root.path()));
        spec.set_root(Some(root));
        spec
    }

    fn global(&self) -> GlobalOptions {
        GlobalOptions {
            root: self.root(),
            ..Default::default()
        }
    }

    /// check + create with the module's stdout/stderr going to files.
    fn create(&mut self, dir: &Path) -> anyhow::Result<Made> {
        let spec = T::spec(dir);
        WasmBackend.check(&spec, dir)?;
        self.create_unchecked(dir, spec)
    }

    fn create_unchecked(&mut self, dir: &Path, spec: Spec) -> anyhow::Result<Made> {
        self.n += 1;
        let id = format!("w{}", self.n);
        let global = self.global();
        let state_dir = global.root.join(&id);
        fs::create_dir_all(&state_dir).unwrap();
        let fifo = state_dir.join("exec.fifo");
        start_gate::make(&fifo).unwrap();
        let out = dir.join(format!("{id}.out"));
        let err = dir.join(format!("{id}.err"));
        let req = CreateRequest {
            id: &id,
            bundle: dir,
            spec: &spec,
            state_dir: &state_dir,
            start_fifo: &fifo,
            console_socket: None,
            preserve_fds: 0,
            no_pivot: false,
            no_new_keyring: false,
            global: &global,
        };
        let created = with_stdio(&out, &err, || WasmBackend.create(&req));
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                fs::remove_dir_all(&state_dir).unwrap();
                return Err(e);
            }
        };
        Ok(Made {
            id,
            dir: dir.to_path_buf(),
            spec,
            state_dir,
            global,
            created,
            out,
            err,
        })
    }

    fn run(&mut self, dir: &Path) -> anyhow::Result<Run> {
        let m = self.create(dir)?;
        m.start();
        let status = waitpid(Pid::from_raw(m.created.pid), None).unwrap();
        Ok(m.finish(status))
    }
}

impl Made {
    fn sandbox(&self, alive: bool) -> Sandbox<'_> {
        Sandbox {
            id: &self.id,
            bundle: &self.dir,
            spec: &self.spec,
            state_dir: &self.state_dir,
            pid: self.created.pid,
            alive,
            data: &self.created.data,
            global: &self.global,
        }
    }

    fn start(&self) {
        let pid = self.created.pid;
        start_gate::release(&self.state_dir.join("exec.fifo"), || {
            hako_contract::proc::is_alive(pid, None)
        })
        .unwrap();
    }

    fn finish(self, status: WaitStatus) -> Run {
        WasmBackend.delete(&self.sandbox(false)).unwrap();
        fs::remove_dir_all(&self.state_dir).unwrap();
        Run {
            status,
            out: fs::read_to_string(&self.out).unwrap(),
            err: fs::read_to_string(&self.err).unwrap(),
            data: self.created.data.clone(),
        }
    }
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

fn with_stdio<R>(out: &Path, err: &Path, f: impl FnOnce() -> R) -> R {
    use std::os::fd::AsRawFd;
    let o = fs::File::create(out).unwrap();
    let e = fs::File::create(err).unwrap();
    // SAFETY: single-threaded test driver; fds 1 and 2 are restored before returning.
    unsafe {
        let (s1, s2) = (libc::dup(1), libc::dup(2));
        libc::dup2(o.as_raw_fd(), 1);
        libc::dup2(e.as_raw_fd(), 2);
        let r = f();
        libc::dup2(s1, 1);
        libc::dup2(s2, 2);
        libc::close(s1);
        libc::close(s2);
        r
    }
}

fn exited(r: &Run, code: i32) {
    assert_eq!(
        r.status,
        WaitStatus::Exited(r.status.pid().unwrap(), code),
        "stdout: {}\nstderr: {}",
        r.out,
        r.err
    );
}

/// Nothing left: no child process, and the cache holds `cache_entries` files.
fn nothing_left(t: &T, cache_entries: usize) {
    assert_eq!(
        waitpid(
            Pid::from_raw(-1),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG)
        ),
        Err(nix::errno::Errno::ECHILD),
        "a child process was left behind"
    );
    assert_eq!(
        cache_files(t).len(),
        cache_entries,
        "cache entries: {:?}",
        cache_files(t)
    );
    let states: Vec<_> = fs::read_dir(t.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "wasm-cache")
        .collect();
    assert!(states.is_empty(), "state left: {states:?}");
}

fn cache_files(t: &T) -> Vec<PathBuf> {
    match fs::read_dir(t.root().join("wasm-cache")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => vec![],
    }
}

// ---------------------------------------------------------------------------------------------

fn hello_args_env(t: &mut T) {
    let dir = t.bundle(&wat(ECHO), json!({"process": {"args": ["/app.wasm", "one", "two words"], "env": ["GREETING=hi there", "PATH=/bin"]}}));
    let r = t.run(&dir).unwrap();
    exited(&r, 0);
    assert_eq!(
        r.out,
        "/app.wasm\none\ntwo words\nGREETING=hi there\nPATH=/bin\n"
    );
    assert_eq!(r.data["kind"], "module");
}

fn entry_found_through_path(t: &mut T) {
    let dir = t.bundle(
        &wat(ECHO),
        json!({"process": {"args": ["app.wasm", "x"], "env": ["PATH=/nowhere:/"]}}),
    );
    let r = t.run(&dir).unwrap();
    exited(&r, 0);
    assert!(r.out.starts_with("app.wasm\nx\n"), "{}", r.out);
}

fn cache_hit_and_damage(t: &mut T) {
    let before = cache_files(t).len();
    // A module no other case uses, so the first create is a miss.
    let dir = t.bundle(
        &wat(&ECHO.replace(
            "(data (i32.const 64) \"\\n\")",
            "(data (i32.const 64) \"\\n\") (data (i32.const 70) \"cache-test\")",
        )),
        json!({"process": {"args": ["/app.wasm", "c"], "env": []}}),
    );
    let first = t.run(&dir).unwrap();
    exited(&first, 0);
    assert_eq!(first.data["cache"], "miss");
    let files = cache_files(t);
    assert_eq!(files.len(), before + 1);
    let second = t.run(&dir).unwrap();
    exited(&second, 0);
    assert_eq!(second.data["cache"], "hit");
    assert_eq!(second.out, first.out);

    let entry = newest(&files).unwrap();
    // Tamper with one byte of the compiled code: detected, recompiled, run correctly.
    let mut bytes = fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&entry, &bytes).unwrap();
    let third = t.run(&dir).unwrap();
    exited(&third, 0);
    assert_eq!(third.data["cache"], "rejected", "{}", third.data);
    assert!(
        third.data["cache_note"].as_str().unwrap().contains("hash"),
        "{}",
        third.data
    );
    assert_eq!(third.out, first.out);
    assert_eq!(t.run(&dir).unwrap().data["cache"], "hit");
    // Truncate it.
    let bytes = fs::read(&entry).unwrap();
    fs::write(&entry, &bytes[..bytes.len() - 100]).unwrap();
    let fifth = t.run(&dir).unwrap();
    exited(&fifth, 0);
    assert_eq!(fifth.data["cache"], "rejected");
    assert_eq!(t.run(&dir).unwrap().data["cache"], "hit");
    // The cache knob turns it off.
    let dir = t.bundle(
        &wat(ECHO),
        json!({"annotations": {"io.hako.wasm.cache": "false"}}),
    );
    assert_eq!(t.run(&dir).unwrap().data["cache"], "off");
}

fn newest(files: &[PathBuf]) -> Option<PathBuf> {
    files
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
        .cloned()
}

fn exit_code(t: &mut T) {
    let dir = t.bundle(&wat(EXIT7), json!({}));
    exited(&t.run(&dir).unwrap(), 7);
}

fn trap(t: &mut T) {
    let dir = t.bundle(&wat(TRAP), json!({}));
    let r = t.run(&dir).unwrap();
    exited(&r, TRAP_EXIT);
    assert!(
        r.err.contains("wasm trap") && r.err.contains("unreachable"),
        "stderr: {}",
        r.err
    );
}

fn memory_limit(t: &mut T) {
    // 128 MiB growth: allowed without a limit...
    let dir = t.bundle(&wat(GROW), json!({}));
    exited(&t.run(&dir).unwrap(), 0);
    // ...refused (memory.grow returns -1) under a 64 MiB limit, which also makes a cgroup.
    let dir = t.bundle(
        &wat(GROW),
        json!({"linux": {"resources": {"memory": {"limit": 64 << 20}}}}),
    );
    let m = t.create(&dir).unwrap();
    let cg = m.created.data["cgroup"].clone();
    let dirs: Vec<PathBuf> = cg["v1"]
        .as_object()
        .map(|o| {
            o.values()
                .map(|v| PathBuf::from(v.as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default();
    let dirs: Vec<PathBuf> = dirs
        .into_iter()
        .chain(cg["unified"].as_str().map(PathBuf::from))
        .collect();
    assert!(
        !dirs.is_empty(),
        "a memory limit makes a cgroup: {}",
        m.created.data
    );
    let procs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join("cgroup.procs"))
        .filter(|p| p.exists())
        .collect();
    for p in &procs {
        let pids = fs::read_to_string(p).unwrap();
        assert!(
            pids.lines().any(|l| l == m.created.pid.to_string()),
            "{} does not hold the host pid: {pids:?}",
            p.display()
        );
    }
    m.start();
    let status = waitpid(Pid::from_raw(m.created.pid), None).unwrap();
    let r = m.finish(status);
    exited(&r, 3);
    for d in &dirs {
        assert!(!d.exists(), "cgroup {} left after delete", d.display());
    }
    // A module whose initial memory exceeds the limit is refused at create.
    let big = "(module (memory (export \"memory\") 2000) (func (export \"_start\")))";
    let dir = t.bundle(
        &wat(big),
        json!({"linux": {"resources": {"memory": {"limit": 64 << 20}}}}),
    );
    let e = t.create(&dir).err().expect("create must fail");
    assert!(format!("{e:#}").contains("memory.limit"), "{e:#}");
    nothing_left(t, cache_files(t).len());
}

fn kill_stops_a_spinning_module(t: &mut T) {
    for (sig, name) in [
        (libc::SIGTERM, Signal::SIGTERM),
        (libc::SIGKILL, Signal::SIGKILL),
        (libc::SIGINT, Signal::SIGINT),
    ] {
        let dir = t.bundle(&wat(SPIN), json!({}));
        let m = t.create(&dir).unwrap();
        m.start();
        std::thread::sleep(Duration::from_millis(100));
        let pid = Pid::from_raw(m.created.pid);
        assert_eq!(
            waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap(),
            WaitStatus::StillAlive
        );
        WasmBackend.kill(&m.sandbox(true), sig, false).unwrap();
        let status = waitpid(pid, None).unwrap();
        assert_eq!(status, WaitStatus::Signaled(pid, name, false));
        m.finish(status);
    }
}

fn pause_and_resume(t: &mut T) {
    for with_cgroup in [false, true] {
        let extra = if with_cgroup {
            json!({"linux": {"cgroupsPath": format!("/hako-wasm-test/p{}", std::process::id())}})
        } else {
            json!({})
        };
        let dir = t.bundle(&wat(SPIN), extra);
        let m = t.create(&dir).unwrap();
        assert_eq!(m.created.data["cgroup"].is_null(), !with_cgroup);
        m.start();
        let sb = m.sandbox(true);
        WasmBackend.pause(&sb).unwrap();
        assert!(WasmBackend.is_paused(&sb), "paused (cgroup: {with_cgroup})");
        WasmBackend.resume(&sb).unwrap();
        assert!(!WasmBackend.is_paused(&sb));
        WasmBackend.pause(&sb).unwrap();
        // SIGKILL reaches a paused module.
        WasmBackend.kill(&sb, libc::SIGKILL, with_cgroup).unwrap();
        let pid = Pid::from_raw(m.created.pid);
        let status = waitpid(pid, None).unwrap();
        assert_eq!(status, WaitStatus::Signaled(pid, Signal::SIGKILL, false));
        m.finish(status);
    }
}

fn timeout_and_fuel(t: &mut T) {
    let dir = t.bundle(
        &wat(SPIN),
        json!({"annotations": {"io.hako.wasm.timeout-ms": "200", "io.hako.wasm.epoch-ms": "5"}}),
    );
    let r = t.run(&dir).unwrap();
    exited(&r, TRAP_EXIT);
    assert!(r.err.contains("time limit exceeded"), "{}", r.err);
    let dir = t.bundle(
        &wat(SPIN),
        json!({"annotations": {"io.hako.wasm.fuel": "100000"}}),
    );
    let r = t.run(&dir).unwrap();
    exited(&r, TRAP_EXIT);
    assert!(r.err.contains("fuel"), "{}", r.err);
    // A CPU quota with a time limit: throttled, still stopped by the limit.
    let dir = t.bundle(&wat(SPIN), json!({"annotations": {"io.hako.wasm.timeout-ms": "300"}, "linux": {"resources": {"cpu": {"quota": 20000, "period": 100000}}}}));
    let r = t.run(&dir).unwrap();
    exited(&r, TRAP_EXIT);
}

fn files_in_rootfs_and_binds(t: &mut T) {
    for (ro_bind, ro_root) in [(false, false), (true, false), (false, true)] {
        let data = t.base.join(format!("data{}", t.n));
        fs::create_dir_all(&data).unwrap();
        let mut opts = vec!["rbind"];
        if ro_bind {
            opts.push("ro");
        }
        let dir = t.bundle(&wat(FILES), json!({
            "root": {"readonly": ro_root},
            "mounts": [{"destination": "/data", "type": "bind", "source": data, "options": opts},
                       {"destination": "/proc", "type": "proc", "source": "proc"}]
        }));
        fs::write(dir.join("rootfs/in.txt"), "hello file\n").unwrap();
        let r = t.run(&dir).unwrap();
        exited(&r, 0);
        let out_ok = if ro_root { "out=err" } else { "out=ok" };
        let bind_ok = if ro_bind { "bind=err" } else { "bind=ok" };
        assert_eq!(
            r.out,
            format!("hello file\n{out_ok}\n{bind_ok}\n"),
            "ro_bind {ro_bind} ro_root {ro_root}"
        );
        assert_eq!(dir.join("rootfs/out.txt").exists(), !ro_root);
        assert_eq!(
            fs::read_to_string(data.join("new.txt")).ok(),
            (!ro_bind).then(|| "written\n".to_string())
        );
        // /proc is not applicable: not made inside the rootfs.
        assert!(!dir.join("rootfs/proc").exists());
    }
}

fn component_preview2(t: &mut T) {
    let core = wat(ECHO);
    let component = wit_component::ComponentEncoder::default()
        .module(&core)
        .unwrap()
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .unwrap()
        .validate(true)
        .encode()
        .unwrap();
    let dir = t.bundle(
        &component,
        json!({"process": {"args": ["/app.wasm", "p2"], "env": ["K=v"]}}),
    );
    let r = t.run(&dir).unwrap();
    exited(&r, 0);
    assert_eq!(r.data["kind"], "component");
    assert_eq!(r.out, "/app.wasm\np2\nK=v\n");
    assert_eq!(t.run(&dir).unwrap().data["cache"], "hit");
    // A component that fails: exit 7 through wasi:cli/exit.
    let dir = t.bundle(
        &wit_component::ComponentEncoder::default()
            .module(&wat(EXIT7))
            .unwrap()
            .adapter(
                "wasi_snapshot_preview1",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
            .unwrap()
            .encode()
            .unwrap(),
        json!({}),
    );
    let r = t.run(&dir).unwrap();
    assert!(
        matches!(r.status, WaitStatus::Exited(_, c) if c != 0),
        "{:?} {}",
        r.status,
        r.err
    );
}

fn bad_inputs(t: &mut T) {
    let entries = cache_files(t).len();
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        (
            "not wasm",
            b"#!/bin/sh\necho hi\n".to_vec(),
            "is not a WebAssembly module",
            true,
        ),
        (
            "invalid",
            b"\0asm\x01\0\0\0\x01\x05\xff\xff\xff\xff\xff".to_vec(),
            "is not a valid WebAssembly module",
            false,
        ),
        (
            "missing import",
            wat(MISSING_IMPORT),
            "env::not_provided",
            false,
        ),
        (
            "no _start",
            wat("(module (memory (export \"memory\") 1))"),
            "no _start",
            false,
        ),
        (
            "bad version",
            b"\0asm\x02\0\0\0".to_vec(),
            "unsupported WebAssembly version",
            false,
        ),
    ];
    for (what, bytes, want, at_check) in cases {
        let dir = t.bundle(&bytes, json!({}));
        let spec = T::spec(&dir);
        let checked = WasmBackend.check(&spec, &dir);
        assert_eq!(checked.is_err(), at_check, "{what}: check {checked:?}");
        let e = match checked {
            Err(e) => e,
            Ok(()) => t
                .create_unchecked(&dir, spec)
                .err()
                .unwrap_or_else(|| panic!("{what}: create succeeded")),
        };
        let msg = format!("{e:#}");
        assert!(msg.contains(want), "{what}: {msg}");
        assert_eq!(msg.lines().count(), 1, "{what}: one clear error: {msg}");
        nothing_left(t, entries);
    }
    // The entry is missing from the rootfs.
    let dir = t.bundle(&wat(ECHO), json!({"process": {"args": ["/nope.wasm"]}}));
    let e = t.create(&dir).err().unwrap();
    assert!(
        format!("{e:#}").contains("not found in the rootfs"),
        "{e:#}"
    );
    // A symlink may not lead out of the rootfs.
    let dir = t.bundle(&wat(ECHO), json!({"process": {"args": ["/link.wasm"]}}));
    let outside = t.base.join("outside.wasm");
    fs::write(&outside, wat(ECHO)).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("rootfs/link.wasm")).unwrap();
    let e = t.create(&dir).err().unwrap();
    assert!(
        format!("{e:#}").contains("not found in the rootfs"),
        "{e:#}"
    );
    // Settings the backend cannot honour.
    let dir = t.bundle(
        &wat(ECHO),
        json!({"annotations": {"io.hako.wasm.bogus": "1"}}),
    );
    assert!(format!("{:#}", t.create(&dir).err().unwrap()).contains("unknown annotation"));
    let dir = t.bundle(
        &wat(ECHO),
        json!({"mounts": [{"destination": "/x", "type": "nfs", "source": "h:/x"}]}),
    );
    assert!(format!("{:#}", t.create(&dir).err().unwrap())
        .contains("not supported by the wasm backend"));
    nothing_left(t, entries);
}

/// A hostile bundle whose root.path is the host's `/` (however spelt) would preopen the whole
/// host for the module: refused at check and at create, nothing left behind.
fn host_root_refused(t: &mut T) {
    let entries = cache_files(t).len();
    for root in ["/", "/../", "/usr/..", "hostroot"] {
        let dir = t.bundle(&wat(ECHO), json!({"root": {"path": root}}));
        std::os::unix::fs::symlink("/", dir.join("hostroot")).unwrap();
        let spec = T::spec(&dir);
        let e = WasmBackend.check(&spec, &dir).unwrap_err();
        assert!(
            format!("{e:#}").contains("host's root directory"),
            "{root}: {e:#}"
        );
        let e = t.create_unchecked(&dir, spec).err().unwrap();
        assert!(
            format!("{e:#}").contains("host's root directory"),
            "{root}: {e:#}"
        );
        nothing_left(t, entries);
    }
}

fn c_program(t: &mut T) {
    let src = t.base.join("probe.c");
    fs::write(&src, PROBE_C).unwrap();
    let out = t.base.join("probe.wasm");
    let cc = std::process::Command::new("clang")
        .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .output();
    match cc {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!("    skipped: clang cannot build for wasm32-wasi here ({}); apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32", String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or(""));
            return;
        }
        Err(e) => {
            println!("    skipped: no clang ({e})");
            return;
        }
    }
    let data = t.base.join("cdata");
    let ro = t.base.join("cro");
    fs::create_dir_all(&data).unwrap();
    fs::create_dir_all(&ro).unwrap();
    let hostfile = t.base.join("hostfile");
    fs::write(&hostfile, "bound file\n").unwrap();
    let dir = t.bundle(&fs::read(&out).unwrap(), json!({
        "process": {"args": ["/app.wasm", "5"], "env": ["GREETING=hello"], "cwd": "/work"},
        "mounts": [
            {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]},
            {"destination": "/ro", "type": "bind", "source": ro, "options": ["rbind", "ro"]},
            {"destination": "/etc/hostfile", "type": "bind", "source": hostfile, "options": ["rbind", "ro"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
        ]
    }));
    fs::write(dir.join("rootfs/in.txt"), "absolute\n").unwrap();
    fs::create_dir_all(dir.join("rootfs/work")).unwrap();
    fs::write(dir.join("rootfs/work/rel.txt"), "relative\n").unwrap();
    // wasi-libc keeps its own cwd, which starts at "/": relative paths resolve from the root
    // (the spec's cwd is the "." preopen, which only older toolchains consult).
    fs::write(dir.join("rootfs/rel.txt"), "relative to /\n").unwrap();
    let r = t.run(&dir).unwrap();
    exited(&r, 5);
    let want = "argv[0]=/app.wasm\nargv[1]=5\nGREETING=hello\n/in.txt: absolute\nrel.txt: relative to /\n/etc/hostfile: bound file\n\
                write /out.txt: ok\nwrite /data/new.txt: ok\nwrite /ro/new.txt: refused\n";
    assert_eq!(r.out, want, "stderr: {}", r.err);
    assert_eq!(
        fs::read_to_string(data.join("new.txt")).unwrap(),
        "from wasm\n"
    );
    assert!(!ro.join("new.txt").exists());
    // The file bind mount lived in the host process's own mount namespace only.
    assert_eq!(
        fs::read_to_string(dir.join("rootfs/etc/hostfile")).unwrap(),
        ""
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.to_str().unwrap()),
        "a mount leaked to the host"
    );
}

fn wasm_magic(t: &mut T) {
    let dir = t.bundle(&wat(ECHO), json!({}));
    assert!(is_wasm_file(&dir.join("rootfs/app.wasm")));
    assert!(!is_wasm_file(&dir.join("config.json")));
    assert!(!is_wasm_file(&dir.join("missing")));
}

type Case = (&'static str, fn(&mut T));

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases: &[Case] = &[
        ("wasm_magic", wasm_magic),
        ("hello_args_env", hello_args_env),
        ("entry_found_through_path", entry_found_through_path),
        ("exit_code", exit_code),
        ("trap", trap),
        ("cache_hit_and_damage", cache_hit_and_damage),
        ("memory_limit", memory_limit),
        ("kill_stops_a_spinning_module", kill_stops_a_spinning_module),
        ("pause_and_resume", pause_and_resume),
        ("timeout_and_fuel", timeout_and_fuel),
        ("files_in_rootfs_and_binds", files_in_rootfs_and_binds),
        ("component_preview2", component_preview2),
        ("bad_inputs", bad_inputs),
        ("c_program", c_program),
        ("host_root_refused", host_root_refused),
    ];
    let root_needed = unsafe { libc::geteuid() } != 0;
    if root_needed {
        println!("skipped: the wasm backend tests make cgroups and mount namespaces and need root");
        return;
    }
    let base = std::env::temp_dir().join(format!("hako-wasm-test-{}", std::process::id()));
    let mut failed = vec![];
    for (name, f) in cases {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            continue;
        }
        let mut t = T {
            base: base.join(name),
            n: 0,
        };
        fs::create_dir_all(t.root()).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut t)));
        println!(
            "test {name} ... {}",
            if r.is_ok() { "ok" } else { "FAILED" }
        );
        if r.is_err() {
            failed.push(*name);
        }
    }
    let _ = fs::remove_dir_all(&base);
    // The parent cgroup of pause_and_resume's cgroupsPath, in every hierarchy.
    for h in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = fs::remove_dir(h.path().join("hako-wasm-test"));
    }
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(1);
    }
}
