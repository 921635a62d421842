//! hako's wasm backend: WASI preview 1 core modules and preview 2 (wasi:cli/command)
//! components on Wasmtime, one host process per sandbox. See docs/backends/wasm.md.

mod cache;
mod caps;
mod cgroup;
mod host;
mod knobs;
mod plan;

use anyhow::{bail, Context, Result};
use hako_contract::{Backend, CreateRequest, Created, Sandbox, Spec};
use std::path::Path;

pub use host::TRAP_EXIT;
pub use knobs::KEYS as ANNOTATIONS;

/// The wasm backend. Stateless: everything lives in the host process and state.json.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmBackend;

fn pid_ok(sb: &Sandbox) -> Result<()> {
    if !sb.alive {
        bail!("the wasm host process of {} is not running", sb.id);
    }
    Ok(())
}

fn signal(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) on the sandbox's own pid, checked alive by the front end.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sending signal {sig} to pid {pid}"));
    }
    Ok(())
}

/// Wait (up to 2 s) until `pid` is stopped (or no longer stopped).
fn wait_state(pid: i32, stopped: bool) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match hako_contract::proc::state_letter(pid) {
            None | Some('Z') | Some('X') => bail!("the wasm host process {pid} exited"),
            Some(c) if (c == 'T') == stopped => return Ok(()),
            Some(_) => {}
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the wasm host process {pid} did not {} within 2s",
                if stopped { "stop" } else { "continue" }
            );
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

impl Backend for WasmBackend {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn annotations(&self) -> &'static [&'static str] {
        knobs::KEYS
    }

    fn check(&self, spec: &Spec, bundle: &Path) -> Result<()> {
        plan::plan(spec, bundle)?;
        cgroup::check(spec)?;
        Ok(())
    }

    fn create(&self, req: &CreateRequest) -> Result<Created> {
        host::create(req)
    }

    fn kill(&self, sb: &Sandbox, sig: i32, all: bool) -> Result<()> {
        if hako_contract::cgroup::of(sb).is_none() || !all {
            pid_ok(sb)?;
        }
        hako_contract::cgroup::kill(sb, sig, all)
    }

    fn pause(&self, sb: &Sandbox) -> Result<()> {
        pid_ok(sb)?;
        match hako_contract::cgroup::of(sb) {
            Some(mgr) => mgr.freeze(),
            None => {
                signal(sb.pid, libc::SIGSTOP)?;
                wait_state(sb.pid, true)
            }
        }
    }

    fn resume(&self, sb: &Sandbox) -> Result<()> {
        pid_ok(sb)?;
        match hako_contract::cgroup::of(sb) {
            Some(mgr) => mgr.thaw(),
            None => {
                signal(sb.pid, libc::SIGCONT)?;
                wait_state(sb.pid, false)
            }
        }
    }

    fn is_paused(&self, sb: &Sandbox) -> bool {
        match hako_contract::cgroup::of(sb) {
            Some(mgr) => mgr.is_frozen(),
            None => sb.alive && matches!(hako_contract::proc::state_letter(sb.pid), Some('T')),
        }
    }

    fn delete(&self, sb: &Sandbox) -> Result<()> {
        if let Some(mgr) = hako_contract::cgroup::of(sb) {
            mgr.destroy()?;
        }
        Ok(())
    }

    fn delete_orphan(&self, sb: &Sandbox) -> Result<()> {
        // A cgroup only where create makes one: a cgroupsPath or resources in the spec.
        let linux = sb.spec.linux().as_ref();
        let wanted = linux.is_some_and(|l| l.cgroups_path().is_some() || l.resources().is_some());
        match hako_contract::cgroup::orphan(sb).filter(|_| wanted) {
            Some(cg) => cg.destroy(),
            None => Ok(()),
        }
    }

    fn features(&self) -> serde_json::Value {
        serde_json::json!({
            "wasi": ["preview1", "preview2"],
            "engine": "wasmtime 48",
            "annotations": knobs::KEYS,
            "mountTypes": ["bind", "tmpfs"],
            "mountTypesNotApplicable": plan::NOT_APPLICABLE_MOUNTS,
            "resources": ["memory.limit (linear memory and tables, and the cgroup)", "cpu.quota/period (epochs, and the cgroup)", "every cgroup resource via the shared cgroup manager (hako-linux)"],
            "terminal": true,
            "exec": false,
            "io.hako.refuses": [
                "root.path naming the host's / (directly, through .., or a symlink)",
                "--preserve-fds (a WASI module cannot use inherited descriptors)",
                "a process.args[0] that is not a WebAssembly module",
                "rootless: linux.resources limits when the user has no writable cgroup; additionalGids other than the user's own group"
            ],
            "io.hako.rootless": "run by a user directly: the host process enters a user namespace of its own (the spec's ids mapped onto the user's) for its mounts; under rootless podman: podman's namespace; cgroup only where delegated",
        })
    }
}
