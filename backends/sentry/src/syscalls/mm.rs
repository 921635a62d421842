//! Memory: file-backed mmap is emulated (the workload holds no host fd): the sentry turns it
//! into an anonymous mapping, copies the file's bytes in, then restores the protections.
//!
//! A writable shared mapping must stay coherent with the file and with other processes' maps
//! of it, so a copy will not do. The trap filter sends such an mmap as a notification; the sentry puts its
//! own host fd of the file into the task's descriptor table, at the very number the task passed
//! (`SECCOMP_IOCTL_NOTIF_ADDFD`, close-on-exec), and lets the mmap run natively on it. That host
//! fd stays in the task's table (until it is replaced by the next such mapping of the same
//! number, or the task execs or exits): no syscall the workload may run natively takes an fd,
//! so it reaches nothing but the mapping's file, which the sandbox opened read-write itself.
//! The ptrace platform's trap filter also makes a listener and sends it these mappings alone
//! (every other trap is a ptrace stop there), so they work the same on every platform. A
//! writable shared mapping that still reaches a ptrace stop (none should) gets ENODEV.

use super::{err, errno, Call, Outcome};
use crate::kernel::{Fixup, Kernel};
use crate::platform::Platform;
use crate::vfs::{DevKind, FileKind, HostKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// mmap of a file (anonymous mappings run natively).
pub fn mmap<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let [_addr, len, prot, flags, fd, off] = c.a;
    let f = match k.file(c.tid, fd) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    if let Some(id) = c.notif {
        // Only writable shared mappings come as notifications (the trap filter, table.rs).
        return shared_native(k, id, &f, fd as i32, off.saturating_add(len));
    }
    {
        let fb = f.borrow();
        match &fb.kind {
            FileKind::Host { .. } if fb.is_dir() => return err(libc::ENODEV),
            FileKind::Host { .. } if fb.is_stream() => return err(libc::ENODEV),
            FileKind::Host { .. } | FileKind::Synth { .. } => {}
            FileKind::Dev(_) => {
                // /dev/zero mappings are anonymous memory.
                c.regs.r10 = (flags | libc::MAP_ANONYMOUS as u64) & !(libc::MAP_SHARED as u64)
                    | libc::MAP_PRIVATE as u64;
                c.regs.r8 = u64::MAX;
                c.regs.r9 = 0;
                return Outcome::Native;
            }
            FileKind::Dir { .. } | FileKind::Epoll(_) | FileKind::Signal { .. } => {
                return err(libc::ENODEV)
            }
        }
        let shared = flags & (libc::MAP_SHARED as u64 | 0x03) == libc::MAP_SHARED as u64
            || flags & 0x03 == 0x03;
        if shared && prot & libc::PROT_WRITE as u64 != 0 {
            // A writable shared file mapping cannot be kept coherent with the sentry's copy.
            return err(libc::ENODEV);
        }
        if off % 4096 != 0 {
            return err(libc::EINVAL);
        }
    }
    let keep = libc::MAP_FIXED as u64
        | libc::MAP_FIXED_NOREPLACE as u64
        | libc::MAP_NORESERVE as u64
        | libc::MAP_POPULATE as u64;
    c.regs.r10 = (flags & keep) | libc::MAP_PRIVATE as u64 | libc::MAP_ANONYMOUS as u64;
    c.regs.rdx = prot | libc::PROT_READ as u64 | libc::PROT_WRITE as u64;
    c.regs.r8 = u64::MAX;
    c.regs.r9 = 0;
    Outcome::NativeThen(Fixup::MmapFill {
        file: f,
        offset: off,
        len,
        prot,
    })
}

/// A writable shared mapping of `f`, run natively by the task on the sentry's own host fd of the
/// file, put into the task's table at `target` (see the module doc). /dev/zero maps a fresh
/// memfd (shared anonymous memory, as Linux gives); other files without a host fd: ENODEV.
fn shared_native<P: Platform>(
    k: &mut Kernel<P>,
    id: u64,
    f: &crate::kernel::FileRef,
    target: i32,
    end: u64,
) -> Outcome {
    let fb = f.borrow();
    let zero;
    let host = match &fb.kind {
        FileKind::Host {
            fd,
            kind: HostKind::Regular,
        } => {
            if fb.flags & libc::O_ACCMODE != libc::O_RDWR {
                return err(libc::EACCES);
            }
            fd.as_raw_fd()
        }
        FileKind::Dev(DevKind::Zero) => {
            // SAFETY: a memfd owned by the sentry, sized to cover the mapping.
            let m = unsafe { libc::memfd_create(c"dev/zero".as_ptr(), libc::MFD_CLOEXEC) };
            if m < 0 {
                return err(errno());
            }
            // SAFETY: just made, owned here (the task gets its own reference).
            zero = unsafe { OwnedFd::from_raw_fd(m) };
            // SAFETY: ftruncate our memfd.
            if unsafe { libc::ftruncate(zero.as_raw_fd(), end as libc::off_t) } != 0 {
                return err(errno());
            }
            zero.as_raw_fd()
        }
        _ => return err(libc::ENODEV),
    };
    match k.plat.add_fd(id, host, target) {
        Ok(()) => Outcome::Native,
        Err(libc::ENOSYS) => err(libc::ENODEV),
        Err(e) => err(e),
    }
}
