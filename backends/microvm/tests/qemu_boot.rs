//! Boots real guests through the qemu engine (TCG here): a few seconds each, so few of them.
//! The first boot also checks the timings file the host process writes (`hako_microvm::timings`).
//! Needs: the guest kernel (kernels/build.sh), qemu-system-x86_64, mkfs.ext4, busybox-static,
//! root. The agent is built by backends/microvm/agent/build.sh on the fly.

use hako_contract::{Backend, CreateRequest, GlobalOptions, Sandbox};
use hako_microvm::MicrovmBackend;
use oci_spec::runtime::Spec;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

fn skip_reason() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let k = hako_microvm::assets::default_kernel();
    if hako_microvm::assets::check_kernel(&k).is_err() {
        return Some(format!(
            "no guest kernel at {} (run kernels/build.sh)",
            k.display()
        ));
    }
    if hako_microvm::qemu::Qemu::find().is_err() {
        return Some("qemu-system-x86_64 is not installed".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("busybox-static is not installed".into());
    }
    None
}

fn build_agent() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/build.sh");
    let out = Command::new(&script)
        .output()
        .expect("running agent/build.sh");
    assert!(
        out.status.success(),
        "agent build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).unwrap();
    std::env::set_var("HAKO_AGENT", path.trim());
}

struct Env {
    dir: PathBuf,
    global: GlobalOptions,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("hako-mvm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("bundle/rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for c in ["sh", "echo", "cat", "uname", "sleep", "id", "ls", "true"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(c)).unwrap();
        }
        std::fs::create_dir_all(dir.join("root")).unwrap();
        let global = GlobalOptions {
            root: dir.join("root"),
            ..Default::default()
        };
        Env { dir, global }
    }

    fn spec(&self, args: &[&str], ann: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        let mut p = s.process().clone().unwrap();
        p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        p.set_terminal(Some(false));
        p.set_env(Some(vec!["PATH=/bin".into(), "GREETING=hello".into()]));
        s.set_process(Some(p));
        let mut r = s.root().clone().unwrap();
        r.set_path(self.dir.join("bundle/rootfs"));
        s.set_root(Some(r));
        let mut a: std::collections::HashMap<String, String> = ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        a.insert("io.hako.backend".into(), "microvm".into());
        s.set_annotations(Some(a));
        s
    }
}

/// Run `create` with our stdout/stderr temporarily pointing at pipes, so the host process
/// inherits them. Returns the create result and the read ends.
fn create_captured(
    b: &MicrovmBackend,
    req: &CreateRequest,
) -> (anyhow::Result<hako_contract::Created>, OwnedFd, OwnedFd) {
    let mk = || {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    };
    let (out_r, out_w) = mk();
    let (err_r, err_w) = mk();
    let saved1 = unsafe { libc::dup(1) };
    let saved2 = unsafe { libc::dup(2) };
    unsafe {
        libc::dup2(out_w.as_raw_fd(), 1);
        libc::dup2(err_w.as_raw_fd(), 2);
    }
    let res = b.create(req);
    unsafe {
        libc::dup2(saved1, 1);
        libc::dup2(saved2, 2);
        libc::close(saved1);
        libc::close(saved2);
    }
    drop(out_w);
    drop(err_w);
    (res, out_r, err_r)
}

fn read_all(fd: OwnedFd) -> String {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

fn wait(pid: i32) -> i32 {
    let mut st = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    st
}

/// Processes whose command line mentions `needle` (a leftover qemu would).
fn procs_mentioning(needle: &str) -> Vec<i32> {
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&c).contains(needle) {
                v.push(pid);
            }
        }
    }
    v
}

fn guest_kernel_release() -> String {
    // kernels/build.sh keeps the .config next to the kernel; its header names the version.
    let k = std::fs::canonicalize(hako_microvm::assets::default_kernel()).unwrap();
    let cfg = std::fs::read_to_string(format!("{}.config", k.display())).unwrap();
    cfg.lines()
        .find_map(|l| {
            l.strip_prefix("# Linux/")
                .and_then(|r| r.strip_suffix(" Kernel Configuration"))
        })
        .and_then(|r| r.split_whitespace().nth(1))
        .unwrap()
        .to_string()
}

#[test]
fn boots_runs_and_is_killed() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    build_agent();
    let env = Env::new("boot");
    let b = MicrovmBackend::new();

    // 1. Output, stderr, exit status and the guest kernel, in one boot.
    let spec = env.spec(
        &[
            "/bin/sh",
            "-c",
            "echo $GREETING from $(uname -r); echo oops >&2; exit 7",
        ],
        &[],
    );
    b.check(&spec, &env.dir.join("bundle")).unwrap();
    let state = env.global.root.join("c1");
    std::fs::create_dir_all(&state).unwrap();
    let fifo = state.join("start");
    hako_contract::start_gate::make(&fifo).unwrap();
    let req = CreateRequest {
        id: "c1",
        bundle: &env.dir.join("bundle"),
        spec: &spec,
        state_dir: &state,
        start_fifo: &fifo,
        console_socket: None,
        preserve_fds: 0,
        no_pivot: false,
        no_new_keyring: false,
        global: &env.global,
    };
    let t0 = std::time::Instant::now();
    let (res, out, err) = create_captured(&b, &req);
    let created = res.unwrap();
    let booted = t0.elapsed();
    assert!(
        hako_contract::proc::is_alive(created.pid, None),
        "host process blocked on the start gate"
    );
    let t1 = std::time::Instant::now();
    hako_contract::start_gate::release(&fifo, || hako_contract::proc::is_alive(created.pid, None))
        .unwrap();
    let st = wait(created.pid);
    eprintln!(
        "create (boot to ready) {booted:?}, start to exit {:?}",
        t1.elapsed()
    );
    let (out, err) = (read_all(out), read_all(err));
    assert!(libc::WIFEXITED(st), "host process status {st:#x}");
    assert_eq!(libc::WEXITSTATUS(st), 7, "stdout {out:?} stderr {err:?}");
    assert_eq!(out, format!("hello from {}\n", guest_kernel_release()));
    assert_eq!(err, "oops\n");
    assert!(
        procs_mentioning(&state.to_string_lossy()).is_empty(),
        "a VM process was left behind"
    );
    // The boot/run split the host process wrote: every field there, consistent (no timing
    // thresholds: the machine is shared).
    let t = hako_microvm::timings::Timings::read(&state.join(hako_microvm::timings::FILE))
        .expect("microvm-timings.json written by the host process");
    eprintln!("timings: {t:?}");
    assert_eq!(t.engine, "qemu");
    assert!(t.accel == "tcg" || t.accel == "kvm", "{t:?}");
    assert_eq!(t.guest_mib, 128);
    let (start_ns, ready_ns) = (t.agent_start_ns.unwrap(), t.ready_ns.unwrap());
    assert!(start_ns > 0 && ready_ns > start_ns, "{t:?}");
    let (kernel, agent) = (t.kernel_boot_ms.unwrap(), t.agent_setup_ms.unwrap());
    assert!(kernel > 0.0 && agent > 0.0, "{t:?}");
    assert!(kernel < t.ready_ms, "{t:?}");
    assert!(t.spawn_ms > 0.0 && t.host_setup_ms >= 0.0, "{t:?}");
    let sum = t.vmm_start_ms.unwrap() + kernel + agent;
    assert!(
        (sum - t.ready_ms).abs() < 1e-6,
        "the split adds up to ready_ms: {t:?}"
    );
    assert!(
        t.vmm_rss_kib.unwrap() > 0 && t.guest_rss_kib.unwrap() > 0,
        "{t:?}"
    );
    assert!(t.guest_rss_kib.unwrap() <= 128 * 1024, "{t:?}");
    assert!(t.run_ms.unwrap() > 0.0 && t.vm_exit_ms.is_some(), "{t:?}");
    let sb = Sandbox {
        id: "c1",
        bundle: &env.dir.join("bundle"),
        spec: &spec,
        state_dir: &state,
        pid: created.pid,
        alive: false,
        data: &created.data,
        global: &env.global,
    };
    b.delete(&sb).unwrap();
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "state dir not cleaned: {left:?}");

    // 2. kill: SIGTERM reaches the workload in the guest; the host process dies the same way.
    let spec = env.spec(
        &["/bin/sleep", "600"],
        &[(hako_microvm::knobs::VMM, "qemu")],
    );
    let state = env.global.root.join("c2");
    std::fs::create_dir_all(&state).unwrap();
    let fifo = state.join("start");
    hako_contract::start_gate::make(&fifo).unwrap();
    let req = CreateRequest {
        id: "c2",
        state_dir: &state,
        start_fifo: &fifo,
        spec: &spec,
        ..req
    };
    let (res, _out, _err) = create_captured(&b, &req);
    let created = res.unwrap();
    hako_contract::start_gate::release(&fifo, || hako_contract::proc::is_alive(created.pid, None))
        .unwrap();
    let vm = std::fs::read_to_string(state.join("microvm-vm.pid")).unwrap();
    let vm_pid: i32 = vm.split_whitespace().next().unwrap().parse().unwrap();
    let sb = Sandbox {
        id: "c2",
        state_dir: &state,
        pid: created.pid,
        alive: true,
        data: &created.data,
        spec: &spec,
        ..sb
    };
    assert_eq!(b.pids(&sb).unwrap(), vec![created.pid, vm_pid]);
    // Give the workload a moment to be exec'ed after Start, then TERM it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    b.kill(&sb, libc::SIGTERM, false).unwrap();
    let st = wait(created.pid);
    assert!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGTERM,
        "status {st:#x}"
    );
    assert!(
        !hako_contract::proc::is_alive(vm_pid, None),
        "the VM outlived the sandbox"
    );
    let sb = Sandbox { alive: false, ..sb };
    b.delete(&sb).unwrap();
    assert!(procs_mentioning(&state.to_string_lossy()).is_empty());

    // 3. kill --all reaches every guest process: the shell's `sleep` dies of USR1, the shell runs
    // its trap and exits 7; a plain kill would only have reached the shell.
    let spec = env.spec(
        &[
            "/bin/sh",
            "-c",
            "trap 'echo trapped' USR1; sleep 600; echo after; exit 7",
        ],
        &[],
    );
    let state = env.global.root.join("c4");
    std::fs::create_dir_all(&state).unwrap();
    let fifo = state.join("start");
    hako_contract::start_gate::make(&fifo).unwrap();
    let req = CreateRequest {
        id: "c4",
        state_dir: &state,
        start_fifo: &fifo,
        spec: &spec,
        ..req
    };
    let (res, out, _err) = create_captured(&b, &req);
    let created = res.unwrap();
    hako_contract::start_gate::release(&fifo, || hako_contract::proc::is_alive(created.pid, None))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let sb = Sandbox {
        id: "c4",
        state_dir: &state,
        pid: created.pid,
        alive: true,
        data: &created.data,
        spec: &spec,
        ..sb
    };
    b.kill(&sb, libc::SIGUSR1, true).unwrap();
    let st = wait(created.pid);
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 7,
        "status {st:#x}"
    );
    let out = read_all(out);
    assert!(
        out.starts_with("trapped\n") && out.ends_with("after\n"),
        "{out:?}"
    );
    b.delete(&Sandbox { alive: false, ..sb }).unwrap();

    // 4. A program missing from the rootfs fails create (as with runc), with nothing left.
    let spec = env.spec(&["/bin/no-such-program"], &[]);
    let state = env.global.root.join("c3");
    std::fs::create_dir_all(&state).unwrap();
    let fifo = state.join("start");
    hako_contract::start_gate::make(&fifo).unwrap();
    let req = CreateRequest {
        id: "c3",
        state_dir: &state,
        start_fifo: &fifo,
        spec: &spec,
        ..req
    };
    let (res, _out, _err) = create_captured(&b, &req);
    let e = format!("{:#}", res.unwrap_err());
    assert!(
        e.contains("/bin/no-such-program") && e.contains("no such file in the rootfs"),
        "{e}"
    );
    assert!(
        procs_mentioning(&state.to_string_lossy()).is_empty(),
        "a VM outlived the failed create"
    );
    std::fs::remove_dir_all(&env.dir).unwrap();
}
