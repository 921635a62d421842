//! System V IPC: shared memory, semaphores, message queues.
//!
//! **Where the objects live.** The sentry sits in the sandbox's own IPC namespace (one it made,
//! or the engine's pod namespace the spec names by path: `namespaces.rs`), and so does every
//! task of the sandbox. The host kernel's IPC objects in that namespace serve only the sandbox
//! (and, in a pod, the containers that share it on purpose), as its network namespace does for
//! sockets. So the objects are host objects, and the calls that only *use* one run natively:
//! `shmat` maps the segment into the caller's own address space on every platform (samecpu,
//! hybrid and ptrace alike), `semop`/`msgrcv` block in the host kernel with its signal and
//! restart semantics. No host descriptor is involved.
//!
//! **Who may do what.** On the host every object the sandbox makes belongs to the sandbox's one
//! host id, which every task of the sandbox runs as, so the host kernel's own check would let any
//! of them do anything. The sandbox's virtual users are kept apart by the sentry: it keeps each
//! object's virtual owner, creator, groups and mode (`kernel/ipc.rs`) and checks the caller's
//! virtual credentials against them as the kernel's `ipcperms` and `ipcctl_obtain_check` do,
//! before the call runs. The `*get` calls are the sentry's own (it makes the object, then records
//! its virtual owner); the using calls are checked, then run natively (`Native`: on the
//! notification platforms the sentry answers `SECCOMP_USER_NOTIF_FLAG_CONTINUE`; the ids and
//! flags it checked are registers, which the task cannot change in between). `IPC_STAT` and
//! `IPC_SET` are the sentry's: the first reports the virtual ids and mode and the sandbox's
//! pids, the second records new virtual ids and gives the host object the new mode with the
//! owner's read and write bits always set. The host object's owner never changes: a virtual
//! `IPC_SET` to uid 0 gives nothing to the host's root.
//!
//! **Objects the sandbox did not make** (a pod's other containers'): the host kernel decides,
//! with the sandbox a stranger (another uid, no capability), and `IPC_STAT` shows their ids as
//! the overflow id 65534, as Linux shows ids its namespace cannot map.
//!
//! The sentry forgets an object when the sandbox removes it (a segment still attached, once a
//! later `IPC_RMID` or a new object with its id says it is gone). One a pod's other container
//! removes is forgotten when its id comes back; meanwhile the host's own check still applies to
//! whatever holds the id.
//!
//! Known gap: `semop` reads its operations from the caller's memory, so another thread of the
//! caller could turn a read-only wait into an alteration between the sentry's check and the
//! native run: a virtual user could alter a semaphore of another virtual user of the same
//! sandbox that it may only read. Nothing outside the sandbox is reachable that way.

use super::{err, errno, Call, Outcome};
use crate::kernel::ipc::{IpcKind, IpcOwner, CAP_IPC_LOCK};
use crate::kernel::Kernel;
use crate::platform::Platform;

const IPC_CREAT: u64 = 0o1000;
const IPC_EXCL: u64 = 0o2000;
const IPC_PRIVATE: i64 = 0;
const SHM_HUGETLB: u64 = 0o4000;
const SHM_RDONLY: u64 = 0o10000;
const SHM_EXEC: u64 = 0o100000;
const READ: u32 = 0o444;
const WRITE: u32 = 0o222;
/// The id Linux shows for an owner its namespace cannot map.
const OVERFLOW_ID: u32 = 65534;
/// What a semop may carry at most (the kernel's default SEMOPM is 500).
const SEMOPM: u64 = 4096;

/// The syscalls whose handlers answer `Native` on the notification platforms, to be let
/// through with `SECCOMP_USER_NOTIF_FLAG_CONTINUE` (their registers are left as they came).
pub const CONTINUED: &[i64] = &[
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_semctl,
    libc::SYS_msgsnd,
    libc::SYS_msgrcv,
    libc::SYS_msgctl,
];

fn kind(c: &Call) -> IpcKind {
    use syscalls::Sysno::*;
    match c.s {
        shmget | shmat | shmctl => IpcKind::Shm,
        semget | semop | semtimedop | semctl => IpcKind::Sem,
        _ => IpcKind::Msg,
    }
}

/// The host syscall number of `kind`'s get and ctl calls.
fn nr_get(k: IpcKind) -> i64 {
    match k {
        IpcKind::Shm => libc::SYS_shmget,
        IpcKind::Sem => libc::SYS_semget,
        IpcKind::Msg => libc::SYS_msgget,
    }
}

/// `shmget(key, size, flg)`, `semget(key, nsems, flg)`, `msgget(key, flg)`: the sentry makes or
/// finds the object in the sandbox's namespace, then checks or records its virtual owner.
pub fn get<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let kd = kind(c);
    let key = c.a[0] as i32 as i64;
    let (size, flg) = match kd {
        IpcKind::Msg => (0, c.a[1]),
        _ => (c.a[1], c.a[2]),
    };
    if kd == IpcKind::Shm && flg & SHM_HUGETLB != 0 {
        // Huge pages come from a host-wide pool the sentry has no right to.
        return err(libc::EPERM);
    }
    let creds = k.creds(c.tid);
    let mode = (flg & 0o777) as u32;
    // Host mode: the sandbox's host id (every task of the sandbox) may always read and write;
    // the sentry's check above it is what keeps virtual users apart. Group and other bits stay
    // as asked, for a pod's other containers.
    let host_flags = |extra: u64| (flg & !0o777 & !(IPC_CREAT | IPC_EXCL)) | extra;
    let call = |f: u64| -> i64 {
        // SAFETY: the get syscalls take integers only.
        unsafe {
            match kd {
                IpcKind::Msg => libc::syscall(nr_get(kd), key, f),
                _ => libc::syscall(nr_get(kd), key, size, f),
            }
        }
    };
    if flg & IPC_CREAT != 0 || key == IPC_PRIVATE {
        // Make it if it does not exist; EEXIST tells us it did (the sentry is the sandbox's only
        // maker of objects, so nothing of the sandbox races it).
        let id = call(host_flags(IPC_CREAT | IPC_EXCL | mode as u64 | 0o600));
        if id >= 0 {
            let cpid = k.proc_of(c.tid).borrow().vpid;
            k.ipc.set(kd, id as i32, IpcOwner::new(&creds, cpid, mode));
            return Outcome::Ret(id);
        }
        let e = errno();
        if e != libc::EEXIST || flg & IPC_EXCL != 0 || key == IPC_PRIVATE {
            return err(e);
        }
    }
    let id = call(host_flags(0));
    if id < 0 {
        return err(errno());
    }
    match k.ipc.get(kd, id as i32) {
        Some(o) if !o.may(&creds, mode) => err(libc::EACCES),
        Some(_) => Outcome::Ret(id),
        // Someone else's: ask the host with the bits the caller wants.
        None => match call(host_flags(mode as u64)) {
            v if v >= 0 => Outcome::Ret(v),
            _ => err(errno()),
        },
    }
}

/// Check `want` on the object `id` of the call's kind, then let the call run natively. An
/// object the sandbox did not make is the host kernel's to check.
fn check_then_native<P: Platform>(k: &Kernel<P>, c: &Call, id: u64, want: u32) -> Outcome {
    match k.ipc.get(kind(c), id as i32) {
        Some(o) if !o.may(&k.creds(c.tid), want) => err(libc::EACCES),
        _ => Outcome::Native,
    }
}

/// `shmat(id, addr, flg)`: read (and write unless SHM_RDONLY, exec with SHM_EXEC), then the
/// host maps the segment into the caller natively.
pub fn shmat<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let flg = c.a[2];
    let mut want = READ;
    if flg & SHM_RDONLY == 0 {
        want |= WRITE;
    }
    if flg & SHM_EXEC != 0 {
        want |= 0o111;
    }
    check_then_native(k, c, c.a[0], want)
}

/// `semop(id, sops, n)`, `semtimedop(id, sops, n, timeout)`: alter permission if any operation
/// changes a value, read permission for waits for zero (see the module doc for the gap).
pub fn semop<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let n = c.a[2];
    if n == 0 || n > SEMOPM {
        return err(if n == 0 { libc::EINVAL } else { libc::E2BIG });
    }
    // struct sembuf { unsigned short sem_num; short sem_op; short sem_flg; }
    let ops = match k.read_bytes(c.tid, c.a[1], n as usize * 6) {
        Ok(b) => b,
        Err(e) => return err(e),
    };
    let alters = ops.chunks(6).any(|o| o[2] != 0 || o[3] != 0);
    check_then_native(k, c, c.a[0], if alters { WRITE } else { READ })
}

/// `msgsnd(id, msg, size, flg)`: write permission.
pub fn msgsnd<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    check_then_native(k, c, c.a[0], WRITE)
}

/// `msgrcv(id, msg, size, type, flg)`: read permission (MSG_COPY too).
pub fn msgrcv<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    check_then_native(k, c, c.a[0], READ)
}

/// `shmctl(id, cmd, buf)`, `semctl(id, num, cmd, arg)`, `msgctl(id, cmd, buf)`.
pub fn ctl<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let kd = kind(c);
    let (id, cmd_raw, arg) = match kd {
        IpcKind::Sem => (c.a[0], c.a[2], c.a[3]),
        _ => (c.a[0], c.a[1], c.a[2]),
    };
    // IPC_64 (0x100) only selects the structure version; x86_64 has the one.
    let cmd = (cmd_raw & !0x100) as i32;
    let creds = k.creds(c.tid);
    let mine = k.ipc.get(kd, id as i32);
    match (kd, cmd) {
        (_, libc::IPC_INFO) | (IpcKind::Shm, 14) | (IpcKind::Sem, 19) | (IpcKind::Msg, 12) => {
            // IPC_INFO, SHM_INFO, SEM_INFO, MSG_INFO: limits and totals of the namespace.
            Outcome::Native
        }
        (_, libc::IPC_STAT) => stat(k, c, kd, id, cmd, arg, true),
        // SHM_STAT, SEM_STAT, MSG_STAT (an index, checked) and their _ANY forms (unchecked).
        (IpcKind::Shm, 13) | (IpcKind::Sem, 18) | (IpcKind::Msg, 11) => {
            stat(k, c, kd, id, cmd, arg, true)
        }
        (IpcKind::Shm, 15) | (IpcKind::Sem, 20) | (IpcKind::Msg, 13) => {
            stat(k, c, kd, id, cmd, arg, false)
        }
        (_, libc::IPC_SET) => set(k, c, kd, id, arg),
        (_, libc::IPC_RMID) => match mine {
            Some(o) if !o.may_control(&creds) => err(libc::EPERM),
            Some(_) => {
                // The sentry removes it itself (the host owner is the sandbox's host id, its
                // own), then forgets it once the host has: a segment still attached lives on
                // (IPC_STAT still names it) until its last detach.
                // SAFETY: IPC_RMID takes no pointer.
                let r = unsafe {
                    match kd {
                        IpcKind::Shm => libc::syscall(libc::SYS_shmctl, id, libc::IPC_RMID, 0),
                        IpcKind::Msg => libc::syscall(libc::SYS_msgctl, id, libc::IPC_RMID, 0),
                        IpcKind::Sem => libc::syscall(libc::SYS_semctl, id, 0, libc::IPC_RMID, 0),
                    }
                };
                if r < 0 {
                    return err(errno());
                }
                if host_stat(kd, id, libc::IPC_STAT).is_err() {
                    k.ipc.remove(kd, id as i32);
                }
                Outcome::Ret(0)
            }
            None => Outcome::Native,
        },
        // SHM_LOCK, SHM_UNLOCK: the owner or CAP_IPC_LOCK (the host then applies RLIMIT_MEMLOCK).
        (IpcKind::Shm, 11 | 12) => match mine {
            Some(o)
                if creds.euid != o.uid && creds.euid != o.cuid && !creds.capable(CAP_IPC_LOCK) =>
            {
                err(libc::EPERM)
            }
            _ => Outcome::Native,
        },
        // GETPID, GETVAL, GETALL, GETNCNT, GETZCNT: read (GETPID's pid is the host kernel's
        // answer in the caller's pid namespace, the sandbox's: already virtual).
        (IpcKind::Sem, 11..=15) => check_then_native(k, c, id, READ),
        // SETVAL, SETALL: alter.
        (IpcKind::Sem, 16 | 17) => check_then_native(k, c, id, WRITE),
        _ => err(libc::EINVAL),
    }
}

/// The host's view of an object, in the sentry's own buffer (the largest of the three
/// structures), by the sentry's own call in the sandbox's namespace.
fn host_stat(kd: IpcKind, id: u64, cmd: i32) -> Result<(i64, Vec<u8>), i32> {
    let mut buf = vec![0u8; 256];
    let p = buf.as_mut_ptr();
    // SAFETY: the ctl syscalls write at most their structure (≤ 120 bytes) into our buffer.
    let r = unsafe {
        match kd {
            IpcKind::Shm => libc::syscall(libc::SYS_shmctl, id, cmd, p),
            IpcKind::Msg => libc::syscall(libc::SYS_msgctl, id, cmd, p),
            IpcKind::Sem => libc::syscall(libc::SYS_semctl, id, 0, cmd, p),
        }
    };
    if r < 0 {
        return Err(errno());
    }
    let size = match kd {
        IpcKind::Shm => std::mem::size_of::<libc::shmid_ds>(),
        IpcKind::Msg => std::mem::size_of::<libc::msqid_ds>(),
        IpcKind::Sem => std::mem::size_of::<libc::semid_ds>(),
    };
    buf.truncate(size);
    Ok((r, buf))
}

/// `struct ipc_perm` is at the start of all three structures.
fn perm_of(buf: &[u8]) -> libc::ipc_perm {
    // SAFETY: buf holds a whole shmid_ds/msqid_ds/semid_ds, which starts with an ipc_perm.
    unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) }
}

fn put_perm(buf: &mut [u8], p: &libc::ipc_perm) {
    // SAFETY: as perm_of.
    unsafe { std::ptr::write_unaligned(buf.as_mut_ptr().cast(), *p) }
}

/// IPC_STAT and the *_STAT index forms: the host's structure with the virtual ids and mode of
/// an object the sandbox made (65534 for anyone else's) and pids as the sandbox sees them.
#[allow(clippy::too_many_arguments)]
fn stat<P: Platform>(
    k: &mut Kernel<P>,
    c: &Call,
    kd: IpcKind,
    id: u64,
    cmd: i32,
    arg: u64,
    check: bool,
) -> Outcome {
    let (r, mut buf) = match host_stat(kd, id, cmd) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    // The index forms return the object's id.
    let obj = if cmd == libc::IPC_STAT {
        id as i32
    } else {
        r as i32
    };
    let mut p = perm_of(&buf);
    let owner = k.ipc.get(kd, obj);
    match owner {
        Some(o) => {
            if check && !o.may(&k.creds(c.tid), READ) {
                return err(libc::EACCES);
            }
            p.uid = o.uid;
            p.gid = o.gid;
            p.cuid = o.cuid;
            p.cgid = o.cgid;
            p.mode = (p.mode & !0o777) | o.mode as u16;
        }
        None => {
            // The host already checked the sentry, a stranger to that object like the sandbox.
            p.uid = OVERFLOW_ID;
            p.gid = OVERFLOW_ID;
            p.cuid = OVERFLOW_ID;
            p.cgid = OVERFLOW_ID;
        }
    }
    put_perm(&mut buf, &p);
    // Pids are the sentry's view (the host's pid namespace): the sandbox's, or 0 for a pid
    // outside its namespace, as Linux shows them.
    let fix = |buf: &mut [u8], off: usize| {
        let host = i32::from_ne_bytes(buf[off..off + 4].try_into().unwrap());
        let v = if host == 0 { 0 } else { k.virt_of(host) };
        buf[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    };
    match kd {
        IpcKind::Shm => {
            let off = std::mem::offset_of!(libc::shmid_ds, shm_cpid);
            match owner {
                // The host saw the sentry make it, on the process's behalf.
                Some(o) => buf[off..off + 4].copy_from_slice(&o.cpid.to_ne_bytes()),
                None => fix(&mut buf, off),
            }
            fix(&mut buf, std::mem::offset_of!(libc::shmid_ds, shm_lpid));
        }
        IpcKind::Msg => {
            fix(&mut buf, std::mem::offset_of!(libc::msqid_ds, msg_lspid));
            fix(&mut buf, std::mem::offset_of!(libc::msqid_ds, msg_lrpid));
        }
        IpcKind::Sem => {}
    }
    match k.write_bytes(c.tid, arg, &buf) {
        Ok(()) => Outcome::Ret(if cmd == libc::IPC_STAT { 0 } else { r }),
        Err(e) => err(e),
    }
}

/// IPC_SET: the virtual owner or creator (or CAP_SYS_ADMIN) sets the virtual uid, gid and mode
/// (msg_qbytes too); the host object keeps its owner and gets the mode with the owner's rw bits.
fn set<P: Platform>(k: &mut Kernel<P>, c: &Call, kd: IpcKind, id: u64, arg: u64) -> Outcome {
    let Some(mut o) = k.ipc.get(kd, id as i32) else {
        // Someone else's object: the host decides (the sandbox owns none of it: EPERM, or
        // EINVAL for ids its namespace cannot map).
        return Outcome::Native;
    };
    let creds = k.creds(c.tid);
    let size = match kd {
        IpcKind::Shm => std::mem::size_of::<libc::shmid_ds>(),
        IpcKind::Msg => std::mem::size_of::<libc::msqid_ds>(),
        IpcKind::Sem => std::mem::size_of::<libc::semid_ds>(),
    };
    let want = match k.read_bytes(c.tid, arg, size) {
        Ok(b) => perm_of(&b),
        Err(e) => return err(e),
    };
    if !o.may_control(&creds) {
        return err(libc::EPERM);
    }
    if want.uid == u32::MAX || want.gid == u32::MAX {
        return err(libc::EINVAL);
    }
    let (_, mut host) = match host_stat(kd, id, libc::IPC_STAT) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let mut p = perm_of(&host);
    p.mode = (p.mode & !0o777) | (want.mode & 0o777) | 0o600;
    put_perm(&mut host, &p);
    if kd == IpcKind::Msg {
        // msg_qbytes: raising it above the namespace's limit takes CAP_SYS_RESOURCE, which the
        // sentry does not hold: the host says EPERM then, whatever the caller's virtual set.
        let off = std::mem::offset_of!(libc::msqid_ds, msg_qbytes);
        let b = match k.read_bytes(c.tid, arg + off as u64, 8) {
            Ok(b) => b,
            Err(e) => return err(e),
        };
        host[off..off + 8].copy_from_slice(&b);
    }
    let ptr = host.as_mut_ptr();
    // SAFETY: IPC_SET reads the structure from our buffer; uid and gid are the host object's own.
    let r = unsafe {
        match kd {
            IpcKind::Shm => libc::syscall(libc::SYS_shmctl, id, libc::IPC_SET, ptr),
            IpcKind::Msg => libc::syscall(libc::SYS_msgctl, id, libc::IPC_SET, ptr),
            IpcKind::Sem => libc::syscall(libc::SYS_semctl, id, 0, libc::IPC_SET, ptr),
        }
    };
    if r < 0 {
        return err(errno());
    }
    o.uid = want.uid;
    o.gid = want.gid;
    o.mode = (want.mode & 0o777) as u32;
    k.ipc.set(kd, id as i32, o);
    Outcome::Ret(0)
}
