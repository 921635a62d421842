//! Figures for hako's VMM with a synthetic guest (printed, not asserted: no timing assertions):
//! time from `Vmm::new` to the guest's first instruction (its first exit, an OUT), and the
//! VMM process's resident memory beyond guest memory while the guest runs.
//! `cargo test -p hako-microvm --test vmm_measure -- --nocapture` shows them.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use hako_microvm::vmm::boot::synthetic_elf;
use hako_microvm::vmm::{Capture, ExitReason, Input, Output, Stdio, VmConfig, Vmm};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

mod common;
use common::{kvm_usable, spread_ms};

/// `mov dx, 0xf4 ; mov al, 0 ; out dx, al ; hlt`
const EXIT_STUB: &[u8] = &[0x66, 0xba, 0xf4, 0x00, 0xb0, 0x00, 0xee, 0xf4];
/// `mov dx, 0x3f8 ; mov al, 'r' ; out dx, al ; jmp $`
const SPIN_STUB: &[u8] = &[0x66, 0xba, 0xf8, 0x03, 0xb0, 0x72, 0xee, 0xeb, 0xfe];

const GUEST_MIB: u32 = 128;

/// (Rss outside the guest-memory mapping, Rss of the guest-memory mapping), from smaps, by the
/// rule the backend's timings file uses.
fn rss_kib(pid: i32) -> (u64, u64) {
    let r = hako_contract::proc::vm_rss(pid, u64::from(GUEST_MIB) << 20)
        .expect("a guest-memory mapping in the VMM's smaps");
    (r.vmm_kib, r.guest_kib)
}

#[test]
fn measure_start_to_first_instruction_and_rss() {
    if !kvm_usable() {
        return;
    }
    let dir = std::env::temp_dir();
    let exit_k = dir.join(format!("hako-vmm-measure-exit-{}.elf", std::process::id()));
    let spin_k = dir.join(format!("hako-vmm-measure-spin-{}.elf", std::process::id()));
    std::fs::write(
        &exit_k,
        synthetic_elf(EXIT_STUB, 0x100_0000, 0x100_0000, 0x100_0000, None),
    )
    .unwrap();
    std::fs::write(
        &spin_k,
        synthetic_elf(SPIN_STUB, 0x100_0000, 0x100_0000, 0x100_0000, None),
    )
    .unwrap();

    // Start to first guest instruction, 30 VMs in a row in this process.
    let mut first = Vec::new();
    let mut build = Vec::new();
    for _ in 0..30 {
        let out = Vmm::new(VmConfig {
            memory_mib: GUEST_MIB,
            kernel: exit_k.clone(),
            serial: Stdio {
                input: Input::None,
                output: Output::Capture(Capture::default()),
            },
            ..Default::default()
        })
        .unwrap()
        .run()
        .unwrap();
        assert_eq!(out.exit, ExitReason::DebugExit(0));
        first.push(out.to_first_exit.unwrap());
        build.push(out.build_time);
    }
    let (median, min, max) = spread_ms(&mut first);
    eprintln!(
        "hako VMM: Vmm::new -> first guest exit: median {median:.2} ms, min {min:.2} ms, max {max:.2} ms (build part median {:.2} ms), {} MiB guest",
        spread_ms(&mut build).0,
        GUEST_MIB
    );

    // RSS of a VMM process while its guest runs (a fresh forked child).
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a valid array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh descriptors owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: this binary runs one test; the child only builds and runs a VM, then is killed.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(rd);
            let vmm = Vmm::new(VmConfig {
                memory_mib: GUEST_MIB,
                kernel: spin_k.clone(),
                serial: Stdio {
                    input: Input::None,
                    output: Output::Fd(std::fs::File::from(wr)),
                },
                ..Default::default()
            });
            let _ = vmm.map(|v| v.run());
            // SAFETY: leaving the child.
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut b = [0u8; 1];
            let mut r = std::fs::File::from(rd);
            r.read_exact(&mut b).unwrap();
            assert_eq!(b[0], b'r');
            let (other, guest) = rss_kib(child.as_raw());
            kill(child, Signal::SIGKILL).unwrap();
            waitpid(child, None).unwrap();
            eprintln!(
                "hako VMM: RSS of the VMM process while the guest runs: {other} KiB outside guest \
                 memory (the whole process: test binary, libc, VMM heap, vCPU thread); guest \
                 memory resident {guest} KiB of {GUEST_MIB} MiB"
            );
        }
    }
    std::fs::remove_file(&exit_k).unwrap();
    std::fs::remove_file(&spin_k).unwrap();
}

/// The measurement `hako bench` takes ([`hako_microvm::measure`]): a synthetic guest in a forked,
/// jailed, seccomp-filtered VMM process, as the backend's hako engine runs one. Figures printed.
#[test]
fn synthetic_guest_measurement_as_the_bench_takes_it() {
    if !kvm_usable() {
        return;
    }
    // SAFETY: geteuid has no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: the jailed VMM needs root (namespaces, pivot_root)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("hako-vmm-measure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let guest = hako_microvm::measure::SyntheticGuest::new(&dir, u64::from(GUEST_MIB)).unwrap();
    for _ in 0..3 {
        let r = guest.measure(Duration::from_secs(60)).unwrap();
        let start = r.vmm_start.expect("the guest's first exit was timed");
        let rss = r.rss.expect("a guest-memory mapping in the VMM's smaps");
        assert!(r.fork_rss_kib > 0 && rss.vmm_kib > 0, "{r:?}");
        eprintln!(
            "hako VMM (jailed, seccomp): Vmm::new -> first guest exit {:.2} ms (build {:.2} ms); \
             {} KiB outside guest memory, {} KiB inherited at fork",
            start.as_secs_f64() * 1e3,
            r.vmm_build.as_secs_f64() * 1e3,
            rss.vmm_kib,
            r.fork_rss_kib
        );
    }
    drop(guest);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "the stub ELF is removed"
    );
    std::fs::remove_dir(&dir).unwrap();
}

/// The restore measurement `hako bench` can take ([`hako_microvm::measure`]): the stub is
/// snapshotted once, then restored into two forked, jailed, seccomp-filtered VMM processes at
/// once. Figures printed: restore → first guest exit, and the guest memory the copies share.
#[test]
fn restored_synthetic_guest_measurement_as_the_bench_takes_it() {
    if !kvm_usable() {
        return;
    }
    // SAFETY: geteuid has no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: the jailed VMM needs root (namespaces, pivot_root)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("hako-vmm-restore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let guest = hako_microvm::measure::SyntheticGuest::new(&dir, u64::from(GUEST_MIB)).unwrap();
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let runs = guest.measure_restore(2, Duration::from_secs(60)).unwrap();
        assert_eq!(runs.len(), 2);
        let (mut rss, mut pss) = (0, 0);
        for r in &runs {
            let m = r
                .memory
                .as_ref()
                .expect("the copy maps the snapshot's memory file");
            assert_eq!(m.perms, "rw-p", "a private (copy-on-write) mapping: {m:?}");
            assert_eq!(m.size_kib, u64::from(GUEST_MIB) << 10, "{m:?}");
            rss += m.rss_kib;
            pss += m.pss_kib;
            let first = r.to_first_exit.expect("the restored guest ran");
            firsts.push(first);
            eprintln!(
                "hako VMM (jailed, seccomp): Vmm::restore -> first guest exit {:.2} ms \
                 (restore {:.2} ms); {} KiB outside guest memory",
                first.as_secs_f64() * 1e3,
                r.restore.as_secs_f64() * 1e3,
                r.rss.map_or(0, |v| v.vmm_kib)
            );
            eprintln!("  {}", r.phases);
        }
        assert!(
            pss < rss,
            "the two copies share pages of the snapshot: {runs:?}"
        );
        eprintln!("  guest memory of the two copies: Rss {rss} KiB, Pss {pss} KiB");
    }
    let (median, min, max) = common::spread_ms(&mut firsts);
    eprintln!(
        "hako VMM: restore -> first guest exit: median {median:.2} ms, min {min:.2}, max {max:.2}"
    );
    drop(guest);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "the stub ELF and its snapshot are removed"
    );
    std::fs::remove_dir(&dir).unwrap();
}
