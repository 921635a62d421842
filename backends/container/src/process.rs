//! The workload process: identity, limits, capabilities and the final execve. Shared by the
//! container init and by `exec`.

use crate::caps;
use anyhow::{bail, Context, Result};
use hako_linux::process::Rlimit;
use oci_spec::runtime::Process;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A process spec turned into plain data, prepared before fork.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub path_var: Option<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
    pub caps: Option<caps::Sets>,
    pub no_new_privileges: bool,
    pub apparmor: Option<String>,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
    pub io_priority: Option<(i64, i64)>,
}

fn cstr(s: &str, what: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{what} contains a NUL byte"))
}

impl ProcessPlan {
    pub fn from_spec(p: &Process) -> Result<ProcessPlan> {
        let args = p.args().clone().unwrap_or_default();
        if args.is_empty() {
            bail!("process.args is empty");
        }
        if p.command_line().is_some() {
            bail!("process.commandLine is for Windows");
        }
        let env: Vec<String> = p.env().clone().unwrap_or_default();
        let path_var = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH=").map(str::to_string));
        if !p.cwd().is_absolute() {
            bail!("process.cwd {:?} is not absolute", p.cwd());
        }
        let user = p.user();
        let caps = match p.capabilities() {
            Some(c) => Some(caps::Sets::from_spec(c)?),
            None => None,
        };
        let io_priority = p.io_priority().map(|io| {
            use oci_spec::runtime::IOPriorityClass::*;
            let class = match io.class() {
                IoprioClassRt => 1,
                IoprioClassBe => 2,
                IoprioClassIdle => 3,
            };
            (class, io.priority())
        });
        if let Some((_, prio)) = io_priority {
            if !(0..=7).contains(&prio) {
                bail!("process.ioPriority.priority {prio} is outside 0..7");
            }
        }
        Ok(ProcessPlan {
            args: args
                .iter()
                .map(|a| cstr(a, "process.args"))
                .collect::<Result<_>>()?,
            env: env
                .iter()
                .map(|e| cstr(e, "process.env"))
                .collect::<Result<_>>()?,
            path_var,
            cwd: p.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            rlimits: p
                .rlimits()
                .iter()
                .flatten()
                .map(Rlimit::from_spec)
                .collect::<Result<_>>()?,
            caps,
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            apparmor: p.apparmor_profile().clone().filter(|s| !s.is_empty()),
            oom_score_adj: p.oom_score_adj(),
            terminal: p.terminal().unwrap_or(false),
            io_priority,
        })
    }

    /// Whether the process will still hold CAP_SYS_ADMIN when it calls seccomp: without it and
    /// without no_new_privileges the filter must be loaded before capabilities drop.
    pub fn seccomp_late_ok(&self) -> bool {
        self.no_new_privileges || self.caps.map(|c| c.has_effective(21)).unwrap_or(true)
    }
}

pub fn write_oom_score_adj(v: i32) -> Result<()> {
    std::fs::write("/proc/self/oom_score_adj", v.to_string()).context("writing oom_score_adj")
}

/// Run `clone` with our own oom_score_adj set to `v`, so the child inherits it, then put ours
/// back (in the parent only: the child returns through here too, with 0). Set here, in the
/// runtime, rather than in the child: the child is non-dumpable (see [`set_dumpable`]), which
/// makes its /proc files root-owned in the host user namespace and so unwritable from inside a
/// user namespace; and only the host's CAP_SYS_RESOURCE may lower the value (runc sets it in
/// its bootstrap process too).
pub fn with_oom_score_adj(v: Option<i32>, clone: impl FnOnce() -> Result<i32>) -> Result<i32> {
    let Some(v) = v else { return clone() };
    let old =
        std::fs::read_to_string("/proc/self/oom_score_adj").context("reading oom_score_adj")?;
    write_oom_score_adj(v)?;
    let r = clone();
    if !matches!(r, Ok(0)) {
        // Best effort: lowering it back may need a capability a rootless caller lacks; the
        // caller is the short-lived runtime either way.
        let _ = std::fs::write("/proc/self/oom_score_adj", old.trim());
    }
    r
}

pub fn set_rlimits(p: &ProcessPlan) -> Result<()> {
    for r in &p.rlimits {
        r.apply().with_context(|| {
            format!(
                "setrlimit({}, soft {}, hard {})",
                r.resource, r.soft, r.hard
            )
        })?;
    }
    Ok(())
}

pub fn set_io_priority(p: &ProcessPlan) -> Result<()> {
    if let Some((class, prio)) = p.io_priority {
        let v = (class << 13) | prio;
        // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, self, value).
        if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, v) } != 0 {
            return Err(std::io::Error::last_os_error()).context("ioprio_set");
        }
    }
    Ok(())
}

/// Switch to the process's user with its capabilities; then no_new_privileges.
pub fn become_user(p: &ProcessPlan) -> Result<()> {
    if let Some(c) = &p.caps {
        caps::drop_bounding(c)?;
    }
    // SAFETY: plain prctl / set*id calls.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error()).context("PR_SET_KEEPCAPS");
        }
        let groups: Vec<libc::gid_t> = p.additional_gids.clone();
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            let e = std::io::Error::last_os_error();
            // In a user namespace where setgroups is denied, an empty list is the only choice.
            if !(groups.is_empty() && e.raw_os_error() == Some(libc::EPERM)) {
                return Err(e).context("setgroups");
            }
        }
        if libc::setresgid(p.gid, p.gid, p.gid) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setgid {}", p.gid));
        }
        if libc::setresuid(p.uid, p.uid, p.uid) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setuid {}", p.uid));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    if let Some(c) = &p.caps {
        caps::set_process_sets(c)?;
    }
    // As runc: 0022 unless the spec says otherwise (not the caller's umask).
    let m = p.umask.unwrap_or(0o022);
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(m as libc::mode_t) };
    Ok(())
}

pub fn set_no_new_privileges(p: &ProcessPlan) -> Result<()> {
    if p.no_new_privileges {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error()).context("PR_SET_NO_NEW_PRIVS");
        }
    }
    Ok(())
}

pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

/// Ask AppArmor to switch to the profile at the next execve.
pub fn set_apparmor(p: &ProcessPlan, proc: &HostProc) -> Result<()> {
    if let Some(prof) = &p.apparmor {
        let v = format!("exec {prof}");
        let r = proc
            .write("thread-self/attr/apparmor/exec", &v)
            .or_else(|_| proc.write("thread-self/attr/exec", &v));
        r.with_context(|| format!("setting AppArmor profile {prof:?}"))?;
    }
    Ok(())
}

pub fn chdir(p: &ProcessPlan) -> Result<()> {
    nix::unistd::chdir(&p.cwd).with_context(|| format!("chdir to cwd {}", p.cwd.display()))
}

/// As runc: when the env has no HOME, take the user's from the container's /etc/passwd, or "/".
pub fn ensure_home(p: &mut ProcessPlan) {
    if p.env.iter().any(|e| e.as_bytes().starts_with(b"HOME=")) {
        return;
    }
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|pw| {
            pw.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(p.uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    if let Ok(c) = CString::new(format!("HOME={home}")) {
        p.env.push(c);
    }
}

/// Find args[0] in the container's PATH (from the process env, as runc does: a bare name with no
/// PATH there is not found).
pub fn find_executable(p: &ProcessPlan) -> Result<CString> {
    let arg0 = p.args[0].to_str().context("args[0] is not UTF-8")?;
    let check = |c: &Path| -> bool {
        let Ok(cs) = CString::new(c.as_os_str().as_bytes()) else {
            return false;
        };
        let Ok(md) = std::fs::metadata(c) else {
            return false;
        };
        // SAFETY: access(2) on a valid C string.
        md.is_file() && unsafe { libc::access(cs.as_ptr(), libc::X_OK) } == 0
    };
    if arg0.contains('/') {
        let c = Path::new(arg0);
        if std::fs::metadata(c).is_err() {
            bail!("exec: {arg0:?}: no such file or directory");
        }
        if !check(c) {
            bail!("exec: {arg0:?}: permission denied");
        }
        return Ok(p.args[0].clone());
    }
    // No PATH (or an empty one) in process.env: nothing to search, as runc and crun do (their
    // lookup reads the process's own env, with no built-in default).
    let path = p.path_var.as_deref().unwrap_or_default();
    for dir in path.split(':').filter(|_| !path.is_empty()) {
        let dir = if dir.is_empty() { "." } else { dir };
        let c = Path::new(dir).join(arg0);
        if check(&c) {
            return cstr(&c.to_string_lossy(), "path");
        }
    }
    bail!("exec: {arg0:?}: executable file not found in $PATH")
}

/// The host's procfs, opened before the init (or an exec'd process) enters the container and
/// used only through this descriptor afterwards: a workload can shape the /proc it sees (a
/// bundle's mounts, an image without a proc mount), never this one (runc's CVE-2019-19921
/// lesson).
pub struct HostProc(std::os::fd::OwnedFd);

impl HostProc {
    pub fn open() -> Result<HostProc> {
        use std::os::fd::FromRawFd;
        // SAFETY: open with a static path.
        let fd = unsafe {
            libc::open(
                c"/proc".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening the host's /proc");
        }
        // SAFETY: a fresh descriptor.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let st = nix::sys::statfs::fstatfs(&fd).context("fstatfs /proc")?;
        if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
            bail!("/proc on this host is not a procfs");
        }
        Ok(HostProc(fd))
    }

    /// Open `rel` (below /proc) with `flags`, never leaving this procfs on the way (openat2
    /// RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS).
    pub fn open_file(&self, rel: &str, flags: i32) -> Result<std::os::fd::OwnedFd> {
        use hako_linux::inroot::{
            openat2, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_XDEV,
        };
        use std::os::fd::AsFd;
        openat2(
            self.0.as_fd(),
            Path::new(rel),
            flags,
            0,
            RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS,
        )
        .with_context(|| format!("opening /proc/{rel}"))
    }

    pub fn as_raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }

    /// Write `data` to `rel` below /proc.
    pub fn write(&self, rel: &str, data: &str) -> Result<()> {
        use std::io::Write;
        let fd = self.open_file(rel, libc::O_WRONLY)?;
        std::fs::File::from(fd)
            .write_all(data.as_bytes())
            .with_context(|| format!("writing /proc/{rel}"))
    }

    /// Reopen our own descriptor `fd` with `flags` (an O_PATH one, for the start fifo): through
    /// this procfs's `thread-self/fd`, looked up by descriptor.
    pub fn reopen(&self, fd: i32, flags: i32) -> Result<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        let dir = self.open_file("thread-self/fd", libc::O_PATH | libc::O_DIRECTORY)?;
        let name = std::ffi::CString::new(fd.to_string())?;
        // SAFETY: openat relative to a directory descriptor we hold.
        let r = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
        if r < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("reopening descriptor {fd}"));
        }
        // SAFETY: a fresh descriptor.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r) })
    }
}

/// Make this process non-dumpable (or dumpable again). A process that runs hako's own code
/// inside (or on its way into) a container must be non-dumpable: otherwise a process in the
/// container may open `/proc/<pid>/exe` (the host's hako binary), wait for the runtime to exit
/// and reopen it for writing (CVE-2019-5736). Non-dumpable makes /proc/<pid> root-owned in the
/// host user namespace and refuses ptrace-mode access to anyone without CAP_SYS_PTRACE there.
/// execve resets the flag for the workload's own binary.
pub fn set_dumpable(on: bool) {
    // SAFETY: plain prctl; it cannot fail with these arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on as libc::c_ulong, 0, 0, 0) };
}

/// Make sure fds 0..3+preserve stay open across exec.
pub fn keep_fds(preserve: u32) {
    for fd in 0..3 + preserve as i32 {
        // SAFETY: clearing FD_CLOEXEC; fails harmlessly for closed fds.
        unsafe {
            let f = libc::fcntl(fd, libc::F_GETFD);
            if f >= 0 {
                libc::fcntl(fd, libc::F_SETFD, f & !libc::FD_CLOEXEC);
            }
        }
    }
}

/// execve; on failure report on stderr and exit 127.
pub fn exec(path: &CString, p: &ProcessPlan) -> ! {
    let e = nix::unistd::execve(path, &p.args, &p.env).unwrap_err();
    eprintln!("hako: exec {:?}: {}", p.args[0], e.desc());
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(127) }
}

/// Open a pty inside the current mount namespace's devpts (`/dev/ptmx`). Returns (master,
/// slave, slave path).
pub fn open_pty() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd, PathBuf)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on an fd we own.
    unsafe {
        let m = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if m < 0 {
            return Err(std::io::Error::last_os_error()).context("open /dev/ptmx");
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(std::io::Error::last_os_error()).context("unlockpt");
        }
        let mut buf = [0 as libc::c_char; 128];
        if libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(std::io::Error::last_os_error()).context("ptsname");
        }
        let name = std::ffi::CStr::from_ptr(buf.as_ptr()).to_owned();
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("open {name:?}"));
        }
        Ok((
            master,
            OwnedFd::from_raw_fd(s),
            PathBuf::from(name.to_string_lossy().to_string()),
        ))
    }
}

/// Become a session leader and take `slave` as controlling terminal and stdio.
pub fn adopt_terminal(slave: &std::os::fd::OwnedFd) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    hako_contract::console::adopt_as_stdio(slave)
}
