//! Bad input gives one clear error from check or create and leaves nothing behind. None of these
//! boots a guest, except the probe-guarded vmm=hako case, which stops before any VM starts.

use hako_contract::{Backend, CreateRequest, GlobalOptions};
use hako_microvm::{knobs, MicrovmBackend};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

struct Env {
    dir: PathBuf,
    global: GlobalOptions,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("hako-mvm-bad-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bundle/rootfs/bin")).unwrap();
        std::fs::write(dir.join("bundle/rootfs/bin/hello"), vec![b'x'; 100_000]).unwrap();
        std::fs::create_dir_all(dir.join("root/c")).unwrap();
        Env {
            global: GlobalOptions {
                root: dir.join("root"),
                ..Default::default()
            },
            dir,
        }
    }

    fn spec(&self, ann: &[(&str, String)]) -> Spec {
        let mut s = Spec::default();
        let mut r = s.root().clone().unwrap();
        r.set_path(self.dir.join("bundle/rootfs"));
        s.set_root(Some(r));
        s.set_annotations(Some(
            ann.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ));
        s
    }

    /// check, then create; the first error, as text.
    fn run(&self, spec: &Spec) -> String {
        let b = MicrovmBackend::new();
        let bundle = self.dir.join("bundle");
        if let Err(e) = b.check(spec, &bundle) {
            return format!("check: {e:#}");
        }
        let state = self.global.root.join("c");
        let fifo = state.join("start");
        let req = CreateRequest {
            id: "c",
            bundle: &bundle,
            spec,
            state_dir: &state,
            start_fifo: &fifo,
            console_socket: None,
            preserve_fds: 0,
            no_pivot: false,
            no_new_keyring: false,
            global: &self.global,
        };
        match b.create(&req) {
            Ok(c) => panic!("create succeeded (pid {})", c.pid),
            Err(e) => format!("create: {e:#}"),
        }
    }

    /// Nothing in the state dir, no temporary files in the cache.
    fn assert_clean(&self) {
        let state: Vec<_> = std::fs::read_dir(self.global.root.join("c"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(state.is_empty(), "left in the state dir: {state:?}");
        if let Ok(rd) = std::fs::read_dir(self.global.root.join("microvm-cache")) {
            let tmp: Vec<_> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect();
            assert!(tmp.is_empty(), "temporary files left in the cache: {tmp:?}");
        }
    }
}

fn skip() -> bool {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: not root");
        return true;
    }
    false
}

#[test]
fn missing_and_corrupt_kernels() {
    if skip() {
        return;
    }
    let env = Env::new("kernel");
    let missing = env.dir.join("no-such-vmlinux");
    let e = env.run(&env.spec(&[(knobs::KERNEL, missing.display().to_string())]));
    assert!(
        e.contains("does not exist") && e.contains("kernels/build.sh"),
        "{e}"
    );
    env.assert_clean();

    let junk = env.dir.join("junk");
    std::fs::write(&junk, vec![0x90u8; 8192]).unwrap();
    let e = env.run(&env.spec(&[(knobs::KERNEL, junk.display().to_string())]));
    assert!(e.contains("not an ELF"), "{e}");
    env.assert_clean();

    // A real kernel cut short.
    let real = hako_microvm::assets::default_kernel();
    if let Ok(data) = std::fs::read(&real) {
        let cut = env.dir.join("cut");
        std::fs::write(&cut, &data[..data.len() / 3]).unwrap();
        let e = env.run(&env.spec(&[(knobs::KERNEL, cut.display().to_string())]));
        assert!(e.contains("past the end of the file"), "{e}");
        env.assert_clean();
    } else {
        eprintln!("(no built guest kernel: the truncated-kernel case did not run)");
    }
    std::fs::remove_dir_all(&env.dir).unwrap();
}

#[test]
fn memory_below_what_boots_and_bad_knobs() {
    if skip() {
        return;
    }
    let env = Env::new("knobs");
    let e = env.run(&env.spec(&[(knobs::MEMORY, "16M".into())]));
    assert!(
        e.starts_with("check:") && e.contains("below the 32 MiB"),
        "{e}"
    );
    let e = env.run(&env.spec(&[(knobs::VCPUS, "64".into())]));
    assert!(e.contains("between 1 and 8"), "{e}");
    let e = env.run(&env.spec(&[("io.hako.microvm.disk", "x".into())]));
    assert!(e.contains("unknown annotation"), "{e}");
    env.assert_clean();
    std::fs::remove_dir_all(&env.dir).unwrap();
}

#[test]
fn rootfs_over_budget() {
    if skip() {
        return;
    }
    let env = Env::new("budget");
    if hako_microvm::assets::check_kernel(&hako_microvm::assets::default_kernel()).is_err() {
        eprintln!(
            "SKIPPED: no guest kernel (kernels/build.sh); create stops at the kernel check first"
        );
        return;
    }
    if hako_microvm::assets::find_agent().is_err() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/build.sh");
        let out = std::process::Command::new(script).output().unwrap();
        assert!(out.status.success());
        std::env::set_var("HAKO_AGENT", String::from_utf8(out.stdout).unwrap().trim());
    }
    let e = env.run(&env.spec(&[
        (knobs::IMAGE_BUDGET, "4M".into()),
        (knobs::VMM, "qemu".into()),
    ]));
    assert!(e.contains("over the microvm image budget of 4 MiB"), "{e}");
    env.assert_clean();
    // No rootfs image was made.
    let images: Vec<_> = std::fs::read_dir(env.global.root.join("microvm-cache"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("rootfs-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(images.is_empty(), "{images:?}");
    std::fs::remove_dir_all(&env.dir).unwrap();
}

#[test]
fn hako_vmm_refused_where_kvm_cannot_run_linux() {
    if skip() {
        return;
    }
    let env = Env::new("hako");
    let (ok, why) = hako_microvm::hako_engine::probe(&env.global.root.join("microvm-cache"));
    if ok {
        eprintln!("SKIPPED: this host's KVM runs Linux ({why}); the refusal does not apply");
        return;
    }
    if hako_microvm::assets::check_kernel(&hako_microvm::assets::default_kernel()).is_err() {
        eprintln!("SKIPPED: no guest kernel (kernels/build.sh)");
        return;
    }
    let e = env.run(&env.spec(&[(knobs::VMM, "hako".into())]));
    assert!(
        e.contains("vmm=hako: hako's own VMM cannot boot a Linux guest on this host"),
        "{e}"
    );
    env.assert_clean();
    std::fs::remove_dir_all(&env.dir).unwrap();
}
