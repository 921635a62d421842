//! memfd_create: an anonymous file the sentry owns (a host memfd), which the sandbox reads,
//! writes, truncates, seals and maps like any regular file of its own (private and read-only
//! shared mappings are copies; see `mm.rs`).

use super::{err, errno, r, Call, Outcome};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::vfs::{FileKind, HostKind, OpenFile};
use std::os::fd::{FromRawFd, OwnedFd};

/// Flags passed on to the host: sealing and the exec/noexec choice (Linux 6.3). Huge pages
/// (MFD_HUGETLB, a host-wide pool) are refused with EINVAL, as a kernel without them says.
const HOST_FLAGS: u32 = libc::MFD_ALLOW_SEALING | 0x8 /* MFD_NOEXEC_SEAL */ | 0x10 /* MFD_EXEC */;

pub fn memfd_create<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let flags = c.a[1] as u32;
    if flags & !(HOST_FLAGS | libc::MFD_CLOEXEC) != 0 {
        return err(libc::EINVAL);
    }
    // The name (at most 249 bytes, as Linux allows) only labels the file.
    let name = match k.read_cstr(c.tid, c.a[0], 250) {
        Ok(n) => n,
        Err(libc::ENAMETOOLONG) => return err(libc::EINVAL),
        Err(e) => return err(e),
    };
    let cname = tri!(crate::vfs::cstr(&name));
    // SAFETY: a memfd owned by the sentry.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), (flags & HOST_FLAGS) | libc::MFD_CLOEXEC) };
    if fd < 0 {
        return err(errno());
    }
    // SAFETY: just made, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    r(k.install(
        c.tid,
        OpenFile::new(
            FileKind::Host {
                fd,
                kind: HostKind::Regular,
            },
            &format!("/memfd:{name} (deleted)"),
            libc::O_RDWR | libc::O_LARGEFILE,
        ),
        flags & libc::MFD_CLOEXEC != 0,
    ))
}
