//! podman driving hako end to end.
//!
//! Each test starts podman with `--root/--runroot/--tmpdir` in its own temp dir, a
//! containers.conf that fits this machine (see docs/engines.md), the vfs storage driver, the
//! cgroupfs manager and the file events backend, loads a busybox image built from the host's
//! busybox-static, and runs containers with `--network none` under a per-test cgroup parent.
//! The runtime is hako unless `HAKO_E2E_RUNTIME` selects another (runc, crun, a path).

#[macro_use]
#[path = "support/engines.rs"]
mod engines;

use engines::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PODMAN_BINS: [&str; 2] = ["podman", "conmon"];

struct Podman {
    dir: Option<tempfile::TempDir>,
    rt: Runtime,
    runtime: PathBuf,
    cgroup_parent: String,
}

impl Podman {
    fn new() -> Podman {
        Self::with_runtime_flags(&[])
    }

    /// `flags` are global flags given to the runtime on every call (e.g. `--backend sentry`).
    fn with_runtime_flags(flags: &[&str]) -> Podman {
        let rt = Runtime::from_env();
        let dir = short_tempdir("podman");
        let d = dir.path();
        for sub in ["root", "runroot", "tmp", "net", "image"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        // The containers.conf from docs/engines.md.
        fs::write(
            d.join("containers.conf"),
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .unwrap();
        fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                d.join("root").display(),
                d.join("runroot").display()
            ),
        )
        .unwrap();
        let runtime = rt.install(d, "hako-runtime", flags);
        let p = Podman {
            cgroup_parent: format!("/{}", unique("hkp")),
            dir: Some(dir),
            rt,
            runtime,
        };
        let archive = build_busybox_archive(&p.path().join("image"), &[]);
        p.ok(&["load", "-i", archive.to_str().unwrap()]);
        p
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = self.path();
        let mut c = Command::new("podman");
        // conmon writes its `oom` marker relative to its working directory after an OOM kill:
        // keep that in the test's temp dir, not in the repository.
        c.current_dir(d);
        c.env("PATH", full_path());
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("TMPDIR", d.join("tmp"))
            .arg("--runtime")
            .arg(&self.runtime)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("net"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if matches!(args.first().map(String::as_str), Some("run" | "create")) {
            // Keep this test's cgroups apart from every other test's.
            args.insert(1, format!("--cgroup-parent={}", self.cgroup_parent));
            // No network unless the test asks for one (`--network=...` or a published port).
            if !args.iter().any(|a| a.starts_with("--network") || a == "-p") {
                args.insert(1, "--network=none".into());
            }
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

    /// After every container is gone: nothing of them may be left in the cgroup tree (the
    /// runtime's `delete` removes the container cgroup; conmon's own cgroup is podman's).
    fn assert_no_container_cgroups(&self) {
        let rel = self.cgroup_parent.trim_start_matches('/');
        let mut left = Vec::new();
        for ctrl in [
            "memory", "pids", "cpu", "freezer", "devices", "blkio", "cpuset",
        ] {
            let top = Path::new("/sys/fs/cgroup").join(ctrl).join(rel);
            if let Ok(rd) = fs::read_dir(&top) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if e.path().is_dir() && name.starts_with("libpod-") {
                        left.push(e.path());
                    }
                }
            }
        }
        // podman passes no --root: the runtime keeps its state in its default root.
        let state_root = match self.rt.kind {
            Kind::Hako => PathBuf::from(std::env::var("HAKO_ROOT").unwrap_or("/run/hako".into())),
            Kind::Runc => PathBuf::from("/run/runc"),
            Kind::Crun => PathBuf::from("/run/crun"),
            Kind::Other => PathBuf::from("/nonexistent"),
        };
        let state = runtime_state_left(&state_root, self.path());
        if !state.is_empty() {
            panic!(
                "runtime state left behind after the containers were removed: {state:?}\n{}",
                runtime_report(self.path())
            );
        }
        if !left.is_empty() {
            panic!(
                "container cgroups left behind after the containers were removed: {left:?}\n{}",
                runtime_report(self.path())
            );
        }
    }
}

impl Engine for Podman {
    const NAME: &'static str = "podman";

    fn cmd(&self, args: &[&str]) -> Out {
        run_cmd(&mut self.command(args), None, CMD_TIMEOUT)
    }

    fn fail(&self, what: &str, out: &Out) -> ! {
        panic!(
            "{what}\n{}\n{}\n(runtime under test: {:?} {})",
            out.describe(),
            runtime_report(self.path()),
            self.rt.kind,
            self.rt.binary.display()
        )
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let out = self.cleanup_cmd(&["rm", "--all", "--force", "--time", "0"]);
        if !out.ok() {
            eprintln!("cleanup: {}", out.describe());
        }
        let forced = force_cleanup(self.path());
        if !forced.is_empty() {
            eprintln!("cleanup by force in {}:\n{forced}", self.path().display());
        }
        let cg = remove_cgroups(&self.cgroup_parent);
        let leaked: Vec<_> = cg
            .iter()
            .filter(|p| p.to_string_lossy().contains("libpod-"))
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
fn podman_echo() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let out = p.ok(&["run", "--rm", IMAGE, "echo", "hello from podman"]);
    assert_eq!(out.stdout, "hello from podman\n", "{}", out.describe());
    // stderr of the workload reaches podman's stderr, stdout stays clean.
    let out = p.ok(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo to-out; echo to-err >&2",
    ]);
    assert_eq!(out.stdout, "to-out\n", "{}", out.describe());
    assert!(out.stderr.contains("to-err"), "{}", out.describe());
    p.assert_no_container_cgroups();
}

#[test]
fn podman_exit_codes() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    p.expect_code(&["run", "--rm", IMAGE, "sh", "-c", "exit 42"], 42);
    p.expect_code(&["run", "--rm", IMAGE, "false"], 1);
    // Killed by a signal from outside (pid 1 cannot SIGKILL itself): 128 + 9.
    p.ok(&["run", "-d", "--name", "k9", IMAGE, "sleep", "1000"]);
    p.ok(&["kill", "--signal", "9", "k9"]);
    assert_eq!(p.ok(&["wait", "k9"]).stdout.trim(), "137");
    p.ok(&["rm", "k9"]);
    // podman maps "no such file or directory"/"executable file not found" from the runtime to 127.
    let out = p.expect_code(&["run", "--rm", IMAGE, "/no/such/binary"], 127);
    assert!(!out.stderr.is_empty(), "{}", out.describe());
    p.assert_no_container_cgroups();
}

#[test]
fn podman_stdin_env_workdir_hostname() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let out = p.cmd_stdin(
        &["run", "--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z"],
        b"piped through\n",
    );
    if out.stdout != "PIPED THROUGH\n" {
        p.fail("stdin not relayed", &out);
    }
    let out = p.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi there",
        "-w",
        "/home/hako",
        "--hostname",
        "boxy",
        IMAGE,
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; hostname",
    ]);
    assert_eq!(
        out.stdout,
        "hi there\n/home/hako\nboxy\n",
        "{}",
        out.describe()
    );
}

#[test]
fn podman_tty() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let out = p.ok(&[
        "run",
        "--rm",
        "-t",
        IMAGE,
        "sh",
        "-c",
        "tty; test -t 0 && test -t 1 && echo both-tty",
    ]);
    let text = out.stdout.replace('\r', "");
    let mut lines = text.lines();
    let tty = lines.next().unwrap_or_default();
    assert!(
        tty.starts_with("/dev/pts/"),
        "tty: {tty:?}\n{}",
        out.describe()
    );
    assert_eq!(lines.next(), Some("both-tty"), "{}", out.describe());
    // Without -t there is no terminal.
    let out = p.expect_code(&["run", "--rm", IMAGE, "tty"], 1);
    assert!(out.stdout.contains("not a tty"), "{}", out.describe());
}

#[test]
fn podman_exec() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    p.ok(&["run", "-d", "--name", "ex", IMAGE, "sleep", "1000"]);
    let out = p.ok(&[
        "exec",
        "ex",
        "sh",
        "-c",
        "echo exec-ok; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert_eq!(out.stdout, "exec-ok\nsleep 1000 ", "{}", out.describe());
    p.expect_code(&["exec", "ex", "sh", "-c", "exit 5"], 5);
    let out = p.ok(&["exec", "--user", "1000:1000", "ex", "id"]);
    assert!(
        out.stdout.starts_with("uid=1000(hako) gid=1000(hako)"),
        "{}",
        out.describe()
    );
    let out = p.ok(&[
        "exec",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "ex",
        "sh",
        "-c",
        "echo $X; pwd",
    ]);
    assert_eq!(out.stdout, "y\n/tmp\n", "{}", out.describe());
    let out = p.ok(&["exec", "-t", "ex", "tty"]);
    assert!(
        out.stdout.trim().starts_with("/dev/pts/"),
        "{}",
        out.describe()
    );
    let out = p.cmd_stdin(&["exec", "-i", "ex", "cat"], b"into exec\n");
    if out.stdout != "into exec\n" {
        p.fail("exec -i stdin not relayed", &out);
    }
    // The exec'd process shares the container's pid namespace: it sees sleep as pid 1 and itself.
    let out = p.ok(&["exec", "ex", "ps", "-o", "pid,comm"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep"]),
        "{}",
        out.describe()
    );
    p.ok(&["rm", "-f", "-t", "0", "ex"]);
    p.assert_no_container_cgroups();
}

#[test]
fn podman_memory_limit() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let out = p.ok(&["run", "--rm", "--memory", "64m", IMAGE, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
    assert_eq!(out.stdout.trim(), "67108864", "{}", out.describe());
    // Enforced: a child that eats memory is OOM-killed (128 + SIGKILL) in the container's cgroup.
    let out = p.cmd(&[
        "run",
        "--rm",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        IMAGE,
        "sh",
        "-c",
        "tail /dev/zero; echo rc=$?; grep -E '^oom_kill ' /sys/fs/cgroup/memory/memory.oom_control",
    ]);
    if !out.ok() || !out.stdout.contains("rc=137") || !out.stdout.contains("oom_kill 1") {
        p.fail(
            "expected the OOM killer to kill the memory hog inside the limit",
            &out,
        );
    }
    p.assert_no_container_cgroups();
}

#[test]
fn podman_pids_limit() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let out = p.cmd(&[
        "run", "--rm", "--pids-limit", "5", IMAGE, "sh", "-c",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait",
    ]);
    assert_eq!(out.stdout.lines().next(), Some("5"), "{}", out.describe());
    if out.ok() || !out.stderr.contains("can't fork") {
        p.fail(
            "the pids limit was not enforced (expected `can't fork`)",
            &out,
        );
    }
    p.assert_no_container_cgroups();
}

/// CapEff from /proc/self/status as a number.
fn cap_eff(status: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .expect("CapEff line");
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn podman_cap_drop() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    const CAP_CHOWN: u64 = 1 << 0;
    const CAP_NET_RAW: u64 = 1 << 13;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    let def = cap_eff(
        &p.ok(&["run", "--rm", IMAGE, "cat", "/proc/self/status"])
            .stdout,
    );
    assert!(
        def & CAP_CHOWN != 0,
        "podman's default set has CAP_CHOWN: {def:x}"
    );
    assert!(
        def & CAP_SYS_ADMIN == 0,
        "podman's default set has no CAP_SYS_ADMIN: {def:x}"
    );
    let out = p.cmd(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        "--cap-drop",
        "NET_RAW",
        IMAGE,
        "sh",
        "-c",
        "grep Cap /proc/self/status; touch /tmp/f; chown 1000 /tmp/f",
    ]);
    let eff = cap_eff(&out.stdout);
    assert!(
        eff & (CAP_CHOWN | CAP_NET_RAW) == 0,
        "dropped caps still effective: {eff:x}\n{}",
        out.describe()
    );
    assert_eq!(eff, def & !(CAP_CHOWN | CAP_NET_RAW), "{}", out.describe());
    if out.ok() || !out.stderr.contains("Operation not permitted") {
        p.fail("chown should fail without CAP_CHOWN", &out);
    }
    let out = p.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "all",
        IMAGE,
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(cap_eff(&out.stdout), 0, "{}", out.describe());
    // no_new_privileges comes with --security-opt.
    let out = p.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        IMAGE,
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(out.stdout.contains('1'), "{}", out.describe());
}

#[test]
fn podman_read_only() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let out = p.cmd(&["run", "--rm", "--read-only", IMAGE, "touch", "/newfile"]);
    if out.ok() || !out.stderr.contains("Read-only file system") {
        p.fail("the root filesystem should be read-only", &out);
    }
    // podman's --read-only keeps /tmp (tmpfs) writable.
    let out = p.ok(&[
        "run",
        "--rm",
        "--read-only",
        IMAGE,
        "sh",
        "-c",
        "echo x > /tmp/ok && cat /tmp/ok",
    ]);
    assert_eq!(out.stdout, "x\n", "{}", out.describe());
    // Without --read-only the root is writable.
    p.ok(&["run", "--rm", IMAGE, "touch", "/newfile"]);
}

#[test]
fn podman_user() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let out = p.ok(&["run", "--rm", "--user", "1000:1000", IMAGE, "id"]);
    assert!(
        out.stdout.starts_with("uid=1000(hako) gid=1000(hako)"),
        "{}",
        out.describe()
    );
    let out = p.ok(&[
        "run",
        "--rm",
        "--user",
        "nobody",
        IMAGE,
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    assert_eq!(out.stdout, "65534\n65534\n", "{}", out.describe());
    let out = p.ok(&[
        "run",
        "--rm",
        "--user",
        "1000",
        "--group-add",
        "65534",
        IMAGE,
        "id",
        "-G",
    ]);
    let groups: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(
        groups.contains(&"1000") && groups.contains(&"65534"),
        "{}",
        out.describe()
    );
    // A non-root user cannot write to / (owned by root, 0755).
    let out = p.cmd(&["run", "--rm", "--user", "1000", IMAGE, "touch", "/x"]);
    if out.ok() {
        p.fail("uid 1000 must not be able to write to /", &out);
    }
}

#[test]
fn podman_pause_unpause() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    p.ok(&[
        "run",
        "-d",
        "--name",
        "pz",
        IMAGE,
        "sh",
        "-c",
        "while :; do date +%s%N > /tmp/t; sleep 0.05; done",
    ]);
    let pid: u32 = p.inspect("pz", "{{.State.Pid}}").parse().expect("pid");
    p.ok(&["pause", "pz"]);
    assert_eq!(p.inspect("pz", "{{.State.Status}}"), "paused");
    let freezer = cgroup_dir_of(pid, "freezer").expect("freezer cgroup of the container");
    let state = fs::read_to_string(freezer.join("freezer.state")).unwrap_or_default();
    assert_eq!(state.trim(), "FROZEN", "freezer {}", freezer.display());
    // A frozen task sleeps in the refrigerator: it makes no progress.
    let before = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let utime = |s: &str| {
        s.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(11)
            .map(str::to_owned)
    };
    assert_eq!(
        utime(&before),
        utime(&after),
        "a paused container's init must not run"
    );
    p.ok(&["unpause", "pz"]);
    assert_eq!(p.inspect("pz", "{{.State.Status}}"), "running");
    let state = fs::read_to_string(freezer.join("freezer.state")).unwrap_or_default();
    assert_eq!(state.trim(), "THAWED");
    let a = p.ok(&["exec", "pz", "cat", "/tmp/t"]).stdout;
    assert!(
        wait_until(Duration::from_secs(20), || p
            .ok(&["exec", "pz", "cat", "/tmp/t"])
            .stdout
            != a),
        "no progress after unpause"
    );
    p.ok(&["rm", "-f", "-t", "0", "pz"]);
    p.assert_no_container_cgroups();
}

#[test]
fn podman_stop_and_kill() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    // SIGTERM is delivered: the workload's trap decides the exit code.
    p.ok(&[
        "run",
        "-d",
        "--name",
        "st",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 7' TERM; while :; do sleep 0.1; done",
    ]);
    p.ok(&["stop", "-t", "30", "st"]);
    assert_eq!(p.inspect("st", "{{.State.Status}}"), "exited");
    assert_eq!(p.inspect("st", "{{.State.ExitCode}}"), "7");
    // A pid 1 without a handler ignores SIGTERM: stop escalates to SIGKILL.
    p.ok(&["run", "-d", "--name", "st2", IMAGE, "sleep", "1000"]);
    p.ok(&["stop", "-t", "1", "st2"]);
    assert_eq!(p.inspect("st2", "{{.State.ExitCode}}"), "137");
    // kill with a named signal.
    p.ok(&[
        "run",
        "-d",
        "--name",
        "k",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 3' USR1; while :; do sleep 0.1; done",
    ]);
    p.ok(&["kill", "--signal", "USR1", "k"]);
    assert_eq!(p.ok(&["wait", "k"]).stdout.trim(), "3");
    // restart a stopped container (create+start again on the same name).
    p.ok(&["start", "st"]);
    assert_eq!(p.inspect("st", "{{.State.Status}}"), "running");
    p.ok(&["rm", "-f", "-t", "0", "st", "st2", "k"]);
    p.assert_no_container_cgroups();
}

/// hako registered by name in containers.conf (`[engine.runtimes]`), as docs/engines.md shows,
/// instead of `--runtime <path>`.
#[test]
fn podman_runtime_registered_in_containers_conf() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let conf = p.path().join("containers.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text = text.replace("[engine]\n", "[engine]\nruntime = \"hako\"\n");
    text.push_str(&format!(
        "\n[engine.runtimes]\nhako = [\"{}\"]\n",
        p.runtime.display()
    ));
    let named = p.path().join("containers-named.conf");
    fs::write(&named, text).unwrap();
    let mut c = p.command(&["run", "--rm", IMAGE, "sh", "-c", "echo by-name; exit 3"]);
    // Same command without `--runtime <path>`: podman picks `hako` from the config.
    let args: Vec<std::ffi::OsString> = c.get_args().map(|a| a.to_owned()).collect();
    let mut cmd = Command::new("podman");
    cmd.env("PATH", full_path());
    cmd.env("CONTAINERS_CONF", &named)
        .env("CONTAINERS_STORAGE_CONF", p.path().join("storage.conf"));
    let mut skip = 0;
    for a in args {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if a == "--runtime" {
            skip = 1;
            continue;
        }
        cmd.arg(a);
    }
    c = cmd;
    let out = run_cmd(&mut c, None, CMD_TIMEOUT);
    if out.code() != 3 || out.stdout != "by-name\n" {
        p.fail("podman with hako registered in containers.conf", &out);
    }
    let trace = fs::read_to_string(p.path().join("runtime.trace")).unwrap_or_default();
    assert!(
        trace.lines().any(|l| l.contains("create")),
        "podman called the registered runtime:\n{trace}"
    );
}

#[test]
fn podman_create_start_attach_logs() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    p.ok(&[
        "create",
        "--name",
        "cs",
        IMAGE,
        "sh",
        "-c",
        "echo created-then-started; exit 9",
    ]);
    assert_eq!(p.inspect("cs", "{{.State.Status}}"), "created");
    let out = p.cmd(&["start", "--attach", "cs"]);
    assert_eq!(out.code(), 9, "{}", out.describe());
    assert!(
        out.stdout.contains("created-then-started"),
        "{}",
        out.describe()
    );
    let out = p.ok(&["logs", "cs"]);
    assert!(
        out.stdout.contains("created-then-started"),
        "{}",
        out.describe()
    );
    p.ok(&["rm", "cs"]);
    p.assert_no_container_cgroups();
}

// ---------------------------------------------------------------------------------------------
// Other hako backends through podman: each case runs when hako reports that backend in
// `hako features`, and says why when it does not.
// ---------------------------------------------------------------------------------------------

fn backend_case(backend: &str) -> Option<Podman> {
    let rt = Runtime::from_env();
    if !rt.is_hako() {
        eprintln!(
            "SKIP backend {backend}: the runtime under test is {:?}, not hako",
            rt.kind
        );
        return None;
    }
    if !rt.has_backend(backend) {
        let f = rt.direct(&["features"]);
        eprintln!(
            "SKIP backend {backend}: not listed by `hako features`\n{}",
            f.describe()
        );
        return None;
    }
    Some(Podman::new())
}

fn annotated_busybox_cases(p: &Podman, backend: &str) {
    let ann = format!("io.hako.backend={backend}");
    let out = p.ok(&[
        "run",
        "--rm",
        "--annotation",
        &ann,
        IMAGE,
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
    p.expect_code(
        &[
            "run",
            "--rm",
            "--annotation",
            &ann,
            IMAGE,
            "sh",
            "-c",
            "exit 42",
        ],
        42,
    );
    let out = p.cmd_stdin(
        &["run", "--rm", "-i", "--annotation", &ann, IMAGE, "cat"],
        b"stdin ok\n",
    );
    if out.stdout != "stdin ok\n" {
        p.fail(&format!("stdin through the {backend} backend"), &out);
    }
    let out = p.ok(&[
        "run",
        "--rm",
        "--annotation",
        &ann,
        "-e",
        "V=1",
        IMAGE,
        "sh",
        "-c",
        "echo $V; ls / | grep -c bin",
    ]);
    assert_eq!(out.stdout, "1\n1\n", "{}", out.describe());
    p.assert_no_container_cgroups();
}

#[test]
fn podman_backend_sentry() {
    skip_unless!(PODMAN_BINS);
    let Some(p) = backend_case("sentry") else {
        return;
    };
    annotated_busybox_cases(&p, "sentry");
    // `podman run --read-only` (issue 10): the root is read-only inside the sentry too (it used to
    // be bound read-write over the image), while podman's tmpfs mounts (/tmp, /run) stay writable.
    let out = p.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--annotation",
        "io.hako.backend=sentry",
        IMAGE,
        "sh",
        "-c",
        "echo x > /etc/evil; echo rc=$?; echo y > /tmp/t && echo tmp-ok",
    ]);
    assert_eq!(out.stdout, "rc=1\ntmp-ok\n", "{}", out.describe());
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.describe()
    );
    // `podman top` (issue 10): the workload has a pid namespace of its own, and podman lists the
    // sandbox's processes by their virtual pids, not the host's process table.
    p.ok(&[
        "run",
        "-d",
        "--name",
        "stop",
        "--annotation",
        "io.hako.backend=sentry",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let out = p.ok(&["top", "stop", "pid", "args"]);
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [vec!["1", "sleep", "1000"]], "{}", out.describe());
    p.ok(&["rm", "-f", "-t", "0", "stop"]);
}

/// `podman exec` into a sentry container (issue 13): the process joins the sandbox's kernel
/// (the workload is its pid 1), with exit codes, --user, -e, -w, stdin and a terminal.
#[test]
fn podman_backend_sentry_exec() {
    skip_unless!(PODMAN_BINS);
    let Some(p) = backend_case("sentry") else {
        return;
    };
    p.ok(&[
        "run",
        "-d",
        "--name",
        "sx",
        "--annotation",
        "io.hako.backend=sentry",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let out = p.ok(&[
        "exec",
        "sx",
        "sh",
        "-c",
        "echo exec-ok; uname -r; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert_eq!(
        out.stdout,
        "exec-ok\n4.4.0-hako-sentry\nsleep 1000 ",
        "{}",
        out.describe()
    );
    p.expect_code(&["exec", "sx", "sh", "-c", "exit 5"], 5);
    let out = p.ok(&["exec", "--user", "1000:1000", "sx", "id"]);
    assert!(
        out.stdout.starts_with("uid=1000(hako) gid=1000(hako)"),
        "{}",
        out.describe()
    );
    let out = p.ok(&[
        "exec",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "sx",
        "sh",
        "-c",
        "echo $X; pwd",
    ]);
    assert_eq!(out.stdout, "y\n/tmp\n", "{}", out.describe());
    let out = p.cmd_stdin(&["exec", "-i", "sx", "cat"], b"into exec\n");
    if out.stdout != "into exec\n" {
        p.fail("exec -i stdin not relayed by the sentry", &out);
    }
    // `podman exec -t` (and -it): a terminal of the sandbox.
    let out = p.ok(&[
        "exec",
        "-t",
        "sx",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo both-tty",
    ]);
    assert_eq!(
        out.stdout.replace('\r', ""),
        "both-tty\n",
        "{}",
        out.describe()
    );
    let out = p.cmd_stdin(
        &["exec", "-it", "sx", "sh", "-c", "test -t 0 && echo it-tty"],
        b"",
    );
    assert!(out.stdout.contains("it-tty"), "{}", out.describe());
    // The exec'd process shares the sandbox's pid namespace: sleep is pid 1. (Its comm reads
    // "busybox" under the sentry, which execs the applet's resolved path, so busybox's ps
    // shows "{busybox} sleep 1000": the arguments are what is compared.)
    let out = p.ok(&["exec", "sx", "ps", "-o", "pid,args"]);
    assert!(
        out.stdout.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&"1") && w.ends_with(&["sleep", "1000"])
        }),
        "{}",
        out.describe()
    );
    // A program that is not there: podman's "not found" exit code (127), as with runc (podman
    // reads the runtime's "no such file or directory").
    let out = p.cmd(&["exec", "sx", "/no/such/program"]);
    assert_eq!(out.code(), 127, "{}", out.describe());
    p.ok(&["rm", "-f", "-t", "0", "sx"]);
    p.assert_no_container_cgroups();
}

#[test]
fn podman_backend_microvm() {
    skip_unless!(PODMAN_BINS);
    let Some(p) = backend_case("microvm") else {
        return;
    };
    annotated_busybox_cases(&p, "microvm");
    // podman's containers have no network here (--network=none), so they boot from a template
    // (io.hako.microvm.boot defaults to snapshot): the runtime's cache holds one.
    let root = PathBuf::from(std::env::var("HAKO_ROOT").unwrap_or("/run/hako".into()));
    let templates: Vec<PathBuf> = fs::read_dir(root.join("microvm-cache/templates"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        templates.iter().any(|t| t.join("manifest.json").is_file()),
        "no microvm template in {}",
        root.display()
    );
}

/// The guest kernel's release, from the `.config` kept next to the cached vmlinux.
fn guest_kernel_release() -> Option<String> {
    let k = fs::canonicalize("/var/cache/hako/kernels/vmlinux").ok()?;
    let cfg = fs::read_to_string(format!("{}.config", k.display())).ok()?;
    cfg.lines()
        .find_map(|l| {
            l.strip_prefix("# Linux/")
                .and_then(|r| r.strip_suffix(" Kernel Configuration"))
        })
        .and_then(|r| r.split_whitespace().nth(1))
        .map(str::to_string)
}

/// `hako --backend microvm` registered as podman's runtime (what an engine's `hako-vm` entry
/// is): bundles without a hako annotation run in a microVM; `podman exec` reaches into it.
#[test]
fn podman_registered_microvm_runtime_and_exec() {
    skip_unless!(PODMAN_BINS);
    if backend_case("microvm").is_none() {
        return;
    }
    let Some(release) = guest_kernel_release() else {
        eprintln!("SKIP: no guest kernel config next to /var/cache/hako/kernels/vmlinux");
        return;
    };
    let p = Podman::with_runtime_flags(&["--backend", "microvm"]);
    let out = p.ok(&["run", "--rm", IMAGE, "uname", "-r"]);
    assert_eq!(out.stdout.trim(), release, "{}", out.describe());

    p.ok(&["run", "-d", "--name", "vmx", IMAGE, "sleep", "600"]);
    let out = p.cmd(&[
        "exec",
        "vmx",
        "sh",
        "-c",
        "echo exec in $(uname -r); ls /proc/1/ns >/dev/null; exit 3",
    ]);
    assert_eq!(out.code(), 3, "{}", out.describe());
    assert_eq!(
        out.stdout,
        format!("exec in {release}\n"),
        "{}",
        out.describe()
    );
    let out = p.cmd_stdin(&["exec", "-i", "vmx", "cat"], b"exec stdin ok\n");
    if out.stdout != "exec stdin ok\n" {
        p.fail("stdin through podman exec into a microVM", &out);
    }
    let out = p.ok(&[
        "exec",
        "-u",
        "65534",
        "-e",
        "X=y",
        "vmx",
        "sh",
        "-c",
        "echo $(id -u) $X",
    ]);
    assert_eq!(out.stdout, "65534 y\n", "{}", out.describe());
    p.ok(&["rm", "--force", "--time", "0", "vmx"]);
    p.assert_no_container_cgroups();
    drop(p);

    // The same through podman's own flag: `--runtime-flag backend=microvm` reaches hako as
    // `--backend=microvm` on every call.
    let p = Podman::new();
    let parent = format!("--cgroup-parent={}", p.cgroup_parent);
    let out = p.ok(&[
        "--runtime-flag",
        "backend=microvm",
        "run",
        "--network=none",
        &parent,
        "--rm",
        IMAGE,
        "uname",
        "-r",
    ]);
    assert_eq!(out.stdout.trim(), release, "{}", out.describe());
    p.assert_no_container_cgroups();
}

#[test]
fn podman_backend_wasm() {
    skip_unless!(PODMAN_BINS);
    let Some(p) = backend_case("wasm") else {
        return;
    };
    // The wasm helper's hello module (tests/fixtures/wasm/hello.wat, compiled with wat2wasm)
    // copied into the image: it prints a greeting and then its arguments, one per line.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wasm");
    let module = find_wasm_fixture(&fixtures, p.path());
    let Some((name, bytes)) = module else {
        eprintln!(
            "SKIP backend wasm: no hello module under {}",
            fixtures.display()
        );
        return;
    };
    let dir = p.path().join("wasm-image");
    fs::create_dir_all(&dir).unwrap();
    let archive = build_busybox_archive(&dir, &[("/app/hello.wasm", bytes, 0o755)]);
    // Same tag: replaces the plain busybox image in this podman's store.
    p.ok(&["load", "-i", archive.to_str().unwrap()]);
    for ann in [
        "io.hako.backend=wasm",
        "run.oci.handler=wasm",
        "module.wasm.image/variant=compat",
    ] {
        let out = p.cmd(&[
            "run",
            "--rm",
            "--annotation",
            ann,
            IMAGE,
            "/app/hello.wasm",
            "arg one",
            "two",
        ]);
        if !out.ok() || !wasm_hello_output_ok(&out.stdout, &["arg one", "two"]) {
            p.fail(&format!("wasm module {name} with annotation {ann}"), &out);
        }
    }
    // Chosen by the module's magic alone.
    let out = p.cmd(&["run", "--rm", IMAGE, "/app/hello.wasm"]);
    if !out.ok() || !wasm_hello_output_ok(&out.stdout, &[]) {
        p.fail(
            &format!("wasm module {name} chosen by its \\0asm magic"),
            &out,
        );
    }
    // A wasi/wasm32 image (module as entrypoint, variant=compat), as users pull them:
    // built offline by tests/fixtures/make-wasm-image.sh and copied into this podman's store.
    let out_dir = p.path().join("wasi-image");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make-wasm-image.sh");
    let made = std::process::Command::new("sh")
        .arg(&script)
        .arg(&out_dir)
        .output()
        .expect("run make-wasm-image.sh");
    assert!(
        made.status.success(),
        "make-wasm-image.sh: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let store = format!(
        "containers-storage:[vfs@{}+{}]localhost/hako-wasm-hello:latest",
        p.path().join("root").display(),
        p.path().join("runroot").display()
    );
    let copied = std::process::Command::new("skopeo")
        .args([
            "copy",
            "-q",
            &format!("oci:{}:latest", out_dir.join("layout").display()),
            &store,
        ])
        .output()
        .expect("run skopeo");
    assert!(
        copied.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let out = p.cmd(&[
        "run",
        "--rm",
        "--platform",
        "wasi/wasm32",
        "localhost/hako-wasm-hello:latest",
        "one",
        "two",
    ]);
    if !out.ok() || !wasm_hello_output_ok(&out.stdout, &["one", "two"]) {
        p.fail("podman run --platform wasi/wasm32 of a wasm image", &out);
    }
}

/// The harness's own check that the image is built from a static busybox.
#[test]
fn harness_static_elf_check() {
    let ls = which("ls").expect("ls");
    assert!(
        !is_static_elf(&ls),
        "{} is dynamically linked on Debian",
        ls.display()
    );
    assert!(!is_static_elf(Path::new("/etc/passwd")), "not an ELF file");
    let bb = Path::new("/usr/bin/busybox");
    if bb.exists() {
        assert!(
            is_static_elf(bb),
            "busybox-static's /usr/bin/busybox is static"
        );
    }
}

/// `podman update` goes to the runtime's `update --resources`: the new limits land in the
/// container's cgroup.
#[test]
fn podman_update_resources() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    p.ok(&[
        "run", "-d", "--name", "up", "--memory", "64m", IMAGE, "sleep", "1000",
    ]);
    let pid: u32 = p.inspect("up", "{{.State.Pid}}").parse().expect("pid");
    let mem = cgroup_dir_of(pid, "memory").expect("memory cgroup");
    let read = |f: &str| {
        fs::read_to_string(mem.join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.limit_in_bytes"), "67108864");
    p.ok(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "192m",
        "--cpu-shares",
        "512",
        "up",
    ]);
    assert_eq!(read("memory.limit_in_bytes"), (96u64 << 20).to_string());
    let cpu = cgroup_dir_of(pid, "cpu").expect("cpu cgroup");
    let shares = fs::read_to_string(cpu.join("cpu.shares")).unwrap_or_default();
    assert_eq!(shares.trim(), "512", "{}", cpu.display());
    p.ok(&["rm", "-f", "-t", "0", "up"]);
    p.assert_no_container_cgroups();
}

/// A bad hako annotation makes the create fail with hako's one-line error in podman's message,
/// and leaves nothing behind (no runtime state, no container cgroup).
#[test]
fn podman_bad_annotation_fails_cleanly() {
    skip_unless!(PODMAN_BINS);
    if !Runtime::from_env().is_hako() {
        eprintln!("SKIP podman_bad_annotation_fails_cleanly: io.hako.* annotations are hako's");
        return;
    }
    let p = Podman::new();
    for ann in ["io.hako.backend=no-such-backend", "io.hako.no-such-knob=1"] {
        let out = p.cmd(&["run", "--rm", "--annotation", ann, IMAGE, "true"]);
        let key = ann.split('=').next().unwrap();
        if out.ok() || !out.stderr.contains(key.trim_start_matches("io.hako.")) {
            p.fail(
                &format!("annotation {ann} must be refused, naming it"),
                &out,
            );
        }
    }
    p.assert_no_container_cgroups();
}

/// podman's default seccomp profile is installed (filter mode), `seccomp=unconfined` installs none,
/// and a custom profile's errno reaches the workload.
#[test]
fn podman_seccomp() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let mode = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[IMAGE, "grep", "^Seccomp:", "/proc/self/status"]);
        let out = p.ok(&a);
        out.stdout
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        mode(&[]),
        "2",
        "podman's default profile puts the workload in filter mode"
    );
    assert_eq!(mode(&["--security-opt", "seccomp=unconfined"]), "0");
    let profile = p.path().join("deny-mkdir.json");
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
             {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = p.cmd(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        IMAGE,
        "mkdir",
        "/tmp/d",
    ]);
    if out.ok() || !out.stderr.contains("Function not implemented") {
        p.fail("mkdir must fail with the profile's errno 38 (ENOSYS)", &out);
    }
    p.ok(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        IMAGE,
        "touch",
        "/tmp/f",
    ]);
}

/// Bind mounts (rw and ro), tmpfs, devices, sysctls, rlimits, added capabilities.
#[test]
fn podman_mounts_devices_sysctl_ulimit() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    let vol = p.path().join("vol");
    fs::create_dir_all(&vol).unwrap();
    fs::write(vol.join("from-host"), "host data\n").unwrap();
    let rw = format!("{}:/data", vol.display());
    let out = p.ok(&[
        "run",
        "--rm",
        "-v",
        &rw,
        IMAGE,
        "sh",
        "-c",
        "cat /data/from-host; echo ctr > /data/from-ctr",
    ]);
    assert_eq!(out.stdout, "host data\n", "{}", out.describe());
    assert_eq!(
        fs::read_to_string(vol.join("from-ctr")).unwrap_or_default(),
        "ctr\n"
    );
    let ro = format!("{}:/data:ro", vol.display());
    let out = p.cmd(&["run", "--rm", "-v", &ro, IMAGE, "touch", "/data/x"]);
    if out.ok() || !out.stderr.contains("Read-only file system") {
        p.fail("a :ro bind mount must be read-only", &out);
    }
    let out = p.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m",
        IMAGE,
        "sh",
        "-c",
        "grep ' /scratch ' /proc/mounts | cut -d' ' -f3",
    ]);
    assert_eq!(out.stdout.trim(), "tmpfs", "{}", out.describe());
    let out = p.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/zero:/dev/myzero",
        IMAGE,
        "sh",
        "-c",
        "head -c 3 /dev/myzero | od -An -tx1",
    ]);
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["00", "00", "00"],
        "{}",
        out.describe()
    );
    let out = p.ok(&[
        "run",
        "--rm",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        IMAGE,
        "cat",
        "/proc/sys/net/ipv4/ip_forward",
    ]);
    assert_eq!(out.stdout.trim(), "1", "{}", out.describe());
    let out = p.ok(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "nproc=32768:32768",
        IMAGE,
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(out.stdout, "1024\n2048\n", "{}", out.describe());
    // (With any --ulimit, podman 4.3 drops containers.conf's default_ulimits and sends nproc
    // 1048576, above this machine's hard limit: hence the explicit nproc.)
    let out = p.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        IMAGE,
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(
        cap_eff(&out.stdout) & (1 << 21) != 0,
        "CAP_SYS_ADMIN added\n{}",
        out.describe()
    );
    p.assert_no_container_cgroups();
}

/// Namespaces joined by path: `--pid container:X` shares X's pid namespace, `--uts host` the
/// host's.
#[test]
fn podman_join_namespaces() {
    skip_unless!(PODMAN_BINS);
    let p = Podman::new();
    p.ok(&["run", "-d", "--name", "first", IMAGE, "sleep", "1000"]);
    let out = p.ok(&[
        "run",
        "--rm",
        "--pid",
        "container:first",
        IMAGE,
        "ps",
        "-o",
        "pid,args",
    ]);
    assert!(
        out.stdout.lines().any(|l| l.trim() == "1 sleep 1000"),
        "{}",
        out.describe()
    );
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = p.ok(&["run", "--rm", "--uts", "host", IMAGE, "hostname"]);
    assert_eq!(out.stdout.trim(), host.trim(), "{}", out.describe());
    p.ok(&["rm", "-f", "-t", "0", "first"]);
    p.assert_no_container_cgroups();
}

/// `GET path` from the host's 127.0.0.1:`port` (a port published by container `name`), retried
/// until it answers 200 OK: the server comes up when it comes up (`give_up` only bounds a broken
/// run; nothing here measures time). The whole response.
fn fetch_published(p: &Podman, port: u16, path: &str, name: &str, give_up: Duration) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + give_up;
    loop {
        let r = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            c.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
            let mut s = String::new();
            c.read_to_string(&mut s)?;
            Ok(s)
        });
        match r {
            Ok(s) if s.contains("200 OK") => return s,
            _ if std::time::Instant::now() > deadline => {
                let logs = p.cmd(&["logs", name]);
                p.fail(
                    &format!("no answer from {name} behind -p 127.0.0.1:{port}"),
                    &logs,
                );
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A server in a sentry container on podman's default bridge network, its port published on the
/// host's loopback, reached by a client outside (issue 12): the sentry joins the network
/// namespace podman made and its sockets are host sockets there.
#[test]
fn podman_backend_sentry_publishes_a_port() {
    skip_unless!(PODMAN_BINS);
    let Some(p) = backend_case("sentry") else {
        return;
    };
    // A free port on the host's loopback (released before podman binds it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("127.0.0.1:{port}:{port}");
    let serve = format!(
        "mkdir -p /tmp/www && echo hello-from-the-sentry > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www"
    );
    p.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "--annotation",
        "io.hako.backend=sentry",
        IMAGE,
        "sh",
        "-c",
        &serve,
    ]);
    let body = fetch_published(&p, port, "/index.html", "web", Duration::from_secs(60));
    assert!(body.ends_with("hello-from-the-sentry\n"), "{body}");
    p.ok(&["rm", "-f", "-t", "0", "web"]);
    p.assert_no_container_cgroups();
}

/// `podman run --ipc container:X` with a sentry container (issue 12): the sentry joins X's IPC
/// namespace by the path podman gives, so a System V segment X made is found by its key; a
/// sentry container with an IPC namespace of its own does not find it. The program is
/// `backends/sentry/tests/programs/sysv_ipc.c`, compiled static and bound in read-only.
#[test]
fn podman_backend_sentry_joins_a_containers_ipc_namespace() {
    skip_unless!(PODMAN_BINS);
    let Some(p) = backend_case("sentry") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("sysv_ipc");
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("backends/sentry/tests/programs/sysv_ipc.c");
    let gcc = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output();
    if !gcc.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: gcc -static cannot build the test program: {gcc:?}");
        return;
    }
    let vol = format!("{}:/sysv_ipc:ro", bin.display());
    p.ok(&[
        "run",
        "-d",
        "--name",
        "ipc-peer",
        "-v",
        &vol,
        IMAGE,
        "sh",
        "-c",
        "/sysv_ipc give 0x4841 && exec sleep 1000",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !p.ok(&["logs", "ipc-peer"]).stdout.contains("given") {
        assert!(
            std::time::Instant::now() < deadline,
            "the peer never made its segment"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ann = "io.hako.backend=sentry";
    let find = ["/sysv_ipc", "find", "0x4841"];
    let mut args = vec![
        "run",
        "--rm",
        "--ipc",
        "container:ipc-peer",
        "-v",
        &vol,
        "--annotation",
        ann,
        IMAGE,
    ];
    args.extend(find);
    let out = p.ok(&args);
    assert_eq!(out.stdout, "found: \n", "{}", out.describe());
    let mut args = vec!["run", "--rm", "-v", &vol, "--annotation", ann, IMAGE];
    args.extend(find);
    let out = p.ok(&args);
    assert_eq!(out.stdout, "shmget: errno 2\n", "{}", out.describe());
    p.ok(&["rm", "-f", "-t", "0", "ipc-peer"]);
    p.assert_no_container_cgroups();
}

/// The microVM on podman's default bridge network (issue 12): a busybox httpd in a microVM,
/// published on the host's loopback (`-p 127.0.0.1:PORT:8080`), answers a client on the host;
/// a client in a second microVM reaches it at its bridge address. Traffic stays on loopback and
/// the test's own containers. Needs a guest kernel with virtio-net (`HAKO_MICROVM_KERNEL`, else
/// the cached default).
#[test]
fn podman_microvm_bridge_network() {
    skip_unless!(PODMAN_BINS);
    let Some(p) = backend_case("microvm") else {
        return;
    };
    let Some(kernel) = microvm_net_kernel() else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kann = format!("io.hako.microvm.kernel={kernel}");
    let publish = format!("127.0.0.1:{port}:8080");
    p.ok(&[
        "run",
        "-d",
        "--name",
        "vweb",
        "--annotation",
        "io.hako.backend=microvm",
        "--annotation",
        &kann,
        "-p",
        &publish,
        IMAGE,
        "sh",
        "-c",
        "mkdir /www && echo served from a microvm > /www/i && exec httpd -f -p 8080 -h /www",
    ]);
    // From the host, through the published port (the guest boots under TCG: retry).
    let got = fetch_published(&p, port, "/i", "vweb", Duration::from_secs(120));
    assert!(got.ends_with("served from a microvm\n"), "{got}");
    // From a second microVM on the same bridge network, at the server's address.
    let ip = p.inspect("vweb", "{{.NetworkSettings.IPAddress}}");
    let url = format!("http://{ip}:8080/i");
    let out = p.ok(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        "--annotation",
        "io.hako.backend=microvm",
        "--annotation",
        &kann,
        IMAGE,
        "wget",
        "-q",
        "-O",
        "-",
        &url,
    ]);
    assert_eq!(out.stdout, "served from a microvm\n", "{}", out.describe());
    p.ok(&["rm", "--force", "--time", "0", "vweb"]);
    p.assert_no_container_cgroups();
}

/// The guest kernel for microVM network tests (`HAKO_MICROVM_KERNEL`, else the cached default),
/// or None, with the reason printed, when it has no virtio-net.
fn microvm_net_kernel() -> Option<String> {
    let kernel = std::env::var("HAKO_MICROVM_KERNEL")
        .unwrap_or_else(|_| "/var/cache/hako/kernels/vmlinux".into());
    let cfg = fs::canonicalize(&kernel)
        .map(|k| format!("{}.config", k.display()))
        .and_then(fs::read_to_string)
        .unwrap_or_default();
    if !cfg.lines().any(|l| l == "CONFIG_VIRTIO_NET=y") {
        eprintln!(
            "SKIP: the guest kernel {kernel} has no virtio-net (rebuild with kernels/build.sh)"
        );
        return None;
    }
    Some(kernel)
}

// ---------------------------------------------------------------------------------------------
// Issue 12's targets end to end: real servers and process-heavy workloads in the isolated
// backends, through podman, on its default bridge network with the port published on the host's
// loopback and the client outside the sandbox.
// ---------------------------------------------------------------------------------------------

const PY_IMAGE: &str = "localhost/hako-python:latest";

/// Subtrees of the stdlib the targets never import (kept out of the image to keep it small).
const PY_SKIP: [&str; 7] = [
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "config-3.11-x86_64-linux-gnu",
];

/// Loads `PY_IMAGE` into `p`'s storage: busybox plus the host's Debian python3.11 (the binary,
/// the stdlib, and the shared libraries they link, at the host's paths). No registry is involved.
/// None, with the reason printed, where the host has no python3.11.
fn python_image(p: &Podman) -> Option<&'static str> {
    let stdlib = Path::new("/usr/lib/python3.11");
    let Ok(py) = fs::canonicalize("/usr/bin/python3") else {
        eprintln!("SKIP: no /usr/bin/python3 on the host");
        return None;
    };
    if !stdlib.is_dir() || !py.ends_with("python3.11") {
        eprintln!("SKIP: the host's python3 is not Debian's python3.11");
        return None;
    }
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    let mut objects = vec![py.clone()];
    let mut stack = vec![stdlib.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if dir == stdlib && PY_SKIP.contains(&name.as_str()) {
                continue;
            }
            // Follows symlinks (sitecustomize.py points into /etc); a dangling one is left out.
            let Ok(md) = fs::metadata(&path) else {
                continue;
            };
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() {
                if name.ends_with(".so") {
                    objects.push(path.clone());
                }
                let mode = std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777;
                files.push((path.display().to_string(), fs::read(&path).unwrap(), mode));
            }
        }
    }
    // The libraries the interpreter and its extension modules need, at the paths the loader
    // was given by ldd (the loader itself included).
    let ldd = run_cmd(Command::new("ldd").args(&objects), None, CMD_TIMEOUT);
    let mut libs: Vec<String> = ldd
        .stdout
        .split_whitespace()
        .filter(|w| {
            w.starts_with('/') && !w.starts_with("/usr/lib/python3.11") && !w.ends_with(':')
        })
        .map(str::to_string)
        .collect();
    libs.sort();
    libs.dedup();
    for lib in libs {
        let real = fs::canonicalize(&lib).unwrap();
        files.push((lib, fs::read(real).unwrap(), 0o755));
    }
    files.push(("/usr/bin/python3".into(), fs::read(&py).unwrap(), 0o755));
    let extra: Vec<(&str, Vec<u8>, u32)> = files
        .iter_mut()
        .map(|(path, data, mode)| (path.as_str(), std::mem::take(data), *mode))
        .collect();
    let archive = build_image_archive(&p.path().join("pyimage"), PY_IMAGE, &extra);
    p.ok(&["load", "-i", archive.to_str().unwrap()]);
    let _ = fs::remove_file(&archive);
    Some(PY_IMAGE)
}

/// A Unix-socket server and its client, two python processes in one sandbox: the server answers
/// one line, upper-cased, with its pid; the client connects once the socket is there.
const UNIX_SERVER: &str = r#"
import os, socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"%d " % os.getpid() + self.rfile.readline().upper())
socketserver.UnixStreamServer("/tmp/target.sock", H).handle_request()
"#;
const UNIX_CLIENT: &str = r#"
import os, socket, time
for _ in range(1200):
    try:
        c = socket.socket(socket.AF_UNIX)
        c.connect("/tmp/target.sock")
        break
    except OSError:
        c.close()
        time.sleep(0.1)
c.sendall(b"hello over unix\n")
pid, line = c.makefile().readline().split(" ", 1)
print("other process" if int(pid) != os.getpid() else "same process", line, end="")
"#;
/// multiprocessing: a Pool, a Queue, and a shared Value under its lock (needs /dev/shm).
const MULTIPROCESSING: &str = r#"
import multiprocessing as mp
def square(x):
    return x * x
def count(v, q, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    q.put(n)
if __name__ == "__main__":
    with mp.Pool(3) as p:
        print(sum(p.map(square, range(100))))
    v, q = mp.Value("i", 0), mp.Queue()
    ps = [mp.Process(target=count, args=(v, q, 300)) for _ in range(3)]
    for x in ps:
        x.start()
    got = sum(q.get(timeout=120) for _ in ps)
    for x in ps:
        x.join()
    print(got, v.value)
"#;

/// Runs issue 12's targets (and busybox httpd) through podman `p`, every container with
/// `annotations`, and reports every one that failed (all are tried; the test fails at the end
/// naming each). `label` names the runtime in the output. `forks` is the length of the shell
/// pipeline; `limit` bounds each workload, so a hang fails instead of holding CI.
fn run_targets(p: &Podman, label: &str, annotations: &[String], forks: usize, limit: Duration) {
    let Some(img) = python_image(p) else {
        return;
    };
    // Each workload runs as container `name`; one that outlived `limit` is removed by force
    // (the harness killed only podman's client).
    let run = |name: &str, extra: &[&str], cmd: &[&str]| -> Out {
        let mut args = vec!["run", "--name", name];
        for a in annotations {
            args.extend(["--annotation", a.as_str()]);
        }
        args.extend_from_slice(extra);
        args.extend_from_slice(cmd);
        let out = run_cmd(&mut p.command(&args), None, limit);
        if !out.ok() {
            p.cleanup_cmd(&["rm", "-f", "-t", "0", name]);
        }
        out
    };
    let mut failed: Vec<String> = Vec::new();
    let mut check = |what: &str, out: &Out, want: &str| {
        if out.ok() && out.stdout == want {
            eprintln!("PASS {label}: {what}");
        } else {
            eprintln!("FAIL {label}: {what}\nwanted {want:?}\n{}", out.describe());
            failed.push(format!("{what}: {}", out.describe()));
        }
    };

    // python3 http.server and busybox httpd (the bench's server), each published on the host's
    // loopback and fetched from the host.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("127.0.0.1:{port}:8000");
    for (name, what, server) in [
        (
            "pyweb",
            "python3 http.server",
            "exec python3 -m http.server 8000 --bind 0.0.0.0 --directory /www",
        ),
        ("bbweb", "busybox httpd", "exec httpd -f -p 8000 -h /www"),
    ] {
        let want = format!("served by {name}\n");
        let script = format!("mkdir /www && echo served by {name} > /www/i && {server}");
        let out = run(name, &["-d", "-p", &publish], &[img, "sh", "-c", &script]);
        if out.ok() {
            let body = fetch_published(p, port, "/i", name, limit);
            let got = Out {
                stdout: body.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
                ..out
            };
            check(what, &got, &want);
        } else {
            check(what, &out, &want);
        }
        p.cleanup_cmd(&["rm", "-f", "-t", "0", name]);
    }

    let out = run(
        "unix",
        &[
            "--rm",
            "-e",
            &format!("S={UNIX_SERVER}"),
            "-e",
            &format!("C={UNIX_CLIENT}"),
        ],
        &[
            img,
            "sh",
            "-c",
            "python3 -c \"$S\" & python3 -c \"$C\"; wait",
        ],
    );
    check(
        "unix server and client",
        &out,
        "other process HELLO OVER UNIX\n",
    );

    let out = run("mp", &["--rm"], &[img, "python3", "-c", MULTIPROCESSING]);
    check("python multiprocessing", &out, "328350\n900 900\n");

    let pipeline = format!("seq {forks} | while read i; do echo $i | cat; done | wc -l");
    let out = run("forks", &["--rm"], &[img, "sh", "-c", &pipeline]);
    check(
        &format!("a pipeline of {forks} forks"),
        &out,
        &format!("{forks}\n"),
    );

    p.assert_no_container_cgroups();
    assert!(
        failed.is_empty(),
        "{} of issue 12's targets failed in {label}:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

/// The targets under the runtime under test with no annotation: hako's container backend, or
/// the peer `HAKO_E2E_RUNTIME` names (runsc gets `--platform=ptrace --network=host`: its own
/// network stack cannot start on these machines, see docs/benchmarks.md).
#[test]
fn podman_runs_the_network_targets() {
    skip_unless!(PODMAN_BINS);
    let rt = Runtime::from_env();
    let name = rt
        .binary
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let p = if name == "runsc" {
        Podman::with_runtime_flags(&["--platform=ptrace", "--network=host"])
    } else {
        Podman::new()
    };
    let label = if rt.is_hako() { "container" } else { &name };
    run_targets(&p, label, &[], 1000, Duration::from_secs(180));
}

#[test]
fn podman_sentry_runs_the_network_targets() {
    skip_unless!(PODMAN_BINS);
    let Some(p) = backend_case("sentry") else {
        return;
    };
    let ann = ["io.hako.backend=sentry".to_string()];
    run_targets(&p, "sentry", &ann, 1000, Duration::from_secs(180));
}

/// The same targets in a microVM (correctness only: the guest may run under TCG, so the pipeline
/// is shorter and the bound longer).
#[test]
fn podman_microvm_runs_the_network_targets() {
    skip_unless!(PODMAN_BINS);
    let Some(kernel) = microvm_net_kernel() else {
        return;
    };
    let Some(p) = backend_case("microvm") else {
        return;
    };
    let ann = [
        "io.hako.backend=microvm".to_string(),
        format!("io.hako.microvm.kernel={kernel}"),
    ];
    run_targets(&p, "microvm", &ann, 200, Duration::from_secs(300));
}
