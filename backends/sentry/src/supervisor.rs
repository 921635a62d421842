//! The sentry process: forked by `create`, it builds the sandbox's root (a private mount
//! namespace with the overlay), waits on the start gate, forks the workload's first process as a
//! tracee, confines itself with its own seccomp filter, and runs the kernel until the workload's
//! init exits. Its exit status is the workload's.

use crate::event_loop::EventLoop;
use crate::kernel::config::Config;
use crate::kernel::fdtable::FdTable;
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::setup::{find_program, stdio_file};
use crate::vfs::Vfs;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use std::cell::RefCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};

/// Host pid of the workload's init, for the signal forwarder.
static INIT_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let p = INIT_PID.load(Ordering::Relaxed);
    if p > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(p, sig) };
    }
}

pub struct Plan<'a> {
    /// The container id (the root sentry's host id for the workload is derived from it).
    pub id: String,
    /// Rootless (`--rootless`, or not root in the initial user namespace): the sentry works in
    /// a user namespace of its own.
    pub rootless: bool,
    pub cfg: Config,
    pub spec: &'a Spec,
    pub rootfs: PathBuf,
    pub dir: PathBuf,
    pub start_fifo: PathBuf,
    pub console_socket: Option<PathBuf>,
}

fn cpath(p: &Path) -> Result<CString> {
    Ok(CString::new(p.as_os_str().as_encoded_bytes())?)
}

fn mount(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let s = CString::new(src)?;
    let t = cpath(target)?;
    let f = CString::new(fstype)?;
    let d = data.map(CString::new).transpose()?;
    // SAFETY: mount(2) with valid C strings.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            flags,
            d.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc != 0 {
        bail!(
            "mount {fstype} on {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// A directory of the sentry's own, with its mode set explicitly (not left to the umask).
fn own_dir(d: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(d) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", d.display())),
    }
    let md = std::fs::symlink_metadata(d)?;
    if !md.is_dir() {
        bail!("{} is not a directory", d.display());
    }
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", d.display()))
}

/// The root built for the sandbox.
pub struct Root {
    pub vfs: Vfs,
    /// The sentry's state directory (`<state>/sentry`), opened before any mount existed.
    pub state: OwnedFd,
    /// The host id the workload runs as (and its reservation).
    pub ids: crate::identity::HostIds,
}

/// `/dev/shm`: a tmpfs of the sandbox's own (nosuid, nodev, noexec, 1777, 64 MiB as runc's
/// default spec and Docker give it),
/// unless the spec mounts something there (an engine's pod-shared shm), which then goes on it.
/// False when there can be no mount point: the image's /dev cannot be written (rootless, a /dev
/// owned by an id the sentry's namespace does not map: EOVERFLOW on copy-up). The sandbox then
/// has no /dev/shm, as before there was one, and a spec mount there is skipped as it was then.
fn shm(vfs: &Vfs, spec: &hako_contract::Spec) -> Result<bool> {
    let Ok(target) = crate::mounts::resolve_in_root(vfs, crate::vfs::SHM, true) else {
        return Ok(false);
    };
    let spec_has = spec.mounts().as_ref().is_some_and(|ms| {
        ms.iter()
            .any(|m| crate::vfs::normalize(&m.destination().to_string_lossy()) == crate::vfs::SHM)
    });
    if !spec_has {
        let tree = crate::mounts::new_tmpfs(
            &[("mode", "1777"), ("size", "64m")],
            crate::mounts::ALWAYS | libc::MOUNT_ATTR_NOEXEC,
        )
        .context("tmpfs at /dev/shm")?;
        vfs.own_tmpfs(&tree).context("tmpfs at /dev/shm")?;
        crate::mounts::attach(&tree, &target).context("tmpfs at /dev/shm")?;
    }
    Ok(true)
}

/// `/dev/mqueue`: the mqueue file system of the sandbox's IPC namespace (the queues `mq_open`
/// reaches: `syscalls/mqueue.rs`), nosuid, nodev, noexec; a spec's mqueue mount there is this
/// same one. None where no mount point can be made (see `shm`). Rootless, an IPC namespace the
/// spec names by path belongs to a user namespace above the sentry's, where it may not mount
/// that namespace's mqueue: then there is no /dev/mqueue (the queues still work through
/// `mq_open`).
fn mqueue(vfs: &Vfs, rootless: bool) -> Result<()> {
    let Ok(target) = crate::mounts::resolve_in_root(vfs, crate::vfs::MQUEUE, true) else {
        return Ok(());
    };
    let attrs = crate::mounts::ALWAYS | libc::MOUNT_ATTR_NOEXEC;
    match crate::mounts::new_fs("mqueue", &[], attrs) {
        Ok(tree) => crate::mounts::attach(&tree, &target).context("mqueue at /dev/mqueue"),
        Err(_) if rootless => Ok(()),
        Err(e) => Err(e.context("mqueue at /dev/mqueue")),
    }
}

/// Private mount namespace + overlay root + the spec's bind and tmpfs mounts (each resolved
/// inside the root, see `mounts`) + a missing `process.cwd`; then, for `root.readonly`, the root
/// made read-only.
pub fn build_root(plan: &Plan) -> Result<Root> {
    // The sentry's own /proc and state directory, taken while no mount of the spec exists; from
    // here on both are used by descriptor only.
    crate::hostproc::init().context("the sentry's /proc")?;
    own_dir(&plan.dir, 0o700)?;
    let state = {
        let c = cpath(&plan.dir)?;
        // SAFETY: open of our own state directory.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            bail!(
                "opening {}: {}",
                plan.dir.display(),
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: a fresh descriptor.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    // The spec's network/ipc/uts namespaces by path first, while we are in the user namespace
    // that owns them (see namespaces.rs); the others are made new below.
    let fresh = crate::namespaces::join(plan.spec)?;
    // Rootless: a user namespace of our own first (root in it, the caller outside), which owns
    // the namespaces below, so the set-up works with no host privilege.
    let ids = if plan.rootless {
        crate::identity::enter_own_userns()?
    } else {
        crate::identity::reserve(&plan.id).context("reserving the workload's host id")?
    };
    // A network namespace always, the spec's or a new one: the sandbox never shares the host's
    // network (rootless, the spec may ask for none; this one is inside our own user namespace).
    // SAFETY: unshare in the single-threaded sentry.
    if unsafe { libc::unshare(libc::CLONE_NEWNS | fresh) } != 0 {
        bail!(
            "unshare(mount, uts, ipc, net): {}",
            std::io::Error::last_os_error()
        );
    }
    if fresh & libc::CLONE_NEWNET != 0 {
        crate::namespaces::new_netns_setup()?;
    }
    mount(
        "none",
        Path::new("/"),
        "",
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    // <state>/sentry, upper/ and work/ are 0700: no other host user reaches the upper layer, where
    // whatever the workload writes (a setuid-root binary, say) lands. The layer itself is
    // upper/root, 0755: overlayfs shows its attributes as the sandbox's `/`, which the workload's
    // (unprivileged) native execve must be able to search.
    let upper = plan.dir.join("upper");
    let layer = upper.join("root");
    let work = plan.dir.join("work");
    let merged = plan.dir.join("merged");
    own_dir(&upper, 0o700)?;
    own_dir(&layer, 0o755)?;
    own_dir(&work, 0o700)?;
    own_dir(&merged, 0o700)?;
    let lower = plan.rootfs.to_str().context("rootfs path is not UTF-8")?;
    if lower.contains(',') || lower.contains(':') {
        bail!("the rootfs path {lower:?} contains ',' or ':', which overlayfs cannot take");
    }
    // Copy-on-write over the bundle rootfs, for a read-only root too: the mount points and the
    // cwd the spec needs are made in the upper layer (the bundle is never written), and the
    // overlay is then made read-only as a whole (below).
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        layer.display(),
        work.display()
    );
    mount(
        "hako-sentry",
        &merged,
        "overlay",
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&opts),
    )?;
    let mut vfs = Vfs::new(merged.to_str().context("state dir is not UTF-8")?)
        .context("opening the sandbox root")?;
    let shm_ok = shm(&vfs, plan.spec)?;
    mqueue(&vfs, plan.rootless)?;
    for m in plan
        .spec
        .mounts()
        .as_ref()
        .map(|v| v.as_slice())
        .unwrap_or(&[])
    {
        let dest = m.destination().to_string_lossy().to_string();
        let typ = m.typ().clone().unwrap_or_default();
        let opts = m.options().clone().unwrap_or_default();
        let has = |o: &str| opts.iter().any(|x| x == o);
        let is_bind = typ == "bind" || has("bind") || has("rbind");
        if crate::vfs::is_synthetic(&crate::vfs::normalize(&dest))
            || crate::vfs::normalize(&dest) == crate::vfs::MQUEUE
        {
            continue; // /proc, /sys, /dev and /dev/mqueue are the sentry's own (see check())
        }
        if !shm_ok && crate::vfs::normalize(&dest) == crate::vfs::SHM {
            continue; // no mount point can be made (see shm())
        }
        let mut attrs = crate::mounts::ALWAYS;
        if has("ro") {
            attrs |= libc::MOUNT_ATTR_RDONLY;
        }
        if has("noexec") {
            attrs |= libc::MOUNT_ATTR_NOEXEC;
        }
        if is_bind {
            let src = m.source().clone().context("bind mount without a source")?;
            let src = src.to_str().context("bind mount source is not UTF-8")?;
            let rec = has("rbind");
            let tree = crate::mounts::clone_tree(src, rec)?;
            crate::mounts::set_attrs(tree.as_raw_fd(), attrs, rec)
                .with_context(|| format!("bind mount at {dest}"))?;
            let target = crate::mounts::resolve_in_root(&vfs, &dest, Path::new(src).is_dir())
                .with_context(|| format!("mount destination {dest}"))?;
            crate::mounts::attach(&tree, &target)
                .with_context(|| format!("bind mount at {dest}"))?;
        } else if typ == "tmpfs" {
            let mut params = vec![("mode", "1777")];
            for o in &opts {
                if let Some((k, v)) = o.split_once('=') {
                    match k {
                        "mode" => params[0].1 = v,
                        "size" | "nr_inodes" => params.push((k, v)),
                        _ => {}
                    }
                }
            }
            let tree = crate::mounts::new_tmpfs(&params, attrs)
                .with_context(|| format!("tmpfs at {dest}"))?;
            vfs.own_tmpfs(&tree)
                .with_context(|| format!("tmpfs at {dest}"))?;
            let target = crate::mounts::resolve_in_root(&vfs, &dest, true)
                .with_context(|| format!("mount destination {dest}"))?;
            crate::mounts::attach(&tree, &target).with_context(|| format!("tmpfs at {dest}"))?;
        }
    }
    // A devpts instance of the sandbox's own, never attached anywhere: /dev/ptmx and /dev/pts
    // open its nodes through the mount's descriptor. Without one (a kernel or user namespace
    // that refuses it) the sandbox has no ptys: /dev/ptmx is ENOENT.
    vfs.pts = crate::mounts::new_fs(
        "devpts",
        &[("ptmxmode", "0666"), ("mode", "0620")],
        // Not nodev: its nodes are devices (the workload never reaches the mount itself).
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC,
    )
    .ok();
    // runc creates a missing cwd; so do we (in the upper layer), inside the root.
    let cwd = crate::vfs::normalize(&plan.cfg.cwd);
    if !crate::vfs::is_synthetic(&cwd) {
        match vfs.stat(&cwd, true) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
            _ => {
                crate::mounts::resolve_in_root(&vfs, &cwd, true)
                    .with_context(|| format!("process.cwd {cwd}"))?;
            }
        }
    }
    if plan.cfg.readonly_root {
        // The root mount alone (the spec's own mounts keep their options). The workload writes
        // through the sentry's host calls on this mount, so the kernel answers them with EROFS.
        let root = vfs.root.as_raw_fd();
        crate::mounts::set_attrs(root, libc::MOUNT_ATTR_RDONLY, false)
            .context("making the root read-only (root.readonly)")?;
        if !crate::mounts::is_readonly(root)? {
            bail!("root.readonly is set but the sandbox root could not be made read-only");
        }
    }
    Ok(Root { vfs, state, ids })
}

/// Everything up to the start gate. Errors here are reported to `create`.
pub struct Prepared {
    pub vfs: Vfs,
    pub program: String,
    pub slave: Option<OwnedFd>,
    pub filter: Vec<libc::sock_filter>,
    pub oci_filter: Option<hako_linux::seccomp::Compiled>,
    pub own_filter: seccompiler::BpfProgram,
    /// The sentry's state directory, by descriptor (for the stats file).
    pub state: OwnedFd,
    pub ids: crate::identity::HostIds,
}

pub fn prepare(plan: &Plan, oci_filter: Option<hako_linux::seccomp::Compiled>) -> Result<Prepared> {
    let Root { vfs, state, ids } = build_root(plan)?;
    let host = CString::new(plan.cfg.hostname.clone())?;
    // SAFETY: in our own UTS namespace.
    unsafe { libc::sethostname(host.as_ptr(), plan.cfg.hostname.len()) };
    let program = find_program(&vfs, &plan.cfg)?;
    match vfs.stat(&program, true) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {}
        Ok(_) => bail!("{:?} in the rootfs is not a regular file", plan.cfg.args[0]),
        Err(e) => bail!(
            "executable {:?} not found in the rootfs: {}",
            plan.cfg.args[0],
            std::io::Error::from_raw_os_error(e)
        ),
    }
    let slave = match (&plan.console_socket, plan.cfg.terminal) {
        (Some(sock), true) => Some(hako_contract::console::send_pty_master(sock)?),
        (None, true) => bail!("process.terminal is true but no --console-socket was given"),
        _ => None,
    };
    Ok(Prepared {
        vfs,
        program,
        slave,
        filter: crate::syscalls::trap_filter(plan.cfg.platform.hybrid()),
        oci_filter,
        own_filter: crate::filter::sentry_filter()?,
        state,
        ids,
    })
}

/// After the start gate: run the workload. Never returns.
pub fn run(plan: Plan, mut prep: Prepared) -> ! {
    // Held until the sentry leaves: no other sandbox takes the workload's host id meanwhile.
    let id_lock = prep.ids.take_lock();
    let result = run_inner(plan, prep);
    if let Some(l) = id_lock {
        l.release();
    }
    let code = match result {
        Ok((false, code)) => code,
        Ok((true, sig)) => hako_contract::signal::die_like(sig),
        Err(e) => {
            eprintln!("hako-sentry: {e:#}");
            127
        }
    };
    // SAFETY: leave without running destructors of a forked process.
    unsafe { libc::_exit(code) }
}

fn run_inner(plan: Plan, prep: Prepared) -> Result<(bool, i32)> {
    let cfg = Rc::new(plan.cfg.clone());
    // Prepare the exec arguments before forking.
    let prog = CString::new(prep.program.clone())?;
    let argv: Vec<CString> = cfg
        .args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = cfg
        .env
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // The root by descriptor (the overlay mount itself), not by its path in the state dir.
    let root_fd = prep.vfs.root.as_raw_fd();
    let cwd = CString::new(cfg.cwd.clone())?;
    let rlimits: Vec<(u32, libc::rlimit)> = plan
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.rlimits().clone())
        .unwrap_or_default()
        .iter()
        .map(|l| {
            hako_linux::process::rlimit_resource(l.typ()).map(|r| {
                (
                    r,
                    libc::rlimit {
                        rlim_cur: l.soft(),
                        rlim_max: l.hard(),
                    },
                )
            })
        })
        .collect::<Result<_>>()?;

    // Signals: SIGCHLD through a signalfd (to wake the loop while tasks are parked), the rest
    // forwarded to the workload's init.
    // SAFETY: signal set-up in the single-threaded sentry.
    let sigfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
    };
    if sigfd < 0 {
        bail!("signalfd: {}", std::io::Error::last_os_error());
    }

    let mut plat = cfg.platform.build(prep.filter.clone());
    let slave_fd = prep.slave.as_ref().map(|s| s.as_raw_fd());
    let rootless = plan.rootless;
    // Root: the workload (and, after set-up, the sentry) take the sandbox's host id. Rootless the
    // sentry's namespace maps nothing else: both stay the caller.
    let outer = prep.ids.outer;
    // SAFETY: geteuid cannot fail.
    let switch_ids = outer != unsafe { libc::geteuid() };
    // `hako exec`'s spawner (see exec/), forked while the sentry still holds what it needs to
    // enter the sandbox's namespaces, and before the sandbox's pid namespace exists.
    let mut spawner = crate::exec::Spawner::fork(&crate::exec::SpawnerPlan {
        root_fd,
        outer,
        switch_ids,
        rootless,
        plat: &plat,
        oci_filter: prep.oci_filter.as_ref(),
    })?;
    // The exec socket, made once the start gate opened (before, `hako exec` finds none and says
    // the sandbox is not started); connections wait in its backlog until the kernel loop runs.
    // Bound by path now, while /proc is still the host's (a long path goes through
    // /proc/self/fd), before the workload mounts its own procfs there.
    let listener =
        crate::exec::bind(&plan.dir.join(crate::exec::EXEC_SOCK)).context("the exec socket")?;
    // The workload gets a pid namespace of its own: its first process is pid 1 there, and the
    // pids it passes to and gets from the host kernel are the virtual ones (see Kernel).
    // The waker thread of the notification platforms (platform/waker.rs): made now, while a
    // thread can still be made; it waits in a futex until the sentry confines it.
    let waker = if cfg.platform.hybrid() {
        Some(crate::platform::waker::Waker::start().context("starting the sentry's waker thread")?)
    } else {
        None
    };
    // SAFETY: unshare (it affects the children the sentry forks next).
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        bail!(
            "unshare(pid namespace): {}",
            std::io::Error::last_os_error()
        );
    }
    // Two pipes to hand the child's new user namespace over: it says when it has made it, the
    // sentry answers once the id maps are written.
    let (c2p, p2c) = (pipe()?, pipe()?);
    // SAFETY: fork; the child only makes syscalls before execve (the waker thread, if any,
    // waits in a futex and holds no lock).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        // The workload's first process. Everything below runs before it is traced + filtered.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::setsid();
            if let Some(s) = slave_fd {
                libc::ioctl(s, libc::TIOCSCTTY, 0);
            }
            for (res, rl) in &rlimits {
                libc::setrlimit(*res as _, rl);
            }
            // The sandbox's own procfs over /proc in the sentry's mount namespace (the sentry
            // reads the host's through the descriptor it took first): what an engine that
            // looks into the sandbox's mount namespace (`podman top`) lists is the sandbox's
            // processes by their virtual pids. Best effort: a host whose /proc is partly
            // masked (inside rootless podman) refuses it, and nothing else depends on it.
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            );
            if libc::fchdir(root_fd) != 0 {
                libc::_exit(126);
            }
            // Become the sandbox's host id before making the user namespace: the namespace's
            // owner is then that id, which the sentry also takes once set-up is done (see
            // identity.rs). CAP_SYS_ADMIN is kept for the unshare alone, so that it counts as a
            // privileged one (hosts that restrict unprivileged user namespaces allow it).
            if switch_ids
                && crate::identity::become_with(outer, 1 << crate::identity::CAP_SYS_ADMIN).is_err()
            {
                libc::_exit(126);
            }
            // A user namespace of its own (made before the chroot: the kernel refuses one to a
            // chrooted process); every capability it had in the host's namespace is gone.
            let mut b = [0u8; 1];
            if libc::unshare(libc::CLONE_NEWUSER) != 0
                || libc::write(c2p.1.as_raw_fd(), b.as_ptr().cast(), 1) != 1
                || libc::read(p2c.0.as_raw_fd(), b.as_mut_ptr().cast(), 1) != 1
            {
                libc::_exit(126);
            }
            if libc::chroot(c".".as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                libc::_exit(126);
            }
            libc::chdir(cwd.as_ptr());
            // The workload holds no host descriptors at all: its fds are the sentry's table.
            libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
            if !crate::identity::become_workload(rootless) {
                libc::_exit(126);
            }
            // The spec's seccomp profile, if any, is stacked under the trap filter: a syscall it
            // refuses fails on the host before the sentry sees it (the stricter action wins).
            let mut oci = || match &prep.oci_filter {
                Some(f) => hako_linux::seccomp::try_apply(f)
                    .map_err(|(i, e)| anyhow::anyhow!("seccomp profile filter {i}: errno {e}")),
                None => Ok(()),
            };
            if plat.child_prepare(&mut oci).is_err() {
                libc::_exit(126);
            }
            libc::execve(prog.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
            // The sentry refused the execve: report through the (virtual) stderr.
            let msg = b"hako-sentry: cannot execute the container process\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    drop(c2p.1);
    drop(p2c.0);
    let mut b = [0u8; 1];
    // SAFETY: read/write on our own pipe ends.
    if unsafe { libc::read(c2p.0.as_raw_fd(), b.as_mut_ptr().cast(), 1) } != 1 {
        bail!("the workload's first process died making its user namespace");
    }
    crate::identity::map_workload(pid, &prep.ids).context("mapping the workload's ids")?;
    // SAFETY: as above.
    if unsafe { libc::write(p2c.1.as_raw_fd(), b.as_ptr().cast(), 1) } != 1 {
        bail!("the workload's first process died before its id maps were written");
    }
    drop((c2p.0, p2c.1));
    // The spawner enters the sandbox's pid namespace and keeps the workload's user namespace,
    // then drops every privilege. Should that fail, the workload runs and exec says why not.
    if let Err(e) = spawner.arm(pid) {
        eprintln!("hako-sentry: exec will be unavailable: {e:#}");
    }
    INIT_PID.store(pid, Ordering::Relaxed);
    // The one list of forwarded signals (hako_contract::signal): what `hako run` forwards to
    // the sentry, the sentry forwards to the workload's init.
    for s in hako_contract::signal::forwarded() {
        // SAFETY: install an async-signal-safe forwarder.
        unsafe { libc::signal(s, forward as *const () as libc::sighandler_t) };
    }
    plat.attach(pid)?;

    let mut fds = FdTable::new(cfg.nofile);
    for i in 0..3 {
        let f = stdio_file(i, slave_fd)?;
        fds.set(i, Rc::new(RefCell::new(f)), false)
            .map_err(std::io::Error::from_raw_os_error)?;
    }
    let console = match slave_fd {
        Some(s) => Some(stdio_file(0, Some(s))?),
        None => None,
    };
    drop(prep.slave);
    let mut k = Kernel::new(plat, cfg.clone(), prep.vfs, sigfd);
    k.vfs.console = console.map(|mut f| {
        f.path = "/dev/tty".into();
        Rc::new(RefCell::new(f))
    });
    k.add_init(pid, fds);
    let hub = crate::exec::Hub::new(
        listener,
        spawner,
        plan.spec.clone(),
        plan.id.clone(),
        cfg.caps.bnd,
    );
    let mut sentry = EventLoop::new(k, Some(hub));

    // From here on the sentry confines itself: the sandbox's host id (root: files are still
    // made as root, through fsuid 0), the file capabilities and nothing else (it owns the
    // workload's user namespace, which is all ptrace, process_vm_* and kill on the workload
    // need), then its own seccomp filter.
    if switch_ids {
        crate::identity::sentry_becomes(outer)?;
    }
    crate::identity::drop_sentry_caps()?;
    // SAFETY: prctl on ourselves.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    // The waker thread (platform/waker.rs) drops all of its own, and gets the filter with the
    // main thread.
    if let Some(mut w) = waker {
        w.confine().context("confining the sentry's waker thread")?;
        sentry.set_waker(w);
    }
    seccompiler::apply_filter_all_threads(&prep.own_filter)
        .context("installing the sentry's own filter")?;

    let status = sentry.run();
    let k = sentry.k;
    // SAFETY: unlinkat on our own state directory's descriptor.
    unsafe { libc::unlinkat(prep.state.as_raw_fd(), c"exec.sock".as_ptr(), 0) };
    let status = status?;
    if cfg.stats {
        let j = serde_json::json!({
            "emulated": k.stats.emulated,
            "refused": k.stats.refused,
            "mmap_emulated": k.stats.mmap_emulated,
            "parked_retries": k.stats.retries,
            "platform": cfg.platform.name(),
            "status": {"signaled": status.0, "code": status.1},
        });
        write_stats(
            &prep.state,
            &serde_json::to_vec_pretty(&j).unwrap_or_default(),
        );
    }
    Ok(status)
}

/// `<state>/sentry/stats.json`, created on the state directory's descriptor (never a path from
/// the spec; a symlink planted there is not followed).
fn write_stats(state: &OwnedFd, data: &[u8]) {
    use std::io::Write;
    // SAFETY: openat on our own directory descriptor.
    let fd = unsafe {
        libc::openat(
            state.as_raw_fd(),
            c"stats.json".as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd >= 0 {
        // SAFETY: a fresh descriptor.
        let _ = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }).write_all(data);
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut p = [0i32; 2];
    // SAFETY: pipe2 into a local array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe2: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}
