//! create, start, run, delete: the runtime-spec lifecycle.

use super::{oci_state, run_hooks_warn, write_pid_file, Ctx, Loaded};
use crate::cli::{CreateArgs, DeleteArgs, RunArgs};
use crate::store::{Locked, Record};
use crate::{backends, bundle, log, wait};
use anyhow::{bail, Context, Result};
use hako_contract::fault::point;
use hako_contract::{hooks, orphan, proc, start_gate, Backend, CreateRequest, Sandbox, Status};
use std::path::Path;
use std::time::{Duration, Instant};

/// What `create` leaves for `run`.
pub struct CreatedContainer {
    pub pid: i32,
}

/// `hako create`: validate everything first (bad input leaves nothing behind), then make the
/// state directory, let the backend build the sandbox, record it, run the hooks, write the pid
/// file. Any failure after the directory exists undoes all of it.
pub fn create(ctx: &Ctx, args: &CreateArgs) -> Result<CreatedContainer> {
    crate::store::validate_id(&args.id)?;
    create_loaded(ctx, args, bundle::load(&args.bundle)?, None)
}

fn create_loaded(
    ctx: &Ctx,
    args: &CreateArgs,
    b: bundle::Bundle,
    console: Option<&Path>,
) -> Result<CreatedContainer> {
    let name = bundle::choose_backend(&b.spec, ctx.backend_flag.as_deref())?;
    let backend = backends::get(&name)?;
    // First, before anything is said or made: this may re-execute hako (the same command, from
    // a sealed view of its binary), which then does all of this again.
    if backend.runs_hako_code_inside() {
        crate::exe::ensure_sealed()?;
    }
    bundle::check_annotations(&b.spec, &name, backend.annotations())?;
    let terminal = b
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let console = console.or(args.console_socket.as_deref());
    if terminal && console.is_none() {
        bail!("process.terminal is true but no --console-socket was given");
    }
    if !terminal && args.console_socket.is_some() {
        bail!("--console-socket was given but process.terminal is false");
    }
    backend.check(&b.spec, &b.dir)?;
    super::warn_ignored_resources(b.spec.linux().as_ref().and_then(|l| l.resources().as_ref()));
    log::debug(&format!("container {}: backend {name}", args.id));
    point("create:checked");

    let lock = ctx.store.create(&args.id)?;
    point("create:state-dir");
    let mut made = Made {
        lock: Some(lock),
        backend: &*backend,
        pid: None,
        rec: None,
        ctx,
    };
    let mut rec = Record {
        id: args.id.clone(),
        backend: name,
        pid: 0,
        pid_start: None,
        bundle: b.dir.clone(),
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        // SAFETY: geteuid cannot fail.
        owner: unsafe { libc::geteuid() },
        annotations: b.spec.annotations().clone().unwrap_or_default(),
        spec: b.spec.clone(),
        data: serde_json::Value::Null,
    };
    // Before the backend makes anything: if this process dies from here on, `delete --force`
    // finds the backend, the spec (its cgroupsPath) and the id in it.
    made.lock().write_intent(&rec)?;
    point("create:intent");
    let fifo = made.lock().fifo();
    start_gate::make(&fifo)?;
    point("create:fifo");
    let req = CreateRequest {
        id: &args.id,
        bundle: &b.dir,
        spec: &b.spec,
        state_dir: &made.lock().dir,
        start_fifo: &fifo,
        console_socket: console,
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        global: &ctx.global,
    };
    let created = backend.create(&req)?;
    made.pid = Some(created.pid);
    point("create:backend");
    rec.pid = created.pid;
    rec.pid_start = proc::start_time(created.pid);
    rec.data = created.data;
    made.rec = Some(rec.clone());
    made.lock().write(&rec)?;
    point("create:state");

    let state = oci_state(&rec, Status::Created);
    let h = b.spec.hooks().clone().unwrap_or_default();
    if !backend.runs_container_hooks() {
        for (kind, list) in [
            ("prestart", h.prestart()),
            ("createRuntime", h.create_runtime()),
            ("createContainer", h.create_container()),
        ] {
            hooks::run(kind, list.as_deref().unwrap_or(&[]), &state)?;
        }
    }
    point("create:hooks");
    if let Some(p) = &args.pid_file {
        write_pid_file(p, created.pid)?;
    }
    point("create:pid-file");
    made.keep();
    Ok(CreatedContainer { pid: created.pid })
}

/// Undo a half-made container unless [`Made::keep`] is called.
struct Made<'a> {
    lock: Option<Locked>,
    backend: &'a dyn Backend,
    pid: Option<i32>,
    rec: Option<Record>,
    ctx: &'a Ctx,
}

impl Made<'_> {
    fn lock(&self) -> &Locked {
        self.lock.as_ref().expect("lock held until keep or drop")
    }

    fn keep(&mut self) {
        self.lock = None;
    }
}

impl Drop for Made<'_> {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else { return };
        let start = self.pid.and_then(proc::start_time);
        if let Some(pid) = self.pid {
            kill_and_wait(pid, start);
        }
        if let Some((pid, start)) = orphan::host_pid(&lock.dir) {
            kill_and_wait(pid, Some(start));
        }
        let empty = serde_json::Value::Null;
        let spec_default;
        let (spec, data, bundle) = match &self.rec {
            Some(r) => (&r.spec, &r.data, r.bundle.as_path()),
            None => {
                spec_default = oci_spec::runtime::Spec::default();
                (&spec_default, &empty, Path::new("/"))
            }
        };
        let sb = Sandbox {
            id: lock.dir.file_name().and_then(|n| n.to_str()).unwrap_or(""),
            bundle,
            spec,
            state_dir: &lock.dir,
            pid: self.pid.unwrap_or(0),
            alive: false,
            data,
            global: &self.ctx.global,
        };
        if let Err(e) = self.backend.delete(&sb) {
            log::warn(&format!("cleaning up after a failed create: {e:#}"));
        }
        let _ = lock.remove();
    }
}

/// SIGKILL a process that is not (necessarily) our child and wait until it is gone.
/// A pid without a start time is never signalled: it cannot be told from a recycled one.
pub fn kill_and_wait(pid: i32, start: Option<u64>) {
    if start.is_none() || !proc::is_alive(pid, start) {
        return;
    }
    // SAFETY: kill with a pid we verified.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc::is_alive(pid, start) && Instant::now() < deadline {
        // Reap it if it is our child (create's error path); ignore ECHILD otherwise.
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `hako start`: release the created workload, then run poststart hooks.
pub fn start(ctx: &Ctx, id: &str) -> Result<()> {
    let c = ctx.load(id)?;
    c.require(&ctx.global, &[Status::Created], "start")?;
    point("start:loaded");
    let h = c.rec.spec.hooks().clone().unwrap_or_default();
    if !c.backend.runs_container_hooks() {
        hooks::run(
            "startContainer",
            h.start_container().as_deref().unwrap_or(&[]),
            &c.oci_state(Status::Created),
        )?;
    }
    let (pid, st) = (c.rec.pid, c.rec.pid_start);
    start_gate::release(&c.lock.fifo(), || proc::is_alive(pid, st))?;
    point("start:released");
    run_hooks_warn(
        "poststart",
        h.poststart().as_ref(),
        &c.oci_state(Status::Running),
    );
    Ok(())
}

/// `hako run`: create + start, then (unless detached) wait, delete, and exit with the
/// workload's status.
pub fn run(ctx: &Ctx, args: &RunArgs) -> Result<i32> {
    if !args.detach {
        wait::become_subreaper();
    }
    crate::store::validate_id(&args.create.id)?;
    // A terminal in the foreground with no engine: hako holds the pty master itself.
    let b = bundle::load(&args.create.bundle)?;
    let terminal = b
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let own_console = if terminal && args.create.console_socket.is_none() {
        if args.detach {
            bail!("process.terminal is true: a detached run needs --console-socket");
        }
        std::fs::create_dir_all(ctx.store.root())?;
        Some(wait::ConsoleListener::new(ctx.store.root())?)
    } else {
        None
    };
    let created = create_loaded(ctx, &args.create, b, own_console.as_ref().map(|l| l.path()))?;
    if let Err(e) = start(ctx, &args.create.id) {
        let _ = delete(
            ctx,
            &DeleteArgs {
                force: true,
                id: args.create.id.clone(),
            },
        );
        return Err(e);
    }
    if args.detach {
        return Ok(0);
    }
    wait::block_signals()?;
    let relay = match own_console {
        Some(l) => Some(wait::relay_pty(l.receive()?)),
        None => None,
    };
    let code = wait::wait_forwarding(created.pid);
    if let Some(out) = relay {
        wait::drain(out);
        wait::restore_terminal();
    }
    let code = code?;
    if !args.keep {
        delete(
            ctx,
            &DeleteArgs {
                force: true,
                id: args.create.id.clone(),
            },
        )?;
    }
    Ok(code)
}

/// `hako delete`: a stopped or created container goes; a running one only with --force (it is
/// killed first). The backend removes what it made, then poststop hooks run, then the state.
pub fn delete(ctx: &Ctx, args: &DeleteArgs) -> Result<()> {
    let c = match load_for_delete(ctx, args) {
        Ok(c) => c,
        Err(e) => {
            // With --force, as with runc: a container that does not exist is already deleted,
            // and a directory a create left before it wrote its intent (nothing else exists
            // yet then) is removed, once no create holds it.
            let dir = ctx.store.dir(&args.id);
            if args.force
                && crate::store::validate_id(&args.id).is_ok()
                && !e.is::<crate::store::StillCreating>()
            {
                if dir.is_dir() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("cannot remove {}", dir.display()))?;
                }
                return Ok(());
            }
            return Err(e);
        }
    };
    point("delete:loaded");
    let status = c.status(&ctx.global);
    match status {
        Status::Stopped | Status::Created => {}
        _ if args.force => {}
        _ => bail!(
            "cannot delete container {:?}: it is {status} (use --force)",
            args.id
        ),
    }
    finish(ctx, c)
}

/// [`Ctx::load`] for `delete`; with --force it waits (a while) for a create in progress.
fn load_for_delete(ctx: &Ctx, args: &DeleteArgs) -> Result<Loaded> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ctx.load(&args.id) {
            Err(e)
                if args.force
                    && e.is::<crate::store::StillCreating>()
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Kill what is left, let the backend clean up, run poststop hooks, drop the state.
fn finish(ctx: &Ctx, c: Loaded) -> Result<()> {
    let sb = c.sandbox(&ctx.global);
    if c.alive {
        if c.backend.is_paused(&sb) {
            let _ = c.backend.resume(&sb);
        }
        let _ = c.backend.kill(&sb, libc::SIGKILL, true);
        kill_and_wait(c.rec.pid, c.rec.pid_start);
    }
    point("delete:killed");
    let sb = Sandbox { alive: false, ..sb };
    if c.lock.orphan {
        // Its create died before state.json: a host process it forked may be waiting on the
        // start fifo for ever, and what the backend made is found from the id and the spec.
        if let Some((pid, start)) = orphan::host_pid(&c.lock.dir) {
            kill_and_wait(pid, Some(start));
        }
        c.backend.delete_orphan(&sb)?;
    } else {
        c.backend.delete(&sb)?;
    }
    point("delete:backend");
    // A container whose create died never ran its create hooks: no poststop either.
    if !c.lock.orphan {
        let h = c.rec.spec.hooks().clone().unwrap_or_default();
        run_hooks_warn(
            "poststop",
            h.poststop().as_ref(),
            &c.oci_state(Status::Stopped),
        );
    }
    point("delete:hooks");
    c.lock.remove()
}
