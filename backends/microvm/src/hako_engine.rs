//! The `hako` engine: hako's own VMM ([`crate::vmm`]) in a forked child of the host process,
//! jailed and under its seccomp filters. Chosen only when the KVM probe says this host's KVM runs
//! an unmodified Linux guest.

use crate::engine::{Engine, VmSpec};
use crate::vmm;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

pub struct HakoVmm;

/// The verdict of the VMM's KVM probe (cached per host under `cache`).
pub fn probe(cache: &std::path::Path) -> (bool, String) {
    if !std::path::Path::new("/dev/kvm").exists() {
        return (false, "/dev/kvm does not exist".into());
    }
    match vmm::probe::probe_cached(cache) {
        Ok(r) => (r.runs_linux, r.detail),
        Err(e) => (false, format!("the KVM probe failed: {e:#}")),
    }
}

/// What the three ways of running a VM share: the VMM's devices built from a [`VmSpec`] (files
/// opened, the tap duplicated) in the caller (the host process, or `create` making a template)
/// before it forks.
struct Prepared {
    block: Vec<vmm::BlockDevice>,
    serial: vmm::Stdio,
    console: vmm::Stdio,
    net: Option<vmm::NetDevice>,
    /// The sandbox's network namespace, which the VMM process joins.
    netns: Option<i32>,
    /// The engine log, which becomes the VMM process's stderr.
    log: File,
}

fn prepare(vm: &VmSpec, agent_port: OwnedFd) -> Result<Prepared> {
    if vm.vcpus != 1 {
        bail!(
            "hako's own VMM runs 1 vCPU for now ({} asked); use io.hako.microvm.vmm=qemu",
            vm.vcpus
        );
    }
    let net = match &vm.net {
        Some(n) => {
            let mut mac = [0u8; 6];
            let parts: Vec<&str> = n.mac.split(':').collect();
            if parts.len() != 6 {
                bail!("bad MAC address {:?}", n.mac);
            }
            for (b, p) in mac.iter_mut().zip(parts) {
                *b = u8::from_str_radix(p, 16)
                    .with_context(|| format!("bad MAC address {:?}", n.mac))?;
            }
            // SAFETY: dup of the host process's tap fd; the copy is the VMM's.
            let tap = unsafe { libc::dup(n.tap_fd) };
            if tap < 0 {
                return Err(std::io::Error::last_os_error()).context("dup of the tap");
            }
            Some(vmm::NetDevice {
                // SAFETY: a fresh fd we own.
                tap: unsafe { OwnedFd::from_raw_fd(tap) },
                mac,
                mtu: u16::try_from(n.mtu).unwrap_or(u16::MAX),
            })
        }
        None => None,
    };
    let serial = File::create(&vm.serial_log)
        .with_context(|| format!("creating {}", vm.serial_log.display()))?;
    let log = File::create(&vm.engine_log)
        .with_context(|| format!("creating {}", vm.engine_log.display()))?;
    let port_in = File::from(agent_port.try_clone().context("dup agent port")?);
    let port_out = File::from(agent_port);
    Ok(Prepared {
        block: vm
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| vmm::BlockDevice {
                path: d.path.clone(),
                read_only: d.readonly,
                id: format!("hako-disk{i}"),
            })
            .collect(),
        serial: vmm::Stdio {
            input: vmm::Input::None,
            output: vmm::Output::Fd(serial),
        },
        console: vmm::Stdio {
            input: vmm::Input::Fd(port_in),
            output: vmm::Output::Fd(port_out),
        },
        net,
        netns: vm.net.as_ref().map(|n| n.netns_fd),
        log,
    })
}

impl Prepared {
    fn vm_config(self, vm: &VmSpec, seccomp: bool) -> Result<(vmm::VmConfig, Option<i32>, File)> {
        let cfg = vmm::VmConfig {
            memory_mib: u32::try_from(vm.memory_mib).context("guest memory size")?,
            vcpus: 1,
            kernel: vm.kernel.clone(),
            cmdline: vm.cmdline.clone(),
            block: self.block,
            serial: self.serial,
            console: Some(self.console),
            net: self.net,
            jail: Some(vmm::JailConfig::default()),
            seccomp,
        };
        Ok((cfg, self.netns, self.log))
    }
}

/// Fork the VMM process. The child runs [`vmm_child_prologue`], makes the engine log its
/// stderr, joins the sandbox's network namespace (its jail then unshares a new one; the tap it
/// holds stays in the sandbox's), and runs `body`, whose value is its exit code. Returns the
/// child's pid in the parent.
fn fork_vmm(log: &File, netns: Option<i32>, body: impl FnOnce() -> i32) -> Result<libc::pid_t> {
    // SAFETY: the host process is single-threaded; the child only runs the VMM and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork for the VMM");
    }
    if pid > 0 {
        return Ok(pid);
    }
    vmm_child_prologue();
    // SAFETY: plain syscalls in the forked child.
    unsafe {
        libc::setpgid(0, 0);
        libc::dup2(log.as_raw_fd(), 2);
    }
    if let Some(ns) = netns {
        // SAFETY: setns of this single-threaded child.
        if unsafe { libc::setns(ns, libc::CLONE_NEWNET) } != 0 {
            let e = std::io::Error::last_os_error();
            let _ = writeln!(
                std::io::stderr(),
                "hako VMM: joining the sandbox's network namespace: {e}"
            );
            // SAFETY: leave the child.
            unsafe { libc::_exit(1) }
        }
    }
    let code = body();
    // SAFETY: leave the child without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

/// Run a built (or restored) VMM to its end in the VMM process: 0 when the guest asked to
/// stop (or, for a template, was snapshotted), else 1 with the reason on stderr.
fn run_to_end(v: Result<vmm::Vmm>, template: bool) -> i32 {
    match v.and_then(|v| v.run()) {
        Ok(out) if out.exit.is_guest_requested() && !template => 0,
        Ok(out) if out.exit == vmm::ExitReason::Snapshotted && template => 0,
        Ok(out) => {
            let _ = writeln!(
                std::io::stderr(),
                "hako VMM: the guest stopped: {}",
                out.exit.describe()
            );
            1
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "hako VMM: {e:#}");
            1
        }
    }
}

/// Kill and reap a VMM process of ours.
fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: our own child, by pid; reaped right after.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Identity lines for a template's key beyond the VMM's own version: the host CPU (a restored
/// guest must see the CPUID it booted with) and the host kernel (whose KVM lists the MSRs).
fn host_identity() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{cpu}; Linux {release}")
}

impl Engine for HakoVmm {
    fn name(&self) -> &'static str {
        "hako"
    }

    fn spawn(&self, vm: VmSpec, agent_port: OwnedFd) -> Result<libc::pid_t> {
        let (cfg, netns, log) = prepare(&vm, agent_port)?.vm_config(&vm, true)?;
        fork_vmm(&log, netns, move || run_to_end(vmm::Vmm::new(cfg), false))
    }

    /// The VMM is this very binary: its digest (memoized by file identity), the snapshot
    /// format, and the host's CPU and kernel.
    fn snapshot_id(&self, memo: &Path) -> Result<String> {
        let exe = hako_contract::proc::self_exe().context("finding hako's own binary")?;
        let digest =
            crate::template::memo(memo, &exe, "sha256", || crate::template::sha256_file(&exe))?;
        Ok(format!(
            "hako VMM {} (binary {}), snapshot format {}, on {}",
            env!("CARGO_PKG_VERSION"),
            &digest[..16],
            vmm::snapshot::FORMAT,
            host_identity()
        ))
    }

    /// The template VMM process runs jailed but without the seccomp filters (writing the
    /// snapshot takes calls they refuse; its guest is hako's own kernel and agent, before any
    /// bundle). It opens the snapshot's files in `dir` before its jail, pauses the guest when
    /// the trigger pipe says so, writes the snapshot and exits; this process then commits it.
    fn make_template(
        &self,
        vm: &VmSpec,
        dir: &Path,
        agent_port: OwnedFd,
        until_ready: &mut dyn FnMut(libc::pid_t) -> Result<()>,
    ) -> Result<Vec<String>> {
        let (cfg, netns, log) = prepare(vm, agent_port)?.vm_config(vm, false)?;
        let (trigger_rx, trigger_tx) = nix::unistd::pipe().context("pipe for the trigger")?;
        let to = vmm::SnapshotTo {
            dir: dir.to_path_buf(),
            trigger: trigger_rx,
        };
        let pid = fork_vmm(&log, netns, move || {
            run_to_end(vmm::Vmm::new_template(cfg, to), true)
        })?;
        let made = (|| -> Result<()> {
            until_ready(pid)?;
            File::from(trigger_tx)
                .write_all(b"s")
                .context("asking the template VMM for its snapshot")?;
            let mut status = 0;
            // SAFETY: waiting for our own child.
            if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
                return Err(std::io::Error::last_os_error())
                    .context("waiting for the template VMM");
            }
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                bail!("the template VMM did not save the guest (wait status {status:#x})");
            }
            vmm::snapshot::commit(dir)
        })();
        if let Err(e) = made {
            kill_and_reap(pid);
            bail!(
                "{e:#}{}",
                crate::host::diagnostics(&vm.serial_log, &vm.engine_log)
            );
        }
        Ok(vec![
            vmm::snapshot::MEMORY_FILE.into(),
            vmm::snapshot::STATE_FILE.into(),
        ])
    }

    /// The VMM process restores the template with the sandbox's disks, agent port, serial log
    /// and tap (in the template's device layout, which `Vmm::restore` checks: a mismatch is an
    /// error here, so the host process boots cold), jailed, then runs it under the seccomp
    /// filters. It reports over a pipe whether the restore worked before it runs the guest, so
    /// this returns the restore's own error.
    fn spawn_restored(&self, vm: VmSpec, dir: &Path, agent_port: OwnedFd) -> Result<libc::pid_t> {
        let p = prepare(&vm, agent_port)?;
        let (netns, log) = (p.netns, p.log);
        let cfg = vmm::RestoreConfig {
            snapshot: dir.to_path_buf(),
            serial: p.serial,
            block: p.block,
            console: Some(p.console),
            net: p.net,
            jail: Some(vmm::JailConfig::default()),
            seccomp: true,
        };
        let (ready_rx, ready_tx) = nix::unistd::pipe().context("pipe for the restore's verdict")?;
        let pid = fork_vmm(&log, netns, move || {
            let mut tx = File::from(ready_tx);
            match vmm::Vmm::restore(cfg) {
                Ok(v) => {
                    let _ = tx.write_all(b"k");
                    drop(tx);
                    run_to_end(Ok(v), false)
                }
                Err(e) => {
                    let _ = write!(tx, "e{e:#}");
                    1
                }
            }
        })?;
        // 'k' (restored) needs no end of file: a VMM forked meanwhile by another thread of a
        // test binary may hold a copy of the write end. 'e' is followed by the error, to the end.
        let mut rx = File::from(ready_rx);
        let mut first = [0u8; 1];
        let got = loop {
            match std::io::Read::read(&mut rx, &mut first) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        if matches!(got, Ok(1)) && first[0] == b'k' {
            return Ok(pid);
        }
        let mut verdict = String::new();
        if matches!(got, Ok(1)) {
            let _ = std::io::Read::read_to_string(&mut rx, &mut verdict);
        }
        kill_and_reap(pid);
        match got {
            Err(e) => Err(e).context("reading the restore's verdict"),
            Ok(0) => bail!(
                "the restoring VMM died before it said whether the restore worked{}",
                crate::host::diagnostics(&vm.serial_log, &vm.engine_log)
            ),
            Ok(_) => bail!("restoring {}: {verdict}", dir.display()),
        }
    }
}

/// First steps of a forked VMM process: die with its parent (a killed host process never
/// leaves a VM behind) and start from an empty signal mask (the parent may block signals it
/// reads through a signalfd).
pub fn vmm_child_prologue() {
    // SAFETY: plain syscalls in the forked child.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}
