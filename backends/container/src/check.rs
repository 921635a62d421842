//! `check`: refuse what the container backend cannot honour, before anything is made.

use crate::namespaces;
use crate::process::{self, ProcessPlan};
use crate::{caps, rootfs, sec, CgroupManager};
use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use serde_json::json;
use std::path::Path;

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Which namespace a sysctl needs (runc's rules); `None` = not namespaced, refused.
fn sysctl_namespace(key: &str) -> Option<libc::c_int> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(libc::CLONE_NEWIPC)
    } else if key.starts_with("net.") {
        Some(libc::CLONE_NEWNET)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(libc::CLONE_NEWUTS)
    } else {
        None
    }
}

pub fn check(spec: &Spec, bundle: &Path) -> Result<()> {
    let root = spec.root().as_ref().context("config.json has no root")?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        bail!("root.path {} is not a directory", rootfs.display());
    }
    let proc_spec = spec
        .process()
        .as_ref()
        .context("config.json has no process (the container backend needs one)")?;
    let p = ProcessPlan::from_spec(proc_spec)?;
    if p.apparmor.is_some() && !process::apparmor_enabled() {
        bail!("process.apparmorProfile is set but AppArmor is not enabled on this host");
    }
    if proc_spec
        .selinux_label()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        if !selinux_enabled() {
            bail!("process.selinuxLabel is set but SELinux is not enabled on this host");
        }
        bail!("process.selinuxLabel is not supported by the container backend");
    }
    if proc_spec.scheduler().is_some() {
        bail!("process.scheduler is not supported by the container backend");
    }
    if proc_spec.exec_cpu_affinity().is_some() {
        bail!("process.execCPUAffinity is not supported by the container backend");
    }
    if let Some(c) = proc_spec.capabilities() {
        for set in [
            c.bounding(),
            c.effective(),
            c.permitted(),
            c.inheritable(),
            c.ambient(),
        ]
        .into_iter()
        .flatten()
        {
            for cap in set {
                caps::number(cap)?;
            }
        }
    }
    // Security settings first: a profile we cannot load is the most important thing to report.
    if let Some(linux) = spec.linux() {
        if let Some(s) = linux.seccomp() {
            sec::check(s)?;
        }
        if let Some(r) = linux.resources() {
            CgroupManager::check(r)?;
        }
    }
    let ns = namespaces::plan(spec)?;
    if !ns.new_mount {
        check_shared_mount_namespace(spec, &ns)?;
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !ns.has(libc::CLONE_NEWUTS) {
        bail!("hostname is set but there is no uts namespace");
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !ns.has(libc::CLONE_NEWUTS) {
        bail!("domainname is set but there is no uts namespace");
    }
    for m in spec.mounts().iter().flatten() {
        rootfs::plan_mount(m, bundle)?;
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if linux.intel_rdt().is_some() {
        bail!("linux.intelRdt is not supported by the container backend");
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        bail!("linux.netDevices is not supported by the container backend");
    }
    if linux.time_offsets().as_ref().is_some_and(|d| !d.is_empty()) {
        bail!("linux.timeOffsets is not supported by the container backend (no time namespace)");
    }
    if linux.memory_policy().is_some() {
        bail!("linux.memoryPolicy is not supported by the container backend");
    }
    if let Some(l) = linux.mount_label() {
        if !l.is_empty() {
            bail!("linux.mountLabel is set but SELinux is not supported by the container backend");
        }
    }
    if let Some(pers) = linux.personality() {
        if pers.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            bail!("linux.personality.flags are not supported by the container backend");
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        if !prop.is_empty() && rootfs::propagation_flag(prop).is_none() {
            bail!("unknown linux.rootfsPropagation {prop:?}");
        }
    }
    for (k, _) in linux.sysctl().iter().flatten() {
        match sysctl_namespace(k) {
            Some(f) if ns.has(f) => {}
            Some(_) => {
                bail!("sysctl {k} needs its own namespace, which the spec does not create or join")
            }
            None => bail!("sysctl {k} is not namespaced: it would change the host"),
        }
    }
    for d in linux.devices().iter().flatten() {
        if !d.path().starts_with("/dev/") {
            bail!("linux.devices: {} is not under /dev", d.path().display());
        }
        if d.typ() == oci_spec::runtime::LinuxDeviceType::A {
            bail!(
                "linux.devices: {} has type 'a', which only cgroup rules take",
                d.path().display()
            );
        }
    }
    Ok(())
}

/// A container without a mount namespace of its own (none listed, or one joined by path) runs
/// in that shared namespace, as with runc; hako builds its tree in a private copy and hands the
/// workload a detached clone of it (see `rootfs::enter_shared_namespace`). What that way cannot
/// honour is refused here.
fn check_shared_mount_namespace(spec: &Spec, ns: &namespaces::NsPlan) -> Result<()> {
    let joined = ns.joins.iter().any(|(_, f)| *f == libc::CLONE_NEWNS);
    let which = if joined {
        "a joined mount namespace"
    } else {
        "no mount namespace of its own"
    };
    if ns.new_user {
        // The private copy would belong to the new user namespace, which may not setns back
        // into the shared one (runc fails the same config on its first mount).
        bail!("a new user namespace needs a new mount namespace too (the container has {which})");
    }
    let unbindable = |p: &str| p.ends_with("unbindable");
    if let Some(prop) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
    {
        if unbindable(&prop) {
            bail!("linux.rootfsPropagation {prop:?} is not supported with {which}: an unbindable root cannot be handed to the workload");
        }
        if joined && prop.ends_with("shared") {
            bail!("linux.rootfsPropagation {prop:?} is not supported with a joined mount namespace: the container's mounts would propagate into it");
        }
    }
    for m in spec.mounts().iter().flatten() {
        if m.options().iter().flatten().any(|o| unbindable(o)) {
            bail!(
                "mount {}: an unbindable mount is not supported with {which} (it would be left out of the container's tree)",
                m.destination().display()
            );
        }
    }
    Ok(())
}

pub fn features() -> serde_json::Value {
    let mut opts: Vec<&str> = vec![
        "ro",
        "rw",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "sync",
        "async",
        "dirsync",
        "remount",
        "mand",
        "nomand",
        "atime",
        "noatime",
        "diratime",
        "nodiratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "bind",
        "rbind",
        "silent",
        "loud",
        "private",
        "rprivate",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "unbindable",
        "runbindable",
        "tmpcopyup",
    ];
    opts.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.1",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": opts,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps::known_names(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": sec::enabled(),
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "knownFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
                ],
                "supportedFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
                ]
            },
            "apparmor": { "enabled": process::apparmor_enabled() },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } },
        },
        "annotations": {},
        // hako's own keys (runtime-spec features.md allows extensions): what this backend
        // refuses with one error line rather than run, and how it runs rootless.
        "io.hako.refuses": [
            "a mount whose destination resolves to /proc or below, unless a proc mount on /proc itself or a bind of a file lxcfs provides (cpuinfo, meminfo, stat, ...)",
            "process.terminal without --console-socket",
            "process.apparmorProfile on a host without AppArmor; process.selinuxLabel",
            "rootless: linux.resources limits when the user has no writable cgroup",
            "rootless (not root at all): a config without a user namespace",
            "without a mount namespace of its own (none, or one joined by path): a new user namespace, an unbindable rootfsPropagation or mount; with a joined one, a shared rootfsPropagation"
        ],
        "io.hako.rootless": "user namespace (mapped through newuidmap/newgidmap when wider than the caller's ids); cgroup only where delegated; state under $XDG_RUNTIME_DIR/hako",
    })
}
