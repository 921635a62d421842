//! A forked child between fork and exec: its namespace, terminal, rlimits, capabilities,
//! identity and seccomp filter, then the exec.

use crate::mounts::{NEWROOT, WORKLOAD_CGROUP};
use crate::pty::{openpty, send_fd};
use crate::sys::{cstr, errno, mount, sys, Res};
use crate::workload::Entry;
use hako_agent::proto::{self, GuestConfig};
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

/// What the child needs, as C data, made before fork.
pub(crate) struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    path_dirs: Vec<String>,
    cwd: CString,
}

impl Prepared {
    pub(crate) fn new(cfg: &GuestConfig) -> Res<Self> {
        if cfg.process.args.is_empty() {
            return Err("process.args is empty".into());
        }
        let argv = cfg
            .process
            .args
            .iter()
            .map(|a| cstr(a))
            .collect::<Res<Vec<_>>>()?;
        let envp = cfg
            .process
            .env
            .iter()
            .map(|a| cstr(a))
            .collect::<Res<Vec<_>>>()?;
        // The spec's PATH only: with none (or an empty one), a bare name is not found, as runc
        // and crun do.
        let path = cfg
            .process
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or_default();
        Ok(Self {
            argv,
            envp,
            path_dirs: path
                .split(':')
                .filter(|_| !path.is_empty())
                .map(String::from)
                .collect(),
            cwd: cstr(if cfg.process.cwd.is_empty() {
                "/"
            } else {
                &cfg.process.cwd
            })?,
        })
    }
}

/// The workload process between fork and exec. Returns only with an error.
pub(crate) fn child_main(
    p: &Prepared,
    cfg: &GuestConfig,
    io: &[Option<OwnedFd>; 3],
    entry: Entry,
    status_w: RawFd,
    seccomp: Option<Vec<Vec<u8>>>,
) -> Res<std::convert::Infallible> {
    // SAFETY: the raw system calls of a runtime's init step, in a freshly forked child.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        sys(libc::setsid() as libc::c_long, "setsid")?;
        if cfg.process.terminal {
            // Made after pivot_root, below.
        } else {
            for (t, fd) in io.iter().enumerate() {
                sys(
                    libc::dup2(fd.as_ref().unwrap().as_raw_fd(), t as i32) as libc::c_long,
                    "dup2",
                )?;
            }
        }
        if cfg.pids_limit.is_some() {
            fs::write(format!("{WORKLOAD_CGROUP}/cgroup.procs"), "0")
                .map_err(|e| format!("join the workload cgroup: {e}"))?;
        }
        match entry {
            Entry::Workload { .. } => {
                // Own mount namespace; pivot into the workload's root so the agent disk is out
                // of sight.
                sys(
                    libc::unshare(libc::CLONE_NEWNS) as libc::c_long,
                    "unshare(CLONE_NEWNS)",
                )?;
                sys(
                    libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) as libc::c_long,
                    "make / private",
                )?;
                let nr = cstr(NEWROOT)?;
                sys(libc::chdir(nr.as_ptr()) as libc::c_long, "chdir new root")?;
                sys(
                    libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()),
                    "pivot_root",
                )?;
                sys(
                    libc::umount2(c".".as_ptr(), libc::MNT_DETACH) as libc::c_long,
                    "detach old root",
                )?;
                sys(libc::chdir(c"/".as_ptr()) as libc::c_long, "chdir /")?;
            }
            Entry::Join { mnt_ns } => {
                // The workload's mount namespace: its root and cwd become the workload's `/`.
                sys(
                    libc::setns(mnt_ns, libc::CLONE_NEWNS) as libc::c_long,
                    "join the workload's mount namespace",
                )?;
                sys(libc::chdir(c"/".as_ptr()) as libc::c_long, "chdir /")?;
                if cfg.process.terminal && !Path::new("/dev/pts/ptmx").exists() {
                    // The devpts this terminal needs must not appear in the workload's view.
                    sys(
                        libc::unshare(libc::CLONE_NEWNS) as libc::c_long,
                        "unshare(CLONE_NEWNS)",
                    )?;
                }
            }
        }
        if cfg.process.terminal {
            if !Path::new("/dev/pts/ptmx").exists() {
                let _ = fs::create_dir_all("/dev/pts");
                mount(
                    "devpts",
                    Path::new("/dev/pts"),
                    "devpts",
                    libc::MS_NOSUID | libc::MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620",
                )?;
            }
            let ptmx = if Path::new("/dev/ptmx").exists() {
                "/dev/ptmx"
            } else {
                "/dev/pts/ptmx"
            };
            let (m, s) = openpty(ptmx, cfg.process.console_size)?;
            send_fd(io[0].as_ref().unwrap().as_raw_fd(), m.as_raw_fd())?;
            drop(m);
            let s = s.as_raw_fd();
            sys(
                libc::ioctl(s, libc::TIOCSCTTY, 0) as libc::c_long,
                "TIOCSCTTY",
            )?;
            for t in 0..3 {
                sys(libc::dup2(s, t) as libc::c_long, "dup2")?;
            }
        }

        for r in &cfg.process.rlimits {
            let lim = libc::rlimit64 {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            if libc::prlimit64(0, r.resource as _, &lim, std::ptr::null_mut()) != 0 {
                return Err(format!("setrlimit {}: {}", r.resource, errno()));
            }
        }
        if let Some(adj) = cfg.process.oom_score_adj {
            let _ = fs::write("/proc/self/oom_score_adj", adj.to_string());
        }
        // Bounding set first (needs CAP_SETPCAP), then the identity, then the other sets.
        if let Some(caps) = &cfg.process.capabilities {
            let last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(40);
            for c in 0..=last {
                if !caps.bounding.contains(&c) {
                    sys(
                        libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0)
                            as libc::c_long,
                        "drop bounding cap",
                    )?;
                }
            }
            sys(
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) as libc::c_long,
                "PR_SET_KEEPCAPS",
            )?;
        }
        // Without no_new_privileges the filter must be loaded while we still hold CAP_SYS_ADMIN.
        if !cfg.process.no_new_privileges {
            for prog in seccomp.iter().flatten() {
                load_seccomp(prog, cfg.seccomp.as_ref().map_or(0, |s| s.flags))?;
            }
        }
        let gids: Vec<libc::gid_t> = cfg.process.additional_gids.clone();
        sys(
            libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()),
            "setgroups",
        )?;
        sys(
            libc::syscall(
                libc::SYS_setresgid,
                cfg.process.gid,
                cfg.process.gid,
                cfg.process.gid,
            ),
            "setresgid",
        )?;
        sys(
            libc::syscall(
                libc::SYS_setresuid,
                cfg.process.uid,
                cfg.process.uid,
                cfg.process.uid,
            ),
            "setresuid",
        )?;
        if let Some(caps) = &cfg.process.capabilities {
            set_caps(caps)?;
        }
        if cfg.process.no_new_privileges {
            sys(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long,
                "PR_SET_NO_NEW_PRIVS",
            )?;
        }
        libc::umask(cfg.process.umask.unwrap_or(0o022) as libc::mode_t);
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            return Err(format!("cwd {:?}: {}", p.cwd, errno()));
        }
        let exe = find_exe(p)?;

        if let Entry::Workload { start_r } = entry {
            // Ready: wait for the host's Start.
            libc::write(status_w, b"R".as_ptr().cast(), 1);
            let mut b = [0u8; 1];
            if libc::read(start_r, b.as_mut_ptr().cast(), 1) != 1 {
                libc::_exit(0);
            }
        }
        if cfg.process.no_new_privileges {
            for prog in seccomp.iter().flatten() {
                load_seccomp(prog, cfg.seccomp.as_ref().map_or(0, |s| s.flags))?;
            }
        }
        let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = p.envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
        Err(format!("exec {:?}: {}", p.argv[0], errno()))
    }
}

/// args[0] as execvp would find it, with the spec's PATH; checked before Ready so a missing
/// executable is a create-time error.
pub(crate) fn find_exe(p: &Prepared) -> Res<CString> {
    let a0 = p.argv[0].to_string_lossy().into_owned();
    let check = |path: &str| -> Option<CString> {
        let c = CString::new(path).ok()?;
        let m = fs::metadata(path).ok()?;
        // SAFETY: access on a valid path.
        (m.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0).then_some(c)
    };
    if a0.contains('/') {
        if fs::metadata(&a0).is_err() {
            return Err(format!("exec {a0:?}: no such file in the rootfs"));
        }
        return check(&a0).ok_or_else(|| format!("exec {a0:?}: not an executable file"));
    }
    for d in &p.path_dirs {
        let d = if d.is_empty() { "." } else { d };
        if let Some(c) = check(&format!("{d}/{a0}")) {
            return Ok(c);
        }
    }
    Err(format!(
        "exec: {a0:?}: executable file not found in $PATH ({})",
        if p.path_dirs.is_empty() {
            "process.env has no PATH".to_string()
        } else {
            p.path_dirs.join(":")
        }
    ))
}

pub(crate) fn load_seccomp(prog: &[u8], flags: u64) -> Res<()> {
    if !prog.len().is_multiple_of(8) || prog.is_empty() {
        return Err("seccomp program has a bad length".into());
    }
    let fprog = libc::sock_fprog {
        len: (prog.len() / 8) as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(SET_MODE_FILTER) with a valid program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1, /* SECCOMP_SET_MODE_FILTER */
            flags as libc::c_ulong,
            &fprog,
        )
    };
    sys(r, "seccomp")
}

pub(crate) fn set_caps(c: &proto::Capabilities) -> Res<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let bits = |v: &[u32]| -> u64 {
        v.iter()
            .filter(|&&n| n < 64)
            .fold(0u64, |a, &n| a | (1u64 << n))
    };
    let (e, p, i) = (bits(&c.effective), bits(&c.permitted), bits(&c.inheritable));
    let hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: capset with a v3 header and two data structs.
    sys(
        unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) },
        "capset",
    )?;
    for &a in &c.ambient {
        // SAFETY: prctl.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                a as libc::c_ulong,
                0,
                0,
            )
        };
        // Ambient caps not in permitted+inheritable are skipped, as runc does.
        let _ = r;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(args: &[&str], env: &[&str]) -> Prepared {
        let cfg = GuestConfig {
            process: hako_agent::proto::ProcessSpec {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: env.iter().map(|s| s.to_string()).collect(),
                cwd: "/".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        Prepared::new(&cfg).unwrap()
    }

    /// A bare name is looked up in process.env's PATH only, as runc and crun do: with no PATH
    /// (or an empty one) it is not found, though the host's /bin/sh exists.
    #[test]
    fn bare_name_needs_a_path_in_the_process_env() {
        for env in [&[][..], &["TERM=xterm"][..], &["PATH="][..]] {
            let e = find_exe(&prepared(&["sh"], env)).unwrap_err();
            assert!(
                e.contains("executable file not found in $PATH"),
                "{env:?}: {e}"
            );
        }
        let found = find_exe(&prepared(&["sh"], &["PATH=/nonexistent:/bin"])).unwrap();
        assert_eq!(found.to_str().unwrap(), "/bin/sh");
        // A path with a slash is not looked up.
        assert_eq!(
            find_exe(&prepared(&["/bin/sh"], &[]))
                .unwrap()
                .to_str()
                .unwrap(),
            "/bin/sh"
        );
    }
}
