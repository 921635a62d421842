//! Shared helpers for the CLI-level tests: busybox bundles made from Debian's busybox-static,
//! a `hako` command with its own state root, and small probes of the machine.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const HAKO: &str = env!("CARGO_BIN_EXE_hako");

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique name for this test process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// Why a root-only test cannot run here, if it cannot.
pub fn need_root() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    None
}

/// Skip (return early) with a printed reason.
#[macro_export]
macro_rules! skip_unless {
    ($why:expr) => {
        if let Some(why) = $why {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// Where the busybox-static binary is (Debian's package puts it at /bin/busybox).
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox-static is not installed (apt-get install busybox-static); scripts/setup installs it");
}

/// A bundle directory with a busybox rootfs and a config.json we can edit as JSON.
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// A busybox bundle running `args`, with the namespaces, mounts and masked paths that
    /// `runc spec` writes.
    pub fn busybox(args: &[&str]) -> Bundle {
        let dir = std::env::temp_dir().join(unique("hako-bundle"));
        let rootfs = dir.join("rootfs");
        for d in [
            "bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root",
            "var", "run",
        ] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
        // List applets with the host's copy: executing the fresh copy can fail with ETXTBSY
        // while a parallel test forks and briefly holds its write descriptor.
        let out = Command::new(busybox()).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        std::fs::write(rootfs.join("etc/hostname"), "rootfs-file\n").unwrap();
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "hako",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
                "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        });
        let b = Bundle { dir, config };
        b.save();
        b
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Change the config (a closure on the JSON) and write it back.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `hako` with its own state root (removed on drop, after deleting what is left in it). The same
/// driver runs a peer runtime with runc's CLI ([`Hako::peer`]) for side-by-side tests.
pub struct Hako {
    pub root: PathBuf,
    pub bin: PathBuf,
}

impl Hako {
    pub fn new() -> Hako {
        let root = std::env::temp_dir().join(unique("hako-root"));
        Hako {
            root,
            bin: PathBuf::from(HAKO),
        }
    }

    /// `name` (runc, crun) on PATH, with a state root of its own; Err says why it cannot be
    /// used here.
    pub fn peer(name: &str) -> Result<Hako, String> {
        let ok = Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!("{name} is not installed"));
        }
        Ok(Hako {
            root: std::env::temp_dir().join(unique(&format!("{name}-root"))),
            bin: PathBuf::from(name),
        })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Run hako with these args; stdin is /dev/null. Stdout and stderr go through files, not
    /// pipes: a container that `create` leaves running inherits them, and a pipe would keep
    /// the caller waiting for EOF until the container exits.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(&[], args)
    }

    /// [`Hako::run`] with these environment variables set (`HAKO_FAULT` for the fault suite).
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        use std::os::unix::process::ExitStatusExt;
        let base = std::env::temp_dir().join(unique("hako-out"));
        let (o, e) = (base.with_extension("out"), base.with_extension("err"));
        let status = self
            .cmd()
            .envs(env.iter().copied())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap())
            .status()
            .expect("spawn hako");
        let out = Output {
            status: std::process::ExitStatus::from_raw(status.into_raw()),
            stdout: std::fs::read(&o).unwrap(),
            stderr: std::fs::read(&e).unwrap(),
        };
        let _ = std::fs::remove_file(&o);
        let _ = std::fs::remove_file(&e);
        out
    }

    /// Run and insist on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "hako {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run and insist on failure with exit 1 and one error line on stderr; returns it.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            o.status.code(),
            Some(1),
            "hako {args:?} should fail with 1: stdout {} stderr {err}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(
            err.lines().count(),
            1,
            "hako {args:?}: expected one error line, got: {err}"
        );
        err
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// Poll until the container reaches `want` (a microVM boots slowly: 60 s at most).
    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.status(id) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "container {id} never became {want}: {}",
                self.status(id)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Container ids left in the state root.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Hako {
    fn drop(&mut self) {
        for id in self.leftovers() {
            let _ = self.cmd().args(["delete", "--force", &id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Stdout of a finished command as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Cgroup directories named after `needle` under every v1 hierarchy and the unified mount.
pub fn cgroup_dirs_named(needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(dir: &Path, needle: &str, depth: u32, found: &mut Vec<PathBuf>) {
        if depth > 4 {
            return;
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name().to_string_lossy().contains(needle) {
                    found.push(e.path());
                }
                walk(&e.path(), needle, depth + 1, found);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), needle, 0, &mut found);
    found
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Listen on `path` and hand back the first fd sent there (a console socket).
pub fn console_receiver(path: &Path) -> std::thread::JoinHandle<std::os::fd::OwnedFd> {
    use nix::sys::socket::{
        accept, bind, listen, recvmsg, socket, AddressFamily, Backlog, ControlMessageOwned,
        MsgFlags, SockFlag, SockType, UnixAddr,
    };
    use std::io::IoSliceMut;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(sock.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    listen(&sock, Backlog::new(1).unwrap()).unwrap();
    std::thread::spawn(move || -> OwnedFd {
        let conn = accept(sock.as_raw_fd()).unwrap();
        let mut buf = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(conn, &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the fd just received over SCM_RIGHTS is ours.
                return unsafe { OwnedFd::from_raw_fd(fds[0]) };
            }
        }
        panic!("no fd received on the console socket");
    })
}

/// Read a pty master until `end` shows up (or EOF/EIO); CRLF folded to LF. The whole of `end`,
/// not its first bytes: a pty may deliver them apart.
pub fn read_until(master: &std::os::fd::OwnedFd, end: &str) -> String {
    use std::io::Read;
    let mut f = std::fs::File::from(master.try_clone().unwrap());
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&out).contains(end) {
            break;
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

// `hako exec` helpers shared by the exec tests of the backends (microvm, sentry).

/// `hako exec` into a running sandbox as `ids` ("uid:gid") with `--env` and `--cwd`, then with
/// stdin piped: the process sees the identity, variable and directory, reads `text` and ends at
/// its EOF. Shared by the backends whose exec runs in a world of its own (sentry, microvm).
pub fn exec_identity_and_stdin(h: &Hako, id: &str, ids: &str, text: &str) {
    let out = h.ok(&[
        "exec",
        "--user",
        ids,
        "--env",
        "GREETING=hi",
        "--cwd",
        "/tmp",
        id,
        "sh",
        "-c",
        "echo $(id -u):$(id -g) $GREETING $(pwd)",
    ]);
    assert_eq!(out, format!("{ids} hi /tmp\n"));
    let mut child = h
        .cmd()
        .args(["exec", id, "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{text}\n").as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n", text.to_uppercase())
    );
    assert!(o.status.success());
}

/// Poll until `hako exec ID args` succeeds (`want` true) or fails (`want` false).
pub fn exec_until(h: &Hako, id: &str, args: &[&str], want: bool, what: &str) {
    let mut argv = vec!["exec", id];
    argv.extend_from_slice(args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while h.run(&argv).status.success() != want {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `hako exec --detach --pid-file P ID args`; the exec client's pid.
pub fn exec_detached(h: &Hako, id: &str, pidfile: &Path, args: &[&str]) -> i32 {
    let mut argv = vec![
        "exec",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        id,
    ];
    argv.extend_from_slice(args);
    h.ok(&argv);
    read_pid(pidfile)
}

/// The pid written in a pid file.
pub fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether `pid` exists and is neither a zombie nor dead (from /proc/PID/stat's state field).
pub fn alive(pid: i32) -> bool {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = st
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    !st.is_empty() && state != Some("Z") && state != Some("X")
}

/// Wait until `pid` is gone or a zombie (a detached exec client is reaped by whoever inherits it).
pub fn wait_gone(pid: i32, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if !alive(pid) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} (pid {pid}) did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Build the static microvm guest agent (backends/microvm/agent/build.sh; cargo makes this quick
/// once built) and return its path, for `HAKO_AGENT`.
pub fn microvm_agent() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("backends/microvm/agent/build.sh");
    let out = Command::new(script).output().expect("agent/build.sh");
    assert!(
        out.status.success(),
        "agent build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Why the microvm backend cannot run here (not root, hako built without it, no guest kernel,
/// no qemu), if it cannot.
pub fn need_microvm() -> Option<String> {
    if let Some(why) = need_root() {
        return Some(why);
    }
    #[cfg(feature = "microvm")]
    {
        let k = hako_microvm::assets::default_kernel();
        if let Err(e) = hako_microvm::assets::check_kernel(&k) {
            return Some(format!("no guest kernel: {e:#}"));
        }
        if let Err(e) = hako_microvm::qemu::Qemu::find() {
            return Some(format!("{e:#}"));
        }
        None
    }
    #[cfg(not(feature = "microvm"))]
    Some("hako is built without the microvm backend".into())
}
