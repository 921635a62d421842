//! The backends built into this binary. Constructing one is cheap: each initialises its heavy
//! subsystems (wasmtime, KVM, ptrace) only when a sandbox of its kind is created or used.

use anyhow::{bail, Result};
use hako_contract::Backend;

/// Every backend hako knows by name, built in or not.
pub const NAMES: &[&str] = &["container", "sentry", "microvm", "wasm"];

// Backends are built with `default()` whether or not they hold state today.
#[allow(clippy::default_constructed_unit_structs)]
pub fn get(name: &str) -> Result<Box<dyn Backend>> {
    Ok(match name {
        "container" => Box::new(hako_container::ContainerBackend::default()),
        #[cfg(feature = "sentry")]
        "sentry" => Box::new(hako_sentry::SentryBackend::default()),
        #[cfg(feature = "microvm")]
        "microvm" => Box::new(hako_microvm::MicrovmBackend::default()),
        #[cfg(feature = "wasm")]
        "wasm" => Box::new(hako_wasm::WasmBackend::default()),
        n if NAMES.contains(&n) => {
            bail!("the {n} backend is not built into this hako (cargo feature {n:?})")
        }
        n => bail!("unknown backend {n:?} (choose one of {})", NAMES.join(", ")),
    })
}

/// The backends built into this binary.
pub fn built_in() -> Vec<Box<dyn Backend>> {
    NAMES.iter().filter_map(|n| get(n).ok()).collect()
}
