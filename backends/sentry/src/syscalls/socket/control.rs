//! Control messages (SCM_RIGHTS, SCM_CREDENTIALS) both ways: the workload's for the host, the
//! host's for the receiving task.

use super::*;

pub(super) fn cmsg_align(n: usize) -> usize {
    (n + 7) & !7
}

/// Rewrite the workload's control messages for the host: SCM_RIGHTS numbers become the host
/// descriptors of the sandbox's own open files (kept alive in `keep`), SCM_CREDENTIALS must be
/// the sender's own (virtual) ids and carry its host pid.
pub(super) fn host_control<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    b: &[u8],
    keep: &mut Vec<FileRef>,
) -> Result<Vec<u8>, i32> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= b.len() {
        let len = u64::from_ne_bytes(b[off..off + 8].try_into().unwrap()) as usize;
        let level = i32::from_ne_bytes(b[off + 8..off + 12].try_into().unwrap());
        let ty = i32::from_ne_bytes(b[off + 12..off + 16].try_into().unwrap());
        if len < 16 || off + len > b.len() {
            return Err(libc::EINVAL);
        }
        let data = &b[off + 16..off + len];
        let mut body = Vec::new();
        match (level, ty) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                for ch in data.chunks_exact(4) {
                    let v = i32::from_ne_bytes(ch.try_into().unwrap());
                    let f = k.file(tid, v as u64)?;
                    // Only files the host can carry: a synthesized one has no host descriptor.
                    let h = f.borrow().host_fd().ok_or(libc::EBADF)?;
                    body.extend_from_slice(&h.to_ne_bytes());
                    keep.push(f);
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                if data.len() < 12 {
                    return Err(libc::EINVAL);
                }
                let pid = i32::from_ne_bytes(data[0..4].try_into().unwrap());
                let uid = u32::from_ne_bytes(data[4..8].try_into().unwrap());
                let gid = u32::from_ne_bytes(data[8..12].try_into().unwrap());
                let cr = k.creds(tid);
                let p = k.proc_of(tid);
                let vpid = p.borrow().vpid;
                let uid_ok = [cr.ruid, cr.euid, cr.suid].contains(&uid) || cr.capable(SETUID);
                let gid_ok = [cr.rgid, cr.egid, cr.sgid].contains(&gid) || cr.capable(SETGID);
                if pid != vpid || !uid_ok || !gid_ok {
                    return Err(libc::EPERM);
                }
                // The host checks credentials against the sender, the sentry, which holds no
                // capability: what it can carry is its own (see `guest_control`).
                // SAFETY: getpid/geteuid/getegid cannot fail.
                let own = unsafe { [libc::getpid() as u32, libc::geteuid(), libc::getegid()] };
                for v in own {
                    body.extend_from_slice(&v.to_ne_bytes());
                }
            }
            _ => return Err(libc::EINVAL),
        }
        let start = out.len();
        out.extend_from_slice(&((16 + body.len()) as u64).to_ne_bytes());
        out.extend_from_slice(&level.to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(&body);
        out.resize(start + cmsg_align(16 + body.len()), 0);
        off += cmsg_align(len);
    }
    Ok(out)
}

/// Received control messages for the sandbox: host descriptors become new descriptors of the
/// receiver, host pids virtual ones. A received directory that is not inside the sandbox's root
/// is closed and the message marked truncated: it would be a way out of the root.
pub(super) fn guest_control<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    h: RawFd,
    b: &[u8],
    cloexec: bool,
    trunc: &mut bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= b.len() {
        let len = u64::from_ne_bytes(b[off..off + 8].try_into().unwrap()) as usize;
        let level = i32::from_ne_bytes(b[off + 8..off + 12].try_into().unwrap());
        let ty = i32::from_ne_bytes(b[off + 12..off + 16].try_into().unwrap());
        if len < 16 || off + len > b.len() {
            break;
        }
        let data = &b[off + 16..off + len];
        let mut body = Vec::new();
        match (level, ty) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                for ch in data.chunks_exact(4) {
                    // SAFETY: the kernel just installed this descriptor in the sentry for us.
                    let fd =
                        unsafe { OwnedFd::from_raw_fd(i32::from_ne_bytes(ch.try_into().unwrap())) };
                    match guest_file(k, fd) {
                        Some(f) => match k.install(tid, f, cloexec) {
                            Ok(v) => body.extend_from_slice(&(v as i32).to_ne_bytes()),
                            Err(_) => *trunc = true,
                        },
                        None => *trunc = true,
                    }
                }
                if body.is_empty() {
                    off += cmsg_align(len);
                    continue;
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if data.len() >= 12 => {
                // A sender in the sandbox reaches the host as the sentry itself: the message
                // names the task that made the sending socket (never the sentry's host ids);
                // a sender outside, pid 0 and the overflow ids.
                let pid = i32::from_ne_bytes(data[0..4].try_into().unwrap());
                let uid = u32::from_ne_bytes(data[4..8].try_into().unwrap());
                let gid = u32::from_ne_bytes(data[8..12].try_into().unwrap());
                for v in guest_creds(h, pid, uid, gid, false) {
                    body.extend_from_slice(&v.to_ne_bytes());
                }
            }
            _ => body.extend_from_slice(data),
        }
        let start = out.len();
        out.extend_from_slice(&((16 + body.len()) as u64).to_ne_bytes());
        out.extend_from_slice(&level.to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(&body);
        out.resize(start + cmsg_align(16 + body.len()), 0);
        off += cmsg_align(len);
    }
    out
}

/// An open file for a descriptor received from the host, or None if it must not come in.
pub(super) fn guest_file<P: Platform>(k: &Kernel<P>, fd: OwnedFd) -> Option<OpenFile> {
    let h = fd.as_raw_fd();
    let st = fstat_fd(h).ok()?;
    // SAFETY: F_GETFL on our descriptor.
    let fl = unsafe { libc::fcntl(h, libc::F_GETFL) };
    let acc = fl & libc::O_ACCMODE;
    let (kind, path) = match st.st_mode & libc::S_IFMT {
        // A directory outside the root would be a way out of it (*at calls relative to it).
        libc::S_IFDIR => (HostKind::Dir, k.vfs.virt_path_of(h)?),
        // A regular file names no other file: one from outside the root (a memfd, a peer's
        // file) comes in under a name that is not a path of the sandbox.
        libc::S_IFREG => {
            let name = k
                .vfs
                .virt_path_of(h)
                .unwrap_or_else(|| match crate::hostproc::fd_path(h) {
                    Ok(p) if p.to_string_lossy().starts_with("/memfd:") => {
                        p.to_string_lossy().into_owned()
                    }
                    _ => format!("anon_inode:[file {}]", st.st_ino),
                });
            (HostKind::Regular, name)
        }
        libc::S_IFSOCK => (HostKind::Stream, format!("socket:[{}]", st.st_ino)),
        libc::S_IFIFO => (HostKind::Stream, format!("pipe:[{}]", st.st_ino)),
        _ => return None,
    };
    if kind == HostKind::Stream {
        // The sentry never blocks in a stream: make the description non-blocking.
        // SAFETY: F_SETFL on our descriptor.
        unsafe { libc::fcntl(h, libc::F_SETFL, fl | libc::O_NONBLOCK) };
    }
    Some(OpenFile::new(
        FileKind::Host { fd, kind },
        &path,
        acc | (fl & libc::O_APPEND),
    ))
}
