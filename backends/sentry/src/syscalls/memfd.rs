//! memfd_create: an anonymous host file the sentry owns (a host memfd), given to the workload as
//! a regular file. Reads, writes, `ftruncate`, `fstat`, private mappings (copies, as for every
//! file mapping) and passing it over SCM_RIGHTS work; a writable shared mapping is ENODEV as for
//! any file (see docs/backends/sentry.md).

use super::{err, errno, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{FileKind, HostKind, OpenFile};
use std::os::fd::{FromRawFd, OwnedFd};

/// The flags the sentry passes on (MFD_HUGETLB and its size bits need a host hugetlbfs pool:
/// refused with EINVAL, which callers treat as "no huge pages").
const FLAGS: u32 = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;

pub fn memfd_create<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let flags = c.a[1] as u32;
    if flags & !FLAGS != 0 {
        return err(libc::EINVAL);
    }
    // The kernel's limit: 249 bytes of name.
    let name = match k.read_cstr(c.tid, c.a[0], 250) {
        Ok(n) if n.len() <= 249 => n,
        Ok(_) | Err(libc::ENAMETOOLONG) => return err(libc::EINVAL),
        Err(e) => return err(e),
    };
    let cname = match std::ffi::CString::new(name.clone()) {
        Ok(n) => n,
        Err(_) => return err(libc::EINVAL),
    };
    // SAFETY: memfd_create with a name in our own buffer; close-on-exec in the sentry.
    let h = unsafe { libc::memfd_create(cname.as_ptr(), (flags & FLAGS) | libc::MFD_CLOEXEC) };
    if h < 0 {
        return err(errno());
    }
    // SAFETY: a fresh descriptor of ours.
    let fd = unsafe { OwnedFd::from_raw_fd(h) };
    super::r(k.install(
        c.tid,
        OpenFile::new(
            FileKind::Host {
                fd,
                kind: HostKind::Regular,
            },
            &format!("/memfd:{name} (deleted)"),
            libc::O_RDWR,
        ),
        flags & libc::MFD_CLOEXEC != 0,
    ))
}
