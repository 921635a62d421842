//! containerd (`ctr`) driving hako end to end through the io.containerd.runc.v2 shim.
//!
//! Each test starts its own `containerd` with root, state, gRPC/ttrpc sockets in a temp dir
//! (config as in docs/engines.md, CRI disabled), imports a busybox docker-archive built from
//! the host's busybox-static, and runs `ctr run --runc-binary <hako> ...` with the native
//! snapshotter, FIFOs and the runtime's `--root` in the temp dir too. The runtime is hako unless
//! `HAKO_E2E_RUNTIME` selects another (runc, crun, a path).

#[macro_use]
#[path = "support/engines.rs"]
mod engines;

use engines::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CTRD_BINS: [&str; 3] = ["containerd", "ctr", "containerd-shim-runc-v2"];

struct Containerd {
    dir: Option<tempfile::TempDir>,
    rt: Runtime,
    runtime: PathBuf,
    ns: String,
    daemon: Option<Child>,
}

impl Containerd {
    fn start() -> Containerd {
        let rt = Runtime::from_env();
        let dir = short_tempdir("ctrd");
        let d = dir.path().to_path_buf();
        for sub in ["root", "state", "fifo", "runc-root", "image"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        // The config from docs/engines.md, with every path in the temp dir.
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{d}/c.sock"

[ttrpc]
  address = "{d}/c.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
"#,
            d = d.display()
        );
        fs::write(d.join("config.toml"), config).unwrap();
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .env("PATH", full_path())
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let runtime = rt.install(&d, "hako-runtime", &[]);
        let mut c = Containerd {
            ns: unique("e2e"),
            dir: Some(dir),
            rt,
            runtime,
            daemon: Some(daemon),
        };
        let ready = wait_until(Duration::from_secs(30), || {
            c.daemon
                .as_mut()
                .map(|ch| ch.try_wait().ok().flatten().is_none())
                .unwrap_or(false)
                && run_cmd(
                    c.ctr_command(&["version"]).as_mut(),
                    None,
                    Duration::from_secs(10),
                )
                .ok()
        });
        if !ready {
            panic!(
                "containerd did not come up\n{}",
                fs::read_to_string(d.join("containerd.log")).unwrap_or_default()
            );
        }
        let archive = build_busybox_archive(&d.join("image"), &[]);
        c.ok(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            archive.to_str().unwrap(),
        ]);
        c
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn ctr_command(&self, args: &[&str]) -> Box<Command> {
        let d = self.path();
        let mut c = Command::new("ctr");
        c.env("PATH", full_path());
        c.arg("--address")
            .arg(d.join("c.sock"))
            .arg("--namespace")
            .arg(&self.ns);
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if args.first().map(String::as_str) == Some("run") {
            let extra = [
                "--snapshotter".to_string(),
                "native".into(),
                "--fifo-dir".into(),
                d.join("fifo").display().to_string(),
                "--runc-binary".into(),
                self.runtime.display().to_string(),
                "--runc-root".into(),
                d.join("runc-root").display().to_string(),
            ];
            for (i, a) in extra.into_iter().enumerate() {
                args.insert(1 + i, a);
            }
        }
        c.args(args);
        Box::new(c)
    }

    /// Cleanup commands get a shorter leash: the guard kills what is left anyway.
    fn cleanup_cmd(&self, args: &[&str]) -> Out {
        run_cmd(&mut self.ctr_command(args), None, CLEANUP_TIMEOUT)
    }

    /// Runs under a pseudo-terminal (`script`), for `ctr run -t`.
    fn cmd_in_pty(&self, args: &[&str]) -> Out {
        let c = self.ctr_command(args);
        let line = std::iter::once(c.get_program().to_string_lossy().into_owned())
            .chain(c.get_args().map(|a| shell_quote(&a.to_string_lossy())))
            .collect::<Vec<_>>()
            .join(" ");
        run_cmd(
            Command::new("script").args(["-qefc", &line, "/dev/null"]),
            None,
            CMD_TIMEOUT,
        )
    }

    /// The task's status column in `ctr tasks ls` (RUNNING, PAUSED, STOPPED, ...).
    fn task_status(&self, id: &str) -> String {
        let out = self.ok(&["tasks", "ls"]);
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&id))
            .and_then(|f| f.last().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    /// Host pid of a task's init (`ctr tasks ls`).
    fn task_pid(&self, id: &str) -> u32 {
        let ls = self.ok(&["tasks", "ls"]).stdout;
        ls.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&id))
            .and_then(|f| f.get(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no pid for task {id} in\n{ls}"))
    }

    /// Container cgroups (ctr puts them at /<namespace>/<id>) that are still there.
    fn container_cgroups(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for ctrl in [
            "memory", "pids", "cpu", "freezer", "devices", "blkio", "cpuset",
        ] {
            let top = Path::new("/sys/fs/cgroup").join(ctrl).join(&self.ns);
            if let Ok(rd) = fs::read_dir(&top) {
                left.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
        }
        left
    }

    fn assert_no_container_cgroups(&self) {
        let state = runtime_state_left(&self.path().join("runc-root").join(&self.ns), self.path());
        if !state.is_empty() {
            panic!(
                "runtime state left behind after the containers were removed: {state:?}\n{}",
                runtime_report(self.path())
            );
        }
        let left = self.container_cgroups();
        if !left.is_empty() {
            panic!(
                "container cgroups left behind after the containers were removed: {left:?}\n{}",
                runtime_report(self.path())
            );
        }
    }
}

impl Containerd {
    /// `ctr run --rm ...` that must exit `code` and print something. Under load ctr now and
    /// then reports a short-lived task's right exit code with none of its output (seen once in
    /// ten CI runs here, then 1 in 3 at load 8); losing the last output of a task that exits
    /// right after printing is a known containerd race (concourse/concourse#6775), not
    /// something the runtime controls once the workload wrote to the shim's pipe. An empty
    /// stdout with the right exit code is tried again, twice at most; any other answer is the
    /// runtime's, checked by the caller.
    fn run_printing(&self, args: &[&str], code: i32) -> Out {
        let mut out = self.expect_code(args, code);
        for _ in 0..2 {
            if !out.stdout.is_empty() {
                break;
            }
            eprintln!("ctr printed nothing (its short-lived-task race); once more");
            out = self.expect_code(args, code);
        }
        out
    }
}

impl Engine for Containerd {
    const NAME: &'static str = "ctr";

    fn cmd(&self, args: &[&str]) -> Out {
        run_cmd(&mut self.ctr_command(args), None, CMD_TIMEOUT)
    }

    fn fail(&self, what: &str, out: &Out) -> ! {
        let tail = log_tail(&self.path().join("containerd.log"), 15);
        panic!(
            "{what}\n{}\n{}--- containerd log (last lines) ---\n{}\n(runtime under test: {:?} {})",
            out.describe(),
            runtime_report(self.path()),
            tail,
            self.rt.kind,
            self.rt.binary.display()
        )
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            let ids = self.cleanup_cmd(&["containers", "ls", "-q"]).stdout;
            for id in ids.lines().map(str::trim).filter(|s| !s.is_empty()) {
                let _ = self.cleanup_cmd(&["tasks", "kill", "--all", "--signal", "SIGKILL", id]);
                let _ = self.cleanup_cmd(&["tasks", "delete", "--force", id]);
                let _ = self.cleanup_cmd(&["containers", "delete", id]);
            }
        }
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            if !wait_until(Duration::from_secs(15), || {
                d.try_wait().ok().flatten().is_some()
            }) {
                let _ = d.kill();
            }
            let _ = d.wait();
        }
        let forced = force_cleanup(self.path());
        if !forced.is_empty() {
            eprintln!("cleanup by force in {}:\n{forced}", self.path().display());
            let socks = remove_shim_sockets(&self.path().join("c.sock"), &self.ns, self.path());
            eprintln!("removed sockets of killed shims: {socks:?}");
        }
        let cg = remove_cgroups(&format!("/{}", self.ns));
        let leaked: Vec<_> = cg
            .iter()
            .filter(|p| p.parent().is_some_and(|q| q.ends_with(&self.ns)))
            .collect();
        if !leaked.is_empty() {
            eprintln!("cleanup removed leftover container cgroups: {leaked:?}");
        }
        if let Some(d) = self.dir.take() {
            keep_tempdir(d);
        }
    }
}

#[test]
fn ctr_run_echo_and_exit_codes() {
    skip_unless!(CTRD_BINS);
    let c = Containerd::start();
    let out = c.run_printing(
        &[
            "run",
            "--rm",
            IMAGE,
            "echo1",
            "echo",
            "hello from containerd",
        ],
        0,
    );
    assert_eq!(out.stdout, "hello from containerd\n", "{}", out.describe());
    let out = c.run_printing(
        &[
            "run",
            "--rm",
            IMAGE,
            "exit42",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 42",
        ],
        42,
    );
    assert_eq!(out.stdout, "out\n", "{}", out.describe());
    assert!(out.stderr.contains("err"), "{}", out.describe());
    // (No stdin case: ctr does not close the stdin FIFO at EOF, so `tr` would never finish.)
    let out = c.run_printing(
        &[
            "run",
            "--rm",
            "--env",
            "A=b c",
            "--cwd",
            "/home/hako",
            IMAGE,
            "env1",
            "sh",
            "-c",
            "echo \"$A\"; pwd; id -u",
        ],
        0,
    );
    assert_eq!(out.stdout, "b c\n/home/hako\n0\n", "{}", out.describe());
    // A missing binary fails the start, with the runtime's error in ctr's message.
    let out = c.cmd(&["run", "--rm", IMAGE, "nobin", "/no/such/binary"]);
    if out.ok() {
        c.fail("running a missing binary must fail", &out);
    }
    c.assert_no_container_cgroups();
}

#[test]
fn ctr_tty() {
    skip_unless!(CTRD_BINS);
    if which("script").is_none() {
        eprintln!("SKIP ctr_tty: `script` (util-linux) is needed to give ctr a terminal");
        return;
    }
    let c = Containerd::start();
    let out = c.cmd_in_pty(&[
        "run",
        "--rm",
        "-t",
        IMAGE,
        "tty1",
        "sh",
        "-c",
        "tty; test -t 0 && echo in-tty; exit 3",
    ]);
    let text = out.stdout.replace(['\r', '\0'], "");
    if out.code() != 3 || !text.contains("/dev/pts/") || !text.contains("in-tty") {
        c.fail(&format!("ctr run -t: {text:?}"), &out);
    }
    c.assert_no_container_cgroups();
}

#[test]
fn ctr_detached_exec_ps_pause_kill() {
    skip_unless!(CTRD_BINS);
    let c = Containerd::start();
    // `ctr run` in the foreground returns the task's exit status: run it on a thread.
    let mut fg = c.ctr_command(&[
        "run",
        "--rm",
        IMAGE,
        "bg",
        "sh",
        "-c",
        "trap 'exit 7' TERM; while :; do sleep 0.1; done",
    ]);
    let runner = std::thread::spawn(move || run_cmd(&mut fg, None, CMD_TIMEOUT));
    if !wait_until(Duration::from_secs(60), || c.task_status("bg") == "RUNNING") {
        let out = runner.join().unwrap();
        c.fail("the task never reached RUNNING", &out);
    }
    let out = c.expect_code(
        &[
            "tasks",
            "exec",
            "--exec-id",
            "e1",
            "bg",
            "sh",
            "-c",
            "echo exec-out; cat /proc/1/cmdline | tr '\\0' ' '; exit 4",
        ],
        4,
    );
    assert!(
        out.stdout.starts_with("exec-out\nsh -c trap"),
        "{}",
        out.describe()
    );
    // `ctr tasks ps` asks the runtime for `ps --format json`.
    let out = c.ok(&["tasks", "ps", "bg"]);
    let pids: Vec<u32> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        !pids.is_empty(),
        "tasks ps lists the container's processes\n{}",
        out.describe()
    );
    let init_pid = c.task_pid("bg");
    assert!(
        pids.contains(&init_pid),
        "ps {pids:?} contains init {init_pid}"
    );
    c.ok(&["tasks", "pause", "bg"]);
    assert_eq!(c.task_status("bg"), "PAUSED");
    let freezer = cgroup_dir_of(init_pid, "freezer").expect("freezer cgroup");
    assert_eq!(
        fs::read_to_string(freezer.join("freezer.state"))
            .unwrap_or_default()
            .trim(),
        "FROZEN"
    );
    c.ok(&["tasks", "resume", "bg"]);
    assert_eq!(c.task_status("bg"), "RUNNING");
    // SIGTERM reaches the workload's trap; the exit code is the workload's.
    c.ok(&["tasks", "kill", "--signal", "SIGTERM", "bg"]);
    let out = runner.join().unwrap();
    if out.code() != 7 {
        c.fail(
            "the workload's exit status after SIGTERM (its trap exits 7)",
            &out,
        );
    }
    c.assert_no_container_cgroups();
}

#[test]
fn ctr_limits_caps_readonly() {
    skip_unless!(CTRD_BINS);
    let c = Containerd::start();
    // ctr's default spec mounts no cgroupfs inside: check the limit from the host side.
    let mut fg = c.ctr_command(&[
        "run",
        "--rm",
        "--memory-limit",
        "67108864",
        IMAGE,
        "mem1",
        "sleep",
        "1000",
    ]);
    let runner = std::thread::spawn(move || run_cmd(&mut fg, None, CMD_TIMEOUT));
    if !wait_until(Duration::from_secs(60), || {
        c.task_status("mem1") == "RUNNING"
    }) {
        let out = runner.join().unwrap();
        c.fail("the task never reached RUNNING", &out);
    }
    let pid = c.task_pid("mem1");
    let mem = cgroup_dir_of(pid, "memory").expect("memory cgroup of mem1");
    let limit = fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap_or_default();
    assert_eq!(limit.trim(), "67108864", "{}", mem.display());
    assert!(
        mem.ends_with(format!("{}/mem1", c.ns)),
        "ctr puts the container at /<ns>/<id>: {}",
        mem.display()
    );
    c.ok(&["tasks", "kill", "--signal", "SIGKILL", "mem1"]);
    let out = runner.join().unwrap();
    if out.code() != 137 {
        c.fail("SIGKILL: exit status 137", &out);
    }
    let out = c.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "CAP_CHOWN",
        IMAGE,
        "cap1",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    let eff =
        u64::from_str_radix(out.stdout.split_whitespace().nth(1).unwrap_or("ffff"), 16).unwrap();
    assert_eq!(eff & 1, 0, "CAP_CHOWN dropped\n{}", out.describe());
    assert_ne!(eff, 0, "other default caps kept\n{}", out.describe());
    let out = c.cmd(&["run", "--rm", "--read-only", IMAGE, "ro1", "touch", "/x"]);
    if out.ok() || !out.stderr.contains("Read-only file system") {
        c.fail("--read-only rootfs", &out);
    }
    c.assert_no_container_cgroups();
}

fn backend_case(backend: &str) -> Option<Containerd> {
    let rt = Runtime::from_env();
    if !rt.is_hako() {
        eprintln!(
            "SKIP backend {backend}: the runtime under test is {:?}, not hako",
            rt.kind
        );
        return None;
    }
    if !rt.has_backend(backend) {
        eprintln!("SKIP backend {backend}: not listed by `hako features`");
        return None;
    }
    Some(Containerd::start())
}

fn annotated_cases(c: &Containerd, backend: &str) {
    let ann = format!("io.hako.backend={backend}");
    let out = c.ok(&[
        "run",
        "--rm",
        "--annotation",
        &ann,
        IMAGE,
        "b1",
        "echo",
        "hello from",
        backend,
    ]);
    assert_eq!(
        out.stdout,
        format!("hello from {backend}\n"),
        "{}",
        out.describe()
    );
    c.expect_code(
        &[
            "run",
            "--rm",
            "--annotation",
            &ann,
            IMAGE,
            "b2",
            "sh",
            "-c",
            "exit 42",
        ],
        42,
    );
    c.assert_no_container_cgroups();
}

#[test]
fn ctr_backend_sentry() {
    skip_unless!(CTRD_BINS);
    let Some(c) = backend_case("sentry") else {
        return;
    };
    annotated_cases(&c, "sentry");
}

#[test]
fn ctr_backend_microvm() {
    skip_unless!(CTRD_BINS);
    let Some(c) = backend_case("microvm") else {
        return;
    };
    annotated_cases(&c, "microvm");
}

#[test]
fn ctr_backend_wasm() {
    skip_unless!(CTRD_BINS);
    let Some(c) = backend_case("wasm") else {
        return;
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wasm");
    let Some((name, bytes)) = find_wasm_fixture(&fixtures, c.path()) else {
        eprintln!(
            "SKIP ctr_backend_wasm: no hello module under {}",
            fixtures.display()
        );
        return;
    };
    let dir = c.path().join("wasm-image");
    fs::create_dir_all(&dir).unwrap();
    let archive = build_busybox_archive(&dir, &[("/app/hello.wasm", bytes, 0o755)]);
    // Same tag: replaces the plain busybox image in this containerd.
    c.ok(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        archive.to_str().unwrap(),
    ]);
    for (i, ann) in ["io.hako.backend=wasm", "module.wasm.image/variant=compat"]
        .iter()
        .enumerate()
    {
        let id = format!("w{i}");
        let out = c.cmd(&[
            "run",
            "--rm",
            "--annotation",
            ann,
            IMAGE,
            &id,
            "/app/hello.wasm",
            "x",
        ]);
        if !out.ok() || !wasm_hello_output_ok(&out.stdout, &["x"]) {
            c.fail(&format!("wasm module {name} with annotation {ann}"), &out);
        }
    }
    c.assert_no_container_cgroups();
}
