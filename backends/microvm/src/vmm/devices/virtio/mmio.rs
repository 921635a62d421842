//! The virtio-mmio transport (virtio 1.x §4.2.2): the register protocol, feature negotiation,
//! queue setup, notifications and the interrupt status, over one 4 KiB window.

use std::sync::Arc;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::queue::QueueState;
use super::{Queue, VirtioDevice, VIRTIO_F_VERSION_1};

pub const MMIO_MAGIC: u32 = 0x7472_6976; // "virt"
pub const MMIO_VERSION: u32 = 2;
pub const VENDOR_ID: u32 = 0x6f6b_6168; // "hako"

// Register offsets.
pub const REG_MAGIC: u64 = 0x000;
pub const REG_VERSION: u64 = 0x004;
pub const REG_DEVICE_ID: u64 = 0x008;
pub const REG_VENDOR_ID: u64 = 0x00c;
pub const REG_DEVICE_FEATURES: u64 = 0x010;
pub const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
pub const REG_DRIVER_FEATURES: u64 = 0x020;
pub const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
pub const REG_QUEUE_SEL: u64 = 0x030;
pub const REG_QUEUE_NUM_MAX: u64 = 0x034;
pub const REG_QUEUE_NUM: u64 = 0x038;
pub const REG_QUEUE_READY: u64 = 0x044;
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
pub const REG_INTERRUPT_STATUS: u64 = 0x060;
pub const REG_INTERRUPT_ACK: u64 = 0x064;
pub const REG_STATUS: u64 = 0x070;
pub const REG_QUEUE_DESC_LOW: u64 = 0x080;
pub const REG_QUEUE_DESC_HIGH: u64 = 0x084;
pub const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
pub const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
pub const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
pub const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
pub const REG_CONFIG_GENERATION: u64 = 0x0fc;
pub const REG_CONFIG: u64 = 0x100;

// Device status bits.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_FAILED: u32 = 128;

/// Interrupt status bit: a queue's used ring was updated.
pub const INT_VRING: u32 = 1;
/// Interrupt status bit: the device's configuration space changed.
pub const INT_CONFIG: u32 = 2;
/// How much of a device's configuration space a snapshot keeps (the largest here, virtio-blk's,
/// uses 16 bytes).
pub const CONFIG_SNAPSHOT_LEN: u64 = 64;

/// A transport and its device as a snapshot holds them. The device's host side (its image,
/// port or tap) is not in it: a restored VM gets its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportState {
    pub device_type: u32,
    /// What the device offered (VERSION_1 included); a restored device must offer the same.
    pub offered_features: u64,
    pub driver_features: u64,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub queue_sel: u32,
    pub status: u32,
    pub interrupt_status: u32,
    pub config_generation: u32,
    pub queues: Vec<QueueState>,
    /// The first [`CONFIG_SNAPSHOT_LEN`] bytes of the configuration space.
    pub config: Vec<u8>,
}

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    irq: Arc<EventFd>,
}

impl MmioTransport {
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMemoryMmap, irq: Arc<EventFd>) -> Self {
        let queues = device
            .queue_max_sizes()
            .into_iter()
            .map(Queue::new)
            .collect();
        MmioTransport {
            device,
            mem,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
            irq,
        }
    }

    fn config_bytes(&self) -> Vec<u8> {
        let mut c = vec![0u8; CONFIG_SNAPSHOT_LEN as usize];
        self.device.read_config(0, &mut c);
        c
    }

    /// The transport's and queues' state for a snapshot (the VM is paused).
    pub fn state(&self) -> TransportState {
        TransportState {
            device_type: self.device.device_type(),
            offered_features: self.offered_features(),
            driver_features: self.driver_features,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            queue_sel: self.queue_sel,
            status: self.status,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            queues: self.queues.iter().map(Queue::state).collect(),
            config: self.config_bytes(),
        }
    }

    /// Load a saved state into this fresh transport, whose device has its own new host side.
    /// The device must be of the same type with the same queues and offer the same features
    /// (the guest's driver already negotiated them). When its configuration space differs from
    /// the saved one (a disk of another size), the configuration generation moves on; returns
    /// whether the driver should get a configuration-change interrupt
    /// ([`Self::signal_config_change`], once the whole VM is loaded).
    pub fn restore(&mut self, s: &TransportState) -> Result<bool> {
        if s.device_type != self.device.device_type() {
            bail!(
                "device type {} in the snapshot, {} here",
                s.device_type,
                self.device.device_type()
            );
        }
        if s.offered_features != self.offered_features() {
            bail!(
                "the snapshot's device offered features {:#x}, this one offers {:#x} (a read-only \
                 disk where the snapshot had a writable one, or the reverse?)",
                s.offered_features,
                self.offered_features()
            );
        }
        if s.driver_features & !s.offered_features != 0 {
            bail!(
                "the driver acknowledged features {:#x} the device never offered",
                s.driver_features & !s.offered_features
            );
        }
        if s.queues.len() != self.queues.len() {
            bail!(
                "{} queues in the snapshot, the device has {}",
                s.queues.len(),
                self.queues.len()
            );
        }
        let live = s.status & STATUS_DRIVER_OK != 0 && s.status & STATUS_FAILED == 0;
        for (i, (q, qs)) in self.queues.iter_mut().zip(&s.queues).enumerate() {
            q.restore(qs, &self.mem, live)
                .map_err(|e| anyhow::anyhow!("queue {i}: {e}"))?;
        }
        self.driver_features = s.driver_features;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.queue_sel = s.queue_sel;
        self.status = s.status;
        self.interrupt_status = s.interrupt_status;
        self.config_generation = s.config_generation;
        let changed = self.config_bytes() != s.config;
        if changed {
            self.config_generation = self.config_generation.wrapping_add(1);
        }
        Ok(changed && live)
    }

    /// Tell the driver its configuration space changed (virtio 1.x §4.2.3.3: the
    /// configuration-change bit in InterruptStatus and the device's interrupt).
    pub fn signal_config_change(&mut self) {
        self.interrupt_status |= INT_CONFIG;
        let _ = self.irq.write(1);
    }

    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        // Queue configuration may only change before the driver is done.
        if self.status & STATUS_DRIVER_OK != 0 {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn driver_ok(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_FAILED == 0
    }

    fn signal_used(&mut self) {
        self.interrupt_status |= INT_VRING;
        let _ = self.irq.write(1);
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
    }

    /// Host input for the device (console): queue it and deliver what the driver has room for.
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.device.push_input(bytes);
        if self.driver_ok() && self.device.process_input(&self.mem, &mut self.queues) {
            self.signal_used();
        }
    }

    /// The device's host-side source became readable (a net device's tap): deliver what the
    /// driver has room for.
    /// Whether buffers were used.
    pub fn input_ready(&mut self) -> bool {
        let used = self.driver_ok() && self.device.process_input(&self.mem, &mut self.queues);
        if used {
            self.signal_used();
        }
        used
    }

    /// Room for host input in the device (0 for devices that take none).
    pub fn input_room(&self) -> usize {
        self.device.input_room()
    }

    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= REG_CONFIG {
            self.device.read_config(offset - REG_CONFIG, data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let q = self.queues.get(self.queue_sel as usize);
        let v: u32 = match offset {
            REG_MAGIC => MMIO_MAGIC,
            REG_VERSION => MMIO_VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => q.map(|q| u32::from(q.max_size)).unwrap_or(0),
            REG_QUEUE_READY => q.map(|q| u32::from(q.ready)).unwrap_or(0),
            REG_INTERRUPT_STATUS => self.interrupt_status,
            REG_STATUS => self.status,
            REG_CONFIG_GENERATION => self.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= REG_CONFIG {
            self.device.write_config(offset - REG_CONFIG, data);
            return;
        }
        if data.len() != 4 {
            return;
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let set_lo = |a: GuestAddress, v: u32| GuestAddress((a.0 & !0xffff_ffff) | u64::from(v));
        let set_hi =
            |a: GuestAddress, v: u32| GuestAddress((a.0 & 0xffff_ffff) | (u64::from(v) << 32));
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            REG_DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                    }
                    _ => {}
                }
            }
            REG_QUEUE_SEL => self.queue_sel = v,
            REG_QUEUE_NUM => {
                if let Some(q) = self.queue() {
                    q.size = v as u16;
                }
            }
            REG_QUEUE_READY => {
                if let Some(q) = self.queue() {
                    q.ready = v == 1;
                }
            }
            REG_QUEUE_DESC_LOW => {
                if let Some(q) = self.queue() {
                    q.desc_table = set_lo(q.desc_table, v);
                }
            }
            REG_QUEUE_DESC_HIGH => {
                if let Some(q) = self.queue() {
                    q.desc_table = set_hi(q.desc_table, v);
                }
            }
            REG_QUEUE_DRIVER_LOW => {
                if let Some(q) = self.queue() {
                    q.avail_ring = set_lo(q.avail_ring, v);
                }
            }
            REG_QUEUE_DRIVER_HIGH => {
                if let Some(q) = self.queue() {
                    q.avail_ring = set_hi(q.avail_ring, v);
                }
            }
            REG_QUEUE_DEVICE_LOW => {
                if let Some(q) = self.queue() {
                    q.used_ring = set_lo(q.used_ring, v);
                }
            }
            REG_QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.queue() {
                    q.used_ring = set_hi(q.used_ring, v);
                }
            }
            REG_QUEUE_NOTIFY => {
                let idx = v as usize;
                if self.driver_ok() && idx < self.queues.len() {
                    let mem = self.mem.clone();
                    let used = self.device.process_queue(&mem, &mut self.queues, idx)
                        | self.device.process_input(&mem, &mut self.queues);
                    if used {
                        self.signal_used();
                    }
                }
            }
            REG_INTERRUPT_ACK => self.interrupt_status &= !v,
            REG_STATUS => self.set_status(v),
            _ => {}
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v;
        if v & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            // Accept only a subset of what we offered, including VERSION_1.
            let ok = self.driver_features & !self.offered_features() == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                v &= !STATUS_FEATURES_OK;
            }
        }
        if v & STATUS_DRIVER_OK != 0 && self.status & STATUS_DRIVER_OK == 0 {
            let queues_ok = self
                .queues
                .iter()
                .all(|q| !q.ready || q.is_valid(&self.mem));
            if v & STATUS_FEATURES_OK == 0 || !queues_ok {
                v = (v & !STATUS_DRIVER_OK) | STATUS_FAILED;
            }
        }
        self.status = v;
        if self.driver_ok() && self.device.process_input(&self.mem, &mut self.queues) {
            self.signal_used();
        }
    }

    /// The features the driver acknowledged (after FEATURES_OK).
    pub fn acked_features(&self) -> u64 {
        self.driver_features
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::vmm::devices::virtio::queue::testing::DriverQueue;

    pub fn rd(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn wr(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    /// Drive the initialisation sequence of virtio 1.x §3.1.1 the way Linux does; returns the
    /// driver-side queues.
    pub fn init_device(t: &mut MmioTransport, nqueues: usize, size: u16) -> Vec<DriverQueue> {
        assert_eq!(rd(t, REG_MAGIC), MMIO_MAGIC);
        assert_eq!(rd(t, REG_VERSION), 2);
        wr(t, REG_STATUS, 0);
        wr(t, REG_STATUS, STATUS_ACKNOWLEDGE);
        wr(t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(t, REG_DEVICE_FEATURES_SEL, 0);
        let lo = rd(t, REG_DEVICE_FEATURES);
        wr(t, REG_DEVICE_FEATURES_SEL, 1);
        let hi = rd(t, REG_DEVICE_FEATURES);
        assert_eq!(hi & 1, 1, "VERSION_1 offered");
        wr(t, REG_DRIVER_FEATURES_SEL, 0);
        wr(t, REG_DRIVER_FEATURES, lo);
        wr(t, REG_DRIVER_FEATURES_SEL, 1);
        wr(t, REG_DRIVER_FEATURES, hi);
        wr(
            t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_ne!(rd(t, REG_STATUS) & STATUS_FEATURES_OK, 0);
        let mut dqs = Vec::new();
        for i in 0..nqueues {
            let dq = DriverQueue::new(0x10_0000 + 0x4000 * i as u64, size);
            wr(t, REG_QUEUE_SEL, i as u32);
            assert!(rd(t, REG_QUEUE_NUM_MAX) >= u32::from(size));
            assert_eq!(rd(t, REG_QUEUE_READY), 0);
            wr(t, REG_QUEUE_NUM, u32::from(size));
            wr(t, REG_QUEUE_DESC_LOW, dq.desc.0 as u32);
            wr(t, REG_QUEUE_DESC_HIGH, 0);
            wr(t, REG_QUEUE_DRIVER_LOW, dq.avail.0 as u32);
            wr(t, REG_QUEUE_DRIVER_HIGH, 0);
            wr(t, REG_QUEUE_DEVICE_LOW, dq.used.0 as u32);
            wr(t, REG_QUEUE_DEVICE_HIGH, 0);
            wr(t, REG_QUEUE_READY, 1);
            dqs.push(dq);
        }
        wr(
            t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
        assert_eq!(rd(t, REG_STATUS) & STATUS_FAILED, 0);
        dqs
    }

    struct Null;
    impl VirtioDevice for Null {
        fn device_type(&self) -> u32 {
            42
        }
        fn queue_max_sizes(&self) -> Vec<u16> {
            vec![8]
        }
        fn features(&self) -> u64 {
            1 << 3
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn process_queue(&mut self, mem: &GuestMemoryMmap, q: &mut [Queue], idx: usize) -> bool {
            let mut any = false;
            while let Ok(Some(c)) = q[idx].pop(mem) {
                q[idx].add_used(mem, c.head, 7).unwrap();
                any = true;
            }
            any
        }
    }

    fn transport() -> (MmioTransport, GuestMemoryMmap, Arc<EventFd>) {
        let mem = crate::vmm::layout::create_guest_memory(32 << 20).unwrap();
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        (
            MmioTransport::new(Box::new(Null), mem.clone(), irq.clone()),
            mem,
            irq,
        )
    }

    #[test]
    fn identification_registers() {
        let (mut t, _, _) = transport();
        assert_eq!(rd(&mut t, REG_MAGIC), 0x7472_6976);
        assert_eq!(rd(&mut t, REG_VERSION), 2);
        assert_eq!(rd(&mut t, REG_DEVICE_ID), 42);
        assert_eq!(rd(&mut t, REG_VENDOR_ID), VENDOR_ID);
        wr(&mut t, REG_DEVICE_FEATURES_SEL, 0);
        assert_eq!(rd(&mut t, REG_DEVICE_FEATURES), 1 << 3);
        let mut cfg = [0u8; 2];
        t.read(REG_CONFIG + 5, &mut cfg);
        assert_eq!(cfg, [5, 5]);
    }

    #[test]
    fn feature_negotiation_refuses_unoffered_or_legacy() {
        let (mut t, _, _) = transport();
        wr(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, REG_DRIVER_FEATURES_SEL, 0);
        wr(&mut t, REG_DRIVER_FEATURES, 1 << 3); // without VERSION_1: legacy driver
        wr(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_eq!(rd(&mut t, REG_STATUS) & STATUS_FEATURES_OK, 0);
        wr(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        wr(&mut t, REG_DRIVER_FEATURES, 1 | 2); // VERSION_1 + an unoffered bit 33
        wr(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_eq!(rd(&mut t, REG_STATUS) & STATUS_FEATURES_OK, 0);
        wr(&mut t, REG_DRIVER_FEATURES, 1);
        wr(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_ne!(rd(&mut t, REG_STATUS) & STATUS_FEATURES_OK, 0);
        assert_eq!(t.acked_features(), VIRTIO_F_VERSION_1 | (1 << 3));
        // DRIVER_OK with a broken queue fails the device.
        wr(&mut t, REG_QUEUE_SEL, 0);
        wr(&mut t, REG_QUEUE_NUM, 5);
        wr(&mut t, REG_QUEUE_READY, 1);
        wr(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
        assert_ne!(rd(&mut t, REG_STATUS) & STATUS_FAILED, 0);
        // Reset clears everything.
        wr(&mut t, REG_STATUS, 0);
        assert_eq!(rd(&mut t, REG_STATUS), 0);
        assert_eq!(rd(&mut t, REG_QUEUE_READY), 0);
    }

    #[test]
    fn notify_processes_and_interrupts() {
        let (mut t, mem, irq) = transport();
        let mut dqs = init_device(&mut t, 1, 8);
        // Queue registers are frozen after DRIVER_OK.
        wr(&mut t, REG_QUEUE_NUM, 4);
        assert_eq!(t.queues[0].size, 8);
        let h = dqs[0].post(&mem, &[(0x30_0000, 64, true)]);
        assert!(irq.read().is_err(), "no interrupt before notify");
        wr(&mut t, REG_QUEUE_NOTIFY, 0);
        assert_eq!(dqs[0].used_idx(&mem), 1);
        assert_eq!(dqs[0].used_elem(&mem, 0), (u32::from(h), 7));
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(rd(&mut t, REG_INTERRUPT_STATUS), INT_VRING);
        wr(&mut t, REG_INTERRUPT_ACK, INT_VRING);
        assert_eq!(rd(&mut t, REG_INTERRUPT_STATUS), 0);
        // Notifying an out-of-range queue is harmless.
        wr(&mut t, REG_QUEUE_NOTIFY, 9);
    }

    /// A device whose config space and features the test chooses.
    struct Sized(u8, u64);
    impl VirtioDevice for Sized {
        fn device_type(&self) -> u32 {
            42
        }
        fn queue_max_sizes(&self) -> Vec<u16> {
            vec![8]
        }
        fn features(&self) -> u64 {
            self.1
        }
        fn read_config(&self, _offset: u64, data: &mut [u8]) {
            data.fill(self.0);
        }
        fn process_queue(&mut self, mem: &GuestMemoryMmap, q: &mut [Queue], idx: usize) -> bool {
            Null.process_queue(mem, q, idx)
        }
    }

    #[test]
    fn state_round_trip_continues_the_rings_and_signals_a_config_change() {
        let (mut t, mem, _) = transport();
        let mut dqs = init_device(&mut t, 1, 8);
        dqs[0].post(&mem, &[(0x30_0000, 64, true)]);
        wr(&mut t, REG_QUEUE_NOTIFY, 0);
        let saved = t.state();
        assert_eq!(saved.queues[0].next_avail, 1);
        assert_eq!(saved.queues[0].next_used, 1);
        let json = serde_json::to_string(&saved).unwrap();

        // Same device: everything as it was, the next chain is the second one.
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut r = MmioTransport::new(Box::new(Null), mem.clone(), irq.clone());
        assert!(!r.restore(&serde_json::from_str(&json).unwrap()).unwrap());
        assert_eq!(r.state(), saved);
        dqs[0].post(&mem, &[(0x30_1000, 64, true)]);
        wr(&mut r, REG_QUEUE_NOTIFY, 0);
        assert_eq!(dqs[0].used_idx(&mem), 2);
        assert_eq!(irq.read().unwrap(), 1);

        // Another config space: a new generation, and the change is to be signalled.
        let mut c = MmioTransport::new(Box::new(Sized(9, 1 << 3)), mem.clone(), irq.clone());
        assert!(c.restore(&saved).unwrap());
        assert_eq!(rd(&mut c, REG_CONFIG_GENERATION), 1);
        c.signal_config_change();
        assert_eq!(rd(&mut c, REG_INTERRUPT_STATUS), INT_VRING | INT_CONFIG);
        assert_eq!(irq.read().unwrap(), 1);

        // Other features or another device type: refused.
        let mut f = MmioTransport::new(Box::new(Sized(5, 1 << 4)), mem.clone(), irq.clone());
        assert!(format!("{:#}", f.restore(&saved).unwrap_err()).contains("features"));
        let mut other = saved.clone();
        other.device_type = 2;
        let mut d = MmioTransport::new(Box::new(Null), mem.clone(), irq.clone());
        assert!(format!("{:#}", d.restore(&other).unwrap_err()).contains("device type 2"));
        let mut unoffered = saved.clone();
        unoffered.driver_features |= 1 << 28; // indirect descriptors, never offered
        assert!(format!("{:#}", d.restore(&unoffered).unwrap_err()).contains("never offered"));
        // A live queue whose rings lie outside guest memory: refused.
        let mut far = saved.clone();
        far.queues[0].used_ring = 1 << 40;
        let mut e = MmioTransport::new(Box::new(Null), mem, irq);
        assert!(format!("{:#}", e.restore(&far).unwrap_err()).contains("queue 0"));
    }
}
