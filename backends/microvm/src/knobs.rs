//! The `io.hako.microvm.*` annotations, parsed and validated.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use std::path::PathBuf;

pub const VMM: &str = "io.hako.microvm.vmm";
pub const KERNEL: &str = "io.hako.microvm.kernel";
pub const VCPUS: &str = "io.hako.microvm.vcpus";
pub const MEMORY: &str = "io.hako.microvm.memory";
pub const IMAGE_BUDGET: &str = "io.hako.microvm.image-budget";
pub const BOOT: &str = "io.hako.microvm.boot";

pub const ANNOTATIONS: &[&str] = &[VMM, KERNEL, VCPUS, MEMORY, IMAGE_BUDGET, BOOT];

pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Below this the guest does not come up. Measured with the kernels/ guest under qemu microvm:
/// 30 MiB boots, 28 MiB hangs in firmware, 26 MiB and less stop at once.
pub const MIN_MEMORY_MIB: u64 = 32;
pub const MAX_MEMORY_MIB: u64 = 64 * 1024;
/// The guest kernel's CONFIG_NR_CPUS.
pub const MAX_VCPUS: u32 = 8;
pub const DEFAULT_IMAGE_BUDGET: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vmm {
    Hako,
    Qemu,
    Auto,
}

impl Vmm {
    pub fn as_str(self) -> &'static str {
        match self {
            Vmm::Hako => "hako",
            Vmm::Qemu => "qemu",
            Vmm::Auto => "auto",
        }
    }
}

/// How the guest starts: restored from a booted template, or booted from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Restore a template when one can be made (the default), else boot cold.
    Snapshot,
    Cold,
}

#[derive(Debug, Clone)]
pub struct Knobs {
    pub boot: Boot,
    pub vmm: Vmm,
    /// An explicit kernel; None means the default (see `kernel::default_path`).
    pub kernel: Option<PathBuf>,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub image_budget: u64,
}

impl Knobs {
    pub fn from_spec(spec: &Spec) -> Result<Knobs> {
        let empty = Default::default();
        let ann = spec.annotations().as_ref().unwrap_or(&empty);
        for k in ann.keys() {
            if k.starts_with("io.hako.microvm.") && !ANNOTATIONS.contains(&k.as_str()) {
                bail!(
                    "unknown annotation {k:?}: the microvm backend knows {}",
                    ANNOTATIONS.join(", ")
                );
            }
        }
        let vmm = match ann.get(VMM).map(|s| s.trim()) {
            None | Some("auto") => Vmm::Auto,
            Some("qemu") => Vmm::Qemu,
            Some("hako") => Vmm::Hako,
            Some(v) => bail!("{VMM}={v:?}: use hako, qemu or auto"),
        };
        let boot = match ann.get(BOOT).map(|s| s.trim()) {
            None | Some("snapshot") => Boot::Snapshot,
            Some("cold") => Boot::Cold,
            Some(v) => bail!("{BOOT}={v:?}: use snapshot or cold"),
        };
        let kernel = match ann.get(KERNEL) {
            None => None,
            Some(p) if p.starts_with('/') => Some(PathBuf::from(p)),
            Some(p) => bail!("{KERNEL}={p:?}: must be an absolute path to a vmlinux"),
        };
        let limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref());
        let memory_mib = match (ann.get(MEMORY), limit.and_then(|m| m.limit())) {
            (Some(v), _) => hako_contract::formats::parse_size(v, 1 << 20)
                .with_context(|| format!("{MEMORY}={v:?}"))?
                .div_ceil(1 << 20),
            (None, Some(l)) if l > 0 => (l as u64).div_ceil(1 << 20),
            _ => DEFAULT_MEMORY_MIB,
        };
        let source = if ann.contains_key(MEMORY) {
            MEMORY
        } else {
            "linux.resources.memory.limit"
        };
        if memory_mib < MIN_MEMORY_MIB {
            bail!("{source}: {memory_mib} MiB is below the {MIN_MEMORY_MIB} MiB a microvm guest needs to boot");
        }
        if memory_mib > MAX_MEMORY_MIB {
            bail!("{source}: {memory_mib} MiB is over the {MAX_MEMORY_MIB} MiB limit of a microvm");
        }
        let vcpus = match ann.get(VCPUS) {
            Some(v) => {
                let n: u32 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("{VCPUS}={v:?} is not a number"))?;
                if !(1..=MAX_VCPUS).contains(&n) {
                    bail!("{VCPUS}={n}: must be between 1 and {MAX_VCPUS}");
                }
                n
            }
            None => 1,
        };
        let image_budget = match ann.get(IMAGE_BUDGET) {
            Some(v) => hako_contract::formats::parse_size(v, 1)
                .with_context(|| format!("{IMAGE_BUDGET}={v:?}"))?,
            None => DEFAULT_IMAGE_BUDGET,
        };
        Ok(Knobs {
            boot,
            vmm,
            kernel,
            vcpus,
            memory_mib,
            image_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ann: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        s.set_annotations(Some(
            ann.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        s
    }

    #[test]
    fn defaults_and_values() {
        let k = Knobs::from_spec(&spec(&[])).unwrap();
        assert_eq!(
            (k.vmm, k.vcpus, k.memory_mib, k.boot),
            (Vmm::Auto, 1, DEFAULT_MEMORY_MIB, Boot::Snapshot)
        );
        let k = Knobs::from_spec(&spec(&[(BOOT, "cold")])).unwrap();
        assert_eq!(k.boot, Boot::Cold);
        let k = Knobs::from_spec(&spec(&[
            (VMM, "qemu"),
            (VCPUS, "2"),
            (MEMORY, "256M"),
            (IMAGE_BUDGET, "10M"),
        ]))
        .unwrap();
        assert_eq!(
            (k.vmm, k.vcpus, k.memory_mib, k.image_budget),
            (Vmm::Qemu, 2, 256, 10 << 20)
        );
        assert_eq!(
            Knobs::from_spec(&spec(&[(MEMORY, "1G")]))
                .unwrap()
                .memory_mib,
            1024
        );
        assert_eq!(
            Knobs::from_spec(&spec(&[(MEMORY, "200")]))
                .unwrap()
                .memory_mib,
            200
        );
    }

    #[test]
    fn bad_values_are_errors() {
        for (k, v, want) in [
            (VMM, "firecracker", "use hako, qemu or auto"),
            (BOOT, "warm", "use snapshot or cold"),
            (VCPUS, "0", "between 1 and"),
            (VCPUS, "lots", "not a number"),
            (MEMORY, "16M", "below the"),
            (MEMORY, "12X", "not a size"),
            (KERNEL, "vmlinux", "absolute path"),
            ("io.hako.microvm.cpus", "1", "unknown annotation"),
        ] {
            let e = format!("{:#}", Knobs::from_spec(&spec(&[(k, v)])).unwrap_err());
            assert!(e.contains(want), "{k}={v}: {e}");
        }
    }

    #[test]
    fn memory_from_the_spec_limit() {
        let mut s = spec(&[]);
        let mem = oci_spec::runtime::LinuxMemoryBuilder::default()
            .limit(300i64 << 20)
            .build()
            .unwrap();
        let res = oci_spec::runtime::LinuxResourcesBuilder::default()
            .memory(mem)
            .build()
            .unwrap();
        let linux = oci_spec::runtime::LinuxBuilder::default()
            .resources(res)
            .build()
            .unwrap();
        s.set_linux(Some(linux));
        assert_eq!(Knobs::from_spec(&s).unwrap().memory_mib, 300);
    }
}
