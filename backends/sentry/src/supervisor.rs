//! The sentry process: forked by `create`, it builds the sandbox's root (a private mount
//! namespace with the overlay), waits on the start gate, forks the workload's first process as a
//! tracee, confines itself with its own seccomp filter, and runs the kernel until the workload's
//! init exits. Its exit status is the workload's.

use crate::config::Config;
use crate::fs::FdTable;
use crate::kernel::Kernel;
use crate::platform::ptrace::SeccompPtrace;
use crate::platform::Platform;
use crate::vfs::{FileKind, HostKind, OpenFile, Vfs};
use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use std::cell::RefCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};

/// Host pid of the workload's init, for the signal forwarder.
static INIT_PID: AtomicI32 = AtomicI32::new(0);

/// Signals `hako kill` sends to the sentry that it forwards to the workload's init.
pub const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
    libc::SIGCONT,
];

extern "C" fn forward(sig: libc::c_int) {
    let p = INIT_PID.load(Ordering::Relaxed);
    if p > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(p, sig) };
    }
}

pub struct Plan<'a> {
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

/// Private mount namespace + overlay root + the spec's bind and tmpfs mounts. Returns the root.
pub fn build_root(plan: &Plan) -> Result<PathBuf> {
    // SAFETY: unshare in the single-threaded sentry.
    if unsafe {
        libc::unshare(
            libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET,
        )
    } != 0
    {
        bail!(
            "unshare(mount, uts, ipc): {}",
            std::io::Error::last_os_error()
        );
    }
    mount(
        "none",
        Path::new("/"),
        "",
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    let upper = plan.dir.join("upper");
    let work = plan.dir.join("work");
    let merged = plan.dir.join("merged");
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let lower = plan.rootfs.to_str().context("rootfs path is not UTF-8")?;
    if lower.contains(',') || lower.contains(':') {
        bail!("the rootfs path {lower:?} contains ',' or ':', which overlayfs cannot take");
    }
    if plan.cfg.readonly_root {
        mount(
            "hako-sentry",
            &merged,
            "overlay",
            libc::MS_RDONLY,
            Some(&format!("lowerdir={lower}:{lower}")),
        )
        .or_else(|_| mount(lower, &merged, "", libc::MS_BIND | libc::MS_REC, None))?;
    } else {
        let opts = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        mount("hako-sentry", &merged, "overlay", 0, Some(&opts))?;
    }
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
        let is_bind = typ == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
        if crate::vfs::procfs::is_synthetic(&crate::vfs::normalize(&dest)) {
            continue; // /proc, /sys and /dev are the sentry's own (see check())
        }
        let target = merged.join(dest.trim_start_matches('/'));
        if is_bind {
            let src = m.source().clone().context("bind mount without a source")?;
            if src.is_dir() {
                std::fs::create_dir_all(&target).ok();
            } else {
                if let Some(p) = target.parent() {
                    std::fs::create_dir_all(p).ok();
                }
                if !target.exists() {
                    std::fs::write(&target, b"").ok();
                }
            }
            let flags = libc::MS_BIND
                | if opts.iter().any(|o| o == "rbind") {
                    libc::MS_REC
                } else {
                    0
                };
            mount(
                src.to_str().context("mount source")?,
                &target,
                "",
                flags,
                None,
            )?;
            if opts.iter().any(|o| o == "ro") {
                mount(
                    "none",
                    &target,
                    "",
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    None,
                )?;
            }
        } else if typ == "tmpfs" {
            std::fs::create_dir_all(&target).ok();
            mount(
                "tmpfs",
                &target,
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV,
                Some("mode=1777"),
            )?;
        }
    }
    Ok(merged)
}

/// Resolve `args[0]` like execvp, inside the sandbox root.
fn find_program(vfs: &Vfs, cfg: &Config) -> String {
    let a0 = &cfg.args[0];
    if a0.contains('/') {
        return a0.clone();
    }
    let path = cfg
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for d in path.split(':') {
        let cand = format!("{}/{a0}", d.trim_end_matches('/'));
        if let Ok(st) = vfs.stat(&cand, true) {
            if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_mode & 0o111 != 0 {
                return cand;
            }
        }
    }
    a0.clone()
}

fn stdio_file(fd: RawFd, slave: Option<RawFd>) -> Result<OpenFile> {
    let src = slave.unwrap_or(fd);
    // SAFETY: dup of an inherited fd.
    let d = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 10) };
    if d < 0 {
        bail!("stdio fd {fd} is not open");
    }
    let owned = unsafe { OwnedFd::from_raw_fd(d) };
    let st = crate::vfs::fstat_fd(d).map_err(std::io::Error::from_raw_os_error)?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => HostKind::Regular,
        libc::S_IFDIR => HostKind::Dir,
        _ => HostKind::Stream,
    };
    let name = std::fs::read_link(format!("/proc/self/fd/{src}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let acc = if fd == 0 {
        libc::O_RDONLY
    } else {
        libc::O_WRONLY
    };
    // SAFETY: fcntl query.
    let fl = unsafe { libc::fcntl(d, libc::F_GETFL) };
    let acc = if fl >= 0 && fl & libc::O_ACCMODE == libc::O_RDWR {
        libc::O_RDWR
    } else {
        acc
    };
    Ok(OpenFile::new(
        FileKind::Host { fd: owned, kind },
        &name,
        acc | (fl.max(0) & libc::O_APPEND),
    ))
}

/// Everything up to the start gate. Errors here are reported to `create`.
pub struct Prepared {
    pub vfs: Vfs,
    pub program: String,
    pub slave: Option<OwnedFd>,
    pub filter: Vec<libc::sock_filter>,
    pub oci_filter: Option<hako_container::seccomp::Compiled>,
    pub own_filter: seccompiler::BpfProgram,
}

pub fn prepare(
    plan: &Plan,
    oci_filter: Option<hako_container::seccomp::Compiled>,
) -> Result<Prepared> {
    let merged = build_root(plan)?;
    let vfs = Vfs::new(merged.to_str().context("state dir is not UTF-8")?)
        .context("opening the sandbox root")?;
    let host = CString::new(plan.cfg.hostname.clone())?;
    // SAFETY: in our own UTS namespace.
    unsafe { libc::sethostname(host.as_ptr(), plan.cfg.hostname.len()) };
    let program = find_program(&vfs, &plan.cfg);
    match vfs.stat(&program, true) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {}
        Ok(_) => bail!("{:?} in the rootfs is not a regular file", plan.cfg.args[0]),
        Err(e) => bail!(
            "executable {:?} not found in the rootfs: {}",
            plan.cfg.args[0],
            std::io::Error::from_raw_os_error(e)
        ),
    }
    let cwd = plan.cfg.cwd.trim_start_matches('/');
    if !cwd.is_empty() {
        match vfs.stat(cwd, true) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
            _ => {
                // runc creates a missing cwd; so do we (in the overlay).
                let _ = std::fs::create_dir_all(merged.join(cwd));
            }
        }
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
        filter: crate::syscalls::trap_filter(plan.cfg.hybrid),
        oci_filter,
        own_filter: crate::filter::sentry_filter()?,
    })
}

/// After the start gate: run the workload. Never returns.
pub fn run(plan: Plan, prep: Prepared) -> ! {
    let code = match run_inner(plan, prep) {
        Ok((false, code)) => code,
        Ok((true, sig)) => {
            // SAFETY: reproduce the workload's death by signal on ourselves.
            unsafe {
                let rl = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &rl);
                libc::signal(sig, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::kill(libc::getpid(), sig);
            }
            128 + sig
        }
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
    let root = CString::new(prep.vfs.root_path.clone())?;
    let cwd = CString::new(cfg.cwd.clone())?;
    let rlimits: Vec<(u32, libc::rlimit)> = plan
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.rlimits().clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            rlimit_resource(&format!("{:?}", l.typ())).map(|r| {
                (
                    r,
                    libc::rlimit {
                        rlim_cur: l.soft(),
                        rlim_max: l.hard(),
                    },
                )
            })
        })
        .collect();

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

    let mut plat = SeccompPtrace::new(prep.filter.clone(), cfg.hybrid);
    let slave_fd = prep.slave.as_ref().map(|s| s.as_raw_fd());
    // SAFETY: fork of the single-threaded sentry; the child only makes syscalls before execve.
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
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                libc::_exit(126);
            }
            libc::chdir(cwd.as_ptr());
            // The workload holds no host descriptors at all: its fds are the sentry's table.
            libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
            // And no host privilege: an unprivileged uid with no capabilities.
            let nobody: libc::gid_t = 65534;
            libc::setgroups(0, std::ptr::null());
            libc::setresgid(nobody, nobody, nobody);
            libc::setresuid(nobody, nobody, nobody);
            // The spec's seccomp profile, if any, is stacked under the trap filter: a syscall it
            // refuses fails on the host before the sentry sees it (the stricter action wins).
            let mut oci = || match &prep.oci_filter {
                Some(f) => hako_container::seccomp::try_apply(f)
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
    INIT_PID.store(pid, Ordering::Relaxed);
    for &s in FORWARDED {
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
    drop(prep.slave);
    let mut k = Kernel::new(plat, cfg.clone(), prep.vfs, sigfd);
    k.add_init(pid, fds);

    // From here on the sentry confines itself.
    // SAFETY: prctl on ourselves.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    seccompiler::apply_filter(&prep.own_filter).context("installing the sentry's own filter")?;

    let status = k.run()?;
    if let Some(path) = &cfg.stats_path {
        let j = serde_json::json!({
            "emulated": k.stats.emulated,
            "refused": k.stats.refused,
            "mmap_emulated": k.stats.mmap_emulated,
            "status": {"signaled": status.0, "code": status.1},
        });
        let _ = std::fs::write(path, serde_json::to_vec_pretty(&j).unwrap_or_default());
    }
    Ok(status)
}

fn rlimit_resource(name: &str) -> Option<u32> {
    #[allow(clippy::unnecessary_cast)]
    Some(match name {
        "RlimitCpu" => libc::RLIMIT_CPU,
        "RlimitFsize" => libc::RLIMIT_FSIZE,
        "RlimitData" => libc::RLIMIT_DATA,
        "RlimitStack" => libc::RLIMIT_STACK,
        "RlimitCore" => libc::RLIMIT_CORE,
        "RlimitRss" => libc::RLIMIT_RSS,
        "RlimitNproc" => libc::RLIMIT_NPROC,
        "RlimitNofile" => libc::RLIMIT_NOFILE,
        "RlimitMemlock" => libc::RLIMIT_MEMLOCK,
        "RlimitAs" => libc::RLIMIT_AS,
        "RlimitLocks" => libc::RLIMIT_LOCKS,
        "RlimitSigpending" => libc::RLIMIT_SIGPENDING,
        "RlimitMsgqueue" => libc::RLIMIT_MSGQUEUE,
        "RlimitNice" => libc::RLIMIT_NICE,
        "RlimitRtprio" => libc::RLIMIT_RTPRIO,
        "RlimitRttime" => libc::RLIMIT_RTTIME,
        _ => return None,
    } as u32)
}
