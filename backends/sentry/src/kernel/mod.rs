//! The sentry's kernel: the state a Linux kernel keeps for the sandbox, and nothing that
//! acts on a trap. Tasks and processes with virtual pids (`task`), their identities and the
//! permission rules (`creds`), descriptor tables (`fdtable`), tracee memory (`mm`), path
//! resolution across the overlay root and the synthesized trees (`path`, `procfs`), and what
//! the sentry takes from the spec (`config`).
//!
//! This is the bottom of the sentry's own layers: it imports `vfs` and `platform` only, and
//! every `impl Kernel` lives here. `syscalls/` implements the calls on top of it and the event
//! loop (`crate::event_loop`) drives both.

pub mod config;
pub mod creds;
pub mod fdtable;
pub mod ipc;
pub mod mm;
pub mod path;
pub mod procfs;
pub mod task;

use crate::platform::{Platform, Regs};
use crate::vfs::{OpenFile, Vfs};
use config::Config;
pub use creds::{Caps, Creds};
use fdtable::FdTable;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;
pub use task::{Cwd, Fixup, Process, Task};

/// An open file as the descriptor tables share it.
pub type FileRef = Rc<RefCell<OpenFile>>;

/// A task blocked in an emulated syscall (a read on an empty pipe, a poll...).
pub struct Parked {
    pub tid: i32,
    pub regs: Regs,
    pub fds: Vec<(RawFd, i16)>,
    pub deadline: Option<Instant>,
    /// The seccomp notification the task waits on (hybrid platform), or None for a ptrace stop.
    pub notif: Option<u64>,
    /// How many bytes the call has moved so far (a blocking write that filled a pipe): what it
    /// returns if a signal ends the wait (`Call::done`).
    pub done: u64,
}

#[derive(Default)]
pub struct Stats {
    /// Keyed by the syscall's static name: counting a trap allocates nothing (issue 17).
    pub emulated: BTreeMap<&'static str, u64>,
    pub refused: BTreeMap<&'static str, u64>,
    pub mmap_emulated: u64,
    /// Parked calls tried again when their descriptor became ready (not traps: the task
    /// stayed blocked in its one call).
    pub retries: u64,
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
    /// Parked tasks whose wait includes a signalfd (poll, select, epoll): no host descriptor
    /// says when a signal reaches them, so the event loop retries them every signal check.
    pub signal_waiters: HashSet<i32>,
    /// Children that stopped before their parent's fork event named them.
    pub early: Vec<i32>,
    pub init_host: i32,
    pub init_status: Option<(bool, i32)>,
    pub stats: Stats,
    pub sigchld_fd: RawFd,
    /// The virtual owners of the sandbox's System V IPC objects.
    pub ipc: ipc::IpcTable,
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
            signal_waiters: HashSet::new(),
            early: Vec::new(),
            init_host: 0,
            init_status: None,
            stats: Stats::default(),
            sigchld_fd,
            ipc: ipc::IpcTable::default(),
        }
    }

    /// Register the first tracee (virtual pid 1).
    pub fn add_init(&mut self, host: i32, fds: FdTable) {
        let c = self.cfg.clone();
        self.add_process(host, fds, &c);
        self.init_host = host;
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

    /// `tid`'s descriptor table: its own if it has one, else its process's.
    pub fn fds_of(&self, tid: i32) -> Rc<RefCell<FdTable>> {
        self.fds_of_any(tid)
            .unwrap_or_else(|| panic!("fds_of: no task {tid}"))
    }

    /// [`Kernel::fds_of`] of a task that may be gone (None then).
    pub fn fds_of_any(&self, tid: i32) -> Option<Rc<RefCell<FdTable>>> {
        let t = self.tasks.get(&tid)?;
        Some(match &t.fds {
            Some(own) => own.clone(),
            None => t.proc.borrow().fds.clone(),
        })
    }

    /// Give `tid` its own copy of its descriptor table (`close_range(CLOSE_RANGE_UNSHARE)`):
    /// the tasks that shared it (its threads, `CLONE_FILES` siblings) keep the old one. The
    /// copy keeps each entry's `installed`: the kernel's unshare copies the task's real table
    /// alike (the caller lets the task's own call run so that it does).
    pub fn unshare_fds(&mut self, tid: i32) {
        let copy = Rc::new(RefCell::new(self.fds_of(tid).borrow().clone()));
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        let mut p = t.proc.borrow_mut();
        if p.threads == 1 {
            p.fds = copy;
            drop(p);
            t.fds = None;
        } else {
            drop(p);
            t.fds = Some(copy);
        }
    }

    /// The open file behind `tid`'s descriptor `fd`.
    pub fn file(&self, tid: i32, fd: u64) -> Result<FileRef, i32> {
        let f = self.fds_of(tid).borrow().get(fd as i32).ok_or(libc::EBADF);
        f
    }

    /// Give `tid` the lowest free descriptor for `f`.
    pub fn install(&self, tid: i32, f: OpenFile, cloexec: bool) -> Result<i64, i32> {
        let fd = self
            .fds_of(tid)
            .borrow_mut()
            .alloc(0, Rc::new(RefCell::new(f)), cloexec)?;
        Ok(fd as i64)
    }

    /// `tid`'s current directory as a path in the sandbox; ENOENT once it is removed.
    pub fn cwd_path(&self, tid: i32) -> Result<String, i32> {
        let cwd = self.proc_of(tid).borrow().cwd.clone();
        cwd.path(&self.vfs)
    }

    pub fn creds(&self, tid: i32) -> Creds {
        self.proc_of(tid).borrow().creds.clone()
    }
}
