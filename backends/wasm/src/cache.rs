//! The precompiled module cache: `<root>/wasm-cache/<key>.cwasm`.
//!
//! key = sha256("hako-wasm-cache/1", kind, sha256(module bytes), the engine's precompile
//! compatibility hash (Wasmtime version, target, every codegen setting: fuel, epochs, ...)).
//!
//! Entry = MAGIC | sha256(artifact) | len (u64 le) | artifact. Deserializing a Wasmtime artifact
//! runs its machine code, so an entry is only used when its hash matches; a truncated, corrupt
//! or tampered entry is reported, replaced by a fresh compilation, and never run. Entries are
//! written to a temporary file and renamed into place, so a reader never sees half an entry.
//! The directory is made 0700 and used only when owned by the current user and not writable by
//! anybody else: the hash guards against damage, the permissions against forgery.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"HAKOWC1\n";
const HEADER: usize = 8 + 32 + 8;

/// Feeds `Hash` output into sha256 (std's DefaultHasher is not stable across releases).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache key of `module` compiled by `engine` as `kind` ("module" or "component").
pub fn key(engine: &wasmtime::Engine, kind: &str, module: &[u8]) -> String {
    let mut h = ShaHasher(Sha256::new());
    h.write(b"hako-wasm-cache/1\0");
    h.write(kind.as_bytes());
    h.write(&Sha256::digest(module));
    engine.precompile_compatibility_hash().hash(&mut h);
    hex(&h.0.finalize())
}

pub struct Cache {
    dir: PathBuf,
}

/// What a lookup found.
pub enum Lookup {
    Hit(Vec<u8>),
    Miss,
    /// The entry exists but failed its integrity check (the reason).
    Bad(String),
}

impl Cache {
    /// Open (make) the cache under `root`. Err when it cannot be used safely.
    pub fn open(root: &Path) -> Result<Cache> {
        let dir = root.join("wasm-cache");
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
        {
            Ok(()) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
        let md = fs::symlink_metadata(&dir)?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !md.is_dir() || md.uid() != me || md.mode() & 0o022 != 0 {
            bail!(
                "{} is not a directory owned by uid {me} and writable only by it",
                dir.display()
            );
        }
        Ok(Cache { dir })
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    pub fn lookup(&self, key: &str) -> Lookup {
        let data = match fs::read(self.path(key)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Bad(format!("unreadable: {e}")),
        };
        match verify(data) {
            Ok(artifact) => Lookup::Hit(artifact),
            Err(why) => Lookup::Bad(why),
        }
    }

    /// Write an entry atomically (tmp file + rename). Failure to cache is not fatal to callers.
    pub fn store(&self, key: &str, artifact: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let r = (|| -> Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut head = Vec::with_capacity(HEADER);
            head.extend_from_slice(MAGIC);
            head.extend_from_slice(&Sha256::digest(artifact));
            head.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
            f.write_all(&head)?;
            f.write_all(artifact)?;
            f.sync_data()?;
            fs::rename(&tmp, self.path(key))?;
            Ok(())
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r.with_context(|| format!("writing cache entry {}", self.path(key).display()))
    }
}

/// Check an entry's header and hash; return the artifact.
fn verify(mut data: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    if data.len() < HEADER || &data[..8] != MAGIC {
        return Err("bad header".into());
    }
    let len = u64::from_le_bytes(data[40..48].try_into().unwrap()) as usize;
    if data.len() - HEADER != len {
        return Err(format!(
            "truncated or padded: {} bytes of artifact, header says {len}",
            data.len() - HEADER
        ));
    }
    let want: [u8; 32] = data[8..40].try_into().unwrap();
    if Sha256::digest(&data[HEADER..]).as_slice() != want {
        return Err("artifact hash mismatch".into());
    }
    data.drain(..HEADER);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let root =
            std::env::temp_dir().join(format!("hako-wasm-cache-unit-{}", std::process::id()));
        let c = Cache::open(&root).unwrap();
        assert!(matches!(c.lookup("k"), Lookup::Miss));
        c.store("k", b"artifact bytes").unwrap();
        match c.lookup("k") {
            Lookup::Hit(a) => assert_eq!(a, b"artifact bytes"),
            _ => panic!("expected a hit"),
        }
        // Flip one artifact byte: hash mismatch.
        let p = c.path("k");
        let mut d = fs::read(&p).unwrap();
        let last = d.len() - 1;
        d[last] ^= 1;
        fs::write(&p, &d).unwrap();
        assert!(matches!(c.lookup("k"), Lookup::Bad(ref w) if w.contains("hash")));
        // Truncate.
        d.truncate(d.len() - 3);
        fs::write(&p, &d).unwrap();
        assert!(matches!(c.lookup("k"), Lookup::Bad(ref w) if w.contains("truncated")));
        // No temporary files are left.
        let names: Vec<_> = fs::read_dir(root.join("wasm-cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        fs::remove_dir_all(&root).unwrap();
    }
}
