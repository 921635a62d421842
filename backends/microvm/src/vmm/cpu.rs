//! vCPU state for boot: GDT, IDT, page tables, segment/control registers, general registers,
//! FPU, CPUID and MSRs.

use anyhow::{Context, Result};
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, CpuId, Msrs};
use kvm_ioctls::{Kvm, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::*;

/// How the BSP enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BootProtocol {
    /// PVH: 32-bit protected mode, paging off, `rbx` = hvm_start_info.
    Pvh,
    /// Linux 64-bit boot protocol: long mode, identity-mapped page tables, `rsi` = zero page.
    Linux64,
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// A GDT entry from its flags (access byte in bits 0-7, flags nibble in bits 12-15), base and
/// limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The kvm_segment a GDT entry describes, with selector `index * 8`.
pub fn segment_from_gdt(entry: u64, index: u16) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = (((entry >> 32) & 0xf_0000) | (entry & 0xffff)) as u32;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: if present == 1 { 0 } else { 1 },
        padding: 0,
    }
}

/// The GDT for a boot protocol: null, code (0x08), data (0x10), TSS (0x18).
pub fn gdt(protocol: BootProtocol) -> [u64; 4] {
    match protocol {
        BootProtocol::Linux64 => [
            0,
            gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code
            gdt_entry(0xc093, 0, 0xfffff), // data
            gdt_entry(0x808b, 0, 0xfffff), // TSS
        ],
        BootProtocol::Pvh => [
            0,
            gdt_entry(0xc09b, 0, 0xffff_ffff), // 32-bit code, 4 GiB
            gdt_entry(0xc093, 0, 0xffff_ffff), // data, 4 GiB
            gdt_entry(0x008b, 0, 0x67),        // TSS
        ],
    }
}

/// Write the identity map of the first GiB (2 MiB pages), also mapped at 0xffff_ffff_8000_0000
/// (where a vmlinux's virtual addresses live). Returns the PML4 address for CR3.
pub fn setup_page_tables(mem: &GuestMemoryMmap) -> Result<u64> {
    let w = |v: u64, a: u64| {
        mem.write_obj(v, GuestAddress(a))
            .context("writing page tables")
    };
    w(PDPT_START | 0x3, PML4_START)?;
    w(PDPT_HIGH_START | 0x3, PML4_START + 511 * 8)?;
    w(PD_START | 0x3, PDPT_START)?;
    w(PD_START | 0x3, PDPT_HIGH_START + 510 * 8)?;
    for i in 0..512u64 {
        w((i << 21) | 0x83, PD_START + i * 8)?; // present, writable, 2 MiB page
    }
    Ok(PML4_START)
}

/// Set up memory-resident structures (GDT, IDT, page tables) and the BSP's special registers.
pub fn setup_sregs(mem: &GuestMemoryMmap, vcpu: &VcpuFd, protocol: BootProtocol) -> Result<()> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().context("KVM_GET_SREGS")?;
    let table = gdt(protocol);
    for (i, e) in table.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT_START + i as u64 * 8))
            .context("writing GDT")?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_START))
        .context("writing IDT")?;
    let code = segment_from_gdt(table[1], 1);
    let data = segment_from_gdt(table[2], 2);
    let tss = segment_from_gdt(table[3], 3);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (table.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    match protocol {
        BootProtocol::Linux64 => {
            sregs.cr3 = setup_page_tables(mem)?;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG | X86_CR0_ET;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        BootProtocol::Pvh => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    vcpu.set_sregs(&sregs).context("KVM_SET_SREGS")
}

/// The BSP's general registers at the kernel entry.
pub fn boot_regs(protocol: BootProtocol, entry: u64) -> kvm_regs {
    let mut regs = kvm_regs {
        rflags: 0x2,
        rip: entry,
        ..Default::default()
    };
    match protocol {
        BootProtocol::Linux64 => {
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = ZERO_PAGE_START;
        }
        BootProtocol::Pvh => regs.rbx = PVH_INFO_START,
    }
    regs
}

pub fn setup_regs(vcpu: &VcpuFd, protocol: BootProtocol, entry: u64) -> Result<()> {
    vcpu.set_regs(&boot_regs(protocol, entry))
        .context("KVM_SET_REGS")
}

pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).context("KVM_SET_FPU")
}

/// The host's supported CPUID, filtered for vCPU `id` of `count`: APIC ids, the hypervisor bit,
/// logical processor counts; leaves the host cannot virtualize are left as KVM reports them.
pub fn filtered_cpuid(kvm: &Kvm, id: u8, count: u8) -> Result<CpuId> {
    let mut cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .context("KVM_GET_SUPPORTED_CPUID")?;
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                // EBX: initial APIC id [31:24], logical count [23:16], CLFLUSH size [15:8].
                e.ebx = (u32::from(id) << 24) | (u32::from(count) << 16) | (8 << 8);
                e.ecx |= 1 << 31; // running under a hypervisor
                if count > 1 {
                    e.edx |= 1 << 28; // HTT: the count field is valid
                }
            }
            0xb | 0x1f => e.edx = u32::from(id), // x2APIC id
            6 => {
                // No thermal/power management leaves for the guest.
                e.eax = 0;
                e.ebx = 0;
                e.ecx &= 1; // keep only the APERF/MPERF bit KVM reports
                e.edx = 0;
            }
            _ => {}
        }
    }
    Ok(cpuid)
}

// MSR indexes set at boot.
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;

/// The boot MSRs, restricted to those the host's KVM lists as saveable.
pub fn boot_msrs(kvm: &Kvm) -> Result<Vec<kvm_msr_entry>> {
    let supported = kvm.get_msr_index_list().context("KVM_GET_MSR_INDEX_LIST")?;
    let supported = supported.as_slice();
    let wanted = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
    ];
    Ok(wanted
        .iter()
        .filter(|(i, _)| supported.contains(i))
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect())
}

pub fn setup_msrs(kvm: &Kvm, vcpu: &VcpuFd) -> Result<()> {
    let entries = boot_msrs(kvm)?;
    let msrs = Msrs::from_entries(&entries).map_err(|e| anyhow::anyhow!("MSR list: {e:?}"))?;
    let n = vcpu.set_msrs(&msrs).context("KVM_SET_MSRS")?;
    if n != entries.len() {
        anyhow::bail!(
            "KVM_SET_MSRS set {n} of {} MSRs (failed at index {:#x})",
            entries.len(),
            entries[n].index
        );
    }
    Ok(())
}

/// Local APIC: LINT0 as ExtINT (the PIC), LINT1 as NMI.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<()> {
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const MODE_NMI: u32 = 0x4;
    const MODE_EXTINT: u32 = 0x7;
    let mut lapic = vcpu.get_lapic().context("KVM_GET_LAPIC")?;
    let set = |regs: &mut [std::os::raw::c_char; 1024], off: usize, mode: u32| {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = regs[off + i] as u8;
        }
        let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
        for (i, x) in v.to_le_bytes().iter().enumerate() {
            regs[off + i] = *x as std::os::raw::c_char;
        }
    };
    set(&mut lapic.regs, APIC_LVT0, MODE_EXTINT);
    set(&mut lapic.regs, APIC_LVT1, MODE_NMI);
    vcpu.set_lapic(&lapic).context("KVM_SET_LAPIC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let code = segment_from_gdt(gdt(BootProtocol::Linux64)[1], 1);
        assert_eq!(code.selector, 0x08);
        assert_eq!(
            (code.l, code.db, code.g, code.present, code.s),
            (1, 0, 1, 1, 1)
        );
        assert_eq!(code.type_, 0xb);
        assert_eq!(code.limit, 0xffff_ffff);
        assert_eq!(code.base, 0);
        let data = segment_from_gdt(gdt(BootProtocol::Linux64)[2], 2);
        assert_eq!(
            (data.selector, data.type_, data.db, data.l),
            (0x10, 0x3, 1, 0)
        );
        let code32 = segment_from_gdt(gdt(BootProtocol::Pvh)[1], 1);
        assert_eq!((code32.l, code32.db, code32.limit), (0, 1, 0xffff_ffff));
        let tss = segment_from_gdt(gdt(BootProtocol::Pvh)[3], 3);
        assert_eq!(
            (tss.type_, tss.s, tss.limit, tss.selector),
            (0xb, 0, 0x67, 0x18)
        );
        // Known encoding (as in the Linux/Firecracker boot GDTs).
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn page_tables_identity_map_and_high_alias() {
        let mem = create_guest_memory(64 << 20).unwrap();
        assert_eq!(setup_page_tables(&mem).unwrap(), PML4_START);
        let r = |a: u64| mem.read_obj::<u64>(GuestAddress(a)).unwrap();
        // Walk a virtual address through the tables the way the MMU does.
        let walk = |va: u64| -> u64 {
            let pml4e = r(PML4_START + ((va >> 39) & 511) * 8);
            assert_eq!(pml4e & 1, 1, "PML4E not present for {va:#x}");
            let pdpte = r((pml4e & !0xfff) + ((va >> 30) & 511) * 8);
            assert_eq!(pdpte & 1, 1, "PDPTE not present for {va:#x}");
            let pde = r((pdpte & !0xfff) + ((va >> 21) & 511) * 8);
            assert_eq!(pde & 0x81, 0x81, "PDE not a present 2M page for {va:#x}");
            (pde & !0x1f_ffff & !0x8000_0000_0000_0fff) | (va & 0x1f_ffff)
        };
        assert_eq!(walk(0x1234), 0x1234);
        assert_eq!(walk(0x100_0000), 0x100_0000);
        assert_eq!(walk(0x3fff_ffff), 0x3fff_ffff);
        assert_eq!(walk(0xffff_ffff_8000_0000), 0);
        assert_eq!(walk(0xffff_ffff_8100_0123), 0x100_0123);
    }

    #[test]
    fn boot_registers_follow_the_protocol() {
        let r = boot_regs(BootProtocol::Linux64, 0x100_0000);
        assert_eq!(
            (r.rip, r.rsi, r.rsp, r.rflags),
            (0x100_0000, ZERO_PAGE_START, BOOT_STACK_POINTER, 2)
        );
        let r = boot_regs(BootProtocol::Pvh, 0x100_0400);
        assert_eq!((r.rip, r.rbx, r.rsi), (0x100_0400, PVH_INFO_START, 0));
    }
}
