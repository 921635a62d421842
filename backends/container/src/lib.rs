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
    bail, Backend, Context, CreateRequest, Created, ExecRequest, Execed, LinuxResources, Result,
    Sandbox, Spec,
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
        let data = Data::from_sandbox(sb)?;
        if all {
            let mut pids = match &data.cgroup {
                Some(cg) => cg.pids().unwrap_or_default(),
                None => vec![],
            };
            if sb.alive && !pids.contains(&sb.pid) {
                pids.push(sb.pid);
            }
            for p in pids {
                // SAFETY: plain kill; a process that is already gone is fine.
                unsafe { libc::kill(p, signal) };
            }
            // A frozen cgroup holds the signal back: thaw it so SIGKILL is delivered.
            if signal == libc::SIGKILL {
                if let Some(cg) = &data.cgroup {
                    if cg.is_frozen() {
                        let _ = cg.thaw();
                    }
                }
            }
            return Ok(());
        }
        if !sb.alive {
            bail!("container {} is not running", sb.id);
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sb.pid),
            nix::sys::signal::Signal::try_from(signal).ok(),
        )
        .or_else(|e| {
            // Real-time signals are not in nix's enum: send them raw.
            // SAFETY: plain kill.
            if unsafe { libc::kill(sb.pid, signal) } == 0 {
                Ok(())
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("sending signal {signal} to {}", sb.pid))
    }

    fn pids(&self, sb: &Sandbox) -> Result<Vec<i32>> {
        let data = Data::from_sandbox(sb)?;
        match &data.cgroup {
            Some(cg) => cg.pids(),
            None => Ok(if sb.alive { vec![sb.pid] } else { vec![] }),
        }
    }

    fn pause(&self, sb: &Sandbox) -> Result<()> {
        if !sb.alive {
            bail!("container {} is not running", sb.id);
        }
        cgroup_of(sb)?.freeze()
    }

    fn resume(&self, sb: &Sandbox) -> Result<()> {
        cgroup_of(sb)?.thaw()
    }

    fn is_paused(&self, sb: &Sandbox) -> bool {
        sb.alive && cgroup_of(sb).map(|c| c.is_frozen()).unwrap_or(false)
    }

    fn exec(&self, sb: &Sandbox, req: &ExecRequest) -> Result<Execed> {
        exec::exec(sb, req)
    }

    fn update(&self, sb: &Sandbox, resources: &LinuxResources) -> Result<()> {
        CgroupManager::check(resources)?;
        cgroup_of(sb)?.apply(resources)
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

    fn features(&self) -> serde_json::Value {
        check::features()
    }

    fn runs_hako_code_inside(&self) -> bool {
        true
    }
}

fn cgroup_of(sb: &Sandbox) -> Result<CgroupManager> {
    match Data::from_sandbox(sb)?.cgroup {
        Some(c) => Ok(c),
        None => bail!("container {} has no cgroup", sb.id),
    }
}
