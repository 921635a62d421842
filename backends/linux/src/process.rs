//! Process hygiene for a freshly forked or cloned host process: the descriptors it inherited,
//! its signal state, and the spec's rlimits. One copy for every backend.

use anyhow::{bail, Result};
use oci_spec::runtime::PosixRlimitType;

/// Descriptors open in this process (listed from /proc/self/fd), from 3 up, the listing's own
/// descriptor excluded. None when /proc cannot be read.
fn open_fds() -> Option<Vec<i32>> {
    let rd = std::fs::read_dir("/proc/self/fd").ok()?;
    let fds: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    // The iterator's own descriptor is closed by now: keep only what is still open.
    Some(fds.into_iter().filter(|&fd| is_open(fd)).collect())
}

fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The highest descriptor number to walk when neither close_range nor /proc is available.
fn fd_ceiling() -> i32 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    rl.rlim_cur.clamp(1024, 1 << 20) as i32
}

const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// close_range(2) (Linux 5.9; CLOSE_RANGE_CLOEXEC 5.11). Hand-written: libc has the number
/// only. False when the kernel refuses it.
fn close_range(first: i32, last: i32, flags: libc::c_uint) -> bool {
    // SAFETY: close_range only acts on this process's own descriptors.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            flags,
        ) == 0
    }
}

/// Mark every descriptor from `first` up close-on-exec, just before the workload's execve. By
/// close_range(2), not by listing /proc/self/fd: once in a container, /proc is whatever the
/// container's mounts made it. Older kernels: every number up to the fd limit.
pub fn cloexec_fds_from(first: i32) {
    if close_range(first, i32::MAX, CLOSE_RANGE_CLOEXEC) {
        return;
    }
    for fd in first..fd_ceiling() {
        // SAFETY: setting FD_CLOEXEC on an fd number; a closed one fails harmlessly.
        unsafe {
            let f = libc::fcntl(fd, libc::F_GETFD);
            if f >= 0 {
                libc::fcntl(fd, libc::F_SETFD, f | libc::FD_CLOEXEC);
            }
        }
    }
}

/// In a freshly forked host process: close every descriptor from 3 up except `keep`. By
/// close_range(2) over the gaps between the kept ones; without it, from /proc/self/fd (or
/// every number up to the fd limit when /proc is missing).
pub fn close_fds_except(keep: &[i32]) {
    let mut keep: Vec<i32> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3;
    let mut ranges_ok = true;
    for &k in keep.iter().chain(std::iter::once(&i32::MAX)) {
        if k > first && !close_range(first, k - 1, 0) {
            ranges_ok = false;
            break;
        }
        first = k.saturating_add(1);
    }
    if ranges_ok {
        return;
    }
    let fds = open_fds().unwrap_or_else(|| (3..fd_ceiling()).collect());
    for fd in fds.into_iter().filter(|fd| !keep.contains(fd)) {
        // SAFETY: closing a descriptor this fresh process inherited and will not use.
        unsafe { libc::close(fd) };
    }
}

/// In a freshly forked or cloned process: close every descriptor the caller marked
/// close-on-exec (its state-directory lock, its log file, ...) except `keep`. A runtime that
/// re-execs itself would never see them; the sandbox must not hold them while it waits on the
/// start gate. Descriptors without the flag (stdio, preserved fds) stay. From /proc/self/fd:
/// close_range cannot select by flag.
pub fn close_cloexec_fds(keep: &[i32]) {
    for fd in open_fds().unwrap_or_default() {
        if keep.contains(&fd) {
            continue;
        }
        // SAFETY: inspecting and closing descriptors this process will never use.
        unsafe {
            let f = libc::fcntl(fd, libc::F_GETFD);
            if f >= 0 && f & libc::FD_CLOEXEC != 0 {
                libc::close(fd);
            }
        }
    }
}

/// In a freshly forked or cloned child: every signal back to its default action and none
/// blocked. The caller's dispositions (Rust ignores SIGPIPE; a front end may handle
/// SIGINT/SIGCHLD) must not leak into the sandbox (ignored signals survive execve).
pub fn reset_signals() {
    // SAFETY: plain signal-state calls in a single-threaded child.
    unsafe {
        // The raw syscall: glibc's signal() refuses 32 and 33, which it reserves for itself,
        // yet a caller may have them ignored (seen under cargo) and the workload would inherit.
        #[repr(C)]
        struct KernelSigaction {
            handler: usize,
            flags: u64,
            restorer: usize,
            mask: u64,
        }
        let dfl = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    0usize,
                    8usize,
                );
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// The spec's rlimit names and Linux's resource numbers: the one table every backend maps
/// through. (The casts matter on musl, where the constants are c_int.)
#[allow(clippy::unnecessary_cast)]
const RLIMITS: [(PosixRlimitType, &str, u32); 16] = [
    (
        PosixRlimitType::RlimitCpu,
        "RLIMIT_CPU",
        libc::RLIMIT_CPU as u32,
    ),
    (
        PosixRlimitType::RlimitFsize,
        "RLIMIT_FSIZE",
        libc::RLIMIT_FSIZE as u32,
    ),
    (
        PosixRlimitType::RlimitData,
        "RLIMIT_DATA",
        libc::RLIMIT_DATA as u32,
    ),
    (
        PosixRlimitType::RlimitStack,
        "RLIMIT_STACK",
        libc::RLIMIT_STACK as u32,
    ),
    (
        PosixRlimitType::RlimitCore,
        "RLIMIT_CORE",
        libc::RLIMIT_CORE as u32,
    ),
    (
        PosixRlimitType::RlimitRss,
        "RLIMIT_RSS",
        libc::RLIMIT_RSS as u32,
    ),
    (
        PosixRlimitType::RlimitNproc,
        "RLIMIT_NPROC",
        libc::RLIMIT_NPROC as u32,
    ),
    (
        PosixRlimitType::RlimitNofile,
        "RLIMIT_NOFILE",
        libc::RLIMIT_NOFILE as u32,
    ),
    (
        PosixRlimitType::RlimitMemlock,
        "RLIMIT_MEMLOCK",
        libc::RLIMIT_MEMLOCK as u32,
    ),
    (
        PosixRlimitType::RlimitAs,
        "RLIMIT_AS",
        libc::RLIMIT_AS as u32,
    ),
    (
        PosixRlimitType::RlimitLocks,
        "RLIMIT_LOCKS",
        libc::RLIMIT_LOCKS as u32,
    ),
    (
        PosixRlimitType::RlimitSigpending,
        "RLIMIT_SIGPENDING",
        libc::RLIMIT_SIGPENDING as u32,
    ),
    (
        PosixRlimitType::RlimitMsgqueue,
        "RLIMIT_MSGQUEUE",
        libc::RLIMIT_MSGQUEUE as u32,
    ),
    (
        PosixRlimitType::RlimitNice,
        "RLIMIT_NICE",
        libc::RLIMIT_NICE as u32,
    ),
    (
        PosixRlimitType::RlimitRtprio,
        "RLIMIT_RTPRIO",
        libc::RLIMIT_RTPRIO as u32,
    ),
    (
        PosixRlimitType::RlimitRttime,
        "RLIMIT_RTTIME",
        libc::RLIMIT_RTTIME as u32,
    ),
];

/// One `process.rlimits` entry, mapped and checked: what setrlimit(2) takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The Linux resource number (RLIMIT_*).
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    /// Map a spec rlimit. A type this table does not know is an error naming it.
    pub fn from_spec(r: &oci_spec::runtime::PosixRlimit) -> Result<Rlimit> {
        Ok(Rlimit {
            resource: rlimit_resource(r.typ())?,
            soft: r.soft(),
            hard: r.hard(),
        })
    }

    /// setrlimit(2) on this process.
    pub fn apply(&self) -> std::io::Result<()> {
        let rl = libc::rlimit {
            rlim_cur: self.soft,
            rlim_max: self.hard,
        };
        // SAFETY: plain setrlimit with a local struct.
        if unsafe { libc::setrlimit(self.resource as _, &rl) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The Linux resource number of a spec rlimit type.
pub fn rlimit_resource(t: PosixRlimitType) -> Result<u32> {
    match RLIMITS.iter().find(|(k, _, _)| *k == t) {
        Some(&(_, _, n)) => Ok(n),
        None => bail!("rlimit {t}: unknown to hako"),
    }
}

/// The spec's name (`RLIMIT_NOFILE`) of a rlimit type.
pub fn rlimit_name(t: PosixRlimitType) -> &'static str {
    RLIMITS
        .iter()
        .find(|(k, _, _)| *k == t)
        .map_or("RLIMIT_?", |&(_, name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimit_table_matches_the_spec_names() {
        for (t, name, n) in RLIMITS {
            assert_eq!(rlimit_resource(t).unwrap(), n);
            assert_eq!(rlimit_name(t), name);
            // oci-spec's own spelling of the type is the spec's name.
            assert_eq!(t.to_string(), name);
        }
        assert_eq!(rlimit_resource(PosixRlimitType::RlimitNofile).unwrap(), 7);
    }

    #[test]
    fn close_fds_except_keeps_only_what_it_is_told() {
        // In a forked child: open three descriptors, keep the middle one.
        // SAFETY: the child only makes plain system calls before _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let a = libc::dup(2);
                let b = libc::dup(2);
                let c = libc::dup(2);
                close_fds_except(&[b]);
                let ok = !is_open(a) && is_open(b) && !is_open(c) && is_open(2);
                libc::_exit(if ok { 0 } else { 1 });
            }
            let mut st = 0;
            assert_eq!(libc::waitpid(pid, &mut st, 0), pid);
            assert!(
                libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                "status {st:#x}"
            );
        }
    }

    #[test]
    fn close_cloexec_fds_spares_inheritable_ones() {
        // SAFETY: the child only makes plain system calls before _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let inherit = libc::dup(2);
                let cloexec = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
                let kept = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
                close_cloexec_fds(&[kept]);
                let ok = is_open(inherit) && !is_open(cloexec) && is_open(kept);
                libc::_exit(if ok { 0 } else { 1 });
            }
            let mut st = 0;
            assert_eq!(libc::waitpid(pid, &mut st, 0), pid);
            assert!(
                libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                "status {st:#x}"
            );
        }
    }

    #[test]
    fn reset_signals_defaults_even_glibcs_reserved_signals() {
        // SAFETY: the child only makes plain system calls before _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                // Ignore 33 the raw way (glibc's signal() refuses it), block SIGUSR1.
                let ign: [usize; 4] = [libc::SIG_IGN, 0, 0, 0];
                libc::syscall(libc::SYS_rt_sigaction, 33, ign.as_ptr(), 0usize, 8usize);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                reset_signals();
                let mut old: [usize; 4] = [1, 0, 0, 0];
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    33,
                    std::ptr::null::<usize>(),
                    old.as_mut_ptr(),
                    8usize,
                );
                let mut cur: libc::sigset_t = std::mem::zeroed();
                libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
                let ok = old[0] == libc::SIG_DFL && libc::sigismember(&cur, libc::SIGUSR1) == 0;
                libc::_exit(if ok { 0 } else { 1 });
            }
            let mut st = 0;
            assert_eq!(libc::waitpid(pid, &mut st, 0), pid);
            assert!(
                libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                "status {st:#x}"
            );
        }
    }
}
