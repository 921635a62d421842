//! cgroup v2 (and the cgroup2 side of hybrid): one directory, controllers enabled top-down.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use oci_spec::runtime::{LinuxHugepageLimit, LinuxRdma, LinuxResources};

use super::{devices, fs, CgroupManager, Layout};

/// The cgroup2 directory, or an error saying which resource needs which controller.
fn need<'a>(mgr: &'a CgroupManager, ctrl: &str, what: &str) -> Result<&'a Path> {
    match &mgr.unified {
        Some(dir) if mgr.has_v2(ctrl) => Ok(dir),
        _ => bail!("{what} needs the {ctrl} controller, which is not available on this host's cgroup2 hierarchy"),
    }
}

fn unsupported(what: &str) -> anyhow::Error {
    anyhow!("{what} is not supported on cgroup v2")
}

/// Enable `wanted` controllers (those available) in `dir/cgroup.subtree_control`.
pub(super) fn enable_controllers(dir: &Path, wanted: &[String]) -> Result<()> {
    let available = fs::read_opt(dir, "cgroup.controllers")?.unwrap_or_default();
    let enabled = fs::read_opt(dir, "cgroup.subtree_control")?.unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in wanted {
        if available.split_whitespace().any(|a| a == c) && !enabled.contains(&c.as_str()) {
            // A parent with processes of its own cannot delegate (EBUSY); the controller then
            // stays unavailable and apply() names it if a resource needs it.
            let _ = fs::write(dir, "cgroup.subtree_control", &format!("+{c}"));
        }
    }
    Ok(())
}

/// Enable `ctrl` on every ancestor of the container's cgroup2 directory (hybrid hosts enable
/// only what a resource needs, lazily).
fn enable_path(mgr: &CgroupManager, ctrl: &str) -> Result<()> {
    let (Some(dir), Some(mnt)) = (&mgr.unified, &mgr.unified_mount) else {
        return Ok(());
    };
    let rel = dir.strip_prefix(mnt)?;
    let mut cur = mnt.clone();
    for comp in rel.components() {
        let enabled = fs::read_opt(&cur, "cgroup.subtree_control")?.unwrap_or_default();
        if !enabled.split_whitespace().any(|c| c == ctrl) {
            fs::write(&cur, "cgroup.subtree_control", &format!("+{ctrl}"))?;
        }
        cur.push(comp);
    }
    Ok(())
}

/// OCI page size ("2MB", "1GB", "64KB") checked against /sys/kernel/mm/hugepages; returns the
/// name the hugetlb controller uses ("2MB").
pub(crate) fn hugepage_size(s: &str) -> Result<String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("invalid hugepage size {s:?}"))?;
    let kb = match unit {
        "KB" | "kB" => n,
        "MB" => n * 1024,
        "GB" => n * 1024 * 1024,
        _ => bail!("invalid hugepage size {s:?} (expected e.g. 2MB or 1GB)"),
    };
    let sys = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB");
    if !Path::new(&sys).exists() {
        bail!("hugepage size {s} is not supported by this host (no {sys})");
    }
    // The kernel names sizes with the largest exact unit.
    Ok(if kb % (1024 * 1024) == 0 {
        format!("{}GB", kb / (1024 * 1024))
    } else if kb % 1024 == 0 {
        format!("{}MB", kb / 1024)
    } else {
        format!("{kb}KB")
    })
}

pub(super) fn apply_hugetlb(mgr: &CgroupManager, h: &[LinuxHugepageLimit]) -> Result<()> {
    let dir = need(mgr, "hugetlb", "linux.resources.hugepageLimits")?;
    if mgr.layout == Layout::Hybrid {
        enable_path(mgr, "hugetlb")?;
    }
    for l in h {
        let size = hugepage_size(l.page_size())?;
        let v = if l.limit() < 0 {
            "max".to_string()
        } else {
            l.limit().to_string()
        };
        fs::write(dir, &format!("hugetlb.{size}.max"), &v)?;
    }
    Ok(())
}

pub(super) fn write_rdma(dir: &Path, r: &HashMap<String, LinuxRdma>) -> Result<()> {
    for (dev, l) in r {
        let mut v = dev.clone();
        if let Some(h) = l.hca_handles() {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            v.push_str(&format!(" hca_object={o}"));
        }
        fs::write(dir, "rdma.max", &v)?;
    }
    Ok(())
}

pub(super) fn apply_rdma(mgr: &CgroupManager, r: &HashMap<String, LinuxRdma>) -> Result<()> {
    let dir = need(mgr, "rdma", "linux.resources.rdma")?;
    if mgr.layout == Layout::Hybrid {
        enable_path(mgr, "rdma")?;
    }
    write_rdma(dir, r)
}

/// A key of `linux.resources.unified` must be a plain file name of an available controller.
pub(super) fn check_unified_key(mgr: &CgroupManager, key: &str) -> Result<()> {
    if mgr.unified.is_none() {
        bail!("linux.resources.unified ({key}) needs cgroup v2, which is not mounted on this host");
    }
    if key.is_empty() || key.contains('/') || key.starts_with('.') || !key.contains('.') {
        bail!("linux.resources.unified: invalid key {key:?}");
    }
    let ctrl = key.split('.').next().unwrap_or_default();
    if ctrl == "cgroup" {
        if matches!(
            key,
            "cgroup.procs" | "cgroup.threads" | "cgroup.subtree_control" | "cgroup.kill"
        ) {
            bail!("linux.resources.unified: {key} is managed by hako and cannot be set");
        }
        return Ok(());
    }
    if !mgr.has_v2(ctrl) {
        if mgr.v1_dir(ctrl).is_some() {
            bail!("linux.resources.unified: {key}: the {ctrl} controller is mounted as cgroup v1 on this host");
        }
        bail!("linux.resources.unified: {key}: the {ctrl} controller is not available on this host's cgroup2 hierarchy");
    }
    Ok(())
}

pub(super) fn apply_unified(mgr: &CgroupManager, u: &HashMap<String, String>) -> Result<()> {
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    for k in keys {
        check_unified_key(mgr, k)?;
        let ctrl = k.split('.').next().unwrap_or_default();
        if ctrl != "cgroup" && mgr.layout == Layout::Hybrid {
            enable_path(mgr, ctrl)?;
        }
        let dir = mgr.unified.as_deref().expect("checked");
        fs::write(dir, k, &u[k])?;
    }
    Ok(())
}

pub(super) fn check(mgr: &CgroupManager, res: &LinuxResources) -> Result<()> {
    if let Some(m) = res.memory() {
        if m.limit().is_some() || m.reservation().is_some() || m.swap().is_some() {
            need(mgr, "memory", "linux.resources.memory")?;
        }
        // memory.kernel is accepted and ignored (the front end warns): v2 has no such limit,
        // and runc and crun set nothing for it either.
        if m.kernel_tcp().filter(|v| *v != 0).is_some() {
            return Err(unsupported("memory.kernelTCP"));
        }
        if m.swappiness().is_some_and(|s| s != u64::MAX) {
            return Err(unsupported("memory.swappiness"));
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(unsupported("memory.disableOOMKiller"));
        }
        if m.use_hierarchy() == Some(false) {
            return Err(unsupported(
                "memory.useHierarchy=false (v2 is always hierarchical)",
            ));
        }
        swap_v2(m.limit(), m.swap())?;
    }
    if let Some(c) = res.cpu() {
        if c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.burst().is_some()
            || c.idle().is_some()
        {
            need(mgr, "cpu", "linux.resources.cpu")?;
        }
        if c.realtime_runtime().is_some_and(|r| r != 0)
            || c.realtime_period().is_some_and(|p| p != 0)
        {
            return Err(unsupported("cpu.realtimeRuntime/realtimePeriod"));
        }
        if c.cpus().is_some() || c.mems().is_some() {
            need(mgr, "cpuset", "cpu.cpus/cpu.mems")?;
        }
    }
    if res.pids().is_some() {
        need(mgr, "pids", "linux.resources.pids")?;
    }
    if let Some(b) = res.block_io() {
        if b.leaf_weight().filter(|v| *v != 0).is_some()
            || b.weight_device()
                .iter()
                .flatten()
                .any(|w| w.leaf_weight().filter(|v| *v != 0).is_some())
        {
            return Err(unsupported("blockIO.leafWeight"));
        }
        let any = b.weight().filter(|v| *v != 0).is_some()
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
            need(mgr, "io", "linux.resources.blockIO")?;
        }
    }
    if let Some(h) = res.hugepage_limits() {
        if !h.is_empty() {
            need(mgr, "hugetlb", "linux.resources.hugepageLimits")?;
            for l in h {
                hugepage_size(l.page_size())?;
            }
        }
    }
    if let Some(n) = res.network() {
        if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(unsupported(
                "linux.resources.network (net_cls/net_prio are v1-only controllers)",
            ));
        }
    }
    if let Some(r) = res.rdma() {
        if !r.is_empty() {
            need(mgr, "rdma", "linux.resources.rdma")?;
        }
    }
    if let Some(d) = res.devices() {
        devices::Program::compile(d)?;
    }
    if let Some(u) = res.unified() {
        for k in u.keys() {
            check_unified_key(mgr, k)?;
        }
    }
    Ok(())
}

/// v2's memory.swap.max is swap alone; OCI's memory.swap is memory+swap.
fn swap_v2(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    let Some(swap) = swap.filter(|s| *s != 0) else {
        return Ok(None);
    };
    if swap < 0 {
        return Ok(Some("max".into()));
    }
    match limit {
        Some(l) if l > 0 => {
            if swap < l {
                bail!("memory.swap ({swap}) is the memory+swap limit and must not be less than memory.limit ({l})");
            }
            Ok(Some((swap - l).to_string()))
        }
        Some(l) if l < 0 => {
            bail!("memory.swap ({swap}) cannot be set when memory.limit is unlimited")
        }
        _ => {
            bail!("memory.swap ({swap}) needs memory.limit on cgroup v2 (swap.max = swap - limit)")
        }
    }
}

/// cpu.shares (2..262144, default 1024) to cpu.weight (1..10000, default 100).
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262144);
    1 + ((s - 2) * 9999) / 262142
}

/// blkio.weight (10..1000) to io.weight (1..10000).
pub(crate) fn blkio_to_io_weight(w: u16) -> u64 {
    let w = u64::from(w).clamp(10, 1000);
    1 + ((w - 10) * 9999) / 990
}

pub(super) fn apply(mgr: &CgroupManager, res: &LinuxResources) -> Result<()> {
    if let Some(c) = res.cpu() {
        if let Some(cpus) = c.cpus() {
            fs::write(need(mgr, "cpuset", "cpu.cpus")?, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems() {
            fs::write(need(mgr, "cpuset", "cpu.mems")?, "cpuset.mems", mems)?;
        }
        let dir = || need(mgr, "cpu", "linux.resources.cpu");
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            fs::write(dir()?, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        let quota = c.quota().filter(|q| *q != 0);
        let period = c.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let d = dir()?;
            let q = match quota {
                Some(q) if q > 0 => q.to_string(),
                Some(_) => "max".to_string(),
                None => fs::read(d, "cpu.max")?
                    .split_whitespace()
                    .next()
                    .unwrap_or("max")
                    .to_string(),
            };
            let v = match period {
                Some(p) => format!("{q} {p}"),
                None => q,
            };
            fs::write(d, "cpu.max", &v)?;
        }
        if let Some(b) = c.burst() {
            fs::write(dir()?, "cpu.max.burst", &b.to_string())?;
        }
        if let Some(i) = c.idle() {
            fs::write(dir()?, "cpu.idle", &i.to_string())?;
        }
    }
    if let Some(m) = res.memory() {
        let dir = || need(mgr, "memory", "linux.resources.memory");
        let limit = m.limit().filter(|l| *l != 0);
        if m.check_before_update() == Some(true) {
            if let Some(l) = limit.filter(|l| *l > 0) {
                let usage = fs::read_u64(dir()?, "memory.current")?.unwrap_or(0);
                if usage > l as u64 {
                    bail!("cannot set memory.max to {l}: current usage {usage} is higher (checkBeforeUpdate)");
                }
            }
        }
        if let Some(s) = swap_v2(m.limit(), m.swap())? {
            // Raise/lower swap first: memory.max and memory.swap.max are independent in v2.
            fs::write(dir()?, "memory.swap.max", &s)?;
        }
        if let Some(l) = limit {
            fs::write(
                dir()?,
                "memory.max",
                &if l < 0 { "max".into() } else { l.to_string() },
            )?;
        }
        if let Some(r) = m.reservation().filter(|r| *r != 0) {
            fs::write(
                dir()?,
                "memory.low",
                &if r < 0 { "max".into() } else { r.to_string() },
            )?;
        }
    }
    if let Some(p) = res.pids() {
        let dir = need(mgr, "pids", "linux.resources.pids")?;
        if p.limit() > 0 {
            fs::write(dir, "pids.max", &p.limit().to_string())?;
        } else if p.limit() < 0 {
            fs::write(dir, "pids.max", "max")?;
        }
    }
    if let Some(b) = res.block_io() {
        let dir = || need(mgr, "io", "linux.resources.blockIO");
        if let Some(w) = b.weight().filter(|v| *v != 0) {
            let d = dir()?;
            if d.join("io.bfq.weight").exists() {
                fs::write(d, "io.bfq.weight", &w.to_string())?;
            } else {
                fs::write(d, "io.weight", &blkio_to_io_weight(w).to_string())?;
            }
        }
        for wd in b.weight_device().iter().flatten() {
            if let Some(w) = wd.weight().filter(|v| *v != 0) {
                let d = dir()?;
                if d.join("io.bfq.weight").exists() {
                    fs::write(
                        d,
                        "io.bfq.weight",
                        &format!("{}:{} {}", wd.major(), wd.minor(), w),
                    )?;
                } else {
                    fs::write(
                        d,
                        "io.weight",
                        &format!("{}:{} {}", wd.major(), wd.minor(), blkio_to_io_weight(w)),
                    )?;
                }
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for t in list.iter().flatten() {
                let v = if t.rate() == 0 {
                    "max".to_string()
                } else {
                    t.rate().to_string()
                };
                fs::write(
                    dir()?,
                    "io.max",
                    &format!("{}:{} {key}={v}", t.major(), t.minor()),
                )?;
            }
        }
    }
    if let Some(h) = res.hugepage_limits() {
        if !h.is_empty() {
            apply_hugetlb(mgr, h)?;
        }
    }
    if let Some(r) = res.rdma() {
        if !r.is_empty() {
            apply_rdma(mgr, r)?;
        }
    }
    if let Some(d) = res.devices() {
        let prog = devices::Program::compile(d)?;
        let dir = mgr
            .unified
            .as_deref()
            .ok_or_else(|| anyhow!("no cgroup2 directory"))?;
        prog.attach(dir)?;
    }
    if let Some(u) = res.unified() {
        apply_unified(mgr, u)?;
    }
    Ok(())
}

/// Freeze or thaw through cgroup.freeze and wait for cgroup.events to agree.
pub(super) fn freeze(dir: &Path, on: bool) -> Result<()> {
    let want = if on { "1" } else { "0" };
    fs::write(dir, "cgroup.freeze", want)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_micros(100);
    loop {
        let events = fs::read(dir, "cgroup.events")?;
        if fs::keyed(&events, "frozen") == Some(u64::from(on)) {
            return Ok(());
        }
        // An empty cgroup or one whose freeze was undone meanwhile: cgroup.freeze is the truth.
        if fs::read(dir, "cgroup.freeze")? != want {
            bail!(
                "cgroup {} changed its freeze state while we waited",
                dir.display()
            );
        }
        if Instant::now() > deadline {
            if on {
                let _ = fs::write(dir, "cgroup.freeze", "0");
            }
            bail!(
                "cannot {} {}: not done after 10s",
                if on { "freeze" } else { "thaw" },
                dir.display()
            );
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(
            swap_v2(Some(100), Some(300)).unwrap().as_deref(),
            Some("200")
        );
        assert_eq!(
            swap_v2(Some(100), Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(swap_v2(Some(100), None).unwrap(), None);
        assert!(swap_v2(Some(300), Some(100)).is_err());
        assert!(swap_v2(None, Some(100)).is_err());
    }

    #[test]
    fn hugepage_sizes() {
        if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
            eprintln!("skipped: no 2MB hugepages on this host");
            return;
        }
        assert_eq!(hugepage_size("2MB").unwrap(), "2MB");
        assert_eq!(hugepage_size("2048KB").unwrap(), "2MB");
        let e = hugepage_size("3MB").unwrap_err();
        assert!(format!("{e}").contains("not supported"), "{e}");
        assert!(hugepage_size("2XB").is_err());
    }
}
