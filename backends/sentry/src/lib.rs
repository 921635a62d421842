//! hako's `sentry` backend: a gVisor-style user-space kernel.
//!
//! `create` forks the sentry (the supervisor process whose pid `create` returns). The sentry makes
//! a private mount namespace with a copy-on-write overlay of the bundle rootfs, waits on the start
//! gate, then forks the workload's first process, which drops to an unprivileged uid, chroots to
//! the overlay root, makes itself traceable and installs a seccomp filter that traps every syscall
//! outside a small allowlist (memory management, futexes, clocks, signal masks). From then on the
//! sentry implements the workload's syscalls itself: the workload's file descriptors, paths,
//! pids, identities, /proc and uname are the sentry's, not the host's.
//!
//! Layout (gVisor's split), in layers: each module imports only the layers below it.
//!
//! ```text
//!  lib.rs, supervisor.rs   the backend; the sentry process itself
//!  event_loop.rs           platform stops and exec clients -> kernel bookkeeping or a handler
//!  syscalls/               one file per topic; table.rs maps each syscall to its handler
//!  exec/, setup.rs,        hako exec; what the first and exec'd processes share; host ids
//!  identity.rs             (beside syscalls/: they use kernel/ and below only)
//!  kernel/                 tasks, creds, fd tables, tracee memory, paths, /proc, config;
//!                          every `impl Kernel` block is here
//!  vfs/, platform/,        the overlay root and open files; interception (seccomp RET_TRACE or
//!  mounts, hostproc,       user notification + ptrace); mounts; the sentry's /proc handle;
//!  openat2, filter         openat2; the sentry's own seccomp filter
//! ```
//!
//! See docs/backends/sentry.md.

pub mod event_loop;
pub mod exec;
pub mod filter;
pub mod hostproc;
pub mod identity;
pub mod kernel;
pub mod mounts;
pub mod namespaces;
pub mod openat2;
pub mod platform;
pub mod setup;
pub mod supervisor;
pub mod syscalls;
pub mod vfs;

use hako_contract::{
    anyhow, bail, cgroup, host_process, Backend, Context, CreateRequest, Created, ExecRequest,
    Execed, Result, Sandbox, Spec,
};
use hako_linux::cgroups::CgroupManager;
use std::path::{Path, PathBuf};

use kernel::config;
pub use kernel::config::{PLATFORM_ANNOTATION, STATS_ANNOTATION};

/// The sentry backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct SentryBackend {
    /// Stdio for the sentry instead of the caller's own fds 0-2 (for embedding and tests; the
    /// CLI leaves it None: the contract says the workload inherits the caller's stdio).
    pub stdio: Option<[i32; 3]>,
}

impl SentryBackend {
    pub fn new() -> Self {
        SentryBackend::default()
    }
}

const ANNOTATIONS: &[&str] = &[STATS_ANNOTATION, PLATFORM_ANNOTATION];

/// Rootless as the front end decides it with `--rootless auto`: not root, or root only in a user
/// namespace that does not map the whole id range (rootless podman).
fn rootless_here() -> bool {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    euid != 0
        || std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

/// The user namespace of a rootless spec (`hako spec --rootless`, runc's): each mapping names
/// one id, the caller's own. The sentry's own user namespace maps its root onto the caller
/// too, so what the host sees of the sandbox's root is what that mapping says.
fn maps_only_the_caller(linux: &oci_spec::runtime::Linux) -> bool {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let ok = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>, id: u32| {
        maps.iter()
            .flatten()
            .all(|m| m.size() == 1 && m.host_id() == id && m.container_id() == 0)
    };
    ok(linux.uid_mappings(), uid) && ok(linux.gid_mappings(), gid)
}

fn sentry_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sentry")
}

/// Remove the sentry's state directory. Rootless, overlayfs leaves `work/work` with mode 000
/// (and the workload may leave directories it cannot write), which their owner cannot empty
/// without a capability: our own directories get u+rwx, and the removal is tried again.
fn remove_state(dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_err() || std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    fn open_up(d: &Path) {
        use std::os::unix::fs::PermissionsExt;
        // Never through a symlink: only real directories below the state dir.
        if std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700));
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                open_up(&e.path());
            }
        }
    }
    open_up(dir);
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Host pid plus all descendants (the sentry and the workload's processes).
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                    for c in s.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
            }
        }
        i += 1;
    }
    out
}

impl Backend for SentryBackend {
    fn name(&self) -> &'static str {
        "sentry"
    }

    fn annotations(&self) -> &'static [&'static str] {
        ANNOTATIONS
    }

    fn check(&self, spec: &Spec, bundle: &Path) -> Result<()> {
        if let Some(a) = spec.annotations() {
            for k in a.keys() {
                if k.starts_with("io.hako.sentry.") && !ANNOTATIONS.contains(&k.as_str()) {
                    bail!(
                        "unknown annotation {k:?} for the sentry backend (known: {ANNOTATIONS:?})"
                    );
                }
            }
        }
        let Some(root) = spec.root() else {
            bail!("config.json has no root")
        };
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            bundle.join(root.path())
        };
        if !rootfs.is_dir() {
            bail!("rootfs {} is not a directory", rootfs.display());
        }
        // However it is spelt ("/", "/../", a symlink to /): the host's root is never a sandbox's.
        if std::fs::canonicalize(&rootfs).is_ok_and(|p| p == Path::new("/")) {
            bail!(
                "root.path {} is the host's root directory, which the sentry backend refuses as a sandbox root",
                root.path().display()
            );
        }
        let cfg = config::Config::from_spec(spec, "check")?;
        if !cfg.cwd.starts_with('/') {
            bail!("process.cwd {:?} must be absolute", cfg.cwd);
        }
        if let Some(linux) = spec.linux() {
            let ns = linux.namespaces().clone().unwrap_or_default();
            let kinds: Vec<String> = ns
                .iter()
                .map(|n| format!("{:?}", n.typ()).to_lowercase())
                .collect();
            if !kinds.iter().any(|k| k == "network") && !rootless_here() {
                bail!("the sentry backend cannot share the host network: config.json must ask for a network namespace (the sandbox has no network)");
            }
            namespaces::check(spec)?;
            if kinds.iter().any(|k| k == "user") && !maps_only_the_caller(linux) {
                bail!("the sentry backend takes a user namespace only as a rootless spec has it, each mapping one id, the caller's own (its identities are virtual, and the workload's host id is the sentry's choice)");
            }
            if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
                bail!("the sentry backend does not expose host devices (linux.devices must be empty); /dev is synthesized");
            }
            if let Some(sc) = linux.seccomp() {
                // Enforced on the workload's processes on top of the trap filter (the stricter wins).
                hako_linux::seccomp::check(sc).context("seccomp profile")?;
            }
            if let Some(res) = linux.resources() {
                CgroupManager::check(res)?;
            }
            if linux.intel_rdt().is_some() {
                bail!("linux.intelRdt is not supported by the sentry backend");
            }
        }
        for m in spec.mounts().as_ref().map(|v| v.as_slice()).unwrap_or(&[]) {
            let typ = m.typ().clone().unwrap_or_default();
            let opts = m.options().clone().unwrap_or_default();
            let dest = vfs::normalize(&m.destination().to_string_lossy());
            let bind = typ == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
            let synthetic = vfs::is_synthetic(&dest);
            if dest == "/" {
                bail!(
                    "a mount at / is not supported by the sentry backend (root.path is the root)"
                );
            }
            match typ.as_str() {
                "proc" | "sysfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2" if synthetic => {}
                "mqueue" if dest == vfs::MQUEUE => {}
                "tmpfs" | "shm" if synthetic => {}
                "tmpfs" => {}
                _ if bind && !synthetic => {
                    if m.source().as_ref().is_none_or(|s| !s.exists()) {
                        bail!("bind mount source {:?} does not exist", m.source());
                    }
                }
                _ if bind && synthetic => {
                    // e.g. podman's /dev/shm or /run/.containerenv under /dev: the sentry's /dev is its own.
                }
                _ => bail!("mount type {typ:?} at {dest} is not supported by the sentry backend"),
            }
        }
        Ok(())
    }

    fn create(&self, req: &CreateRequest) -> Result<Created> {
        self.check(req.spec, req.bundle)?;
        let cfg = config::Config::from_spec(req.spec, req.id)?;
        let rootfs = req.spec.root().as_ref().context("no root")?.path().clone();
        let rootfs = if rootfs.is_absolute() {
            rootfs
        } else {
            req.bundle.join(rootfs)
        };
        let dir = sentry_dir(req.state_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // 0700, set explicitly: the overlay's upper layer below it holds whatever the workload
        // wrote (setuid binaries included); no other host user may reach it.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("chmod {}", dir.display()))?;
        let rootless = req.global.rootless || rootless_here();
        let plan = supervisor::Plan {
            id: req.id.to_string(),
            rootless,
            cfg,
            spec: req.spec,
            rootfs,
            dir: dir.clone(),
            start_fifo: req.start_fifo.to_path_buf(),
            console_socket: req.console_socket.map(Path::to_path_buf),
        };
        let oci_filter = match req.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(sc) => Some(hako_linux::seccomp::compile(sc).context("seccomp profile")?),
            None => None,
        };
        // The sandbox's cgroup, by the rule every backend follows (hako_contract::cgroup).
        let cg = cgroup::make(
            req,
            cgroup::Need::Always,
            req.spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref()),
        )
        .inspect_err(|_| {
            let _ = remove_state(&dir);
        })?;
        hako_contract::fault::point("create:cgroup");
        let fail = |e: anyhow::Error| {
            if let Some(cg) = &cg {
                let _ = cg.destroy();
            }
            let _ = remove_state(&dir);
            e
        };
        let stdio = self.stdio;
        let spawned = host_process::spawn::<Option<u32>>(req.state_dir, |ready| {
            if let Some(io) = stdio {
                for (i, fd) in io.iter().enumerate() {
                    // SAFETY: dup2 in the forked child.
                    unsafe { libc::dup2(*fd, i as i32) };
                }
            }
            // A session of its own (as runc's init and runsc's sandbox take one): the kernel lets
            // a process send SIGCONT to anything in its session whatever its credentials, and
            // the sentry has no business with the caller's session.
            // SAFETY: setsid in the forked child (never a process group leader).
            unsafe { libc::setsid() };
            // fork keeps close-on-exec descriptors: drop the front end's (its state lock among
            // them) so they do not outlive `hako create` in the sentry.
            hako_linux::process::close_cloexec_fds(&[ready.as_raw_fd()]);
            let prep = match supervisor::prepare(&plan, oci_filter) {
                Ok(p) => p,
                Err(e) => {
                    ready.fail(&e);
                    return 1;
                }
            };
            // Ready, with the host id reserved for the workload (root), for `delete`.
            if ready
                .ready_then_wait(prep.ids.reserved(), &plan.start_fifo)
                .is_err()
            {
                return 1;
            }
            supervisor::run(plan, prep)
        });
        let (pid, host_id) = match spawned {
            Ok(r) => r,
            Err(host_process::Failed::Died(_)) => {
                return Err(fail(anyhow!("sentry set-up failed: the sentry died")))
            }
            Err(e) => return Err(fail(anyhow!("sentry set-up failed: {e}"))),
        };
        // The sentry (now waiting on the start gate) and everything it forks live in the
        // container's cgroup. Joined after set-up, so the console pty is made outside the
        // device rules, as runc makes it before the container's init applies them.
        if let Err(e) = cg.as_ref().map_or(Ok(()), |cg| cg.add_pid(pid)) {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(fail(e));
        }
        Ok(Created {
            pid,
            data: serde_json::json!({ "sentry_dir": dir, "cgroup": cg, "host_id": host_id }),
        })
    }

    fn kill(&self, sb: &Sandbox, signal: i32, all: bool) -> Result<()> {
        if !sb.alive {
            bail!("container {} is not running", sb.id);
        }
        if all && cgroup::of(sb).is_none() {
            for p in descendants(sb.pid) {
                // SAFETY: signalling the sandbox's own processes.
                if unsafe { libc::kill(p, signal) } != 0 && p == sb.pid {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("kill {p}"));
                }
            }
            return Ok(());
        }
        cgroup::kill(sb, signal, all)
    }

    fn pids(&self, sb: &Sandbox) -> Result<Vec<i32>> {
        if let Some(cg) = cgroup::of(sb) {
            if let Ok(p) = cg.pids() {
                return Ok(p);
            }
        }
        Ok(if sb.alive {
            descendants(sb.pid)
        } else {
            vec![]
        })
    }

    /// The sentry creates the process in its kernel (see exec/); the pid returned is the exec
    /// client's, which exits as that process does.
    fn exec(&self, sb: &Sandbox, req: &ExecRequest) -> Result<Execed> {
        if !sb.alive {
            bail!("container {} is not running", sb.id);
        }
        if req.preserve_fds > 0 {
            bail!("--preserve-fds is not supported by the sentry backend's exec");
        }
        let pid = exec::start(
            &sentry_dir(sb.state_dir).join(exec::EXEC_SOCK),
            req.process,
            req.console_socket,
        )?;
        Ok(Execed { pid })
    }

    fn delete(&self, sb: &Sandbox) -> Result<()> {
        if sb.alive {
            // SAFETY: the front end asked for the sandbox to go.
            unsafe { libc::kill(sb.pid, libc::SIGKILL) };
        }
        if let Some(h) = sb.data.get("host_id").and_then(|h| h.as_u64()) {
            identity::forget(Path::new(identity::ID_LOCK_DIR), h as u32, sb.id);
        }
        if let Some(cg) = cgroup::of(sb) {
            cg.destroy()?;
        }
        remove_state(&sentry_dir(sb.state_dir))
    }

    fn delete_orphan(&self, sb: &Sandbox) -> Result<()> {
        // The host id reserved for this sandbox is not known: a reservation names its id.
        let ids = Path::new(identity::ID_LOCK_DIR);
        for e in std::fs::read_dir(ids).into_iter().flatten().flatten() {
            let host = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok());
            let ours = std::fs::read_to_string(e.path()).is_ok_and(|t| t == sb.id);
            if let (Some(h), true) = (host, ours) {
                identity::forget(ids, h, sb.id);
            }
        }
        if let Some(cg) = hako_contract::cgroup::orphan(sb) {
            cg.destroy()?;
        }
        remove_state(&sentry_dir(sb.state_dir))
    }

    fn features(&self) -> serde_json::Value {
        serde_json::json!({
            "name": "sentry",
            "platforms": ["samecpu (hybrid, each trap served on the trapping task's CPU; default on Linux 6.6+)", "hybrid (seccomp user-notif + ptrace; default before Linux 6.6)", "ptrace (seccomp RET_TRACE + ptrace)"],
            "kernel": format!("{} {}", kernel::procfs::SYSNAME, kernel::procfs::RELEASE),
            "annotations": ANNOTATIONS,
            "namespaces": ["mount", "uts, ipc, network, cgroup (joined by path, or new; network: hostinet sockets, a new one has loopback only)", "pid (the workload's)", "user (the workload's; the sentry's own too when rootless)"],
            "syscalls": {
                "implemented": syscalls::table().iter().filter(|r| matches!(r.2, syscalls::Disp::Emulated(_))).count(),
                "native": syscalls::table().iter().filter(|r| matches!(r.2, syscalls::Disp::Native(_) | syscalls::Disp::NativeWhen(..))).count(),
                "refused": syscalls::table().iter().filter(|r| matches!(r.2, syscalls::Disp::Refused(..))).count(),
            },
            "io.hako.refuses": [
                "an unknown io.hako.sentry.* annotation; io.hako.sentry.stats other than true/false",
                "root.path naming the host's / (directly, through .., or a symlink)",
                "a mount destination or process.cwd whose symlink leads nowhere inside the root; a mount at /",
                "a root.readonly that cannot be made read-only",
                "the host network namespace (a root spec without a network namespace)",
                "a mount, pid, user or time namespace path (the sentry makes those itself)",
                "user namespace mappings other than the rootless one (each the caller's own id)",
                "linux.devices (/dev is synthesized)",
                "mount types other than bind and tmpfs (proc, sysfs, devpts, mqueue, cgroup and shm only where the sentry synthesizes them)",
                "linux.intelRdt; linux.resources the cgroup manager refuses",
                "PI futexes (ENOSYS at run time); mknod of devices and chroot, whatever the capabilities"
            ],
            "exec": true,
            "io.hako.exec": "the sentry creates the process in its kernel: the sandbox's pid and user namespaces, the workload's host id and confinement, traced; capabilities beyond the workload's bounding set and --preserve-fds are refused",
            "io.hako.rootless": "the sentry enters a user namespace of its own (0 -> the caller) owning its mount/uts/ipc/net/pid namespaces; the workload runs as the caller with no capability; cgroup only where delegated",
        })
    }
}
