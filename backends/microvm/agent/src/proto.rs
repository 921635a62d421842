//! Wire formats shared by the host backend and the guest agent.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// First bytes of the config disk (`2`: the config is postcard, not JSON).
pub const CONFIG_MAGIC: &[u8; 8] = b"HAKOCFG2";
/// Block size the config disk is padded to.
pub const SECTOR: usize = 512;
/// The ext4 volume label of the rootfs image; the agent finds its disk by it.
pub const ROOTFS_LABEL: &str = "hako-rootfs";
/// The ext4 volume label of the agent disk (the guest's `/`, holding `/init`).
pub const AGENT_LABEL: &str = "hako-agent";
/// Largest frame payload either side sends.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Everything the agent needs to run the workload: the OCI process and the parts of `linux`
/// and `mounts` that make sense inside a guest, already translated by the host.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct GuestConfig {
    /// The workload's process.
    pub process: ProcessSpec,
    pub hostname: Option<String>,
    /// `root.readonly`: the workload's `/` is remounted read-only after the mounts are made.
    pub readonly_root: bool,
    /// Size of the tmpfs that holds the overlay's upper layer and carried-in files.
    pub overlay_size_mib: u64,
    pub seccomp: Option<Seccomp>,
    /// `linux.resources.pids.limit`, applied with a guest cgroup.
    pub pids_limit: Option<i64>,
    pub mounts: Vec<Mount>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctl: BTreeMap<String, String>,
    /// The guest's network, when the spec gave the sandbox a network namespace to join: the
    /// host moved the engine's veth addresses onto the guest's virtio-net interface. `None`: no
    /// network device (only `lo`).
    pub net: Option<NetConfig>,
}

/// One network interface for the agent to configure (the guest's first virtio-net device, whose
/// MAC the host set to the veth's), with the veth's addresses and routes.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct NetConfig {
    /// The veth's MAC, `aa:bb:cc:dd:ee:ff`: the agent picks the interface that has it.
    pub mac: String,
    pub mtu: u32,
    /// Addresses as (`address`, prefix length), IPv4 or IPv6.
    pub addrs: Vec<(String, u8)>,
    pub routes: Vec<NetRoute>,
}

/// A route of the veth: `dst` None is the default route.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct NetRoute {
    pub dst: Option<(String, u8)>,
    pub gateway: Option<String>,
}

/// The process part of [`GuestConfig`]: what `hako exec` sends for one more process in the
/// running guest. It runs in the workload's root and mount namespace, under the sandbox's
/// seccomp programs and pids cgroup (those stay as the config disk gave them).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
    pub terminal: bool,
    /// Initial terminal size (rows, cols) when `terminal`.
    pub console_size: Option<(u16, u16)>,
    pub no_new_privileges: bool,
    pub capabilities: Option<Capabilities>,
    pub oom_score_adj: Option<i32>,
}

impl GuestConfig {
    /// A config whose process fields are `p`'s and whose sandbox fields are this one's.
    pub fn with_process(&self, p: ProcessSpec) -> GuestConfig {
        GuestConfig {
            process: p,
            ..self.clone()
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Rlimit {
    /// The Linux RLIMIT_* number.
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Capability sets as capability numbers.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Capabilities {
    pub bounding: Vec<u32>,
    pub effective: Vec<u32>,
    pub inheritable: Vec<u32>,
    pub permitted: Vec<u32>,
    pub ambient: Vec<u32>,
}

/// Classic BPF programs (arrays of `struct sock_filter`, 8 bytes each, native endian) compiled on
/// the host from `linux.seccomp`, installed in order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Seccomp {
    pub programs: Vec<Blob>,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2).
    pub flags: u64,
}

/// A byte range in the config disk's blob area.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Blob {
    pub offset: u64,
    pub len: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Mount {
    /// Absolute path inside the workload's root.
    pub destination: String,
    pub kind: MountKind,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum MountKind {
    /// A file system the guest kernel makes (proc, sysfs, tmpfs, devpts, mqueue, cgroup2).
    Kernel {
        fstype: String,
        source: String,
        flags: u64,
        data: String,
    },
    /// A host file or directory copied in when the sandbox was created and bind-mounted at the
    /// destination (read-only when `readonly`). Writes stay in the guest.
    Carried {
        entries: Vec<CarriedEntry>,
        readonly: bool,
        flags: u64,
    },
}

/// One entry of a carried-in tree; `path` is relative to the mount's source ("" is the source
/// itself, which is a file or a directory).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CarriedEntry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum EntryKind {
    File { data: Blob },
    Dir,
    Symlink { target: String },
}

/// Builds the config disk: the magic, two lengths, the config, then the blobs, padded to a whole
/// number of sectors.
///
/// The config is encoded with postcard, not JSON: a restored guest runs every code path for the
/// first time (TCG translates it again after a restore), and decoding postcard runs far less
/// code than serde_json does (no text scanning, number parsing or field-name matching).
#[derive(Default)]
pub struct ConfigBuilder {
    blobs: Vec<u8>,
}

impl ConfigBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes to the blob area and return where they are.
    pub fn add_blob(&mut self, data: &[u8]) -> Blob {
        let offset = self.blobs.len() as u64;
        self.blobs.extend_from_slice(data);
        Blob {
            offset,
            len: data.len() as u64,
        }
    }

    pub fn blob_bytes(&self) -> usize {
        self.blobs.len()
    }

    pub fn finish(self, config: &GuestConfig) -> Vec<u8> {
        let enc = postcard::to_allocvec(config).expect("GuestConfig serializes");
        let mut out = Vec::with_capacity(24 + enc.len() + self.blobs.len() + SECTOR);
        out.extend_from_slice(CONFIG_MAGIC);
        out.extend_from_slice(&(enc.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.blobs.len() as u64).to_le_bytes());
        out.extend_from_slice(&enc);
        out.extend_from_slice(&self.blobs);
        let pad = (SECTOR - out.len() % SECTOR) % SECTOR;
        out.resize(out.len() + pad, 0);
        out
    }
}

/// The decoded config disk.
pub struct ConfigDisk {
    pub config: GuestConfig,
    blobs: Vec<u8>,
}

impl ConfigDisk {
    /// Parse the bytes of a config disk (trailing padding is ignored).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 24 || &bytes[..8] != CONFIG_MAGIC {
            return Err("not a hako config disk (bad magic)".into());
        }
        let cfg_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let blob_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
        let end = 24usize
            .checked_add(cfg_len)
            .and_then(|v| v.checked_add(blob_len))
            .filter(|&e| e <= bytes.len())
            .ok_or("config disk is truncated")?;
        let enc = &bytes[24..24 + cfg_len];
        let (config, rest) = postcard::take_from_bytes::<GuestConfig>(enc)
            .map_err(|e| format!("config disk: the config does not decode: {e}"))?;
        if !rest.is_empty() {
            return Err("config disk: bytes after the config".into());
        }
        Ok(Self {
            config,
            blobs: bytes[24 + cfg_len..end].to_vec(),
        })
    }

    pub fn blob(&self, b: Blob) -> Result<&[u8], String> {
        let start = b.offset as usize;
        let end = start
            .checked_add(b.len as usize)
            .filter(|&e| e <= self.blobs.len())
            .ok_or("blob out of range")?;
        Ok(&self.blobs[start..end])
    }
}

/// On the kernel command line of a template guest: the agent waits for [`Frame::Go`] before
/// it reads its config and rootfs disks.
pub const TEMPLATE_ARG: &str = "hako.template=1";

// Frame kinds, guest to host.
pub const G_READY: u8 = 0x01;
pub const G_STDOUT: u8 = 0x02;
pub const G_STDERR: u8 = 0x03;
pub const G_EXIT: u8 = 0x04;
pub const G_ERROR: u8 = 0x05;
/// Kinds 0x06-0x0d are reserved for `exec`.
pub const G_BOOT_TIMES: u8 = 0x0e;
pub const G_TEMPLATE: u8 = 0x0f;
pub const G_STEPS: u8 = 0x11;
// Frame kinds, host to guest.
pub const H_START: u8 = 0x81;
pub const H_STDIN: u8 = 0x82;
pub const H_STDIN_EOF: u8 = 0x83;
pub const H_SIGNAL: u8 = 0x84;
pub const H_WINSIZE: u8 = 0x85;
pub const H_SIGNAL_ALL: u8 = 0x86;
pub const H_EXEC: u8 = 0x87;
pub const H_GO: u8 = 0x88;
pub const H_CONFIG: u8 = 0x89;
// Either direction: a frame about one exec'd process (see [`Frame::Tagged`]).
pub const TAGGED: u8 = 0x10;

/// How the workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

/// One message on the agent port: `kind: u8`, `len: u32 LE`, `len` bytes of payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The agent has booted, set the workload up, and waits for [`Frame::Start`].
    Ready,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Always the last frame the agent sends after a workload ran.
    Exit(ExitStatus),
    /// The agent could not set up or run the workload; the message says why.
    Error(String),
    /// Sent right before [`Frame::Ready`]: the guest's `CLOCK_BOOTTIME` (ns) when the agent's
    /// `main()` began and just before it sent Ready. That clock starts when the guest kernel
    /// initializes timekeeping, so `agent_start_ns` is the kernel's boot time minus its first
    /// instructions (decompression-free PVH entry, early setup before timekeeping). Under TCG the
    /// guest clock runs in the emulator's virtual time.
    BootTimes {
        agent_start_ns: u64,
        ready_ns: u64,
    },
    /// Sent right before [`Frame::BootTimes`]: the guest's `CLOCK_BOOTTIME` (ns) at the end of
    /// each step of the agent's set-up, in order, each with its name (for the host's timings; a
    /// step's cost is its time minus the one before, the first's minus `agent_start_ns`).
    /// Payload: per step a `u8` name length, the name, a `u64` LE time.
    Steps(Vec<(String, u64)>),
    /// A template guest (kernel command line [`TEMPLATE_ARG`]): the agent is up, has read no
    /// disk but its own, and blocks for [`Frame::Go`]. The host saves the VM at this point.
    Template,
    /// The first frame a restored template guest gets: the host's wall clock (ns since the
    /// epoch) and fresh entropy, applied before the agent reads its disks or anything reads the
    /// kernel's random state, and the length of the sandbox's config disk image, which follows
    /// in [`Frame::Config`] frames (a restored guest has no config disk).
    Go {
        realtime_ns: u64,
        config_len: u64,
        entropy: Vec<u8>,
    },
    /// A piece of the config disk image, after [`Frame::Go`].
    Config(Vec<u8>),
    Start,
    Stdin(Vec<u8>),
    StdinEof,
    Signal(i32),
    /// `kill --all`: the signal goes to every process of the guest but the agent.
    SignalAll(i32),
    /// Terminal size: rows, cols.
    Winsize(u16, u16),
    /// `hako exec`: start one more process, a JSON [`ProcessSpec`]. From `hako exec` to the
    /// sandbox's host process it travels bare; from the host process to the guest inside
    /// [`Frame::Tagged`] with the id the host process gave that exec.
    Exec(String),
    /// A frame about exec `id`, in either direction. Host to guest: `Exec`, `Stdin`, `StdinEof`,
    /// `Signal`, `Winsize`. Guest to host: `Ready` (it runs), `Stdout`, `Stderr`, `Error` (it
    /// could not start; nothing follows), `Exit` (always last once it ran). Never nested.
    Tagged(u32, Box<Frame>),
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, Vec<u8>) = match self {
            Frame::Ready => (G_READY, vec![]),
            Frame::Stdout(d) => (G_STDOUT, d.clone()),
            Frame::Stderr(d) => (G_STDERR, d.clone()),
            Frame::Exit(ExitStatus::Exited(c)) => (G_EXIT, [&[0u8][..], &c.to_le_bytes()].concat()),
            Frame::Exit(ExitStatus::Signaled(s)) => {
                (G_EXIT, [&[1u8][..], &s.to_le_bytes()].concat())
            }
            Frame::Error(m) => (G_ERROR, m.as_bytes().to_vec()),
            Frame::BootTimes {
                agent_start_ns,
                ready_ns,
            } => (
                G_BOOT_TIMES,
                [agent_start_ns.to_le_bytes(), ready_ns.to_le_bytes()].concat(),
            ),
            Frame::Steps(steps) => {
                let mut p = vec![];
                for (name, ns) in steps {
                    let name = &name.as_bytes()[..name.len().min(255)];
                    p.push(name.len() as u8);
                    p.extend_from_slice(name);
                    p.extend_from_slice(&ns.to_le_bytes());
                }
                (G_STEPS, p)
            }
            Frame::Template => (G_TEMPLATE, vec![]),
            Frame::Go {
                realtime_ns,
                config_len,
                entropy,
            } => (
                H_GO,
                [
                    &realtime_ns.to_le_bytes()[..],
                    &config_len.to_le_bytes()[..],
                    entropy,
                ]
                .concat(),
            ),
            Frame::Config(d) => (H_CONFIG, d.clone()),
            Frame::Start => (H_START, vec![]),
            Frame::Stdin(d) => (H_STDIN, d.clone()),
            Frame::StdinEof => (H_STDIN_EOF, vec![]),
            Frame::Signal(s) => (H_SIGNAL, s.to_le_bytes().to_vec()),
            Frame::SignalAll(s) => (H_SIGNAL_ALL, s.to_le_bytes().to_vec()),
            Frame::Winsize(r, c) => (H_WINSIZE, [r.to_le_bytes(), c.to_le_bytes()].concat()),
            Frame::Exec(json) => (H_EXEC, json.as_bytes().to_vec()),
            Frame::Tagged(id, inner) => (TAGGED, [&id.to_le_bytes()[..], &inner.encode()].concat()),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    fn decode(kind: u8, p: &[u8]) -> Result<Frame, String> {
        let int = |p: &[u8]| -> Result<i32, String> {
            p.try_into()
                .map(i32::from_le_bytes)
                .map_err(|_| format!("frame {kind:#x}: bad payload length {}", p.len()))
        };
        Ok(match kind {
            G_READY => Frame::Ready,
            G_STDOUT => Frame::Stdout(p.to_vec()),
            G_STDERR => Frame::Stderr(p.to_vec()),
            G_EXIT => match p.first() {
                Some(0) => Frame::Exit(ExitStatus::Exited(int(&p[1..])?)),
                Some(1) => Frame::Exit(ExitStatus::Signaled(int(&p[1..])?)),
                _ => return Err("exit frame: bad payload".into()),
            },
            G_ERROR => Frame::Error(String::from_utf8_lossy(p).into_owned()),
            G_BOOT_TIMES if p.len() == 16 => Frame::BootTimes {
                agent_start_ns: u64::from_le_bytes(p[..8].try_into().unwrap()),
                ready_ns: u64::from_le_bytes(p[8..].try_into().unwrap()),
            },
            G_STEPS => Frame::Steps(decode_steps(p)?),
            G_TEMPLATE => Frame::Template,
            H_GO if p.len() >= 16 => Frame::Go {
                realtime_ns: u64::from_le_bytes(p[..8].try_into().unwrap()),
                config_len: u64::from_le_bytes(p[8..16].try_into().unwrap()),
                entropy: p[16..].to_vec(),
            },
            H_CONFIG => Frame::Config(p.to_vec()),
            H_START => Frame::Start,
            H_STDIN => Frame::Stdin(p.to_vec()),
            H_STDIN_EOF => Frame::StdinEof,
            H_SIGNAL => Frame::Signal(int(p)?),
            H_SIGNAL_ALL => Frame::SignalAll(int(p)?),
            H_WINSIZE if p.len() == 4 => Frame::Winsize(
                u16::from_le_bytes([p[0], p[1]]),
                u16::from_le_bytes([p[2], p[3]]),
            ),
            H_EXEC => Frame::Exec(String::from_utf8_lossy(p).into_owned()),
            TAGGED => {
                if p.len() < 9 {
                    return Err(format!("tagged frame: bad payload length {}", p.len()));
                }
                let id = u32::from_le_bytes(p[..4].try_into().unwrap());
                let (ik, ilen) = (
                    p[4],
                    u32::from_le_bytes(p[5..9].try_into().unwrap()) as usize,
                );
                if ik == TAGGED || ilen != p.len() - 9 {
                    return Err("tagged frame: bad inner frame".into());
                }
                Frame::Tagged(id, Box::new(Frame::decode(ik, &p[9..])?))
            }
            _ => return Err(format!("unknown frame kind {kind:#x} (len {})", p.len())),
        })
    }
}

/// The payload of [`Frame::Steps`].
fn decode_steps(mut p: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let mut steps = vec![];
    while let Some((&n, rest)) = p.split_first() {
        let n = n as usize;
        if rest.len() < n + 8 {
            return Err("steps frame: truncated step".into());
        }
        let name = String::from_utf8_lossy(&rest[..n]).into_owned();
        let ns = u64::from_le_bytes(rest[n..n + 8].try_into().unwrap());
        steps.push((name, ns));
        p = &rest[n + 8..];
    }
    Ok(steps)
}

/// Incremental frame parser: feed it bytes as they come, take whole frames out.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed, `Err` when the stream is
    /// corrupt (it cannot be resynchronized; the caller gives up on the channel).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[1..5].try_into().unwrap()) as usize;
        if len > MAX_PAYLOAD {
            return Err(format!(
                "frame of {len} bytes is over the {MAX_PAYLOAD}-byte limit: stream corrupt"
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let frame = Frame::decode(self.buf[0], &self.buf[5..5 + len]);
        self.buf.drain(..5 + len);
        frame.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_split_anywhere() {
        let frames = vec![
            Frame::Ready,
            Frame::Stdout(b"hello\n".to_vec()),
            Frame::Stderr(vec![0, 1, 2, 255]),
            Frame::Exit(ExitStatus::Exited(42)),
            Frame::Exit(ExitStatus::Signaled(9)),
            Frame::Error("exec foo: not found".into()),
            Frame::BootTimes {
                agent_start_ns: 1_234_567_890,
                ready_ns: u64::MAX - 1,
            },
            Frame::Template,
            Frame::Go {
                realtime_ns: 1_700_000_000_000_000_000,
                config_len: 70_000,
                entropy: vec![7; 64],
            },
            Frame::Config(vec![1, 2, 3]),
            Frame::Start,
            Frame::Stdin(b"x".to_vec()),
            Frame::StdinEof,
            Frame::Signal(15),
            Frame::SignalAll(9),
            Frame::Winsize(24, 80),
            Frame::Exec(r#"{"args":["/bin/sh"]}"#.into()),
            Frame::Tagged(7, Box::new(Frame::Stdout(b"from exec 7".to_vec()))),
            Frame::Tagged(1, Box::new(Frame::Exit(ExitStatus::Signaled(9)))),
            Frame::Tagged(2, Box::new(Frame::Ready)),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
        for chunk in [1, 3, 7, bytes.len()] {
            let mut r = FrameReader::new();
            let mut got = vec![];
            for c in bytes.chunks(chunk) {
                r.push(c);
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "chunk size {chunk}");
        }
    }

    #[test]
    fn corrupt_stream_is_an_error() {
        let mut r = FrameReader::new();
        r.push(&[0x02, 0xff, 0xff, 0xff, 0x7f]);
        assert!(r.next_frame().is_err());
        let mut r = FrameReader::new();
        r.push(&Frame::Ready.encode()[..3]);
        assert_eq!(r.next_frame().unwrap(), None);
        let mut r = FrameReader::new();
        r.push(&[0x42, 0, 0, 0, 0]);
        assert!(r.next_frame().is_err());
        // A tagged frame inside a tagged frame, and one whose inner length lies.
        let nested = Frame::Tagged(1, Box::new(Frame::Tagged(2, Box::new(Frame::Ready)))).encode();
        let mut r = FrameReader::new();
        r.push(&nested);
        assert!(r.next_frame().is_err());
        let mut lying = Frame::Tagged(3, Box::new(Frame::Stdout(b"abc".to_vec()))).encode();
        lying[10] = 9;
        let mut r = FrameReader::new();
        r.push(&lying);
        assert!(r.next_frame().is_err());
        // BootTimes carries exactly two u64s.
        let mut r = FrameReader::new();
        r.push(&[G_BOOT_TIMES, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(r.next_frame().is_err());
    }

    #[test]
    fn exec_process_keeps_the_sandbox_fields() {
        let base = GuestConfig {
            process: ProcessSpec {
                args: vec!["/bin/sleep".into(), "100".into()],
                ..Default::default()
            },
            hostname: Some("box".into()),
            pids_limit: Some(50),
            readonly_root: true,
            seccomp: Some(Seccomp {
                programs: vec![Blob { offset: 0, len: 8 }],
                flags: 0,
            }),
            ..Default::default()
        };
        let p = ProcessSpec {
            args: vec!["/bin/id".into()],
            cwd: "/tmp".into(),
            uid: 1000,
            terminal: true,
            ..Default::default()
        };
        let c = base.with_process(p);
        assert_eq!(c.process.args, vec!["/bin/id"]);
        assert_eq!(
            (c.process.uid, c.process.cwd.as_str(), c.process.terminal),
            (1000, "/tmp", true)
        );
        assert_eq!(c.hostname.as_deref(), Some("box"));
        assert_eq!(c.pids_limit, Some(50));
        assert!(c.readonly_root && c.seccomp.is_some());
    }

    #[test]
    fn boot_times_payload_is_two_u64_le() {
        let f = Frame::BootTimes {
            agent_start_ns: 0x0102_0304_0506_0708,
            ready_ns: 9,
        };
        let b = f.encode();
        assert_eq!(b[0], 0x0e);
        assert_eq!(&b[1..5], &16u32.to_le_bytes());
        assert_eq!(&b[5..13], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[13..21], &9u64.to_le_bytes());
    }

    #[test]
    fn steps_round_trip_and_truncation_is_an_error() {
        let f = Frame::Steps(vec![("go".into(), 5), ("mount-rootfs".into(), 1 << 40)]);
        let b = f.encode();
        assert_eq!(b[0], G_STEPS);
        let mut r = FrameReader::new();
        r.push(&b);
        assert_eq!(r.next_frame().unwrap(), Some(f));
        let mut r = FrameReader::new();
        r.push(&[G_STEPS, 4, 0, 0, 0, 2, b'g', b'o', 0]);
        assert!(r.next_frame().is_err());
    }

    #[test]
    fn config_disk_round_trip() {
        let mut b = ConfigBuilder::new();
        let blob = b.add_blob(b"127.0.0.1 localhost\n");
        let cfg = GuestConfig {
            process: ProcessSpec {
                args: vec!["/bin/echo".into(), "hi".into()],
                cwd: "/".into(),
                ..Default::default()
            },
            mounts: vec![Mount {
                destination: "/etc/hosts".into(),
                kind: MountKind::Carried {
                    entries: vec![CarriedEntry {
                        path: String::new(),
                        kind: EntryKind::File { data: blob },
                        mode: 0o644,
                        uid: 0,
                        gid: 0,
                    }],
                    readonly: true,
                    flags: 0,
                },
            }],
            ..Default::default()
        };
        let bytes = b.finish(&cfg);
        assert_eq!(bytes.len() % SECTOR, 0);
        let disk = ConfigDisk::parse(&bytes).unwrap();
        assert_eq!(disk.config, cfg);
        assert_eq!(disk.blob(blob).unwrap(), b"127.0.0.1 localhost\n");
        assert!(ConfigDisk::parse(&bytes[..20]).is_err());
        assert!(ConfigDisk::parse(b"NOTMAGIC00000000000000000000").is_err());
    }

    /// Every field of the config survives the (postcard) encoding, and a damaged config is an
    /// error, never a config with fields shifted.
    #[test]
    fn config_disk_every_field() {
        let mut b = ConfigBuilder::new();
        let prog = b.add_blob(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let cfg = GuestConfig {
            process: ProcessSpec {
                args: vec!["/bin/sh".into(), "-c".into(), "echo é".into()],
                env: vec!["PATH=/bin".into(), "A=b=c".into()],
                cwd: "/work".into(),
                uid: 1000,
                gid: 1001,
                additional_gids: vec![5, 6],
                umask: Some(0o027),
                rlimits: vec![Rlimit {
                    resource: 7,
                    soft: 1024,
                    hard: u64::MAX,
                }],
                terminal: true,
                console_size: Some((24, 80)),
                no_new_privileges: true,
                capabilities: Some(Capabilities {
                    bounding: vec![0, 1],
                    effective: vec![1],
                    inheritable: vec![],
                    permitted: vec![0, 1, 21],
                    ambient: vec![21],
                }),
                oom_score_adj: Some(-500),
            },
            hostname: Some("sb".into()),
            readonly_root: true,
            overlay_size_mib: 64,
            seccomp: Some(Seccomp {
                programs: vec![prog],
                flags: 1,
            }),
            pids_limit: Some(-1),
            mounts: vec![
                Mount {
                    destination: "/proc".into(),
                    kind: MountKind::Kernel {
                        fstype: "proc".into(),
                        source: "proc".into(),
                        flags: 0x0e,
                        data: String::new(),
                    },
                },
                Mount {
                    destination: "/d".into(),
                    kind: MountKind::Carried {
                        entries: vec![
                            CarriedEntry {
                                path: String::new(),
                                kind: EntryKind::Dir,
                                mode: 0o755,
                                uid: 1,
                                gid: 2,
                            },
                            CarriedEntry {
                                path: "l".into(),
                                kind: EntryKind::Symlink {
                                    target: "../x".into(),
                                },
                                mode: 0o777,
                                uid: 0,
                                gid: 0,
                            },
                        ],
                        readonly: false,
                        flags: 2,
                    },
                },
            ],
            masked_paths: vec!["/proc/kcore".into()],
            readonly_paths: vec!["/proc/sys".into()],
            sysctl: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            net: Some(NetConfig {
                mac: "02:00:00:00:00:01".into(),
                mtu: 1500,
                addrs: vec![("10.0.0.2".into(), 24), ("fd00::2".into(), 64)],
                routes: vec![
                    NetRoute {
                        dst: None,
                        gateway: Some("10.0.0.1".into()),
                    },
                    NetRoute {
                        dst: Some(("10.1.0.0".into(), 16)),
                        gateway: None,
                    },
                ],
            }),
        };
        let bytes = b.finish(&cfg);
        let disk = ConfigDisk::parse(&bytes).unwrap();
        assert_eq!(disk.config, cfg);
        assert_eq!(disk.blob(prog).unwrap(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        // The config cut short (its announced length kept): an error.
        let cfg_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let mut short = bytes[..24 + cfg_len].to_vec();
        short[8..16].copy_from_slice(&((cfg_len - 3) as u64).to_le_bytes());
        short[16..24].copy_from_slice(&0u64.to_le_bytes());
        short.truncate(24 + cfg_len - 3);
        assert!(ConfigDisk::parse(&short).is_err());
        // Bytes after the config inside its announced length: an error.
        let mut long = bytes[..24 + cfg_len].to_vec();
        long.push(0);
        long[8..16].copy_from_slice(&((cfg_len + 1) as u64).to_le_bytes());
        long[16..24].copy_from_slice(&0u64.to_le_bytes());
        assert!(ConfigDisk::parse(&long).is_err());
    }
}
