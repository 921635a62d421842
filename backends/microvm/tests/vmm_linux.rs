//! The KVM probe, and a real Linux boot on hako's VMM whenever the probe says this host's KVM
//! can run Linux (otherwise the test prints why it did not boot).

use std::path::PathBuf;

use hako_microvm::vmm::probe::{host_key, probe_cached, run_probe};
use hako_microvm::vmm::{BlockDevice, Capture, ExitReason, Input, Output, Stdio, VmConfig, Vmm};

fn kernel() -> PathBuf {
    std::env::var_os("HAKO_TEST_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/hako/kernels/vmlinux"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hako-vmm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn probe_answers_and_is_cached() {
    if !std::path::Path::new("/dev/kvm").exists() {
        let r = run_probe(&std::env::temp_dir()).unwrap();
        assert!(!r.runs_linux);
        eprintln!("SKIP (partly): no /dev/kvm: {}", r.detail);
        return;
    }
    let dir = scratch("probe");
    let first = probe_cached(&dir).unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "exactly the cache file is left: {files:?}");
    let cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(cached["runs_linux"], first.runs_linux);
    assert_eq!(cached["host_key"], host_key());
    // A second call answers from the cache (same verdict; the file is not rewritten).
    let mtime = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let second = probe_cached(&dir).unwrap();
    assert_eq!(second, first);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        mtime
    );
    eprintln!(
        "probe on {}: runs_linux={} ({})",
        first.host_key, first.runs_linux, first.detail
    );
    if host_key().ends_with("|kvm_pvm") {
        // kvm_pvm cannot emulate what Linux executes: the probe must say no, and why.
        assert!(!first.runs_linux);
        assert!(
            first.detail.contains("KVM internal error"),
            "{}",
            first.detail
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn linux_boots_on_hako_vmm_when_kvm_can_run_it() {
    let k = kernel();
    if !k.exists() {
        eprintln!(
            "SKIP: no guest kernel at {} (build it with kernels/build.sh)",
            k.display()
        );
        return;
    }
    let dir = scratch("linux");
    let probe = probe_cached(&dir).unwrap();
    if !probe.runs_linux {
        eprintln!(
            "SKIP: this host's KVM cannot run an unmodified Linux guest ({}), so the real boot \
             on hako's VMM is not run here",
            probe.detail
        );
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    // An empty 1 MiB disk: Linux must find it as vda through virtio-mmio, fail to mount a root
    // on it, panic, and reboot at once (panic=-1, reboot=k) through the i8042.
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let cap = Capture::default();
    let vmm = Vmm::new(VmConfig {
        memory_mib: 128,
        kernel: k,
        cmdline: "console=ttyS0 reboot=k panic=-1 root=/dev/vda".into(),
        block: vec![BlockDevice {
            path: disk,
            read_only: true,
            id: "probe".into(),
        }],
        serial: Stdio {
            input: Input::None,
            output: Output::Capture(cap.clone()),
        },
        ..Default::default()
    })
    .unwrap();
    let out = vmm.run().unwrap();
    let text = String::from_utf8_lossy(&cap.contents()).into_owned();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(text.contains("Linux version"), "{text}");
    assert!(
        text.contains("[vda]"),
        "virtio-blk not found by the guest:\n{text}"
    );
    assert_eq!(out.exit, ExitReason::Reset, "{text}");
}
