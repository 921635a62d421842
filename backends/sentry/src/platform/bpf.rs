//! A small classic-BPF generator for the trap filter. seccompiler has no `SECCOMP_RET_USER_NOTIF`
//! action, and the hybrid platform needs three actions in one filter (allow, user-notif, trace).

use libc::sock_filter;

pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// What the filter does with one syscall number.
/// `(argument index, mask, value)`: holds when `(arg & mask) == value`.
pub type ArgCond = (u8, u64, u64);

#[derive(Debug, Clone)]
pub enum Rule {
    Action(u32),
    /// `action_if` when any `(arg, mask, value)` matches (64-bit compare), else `otherwise`.
    Cond {
        conds: Vec<(u8, u64, u64)>,
        action_if: u32,
        otherwise: u32,
    },
    /// Tiers tried in order: the first whose conditions all hold (`(arg & mask) == value`)
    /// gives the action; none: `otherwise`.
    Tiers {
        tiers: Vec<(Vec<ArgCond>, u32)>,
        otherwise: u32,
    },
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

/// Build: check the arch, then one block per rule, then `default`.
pub fn build(rules: &[(u32, Rule)], default: u32) -> Vec<sock_filter> {
    let mut p = vec![
        stmt(LD_W_ABS, 4),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, 0),
        // x32 syscalls (nr >= 0x40000000): refuse.
        jump(JGE_K, 0x4000_0000, 0, 1),
        stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32),
    ];
    for (nr, rule) in rules {
        match rule {
            Rule::Action(a) => {
                p.push(jump(JEQ_K, *nr, 0, 1));
                p.push(stmt(RET_K, *a));
            }
            Rule::Cond {
                conds,
                action_if,
                otherwise,
            } => {
                // Per condition: ld lo; and; jeq -> ld hi; and; jeq -> ret action_if.  (7 insns)
                let body = conds.len() * 7 + 1;
                p.push(jump(JEQ_K, *nr, 0, body as u8));
                for &(arg, mask, value) in conds {
                    let off = 16 + 8 * arg as u32;
                    p.push(stmt(LD_W_ABS, off));
                    p.push(stmt(AND_K, mask as u32));
                    p.push(jump(JEQ_K, value as u32, 0, 4));
                    p.push(stmt(LD_W_ABS, off + 4));
                    p.push(stmt(AND_K, (mask >> 32) as u32));
                    p.push(jump(JEQ_K, (value >> 32) as u32, 0, 1));
                    p.push(stmt(RET_K, *action_if));
                }
                // The block always returns, so the accumulator (nr) is intact when it is skipped.
                p.push(stmt(RET_K, *otherwise));
            }
            Rule::Tiers { tiers, otherwise } => {
                let body: usize = tiers.iter().map(|(c, _)| c.len() * 6 + 1).sum::<usize>() + 1;
                p.push(jump(JEQ_K, *nr, 0, body as u8));
                for (conds, action) in tiers {
                    let len = conds.len() * 6 + 1;
                    let start = p.len();
                    for &(arg, mask, value) in conds {
                        let off = 16 + 8 * arg as u32;
                        // A failed comparison skips to the next tier.
                        let next = |p: &Vec<sock_filter>| (start + len - p.len() - 1) as u8;
                        p.push(stmt(LD_W_ABS, off));
                        p.push(stmt(AND_K, mask as u32));
                        p.push(jump(JEQ_K, value as u32, 0, next(&p)));
                        p.push(stmt(LD_W_ABS, off + 4));
                        p.push(stmt(AND_K, (mask >> 32) as u32));
                        p.push(jump(JEQ_K, (value >> 32) as u32, 0, next(&p)));
                    }
                    p.push(stmt(RET_K, *action));
                }
                p.push(stmt(RET_K, *otherwise));
            }
        }
    }
    p.push(stmt(RET_K, default));
    p
}

/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: the filter's user-notification fd.
const NEW_LISTENER: libc::c_ulong = 1 << 3;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19): once the sentry has taken a
/// notification, only a fatal signal ends the task's wait for the answer. Without it a signal
/// (a traced task gets even ignored ones: a child's SIGCHLD is enough) can end the wait while the
/// sentry carries the call out; the kernel then drops the answer, even one it accepted, and
/// restarts the call, so bytes read from a pipe were lost and bytes written were repeated.
const WAIT_KILLABLE_RECV: libc::c_ulong = 1 << 5;

/// Install with `SECCOMP_FILTER_FLAG_NEW_LISTENER` (and `WAIT_KILLABLE_RECV` where the kernel
/// has it) when `listener`; returns the listener fd.
pub fn install(prog: &[sock_filter], listener: bool) -> std::io::Result<i32> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut _,
    };
    let seccomp = |flags: libc::c_ulong| {
        // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) with a valid program.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                1 as libc::c_ulong,
                flags,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(rc as i32)
        }
    };
    if !listener {
        return seccomp(0);
    }
    match seccomp(NEW_LISTENER | WAIT_KILLABLE_RECV) {
        // A kernel before 5.19: the wait stays interruptible (see docs/backends/sentry.md).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => seccomp(NEW_LISTENER),
        r => r,
    }
}
