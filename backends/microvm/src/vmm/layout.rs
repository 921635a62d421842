//! Guest physical memory layout (x86_64).
//!
//! ```text
//! 0x0000_0500  GDT (4 entries)            0x0000_0520  IDT (one null gate)
//! 0x0000_6000  PVH hvm_start_info         0x0000_6100  PVH memory map
//! 0x0000_7000  zero page (boot_params)    0x0000_8ff0  boot stack top
//! 0x0000_9000  PML4  0xa000 PDPT (low)  0xb000 PD (1 GiB, 2 MiB pages)  0xc000 PDPT (high)
//! 0x0002_0000  kernel command line (up to CMDLINE_MAX bytes)
//! 0x0009_fc00  EBDA (reserved up to 1 MiB)
//! 0x0010_0000  high memory: the kernel's ELF segments (vmlinux: 16 MiB)
//! 0xd000_0000  virtio-mmio windows, 4 KiB each (MMIO gap up to 4 GiB)
//! 0x1_0000_0000 RAM above the gap when memory > MMIO_GAP_START
//! ```

use vm_memory::{GuestAddress, GuestMemoryMmap};

pub const GDT_START: u64 = 0x500;
pub const IDT_START: u64 = 0x520;
pub const PVH_INFO_START: u64 = 0x6000;
pub const PVH_MEMMAP_START: u64 = 0x6100;
pub const ZERO_PAGE_START: u64 = 0x7000;
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
pub const PD_START: u64 = 0xb000;
pub const PDPT_HIGH_START: u64 = 0xc000;
pub const CMDLINE_START: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 4096;
pub const EBDA_START: u64 = 0x9fc00;
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the hole below 4 GiB left for device MMIO.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio window; device `i` is at `VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE`.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// GSI of the 8250 at 0x3f8 (COM1).
pub const SERIAL_IRQ: u32 = 4;
/// GSI of the first virtio-mmio device; the next devices take the following lines.
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Highest usable IOAPIC line.
pub const IRQ_MAX: u32 = 23;
/// Smallest guest memory we accept (room for the boot structures and a kernel at 16 MiB).
pub const MIN_MEMORY_MIB: u32 = 32;

/// The RAM regions for `mem_size` bytes of guest memory, split around the MMIO gap.
pub fn ram_regions(mem_size: u64) -> Vec<(GuestAddress, usize)> {
    if mem_size <= MMIO_GAP_START {
        vec![(GuestAddress(0), mem_size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (
                GuestAddress(MMIO_GAP_END),
                (mem_size - MMIO_GAP_START) as usize,
            ),
        ]
    }
}

/// E820 entry type for usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 entry type for reserved ranges.
pub const E820_RESERVED: u32 = 2;

/// The guest's e820 map: (address, size, type).
pub fn e820_map(mem_size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
    ];
    let low_end = mem_size.min(MMIO_GAP_START);
    map.push((HIMEM_START, low_end - HIMEM_START, E820_RAM));
    if mem_size > MMIO_GAP_START {
        map.push((MMIO_GAP_END, mem_size - MMIO_GAP_START, E820_RAM));
    }
    map
}

/// Allocate guest memory of `mem_size` bytes (anonymous, private, lazily faulted).
pub fn create_guest_memory(mem_size: u64) -> anyhow::Result<GuestMemoryMmap> {
    GuestMemoryMmap::from_ranges(&ram_regions(mem_size))
        .map_err(|e| anyhow::anyhow!("cannot allocate {mem_size} bytes of guest memory: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

    #[test]
    fn small_memory_is_one_region() {
        let mem = create_guest_memory(128 << 20).unwrap();
        assert_eq!(mem.num_regions(), 1);
        assert_eq!(mem.last_addr(), GuestAddress((128 << 20) - 1));
        let map = e820_map(128 << 20);
        assert_eq!(map[0], (0, EBDA_START, E820_RAM));
        assert_eq!(map[1].2, E820_RESERVED);
        assert_eq!(map[2], (HIMEM_START, (128 << 20) - HIMEM_START, E820_RAM));
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn large_memory_skips_the_mmio_gap() {
        let size = 4u64 << 30;
        let regions = ram_regions(size);
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[1].0, GuestAddress(MMIO_GAP_END));
        assert_eq!(regions[0].1 as u64 + regions[1].1 as u64, size);
        let map = e820_map(size);
        assert_eq!(
            map.last().unwrap(),
            &(MMIO_GAP_END, size - MMIO_GAP_START, E820_RAM)
        );
        // No RAM range overlaps the virtio windows.
        for (addr, len, ty) in map {
            if ty == E820_RAM {
                assert!(addr + len <= VIRTIO_MMIO_BASE || addr >= MMIO_GAP_END);
            }
        }
        // Regions are real mappings (lazily allocated, so 4 GiB is cheap).
        let mem = create_guest_memory(size).unwrap();
        assert_eq!(mem.iter().map(|r| r.len()).sum::<u64>(), size);
    }
}
