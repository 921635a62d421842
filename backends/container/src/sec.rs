//! The seam to `seccomp`: check, compile before the clone, apply last.

pub use hako_linux::seccomp::{apply, check, compile, Compiled};

pub fn enabled() -> bool {
    true
}
