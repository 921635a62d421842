//! The guest's devices and the port-I/O / MMIO dispatch from vCPU exits.
//!
//! Legacy: the 8250 UART at 0x3f8 (vm-superio, IRQ 4), the i8042 controller at 0x60/0x64 whose
//! CPU-reset command (what Linux does with `reboot=k`) stops the VM, and a debug exit port at
//! 0xf4 (as qemu's isa-debug-exit) through which a guest reports a status byte.
//! virtio-mmio: one 4 KiB window per device from 0xd000_0000, IRQ 5 upwards.

pub mod virtio;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vm_superio::serial::NoEvents;
use vm_superio::{I8042Device, Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::layout::VIRTIO_MMIO_SIZE;
use super::ExitReason;
use virtio::mmio::MmioTransport;

pub const SERIAL_PORT_BASE: u16 = 0x3f8;
pub const SERIAL_PORT_END: u16 = 0x3ff;
pub const I8042_DATA_PORT: u16 = 0x60;
pub const I8042_COMMAND_PORT: u16 = 0x64;
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Raises an interrupt line through an irqfd.
pub struct IrqTrigger(pub Arc<EventFd>);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Records that the i8042 was asked to reset the CPU.
#[derive(Clone, Default)]
pub struct ResetFlag(Arc<AtomicBool>);

impl Trigger for ResetFlag {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

pub type SerialDevice = Serial<IrqTrigger, NoEvents, Box<dyn Write + Send>>;

pub struct Devices {
    pub serial: SerialDevice,
    i8042: I8042Device<ResetFlag>,
    reset: ResetFlag,
    /// (base address, transport)
    pub virtio: Vec<(u64, MmioTransport)>,
}

impl Devices {
    pub fn new(serial_irq: Arc<EventFd>, serial_out: Box<dyn Write + Send>) -> Self {
        let reset = ResetFlag::default();
        Devices {
            serial: Serial::new(IrqTrigger(serial_irq), serial_out),
            i8042: I8042Device::new(reset.clone()),
            reset,
            virtio: Vec::new(),
        }
    }

    /// An OUT instruction. Returns an exit reason when the guest asked the VM to stop.
    pub fn pio_write(&mut self, port: u16, data: &[u8]) -> Option<ExitReason> {
        let v = *data.first()?;
        match port {
            SERIAL_PORT_BASE..=SERIAL_PORT_END => {
                let _ = self.serial.write((port - SERIAL_PORT_BASE) as u8, v);
            }
            I8042_DATA_PORT | I8042_COMMAND_PORT => {
                let _ = self.i8042.write((port - I8042_DATA_PORT) as u8, v);
                if self.reset.0.swap(false, Ordering::SeqCst) {
                    return Some(ExitReason::Reset);
                }
            }
            DEBUG_EXIT_PORT => return Some(ExitReason::DebugExit(v)),
            _ => {}
        }
        None
    }

    /// An IN instruction: absent ports float high.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        match port {
            SERIAL_PORT_BASE..=SERIAL_PORT_END if !data.is_empty() => {
                data[0] = self.serial.read((port - SERIAL_PORT_BASE) as u8);
            }
            I8042_DATA_PORT | I8042_COMMAND_PORT => {
                data.fill(self.i8042.read((port - I8042_DATA_PORT) as u8));
            }
            _ => data.fill(0xff),
        }
    }

    fn transport(&mut self, addr: u64) -> Option<(&mut MmioTransport, u64)> {
        self.virtio
            .iter_mut()
            .find(|(base, _)| addr >= *base && addr < base + VIRTIO_MMIO_SIZE)
            .map(|(base, t)| (t, addr - *base))
    }

    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        match self.transport(addr) {
            Some((t, off)) => t.read(off, data),
            None => data.fill(0xff),
        }
    }

    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        if let Some((t, off)) = self.transport(addr) {
            t.write(off, data);
        }
    }

    /// Host input for the serial port; returns how many bytes it took (its FIFO is bounded).
    pub fn serial_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.serial.fifo_capacity().min(bytes.len());
        self.serial.enqueue_raw_bytes(&bytes[..room]).unwrap_or(0)
    }

    /// How many bytes of host input the virtio console can take now.
    pub fn console_room(&self) -> usize {
        self.virtio
            .iter()
            .find(|(_, t)| t.device_type() == virtio::TYPE_CONSOLE)
            .map(|(_, t)| t.input_room())
            .unwrap_or(0)
    }

    /// The net device's tap is readable: deliver frames to the guest's receive buffers.
    /// Whether the device took any (false: no receive buffer posted, or no net device).
    pub fn net_input(&mut self) -> bool {
        match self
            .virtio
            .iter_mut()
            .find(|(_, t)| t.device_type() == virtio::net::TYPE_NET)
        {
            Some((_, t)) => t.input_ready(),
            None => false,
        }
    }

    /// Host input for the virtio console.
    pub fn console_input(&mut self, bytes: &[u8]) {
        if let Some((_, t)) = self
            .virtio
            .iter_mut()
            .find(|(_, t)| t.device_type() == virtio::TYPE_CONSOLE)
        {
            t.push_input(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::Capture;

    #[test]
    fn serial_output_and_exit_ports() {
        let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let cap = Capture::default();
        let mut d = Devices::new(irq.clone(), Box::new(cap.clone()));
        assert_eq!(d.pio_write(0x3f8, b"h"), None);
        assert_eq!(d.pio_write(0x3f8, b"i"), None);
        assert_eq!(cap.contents(), b"hi");
        // Line status register: transmitter empty.
        let mut lsr = [0u8];
        d.pio_read(0x3fd, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
        // Serial input with the data-ready interrupt enabled raises IRQ 4.
        assert_eq!(d.pio_write(0x3f9, &[0x01]), None);
        assert_eq!(d.serial_input(b"k"), 1);
        assert_eq!(irq.read().unwrap(), 1);
        let mut rbr = [0u8];
        d.pio_read(0x3f8, &mut rbr);
        assert_eq!(rbr[0], b'k');
        // Absent ports read as 0xff; the i8042 status reads 0.
        let mut b = [0u8; 2];
        d.pio_read(0x80, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        d.pio_read(0x64, &mut b[..1]);
        assert_eq!(b[0], 0);
        // i8042 CPU reset and the debug exit port end the VM.
        assert_eq!(d.pio_write(0x64, &[0xaa]), None);
        assert_eq!(d.pio_write(0x64, &[0xfe]), Some(ExitReason::Reset));
        assert_eq!(d.pio_write(0xf4, &[3]), Some(ExitReason::DebugExit(3)));
        // Unclaimed MMIO reads float high.
        let mut m = [0u8; 4];
        d.mmio_read(0xd000_0000, &mut m);
        assert_eq!(m, [0xff; 4]);
    }
}
