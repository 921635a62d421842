//! The security regression suite: attacks that the backends hold today, written as an attacker
//! writes them — static C programs (`tests/security/*.c`, built with `gcc -static`, cached by source)
//! run inside the sandbox through the `hako` binary, hostile bundles, and a hostile wasm module.
//! Each test checks what the attack saw inside (the refusal it got) and that the host is
//! untouched (a host canary process alive and unmodified, host files and directories unchanged,
//! no input injected into the caller's terminal). Where runc (container cases) or runsc (sentry
//! cases) is installed, the same attack runs against it in the same test and must hold there too.
//! The microvm backend joins the cases that apply to a guest (signals, terminals, /proc and /sys,
//! mounts, the network) where its kernel and qemu are there.
//! `docs/security.md` lists these tests and the threat model behind them.
//!
//! Every test skips with a printed reason when a facility is missing (not root, no gcc, no
//! wat2wasm, a peer runtime absent or unable to run here).

mod common;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Attack programs: C sources compiled once (per source content; later runs reuse the binary).

const SOURCES: &[(&str, &str)] = &[
    ("syscall_abi", include_str!("security/syscall_abi.c")),
    ("io_uring", include_str!("security/io_uring.c")),
    ("clone3", include_str!("security/clone3.c")),
    ("ptrace_vm", include_str!("security/ptrace_vm.c")),
    ("killall", include_str!("security/killall.c")),
    ("tiocsti", include_str!("security/tiocsti.c")),
    ("fdleak", include_str!("security/fdleak.c")),
    ("procsys", include_str!("security/procsys.c")),
    ("canary", include_str!("security/canary.c")),
    ("netattack", include_str!("security/netattack.c")),
];

type Built = Result<PathBuf, String>;

/// The static binary of `tests/security/<name>.c`, or why it cannot be built here.
fn program(name: &str) -> Built {
    static BUILT: OnceLock<Mutex<HashMap<String, Built>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(b) = built.get(name) {
        return b.clone();
    }
    let r = compile(name);
    built.insert(name.to_string(), r.clone());
    r
}

fn compile(name: &str) -> Built {
    use std::hash::{Hash, Hasher};
    let src = SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no attack program {name}"))
        .1;
    // Keyed by the source's hash: a binary built by an earlier run of the same source is reused.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    src.hash(&mut h);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("security");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let bin = dir.join(format!("{name}-{:016x}", h.finish()));
    if bin.exists() {
        return Ok(bin);
    }
    let tmp = dir.join(format!("{name}.{}", std::process::id()));
    let c = tmp.with_extension("c");
    fs::write(&c, src).unwrap();
    let o = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&tmp)
        .arg(&c)
        .output()
        .map_err(|e| format!("gcc is not installed ({e}); scripts/setup installs it"))?;
    let _ = fs::remove_file(&c);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        // A missing static libc is a machine issue; a compile error in our own source is a bug.
        if err.contains("cannot find -lc") || err.contains("No such file") {
            return Err(format!(
                "gcc -static cannot link here: {}",
                err.lines().next().unwrap_or("")
            ));
        }
        panic!("tests/security/{name}.c does not compile:\n{err}");
    }
    // Atomic: a parallel run sees the whole binary or none.
    fs::rename(&tmp, &bin).unwrap();
    Ok(bin)
}

/// Skip unless root and every named program builds.
macro_rules! ready {
    ($($prog:expr),*) => {{
        skip_unless!(need_root());
        ( $( match program($prog) {
            Ok(p) => p,
            Err(why) => {
                eprintln!("SKIPPED: {why}");
                return;
            }
        }, )* )
    }};
}

/// A busybox bundle whose `/attack` is the program `prog`, run with `args`.
fn attack_bundle(prog: &Path, args: &[&str]) -> Bundle {
    let mut argv = vec!["/attack"];
    argv.extend_from_slice(args);
    let b = Bundle::busybox(&argv);
    fs::copy(prog, b.rootfs().join("attack")).unwrap();
    b
}

// ---------------------------------------------------------------------------------------------
// Runtimes: hako's backends and the peers.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rt {
    Container,
    /// The sentry on its default platform (`samecpu` where the kernel has it, else `hybrid`).
    Sentry,
    /// The sentry on the ptrace platform (`io.hako.sentry.platform=ptrace`).
    SentryPtrace,
    /// The microvm backend (its default engine: hako's VMM where KVM can run the guest, else
    /// qemu), with the default guest kernel.
    Microvm,
    Runc,
    Runsc,
}

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::Container => "hako container",
            Rt::Sentry => "hako sentry",
            Rt::SentryPtrace => "hako sentry (ptrace platform)",
            Rt::Microvm => "hako microvm",
            Rt::Runc => "runc",
            Rt::Runsc => "runsc",
        }
    }

    fn is_sentry(self) -> bool {
        matches!(self, Rt::Sentry | Rt::SentryPtrace)
    }

    fn is_peer(self) -> bool {
        matches!(self, Rt::Runc | Rt::Runsc)
    }

    /// Why this runtime cannot be used here, if it cannot.
    fn missing(self) -> Option<String> {
        let bin = match self {
            Rt::Runc => "runc",
            Rt::Runsc => "runsc",
            Rt::Microvm => return need_microvm(),
            _ => return None,
        };
        match Command::new(bin).arg("--version").output() {
            Ok(o) if o.status.success() => None,
            _ => Some(format!("{bin} is not installed")),
        }
    }
}

/// A state root for one runtime, cleaned up on drop.
struct Runner {
    rt: Rt,
    root: PathBuf,
    ids: Vec<String>,
}

impl Runner {
    fn new(rt: Rt) -> Runner {
        Runner {
            rt,
            root: std::env::temp_dir().join(unique("hako-sec-root")),
            ids: Vec::new(),
        }
    }

    fn base(&self) -> Command {
        let mut c = match self.rt {
            Rt::Container | Rt::Sentry | Rt::SentryPtrace | Rt::Microvm => Command::new(HAKO),
            Rt::Runc => Command::new("runc"),
            Rt::Runsc => Command::new("runsc"),
        };
        c.arg("--root").arg(&self.root);
        match self.rt {
            Rt::Sentry | Rt::SentryPtrace => {
                c.args(["--backend", "sentry"]);
            }
            Rt::Microvm => {
                static AGENT: OnceLock<String> = OnceLock::new();
                c.args(["--backend", "microvm"])
                    .env("HAKO_AGENT", AGENT.get_or_init(microvm_agent));
            }
            Rt::Runsc => {
                c.args(["--platform=ptrace", "--network=none"]);
            }
            _ => {}
        }
        c
    }

    /// The bundle's path, with its config.json adjusted for this runtime (the sentry's platform).
    fn bundle(&self, b: &Bundle) -> String {
        if self.rt == Rt::SentryPtrace {
            let p = b.dir.join("config.json");
            let mut c: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            c["annotations"]["io.hako.sentry.platform"] = json!("ptrace");
            fs::write(&p, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        }
        b.dir.to_str().unwrap().to_string()
    }

    /// `run --bundle b <id>`, stdin /dev/null, output through files; `setup` may change the
    /// command (stdio, pre_exec) before it starts.
    fn run_with(&mut self, b: &Bundle, setup: impl FnOnce(&mut Command)) -> Output {
        let id = unique("sec");
        self.ids.push(id.clone());
        let mut c = self.base();
        c.args(["run", "--bundle", &self.bundle(b), &id]);
        spawn_and_wait(c, setup)
    }

    fn run(&mut self, b: &Bundle) -> Output {
        self.run_with(b, |_| {})
    }

    /// `state <id>` as JSON (runc, runsc and hako print the same fields).
    fn state(&self, id: &str) -> serde_json::Value {
        let mut c = self.base();
        c.args(["state", id]);
        let o = spawn_and_wait(c, |_| {});
        assert!(o.status.success(), "{}", describe(self.rt, &o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// `create`, then `between(pid of the sandbox's host process)`, then `start`; waits until
    /// the sandbox stopped. The output is what the workload wrote (through `create`'s stdio).
    fn create_start(&mut self, b: &Bundle, between: impl FnOnce(i32)) -> Output {
        let id = unique("sec");
        self.ids.push(id.clone());
        let out = std::env::temp_dir().join(unique("hako-sec-workload"));
        let mut c = self.base();
        c.args(["create", "--bundle", &self.bundle(b), &id]);
        let file = fs::File::create(&out).unwrap();
        let created = spawn_and_wait(c, |c| {
            c.stdout(file.try_clone().unwrap())
                .stderr(file.try_clone().unwrap());
        });
        if !created.status.success() {
            let _ = fs::remove_file(&out);
            return created;
        }
        between(self.state(&id)["pid"].as_i64().unwrap() as i32);
        let mut c = self.base();
        c.args(["start", &id]);
        let started = spawn_and_wait(c, |_| {});
        assert!(started.status.success(), "{}", describe(self.rt, &started));
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.state(&id)["status"] != "stopped" {
            assert!(
                Instant::now() < deadline,
                "{}: {id} never stopped",
                self.rt.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = Output {
            status: started.status,
            stdout: fs::read(&out).unwrap_or_default(),
            stderr: Vec::new(),
        };
        let _ = fs::remove_file(&out);
        o
    }

    /// For a peer, `None` (with a printed reason) when it could not start the bundle at all.
    fn peer_output(&self, o: Output) -> Option<Output> {
        if self.rt.is_peer() && !o.status.success() && o.stdout.is_empty() {
            eprintln!(
                "SKIPPED {}: cannot run a container here: {}",
                self.rt.name(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return None;
        }
        Some(o)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for id in &self.ids {
            let mut c = self.base();
            let _ = c
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Start `c` (stdin /dev/null, stdout/stderr to files unless `setup` says otherwise), wait at
/// most two minutes, and collect its output.
fn spawn_and_wait(mut c: Command, setup: impl FnOnce(&mut Command)) -> Output {
    let base = std::env::temp_dir().join(unique("hako-sec-out"));
    let (o, e) = (base.with_extension("out"), base.with_extension("err"));
    c.stdin(Stdio::null())
        .stdout(fs::File::create(&o).unwrap())
        .stderr(fs::File::create(&e).unwrap());
    setup(&mut c);
    let mut child = c.spawn().expect("spawn runtime");
    let status = wait_bounded(&mut child, Duration::from_secs(120));
    let out = Output {
        status,
        stdout: fs::read(&o).unwrap_or_default(),
        stderr: fs::read(&e).unwrap_or_default(),
    };
    let _ = fs::remove_file(&o);
    let _ = fs::remove_file(&e);
    out
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runtime did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(rt: Rt, o: &Output) -> String {
    format!(
        "{}: exit {:?}\nstdout:\n{}stderr:\n{}",
        rt.name(),
        o.status.code(),
        text(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run `attack` against each runtime in `rts` that can run here; `check` gets the output. A
/// peer that fails without any output is taken as unable to run here and skipped.
fn against(rts: &[Rt], attack: impl FnMut(&mut Runner) -> Output, check: impl FnMut(Rt, &Output)) {
    against_with(rts, true, attack, check)
}

/// As [`against`]; with `skip_failed_peers` false, a peer's failure goes to `check` too (for
/// attacks where refusing the bundle is the expected defence).
fn against_with(
    rts: &[Rt],
    skip_failed_peers: bool,
    mut attack: impl FnMut(&mut Runner) -> Output,
    mut check: impl FnMut(Rt, &Output),
) {
    for &rt in rts {
        if let Some(why) = rt.missing() {
            eprintln!("SKIPPED {}: {why}", rt.name());
            continue;
        }
        let mut r = Runner::new(rt);
        let o = attack(&mut r);
        let o = if skip_failed_peers {
            let Some(o) = r.peer_output(o) else { continue };
            o
        } else {
            o
        };
        eprintln!("--- {}", describe(rt, &o));
        check(rt, &o);
    }
}

// ---------------------------------------------------------------------------------------------
// Host-side witnesses.

/// A host process the sandbox tries to kill or write into (tests/security/canary.c).
struct Canary {
    child: Child,
    pid: i32,
    addr: u64,
}

impl Canary {
    fn start(bin: &Path) -> Canary {
        let info = std::env::temp_dir().join(unique("hako-canary"));
        let child = Command::new(bin)
            .arg(&info)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that a kill(-pgid) aimed at it cannot hit the tests.
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            if let Ok(s) = fs::read_to_string(&info) {
                break s;
            }
            assert!(Instant::now() < deadline, "the canary never started");
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = fs::remove_file(&info);
        let mut it = line.split_whitespace();
        let pid = it.next().unwrap().parse().unwrap();
        let addr = it.next().unwrap().parse().unwrap();
        Canary { child, pid, addr }
    }

    /// Alive, and its secret as it was.
    fn assert_untouched(&mut self, after: &str) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the host canary died after {after}"
        );
        let mut mem = fs::File::open(format!("/proc/{}/mem", self.pid)).unwrap();
        mem.seek(SeekFrom::Start(self.addr)).unwrap();
        let mut buf = [0u8; 13];
        mem.read_exact(&mut buf).unwrap();
        assert_eq!(
            &buf, b"CANARY-INTACT",
            "the host canary's memory was written after {after}"
        );
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host directory with one file in it, whose listing must not change.
struct CanaryDir {
    dir: PathBuf,
}

impl CanaryDir {
    fn new() -> CanaryDir {
        let dir = std::env::temp_dir().join(unique("hako-canary-dir"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("keep"), "HOST-SECRET\n").unwrap();
        // Root-only, as a secret would be.
        fs::set_permissions(
            dir.join("keep"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        CanaryDir { dir }
    }

    fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    fn secret(&self) -> String {
        self.dir.join("keep").to_str().unwrap().to_string()
    }

    fn assert_untouched(&self, after: &str) {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["keep"],
            "the host directory {} changed after {after}",
            self.path()
        );
        assert_eq!(
            fs::read_to_string(self.dir.join("keep")).unwrap(),
            "HOST-SECRET\n"
        );
    }
}

impl Drop for CanaryDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Host kernel settings an attack tries to write; they must read the same afterwards.
const HOST_KNOBS: &[&str] = &[
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/kernel/hostname",
    "/proc/sys/vm/overcommit_memory",
    "/sys/kernel/rcu_expedited",
    "/sys/kernel/reboot/mode",
];

fn host_knobs() -> Vec<(String, String)> {
    HOST_KNOBS
        .iter()
        .map(|p| (p.to_string(), fs::read_to_string(p).unwrap_or_default()))
        .collect()
}

/// Lines of `out` that report a step that got through ("<what>: ok").
fn successes(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.ends_with(": ok")).collect()
}

// ---------------------------------------------------------------------------------------------
// The attacks.

/// The i386 entry (`int 0x80`) and x32 numbers, against a spec seccomp profile that denies
/// mkdir and getuid on every architecture (what podman and docker send: x86_64, x86, x32), and
/// against the sentry's trap filter. A call through either entry must not run unfiltered.
#[test]
fn int80_and_x32_syscalls_do_not_bypass_the_filters() {
    let (prog,) = ready!("syscall_abi");
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat", "getuid", "getuid32"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let host_hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    against(
        &[
            Rt::Container,
            Rt::Runc,
            Rt::Sentry,
            Rt::SentryPtrace,
            Rt::Runsc,
        ],
        |r| {
            let mut b = attack_bundle(&prog, &[]);
            if matches!(r.rt, Rt::Container | Rt::Runc) {
                b.edit(|c| c["linux"]["seccomp"] = profile.clone());
            }
            let o = r.run(&b);
            // The rootfs is the host directory (container) or the lower layer (sentry): the
            // i386 or x32 mkdir must not have reached it.
            assert!(
                !b.rootfs().join("made-by-int80").exists(),
                "{}: int 0x80 mkdir reached the host rootfs",
                r.rt.name()
            );
            assert!(
                !b.rootfs().join("made-by-x32").exists(),
                "{}: x32 mkdir reached the host rootfs",
                r.rt.name()
            );
            o
        },
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            assert!(out.contains("made-by-int80: absent\n"), "{d}");
            assert!(out.contains("made-by-x32: absent\n"), "{d}");
            match rt {
                // seccompiler's architecture check kills an i386 call outright; an x32 number
                // under a default-ALLOW profile is killed too.
                Rt::Container => {
                    for l in ["int80-mkdir", "int80-getuid", "x32-mkdir", "x32-getuid"] {
                        assert!(
                            out.contains(&format!("{l}: killed by signal 31\n")),
                            "{l}: {d}"
                        );
                    }
                }
                // The trap filter kills any non-x86_64 call and refuses x32 numbers (ENOSYS);
                // neither reaches the host as the host uid (65534) would have answered.
                Rt::Sentry | Rt::SentryPtrace => {
                    assert!(out.contains("int80-mkdir: killed by signal 31\n"), "{d}");
                    assert!(out.contains("int80-getuid: killed by signal 31\n"), "{d}");
                    assert!(out.contains("x32-mkdir: returned -38\n"), "{d}");
                    assert!(out.contains("x32-getuid: returned -38\n"), "{d}");
                }
                _ => {
                    assert!(!out.contains("int80-mkdir: returned 0\n"), "{d}");
                    assert!(!out.contains("x32-mkdir: returned 0\n"), "{d}");
                }
            }
        },
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_hostname
    );
}

/// io_uring runs file operations past per-syscall filters: the sentry must refuse the ring, the
/// container must keep its operations inside the container's root.
#[test]
fn io_uring_is_refused_or_confined() {
    let (prog,) = ready!("io_uring");
    let canary = CanaryDir::new();
    let (dir, secret) = (canary.path().to_string(), canary.secret());
    against(
        &[
            Rt::Container,
            Rt::Runc,
            Rt::Sentry,
            Rt::SentryPtrace,
            Rt::Runsc,
        ],
        |r| r.run(&attack_bundle(&prog, &[&dir, &secret])),
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            assert!(!out.contains("HOST-SECRET"), "{d}");
            match rt {
                Rt::Sentry | Rt::SentryPtrace => {
                    assert_eq!(out, "io_uring_setup: errno 38\n", "{d}")
                }
                Rt::Container => {
                    // The ring works (unless the host disables io_uring); its ".." walks stop
                    // at the container's root, where the host paths do not exist.
                    if !out.starts_with("io_uring_setup: errno") {
                        assert_eq!(out, "io_uring_setup: ok\nmkdirat: -2\nopenat: -2\n", "{d}")
                    }
                }
                _ => assert!(
                    out.starts_with("io_uring_setup: errno") || out.contains("openat: -"),
                    "{d}"
                ),
            }
            canary.assert_untouched(rt.name());
        },
    );
}

/// clone3: the sentry refuses it (callers fall back to clone); in the container a clone3'd user
/// namespace gets full capabilities there but cannot lift the read-only /proc/sys (locked
/// mounts) nor write kernel.core_pattern.
#[test]
fn clone3_and_a_new_user_namespace_do_not_unlock_the_host() {
    let (prog,) = ready!("clone3");
    let before = host_knobs();
    against(
        &[
            Rt::Container,
            Rt::Runc,
            Rt::Sentry,
            Rt::SentryPtrace,
            Rt::Runsc,
        ],
        |r| r.run(&attack_bundle(&prog, &[])),
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            let oks: Vec<&str> = successes(&out)
                .into_iter()
                .filter(|l| !matches!(*l, "clone3 newuser: ok" | "map uid 0: ok"))
                .collect();
            assert!(oks.is_empty(), "{oks:?} got through: {d}");
            match rt {
                Rt::Sentry | Rt::SentryPtrace => {
                    assert_eq!(out, "clone3: errno 38\nclone3 newuser: errno 38\n", "{d}")
                }
                Rt::Container => {
                    assert!(out.starts_with("clone3: child exit 7\n"), "{d}");
                    // (A host that forbids unprivileged user namespaces refuses the second.)
                    if out.contains("clone3 newuser: ok") {
                        assert!(out.contains("child write core_pattern: errno"), "{d}");
                    }
                }
                _ => {}
            }
            assert_eq!(host_knobs(), before, "{}", rt.name());
        },
    );
}

/// ptrace and process_vm_writev against a host process (by its host pid), the parent, pid 1,
/// and PTRACE_TRACEME; plus a read-only scan of host pids. The canary stays alive and intact.
#[test]
fn ptrace_and_process_vm_writev_cannot_reach_host_processes() {
    let (prog, canary_bin) = ready!("ptrace_vm", "canary");
    let mut canary = Canary::start(&canary_bin);
    let (pid, addr) = (canary.pid.to_string(), canary.addr.to_string());
    against(
        &[
            Rt::Container,
            Rt::Runc,
            Rt::Sentry,
            Rt::SentryPtrace,
            Rt::Runsc,
        ],
        |r| r.run(&attack_bundle(&prog, &[&pid, &addr])),
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            assert!(out.contains("pids readable: 0\n"), "{d}");
            assert!(out.contains("pids present: 0\n"), "{d}");
            for step in [
                "ptrace attach canary",
                "ptrace seize canary",
                "process_vm_writev canary",
                "process_vm_readv canary",
                "kill canary",
            ] {
                assert!(!out.contains(&format!("{step}: ok")), "{step}: {d}");
            }
            match rt {
                // The canary's pid does not exist in the container's pid namespace.
                Rt::Container => {
                    assert!(out.contains("ptrace attach canary: errno 3\n"), "{d}");
                    assert!(out.contains("process_vm_writev canary: errno 3\n"), "{d}");
                }
                // The sentry never passes these to the host: EPERM, even for TRACEME (the
                // sentry is the tracer and stays so).
                Rt::Sentry | Rt::SentryPtrace => {
                    for step in [
                        "ptrace attach canary",
                        "ptrace seize canary",
                        "ptrace attach parent",
                        "ptrace seize parent",
                        "ptrace attach pid1",
                        "ptrace seize pid1",
                        "process_vm_writev canary",
                        "process_vm_readv canary",
                        "ptrace traceme",
                    ] {
                        assert!(out.contains(&format!("{step}: errno 1\n")), "{step}: {d}");
                    }
                }
                _ => {}
            }
            canary.assert_untouched(rt.name());
        },
    );
}

/// The sentry's own host process (runsc's sandbox process), attacked by its host pid, which the
/// test hands to the workload through a bind mount once the sandbox exists: ptrace attach and
/// seize, process_vm_writev/readv (at address 0: a permitted call would answer EFAULT), kill 0.
#[test]
fn the_sentry_itself_cannot_be_traced_written_or_signalled() {
    let (prog,) = ready!("ptrace_vm");
    against(
        &[Rt::Sentry, Rt::SentryPtrace, Rt::Runsc],
        |r| {
            let mut b = attack_bundle(&prog, &["@/target/pid"]);
            let dir = b.dir.join("target");
            fs::create_dir_all(&dir).unwrap();
            let src = dir.to_str().unwrap().to_string();
            b.edit(|c| {
                c["mounts"].as_array_mut().unwrap().push(
                    json!({"destination": "/target", "type": "bind", "source": src, "options": ["rbind"]}),
                )
            });
            r.create_start(&b, |pid| {
                fs::write(dir.join("pid.tmp"), format!("{pid} 0 sentry\n")).unwrap();
                fs::rename(dir.join("pid.tmp"), dir.join("pid")).unwrap();
            })
        },
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            for step in [
                "ptrace attach sentry",
                "ptrace seize sentry",
                "process_vm_writev sentry",
                "process_vm_readv sentry",
                "kill sentry",
            ] {
                let line = out.lines().find(|l| l.starts_with(&format!("{step}: ")));
                let Some(line) = line else {
                    panic!("{step} not reported: {d}")
                };
                assert!(
                    line.ends_with("errno 1")
                        || line.ends_with("errno 3")
                        || line.ends_with("errno 38"),
                    "{step} reached the runtime's host process: {d}"
                );
            }
            if rt.is_sentry() {
                assert!(out.contains("ptrace attach sentry: errno 1\n"), "{d}");
                assert!(out.contains("process_vm_writev sentry: errno 1\n"), "{d}");
                assert!(out.contains("kill sentry: errno 3\n"), "{d}");
            }
        },
    );
}

/// kill(-1, SIGKILL) (which does kill a sibling inside), and kill of a host process by pid and
/// by process group, from inside. Each runtime first gets kill(-1, SIGCONT): the same target
/// choice, but should it ever reach the host it only wakes processes, and the canary records it;
/// SIGKILL follows only when that held, so a regression cannot take the test machine down.
#[test]
fn kill_minus_one_spares_host_processes() {
    let (prog, canary_bin) = ready!("killall", "canary");
    let mut canary = Canary::start(&canary_bin);
    let pid = canary.pid.to_string();
    let mut held = Vec::new();
    for sig in ["CONT", "KILL"] {
        let rts: Vec<Rt> = if sig == "CONT" {
            vec![
                Rt::Container,
                Rt::Runc,
                Rt::Sentry,
                Rt::SentryPtrace,
                Rt::Runsc,
                Rt::Microvm,
            ]
        } else {
            std::mem::take(&mut held)
        };
        against(
            &rts,
            |r| r.run(&attack_bundle(&prog, &[&pid, sig])),
            |rt, o| {
                let out = text(o);
                let d = describe(rt, o);
                assert!(out.contains("still here\n"), "{d}");
                // kill(-1) did act, on the sandbox's own processes.
                let sibling = if sig == "CONT" {
                    "sibling: exited 42\n"
                } else {
                    "sibling: killed by signal 9\n"
                };
                assert!(out.contains(&format!("kill -1: ok\n{sibling}")), "{d}");
                assert!(!out.contains("kill canary: ok"), "{d}");
                assert!(!out.contains("kill -canary: ok"), "{d}");
                if !rt.is_peer() {
                    assert!(out.contains("kill canary: errno 3\n"), "{d}");
                    assert!(out.contains("kill -canary: errno 3\n"), "{d}");
                }
                canary.assert_untouched(&format!("{} (kill -1 with SIG{sig})", rt.name()));
                held.push(rt);
            },
        );
    }
}

/// Network attacks (issue 12), from a sandbox with its own network namespace and without
/// CAP_NET_RAW or CAP_NET_ADMIN (tests/security/netattack.c): a TCP listener the test holds on
/// the host's 127.0.0.1 and one in the host's abstract AF_UNIX namespace must stay unreached;
/// raw and packet sockets, route netlink changes (an address on lo, lo down) and SCM_RIGHTS of
/// fd numbers the sandbox does not own must fail. The sentry, whose sockets are host sockets
/// it opens on the sandbox's behalf, must also refuse every netlink protocol but route (the
/// kernel-backed runtimes leave those to the host kernel, in the sandbox's namespace). The
/// host's interfaces and addresses read the same afterwards.
#[test]
fn network_attacks_stay_in_the_sandbox() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let (prog,) = ready!("netattack");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let name = format!("hako-sec-{port}");
    let abs =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    abs.set_nonblocking(true).unwrap();
    let host_net = || {
        let o = Command::new("ip").args(["-o", "addr"]).output();
        o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let before = host_net();
    against(
        &[
            Rt::Container,
            Rt::Runc,
            Rt::Sentry,
            Rt::SentryPtrace,
            Rt::Runsc,
            Rt::Microvm,
        ],
        |r| r.run(&attack_bundle(&prog, &[&port])),
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            assert!(out.contains("still here\n"), "{d}");
            for step in [
                "connect host loopback",
                "connect host abstract",
                "raw socket",
                "packet socket",
                "scm_rights unowned",
                "netlink newaddr",
                "netlink setlink",
            ] {
                assert!(
                    !out.contains(&format!("{step}: ok")),
                    "{}: {step} got through\n{d}",
                    rt.name()
                );
                if !rt.is_peer() {
                    assert!(out.contains(&format!("{step}: errno")), "{d}");
                }
            }
            if rt.is_sentry() {
                for proto in ["audit", "uevent", "netfilter", "generic"] {
                    let line = format!("netlink {proto} socket: errno");
                    assert!(out.contains(&line), "{d}");
                }
                assert!(out.contains("netlink route read: ok"), "{d}");
            }
            for (what, r) in [
                ("the host's loopback listener", tcp.accept().map(|_| ())),
                (
                    "the host's abstract Unix listener",
                    abs.accept().map(|_| ()),
                ),
            ] {
                assert_eq!(
                    r.unwrap_err().kind(),
                    std::io::ErrorKind::WouldBlock,
                    "{}: {what} was reached\n{d}",
                    rt.name()
                );
            }
            assert_eq!(
                host_net(),
                before,
                "{}: the host's addresses changed",
                rt.name()
            );
        },
    );
}

/// TIOCSTI: the caller's terminal is the sandbox's stdio (terminal: false, as `hako run` in a
/// shell), and the sandbox tries to push "echo INJECTED" into its input queue. Nothing may
/// arrive there. The sentry (and runsc) answer ENOTTY; runc relays stdio through pipes.
#[test]
fn tiocsti_cannot_inject_into_the_callers_terminal() {
    tiocsti_attack(
        &[
            Rt::Sentry,
            Rt::SentryPtrace,
            Rt::Runsc,
            Rt::Runc,
            Rt::Microvm,
        ],
        false,
    );
}

/// The same attack on the container backend. Today the workload stays in the caller's session
/// with the caller's terminal as its controlling tty and stdio, so TIOCSTI (allowed on one's
/// own controlling tty without any capability while dev.tty.legacy_tiocsti=1) injects input
/// that the caller's shell runs after the container exits. `hako exec` (without -t) likewise.
#[test]
fn tiocsti_cannot_inject_into_the_callers_terminal_container() {
    tiocsti_attack(&[Rt::Runc, Rt::Container], true);
    tiocsti_attack(&[Rt::Container], false);
}

/// Run the TIOCSTI program with the caller's terminal as stdio: by `run`, or with `exec` into a
/// running container.
fn tiocsti_attack(rts: &[Rt], exec: bool) {
    let (prog,) = ready!("tiocsti");
    against(
        rts,
        |r| {
            let mut b = attack_bundle(&prog, &[]);
            let id = unique("sec");
            r.ids.push(id.clone());
            let mut c = r.base();
            if exec {
                b.edit(|c| c["process"]["args"] = json!(["sleep", "1000"]));
                let mut d = r.base();
                d.args(["run", "--detach", "--bundle", &r.bundle(&b), &id]);
                let o = spawn_and_wait(d, |_| {});
                assert!(o.status.success(), "{}", describe(r.rt, &o));
                c.args(["exec", &id, "/attack"]);
            } else {
                c.args(["run", "--bundle", &r.bundle(&b), &id]);
            }
            let (o, injected) = on_callers_tty(c);
            assert!(
                injected.is_empty(),
                "{}{}: the caller's terminal received input from the sandbox: {:?}",
                r.rt.name(),
                if exec { " exec" } else { "" },
                String::from_utf8_lossy(&injected)
            );
            o
        },
        |rt, o| {
            let out = text(o).replace("\r\n", "\n");
            let d = describe(rt, o);
            assert!(
                !successes(&out).iter().any(|l| l.starts_with("tiocsti")),
                "{d}"
            );
            if !rt.is_peer() {
                assert!(out.contains("tiocsti stdin: errno"), "{d}");
            }
        },
    );
}

/// Run `c` as a login shell would run it: a session leader whose controlling terminal (a fresh
/// pty in raw mode) is its stdin, stdout and stderr. Returns its output (what reached the pty
/// master) and the input left queued on the terminal afterwards.
fn on_callers_tty(c: Command) -> (Output, Vec<u8>) {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut t = tcgetattr(&pty.slave).unwrap();
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t).unwrap();
    let slave = pty.slave;
    let mut o = spawn_and_wait(c, |c| {
        c.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: setsid and TIOCSCTTY between fork and exec, on the stdin just set up.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    o.stdout = drain(&pty.master);
    (o, drain(&slave))
}

/// Everything readable right now on `fd`, without blocking.
fn drain(fd: &OwnedFd) -> Vec<u8> {
    let raw = fd.as_raw_fd();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut p = libc::pollfd {
            fd: raw,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll and read on an fd we own, into a local buffer.
        let n = unsafe {
            if libc::poll(&mut p, 1, 0) <= 0 || p.revents & libc::POLLIN == 0 {
                break;
            }
            libc::read(raw, buf.as_mut_ptr().cast(), buf.len())
        };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    out
}

/// Give the runtime an fd to a host secret that was not marked close-on-exec (an engine's
/// leak), plus one preserved fd on the container backend; the workload sees only 0, 1, 2 and
/// the preserved one, and never the secret. `hako exec` is attacked the same way.
#[test]
fn no_host_fd_leaks_into_the_sandbox() {
    let (prog,) = ready!("fdleak");
    let canary = CanaryDir::new();
    let leak = |c: &mut Command, preserved: Option<OwnedFd>| {
        let secret = fs::File::open(canary.secret()).unwrap();
        // SAFETY: dup2 between fork and exec onto fixed numbers; the sources stay open in the
        // parent until the closure (and the command) is dropped.
        unsafe {
            c.pre_exec(move || {
                // Via high numbers first, so that neither source is overwritten by the other.
                libc::dup2(secret.as_raw_fd(), 200);
                if let Some(p) = &preserved {
                    libc::dup2(p.as_raw_fd(), 201);
                    libc::dup2(201, 3);
                    libc::close(201);
                }
                libc::dup2(200, 5);
                libc::close(200);
                Ok(())
            });
        }
    };
    against(
        &[
            Rt::Container,
            Rt::Runc,
            Rt::Sentry,
            Rt::SentryPtrace,
            Rt::Runsc,
            Rt::Microvm,
        ],
        |r| {
            let b = attack_bundle(&prog, &[]);
            let preserve = preserves_fds(r.rt);
            let id = unique("sec");
            r.ids.push(id.clone());
            let mut c = r.base();
            c.arg("run");
            if preserve {
                c.args(["--preserve-fds", "1"]);
            }
            c.args(["--bundle", &r.bundle(&b), &id]);
            let (pr, _pw) = nix::unistd::pipe().unwrap();
            spawn_and_wait(c, |c| leak(c, preserve.then_some(pr)))
        },
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            assert!(!out.contains("HOST-SECRET"), "{d}");
            assert!(!out.contains(canary.path()), "{d}");
            let preserve = preserves_fds(rt);
            let mut fds: Vec<&str> = out.lines().filter(|l| l.starts_with("open fd ")).collect();
            fds.sort();
            let want: Vec<&str> = if preserve { vec!["open fd 3"] } else { vec![] };
            assert_eq!(fds, want, "{d}");
            if preserve {
                assert!(out.contains("fd 3 -> pipe:"), "{d}");
            }
        },
    );

    // hako exec into a running container, with the same leak in the exec caller.
    skip_unless!(Rt::Container.missing());
    let mut r = Runner::new(Rt::Container);
    let b = attack_bundle(&prog, &[]);
    let mut b = b;
    b.edit(|c| c["process"]["args"] = json!(["sleep", "1000"]));
    let id = unique("sec");
    r.ids.push(id.clone());
    let mut c = r.base();
    c.args(["run", "--detach", "--bundle", b.dir.to_str().unwrap(), &id]);
    let o = spawn_and_wait(c, |_| {});
    assert!(o.status.success(), "{}", describe(Rt::Container, &o));
    let mut c = r.base();
    c.args(["exec", &id, "/attack"]);
    let o = spawn_and_wait(c, |c| leak(c, None));
    let out = text(&o);
    assert!(o.status.success(), "{}", describe(Rt::Container, &o));
    assert!(
        !out.contains("HOST-SECRET") && !out.contains(canary.path()),
        "exec: {out}"
    );
    assert!(!out.contains("open fd"), "exec leaked an fd: {out}");
}

/// Whether the fd-leak case passes `--preserve-fds 1` to `rt` (the sandboxes that run the
/// workload on the host kernel; a sentry or a guest has no host fds to hand on).
fn preserves_fds(rt: Rt) -> bool {
    matches!(rt, Rt::Container | Rt::Runc)
}

/// A hostile bundle: rootfs symlinks that point out of the rootfs (absolute, "/../..", relative),
/// with tmpfs and bind mounts on them and below them, and a destination that climbs with "..".
/// The mounts must land inside the rootfs; the host directory the links name stays as it was.
#[test]
fn symlinked_mount_destinations_stay_in_the_container_root() {
    skip_unless!(need_root());
    let canary = CanaryDir::new();
    against(
        &[Rt::Container, Rt::Runc],
        |r| {
            let b = symlinked_mounts_bundle(&canary);
            let o = r.run(&b);
            canary.assert_untouched(r.rt.name());
            // What was made for the mounts was made inside the rootfs.
            let inside = b.rootfs().join(canary.path().trim_start_matches('/'));
            assert!(
                inside.is_dir(),
                "the mount points were not made inside the rootfs: {}",
                describe(r.rt, &o)
            );
            o
        },
        |rt, o| {
            let d = describe(rt, o);
            assert_eq!(o.status.code(), Some(0), "{d}");
            assert_eq!(text(o), "done\n", "{d}");
            canary.assert_untouched(rt.name());
        },
    );
}

/// The same hostile bundle on the sentry (and runsc): the mounts must land in the sandbox's own
/// root, never on the host paths the symlinks name (issue 10, escape 2).
///
/// The sentry (like runsc) refuses a destination whose symlink leads nowhere inside the root,
/// with one error line; runc and the container backend make it inside the rootfs. The microvm
/// refuses the bundle's writable bind mount (a guest cannot share one), also with one line.
/// Either is safe: what matters is that the host directory stays untouched.
#[test]
fn symlinked_mount_destinations_stay_in_the_sentry_root() {
    skip_unless!(need_root());
    let canary = CanaryDir::new();
    against(
        &[Rt::Sentry, Rt::SentryPtrace, Rt::Runsc, Rt::Microvm],
        |r| {
            let o = r.run(&symlinked_mounts_bundle(&canary));
            canary.assert_untouched(r.rt.name());
            o
        },
        |rt, o| {
            let d = describe(rt, o);
            if o.status.success() {
                assert_eq!(text(o), "done\n", "{d}");
            } else if matches!(rt, Rt::Sentry | Rt::SentryPtrace) {
                let err = String::from_utf8_lossy(&o.stderr);
                assert_eq!(err.lines().count(), 1, "{d}");
                assert!(err.contains("leads nowhere inside the root"), "{d}");
            } else if rt == Rt::Microvm {
                let err = String::from_utf8_lossy(&o.stderr);
                assert_eq!(err.lines().count(), 1, "{d}");
                assert!(
                    err.contains("cannot share a writable host directory"),
                    "{d}"
                );
            }
            canary.assert_untouched(rt.name());
        },
    );
}

/// Rootfs symlinks to the host directory `canary` names (absolute, "/../..", relative), tmpfs
/// and bind mounts on them and below them, a destination that climbs with "..", and a workload
/// that writes through each.
fn symlinked_mounts_bundle(canary: &CanaryDir) -> Bundle {
    let host = canary.path().to_string();
    let script = format!(
        "echo pwned > /data/pwned && echo pwned > /abs/sub/deep/pwned && echo pwned > /rel/file \
         && echo pwned > {host}/dotdot/pwned && echo done"
    );
    let mut b = Bundle::busybox(&["sh", "-c", &script]);
    let root = b.rootfs();
    std::os::unix::fs::symlink(
        format!("/../../../../../../..{host}/made"),
        root.join("data"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&host, root.join("abs")).unwrap();
    std::os::unix::fs::symlink(format!("../../../../../../../..{host}"), root.join("rel")).unwrap();
    let src = b.dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(b.dir.join("srcfile"), "bundle file\n").unwrap();
    let (src, srcfile) = (
        src.to_str().unwrap().to_string(),
        b.dir.join("srcfile").to_str().unwrap().to_string(),
    );
    let last = host.rsplit('/').next().unwrap().to_string();
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/abs/sub/deep", "type": "bind", "source": src, "options": ["rbind"]}));
        m.push(json!({"destination": "/rel/file", "type": "bind", "source": srcfile, "options": ["bind"]}));
        m.push(json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}));
        m.push(json!({"destination": format!("/../../../../../..{host}/../{last}/dotdot"), "type": "tmpfs", "source": "tmpfs"}));
    });
    b
}

/// A rootfs symlink to /proc with a bind mount on it puts a directory of the bundle's choosing
/// over the container's /proc (runc's CVE-2019-19921 class). The runtime must refuse it, or at
/// least not trust that directory for its own setup: here it lists only fds 0-3 in `self/fd`,
/// while the caller leaked an fd to a host secret, which must still not reach the workload.
/// runc refuses the mount ("cannot be mounted because it is not of type proc").
#[test]
fn a_mount_over_proc_through_a_symlink_is_refused_or_harmless() {
    let (prog,) = ready!("fdleak");
    let canary = CanaryDir::new();
    against_with(
        &[Rt::Container, Rt::Runc],
        false,
        |r| {
            let b = attack_bundle(&prog, &[]);
            std::os::unix::fs::symlink("/proc", b.rootfs().join("evil")).unwrap();
            let fake = b.dir.join("fakeproc");
            fs::create_dir_all(fake.join("self/fd")).unwrap();
            for n in ["0", "1", "2", "3"] {
                fs::write(fake.join("self/fd").join(n), "").unwrap();
            }
            let mut b = b;
            let fake = fake.to_str().unwrap().to_string();
            b.edit(|c| {
                c["mounts"].as_array_mut().unwrap().push(
                    json!({"destination": "/evil", "type": "bind", "source": fake, "options": ["rbind"]}),
                )
            });
            let secret = fs::File::open(canary.secret()).unwrap();
            r.run_with(&b, |c| {
                // SAFETY: dup2 between fork and exec onto a fixed number (an engine's leak).
                unsafe {
                    c.pre_exec(move || {
                        libc::dup2(secret.as_raw_fd(), 200);
                        libc::dup2(200, 5);
                        libc::close(200);
                        Ok(())
                    });
                }
            })
        },
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            assert!(!out.contains("HOST-SECRET"), "{d}");
            assert!(!out.contains("open fd"), "{d}");
            // Refused before the workload ran, with one line naming /proc (hako and runc).
            assert!(
                !o.status.success(),
                "the mount over /proc was accepted: {d}"
            );
            assert!(out.is_empty(), "{d}");
            if matches!(rt, Rt::Container) {
                let err = String::from_utf8_lossy(&o.stderr);
                assert_eq!(err.lines().count(), 1, "{d}");
                assert!(err.contains("only a proc mount may go on /proc"), "{d}");
            }
            canary.assert_untouched(rt.name());
        },
    );
}

/// Writes to host-global kernel state through /proc and /sys with the default spec (read-only
/// /proc/sys, /proc/sysrq-trigger and /sys), and remounts to lift that.
#[test]
fn proc_and_sys_writes_fail_with_the_default_spec() {
    let (prog,) = ready!("procsys");
    let before = host_knobs();
    against(
        &[
            Rt::Container,
            Rt::Runc,
            Rt::Sentry,
            Rt::SentryPtrace,
            Rt::Runsc,
            Rt::Microvm,
        ],
        |r| r.run(&attack_bundle(&prog, &[])),
        |rt, o| {
            let out = text(o);
            let d = describe(rt, o);
            assert!(out.contains("remount /sys:"), "{d}");
            assert!(
                successes(&out).is_empty(),
                "{:?} got through: {d}",
                successes(&out)
            );
            assert_eq!(host_knobs(), before, "{}", rt.name());
        },
    );
}

// ---------------------------------------------------------------------------------------------
// wasm: preopen traversal.

/// Builds a WASI preview 1 module (WAT) that tries each path from the rootfs preopen (fd 3)
/// and prints "<label>: opened" plus what it read, or "<label>: refused".
struct WasmAttack {
    data: Vec<(u32, Vec<u8>)>,
    next: u32,
    body: String,
    /// The preopen the paths are resolved from.
    dirfd: u32,
    /// How many preopens the module gets (fds 3..3+n); any fd above is an extra.
    preopens: u32,
}

enum Try<'a> {
    Read(&'a str),
    Create(&'a str),
    /// path_symlink(target, link), then open the link.
    SymlinkRead(&'a str, &'a str),
}

impl WasmAttack {
    fn new(dirfd: u32, preopens: u32) -> WasmAttack {
        WasmAttack {
            data: Vec::new(),
            next: 8192,
            body: String::new(),
            dirfd,
            preopens,
        }
    }

    fn bytes(&mut self, b: &[u8]) -> (u32, usize) {
        let at = self.next;
        self.data.push((at, b.to_vec()));
        self.next += (b.len() as u32 + 16) & !15;
        (at, b.len())
    }

    fn attempt(&mut self, label: &str, t: Try) {
        let (opened, ol) = self.bytes(format!("{label}: opened\n").as_bytes());
        let (refused, rl) = self.bytes(format!("{label}: refused\n").as_bytes());
        let (path, oflags, rights) = match t {
            Try::Read(p) => (p, 0, 2),
            Try::Create(p) => (p, 1, 64),
            Try::SymlinkRead(target, link) => {
                let (tp, tl) = self.bytes(target.as_bytes());
                let (lp, ll) = self.bytes(link.as_bytes());
                self.body += &format!(
                    "(drop (call $path_symlink (i32.const {tp}) (i32.const {tl}) (i32.const {}) (i32.const {lp}) (i32.const {ll})))\n",
                    self.dirfd
                );
                (link, 0, 2)
            }
        };
        let (pp, pl) = self.bytes(path.as_bytes());
        let (pw, pwl) = self.bytes(b"pwned by wasm\n");
        let act = if oflags == 1 {
            format!("(drop (call $say_fd (i32.load (i32.const 32)) (i32.const {pw}) (i32.const {pwl})))")
        } else {
            "(call $dump (i32.load (i32.const 32)))".to_string()
        };
        let dirfd = self.dirfd;
        self.body += &format!(
            "(if (i32.eqz (call $path_open (i32.const {dirfd}) (i32.const 1) (i32.const {pp}) (i32.const {pl}) \
               (i32.const {oflags}) (i64.const {rights}) (i64.const {rights}) (i32.const 0) (i32.const 32)))\n\
               (then (drop (call $say_fd (i32.const 1) (i32.const {opened}) (i32.const {ol}))) {act}\n\
                 (drop (call $fd_close (i32.load (i32.const 32)))))\n\
               (else (drop (call $say_fd (i32.const 1) (i32.const {refused}) (i32.const {rl})))))\n"
        );
    }

    /// Report every open fd beyond stdio and the preopens.
    fn extra_fds(&mut self) {
        for fd in 3 + self.preopens..16 {
            let (m, ml) = self.bytes(format!("extra fd {fd}\n").as_bytes());
            self.body += &format!(
                "(if (i32.eqz (call $fd_fdstat_get (i32.const {fd}) (i32.const 64))) \
                   (then (drop (call $say_fd (i32.const 1) (i32.const {m}) (i32.const {ml})))))\n"
            );
        }
    }

    fn wat(&self) -> String {
        let mut s = String::from(
            r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $say_fd (param $fd i32) (param $p i32) (param $len i32) (result i32)
    (i32.store (i32.const 16) (local.get $p))
    (i32.store (i32.const 20) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 8)))
  (func $dump (param $fd i32)
    (i32.store (i32.const 40) (i32.const 1024))
    (i32.store (i32.const 44) (i32.const 4096))
    (if (i32.eqz (call $fd_read (local.get $fd) (i32.const 40) (i32.const 1) (i32.const 48)))
      (then (drop (call $say_fd (i32.const 1) (i32.const 1024) (i32.load (i32.const 48)))))))
"#,
        );
        for (at, b) in &self.data {
            let esc: String = b.iter().map(|c| format!("\\{c:02x}")).collect();
            s += &format!("  (data (i32.const {at}) \"{esc}\")\n");
        }
        s += "  (func (export \"_start\")\n";
        s += &self.body;
        s += "))\n";
        s
    }
}

/// A wasm module tries to leave its preopened directory: "..", absolute paths, symlinks already
/// in the image (absolute and relative), symlinks it makes itself, a file created through "..",
/// and fds beyond its preopens. Three preopens are attacked: the rootfs ("/"), a bind-mounted
/// directory (whose host parent holds a secret), and the cwd ("." when the cwd is not "/").
/// The host secrets stay unread, nothing is created outside.
#[test]
fn wasm_preopen_traversal_stays_in_the_rootfs() {
    skip_unless!(need_root());
    if Command::new("wat2wasm").arg("--version").output().is_err() {
        eprintln!("SKIPPED: wat2wasm missing (apt-get install wabt)");
        return;
    }
    // (name, cwd, bind-mount a directory at /data?, dirfd, preopens, the dir the dirfd is (in
    // the bundle), the path from there up to the bundle directory)
    let scenarios = [
        ("rootfs", "/", false, 3, 1, "rootfs", ".."),
        ("bind", "/", true, 4, 2, "shared", ".."),
        ("cwd", "/a", false, 3, 2, "rootfs/a", "../.."),
    ];
    for (name, cwd, bind, dirfd, preopens, base, up) in scenarios {
        wasm_traversal(name, cwd, bind, dirfd, preopens, base, up);
    }
}

fn wasm_traversal(
    name: &str,
    cwd: &str,
    bind: bool,
    dirfd: u32,
    preopens: u32,
    base: &str,
    up: &str,
) {
    let canary = CanaryDir::new();
    let dir = std::env::temp_dir().join(unique("hako-sec-wasm"));
    let rootfs = dir.join("rootfs");
    let base = dir.join(base);
    fs::create_dir_all(rootfs.join("a")).unwrap();
    fs::create_dir_all(base.join("sub")).unwrap();
    fs::write(base.join("inside.txt"), "INSIDE\n").unwrap();
    // The bundle directory holds a secret right next to the rootfs and the bind source.
    fs::write(dir.join("host-secret"), "HOST-SECRET\n").unwrap();
    let secret = canary.secret();
    std::os::unix::fs::symlink(&secret, base.join("abs-link")).unwrap();
    std::os::unix::fs::symlink(format!("{up}/host-secret"), base.join("rel-link")).unwrap();
    std::os::unix::fs::symlink(canary.path(), base.join("out-dir")).unwrap();

    let (dotdot, deep, create) = (
        format!("{up}/host-secret"),
        format!("sub/../{up}/host-secret"),
        format!("{up}/pwned-by-wasm"),
    );
    let mut w = WasmAttack::new(dirfd, preopens);
    w.attempt("inside", Try::Read("inside.txt"));
    w.attempt("dotdot", Try::Read(&dotdot));
    w.attempt("deep-dotdot", Try::Read(&deep));
    w.attempt("absolute", Try::Read(&secret));
    w.attempt("abs-link", Try::Read("abs-link"));
    w.attempt("rel-link", Try::Read("rel-link"));
    w.attempt("dir-link", Try::Read("out-dir/keep"));
    w.attempt("made-link", Try::SymlinkRead(&dotdot, "made-link"));
    w.attempt("made-abs-link", Try::SymlinkRead(&secret, "made-abs-link"));
    w.attempt("create-dotdot", Try::Create(&create));
    w.attempt("create-dir-link", Try::Create("out-dir/pwned-by-wasm"));
    w.extra_fds();
    let wat = dir.join("attack.wat");
    fs::write(&wat, w.wat()).unwrap();
    let o = Command::new("wat2wasm")
        .arg(&wat)
        .arg("-o")
        .arg(rootfs.join("app.wasm"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "wat2wasm: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut spec = json!({
        "ociVersion": "1.2.0",
        "process": {"args": ["/app.wasm"], "env": ["PATH=/"], "cwd": cwd, "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "annotations": {"io.hako.backend": "wasm"},
        "linux": {}
    });
    if bind {
        spec["mounts"] = json!([{"destination": "/data", "type": "bind",
            "source": base.to_str().unwrap(), "options": ["rbind"]}]);
    }
    fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();

    let root = dir.join("state");
    let id = unique("secwasm");
    let mut c = Command::new(HAKO);
    c.arg("--root")
        .arg(&root)
        .args(["run", "--bundle", dir.to_str().unwrap(), &id]);
    let o = spawn_and_wait(c, |_| {});
    let out = text(&o);
    let d = format!(
        "wasm, from the {name} preopen:\n{out}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("--- {d}");
    let made_outside = dir.join("pwned-by-wasm").exists();
    let _ = fs::remove_dir_all(&dir);
    assert!(
        !made_outside,
        "the module created a file next to its preopen: {d}"
    );
    assert_eq!(o.status.code(), Some(0), "{d}");
    assert!(
        out.starts_with("inside: opened\nINSIDE\n"),
        "the module did not run as expected: {d}"
    );
    assert!(!out.contains("HOST-SECRET"), "{d}");
    for label in [
        "dotdot",
        "deep-dotdot",
        "absolute",
        "abs-link",
        "rel-link",
        "dir-link",
        "made-link",
        "made-abs-link",
        "create-dotdot",
        "create-dir-link",
    ] {
        assert!(
            out.contains(&format!("\n{label}: refused\n")),
            "{label}: {d}"
        );
    }
    assert!(!out.contains("extra fd"), "{d}");
    canary.assert_untouched(&format!("the wasm module ({name} preopen)"));
}
