//! Socket options (an allow-list) and socket ioctls.

use super::*;

/// The options a workload may get or set, with the largest value length each takes.
pub(super) fn sockopt_allowed(level: i32, opt: i32, set: bool) -> Option<usize> {
    use libc::*;
    let int = Some(4);
    match (level, opt) {
        (SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT | SO_KEEPALIVE | SO_BROADCAST | SO_RCVBUF)
        | (SOL_SOCKET, SO_SNDBUF | SO_OOBINLINE | SO_RCVLOWAT | SO_PASSCRED | SO_TIMESTAMP)
        | (SOL_SOCKET, SO_DONTROUTE | SO_PRIORITY) => int,
        (SOL_SOCKET, SO_LINGER) => Some(8),
        (SOL_SOCKET, SO_RCVTIMEO | SO_SNDTIMEO) => Some(16),
        (SOL_SOCKET, SO_ERROR | SO_TYPE | SO_DOMAIN | SO_PROTOCOL | SO_ACCEPTCONN) if !set => int,
        (IPPROTO_TCP, TCP_NODELAY | TCP_MAXSEG | TCP_KEEPIDLE | TCP_KEEPINTVL | TCP_KEEPCNT)
        | (IPPROTO_TCP, TCP_CORK | TCP_QUICKACK | TCP_DEFER_ACCEPT | TCP_FASTOPEN)
        | (IPPROTO_TCP, TCP_USER_TIMEOUT | TCP_SYNCNT | TCP_LINGER2 | TCP_WINDOW_CLAMP) => int,
        (IPPROTO_TCP, TCP_INFO) if !set => Some(256),
        (IPPROTO_TCP, TCP_CONGESTION) => Some(16),
        (IPPROTO_IP, IP_TOS | IP_TTL | IP_MULTICAST_TTL | IP_MULTICAST_LOOP | IP_RECVERR)
        | (IPPROTO_IP, IP_PKTINFO | IP_MTU_DISCOVER | IP_RECVTOS | IP_RECVTTL | IP_FREEBIND) => int,
        (IPPROTO_IP, IP_HDRINCL) => int,
        (IPPROTO_IP, IP_MTU) if !set => int,
        (IPPROTO_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP) if set => Some(12),
        (IPPROTO_IPV6, IPV6_V6ONLY | IPV6_UNICAST_HOPS | IPV6_MULTICAST_HOPS)
        | (IPPROTO_IPV6, IPV6_MULTICAST_LOOP | IPV6_RECVPKTINFO | IPV6_TCLASS | IPV6_RECVERR)
        | (IPPROTO_IPV6, IPV6_MTU_DISCOVER | IPV6_RECVTCLASS) => int,
        (IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP | IPV6_DROP_MEMBERSHIP) if set => Some(20),
        _ => None,
    }
}

pub fn setsockopt<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, _) = tri!(sock(k, c.tid, c.a[0]));
    let (level, opt, len) = (c.a[1] as i32, c.a[2] as i32, c.a[4] as usize);
    let Some(max) = sockopt_allowed(level, opt, true) else {
        return err(libc::ENOPROTOOPT);
    };
    let v = tri!(k.read_bytes(c.tid, c.a[3], len.min(max)));
    // SAFETY: setsockopt with a value in our own buffer.
    if unsafe { libc::setsockopt(h, level, opt, v.as_ptr().cast(), v.len() as u32) } != 0 {
        return err(errno());
    }
    Outcome::Ret(0)
}

pub fn getsockopt<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (_f, h, _) = tri!(sock(k, c.tid, c.a[0]));
    let (level, opt) = (c.a[1] as i32, c.a[2] as i32);
    if (level, opt) == (libc::SOL_SOCKET, libc::SO_PEERCRED) {
        return peercred(k, c, h);
    }
    let Some(max) = sockopt_allowed(level, opt, false) else {
        return err(libc::ENOPROTOOPT);
    };
    let room = tri!(k.read_val::<u32>(c.tid, c.a[4])) as usize;
    let mut v = vec![0u8; max];
    let mut l = max as u32;
    // SAFETY: getsockopt into our own buffer.
    if unsafe { libc::getsockopt(h, level, opt, v.as_mut_ptr().cast(), &mut l) } != 0 {
        return err(errno());
    }
    let n = (l as usize).min(room);
    tri!(k.write_bytes(c.tid, c.a[3], &v[..n]));
    tri!(k.write_val(c.tid, c.a[4], &(n as u32)));
    Outcome::Ret(0)
}

/// Socket ioctls the sandbox may make: reads of its own socket's queue state and of the
/// network namespace's interfaces (struct ifreq by name or index); nothing that changes an
/// interface. None: not a socket request (the caller goes on).
pub fn ioctl<P: Platform>(k: &Kernel<P>, c: &Call, h: RawFd) -> Option<Outcome> {
    let req = c.a[1];
    let size = match req {
        SIOCATMARK | libc::TIOCOUTQ => 4,
        libc::SIOCGIFNAME
        | libc::SIOCGIFINDEX
        | libc::SIOCGIFFLAGS
        | libc::SIOCGIFADDR
        | libc::SIOCGIFNETMASK
        | libc::SIOCGIFMTU
        | libc::SIOCGIFHWADDR
        | libc::SIOCGIFBRDADDR => 40,
        _ => return None,
    };
    let ifreq = size == 40;
    let mut buf = if ifreq {
        match k.read_bytes(c.tid, c.a[2], size) {
            Ok(b) => b,
            Err(e) => return Some(err(e)),
        }
    } else {
        vec![0u8; size]
    };
    // SAFETY: ioctl with a buffer of the size the request needs.
    if unsafe { libc::ioctl(h, req as _, buf.as_mut_ptr()) } != 0 {
        return Some(err(errno()));
    }
    Some(match k.write_bytes(c.tid, c.a[2], &buf) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_allow_list() {
        assert!(sockopt_allowed(libc::SOL_SOCKET, libc::SO_REUSEADDR, true).is_some());
        assert!(sockopt_allowed(libc::SOL_SOCKET, libc::SO_ERROR, true).is_none());
        assert!(sockopt_allowed(libc::SOL_SOCKET, libc::SO_ERROR, false).is_some());
        for (l, o) in [
            (libc::SOL_SOCKET, libc::SO_BINDTODEVICE),
            (libc::SOL_SOCKET, libc::SO_ATTACH_FILTER),
            (libc::SOL_SOCKET, libc::SO_MARK),
            (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE),
            (libc::SOL_SOCKET, libc::SO_PEERCRED),
        ] {
            assert!(sockopt_allowed(l, o, true).is_none());
            assert!(sockopt_allowed(l, o, false).is_none());
        }
    }
}
