//! The contract between hako's front end and its backends.
//!
//! The front end (the `hako` binary) parses the CLI, loads and validates the bundle, keeps the
//! state store and runs the hooks that happen outside the sandbox. A backend builds and drives one
//! kind of sandbox. It never sees the CLI or the state store; it gets a [`CreateRequest`] or a
//! [`Sandbox`] and answers with plain data.
//!
//! The lifecycle every backend follows (runtime-spec "Lifecycle"):
//! 1. `create` forks the host process whose lifetime *is* the sandbox (container init, sentry
//!    supervisor, VMM, wasm host), prepares everything it can, and leaves that process blocked in
//!    [`start_gate::wait`] on the request's start fifo. It returns that process's pid; the process
//!    is a child of the caller (so `hako run` can wait for it) and must not depend on the caller
//!    staying alive (so `hako create` can exit).
//! 2. `hako start` opens the fifo ([`start_gate::release`]); the process runs the workload.
//! 3. The process exits with the workload's status.
//! 4. `delete` removes what the backend made (cgroups, mounts, images, taps).

pub mod cgroup;
pub mod console;
pub mod fault;
pub mod formats;
pub mod hooks;
pub mod host_process;
pub mod orphan;
pub mod proc;
pub mod signal;
pub mod start_gate;
pub mod state;

use std::path::{Path, PathBuf};

pub use anyhow::{anyhow, bail, Context, Error, Result};
pub use oci_spec::runtime::{LinuxResources, Process, Spec};
pub use state::{OciState, Status};

/// Annotation that chooses the backend.
pub const BACKEND_ANNOTATION: &str = "io.hako.backend";
/// Prefix of every hako annotation; unknown keys under it are an error.
pub const ANNOTATION_PREFIX: &str = "io.hako.";

/// Global options of the CLI that a backend may need to honour.
#[derive(Debug, Clone, Default)]
pub struct GlobalOptions {
    /// The state root (`--root`), e.g. `/run/hako`. Backends may keep caches below it.
    pub root: PathBuf,
    pub rootless: bool,
    pub systemd_cgroup: bool,
    pub debug: bool,
}

/// Everything a backend needs to create a sandbox.
#[derive(Debug)]
pub struct CreateRequest<'a> {
    pub id: &'a str,
    /// Absolute path of the bundle directory.
    pub bundle: &'a Path,
    /// The parsed and front-end-validated config.json, with `root.path` made absolute.
    pub spec: &'a Spec,
    /// `<root>/<id>`: exists, owned by this container, removed by the front end on delete.
    pub state_dir: &'a Path,
    /// The fifo the workload's host process must block on (see [`start_gate`]).
    pub start_fifo: &'a Path,
    /// `--console-socket`: when `process.terminal` is true, the pty master goes there.
    pub console_socket: Option<&'a Path>,
    /// `--preserve-fds N`: fds 3..3+N are passed to the workload.
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub global: &'a GlobalOptions,
}

/// What `create` hands back. `data` is stored verbatim in state.json and handed back in
/// [`Sandbox::data`] on every later call: it is the backend's own memory between invocations.
#[derive(Debug, Clone)]
pub struct Created {
    pub pid: i32,
    pub data: serde_json::Value,
}

/// A sandbox that `create` made, as later commands see it.
#[derive(Debug)]
pub struct Sandbox<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    pub state_dir: &'a Path,
    /// The host pid returned by `create` (may be dead by now).
    pub pid: i32,
    /// True when `pid` is still the process `create` started.
    pub alive: bool,
    pub data: &'a serde_json::Value,
    pub global: &'a GlobalOptions,
}

/// `hako exec`: one more process in a running sandbox.
#[derive(Debug)]
pub struct ExecRequest<'a> {
    pub process: &'a Process,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: u32,
}

/// The process `exec` started: a child of the caller, which waits for it or not (`--detach`).
#[derive(Debug, Clone, Copy)]
pub struct Execed {
    pub pid: i32,
}

/// One backend. Methods with a default body are optional capabilities: the default is a clear
/// error naming the backend, never a silent success.
pub trait Backend {
    /// `container`, `sentry`, `microvm` or `wasm`.
    fn name(&self) -> &'static str;

    /// The `io.hako.<name>.*` annotation keys this backend understands.
    fn annotations(&self) -> &'static [&'static str] {
        &[]
    }

    /// Refuse what this backend cannot honour (a security setting, a knob, a device) before
    /// anything is made. Must not change anything on the host.
    fn check(&self, spec: &Spec, bundle: &Path) -> Result<()>;

    /// Build the sandbox and leave its host process blocked on the start fifo. On error, leave
    /// nothing behind (no process, mount, cgroup, device, file outside `state_dir`).
    fn create(&self, req: &CreateRequest) -> Result<Created>;

    /// True when the backend runs the create-time hooks itself, in order: `prestart` and
    /// `createRuntime` on the host once the sandbox's namespaces exist, then `createContainer`
    /// in the sandbox's own context, and later `startContainer` after the start gate opens and
    /// before the workload runs (state from [`OciState::for_create`]). Otherwise the front end
    /// runs them on the host: the first three right after `create` returns, startContainer in
    /// `start` just before the gate opens.
    fn runs_container_hooks(&self) -> bool {
        false
    }

    /// Whether processes of this backend run hako's own code inside the sandbox's namespaces
    /// before they execve (the container backend's init and exec'd processes). The front end
    /// then runs `create` and `exec` only from a sealed view of its binary (`src/exe.rs`), so
    /// that a workload that gets hold of that binary can never write it. Backends whose
    /// workload cannot reach the host's `/proc` or binary (a user-space kernel, a VM, a wasm
    /// module) skip the cost of that re-execution.
    fn runs_hako_code_inside(&self) -> bool {
        false
    }

    /// Deliver `signal` to the workload (all of its processes with `all`).
    fn kill(&self, sb: &Sandbox, signal: i32, all: bool) -> Result<()>;

    /// Host pids of the sandbox's processes (for `ps`): its cgroup's (see [`cgroup`]), else the
    /// host process while it lives.
    fn pids(&self, sb: &Sandbox) -> Result<Vec<i32>> {
        cgroup::pids(sb)
    }

    /// Freeze the sandbox's cgroup (see [`cgroup`]).
    fn pause(&self, sb: &Sandbox) -> Result<()> {
        cgroup::pause(self.name(), sb)
    }

    fn resume(&self, sb: &Sandbox) -> Result<()> {
        cgroup::resume(self.name(), sb)
    }

    /// True when the sandbox is frozen by `pause`.
    fn is_paused(&self, sb: &Sandbox) -> bool {
        cgroup::is_paused(sb)
    }

    fn exec(&self, _sb: &Sandbox, _req: &ExecRequest) -> Result<Execed> {
        bail!("exec is not supported by the {} backend", self.name())
    }

    /// Write new resources to the sandbox's cgroup (see [`cgroup`]).
    fn update(&self, sb: &Sandbox, resources: &LinuxResources) -> Result<()> {
        cgroup::update(self.name(), sb, resources)
    }

    /// Remove everything the backend made. Called once the host process is gone (the front end
    /// kills it first on `delete --force`). Must be idempotent: a half-made sandbox is deleted too.
    fn delete(&self, sb: &Sandbox) -> Result<()>;

    /// Remove what a `create` that died before state.json was written may have left: `sb.data`
    /// is null, `sb.spec` is the spec the front end noted before calling `create` (or an empty
    /// one), `sb.alive` is false and any host process noted with [`orphan::note_host_pid`] is
    /// already dead. Everything must be found from the id, the spec and `sb.state_dir` (the
    /// cgroup at the spec's cgroupsPath or the backend's default path for the id, files below
    /// the state directory). Idempotent; what is not there is fine. The default is
    /// [`Backend::delete`], enough for a backend that makes nothing outside its state directory.
    fn delete_orphan(&self, sb: &Sandbox) -> Result<()> {
        self.delete(sb)
    }

    /// This backend's part of `hako features` (runtime-spec features.md shape).
    fn features(&self) -> serde_json::Value;
}
