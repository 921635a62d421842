//! Loading a bundle: parse config.json (errors name the offending field), check what every
//! backend relies on, and choose the backend (brief §2, the annotation contract).

use crate::backends;
use anyhow::{bail, Context, Result};
use hako_contract::{ANNOTATION_PREFIX, BACKEND_ANNOTATION};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// The spec, with `root.path` made absolute.
    pub spec: Spec,
}

/// Read and validate `<dir>/config.json`.
pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("bundle {} not found", dir.display()))?;
    let cfg = dir.join("config.json");
    let bytes = std::fs::read(&cfg).with_context(|| format!("cannot read {}", cfg.display()))?;
    let mut spec = parse(&bytes).with_context(|| format!("invalid {}", cfg.display()))?;
    validate(&mut spec, &dir)?;
    Ok(Bundle { dir, spec })
}

/// Parse a spec; a type error names its JSON path (e.g. `linux.namespaces[0].type`).
pub fn parse(bytes: &[u8]) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            anyhow::anyhow!("{inner}")
        } else {
            anyhow::anyhow!("{path}: {inner}")
        }
    })
}

fn validate(spec: &mut Spec, dir: &Path) -> Result<()> {
    if !spec.version().starts_with("1.") {
        bail!(
            "unsupported ociVersion {:?}: hako runs runtime-spec 1.x bundles",
            spec.version()
        );
    }
    let Some(root) = spec.root().clone() else {
        bail!("config.json has no root");
    };
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    if !rootfs.is_dir() {
        bail!(
            "rootfs {} does not exist or is not a directory",
            rootfs.display()
        );
    }
    let mut root = root;
    root.set_path(rootfs);
    spec.set_root(Some(root));
    let Some(process) = spec.process() else {
        bail!("config.json has no process");
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        bail!("process.args must name a program");
    }
    if !process.cwd().is_absolute() {
        bail!(
            "process.cwd {} must be an absolute path",
            process.cwd().display()
        );
    }
    Ok(())
}

/// Whether `process.args[0]` is a wasm module or component: looked up through the spec's PATH
/// for a bare name, opened inside the rootfs (symlinks followed without leaving it), a regular
/// file that starts with the wasm magic.
fn entry_is_wasm(spec: &Spec) -> bool {
    use std::os::fd::AsFd;
    let Some(rootfs) = spec.root().as_ref().map(|r| r.path()) else {
        return false;
    };
    let Some(process) = spec.process().as_ref() else {
        return false;
    };
    let Some(arg0) = process.args().as_ref().and_then(|a| a.first()) else {
        return false;
    };
    let candidates: Vec<String> = if arg0.contains('/') {
        let base = if arg0.starts_with('/') {
            String::new()
        } else {
            process.cwd().display().to_string() + "/"
        };
        vec![format!("{base}{arg0}")]
    } else {
        // The spec's PATH only, as every backend looks the program up (and runc does).
        let Some(path) = process
            .env()
            .iter()
            .flatten()
            .find_map(|kv| kv.strip_prefix("PATH="))
        else {
            return false;
        };
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{d}/{arg0}"))
            .collect()
    };
    let Ok(root) = std::fs::File::open(rootfs) else {
        return false;
    };
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    candidates.iter().any(|c| {
        hako_linux::inroot::open(root.as_fd(), Path::new(c), flags, 0)
            .map(std::fs::File::from)
            .is_ok_and(|f| {
                f.metadata().is_ok_and(|m| m.is_file()) && hako_contract::formats::is_wasm(f)
            })
    })
}

/// Choose the backend for a bundle (brief §2), in this order: `io.hako.backend`; the wasm
/// annotations other runtimes honour (`run.oci.handler=wasm`, `module.wasm.image/variant`);
/// the global `--backend`; an entry point with the wasm magic; otherwise `container`.
pub fn choose_backend(spec: &Spec, flag: Option<&str>) -> Result<String> {
    let ann = spec.annotations().clone().unwrap_or_default();
    if let Some(b) = ann.get(BACKEND_ANNOTATION) {
        if !backends::NAMES.contains(&b.as_str()) {
            bail!(
                "annotation {BACKEND_ANNOTATION}={b:?}: unknown backend (choose one of {})",
                backends::NAMES.join(", ")
            );
        }
        return Ok(b.clone());
    }
    if ann.get("run.oci.handler").map(String::as_str) == Some("wasm") {
        return Ok("wasm".into());
    }
    match ann.get("module.wasm.image/variant").map(String::as_str) {
        Some("compat") => return Ok("wasm".into()),
        // compat-smart: wasm only when the entry point really is a module, as crun does.
        Some("compat-smart") => {
            let wasm = entry_is_wasm(spec);
            return Ok(if wasm { "wasm" } else { "container" }.into());
        }
        Some(other) => {
            bail!("annotation module.wasm.image/variant={other:?}: expected compat or compat-smart")
        }
        None => {}
    }
    if let Some(b) = flag {
        if !backends::NAMES.contains(&b) {
            bail!(
                "--backend {b:?}: unknown backend (choose one of {})",
                backends::NAMES.join(", ")
            );
        }
        return Ok(b.to_string());
    }
    if entry_is_wasm(spec) {
        return Ok("wasm".into());
    }
    Ok("container".into())
}

/// Every `io.hako.*` annotation must be one the chosen backend knows.
pub fn check_annotations(spec: &Spec, backend: &str, known: &[&str]) -> Result<()> {
    for key in spec.annotations().iter().flatten().map(|(k, _)| k) {
        if !key.starts_with(ANNOTATION_PREFIX)
            || key == BACKEND_ANNOTATION
            || known.contains(&key.as_str())
        {
            continue;
        }
        let owner = key[ANNOTATION_PREFIX.len()..]
            .split('.')
            .next()
            .unwrap_or("");
        if backends::NAMES.contains(&owner) && owner != backend {
            bail!("annotation {key} is for the {owner} backend, but this bundle runs on the {backend} backend");
        }
        bail!("unknown annotation {key}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(ann: &[(&str, &str)], args0: &str) -> Spec {
        let mut s = Spec::default();
        s.set_annotations(Some(
            ann.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        let mut p = s.process().clone().unwrap();
        p.set_args(Some(vec![args0.to_string()]));
        s.set_process(Some(p));
        s
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse(br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"bogus"}]}}"#)
            .unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("linux.namespaces[0].type"), "{m}");
        assert!(parse(b"{not json").is_err());
    }

    #[test]
    fn backend_choice_follows_the_annotation_contract() {
        assert_eq!(
            choose_backend(&spec_with(&[], "sh"), None).unwrap(),
            "container"
        );
        assert_eq!(
            choose_backend(&spec_with(&[], "sh"), Some("sentry")).unwrap(),
            "sentry"
        );
        assert_eq!(
            choose_backend(
                &spec_with(&[("io.hako.backend", "microvm")], "sh"),
                Some("sentry")
            )
            .unwrap(),
            "microvm"
        );
        assert_eq!(
            choose_backend(&spec_with(&[("run.oci.handler", "wasm")], "x"), None).unwrap(),
            "wasm"
        );
        assert_eq!(
            choose_backend(
                &spec_with(&[("module.wasm.image/variant", "compat")], "x"),
                None
            )
            .unwrap(),
            "wasm"
        );
        // compat-smart with a non-wasm (here: absent) entry point falls back to the container.
        assert_eq!(
            choose_backend(
                &spec_with(&[("module.wasm.image/variant", "compat-smart")], "x"),
                None
            )
            .unwrap(),
            "container"
        );
        assert!(choose_backend(&spec_with(&[("io.hako.backend", "kvm")], "x"), None).is_err());
        assert!(choose_backend(&spec_with(&[], "x"), Some("nope")).is_err());
    }

    #[test]
    fn wasm_magic_in_the_rootfs_chooses_wasm() {
        let dir = std::env::temp_dir().join(format!("hako-bundle-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/app.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::os::unix::fs::symlink("app.wasm", dir.join("bin/app")).unwrap();
        let mut s = spec_with(&[], "app");
        let mut root = s.root().clone().unwrap();
        root.set_path(dir.clone());
        s.set_root(Some(root));
        let mut p = s.process().clone().unwrap();
        p.set_env(Some(vec!["PATH=/bin".into()]));
        s.set_process(Some(p));
        assert_eq!(choose_backend(&s, None).unwrap(), "wasm");
        let mut s2 = s.clone();
        s2.set_annotations(Some(
            [(
                "module.wasm.image/variant".to_string(),
                "compat-smart".to_string(),
            )]
            .into(),
        ));
        assert_eq!(choose_backend(&s2, None).unwrap(), "wasm");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_hako_annotations_are_errors() {
        let s = spec_with(&[("io.hako.microvm.vcpus", "2")], "x");
        assert!(check_annotations(&s, "microvm", &["io.hako.microvm.vcpus"]).is_ok());
        let e = check_annotations(&s, "container", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("microvm backend"), "{e}");
        let s = spec_with(&[("io.hako.frobnicate", "1"), ("org.other", "x")], "x");
        assert!(check_annotations(&s, "container", &[])
            .unwrap_err()
            .to_string()
            .contains("unknown annotation"));
    }
}
