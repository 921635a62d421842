//! `hako exec` into a running sentry sandbox.
//!
//! Only the sentry may create tasks in its kernel, and a new task must end up exactly as
//! confined as the workload's: in the sandbox's pid and user namespaces, chrooted at the
//! overlay root, as the sandbox's host id with no capability and an empty bounding set, under
//! no_new_privs, the spec's seccomp profile and the trap filter, traced by the sentry from its
//! first instruction. The sentry itself cannot fork such a process once it has confined itself
//! (its own filter would stack on the child and answer EPERM to the syscalls the trap filter
//! sends to the sentry), so it keeps a **spawner**: a process it forks before it confines itself
//! and before the workload exists, which
//!
//! - receives the sandbox's pid namespace and the workload's user namespace from the sentry once
//!   the workload's first process has made them, enters the pid namespace for its children, and
//!   drops every privilege (the host id, no capability, an empty bounding set, no_new_privs);
//! - then, for each request the sentry sends on their private socketpair (never anyone else),
//!   clones a child with `CLONE_PARENT` — so the child is the **sentry's** child, which
//!   `PTRACE_TRACEME` makes its tracee — and reports the child's pid.
//!
//! The child enters the workload's user namespace (the spawner's host id owns it, so no
//! capability is needed), chroots to the root, drops as the workload's first process does, stops
//! for the sentry to attach, installs the filters and executes the program (the sentry checks
//! the execve as any other). The spawner sits in the sentry's pid namespace, outside the
//! sandbox's, and dies with the sentry (`PR_SET_PDEATHSIG`).
//!
//! ```text
//! hako exec ──fork──► exec client (the pid `exec` reports; exits like the exec'd process)
//!   │ <state>/sentry/exec.sock (0600, SOCK_SEQPACKET): Exec{process, tty} + stdio fds ─►
//!   ▼                                              ◄─ Started{pid} | Error, later Exit
//! sentry (kernel loop): checks the process as create checks the workload's, builds the
//!   │ task's fd table from the received stdio, asks the spawner ─► child ─► tracee
//!   ▼ Signal(n) from the client ─► kill(child, n); the client gone ─► SIGKILL
//! ```

use crate::config::Config;
use crate::platform::Platform;
use anyhow::{bail, Context, Result};
use nix::sys::socket::{
    recvmsg, sendmsg, socket, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The sentry's exec socket, in `<state>/sentry`.
pub const EXEC_SOCK: &str = "exec.sock";
/// The largest message either side sends (a process spec with its environment).
const MAX_MSG: usize = 256 * 1024;

/// Between `hako exec`'s client and the sentry.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Msg {
    /// The first message, with the process's stdin, stdout and stderr attached (the pty slave
    /// three times for a terminal).
    Exec {
        process: Box<Process>,
        tty: bool,
    },
    /// The process runs; `pid` is its pid in the sandbox.
    Started {
        pid: i32,
    },
    Error(String),
    /// The process ended: its exit code, or the signal that killed it.
    Exit {
        signaled: bool,
        code: i32,
    },
    /// A signal for the process (what the client itself received).
    Signal(i32),
}

/// Send `m` with `fds` attached.
pub fn send(sock: RawFd, m: &Msg, fds: &[RawFd]) -> Result<()> {
    send_bytes(sock, &serde_json::to_vec(m)?, fds)
}

fn send_bytes(sock: RawFd, data: &[u8], fds: &[RawFd]) -> Result<()> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsg: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<UnixAddr>(sock, &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None).context("sendmsg")?;
    Ok(())
}

/// One message and the descriptors that came with it; None at end of stream (or, with
/// `nonblock`, when nothing is pending).
fn recv_bytes(sock: RawFd, nonblock: bool) -> Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cspace = nix::cmsg_space!([RawFd; 3]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblock {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let (n, fds, trunc) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut cspace), flags) {
            Ok(r) => {
                let mut fds = vec![];
                for c in r.cmsgs().context("control message")? {
                    if let ControlMessageOwned::ScmRights(v) = c {
                        // SAFETY: descriptors the kernel just gave us.
                        fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                    }
                }
                let trunc = r
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                break (r.bytes, fds, trunc);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) if nonblock => return Ok(None),
            Err(e) => return Err(e).context("recvmsg"),
        }
    };
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    if trunc {
        bail!("message too long");
    }
    buf.truncate(n);
    Ok(Some((buf, fds)))
}

fn recv(sock: RawFd, nonblock: bool) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
    Ok(match recv_bytes(sock, nonblock)? {
        Some((b, fds)) => Some((serde_json::from_slice(&b).context("bad message")?, fds)),
        None => None,
    })
}

/// A socket path that fits in `sun_path`: the path itself when short enough, else the same
/// file reached through an `O_PATH` descriptor of its directory (kept open while used).
fn short_path(path: &Path) -> Result<(PathBuf, Option<OwnedFd>)> {
    if path.as_os_str().len() < 100 {
        return Ok((path.to_path_buf(), None));
    }
    let dir = path.parent().context("socket path has no directory")?;
    let name = path.file_name().context("socket path has no name")?;
    let c = CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: open of a directory path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening {}", dir.display()));
    }
    // SAFETY: a fresh descriptor.
    let f = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((
        PathBuf::from(format!("/proc/self/fd/{fd}")).join(name),
        Some(f),
    ))
}

/// The sentry's listening socket at `path`, 0600 whatever the umask (inside the 0700 state
/// directory): only root and the sandbox's owner reach it.
pub fn bind(path: &Path) -> Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let (p, _dir) = short_path(path)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .context("socket")?;
    let addr = UnixAddr::new(&p).context("exec socket path")?;
    // SAFETY: umask is process-wide; the sentry is single-threaded.
    let old = unsafe { libc::umask(0o177) };
    let r = nix::sys::socket::bind(sock.as_raw_fd(), &addr);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    r.with_context(|| format!("binding {}", path.display()))?;
    nix::sys::socket::listen(&sock, nix::sys::socket::Backlog::new(16)?).context("listen")?;
    Ok(sock)
}

// ---------------------------------------------------------------------------------------------
// The spawner.

/// What the sentry asks the spawner for (the tty slave, if any, attached).
#[derive(Debug, Serialize, Deserialize)]
struct SpawnReq {
    program: String,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    /// The process's rlimits: (resource, soft, hard).
    rlimits: Vec<(u32, u64, u64)>,
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
    fn spawn(&self, req: &SpawnReq, tty: Option<RawFd>) -> Result<i32> {
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

struct Client {
    id: u64,
    sock: OwnedFd,
    /// Host pid of the process it started.
    leader: Option<i32>,
}

/// A request the kernel carries out (it owns the tasks).
pub struct Request {
    pub client: u64,
    pub cfg: Config,
    /// `process.rlimits` (resource, soft, hard), set on the process as on the workload's init.
    pub rlimits: Vec<(u32, u64, u64)>,
    pub program: String,
    pub tty: bool,
    pub stdio: Vec<OwnedFd>,
}

/// The listening socket, the connected clients and the spawner.
pub struct Hub {
    listener: OwnedFd,
    clients: Vec<Client>,
    next: u64,
    spawner: Spawner,
    /// The container's spec and id: an exec's process is checked as the workload's.
    base: Spec,
    id: String,
    /// The workload's bounding set: an exec's may not exceed it.
    bounding: u64,
}

impl Hub {
    pub fn new(listener: OwnedFd, spawner: Spawner, base: Spec, id: String, bounding: u64) -> Hub {
        Hub {
            listener,
            clients: vec![],
            next: 1,
            spawner,
            base,
            id,
            bounding,
        }
    }

    pub fn poll_fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.iter().map(|c| c.sock.as_raw_fd()))
            .collect()
    }

    /// The exec's process, checked as `create` checks the workload's.
    fn config_for(base: &Spec, id: &str, bounding: u64, process: &Process) -> Result<Config> {
        let mut spec = base.clone();
        let mut process = process.clone();
        if process.capabilities().is_none() {
            // None named: the workload's (for the sentry, "every capability" would be more).
            process.set_capabilities(
                base.process()
                    .as_ref()
                    .and_then(|p| p.capabilities().clone()),
            );
        }
        spec.set_process(Some(process));
        let cfg = Config::from_spec(&spec, id)?;
        if !cfg.cwd.starts_with('/') {
            bail!("process.cwd {:?} must be absolute", cfg.cwd);
        }
        if cfg.caps.bnd & !bounding != 0 {
            bail!(
                "the process asks for capabilities outside the container's bounding set ({:#x} beyond {:#x}); the sentry backend never gives an exec'd process more than the workload",
                cfg.caps.bnd & !bounding,
                bounding
            );
        }
        Ok(cfg)
    }

    /// Serve the fds poll found ready; returns the exec requests for the kernel to carry out.
    pub fn service(&mut self, ready: &[RawFd], vfs: &crate::vfs::Vfs) -> Vec<Request> {
        let mut out = vec![];
        if ready.contains(&self.listener.as_raw_fd()) {
            loop {
                // SAFETY: accept4 on our listening socket.
                let fd = unsafe {
                    libc::accept4(
                        self.listener.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    )
                };
                if fd < 0 {
                    break;
                }
                let id = self.next;
                self.next += 1;
                self.clients.push(Client {
                    id,
                    // SAFETY: a fresh descriptor.
                    sock: unsafe { OwnedFd::from_raw_fd(fd) },
                    leader: None,
                });
            }
        }
        let mut gone = vec![];
        for c in self.clients.iter_mut() {
            if !ready.contains(&c.sock.as_raw_fd()) {
                continue;
            }
            match recv(c.sock.as_raw_fd(), true) {
                Ok(Some((Msg::Exec { process, tty }, fds))) if c.leader.is_none() => {
                    let checked = (|| -> Result<Request> {
                        if fds.len() != 3 {
                            bail!("the exec request carries {} descriptors, not 3", fds.len());
                        }
                        let cfg = Self::config_for(&self.base, &self.id, self.bounding, &process)?;
                        let program = crate::supervisor::find_program(vfs, &cfg)?;
                        match vfs.stat(&program, true) {
                            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {}
                            Ok(_) => {
                                bail!("{:?} in the container is not a regular file", cfg.args[0])
                            }
                            Err(e) => bail!(
                                "executable {:?} not found in the container: {}",
                                cfg.args[0],
                                std::io::Error::from_raw_os_error(e)
                            ),
                        }
                        match vfs.stat(&crate::vfs::normalize(&cfg.cwd), true) {
                            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                            _ => bail!("cwd {:?} is not a directory in the container", cfg.cwd),
                        }
                        let rlimits = process
                            .rlimits()
                            .iter()
                            .flatten()
                            .map(|l| {
                                hako_linux::process::rlimit_resource(l.typ())
                                    .map(|r| (r, l.soft(), l.hard()))
                            })
                            .collect::<Result<_>>()?;
                        Ok(Request {
                            client: c.id,
                            cfg,
                            rlimits,
                            program,
                            tty,
                            stdio: fds,
                        })
                    })();
                    match checked {
                        Ok(r) => out.push(r),
                        Err(e) => {
                            let _ = send(c.sock.as_raw_fd(), &Msg::Error(format!("{e:#}")), &[]);
                            gone.push(c.id);
                        }
                    }
                }
                Ok(Some((Msg::Signal(sig), _))) => {
                    if let Some(l) = c.leader {
                        // SAFETY: signalling our own tracee (the sandbox's process).
                        unsafe { libc::kill(l, sig) };
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    // The client went away: its process goes too (as when the pid an engine
                    // holds for an exec is killed).
                    if let Some(l) = c.leader {
                        // SAFETY: as above.
                        unsafe { libc::kill(l, libc::SIGKILL) };
                    }
                    gone.push(c.id);
                }
            }
        }
        self.clients.retain(|c| !gone.contains(&c.id));
        out
    }

    /// Ask the spawner for the process of `req`; the child is stopped, waiting for the sentry.
    pub fn spawn(&self, req: &Request) -> Result<i32> {
        let r = SpawnReq {
            program: req.program.clone(),
            args: req.cfg.args.clone(),
            env: req.cfg.env.clone(),
            cwd: req.cfg.cwd.clone(),
            rlimits: req.rlimits.clone(),
        };
        let tty = if req.tty {
            Some(req.stdio[0].as_raw_fd())
        } else {
            None
        };
        self.spawner.spawn(&r, tty)
    }

    pub fn started(&mut self, client: u64, host: i32, vpid: i32) {
        if let Some(c) = self.clients.iter_mut().find(|c| c.id == client) {
            c.leader = Some(host);
            if send(c.sock.as_raw_fd(), &Msg::Started { pid: vpid }, &[]).is_err() {
                // SAFETY: our own tracee.
                unsafe { libc::kill(host, libc::SIGKILL) };
            }
        } else {
            // SAFETY: as above: nobody waits for it.
            unsafe { libc::kill(host, libc::SIGKILL) };
        }
    }

    pub fn failed(&mut self, client: u64, e: &anyhow::Error) {
        if let Some(i) = self.clients.iter().position(|c| c.id == client) {
            let c = self.clients.remove(i);
            let _ = send(c.sock.as_raw_fd(), &Msg::Error(format!("{e:#}")), &[]);
        }
    }

    /// A task was reaped: if it is an exec'd process, its client learns how it ended.
    pub fn exited(&mut self, host: i32, status: (bool, i32)) {
        if let Some(i) = self.clients.iter().position(|c| c.leader == Some(host)) {
            let c = self.clients.remove(i);
            let _ = send(
                c.sock.as_raw_fd(),
                &Msg::Exit {
                    signaled: status.0,
                    code: status.1,
                },
                &[],
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `hako exec`'s side.

/// Ask the sentry listening at `sock_path` to run `process`, with this process's stdio (or a
/// new pty whose master goes to `console_socket`). Once it runs, fork the exec client, which
/// forwards signals and exits as the process does. Returns the client's pid.
pub fn start(sock_path: &Path, process: &Process, console_socket: Option<&Path>) -> Result<i32> {
    let (p, _dir) = short_path(sock_path)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket")?;
    let addr = UnixAddr::new(&p).context("exec socket path")?;
    match nix::sys::socket::connect(sock.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => {
            bail!("the container's workload is not running (exec needs a started sandbox)")
        }
        Err(nix::errno::Errno::ECONNREFUSED) => {
            bail!("the container's workload has ended (its sentry no longer answers)")
        }
        Err(e) => return Err(e).context("connecting to the sandbox's sentry"),
    }
    let tty = process.terminal().unwrap_or(false);
    let slave = match (tty, console_socket) {
        (true, Some(c)) => Some(hako_contract::console::send_pty_master(c)?),
        (true, None) => bail!("exec with a terminal needs a console socket"),
        _ => None,
    };
    let stdio: Vec<RawFd> = match &slave {
        Some(s) => vec![s.as_raw_fd(); 3],
        None => vec![0, 1, 2],
    };
    for &fd in &stdio {
        // SAFETY: F_GETFD probe.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            bail!("stdio descriptor {fd} is not open");
        }
    }
    // The signals the client forwards are blocked from here on, in `hako exec` too (it blocks
    // them itself once this returns, to forward them to the client): one that comes as soon as
    // the process runs waits to be forwarded instead of killing `hako exec` or the client.
    // SAFETY: the signal mask of the single-threaded `hako exec`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in hako_contract::signal::forwarded() {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    send(
        sock.as_raw_fd(),
        &Msg::Exec {
            process: Box::new(process.clone()),
            tty,
        },
        &stdio,
    )
    .context("sending the exec request")?;
    drop(slave);
    match recv(sock.as_raw_fd(), false)? {
        Some((Msg::Started { .. }, _)) => {}
        Some((Msg::Error(e), _)) => bail!("{e}"),
        Some((m, _)) => bail!("unexpected answer from the sentry: {m:?}"),
        None => bail!("the sandbox ended before the process started"),
    }
    // SAFETY: `hako exec` is single-threaded; the child never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        let code = run_client(sock);
        // SAFETY: leaving the forked client.
        unsafe { libc::_exit(code) }
    }
    Ok(pid)
}

/// The exec client: forwards the signals it gets, and ends as the process ended (its exit code,
/// or the same signal).
fn run_client(sock: OwnedFd) -> i32 {
    // Nothing of `hako exec`'s but stdio and the socket: its state lock above all, which other
    // commands on the container wait for while it is held.
    let s = sock.as_raw_fd() as u32;
    // SAFETY: closing descriptors of this forked, single-threaded process.
    unsafe {
        if s > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, s - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, s + 1, u32::MAX, 0u32);
    }
    // SAFETY: signal set-up in the single-threaded client.
    let sigfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in hako_contract::signal::forwarded() {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    };
    loop {
        let mut p = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid pollfd array.
        if unsafe { libc::poll(p.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if p[1].revents & libc::POLLIN != 0 {
            // SAFETY: reading one siginfo from our signalfd.
            let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let n = unsafe {
                libc::read(
                    sigfd,
                    (&mut si as *mut libc::signalfd_siginfo).cast(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if n > 0 {
                let _ = send(sock.as_raw_fd(), &Msg::Signal(si.ssi_signo as i32), &[]);
            }
        }
        if p[0].revents != 0 {
            match recv(sock.as_raw_fd(), false) {
                Ok(Some((Msg::Exit { signaled, code }, _))) => {
                    if signaled {
                        return hako_contract::signal::die_like(code);
                    }
                    return code;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    eprintln!("hako: sentry: the sandbox ended before the exec'd process reported its exit status");
                    return 255;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(caps: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion": "1.0.2", "root": {{"path": "rootfs"}},
                "process": {{"args": ["sleep"], "cwd": "/", "user": {{"uid": 0, "gid": 0}}
                             {caps}}}}}"#
        ))
        .unwrap()
    }

    fn process(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    /// A hostile exec request: capabilities the workload's bounding set lacks are refused; a
    /// process naming none gets the workload's, never "every capability".
    #[test]
    fn an_exec_never_gets_more_capabilities_than_the_workload() {
        let base = spec(
            r#", "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                  "permitted": ["CAP_KILL"]}"#,
        );
        let bnd = Config::from_spec(&base, "t").unwrap().caps.bnd;
        let greedy = process(
            r#"{"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_KILL", "CAP_SYS_ADMIN"]}}"#,
        );
        let e = Hub::config_for(&base, "t", bnd, &greedy).unwrap_err();
        assert!(format!("{e:#}").contains("bounding set"), "{e:#}");
        let plain = process(r#"{"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#);
        let cfg = Hub::config_for(&base, "t", bnd, &plain).unwrap();
        assert_eq!(cfg.caps.bnd, bnd);
        assert_eq!(cfg.caps.eff, 1 << crate::syscalls::caps::KILL);
        // The workload's own checks apply: a relative cwd, no args.
        let rel = process(r#"{"args": ["sh"], "cwd": "tmp", "user": {"uid": 0, "gid": 0}}"#);
        assert!(Hub::config_for(&base, "t", bnd, &rel).is_err());
        let none = process(r#"{"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#);
        assert!(Hub::config_for(&base, "t", bnd, &none).is_err());
    }

    /// The request and its three descriptors cross the socket together; an end of stream reads
    /// as None.
    #[test]
    fn messages_carry_their_descriptors() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let m = Msg::Exec {
            process: Box::new(process(
                r#"{"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#,
            )),
            tty: false,
        };
        send(a.as_raw_fd(), &m, &[0, 1, 2]).unwrap();
        let (got, fds) = recv(b.as_raw_fd(), false).unwrap().unwrap();
        assert_eq!(got, m);
        assert_eq!(fds.len(), 3);
        assert!(
            recv(b.as_raw_fd(), true).unwrap().is_none(),
            "nothing pending"
        );
        drop(a);
        assert!(
            recv(b.as_raw_fd(), false).unwrap().is_none(),
            "end of stream"
        );
    }
}
