//! hako's VMM with synthetic guests: hand-assembled stubs (the assembly is beside each byte
//! array) run under real KVM. They exercise the 64-bit boot path (page tables incl. the
//! 0xffffffff80000000 alias, the zero page), the PVH path (hvm_start_info, command line), the
//! 8250, the virtio-mmio register protocol and a virtio-blk request driven from inside the
//! guest, and the exit paths (debug exit port, i8042 reset).

use std::path::{Path, PathBuf};

use hako_microvm::vmm::boot::synthetic_elf;
use hako_microvm::vmm::{BlockDevice, Capture, ExitReason, Input, Output, Stdio, VmConfig, Vmm};

fn kvm_usable() -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        eprintln!("SKIP: /dev/kvm cannot be opened here; hako's VMM tests need KVM");
        return false;
    }
    true
}

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp(name: &str, bytes: &[u8]) -> TempFile {
    let p = std::env::temp_dir().join(format!("hako-vmm-test-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    TempFile(p)
}

fn config(kernel: &Path, cap: &Capture) -> VmConfig {
    VmConfig {
        memory_mib: 128,
        kernel: kernel.to_path_buf(),
        cmdline: "console=ttyS0 reboot=k".into(),
        serial: Stdio {
            input: Input::None,
            output: Output::Capture(cap.clone()),
        },
        ..Default::default()
    }
}

/// 64-bit stub, loaded at 16 MiB and entered there through the identity map:
/// ```text
///   mov dx, 0x3f8 ; mov al, 'h' ; out dx, al ; mov al, 'i' ; out dx, al
///   mov al, [rsi+0x1e8] ; add al, '0' ; out dx, al      # boot_params.e820_entries
///   movabs rax, 0xffffffff8100001f ; jmp rax            # continue at the kernel-map alias
/// high:
///   lea rbx, [rip] ; shr rbx, 63 ; add bl, 'a' ; mov al, bl ; out dx, al   # 'b' when high
///   mov dx, 0xf4 ; mov al, 7 ; out dx, al ; hlt
/// ```
const LONG_MODE_STUB: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, 0xb0, 0x68, 0xee, 0xb0, 0x69, 0xee, 0x8a, 0x86, 0xe8, 0x01, 0x00, 0x00,
    0x04, 0x30, 0xee, 0x48, 0xb8, 0x1f, 0x00, 0x00, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe0, 0x48,
    0x8d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x48, 0xc1, 0xeb, 0x3f, 0x80, 0xc3, 0x61, 0x88, 0xd8, 0xee,
    0x66, 0xba, 0xf4, 0x00, 0xb0, 0x07, 0xee, 0xf4,
];

/// PVH stub (32-bit protected mode, paging off, ebx = hvm_start_info):
/// ```text
///   mov dx, 0x3f8 ; cmp dword [ebx], 0x336ec578 ; jne bad
///   mov al, 'P' ; out dx, al
///   mov al, [ebx+48] ; add al, '0' ; out dx, al        # memmap_entries
///   mov esi, [ebx+24] ; mov al, [esi] ; out dx, al      # first byte of the command line
///   mov dx, 0xf4 ; mov al, 0 ; out dx, al ; hlt
/// bad: mov dx, 0xf4 ; mov al, 1 ; out dx, al ; hlt
/// ```
const PVH_STUB: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, 0x81, 0x3b, 0x78, 0xc5, 0x6e, 0x33, 0x75, 0x17, 0xb0, 0x50, 0xee, 0x8a,
    0x43, 0x30, 0x04, 0x30, 0xee, 0x8b, 0x73, 0x18, 0x8a, 0x06, 0xee, 0x66, 0xba, 0xf4, 0x00, 0xb0,
    0x00, 0xee, 0xf4, 0x66, 0xba, 0xf4, 0x00, 0xb0, 0x01, 0xee, 0xf4,
];

/// PVH stub driving virtio-blk at 0xd0000000 the way a driver does:
/// ```text
///   edi = 0xd0000000; print the 4 magic bytes and '0'+DeviceID
///   Status = 0, 1, 3; DriverFeaturesSel = 1; DriverFeatures = 1 (VERSION_1); Status = 11
///   QueueSel = 0; QueueNum = 8; QueueDesc = 0x200000; QueueDriver = 0x201000;
///   QueueDevice = 0x202000; QueueReady = 1; Status = 15; print 'A'+Status
///   header at 0x203000 {type IN, sector 1}; desc0 = header (NEXT), desc1 = 512 bytes at
///   0x204000 (WRITE|NEXT), desc2 = status byte at 0x205000 (WRITE); avail.ring[0] = 0, idx = 1
///   QueueNotify = 0
///   print '0'+used.idx, '0'+status, the first 4 data bytes, '0'+InterruptStatus
///   mov dx, 0xf4 ; mov al, 0 ; out dx, al ; hlt
/// ```
const VIRTIO_BLK_STUB: &[u8] = &[
    0xbf, 0x00, 0x00, 0x00, 0xd0, 0x66, 0xba, 0xf8, 0x03, 0x8b, 0x07, 0xee, 0xc1, 0xe8, 0x08, 0xee,
    0xc1, 0xe8, 0x08, 0xee, 0xc1, 0xe8, 0x08, 0xee, 0x8b, 0x47, 0x08, 0x04, 0x30, 0xee, 0xc7, 0x47,
    0x70, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x70, 0x01, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x70, 0x03,
    0x00, 0x00, 0x00, 0xc7, 0x47, 0x24, 0x01, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x20, 0x01, 0x00, 0x00,
    0x00, 0xc7, 0x47, 0x70, 0x0b, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x30, 0x00, 0x00, 0x00, 0x00, 0xc7,
    0x47, 0x38, 0x08, 0x00, 0x00, 0x00, 0xc7, 0x87, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00,
    0xc7, 0x87, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x87, 0x90, 0x00, 0x00, 0x00,
    0x00, 0x10, 0x20, 0x00, 0xc7, 0x87, 0x94, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x87,
    0xa0, 0x00, 0x00, 0x00, 0x00, 0x20, 0x20, 0x00, 0xc7, 0x87, 0xa4, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xc7, 0x47, 0x44, 0x01, 0x00, 0x00, 0x00, 0xc7, 0x47, 0x70, 0x0f, 0x00, 0x00, 0x00,
    0x8b, 0x47, 0x70, 0x04, 0x41, 0xee, 0xc7, 0x05, 0x00, 0x30, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xc7, 0x05, 0x04, 0x30, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x08, 0x30, 0x20, 0x00,
    0x01, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x0c, 0x30, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x05,
    0x00, 0x00, 0x20, 0x00, 0x00, 0x30, 0x20, 0x00, 0xc7, 0x05, 0x04, 0x00, 0x20, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xc7, 0x05, 0x08, 0x00, 0x20, 0x00, 0x10, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x0c, 0x00,
    0x20, 0x00, 0x01, 0x00, 0x01, 0x00, 0xc7, 0x05, 0x10, 0x00, 0x20, 0x00, 0x00, 0x40, 0x20, 0x00,
    0xc7, 0x05, 0x14, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x18, 0x00, 0x20, 0x00,
    0x00, 0x02, 0x00, 0x00, 0xc7, 0x05, 0x1c, 0x00, 0x20, 0x00, 0x03, 0x00, 0x02, 0x00, 0xc7, 0x05,
    0x20, 0x00, 0x20, 0x00, 0x00, 0x50, 0x20, 0x00, 0xc7, 0x05, 0x24, 0x00, 0x20, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xc7, 0x05, 0x28, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x2c, 0x00,
    0x20, 0x00, 0x02, 0x00, 0x00, 0x00, 0xc6, 0x05, 0x00, 0x50, 0x20, 0x00, 0xff, 0x66, 0xc7, 0x05,
    0x04, 0x10, 0x20, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x10, 0x20, 0x00, 0x00, 0x00, 0x01, 0x00,
    0xc7, 0x47, 0x50, 0x00, 0x00, 0x00, 0x00, 0x66, 0xa1, 0x02, 0x20, 0x20, 0x00, 0x04, 0x30, 0xee,
    0xa0, 0x00, 0x50, 0x20, 0x00, 0x04, 0x30, 0xee, 0xa1, 0x00, 0x40, 0x20, 0x00, 0xee, 0xc1, 0xe8,
    0x08, 0xee, 0xc1, 0xe8, 0x08, 0xee, 0xc1, 0xe8, 0x08, 0xee, 0x8b, 0x47, 0x60, 0x04, 0x30, 0xee,
    0x66, 0xba, 0xf4, 0x00, 0xb0, 0x00, 0xee, 0xf4,
];

/// ```text
///   mov al, 0xfe ; out 0x64, al ; hlt          # i8042 CPU reset, as Linux's reboot=k
/// ```
const RESET_STUB: &[u8] = &[0xb0, 0xfe, 0xe6, 0x64, 0xf4];

#[test]
fn long_mode_stub_runs_at_the_kernel_map_alias() {
    if !kvm_usable() {
        return;
    }
    let k = temp(
        "lm.elf",
        &synthetic_elf(
            LONG_MODE_STUB,
            0x100_0000,
            0xffff_ffff_8100_0000,
            0x100_0000,
            None,
        ),
    );
    let cap = Capture::default();
    let vmm = Vmm::new(config(&k.0, &cap)).unwrap();
    assert_eq!(
        vmm.entry.protocol,
        hako_microvm::vmm::cpu::BootProtocol::Linux64
    );
    let out = vmm.run().unwrap();
    assert_eq!(out.exit, ExitReason::DebugExit(7));
    // "hi" from the serial port, 3 e820 entries read through rsi, 'b' = ran at 0xffffffff81...
    assert_eq!(String::from_utf8_lossy(&cap.contents()), "hi3b");
    assert!(out.to_first_exit.is_some());
}

#[test]
fn pvh_stub_sees_start_info_and_cmdline() {
    if !kvm_usable() {
        return;
    }
    let k = temp(
        "pvh.elf",
        &synthetic_elf(
            PVH_STUB,
            0x100_0000,
            0x100_0000,
            0x100_0000,
            Some(0x100_0000),
        ),
    );
    let cap = Capture::default();
    let vmm = Vmm::new(config(&k.0, &cap)).unwrap();
    assert_eq!(
        vmm.entry.protocol,
        hako_microvm::vmm::cpu::BootProtocol::Pvh
    );
    let out = vmm.run().unwrap();
    assert_eq!(out.exit, ExitReason::DebugExit(0));
    assert_eq!(String::from_utf8_lossy(&cap.contents()), "P3c");
}

#[test]
fn guest_drives_virtio_blk_over_mmio() {
    if !kvm_usable() {
        return;
    }
    let k = temp(
        "vblk.elf",
        &synthetic_elf(
            VIRTIO_BLK_STUB,
            0x100_0000,
            0x100_0000,
            0x100_0000,
            Some(0x100_0000),
        ),
    );
    let mut disk = vec![b'-'; 4096];
    disk[512..516].copy_from_slice(b"DATA");
    let img = temp("vblk.img", &disk);
    let cap = Capture::default();
    let mut cfg = config(&k.0, &cap);
    cfg.block.push(BlockDevice {
        path: img.0.clone(),
        read_only: true,
        id: "disk0".into(),
    });
    let vmm = Vmm::new(cfg).unwrap();
    assert!(
        vmm.cmdline.ends_with("virtio_mmio.device=4K@0xd0000000:5"),
        "{}",
        vmm.cmdline
    );
    let out = vmm.run().unwrap();
    assert_eq!(out.exit, ExitReason::DebugExit(0));
    // magic "virt", device 2 (block), status 15 ('A'+15 = 'P'), used.idx 1, status OK,
    // sector 1's data, interrupt status 1 (used ring).
    assert_eq!(String::from_utf8_lossy(&cap.contents()), "virt2P10DATA1");
}

#[test]
fn i8042_reset_stops_the_vm() {
    if !kvm_usable() {
        return;
    }
    let k = temp(
        "reset.elf",
        &synthetic_elf(RESET_STUB, 0x100_0000, 0x100_0000, 0x100_0000, None),
    );
    let cap = Capture::default();
    let out = Vmm::new(config(&k.0, &cap)).unwrap().run().unwrap();
    assert_eq!(out.exit, ExitReason::Reset);
    assert!(out.exit.is_guest_requested());
}

#[test]
fn bad_input_is_one_clear_error() {
    if !kvm_usable() {
        return;
    }
    let cap = Capture::default();
    let e = Vmm::new(config(Path::new("/nonexistent/vmlinux"), &cap))
        .err()
        .unwrap();
    assert!(
        format!("{e:#}").contains("opening kernel /nonexistent/vmlinux"),
        "{e:#}"
    );
    let junk = temp("junk", b"MZ not an elf");
    let e = Vmm::new(config(&junk.0, &cap)).err().unwrap();
    assert!(
        format!("{e:#}").contains("not a loadable x86_64 vmlinux"),
        "{e:#}"
    );
    let k = temp(
        "ok.elf",
        &synthetic_elf(RESET_STUB, 0x100_0000, 0x100_0000, 0x100_0000, None),
    );
    let mut c = config(&k.0, &cap);
    c.memory_mib = 8;
    let e = Vmm::new(c).err().unwrap();
    assert!(format!("{e:#}").contains("below the minimum"), "{e:#}");
    let mut c = config(&k.0, &cap);
    c.block.push(BlockDevice {
        path: "/nonexistent.img".into(),
        read_only: true,
        id: String::new(),
    });
    let e = Vmm::new(c).err().unwrap();
    assert!(
        format!("{e:#}").contains("opening block image /nonexistent.img"),
        "{e:#}"
    );
}

/// Serial echo: polls the line status register, reads a byte, echoes it with the case
/// flipped, stops on 'q':
/// ```text
/// loop: mov dx, 0x3fd
/// wait: in al, dx ; test al, 1 ; jz wait
///       mov dx, 0x3f8 ; in al, dx ; cmp al, 'q' ; je done
///       xor al, 0x20 ; out dx, al ; jmp loop
/// done: mov dx, 0xf4 ; mov al, 5 ; out dx, al ; hlt
/// ```
const SERIAL_ECHO_STUB: &[u8] = &[
    0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0x66, 0xba, 0xf8, 0x03, 0xec, 0x3c, 0x71,
    0x74, 0x05, 0x34, 0x20, 0xee, 0xeb, 0xe9, 0x66, 0xba, 0xf4, 0x00, 0xb0, 0x05, 0xee, 0xf4,
];

#[test]
fn host_input_reaches_the_guest_serial_port() {
    if !kvm_usable() {
        return;
    }
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};
    let k = temp(
        "echo.elf",
        &synthetic_elf(SERIAL_ECHO_STUB, 0x100_0000, 0x100_0000, 0x100_0000, None),
    );
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a valid array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let cap = Capture::default();
    let mut cfg = config(&k.0, &cap);
    cfg.serial.input = Input::Fd(std::fs::File::from(rd));
    let vmm = Vmm::new(cfg).unwrap();
    // More than the UART's 64-byte FIFO, so the VMM must hold back and feed it as it drains.
    let mut input = b"hello".repeat(30);
    input.push(b'q');
    let mut w = std::fs::File::from(wr);
    w.write_all(&input).unwrap();
    let out = vmm.run().unwrap();
    assert_eq!(out.exit, ExitReason::DebugExit(5));
    assert_eq!(String::from_utf8_lossy(&cap.contents()), "HELLO".repeat(30));
}

/// Two vCPUs. The BSP (PVH, 32-bit) wakes the AP through its local APIC:
/// ```text
///   mov dword [0xfee00310], 1 << 24 ; mov dword [0xfee00300], 0x4500   # INIT to APIC 1
///   mov dword [0xfee00310], 1 << 24 ; mov dword [0xfee00300], 0x460f   # SIPI, vector 0x0f
/// spin: pause ; jmp spin
/// ```
const SMP_BSP_STUB: &[u8] = &[
    0xc7, 0x05, 0x10, 0x03, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x01, 0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe,
    0x00, 0x45, 0x00, 0x00, 0xc7, 0x05, 0x10, 0x03, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x01, 0xc7, 0x05,
    0x00, 0x03, 0xe0, 0xfe, 0x0f, 0x46, 0x00, 0x00, 0xf3, 0x90, 0xeb, 0xfc,
];
/// The AP starts in real mode at 0xf000: `mov al, 9 ; out 0xf4, al ; hlt`.
const SMP_AP_STUB: &[u8] = &[0xb0, 0x09, 0xe6, 0xf4, 0xf4];

#[test]
fn second_vcpu_starts_on_init_sipi_and_finds_the_mp_table() {
    if !kvm_usable() {
        return;
    }
    use hako_microvm::vmm::boot::synthetic_elf_segments;
    let k = temp(
        "smp.elf",
        &synthetic_elf_segments(
            &[
                (0x100_0000, 0x100_0000, SMP_BSP_STUB),
                (0xf000, 0xf000, SMP_AP_STUB),
            ],
            0x100_0000,
            Some(0x100_0000),
        ),
    );
    let cap = Capture::default();
    let mut cfg = config(&k.0, &cap);
    cfg.vcpus = 2;
    // The AP's debug exit ends the VM while the BSP spins: the BSP must be kicked out of KVM.
    let out = Vmm::new(cfg).unwrap().run().unwrap();
    assert_eq!(out.exit, ExitReason::DebugExit(9));
    let mut cfg = config(&k.0, &cap);
    cfg.vcpus = 0;
    assert!(Vmm::new(cfg).is_err());
}
