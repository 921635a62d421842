//! The one VMM interface both engines implement.
//!
//! The backend prepares everything a VM needs (kernel, disks, command line, the agent port) and
//! hands an engine a [`VmSpec`] and the agent port; the engine starts the VM as a **child process** of the caller
//! (the sandbox's host process) and returns its pid. The VM ending (guest reset or power-off,
//! or a crash) is that child exiting; the caller reaps it. Everything the guest says goes through
//! the agent port; the engine only wires it to the guest's first virtio-console port.
//!
//! Engines:
//! - `qemu` ([`crate::qemu::Qemu`]): `qemu-system-x86_64 -M microvm`, KVM when the host's KVM can
//!   run an unmodified Linux guest, TCG otherwise.
//! - `hako`: hako's own VMM (`crate::vmm`), for hosts whose KVM runs Linux.
//!
//! Snapshot boot is three default methods ([`Engine::snapshot_id`], [`Engine::make_template`],
//! [`Engine::spawn_restored`]) that say "unsupported" unless an engine implements them; the
//! template cache ([`crate::template`]) is engine-generic.

use anyhow::{bail, Result};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// A virtio-blk device; the guest sees them as vda, vdb, ... in this order.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub readonly: bool,
}

/// Everything an engine needs to run one VM, but its agent port (the host process makes that
/// socket pair and hands the guest's end to [`Engine::spawn`]).
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// An uncompressed x86_64 vmlinux with a PVH entry note (see `kernels/`).
    pub kernel: PathBuf,
    pub cmdline: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disks: Vec<Disk>,
    /// File that receives the serial port (ttyS0: the kernel log).
    pub serial_log: PathBuf,
    /// File that receives the engine's own diagnostics (its stderr).
    pub engine_log: PathBuf,
    /// Use KVM (true) or software emulation (false); only the qemu engine can do the latter.
    pub kvm: bool,
    /// The guest's network device, when the sandbox has a network ([`crate::net`]).
    pub net: Option<VmNet>,
}

/// A virtio-net device backed by a tap: the engine runs the VM in the namespace `netns_fd` names
/// and hands the tap to the device, whose MAC is `mac`. The fds belong to the host process and
/// stay open as long as it runs.
#[derive(Debug, Clone)]
pub struct VmNet {
    pub tap_fd: i32,
    pub netns_fd: i32,
    pub mac: String,
    pub mtu: u32,
}

/// Starts VMs.
pub trait Engine {
    fn name(&self) -> &'static str;
    /// Start the VM as a child process of the caller and return its pid. The child must die with
    /// the caller (PR_SET_PDEATHSIG) so a killed host process never leaves a VM behind.
    /// `agent_port` is the guest end of a connected `AF_UNIX` stream socket; the engine makes it
    /// the backend of the guest's first virtio-console port (`/dev/hvc0`). The host end stays
    /// with the caller.
    fn spawn(&self, vm: VmSpec, agent_port: OwnedFd) -> Result<libc::pid_t>;

    /// Snapshot boot (see [`crate::template`]): this engine's name and version, which go into a
    /// template's key. `memo` is a directory where the engine may cache what it learnt about
    /// its binary. An error means the engine cannot make templates: sandboxes boot cold.
    fn snapshot_id(&self, memo: &Path) -> Result<String> {
        let _ = memo;
        bail!("the {} engine cannot make snapshots yet", self.name())
    }

    /// Boot `vm` (a template guest: [`hako_agent::proto::TEMPLATE_ARG`] on its command line) as a
    /// child process, call `until_ready` with its pid (it returns once the agent said Template,
    /// or why not), save the VM into `dir`, and end it. Returns the names of the files it wrote
    /// in `dir`, which the template's manifest then checksums.
    fn make_template(
        &self,
        vm: &VmSpec,
        dir: &Path,
        agent_port: OwnedFd,
        until_ready: &mut dyn FnMut(libc::pid_t) -> Result<()>,
    ) -> Result<Vec<String>> {
        let _ = (vm, dir, agent_port, until_ready);
        bail!("the {} engine cannot make snapshots yet", self.name())
    }

    /// Like [`Engine::spawn`], but the VM resumes the template in `dir` instead of booting:
    /// `vm` has the template's shape and device layout, with the sandbox's own disks, logs and
    /// agent port. Returns once the restored VM runs (its agent waits for Go).
    fn spawn_restored(&self, vm: VmSpec, dir: &Path, agent_port: OwnedFd) -> Result<libc::pid_t> {
        let _ = (vm, dir, agent_port);
        bail!("the {} engine cannot restore snapshots yet", self.name())
    }

    /// Whether [`Engine::spawn_restored_placed`] works: the restored VM's process exists for a
    /// while before its guest runs (qemu: its start, up to the end of the incoming migration),
    /// so the host can move it into the sandbox's cgroup meanwhile instead of joining the cgroup
    /// before the spawn.
    fn places_before_resume(&self) -> bool {
        false
    }

    /// [`Engine::spawn_restored`], calling `place` with the VM's pid once its process exists and
    /// before its guest runs a single instruction; an error from `place` ends the VM and is
    /// returned.
    fn spawn_restored_placed(
        &self,
        vm: VmSpec,
        dir: &Path,
        agent_port: OwnedFd,
        place: &mut dyn FnMut(libc::pid_t) -> Result<()>,
    ) -> Result<libc::pid_t> {
        let _ = (vm, dir, agent_port, place);
        bail!(
            "the {} engine cannot place a restored VM before it runs",
            self.name()
        )
    }
}
