//! `create`: the parent's side (prepare, clone, sync) and the init's side (set up, gate, exec).

use crate::namespaces::{self, NsPlan};
use crate::process::{self, ProcessPlan};
use crate::rootfs::{self, CgroupMounts, MountPlan};
use crate::sync::{self, Channel, Msg};
use crate::{sec, CgroupManager, Data};
use anyhow::{anyhow, bail, Context, Result};
use hako_contract::host_process::Report;
use hako_contract::{hooks, CreateRequest, Created, OciState, Status};
use nix::mount::MsFlags;
use oci_spec::runtime::{Hook, LinuxDevice};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Everything the init needs, prepared before the clone.
pub struct InitPlan {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub annotations: std::collections::HashMap<String, String>,
    pub oci_version: String,
    pub ns: NsPlan,
    pub mounts: Vec<MountPlan>,
    pub root_propagation: Option<MsFlags>,
    pub devices: Vec<LinuxDevice>,
    pub masked: Vec<String>,
    pub readonly: Vec<String>,
    pub root_readonly: bool,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: Vec<(String, String)>,
    pub personality: Option<libc::c_ulong>,
    pub process: ProcessPlan,
    pub fifo: PathBuf,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub console: bool,
    pub create_hooks: Vec<Hook>,
    pub start_hooks: Vec<Hook>,
    pub seccomp: Option<sec::Compiled>,
}

pub fn plan(req: &CreateRequest) -> Result<InitPlan> {
    let spec = req.spec;
    let root = spec.root().as_ref().context("config.json has no root")?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        req.bundle.join(root.path())
    };
    let rootfs =
        std::fs::canonicalize(&rootfs).with_context(|| format!("rootfs {}", rootfs.display()))?;
    let proc_spec = spec
        .process()
        .as_ref()
        .context("config.json has no process")?;
    let process = ProcessPlan::from_spec(proc_spec)?;
    if process.terminal && req.console_socket.is_none() {
        bail!("process.terminal is true but no --console-socket was given");
    }
    let ns = namespaces::plan(spec)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let mounts = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| rootfs::plan_mount(m, req.bundle))
        .collect::<Result<Vec<_>>>()?;
    let root_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => None,
        Some(p) => Some(
            rootfs::propagation_flag(p)
                .with_context(|| format!("unknown rootfsPropagation {p:?}"))?,
        ),
    };
    let personality = match linux.personality() {
        None => None,
        Some(p) => {
            use oci_spec::runtime::LinuxPersonalityDomain as D;
            Some(match p.domain() {
                D::PerLinux => 0,
                D::PerLinux32 => 8,
            })
        }
    };
    let seccomp = match linux.seccomp() {
        Some(s) => Some(sec::compile(s)?),
        None => None,
    };
    let hooks = spec.hooks().clone().unwrap_or_default();
    let mut sysctl: Vec<(String, String)> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctl.sort();
    Ok(InitPlan {
        id: req.id.to_string(),
        bundle: req.bundle.to_path_buf(),
        rootfs,
        annotations: spec.annotations().clone().unwrap_or_default(),
        oci_version: spec.version().clone(),
        mounts,
        root_propagation,
        devices: linux.devices().clone().unwrap_or_default(),
        masked: linux.masked_paths().clone().unwrap_or_default(),
        readonly: linux.readonly_paths().clone().unwrap_or_default(),
        root_readonly: root.readonly().unwrap_or(false),
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
        sysctl,
        personality,
        process,
        fifo: req.start_fifo.to_path_buf(),
        no_pivot: req.no_pivot,
        no_new_keyring: req.no_new_keyring,
        preserve_fds: req.preserve_fds,
        console: req.console_socket.is_some() && proc_spec.terminal().unwrap_or(false),
        create_hooks: hooks.create_container().clone().unwrap_or_default(),
        start_hooks: hooks.start_container().clone().unwrap_or_default(),
        seccomp,
        ns,
    })
}

pub fn create(req: &CreateRequest) -> Result<Created> {
    let plan = plan(req)?;
    // As runc: a user who is not root anywhere can make namespaces only from inside a new user
    // namespace of its own.
    if rootless() && !plan.ns.new_user && !plan.ns.has(libc::CLONE_NEWUSER) {
        bail!("rootless: the container backend needs a user namespace in config.json (linux.namespaces type \"user\" with uid and gid mappings, as `hako spec --rootless` writes)");
    }
    let linux = req.spec.linux().clone().unwrap_or_default();
    // By the rule every backend follows (hako_contract::cgroup); the resources are written
    // below, with the default device rules.
    let cg = hako_contract::cgroup::make(req, hako_contract::cgroup::Need::Always, None)?;
    hako_contract::fault::point("create:cgroup");
    let host_mounts_before = plan
        .root_propagation
        .is_some_and(|p| p.contains(MsFlags::MS_SHARED))
        .then(|| {
            rootfs::mounts_below(&plan.rootfs)
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        });
    let r = (|| {
        if let (Some(cg), Some(res)) = (&cg, linux.resources()) {
            cg.apply(&with_default_devices(res, &plan.devices))?;
        }
        // Opened before the clone: a join must not change how the next path resolves.
        let joins = namespaces::open_joins(&plan.ns.joins)?;
        spawn(&plan, req, cg.as_ref(), joins)
    })();
    match r {
        Ok(pid) => Ok(Created {
            pid,
            data: serde_json::to_value(Data {
                cgroup: cg,
                rootfs: plan.rootfs.clone(),
                host_mounts_before,
            })?,
        }),
        Err(e) => {
            if let Some(cg) = &cg {
                let _ = cg.destroy();
            }
            Err(e)
        }
    }
}

/// Clone the init (through an intermediate when namespaces are joined), then drive it until it
/// is ready. On error the init is killed and reaped.
fn spawn(
    plan: &InitPlan,
    req: &CreateRequest,
    cg: Option<&CgroupManager>,
    joins: Vec<(OwnedFd, libc::c_int, PathBuf)>,
) -> Result<i32> {
    let (parent, child) = sync::pair()?;
    // The start fifo, opened here by the runtime: the state directory need not be reachable
    // from the init's user namespace (runc passes its exec.fifo the same way).
    let fifo = nix::fcntl::open(
        &plan.fifo,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("opening start fifo {}", plan.fifo.display()))?;
    // The host's procfs, for everything the init does through /proc once inside. Opened here,
    // before any namespace is joined: a joined mount namespace's /proc may belong to another pid
    // namespace.
    let proc = process::HostProc::open()?;
    let home = shared_mount_ns(plan, &joins)?;
    let mut keep: Vec<i32> = joins.iter().map(|(fd, _, _)| fd.as_raw_fd()).collect();
    keep.push(child.raw());
    keep.push(fifo.as_raw_fd());
    keep.push(proc.as_raw_fd());
    keep.extend(home.as_ref().map(|h| h.as_raw_fd()));
    let init = InitFds { fifo, proc, home };
    // The init runs hako's code inside the container until its execve, and in a container that
    // is created but not started it does so for as long as the engine likes: it must never be
    // dumpable there (see `process::set_dumpable`). Set before the clone so that there is no
    // window at all; the child inherits it. The one exception: a rootless runtime making a new
    // user namespace, whose maps the parent (or newuidmap) can write only to a dumpable child;
    // that child turns itself non-dumpable once the maps are written, while its new pid
    // namespace holds nobody else.
    let early = !(plan.ns.new_user && rootless());
    process::set_dumpable(!early);
    let pid = if joins.is_empty() {
        let pid = process::with_oom_score_adj(plan.process.oom_score_adj, || {
            namespaces::clone(plan.ns.clone_flags)
        })?;
        if pid == 0 {
            drop(parent);
            hako_linux::process::close_cloexec_fds(&keep);
            hako_linux::process::reset_signals();
            init_main(plan, &child, init);
        }
        pid
    } else {
        let mid = process::with_oom_score_adj(plan.process.oom_score_adj, || namespaces::clone(0))?;
        if mid == 0 {
            drop(parent);
            hako_linux::process::close_cloexec_fds(&keep);
            hako_linux::process::reset_signals();
            intermediate(plan, &child, &joins, init);
        }
        drop(joins);
        drop(init);
        let got = parent.expect("joining namespaces", |m, _| match m {
            Msg::Pid(p) => Ok(p),
            m => Err(anyhow!(
                "unexpected message {m:?} from the intermediate process"
            )),
        });
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(mid), None);
        got?
    };
    drop(child);
    // Before the note: the host process must end by itself when nobody noted it.
    hako_contract::fault::point("create:forked");
    hako_contract::orphan::note_host_pid(req.state_dir, pid);
    let r = drive(plan, req, cg, &parent, pid);
    if r.is_err() {
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }
    r.map(|_| pid)
}

/// The descriptors the init is handed across the clone.
struct InitFds {
    /// The start fifo (O_PATH).
    fifo: OwnedFd,
    /// The host's procfs.
    proc: process::HostProc,
    /// The mount namespace the workload runs in when it has none of its own: the runtime's own
    /// (no mount namespace in the spec) or the one joined by path. `None`: a new one.
    home: Option<OwnedFd>,
}

/// See [`InitFds::home`].
fn shared_mount_ns(
    plan: &InitPlan,
    joins: &[(OwnedFd, libc::c_int, PathBuf)],
) -> Result<Option<OwnedFd>> {
    if plan.ns.new_mount {
        return Ok(None);
    }
    if let Some((fd, _, path)) = joins.iter().find(|(_, f, _)| *f == libc::CLONE_NEWNS) {
        return fd
            .try_clone()
            .map(Some)
            .with_context(|| format!("duplicating the descriptor of {}", path.display()));
    }
    nix::fcntl::open(
        "/proc/self/ns/mnt",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(Some)
    .context("opening the runtime's mount namespace")
}

fn drive(
    plan: &InitPlan,
    req: &CreateRequest,
    cg: Option<&CgroupManager>,
    chan: &Channel,
    pid: i32,
) -> Result<()> {
    if plan.ns.new_user {
        namespaces::write_id_maps(pid, &plan.ns.uid_map, &plan.ns.gid_map, rootless())?;
    }
    send_or_childs_error(chan, &Msg::Go { pid })?;
    if let Some(cg) = cg {
        cg.add_pid(pid)?;
    }
    // prestart and createRuntime run here, on the host, once the namespaces exist and before
    // the init runs createContainer (runtime-spec hook order).
    let hooks = req.spec.hooks().clone().unwrap_or_default();
    let st = OciState::for_create(req, pid, Status::Created);
    hako_contract::hooks::run("prestart", hooks.prestart().as_deref().unwrap_or(&[]), &st)?;
    hako_contract::hooks::run(
        "createRuntime",
        hooks.create_runtime().as_deref().unwrap_or(&[]),
        &st,
    )?;
    send_or_childs_error(chan, &Msg::HostDone)?;
    loop {
        match chan.recv()? {
            Some((Msg::Report(Report::Ready(())), _)) => return Ok(()),
            Some((Msg::PtyMaster, Some(fd))) => {
                let sock = req.console_socket.context("no console socket")?;
                hako_contract::console::send_master(sock, &fd)?;
            }
            Some((Msg::Report(Report::Err(e)), _)) => bail!("{e}"),
            Some((m, _)) => bail!("unexpected message {m:?} from the container init"),
            None => bail!("the container init exited during set-up"),
        }
    }
}

/// Send to the init; when it has already failed and gone (EPIPE), its own error is what the
/// user must see, not the broken pipe: read it from the channel.
fn send_or_childs_error(chan: &Channel, m: &Msg) -> Result<()> {
    let Err(e) = chan.send(m) else {
        return Ok(());
    };
    loop {
        match chan.recv() {
            Ok(Some((Msg::Report(Report::Err(child)), _))) => bail!("{child}"),
            Ok(Some(_)) => continue,
            _ => return Err(e),
        }
    }
}

fn rootless() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() != 0 }
}

fn fail(chan: &Channel, e: anyhow::Error) -> ! {
    let _ = chan.send(&Msg::Report(Report::Err(format!("{e:#}"))));
    // SAFETY: leave the child without running the parent's destructors.
    unsafe { libc::_exit(1) }
}

/// The intermediate: join the namespaces given by path, clone the init as the caller's child.
fn intermediate(
    plan: &InitPlan,
    chan: &Channel,
    joins: &[(OwnedFd, libc::c_int, PathBuf)],
    fds: InitFds,
) -> ! {
    for (fd, flag, path) in joins {
        if let Err(e) = namespaces::setns(fd, *flag, path) {
            fail(chan, e);
        }
    }
    match namespaces::clone(plan.ns.clone_flags | libc::CLONE_PARENT) {
        Ok(0) => init_main(plan, chan, fds),
        Ok(pid) => {
            let _ = chan.send(&Msg::Pid(pid));
            // SAFETY: as in `fail`.
            unsafe { libc::_exit(0) }
        }
        Err(e) => fail(chan, e),
    }
}

fn init_main(plan: &InitPlan, chan: &Channel, fds: InitFds) -> ! {
    let ready = match init_setup(plan, chan, fds) {
        Ok(r) => r,
        Err(e) => fail(chan, e),
    };
    if let Err(e) = chan.send(&Msg::Report(Report::Ready(()))) {
        fail(chan, e);
    }
    // From here on the parent is gone: errors go to stderr, status 127.
    let die = |e: anyhow::Error| -> ! {
        eprintln!("hako: {e:#}");
        // SAFETY: as in `fail`.
        unsafe { libc::_exit(127) }
    };
    // Through the host's procfs, never the container's /proc.
    let gate = ready
        .proc
        .reopen(ready.fifo.as_raw_fd(), libc::O_WRONLY)
        .context("opening the start fifo");
    if let Err(e) = gate.and_then(hako_contract::start_gate::signal) {
        die(e);
    }
    drop(ready.fifo);
    drop(ready.proc);
    if !plan.start_hooks.is_empty() {
        if let Err(e) = hooks::run(
            "startContainer",
            &plan.start_hooks,
            &state(plan, ready.host_pid, Status::Created),
        ) {
            die(e);
        }
    }
    if let (Some(c), true) = (&plan.seccomp, ready.seccomp_late) {
        if let Err(e) = sec::apply(c) {
            die(e.context("loading the seccomp filter"));
        }
    }
    let mut pp = plan.process.clone();
    pp.env = ready.env;
    process::exec(&ready.exe, &pp)
}

fn state(plan: &InitPlan, pid: i32, status: Status) -> OciState {
    OciState {
        oci_version: plan.oci_version.clone(),
        id: plan.id.clone(),
        status,
        pid: Some(pid),
        bundle: plan.bundle.clone(),
        annotations: plan.annotations.clone(),
    }
}

struct Ready {
    fifo: OwnedFd,
    proc: process::HostProc,
    exe: std::ffi::CString,
    host_pid: i32,
    seccomp_late: bool,
    env: Vec<std::ffi::CString>,
}

fn init_setup(plan: &InitPlan, chan: &Channel, fds: InitFds) -> Result<Ready> {
    let InitFds { fifo, proc, home } = fds;
    let host_pid = chan.expect("waiting for the runtime", |m, _| match m {
        Msg::Go { pid } => Ok(pid),
        m => Err(anyhow!("unexpected message {m:?}")),
    })?;
    // Maps written (or none needed): from here on nobody but root on the host may look inside.
    process::set_dumpable(false);
    let ns = &plan.ns;
    if ns.new_user {
        // Become root of the new user namespace (the maps are written now).
        // SAFETY: plain set*id calls.
        unsafe {
            if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("becoming root in the user namespace");
            }
        }
    }
    if ns.clone_flags & libc::CLONE_NEWNET != 0 {
        namespaces::loopback_up()?;
    }
    // Run once, before the first cgroup mount or else right after the mounts: wait until the
    // parent has put us in our cgroup, read the cgroup paths as the host sees them, then hide
    // them behind a new cgroup namespace.
    let mut host_done = || -> Result<CgroupMounts> {
        chan.expect("waiting for the cgroup and host hooks", |m, _| match m {
            Msg::HostDone => Ok(()),
            m => Err(anyhow!("unexpected message {m:?}")),
        })?;
        let cg = rootfs::cgroup_mounts(&proc);
        if ns.new_cgroup {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .context("unshare cgroup namespace")?;
        }
        Ok(cg)
    };
    if home.is_some() {
        // No mount namespace of its own: the tree is built in a private copy of the shared
        // namespace, so that nothing of it ever shows there (see `enter_shared_namespace`).
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .context("unsharing a private mount namespace to build the rootfs in")?;
    }
    let rp = rootfs::RootfsPlan {
        rootfs: &plan.rootfs,
        mounts: &plan.mounts,
        root_propagation: plan.root_propagation,
        devices: &plan.devices,
        userns: ns.new_user,
        new_cgroupns: ns.new_cgroup,
    };
    if rootfs::prepare(&rp, &mut host_done)?.is_none() {
        host_done()?;
    }
    if !plan.create_hooks.is_empty() {
        hooks::run(
            "createContainer",
            &plan.create_hooks,
            &state(plan, host_pid, Status::Created),
        )?;
    }
    rootfs::pivot(&plan.rootfs, plan.no_pivot)?;
    if let Some(p) = plan.root_propagation {
        rootfs::root_propagation(p)?;
    }
    if plan.console {
        let (master, slave, path) = process::open_pty()?;
        rootfs::bind_console(&path)?;
        chan.send_with_fd(&Msg::PtyMaster, Some(master.as_raw_fd()))?;
        drop(master);
        process::adopt_terminal(&slave)?;
    } else {
        // A session of its own, as runc's init: otherwise the workload keeps the caller's
        // controlling terminal and can push input into it with TIOCSTI.
        nix::unistd::setsid().context("setsid")?;
    }
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).context("sethostname")?;
    }
    if let Some(d) = &plan.domainname {
        let c = std::ffi::CString::new(d.as_str())?;
        // SAFETY: setdomainname with a valid buffer.
        if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setdomainname");
        }
    }
    for (k, v) in &plan.sysctl {
        proc.write(&format!("sys/{}", k.replace('.', "/")), v)
            .with_context(|| format!("sysctl {k}={v}"))?;
    }
    if plan.root_readonly {
        rootfs::readonly_root()?;
    }
    for p in &plan.readonly {
        rootfs::readonly_path(p)?;
    }
    for p in &plan.masked {
        rootfs::mask_path(p)?;
    }
    if let Some(home) = &home {
        rootfs::enter_shared_namespace(home)?;
    }
    drop(home);
    if !plan.no_new_keyring {
        join_session_keyring(&plan.id)?;
    }
    if let Some(p) = plan.personality {
        // SAFETY: personality with a plain value.
        if unsafe { libc::personality(p) } < 0 {
            return Err(std::io::Error::last_os_error()).context("personality");
        }
    }
    let mut pp = plan.process.clone();
    process::ensure_home(&mut pp);
    let pp = &pp;
    process::set_rlimits(pp)?;
    process::set_io_priority(pp)?;
    process::chdir(pp)?;
    process::set_apparmor(pp, &proc)?;
    let seccomp_late = pp.seccomp_late_ok();
    if let (Some(c), false) = (&plan.seccomp, seccomp_late) {
        sec::apply(c).context("loading the seccomp filter")?;
    }
    // Still non-dumpable after the uid change: the start fifo is reopened through our own
    // /proc/self/fd, which the kernel allows a process whatever its dumpability. execve makes
    // the workload dumpable again (for its own binary).
    process::become_user(pp)?;
    process::set_no_new_privileges(pp)?;
    // cwd again as the user, as runc does: a cwd the user cannot enter fails here.
    process::chdir(pp)?;
    let exe = process::find_executable(pp)?;
    process::keep_fds(plan.preserve_fds);
    hako_linux::process::cloexec_fds_from(3 + plan.preserve_fds as i32);
    Ok(Ready {
        fifo,
        proc,
        exe,
        host_pid,
        seccomp_late,
        env: pp.env.clone(),
    })
}

fn join_session_keyring(id: &str) -> Result<()> {
    let name = std::ffi::CString::new(format!("_ses.{id}"))?;
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name).
    let r = unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keys, or a seccomp'd host, cannot make one: as runc, go on.
        if !matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EACCES) | Some(libc::EPERM)
        ) {
            return Err(e).context("joining a new session keyring");
        }
    }
    Ok(())
}

/// The device rules a container always gets (runc's allowed list: mknod of anything, the
/// default /dev nodes, ptys) and one rwm rule per `linux.devices` node, after the spec's own.
fn with_default_devices(
    res: &oci_spec::runtime::LinuxResources,
    devices: &[LinuxDevice],
) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType as T};
    let mut res = res.clone();
    let Some(rules) = res.devices().clone() else {
        return res;
    };
    let rule = |t: T, maj: Option<i64>, min: Option<i64>, acc: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(t));
        r.set_major(maj);
        r.set_minor(min);
        r.set_access(Some(acc.to_string()));
        r
    };
    let mut all = rules;
    all.push(rule(T::C, None, None, "m"));
    all.push(rule(T::B, None, None, "m"));
    for (maj, min) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        all.push(rule(T::C, Some(maj), Some(min), "rwm"));
    }
    all.push(rule(T::C, Some(136), None, "rwm"));
    for d in devices {
        let t = match d.typ() {
            T::U => T::C,
            t => t,
        };
        if t != T::P {
            all.push(rule(t, Some(d.major()), Some(d.minor()), "rwm"));
        }
    }
    res.set_devices(Some(all));
    res
}
