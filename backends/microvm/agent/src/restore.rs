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
//!
//! The sandbox's rootfs image sits behind the template's placeholder rootfs device (`vdb`) now.
//! Every rootfs image and the placeholder are devices of one size (the ext4 inside keeps its
//! own smaller size), so the kernel's view of the device (its size, no partitions) holds as it
//! is and nothing probes it again. What the kernel's probe read of the placeholder the
//! template's agent dropped before the save ([`drop_cached_blocks`]), and the template reads
//! no block of it after that, so the first mount reads the sandbox's own blocks.
//!
//! `lo` is up before the save (it is the same in every sandbox).
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

/// `BLKFLSBUF`, `_IO(0x12, 97)`.
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// A restored guest's rootfs disk: the template's second virtio disk (its layout, which the
/// host repeats: vda the agent disk, vdb the rootfs image).
pub(crate) const ROOTFS_DEV: &str = "/dev/vdb";

/// Whether this guest is a template (the host saves it once the agent waits for Go).
pub(crate) fn template_mode() -> bool {
    fs::read_to_string("/proc/cmdline")
        .map(|c| c.split_whitespace().any(|a| a == TEMPLATE_ARG))
        .unwrap_or(false)
}

/// Say Template, block until Go (in the template this is where the VM is saved; in each
/// restored copy it returns), then apply Go. Returns the config disk image the host sent, and
/// the rootfs device open with its read-ahead under way ([`prefetch_rootfs`]).
pub(crate) fn wait_for_go(port: &mut fs::File) -> Res<(Vec<u8>, Option<fs::File>)> {
    // No block of the placeholder disks stays cached in the saved memory.
    drop_cached_blocks()?;
    // What every sandbox does the same way is done once, here.
    crate::net::lo_up()?;
    crate::mounts::premount();
    // The agent's whole image (the code it has not run yet, its data, heap and stack) faulted
    // in and kept resident: a restored copy would otherwise take a page fault, and a read of the
    // agent disk for a page not yet cached, on each first touch after Go.
    // SAFETY: a plain syscall.
    if unsafe { libc::mlockall(libc::MCL_CURRENT) } != 0 {
        return Err(format!("mlockall: {}", errno()));
    }
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
    // The sandbox's image is behind vdb from here on (never before Go: the template's is the
    // placeholder's).
    let prefetch = prefetch_rootfs();
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
    Ok((config, prefetch))
}

/// How much of the rootfs device a restored agent asks for before it mounts it.
const PREFETCH_BYTES: usize = 1 << 20;

/// Ask for the rootfs device's first blocks (ext4's superblock, group descriptors, bitmaps and
/// the first inode tables) in one read-ahead, before the mount reads them one block at a
/// time: the host serves it on qemu's I/O thread while the vCPU goes on. The returned file
/// keeps the device open until the mount has it open too (the last close drops the device's
/// cached pages).
fn prefetch_rootfs() -> Option<fs::File> {
    let f = fs::File::open(ROOTFS_DEV).ok()?;
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on our fd; a failure only means no read-ahead.
    unsafe { libc::readahead(f.as_raw_fd(), 0, PREFETCH_BYTES) };
    Some(f)
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
        tv_sec: (realtime_ns / 1_000_000_000) as _, // time_t: i64 on x86_64 (libc deprecates naming it for musl)
        tv_nsec: (realtime_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(format!("clock_settime: {}", errno()));
    }
    Ok(())
}

/// Drop the page cache of every virtio disk but our own (vda): the blocks the kernel's probe
/// read of the template's placeholders. BLKFLSBUF writes back (nothing: the disks are
/// read-only) and invalidates the device's cached pages; the last close would as well.
fn drop_cached_blocks() -> Res<()> {
    let entries = fs::read_dir("/sys/block").map_err(|e| format!("/sys/block: {e}"))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("vd") || name == "vda" {
            continue;
        }
        let dev = format!("/dev/{name}");
        let f = fs::File::open(&dev).map_err(|e| format!("open {dev}: {e}"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: an ioctl without argument on our fd.
        if unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF as _) } != 0 {
            return Err(format!("BLKFLSBUF {dev}: {}", errno()));
        }
    }
    Ok(())
}
