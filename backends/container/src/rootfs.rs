//! The container's file system view, built inside its new mount namespace (or, for a container
//! without one of its own, a private copy that is left again at the end, see
//! [`enter_shared_namespace`]): the rootfs bind, the spec's mounts in order, /dev, pivot_root,
//! masked and read-only paths.

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A mount as the child performs it (prepared by the parent from the spec).
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub source: Option<PathBuf>,
    pub dest: PathBuf,
    pub fstype: String,
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: String,
    pub bind: bool,
    pub tmpcopyup: bool,
}

/// Flags named in mount options; `true` = set the flag, `false` = clear it.
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("ro", true, MsFlags::MS_RDONLY),
    ("rw", false, MsFlags::MS_RDONLY),
    ("nosuid", true, MsFlags::MS_NOSUID),
    ("suid", false, MsFlags::MS_NOSUID),
    ("nodev", true, MsFlags::MS_NODEV),
    ("dev", false, MsFlags::MS_NODEV),
    ("noexec", true, MsFlags::MS_NOEXEC),
    ("exec", false, MsFlags::MS_NOEXEC),
    ("sync", true, MsFlags::MS_SYNCHRONOUS),
    ("async", false, MsFlags::MS_SYNCHRONOUS),
    ("dirsync", true, MsFlags::MS_DIRSYNC),
    ("remount", true, MsFlags::MS_REMOUNT),
    ("mand", true, MsFlags::MS_MANDLOCK),
    ("nomand", false, MsFlags::MS_MANDLOCK),
    ("atime", false, MsFlags::MS_NOATIME),
    ("noatime", true, MsFlags::MS_NOATIME),
    ("diratime", false, MsFlags::MS_NODIRATIME),
    ("nodiratime", true, MsFlags::MS_NODIRATIME),
    ("relatime", true, MsFlags::MS_RELATIME),
    ("norelatime", false, MsFlags::MS_RELATIME),
    ("strictatime", true, MsFlags::MS_STRICTATIME),
    ("nostrictatime", false, MsFlags::MS_STRICTATIME),
    ("bind", true, MsFlags::MS_BIND),
    ("rbind", true, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("silent", true, MsFlags::MS_SILENT),
    ("loud", false, MsFlags::MS_SILENT),
];

/// Propagation flags (`rprivate`, `shared`, ...).
pub fn propagation_flag(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Mount options no version of this backend honours: refused by `check`.
pub const REFUSED_OPTIONS: &[&str] = &["idmap", "ridmap", "copy-symlink", "rro", "recursive_ro"];

/// Turn one spec mount into a plan. `bundle` resolves relative bind sources.
pub fn plan_mount(m: &oci_spec::runtime::Mount, bundle: &Path) -> Result<MountPlan> {
    let mut flags = MsFlags::empty();
    let mut propagation = vec![];
    let mut data = vec![];
    let mut tmpcopyup = false;
    for o in m.options().iter().flatten() {
        if let Some((_, set, f)) = FLAGS.iter().find(|(n, _, _)| n == o) {
            if *set {
                flags |= *f;
            } else {
                flags &= !*f;
            }
        } else if let Some(p) = propagation_flag(o) {
            propagation.push(p);
        } else if o == "tmpcopyup" {
            tmpcopyup = true;
        } else if REFUSED_OPTIONS.contains(&o.as_str()) {
            bail!(
                "mount {}: option {o:?} is not supported",
                m.destination().display()
            );
        } else {
            data.push(o.clone());
        }
    }
    let fstype = m.typ().clone().unwrap_or_default();
    let bind = fstype == "bind" || flags.contains(MsFlags::MS_BIND);
    if bind {
        flags |= MsFlags::MS_BIND;
    }
    let source = m.source().as_ref().map(|s| {
        if bind && s.is_relative() {
            bundle.join(s)
        } else {
            s.clone()
        }
    });
    if bind && source.is_none() {
        bail!("bind mount {} has no source", m.destination().display());
    }
    if !m.destination().is_absolute() {
        bail!(
            "mount destination {} is not absolute",
            m.destination().display()
        );
    }
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        bail!(
            "mount {}: id-mapped mounts are not supported",
            m.destination().display()
        );
    }
    Ok(MountPlan {
        source,
        dest: m.destination().clone(),
        fstype,
        flags,
        propagation,
        data: data.join(","),
        bind,
        tmpcopyup,
    })
}

/// Join `unsafe_path` to `root`, resolving symlinks as if `root` were `/` (nothing escapes).
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    hako_linux::inroot::join(root, unsafe_path)
        .with_context(|| format!("resolving {} in the rootfs", unsafe_path.display()))
}

fn mnt(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(src, dst, fstype, flags, data).with_context(|| {
        format!(
            "mount {} on {} (type {}, flags {:?}, data {:?})",
            src.map(|s| s.display().to_string()).unwrap_or_default(),
            dst.display(),
            fstype.unwrap_or(""),
            flags,
            data.unwrap_or("")
        )
    })
}

/// The flags of the mount at `p` that an unprivileged remount may not clear.
fn locked_flags(p: &Path) -> MsFlags {
    let mut out = MsFlags::empty();
    if let Ok(st) = nix::sys::statvfs::statvfs(p) {
        use nix::sys::statvfs::FsFlags;
        let f = st.flags();
        for (a, b) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(a) {
                out |= b;
            }
        }
    }
    out
}

/// Remount a bind mount with `flags`; in a user namespace the flags the kernel locked are kept.
fn remount_bind(p: &Path, flags: MsFlags) -> Result<()> {
    let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
    match mount(None::<&str>, p, None::<&str>, f, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => mnt(None, p, None, f | locked_flags(p), None),
        Err(e) => Err(e).with_context(|| format!("remount {} with {:?}", p.display(), flags)),
    }
}

fn mkdir_all(p: &Path) -> Result<()> {
    fs::create_dir_all(p).with_context(|| format!("mkdir {}", p.display()))
}

fn ensure_file(p: &Path) -> Result<()> {
    if let Some(parent) = p.parent() {
        mkdir_all(parent)?;
    }
    if fs::symlink_metadata(p).is_err() {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .with_context(|| format!("create {}", p.display()))?;
    }
    Ok(())
}

/// Cgroup hierarchies as the host mounts them: (mount point, root, super options).
#[derive(Debug, Clone)]
pub struct CgroupMounts {
    /// v1 hierarchies: mount point and the subsystem list (`cpu,cpuacct`, `name=systemd`).
    pub v1: Vec<(PathBuf, String)>,
    /// The cgroup2 mount (pure v2 or the hybrid `unified`).
    pub v2: Option<PathBuf>,
    /// The init's cgroup per hierarchy, from /proc/self/cgroup (key: controller list or "" for v2).
    pub own: Vec<(String, String)>,
}

/// A file of our own below the host's procfs (`thread-self/...`), empty when unreadable. Read
/// through `proc`, never through the `/proc` of the mount namespace we are in: in a joined mount
/// namespace that one may belong to another pid namespace, where we have no `self`.
fn read_own_proc(proc: &crate::process::HostProc, rel: &str) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Ok(fd) = proc.open_file(&format!("thread-self/{rel}"), libc::O_RDONLY) {
        let _ = fs::File::from(fd).read_to_string(&mut s);
    }
    s
}

pub fn cgroup_mounts(proc: &crate::process::HostProc) -> CgroupMounts {
    let mut v1 = vec![];
    let mut v2 = None;
    for line in read_own_proc(proc, "mountinfo").lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let mp = PathBuf::from(unescape(l[4]));
        match r[0] {
            "cgroup2" if v2.is_none() => v2 = Some(mp),
            "cgroup" => {
                let subs: Vec<&str> = r[2]
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro")
                            && !o.starts_with("release_agent")
                            && *o != "xattr"
                            && *o != "clone_children"
                    })
                    .filter(|o| {
                        !matches!(
                            *o,
                            "nosuid"
                                | "nodev"
                                | "noexec"
                                | "relatime"
                                | "noprefix"
                                | "cpuset_v2_mode"
                                | "nsdelegate"
                                | "memory_recursiveprot"
                        )
                    })
                    .collect();
                v1.push((mp, subs.join(",")));
            }
            _ => {}
        }
    }
    let own = read_own_proc(proc, "cgroup")
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _ = it.next()?;
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect();
    CgroupMounts { v1, v2, own }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Everything the rootfs set-up needs.
pub struct RootfsPlan<'a> {
    pub rootfs: &'a Path,
    pub mounts: &'a [MountPlan],
    pub root_propagation: Option<MsFlags>,
    pub devices: &'a [oci_spec::runtime::LinuxDevice],
    /// We are in a new user namespace: device nodes are bind-mounted, not made.
    pub userns: bool,
    pub new_cgroupns: bool,
}

/// Before pivot_root: propagation of `/`, the rootfs bind, the mounts, /dev. `cgroups` is
/// called once, before the first cgroup mount; its result is returned (`None`: never called).
pub fn prepare(
    p: &RootfsPlan,
    cgroups: &mut dyn FnMut() -> Result<CgroupMounts>,
) -> Result<Option<CgroupMounts>> {
    let mut cg: Option<CgroupMounts> = None;
    let prop = p
        .root_propagation
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mnt(None, Path::new("/"), None, prop, None)?;
    if prop.contains(MsFlags::MS_SHARED) {
        make_parent_private(p.rootfs)?;
    }
    mnt(
        Some(p.rootfs),
        p.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    for m in p.mounts {
        if (m.fstype == "cgroup" || m.fstype == "cgroup2") && cg.is_none() {
            cg = Some(cgroups()?);
        }
        mount_one(p, m, cg.as_ref()).with_context(|| format!("mounting {}", m.dest.display()))?;
    }
    let dev_is_bind = p
        .mounts
        .iter()
        .any(|m| m.dest == Path::new("/dev") && m.bind);
    if !dev_is_bind {
        default_devices(p)?;
    }
    for d in p.devices {
        make_device(p, d).with_context(|| format!("device {}", d.path().display()))?;
    }
    if !dev_is_bind {
        dev_symlinks(p.rootfs)?;
    }
    Ok(cg)
}

fn make_parent_private(rootfs: &Path) -> Result<()> {
    let mut best = PathBuf::from("/");
    for line in fs::read_to_string("/proc/self/mountinfo")?.lines() {
        if let Some(mp) = line.split(' ').nth(4) {
            let mp = PathBuf::from(unescape(mp));
            if rootfs.starts_with(&mp) && mp.as_os_str().len() > best.as_os_str().len() {
                best = mp;
            }
        }
    }
    mnt(None, &best, None, MsFlags::MS_PRIVATE, None)
}

/// Files below /proc that a bind mount may cover (what lxcfs provides), as runc allows.
const PROC_BIND_OK: &[&str] = &[
    "cpuinfo",
    "diskstats",
    "meminfo",
    "stat",
    "swaps",
    "uptime",
    "loadavg",
    "slabinfo",
    "net/dev",
    "sys/kernel/ns_last_pid",
];

/// A mount whose destination resolves to /proc or below must be a proc mount at /proc itself
/// (or a bind of one of [`PROC_BIND_OK`]): anything else, through a rootfs symlink or not,
/// would put a directory of the bundle's choosing where the runtime and the workload expect the
/// kernel's procfs (runc's CVE-2019-19921 class).
fn check_proc_destination(rootfs: &Path, dest: &Path, m: &MountPlan) -> Result<()> {
    let proc = rootfs.join("proc");
    let Ok(rel) = dest.strip_prefix(&proc) else {
        return Ok(());
    };
    let rel = rel.to_string_lossy();
    if m.fstype == "proc" && rel.is_empty() {
        return Ok(());
    }
    if m.bind && PROC_BIND_OK.contains(&rel.as_ref()) {
        return Ok(());
    }
    bail!(
        "mount destination {} resolves to /proc{}{rel}: only a proc mount may go on /proc (type {:?} refused)",
        m.dest.display(),
        if rel.is_empty() { "" } else { "/" },
        if m.bind { "bind" } else { m.fstype.as_str() }
    )
}

fn mount_one(p: &RootfsPlan, m: &MountPlan, cg: Option<&CgroupMounts>) -> Result<()> {
    let dest = secure_join(p.rootfs, &m.dest)?;
    check_proc_destination(p.rootfs, &dest, m)?;
    if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        return mount_cgroup(p, m, &dest, cg.context("cgroup mounts not known")?);
    }
    if m.bind {
        let src = m.source.as_deref().unwrap();
        let md = fs::metadata(src).with_context(|| format!("bind source {}", src.display()))?;
        if md.is_dir() {
            mkdir_all(&dest)?;
        } else {
            ensure_file(&dest)?;
        }
        mnt(
            Some(src),
            &dest,
            None,
            m.flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
            None,
        )?;
        let rest = m.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !rest.is_empty() {
            remount_bind(&dest, rest)?;
        }
    } else {
        mkdir_all(&dest)?;
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        let src = m.source.clone().unwrap_or_else(|| PathBuf::from(&m.fstype));
        if m.tmpcopyup {
            tmpcopyup(&src, &dest, m, data)?;
        } else {
            match mount(Some(&src), &dest, Some(m.fstype.as_str()), m.flags, data) {
                Ok(()) => {}
                // In a user namespace sysfs needs a new net namespace and mqueue a new ipc one;
                // as runc, fall back to a recursive bind of the host's.
                Err(nix::errno::Errno::EPERM) if m.fstype == "sysfs" || m.fstype == "mqueue" => {
                    let host = if m.fstype == "sysfs" {
                        "/sys"
                    } else {
                        "/dev/mqueue"
                    };
                    mnt(
                        Some(Path::new(host)),
                        &dest,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )?;
                    let rest = m.flags & !MsFlags::MS_REMOUNT;
                    if !rest.is_empty() {
                        remount_bind(&dest, rest)?;
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "mount {} on {} (type {}, flags {:?}, data {:?})",
                            src.display(),
                            dest.display(),
                            m.fstype,
                            m.flags,
                            m.data
                        )
                    })
                }
            }
        }
    }
    for pf in &m.propagation {
        mnt(None, &dest, None, *pf, None)?;
    }
    Ok(())
}

/// A tmpfs that starts with a copy of what the image had at its destination.
fn tmpcopyup(src: &Path, dest: &Path, m: &MountPlan, data: Option<&str>) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("hako-tmpcopyup-{}", std::process::id()));
    mkdir_all(&tmp)?;
    let r = (|| {
        mnt(
            Some(src),
            &tmp,
            Some(m.fstype.as_str()),
            m.flags & !MsFlags::MS_RDONLY,
            data,
        )?;
        copy_tree(dest, &tmp)?;
        if m.flags.contains(MsFlags::MS_RDONLY) {
            mnt(None, &tmp, None, MsFlags::MS_REMOUNT | m.flags, data)?;
        }
        mnt(Some(&tmp), dest, None, MsFlags::MS_MOVE, None)
    })();
    if r.is_err() {
        let _ = umount2(&tmp, MntFlags::MNT_DETACH);
    }
    let _ = fs::remove_dir(&tmp);
    r
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let Ok(rd) = fs::read_dir(from) else {
        return Ok(());
    };
    let md = fs::metadata(from)?;
    fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    let _ = nix::unistd::chown(to, Some(md.uid().into()), Some(md.gid().into()));
    for e in rd {
        let e = e?;
        let (s, d) = (e.path(), to.join(e.file_name()));
        let md = fs::symlink_metadata(&s)?;
        if md.is_dir() {
            fs::create_dir(&d)?;
            copy_tree(&s, &d)?;
        } else if md.file_type().is_symlink() {
            symlink(fs::read_link(&s)?, &d)?;
        } else if md.is_file() {
            fs::copy(&s, &d)?;
        } else {
            continue;
        }
        let _ = nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &d,
            Some(md.uid().into()),
            Some(md.gid().into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
    }
    Ok(())
}

/// cgroup (v1) and cgroup2 mounts. With a new cgroup namespace cgroup2 is mounted afresh;
/// otherwise (and for every v1 hierarchy) the container's own cgroup directories are bound.
fn mount_cgroup(p: &RootfsPlan, m: &MountPlan, dest: &Path, cg: &CgroupMounts) -> Result<()> {
    mkdir_all(dest)?;
    let ro = m.flags.contains(MsFlags::MS_RDONLY);
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if cg.v1.is_empty() {
        // Pure v2.
        if p.new_cgroupns {
            let f = base | (m.flags & MsFlags::MS_RDONLY);
            match mount(Some("cgroup2"), dest, Some("cgroup2"), f, None::<&str>) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EPERM) | Err(nix::errno::Errno::EBUSY) => {}
                Err(e) => return Err(e).context(format!("mount cgroup2 on {}", dest.display())),
            }
        }
        let Some(v2) = &cg.v2 else {
            bail!("no cgroup2 hierarchy on the host")
        };
        let own = cg
            .own
            .iter()
            .find(|(k, _)| k.is_empty())
            .map(|(_, v)| v.as_str())
            .unwrap_or("/");
        bind_cgroup_dir(v2, own, dest, ro)?;
        return Ok(());
    }
    // v1 or hybrid: a tmpfs holding one bound directory per hierarchy, as runc does.
    mnt(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )?;
    for (mp, subs) in &cg.v1 {
        let name = mp
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| subs.clone());
        let own = cg
            .own
            .iter()
            .find(|(k, _)| {
                k == subs || k.split(',').collect::<Vec<_>>() == subs.split(',').collect::<Vec<_>>()
            })
            .map(|(_, v)| v.as_str())
            .unwrap_or("/");
        let d = dest.join(&name);
        mkdir_all(&d)?;
        bind_cgroup_dir(mp, own, &d, ro)?;
        // Comounted controllers (cpu,cpuacct) get a link per controller.
        if subs.contains(',') && !subs.starts_with("name=") {
            for s in subs.split(',') {
                if s != name {
                    let _ = symlink(&name, dest.join(s));
                }
            }
        }
    }
    if let Some(v2) = &cg.v2 {
        if v2.starts_with(cg.v1[0].0.parent().unwrap_or(Path::new("/"))) {
            let name = v2
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "unified".into());
            let own = cg
                .own
                .iter()
                .find(|(k, _)| k.is_empty())
                .map(|(_, v)| v.as_str())
                .unwrap_or("/");
            let d = dest.join(name);
            mkdir_all(&d)?;
            bind_cgroup_dir(v2, own, &d, ro)?;
        }
    }
    if ro {
        mnt(
            None,
            dest,
            None,
            MsFlags::MS_REMOUNT | base | MsFlags::MS_RDONLY,
            Some("mode=755"),
        )?;
    }
    Ok(())
}

fn bind_cgroup_dir(host_mp: &Path, own: &str, dest: &Path, ro: bool) -> Result<()> {
    let src = host_mp.join(own.trim_start_matches('/'));
    let src = if src.is_dir() {
        src
    } else {
        host_mp.to_path_buf()
    };
    mnt(
        Some(&src),
        dest,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let f = MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | if ro {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
    remount_bind(dest, f)
}

const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn default_devices(p: &RootfsPlan) -> Result<()> {
    for (name, maj, min) in DEFAULT_DEVICES {
        let path = PathBuf::from("/dev").join(name);
        if p.devices.iter().any(|d| d.path() == &path) {
            continue;
        }
        let dest = secure_join(p.rootfs, &path)?;
        node(p, &dest, SFlag::S_IFCHR, 0o666, *maj, *min, 0, 0)
            .with_context(|| format!("device {}", path.display()))?;
    }
    Ok(())
}

fn make_device(p: &RootfsPlan, d: &oci_spec::runtime::LinuxDevice) -> Result<()> {
    use oci_spec::runtime::LinuxDeviceType as T;
    let kind = match d.typ() {
        T::C | T::U => SFlag::S_IFCHR,
        T::B => SFlag::S_IFBLK,
        T::P => SFlag::S_IFIFO,
        T::A => bail!("device type 'a' is only valid in cgroup rules"),
    };
    if !d.path().starts_with("/dev") {
        bail!("device path {} is not under /dev", d.path().display());
    }
    let dest = secure_join(p.rootfs, d.path())?;
    node(
        p,
        &dest,
        kind,
        d.file_mode().unwrap_or(0o666) & 0o7777,
        d.major() as u64,
        d.minor() as u64,
        d.uid().unwrap_or(0),
        d.gid().unwrap_or(0),
    )
}

#[allow(clippy::too_many_arguments)]
fn node(
    p: &RootfsPlan,
    dest: &Path,
    kind: SFlag,
    mode: u32,
    maj: u64,
    min: u64,
    uid: u32,
    gid: u32,
) -> Result<()> {
    if let Some(parent) = dest.parent() {
        mkdir_all(parent)?;
    }
    if fs::symlink_metadata(dest).is_ok() {
        fs::remove_file(dest).with_context(|| format!("replacing {}", dest.display()))?;
    }
    let made = if p.userns {
        Err(nix::errno::Errno::EPERM)
    } else {
        mknod(
            dest,
            kind,
            Mode::from_bits_truncate(mode),
            makedev(maj, min),
        )
    };
    match made {
        Ok(()) => {
            // mknod is subject to the umask; set the mode exactly.
            fs::set_permissions(dest, fs::Permissions::from_mode(mode))?;
            nix::unistd::chown(dest, Some(uid.into()), Some(gid.into())).context("chown")?;
            Ok(())
        }
        Err(nix::errno::Errno::EPERM) if kind != SFlag::S_IFIFO => {
            // In a user namespace: bind the host's node onto an empty file.
            let host = host_device_path(kind, maj, min).with_context(|| {
                format!("no host device {maj}:{min} to bind for {}", dest.display())
            })?;
            ensure_file(dest)?;
            mnt(Some(&host), dest, None, MsFlags::MS_BIND, None)
        }
        Err(e) => Err(e).with_context(|| format!("mknod {}", dest.display())),
    }
}

fn host_device_path(kind: SFlag, maj: u64, min: u64) -> Option<PathBuf> {
    let dir = if kind == SFlag::S_IFBLK {
        "block"
    } else {
        "char"
    };
    let link = fs::read_link(format!("/sys/dev/{dir}/{maj}:{min}")).ok()?;
    let name = fs::read_to_string(format!("/sys/dev/{dir}/{maj}:{min}/uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string))
        })
        .or_else(|| link.file_name().map(|n| n.to_string_lossy().to_string()))?;
    Some(PathBuf::from("/dev").join(name))
}

fn dev_symlinks(rootfs: &Path) -> Result<()> {
    let dev = secure_join(rootfs, Path::new("/dev"))?;
    mkdir_all(&dev)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let p = dev.join(name);
        if fs::symlink_metadata(&p).is_err() {
            symlink(target, &p).with_context(|| format!("symlink {}", p.display()))?;
        }
    }
    // /dev/ptmx always points at the container's devpts instance.
    let ptmx = dev.join("ptmx");
    if fs::symlink_metadata(&ptmx).is_ok() {
        fs::remove_file(&ptmx)?;
    }
    symlink("pts/ptmx", &ptmx).context("symlink /dev/ptmx")?;
    let shm = dev.join("shm");
    if fs::symlink_metadata(&shm).is_err() {
        fs::create_dir(&shm)?;
    }
    Ok(())
}

/// Make `rootfs` the root: pivot_root (or MS_MOVE + chroot with `no_pivot`).
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        nix::unistd::chdir(rootfs).context("chdir rootfs")?;
        mnt(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)?;
        nix::unistd::chroot(".").context("chroot")?;
        nix::unistd::chdir("/").context("chdir /")?;
        return Ok(());
    }
    let flags =
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
    let old = nix::fcntl::open("/", flags, Mode::empty()).context("open /")?;
    let new = nix::fcntl::open(rootfs, flags, Mode::empty()).context("open rootfs")?;
    nix::unistd::fchdir(&new).context("fchdir rootfs")?;
    nix::unistd::pivot_root(".", ".").context("pivot_root")?;
    nix::unistd::fchdir(&old).context("fchdir old root")?;
    // Keep unmounting the old root from reaching the host.
    mnt(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    umount2(".", MntFlags::MNT_DETACH).context("unmount old root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// For a container without a mount namespace of its own (none in the spec, or one joined by
/// path): the init built its tree in a private copy of the shared namespace `home` and is
/// rooted in it. Clone that whole tree into a detached mount (open_tree OPEN_TREE_CLONE |
/// AT_RECURSIVE), go back into `home` (setns, which also resets root and cwd to its root), then
/// root the process in the detached clone (fchdir + chroot). The workload then shares `home`, as
/// runc's does, while none of the container's mounts is ever attached to `home`: nothing is
/// mounted onto the host's tree, nothing is left there when the container ends (the clone goes
/// with its last user), and `..` stops at the top of the clone, which has no parent mount to
/// climb to (runc's chroot in the shared namespace does not stop a CAP_SYS_CHROOT escape).
/// Every mount-changing step (read-only root, masked and read-only paths, the console) is done
/// before: a detached tree cannot be remounted from `home`.
///
/// Hand-written: nix wraps neither open_tree nor its flags.
pub fn enter_shared_namespace(home: &std::os::fd::OwnedFd) -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: open_tree with a static path and plain flags; the result is a fresh descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            OPEN_TREE_CLONE | libc::AT_RECURSIVE as libc::c_uint | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("cloning the container's mount tree (open_tree)");
    }
    // SAFETY: a fresh descriptor.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: setns on a descriptor we own.
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("returning to the shared mount namespace");
    }
    nix::unistd::fchdir(&tree).context("fchdir into the container's tree")?;
    nix::unistd::chroot(".").context("chroot into the container's tree")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// After pivot: re-apply an explicit rootfsPropagation to the new `/`.
pub fn root_propagation(flags: MsFlags) -> Result<()> {
    mnt(None, Path::new("/"), None, flags, None)
}

pub fn readonly_root() -> Result<()> {
    remount_bind(Path::new("/"), MsFlags::MS_RDONLY)
}

/// `/dev/console`: the pty slave bound over it.
pub fn bind_console(slave_path: &Path) -> Result<()> {
    let c = Path::new("/dev/console");
    ensure_file(c)?;
    mnt(Some(slave_path), c, None, MsFlags::MS_BIND, None)
}

pub fn mask_path(p: &str) -> Result<()> {
    let path = Path::new(p);
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("masked path {p}")),
        Ok(md) if md.is_dir() => mnt(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        ),
        Ok(_) => mnt(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
        ),
    }
}

pub fn readonly_path(p: &str) -> Result<()> {
    let path = Path::new(p);
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("readonly path {p}")),
        Ok(_) => {}
    }
    mnt(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    remount_bind(path, MsFlags::MS_RDONLY | MsFlags::MS_REC)
}

/// Mounts at or below `rootfs` in the caller's mount namespace: (mount id, mount point).
pub fn mounts_below(rootfs: &Path) -> Vec<(u64, PathBuf)> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let id = f.next()?.parse().ok()?;
            let mp = PathBuf::from(unescape(f.nth(3)?));
            mp.starts_with(rootfs).then_some((id, mp))
        })
        .collect()
}

/// Host-side clean-up for `delete`: unmount what the container propagated back to the host at
/// or below `rootfs` (a shared rootfsPropagation), that is every mount there that was not in
/// `before` (recorded at create). Mounts the engine or an admin made there before the container
/// existed are left alone, as runc leaves them. Deepest first.
pub fn unmount_new_below(rootfs: &Path, before: &[u64]) -> Result<()> {
    let mut mps: Vec<PathBuf> = mounts_below(rootfs)
        .into_iter()
        .filter(|(id, _)| !before.contains(id))
        .map(|(_, mp)| mp)
        .collect();
    mps.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for m in mps {
        match umount2(&m, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("unmounting {}", m.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let m = oci_spec::runtime::MountBuilder::default()
            .destination("/dev")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".into(),
                "strictatime".into(),
                "mode=755".into(),
                "size=65536k".into(),
                "rslave".into(),
            ])
            .build()
            .unwrap();
        let p = plan_mount(&m, Path::new("/b")).unwrap();
        assert_eq!(p.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(p.data, "mode=755,size=65536k");
        assert_eq!(p.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert!(!p.bind);
        let b = oci_spec::runtime::MountBuilder::default()
            .destination("/x")
            .typ("none")
            .source("data")
            .options(vec!["rbind".into(), "ro".into()])
            .build()
            .unwrap();
        let p = plan_mount(&b, Path::new("/b")).unwrap();
        assert!(p.bind);
        assert_eq!(p.source.unwrap(), PathBuf::from("/b/data"));
        assert!(p.flags.contains(MsFlags::MS_REC | MsFlags::MS_RDONLY));
    }
}
