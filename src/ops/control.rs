//! kill, pause, resume, update, exec, ps: operations on a live container.

use super::{write_pid_file, Ctx};
use crate::cli::{ExecArgs, KillArgs, PsArgs, UpdateArgs};
use crate::wait;
use anyhow::{bail, Context, Result};
use hako_contract::{signal, ExecRequest, Status};
use oci_spec::runtime::{Capability, LinuxPids, LinuxResources, Process, User};
use std::collections::HashSet;
use std::io::Read;

pub fn kill(ctx: &Ctx, args: &KillArgs) -> Result<()> {
    let sig = signal::parse(&args.signal)?;
    let c = ctx.load(&args.id)?;
    c.require(
        &ctx.global,
        &[Status::Created, Status::Running, Status::Paused],
        "kill",
    )?;
    c.backend.kill(&c.sandbox(&ctx.global), sig, args.all)
}

pub fn pause(ctx: &Ctx, id: &str) -> Result<()> {
    let c = ctx.load(id)?;
    c.require(&ctx.global, &[Status::Running], "pause")?;
    c.backend.pause(&c.sandbox(&ctx.global))
}

pub fn resume(ctx: &Ctx, id: &str) -> Result<()> {
    let c = ctx.load(id)?;
    c.require(&ctx.global, &[Status::Paused], "resume")?;
    c.backend.resume(&c.sandbox(&ctx.global))
}

/// Parse a size like `512m`, `1G`, `1048576` or `-1` (no limit).
fn parse_size(s: &str) -> Result<i64> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    let n = hako_contract::formats::parse_size(s, 1)?;
    i64::try_from(n).with_context(|| format!("{s:?} is too large"))
}

/// `hako update`: the resources from `--resources FILE|-` (runtime-spec linux.resources JSON),
/// overridden by the individual flags.
pub fn update(ctx: &Ctx, args: &UpdateArgs) -> Result<()> {
    let mut res: LinuxResources = match args.resources.as_deref() {
        Some(src) => {
            let mut buf = Vec::new();
            if src == "-" {
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("reading resources from stdin")?;
            } else {
                buf = std::fs::read(src).with_context(|| format!("cannot read {src}"))?;
            }
            let de = &mut serde_json::Deserializer::from_slice(&buf);
            serde_path_to_error::deserialize(de)
                .map_err(|e| anyhow::anyhow!("invalid resources {}: {}", e.path(), e.inner()))?
        }
        None => LinuxResources::default(),
    };
    let mut mem = (*res.memory()).unwrap_or_default();
    let mut mem_set = res.memory().is_some();
    if let Some(v) = &args.memory {
        mem.set_limit(Some(parse_size(v)?));
        mem_set = true;
    }
    if let Some(v) = &args.memory_swap {
        mem.set_swap(Some(parse_size(v)?));
        mem_set = true;
    }
    if let Some(v) = &args.memory_reservation {
        mem.set_reservation(Some(parse_size(v)?));
        mem_set = true;
    }
    if mem_set {
        res.set_memory(Some(mem));
    }
    let mut cpu = res.cpu().clone().unwrap_or_default();
    let cpu_set = res.cpu().is_some()
        || args.cpu_shares.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_period.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some();
    if let Some(v) = args.cpu_shares {
        cpu.set_shares(Some(v));
    }
    if let Some(v) = args.cpu_quota {
        cpu.set_quota(Some(v));
    }
    if let Some(v) = args.cpu_period {
        cpu.set_period(Some(v));
    }
    if let Some(v) = &args.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
    }
    if let Some(v) = &args.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
    }
    if cpu_set {
        res.set_cpu(Some(cpu));
    }
    if let Some(v) = args.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        res.set_pids(Some(p));
    }
    if let Some(w) = args.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }

    let mut c = ctx.load(&args.id)?;
    c.require(
        &ctx.global,
        &[Status::Created, Status::Running, Status::Paused],
        "update",
    )?;
    super::warn_ignored_resources(Some(&res));
    c.backend.update(&c.sandbox(&ctx.global), &res)?;
    // Remember the new limits, so later reads of the spec see them.
    let mut linux = c.rec.spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(merge(linux.resources().clone(), res)));
    c.rec.spec.set_linux(Some(linux));
    c.lock.write(&c.rec)
}

fn merge(old: Option<LinuxResources>, new: LinuxResources) -> LinuxResources {
    let mut r = old.unwrap_or_default();
    if new.memory().is_some() {
        r.set_memory(*new.memory());
    }
    if new.cpu().is_some() {
        r.set_cpu(new.cpu().clone());
    }
    if new.pids().is_some() {
        r.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        r.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        r.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.unified().is_some() {
        r.set_unified(new.unified().clone());
    }
    r
}

/// The process `exec` runs: `--process FILE`, or the container's own process with the args,
/// env, cwd, user and capabilities the flags give.
fn exec_process(args: &ExecArgs, base: &Process) -> Result<Process> {
    // A label hako cannot apply per exec is refused, never ignored.
    for (flag, v) in [
        ("--apparmor", &args.apparmor),
        ("--process-label", &args.process_label),
    ] {
        if v.as_deref().is_some_and(|v| !v.is_empty()) {
            bail!("{flag} is not supported by hako exec: set the label in the container's config.json");
        }
    }
    if let Some(path) = &args.process {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read process file {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let p: Process = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!(
                "invalid process file {}: {}: {}",
                path.display(),
                e.path(),
                e.inner()
            )
        })?;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            bail!("process file {}: args must name a program", path.display());
        }
        return Ok(p);
    }
    if args.command.is_empty() {
        bail!("exec needs a command or --process FILE");
    }
    let mut p = base.clone();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    let mut env = base.env().clone().unwrap_or_default();
    for kv in &args.env {
        if !kv.contains('=') {
            bail!("--env {kv:?}: expected KEY=VALUE");
        }
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.into());
    }
    if let Some(u) = &args.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a.parse::<u32>(), b.parse::<u32>()),
            None => (u.parse::<u32>(), Ok(0)),
        };
        let (Ok(uid), Ok(gid)) = (uid, gid) else {
            bail!("--user {u:?}: expected UID[:GID] as numbers")
        };
        let mut user = User::default();
        user.set_uid(uid);
        user.set_gid(gid);
        if !args.additional_gids.is_empty() {
            user.set_additional_gids(Some(args.additional_gids.clone()));
        }
        p.set_user(user);
    } else if !args.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(args.additional_gids.clone()));
        p.set_user(user);
    }
    if !args.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let mut add: HashSet<Capability> = HashSet::new();
        for c in &args.cap {
            let name = c.to_ascii_uppercase();
            let name = if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            };
            // The spelling of config.json ("CAP_SYS_ADMIN"), which serde takes; oci-spec's
            // FromStr wants the bare variant name.
            add.insert(
                serde_json::from_value::<Capability>(serde_json::Value::String(name))
                    .map_err(|_| anyhow::anyhow!("unknown capability {c:?}"))?,
            );
        }
        let extend = |s: &Option<HashSet<Capability>>| -> Option<HashSet<Capability>> {
            let mut s = s.clone().unwrap_or_default();
            s.extend(add.iter().cloned());
            Some(s)
        };
        caps.set_bounding(extend(caps.bounding()));
        caps.set_effective(extend(caps.effective()));
        caps.set_permitted(extend(caps.permitted()));
        caps.set_ambient(extend(caps.ambient()));
        caps.set_inheritable(extend(caps.inheritable()));
        p.set_capabilities(Some(caps));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// `hako exec`: start a process in the container; unless `--detach`, wait for it and exit
/// with its status.
pub fn exec(ctx: &Ctx, args: &ExecArgs) -> Result<i32> {
    let c = ctx.load(&args.id)?;
    // Before anything is made: this may re-execute hako (same command, from a sealed view of
    // its binary; the state lock is close-on-exec and taken again).
    if c.backend.runs_hako_code_inside() {
        crate::exe::ensure_sealed()?;
    }
    c.require(&ctx.global, &[Status::Created, Status::Running], "exec in")?;
    let base = c.rec.spec.process().clone().unwrap_or_default();
    let process = exec_process(args, &base)?;
    if !process.cwd().is_absolute() {
        bail!(
            "exec: cwd {} must be an absolute path",
            process.cwd().display()
        );
    }
    let terminal = process.terminal().unwrap_or(false);
    let own_console = if terminal && args.console_socket.is_none() {
        if args.detach {
            bail!("exec --tty --detach needs --console-socket");
        }
        Some(wait::ConsoleListener::new(&c.lock.dir)?)
    } else {
        None
    };
    if !terminal && args.console_socket.is_some() {
        bail!("--console-socket was given but the process has no terminal");
    }
    if !args.detach {
        wait::become_subreaper();
    }
    let req = ExecRequest {
        process: &process,
        console_socket: args
            .console_socket
            .as_deref()
            .or(own_console.as_ref().map(|l| l.path())),
        preserve_fds: args.preserve_fds,
    };
    let sb = c.sandbox(&ctx.global);
    // A signal for the process may come as soon as the engine has the pid: queue it from before
    // the process exists, not only once the backend has returned (a SIGTERM in between used to
    // kill `hako exec` itself). The backends' children reset or take over the mask.
    if !args.detach {
        wait::block_signals()?;
    }
    hako_contract::fault::point("exec:loaded");
    let execed = c.backend.exec(&sb, &req)?;
    hako_contract::fault::point("exec:started");
    if let Some(p) = &args.pid_file {
        write_pid_file(p, execed.pid)?;
    }
    // Other commands on this container must not wait for our exec to end.
    drop(c);
    if args.detach {
        return Ok(0);
    }
    wait::block_signals()?;
    let relay = match own_console {
        Some(l) => Some(wait::relay_pty(l.receive()?)),
        None => None,
    };
    let code = wait::wait_forwarding(execed.pid);
    if let Some(out) = relay {
        wait::drain(out);
        wait::restore_terminal();
    }
    code
}

/// `hako ps`: `--format json` prints the host pids; the table runs ps(1) and keeps the rows of
/// the container's processes.
pub fn ps(ctx: &Ctx, args: &PsArgs) -> Result<()> {
    let c = ctx.load(&args.id)?;
    let pids = if c.alive {
        c.backend.pids(&c.sandbox(&ctx.global))?
    } else {
        vec![]
    };
    match args.format.as_str() {
        "json" => {
            crate::out::line(serde_json::to_string(&pids)?)?;
            Ok(())
        }
        "table" => {
            let ps_args = if args.ps_args.is_empty() {
                vec!["-ef".to_string()]
            } else {
                args.ps_args.clone()
            };
            let out = std::process::Command::new("ps")
                .args(&ps_args)
                .output()
                .context("cannot run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    ps_args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .context("ps output has no PID column")?;
            crate::out::line(header)?;
            for l in lines {
                if let Some(Ok(pid)) = l.split_whitespace().nth(col).map(str::parse::<i32>) {
                    if pids.contains(&pid) {
                        crate::out::line(l)?;
                    }
                }
            }
            Ok(())
        }
        f => bail!("unknown format {f:?}: use table or json"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("lots").is_err());
    }
}
