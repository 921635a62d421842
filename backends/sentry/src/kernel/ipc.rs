//! The virtual side of the sandbox's System V IPC objects. The objects themselves are the host
//! kernel's, in the sandbox's own IPC namespace (see `syscalls/ipc.rs`); on the host every one
//! the sandbox made belongs to the sandbox's one host id. What the sandbox's virtual users see
//! and are checked against — owner, creator, their groups and the permission bits — is kept
//! here, per object.

use super::Creds;
use std::collections::HashMap;

/// The three id spaces of System V IPC (ids of different kinds may be equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpcKind {
    Shm,
    Sem,
    Msg,
}

/// An object's virtual `ipc_perm`: ids as the sandbox sees them and the 9 permission bits.
#[derive(Debug, Clone, Copy)]
pub struct IpcOwner {
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub mode: u32,
    /// The virtual pid of the process that made it (the host saw the sentry make it).
    pub cpid: i32,
}

/// The capabilities the IPC rules use.
pub const CAP_IPC_LOCK: u32 = 14;
pub const CAP_IPC_OWNER: u32 = 15;
pub const CAP_SYS_ADMIN: u32 = 21;

impl IpcOwner {
    /// The object process `cpid` with `c` just made with permission bits `mode`.
    pub fn new(c: &Creds, cpid: i32, mode: u32) -> Self {
        IpcOwner {
            uid: c.euid,
            gid: c.egid,
            cuid: c.euid,
            cgid: c.egid,
            mode: mode & 0o777,
            cpid,
        }
    }

    /// The kernel's `ipcperms`: owner bits for the owner or creator, group bits for a member of
    /// either group, other bits otherwise; CAP_IPC_OWNER overrides. `want` is in the kernel's
    /// form (0o444 read, 0o222 write/alter, 0o111 exec, or a `*get` flag's mode bits).
    pub fn may(&self, c: &Creds, want: u32) -> bool {
        let requested = (want >> 6) | (want >> 3) | want;
        let granted = if c.euid == self.cuid || c.euid == self.uid {
            self.mode >> 6
        } else if c.in_group(self.cgid) || c.in_group(self.gid) {
            self.mode >> 3
        } else {
            self.mode
        };
        requested & !granted & 7 == 0 || c.capable(CAP_IPC_OWNER)
    }

    /// The kernel's `ipcctl_obtain_check` for IPC_SET and IPC_RMID: owner, creator or
    /// CAP_SYS_ADMIN.
    pub fn may_control(&self, c: &Creds) -> bool {
        c.euid == self.cuid || c.euid == self.uid || c.capable(CAP_SYS_ADMIN)
    }
}

/// Every IPC object the sandbox made, by kind and id. An id the table does not hold belongs to
/// someone outside the sandbox that shares its namespace (a pod's other containers): for those
/// the host kernel's own check decides, with the sandbox as a stranger to them.
#[derive(Default)]
pub struct IpcTable {
    objs: HashMap<(IpcKind, i32), IpcOwner>,
}

impl IpcTable {
    pub fn get(&self, k: IpcKind, id: i32) -> Option<IpcOwner> {
        self.objs.get(&(k, id)).copied()
    }

    pub fn set(&mut self, k: IpcKind, id: i32, o: IpcOwner) {
        self.objs.insert((k, id), o);
    }

    pub fn remove(&mut self, k: IpcKind, id: i32) {
        self.objs.remove(&(k, id));
    }
}
