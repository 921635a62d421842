//! Capabilities: the five sets of `process.capabilities`, applied with prctl and capset.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

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

/// Every capability name this code knows, as `CAP_*` (for `features`).
pub fn known_names() -> Vec<String> {
    NAMES.iter().map(|n| format!("CAP_{n}")).collect()
}

/// The kernel's number for `cap`.
pub fn number(cap: &Capability) -> Result<u32> {
    let s = serde_json::to_string(cap)?;
    let name = s.trim_matches('"').trim_start_matches("CAP_");
    match NAMES.iter().position(|n| *n == name) {
        Some(i) => Ok(i as u32),
        None => bail!("unknown capability {s}"),
    }
}

/// The highest capability this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// A set as a 64-bit mask; capabilities the running kernel does not know are dropped, as runc
/// does (they cannot be granted, and asking for them is not an error).
fn mask(set: Option<&Capabilities>, last: u32) -> Result<u64> {
    let mut m = 0u64;
    for c in set.into_iter().flatten() {
        let n = number(c)?;
        if n <= last {
            m |= 1 << n;
        }
    }
    Ok(m)
}

/// The five sets as masks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Sets {
    pub fn from_spec(c: &LinuxCapabilities) -> Result<Sets> {
        let last = last_cap();
        Ok(Sets {
            bounding: mask(c.bounding().as_ref(), last)?,
            effective: mask(c.effective().as_ref(), last)?,
            permitted: mask(c.permitted().as_ref(), last)?,
            inheritable: mask(c.inheritable().as_ref(), last)?,
            ambient: mask(c.ambient().as_ref(), last)?,
        })
    }

    pub fn has_effective(&self, cap: u32) -> bool {
        self.effective & (1 << cap) != 0
    }
}

/// Drop every capability not in `bounding` from the bounding set (needs CAP_SETPCAP).
pub fn drop_bounding(s: &Sets) -> Result<()> {
    for n in 0..=last_cap() {
        if s.bounding & (1 << n) == 0 {
            // SAFETY: plain prctl.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e)
                        .context(format!("dropping capability {n} from the bounding set"));
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

/// Set effective, permitted and inheritable, then raise the ambient set.
pub fn set_process_sets(s: &Sets) -> Result<()> {
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: s.effective as u32,
            permitted: s.permitted as u32,
            inheritable: s.inheritable as u32,
        },
        Data {
            effective: (s.effective >> 32) as u32,
            permitted: (s.permitted >> 32) as u32,
            inheritable: (s.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: capset with a v3 header and two data words, as the kernel expects.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("capset");
    }
    // SAFETY: plain prctl.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    for n in 0..=last_cap() {
        if s.ambient & (1 << n) != 0 {
            // SAFETY: plain prctl.
            if unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    n as libc::c_ulong,
                    0,
                    0,
                )
            } != 0
            {
                // As runc: an ambient capability that is not also permitted and inheritable is
                // refused by the kernel; that is the spec's documented behaviour, not an error.
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EPERM) {
                    return Err(e).context(format!("raising ambient capability {n}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_headers() {
        assert_eq!(number(&Capability::Chown).unwrap(), 0);
        assert_eq!(number(&Capability::SysAdmin).unwrap(), 21);
        assert_eq!(number(&Capability::NetBindService).unwrap(), 10);
        assert_eq!(number(&Capability::CheckpointRestore).unwrap(), 40);
        assert_eq!(known_names().len(), 41);
    }
}
