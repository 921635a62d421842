//! What the sentry needs from the OCI spec, resolved once in `create`.

use anyhow::{bail, Result};
use oci_spec::runtime::Spec;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Config {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// `process.capabilities` as the first process's five sets (all of them when absent, as
    /// runc leaves a process's capabilities alone when the spec names none).
    pub caps: super::Caps,
    pub umask: u32,
    pub hostname: String,
    pub terminal: bool,
    pub readonly_root: bool,
    pub mem_limit: Option<u64>,
    pub nofile: i32,
    pub started: Instant,
    pub boot_time: u64,
    /// `io.hako.sentry.stats=true`: write a JSON account of trapped syscalls to
    /// `<state>/sentry/stats.json` at exit (never to a path the spec names).
    pub stats: bool,
    /// HAKO_SENTRY_DEBUG=1 in the environment of `hako create`: log every trapped syscall.
    pub debug: bool,
    /// The interception platform (see `crate::platform::kind`).
    pub platform: crate::platform::kind::Kind,
}

pub const STATS_ANNOTATION: &str = "io.hako.sentry.stats";
/// `io.hako.sentry.platform`: `samecpu` (default where the kernel has it: hybrid, each trap served
/// on the trapping task's CPU), `hybrid` (seccomp user-notification + ptrace; the default on
/// kernels before 6.6) or `ptrace` (seccomp RET_TRACE + ptrace only).
pub const PLATFORM_ANNOTATION: &str = "io.hako.sentry.platform";

impl Config {
    pub fn from_spec(spec: &Spec, id: &str) -> Result<Config> {
        let Some(process) = spec.process() else {
            bail!("config.json has no process")
        };
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            bail!("process.args is empty");
        }
        let user = process.user();
        let nofile = process
            .rlimits()
            .as_ref()
            .and_then(|r| {
                r.iter()
                    .find(|l| format!("{:?}", l.typ()) == "RlimitNofile")
                    .map(|l| l.soft())
            })
            .unwrap_or(1024)
            .min(65536) as i32;
        let mem_limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|&l| l > 0)
            .map(|l| l as u64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Config {
            args,
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().to_string_lossy().into_owned(),
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            caps: super::creds::from_spec(process.capabilities().as_ref())?,
            umask: user.umask().unwrap_or(0o022),
            hostname: spec
                .hostname()
                .clone()
                .unwrap_or_else(|| id.chars().take(12).collect()),
            terminal: process.terminal().unwrap_or(false),
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            mem_limit,
            nofile: nofile.max(16),
            started: Instant::now(),
            boot_time: now,
            platform: crate::platform::kind::Kind::choose(
                spec.annotations()
                    .as_ref()
                    .and_then(|a| a.get(PLATFORM_ANNOTATION))
                    .map(String::as_str),
            )
            .map_err(|e| anyhow::anyhow!("annotation {PLATFORM_ANNOTATION}: {e:#}"))?,
            debug: std::env::var_os("HAKO_SENTRY_DEBUG").is_some(),
            stats: match spec
                .annotations()
                .as_ref()
                .and_then(|a| a.get(STATS_ANNOTATION))
                .map(String::as_str)
            {
                None | Some("false") => false,
                Some("true") => true,
                Some(v) => bail!(
                    "annotation {STATS_ANNOTATION} takes \"true\" or \"false\", not {v:?} (the account is always written to the container's state directory, sentry/stats.json)"
                ),
            },
        })
    }
}
