//! The command line, runc-compatible: the global flags and subcommands that podman/conmon,
//! containerd's runc shim and docker pass, in both `--flag value` and `--flag=value` forms.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "hako", version, about = "One OCI runtime, four isolation backends", long_about = None)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended) [default: /run/hako, or
    /// $XDG_RUNTIME_DIR/hako when rootless]
    #[arg(long, global = true, env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
    /// Also write errors and debug messages to this file
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of --log: text or json
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd (needs a running systemd)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (auto: rootless when not root, or when root only
    /// inside a user namespace, as under rootless podman)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "auto")]
    pub rootless: String,
    /// Backend for bundles that do not choose one by annotation
    #[arg(long, global = true, env = "HAKO_BACKEND")]
    pub backend: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`
    Create(CreateArgs),
    /// Start a created container
    Start(IdArg),
    /// Create, start, and (unless --detach) wait for a container, then delete it
    Run(RunArgs),
    /// Print the OCI state of a container as JSON
    State(IdArg),
    /// Send a signal (name or number, default TERM) to a container
    Kill(KillArgs),
    /// Delete a container and everything it holds
    Delete(DeleteArgs),
    /// Run one more process in a running container
    Exec(ExecArgs),
    /// List the processes of a container
    Ps(PsArgs),
    /// List containers
    List(ListArgs),
    /// Freeze every process of a container
    Pause(IdArg),
    /// Thaw a paused container
    Resume(IdArg),
    /// Change the resource limits of a running container
    Update(UpdateArgs),
    /// Write a template config.json
    Spec(SpecArgs),
    /// Print what this runtime and each backend supports (runtime-spec features.md)
    Features,
    /// microvm backend tools
    #[command(subcommand)]
    Microvm(MicrovmCommand),
    /// Compare the backends and the peer runtimes (startup, memory, density)
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MicrovmCommand {
    /// Make (or check and remake) the booted template microVM sandboxes of this shape restore
    /// (io.hako.microvm.boot=snapshot), ahead of the first create
    Warm(WarmArgs),
    /// Remove cached templates and rootfs images not used lately (all with --all), damaged
    /// templates and what interrupted creates left behind
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove what was last used longer ago than this: a whole number with s, m, h or d
    #[arg(long, default_value = "7d")]
    pub older_than: String,
    /// Remove every template and rootfs image, however recently used
    #[arg(long)]
    pub all: bool,
    /// List what would be removed; remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct WarmArgs {
    /// Guest kernel (vmlinux with a PVH note) [default: as create: $HAKO_MICROVM_KERNEL or
    /// /var/cache/hako/kernels/vmlinux]
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// vCPUs, as io.hako.microvm.vcpus
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// Guest memory, as io.hako.microvm.memory (MiB, or with K/M/G)
    #[arg(long, default_value = "128M")]
    pub memory: String,
    /// Engine, as io.hako.microvm.vmm: auto, qemu or hako
    #[arg(long, default_value = "auto")]
    pub vmm: String,
}

#[derive(Args, Debug)]
pub struct IdArg {
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container process's pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs)
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (3, 4, ...) to the container process
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container has started
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container after it exits (default: delete it)
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal every process of the container
    #[arg(short = 'a', long)]
    pub all: bool,
    pub id: String,
    #[arg(default_value = "TERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill the container first if it still runs
    #[arg(short = 'f', long)]
    pub force: bool,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// JSON file with the process (runtime-spec `process`) to run
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory in the container
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment variables, KEY=VALUE
    #[arg(short = 'e', long)]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Extra groups
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the process's bounding, effective, permitted and ambient sets
    #[arg(short = 'c', long)]
    pub cap: Vec<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Return once the process has started
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility: an empty value is fine, any other is refused
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    pub id: String,
    /// Command and arguments, when --process is not given
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[arg(short = 'f', long, default_value = "table")]
    pub format: String,
    pub id: String,
    /// Options passed to ps(1) for the table format (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(short = 'f', long, default_value = "table")]
    pub format: String,
    /// Print only the ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// JSON file with runtime-spec `linux.resources`, or - for stdin
    #[arg(short = 'r', long)]
    pub resources: Option<String>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// Directory to write config.json into
    /// (with the global `--rootless`: a spec for a rootless container)
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
}
