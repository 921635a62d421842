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

/// One program header: type, offset in the file, size in the file.
struct ProgramHeader {
    p_type: u32,
    offset: u64,
    filesz: u64,
}

/// Why a file is not the x86_64 ELF a guest needs.
enum ElfError {
    NotElf,
    Bad(&'static str),
    Io(std::io::Error),
}

/// The program headers of the 64-bit little-endian x86_64 ELF open as `file` (`len` bytes),
/// each segment checked to lie inside the file. Reads the ELF header and the program headers
/// only (a few KiB), never the whole file: the kernel and the agent are checked on every create.
fn program_headers(file: &fs::File, len: u64) -> std::result::Result<Vec<ProgramHeader>, ElfError> {
    if len < 64 {
        return Err(ElfError::NotElf);
    }
    let eh = read_at(file, 0, 64).map_err(ElfError::Io)?;
    if &eh[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if eh[4] != 2 || eh[5] != 1 || u16_at(&eh, 18) != Some(62) {
        return Err(ElfError::Bad("not a 64-bit little-endian x86_64 ELF"));
    }
    let truncated = ElfError::Bad("truncated program headers");
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (u64_at(&eh, 32), u16_at(&eh, 54), u16_at(&eh, 56))
    else {
        return Err(ElfError::Bad("truncated"));
    };
    let (phentsize, phnum) = (phentsize as u64, phnum as u64);
    if phnum > 0 && phentsize < 56 {
        return Err(ElfError::Bad("program headers of an unexpected size"));
    }
    // phentsize and phnum are u16: at most 4 GiB, and only read once checked against the size.
    let ph_len = phentsize * phnum;
    if phoff.checked_add(ph_len).is_none_or(|e| e > len) {
        return Err(truncated);
    }
    let phs = read_at(file, phoff, ph_len as usize).map_err(ElfError::Io)?;
    let mut out = vec![];
    for i in 0..phnum as usize {
        let ph = i * phentsize as usize;
        let (Some(p_type), Some(offset), Some(filesz)) = (
            u32_at(&phs, ph),
            u64_at(&phs, ph + 8),
            u64_at(&phs, ph + 32),
        ) else {
            return Err(truncated);
        };
        if offset.checked_add(filesz).is_none_or(|e| e > len) {
            return Err(ElfError::Bad(
                "a segment runs past the end of the file (truncated?)",
            ));
        }
        out.push(ProgramHeader {
            p_type,
            offset,
            filesz,
        });
    }
    Ok(out)
}

/// `n` bytes of `file` at `off`.
fn read_at(file: &fs::File, off: u64, n: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, off)?;
    Ok(buf)
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
}

/// Check that `path` is an x86_64 ELF vmlinux carrying a PVH entry note, which is what both
/// engines boot. Reads only the ELF header, the program headers and the note segments (a few
/// KiB), never the whole kernel: this runs on every create.
pub fn check_kernel(path: &Path) -> Result<()> {
    let hint = "build one with kernels/build.sh or name one with io.hako.microvm.kernel";
    let reading = || format!("reading guest kernel {}", path.display());
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("guest kernel {} does not exist: {hint}", path.display())
        }
        Err(e) => return Err(e).with_context(reading),
    };
    let len = file.metadata().with_context(reading)?.len();
    let bad = |why: &str| {
        anyhow::anyhow!(
            "guest kernel {} is not usable: {why} ({hint})",
            path.display()
        )
    };
    let phs = match program_headers(&file, len) {
        Ok(phs) => phs,
        Err(ElfError::NotElf) => {
            return Err(bad(
                "not an ELF file (a bzImage will not do: the engines boot vmlinux through PVH)",
            ))
        }
        Err(ElfError::Bad(why)) => return Err(bad(why)),
        Err(ElfError::Io(e)) => return Err(e).with_context(reading),
    };
    if !phs.iter().any(|p| p.p_type == 1) {
        return Err(bad("no loadable segments"));
    }
    let notes: Vec<&ProgramHeader> = phs.iter().filter(|p| p.p_type == 4).collect();
    if notes.iter().map(|n| n.filesz).sum::<u64>() > MAX_NOTES {
        return Err(bad("its note segments are implausibly large"));
    }
    for note in notes {
        let data = read_at(&file, note.offset, note.filesz as usize).with_context(reading)?;
        let mut n = 0;
        while n + 12 <= data.len() {
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

/// The agent runs in a guest with no libraries: it must be a statically linked (no PT_INTERP)
/// x86_64 ELF. Reads its headers only.
fn check_static(p: &Path) -> Result<()> {
    let reading = || format!("reading the guest agent {}", p.display());
    let file = fs::File::open(p).with_context(reading)?;
    let len = file.metadata().with_context(reading)?.len();
    let phs = match program_headers(&file, len) {
        Ok(phs) => phs,
        Err(ElfError::NotElf) => bail!("the guest agent {} is not an ELF executable", p.display()),
        Err(ElfError::Bad(why)) => bail!("the guest agent {} is not usable: {why}", p.display()),
        Err(ElfError::Io(e)) => return Err(e).with_context(reading),
    };
    if phs.iter().any(|ph| ph.p_type == 3) {
        bail!(
            "the guest agent {} is dynamically linked; the guest has no libraries: build it with backends/microvm/agent/build.sh",
            p.display()
        );
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

    #[test]
    fn agent_checks_reject_what_the_guest_cannot_run() {
        let dir = std::env::temp_dir().join(format!("hako-acheck-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk");
        fs::write(&junk, vec![0x55u8; 4096]).unwrap();
        let e = format!("{:#}", check_static(&junk).unwrap_err());
        assert!(e.contains("not an ELF executable"), "{e}");
        // This test binary has an interpreter unless it was linked statically.
        let me = std::env::current_exe().unwrap();
        let interp = fs::read(&me)
            .unwrap()
            .windows(b"ld-linux".len())
            .any(|w| w == b"ld-linux");
        match check_static(&me) {
            Err(e) => assert!(
                interp && format!("{e:#}").contains("dynamically linked"),
                "{e:#}"
            ),
            Ok(()) => assert!(!interp, "a dynamic test binary passed as static"),
        }
        // The first 4 KiB of an ELF: its segments run past the end.
        let mut head = vec![0u8; 4096];
        use std::io::Read;
        fs::File::open(&me).unwrap().read_exact(&mut head).unwrap();
        let cut = dir.join("cut");
        fs::write(&cut, &head).unwrap();
        let e = format!("{:#}", check_static(&cut).unwrap_err());
        assert!(e.contains("past the end"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
