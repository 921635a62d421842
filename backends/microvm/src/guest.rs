//! The OCI spec, translated into what the guest agent applies ([`GuestConfig`]), and everything a
//! guest cannot honour refused with a clear error.

use anyhow::{bail, Context, Result};
use hako_agent::proto::{
    self, CarriedEntry, ConfigBuilder, EntryKind, GuestConfig, MountKind, ProcessSpec,
};
use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Total bytes of host files a sandbox may carry in through bind mounts.
pub const CARRY_BUDGET: u64 = 64 << 20;

/// The devices every container gets; the agent makes them, so listing them is fine.
const DEFAULT_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
];

fn cap_numbers(set: &Option<oci_spec::runtime::Capabilities>) -> Result<Vec<u32>> {
    let mut out = vec![];
    for c in set.iter().flatten() {
        out.push(hako_linux::caps::number(c)?);
    }
    out.sort();
    Ok(out)
}

/// Mount options as runc reads them: flags, and the rest as file-system data.
fn mount_flags(options: &[String]) -> (u64, String, bool) {
    let mut flags = 0u64;
    let mut data = vec![];
    let mut bind = false;
    for o in options {
        let (set, clear): (u64, u64) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "bind" | "rbind" => {
                bind = true;
                (0, 0)
            }
            // Propagation only matters between mount namespaces sharing mounts with the host;
            // the guest shares nothing with it.
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" | "defaults" => (0, 0),
            other => {
                data.push(other.to_string());
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","), bind)
}

struct Translator<'a> {
    builder: Option<&'a mut ConfigBuilder>,
    carried: u64,
}

impl Translator<'_> {
    /// Copy a host file or read-only directory into carried entries.
    fn carry(&mut self, src: &Path, dest: &str) -> Result<Vec<CarriedEntry>> {
        let mut entries = vec![];
        let mut stack = vec![(src.to_path_buf(), String::new())];
        while let Some((p, rel)) = stack.pop() {
            let md = fs::symlink_metadata(&p)
                .with_context(|| format!("bind mount {} -> {dest}", p.display()))?;
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                let mut names: Vec<_> = fs::read_dir(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<std::io::Result<_>>()?;
                names.sort();
                for n in names.into_iter().rev() {
                    let r = if rel.is_empty() {
                        n.to_string_lossy().into_owned()
                    } else {
                        format!("{rel}/{}", n.to_string_lossy())
                    };
                    stack.push((p.join(&n), r));
                }
                EntryKind::Dir
            } else if ft.is_file() {
                self.carried += md.len();
                if self.carried > CARRY_BUDGET {
                    bail!(
                        "bind mount {} -> {dest}: the host files bind-mounted into a microvm are copied in, and they exceed {} MiB",
                        src.display(),
                        CARRY_BUDGET >> 20
                    );
                }
                let data = match self.builder.as_deref_mut() {
                    Some(b) => b.add_blob(
                        &fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                    ),
                    None => proto::Blob {
                        offset: 0,
                        len: md.len(),
                    },
                };
                EntryKind::File { data }
            } else if ft.is_symlink() {
                let t = fs::read_link(&p)?;
                EntryKind::Symlink {
                    target: t.to_string_lossy().into_owned(),
                }
            } else {
                let what = if ft.is_socket() {
                    "a socket"
                } else if ft.is_fifo() {
                    "a fifo"
                } else {
                    "a device"
                };
                bail!(
                    "bind mount {} -> {dest}: {} is {what}, which cannot be shared with a microvm guest",
                    src.display(),
                    p.display()
                );
            };
            entries.push(CarriedEntry {
                path: rel,
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
            });
        }
        Ok(entries)
    }

    fn mount(&mut self, m: &Mount, bundle: &Path) -> Result<Option<proto::Mount>> {
        let dest = m.destination().to_string_lossy().into_owned();
        if !dest.starts_with('/') {
            bail!("mount destination {dest:?} must be absolute");
        }
        let options = m.options().clone().unwrap_or_default();
        let (flags, data, bind_opt) = mount_flags(&options);
        let typ = m.typ().clone().unwrap_or_default();
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kernel = |fstype: &str, source: &str, data: String| {
            Ok(Some(proto::Mount {
                destination: dest.clone(),
                kind: MountKind::Kernel {
                    fstype: fstype.into(),
                    source: source.into(),
                    flags,
                    data,
                },
            }))
        };
        if typ == "bind" || (bind_opt && (typ.is_empty() || typ == "none")) {
            let src = if source.starts_with('/') {
                PathBuf::from(&source)
            } else {
                bundle.join(&source)
            };
            let md = fs::metadata(&src)
                .with_context(|| format!("bind mount source {} (for {dest})", src.display()))?;
            if dest == "/dev/shm" && md.is_dir() {
                // Engines give /dev/shm a host directory only to have a private shm; a guest
                // tmpfs is exactly that.
                return kernel("tmpfs", "shm", "mode=1777,size=65536k".into());
            }
            if dest == "/sys" && fs::canonicalize(&src).is_ok_and(|p| p == Path::new("/sys")) {
                // A rootless spec (`hako spec --rootless`, runc's) binds the host's /sys where a
                // user namespace may not mount sysfs: the intent is a sysfs, and the guest has
                // its own. The host's is never carried in.
                return kernel("sysfs", "sysfs", data);
            }
            let readonly = flags & libc::MS_RDONLY != 0;
            if md.is_dir() && !readonly {
                bail!(
                    "bind mount {} -> {dest}: a microvm guest cannot share a writable host directory; \
                     mount it read-only (\"ro\") to have it copied in",
                    src.display()
                );
            }
            let entries = self.carry(&src, &dest)?;
            let flags = flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
            return Ok(Some(proto::Mount {
                destination: dest,
                kind: MountKind::Carried {
                    entries,
                    readonly,
                    flags,
                },
            }));
        }
        match typ.as_str() {
            "proc" | "sysfs" | "tmpfs" | "devpts" | "mqueue" => {
                let src = if source.is_empty() {
                    typ.clone()
                } else {
                    source
                };
                kernel(&typ, &src, data)
            }
            // The guest mounts its own cgroup2 hierarchy (the workload's limits are the VM's).
            "cgroup" | "cgroup2" => kernel("cgroup2", "cgroup2", String::new()),
            "" => bail!("mount {dest}: no type and not a bind mount"),
            other => bail!(
                "mount {dest}: a {other:?} file system cannot be mounted inside a microvm guest"
            ),
        }
    }
}

/// The process part: the workload's at create, or one `hako exec` adds. Refuses what a guest
/// process cannot get (host LSM labels, I/O priority, scheduler, CPU affinity).
pub fn translate_process(process: &Process) -> Result<ProcessSpec> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        bail!("process.args is empty");
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        bail!("process.apparmorProfile: the microvm backend cannot confine a guest workload with a host AppArmor profile");
    }
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        bail!("process.selinuxLabel: the microvm backend cannot label a guest workload with a host SELinux label");
    }
    if process.io_priority().is_some() {
        bail!("process.ioPriority is not supported by the microvm backend");
    }
    if process.scheduler().is_some() {
        bail!("process.scheduler is not supported by the microvm backend");
    }
    if process.exec_cpu_affinity().is_some() {
        bail!("process.execCPUAffinity is not supported by the microvm backend");
    }
    let user = process.user();
    let mut p = ProcessSpec {
        args,
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().to_string_lossy().into_owned(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        terminal: process.terminal().unwrap_or(false),
        console_size: process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16)),
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        oom_score_adj: process.oom_score_adj(),
        ..Default::default()
    };
    for r in process.rlimits().iter().flatten() {
        let rl = hako_linux::process::Rlimit::from_spec(r)?;
        p.rlimits.push(proto::Rlimit {
            resource: rl.resource,
            soft: rl.soft,
            hard: rl.hard,
        });
    }
    if let Some(c) = process.capabilities() {
        p.capabilities = Some(proto::Capabilities {
            bounding: cap_numbers(c.bounding())?,
            effective: cap_numbers(c.effective())?,
            inheritable: cap_numbers(c.inheritable())?,
            permitted: cap_numbers(c.permitted())?,
            ambient: cap_numbers(c.ambient())?,
        });
    }
    Ok(p)
}

/// Refuse what the guest cannot honour, and build the agent's config. With a `builder`, bind
/// mount contents are read into its blob area; without one (from `check`), only validated.
pub fn translate(
    spec: &Spec,
    bundle: &Path,
    builder: Option<&mut ConfigBuilder>,
) -> Result<GuestConfig> {
    let mut tr = Translator {
        builder,
        carried: 0,
    };
    let process = spec
        .process()
        .as_ref()
        .context("config.json has no process")?;
    if spec.domainname().as_ref().is_some_and(|s| !s.is_empty()) {
        bail!("domainname is not supported by the microvm backend");
    }
    /// The user namespace of `hako spec --rootless`: each mapping names one id, the caller's
    /// own. On the host the whole VM runs as the caller, so that mapping holds as it is; the
    /// guest's ids stay the guest kernel's.
    fn maps_only_the_caller(linux: &oci_spec::runtime::Linux) -> bool {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let ok = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>, id: u32| {
            maps.iter()
                .flatten()
                .all(|m| m.size() == 1 && m.host_id() == id)
        };
        ok(linux.uid_mappings(), uid) && ok(linux.gid_mappings(), gid)
    }
    let mut cfg = GuestConfig {
        process: translate_process(process)?,
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        ..Default::default()
    };

    if let Some(linux) = spec.linux() {
        for ns in linux.namespaces().iter().flatten() {
            if let Some(p) = ns
                .path()
                .as_ref()
                .filter(|_| ns.typ() != LinuxNamespaceType::Network)
            {
                // A network namespace path is the engine's network, which the backend hands to
                // the guest (crate::net); other host namespaces cannot be joined from a VM.
                bail!(
                    "linux.namespaces: a microvm guest cannot join the host's {:?} namespace {} (the VM has its own)",
                    ns.typ(),
                    p.display()
                );
            }
            if ns.typ() == LinuxNamespaceType::User && !maps_only_the_caller(linux) {
                bail!("linux.uidMappings/gidMappings: a microvm guest cannot take host id mappings (the VM runs as the caller on the host; only the rootless mapping of container ids onto the caller's own uid and gid is accepted)");
            }
        }
        for d in linux.devices().iter().flatten() {
            let p = d.path().to_string_lossy();
            if !DEFAULT_DEVICES.contains(&p.as_ref()) {
                bail!("linux.devices: {p}: host devices cannot be passed into a microvm guest");
            }
        }
        if let Some(sc) = linux.seccomp() {
            // Compiled on the host with the shared compiler, hako_linux::seccomp (same arch as the
            // guest); the agent installs the programs right before exec.
            let compiled = hako_linux::seccomp::compile(sc).context("linux.seccomp")?;
            let mut programs = vec![];
            for f in &compiled.filters {
                let bytes: Vec<u8> = f
                    .iter()
                    .flat_map(|i| {
                        let mut b = [0u8; 8];
                        b[..2].copy_from_slice(&i.code.to_ne_bytes());
                        b[2] = i.jt;
                        b[3] = i.jf;
                        b[4..].copy_from_slice(&i.k.to_ne_bytes());
                        b
                    })
                    .collect();
                programs.push(match tr.builder.as_deref_mut() {
                    Some(b) => b.add_blob(&bytes),
                    None => proto::Blob {
                        offset: 0,
                        len: bytes.len() as u64,
                    },
                });
            }
            if !programs.is_empty() {
                cfg.seccomp = Some(proto::Seccomp {
                    programs,
                    flags: compiled.flags as u64,
                });
            }
        }
        if linux.mount_label().as_ref().is_some_and(|s| !s.is_empty()) {
            bail!("linux.mountLabel is not supported by the microvm backend");
        }
        if linux.intel_rdt().is_some() {
            bail!("linux.intelRdt is not supported by the microvm backend");
        }
        if linux.personality().is_some() {
            bail!("linux.personality is not supported by the microvm backend");
        }
        if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
            bail!("linux.timeOffsets is not supported by the microvm backend");
        }
        if linux.memory_policy().is_some() {
            bail!("linux.memoryPolicy is not supported by the microvm backend");
        }
        if linux.net_devices().as_ref().is_some_and(|n| !n.is_empty()) {
            bail!("linux.netDevices: a microvm guest has no network devices");
        }
        if let Some(r) = linux.resources() {
            // linux.resources.cpu and blockIO are honoured on the host: the vCPUs and the disk
            // I/O are threads of the VM process, which lives in the sandbox's host cgroup.
            if let Some(m) = r.memory() {
                if m.disable_oom_killer() == Some(true) {
                    bail!("linux.resources.memory.disableOOMKiller is not supported by the microvm backend");
                }
                // memory.kernel is accepted and ignored, on every backend (the front end warns).
                if m.kernel_tcp().is_some() {
                    bail!(
                        "linux.resources.memory.kernelTCP is not supported by the microvm backend"
                    );
                }
            }
            if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
                bail!("linux.resources.hugepageLimits is not supported by the microvm backend");
            }
            if r.network().is_some() {
                bail!("linux.resources.network: a microvm guest has no network");
            }
            if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
                bail!("linux.resources.rdma is not supported by the microvm backend");
            }
            if r.unified().as_ref().is_some_and(|h| !h.is_empty()) {
                bail!("linux.resources.unified is not supported by the microvm backend");
            }
            if let Some(p) = r.pids() {
                if p.limit() > 0 {
                    cfg.pids_limit = Some(p.limit());
                }
            }
        }
        cfg.masked_paths = linux.masked_paths().clone().unwrap_or_default();
        cfg.readonly_paths = linux.readonly_paths().clone().unwrap_or_default();
        cfg.sysctl = linux
            .sysctl()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
    }
    for m in spec.mounts().iter().flatten() {
        if let Some(gm) = tr.mount(m, bundle)? {
            cfg.mounts.push(gm);
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Spec {
        Spec::default()
    }

    #[test]
    fn default_spec_translates() {
        let s = base();
        let cfg = translate(&s, Path::new("/nonexistent"), None).unwrap();
        assert_eq!(cfg.process.args, vec!["sh".to_string()]);
        let dests: Vec<_> = cfg.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert!(
            dests.contains(&"/proc") && dests.contains(&"/dev/pts"),
            "{dests:?}"
        );
        assert!(cfg
            .process
            .rlimits
            .iter()
            .any(|r| r.resource == libc::RLIMIT_NOFILE));
        let caps = cfg.process.capabilities.unwrap();
        assert!(
            caps.bounding.contains(&5),
            "CAP_KILL (5) is in the default set"
        );
        assert!(
            !caps.bounding.contains(&21),
            "CAP_SYS_ADMIN is not in the default set"
        );
    }

    #[test]
    fn refusals_are_clear() {
        let dir = std::env::temp_dir().join(format!("hako-guest-{}", std::process::id()));
        fs::create_dir_all(dir.join("data")).unwrap();
        fs::write(dir.join("data/f"), b"x").unwrap();
        let with_mount = |m: Mount| {
            let mut s = base();
            let mut ms = s.mounts().clone().unwrap();
            ms.push(m);
            s.set_mounts(Some(ms));
            s
        };
        let rw_dir = oci_spec::runtime::MountBuilder::default()
            .destination("/data")
            .typ("bind")
            .source(dir.join("data"))
            .options(vec!["rbind".to_string(), "rw".to_string()])
            .build()
            .unwrap();
        let e = format!(
            "{:#}",
            translate(&with_mount(rw_dir), &dir, None).unwrap_err()
        );
        assert!(e.contains("cannot share a writable host directory"), "{e}");
        let nfs = oci_spec::runtime::MountBuilder::default()
            .destination("/n")
            .typ("nfs")
            .source("x:/y")
            .build()
            .unwrap();
        let e = format!("{:#}", translate(&with_mount(nfs), &dir, None).unwrap_err());
        assert!(e.contains("\"nfs\" file system cannot be mounted"), "{e}");

        // A read-only directory and a file are carried in, with their bytes.
        let ro_dir = oci_spec::runtime::MountBuilder::default()
            .destination("/data")
            .typ("bind")
            .source(dir.join("data"))
            .options(vec!["rbind".to_string(), "ro".to_string()])
            .build()
            .unwrap();
        let mut b = ConfigBuilder::new();
        let cfg = translate(&with_mount(ro_dir), &dir, Some(&mut b)).unwrap();
        let m = cfg.mounts.last().unwrap();
        match &m.kind {
            MountKind::Carried {
                entries, readonly, ..
            } => {
                assert!(readonly);
                assert_eq!(entries.len(), 2);
                assert_eq!(entries[1].path, "f");
                assert!(matches!(entries[1].kind, EntryKind::File { data } if data.len == 1));
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(b.blob_bytes(), 1);

        let mut s = base();
        let mut linux = s.linux().clone().unwrap();
        let mut nss = linux.namespaces().clone().unwrap();
        nss.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Ipc)
                .path("/run/ipcns/x")
                .build()
                .unwrap(),
        );
        linux.set_namespaces(Some(nss));
        s.set_linux(Some(linux));
        let e = format!("{:#}", translate(&s, &dir, None).unwrap_err());
        assert!(e.contains("cannot join the host's"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
