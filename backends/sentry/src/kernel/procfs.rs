//! Synthesized `/proc`, `/sys` and `/dev`: the nodes `path` reaches under those three trees. Nothing here reads the host's view of the sandbox except the tracees' own
//! `/proc/<host pid>/{stat,status,cmdline,maps,environ}` (memory and CPU figures), always
//! rewritten to virtual pids and identities.

use super::creds::status_lines;
use super::{Kernel, Process};
use crate::platform::Platform;
use crate::vfs::{synth_ino as ino, DevKind, DirEnt, Node, Synth};
use std::cell::RefCell;
use std::rc::Rc;

pub const SYSNAME: &str = "Linux";
pub const RELEASE: &str = "4.4.0-hako-sentry";
pub const VERSION: &str = "#1 SMP hako-sentry";

const DT_DIR: u8 = 4;
const DT_REG: u8 = 8;
const DT_LNK: u8 = 10;
const DT_CHR: u8 = 2;

fn dir(base: &str, items: &[(&str, u8)]) -> Synth {
    let mut v = vec![
        DirEnt {
            name: ".".into(),
            ino: ino(base),
            dtype: DT_DIR,
        },
        DirEnt {
            name: "..".into(),
            ino: 2,
            dtype: DT_DIR,
        },
    ];
    for (n, t) in items {
        v.push(DirEnt {
            name: n.to_string(),
            ino: ino(&format!("{base}/{n}")),
            dtype: *t,
        });
    }
    Synth::Dir(v)
}

fn text(s: String) -> Result<Node, i32> {
    Ok(Node::Synth(Synth::File(s.into_bytes())))
}

/// A host proc file, read beneath the sentry's own /proc descriptor (see `hostproc`).
fn host_file(path: &str) -> String {
    crate::hostproc::read_string(path.strip_prefix("/proc/").unwrap_or(path))
}

pub fn ncpus() -> usize {
    // SAFETY: sched_getaffinity into a local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (libc::CPU_COUNT(&set) as usize).max(1);
        }
    }
    1
}

/// Whether host task `tid`'s controlling terminal is the device `rdev` (its stat's tty_nr,
/// which encodes major and minor as the kernel's new_encode_dev does).
fn ctty_is(tid: i32, rdev: libc::dev_t) -> bool {
    let stat = crate::hostproc::read_string(&format!("{tid}/stat"));
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // state ppid pgrp session tty_nr
    let Some(t) = after
        .split_whitespace()
        .nth(4)
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return false;
    };
    let (major, minor) = ((t >> 8) & 0xfff, (t & 0xff) | ((t >> 12) & 0xfff00));
    t != 0 && major == libc::major(rdev) && minor == libc::minor(rdev)
}

impl<P: Platform> Kernel<P> {
    /// Whether pty `n` exists in the sandbox's devpts instance.
    fn pty_exists(&self, n: &str) -> bool {
        let (Some(pts), Ok(c)) = (&self.vfs.pts, std::ffi::CString::new(n)) else {
            return false;
        };
        // SAFETY: fstatat on our own descriptor into a local, never following a link.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        unsafe {
            libc::fstatat(
                std::os::fd::AsRawFd::as_raw_fd(pts),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            ) == 0
        }
    }

    /// The synthetic node at exactly these components (no following).
    pub(super) fn synth_at(&self, tid: i32, c: &[&str]) -> Result<Node, i32> {
        let me = self.proc_of(tid);
        let (my_vpid, my_vtid) = (me.borrow().vpid, self.tasks[&tid].vtid);
        match c {
            ["dev"] => Ok(Node::Synth(dir(
                "/dev",
                &[
                    ("null", DT_CHR),
                    ("zero", DT_CHR),
                    ("full", DT_CHR),
                    ("random", DT_CHR),
                    ("urandom", DT_CHR),
                    ("stdin", DT_LNK),
                    ("stdout", DT_LNK),
                    ("stderr", DT_LNK),
                    ("fd", DT_LNK),
                    ("shm", DT_DIR),
                    ("mqueue", DT_DIR),
                    ("ptmx", DT_CHR),
                    ("pts", DT_DIR),
                    ("tty", DT_CHR),
                ],
            ))),
            ["dev", "null"] => Ok(Node::Synth(Synth::Dev(DevKind::Null))),
            ["dev", "zero"] => Ok(Node::Synth(Synth::Dev(DevKind::Zero))),
            ["dev", "full"] => Ok(Node::Synth(Synth::Dev(DevKind::Full))),
            ["dev", "random"] | ["dev", "urandom"] => Ok(Node::Synth(Synth::Dev(DevKind::Random))),
            ["dev", "stdin"] => Ok(Node::Synth(Synth::Link("/proc/self/fd/0".into()))),
            ["dev", "stdout"] => Ok(Node::Synth(Synth::Link("/proc/self/fd/1".into()))),
            ["dev", "stderr"] => Ok(Node::Synth(Synth::Link("/proc/self/fd/2".into()))),
            ["dev", "fd"] => Ok(Node::Synth(Synth::Link("/proc/self/fd".into()))),
            // The caller's controlling terminal: the console, the only terminal that can be one.
            ["dev", "tty"] => {
                let console = self.vfs.console.as_ref();
                let rdev = console.and_then(|f| f.borrow().host_fd()).and_then(|h| crate::vfs::fstat_fd(h).ok()).map(|st| st.st_rdev);
                match (console, rdev) {
                    (Some(f), Some(rdev)) if ctty_is(tid, rdev) => Ok(Node::Synth(Synth::Fd(f.clone()))),
                    _ => Err(libc::ENXIO),
                }
            }
            // The terminal the sandbox was given (console socket): reachable by its name, so
            // ttyname() works; nothing else of the host's /dev/pts is.
            // and the sandbox's own devpts instance (ptmx, and the ptys opened through it).
            ["dev", "ptmx"] | ["dev", "pts", "ptmx"] if self.vfs.pts.is_some() => Ok(Node::Synth(Synth::Pty("ptmx".into()))),
            ["dev", "pts"] => Ok(Node::Synth(dir("/dev/pts", &[("ptmx", DT_CHR)]))),
            ["dev", "pts", n] => {
                let want = format!("/dev/pts/{n}");
                let found = self.fds_of(tid).borrow().map.values().find(|e| e.file.borrow().path == want).map(|e| e.file.clone());
                match found {
                    Some(f) => Ok(Node::Synth(Synth::Fd(f))),
                    None if n.bytes().all(|b| b.is_ascii_digit()) && self.pty_exists(n) => Ok(Node::Synth(Synth::Pty(n.to_string()))),
                    None => Err(libc::ENOENT),
                }
            }
            ["dev", ..] => Err(libc::ENOENT),
            ["sys"] => Ok(Node::Synth(dir("/sys", &[("devices", DT_DIR), ("fs", DT_DIR), ("kernel", DT_DIR)]))),
            ["sys", "devices"] => Ok(Node::Synth(dir("/sys/devices", &[("system", DT_DIR)]))),
            ["sys", "devices", "system"] => Ok(Node::Synth(dir("/sys/devices/system", &[("cpu", DT_DIR)]))),
            ["sys", "devices", "system", "cpu"] => {
                Ok(Node::Synth(dir("/sys/devices/system/cpu", &[("online", DT_REG), ("possible", DT_REG), ("present", DT_REG)])))
            }
            ["sys", "devices", "system", "cpu", "online" | "possible" | "present"] => {
                let n = ncpus();
                text(if n == 1 { "0\n".into() } else { format!("0-{}\n", n - 1) })
            }
            ["sys", "fs"] | ["sys", "kernel"] => Ok(Node::Synth(dir("/sys/x", &[]))),
            ["sys", ..] => Err(libc::ENOENT),
            ["proc"] => {
                let mut items: Vec<(String, u8)> = vec![
                    ("self".into(), DT_LNK),
                    ("thread-self".into(), DT_LNK),
                    ("cpuinfo".into(), DT_REG),
                    ("meminfo".into(), DT_REG),
                    ("version".into(), DT_REG),
                    ("uptime".into(), DT_REG),
                    ("loadavg".into(), DT_REG),
                    ("stat".into(), DT_REG),
                    ("mounts".into(), DT_LNK),
                    ("filesystems".into(), DT_REG),
                    ("sys".into(), DT_DIR),
                ];
                let mut pids: Vec<i32> = self.tasks.values().map(|t| t.proc.borrow().vpid).collect();
                pids.sort();
                pids.dedup();
                for p in pids {
                    items.push((p.to_string(), DT_DIR));
                }
                let refs: Vec<(&str, u8)> = items.iter().map(|(a, b)| (a.as_str(), *b)).collect();
                Ok(Node::Synth(dir("/proc", &refs)))
            }
            ["proc", "self"] => Ok(Node::Synth(Synth::Link(my_vpid.to_string()))),
            ["proc", "thread-self"] => Ok(Node::Synth(Synth::Link(format!("{my_vpid}/task/{my_vtid}")))),
            ["proc", "mounts"] => Ok(Node::Synth(Synth::Link("self/mounts".into()))),
            ["proc", "version"] => text(format!("{SYSNAME} version {RELEASE} (hako@sentry) (hako sentry, a user-space kernel) {VERSION}\n")),
            ["proc", "cpuinfo"] => text(self.cpuinfo()),
            ["proc", "meminfo"] => text(self.meminfo()),
            ["proc", "uptime"] => {
                let s = self.cfg.started.elapsed().as_secs_f64();
                text(format!("{s:.2} {s:.2}\n"))
            }
            ["proc", "loadavg"] => {
                text(format!("0.00 0.00 0.00 1/{} {}\n", self.tasks.len(), self.next_vpid - 1))
            }
            ["proc", "stat"] => {
                let mut s = String::from("cpu  0 0 0 0 0 0 0 0 0 0\n");
                for i in 0..ncpus() {
                    s += &format!("cpu{i} 0 0 0 0 0 0 0 0 0 0\n");
                }
                s += &format!("btime {}\nprocesses {}\nprocs_running 1\nprocs_blocked 0\n", self.cfg.boot_time, self.forks);
                text(s)
            }
            ["proc", "filesystems"] => text("nodev\tproc\nnodev\tsysfs\nnodev\ttmpfs\nnodev\toverlay\n".into()),
            ["proc", "sys"] => Ok(Node::Synth(dir("/proc/sys", &[("kernel", DT_DIR), ("vm", DT_DIR), ("fs", DT_DIR)]))),
            ["proc", "sys", "kernel"] => Ok(Node::Synth(dir(
                "/proc/sys/kernel",
                &[("hostname", DT_REG), ("osrelease", DT_REG), ("ostype", DT_REG), ("version", DT_REG), ("pid_max", DT_REG), ("ngroups_max", DT_REG), ("cap_last_cap", DT_REG)],
            ))),
            ["proc", "sys", "kernel", "hostname"] => text(format!("{}\n", self.cfg.hostname)),
            ["proc", "sys", "kernel", "osrelease"] => text(format!("{RELEASE}\n")),
            ["proc", "sys", "kernel", "ostype"] => text(format!("{SYSNAME}\n")),
            ["proc", "sys", "kernel", "version"] => text(format!("{VERSION}\n")),
            ["proc", "sys", "kernel", "pid_max"] => text("32768\n".into()),
            ["proc", "sys", "kernel", "ngroups_max"] => text("65536\n".into()),
            ["proc", "sys", "kernel", "cap_last_cap"] => text("40\n".into()),
            ["proc", "sys", "vm"] => Ok(Node::Synth(dir("/proc/sys/vm", &[("overcommit_memory", DT_REG)]))),
            ["proc", "sys", "vm", "overcommit_memory"] => text("0\n".into()),
            ["proc", "sys", "fs"] => Ok(Node::Synth(dir("/proc/sys/fs", &[("nr_open", DT_REG)]))),
            ["proc", "sys", "fs", "nr_open"] => text("1048576\n".into()),
            ["proc", pid, rest @ ..] => {
                let vpid: i32 = pid.parse().map_err(|_| libc::ENOENT)?;
                let host = self.host_of(vpid).ok_or(libc::ENOENT)?;
                let proc = self.tasks[&host].proc.clone();
                if proc.borrow().vpid != vpid {
                    // A thread id: only reachable under task/.
                    return Err(libc::ENOENT);
                }
                // task/<tid>: a thread of this process only; its own descriptor table.
                let (thread, rest): (i32, Vec<&str>) = match rest {
                    ["task", t, r @ ..] => {
                        let h = t.parse::<i32>().ok().and_then(|v| self.host_of(v)).ok_or(libc::ENOENT)?;
                        if !self.tasks.get(&h).is_some_and(|t| Rc::ptr_eq(&t.proc, &proc)) {
                            return Err(libc::ENOENT);
                        }
                        (h, r.to_vec())
                    }
                    // /proc/<pid>: the thread group leader's, as Linux's.
                    r => (host, r.to_vec()),
                };
                self.proc_pid(vpid, host, thread, &proc, &rest)
            }
            _ => Err(libc::ENOENT),
        }
    }

    /// /proc/<vpid>/`rest` of the process of host task `host`, as thread `thread` (a host
    /// task of it) sees it: the descriptors are that thread's (`Kernel::fds_of`), which are
    /// not the process's once it took its own table.
    fn proc_pid(
        &self,
        vpid: i32,
        host: i32,
        thread: i32,
        proc: &Rc<RefCell<Process>>,
        rest: &[&str],
    ) -> Result<Node, i32> {
        let fds = || {
            self.fds_of_any(thread)
                .unwrap_or_else(|| proc.borrow().fds.clone())
        };
        let p = proc.borrow();
        let base = format!("/proc/{vpid}");
        match rest {
            [] => Ok(Node::Synth(dir(
                &base,
                &[
                    ("status", DT_REG),
                    ("stat", DT_REG),
                    ("statm", DT_REG),
                    ("cmdline", DT_REG),
                    ("comm", DT_REG),
                    ("environ", DT_REG),
                    ("maps", DT_REG),
                    ("mounts", DT_REG),
                    ("exe", DT_LNK),
                    ("cwd", DT_LNK),
                    ("root", DT_LNK),
                    ("fd", DT_DIR),
                    ("task", DT_DIR),
                ],
            ))),
            ["exe"] => Ok(Node::Synth(Synth::Link(p.exe.clone()))),
            ["cwd"] => Ok(Node::Synth(Synth::Link(match &p.cwd {
                super::Cwd::Held(d) => d.link(&self.vfs),
                super::Cwd::Path(s) => s.clone(),
            }))),
            ["root"] => Ok(Node::Synth(Synth::Link("/".into()))),
            ["cmdline"] => Ok(Node::Synth(Synth::File(crate::hostproc::read(&format!("{host}/cmdline")).unwrap_or_default()))),
            ["environ"] => Ok(Node::Synth(Synth::File(crate::hostproc::read(&format!("{host}/environ")).unwrap_or_default()))),
            ["comm"] => text(host_file(&format!("/proc/{host}/comm"))),
            ["statm"] => text(host_file(&format!("/proc/{host}/statm"))),
            ["maps"] => text(host_file(&format!("/proc/{host}/maps")).replace(&self.vfs.root_path, "")),
            ["mounts"] => text(
                "overlay / overlay rw,relatime 0 0\nproc /proc proc rw,nosuid,nodev,noexec 0 0\nsysfs /sys sysfs ro,nosuid,nodev,noexec 0 0\ntmpfs /dev tmpfs rw,nosuid 0 0\n".into(),
            ),
            ["stat"] => {
                let s = host_file(&format!("/proc/{host}/stat"));
                let Some(close) = s.rfind(')') else { return Err(libc::ENOENT) };
                let head = &s[..=close];
                let head = match head.find(' ') {
                    Some(i) => format!("{vpid}{}", &head[i..]),
                    None => head.to_string(),
                };
                let mut f: Vec<String> = s[close + 1..].split_whitespace().map(String::from).collect();
                if f.len() > 5 {
                    f[1] = p.vppid.to_string();
                    let pg: i32 = f[2].parse().unwrap_or(0);
                    let sid: i32 = f[3].parse().unwrap_or(0);
                    f[2] = self.virt_of(pg).to_string();
                    f[3] = self.virt_of(sid).to_string();
                    f[5] = "-1".into();
                }
                text(format!("{head} {}\n", f.join(" ")))
            }
            ["status"] => {
                let hs = host_file(&format!("/proc/{host}/status"));
                let keep = |k: &str| hs.lines().find(|l| l.starts_with(k)).map(|l| format!("{l}\n")).unwrap_or_default();
                let c = &p.creds;
                let mut s = String::new();
                s += &keep("Name:");
                s += &format!("Umask:\t{:04o}\n", p.umask);
                s += &keep("State:");
                s += &format!("Tgid:\t{vpid}\nNgid:\t0\nPid:\t{vpid}\nPPid:\t{}\nTracerPid:\t0\n", p.vppid);
                s += &format!("Uid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\n", c.ruid, c.euid, c.suid, c.euid, c.rgid, c.egid, c.sgid, c.egid);
                s += &format!("FDSize:\t{}\n", 64);
                s += &format!("Groups:\t{}\n", c.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(" "));
                for k in ["VmPeak:", "VmSize:", "VmLck:", "VmHWM:", "VmRSS:", "RssAnon:", "RssFile:", "VmData:", "VmStk:", "VmExe:", "VmLib:", "VmPTE:", "VmSwap:", "Threads:", "SigQ:", "SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:", "SigCgt:"] {
                    s += &keep(k);
                }
                s += &status_lines(&c.caps);
                s += "NoNewPrivs:\t1\nSeccomp:\t2\n";
                text(s)
            }
            ["fd"] => {
                let names: Vec<String> = fds().borrow().map.keys().map(|k| k.to_string()).collect();
                let items: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), DT_LNK)).collect();
                Ok(Node::Synth(dir(&format!("{base}/fd"), &items)))
            }
            ["fd", n] => {
                let n: i32 = n.parse().map_err(|_| libc::ENOENT)?;
                let f = fds().borrow().get(n).ok_or(libc::ENOENT)?;
                Ok(Node::Synth(Synth::Fd(f)))
            }
            ["task"] => {
                let mut tids: Vec<String> = self
                    .tasks
                    .values()
                    .filter(|t| Rc::ptr_eq(&t.proc, proc))
                    .map(|t| t.vtid.to_string())
                    .collect();
                tids.sort();
                let items: Vec<(&str, u8)> = tids.iter().map(|n| (n.as_str(), DT_DIR)).collect();
                Ok(Node::Synth(dir(&format!("{base}/task"), &items)))
            }
            _ => Err(libc::ENOENT),
        }
    }

    fn cpuinfo(&self) -> String {
        let host = host_file("/proc/cpuinfo");
        let first = host.split("\n\n").next().unwrap_or("");
        let pick = |k: &str| {
            first
                .lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let mut s = String::new();
        let n = ncpus();
        for i in 0..n {
            s += &format!(
                "processor\t: {i}\nvendor_id\t: {}\ncpu family\t: {}\nmodel\t\t: {}\nmodel name\t: {}\nstepping\t: {}\ncpu MHz\t\t: {}\ncache size\t: {}\nphysical id\t: 0\nsiblings\t: {n}\ncore id\t\t: {i}\ncpu cores\t: {n}\nfpu\t\t: yes\nflags\t\t: {}\nbogomips\t: {}\naddress sizes\t: {}\n\n",
                pick("vendor_id"),
                pick("cpu family"),
                pick("model\t"),
                pick("model name"),
                pick("stepping"),
                pick("cpu MHz"),
                pick("cache size"),
                pick("flags"),
                pick("bogomips"),
                pick("address sizes"),
            );
        }
        s
    }

    fn meminfo(&self) -> String {
        let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: sysinfo into a local struct.
        unsafe { libc::sysinfo(&mut si) };
        let unit = si.mem_unit.max(1) as u64;
        let mut total = si.totalram as u64 * unit / 1024;
        if let Some(l) = self.cfg.mem_limit {
            total = total.min(l / 1024);
        }
        let free = (si.freeram as u64 * unit / 1024).min(total);
        format!(
            "MemTotal:       {total} kB\nMemFree:        {free} kB\nMemAvailable:   {free} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapCached:            0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nShmem:                 0 kB\n"
        )
    }
}
