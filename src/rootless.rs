//! Rootless mode: when hako runs it, and where its state goes then.
//!
//! As runc decides it: hako is rootless when its effective uid is not 0, or when it is uid 0
//! only inside a user namespace that does not map the whole id range (rootless podman runs the
//! runtime that way: root in a namespace of the user's own and subordinate ids). `--rootless
//! true|false` overrides the detection.
//!
//! Rootless, the state root defaults to `$XDG_RUNTIME_DIR/hako` (runc and crun use
//! `$XDG_RUNTIME_DIR/<name>`), since `/run/hako` is root's. An explicit `--root` always wins.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// The identity map of a process that is in the initial user namespace.
const FULL_MAP: (u64, u64, u64) = (0, 0, 4_294_967_295);

/// Whether a uid_map text is anything but the initial namespace's full identity map.
pub fn is_partial_map(uid_map: &str) -> bool {
    let rows: Vec<(u64, u64, u64)> = uid_map
        .lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .collect();
    rows != [FULL_MAP]
}

/// Whether we run inside a user namespace other than the initial one.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| is_partial_map(&m))
}

/// `--rootless true|false|auto` to a decision.
pub fn decide(flag: &str) -> Result<bool> {
    Ok(match flag {
        "true" => true,
        "false" => false,
        // SAFETY: geteuid cannot fail.
        "auto" => (unsafe { libc::geteuid() }) != 0 || in_user_namespace(),
        other => bail!("--rootless {other:?}: expected true, false or auto"),
    })
}

/// The state root when `--root` is not given.
pub fn default_root(rootless: bool) -> Result<PathBuf> {
    if !rootless {
        return Ok(PathBuf::from("/run/hako"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) if PathBuf::from(&d).is_absolute() => Ok(PathBuf::from(d).join("hako")),
        Some(d) => bail!("rootless: XDG_RUNTIME_DIR {d:?} is not an absolute path"),
        None => bail!(
            "rootless: XDG_RUNTIME_DIR is not set, so there is no state root of your own; set it, or pass --root"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_identity_map_is_the_initial_namespace() {
        assert!(!is_partial_map("         0          0 4294967295\n"));
        assert!(is_partial_map("         0       1000          1\n"));
        assert!(is_partial_map(
            "         0       1000          1\n         1     100000      65536\n"
        ));
        assert!(is_partial_map("         0          0      65536\n"));
        assert!(is_partial_map(""));
    }

    #[test]
    fn rootless_state_goes_under_the_runtime_dir() {
        assert_eq!(default_root(false).unwrap(), PathBuf::from("/run/hako"));
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            assert_eq!(default_root(true).unwrap(), PathBuf::from(d).join("hako"));
        }
    }
}
