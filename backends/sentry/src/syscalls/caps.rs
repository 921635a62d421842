//! Capabilities and identities: the five capability sets of each virtual process, the kernel's
//! rules for changing them (uid changes, execve, capset, prctl), and the checks that privileged
//! paths ask.
//!
//! The sentry is root on the host, so the host kernel allows whatever the sentry asks of it: the
//! permission decision is the sentry's, made against the caller's virtual creds and capabilities
//! before the host call is issued. The rules below follow the kernel's `security/commoncap.c`
//! and `kernel/sys.c` for a file without file capabilities (the sentry honours neither file
//! capabilities nor setuid bits on execve).

use super::{err, Call, Outcome};
use crate::kernel::{Caps, Creds, Kernel};
use crate::platform::Platform;
use oci_spec::runtime::LinuxCapabilities;
use syscalls::Sysno;

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
const NOROOT: u32 = 1 << 0;
const NO_SETUID_FIXUP: u32 = 1 << 2;
const KEEP_CAPS: u32 = 1 << 4;
const KEEP_CAPS_LOCKED: u32 = 1 << 5;
const NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
const ALL_BITS: u32 = 0x55;
const ALL_LOCKS: u32 = 0xaa;

const V1: u32 = 0x1998_0330;
const V2: u32 = 0x2007_1026;
const V3: u32 = 0x2008_0522;

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

fn bit(cap: u32) -> u64 {
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
    fn fix_setuid(&mut self, old: (u32, u32, u32)) {
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

/// set*uid/set*gid/setgroups with the kernel's rules: CAP_SETUID (CAP_SETGID) may set any id,
/// others only ids they already hold.
fn setid<P: Platform>(k: &mut Kernel<P>, s: Sysno, c: &Call) -> Outcome {
    use Sysno::*;
    let a = c.a;
    let proc = k.proc_of(c.tid);
    let mut cr = proc.borrow().creds.clone();
    let unset = |v: u64| v as u32 == u32::MAX;
    let (is_uid, cap) = match s {
        setuid | setreuid | setresuid => (true, SETUID),
        _ => (false, SETGID),
    };
    let priv_ = cr.capable(cap);
    let (r, e, sv) = if is_uid {
        (cr.ruid, cr.euid, cr.suid)
    } else {
        (cr.rgid, cr.egid, cr.sgid)
    };
    let (nr, ne, ns) = match s {
        setuid | setgid => {
            if unset(a[0]) {
                return err(libc::EINVAL);
            }
            let v = a[0] as u32;
            if priv_ {
                (v, v, v)
            } else if v == r || v == sv {
                (r, v, sv)
            } else {
                return err(libc::EPERM);
            }
        }
        setreuid | setregid => {
            let mut n = (r, e, sv);
            if !unset(a[0]) {
                n.0 = a[0] as u32;
                if !priv_ && n.0 != r && n.0 != e {
                    return err(libc::EPERM);
                }
            }
            if !unset(a[1]) {
                n.1 = a[1] as u32;
                if !priv_ && n.1 != r && n.1 != e && n.1 != sv {
                    return err(libc::EPERM);
                }
            }
            if !unset(a[0]) || (!unset(a[1]) && n.1 != r) {
                n.2 = n.1;
            }
            n
        }
        _ => {
            // setresuid / setresgid
            let mut n = [r, e, sv];
            for (i, slot) in n.iter_mut().enumerate() {
                if unset(a[i]) {
                    continue;
                }
                let v = a[i] as u32;
                if !priv_ && v != r && v != e && v != sv {
                    return err(libc::EPERM);
                }
                *slot = v;
            }
            (n[0], n[1], n[2])
        }
    };
    if is_uid {
        (cr.ruid, cr.euid, cr.suid) = (nr, ne, ns);
        cr.fix_setuid((r, e, sv));
    } else {
        (cr.rgid, cr.egid, cr.sgid) = (nr, ne, ns);
    }
    proc.borrow_mut().creds = cr;
    Outcome::Ret(0)
}

fn setgroups<P: Platform>(k: &mut Kernel<P>, c: &Call) -> Outcome {
    let proc = k.proc_of(c.tid);
    if !proc.borrow().creds.capable(SETGID) {
        return err(libc::EPERM);
    }
    let n = c.a[0] as usize;
    if n > 65536 {
        return err(libc::EINVAL);
    }
    let b = match k.read_bytes(c.tid, c.a[1], n * 4) {
        Ok(b) => b,
        Err(e) => return err(e),
    };
    proc.borrow_mut().creds.groups = b
        .chunks(4)
        .map(|x| u32::from_ne_bytes(x.try_into().unwrap()))
        .collect();
    Outcome::Ret(0)
}

/// The capget/capset header: how many 32-bit words the version carries. An unknown version is
/// answered with the preferred one written back, as the kernel does.
fn header<P: Platform>(k: &Kernel<P>, c: &Call) -> Result<(usize, i32), i32> {
    let h: [u32; 2] = k.read_val(c.tid, c.a[0])?;
    match h[0] {
        V1 => Ok((1, h[1] as i32)),
        V2 | V3 => Ok((2, h[1] as i32)),
        _ => {
            k.write_val(c.tid, c.a[0], &V3)?;
            Err(libc::EINVAL)
        }
    }
}

fn capget<P: Platform>(k: &mut Kernel<P>, c: &Call) -> Outcome {
    let (words, pid) = match header(k, c) {
        Ok(v) => v,
        // A probe with no data pointer learns the version and succeeds.
        Err(libc::EINVAL) if c.a[1] == 0 => return Outcome::Ret(0),
        Err(e) => return err(e),
    };
    if c.a[1] == 0 {
        return Outcome::Ret(0);
    }
    if pid < 0 {
        return err(libc::EINVAL);
    }
    // Virtual pids only: a pid outside the sandbox does not exist.
    let caps = if pid == 0 {
        k.proc_of(c.tid).borrow().creds.caps
    } else {
        match k.host_of(pid) {
            Some(h) => k.tasks[&h].proc.borrow().creds.caps,
            None => return err(libc::ESRCH),
        }
    };
    let mut d = Vec::new();
    for i in 0..words {
        for set in [caps.eff, caps.prm, caps.inh] {
            d.extend_from_slice(&((set >> (32 * i)) as u32).to_ne_bytes());
        }
    }
    match k.write_bytes(c.tid, c.a[1], &d) {
        Ok(()) => Outcome::Ret(0),
        Err(e) => err(e),
    }
}

fn capset<P: Platform>(k: &mut Kernel<P>, c: &Call) -> Outcome {
    let (words, pid) = match header(k, c) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let proc = k.proc_of(c.tid);
    if pid != 0 && pid != proc.borrow().vpid && pid != k.tasks[&c.tid].vtid {
        return err(libc::EPERM);
    }
    let d = match k.read_bytes(c.tid, c.a[1], words * 12) {
        Ok(d) => d,
        Err(e) => return err(e),
    };
    let w = |i: usize| u32::from_ne_bytes(d[i * 4..i * 4 + 4].try_into().unwrap()) as u64;
    let (mut eff, mut prm, mut inh) = (0u64, 0u64, 0u64);
    for i in 0..words {
        eff |= w(i * 3) << (32 * i);
        prm |= w(i * 3 + 1) << (32 * i);
        inh |= w(i * 3 + 2) << (32 * i);
    }
    let (eff, prm, inh) = (eff & ALL, prm & ALL, inh & ALL);
    let mut cr = proc.borrow().creds.clone();
    let old = cr.caps;
    let subset = |a: u64, b: u64| a & !b == 0;
    if (!subset(inh, old.inh | old.prm) && !cr.capable(SETPCAP))
        || !subset(inh, old.inh | old.bnd)
        || !subset(prm, old.prm)
        || !subset(eff, prm)
    {
        return err(libc::EPERM);
    }
    cr.caps.eff = eff;
    cr.caps.prm = prm;
    cr.caps.inh = inh;
    cr.caps.amb &= prm & inh;
    proc.borrow_mut().creds = cr;
    Outcome::Ret(0)
}

fn prctl<P: Platform>(k: &mut Kernel<P>, c: &Call) -> Option<Outcome> {
    let a = c.a;
    let proc = k.proc_of(c.tid);
    let mut p = proc.borrow_mut();
    let cr = &mut p.creds;
    let valid = |v: u64| v <= LAST_CAP as u64;
    Some(match a[0] as i32 {
        libc::PR_CAPBSET_READ => {
            if !valid(a[1]) {
                return Some(err(libc::EINVAL));
            }
            Outcome::Ret((cr.caps.bnd >> a[1] & 1) as i64)
        }
        libc::PR_CAPBSET_DROP => {
            if !cr.capable(SETPCAP) {
                return Some(err(libc::EPERM));
            }
            if !valid(a[1]) {
                return Some(err(libc::EINVAL));
            }
            cr.caps.bnd &= !bit(a[1] as u32);
            Outcome::Ret(0)
        }
        libc::PR_GET_KEEPCAPS => Outcome::Ret((cr.caps.securebits & KEEP_CAPS != 0) as i64),
        libc::PR_SET_KEEPCAPS => {
            if a[1] > 1 {
                return Some(err(libc::EINVAL));
            }
            if cr.caps.securebits & KEEP_CAPS_LOCKED != 0 {
                return Some(err(libc::EPERM));
            }
            if a[1] == 1 {
                cr.caps.securebits |= KEEP_CAPS;
            } else {
                cr.caps.securebits &= !KEEP_CAPS;
            }
            Outcome::Ret(0)
        }
        libc::PR_GET_SECUREBITS => Outcome::Ret(cr.caps.securebits as i64),
        libc::PR_SET_SECUREBITS => {
            let old = cr.caps.securebits;
            let new = a[1];
            if ((old & ALL_LOCKS) >> 1) as u64 & (old as u64 ^ new) != 0
                || (old & ALL_LOCKS) as u64 & !new != 0
                || new & !((ALL_LOCKS | ALL_BITS) as u64) != 0
                || !cr.capable(SETPCAP)
            {
                return Some(err(libc::EPERM));
            }
            cr.caps.securebits = new as u32;
            Outcome::Ret(0)
        }
        libc::PR_CAP_AMBIENT => {
            let op = a[1] as i32;
            if op == libc::PR_CAP_AMBIENT_CLEAR_ALL {
                if a[2] | a[3] | a[4] != 0 {
                    return Some(err(libc::EINVAL));
                }
                cr.caps.amb = 0;
                return Some(Outcome::Ret(0));
            }
            if !valid(a[2]) || a[3] | a[4] != 0 {
                return Some(err(libc::EINVAL));
            }
            let b = bit(a[2] as u32);
            match op {
                libc::PR_CAP_AMBIENT_IS_SET => Outcome::Ret((cr.caps.amb & b != 0) as i64),
                libc::PR_CAP_AMBIENT_RAISE => {
                    if cr.caps.prm & b == 0
                        || cr.caps.inh & b == 0
                        || cr.caps.securebits & NO_CAP_AMBIENT_RAISE != 0
                    {
                        return Some(err(libc::EPERM));
                    }
                    cr.caps.amb |= b;
                    Outcome::Ret(0)
                }
                libc::PR_CAP_AMBIENT_LOWER => {
                    cr.caps.amb &= !b;
                    Outcome::Ret(0)
                }
                _ => err(libc::EINVAL),
            }
        }
        _ => return None,
    })
}

pub fn handle<P: Platform>(k: &mut Kernel<P>, s: Sysno, c: &mut Call) -> Option<Outcome> {
    use Sysno::*;
    Some(match s {
        setuid | setgid | setreuid | setregid | setresuid | setresgid => setid(k, s, c),
        setgroups => self::setgroups(k, c),
        capget => self::capget(k, c),
        capset => self::capset(k, c),
        prctl => return self::prctl(k, c),
        _ => return None,
    })
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
