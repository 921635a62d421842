//! OCI seccomp profiles (`linux.seccomp`) compiled to classic BPF with seccompiler.
//!
//! # How a profile becomes filters
//!
//! A seccompiler [`SeccompFilter`] has exactly one match action and one mismatch action, while an
//! OCI profile has a default action plus rules with many different actions. hako compiles one
//! profile into a small stack of filters and relies on the kernel's rule for stacked filters:
//! every filter runs and the most restrictive result wins (KILL_PROCESS > KILL_THREAD > TRAP >
//! ERRNO > USER_NOTIF > TRACE > LOG > ALLOW; for equal precedence the most recently installed
//! filter's data wins), see seccomp(2).
//!
//! - the *default filter* (when the default action is not ALLOW): every syscall/argument
//!   combination named by any rule returns ALLOW, everything else the default action;
//! - one *action filter* per distinct non-ALLOW rule action (ERRNO(1) and ERRNO(38) are distinct):
//!   the rules of that action return it, everything else ALLOW.
//!
//! For a call that matches no rule the default filter decides; for a call that matches rules,
//! the most restrictive matching action wins. Before that, the rules are resolved the way
//! libseccomp (hence runc and crun) resolves them (checked against libseccomp 2.5.4): rules whose
//! action equals the default are dropped; when a syscall has an unconditional rule, the *first*
//! unconditional rule decides it alone and every other rule for it is dropped (podman's profile
//! relies on this: `setns` is both allowed and, without CAP_SYS_ADMIN, ERRNO(1) — libseccomp
//! keeps the ALLOW). Only overlapping *conditional* rules with different actions, which no
//! engine's profile has, can differ from libseccomp (its tree order; here the stricter wins).
//!
//! Details that follow runc/crun: syscall names unknown on x86_64 are skipped silently (the same
//! profile lists syscalls of other architectures); ERRNO and TRACE without `errnoRet` use EPERM;
//! `SCMP_ACT_KILL` is KILL_THREAD. Several `args` in one rule are ANDed (also when two name the
//! same argument; runc would OR those), several rules are ORed. `MASKED_EQ` takes the mask in
//! `value` and the datum in `valueTwo`. Arguments are compared as 64-bit values.
//!
//! Architectures: the filters are for x86_64. `SCMP_ARCH_X86`/`SCMP_ARCH_X32` entries (podman and
//! docker send them) are accepted; a syscall through the i386 ABI (int 0x80) is killed
//! (seccompiler's architecture check), and an x32-ABI call (nr with bit 30 set) gets the default
//! action, or KILL_PROCESS when the default is ALLOW so that a deny-list cannot be bypassed.
//!
//! Refused (an error from [`check`]): `SCMP_ACT_NOTIFY` and `listenerPath` (no seccomp agent
//! support), `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (only meaningful with NOTIFY), argument
//! indexes above 5, filters longer than BPF's 4096 instructions.
//!
//! [`apply`] installs the filters with seccomp(2) and does **not** set no_new_privs: the caller
//! sets it when `process.noNewPrivileges` asks, otherwise the process needs CAP_SYS_ADMIN (runc's
//! rule: then load the filter before dropping capabilities).

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// A compiled profile: BPF programs in installation order, and the seccomp(2) flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub filters: Vec<BpfProgram>,
    pub flags: libc::c_ulong,
}

impl Compiled {
    /// Total BPF instructions over all filters.
    pub fn instructions(&self) -> usize {
        self.filters.iter().map(Vec::len).sum()
    }
}

/// An action, ordered from the most to the least restrictive (the kernel's precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Act {
    KillProcess,
    KillThread,
    Trap,
    Errno(u32),
    Trace(u32),
    Log,
    Allow,
}

impl Act {
    fn from_oci(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Act> {
        let ret = errno.unwrap_or(libc::EPERM as u32);
        if ret > 0xffff {
            bail!("seccomp: errnoRet {ret} does not fit the 16-bit SECCOMP_RET_DATA");
        }
        Ok(match a {
            LinuxSeccompAction::ScmpActAllow => Act::Allow,
            LinuxSeccompAction::ScmpActErrno => Act::Errno(ret),
            LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
                Act::KillThread
            }
            LinuxSeccompAction::ScmpActKillProcess => Act::KillProcess,
            LinuxSeccompAction::ScmpActTrap => Act::Trap,
            LinuxSeccompAction::ScmpActTrace => Act::Trace(ret),
            LinuxSeccompAction::ScmpActLog => Act::Log,
            LinuxSeccompAction::ScmpActNotify => bail!(
                "seccomp: SCMP_ACT_NOTIFY (user-space notification to a seccomp agent) is not \
                 supported by the container backend"
            ),
        })
    }

    fn to_seccompiler(self) -> SeccompAction {
        match self {
            Act::KillProcess => SeccompAction::KillProcess,
            Act::KillThread => SeccompAction::KillThread,
            Act::Trap => SeccompAction::Trap,
            Act::Errno(e) => SeccompAction::Errno(e),
            Act::Trace(e) => SeccompAction::Trace(e),
            Act::Log => SeccompAction::Log,
            Act::Allow => SeccompAction::Allow,
        }
    }
}

/// The rules of one syscall in one filter: unconditional, or any of several AND-chains.
#[derive(Debug, Clone)]
enum Chain {
    Always,
    Any(Vec<SeccompRule>),
}

impl Chain {
    fn add(&mut self, rule: Option<SeccompRule>) {
        match (rule, &mut *self) {
            (_, Chain::Always) => {}
            (None, _) => *self = Chain::Always,
            (Some(r), Chain::Any(v)) => v.push(r),
        }
    }

    fn rules(&self) -> Vec<SeccompRule> {
        match self {
            Chain::Always => Vec::new(),
            Chain::Any(v) => v.clone(),
        }
    }
}

type Table = BTreeMap<i64, Chain>;

/// The x86_64 number of a syscall name, if it exists on x86_64.
pub fn syscall_number(name: &str) -> Option<i64> {
    syscalls::Sysno::from_str(name)
        .ok()
        .map(|s| i64::from(s.id()))
}

fn condition(a: &LinuxSeccompArg) -> Result<SeccompCondition> {
    if a.index() > 5 {
        bail!(
            "seccomp: argument index {} is out of range (0..5)",
            a.index()
        );
    }
    let (op, value) = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, a.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, a.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, a.value()),
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, a.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, a.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, a.value()),
        // libseccomp: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    SeccompCondition::new(a.index() as u8, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| anyhow!("seccomp: argument {}: {e}", a.index()))
}

fn flags(s: &LinuxSeccomp) -> Result<libc::c_ulong> {
    let mut f = 0;
    for flag in s.flags().iter().flatten() {
        f |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => bail!(
                "seccomp: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs SCMP_ACT_NOTIFY, which is \
                 not supported"
            ),
        };
    }
    Ok(f)
}

/// Refuse a profile that cannot be compiled or honoured. Changes nothing.
pub fn check(s: &LinuxSeccomp) -> Result<()> {
    compile(s).map(|_| ())
}

/// Compile an OCI profile into BPF filters for x86_64.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled> {
    if s.listener_path().is_some() {
        bail!("seccomp: listenerPath (a seccomp agent for SCMP_ACT_NOTIFY) is not supported by the container backend");
    }
    let flags = flags(s)?;
    let default = Act::from_oci(s.default_action(), s.default_errno_ret())?;

    // The rules in profile order, one per known syscall name.
    let mut entries: Vec<(i64, Act, Option<SeccompRule>)> = Vec::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let act = Act::from_oci(sc.action(), sc.errno_ret())
            .map_err(|e| anyhow!("seccomp: syscalls[{i}]: {e}"))?;
        let conds = sc
            .args()
            .iter()
            .flatten()
            .map(condition)
            .collect::<Result<Vec<_>>>()
            .map_err(|e| anyhow!("syscalls[{i}] ({}): {e}", sc.names().join(",")))?;
        if act == default {
            continue;
        }
        let rule = if conds.is_empty() {
            None
        } else {
            Some(SeccompRule::new(conds).map_err(|e| anyhow!("seccomp: syscalls[{i}]: {e}"))?)
        };
        for name in sc.names() {
            if let Some(nr) = syscall_number(name) {
                entries.push((nr, act, rule.clone()));
            }
        }
    }
    // libseccomp: the first unconditional rule of a syscall decides it alone (later
    // unconditional rules and all conditional ones for it are dropped).
    let mut unconditional: BTreeMap<i64, Act> = BTreeMap::new();
    for (nr, act, rule) in &entries {
        if rule.is_none() {
            unconditional.entry(*nr).or_insert(*act);
        }
    }
    // Rules grouped by action.
    let mut groups: BTreeMap<Act, Table> = BTreeMap::new();
    for (nr, act, rule) in entries {
        if let Some(only) = unconditional.get(&nr) {
            if *only != act || rule.is_some() {
                continue;
            }
        }
        groups
            .entry(act)
            .or_default()
            .entry(nr)
            .or_insert_with(|| Chain::Any(Vec::new()))
            .add(rule);
    }

    let arch = TargetArch::x86_64;
    let build = |table: &Table, mismatch: Act, matched: Act| -> Result<BpfProgram> {
        let rules = table.iter().map(|(nr, c)| (*nr, c.rules())).collect();
        let f = SeccompFilter::new(
            rules,
            mismatch.to_seccompiler(),
            matched.to_seccompiler(),
            arch,
        )
        .map_err(|e| anyhow!("seccomp: {e}"))?;
        BpfProgram::try_from(f).map_err(|e| anyhow!("seccomp: {e}"))
    };

    // Installation order. Each filter is loaded by a seccomp(2) call that the filters already
    // loaded must let through, so the default filter (which denies whatever the profile does not
    // name) and any filter whose rules name seccomp itself go last. Among equal precedence the
    // most recent filter's data wins; the order below makes that the stricter group.
    let seccomp_nr = syscall_number("seccomp").expect("x86_64 has seccomp");
    let mut early = Vec::new();
    let mut late = Vec::new();
    for (act, table) in groups.iter().rev() {
        if *act != Act::Allow {
            let prog = build(table, Act::Allow, *act)?;
            if table.contains_key(&seccomp_nr) {
                late.push(prog);
            } else {
                early.push(prog);
            }
        }
    }
    let mut default_filter = None;
    if default != Act::Allow {
        let mut all: Table = BTreeMap::new();
        for table in groups.values() {
            for (nr, chain) in table {
                let e = all.entry(*nr).or_insert_with(|| Chain::Any(Vec::new()));
                match chain {
                    Chain::Always => *e = Chain::Always,
                    Chain::Any(v) => v.iter().for_each(|r| e.add(Some(r.clone()))),
                }
            }
        }
        let mut prog = build(&all, default, Act::Allow)?;
        guard_x32(&mut prog, default.to_seccompiler());
        default_filter = Some(prog);
    } else if let Some(first) = early.first_mut().or(late.first_mut()) {
        guard_x32(first, SeccompAction::KillProcess);
    }
    let mut filters = early;
    filters.extend(default_filter);
    filters.extend(late);
    Ok(Compiled { filters, flags })
}

/// Insert, right after seccompiler's architecture check (3 instructions), a test that sends
/// x32-ABI syscall numbers to `action`. All later jumps are relative and stay valid.
fn guard_x32(prog: &mut BpfProgram, action: SeccompAction) {
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    let guard = [
        ins(LD_W_ABS, 0, 0, 0), // A = seccomp_data.nr
        ins(JGE_K, 0, 1, 0x4000_0000),
        ins(RET_K, 0, 0, u32::from(action)),
    ];
    let at = 3.min(prog.len());
    prog.splice(at..at, guard);
}

/// Install the filters on the calling thread (all threads with TSYNC). Does not set
/// no_new_privs; see the module documentation.
pub fn apply(c: &Compiled) -> Result<()> {
    match try_apply(c) {
        Ok(()) => Ok(()),
        Err((i, libc::EACCES)) => bail!(
            "cannot load seccomp filter {i}: permission denied (the process needs \
             no_new_privileges or CAP_SYS_ADMIN)"
        ),
        Err((i, e)) if e < 0 => {
            bail!(
                "cannot load seccomp filter {i}: thread {} could not be synchronized (TSYNC)",
                -e
            )
        }
        Err((i, e)) => bail!(
            "cannot load seccomp filter {i} of {}: {}",
            c.filters.len(),
            std::io::Error::from_raw_os_error(e)
        ),
    }
}

/// [`apply`] without allocation, safe right after fork() in a multi-threaded process. The
/// error is (index of the filter, errno), or (index, -tid) when TSYNC failed on thread tid.
pub fn try_apply(c: &Compiled) -> std::result::Result<(), (usize, i32)> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const sock_filter,
    }
    for (i, f) in c.filters.iter().enumerate() {
        let prog = SockFprog {
            len: f.len() as libc::c_ushort,
            filter: f.as_ptr(),
        };
        // SAFETY: `prog` points at a live, well-formed BPF program; the kernel copies it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                c.flags,
                &prog as *const SockFprog,
            )
        };
        if r < 0 {
            // SAFETY: reading this thread's errno.
            return Err((i, unsafe { *libc::__errno_location() }));
        }
        if r > 0 {
            return Err((i, -(r as i32)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn one_filter_per_action_plus_default() {
        let c = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write", "no_such_syscall", "socketcall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getppid"], "action": "SCMP_ACT_KILL"},
            ]
        })))
        .unwrap();
        // default + ERRNO(38) + KILL_THREAD; mkdir's ERRNO(EPERM) equals the default and is dropped.
        assert_eq!(c.filters.len(), 3);
        assert_eq!(c.flags, 0);
    }

    #[test]
    fn allow_default_needs_no_default_filter() {
        let c = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
        assert!(c.filters.is_empty());
        let c = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        assert_eq!(c.filters.len(), 1);
        assert_eq!(
            c.flags,
            libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        // The x32 guard sits after the arch check and kills (default is ALLOW).
        assert_eq!(c.filters[0][4].k, 0x4000_0000);
        assert_eq!(c.filters[0][5].k, libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn refused_profiles() {
        let e = check(&profile(json!({"defaultAction": "SCMP_ACT_NOTIFY"}))).unwrap_err();
        assert!(format!("{e}").contains("SCMP_ACT_NOTIFY"), "{e}");
        let e = check(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap_err();
        assert!(format!("{e}").contains("SCMP_ACT_NOTIFY"), "{e}");
        let e = check(&profile(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
        ))
        .unwrap_err();
        assert!(format!("{e}").contains("listenerPath"), "{e}");
        let e = check(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap_err();
        assert!(format!("{e}").contains("index 6"), "{e}");
        let e = check(&profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}))).unwrap_err();
        assert!(format!("{e}").contains("WAIT_KILLABLE_RECV"), "{e}");
        // An action name that does not exist is refused when the profile is parsed.
        assert!(
            serde_json::from_value::<LinuxSeccomp>(json!({"defaultAction": "SCMP_ACT_BOGUS"}))
                .is_err()
        );
    }

    #[test]
    fn names() {
        assert_eq!(syscall_number("read"), Some(0));
        assert_eq!(syscall_number("mkdir"), Some(83));
        assert_eq!(syscall_number("socketcall"), None);
    }
}
