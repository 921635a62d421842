//! `exec`: one more process in a running container. An intermediate joins the init's cgroup
//! and namespaces, then clones the process with CLONE_PARENT so it is the caller's child (and,
//! having been cloned after the pid namespace join, inside the container's pid namespace).

use crate::namespaces;
use crate::process::{self, ProcessPlan};
use crate::sync::{self, Channel, Msg};
use crate::{sec, Data};
use anyhow::{anyhow, bail, Context, Result};
use hako_contract::host_process::Report;
use hako_contract::{ExecRequest, Execed, Sandbox};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

pub fn exec(sb: &Sandbox, req: &ExecRequest) -> Result<Execed> {
    if !sb.alive {
        bail!("container {} is not running", sb.id);
    }
    let data = Data::from_sandbox(sb)?;
    if let Some(cg) = &data.cgroup {
        if cg.is_frozen() {
            bail!("container {} is paused", sb.id);
        }
    }
    let plan = ProcessPlan::from_spec(req.process)?;
    if plan.terminal && req.console_socket.is_none() {
        bail!("process.terminal is true but no --console-socket was given");
    }
    if plan.apparmor.is_some() && !process::apparmor_enabled() {
        bail!("process.apparmorProfile is set but AppArmor is not enabled on this host");
    }
    let seccomp = match sb.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(sec::compile(s)?),
        None => None,
    };
    let nss = namespaces::of_process(sb.pid)?;
    // The init's root, to chroot into after the mount namespace join (it differs from the
    // namespace's root when the container was made with --no-pivot).
    let root = nix::fcntl::open(
        format!("/proc/{}/root", sb.pid).as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("opening /proc/{}/root", sb.pid))?;
    // Opened here, before any join: the process uses /proc only through it (see HostProc).
    let proc = process::HostProc::open()?;
    let (parent, child) = sync::pair()?;
    // The exec'd process runs hako's code inside the container until its execve: never
    // dumpable there (CVE-2019-5736, see `process::set_dumpable`). Set before the clone, so the
    // intermediate and the process inherit it with no window.
    process::set_dumpable(false);
    let mid = process::with_oom_score_adj(plan.oom_score_adj, || namespaces::clone(0))?;
    if mid == 0 {
        drop(parent);
        let mut keep: Vec<i32> = nss.iter().map(|(fd, _, _)| fd.as_raw_fd()).collect();
        keep.push(root.as_raw_fd());
        keep.push(child.raw());
        keep.push(proc.as_raw_fd());
        hako_linux::process::close_cloexec_fds(&keep);
        hako_linux::process::reset_signals();
        let way_in = WayIn {
            nss: &nss,
            root: &root,
            proc: &proc,
        };
        intermediate(&data, &way_in, &plan, seccomp.as_ref(), req, &child);
    }
    drop(child);
    drop(nss);
    let mut pid = None;
    let r = (|| -> Result<i32> {
        loop {
            match parent.recv()? {
                Some((Msg::Pid(p), _)) => pid = Some(p),
                Some((Msg::PtyMaster, Some(fd))) => {
                    let sock = req.console_socket.context("no console socket")?;
                    hako_contract::console::send_master(sock, &fd)?;
                }
                Some((Msg::Report(Report::Err(e)), _)) => bail!("{e}"),
                Some((m, _)) => bail!("unexpected message {m:?} from the exec process"),
                // Both the intermediate and the process (at execve) closed their ends.
                None => return pid.ok_or_else(|| anyhow!("the exec process exited during set-up")),
            }
        }
    })();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(mid), None);
    match r {
        Ok(p) => Ok(Execed { pid: p }),
        Err(e) => {
            if let Some(p) = pid {
                // SAFETY: plain kill of our own child.
                unsafe { libc::kill(p, libc::SIGKILL) };
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p), None);
            }
            Err(e)
        }
    }
}

fn fail(chan: &Channel, e: anyhow::Error) -> ! {
    let _ = chan.send(&Msg::Report(Report::Err(format!("{e:#}"))));
    // SAFETY: leave the child without running the parent's destructors.
    unsafe { libc::_exit(1) }
}

/// What the intermediate enters the container through, all opened on the host beforehand.
struct WayIn<'a> {
    /// The init's namespaces.
    nss: &'a [(OwnedFd, libc::c_int, PathBuf)],
    /// The init's root.
    root: &'a OwnedFd,
    /// The host's procfs (see `process::HostProc`).
    proc: &'a process::HostProc,
}

fn intermediate(
    data: &Data,
    way_in: &WayIn,
    plan: &ProcessPlan,
    seccomp: Option<&sec::Compiled>,
    req: &ExecRequest,
    chan: &Channel,
) -> ! {
    // The cgroup first, while the host's cgroup file system is still what we see.
    if let Some(cg) = &data.cgroup {
        // SAFETY: getpid cannot fail.
        if let Err(e) = cg.add_pid(unsafe { libc::getpid() }) {
            fail(chan, e);
        }
    }
    for (fd, flag, path) in way_in.nss {
        if let Err(e) = namespaces::setns(fd, *flag, path) {
            fail(chan, e);
        }
    }
    if let Err(e) = nix::unistd::fchdir(way_in.root)
        .and_then(|_| nix::unistd::chroot("."))
        .and_then(|_| nix::unistd::chdir("/"))
    {
        fail(chan, anyhow!("entering the container root: {e}"));
    }
    match namespaces::clone(libc::CLONE_PARENT) {
        Ok(0) => {
            let mut plan = plan.clone();
            process::ensure_home(&mut plan);
            let plan = &plan;
            let exe = match setup(plan, way_in.proc, seccomp, req, chan) {
                Ok(x) => x,
                Err(e) => fail(chan, e),
            };
            process::exec(&exe, plan)
        }
        Ok(pid) => {
            let _ = chan.send(&Msg::Pid(pid));
            // SAFETY: as in `fail`.
            unsafe { libc::_exit(0) }
        }
        Err(e) => fail(chan, e),
    }
}

fn setup(
    plan: &ProcessPlan,
    proc: &process::HostProc,
    seccomp: Option<&sec::Compiled>,
    req: &ExecRequest,
    chan: &Channel,
) -> Result<std::ffi::CString> {
    if plan.terminal {
        let (master, slave, _) = process::open_pty()?;
        chan.send_with_fd(&Msg::PtyMaster, Some(master.as_raw_fd()))?;
        drop(master);
        process::adopt_terminal(&slave)?;
    } else {
        // A session of its own (runc's exec does the same): otherwise the process keeps the
        // caller's controlling terminal and can push input into it with TIOCSTI.
        nix::unistd::setsid().context("setsid")?;
    }
    process::set_rlimits(plan)?;
    process::set_io_priority(plan)?;
    process::chdir(plan)?;
    process::set_apparmor(plan, proc)?;
    let late = plan.seccomp_late_ok();
    if let (Some(c), false) = (seccomp, late) {
        sec::apply(c).context("loading the seccomp filter")?;
    }
    process::become_user(plan)?;
    process::set_no_new_privileges(plan)?;
    process::chdir(plan)?;
    let exe = process::find_executable(plan)?;
    process::keep_fds(req.preserve_fds);
    hako_linux::process::cloexec_fds_from(3 + req.preserve_fds as i32);
    if let (Some(c), true) = (seccomp, late) {
        sec::apply(c).context("loading the seccomp filter")?;
    }
    Ok(exe)
}
