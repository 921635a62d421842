//! Which platform a sandbox uses: `io.hako.sentry.platform`, else `HAKO_SENTRY_PLATFORM` in the
//! environment of `hako create` (how the test suite runs on each platform), else the fastest one
//! this kernel supports.

use super::{Platform, Regs, Resume, Stop};
use anyhow::{bail, Result};
use std::os::fd::RawFd;

/// The environment variable that picks the default platform (the annotation wins over it).
pub const ENV: &str = "HAKO_SENTRY_PLATFORM";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Hybrid, with each trap served on the trapping task's CPU (see [`super::samecpu`]).
    SameCpu,
    /// seccomp user notification for the syscalls answered from the sentry's state, ptrace for
    /// the rest (see [`super::ptrace`]).
    Hybrid,
    /// seccomp `RET_TRACE` + ptrace for every trap.
    Ptrace,
}

pub const NAMES: &str = "samecpu, hybrid or ptrace";

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SameCpu => "samecpu",
            Kind::Hybrid => "hybrid",
            Kind::Ptrace => "ptrace",
        }
    }

    /// A platform by name; one this kernel cannot run is an error.
    pub fn parse(v: &str) -> Result<Kind> {
        let k = match v {
            "samecpu" => Kind::SameCpu,
            "hybrid" => Kind::Hybrid,
            "ptrace" => Kind::Ptrace,
            _ => bail!("unknown sentry platform {v:?} (one of {NAMES})"),
        };
        if k == Kind::SameCpu && !super::samecpu::supported() {
            bail!("the samecpu sentry platform needs SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6 or later)");
        }
        Ok(k)
    }

    /// The annotation's value if any, else [`ENV`], else [`Kind::best`].
    pub fn choose(annotation: Option<&str>) -> Result<Kind> {
        if let Some(v) = annotation {
            return Kind::parse(v);
        }
        match std::env::var(ENV) {
            Ok(v) if !v.is_empty() => Kind::parse(&v).map_err(|e| anyhow::anyhow!("{ENV}: {e:#}")),
            _ => Ok(Kind::best()),
        }
    }

    /// samecpu where the kernel has it, else hybrid.
    pub fn best() -> Kind {
        if super::samecpu::supported() {
            Kind::SameCpu
        } else {
            Kind::Hybrid
        }
    }

    /// Whether the trap filter sends state-only syscalls to a user-notification listener.
    pub fn hybrid(self) -> bool {
        self != Kind::Ptrace
    }

    /// The platform, for the trap filter `crate::syscalls::trap_filter(self.hybrid())`.
    pub fn build(self, filter: Vec<libc::sock_filter>) -> Box<dyn Platform> {
        match self {
            Kind::SameCpu => Box::new(super::samecpu::SameCpu::new(filter)),
            Kind::Hybrid => Box::new(super::ptrace::SeccompPtrace::new(filter)),
            Kind::Ptrace => Box::new(super::ptrace::SeccompPtrace::new(filter)),
        }
    }
}

/// The kernel holds a platform chosen at run time.
impl<T: Platform + ?Sized> Platform for Box<T> {
    fn child_prepare(&self, before_filter: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        (**self).child_prepare(before_filter)
    }
    fn attach(&mut self, pid: i32) -> Result<()> {
        (**self).attach(pid)
    }
    fn wait(&mut self, block: bool) -> Result<Stop> {
        (**self).wait(block)
    }
    fn get_regs(&self, tid: i32) -> Result<Regs> {
        (**self).get_regs(tid)
    }
    fn set_regs(&self, tid: i32, regs: &Regs) -> Result<()> {
        (**self).set_regs(tid, regs)
    }
    fn complete(&mut self, tid: i32, regs: &mut Regs, ret: i64) -> Result<()> {
        (**self).complete(tid, regs, ret)
    }
    fn resume(&mut self, tid: i32, how: Resume) -> Result<()> {
        (**self).resume(tid, how)
    }
    fn notify_fds(&self) -> &[RawFd] {
        (**self).notify_fds()
    }
    fn drop_listener(&mut self, fd: RawFd) {
        (**self).drop_listener(fd)
    }
    fn recv(&mut self, fd: RawFd) -> Result<Stop> {
        (**self).recv(fd)
    }
    fn recv_waiting(&mut self, fd: RawFd, waker: &super::waker::Waker) -> Result<Stop> {
        (**self).recv_waiting(fd, waker)
    }
    fn respond(&mut self, id: u64, ret: i64) -> Result<()> {
        (**self).respond(id, ret)
    }
    fn notif_valid(&self, id: u64) -> bool {
        (**self).notif_valid(id)
    }
    fn add_fd(&mut self, id: u64, fd: RawFd, target: i32) -> Result<(), i32> {
        (**self).add_fd(id, fd, target)
    }
    fn respond_continue(&mut self, id: u64) -> Result<()> {
        (**self).respond_continue(id)
    }
    fn read_mem(&self, tid: i32, addr: u64, buf: &mut [u8]) -> Result<usize, i32> {
        (**self).read_mem(tid, addr, buf)
    }
    fn write_mem(&self, tid: i32, addr: u64, data: &[u8]) -> Result<usize, i32> {
        (**self).write_mem(tid, addr, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for k in [Kind::Hybrid, Kind::Ptrace] {
            assert_eq!(Kind::parse(k.name()).unwrap(), k);
        }
        if super::super::samecpu::supported() {
            assert_eq!(Kind::parse("samecpu").unwrap(), Kind::SameCpu);
            assert_eq!(Kind::best(), Kind::SameCpu);
        } else {
            assert!(Kind::parse("samecpu").is_err());
            assert_eq!(Kind::best(), Kind::Hybrid);
        }
        let e = Kind::parse("kvm").unwrap_err().to_string();
        assert!(e.contains("unknown sentry platform \"kvm\""), "{e}");
        assert!(Kind::choose(Some("")).is_err());
        assert_eq!(Kind::choose(Some("ptrace")).unwrap(), Kind::Ptrace);
    }
}
