//! The wasm host process's cgroup, through the container backend's [`CgroupManager`]: same
//! path rules, same resource writes, same freezer, so limits hold on the host exactly as they
//! would for a container.
//!
//! A sandbox gets a cgroup when the spec asks for one (`linux.cgroupsPath`, which every engine
//! sends) or sets any `linux.resources`; a bare bundle without either runs without one, which
//! keeps the warm start free of a dozen cgroupfs writes. Without a cgroup, pause/resume fall
//! back to SIGSTOP/SIGCONT.

use anyhow::{Context, Result};
use hako_linux::cgroups::CgroupManager;
use oci_spec::runtime::{LinuxResources, Spec};

fn resources_set(r: &LinuxResources) -> bool {
    let v = serde_json::to_value(r).unwrap_or_default();
    // An all-empty resources object serializes to {} or only empty lists.
    v.as_object().is_some_and(|o| {
        o.values().any(|x| match x {
            serde_json::Value::Null => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(m) => m.values().any(|y| !y.is_null()),
            _ => true,
        })
    })
}

/// The sandbox's cgroup, made and with the spec's resources written, or None when the spec asks
/// for no cgroup (or, rootless, when none can be made and the spec sets no limit: the rule of
/// [`CgroupManager::make_for_sandbox`]). On error nothing is left.
pub fn made(
    spec: &Spec,
    id: &str,
    global: &hako_contract::GlobalOptions,
) -> Result<Option<CgroupManager>> {
    let Some(linux) = spec.linux() else {
        return Ok(None);
    };
    let path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let res = linux.resources().as_ref();
    let wants = path.as_deref().is_some_and(|p| !p.is_empty()) || res.is_some_and(resources_set);
    if !wants {
        return Ok(None);
    }
    // SAFETY: geteuid cannot fail.
    let rootless = global.rootless || unsafe { libc::geteuid() } != 0;
    let Some(mgr) = CgroupManager::make_for_sandbox(
        path.as_deref(),
        id,
        global.systemd_cgroup,
        rootless,
        res,
        global.debug,
    )?
    else {
        return Ok(None);
    };
    if let Some(res) = res {
        if let Err(e) = mgr.apply(res) {
            let _ = mgr.destroy();
            return Err(e);
        }
    }
    Ok(Some(mgr))
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

pub fn from_data(data: &serde_json::Value) -> Option<CgroupManager> {
    data.get("cgroup")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
}
