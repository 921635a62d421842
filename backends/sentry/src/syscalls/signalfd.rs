//! signalfd and signalfd4. A signalfd reads the pending signals of the task that reads it, so the
//! sentry, whose own signals a host signalfd would read, never reads one: the read runs in the
//! task. On the notification platforms the sentry puts its host signalfd (made with the same mask)
//! into the task's own table at the number the task read (`SECCOMP_IOCTL_NOTIF_ADDFD`, as for
//! shared mappings: no call the task may run natively takes a descriptor, and a signalfd reaches
//! nothing but the reader's own signals) and lets the read run natively: the host kernel then
//! dequeues, blocks, and is interrupted exactly as Linux does. On the ptrace platform the read
//! becomes `rt_sigtimedwait` on the task's own buffer, whose siginfo is turned into a
//! `signalfd_siginfo` at the syscall's exit. Readiness (poll, select, epoll) is the polling
//! task's pending signals in the mask, from its host /proc status.

use super::{err, errno, r, Call, Outcome};
use crate::kernel::{FileRef, Fixup, Kernel};
use crate::platform::{Platform, Regs};
use crate::vfs::{FileKind, OpenFile};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use syscalls::Sysno;

/// `sizeof(struct signalfd_siginfo)`, the unit of a signalfd read.
const SIGINFO: usize = 128;

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Make (`fd` None) or update a host signalfd for `mask`.
fn host_signalfd(fd: Option<RawFd>, mask: u64) -> Result<Option<OwnedFd>, i32> {
    // SAFETY: signalfd4 with an 8-byte kernel sigset.
    let n = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            fd.unwrap_or(-1),
            &mask as *const u64,
            8usize,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        )
    } as i32;
    if n < 0 {
        return Err(errno());
    }
    // SAFETY: a fresh fd when we asked for one.
    Ok(fd.is_none().then(|| unsafe { OwnedFd::from_raw_fd(n) }))
}

/// signalfd, signalfd4.
pub fn signalfd<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let flags = if c.s == Sysno::signalfd4 {
        a[3] as i32
    } else {
        0
    };
    if flags & !(libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) != 0 || a[2] != 8 {
        return err(libc::EINVAL);
    }
    // As Linux: SIGKILL and SIGSTOP are never read through a signalfd.
    let mask = tri!(k.read_val::<u64>(tid, a[1])) & !(bit(libc::SIGKILL) | bit(libc::SIGSTOP));
    if a[0] as i32 != -1 {
        let f = tri!(k.file(tid, a[0]));
        let mut fb = f.borrow_mut();
        let FileKind::Signal { fd, mask: m } = &mut fb.kind else {
            return err(libc::EINVAL);
        };
        tri!(host_signalfd(Some(fd.as_raw_fd()), mask));
        *m = mask;
        return Outcome::Ret(a[0] as i32 as i64);
    }
    let fd = tri!(host_signalfd(None, mask)).expect("a new signalfd");
    r(k.install(
        tid,
        OpenFile::new(
            FileKind::Signal { fd, mask },
            "anon_inode:[signalfd]",
            libc::O_RDWR | (flags & libc::O_NONBLOCK),
        ),
        flags & libc::SFD_CLOEXEC != 0,
    ))
}

/// read(2) of signalfd `f`, in the reading task itself (see the module's comment).
pub fn read<P: Platform>(k: &mut Kernel<P>, c: &mut Call, f: &FileRef) -> Outcome {
    let (vfd, buf, count) = (c.a[0] as i32, c.a[1], c.a[2] as usize);
    if count < SIGINFO {
        return err(libc::EINVAL);
    }
    let fb = f.borrow();
    let FileKind::Signal { fd, mask } = &fb.kind else {
        return err(libc::EINVAL);
    };
    let nonblock = fb.flags & libc::O_NONBLOCK != 0;
    if let Some(id) = c.notif {
        // The host file's O_NONBLOCK is the sandbox's (the task's copy shares the description).
        let fl = if nonblock { libc::O_NONBLOCK } else { 0 };
        // SAFETY: fcntl on our own fd.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl) } < 0 {
            return err(errno());
        }
        return match k.plat.add_fd(id, fd.as_raw_fd(), vfd) {
            Ok(()) => Outcome::Native,
            Err(e) => err(e),
        };
    }
    // ptrace stop: rt_sigtimedwait(buf, buf, nonblock ? buf + 8 : NULL, 8). The kernel reads the
    // set and the timeout before it writes the siginfo over them; the bytes are put back if no
    // signal comes.
    let saved_bytes = tri!(k.read_bytes(c.tid, buf, 24));
    let mut scratch = [0u8; 24];
    scratch[..8].copy_from_slice(&mask.to_ne_bytes());
    tri!(k.write_bytes(c.tid, buf, &scratch));
    let saved = *c.regs;
    c.regs.orig_rax = libc::SYS_rt_sigtimedwait as u64;
    c.regs.rdi = buf;
    c.regs.rsi = buf;
    c.regs.rdx = if nonblock { buf + 8 } else { 0 };
    c.regs.r10 = 8;
    Outcome::NativeThen(Fixup::SignalfdRead {
        saved,
        bytes: saved_bytes,
    })
}

/// At the exit of the `rt_sigtimedwait` a ptrace-platform read became (`regs` at that exit,
/// `saved` the read's own): the registers to resume with, and the task's buffer rewritten.
pub fn read_done<P: Platform>(
    k: &mut Kernel<P>,
    tid: i32,
    regs: &Regs,
    saved: &Regs,
    bytes: &[u8],
) -> Regs {
    let mut out = *saved;
    let buf = saved.rsi;
    let ret = regs.rax as i64;
    out.rax = if ret > 0 {
        match k.read_bytes(tid, buf, SIGINFO) {
            Ok(si) => match k.write_bytes(tid, buf, &from_siginfo(&si)) {
                Ok(()) => SIGINFO as u64,
                Err(e) => -(e as i64) as u64,
            },
            Err(e) => -(e as i64) as u64,
        }
    } else {
        let _ = k.write_bytes(tid, buf, bytes);
        ret as u64
    };
    out
}

/// A `siginfo_t` (x86_64 layout) as the `signalfd_siginfo` Linux's signalfd fills from it.
fn from_siginfo(si: &[u8]) -> [u8; SIGINFO] {
    let u32_at = |o: usize| u32::from_ne_bytes(si[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_ne_bytes(si[o..o + 8].try_into().unwrap());
    let (signo, errno, code) = (u32_at(0), u32_at(4), u32_at(8) as i32);
    let mut o = [0u8; SIGINFO];
    let mut put32 = |at: usize, v: u32| o[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    put32(0, signo);
    put32(4, errno);
    put32(8, code as u32);
    let mut w64 = Vec::new();
    let sig = signo as i32;
    if code <= 0 && code != libc::SI_TIMER {
        // kill, tkill, sigqueue: sender's pid and uid, the value.
        put32(12, u32_at(16));
        put32(16, u32_at(20));
        put32(44, u32_at(24));
        w64.push((48, u64_at(24)));
    } else if code == libc::SI_TIMER {
        put32(24, u32_at(16)); // timer id
        put32(32, u32_at(20)); // overrun
        put32(44, u32_at(24));
        w64.push((48, u64_at(24)));
    } else if sig == libc::SIGCHLD {
        put32(12, u32_at(16));
        put32(16, u32_at(20));
        put32(40, u32_at(24)); // status
        w64.push((56, u64_at(32)));
        w64.push((64, u64_at(40)));
    } else if matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
    ) {
        w64.push((72, u64_at(16))); // address
    } else if sig == libc::SIGPOLL {
        put32(28, u64_at(16) as u32); // band
        put32(20, u32_at(24)); // fd
    } else if sig == libc::SIGSYS {
        w64.push((88, u64_at(16))); // call address
        put32(84, u32_at(24)); // syscall
        put32(96, u32_at(28)); // arch
    }
    for (at, v) in w64 {
        o[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
    o
}

/// For poll, select and epoll: `Some(readable)` when `f` is a signalfd, as task `tid` sees it.
pub fn readable(tid: i32, f: &OpenFile) -> Option<bool> {
    let FileKind::Signal { mask, .. } = &f.kind else {
        return None;
    };
    let (pending, _) = crate::kernel::task::signals_of(tid);
    Some(pending & mask != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_siginfo_becomes_a_signalfd_siginfo() {
        let mut si = [0u8; 128];
        si[0..4].copy_from_slice(&(libc::SIGUSR1 as u32).to_ne_bytes());
        si[8..12].copy_from_slice(&0u32.to_ne_bytes()); // SI_USER
        si[16..20].copy_from_slice(&7u32.to_ne_bytes());
        si[20..24].copy_from_slice(&1000u32.to_ne_bytes());
        let o = from_siginfo(&si);
        let at = |i: usize| u32::from_ne_bytes(o[i..i + 4].try_into().unwrap());
        assert_eq!((at(0), at(8), at(12), at(16)), (10, 0, 7, 1000));
    }

    #[test]
    fn a_child_exit_carries_its_status() {
        let mut si = [0u8; 128];
        si[0..4].copy_from_slice(&(libc::SIGCHLD as u32).to_ne_bytes());
        si[8..12].copy_from_slice(&(libc::CLD_EXITED as u32).to_ne_bytes());
        si[16..20].copy_from_slice(&42u32.to_ne_bytes());
        si[24..28].copy_from_slice(&3u32.to_ne_bytes());
        let o = from_siginfo(&si);
        let at = |i: usize| u32::from_ne_bytes(o[i..i + 4].try_into().unwrap());
        assert_eq!((at(12), at(40)), (42, 3));
    }
}
