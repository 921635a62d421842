//! Test support: a busybox rootfs, a bundle spec, and running it through the Backend contract.
#![allow(dead_code)]

use hako_contract::{Backend, CreateRequest, GlobalOptions};
use hako_sentry::SentryBackend;
use std::path::{Path, PathBuf};

pub struct Bundle {
    pub dir: tempfile::TempDir,
}

pub fn busybox() -> Option<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = PathBuf::from(p);
        if p.exists() {
            let out = std::process::Command::new("file").arg(&p).output().ok()?;
            if String::from_utf8_lossy(&out.stdout).contains("statically linked") {
                return Some(p);
            }
        }
    }
    None
}

pub fn root_ok() -> bool {
    // SAFETY: getuid has no side effects.
    unsafe { libc::getuid() == 0 }
}

/// A bundle whose rootfs holds busybox (and its applet links) and a few files.
pub fn busybox_bundle() -> Option<Bundle> {
    if !root_ok() {
        eprintln!("SKIP: the sentry backend needs root (mount namespace, overlay, ptrace)");
        return None;
    }
    let Some(bb) = busybox() else {
        eprintln!("SKIP: no static busybox (apt-get install busybox-static)");
        return None;
    };
    let dir = tempfile::Builder::new()
        .prefix("hako-sentry-")
        .tempdir()
        .unwrap();
    let rootfs = dir.path().join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "dev", "sys", "root", "usr/bin"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(&bb, rootfs.join("bin/busybox")).unwrap();
    let out = std::process::Command::new(&bb)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    std::fs::write(rootfs.join("etc/hostname"), "sentry-box\n").unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").unwrap();
    std::fs::write(rootfs.join("etc/data.txt"), "original\n").unwrap();
    std::fs::set_permissions(
        rootfs.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    Some(Bundle { dir })
}

impl Bundle {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn spec(&self, args: &[&str], extra: serde_json::Value) -> oci_spec::runtime::Spec {
        let mut j = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
                "cwd": "/"
            },
            "root": {"path": self.rootfs()},
            "hostname": "sentry-test",
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}]}
        });
        merge(&mut j, extra);
        serde_json::from_value(j).unwrap()
    }

    /// create + start + wait through the Backend; returns (exit code or 128+signal, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_spec(&self.spec(args, serde_json::json!({})))
    }

    pub fn run_spec(&self, spec: &oci_spec::runtime::Spec) -> (i32, String, String) {
        self.run_spec_with(spec, |_, _| {}, |_| {})
    }

    /// Like `run_spec`, but a sandbox still running after `limit` is killed and the call says
    /// so (with its output so far) instead of hanging the test run: for tests of hangs.
    pub fn run_spec_within(
        &self,
        spec: &oci_spec::runtime::Spec,
        limit: std::time::Duration,
    ) -> Result<(i32, String, String), String> {
        let r = self.start(spec).map_err(|e| format!("create: {e}"))?;
        let watchdog = r.watchdog(limit);
        let out = r.wait_and_delete(|_| {});
        if watchdog.finish() {
            return Err(format!(
                "still running after {limit:?}, killed; stdout so far: {:?}, stderr: {:?}",
                out.1, out.2
            ));
        }
        Ok(out)
    }

    /// `create` alone, expected to fail: its error (all causes, one line).
    pub fn create_error(&self, spec: &oci_spec::runtime::Spec) -> String {
        match self.run_spec_hooks(spec, |_, _| {}, |_| {}) {
            Err(e) => e,
            Ok(out) => panic!("create succeeded (it should have failed): {out:?}"),
        }
    }

    /// Like `run_spec`; `running(sentry pid, state dir)` is called once the workload has been
    /// started (it may have exited already), `exited(state dir)` after the sandbox exited and
    /// before it is deleted.
    pub fn run_spec_with(
        &self,
        spec: &oci_spec::runtime::Spec,
        running: impl FnOnce(i32, &Path),
        exited: impl FnOnce(&Path),
    ) -> (i32, String, String) {
        self.run_spec_hooks(spec, running, exited)
            .unwrap_or_else(|e| panic!("create: {e}"))
    }

    fn run_spec_hooks(
        &self,
        spec: &oci_spec::runtime::Spec,
        running: impl FnOnce(i32, &Path),
        exited: impl FnOnce(&Path),
    ) -> Result<(i32, String, String), String> {
        let r = self.start(spec)?;
        running(r.pid, r.state.path());
        Ok(r.wait_and_delete(exited))
    }

    /// create + start through the Backend; the sandbox runs until `Running::wait_and_delete`.
    /// Several may run at once.
    pub fn start(&self, spec: &oci_spec::runtime::Spec) -> Result<Running, String> {
        // One create at a time: create forks, and the test harness redirects fds 1 and 2.
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let state = tempfile::Builder::new()
            .prefix("state-")
            .tempdir_in(self.dir.path())
            .unwrap();
        let fifo = state.path().join("start");
        hako_contract::start_gate::make(&fifo).unwrap();
        let out_path = state.path().join("stdout");
        let err_path = state.path().join("stderr");
        let out = std::fs::File::create(&out_path).unwrap();
        let errf = std::fs::File::create(&err_path).unwrap();
        let global = GlobalOptions::default();
        // A machine-wide unique id: the cgroup /hako/<id> must not be shared with another test.
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let id = format!(
            "sentry-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let req = CreateRequest {
            id: &id,
            bundle: self.dir.path(),
            spec,
            state_dir: state.path(),
            start_fifo: &fifo,
            console_socket: None,
            preserve_fds: 0,
            no_pivot: false,
            no_new_keyring: false,
            global: &global,
        };
        use std::os::fd::AsRawFd;
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let backend = SentryBackend {
            stdio: Some([devnull.as_raw_fd(), out.as_raw_fd(), errf.as_raw_fd()]),
        };
        let created = backend.create(&req).map_err(|e| format!("{e:#}"))?;
        let pid = created.pid;
        hako_contract::start_gate::release(&fifo, || hako_contract::proc::is_alive(pid, None))
            .unwrap();
        Ok(Running {
            pid,
            id,
            state,
            data: created.data,
            spec: spec.clone(),
            bundle: self.dir.path().to_path_buf(),
            waited: false,
        })
    }
}

/// Kills a sandbox's sentry still running after a time limit (see [`Running::watchdog`]).
pub struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    /// Stop watching; whether the sentry was killed for running too long.
    pub fn finish(self) -> bool {
        let _ = self.done.send(());
        self.thread.join().unwrap()
    }
}

/// A sandbox started by `Bundle::start`.
pub struct Running {
    /// The sentry's host pid.
    pub pid: i32,
    pub id: String,
    pub state: tempfile::TempDir,
    data: serde_json::Value,
    spec: oci_spec::runtime::Spec,
    bundle: PathBuf,
    waited: bool,
}

impl Drop for Running {
    /// A test that panicked before `wait_and_delete`: the sandbox must not outlive it.
    fn drop(&mut self) {
        if !self.waited {
            // SAFETY: our own child, the sentry (EXITKILL takes the workload with it).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.finish();
        }
    }
}

impl Running {
    /// Kill the sentry (and so its workload) if it still runs after `limit`, until
    /// [`Watchdog::finish`]: for tests of hangs.
    pub fn watchdog(&self, limit: std::time::Duration) -> Watchdog {
        // A pidfd names this sentry even once it is reaped: the watchdog can never signal a
        // process that took its pid afterwards.
        // SAFETY: pidfd_open of our own child.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) } as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: pidfd_send_signal on our own pidfd (ESRCH: it ended at the last moment).
            let hung = finished.recv_timeout(limit).is_err()
                && unsafe {
                    libc::syscall(libc::SYS_pidfd_send_signal, pidfd, libc::SIGKILL, 0, 0)
                } == 0;
            // SAFETY: our own descriptor, used by this thread alone.
            unsafe { libc::close(pidfd) };
            hung
        });
        Watchdog { done, thread }
    }

    /// Host pids of the sentry's children (the workload's first process, once it runs).
    /// The sentry's children in the sandbox: its workload's processes (the exec spawner, which
    /// lives outside the sandbox's pid namespace and names itself `hako-spawner`, left out).
    pub fn children(&self) -> Vec<i32> {
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default()
                    != "hako-spawner\n"
            })
            .collect()
    }

    /// Wait for the sentry, call `exited(state dir)`, delete; (exit code or 128+signal,
    /// stdout, stderr).
    pub fn wait_and_delete(mut self, exited: impl FnOnce(&Path)) -> (i32, String, String) {
        let (code, deleted) = self.finish_with(exited);
        deleted.unwrap();
        (
            code,
            std::fs::read_to_string(self.state.path().join("stdout")).unwrap(),
            std::fs::read_to_string(self.state.path().join("stderr")).unwrap(),
        )
    }

    fn finish(&mut self) {
        let _ = self.finish_with(|_| {});
    }

    /// Reap the sentry, call `exited`, delete; the exit code (or 128+signal) and how the
    /// delete went.
    fn finish_with(&mut self, exited: impl FnOnce(&Path)) -> (i32, hako_contract::Result<()>) {
        self.waited = true;
        let mut st = 0;
        unsafe { libc::waitpid(self.pid, &mut st, 0) };
        let code = if libc::WIFEXITED(st) {
            libc::WEXITSTATUS(st)
        } else {
            128 + libc::WTERMSIG(st)
        };
        let global = GlobalOptions::default();
        let sb = self.sandbox(&global, false);
        exited(self.state.path());
        (code, SentryBackend::default().delete(&sb))
    }

    fn sandbox<'a>(&'a self, global: &'a GlobalOptions, alive: bool) -> hako_contract::Sandbox<'a> {
        hako_contract::Sandbox {
            id: &self.id,
            bundle: &self.bundle,
            spec: &self.spec,
            state_dir: self.state.path(),
            pid: self.pid,
            alive,
            data: &self.data,
            global,
        }
    }

    /// `hako exec` of `args` through the Backend (the workload's process spec otherwise), with
    /// this test process's stdio; waits for it. Its exit code (or 128+signal), or why the exec
    /// failed.
    pub fn exec(&self, args: &[&str]) -> Result<i32, String> {
        let mut process = self.spec.process().clone().unwrap();
        process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        let global = GlobalOptions::default();
        let req = hako_contract::ExecRequest {
            process: &process,
            console_socket: None,
            preserve_fds: 0,
        };
        // The exec client blocks the signals it forwards in the calling thread: give the test
        // thread its mask back afterwards.
        // SAFETY: reading and restoring this thread's own signal mask.
        let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask) };
        // The sentry binds its exec socket, then listens on it, once the start gate opened: an
        // exec before that is told the sandbox is not started, or has ended. Until the sentry
        // answers (or is gone), try again; nothing was started then.
        let since = std::time::Instant::now();
        let execed = loop {
            let r = SentryBackend::default().exec(&self.sandbox(&global, true), &req);
            let early = r.as_ref().err().is_some_and(|e| {
                let e = format!("{e:#}");
                e.contains("is not running") || e.contains("no longer answers")
            });
            if !early || since.elapsed() > HANG || !hako_contract::proc::is_alive(self.pid, None) {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut()) };
        let client = execed.map_err(|e| format!("{e:#}"))?.pid;
        let mut st = 0;
        // SAFETY: our own child, the exec client.
        if unsafe { libc::waitpid(client, &mut st, 0) } != client {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        Ok(if libc::WIFEXITED(st) {
            libc::WEXITSTATUS(st)
        } else {
            128 + libc::WTERMSIG(st)
        })
    }
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

pub fn _p(_: &Path) {}

/// Copy a host binary and the shared libraries it needs (per ldd) into `rootfs`, same paths.
pub fn copy_dynamic(rootfs: &Path, bin: &str) {
    let real = std::fs::canonicalize(bin).unwrap();
    let mut files = vec![real.clone()];
    let out = std::process::Command::new("ldd")
        .arg(&real)
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        for w in l.split_whitespace() {
            if w.starts_with('/') {
                // Keep the soname the loader looks for (in the canonical directory).
                let p = Path::new(w);
                files.push(
                    std::fs::canonicalize(p.parent().unwrap())
                        .unwrap()
                        .join(p.file_name().unwrap()),
                );
            }
        }
    }
    for f in files {
        let dst = rootfs.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(std::fs::canonicalize(&f).unwrap(), &dst).unwrap();
    }
    // The loader's well-known paths and the usr-merge links.
    for (link, target) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        let _ = std::os::unix::fs::symlink(target, rootfs.join(link));
    }
    std::fs::create_dir_all(rootfs.join("usr/lib64")).unwrap();
    let _ = std::os::unix::fs::symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        rootfs.join("usr/lib64/ld-linux-x86-64.so.2"),
    );
    let name = Path::new(bin).file_name().unwrap();
    let dst = rootfs.join("usr/bin").join(name);
    if !dst.exists() {
        let _ = std::os::unix::fs::symlink(&real, &dst);
    }
}

/// Compile one of tests/attacks/*.c into a static binary at `out` (a workload needs no loader).
/// None, with the reason printed, when gcc or the static libc is missing.
pub fn compile_attack(name: &str, out: &Path) -> Option<()> {
    compile_c(&format!("attacks/{name}.c"), out)
}

/// Compile `tests/<rel>` (a C file) into a static binary at `out`; None, with the reason
/// printed, when gcc or the static libc is missing.
pub fn compile_c(rel: &str, out: &Path) -> Option<()> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel);
    match std::process::Command::new("gcc")
        .args(["-static", "-O1", "-pthread", "-o"])
        .arg(out)
        .arg(&src)
        .output()
    {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            eprintln!(
                "SKIP: gcc -static failed (libc6-dev installed?): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("SKIP: gcc not found ({e})");
            None
        }
    }
}

/// The platforms this kernel can run, by name (a skipped one is said on stderr).
pub fn platforms() -> Vec<&'static str> {
    ["samecpu", "hybrid", "ptrace"]
        .into_iter()
        .filter(|name| {
            let ok = hako_sentry::platform::kind::Kind::parse(name).is_ok();
            if !ok {
                eprintln!("SKIP the {name} platform: this kernel cannot run it");
            }
            ok
        })
        .collect()
}

/// Long enough for a slow, loaded CI machine to finish, short enough that a hang fails the run.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(300);

/// `args` exits 0 printing `want` under runc (with `process` merged into its spec's process,
/// where runc runs here) and in the sentry on every platform this kernel has (with `extra`
/// merged into the spec), each sentry run bounded by [`HANG`].
pub fn same_as_linux_everywhere(
    b: &Bundle,
    args: &[&str],
    want: &str,
    process: serde_json::Value,
    extra: serde_json::Value,
) {
    match run_peer("runc", &b.rootfs(), args, process) {
        Ok((code, out, err)) => assert_eq!((code, out.as_str()), (0, want), "runc: {err}"),
        Err(why) => eprintln!("SKIP the runc comparison: {why}"),
    }
    for name in platforms() {
        let mut extra = extra.clone();
        extra["annotations"] = serde_json::json!({hako_sentry::PLATFORM_ANNOTATION: name});
        let (code, out, err) = b
            .run_spec_within(&b.spec(args, extra), HANG)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((code, out.as_str()), (0, want), "{name}: {err}");
    }
}

/// Compile tests/programs/`name`.c to /bin/`name` of a busybox bundle, run it with `args` under
/// the sentry (the platform `HAKO_SENTRY_PLATFORM` or the default names) and check it exits 0
/// printing `want`; then check that runc, where it runs here, prints the same. Skips, saying
/// why, without busybox, root or gcc.
pub fn program_as_linux_runs_it(name: &str, args: &[&str], want: &str) {
    let Some(b) = busybox_bundle() else {
        return;
    };
    let bin = format!("/bin/{name}");
    if compile_c(&format!("programs/{name}.c"), &b.rootfs().join(&bin[1..])).is_none() {
        return;
    }
    let args: Vec<&str> = std::iter::once(bin.as_str())
        .chain(args.iter().copied())
        .collect();
    let (code, out, err) = b.run(&args);
    assert_eq!(code, 0, "stdout: {out} stderr: {err}");
    assert_eq!(out, want, "stderr: {err}");
    match run_peer("runc", &b.rootfs(), &args, serde_json::json!({})) {
        Ok((code, peer, err)) => {
            assert_eq!((code, peer.as_str()), (0, want), "runc: {err}");
        }
        Err(e) => eprintln!("SKIP the runc comparison: {e}"),
    }
}

/// Run `args` under a peer OCI runtime (`runc`, `runsc`) on a copy of `rootfs`, with the same
/// `process` fields (merged into the peer's own `spec`). Err: why the peer cannot run here.
pub fn run_peer(
    runtime: &str,
    rootfs: &Path,
    args: &[&str],
    process: serde_json::Value,
) -> Result<(i32, String, String), String> {
    let peer = Peer::new(runtime, rootfs, args, process)?;
    let out = peer
        .command(&["run", "--bundle"])
        .arg(peer.bundle())
        .arg(&peer.id)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stdout.is_empty() && !out.status.success() {
        // The peer did not get as far as running the program (nested container, no cgroups...).
        return Err(format!(
            "{runtime} cannot run here: {}",
            stderr.lines().last().unwrap_or("")
        ));
    }
    Ok((out.status.code().unwrap_or(-1), stdout, stderr))
}

/// A bundle for a peer OCI runtime: a copy of `rootfs` and the peer's own spec with the same
/// `process` fields, its state in the same temporary directory.
pub struct Peer {
    pub runtime: String,
    pub id: String,
    dir: tempfile::TempDir,
}

impl Peer {
    pub fn new(
        runtime: &str,
        rootfs: &Path,
        args: &[&str],
        process: serde_json::Value,
    ) -> Result<Peer, String> {
        let dir = tempfile::Builder::new()
            .prefix("hako-peer-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).map_err(|e| e.to_string())?;
        let spec = std::process::Command::new(runtime)
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .output()
            .map_err(|e| format!("{runtime} not installed ({e})"))?;
        if !spec.status.success() {
            return Err(format!("{runtime} spec failed"));
        }
        let copy = bundle.join("rootfs");
        let cp = std::process::Command::new("cp")
            .arg("-a")
            .arg(rootfs)
            .arg(&copy)
            .status()
            .map_err(|e| e.to_string())?;
        if !cp.success() {
            return Err("cp -a rootfs failed".into());
        }
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        cfg["root"] = serde_json::json!({"path": copy, "readonly": false});
        cfg["process"]["terminal"] = false.into();
        cfg["process"]["args"] = serde_json::json!(args);
        merge(&mut cfg["process"], process);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).map_err(|e| e.to_string())?;
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let id = format!(
            "hako-peer-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        Ok(Peer {
            runtime: runtime.to_string(),
            id,
            dir,
        })
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    /// The peer runtime with its state root (and runsc's --network=none), then `args`.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.runtime);
        cmd.arg("--root").arg(self.dir.path().join("state"));
        if self.runtime == "runsc" {
            cmd.args(["--network=none"]);
        }
        cmd.args(args);
        cmd
    }
}
