//! Output on stdout, written the way runc's is (shared by the front end's `state`, `list`, `ps`,
//! `features` and by `hako bench`'s report).
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has gone (`hako list | head -1`)
//! returns EPIPE, and `println!` panics on it. runc (and any C tool) is ended by SIGPIPE
//! instead, quietly. [`line`] and [`text`] do the same: on EPIPE they put SIGPIPE's default
//! action back and raise it. Only at that point: the rest of hako (sync sockets, pipes to
//! children) keeps getting EPIPE as an error it can handle, and children get SIG_DFL from their
//! own set-up as before.

use anyhow::{Context, Result};
use std::io::Write;

/// Write `text` and a newline to stdout.
pub fn line(text: impl std::fmt::Display) -> Result<()> {
    self::text(format_args!("{text}\n"))
}

/// Write `text` to stdout as it is.
pub fn text(text: impl std::fmt::Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match write!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => die_of_sigpipe(),
        r => r.context("cannot write to stdout"),
    }
}

/// End the process as the kernel ends one that writes to a closed pipe.
fn die_of_sigpipe() -> ! {
    // SAFETY: signal() with SIG_DFL installs no handler; raise() sends to this thread, and
    // SIGPIPE is not blocked by hako, so it is delivered (and kills) before raise returns.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Only if SIGPIPE was blocked by whoever started us: the shell's code for it.
    std::process::exit(128 + libc::SIGPIPE)
}
