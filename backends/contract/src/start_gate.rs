//! The start gate: how `create` leaves a workload blocked until `start`.
//!
//! The front end makes a fifo in the container's state directory. The backend's host process
//! opens it for writing, which blocks until `hako start` opens it for reading; it then writes one
//! byte and goes on to run the workload. The fifo existing means "created"; `start` unlinks it.
//! (runc does the same with its exec.fifo.)

use anyhow::{bail, Context, Result};
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Called by the backend's host process: block until `hako start`.
pub fn wait(fifo: &Path) -> Result<()> {
    let fd: OwnedFd = open(fifo, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .with_context(|| format!("opening start fifo {}", fifo.display()))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(b"0").context("writing start fifo")?;
    Ok(())
}

/// As [`wait`], for a caller that opened the fifo for writing itself (by descriptor, through a
/// procfs it trusts): the open has already blocked until `hako start`; write the byte.
pub fn signal(fd: OwnedFd) -> Result<()> {
    let mut f = std::fs::File::from(fd);
    f.write_all(b"0").context("writing start fifo")
}

/// Called by `hako start`: release the process blocked in [`wait`]. `alive` tells whether that
/// process still lives, so a dead one is reported instead of waited for forever.
pub fn release(fifo: &Path, alive: impl Fn() -> bool) -> Result<()> {
    let fd: OwnedFd = open(
        fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening start fifo {}", fifo.display()))?;
    let mut f = std::fs::File::from(fd);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1];
    loop {
        match f.read(&mut buf) {
            Ok(1) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("reading start fifo"),
        }
        if !alive() {
            bail!("the container process exited before it was started");
        }
        if Instant::now() > deadline {
            bail!("the container process did not answer the start signal within 30s");
        }
        // The writer is already blocked in open(); it answers within microseconds.
        std::thread::sleep(Duration::from_micros(50));
    }
    let _ = std::fs::remove_file(fifo);
    Ok(())
}

/// Make the fifo (mode 0622, as runc's exec.fifo).
pub fn make(fifo: &Path) -> Result<()> {
    nix::unistd::mkfifo(fifo, Mode::from_bits_truncate(0o622))
        .with_context(|| format!("mkfifo {}", fifo.display()))?;
    // mkfifo honours the umask; the workload's host process may run as another user (a
    // container's non-root user, a user namespace's root) and must still be able to open it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fifo, std::fs::Permissions::from_mode(0o622))
        .with_context(|| format!("chmod {}", fifo.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_opens_once_released() {
        let dir = std::env::temp_dir().join(format!("hako-gate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("start");
        make(&fifo).unwrap();
        let f2 = fifo.clone();
        let waiter = std::thread::spawn(move || wait(&f2));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "wait returned before release");
        release(&fifo, || true).unwrap();
        waiter.join().unwrap().unwrap();
        assert!(!fifo.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
