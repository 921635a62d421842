//! File descriptor tables. The workload's descriptors are virtual: numbers into a table the sentry
//! keeps per process; the host descriptors behind them belong to the sentry alone.

use crate::vfs::OpenFile;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Clone)]
pub struct FdEntry {
    pub file: Rc<RefCell<OpenFile>>,
    pub cloexec: bool,
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
        self.map.insert(fd, FdEntry { file, cloexec });
        Ok(fd)
    }

    pub fn set(&mut self, fd: i32, file: Rc<RefCell<OpenFile>>, cloexec: bool) -> Result<(), i32> {
        if fd < 0 || fd >= self.limit {
            return Err(libc::EBADF);
        }
        self.map.insert(fd, FdEntry { file, cloexec });
        Ok(())
    }

    pub fn close(&mut self, fd: i32) -> bool {
        self.map.remove(&fd).is_some()
    }

    pub fn clone_for_exec(&self) -> FdTable {
        FdTable {
            map: self
                .map
                .iter()
                .filter(|(_, e)| !e.cloexec)
                .map(|(k, e)| (*k, e.clone()))
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
        for _ in 0..10 {
            let _ = t.alloc(0, synth(), false);
        }
        assert_eq!(t.alloc(0, synth(), false), Err(libc::EMFILE));
    }
}
