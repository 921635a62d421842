//! The VMM's jail, after Firecracker's jailer: once the VM is built (kernel loaded, images and
//! /dev/kvm open), the VMM process moves into new mount, network, IPC and UTS namespaces,
//! pivots into an empty read-only tmpfs root (it needs no path any more: every file it uses is
//! an open descriptor) and drops to an unprivileged uid/gid with no capabilities.
//!
//! A new PID namespace must be entered before KVM is opened (a KVM VM belongs to the process
//! that created it, so the VMM cannot fork after building): call [`enter_pid_namespace`] first
//! in the host process, while it is still single-threaded.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, fork, pivot_root, ForkResult, Gid, Uid};

#[derive(Clone, Debug)]
pub struct JailConfig {
    /// An existing directory; a private tmpfs is mounted over it inside the jail's own mount
    /// namespace (the host's view of it does not change).
    pub root: PathBuf,
    /// Drop to this uid/gid after pivoting (None keeps the current ids).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Default for JailConfig {
    fn default() -> Self {
        JailConfig {
            root: PathBuf::from("/tmp"),
            uid: Some(65534),
            gid: Some(65534),
        }
    }
}

/// Enter the jail (see the module docs). Call only from a single-threaded process.
pub fn enter(cfg: &JailConfig) -> Result<()> {
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS,
    )
    .context("unshare(mount, net, ipc, uts) for the VMM jail")?;
    nix::unistd::sethostname("hako-vmm").context("sethostname in the jail")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making mounts private in the jail")?;
    pivot_into_empty_root(&cfg.root)?;
    if let Some(gid) = cfg.gid {
        nix::unistd::setgroups(&[]).context("setgroups in the jail")?;
        nix::unistd::setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))
            .context("setresgid in the jail")?;
    }
    if let Some(uid) = cfg.uid {
        // Changing from uid 0 to non-zero clears every capability set.
        nix::unistd::setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))
            .context("setresuid in the jail")?;
    }
    Ok(())
}

fn pivot_into_empty_root(root: &Path) -> Result<()> {
    if !root.is_dir() {
        bail!("jail root {} is not a directory", root.display());
    }
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=16k,mode=0755"),
    )
    .with_context(|| format!("mounting the jail's tmpfs on {}", root.display()))?;
    let old = root.join("old-root");
    std::fs::create_dir(&old).context("creating the jail's old-root")?;
    match pivot_root(root, &old) {
        Ok(()) => {
            chdir("/").context("chdir / in the jail")?;
            umount2("/old-root", MntFlags::MNT_DETACH).context("detaching the old root")?;
            std::fs::remove_dir("/old-root").context("removing old-root")?;
        }
        Err(nix::errno::Errno::EINVAL) => {
            // The current root cannot be pivoted (an initramfs): move the jail's tmpfs over
            // "/" and chroot into it. The old root stays hidden beneath; with every capability
            // dropped below, nothing can climb back out of the chroot.
            std::fs::remove_dir(&old).context("removing old-root")?;
            chdir(root).context("chdir into the jail")?;
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .context("moving the jail's tmpfs over / (initramfs root)")?;
            nix::unistd::chroot(".").context("chroot into the jail")?;
            chdir("/").context("chdir / in the jail")?;
        }
        Err(e) => return Err(e).context("pivot_root into the jail"),
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("remounting the jail root read-only")?;
    Ok(())
}

/// Move the rest of this process's life into a new PID namespace: fork once; the child (pid 1
/// in the new namespace, killed when its parent dies) returns Ok and goes on to build and run
/// the VMM; the parent waits and exits with the child's status (a signal death is reported as
/// 128 + signal). Call from a single-threaded process before `Vmm::new`.
pub fn enter_pid_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
    // SAFETY: documented precondition: the process is single-threaded.
    match unsafe { fork() }.context("fork into the new PID namespace")? {
        ForkResult::Child => {
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            Ok(())
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => std::process::exit(128 + sig as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("hako-vmm: waiting for the jailed VMM: {e}");
                    std::process::exit(1)
                }
            }
        },
    }
}
