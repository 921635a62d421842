//! state, list, features, spec: reading about containers and the runtime.

use super::{oci_state, Ctx};
use crate::backends;
use crate::cli::{ListArgs, SpecArgs};
use anyhow::{bail, Context, Result};
use hako_contract::Status;
use serde_json::json;

/// `hako state`: the OCI state, plus runc's extra fields (rootfs, created, owner) and hako's
/// own `backend` (never an annotation: the state's annotations are config.json's).
pub fn state(ctx: &Ctx, id: &str) -> Result<()> {
    let c = ctx.load(id)?;
    let status = c.status(&ctx.global);
    let mut v = serde_json::to_value(oci_state(&c.rec, status))?;
    if status == Status::Stopped {
        v["pid"] = json!(0);
    }
    let rootfs = c
        .rec
        .spec
        .root()
        .as_ref()
        .map(|r| r.path().display().to_string())
        .unwrap_or_default();
    v["rootfs"] = json!(rootfs);
    v["created"] = json!(c.rec.created);
    v["owner"] = json!("");
    v["backend"] = json!(c.rec.backend);
    crate::out::line(serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

/// `hako list`: every container with its status.
pub fn list(ctx: &Ctx, args: &ListArgs) -> Result<()> {
    let mut rows = Vec::new();
    for id in ctx.store.ids() {
        // A container deleted while we list, or still being created, is just left out.
        let Ok(c) = ctx.load(&id) else { continue };
        let status = c.status(&ctx.global);
        rows.push(json!({
            "id": id,
            "pid": if status == Status::Stopped { 0 } else { c.rec.pid },
            "status": status.to_string(),
            "bundle": c.rec.bundle,
            "rootfs": c.rec.spec.root().as_ref().map(|r| r.path().clone()),
            "created": c.rec.created,
            "owner": c.rec.owner.to_string(),
            "backend": c.rec.backend,
        }));
    }
    if args.quiet {
        for r in &rows {
            crate::out::line(r["id"].as_str().unwrap_or(""))?;
        }
        return Ok(());
    }
    match args.format.as_str() {
        "json" => crate::out::line(serde_json::to_string(&rows)?)?,
        "table" => {
            crate::out::line(format!(
                "{:<24} {:<8} {:<8} {:<10} {:<40} CREATED",
                "ID", "PID", "STATUS", "BACKEND", "BUNDLE"
            ))?;
            for r in &rows {
                crate::out::line(format!(
                    "{:<24} {:<8} {:<8} {:<10} {:<40} {}",
                    r["id"].as_str().unwrap_or(""),
                    r["pid"],
                    r["status"].as_str().unwrap_or(""),
                    r["backend"].as_str().unwrap_or(""),
                    r["bundle"].as_str().unwrap_or(""),
                    r["created"].as_str().unwrap_or("")
                ))?;
            }
        }
        f => bail!("unknown format {f:?}: use table or json"),
    }
    Ok(())
}

/// What hako accepts in config.json and sets nothing for, on every backend, with one warning.
const IGNORED: &[&str] = &[
    "linux.resources.memory.kernel: accepted with one warning and nothing set, as runc and crun \
     do (the runtime-spec deprecates it; Linux 6.1 and later do not enforce it); kernelTCP is \
     not ignored: applied on cgroup v1 by the container backend, refused where it cannot be",
];

/// `hako features` (runtime-spec features.md): the container backend's answer at the top level
/// (what engines read), every built-in backend's own under `io.hako.backends`.
/// `hako microvm warm`: the microvm backend makes or checks the template (hako_microvm::warm)
/// and prints its directory.
#[cfg(feature = "microvm")]
pub fn microvm_warm(ctx: &Ctx, a: &crate::cli::WarmArgs) -> Result<()> {
    let t = hako_microvm::warm(
        &ctx.global.root,
        a.kernel.clone(),
        &a.vcpus.to_string(),
        &a.memory,
        &a.vmm,
    )?;
    match &t.built {
        Some(why) => crate::log::debug(&format!("microvm template made ({why})")),
        None => crate::log::debug("microvm template checked: unchanged"),
    }
    println!("{}", t.dir.display());
    Ok(())
}

#[cfg(not(feature = "microvm"))]
pub fn microvm_warm(_ctx: &Ctx, _a: &crate::cli::WarmArgs) -> Result<()> {
    bail!("this hako was built without the microvm backend")
}

/// `hako microvm prune`: one line per item removed (or, with --dry-run, that would be), with
/// its size on disk, then the total.
#[cfg(feature = "microvm")]
pub fn microvm_prune(ctx: &Ctx, a: &crate::cli::PruneArgs) -> Result<()> {
    let age = hako_microvm::parse_age(&a.older_than)?;
    let gone = hako_microvm::prune(&ctx.global.root, age, a.all, a.dry_run)?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for p in &gone {
        println!("{verb} {} ({}): {}", p.path.display(), p.why, mib(p.bytes));
    }
    let total: u64 = gone.iter().map(|p| p.bytes).sum();
    let items = if gone.len() == 1 { "item" } else { "items" };
    println!("{verb} {} {items}: {} in total", gone.len(), mib(total));
    Ok(())
}

#[cfg(feature = "microvm")]
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

#[cfg(not(feature = "microvm"))]
pub fn microvm_prune(_ctx: &Ctx, _a: &crate::cli::PruneArgs) -> Result<()> {
    bail!("this hako was built without the microvm backend")
}

pub fn features() -> Result<()> {
    let mut per = serde_json::Map::new();
    for b in backends::built_in() {
        let mut f = b.features();
        // The front end accepts these for every backend (see ops::warn_ignored_resources).
        f["io.hako.ignores"] = json!(IGNORED);
        per.insert(b.name().to_string(), f);
    }
    let mut top = per.get("container").cloned().unwrap_or_else(|| json!({}));
    top["ociVersionMin"] = json!("1.0.0");
    top["ociVersionMax"] = json!("1.2.0");
    top["hooks"] = json!([
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop"
    ]);
    let mut ann = top["annotations"].as_object().cloned().unwrap_or_default();
    ann.insert(
        "io.hako.backends".into(),
        json!(per.keys().cloned().collect::<Vec<_>>().join(",")),
    );
    top["annotations"] = json!(ann);
    top["io.hako.backends"] = serde_json::Value::Object(per);
    crate::out::line(serde_json::to_string_pretty(&top)?)?;
    Ok(())
}

/// `hako spec`: a template config.json (busybox `sh` on a terminal, as runc writes).
pub fn spec(args: &SpecArgs, rootless: bool) -> Result<()> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        bail!("{} exists already: remove it first", path.display());
    }
    let spec = if rootless {
        // SAFETY: getuid/getgid cannot fail.
        oci_spec::runtime::Spec::rootless(unsafe { libc::getuid() }, unsafe { libc::getgid() })
    } else {
        oci_spec::runtime::Spec::default()
    };
    let mut spec = spec;
    spec.set_hostname(Some("hako".into()));
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
