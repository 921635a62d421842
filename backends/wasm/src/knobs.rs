//! The `io.hako.wasm.*` annotations: per-sandbox knobs of the wasm backend.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;

pub const FUEL: &str = "io.hako.wasm.fuel";
pub const TIMEOUT_MS: &str = "io.hako.wasm.timeout-ms";
pub const EPOCH_MS: &str = "io.hako.wasm.epoch-ms";
pub const CACHE: &str = "io.hako.wasm.cache";

/// Every key this backend understands (`Backend::annotations`).
pub const KEYS: &[&str] = &[FUEL, TIMEOUT_MS, EPOCH_MS, CACHE];

/// Default epoch tick when epochs are in use (a timeout or a CPU quota).
pub const DEFAULT_EPOCH_MS: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    /// Total fuel (roughly: wasm instructions) the module may burn; exhausting it traps.
    pub fuel: Option<u64>,
    /// Wall-clock budget for the run, enforced by epoch interruption.
    pub timeout_ms: Option<u64>,
    /// Length of one epoch tick.
    pub epoch_ms: u64,
    /// Use the precompiled module cache (default true).
    pub cache: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            fuel: None,
            timeout_ms: None,
            epoch_ms: DEFAULT_EPOCH_MS,
            cache: true,
        }
    }
}

fn positive(key: &str, v: &str) -> Result<u64> {
    let n: u64 = v
        .trim()
        .parse()
        .with_context(|| format!("annotation {key}={v:?}: expected a positive integer"))?;
    if n == 0 {
        bail!("annotation {key}={v:?}: must be greater than 0");
    }
    Ok(n)
}

/// Parse and validate the knobs. An unknown `io.hako.wasm.*` key is an error.
pub fn parse(annotations: Option<&HashMap<String, String>>) -> Result<Knobs> {
    let mut k = Knobs::default();
    let Some(ann) = annotations else { return Ok(k) };
    for (key, v) in ann {
        if !key.starts_with("io.hako.wasm.") {
            continue;
        }
        match key.as_str() {
            FUEL => k.fuel = Some(positive(key, v)?),
            TIMEOUT_MS => k.timeout_ms = Some(positive(key, v)?),
            EPOCH_MS => {
                let n = positive(key, v)?;
                if n > 60_000 {
                    bail!("annotation {key}={v:?}: at most 60000 ms");
                }
                k.epoch_ms = n
            }
            CACHE => {
                k.cache = match v.trim() {
                    "true" | "1" | "on" => true,
                    "false" | "0" | "off" => false,
                    _ => bail!("annotation {key}={v:?}: expected true or false"),
                }
            }
            _ => bail!(
                "unknown annotation {key:?}: the wasm backend understands {}",
                KEYS.join(", ")
            ),
        }
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn knobs_parse_and_refuse_bad_values() {
        assert_eq!(parse(None).unwrap(), Knobs::default());
        let k = parse(Some(&ann(&[
            (FUEL, "1000"),
            (TIMEOUT_MS, "250"),
            (EPOCH_MS, "5"),
            (CACHE, "false"),
        ])))
        .unwrap();
        assert_eq!(
            k,
            Knobs {
                fuel: Some(1000),
                timeout_ms: Some(250),
                epoch_ms: 5,
                cache: false
            }
        );
        // Other backends' keys are not ours to judge.
        assert!(parse(Some(&ann(&[("io.hako.microvm.vcpus", "2")]))).is_ok());
        for bad in [
            (FUEL, "0"),
            (FUEL, "-1"),
            (TIMEOUT_MS, "soon"),
            (EPOCH_MS, "999999"),
            (CACHE, "maybe"),
        ] {
            let e = parse(Some(&ann(&[bad]))).unwrap_err();
            assert!(format!("{e:#}").contains(bad.0), "{e:#}");
        }
        let e = parse(Some(&ann(&[("io.hako.wasm.fuell", "1")]))).unwrap_err();
        assert!(format!("{e:#}").contains("unknown annotation"), "{e:#}");
    }
}
