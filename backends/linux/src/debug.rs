//! `--debug` lines from the backends and the Linux layer, written where the front end writes its
//! own: stderr and, with `--log`, the log file (text or JSON). The front end installs its writer
//! once ([`set_sink`]); before that (a backend's own tests, a helper process that never set one)
//! a line goes to stderr alone. The caller decides whether debug is on (`GlobalOptions::debug`).

use std::sync::OnceLock;

static SINK: OnceLock<fn(&str)> = OnceLock::new();

/// Install the writer for debug lines (the front end's log); later calls are ignored.
pub fn set_sink(f: fn(&str)) {
    let _ = SINK.set(f);
}

/// One debug line.
pub fn line(msg: &str) {
    match SINK.get() {
        Some(f) => f(msg),
        None => eprintln!("hako: debug: {msg}"),
    }
}
