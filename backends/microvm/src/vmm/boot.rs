//! Kernel loading and boot information: vmlinux (ELF) through linux-loader, the command line,
//! and either the PVH `hvm_start_info` (when the ELF carries the Xen PHYS32 entry note) or the
//! Linux zero page (`boot_params`) with its e820 map.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_start_info};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, Cmdline, KernelLoader};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::cpu::BootProtocol;
use super::layout::*;

/// Where and how the BSP starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelEntry {
    pub protocol: BootProtocol,
    pub entry: u64,
    pub kernel_end: u64,
}

/// Load a vmlinux ELF into guest memory. PVH is used when the ELF note exists.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<KernelEntry> {
    let mut f = File::open(path).with_context(|| format!("opening kernel {}", path.display()))?;
    let res = Elf::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START))).map_err(|e| {
        anyhow::anyhow!(
            "kernel {} is not a loadable x86_64 vmlinux ELF: {e}",
            path.display()
        )
    })?;
    if res.kernel_end > mem.last_addr().raw_value() {
        bail!("kernel {} does not fit in guest memory", path.display());
    }
    Ok(match res.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => KernelEntry {
            protocol: BootProtocol::Pvh,
            entry: addr.raw_value(),
            kernel_end: res.kernel_end,
        },
        _ => KernelEntry {
            protocol: BootProtocol::Linux64,
            entry: res.kernel_load.raw_value(),
            kernel_end: res.kernel_end,
        },
    })
}

/// Place the command line at CMDLINE_START.
pub fn load_command_line(mem: &GuestMemoryMmap, cmdline: &str) -> Result<()> {
    let mut cl = Cmdline::new(CMDLINE_MAX).map_err(|e| anyhow::anyhow!("cmdline: {e}"))?;
    cl.insert_str(cmdline)
        .map_err(|e| anyhow::anyhow!("kernel command line {cmdline:?}: {e}"))?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cl)
        .map_err(|e| anyhow::anyhow!("placing the command line: {e}"))
}

/// Write the boot information for `protocol`.
pub fn write_boot_info(
    mem: &GuestMemoryMmap,
    protocol: BootProtocol,
    mem_size: u64,
    cmdline_len: usize,
) -> Result<()> {
    match protocol {
        BootProtocol::Pvh => {
            let memmap: Vec<hvm_memmap_table_entry> = e820_map(mem_size)
                .into_iter()
                .map(|(addr, size, type_)| hvm_memmap_table_entry {
                    addr,
                    size,
                    type_,
                    reserved: 0,
                })
                .collect();
            let info = hvm_start_info {
                magic: linux_loader::loader::elf::start_info::XEN_HVM_START_MAGIC_VALUE,
                version: 1,
                cmdline_paddr: CMDLINE_START,
                memmap_paddr: PVH_MEMMAP_START,
                memmap_entries: memmap.len() as u32,
                ..Default::default()
            };
            let mut params = BootParams::new::<hvm_start_info>(&info, GuestAddress(PVH_INFO_START));
            params.set_sections::<hvm_memmap_table_entry>(&memmap, GuestAddress(PVH_MEMMAP_START));
            PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
                .map_err(|e| anyhow::anyhow!("writing PVH start info: {e}"))
        }
        BootProtocol::Linux64 => {
            let zp = zero_page(mem_size, cmdline_len);
            let params = BootParams::new::<boot_params>(&zp, GuestAddress(ZERO_PAGE_START));
            LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
                .map_err(|e| anyhow::anyhow!("writing the zero page: {e}"))
        }
    }
}

/// The zero page for the 64-bit boot protocol.
pub fn zero_page(mem_size: u64, cmdline_len: usize) -> boot_params {
    let mut p = boot_params::default();
    p.hdr.type_of_loader = 0xff; // "other" boot loader
    p.hdr.boot_flag = 0xaa55;
    p.hdr.header = 0x5372_6448; // "HdrS"
    p.hdr.version = 0x020f;
    p.hdr.cmd_line_ptr = CMDLINE_START as u32;
    p.hdr.cmdline_size = cmdline_len as u32;
    p.hdr.kernel_alignment = 0x0100_0000;
    for (i, (addr, size, ty)) in e820_map(mem_size).into_iter().enumerate() {
        p.e820_table[i].addr = addr;
        p.e820_table[i].size = size;
        p.e820_table[i].r#type = ty;
        p.e820_entries = (i + 1) as u8;
    }
    p
}

/// A minimal x86_64 ELF executable: one PT_LOAD segment of `code` at physical `paddr`
/// (virtual `vaddr`), entry `entry`, and, when `pvh_entry` is set, a PT_NOTE carrying the Xen
/// PHYS32 entry note the way vmlinux does. Used for synthetic guests (tests, the KVM probe).
pub fn synthetic_elf(
    code: &[u8],
    paddr: u64,
    vaddr: u64,
    entry: u64,
    pvh_entry: Option<u32>,
) -> Vec<u8> {
    synthetic_elf_segments(&[(paddr, vaddr, code)], entry, pvh_entry)
}

/// As [`synthetic_elf`], with several PT_LOAD segments of (paddr, vaddr, bytes).
pub fn synthetic_elf_segments(
    segments: &[(u64, u64, &[u8])],
    entry: u64,
    pvh_entry: Option<u32>,
) -> Vec<u8> {
    let phnum = (segments.len() + usize::from(pvh_entry.is_some())) as u16;
    let mut out = Vec::new();
    // ELF header
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&entry.to_le_bytes());
    out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out.extend_from_slice(&phnum.to_le_bytes());
    out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let phdr = |out: &mut Vec<u8>, ty: u32, flags: u32, off: u64, va: u64, pa: u64, sz: u64| {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&va.to_le_bytes());
        out.extend_from_slice(&pa.to_le_bytes());
        out.extend_from_slice(&sz.to_le_bytes()); // filesz
        out.extend_from_slice(&sz.to_le_bytes()); // memsz
        out.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    };
    // Segment contents start at 0x1000 in the file, each page-aligned.
    let mut offsets = Vec::new();
    let mut off: u64 = 0x1000;
    for (paddr, vaddr, code) in segments {
        phdr(&mut out, 1, 5, off, *vaddr, *paddr, code.len() as u64);
        offsets.push(off);
        off += (code.len() as u64).div_ceil(0x1000).max(1) * 0x1000;
    }
    let note_off = 64 + 56 * u64::from(phnum);
    if let Some(e) = pvh_entry {
        phdr(&mut out, 4, 4, note_off, 0, 0, 12 + 4 + 4);
        out.extend_from_slice(&4u32.to_le_bytes()); // namesz
        out.extend_from_slice(&4u32.to_le_bytes()); // descsz
        out.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
        out.extend_from_slice(b"Xen\0");
        out.extend_from_slice(&e.to_le_bytes());
    }
    for ((_, _, code), off) in segments.iter().zip(offsets) {
        out.resize(off as usize, 0);
        out.extend_from_slice(code);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn write_tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("hako-vmm-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn elf_without_note_boots_64bit_and_loads_segments() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let code = [0x90u8, 0x90, 0xf4];
        let p = write_tmp(
            "plain.elf",
            &synthetic_elf(&code, 0x100_0000, 0xffff_ffff_8100_0000, 0x100_0000, None),
        );
        let k = load_kernel(&mem, &p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(k.protocol, BootProtocol::Linux64);
        assert_eq!(k.entry, 0x100_0000);
        assert_eq!(k.kernel_end, 0x100_0003);
        let mut got = [0u8; 3];
        mem.read_slice(&mut got, GuestAddress(0x100_0000)).unwrap();
        assert_eq!(got, code);
    }

    #[test]
    fn elf_with_xen_note_boots_pvh() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let p = write_tmp(
            "pvh.elf",
            &synthetic_elf(
                &[0xf4],
                0x100_0000,
                0x100_0000,
                0x100_0000,
                Some(0x100_0000),
            ),
        );
        let k = load_kernel(&mem, &p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(k.protocol, BootProtocol::Pvh);
        assert_eq!(k.entry, 0x100_0000);
    }

    #[test]
    fn bad_kernels_are_clear_errors() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let e = load_kernel(&mem, Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(format!("{e:#}").contains("opening kernel"), "{e:#}");
        let p = write_tmp(
            "garbage",
            b"this is not an ELF file at all, not even close..............",
        );
        let e = load_kernel(&mem, &p).unwrap_err();
        std::fs::remove_file(&p).unwrap();
        assert!(
            format!("{e:#}").contains("not a loadable x86_64 vmlinux"),
            "{e:#}"
        );
        // A segment beyond guest memory.
        let p = write_tmp(
            "toobig.elf",
            &synthetic_elf(&[0xf4], 0x800_0000, 0x800_0000, 0x800_0000, None),
        );
        assert!(load_kernel(&mem, &p).is_err());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn zero_page_contents() {
        let mem = create_guest_memory(128 << 20).unwrap();
        load_command_line(&mem, "console=ttyS0 reboot=k").unwrap();
        write_boot_info(&mem, BootProtocol::Linux64, 128 << 20, 22).unwrap();
        let zp: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ zp.hdr.boot_flag }, 0xaa55);
        assert_eq!({ zp.hdr.header }, 0x5372_6448);
        assert_eq!({ zp.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ zp.hdr.type_of_loader }, 0xff);
        assert_eq!(zp.e820_entries, 3);
        assert_eq!({ zp.e820_table[2].addr }, HIMEM_START);
        assert_eq!({ zp.e820_table[2].size }, (128 << 20) - HIMEM_START);
        assert_eq!({ zp.e820_table[2].r#type }, E820_RAM);
        let mut cl = [0u8; 23];
        mem.read_slice(&mut cl, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&cl, b"console=ttyS0 reboot=k\0");
    }

    #[test]
    fn pvh_start_info_contents() {
        let mem = create_guest_memory(64 << 20).unwrap();
        write_boot_info(&mem, BootProtocol::Pvh, 64 << 20, 0).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(info.magic, 0x336e_c578);
        assert_eq!(info.version, 1);
        assert_eq!(info.cmdline_paddr, CMDLINE_START);
        assert_eq!(info.memmap_paddr, PVH_MEMMAP_START);
        assert_eq!(info.memmap_entries, 3);
        let last: hvm_memmap_table_entry = mem
            .read_obj(GuestAddress(PVH_MEMMAP_START + 2 * 24))
            .unwrap();
        assert_eq!(
            (last.addr, last.size, last.type_),
            (HIMEM_START, (64 << 20) - HIMEM_START, 1)
        );
    }

    #[test]
    fn overlong_cmdline_is_refused() {
        let mem = create_guest_memory(64 << 20).unwrap();
        assert!(load_command_line(&mem, &"x".repeat(CMDLINE_MAX + 1)).is_err());
    }
}
