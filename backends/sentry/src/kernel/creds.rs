//! Virtual identities: each process's uids, gids and five capability sets, the kernel's rules
//! for changing them on a uid change or execve, and the permission checks every path and
//! signal call asks of them.
//!
//! The sentry is root on the host, so the host kernel allows whatever the sentry asks of it: the
//! permission decision is the sentry's, made against the caller's virtual creds and capabilities
//! before the host call is issued. The rules below follow the kernel's `security/commoncap.c`,
//! `kernel/sys.c` and `fs/namei.c` for a file without file capabilities (the sentry honours
//! neither file capabilities nor setuid bits on execve).

use crate::vfs::fstat_fd;
use oci_spec::runtime::LinuxCapabilities;
use std::os::fd::RawFd;

/// Virtual identity of a process.
#[derive(Debug, Clone)]
pub struct Creds {
    pub ruid: u32,
    pub euid: u32,
    pub suid: u32,
    pub rgid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub groups: Vec<u32>,
    /// The five capability sets and the securebits (see `syscalls::caps`).
    pub caps: Caps,
}

/// A process's capability sets (bit n = capability n, as in the kernel) and securebits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub eff: u64,
    pub prm: u64,
    pub inh: u64,
    pub bnd: u64,
    pub amb: u64,
    pub securebits: u32,
}

pub const CHOWN: u32 = 0;
pub const DAC_OVERRIDE: u32 = 1;
pub const DAC_READ_SEARCH: u32 = 2;
pub const FOWNER: u32 = 3;
pub const FSETID: u32 = 4;
pub const KILL: u32 = 5;
pub const SETGID: u32 = 6;
pub const SETUID: u32 = 7;
pub const SETPCAP: u32 = 8;
/// The highest capability number the sandbox knows (its /proc/sys/kernel/cap_last_cap).
pub const LAST_CAP: u32 = 40;
pub const ALL: u64 = (1u64 << (LAST_CAP + 1)) - 1;

// securebits (linux/securebits.h): each bit has a "locked" bit just above it.
pub const NOROOT: u32 = 1 << 0;
pub const NO_SETUID_FIXUP: u32 = 1 << 2;
pub const KEEP_CAPS: u32 = 1 << 4;
pub const KEEP_CAPS_LOCKED: u32 = 1 << 5;
pub const NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
pub const ALL_BITS: u32 = 0x55;
pub const ALL_LOCKS: u32 = 0xaa;

/// The first process's sets from `process.capabilities`. Absent: every capability (runc leaves
/// the process's capabilities alone when the spec names none).
pub fn from_spec(c: Option<&LinuxCapabilities>) -> anyhow::Result<Caps> {
    let Some(c) = c else {
        return Ok(Caps {
            eff: ALL,
            prm: ALL,
            inh: 0,
            bnd: ALL,
            amb: 0,
            securebits: 0,
        });
    };
    let s = hako_linux::caps::Sets::from_spec(c)?;
    Ok(Caps {
        eff: s.effective & ALL,
        prm: s.permitted & ALL,
        inh: s.inheritable & ALL,
        bnd: s.bounding & ALL,
        amb: s.ambient & s.permitted & s.inheritable & ALL,
        securebits: 0,
    })
}

pub fn bit(cap: u32) -> u64 {
    1u64 << cap
}

impl Creds {
    pub fn capable(&self, cap: u32) -> bool {
        self.caps.eff & bit(cap) != 0
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.egid == gid || self.groups.contains(&gid)
    }

    /// The owner of the file, or CAP_FOWNER (the kernel's `inode_owner_or_capable`).
    pub fn owns(&self, st: &libc::stat) -> bool {
        st.st_uid == self.euid || self.capable(FOWNER)
    }

    /// execve of a file without file capabilities: root (real or effective, unless
    /// SECBIT_NOROOT) gets bounding ∪ inheritable; everyone keeps the ambient set. The
    /// effective set is the new permitted set for an effective root, the ambient set otherwise.
    pub fn exec_caps(&mut self) {
        let root = self.caps.securebits & NOROOT == 0 && (self.euid == 0 || self.ruid == 0);
        let c = &mut self.caps;
        c.prm = if root { c.bnd | c.inh } else { 0 } | c.amb;
        c.eff = if root && self.euid == 0 { c.prm } else { c.amb };
        c.securebits &= !KEEP_CAPS;
    }

    /// After a uid change (`cap_emulate_setxuid`): leaving uid 0 altogether drops the permitted
    /// and effective sets (unless keepcaps) and the ambient set; the effective set follows euid.
    pub fn fix_setuid(&mut self, old: (u32, u32, u32)) {
        if self.caps.securebits & NO_SETUID_FIXUP != 0 {
            return;
        }
        let was_root = old.0 == 0 || old.1 == 0 || old.2 == 0;
        let is_root = self.ruid == 0 || self.euid == 0 || self.suid == 0;
        let c = &mut self.caps;
        if was_root && !is_root {
            if c.securebits & KEEP_CAPS == 0 {
                c.prm = 0;
                c.eff = 0;
            }
            c.amb = 0;
        }
        if old.1 == 0 && self.euid != 0 {
            c.eff = 0;
        }
        if old.1 != 0 && self.euid == 0 {
            c.eff = c.prm;
        }
    }

    /// kill(2)'s permission check (`kill_ok_by_cred`).
    pub fn may_signal(&self, target: &Creds) -> bool {
        [self.euid, self.ruid]
            .iter()
            .any(|u| *u == target.ruid || *u == target.suid)
            || self.capable(KILL)
    }
}

/// The capability lines of /proc/<pid>/status.
pub fn status_lines(c: &Caps) -> String {
    format!(
        "CapInh:\t{:016x}\nCapPrm:\t{:016x}\nCapEff:\t{:016x}\nCapBnd:\t{:016x}\nCapAmb:\t{:016x}\n",
        c.inh, c.prm, c.eff, c.bnd, c.amb
    )
}

/// May `c` access the file `st` for `want` (r=4, w=2, x=1)? The kernel's
/// `generic_permission`: the owner/group/other bits, then CAP_DAC_READ_SEARCH (read, and search
/// of directories) and CAP_DAC_OVERRIDE (anything, but exec only of a file with some x bit).
pub fn may(st: &libc::stat, c: &Creds, want: u32) -> bool {
    let bits = if st.st_uid == c.euid {
        (st.st_mode >> 6) & 7
    } else if c.in_group(st.st_gid) {
        (st.st_mode >> 3) & 7
    } else {
        st.st_mode & 7
    };
    if bits & want == want {
        return true;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return (want & 2 == 0 && c.capable(DAC_READ_SEARCH)) || c.capable(DAC_OVERRIDE);
    }
    (want == 4 && c.capable(DAC_READ_SEARCH))
        || ((want & 1 == 0 || st.st_mode & 0o111 != 0) && c.capable(DAC_OVERRIDE))
}

/// What a path call does to the entry `name` of a directory, for [`may_entry`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// mkdir, mknod, symlink, link target, O_CREAT: an existing entry is EEXIST first.
    Create,
    /// unlink, rmdir, rename source: a missing entry is ENOENT first.
    Remove,
    /// rename target: may or may not exist.
    Replace,
}

/// May `c` change the entry `name` of directory `dir`? Write and search on the directory, and
/// in a sticky directory ownership of the entry or the directory (or CAP_FOWNER). Errors come
/// in the kernel's order: EEXIST / ENOENT from the lookup before EACCES, so `mkdir -p` of an
/// existing directory in a read-only parent still sees EEXIST.
pub fn may_entry(dir: RawFd, name: &std::ffi::CStr, c: &Creds, what: Entry) -> Result<(), i32> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat on our fd into a local struct.
    let exists =
        unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0;
    match (what, exists) {
        (Entry::Create, true) => return Err(libc::EEXIST),
        (Entry::Remove, false) => return Err(libc::ENOENT),
        _ => {}
    }
    let dst = fstat_fd(dir)?;
    if !may(&dst, c, 3) {
        return Err(libc::EACCES);
    }
    if exists
        && dst.st_mode & libc::S_ISVTX != 0
        && st.st_uid != c.euid
        && dst.st_uid != c.euid
        && !c.capable(FOWNER)
    {
        return Err(libc::EPERM);
    }
    Ok(())
}

/// chown's rule (the kernel's `chown_ok`/`chgrp_ok`): CAP_CHOWN, or the owner leaving the
/// owner as it is and choosing a group of its own.
pub fn may_chown(st: &libc::stat, c: &Creds, uid: u32, gid: u32) -> bool {
    if c.capable(CHOWN) {
        return true;
    }
    let owner = st.st_uid == c.euid;
    (uid == u32::MAX || (owner && uid == st.st_uid))
        && (gid == u32::MAX || (owner && (gid == st.st_gid || c.in_group(gid))))
}

/// chmod's rule: the owner or CAP_FOWNER; the setgid bit is dropped for a file whose group the
/// caller is not in, unless CAP_FSETID. Returns the mode to apply.
pub fn chmod_mode(st: &libc::stat, c: &Creds, mode: u32) -> Result<u32, i32> {
    if !c.owns(st) {
        return Err(libc::EPERM);
    }
    let mut mode = mode & 0o7777;
    if !c.in_group(st.st_gid) && !c.capable(FSETID) {
        mode &= !libc::S_ISGID;
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(uid: u32, caps: Caps) -> Creds {
        Creds {
            ruid: uid,
            euid: uid,
            suid: uid,
            rgid: uid,
            egid: uid,
            sgid: uid,
            groups: vec![],
            caps,
        }
    }

    fn full() -> Caps {
        from_spec(None).unwrap()
    }

    #[test]
    fn exec_as_root_gets_bounding_and_non_root_only_ambient() {
        let mut c = creds(0, full());
        c.caps.bnd = ALL & !bit(KILL);
        c.exec_caps();
        assert_eq!(c.caps.prm, ALL & !bit(KILL));
        assert_eq!(c.caps.eff, c.caps.prm);
        let mut u = creds(1000, full());
        u.caps.inh = bit(CHOWN);
        u.caps.amb = bit(CHOWN);
        u.exec_caps();
        assert_eq!((u.caps.prm, u.caps.eff), (bit(CHOWN), bit(CHOWN)));
        let mut u = creds(1000, full());
        u.exec_caps();
        assert_eq!((u.caps.prm, u.caps.eff), (0, 0));
    }

    #[test]
    fn leaving_uid_0_drops_caps_unless_keepcaps() {
        let mut c = creds(0, full());
        (c.ruid, c.euid, c.suid) = (1000, 1000, 1000);
        c.fix_setuid((0, 0, 0));
        assert_eq!((c.caps.prm, c.caps.eff), (0, 0));
        let mut c = creds(0, full());
        c.caps.securebits |= KEEP_CAPS;
        (c.ruid, c.euid, c.suid) = (1000, 1000, 1000);
        c.fix_setuid((0, 0, 0));
        assert_eq!((c.caps.prm, c.caps.eff), (ALL, 0));
        // seteuid(1000) and back keeps the permitted set and restores the effective one.
        let mut c = creds(0, full());
        c.euid = 1000;
        c.fix_setuid((0, 0, 0));
        assert_eq!((c.caps.prm, c.caps.eff), (ALL, 0));
        c.euid = 0;
        c.fix_setuid((0, 1000, 0));
        assert_eq!(c.caps.eff, ALL);
    }

    #[test]
    fn status_lines_are_sixteen_hex_digits() {
        let s = status_lines(&full());
        assert!(s.contains("CapEff:\t000001ffffffffff\n"), "{s}");
        assert!(s.contains("CapInh:\t0000000000000000\n"), "{s}");
    }
}
