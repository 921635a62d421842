//! epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait: the interest list is kept by
//! the sentry and evaluated at each wait. Level-triggered items are polled. An EPOLLET item on a
//! host descriptor gets a host epoll instance of its own holding that descriptor, edge-triggered:
//! the host kernel records each edge (new data, a new connection, room to write) as Linux does
//! for the workload, and the sentry harvests it without waiting; a task waits on that instance's
//! readiness, so a descriptor that stays ready without a new edge wakes nobody (no spin).

use super::{err, r, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{EpollItem, FileKind, OpenFile};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use syscalls::Sysno;

/// A host epoll instance watching host fd `h` for `events` (EPOLLET among them).
fn edge_watch(h: RawFd, events: u32) -> Result<Rc<OwnedFd>, i32> {
    // SAFETY: a new host epoll instance of ours.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(super::errno());
    }
    // SAFETY: a fresh descriptor.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    let mut ev = libc::epoll_event {
        events: (events & 0xffff) | libc::EPOLLET as u32,
        u64: 0,
    };
    // SAFETY: register our host fd with our epoll instance.
    if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, h, &mut ev) } != 0 {
        return Err(super::errno());
    }
    Ok(Rc::new(ep))
}

/// The edges the host recorded on an EPOLLET item since the last harvest (0: none).
fn edge_harvest(ep: &OwnedFd) -> i16 {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: epoll_wait without waiting into one local event.
    let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), &mut ev, 1, 0) };
    if n == 1 {
        ev.events as u16 as i16
    } else {
        0
    }
}

/// epoll_create, epoll_create1.
pub fn epoll_create<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, s) = (c.a, c.s);
    if s == Sysno::epoll_create && (a[0] as i32) <= 0 {
        return err(libc::EINVAL);
    }
    let cloexec = s == Sysno::epoll_create1 && a[0] as i32 & libc::EPOLL_CLOEXEC != 0;
    r(k.install(
        c.tid,
        OpenFile::new(
            FileKind::Epoll(Default::default()),
            "anon_inode:[eventpoll]",
            libc::O_RDWR,
        ),
        cloexec,
    ))
}

pub fn epoll_ctl<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let a = c.a;
    let ep = match k.file(c.tid, a[0]) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    let target = match k.file(c.tid, a[2]) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    if Rc::ptr_eq(&ep, &target) {
        return err(libc::EINVAL);
    }
    {
        let t = target.borrow();
        let pollable = t.is_stream() || matches!(t.kind, FileKind::Dev(_) | FileKind::Epoll(_));
        if !pollable {
            return err(libc::EPERM);
        }
    }
    let op = a[1] as i32;
    let ev = if op == libc::EPOLL_CTL_DEL {
        None
    } else {
        match k.read_bytes(c.tid, a[3], 12) {
            Ok(b) => Some((
                u32::from_ne_bytes(b[..4].try_into().unwrap()),
                u64::from_ne_bytes(b[4..].try_into().unwrap()),
            )),
            Err(e) => return err(e),
        }
    };
    let mut epb = ep.borrow_mut();
    let FileKind::Epoll(set) = &mut epb.kind else {
        return err(libc::EINVAL);
    };
    set.retain(|_, it| it.file.strong_count() > 0);
    let fd = a[2] as i32;
    match (op, ev) {
        (libc::EPOLL_CTL_ADD, Some((events, data))) => {
            if set.contains_key(&fd) {
                return err(libc::EEXIST);
            }
            let edge = match edge_for(&target, events) {
                Ok(e) => e,
                Err(e) => return err(e),
            };
            set.insert(
                fd,
                EpollItem {
                    file: Rc::downgrade(&target),
                    events,
                    data,
                    edge,
                },
            );
        }
        (libc::EPOLL_CTL_MOD, Some((events, data))) => match set.get_mut(&fd) {
            Some(it) => {
                // A new registration: the host re-arms it and checks readiness afresh, as
                // Linux does on EPOLL_CTL_MOD.
                it.edge = match edge_for(&target, events) {
                    Ok(e) => e,
                    Err(e) => return err(e),
                };
                it.events = events;
                it.data = data;
            }
            None => return err(libc::ENOENT),
        },
        (libc::EPOLL_CTL_DEL, _) => {
            if set.remove(&fd).is_none() {
                return err(libc::ENOENT);
            }
        }
        _ => return err(libc::EINVAL),
    }
    Outcome::Ret(0)
}

/// The host edge watch an item needs: EPOLLET on a host descriptor.
fn edge_for(target: &crate::kernel::FileRef, events: u32) -> Result<Option<Rc<OwnedFd>>, i32> {
    match target.borrow().host_fd() {
        Some(h) if events & libc::EPOLLET as u32 != 0 => edge_watch(h, events).map(Some),
        _ => Ok(None),
    }
}

/// epoll_wait, epoll_pwait (the signal mask of epoll_pwait is not applied).
pub fn epoll_wait<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let a = c.a;
    // epoll_wait / epoll_pwait (the signal mask of epoll_pwait is not applied).
    let ep = match k.file(c.tid, a[0]) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    let max = a[2] as i32;
    if max <= 0 {
        return err(libc::EINVAL);
    }
    let timeout = a[3] as i32;
    let mut out: Vec<u8> = Vec::new();
    let mut host = Vec::new();
    let mut n = 0;
    {
        let mut epb = ep.borrow_mut();
        let FileKind::Epoll(set) = &mut epb.kind else {
            return err(libc::EINVAL);
        };
        set.retain(|_, it| it.file.strong_count() > 0);
        for it in set.values_mut() {
            if n >= max || it.events & !(libc::EPOLLET as u32 | libc::EPOLLONESHOT as u32) == 0 {
                continue;
            }
            let Some(f) = it.file.upgrade() else { continue };
            let want = (it.events & 0xffff) as i16 | libc::POLLERR | libc::POLLHUP;
            let got = match (f.borrow().host_fd(), &it.edge) {
                (Some(_), Some(ep)) => {
                    host.push((ep.as_raw_fd(), libc::POLLIN));
                    edge_harvest(ep) & want
                }
                (Some(h), None) => {
                    host.push((h, want));
                    let mut p = libc::pollfd {
                        fd: h,
                        events: want,
                        revents: 0,
                    };
                    // SAFETY: poll our fd without waiting.
                    unsafe { libc::poll(&mut p, 1, 0) };
                    p.revents
                }
                (None, _) => want & (libc::POLLIN | libc::POLLOUT),
            };
            if got != 0 {
                out.extend_from_slice(&(got as u16 as u32).to_ne_bytes());
                out.extend_from_slice(&it.data.to_ne_bytes());
                n += 1;
                if it.events & libc::EPOLLONESHOT as u32 != 0 {
                    it.events = 0;
                }
            }
        }
    }
    let expired = c.deadline.is_some_and(|d| std::time::Instant::now() >= d);
    if n == 0 && timeout != 0 && !expired {
        let dl = c.deadline.or_else(|| {
            (timeout > 0).then(|| {
                std::time::Instant::now() + std::time::Duration::from_millis(timeout as u64)
            })
        });
        return Outcome::Park(host, dl);
    }
    match k.write_bytes(c.tid, a[1], &out) {
        Ok(()) => Outcome::Ret(n as i64),
        Err(e) => err(e),
    }
}
