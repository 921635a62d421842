//! Namespaces: which to create, which to join, in which order; the raw clone.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType as T, Spec};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// `/proc/PID/ns/<name>` and the clone flag for each type, in the order they are joined
/// (user first: it grants the capabilities to join the others; mnt last: it changes paths).
pub const ORDER: &[(T, &str, libc::c_int)] = &[
    (T::User, "user", libc::CLONE_NEWUSER),
    (T::Ipc, "ipc", libc::CLONE_NEWIPC),
    (T::Uts, "uts", libc::CLONE_NEWUTS),
    (T::Network, "net", libc::CLONE_NEWNET),
    (T::Pid, "pid", libc::CLONE_NEWPID),
    (T::Cgroup, "cgroup", libc::CLONE_NEWCGROUP),
    (T::Mount, "mnt", libc::CLONE_NEWNS),
];

/// The namespace part of a spec, resolved.
#[derive(Debug, Clone, Default)]
pub struct NsPlan {
    /// Flags for clone(): the new namespaces except cgroup (unshared after the cgroup join).
    pub clone_flags: libc::c_int,
    pub new_cgroup: bool,
    pub new_user: bool,
    pub new_mount: bool,
    pub new_uts: bool,
    /// (path, flag), in join order.
    pub joins: Vec<(PathBuf, libc::c_int)>,
    pub uid_map: String,
    pub gid_map: String,
}

impl NsPlan {
    pub fn has(&self, flag: libc::c_int) -> bool {
        self.clone_flags & flag != 0
            || (flag == libc::CLONE_NEWCGROUP && self.new_cgroup)
            || self.joins.iter().any(|(_, f)| *f == flag)
    }
}

fn map_text(m: &[LinuxIdMapping]) -> String {
    m.iter()
        .map(|e| format!("{} {} {}\n", e.container_id(), e.host_id(), e.size()))
        .collect()
}

pub fn plan(spec: &Spec) -> Result<NsPlan> {
    let mut p = NsPlan::default();
    let Some(linux) = spec.linux() else {
        return Ok(p);
    };
    let nss = linux.namespaces().clone().unwrap_or_default();
    for (i, ns) in nss.iter().enumerate() {
        if nss[..i].iter().any(|o| o.typ() == ns.typ()) {
            bail!("namespace {} is listed twice", ns.typ());
        }
    }
    for (typ, _, flag) in ORDER {
        let Some(ns) = nss.iter().find(|n| n.typ() == *typ) else {
            continue;
        };
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => p.joins.push((path.clone(), *flag)),
            _ => {
                if *typ == T::Cgroup {
                    p.new_cgroup = true;
                } else {
                    p.clone_flags |= flag;
                }
            }
        }
    }
    if let Some(ns) = nss
        .iter()
        .find(|n| !ORDER.iter().any(|(t, _, _)| *t == n.typ()))
    {
        bail!(
            "namespace type {} is not supported by the container backend",
            ns.typ()
        );
    }
    p.new_user = p.clone_flags & libc::CLONE_NEWUSER != 0;
    p.new_mount = p.clone_flags & libc::CLONE_NEWNS != 0;
    p.new_uts = p.clone_flags & libc::CLONE_NEWUTS != 0;
    let uid = linux.uid_mappings().clone().unwrap_or_default();
    let gid = linux.gid_mappings().clone().unwrap_or_default();
    if p.new_user {
        if uid.is_empty() || gid.is_empty() {
            bail!("a new user namespace needs linux.uidMappings and linux.gidMappings");
        }
    } else if !uid.is_empty() || !gid.is_empty() {
        bail!("linux.uidMappings/gidMappings are set but no new user namespace is requested");
    }
    p.uid_map = map_text(&uid);
    p.gid_map = map_text(&gid);
    Ok(p)
}

/// Open every namespace to join (before any of them is joined: paths change meaning).
pub fn open_joins(
    joins: &[(PathBuf, libc::c_int)],
) -> Result<Vec<(OwnedFd, libc::c_int, PathBuf)>> {
    joins
        .iter()
        .map(|(p, f)| {
            let fd = nix::fcntl::open(
                p,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .with_context(|| format!("opening namespace {}", p.display()))?;
            Ok((fd, *f, p.clone()))
        })
        .collect()
}

pub fn setns(fd: &OwnedFd, flag: libc::c_int, what: &std::path::Path) -> Result<()> {
    // SAFETY: setns on an fd we own.
    if unsafe { libc::setns(fd.as_raw_fd(), flag) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("joining namespace {}", what.display()));
    }
    Ok(())
}

/// Bring up `lo` in the (new) network namespace we are in, as runc and crun do: without it
/// 127.0.0.1 is unreachable under `--network none` and in a pod's namespace. Hand-written:
/// neither nix nor libc wraps SIOCSIFFLAGS, and a netlink crate would be a dependency for one
/// flag.
pub fn loopback_up() -> Result<()> {
    // SAFETY: a datagram socket only to carry the interface ioctls; closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for the loopback ioctl");
    }
    // SAFETY: a fresh descriptor.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS with a valid ifreq.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(std::io::Error::last_os_error()).context("reading the flags of lo");
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(std::io::Error::last_os_error()).context("bringing lo up");
        }
    }
    Ok(())
}

/// fork-like clone (no new stack: the child runs on a copy of ours). Returns 0 in the child.
pub fn clone(flags: libc::c_int) -> Result<i32> {
    // SAFETY: without CLONE_VM the child gets a copy of the address space, as with fork. The
    // caller is single-threaded, so no lock is held by another thread at this point.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("clone");
    }
    Ok(r as i32)
}

/// Parent side: write the id maps of a child in a new user namespace. Root writes them
/// directly. Rootless, a map of only our own id is written directly (after denying setgroups,
/// which the kernel requires); anything wider goes through the setuid helpers newuidmap and
/// newgidmap (package uidmap), which check /etc/subuid and /etc/subgid.
pub fn write_id_maps(pid: i32, uid_map: &str, gid_map: &str, rootless: bool) -> Result<()> {
    let direct = |file: &str, map: &str| {
        std::fs::write(format!("/proc/{pid}/{file}"), map)
            .with_context(|| format!("writing {file} {:?}", map.trim()))
    };
    if !rootless {
        direct("uid_map", uid_map)?;
        return direct("gid_map", gid_map);
    }
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let only_self = |map: &str, id: u32| {
        let lines: Vec<&str> = map.lines().collect();
        lines.len() == 1
            && lines[0].split_whitespace().nth(1) == Some(&id.to_string())
            && lines[0].ends_with(" 1")
    };
    if only_self(uid_map, uid) && only_self(gid_map, gid) {
        direct("setgroups", "deny")?;
        direct("uid_map", uid_map)?;
        return direct("gid_map", gid_map);
    }
    for (tool, map) in [("newuidmap", uid_map), ("newgidmap", gid_map)] {
        let mut cmd = std::process::Command::new(tool);
        cmd.arg(pid.to_string());
        for l in map.lines() {
            cmd.args(l.split_whitespace());
        }
        let out = cmd.output().with_context(|| {
            format!("rootless: mapping more than our own id needs {tool} (package uidmap)")
        })?;
        if !out.status.success() {
            bail!(
                "{tool} {}: {}",
                map.trim().replace('\n', ", "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// The namespaces of `pid` that differ from ours, opened, in join order.
pub fn of_process(pid: i32) -> Result<Vec<(OwnedFd, libc::c_int, PathBuf)>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = vec![];
    for (_, name, flag) in ORDER {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let Ok(t) = std::fs::metadata(&theirs) else {
            continue;
        };
        let Ok(o) = std::fs::metadata(format!("/proc/self/ns/{name}")) else {
            continue;
        };
        if t.ino() == o.ino() && t.dev() == o.dev() {
            continue;
        }
        let fd = nix::fcntl::open(
            &theirs,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("opening {}", theirs.display()))?;
        out.push((fd, *flag, theirs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(linux: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({"ociVersion": "1.2.0", "linux": linux})).unwrap()
    }

    #[test]
    fn new_and_joined_namespaces() {
        let p = plan(&spec(serde_json::json!({"namespaces": [
            {"type": "mount"}, {"type": "cgroup"}, {"type": "network", "path": "/run/netns/x"},
            {"type": "pid"}, {"type": "user", "path": "/proc/1/ns/user"}
        ]})))
        .unwrap();
        assert_eq!(p.clone_flags, libc::CLONE_NEWNS | libc::CLONE_NEWPID);
        assert!(p.new_cgroup && p.new_mount && !p.new_user);
        // user is joined first, whatever the spec's order.
        assert_eq!(
            p.joins[0],
            (PathBuf::from("/proc/1/ns/user"), libc::CLONE_NEWUSER)
        );
        assert_eq!(
            p.joins[1],
            (PathBuf::from("/run/netns/x"), libc::CLONE_NEWNET)
        );
        assert!(
            p.has(libc::CLONE_NEWNET) && p.has(libc::CLONE_NEWCGROUP) && !p.has(libc::CLONE_NEWUTS)
        );
    }

    #[test]
    fn user_namespace_maps() {
        let p = plan(&spec(serde_json::json!({
            "namespaces": [{"type": "user"}, {"type": "mount"}],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}, {"containerID": 1, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
        })))
        .unwrap();
        assert!(p.new_user);
        assert_eq!(p.uid_map, "0 1000 1\n1 100000 65536\n");
        assert_eq!(p.gid_map, "0 1000 1\n");
        let e = plan(&spec(serde_json::json!({"namespaces": [{"type": "user"}]}))).unwrap_err();
        assert!(e.to_string().contains("uidMappings"), "{e}");
        let e = plan(&spec(serde_json::json!({
            "namespaces": [{"type": "mount"}],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
        })))
        .unwrap_err();
        assert!(e.to_string().contains("no new user namespace"), "{e}");
        let e = plan(&spec(
            serde_json::json!({"namespaces": [{"type": "pid"}, {"type": "pid"}]}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = plan(&spec(serde_json::json!({"namespaces": [{"type": "time"}]}))).unwrap_err();
        assert!(e.to_string().contains("time"), "{e}");
    }
}
