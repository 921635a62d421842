//! The `hako` engine: hako's own VMM ([`crate::vmm`]) in a forked child of the host process,
//! jailed and under its seccomp filters. Chosen only when the KVM probe says this host's KVM runs
//! an unmodified Linux guest.

use crate::engine::{Engine, VmSpec};
use crate::vmm;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

impl Engine for HakoVmm {
    fn name(&self) -> &'static str {
        "hako"
    }

    fn spawn(&self, vm: VmSpec, agent_port: OwnedFd) -> Result<libc::pid_t> {
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
        let netns = vm.net.as_ref().map(|n| n.netns_fd);
        let memory_mib = u32::try_from(vm.memory_mib).context("guest memory size")?;
        let serial = File::create(&vm.serial_log)
            .with_context(|| format!("creating {}", vm.serial_log.display()))?;
        let log = File::create(&vm.engine_log)
            .with_context(|| format!("creating {}", vm.engine_log.display()))?;
        let port_in = File::from(agent_port.try_clone().context("dup agent port")?);
        let port_out = File::from(agent_port);
        let cfg = vmm::VmConfig {
            memory_mib,
            vcpus: 1,
            kernel: vm.kernel,
            cmdline: vm.cmdline,
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
            console: Some(vmm::Stdio {
                input: vmm::Input::Fd(port_in),
                output: vmm::Output::Fd(port_out),
            }),
            net,
            jail: Some(vmm::JailConfig::default()),
            seccomp: true,
        };
        // SAFETY: the host process is single-threaded; the child only runs the VMM and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork for the VMM");
        }
        if pid > 0 {
            return Ok(pid);
        }
        // Child: die with the host process; stderr to the engine log; default signal mask.
        vmm_child_prologue();
        // SAFETY: plain syscalls in the forked child.
        unsafe {
            libc::setpgid(0, 0);
            libc::dup2(log.as_raw_fd(), 2);
        }
        // The VMM lives in the sandbox's network namespace (its jail then unshares a new one;
        // the tap it holds stays in the sandbox's).
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
        let code = match vmm::Vmm::new(cfg).and_then(|v| v.run()) {
            Ok(out) if out.exit.is_guest_requested() => 0,
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
        };
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(code) }
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
