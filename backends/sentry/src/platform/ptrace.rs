//! seccomp `SECCOMP_RET_TRACE` + ptrace.
//!
//! The tracee installs a BPF filter whose default action is `RET_TRACE`; the allowlisted
//! syscalls (memory management, futex, clocks, signal masks: see `crate::syscalls::table`) run
//! natively without a stop. Every other syscall stops the tracee in `PTRACE_EVENT_SECCOMP`, before
//! the kernel runs it; the sentry implements it and skips the host syscall by setting
//! `orig_rax = -1` and `rax = result`. Processes forked by the workload are traced from birth
//! (`PTRACE_O_TRACEFORK|VFORK|CLONE`) and inherit the filter; `PTRACE_O_EXITKILL` kills every
//! tracee if the sentry dies, so nothing runs untraced.

use super::waker::Waker;
use super::{Platform, Regs, Resume, Stop};
use anyhow::{bail, Context, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// seccomp + ptrace. The hybrid filter (`crate::syscalls::trap_filter(true)`) sends the syscalls
/// the sentry answers from its own state (read, write, stat, getpid...) to a
/// `SECCOMP_RET_USER_NOTIF` listener, and keeps `SECCOMP_RET_TRACE` for the few whose registers
/// the sentry must rewrite (execve, clone, wait4, file mmap...); the ptrace one traps everything
/// with `RET_TRACE` but writable shared file mappings, which need the listener's
/// `SECCOMP_IOCTL_NOTIF_ADDFD`. Fork, exec and signal events always come through ptrace.
pub struct SeccompPtrace {
    filter: Vec<libc::sock_filter>,
    /// One listener per installed trap filter: the workload's first process's, and one for each
    /// process `hako exec` started (a filter and its listener are inherited by fork, never shared
    /// across separately installed filters).
    listeners: Vec<OwnedFd>,
    /// Their descriptors, in the same order (what [`Platform::notify_fds`] lends).
    listener_fds: Vec<RawFd>,
    /// Tracees attached but whose listener is not taken yet (taken at their first trap).
    want: Vec<i32>,
    /// The listener each pending notification came from.
    pending: std::collections::HashMap<u64, RawFd>,
}

impl SeccompPtrace {
    pub fn new(filter: Vec<libc::sock_filter>) -> Self {
        SeccompPtrace {
            filter,
            listeners: Vec::new(),
            listener_fds: Vec::new(),
            want: Vec::new(),
            pending: std::collections::HashMap::new(),
        }
    }

    /// Take the tracee's listener fd (it is close-on-exec in the tracee) once it exists.
    fn grab_listener(&mut self, tid: i32) -> bool {
        // Through the sentry's own /proc descriptor, never the path /proc (see hostproc).
        let Ok(names) = crate::hostproc::list_dir(&format!("{tid}/fd")) else {
            return false;
        };
        for name in names {
            let is_notify = crate::hostproc::read_link(&format!("{tid}/fd/{name}"))
                .is_ok_and(|l| l.to_string_lossy().contains("seccomp notify"));
            let Ok(fd) = name.parse::<i32>() else {
                continue;
            };
            if !is_notify {
                continue;
            }
            // SAFETY: pidfd_open/pidfd_getfd on our own tracee.
            unsafe {
                let pidfd = libc::syscall(libc::SYS_pidfd_open, tid, 0) as i32;
                if pidfd < 0 {
                    return false;
                }
                let l = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
                libc::close(pidfd);
                if l >= 0 {
                    self.listeners.push(OwnedFd::from_raw_fd(l));
                    self.listener_fds.push(l);
                    return true;
                }
            }
            return false;
        }
        false
    }

    /// Receive one notification from listener `fd` through `ioctl` (which returns 0 or a
    /// negative value), as a [`Stop`]; [`Stop::None`] when there was none to take.
    fn recv_by(
        &mut self,
        fd: RawFd,
        ioctl: impl FnOnce(RawFd, &mut SeccompNotif) -> i64,
    ) -> Result<Stop> {
        let Some(l) = self.listeners.iter().find(|l| l.as_raw_fd() == fd) else {
            return Ok(Stop::None);
        };
        // SAFETY: a zeroed seccomp_notif, as the kernel requires.
        let mut n: SeccompNotif = unsafe { std::mem::zeroed() };
        if ioctl(l.as_raw_fd(), &mut n) != 0 {
            return Ok(Stop::None); // ENOENT: the task went away meanwhile; EINTR
        }
        let mut regs: Regs = unsafe { std::mem::zeroed() };
        regs.orig_rax = n.nr as i64 as u64;
        regs.rdi = n.args[0];
        regs.rsi = n.args[1];
        regs.rdx = n.args[2];
        regs.r10 = n.args[3];
        regs.r8 = n.args[4];
        regs.r9 = n.args[5];
        regs.rip = n.ip;
        self.pending.insert(n.id, fd);
        Ok(Stop::Notif {
            tid: n.pid as i32,
            id: n.id,
            regs,
        })
    }
}

#[repr(C)]
struct SeccompNotif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
struct SeccompNotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
const NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;
/// `SECCOMP_IOCTL_NOTIF_ADDFD` (`SECCOMP_IOW(3, struct seccomp_notif_addfd)`), its
/// `SECCOMP_ADDFD_FLAG_SETFD`, and the response flag `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: not in
/// the libc crate.
const NOTIF_ADDFD: libc::c_ulong = 0x4018_2103;
const ADDFD_FLAG_SETFD: u32 = 1;
const FLAG_CONTINUE: u32 = 1;

#[repr(C)]
struct SeccompNotifAddfd {
    id: u64,
    flags: u32,
    srcfd: u32,
    newfd: u32,
    newfd_flags: u32,
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

const OPTIONS: libc::c_int = libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_EXITKILL;

impl Platform for SeccompPtrace {
    fn child_prepare(&self, before_filter: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        // SAFETY: plain syscalls in the single-threaded child.
        unsafe {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                bail!("PTRACE_TRACEME: {}", std::io::Error::last_os_error());
            }
            // Wait for the sentry to set the ptrace options before the filter can trap anything.
            libc::raise(libc::SIGSTOP);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                bail!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
            }
        }
        before_filter()?;
        // Both modes make a listener: the ptrace mode's filter sends only writable shared file
        // mappings there, for the sentry to hand the task the file (`syscalls/mm.rs`).
        super::bpf::install(&self.filter, true).context("installing the trap filter")?;
        Ok(())
    }

    fn attach(&mut self, pid: i32) -> Result<()> {
        let mut status = 0;
        // SAFETY: waitpid/ptrace on our own child.
        unsafe {
            if libc::waitpid(pid, &mut status, libc::__WALL) != pid {
                bail!(
                    "waiting for the tracee: {}",
                    std::io::Error::last_os_error()
                );
            }
            if !libc::WIFSTOPPED(status) {
                bail!("the tracee exited during set-up (status {status:#x})");
            }
            if libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, OPTIONS as libc::c_long) != 0 {
                bail!("PTRACE_SETOPTIONS: {}", std::io::Error::last_os_error());
            }
            if libc::ptrace(libc::PTRACE_CONT, pid, 0, 0) != 0 {
                bail!("PTRACE_CONT: {}", std::io::Error::last_os_error());
            }
        }
        self.want.push(pid);
        Ok(())
    }

    fn wait(&mut self, block: bool) -> Result<Stop> {
        let mut status = 0;
        let flags = libc::__WALL | if block { 0 } else { libc::WNOHANG };
        // SAFETY: waitpid with a valid status pointer.
        let tid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if tid == 0 {
            return Ok(Stop::None);
        }
        if tid < 0 {
            return match errno() {
                libc::EINTR => Ok(Stop::None),
                libc::ECHILD => Ok(Stop::NoTracees),
                e => bail!("waitpid: {}", std::io::Error::from_raw_os_error(e)),
            };
        }
        if libc::WIFEXITED(status) {
            return Ok(Stop::Exited {
                tid,
                code: libc::WEXITSTATUS(status),
            });
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Stop::Killed {
                tid,
                sig: libc::WTERMSIG(status),
            });
        }
        if !libc::WIFSTOPPED(status) {
            return Ok(Stop::None);
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        if sig == libc::SIGTRAP | 0x80 {
            return Ok(Stop::SyscallExit { tid });
        }
        if sig == libc::SIGTRAP && event != 0 {
            let msg = geteventmsg(tid);
            return Ok(match event {
                libc::PTRACE_EVENT_SECCOMP => {
                    if let Some(i) = self.want.iter().position(|&t| t == tid) {
                        self.want.remove(i);
                        let first = self.listeners.is_empty();
                        if !self.grab_listener(tid) {
                            // Without the listener every notified syscall would hang: stop here
                            // (the whole sandbox for its first process, the one tracee else).
                            // SAFETY: kill our own tracee.
                            unsafe { libc::kill(tid, libc::SIGKILL) };
                            if first {
                                bail!("could not take the seccomp listener from the tracee");
                            }
                        }
                    }
                    Stop::Syscall { tid }
                }
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                    Stop::NewChild {
                        parent: tid,
                        child: msg as i32,
                    }
                }
                libc::PTRACE_EVENT_EXEC => Stop::Exec {
                    tid,
                    former: msg as i32,
                },
                _ => {
                    // Unexpected event (e.g. VFORK_DONE): just go on.
                    // SAFETY: ptrace on a stopped tracee.
                    unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0, 0) };
                    Stop::None
                }
            });
        }
        // Signal-delivery stop or group stop: a group stop has no siginfo.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: ptrace with a valid siginfo buffer.
        let group =
            unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, tid, 0, &mut si as *mut _) } != 0;
        Ok(Stop::Signal { tid, sig, group })
    }

    fn get_regs(&self, tid: i32) -> Result<Regs> {
        let mut r: Regs = unsafe { std::mem::zeroed() };
        // SAFETY: ptrace with a valid regs buffer.
        if unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut r as *mut Regs) } != 0 {
            bail!("PTRACE_GETREGS {tid}: {}", std::io::Error::last_os_error());
        }
        Ok(r)
    }

    fn set_regs(&self, tid: i32, regs: &Regs) -> Result<()> {
        // SAFETY: ptrace with a valid regs buffer.
        if unsafe { libc::ptrace(libc::PTRACE_SETREGS, tid, 0, regs as *const Regs) } != 0 {
            let e = errno();
            if e == libc::ESRCH {
                // Killed meanwhile (another thread's exit_group, a SIGKILL): its exit is
                // reported by wait(), and resuming it is a no-op; the sandbox goes on.
                return Ok(());
            }
            bail!(
                "PTRACE_SETREGS {tid}: {}",
                std::io::Error::from_raw_os_error(e)
            );
        }
        Ok(())
    }

    fn complete(&mut self, tid: i32, regs: &mut Regs, ret: i64) -> Result<()> {
        regs.orig_rax = u64::MAX; // skip the host syscall
        regs.rax = ret as u64;
        // SAFETY: ptrace with a valid regs buffer.
        if unsafe { libc::ptrace(libc::PTRACE_SETREGS, tid, 0, regs as *const Regs) } != 0 {
            let e = errno();
            if e == libc::ESRCH {
                // Killed by the call itself (kill(getpid(), SIGKILL)) or meanwhile: its exit is
                // reported by wait(); the sandbox goes on.
                return Ok(());
            }
            bail!(
                "PTRACE_SETREGS {tid}: {}",
                std::io::Error::from_raw_os_error(e)
            );
        }
        self.resume(tid, Resume::Continue(0))
    }

    fn resume(&mut self, tid: i32, how: Resume) -> Result<()> {
        let (req, sig) = match how {
            Resume::Continue(s) => (libc::PTRACE_CONT, s),
            Resume::ToSyscallExit => (libc::PTRACE_SYSCALL, 0),
        };
        // SAFETY: ptrace on a stopped tracee.
        if unsafe { libc::ptrace(req, tid, 0, sig as libc::c_long) } != 0 {
            let e = errno();
            if e == libc::ESRCH {
                return Ok(()); // killed meanwhile; its exit is reported by wait()
            }
            bail!("resuming {tid}: {}", std::io::Error::from_raw_os_error(e));
        }
        Ok(())
    }

    fn notify_fds(&self) -> &[RawFd] {
        &self.listener_fds
    }

    fn drop_listener(&mut self, fd: RawFd) {
        self.listeners.retain(|l| l.as_raw_fd() != fd);
        self.listener_fds.retain(|&l| l != fd);
        self.pending.retain(|_, l| *l != fd);
    }

    fn recv(&mut self, fd: RawFd) -> Result<Stop> {
        // SAFETY: ioctl with the right struct size.
        self.recv_by(fd, |fd, n| unsafe {
            libc::ioctl(fd, NOTIF_RECV, n as *mut SeccompNotif) as i64
        })
    }

    fn recv_waiting(&mut self, fd: RawFd, waker: &Waker) -> Result<Stop> {
        // SAFETY: ioctl with the right struct size.
        self.recv_by(fd, |fd, n| unsafe {
            waker.recv(fd, NOTIF_RECV, (n as *mut SeccompNotif).cast())
        })
    }

    fn respond(&mut self, id: u64, ret: i64) -> Result<()> {
        let Some(l) = self.pending.remove(&id) else {
            return Ok(());
        };
        let mut r = if ret < 0 && ret > -4096 {
            SeccompNotifResp {
                id,
                val: 0,
                error: ret as i32,
                flags: 0,
            }
        } else {
            SeccompNotifResp {
                id,
                val: ret,
                error: 0,
                flags: 0,
            }
        };
        // SAFETY: ioctl with the right struct size. ENOENT (the task was interrupted) is fine.
        unsafe { libc::ioctl(l, NOTIF_SEND, &mut r as *mut SeccompNotifResp) };
        Ok(())
    }

    fn add_fd(&mut self, id: u64, fd: RawFd, target: i32) -> Result<(), i32> {
        let Some(&l) = self.pending.get(&id) else {
            return Err(libc::ENOSYS);
        };
        let mut a = SeccompNotifAddfd {
            id,
            flags: ADDFD_FLAG_SETFD,
            srcfd: fd as u32,
            newfd: target as u32,
            newfd_flags: libc::O_CLOEXEC as u32,
        };
        // SAFETY: ioctl with the right struct size.
        if unsafe { libc::ioctl(l, NOTIF_ADDFD, &mut a as *mut SeccompNotifAddfd) } < 0 {
            return Err(errno());
        }
        Ok(())
    }

    fn respond_continue(&mut self, id: u64) -> Result<()> {
        let Some(l) = self.pending.remove(&id) else {
            return Ok(());
        };
        let mut r = SeccompNotifResp {
            id,
            val: 0,
            error: 0,
            flags: FLAG_CONTINUE,
        };
        // SAFETY: ioctl with the right struct size. ENOENT (the task was interrupted) is fine.
        unsafe { libc::ioctl(l, NOTIF_SEND, &mut r as *mut SeccompNotifResp) };
        Ok(())
    }

    fn notif_valid(&self, id: u64) -> bool {
        let Some(&l) = self.pending.get(&id) else {
            return false;
        };
        let mut id = id;
        // SAFETY: ioctl with a u64.
        unsafe { libc::ioctl(l, NOTIF_ID_VALID, &mut id as *mut u64) == 0 }
    }

    fn read_mem(&self, tid: i32, addr: u64, buf: &mut [u8]) -> Result<usize, i32> {
        if buf.is_empty() {
            return Ok(0);
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut _,
            iov_len: buf.len(),
        };
        // SAFETY: valid iovecs; the kernel checks the remote range.
        let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            Err(errno())
        } else {
            Ok(n as usize)
        }
    }

    fn write_mem(&self, tid: i32, addr: u64, data: &[u8]) -> Result<usize, i32> {
        if data.is_empty() {
            return Ok(0);
        }
        let local = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut _,
            iov_len: data.len(),
        };
        // SAFETY: valid iovecs; the kernel checks the remote range.
        let n = unsafe { libc::process_vm_writev(tid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            Err(errno())
        } else {
            Ok(n as usize)
        }
    }
}

fn geteventmsg(tid: i32) -> u64 {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: ptrace with a valid out pointer.
    unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            0,
            &mut msg as *mut libc::c_ulong,
        )
    };
    msg as u64
}
