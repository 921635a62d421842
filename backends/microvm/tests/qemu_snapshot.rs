//! Snapshot boot through the qemu engine (TCG here): sandboxes restored from a template run
//! their bundles, each with its own boot id, entropy, hostname and memory; a damaged template
//! or a changed kernel means a new template, never a broken sandbox; concurrent builds of one
//! template happen once; a bad `io.hako.microvm.boot` leaves nothing behind.
//! Needs what qemu_boot.rs needs (kernel, qemu, busybox-static, root); skips otherwise.

mod common;

use common::qemu::{
    build_agent, create_captured, procs_mentioning, read_all, skip_reason, wait, Env,
};
use hako_contract::{Backend, Sandbox};
use hako_microvm::knobs::BOOT;
use hako_microvm::template::{self, Check, Inputs};
use hako_microvm::timings::{Timings, FILE as TIMINGS};
use hako_microvm::MicrovmBackend;
use std::path::{Path, PathBuf};

/// One test: the harness writes its progress to fd 1, which create_captured points at the host
/// process's pipe while a create runs, so no other test of this file may run meanwhile.
#[test]
fn snapshot_boot() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    build_agent();
    bad_boot_annotation_fails_create_and_leaves_nothing();
    restored_sandboxes_run_isolated_from_each_other();
    each_restored_sandbox_reads_its_own_rootfs();
    premade_mounts_give_the_view_fresh_ones_do();
    damaged_template_or_changed_kernel_means_a_new_template();
    concurrent_builds_of_one_template_happen_once();
}

const MARK: &str = "--- workload output ---";

/// What one sandbox printed, its timings, and the template directories after it ran.
struct Ran {
    out: String,
    timings: Timings,
}

/// Create, start and wait for sandbox `id` with hostname `host` running `script`; delete it.
fn run(env: &Env, id: &str, host: &str, script: &str, ann: &[(&str, &str)]) -> Ran {
    run_with(env, id, host, script, ann, |_| {})
}

/// [`run`] with the spec changed by `edit` first.
fn run_with(
    env: &Env,
    id: &str,
    host: &str,
    script: &str,
    ann: &[(&str, &str)],
    edit: impl FnOnce(&mut oci_spec::runtime::Spec),
) -> Ran {
    let b = MicrovmBackend::new();
    // The harness may write to fd 1 while create_captured has it ("has been running for over
    // 60 seconds"): the workload's output starts after a marker line.
    let script = format!("echo {MARK}; {script}");
    let mut spec = env.spec(&["/bin/sh", "-c", &script], ann);
    edit(&mut spec);
    spec.set_hostname(Some(host.into()));
    let mut root = spec.root().clone().unwrap();
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    let (state, fifo) = env.sandbox_dir(id);
    let req = env.request(id, &spec, &state, &fifo);
    let (res, out, err) = create_captured(&b, &req);
    let created = res.unwrap_or_else(|e| panic!("create {id}: {e:#}"));
    hako_contract::start_gate::release(&fifo, || hako_contract::proc::is_alive(created.pid, None))
        .unwrap();
    let st = wait(created.pid);
    let (out, err) = (read_all(out), read_all(err));
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "{id}: status {st:#x}, stdout {out:?}, stderr {err:?}"
    );
    let out = match out.split_once(&format!("{MARK}\n")) {
        Some((_, o)) => o.to_string(),
        None => panic!("{id}: no marker in {out:?}"),
    };
    let timings = Timings::read(&state.join(TIMINGS)).unwrap();
    assert_eq!(
        created.data["boot"].as_str(),
        Some(timings.boot.as_str()),
        "{:?}",
        created.data
    );
    let sb = Sandbox {
        id,
        bundle: &env.bundle,
        spec: &spec,
        state_dir: &state,
        pid: created.pid,
        alive: false,
        data: &created.data,
        global: &env.global,
    };
    b.delete(&sb).unwrap();
    assert!(
        procs_mentioning(&state.to_string_lossy()).is_empty(),
        "a VM was left behind"
    );
    Ran { out, timings }
}

/// The template directories (not locks, memo, or half-made ones).
fn templates(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join(template::DIR))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_dir() && p.join("manifest.json").exists());
    v.sort();
    v
}

const PROBE: &str = "cat /proc/sys/kernel/random/boot_id; \
    head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; hostname; date +%s; \
    echo x > /tmp/mark-$(hostname); ls /tmp | tr '\\n' ' '; echo";

fn restored_sandboxes_run_isolated_from_each_other() {
    let env = Env::new("snap-iso");
    let a = run(&env, "a", "sandbox-a", PROBE, &[]);
    let made = templates(&env.global.root);
    assert_eq!(
        made.len(),
        1,
        "one template made by the first create: {made:?}"
    );
    let b = run(&env, "b", "sandbox-b", PROBE, &[]);
    assert_eq!(
        templates(&env.global.root),
        made,
        "the second create reused the template"
    );
    eprintln!(
        "a: {:?}\nb: {:?}\n{:?}\n{:?}",
        a.timings, b.timings, a.out, b.out
    );
    for r in [&a, &b] {
        assert_eq!(r.timings.boot, "snapshot", "{:?}", r.timings);
        assert_eq!(r.timings.kernel_boot_ms, Some(0.0));
    }
    let la: Vec<&str> = a.out.lines().collect();
    let lb: Vec<&str> = b.out.lines().collect();
    assert_eq!(
        (la.len(), lb.len()),
        (5, 5),
        "a: {:?} b: {:?}",
        a.out,
        b.out
    );
    assert_eq!(la[0].len(), 36, "a boot id: {:?}", la[0]);
    assert_ne!(la[0], lb[0], "boot ids");
    assert_eq!(la[1].len(), 32, "{:?}", la[1]);
    assert_ne!(la[1], lb[1], "random bytes");
    assert_eq!((la[2], lb[2]), ("sandbox-a", "sandbox-b"));
    // The wall clock is the host's, not the template's (a correctness bound, not a timing one).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for l in [&la, &lb] {
        let t: i64 = l[3].parse().unwrap();
        assert!((now - t).abs() < 600, "guest clock {t}, host {now}");
    }
    // Each sandbox sees its own write only.
    assert_eq!(la[4].trim(), "mark-sandbox-a");
    assert_eq!(lb[4].trim(), "mark-sandbox-b");
    // The copies never wrote to the template: its checksums still hold.
    let i = inputs_of(&made[0]);
    template::verify(&made[0], &i, Check::Full).unwrap();

    // Cold boot on request, from the same bundle.
    let c = run(&env, "c", "sandbox-c", "true", &[(BOOT, "cold")]);
    assert_eq!(c.timings.boot, "cold");
    assert!(c.timings.kernel_boot_ms.unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&env.dir);
}

/// Sandboxes from one template with different rootfs images (of different ext4 sizes, all
/// behind a device of the one size the template's placeholder had): each reads its own files,
/// never the placeholder's blocks or another image's.
fn each_restored_sandbox_reads_its_own_rootfs() {
    let env = Env::new("snap-rootfs");
    let rootfs = env.bundle.join("rootfs");
    let big = rootfs.join("big");
    // 6 MiB of a pattern the guest checksums: blocks far past a small image's end.
    let pattern: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    let want_sum = {
        use std::io::Write;
        let mut c = std::process::Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&pattern).unwrap();
        let o = c.wait_with_output().unwrap();
        String::from_utf8(o.stdout).unwrap()[..32].to_string()
    };
    let script = "cat /etc/which; if [ -e /big ]; then busybox md5sum /big; else echo no-big; fi";
    let mut seen = vec![];
    for (i, which) in ["one", "two", "three"].iter().enumerate() {
        std::fs::write(rootfs.join("etc/which"), format!("{which}\n")).unwrap();
        if i == 1 {
            std::fs::write(&big, &pattern).unwrap();
        } else {
            let _ = std::fs::remove_file(&big);
        }
        let r = run(&env, &format!("r{i}"), "rootfs", script, &[]);
        assert_eq!(r.timings.boot, "snapshot", "{:?}", r.timings);
        eprintln!("{which}: agent steps {:?}", r.timings.agent_steps_ms);
        let lines: Vec<&str> = r.out.lines().collect();
        assert_eq!(lines[0], *which, "{:?}", r.out);
        if i == 1 {
            assert_eq!(lines[1], format!("{want_sum}  /big"), "{:?}", r.out);
        } else {
            assert_eq!(lines[1], "no-big", "{:?}", r.out);
        }
        seen.push(templates(&env.global.root));
    }
    assert_eq!(seen[0].len(), 1, "one template: {seen:?}");
    assert!(
        seen.iter().all(|t| *t == seen[0]),
        "one template for all: {seen:?}"
    );
    // Three images, each a device of the template's rootfs size, their ext4 sizes differing.
    let images: Vec<PathBuf> = std::fs::read_dir(env.global.root.join("microvm-cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("rootfs-")
        })
        .collect();
    assert_eq!(images.len(), 3, "{images:?}");
    for i in &images {
        assert!(hako_microvm::image::is_device_sized(i), "{}", i.display());
    }
    let _ = std::fs::remove_dir_all(&env.dir);
}

/// The workload's mount table (mount point, type, options) and /dev, and what /dev/shm holds
/// before the workload writes its own mark there.
const VIEW: &str =
    "grep -E ' /(proc|dev|dev/pts|dev/shm|dev/mqueue|sys|sys/fs/cgroup) ' /proc/mounts \
    | cut -d' ' -f2-4 | tr '\\n' ';'; echo; ls /dev | tr '\\n' ' '; echo; \
    ls /dev/shm | tr '\\n' ' '; echo; echo x > /dev/shm/mark-$(hostname)";

/// A restored guest moves the kernel mounts its template made ahead (the OCI default set) into
/// the workload's root: the workload sees what fresh mounts give (the same mount table and
/// /dev as a cold boot's), nothing another sandbox wrote there, and a spec whose mount differs
/// from the premade one gets its own.
fn premade_mounts_give_the_view_fresh_ones_do() {
    let env = Env::new("snap-premount");
    let a = run(&env, "a", "pm-a", VIEW, &[]);
    let b = run(&env, "b", "pm-b", VIEW, &[]);
    let c = run(&env, "c", "pm-c", VIEW, &[(BOOT, "cold")]);
    assert_eq!(
        (
            a.timings.boot.as_str(),
            b.timings.boot.as_str(),
            c.timings.boot.as_str()
        ),
        ("snapshot", "snapshot", "cold")
    );
    let la: Vec<&str> = a.out.lines().collect();
    let lb: Vec<&str> = b.out.lines().collect();
    let lc: Vec<&str> = c.out.lines().collect();
    eprintln!("restored: {la:?}\ncold: {lc:?}");
    // The same mounts with the same options, restored or cold.
    assert_eq!(la[0], lc[0], "restored vs cold mount table");
    assert_eq!(lb[0], lc[0], "restored vs cold mount table");
    for want in [
        "/proc proc rw,",
        "/dev tmpfs rw,nosuid,",
        "/dev/pts devpts rw,nosuid,noexec,",
        "/dev/shm tmpfs rw,nosuid,nodev,noexec,",
        "/dev/mqueue mqueue rw,nosuid,nodev,noexec,",
        "/sys sysfs ro,nosuid,nodev,noexec,",
        "/sys/fs/cgroup cgroup2 ro,nosuid,nodev,noexec,",
    ] {
        assert!(la[0].contains(want), "{want:?} in {:?}", la[0]);
    }
    // The default devices, and the same /dev as a cold boot's.
    assert_eq!(la[1], lc[1], "restored vs cold /dev");
    for d in [
        "full", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero",
    ] {
        assert!(la[1].split(' ').any(|n| n == d), "/dev/{d} in {:?}", la[1]);
    }
    // Each restored sandbox's /dev/shm starts empty: b does not see a's mark.
    assert_eq!(la.get(2).map(|l| l.trim()), Some(""), "{:?}", a.out);
    assert_eq!(lb.get(2).map(|l| l.trim()), Some(""), "{:?}", b.out);

    // A /dev/shm of another size than the premade one's: a mount of its own, as asked.
    let d = run_with(&env, "d", "pm-d", VIEW, &[], |spec| {
        let mut mounts = spec.mounts().clone().unwrap();
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/dev/shm") {
                m.set_options(Some(
                    ["nosuid", "noexec", "nodev", "mode=1777", "size=1m"]
                        .map(String::from)
                        .to_vec(),
                ));
            }
        }
        spec.set_mounts(Some(mounts));
    });
    assert_eq!(d.timings.boot, "snapshot");
    assert!(
        d.out
            .contains("/dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k"),
        "{:?}",
        d.out
    );
    let _ = std::fs::remove_dir_all(&env.dir);
}

fn inputs_of(dir: &Path) -> Inputs {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    serde_json::from_value(m["inputs"].clone()).unwrap()
}

fn damaged_template_or_changed_kernel_means_a_new_template() {
    let env = Env::new("snap-damage");
    // A kernel of our own, to change it later.
    let kernel = env.dir.join("vmlinux");
    std::fs::copy(
        std::fs::canonicalize(hako_microvm::assets::default_kernel()).unwrap(),
        &kernel,
    )
    .unwrap();
    let k = kernel.to_string_lossy().into_owned();
    let ann = [(hako_microvm::knobs::KERNEL, k.as_str())];
    let first = run(&env, "d1", "d1", "echo ok", &ann);
    assert_eq!(
        (first.out.as_str(), first.timings.boot.as_str()),
        ("ok\n", "snapshot")
    );
    let made = templates(&env.global.root);
    assert_eq!(made.len(), 1);

    // Damage the template's guest memory (same size, other bytes).
    let ram = made[0].join("ram");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&ram).unwrap();
        f.write_all_at(&[0xcc; 4096], 1 << 20).unwrap();
    }
    assert!(template::verify(&made[0], &inputs_of(&made[0]), Check::Fast).is_err());
    let second = run(&env, "d2", "d2", "echo ok", &ann);
    assert_eq!(
        (second.out.as_str(), second.timings.boot.as_str()),
        ("ok\n", "snapshot")
    );
    assert_eq!(
        templates(&env.global.root),
        made,
        "rebuilt in the same place"
    );
    template::verify(&made[0], &inputs_of(&made[0]), Check::Full)
        .expect("the rebuilt template checks out");

    // A missing template file: rebuilt too.
    std::fs::remove_file(made[0].join("state")).unwrap();
    let third = run(&env, "d3", "d3", "echo ok", &ann);
    assert_eq!(
        (third.out.as_str(), third.timings.boot.as_str()),
        ("ok\n", "snapshot")
    );

    // Damage the checks cannot see (the manifest rewritten to the damaged file's identity):
    // qemu refuses the device state, and the host process boots the same sandbox cold.
    let state_file = made[0].join("state");
    let len = std::fs::metadata(&state_file).unwrap().len() as usize;
    std::fs::write(&state_file, vec![0x5a; len]).unwrap();
    let mpath = made[0].join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&state_file).unwrap();
        let f = &mut m["files"]["state"];
        f["ino"] = md.ino().into();
        f["size"] = md.size().into();
        f["mtime_ns"] = (md.mtime() * 1_000_000_000 + md.mtime_nsec()).into();
        f["ctime_ns"] = (md.ctime() * 1_000_000_000 + md.ctime_nsec()).into();
    }
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    template::verify(&made[0], &inputs_of(&made[0]), Check::Fast).unwrap();
    let fallback = run(&env, "d5", "d5", "echo ok", &ann);
    assert_eq!(
        (fallback.out.as_str(), fallback.timings.boot.as_str()),
        ("ok\n", "cold")
    );
    assert!(
        !mpath.exists(),
        "the template that failed to restore is discarded"
    );
    let again = run(&env, "d6", "d6", "echo ok", &ann);
    assert_eq!(
        (again.out.as_str(), again.timings.boot.as_str()),
        ("ok\n", "snapshot")
    );
    assert!(mpath.exists(), "made again by the next create");

    // A changed kernel (one byte appended: still a bootable ELF) is another template.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&kernel)
            .unwrap();
        f.write_all(&[0]).unwrap();
    }
    let fourth = run(&env, "d4", "d4", "echo ok", &ann);
    assert_eq!(
        (fourth.out.as_str(), fourth.timings.boot.as_str()),
        ("ok\n", "snapshot")
    );
    let now = templates(&env.global.root);
    assert_eq!(now.len(), 2, "{now:?}");
    let i_old = inputs_of(&made[0]);
    let new = now.iter().find(|p| **p != made[0]).unwrap();
    assert_ne!(inputs_of(new).kernel_sha256, i_old.kernel_sha256);
    let _ = std::fs::remove_dir_all(&env.dir);
}

fn concurrent_builds_of_one_template_happen_once() {
    let env = Env::new("snap-conc");
    let root = env.global.root.clone();
    let kernel = hako_microvm::assets::default_kernel();
    let cache = root.join("microvm-cache");
    let agent_disk =
        hako_microvm::assets::agent_disk(&cache, &hako_microvm::assets::find_agent().unwrap())
            .unwrap();
    let engine = hako_microvm::qemu::Qemu::find().unwrap();
    let inputs = Inputs::new(&engine, &root, &kernel, &agent_disk, 1, 96, false, None).unwrap();
    let built: Vec<Option<String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let e = hako_microvm::qemu::Qemu::find().unwrap();
                    template::ensure(&e, &root, &inputs, &kernel, &agent_disk, Check::Fast)
                        .unwrap()
                        .built
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(built.iter().filter(|b| b.is_some()).count(), 1, "{built:?}");
    assert_eq!(templates(&root).len(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(root.join(template::DIR))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-made templates left: {leftovers:?}"
    );
    let _ = std::fs::remove_dir_all(&env.dir);
}

fn bad_boot_annotation_fails_create_and_leaves_nothing() {
    let env = Env::new("snap-bad");
    let b = MicrovmBackend::new();
    let spec = env.spec(&["/bin/true"], &[(BOOT, "warm")]);
    let e = format!("{:#}", b.check(&spec, &env.bundle).unwrap_err());
    assert_eq!(e, "io.hako.microvm.boot=\"warm\": use snapshot or cold");
    let (state, fifo) = env.sandbox_dir("bad");
    let req = env.request("bad", &spec, &state, &fifo);
    let e = format!("{:#}", b.create(&req).unwrap_err());
    assert!(e.contains("use snapshot or cold"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "start")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!env.global.root.join(template::DIR).exists());
    assert!(procs_mentioning(&state.to_string_lossy()).is_empty());
    let _ = std::fs::remove_dir_all(&env.dir);
}
