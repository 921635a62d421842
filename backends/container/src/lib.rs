//! The container backend: Linux namespaces, cgroups, seccomp — runc's model.
//!
//! `create` clones the container init straight from the calling process (no re-exec): the
//! parent prepares everything that can be prepared before the clone (mount plans, the process
//! plan, the compiled seccomp filter, the cgroup), the child builds its file system view and
//! identity, reports `Ready` over a socketpair and blocks on the start gate. Namespaces joined by
//! path go through a short-lived intermediate process that setns()s and then clones the init
//! with CLONE_PARENT, so the init is still the caller's child.

mod check;
mod create;
mod exec;
pub mod namespaces;
pub mod process;
pub mod rootfs;
mod sec;
pub mod sync;

use hako_contract::{
    Backend, Context, CreateRequest, Created, ExecRequest, Execed, Result, Sandbox, Spec,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use hako_linux::{caps, CgroupManager};

/// What the backend remembers between invocations (stored in state.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Data {
    pub cgroup: Option<CgroupManager>,
    pub rootfs: PathBuf,
    /// With a shared rootfsPropagation only: the ids of the host's mounts at or below the
    /// rootfs before the container was made. `delete` unmounts the others (what the container
    /// propagated back) and nothing at all when this is None.
    #[serde(default)]
    pub host_mounts_before: Option<Vec<u64>>,
}

impl Data {
    fn from_sandbox(sb: &Sandbox) -> Result<Data> {
        serde_json::from_value(sb.data.clone()).context("container backend data in state.json")
    }
}

/// The `container` backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct ContainerBackend;

impl ContainerBackend {
    pub fn new() -> Self {
        ContainerBackend
    }
}

impl Backend for ContainerBackend {
    fn name(&self) -> &'static str {
        "container"
    }

    fn check(&self, spec: &Spec, bundle: &Path) -> Result<()> {
        check::check(spec, bundle)
    }

    fn create(&self, req: &CreateRequest) -> Result<Created> {
        create::create(req)
    }

    fn runs_container_hooks(&self) -> bool {
        true
    }

    fn kill(&self, sb: &Sandbox, signal: i32, all: bool) -> Result<()> {
        hako_contract::cgroup::kill(sb, signal, all)
    }

    fn exec(&self, sb: &Sandbox, req: &ExecRequest) -> Result<Execed> {
        exec::exec(sb, req)
    }

    fn delete(&self, sb: &Sandbox) -> Result<()> {
        let data = match Data::from_sandbox(sb) {
            Ok(d) => d,
            // A half-made sandbox may have no data: nothing of ours to remove.
            Err(_) if sb.data.is_null() => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(cg) = &data.cgroup {
            cg.destroy()?;
        }
        if let Some(before) = &data.host_mounts_before {
            rootfs::unmount_new_below(&data.rootfs, before)?;
        }
        Ok(())
    }

    fn delete_orphan(&self, sb: &Sandbox) -> Result<()> {
        // The init dies with its sync socket when `create` dies, or is in the cgroup.
        match hako_contract::cgroup::orphan(sb) {
            Some(cg) => cg.destroy(),
            None => Ok(()),
        }
    }

    fn features(&self) -> serde_json::Value {
        check::features()
    }

    fn runs_hako_code_inside(&self) -> bool {
        true
    }
}
