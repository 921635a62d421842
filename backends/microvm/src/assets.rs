//! The guest's pieces on the host: the kernel (built by `kernels/build.sh`) and the agent
//! (`hako-agent`, a static binary), and the small ext4 disk the agent boots from.

use crate::image;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The kernel used when `io.hako.microvm.kernel` is not given: `$HAKO_MICROVM_KERNEL`, else the
/// stable `vmlinux` link `kernels/build.sh` keeps in `${HAKO_KERNEL_CACHE:-/var/cache/hako/kernels}`.
pub fn default_kernel() -> PathBuf {
    if let Some(p) = std::env::var_os("HAKO_MICROVM_KERNEL") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("HAKO_KERNEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/hako/kernels".into());
    cache.join("vmlinux")
}

/// ELF note type of the PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY).
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// The most bytes of PT_NOTE segments [`check_kernel`] reads (a vmlinux has a few KiB of notes).
const MAX_NOTES: u64 = 1 << 20;

/// Check that `path` is an x86_64 ELF vmlinux carrying a PVH entry note, which is what both
/// engines boot. Reads only the ELF header, the program headers and the note segments (a few
/// KiB), never the whole kernel: this runs on every create.
pub fn check_kernel(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let hint = "build one with kernels/build.sh or name one with io.hako.microvm.kernel";
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("guest kernel {} does not exist: {hint}", path.display())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading guest kernel {}", path.display()))
        }
    };
    let len = file
        .metadata()
        .with_context(|| format!("reading guest kernel {}", path.display()))?
        .len();
    let bad = |why: &str| {
        anyhow::anyhow!(
            "guest kernel {} is not usable: {why} ({hint})",
            path.display()
        )
    };
    // `n` bytes at `off`, which the caller has checked lie inside the file.
    let read_at = |off: u64, n: usize| -> Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, off)
            .with_context(|| format!("reading guest kernel {}", path.display()))?;
        Ok(buf)
    };
    let not_elf = "not an ELF file (a bzImage will not do: the engines boot vmlinux through PVH)";
    if len < 64 {
        return Err(bad(not_elf));
    }
    let eh = read_at(0, 64)?;
    if &eh[..4] != b"\x7fELF" {
        return Err(bad(not_elf));
    }
    if eh[4] != 2 || eh[5] != 1 || u16::from_le_bytes([eh[18], eh[19]]) != 62 {
        return Err(bad("not a 64-bit little-endian x86_64 ELF"));
    }
    let u16_at = |b: &[u8], o: usize| b.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |b: &[u8], o: usize| {
        b.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |b: &[u8], o: usize| {
        b.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let phoff = u64_at(&eh, 32).ok_or_else(|| bad("truncated"))?;
    let phentsize = u16_at(&eh, 54).ok_or_else(|| bad("truncated"))? as u64;
    let phnum = u16_at(&eh, 56).ok_or_else(|| bad("truncated"))? as u64;
    let truncated_ph = || bad("truncated program headers");
    if phnum > 0 && phentsize < 40 {
        return Err(bad("program headers of an unexpected size"));
    }
    // phentsize and phnum are u16: at most 4 GiB, and only read once checked against the size.
    let ph_len = phentsize * phnum;
    if phoff.checked_add(ph_len).is_none_or(|e| e > len) {
        return Err(truncated_ph());
    }
    let phs = read_at(phoff, ph_len as usize)?;
    let mut loads = 0;
    let mut notes = vec![];
    for i in 0..phnum as usize {
        let ph = i * phentsize as usize;
        let p_type = u32_at(&phs, ph).ok_or_else(truncated_ph)?;
        let off = u64_at(&phs, ph + 8).ok_or_else(truncated_ph)?;
        let filesz = u64_at(&phs, ph + 32).ok_or_else(truncated_ph)?;
        if off.checked_add(filesz).is_none_or(|e| e > len) {
            return Err(bad("a segment runs past the end of the file (truncated?)"));
        }
        match p_type {
            1 => loads += 1,
            4 => notes.push((off, filesz)),
            _ => {}
        }
    }
    if loads == 0 {
        return Err(bad("no loadable segments"));
    }
    if notes.iter().map(|n| n.1).sum::<u64>() > MAX_NOTES {
        return Err(bad("its note segments are implausibly large"));
    }
    for (off, filesz) in notes {
        let data = read_at(off, filesz as usize)?;
        let end = data.len();
        let mut n = 0;
        while n + 12 <= end {
            let namesz = u32_at(&data, n).unwrap() as usize;
            let descsz = u32_at(&data, n + 4).unwrap() as usize;
            let ntype = u32_at(&data, n + 8).unwrap();
            let name = data.get(n + 12..n + 12 + namesz).unwrap_or_default();
            if ntype == XEN_ELFNOTE_PHYS32_ENTRY && name.starts_with(b"Xen") {
                return Ok(());
            }
            n += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
    }
    Err(bad("no PVH entry note (the kernel needs CONFIG_PVH=y)"))
}

/// Where the guest agent binary is: `$HAKO_AGENT`, else `hako-agent` next to the running
/// executable, else the cargo build directories of this workspace (musl, then a static gnu build).
pub fn find_agent() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HAKO_AGENT") {
        let p = PathBuf::from(p);
        check_static(&p)?;
        return Ok(p);
    }
    let exe = hako_contract::proc::self_exe().context("the hako binary's path")?;
    let mut candidates = vec![];
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("hako-agent"));
    }
    // target/<profile>/hako (or target/<profile>/deps/test-binary): look for target/<triple>/<profile>.
    // The target directory may have any name (CARGO_TARGET_DIR): it is the one holding a triple.
    for anc in exe.ancestors().skip(1) {
        let holds_triple = ["x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"]
            .iter()
            .any(|t| anc.join(t).is_dir());
        if holds_triple || anc.file_name().is_some_and(|n| n == "target") {
            for triple in ["x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"] {
                for profile in ["release", "debug"] {
                    candidates.push(anc.join(triple).join(profile).join("hako-agent"));
                }
            }
            break;
        }
    }
    // The most recently built static candidate (a stale release build must not shadow a fresh
    // debug one).
    let mut found_dynamic = None;
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for c in &candidates {
        if c.is_file() {
            match check_static(c) {
                Ok(()) => {
                    let t = fs::metadata(c)
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                        best = Some((t, c.clone()));
                    }
                }
                Err(e) => found_dynamic = Some(e),
            }
        }
    }
    if let Some((_, p)) = best {
        return Ok(p);
    }
    if let Some(e) = found_dynamic {
        return Err(e);
    }
    bail!(
        "the microvm guest agent (hako-agent) was not found (looked at $HAKO_AGENT, {}): build it with backends/microvm/agent/build.sh",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// The agent runs in a guest with no libraries: it must be statically linked (no PT_INTERP).
fn check_static(p: &Path) -> Result<()> {
    let data = fs::read(p).with_context(|| format!("reading the guest agent {}", p.display()))?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" {
        bail!("the guest agent {} is not an ELF executable", p.display());
    }
    let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes([data[54], data[55]]) as usize;
    let phnum = u16::from_le_bytes([data[56], data[57]]) as usize;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if data
            .get(ph..ph + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            == Some(3)
        {
            bail!(
                "the guest agent {} is dynamically linked; the guest has no libraries: build it with backends/microvm/agent/build.sh",
                p.display()
            );
        }
    }
    Ok(())
}

/// The agent disk: a small read-only ext4 holding `/init` (the agent) and the mount points it
/// uses; the guest kernel mounts it as `/`. Cached by the agent's content, whose digest is
/// memoized by the agent file's identity (it is not read on every create).
pub fn agent_disk(cache: &Path, agent: &Path) -> Result<PathBuf> {
    let read = || fs::read(agent).with_context(|| format!("reading {}", agent.display()));
    let key = crate::template::memo(&cache.join(image::MEMO), agent, "agent", || {
        Ok(image::hex_digest(&[&read()?]))
    })?;
    let out = cache.join(format!("agent-{}.ext4", &key[..16]));
    if out.is_file() {
        return Ok(out);
    }
    let bytes = read()?;
    if image::hex_digest(&[&bytes]) != key {
        bail!(
            "the guest agent {} changed while it was read",
            agent.display()
        );
    }
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let stage = tempdir_in(cache, "agent-stage")?;
    let result = (|| -> Result<PathBuf> {
        for d in ["proc", "sys", "dev", "mnt"] {
            fs::create_dir(stage.join(d))?;
        }
        let init = stage.join("init");
        fs::write(&init, &bytes)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
        let size = (bytes.len() as u64 + (4 << 20)).div_ceil(1 << 20) << 20;
        image::mkfs_into(&stage, &out, size, 64, hako_agent::proto::AGENT_LABEL)?;
        Ok(out.clone())
    })();
    let _ = fs::remove_dir_all(&stage);
    result
}

/// A fresh private directory below `dir`.
pub fn tempdir_in(dir: &Path, prefix: &str) -> Result<PathBuf> {
    for i in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = dir.join(format!(".{prefix}-{}-{nanos}-{i}", std::process::id()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
        }
    }
    bail!("could not make a temporary directory in {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_checks_reject_what_cannot_boot() {
        let dir = std::env::temp_dir().join(format!("hako-kcheck-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let missing = format!("{:#}", check_kernel(&dir.join("nope")).unwrap_err());
        assert!(missing.contains("does not exist"), "{missing}");
        let junk = dir.join("junk");
        fs::write(&junk, vec![0x55u8; 4096]).unwrap();
        let e = format!("{:#}", check_kernel(&junk).unwrap_err());
        assert!(e.contains("not an ELF"), "{e}");
        // A real ELF without the PVH note: this test binary itself.
        let me = std::env::current_exe().unwrap();
        let e = format!("{:#}", check_kernel(&me).unwrap_err());
        assert!(e.contains("PVH"), "{e}");
        // A kernel cut short: its segments run past the end.
        let kernel = default_kernel();
        if check_kernel(&kernel).is_ok() {
            let mut head = vec![0u8; 1 << 20];
            use std::io::Read;
            fs::File::open(&kernel)
                .unwrap()
                .read_exact(&mut head)
                .unwrap();
            let cut = dir.join("cut");
            fs::write(&cut, &head).unwrap();
            let e = format!("{:#}", check_kernel(&cut).unwrap_err());
            assert!(e.contains("past the end"), "{e}");
        } else {
            eprintln!(
                "skipping the cut-kernel case: no usable {}",
                kernel.display()
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
