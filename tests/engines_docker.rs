//! docker driving hako end to end (`docker run --runtime hako`).
//!
//! Each test starts its own `dockerd` (data-root, exec-root, pidfile and API socket in a temp
//! dir; no bridge, no iptables; a daemon.json that registers the runtime as `hako`, as in
//! docs/engines.md), `docker load`s a busybox docker-archive built from the host's
//! busybox-static, and runs containers with `--runtime hako --network none`. dockerd starts its
//! own containerd under the exec-root. The runtime is hako unless `HAKO_E2E_RUNTIME` selects
//! another (runc, crun, a path); it is always registered under the name `hako`.

#[macro_use]
#[path = "support/engines.rs"]
mod engines;

use engines::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOCKER_BINS: [&str; 3] = ["dockerd", "docker", "containerd"];

struct Dockerd {
    dir: Option<tempfile::TempDir>,
    cgroup_parent: String,
    rt: Runtime,
    daemon: Option<Child>,
}

impl Dockerd {
    fn start() -> Dockerd {
        let rt = Runtime::from_env();
        let dir = short_tempdir("dkr");
        let d = dir.path().to_path_buf();
        for sub in ["data", "exec", "client", "image"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let runtime = rt.install(&d, "hako-runtime", &[]);
        // The daemon.json from docs/engines.md (paths differ).
        let config = serde_json::json!({
            "runtimes": {
                "hako": {"path": runtime},
                "hako-sentry": {"path": runtime, "runtimeArgs": ["--backend", "sentry"]},
                "hako-microvm": {"path": runtime, "runtimeArgs": ["--backend", "microvm"]},
            },
            "storage-driver": "vfs",
        });
        fs::write(
            d.join("daemon.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        let log = fs::File::create(d.join("dockerd.log")).unwrap();
        // Keep this daemon's container cgroups apart from every other test's.
        let cgroup_parent = format!("/{}", unique("hkd"));
        let daemon = Command::new("dockerd")
            .env("PATH", full_path())
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .arg("--cgroup-parent")
            .arg(&cgroup_parent)
            .args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let mut k = Dockerd {
            dir: Some(dir),
            rt,
            daemon: Some(daemon),
            cgroup_parent,
        };
        let ready = wait_until(Duration::from_secs(60), || {
            k.daemon
                .as_mut()
                .map(|ch| ch.try_wait().ok().flatten().is_none())
                .unwrap_or(false)
                && run_cmd(&mut k.command(&["version"]), None, Duration::from_secs(10)).ok()
        });
        if !ready {
            panic!(
                "dockerd did not come up\n{}",
                fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
            );
        }
        let archive = build_busybox_archive(&d.join("image"), &[]);
        k.ok(&["load", "-i", archive.to_str().unwrap()]);
        k
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = self.path();
        let mut c = Command::new("docker");
        c.env("PATH", full_path());
        c.env("DOCKER_CONFIG", d.join("client"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()));
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if matches!(args.first().map(String::as_str), Some("run" | "create")) {
            if !args.iter().any(|a| a.starts_with("--runtime")) {
                args.insert(1, "--runtime=hako".into());
            }
            args.insert(1, "--network=none".into());
        }
        c.args(args);
        c
    }

    /// Cleanup commands get a shorter leash: the guard kills what is left anyway.
    fn cleanup_cmd(&self, args: &[&str]) -> Out {
        run_cmd(&mut self.command(args), None, CLEANUP_TIMEOUT)
    }

    fn cmd_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        run_cmd(&mut self.command(args), Some(stdin), CMD_TIMEOUT)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
            .stdout
            .trim()
            .to_string()
    }

    /// Nothing left of the containers this test created and removed: no runtime state
    /// (`<exec-root>/runtime-runc/moby/<id>`), no cgroup (`<cgroup-parent>/<id>`).
    fn assert_clean(&self) {
        let root = self.path().join("exec/runtime-runc/moby");
        let state = runtime_state_left(&root, self.path());
        if !state.is_empty() {
            panic!(
                "runtime state left behind after the containers were removed: {state:?}\n{}",
                runtime_report(self.path())
            );
        }
        let rel = self.cgroup_parent.trim_start_matches('/');
        let left: Vec<PathBuf> = created_ids(self.path())
            .iter()
            .flat_map(|id| {
                [
                    "memory", "pids", "cpu", "freezer", "devices", "blkio", "cpuset",
                ]
                .map(|c| Path::new("/sys/fs/cgroup").join(c).join(rel).join(id))
            })
            .filter(|p| p.exists())
            .collect();
        if !left.is_empty() {
            panic!(
                "cgroups of removed containers left behind: {left:?}\n{}",
                runtime_report(self.path())
            );
        }
    }
}

impl Engine for Dockerd {
    const NAME: &'static str = "docker";

    fn cmd(&self, args: &[&str]) -> Out {
        run_cmd(&mut self.command(args), None, CMD_TIMEOUT)
    }

    fn fail(&self, what: &str, out: &Out) -> ! {
        let tail = log_tail(&self.path().join("dockerd.log"), 15);
        panic!(
            "{what}\n{}\n{}--- dockerd log (last lines) ---\n{}\n(runtime under test: {:?} {})",
            out.describe(),
            runtime_report(self.path()),
            tail,
            self.rt.kind,
            self.rt.binary.display()
        )
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let mut ids = Vec::new();
        if self.daemon.is_some() {
            ids = self
                .cmd(&["ps", "-aq", "--no-trunc"])
                .stdout
                .lines()
                .map(str::to_owned)
                .collect();
            for id in &ids {
                let _ = self.cleanup_cmd(&["rm", "-f", id]);
            }
        }
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            if !wait_until(Duration::from_secs(30), || {
                d.try_wait().ok().flatten().is_some()
            }) {
                let _ = d.kill();
            }
            let _ = d.wait();
        }
        let forced = force_cleanup(self.path());
        if !forced.is_empty() {
            eprintln!("cleanup by force in {}:\n{forced}", self.path().display());
            let address = self.path().join("exec/containerd/containerd.sock");
            let socks = remove_shim_sockets(&address, "moby", self.path());
            eprintln!("removed sockets of killed shims: {socks:?}");
        }
        let cg = remove_cgroups(&self.cgroup_parent);
        let leaked: Vec<_> = cg
            .iter()
            .filter(|p| ids.iter().any(|id| p.ends_with(id)))
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
fn docker_run_echo_exit_stdin() {
    skip_unless!(DOCKER_BINS);
    let k = Dockerd::start();
    let out = k.ok(&["run", "--rm", IMAGE, "echo", "hello from docker"]);
    assert_eq!(out.stdout, "hello from docker\n", "{}", out.describe());
    let out = k.expect_code(
        &[
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 42",
        ],
        42,
    );
    assert_eq!(out.stdout, "out\n", "{}", out.describe());
    assert!(out.stderr.contains("err"), "{}", out.describe());
    let out = k.cmd_stdin(
        &["run", "--rm", "-i", IMAGE, "tr", "a-z", "A-Z"],
        b"through docker\n",
    );
    if out.stdout != "THROUGH DOCKER\n" {
        k.fail("stdin relayed through docker", &out);
    }
    let out = k.ok(&[
        "run",
        "--rm",
        "-e",
        "A=b",
        "-w",
        "/tmp",
        "--user",
        "1000:1000",
        "--hostname",
        "dk",
        IMAGE,
        "sh",
        "-c",
        "echo $A; pwd; id -u; hostname",
    ]);
    assert_eq!(out.stdout, "b\n/tmp\n1000\ndk\n", "{}", out.describe());
    // docker maps a missing binary to 127 when the runtime's error says "no such file or
    // directory" or "executable file not found" as runc's does (crun's wording gets 125).
    let want = if k.rt.kind == Kind::Crun { 125 } else { 127 };
    k.expect_code(&["run", "--rm", IMAGE, "/no/such/binary"], want);
    k.assert_clean();
}

#[test]
fn docker_detached_exec_pause_stop() {
    skip_unless!(DOCKER_BINS);
    let k = Dockerd::start();
    let id = k
        .ok(&[
            "run",
            "-d",
            "--name",
            "bg",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ])
        .stdout
        .trim()
        .to_string();
    assert_eq!(k.inspect("bg", "{{.State.Status}}"), "running");
    assert!(
        created_ids(k.path()).contains(&id),
        "docker created {id} through the runtime under test"
    );
    assert_eq!(k.inspect("bg", "{{.HostConfig.Runtime}}"), "hako");
    let out = k.expect_code(&["exec", "bg", "sh", "-c", "echo exec-out; exit 4"], 4);
    assert_eq!(out.stdout, "exec-out\n", "{}", out.describe());
    let out = k.cmd_stdin(&["exec", "-i", "bg", "cat"], b"exec stdin\n");
    if out.stdout != "exec stdin\n" {
        k.fail("docker exec -i", &out);
    }
    // docker top asks the runtime for `ps --format json`.
    let out = k.ok(&["top", "bg"]);
    assert!(out.stdout.contains("trap"), "{}", out.describe());
    k.ok(&["pause", "bg"]);
    assert_eq!(k.inspect("bg", "{{.State.Status}}"), "paused");
    let pid: u32 = k.inspect("bg", "{{.State.Pid}}").parse().unwrap();
    let freezer = cgroup_dir_of(pid, "freezer").expect("freezer cgroup");
    assert_eq!(
        fs::read_to_string(freezer.join("freezer.state"))
            .unwrap_or_default()
            .trim(),
        "FROZEN"
    );
    k.ok(&["unpause", "bg"]);
    assert_eq!(k.inspect("bg", "{{.State.Status}}"), "running");
    // docker update goes to the runtime's `update --resources -`.
    k.ok(&["update", "--memory", "96m", "--memory-swap", "192m", "bg"]);
    let mem = cgroup_dir_of(pid, "memory").expect("memory cgroup");
    assert_eq!(
        fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap_or_default()
            .trim(),
        (96u64 << 20).to_string()
    );
    let out = k.ok(&["exec", "-t", "bg", "tty"]);
    assert!(
        out.stdout.trim().starts_with("/dev/pts/"),
        "{}",
        out.describe()
    );
    k.ok(&["stop", "-t", "30", "bg"]);
    assert_eq!(k.inspect("bg", "{{.State.ExitCode}}"), "7");
    // restart: a new create/start of the same container.
    k.ok(&["restart", "-t", "30", "bg"]);
    assert_eq!(k.inspect("bg", "{{.State.Status}}"), "running");
    let pid2: u32 = k.inspect("bg", "{{.State.Pid}}").parse().unwrap();
    assert_ne!(pid, pid2, "restart starts a new init");
    k.ok(&["kill", "--signal", "KILL", "bg"]);
    assert_eq!(k.ok(&["wait", "bg"]).stdout.trim(), "137");
    k.ok(&["rm", "bg"]);
    k.assert_clean();
}

#[test]
fn docker_tty_limits_caps_readonly() {
    skip_unless!(DOCKER_BINS);
    let k = Dockerd::start();
    let out = k.ok(&["run", "--rm", "-t", IMAGE, "tty"]);
    assert!(
        out.stdout.trim().starts_with("/dev/pts/"),
        "{}",
        out.describe()
    );
    let out = k.ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "9",
        IMAGE,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(out.stdout, "67108864\n9\n", "{}", out.describe());
    let out = k.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        IMAGE,
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    let eff = u64::from_str_radix(out.stdout.split_whitespace().nth(1).unwrap_or("1"), 16).unwrap();
    assert!(
        eff & 1 == 0 && eff != 0,
        "CAP_CHOWN dropped, others kept: {eff:x}"
    );
    let out = k.cmd(&["run", "--rm", "--read-only", IMAGE, "touch", "/x"]);
    if out.ok() || !out.stderr.contains("Read-only file system") {
        k.fail("--read-only rootfs", &out);
    }
    k.assert_clean();
}

/// A runtime entry per backend (`hako --backend NAME` through daemon.json's runtimeArgs).
fn backend_runtime_entry(backend: &str) {
    let rt = Runtime::from_env();
    if !rt.is_hako() || !rt.has_backend(backend) {
        eprintln!(
            "SKIP docker backend {backend}: runtime {:?} without it in `hako features`",
            rt.kind
        );
        return;
    }
    let k = Dockerd::start();
    let entry = format!("hako-{backend}");
    let out = k.ok(&[
        "run",
        "--rm",
        "--runtime",
        &entry,
        IMAGE,
        "echo",
        "via docker",
        backend,
    ]);
    assert_eq!(
        out.stdout,
        format!("via docker {backend}\n"),
        "{}",
        out.describe()
    );
    k.expect_code(
        &[
            "run",
            "--rm",
            "--runtime",
            &entry,
            IMAGE,
            "sh",
            "-c",
            "exit 42",
        ],
        42,
    );
    k.assert_clean();
}

#[test]
fn docker_backend_sentry_runtime_entry() {
    skip_unless!(DOCKER_BINS);
    backend_runtime_entry("sentry");
}

#[test]
fn docker_backend_microvm_runtime_entry() {
    skip_unless!(DOCKER_BINS);
    backend_runtime_entry("microvm");
}
