//! cgroup v1 (and the v1 side of hybrid): one directory per controller hierarchy.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{devices, fs, v2, CgroupManager};

/// The directory of a v1 controller, or an error saying which resource needs it.
fn need<'a>(mgr: &'a CgroupManager, ctrl: &str, what: &str) -> Result<&'a Path> {
    mgr.v1_dir(ctrl).ok_or_else(|| {
        anyhow::anyhow!(
            "{what} needs the {ctrl} cgroup controller, which is not mounted on this host"
        )
    })
}

/// A control file that must exist in the controller's hierarchy (checked at the mount root,
/// which has the same interface files as its children for these).
fn need_file(mgr: &CgroupManager, ctrl: &str, file: &str, what: &str) -> Result<()> {
    need(mgr, ctrl, what)?;
    let mnt = &mgr.v1_mounts[ctrl];
    if !mnt.join(file).exists() {
        bail!(
            "{what} is not supported by this kernel ({file} does not exist in {})",
            mnt.display()
        );
    }
    Ok(())
}

/// -1 and values as the kernel prints them for "unlimited".
fn limit_str(v: i64) -> String {
    if v < 0 {
        "-1".into()
    } else {
        v.to_string()
    }
}

pub(super) fn check(mgr: &CgroupManager, res: &LinuxResources) -> Result<()> {
    if let Some(m) = res.memory() {
        check_memory(mgr, m)?;
    }
    if let Some(c) = res.cpu() {
        check_cpu(mgr, c)?;
    }
    if res.pids().is_some() {
        need(mgr, "pids", "linux.resources.pids")?;
    }
    if let Some(b) = res.block_io() {
        check_blkio(mgr, b)?;
    }
    if let Some(h) = res.hugepage_limits() {
        if !h.is_empty() {
            if mgr.v1_dir("hugetlb").is_none() && !mgr.has_v2("hugetlb") {
                bail!("linux.resources.hugepageLimits needs the hugetlb cgroup controller, which is not available on this host");
            }
            for l in h {
                v2::hugepage_size(l.page_size())?;
            }
        }
    }
    if let Some(n) = res.network() {
        if n.class_id().is_some() {
            need(mgr, "net_cls", "linux.resources.network.classID")?;
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            need(mgr, "net_prio", "linux.resources.network.priorities")?;
        }
    }
    if let Some(r) = res.rdma() {
        if !r.is_empty() && mgr.v1_dir("rdma").is_none() && !mgr.has_v2("rdma") {
            bail!("linux.resources.rdma needs the rdma cgroup controller, which is not available on this host");
        }
    }
    if let Some(devs) = res.devices() {
        if !devs.is_empty() {
            need(mgr, "devices", "linux.resources.devices")?;
            for d in devs {
                devices::rule_string(d)?;
            }
        }
    }
    if let Some(u) = res.unified() {
        for k in u.keys() {
            v2::check_unified_key(mgr, k)?;
        }
    }
    Ok(())
}

fn check_memory(mgr: &CgroupManager, m: &LinuxMemory) -> Result<()> {
    let what = "linux.resources.memory";
    if m.limit().is_some() || m.reservation().is_some() || m.check_before_update().is_some() {
        need(mgr, "memory", what)?;
    }
    if m.swap().is_some_and(|s| s != 0) {
        need_file(
            mgr,
            "memory",
            "memory.memsw.limit_in_bytes",
            "memory.swap (swap accounting)",
        )?;
    }
    if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
        if l > 0 && s > 0 && s < l {
            bail!("memory.swap ({s}) is the memory+swap limit and must not be less than memory.limit ({l})");
        }
    }
    // memory.kernel is accepted and ignored (the front end warns): the runtime-spec deprecates
    // it, Linux 6.1 and later no longer enforce it, and runc and crun set nothing for it.
    if m.kernel_tcp().filter(|v| *v != 0).is_some() {
        need_file(
            mgr,
            "memory",
            "memory.kmem.tcp.limit_in_bytes",
            "memory.kernelTCP",
        )?;
    }
    if let Some(s) = m.swappiness() {
        need(mgr, "memory", what)?;
        if s > 100 && s != u64::MAX {
            bail!("memory.swappiness must be between 0 and 100, not {s}");
        }
    }
    if m.disable_oom_killer().is_some() {
        need_file(
            mgr,
            "memory",
            "memory.oom_control",
            "memory.disableOOMKiller",
        )?;
    }
    if m.use_hierarchy().is_some() {
        need_file(mgr, "memory", "memory.use_hierarchy", "memory.useHierarchy")?;
    }
    Ok(())
}

fn check_cpu(mgr: &CgroupManager, c: &LinuxCpu) -> Result<()> {
    if c.shares().is_some() || c.quota().is_some() || c.period().is_some() {
        need(mgr, "cpu", "linux.resources.cpu")?;
    }
    if c.burst().is_some() {
        need_file(mgr, "cpu", "cpu.cfs_burst_us", "cpu.burst")?;
    }
    if c.idle().is_some() {
        need_file(mgr, "cpu", "cpu.idle", "cpu.idle")?;
    }
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        need_file(
            mgr,
            "cpu",
            "cpu.rt_runtime_us",
            "cpu.realtimeRuntime/realtimePeriod (CONFIG_RT_GROUP_SCHED)",
        )?;
    }
    if c.cpus().is_some() || c.mems().is_some() {
        need(mgr, "cpuset", "cpu.cpus/cpu.mems")?;
    }
    Ok(())
}

fn check_blkio(mgr: &CgroupManager, b: &LinuxBlockIo) -> Result<()> {
    let any = b.weight().filter(|v| *v != 0).is_some()
        || b.leaf_weight().filter(|v| *v != 0).is_some()
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || b.throttle_read_bps_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || b.throttle_write_bps_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || b.throttle_read_iops_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || b.throttle_write_iops_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty());
    if any {
        need(mgr, "blkio", "linux.resources.blockIO")?;
    }
    Ok(())
}

/// Give a new cpuset cgroup its parent's cpus and mems (v1 starts them empty, which makes
/// adding a task fail with ENOSPC).
pub(super) fn cpuset_inherit(parent: &Path, child: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let cur = fs::read_opt(child, file)?.unwrap_or_default();
        if cur.trim().is_empty() {
            let from = fs::read(parent, file)?;
            fs::write(child, file, &from)?;
        }
    }
    Ok(())
}

pub(super) fn apply(mgr: &CgroupManager, res: &LinuxResources) -> Result<()> {
    if let Some(c) = res.cpu() {
        if let Some(cpus) = c.cpus() {
            fs::write(need(mgr, "cpuset", "cpu.cpus")?, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems() {
            fs::write(need(mgr, "cpuset", "cpu.mems")?, "cpuset.mems", mems)?;
        }
        apply_cpu(mgr, c)?;
    }
    if let Some(m) = res.memory() {
        apply_memory(mgr, m)?;
    }
    if let Some(p) = res.pids() {
        let dir = need(mgr, "pids", "linux.resources.pids")?;
        let limit = p.limit();
        if limit > 0 {
            fs::write(dir, "pids.max", &limit.to_string())?;
        } else if limit < 0 {
            fs::write(dir, "pids.max", "max")?;
        }
    }
    if let Some(b) = res.block_io() {
        apply_blkio(mgr, b)?;
    }
    if let Some(h) = res.hugepage_limits() {
        if let Some(dir) = mgr.v1_dir("hugetlb") {
            for l in h {
                let size = v2::hugepage_size(l.page_size())?;
                fs::write(
                    dir,
                    &format!("hugetlb.{size}.limit_in_bytes"),
                    &limit_str(l.limit()),
                )?;
            }
        } else if !h.is_empty() {
            v2::apply_hugetlb(mgr, h)?;
        }
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            fs::write(
                need(mgr, "net_cls", "network.classID")?,
                "net_cls.classid",
                &id.to_string(),
            )?;
        }
        for p in n.priorities().iter().flatten() {
            let dir = need(mgr, "net_prio", "network.priorities")?;
            fs::write(
                dir,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    if let Some(r) = res.rdma() {
        if !r.is_empty() {
            match mgr.v1_dir("rdma") {
                Some(dir) => v2::write_rdma(dir, r)?,
                None => v2::apply_rdma(mgr, r)?,
            }
        }
    }
    if let Some(devs) = res.devices() {
        if !devs.is_empty() {
            let dir = need(mgr, "devices", "linux.resources.devices")?;
            for d in devs {
                let rule = devices::rule_string(d)?;
                if rule.is_empty() {
                    continue; // an allow rule for FIFOs: always true
                }
                fs::write(
                    dir,
                    if d.allow() {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    },
                    &rule,
                )?;
            }
        }
    }
    if let Some(u) = res.unified() {
        v2::apply_unified(mgr, u)?;
    }
    Ok(())
}

fn apply_cpu(mgr: &CgroupManager, c: &LinuxCpu) -> Result<()> {
    let dir = || need(mgr, "cpu", "linux.resources.cpu");
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        let d = dir()?;
        fs::write(d, "cpu.shares", &shares.to_string())?;
        // The kernel clamps silently; say so instead.
        let got = fs::read_u64(d, "cpu.shares")?;
        if got != Some(shares) {
            bail!(
                "cannot set cpu.shares to {shares}: the kernel set it to {}",
                got.unwrap_or(0)
            );
        }
    }
    if let Some(p) = c.period().filter(|p| *p != 0) {
        fs::write(dir()?, "cpu.cfs_period_us", &p.to_string())?;
    }
    if let Some(q) = c.quota().filter(|q| *q != 0) {
        fs::write(dir()?, "cpu.cfs_quota_us", &limit_str(q))?;
    }
    if let Some(b) = c.burst() {
        fs::write(dir()?, "cpu.cfs_burst_us", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        fs::write(dir()?, "cpu.idle", &i.to_string())?;
    }
    // The period before the runtime, as the kernel checks runtime against it.
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        fs::write(dir()?, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        fs::write(dir()?, "cpu.rt_runtime_us", &r.to_string())?;
    }
    Ok(())
}

fn as_limit(v: i64) -> u64 {
    if v < 0 {
        u64::MAX
    } else {
        v as u64
    }
}

fn apply_memory(mgr: &CgroupManager, m: &LinuxMemory) -> Result<()> {
    let dir = || need(mgr, "memory", "linux.resources.memory");
    let limit = m.limit().filter(|l| *l != 0);
    let swap = m.swap().filter(|s| *s != 0);
    if m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|l| *l > 0) {
            let usage = fs::read_u64(dir()?, "memory.usage_in_bytes")?.unwrap_or(0);
            if usage > l as u64 {
                bail!("cannot set memory.limit_in_bytes to {l}: current usage {usage} is higher (checkBeforeUpdate)");
            }
        }
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memory.memsw.limit_in_bytes must stay >= memory.limit_in_bytes at every step.
            let d = dir()?;
            let cur_limit = fs::read_u64(d, "memory.limit_in_bytes")?.unwrap_or(u64::MAX);
            if as_limit(s) >= cur_limit {
                fs::write(d, "memory.memsw.limit_in_bytes", &limit_str(s))?;
                fs::write(d, "memory.limit_in_bytes", &limit_str(l))?;
            } else {
                fs::write(d, "memory.limit_in_bytes", &limit_str(l))?;
                fs::write(d, "memory.memsw.limit_in_bytes", &limit_str(s))?;
            }
        }
        (Some(l), None) => fs::write(dir()?, "memory.limit_in_bytes", &limit_str(l))?,
        (None, Some(s)) => fs::write(dir()?, "memory.memsw.limit_in_bytes", &limit_str(s))?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        fs::write(dir()?, "memory.soft_limit_in_bytes", &limit_str(r))?;
    }
    // memory.kernel: nothing to write (see check_memory).
    if let Some(k) = m.kernel_tcp().filter(|v| *v != 0) {
        fs::write(dir()?, "memory.kmem.tcp.limit_in_bytes", &limit_str(k))?;
    }
    if let Some(s) = m.swappiness().filter(|s| *s != u64::MAX) {
        fs::write(dir()?, "memory.swappiness", &s.to_string())?;
    }
    if let Some(d) = m.disable_oom_killer() {
        fs::write(dir()?, "memory.oom_control", if d { "1" } else { "0" })?;
    }
    if let Some(h) = m.use_hierarchy() {
        let d = dir()?;
        let want = if h { "1" } else { "0" };
        // Recent kernels fix use_hierarchy at 1 and refuse writes; the same value is fine.
        if fs::read_opt(d, "memory.use_hierarchy")?.as_deref() != Some(want) {
            fs::write(d, "memory.use_hierarchy", want)?;
        }
    }
    Ok(())
}

fn apply_blkio(mgr: &CgroupManager, b: &LinuxBlockIo) -> Result<()> {
    let dir = || need(mgr, "blkio", "linux.resources.blockIO");
    // CFQ's blkio.weight is gone from recent kernels; BFQ offers blkio.bfq.weight.
    let weight_file = |d: &Path, cfq: &'static str, bfq: &'static str| -> &'static str {
        if d.join(cfq).exists() || !d.join(bfq).exists() {
            cfq
        } else {
            bfq
        }
    };
    if let Some(w) = b.weight().filter(|v| *v != 0) {
        let d = dir()?;
        fs::write(
            d,
            weight_file(d, "blkio.weight", "blkio.bfq.weight"),
            &w.to_string(),
        )?;
    }
    if let Some(w) = b.leaf_weight().filter(|v| *v != 0) {
        fs::write(dir()?, "blkio.leaf_weight", &w.to_string())?;
    }
    for wd in b.weight_device().iter().flatten() {
        let d = dir()?;
        if let Some(w) = wd.weight().filter(|v| *v != 0) {
            let file = weight_file(d, "blkio.weight_device", "blkio.bfq.weight_device");
            fs::write(d, file, &format!("{}:{} {}", wd.major(), wd.minor(), w))?;
        }
        if let Some(w) = wd.leaf_weight().filter(|v| *v != 0) {
            fs::write(
                d,
                "blkio.leaf_weight_device",
                &format!("{}:{} {}", wd.major(), wd.minor(), w),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            fs::write(
                dir()?,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

/// Freeze through freezer.state and wait until the kernel reports FROZEN. A cgroup stuck in
/// FREEZING (a task in an uninterruptible sleep) is thawed again and reported.
pub(super) fn freeze(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_micros(100);
    loop {
        fs::write(dir, "freezer.state", "FROZEN")?;
        let state = fs::read(dir, "freezer.state").context("cannot read freezer.state")?;
        if state == "FROZEN" {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = fs::write(dir, "freezer.state", "THAWED");
            bail!(
                "cannot freeze {}: still {state} after 10s (a task is stuck in the kernel)",
                dir.display()
            );
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}
