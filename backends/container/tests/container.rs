//! Crate-level tests of the container backend, driven through the contract with a busybox
//! rootfs. They need root; they run sequentially on the main thread (harness = false) because
//! `create` clones the calling process, which must be single-threaded.

use hako_container::ContainerBackend;
use hako_contract::{
    start_gate, Backend, CreateRequest, Created, ExecRequest, GlobalOptions, Sandbox, Spec,
};
use serde_json::{json, Value};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

struct Bundle {
    dir: PathBuf,
    id: String,
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

const APPLETS: &[&str] = &[
    "sh",
    "cat",
    "echo",
    "id",
    "hostname",
    "grep",
    "ls",
    "sleep",
    "mount",
    "touch",
    "true",
    "false",
    "test",
    "stat",
    "readlink",
    "wc",
    "head",
    "env",
    "pwd",
    "umask",
    "domainname",
    "mkdir",
];

impl Bundle {
    fn new(name: &str) -> Bundle {
        let id = format!("hako-ct-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(busybox().unwrap(), bin.join("busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(a)).unwrap();
        }
        for d in ["proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(dir.join("rootfs").join(d)).unwrap();
        }
        std::fs::create_dir_all(dir.join("state")).unwrap();
        Bundle { dir, id }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The config `runc spec` writes, with a cgroup path and a non-terminal process.
fn base_config(b: &Bundle, args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.2.0",
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
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "hako-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
        ],
        "linux": {
            "cgroupsPath": format!("/hako-test/{}", b.id),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

struct Running {
    created: Created,
    out: PathBuf,
    fifo: PathBuf,
}

fn global() -> GlobalOptions {
    GlobalOptions {
        root: std::env::temp_dir(),
        ..Default::default()
    }
}

/// `create` with stdout and stderr going to a file.
fn create(b: &Bundle, cfg: &Value) -> anyhow::Result<Running> {
    create_with(b, cfg, None)
}

fn create_with(b: &Bundle, cfg: &Value, console: Option<&Path>) -> anyhow::Result<Running> {
    create_opts(b, cfg, console, false)
}

fn create_opts(
    b: &Bundle,
    cfg: &Value,
    console: Option<&Path>,
    no_pivot: bool,
) -> anyhow::Result<Running> {
    std::fs::write(
        b.dir.join("config.json"),
        serde_json::to_vec_pretty(cfg).unwrap(),
    )
    .unwrap();
    let spec: Spec = serde_json::from_value(cfg.clone()).unwrap();
    let mut spec = spec;
    let mut root = spec.root().clone().unwrap();
    root.set_path(b.rootfs());
    spec.set_root(Some(root));
    let be = ContainerBackend::new();
    be.check(&spec, &b.dir)?;
    let state = b.dir.join("state");
    let fifo = state.join("exec.fifo");
    let _ = std::fs::remove_file(&fifo);
    start_gate::make(&fifo)?;
    let out = b.dir.join("out");
    let g = global();
    let req = CreateRequest {
        id: &b.id,
        bundle: &b.dir,
        spec: &spec,
        state_dir: &state,
        start_fifo: &fifo,
        console_socket: console,
        preserve_fds: 0,
        no_pivot,
        no_new_keyring: false,
        global: &g,
    };
    let created = with_stdio_to(&out, || be.create(&req))?;
    Ok(Running { created, out, fifo })
}

fn with_stdio_to<T>(path: &Path, f: impl FnOnce() -> T) -> T {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // SAFETY: dup/dup2 on fds we own; single-threaded.
    unsafe {
        let s1 = libc::dup(1);
        let s2 = libc::dup(2);
        libc::dup2(file.as_raw_fd(), 1);
        libc::dup2(file.as_raw_fd(), 2);
        let r = f();
        libc::dup2(s1, 1);
        libc::dup2(s2, 2);
        libc::close(s1);
        libc::close(s2);
        r
    }
}

fn start(r: &Running) {
    let pid = r.created.pid;
    if let Err(e) = start_gate::release(&r.fifo, || hako_contract::proc::is_alive(pid, None)) {
        panic!(
            "start: {e:#}; output: {}",
            std::fs::read_to_string(&r.out).unwrap_or_default()
        );
    }
}

fn wait(pid: i32) -> i32 {
    let mut st = 0;
    // SAFETY: waitpid on our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        128 + libc::WTERMSIG(st)
    }
}

fn sandbox<'a>(b: &'a Bundle, spec: &'a Spec, r: &'a Running, g: &'a GlobalOptions) -> Sandbox<'a> {
    Sandbox {
        id: &b.id,
        bundle: &b.dir,
        spec,
        state_dir: &b.dir,
        pid: r.created.pid,
        alive: hako_contract::proc::is_alive(r.created.pid, None),
        data: &r.created.data,
        global: g,
    }
}

fn delete(b: &Bundle, cfg: &Value, r: &Running) {
    let spec: Spec = serde_json::from_value(cfg.clone()).unwrap();
    let g = global();
    let sb = sandbox(b, &spec, r, &g);
    ContainerBackend::new().delete(&sb).unwrap();
    let cg = r.created.data["cgroup"]["path"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!cg.is_empty());
    for m in ["pids", "memory", "freezer"] {
        let d = Path::new("/sys/fs/cgroup")
            .join(m)
            .join(cg.trim_start_matches('/'));
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
}

/// Run a container to completion: (exit code, output).
fn run(b: &Bundle, cfg: &Value) -> (i32, String) {
    let r = create(b, cfg).unwrap_or_else(|e| panic!("create: {e:#}"));
    start(&r);
    let code = wait(r.created.pid);
    let out = std::fs::read_to_string(&r.out).unwrap_or_default();
    delete(b, cfg, &r);
    (code, out)
}

fn sh(b: &Bundle, script: &str) -> Value {
    base_config(b, &["sh", "-c", script])
}

fn t_basic_effects() {
    let b = Bundle::new("basic");
    let script = "hostname; id -u; id -g; ulimit -n; grep -E '^(CapEff|CapBnd|NoNewPrivs|SigIgn|SigBlk)' /proc/self/status; echo pid=$$; umask; \
                  grep -E ':(pids|memory):' /proc/self/cgroup; \
                  cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable || echo kcore-masked; \
                  echo 1 > /proc/sys/kernel/shmmax 2>/dev/null && echo sys-writable || echo sys-ro; \
                  touch /x 2>/dev/null && echo root-writable || echo root-ro; \
                  touch /tmp/x && echo tmp-writable; \
                  test -c /dev/null && test -c /dev/urandom && test -L /dev/ptmx && test -L /dev/fd && echo devices-ok; \
                  ls /sys/fs/cgroup | grep -q memory && echo cgroup-mounted; \
                  grep -q ' /dev/mqueue ' /proc/mounts && echo mqueue-mounted; \
                  exit 7";
    let (code, out) = run(&b, &sh(&b, script));
    assert_eq!(code, 7, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "hako-test", "{out}");
    assert_eq!(lines[1], "0");
    assert_eq!(lines[2], "0");
    assert_eq!(lines[3], "1024");
    // AUDIT_WRITE(29), KILL(5), NET_BIND_SERVICE(10).
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    assert!(out.contains(&format!("CapEff:\t{want}")), "{out}");
    assert!(out.contains(&format!("CapBnd:\t{want}")), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("pid=1\n0022\n"), "{out}");
    // Joined its cgroup before the cgroup namespace was made: the namespace root is it.
    assert!(out.lines().any(|l| l.ends_with(":pids:/")), "{out}");
    assert!(out.lines().any(|l| l.ends_with(":memory:/")), "{out}");
    // Nothing ignored or blocked (the test process itself ignores SIGPIPE, as Rust does).
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    for w in [
        "kcore-masked",
        "sys-ro",
        "root-ro",
        "tmp-writable",
        "devices-ok",
        "cgroup-mounted",
        "mqueue-mounted",
    ] {
        assert!(out.contains(w), "missing {w}: {out}");
    }
}

fn t_user_and_env() {
    let b = Bundle::new("user");
    let mut cfg = sh(
        &b,
        "id -u; id -g; id -G; pwd; echo $FOO; umask; grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status",
    );
    cfg["process"]["user"] =
        json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 1002], "umask": 18});
    cfg["process"]["env"] = json!(["PATH=/bin", "FOO=bar"]);
    cfg["process"]["capabilities"]["inheritable"] =
        json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    cfg["process"]["cwd"] = json!("/tmp");
    cfg["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
    let (code, out) = run(&b, &cfg);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "1001");
    assert!(
        lines[2].split(' ').any(|g| g == "5") && lines[2].split(' ').any(|g| g == "1002"),
        "{out}"
    );
    assert_eq!(lines[3], "/tmp");
    assert_eq!(lines[4], "bar");
    assert_eq!(lines[5], "0022");
    // A non-root user keeps the spec's capabilities through execve via the ambient set (the
    // kernel raises an ambient capability only when it is also inheritable).
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert!(out.contains(&format!("{set}:\t{want}")), "{set}: {out}");
    }
}

fn t_missing_executable_fails_create() {
    let b = Bundle::new("noexe");
    let cfg = base_config(&b, &["no-such-binary"]);
    let e = create(&b, &cfg).err().expect("create must fail");
    let msg = format!("{e:#}");
    assert!(msg.contains("executable file not found"), "{msg}");
    let cg = Path::new("/sys/fs/cgroup/pids/hako-test").join(&b.id);
    assert!(!cg.exists(), "cgroup left behind after a failed create");
}

fn t_bad_mount_fails_create() {
    let b = Bundle::new("badmount");
    let mut cfg = base_config(&b, &["true"]);
    cfg["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]}));
    let e = create(&b, &cfg).err().expect("create must fail");
    assert!(format!("{e:#}").contains("/no/such/dir"), "{e:#}");
    assert!(!Path::new("/sys/fs/cgroup/pids/hako-test")
        .join(&b.id)
        .exists());
}

fn t_bind_mounts_and_devices() {
    let b = Bundle::new("bind");
    let data = b.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("hello"), "from-host\n").unwrap();
    let mut cfg = sh(
        &b,
        "cat /data/hello; touch /data/x 2>/dev/null && echo data-rw || echo data-ro; \
                         stat -c '%t %T %a' /dev/mydev; cat /etc/hostname-file; \
                         cat /opt/seed; touch /opt/new && echo opt-writable",
    );
    let m = cfg["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}));
    std::fs::write(b.dir.join("hn"), "file-bound\n").unwrap();
    m.push(json!({"destination": "/etc/hostname-file", "type": "bind", "source": b.dir.join("hn"), "options": ["bind"]}));
    cfg["linux"]["devices"] =
        json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 7, "fileMode": 0o640}]);
    // tmpcopyup: a tmpfs that starts with what the (read-only) image has there.
    std::fs::create_dir_all(b.rootfs().join("opt")).unwrap();
    std::fs::write(b.rootfs().join("opt/seed"), "seeded\n").unwrap();
    cfg["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/opt", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "mode=755"]}),
    );
    let (code, out) = run(&b, &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("from-host") && out.contains("data-ro"),
        "{out}"
    );
    assert!(out.contains("1 7 640"), "{out}");
    assert!(out.contains("file-bound"), "{out}");
    assert!(out.contains("seeded\nopt-writable"), "{out}");
    assert!(!data.join("x").exists());
    assert!(!b.rootfs().join("opt/new").exists());
}

fn t_exec_kill_pause() {
    let b = Bundle::new("exec");
    let cfg = sh(&b, "echo started; sleep 1000");
    let r = create(&b, &cfg).unwrap_or_else(|e| panic!("{e:#}"));
    start(&r);
    let spec: Spec = serde_json::from_value(cfg.clone()).unwrap();
    let g = global();
    let be = ContainerBackend::new();
    let sb = sandbox(&b, &spec, &r, &g);
    // exec: a process in the container's namespaces, with its own user.
    let proc_json = json!({
        "user": {"uid": 123, "gid": 456},
        "args": ["sh", "-c", "hostname; id -u; id -g; echo ppid=$PPID; grep NoNewPrivs /proc/self/status; ls /proc | grep -c '^[0-9]'"],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "noNewPrivileges": true
    });
    let process: hako_contract::Process = serde_json::from_value(proc_json).unwrap();
    let exec_out = b.dir.join("exec-out");
    let ex = with_stdio_to(&exec_out, || {
        be.exec(
            &sb,
            &ExecRequest {
                process: &process,
                console_socket: None,
                preserve_fds: 0,
            },
        )
    })
    .unwrap_or_else(|e| panic!("exec: {e:#}"));
    assert_eq!(wait(ex.pid), 0);
    let eo = std::fs::read_to_string(&exec_out).unwrap();
    let lines: Vec<&str> = eo.lines().collect();
    assert_eq!(lines[0], "hako-test", "{eo}");
    assert_eq!(lines[1], "123");
    assert_eq!(lines[2], "456");
    assert_eq!(
        lines[3], "ppid=0",
        "exec'd process is in the container pid namespace: {eo}"
    );
    assert_eq!(lines[4], "NoNewPrivs:\t1");
    // pids: the init (and the sleeping shell) are in the cgroup.
    let pids = be.pids(&sb).unwrap();
    assert!(pids.contains(&r.created.pid), "{pids:?}");
    // exec of a missing binary fails with one clear line.
    let mut bad = process.clone();
    bad.set_args(Some(vec!["nope".into()]));
    let e = be
        .exec(
            &sb,
            &ExecRequest {
                process: &bad,
                console_socket: None,
                preserve_fds: 0,
            },
        )
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("executable file not found"),
        "{e:#}"
    );
    // pause / resume
    be.pause(&sb).unwrap();
    assert!(be.is_paused(&sb));
    let st = hako_contract::proc::state_letter(r.created.pid);
    assert!(matches!(st, Some('D') | Some('S') | Some('T')), "{st:?}");
    let e = be
        .exec(
            &sb,
            &ExecRequest {
                process: &process,
                console_socket: None,
                preserve_fds: 0,
            },
        )
        .unwrap_err();
    assert!(format!("{e:#}").contains("paused"));
    be.resume(&sb).unwrap();
    assert!(!be.is_paused(&sb));
    // kill: the init is pid 1 in its namespace and ignores TERM without a handler... sh does.
    be.kill(&sb, libc::SIGKILL, false).unwrap();
    assert_eq!(wait(r.created.pid), 128 + libc::SIGKILL);
    delete(&b, &cfg, &r);
}

fn t_kill_all() {
    let b = Bundle::new("killall");
    let cfg = sh(&b, "sleep 1000 & sleep 1000 & wait");
    let r = create(&b, &cfg).unwrap_or_else(|e| panic!("{e:#}"));
    start(&r);
    let spec: Spec = serde_json::from_value(cfg.clone()).unwrap();
    let g = global();
    let be = ContainerBackend::new();
    let sb = sandbox(&b, &spec, &r, &g);
    let mut n = 0;
    while be.pids(&sb).unwrap().len() < 3 && n < 10000 {
        std::thread::sleep(std::time::Duration::from_millis(1));
        n += 1;
    }
    let pids = be.pids(&sb).unwrap();
    assert!(pids.len() >= 3, "{pids:?}");
    be.pause(&sb).unwrap();
    be.kill(&sb, libc::SIGKILL, true).unwrap();
    assert_eq!(wait(r.created.pid), 128 + libc::SIGKILL);
    delete(&b, &cfg, &r);
}

fn t_user_namespace() {
    let b = Bundle::new("userns");
    let mut cfg = sh(&b, "id -u; cat /proc/self/uid_map; ls -ln /bin/busybox");
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // The rootfs must be reachable by the mapped root.
    for p in [b.dir.clone(), b.rootfs()] {
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let (code, out) = run(&b, &cfg);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert!(
        lines[1].split_whitespace().collect::<Vec<_>>() == ["0", "100000", "65536"],
        "{out}"
    );
    // Host root is not mapped: files it owns show as the overflow id.
    assert!(lines[2].contains("65534"), "{out}");
}

fn t_user_namespace_exec() {
    let b = Bundle::new("userns-exec");
    let mut cfg = sh(&b, "sleep 1000");
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    for p in [b.dir.clone(), b.rootfs()] {
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let r = create(&b, &cfg).unwrap_or_else(|e| panic!("{e:#}"));
    start(&r);
    let spec: Spec = serde_json::from_value(cfg.clone()).unwrap();
    let g = global();
    let be = ContainerBackend::new();
    let sb = sandbox(&b, &spec, &r, &g);
    let process: hako_contract::Process = serde_json::from_value(json!({
        "user": {"uid": 7, "gid": 7},
        "args": ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"],
        "env": ["PATH=/bin"],
        "cwd": "/"
    }))
    .unwrap();
    let out = b.dir.join("exec-out");
    let ex = with_stdio_to(&out, || {
        be.exec(
            &sb,
            &ExecRequest {
                process: &process,
                console_socket: None,
                preserve_fds: 0,
            },
        )
    })
    .unwrap_or_else(|e| panic!("exec: {e:#}"));
    assert_eq!(wait(ex.pid), 0);
    let o = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "7", "{o}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"],
        "{o}"
    );
    assert_eq!(lines[2], "hako-test");
    // Seen from the host, the exec'd process runs as 200007.
    be.kill(&sb, libc::SIGKILL, false).unwrap();
    assert_eq!(wait(r.created.pid), 128 + libc::SIGKILL);
    delete(&b, &cfg, &r);
}

/// Not root on the host: a user namespace mapping only our own uid, no cgroup of its own.
fn t_rootless() {
    let b = Bundle::new("rootless");
    let mut cfg = sh(&b, "id -u; cat /proc/self/uid_map; hostname; exit 4");
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    let chown = std::process::Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(&b.dir)
        .status()
        .unwrap();
    assert!(chown.success());
    let code_file = b.dir.join("code");
    // SAFETY: fork of this single-threaded test process; the child only runs the lines below.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: dropping to uid/gid 1000 in the child.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            libc::setresgid(1000, 1000, 1000);
            libc::setresuid(1000, 1000, 1000);
            // The uid change made us non-dumpable, which a process that exec'd as 1000 is
            // not: /proc/<init>/uid_map would stay root's.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        }
        let code = match create(&b, &cfg) {
            Ok(r) => {
                start(&r);
                wait(r.created.pid)
            }
            Err(e) => {
                std::fs::write(b.dir.join("out"), format!("create: {e:#}")).unwrap();
                100
            }
        };
        std::fs::write(&code_file, code.to_string()).unwrap();
        // SAFETY: leave the forked child without running the test's destructors.
        unsafe { libc::_exit(0) };
    }
    wait(child);
    let out = std::fs::read_to_string(b.dir.join("out")).unwrap_or_default();
    let code = std::fs::read_to_string(&code_file).unwrap_or_default();
    assert_eq!(code, "4", "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "1000", "1"],
        "{out}"
    );
    assert_eq!(lines[2], "hako-test");
    assert!(!Path::new("/sys/fs/cgroup/pids/hako-test")
        .join(&b.id)
        .exists());
}

fn t_join_namespace() {
    let b = Bundle::new("join");
    // A holder container whose uts+net namespaces a second one joins.
    let mut holder = sh(&b, "sleep 1000");
    holder["hostname"] = json!("holder");
    let r = create(&b, &holder).unwrap_or_else(|e| panic!("{e:#}"));
    start(&r);
    let b2 = Bundle::new("join2");
    let mut cfg = sh(&b2, "hostname; echo pid=$$");
    cfg.as_object_mut().unwrap().remove("hostname");
    let nss = cfg["linux"]["namespaces"].as_array_mut().unwrap();
    for ns in nss.iter_mut() {
        let t = ns["type"].as_str().unwrap().to_string();
        let name = match t.as_str() {
            "uts" => "uts",
            "network" => "net",
            "pid" => "pid",
            _ => continue,
        };
        ns["path"] = json!(format!("/proc/{}/ns/{name}", r.created.pid));
    }
    let (code, out) = run(&b2, &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("holder\n"), "{out}");
    assert!(
        !out.contains("pid=1\n"),
        "joined pid namespace: not pid 1: {out}"
    );
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(r.created.pid, libc::SIGKILL) };
    wait(r.created.pid);
    delete(&b, &holder, &r);
}

fn t_check_refuses() {
    let b = Bundle::new("check");
    let be = ContainerBackend::new();
    let parse = |v: &Value| -> Spec {
        let mut s: Spec = serde_json::from_value(v.clone()).unwrap();
        let mut root = s.root().clone().unwrap();
        root.set_path(b.rootfs());
        s.set_root(Some(root));
        s
    };
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "AppArmor",
            Box::new(|c| c["process"]["apparmorProfile"] = json!("docker-default")),
        ),
        (
            "intelRdt",
            Box::new(|c| c["linux"]["intelRdt"] = json!({"closID": "x"})),
        ),
        (
            "not namespaced",
            Box::new(|c| c["linux"]["sysctl"] = json!({"vm.swappiness": "10"})),
        ),
        (
            "uts namespace",
            Box::new(|c| c["linux"]["namespaces"] = json!([{"type": "mount"}])),
        ),
        (
            "idmap",
            Box::new(|c| {
                c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "bind", "source": "/tmp", "options": ["bind", "idmap"]}))
            }),
        ),
        (
            "uidMappings",
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}))
            }),
        ),
        (
            // No mount namespace is fine (runc's way), but not with a new user namespace.
            "needs a new mount namespace too",
            Box::new(|c| {
                c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "user"}]);
                c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
                c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
                c.as_object_mut().unwrap().remove("hostname");
            }),
        ),
    ];
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    for (want, f) in cases {
        if want == "AppArmor" && apparmor {
            continue; // a profile is fine where AppArmor is enabled
        }
        let mut c = base_config(&b, &["true"]);
        f(&mut c);
        let e = be
            .check(&parse(&c), &b.dir)
            .err()
            .unwrap_or_else(|| panic!("check accepted a spec with {want}"));
        assert!(format!("{e:#}").contains(want), "{want}: {e:#}");
    }
    // The unmodified base config passes, and namespaced sysctls are fine.
    let mut c = base_config(&b, &["true"]);
    c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000000"});
    be.check(&parse(&c), &b.dir).unwrap();
    // Without a mount namespace, or joining one by path, as runc.
    let mut c = base_config(&b, &["true"]);
    c["linux"]["namespaces"] = json!([{"type": "uts"}]);
    be.check(&parse(&c), &b.dir).unwrap();
    c["linux"]["namespaces"] =
        json!([{"type": "uts"}, {"type": "mount", "path": "/proc/1/ns/mnt"}]);
    be.check(&parse(&c), &b.dir).unwrap();
    let f = be.features();
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("user")));
}

fn t_sysctl_and_domainname() {
    let b = Bundle::new("sysctl");
    let mut cfg = sh(
        &b,
        "cat /proc/sys/kernel/shmmni; cat /proc/sys/kernel/domainname",
    );
    cfg["linux"]["sysctl"] = json!({"kernel.shmmni": "1234"});
    cfg["domainname"] = json!("example.test");
    let (code, out) = run(&b, &cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "1234\nexample.test\n");
}

/// After each test, pass or fail: kill and remove whatever a failed test left in our cgroups.
fn cleanup() {
    let suffix = format!("-{}", std::process::id());
    let Ok(ctrls) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in ctrls.flatten() {
        let parent = c.path().join("hako-test");
        let Ok(rd) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with("hako-ct-") || !name.ends_with(&suffix) {
                continue;
            }
            let procs = std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default();
            for p in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                // SAFETY: plain kill of a leftover test container process.
                unsafe { libc::kill(p, libc::SIGKILL) };
                wait(p);
            }
            let _ = std::fs::write(e.path().join("freezer.state"), "THAWED");
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

fn t_console_socket() {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let b = Bundle::new("tty");
    let sock_path = b.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let mut cfg = sh(
        &b,
        "tty; test -t 0 && test -t 1 && echo isatty; stat -c %t:%T /dev/console; exit 5",
    );
    cfg["process"]["terminal"] = json!(true);
    let r = create_with(&b, &cfg, Some(&sock_path)).unwrap_or_else(|e| panic!("{e:#}"));
    // create already sent the master: it waits in the listen backlog.
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let mut cbuf = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cbuf),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut master = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the fd just arrived with SCM_RIGHTS.
            master = Some(unsafe { std::fs::File::from_raw_fd(fds[0]) });
        }
    }
    let mut master = master.expect("no pty master received");
    start(&r);
    assert_eq!(wait(r.created.pid), 5);
    let mut out = vec![];
    let mut chunk = [0u8; 4096];
    // After the workload exits the slave is closed: reads end with EIO.
    while let Ok(n) = master.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("isatty"), "{out}");
    assert!(
        out.contains("88:0"),
        "/dev/console is the pty (major 136 = 0x88): {out}"
    );
    delete(&b, &cfg, &r);
}

fn t_hooks_and_no_pivot() {
    let b = Bundle::new("hooks");
    let shared = b.dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mut cfg = sh(&b, "cat /shared/start-state; echo HOME=$HOME");
    cfg["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/shared", "type": "bind", "source": "shared", "options": ["rbind", "rw"]}),
    );
    // createContainer: path and effects in the runtime's view (before pivot_root), in the
    // container's mount namespace (the bind mount below the rootfs is visible).
    let create_out = b.dir.join("create-hook");
    let create_script = format!(
        "cat > {}; test -d {}/shared && echo bound >> {}",
        create_out.display(),
        b.rootfs().display(),
        create_out.display()
    );
    // startContainer: runs inside the container after start, before the workload.
    cfg["hooks"] = json!({
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", create_script]}],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /shared/start-state; hostname >> /shared/start-state"]}]
    });
    let r = create_opts(&b, &cfg, None, true).unwrap_or_else(|e| panic!("{e:#}"));
    let created = std::fs::read_to_string(&create_out).unwrap();
    let st: Value = serde_json::Deserializer::from_str(&created)
        .into_iter::<Value>()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(st["id"], json!(b.id));
    assert_eq!(st["pid"], json!(r.created.pid));
    assert!(created.contains("bound"), "{created}");
    assert!(
        !shared.join("start-state").exists(),
        "startContainer ran before start"
    );
    start(&r);
    assert_eq!(wait(r.created.pid), 0);
    let out = std::fs::read_to_string(&r.out).unwrap();
    assert!(out.contains(&format!("\"id\":\"{}\"", b.id)), "{out}");
    assert!(out.contains("hako-test"), "{out}");
    assert!(out.contains("HOME=/\n"), "{out}");
    delete(&b, &cfg, &r);
}

fn t_seccomp() {
    // An errno rule for mkdir, default allow; once with no_new_privileges (filter loaded last),
    // once without it and without CAP_SYS_ADMIN (loaded before capabilities drop).
    for nnp in [true, false] {
        let b = Bundle::new(if nnp { "seccomp-nnp" } else { "seccomp" });
        let mut cfg = sh(
            &b,
            "mkdir /tmp/d 2>&1; echo rc=$?; grep Seccomp: /proc/self/status",
        );
        cfg["process"]["noNewPrivileges"] = json!(nnp);
        cfg["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        let (code, out) = run(&b, &cfg);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("Operation not permitted"), "{out}");
        assert!(out.contains("rc=1"), "{out}");
        assert!(out.contains("Seccomp:\t2"), "{out}");
    }
}

fn t_process_knobs() {
    let b = Bundle::new("knobs");
    let mut cfg = sh(&b, "uname -m; cat /proc/self/oom_score_adj; ionice -p $$");
    cfg["linux"]["personality"] = json!({"domain": "LINUX32"});
    cfg["process"]["oomScoreAdj"] = json!(500);
    cfg["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    let (code, out) = run(&b, &cfg);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "i686", "{out}");
    assert_eq!(lines[1], "500", "{out}");
    assert!(
        lines[2].contains("best-effort") && lines[2].contains('6'),
        "{out}"
    );
}

fn t_shared_propagation_leaves_no_host_mounts() {
    let b = Bundle::new("rshared");
    let mut cfg = sh(&b, "cat /proc/self/mountinfo");
    cfg["linux"]["rootfsPropagation"] = json!("rshared");
    let r = create(&b, &cfg).unwrap_or_else(|e| panic!("{e:#}"));
    start(&r);
    let code = wait(r.created.pid);
    let out = std::fs::read_to_string(&r.out).unwrap();
    assert_eq!(code, 0, "{out}");
    let root_line = out
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in {out}"));
    assert!(
        root_line.contains("shared:"),
        "the container's root is shared: {out}"
    );
    delete(&b, &cfg, &r);
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = b.rootfs().to_string_lossy().to_string();
    assert!(
        !host.contains(&root),
        "mounts under the rootfs left on the host: {host}"
    );
}

fn main() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping container backend tests: they need root");
        return;
    }
    if busybox().is_none() {
        println!("skipping container backend tests: no busybox (apt-get install busybox-static)");
        return;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: &[(&str, fn())] = &[
        ("basic_effects", t_basic_effects),
        ("user_and_env", t_user_and_env),
        (
            "missing_executable_fails_create",
            t_missing_executable_fails_create,
        ),
        ("bad_mount_fails_create", t_bad_mount_fails_create),
        ("bind_mounts_and_devices", t_bind_mounts_and_devices),
        ("sysctl_and_domainname", t_sysctl_and_domainname),
        ("process_knobs", t_process_knobs),
        (
            "shared_propagation",
            t_shared_propagation_leaves_no_host_mounts,
        ),
        ("exec_kill_pause", t_exec_kill_pause),
        ("console_socket", t_console_socket),
        ("seccomp", t_seccomp),
        ("hooks_and_no_pivot", t_hooks_and_no_pivot),
        ("kill_all", t_kill_all),
        ("user_namespace", t_user_namespace),
        ("user_namespace_exec", t_user_namespace_exec),
        ("rootless", t_rootless),
        ("join_namespace", t_join_namespace),
        ("check_refuses", t_check_refuses),
    ];
    let mut failed = vec![];
    for (name, f) in tests {
        if filter.as_ref().is_some_and(|x| !name.contains(x.as_str())) {
            continue;
        }
        print!("test {name} ... ");
        let r = std::panic::catch_unwind(f);
        cleanup();
        match r {
            Ok(()) => println!("ok"),
            Err(_) => {
                println!("FAILED");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(1);
    }
}
