//! The qemu engine: `qemu-system-x86_64 -M microvm`, the compatibility engine.
//!
//! Devices: the serial port (ttyS0, the kernel log) to a file; one virtio-blk-device per disk in
//! order (vda, vdb, ...); a virtio-serial-device whose console port 0 (the guest's hvc0) is the
//! agent port, backed by the socket fd we pass in; when the sandbox has a network, a
//! virtio-net-device on the tap fd we pass in (and qemu runs in the sandbox's network
//! namespace). No ACPI, no option ROMs, no display; `-no-reboot` makes the guest's reset the
//! end of the qemu process.

use crate::engine::{Engine, VmSpec};
use anyhow::{bail, Context, Result};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct Qemu {
    pub binary: PathBuf,
}

impl Qemu {
    /// `$HAKO_QEMU`, else `qemu-system-x86_64` on PATH (or in /usr/bin).
    pub fn find() -> Result<Qemu> {
        if let Some(p) = std::env::var_os("HAKO_QEMU") {
            return Ok(Qemu { binary: p.into() });
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        dirs.extend(["/usr/bin", "/usr/local/bin"].map(PathBuf::from));
        for d in dirs {
            let p = d.join("qemu-system-x86_64");
            if p.is_file() {
                return Ok(Qemu { binary: p });
            }
        }
        bail!("qemu-system-x86_64 not found: the qemu engine needs it (apt-get install qemu-system-x86)")
    }

    /// The full argument list (without the binary).
    pub fn args(vm: &VmSpec, port_fd: i32) -> Vec<String> {
        let mut a: Vec<String> = vec![];
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&["-M", "microvm,acpi=off,x-option-roms=off"]);
        if vm.kvm {
            push(&["-accel", "kvm", "-cpu", "host"]);
        } else {
            push(&["-accel", "tcg"]);
        }
        push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        push(&[
            "-m",
            &vm.memory_mib.to_string(),
            "-smp",
            &vm.vcpus.to_string(),
        ]);
        push(&[
            "-kernel",
            &vm.kernel.to_string_lossy(),
            "-append",
            &vm.cmdline,
        ]);
        push(&[
            "-chardev",
            &format!(
                "file,id=serial,path={}",
                qemu_escape(&vm.serial_log.to_string_lossy())
            ),
        ]);
        push(&["-serial", "chardev:serial"]);
        for (i, d) in vm.disks.iter().enumerate() {
            let ro = if d.readonly { ",readonly=on" } else { "" };
            push(&[
                "-drive",
                &format!(
                    "id=disk{i},file={},format=raw,if=none{ro}",
                    qemu_escape(&d.path.to_string_lossy())
                ),
                "-device",
                &format!("virtio-blk-device,drive=disk{i}"),
            ]);
        }
        push(&["-device", "virtio-serial-device,max_ports=1"]);
        push(&["-chardev", &format!("socket,id=agent,fd={port_fd}")]);
        push(&["-device", "virtconsole,chardev=agent"]);
        if let Some(n) = &vm.net {
            push(&[
                "-netdev",
                &format!("tap,id=net0,fd={}", n.tap_fd),
                "-device",
                &format!("virtio-net-device,netdev=net0,mac={}", qemu_escape(&n.mac)),
            ]);
        }
        a
    }
}

/// qemu option values escape a comma by doubling it.
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

impl Engine for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn spawn(&self, vm: VmSpec, agent_port: OwnedFd) -> Result<libc::pid_t> {
        let port_fd = agent_port.as_raw_fd();
        let net = vm.net.as_ref().map(|n| (n.tap_fd, n.netns_fd));
        let args = Self::args(&vm, port_fd);
        let log = std::fs::File::create(&vm.engine_log)
            .with_context(|| format!("creating {}", vm.engine_log.display()))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // The agent port must survive exec (it was made close-on-exec).
                let fl = libc::fcntl(port_fd, libc::F_GETFD);
                if fl < 0 || libc::fcntl(port_fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The VM lives in the sandbox's network namespace and owns its tap.
                if let Some((tap, netns)) = net {
                    crate::net::inherit(tap)?;
                    if libc::setns(netns, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Die with the host process: a killed sandbox leaves no VM behind.
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Our signals are for the workload (forwarded through the agent), not for qemu.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        drop(agent_port);
        Ok(child.id() as libc::pid_t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Disk;

    #[test]
    fn command_line_has_the_devices_in_order() {
        let vm = VmSpec {
            kernel: "/k/vmlinux".into(),
            cmdline: "console=ttyS0".into(),
            vcpus: 2,
            memory_mib: 256,
            disks: vec![
                Disk {
                    path: "/c/agent.ext4".into(),
                    readonly: true,
                },
                Disk {
                    path: "/c/a,b.ext4".into(),
                    readonly: false,
                },
            ],
            serial_log: "/s/console.log".into(),
            engine_log: "/s/qemu.log".into(),
            kvm: false,
            net: Some(crate::engine::VmNet {
                tap_fd: 9,
                netns_fd: 10,
                mac: "02:00:00:00:00:01".into(),
                mtu: 1500,
            }),
        };
        let args = Qemu::args(&vm, 7).join(" ");
        assert!(
            args.contains("-netdev tap,id=net0,fd=9 -device virtio-net-device,netdev=net0,mac=02:00:00:00:00:01"),
            "{args}"
        );
        assert!(args.contains("-accel tcg"), "{args}");
        assert!(args.contains("-m 256 -smp 2"), "{args}");
        assert!(
            args.contains("id=disk0,file=/c/agent.ext4,format=raw,if=none,readonly=on"),
            "{args}"
        );
        assert!(
            args.contains("id=disk1,file=/c/a,,b.ext4,format=raw,if=none -device"),
            "{args}"
        );
        assert!(args.find("disk0").unwrap() < args.find("disk1").unwrap());
        assert!(args.contains("socket,id=agent,fd=7"), "{args}");
        assert!(args.contains("-nodefaults") && args.contains("-no-reboot"));
    }
}
