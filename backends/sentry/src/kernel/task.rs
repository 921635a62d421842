//! Tasks and processes: their birth (the first process, `hako exec`'s, fork and clone), the
//! execve transition, their end, and the virtual pids that name them.

use super::fdtable::FdTable;
use super::{Config, Creds, Kernel};
use crate::platform::{Platform, Regs};
use crate::vfs::{HeldDir, OpenFile};
use std::cell::RefCell;
use std::rc::Rc;

pub struct Process {
    pub vpid: i32,
    pub vppid: i32,
    /// Host pid of the thread group leader.
    pub host_pid: i32,
    pub fds: Rc<RefCell<FdTable>>,
    pub cwd: Cwd,
    pub creds: Creds,
    pub exe: String,
    pub umask: u32,
    pub threads: usize,
}

/// A process's current directory. Linux keeps the directory itself, not its name: after a
/// rename `getcwd` gives the new name and relative lookups land in the moved directory; once it
/// is removed, `getcwd` and relative lookups fail with ENOENT.
#[derive(Clone)]
pub enum Cwd {
    /// A directory of the root (or of a mount in it), held by the sentry's descriptor.
    Held(Rc<HeldDir>),
    /// A directory held by its path alone: one of the synthesized trees (/proc, /sys, /dev),
    /// which nothing in the sandbox renames.
    Path(String),
}

impl Cwd {
    /// The current directory at `path` (absolute, in the sandbox): held by a descriptor where
    /// it is a directory of the root, else by its path.
    pub fn at(vfs: &crate::vfs::Vfs, path: &str) -> Cwd {
        let norm = crate::vfs::normalize(path);
        if !crate::vfs::is_synthetic(&norm) {
            if let Ok(fd) = vfs.open(&norm[1..], libc::O_PATH | libc::O_DIRECTORY, 0) {
                return Cwd::Held(Rc::new(HeldDir::new(fd, norm)));
            }
        }
        Cwd::Path(norm)
    }

    /// Its path in the sandbox now; ENOENT once it is removed.
    pub fn path(&self, vfs: &crate::vfs::Vfs) -> Result<String, i32> {
        match self {
            Cwd::Held(d) => d.path(vfs),
            Cwd::Path(p) => Ok(p.clone()),
        }
    }
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
    /// A signalfd read run as `rt_sigtimedwait` on the task's own buffer (ptrace platform,
    /// `syscalls/signalfd.rs`): turn its siginfo into a `signalfd_siginfo`, restore `saved`.
    SignalfdRead { saved: Regs, bytes: Vec<u8> },
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
    /// The task's own descriptor table, where it no longer shares its process's: after
    /// `close_range(CLOSE_RANGE_UNSHARE)` in one of several threads, or a thread made without
    /// `CLONE_FILES`. None: the process's ([`Kernel::fds_of`]).
    pub fds: Option<Rc<RefCell<FdTable>>>,
}

/// Whether task `tid` has a signal pending that it does not block (its host /proc status: the
/// thread's and the process's pending sets).
pub fn signal_pending(tid: i32) -> bool {
    let (pending, blocked) = signals_of(tid);
    pending & !blocked != 0
}

/// Task `tid`'s pending signals (its own and its process's) and its blocked set, as bit masks
/// (bit `n - 1` for signal `n`), from its host /proc status.
pub fn signals_of(tid: i32) -> (u64, u64) {
    let [pnd, shd, blk, _, _] = signal_sets(tid);
    (pnd | shd, blk)
}

/// Whether task `tid` has a signal pending that it does not block and that does something when
/// delivered: not one it ignores, nor one whose default action is to ignore it (SIGCHLD, SIGURG,
/// SIGWINCH) and that it has no handler for. Linux does not queue those for an untraced task, so
/// they end no wait there; the sentry's tasks are traced, and the kernel queues them anyway.
pub fn signal_acts(tid: i32) -> bool {
    let [pnd, shd, blk, ign, cgt] = signal_sets(tid);
    let bit = |s: i32| 1u64 << (s - 1);
    let default_ignored = bit(libc::SIGCHLD) | bit(libc::SIGURG) | bit(libc::SIGWINCH);
    (pnd | shd) & !blk & !ign & !(default_ignored & !cgt) != 0
}

/// The pending (thread, shared), blocked, ignored and caught signal sets of task `tid`, from its
/// host /proc status.
fn signal_sets(tid: i32) -> [u64; 5] {
    let status = crate::hostproc::read_string(&format!("{tid}/status"));
    let set = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    ["SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:", "SigCgt:"].map(set)
}

impl<P: Platform> Kernel<P> {
    /// Register a tracee with no parent in the sandbox (the first process, or one `hako exec`
    /// started), with the identity, cwd and umask of `c`. Returns its virtual pid.
    pub fn add_process(&mut self, host: i32, fds: FdTable, c: &Config) -> i32 {
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
            cwd: Cwd::at(&self.vfs, &c.cwd),
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
                fds: None,
            },
        );
        vpid
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

    /// A task's execve went through (`former`: the tid that called it, now `tid`): the process
    /// gets its new exe, the kernel's capability transition and an unshared fd table without
    /// its close-on-exec descriptors.
    pub fn exec_done(&mut self, tid: i32, former: i32) {
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
            // execve unshares the fd table and closes close-on-exec descriptors (the other
            // threads are gone: the process's table is the caller's).
            let own = t.fds.take();
            let table = own.as_ref().unwrap_or(&p.fds).borrow().clone_for_exec();
            p.fds = Rc::new(RefCell::new(table));
        }
    }

    /// A task ended (exited or killed with `status`). The init's end takes every other task
    /// with it, as a pid namespace's does; orphans are re-parented to the init.
    pub fn task_gone(&mut self, tid: i32, status: (bool, i32)) {
        self.parked.retain(|p| p.tid != tid);
        self.early.retain(|&t| t != tid);
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

    pub fn new_child(&mut self, parent: i32, child: i32) {
        if self.tasks.contains_key(&child) {
            return;
        }
        let Some(pt) = self.tasks.get_mut(&parent) else {
            return;
        };
        let flags = pt.pending_clone.take().unwrap_or(libc::SIGCHLD as u64);
        let pproc = pt.proc.clone();
        let thread = flags & libc::CLONE_THREAD as u64 != 0;
        let parent_fds = self.fds_of(parent);
        // CLONE_FILES shares the caller's table (which may be its own, not its process's);
        // without it the child gets a copy.
        let fds = if flags & libc::CLONE_FILES as u64 != 0 {
            parent_fds
        } else {
            Rc::new(RefCell::new(parent_fds.borrow().clone_for_fork(child)))
        };
        let vtid = self.alloc_vpid(child);
        let (proc, own) = if thread {
            pproc.borrow_mut().threads += 1;
            let own = (!Rc::ptr_eq(&fds, &pproc.borrow().fds)).then_some(fds);
            (pproc, own)
        } else {
            let p = pproc.borrow();
            let vppid = if flags & libc::CLONE_PARENT as u64 != 0 {
                p.vppid
            } else {
                p.vpid
            };
            let proc = Rc::new(RefCell::new(Process {
                vpid: vtid,
                vppid,
                host_pid: child,
                fds,
                cwd: p.cwd.clone(),
                creds: p.creds.clone(),
                exe: p.exe.clone(),
                umask: p.umask,
                threads: 1,
            }));
            (proc, None)
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
                fds: own,
            },
        );
    }
}
