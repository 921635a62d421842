//! virtio-net (one queue pair, no control queue) backed by a tap: receiveq 0 carries frames
//! from the tap to the guest, transmitq 1 frames from the guest to the tap.
//!
//! The tap is opened with `IFF_VNET_HDR` and its header size set to the 12-byte
//! `virtio_net_hdr` of virtio 1.x, so each frame crosses with its header as it is, in both
//! directions: the offloads that cost nothing here are the ones the tap itself understands from
//! that header. Offered: the MAC and MTU in the config space, checksum offload both ways
//! (`CSUM`, `GUEST_CSUM`: the tap finishes or accepts partial checksums) and TSO from the guest
//! (`HOST_TSO4/6`: the tap segments). Not offered: TSO towards the guest (it would need 64 KiB
//! receive buffers or mergeable buffers), the control queue, multiqueue.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, Result};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::{write_to_chain, Queue, VirtioDevice};

pub const TYPE_NET: u32 = 1;
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
const QUEUE_SIZE: u16 = 256;

pub const F_CSUM: u64 = 1 << 0;
pub const F_GUEST_CSUM: u64 = 1 << 1;
pub const F_MTU: u64 = 1 << 3;
pub const F_MAC: u64 = 1 << 5;
pub const F_HOST_TSO4: u64 = 1 << 11;
pub const F_HOST_TSO6: u64 = 1 << 12;

/// `struct virtio_net_hdr` with `num_buffers` (virtio 1.x always has it).
pub const HDR_LEN: usize = 12;
/// The largest frame the tap hands over: a 64 KiB GSO frame plus its header.
const MAX_FRAME: usize = HDR_LEN + 65550;

// linux/if_tun.h
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUN_F_CSUM: libc::c_ulong = 0x01;

pub struct Net {
    tap: File,
    mac: [u8; 6],
    mtu: u16,
    /// A frame read from the tap while the guest had no receive buffer posted.
    pending: Option<Vec<u8>>,
    buf: Vec<u8>,
    /// Frames dropped: longer than the buffer the guest posted, or refused by the tap.
    pub dropped: u64,
}

impl Net {
    /// `tap` must have been made with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`.
    pub fn new(tap: OwnedFd, mac: [u8; 6], mtu: u16) -> Result<Net> {
        let fd = tap.as_raw_fd();
        let hdr = HDR_LEN as libc::c_int;
        // SAFETY: ioctls and fcntl on our own fd with the argument types the kernel expects.
        unsafe {
            if libc::ioctl(fd, TUNSETVNETHDRSZ, &hdr) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("the tap's virtio-net header size (is it IFF_VNET_HDR?)");
            }
            // Frames towards the guest may carry partial checksums (GUEST_CSUM).
            if libc::ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) != 0 {
                return Err(std::io::Error::last_os_error()).context("the tap's offloads");
            }
            let fl = libc::fcntl(fd, libc::F_GETFL);
            if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
                return Err(std::io::Error::last_os_error()).context("making the tap nonblocking");
            }
        }
        Ok(Net {
            tap: File::from(tap),
            mac,
            mtu,
            pending: None,
            buf: vec![0; MAX_FRAME],
            dropped: 0,
        })
    }

    /// The tap's fd, for the VMM's event loop (readable: call the transport's `input_ready`).
    pub fn tap_fd(&self) -> i32 {
        self.tap.as_raw_fd()
    }

    /// The next frame from the tap (header included), or None when it has none now.
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        if let Some(f) = self.pending.take() {
            return Some(f);
        }
        loop {
            match self.tap.read(&mut self.buf) {
                Ok(0) => return None,
                Ok(n) => {
                    let mut f = self.buf[..n].to_vec();
                    if n >= HDR_LEN {
                        // num_buffers: one buffer per frame (no mergeable buffers).
                        f[10..12].copy_from_slice(&1u16.to_le_bytes());
                    }
                    return Some(f);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return None, // WouldBlock, or the tap is gone
            }
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        F_CSUM | F_GUEST_CSUM | F_MTU | F_MAC | F_HOST_TSO4 | F_HOST_TSO6
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_net_config: mac[6], status, max_virtqueue_pairs, mtu.
        let mut cfg = [0u8; 12];
        cfg[..6].copy_from_slice(&self.mac);
        cfg[8..10].copy_from_slice(&1u16.to_le_bytes());
        cfg[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        data.fill(0);
        let off = offset as usize;
        if off < cfg.len() {
            let n = data.len().min(cfg.len() - off);
            data[..n].copy_from_slice(&cfg[off..off + n]);
        }
    }
    fn process_queue(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue], idx: usize) -> bool {
        if idx != TX_QUEUE {
            return false; // receive buffers are filled by process_input
        }
        let q = &mut queues[TX_QUEUE];
        let mut used = false;
        while let Ok(Some(chain)) = q.pop(mem) {
            let mut frame = Vec::new();
            let mut ok = true;
            for d in chain.descs.iter().filter(|d| !d.is_write_only()) {
                let start = frame.len();
                if start + d.len as usize > MAX_FRAME {
                    ok = false;
                    break;
                }
                frame.resize(start + d.len as usize, 0);
                if mem.read_slice(&mut frame[start..], d.addr).is_err() {
                    ok = false;
                    break;
                }
            }
            // One write per frame (the tap takes whole frames); a full tap drops it, as a wire
            // would.
            if !ok || frame.len() < HDR_LEN || self.tap.write(&frame).is_err() {
                self.dropped += 1;
            }
            let _ = q.add_used(mem, chain.head, 0);
            used = true;
        }
        used
    }
    fn process_input(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue]) -> bool {
        let q = &mut queues[RX_QUEUE];
        let mut used = false;
        while q.has_available(mem) {
            let Some(frame) = self.next_frame() else {
                break;
            };
            let Ok(Some(chain)) = q.pop(mem) else {
                self.pending = Some(frame);
                break;
            };
            let room: usize = chain
                .descs
                .iter()
                .filter(|d| d.is_write_only())
                .map(|d| d.len as usize)
                .sum();
            let n = if room >= frame.len() {
                write_to_chain(mem, &chain.descs, &frame)
            } else {
                self.dropped += 1;
                0
            };
            let _ = q.add_used(mem, chain.head, n as u32);
            used = true;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    //! The device against a real tap, in a network namespace of the test's own (made with
    //! unshare on the test's thread): frames the "guest" puts on the transmit queue reach a UDP
    //! socket in that namespace, and a datagram sent there to the guest's address arrives in a
    //! receive buffer. Needs root (skips otherwise).
    use super::*;
    use crate::vmm::devices::virtio::mmio::tests::{init_device, rd, wr};
    use crate::vmm::devices::virtio::mmio::{MmioTransport, REG_QUEUE_NOTIFY};
    use std::net::UdpSocket;
    use std::process::Command;
    use std::sync::Arc;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EventFd;

    const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];

    fn ip(args: &[&str]) -> String {
        let o = Command::new("ip").args(args).output().expect("ip");
        assert!(
            o.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn tap(name: &str) -> OwnedFd {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap();
        let mut req = [0u8; 40];
        req[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as u16;
        req[16..18].copy_from_slice(&flags.to_ne_bytes());
        assert_eq!(
            unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) },
            0
        );
        f.into()
    }

    fn csum(b: &[u8]) -> u16 {
        let mut s: u32 = b
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// An Ethernet + IPv4 + UDP frame (UDP checksum 0: optional over IPv4).
    fn udp_frame(
        dst_mac: [u8; 6],
        src: [u8; 4],
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        let mut iph = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        iph[2..4].copy_from_slice(&total.to_be_bytes());
        iph.extend_from_slice(&src);
        iph.extend_from_slice(&dst);
        let c = csum(&iph);
        iph[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&iph);
        f.extend_from_slice(&4000u16.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn in_new_netns(f: impl FnOnce() + Send) {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: unshare of this thread's network namespace only.
                assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
                f()
            })
            .join()
            .unwrap()
        });
    }

    #[test]
    fn frames_cross_between_the_queues_and_a_tap() {
        if unsafe { libc::geteuid() } != 0 || Command::new("ip").arg("-V").output().is_err() {
            eprintln!("SKIPPED: needs root and iproute2 (a tap in a namespace of the test's own)");
            return;
        }
        in_new_netns(|| {
            let t = tap("t0");
            ip(&["link", "set", "t0", "up"]);
            ip(&["addr", "add", "10.9.0.1/24", "dev", "t0"]);
            ip(&[
                "neigh",
                "add",
                "10.9.0.2",
                "lladdr",
                "02:00:00:00:00:22",
                "dev",
                "t0",
            ]);
            let link = ip(&["-o", "link", "show", "t0"]);
            let mac_s = link
                .split("link/ether ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let mut tap_mac = [0u8; 6];
            for (i, p) in mac_s.split(':').enumerate() {
                tap_mac[i] = u8::from_str_radix(p, 16).unwrap();
            }

            let mem = crate::vmm::layout::create_guest_memory(32 << 20).unwrap();
            let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
            let dev = Net::new(t, GUEST_MAC, 1400).unwrap();
            let mut tr = MmioTransport::new(Box::new(dev), mem.clone(), irq.clone());
            // The config space: MAC, status, one pair, MTU.
            assert_eq!(tr.device_type(), TYPE_NET);
            let w0 = rd(&mut tr, 0x100);
            assert_eq!(w0.to_le_bytes(), [2, 0, 0, 0]);
            assert_eq!(rd(&mut tr, 0x10a) & 0xffff, 1400);
            let mut dqs = init_device(&mut tr, 2, 16);

            // Transmit: header + frame in two descriptors, to a UDP socket on the tap's side.
            let sock = UdpSocket::bind("10.9.0.1:7000").unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let frame = udp_frame(
                tap_mac,
                [10, 9, 0, 2],
                [10, 9, 0, 1],
                7000,
                b"from the guest",
            );
            mem.write_slice(&[0u8; HDR_LEN], GuestAddress(0x30_0000))
                .unwrap();
            mem.write_slice(&frame, GuestAddress(0x30_1000)).unwrap();
            dqs[TX_QUEUE].post(
                &mem,
                &[
                    (0x30_0000, HDR_LEN as u32, false),
                    (0x30_1000, frame.len() as u32, false),
                ],
            );
            wr(&mut tr, REG_QUEUE_NOTIFY, TX_QUEUE as u32);
            assert_eq!(dqs[TX_QUEUE].used_idx(&mem), 1);
            assert_eq!(irq.read().unwrap(), 1);
            let mut got = [0u8; 64];
            let (n, from) = sock.recv_from(&mut got).unwrap();
            assert_eq!(&got[..n], b"from the guest");
            assert_eq!(from.to_string(), "10.9.0.2:4000");

            // Receive: a datagram to the guest's address lands in a posted buffer, header first
            // (num_buffers 1), then the Ethernet frame to the guest's MAC. Other traffic the
            // namespace sends on its own (IPv6 neighbour discovery) may come first; skip it.
            sock.send_to(b"to the guest", "10.9.0.2:5000").unwrap();
            let (mut posted, mut seen, mut found) = (0u16, 0u16, false);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !found && std::time::Instant::now() < deadline {
                if posted == seen {
                    dqs[RX_QUEUE].post(
                        &mem,
                        &[(0x40_0000 + 0x1000 * u64::from(posted), 2048, true)],
                    );
                    posted += 1;
                    wr(&mut tr, REG_QUEUE_NOTIFY, RX_QUEUE as u32);
                }
                tr.input_ready();
                while !found && seen < dqs[RX_QUEUE].used_idx(&mem) {
                    let (id, len) = dqs[RX_QUEUE].used_elem(&mem, seen);
                    seen += 1;
                    let mut b = vec![0u8; len as usize];
                    mem.read_slice(&mut b, GuestAddress(0x40_0000 + 0x1000 * u64::from(id)))
                        .unwrap();
                    assert_eq!(u16::from_le_bytes([b[10], b[11]]), 1, "num_buffers");
                    let eth = &b[HDR_LEN..];
                    if eth[12..14] == [0x08, 0x00] && eth.ends_with(b"to the guest") {
                        assert_eq!(eth[..6], GUEST_MAC);
                        assert_eq!(eth[6..12], tap_mac);
                        found = true;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(found, "the datagram never reached a receive buffer");
        });
    }
}
