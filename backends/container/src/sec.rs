//! The seam to `seccomp` (written separately): check, compile before the clone, apply last.

use anyhow::{bail, Result};
use oci_spec::runtime::LinuxSeccomp;

pub struct Compiled;

pub fn check(_s: &LinuxSeccomp) -> Result<()> {
    bail!("linux.seccomp is not supported yet by the container backend")
}

pub fn compile(_s: &LinuxSeccomp) -> Result<Compiled> {
    bail!("linux.seccomp is not supported yet by the container backend")
}

pub fn apply(_c: &Compiled) -> Result<()> {
    Ok(())
}

pub fn enabled() -> bool {
    false
}
