//! Snapshot and restore of a paused VM, as Firecracker does it: guest memory goes to one file
//! and comes back as a `MAP_PRIVATE` mapping of it (each restored copy writes to its own
//! copy-on-write pages; the file and the other copies never see those writes), and the vCPUs'
//! and devices' state goes to a state file.
//!
//! A snapshot directory holds two files:
//! - [`MEMORY_FILE`]: the RAM regions one after the other, sparse (pages that read as zero,
//!   or that an anonymous guest memory never touched, are holes), then a one-page trailer with
//!   a magic, the snapshot's random id and the length.
//! - [`STATE_FILE`]: a 56-byte header (`HAKOSNAP`, [`FORMAT`], the body's length and SHA-256)
//!   and [`VmState`] as JSON. Written last, under a temporary name then renamed: a directory
//!   with a state file holds a complete snapshot.
//!
//! Saved per vCPU: its CPUID, registers, special registers, the XSAVE area (x87 FPU, SSE, AVX), XCRs,
//! local APIC, MP state, pending events, and every MSR KVM lists that reads back. Per VM: both
//! PICs and the IOAPIC, the PIT, the kvm clock, the 8250's registers and receive FIFO, and each
//! virtio-mmio transport ([`TransportState`]: status, features, selectors, interrupt status,
//! config generation, each queue's size, readiness, ring addresses and the device's next
//! available / used index, the first 64 bytes of the config space).
//!
//! Not saved: the devices' host sides. A restored VM gets its own disks, console port and tap
//! (`RestoreConfig`), in the snapshot's layout (same device types in the same order, the same
//! features: a read-only disk stays read-only); a disk whose config space differs (another
//! size) bumps the config generation and raises the configuration-change interrupt, so the
//! guest's driver reads it again. Host input a device had buffered but not yet delivered (the
//! console's pending bytes, a frame read from the tap) is dropped with the old host side.
//!
//! Checks: [`super::Vmm::restore`] reads the state (magic, format, length, checksum) and the
//! memory file's length and trailer id (a file from another snapshot is refused), but not
//! guest memory itself, which it maps; [`verify`] reads all of it against the digest the
//! snapshot recorded (for a template cache adopting a snapshot, not for every restore).
//!
//! A VM under the seccomp filters cannot be snapshotted (saving it takes KVM ioctls and writes
//! the filters refuse); a jailed one can when it is a template ([`super::Vmm::new_template`]:
//! its files are opened before the jail, and the caller [`commit`]s them). Tested with the
//! synthetic guests here and with real Linux on 2 vCPUs under nested KVM (`tests/vmm_nested.rs`).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap,
};
use vm_superio::serial::SerialState;
use vmm_sys_util::eventfd::EventFd;

use super::boot::KernelEntry;
use super::devices::virtio::mmio::TransportState;

/// Guest RAM, region after region, then a one-page trailer.
pub const MEMORY_FILE: &str = "memory";
/// A header and [`VmState`] as JSON.
pub const STATE_FILE: &str = "state";
/// Bumped whenever [`VmState`] changes meaning.
pub const FORMAT: u32 = 3;
/// The state file's header: magic, format (u32 LE), 4 reserved bytes, the JSON body's length
/// (u64 LE), its SHA-256; then the body.
const STATE_MAGIC: &[u8; 8] = b"HAKOSNAP";
const HEADER_LEN: usize = 56;
/// The memory file's trailer (one page after guest memory): magic, the snapshot's random id
/// (also in the state), guest memory's length (u64 LE).
const MEMORY_MAGIC: &[u8; 8] = b"HAKOMEM1";
const TRAILER_LEN: u64 = 4096;

/// One vCPU's state.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// The CPUID the guest booted with: a restored guest must see the same CPU.
    cpuid: Vec<kvm_cpuid_entry2>,
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
    /// (guest address, length) of each RAM region, in [`MEMORY_FILE`]'s order.
    regions: Vec<(u64, u64)>,
    /// The random id in the memory file's trailer: this state's memory and no other.
    memory_id: String,
    /// (offset, length) of the memory file's data; the rest are holes (zero).
    memory_extents: Vec<(u64, u64)>,
    /// SHA-256 over each extent's offset, length and bytes ([`verify`]).
    memory_sha256: String,
    pub(super) vcpus: Vec<VcpuState>,
    pic_master: kvm_irqchip,
    pic_slave: kvm_irqchip,
    ioapic: kvm_irqchip,
    pit: kvm_pit_state2,
    clock: kvm_clock_data,
    #[serde(with = "SerialDef")]
    serial: SerialState,
    /// The virtio-mmio transports, in window order.
    pub(super) devices: Vec<TransportState>,
    pub(super) cmdline: String,
    pub(super) entry: KernelEntry,
}

/// Asks a running VM to pause and write a snapshot (see [`super::Vmm::snapshot_trigger`]).
#[derive(Clone)]
pub struct SnapshotTrigger(pub(super) std::sync::Arc<Request>);

pub(super) struct Request {
    pub(super) evt: EventFd,
    pub(super) dir: Mutex<Option<PathBuf>>,
    /// A template VMM's files, opened before its jail ([`super::SnapshotTo`]).
    pub(super) files: Mutex<Option<SnapshotFiles>>,
    /// A template VMM's trigger: readable when the caller wants the snapshot.
    pub(super) trigger: Option<std::os::fd::OwnedFd>,
}

/// A snapshot's two files, open for writing: guest memory, and the state under its temporary
/// name (until [`commit`]).
pub struct SnapshotFiles {
    memory: File,
    state: File,
}

/// The state's name until [`commit`].
const STATE_TMP: &str = ".state.tmp";

/// Start a snapshot in `dir` (an existing directory): remove a previous `state` (so the
/// directory is no snapshot until [`commit`]) and create the memory file and the temporary
/// state file.
pub fn create_files(dir: &Path) -> Result<SnapshotFiles> {
    match std::fs::remove_file(dir.join(STATE_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e)
                .with_context(|| format!("removing the old {STATE_FILE} in {}", dir.display()))
        }
        _ => {}
    }
    let create = |name: &str| {
        let p = dir.join(name);
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))
    };
    Ok(SnapshotFiles {
        memory: create(MEMORY_FILE)?,
        state: create(STATE_TMP)?,
    })
}

/// Finish a snapshot the VMM wrote into `dir`: check the temporary state against the memory
/// file as a restore would, then rename it to [`STATE_FILE`]. The caller of a jailed template
/// VMM does this once `run` has returned [`super::ExitReason::Snapshotted`] (the jailed VMM
/// sees no paths).
pub fn commit(dir: &Path) -> Result<()> {
    let tmp = dir.join(STATE_TMP);
    let data = read_bounded(&tmp)?;
    let state = parse_state(&data).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    check_memory_file(dir, &state)?;
    let spath = dir.join(STATE_FILE);
    std::fs::rename(&tmp, &spath).with_context(|| format!("renaming to {}", spath.display()))
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
        cpuid: vcpu
            .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
            .context("KVM_GET_CPUID2")?
            .as_slice()
            .to_vec(),
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

/// Load a saved vCPU into a fresh one, in the order KVM needs: CPUID first, the APIC base (in
/// sregs) before the LAPIC, the MSRs after both.
pub(super) fn restore_vcpu(vcpu: &VcpuFd, s: &VcpuState) -> Result<()> {
    let cpuid = CpuId::from_entries(&s.cpuid).context("the snapshot's CPUID")?;
    vcpu.set_cpuid2(&cpuid).context("KVM_SET_CPUID2")?;
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
    /// Guest memory maps a file (a restored VM): residency says nothing about its content.
    pub mem_file_backed: bool,
    pub vcpus: Vec<VcpuState>,
    pub serial: SerialState,
    pub devices: Vec<TransportState>,
    pub cmdline: String,
    pub entry: KernelEntry,
}

const PAGE: usize = 4096;

fn is_zero(page: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to handles the unaligned edges.
    let (head, mid, tail) = unsafe { page.align_to::<u128>() };
    head.iter().all(|b| *b == 0) && mid.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}

/// The pages of `len` bytes at `host` the guest may have written: for anonymous memory the
/// resident ones (`mincore`; an untouched page reads as zero and is left a hole), for a file
/// mapping all of them.
fn candidate_pages(host: *mut u8, len: usize, file_backed: bool) -> Result<Vec<bool>> {
    let pages = len.div_ceil(PAGE);
    if file_backed {
        return Ok(vec![true; pages]);
    }
    let mut vec = vec![0u8; pages];
    // SAFETY: host..host+len is a live mapping owned by guest memory; vec has one byte per page.
    if unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("mincore on guest memory");
    }
    Ok(vec.into_iter().map(|b| b & 1 != 0).collect())
}

/// Hash one extent of the memory file into the digest: its offset, length and bytes.
fn hash_extent(h: &mut Sha256, offset: u64, bytes: &[u8]) {
    h.update(offset.to_le_bytes());
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn random_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    // SAFETY: getrandom into a 16-byte buffer we own.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        return Err(std::io::Error::last_os_error()).context("getrandom");
    }
    Ok(id)
}

/// Write the snapshot of a paused VM into `files` ([`create_files`]): the memory file (sparse:
/// pages that read as zero are holes; then its trailer), then the state under its temporary
/// name; [`commit`] makes it a snapshot. Only descriptors are used, so a jailed VMM can do it.
pub(super) fn write_files(files: &SnapshotFiles, p: Paused) -> Result<()> {
    let mut clock = p.vm.get_clock().context("KVM_GET_CLOCK")?;
    // Only the value is restored; the flags describe this host's clock.
    clock.flags = 0;
    let id = random_id()?;
    let total: u64 = p.mem.iter().map(|r| r.len()).sum();
    let f = &files.memory;
    f.set_len(0)
        .and_then(|_| f.set_len(total + TRAILER_LEN))
        .context("sizing the snapshot's memory file")?;
    let mut extents: Vec<(u64, u64)> = Vec::new();
    let mut digest = Sha256::new();
    let mut file_off = 0u64;
    for r in p.mem.iter() {
        let host = p
            .mem
            .get_host_address(r.start_addr())
            .context("guest memory host address")?;
        let len = r.len() as usize;
        // SAFETY: the region is a live mapping of `len` bytes owned by `mem`, and every vCPU
        // thread has ended, so nothing writes to it while it is read.
        let bytes = unsafe { std::slice::from_raw_parts(host, len) };
        let pages = candidate_pages(host, len, p.mem_file_backed)?;
        let mut i = 0;
        while i < pages.len() {
            let page = |i: usize| &bytes[i * PAGE..((i + 1) * PAGE).min(len)];
            if !pages[i] || is_zero(page(i)) {
                i += 1;
                continue;
            }
            let start = i;
            while i < pages.len() && pages[i] && !is_zero(page(i)) {
                i += 1;
            }
            let chunk = &bytes[start * PAGE..(i * PAGE).min(len)];
            let off = file_off + (start * PAGE) as u64;
            f.write_all_at(chunk, off)
                .context("writing the snapshot's memory file")?;
            hash_extent(&mut digest, off, chunk);
            extents.push((off, chunk.len() as u64));
        }
        file_off += r.len();
    }
    f.write_all_at(&trailer(&id, total), total)
        .context("writing the snapshot's memory file")?;
    f.sync_all().context("syncing the snapshot's memory file")?;
    let state = VmState {
        regions: p.mem.iter().map(|r| (r.start_addr().0, r.len())).collect(),
        memory_id: hex(&id),
        memory_extents: extents,
        memory_sha256: hex(&digest.finalize()),
        vcpus: p.vcpus,
        pic_master: get_chip(p.vm, KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: get_chip(p.vm, KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: get_chip(p.vm, KVM_IRQCHIP_IOAPIC)?,
        pit: p.vm.get_pit2().context("KVM_GET_PIT2")?,
        clock,
        serial: p.serial,
        devices: p.devices,
        cmdline: p.cmdline,
        entry: p.entry,
    };
    let body = serde_json::to_vec(&state)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(STATE_MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    let mut sf = &files.state;
    sf.set_len(0)
        .and_then(|_| sf.write_all(&out))
        .and_then(|_| sf.sync_all())
        .context("writing the snapshot's state")?;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The memory file's last page: magic, the snapshot's id, guest memory's length.
fn trailer(id: &[u8; 16], total: u64) -> Vec<u8> {
    let mut t = vec![0u8; TRAILER_LEN as usize];
    t[..8].copy_from_slice(MEMORY_MAGIC);
    t[8..24].copy_from_slice(id);
    t[24..32].copy_from_slice(&total.to_le_bytes());
    t
}

/// Read a snapshot's state (format, checksum) and check its memory file belongs to it (length,
/// trailer). Cheap: guest memory itself is not read ([`verify`] does that).
pub(super) fn read(dir: &Path) -> Result<(VmState, File)> {
    let spath = dir.join(STATE_FILE);
    let data = read_bounded(&spath)?;
    let state = parse_state(&data).map_err(|e| anyhow::anyhow!("{}: {e}", spath.display()))?;
    let mem = check_memory_file(dir, &state)?;
    Ok((state, mem))
}

/// A state file is tens of KiB per vCPU; anything past this is no state of ours.
const MAX_STATE: u64 = 16 << 20;

fn read_bounded(p: &Path) -> Result<Vec<u8>> {
    let f = File::open(p).with_context(|| format!("reading {}", p.display()))?;
    let len = f.metadata()?.len();
    if len > MAX_STATE {
        bail!("{}: {len} bytes, not a snapshot state", p.display());
    }
    let mut data = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_STATE + 1), &mut data)
        .with_context(|| format!("reading {}", p.display()))?;
    Ok(data)
}

/// Open `dir`'s memory file and check it is `state`'s: its length and its trailer's id.
fn check_memory_file(dir: &Path, state: &VmState) -> Result<File> {
    let mpath = dir.join(MEMORY_FILE);
    let mem = File::open(&mpath).with_context(|| format!("opening {}", mpath.display()))?;
    let want: u64 = state.regions.iter().map(|r| r.1).sum();
    let have = mem.metadata()?.len();
    if have != want + TRAILER_LEN {
        bail!(
            "{}: {have} bytes, the state describes {} (truncated or not this snapshot's)",
            mpath.display(),
            want + TRAILER_LEN
        );
    }
    let mut t = vec![0u8; TRAILER_LEN as usize];
    mem.read_exact_at(&mut t, want)
        .with_context(|| format!("reading {}", mpath.display()))?;
    if &t[..8] != MEMORY_MAGIC
        || hex(&t[8..24]) != state.memory_id
        || t[24..32] != want.to_le_bytes()
    {
        bail!(
            "{}: the memory file is not this snapshot's (its trailer does not match the state)",
            mpath.display()
        );
    }
    Ok(mem)
}

fn parse_state(data: &[u8]) -> Result<VmState> {
    if data.len() < HEADER_LEN || &data[..8] != STATE_MAGIC {
        bail!("not a hako VMM snapshot state");
    }
    let format = u32::from_le_bytes(data[8..12].try_into()?);
    if format != FORMAT {
        bail!("snapshot format {format} (this VMM reads {FORMAT})");
    }
    let len = u64::from_le_bytes(data[16..24].try_into()?);
    let body = &data[HEADER_LEN..];
    if body.len() as u64 != len {
        bail!(
            "truncated or extended: {} bytes of state, the header says {len}",
            body.len()
        );
    }
    if Sha256::digest(body).as_slice() != &data[24..56] {
        bail!("checksum mismatch: the state is damaged");
    }
    serde_json::from_slice(body).context("the state does not parse")
}

/// Check a snapshot completely: its state as a restore does, then every byte of guest memory
/// against the digest taken when it was written (the data extents hash to it; the rest of the
/// file reads as zero). Reads the whole memory file, so it is for a template cache adopting a
/// snapshot, not for each restore.
pub fn verify(dir: &Path) -> Result<()> {
    let (state, mem) = read(dir)?;
    let mpath = dir.join(MEMORY_FILE);
    let total: u64 = state.regions.iter().map(|r| r.1).sum();
    let mut digest = Sha256::new();
    let mut buf = Vec::new();
    let mut pos = 0u64;
    for &(off, len) in &state.memory_extents {
        if off < pos || off.checked_add(len).is_none_or(|e| e > total) {
            bail!("{}: a memory extent out of order or range", mpath.display());
        }
        zero_outside_data(&mem, &mpath, pos, off, &mut buf)?;
        buf.resize(len as usize, 0);
        mem.read_exact_at(&mut buf, off)
            .with_context(|| format!("reading {}", mpath.display()))?;
        hash_extent(&mut digest, off, &buf);
        pos = off + len;
    }
    zero_outside_data(&mem, &mpath, pos, total, &mut buf)?;
    if hex(&digest.finalize()) != state.memory_sha256 {
        bail!(
            "{}: guest memory does not match the snapshot's digest (damaged)",
            mpath.display()
        );
    }
    Ok(())
}

/// Check that `from..to` of `file` reads as zero, reading only its data (holes are zero).
fn zero_outside_data(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let fd = file.as_raw_fd();
    let mut o = from;
    while o < to {
        // SAFETY: lseek on our own fd.
        let data = unsafe { libc::lseek(fd, o as libc::off_t, libc::SEEK_DATA) };
        if data < 0 || data as u64 >= to {
            return Ok(()); // a hole up to `to` (or the end)
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { to } else { (hole as u64).min(to) };
        let mut at = data as u64;
        while at < end {
            let n = (end - at).min(1 << 20) as usize;
            buf.resize(n, 0);
            file.read_exact_at(buf, at)
                .with_context(|| format!("reading {}", path.display()))?;
            if !is_zero(buf) {
                bail!(
                    "{}: data at {at:#x} outside what the snapshot wrote (damaged)",
                    path.display()
                );
            }
            at += n as u64;
        }
        o = end;
    }
    Ok(())
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
