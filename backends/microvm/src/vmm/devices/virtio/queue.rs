//! The split virtqueue (virtio 1.x §2.7): descriptor table, available ring, used ring.

use std::sync::atomic::{fence, Ordering};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

pub const VIRTQ_DESC_F_NEXT: u16 = 1;
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// One descriptor of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: GuestAddress,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Descriptor {
    pub fn is_write_only(&self) -> bool {
        self.flags & VIRTQ_DESC_F_WRITE != 0
    }
}

/// A chain popped from the available ring, already walked and bounds-checked.
#[derive(Clone, Debug)]
pub struct DescriptorChain {
    pub head: u16,
    pub descs: Vec<Descriptor>,
}

/// Driver-visible queue state plus the device's ring positions.
#[derive(Clone, Debug)]
pub struct Queue {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: GuestAddress,
    pub avail_ring: GuestAddress,
    pub used_ring: GuestAddress,
    next_avail: u16,
    next_used: u16,
}

/// A queue as a snapshot holds it: what the driver set up and where the device is in the rings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    pub next_avail: u16,
    pub next_used: u16,
}

impl Queue {
    /// The queue's state for a snapshot.
    pub fn state(&self) -> QueueState {
        QueueState {
            max_size: self.max_size,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table.raw_value(),
            avail_ring: self.avail_ring.raw_value(),
            used_ring: self.used_ring.raw_value(),
            next_avail: self.next_avail,
            next_used: self.next_used,
        }
    }

    /// Load a saved state into a queue of the same maximum size. With `live` (the driver is
    /// done), a ready queue must pass the checks DRIVER_OK makes, so a restored device never
    /// walks rings outside guest memory.
    pub fn restore(&mut self, s: &QueueState, mem: &GuestMemoryMmap, live: bool) -> Result<()> {
        if s.max_size != self.max_size {
            bail!(
                "queue of {} entries in the snapshot, the device has {}",
                s.max_size,
                self.max_size
            );
        }
        let q = Queue {
            max_size: s.max_size,
            size: s.size,
            ready: s.ready,
            desc_table: GuestAddress(s.desc_table),
            avail_ring: GuestAddress(s.avail_ring),
            used_ring: GuestAddress(s.used_ring),
            next_avail: s.next_avail,
            next_used: s.next_used,
        };
        if live && q.ready && !q.is_valid(mem) {
            bail!("a ready queue in the snapshot lies outside guest memory or is malformed");
        }
        *self = q;
        Ok(())
    }

    pub fn new(max_size: u16) -> Self {
        Queue {
            max_size,
            size: max_size,
            ready: false,
            desc_table: GuestAddress(0),
            avail_ring: GuestAddress(0),
            used_ring: GuestAddress(0),
            next_avail: 0,
            next_used: 0,
        }
    }

    pub fn reset(&mut self) {
        *self = Queue::new(self.max_size);
    }

    /// Whether the driver's configuration of this queue is usable.
    pub fn is_valid(&self, mem: &GuestMemoryMmap) -> bool {
        let size = u64::from(self.size);
        self.ready
            && self.size != 0
            && self.size <= self.max_size
            && self.size.is_power_of_two()
            && self.desc_table.raw_value().is_multiple_of(16)
            && self.avail_ring.raw_value().is_multiple_of(2)
            && self.used_ring.raw_value().is_multiple_of(4)
            && mem.check_range(self.desc_table, (16 * size) as usize)
            && mem.check_range(self.avail_ring, (6 + 2 * size) as usize)
            && mem.check_range(self.used_ring, (6 + 8 * size) as usize)
    }

    fn avail_idx(&self, mem: &GuestMemoryMmap) -> Result<u16> {
        let idx: u16 = mem.read_obj(self.avail_ring.unchecked_add(2))?;
        fence(Ordering::Acquire);
        Ok(idx)
    }

    /// Pop the next available chain, or None when the driver has posted nothing new.
    pub fn pop(&mut self, mem: &GuestMemoryMmap) -> Result<Option<DescriptorChain>> {
        if !self.is_valid(mem) {
            bail!("queue used before it was set up");
        }
        let avail = self.avail_idx(mem)?;
        if avail == self.next_avail {
            return Ok(None);
        }
        if avail.wrapping_sub(self.next_avail) > self.size {
            bail!("driver advanced the available ring by more than the queue size");
        }
        let slot = u64::from(self.next_avail % self.size);
        let head: u16 = mem.read_obj(self.avail_ring.unchecked_add(4 + 2 * slot))?;
        self.next_avail = self.next_avail.wrapping_add(1);
        let mut descs = Vec::new();
        let mut idx = head;
        loop {
            if idx >= self.size {
                bail!("descriptor index {idx} out of range");
            }
            if descs.len() >= usize::from(self.size) {
                bail!("descriptor chain loops");
            }
            let base = self.desc_table.unchecked_add(16 * u64::from(idx));
            let d = Descriptor {
                addr: GuestAddress(mem.read_obj::<u64>(base)?),
                len: mem.read_obj::<u32>(base.unchecked_add(8))?,
                flags: mem.read_obj::<u16>(base.unchecked_add(12))?,
                next: mem.read_obj::<u16>(base.unchecked_add(14))?,
            };
            if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                bail!("indirect descriptors were not negotiated");
            }
            if !mem.check_range(d.addr, d.len as usize) {
                bail!(
                    "descriptor buffer {:#x}+{} outside guest memory",
                    d.addr.raw_value(),
                    d.len
                );
            }
            descs.push(d);
            if d.flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            idx = d.next;
        }
        Ok(Some(DescriptorChain { head, descs }))
    }

    /// Whether the driver has posted buffers not yet popped.
    pub fn has_available(&self, mem: &GuestMemoryMmap) -> bool {
        self.is_valid(mem)
            && self
                .avail_idx(mem)
                .map(|i| i != self.next_avail)
                .unwrap_or(false)
    }

    /// Return a chain to the driver with `len` bytes written into it.
    pub fn add_used(&mut self, mem: &GuestMemoryMmap, head: u16, len: u32) -> Result<()> {
        let slot = u64::from(self.next_used % self.size);
        let elem = self.used_ring.unchecked_add(4 + 8 * slot);
        mem.write_obj(u32::from(head), elem)?;
        mem.write_obj(len, elem.unchecked_add(4))?;
        self.next_used = self.next_used.wrapping_add(1);
        fence(Ordering::Release);
        mem.write_obj(self.next_used, self.used_ring.unchecked_add(2))?;
        Ok(())
    }
}

/// Test helpers: a driver's view of a queue in guest memory.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// Lays out a queue at `base` (desc table, avail ring at +0x1000, used ring at +0x2000) and
    /// posts chains the way a driver does.
    pub struct DriverQueue {
        pub size: u16,
        pub desc: GuestAddress,
        pub avail: GuestAddress,
        pub used: GuestAddress,
        next_desc: u16,
        avail_idx: u16,
    }

    impl DriverQueue {
        pub fn new(base: u64, size: u16) -> Self {
            DriverQueue {
                size,
                desc: GuestAddress(base),
                avail: GuestAddress(base + 0x1000),
                used: GuestAddress(base + 0x2000),
                next_desc: 0,
                avail_idx: 0,
            }
        }

        /// Post a chain of (addr, len, write_only) buffers; returns the head index.
        pub fn post(&mut self, mem: &GuestMemoryMmap, bufs: &[(u64, u32, bool)]) -> u16 {
            let head = self.next_desc;
            for (i, (addr, len, w)) in bufs.iter().enumerate() {
                let idx = self.next_desc;
                self.next_desc += 1;
                let base = self.desc.unchecked_add(16 * u64::from(idx));
                let mut flags = if *w { VIRTQ_DESC_F_WRITE } else { 0 };
                if i + 1 < bufs.len() {
                    flags |= VIRTQ_DESC_F_NEXT;
                }
                mem.write_obj(*addr, base).unwrap();
                mem.write_obj(*len, base.unchecked_add(8)).unwrap();
                mem.write_obj(flags, base.unchecked_add(12)).unwrap();
                mem.write_obj(idx + 1, base.unchecked_add(14)).unwrap();
            }
            let slot = u64::from(self.avail_idx % self.size);
            mem.write_obj(head, self.avail.unchecked_add(4 + 2 * slot))
                .unwrap();
            self.avail_idx += 1;
            mem.write_obj(self.avail_idx, self.avail.unchecked_add(2))
                .unwrap();
            head
        }

        pub fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
            mem.read_obj(self.used.unchecked_add(2)).unwrap()
        }

        /// The (id, len) of used element `i`.
        pub fn used_elem(&self, mem: &GuestMemoryMmap, i: u16) -> (u32, u32) {
            let e = self.used.unchecked_add(4 + 8 * u64::from(i % self.size));
            (
                mem.read_obj(e).unwrap(),
                mem.read_obj(e.unchecked_add(4)).unwrap(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::DriverQueue;
    use super::*;
    use crate::vmm::layout::create_guest_memory;

    fn ready_queue(dq: &DriverQueue) -> Queue {
        let mut q = Queue::new(16);
        q.size = dq.size;
        q.desc_table = dq.desc;
        q.avail_ring = dq.avail;
        q.used_ring = dq.used;
        q.ready = true;
        q
    }

    #[test]
    fn pop_walks_chains_and_add_used_publishes() {
        let mem = create_guest_memory(32 << 20).unwrap();
        let mut dq = DriverQueue::new(0x10_0000, 8);
        let mut q = ready_queue(&dq);
        assert!(q.pop(&mem).unwrap().is_none());
        let h = dq.post(
            &mem,
            &[
                (0x20_0000, 16, false),
                (0x20_1000, 512, true),
                (0x20_2000, 1, true),
            ],
        );
        assert!(q.has_available(&mem));
        let c = q.pop(&mem).unwrap().unwrap();
        assert_eq!(c.head, h);
        assert_eq!(c.descs.len(), 3);
        assert!(!c.descs[0].is_write_only() && c.descs[1].is_write_only());
        assert_eq!(c.descs[1].len, 512);
        assert!(q.pop(&mem).unwrap().is_none());
        q.add_used(&mem, c.head, 513).unwrap();
        assert_eq!(dq.used_idx(&mem), 1);
        assert_eq!(dq.used_elem(&mem, 0), (u32::from(h), 513));
    }

    #[test]
    fn bad_rings_are_rejected() {
        let mem = create_guest_memory(32 << 20).unwrap();
        let dq = DriverQueue::new(0x10_0000, 8);
        let mut q = ready_queue(&dq);
        q.size = 6; // not a power of two
        assert!(!q.is_valid(&mem));
        assert!(q.pop(&mem).is_err());
        let mut q = ready_queue(&dq);
        q.desc_table = GuestAddress(0x10_0008); // misaligned
        assert!(!q.is_valid(&mem));
        // A descriptor pointing outside guest memory.
        let mut dq = DriverQueue::new(0x10_0000, 8);
        let mut q = ready_queue(&dq);
        dq.post(&mem, &[(0x7fff_0000, 16, false)]);
        assert!(q.pop(&mem).is_err());
        // A chain that loops back on itself.
        let mut dq = DriverQueue::new(0x10_0000, 8);
        let mut q = ready_queue(&dq);
        dq.post(&mem, &[(0x20_0000, 16, false), (0x20_0000, 16, false)]);
        mem.write_obj(0u16, dq.desc.unchecked_add(16 + 14)).unwrap(); // desc1.next = 0
        mem.write_obj(VIRTQ_DESC_F_NEXT, dq.desc.unchecked_add(16 + 12))
            .unwrap();
        assert!(q.pop(&mem).is_err());
    }
}
