//! From an OCI spec to what the wasm host process will do: [`Plan`]. Everything a config.json
//! can say is either honoured here, refused with a clear error, or (for container-only
//! concepts that a WASI module cannot observe) accepted as not applicable. docs/backends/wasm.md
//! lists which is which.

use crate::knobs::{self, Knobs};
use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Mount types that describe the kernel's own view (procfs, sysfs, ...). A WASI module has no
/// way to use them, and exposing the host's /proc to it would be a leak: they are not made.
pub const NOT_APPLICABLE_MOUNTS: &[&str] = &[
    "proc",
    "sysfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "securityfs",
];

/// A host directory the module sees at `guest` (the rootfs as `/`, directory bind mounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub ro: bool,
}

/// A mount made in the host process's private mount namespace, on a path inside the rootfs
/// (file bind mounts such as podman's /etc/hosts, and tmpfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsMount {
    BindFile {
        source: PathBuf,
        dest: String,
        ro: bool,
    },
    Tmpfs {
        dest: String,
        data: String,
        flags: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub rootfs: PathBuf,
    pub rootfs_ro: bool,
    /// The entry module, as a path inside the rootfs (absolute, not yet resolved for symlinks).
    pub entry: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub preopens: Vec<Preopen>,
    pub ns_mounts: Vec<NsMount>,
    pub terminal: bool,
    pub memory_limit: Option<u64>,
    /// CFS quota and period, in µs.
    pub cpu: Option<(u64, u64)>,
    pub knobs: Knobs,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<hako_linux::process::Rlimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    /// Capability sets for the host process, when the spec gives them.
    pub caps: Option<crate::caps::CapSets>,
}

fn opt_has(options: &[String], want: &str) -> bool {
    options.iter().any(|o| o == want)
}

/// Normalise an absolute guest path ("/a/./b//c" → "/a/b/c"); refuse "..".
fn guest_path(p: &Path, what: &str) -> Result<String> {
    if !p.is_absolute() {
        bail!("{what} {:?} must be an absolute path", p.display());
    }
    let mut out = String::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => {
                out.push('/');
                out.push_str(
                    s.to_str()
                        .with_context(|| format!("{what} {:?} is not UTF-8", p.display()))?,
                );
            }
            Component::ParentDir => bail!("{what} {:?} must not contain \"..\"", p.display()),
            Component::Prefix(_) => bail!("{what} {:?} is not a Linux path", p.display()),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn under(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Open `path` (absolute, inside the rootfs) with symlinks resolved as if `rootfs` were `/`.
pub fn open_in_root(root: &OwnedFd, path: &str, flags: nix::fcntl::OFlag) -> Result<OwnedFd> {
    hako_linux::inroot::open(root.as_fd(), Path::new(path), flags.bits(), 0).map_err(|e| {
        match e.raw_os_error() {
            Some(n) => anyhow::anyhow!("{path}: {}", nix::errno::Errno::from_raw(n).desc()),
            None => anyhow::anyhow!("{path}: {e}"),
        }
    })
}

pub fn open_dir(path: &Path) -> Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("opening {}", path.display()))
}

/// Find the entry module: `process.args[0]`, absolute, relative to `cwd`, or a bare name
/// searched in the spec's PATH as execvp would. Returns its absolute path inside the rootfs.
fn find_entry(rootfs: &Path, arg0: &str, cwd: &str, env: &[(String, String)]) -> Result<String> {
    let root = open_dir(rootfs).with_context(|| format!("rootfs {}", rootfs.display()))?;
    let candidates: Vec<String> = if arg0.starts_with('/') {
        vec![arg0.to_string()]
    } else if arg0.contains('/') {
        vec![format!("{}/{}", cwd.trim_end_matches('/'), arg0)]
    } else {
        // The spec's PATH only: with none, a bare name is not found (as runc and crun).
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or("", |(_, v)| v.as_str());
        path.split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{}", d.trim_end_matches('/'), arg0))
            .collect()
    };
    for c in &candidates {
        if let Ok(fd) = open_in_root(&root, c, nix::fcntl::OFlag::O_RDONLY) {
            if File::from(fd).metadata().is_ok_and(|m| m.is_file()) {
                return Ok(c.clone());
            }
        }
    }
    if !arg0.contains('/') {
        bail!(
            "exec: {arg0:?}: executable file not found in $PATH (the entry module, process.args[0]; looked at {})",
            if candidates.is_empty() {
                "nothing: process.env has no PATH".to_string()
            } else {
                candidates.join(", ")
            }
        );
    }
    bail!(
        "entry module {arg0:?} (process.args[0]) not found in the rootfs {} (looked at {})",
        rootfs.display(),
        candidates.join(", ")
    )
}

/// Read the first bytes of the entry and insist on the wasm magic.
pub fn read_entry(rootfs: &Path, entry: &str) -> Result<Vec<u8>> {
    let root = open_dir(rootfs)?;
    let fd = open_in_root(&root, entry, nix::fcntl::OFlag::O_RDONLY)
        .context("opening the entry module")?;
    let mut f = File::from(fd);
    let mut bytes = Vec::with_capacity(f.metadata().map(|m| m.len() as usize).unwrap_or(0));
    f.read_to_end(&mut bytes)
        .with_context(|| format!("reading the entry module {entry}"))?;
    if !bytes.starts_with(hako_contract::formats::WASM_MAGIC) {
        bail!("{entry} (process.args[0]) is not a WebAssembly module: it does not start with the \\0asm magic");
    }
    Ok(bytes)
}

fn check_magic(rootfs: &Path, entry: &str) -> Result<()> {
    let root = open_dir(rootfs)?;
    let fd = open_in_root(&root, entry, nix::fcntl::OFlag::O_RDONLY)
        .context("opening the entry module")?;
    if !hako_contract::formats::is_wasm(File::from(fd)) {
        bail!("{entry} (process.args[0]) is not a WebAssembly module: it does not start with the \\0asm magic");
    }
    Ok(())
}

/// Build the plan, refusing whatever the wasm backend cannot honour. Changes nothing on the
/// host. `bundle` resolves a relative `root.path`.
pub fn plan(spec: &Spec, bundle: &Path) -> Result<Plan> {
    let knobs = knobs::parse(spec.annotations().as_ref())?;
    let process = spec
        .process()
        .as_ref()
        .context("config.json has no process")?;
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first().cloned() else {
        bail!("process.args is empty: the wasm backend needs the module path as args[0]")
    };
    let root = spec.root().as_ref().context("config.json has no root")?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        bail!("root.path {} is not a directory", rootfs.display());
    }
    // However it is spelt ("/", "/../", a symlink to /): the host's root is never a sandbox's.
    if std::fs::canonicalize(&rootfs).is_ok_and(|p| p == Path::new("/")) {
        bail!(
            "root.path {} is the host's root directory, which the wasm backend refuses to preopen",
            root.path().display()
        );
    }
    let mut env = Vec::new();
    for kv in process.env().iter().flatten() {
        match kv.split_once('=') {
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None => bail!("process.env entry {kv:?} is not KEY=VALUE"),
        }
    }
    let cwd = guest_path(process.cwd(), "process.cwd")?;

    // Settings that would be a real loss of isolation or function to drop: refused.
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        bail!("process.apparmorProfile is not supported by the wasm backend");
    }
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        bail!("process.selinuxLabel is not supported by the wasm backend");
    }
    if process.io_priority().is_some() {
        bail!("process.ioPriority is not supported by the wasm backend");
    }
    if process.scheduler().is_some() {
        bail!("process.scheduler is not supported by the wasm backend");
    }
    if process.exec_cpu_affinity().is_some() {
        bail!("process.execCPUAffinity is not supported by the wasm backend");
    }
    if process.console_size().is_some() && process.terminal() != Some(true) {
        // harmless, but say nothing: runc accepts it too
    }
    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let rl = hako_linux::process::Rlimit::from_spec(r)?;
        let name = hako_linux::process::rlimit_name(r.typ());
        if r.soft() > r.hard() {
            bail!(
                "rlimit {name}: soft limit {} is above the hard limit {}",
                r.soft(),
                r.hard()
            );
        }
        rlimits.push(rl);
    }
    let caps = process
        .capabilities()
        .as_ref()
        .map(crate::caps::CapSets::from_spec)
        .transpose()?;

    let mut memory_limit = None;
    let mut cpu = None;
    if let Some(linux) = spec.linux() {
        if linux.intel_rdt().is_some() {
            bail!("linux.intelRdt is not supported by the wasm backend");
        }
        if linux.personality().is_some() {
            bail!("linux.personality is not supported by the wasm backend");
        }
        if linux.memory_policy().is_some() {
            bail!("linux.memoryPolicy is not supported by the wasm backend");
        }
        if linux.time_offsets().is_some() {
            bail!(
                "linux.timeOffsets is not supported by the wasm backend (it has no time namespace)"
            );
        }
        if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            bail!("linux.netDevices is not supported by the wasm backend (a WASI module has no network interfaces)");
        }
        for p in linux
            .masked_paths()
            .iter()
            .flatten()
            .chain(linux.readonly_paths().iter().flatten())
        {
            // /proc and /sys are never given to a module; anything else we would have to honour.
            if !(under(p, "/proc") || under(p, "/sys")) {
                bail!("masked/readonly path {p:?} is not supported by the wasm backend (only /proc and /sys paths, which a module never sees)");
            }
        }
        if let Some(res) = linux.resources() {
            if let Some(m) = res.memory() {
                if let Some(l) = m.limit().filter(|l| *l > 0) {
                    memory_limit = Some(l as u64);
                }
            }
            if let Some(c) = res.cpu() {
                if let Some(q) = c.quota().filter(|q| *q > 0) {
                    let period = c.period().filter(|p| *p > 0).unwrap_or(100_000);
                    cpu = Some((q as u64, period));
                }
            }
        }
    }

    let mut preopens = vec![Preopen {
        host: rootfs.clone(),
        guest: "/".into(),
        ro: root.readonly().unwrap_or(false),
    }];
    let mut ns_mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = guest_path(m.destination(), "mount destination")?;
        let typ = m.typ().clone().unwrap_or_default();
        let options: Vec<String> = m.options().clone().unwrap_or_default();
        let is_bind = typ == "bind" || opt_has(&options, "bind") || opt_has(&options, "rbind");
        let ro = opt_has(&options, "ro");
        if is_bind {
            let source = m
                .source()
                .clone()
                .with_context(|| format!("bind mount on {dest} has no source"))?;
            let source = if source.is_absolute() {
                source
            } else {
                bundle.join(source)
            };
            let md = std::fs::metadata(&source)
                .with_context(|| format!("bind mount source {}", source.display()))?;
            if md.is_dir() {
                if dest == "/" {
                    bail!("a bind mount on / is not supported by the wasm backend");
                }
                preopens.push(Preopen {
                    host: source,
                    guest: dest,
                    ro,
                });
            } else if md.is_file() {
                ns_mounts.push(NsMount::BindFile { source, dest, ro });
            } else {
                bail!("bind mount source {} is neither a file nor a directory (devices and sockets are not supported by the wasm backend)", source.display());
            }
        } else if typ == "tmpfs" {
            let (flags, data) = tmpfs_options(&options)?;
            ns_mounts.push(NsMount::Tmpfs { dest, data, flags });
        } else if NOT_APPLICABLE_MOUNTS.contains(&typ.as_str()) {
            // Not made: see NOT_APPLICABLE_MOUNTS.
        } else {
            bail!("mount of type {typ:?} on {dest} is not supported by the wasm backend (bind, tmpfs, and the kernel filesystems {} are)", NOT_APPLICABLE_MOUNTS.join(", "));
        }
    }
    // A mount made in the rootfs below a directory preopened from elsewhere would be hidden by
    // that preopen: refuse rather than surprise.
    for nm in &ns_mounts {
        let d = match nm {
            NsMount::BindFile { dest, .. } | NsMount::Tmpfs { dest, .. } => dest,
        };
        if let Some(p) = preopens.iter().skip(1).find(|p| under(d, &p.guest)) {
            bail!("mount on {d} lies inside the bind-mounted directory {}: not supported by the wasm backend", p.guest);
        }
    }

    let entry = find_entry(&rootfs, &arg0, &cwd, &env)?;
    check_magic(&rootfs, &entry)?;

    let user = process.user();
    Ok(Plan {
        rootfs,
        rootfs_ro: root.readonly().unwrap_or(false),
        entry,
        args,
        env,
        cwd,
        preopens,
        ns_mounts,
        terminal: process.terminal().unwrap_or(false),
        memory_limit,
        cpu,
        knobs,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        rlimits,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        oom_score_adj: process.oom_score_adj(),
        caps,
    })
}

/// Split tmpfs options into mount flags and data (size=, mode=, ...).
fn tmpfs_options(options: &[String]) -> Result<(u64, String)> {
    let mut flags = 0u64;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" | "defaults" | "private" | "rprivate" | "slave" | "rslave" | "shared"
            | "rshared" | "tmpcopyup" | "notmpcopyup" => {}
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "strictatime" => flags |= libc::MS_STRICTATIME,
            "noatime" => flags |= libc::MS_NOATIME,
            "relatime" => flags |= libc::MS_RELATIME,
            "nodiratime" => flags |= libc::MS_NODIRATIME,
            "sync" => flags |= libc::MS_SYNCHRONOUS,
            o if o.starts_with("size=")
                || o.starts_with("mode=")
                || o.starts_with("nr_inodes=")
                || o.starts_with("uid=")
                || o.starts_with("gid=") =>
            {
                data.push(o.to_string())
            }
            other => bail!("tmpfs option {other:?} is not supported by the wasm backend"),
        }
    }
    Ok((flags, data.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_normalised_and_confined() {
        assert_eq!(guest_path(Path::new("/a/./b//c"), "x").unwrap(), "/a/b/c");
        assert_eq!(guest_path(Path::new("/"), "x").unwrap(), "/");
        assert!(guest_path(Path::new("/a/../b"), "x").is_err());
        assert!(guest_path(Path::new("rel"), "x").is_err());
        assert!(under("/data/x", "/data"));
        assert!(!under("/database", "/data"));
        assert!(under("/anything", "/"));
    }

    /// A bare entry name is looked up in process.env's PATH only (as runc and crun): with no
    /// PATH, or an empty one, it is not found even where /bin holds it.
    #[test]
    fn bare_entry_needs_a_path_in_the_process_env() {
        let root = std::env::temp_dir().join(format!("hako-wasm-plan-{}", std::process::id()));
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/app.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let env = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        for e in [env(&[]), env(&[("TERM", "xterm")]), env(&[("PATH", "")])] {
            let err = find_entry(&root, "app.wasm", "/", &e).unwrap_err();
            assert!(
                format!("{err}").contains("executable file not found in $PATH"),
                "{e:?}: {err}"
            );
        }
        let found = find_entry(&root, "app.wasm", "/", &env(&[("PATH", "/usr/bin:/bin")]));
        assert_eq!(found.unwrap(), "/bin/app.wasm");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn tmpfs_options_split() {
        let (f, d) =
            tmpfs_options(&["nosuid".into(), "mode=755".into(), "size=65536k".into()]).unwrap();
        assert_eq!(f, libc::MS_NOSUID);
        assert_eq!(d, "mode=755,size=65536k");
        assert!(tmpfs_options(&["weird".into()]).is_err());
    }
}
