//! The state store: one directory per container under `--root`, holding `state.json` (written
//! atomically), the start fifo while the container is created, and whatever its backend keeps.
//! A flock on the directory serialises the commands that change one container.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
pub const START_FIFO: &str = "start.fifo";

/// What hako remembers about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub backend: String,
    pub pid: i32,
    /// /proc start time of `pid`, so a recycled pid is never taken for the container.
    pub pid_start: Option<u64>,
    pub bundle: PathBuf,
    pub created: String,
    pub owner: u32,
    pub annotations: HashMap<String, String>,
    pub spec: Spec,
    /// The backend's own data (`Created::data`).
    pub data: serde_json::Value,
}

/// Container ids: letters, digits and `_ + - .`, not `.`/`..`, at most 1024 bytes (runc's rule),
/// so an id can never name a path outside the state root.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if !ok {
        bail!("invalid container id {id:?}: use letters, digits and _ + - . (not . or ..)");
    }
    Ok(())
}

pub struct Store {
    root: PathBuf,
}

/// A container directory held under an exclusive flock (released on drop).
pub struct Locked {
    pub dir: PathBuf,
    _lock: File,
}

impl Store {
    pub fn new(root: &Path) -> Self {
        Store {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Make the directory of a new container; fails if the id is taken.
    pub fn create(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        // The root as runc makes its own: 0700, so no other host user reaches a container's
        // files (a sentry's upper dir, with whatever setuid binary the workload made, among
        // them). A root that already exists (--root some/shared/dir) is left as it is.
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .with_context(|| format!("cannot create state root {}", self.root.display()))?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {
                // 0711 whatever the umask: a backend's host process that runs as another id
                // (a user namespace's root) may still need to reach a file in it by name.
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))
                    .with_context(|| format!("cannot chmod {}", dir.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container {id:?} already exists")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
        lock(&dir)
    }

    /// Lock an existing container's directory.
    pub fn open(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.join(STATE_FILE).exists() {
            if dir.is_dir() {
                // Being created right now, or left over from a create that crashed.
                bail!("container {id:?} is still being created");
            }
            bail!("container {id:?} does not exist");
        }
        lock(&dir)
    }

    /// Ids of every container with a state file.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

fn lock(dir: &Path) -> Result<Locked> {
    let f = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot lock container state");
    }
    Ok(Locked {
        dir: dir.to_path_buf(),
        _lock: f,
    })
}

impl Locked {
    pub fn read(&self) -> Result<Record> {
        let p = self.dir.join(STATE_FILE);
        let bytes = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("corrupt state file {}", p.display()))
    }

    /// Write state.json atomically (temp file + fsync-free rename: the root is a tmpfs).
    pub fn write(&self, rec: &Record) -> Result<()> {
        let tmp = self.dir.join(".state.json.tmp");
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec(rec)?)?;
        drop(f);
        fs::rename(&tmp, self.dir.join(STATE_FILE)).context("cannot replace state.json")?;
        Ok(())
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(START_FIFO)
    }

    /// Remove the whole directory.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir)
            .with_context(|| format!("cannot remove {}", self.dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_the_root_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "a b", "x\0y", "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "abc-DEF_1.2+3", "0123456789abcdef"] {
            validate_id(good).unwrap();
        }
        assert!(validate_id(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn create_twice_fails_and_remove_cleans() {
        let root = std::env::temp_dir().join(format!("hako-store-{}", std::process::id()));
        let s = Store::new(&root);
        let l = s.create("c1").unwrap();
        assert!(s.create("c1").is_err());
        assert!(s.open("c1").is_err(), "no state.json yet");
        l.remove().unwrap();
        assert!(!root.join("c1").exists());
        fs::remove_dir_all(&root).unwrap();
    }
}
