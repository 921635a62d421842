//! Snapshot and restore in hako's VMM with a synthetic guest that counts: it is paused into a
//! snapshot, restored twice, and each copy goes on counting on its own from where the snapshot
//! left it. Prints restore → the guest's first exit (no timing assertion).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{kvm_usable, pipe, spread_ms};
use hako_microvm::vmm::boot::synthetic_elf;
use hako_microvm::vmm::snapshot::MEMORY_FILE;
use hako_microvm::vmm::{
    ExitReason, Input, Output, RestoreConfig, RunOutcome, Stdio, VmConfig, Vmm,
};

/// 64-bit stub: count in guest memory, print the count, wait for a byte on the 8250; go on
/// counting unless it is 'q', then exit through the debug port with the count:
/// ```text
///   mov ebx, 0x2000000
/// again:
///   inc dword [rbx] ; mov al, [rbx] ; add al, '0' ; mov dx, 0x3f8 ; out dx, al
/// wait:
///   mov dx, 0x3fd ; in al, dx ; test al, 1 ; jz wait
///   mov dx, 0x3f8 ; in al, dx ; cmp al, 'q' ; jne again
///   mov al, [rbx] ; mov dx, 0xf4 ; out dx, al ; hlt
/// ```
const COUNTER: &[u8] = &[
    0xbb, 0x00, 0x00, 0x00, 0x02, 0xff, 0x03, 0x8a, 0x03, 0x04, 0x30, 0x66, 0xba, 0xf8, 0x03, 0xee,
    0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xf7, 0x66, 0xba, 0xf8, 0x03, 0xec, 0x3c, 0x71,
    0x75, 0xe3, 0x8a, 0x03, 0x66, 0xba, 0xf4, 0x00, 0xee, 0xf4,
];
/// Where the stub keeps its count (guest-physical, identity-mapped).
const COUNT_ADDR: u64 = 0x200_0000;

/// A running VM: its thread, our ends of its serial port.
struct Running {
    thread: std::thread::JoinHandle<anyhow::Result<RunOutcome>>,
    to_guest: std::fs::File,
    from_guest: std::fs::File,
}

impl Running {
    fn start(vmm: Vmm, to_guest: std::fs::File, from_guest: std::fs::File) -> Running {
        Running {
            thread: std::thread::spawn(move || vmm.run()),
            to_guest,
            from_guest,
        }
    }

    fn expect(&mut self, want: u8) {
        let mut b = [0u8; 1];
        self.from_guest.read_exact(&mut b).unwrap();
        assert_eq!(b[0] as char, want as char, "the guest's count");
    }

    fn send(&mut self, b: u8) {
        self.to_guest.write_all(&[b]).unwrap();
    }

    fn finish(self) -> RunOutcome {
        self.thread.join().unwrap().unwrap()
    }
}

fn serial() -> (Stdio, std::fs::File, std::fs::File) {
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    (
        Stdio {
            input: Input::Fd(in_r),
            output: Output::Fd(out_w),
        },
        in_w,
        out_r,
    )
}

fn restore(dir: &Path) -> Running {
    let (stdio, to_guest, from_guest) = serial();
    let vmm = Vmm::restore(RestoreConfig {
        snapshot: dir.to_path_buf(),
        serial: stdio,
    })
    .unwrap();
    Running::start(vmm, to_guest, from_guest)
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn counting_guest_is_snapshotted_restored_twice_and_each_copy_counts_on_its_own() {
    if !kvm_usable() {
        return;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("hako-vmm-snap-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let kernel = dir.0.join("counter.elf");
    std::fs::write(
        &kernel,
        synthetic_elf(COUNTER, 0x100_0000, 0x100_0000, 0x100_0000, None),
    )
    .unwrap();
    let snap = dir.0.join("snap");
    std::fs::create_dir(&snap).unwrap();

    // The original: count to 2, then pause into the snapshot while it waits for input.
    let (stdio, to_guest, from_guest) = serial();
    let mut vmm = Vmm::new(VmConfig {
        memory_mib: 128,
        kernel,
        serial: stdio,
        ..Default::default()
    })
    .unwrap();
    let trigger = vmm.snapshot_trigger().unwrap();
    let mut orig = Running::start(vmm, to_guest, from_guest);
    orig.expect(b'1');
    orig.send(b'c');
    orig.expect(b'2');
    trigger.request(&snap).unwrap();
    assert_eq!(orig.finish().exit, ExitReason::Snapshotted);
    let count_in_file = || {
        let mut f = std::fs::File::open(snap.join(MEMORY_FILE)).unwrap();
        let mut all = Vec::new();
        f.read_to_end(&mut all).unwrap();
        all[COUNT_ADDR as usize]
    };
    assert_eq!(count_in_file(), 2);

    // Two copies at once: each continues from 2 and counts on its own.
    let mut a = restore(&snap);
    let mut b = restore(&snap);
    a.send(b'c');
    a.expect(b'3');
    a.send(b'c');
    a.expect(b'4');
    b.send(b'c');
    b.expect(b'3');
    a.send(b'q');
    b.send(b'q');
    let (oa, ob) = (a.finish(), b.finish());
    assert_eq!(oa.exit, ExitReason::DebugExit(4));
    assert_eq!(ob.exit, ExitReason::DebugExit(3));
    // Their writes went to private pages: the snapshot still holds 2.
    assert_eq!(count_in_file(), 2);

    // Restore -> the guest's first exit, one copy at a time; each ends at once with the count
    // the snapshot holds.
    let mut first: Vec<Duration> = Vec::new();
    for _ in 0..9 {
        let mut c = restore(&snap);
        c.send(b'q');
        let o = c.finish();
        assert_eq!(o.exit, ExitReason::DebugExit(2));
        first.push(o.to_first_exit.expect("the restored guest ran"));
    }
    let (median, min, max) = spread_ms(&mut first);
    eprintln!(
        "hako VMM: restore -> first guest exit: median {median:.2} ms, min {min:.2} ms, max {max:.2} ms (128 MiB guest)"
    );

    // A damaged snapshot is refused with one line, never run.
    std::fs::OpenOptions::new()
        .write(true)
        .open(snap.join(MEMORY_FILE))
        .unwrap()
        .set_len(4096)
        .unwrap();
    let (stdio, _, _) = serial();
    let err = Vmm::restore(RestoreConfig {
        snapshot: snap.clone(),
        serial: stdio,
    })
    .err()
    .expect("a truncated memory file is refused");
    assert!(
        format!("{err:#}").contains("the state describes"),
        "{err:#}"
    );
}
