//! The qemu engine: `qemu-system-x86_64 -M microvm`, the compatibility engine.
//!
//! Devices: the serial port (ttyS0, the kernel log) to a file; one virtio-blk-device per disk in
//! order (vda, vdb, ...); a virtio-serial-device whose console port 0 (the guest's hvc0) is the
//! agent port, backed by the socket fd we pass in; when the sandbox has a network, a
//! virtio-net-device on the tap fd we pass in (and qemu runs in the sandbox's network
//! namespace). No ACPI, no option ROMs, no display; `-no-reboot` makes the guest's reset the
//! end of the qemu process.
//!
//! Snapshot boot (Kata's VM templating): a template VM keeps its RAM in a file it maps shared
//! (`memory-backend-file,share=on`); once its agent waits for Go it is stopped and migrated to
//! a file with `x-ignore-shared`, so the stream holds device state only. A sandbox's VM maps the
//! same RAM file privately (`share=off`: copy-on-write, its writes never reach the file) and
//! loads the device state with `-incoming defer` + `migrate-incoming`. Block backends and
//! chardevs are not in the stream, so the copy's command line names the sandbox's own disks,
//! logs and agent port in the template's device layout. QMP runs on a socket pair.

use crate::engine::{Engine, VmSpec};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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
        Self::args_with(vm, port_fd, None)
    }

    /// The argument list, with guest RAM in a file and a QMP monitor on a socket fd when
    /// `snap` is given (a template, or a VM restored from one).
    pub fn args_with(vm: &VmSpec, port_fd: i32, snap: Option<&SnapArgs>) -> Vec<String> {
        let mut a: Vec<String> = vec![];
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        match snap {
            None => push(&["-M", "microvm,acpi=off,x-option-roms=off"]),
            Some(s) => push(&[
                "-M",
                "microvm,acpi=off,x-option-roms=off,memory-backend=ram0",
                "-object",
                &format!(
                    "memory-backend-file,id=ram0,size={}M,mem-path={},share={}",
                    vm.memory_mib,
                    qemu_escape(&s.ram.to_string_lossy()),
                    if s.share { "on" } else { "off" }
                ),
                "-chardev",
                &format!("socket,id=qmp,fd={}", s.qmp_fd),
                "-mon",
                "chardev=qmp,mode=control",
            ]),
        }
        if snap.is_some_and(|s| !s.share) {
            push(&["-incoming", "defer"]);
        }
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
        // A restored VM runs the template's kernel, already in the template's RAM: qemu would
        // only read the 17 MB vmlinux into its own heap for fw_cfg and never use it.
        if snap.is_none_or(|s| s.share) {
            push(&[
                "-kernel",
                &vm.kernel.to_string_lossy(),
                "-append",
                &vm.cmdline,
            ]);
        }
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

/// What a template VM (`share`: its RAM file is the template's) or a restored one (a private
/// copy-on-write mapping of that file, and `-incoming defer`) adds to the command line.
pub struct SnapArgs {
    pub ram: PathBuf,
    pub share: bool,
    pub qmp_fd: i32,
    /// A restored VM's migration stream: the template's `state` file, open on this fd, which
    /// qemu inherits (`migrate-incoming fd:N`).
    pub state_fd: Option<i32>,
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
        let pid = self.launch(&vm, &agent_port, None)?;
        drop(agent_port);
        Ok(pid)
    }

    fn snapshot_id(&self, memo: &Path) -> Result<String> {
        let version = crate::template::memo(memo, &self.binary, "qemu-version", || {
            let out = Command::new(&self.binary)
                .arg("-version")
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {} -version", self.binary.display()))?;
            if !out.status.success() {
                bail!("{} -version failed", self.binary.display());
            }
            let s = String::from_utf8_lossy(&out.stdout);
            Ok(s.lines().next().unwrap_or_default().trim().to_string())
        })?;
        Ok(format!("qemu {version}"))
    }

    fn make_template(
        &self,
        vm: &VmSpec,
        dir: &Path,
        agent_port: OwnedFd,
        until_ready: &mut dyn FnMut(libc::pid_t) -> Result<()>,
    ) -> Result<Vec<String>> {
        let (qmp_host, qmp_guest) = UnixStream::pair().context("socketpair for QMP")?;
        let snap = SnapArgs {
            ram: dir.join(RAM_FILE),
            share: true,
            qmp_fd: qmp_guest.as_raw_fd(),
            state_fd: None,
        };
        let pid = self.launch(vm, &agent_port, Some(&snap))?;
        drop((agent_port, qmp_guest));
        let saved = (|| -> Result<()> {
            let mut qmp = Qmp::new(qmp_host)?;
            until_ready(pid)?;
            qmp.cmd("stop", json!({}))?;
            qmp.cmd("migrate-set-capabilities", ignore_shared())?;
            let state = dir.join(STATE_FILE);
            qmp.cmd(
                "migrate",
                json!({ "uri": format!("exec:cat > {}", shell_quote(&state)?) }),
            )?;
            loop {
                let r = qmp.cmd("query-migrate", json!({}))?;
                match r["status"].as_str() {
                    Some("completed") => break,
                    Some("failed") | Some("cancelled") => bail!(
                        "saving the template VM failed: {}",
                        r["error-desc"].as_str().unwrap_or("qemu gave no reason")
                    ),
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            Ok(())
        })();
        kill_and_reap(pid);
        saved.map_err(|e| {
            anyhow::anyhow!(
                "{e:#}{}",
                crate::host::diagnostics(&vm.serial_log, &vm.engine_log)
            )
        })?;
        Ok(vec![RAM_FILE.into(), STATE_FILE.into()])
    }

    fn spawn_restored(&self, vm: VmSpec, dir: &Path, agent_port: OwnedFd) -> Result<libc::pid_t> {
        self.spawn_restored_placed(vm, dir, agent_port, &mut |_| Ok(()))
    }

    fn places_before_resume(&self) -> bool {
        true
    }

    fn spawn_restored_placed(
        &self,
        vm: VmSpec,
        dir: &Path,
        agent_port: OwnedFd,
        place: &mut dyn FnMut(libc::pid_t) -> Result<()>,
    ) -> Result<libc::pid_t> {
        let (qmp_host, qmp_guest) = UnixStream::pair().context("socketpair for QMP")?;
        // qemu reads the stream from an fd it inherits: `exec:cat` would cost a shell and a cat
        // (fork + exec twice) on every restore.
        let state_path = dir.join(STATE_FILE);
        let state = std::fs::File::open(&state_path)
            .with_context(|| format!("opening {}", state_path.display()))?;
        let snap = SnapArgs {
            ram: dir.join(RAM_FILE),
            share: false,
            qmp_fd: qmp_guest.as_raw_fd(),
            state_fd: Some(state.as_raw_fd()),
        };
        let pid = self.launch(&vm, &agent_port, Some(&snap))?;
        crate::timings::mark("qemu: forked");
        drop((agent_port, qmp_guest));
        let resumed = (|| -> Result<()> {
            // While qemu starts (its exec and machine set-up take longer than a cgroup move):
            // the guest runs only after `cont`, below.
            place(pid)?;
            crate::timings::mark("qemu: placed");
            let mut qmp = Qmp::new(qmp_host)?;
            crate::timings::mark("qemu: QMP up");
            qmp.cmd("migrate-set-capabilities", ignore_shared())?;
            qmp.cmd(
                "migrate-incoming",
                json!({ "uri": format!("fd:{}", state.as_raw_fd()) }),
            )?;
            crate::timings::mark("qemu: migrate-incoming");
            loop {
                let r = qmp.cmd("query-status", json!({}))?;
                match r["status"].as_str() {
                    Some("inmigrate") => std::thread::sleep(Duration::from_millis(1)),
                    // The template was saved stopped, so its copy arrives paused.
                    Some("paused") | Some("postmigrate") => {
                        crate::timings::mark("qemu: state loaded");
                        qmp.cmd("cont", json!({}))?;
                        return Ok(());
                    }
                    Some("running") => return Ok(()),
                    other => bail!("the restored VM is {other:?}, not paused"),
                }
            }
        })();
        if let Err(e) = resumed {
            kill_and_reap(pid);
            bail!(
                "restoring {}: {e:#}{}",
                dir.display(),
                crate::host::diagnostics(&vm.serial_log, &vm.engine_log)
            );
        }
        Ok(pid)
    }
}

impl Qemu {
    /// Start qemu as our child with `vm`'s command line (and `snap`'s additions); returns its pid.
    fn launch(
        &self,
        vm: &VmSpec,
        agent_port: &OwnedFd,
        snap: Option<&SnapArgs>,
    ) -> Result<libc::pid_t> {
        let port_fd = agent_port.as_raw_fd();
        let qmp_fd = snap.map(|s| s.qmp_fd).unwrap_or(-1);
        let state_fd = snap.and_then(|s| s.state_fd).unwrap_or(-1);
        let net = vm.net.as_ref().map(|n| (n.tap_fd, n.netns_fd));
        let args = Self::args_with(vm, port_fd, snap);
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
                // The agent port (and the QMP socket and the migration stream) must survive
                // exec (they were made close-on-exec).
                for fd in [port_fd, qmp_fd, state_fd] {
                    if fd < 0 {
                        continue;
                    }
                    let fl = libc::fcntl(fd, libc::F_GETFD);
                    if fl < 0 || libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
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
        Ok(child.id() as libc::pid_t)
    }
}

/// The template's files: guest RAM (mapped by every copy, privately) and the device state
/// (the migration stream; with `x-ignore-shared` it holds no RAM page of the shared file).
pub const RAM_FILE: &str = "ram";
pub const STATE_FILE: &str = "state";

fn ignore_shared() -> serde_json::Value {
    json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] })
}

/// A path as one word of the `sh -c` command line qemu runs for `exec:` migration URIs.
fn shell_quote(p: &Path) -> Result<String> {
    let s = p.to_str().context("a template path that is not UTF-8")?;
    if s.contains('\'') {
        bail!("template path {s:?} contains a quote");
    }
    Ok(format!("'{s}'"))
}

fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: signal and reap our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
}

/// A QMP client on the monitor socket qemu got as an fd. Hand-written: a few JSON lines each
/// way (qapi crates bring an async runtime or a code generator for the whole schema).
struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Qmp {
    fn new(sock: UnixStream) -> Result<Qmp> {
        sock.set_read_timeout(Some(QMP_TIMEOUT))?;
        let w = sock.try_clone()?;
        let mut q = Qmp {
            r: BufReader::new(sock),
            w,
        };
        q.line().context("waiting for qemu's QMP greeting")?;
        q.cmd("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn line(&mut self) -> Result<serde_json::Value> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            bail!("qemu closed its QMP socket (it exited)");
        }
        serde_json::from_str(&l).with_context(|| format!("QMP said {l:?}"))
    }

    /// Run one command; its `return`, or its error as one line. Events are skipped.
    fn cmd(&mut self, name: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        let mut req = json!({ "execute": name, "arguments": args }).to_string();
        req.push('\n');
        self.w.write_all(req.as_bytes())?;
        loop {
            let r = self.line().with_context(|| format!("QMP {name}"))?;
            if let Some(e) = r.get("error") {
                bail!("QMP {name}: {}", e["desc"].as_str().unwrap_or("error"));
            }
            if let Some(v) = r.get("return") {
                return Ok(v.clone());
            }
        }
    }
}

/// How long one QMP answer may take (the template's save writes a few MiB at most).
const QMP_TIMEOUT: Duration = Duration::from_secs(60);

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
        assert!(
            args.contains("-kernel /k/vmlinux -append console=ttyS0"),
            "{args}"
        );
        // A template boots the kernel; a restored copy runs the one in the template's RAM.
        let snap = |share| SnapArgs {
            ram: "/t/ram".into(),
            share,
            qmp_fd: 5,
            state_fd: (!share).then_some(6),
        };
        let template = Qemu::args_with(&vm, 7, Some(&snap(true))).join(" ");
        assert!(template.contains("-kernel /k/vmlinux"), "{template}");
        assert!(!template.contains("-incoming"), "{template}");
        let restored = Qemu::args_with(&vm, 7, Some(&snap(false))).join(" ");
        assert!(restored.contains("-incoming defer"), "{restored}");
        assert!(restored.contains("mem-path=/t/ram,share=off"), "{restored}");
        assert!(
            !restored.contains("-kernel") && !restored.contains("-append"),
            "{restored}"
        );
    }
}
