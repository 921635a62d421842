//! Typed messages between the runtime (parent) and the processes it forks (intermediate, init,
//! exec'd process), over a SOCK_SEQPACKET socketpair: one datagram per message, JSON-encoded,
//! optionally carrying one file descriptor (the pty master) with SCM_RIGHTS.

use anyhow::{anyhow, bail, Context, Result};
use hako_contract::host_process::Report;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Every message either side sends.
#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Parent → child: the uid/gid maps are written and the pid is in its cgroup; go on.
    /// `pid` is the child's pid as the host sees it (for the hooks' state).
    Go { pid: i32 },
    /// Parent → init: the init is in its cgroup and the host-side hooks (prestart,
    /// createRuntime) have run. The init builds its mounts meanwhile and waits for this only
    /// before its cgroup namespace, cgroup mounts and createContainer hooks: moving a task
    /// into a v1 cgroup costs an RCU grace period (milliseconds), spent in parallel this way.
    HostDone,
    /// Intermediate → parent: the pid of the process it cloned (with CLONE_PARENT).
    Pid(i32),
    /// Child → parent: here is the pty master (the fd travels with the message).
    PtyMaster,
    /// Child → parent: the readiness report every backend's host process sends
    /// (`hako_contract::host_process::Report`): `Ready` once everything is set up and the child
    /// blocks on the start gate, or `Err` with the set-up's error text, after which it exits.
    Report(Report<()>),
}

pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (parent end, child end). Both close on exec.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd(&self, msg: &Msg, fd: Option<RawFd>) -> Result<()> {
        let body = serde_json::to_vec(msg)?;
        let iov = [IoSlice::new(&body)];
        let fds;
        let cmsg: Vec<ControlMessage> = match fd {
            Some(f) => {
                fds = [f];
                vec![ControlMessage::ScmRights(&fds)]
            }
            None => vec![],
        };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("sending on the sync socket"),
            }
        }
    }

    /// Receive one message; `None` when the other side closed its end (exited or exec'd).
    pub fn recv(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; 65536];
        let mut cbuf = nix::cmsg_space!([RawFd; 1]);
        let mut reset_seen = false;
        let (n, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cbuf),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => {
                    let mut fd = None;
                    for c in m.cmsgs().map_err(|e| anyhow!("cmsg: {e}"))? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for f in fds {
                                // SAFETY: the kernel just gave us this descriptor.
                                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                                if fd.is_none() {
                                    fd = Some(owned);
                                }
                            }
                        }
                    }
                    break (m.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                // The other side exited with one of our messages unread in its queue. The
                // kernel reports that once, as ECONNRESET, ahead of the messages it sent before
                // exiting (a failing child's Error): read on, and that message (or EOF) comes.
                Err(nix::errno::Errno::ECONNRESET) if !reset_seen => {
                    reset_seen = true;
                    continue;
                }
                Err(e) => return Err(e).context("reading the sync socket"),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let msg: Msg =
            serde_json::from_slice(&buf[..n]).context("bad message on the sync socket")?;
        Ok(Some((msg, fd)))
    }

    /// Receive one message and require it to be `want`-like (checked by the caller's closure).
    pub fn expect<T>(
        &self,
        what: &str,
        f: impl FnOnce(Msg, Option<OwnedFd>) -> Result<T>,
    ) -> Result<T> {
        match self.recv()? {
            Some((Msg::Report(Report::Err(e)), _)) => Err(anyhow!("{e}")),
            Some((m, fd)) => f(m, fd),
            None => bail!("the container process exited while {what}"),
        }
    }
}
