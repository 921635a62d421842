//! virtio-console (single port, no multiport): receiveq 0 carries host input to the guest,
//! transmitq 1 carries guest output to the host.

use std::collections::VecDeque;
use std::io::Write;

use vm_memory::{Bytes, GuestMemoryMmap};

use super::{write_to_chain, Queue, VirtioDevice, TYPE_CONSOLE};

pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
const QUEUE_SIZE: u16 = 256;
/// Host input buffered while the guest has posted no receive buffers.
const MAX_PENDING: usize = 1 << 20;

pub struct Console {
    out: Box<dyn Write + Send>,
    pending: VecDeque<u8>,
}

impl Console {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Console {
            out,
            pending: VecDeque::new(),
        }
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        TYPE_CONSOLE
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn process_queue(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue], idx: usize) -> bool {
        if idx != TX_QUEUE {
            return false; // rx buffers are consumed by process_input
        }
        let q = &mut queues[TX_QUEUE];
        let mut used = false;
        let mut buf = Vec::new();
        while let Ok(Some(chain)) = q.pop(mem) {
            for d in chain.descs.iter().filter(|d| !d.is_write_only()) {
                let start = buf.len();
                buf.resize(start + d.len as usize, 0);
                if mem.read_slice(&mut buf[start..], d.addr).is_err() {
                    buf.truncate(start);
                }
            }
            let _ = q.add_used(mem, chain.head, 0);
            used = true;
        }
        if !buf.is_empty() {
            let _ = self.out.write_all(&buf);
            let _ = self.out.flush();
        }
        used
    }
    fn push_input(&mut self, bytes: &[u8]) {
        // The VMM reads at most `input_room` bytes, so nothing is dropped here.
        self.pending.extend(bytes);
    }
    fn input_room(&self) -> usize {
        MAX_PENDING.saturating_sub(self.pending.len())
    }
    fn process_input(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue]) -> bool {
        let q = &mut queues[RX_QUEUE];
        let mut used = false;
        while !self.pending.is_empty() && q.has_available(mem) {
            let Ok(Some(chain)) = q.pop(mem) else { break };
            let bytes: Vec<u8> = self.pending.iter().copied().collect();
            let n = write_to_chain(mem, &chain.descs, &bytes);
            self.pending.drain(..n);
            let _ = q.add_used(mem, chain.head, n as u32);
            used = true;
        }
        used
    }
    // A driver reset keeps pending host input: the host may write before the guest's driver
    // first initialises the device (which starts with a reset), and a stream must not lose it.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::mmio::tests::{init_device, wr};
    use crate::vmm::devices::virtio::mmio::{MmioTransport, REG_QUEUE_NOTIFY};
    use crate::vmm::Capture;
    use std::sync::Arc;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EventFd;

    #[test]
    fn transmit_and_receive() {
        let mem = crate::vmm::layout::create_guest_memory(32 << 20).unwrap();
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let cap = Capture::default();
        let mut t = MmioTransport::new(
            Box::new(Console::new(Box::new(cap.clone()))),
            mem.clone(),
            irq.clone(),
        );
        let mut dqs = init_device(&mut t, 2, 16);

        // Guest output: two chains on the transmit queue.
        mem.write_slice(b"hello ", GuestAddress(0x30_0000)).unwrap();
        mem.write_slice(b"world\n", GuestAddress(0x30_1000))
            .unwrap();
        dqs[1].post(&mem, &[(0x30_0000, 6, false)]);
        dqs[1].post(&mem, &[(0x30_1000, 6, false)]);
        wr(&mut t, REG_QUEUE_NOTIFY, 1);
        assert_eq!(cap.contents(), b"hello world\n");
        assert_eq!(dqs[1].used_idx(&mem), 2);
        assert_eq!(irq.read().unwrap(), 1);

        // Host input before the guest posted receive buffers is kept...
        assert_eq!(t.input_room(), 1 << 20);
        t.push_input(b"input!");
        assert_eq!(t.input_room(), (1 << 20) - 6);
        assert!(irq.read().is_err());
        // ...and delivered once a 4-byte then an 8-byte buffer arrive.
        dqs[0].post(&mem, &[(0x31_0000, 4, true)]);
        dqs[0].post(&mem, &[(0x31_1000, 8, true)]);
        wr(&mut t, REG_QUEUE_NOTIFY, 0);
        assert_eq!(dqs[0].used_idx(&mem), 2);
        assert_eq!(dqs[0].used_elem(&mem, 0).1, 4);
        assert_eq!(dqs[0].used_elem(&mem, 1).1, 2);
        let mut a = [0u8; 4];
        let mut b = [0u8; 2];
        mem.read_slice(&mut a, GuestAddress(0x31_0000)).unwrap();
        mem.read_slice(&mut b, GuestAddress(0x31_1000)).unwrap();
        assert_eq!((&a, &b), (b"inpu", b"t!"));
        assert_eq!(irq.read().unwrap(), 1);
        // With a buffer already posted, input goes straight in.
        dqs[0].post(&mem, &[(0x31_2000, 8, true)]);
        wr(&mut t, REG_QUEUE_NOTIFY, 0);
        t.push_input(b"x");
        assert_eq!(dqs[0].used_idx(&mem), 3);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x31_2000)).unwrap(), b'x');
    }
}
