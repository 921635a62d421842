//! hako: one OCI runtime, four isolation backends. This is the front end: the runc-compatible
//! CLI, bundle loading, the state store, the lifecycle and hooks, and dispatch to a backend.
//! See docs/architecture.md.

mod backends;
mod bundle;
mod cli;
mod exe;
mod log;
mod ops;
mod out;
mod rootless;
mod store;
mod wait;

use clap::Parser;
use cli::{Cli, Command};
use hako_contract::GlobalOptions;
use ops::Ctx;

/// runc takes `--rootless true|false|auto` as two words; clap is told `--rootless[=X]` so that a
/// bare `--rootless` does not swallow the subcommand. Join the two-word form here.
fn normalise_args(raw: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "--rootless" {
            if let Some(v) = it.peek() {
                if matches!(v.as_str(), "true" | "false" | "auto") {
                    out.push(format!("--rootless={}", it.next().unwrap_or_default()));
                    continue;
                }
            }
        }
        out.push(a);
    }
    out
}

fn main() {
    let cli = Cli::parse_from(normalise_args(std::env::args().collect()));
    log::init(cli.log.clone(), cli.log_format, cli.debug);
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let explicit_rootless = cli.rootless == "true";
    let rootless = rootless::decide(&cli.rootless)?;
    let root = match &cli.root {
        Some(r) if r.is_absolute() => r.clone(),
        Some(r) => std::env::current_dir()?.join(r),
        None => rootless::default_root(rootless)?,
    };
    let ctx = Ctx {
        store: store::Store::new(&root),
        global: GlobalOptions {
            root,
            rootless,
            systemd_cgroup: cli.systemd_cgroup,
            debug: cli.debug,
        },
        backend_flag: cli.backend.clone(),
    };
    match cli.command {
        Command::Create(a) => ops::lifecycle::create(&ctx, &a).map(|_| 0),
        Command::Start(a) => ops::lifecycle::start(&ctx, &a.id).map(|_| 0),
        Command::Run(a) => ops::lifecycle::run(&ctx, &a),
        Command::State(a) => ops::info::state(&ctx, &a.id).map(|_| 0),
        Command::Kill(a) => ops::control::kill(&ctx, &a).map(|_| 0),
        Command::Delete(a) => ops::lifecycle::delete(&ctx, &a).map(|_| 0),
        Command::Exec(a) => ops::control::exec(&ctx, &a),
        Command::Ps(a) => ops::control::ps(&ctx, &a).map(|_| 0),
        Command::List(a) => ops::info::list(&ctx, &a).map(|_| 0),
        Command::Pause(a) => ops::control::pause(&ctx, &a.id).map(|_| 0),
        Command::Resume(a) => ops::control::resume(&ctx, &a.id).map(|_| 0),
        Command::Update(a) => ops::control::update(&ctx, &a).map(|_| 0),
        Command::Spec(a) => ops::info::spec(&a, explicit_rootless).map(|_| 0),
        Command::Features => ops::info::features().map(|_| 0),
        Command::Microvm(cli::MicrovmCommand::Warm(a)) => {
            ops::info::microvm_warm(&ctx, &a).map(|_| 0)
        }
        Command::Microvm(cli::MicrovmCommand::Prune(a)) => {
            ops::info::microvm_prune(&ctx, &a).map(|_| 0)
        }
        Command::Bench { args } => bench(args),
    }
}

#[cfg(feature = "bench")]
fn bench(args: Vec<String>) -> anyhow::Result<i32> {
    let mut argv = vec!["hako bench".to_string()];
    argv.extend(args);
    hako_bench::main_with_args(argv)
}

#[cfg(not(feature = "bench"))]
fn bench(_args: Vec<String>) -> anyhow::Result<i32> {
    anyhow::bail!("hako bench is not built into this binary (cargo feature \"bench\")")
}

#[cfg(test)]
mod tests {
    use super::normalise_args;

    #[test]
    fn rootless_two_word_form_is_joined() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            normalise_args(v("hako --rootless true create x")),
            v("hako --rootless=true create x")
        );
        assert_eq!(
            normalise_args(v("hako --rootless create x")),
            v("hako --rootless create x")
        );
    }
}
