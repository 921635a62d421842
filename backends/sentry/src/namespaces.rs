//! The namespaces the sentry takes from the spec. The sandbox's sockets are the sentry's own host
//! sockets (syscalls/socket/), so the network namespace the sentry sits in *is* the sandbox's
//! network: when `linux.namespaces` names one by path (an engine's pod, a netns the caller
//! made), the sentry joins it before it builds anything; when it asks for a new one, the sentry
//! makes one with its loopback up. The same holds for the IPC, UTS and cgroup namespaces. A path
//! for a namespace the sentry makes itself by design (mount, pid, user, time) is refused: the
//! sandbox would silently not be in the one the spec names.

use anyhow::{bail, Context, Result};
use hako_contract::Spec;
use oci_spec::runtime::LinuxNamespaceType as T;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The kinds the sentry can join by path, with their clone flag.
const JOINABLE: &[(T, i32, &str)] = &[
    (T::Network, libc::CLONE_NEWNET, "network"),
    (T::Ipc, libc::CLONE_NEWIPC, "ipc"),
    (T::Uts, libc::CLONE_NEWUTS, "uts"),
    (T::Cgroup, libc::CLONE_NEWCGROUP, "cgroup"),
];

fn namespaces(spec: &Spec) -> Vec<(T, Option<std::path::PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

/// Refuse, in one line, a namespace path the sentry cannot honour.
pub fn check(spec: &Spec) -> Result<()> {
    for (typ, path) in namespaces(spec) {
        let Some(p) = path else { continue };
        if !JOINABLE.iter().any(|j| j.0 == typ) {
            bail!(
                "the sentry backend cannot join the {typ} namespace at {}: it makes the sandbox's own (only network, ipc, uts and cgroup namespaces can be joined by path)",
                p.display()
            );
        }
    }
    Ok(())
}

/// Join the namespaces the spec names by path (call before anything is built, in the caller's
/// user namespace, which owns them). Returns the clone flags of the ones still to be made new.
pub fn join(spec: &Spec) -> Result<i32> {
    check(spec)?;
    let ns = namespaces(spec);
    // Network, IPC and UTS are always the sandbox's own: new unless the spec names one (a
    // cgroup namespace only when it does).
    let mut fresh = libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    for (typ, path) in ns {
        let Some(&(_, flag, name)) = JOINABLE.iter().find(|j| j.0 == typ) else {
            continue;
        };
        let Some(p) = path else {
            continue;
        };
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?;
        // SAFETY: open a namespace file by the path the spec gives.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            bail!(
                "opening the {name} namespace {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: setns with the type the spec claims (the kernel checks the file is one).
        if unsafe { libc::setns(fd.as_raw_fd(), flag) } != 0 {
            bail!(
                "joining the {name} namespace {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            );
        }
        fresh &= !flag;
    }
    Ok(fresh)
}

/// Set up a network namespace the sentry just made: its loopback up (a new one has it down, and
/// the sandbox's 127.0.0.1 would be unreachable), and every port bindable without a host
/// capability (`net.ipv4.ip_unprivileged_port_start=0`, as Docker sets it for containers): the
/// sentry, which makes the sandbox's sockets, holds none once the workload runs, and the
/// sandbox's own CAP_NET_BIND_SERVICE is checked by the sentry (syscalls/socket/). A
/// namespace joined by path is the engine's: the sentry changes nothing in it.
pub fn new_netns_setup() -> Result<()> {
    {
        // Best effort: where /proc/sys is read-only (the sentry inside a container, rootless
        // podman) the sysctl stays as it is, and a bind below it is refused by the host (EACCES)
        // even with the sandbox's CAP_NET_BIND_SERVICE.
        use std::io::Write;
        if let Ok(f) =
            crate::hostproc::open("sys/net/ipv4/ip_unprivileged_port_start", libc::O_WRONLY)
        {
            let _ = std::fs::File::from(f).write_all(b"0");
        }
    }
    // SAFETY: a datagram socket for the interface ioctls.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for the loopback ioctl");
    }
    // SAFETY: a fresh descriptor.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: zeroed ifreq with the name "lo".
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        ifr.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: ioctls with our ifreq.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            return Err(std::io::Error::last_os_error()).context("SIOCGIFFLAGS lo");
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as i16;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) != 0 {
            return Err(std::io::Error::last_os_error()).context("bringing lo up");
        }
    }
    Ok(())
}
