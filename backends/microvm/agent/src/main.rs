//! hako-agent: the guest's `/init` in a hako microvm.
//!
//! 1. Mounts /proc, /sys, /dev and a tmpfs at /mnt on the agent disk (the kernel's root).
//! 2. Opens the agent port (`/dev/hvc0`, raw mode) and reads the config disk.
//! 3. Mounts the rootfs image read-only, an overlay on a tmpfs upper over it, the spec's mounts.
//! 4. Forks the workload: new mount namespace, pivot_root into the overlay, rlimits, user,
//!    capabilities, seccomp; it waits for the host's Start frame, then execs.
//! 5. Relays stdio as frames, forwards signals, reports the exit status as the last frame and
//!    restarts the machine (the engines run the guest with `reboot=t` and treat a reset as the
//!    end of the VM).

use hako_agent::proto::{
    self, ConfigDisk, EntryKind, ExitStatus, Frame, FrameReader, GuestConfig, MountKind,
};
use std::ffi::{CStr, CString};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

type Res<T> = Result<T, String>;

const PORT: &str = "/dev/hvc0";
const NEWROOT: &str = "/mnt/root";

/// `CLOCK_BOOTTIME` (ns) when `main()` began: the guest kernel's boot time as far as the guest
/// can tell (that clock starts at the kernel's timekeeping init, so the very first instructions
/// of the kernel are not in it; under TCG it is the emulator's virtual time).
static AGENT_START_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn boottime_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The BootTimes frame sent right before Ready.
fn boot_times() -> Frame {
    Frame::BootTimes {
        agent_start_ns: AGENT_START_NS.load(std::sync::atomic::Ordering::Relaxed),
        ready_ns: boottime_ns(),
    }
}

fn main() {
    AGENT_START_NS.store(boottime_ns(), std::sync::atomic::Ordering::Relaxed);
    if std::process::id() != 1 {
        eprintln!("hako-agent: this is the guest init of a hako microvm; it must run as pid 1");
        std::process::exit(2);
    }
    let mut port: Option<fs::File> = None;
    let err = run(&mut port).err();
    if let Some(e) = err {
        let msg = format!("guest agent: {e}");
        // The kernel log (serial) always gets it; the host parses the port.
        log(&msg);
        if let Some(p) = port.as_mut() {
            let _ = p.write_all(&Frame::Error(msg).encode());
        }
    }
    if let Some(p) = port.as_ref() {
        // SAFETY: tcdrain on our fd.
        unsafe { libc::tcdrain(p.as_raw_fd()) };
    }
    power_off();
}

fn log(msg: &str) {
    // /dev/console (our stdio from the kernel) is the serial port.
    let _ = writeln!(std::io::stderr(), "hako-agent: {msg}");
}

fn power_off() -> ! {
    // SAFETY: plain syscalls.
    unsafe {
        libc::sync();
        // With `reboot=t` a restart is a triple fault, which both engines turn into "VM ended";
        // RB_POWER_OFF would only halt a guest without ACPI.
        libc::reboot(libc::RB_AUTOBOOT);
        loop {
            libc::pause();
        }
    }
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn cstr(s: &str) -> Res<CString> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

fn cpath(p: &Path) -> Res<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", p.display()))
}

fn mount(src: &str, target: &Path, fstype: &str, flags: u64, data: &str) -> Res<()> {
    let (s, t, f, d) = (cstr(src)?, cpath(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            if fstype.is_empty() {
                std::ptr::null()
            } else {
                f.as_ptr()
            },
            flags as libc::c_ulong,
            if data.is_empty() {
                std::ptr::null()
            } else {
                d.as_ptr().cast()
            },
        )
    };
    if r != 0 {
        return Err(format!(
            "mount {src} on {} ({fstype}): {}",
            target.display(),
            errno()
        ));
    }
    Ok(())
}

fn mkdir_p(p: &Path) -> Res<()> {
    fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))
}

fn run(port_slot: &mut Option<fs::File>) -> Res<()> {
    // SAFETY: umask is always safe.
    unsafe { libc::umask(0o022) };
    let _ = mount("proc", Path::new("/proc"), "proc", 0, "");
    let _ = mount("sysfs", Path::new("/sys"), "sysfs", 0, "");
    if !Path::new("/dev/null").exists() {
        mount("devtmpfs", Path::new("/dev"), "devtmpfs", 0, "")?;
    }
    mount("tmpfs", Path::new("/mnt"), "tmpfs", 0, "mode=0755")?;

    let port = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(PORT)
        .map_err(|e| format!("open agent port {PORT}: {e}"))?;
    make_raw(port.as_raw_fd())?;
    *port_slot = Some(port.try_clone().map_err(|e| e.to_string())?);

    let (disk, rootfs_dev) = find_disks()?;
    let cfg = &disk.config;

    // The workload's root: the read-only image, an overlay with its upper on a tmpfs.
    let lower = Path::new("/mnt/lower");
    let rw = Path::new("/mnt/rw");
    let newroot = Path::new(NEWROOT);
    for d in [lower, rw, newroot] {
        mkdir_p(d)?;
    }
    mount(&rootfs_dev, lower, "ext4", libc::MS_RDONLY, "")?;
    mount(
        "tmpfs",
        rw,
        "tmpfs",
        0,
        &format!("size={}m,mode=0755", cfg.overlay_size_mib.max(1)),
    )?;
    mkdir_p(&rw.join("upper"))?;
    mkdir_p(&rw.join("work"))?;
    mkdir_p(&rw.join("carried"))?;
    mount(
        "overlay",
        newroot,
        "overlay",
        0,
        "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work",
    )?;

    if let Some(limit) = cfg.pids_limit {
        pids_cgroup(limit)?;
    }
    setup_mounts(&disk, newroot, rw)?;
    if cfg.readonly_root {
        mount(
            "",
            newroot,
            "",
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            "",
        )?;
    }
    if let Some(h) = &cfg.hostname {
        // SAFETY: pointer and length of a live buffer.
        if unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } != 0 {
            return Err(format!("sethostname {h:?}: {}", errno()));
        }
    }
    // The guest kernel has no IP stack (vsock only): a net.<proto>.* sysctl for a protocol the
    // kernel lacks (docker sends net.ipv4.ip_unprivileged_port_start on every run) governs a
    // network that does not exist, so whatever it restricts holds already. Anything else must apply.
    for (k, v) in &cfg.sysctl {
        let mut parts = k.split('.');
        if let (Some("net"), Some(proto)) = (parts.next(), parts.next()) {
            if !PathBuf::from("/proc/sys/net").join(proto).exists() {
                continue;
            }
        }
        let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        fs::write(&p, v).map_err(|e| format!("sysctl {k}={v}: {e}"))?;
    }

    let seccomp_prog = match &cfg.seccomp {
        Some(s) => Some(
            s.programs
                .iter()
                .map(|b| disk.blob(*b).map(<[u8]>::to_vec))
                .collect::<Res<Vec<_>>>()?,
        ),
        None => None,
    };
    Workload::spawn(cfg, seccomp_prog)?.supervise(port)
}

const WORKLOAD_CGROUP: &str = "/sys/fs/cgroup/workload";

/// `linux.resources.pids.limit`: a guest cgroup v2 the workload joins before exec.
fn pids_cgroup(limit: i64) -> Res<()> {
    let root = Path::new("/sys/fs/cgroup");
    mount(
        "cgroup2",
        root,
        "cgroup2",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    )?;
    fs::write(root.join("cgroup.subtree_control"), "+pids")
        .map_err(|e| format!("enable the pids controller: {e}"))?;
    mkdir_p(Path::new(WORKLOAD_CGROUP))?;
    fs::write(
        Path::new(WORKLOAD_CGROUP).join("pids.max"),
        limit.to_string(),
    )
    .map_err(|e| format!("pids.max: {e}"))
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}
impl NoCtty for fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
    }
}

fn make_raw(fd: RawFd) -> Res<()> {
    // SAFETY: termios calls on an fd we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(format!("tcgetattr agent port: {}", errno()));
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(format!("tcsetattr agent port: {}", errno()));
        }
    }
    Ok(())
}

/// Find the config disk (by its magic) and the rootfs disk (by its ext4 label).
fn find_disks() -> Res<(ConfigDisk, String)> {
    let mut config = None;
    let mut rootfs = None;
    let mut seen = vec![];
    let entries = fs::read_dir("/sys/block").map_err(|e| format!("/sys/block: {e}"))?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        if !name.starts_with("vd") {
            continue;
        }
        let dev = format!("/dev/{name}");
        let mut f = match fs::File::open(&dev) {
            Ok(f) => f,
            Err(e) => return Err(format!("open {dev}: {e}")),
        };
        let mut head = vec![0u8; 2048];
        let n = read_full(&mut f, &mut head).map_err(|e| format!("read {dev}: {e}"))?;
        head.truncate(n);
        seen.push(name.clone());
        if head.starts_with(proto::CONFIG_MAGIC) {
            let mut all = head;
            f.read_to_end(&mut all)
                .map_err(|e| format!("read {dev}: {e}"))?;
            config = Some(ConfigDisk::parse(&all).map_err(|e| format!("{dev}: {e}"))?);
        } else if head.len() >= 1024 + 136 && head[1024 + 56..1024 + 58] == [0x53, 0xef] {
            let label = &head[1024 + 120..1024 + 136];
            let label = label.split(|&b| b == 0).next().unwrap_or_default();
            if label == proto::ROOTFS_LABEL.as_bytes() {
                rootfs = Some(dev);
            }
        }
    }
    match (config, rootfs) {
        (Some(c), Some(r)) => Ok((c, r)),
        (None, _) => Err(format!("no config disk among the virtio disks {seen:?}")),
        (_, None) => Err(format!(
            "no rootfs disk (ext4 labelled {}) among {seen:?}",
            proto::ROOTFS_LABEL
        )),
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Resolve `dest` (absolute, in the workload's view) below `root` without following symlinks out
/// of it: a symlink met on the way is resolved relative to `root`.
fn resolve_in_root(root: &Path, dest: &str) -> Res<PathBuf> {
    let mut out = root.to_path_buf();
    let mut todo: Vec<String> = dest
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .rev()
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                if out != root {
                    out.pop();
                }
                continue;
            }
            _ => {}
        }
        let next = out.join(&c);
        match fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("too many symlinks resolving {dest}"));
                }
                let target = fs::read_link(&next).map_err(|e| e.to_string())?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    out = root.to_path_buf();
                }
                todo.extend(
                    t.split('/')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .rev(),
                );
            }
            _ => out = next,
        }
    }
    Ok(out)
}

fn setup_mounts(disk: &ConfigDisk, root: &Path, rw: &Path) -> Res<()> {
    let cfg = &disk.config;
    let mut dev_is_tmpfs = false;
    let mut has_dev = false;
    for (i, m) in cfg.mounts.iter().enumerate() {
        let target = resolve_in_root(root, &m.destination)?;
        match &m.kind {
            MountKind::Kernel {
                fstype,
                source,
                flags,
                data,
            } => {
                mkdir_p(&target)?;
                if m.destination == "/dev" {
                    has_dev = true;
                    dev_is_tmpfs = fstype == "tmpfs";
                }
                // Read-only as a property of this mount, not of the file system: proc, sysfs and
                // cgroup2 have one superblock per guest, which the agent still writes to.
                mount(source, &target, fstype, *flags & !libc::MS_RDONLY, data)?;
                if flags & libc::MS_RDONLY != 0 {
                    let keep = flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
                    mount(
                        "",
                        &target,
                        "",
                        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep,
                        "",
                    )?;
                }
            }
            MountKind::Carried {
                entries,
                readonly,
                flags,
            } => {
                let stage = rw.join("carried").join(i.to_string());
                let is_dir = !matches!(
                    entries.first().map(|e| &e.kind),
                    Some(EntryKind::File { .. })
                );
                for e in entries {
                    let p = if e.path.is_empty() {
                        stage.clone()
                    } else {
                        stage.join(&e.path)
                    };
                    match &e.kind {
                        EntryKind::Dir => mkdir_p(&p)?,
                        EntryKind::File { data } => {
                            if let Some(parent) = p.parent() {
                                mkdir_p(parent)?;
                            }
                            fs::write(&p, disk.blob(*data)?)
                                .map_err(|er| format!("{}: {er}", p.display()))?
                        }
                        EntryKind::Symlink { target } => {
                            symlink(target, &p).map_err(|er| format!("{}: {er}", p.display()))?
                        }
                    }
                    if !matches!(e.kind, EntryKind::Symlink { .. }) {
                        let _ =
                            fs::set_permissions(&p, fs::Permissions::from_mode(e.mode & 0o7777));
                    }
                    let c = cpath(&p)?;
                    // SAFETY: valid path.
                    unsafe { libc::lchown(c.as_ptr(), e.uid, e.gid) };
                }
                if is_dir {
                    mkdir_p(&target)?;
                } else if !target.exists() {
                    if let Some(parent) = target.parent() {
                        mkdir_p(parent)?;
                    }
                    fs::write(&target, b"").map_err(|e| format!("{}: {e}", target.display()))?;
                }
                mount(
                    &stage.to_string_lossy(),
                    &target,
                    "",
                    libc::MS_BIND | libc::MS_REC,
                    "",
                )?;
                if *readonly || flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) != 0 {
                    let ro = if *readonly { libc::MS_RDONLY } else { 0 };
                    mount(
                        "",
                        &target,
                        "",
                        libc::MS_REMOUNT | libc::MS_BIND | ro | flags,
                        "",
                    )?;
                }
            }
        }
    }
    let dev = root.join("dev");
    if !has_dev {
        // No /dev in the spec: give the workload the guest's devtmpfs.
        mkdir_p(&dev)?;
        mount("devtmpfs", &dev, "devtmpfs", libc::MS_NOSUID, "")?;
    } else if dev_is_tmpfs {
        default_devices(&dev)?;
    }
    for p in &cfg.masked_paths {
        let t = resolve_in_root(root, p)?;
        match fs::metadata(&t) {
            Ok(m) if m.is_dir() => mount("tmpfs", &t, "tmpfs", libc::MS_RDONLY, "size=0")?,
            Ok(_) => mount("/dev/null", &t, "", libc::MS_BIND, "")?,
            Err(_) => {}
        }
    }
    for p in &cfg.readonly_paths {
        let t = resolve_in_root(root, p)?;
        if t.exists() {
            mount(
                &t.to_string_lossy(),
                &t,
                "",
                libc::MS_BIND | libc::MS_REC,
                "",
            )?;
            mount(
                "",
                &t,
                "",
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_REC,
                "",
            )?;
        }
    }
    Ok(())
}

/// The devices every OCI container gets (runtime-spec "Default Devices"), on a tmpfs /dev.
fn default_devices(dev: &Path) -> Res<()> {
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        let c = cpath(&p)?;
        // SAFETY: valid path; mknod of a char device as root in the guest.
        let r = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        if r != 0 && errno().raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("mknod {}: {}", p.display(), errno()));
        }
        // SAFETY: valid path.
        unsafe { libc::chmod(c.as_ptr(), 0o666) };
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let _ = symlink(target, dev.join(name));
    }
    Ok(())
}

fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", errno()));
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl on our fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// The forked workload, blocked before exec until the host's Start frame.
struct Workload {
    pid: libc::pid_t,
    /// Writing one byte lets the workload exec.
    start_w: Option<OwnedFd>,
    /// CLOEXEC pipe: the workload writes an error here when it cannot exec; EOF means it did.
    status_r: OwnedFd,
    stdin_w: Option<OwnedFd>,
    stdout_r: Option<OwnedFd>,
    stderr_r: Option<OwnedFd>,
    /// The pty master when `terminal`.
    pty: Option<OwnedFd>,
}

impl Workload {
    fn spawn(cfg: &GuestConfig, seccomp: Option<Vec<Vec<u8>>>) -> Res<Self> {
        let (start_r, start_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        // Child's stdio: pipes, or a pty made here (devpts mounted on the agent's /dev/pts).
        let mut pty = None;
        let mut child_io: [Option<OwnedFd>; 3] = [None, None, None];
        let (mut stdin_w, mut stdout_r, mut stderr_r) = (None, None, None);
        let mut pty_sock = None;
        if cfg.terminal {
            // The workload makes its pty inside its own root (so its devpts knows it: ttyname
            // works) and sends us the master over this socket.
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
        // Everything the child needs, prepared before fork (no allocation after it is needed,
        // but the agent is single-threaded so it would be safe anyway).
        let prep = Prepared::new(cfg)?;

        // SAFETY: single-threaded process; the child only runs `child_main`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", errno()));
        }
        if pid == 0 {
            drop(start_w);
            drop(status_r);
            let err = child_main(
                &prep,
                cfg,
                &child_io,
                start_r.as_raw_fd(),
                status_w.as_raw_fd(),
                seccomp,
            );
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
        if let Some(sock) = pty_sock {
            pty = recv_fd(&sock);
        }
        // The child tells us it is ready with one b'R' on the status pipe, or sends an error.
        let mut w = Workload {
            pid,
            start_w: Some(start_w),
            status_r,
            stdin_w,
            stdout_r,
            stderr_r,
            pty,
        };
        let mut b = [0u8; 1];
        // SAFETY: read into a 1-byte buffer.
        let n = unsafe { libc::read(w.status_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n == 1 && b[0] == b'R' {
            return Ok(w);
        }
        let mut msg = if n == 1 { vec![b[0]] } else { vec![] };
        let mut f = fs::File::from(w.status_r.try_clone().map_err(|e| e.to_string())?);
        let _ = f.read_to_end(&mut msg);
        w.start_w = None;
        let mut st = 0;
        // SAFETY: reap our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        Err(if msg.is_empty() {
            "the workload process died while being set up".into()
        } else {
            String::from_utf8_lossy(&msg).into_owned()
        })
    }

    /// Report ready, wait for Start, relay until the workload exits; send its status.
    fn supervise(mut self, mut port: fs::File) -> Res<()> {
        let _ = port.write_all(&boot_times().encode());
        port.write_all(&Frame::Ready.encode())
            .map_err(|e| format!("write agent port: {e}"))?;
        let sfd = sigchld_fd()?;
        let mut reader = FrameReader::new();
        let mut stdin_buf: Vec<u8> = vec![];
        let mut stdin_eof = false;
        let mut exec_error: Option<String> = None;
        let mut status: Option<ExitStatus> = None;
        let mut port_open = true;
        for fd in [&self.stdout_r, &self.stderr_r, &self.pty]
            .into_iter()
            .flatten()
        {
            set_nonblock(fd.as_raw_fd());
        }
        if let Some(w) = &self.stdin_w {
            set_nonblock(w.as_raw_fd());
        }
        let mut buf = vec![0u8; 32 * 1024];
        while status.is_none() {
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
            push(self.status_r.as_raw_fd(), libc::POLLIN);
            push(
                self.stdout_r.as_ref().map_or(-1, |f| f.as_raw_fd()),
                libc::POLLIN,
            );
            push(
                self.stderr_r.as_ref().map_or(-1, |f| f.as_raw_fd()),
                libc::POLLIN,
            );
            let pty_ev = libc::POLLIN
                | if stdin_buf.is_empty() {
                    0
                } else {
                    libc::POLLOUT
                };
            push(self.pty.as_ref().map_or(-1, |f| f.as_raw_fd()), pty_ev);
            let stdin_fd = match &self.stdin_w {
                Some(w) if !stdin_buf.is_empty() => w.as_raw_fd(),
                _ => -1,
            };
            push(stdin_fd, libc::POLLOUT);
            // SAFETY: pfds is a valid array.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
            if r < 0 {
                if errno().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(format!("poll: {}", errno()));
            }
            let ready = |i: usize| pfds[i].revents != 0;
            // Host frames.
            if ready(1) {
                match port.read(&mut buf) {
                    Ok(0) | Err(_) => port_open = false,
                    Ok(n) => reader.push(&buf[..n]),
                }
                loop {
                    match reader.next_frame() {
                        Ok(Some(Frame::Start)) => {
                            if let Some(w) = self.start_w.take() {
                                // SAFETY: write one byte to our pipe.
                                unsafe { libc::write(w.as_raw_fd(), b"S".as_ptr().cast(), 1) };
                            }
                        }
                        Ok(Some(Frame::Stdin(d))) => stdin_buf.extend_from_slice(&d),
                        Ok(Some(Frame::StdinEof)) => stdin_eof = true,
                        Ok(Some(Frame::Signal(s))) => {
                            // SAFETY: signal our child.
                            unsafe { libc::kill(self.pid, s) };
                        }
                        Ok(Some(Frame::SignalAll(s))) => {
                            // SAFETY: from pid 1, kill(-1) reaches every other process.
                            unsafe { libc::kill(-1, s) };
                        }
                        Ok(Some(Frame::Winsize(r, c))) => {
                            if let Some(p) = &self.pty {
                                set_winsize(p.as_raw_fd(), r, c);
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => return Err(format!("agent port: {e}")),
                    }
                }
            }
            // Exec failure message.
            if ready(2) {
                let mut m = vec![0u8; 4096];
                // SAFETY: read into our buffer.
                let n = unsafe {
                    libc::read(self.status_r.as_raw_fd(), m.as_mut_ptr().cast(), m.len())
                };
                if n > 0 {
                    m.truncate(n as usize);
                    exec_error
                        .get_or_insert_with(String::new)
                        .push_str(&String::from_utf8_lossy(&m));
                }
            }
            if ready(3) {
                relay(&mut self.stdout_r, &mut port, &mut buf, true)?;
            }
            if ready(4) {
                relay(&mut self.stderr_r, &mut port, &mut buf, false)?;
            }
            if ready(5) && pfds[5].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                relay(&mut self.pty, &mut port, &mut buf, true)?;
            }
            // Stdin to the workload.
            let stdin_target = self
                .stdin_w
                .as_ref()
                .or(self.pty.as_ref())
                .map(|f| f.as_raw_fd());
            if let Some(fd) = stdin_target {
                if !stdin_buf.is_empty() {
                    // SAFETY: write from our buffer.
                    let n = unsafe { libc::write(fd, stdin_buf.as_ptr().cast(), stdin_buf.len()) };
                    if n > 0 {
                        stdin_buf.drain(..n as usize);
                    } else if n < 0 && errno().raw_os_error() == Some(libc::EPIPE) {
                        stdin_buf.clear();
                    }
                }
                if stdin_eof && stdin_buf.is_empty() {
                    if self.stdin_w.take().is_none() {
                        if let Some(p) = &self.pty {
                            // ^D on the terminal, as a person typing EOF would.
                            // SAFETY: write one byte.
                            unsafe { libc::write(p.as_raw_fd(), b"\x04".as_ptr().cast(), 1) };
                        }
                    }
                    stdin_eof = false;
                }
            }
            if ready(0) {
                drain_signalfd(&sfd);
                status = reap(self.pid);
            }
        }
        // The workload is gone: stop everything it left behind, then flush its output.
        // SAFETY: kill(-1) from pid 1 signals every other process.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        while reap(-1).is_some() {}
        for (src, out) in [
            (&mut self.stdout_r, true),
            (&mut self.stderr_r, false),
            (&mut self.pty, true),
        ] {
            if let Some(fd) = src.as_ref() {
                // SAFETY: fcntl on our fd.
                unsafe {
                    let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
                }
            }
            while src.is_some() {
                relay(src, &mut port, &mut buf, out)?;
            }
        }
        let mut status = status.expect("loop ends with a status");
        if let Some(e) = exec_error {
            port.write_all(&Frame::Error(e).encode())
                .map_err(|e| format!("write agent port: {e}"))?;
            status = ExitStatus::Exited(127);
        }
        port.write_all(&Frame::Exit(status).encode())
            .map_err(|e| format!("write agent port: {e}"))?;
        Ok(())
    }
}

/// Read what is there from `src` and send it as frames; close `src` at EOF.
fn relay(src: &mut Option<OwnedFd>, port: &mut fs::File, buf: &mut [u8], stdout: bool) -> Res<()> {
    let Some(fd) = src.as_ref() else {
        return Ok(());
    };
    let chunk = buf.len().min(proto::MAX_PAYLOAD);
    // SAFETY: read into our buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), chunk) };
    if n > 0 {
        let d = buf[..n as usize].to_vec();
        let f = if stdout {
            Frame::Stdout(d)
        } else {
            Frame::Stderr(d)
        };
        port.write_all(&f.encode())
            .map_err(|e| format!("write agent port: {e}"))?;
    } else if n == 0 || errno().raw_os_error() != Some(libc::EAGAIN) {
        // EOF, or EIO on a pty master whose slave side is all closed.
        *src = None;
    }
    Ok(())
}

fn sigchld_fd() -> Res<OwnedFd> {
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

fn drain_signalfd(fd: &OwnedFd) {
    let mut b = [0u8; 128];
    // SAFETY: read into our buffer.
    while unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) } > 0 {}
}

/// Reap children without blocking; the status of `pid` when it was among them (any child's when
/// `pid` is -1).
fn reap(pid: libc::pid_t) -> Option<ExitStatus> {
    let mut found = None;
    loop {
        let mut st = 0;
        // SAFETY: waitpid on our children.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r <= 0 {
            return found;
        }
        if r == pid || pid == -1 {
            found = Some(if libc::WIFSIGNALED(st) {
                ExitStatus::Signaled(libc::WTERMSIG(st))
            } else {
                ExitStatus::Exited(libc::WEXITSTATUS(st))
            });
            if pid == -1 {
                return found;
            }
        }
    }
}

fn openpty(ptmx: &str, size: Option<(u16, u16)>) -> Res<(OwnedFd, OwnedFd)> {
    let path = cstr(ptmx)?;
    // SAFETY: open and the pty ioctls on fds we own.
    unsafe {
        let m = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if m < 0 {
            return Err(format!("open {ptmx}: {}", errno()));
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(format!("unlockpt: {}", errno()));
        }
        let mut name = [0 as libc::c_char; 64];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(format!("ptsname: {}", errno()));
        }
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(format!(
                "open {:?}: {}",
                CStr::from_ptr(name.as_ptr()),
                errno()
            ));
        }
        if let Some((r, c)) = size {
            set_winsize(m, r, c);
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}

fn unix_pair() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair into a 2-element array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(format!("socketpair: {}", errno()));
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Send `fd` over the unix socket `sock` (SCM_RIGHTS).
fn send_fd(sock: RawFd, fd: RawFd) -> Res<()> {
    // SAFETY: a correctly sized control buffer for one fd.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        if libc::sendmsg(sock, &msg, 0) < 0 {
            return Err(format!("sending the pty master: {}", errno()));
        }
    }
    Ok(())
}

/// Receive one fd sent by [`send_fd`]; None when the peer closed without sending.
fn recv_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    // SAFETY: a correctly sized control buffer for one fd.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        if libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) <= 0 {
            return None;
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        Some(OwnedFd::from_raw_fd(std::ptr::read_unaligned(
            libc::CMSG_DATA(c).cast::<RawFd>(),
        )))
    }
}

fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid struct.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// What the child needs, as C data, made before fork.
struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    path_dirs: Vec<String>,
    cwd: CString,
}

impl Prepared {
    fn new(cfg: &GuestConfig) -> Res<Self> {
        if cfg.args.is_empty() {
            return Err("process.args is empty".into());
        }
        let argv = cfg.args.iter().map(|a| cstr(a)).collect::<Res<Vec<_>>>()?;
        let envp = cfg.env.iter().map(|a| cstr(a)).collect::<Res<Vec<_>>>()?;
        let path = cfg
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        Ok(Self {
            argv,
            envp,
            path_dirs: path.split(':').map(String::from).collect(),
            cwd: cstr(if cfg.cwd.is_empty() { "/" } else { &cfg.cwd })?,
        })
    }
}

fn sys(r: libc::c_long, what: &str) -> Res<()> {
    if r < 0 {
        Err(format!("{what}: {}", errno()))
    } else {
        Ok(())
    }
}

/// The workload process between fork and exec. Returns only with an error.
fn child_main(
    p: &Prepared,
    cfg: &GuestConfig,
    io: &[Option<OwnedFd>; 3],
    start_r: RawFd,
    status_w: RawFd,
    seccomp: Option<Vec<Vec<u8>>>,
) -> Res<std::convert::Infallible> {
    // SAFETY: the raw system calls of a runtime's init step, in a freshly forked child.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        sys(libc::setsid() as libc::c_long, "setsid")?;
        if cfg.terminal {
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
        // Own mount namespace; pivot into the workload's root so the agent disk is out of sight.
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
        if cfg.terminal {
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
            let (m, s) = openpty(ptmx, cfg.console_size)?;
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

        for r in &cfg.rlimits {
            let lim = libc::rlimit64 {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            if libc::prlimit64(0, r.resource as _, &lim, std::ptr::null_mut()) != 0 {
                return Err(format!("setrlimit {}: {}", r.resource, errno()));
            }
        }
        if let Some(adj) = cfg.oom_score_adj {
            let _ = fs::write("/proc/self/oom_score_adj", adj.to_string());
        }
        // Bounding set first (needs CAP_SETPCAP), then the identity, then the other sets.
        if let Some(caps) = &cfg.capabilities {
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
        if !cfg.no_new_privileges {
            for prog in seccomp.iter().flatten() {
                load_seccomp(prog, cfg.seccomp.as_ref().map_or(0, |s| s.flags))?;
            }
        }
        let gids: Vec<libc::gid_t> = cfg.additional_gids.clone();
        sys(
            libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()),
            "setgroups",
        )?;
        sys(
            libc::syscall(libc::SYS_setresgid, cfg.gid, cfg.gid, cfg.gid),
            "setresgid",
        )?;
        sys(
            libc::syscall(libc::SYS_setresuid, cfg.uid, cfg.uid, cfg.uid),
            "setresuid",
        )?;
        if let Some(caps) = &cfg.capabilities {
            set_caps(caps)?;
        }
        if cfg.no_new_privileges {
            sys(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long,
                "PR_SET_NO_NEW_PRIVS",
            )?;
        }
        libc::umask(cfg.umask.unwrap_or(0o022) as libc::mode_t);
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            return Err(format!("cwd {:?}: {}", p.cwd, errno()));
        }
        let exe = find_exe(p)?;

        // Ready: wait for the host's Start.
        libc::write(status_w, b"R".as_ptr().cast(), 1);
        let mut b = [0u8; 1];
        if libc::read(start_r, b.as_mut_ptr().cast(), 1) != 1 {
            libc::_exit(0);
        }
        if cfg.no_new_privileges {
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
fn find_exe(p: &Prepared) -> Res<CString> {
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
        "exec {a0:?}: executable file not found in $PATH ({})",
        p.path_dirs.join(":")
    ))
}

fn load_seccomp(prog: &[u8], flags: u64) -> Res<()> {
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

fn set_caps(c: &proto::Capabilities) -> Res<()> {
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
