//! The sentry backend through the `hako` CLI: run, the create/start/kill/delete lifecycle,
//! backend choice by annotation and by `--backend`, bad input, and isolation as the CLI sees it.

mod common;
use common::*;
use serde_json::json;

fn sentry_bundle(args: &[&str]) -> Bundle {
    let mut b = Bundle::busybox(args);
    b.edit(|c| {
        c["annotations"] = json!({"io.hako.backend": "sentry"});
    });
    b
}

#[test]
fn sentry_run_prints_output_exit_code_and_kernel_identity() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = sentry_bundle(&[
        "sh",
        "-c",
        "echo hello from $(hostname); uname -r; cat /etc/hostname; echo a | cat; exit 3",
    ]);
    let id = unique("srun");
    let o = h.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert_eq!(
        stdout(&o),
        "hello from hako\n4.4.0-hako-sentry\nrootfs-file\na\n",
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(
        h.leftovers().is_empty(),
        "run left state: {:?}",
        h.leftovers()
    );
    assert!(processes_mentioning(&id).is_empty());
}

#[test]
fn sentry_by_global_backend_flag() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = Bundle::busybox(&["cat", "/proc/version"]);
    let id = unique("sflag");
    let o = h.run(&[
        "--backend",
        "sentry",
        "run",
        "--bundle",
        b.dir.to_str().unwrap(),
        &id,
    ]);
    assert!(
        stdout(&o).starts_with("Linux version 4.4.0-hako-sentry"),
        "{o:?}"
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn sentry_create_start_kill_delete_lifecycle() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = sentry_bundle(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.05; done",
    ]);
    let id = unique("slife");
    let pidfile = b.dir.join("pid");
    h.ok(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(h.status(&id), "created");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(h.state(&id)["pid"], json!(pid));
    h.ok(&["start", &id]);
    h.wait_status(&id, "running");
    let ps = h.ok(&["ps", "--format", "json", &id]);
    let pids: Vec<i32> = serde_json::from_str(&ps).unwrap();
    assert!(pids.contains(&pid) && pids.len() >= 2, "ps: {ps}");
    h.ok(&["kill", &id, "15"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
    assert!(h.leftovers().is_empty());
    assert!(processes_mentioning(&id).is_empty());
    // The sentry's state (overlay upper dir) went with it, and the rootfs was never written.
    assert!(!b.rootfs().join("upper").exists());
}

#[test]
fn sentry_rejects_unknown_knobs_and_leaves_nothing() {
    skip_unless!(need_root());
    let h = Hako::new();
    let mut b = sentry_bundle(&["true"]);
    b.edit(|c| {
        c["annotations"]["io.hako.sentry.nonsense"] = json!("1");
    });
    let id = unique("sbad");
    let err = h.fails(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert!(err.contains("io.hako.sentry.nonsense"), "{err}");
    assert!(h.leftovers().is_empty());
    let b2 = sentry_bundle(&["/no/such/program"]);
    b2.save();
    let err = h.fails(&["create", "--bundle", b2.dir.to_str().unwrap(), &id]);
    assert!(err.contains("not found"), "{err}");
    assert!(h.leftovers().is_empty());
    assert!(processes_mentioning(&id).is_empty());
}

#[test]
fn sentry_pause_resume_and_cgroup_cleanup() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = sentry_bundle(&["sh", "-c", "while true; do sleep 0.05; done"]);
    let id = unique("spause");
    h.ok(&["run", "--detach", "--bundle", b.dir.to_str().unwrap(), &id]);
    h.wait_status(&id, "running");
    assert!(
        !cgroup_dirs_named(&id).is_empty(),
        "the sentry runs in the container's cgroup"
    );
    h.ok(&["pause", &id]);
    assert_eq!(h.status(&id), "paused");
    h.ok(&["resume", &id]);
    assert_eq!(h.status(&id), "running");
    // The workload's host id is reserved for this sandbox (a lock file naming it); a sentry
    // killed outright cannot give it back itself: `delete` does.
    let held = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/run/hako-sentry-ids")
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t == id))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(held().len(), 1, "no host id reserved for {id}");
    h.ok(&["kill", &id, "9"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
    assert!(held().is_empty(), "host id lock left: {:?}", held());
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "left cgroups: {:?}",
        cgroup_dirs_named(&id)
    );
    assert!(processes_mentioning(&id).is_empty());
}

#[test]
fn sentry_enforces_the_spec_seccomp_profile_too() {
    skip_unless!(need_root());
    let h = Hako::new();
    let mut b = sentry_bundle(&[
        "sh",
        "-c",
        "mkdir /made && echo made; echo rc=$?; echo still here",
    ]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    let id = unique("sseccomp");
    let o = h.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert_eq!(
        stdout(&o),
        "rc=1\nstill here\n",
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn sentry_console_socket_gets_the_pty() {
    skip_unless!(need_root());
    let h = Hako::new();
    let mut b = sentry_bundle(&[
        "sh",
        "-c",
        "tty >/dev/null && echo is-a-tty; echo via-dev-tty >/dev/tty; stty size >/dev/null 2>&1; echo done",
    ]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let sock_path = b.dir.join("console.sock");
    let receiver = console_receiver(&sock_path);
    let id = unique("stty");
    h.ok(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &id,
    ]);
    let master = receiver.join().unwrap();
    h.ok(&["start", &id]);
    // /dev/tty is the controlling terminal: the console (the line discipline adds \r).
    assert_eq!(
        read_until(&master, "done\n").replace("\r\n", "\n"),
        "is-a-tty\nvia-dev-tty\ndone\n"
    );
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
}

// ---------------------------------------------------------------------------------------------
// `hako exec` into a sentry sandbox (the same cases as tests/microvm_cli.rs's exec tests, with
// the same helpers from tests/common).

use std::path::Path;
use std::time::{Duration, Instant};

/// A running sentry sandbox for exec tests: the workload leaves a file in its root, then idles.
/// Before `start`, exec is refused: there is no workload to join yet.
fn running_sentry(h: &Hako, prefix: &str) -> (Bundle, String) {
    let b = sentry_bundle(&[
        "sh",
        "-c",
        "echo from-the-workload > /made-by-workload; exec sleep 600",
    ]);
    let id = unique(prefix);
    h.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    let err = h.fails(&["exec", &id, "true"]);
    assert!(err.contains("not running"), "{err}");
    h.ok(&["start", &id]);
    h.wait_status(&id, "running");
    exec_until(
        h,
        &id,
        &["test", "-f", "/made-by-workload"],
        true,
        "the workload never wrote its file",
    );
    (b, id)
}

/// Host children of `pid` whose command line is `cmdline` (NUL-separated argv joined by spaces).
fn children_running(pid: i32, cmdline: &str) -> Vec<i32> {
    let mut out = vec![];
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in kids
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            let cl = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            let cl: Vec<String> = cl
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            if cl.join(" ") == cmdline {
                out.push(c);
            }
        }
    }
    out
}

/// The fields of a host /proc/PID/status that say how confined a process is.
fn confinement(pid: i32) -> Vec<String> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mut v: Vec<String> = st
        .lines()
        .filter(|l| {
            [
                "Uid:",
                "Gid:",
                "Groups:",
                "CapInh:",
                "CapPrm:",
                "CapEff:",
                "CapBnd:",
                "CapAmb:",
                "NoNewPrivs:",
                "Seccomp:",
                "Seccomp_filters:",
                "TracerPid:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect();
    for ns in ["user", "pid", "mnt", "net", "ipc", "uts"] {
        v.push(format!(
            "{ns}: {:?}",
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap()
        ));
    }
    v.push(format!(
        "root: {:?}",
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap()
    ));
    v
}

/// Connect to the unix socket at `path` (SOCK_SEQPACKET) from a child running as `uid`/`uid`:
/// 0, or the errno that failed.
fn connect_as(uid: u32, path: &Path) -> i32 {
    use std::os::unix::ffi::OsStrExt;
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(
        bytes.len() < addr.sun_path.len(),
        "socket path too long for this probe"
    );
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: the child makes raw syscalls only (async-signal-safe) and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(uid, uid, uid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                libc::_exit(255);
            }
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0);
            let rc = libc::connect(
                s,
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            );
            libc::_exit(if rc == 0 {
                0
            } else {
                *libc::__errno_location()
            });
        }
    }
    let mut st = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert!(libc::WIFEXITED(st), "{st:#x}");
    libc::WEXITSTATUS(st)
}

#[test]
fn sentry_exec_joins_the_workloads_kernel() {
    skip_unless!(need_root());
    let h = Hako::new();
    // `hako features` says the sentry backend supports exec.
    let f: serde_json::Value = serde_json::from_str(&h.ok(&["features"])).unwrap();
    assert_eq!(
        f["io.hako.backends"]["sentry"]["exec"],
        json!(true),
        "{f:#}"
    );
    let (b, id) = running_sentry(&h, "sexec");

    // Output, stderr and exit code; the workload's file (same root); the sentry's kernel; the
    // workload as pid 1 of the same pid namespace, seen through the sentry's /proc.
    let o = h.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /made-by-workload; uname -r; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo to-stderr >&2; exit 5",
    ]);
    assert_eq!(
        stdout(&o),
        "from-the-workload\n4.4.0-hako-sentry\nsleep 600 \n",
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "to-stderr\n");
    assert_eq!(o.status.code(), Some(5));

    // --user, --env, --cwd; stdin reaches the process, and its EOF ends it.
    exec_identity_and_stdin(&h, &id, "1000:1000", "through the sentry");

    // A program that is not there, a cwd that is not there: one error line, exit 1.
    let err = h.fails(&["exec", &id, "/no/such/program"]);
    assert!(err.contains("not found in the container"), "{err}");
    let err = h.fails(&["exec", "--cwd", "/no/such/dir", &id, "true"]);
    assert!(err.contains("not a directory"), "{err}");

    // A hostile process file: it asks for capabilities the workload's bounding set lacks (the
    // workload has KILL, AUDIT_WRITE, NET_BIND_SERVICE). Refused, never granted.
    let pf = b.dir.join("process.json");
    std::fs::write(
        &pf,
        r#"{"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"],
                             "permitted": ["CAP_SYS_ADMIN"]}}"#,
    )
    .unwrap();
    let err = h.fails(&["exec", "--process", pf.to_str().unwrap(), &id]);
    assert!(err.contains("bounding set"), "{err}");
    // A process file's rlimits apply to the exec'd process.
    let pf2 = b.dir.join("process-rlimits.json");
    std::fs::write(
        &pf2,
        r#"{"args": ["sh", "-c", "echo $(ulimit -n) $(ulimit -Hn)"], "cwd": "/",
            "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]}"#,
    )
    .unwrap();
    assert_eq!(
        h.ok(&["exec", "--process", pf2.to_str().unwrap(), &id]),
        "100 200\n"
    );
    // --preserve-fds is refused rather than ignored.
    let err = h.fails(&["exec", "--preserve-fds", "1", &id, "true"]);
    assert!(err.contains("preserve-fds"), "{err}");

    // The exec socket: 0600 in the 0700 state directory, owned by root. Another host user who
    // knows the path (an attacker after a process in the sandbox) cannot connect to it.
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = h.root.join(&id).join("sentry");
        let path = dir.join("exec.sock");
        let sock = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(sock.permissions().mode() & 0o7777, 0o600);
        assert_eq!(sock.uid(), 0);
        let d = std::fs::metadata(&dir).unwrap();
        assert_eq!(d.permissions().mode() & 0o777, 0o700);
        assert_eq!(
            connect_as(65534, &path),
            libc::EACCES,
            "nobody reached the exec socket"
        );
        assert_eq!(
            connect_as(0, &path),
            0,
            "root could not reach the exec socket"
        );
    }

    // As the host sees it, the exec'd process is exactly as confined as the workload: the same
    // host id, namespaces and root, no capability, an empty bounding set, no_new_privs, the
    // same seccomp filters, traced by the sentry.
    let sentry: i32 = h.state(&id)["pid"].as_i64().unwrap() as i32;
    let pidfile = b.dir.join("exec.pid");
    let client = exec_detached(&h, &id, &pidfile, &["sleep", "601"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let execd = loop {
        if let [p] = children_running(sentry, "sleep 601")[..] {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the exec'd sleep never showed up"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let init = children_running(sentry, "sleep 600");
    assert_eq!(init.len(), 1, "the workload's init: {init:?}");
    let (mine, theirs) = (confinement(execd), confinement(init[0]));
    assert_eq!(mine, theirs, "exec'd process vs workload");
    assert!(mine.contains(&format!("TracerPid:\t{sentry}")), "{mine:?}");
    assert!(
        mine.iter().any(|l| l == "CapBnd:\t0000000000000000"),
        "{mine:?}"
    );
    assert!(mine.iter().any(|l| l == "NoNewPrivs:\t1"), "{mine:?}");
    assert!(!mine.iter().any(|l| l.starts_with("Uid:\t0\t")), "{mine:?}");
    // It holds no host descriptor: its stdio are the sentry's.
    assert_eq!(
        std::fs::read_dir(format!("/proc/{execd}/fd"))
            .unwrap()
            .count(),
        0
    );
    // Killing the client (the pid an engine holds) kills the process.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_gone(client, "the killed exec client");
    wait_gone(execd, "the process of a killed exec client");

    h.ok(&["kill", &id, "KILL"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
    assert!(h.leftovers().is_empty());
    assert!(processes_mentioning(&id).is_empty());
}

#[test]
fn sentry_exec_signals_tty_and_teardown() {
    skip_unless!(need_root());
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let h = Hako::new();
    let (b, id) = running_sentry(&h, "sexec2");

    // A signal to `hako exec` reaches the process, which exits as its trap says.
    let mut child = h
        .cmd()
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo trapped; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "trapped\n");
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(7));

    // Killed by a signal: `hako exec` ends as runc's does (128 + the signal).
    let o = h.run(&["exec", &id, "sh", "-c", "kill -9 $$"]);
    assert_eq!(o.status.code(), Some(137), "{o:?}");

    // --detach --pid-file: the pid is the exec client; the process runs in the sandbox and is
    // visible to the workload's kernel.
    let pidfile = b.dir.join("exec.pid");
    let client = exec_detached(
        &h,
        &id,
        &pidfile,
        &["sh", "-c", "echo $$ > /exec-pid; exec sleep 600"],
    );
    exec_until(
        &h,
        &id,
        &["test", "-s", "/exec-pid"],
        true,
        "the detached exec never ran",
    );
    h.ok(&["exec", &id, "sh", "-c", "kill -0 $(cat /exec-pid)"]);
    kill(Pid::from_raw(client), Signal::SIGKILL).unwrap();
    wait_gone(client, "the killed exec client");
    exec_until(
        &h,
        &id,
        &["sh", "-c", "kill -0 $(cat /exec-pid)"],
        false,
        "the exec'd process outlived its exec client",
    );

    // --tty with --console-socket: the process gets a terminal, as its controlling one.
    let sock_path = b.dir.join("console.sock");
    let receiver = console_receiver(&sock_path);
    let mut child = h
        .cmd()
        .args([
            "exec",
            "--tty",
            "--console-socket",
            sock_path.to_str().unwrap(),
            &id,
            "sh",
            "-c",
            "tty >/dev/null && echo is-a-tty; echo done; exit 9",
        ])
        .spawn()
        .unwrap();
    let master = receiver.join().unwrap();
    assert_eq!(read_until(&master, "done\n"), "is-a-tty\ndone\n");
    assert_eq!(child.wait().unwrap().code(), Some(9));
    drop(master);

    // When the workload ends, exec'd processes end with it, killed; later execs are refused.
    let client = exec_detached(&h, &id, &pidfile, &["sleep", "600"]);
    h.ok(&["kill", &id, "KILL"]);
    h.wait_status(&id, "stopped");
    wait_gone(client, "an exec client after its sandbox ended");
    let err = h.fails(&["exec", &id, "true"]);
    assert!(
        err.contains("not running") || err.contains("stopped"),
        "{err}"
    );
    h.ok(&["delete", &id]);
    assert!(h.leftovers().is_empty());
    assert!(processes_mentioning(&id).is_empty());
}

/// The same exec on the ptrace platform (no seccomp listener: every trap is a ptrace stop), with
/// two exec'd processes alive at once.
#[test]
fn sentry_exec_on_the_ptrace_platform() {
    skip_unless!(need_root());
    let h = Hako::new();
    let mut b = sentry_bundle(&["sh", "-c", "echo w > /w; exec sleep 600"]);
    b.edit(|c| c["annotations"]["io.hako.sentry.platform"] = json!("ptrace"));
    let id = unique("sexecp");
    h.ok(&["run", "--detach", "--bundle", b.dir.to_str().unwrap(), &id]);
    h.wait_status(&id, "running");
    exec_until(
        &h,
        &id,
        &["test", "-f", "/w"],
        true,
        "the workload never wrote /w",
    );
    let pidfile = b.dir.join("exec.pid");
    let client = exec_detached(&h, &id, &pidfile, &["sleep", "600"]);
    let o = h.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /w; sleep 0.1 & wait; echo waited; test $$ -gt 1 && exit 4",
    ]);
    assert_eq!(
        stdout(&o),
        "w\nwaited\n",
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(4));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_gone(client, "the killed exec client");
    h.ok(&["kill", &id, "KILL"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
    assert!(processes_mentioning(&id).is_empty());
}

/// `hako exec` into a sandbox whose only task traps without pause (an `echo` into /dev/null in a
/// loop: open, write, close, each a notification): the sentry waits for traps in RECV and its
/// waker thread must still hand it the exec client (platform/waker.rs).
#[test]
fn sentry_exec_into_a_workload_that_traps_without_pause() {
    skip_unless!(need_root());
    let h = Hako::new();
    let b = sentry_bundle(&[
        "sh",
        "-c",
        "echo up > /up; while :; do echo x > /dev/null; done",
    ]);
    let id = unique("sexecbusy");
    h.ok(&["run", "--detach", "--bundle", b.dir.to_str().unwrap(), &id]);
    h.wait_status(&id, "running");
    exec_until(
        &h,
        &id,
        &["test", "-f", "/up"],
        true,
        "the workload never wrote /up",
    );
    for _ in 0..3 {
        let o = h.run(&["exec", &id, "cat", "/up"]);
        assert_eq!(
            (o.status.code(), stdout(&o).as_str()),
            (Some(0), "up\n"),
            "stderr: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    h.ok(&["kill", &id, "KILL"]);
    h.wait_status(&id, "stopped");
    h.ok(&["delete", &id]);
}
