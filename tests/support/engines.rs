//! Shared harness for the end-to-end engine tests (podman, containerd, docker).
//!
//! Every engine is started by the test itself with all of its state in a fresh temporary
//! directory; a guard value tears it down (containers, daemon, stray processes, mounts, cgroups,
//! files) when it is dropped, also when the test panics.
//!
//! The runtime under test is hako (`CARGO_BIN_EXE_hako`) unless `HAKO_E2E_RUNTIME` says otherwise:
//! `runc`, `crun`, `hako`, or a path to any runc-compatible binary. This lets the harness itself be
//! validated against runc and crun.
//!
//! The engines do not call the runtime binary directly but a small trace wrapper (see
//! [`Runtime::install`]) that records every invocation and, when the engine does not pass `--log`
//! itself, adds `--log <tmp>/runtime.log --log-format json`, so that a failure report can show
//! exactly what the engine asked of the runtime and what the runtime said.
#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Default limit for a single engine command: a safety net against hangs, not a timing assertion.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(90);
/// Limit for each teardown command of a guard.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Skips and probes
// ---------------------------------------------------------------------------------------------

/// Finds `name` on PATH (or the usual sbin dirs, which a test's PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p));
    found
}

/// PATH plus the sbin directories (dockerd lives in /usr/sbin; daemons find containerd, the shim
/// and the runtime's helpers through it). Engines and daemons are run with it.
pub fn full_path() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !path.split(':').any(|p| p == d) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(d);
        }
    }
    path
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Returns `Some(reason)` when the test must be skipped: an engine binary is absent or we are not
/// root (the engines are driven in rootful mode). The caller prints the reason and returns.
pub fn missing(binaries: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the engine tests drive rootful engines and must run as root".into());
    }
    let absent: Vec<&str> = binaries
        .iter()
        .copied()
        .filter(|b| which(b).is_none())
        .collect();
    if absent.is_empty() {
        None
    } else {
        Some(format!("not installed: {}", absent.join(", ")))
    }
}

/// `skip_unless!(["podman", "conmon"])` returns early from the test, printing why, when an engine
/// binary is absent.
macro_rules! skip_unless {
    ($bins:expr) => {
        if let Some(reason) = $crate::engines::missing(&$bins) {
            eprintln!("SKIP {}: {}", module_path!(), reason);
            return;
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/// The result of one command.
#[derive(Debug)]
pub struct Out {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Exit code, or 128+signal when killed by a signal.
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    pub fn describe(&self) -> String {
        format!(
            "$ {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` with `stdin` fed to it (or /dev/null), killing it after `timeout`.
pub fn run_cmd(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Out {
    let cmdline = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"));
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = w.write_all(&data);
        });
    }
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() > timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("wait `{cmdline}`: {e}"),
        }
    };
    // A daemonized grandchild may keep the pipes open; do not wait for it forever.
    let stdout = join_timeout(to, Duration::from_secs(5));
    let mut stderr = join_timeout(te, Duration::from_secs(5));
    if timed_out {
        stderr.push_str(&format!(
            "\n[harness: killed after {}s timeout]",
            timeout.as_secs()
        ));
    }
    Out {
        cmdline,
        status,
        stdout,
        stderr,
    }
}

fn join_timeout(h: std::thread::JoinHandle<Vec<u8>>, t: Duration) -> String {
    let start = Instant::now();
    while !h.is_finished() && start.elapsed() < t {
        std::thread::sleep(Duration::from_millis(5));
    }
    if h.is_finished() {
        String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned()
    } else {
        "[harness: output pipe still open]".into()
    }
}

pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary directories, stray processes and mounts
// ---------------------------------------------------------------------------------------------

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A short, unique name fragment (socket paths must stay under 108 bytes).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh directory under /tmp with a short path.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hk-{prefix}-"))
        .tempdir_in("/tmp")
        .expect("tempdir")
}

/// Kills (SIGKILL) every process whose command line mentions `marker` (the test's own temp dir,
/// so only processes this test started: daemons, shims, conmon). Returns what it killed.
pub fn kill_processes_mentioning(marker: &str) -> Vec<String> {
    let me = std::process::id();
    let mut killed = Vec::new();
    for _round in 0..3 {
        let mut found = false;
        for (pid, cmdline) in processes() {
            if pid == me || !cmdline.contains(marker) {
                continue;
            }
            // SAFETY: plain kill(2) on a pid we just read.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            killed.push(format!("{pid}: {cmdline}"));
            found = true;
        }
        if !found {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    killed
}

pub fn processes() -> Vec<(u32, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(raw) = fs::read(e.path().join("cmdline")) {
                let s: String = String::from_utf8_lossy(&raw).replace('\0', " ");
                v.push((pid, s.trim_end().to_string()));
            }
        }
    }
    v
}

/// Mount points (of this mount namespace) at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v.dedup();
    v
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything at or below `dir`.
pub fn unmount_all_under(dir: &Path) -> Vec<PathBuf> {
    let mut done = Vec::new();
    for _round in 0..5 {
        let ms = mounts_under(dir);
        if ms.is_empty() {
            break;
        }
        for m in ms {
            let c = CString::new(m.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: umount2 with a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            done.push(m);
        }
    }
    done
}

/// Removes cgroup directories (every v1 hierarchy and the v2 mount) whose path relative to the
/// hierarchy root starts with `rel` (e.g. `/e2e-123` or `/docker/<id>`); deepest first. Tasks left
/// in them are killed first. Returns the directories it had to remove (a leak by the runtime).
pub fn remove_cgroups(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return Vec::new();
    }
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return removed;
    };
    let mut roots: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let top = root.join(rel);
        if !top.is_dir() || top == root {
            continue;
        }
        let mut dirs = Vec::new();
        collect_dirs(&top, &mut dirs);
        dirs.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for d in dirs {
            if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = fs::write(d.join("freezer.state"), "THAWED");
            for _ in 0..50 {
                if fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            removed.push(d);
        }
    }
    removed
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Cgroup directories (any hierarchy) whose last component contains `needle`.
pub fn cgroups_named(needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for root in rd.flatten().map(|e| e.path()) {
        let mut dirs = Vec::new();
        collect_dirs(&root, &mut dirs);
        found.extend(dirs.into_iter().filter(|d| {
            d.file_name()
                .map(|n| n.to_string_lossy().contains(needle))
                .unwrap_or(false)
        }));
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The runtime under test
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Hako,
    Runc,
    Crun,
    Other,
}

/// The runc-compatible binary the engines are pointed at.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub kind: Kind,
    /// The real binary.
    pub binary: PathBuf,
}

impl Runtime {
    /// From `HAKO_E2E_RUNTIME` (`hako` by default, `runc`, `crun`, or a path).
    pub fn from_env() -> Runtime {
        let sel = std::env::var("HAKO_E2E_RUNTIME").unwrap_or_default();
        let (kind, binary) = match sel.as_str() {
            "" | "hako" => (Kind::Hako, PathBuf::from(env!("CARGO_BIN_EXE_hako"))),
            "runc" => (
                Kind::Runc,
                which("runc").expect("HAKO_E2E_RUNTIME=runc but runc is not installed"),
            ),
            "crun" => (
                Kind::Crun,
                which("crun").expect("HAKO_E2E_RUNTIME=crun but crun is not installed"),
            ),
            path => {
                let p = which(path)
                    .unwrap_or_else(|| panic!("HAKO_E2E_RUNTIME={path}: no such executable"));
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let kind = if name.starts_with("hako") {
                    Kind::Hako
                } else if name == "runc" {
                    Kind::Runc
                } else if name == "crun" {
                    Kind::Crun
                } else {
                    Kind::Other
                };
                (kind, p)
            }
        };
        Runtime { kind, binary }
    }

    pub fn is_hako(&self) -> bool {
        self.kind == Kind::Hako
    }

    /// Writes the wrapper script the engines will call, `<dir>/<name>`, and returns its path.
    ///
    /// The wrapper appends the argv to `<dir>/runtime.trace`, adds
    /// `--log <dir>/runtime.log --log-format json` when the engine did not pass `--log`, and then
    /// `exec`s the runtime, so the process tree is exactly what it would be without it. `extra`
    /// are global flags put before everything else (e.g. `--backend sentry`).
    ///
    /// For crun it also hides the cgroup2 `unified` mount in a private mount namespace: on this
    /// hybrid host hugetlb is bound to cgroup2, and crun refuses hybrid mode while any controller
    /// is on the v2 hierarchy ("cgroups in hybrid mode not supported, drop all controllers from
    /// cgroupv2"). See docs/engines.md.
    pub fn install(&self, dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
        let trace = dir.join("runtime.trace");
        let log = dir.join("runtime.log");
        let extra: String = extra
            .iter()
            .map(|a| format!(" {}", shell_quote(a)))
            .collect();
        let exec_line = match self.kind {
            Kind::Crun => format!(
                "exec unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"' {}{} \"$@\"",
                shell_quote(&self.binary.to_string_lossy()),
                extra
            ),
            _ => format!("exec {}{} \"$@\"", shell_quote(&self.binary.to_string_lossy()), extra),
        };
        let script = format!(
            r#"#!/bin/sh
# hako e2e trace wrapper: record the call, add a log file, exec the runtime under test.
printf '%s\n' "$*" >> {trace}
has_log=0; prev=; bundle=
for a in "$@"; do
  case "$a" in --log|--log=*) has_log=1;; --bundle=*) bundle="${{a#--bundle=}}";; esac
  case "$prev" in --bundle|-b) bundle="$a";; esac
  prev="$a"
done
# keep the config.json the engine wrote, for failure reports
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  n=$(wc -l < {trace}); cp "$bundle/config.json" {dir}/config-$n.json 2>/dev/null
fi
if [ $has_log = 0 ]; then set -- --log {log} --log-format json "$@"; fi
{exec_line}
"#,
            trace = shell_quote(&trace.to_string_lossy()),
            dir = shell_quote(&dir.join("configs").to_string_lossy()),
            log = shell_quote(&log.to_string_lossy()),
        );
        fs::create_dir_all(dir.join("configs")).unwrap();
        let path = dir.join(name);
        fs::write(&path, script).expect("write runtime wrapper");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Runs the real runtime binary directly (e.g. `features`).
    pub fn direct(&self, args: &[&str]) -> Out {
        run_cmd(Command::new(&self.binary).args(args), None, CMD_TIMEOUT)
    }

    /// Whether hako reports backend `name` as available (`hako features`). Always false for other
    /// runtimes.
    pub fn has_backend(&self, name: &str) -> bool {
        if !self.is_hako() {
            return false;
        }
        let out = self.direct(&["features"]);
        if !out.ok() {
            return false;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) else {
            return false;
        };
        backend_listed(&v, name)
    }
}

/// Whether a `hako features` document lists backend `name`: a key of the `io.hako.backends`
/// object, or an entry of the comma-separated `annotations["io.hako.backends"]`.
pub fn backend_listed(v: &serde_json::Value, name: &str) -> bool {
    let in_object = v
        .get("io.hako.backends")
        .and_then(|b| b.as_object())
        .is_some_and(|m| m.contains_key(name));
    let in_annotation = v
        .get("annotations")
        .and_then(|a| a.get("io.hako.backends"))
        .and_then(|s| s.as_str())
        .is_some_and(|s| s.split(',').any(|b| b.trim() == name));
    in_object || in_annotation
}

/// What to append to a failure message: the runtime calls and its log.
pub fn runtime_report(dir: &Path) -> String {
    let mut s = String::new();
    let trace = fs::read_to_string(dir.join("runtime.trace")).unwrap_or_default();
    let lines: Vec<&str> = trace.lines().collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    let _ = writeln!(
        s,
        "--- runtime calls (last {} of {}) ---\n{}",
        tail.len(),
        lines.len(),
        tail.join("\n")
    );
    let log = fs::read_to_string(dir.join("runtime.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    let _ = writeln!(
        s,
        "--- runtime --log (last {} lines) ---\n{}",
        tail.len(),
        tail.join("\n")
    );
    let configs: Vec<String> = fs::read_dir(dir.join("configs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    if !configs.is_empty() {
        let _ = writeln!(
            s,
            "--- config.json files the engine passed (kept only with HAKO_E2E_KEEP=1) ---\n{}",
            configs.join("\n")
        );
    }
    s
}

/// Removes the sockets that containerd's runc v2 shims leave in /run/containerd/s when they are
/// killed (named `sha256(<containerd address>/<namespace>/<id>)`), for the containers this test
/// created. Returns those it removed.
pub fn remove_shim_sockets(address: &Path, ns: &str, dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for id in created_ids(dir) {
        let key = address.join(ns).join(&id);
        let out = run_cmd(
            &mut Command::new("sha256sum"),
            Some(key.as_os_str().as_encoded_bytes()),
            CLEANUP_TIMEOUT,
        );
        let Some(hex) = out.stdout.split_whitespace().next() else {
            continue;
        };
        let sock = Path::new("/run/containerd/s").join(hex);
        if sock.exists() && fs::remove_file(&sock).is_ok() {
            removed.push(sock);
        }
    }
    removed
}

/// Container ids the engine asked the runtime to create (from the trace).
pub fn created_ids(dir: &Path) -> Vec<String> {
    let trace = fs::read_to_string(dir.join("runtime.trace")).unwrap_or_default();
    dedup(
        trace
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == "create"))
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect(),
    )
}

/// State directories the runtime still holds under `state_root` for containers this test
/// created (all of which the test has removed through the engine by now).
pub fn runtime_state_left(state_root: &Path, dir: &Path) -> Vec<PathBuf> {
    created_ids(dir)
        .into_iter()
        .map(|id| state_root.join(id))
        .filter(|p| p.exists())
        .collect()
}

/// With `HAKO_E2E_KEEP=1` the guards leave the temp dir (traces, configs, logs) in place after
/// tearing everything else down.
pub fn keep_tempdir(dir: tempfile::TempDir) {
    if std::env::var("HAKO_E2E_KEEP").is_ok_and(|v| v == "1") {
        let p = dir.keep();
        eprintln!("HAKO_E2E_KEEP=1: kept {}", p.display());
    }
}

// ---------------------------------------------------------------------------------------------
// The busybox image
// ---------------------------------------------------------------------------------------------

pub const IMAGE: &str = "localhost/busybox:latest";

/// Builds a busybox rootfs from the host's busybox-static in `dir/rootfs` and packs it as a
/// docker-archive (`docker save` format: manifest.json, config, one layer) at `dir/busybox.tar`,
/// tagged `localhost/busybox:latest`. podman load, docker load and ctr images import all take it.
/// `extra` files (path in image, contents, mode) are added to the layer.
pub fn build_busybox_archive(dir: &Path, extra: &[(&str, Vec<u8>, u32)]) -> PathBuf {
    build_image_archive(dir, IMAGE, extra)
}

/// [`build_busybox_archive`] tagged `tag` (an image that adds `extra` to busybox, e.g. python3).
pub fn build_image_archive(dir: &Path, tag: &str, extra: &[(&str, Vec<u8>, u32)]) -> PathBuf {
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect(
            "busybox-static is needed to build the test image (apt-get install busybox-static)",
        );
    if !is_static_elf(&busybox) {
        panic!(
            "{} is dynamically linked: install busybox-static",
            busybox.display()
        );
    }
    let rootfs = dir.join("rootfs");
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/hako",
        "var/tmp",
    ] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
    let list = run_cmd(Command::new(&busybox).arg("--list"), None, CMD_TIMEOUT);
    assert!(list.ok(), "busybox --list failed\n{}", list.describe());
    for applet in list
        .stdout
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let _ = symlink("busybox", rootfs.join("bin").join(applet));
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nhako:x:1000:1000:hako:/home/hako:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nhako:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    for (path, data, mode) in extra {
        let p = rootfs.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }

    let arch = dir.join("archive");
    fs::create_dir_all(&arch).unwrap();
    let layer_tmp = dir.join("layer.tar");
    let t = run_cmd(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&rootfs)
            .args(["-cf"])
            .arg(&layer_tmp)
            .arg("."),
        None,
        CMD_TIMEOUT,
    );
    assert!(t.ok(), "tar layer\n{}", t.describe());
    let layer_hex = sha256_file(&layer_tmp);
    fs::create_dir_all(arch.join(&layer_hex)).unwrap();
    fs::rename(&layer_tmp, arch.join(&layer_hex).join("layer.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "hako e2e: busybox-static rootfs"}],
    });
    let cfg_path = dir.join("config.json");
    fs::write(&cfg_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let cfg_hex = sha256_file(&cfg_path);
    fs::rename(&cfg_path, arch.join(format!("{cfg_hex}.json"))).unwrap();
    let manifest = serde_json::json!([{
        "Config": format!("{cfg_hex}.json"),
        "RepoTags": [tag],
        "Layers": [format!("{layer_hex}/layer.tar")],
    }]);
    fs::write(
        arch.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let out = dir.join("busybox.tar");
    let t = run_cmd(
        Command::new("tar")
            .arg("-C")
            .arg(&arch)
            .arg("-cf")
            .arg(&out)
            .arg("."),
        None,
        CMD_TIMEOUT,
    );
    assert!(t.ok(), "tar archive\n{}", t.describe());
    let _ = fs::remove_dir_all(&arch);
    let _ = fs::remove_dir_all(&rootfs);
    out
}

/// An ELF file without a PT_INTERP program header (64-bit little-endian only).
pub fn is_static_elf(p: &Path) -> bool {
    let Ok(b) = fs::read(p) else { return false };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 > b.len() || u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) != 3
        // PT_INTERP
    })
}

fn sha256_file(p: &Path) -> String {
    let o = run_cmd(Command::new("sha256sum").arg(p), None, CMD_TIMEOUT);
    assert!(o.ok(), "sha256sum\n{}", o.describe());
    o.stdout.split_whitespace().next().unwrap().to_string()
}

/// Waits until `f` returns true, up to `limit` (a readiness poll, not a timing assertion).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cgroup v1 directory of `pid` for `controller` (e.g. "freezer", "memory").
pub fn cgroup_dir_of(pid: u32, controller: &str) -> Option<PathBuf> {
    let s = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for l in s.lines() {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == controller) {
            return Some(
                PathBuf::from("/sys/fs/cgroup")
                    .join(controller)
                    .join(path.trim_start_matches('/')),
            );
        }
    }
    None
}

/// Common cleanup of an engine's temp dir: stray processes, mounts. Returns a description of
/// what had to be cleaned up by force.
pub fn force_cleanup(dir: &Path) -> String {
    let mut s = String::new();
    let marker = dir.to_string_lossy().into_owned();
    let killed = kill_processes_mentioning(&marker);
    if !killed.is_empty() {
        let _ = writeln!(s, "killed stray processes: {killed:#?}");
    }
    let unmounted = unmount_all_under(dir);
    if !unmounted.is_empty() {
        let _ = writeln!(s, "unmounted: {unmounted:?}");
    }
    s
}

/// Distinct values, order kept.
pub fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

/// The wasm helper's hello fixture (`tests/fixtures/wasm/hello*.wasm`, or `hello*.wat` compiled
/// with wat2wasm into `scratch`): (its name, the module bytes).
pub fn find_wasm_fixture(dir: &Path, scratch: &Path) -> Option<(String, Vec<u8>)> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let pick = |ext: &str| {
        entries
            .iter()
            .find(|p| {
                p.extension().is_some_and(|e| e == ext)
                    && p.file_stem()
                        .is_some_and(|s| s.to_string_lossy().contains("hello"))
            })
            .cloned()
    };
    if let Some(w) = pick("wasm") {
        return Some((w.display().to_string(), fs::read(&w).ok()?));
    }
    let wat = pick("wat")?;
    which("wat2wasm")?;
    let out_path = scratch.join("hello.wasm");
    let o = run_cmd(
        Command::new("wat2wasm").arg(&wat).arg("-o").arg(&out_path),
        None,
        CMD_TIMEOUT,
    );
    assert!(o.ok(), "{}", o.describe());
    Some((wat.display().to_string(), fs::read(&out_path).ok()?))
}

/// The hello module prints one greeting line, then each argument on its own line.
pub fn wasm_hello_output_ok(stdout: &str, args: &[&str]) -> bool {
    let mut lines = stdout.lines();
    let greeting = lines.next().unwrap_or_default();
    !greeting.is_empty() && lines.eq(args.iter().copied())
}

/// What each engine harness provides (run one engine command; fail with the engine's own
/// context); the checks built on them are shared.
pub trait Engine {
    /// The engine's command name, for messages.
    const NAME: &'static str;

    fn cmd(&self, args: &[&str]) -> Out;

    fn fail(&self, what: &str, out: &Out) -> !;

    /// Runs and requires exit 0.
    fn ok(&self, args: &[&str]) -> Out {
        let out = self.cmd(args);
        if !out.ok() {
            self.fail(&format!("{} command failed", Self::NAME), &out);
        }
        out
    }

    /// Runs and requires exit `code`.
    fn expect_code(&self, args: &[&str], code: i32) -> Out {
        let out = self.cmd(args);
        if out.code() != code {
            self.fail(&format!("expected exit code {code}"), &out);
        }
        out
    }
}

/// The last `n` lines of a daemon's log file (empty when there is none).
pub fn log_tail(path: &Path, n: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
