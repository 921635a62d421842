//! System V IPC and POSIX message queues in the sentry (issue 12): shared memory, semaphores
//! and message queues across fork on every platform, against runc; the sandbox's own IPC namespace (a host object is not
//! reachable), a pod's namespace joined by path (its objects are shared), and an IPC_SET that
//! cannot hand an object to a host id.
//!
//! Run: `cargo test -p hako-sentry --test ipc` (as root; skips with a reason otherwise).

mod common;

use serde_json::json;

/// A busybox bundle with tests/programs/<name>.c at /bin/<name>.
fn bundle(name: &str) -> Option<common::Bundle> {
    let b = common::busybox_bundle()?;
    common::compile_c(
        &format!("programs/{name}.c"),
        &b.rootfs().join("bin").join(name),
    )?;
    Some(b)
}

fn on(
    b: &common::Bundle,
    platform: &str,
    args: &[&str],
    extra: serde_json::Value,
) -> (i32, String, String) {
    let mut extra = extra;
    extra["annotations"] = json!({hako_sentry::PLATFORM_ANNOTATION: platform});
    b.run_spec(&b.spec(args, extra))
}

/// `args` gives `want` under runc (root with CAP_SETUID and CAP_SETGID, where runc can run
/// here) and in the sentry on every platform.
fn same_everywhere(b: &common::Bundle, args: &[&str], want: &str) {
    let caps = ["CAP_SETUID", "CAP_SETGID"];
    let process = json!({"capabilities": {"bounding": caps, "effective": caps, "permitted": caps}});
    common::same_as_linux_everywhere(b, args, want, process, json!({}));
}

/// shm, sem and msg made by a parent and used by its child; IPC_STAT's virtual ids, mode and
/// pids; IPC_SET; a child that became a stranger (uid 2000) refused as Linux refuses it.
#[test]
fn sysv_ipc_across_fork() {
    let Some(b) = bundle("sysv_ipc") else {
        return;
    };
    same_everywhere(&b, &["/bin/sysv_ipc"], "ok shm\nok sem\nok msg\n");
}

/// POSIX message queues across fork (a blocked receive, priorities, attributes, timeouts,
/// EAGAIN, poll), the queues as files of /dev/mqueue, a stranger refused.
#[test]
fn posix_message_queues_across_fork() {
    let Some(b) = bundle("posix_mq") else {
        return;
    };
    same_everywhere(&b, &["/bin/posix_mq"], "ok mqueue\n");
}

/// A thread of this test in an IPC namespace of its own (a pod's, as podman `--ipc
/// container:X` hands it over by path), kept until the test ends.
struct PodIpc {
    path: String,
    tx: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl PodIpc {
    fn new() -> PodIpc {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (dtx, done) = std::sync::mpsc::channel();
        let (ptx, prx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: unshare affects this thread only (its nsproxy).
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWIPC) }, 0);
            // SAFETY: plain syscalls.
            let tid = unsafe { libc::gettid() };
            ptx.send(format!("/proc/{}/task/{tid}/ns/ipc", std::process::id()))
                .unwrap();
            for f in rx {
                f();
                dtx.send(()).unwrap();
            }
        });
        PodIpc {
            path: prx.recv().unwrap(),
            tx,
            done,
        }
    }

    /// Run `f` in the namespace.
    fn run(&self, f: impl FnOnce() + Send + 'static) {
        self.tx.send(Box::new(f)).unwrap();
        self.done.recv().unwrap();
    }
}

/// Make a segment `key` holding `text` in the calling thread's IPC namespace.
fn make_segment(key: i32, text: &str) -> i32 {
    // SAFETY: a fresh segment mapped, written, unmapped.
    unsafe {
        let id = libc::shmget(key, 4096, libc::IPC_CREAT | 0o600);
        assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
        let p = libc::shmat(id, std::ptr::null(), 0);
        assert_ne!(p as isize, -1);
        std::ptr::copy_nonoverlapping(text.as_ptr(), p.cast(), text.len());
        libc::shmdt(p);
        id
    }
}

/// An object of the host's IPC namespace is not reachable from the sandbox, whatever its key.
#[test]
fn a_host_ipc_object_is_not_reachable() {
    let Some(b) = bundle("sysv_ipc") else {
        return;
    };
    let key = 0x4841_0000 | (std::process::id() as i32 & 0xffff);
    // In the host's own IPC namespace (this test's), removed when the test ends.
    struct Rm(i32);
    impl Drop for Rm {
        fn drop(&mut self) {
            // SAFETY: removing the segment this test made.
            unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
    let _rm = Rm(make_segment(key, "host secret\0"));
    let k = format!("{key:#x}");
    for p in common::platforms() {
        let (code, out, err) = on(&b, p, &["/bin/sysv_ipc", "find", &k], json!({}));
        assert_eq!((code, out.as_str()), (0, "shmget: errno 2\n"), "{p}: {err}");
    }
}

/// A pod's IPC namespace named by path is joined: the sandbox finds the pod's segment by its
/// key and reads it, and the segment it makes and IPC_SETs to uid 0 stays the sandbox's host
/// id's on the host (virtual root is not the host's root), with the mode asked.
#[test]
fn a_pods_ipc_namespace_is_shared() {
    let Some(b) = bundle("sysv_ipc") else {
        return;
    };
    let pod = PodIpc::new();
    let (k1, k2) = (0x504f_4401, 0x504f_4402);
    pod.run(move || {
        let id = make_segment(k1, "pod data\0");
        // Readable by the sandbox, a stranger to it.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: IPC_STAT/IPC_SET of our own segment with a local struct.
        unsafe {
            assert_eq!(libc::shmctl(id, libc::IPC_STAT, &mut ds), 0);
            ds.shm_perm.mode = 0o644;
            assert_eq!(libc::shmctl(id, libc::IPC_SET, &mut ds), 0);
        }
    });
    let ns = json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}, {"type": "ipc", "path": pod.path}, {"type": "uts"}]}});
    let spec = b.spec(&["/bin/sysv_ipc", "find", &format!("{k1:#x}")], ns.clone());
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!((code, out.as_str()), (0, "found: pod data\n"), "{err}");
    let spec = b.spec(&["/bin/sysv_ipc", "give", &format!("{k2:#x}")], ns);
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!((code, out.as_str()), (0, "given\n"), "{err}");
    let (tx, rx) = std::sync::mpsc::channel();
    pod.run(move || {
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: root's IPC_STAT into a local struct.
        unsafe {
            let id = libc::shmget(k2, 0, 0);
            assert!(id >= 0, "the sandbox's segment is in the pod's namespace");
            assert_eq!(libc::shmctl(id, libc::IPC_STAT, &mut ds), 0);
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
        tx.send((ds.shm_perm.uid, ds.shm_perm.gid, ds.shm_perm.mode & 0o777))
            .unwrap();
    });
    let (uid, gid, mode) = rx.recv().unwrap();
    assert!(
        uid >= 1 << 31 && gid >= 1 << 31,
        "the host owner is the sandbox's host id, not {uid}:{gid}"
    );
    assert_eq!(mode, 0o666);
}

/// POSIX named semaphores (sem_open: a file of /dev/shm mapped shared) and shm_open segments
/// across fork: 4 processes count to 2000 under the semaphore.
#[test]
fn posix_semaphores_and_shared_memory_across_fork() {
    let Some(b) = bundle("posix_sem") else {
        return;
    };
    same_everywhere(&b, &["/bin/posix_sem"], "ok sem_open\nok shm_open\n");
}
