//! Memory: file-backed mmap is emulated (the workload never holds a host fd): the sentry turns it
//! into an anonymous mapping, copies the file's bytes in, then restores the protections.

use super::{err, Call, Outcome};
use crate::kernel::{Fixup, Kernel};
use crate::platform::Platform;
use crate::vfs::FileKind;

/// mmap of a file (anonymous mappings run natively).
pub fn mmap<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let [_addr, len, prot, flags, fd, off] = c.a;
    let f = match k.file(c.tid, fd) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
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
            FileKind::Dir { .. } | FileKind::Epoll(_) => return err(libc::ENODEV),
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
