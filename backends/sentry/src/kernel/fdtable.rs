//! File descriptor tables. The workload's descriptors are virtual: numbers into a table the sentry
//! keeps per process; the host descriptors behind them belong to the sentry alone, except the
//! pipe ends put into a task's own table at the very vfd number so that their reads and writes
//! run natively (`syscalls::passthrough`). Which numbers hold one is recorded here, with the entry,
//! so the table's sharing (threads, `CLONE_FILES`) and copying (fork) rules apply to the record
//! as the kernel applies them to the task's real table.

use crate::vfs::OpenFile;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::rc::Rc;

#[derive(Clone)]
pub struct FdEntry {
    pub file: Rc<RefCell<OpenFile>>,
    pub cloexec: bool,
    /// The task's real table holds this entry's file (its pass-through descriptor) at this
    /// number. A new entry never has it: a number whose object changed is never run natively.
    pub installed: bool,
}

impl FdEntry {
    fn new(file: Rc<RefCell<OpenFile>>, cloexec: bool) -> Self {
        FdEntry {
            file,
            cloexec,
            installed: false,
        }
    }
}

#[derive(Clone, Default)]
pub struct FdTable {
    pub map: BTreeMap<i32, FdEntry>,
    pub limit: i32,
}

impl FdTable {
    pub fn new(limit: i32) -> Self {
        FdTable {
            map: BTreeMap::new(),
            limit,
        }
    }

    pub fn get(&self, fd: i32) -> Option<Rc<RefCell<OpenFile>>> {
        self.map.get(&fd).map(|e| e.file.clone())
    }

    /// Lowest free descriptor >= `min`, as POSIX requires.
    pub fn alloc(
        &mut self,
        min: i32,
        file: Rc<RefCell<OpenFile>>,
        cloexec: bool,
    ) -> Result<i32, i32> {
        let mut fd = min.max(0);
        for (&k, _) in self.map.range(fd..) {
            if k != fd {
                break;
            }
            fd += 1;
        }
        if fd >= self.limit {
            return Err(libc::EMFILE);
        }
        self.map.insert(fd, FdEntry::new(file, cloexec));
        Ok(fd)
    }

    pub fn set(&mut self, fd: i32, file: Rc<RefCell<OpenFile>>, cloexec: bool) -> Result<(), i32> {
        if fd < 0 || fd >= self.limit {
            return Err(libc::EBADF);
        }
        self.map.insert(fd, FdEntry::new(file, cloexec));
        Ok(())
    }

    pub fn close(&mut self, fd: i32) -> bool {
        self.map.remove(&fd).is_some()
    }

    /// Whether the task's real table holds `fd`'s file at `fd` (see [`FdEntry::installed`]).
    pub fn installed(&self, fd: i32) -> bool {
        self.map.get(&fd).is_some_and(|e| e.installed)
    }

    /// Whether any number in `lo..=hi` is installed in the task's real table.
    pub fn any_installed(&self, lo: i32, hi: i32) -> bool {
        lo <= hi && self.map.range(lo..=hi).any(|(_, e)| e.installed)
    }

    /// The copy of this table a fork gave `child` (a host tid that has not run yet): each
    /// record says what the child's real table holds. The kernel copied that table at a moment
    /// the sentry does not see (a sibling thread's first pipe read may have put a pipe in before
    /// or after it), so it asks the kernel whether the child's descriptor at each number is the
    /// entry's pass-through description (`kcmp(KCMP_FILE)`); where it cannot tell, the parent's
    /// record stays.
    pub fn clone_for_fork(&self, child: i32) -> FdTable {
        let mut t = self.clone();
        let me = std::process::id() as libc::pid_t;
        for (&fd, e) in t.map.iter_mut() {
            let crate::vfs::Pass::Made(pass) = &e.file.borrow().pass else {
                continue;
            };
            let pass = pass.as_raw_fd();
            const KCMP_FILE: libc::c_int = 0;
            // SAFETY: kcmp compares two descriptors; it reads nothing from our memory.
            let r = unsafe { libc::syscall(libc::SYS_kcmp, me, child, KCMP_FILE, pass, fd) };
            if r == 0 {
                e.installed = true;
            } else if r > 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF) {
                e.installed = false;
            }
        }
        t
    }

    pub fn clone_for_exec(&self) -> FdTable {
        FdTable {
            map: self
                .map
                .iter()
                .filter(|(_, e)| !e.cloexec)
                // Every installed descriptor is close-on-exec in the task's real table.
                .map(|(k, e)| (*k, FdEntry::new(e.file.clone(), false)))
                .collect(),
            limit: self.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{FileKind, OpenFile};

    fn synth() -> Rc<RefCell<OpenFile>> {
        Rc::new(RefCell::new(OpenFile::new(
            FileKind::Synth {
                data: b"x".to_vec(),
                pos: 0,
            },
            "/x",
            0,
        )))
    }

    #[test]
    fn lowest_free_and_cloexec_on_exec() {
        let mut t = FdTable::new(8);
        assert_eq!(t.alloc(0, synth(), false), Ok(0));
        assert_eq!(t.alloc(0, synth(), true), Ok(1));
        assert_eq!(t.alloc(0, synth(), false), Ok(2));
        t.close(1);
        assert_eq!(t.alloc(0, synth(), false), Ok(1));
        assert_eq!(t.alloc(5, synth(), true), Ok(5));
        let e = t.clone_for_exec();
        assert!(e.get(5).is_none());
        assert!(e.get(0).is_some());
        t.map.get_mut(&0).unwrap().installed = true;
        assert!(t.installed(0) && t.any_installed(0, 3) && !t.any_installed(1, 9));
        assert!(
            !t.clone_for_exec().installed(0),
            "exec drops what was installed"
        );
        assert!(t.clone().installed(0), "fork keeps it");
        t.set(0, synth(), false).unwrap();
        assert!(
            !t.installed(0),
            "a new object at the number is not installed"
        );
        for _ in 0..10 {
            let _ = t.alloc(0, synth(), false);
        }
        assert_eq!(t.alloc(0, synth(), false), Err(libc::EMFILE));
    }
}
