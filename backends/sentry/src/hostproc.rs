//! The sentry's view of the host's `/proc`, by descriptor only.
//!
//! The sentry reads a few host proc files for its tracees (`/proc/<pid>/stat`, `environ`,
//! `maps`...), names its own descriptors (`/proc/<pid>/fd/<n>`) and finds a tracee's seccomp
//! listener. Once the spec's mounts exist, the path `/proc` in the sentry's mount namespace is not
//! to be trusted: a mistake there once let a bundle put its own directory over it. So the sentry
//! opens `/proc` once, before it makes any mount, checks that it is procfs, and resolves every
//! later proc path beneath that descriptor (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_XDEV |
//! RESOLVE_NO_MAGICLINKS`), never through the path `/proc`.

use crate::openat2::{openat2, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_XDEV};
use std::io::{Error, Read, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

/// The descriptor (an O_PATH directory fd of a verified procfs), or -1 before `init`.
/// An atomic rather than a OnceLock: a forked sentry closes the descriptors it inherited, so it
/// must be able to replace a stale value with its own freshly opened one.
static PROC: AtomicI32 = AtomicI32::new(-1);

/// Open and verify the host's `/proc` now. The sentry calls this before it makes any mount.
pub fn init() -> Result<()> {
    // SAFETY: open a directory by a constant path.
    let fd = unsafe {
        libc::open(
            c"/proc".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::other(format!(
            "opening the host's /proc: {}",
            Error::last_os_error()
        )));
    }
    // SAFETY: a fresh descriptor of ours.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs into a local struct.
    if unsafe { libc::fstatfs(owned.as_raw_fd(), &mut sfs) } != 0 {
        return Err(Error::last_os_error());
    }
    if sfs.f_type != libc::PROC_SUPER_MAGIC {
        return Err(Error::other(
            "/proc is not a procfs mount (the sentry needs the host's /proc)",
        ));
    }
    // Deliberately kept for the life of the process (it outlives every user).
    use std::os::fd::IntoRawFd;
    PROC.store(owned.into_raw_fd(), Ordering::SeqCst);
    Ok(())
}

fn root() -> Result<RawFd> {
    let fd = PROC.load(Ordering::SeqCst);
    if fd >= 0 {
        return Ok(fd);
    }
    // Outside the sentry process (tests, the front end) nothing has been mounted: open it now.
    init()?;
    Ok(PROC.load(Ordering::SeqCst))
}

/// Open `rel` (e.g. "self/status", "123/fd") beneath the host's /proc.
pub fn open(rel: &str, flags: i32) -> Result<OwnedFd> {
    openat2(
        root()?,
        rel,
        flags,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS,
    )
    .map_err(Error::from_raw_os_error)
}

/// A namespace of host task `pid` (`name`: "pid", "user"...). Its `ns/` directory is resolved
/// beneath /proc as any other path; the last component is the kernel's magic link to the
/// namespace itself, which is what is wanted here, so it alone is followed (by `openat`).
pub fn open_ns(pid: i32, name: &str) -> Result<OwnedFd> {
    let dir = open(&format!("{pid}/ns"), libc::O_PATH | libc::O_DIRECTORY)?;
    let c = std::ffi::CString::new(name).map_err(Error::other)?;
    // SAFETY: openat on our own directory descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn read(rel: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::from(open(rel, libc::O_RDONLY)?).read_to_end(&mut out)?;
    Ok(out)
}

/// The file as text, or "" when it cannot be read (the task went away, say).
pub fn read_string(rel: &str) -> String {
    read(rel)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// readlink of `rel` (its last component is read, not followed: it may be a magic link).
pub fn read_link(rel: &str) -> Result<PathBuf> {
    let (dir, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    let d = open(dir, libc::O_PATH | libc::O_DIRECTORY)?;
    let l = nix::fcntl::readlinkat(&d, name).map_err(Error::from)?;
    Ok(PathBuf::from(l))
}

/// Entry names of the directory `rel` ("." and ".." left out).
pub fn list_dir(rel: &str) -> Result<Vec<String>> {
    let d = open(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let dir = nix::dir::Dir::from_fd(d).map_err(Error::from)?;
    Ok(dir
        .into_iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect())
}

/// The pid of host task `tid` in its innermost pid namespace (the last field of `NSpid` in its
/// status), or None when it is gone.
pub fn ns_pid(tid: i32) -> Option<i32> {
    read_string(&format!("{tid}/status"))
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last()?.parse().ok())
}

/// What one of the sentry's own descriptors refers to.
pub fn fd_path(fd: RawFd) -> Result<PathBuf> {
    // SAFETY: getpid has no side effects.
    let me = unsafe { libc::getpid() };
    read_link(&format!("{me}/fd/{fd}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beneath_proc_only() {
        init().unwrap();
        assert!(read_string("self/status").contains("Pid:"));
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(fd_path(f.as_raw_fd()).unwrap(), PathBuf::from("/dev/null"));
        assert!(list_dir("self/fd")
            .unwrap()
            .contains(&f.as_raw_fd().to_string()));
        // Nothing outside /proc, and no magic-link jumps out of it.
        assert!(open("../etc/passwd", libc::O_RDONLY).is_err());
        assert!(open("self/root/etc/passwd", libc::O_RDONLY).is_err());
        assert!(open("/etc/passwd", libc::O_RDONLY).is_err());
    }

    /// Issue 10, escape 2: once /proc is covered by someone else's directory in the sentry's
    /// mount namespace, the sentry still reads the host's procfs (by its descriptor).
    #[test]
    fn a_mount_over_proc_after_init_changes_nothing() {
        // SAFETY: getuid has no side effects.
        if unsafe { libc::getuid() } != 0 {
            eprintln!("SKIP: needs root (mount namespace)");
            return;
        }
        init().unwrap();
        // In a thread of its own: unshare(CLONE_NEWNS) there leaves the test harness alone.
        std::thread::spawn(|| {
            // SAFETY: namespace and mount calls on this thread's own (new) mount namespace.
            unsafe {
                assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0);
                assert_eq!(
                    libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null()
                    ),
                    0
                );
                assert_eq!(
                    libc::mount(
                        c"fake".as_ptr(),
                        c"/proc".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null()
                    ),
                    0
                );
            }
            std::fs::write("/proc/cpuinfo", "model name\t: FAKE\n").unwrap();
            // The path now leads to the fake; the sentry's descriptor does not.
            assert!(std::fs::read_to_string("/proc/cpuinfo")
                .unwrap()
                .contains("FAKE"));
            let real = read_string("cpuinfo");
            assert!(real.contains("processor"), "{real}");
            assert!(!real.contains("FAKE"));
            assert!(read_string("self/status").contains("Pid:"));
        })
        .join()
        .unwrap();
    }
}
