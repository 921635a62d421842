//! Small helpers for reading and writing cgroup control files with errors that name the file
//! and the value, e.g. `cannot set memory.limit_in_bytes to 1000: Device or resource busy`.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The short description of an OS error, without Rust's `(os error N)` suffix.
pub(crate) fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// Write `value` to `dir/file` in one `write(2)`, as the kernel expects for control files.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    let mut f = match OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if dir.exists() {
                bail!(
                    "cannot set {file} to {value}: {} does not exist (the controller is not \
                     available or not enabled for this cgroup)",
                    path.display()
                )
            }
            bail!(
                "cannot set {file} to {value}: cgroup {} does not exist",
                dir.display()
            )
        }
        Err(e) => bail!("cannot set {file} to {value}: {}", describe(&e)),
    };
    match f.write(value.as_bytes()) {
        Ok(n) if n == value.len() => Ok(()),
        Ok(n) => bail!(
            "cannot set {file} to {value}: short write ({n} of {} bytes)",
            value.len()
        ),
        Err(e) => bail!("cannot set {file} to {value}: {}", describe(&e)),
    }
}

/// Read `dir/file` as a string (trailing newline removed).
pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    let s = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(s.trim_end_matches('\n').to_string())
}

/// Read `dir/file` when it exists.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim_end_matches('\n').to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Parse a u64 control value; `max` (v2) becomes `u64::MAX`.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// Read `dir/file` as a number when it exists.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<Option<u64>> {
    Ok(read_opt(dir, file)?.and_then(|s| parse_u64(&s)))
}

/// The value of `key` in a flat-keyed file such as memory.stat or cgroup.events.
pub(crate) fn keyed(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(parse_u64))
            .flatten()
    })
}

/// Pids listed in `dir/cgroup.procs` (empty when the cgroup is gone).
pub(crate) fn procs(dir: &Path) -> Result<Vec<i32>> {
    Ok(read_opt(dir, "cgroup.procs")?
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}
