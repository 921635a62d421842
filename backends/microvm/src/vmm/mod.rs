//! hako's own VMM on KVM: the microvm backend's fast path on hosts with hardware virtualization.
//!
//! One [`Vmm`] is built by [`Vmm::new`] from a [`VmConfig`] (the resources description) and run
//! by [`Vmm::run`] until the guest stops it; the microvm backend calls both from its forked host
//! process. Layout: [`layout`] (guest memory map), [`boot`] (vmlinux, PVH / zero page, command
//! line), [`cpu`] (GDT, page tables, registers, CPUID, MSRs), [`devices`] (8250, i8042, debug
//! exit port, virtio-mmio block and console), [`jail`] (namespaces, pivot into an empty root),
//! [`seccomp`] (per-thread filters kept as JSON data), [`probe`] (can this host's KVM run Linux?),
//! [`snapshot`] (pause into a snapshot, [`Vmm::restore`] from one).
//!
//! Templates (issue 15), for the backend's hako engine:
//!
//! ```text
//! // Make one: the guest boots as usual; the snapshot's files are opened before the jail.
//! let (trigger_r, trigger_w) = pipe();
//! let vmm = Vmm::new_template(config, SnapshotTo { dir, trigger: trigger_r })?;
//! fork: vmm.run() == Ok(RunOutcome { exit: ExitReason::Snapshotted, .. })
//! caller: on the agent port's Ready, write a byte to trigger_w; once the VMM has ended,
//!         snapshot::commit(dir) (optionally snapshot::verify(dir) when adopting it)
//! // Use it, once per sandbox: its own disks, agent port and tap; jailed and filtered.
//! let vmm = Vmm::restore(RestoreConfig { snapshot: dir, serial, block, console, net,
//!                                        jail: Some(..), seccomp: true })?;
//! vmm.run()  // the guest continues where the template stopped
//! ```
//!
//! A restore whose devices do not match the snapshot's (types, order, features) and a damaged
//! or foreign snapshot are refused before any VM exists; a disk of another size than the
//! template's reaches the guest as a config change. See [`snapshot`] for what is saved.

pub mod boot;
pub mod cpu;
pub mod devices;
pub mod jail;
pub mod layout;
pub mod mptable;
pub mod probe;
pub mod seccomp;
pub mod snapshot;

use std::cell::Cell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kvm_bindings::{kvm_pit_config, kvm_run, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

pub use jail::JailConfig;
pub use probe::probe_kvm_runs_linux;
pub use snapshot::SnapshotTrigger;

use devices::virtio::block::Block;
use devices::virtio::console::Console;
use devices::virtio::mmio::MmioTransport;
use devices::Devices;
use layout::*;

/// A disk for the guest (virtio-blk over a host file).
#[derive(Clone, Debug)]
pub struct BlockDevice {
    pub path: PathBuf,
    pub read_only: bool,
    /// Serial returned by GET_ID (at most 20 bytes are used).
    pub id: String,
}

/// Where guest output goes.
pub enum Output {
    Sink,
    /// The VMM process's stdout (unbuffered).
    Stdout,
    Fd(File),
    Capture(Capture),
}

/// Where guest input comes from.
pub enum Input {
    None,
    Stdin,
    Fd(File),
}

/// One character device's host side.
pub struct Stdio {
    pub input: Input,
    pub output: Output,
}

impl Stdio {
    pub fn sink() -> Self {
        Stdio {
            input: Input::None,
            output: Output::Sink,
        }
    }
    pub fn inherit() -> Self {
        Stdio {
            input: Input::Stdin,
            output: Output::Stdout,
        }
    }
}

/// A virtio-net device: the tap (made with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`), the MAC the
/// guest sees and the MTU it is told.
pub struct NetDevice {
    pub tap: std::os::fd::OwnedFd,
    pub mac: [u8; 6],
    pub mtu: u16,
}

/// Where a template VM ([`Vmm::new_template`]) writes its snapshot, and when.
pub struct SnapshotTo {
    /// An existing directory (say, the template cache's entry being made).
    pub dir: PathBuf,
    /// Readable with at least one byte (the read end of a pipe, an eventfd) when the caller
    /// wants the snapshot, say once the agent port said "ready". End of file (the caller went
    /// away) is no request.
    pub trigger: std::os::fd::OwnedFd,
}

/// The resources description of one microVM.
pub struct VmConfig {
    pub memory_mib: u32,
    /// 1 to 32; described to the guest by an MP table.
    pub vcpus: u8,
    /// A vmlinux ELF (PVH entry used when its note exists, else the 64-bit boot protocol).
    pub kernel: PathBuf,
    /// Kernel command line; the VMM appends the `virtio_mmio.device=` entries.
    pub cmdline: String,
    pub block: Vec<BlockDevice>,
    /// The 8250 at 0x3f8.
    pub serial: Stdio,
    /// A virtio-console when set.
    pub console: Option<Stdio>,
    /// A virtio-net device on a tap when set (after the console in the MMIO windows).
    pub net: Option<NetDevice>,
    /// Jail the VMM (namespaces + pivot into an empty root) once everything is open.
    pub jail: Option<JailConfig>,
    /// Install the per-thread seccomp filters in `run`.
    pub seccomp: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            memory_mib: 128,
            vcpus: 1,
            kernel: PathBuf::new(),
            cmdline: String::new(),
            block: Vec::new(),
            serial: Stdio::sink(),
            console: None,
            net: None,
            jail: None,
            seccomp: false,
        }
    }
}

/// Why the VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest wrote a status byte to the debug exit port 0xf4.
    DebugExit(u8),
    /// The guest reset the machine through the i8042 (Linux `reboot` with `reboot=k`) or KVM
    /// reported a reset system event.
    Reset,
    /// Triple fault / KVM shutdown / power-off system event.
    Shutdown,
    /// HLT reached userspace (no interrupt can wake the vCPU).
    Halted,
    /// KVM could not run the guest's code (e.g. `kvm_pvm` on XRSTOR/INT3/POPCNT).
    KvmInternalError { suberror: u32, data: Vec<u64> },
    /// KVM failed to enter the guest.
    FailEntry { reason: u64, cpu: u32 },
    /// An exit the VMM does not handle.
    Unexpected(String),
    /// The VMM paused the guest and wrote its snapshot ([`SnapshotTrigger`]).
    Snapshotted,
}

impl ExitReason {
    /// A one-line description; KVM emulation failures name the instruction bytes.
    pub fn describe(&self) -> String {
        match self {
            ExitReason::KvmInternalError { suberror: 1, data }
                if data.len() >= 3 && data[0] & 1 != 0 =>
            {
                // KVM_INTERNAL_ERROR_EMULATION with instruction bytes: data[1..] holds
                // { u8 insn_size; u8 insn_bytes[15] }.
                let raw: Vec<u8> = data[1..].iter().flat_map(|w| w.to_le_bytes()).collect();
                let n = usize::from(raw[0]).min(15);
                let bytes: Vec<String> = raw[1..1 + n]
                    .iter()
                    .take(6)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!(
                    "KVM internal error: emulation failure at instruction bytes {} ...",
                    bytes.join(" ")
                )
            }
            ExitReason::KvmInternalError { suberror, data } => {
                format!("KVM internal error (suberror {suberror}, data {data:x?})")
            }
            other => format!("{other:?}"),
        }
    }

    /// Whether the guest itself asked to stop (as opposed to KVM failing it).
    pub fn is_guest_requested(&self) -> bool {
        matches!(
            self,
            ExitReason::DebugExit(_)
                | ExitReason::Reset
                | ExitReason::Shutdown
                | ExitReason::Halted
        )
    }
}

/// What `run` returns.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub exit: ExitReason,
    /// From the start of `Vmm::new` to the first exit the guest caused (its first I/O).
    pub to_first_exit: Option<Duration>,
    /// From the start of `Vmm::new` to the start of `run`.
    pub build_time: Duration,
    /// The steps of `Vmm::new` / `Vmm::restore` and of `run` up to the first exit.
    pub phases: Phases,
}

/// Where the time of building (or restoring) a VM and starting it went: (step, duration), in
/// order, adding up to the time to the guest's first exit when it has run.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    last: Option<Instant>,
    pub steps: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start(at: Instant) -> Self {
        Phases {
            last: Some(at),
            steps: Vec::new(),
        }
    }

    fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        let since = self.last.map(|l| now - l).unwrap_or_default();
        self.steps.push((step, since));
        self.last = Some(now);
    }

    /// "step 1.23 ms, step 0.45 ms, ..."
    pub fn describe(&self) -> String {
        self.steps
            .iter()
            .map(|(n, d)| format!("{n} {:.2} ms", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Guest output captured in memory (tests, the probe).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn writer(out: Output) -> Result<Box<dyn Write + Send>> {
    Ok(match out {
        Output::Sink => Box::new(std::io::sink()),
        Output::Stdout => {
            let fd = nix::unistd::dup(std::io::stdout()).context("dup(stdout)")?;
            Box::new(File::from(fd))
        }
        Output::Fd(f) => Box::new(f),
        Output::Capture(c) => Box::new(c),
    })
}

fn reader(input: Input) -> Result<Option<File>> {
    Ok(match input {
        Input::None => None,
        Input::Stdin => Some(File::from(
            nix::unistd::dup(std::io::stdin()).context("dup(stdin)")?,
        )),
        Input::Fd(f) => Some(f),
    })
}

/// A built microVM, ready to run.
pub struct Vmm {
    _kvm: Kvm,
    _vm: VmFd,
    _mem: GuestMemoryMmap,
    /// Guest memory maps a snapshot's file (a restored VM) rather than anonymous memory.
    mem_file_backed: bool,
    vcpus: Vec<VcpuFd>,
    devices: Arc<Mutex<Devices>>,
    serial_in: Option<File>,
    console_in: Option<File>,
    /// The virtio-net device's tap (owned by the device), polled for frames to the guest.
    net_fd: Option<i32>,
    seccomp: bool,
    started: Instant,
    phases: Phases,
    /// The command line given to the guest (with the virtio-mmio devices appended).
    pub cmdline: String,
    /// Which protocol the BSP boots with.
    pub entry: boot::KernelEntry,
    snapshot: Arc<snapshot::Request>,
    /// A [`SnapshotTrigger`] was handed out.
    snapshot_armed: bool,
    jailed: bool,
}

/// What [`Vmm::restore`] needs besides the snapshot: this copy's own host side of every
/// device. The device layout (how many disks, whether a console and a net device) must be the
/// snapshot's; the images, ports and tap are this copy's.
pub struct RestoreConfig {
    /// A directory [`SnapshotTrigger::request`] wrote.
    pub snapshot: PathBuf,
    /// The 8250's host side for the restored copy.
    pub serial: Stdio,
    /// The disks, in the snapshot's order (same count and read-only flags).
    pub block: Vec<BlockDevice>,
    /// The virtio-console's host side (the agent port), when the snapshot has one.
    pub console: Option<Stdio>,
    /// The virtio-net device's tap and MAC, when the snapshot has one.
    pub net: Option<NetDevice>,
    /// Jail the VMM once the VM is loaded.
    pub jail: Option<JailConfig>,
    /// Install the per-thread seccomp filters in `run`.
    pub seccomp: bool,
}

impl RestoreConfig {
    /// A restore of `snapshot` with only an 8250 (and no jail, no filters).
    pub fn new(snapshot: PathBuf, serial: Stdio) -> Self {
        RestoreConfig {
            snapshot,
            serial,
            block: Vec::new(),
            console: None,
            net: None,
            jail: None,
            seccomp: false,
        }
    }
}

/// The virtio device types, in MMIO-window order, of a VM with these devices.
fn device_layout(block: &[BlockDevice], console: bool, net: bool) -> Vec<u32> {
    let mut v = vec![devices::virtio::TYPE_BLOCK; block.len()];
    if console {
        v.push(devices::virtio::TYPE_CONSOLE);
    }
    if net {
        v.push(devices::virtio::net::TYPE_NET);
    }
    v
}

fn device_names(types: &[u32]) -> String {
    types
        .iter()
        .map(|t| match *t {
            devices::virtio::TYPE_BLOCK => "block".to_string(),
            devices::virtio::TYPE_CONSOLE => "console".to_string(),
            devices::virtio::net::TYPE_NET => "net".to_string(),
            t => format!("type {t}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The 8250's host side, and for a restored VM its saved registers.
enum SerialSetup<'a> {
    Fresh(Stdio),
    Restored(Stdio, &'a vm_superio::serial::SerialState),
}

struct BuiltDevices {
    devices: Devices,
    serial_in: Option<File>,
    console_in: Option<File>,
    net_fd: Option<i32>,
}

/// The legacy devices and one virtio-mmio transport per device (blocks, console, net, in this
/// order), each with its irqfd registered on its line.
fn build_devices(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    serial: SerialSetup,
    block: &[BlockDevice],
    console: Option<Stdio>,
    net: Option<NetDevice>,
) -> Result<BuiltDevices> {
    let serial_irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).context("eventfd")?);
    vm.register_irqfd(&serial_irq, SERIAL_IRQ)
        .context("KVM_IRQFD (serial)")?;
    let (stdio, saved) = match serial {
        SerialSetup::Fresh(s) => (s, None),
        SerialSetup::Restored(s, st) => (s, Some(st)),
    };
    let mut devices = match saved {
        None => Devices::new(serial_irq, writer(stdio.output)?),
        Some(st) => {
            let mut d = Devices::new(serial_irq.clone(), Box::new(std::io::sink()));
            d.serial = vm_superio::Serial::from_state(
                st,
                devices::IrqTrigger(serial_irq),
                vm_superio::serial::NoEvents,
                writer(stdio.output)?,
            )
            .map_err(|e| anyhow::anyhow!("the snapshot's serial state: {e:?}"))?;
            d
        }
    };
    let serial_in = reader(stdio.input)?;
    let mut console_in = None;
    let mut models: Vec<Box<dyn devices::virtio::VirtioDevice>> = Vec::new();
    for b in block {
        models.push(Box::new(Block::open(&b.path, b.read_only, &b.id)?));
    }
    if let Some(c) = console {
        models.push(Box::new(Console::new(writer(c.output)?)));
        console_in = reader(c.input)?;
    }
    let mut net_fd = None;
    if let Some(n) = net {
        let dev = devices::virtio::net::Net::new(n.tap, n.mac, n.mtu)?;
        net_fd = Some(dev.tap_fd());
        models.push(Box::new(dev));
    }
    for (i, model) in models.into_iter().enumerate() {
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).context("eventfd")?);
        vm.register_irqfd(&irq, VIRTIO_IRQ_BASE + i as u32)
            .context("KVM_IRQFD (virtio)")?;
        let base = VIRTIO_MMIO_BASE + i as u64 * VIRTIO_MMIO_SIZE;
        devices
            .virtio
            .push((base, MmioTransport::new(model, mem.clone(), irq)));
    }
    Ok(BuiltDevices {
        devices,
        serial_in,
        console_in,
        net_fd,
    })
}

/// The `virtio_mmio.device=` command-line entries for `n` devices.
pub fn virtio_cmdline(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "virtio_mmio.device=4K@{:#x}:{}",
                VIRTIO_MMIO_BASE + i as u64 * VIRTIO_MMIO_SIZE,
                VIRTIO_IRQ_BASE + i as u32
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Vmm {
    /// Build the VM: KVM VM and irqchip, guest memory, kernel and boot information, devices,
    /// the BSP's registers; then enter the jail when configured. Every error names what failed.
    pub fn new(config: VmConfig) -> Result<Vmm> {
        Self::build(config, None)
    }

    /// As [`Vmm::new`], for a template: the VM writes its snapshot into `to.dir` when
    /// `to.trigger` becomes readable, and `run` returns [`ExitReason::Snapshotted`]; the caller
    /// then makes the directory a snapshot with [`snapshot::commit`]. The snapshot's files are
    /// opened here, before the jail. Refused with `seccomp` (saving the VM takes KVM ioctls and
    /// writes the filters refuse; a template's guest is hako's own kernel and agent before any
    /// bundle).
    pub fn new_template(config: VmConfig, to: SnapshotTo) -> Result<Vmm> {
        Self::build(config, Some(to))
    }

    fn build(config: VmConfig, snapshot_to: Option<SnapshotTo>) -> Result<Vmm> {
        let started = Instant::now();
        if config.vcpus == 0 || config.vcpus > mptable::MAX_VCPUS {
            bail!(
                "{} vCPUs asked for; hako's VMM supports 1 to {}",
                config.vcpus,
                mptable::MAX_VCPUS
            );
        }
        if config.memory_mib < MIN_MEMORY_MIB {
            bail!(
                "guest memory {} MiB is below the minimum of {MIN_MEMORY_MIB} MiB",
                config.memory_mib
            );
        }
        let ndev = config.block.len()
            + usize::from(config.console.is_some())
            + usize::from(config.net.is_some());
        if VIRTIO_IRQ_BASE as usize + ndev > IRQ_MAX as usize + 1 {
            bail!("too many virtio devices ({ndev})");
        }
        let mem_size = u64::from(config.memory_mib) << 20;
        if snapshot_to.is_some() && config.seccomp {
            // Saving the vCPUs and the VM takes KVM ioctls and file writes the filters refuse.
            // A template's guest is hako's own kernel and agent before any bundle, so it runs
            // jailed but unfiltered.
            bail!("a template VM cannot run under the seccomp filters");
        }
        let snapshot = match snapshot_to {
            Some(t) => Arc::new(snapshot::Request {
                evt: EventFd::new(libc::EFD_NONBLOCK).context("eventfd")?,
                dir: Mutex::new(None),
                files: Mutex::new(Some(snapshot::create_files(&t.dir)?)),
                trigger: Some(t.trigger),
            }),
            None => new_snapshot_request()?,
        };
        let snapshot_armed = snapshot.trigger.is_some();

        let kvm = Kvm::new().context("opening /dev/kvm")?;
        let mem = create_guest_memory(mem_size)?;
        let vm = create_vm(&kvm, &mem)?;

        let entry = boot::load_kernel(&mem, &config.kernel)?;
        let mut cmdline = config.cmdline.trim().to_string();
        let extra = virtio_cmdline(ndev);
        if !extra.is_empty() {
            if !cmdline.is_empty() {
                cmdline.push(' ');
            }
            cmdline.push_str(&extra);
        }
        boot::load_command_line(&mem, &cmdline)?;
        boot::write_boot_info(&mem, entry.protocol, mem_size, cmdline.len() + 1)?;

        let serial = SerialSetup::Fresh(config.serial);
        let built = build_devices(&vm, &mem, serial, &config.block, config.console, config.net)?;

        // vCPUs: the BSP gets the boot registers; APs wait in KVM for INIT/SIPI from the
        // guest, which finds them in the MP table.
        mptable::setup(&mem, config.vcpus)?;
        let mut vcpus = Vec::new();
        for id in 0..config.vcpus {
            let vcpu = vm.create_vcpu(u64::from(id)).context("KVM_CREATE_VCPU")?;
            let cpuid = cpu::filtered_cpuid(&kvm, id, config.vcpus)?;
            vcpu.set_cpuid2(&cpuid).context("KVM_SET_CPUID2")?;
            cpu::setup_msrs(&kvm, &vcpu)?;
            cpu::setup_fpu(&vcpu)?;
            cpu::setup_lapic(&vcpu)?;
            if id == 0 {
                cpu::setup_sregs(&mem, &vcpu, entry.protocol)?;
                cpu::setup_regs(&vcpu, entry.protocol, entry.entry)?;
            }
            vcpus.push(vcpu);
        }

        let mut phases = Phases::start(started);
        phases.mark("build");
        if let Some(j) = &config.jail {
            jail::enter(j)?;
            phases.mark("jail");
        }

        Ok(Vmm {
            _kvm: kvm,
            _vm: vm,
            _mem: mem,
            mem_file_backed: false,
            vcpus,
            devices: Arc::new(Mutex::new(built.devices)),
            serial_in: built.serial_in,
            console_in: built.console_in,
            net_fd: built.net_fd,
            seccomp: config.seccomp,
            started,
            phases,
            cmdline,
            entry,
            snapshot,
            snapshot_armed,
            jailed: config.jail.is_some(),
        })
    }

    /// Build a VM from a snapshot ([`snapshot`]): guest memory is a private mapping of the
    /// snapshot's memory file, so this copy's writes stay its own. The devices get the host
    /// sides `config` names (the sandbox's disks, agent port, tap), which must match the
    /// snapshot's device layout. `run` continues the guest where it was paused; its
    /// `to_first_exit` counts from the start of `restore`.
    pub fn restore(config: RestoreConfig) -> Result<Vmm> {
        let started = Instant::now();
        let mut phases = Phases::start(started);
        let (state, file) = snapshot::read(&config.snapshot)?;
        phases.mark("read state");
        let want = device_layout(
            &config.block,
            config.console.is_some(),
            config.net.is_some(),
        );
        let have: Vec<u32> = state.devices.iter().map(|d| d.device_type).collect();
        if want != have {
            bail!(
                "{}: the snapshot was taken with devices [{}], this restore asks for [{}]",
                config.snapshot.display(),
                device_names(&have),
                device_names(&want)
            );
        }
        let mem = snapshot::map_memory(&state, file)?;
        phases.mark("map memory");
        let kvm = Kvm::new().context("opening /dev/kvm")?;
        let vm = create_vm(&kvm, &mem)?;
        phases.mark("KVM VM");
        snapshot::restore_vm(&vm, &state)?;
        phases.mark("VM state");

        let mut built = build_devices(
            &vm,
            &mem,
            SerialSetup::Restored(config.serial, snapshot::serial_state(&state)),
            &config.block,
            config.console,
            config.net,
        )?;
        let mut config_changed = Vec::new();
        for (i, ((_, t), s)) in built
            .devices
            .virtio
            .iter_mut()
            .zip(&state.devices)
            .enumerate()
        {
            if t.restore(s).with_context(|| {
                format!(
                    "{}: virtio device {i} ({})",
                    config.snapshot.display(),
                    device_names(&[s.device_type])
                )
            })? {
                config_changed.push(i);
            }
        }
        phases.mark("devices");

        let mut vcpus = Vec::new();
        for (id, s) in state.vcpus.iter().enumerate() {
            let vcpu = vm.create_vcpu(id as u64).context("KVM_CREATE_VCPU")?;
            snapshot::restore_vcpu(&vcpu, s).with_context(|| format!("vCPU {id}"))?;
            vcpus.push(vcpu);
        }
        phases.mark("vCPUs");
        // Only now, with the interrupt controllers loaded, may a device raise its line.
        for i in config_changed {
            built.devices.virtio[i].1.signal_config_change();
        }
        if let Some(j) = &config.jail {
            jail::enter(j)?;
            phases.mark("jail");
        }
        Ok(Vmm {
            _kvm: kvm,
            _vm: vm,
            _mem: mem,
            mem_file_backed: true,
            vcpus,
            devices: Arc::new(Mutex::new(built.devices)),
            serial_in: built.serial_in,
            console_in: built.console_in,
            net_fd: built.net_fd,
            seccomp: config.seccomp,
            started,
            phases,
            cmdline: state.cmdline,
            entry: state.entry,
            snapshot: new_snapshot_request()?,
            snapshot_armed: false,
            jailed: config.jail.is_some(),
        })
    }

    /// A handle that pauses this VM into a snapshot while it runs. Refused for what the
    /// snapshot cannot hold yet (see [`snapshot`]).
    pub fn snapshot_trigger(&mut self) -> Result<SnapshotTrigger> {
        if self.seccomp || self.jailed {
            bail!(
                "a jailed or seccomp-filtered VMM cannot write a snapshot where asked; a template \
                 VM opens its files before the jail (VmConfig.snapshot_to)"
            );
        }
        if self.snapshot.trigger.is_some() {
            bail!("this VM snapshots on its VmConfig.snapshot_to trigger");
        }
        self.snapshot_armed = true;
        Ok(SnapshotTrigger(self.snapshot.clone()))
    }

    /// Run the guest until it stops. vCPUs run on their own threads; the calling thread becomes
    /// the VMM thread (host input to the serial port / console). With `seccomp`, each thread
    /// runs under its filter from here on, including the caller after `run` returns.
    pub fn run(mut self) -> Result<RunOutcome> {
        let build_time = self.started.elapsed();
        let mut phases = std::mem::take(&mut self.phases);
        phases.mark("to run");
        let filters = if self.seccomp {
            Some(seccomp::filters()?)
        } else {
            None
        };
        phases.mark("seccomp filters");
        install_kick_handler()?;
        let shared = Arc::new(Shared {
            exit: Mutex::new(None),
            stop: AtomicBool::new(false),
            exit_evt: EventFd::new(libc::EFD_NONBLOCK).context("eventfd")?,
            first_exit: OnceLock::new(),
            pause: AtomicBool::new(false),
            msr_indices: if self.snapshot_armed {
                snapshot::msr_indices(&self._kvm)?
            } else {
                Vec::new()
            },
            vcpu_states: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        for (i, vcpu) in self.vcpus.drain(..).enumerate() {
            let shared = shared.clone();
            let devices = self.devices.clone();
            let filter = filters.as_ref().map(|f| f.vcpu.clone());
            let t = std::thread::Builder::new()
                .name(format!("hako-vcpu{i}"))
                .spawn(move || vcpu_loop(i, vcpu, devices, shared, filter))
                .context("spawning a vCPU thread")?;
            threads.push(t);
        }
        phases.mark("vCPU threads");
        if let Some(f) = &filters {
            seccompiler::apply_filter(&f.vmm)
                .context("installing the VMM thread's seccomp filter")?;
        }
        self.input_loop(&shared);
        shared.stop.store(true, Ordering::SeqCst);
        for t in &threads {
            use std::os::unix::thread::JoinHandleExt;
            // SAFETY: the thread has not been joined yet, so its pthread_t is valid.
            unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
        }
        for t in threads {
            let _ = t.join();
        }
        let exit = shared
            .exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| ExitReason::Unexpected("vCPU thread ended without a reason".into()));
        if exit == ExitReason::Snapshotted {
            self.write_snapshot(&shared)?;
        }
        if let (Some(t), Some(last)) = (shared.first_exit.get(), phases.last) {
            phases
                .steps
                .push(("guest to its first exit", t.saturating_duration_since(last)));
        }
        Ok(RunOutcome {
            exit,
            to_first_exit: shared
                .first_exit
                .get()
                .map(|t| t.duration_since(self.started)),
            build_time,
            phases,
        })
    }

    /// Every vCPU has saved its state: write the snapshot where the trigger asked.
    fn write_snapshot(&mut self, shared: &Shared) -> Result<()> {
        // A template's files were opened before the jail (the caller commits them); an
        // in-process trigger names a directory, and the snapshot is finished here.
        let opened = self
            .snapshot
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (files, dir) = match opened {
            Some(f) => (f, None),
            None => {
                let dir = self
                    .snapshot
                    .dir
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .context("a snapshot without a directory")?;
                (snapshot::create_files(&dir)?, Some(dir))
            }
        };
        let mut saved =
            std::mem::take(&mut *shared.vcpu_states.lock().unwrap_or_else(|e| e.into_inner()));
        saved.sort_by_key(|(i, _)| *i);
        let mut vcpus = Vec::new();
        for (i, s) in saved {
            vcpus.push(s.with_context(|| format!("saving vCPU {i}"))?);
        }
        let (serial, devices) = {
            let d = self.devices.lock().unwrap_or_else(|e| e.into_inner());
            (
                d.serial.state(),
                d.virtio.iter().map(|(_, t)| t.state()).collect(),
            )
        };
        snapshot::write_files(
            &files,
            snapshot::Paused {
                vm: &self._vm,
                mem: &self._mem,
                mem_file_backed: self.mem_file_backed,
                vcpus,
                serial,
                devices,
                cmdline: self.cmdline.clone(),
                entry: self.entry,
            },
        )?;
        match dir {
            Some(d) => snapshot::commit(&d),
            None => Ok(()),
        }
    }

    /// Forward host input until a vCPU reports the VM stopped.
    fn input_loop(&mut self, shared: &Shared) {
        let mut buf = [0u8; 4096];
        let mut serial_in = self.serial_in.take();
        let mut console_in = self.console_in.take();
        loop {
            let mut fds = vec![
                libc::pollfd {
                    fd: shared.exit_evt.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: match (&self.snapshot.trigger, self.snapshot_armed) {
                        (Some(t), true) => t.as_raw_fd(),
                        (None, true) => self.snapshot.evt.as_raw_fd(),
                        _ => -1,
                    },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            for f in [&serial_in, &console_in].into_iter().flatten() {
                fds.push(libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            if let Some(fd) = self.net_fd {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: fds is a valid array of pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            if fds[0].revents != 0 || shared.stop.load(Ordering::SeqCst) {
                return;
            }
            if fds[1].revents != 0 {
                let asked = match &self.snapshot.trigger {
                    Some(t) => {
                        let mut b = [0u8; 8];
                        // SAFETY: read into a buffer we own from the trigger fd.
                        let n =
                            unsafe { libc::read(t.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
                        if n <= 0 {
                            // The caller went away (or nothing to read): no snapshot from it.
                            self.snapshot_armed = false;
                        }
                        n > 0
                    }
                    None => self.snapshot.evt.read().is_ok(),
                };
                if asked {
                    // Pause: each vCPU thread saves its state as it leaves; `run` writes the
                    // rest.
                    shared.pause.store(true, Ordering::SeqCst);
                    shared.finish(ExitReason::Snapshotted);
                    return;
                }
                continue;
            }
            let mut idx = 2;
            if let Some(f) = serial_in.as_mut() {
                if fds[idx].revents != 0 {
                    let room = self
                        .devices
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .serial
                        .fifo_capacity();
                    if room == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    } else {
                        let want = room.min(buf.len());
                        match f.read(&mut buf[..want]) {
                            Ok(0) | Err(_) => serial_in = None,
                            Ok(n) => {
                                self.devices
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .serial_input(&buf[..n]);
                            }
                        }
                    }
                }
                idx += 1;
            }
            if let Some(f) = console_in.as_mut() {
                if fds[idx].revents != 0 {
                    let room = self
                        .devices
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .console_room();
                    let want = room.min(buf.len());
                    if want == 0 {
                        // The guest is not draining its console: leave the rest in the fd.
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    match f.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => console_in = None,
                        Ok(n) => self
                            .devices
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .console_input(&buf[..n]),
                    }
                }
                idx += 1;
            }
            if self.net_fd.is_some() && fds[idx].revents != 0 {
                let delivered = self
                    .devices
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .net_input();
                if !delivered {
                    // The guest has no receive buffer posted: leave the frames in the tap.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

struct Shared {
    exit: Mutex<Option<ExitReason>>,
    stop: AtomicBool,
    exit_evt: EventFd,
    first_exit: OnceLock<Instant>,
    /// A snapshot was asked for: vCPU threads save their state before they end.
    pause: AtomicBool,
    msr_indices: Vec<u32>,
    vcpu_states: Mutex<Vec<(usize, Result<snapshot::VcpuState>)>>,
}

/// A KVM VM with guest memory, the in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT.
///
/// The memory slot goes in before the irqchip and the PIT: in that order each step took
/// 0.02-0.08 ms here, while a memory slot added after the irqchip took 5-8 ms (KVM waits for
/// a grace period of its memslot SRCU then, a wait that is nearly free on a VM without one);
/// that wait was most of restore → first instruction.
fn create_vm(kvm: &Kvm, mem: &GuestMemoryMmap) -> Result<VmFd> {
    let vm = kvm.create_vm().context("KVM_CREATE_VM")?;
    vm.set_tss_address(0xfffb_d000)
        .context("KVM_SET_TSS_ADDR")?;
    register_memory(&vm, mem)?;
    vm.create_irq_chip().context("KVM_CREATE_IRQCHIP")?;
    vm.create_pit2(kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    })
    .context("KVM_CREATE_PIT2")?;
    Ok(vm)
}

/// Give the VM guest memory, one slot per region.
fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<()> {
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .context("guest memory host address")?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the Vmm keeps alive for as
        // long as the VM exists.
        unsafe { vm.set_user_memory_region(r) }.context("KVM_SET_USER_MEMORY_REGION")?;
    }
    Ok(())
}

fn new_snapshot_request() -> Result<Arc<snapshot::Request>> {
    Ok(Arc::new(snapshot::Request {
        evt: EventFd::new(libc::EFD_NONBLOCK).context("eventfd")?,
        dir: Mutex::new(None),
        files: Mutex::new(None),
        trigger: None,
    }))
}

impl Shared {
    fn finish(&self, r: ExitReason) {
        let mut e = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some(r);
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.exit_evt.write(1);
    }
}

thread_local! {
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

extern "C" fn kick_handler(_: libc::c_int) {
    // Make a KVM_RUN that is about to start return at once; one in progress returns EINTR.
    let p = KVM_RUN.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: p points to this thread's mapped kvm_run, alive while the vCPU thread runs.
        unsafe { (*p).immediate_exit = 1 };
    }
}

fn install_kick_handler() -> Result<()> {
    // SAFETY: a plain sigaction with a handler that only touches a thread-local pointer.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = kick_handler as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error()).context("sigaction(vCPU kick)");
        }
    }
    Ok(())
}

fn vcpu_loop(
    index: usize,
    mut vcpu: VcpuFd,
    devices: Arc<Mutex<Devices>>,
    shared: Arc<Shared>,
    filter: Option<seccompiler::BpfProgram>,
) {
    // However this thread ends (even by a panic in device code), the VMM thread is told.
    struct Guard(Arc<Shared>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.finish(ExitReason::Unexpected(
                "a vCPU thread ended unexpectedly".into(),
            ));
        }
    }
    let _guard = Guard(shared.clone());
    KVM_RUN.with(|c| c.set(vcpu.get_kvm_run() as *mut kvm_run));
    if let Some(f) = filter {
        if let Err(e) = seccompiler::apply_filter(&f) {
            shared.finish(ExitReason::Unexpected(format!("vCPU seccomp filter: {e}")));
            return;
        }
    }
    while !shared.stop.load(Ordering::SeqCst) {
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                continue;
            }
            Err(e) => {
                shared.finish(ExitReason::Unexpected(format!("KVM_RUN: {e}")));
                break;
            }
        };
        let _ = shared.first_exit.set(Instant::now());
        let stop = match exit {
            VcpuExit::IoOut(port, data) => devices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pio_write(port, data),
            VcpuExit::IoIn(port, data) => {
                devices
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pio_read(port, data);
                None
            }
            VcpuExit::MmioRead(addr, data) => {
                devices
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .mmio_read(addr, data);
                None
            }
            VcpuExit::MmioWrite(addr, data) => {
                devices
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .mmio_write(addr, data);
                None
            }
            VcpuExit::Hlt => Some(ExitReason::Halted),
            VcpuExit::Shutdown => Some(ExitReason::Shutdown),
            VcpuExit::SystemEvent(ty, _) => Some(if ty == kvm_bindings::KVM_SYSTEM_EVENT_RESET {
                ExitReason::Reset
            } else {
                ExitReason::Shutdown
            }),
            VcpuExit::InternalError => {
                // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the
                // active member of the union.
                let internal = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal };
                let n = (internal.ndata as usize).min(internal.data.len());
                Some(ExitReason::KvmInternalError {
                    suberror: internal.suberror,
                    data: internal.data[..n].to_vec(),
                })
            }
            VcpuExit::FailEntry(reason, cpu) => Some(ExitReason::FailEntry { reason, cpu }),
            VcpuExit::Intr => None,
            other => Some(ExitReason::Unexpected(format!("{other:?}"))),
        };
        if let Some(r) = stop {
            shared.finish(r);
            break;
        }
    }
    if shared.pause.load(Ordering::SeqCst) {
        let s = snapshot::save_vcpu(&mut vcpu, &shared.msr_indices);
        shared
            .vcpu_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((index, s));
    }
    // The kick handler must not touch kvm_run once the vCPU fd (and its mapping) is gone.
    KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
    drop(vcpu);
}

/// Write `bytes` to a fresh file in `dir` (the synthetic guests' ELF files).
pub(crate) fn write_temp(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let p = dir.join(format!(".{name}.{}", std::process::id()));
    let mut f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
    f.write_all(bytes)?;
    Ok(p)
}
