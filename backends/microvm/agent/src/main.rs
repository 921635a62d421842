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
    hako_linux::inroot::join(root, Path::new(dest)).map_err(|e| format!("{dest}: {e}"))
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

/// How a forked child enters the workload's world.
enum Entry {
    /// The workload: its own mount namespace, pivot_root into the overlay, then it waits on
    /// this pipe for the host's Start before exec.
    Workload { start_r: RawFd },
    /// A `hako exec` process: joins the workload's mount namespace (an fd of
    /// `/proc/<workload>/ns/mnt`) and execs at once.
    Join { mnt_ns: RawFd },
}

/// One process whose stdio the agent relays: the workload (`tag` None, frames untagged) or an
/// exec'd process (`tag` Some(id), frames inside [`Frame::Tagged`]).
struct Proc {
    tag: Option<u32>,
    pid: libc::pid_t,
    stdin_w: Option<OwnedFd>,
    stdout_r: Option<OwnedFd>,
    stderr_r: Option<OwnedFd>,
    /// The pty master when `terminal`.
    pty: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    stdin_eof: bool,
    status: Option<ExitStatus>,
}

/// A forked child before it runs: `status_r` is a CLOEXEC pipe on which it writes an error
/// when it cannot be set up or exec (EOF means it exec'd; the workload writes b'R' first).
struct Spawned {
    proc: Proc,
    status_r: OwnedFd,
    start_w: Option<OwnedFd>,
}

fn spawn(
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
fn read_status(status_r: &OwnedFd, first: &[u8]) -> String {
    let mut msg = first.to_vec();
    if let Ok(fd) = status_r.try_clone() {
        let _ = fs::File::from(fd).read_to_end(&mut msg);
    }
    String::from_utf8_lossy(&msg).into_owned()
}

/// The forked workload, blocked before exec until the host's Start frame.
struct Workload {
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
    fn spawn(cfg: &GuestConfig, seccomp: Option<Vec<Vec<u8>>>) -> Res<Self> {
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
    fn supervise(mut self, mut port: fs::File) -> Res<()> {
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

impl Proc {
    /// Write what is buffered for its stdin; close it (or type ^D on its terminal) at EOF.
    fn feed_stdin(&mut self) {
        let target = self
            .stdin_w
            .as_ref()
            .or(self.pty.as_ref())
            .map(|f| f.as_raw_fd());
        let Some(fd) = target else { return };
        if !self.stdin_buf.is_empty() {
            // SAFETY: write from our buffer.
            let n =
                unsafe { libc::write(fd, self.stdin_buf.as_ptr().cast(), self.stdin_buf.len()) };
            if n > 0 {
                self.stdin_buf.drain(..n as usize);
            } else if n < 0 && errno().raw_os_error() == Some(libc::EPIPE) {
                self.stdin_buf.clear();
            }
        }
        if self.stdin_eof && self.stdin_buf.is_empty() {
            if self.stdin_w.take().is_none() {
                if let Some(p) = &self.pty {
                    // ^D on the terminal, as a person typing EOF would.
                    // SAFETY: write one byte.
                    unsafe { libc::write(p.as_raw_fd(), b"\x04".as_ptr().cast(), 1) };
                }
            }
            self.stdin_eof = false;
        }
    }

    /// Relay what its output fds hold now (all of it when they are blocking), then close them.
    fn drain(&mut self, port: &mut fs::File, buf: &mut [u8]) -> Res<()> {
        for (i, out) in [(0, true), (1, false), (2, true)] {
            loop {
                let src = match i {
                    0 => &mut self.stdout_r,
                    1 => &mut self.stderr_r,
                    _ => &mut self.pty,
                };
                if src.is_none() || !relay(src, port, buf, self.tag, out)? {
                    break;
                }
            }
            match i {
                0 => self.stdout_r = None,
                1 => self.stderr_r = None,
                _ => self.pty = None,
            }
        }
        Ok(())
    }
}

/// Send a frame about the workload (`tag` None) or exec `tag`.
fn send(port: &mut fs::File, tag: Option<u32>, f: Frame) -> Res<()> {
    let f = match tag {
        Some(id) => Frame::Tagged(id, Box::new(f)),
        None => f,
    };
    port.write_all(&f.encode())
        .map_err(|e| format!("write agent port: {e}"))
}

/// Read what is there from `src` and send it as frames; close `src` at EOF. True when it read
/// something (more may follow).
fn relay(
    src: &mut Option<OwnedFd>,
    port: &mut fs::File,
    buf: &mut [u8],
    tag: Option<u32>,
    stdout: bool,
) -> Res<bool> {
    let Some(fd) = src.as_ref() else {
        return Ok(false);
    };
    // Leave room for the tag in the frame's payload limit.
    let chunk = buf.len().min(proto::MAX_PAYLOAD / 2);
    // SAFETY: read into our buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), chunk) };
    if n > 0 {
        let d = buf[..n as usize].to_vec();
        send(
            port,
            tag,
            if stdout {
                Frame::Stdout(d)
            } else {
                Frame::Stderr(d)
            },
        )?;
        return Ok(true);
    }
    if n == 0 || errno().raw_os_error() != Some(libc::EAGAIN) {
        // EOF, or EIO on a pty master whose slave side is all closed.
        *src = None;
    }
    Ok(false)
}

/// Reap children: those that have ended (`block` false), or every child until none is left
/// (`block` true, after they were all killed).
fn reap_all(block: bool) -> Vec<(libc::pid_t, ExitStatus)> {
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
        "exec: {a0:?}: executable file not found in $PATH ({})",
        if p.path_dirs.is_empty() {
            "process.env has no PATH".to_string()
        } else {
            p.path_dirs.join(":")
        }
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
