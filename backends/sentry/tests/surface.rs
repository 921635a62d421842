//! The Linux surface servers use (issue 12): pid 1's signals, epoll, eventfd, timerfd,
//! signalfd, memfd, /dev/shm, ptys. Static C programs in tests/programs, each compared with
//! runc where runc is installed and can run here.
//!
//! Run: `cargo test -p hako-sentry --test surface` (as root; skips with a reason otherwise).

mod common;

use serde_json::json;
use std::io::BufRead;

/// A busybox bundle with the static C program `programs/<name>.c` at /bin/<name>.
fn bundle_with(name: &str) -> Option<common::Bundle> {
    let b = common::busybox_bundle()?;
    common::compile_c(
        &format!("programs/{name}.c"),
        &b.rootfs().join("bin").join(name),
    )?;
    Some(b)
}

/// `args` in the sentry gives exit code 0 and `want` on stdout, and so does runc.
fn same_as_runc(b: &common::Bundle, args: &[&str], want: &str) {
    let (code, out, err) = b.run(args);
    assert_eq!((code, out.as_str()), (0, want), "sentry, stderr: {err}");
    match common::run_peer("runc", &b.rootfs(), args, json!({})) {
        Ok((code, out, err)) => assert_eq!((code, out.as_str()), (0, want), "runc, stderr: {err}"),
        Err(why) => eprintln!("SKIP the runc comparison: {why}"),
    }
}

/// Signals from inside the sandbox: SIGKILL and SIGSTOP to pid 1 by kill, tkill, tgkill and a
/// group kill are ignored; SIGTERM reaches pid 1 only when it has a handler.
#[test]
fn pid_1_gets_from_inside_only_the_signals_it_handles() {
    let Some(b) = bundle_with("pid1_signals") else {
        return;
    };
    same_as_runc(&b, &["/bin/pid1_signals", "none"], "alive handled=0\n");
    same_as_runc(&b, &["/bin/pid1_signals", "handler"], "alive handled=1\n");
}

/// Signals from outside (`hako kill` signals the sentry, which forwards them; `runc kill`
/// signals the init). Without a SIGTERM handler, SIGTERM then SIGWINCH (handled): only the
/// second ends pid 1, as under runc, where `podman stop` then waits its timeout and kills. With
/// one, SIGTERM alone ends it (two handled signals could run their handlers in either order).
#[test]
fn pid_1_gets_from_outside_only_the_signals_it_handles() {
    let Some(b) = bundle_with("pid1_signals") else {
        return;
    };
    for (mode, sigs, want) in [
        (
            "none",
            &["TERM", "WINCH"][..],
            (3, "alive handled=0\nready\nwinch\n"),
        ),
        (
            "handler",
            &["TERM"][..],
            (7, "alive handled=1\nready\nterm\n"),
        ),
    ] {
        let args = ["/bin/pid1_signals", mode, "wait"];
        let r = b.start(&b.spec(&args, json!({}))).unwrap();
        let out = r.state.path().join("stdout");
        // A safety net against a hang, not a timing assertion.
        let limit = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !std::fs::read_to_string(&out).unwrap().contains("ready\n") {
            assert!(
                std::time::Instant::now() < limit,
                "the sandbox never got ready"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for sig in sigs {
            let sig = if *sig == "TERM" {
                libc::SIGTERM
            } else {
                libc::SIGWINCH
            };
            // SAFETY: signal our own child, the sentry (what `hako kill` does).
            assert_eq!(unsafe { libc::kill(r.pid, sig) }, 0);
        }
        let (code, out, err) = r.wait_and_delete(|_| {});
        assert_eq!((code, out.as_str()), want, "sentry {mode}, stderr: {err}");

        match runc_outside(&b, &args, sigs) {
            Ok(got) => assert_eq!((got.0, got.1.as_str()), want, "runc {mode}"),
            Err(why) => eprintln!("SKIP the runc comparison: {why}"),
        }
    }
}

/// The same under runc: run, wait for "ready", `runc kill` each of `sigs`.
fn runc_outside(b: &common::Bundle, args: &[&str], sigs: &[&str]) -> Result<(i32, String), String> {
    let peer = common::Peer::new("runc", &b.rootfs(), args, json!({}))?;
    let mut child = peer
        .command(&["run", "--bundle"])
        .arg(peer.bundle())
        .arg(&peer.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    loop {
        match lines.next() {
            Some(Ok(l)) => {
                out += &l;
                out.push('\n');
                if l == "ready" {
                    break;
                }
            }
            _ => {
                let _ = child.wait();
                return Err("runc cannot run here (no output)".into());
            }
        }
    }
    for sig in sigs {
        let st = peer
            .command(&["kill", &peer.id, sig])
            .status()
            .map_err(|e| e.to_string())?;
        assert!(st.success(), "runc kill {sig}");
    }
    for l in lines {
        out += &l.map_err(|e| e.to_string())?;
        out.push('\n');
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    Ok((st.code().unwrap_or(-1), out))
}

/// eventfd (counter, semaphore, non-blocking, a blocking read a child wakes), edge-triggered
/// and one-shot epoll, epoll_pwait2, nested epoll, one file under two registered fds, and
/// timerfd (settime, gettime, reads, readiness in epoll), on each platform this kernel has.
#[test]
fn eventfd_epoll_and_timerfd_behave_as_on_linux() {
    let Some(b) = bundle_with("events") else {
        return;
    };
    let want = "ok eventfd\nok epoll edge-triggered\nok epoll one-shot\n\
                ok epoll_pwait2 and nested epoll\nok timerfd\n";
    common::same_as_linux_everywhere(&b, &["/bin/events"], want, json!({}), json!({}));
}

/// signalfd: reads of the mask's pending signals (non-blocking and blocking), the mask and its
/// update, a child's exit, poll and epoll readiness, the flags and errors (programs/signalfd.c),
/// as runc runs it and on each platform this kernel has.
#[test]
fn signalfd_reads_the_readers_own_signals() {
    let Some(b) = bundle_with("signalfd") else {
        return;
    };
    common::same_as_linux_everywhere(
        &b,
        &["/bin/signalfd"],
        "ok signalfd\n",
        json!({}),
        json!({}),
    );
}

/// memfd_create: a file of the sandbox's own (write, truncate, a private mapping, fstat, its
/// /proc/self/fd name, inherited by a child, seals).
#[test]
fn memfd_is_a_file_of_the_sandbox() {
    let Some(b) = bundle_with("memfd") else {
        return;
    };
    same_as_runc(&b, &["/bin/memfd"], "ok memfd\n");
}

/// Writable shared mappings (a file in /dev/shm, the sandbox's own tmpfs, and in /tmp; a memfd;
/// /dev/zero) shared between processes with a process-shared semaphore in them, on every
/// platform (the ptrace one takes these mappings through its seccomp listener too).
#[test]
fn writable_shared_mappings_are_shared() {
    let Some(b) = bundle_with("shared_map") else {
        return;
    };
    let want = "ok file\nok memfd\nok /dev/zero\n";
    for dir in ["/dev/shm", "/tmp"] {
        let args = ["/bin/shared_map", dir];
        common::same_as_linux_everywhere(&b, &args, want, json!({}), json!({}));
    }
}

/// Python's multiprocessing: a pool of forked workers (pipes, a semaphore in /dev/shm mapped
/// shared), a shared Value with its lock, a Queue and a Lock (sem_open), and shared_memory (shm_open in /dev/shm). Debian's
/// python3.11 from the host, its standard library bound in read-only.
#[test]
fn python3_multiprocessing() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let py = "/usr/bin/python3";
    let stdlib = std::path::Path::new("/usr/lib/python3.11");
    if !std::path::Path::new(py).exists() || !stdlib.is_dir() {
        eprintln!("SKIP: no Debian python3.11");
        return;
    }
    common::copy_dynamic(&b.rootfs(), py);
    // multiprocessing.Value uses ctypes, whose module needs libffi.
    let ctypes = stdlib.join("lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so");
    if ctypes.exists() {
        common::copy_dynamic(&b.rootfs(), ctypes.to_str().unwrap());
    }
    let script = "\
import multiprocessing as mp
from multiprocessing import shared_memory
def sq(x):
    return x * x
def poke(name):
    s = shared_memory.SharedMemory(name)
    s.buf[0] = 42
    s.close()
def add(v):
    for _ in range(100):
        with v.get_lock():
            v.value += 1
def put(q, lock, i):
    with lock:
        q.put(i * 10)
if __name__ == '__main__':
    mp.set_start_method('fork')
    with mp.Pool(2) as p:
        print(sum(p.map(sq, range(10))))
    v = mp.Value('i', 0)
    ps = [mp.Process(target=add, args=(v,)) for _ in range(3)]
    [p.start() for p in ps]
    [p.join() for p in ps]
    print(v.value)
    q, lock = mp.Queue(), mp.Lock()
    ps = [mp.Process(target=put, args=(q, lock, i)) for i in range(3)]
    [p.start() for p in ps]
    print(sorted(q.get(timeout=30) for _ in ps))
    [p.join() for p in ps]
    m = shared_memory.SharedMemory(create=True, size=16)
    c = mp.Process(target=poke, args=(m.name,))
    c.start()
    c.join()
    print(m.buf[0])
    m.close()
    m.unlink()
";
    let spec = b.spec(
        &[py, "-c", script],
        json!({"mounts": [{"destination": "/usr/lib/python3.11", "type": "bind", "source": stdlib, "options": ["rbind", "ro"]}]}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(
        (code, out.as_str()),
        (0, "285\n300\n[0, 10, 20]\n42\n"),
        "stderr: {err}"
    );
}

/// Ptys of the sandbox's own devpts instance: posix_openpt, grantpt, unlockpt, ptsname and the
/// slave opened by name; openpty (TIOCGPTPEER); data both ways through the line discipline;
/// termios on the slave; ttyname; /dev/tty with no controlling terminal (ENXIO).
#[test]
fn ptys_from_dev_ptmx() {
    let Some(b) = bundle_with("pty") else {
        return;
    };
    same_as_runc(
        &b,
        &["/bin/pty"],
        "ok posix_openpt\nok openpty\nok /dev/tty\n",
    );
}

/// inotify: directory and file watches (create, modify, delete), epoll readiness, EAGAIN when
/// empty, IN_IGNORED after inotify_rm_watch, ENOENT and EINVAL.
#[test]
fn inotify_watches_the_sandbox_files() {
    let Some(b) = bundle_with("inotify") else {
        return;
    };
    same_as_runc(&b, &["/bin/inotify"], "ok inotify\n");
}
