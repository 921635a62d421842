//! Snapshot and restore in hako's VMM with synthetic guests that count: each is paused into a
//! snapshot, restored twice, and each copy goes on counting on its own from where the snapshot
//! left it; one of them does its counting through virtio-blk and virtio-console, so the copies
//! continue virtio I/O on their own disks and ports. Damaged, foreign and mismatched snapshots
//! are refused. Prints restore → the guest's first exit and the guest memory the copies share
//! (no timing assertion).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{kvm_usable, pipe, spread_ms};
use hako_microvm::measure::snapshot_memory_use;
use hako_microvm::vmm::boot::synthetic_elf;
use hako_microvm::vmm::snapshot::{commit, verify, MEMORY_FILE, STATE_FILE};
use hako_microvm::vmm::{
    BlockDevice, ExitReason, Input, Output, RestoreConfig, RunOutcome, SnapshotTo, Stdio, VmConfig,
    Vmm,
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
    let vmm = Vmm::restore(RestoreConfig::new(dir.to_path_buf(), stdio)).unwrap();
    Running::start(vmm, to_guest, from_guest)
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory `hako-<name>-<pid>` holding the virtio counter guest (`vcounter.elf`).
/// None (said on stderr) without usable KVM, or, when `jailed`, without root (the jailed VMM
/// needs namespaces and pivot_root).
fn counter_dir(name: &str, jailed: bool) -> Option<(TempDir, PathBuf)> {
    if !kvm_usable() {
        return None;
    }
    // SAFETY: geteuid has no arguments.
    if jailed && unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: the jailed VMM needs root (namespaces, pivot_root)");
        return None;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("hako-{name}-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let kernel = dir.0.join("vcounter.elf");
    std::fs::write(
        &kernel,
        synthetic_elf(VIRTIO_COUNTER, 0x100_0000, 0x100_0000, 0x100_0000, None),
    )
    .unwrap();
    Some((dir, kernel))
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
        eprintln!("  restore: {}", o.phases.describe());
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
    let err = Vmm::restore(RestoreConfig::new(snap.clone(), stdio))
        .err()
        .expect("a truncated memory file is refused");
    assert!(
        format!("{err:#}").contains("truncated or not this snapshot's"),
        "{err:#}"
    );
}

/// 64-bit stub that counts through virtio: it sets up virtio-blk (window 0, queue 0) and
/// virtio-console (window 1, transmit queue 1), 8 entries each, rings at 0x3000000 and
/// 0x3010000. Each round it adds one to its count at 0x2000000, writes the count to sector 0
/// (one OUT request: header, 512 data bytes, status), prints '0'+count on the console, and
/// checks after each QueueNotify that the used index caught up with its available index and
/// the status is OK (else it exits with 0xee); it acks the used-ring interrupts and waits for
/// a byte on the 8250: 'q' exits with the count, 'g' prints on the 8250 the disk's config
/// generation ('0'+g), capacity ('A'+sectors) and interrupt status ('0'+s), anything else
/// counts again. The source (GNU as, Intel syntax):
/// ```text
///   mov esp, 0x1f00000 ; mov r12d, 0xd0000000 ; mov r13d, 0xd0001000
///   map the 4th GiB (the MMIO windows; the boot page tables map the first): PDPT[3] at
///   0xa018 = a PD at 0x3200000 whose entry 128 is the 2 MiB page 0xd0000000 ; reload cr3
///   init(0xd0000000, queue 0, rings 0x3000000) ; init(0xd0001000, queue 1, rings 0x3010000)
///   blk descriptors 0,1,2: 0x3100000/16/NEXT, 0x3100200/512/NEXT, 0x3100400/1/WRITE
///   request header: type 1 (OUT), sector 0 ; console descriptor 0: 0x3100800/1
/// again:
///   inc dword [0x2000000] ; [0x3100200] = count ; byte [0x3100400] = 0xff
///   avail[idx % 8] = 0 ; idx++ ; [r12+0x50] = 0 ; used.idx == idx and status == 0, else fail
///   [0x3100800] = '0'+count ; console avail[idx % 8] = 0 ; idx++ ; [r13+0x50] = 1 ; check
///   [r12+0x64] = 1 ; [r13+0x64] = 1
/// wait: 8250 LSR bit 0 ; al = RBR ; 'q' -> done ; 'g' -> print gen, 'A'+capacity, int status
/// done: out 0xf4, byte [0x2000000] ; hlt        fail: out 0xf4, 0xee ; hlt
/// init: status 0, 1, 3 ; driver features (sel 1) = 1, (sel 0) = 0 ; status 11 ; QueueSel,
///   QueueNum 8, desc/driver/device = rings, +0x1000, +0x2000 ; QueueReady 1 ; status 15 ; ret
/// ```
const VIRTIO_COUNTER: &[u8] = &[
    0xbc, 0x00, 0x00, 0xf0, 0x01, 0x41, 0xbc, 0x00, 0x00, 0x00, 0xd0, 0x41, 0xbd, 0x00, 0x10, 0x00,
    0xd0, 0xb8, 0x83, 0x00, 0x00, 0xd0, 0x48, 0x89, 0x04, 0x25, 0x00, 0x04, 0x20, 0x03, 0xb8, 0x03,
    0x00, 0x20, 0x03, 0x48, 0x89, 0x04, 0x25, 0x18, 0xa0, 0x00, 0x00, 0x0f, 0x20, 0xd8, 0x0f, 0x22,
    0xd8, 0xbf, 0x00, 0x00, 0x00, 0xd0, 0x31, 0xf6, 0xba, 0x00, 0x00, 0x00, 0x03, 0xe8, 0xa5, 0x01,
    0x00, 0x00, 0xbf, 0x00, 0x10, 0x00, 0xd0, 0xbe, 0x01, 0x00, 0x00, 0x00, 0xba, 0x00, 0x00, 0x01,
    0x03, 0xe8, 0x91, 0x01, 0x00, 0x00, 0xbb, 0x00, 0x00, 0x00, 0x03, 0x48, 0xc7, 0x03, 0x00, 0x00,
    0x10, 0x03, 0xc7, 0x43, 0x08, 0x10, 0x00, 0x00, 0x00, 0x66, 0xc7, 0x43, 0x0c, 0x01, 0x00, 0x66,
    0xc7, 0x43, 0x0e, 0x01, 0x00, 0x48, 0xc7, 0x43, 0x10, 0x00, 0x02, 0x10, 0x03, 0xc7, 0x43, 0x18,
    0x00, 0x02, 0x00, 0x00, 0x66, 0xc7, 0x43, 0x1c, 0x01, 0x00, 0x66, 0xc7, 0x43, 0x1e, 0x02, 0x00,
    0x48, 0xc7, 0x43, 0x20, 0x00, 0x04, 0x10, 0x03, 0xc7, 0x43, 0x28, 0x01, 0x00, 0x00, 0x00, 0x66,
    0xc7, 0x43, 0x2c, 0x02, 0x00, 0x66, 0xc7, 0x43, 0x2e, 0x00, 0x00, 0xc7, 0x04, 0x25, 0x00, 0x00,
    0x10, 0x03, 0x01, 0x00, 0x00, 0x00, 0xc7, 0x04, 0x25, 0x04, 0x00, 0x10, 0x03, 0x00, 0x00, 0x00,
    0x00, 0x48, 0xc7, 0x04, 0x25, 0x08, 0x00, 0x10, 0x03, 0x00, 0x00, 0x00, 0x00, 0xbb, 0x00, 0x00,
    0x01, 0x03, 0x48, 0xc7, 0x03, 0x00, 0x08, 0x10, 0x03, 0xc7, 0x43, 0x08, 0x01, 0x00, 0x00, 0x00,
    0xc7, 0x43, 0x0c, 0x00, 0x00, 0x00, 0x00, 0xff, 0x04, 0x25, 0x00, 0x00, 0x00, 0x02, 0x8b, 0x04,
    0x25, 0x00, 0x00, 0x00, 0x02, 0x89, 0x04, 0x25, 0x00, 0x02, 0x10, 0x03, 0xc6, 0x04, 0x25, 0x00,
    0x04, 0x10, 0x03, 0xff, 0x0f, 0xb7, 0x0c, 0x25, 0x02, 0x10, 0x00, 0x03, 0x89, 0xca, 0x83, 0xe2,
    0x07, 0x66, 0xc7, 0x04, 0x55, 0x04, 0x10, 0x00, 0x03, 0x00, 0x00, 0xff, 0xc1, 0x66, 0x89, 0x0c,
    0x25, 0x02, 0x10, 0x00, 0x03, 0x41, 0xc7, 0x44, 0x24, 0x50, 0x00, 0x00, 0x00, 0x00, 0x66, 0x3b,
    0x0c, 0x25, 0x02, 0x20, 0x00, 0x03, 0x0f, 0x85, 0xa6, 0x00, 0x00, 0x00, 0x80, 0x3c, 0x25, 0x00,
    0x04, 0x10, 0x03, 0x00, 0x0f, 0x85, 0x98, 0x00, 0x00, 0x00, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00,
    0x02, 0x04, 0x30, 0x88, 0x04, 0x25, 0x00, 0x08, 0x10, 0x03, 0x0f, 0xb7, 0x0c, 0x25, 0x02, 0x10,
    0x01, 0x03, 0x89, 0xca, 0x83, 0xe2, 0x07, 0x66, 0xc7, 0x04, 0x55, 0x04, 0x10, 0x01, 0x03, 0x00,
    0x00, 0xff, 0xc1, 0x66, 0x89, 0x0c, 0x25, 0x02, 0x10, 0x01, 0x03, 0x41, 0xc7, 0x45, 0x50, 0x01,
    0x00, 0x00, 0x00, 0x66, 0x3b, 0x0c, 0x25, 0x02, 0x20, 0x01, 0x03, 0x75, 0x55, 0x41, 0xc7, 0x44,
    0x24, 0x64, 0x01, 0x00, 0x00, 0x00, 0x41, 0xc7, 0x45, 0x64, 0x01, 0x00, 0x00, 0x00, 0x66, 0xba,
    0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xf7, 0x66, 0xba, 0xf8, 0x03, 0xec, 0x3c, 0x71, 0x74, 0x28,
    0x3c, 0x67, 0x0f, 0x85, 0x2f, 0xff, 0xff, 0xff, 0x41, 0x8b, 0x84, 0x24, 0xfc, 0x00, 0x00, 0x00,
    0x04, 0x30, 0xee, 0x41, 0x8b, 0x84, 0x24, 0x00, 0x01, 0x00, 0x00, 0x04, 0x41, 0xee, 0x41, 0x8b,
    0x44, 0x24, 0x60, 0x04, 0x30, 0xee, 0xeb, 0xc6, 0x8a, 0x04, 0x25, 0x00, 0x00, 0x00, 0x02, 0xe6,
    0xf4, 0xf4, 0xb0, 0xee, 0xe6, 0xf4, 0xf4, 0xc7, 0x47, 0x70, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x47,
    0x70, 0x01, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x70, 0x03, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x24, 0x01,
    0x00, 0x00, 0x00, 0xc7, 0x47, 0x20, 0x01, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x24, 0x00, 0x00, 0x00,
    0x00, 0xc7, 0x47, 0x20, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x70, 0x0b, 0x00, 0x00, 0x00, 0x89,
    0x77, 0x30, 0xc7, 0x47, 0x38, 0x08, 0x00, 0x00, 0x00, 0x89, 0x97, 0x80, 0x00, 0x00, 0x00, 0xc7,
    0x87, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x8d, 0x82, 0x00, 0x10, 0x00, 0x00, 0x89,
    0x87, 0x90, 0x00, 0x00, 0x00, 0xc7, 0x87, 0x94, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x8d,
    0x82, 0x00, 0x20, 0x00, 0x00, 0x89, 0x87, 0xa0, 0x00, 0x00, 0x00, 0xc7, 0x87, 0xa4, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x44, 0x01, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x70, 0x0f,
    0x00, 0x00, 0x00, 0xc3,
];

fn disk(dir: &Path, name: &str, len: usize) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![0u8; len]).unwrap();
    p
}

fn first_byte(p: &Path) -> u8 {
    std::fs::read(p).unwrap()[0]
}

/// One VM of the virtio counter: its thread, the 8250's two ends, the console's output.
struct VirtioRunning {
    vm: Running,
    console: std::fs::File,
}

impl VirtioRunning {
    fn expect_console(&mut self, want: u8) {
        let mut b = [0u8; 1];
        if self.console.read_exact(&mut b).is_err() {
            // The VM ended: say how (0xee: a used index or status the guest did not expect).
            let vm = std::mem::replace(
                &mut self.vm.thread,
                std::thread::spawn(|| Err(anyhow::anyhow!("taken"))),
            );
            panic!(
                "the console closed; the VM ended with {:?}",
                vm.join().unwrap()
            );
        }
        assert_eq!(
            b[0] as char, want as char,
            "the count the guest printed on its console"
        );
    }

    /// One more round: the count goes to the disk and the console.
    fn count(&mut self, want: u8) {
        self.vm.send(b'c');
        self.expect_console(want);
    }

    /// The disk's config generation, capacity and interrupt status, as the guest reads them.
    fn disk_view(&mut self) -> String {
        self.vm.send(b'g');
        let mut b = [0u8; 3];
        self.vm.from_guest.read_exact(&mut b).unwrap();
        String::from_utf8_lossy(&b).into_owned()
    }
}

fn virtio_devices(disk: &Path, read_only: bool) -> (Vec<BlockDevice>, Stdio, std::fs::File) {
    let (console_r, console_w) = pipe();
    (
        vec![BlockDevice {
            path: disk.to_path_buf(),
            read_only,
            id: "disk0".into(),
        }],
        Stdio {
            input: Input::None,
            output: Output::Fd(console_w),
        },
        console_r,
    )
}

fn restore_virtio(snap: &Path, disk: &Path) -> anyhow::Result<VirtioRunning> {
    let (stdio, to_guest, from_guest) = serial();
    let (block, console, console_r) = virtio_devices(disk, false);
    let mut cfg = RestoreConfig::new(snap.to_path_buf(), stdio);
    cfg.block = block;
    cfg.console = Some(console);
    let vmm = Vmm::restore(cfg)?;
    Ok(VirtioRunning {
        vm: Running::start(vmm, to_guest, from_guest),
        console: console_r,
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in [MEMORY_FILE, STATE_FILE] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn restore_err(snap: &Path, disk: &Path) -> String {
    match restore_virtio(snap, disk) {
        Ok(_) => panic!("{} was restored", snap.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn guest_in_the_middle_of_virtio_io_continues_in_two_restored_copies_each_on_its_own_disk() {
    let Some((dir, kernel)) = counter_dir("vmm-vsnap", false) else {
        return;
    };
    let snap = dir.0.join("snap");
    std::fs::create_dir(&snap).unwrap();

    // The original counts to 2 on its disk and console, then is paused into the snapshot.
    let template_disk = disk(&dir.0, "template.img", 4096);
    let (stdio, to_guest, from_guest) = serial();
    let (block, console, console_r) = virtio_devices(&template_disk, false);
    let mut vmm = Vmm::new(VmConfig {
        memory_mib: 128,
        kernel,
        serial: stdio,
        block,
        console: Some(console),
        ..Default::default()
    })
    .unwrap();
    let trigger = vmm.snapshot_trigger().unwrap();
    let mut orig = VirtioRunning {
        vm: Running::start(vmm, to_guest, from_guest),
        console: console_r,
    };
    orig.expect_console(b'1');
    orig.count(b'2');
    trigger.request(&snap).unwrap();
    assert_eq!(orig.vm.finish().exit, ExitReason::Snapshotted);
    assert_eq!(first_byte(&template_disk), 2);
    verify(&snap).unwrap();

    // Two copies, each with its own disk (the second one larger) and console: both continue
    // from 2 with the queues where the snapshot left them.
    let disk_a = disk(&dir.0, "a.img", 4096);
    let disk_b = disk(&dir.0, "b.img", 8192);
    let mut a = restore_virtio(&snap, &disk_a).unwrap();
    let mut b = restore_virtio(&snap, &disk_b).unwrap();
    a.count(b'3');
    a.count(b'4');
    b.count(b'3');
    // The same disk size: nothing changed for the driver. The larger disk: a new config
    // generation, 16 sectors, and the configuration-change interrupt pending.
    assert_eq!(a.disk_view(), "0I0");
    assert_eq!(b.disk_view(), "1Q2");

    // Guest memory: each copy is a private (copy-on-write) mapping of the snapshot's file;
    // the pages both only read are shared, so together they weigh less than their Rss.
    let maps = snapshot_memory_use(std::process::id() as i32, &snap.join(MEMORY_FILE)).unwrap();
    assert_eq!(
        maps.len(),
        2,
        "one mapping of the memory file per copy: {maps:?}"
    );
    let (rss, pss): (u64, u64) = maps
        .iter()
        .fold((0, 0), |(r, p), m| (r + m.rss_kib, p + m.pss_kib));
    for m in &maps {
        assert_eq!(m.perms, "rw-p", "a private mapping: {m:?}");
        assert!(m.private_dirty_kib > 0, "the copy's own writes: {m:?}");
    }
    assert!(pss < rss, "the copies share the snapshot's pages: {maps:?}");
    eprintln!(
        "hako VMM: two restored copies of a 128 MiB guest: Rss {rss} KiB, Pss {pss} KiB \
         (private dirty {} + {} KiB, shared clean {} + {} KiB)",
        maps[0].private_dirty_kib,
        maps[1].private_dirty_kib,
        maps[0].shared_clean_kib,
        maps[1].shared_clean_kib
    );

    a.vm.send(b'q');
    b.vm.send(b'q');
    assert_eq!(a.vm.finish().exit, ExitReason::DebugExit(4));
    assert_eq!(b.vm.finish().exit, ExitReason::DebugExit(3));
    // Each copy wrote its own disk; the template's disk and memory file still hold 2.
    assert_eq!(first_byte(&disk_a), 4);
    assert_eq!(first_byte(&disk_b), 3);
    assert_eq!(first_byte(&template_disk), 2);
    let mem = std::fs::read(snap.join(MEMORY_FILE)).unwrap();
    assert_eq!(mem[COUNT_ADDR as usize], 2);
    verify(&snap).unwrap();

    // A restored copy can itself be snapshotted (its memory maps the first snapshot's file),
    // and that snapshot restores.
    let snap2 = dir.0.join("snap2");
    std::fs::create_dir(&snap2).unwrap();
    let (stdio, to_guest, from_guest) = serial();
    let (block, console, console_r) = virtio_devices(&disk_a, false);
    let mut cfg = RestoreConfig::new(snap.clone(), stdio);
    cfg.block = block;
    cfg.console = Some(console);
    let mut vmm = Vmm::restore(cfg).unwrap();
    let trigger = vmm.snapshot_trigger().unwrap();
    let mut c = VirtioRunning {
        vm: Running::start(vmm, to_guest, from_guest),
        console: console_r,
    };
    c.count(b'3');
    trigger.request(&snap2).unwrap();
    assert_eq!(c.vm.finish().exit, ExitReason::Snapshotted);
    verify(&snap2).unwrap();
    let mut d = restore_virtio(&snap2, &disk_b).unwrap();
    d.count(b'4');
    d.vm.send(b'q');
    assert_eq!(d.vm.finish().exit, ExitReason::DebugExit(4));

    // A restore whose devices differ from the snapshot's is refused before any VM exists.
    let (stdio, _, _) = serial();
    let (block, _, _) = virtio_devices(&disk_a, false);
    let mut cfg = RestoreConfig::new(snap.clone(), stdio);
    cfg.block = block;
    let err = format!(
        "{:#}",
        Vmm::restore(cfg).err().expect("no console: refused")
    );
    assert!(
        err.contains("taken with devices [block, console], this restore asks for [block]"),
        "{err}"
    );
    let (stdio, _, _) = serial();
    let (block, console, _) = virtio_devices(&disk_a, true);
    let mut cfg = RestoreConfig::new(snap.clone(), stdio);
    cfg.block = block;
    cfg.console = Some(console);
    let err = format!(
        "{:#}",
        Vmm::restore(cfg).err().expect("a read-only disk: refused")
    );
    assert!(
        err.contains("virtio device 0 (block)") && err.contains("features"),
        "{err}"
    );

    // Damaged and foreign snapshots are refused with one line.
    let bad = dir.0.join("bad");
    copy_dir(&snap, &bad);
    let state = std::fs::read(snap.join(STATE_FILE)).unwrap();
    let mut flipped = state.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x20;
    std::fs::write(bad.join(STATE_FILE), &flipped).unwrap();
    assert!(restore_err(&bad, &disk_a).contains("checksum mismatch"));
    std::fs::write(bad.join(STATE_FILE), &state[..state.len() / 2]).unwrap();
    assert!(restore_err(&bad, &disk_a).contains("truncated"));
    std::fs::write(bad.join(STATE_FILE), b"{\"format\": 1}").unwrap();
    assert!(restore_err(&bad, &disk_a).contains("not a hako VMM snapshot"));
    let mut future = state.clone();
    future[8] = 99;
    std::fs::write(bad.join(STATE_FILE), &future).unwrap();
    assert!(restore_err(&bad, &disk_a).contains("snapshot format 99"));
    std::fs::write(bad.join(STATE_FILE), &state).unwrap();
    // Another snapshot's memory file of the same size.
    std::fs::copy(snap2.join(MEMORY_FILE), bad.join(MEMORY_FILE)).unwrap();
    assert!(restore_err(&bad, &disk_a).contains("not this snapshot's"));
    // A byte of guest memory changed: restore cannot see it (it does not read guest memory),
    // `verify` does, in the written pages and in the holes.
    std::fs::copy(snap.join(MEMORY_FILE), bad.join(MEMORY_FILE)).unwrap();
    verify(&bad).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(bad.join(MEMORY_FILE))
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[9], COUNT_ADDR).unwrap();
    let err = format!("{:#}", verify(&bad).unwrap_err());
    assert!(
        err.contains("does not match the snapshot's digest"),
        "{err}"
    );
    f.write_all_at(&[2], COUNT_ADDR).unwrap();
    verify(&bad).unwrap();
    f.write_all_at(&[1], 100 << 20).unwrap();
    let err = format!("{:#}", verify(&bad).unwrap_err());
    assert!(err.contains("outside what the snapshot wrote"), "{err}");
}

/// The template flow the backend's hako engine can use: a forked, jailed VMM runs the virtio
/// counter as a template; the caller waits for its "ready" (the first count on the console, as
/// the agent port's Ready frame would be), triggers the snapshot through a pipe, commits the
/// directory once the VMM has ended, and restores a copy with its own disk and console.
#[test]
fn jailed_template_vmm_snapshots_on_the_callers_trigger() {
    let Some((dir, kernel)) = counter_dir("vmm-tmpl", true) else {
        return;
    };
    let snap = dir.0.join("template");
    std::fs::create_dir(&snap).unwrap();
    let template_disk = disk(&dir.0, "template.img", 4096);
    let config = |console: Stdio, seccomp: bool| {
        let (serial, _, _) = serial();
        VmConfig {
            memory_mib: 128,
            kernel: kernel.clone(),
            serial,
            block: vec![BlockDevice {
                path: template_disk.clone(),
                read_only: false,
                id: "disk0".into(),
            }],
            console: Some(console),
            jail: Some(hako_microvm::vmm::JailConfig::default()),
            seccomp,
            ..Default::default()
        }
    };

    // A template under the seccomp filters is refused: it could not save itself.
    let (trigger_r, _trigger_w) = pipe();
    let (_, console_w) = pipe();
    let err = Vmm::new_template(
        config(
            Stdio {
                input: Input::None,
                output: Output::Fd(console_w),
            },
            true,
        ),
        SnapshotTo {
            dir: snap.clone(),
            trigger: trigger_r.into(),
        },
    )
    .err()
    .expect("a seccomp-filtered template is refused");
    assert!(format!("{err:#}").contains("seccomp"), "{err:#}");

    let (trigger_r, mut trigger_w) = pipe();
    let (mut console_r, console_w) = pipe();
    let cfg = config(
        Stdio {
            input: Input::None,
            output: Output::Fd(console_w),
        },
        false,
    );
    let to = SnapshotTo {
        dir: snap.clone(),
        trigger: trigger_r.into(),
    };
    // SAFETY: the child only builds and runs the VM, then leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain syscalls in the forked child.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let code = match Vmm::new_template(cfg, to).and_then(|v| v.run()) {
            Ok(o) if o.exit == ExitReason::Snapshotted => 0,
            Ok(o) => {
                eprintln!("template VMM: {}", o.exit.describe());
                1
            }
            Err(e) => {
                eprintln!("template VMM: {e:#}");
                2
            }
        };
        // SAFETY: leave the child without running the test harness's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(cfg);
    // "Ready": the guest's first count on its console.
    let mut b = [0u8; 1];
    console_r.read_exact(&mut b).unwrap();
    assert_eq!(b[0], b'1');
    // Before the trigger, the directory is no snapshot yet.
    assert!(!snap.join(STATE_FILE).exists());
    trigger_w.write_all(b"s").unwrap();
    let mut st = 0;
    // SAFETY: reap our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "the template VMM ended with wait status {st:#x}"
    );
    assert!(
        !snap.join(STATE_FILE).exists(),
        "written, not yet committed"
    );
    let (stdio, _, _) = serial();
    assert!(Vmm::restore(RestoreConfig::new(snap.clone(), stdio)).is_err());
    commit(&snap).unwrap();
    verify(&snap).unwrap();

    // A sandbox's copy: its own disk and console, counting on from 1.
    let own_disk = disk(&dir.0, "sandbox.img", 4096);
    let mut c = restore_virtio(&snap, &own_disk).unwrap();
    c.count(b'2');
    c.vm.send(b'q');
    assert_eq!(c.vm.finish().exit, ExitReason::DebugExit(2));
    assert_eq!(first_byte(&own_disk), 2);
    assert_eq!(first_byte(&template_disk), 1);
}

/// The backend's hako engine as a template engine (`HakoVmm::{make_template, spawn_restored}`,
/// each VM in its own forked, jailed VMM process) with the virtio counter in place of Linux
/// and its agent: the template's "ready" is its first count on the agent port; its files are
/// committed and verify; a sandbox's copy with the same layout is restored (its own disk and
/// agent port; the VMM maps the template's memory copy-on-write), and copies whose layout
/// differs (a read-only disk, one disk more) are refused with the restore's own reason, which
/// the host process would log as it boots cold.
#[test]
fn hako_engine_makes_a_template_and_restores_a_sandbox_from_it() {
    use hako_microvm::engine::{Disk, Engine, VmSpec};
    use hako_microvm::hako_engine::HakoVmm;
    use std::os::unix::net::UnixStream;
    let Some((dir, kernel)) = counter_dir("eng-tmpl", true) else {
        return;
    };
    let spec = |disks: Vec<Disk>, name: &str| VmSpec {
        kernel: kernel.clone(),
        cmdline: String::new(),
        vcpus: 1,
        memory_mib: 128,
        disks,
        serial_log: dir.0.join(format!("{name}-serial.log")),
        engine_log: dir.0.join(format!("{name}-engine.log")),
        kvm: true,
        net: None,
    };
    let rw = |p: PathBuf| Disk {
        path: p,
        readonly: false,
    };
    let engine = HakoVmm;
    let id = engine.snapshot_id(&dir.0.join("memo")).unwrap();
    assert!(id.contains("snapshot format"), "{id}");

    let snap = dir.0.join("template");
    std::fs::create_dir(&snap).unwrap();
    let template_disk = disk(&dir.0, "template.img", 4096);
    let vm = spec(vec![rw(template_disk.clone())], "template");
    let (mut host_end, guest_end) = UnixStream::pair().unwrap();
    let mut waited_for = None;
    let files = engine
        .make_template(&vm, &snap, guest_end.into(), &mut |pid| {
            waited_for = Some(pid);
            let mut b = [0u8; 1];
            host_end.read_exact(&mut b)?;
            anyhow::ensure!(b[0] == b'1', "the template printed {:?}", b[0] as char);
            Ok(())
        })
        .unwrap();
    assert!(waited_for.is_some());
    assert_eq!(files, vec![MEMORY_FILE.to_string(), STATE_FILE.to_string()]);
    verify(&snap).unwrap();
    assert_eq!(first_byte(&template_disk), 1);

    // Layouts unlike the template's: refused before the VM runs, with the reason.
    let (_h, g) = UnixStream::pair().unwrap();
    let ro = Disk {
        path: disk(&dir.0, "ro.img", 4096),
        readonly: true,
    };
    let err = engine
        .spawn_restored(spec(vec![ro], "ro"), &snap, g.into())
        .expect_err("a read-only disk in place of a writable one is refused");
    assert!(format!("{err:#}").contains("read-only"), "{err:#}");
    let (_h, g) = UnixStream::pair().unwrap();
    let two = vec![
        rw(disk(&dir.0, "a.img", 4096)),
        rw(disk(&dir.0, "b.img", 4096)),
    ];
    let err = engine
        .spawn_restored(spec(two, "two"), &snap, g.into())
        .expect_err("one disk more is refused");
    assert!(
        format!("{err:#}").contains("this restore asks for [block, block, console]"),
        "{err:#}"
    );

    // The sandbox's copy: restored, jailed and filtered in its own process, its guest memory a
    // private mapping of the template's file.
    let own_disk = disk(&dir.0, "sandbox.img", 4096);
    let (_host, g) = UnixStream::pair().unwrap();
    let pid = engine
        .spawn_restored(spec(vec![rw(own_disk)], "sandbox"), &snap, g.into())
        .unwrap();
    let maps = snapshot_memory_use(pid, &snap.join(MEMORY_FILE));
    // SAFETY: our own child, by pid; reaped right after.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    let maps = maps.unwrap();
    assert_eq!(maps.len(), 1, "{maps:?}");
    assert_eq!(maps[0].perms, "rw-p", "{maps:?}");
    assert_eq!(first_byte(&template_disk), 1);
}
