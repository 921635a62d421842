//! Keep the host's hako binary out of reach of the containers it builds (the CVE-2019-5736
//! class).
//!
//! The container backend does not re-exec itself: the init and every `exec`'d process run
//! hako's own code inside the container until their execve. While they do, their
//! `/proc/<pid>/exe` is this binary. Two ways in were shown:
//! - a process in the container opens `/proc/<pid>/exe` (O_PATH) and, once the runtime is gone
//!   and the text is no longer busy, reopens it for writing;
//! - the workload (or an exec'd program) is a script whose interpreter is `#!/proc/self/exe`: the
//!   kernel then runs this binary *as a container process*, dumpable, for anyone in the
//!   container to open.
//!
//! The backend makes those processes non-dumpable (which shuts the first way for everyone
//! without CAP_SYS_PTRACE in the host user namespace). The second way needs the binary itself
//! to be unwritable through any path the container can get to it, so before `create`, `run`
//! and `exec` on such a backend (`Backend::runs_hako_code_inside`: the container backend) the
//! front end re-executes itself from a sealed view of its own file:
//! - root (or a caller with CAP_SYS_ADMIN over its mount namespace): a detached, read-only bind
//!   mount of the binary (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_RDONLY)`),
//!   attached nowhere and executed by fd. Reopening it for writing fails with EROFS. No copy is
//!   made: the page cache is shared with every other hako.
//! - otherwise, if the caller could write the binary (so a container running as the caller
//!   could too): a sealed memfd copy (F_SEAL_WRITE and friends).
//! - otherwise (the usual rootless case: a root-owned binary) nothing is needed: no process in
//!   the container can write what the caller itself cannot.
//!
//! The re-executed hako sees its exe on a read-only mount (or sealed) and goes on.
//!
//! Hand-written with raw syscalls: neither nix nor another crate wraps open_tree,
//! mount_setattr or execveat.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// How our own binary is held right now.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// On a read-only mount, or a write-sealed memfd: nothing can write it.
    Sealed,
    /// On a writable mount, and we could write it.
    Writable,
    /// On a writable mount, but not writable by us (nor so by a container running as us).
    NotOurs,
}

fn open_self(flags: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: open with a static path.
    let fd = unsafe { libc::open(c"/proc/self/exe".as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening /proc/self/exe");
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether our binary is sealed, writable by us, or neither.
pub fn held() -> Result<Held> {
    let fd = open_self(libc::O_RDONLY)?;
    // SAFETY: fstatvfs into a local struct.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut vfs) } != 0 {
        return Err(std::io::Error::last_os_error()).context("fstatvfs /proc/self/exe");
    }
    if vfs.f_flag & libc::ST_RDONLY != 0 {
        return Ok(Held::Sealed);
    }
    // SAFETY: fcntl query; EINVAL for anything but a memfd.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return Ok(Held::Sealed);
    }
    // SAFETY: access(2) with a static path, by the real ids as the container's would be.
    let writable = unsafe { libc::access(c"/proc/self/exe".as_ptr(), libc::W_OK) } == 0;
    Ok(if writable {
        Held::Writable
    } else {
        Held::NotOurs
    })
}

/// A detached read-only bind mount of our binary: an O_PATH descriptor of it.
fn readonly_view() -> std::io::Result<OwnedFd> {
    readonly_view_of(c"/proc/self/exe")
}

/// A detached read-only bind mount of `path`.
fn readonly_view_of(path: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    // SAFETY: open_tree with a NUL-terminated path; returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr on our descriptor with a properly sized struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// A write-sealed memfd copy of our binary.
fn sealed_copy() -> Result<OwnedFd> {
    let src = open_self(libc::O_RDONLY)?;
    // SAFETY: memfd_create with a static name.
    let fd = unsafe {
        libc::memfd_create(
            c"hako".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: a fresh descriptor.
    let mfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut from = std::fs::File::from(src);
    let mut to = std::fs::File::from(mfd);
    std::io::copy(&mut from, &mut to).context("copying the hako binary into a memfd")?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: sealing our own memfd.
    if unsafe { libc::fcntl(to.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(std::io::Error::last_os_error()).context("sealing the memfd copy");
    }
    Ok(OwnedFd::from(to))
}

fn execveat(fd: &OwnedFd) -> std::io::Error {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()).unwrap_or_default())
        .collect();
    // The re-executed binary sees "/" as its /proc/self/exe (the root of the detached mount)
    // or a memfd: tell it where it was installed, for what lives next to it (the guest agent).
    let original = std::env::var_os(hako_contract::proc::EXE_ENV)
        .or_else(|| std::env::current_exe().ok().map(|p| p.into_os_string()));
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != hako_contract::proc::EXE_ENV)
        .chain(original.map(|o| (hako_contract::proc::EXE_ENV.into(), o)))
        .map(|(k, v)| {
            let mut b = k.into_encoded_bytes();
            b.push(b'=');
            b.extend(v.into_encoded_bytes());
            CString::new(b).unwrap_or_default()
        })
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: execveat with NUL-terminated arrays that outlive the call; returns only on error.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    std::io::Error::last_os_error()
}

/// Make sure the binary running now cannot be written through any path a container can reach:
/// returns when it cannot (already sealed, or not ours to write), re-executes otherwise.
pub fn ensure_sealed() -> Result<()> {
    match held()? {
        Held::Sealed | Held::NotOurs => return Ok(()),
        Held::Writable => {}
    }
    let view = match readonly_view() {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOSYS)) => {
            sealed_copy()?
        }
        Err(e) => return Err(e).context("making a read-only view of the hako binary"),
    };
    let e = execveat(&view);
    bail!("re-executing hako from a sealed view of its binary: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_copy_refuses_writes() {
        let fd = sealed_copy().unwrap();
        // SAFETY: F_GET_SEALS on our memfd.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert!(seals & libc::F_SEAL_WRITE != 0);
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        use std::io::Write;
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"\x7fELF"))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    }

    #[test]
    fn a_readonly_view_refuses_writes() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: not root (open_tree needs CAP_SYS_ADMIN)");
            return;
        }
        // A file that is not running (a running one answers ETXTBSY before EROFS).
        let f = std::env::temp_dir().join(format!("hako-exe-view-{}", std::process::id()));
        std::fs::write(&f, b"\x7fELF").unwrap();
        let c = CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        let fd = readonly_view_of(&c).unwrap();
        let _ = std::fs::remove_file(&f);
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        // SAFETY: fstatvfs into a local struct (O_PATH descriptors allow it).
        let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut vfs) }, 0);
        assert!(vfs.f_flag & libc::ST_RDONLY != 0);
    }
}
