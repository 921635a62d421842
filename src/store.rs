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
/// The record as `create` knew it before the backend made anything (pid 0, no backend data):
/// what `delete --force` needs to find a sandbox whose create died before state.json.
pub const INTENT_FILE: &str = "create.json";

/// The error of [`Store::open`] while another `create` of the id is running (it holds the lock).
#[derive(Debug)]
pub struct StillCreating(pub String);

impl std::fmt::Display for StillCreating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "container {:?} is still being created", self.0)
    }
}

impl std::error::Error for StillCreating {}

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
    /// No state.json: the `create` that made the directory died (nobody holds its lock) after
    /// it wrote [`INTENT_FILE`]. [`Locked::read`] reads that instead; the container is stopped.
    pub orphan: bool,
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
        lock(&dir, libc::LOCK_EX)?.context("cannot lock container state")
    }

    /// Lock an existing container's directory. A directory without state.json is a create in
    /// progress ([`StillCreating`]: its `create` holds the lock) or one whose `create` died
    /// (the lock is free): that one opens as an orphan, stopped, when its intent was written;
    /// before that nothing but the directory exists.
    pub fn open(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        let dir = self.dir(id);
        if dir.join(STATE_FILE).exists() {
            return lock(&dir, libc::LOCK_EX)?.context("cannot lock container state");
        }
        if !dir.is_dir() {
            bail!("container {id:?} does not exist");
        }
        let Some(mut l) = lock(&dir, libc::LOCK_EX | libc::LOCK_NB)? else {
            return Err(StillCreating(id.to_string()).into());
        };
        if dir.join(STATE_FILE).exists() {
            // Its create finished while we looked.
            return Ok(l);
        }
        if dir.join(INTENT_FILE).exists() {
            l.orphan = true;
            return Ok(l);
        }
        bail!(
            "container {id:?} does not exist: a create that died left {} (`delete --force` removes it)",
            dir.display()
        )
    }

    /// Ids of every container with a state file, or left by a create that died after it wrote
    /// its intent.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let p = e.path();
                p.join(STATE_FILE).exists() || p.join(INTENT_FILE).exists()
            })
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

/// flock `dir` with `how`; None when LOCK_NB was asked and another process holds it.
fn lock(dir: &Path, how: libc::c_int) -> Result<Option<Locked>> {
    let f = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), how) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(e).context("cannot lock container state");
    }
    Ok(Some(Locked {
        dir: dir.to_path_buf(),
        orphan: false,
        _lock: f,
    }))
}

impl Locked {
    pub fn read(&self) -> Result<Record> {
        let p = self
            .dir
            .join(if self.orphan { INTENT_FILE } else { STATE_FILE });
        let bytes = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("corrupt state file {}", p.display()))
    }

    /// Write state.json atomically (temp file + fsync-free rename: the root is a tmpfs).
    pub fn write(&self, rec: &Record) -> Result<()> {
        self.write_as(rec, STATE_FILE)
    }

    /// Write the intent ([`INTENT_FILE`]): the record before the backend makes anything.
    pub fn write_intent(&self, rec: &Record) -> Result<()> {
        self.write_as(rec, INTENT_FILE)
    }

    fn write_as(&self, rec: &Record, name: &str) -> Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec(rec)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, self.dir.join(name)).with_context(|| format!("cannot replace {name}"))?;
        Ok(())
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(START_FIFO)
    }

    /// Remove the whole directory: state.json first, so that a remove cut short leaves an
    /// orphan that `delete --force` finishes (the backend's part is done by then).
    pub fn remove(self) -> Result<()> {
        match fs::remove_file(self.dir.join(STATE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove {}", self.dir.display()))
            }
        }
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

    #[test]
    fn a_create_that_died_opens_as_an_orphan() {
        let root = std::env::temp_dir().join(format!("hako-orphan-{}", std::process::id()));
        let s = Store::new(&root);
        let l = s.create("c2").unwrap();
        let e = s.open("c2").err().unwrap();
        assert!(e.is::<StillCreating>(), "{e}");
        // Its create died before the intent: nothing but the directory.
        drop(l);
        let e = s.open("c2").err().unwrap();
        assert!(format!("{e}").contains("does not exist"), "{e}");
        assert!(s.ids().is_empty());
        let l = s.create("c3").unwrap();
        let rec = Record {
            id: "c3".into(),
            backend: "container".into(),
            pid: 0,
            pid_start: None,
            bundle: "/b".into(),
            created: String::new(),
            owner: 0,
            annotations: HashMap::new(),
            spec: Spec::default(),
            data: serde_json::Value::Null,
        };
        l.write_intent(&rec).unwrap();
        assert!(s.open("c3").err().unwrap().is::<StillCreating>());
        drop(l);
        let o = s.open("c3").unwrap();
        assert!(o.orphan);
        assert_eq!(o.read().unwrap().backend, "container");
        assert_eq!(s.ids(), vec!["c3".to_string()]);
        o.remove().unwrap();
        fs::remove_dir_all(&root).unwrap();
    }
}
