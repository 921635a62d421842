//! The workload's file system view: the spec's mounts, masked and read-only paths and the
//! default devices, all below the overlay root; and the guest cgroup for `pids.limit`.

use crate::sys::{cpath, errno, mkdir_p, mount, Res};
use hako_agent::proto::{ConfigDisk, EntryKind, MountKind};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) const NEWROOT: &str = "/mnt/root";

pub(crate) const WORKLOAD_CGROUP: &str = "/sys/fs/cgroup/workload";

/// Where a template makes the kernel mounts most specs ask for ([`premount`]).
const PREMOUNT_DIR: &str = "/mnt/pre";

/// The kernel mounts of the OCI default spec (runc's, oci-spec's; docker's and podman's are the
/// same), as the host translates them: destination, fstype, source, flags without `MS_RDONLY`,
/// data. A template makes one of each before its save.
const PREMOUNTS: [(&str, &str, &str, u64, &str); 7] = [
    ("/proc", "proc", "proc", 0, ""),
    (
        "/dev",
        "tmpfs",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        "mode=755,size=65536k",
    ),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    ),
    (
        "/dev/shm",
        "tmpfs",
        "shm",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "mode=1777,size=65536k",
    ),
    (
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ),
    (
        "/sys",
        "sysfs",
        "sysfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ),
    (
        "/sys/fs/cgroup",
        "cgroup2",
        "cgroup2",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME,
        "",
    ),
];

/// In a template, before its save: mount [`PREMOUNTS`] under [`PREMOUNT_DIR`], the premade
/// `/dev` with the default devices and the mount points of the rest of `/dev` in it. A restored
/// guest moves (`MS_MOVE`) those its spec asks for, with exactly those options and at exactly
/// that destination, into the workload's root instead of mounting them: under TCG every
/// file system's mount code runs for the first time after a restore, while the seven moves run
/// one code path. None of them holds anything of a sandbox: a proc, a sysfs, a cgroup2 and an
/// mqueue show the guest's live state (one guest, one sandbox), the tmpfs and devpts instances
/// are empty, and each restored copy has its own copy of them.
///
/// One the guest kernel cannot make (a kernel without mqueue, say) is left out: a spec that
/// asks for it gets its own mount after Go, which fails or not as in a cold boot.
pub(crate) fn premount() {
    for (i, (dest, fstype, source, flags, data)) in PREMOUNTS.iter().enumerate() {
        let p = Path::new(PREMOUNT_DIR).join(i.to_string());
        let made = mkdir_p(&p).and_then(|()| mount(source, &p, fstype, *flags, data));
        if made.is_err() {
            continue;
        }
        if *dest == "/dev" {
            let filled = default_devices(&p).and_then(|()| {
                ["pts", "shm", "mqueue"]
                    .iter()
                    .try_for_each(|d| mkdir_p(&p.join(d)))
            });
            if filled.is_err() {
                if let Ok(c) = cpath(&p) {
                    // SAFETY: a valid path.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                }
                continue;
            }
        }
        PREMADE[i].store(true, Ordering::Relaxed);
    }
}

/// Which of [`PREMOUNTS`] the template made.
static PREMADE: [AtomicBool; PREMOUNTS.len()] = [const { AtomicBool::new(false) }; PREMOUNTS.len()];

/// The premade mount for this kernel mount of the spec, moved to `target`; false when there is
/// none (another destination, other options, or used already).
fn take_premount(
    used: &mut [bool; PREMOUNTS.len()],
    dest: &str,
    key: (&str, &str, u64, &str),
    target: &Path,
) -> Res<bool> {
    let found = PREMOUNTS
        .iter()
        .position(|&(d, f, s, fl, da)| d == dest && (f, s, fl, da) == key);
    let Some(i) = found.filter(|&i| !used[i]) else {
        return Ok(false);
    };
    used[i] = true;
    let src = Path::new(PREMOUNT_DIR).join(i.to_string());
    mount(&src.to_string_lossy(), target, "", libc::MS_MOVE, "")?;
    Ok(true)
}

/// `linux.resources.pids.limit`: a guest cgroup v2 the workload joins before exec.
pub(crate) fn pids_cgroup(limit: i64) -> Res<()> {
    let root = Path::new("/sys/fs/cgroup");
    mount(
        "cgroup2",
        root,
        "cgroup2",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    )?;
    fs::write(root.join("cgroup.subtree_control"), "+pids")
        .map_err(|e| format!("enable the pids controller: {e}"))?;
    mkdir_p(Path::new(WORKLOAD_CGROUP))?;
    fs::write(
        Path::new(WORKLOAD_CGROUP).join("pids.max"),
        limit.to_string(),
    )
    .map_err(|e| format!("pids.max: {e}"))
}

/// Resolve `dest` (absolute, in the workload's view) below `root` without following symlinks out
/// of it: a symlink met on the way is resolved relative to `root`.
pub(crate) fn resolve_in_root(root: &Path, dest: &str) -> Res<PathBuf> {
    hako_linux::inroot::join(root, Path::new(dest)).map_err(|e| format!("{dest}: {e}"))
}

/// Make the spec's mounts, masked and read-only paths below `root`. `premade`: this guest is a
/// restored template's, whose [`premount`]s may serve the spec's kernel mounts.
pub(crate) fn setup_mounts(disk: &ConfigDisk, root: &Path, rw: &Path, premade: bool) -> Res<()> {
    let cfg = &disk.config;
    let mut dev_is_tmpfs = false;
    let mut has_dev = false;
    // Which premounts are used (or were never made).
    let mut used: [bool; PREMOUNTS.len()] =
        std::array::from_fn(|i| !premade || !PREMADE[i].load(Ordering::Relaxed));
    let mut dev_premade = false;
    for (i, m) in cfg.mounts.iter().enumerate() {
        let target = resolve_in_root(root, &m.destination)?;
        match &m.kind {
            MountKind::Kernel {
                fstype,
                source,
                flags,
                data,
            } => {
                mkdir_p(&target)?;
                if m.destination == "/dev" {
                    has_dev = true;
                    dev_is_tmpfs = fstype == "tmpfs";
                }
                // Read-only as a property of this mount, not of the file system: proc, sysfs and
                // cgroup2 have one superblock per guest, which the agent still writes to.
                let rw_flags = *flags & !libc::MS_RDONLY;
                let key = (fstype.as_str(), source.as_str(), rw_flags, data.as_str());
                if take_premount(&mut used, &m.destination, key, &target)? {
                    dev_premade |= m.destination == "/dev";
                } else {
                    mount(source, &target, fstype, rw_flags, data)?;
                }
                if flags & libc::MS_RDONLY != 0 {
                    let keep = flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
                    mount(
                        "",
                        &target,
                        "",
                        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep,
                        "",
                    )?;
                }
            }
            MountKind::Carried {
                entries,
                readonly,
                flags,
            } => {
                let stage = rw.join("carried").join(i.to_string());
                let is_dir = !matches!(
                    entries.first().map(|e| &e.kind),
                    Some(EntryKind::File { .. })
                );
                for e in entries {
                    let p = if e.path.is_empty() {
                        stage.clone()
                    } else {
                        stage.join(&e.path)
                    };
                    match &e.kind {
                        EntryKind::Dir => mkdir_p(&p)?,
                        EntryKind::File { data } => {
                            if let Some(parent) = p.parent() {
                                mkdir_p(parent)?;
                            }
                            fs::write(&p, disk.blob(*data)?)
                                .map_err(|er| format!("{}: {er}", p.display()))?
                        }
                        EntryKind::Symlink { target } => {
                            symlink(target, &p).map_err(|er| format!("{}: {er}", p.display()))?
                        }
                    }
                    if !matches!(e.kind, EntryKind::Symlink { .. }) {
                        let _ =
                            fs::set_permissions(&p, fs::Permissions::from_mode(e.mode & 0o7777));
                    }
                    let c = cpath(&p)?;
                    // SAFETY: valid path.
                    unsafe { libc::lchown(c.as_ptr(), e.uid, e.gid) };
                }
                if is_dir {
                    mkdir_p(&target)?;
                } else if !target.exists() {
                    if let Some(parent) = target.parent() {
                        mkdir_p(parent)?;
                    }
                    fs::write(&target, b"").map_err(|e| format!("{}: {e}", target.display()))?;
                }
                mount(
                    &stage.to_string_lossy(),
                    &target,
                    "",
                    libc::MS_BIND | libc::MS_REC,
                    "",
                )?;
                if *readonly || flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) != 0 {
                    let ro = if *readonly { libc::MS_RDONLY } else { 0 };
                    mount(
                        "",
                        &target,
                        "",
                        libc::MS_REMOUNT | libc::MS_BIND | ro | flags,
                        "",
                    )?;
                }
            }
        }
    }
    let dev = root.join("dev");
    if !has_dev {
        // No /dev in the spec: give the workload the guest's devtmpfs.
        mkdir_p(&dev)?;
        mount("devtmpfs", &dev, "devtmpfs", libc::MS_NOSUID, "")?;
    } else if dev_is_tmpfs && !dev_premade {
        default_devices(&dev)?;
    }
    for p in &cfg.masked_paths {
        let t = resolve_in_root(root, p)?;
        match fs::metadata(&t) {
            Ok(m) if m.is_dir() => mount("tmpfs", &t, "tmpfs", libc::MS_RDONLY, "size=0")?,
            Ok(_) => mount("/dev/null", &t, "", libc::MS_BIND, "")?,
            Err(_) => {}
        }
    }
    for p in &cfg.readonly_paths {
        let t = resolve_in_root(root, p)?;
        if t.exists() {
            mount(
                &t.to_string_lossy(),
                &t,
                "",
                libc::MS_BIND | libc::MS_REC,
                "",
            )?;
            mount(
                "",
                &t,
                "",
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_REC,
                "",
            )?;
        }
    }
    Ok(())
}

/// The devices every OCI container gets (runtime-spec "Default Devices"), on a tmpfs /dev.
pub(crate) fn default_devices(dev: &Path) -> Res<()> {
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        let c = cpath(&p)?;
        // SAFETY: valid path; mknod of a char device as root in the guest.
        let r = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        if r != 0 && errno().raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("mknod {}: {}", p.display(), errno()));
        }
        // SAFETY: valid path.
        unsafe { libc::chmod(c.as_ptr(), 0o666) };
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let _ = symlink(target, dev.join(name));
    }
    Ok(())
}
