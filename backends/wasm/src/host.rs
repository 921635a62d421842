//! The wasm host process: forked by `create`, it prepares everything (cgroup, mounts, module
//! from the cache or compiled, linked against WASI, WASI context, user and capabilities), tells
//! its parent "ready" or one clear error over a pipe, then blocks on the start gate and runs
//! the module. Its exit status is the module's.

use crate::cache::{self, Cache, Lookup};
use crate::plan::{self, NsMount, Plan};
use anyhow::{anyhow, bail, Context, Result};
use hako_contract::{console, CreateRequest, Created};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{
    Config, Engine, InstancePre, Linker, Module, Store, StoreLimits, StoreLimitsBuilder,
    UpdateDeadline,
};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Exit status of a module that trapped (as the `wasmtime` CLI: 128 + SIGABRT).
pub const TRAP_EXIT: i32 = 134;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Module,
    Component,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Component => "component",
        }
    }
}

/// Core module (version 1) or component (layer 1)?
pub fn kind_of(bytes: &[u8]) -> Result<Kind> {
    match bytes.get(4..8) {
        Some([1, 0, 0, 0]) => Ok(Kind::Module),
        Some([0x0d, 0, 1, 0]) => Ok(Kind::Component),
        Some(v) => bail!("unsupported WebAssembly version/layer {v:02x?}: core modules (version 1) and components (layer 1) are supported"),
        None => bail!("the module is truncated (shorter than its 8-byte header)"),
    }
}

pub fn engine_config(plan: &Plan) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.parallel_compilation(true);
    if plan.knobs.fuel.is_some() {
        c.consume_fuel(true);
    }
    if needs_epochs(plan) {
        c.epoch_interruption(true);
    }
    c
}

fn needs_epochs(plan: &Plan) -> bool {
    plan.knobs.timeout_ms.is_some() || plan.cpu.is_some()
}

struct P1State {
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
    limits: StoreLimits,
}

struct P2State {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

enum Ready {
    Module(Store<P1State>, InstancePre<P1State>),
    Component(Store<P2State>, CommandPre<P2State>),
}

/// What the host process tells `create` about its set-up (stored in state.json).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Report {
    pub kind: String,
    /// hit | miss | off | rejected (a damaged entry was replaced)
    pub cache: String,
    pub cache_note: Option<String>,
    pub entry: String,
    /// Microseconds spent in each set-up step (engine, load, link, total).
    pub setup_us: std::collections::BTreeMap<String, u64>,
}

enum Compiled {
    Module(Module),
    Component(Component),
}

impl Compiled {
    fn serialize(&self) -> Result<Vec<u8>> {
        Ok(match self {
            Compiled::Module(m) => m.serialize()?,
            Compiled::Component(c) => c.serialize()?,
        })
    }
}

fn compile(engine: &Engine, kind: Kind, bytes: &[u8], entry: &str) -> Result<Compiled> {
    let r = match kind {
        Kind::Module => Module::new(engine, bytes).map(Compiled::Module),
        Kind::Component => Component::new(engine, bytes).map(Compiled::Component),
    };
    r.map_err(|e| anyhow!("{entry} is not a valid WebAssembly {}: {e:#}", kind.name()))
}

/// Load the module: the cache when it holds a sound entry, else compile. Returns the compiled
/// code, the cache state and whether it must be stored once linking succeeds.
fn load(
    engine: &Engine,
    kind: Kind,
    bytes: &[u8],
    plan: &Plan,
    cache: Option<&Cache>,
    key: &str,
) -> Result<(Compiled, Report, bool)> {
    let mut report = Report {
        kind: kind.name().into(),
        cache: "off".into(),
        cache_note: None,
        entry: plan.entry.clone(),
        setup_us: Default::default(),
    };
    if let Some(c) = cache {
        match c.lookup(key) {
            Lookup::Hit(artifact) => {
                // SAFETY: the artifact was written by this code from Wasmtime's own serialize()
                // and its sha256 matched (cache.rs); Wasmtime also checks version and settings.
                let r = unsafe {
                    match kind {
                        Kind::Module => {
                            Module::deserialize(engine, &artifact).map(Compiled::Module)
                        }
                        Kind::Component => {
                            Component::deserialize(engine, &artifact).map(Compiled::Component)
                        }
                    }
                };
                match r {
                    Ok(m) => {
                        report.cache = "hit".into();
                        return Ok((m, report, false));
                    }
                    Err(e) => {
                        report.cache = "rejected".into();
                        report.cache_note = Some(format!("{e}"));
                    }
                }
            }
            Lookup::Bad(why) => {
                report.cache = "rejected".into();
                report.cache_note = Some(why);
            }
            Lookup::Miss => report.cache = "miss".into(),
        }
    }
    let m = compile(engine, kind, bytes, &plan.entry)?;
    Ok((m, report, cache.is_some()))
}

fn limits(plan: &Plan) -> StoreLimits {
    let mut b = StoreLimitsBuilder::new().trap_on_grow_failure(false);
    if let Some(l) = plan.memory_limit {
        let l = usize::try_from(l).unwrap_or(usize::MAX);
        // A table element costs the host about a pointer: cap tables by the same budget.
        b = b.memory_size(l).table_elements(l / 8);
    }
    b.build()
}

fn wasi_builder(plan: &Plan, root: &OwnedFd) -> Result<WasiCtxBuilder> {
    let mut b = WasiCtxBuilder::new();
    b.args(&plan.args)
        .envs(&plan.env)
        .inherit_stdio()
        .allow_blocking_current_thread(true)
        .initial_cwd(&plan.cwd);
    let perms = |ro: bool| {
        if ro {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        }
    };
    if plan.cwd != "/" {
        // WASI preview 1 has no working directory. The spec's cwd (resolved inside the rootfs)
        // becomes the "." preopen, registered before "/" so that wasi-libc, which matches
        // preopens by longest prefix and takes the later one on a tie, still sends absolute
        // paths to the rootfs. Components also get it as wasi:cli initial-cwd.
        let fd = plan::open_in_root(
            root,
            &plan.cwd,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        )
        .with_context(|| format!("process.cwd {} in the rootfs", plan.cwd))?;
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        b.preopened_dir(&path, ".", perms(plan.rootfs_ro))
            .map_err(|e| anyhow!("preopening the cwd {}: {e}", plan.cwd))?;
        drop(fd);
    }
    for p in &plan.preopens {
        b.preopened_dir(&p.host, &p.guest, perms(p.ro))
            .map_err(|e| anyhow!("preopening {} as {}: {e}", p.host.display(), p.guest))?;
    }
    Ok(b)
}

fn prepare(plan: &Plan, engine: &Engine, compiled: &Compiled, root: &OwnedFd) -> Result<Ready> {
    let entry = &plan.entry;
    match compiled {
        Compiled::Module(module) => {
            let mut linker: Linker<P1State> = Linker::new(engine);
            wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)?;
            let pre = linker
                .instantiate_pre(module)
                .map_err(|e| anyhow!("{entry} cannot be linked against WASI preview 1: {e:#}"))?;
            match module.get_export("_start") {
                Some(wasmtime::ExternType::Func(f))
                    if f.params().len() == 0 && f.results().len() == 0 => {}
                Some(_) => bail!(
                    "{entry}: the export _start is not a function of no arguments and no results"
                ),
                None => bail!("{entry} has no _start function: it is not a WASI command module"),
            }
            if let (Some(limit), Some(pages)) = (
                plan.memory_limit,
                module.resources_required().max_initial_memory_size,
            ) {
                check_initial_memory(entry, pages, limit)?;
            }
            let wasi = wasi_builder(plan, root)?.build_p1();
            let store = Store::new(
                engine,
                P1State {
                    wasi,
                    limits: limits(plan),
                },
            );
            Ok(Ready::Module(store, pre))
        }
        Compiled::Component(component) => {
            let mut linker: ComponentLinker<P2State> = ComponentLinker::new(engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
            let ipre = linker
                .instantiate_pre(component)
                .map_err(|e| anyhow!("{entry} cannot be linked against WASI preview 2: {e:#}"))?;
            let pre = CommandPre::new(ipre)
                .map_err(|e| anyhow!("{entry} is not a wasi:cli/command component: {e:#}"))?;
            if let (Some(limit), Some(pages)) = (
                plan.memory_limit,
                component
                    .resources_required()
                    .and_then(|r| r.max_initial_memory_size),
            ) {
                check_initial_memory(entry, pages, limit)?;
            }
            let ctx = wasi_builder(plan, root)?.build();
            let store = Store::new(
                engine,
                P2State {
                    ctx,
                    table: ResourceTable::new(),
                    limits: limits(plan),
                },
            );
            Ok(Ready::Component(store, pre))
        }
    }
}

fn check_initial_memory(entry: &str, pages: u64, limit: u64) -> Result<()> {
    let need = pages.saturating_mul(65536);
    if need > limit {
        bail!("{entry} needs {need} bytes of linear memory at start but linux.resources.memory.limit is {limit}");
    }
    Ok(())
}

fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn configure_store<T>(store: &mut Store<T>, plan: &Plan, engine: &Engine) -> wasmtime::Result<()> {
    if let Some(f) = plan.knobs.fuel {
        store.set_fuel(f)?;
    }
    if needs_epochs(plan) {
        let tick = Duration::from_millis(plan.knobs.epoch_ms);
        let e = engine.clone();
        std::thread::Builder::new()
            .name("epoch".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                e.increment_epoch();
            })
            .map_err(|e| wasmtime::format_err!("starting the epoch thread: {e}"))?;
        let start = Instant::now();
        let cpu0 = process_cpu_time();
        let timeout = plan.knobs.timeout_ms;
        let cpu = plan.cpu;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if let Some(ms) = timeout {
                if start.elapsed() >= Duration::from_millis(ms) {
                    wasmtime::bail!("time limit exceeded: the module ran longer than io.hako.wasm.timeout-ms={ms}");
                }
            }
            if let Some((quota, period)) = cpu {
                // Throttle to quota/period of one CPU: sleep until the CPU used fits the share
                // of wall time elapsed (the cgroup does the same on the host when present).
                let used = (process_cpu_time() - cpu0).as_secs_f64();
                let need_wall = used * period as f64 / quota as f64;
                let wall = start.elapsed().as_secs_f64();
                if need_wall > wall {
                    std::thread::sleep(Duration::from_secs_f64(need_wall - wall));
                }
            }
            Ok(UpdateDeadline::Continue(1))
        });
    }
    Ok(())
}

/// Run the module; return the process exit status.
fn run(ready: Ready, plan: &Plan, engine: &Engine) -> i32 {
    let r: wasmtime::Result<i32> = match ready {
        Ready::Module(mut store, pre) => (|| {
            store.limiter(|s| &mut s.limits);
            configure_store(&mut store, plan, engine)?;
            let instance = pre.instantiate(&mut store)?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())?;
            Ok(0)
        })(),
        Ready::Component(mut store, pre) => (|| {
            store.limiter(|s| &mut s.limits);
            configure_store(&mut store, plan, engine)?;
            let cmd = pre.instantiate(&mut store)?;
            Ok(match cmd.wasi_cli_run().call_run(&mut store)? {
                Ok(()) => 0,
                Err(()) => 1,
            })
        })(),
    };
    let code = match r {
        Ok(c) => c,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                exit.0
            } else if e.is::<wasmtime::Trap>()
                || e.chain()
                    .any(|c| c.to_string().contains("time limit exceeded"))
            {
                eprintln!("hako: {}: wasm trap: {}", plan.entry, describe(&e));
                TRAP_EXIT
            } else {
                eprintln!("hako: {}: {}", plan.entry, describe(&e));
                1
            }
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    code
}

/// An error and its causes on one line each; causes whose Display is empty (some WASI
/// host errors) are shown by their Debug form.
fn describe(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        let s = if s.trim().is_empty() {
            format!("{c:?}")
        } else {
            s
        };
        let s = s.trim().to_string();
        if parts.last() != Some(&s) {
            parts.push(s);
        }
    }
    parts.join("\ncaused by: ")
}

fn cvt(r: libc::c_int, what: &str) -> Result<()> {
    if r < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// File bind mounts and tmpfs, in a private mount namespace of this process only.
fn make_ns_mounts(plan: &Plan) -> Result<()> {
    use nix::fcntl::OFlag;
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("unshare(CLONE_NEWNS) for the spec's file and tmpfs mounts")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private")?;
    let root = plan::open_dir(&plan.rootfs)?;
    for m in &plan.ns_mounts {
        let (dest, is_file) = match m {
            NsMount::BindFile { dest, .. } => (dest.as_str(), true),
            NsMount::Tmpfs { dest, .. } => (dest.as_str(), false),
        };
        let target = make_mountpoint(&root, dest, is_file)
            .with_context(|| format!("mount point {dest} in the rootfs"))?;
        let tpath = format!("/proc/self/fd/{}", target.as_raw_fd());
        match m {
            NsMount::BindFile { source, ro, .. } => {
                mount(
                    Some(source.as_path()),
                    tpath.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .with_context(|| format!("bind mount {} on {dest}", source.display()))?;
                if *ro {
                    let top = plan::open_in_root(&root, dest, OFlag::O_PATH)?;
                    let p = format!("/proc/self/fd/{}", top.as_raw_fd());
                    mount(
                        None::<&str>,
                        p.as_str(),
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&str>,
                    )
                    .with_context(|| format!("read-only remount of {dest}"))?;
                }
            }
            NsMount::Tmpfs { data, flags, .. } => {
                let data = if data.is_empty() {
                    None
                } else {
                    Some(data.as_str())
                };
                mount(
                    Some("tmpfs"),
                    tpath.as_str(),
                    Some("tmpfs"),
                    MsFlags::from_bits_truncate(*flags),
                    data,
                )
                .with_context(|| format!("tmpfs on {dest}"))?;
            }
        }
    }
    Ok(())
}

/// Open (making it when missing) the mount point `dest` inside the rootfs, never leaving it.
fn make_mountpoint(root: &OwnedFd, dest: &str, is_file: bool) -> Result<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    if let Ok(fd) = plan::open_in_root(root, dest, OFlag::O_PATH) {
        return Ok(fd);
    }
    let (parent, name) = dest.rsplit_once('/').unwrap_or(("", dest));
    // Make the parents one component at a time, each resolved inside the root.
    let mut cur = String::new();
    for comp in parent.split('/').filter(|c| !c.is_empty()) {
        let dir = plan::open_in_root(
            root,
            if cur.is_empty() { "/" } else { &cur },
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )?;
        cur.push('/');
        cur.push_str(comp);
        match nix::sys::stat::mkdirat(&dir, comp, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => bail!("mkdir {cur}: {}", e.desc()),
        }
    }
    let dir = plan::open_in_root(
        root,
        if cur.is_empty() { "/" } else { &cur },
        OFlag::O_PATH | OFlag::O_DIRECTORY,
    )?;
    if is_file {
        let fd = nix::fcntl::openat(
            &dir,
            name,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| anyhow!("creating {dest}: {}", e.desc()))?;
        drop(fd);
    } else {
        match nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => bail!("mkdir {dest}: {}", e.desc()),
        }
    }
    plan::open_in_root(root, dest, OFlag::O_PATH)
}

/// A user running hako directly (rootless, not root anywhere): the host process enters a user
/// namespace of its own in which it has the spec's uid and gid (mapped to the user's, and
/// nothing else mapped), and all capabilities of that namespace, so that it can still make the private mount namespace for the spec's file mounts and drop
/// capabilities from its bounding set, as it does for root. It gains nothing on the host: its
/// capabilities hold only in that namespace, and what it writes belongs to the user. (Under
/// rootless podman hako is already root in podman's namespace and does not need this.)
fn enter_own_user_namespace(inner_uid: u32, inner_gid: u32) -> Result<()> {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
        .context("rootless: unshare(CLONE_NEWUSER) for the wasm host (are unprivileged user namespaces disabled?)")?;
    std::fs::write("/proc/self/setgroups", "deny").context("writing /proc/self/setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("{inner_uid} {uid} 1"))
        .context("writing uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("{inner_gid} {gid} 1"))
        .context("writing gid_map")?;
    Ok(())
}

/// rlimits, oom score, umask, user and capabilities, no_new_privs: the process spec's
/// identity, applied to the host process as the last step of set-up. `own_userns`: in the
/// namespace of [`enter_own_user_namespace`], where the spec's ids are the only ones there are.
fn apply_identity(plan: &Plan, own_userns: bool) -> Result<()> {
    for r in &plan.rlimits {
        if let Err(e) = r.apply() {
            bail!("setrlimit({}, {}:{}): {e}", r.resource, r.soft, r.hard);
        }
    }
    if let Some(adj) = plan.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context("writing oom_score_adj")?;
    }
    if let Some(m) = plan.umask {
        // SAFETY: umask has no preconditions.
        unsafe { libc::umask(m as libc::mode_t) };
    }
    // SAFETY: plain credential system calls, made before any thread that could race them.
    unsafe {
        let euid = libc::geteuid();
        if let Some(c) = &plan.caps {
            crate::caps::drop_bounding(c)?;
        }
        if own_userns {
            if plan.additional_gids.iter().any(|&g| g != plan.gid) {
                bail!(
                    "rootless: process.user.additionalGids {:?} cannot be taken: a user running hako directly has only its own group",
                    plan.additional_gids
                );
            }
        } else if euid == 0 {
            cvt(
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
                "PR_SET_KEEPCAPS",
            )?;
            let groups: Vec<libc::gid_t> = plan.additional_gids.clone();
            cvt(libc::setgroups(groups.len(), groups.as_ptr()), "setgroups")?;
            cvt(libc::setresgid(plan.gid, plan.gid, plan.gid), "setgid")?;
            cvt(libc::setresuid(plan.uid, plan.uid, plan.uid), "setuid")?;
            cvt(
                libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
                "PR_SET_KEEPCAPS",
            )?;
        } else if plan.uid != euid || plan.gid != libc::getegid() {
            bail!(
                "process.user {}:{} cannot be taken by a host process running as uid {euid}",
                plan.uid,
                plan.gid
            );
        }
        if let Some(c) = &plan.caps {
            crate::caps::set(c)?;
        }
        if plan.no_new_privileges {
            cvt(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                "PR_SET_NO_NEW_PRIVS",
            )?;
        }
    }
    Ok(())
}

/// Everything up to "ready". Runs in the forked child.
fn setup(
    plan: &Plan,
    req: &CreateRequest,
    cg: Option<&hako_linux::cgroups::CgroupManager>,
) -> Result<(Ready, Engine, Report, OwnedFd)> {
    let t0 = Instant::now();
    let mut marks: Vec<(&str, Instant)> = Vec::new();
    if let Some(mgr) = cg {
        mgr.add_pid(std::process::id() as i32)?;
        marks.push(("cgroup", Instant::now()));
    }
    // SAFETY: geteuid cannot fail.
    let own_userns = unsafe { libc::geteuid() } != 0;
    if own_userns {
        enter_own_user_namespace(plan.uid, plan.gid)?;
    }
    if !plan.ns_mounts.is_empty() {
        make_ns_mounts(plan)?;
        marks.push(("mounts", Instant::now()));
    }
    let bytes = plan::read_entry(&plan.rootfs, &plan.entry)?;
    let kind = kind_of(&bytes).with_context(|| plan.entry.clone())?;
    let engine = Engine::new(&engine_config(plan))?;
    marks.push(("engine", Instant::now()));
    let cache = if plan.knobs.cache {
        Cache::open(&req.global.root).ok()
    } else {
        None
    };
    let key = match &cache {
        Some(_) => cache::key(&engine, kind.name(), &bytes),
        None => String::new(),
    };
    let (compiled, mut report, store_it) = load(&engine, kind, &bytes, plan, cache.as_ref(), &key)?;
    marks.push(("load", Instant::now()));
    let root = plan::open_dir(&plan.rootfs)?;
    let ready = prepare(plan, &engine, &compiled, &root)?;
    marks.push(("link", Instant::now()));
    if store_it {
        if let Some(c) = &cache {
            // A cache that cannot be written only costs the next start a compilation.
            let _ = compiled.serialize().and_then(|a| c.store(&key, &a));
            marks.push(("cache-store", Instant::now()));
        }
    }
    drop(bytes);
    // The fifo is opened by path now, through /proc/self/fd after the identity changes (the
    // state directory may be closed to the workload's user).
    let fifo = nix::fcntl::open(
        req.start_fifo,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("start fifo {}", req.start_fifo.display()))?;
    if plan.terminal {
        if let Some(sock) = req.console_socket {
            let slave = console::send_pty_master(sock)?;
            nix::unistd::setsid().context("setsid")?;
            console::adopt_as_stdio(&slave)?;
        }
    }
    apply_identity(plan, own_userns)?;
    // wasmtime-wasi serves preview 1 calls through a Tokio runtime it makes on first use:
    // make it now, with the final identity, rather than after `start`.
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| ());
    marks.push(("identity+runtime", Instant::now()));
    let mut prev = t0;
    for (name, t) in marks {
        report
            .setup_us
            .insert(name.to_string(), (t - prev).as_micros() as u64);
        prev = t;
    }
    report
        .setup_us
        .insert("total".into(), t0.elapsed().as_micros() as u64);
    Ok((ready, engine, report, fifo))
}

/// `create`: fork the host process and wait for its "ready" (or its one error).
pub fn create(req: &CreateRequest) -> Result<Created> {
    let plan = plan::plan(req.spec, req.bundle)?;
    if req.preserve_fds > 0 {
        bail!("--preserve-fds is not supported by the wasm backend: a WASI module cannot use inherited file descriptors");
    }
    let cg = crate::cgroup::made(req)?;
    hako_contract::fault::point("create:cgroup");
    let spawned = hako_contract::host_process::spawn::<Report>(req.state_dir, |ready| {
        child(&plan, req, cg.as_ref(), ready)
    });
    let (pid, report) = match spawned {
        Ok(r) => r,
        Err(e) => {
            if let Some(mgr) = &cg {
                let _ = mgr.destroy();
            }
            match e {
                hako_contract::host_process::Failed::Died(how) => {
                    bail!("the wasm host process died during set-up ({how})")
                }
                e => bail!("{e}"),
            }
        }
    };
    let data = serde_json::json!({
        "kind": report.kind,
        "cache": report.cache,
        "cache_note": report.cache_note,
        "entry": report.entry,
        "setup_us": report.setup_us,
        "cgroup": cg,
    });
    Ok(Created { pid, data })
}

fn child(
    plan: &Plan,
    req: &CreateRequest,
    cg: Option<&hako_linux::cgroups::CgroupManager>,
    ready: hako_contract::host_process::Readiness,
) -> i32 {
    hako_linux::process::reset_signals();
    hako_linux::process::close_fds_except(&[ready.as_raw_fd()]);
    let (prepared, engine, report, fifo) = match setup(plan, req, cg) {
        Ok(r) => r,
        Err(e) => {
            ready.fail(&e);
            return 1;
        }
    };
    let gate = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    if let Err(e) = ready.ready_then_wait(&report, Path::new(&gate)) {
        eprintln!("hako: wasm host: {e:#}");
        return 1;
    }
    drop(fifo);
    run(prepared, plan, &engine)
}
