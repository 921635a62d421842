//! The sentry's side of `hako exec`: the exec socket's clients and the requests the kernel
//! carries out.

use super::spawner::SpawnReq;
use super::*;

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

    pub fn poll_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.iter().map(|c| c.sock.as_raw_fd()))
    }

    /// The exec's process, checked as `create` checks the workload's.
    pub(super) fn config_for(
        base: &Spec,
        id: &str,
        bounding: u64,
        process: &Process,
    ) -> Result<Config> {
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
                        let program = crate::setup::find_program(vfs, &cfg)?;
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
