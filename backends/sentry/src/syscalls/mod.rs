//! The sentry's system calls, above `kernel/`: one topic file per family, each call a free
//! function over the kernel. The table (`table.rs`) maps every syscall number to its handler, so
//! dispatch, the trap filter and the documentation's table come from one source.

/// `tri!(result)`: the value, or return the errno as the call's outcome.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $crate::syscalls::err(e),
        }
    };
}

pub mod attr;
pub mod caps;
pub mod dir;
pub mod epoll;
pub mod eventfd;
pub mod fd;
pub mod inotify;
pub mod ioctl;
pub mod ipc;
pub mod memfd;
pub mod mm;
pub mod mqueue;
pub mod open;
pub mod passthrough;
pub mod pipe;
pub mod poll;
pub mod process;
pub mod read_write;
pub mod signal;
pub mod signalfd;
pub mod socket;
pub mod stat;
mod table;
pub mod timerfd;

pub use table::{
    disposition, table, table_markdown, trap_filter, Cond, Disp, Handler, Imp, NEEDS_REGS,
};

use crate::kernel::{Fixup, Kernel};
use crate::platform::{self, Platform, Regs};
use std::os::fd::RawFd;
use std::time::Instant;
use syscalls::Sysno;

/// At most this much data moves through the sentry in one read, write or getdents.
pub(crate) const CHUNK: usize = 1 << 20;

/// How a trapped syscall ends.
pub enum Outcome {
    /// Return this value without running the host syscall.
    Ret(i64),
    /// Run the (possibly rewritten) syscall on the host.
    Native,
    /// Run it on the host and fix its result at syscall exit.
    NativeThen(Fixup),
    /// Block: retry when one of these host fds is ready or at the deadline.
    Park(Vec<(RawFd, i16)>, Option<Instant>),
}

pub fn err(e: i32) -> Outcome {
    Outcome::Ret(-(e as i64))
}

/// The result of a call that returns a value or an errno.
pub(crate) fn r(v: Result<i64, i32>) -> Outcome {
    match v {
        Ok(v) => Outcome::Ret(v),
        Err(e) => err(e),
    }
}

/// The errno of the host call that just failed.
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Is the host descriptor `fd` ready for `ev`, without waiting?
pub(crate) fn ready(fd: RawFd, ev: i16) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: ev,
        revents: 0,
    };
    // SAFETY: poll on one of our fds without waiting.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

/// A directory descriptor argument (AT_FDCWD is negative).
pub(crate) fn dirfd_of(v: u64) -> i32 {
    v as i32
}

/// The per-call context handed to implementations.
pub struct Call<'a> {
    pub tid: i32,
    /// The syscall (one handler may serve several, e.g. read and pread64).
    pub s: Sysno,
    pub regs: &'a mut Regs,
    pub a: [u64; 6],
    pub deadline: Option<Instant>,
    /// The seccomp notification the call came through (hybrid platforms), or None at a ptrace
    /// stop.
    pub notif: Option<u64>,
    /// How many bytes the call had already moved when it last parked (a blocking write into a
    /// full pipe: see `read_write::write_iov`); 0 for a new call. A handler that parks after
    /// moving some sets it, and gets it back when the call is retried.
    pub done: u64,
}

/// Dispatch one trapped syscall to the handler its table entry names. `retry`: the call is a
/// parked one being tried again (counted in `Stats::retries`, not as a trap); `done`: its
/// progress (0 for a new one), updated when the call parks again.
#[allow(clippy::too_many_arguments)]
pub fn handle<P: Platform>(
    k: &mut Kernel<P>,
    tid: i32,
    nr: i64,
    regs: &mut Regs,
    deadline: Option<Instant>,
    notif: Option<u64>,
    retry: bool,
    done: &mut u64,
) -> Outcome {
    let Some(s) = Sysno::new(nr as usize) else {
        return err(libc::ENOSYS);
    };
    let a = platform::args(regs);
    let mut c = Call {
        tid,
        s,
        regs,
        a,
        deadline,
        notif,
        done: *done,
    };
    let out = match disposition::<P>(s) {
        Disp::Refused(e, _) => {
            *k.stats.refused.entry(s.name()).or_default() += 1;
            return err(e);
        }
        Disp::Native(_) => Outcome::Native, // only reachable if another filter traps it
        Disp::NativeWhen(_, imp, _) | Disp::Emulated(imp) => (imp.run)(k, &mut c),
    };
    *done = c.done;
    if retry {
        k.stats.retries += 1;
    } else {
        *k.stats.emulated.entry(s.name()).or_default() += 1;
    }
    out
}
