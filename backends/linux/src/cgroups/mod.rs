//! cgroup v1, hybrid and v2 management for the container backend (cgroupfs driver).
//!
//! A [`CgroupManager`] is pure data (it is stored in state.json): the cgroup directory in every
//! hierarchy the container uses. [`CgroupManager::new`] resolves those directories from the
//! mount table without touching the filesystem; [`CgroupManager::create`] makes them,
//! [`CgroupManager::apply`] writes the OCI `linux.resources`, [`CgroupManager::destroy`] kills
//! what is left and removes them.
//!
//! Layouts:
//! - **v1**: one hierarchy per controller (or per group of co-mounted controllers).
//! - **hybrid**: v1 hierarchies plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`). The
//!   container also gets a directory there (it is where `cgroup.kill`/`cgroup.events` live), and
//!   controllers that are bound to cgroup2 and not mounted as v1 (on this machine: hugetlb) are
//!   driven through the v2 interface.
//! - **v2**: one cgroup2 hierarchy; controllers are enabled in every ancestor's
//!   `cgroup.subtree_control`.
//!
//! Paths: `linux.cgroupsPath` absolute is relative to each hierarchy's root, relative is relative
//! to hako's own cgroup in that hierarchy (runc's rules); the default is `/hako/<id>`. With
//! `--systemd-cgroup` the path is `slice:prefix:name`; systemd must be running. hako does not talk
//! to systemd over D-Bus: it places the container at the path systemd would use
//! (`/machine.slice/libpod-<id>.scope`) with the cgroupfs driver.
//!
//! Devices on pure v2 need a BPF program attached to the cgroup; see [`devices`].

mod devices;
mod fs;
mod v1;
mod v2;

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

/// The cgroup layout of the host.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    V1,
    Hybrid,
    V2,
}

/// The cgroup filesystems mounted on this host (from /proc/self/mountinfo) and hako's own cgroup
/// in each (from /proc/self/cgroup).
#[derive(Debug, Clone, Default)]
pub struct Mounts {
    /// v1 controller name -> mount point of its hierarchy (co-mounted controllers share one).
    pub v1: BTreeMap<String, PathBuf>,
    /// v1 controller name -> root of the mount inside the hierarchy (usually `/`).
    pub v1_root: BTreeMap<String, String>,
    /// Mount point of the cgroup2 filesystem, if any.
    pub unified: Option<PathBuf>,
    /// Controllers available at the root of the cgroup2 mount (`cgroup.controllers`).
    pub unified_controllers: Vec<String>,
    /// hako's own cgroup per v1 controller (`/proc/self/cgroup`), and `""` for cgroup2.
    pub own: BTreeMap<String, String>,
}

/// v1 controllers hako manages (named hierarchies such as `name=systemd` are left alone).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

impl Mounts {
    /// Read the mount table and hako's own cgroup membership.
    pub fn detect() -> Result<Mounts> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .context("cannot read /proc/self/mountinfo")?;
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut m = Mounts::parse(&mountinfo, &own);
        if let Some(u) = &m.unified {
            m.unified_controllers = fs::read_opt(u, "cgroup.controllers")?
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
        Ok(m)
    }

    /// Parse mountinfo and /proc/self/cgroup contents (no filesystem access).
    pub fn parse(mountinfo: &str, self_cgroup: &str) -> Mounts {
        let mut m = Mounts::default();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let root = unescape(pre[3]);
            let mountpoint = PathBuf::from(unescape(pre[4]));
            match post[0] {
                // The first cgroup2 mount wins (later ones are usually bind mounts).
                "cgroup2" if m.unified.is_none() => m.unified = Some(mountpoint),
                "cgroup" => {
                    for opt in post[2].split(',') {
                        if V1_CONTROLLERS.contains(&opt) && !m.v1.contains_key(opt) {
                            m.v1.insert(opt.to_string(), mountpoint.clone());
                            m.v1_root.insert(opt.to_string(), root.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        for line in self_cgroup.lines() {
            let mut it = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if ctrls.is_empty() {
                m.own.insert(String::new(), path.to_string());
            }
            for c in ctrls.split(',').filter(|c| !c.is_empty()) {
                m.own.insert(c.to_string(), path.to_string());
            }
        }
        m
    }

    /// A pure-v2 view rooted at `mountpoint` (used to exercise the v2 code on a hybrid host's
    /// `unified` mount, and for hosts where detection must be overridden).
    pub fn v2_at(mountpoint: &Path) -> Result<Mounts> {
        let controllers = fs::read_opt(mountpoint, "cgroup.controllers")?
            .ok_or_else(|| anyhow!("{} is not a cgroup2 mount", mountpoint.display()))?;
        Ok(Mounts {
            unified: Some(mountpoint.to_path_buf()),
            unified_controllers: controllers.split_whitespace().map(str::to_string).collect(),
            ..Mounts::default()
        })
    }

    pub fn layout(&self) -> Result<Layout> {
        match (self.v1.is_empty(), self.unified.is_some()) {
            (false, false) => Ok(Layout::V1),
            (false, true) => Ok(Layout::Hybrid),
            (true, true) => Ok(Layout::V2),
            (true, false) => {
                bail!("no cgroup filesystem is mounted (neither cgroup v1 nor cgroup2)")
            }
        }
    }

    /// Controllers driven through the cgroup2 interface.
    fn v2_controllers(&self) -> Vec<String> {
        self.unified_controllers
            .iter()
            .filter(|c| !self.v1.contains_key(*c))
            .cloned()
            .collect()
    }
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when systemd is the init system (sd_booted(3)).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Turn a systemd cgroupsPath `slice:prefix:name` into the cgroupfs path systemd would use.
fn systemd_path(spec: &str, id: &str) -> Result<String> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() != 3 {
        bail!("cgroupsPath {spec:?} is not in the systemd form slice:prefix:name");
    }
    let (slice, prefix, name) = (
        parts[0],
        parts[1],
        if parts[2].is_empty() { id } else { parts[2] },
    );
    let slice = if slice.is_empty() || slice == "-.slice" {
        "system.slice"
    } else {
        slice
    };
    let Some(stem) = slice.strip_suffix(".slice") else {
        bail!("cgroupsPath {spec:?}: {slice:?} is not a systemd slice name (must end in .slice)")
    };
    if stem.is_empty()
        || stem.contains('/')
        || stem.starts_with('-')
        || stem.ends_with('-')
        || stem.contains("--")
    {
        bail!("cgroupsPath {spec:?}: invalid slice name {slice:?}");
    }
    // "a-b-c.slice" lives at /a.slice/a-b.slice/a-b-c.slice.
    let mut path = String::new();
    let mut acc = String::new();
    for comp in stem.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(comp);
        path.push('/');
        path.push_str(&acc);
        path.push_str(".slice");
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit.contains('/') {
        bail!("cgroupsPath {spec:?}: invalid unit name {unit:?}");
    }
    Ok(format!("{path}/{unit}"))
}

/// Normalize a cgroup path lexically and refuse one that escapes its root or names the root.
fn clean_path(p: &str) -> Result<(bool, String)> {
    if p.contains('\0') || p.contains('\n') {
        bail!("cgroupsPath {p:?} contains a NUL or newline character");
    }
    let absolute = p.starts_with('/');
    let mut comps: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if comps.pop().is_none() {
                    bail!("cgroupsPath {p:?} escapes the cgroup root with '..'");
                }
            }
            c => comps.push(c),
        }
    }
    if comps.is_empty() {
        bail!("cgroupsPath {p:?} names the root cgroup; a container needs its own cgroup");
    }
    Ok((absolute, comps.join("/")))
}

/// The cgroups of one container.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CgroupManager {
    /// The cgroup path as resolved from cgroupsPath (absolute, or relative to hako's own cgroup).
    pub path: String,
    pub layout: Layout,
    /// v1 controller -> directory of the container's cgroup (co-mounted controllers share one).
    pub v1: BTreeMap<String, PathBuf>,
    /// v1 controller -> mount point of its hierarchy.
    pub v1_mounts: BTreeMap<String, PathBuf>,
    /// The container's directory in the cgroup2 hierarchy (v2, and hybrid when mounted).
    pub unified: Option<PathBuf>,
    /// Mount point of the cgroup2 hierarchy.
    pub unified_mount: Option<PathBuf>,
    /// Controllers driven through the cgroup2 interface (all on v2; the leftovers on hybrid).
    pub v2_controllers: Vec<String>,
}

/// A few numbers about a cgroup, for `hako events --stats` and the benchmarks.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_usage: Option<u64>,
    /// Peak memory usage (v1 memory.max_usage_in_bytes, v2 memory.peak).
    pub memory_peak: Option<u64>,
    pub memory_limit: Option<u64>,
    pub pids_current: Option<u64>,
    pub pids_limit: Option<u64>,
    /// Total CPU time in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
}

/// Whether `res` asks for any limit (device rules alone do not count: they restrict nothing a
/// rootless sandbox could reach anyway).
pub fn has_limits(res: &LinuxResources) -> bool {
    res.memory().is_some()
        || res.cpu().is_some()
        || res.pids().is_some()
        || res.block_io().is_some()
        || res
            .hugepage_limits()
            .as_ref()
            .is_some_and(|h| !h.is_empty())
        || res.network().is_some()
        || res.rdma().as_ref().is_some_and(|r| !r.is_empty())
        || res.unified().as_ref().is_some_and(|u| !u.is_empty())
}

impl CgroupManager {
    /// The one rule every backend follows for its sandbox's cgroup: resolve and make it. Rootless
    /// (as crun and runc), a cgroup that cannot be made — no delegated subtree, no writable v1
    /// hierarchy — is no error when the spec sets no limit: the sandbox then runs in the
    /// caller's cgroup, and `debug` says so in a debug line. With a limit it is an error saying why.
    pub fn make_for_sandbox(
        cgroups_path: Option<&str>,
        id: &str,
        systemd: bool,
        rootless: bool,
        res: Option<&LinuxResources>,
        debug: bool,
    ) -> Result<Option<Self>> {
        let made = Self::new(cgroups_path, id, systemd).and_then(|cg| {
            cg.create()?;
            Ok(cg)
        });
        match made {
            Ok(cg) => Ok(Some(cg)),
            Err(e) if rootless && !res.is_some_and(has_limits) => {
                if debug {
                    crate::debug::line(&format!("rootless: running without a cgroup of its own: {e:#}"));
                }
                Ok(None)
            }
            Err(e) if rootless => Err(e.context(
                "rootless: linux.resources sets a limit, which needs a cgroup this user can write (a delegated cgroup v2 subtree or a writable v1 hierarchy)",
            )),
            Err(e) => Err(e),
        }
    }

    /// Resolve the container's cgroup directories. Changes nothing on the host.
    pub fn new(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<Self> {
        if systemd && !systemd_running() {
            let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
            bail!(
                "the systemd cgroup driver was requested (--systemd-cgroup) but systemd is not \
                 running on this host (PID 1 is {:?}); use the cgroupfs driver (omit \
                 --systemd-cgroup, or podman --cgroup-manager cgroupfs)",
                init.trim()
            );
        }
        let mounts = Mounts::detect()?;
        Self::with_mounts(&mounts, cgroups_path, id, systemd)
    }

    /// [`CgroupManager::new`] against a given mount table (no systemd check).
    pub fn with_mounts(
        mounts: &Mounts,
        cgroups_path: Option<&str>,
        id: &str,
        systemd: bool,
    ) -> Result<Self> {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            bail!("invalid container id {id:?} for a cgroup name");
        }
        let raw = match cgroups_path {
            None | Some("") => {
                if systemd {
                    format!("/system.slice/hako-{id}.scope")
                } else {
                    format!("/hako/{id}")
                }
            }
            Some(p) if systemd => systemd_path(p, id)?,
            Some(p) => {
                if !p.starts_with('/') && p.split(':').count() == 3 {
                    bail!(
                        "cgroupsPath {p:?} is in the systemd form slice:prefix:name but the \
                         cgroupfs driver is in use (pass --systemd-cgroup, or give a path)"
                    );
                }
                p.to_string()
            }
        };
        let (absolute, rel) = clean_path(&raw)?;
        let layout = mounts.layout()?;

        // The directory of `rel` in a hierarchy mounted at `mnt` whose mount root is `root`, where
        // hako itself sits at `own`.
        let resolve = |mnt: &Path, root: &str, own: Option<&String>| -> Result<PathBuf> {
            let base = if absolute {
                mnt.to_path_buf()
            } else {
                let own = own.map(String::as_str).unwrap_or("/");
                let inner = own
                    .strip_prefix(root)
                    .unwrap_or(own)
                    .trim_start_matches('/');
                if inner.contains("..") {
                    bail!("hako's own cgroup {own:?} cannot be resolved");
                }
                if inner.is_empty() {
                    mnt.to_path_buf()
                } else {
                    mnt.join(inner)
                }
            };
            Ok(base.join(&rel))
        };

        let mut v1 = BTreeMap::new();
        for (ctrl, mnt) in &mounts.v1 {
            let root = mounts.v1_root.get(ctrl).map(String::as_str).unwrap_or("/");
            v1.insert(ctrl.clone(), resolve(mnt, root, mounts.own.get(ctrl))?);
        }
        let unified = match &mounts.unified {
            Some(u) => Some(resolve(u, "/", mounts.own.get(""))?),
            None => None,
        };
        let path = if absolute { format!("/{rel}") } else { rel };
        Ok(CgroupManager {
            path,
            layout,
            v1,
            v1_mounts: mounts.v1.clone(),
            unified,
            unified_mount: mounts.unified.clone(),
            v2_controllers: mounts.v2_controllers(),
        })
    }

    /// Refuse resources this host cannot honour. Reads the mount table, changes nothing.
    pub fn check(res: &LinuxResources) -> Result<()> {
        let mounts = Mounts::detect()?;
        let mgr = Self::with_mounts(&mounts, Some("/hako/check"), "check", false)?;
        mgr.check_resources(res)
    }

    /// [`CgroupManager::check`] for this manager's layout.
    pub fn check_resources(&self, res: &LinuxResources) -> Result<()> {
        match self.layout {
            Layout::V2 => v2::check(self, res),
            Layout::V1 | Layout::Hybrid => v1::check(self, res),
        }
    }

    /// The v1 directory of `ctrl`, if that controller is mounted as v1.
    pub fn v1_dir(&self, ctrl: &str) -> Option<&Path> {
        self.v1.get(ctrl).map(PathBuf::as_path)
    }

    /// True when `ctrl` is driven through the cgroup2 interface.
    pub fn has_v2(&self, ctrl: &str) -> bool {
        self.unified.is_some() && self.v2_controllers.iter().any(|c| c == ctrl)
    }

    /// Every distinct directory of this container, v1 first then cgroup2.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for d in self.v1.values().chain(self.unified.iter()) {
            if seen.insert(d.clone()) {
                out.push(d.clone());
            }
        }
        out
    }

    /// Mount point of the hierarchy that `dir` belongs to.
    fn mount_of(&self, dir: &Path) -> Option<PathBuf> {
        self.v1_mounts
            .values()
            .chain(self.unified_mount.iter())
            .filter(|m| dir.starts_with(m))
            .max_by_key(|m| m.as_os_str().len())
            .cloned()
    }

    /// True when the container's cgroup exists in at least one hierarchy.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// Make the cgroup in every hierarchy. On error, removes what it made.
    pub fn create(&self) -> Result<()> {
        let mut made: Vec<PathBuf> = Vec::new();
        let r = self.create_inner(&mut made);
        if r.is_err() {
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        r
    }

    fn create_inner(&self, made: &mut Vec<PathBuf>) -> Result<()> {
        for dir in self.dirs() {
            let mount = self
                .mount_of(&dir)
                .ok_or_else(|| anyhow!("{} is outside every cgroup mount", dir.display()))?;
            let is_cpuset = self.v1_dir("cpuset") == Some(dir.as_path());
            let is_unified = self.unified.as_deref() == Some(dir.as_path());
            let rel = dir
                .strip_prefix(&mount)
                .expect("mount_of returns a prefix")
                .to_path_buf();
            // An empty parent may be removed by someone else (another runtime's cleanup)
            // between our mkdirs: start again from the top a few times.
            let mut attempt = 0;
            'again: loop {
                attempt += 1;
                let mut cur = mount.clone();
                for comp in rel.components() {
                    let parent = cur.clone();
                    cur.push(comp);
                    if is_unified && self.layout == Layout::V2 {
                        // Controllers must be enabled in the parent before a child can use them.
                        v2::enable_controllers(&parent, &self.v2_controllers)?;
                    }
                    match std::fs::create_dir(&cur) {
                        Ok(()) => made.push(cur.clone()),
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) if e.kind() == ErrorKind::NotFound && attempt < 5 => continue 'again,
                        Err(e) => bail!(
                            "cannot create cgroup {}: {}",
                            cur.display(),
                            fs::describe(&e)
                        ),
                    }
                    if is_cpuset {
                        if let Err(e) = v1::cpuset_inherit(&parent, &cur) {
                            if !cur.exists() && attempt < 5 {
                                continue 'again;
                            }
                            return Err(e);
                        }
                    }
                }
                break;
            }
        }
        Ok(())
    }

    /// Write the OCI resources. Every field set is written or the call fails naming it.
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        self.check_resources(res)?;
        match self.layout {
            Layout::V2 => v2::apply(self, res),
            Layout::V1 | Layout::Hybrid => v1::apply(self, res),
        }
    }

    /// Move `pid` (a whole process) into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for dir in self.dirs() {
            fs::write(&dir, "cgroup.procs", &pid.to_string())
                .with_context(|| format!("cannot add pid {pid} to cgroup {}", dir.display()))?;
        }
        Ok(())
    }

    /// Pids of every process in the cgroup (sorted, no duplicates; empty when it is gone).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut all = BTreeSet::new();
        for dir in self.dirs() {
            all.extend(fs::procs(&dir)?);
            // Processes in nested cgroups (a container that made its own) count too.
            for sub in subdirs(&dir) {
                all.extend(fs::procs(&sub)?);
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Freeze every process (v1 freezer.state, v2 cgroup.freeze) and wait until frozen.
    pub fn freeze(&self) -> Result<()> {
        if let Some(dir) = self.v1_dir("freezer") {
            return v1::freeze(dir);
        }
        if let Some(dir) = &self.unified {
            return v2::freeze(dir, true);
        }
        bail!("cannot freeze: no freezer controller is mounted")
    }

    /// Undo [`CgroupManager::freeze`].
    pub fn thaw(&self) -> Result<()> {
        if let Some(dir) = self.v1_dir("freezer") {
            return fs::write(dir, "freezer.state", "THAWED");
        }
        if let Some(dir) = &self.unified {
            return v2::freeze(dir, false);
        }
        bail!("cannot thaw: no freezer controller is mounted")
    }

    pub fn is_frozen(&self) -> bool {
        if let Some(dir) = self.v1_dir("freezer") {
            return fs::read_opt(dir, "freezer.state").ok().flatten().as_deref() == Some("FROZEN");
        }
        if let Some(dir) = &self.unified {
            return fs::read_opt(dir, "cgroup.freeze").ok().flatten().as_deref() == Some("1");
        }
        false
    }

    /// Send `sig` to every process in the cgroup. The cgroup is frozen meanwhile (when not
    /// already) so that a process forking cannot escape the signal.
    pub fn kill_all(&self, sig: i32) -> Result<()> {
        if sig == libc::SIGKILL {
            if let Some(dir) = &self.unified {
                if dir.join("cgroup.kill").exists() {
                    fs::write(dir, "cgroup.kill", "1")?;
                    // Tasks frozen by the v1 freezer die only once thawed.
                    if self.v1_dir("freezer").is_some() && self.is_frozen() {
                        self.thaw()?;
                    }
                    return Ok(());
                }
            }
        }
        let was_frozen = self.is_frozen();
        let froze = !was_frozen && self.exists() && self.freeze().is_ok();
        let mut first_err = None;
        for pid in self.pids()? {
            // SAFETY: kill(2) with a pid read from cgroup.procs; no memory is involved.
            if unsafe { libc::kill(pid, sig) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) && first_err.is_none() {
                    first_err = Some(anyhow!(
                        "cannot send signal {sig} to pid {pid}: {}",
                        fs::describe(&e)
                    ));
                }
            }
        }
        if froze || (was_frozen && sig == libc::SIGKILL) {
            self.thaw()?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Kill what is left, wait for the cgroup to empty and remove it in every hierarchy.
    /// Idempotent: a cgroup that is gone (or half made) is fine.
    pub fn destroy(&self) -> Result<()> {
        // Fast path: an empty cgroup without children just goes (rmdir fails with EBUSY when
        // it still has processes or sub-cgroups, and then the slow path below takes over).
        let mut busy = false;
        for dir in self.dirs() {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy = true,
                Err(e) => bail!(
                    "cannot remove cgroup {}: {}",
                    dir.display(),
                    fs::describe(&e)
                ),
            }
        }
        if !busy {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_millis(1);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "cannot destroy cgroup {}: processes {pids:?} survive SIGKILL",
                    self.path
                );
            }
            self.kill_all(libc::SIGKILL)?;
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
        for dir in self.dirs() {
            remove_tree(&dir, deadline)?;
        }
        Ok(())
    }

    /// Peak memory usage in bytes (v1 memory.max_usage_in_bytes, v2 memory.peak).
    pub fn memory_peak(&self) -> Result<Option<u64>> {
        if let Some(dir) = self.v1_dir("memory") {
            return fs::read_u64(dir, "memory.max_usage_in_bytes");
        }
        match &self.unified {
            Some(dir) if self.has_v2("memory") => fs::read_u64(dir, "memory.peak"),
            _ => Ok(None),
        }
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if let Some(dir) = self.v1_dir("memory") {
            s.memory_usage = fs::read_u64(dir, "memory.usage_in_bytes")?;
            s.memory_peak = fs::read_u64(dir, "memory.max_usage_in_bytes")?;
            s.memory_limit = fs::read_u64(dir, "memory.limit_in_bytes")?;
        } else if let (Some(dir), true) = (&self.unified, self.has_v2("memory")) {
            s.memory_usage = fs::read_u64(dir, "memory.current")?;
            s.memory_peak = fs::read_u64(dir, "memory.peak")?;
            s.memory_limit = fs::read_u64(dir, "memory.max")?;
        }
        if let Some(dir) = self.v1_dir("pids") {
            s.pids_current = fs::read_u64(dir, "pids.current")?;
            s.pids_limit = fs::read_u64(dir, "pids.max")?;
        } else if let (Some(dir), true) = (&self.unified, self.has_v2("pids")) {
            s.pids_current = fs::read_u64(dir, "pids.current")?;
            s.pids_limit = fs::read_u64(dir, "pids.max")?;
        }
        if let Some(dir) = self.v1_dir("cpuacct") {
            s.cpu_usage_ns = fs::read_u64(dir, "cpuacct.usage")?;
        } else if let Some(dir) = &self.unified {
            if let Some(stat) = fs::read_opt(dir, "cpu.stat")? {
                s.cpu_usage_ns = fs::keyed(&stat, "usage_usec").map(|u| u.saturating_mul(1000));
            }
        }
        Ok(s)
    }
}

/// Sub-cgroups of `dir`, deepest first.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let p = e.path();
            out.extend(subdirs(&p));
            out.push(p);
        }
    }
    out
}

/// rmdir `dir` and its sub-cgroups, retrying while the kernel still reports them busy (exiting
/// tasks are released asynchronously).
fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    let mut targets = subdirs(dir);
    targets.push(dir.to_path_buf());
    for d in targets {
        let mut delay = Duration::from_millis(1);
        loop {
            match std::fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(50));
                }
                Err(e) => bail!("cannot remove cgroup {}: {}", d.display(), fs::describe(&e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const SELF: &str = "4:memory:/process_api/abc\n3:cpuset:/\n1:cpu,cpuacct:/\n0::/\n";

    fn hybrid() -> Mounts {
        let mut m = Mounts::parse(HYBRID, SELF);
        m.unified_controllers = vec!["hugetlb".into(), "memory".into()];
        m
    }

    #[test]
    fn parses_hybrid_mounts() {
        let m = hybrid();
        assert_eq!(m.layout().unwrap(), Layout::Hybrid);
        assert_eq!(m.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m.v1["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(!m.v1.contains_key("name=systemd") && !m.v1.contains_key("systemd"));
        assert_eq!(
            m.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(m.own["memory"], "/process_api/abc");
        // memory is a v1 controller here, so only hugetlb goes through cgroup2.
        assert_eq!(m.v2_controllers(), vec!["hugetlb".to_string()]);
    }

    #[test]
    fn default_and_absolute_paths() {
        let m = hybrid();
        let c = CgroupManager::with_mounts(&m, None, "abc", false).unwrap();
        assert_eq!(c.path, "/hako/abc");
        assert_eq!(
            c.v1["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/hako/abc")
        );
        assert_eq!(
            c.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/hako/abc"))
        );
        assert_eq!(
            c.dirs().len(),
            4,
            "cpu and cpuacct share a directory: {:?}",
            c.dirs()
        );
        let c =
            CgroupManager::with_mounts(&m, Some("/libpod_parent/libpod-x"), "x", false).unwrap();
        assert_eq!(
            c.v1["cpuset"],
            PathBuf::from("/sys/fs/cgroup/cpuset/libpod_parent/libpod-x")
        );
    }

    #[test]
    fn relative_paths_follow_own_cgroup() {
        let c = CgroupManager::with_mounts(&hybrid(), Some("sub/x"), "x", false).unwrap();
        assert_eq!(
            c.v1["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/sub/x")
        );
        assert_eq!(
            c.v1["cpu"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/sub/x")
        );
    }

    #[test]
    fn rejects_escapes_and_root() {
        let m = hybrid();
        for bad in ["/../etc", "/a/../../b", "..", "/", "", "/a/\0b"] {
            if bad.is_empty() {
                continue; // empty means "default"
            }
            let e = CgroupManager::with_mounts(&m, Some(bad), "x", false).unwrap_err();
            assert!(format!("{e}").contains("cgroupsPath"), "{bad:?}: {e}");
        }
        // Harmless '..' inside the path is normalized.
        let c = CgroupManager::with_mounts(&m, Some("/a/../b/c"), "x", false).unwrap();
        assert_eq!(c.path, "/b/c");
        assert!(CgroupManager::with_mounts(&m, None, "../x", false).is_err());
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(
            systemd_path("machine.slice:libpod:abc", "abc").unwrap(),
            "/machine.slice/libpod-abc.scope"
        );
        assert_eq!(
            systemd_path("a-b-c.slice:p:n", "n").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice/p-n.scope"
        );
        assert_eq!(
            systemd_path(":hako:", "i").unwrap(),
            "/system.slice/hako-i.scope"
        );
        assert!(systemd_path("notaslice:p:n", "n").is_err());
        assert!(systemd_path("a:b", "n").is_err());
        let e = CgroupManager::with_mounts(&hybrid(), Some("machine.slice:libpod:x"), "x", false)
            .unwrap_err();
        assert!(format!("{e}").contains("systemd form"), "{e}");
    }

    #[test]
    fn systemd_without_systemd_is_a_clear_error() {
        if systemd_running() {
            eprintln!("skipped: systemd is running on this host");
            return;
        }
        let e = CgroupManager::new(Some("machine.slice:libpod:x"), "x", true).unwrap_err();
        assert!(format!("{e}").contains("systemd is not running"), "{e}");
    }

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
