//! poll, ppoll, select and pselect6 over virtual descriptors: host streams are polled without
//! waiting; nothing ready parks the task on their host descriptors until one is, or until the
//! timeout.

use super::{err, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use syscalls::Sysno;

pub fn poll<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let a = c.a;
    let t = a[2] as i32 as i64;
    poll_fds(k, c, a[0], a[1], if t < 0 { None } else { Some(t) })
}

pub fn ppoll<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let t = if a[2] == 0 {
        None
    } else {
        match k.read_val::<libc::timespec>(tid, a[2]) {
            Ok(ts) => Some(ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000),
            Err(e) => return err(e),
        }
    };
    poll_fds(k, c, a[0], a[1], t)
}

/// select, pselect6.
pub fn select<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let pselect = c.s == Sysno::pselect6;
    let a = c.a;
    let nfds = (a[0] as usize).min(1024);
    let words = nfds.div_ceil(64);
    let read_set = |addr: u64| -> Result<Vec<u64>, i32> {
        if addr == 0 {
            return Ok(vec![0; words]);
        }
        let b = k.read_bytes(c.tid, addr, words * 8)?;
        Ok(b.chunks(8)
            .map(|x| u64::from_ne_bytes(x.try_into().unwrap()))
            .collect())
    };
    let (rs, ws, es) = match (read_set(a[1]), read_set(a[2]), read_set(a[3])) {
        (Ok(r), Ok(w), Ok(e)) => (r, w, e),
        _ => return err(libc::EFAULT),
    };
    let timeout: Option<i64> = if a[4] == 0 {
        None
    } else if pselect {
        k.read_val::<libc::timespec>(c.tid, a[4])
            .ok()
            .map(|t| t.tv_sec * 1000 + t.tv_nsec / 1_000_000)
    } else {
        k.read_val::<libc::timeval>(c.tid, a[4])
            .ok()
            .map(|t| t.tv_sec * 1000 + t.tv_usec / 1000)
    };
    let (mut ro, mut wo, eo) = (vec![0u64; words], vec![0u64; words], vec![0u64; words]);
    let mut n = 0;
    let mut host = Vec::new();
    for fd in 0..nfds {
        let (w, b) = (fd / 64, 1u64 << (fd % 64));
        let want_r = rs[w] & b != 0;
        let want_w = ws[w] & b != 0;
        if !want_r && !want_w && es[w] & b == 0 {
            continue;
        }
        let f = match k.file(c.tid, fd as u64) {
            Ok(f) => f,
            Err(e) => return err(e),
        };
        let fb = f.borrow();
        let signalfd = super::signalfd::readable(c.tid, &fb);
        let (rr, wr) = match fb.host_fd() {
            _ if signalfd.is_some() => {
                k.signal_waiters.insert(c.tid);
                (signalfd == Some(true), false)
            }
            Some(h) if fb.is_stream() => {
                let mut ev = 0;
                if want_r {
                    ev |= libc::POLLIN;
                }
                if want_w {
                    ev |= libc::POLLOUT;
                }
                host.push((h, ev));
                let mut p = libc::pollfd {
                    fd: h,
                    events: ev,
                    revents: 0,
                };
                // SAFETY: poll our fd without waiting.
                unsafe { libc::poll(&mut p, 1, 0) };
                (
                    p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
                    p.revents & (libc::POLLOUT | libc::POLLERR) != 0,
                )
            }
            _ => (true, true),
        };
        if want_r && rr {
            ro[w] |= b;
            n += 1;
        }
        if want_w && wr {
            wo[w] |= b;
            n += 1;
        }
    }
    let expired = c.deadline.is_some_and(|d| std::time::Instant::now() >= d);
    if n == 0 && timeout != Some(0) && !expired {
        let dl = c.deadline.or_else(|| {
            timeout
                .filter(|&t| t > 0)
                .map(|t| std::time::Instant::now() + std::time::Duration::from_millis(t as u64))
        });
        return Outcome::Park(host, dl);
    }
    let put = |addr: u64, v: &Vec<u64>| {
        if addr != 0 {
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
            let _ = k.write_bytes(c.tid, addr, &b);
        }
    };
    put(a[1], &ro);
    put(a[2], &wo);
    put(a[3], &eo);
    Outcome::Ret(n)
}

/// poll/ppoll over virtual fds.
fn poll_fds<P: Platform>(
    k: &mut Kernel<P>,
    c: &Call,
    fds_addr: u64,
    nfds: u64,
    timeout_ms: Option<i64>,
) -> Outcome {
    if nfds > 4096 {
        return err(libc::EINVAL);
    }
    let raw = match k.read_bytes(c.tid, fds_addr, nfds as usize * 8) {
        Ok(r) => r,
        Err(e) => return err(e),
    };
    let mut host = Vec::new();
    let mut out = raw.clone();
    let mut nready = 0;
    for i in 0..nfds as usize {
        let fd = i32::from_ne_bytes(raw[i * 8..i * 8 + 4].try_into().unwrap());
        let ev = i16::from_ne_bytes(raw[i * 8 + 4..i * 8 + 6].try_into().unwrap());
        let mut rev: i16 = 0;
        if fd >= 0 {
            let file = k.file(c.tid, fd as u64);
            let signalfd = file
                .as_ref()
                .ok()
                .and_then(|f| super::signalfd::readable(c.tid, &f.borrow()));
            match file {
                Err(_) => rev = libc::POLLNVAL,
                Ok(_) if signalfd.is_some() => {
                    if signalfd == Some(true) {
                        rev = ev & (libc::POLLIN | libc::POLLRDNORM);
                    }
                    k.signal_waiters.insert(c.tid);
                }
                Ok(f) => match f.borrow().host_fd() {
                    Some(h) if f.borrow().is_stream() => {
                        let mut p = libc::pollfd {
                            fd: h,
                            events: ev,
                            revents: 0,
                        };
                        // SAFETY: poll our fd without waiting.
                        unsafe { libc::poll(&mut p, 1, 0) };
                        rev = p.revents;
                        host.push((h, ev));
                    }
                    _ => {
                        rev = ev
                            & (libc::POLLIN | libc::POLLOUT | libc::POLLRDNORM | libc::POLLWRNORM)
                    }
                },
            }
        }
        if rev != 0 {
            nready += 1;
        }
        out[i * 8 + 6..i * 8 + 8].copy_from_slice(&rev.to_ne_bytes());
    }
    let expired = c.deadline.is_some_and(|d| std::time::Instant::now() >= d);
    if nready == 0 && timeout_ms != Some(0) && !expired {
        let dl = c.deadline.or_else(|| {
            timeout_ms
                .filter(|&t| t > 0)
                .map(|t| std::time::Instant::now() + std::time::Duration::from_millis(t as u64))
        });
        return Outcome::Park(host, dl);
    }
    match k.write_bytes(c.tid, fds_addr, &out) {
        Ok(()) => Outcome::Ret(nready),
        Err(e) => err(e),
    }
}
