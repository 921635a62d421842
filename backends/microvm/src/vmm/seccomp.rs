//! Per-thread seccomp filters. The allowlists are data (`seccomp.json`, seccompiler's JSON
//! format: one filter per thread kind), compiled to BPF by seccompiler when the VMM starts.
//! Anything not listed kills the VMM process.

use anyhow::{anyhow, Context, Result};
use seccompiler::{BpfProgram, TargetArch};

/// The filter definitions, as shipped.
pub const FILTERS_JSON: &str = include_str!("seccomp.json");

/// Compiled filters for each VMM thread kind.
pub struct Filters {
    /// The VMM thread (host input, waiting for the vCPUs).
    pub vmm: BpfProgram,
    /// vCPU threads (KVM_RUN and device emulation).
    pub vcpu: BpfProgram,
}

pub fn filters() -> Result<Filters> {
    let mut map = seccompiler::compile_from_json(FILTERS_JSON.as_bytes(), TargetArch::x86_64)
        .context("compiling the VMM seccomp filters")?;
    let mut take = |name: &str| {
        map.remove(name)
            .ok_or_else(|| anyhow!("seccomp.json has no filter for thread kind {name:?}"))
    };
    Ok(Filters {
        vmm: take("vmm")?,
        vcpu: take("vcpu")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_and_cover_both_threads() {
        let f = filters().unwrap();
        assert!(f.vmm.len() > 10);
        assert!(f.vcpu.len() > 10);
        let v: serde_json::Value = serde_json::from_str(FILTERS_JSON).unwrap();
        for t in ["vmm", "vcpu"] {
            assert_eq!(v[t]["mismatch_action"], "kill_process");
            let names: Vec<&str> = v[t]["filter"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["syscall"].as_str().unwrap())
                .collect();
            for forbidden in [
                "execve", "socket", "open", "openat", "clone", "fork", "ptrace", "mount",
            ] {
                assert!(!names.contains(&forbidden), "{t} allows {forbidden}");
            }
        }
    }
}
