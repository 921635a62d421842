//! Small wrappers over libc that the agent's modules share: errors as one line of text, C
//! strings, mount, directories, pipes and socket pairs.

use std::ffi::CString;
use std::fs;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) type Res<T> = Result<T, String>;

pub(crate) fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

pub(crate) fn cstr(s: &str) -> Res<CString> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

pub(crate) fn cpath(p: &Path) -> Res<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", p.display()))
}

pub(crate) fn mount(src: &str, target: &Path, fstype: &str, flags: u64, data: &str) -> Res<()> {
    let (s, t, f, d) = (cstr(src)?, cpath(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            if fstype.is_empty() {
                std::ptr::null()
            } else {
                f.as_ptr()
            },
            flags as libc::c_ulong,
            if data.is_empty() {
                std::ptr::null()
            } else {
                d.as_ptr().cast()
            },
        )
    };
    if r != 0 {
        return Err(format!(
            "mount {src} on {} ({fstype}): {}",
            target.display(),
            errno()
        ));
    }
    Ok(())
}

pub(crate) fn mkdir_p(p: &Path) -> Res<()> {
    fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))
}

pub(crate) trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}
impl NoCtty for fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
    }
}

pub(crate) fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", errno()));
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl on our fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

pub(crate) fn unix_pair() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair into a 2-element array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(format!("socketpair: {}", errno()));
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn sys(r: libc::c_long, what: &str) -> Res<()> {
    if r < 0 {
        Err(format!("{what}: {}", errno()))
    } else {
        Ok(())
    }
}
