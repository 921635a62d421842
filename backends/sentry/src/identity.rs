//! Host identities and capabilities: the workload's user namespace and the host id it runs as,
//! the sentry's own user namespace when rootless, and the capabilities the sentry keeps.
//!
//! - **Root**: every sandbox's workload runs in a user namespace of its own, as id 65534 there,
//!   mapped onto a host id of its own in `[ID_BASE, ID_BASE + ID_SLOTS)`: the slot is a hash of
//!   the container id, and a lock file held by the sentry for its whole life
//!   (`ID_LOCK_DIR/<id>`, `flock`) makes sure no two live sandboxes share one (a taken slot is
//!   skipped for the next free one). Nothing else on the host is expected to use that range.
//! - **Rootless**: the sentry first enters a user namespace of its own that maps id 0 onto the
//!   caller (all an unprivileged process may map), does its set-up there, and maps the workload's
//!   65534 onto that same single id: the workload runs on the host as the caller.
//!
//! Either way the workload's namespace is created by its first process while it still has the
//! sentry's effective uid, so the sentry (that uid, one namespace up) is its owner: the kernel
//! lets the owner ptrace, signal and read the memory of the workload's processes with no
//! capability at all. That is what lets the sentry drop every host capability it held for
//! set-up but the file ones (`SENTRY_KEEPS`).

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// First host id of the per-sandbox range (2^31: above any id a distribution hands out to
/// accounts or to subordinate ranges).
pub const ID_BASE: u32 = 1 << 31;
/// How many host ids the range holds.
pub const ID_SLOTS: u32 = 1 << 20;
/// Where the root sentries lock the host id they use (one file per id in use, mode 0600).
pub const ID_LOCK_DIR: &str = "/run/hako-sentry-ids";
/// CAP_SYS_ADMIN's number (not in the libc crate).
pub const CAP_SYS_ADMIN: u32 = 21;
/// The workload's uid and gid inside its own user namespace: unprivileged there too.
pub const INSIDE_ID: u32 = 65534;

/// The host capabilities the sentry keeps once the workload runs (bit n = capability n): it
/// does the workload's file operations itself, on files of any owner, after checking them
/// against the workload's virtual credentials (see docs/backends/sentry.md).
pub const SENTRY_KEEPS: u64 = {
    use crate::kernel::creds::{CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID};
    1 << CHOWN | 1 << DAC_OVERRIDE | 1 << DAC_READ_SEARCH | 1 << FOWNER | 1 << FSETID
};

/// The id the workload's 65534 is mapped onto, in the sentry's user namespace, and the lock that
/// reserves it.
pub struct HostIds {
    /// The id in the namespace the sentry runs in (the map's second column).
    pub outer: u32,
    /// The same id as the host sees it.
    pub host: u32,
    lock: Option<IdLock>,
}

/// A held reservation: the directory, the locked file and its name.
pub struct IdLock {
    dir: OwnedFd,
    _file: OwnedFd,
    name: CString,
}

impl IdLock {
    /// Give the id back (the same as dropping the lock).
    pub fn release(self) {}
}

impl Drop for IdLock {
    /// Remove the lock file while it is still held (a sandbox that is starting and opened the
    /// old file sees that it was unlinked once it gets the lock, and tries again). A sentry that
    /// is killed leaves the file, unlocked: `delete` removes it (`forget`), and a later
    /// sandbox hashed to the same slot would take it over anyway.
    fn drop(&mut self) {
        // SAFETY: unlinkat of a name in our own directory descriptor.
        unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) };
    }
}

impl HostIds {
    pub fn take_lock(&mut self) -> Option<IdLock> {
        self.lock.take()
    }

    /// The reserved host id, when there is a reservation (root).
    pub fn reserved(&self) -> Option<u32> {
        self.lock.as_ref().map(|_| self.host)
    }
}

/// `delete`: remove the lock file of host id `host` that container `id` held, once its sentry
/// (just killed) has let it go. Waits up to 10 s for the sentry to die (a SIGKILLed sentry on a
/// loaded 2-CPU machine took over 2 s to let go, and the file stayed behind); leaves the file
/// when it cannot take the lock or the file names another container.
pub fn forget(dir: &std::path::Path, host: u32, id: &str) {
    use std::io::Read;
    let path = dir.join(host.to_string());
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    else {
        return;
    };
    let mut locked = false;
    for _ in 0..1000 {
        // SAFETY: flock on our own descriptor.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            locked = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut text = String::new();
    if !locked || (&f).read_to_string(&mut text).is_err() || text != id {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let same = |m: std::fs::Metadata| {
        f.metadata()
            .is_ok_and(|o| o.ino() == m.ino() && o.dev() == m.dev())
    };
    if std::fs::symlink_metadata(&path).is_ok_and(same) {
        let _ = std::fs::remove_file(&path);
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Root: reserve a host id of the range for container `id`.
pub fn reserve(id: &str) -> Result<HostIds> {
    reserve_in(std::path::Path::new(ID_LOCK_DIR), id)
}

pub fn reserve_in(dir: &std::path::Path, id: &str) -> Result<HostIds> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let c = CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: open of a directory by path; O_NOFOLLOW: a planted symlink is refused.
    let dfd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if dfd < 0 {
        bail!("opening {}: {}", dir.display(), errno());
    }
    // SAFETY: a fresh descriptor.
    let dfd = unsafe { OwnedFd::from_raw_fd(dfd) };
    let dst = crate::vfs::fstat_fd(dfd.as_raw_fd()).map_err(std::io::Error::from_raw_os_error)?;
    // SAFETY: geteuid cannot fail.
    if dst.st_uid != unsafe { libc::geteuid() } || dst.st_mode & 0o022 != 0 {
        bail!(
            "{} must be a directory of ours that no one else can write",
            dir.display()
        );
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let start = (fnv1a(id) % ID_SLOTS as u64) as u32;
    for i in 0..ID_SLOTS.min(4096) {
        let slot = (start + i) % ID_SLOTS;
        let hid = ID_BASE + slot;
        let name = CString::new(hid.to_string())?;
        // A file that is unlinked between our open and our lock is a stale one: try again.
        for _ in 0..8 {
            // SAFETY: openat on our directory descriptor.
            let fd = unsafe {
                libc::openat(
                    dfd.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0o600,
                )
            };
            if fd < 0 {
                bail!("opening {}/{hid}: {}", dir.display(), errno());
            }
            // SAFETY: a fresh descriptor.
            let file = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: flock on our descriptor.
            if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = errno();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    break; // in use by a live sandbox: next slot
                }
                bail!("locking {}/{hid}: {e}", dir.display());
            }
            let mine = crate::vfs::fstat_fd(fd).map_err(std::io::Error::from_raw_os_error)?;
            let mut now: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstatat into a local struct.
            let rc = unsafe {
                libc::fstatat(
                    dfd.as_raw_fd(),
                    name.as_ptr(),
                    &mut now,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 || now.st_ino != mine.st_ino || now.st_dev != mine.st_dev {
                continue;
            }
            // For the administrator: which container holds the id.
            // SAFETY: ftruncate/pwrite on our own descriptor.
            unsafe {
                libc::ftruncate(fd, 0);
                libc::pwrite(fd, id.as_ptr().cast(), id.len(), 0);
            }
            return Ok(HostIds {
                outer: hid,
                host: hid,
                lock: Some(IdLock {
                    dir: dfd,
                    _file: file,
                    name,
                }),
            });
        }
    }
    bail!(
        "no free host id for the sandbox in {}..{} (see {})",
        ID_BASE,
        ID_BASE as u64 + ID_SLOTS as u64,
        dir.display()
    )
}

fn write_proc(rel: &str, text: &str) -> Result<()> {
    use std::io::Write;
    let f = crate::hostproc::open(rel, libc::O_WRONLY)?;
    std::fs::File::from(f)
        .write_all(text.as_bytes())
        .with_context(|| format!("writing /proc/{rel} {:?}", text.trim()))
}

/// Rootless: enter a user namespace of our own that maps 0 onto our own uid and gid (the one
/// mapping an unprivileged process may write; setgroups is denied first, as the kernel
/// requires). Returns the workload's host ids: the caller's.
pub fn enter_own_userns() -> Result<HostIds> {
    // SAFETY: geteuid/getegid/getpid cannot fail.
    let (uid, gid, me) = unsafe { (libc::geteuid(), libc::getegid(), libc::getpid()) };
    let host = host_uid_of(uid);
    // SAFETY: unshare in the single-threaded sentry.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        bail!(
            "rootless: unshare(user namespace): {} (unprivileged user namespaces may be disabled on this host)",
            errno()
        );
    }
    write_proc(&format!("{me}/setgroups"), "deny")?;
    write_proc(&format!("{me}/uid_map"), &format!("0 {uid} 1\n"))?;
    write_proc(&format!("{me}/gid_map"), &format!("0 {gid} 1\n"))?;
    Ok(HostIds {
        outer: 0,
        host,
        lock: None,
    })
}

/// Our uid `uid` as the initial namespace sees it (it differs under rootless podman).
fn host_uid_of(uid: u32) -> u32 {
    let map = crate::hostproc::read_string("self/uid_map");
    for l in map.lines() {
        let v: Vec<u64> = l
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if v.len() == 3 && (v[0]..v[0] + v[2]).contains(&(uid as u64)) {
            return (v[1] + uid as u64 - v[0]) as u32;
        }
    }
    uid
}

/// Parent side: map the workload's 65534 onto `ids.outer` in the user namespace its first
/// process `pid` just made.
pub fn map_workload(pid: i32, ids: &HostIds) -> Result<()> {
    // Root keeps setgroups allowed (the workload drops its supplementary groups with it);
    // rootless, the namespace inherits our own "deny".
    let line = format!("{INSIDE_ID} {} 1\n", ids.outer);
    write_proc(&format!("{pid}/uid_map"), &line)?;
    write_proc(&format!("{pid}/gid_map"), &line)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// capset(2) on the calling thread (hand-written: two raw syscalls, no crate in the tree wraps
/// them, and the workload's child must not allocate).
pub fn set_caps(eff: u64, prm: u64, inh: u64) -> std::io::Result<()> {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let d = [
        CapData {
            effective: eff as u32,
            permitted: prm as u32,
            inheritable: inh as u32,
        },
        CapData {
            effective: (eff >> 32) as u32,
            permitted: (prm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: capset with a valid header and a two-element data array.
    if unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Drop every capability not in `keep` from the bounding set (stops at the first number the
/// kernel does not know), clear the ambient set. Needs CAP_SETPCAP; call before `set_caps`.
pub fn limit_bounding(keep: u64) -> std::io::Result<()> {
    for cap in 0..64u64 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        match unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) } {
            0 => continue,       // dropped already (a second call needs no CAP_SETPCAP)
            r if r < 0 => break, // past the kernel's last capability
            _ => {}
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break; // past the kernel's last capability
            }
            return Err(e);
        }
    }
    // SAFETY: prctl with integer arguments.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Take `id` as real, effective and saved uid and gid, with no supplementary group, keeping
/// `keep` as the only capabilities (effective and permitted). Needs CAP_SETUID, CAP_SETGID and
/// every capability of `keep`. Does not allocate (the workload's child calls it).
pub fn become_with(id: u32, keep: u64) -> std::io::Result<()> {
    let ok = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain credential syscalls on the calling (single-threaded) process.
    unsafe {
        ok(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        ok(libc::setgroups(0, std::ptr::null()))?;
        ok(libc::setresgid(id, id, id))?;
        ok(libc::setresuid(id, id, id))?;
        ok(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))?;
    }
    set_caps(keep, keep, 0)
}

/// Root, after set-up: the sentry takes the workload's host id (so the host kernel lets it
/// signal or trace nothing but its own sandbox, whose user namespace that id owns) and keeps
/// fsuid/fsgid 0, so the files it makes for the workload are root's as before (chowned to a
/// virtual user where needed).
pub fn sentry_becomes(id: u32) -> Result<()> {
    use crate::kernel::creds::{SETGID, SETUID};
    const SETID: u64 = 1 << SETUID | 1 << SETGID;
    limit_bounding(SENTRY_KEEPS).context("limiting the sentry's bounding set")?;
    become_with(id, SENTRY_KEEPS | SETID).context("the sentry taking the sandbox's host id")?;
    // SAFETY: setfsuid/setfsgid with CAP_SETUID/CAP_SETGID; read back with an invalid id.
    let (u, g) = unsafe {
        libc::setfsuid(0);
        libc::setfsgid(0);
        (libc::setfsuid(u32::MAX), libc::setfsgid(u32::MAX))
    };
    if u != 0 || g != 0 {
        bail!("the sentry could not keep fsuid/fsgid 0");
    }
    // No core dump, no ptrace by anything with its ids (a confused sentry of another sandbox).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    Ok(())
}

/// The sentry, once the workload's first process is traced: keep `SENTRY_KEEPS` and nothing
/// else, in every set, bounding set included.
pub fn drop_sentry_caps() -> Result<()> {
    limit_bounding(SENTRY_KEEPS).context("limiting the sentry's bounding set")?;
    set_caps(SENTRY_KEEPS, SENTRY_KEEPS, 0).context("dropping the sentry's capabilities")?;
    Ok(())
}

/// In a workload task (the init, or a process `exec` adds), in its user namespace, just before
/// it is confined: no host privilege. 65534 in its namespace (a host id of the sandbox's own),
/// no supplementary group (rootless the kernel keeps the caller's: setgroups is denied in an
/// unprivileged user namespace), an empty bounding set, no capability; then dumpable again,
/// since the uid change made it non-dumpable and the sentry (its namespace's owner, with no
/// CAP_SYS_PTRACE) must read its memory before its first execve. False when a step failed.
pub fn become_workload(rootless: bool) -> bool {
    let id = INSIDE_ID;
    // SAFETY: credential system calls on this (forked, single-threaded) process.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 && !rootless {
            return false;
        }
        if limit_bounding(0).is_err()
            || libc::setresgid(id, id, id) != 0
            || libc::setresuid(id, id, id) != 0
            || set_caps(0, 0, 0).is_err()
        {
            return false;
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_in_the_range_and_locked_while_held() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ids");
        let mut a = reserve_in(&dir, "same").unwrap();
        assert!(a.host >= ID_BASE && a.host < ID_BASE + ID_SLOTS);
        // The same container id (a hash collision, in effect) while the first is alive: the
        // next slot.
        let mut b = reserve_in(&dir, "same").unwrap();
        assert_ne!(a.host, b.host);
        let (ah, bh) = (a.host, b.host);
        a.take_lock().unwrap().release();
        // Released: the slot is free again.
        let c = reserve_in(&dir, "same").unwrap();
        assert_eq!(c.host, ah);
        b.take_lock().unwrap().release();
        assert!(!dir.join(bh.to_string()).exists());
        // A killed sentry's file (unlocked, naming its container): `delete` removes it; one
        // naming another container, or still held, stays.
        std::fs::write(dir.join("7"), "gone").unwrap();
        std::fs::write(dir.join("8"), "other").unwrap();
        forget(&dir, 7, "gone");
        forget(&dir, 8, "gone");
        assert!(!dir.join("7").exists());
        assert!(dir.join("8").exists());
        forget(&dir, ah, "same");
        assert!(dir.join(ah.to_string()).exists(), "a held id was forgotten");
        drop(c);
        assert!(!dir.join(ah.to_string()).exists());
    }
}
