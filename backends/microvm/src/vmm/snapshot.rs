//! Snapshot and restore of a paused VM, as Firecracker does it: guest memory goes to one file
//! and comes back as a `MAP_PRIVATE` mapping of it (each restored copy writes to its own
//! copy-on-write pages; the file and the other copies never see those writes), and the vCPUs'
//! and devices' state goes to a JSON file.
//!
//! A snapshot directory holds [`MEMORY_FILE`] (the RAM regions, one after the other) and
//! [`STATE_FILE`] ([`VmState`]). Saved per vCPU: registers, special registers, the XSAVE area
//! (x87 FPU, SSE, AVX), XCRs, local APIC, MP state, pending events, and every MSR KVM lists that
//! reads back. Per VM: both PICs and the IOAPIC, the PIT, the kvm clock, the 8250's registers
//! and receive FIFO.
//!
//! Not yet: virtio-mmio devices (a VM with one is refused before it is paused), a VM run with
//! the jail or the seccomp filters (the snapshot is written by the VMM thread, which both would
//! stop), and more than one vCPU (the APs' state is saved the same way, but it is untested).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_pit_state2,
    kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap,
};
use vm_superio::serial::SerialState;
use vmm_sys_util::eventfd::EventFd;

use super::boot::KernelEntry;

/// Guest RAM, region after region.
pub const MEMORY_FILE: &str = "memory";
/// [`VmState`] as JSON.
pub const STATE_FILE: &str = "state.json";
/// Bumped whenever [`VmState`] changes meaning.
const FORMAT: u32 = 1;

/// One vCPU's state.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    regs: kvm_regs,
    sregs: kvm_sregs,
    xsave: kvm_xsave,
    xcrs: kvm_xcrs,
    lapic: kvm_lapic_state,
    mp_state: kvm_mp_state,
    events: kvm_vcpu_events,
    msrs: Vec<kvm_msr_entry>,
}

/// The serde form of vm-superio's `SerialState` (the 8250's registers and receive FIFO), which
/// has none of its own.
#[derive(Serialize, Deserialize)]
#[serde(remote = "SerialState")]
struct SerialDef {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    in_buffer: Vec<u8>,
}

/// Everything but guest memory.
#[derive(Serialize, Deserialize)]
pub struct VmState {
    format: u32,
    /// (guest address, length) of each RAM region, in [`MEMORY_FILE`]'s order.
    regions: Vec<(u64, u64)>,
    pub(super) vcpus: Vec<VcpuState>,
    pic_master: kvm_irqchip,
    pic_slave: kvm_irqchip,
    ioapic: kvm_irqchip,
    pit: kvm_pit_state2,
    clock: kvm_clock_data,
    #[serde(with = "SerialDef")]
    serial: SerialState,
    pub(super) cmdline: String,
    pub(super) entry: KernelEntry,
}

/// Asks a running VM to pause and write a snapshot (see [`super::Vmm::snapshot_trigger`]).
#[derive(Clone)]
pub struct SnapshotTrigger(pub(super) std::sync::Arc<Request>);

pub(super) struct Request {
    pub(super) evt: EventFd,
    pub(super) dir: Mutex<Option<PathBuf>>,
}

impl SnapshotTrigger {
    /// Pause the VM and write its snapshot into `dir` (an existing directory); `run` then
    /// returns [`super::ExitReason::Snapshotted`], or the error that stopped the snapshot.
    pub fn request(&self, dir: &Path) -> Result<()> {
        *self.0.dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.to_path_buf());
        self.0.evt.write(1).context("signalling the VMM thread")
    }
}

/// The MSRs to save: every one KVM lists.
pub(super) fn msr_indices(kvm: &Kvm) -> Result<Vec<u32>> {
    Ok(kvm
        .get_msr_index_list()
        .context("KVM_GET_MSR_INDEX_LIST")?
        .as_slice()
        .to_vec())
}

/// Read `indices`; an MSR the vCPU refuses (KVM_GET_MSRS stops at the first) is left out.
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>> {
    let mut out = Vec::new();
    let mut rest = indices;
    while !rest.is_empty() {
        let entries: Vec<kvm_msr_entry> = rest
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).context("MSR list")?;
        let n = vcpu.get_msrs(&mut msrs).context("KVM_GET_MSRS")?;
        out.extend_from_slice(&msrs.as_slice()[..n]);
        // Skip the one that failed.
        rest = rest.get(n + 1..).unwrap_or_default();
    }
    Ok(out)
}

/// Save a stopped vCPU. A KVM_RUN with `immediate_exit` first completes an I/O exit the
/// vCPU thread has handled but not yet returned to the guest (KVM's documented way to make the
/// guest state consistent before a migration).
pub(super) fn save_vcpu(vcpu: &mut VcpuFd, msr_indices: &[u32]) -> Result<VcpuState> {
    vcpu.set_kvm_immediate_exit(1);
    let _ = vcpu.run();
    vcpu.set_kvm_immediate_exit(0);
    Ok(VcpuState {
        mp_state: vcpu.get_mp_state().context("KVM_GET_MP_STATE")?,
        regs: vcpu.get_regs().context("KVM_GET_REGS")?,
        sregs: vcpu.get_sregs().context("KVM_GET_SREGS")?,
        xsave: vcpu.get_xsave().context("KVM_GET_XSAVE")?,
        xcrs: vcpu.get_xcrs().context("KVM_GET_XCRS")?,
        lapic: vcpu.get_lapic().context("KVM_GET_LAPIC")?,
        events: vcpu.get_vcpu_events().context("KVM_GET_VCPU_EVENTS")?,
        msrs: read_msrs(vcpu, msr_indices)?,
    })
}

/// Load a saved vCPU into a fresh one (its CPUID already set), in the order KVM needs: the
/// APIC base (in sregs) before the LAPIC, the MSRs after both.
pub(super) fn restore_vcpu(vcpu: &VcpuFd, s: &VcpuState) -> Result<()> {
    vcpu.set_mp_state(s.mp_state).context("KVM_SET_MP_STATE")?;
    vcpu.set_regs(&s.regs).context("KVM_SET_REGS")?;
    vcpu.set_sregs(&s.sregs).context("KVM_SET_SREGS")?;
    // SAFETY: the area came from KVM_GET_XSAVE (the legacy 4 KiB layout) and this VM never
    // enables KVM_CAP_XSAVE2, so KVM reads exactly the size of `kvm_xsave`.
    unsafe { vcpu.set_xsave(&s.xsave) }.context("KVM_SET_XSAVE")?;
    vcpu.set_xcrs(&s.xcrs).context("KVM_SET_XCRS")?;
    vcpu.set_lapic(&s.lapic).context("KVM_SET_LAPIC")?;
    let msrs = Msrs::from_entries(&s.msrs).context("MSR list")?;
    let n = vcpu.set_msrs(&msrs).context("KVM_SET_MSRS")?;
    if n != s.msrs.len() {
        bail!(
            "KVM_SET_MSRS took {n} of {} MSRs (refused: {:#x})",
            s.msrs.len(),
            s.msrs[n].index
        );
    }
    vcpu.set_vcpu_events(&s.events)
        .context("KVM_SET_VCPU_EVENTS")?;
    Ok(())
}

fn get_chip(vm: &VmFd, chip_id: u32) -> Result<kvm_irqchip> {
    let mut c = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.get_irqchip(&mut c).context("KVM_GET_IRQCHIP")?;
    Ok(c)
}

/// The parts [`write`] needs from the paused VMM.
pub(super) struct Paused<'a> {
    pub vm: &'a VmFd,
    pub mem: &'a GuestMemoryMmap,
    pub vcpus: Vec<VcpuState>,
    pub serial: SerialState,
    pub cmdline: String,
    pub entry: KernelEntry,
}

/// Write the snapshot of a paused VM into `dir`.
pub(super) fn write(dir: &Path, p: Paused) -> Result<()> {
    let mut clock = p.vm.get_clock().context("KVM_GET_CLOCK")?;
    // Only the value is restored; the flags describe this host's clock.
    clock.flags = 0;
    let state = VmState {
        format: FORMAT,
        regions: p.mem.iter().map(|r| (r.start_addr().0, r.len())).collect(),
        vcpus: p.vcpus,
        pic_master: get_chip(p.vm, KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: get_chip(p.vm, KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: get_chip(p.vm, KVM_IRQCHIP_IOAPIC)?,
        pit: p.vm.get_pit2().context("KVM_GET_PIT2")?,
        clock,
        serial: p.serial,
        cmdline: p.cmdline,
        entry: p.entry,
    };
    let mpath = dir.join(MEMORY_FILE);
    let mut f = File::create(&mpath).with_context(|| format!("creating {}", mpath.display()))?;
    for r in p.mem.iter() {
        let host = p
            .mem
            .get_host_address(r.start_addr())
            .context("guest memory host address")?;
        // SAFETY: the region is a live mapping of `len` bytes owned by `mem`, and every vCPU
        // thread has ended, so nothing writes to it while it is read.
        let bytes = unsafe { std::slice::from_raw_parts(host, r.len() as usize) };
        f.write_all(bytes)
            .with_context(|| format!("writing {}", mpath.display()))?;
    }
    f.sync_all().ok();
    let spath = dir.join(STATE_FILE);
    std::fs::write(&spath, serde_json::to_vec(&state)?)
        .with_context(|| format!("writing {}", spath.display()))?;
    Ok(())
}

/// Read a snapshot's state, checking it against its memory file.
pub(super) fn read(dir: &Path) -> Result<(VmState, File)> {
    let spath = dir.join(STATE_FILE);
    let data = std::fs::read(&spath).with_context(|| format!("reading {}", spath.display()))?;
    let state: VmState = serde_json::from_slice(&data)
        .with_context(|| format!("{}: not a snapshot state", spath.display()))?;
    if state.format != FORMAT {
        bail!(
            "{}: snapshot format {} (this VMM reads {FORMAT})",
            spath.display(),
            state.format
        );
    }
    let mpath = dir.join(MEMORY_FILE);
    let mem = File::open(&mpath).with_context(|| format!("opening {}", mpath.display()))?;
    let want: u64 = state.regions.iter().map(|r| r.1).sum();
    let have = mem.metadata()?.len();
    if have != want {
        bail!(
            "{}: {have} bytes, the state describes {want}",
            mpath.display()
        );
    }
    Ok((state, mem))
}

/// Guest memory as private (copy-on-write) mappings of the memory file.
pub(super) fn map_memory(state: &VmState, file: File) -> Result<GuestMemoryMmap> {
    let file = std::sync::Arc::new(file);
    let mut offset = 0;
    let mut regions = Vec::new();
    for &(addr, len) in &state.regions {
        let mapping = MmapRegionBuilder::new(len as usize)
            .with_file_offset(FileOffset::from_arc(file.clone(), offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| anyhow::anyhow!("mapping the snapshot's memory: {e}"))?;
        regions.push(
            GuestRegionMmap::new(mapping, GuestAddress(addr))
                .context("a snapshot memory region past the end of the address space")?,
        );
        offset += len;
    }
    GuestMemoryMmap::from_regions(regions)
        .map_err(|e| anyhow::anyhow!("the snapshot's memory regions: {e:?}"))
}

/// Load the VM-wide state into a fresh VM (irqchip and PIT created).
pub(super) fn restore_vm(vm: &VmFd, state: &VmState) -> Result<()> {
    vm.set_pit2(&state.pit).context("KVM_SET_PIT2")?;
    vm.set_clock(&state.clock).context("KVM_SET_CLOCK")?;
    for chip in [&state.pic_master, &state.pic_slave, &state.ioapic] {
        vm.set_irqchip(chip).context("KVM_SET_IRQCHIP")?;
    }
    Ok(())
}

/// The 8250's saved registers and FIFO.
pub(super) fn serial_state(state: &VmState) -> &SerialState {
    &state.serial
}
