//! Boots real guests through the qemu engine (TCG here): a few seconds each, so few of them.
//! The first boot also checks the timings file the host process writes (`hako_microvm::timings`).
//! Needs: the guest kernel (kernels/build.sh), qemu-system-x86_64, mkfs.ext4, busybox-static,
//! root. The agent is built by backends/microvm/agent/build.sh on the fly.

mod common;

use common::qemu::{
    build_agent, create_captured, procs_mentioning, read_all, skip_reason, wait, Env,
};
use hako_contract::{Backend, CreateRequest, Sandbox};
use hako_microvm::MicrovmBackend;

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
        // A cold boot: the split below is the kernel's boot (qemu_snapshot.rs has the restore).
        &[(hako_microvm::knobs::BOOT, "cold")],
    );
    b.check(&spec, &env.dir.join("bundle")).unwrap();
    let (state, fifo) = env.sandbox_dir("c1");
    let req = env.request("c1", &spec, &state, &fifo);
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
