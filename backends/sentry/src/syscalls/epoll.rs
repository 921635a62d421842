//! epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2.
//!
//! Each of the sandbox's epoll instances is backed by a host epoll instance the sentry owns:
//! the host fds behind the registered files are registered there with the sandbox's events
//! (EPOLLET, EPOLLONESHOT, EPOLLRDHUP... as given) and the sandbox's fd as the event data, so
//! edge-triggered and one-shot registrations report exactly what the host kernel reports. A
//! waiting task parks on the host epoll fd. Files with no host fd (/dev/null and its kin) are
//! always ready; the sentry evaluates them itself.

use super::{err, errno, r, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{EpollItem, EpollSet, FileKind, OpenFile};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};
use syscalls::Sysno;

const ET: u32 = libc::EPOLLET as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
/// Events a registration may ask for. EPOLLWAKEUP (needs CAP_BLOCK_SUSPEND, and means nothing
/// in the sandbox) is dropped, as Linux drops it for a caller without the capability.
const ALLOWED: u32 = libc::EPOLLIN as u32
    | libc::EPOLLOUT as u32
    | libc::EPOLLPRI as u32
    | libc::EPOLLERR as u32
    | libc::EPOLLHUP as u32
    | libc::EPOLLRDHUP as u32
    | libc::EPOLLRDNORM as u32
    | libc::EPOLLRDBAND as u32
    | libc::EPOLLWRNORM as u32
    | libc::EPOLLWRBAND as u32
    | libc::EPOLLMSG as u32
    | libc::EPOLLEXCLUSIVE as u32
    | ET
    | ONESHOT;

/// epoll_create, epoll_create1.
pub fn epoll_create<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, s) = (c.a, c.s);
    if s == Sysno::epoll_create && (a[0] as i32) <= 0 {
        return err(libc::EINVAL);
    }
    if s == Sysno::epoll_create1 && a[0] as i32 & !libc::EPOLL_CLOEXEC != 0 {
        return err(libc::EINVAL);
    }
    let cloexec = s == Sysno::epoll_create1 && a[0] as i32 & libc::EPOLL_CLOEXEC != 0;
    // SAFETY: a new epoll instance owned by the sentry.
    let h = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if h < 0 {
        return err(errno());
    }
    let set = EpollSet {
        // SAFETY: just made, owned here.
        host: unsafe { OwnedFd::from_raw_fd(h) },
        items: Default::default(),
    };
    r(k.install(
        c.tid,
        OpenFile::new(FileKind::Epoll(set), "anon_inode:[eventpoll]", libc::O_RDWR),
        cloexec,
    ))
}

/// The host fd an epoll instance watches for this file: a stream's (pipe, eventfd, timerfd,
/// socket, tty) or a nested epoll instance's host epoll fd. None: always ready.
fn watched_fd(f: &OpenFile) -> Option<RawFd> {
    match &f.kind {
        FileKind::Epoll(set) => Some(set.host.as_raw_fd()),
        _ if f.is_stream() => f.host_fd(),
        _ => None,
    }
}

fn host_ctl(epfd: RawFd, op: i32, fd: RawFd, events: u32, key: i32) -> Result<(), i32> {
    let mut ev = libc::epoll_event {
        events,
        u64: key as u32 as u64,
    };
    // SAFETY: our own epoll instance and fd; ev outlives the call.
    if unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) } != 0 {
        return Err(errno());
    }
    Ok(())
}

pub fn epoll_ctl<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let a = c.a;
    let ep = tri!(k.file(c.tid, a[0]));
    let target = tri!(k.file(c.tid, a[2]));
    if Rc::ptr_eq(&ep, &target) {
        return err(libc::EINVAL);
    }
    let watched = {
        let t = target.borrow();
        let pollable = t.is_stream()
            || matches!(
                t.kind,
                FileKind::Dev(_) | FileKind::Epoll(_) | FileKind::Signal { .. }
            );
        if !pollable {
            return err(libc::EPERM);
        }
        watched_fd(&t)
    };
    let op = a[1] as i32;
    let ev = if op == libc::EPOLL_CTL_DEL {
        None
    } else {
        let b = tri!(k.read_bytes(c.tid, a[3], 12));
        Some((
            u32::from_ne_bytes(b[..4].try_into().unwrap()) & ALLOWED,
            u64::from_ne_bytes(b[4..].try_into().unwrap()),
        ))
    };
    let mut epb = ep.borrow_mut();
    let FileKind::Epoll(set) = &mut epb.kind else {
        return err(libc::EINVAL);
    };
    // Registrations of files that are gone (their host fds left the host set with them).
    set.items.retain(|_, it| it.file.strong_count() > 0);
    let epfd = set.host.as_raw_fd();
    let fd = a[2] as i32;
    match (op, ev) {
        (libc::EPOLL_CTL_ADD, Some((events, data))) => {
            if set.items.contains_key(&fd) {
                return err(libc::EEXIST);
            }
            let (mut host, mut dup) = (watched, None);
            if let Some(h) = watched {
                match host_ctl(epfd, libc::EPOLL_CTL_ADD, h, events, fd) {
                    Ok(()) => {}
                    Err(libc::EEXIST) => {
                        // SAFETY: duplicate our own fd.
                        let d = unsafe { libc::fcntl(h, libc::F_DUPFD_CLOEXEC, 0) };
                        if d < 0 {
                            return err(errno());
                        }
                        // SAFETY: just made, owned by the registration.
                        let d = unsafe { OwnedFd::from_raw_fd(d) };
                        tri!(host_ctl(
                            epfd,
                            libc::EPOLL_CTL_ADD,
                            d.as_raw_fd(),
                            events,
                            fd
                        ));
                        host = Some(d.as_raw_fd());
                        dup = Some(d);
                    }
                    Err(e) => return err(e),
                }
            }
            set.items.insert(
                fd,
                EpollItem {
                    file: Rc::downgrade(&target),
                    events,
                    data,
                    host,
                    dup,
                    fired: false,
                },
            );
        }
        (libc::EPOLL_CTL_MOD, Some((events, data))) => match set.items.get_mut(&fd) {
            Some(it) => {
                if events & libc::EPOLLEXCLUSIVE as u32 != 0
                    || it.events & libc::EPOLLEXCLUSIVE as u32 != 0
                {
                    return err(libc::EINVAL);
                }
                if let Some(h) = it.host {
                    tri!(host_ctl(epfd, libc::EPOLL_CTL_MOD, h, events, fd));
                }
                it.events = events;
                it.data = data;
                it.fired = false;
            }
            None => return err(libc::ENOENT),
        },
        (libc::EPOLL_CTL_DEL, _) => match set.items.remove(&fd) {
            Some(it) => {
                if let Some(h) = it.host {
                    // ENOENT/EBADF: the host fd already left with its file.
                    let _ = host_ctl(epfd, libc::EPOLL_CTL_DEL, h, 0, fd);
                }
            }
            None => return err(libc::ENOENT),
        },
        _ => return err(libc::EINVAL),
    }
    Outcome::Ret(0)
}

/// epoll_wait, epoll_pwait, epoll_pwait2 (the signal mask of the pwait calls is not applied).
pub fn epoll_wait<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let a = c.a;
    let ep = tri!(k.file(c.tid, a[0]));
    let max = a[2] as i32;
    if max <= 0 || max as usize > (i32::MAX as usize) / 12 {
        return err(libc::EINVAL);
    }
    // Milliseconds, negative: forever. epoll_pwait2 takes a timespec (NULL: forever).
    let timeout: i64 = if c.s == Sysno::epoll_pwait2 {
        if a[3] == 0 {
            -1
        } else {
            let b = tri!(k.read_bytes(c.tid, a[3], 16));
            let sec = i64::from_ne_bytes(b[..8].try_into().unwrap());
            let nsec = i64::from_ne_bytes(b[8..].try_into().unwrap());
            if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
                return err(libc::EINVAL);
            }
            sec.saturating_mul(1000)
                .saturating_add((nsec + 999_999) / 1_000_000)
        }
    } else {
        a[3] as i32 as i64
    };
    let mut out: Vec<u8> = Vec::new();
    let mut n = 0;
    let epfd;
    {
        let mut epb = ep.borrow_mut();
        let FileKind::Epoll(set) = &mut epb.kind else {
            return err(libc::EINVAL);
        };
        set.items.retain(|_, it| it.file.strong_count() > 0);
        epfd = set.host.as_raw_fd();
        // Files without a host fd: always ready for reading and writing; a signalfd when the
        // waiting task has a signal of its mask pending (an edge-triggered one fires again once
        // none was pending).
        for it in set.items.values_mut() {
            if n >= max || it.host.is_some() {
                continue;
            }
            let signalfd = it
                .file
                .upgrade()
                .and_then(|f| super::signalfd::readable(c.tid, &f.borrow()));
            if let Some(ready) = signalfd {
                k.signal_waiters.insert(c.tid);
                if !ready && it.events & ET != 0 {
                    it.fired = false;
                }
                if !ready {
                    continue;
                }
            }
            if it.fired {
                continue;
            }
            let mask = if signalfd.is_some() {
                libc::EPOLLIN
            } else {
                libc::EPOLLIN | libc::EPOLLOUT
            };
            let got = it.events & mask as u32;
            if got == 0 {
                continue;
            }
            out.extend_from_slice(&got.to_ne_bytes());
            out.extend_from_slice(&it.data.to_ne_bytes());
            n += 1;
            it.fired = it.events & (ET | ONESHOT) != 0;
        }
        if n < max {
            // At most 1024 at a time: fewer than asked is a valid answer.
            let room = ((max - n) as usize).min(1024);
            let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; room];
            // SAFETY: our own epoll instance, into our buffer, without waiting.
            let got = unsafe { libc::epoll_wait(epfd, evs.as_mut_ptr(), room as i32, 0) };
            if got < 0 {
                return err(errno());
            }
            for e in &evs[..got as usize] {
                let (events, key) = (e.events, e.u64 as u32 as i32);
                // The sandbox's fd names the registration (and its data).
                let Some(it) = set.items.get(&key) else {
                    continue;
                };
                out.extend_from_slice(&events.to_ne_bytes());
                out.extend_from_slice(&it.data.to_ne_bytes());
                n += 1;
            }
        }
    }
    let expired = c.deadline.is_some_and(|d| Instant::now() >= d);
    if n == 0 && timeout != 0 && !expired {
        let dl = c.deadline.or_else(|| {
            (timeout > 0).then(|| Instant::now() + Duration::from_millis(timeout as u64))
        });
        return Outcome::Park(vec![(epfd, libc::POLLIN)], dl);
    }
    match k.write_bytes(c.tid, a[1], &out) {
        Ok(()) => Outcome::Ret(n as i64),
        Err(e) => err(e),
    }
}
