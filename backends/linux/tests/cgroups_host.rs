//! cgroup tests against this host's real hierarchies (root needed). The v1/hybrid tests use the
//! detected layout; the v2 tests drive the cgroup2 code through the `unified` mount.

use std::path::Path;

use hako_linux::cgroups::{CgroupManager, Layout, Mounts};
use oci_spec::runtime::LinuxResources;
use serde_json::json;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let ok = unsafe { libc::geteuid() } == 0;
    if !ok {
        eprintln!("skipped: needs root");
    }
    ok
}

fn res(v: serde_json::Value) -> LinuxResources {
    serde_json::from_value(v).unwrap()
}

/// Destroy, check nothing is left, and drop the shared /hako-test parents when empty.
fn finish(cg: &CgroupManager) {
    cg.destroy().unwrap();
    for d in cg.dirs() {
        assert!(!d.exists(), "{} left behind", d.display());
        let _ = std::fs::remove_dir(d.parent().unwrap());
    }
}

fn path(name: &str) -> String {
    format!("/hako-test/{name}-{}", std::process::id())
}

/// A child that waits on a pipe, then runs `after` (async-signal-safe code only).
struct Child {
    pid: i32,
    go: i32,
    reaped: std::cell::Cell<bool>,
}

impl Child {
    fn spawn(after: fn() -> i32) -> Child {
        let mut fds = [0; 2];
        // SAFETY: plain syscalls; the child only calls async-signal-safe functions.
        unsafe {
            assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let mut b = 0u8;
                libc::read(fds[0], &mut b as *mut u8 as *mut libc::c_void, 1);
                libc::_exit(after());
            }
            libc::close(fds[0]);
            Child {
                pid,
                go: fds[1],
                reaped: false.into(),
            }
        }
    }

    fn release(&self) {
        // SAFETY: writing one byte to our pipe.
        unsafe {
            assert_eq!(
                libc::write(self.go, b"x".as_ptr() as *const libc::c_void, 1),
                1
            )
        };
    }

    /// Wait for the child; returns (exited normally?, code or signal).
    fn wait(&self) -> (bool, i32) {
        self.reaped.set(true);
        wait_pid(self.pid)
    }

    /// Reap in the background so a killed child does not linger as a zombie.
    fn reap_in_background(&self) -> std::thread::JoinHandle<(bool, i32)> {
        self.reaped.set(true);
        let pid = self.pid;
        std::thread::spawn(move || wait_pid(pid))
    }
}

fn wait_pid(pid: i32) -> (bool, i32) {
    let mut st = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(r, pid);
    if libc::WIFEXITED(st) {
        (true, libc::WEXITSTATUS(st))
    } else {
        (false, libc::WTERMSIG(st))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: closing our pipe end; killing and reaping our own, unreaped child.
        unsafe {
            libc::close(self.go);
            if !self.reaped.get() {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn pause_forever() -> i32 {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// Fork up to 10 children that exit at once, keep them as zombies (they still count against
/// pids.max), report how many forks worked.
fn fork_many() -> i32 {
    let mut n = 0;
    for _ in 0..10 {
        // SAFETY: fork in a single-threaded child; the grandchild only calls _exit.
        let p = unsafe { libc::fork() };
        if p == 0 {
            unsafe { libc::_exit(0) };
        }
        if p < 0 {
            break;
        }
        n += 1;
    }
    // SAFETY: reaping our own children.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {}
    n
}

fn host() -> Option<Mounts> {
    let m = Mounts::detect().unwrap();
    if !m.v1.contains_key("memory") {
        eprintln!("skipped: the memory controller is not mounted as cgroup v1 here");
        return None;
    }
    Some(m)
}

#[test]
fn v1_memory_limits_and_add_pid() {
    if !root() || host().is_none() {
        return;
    }
    let cg = CgroupManager::new(Some(&path("mem")), "mem", false).unwrap();
    assert!(matches!(cg.layout, Layout::V1 | Layout::Hybrid));
    cg.create().unwrap();
    let mem = cg.v1_dir("memory").unwrap().to_path_buf();
    assert!(mem.is_dir());
    let cpuset = cg.v1_dir("cpuset").unwrap();
    assert!(
        !std::fs::read_to_string(cpuset.join("cpuset.cpus"))
            .unwrap()
            .trim()
            .is_empty(),
        "cpuset.cpus inherited"
    );

    let swap_ok = mem.join("memory.memsw.limit_in_bytes").exists();
    let mut m = json!({"limit": 64 << 20, "reservation": 32 << 20, "swappiness": 10});
    if swap_ok {
        m["swap"] = json!(128 << 20);
    }
    cg.apply(&res(
        json!({"memory": m, "cpu": {"shares": 512, "quota": 50000, "period": 100000}}),
    ))
    .unwrap();

    let child = Child::spawn(pause_forever);
    cg.add_pid(child.pid).unwrap();
    assert_eq!(cg.pids().unwrap(), vec![child.pid]);
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.pid)).unwrap();
    assert!(
        own.lines()
            .any(|l| l.contains(":memory:") && l.ends_with(&cg.path)),
        "{own}"
    );

    let read = |f: &str| {
        std::fs::read_to_string(mem.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.limit_in_bytes"), (64u64 << 20).to_string());
    assert_eq!(
        read("memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(read("memory.swappiness"), "10");
    if swap_ok {
        assert_eq!(
            read("memory.memsw.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
    }
    let cpu = cg.v1_dir("cpu").unwrap();
    assert_eq!(
        std::fs::read_to_string(cpu.join("cpu.shares"))
            .unwrap()
            .trim(),
        "512"
    );
    assert_eq!(
        std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "50000"
    );
    let stats = cg.stats().unwrap();
    assert_eq!(stats.memory_limit, Some(64 << 20));
    assert!(cg.memory_peak().unwrap().is_some());

    // Lowering memory below memory+swap and raising both again keeps the v1 ordering rule.
    if swap_ok {
        cg.apply(&res(
            json!({"memory": {"limit": 256 << 20, "swap": 512 << 20}}),
        ))
        .unwrap();
        assert_eq!(read("memory.limit_in_bytes"), (256u64 << 20).to_string());
        cg.apply(&res(
            json!({"memory": {"limit": 16 << 20, "swap": 32 << 20}}),
        ))
        .unwrap();
        assert_eq!(
            read("memory.memsw.limit_in_bytes"),
            (32u64 << 20).to_string()
        );
    }

    let reaper = child.reap_in_background();
    cg.destroy().unwrap();
    assert_eq!(reaper.join().unwrap(), (false, libc::SIGKILL));
    finish(&cg);
    cg.destroy().unwrap(); // idempotent
}

#[test]
fn v1_pids_limit_is_enforced() {
    if !root() || host().is_none() {
        return;
    }
    let cg = CgroupManager::new(Some(&path("pids")), "pids", false).unwrap();
    cg.create().unwrap();
    cg.apply(&res(json!({"pids": {"limit": 4}}))).unwrap();
    let child = Child::spawn(fork_many);
    cg.add_pid(child.pid).unwrap();
    child.release();
    // The child itself plus 3 zombies fill the limit of 4.
    assert_eq!(child.wait(), (true, 3));
    assert_eq!(cg.stats().unwrap().pids_limit, Some(4));
    finish(&cg);
}

#[test]
fn v1_freeze_and_thaw() {
    if !root() || host().is_none() {
        return;
    }
    let cg = CgroupManager::new(Some(&path("freeze")), "freeze", false).unwrap();
    cg.create().unwrap();
    let child = Child::spawn(pause_forever);
    cg.add_pid(child.pid).unwrap();
    assert!(!cg.is_frozen());
    cg.freeze().unwrap();
    assert!(cg.is_frozen());
    if let Some(dir) = cg.v1_dir("freezer") {
        assert_eq!(
            std::fs::read_to_string(dir.join("freezer.state"))
                .unwrap()
                .trim(),
            "FROZEN"
        );
    }
    // A signal to a frozen process is delivered only after thaw: SIGTERM, then thaw, then it dies.
    cg.kill_all(libc::SIGTERM).unwrap();
    assert!(cg.is_frozen(), "kill_all keeps a paused container paused");
    cg.thaw().unwrap();
    assert!(!cg.is_frozen());
    assert_eq!(child.wait(), (false, libc::SIGTERM));

    // destroy() of a paused container kills and removes it too.
    let child = Child::spawn(pause_forever);
    cg.add_pid(child.pid).unwrap();
    cg.freeze().unwrap();
    let reaper = child.reap_in_background();
    finish(&cg);
    assert_eq!(reaper.join().unwrap(), (false, libc::SIGKILL));
}

#[test]
fn refused_writes_name_file_and_value() {
    if !root() || host().is_none() {
        return;
    }
    let cg = CgroupManager::new(Some(&path("refuse")), "refuse", false).unwrap();
    cg.create().unwrap();
    let e = cg
        .apply(&res(json!({"cpu": {"cpus": "4095"}})))
        .unwrap_err();
    // The kernel says EINVAL or ERANGE depending on its version; the message names both parts.
    assert!(
        format!("{e}").starts_with("cannot set cpuset.cpus to 4095: "),
        "{e}"
    );
    assert!(!format!("{e}").contains("os error"), "{e}");
    let e = cg.apply(&res(json!({"cpu": {"shares": 1}}))).unwrap_err();
    assert!(format!("{e}").contains("cpu.shares"), "{e}");
    finish(&cg);
    // destroy of something never made, and new() never touches the filesystem.
    let never = CgroupManager::new(Some(&path("never")), "never", false).unwrap();
    assert!(!never.exists());
    never.destroy().unwrap();
    assert!(!never.exists());
}

#[test]
fn v1_devices_rules() {
    if !root() || host().is_none() {
        return;
    }
    let cg = CgroupManager::new(Some(&path("devs")), "devs", false).unwrap();
    let Some(dir) = cg.v1_dir("devices").map(Path::to_path_buf) else {
        eprintln!("skipped: no v1 devices controller");
        return;
    };
    cg.create().unwrap();
    cg.apply(&res(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rw"},
    ]})))
    .unwrap();
    let list = std::fs::read_to_string(dir.join("devices.list")).unwrap();
    assert!(
        list.contains("c 1:3 rwm") && list.contains("c 136:* rw"),
        "{list}"
    );
    assert!(!list.contains("a *:*"), "{list}");
    finish(&cg);
}

#[test]
fn check_refuses_what_cannot_be_honoured() {
    let m = Mounts::detect().unwrap();
    let e = CgroupManager::check(&res(json!({"rdma": {"mlx5_0": {"hcaHandles": 3}}})));
    if !m.v1.contains_key("rdma") && !m.unified_controllers.iter().any(|c| c == "rdma") {
        assert!(format!("{}", e.unwrap_err()).contains("rdma"));
    }
    let e = CgroupManager::check(&res(
        json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}),
    ))
    .unwrap_err();
    assert!(format!("{e}").contains("3MB"), "{e}");
    if !m.v1.contains_key("net_cls") {
        let e = CgroupManager::check(&res(json!({"network": {"classID": 1}}))).unwrap_err();
        assert!(format!("{e}").contains("net_cls"), "{e}");
    }
    let e = CgroupManager::check(&res(json!({"memory": {"swappiness": 200}}))).unwrap_err();
    assert!(format!("{e}").contains("swappiness"), "{e}");
    let e = CgroupManager::check(&res(json!({"memory": {"limit": 200, "swap": 100}}))).unwrap_err();
    assert!(format!("{e}").contains("memory.swap"), "{e}");
    let e = CgroupManager::check(&res(json!({"devices": [{"allow": true, "access": "rwx"}]})))
        .unwrap_err();
    assert!(format!("{e}").contains("access"), "{e}");
    if m.v1.contains_key("memory") {
        CgroupManager::check(&res(json!({"memory": {"kernelTCP": 1 << 20}}))).unwrap();
    }
    // memory.kernel is deprecated and not enforced by Linux >= 6.1: accepted, as runc does
    // (the front end warns; nothing is written).
    CgroupManager::check(&res(json!({"memory": {"kernel": 1 << 30}}))).unwrap();
    // docker 20.10 sends zeros for "not set" (runc's reading): accepted and ignored.
    let docker = res(
        json!({"blockIO": {"weight": 0}, "cpu": {"shares": 0}, "memory": {"disableOOMKiller": false, "kernel": 0}}),
    );
    CgroupManager::check(&docker).unwrap();
    // A typical podman set passes.
    CgroupManager::check(&res(json!({
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
        "pids": {"limit": 2048},
    })))
    .unwrap();
}

// ---- cgroup v2 code paths, exercised on the unified mount ----

fn unified() -> Option<Mounts> {
    let m = Mounts::detect().unwrap();
    let Some(u) = m.unified.clone() else {
        eprintln!("skipped: no cgroup2 mount");
        return None;
    };
    Some(Mounts::v2_at(&u).unwrap())
}

#[test]
fn v2_lifecycle_on_unified_mount() {
    if !root() {
        return;
    }
    let Some(m) = unified() else { return };
    let cg = CgroupManager::with_mounts(&m, Some(&path("v2")), "v2", false).unwrap();
    assert_eq!(cg.layout, Layout::V2);
    assert!(cg.v1.is_empty());
    cg.create().unwrap();
    let dir = cg.unified.clone().unwrap();
    assert!(dir.is_dir());

    let a = Child::spawn(pause_forever);
    let b = Child::spawn(pause_forever);
    cg.add_pid(a.pid).unwrap();
    cg.add_pid(b.pid).unwrap();
    let mut want = vec![a.pid, b.pid];
    want.sort();
    assert_eq!(cg.pids().unwrap(), want);

    cg.freeze().unwrap();
    assert!(cg.is_frozen());
    let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    cg.thaw().unwrap();
    assert!(!cg.is_frozen());

    cg.kill_all(libc::SIGTERM).unwrap();
    assert_eq!(a.wait(), (false, libc::SIGTERM));
    assert_eq!(b.wait(), (false, libc::SIGTERM));

    // A resource whose controller is not on this cgroup2 hierarchy is a clear error.
    if !m.unified_controllers.iter().any(|c| c == "memory") {
        let e = cg
            .apply(&res(json!({"memory": {"limit": 1 << 30}})))
            .unwrap_err();
        assert!(format!("{e}").contains("memory controller"), "{e}");
    }
    finish(&cg);
    assert!(!dir.exists());
    cg.destroy().unwrap();
}

#[test]
fn v2_destroy_kills_leftovers() {
    if !root() {
        return;
    }
    let Some(m) = unified() else { return };
    let cg = CgroupManager::with_mounts(&m, Some(&path("v2kill")), "v2kill", false).unwrap();
    cg.create().unwrap();
    let a = Child::spawn(pause_forever);
    cg.add_pid(a.pid).unwrap();
    let reaper = a.reap_in_background();
    cg.destroy().unwrap();
    assert_eq!(reaper.join().unwrap(), (false, libc::SIGKILL));
    finish(&cg);
}

/// open(2) a path and return errno (0 on success).
fn try_open(path: &'static [u8]) -> i32 {
    // SAFETY: NUL-terminated constant path.
    let fd = unsafe { libc::open(path.as_ptr() as *const libc::c_char, libc::O_RDONLY) };
    if fd < 0 {
        return std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(255);
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    0
}

fn open_null() -> i32 {
    try_open(b"/dev/null\0")
}

fn open_zero() -> i32 {
    try_open(b"/dev/zero\0")
}

#[test]
fn v2_device_filter_bpf() {
    if !root() {
        return;
    }
    let Some(m) = unified() else { return };
    let cg = CgroupManager::with_mounts(&m, Some(&path("v2dev")), "v2dev", false).unwrap();
    cg.create().unwrap();
    let rules = res(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ]}));
    cg.apply(&rules).unwrap();
    // Applying again replaces the program rather than stacking a second one.
    cg.apply(&rules).unwrap();

    let a = Child::spawn(open_null);
    cg.add_pid(a.pid).unwrap();
    a.release();
    assert_eq!(a.wait(), (true, 0), "/dev/null (c 1:3) is allowed");
    let b = Child::spawn(open_zero);
    cg.add_pid(b.pid).unwrap();
    b.release();
    assert_eq!(b.wait(), (true, libc::EPERM), "/dev/zero (c 1:5) is denied");
    finish(&cg);
}

#[test]
fn hugetlb_limits() {
    if !root() {
        return;
    }
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        eprintln!("skipped: no 2MB hugepages");
        return;
    }
    // hugetlb is a v1 hierarchy, or (a hybrid quirk, see the design brief) only on cgroup2.
    let m = Mounts::detect().unwrap();
    let file = if m.v1.contains_key("hugetlb") {
        "hugetlb.2MB.limit_in_bytes"
    } else if m.unified_controllers.iter().any(|c| c == "hugetlb") {
        "hugetlb.2MB.max"
    } else {
        eprintln!("skipped: no hugetlb controller");
        return;
    };
    let cg = CgroupManager::new(Some(&path("huge")), "huge", false).unwrap();
    cg.create().unwrap();
    cg.apply(&res(
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}),
    ))
    .unwrap();
    let dir = match cg.v1_dir("hugetlb") {
        Some(d) => d.to_path_buf(),
        None => cg.unified.clone().unwrap(),
    };
    assert_eq!(
        std::fs::read_to_string(dir.join(file)).unwrap().trim(),
        "4194304"
    );
    finish(&cg);
    assert!(!dir.exists());
}

#[test]
fn v1_blkio_weight_and_throttle() {
    if !root() || host().is_none() {
        return;
    }
    let cg = CgroupManager::new(Some(&path("blkio")), "blkio", false).unwrap();
    let Some(dir) = cg.v1_dir("blkio").map(Path::to_path_buf) else {
        eprintln!("skipped: no v1 blkio controller");
        return;
    };
    // A real block device of this host (e.g. vda 254:0).
    let dev = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("loop"))
        .find_map(|e| std::fs::read_to_string(e.path().join("dev")).ok());
    let Some(dev) = dev else {
        eprintln!("skipped: no block device");
        return;
    };
    let (maj, min) = dev.trim().split_once(':').unwrap();
    let (maj, min): (i64, i64) = (maj.parse().unwrap(), min.parse().unwrap());
    cg.create().unwrap();
    // docker 20.10 sends weight 0 meaning "not set".
    cg.apply(&res(json!({"blockIO": {"weight": 0}, "cpu": {"shares": 0}, "memory": {"disableOOMKiller": false}}))).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    // The weight file depends on the disk's I/O scheduler: CFQ's blkio.weight, BFQ's
    // blkio.bfq.weight, or neither (mq-deadline, none), where a weight must be refused by name.
    let weight = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| dir.join(f).exists());
    match weight {
        Some(f) => {
            cg.apply(&res(json!({"blockIO": {"weight": 500}}))).unwrap();
            assert!(read(f).contains("500"), "{}", read(f));
        }
        None => {
            eprintln!("no blkio weight file on this host (I/O scheduler without weights): checking the refusal");
            let e = cg
                .apply(&res(json!({"blockIO": {"weight": 500}})))
                .unwrap_err();
            assert!(format!("{e:#}").contains("blkio.weight"), "{e:#}");
        }
    }
    cg.apply(&res(json!({"blockIO": {
        "throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 100}],
    }})))
    .unwrap();
    assert!(read("blkio.throttle.read_bps_device").contains(&format!("{maj}:{min} 1048576")));
    assert!(read("blkio.throttle.write_iops_device").contains(&format!("{maj}:{min} 100")));
    finish(&cg);
}

/// Prints what a cgroup costs per container on this host (no assertion on time).
/// `cargo test -p hako-linux --test cgroups_host -- --ignored --nocapture cost`
#[test]
#[ignore]
fn cgroup_lifecycle_cost() {
    if !root() {
        return;
    }
    let r = res(
        json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 100},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}),
    );
    let n = 50;
    let (mut new, mut create, mut apply, mut destroy) = (0u128, 0u128, 0u128, 0u128);
    for i in 0..n {
        let t = std::time::Instant::now();
        let cg = CgroupManager::new(Some(&path(&format!("cost{i}"))), "cost", false).unwrap();
        new += t.elapsed().as_micros();
        let t = std::time::Instant::now();
        cg.create().unwrap();
        create += t.elapsed().as_micros();
        let t = std::time::Instant::now();
        cg.apply(&r).unwrap();
        apply += t.elapsed().as_micros();
        let t = std::time::Instant::now();
        cg.destroy().unwrap();
        destroy += t.elapsed().as_micros();
    }
    let cg = CgroupManager::new(Some(&path("cost0")), "cost", false).unwrap();
    finish(&cg);
    eprintln!(
        "per container, µs: new {} create {} ({} dirs) apply {} destroy {}",
        new / n,
        create / n,
        cg.dirs().len(),
        apply / n,
        destroy / n
    );
}
