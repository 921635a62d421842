//! virtio-blk over a host file: read, write, flush, get_id.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::{write_to_chain, DescriptorChain, Queue, VirtioDevice, TYPE_BLOCK};

pub const SECTOR_SIZE: u64 = 512;
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

pub const ID_BYTES: usize = 20;
const QUEUE_SIZE: u16 = 256;

pub struct Block {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; ID_BYTES],
}

impl Block {
    pub fn open(path: &Path, read_only: bool, id: &str) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .with_context(|| format!("opening block image {}", path.display()))?;
        let len = file.metadata()?.len();
        if len % SECTOR_SIZE != 0 {
            bail!(
                "block image {} is {len} bytes, not a multiple of 512",
                path.display()
            );
        }
        let mut idb = [0u8; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        idb[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(Block {
            file,
            sectors: len / SECTOR_SIZE,
            read_only,
            id: idb,
        })
    }

    /// capacity (u64, sectors), size_max (u32, unused), seg_max (u32).
    fn config(&self) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[..8].copy_from_slice(&self.sectors.to_le_bytes());
        c[12..].copy_from_slice(&(u32::from(QUEUE_SIZE) - 2).to_le_bytes());
        c
    }

    /// Execute one request; returns (status, bytes written into guest memory excluding status).
    fn execute(&mut self, mem: &GuestMemoryMmap, chain: &DescriptorChain) -> (u8, u32) {
        let descs = &chain.descs;
        let (Some(hdr), true) = (descs.first(), descs.len() >= 2) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        if hdr.is_write_only() || hdr.len < 16 {
            return (VIRTIO_BLK_S_IOERR, 0);
        }
        let (Ok(ty), Ok(sector)) = (
            mem.read_obj::<u32>(hdr.addr),
            mem.read_obj::<u64>(
                hdr.addr
                    .0
                    .checked_add(8)
                    .map(vm_memory::GuestAddress)
                    .unwrap_or(hdr.addr),
            ),
        ) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let data = &descs[1..descs.len() - 1];
        let in_range = |len: u64| {
            sector
                .checked_mul(SECTOR_SIZE)
                .and_then(|o| o.checked_add(len))
                .is_some_and(|end| end <= self.sectors * SECTOR_SIZE)
        };
        match ty {
            VIRTIO_BLK_T_IN => {
                let total: u64 = data.iter().map(|d| u64::from(d.len)).sum();
                if data.iter().any(|d| !d.is_write_only()) || !in_range(total) {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                let mut off = sector * SECTOR_SIZE;
                let mut buf = Vec::new();
                for d in data {
                    buf.resize(d.len as usize, 0);
                    if self.file.read_exact_at(&mut buf, off).is_err()
                        || mem.write_slice(&buf, d.addr).is_err()
                    {
                        return (VIRTIO_BLK_S_IOERR, 0);
                    }
                    off += u64::from(d.len);
                }
                (VIRTIO_BLK_S_OK, total as u32)
            }
            VIRTIO_BLK_T_OUT => {
                let total: u64 = data.iter().map(|d| u64::from(d.len)).sum();
                if self.read_only || data.iter().any(|d| d.is_write_only()) || !in_range(total) {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                let mut off = sector * SECTOR_SIZE;
                let mut buf = Vec::new();
                for d in data {
                    buf.resize(d.len as usize, 0);
                    if mem.read_slice(&mut buf, d.addr).is_err()
                        || self.file.write_all_at(&buf, off).is_err()
                    {
                        return (VIRTIO_BLK_S_IOERR, 0);
                    }
                    off += u64::from(d.len);
                }
                (VIRTIO_BLK_S_OK, 0)
            }
            VIRTIO_BLK_T_FLUSH => {
                if self.read_only || self.file.sync_all().is_ok() {
                    (VIRTIO_BLK_S_OK, 0)
                } else {
                    (VIRTIO_BLK_S_IOERR, 0)
                }
            }
            VIRTIO_BLK_T_GET_ID => {
                let n = write_to_chain(mem, data, &self.id);
                (VIRTIO_BLK_S_OK, n as u32)
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SEG_MAX | if self.read_only { VIRTIO_BLK_F_RO } else { 0 }
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = self.config();
        for (i, b) in data.iter_mut().enumerate() {
            *b = cfg.get(offset as usize + i).copied().unwrap_or(0);
        }
    }
    fn process_queue(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue], idx: usize) -> bool {
        let Some(q) = queues.get_mut(idx) else {
            return false;
        };
        let mut used = false;
        loop {
            let chain = match q.pop(mem) {
                Ok(Some(c)) => c,
                _ => break,
            };
            let (status, len) = self.execute(mem, &chain);
            if let Some(st) = chain
                .descs
                .last()
                .filter(|d| d.is_write_only() && d.len >= 1)
            {
                let _ = mem.write_obj(status, st.addr);
            }
            let _ = q.add_used(mem, chain.head, len + 1);
            used = true;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::mmio::tests::{init_device, rd, wr};
    use crate::vmm::devices::virtio::mmio::{
        MmioTransport, REG_CONFIG, REG_DEVICE_FEATURES, REG_DEVICE_FEATURES_SEL, REG_QUEUE_NOTIFY,
    };
    use std::sync::Arc;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EventFd;

    struct Img(std::path::PathBuf);
    impl Drop for Img {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn image(name: &str) -> Img {
        let p = std::env::temp_dir().join(format!("hako-vmm-blk-{}-{name}", std::process::id()));
        let mut data = vec![0u8; 8 * 512];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i / 512) as u8 + b'A';
        }
        std::fs::write(&p, data).unwrap();
        Img(p)
    }

    fn header(mem: &GuestMemoryMmap, at: u64, ty: u32, sector: u64) {
        mem.write_obj(ty, GuestAddress(at)).unwrap();
        mem.write_obj(0u32, GuestAddress(at + 4)).unwrap();
        mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    #[test]
    fn read_write_flush_get_id_through_the_transport() {
        let img = image("rw");
        let mem = crate::vmm::layout::create_guest_memory(32 << 20).unwrap();
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let dev = Block::open(&img.0, false, "rootfs-disk").unwrap();
        let mut t = MmioTransport::new(Box::new(dev), mem.clone(), irq.clone());
        wr(&mut t, REG_DEVICE_FEATURES_SEL, 0);
        assert_ne!(
            rd(&mut t, REG_DEVICE_FEATURES) as u64 & VIRTIO_BLK_F_FLUSH,
            0
        );
        assert_eq!(rd(&mut t, REG_DEVICE_FEATURES) as u64 & VIRTIO_BLK_F_RO, 0);
        let mut cap = [0u8; 8];
        t.read(REG_CONFIG, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8, "capacity in sectors");
        let mut seg_max = [0u8; 4];
        t.read(REG_CONFIG + 12, &mut seg_max);
        assert_eq!(u32::from_le_bytes(seg_max), 254);
        let mut dq = init_device(&mut t, 1, 32).remove(0);

        // Read sectors 2..4 into two buffers.
        header(&mem, 0x20_0000, VIRTIO_BLK_T_IN, 2);
        dq.post(
            &mem,
            &[
                (0x20_0000, 16, false),
                (0x21_0000, 512, true),
                (0x21_1000, 512, true),
                (0x22_0000, 1, true),
            ],
        );
        // Write 512 bytes of 'z' at sector 7.
        header(&mem, 0x20_0100, VIRTIO_BLK_T_OUT, 7);
        mem.write_slice(&[b'z'; 512], GuestAddress(0x23_0000))
            .unwrap();
        dq.post(
            &mem,
            &[
                (0x20_0100, 16, false),
                (0x23_0000, 512, false),
                (0x22_0001, 1, true),
            ],
        );
        // Flush, get_id, an unknown request and a read past the end.
        header(&mem, 0x20_0200, VIRTIO_BLK_T_FLUSH, 0);
        dq.post(&mem, &[(0x20_0200, 16, false), (0x22_0002, 1, true)]);
        header(&mem, 0x20_0300, VIRTIO_BLK_T_GET_ID, 0);
        dq.post(
            &mem,
            &[
                (0x20_0300, 16, false),
                (0x24_0000, 20, true),
                (0x22_0003, 1, true),
            ],
        );
        header(&mem, 0x20_0400, 99, 0);
        dq.post(&mem, &[(0x20_0400, 16, false), (0x22_0004, 1, true)]);
        header(&mem, 0x20_0500, VIRTIO_BLK_T_IN, 7);
        dq.post(
            &mem,
            &[
                (0x20_0500, 16, false),
                (0x25_0000, 1024, true),
                (0x22_0005, 1, true),
            ],
        );
        wr(&mut t, REG_QUEUE_NOTIFY, 0);

        assert_eq!(dq.used_idx(&mem), 6);
        assert_eq!(irq.read().unwrap(), 1);
        let mut status = [9u8; 6];
        mem.read_slice(&mut status, GuestAddress(0x22_0000))
            .unwrap();
        assert_eq!(
            status,
            [
                VIRTIO_BLK_S_OK,
                VIRTIO_BLK_S_OK,
                VIRTIO_BLK_S_OK,
                VIRTIO_BLK_S_OK,
                VIRTIO_BLK_S_UNSUPP,
                VIRTIO_BLK_S_IOERR
            ]
        );
        assert_eq!(dq.used_elem(&mem, 0).1, 1025);
        let mut buf = [0u8; 512];
        mem.read_slice(&mut buf, GuestAddress(0x21_0000)).unwrap();
        assert!(buf.iter().all(|&b| b == b'C'));
        mem.read_slice(&mut buf, GuestAddress(0x21_1000)).unwrap();
        assert!(buf.iter().all(|&b| b == b'D'));
        let mut id = [0u8; 20];
        mem.read_slice(&mut id, GuestAddress(0x24_0000)).unwrap();
        assert_eq!(&id[..11], b"rootfs-disk");
        assert_eq!(dq.used_elem(&mem, 3).1, 21);
        let on_disk = std::fs::read(&img.0).unwrap();
        assert!(on_disk[7 * 512..].iter().all(|&b| b == b'z'));
        assert!(on_disk[6 * 512..7 * 512].iter().all(|&b| b == b'G'));
    }

    #[test]
    fn read_only_images_refuse_writes() {
        let img = image("ro");
        let mem = crate::vmm::layout::create_guest_memory(32 << 20).unwrap();
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut t = MmioTransport::new(
            Box::new(Block::open(&img.0, true, "ro").unwrap()),
            mem.clone(),
            irq,
        );
        wr(&mut t, REG_DEVICE_FEATURES_SEL, 0);
        assert_ne!(rd(&mut t, REG_DEVICE_FEATURES) as u64 & VIRTIO_BLK_F_RO, 0);
        let mut dq = init_device(&mut t, 1, 16).remove(0);
        header(&mem, 0x20_0000, VIRTIO_BLK_T_OUT, 0);
        dq.post(
            &mem,
            &[
                (0x20_0000, 16, false),
                (0x23_0000, 512, false),
                (0x22_0000, 1, true),
            ],
        );
        wr(&mut t, REG_QUEUE_NOTIFY, 0);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0x22_0000)).unwrap(),
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(std::fs::read(&img.0).unwrap()[0], b'A');
    }

    #[test]
    fn odd_sized_or_missing_images_are_errors() {
        assert!(Block::open(Path::new("/nonexistent.img"), true, "x").is_err());
        let p = std::env::temp_dir().join(format!("hako-vmm-blk-{}-odd", std::process::id()));
        std::fs::write(&p, [0u8; 100]).unwrap();
        let e = Block::open(&p, true, "x").err().unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(e.to_string().contains("multiple of 512"));
    }
}
