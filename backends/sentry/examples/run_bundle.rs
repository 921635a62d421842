//! Run an OCI bundle under the sentry through the Backend contract (create, start, wait,
//! delete), without the hako front end: `run_bundle BUNDLE_DIR`. Exits with the workload's status.
//! Used by bench/run.sh to measure a release build of the sentry alone.

use hako_contract::{Backend, CreateRequest, GlobalOptions, Sandbox};
use hako_sentry::SentryBackend;

fn main() -> anyhow::Result<()> {
    let bundle = std::fs::canonicalize(std::env::args().nth(1).unwrap_or_else(|| ".".into()))?;
    let mut spec = oci_spec::runtime::Spec::load(bundle.join("config.json"))?;
    if let Some(root) = spec.root().clone() {
        let mut root = root;
        if !root.path().is_absolute() {
            root.set_path(bundle.join(root.path()));
        }
        spec.set_root(Some(root));
    }
    let state = tempfile::Builder::new()
        .prefix("hako-sentry-run-")
        .tempdir()?;
    let fifo = state.path().join("start");
    hako_contract::start_gate::make(&fifo)?;
    let global = GlobalOptions::default();
    let req = CreateRequest {
        id: "run",
        bundle: &bundle,
        spec: &spec,
        state_dir: state.path(),
        start_fifo: &fifo,
        console_socket: None,
        preserve_fds: 0,
        no_pivot: false,
        no_new_keyring: false,
        global: &global,
    };
    let b = SentryBackend::default();
    b.check(&spec, &bundle)?;
    let c = b.create(&req)?;
    hako_contract::start_gate::release(&fifo, || hako_contract::proc::is_alive(c.pid, None))?;
    let mut st = 0;
    // SAFETY: wait for our child.
    unsafe { libc::waitpid(c.pid, &mut st, 0) };
    let sb = Sandbox {
        id: "run",
        bundle: &bundle,
        spec: &spec,
        state_dir: state.path(),
        pid: c.pid,
        alive: false,
        data: &c.data,
        global: &global,
    };
    b.delete(&sb)?;
    std::process::exit(if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        128 + libc::WTERMSIG(st)
    });
}
