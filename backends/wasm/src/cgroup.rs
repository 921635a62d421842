//! The wasm host process's cgroup, by the rule every backend follows (`hako_contract::cgroup`):
//! same path rules, same resource writes, same freezer as a container's, so limits hold on the
//! host exactly as they would for a container.
//!
//! The wasm backend needs a cgroup only when the spec asks for one (`linux.cgroupsPath`, which
//! every engine sends, or any `linux.resources`): a bare bundle runs without one, which keeps
//! the warm start free of a dozen cgroupfs writes. Without a cgroup, pause/resume fall back to
//! SIGSTOP/SIGCONT.

use anyhow::{Context, Result};
use hako_contract::cgroup::{self, resources_set, CgroupManager, Need};
use hako_contract::CreateRequest;
use oci_spec::runtime::Spec;

/// The sandbox's cgroup, made and with the spec's resources written, or None when the spec asks
/// for none. On error nothing is left.
pub fn made(req: &CreateRequest) -> Result<Option<CgroupManager>> {
    let res = req
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    cgroup::make(req, Need::WhenAsked, res)
}

/// Refuse resources the host cannot honour (read-only).
pub fn check(spec: &Spec) -> Result<()> {
    if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        if resources_set(res) {
            CgroupManager::check(res).context("linux.resources")?;
        }
    }
    Ok(())
}
