//! The Platform: how the sentry intercepts the workload's system calls (gVisor's term).
//!
//! The syscall implementations (`crate::syscalls`) never talk to ptrace or seccomp directly: they
//! see [`Stop`]s, registers and tracee memory through this trait. The platforms are
//! [`ptrace::SeccompPtrace`] (seccomp `SECCOMP_RET_TRACE` + ptrace, alone or with seccomp user
//! notification: `ptrace` and `hybrid`) and [`samecpu::SameCpu`] (hybrid, served on the trapping
//! task's CPU: the default where the kernel has it); [`kind`] chooses. `examples/platform_bench.rs`
//! measures the mechanisms against `PTRACE_SYSEMU` (see docs/backends/sentry.md).

pub mod bpf;
pub mod floor;
pub mod kind;
pub mod ptrace;
pub mod samecpu;
pub mod waker;

use anyhow::Result;

pub type Regs = libc::user_regs_struct;

/// Why a tracee stopped.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::large_enum_variant)]
pub enum Stop {
    /// A trapped system call, before it runs. Registers hold the number and arguments.
    Syscall {
        tid: i32,
    },
    /// A system call reported through the seccomp user-notification fd (hybrid platform): the
    /// task waits in the kernel for [`Platform::respond`]; `regs` carries only nr and arguments.
    Notif {
        tid: i32,
        id: u64,
        regs: Regs,
    },
    /// The exit of a system call the kernel asked to see the end of (see [`Resume::ToSyscallExit`]).
    SyscallExit {
        tid: i32,
    },
    /// `tid` forked/vforked/cloned `child` (the child is traced from birth).
    NewChild {
        parent: i32,
        child: i32,
    },
    /// `tid` completed an execve; `former` is the tid that called it (differs for a non-leader thread).
    Exec {
        tid: i32,
        former: i32,
    },
    /// A signal is about to be delivered to `tid` (or `tid` entered a group stop when `group`).
    Signal {
        tid: i32,
        sig: i32,
        group: bool,
    },
    Exited {
        tid: i32,
        code: i32,
    },
    Killed {
        tid: i32,
        sig: i32,
    },
    /// Nothing happened (non-blocking wait or interrupted).
    None,
    /// No tracee left.
    NoTracees,
}

/// How to let a stopped tracee go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Continue; a non-zero value delivers that signal.
    Continue(i32),
    /// Continue, and stop again at the exit of the current (or, from an exit stop, the next) syscall.
    ToSyscallExit,
}

/// The interception interface.
pub trait Platform {
    /// In the freshly forked tracee: make it traceable and install the trap filter. After this
    /// returns, every system call not on the native allowlist stops in the sentry.
    /// `before_filter` runs once the tracee is traced and has no_new_privs, right before the
    /// trap filter (the OCI seccomp profile goes there).
    fn child_prepare(&self, before_filter: &mut dyn FnMut() -> Result<()>) -> Result<()>;
    /// In the sentry: adopt the tracee prepared by [`Platform::child_prepare`].
    fn attach(&mut self, pid: i32) -> Result<()>;
    /// The next stop; `block` false returns [`Stop::None`] when nothing is pending.
    fn wait(&mut self, block: bool) -> Result<Stop>;
    fn get_regs(&self, tid: i32) -> Result<Regs>;
    fn set_regs(&self, tid: i32, regs: &Regs) -> Result<()>;
    /// Finish a trapped system call without running it on the host: it returns `ret` to the tracee.
    fn complete(&mut self, tid: i32, regs: &mut Regs, ret: i64) -> Result<()>;
    fn resume(&mut self, tid: i32, how: Resume) -> Result<()>;
    /// The user-notification fds to poll (one per installed trap filter), when the platform
    /// has them.
    fn notify_fds(&self) -> &[std::os::fd::RawFd] {
        &[]
    }
    /// A listener whose filter no task uses any more (poll said POLLHUP).
    fn drop_listener(&mut self, _fd: std::os::fd::RawFd) {}
    /// Receive one pending notification (call when that fd of [`Platform::notify_fds`] is readable).
    fn recv(&mut self, _fd: std::os::fd::RawFd) -> Result<Stop> {
        Ok(Stop::None)
    }
    /// [`Platform::recv`], blocking until a notification comes or `waker` reports an event
    /// ([`Stop::None`] then).
    fn recv_waiting(&mut self, _fd: std::os::fd::RawFd, _waker: &waker::Waker) -> Result<Stop> {
        Ok(Stop::None)
    }
    /// Answer a notification: the syscall returns `ret` (negative: -errno).
    fn respond(&mut self, _id: u64, _ret: i64) -> Result<()> {
        Ok(())
    }
    /// Put the sentry's `fd` into the notifying task's own descriptor table at `target`
    /// (replacing what is there, close-on-exec), for the call to run natively on it
    /// (`SECCOMP_IOCTL_NOTIF_ADDFD`). Err: an errno (ENOSYS where the platform has no
    /// notifications).
    fn add_fd(&mut self, _id: u64, _fd: std::os::fd::RawFd, _target: i32) -> Result<(), i32> {
        Err(libc::ENOSYS)
    }
    /// Answer a notification by letting the call run natively, as the task made it.
    fn respond_continue(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }
    /// Whether the task behind a notification is still waiting for it.
    fn notif_valid(&self, _id: u64) -> bool {
        false
    }
    fn read_mem(&self, tid: i32, addr: u64, buf: &mut [u8]) -> Result<usize, i32>;
    fn write_mem(&self, tid: i32, addr: u64, data: &[u8]) -> Result<usize, i32>;
}

/// Syscall number and arguments from registers (x86_64 ABI).
pub fn sysno(r: &Regs) -> i64 {
    r.orig_rax as i64
}

pub fn args(r: &Regs) -> [u64; 6] {
    [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]
}
