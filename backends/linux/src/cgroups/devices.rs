//! Device access rules: v1 `devices.allow`/`devices.deny` lines, and for cgroup v2 an eBPF
//! program (BPF_PROG_TYPE_CGROUP_DEVICE) generated from the same rules.
//!
//! The OCI rules are first reduced the way the v1 kernel applies them (an `a` rule resets the
//! default to allow-all or deny-all and drops the exceptions; any other rule adds an exception
//! to the current default or removes access from one), starting from deny-all as runc does on
//! v2. The program then checks the exceptions in order and returns the opposite of the default
//! on the first match. FIFO rules (`p`) are meaningless to the kernel (FIFOs are never subject to
//! the device controller): an allow is trivially honoured, a deny is refused.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::fs::describe;

const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;

fn access_bits(rule: &LinuxDeviceCgroup) -> Result<u32> {
    let s = rule.access().as_deref().unwrap_or("rwm");
    let s = if s.is_empty() { "rwm" } else { s };
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => bail!("device cgroup rule: invalid access {s:?} (only r, w and m)"),
        };
    }
    Ok(bits)
}

fn num(v: Option<i64>, what: &str) -> Result<Option<u32>> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
        Some(n) => bail!("device cgroup rule: invalid {what} number {n}"),
    }
}

/// The v1 `devices.allow`/`devices.deny` line for a rule.
pub(crate) fn rule_string(rule: &LinuxDeviceCgroup) -> Result<String> {
    let t = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => {
            if !rule.allow() {
                bail!("device cgroup rule: FIFOs (type p) cannot be denied through the device controller");
            }
            // Allowing FIFOs is always true: there is no line to write (empty string).
            return Ok(String::new());
        }
    };
    let bits = access_bits(rule)?;
    let mut acc = String::new();
    for (b, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if bits & b != 0 {
            acc.push(c);
        }
    }
    let f = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_else(|| "*".into());
    Ok(format!(
        "{t} {}:{} {acc}",
        f(num(rule.major(), "major")?),
        f(num(rule.minor(), "minor")?)
    ))
}

/// One exception to the default policy. `typ` 0 means any type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exception {
    typ: u32,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

/// A reduced device policy and its eBPF program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Program {
    pub default_allow: bool,
    pub exceptions: Vec<Exception>,
}

// eBPF encoding (linux/bpf.h).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JMP32_JNE_K: u8 = 0x56;
const JMP32_JEQ_K: u8 = 0x16;
const EXIT: u8 = 0x95;

impl Program {
    /// Reduce OCI rules to a default and a list of exceptions.
    pub fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Program> {
        let mut p = Program {
            default_allow: false,
            exceptions: Vec::new(),
        };
        if rules.is_empty() {
            p.default_allow = true;
            return Ok(p);
        }
        for r in rules {
            let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => 0,
                LinuxDeviceType::B => DEV_BLOCK,
                LinuxDeviceType::C | LinuxDeviceType::U => DEV_CHAR,
                LinuxDeviceType::P => {
                    rule_string(r)?; // refuses a deny
                    continue;
                }
            };
            let access = access_bits(r)?;
            let (major, minor) = (num(r.major(), "major")?, num(r.minor(), "minor")?);
            if typ == 0 && major.is_none() && minor.is_none() {
                // "a": a new default; exceptions are dropped (the kernel does the same).
                if access != ACC_READ | ACC_WRITE | ACC_MKNOD {
                    bail!("device cgroup rule: a rule for all devices must grant or deny all access (rwm)");
                }
                p.default_allow = r.allow();
                p.exceptions.clear();
                continue;
            }
            let pos = p
                .exceptions
                .iter()
                .position(|e| e.typ == typ && e.major == major && e.minor == minor);
            if r.allow() != p.default_allow {
                match pos {
                    Some(i) => p.exceptions[i].access |= access,
                    None => p.exceptions.push(Exception {
                        typ,
                        major,
                        minor,
                        access,
                    }),
                }
            } else if let Some(i) = pos {
                p.exceptions[i].access &= !access;
                if p.exceptions[i].access == 0 {
                    p.exceptions.remove(i);
                }
            }
        }
        Ok(p)
    }

    /// True when the policy allows everything (no program needed).
    pub fn allows_all(&self) -> bool {
        self.default_allow && self.exceptions.is_empty()
    }

    fn instructions(&self) -> Vec<Insn> {
        let mut v = vec![
            insn(LDX_MEM_W, 2, 1, 0, 0),        // r2 = access_type
            insn(ALU32_AND_K, 2, 0, 0, 0xffff), // r2 = device type
            insn(LDX_MEM_W, 3, 1, 0, 0),        // r3 = access_type
            insn(ALU32_RSH_K, 3, 0, 0, 16),     // r3 = access bits
            insn(LDX_MEM_W, 4, 1, 4, 0),        // r4 = major
            insn(LDX_MEM_W, 5, 1, 8, 0),        // r5 = minor
        ];
        let verdict = i32::from(!self.default_allow);
        for e in &self.exceptions {
            // Each test jumps to the end of this block when it fails; offsets are patched.
            let mut block: Vec<(Insn, bool)> = Vec::new();
            if e.typ != 0 {
                block.push((insn(JMP32_JNE_K, 2, 0, 0, e.typ as i32), true));
            }
            if let Some(m) = e.major {
                block.push((insn(JMP32_JNE_K, 4, 0, 0, m as i32), true));
            }
            if let Some(m) = e.minor {
                block.push((insn(JMP32_JNE_K, 5, 0, 0, m as i32), true));
            }
            block.push((insn(ALU32_MOV_X, 6, 3, 0, 0), false));
            if self.default_allow {
                // A deny exception matches when any requested access is denied.
                block.push((insn(ALU32_AND_K, 6, 0, 0, e.access as i32), false));
                block.push((insn(JMP32_JEQ_K, 6, 0, 0, 0), true));
            } else {
                // An allow exception matches when every requested access is allowed.
                block.push((insn(ALU32_AND_K, 6, 0, 0, !e.access as i32), false));
                block.push((insn(JMP32_JNE_K, 6, 0, 0, 0), true));
            }
            block.push((insn(ALU64_MOV_K, 0, 0, 0, verdict), false));
            block.push((insn(EXIT, 0, 0, 0, 0), false));
            let len = block.len();
            for (i, (mut ins, is_jump)) in block.into_iter().enumerate() {
                if is_jump {
                    ins.off = (len - i - 1) as i16;
                }
                v.push(ins);
            }
        }
        v.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(self.default_allow)));
        v.push(insn(EXIT, 0, 0, 0, 0));
        v
    }

    /// Load the program and make it the only device program of the cgroup at `dir`.
    pub fn attach(&self, dir: &Path) -> Result<()> {
        let cg = std::fs::File::open(dir)
            .with_context(|| format!("cannot open cgroup {}", dir.display()))?;
        let old = query(&cg)?;
        if self.allows_all() && old.is_empty() {
            return Ok(());
        }
        let prog = load(&self.instructions())?;
        let mut attr = [0u32; 8];
        attr[0] = cg.as_raw_fd() as u32; // target_fd
        attr[1] = prog.as_raw_fd() as u32; // attach_bpf_fd
        attr[2] = BPF_CGROUP_DEVICE;
        attr[3] = BPF_F_ALLOW_MULTI;
        bpf(BPF_PROG_ATTACH, &mut attr)
            .context("cannot attach the device filter (bpf BPF_PROG_ATTACH)")?;
        // Drop what an earlier apply() attached.
        for id in old {
            let mut a = [0u32; 8];
            a[0] = id;
            let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut a) else {
                continue;
            };
            // SAFETY: the kernel returned a new file descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut d = [0u32; 8];
            d[0] = cg.as_raw_fd() as u32;
            d[1] = fd.as_raw_fd() as u32;
            d[2] = BPF_CGROUP_DEVICE;
            bpf(BPF_PROG_DETACH, &mut d).context("cannot detach the previous device filter")?;
        }
        Ok(())
    }
}

const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_ATTACH: i32 = 8;
const BPF_PROG_DETACH: i32 = 9;
const BPF_PROG_GET_FD_BY_ID: i32 = 13;
const BPF_PROG_QUERY: i32 = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn bpf<T>(cmd: i32, attr: &mut T) -> Result<i32> {
    // SAFETY: `attr` is a plain, fully initialised buffer of the size we pass.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        bail!("bpf command {cmd}: {}", describe(&e));
    }
    Ok(r as i32)
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    rest: [u8; 64],
}

fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = b"GPL\0";
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"hako_devs");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        rest: [0; 64],
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: the kernel returned a new file descriptor we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            bail!(
                "cannot load the device filter: {e}: {}",
                String::from_utf8_lossy(&log[..end]).trim()
            )
        }
    }
}

/// Ids of the device programs attached to the cgroup.
fn query(cg: &std::fs::File) -> Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    #[repr(C)]
    struct QueryAttr {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        pad: u32,
        rest: [u64; 4],
    }
    let mut attr = QueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        pad: 0,
        rest: [0; 4],
    };
    bpf(BPF_PROG_QUERY, &mut attr).context("cannot query the cgroup's device filters")?;
    Ok(ids[..(attr.prog_cnt as usize).min(ids.len())].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        t: LinuxDeviceType,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access(acc);
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn v1_lines() {
        assert_eq!(
            rule_string(&rule(false, LinuxDeviceType::A, None, None, "rwm")).unwrap(),
            "a *:* rwm"
        );
        assert_eq!(
            rule_string(&rule(true, LinuxDeviceType::C, Some(1), Some(3), "rw")).unwrap(),
            "c 1:3 rw"
        );
        assert_eq!(
            rule_string(&rule(true, LinuxDeviceType::C, Some(136), None, "mrw")).unwrap(),
            "c 136:* rwm"
        );
        assert!(rule_string(&rule(true, LinuxDeviceType::C, Some(1), Some(3), "rx")).is_err());
        assert!(rule_string(&rule(false, LinuxDeviceType::P, None, None, "rwm")).is_err());
    }

    #[test]
    fn reduction() {
        let p = Program::compile(&[]).unwrap();
        assert!(p.allows_all());
        let p = Program::compile(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rw"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "m"),
            rule(true, LinuxDeviceType::C, Some(1), Some(5), "rwm"),
            rule(false, LinuxDeviceType::C, Some(1), Some(5), "rwm"),
        ])
        .unwrap();
        assert!(!p.default_allow);
        assert_eq!(
            p.exceptions,
            vec![Exception {
                typ: DEV_CHAR,
                major: Some(1),
                minor: Some(3),
                access: 7
            }]
        );
        let p = Program::compile(&[
            rule(false, LinuxDeviceType::C, Some(1), Some(3), "rw"),
            rule(true, LinuxDeviceType::A, None, None, "rwm"),
        ])
        .unwrap();
        assert!(p.allows_all());
        // Every jump of the generated program stays inside it.
        let p = Program::compile(&[rule(true, LinuxDeviceType::B, Some(8), None, "r")]).unwrap();
        let ins = p.instructions();
        for (i, x) in ins.iter().enumerate() {
            if x.code == JMP32_JNE_K || x.code == JMP32_JEQ_K {
                assert!(i + 1 + (x.off as usize) < ins.len());
            }
        }
        assert_eq!(ins.last().unwrap().code, EXIT);
    }
}
