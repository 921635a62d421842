//! The identity calls: set*uid, set*gid, setgroups, capget, capset and the capability options
//! of prctl, with the kernel's rules (`kernel::creds` keeps the sets and the transitions).

use super::{err, Call, Outcome};
use crate::kernel::creds::*;
use crate::kernel::Kernel;
use crate::platform::Platform;
use syscalls::Sysno;

const V1: u32 = 0x1998_0330;
const V2: u32 = 0x2007_1026;
const V3: u32 = 0x2008_0522;

/// set*uid/set*gid/setgroups with the kernel's rules: CAP_SETUID (CAP_SETGID) may set any id,
/// others only ids they already hold. setuid, setgid, setreuid, setregid, setresuid, setresgid.
pub fn setid<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let s = c.s;
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

pub fn setgroups<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
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

pub fn capget<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
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

pub fn capset<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
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

fn prctl_caps<P: Platform>(k: &mut Kernel<P>, c: &Call) -> Option<Outcome> {
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

/// prctl's options that do not run natively (see `PRCTL_SAFE`); any other: EINVAL.
pub fn prctl<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    prctl_caps(k, c).unwrap_or_else(|| err(libc::EINVAL))
}
