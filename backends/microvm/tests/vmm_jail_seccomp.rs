//! The VMM's seccomp filters and jail, each checked in a forked child (one test in this
//! binary, so the fork happens while the process has no other busy threads).

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};

use hako_microvm::vmm::boot::synthetic_elf;
use hako_microvm::vmm::{seccomp, ExitReason, Input, JailConfig, Output, Stdio, VmConfig, Vmm};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Same 64-bit stub as vmm_guests.rs: prints "hi", the e820 count, 'b' from the high alias,
/// then writes 7 to the debug exit port.
const LONG_MODE_STUB: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, 0xb0, 0x68, 0xee, 0xb0, 0x69, 0xee, 0x8a, 0x86, 0xe8, 0x01, 0x00, 0x00,
    0x04, 0x30, 0xee, 0x48, 0xb8, 0x1f, 0x00, 0x00, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe0, 0x48,
    0x8d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x48, 0xc1, 0xeb, 0x3f, 0x80, 0xc3, 0x61, 0x88, 0xd8, 0xee,
    0x66, 0xba, 0xf4, 0x00, 0xb0, 0x07, 0xee, 0xf4,
];

fn in_child(f: impl FnOnce() -> i32) -> WaitStatus {
    // SAFETY: the child only runs `f` and exits; see the module docs.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: leaving the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).unwrap(),
    }
}

#[test]
fn seccomp_filters_and_jail() {
    // 1. A vCPU thread doing a syscall outside its allowlist kills the process with SIGSYS.
    let st = in_child(|| {
        let t = std::thread::spawn(|| {
            let f = seccomp::filters().unwrap();
            seccompiler::apply_filter(&f.vcpu).unwrap();
            // SAFETY: a plain socket(2) call; the filter must kill us before it returns.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        });
        let _ = t.join();
        0
    });
    assert!(
        matches!(st, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "forbidden socket(): {st:?}"
    );

    // 2. The same for the VMM thread filter and execve.
    let st = in_child(|| {
        let f = seccomp::filters().unwrap();
        seccompiler::apply_filter(&f.vmm).unwrap();
        let _ = std::process::Command::new("/bin/true").status();
        0
    });
    assert!(
        matches!(st, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "forbidden exec: {st:?}"
    );

    // 3. An allowed call passes: a filtered thread writes to a pipe and exits normally.
    let st = in_child(|| {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into a valid array, before any filter is installed.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let w = fds[1];
        let t = std::thread::spawn(move || {
            let f = seccomp::filters().unwrap();
            seccompiler::apply_filter(&f.vcpu).unwrap();
            // SAFETY: write(2) of one byte to the pipe.
            unsafe { libc::write(w, b"k".as_ptr().cast(), 1) }
        });
        let wrote = t.join().unwrap();
        let mut b = [0u8; 1];
        // SAFETY: read(2) of one byte from the pipe.
        let got = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        if wrote == 1 && got == 1 && b[0] == b'k' {
            0
        } else {
            2
        }
    });
    assert!(
        matches!(st, WaitStatus::Exited(_, 0)),
        "allowed write(): {st:?}"
    );

    // 4. enter_pid_namespace: the caller becomes a waiting parent that exits with the status of
    //    its child, which is pid 1 of a new PID namespace.
    let st = in_child(|| {
        hako_microvm::vmm::jail::enter_pid_namespace().unwrap();
        if nix::unistd::getpid().as_raw() == 1 {
            23
        } else {
            24
        }
    });
    assert!(
        matches!(st, WaitStatus::Exited(_, 23)),
        "pid namespace: {st:?}"
    );

    // 5. A whole VM run, jailed and with every thread under its filter.
    let kernel = std::env::temp_dir().join(format!("hako-vmm-jail-{}.elf", std::process::id()));
    std::fs::write(
        &kernel,
        synthetic_elf(
            LONG_MODE_STUB,
            0x100_0000,
            0xffff_ffff_8100_0000,
            0x100_0000,
            None,
        ),
    )
    .unwrap();
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a valid array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let k = kernel.clone();
    let rd_raw = fds[0];
    let st = in_child(move || {
        // SAFETY: closing the child's copy of the read end.
        unsafe { libc::close(rd_raw) };
        let vmm = Vmm::new(VmConfig {
            memory_mib: 64,
            kernel: k,
            serial: Stdio {
                input: Input::None,
                output: Output::Fd(std::fs::File::from(wr)),
            },
            jail: Some(JailConfig::default()),
            seccomp: true,
            ..Default::default()
        })
        .unwrap();
        // Inside the jail: an empty root, our own hostname, no longer root.
        if std::fs::read_dir("/").unwrap().count() != 0 {
            return 3;
        }
        if nix::unistd::gethostname().unwrap() != "hako-vmm" {
            return 4;
        }
        if nix::unistd::geteuid().as_raw() != 65534 {
            return 5;
        }
        match vmm.run() {
            Ok(out) if out.exit == ExitReason::DebugExit(7) => 0,
            Ok(_) => 6,
            Err(_) => 7,
        }
    });
    std::fs::remove_file(&kernel).unwrap();
    let mut out = String::new();
    std::fs::File::from(rd).read_to_string(&mut out).unwrap();
    assert!(
        matches!(st, WaitStatus::Exited(_, 0)),
        "jailed, filtered VM run: {st:?} (output {out:?})"
    );
    assert_eq!(out, "hi3b");
}
