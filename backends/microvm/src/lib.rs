//! The microvm backend: a Linux guest per sandbox.
//!
//! `create` prepares the guest's disks on the host (the agent disk, the bundle rootfs as a
//! cached ext4 image, a per-sandbox config disk), forks the host process ([`host`]) which starts
//! the VM through an engine ([`engine`]) and waits for the guest agent to be ready, and returns
//! once the guest is up and its workload set up, blocked until `start`. See
//! docs/backends/microvm.md.

pub mod assets;
pub mod engine;
pub mod exec;
pub mod guest;
pub mod hako_engine;
pub mod host;
pub mod hub;
pub mod image;
pub mod knobs;
pub mod measure;
pub mod net;
pub mod qemu;
pub mod relay;
pub mod template;
pub mod timings;
pub mod vmm;

use anyhow::{bail, Context, Result};
use engine::{Disk, Engine, VmSpec};
use hako_contract::{
    Backend, CreateRequest, Created, ExecRequest, Execed, LinuxResources, Sandbox, Spec,
};
use knobs::{Knobs, Vmm};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The kernel command line both engines boot with. The agent disk is vda (the first disk).
pub const CMDLINE: &str =
    "console=ttyS0 reboot=t panic=-1 quiet root=/dev/vda ro rootfstype=ext4 init=/init";

/// Files the backend keeps in the sandbox's state directory.
const CONFIG_DISK: &str = "microvm-config.disk";
const SERIAL_LOG: &str = "microvm-console.log";
const ENGINE_LOG: &str = "microvm-engine.log";
const VM_PID: &str = "microvm-vm.pid";

#[derive(Debug, Default, Clone, Copy)]
pub struct MicrovmBackend;

impl MicrovmBackend {
    pub fn new() -> Self {
        MicrovmBackend
    }
}

/// `--debug` lines with the time each phase of `create` took, so a slow create shows where.
struct Phases {
    debug: bool,
    start: std::time::Instant,
    last: std::time::Instant,
}

impl Phases {
    fn new(debug: bool) -> Phases {
        let now = std::time::Instant::now();
        Phases {
            debug,
            start: now,
            last: now,
        }
    }

    /// `what` just ended: its time, and the time since create began.
    fn done(&mut self, what: &str) {
        let now = std::time::Instant::now();
        if self.debug {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            hako_linux::debug::line(&format!(
                "microvm: create: {what}: {:.1} ms (at {:.1} ms)",
                ms(now - self.last),
                ms(now - self.start)
            ));
        }
        self.last = now;
    }
}

/// Which engine runs a sandbox, and whether with KVM.
struct Choice {
    engine: Box<dyn Engine>,
    kvm: bool,
}

/// Pick the engine. `auto` (the default) uses hako's own VMM when the KVM probe says this
/// host's KVM runs an unmodified Linux guest (and the VM has 1 vCPU), qemu otherwise; qemu uses
/// KVM on the same condition and TCG when it does not hold.
fn choose_engine(k: &Knobs, cache: &Path) -> Result<Choice> {
    let (kvm_ok, why) = hako_engine::probe(cache);
    match k.vmm {
        Vmm::Hako if !kvm_ok => bail!(
            "{}=hako: hako's own VMM cannot boot a Linux guest on this host: {why}; use qemu or auto",
            knobs::VMM
        ),
        Vmm::Hako if k.vcpus != 1 => {
            bail!("{}=hako runs 1 vCPU for now ({} = {}); use qemu", knobs::VMM, knobs::VCPUS, k.vcpus)
        }
        Vmm::Hako => Ok(Choice { engine: Box::new(hako_engine::HakoVmm), kvm: true }),
        Vmm::Auto if kvm_ok && k.vcpus == 1 => Ok(Choice { engine: Box::new(hako_engine::HakoVmm), kvm: true }),
        Vmm::Qemu | Vmm::Auto => Ok(Choice { engine: Box::new(qemu::Qemu::find()?), kvm: kvm_ok }),
    }
}

fn kernel_path(k: &Knobs) -> PathBuf {
    k.kernel.clone().unwrap_or_else(assets::default_kernel)
}

fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec.root().as_ref().context("config.json has no root")?;
    let p = root.path();
    Ok(if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    })
}

impl Backend for MicrovmBackend {
    fn name(&self) -> &'static str {
        "microvm"
    }

    fn annotations(&self) -> &'static [&'static str] {
        knobs::ANNOTATIONS
    }

    fn check(&self, spec: &Spec, bundle: &Path) -> Result<()> {
        let k = Knobs::from_spec(spec)?;
        guest::translate(spec, bundle, None)?;
        let rootfs = rootfs_path(spec, bundle)?;
        if !rootfs.is_dir() {
            bail!("root.path {} is not a directory", rootfs.display());
        }
        assets::check_kernel(&kernel_path(&k))?;
        if k.vmm != Vmm::Hako {
            // qemu is the engine unless the KVM probe (run by create) picks hako's own VMM.
            if let Err(e) = qemu::Qemu::find() {
                if k.vmm == Vmm::Qemu || !std::path::Path::new("/dev/kvm").exists() {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn create(&self, req: &CreateRequest) -> Result<Created> {
        let mut phases = Phases::new(req.global.debug);
        let k = Knobs::from_spec(req.spec)?;
        if req.preserve_fds > 0 {
            bail!("--preserve-fds: file descriptors cannot be passed into a microvm guest");
        }
        let kernel = kernel_path(&k);
        assets::check_kernel(&kernel)?;
        phases.done("kernel check");
        let cache = req.global.root.join("microvm-cache");
        let choice = choose_engine(&k, &cache)?;
        phases.done("engine choice");
        let agent = assets::find_agent()?;
        let agent_disk = assets::agent_disk(&cache, &agent)?;
        phases.done("agent disk");
        let rootfs = rootfs_path(req.spec, req.bundle)?;
        // Held until the VM has the image open (below): `hako microvm prune` waits for that.
        let held_image = image::rootfs_image(&cache, &rootfs, k.image_budget)?;
        let image = held_image.path.clone();
        phases.done("rootfs image");
        let mut builder = hako_agent::proto::ConfigBuilder::new();
        let mut cfg = guest::translate(req.spec, req.bundle, Some(&mut builder))?;
        cfg.overlay_size_mib = (k.memory_mib / 2).max(8);
        phases.done("config");
        // The engine's network (a namespace path in the spec) moves into the guest; undone below
        // if create fails, and by delete.
        let plumbed = match net::netns_path(req.spec) {
            Some(p) => Some(net::plumb(&p).context("the sandbox's network")?),
            None => None,
        };
        let undo_net = |e: anyhow::Error| {
            if let Some(p) = &plumbed {
                let _ = p.attached.undo();
            }
            e
        };
        cfg.net = plumbed.as_ref().map(|p| p.attached.net.clone());
        let config_disk = req.state_dir.join(CONFIG_DISK);
        let config_image = builder.finish(&cfg);
        std::fs::write(&config_disk, &config_image)
            .with_context(|| format!("writing {}", config_disk.display()))
            .map_err(undo_net)?;
        phases.done("network and config disk");

        let vm = VmSpec {
            kernel: kernel.clone(),
            cmdline: CMDLINE.to_string(),
            vcpus: k.vcpus,
            memory_mib: k.memory_mib,
            disks: vec![
                Disk {
                    path: agent_disk.clone(),
                    readonly: true,
                },
                Disk {
                    path: image.clone(),
                    readonly: true,
                },
                Disk {
                    path: config_disk.clone(),
                    readonly: true,
                },
            ],
            serial_log: req.state_dir.join(SERIAL_LOG),
            engine_log: req.state_dir.join(ENGINE_LOG),
            kvm: choice.kvm,
            net: plumbed.as_ref().map(|p| engine::VmNet {
                tap_fd: p.tap.as_raw_fd(),
                netns_fd: p.netns.as_raw_fd(),
                mac: p.attached.net.mac.clone(),
                mtu: p.attached.net.mtu,
            }),
        };
        let debug = |m: &str| {
            if req.global.debug {
                hako_linux::debug::line(&format!("microvm: {m}"));
            }
        };
        // Snapshot boot: the template for this shape (made now when there is none or it is
        // damaged). Anything in the way means a cold boot, said in a debug line.
        let restore = match k.boot {
            knobs::Boot::Cold => None,
            knobs::Boot::Snapshot if !image::is_device_sized(&image) => {
                debug(&format!(
                    "cold boot: the rootfs image is larger than a template's rootfs device ({} MiB)",
                    image::ROOTFS_DEVICE_BYTES >> 20
                ));
                None
            }
            knobs::Boot::Snapshot if vm.net.is_some() && choice.engine.name() != "qemu" => {
                debug("cold boot: the hako engine makes templates without a network device only");
                None
            }
            knobs::Boot::Snapshot => {
                let net_tap = plumbed
                    .as_ref()
                    .map(|p| net::tap_profile(p.tap.as_raw_fd()))
                    .transpose();
                let t = net_tap
                    .and_then(|net_tap| {
                        template::Inputs::new(
                            &*choice.engine,
                            &req.global.root,
                            &kernel,
                            &agent_disk,
                            k.vcpus,
                            k.memory_mib,
                            choice.kvm,
                            net_tap,
                        )
                    })
                    .and_then(|i| {
                        template::ensure(
                            &*choice.engine,
                            &req.global.root,
                            &i,
                            &kernel,
                            &agent_disk,
                            template::Check::Fast,
                        )
                    });
                match t {
                    Ok(t) => {
                        if let Some(why) = &t.built {
                            debug(&format!("made the template {} ({why})", t.dir.display()));
                        }
                        Some(host::Restore {
                            template: t.dir,
                            cmdline: t.inputs.cmdline,
                            // The agent disk and the rootfs image; the config goes after Go.
                            disks: vm.disks[..2].to_vec(),
                            config: config_image,
                        })
                    }
                    Err(e) => {
                        debug(&format!("cold boot: {e:#}"));
                        None
                    }
                }
            }
        };

        phases.done("template");

        let tty = match (cfg.process.terminal, req.console_socket) {
            (true, Some(sock)) => {
                Some(hako_contract::console::send_pty_master(sock).map_err(undo_net)?)
            }
            _ => None,
        };
        let engine_name = choice.engine.name();
        let template_dir = restore.as_ref().map(|r| r.template.clone());
        let cgroup = host_cgroup(req).map_err(undo_net)?;
        hako_contract::fault::point("create:cgroup");
        phases.done("console and cgroup");
        let cgroup_json = cgroup
            .as_ref()
            .map(|c| serde_json::to_value(c).unwrap_or_default());
        let plan = host::HostPlan {
            cgroup: cgroup.clone(),
            engine: choice.engine,
            vm,
            start_fifo: req.start_fifo.to_path_buf(),
            vm_pid_file: req.state_dir.join(VM_PID),
            exec_sock: req.state_dir.join(hub::EXEC_SOCK),
            tty,
            timings_file: req.state_dir.join(timings::FILE),
            restore,
        };
        let (pid, boot) =
            match hako_contract::host_process::spawn::<host::BootReport>(req.state_dir, |ready| {
                host::main(plan, ready)
            }) {
                Ok((pid, report)) => {
                    phases.done(&format!("host process: guest ready ({})", report.steps));
                    if !report.agent_steps_ms.is_empty() {
                        let steps: Vec<String> = report
                            .agent_steps_ms
                            .iter()
                            .map(|(n, ms)| format!("{n} {ms:.1}"))
                            .collect();
                        debug(&format!("agent steps (guest ms): {}", steps.join(", ")));
                    }
                    if let Some(why) = &report.fallback {
                        debug(&format!("the template did not restore, booted cold: {why}"));
                        // It passed the checks but did not restore: the next create makes it
                        // again.
                        if let Some(d) = &template_dir {
                            template::discard(d);
                        }
                    }
                    (pid, if report.snapshot { "snapshot" } else { "cold" })
                }
                Err(e) => {
                    if let Some(cg) = &cgroup {
                        let _ = cg.destroy();
                    }
                    return Err(undo_net(match e {
                        hako_contract::host_process::Failed::Died(_) => {
                            anyhow::anyhow!(
                                "microvm: the microvm host process died while the guest booted"
                            )
                        }
                        e => anyhow::anyhow!("microvm: {e}"),
                    }));
                }
            };
        // The VM has its disks open: the image may go from the cache now.
        drop(held_image);
        let net_json = plumbed
            .as_ref()
            .map(|p| serde_json::to_value(&p.attached).unwrap_or_default());
        // The tap and namespace fds live on in the host process (and the VM); ours close here.
        drop(plumbed);
        Ok(Created {
            pid,
            data: serde_json::json!({
                "engine": engine_name,
                "boot": boot,
                "accel": if choice.kvm { "kvm" } else { "tcg" },
                "kernel": kernel,
                "rootfs_image": image,
                "agent_disk": agent_disk,
                "vcpus": k.vcpus,
                "memory_mib": k.memory_mib,
                "cgroup": cgroup_json,
                "net": net_json,
            }),
        })
    }

    fn kill(&self, sb: &Sandbox, signal: i32, all: bool) -> Result<()> {
        if !sb.alive {
            bail!("container {} is not running", sb.id);
        }
        // The host process forwards catchable signals to the workload through the agent (to
        // every guest process with --all, marked by a sigqueue value); SIGKILL and SIGSTOP act
        // on the host process itself, and the VM dies with it.
        let r = if all && signal != libc::SIGKILL && signal != libc::SIGSTOP {
            let val = libc::sigval {
                sival_ptr: relay::SIGNAL_ALL_MARK as *mut libc::c_void,
            };
            // SAFETY: sigqueue(3).
            unsafe { libc::sigqueue(sb.pid, signal, val) }
        } else {
            // SAFETY: kill(2).
            unsafe { libc::kill(sb.pid, signal) }
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("kill {} {signal}", sb.pid));
        }
        // A paused sandbox's frozen host process dies only once thawed.
        if signal == libc::SIGKILL {
            hako_contract::cgroup::thaw_if_frozen(hako_contract::cgroup::of(sb).as_ref());
        }
        Ok(())
    }

    fn exec(&self, sb: &Sandbox, req: &ExecRequest) -> Result<Execed> {
        if !sb.alive {
            bail!("container {} is not running", sb.id);
        }
        if req.preserve_fds > 0 {
            bail!("--preserve-fds: file descriptors cannot be passed into a microvm guest");
        }
        let p = guest::translate_process(req.process)?;
        if !p.cwd.starts_with('/') {
            bail!("exec: cwd {:?} must be an absolute path", p.cwd);
        }
        let sock = sb.state_dir.join(hub::EXEC_SOCK);
        if !sock.exists() {
            bail!(
                "exec: the microvm sandbox {} has not been started (exec needs its workload running)",
                sb.id
            );
        }
        let tty = match (p.terminal, req.console_socket) {
            (true, Some(s)) => Some(hako_contract::console::send_pty_master(s)?),
            (true, None) => bail!("exec with a terminal needs --console-socket"),
            (false, _) => None,
        };
        let json = serde_json::to_string(&p).context("encoding the exec request")?;
        let pid = exec::start(&sock, json, tty).context("exec")?;
        Ok(Execed { pid })
    }

    /// Not through the default: memory and pids limits apply inside the guest, not to the
    /// host cgroup, and a running guest cannot change them.
    fn update(&self, _sb: &Sandbox, _resources: &LinuxResources) -> Result<()> {
        bail!("update is not supported by the microvm backend")
    }

    fn pids(&self, sb: &Sandbox) -> Result<Vec<i32>> {
        if let Some(cg) = hako_contract::cgroup::of(sb) {
            if let Ok(p) = cg.pids() {
                return Ok(p);
            }
        }
        let mut v = vec![];
        if sb.alive {
            v.push(sb.pid);
            if let Some(vm) = vm_pid(sb.state_dir) {
                v.push(vm);
            }
        }
        Ok(v)
    }

    fn delete(&self, sb: &Sandbox) -> Result<()> {
        // The VM dies with the host process (PR_SET_PDEATHSIG); make sure of it anyway.
        if let Some(vm) = vm_pid(sb.state_dir) {
            // SAFETY: kill(2) of a process verified by pid and start time.
            unsafe { libc::kill(vm, libc::SIGKILL) };
        }
        if let Some(cg) = hako_contract::cgroup::of(sb) {
            cg.destroy()?;
        }
        if let Some(v) = sb.data.get("net").filter(|v| !v.is_null()) {
            let a: net::Attached =
                serde_json::from_value(v.clone()).context("the sandbox's network in state.json")?;
            a.undo()
                .context("giving the network namespace back its veth")?;
        }
        for f in [
            CONFIG_DISK,
            SERIAL_LOG,
            ENGINE_LOG,
            VM_PID,
            hub::EXEC_SOCK,
            timings::FILE,
            timings::TMP_FILE,
            hako_contract::orphan::HOST_PID_FILE,
        ] {
            let p = sb.state_dir.join(f);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
        Ok(())
    }

    fn delete_orphan(&self, sb: &Sandbox) -> Result<()> {
        if let Some(cg) = hako_contract::cgroup::orphan(sb) {
            cg.destroy()?;
        }
        // Its create may have died making the rootfs image.
        image::sweep_half_made(&sb.global.root.join("microvm-cache"));
        self.delete(sb)
    }

    fn features(&self) -> serde_json::Value {
        let qemu = match qemu::Qemu::find() {
            Ok(_) => "available (the default): a booted template per kernel, agent, qemu version, vCPUs and memory, restored copy-on-write; a sandbox with a network restores from a template with a virtio-net device on a tap like its own".to_string(),
            Err(e) => format!("unavailable: {e:#}"),
        };
        serde_json::json!({
            "engines": ["hako", "qemu"],
            "boot": {
                "annotation": knobs::BOOT,
                "values": ["snapshot", "cold"],
                "default": "snapshot",
                "snapshot": {
                    "qemu": qemu,
                    "hako": "available where the hako engine runs (its KVM probe says this host's KVM runs Linux; elsewhere the engine is not chosen): a booted template per kernel, agent, hako binary, host CPU and kernel, and memory, restored copy-on-write in a jailed, filtered VMM process; a sandbox with a network boots cold",
                },
            },
            "annotations": knobs::ANNOTATIONS,
            "mountTypes": ["proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "bind (files, and read-only directories, copied in)"],
            "seccomp": {"enabled": false},
            "terminal": true,
            "exec": true,
            "pause": true,
            "network": "a network namespace path in the spec: its one veth is joined to a tap by tc mirred redirect and its addresses, routes and MAC move to the guest's virtio-net; otherwise lo only",
            "io.hako.refuses": [
                "joining a host namespace by path other than the network namespace (whose veth the guest takes over)",
                "linux.devices beyond the default /dev nodes (no host device passes into a guest)",
                "a writable bind mount of a host directory (read-only ones and files are copied in)",
                "user namespace id mappings other than the rootless one (container ids onto the caller's own)",
                "engine=hako where /dev/kvm cannot be opened or cannot boot the guest (auto falls back to qemu)"
            ],
            "io.hako.rootless": "the qemu engine runs as the user (KVM when /dev/kvm is the user's to open, else TCG); the rootless spec's /sys bind becomes the guest's own sysfs; cgroup only where delegated",
        })
    }
}

/// `hako microvm warm`: make (or check, checksums included, and remake when damaged) the
/// template sandboxes of this shape restore, before any create needs it. The engine is chosen
/// as `create` chooses it (`vmm`, the KVM probe).
/// The values are read as the annotations of the same names are.
pub fn warm(
    root: &Path,
    kernel: Option<PathBuf>,
    vcpus: &str,
    memory: &str,
    vmm: &str,
) -> Result<template::Template> {
    let mut spec = Spec::default();
    let mut ann = std::collections::HashMap::from([
        (knobs::VCPUS.to_string(), vcpus.to_string()),
        (knobs::MEMORY.to_string(), memory.to_string()),
        (knobs::VMM.to_string(), vmm.to_string()),
    ]);
    if let Some(k) = &kernel {
        ann.insert(knobs::KERNEL.to_string(), k.to_string_lossy().into_owned());
    }
    spec.set_annotations(Some(ann));
    let k = Knobs::from_spec(&spec)?;
    let kernel = kernel_path(&k);
    assets::check_kernel(&kernel)?;
    let cache = root.join("microvm-cache");
    let choice = choose_engine(&k, &cache)?;
    let agent = assets::find_agent()?;
    let agent_disk = assets::agent_disk(&cache, &agent)?;
    let inputs = template::Inputs::new(
        &*choice.engine,
        root,
        &kernel,
        &agent_disk,
        k.vcpus,
        k.memory_mib,
        choice.kvm,
        None,
    )?;
    template::ensure(
        &*choice.engine,
        root,
        &inputs,
        &kernel,
        &agent_disk,
        template::Check::Full,
    )
}

/// A `hako microvm prune --older-than` value: a whole number with an `s`, `m`, `h` or `d`
/// suffix (seconds, minutes, hours, days).
pub fn parse_age(s: &str) -> Result<std::time::Duration> {
    let bad = || {
        anyhow::anyhow!(
            "--older-than {s:?}: not a duration (a whole number with s, m, h or d, e.g. 7d)"
        )
    };
    let unit = match s.chars().last().ok_or_else(bad)? {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    Ok(std::time::Duration::from_secs(
        n.checked_mul(unit).ok_or_else(bad)?,
    ))
}

/// `hako microvm prune`: remove from the cache under `root` the templates and rootfs images not
/// used within `older_than` (everything with `all`), damaged templates, what dead creates left
/// half-made and memo entries whose image is gone (docs/backends/microvm.md, "The cache and its
/// eviction"). With `dry_run`, only says what would go. Agent disks, the kernel probe's answer
/// and the template memo (a few bytes each, for the kernel and agent in use) stay.
pub fn prune(
    root: &Path,
    older_than: std::time::Duration,
    all: bool,
    dry_run: bool,
) -> Result<Vec<template::Pruned>> {
    let keep = if all {
        template::Keep::Nothing
    } else {
        template::Keep::UsedSince(
            std::time::SystemTime::now()
                .checked_sub(older_than)
                .unwrap_or(std::time::UNIX_EPOCH),
        )
    };
    let mut out = template::prune(root, keep, dry_run)?;
    out.extend(image::prune(&root.join("microvm-cache"), keep, dry_run)?);
    Ok(out)
}

/// The host cgroup of a sandbox, by the rule every backend follows (`hako_contract::cgroup`):
/// `linux.cgroupsPath`, else hako's default path for the id. It holds the host process and the
/// VM. CPU and block I/O limits apply to it (the vCPUs and the disk I/O
/// are the VM process's threads); memory and pids apply inside the guest (memory is the VM's
/// size, pids a guest cgroup), so the VMM's own overhead is not counted against them.
fn host_cgroup(req: &CreateRequest) -> Result<Option<hako_linux::cgroups::CgroupManager>> {
    let cg = hako_contract::cgroup::make(req, hako_contract::cgroup::Need::Always, None)
        .context("the sandbox's host cgroup (linux.cgroupsPath)")?;
    let res = req
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone());
    let mut host = oci_spec::runtime::LinuxResources::default();
    if let Some(r) = &res {
        host.set_cpu(r.cpu().clone());
        host.set_block_io(r.block_io().clone());
    }
    if host.cpu().is_some() || host.block_io().is_some() {
        let Some(m) = &cg else {
            bail!("linux.resources.cpu/blockIO need the sandbox's host cgroup, which could not be made");
        };
        if let Err(e) = m.apply(&host) {
            let _ = m.destroy();
            return Err(e).context("applying linux.resources.cpu/blockIO to the VM's host cgroup");
        }
    }
    Ok(cg)
}

/// The VM's pid, when the host process recorded one and it is still that process.
fn vm_pid(state_dir: &Path) -> Option<i32> {
    let s = std::fs::read_to_string(state_dir.join(VM_PID)).ok()?;
    let mut it = s.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    hako_contract::proc::is_alive(pid, Some(start)).then_some(pid)
}
