//! The `samecpu` platform: the hybrid platform (seccomp user notification + ptrace, see
//! [`super::ptrace`]) with every trap served on the CPU of the task that trapped.
//!
//! Why: a trap is a round trip between two threads, the trapping task and the sentry. When the
//! kernel wakes the sentry on another CPU, and later the task on its own, each wakeup is an
//! inter-processor interrupt; on virtual machines that costs tens of microseconds, far more than
//! the interception itself (see docs/backends/sentry.md, "Syscall cost").
//!
//! How: each seccomp listener gets `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6, made for
//! gVisor's own use of user notification). The trapping task then wakes the sentry (asleep in
//! `poll` on the listener) on the task's own CPU and goes to sleep; the sentry runs there, answers,
//! and the answer wakes the task on that same CPU again. Two context switches on one CPU, no
//! interrupt. Nothing spins: a sandbox whose tasks make no syscalls costs what it cost before.
//!
//! Security: nothing new is shared with the workload. The kernel carries the syscall number and
//! arguments (copied from the task's registers, as on every platform) and the answer; the flag
//! only changes where the scheduler runs the two sides.

use super::ptrace::SeccompPtrace;
use super::waker::Waker;
use super::{Platform, Regs, Resume, Stop};
use anyhow::Result;
use std::os::fd::RawFd;

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS` (`SECCOMP_IOW(4, __u64)`) and its one flag. Not in the libc
/// crate yet.
const NOTIF_SET_FLAGS: libc::c_ulong = 0x4008_2104;
const USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// Set the synchronous-wakeup flag on a listener.
pub(crate) fn set_sync_wake(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: an ioctl whose argument is a plain integer.
    if unsafe { libc::ioctl(fd, NOTIF_SET_FLAGS, USER_NOTIF_FD_SYNC_WAKE_UP) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel takes `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`: a forked child installs a
/// filter that allows everything but makes a listener, and tries the flag on it. Asked once per
/// process (a fork and a few syscalls). `create` asks before it forks the sentry, which inherits
/// the answer: the sentry itself cannot fork under its own filter, and `hako exec` parses the
/// spec (and so the platform) again inside it.
pub fn supported() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(probe)
}

fn probe() -> bool {
    let prog = [libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k: super::bpf::RET_ALLOW,
    }];
    // SAFETY: the child makes raw syscalls only (no allocation, no lock) and leaves by _exit.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return false;
        }
        if pid == 0 {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(2);
            }
            let fd = match super::bpf::install(&prog, true) {
                Ok(fd) => fd,
                Err(_) => libc::_exit(3),
            };
            libc::_exit(if set_sync_wake(fd).is_ok() { 0 } else { 1 });
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return false;
            }
        }
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// The hybrid platform, with the synchronous-wakeup flag set on each listener as the sentry takes
/// it (at the first trap of each filter's first task).
pub struct SameCpu {
    inner: SeccompPtrace,
    /// The listeners that have the flag already.
    flagged: Vec<RawFd>,
}

impl SameCpu {
    /// `filter` is the hybrid trap filter (`crate::syscalls::trap_filter(true)`).
    pub fn new(filter: Vec<libc::sock_filter>) -> Self {
        SameCpu {
            inner: SeccompPtrace::new(filter),
            flagged: Vec::new(),
        }
    }

    /// Flag the listeners taken since the last look. A listener refusing it (a kernel older than
    /// the probe said, which cannot happen short of a swapped kernel) still works, only slower.
    fn flag_new_listeners(&mut self) {
        let fds = self.inner.notify_fds();
        self.flagged.retain(|fd| fds.contains(fd));
        for &fd in fds {
            if !self.flagged.contains(&fd) {
                if let Err(e) = set_sync_wake(fd) {
                    eprintln!("hako-sentry: the samecpu platform could not flag a listener: {e}");
                }
                self.flagged.push(fd);
            }
        }
    }
}

impl Platform for SameCpu {
    fn child_prepare(&self, before_filter: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        self.inner.child_prepare(before_filter)
    }
    fn attach(&mut self, pid: i32) -> Result<()> {
        self.inner.attach(pid)
    }
    fn wait(&mut self, block: bool) -> Result<Stop> {
        let s = self.inner.wait(block)?;
        // The inner platform takes a new listener at a seccomp stop only.
        if matches!(s, Stop::Syscall { .. }) {
            self.flag_new_listeners();
        }
        Ok(s)
    }
    fn get_regs(&self, tid: i32) -> Result<Regs> {
        self.inner.get_regs(tid)
    }
    fn set_regs(&self, tid: i32, regs: &Regs) -> Result<()> {
        self.inner.set_regs(tid, regs)
    }
    fn complete(&mut self, tid: i32, regs: &mut Regs, ret: i64) -> Result<()> {
        self.inner.complete(tid, regs, ret)
    }
    fn resume(&mut self, tid: i32, how: Resume) -> Result<()> {
        self.inner.resume(tid, how)
    }
    fn notify_fds(&self) -> &[RawFd] {
        self.inner.notify_fds()
    }
    fn drop_listener(&mut self, fd: RawFd) {
        self.inner.drop_listener(fd);
        self.flagged.retain(|&f| f != fd);
    }
    fn recv(&mut self, fd: RawFd) -> Result<Stop> {
        self.inner.recv(fd)
    }
    fn recv_waiting(&mut self, fd: RawFd, waker: &Waker) -> Result<Stop> {
        self.inner.recv_waiting(fd, waker)
    }
    fn respond(&mut self, id: u64, ret: i64) -> Result<()> {
        self.inner.respond(id, ret)
    }
    fn notif_valid(&self, id: u64) -> bool {
        self.inner.notif_valid(id)
    }
    fn add_fd(&mut self, id: u64, fd: RawFd, target: i32) -> Result<(), i32> {
        self.inner.add_fd(id, fd, target)
    }
    fn respond_continue(&mut self, id: u64) -> Result<()> {
        self.inner.respond_continue(id)
    }
    fn read_mem(&self, tid: i32, addr: u64, buf: &mut [u8]) -> Result<usize, i32> {
        self.inner.read_mem(tid, addr, buf)
    }
    fn write_mem(&self, tid: i32, addr: u64, data: &[u8]) -> Result<usize, i32> {
        self.inner.write_mem(tid, addr, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe answers, and agrees with the kernel's version: the flag exists from Linux 6.6.
    #[test]
    fn probe_agrees_with_the_kernel_version() {
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname into a local struct.
        assert_eq!(unsafe { libc::uname(&mut u) }, 0);
        // SAFETY: uname NUL-terminates release.
        let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let mut it = rel.split(|c: char| !c.is_ascii_digit());
        let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap();
        let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap();
        assert_eq!(supported(), (major, minor) >= (6, 6), "kernel {rel}");
    }
}
