//! The operations behind the subcommands. Each gets a [`Ctx`] (the global options and the state
//! store) and works on one container through its [`Loaded`] view.

pub mod control;
pub mod info;
pub mod lifecycle;

use crate::store::{Locked, Record, Store};
use crate::{backends, log};
use anyhow::{bail, Result};
use hako_contract::{proc, Backend, GlobalOptions, OciState, Sandbox, Status};
use std::path::Path;

pub struct Ctx {
    pub store: Store,
    pub global: GlobalOptions,
    pub backend_flag: Option<String>,
}

/// A container, locked, with its record and backend.
pub struct Loaded {
    pub lock: Locked,
    pub rec: Record,
    pub backend: Box<dyn Backend>,
    pub alive: bool,
}

impl Ctx {
    pub fn load(&self, id: &str) -> Result<Loaded> {
        let lock = self.store.open(id)?;
        let rec = lock.read()?;
        let backend = backends::get(&rec.backend)?;
        // A pid is ours only with the start time recorded at create: without one (a damaged or
        // hand-edited state.json) the pid may name any host process by now, so the container
        // counts as stopped and nothing is ever signalled.
        let alive = rec.pid_start.is_some() && proc::is_alive(rec.pid, rec.pid_start);
        Ok(Loaded {
            lock,
            rec,
            backend,
            alive,
        })
    }
}

impl Loaded {
    pub fn sandbox<'a>(&'a self, global: &'a GlobalOptions) -> Sandbox<'a> {
        Sandbox {
            id: &self.rec.id,
            bundle: &self.rec.bundle,
            spec: &self.rec.spec,
            state_dir: &self.lock.dir,
            pid: self.rec.pid,
            alive: self.alive,
            data: &self.rec.data,
            global,
        }
    }

    /// The status, derived from the live process: dead → stopped; start fifo still there →
    /// created; frozen → paused; otherwise running.
    pub fn status(&self, global: &GlobalOptions) -> Status {
        if !self.alive {
            Status::Stopped
        } else if self.lock.fifo().exists() {
            Status::Created
        } else if self.backend.is_paused(&self.sandbox(global)) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub fn oci_state(&self, status: Status) -> OciState {
        oci_state(&self.rec, status)
    }

    pub fn require(
        &self,
        global: &GlobalOptions,
        allowed: &[Status],
        what: &str,
    ) -> Result<Status> {
        let st = self.status(global);
        if !allowed.contains(&st) {
            bail!("cannot {what} container {:?}: it is {st}", self.rec.id);
        }
        Ok(st)
    }
}

/// The OCI state for hooks and `state`. Its annotations are config.json's and nothing else
/// (runtime-spec "State"); `hako state` adds the chosen backend as a field of its own.
pub fn oci_state(rec: &Record, status: Status) -> OciState {
    let annotations = rec.annotations.clone();
    OciState {
        oci_version: rec.spec.version().clone(),
        id: rec.id.clone(),
        status,
        pid: (status != Status::Stopped).then_some(rec.pid),
        bundle: rec.bundle.clone(),
        annotations,
    }
}

/// Write a pid file atomically (temp file + rename), as engines expect.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, pid.to_string())
        .map_err(|e| anyhow::anyhow!("cannot write pid file {}: {e}", path.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot write pid file {}: {e}", path.display()))?;
    Ok(())
}

/// Run hooks whose failure is only a warning (poststart, poststop), each on its own.
pub fn run_hooks_warn(kind: &str, hooks: Option<&Vec<oci_spec::runtime::Hook>>, state: &OciState) {
    for h in hooks.into_iter().flatten() {
        if let Err(e) = hako_contract::hooks::run(kind, std::slice::from_ref(h), state) {
            log::warn(&format!("{e:#}"));
        }
    }
}

/// What every backend accepts and sets nothing for, as runc and crun do: one warning line
/// (stderr and `--log`). `linux.resources.memory.kernel` is deprecated by the runtime-spec and
/// Linux 6.1 and later no longer enforce it; 0 is docker's "not set" and passes silently.
pub fn warn_ignored_resources(res: Option<&oci_spec::runtime::LinuxResources>) {
    let kernel = res
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.kernel())
        .filter(|k| *k != 0);
    if let Some(k) = kernel {
        log::warn(&format!(
            "linux.resources.memory.kernel ({k}) is ignored: the runtime-spec deprecates it and \
             Linux 6.1 and later do not enforce it"
        ));
    }
}
