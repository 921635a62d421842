//! The agent's side of a snapshot boot (docs/backends/microvm.md, "Snapshot boot").
//!
//! A template guest boots with [`TEMPLATE_ARG`] on its command line. Its agent mounts nothing
//! of any sandbox: it says [`Frame::Template`] on the agent port and blocks reading it. The host
//! saves the VM right there. Every sandbox restored from that template resumes in this read and
//! gets [`Frame::Go`] first; before anything else the agent then
//! 1. mixes the host's fresh entropy into the kernel's pool and forces a reseed of the kernel's
//!    CRNG (every copy of the template starts from the same random state otherwise; nothing in
//!    the template read `/proc/sys/kernel/random/boot_id`, which the kernel makes at first read,
//!    so each sandbox's boot id comes from its own reseeded state);
//! 2. sets the wall clock to the host's (the template's clock stopped when it was saved);
//! 3. probes the virtio disks but its own: the template's agent unbound the driver from its
//!    placeholder rootfs disk before the save (the kernel forgot its size and cached blocks),
//!    and the sandbox's rootfs image sits behind the same device now; binding the driver reads
//!    it afresh.
//!
//! A restored guest has no config disk: the host sends the config disk's image after Go, in
//! [`Frame::Config`] pieces (one virtio disk less to probe and read on this path).

use crate::boottime::{boottime_ns, mark, restart_steps, AGENT_START_NS};
use crate::sys::{errno, Res};
use hako_agent::proto::{Frame, FrameReader, TEMPLATE_ARG};
use std::fs;
use std::io::{Read, Write};

/// `RNDADDENTROPY`, `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`, `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

const VIRTIO_BLK: &str = "/sys/bus/virtio/drivers/virtio_blk";

/// Whether this guest is a template (the host saves it once the agent waits for Go).
pub(crate) fn template_mode() -> bool {
    fs::read_to_string("/proc/cmdline")
        .map(|c| c.split_whitespace().any(|a| a == TEMPLATE_ARG))
        .unwrap_or(false)
}

/// Say Template, block until Go (in the template this is where the VM is saved; in each
/// restored copy it returns), then apply Go. Returns the config disk image the host sent.
pub(crate) fn wait_for_go(port: &mut fs::File) -> Res<Vec<u8>> {
    // The placeholder disks leave the kernel before the save (so the restored copy only probes
    // the sandbox's disks, and no block of a placeholder stays cached).
    let disks = other_disks()?;
    driver("unbind", &disks)?;
    port.write_all(&Frame::Template.encode())
        .map_err(|e| format!("agent port: {e}"))?;
    let mut reader = FrameReader::new();
    let mut buf = [0u8; 4096];
    let mut read = |reader: &mut FrameReader| -> Res<()> {
        let n = port
            .read(&mut buf)
            .map_err(|e| format!("agent port: {e}"))?;
        if n == 0 {
            return Err("agent port closed before Go and the config".into());
        }
        reader.push(&buf[..n]);
        Ok(())
    };
    let (realtime_ns, config_len, entropy) = loop {
        if let Some(f) = reader.next_frame()? {
            match f {
                Frame::Go {
                    realtime_ns,
                    config_len,
                    entropy,
                } => break (realtime_ns, config_len, entropy),
                other => return Err(format!("expected Go from the host, got {other:?}")),
            }
        }
        read(&mut reader)?;
    };
    AGENT_START_NS.store(boottime_ns(), std::sync::atomic::Ordering::Relaxed);
    restart_steps();
    if config_len > MAX_CONFIG {
        return Err(format!(
            "Go announces a config of {config_len} bytes, over {MAX_CONFIG}"
        ));
    }
    // Entropy and clock first: nothing below may draw on the template's random state.
    reseed(&entropy)?;
    mark("reseed");
    set_clock(realtime_ns)?;
    mark("clock");
    driver("bind", &disks)?;
    mark("bind-disks");
    let mut config = Vec::with_capacity(config_len as usize);
    while (config.len() as u64) < config_len {
        match reader.next_frame()? {
            Some(Frame::Config(d)) if (config.len() + d.len()) as u64 <= config_len => {
                config.extend_from_slice(&d)
            }
            Some(Frame::Config(_)) => return Err("the config is longer than Go said".into()),
            Some(other) => return Err(format!("expected the config after Go, got {other:?}")),
            None => read(&mut reader)?,
        }
    }
    if reader.next_frame()?.is_some() {
        return Err("the host sent frames after the config before Ready".into());
    }
    mark("config");
    Ok(config)
}

/// The largest config image a host may announce (the cold path's config disk has no limit but
/// the host's; this one bounds the agent's allocation).
const MAX_CONFIG: u64 = 64 << 20;

fn reseed(entropy: &[u8]) -> Res<()> {
    if entropy.len() < 32 {
        return Err(format!(
            "Go carries {} bytes of entropy, not 32 or more",
            entropy.len()
        ));
    }
    let f = fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    // struct rand_pool_info { int entropy_count (bits); int buf_size (bytes); u32 buf[]; }
    let mut info = Vec::with_capacity(8 + entropy.len());
    info.extend_from_slice(&((entropy.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(entropy.len() as i32).to_ne_bytes());
    info.extend_from_slice(entropy);
    use std::os::fd::AsRawFd;
    // SAFETY: the ioctls read a rand_pool_info of the length it states / take no argument.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), RNDADDENTROPY as _, info.as_ptr()) != 0 {
            return Err(format!("RNDADDENTROPY: {}", errno()));
        }
        if libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG as _) != 0 {
            return Err(format!("RNDRESEEDCRNG: {}", errno()));
        }
    }
    Ok(())
}

fn set_clock(realtime_ns: u64) -> Res<()> {
    let ts = libc::timespec {
        tv_sec: (realtime_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (realtime_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(format!("clock_settime: {}", errno()));
    }
    Ok(())
}

/// The virtio-blk devices but the one holding our own root (vda).
fn other_disks() -> Res<Vec<String>> {
    let own = fs::read_link("/sys/block/vda/device")
        .map_err(|e| format!("/sys/block/vda/device: {e}"))?;
    let own = own
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut devs: Vec<String> = fs::read_dir(VIRTIO_BLK)
        .map_err(|e| format!("{VIRTIO_BLK}: {e}"))?
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| *n != own)
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with("virtio"))
        .collect();
    devs.sort();
    Ok(devs)
}

/// Write each device's name to the driver's `bind` or `unbind` file.
fn driver(what: &str, devs: &[String]) -> Res<()> {
    for d in devs {
        fs::write(format!("{VIRTIO_BLK}/{what}"), d)
            .map_err(|e| format!("virtio_blk {what} {d}: {e}"))?;
    }
    Ok(())
}
