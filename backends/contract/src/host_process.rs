//! The host process every backend forks: the process whose lifetime is the sandbox and whose
//! pid `create` reports. One routine for all of them:
//!
//! 1. [`spawn`] forks (the caller, `hako create`, is single-threaded) and runs the backend's
//!    closure in the child with a [`Readiness`], its end of a close-on-exec socket pair;
//! 2. the child sets the sandbox up and reports one typed [`Report`]: `Ready` with the
//!    backend's own payload, or `Err` with the set-up's error text, which becomes `create`'s one
//!    error line;
//! 3. the child then blocks on the start gate ([`Readiness::ready_then_wait`], or
//!    [`crate::start_gate`] directly when it has work to do in between) and runs the workload.
//!
//! The wire: one frame, a 4-byte little-endian length and that many bytes of JSON. A frame, not
//! "read to end of file": a process the child forks before it reports (a VM engine, say) may
//! hold a copy of the pipe without ever writing to it.

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

/// What the host process tells `create` once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report<T> {
    /// Set up and waiting for `start`; the payload is the backend's own (for state.json).
    Ready(T),
    /// Set-up failed with this text; the process exits.
    Err(String),
}

/// The child's end of the report channel, a close-on-exec socket pair (one descriptor, both
/// ways): `create` first writes one byte once it has noted the child's pid ([`crate::orphan`]),
/// so that a `delete --force` can find the child; the child then writes its report. Reporting
/// consumes it (and closes it).
pub struct Readiness {
    pipe: std::os::unix::net::UnixStream,
}

impl Readiness {
    /// The pipe's descriptor, for a child that closes every inherited descriptor but its own.
    pub fn as_raw_fd(&self) -> RawFd {
        self.pipe.as_raw_fd()
    }

    /// Wait until `create` has noted this process, then report `Ready(payload)`. An error when
    /// `create` died before it noted it: the caller must then end, since nothing else would
    /// (a child that ran ahead of its killed parent once sat at the start gate for ever).
    pub fn ready<T: Serialize>(mut self, payload: T) -> Result<()> {
        let mut ack = [0u8; 1];
        let acked = loop {
            match self.pipe.read(&mut ack) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        if !matches!(acked, Ok(1)) {
            anyhow::bail!("create ended before it noted the host process");
        }
        self.send(&Report::Ready(payload))
    }

    /// Report `Err` with `e`'s whole chain on one line.
    pub fn fail(self, e: &anyhow::Error) {
        let _ = self.send(&Report::<()>::Err(format!("{e:#}")));
    }

    /// Report `Ready(payload)`, then block on the start gate at `fifo` until `hako start`.
    pub fn ready_then_wait<T: Serialize>(self, payload: T, fifo: &Path) -> Result<()> {
        self.ready(payload)?;
        crate::start_gate::wait(fifo)
    }

    fn send<T: Serialize>(mut self, r: &Report<T>) -> Result<()> {
        self.pipe
            .write_all(&frame(r)?)
            .context("reporting to create")
    }
}

/// One frame: length (u32, little-endian), then the JSON.
fn frame<T: Serialize>(r: &Report<T>) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(r)?;
    let len = u32::try_from(body.len()).context("report too large")?;
    let mut out = len.to_le_bytes().to_vec();
    out.extend(body);
    Ok(out)
}

/// Read one frame from `r`. None when the writer went away before a whole frame.
fn read_frame<T: DeserializeOwned>(mut r: impl Read) -> Result<Option<Report<T>>> {
    let mut len = [0u8; 4];
    if r.read_exact(&mut len).is_err() {
        return Ok(None);
    }
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    if r.read_exact(&mut body).is_err() {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_slice(&body).context("the host process's report")?,
    ))
}

/// Why [`spawn`] has no ready host process to hand back.
#[derive(Debug)]
pub enum Failed {
    /// The host process reported `Err` with this text (it has been reaped).
    SetUp(String),
    /// It ended without a report: how (it has been reaped).
    Died(String),
    /// The pipe or the fork itself failed (no child left).
    Os(anyhow::Error),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::SetUp(text) => f.write_str(text),
            Failed::Died(how) => write!(f, "the host process {how} during set-up"),
            Failed::Os(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for Failed {}

/// Fork the host process and wait for its report. In the child, `child` runs (a panic counts
/// as exit status 1) and the process exits with what it returns; it never returns into the
/// caller. In the parent: the child's pid is noted in `state_dir` ([`crate::orphan`], after the
/// `create:forked` fault point), then the report is read: the pid and its `Ready` payload; on
/// `Err`, or when the child ended without a report, the child is reaped first. A child whose
/// `create` died before reading finds no reader: its report fails (EPIPE) and it should end.
pub fn spawn<T: DeserializeOwned>(
    state_dir: &Path,
    child: impl FnOnce(Readiness) -> i32,
) -> Result<(i32, T), Failed> {
    // Close-on-exec, both ways: the report one way, the acknowledgement of the note the other.
    let (rd, wr) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Failed::Os(anyhow!("socketpair: {e}")))?;
    // SAFETY: the caller (`hako create`) is single-threaded (the contract); the child runs only
    // the backend's closure and leaves by _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failed::Os(anyhow!(
            "fork: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        drop(rd);
        let ready = Readiness { pipe: wr };
        let code =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(ready))).unwrap_or(1);
        // SAFETY: leave without running the parent's exit handlers.
        unsafe { libc::_exit(code) }
    }
    drop(wr);
    // Before the note: the host process must end by itself when nobody noted it (its `ready`
    // sees the channel closed).
    crate::fault::point("create:forked");
    crate::orphan::note_host_pid(state_dir, pid);
    // Noted: the child may report (a failed write means it is gone: the report says so).
    let mut rd = rd;
    let _ = rd.write_all(&[1]);
    let report = read_frame::<T>(rd);
    if let Ok(Some(Report::Ready(v))) = report {
        return Ok((pid, v));
    }
    let mut st = 0;
    // SAFETY: reap our own child, which has exited or is about to.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    Err(match report {
        Ok(Some(Report::Err(text))) => Failed::SetUp(text),
        Err(e) => Failed::SetUp(format!("{e:#}")),
        _ if libc::WIFSIGNALED(st) => {
            Failed::Died(format!("was killed by signal {}", libc::WTERMSIG(st)))
        }
        _ => Failed::Died(format!("exited with status {}", libc::WEXITSTATUS(st))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = frame(&Report::Ready(serde_json::json!({"host_id": 7}))).unwrap();
        let r: Report<serde_json::Value> = read_frame(&f[..]).unwrap().unwrap();
        assert_eq!(r, Report::Ready(serde_json::json!({"host_id": 7})));
        let f = frame(&Report::<()>::Err("mount /x: no such file".into())).unwrap();
        let r: Report<()> = read_frame(&f[..]).unwrap().unwrap();
        assert_eq!(r, Report::Err("mount /x: no such file".into()));
        // A writer gone mid-frame is no report.
        assert!(read_frame::<()>(&f[..3]).unwrap().is_none());
    }

    #[test]
    fn spawn_reports_ready_error_and_silent_death() {
        let dir = std::env::temp_dir().join(format!("hako-host-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pid, v) = spawn::<u32>(&dir, |r| {
            r.ready(41u32 + 1).unwrap();
            0
        })
        .unwrap();
        assert_eq!(v, 42);
        // Noted for delete --force before the report was read (a zombie still has its stat).
        assert_eq!(crate::orphan::host_pid(&dir).map(|h| h.0), Some(pid));
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };

        let e = spawn::<u32>(&dir, |r| {
            r.fail(&anyhow!("no such file").context("mount /x"));
            1
        })
        .unwrap_err();
        assert!(
            matches!(&e, Failed::SetUp(t) if t == "mount /x: no such file"),
            "{e}"
        );

        let e = spawn::<u32>(&dir, |_r| 3).unwrap_err();
        assert!(
            matches!(&e, Failed::Died(how) if how == "exited with status 3"),
            "{e}"
        );
        let e = spawn::<u32>(&dir, |_r| panic!("boom")).unwrap_err();
        assert!(
            matches!(&e, Failed::Died(how) if how == "exited with status 1"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
