//! The sandbox's host cgroup: one rule for when it exists, and the operations every backend
//! with one gets for free (the `Backend` defaults for pause, resume, update and `ps`; [`kill`]
//! for kill with a thaw). Kept in state.json under the backend data's `"cgroup"` key.
//!
//! The rule ([`make`]): the cgroup is `linux.cgroupsPath`, else hako's default path for the id.
//! - A backend that pauses and kills through it ([`Need::Always`]: container, sentry, microvm)
//!   always makes one, as runc does.
//! - A backend that can do without ([`Need::WhenAsked`]: wasm, whose warm start pays for every
//!   cgroupfs write) makes one only when the spec asks: a cgroupsPath, or any resource set.
//! - Rootless, one that cannot be made (no delegated subtree, no writable v1 hierarchy) is no
//!   error when the spec sets no limit: the sandbox runs in the caller's cgroup
//!   ([`CgroupManager::make_for_sandbox`]).

use crate::{CreateRequest, LinuxResources, Sandbox};
use anyhow::{bail, Context, Result};
pub use hako_linux::CgroupManager;

/// Whether a backend needs a cgroup for every sandbox (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Always,
    WhenAsked,
}

/// True when `r` sets anything at all (an empty object, or only empty lists, sets nothing).
pub fn resources_set(r: &LinuxResources) -> bool {
    let v = serde_json::to_value(r).unwrap_or_default();
    v.as_object().is_some_and(|o| {
        o.values().any(|x| match x {
            serde_json::Value::Null => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(m) => m.values().any(|y| !y.is_null()),
            _ => true,
        })
    })
}

/// The sandbox's cgroup, made by the rule above, with `apply` written to it (the spec's
/// resources, or the part of them this backend applies on the host). On error nothing is left.
pub fn make(
    req: &CreateRequest,
    need: Need,
    apply: Option<&LinuxResources>,
) -> Result<Option<CgroupManager>> {
    let linux = req.spec.linux().as_ref();
    let path = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let res = linux.and_then(|l| l.resources().as_ref());
    let asked = path.as_deref().is_some_and(|p| !p.is_empty()) || res.is_some_and(resources_set);
    if need == Need::WhenAsked && !asked {
        return Ok(None);
    }
    // SAFETY: geteuid cannot fail.
    let rootless = req.global.rootless || unsafe { libc::geteuid() } != 0;
    let Some(cg) = CgroupManager::make_for_sandbox(
        path.as_deref(),
        req.id,
        req.global.systemd_cgroup,
        rootless,
        res,
        req.global.debug,
    )?
    else {
        return Ok(None);
    };
    if let Some(r) = apply {
        if let Err(e) = cg.apply(r) {
            let _ = cg.destroy();
            return Err(e);
        }
    }
    Ok(Some(cg))
}

/// The cgroup a `create` of this sandbox made, found from the id and the spec alone (for
/// [`crate::Backend::delete_orphan`]): at `linux.cgroupsPath`, or the default path for the id.
/// None when the path does not resolve: such a create failed before it made anything.
pub fn orphan(sb: &Sandbox) -> Option<CgroupManager> {
    let path = sb
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    CgroupManager::new(path.as_deref(), sb.id, sb.global.systemd_cgroup).ok()
}

/// The cgroup `create` recorded for `sb`, if any.
pub fn of(sb: &Sandbox) -> Option<CgroupManager> {
    match sb.data.get("cgroup") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone()).ok(),
        _ => None,
    }
}

fn needed(backend: &str, sb: &Sandbox, what: &str) -> Result<CgroupManager> {
    match of(sb) {
        Some(cg) => Ok(cg),
        None => bail!(
            "{what}: the {backend} sandbox {} has no cgroup of its own",
            sb.id
        ),
    }
}

/// Freeze the sandbox.
pub fn pause(backend: &str, sb: &Sandbox) -> Result<()> {
    if !sb.alive {
        bail!("container {} is not running", sb.id);
    }
    needed(backend, sb, "pause")?.freeze()
}

/// Thaw the sandbox.
pub fn resume(backend: &str, sb: &Sandbox) -> Result<()> {
    needed(backend, sb, "resume")?.thaw()
}

/// True when the sandbox's freezer holds it.
pub fn is_paused(sb: &Sandbox) -> bool {
    sb.alive && of(sb).is_some_and(|c| c.is_frozen())
}

/// Write new resources (checked first) to the sandbox's cgroup.
pub fn update(backend: &str, sb: &Sandbox, resources: &LinuxResources) -> Result<()> {
    CgroupManager::check(resources)?;
    needed(backend, sb, "update")?.apply(resources)
}

/// Pids in the sandbox's cgroup; without one, the host process alone while it lives.
pub fn pids(sb: &Sandbox) -> Result<Vec<i32>> {
    match of(sb) {
        Some(cg) => cg.pids(),
        None => Ok(if sb.alive { vec![sb.pid] } else { vec![] }),
    }
}

/// `kill`: `signal` to the host process, or with `all` to every process in the cgroup (frozen
/// meanwhile, so a forking process cannot slip out; the host process too when the cgroup is
/// gone). A frozen sandbox holds SIGKILL back: it is thawed so the signal is delivered.
pub fn kill(sb: &Sandbox, signal: i32, all: bool) -> Result<()> {
    let cg = of(sb);
    if all {
        if let Some(cg) = &cg {
            cg.kill_all(signal)?;
        }
        let in_cgroup = cg
            .as_ref()
            .is_some_and(|c| c.pids().unwrap_or_default().contains(&sb.pid));
        if sb.alive && !in_cgroup {
            // SAFETY: plain kill of the sandbox's own host process; one already gone is fine.
            unsafe { libc::kill(sb.pid, signal) };
        }
    } else {
        if !sb.alive {
            bail!("container {} is not running", sb.id);
        }
        // SAFETY: plain kill of the sandbox's own host process.
        if unsafe { libc::kill(sb.pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sending signal {signal} to {}", sb.pid));
        }
    }
    if signal == libc::SIGKILL {
        thaw_if_frozen(cg.as_ref());
    }
    Ok(())
}

/// After a SIGKILL: thaw a frozen cgroup, whose tasks die only once thawed.
pub fn thaw_if_frozen(cg: Option<&CgroupManager>) {
    if let Some(cg) = cg {
        if cg.is_frozen() {
            let _ = cg.thaw();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_resources_set() {
        let r = |v: serde_json::Value| -> LinuxResources { serde_json::from_value(v).unwrap() };
        assert!(!resources_set(&r(serde_json::json!({}))));
        assert!(!resources_set(&r(serde_json::json!({"devices": []}))));
        assert!(resources_set(&r(
            serde_json::json!({"memory": {"limit": 1048576}})
        )));
        assert!(resources_set(&r(
            serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]})
        )));
    }
}
