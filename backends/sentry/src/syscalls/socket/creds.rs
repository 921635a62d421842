//! Socket credentials as the sandbox sees them. The host knows every socket of the sandbox as
//! the sentry's, so the sentry records which task made each one, and SO_PEERCRED and received
//! SCM_CREDENTIALS name the sandbox task that made the peer socket (found through the kernel's
//! socket diagnostics); a peer outside the sandbox is pid 0 with the overflow ids.

use super::*;

thread_local! {
    /// Socket inode -> the sandbox task that made the socket (socket, socketpair, accept; listen
    /// updates it): its virtual pid and credentials then. The host records the sentry as every
    /// socket's owner; this is what the sandbox's peers learn instead.
    pub(super) static OWNERS: RefCell<HashMap<u64, (u32, Creds)>> = RefCell::new(HashMap::new());
}

/// Record task `tid` as the maker of host socket `h` (see `OWNERS`).
pub(super) fn record_owner<P: Platform>(k: &Kernel<P>, tid: i32, h: RawFd) {
    if let Ok(st) = fstat_fd(h) {
        let vpid = k.proc_of(tid).borrow().vpid as u32;
        OWNERS.with(|o| o.borrow_mut().insert(st.st_ino, (vpid, k.creds(tid))));
    }
}

/// The inode of the AF_UNIX socket connected to the socket with inode `ino`, from the kernel's
/// socket diagnostics (`NETLINK_SOCK_DIAG`, `UDIAG_SHOW_PEER`) in the sentry's, that is the
/// sandbox's, network namespace. Hand-written: no crate the project uses speaks sock_diag.
pub(super) fn unix_peer(ino: u64) -> Option<u64> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_PEER: u32 = 4;
    const UNIX_DIAG_PEER: u16 = 2;
    // SAFETY: a netlink socket of our own.
    let s = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if s < 0 {
        return None;
    }
    // SAFETY: just made, ours.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]); // seq, port id
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, pad
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&u32::try_from(ino).ok()?.to_ne_bytes());
    req.extend_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // no cookie
                                       // SAFETY: send/recv on our socket with our buffers (the kernel is the only peer).
    unsafe {
        if libc::send(s.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) != req.len() as isize {
            return None;
        }
        let mut b = [0u8; 1024];
        let n = libc::recv(s.as_raw_fd(), b.as_mut_ptr().cast(), b.len(), 0);
        let b = &b[..usize::try_from(n).ok()?];
        let u16_at = |o: usize| Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?));
        let u32_at = |o: usize| Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?));
        if u16_at(4)? != SOCK_DIAG_BY_FAMILY {
            return None; // NLMSG_ERROR: no such socket
        }
        let end = (u32_at(0)? as usize).min(b.len());
        // After the header and unix_diag_msg (16 bytes): attributes {len, type, value}.
        let mut off = 32;
        while off + 4 <= end {
            let (len, ty) = (u16_at(off)? as usize, u16_at(off + 2)?);
            if len < 4 {
                break;
            }
            if ty == UNIX_DIAG_PEER {
                return u32_at(off + 4).filter(|&p| p != 0).map(u64::from);
            }
            off += (len + 3) & !3;
        }
        None
    }
}

/// The sandbox task that made the socket connected to `h` (an AF_UNIX peer made by the
/// sentry for the sandbox), as `(vpid, creds)`.
pub(super) fn peer_owner(h: RawFd) -> Option<(u32, Creds)> {
    let peer = unix_peer(fstat_fd(h).ok()?.st_ino)?;
    OWNERS.with(|o| o.borrow().get(&peer).cloned())
}

/// Credentials (pid, uid, gid) the host reports for the peer of `h` (`pid` the host's), as the
/// sandbox must see them: a peer the sentry made names the sandbox task behind it (`effective`:
/// its effective ids, as SO_PEERCRED; else its real ones, as SCM_CREDENTIALS); anyone else is
/// outside the sandbox's view: pid 0 and the overflow ids (no credentials at all: as the host).
pub(super) fn guest_creds(h: RawFd, pid: i32, uid: u32, gid: u32, effective: bool) -> [u32; 3] {
    // SAFETY: getpid cannot fail.
    if pid == unsafe { libc::getpid() } {
        return match peer_owner(h) {
            Some((vpid, c)) if effective => [vpid, c.euid, c.egid],
            Some((vpid, c)) => [vpid, c.ruid, c.rgid],
            None => [0, OVERFLOW_ID, OVERFLOW_ID],
        };
    }
    let map = |id: u32| if id == u32::MAX { id } else { OVERFLOW_ID };
    [0, map(uid), map(gid)]
}

/// getsockopt(SO_PEERCRED).
pub(super) fn peercred<P: Platform>(k: &Kernel<P>, c: &Call, h: RawFd) -> Outcome {
    let room = tri!(k.read_val::<u32>(c.tid, c.a[4])) as usize;
    let mut uc = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut l = std::mem::size_of::<libc::ucred>() as u32;
    // SAFETY: getsockopt into our own struct.
    if unsafe {
        libc::getsockopt(
            h,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut uc as *mut libc::ucred).cast(),
            &mut l,
        )
    } != 0
    {
        return err(errno());
    }
    let v: Vec<u8> = guest_creds(h, uc.pid, uc.uid, uc.gid, true)
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    let n = v.len().min(room);
    tri!(k.write_bytes(c.tid, c.a[3], &v[..n]));
    tri!(k.write_val(c.tid, c.a[4], &(n as u32)));
    Outcome::Ret(0)
}
