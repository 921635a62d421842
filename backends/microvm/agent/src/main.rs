//! hako-agent: the guest's `/init` in a hako microvm.
//!
//! 1. Mounts /proc, /sys, /dev and a tmpfs at /mnt on the agent disk (the kernel's root).
//! 2. Opens the agent port (`/dev/hvc0`, raw mode); in a template guest, says Template and waits
//!    for Go (`restore`: a restored copy resumes there, reseeds, sets the clock, gets its config
//!    from the host); a cold boot reads the config disk.
//! 3. Mounts the rootfs image read-only, an overlay on a tmpfs upper over it, the spec's mounts;
//!    brings `lo` up and configures the virtio-net interface the host described (`net`).
//! 4. Forks the workload: new mount namespace, pivot_root into the overlay, rlimits, user,
//!    capabilities, seccomp; it waits for the host's Start frame, then execs.
//! 5. Relays stdio as frames, forwards signals, reports the exit status as the last frame and
//!    restarts the machine (the engines run the guest with `reboot=t` and treat a reset as the
//!    end of the VM).
//!
//! Modules: `disks` finds the config and rootfs disks, `mounts` builds the workload's view,
//! `workload` forks and supervises the processes, `child` is a process between fork and exec,
//! `relay` carries stdio as frames, `pty` the terminals, `sys` the libc wrappers they share.

mod boottime;
mod child;
mod disks;
mod mounts;
mod net;
mod pty;
mod relay;
mod restore;
mod sys;
mod workload;

use boottime::{boottime_ns, mark, AGENT_START_NS};
use disks::find_disks;
use hako_agent::proto::{ConfigDisk, Frame};
use mounts::{pids_cgroup, setup_mounts, NEWROOT};
use pty::make_raw;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use sys::{errno, mkdir_p, mount, NoCtty, Res};
use workload::Workload;

const PORT: &str = "/dev/hvc0";

fn main() {
    AGENT_START_NS.store(boottime_ns(), std::sync::atomic::Ordering::Relaxed);
    if std::process::id() != 1 {
        eprintln!("hako-agent: this is the guest init of a hako microvm; it must run as pid 1");
        std::process::exit(2);
    }
    let mut port: Option<fs::File> = None;
    let err = run(&mut port).err();
    if let Some(e) = err {
        let msg = format!("guest agent: {e}");
        // The kernel log (serial) always gets it; the host parses the port.
        log(&msg);
        if let Some(p) = port.as_mut() {
            let _ = p.write_all(&Frame::Error(msg).encode());
        }
    }
    if let Some(p) = port.as_ref() {
        // SAFETY: tcdrain on our fd.
        unsafe { libc::tcdrain(p.as_raw_fd()) };
    }
    power_off();
}

fn log(msg: &str) {
    // /dev/console (our stdio from the kernel) is the serial port.
    let _ = writeln!(std::io::stderr(), "hako-agent: {msg}");
}

fn power_off() -> ! {
    // SAFETY: plain syscalls.
    unsafe {
        libc::sync();
        // With `reboot=t` a restart is a triple fault, which both engines turn into "VM ended";
        // RB_POWER_OFF would only halt a guest without ACPI.
        libc::reboot(libc::RB_AUTOBOOT);
        loop {
            libc::pause();
        }
    }
}

fn run(port_slot: &mut Option<fs::File>) -> Res<()> {
    // SAFETY: umask is always safe.
    unsafe { libc::umask(0o022) };
    let _ = mount("proc", Path::new("/proc"), "proc", 0, "");
    let _ = mount("sysfs", Path::new("/sys"), "sysfs", 0, "");
    if !Path::new("/dev/null").exists() {
        mount("devtmpfs", Path::new("/dev"), "devtmpfs", 0, "")?;
    }
    mount("tmpfs", Path::new("/mnt"), "tmpfs", 0, "mode=0755")?;
    mark("early-mounts");

    let mut port = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(PORT)
        .map_err(|e| format!("open agent port {PORT}: {e}"))?;
    make_raw(port.as_raw_fd())?;
    mark("agent-port");
    *port_slot = Some(port.try_clone().map_err(|e| e.to_string())?);
    // A template guest stops here until a restored copy of it gets Go (restore.rs).
    let restored = restore::template_mode();
    let mut prefetch = None;
    let (disk, rootfs_dev) = if restored {
        let image;
        (image, prefetch) = restore::wait_for_go(&mut port)?;
        let c = ConfigDisk::parse(&image).map_err(|e| format!("the config from the host: {e}"))?;
        mark("parse-config");
        (c, restore::ROOTFS_DEV.to_string())
    } else {
        let found = find_disks()?;
        mark("find-disks");
        found
    };
    let cfg = &disk.config;

    // The workload's root: the read-only image, an overlay with its upper on a tmpfs.
    let lower = Path::new("/mnt/lower");
    let rw = Path::new("/mnt/rw");
    let newroot = Path::new(NEWROOT);
    for d in [lower, rw, newroot] {
        mkdir_p(d)?;
    }
    mount(&rootfs_dev, lower, "ext4", libc::MS_RDONLY, "")?;
    drop(prefetch);
    mark("mount-rootfs");
    mount(
        "tmpfs",
        rw,
        "tmpfs",
        0,
        &format!("size={}m,mode=0755", cfg.overlay_size_mib.max(1)),
    )?;
    mkdir_p(&rw.join("upper"))?;
    mkdir_p(&rw.join("work"))?;
    mkdir_p(&rw.join("carried"))?;
    mount(
        "overlay",
        newroot,
        "overlay",
        0,
        "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work",
    )?;
    mark("overlay");

    if let Some(limit) = cfg.pids_limit {
        pids_cgroup(limit)?;
        mark("pids-cgroup");
    }
    setup_mounts(&disk, newroot, rw, restored)?;
    mark("spec-mounts");
    if cfg.readonly_root {
        mount(
            "",
            newroot,
            "",
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            "",
        )?;
    }
    if let Some(h) = &cfg.hostname {
        // SAFETY: pointer and length of a live buffer.
        if unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } != 0 {
            return Err(format!("sethostname {h:?}: {}", errno()));
        }
    }
    // lo up, and the virtio-net interface (when the host gave the sandbox a network) configured
    // before the workload's sysctls, which may name it.
    net::configure(cfg.net.as_ref(), restored)?;
    mark("net");
    // A net.<proto>.* sysctl for a protocol the guest kernel lacks governs a network that does
    // not exist, so whatever it restricts holds already. Anything else must apply.
    for (k, v) in &cfg.sysctl {
        let mut parts = k.split('.');
        if let (Some("net"), Some(proto)) = (parts.next(), parts.next()) {
            if !PathBuf::from("/proc/sys/net").join(proto).exists() {
                continue;
            }
        }
        let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        fs::write(&p, v).map_err(|e| format!("sysctl {k}={v}: {e}"))?;
    }

    let seccomp_prog = match &cfg.seccomp {
        Some(s) => Some(
            s.programs
                .iter()
                .map(|b| disk.blob(*b).map(<[u8]>::to_vec))
                .collect::<Res<Vec<_>>>()?,
        ),
        None => None,
    };
    mark("sysctl-seccomp");
    let w = Workload::spawn(cfg, seccomp_prog)?;
    mark("spawn-workload");
    w.supervise(port)
}
