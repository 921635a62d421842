//! The template cache of snapshot boot (docs/backends/microvm.md, "Snapshot boot").
//!
//! A template is a guest booted to the point where its agent waits for its sandbox
//! ([`hako_agent::proto::Frame::Template`]), saved by the engine
//! ([`Engine::make_template`]). It lives in `<root>/microvm-cache/templates/<key>/`, where `key` is a
//! hash of everything that went into it ([`Inputs`]: the kernel's and the agent disk's contents,
//! the engine and its version, vCPUs, memory, the command line, the device layout). Its
//! `manifest.json` records the inputs and, for each file the engine wrote, its SHA-256 and its
//! identity (inode, size, mtime, ctime).
//!
//! - **Use** ([`ensure`] with [`Check::Fast`], every create): the manifest's inputs must be the
//!   wanted ones and every file's identity unchanged. A write to a template file changes its
//!   ctime, which nobody can set back, so a modified file is never used. A missing file, a
//!   missing or unreadable manifest, anything else: the template is rebuilt.
//! - **Full check** ([`Check::Full`], `hako microvm warm`): the checksums too.
//! - **Build**: under an exclusive `flock` on `<key>.lock` (concurrent creates that need the
//!   same template build it once; the others wait, then find it made), in a temporary directory
//!   renamed to `<key>` when complete. A damaged template is first renamed away, so a sandbox
//!   restoring from it at that moment keeps its open files, then removed.
//! - **A failed restore** of a template that passed the checks: [`discard`] removes its manifest,
//!   so the next create makes it again.

use crate::engine::{Disk, Engine, VmSpec};
use crate::relay::{pfd, poll};
use anyhow::{bail, Context, Result};
use hako_agent::proto::{Frame, FrameReader};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Below the state root (in the backend's cache, which `delete` leaves for the next sandbox).
pub const DIR: &str = "microvm-cache/templates";
const MANIFEST: &str = "manifest.json";
/// Bumped when what a template holds or how it is used changes.
const FORMAT: u32 = 3;

/// Everything that goes into a template; its hash is the template's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub format: u32,
    /// [`Engine::snapshot_id`]: engine and version.
    pub engine: String,
    pub kvm: bool,
    /// SHA-256 of the vmlinux.
    pub kernel_sha256: String,
    /// SHA-256 of the agent disk (which holds the agent binary as `/init`).
    pub agent_disk_sha256: String,
    pub cmdline: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// The device layout the restored VM must repeat.
    pub layout: String,
    /// The size of the rootfs device (vdb): [`crate::image::ROOTFS_DEVICE_BYTES`], the size of
    /// every rootfs image a restored copy may be given.
    #[serde(default)]
    pub rootfs_device_bytes: u64,
    /// With a virtio-net device: what its tap offers ([`crate::net::tap_profile`]). The device
    /// keeps the offloads it negotiated with the template's tap, so a sandbox restores only
    /// from a template whose tap offered what its own does.
    pub net_tap: Option<String>,
}

/// The device layout of a template for a sandbox without a network: what
/// [`crate::MicrovmBackend`] gives such a sandbox.
pub const LAYOUT: &str = "serial; vda agent disk ro, vdb rootfs ro; hvc0 agent port; no net";
/// The same with a network: a virtio-net device on a tap (the template's is a placeholder in
/// a namespace of its own; a restored copy's is the sandbox's).
pub const LAYOUT_NET: &str =
    "serial; vda agent disk ro, vdb rootfs ro; hvc0 agent port; virtio-net on a tap";

impl Inputs {
    /// The inputs for a VM of this shape on `engine`. `memo` caches file digests and engine
    /// versions by file identity, so an unchanged kernel is not hashed on every create.
    /// `net_tap`: the profile of the sandbox's tap, when it has a network.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: &dyn Engine,
        root: &Path,
        kernel: &Path,
        agent_disk: &Path,
        vcpus: u32,
        memory_mib: u64,
        kvm: bool,
        net_tap: Option<String>,
    ) -> Result<Inputs> {
        let memo_dir = root.join(DIR).join("memo");
        Ok(Inputs {
            format: FORMAT,
            engine: engine.snapshot_id(&memo_dir)?,
            kvm,
            kernel_sha256: memo(&memo_dir, kernel, "sha256", || sha256_file(kernel))?,
            agent_disk_sha256: memo(&memo_dir, agent_disk, "sha256", || sha256_file(agent_disk))?,
            cmdline: format!("{} {}", crate::CMDLINE, hako_agent::proto::TEMPLATE_ARG),
            vcpus,
            memory_mib,
            layout: if net_tap.is_some() {
                LAYOUT_NET
            } else {
                LAYOUT
            }
            .into(),
            rootfs_device_bytes: crate::image::ROOTFS_DEVICE_BYTES,
            net_tap,
        })
    }

    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("inputs serialize");
        crate::image::hex_digest(&[&json])[..32].to_string()
    }
}

/// One file of a template, as recorded when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum {
    sha256: String,
    size: u64,
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    inputs: Inputs,
    files: BTreeMap<String, FileSum>,
}

/// How thoroughly [`ensure`] checks an existing template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Inputs and file identities (every create).
    Fast,
    /// Also every file's checksum (`hako microvm warm`).
    Full,
}

/// A usable template.
#[derive(Debug, Clone)]
pub struct Template {
    pub dir: PathBuf,
    pub inputs: Inputs,
    /// Why it was (re)built now, when it was: "none yet", or what was wrong with the old one.
    pub built: Option<String>,
}

/// The template for `inputs`: the cached one when it checks out, else a new one built with
/// `engine` (kernel and agent disk at the given paths, whose digests `inputs` holds).
pub fn ensure(
    engine: &dyn Engine,
    root: &Path,
    inputs: &Inputs,
    kernel: &Path,
    agent_disk: &Path,
    check: Check,
) -> Result<Template> {
    let base = root.join(DIR);
    let key = inputs.key();
    let dir = base.join(&key);
    let found = |built| Template {
        dir: dir.clone(),
        inputs: inputs.clone(),
        built,
    };
    if verify(&dir, inputs, check).is_ok() {
        mark_used(&dir, true);
        return Ok(found(None));
    }
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    // Blocks while another create builds this template.
    let _lock = lock_template(&base, &key, true)?.context("a blocking flock returned busy")?;
    // Whoever held the lock may have built it.
    let why = match verify(&dir, inputs, check) {
        Ok(()) => {
            mark_used(&dir, true);
            return Ok(found(None));
        }
        Err(why) => why,
    };
    if dir.exists() {
        let trash = crate::assets::tempdir_in(&base, &format!("{key}-stale"))?;
        let _ = fs::remove_dir(&trash);
        fs::rename(&dir, &trash).with_context(|| format!("moving {} away", dir.display()))?;
        let _ = fs::remove_dir_all(&trash);
    }
    let tmp = crate::assets::tempdir_in(&base, &format!("{key}-build"))?;
    // The owner's only: a template's RAM holds the kernel's random state before the reseed.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod {}", tmp.display()))?;
    }
    match build(engine, inputs, kernel, agent_disk, &tmp) {
        Ok(()) => {}
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e.context("making the microvm template"));
        }
    }
    fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    mark_used(&dir, true);
    Ok(found(Some(format!("{why:#}"))))
}

/// Mark the template in `dir` unusable (a restore from it failed although it passed the checks):
/// without its manifest the next [`ensure`] makes it again.
pub fn discard(dir: &Path) {
    let _ = fs::remove_file(dir.join(MANIFEST));
}

/// The exclusive `flock` on `<base>/<key>.lock`, held until the returned file is closed.
/// `wait`: block until it is free; otherwise None when someone holds it.
fn lock_template(base: &Path, key: &str, wait: bool) -> Result<Option<fs::File>> {
    flock_path(&base.join(format!("{key}.lock")), false, wait)
}

/// A `flock` on `path` (made when missing), held until the returned file is closed: shared or
/// exclusive. `wait`: block until it is granted; otherwise None when a conflicting one is held.
pub(crate) fn flock_path(path: &Path, shared: bool, wait: bool) -> Result<Option<fs::File>> {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut op = if shared { libc::LOCK_SH } else { libc::LOCK_EX };
    if !wait {
        op |= libc::LOCK_NB;
    }
    // SAFETY: flock on our own fd.
    if unsafe { libc::flock(lock.as_raw_fd(), op) } != 0 {
        let e = std::io::Error::last_os_error();
        if !wait && e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(e).with_context(|| format!("locking {}", path.display()));
    }
    Ok(Some(lock))
}

/// Ok when the template in `dir` was made from `inputs` and its files are as recorded.
pub fn verify(dir: &Path, inputs: &Inputs, check: Check) -> Result<()> {
    let m = read_manifest(dir)?;
    if m.inputs != *inputs {
        bail!(
            "{} was made from other inputs",
            dir.join(MANIFEST).display()
        );
    }
    check_files(dir, &m, check)
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let mpath = dir.join(MANIFEST);
    let data = match fs::read(&mpath) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("no template yet"),
        Err(e) => return Err(e).with_context(|| format!("reading {}", mpath.display())),
    };
    serde_json::from_slice(&data).with_context(|| format!("{} is damaged", mpath.display()))
}

/// Ok when every file the manifest `m` lists is as recorded.
fn check_files(dir: &Path, m: &Manifest, check: Check) -> Result<()> {
    if m.files.is_empty() {
        bail!("{} lists no files", dir.join(MANIFEST).display());
    }
    for (name, want) in &m.files {
        let p = dir.join(name);
        let have = file_sum(&p, check == Check::Full)
            .with_context(|| format!("template file {}", p.display()))?;
        let same = match check {
            Check::Fast => {
                (have.size, have.ino, have.mtime_ns, have.ctime_ns)
                    == (want.size, want.ino, want.mtime_ns, want.ctime_ns)
            }
            Check::Full => have.sha256 == want.sha256 && have.size == want.size,
        };
        if !same {
            bail!(
                "template file {} changed since the template was made",
                p.display()
            );
        }
    }
    Ok(())
}

/// Ok when the template in `dir` could be used by some create of this hako: its manifest is
/// whole, of this format, made for the key that names `dir`, and its files are as recorded.
fn check_any(dir: &Path) -> Result<()> {
    if !dir.join(MANIFEST).exists() {
        bail!("no manifest: discarded after a failed restore, or never finished");
    }
    let m = read_manifest(dir)?;
    if m.inputs.format != FORMAT {
        bail!("made by another hako (format {})", m.inputs.format);
    }
    if dir.file_name() != Some(std::ffi::OsStr::new(&m.inputs.key())) {
        bail!("its manifest is for another key");
    }
    check_files(dir, &m, Check::Fast)
}

/// Record a use of `path` (a template directory, a rootfs image) for `hako microvm prune`:
/// its atime, and with `mtime` its mtime too, set to now. Never a file [`verify`] checks: a
/// template's files keep their identities. Best effort: a cache that cannot be marked is
/// only pruned earlier.
pub fn mark_used(path: &Path, mtime: bool) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let now = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_NOW,
    };
    let keep = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    let times = [now, if mtime { now } else { keep }];
    // SAFETY: a NUL-terminated path and two timespecs, as utimensat(2) wants.
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
}

/// When `md`'s item was last used ([`mark_used`]): a template directory's mtime (its atime
/// moves whenever anyone lists it, `prune --dry-run` included); an image's later of atime and
/// mtime (its atime also moves when a guest reads it: a use too).
pub fn last_used(md: &fs::Metadata) -> std::time::SystemTime {
    let mt = md.modified().unwrap_or(std::time::UNIX_EPOCH);
    if md.is_dir() {
        return mt;
    }
    md.accessed().unwrap_or(std::time::UNIX_EPOCH).max(mt)
}

/// Bytes `path` holds on disk (allocated blocks, not a sparse file's length), a directory's
/// contents included.
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(path) else {
        return 0;
    };
    let mut n = md.blocks() * 512;
    if md.is_dir() {
        for e in fs::read_dir(path).into_iter().flatten().flatten() {
            n += disk_bytes(&e.path());
        }
    }
    n
}

/// One thing `hako microvm prune` removed (or, dry, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub path: PathBuf,
    /// What it was and why it goes, e.g. "template, unused for 9d".
    pub why: String,
    /// On disk, in allocated blocks.
    pub bytes: u64,
}

/// What to prune: everything, or what was last used before `cutoff`.
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    Nothing,
    UsedSince(std::time::SystemTime),
}

impl Keep {
    /// Why `md`'s item goes, or None when it stays.
    pub fn why_not(&self, md: &fs::Metadata) -> Option<String> {
        match *self {
            Keep::Nothing => Some("--all".into()),
            Keep::UsedSince(cutoff) => {
                let used = last_used(md);
                (used < cutoff).then(|| {
                    let ago = std::time::SystemTime::now()
                        .duration_since(used)
                        .unwrap_or_default();
                    format!("unused for {}", age_text(ago))
                })
            }
        }
    }
}

/// A duration in the largest whole unit of `hako microvm prune --older-than`'s.
pub fn age_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The pid in a temporary name of [`crate::assets::tempdir_in`]'s (`.<prefix>-<pid>-<nanos>-<i>`).
fn temp_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let mut parts = rest.rsplitn(4, '-');
    let (_i, _nanos, pid) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    pid.parse().ok()
}

/// Prune the template cache of the state root `root`: templates `keep` does not keep, every
/// template that fails its check, and what dead creates left half-made. A template being built
/// (a temporary directory of a live pid) is never touched.
///
/// A template goes under its `<key>.lock`, taken without waiting: a template whose lock is
/// held is being checked or rebuilt by a create right now, so it is skipped (it is in use).
/// Under the lock it is renamed away, then deleted: a sandbox restoring from it keeps the files
/// it has open or mapped, and a create that finds it gone makes it again. The `.lock` files
/// stay: unlinking one would let a create that waits on the old inode and one that opens a new
/// file both hold "the" lock and build the same template at once.
pub fn prune(root: &Path, keep: Keep, dry_run: bool) -> Result<Vec<Pruned>> {
    let base = root.join(DIR);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", base.display())),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let path = base.join(&name);
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !md.is_dir() || name == "memo" {
            continue;
        }
        if name.starts_with('.') {
            // A build, a damaged template on its way out, a memo entry being written.
            match temp_pid(&name) {
                Some(pid) if !hako_contract::proc::is_alive(pid, None) => {}
                _ => continue,
            }
            let bytes = disk_bytes(&path);
            if !dry_run {
                fs::remove_dir_all(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
            out.push(Pruned {
                path,
                why: format!(
                    "half-made template (its create, pid {}, is gone)",
                    temp_pid(&name).unwrap_or(0)
                ),
                bytes,
            });
            continue;
        }
        let why = |md: &fs::Metadata| match check_any(&path) {
            Err(e) => Some(format!("damaged template: {e:#}")),
            Ok(()) => keep.why_not(md).map(|w| format!("template, {w}")),
        };
        let Some(reason) = why(&md) else { continue };
        if dry_run {
            out.push(Pruned {
                bytes: disk_bytes(&path),
                path,
                why: reason,
            });
            continue;
        }
        // A held lock: a create is building it right now, so it is in use.
        let Some(lock) = lock_template(&base, &name, false)? else {
            continue;
        };
        // Again under the lock: a create may have used or remade it since.
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue;
        };
        let Some(reason) = why(&md) else { continue };
        let bytes = disk_bytes(&path);
        let trash = crate::assets::tempdir_in(&base, &format!("{name}-prune"))?;
        let _ = fs::remove_dir(&trash);
        fs::rename(&path, &trash).with_context(|| format!("moving {} away", path.display()))?;
        drop(lock);
        fs::remove_dir_all(&trash).with_context(|| format!("removing {}", trash.display()))?;
        out.push(Pruned {
            path,
            why: reason,
            bytes,
        });
    }
    Ok(out)
}

fn build(
    engine: &dyn Engine,
    inputs: &Inputs,
    kernel: &Path,
    agent_disk: &Path,
    dir: &Path,
) -> Result<()> {
    // The template's rootfs disk is a placeholder of the size every rootfs image has (sparse
    // zeros): its agent does not read it and drops what the kernel's probe cached of it, so a
    // restored copy mounts the sandbox's image behind the same device without probing it again.
    // There is no config disk: a restored copy gets the config over the agent port.
    let placeholders = [dir.join("placeholder-rootfs")];
    for p in &placeholders {
        fs::File::create(p)
            .and_then(|f| f.set_len(crate::image::ROOTFS_DEVICE_BYTES))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // With a network: a placeholder tap like the sandbox's, in a namespace that goes away with
    // the template VM. Its offloads must be the ones the sandbox's tap offers.
    let net = match &inputs.net_tap {
        None => None,
        Some(want) => {
            let (tap, ns) = crate::net::placeholder()?;
            let have = crate::net::tap_profile(tap.as_raw_fd())?;
            if have != *want {
                bail!("the template's tap offers {have}; the sandbox's offers {want}");
            }
            Some((tap, ns))
        }
    };
    let vm = VmSpec {
        kernel: kernel.to_path_buf(),
        cmdline: inputs.cmdline.clone(),
        vcpus: inputs.vcpus,
        memory_mib: inputs.memory_mib,
        disks: std::iter::once(agent_disk.to_path_buf())
            .chain(placeholders.iter().cloned())
            .map(|path| Disk {
                path,
                readonly: true,
            })
            .collect(),
        serial_log: dir.join("console.log"),
        engine_log: dir.join("engine.log"),
        kvm: inputs.kvm,
        net: net.as_ref().map(|(tap, ns)| crate::engine::VmNet {
            tap_fd: tap.as_raw_fd(),
            netns_fd: ns.as_raw_fd(),
            mac: crate::net::PLACEHOLDER_MAC.into(),
            mtu: 1500,
        }),
    };
    let (host_end, guest_end) = UnixStream::pair().context("socketpair for the agent port")?;
    let files = engine.make_template(&vm, dir, guest_end.into(), &mut |pid| {
        wait_template(&host_end, pid, &vm)
    })?;
    drop(net);
    for p in &placeholders {
        let _ = fs::remove_file(p);
    }
    let mut sums = BTreeMap::new();
    for f in files {
        let s = file_sum(&dir.join(&f), true)?;
        sums.insert(f, s);
    }
    let m = Manifest {
        inputs: inputs.clone(),
        files: sums,
    };
    fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&m)?)
        .with_context(|| format!("writing {}", dir.join(MANIFEST).display()))
}

/// Read the template guest's agent port until it says Template (or why it cannot).
fn wait_template(port: &UnixStream, vm_pid: libc::pid_t, vm: &VmSpec) -> Result<()> {
    let deadline = Instant::now() + crate::host::BOOT_TIMEOUT;
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    let diag = || crate::host::diagnostics(&vm.serial_log, &vm.engine_log);
    loop {
        while let Some(f) = reader.next_frame().map_err(anyhow::Error::msg)? {
            match f {
                Frame::Template => return Ok(()),
                Frame::Error(m) => bail!("the template guest failed: {m}"),
                _ => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "the template guest did not come up within {} s{}",
                crate::host::BOOT_TIMEOUT.as_secs(),
                diag()
            );
        }
        let mut fds = [pfd(port.as_raw_fd(), libc::POLLIN)];
        poll(&mut fds, Some(left.min(Duration::from_millis(100))))?;
        if fds[0].revents != 0 {
            let n = (&*port)
                .read(&mut buf)
                .context("the template's agent port")?;
            if n == 0 {
                bail!("the template VM stopped before its agent was up{}", diag());
            }
            reader.push(&buf[..n]);
        } else if has_exited(vm_pid) {
            bail!("the template VM stopped before its agent was up{}", diag());
        }
    }
}

/// Whether our child `pid` has ended, leaving it to be reaped by its owner.
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid into a zeroed siginfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
            && info.si_pid() != 0
    }
}

fn file_sum(p: &Path, hash: bool) -> Result<FileSum> {
    let md = fs::metadata(p).with_context(|| format!("{}", p.display()))?;
    Ok(FileSum {
        sha256: if hash { sha256_file(p)? } else { String::new() },
        size: md.size(),
        ino: md.ino(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
    })
}

/// SHA-256 of a file's contents, hex.
pub fn sha256_file(p: &Path) -> Result<String> {
    let mut f = fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `compute()`'s answer about `file`, cached in `dir` by the file's identity (its canonical
/// path, device, inode, size, mtime and ctime): any change to the file makes a new entry.
pub fn memo(
    dir: &Path,
    file: &Path,
    what: &str,
    compute: impl FnOnce() -> Result<String>,
) -> Result<String> {
    let canon = fs::canonicalize(file).with_context(|| format!("{}", file.display()))?;
    let md = fs::metadata(&canon).with_context(|| format!("{}", canon.display()))?;
    let id = format!(
        "{}\0{}\0{}\0{}\0{}.{}\0{}.{}",
        canon.display(),
        md.dev(),
        md.ino(),
        md.size(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec()
    );
    memo_by(dir, what, &id, compute)
}

/// `compute()`'s answer cached in `dir` under `what` and `id` (any string that changes whenever
/// the answer may). Written whole (a temporary file renamed into place), so a reader sees an
/// old answer or the new one.
pub fn memo_by(
    dir: &Path,
    what: &str,
    id: &str,
    compute: impl FnOnce() -> Result<String>,
) -> Result<String> {
    let entry = dir.join(format!(
        "{what}-{}",
        &crate::image::hex_digest(&[id.as_bytes()])[..32]
    ));
    if let Ok(v) = fs::read_to_string(&entry) {
        return Ok(v);
    }
    let v = compute()?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = crate::assets::tempdir_in(dir, "memo")?;
    let t = tmp.join("v");
    fs::write(&t, &v)?;
    fs::rename(&t, &entry)?;
    let _ = fs::remove_dir(&tmp);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn inputs() -> Inputs {
        Inputs {
            format: FORMAT,
            engine: "test 1".into(),
            kvm: false,
            kernel_sha256: "k".into(),
            agent_disk_sha256: "a".into(),
            cmdline: "c".into(),
            vcpus: 1,
            memory_mib: 128,
            layout: LAYOUT.into(),
            rootfs_device_bytes: crate::image::ROOTFS_DEVICE_BYTES,
            net_tap: None,
        }
    }

    #[test]
    fn key_follows_every_input() {
        let a = inputs();
        let mut b = a.clone();
        b.memory_mib = 256;
        let mut c = a.clone();
        c.kernel_sha256 = "k2".into();
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        let mut d = a.clone();
        d.layout = LAYOUT_NET.into();
        d.net_tap = Some("tap flags 0x5002".into());
        assert_ne!(a.key(), d.key());
        let mut e = a.clone();
        e.rootfs_device_bytes *= 2;
        assert_ne!(a.key(), e.key());
        assert_eq!(a.key(), inputs().key());
    }

    #[test]
    fn verify_catches_changed_missing_and_foreign_templates() {
        let dir = std::env::temp_dir().join(format!("hako-tmpl-verify-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let e = verify(&dir, &inputs(), Check::Fast).unwrap_err();
        assert!(format!("{e:#}").contains("no template"), "{e:#}");
        fs::write(dir.join("ram"), b"guest memory").unwrap();
        let mut files = BTreeMap::new();
        files.insert("ram".to_string(), file_sum(&dir.join("ram"), true).unwrap());
        let m = Manifest {
            inputs: inputs(),
            files,
        };
        fs::write(dir.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        verify(&dir, &inputs(), Check::Fast).unwrap();
        verify(&dir, &inputs(), Check::Full).unwrap();
        let mut other = inputs();
        other.agent_disk_sha256 = "a2".into();
        assert!(verify(&dir, &other, Check::Fast).is_err());
        // Same size, other bytes: the fast check sees the new ctime, the full one the checksum.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(dir.join("ram"), b"guest MEMORY").unwrap();
        assert!(verify(&dir, &inputs(), Check::Fast).is_err());
        assert!(verify(&dir, &inputs(), Check::Full).is_err());
        fs::remove_file(dir.join("ram")).unwrap();
        assert!(verify(&dir, &inputs(), Check::Fast).is_err());
        fs::write(dir.join(MANIFEST), b"{not json").unwrap();
        assert!(verify(&dir, &inputs(), Check::Fast).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memo_recomputes_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("hako-tmpl-memo-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        fs::write(&f, b"one").unwrap();
        let h1 = memo(&dir.join("m"), &f, "sha256", || sha256_file(&f)).unwrap();
        let again = memo(&dir.join("m"), &f, "sha256", || bail!("not recomputed")).unwrap();
        assert_eq!(h1, again);
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&f, b"two").unwrap();
        let h2 = memo(&dir.join("m"), &f, "sha256", || sha256_file(&f)).unwrap();
        assert_ne!(h1, h2);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A template as `build` leaves it, for `inputs`, under `root`.
    fn fake_template(root: &Path, inputs: &Inputs) -> PathBuf {
        let dir = root.join(DIR).join(inputs.key());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("ram"), vec![7u8; 64 * 1024]).unwrap();
        let mut files = BTreeMap::new();
        files.insert("ram".to_string(), file_sum(&dir.join("ram"), true).unwrap());
        let m = Manifest {
            inputs: inputs.clone(),
            files,
        };
        fs::write(dir.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        dir
    }

    /// Set `p`'s atime and mtime `days` ago.
    fn age(p: &Path, days: u64) {
        let t = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
        fs::File::open(p)
            .unwrap()
            .set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
            .unwrap();
    }

    /// A pid that is no process's now: a child that has ended and been reaped.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    fn names(p: &[Pruned]) -> Vec<String> {
        let mut v: Vec<String> = p
            .iter()
            .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn prune_removes_exactly_the_unused_the_damaged_and_the_half_made() {
        let root = std::env::temp_dir().join(format!("hako-prune-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let cache = root.join("microvm-cache");
        let shape = |mib| Inputs {
            memory_mib: mib,
            ..inputs()
        };
        // Templates: used 10 days ago, in use (marked now by a create's check), damaged,
        // old but locked by a create that rebuilds it.
        let old = fake_template(&root, &shape(128));
        age(&old, 10);
        let fresh = fake_template(&root, &shape(256));
        age(&fresh, 10);
        let ram_before = file_sum(&fresh.join("ram"), false).unwrap();
        // The fast path never runs the engine: any path will do.
        let engine = crate::qemu::Qemu {
            binary: "/nonexistent".into(),
        };
        let t = ensure(&engine, &root, &shape(256), &old, &old, Check::Fast).unwrap();
        assert_eq!(
            (t.dir.as_path(), t.built.is_none()),
            (fresh.as_path(), true)
        );
        // Marking the use leaves every file the check looks at as it was.
        assert_eq!(file_sum(&fresh.join("ram"), false).unwrap(), ram_before);
        verify(&fresh, &shape(256), Check::Fast).unwrap();
        let damaged = fake_template(&root, &shape(512));
        discard(&damaged);
        let locked = fake_template(&root, &shape(1024));
        age(&locked, 10);
        let lock =
            fs::File::create(root.join(DIR).join(format!("{}.lock", shape(1024).key()))).unwrap();
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        // Builds: a dead create's (swept), a live one's (ours: left alone).
        let dead_build =
            root.join(DIR)
                .join(format!(".{}-build-{}-5-0", shape(2048).key(), dead_pid()));
        let live_build = root.join(DIR).join(format!(
            ".{}-build-{}-5-0",
            shape(2048).key(),
            std::process::id()
        ));
        fs::create_dir_all(&dead_build).unwrap();
        fs::create_dir_all(&live_build).unwrap();
        // Images: one unused for 10 days, one used now, a dead create's half-made one.
        let img_old = cache.join(crate::image::image_name("d-old"));
        let img_new = cache.join(crate::image::image_name("d-new"));
        for p in [&img_old, &img_new] {
            let f = fs::File::create(p).unwrap();
            f.set_len(crate::image::ROOTFS_DEVICE_BYTES).unwrap();
            (&f).write_all(&[1u8; 8192]).unwrap();
            drop(f);
            age(p, 10);
        }
        let made = fs::metadata(&img_new).unwrap().modified().unwrap();
        mark_used(&img_new, false);
        assert_eq!(fs::metadata(&img_new).unwrap().modified().unwrap(), made);
        let half = cache.join(format!(".tmp-{}-rootfs-x.ext4", dead_pid()));
        fs::write(&half, b"half").unwrap();
        // Memo: the digests of both images' trees, and the agent's.
        let memo = cache.join(crate::image::MEMO);
        fs::create_dir_all(&memo).unwrap();
        fs::write(memo.join("tree-old"), "d-old").unwrap();
        fs::write(memo.join("tree-new"), "d-new").unwrap();
        fs::write(memo.join("agent-x"), "d-agent").unwrap();

        let week = Duration::from_secs(7 * 86_400);
        let would = crate::prune(&root, week, false, true).unwrap();
        let want = vec![
            damaged.file_name().unwrap().to_string_lossy().into_owned(),
            dead_build
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            half.file_name().unwrap().to_string_lossy().into_owned(),
            img_old.file_name().unwrap().to_string_lossy().into_owned(),
            old.file_name().unwrap().to_string_lossy().into_owned(),
            "tree-old".to_string(),
        ];
        let mut want_sorted = want.clone();
        want_sorted.sort();
        // Dry, the locked template is listed (nothing is locked to list); nothing goes.
        let mut want_dry = want_sorted.clone();
        want_dry.push(locked.file_name().unwrap().to_string_lossy().into_owned());
        want_dry.sort();
        assert_eq!(names(&would), want_dry);
        for p in &would {
            assert!(
                fs::symlink_metadata(&p.path).is_ok(),
                "dry run removed {}",
                p.path.display()
            );
        }
        // Sizes are blocks on disk: the 4 GiB sparse image counts its 8 KiB of data.
        let img = would.iter().find(|p| p.path == img_old).unwrap();
        assert!(img.bytes >= 8192 && img.bytes < 1 << 20, "{}", img.bytes);

        let gone = crate::prune(&root, week, false, false).unwrap();
        assert_eq!(names(&gone), want_sorted);
        for p in &gone {
            assert!(
                fs::symlink_metadata(&p.path).is_err(),
                "{} is still there",
                p.path.display()
            );
        }
        for p in [
            &fresh,
            &locked,
            &live_build,
            &img_new,
            &memo.join("tree-new"),
            &memo.join("agent-x"),
        ] {
            assert!(p.exists(), "{} was removed", p.display());
        }
        // The lock files stay.
        assert!(root
            .join(DIR)
            .join(format!("{}.lock", shape(128).key()))
            .exists());
        // Nothing is left in the templates directory but what stays.
        let left: Vec<String> = fs::read_dir(root.join(DIR))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");

        // --all: every template and image, but not one a create holds locked.
        let all = crate::prune(&root, week, true, false).unwrap();
        assert_eq!(
            names(&all),
            vec![
                fresh.file_name().unwrap().to_string_lossy().into_owned(),
                img_new.file_name().unwrap().to_string_lossy().into_owned(),
                "tree-new".to_string(),
            ]
        );
        assert!(locked.exists() && live_build.exists() && memo.join("agent-x").exists());
        drop(lock);
        let rest = crate::prune(&root, week, true, false).unwrap();
        assert_eq!(
            names(&rest),
            vec![locked.file_name().unwrap().to_string_lossy().into_owned()]
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ages_parse_with_a_unit_or_not_at_all() {
        assert_eq!(crate::parse_age("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(crate::parse_age("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(crate::parse_age("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            crate::parse_age("7d").unwrap(),
            Duration::from_secs(604_800)
        );
        for bad in ["", "7", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            let e = format!("{:#}", crate::parse_age(bad).unwrap_err());
            assert!(e.contains("not a duration"), "{bad}: {e}");
        }
    }
}
