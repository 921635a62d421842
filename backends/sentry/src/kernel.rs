//! The sentry's kernel state: tasks, processes, virtual pids, and the event loop that turns
//! platform stops into syscall implementations.

use crate::config::Config;
use crate::fs::FdTable;
use crate::platform::{self, Platform, Regs, Resume, Stop};
use crate::syscalls::{self, Outcome};
use crate::vfs::{OpenFile, Vfs};
use anyhow::Result;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

/// Virtual identity of a process.
#[derive(Debug, Clone)]
pub struct Creds {
    pub ruid: u32,
    pub euid: u32,
    pub suid: u32,
    pub rgid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub groups: Vec<u32>,
    /// The five capability sets and the securebits (see `syscalls::caps`).
    pub caps: Caps,
}

/// A process's capability sets (bit n = capability n, as in the kernel) and securebits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub eff: u64,
    pub prm: u64,
    pub inh: u64,
    pub bnd: u64,
    pub amb: u64,
    pub securebits: u32,
}

pub struct Process {
    pub vpid: i32,
    pub vppid: i32,
    /// Host pid of the thread group leader.
    pub host_pid: i32,
    pub fds: Rc<RefCell<FdTable>>,
    pub cwd: String,
    pub creds: Creds,
    pub exe: String,
    pub umask: u32,
    pub threads: usize,
}

/// What to do when a task reaches the syscall-exit stop we asked for.
pub enum Fixup {
    /// A file mmap emulated by an anonymous mapping: copy the file data in, then fix protections.
    MmapFill {
        file: Rc<RefCell<OpenFile>>,
        offset: u64,
        len: u64,
        prot: u64,
    },
    /// An injected syscall: restore these registers once it has run.
    Injected { saved: Regs, entry_seen: bool },
}

pub struct Task {
    pub tid: i32,
    pub vtid: i32,
    pub proc: Rc<RefCell<Process>>,
    pub fixup: Option<Fixup>,
    /// clone flags of a fork/clone this task is in the middle of.
    pub pending_clone: Option<u64>,
    pub pending_exec: Option<String>,
    /// Waiting for its first (SIGSTOP) stop after being born traced.
    pub fresh: bool,
}

/// A task blocked in an emulated syscall (a read on an empty pipe, a poll...).
pub struct Parked {
    pub tid: i32,
    pub regs: Regs,
    pub fds: Vec<(RawFd, i16)>,
    pub deadline: Option<Instant>,
    /// The seccomp notification the task waits on (hybrid platform), or None for a ptrace stop.
    pub notif: Option<u64>,
}

#[derive(Default)]
pub struct Stats {
    pub emulated: BTreeMap<String, u64>,
    pub refused: BTreeMap<String, u64>,
    pub mmap_emulated: u64,
}

pub struct Kernel<P: Platform> {
    pub plat: P,
    pub cfg: Rc<Config>,
    pub vfs: Vfs,
    pub tasks: HashMap<i32, Task>,
    /// vpid/vtid -> host tid, and back (kept after exit so wait4 can name reaped children).
    /// A virtual pid is the task's pid in the sandbox's own pid namespace (see `alloc_vpid`).
    pub v2h: HashMap<i32, i32>,
    pub h2v: HashMap<i32, i32>,
    /// The most recent virtual pid handed out plus one, and how many tasks were ever made
    /// (/proc/loadavg, /proc/stat).
    pub next_vpid: i32,
    pub forks: i32,
    /// Virtual pids for tasks whose namespace pid could not be read (gone before the sentry
    /// looked): above any pid the kernel hands out (pid_max is at most 2^22), so never a clash.
    pub spare_vpid: i32,
    pub parked: Vec<Parked>,
    /// Children that stopped before their parent's fork event named them.
    pub early: Vec<i32>,
    pub init_host: i32,
    pub init_status: Option<(bool, i32)>,
    pub stats: Stats,
    pub sigchld_fd: RawFd,
    /// `hako exec`'s socket and clients (see `crate::exec`), once the workload runs.
    pub exec: Option<crate::exec::Hub>,
}

impl<P: Platform> Kernel<P> {
    pub fn new(plat: P, cfg: Rc<Config>, vfs: Vfs, sigchld_fd: RawFd) -> Self {
        Kernel {
            plat,
            cfg,
            vfs,
            tasks: HashMap::new(),
            v2h: HashMap::new(),
            h2v: HashMap::new(),
            next_vpid: 1,
            forks: 0,
            spare_vpid: 1 << 22,
            parked: Vec::new(),
            early: Vec::new(),
            init_host: 0,
            init_status: None,
            stats: Stats::default(),
            sigchld_fd,
            exec: None,
        }
    }

    /// Register the first tracee (virtual pid 1).
    pub fn add_init(&mut self, host: i32, fds: FdTable) {
        let c = self.cfg.clone();
        self.add_process(host, fds, &c);
        self.init_host = host;
    }

    /// Register a tracee with no parent in the sandbox (the first process, or one `hako exec`
    /// started), with the identity, cwd and umask of `c`. Returns its virtual pid.
    fn add_process(&mut self, host: i32, fds: FdTable, c: &Config) -> i32 {
        let creds = Creds {
            ruid: c.uid,
            euid: c.uid,
            suid: c.uid,
            rgid: c.gid,
            egid: c.gid,
            sgid: c.gid,
            groups: c.groups.clone(),
            caps: c.caps,
        };
        let vpid = self.alloc_vpid(host);
        let proc = Process {
            vpid,
            vppid: 0,
            host_pid: host,
            fds: Rc::new(RefCell::new(fds)),
            cwd: c.cwd.clone(),
            creds,
            exe: String::new(),
            umask: c.umask,
            threads: 1,
        };
        self.tasks.insert(
            host,
            Task {
                tid: host,
                vtid: vpid,
                proc: Rc::new(RefCell::new(proc)),
                fixup: None,
                pending_clone: None,
                pending_exec: None,
                fresh: false,
            },
        );
        vpid
    }

    /// Carry out an exec request: the spawner makes the process, stopped; the sentry attaches
    /// and registers it with the request's stdio as its descriptors 0-2. Returns (host pid, vpid).
    fn spawn_exec(
        &mut self,
        hub: &crate::exec::Hub,
        req: &crate::exec::Request,
    ) -> Result<(i32, i32)> {
        if self.init_status.is_some() || !self.tasks.contains_key(&self.init_host) {
            anyhow::bail!("the container's workload has ended");
        }
        let mut fds = FdTable::new(req.cfg.nofile);
        for (i, f) in req.stdio.iter().enumerate() {
            let file = crate::supervisor::stdio_file(
                i as RawFd,
                Some(std::os::fd::AsRawFd::as_raw_fd(f)),
            )?;
            fds.set(i as i32, Rc::new(RefCell::new(file)), false)
                .map_err(std::io::Error::from_raw_os_error)?;
        }
        let host = hub.spawn(req)?;
        if let Err(e) = self.plat.attach(host) {
            // SAFETY: our own child (CLONE_PARENT), not yet registered.
            unsafe {
                libc::kill(host, libc::SIGKILL);
                libc::waitpid(host, std::ptr::null_mut(), libc::__WALL | libc::WNOHANG);
            }
            return Err(e.context("the exec'd process died during set-up"));
        }
        let vpid = self.add_process(host, fds, &req.cfg);
        Ok((host, vpid))
    }

    /// Serve `hako exec` clients whose fds poll found ready.
    fn service_exec(&mut self, ready: &[RawFd]) {
        let Some(mut hub) = self.exec.take() else {
            return;
        };
        for req in hub.service(ready, &self.vfs) {
            match self.spawn_exec(&hub, &req) {
                Ok((host, vpid)) => hub.started(req.client, host, vpid),
                Err(e) => hub.failed(req.client, &e),
            }
        }
        self.exec = Some(hub);
    }

    /// The virtual pid of a new task is its pid in the sandbox's pid namespace (the innermost
    /// `NSpid` of its host /proc status): the pids the workload's native calls take and return
    /// (clone, wait4, getpgid, set_tid_address...) are then the virtual ones, with nothing to
    /// translate, and the sentry keeps the host pid for its own calls.
    fn alloc_vpid(&mut self, host: i32) -> i32 {
        let v = crate::hostproc::ns_pid(host).unwrap_or_else(|| {
            self.spare_vpid += 1;
            self.spare_vpid
        });
        self.next_vpid = self.next_vpid.max(v + 1);
        self.forks += 1;
        if let Some(old) = self.v2h.insert(v, host) {
            // A namespace pid the kernel recycled: the old host tid no longer names it.
            if self.h2v.get(&old) == Some(&v) {
                self.h2v.remove(&old);
            }
        }
        self.h2v.insert(host, v);
        v
    }

    pub fn proc_of(&self, tid: i32) -> Rc<RefCell<Process>> {
        self.tasks[&tid].proc.clone()
    }

    /// Host pid for a virtual pid, only for processes of this sandbox that are alive.
    pub fn host_of(&self, vpid: i32) -> Option<i32> {
        self.v2h
            .get(&vpid)
            .copied()
            .filter(|h| self.tasks.contains_key(h))
    }

    /// The host tid of a live task the sandbox names by its virtual pid/tid (the tid glibc
    /// learns from set_tid_address and clone is the virtual one: the sandbox has its own pid
    /// namespace). Any other id: None.
    pub fn task_of(&self, id: i32) -> Option<i32> {
        self.host_of(id)
    }

    pub fn virt_of(&self, host: i32) -> i32 {
        self.h2v.get(&host).copied().unwrap_or(0)
    }

    /// Run until the workload's init is gone; returns (signaled, code-or-signal).
    pub fn run(&mut self) -> Result<(bool, i32)> {
        let mut check_wait = true;
        loop {
            if self.tasks.is_empty() && self.early.is_empty() {
                break;
            }
            let nfds = self.plat.notify_fds();
            if nfds.is_empty() && self.parked.is_empty() && self.exec.is_none() {
                // Only ptrace stops can happen: block in waitpid.
                match self.plat.wait(true)? {
                    Stop::NoTracees => break,
                    Stop::None => {}
                    s => self.handle(s)?,
                }
                check_wait = true;
                continue;
            }
            if check_wait {
                drain(self.sigchld_fd);
                loop {
                    match self.plat.wait(false)? {
                        Stop::None => break,
                        Stop::NoTracees => {
                            return Ok(self.init_status.unwrap_or((true, libc::SIGKILL)))
                        }
                        s => self.handle(s)?,
                    }
                }
                check_wait = false;
                continue;
            }
            // Wait for a ptrace event (SIGCHLD), a notification, or a parked task's fd/deadline.
            let mut pfds = vec![libc::pollfd {
                fd: self.sigchld_fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            let first_notif = pfds.len();
            for &fd in &nfds {
                pfds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let first_exec = pfds.len();
            for fd in self.exec.as_ref().map(|h| h.poll_fds()).unwrap_or_default() {
                pfds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let first_parked = pfds.len();
            let mut timeout: i32 = -1;
            let now = Instant::now();
            for p in &self.parked {
                for &(fd, ev) in &p.fds {
                    pfds.push(libc::pollfd {
                        fd,
                        events: ev,
                        revents: 0,
                    });
                }
                if let Some(d) = p.deadline {
                    let ms = d
                        .saturating_duration_since(now)
                        .as_millis()
                        .min(i32::MAX as u128) as i32;
                    timeout = if timeout < 0 { ms } else { timeout.min(ms) };
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
                    let s = self.plat.recv(fd)?;
                    self.handle(s)?;
                } else if r & libc::POLLHUP != 0 {
                    // No task uses that filter any more (an exec'd process and its children
                    // are gone).
                    self.plat.drop_listener(fd);
                }
            }
            let ready_exec: Vec<RawFd> = pfds[first_exec..first_parked]
                .iter()
                .filter(|p| p.revents != 0)
                .map(|p| p.fd)
                .collect();
            if !ready_exec.is_empty() {
                self.service_exec(&ready_exec);
            }
            let parked_ready = pfds[first_parked..].iter().any(|p| p.revents != 0);
            let expired = self
                .parked
                .iter()
                .any(|p| p.deadline.is_some_and(|d| Instant::now() >= d));
            if parked_ready || expired {
                self.retry_parked()?;
            }
        }
        Ok(self.init_status.unwrap_or((true, libc::SIGKILL)))
    }

    fn retry_parked(&mut self) -> Result<()> {
        let parked = std::mem::take(&mut self.parked);
        for p in parked {
            if !self.tasks.contains_key(&p.tid) {
                continue;
            }
            if let Some(id) = p.notif {
                if !self.plat.notif_valid(id) {
                    continue; // interrupted by a signal: the syscall restarts as a new notification
                }
            }
            let mut regs = p.regs;
            self.dispatch(p.tid, &mut regs, p.deadline, p.notif)?;
        }
        Ok(())
    }

    fn handle(&mut self, stop: Stop) -> Result<()> {
        match stop {
            Stop::Syscall { tid } => {
                if !self.tasks.contains_key(&tid) {
                    // A trap from a task we do not know cannot happen (children are named by
                    // their parent's fork event first); refuse it.
                    let mut regs = self.plat.get_regs(tid)?;
                    return self.plat.complete(tid, &mut regs, -(libc::ENOSYS as i64));
                }
                let mut regs = self.plat.get_regs(tid)?;
                self.dispatch(tid, &mut regs, None, None)
            }
            Stop::Notif { tid, id, mut regs } => {
                if !self.tasks.contains_key(&tid) {
                    return self.plat.respond(id, -(libc::ENOSYS as i64));
                }
                // A thread is in one syscall at a time: an older parked notification is dead.
                self.parked.retain(|p| !(p.tid == tid && p.notif.is_some()));
                self.dispatch(tid, &mut regs, None, Some(id))
            }
            Stop::SyscallExit { tid } => self.syscall_exit(tid),
            Stop::NewChild { parent, child } => {
                self.new_child(parent, child);
                let how = self.resume_mode(parent);
                self.plat.resume(parent, how)?;
                if let Some(i) = self.early.iter().position(|&t| t == child) {
                    self.early.remove(i);
                    if let Some(t) = self.tasks.get_mut(&child) {
                        t.fresh = false;
                    }
                    self.plat.resume(child, Resume::Continue(0))?;
                }
                Ok(())
            }
            Stop::Exec { tid, former } => {
                if former != tid {
                    if let Some(mut t) = self.tasks.remove(&former) {
                        t.tid = tid;
                        self.tasks.insert(tid, t);
                    }
                }
                if let Some(t) = self.tasks.get_mut(&tid) {
                    let exe = t.pending_exec.take();
                    let proc = t.proc.clone();
                    let mut p = proc.borrow_mut();
                    if let Some(e) = exe {
                        p.exe = e;
                    }
                    // The kernel's capability transition for a file without file capabilities.
                    p.creds.exec_caps();
                    // execve unshares the fd table and closes close-on-exec descriptors.
                    let table = p.fds.borrow().clone_for_exec();
                    p.fds = Rc::new(RefCell::new(table));
                }
                self.plat.resume(tid, Resume::Continue(0))
            }
            Stop::Signal { tid, sig, group } => {
                if let Some(t) = self.tasks.get_mut(&tid) {
                    if t.fresh && sig == libc::SIGSTOP {
                        t.fresh = false;
                        return self.plat.resume(tid, Resume::Continue(0));
                    }
                } else {
                    // Born before its parent's fork event was handled: hold it until then.
                    self.early.push(tid);
                    return Ok(());
                }
                let how = self.resume_mode(tid);
                if group {
                    // Group stops are not modelled: let the task go on.
                    return self.plat.resume(tid, how);
                }
                match how {
                    Resume::ToSyscallExit => self.plat.resume(tid, how),
                    _ => self.plat.resume(tid, Resume::Continue(sig)),
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
        match self.tasks.get(&tid) {
            Some(t) if t.fixup.is_some() => Resume::ToSyscallExit,
            _ => Resume::Continue(0),
        }
    }

    fn task_gone(&mut self, tid: i32, status: (bool, i32)) {
        self.parked.retain(|p| p.tid != tid);
        self.early.retain(|&t| t != tid);
        if let Some(h) = self.exec.as_mut() {
            h.exited(tid, status);
        }
        let Some(task) = self.tasks.remove(&tid) else {
            return;
        };
        let (vpid, gone) = {
            let mut p = task.proc.borrow_mut();
            p.threads = p.threads.saturating_sub(1);
            (p.vpid, p.threads == 0)
        };
        if tid == self.init_host {
            self.init_status = Some(status);
            // The sandbox's init is gone: like a pid namespace, everything else dies with it.
            for &other in self.tasks.keys() {
                // SAFETY: signalling our own tracees.
                unsafe { libc::kill(other, libc::SIGKILL) };
            }
        }
        if gone {
            for t in self.tasks.values() {
                let mut p = t.proc.borrow_mut();
                if p.vppid == vpid {
                    p.vppid = 1;
                }
            }
        }
    }

    fn new_child(&mut self, parent: i32, child: i32) {
        if self.tasks.contains_key(&child) {
            return;
        }
        let Some(pt) = self.tasks.get_mut(&parent) else {
            return;
        };
        let flags = pt.pending_clone.take().unwrap_or(libc::SIGCHLD as u64);
        let pproc = pt.proc.clone();
        let thread = flags & libc::CLONE_THREAD as u64 != 0;
        let vtid = self.alloc_vpid(child);
        let proc = if thread {
            pproc.borrow_mut().threads += 1;
            pproc
        } else {
            let p = pproc.borrow();
            let fds = if flags & libc::CLONE_FILES as u64 != 0 {
                p.fds.clone()
            } else {
                Rc::new(RefCell::new(p.fds.borrow().clone()))
            };
            let vppid = if flags & libc::CLONE_PARENT as u64 != 0 {
                p.vppid
            } else {
                p.vpid
            };
            Rc::new(RefCell::new(Process {
                vpid: vtid,
                vppid,
                host_pid: child,
                fds,
                cwd: p.cwd.clone(),
                creds: p.creds.clone(),
                exe: p.exe.clone(),
                umask: p.umask,
                threads: 1,
            }))
        };
        self.tasks.insert(
            child,
            Task {
                tid: child,
                vtid,
                proc,
                fixup: None,
                pending_clone: None,
                pending_exec: None,
                fresh: true,
            },
        );
    }

    fn syscall_exit(&mut self, tid: i32) -> Result<()> {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return self.plat.resume(tid, Resume::Continue(0));
        };
        let Some(fix) = t.fixup.take() else {
            return self.plat.resume(tid, Resume::Continue(0));
        };
        let regs = self.plat.get_regs(tid)?;
        match fix {
            Fixup::MmapFill {
                file,
                offset,
                len,
                prot,
            } => {
                let addr = regs.rax;
                if (addr as i64) < 0 && (addr as i64) > -4096 {
                    return self.plat.resume(tid, Resume::Continue(0));
                }
                self.stats.mmap_emulated += 1;
                let data = file.borrow().read_at(offset, len as usize);
                let mut off = 0;
                while off < data.len() {
                    match self.plat.write_mem(tid, addr + off as u64, &data[off..]) {
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
                    self.plat.set_regs(tid, &inj)?;
                    self.tasks.get_mut(&tid).unwrap().fixup = Some(Fixup::Injected {
                        saved,
                        entry_seen: false,
                    });
                    return self.plat.resume(tid, Resume::ToSyscallExit);
                }
            }
            Fixup::Injected { saved, entry_seen } => {
                if !entry_seen {
                    self.tasks.get_mut(&tid).unwrap().fixup = Some(Fixup::Injected {
                        saved,
                        entry_seen: true,
                    });
                    return self.plat.resume(tid, Resume::ToSyscallExit);
                }
                self.plat.set_regs(tid, &saved)?;
            }
        }
        self.plat.resume(tid, Resume::Continue(0))
    }

    /// Run the implementation of the trapped syscall in `regs` for `tid`.
    pub fn dispatch(
        &mut self,
        tid: i32,
        regs: &mut Regs,
        deadline: Option<Instant>,
        notif: Option<u64>,
    ) -> Result<()> {
        let nr = platform::sysno(regs);
        let out = syscalls::handle(self, tid, nr, regs, deadline);
        if self.cfg.debug {
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
                Outcome::Ret(v) => self.plat.respond(id, v),
                Outcome::Park(fds, dl) => {
                    self.parked.push(Parked {
                        tid,
                        regs: *regs,
                        fds,
                        deadline: dl,
                        notif,
                    });
                    Ok(())
                }
                // Register rewriting is only possible at a ptrace stop (NEEDS_REGS routes those).
                _ => self.plat.respond(id, -(libc::ENOSYS as i64)),
            };
        }
        match out {
            Outcome::Ret(v) => self.plat.complete(tid, regs, v),
            Outcome::Native => {
                self.plat.set_regs(tid, regs)?;
                self.plat.resume(tid, Resume::Continue(0))
            }
            Outcome::NativeThen(fix) => {
                self.plat.set_regs(tid, regs)?;
                self.tasks.get_mut(&tid).unwrap().fixup = Some(fix);
                self.plat.resume(tid, Resume::ToSyscallExit)
            }
            Outcome::Park(fds, dl) => {
                self.parked.push(Parked {
                    tid,
                    regs: *regs,
                    fds,
                    deadline: dl,
                    notif: None,
                });
                Ok(())
            }
        }
    }
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
