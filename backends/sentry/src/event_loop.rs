//! The event loop: the sentry's main loop, above `syscalls/` and `kernel/`. It waits for platform
//! stops (ptrace stops, seccomp notifications), `hako exec` clients and the descriptors parked
//! tasks wait on, and turns each into kernel bookkeeping (births, execs, exits, signals) or a
//! syscall implementation, whose outcome it hands back to the platform.

use crate::exec::{Hub, Request};
use crate::kernel::fdtable::FdTable;
use crate::kernel::{Fixup, Kernel, Parked};
use crate::platform::waker::Waker;
use crate::platform::{self, Platform, Regs, Resume, Stop};
use crate::syscalls::{self, Outcome};
use anyhow::Result;
use std::cell::RefCell;
use std::collections::HashSet;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The sandbox's kernel and the `hako exec` service, as one loop runs them.
pub struct EventLoop<P: Platform> {
    pub k: Kernel<P>,
    /// `hako exec`'s socket and clients (see `crate::exec`), once the workload runs.
    pub exec: Option<Hub>,
    /// When the parked notified tasks were last checked for pending signals.
    signals_checked: Instant,
    /// Tasks whose parked call the sentry itself ended with -ERESTARTSYS for a signal (see
    /// [`EventLoop::interrupt_parked`]): their signal stop keeps that code.
    sentry_restarted: HashSet<i32>,
    /// Watches the other event sources while the loop blocks in RECV (see `platform::waker`);
    /// None: the loop polls everything itself.
    waker: Option<Waker>,
    /// The listener the last notification came from (-1: none yet), and how many came from it
    /// in a row since one came from another (see [`CALM`]).
    last_listener: RawFd,
    calm: u32,
}

/// With several listeners (a sandbox with `hako exec`'d processes), the loop blocks in the RECV
/// of the one the last CALM notifications in a row came from: the workload traps through one
/// listener at a time, the likeliest next one is that one, and a trap through another costs an
/// interrupted RECV (the waker's wakeup and its signal). While traps come through several
/// listeners at once the loop polls them all instead, as that costs one `poll` per wait and no
/// other thread. A notification from another listener starts the count again. The threshold
/// weighs the two mistakes: polling while one listener is busy costs about 1 µs per trap (the
/// `poll`), blocking on the wrong one a few tens of µs once.
const CALM: u32 = 32;

/// How often parked notified tasks are checked for a signal to deliver (see
/// [`EventLoop::interrupt_parked`]).
const SIGNAL_CHECK: Duration = Duration::from_millis(20);

/// The kernel's internal restart codes a syscall can hold when a signal stops its task:
/// -ERESTARTSYS restarts after a handler only with `SA_RESTART` (EINTR without),
/// -ERESTARTNOINTR always restarts.
const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;

impl<P: Platform> EventLoop<P> {
    pub fn new(k: Kernel<P>, exec: Option<Hub>) -> Self {
        EventLoop {
            k,
            exec,
            signals_checked: Instant::now(),
            sentry_restarted: HashSet::new(),
            waker: None,
            last_listener: -1,
            calm: 0,
        }
    }

    /// Carry out an exec request: the spawner makes the process, stopped; the sentry attaches
    /// and registers it with the request's stdio as its descriptors 0-2. Returns (host pid, vpid).
    fn spawn_exec(&mut self, hub: &Hub, req: &Request) -> Result<(i32, i32)> {
        if self.k.init_status.is_some() || !self.k.tasks.contains_key(&self.k.init_host) {
            anyhow::bail!("the container's workload has ended");
        }
        let mut fds = FdTable::new(req.cfg.nofile);
        for (i, f) in req.stdio.iter().enumerate() {
            let file =
                crate::setup::stdio_file(i as RawFd, Some(std::os::fd::AsRawFd::as_raw_fd(f)))?;
            fds.set(i as i32, Rc::new(RefCell::new(file)), false)
                .map_err(std::io::Error::from_raw_os_error)?;
        }
        let host = hub.spawn(req)?;
        if let Err(e) = self.k.plat.attach(host) {
            // SAFETY: our own child (CLONE_PARENT), not yet registered.
            unsafe {
                libc::kill(host, libc::SIGKILL);
                libc::waitpid(host, std::ptr::null_mut(), libc::__WALL | libc::WNOHANG);
            }
            return Err(e.context("the exec'd process died during set-up"));
        }
        let vpid = self.k.add_process(host, fds, &req.cfg);
        Ok((host, vpid))
    }

    /// Serve `hako exec` clients whose fds poll found ready.
    fn service_exec(&mut self, ready: &[RawFd]) {
        let Some(mut hub) = self.exec.take() else {
            return;
        };
        for req in hub.service(ready, &self.k.vfs) {
            match self.spawn_exec(&hub, &req) {
                Ok((host, vpid)) => hub.started(req.client, host, vpid),
                Err(e) => hub.failed(req.client, &e),
            }
        }
        self.exec = Some(hub);
    }

    /// A notification came from listener `fd`: count how many in a row came from the same one.
    fn received(&mut self, fd: RawFd) {
        if fd == self.last_listener {
            self.calm = self.calm.saturating_add(1);
        } else {
            self.last_listener = fd;
            self.calm = 0;
        }
    }

    /// Let [`EventLoop::run`] wait for traps in RECV itself, `waker` watching the other sources
    /// (see `platform::waker`). Without one the loop polls all its sources.
    pub fn set_waker(&mut self, waker: Waker) {
        self.waker = Some(waker);
    }

    /// Run until the workload's init is gone; returns (signaled, code-or-signal).
    pub fn run(&mut self) -> Result<(bool, i32)> {
        let r = self.run_loop();
        // The waker polls descriptors the kernel is about to close: stop it first.
        self.waker = None;
        r
    }

    fn run_loop(&mut self) -> Result<(bool, i32)> {
        let mut check_wait = true;
        // Reused from one iteration to the next: no allocation per trap.
        let mut nfds: Vec<RawFd> = Vec::new();
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        let mut ready_exec: Vec<RawFd> = Vec::new();
        loop {
            if self.k.tasks.is_empty() && self.k.early.is_empty() {
                break;
            }
            nfds.clear();
            nfds.extend_from_slice(self.k.plat.notify_fds());
            if nfds.is_empty() && self.k.parked.is_empty() && self.exec.is_none() {
                // Only ptrace stops can happen: block in waitpid.
                match self.k.plat.wait(true)? {
                    Stop::NoTracees => break,
                    Stop::None => {}
                    s => self.handle(s)?,
                }
                check_wait = true;
                continue;
            }
            if check_wait {
                drain(self.k.sigchld_fd);
                loop {
                    match self.k.plat.wait(false)? {
                        Stop::None => break,
                        Stop::NoTracees => {
                            return Ok(self.k.init_status.unwrap_or((true, libc::SIGKILL)))
                        }
                        s => self.handle(s)?,
                    }
                }
                check_wait = false;
                continue;
            }
            // Wait for a ptrace event (SIGCHLD), a notification, or a parked task's fd/deadline.
            let pollin = |fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            pfds.clear();
            pfds.push(pollin(self.k.sigchld_fd));
            let first_notif = pfds.len();
            pfds.extend(nfds.iter().map(|&fd| pollin(fd)));
            let first_exec = pfds.len();
            if let Some(h) = &self.exec {
                pfds.extend(h.poll_fds().map(pollin));
            }
            let first_parked = pfds.len();
            let mut deadline: Option<Instant> = None;
            let waiters = &self.k.signal_waiters;
            if self
                .k
                .parked
                .iter()
                .any(|p| p.notif.is_some() || waiters.contains(&p.tid))
            {
                deadline = Some(self.signals_checked + SIGNAL_CHECK);
            }
            for p in &self.k.parked {
                for &(fd, ev) in &p.fds {
                    pfds.push(libc::pollfd {
                        fd,
                        events: ev,
                        revents: 0,
                    });
                }
                if let Some(d) = p.deadline {
                    deadline = Some(deadline.map_or(d, |t| t.min(d)));
                }
            }
            let mut timeout = crate::platform::waker::poll_timeout_ms(deadline);
            if let Some(w) = self.waker.as_mut() {
                // Block in the RECV of one listener: the only one, or, with several, the one the
                // last CALM notifications in a row came from (see `received`). The waker watches
                // everything else: the other listeners for a notification, this one for its HUP
                // only.
                let blocking = match nfds.len() {
                    0 => None,
                    1 => Some(0),
                    _ if self.calm >= CALM => nfds.iter().position(|&fd| fd == self.last_listener),
                    _ => None,
                };
                if let Some(at) = blocking {
                    pfds[first_notif + at].events = 0;
                    w.watch(&pfds, deadline);
                    pfds[first_notif + at].events = libc::POLLIN;
                    let fd = nfds[at];
                    let s = self.k.plat.recv_waiting(fd, w)?;
                    let event = self.waker.as_mut().is_some_and(|w| w.take_event());
                    if matches!(s, Stop::Notif { .. }) {
                        self.received(fd);
                    }
                    if !matches!(s, Stop::None) {
                        self.handle(s)?;
                    }
                    if !event {
                        continue;
                    }
                    // Something else is ready: look at everything without blocking, as below.
                    timeout = 0;
                } else {
                    w.disarm();
                }
            }
            // SAFETY: valid pollfd array.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                continue; // EINTR (a forwarded signal)
            }
            if pfds[0].revents != 0 {
                check_wait = true;
            }
            for (i, &fd) in nfds.iter().enumerate() {
                let r = pfds[first_notif + i].revents;
                if r & libc::POLLIN != 0 {
                    let s = self.k.plat.recv(fd)?;
                    if matches!(s, Stop::Notif { .. }) {
                        self.received(fd);
                    }
                    self.handle(s)?;
                } else if r & libc::POLLHUP != 0 {
                    // No task uses that filter any more (an exec'd process and its children
                    // are gone).
                    self.k.plat.drop_listener(fd);
                }
            }
            ready_exec.clear();
            ready_exec.extend(
                pfds[first_exec..first_parked]
                    .iter()
                    .filter(|p| p.revents != 0)
                    .map(|p| p.fd),
            );
            if !ready_exec.is_empty() {
                self.service_exec(&ready_exec);
            }
            let parked_ready = pfds[first_parked..].iter().any(|p| p.revents != 0);
            let expired = self
                .k
                .parked
                .iter()
                .any(|p| p.deadline.is_some_and(|d| Instant::now() >= d));
            if parked_ready || expired {
                self.retry_parked()?;
            }
            if self.signals_checked.elapsed() >= SIGNAL_CHECK {
                self.interrupt_parked()?;
                // Tasks waiting on a signalfd: look again (a retry that is still not ready parks
                // again and says so).
                let waiters = std::mem::take(&mut self.k.signal_waiters);
                let (again, rest) = std::mem::take(&mut self.k.parked)
                    .into_iter()
                    .partition(|p| waiters.contains(&p.tid));
                self.k.parked = rest;
                self.retry(again)?;
            }
        }
        Ok(self.k.init_status.unwrap_or((true, libc::SIGKILL)))
    }

    /// A task the sentry has taken a notification from waits for the answer killably (see
    /// `platform::bpf::install`): a signal it handles or ignores does not end that wait. A parked
    /// call (a read of an empty pipe, a poll) would then hold the signal back until it completes,
    /// so the sentry looks for one every [`SIGNAL_CHECK`] and ends the call as the kernel's own
    /// wait would: -ERESTARTSYS, which the kernel turns into a restart or EINTR as the handler's
    /// SA_RESTART says, once the signal is delivered, when nothing of the call has happened yet.
    /// A write that has written part of its bytes returns that count instead, as Linux's
    /// `pipe_write` does, and only for a signal that acts (not an ignored one: Linux would not
    /// have queued it, see `signal_acts`), since that return is not restarted.
    fn interrupt_parked(&mut self) -> Result<()> {
        use crate::kernel::task::{signal_acts, signal_pending};
        self.signals_checked = Instant::now();
        let mut i = 0;
        while i < self.k.parked.len() {
            let p = &self.k.parked[i];
            match p.notif {
                Some(id) if p.done == 0 && signal_pending(p.tid) => {
                    let tid = p.tid;
                    self.k.parked.remove(i);
                    self.sentry_restarted.insert(tid);
                    self.k.plat.respond(id, -ERESTARTSYS)?;
                }
                Some(id) if p.done > 0 && signal_acts(p.tid) => {
                    let done = p.done as i64;
                    self.k.parked.remove(i);
                    self.k.plat.respond(id, done)?;
                }
                _ => i += 1,
            }
        }
        Ok(())
    }

    /// A signal stop of a task whose trapped call the sentry never received. On the notification
    /// platforms a task waits for the sentry interruptibly until the sentry has taken its
    /// notification (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` only covers the wait after that):
    /// a signal arriving in between (a child's SIGCHLD) ends the wait, and the kernel leaves
    /// -ERESTARTSYS in the call, which a handler without `SA_RESTART` turns into EINTR. Nothing
    /// of the call has happened, so to the workload that is a signal delivered just before the
    /// syscall instruction; but it saw EINTR from calls Linux never interrupts (close, dup2,
    /// pipe2, a write to a file), which programs do not retry: busybox `sh` lost the `close` of a
    /// pipe's write end that way, and the pipe's reader waited forever. The call is made to
    /// restart after the handler instead (-ERESTARTNOINTR), as if the signal had come first.
    /// The sentry's own -ERESTARTSYS (a parked call ended for a signal, `interrupt_parked`) and
    /// the host's (calls that run natively: wait4, futex...) are left as they are.
    fn restart_unseen_call(&mut self, tid: i32) -> Result<()> {
        if self.sentry_restarted.remove(&tid) || self.k.plat.notify_fds().is_empty() {
            return Ok(());
        }
        if self
            .k
            .parked
            .iter()
            .any(|p| p.tid == tid && p.notif.is_some())
        {
            // Received and parked (a kernel without WAIT_KILLABLE_RECV let the signal in).
            return Ok(());
        }
        let Ok(mut regs) = self.k.plat.get_regs(tid) else {
            return Ok(()); // gone meanwhile: its exit is reported by wait()
        };
        let nr = regs.orig_rax as i64;
        if regs.rax as i64 != -ERESTARTSYS || !notified::<P>(nr) {
            return Ok(());
        }
        // A signalfd read runs natively in the task (syscalls/signalfd.rs): its -ERESTARTSYS is
        // the host's, for a signal that ended a real wait.
        if nr == libc::SYS_read
            && self
                .k
                .file(tid, regs.rdi)
                .is_ok_and(|f| matches!(f.borrow().kind, crate::vfs::FileKind::Signal { .. }))
        {
            return Ok(());
        }
        // So does a pipe read that runs in the task (syscalls/passthrough.rs).
        if syscalls::passthrough::runs_in_task(&self.k, tid, nr, regs.rdi) {
            return Ok(());
        }
        regs.rax = -ERESTARTNOINTR as u64;
        self.k.plat.set_regs(tid, &regs)
    }

    fn retry_parked(&mut self) -> Result<()> {
        let parked = std::mem::take(&mut self.k.parked);
        self.retry(parked)
    }

    /// Dispatch parked calls again.
    fn retry(&mut self, parked: Vec<Parked>) -> Result<()> {
        for p in parked {
            if !self.k.tasks.contains_key(&p.tid) {
                continue;
            }
            if let Some(id) = p.notif {
                if !self.k.plat.notif_valid(id) {
                    continue; // interrupted by a signal: the syscall restarts as a new notification
                }
            }
            let mut regs = p.regs;
            self.dispatch(p.tid, &mut regs, p.deadline, p.notif, Some(p.done))?;
        }
        Ok(())
    }

    fn handle(&mut self, stop: Stop) -> Result<()> {
        match stop {
            Stop::Syscall { tid } => {
                if !self.k.tasks.contains_key(&tid) {
                    // A trap from a task we do not know cannot happen (children are named by
                    // their parent's fork event first); refuse it.
                    let mut regs = self.k.plat.get_regs(tid)?;
                    return self.k.plat.complete(tid, &mut regs, -(libc::ENOSYS as i64));
                }
                let mut regs = self.k.plat.get_regs(tid)?;
                self.dispatch(tid, &mut regs, None, None, None)
            }
            Stop::Notif { tid, id, mut regs } => {
                if !self.k.tasks.contains_key(&tid) {
                    return self.k.plat.respond(id, -(libc::ENOSYS as i64));
                }
                // A thread is in one syscall at a time: an older parked notification is dead.
                self.k
                    .parked
                    .retain(|p| !(p.tid == tid && p.notif.is_some()));
                self.dispatch(tid, &mut regs, None, Some(id), None)
            }
            Stop::SyscallExit { tid } => self.syscall_exit(tid),
            Stop::NewChild { parent, child } => {
                self.k.new_child(parent, child);
                let how = self.resume_mode(parent);
                self.k.plat.resume(parent, how)?;
                if let Some(i) = self.k.early.iter().position(|&t| t == child) {
                    self.k.early.remove(i);
                    if let Some(t) = self.k.tasks.get_mut(&child) {
                        t.fresh = false;
                    }
                    self.k.plat.resume(child, Resume::Continue(0))?;
                }
                Ok(())
            }
            Stop::Exec { tid, former } => {
                self.k.exec_done(tid, former);
                self.k.plat.resume(tid, Resume::Continue(0))
            }
            Stop::Signal { tid, sig, group } => {
                if let Some(t) = self.k.tasks.get_mut(&tid) {
                    if t.fresh && sig == libc::SIGSTOP {
                        t.fresh = false;
                        return self.k.plat.resume(tid, Resume::Continue(0));
                    }
                } else {
                    // Born before its parent's fork event was handled: hold it until then.
                    self.k.early.push(tid);
                    return Ok(());
                }
                let how = self.resume_mode(tid);
                if group {
                    // Group stops are not modelled: let the task go on.
                    return self.k.plat.resume(tid, how);
                }
                self.restart_unseen_call(tid)?;
                match how {
                    Resume::ToSyscallExit => self.k.plat.resume(tid, how),
                    _ => self.k.plat.resume(tid, Resume::Continue(sig)),
                }
            }
            Stop::Exited { tid, code } => {
                self.task_gone(tid, (false, code));
                Ok(())
            }
            Stop::Killed { tid, sig } => {
                self.task_gone(tid, (true, sig));
                Ok(())
            }
            Stop::None | Stop::NoTracees => Ok(()),
        }
    }

    fn resume_mode(&self, tid: i32) -> Resume {
        match self.k.tasks.get(&tid) {
            Some(t) if t.fixup.is_some() => Resume::ToSyscallExit,
            _ => Resume::Continue(0),
        }
    }

    fn syscall_exit(&mut self, tid: i32) -> Result<()> {
        let Some(t) = self.k.tasks.get_mut(&tid) else {
            return self.k.plat.resume(tid, Resume::Continue(0));
        };
        let Some(fix) = t.fixup.take() else {
            return self.k.plat.resume(tid, Resume::Continue(0));
        };
        let regs = self.k.plat.get_regs(tid)?;
        match fix {
            Fixup::MmapFill {
                file,
                offset,
                len,
                prot,
            } => {
                let addr = regs.rax;
                if (addr as i64) < 0 && (addr as i64) > -4096 {
                    return self.k.plat.resume(tid, Resume::Continue(0));
                }
                self.k.stats.mmap_emulated += 1;
                let data = file.borrow().read_at(offset, len as usize);
                let mut off = 0;
                while off < data.len() {
                    match self.k.plat.write_mem(tid, addr + off as u64, &data[off..]) {
                        Ok(n) if n > 0 => off += n,
                        _ => break,
                    }
                }
                if prot & libc::PROT_WRITE as u64 == 0 {
                    // Inject mprotect(addr, len, prot) by re-running the syscall instruction.
                    let saved = regs;
                    let mut inj = regs;
                    inj.rax = libc::SYS_mprotect as u64;
                    inj.orig_rax = libc::SYS_mprotect as u64;
                    inj.rdi = addr;
                    inj.rsi = len;
                    inj.rdx = prot;
                    inj.rip -= 2;
                    self.k.plat.set_regs(tid, &inj)?;
                    self.k.tasks.get_mut(&tid).unwrap().fixup = Some(Fixup::Injected {
                        saved,
                        entry_seen: false,
                    });
                    return self.k.plat.resume(tid, Resume::ToSyscallExit);
                }
            }
            Fixup::SignalfdRead { saved, bytes } => {
                let out = syscalls::signalfd::read_done(&mut self.k, tid, &regs, &saved, &bytes);
                self.k.plat.set_regs(tid, &out)?;
            }
            Fixup::Injected { saved, entry_seen } => {
                if !entry_seen {
                    self.k.tasks.get_mut(&tid).unwrap().fixup = Some(Fixup::Injected {
                        saved,
                        entry_seen: true,
                    });
                    return self.k.plat.resume(tid, Resume::ToSyscallExit);
                }
                self.k.plat.set_regs(tid, &saved)?;
            }
        }
        self.k.plat.resume(tid, Resume::Continue(0))
    }

    /// Run the implementation of the trapped syscall in `regs` for `tid`; `retry`: for a parked
    /// call being tried again, what it had moved so far (`Parked::done`); None for a new trap.
    pub fn dispatch(
        &mut self,
        tid: i32,
        regs: &mut Regs,
        deadline: Option<Instant>,
        notif: Option<u64>,
        retry: Option<u64>,
    ) -> Result<()> {
        let nr = platform::sysno(regs);
        let mut done = retry.unwrap_or(0);
        let out = syscalls::handle(
            &mut self.k,
            tid,
            nr,
            regs,
            deadline,
            notif,
            retry.is_some(),
            &mut done,
        );
        if self.k.cfg.debug {
            let name = syscalls_name(nr);
            let a = platform::args(regs);
            match &out {
                Outcome::Ret(v) => eprintln!(
                    "[sentry {tid}] {name}({:#x}, {:#x}, {:#x}, {:#x}) = {v}",
                    a[0], a[1], a[2], a[3]
                ),
                Outcome::Native => eprintln!("[sentry {tid}] {name}(..) -> native"),
                Outcome::NativeThen(_) => eprintln!("[sentry {tid}] {name}(..) -> native+fixup"),
                Outcome::Park(..) => eprintln!("[sentry {tid}] {name}(..) -> parked"),
            }
        }
        if let Some(id) = notif {
            return match out {
                Outcome::Ret(v) => self.k.plat.respond(id, v),
                Outcome::Park(fds, dl) => {
                    self.k.parked.push(Parked {
                        tid,
                        regs: *regs,
                        fds,
                        deadline: dl,
                        notif,
                        done,
                    });
                    Ok(())
                }
                // A shared writable mapping: the file is in the task's own table now (mm.rs).
                // The same for a signalfd read (signalfd.rs).
                Outcome::Native if nr == libc::SYS_mmap || nr == libc::SYS_read => {
                    self.k.plat.respond_continue(id)
                }
                // System V IPC checked by the sentry, run natively (syscalls/ipc.rs).
                Outcome::Native if syscalls::ipc::CONTINUED.contains(&nr) => {
                    self.k.plat.respond_continue(id)
                }
                // A pipe read in the task, or the close of a pipe it holds (passthrough.rs).
                Outcome::Native if syscalls::passthrough::CONTINUED.contains(&nr) => {
                    self.k.plat.respond_continue(id)
                }
                // Register rewriting is only possible at a ptrace stop (NEEDS_REGS routes those).
                _ => self.k.plat.respond(id, -(libc::ENOSYS as i64)),
            };
        }
        match out {
            Outcome::Ret(v) => self.k.plat.complete(tid, regs, v),
            Outcome::Native => {
                self.k.plat.set_regs(tid, regs)?;
                self.k.plat.resume(tid, Resume::Continue(0))
            }
            Outcome::NativeThen(fix) => {
                self.k.plat.set_regs(tid, regs)?;
                self.k.tasks.get_mut(&tid).unwrap().fixup = Some(fix);
                self.k.plat.resume(tid, Resume::ToSyscallExit)
            }
            Outcome::Park(fds, dl) => {
                self.k.parked.push(Parked {
                    tid,
                    regs: *regs,
                    fds,
                    deadline: dl,
                    notif: None,
                    done,
                });
                Ok(())
            }
        }
    }

    /// A task is gone: `hako exec`'s client of it learns its status, then the kernel forgets it.
    fn task_gone(&mut self, tid: i32, status: (bool, i32)) {
        self.sentry_restarted.remove(&tid);
        self.k.signal_waiters.remove(&tid);
        if let Some(h) = self.exec.as_mut() {
            h.exited(tid, status);
        }
        self.k.task_gone(tid, status);
    }
}

/// Whether syscall `nr` reaches the sentry as a seccomp notification on the notification
/// platforms, and only that way: trapped (implemented or refused), not one of the calls that stop
/// under ptrace (`NEEDS_REGS`) and not one that runs natively under a condition (their -ERESTARTSYS
/// may be the host's).
fn notified<P: Platform>(nr: i64) -> bool {
    use syscalls::Disp;
    let Some(s) = ::syscalls::Sysno::new(nr as usize).filter(|_| nr >= 0) else {
        return false;
    };
    !syscalls::NEEDS_REGS.contains(&s)
        && matches!(
            syscalls::disposition::<P>(s),
            Disp::Emulated(_) | Disp::Refused(..)
        )
}

fn syscalls_name(nr: i64) -> &'static str {
    ::syscalls::Sysno::new(nr as usize)
        .map(|s| s.name())
        .unwrap_or("?")
}

fn drain(fd: RawFd) {
    let mut buf = [0u8; 128 * 4];
    // SAFETY: reading a non-blocking signalfd into a local buffer.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}
