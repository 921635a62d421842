//! The workload and the `hako exec` processes: forking them, and supervising them until the
//! workload ends (host frames in, their stdio and exit statuses out).

use crate::boottime::{boot_times, steps};
use crate::child::{child_main, Prepared};
use crate::pty::{recv_fd, set_winsize};
use crate::relay::{relay, send, Proc};
use crate::sys::{errno, pipe, set_nonblock, unix_pair, Res};
use hako_agent::proto::{self, ExitStatus, Frame, FrameReader, GuestConfig};
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How a forked child enters the workload's world.
pub(crate) enum Entry {
    /// The workload: its own mount namespace, pivot_root into the overlay, then it waits on
    /// this pipe for the host's Start before exec.
    Workload { start_r: RawFd },
    /// A `hako exec` process: joins the workload's mount namespace (an fd of
    /// `/proc/<workload>/ns/mnt`) and execs at once.
    Join { mnt_ns: RawFd },
}

/// A forked child before it runs: `status_r` is a CLOEXEC pipe on which it writes an error
/// when it cannot be set up or exec (EOF means it exec'd; the workload writes b'R' first).
pub(crate) struct Spawned {
    proc: Proc,
    status_r: OwnedFd,
    start_w: Option<OwnedFd>,
}

pub(crate) fn spawn(
    cfg: &GuestConfig,
    seccomp: Option<Vec<Vec<u8>>>,
    tag: Option<u32>,
    join: Option<&OwnedFd>,
) -> Res<Spawned> {
    let (start_r, start_w) = match join {
        None => {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        }
        Some(_) => (None, None),
    };
    let (status_r, status_w) = pipe()?;
    // Child's stdio: pipes, or a pty the child makes inside its root (so its devpts knows it:
    // ttyname works) and sends us the master of over a socket.
    let mut child_io: [Option<OwnedFd>; 3] = [None, None, None];
    let (mut stdin_w, mut stdout_r, mut stderr_r) = (None, None, None);
    let mut pty_sock = None;
    if cfg.process.terminal {
        let (a, c) = unix_pair()?;
        pty_sock = Some(a);
        child_io[0] = Some(c);
    } else {
        let (r, w) = pipe()?;
        child_io[0] = Some(r);
        stdin_w = Some(w);
        let (r, w) = pipe()?;
        child_io[1] = Some(w);
        stdout_r = Some(r);
        let (r, w) = pipe()?;
        child_io[2] = Some(w);
        stderr_r = Some(r);
    }
    // Everything the child needs, prepared before fork.
    let prep = Prepared::new(cfg)?;
    let entry = match (&start_r, join) {
        (Some(r), _) => Entry::Workload {
            start_r: r.as_raw_fd(),
        },
        (None, Some(ns)) => Entry::Join {
            mnt_ns: ns.as_raw_fd(),
        },
        (None, None) => unreachable!("a child without a start pipe joins a namespace"),
    };

    // SAFETY: single-threaded process; the child only runs `child_main`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", errno()));
    }
    if pid == 0 {
        drop(start_w);
        drop(status_r);
        let err = child_main(&prep, cfg, &child_io, entry, status_w.as_raw_fd(), seccomp);
        let msg = err.unwrap_err();
        // SAFETY: write on our fd, then _exit.
        unsafe {
            libc::write(status_w.as_raw_fd(), msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    drop(start_r);
    drop(status_w);
    drop(child_io);
    let pty = pty_sock.and_then(|s| recv_fd(&s));
    for fd in [&stdout_r, &stderr_r, &pty, &stdin_w].into_iter().flatten() {
        set_nonblock(fd.as_raw_fd());
    }
    Ok(Spawned {
        proc: Proc {
            tag,
            pid,
            stdin_w,
            stdout_r,
            stderr_r,
            pty,
            stdin_buf: vec![],
            stdin_eof: false,
            status: None,
        },
        status_r,
        start_w,
    })
}

/// Read the status pipe to EOF: what the child wrote there (empty when it exec'd).
pub(crate) fn read_status(status_r: &OwnedFd, first: &[u8]) -> String {
    let mut msg = first.to_vec();
    if let Ok(fd) = status_r.try_clone() {
        let _ = fs::File::from(fd).read_to_end(&mut msg);
    }
    String::from_utf8_lossy(&msg).into_owned()
}

/// The forked workload, blocked before exec until the host's Start frame.
pub(crate) struct Workload {
    pid: libc::pid_t,
    /// Writing one byte lets the workload exec.
    start_w: Option<OwnedFd>,
    status_r: OwnedFd,
    /// Its stdio, until `supervise` takes it.
    proc: Option<Proc>,
    /// What exec'd processes inherit: the sandbox part of the config, the seccomp programs.
    cfg: GuestConfig,
    seccomp: Option<Vec<Vec<u8>>>,
}

impl Workload {
    pub(crate) fn spawn(cfg: &GuestConfig, seccomp: Option<Vec<Vec<u8>>>) -> Res<Self> {
        let spawned = spawn(cfg, seccomp.clone(), None, None)?;
        // The child tells us it is ready with one b'R' on the status pipe, or sends an error.
        let mut b = [0u8; 1];
        // SAFETY: read into a 1-byte buffer.
        let n = unsafe { libc::read(spawned.status_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n == 1 && b[0] == b'R' {
            return Ok(Workload {
                pid: spawned.proc.pid,
                start_w: spawned.start_w,
                status_r: spawned.status_r,
                proc: Some(spawned.proc),
                cfg: cfg.clone(),
                seccomp,
            });
        }
        let msg = read_status(&spawned.status_r, if n == 1 { &b[..] } else { &[] });
        let pid = spawned.proc.pid;
        drop(spawned);
        let mut st = 0;
        // SAFETY: reap our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        Err(if msg.is_empty() {
            "the workload process died while being set up".into()
        } else {
            msg
        })
    }

    /// `hako exec`: start one more process in the workload's root and mount namespace. Blocks
    /// until it has exec'd or failed (a short wait: set-up and execve in the guest).
    fn exec(&self, id: u32, json: &str) -> Res<Proc> {
        let p: proto::ProcessSpec =
            serde_json::from_str(json).map_err(|e| format!("exec request: {e}"))?;
        let cfg = self.cfg.with_process(p);
        let ns_path = format!("/proc/{}/ns/mnt", self.pid);
        let ns: OwnedFd = fs::File::open(&ns_path)
            .map_err(|e| format!("open {ns_path}: {e}"))?
            .into();
        let s = spawn(&cfg, self.seccomp.clone(), Some(id), Some(&ns))?;
        let msg = read_status(&s.status_r, &[]);
        if msg.is_empty() {
            return Ok(s.proc);
        }
        let mut st = 0;
        // SAFETY: reap our child, which failed before exec.
        unsafe { libc::waitpid(s.proc.pid, &mut st, 0) };
        Err(msg)
    }

    /// Report ready, wait for Start, relay until the workload exits; send its status.
    pub(crate) fn supervise(mut self, mut port: fs::File) -> Res<()> {
        let _ = send(&mut port, None, steps());
        let _ = send(&mut port, None, boot_times());
        send(&mut port, None, Frame::Ready)?;
        let sfd = sigchld_fd()?;
        let mut reader = FrameReader::new();
        let mut exec_error: Option<String> = None;
        let mut port_open = true;
        let status_r = self.status_r.try_clone().map_err(|e| e.to_string())?;
        let mut status_open = true;
        // procs[0] is the workload; the rest are exec'd processes.
        let mut procs = vec![self.proc.take().expect("the workload's stdio")];
        let mut buf = vec![0u8; 32 * 1024];
        while procs[0].status.is_none() {
            let mut pfds: Vec<libc::pollfd> = vec![];
            let mut push = |fd: RawFd, ev: i16| {
                pfds.push(libc::pollfd {
                    fd,
                    events: ev,
                    revents: 0,
                });
            };
            push(sfd.as_raw_fd(), libc::POLLIN);
            push(if port_open { port.as_raw_fd() } else { -1 }, libc::POLLIN);
            push(
                if status_open {
                    status_r.as_raw_fd()
                } else {
                    -1
                },
                libc::POLLIN,
            );
            for p in &procs {
                let fd = |f: &Option<OwnedFd>| f.as_ref().map_or(-1, |f| f.as_raw_fd());
                let out = if p.stdin_buf.is_empty() {
                    0
                } else {
                    libc::POLLOUT
                };
                push(fd(&p.stdout_r), libc::POLLIN);
                push(fd(&p.stderr_r), libc::POLLIN);
                push(fd(&p.pty), libc::POLLIN | out);
                push(if out != 0 { fd(&p.stdin_w) } else { -1 }, out);
            }
            // SAFETY: pfds is a valid array.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
            if r < 0 {
                if errno().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(format!("poll: {}", errno()));
            }
            // Host frames.
            if pfds[1].revents != 0 {
                match port.read(&mut buf) {
                    Ok(0) | Err(_) => port_open = false,
                    Ok(n) => reader.push(&buf[..n]),
                }
                loop {
                    match reader.next_frame() {
                        Ok(Some(f)) => self.host_frame(f, &mut procs, &mut port)?,
                        Ok(None) => break,
                        Err(e) => return Err(format!("agent port: {e}")),
                    }
                }
            }
            // The workload's exec failure message.
            if pfds[2].revents != 0 {
                let mut m = vec![0u8; 4096];
                // SAFETY: read into our buffer.
                let n = unsafe { libc::read(status_r.as_raw_fd(), m.as_mut_ptr().cast(), m.len()) };
                if n > 0 {
                    m.truncate(n as usize);
                    exec_error
                        .get_or_insert_with(String::new)
                        .push_str(&String::from_utf8_lossy(&m));
                } else {
                    status_open = false;
                }
            }
            for (i, p) in procs.iter_mut().enumerate() {
                let rev = |k: usize| pfds.get(3 + 4 * i + k).map_or(0, |f| f.revents);
                if rev(0) != 0 {
                    relay(&mut p.stdout_r, &mut port, &mut buf, p.tag, true)?;
                }
                if rev(1) != 0 {
                    relay(&mut p.stderr_r, &mut port, &mut buf, p.tag, false)?;
                }
                if rev(2) & (libc::POLLIN | libc::POLLHUP) != 0 {
                    relay(&mut p.pty, &mut port, &mut buf, p.tag, true)?;
                }
                p.feed_stdin();
            }
            if pfds[0].revents != 0 {
                drain_signalfd(&sfd);
                for (pid, st) in reap_all(false) {
                    if let Some(p) = procs.iter_mut().find(|p| p.pid == pid) {
                        p.status = Some(st);
                    }
                }
            }
            // Exec'd processes that ended: what they wrote is in their pipes already.
            let mut i = 1;
            while i < procs.len() {
                if let Some(st) = procs[i].status {
                    let mut p = procs.remove(i);
                    p.drain(&mut port, &mut buf)?;
                    send(&mut port, p.tag, Frame::Exit(st))?;
                } else {
                    i += 1;
                }
            }
        }
        // The workload is gone: stop everything it left behind (exec'd processes too), reap
        // them all, then flush their output.
        // SAFETY: kill(-1) from pid 1 signals every other process.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        for (pid, st) in reap_all(true) {
            if let Some(p) = procs.iter_mut().find(|p| p.pid == pid) {
                p.status.get_or_insert(st);
            }
        }
        for p in procs.iter_mut() {
            for fd in [&p.stdout_r, &p.stderr_r, &p.pty].into_iter().flatten() {
                // SAFETY: fcntl on our fd.
                unsafe {
                    let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
                }
            }
            p.drain(&mut port, &mut buf)?;
        }
        for p in procs.iter().skip(1) {
            let st = p.status.unwrap_or(ExitStatus::Signaled(libc::SIGKILL));
            send(&mut port, p.tag, Frame::Exit(st))?;
        }
        let mut status = procs[0].status.expect("loop ends with a status");
        if let Some(e) = exec_error {
            send(&mut port, None, Frame::Error(e))?;
            status = ExitStatus::Exited(127);
        }
        send(&mut port, None, Frame::Exit(status))
    }

    /// One frame from the host.
    fn host_frame(&mut self, f: Frame, procs: &mut Vec<Proc>, port: &mut fs::File) -> Res<()> {
        let (tag, f) = match f {
            Frame::Tagged(id, inner) => (Some(id), *inner),
            f => (None, f),
        };
        if let (Some(id), Frame::Exec(json)) = (tag, &f) {
            match self.exec(id, json) {
                Ok(p) => {
                    procs.push(p);
                    send(port, tag, Frame::Ready)?;
                }
                Err(e) => send(port, tag, Frame::Error(e))?,
            }
            return Ok(());
        }
        let Some(p) = procs.iter_mut().find(|p| p.tag == tag) else {
            // An exec that has ended already: nothing to deliver to.
            return Ok(());
        };
        match f {
            Frame::Start if tag.is_none() => {
                if let Some(w) = self.start_w.take() {
                    // SAFETY: write one byte to our pipe.
                    unsafe { libc::write(w.as_raw_fd(), b"S".as_ptr().cast(), 1) };
                }
            }
            Frame::Stdin(d) => p.stdin_buf.extend_from_slice(&d),
            Frame::StdinEof => p.stdin_eof = true,
            Frame::Signal(s) => {
                // SAFETY: signal our child.
                unsafe { libc::kill(p.pid, s) };
            }
            Frame::SignalAll(s) if tag.is_none() => {
                // SAFETY: from pid 1, kill(-1) reaches every other process.
                unsafe { libc::kill(-1, s) };
            }
            Frame::Winsize(r, c) => {
                if let Some(t) = &p.pty {
                    set_winsize(t.as_raw_fd(), r, c);
                }
            }
            _ => {}
        }
        p.feed_stdin();
        Ok(())
    }
}

/// Reap children: those that have ended (`block` false), or every child until none is left
/// (`block` true, after they were all killed).
pub(crate) fn reap_all(block: bool) -> Vec<(libc::pid_t, ExitStatus)> {
    let mut out = vec![];
    loop {
        let mut st = 0;
        // SAFETY: waitpid on our children.
        let r = unsafe { libc::waitpid(-1, &mut st, if block { 0 } else { libc::WNOHANG }) };
        if r <= 0 {
            if r < 0 && errno().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return out;
        }
        out.push((
            r,
            if libc::WIFSIGNALED(st) {
                ExitStatus::Signaled(libc::WTERMSIG(st))
            } else {
                ExitStatus::Exited(libc::WEXITSTATUS(st))
            },
        ));
    }
}

pub(crate) fn sigchld_fd() -> Res<OwnedFd> {
    // SAFETY: signal mask and signalfd set-up on this (single-threaded) process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(format!("signalfd: {}", errno()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

pub(crate) fn drain_signalfd(fd: &OwnedFd) {
    let mut b = [0u8; 128];
    // SAFETY: read into our buffer.
    while unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) } > 0 {}
}
