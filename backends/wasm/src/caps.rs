//! process.capabilities applied to the wasm host process. The module itself makes no system
//! calls, but the host process opens files in the rootfs on its behalf: with the spec's
//! capabilities (and user) applied, a root-owned 0600 file in the rootfs stays closed to a
//! module whose spec drops CAP_DAC_OVERRIDE, exactly as for a container.

use anyhow::{bail, Result};
use oci_spec::runtime::LinuxCapabilities;

const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The five sets as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

fn mask(set: Option<&oci_spec::runtime::Capabilities>) -> Result<u64> {
    let mut m = 0u64;
    for c in set.into_iter().flatten() {
        let name = c.to_string();
        let name = name.trim_start_matches("CAP_");
        match NAMES.iter().position(|n| *n == name) {
            Some(i) => m |= 1 << i,
            None => bail!("unknown capability CAP_{name}"),
        }
    }
    Ok(m)
}

impl CapSets {
    pub fn from_spec(c: &LinuxCapabilities) -> Result<CapSets> {
        Ok(CapSets {
            bounding: mask(c.bounding().as_ref())?,
            effective: mask(c.effective().as_ref())?,
            permitted: mask(c.permitted().as_ref())?,
            inheritable: mask(c.inheritable().as_ref())?,
            ambient: mask(c.ambient().as_ref())?,
        })
    }

    /// Drop what is not in the bounding set (needs CAP_SETPCAP: before changing user).
    pub fn drop_bounding(&self) -> Result<()> {
        // SAFETY: prctl with valid arguments.
        unsafe {
            for cap in 0..=last_cap() {
                if self.bounding & (1 << cap) == 0
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        bail!("dropping CAP {cap} from the bounding set: {e}");
                    }
                }
            }
        }
        Ok(())
    }

    /// Set effective, permitted, inheritable and ambient for the calling thread (the host
    /// process's main thread, which does the module's file I/O).
    pub fn set(&self) -> Result<()> {
        let last = last_cap();
        // SAFETY: capset and prctl with valid arguments.
        unsafe {
            #[repr(C)]
            struct Header {
                version: u32,
                pid: i32,
            }
            #[repr(C)]
            #[derive(Clone, Copy)]
            struct Data {
                effective: u32,
                permitted: u32,
                inheritable: u32,
            }
            let hdr = Header {
                version: 0x20080522,
                pid: 0,
            };
            let lo = |m: u64| m as u32;
            let hi = |m: u64| (m >> 32) as u32;
            let data = [
                Data {
                    effective: lo(self.effective),
                    permitted: lo(self.permitted),
                    inheritable: lo(self.inheritable),
                },
                Data {
                    effective: hi(self.effective),
                    permitted: hi(self.permitted),
                    inheritable: hi(self.inheritable),
                },
            ];
            if libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) != 0 {
                bail!("capset: {}", std::io::Error::last_os_error());
            }
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            );
            for cap in 0..=last {
                if self.ambient & (1 << cap) != 0 {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    );
                }
            }
        }
        Ok(())
    }
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    #[test]
    fn masks_follow_kernel_numbers() {
        let set: oci_spec::runtime::Capabilities =
            [Capability::Chown, Capability::Kill, Capability::AuditWrite]
                .into_iter()
                .collect();
        let c = LinuxCapabilitiesBuilder::default()
            .bounding(set.clone())
            .effective(set)
            .build()
            .unwrap();
        let m = CapSets::from_spec(&c).unwrap();
        assert_eq!(m.bounding, 1 << 0 | 1 << 5 | 1 << 29);
        assert_eq!(m.effective, m.bounding);
        // Unset sets keep oci-spec's defaults (AUDIT_WRITE, KILL, NET_BIND_SERVICE).
        assert_eq!(m.ambient, 1 << 5 | 1 << 10 | 1 << 29);
    }
}
