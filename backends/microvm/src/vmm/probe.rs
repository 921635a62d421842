//! Can this host's KVM run an unmodified Linux guest? A probe guest executes instructions Linux
//! needs early (CR4.OSXSAVE + XSETBV, XSAVE/XRSTOR, POPCNT, SSE, LIDT and an INT3 handled
//! through the IDT, IRETQ) and reports success on the debug exit port. `kvm_pvm` stops it
//! with a KVM internal error (emulation failure), as it stops Linux. The answer is cached per
//! host, keyed by kernel release, CPU model and KVM module.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{boot, Capture, ExitReason, Output, Stdio, VmConfig, Vmm};

/// Debug-exit value the probe writes when every instruction worked.
pub const PROBE_OK: u8 = 0x4f;
/// Load (and entry) address of the probe guest.
pub const PROBE_LOAD: u64 = 0x100_0000;

/// The probe guest (64-bit, loaded at 16 MiB), assembled from:
/// ```text
///   mov rax, cr4 ; or eax, (1<<9)|(1<<10)|(1<<18) ; mov cr4, rax   # OSFXSR, OSXMMEXCPT, OSXSAVE
///   xor ecx, ecx ; mov eax, 3 ; xor edx, edx ; xsetbv               # XCR0 = x87|SSE
///   mov rdi, 0x1100000 ; mov eax, 3 ; xor edx, edx
///   xsave [rdi] ; xrstor [rdi]
///   mov rax, 0xf0f0 ; popcnt rbx, rax ; cmp rbx, 8 ; jne fail
///   pxor xmm0, xmm0
///   lea rax, [rip+handler] ; mov rdi, 0x1101000                   # IDT vector 3 -> handler
///   mov [rdi+48], ax ; mov word [rdi+50], 0x08 ; mov word [rdi+52], 0x8e00
///   shr rax, 16 ; mov [rdi+54], ax ; shr rax, 16 ; mov [rdi+56], eax ; mov dword [rdi+60], 0
///   mov rsi, 0x1102000 ; mov word [rsi], 4095 ; mov [rsi+2], rdi ; lidt [rsi]
///   xor r12d, r12d ; int3 ; cmp r12d, 1 ; jne fail
///   mov dx, 0xf4 ; mov al, 0x4f ; out dx, al ; hlt
/// fail: mov dx, 0xf4 ; mov al, 0x46 ; out dx, al ; hlt
/// handler: mov r12d, 1 ; iretq
/// ```
pub const PROBE_CODE: &[u8] = &[
    0x0f, 0x20, 0xe0, 0x0d, 0x00, 0x06, 0x04, 0x00, 0x0f, 0x22, 0xe0, 0x31, 0xc9, 0xb8, 0x03, 0x00,
    0x00, 0x00, 0x31, 0xd2, 0x0f, 0x01, 0xd1, 0x48, 0xc7, 0xc7, 0x00, 0x00, 0x10, 0x01, 0xb8, 0x03,
    0x00, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0xae, 0x27, 0x0f, 0xae, 0x2f, 0x48, 0xc7, 0xc0, 0xf0, 0xf0,
    0x00, 0x00, 0xf3, 0x48, 0x0f, 0xb8, 0xd8, 0x48, 0x83, 0xfb, 0x08, 0x75, 0x5d, 0x66, 0x0f, 0xef,
    0xc0, 0x48, 0x8d, 0x05, 0x5a, 0x00, 0x00, 0x00, 0x48, 0xc7, 0xc7, 0x00, 0x10, 0x10, 0x01, 0x66,
    0x89, 0x47, 0x30, 0x66, 0xc7, 0x47, 0x32, 0x08, 0x00, 0x66, 0xc7, 0x47, 0x34, 0x00, 0x8e, 0x48,
    0xc1, 0xe8, 0x10, 0x66, 0x89, 0x47, 0x36, 0x48, 0xc1, 0xe8, 0x10, 0x89, 0x47, 0x38, 0xc7, 0x47,
    0x3c, 0x00, 0x00, 0x00, 0x00, 0x48, 0xc7, 0xc6, 0x00, 0x20, 0x10, 0x01, 0x66, 0xc7, 0x06, 0xff,
    0x0f, 0x48, 0x89, 0x7e, 0x02, 0x0f, 0x01, 0x1e, 0x45, 0x31, 0xe4, 0xcc, 0x41, 0x83, 0xfc, 0x01,
    0x75, 0x08, 0x66, 0xba, 0xf4, 0x00, 0xb0, 0x4f, 0xee, 0xf4, 0x66, 0xba, 0xf4, 0x00, 0xb0, 0x46,
    0xee, 0xf4, 0x41, 0xbc, 0x01, 0x00, 0x00, 0x00, 0x48, 0xcf,
];

/// The cached verdict.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProbeResult {
    pub runs_linux: bool,
    /// Why, in words (the exit the probe guest produced).
    pub detail: String,
    pub host_key: String,
}

/// What identifies "this host" for the cache: kernel release, CPU model, KVM flavour.
pub fn host_key() -> String {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let virt = if cpuinfo.contains(" vmx") {
        "vmx"
    } else if cpuinfo.contains(" svm") {
        "svm"
    } else {
        "novirt"
    };
    let kvm = ["kvm_pvm", "kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| Path::new("/sys/module").join(m).exists())
        .unwrap_or("kvm");
    format!("{release}|{model}|{virt}|{kvm}")
}

fn cache_file(cache: &Path, key: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    cache.join(format!("kvm-probe-{:016x}.json", h.finish()))
}

/// Run the probe guest now (no cache).
pub fn run_probe(scratch: &Path) -> Result<ProbeResult> {
    let key = host_key();
    if !Path::new("/dev/kvm").exists() {
        return Ok(ProbeResult {
            runs_linux: false,
            detail: "/dev/kvm does not exist".into(),
            host_key: key,
        });
    }
    let elf = boot::synthetic_elf(PROBE_CODE, PROBE_LOAD, PROBE_LOAD, PROBE_LOAD, None);
    let kernel = super::write_temp(scratch, "kvm-probe.elf", &elf)?;
    let cap = Capture::default();
    let built = Vmm::new(VmConfig {
        memory_mib: 32,
        kernel: kernel.clone(),
        serial: Stdio {
            input: super::Input::None,
            output: Output::Capture(cap),
        },
        ..Default::default()
    });
    let _ = std::fs::remove_file(&kernel);
    let (runs_linux, detail) = match built.and_then(|v| v.run()) {
        Ok(out) => match out.exit {
            ExitReason::DebugExit(PROBE_OK) => (
                true,
                "probe guest ran XSAVE/XRSTOR, POPCNT, SSE, INT3 via IDT".to_string(),
            ),
            ExitReason::DebugExit(v) => (false, format!("probe guest reported failure {v:#x}")),
            other => (false, format!("probe guest stopped: {}", other.describe())),
        },
        Err(e) => (false, format!("cannot run a VM: {e:#}")),
    };
    Ok(ProbeResult {
        runs_linux,
        detail,
        host_key: key,
    })
}

/// Whether KVM on this host can run Linux, cached in `cache` (a directory, created if needed)
/// per host key. The microvm backend's `auto` mode picks hako's VMM only when this is true.
pub fn probe_kvm_runs_linux(cache: &Path) -> Result<bool> {
    Ok(probe_cached(cache)?.runs_linux)
}

/// As [`probe_kvm_runs_linux`], with the reason.
pub fn probe_cached(cache: &Path) -> Result<ProbeResult> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let key = host_key();
    let file = cache_file(cache, &key);
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(r) = serde_json::from_str::<ProbeResult>(&text) {
            if r.host_key == key {
                return Ok(r);
            }
        }
    }
    let r = run_probe(cache)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&r)?)?;
    std::fs::rename(&tmp, &file)?;
    Ok(r)
}
