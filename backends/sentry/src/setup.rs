//! What the workload's first process and `hako exec`'s processes share in their set-up: the
//! program lookup and the stdio files.
//! Below the event loop, `exec` and the supervisor, which all use it.

use crate::kernel::config::Config;
use crate::vfs::{FileKind, HostKind, OpenFile, Vfs};
use anyhow::{bail, Result};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Resolve `args[0]` like execvp, inside the sandbox root, with the PATH of process.env only: a
/// bare name with no PATH there is not found (as runc and crun).
pub fn find_program(vfs: &Vfs, cfg: &Config) -> Result<String> {
    let a0 = &cfg.args[0];
    if a0.contains('/') {
        return Ok(a0.clone());
    }
    let path = cfg
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or_default();
    for d in path.split(':').filter(|_| !path.is_empty()) {
        let cand = format!("{}/{a0}", d.trim_end_matches('/'));
        if let Ok(st) = vfs.stat(&cand, true) {
            if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_mode & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    bail!("exec: {a0:?}: executable file not found in $PATH")
}

pub fn stdio_file(fd: RawFd, slave: Option<RawFd>) -> Result<OpenFile> {
    let src = slave.unwrap_or(fd);
    // SAFETY: dup of an inherited fd.
    let d = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 10) };
    if d < 0 {
        bail!("stdio fd {fd} is not open");
    }
    let owned = unsafe { OwnedFd::from_raw_fd(d) };
    let st = crate::vfs::fstat_fd(d).map_err(std::io::Error::from_raw_os_error)?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => HostKind::Regular,
        libc::S_IFDIR => HostKind::Dir,
        _ => HostKind::Stream,
    };
    let name = crate::hostproc::fd_path(src)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let acc = if fd == 0 {
        libc::O_RDONLY
    } else {
        libc::O_WRONLY
    };
    // SAFETY: fcntl query.
    let fl = unsafe { libc::fcntl(d, libc::F_GETFL) };
    let acc = if fl >= 0 && fl & libc::O_ACCMODE == libc::O_RDWR {
        libc::O_RDWR
    } else {
        acc
    };
    Ok(OpenFile::new(
        FileKind::Host { fd: owned, kind },
        &name,
        acc | (fl.max(0) & libc::O_APPEND),
    ))
}
