//! Small formats the front end and the backends both read: the wasm magic and sizes.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// The first four bytes of every WebAssembly module and component.
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// True when `r` starts with [`WASM_MAGIC`] (reads four bytes).
pub fn is_wasm(mut r: impl Read) -> bool {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).is_ok() && &head == WASM_MAGIC
}

/// True when `path` is a file that starts with [`WASM_MAGIC`] (module or component). A path
/// from a bundle must be opened inside its root first (see `hako_linux::inroot`): pass the file.
pub fn is_wasm_file(path: &Path) -> bool {
    std::fs::File::open(path).is_ok_and(is_wasm)
}

/// Parse a size: a plain number is in `unit` bytes; suffixes K, M, G (optionally followed by
/// `i`/`iB`/`B`, any case) are powers of 1024, and a lone `B` means bytes.
pub fn parse_size(s: &str, unit: u64) -> Result<u64> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size"))?;
    let suffix = suffix.trim().to_ascii_uppercase();
    let mult = match suffix.as_str() {
        "" => unit,
        "B" => 1,
        _ => match suffix.trim_end_matches('B').trim_end_matches('I') {
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            _ => bail!("{s:?} is not a size (use a number with an optional K, M or G suffix)"),
        },
    };
    n.checked_mul(mult)
        .with_context(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m", 1).unwrap(), 512 << 20);
        assert_eq!(parse_size("1G", 1).unwrap(), 1 << 30);
        assert_eq!(parse_size("2KiB", 1).unwrap(), 2 << 10);
        assert_eq!(parse_size("64 MB", 1).unwrap(), 64 << 20);
        assert_eq!(parse_size("4096", 1).unwrap(), 4096);
        assert_eq!(parse_size("100b", 1).unwrap(), 100);
        assert_eq!(parse_size("256", 1 << 20).unwrap(), 256 << 20);
        assert!(parse_size("lots", 1).is_err());
        assert!(parse_size("1T", 1).is_err());
        assert!(parse_size("-1", 1).is_err());
        assert!(parse_size("99999999999999999999G", 1).is_err());
    }

    #[test]
    fn wasm_magic() {
        assert!(is_wasm(&b"\0asm\x01\0\0\0"[..]));
        assert!(!is_wasm(&b"\x7fELF"[..]));
        assert!(!is_wasm(&b"\0as"[..]));
    }
}
