//! `hako exec` into a running sentry sandbox.
//!
//! Only the sentry may create tasks in its kernel, and a new task must end up exactly as
//! confined as the workload's: in the sandbox's pid and user namespaces, chrooted at the
//! overlay root, as the sandbox's host id with no capability and an empty bounding set, under
//! no_new_privs, the spec's seccomp profile and the trap filter, traced by the sentry from its
//! first instruction. The sentry itself cannot fork such a process once it has confined itself
//! (its own filter would stack on the child and answer EPERM to the syscalls the trap filter
//! sends to the sentry), so it keeps a **spawner**: a process it forks before it confines itself
//! and before the workload exists, which
//!
//! - receives the sandbox's pid namespace and the workload's user namespace from the sentry once
//!   the workload's first process has made them, enters the pid namespace for its children, and
//!   drops every privilege (the host id, no capability, an empty bounding set, no_new_privs);
//! - then, for each request the sentry sends on their private socketpair (never anyone else),
//!   clones a child with `CLONE_PARENT` — so the child is the **sentry's** child, which
//!   `PTRACE_TRACEME` makes its tracee — and reports the child's pid.
//!
//! The child enters the workload's user namespace (the spawner's host id owns it, so no
//! capability is needed), chroots to the root, drops as the workload's first process does, stops
//! for the sentry to attach, installs the filters and executes the program (the sentry checks
//! the execve as any other). The spawner sits in the sentry's pid namespace, outside the
//! sandbox's, and dies with the sentry (`PR_SET_PDEATHSIG`).
//!
//! ```text
//! hako exec ──fork──► exec client (the pid `exec` reports; exits like the exec'd process)
//!   │ <state>/sentry/exec.sock (0600, SOCK_SEQPACKET): Exec{process, tty} + stdio fds ─►
//!   ▼                                              ◄─ Started{pid} | Error, later Exit
//! sentry (kernel loop): checks the process as create checks the workload's, builds the
//!   │ task's fd table from the received stdio, asks the spawner ─► child ─► tracee
//!   ▼ Signal(n) from the client ─► kill(child, n); the client gone ─► SIGKILL
//! ```

use crate::kernel::config::Config;
use crate::platform::Platform;
use anyhow::{bail, Context, Result};
use nix::sys::socket::{
    recvmsg, sendmsg, socket, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The sentry's exec socket, in `<state>/sentry`.
pub const EXEC_SOCK: &str = "exec.sock";
/// The largest message either side sends (a process spec with its environment).
const MAX_MSG: usize = 256 * 1024;

/// Between `hako exec`'s client and the sentry.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Msg {
    /// The first message, with the process's stdin, stdout and stderr attached (the pty slave
    /// three times for a terminal).
    Exec {
        process: Box<Process>,
        tty: bool,
    },
    /// The process runs; `pid` is its pid in the sandbox.
    Started {
        pid: i32,
    },
    Error(String),
    /// The process ended: its exit code, or the signal that killed it.
    Exit {
        signaled: bool,
        code: i32,
    },
    /// A signal for the process (what the client itself received).
    Signal(i32),
}

/// Send `m` with `fds` attached.
pub fn send(sock: RawFd, m: &Msg, fds: &[RawFd]) -> Result<()> {
    send_bytes(sock, &serde_json::to_vec(m)?, fds)
}

fn send_bytes(sock: RawFd, data: &[u8], fds: &[RawFd]) -> Result<()> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsg: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<UnixAddr>(sock, &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None).context("sendmsg")?;
    Ok(())
}

/// One message and the descriptors that came with it; None at end of stream (or, with
/// `nonblock`, when nothing is pending).
fn recv_bytes(sock: RawFd, nonblock: bool) -> Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cspace = nix::cmsg_space!([RawFd; 3]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblock {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let (n, fds, trunc) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut cspace), flags) {
            Ok(r) => {
                let mut fds = vec![];
                for c in r.cmsgs().context("control message")? {
                    if let ControlMessageOwned::ScmRights(v) = c {
                        // SAFETY: descriptors the kernel just gave us.
                        fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                    }
                }
                let trunc = r
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                break (r.bytes, fds, trunc);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) if nonblock => return Ok(None),
            Err(e) => return Err(e).context("recvmsg"),
        }
    };
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    if trunc {
        bail!("message too long");
    }
    buf.truncate(n);
    Ok(Some((buf, fds)))
}

fn recv(sock: RawFd, nonblock: bool) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
    Ok(match recv_bytes(sock, nonblock)? {
        Some((b, fds)) => Some((serde_json::from_slice(&b).context("bad message")?, fds)),
        None => None,
    })
}

/// A socket path that fits in `sun_path`: the path itself when short enough, else the same
/// file reached through an `O_PATH` descriptor of its directory (kept open while used).
fn short_path(path: &Path) -> Result<(PathBuf, Option<OwnedFd>)> {
    if path.as_os_str().len() < 100 {
        return Ok((path.to_path_buf(), None));
    }
    let dir = path.parent().context("socket path has no directory")?;
    let name = path.file_name().context("socket path has no name")?;
    let c = CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: open of a directory path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening {}", dir.display()));
    }
    // SAFETY: a fresh descriptor.
    let f = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((
        PathBuf::from(format!("/proc/self/fd/{fd}")).join(name),
        Some(f),
    ))
}

/// The sentry's listening socket at `path`, 0600 whatever the umask (inside the 0700 state
/// directory): only root and the sandbox's owner reach it.
pub fn bind(path: &Path) -> Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let (p, _dir) = short_path(path)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .context("socket")?;
    let addr = UnixAddr::new(&p).context("exec socket path")?;
    // SAFETY: umask is process-wide; the sentry is single-threaded.
    let old = unsafe { libc::umask(0o177) };
    let r = nix::sys::socket::bind(sock.as_raw_fd(), &addr);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    r.with_context(|| format!("binding {}", path.display()))?;
    nix::sys::socket::listen(&sock, nix::sys::socket::Backlog::new(16)?).context("listen")?;
    Ok(sock)
}

mod client;
mod hub;
mod spawner;

pub use client::start;
pub use hub::{Hub, Request};
pub use spawner::{Spawner, SpawnerPlan};

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(caps: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion": "1.0.2", "root": {{"path": "rootfs"}},
                "process": {{"args": ["sleep"], "cwd": "/", "user": {{"uid": 0, "gid": 0}}
                             {caps}}}}}"#
        ))
        .unwrap()
    }

    fn process(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    /// A hostile exec request: capabilities the workload's bounding set lacks are refused; a
    /// process naming none gets the workload's, never "every capability".
    #[test]
    fn an_exec_never_gets_more_capabilities_than_the_workload() {
        let base = spec(
            r#", "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                  "permitted": ["CAP_KILL"]}"#,
        );
        let bnd = Config::from_spec(&base, "t").unwrap().caps.bnd;
        let greedy = process(
            r#"{"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_KILL", "CAP_SYS_ADMIN"]}}"#,
        );
        let e = Hub::config_for(&base, "t", bnd, &greedy).unwrap_err();
        assert!(format!("{e:#}").contains("bounding set"), "{e:#}");
        let plain = process(r#"{"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#);
        let cfg = Hub::config_for(&base, "t", bnd, &plain).unwrap();
        assert_eq!(cfg.caps.bnd, bnd);
        assert_eq!(cfg.caps.eff, 1 << crate::kernel::creds::KILL);
        // The workload's own checks apply: a relative cwd, no args.
        let rel = process(r#"{"args": ["sh"], "cwd": "tmp", "user": {"uid": 0, "gid": 0}}"#);
        assert!(Hub::config_for(&base, "t", bnd, &rel).is_err());
        let none = process(r#"{"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#);
        assert!(Hub::config_for(&base, "t", bnd, &none).is_err());
    }

    /// The request and its three descriptors cross the socket together; an end of stream reads
    /// as None.
    #[test]
    fn messages_carry_their_descriptors() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let m = Msg::Exec {
            process: Box::new(process(
                r#"{"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#,
            )),
            tty: false,
        };
        send(a.as_raw_fd(), &m, &[0, 1, 2]).unwrap();
        let (got, fds) = recv(b.as_raw_fd(), false).unwrap().unwrap();
        assert_eq!(got, m);
        assert_eq!(fds.len(), 3);
        assert!(
            recv(b.as_raw_fd(), true).unwrap().is_none(),
            "nothing pending"
        );
        drop(a);
        assert!(
            recv(b.as_raw_fd(), false).unwrap().is_none(),
            "end of stream"
        );
    }
}
