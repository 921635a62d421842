//! virtio devices over the virtio-mmio transport (virtio 1.x, "modern" only).

pub mod block;
pub mod console;
pub mod mmio;
pub mod net;
pub mod queue;

use vm_memory::GuestMemoryMmap;

pub use queue::{Descriptor, DescriptorChain, Queue};

/// VIRTIO_F_VERSION_1: the only transport feature we offer (and require).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_CONSOLE: u32 = 3;

/// A device model behind a transport.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Feature bits offered to the driver (VIRTIO_F_VERSION_1 is added by the transport).
    fn features(&self) -> u64;
    /// Read from the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write to the configuration space (ignored by devices with a read-only one).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Handle a notification for queue `idx`. Returns true when used buffers were added.
    fn process_queue(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue], idx: usize) -> bool;
    /// Deliver pending host-side input (console). Returns true when used buffers were added.
    fn process_input(&mut self, _mem: &GuestMemoryMmap, _queues: &mut [Queue]) -> bool {
        false
    }
    /// Take host input (console bytes); delivered by the next `process_input`.
    fn push_input(&mut self, _bytes: &[u8]) {}
    /// How many more input bytes the device can hold (the VMM reads no more than this).
    fn input_room(&self) -> usize {
        0
    }
    /// The driver reset the device.
    fn reset(&mut self) {}
}

/// Copy `bytes` into the chain's write-only buffers, in order; returns how many were copied.
pub fn write_to_chain(mem: &GuestMemoryMmap, descs: &[Descriptor], bytes: &[u8]) -> usize {
    use vm_memory::Bytes;
    let mut done = 0;
    for d in descs.iter().filter(|d| d.is_write_only()) {
        if done == bytes.len() {
            break;
        }
        let n = (d.len as usize).min(bytes.len() - done);
        if mem.write_slice(&bytes[done..done + n], d.addr).is_err() {
            break;
        }
        done += n;
    }
    done
}
