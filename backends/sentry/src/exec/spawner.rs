//! The spawner: the process the sentry forks before it confines itself, which makes the
//! `hako exec` processes in the sandbox (see the module above).

use super::*;

/// What the sentry asks the spawner for (the tty slave, if any, attached).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SpawnReq {
    pub(super) program: String,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<String>,
    pub(super) cwd: String,
    /// The process's rlimits: (resource, soft, hard).
    pub(super) rlimits: Vec<(u32, u64, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
enum SpawnRep {
    Pid(i32),
    Error(String),
}

/// The sentry's end of the spawner's socketpair.
pub struct Spawner {
    sock: OwnedFd,
    pid: i32,
    /// Why exec is unavailable, if the spawner could not set itself up.
    broken: Option<String>,
}

/// What the spawner needs to drop to the workload's identity.
pub struct SpawnerPlan<'a, P: Platform> {
    /// The overlay root, by descriptor.
    pub root_fd: RawFd,
    /// The workload's host id, and whether the sentry runs as another (root) or as it (rootless).
    pub outer: u32,
    pub switch_ids: bool,
    pub rootless: bool,
    pub plat: &'a P,
    pub oci_filter: Option<&'a hako_linux::seccomp::Compiled>,
}

impl Spawner {
    /// Fork the spawner (before the sandbox's pid namespace exists: it is no process of the
    /// sandbox). It waits for [`Spawner::arm`].
    pub fn fork<P: Platform>(plan: &SpawnerPlan<P>) -> Result<Spawner> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("socketpair")?;
        // SAFETY: fork of the single-threaded sentry; the child never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            drop(a);
            let code = match spawner_main(b, plan) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(code) }
        }
        drop(b);
        Ok(Spawner {
            sock: a,
            pid,
            broken: None,
        })
    }

    /// Hand the spawner the sandbox's pid namespace and the workload's user namespace (of the
    /// workload's first process `init`), and wait until it has dropped its privileges.
    pub fn arm(&mut self, init: i32) -> Result<()> {
        let r = (|| -> Result<()> {
            let pidns =
                crate::hostproc::open_ns(init, "pid").context("the sandbox's pid namespace")?;
            let userns =
                crate::hostproc::open_ns(init, "user").context("the workload's user namespace")?;
            send_bytes(
                self.sock.as_raw_fd(),
                b"arm",
                &[pidns.as_raw_fd(), userns.as_raw_fd()],
            )?;
            match recv_bytes(self.sock.as_raw_fd(), false)? {
                Some((b, _)) if b == b"ok" => Ok(()),
                Some((b, _)) => bail!("{}", String::from_utf8_lossy(&b)),
                None => bail!("the spawner died"),
            }
        })();
        if let Err(e) = &r {
            self.broken = Some(format!("{e:#}"));
            // SAFETY: our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        r
    }

    /// A child in the sandbox, stopped for the sentry to attach (it is the sentry's child).
    pub(super) fn spawn(&self, req: &SpawnReq, tty: Option<RawFd>) -> Result<i32> {
        if let Some(b) = &self.broken {
            bail!("exec is unavailable in this sandbox: {b}");
        }
        let fds: Vec<RawFd> = tty.into_iter().collect();
        send_bytes(self.sock.as_raw_fd(), &serde_json::to_vec(req)?, &fds)?;
        match recv_bytes(self.sock.as_raw_fd(), false)? {
            Some((b, _)) => match serde_json::from_slice(&b)? {
                SpawnRep::Pid(p) => Ok(p),
                SpawnRep::Error(e) => bail!("{e}"),
            },
            None => bail!("the sentry's spawner is gone"),
        }
    }
}

fn errno_ctx(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

/// The spawner process.
fn spawner_main<P: Platform>(sock: OwnedFd, plan: &SpawnerPlan<P>) -> Result<()> {
    // SAFETY: plain syscalls in the forked, single-threaded spawner.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // Named, so that it is told apart from the sentry (whose command line it shares).
        libc::prctl(libc::PR_SET_NAME, c"hako-spawner".as_ptr(), 0, 0, 0);
        if libc::getppid() == 1 {
            return Ok(());
        }
        // Nothing of the sentry's but the socket and the root.
        let keep = [sock.as_raw_fd(), plan.root_fd];
        let mut lo = 0u32;
        let mut ks: Vec<u32> = keep.iter().map(|&f| f as u32).collect();
        ks.sort();
        for k in ks {
            if k > lo {
                libc::syscall(libc::SYS_close_range, lo, k - 1, 0u32);
            }
            lo = k + 1;
        }
        libc::syscall(libc::SYS_close_range, lo, u32::MAX, 0u32);
    }
    hako_linux::process::reset_signals();
    let s = sock.as_raw_fd();
    // Armed: the namespaces.
    let Some((msg, fds)) = recv_bytes(s, false)? else {
        return Ok(());
    };
    let set_up = (|| -> Result<OwnedFd> {
        if msg != b"arm" || fds.len() != 2 {
            bail!("bad arming message");
        }
        let mut it = fds.into_iter();
        let (pidns, userns) = (it.next().unwrap(), it.next().unwrap());
        // SAFETY: plain syscalls on our own descriptors and credentials.
        unsafe {
            if libc::setns(pidns.as_raw_fd(), libc::CLONE_NEWPID) != 0 {
                return Err(errno_ctx(
                    "the spawner entering the sandbox's pid namespace",
                ));
            }
        }
        drop(pidns);
        // Down to the workload's host id (root) with nothing else: the user namespace its
        // children enter is owned by that id, which needs no capability.
        crate::identity::limit_bounding(0).context("the spawner's bounding set")?;
        if plan.switch_ids {
            crate::identity::become_with(plan.outer, 0).context("the spawner's host id")?;
        } else {
            crate::identity::set_caps(0, 0, 0).context("the spawner's capabilities")?;
        }
        // SAFETY: prctl on ourselves.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        }
        Ok(userns)
    })();
    let userns = match set_up {
        Ok(u) => {
            send_bytes(s, b"ok", &[])?;
            u
        }
        Err(e) => {
            let _ = send_bytes(s, format!("{e:#}").as_bytes(), &[]);
            return Err(e);
        }
    };
    while let Some((b, fds)) = recv_bytes(s, false)? {
        let rep = match serde_json::from_slice::<SpawnReq>(&b) {
            Ok(req) => match spawn_child(&req, fds.first().map(|f| f.as_raw_fd()), &userns, plan) {
                Ok(pid) => SpawnRep::Pid(pid),
                Err(e) => SpawnRep::Error(format!("{e:#}")),
            },
            Err(e) => SpawnRep::Error(format!("bad request: {e}")),
        };
        drop(fds);
        send_bytes(s, &serde_json::to_vec(&rep)?, &[])?;
    }
    Ok(())
}

fn cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| CString::new(s.as_str()).context("a NUL byte in an argument"))
        .collect()
}

/// Clone the exec'd process as the sentry's child (`CLONE_PARENT`). Returns its host pid.
fn spawn_child<P: Platform>(
    req: &SpawnReq,
    tty: Option<RawFd>,
    userns: &OwnedFd,
    plan: &SpawnerPlan<P>,
) -> Result<i32> {
    let prog = CString::new(req.program.as_str())?;
    let argv = cstrings(&req.args)?;
    let envp = cstrings(&req.env)?;
    let cwd = CString::new(req.cwd.as_str())?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let userns = userns.as_raw_fd();
    // A raw clone (glibc's fork takes no CLONE_PARENT): the child only makes syscalls until it
    // execs, on its copy of our stack.
    // SAFETY: clone without a new stack behaves as fork in the single-threaded spawner.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(errno_ctx("clone"));
    }
    if pid > 0 {
        return Ok(pid as i32);
    }
    // The exec'd process. Everything below runs before it is traced and filtered, and ends as
    // the workload's first process does (see supervisor::run_inner).
    // SAFETY: plain syscalls in the single-threaded child.
    unsafe {
        libc::setsid();
        // As the workload's init sets them (lowering always works; raising a hard limit above
        // the sentry's needs a privilege neither has by then).
        for &(res, cur, max) in &req.rlimits {
            let rl = libc::rlimit {
                rlim_cur: cur,
                rlim_max: max,
            };
            libc::setrlimit(res as _, &rl);
        }
        if let Some(t) = tty {
            libc::ioctl(t, libc::TIOCSCTTY, 0);
        }
        if libc::fchdir(plan.root_fd) != 0 {
            libc::_exit(126);
        }
        // The workload's user namespace: its own, full capabilities there only (dropped below).
        if libc::setns(userns, libc::CLONE_NEWUSER) != 0 {
            libc::_exit(126);
        }
        if libc::chroot(c".".as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
            libc::_exit(126);
        }
        if libc::chdir(cwd.as_ptr()) != 0 {
            libc::_exit(126);
        }
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        if !crate::identity::become_workload(plan.rootless) {
            libc::_exit(126);
        }
        let mut oci = || match plan.oci_filter {
            Some(f) => hako_linux::seccomp::try_apply(f)
                .map_err(|(i, e)| anyhow::anyhow!("seccomp profile filter {i}: errno {e}")),
            None => Ok(()),
        };
        if plan.plat.child_prepare(&mut oci).is_err() {
            libc::_exit(126);
        }
        libc::execve(prog.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
        let msg = b"hako-sentry: cannot execute the process\n";
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(127);
    }
}

// ---------------------------------------------------------------------------------------------
// The sentry's side.
