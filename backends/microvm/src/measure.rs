//! What `hako bench` measures of hako's own VMM where KVM cannot boot Linux: a synthetic guest
//! run the way the backend's `hako` engine runs a VM (a forked child, jailed, under the seccomp
//! filters). [`SyntheticGuest::measure`] gives `Vmm::new` → the guest's first instruction and
//! the VMM process's memory beyond guest RAM while that guest waits;
//! [`SyntheticGuest::measure_restore`] snapshots the waiting guest once and gives, for each of
//! N restored copies, `Vmm::restore` → the guest's first instruction, the VMM's memory, and its
//! mapping of the snapshot's memory file (Rss against Pss: the pages it shares). (With a real
//! guest the host process writes [`crate::timings::Timings`] instead.)

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::hako_engine::vmm_child_prologue;
use crate::vmm::{self, Input, Output, Stdio, VmConfig, Vmm};

/// 64-bit stub that waits halted, so an idle copy costs no CPU: it points IDT vector 0x24 at a
/// handler that only acknowledges the PIC, programs the PICs (IRQ 4, the 8250's, the only one
/// unmasked, at vector 0x24) and the 8250's data-ready interrupt; then it announces itself on
/// the 8250 ('r') and halts until a byte of host input is there: 'q' exits through the debug
/// port, anything else announces again.
/// ```text
///   mov esp, 0x1f00000
///   IDT at 0x1ff0000: gate 0x24 = isr (selector 0x08, present 64-bit interrupt gate)
///   lidt [limit 0xfff, base 0x1ff0000]
///   PICs: ICW1 0x11, ICW2 0x20 / 0x28, ICW3 0x04 / 0x02, ICW4 0x01; masks 0xef / 0xff
///   8250: MCR = OUT2, IER = data ready
/// again: mov dx, 0x3f8 ; mov al, 'r' ; out dx, al
/// wait:  cli ; LSR bit 0 set -> got ; sti ; hlt ; jmp wait
/// got:   al = RBR ; 'q' -> out 0xf4, 0 ; hlt ; else jmp again
/// isr:   push rax ; mov al, 0x20 ; out 0x20, al ; pop rax ; iretq
/// ```
const STUB: &[u8] = &[
    0xbc, 0x00, 0x00, 0xf0, 0x01, 0x48, 0x8d, 0x05, 0xa0, 0x00, 0x00, 0x00, 0xbf, 0x40, 0x02, 0xff,
    0x01, 0x66, 0x89, 0x07, 0x66, 0xc7, 0x47, 0x02, 0x08, 0x00, 0x66, 0xc7, 0x47, 0x04, 0x00, 0x8e,
    0x48, 0xc1, 0xe8, 0x10, 0x66, 0x89, 0x47, 0x06, 0x48, 0xc1, 0xe8, 0x10, 0x89, 0x47, 0x08, 0xc7,
    0x47, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x66, 0xc7, 0x04, 0x25, 0x00, 0xf0, 0xfe, 0x01, 0xff, 0x0f,
    0x48, 0xc7, 0x04, 0x25, 0x02, 0xf0, 0xfe, 0x01, 0x00, 0x00, 0xff, 0x01, 0x0f, 0x01, 0x1c, 0x25,
    0x00, 0xf0, 0xfe, 0x01, 0xb0, 0x11, 0xe6, 0x20, 0xe6, 0xa0, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x28,
    0xe6, 0xa1, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x02, 0xe6, 0xa1, 0xb0, 0x01, 0xe6, 0x21, 0xe6, 0xa1,
    0xb0, 0xef, 0xe6, 0x21, 0xb0, 0xff, 0xe6, 0xa1, 0x66, 0xba, 0xfc, 0x03, 0xb0, 0x08, 0xee, 0x66,
    0xba, 0xf9, 0x03, 0xb0, 0x01, 0xee, 0x66, 0xba, 0xf8, 0x03, 0xb0, 0x72, 0xee, 0xfa, 0x66, 0xba,
    0xfd, 0x03, 0xec, 0xa8, 0x01, 0x75, 0x04, 0xfb, 0xf4, 0xeb, 0xf2, 0x66, 0xba, 0xf8, 0x03, 0xec,
    0x3c, 0x71, 0x75, 0xe2, 0x66, 0xba, 0xf4, 0x00, 0xb0, 0x00, 0xee, 0xf4, 0x50, 0xb0, 0x20, 0xe6,
    0x20, 0x58, 0x48, 0xcf,
];

/// One synthetic run.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticRun {
    /// `Vmm::new` → the guest's first exit (so its first instruction has run).
    pub vmm_start: Option<Duration>,
    /// `Vmm::new` start → `run` start.
    pub vmm_build: Duration,
    /// Rss of the forked VMM process before `Vmm::new` (inherited at fork), KiB.
    pub fork_rss_kib: u64,
    /// The VMM process's Rss beyond guest RAM and of guest RAM, once the guest runs.
    pub rss: Option<hako_contract::proc::VmRss>,
}

/// One restored copy of the stub ([`SyntheticGuest::measure_restore`]).
#[derive(Debug, Clone)]
pub struct RestoreRun {
    /// `Vmm::restore` → the guest's first exit (its first instruction after the snapshot ran).
    pub to_first_exit: Option<Duration>,
    /// `Vmm::restore` start → `run` start (memory, KVM VM, state, devices, vCPUs, jail).
    pub restore: Duration,
    /// The VMM process's Rss beyond guest RAM and of guest RAM, once the guest runs.
    pub rss: Option<hako_contract::proc::VmRss>,
    /// Its mapping of the snapshot's memory file (Rss against Pss: what it shares).
    pub memory: Option<FileMappingUse>,
    /// Where the time went ([`vmm::Phases::describe`]).
    pub phases: String,
}

/// The stub guest, written as a kernel ELF into a scratch directory (removed on drop), and its
/// snapshot once [`SyntheticGuest::measure_restore`] has made one.
pub struct SyntheticGuest {
    kernel: PathBuf,
    snapshot: PathBuf,
    guest_mib: u64,
}

impl SyntheticGuest {
    /// Fails when `/dev/kvm` cannot be opened or the ELF cannot be written.
    pub fn new(scratch: &Path, guest_mib: u64) -> Result<Self> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .context("/dev/kvm cannot be opened")?;
        let kernel = scratch.join("hako-vmm-synthetic.elf");
        let elf = vmm::boot::synthetic_elf(STUB, 0x100_0000, 0x100_0000, 0x100_0000, None);
        std::fs::write(&kernel, elf).with_context(|| format!("writing {}", kernel.display()))?;
        Ok(SyntheticGuest {
            kernel,
            snapshot: scratch.join("hako-vmm-synthetic.snap"),
            guest_mib,
        })
    }

    fn vm_config(&self, serial: Stdio) -> VmConfig {
        VmConfig {
            memory_mib: self.guest_mib as u32,
            vcpus: 1,
            kernel: self.kernel.clone(),
            serial,
            ..Default::default()
        }
    }

    /// Fork a VMM process, run the stub in it, measure it while the stub waits, release it.
    pub fn measure(&self, timeout: Duration) -> Result<SyntheticRun> {
        let cfg = |serial| VmConfig {
            jail: Some(vmm::JailConfig::default()),
            seccomp: true,
            ..self.vm_config(serial)
        };
        let mut c = VmmChild::spawn(move |serial| Vmm::new(cfg(serial)))?;
        let r = (|| {
            c.expect_ready(timeout)?;
            // The guest runs (its first instruction is done) and waits: measure the VMM now.
            let rss = hako_contract::proc::vm_rss(c.pid, self.guest_mib << 20);
            let (v, _) = c.finish(timeout)?;
            Ok(SyntheticRun {
                vmm_start: (v[1] > 0).then(|| Duration::from_nanos(v[1])),
                vmm_build: Duration::from_nanos(v[2]),
                fork_rss_kib: v[3],
                rss,
            })
        })();
        c.reap(r, timeout)
    }

    /// Snapshot the stub while it waits halted for input (made once, in this process: the VM
    /// runs on a thread here, not jailed, since the snapshot is written by the VMM thread).
    fn make_snapshot(&self, timeout: Duration) -> Result<&Path> {
        if self.snapshot.join(vmm::snapshot::STATE_FILE).exists() {
            return Ok(&self.snapshot);
        }
        std::fs::create_dir_all(&self.snapshot)
            .with_context(|| format!("creating {}", self.snapshot.display()))?;
        let (serial_r, serial_w) = pipe()?;
        let (input_r, input_w) = pipe()?;
        let mut vmm = Vmm::new(self.vm_config(Stdio {
            input: Input::Fd(std::fs::File::from(input_r)),
            output: Output::Fd(std::fs::File::from(serial_w)),
        }))?;
        let trigger = vmm.snapshot_trigger()?;
        let vm = std::thread::spawn(move || vmm.run());
        let r = (|| {
            wait_readable(serial_r.as_fd(), timeout)?;
            let mut b = [0u8; 1];
            std::fs::File::from(serial_r.try_clone()?)
                .read_exact(&mut b)
                .context("reading the guest's serial output")?;
            trigger.request(&self.snapshot)
        })();
        if r.is_err() {
            // Let the guest end so the thread can be joined.
            let _ = std::fs::File::from(input_w).write_all(b"q");
        }
        let out = vm
            .join()
            .map_err(|_| anyhow::anyhow!("the VMM thread panicked"))??;
        r?;
        if out.exit != vmm::ExitReason::Snapshotted {
            bail!(
                "the stub ended before its snapshot: {}",
                out.exit.describe()
            );
        }
        Ok(&self.snapshot)
    }

    /// Snapshot the stub once, then restore `copies` copies of it, one after the other, each in
    /// its own forked, jailed, seccomp-filtered VMM process as the backend's hako engine runs
    /// one. A copy resumes halted where the snapshot left it; a byte of input already waiting
    /// wakes it, so its first exit is its first instruction's. The copies stay (halted, costing
    /// no CPU) until all are measured, so the guest memory they share with the snapshot's file
    /// and with each other shows in Pss against Rss; then they are released.
    pub fn measure_restore(&self, copies: usize, timeout: Duration) -> Result<Vec<RestoreRun>> {
        let snap = self.make_snapshot(timeout)?.to_path_buf();
        let memfile = snap.join(vmm::snapshot::MEMORY_FILE);
        let mut children: Vec<VmmChild> = Vec::new();
        let mut result = Ok(());
        for _ in 0..copies.max(1) {
            let snap = snap.clone();
            let spawned = VmmChild::spawn(move |serial| {
                let mut cfg = vmm::RestoreConfig::new(snap, serial);
                cfg.jail = Some(vmm::JailConfig::default());
                cfg.seccomp = true;
                Vmm::restore(cfg)
            });
            match spawned {
                Ok(mut c) => {
                    let ready = c.send(b"c").and_then(|_| c.expect_ready(timeout));
                    children.push(c);
                    if let Err(e) = ready {
                        result = Err(e);
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let seen: Vec<_> = children
            .iter()
            .map(|c| restored_memory(c.pid, &memfile, self.guest_mib))
            .collect();
        let mut runs = Vec::new();
        for (mut c, (rss, memory)) in children.into_iter().zip(seen) {
            let r = match &result {
                Ok(()) => c.finish(timeout),
                Err(e) => Err(anyhow::anyhow!("{e:#}")),
            };
            match c.reap(r, timeout) {
                Ok((v, phases)) => runs.push(RestoreRun {
                    to_first_exit: (v[1] > 0).then(|| Duration::from_nanos(v[1])),
                    restore: Duration::from_nanos(v[2]),
                    rss,
                    memory,
                    phases,
                }),
                Err(e) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        result.map(|_| runs)
    }
}

/// A restored VMM's memory: its Rss outside and inside its mapping of the snapshot's memory
/// file, and that mapping's use (guest memory there is a file mapping, so the anonymous-memory
/// rule of [`hako_contract::proc::vm_rss`] does not find it).
fn restored_memory(
    pid: libc::pid_t,
    memfile: &Path,
    guest_mib: u64,
) -> (Option<hako_contract::proc::VmRss>, Option<FileMappingUse>) {
    let Some(m) = snapshot_memory_use(pid, memfile)
        .ok()
        .and_then(|m| m.into_iter().next())
    else {
        return (None, None);
    };
    let total: u64 = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let rss = (total > 0).then(|| hako_contract::proc::VmRss {
        vmm_kib: total.saturating_sub(m.rss_kib),
        guest_kib: m.rss_kib,
        guest_pss_kib: m.pss_kib,
        guest_mapping_kib: guest_mib << 10,
    });
    (rss, Some(m))
}

impl Drop for SyntheticGuest {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kernel);
        let _ = std::fs::remove_dir_all(&self.snapshot);
    }
}

/// A forked VMM process running the stub: its serial port's two ends and its report pipe.
struct VmmChild {
    pid: libc::pid_t,
    serial: std::fs::File,
    input: std::fs::File,
    result: OwnedFd,
}

impl VmmChild {
    /// Fork; the child builds its VM with `make` (given the serial port's host side) and runs
    /// it, then reports (ok, to-first-exit ns, build ns, fork RSS KiB) and its steps' times.
    fn spawn(make: impl FnOnce(Stdio) -> Result<Vmm>) -> Result<VmmChild> {
        let (serial_r, serial_w) = pipe()?;
        let (input_r, input_w) = pipe()?;
        let (result_r, result_w) = pipe()?;
        // SAFETY: the child only builds and runs a VM (as the backend's hako engine does in its
        // forked child) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            drop((serial_r, input_w, result_r));
            child(make, serial_w, input_r, result_w);
        }
        Ok(VmmChild {
            pid,
            serial: std::fs::File::from(serial_r),
            input: std::fs::File::from(input_w),
            result: result_r,
        })
    }

    fn send(&mut self, b: &[u8]) -> Result<()> {
        self.input.write_all(b).context("writing to the guest")
    }

    /// The stub said 'r': it runs and waits for input.
    fn expect_ready(&mut self, timeout: Duration) -> Result<()> {
        wait_readable(self.serial.as_fd(), timeout)?;
        let mut b = [0u8; 1];
        self.serial
            .read_exact(&mut b)
            .context("reading the guest's serial output")?;
        if b[0] != b'r' {
            bail!("unexpected guest output {:?}", b[0] as char);
        }
        Ok(())
    }

    /// Let the stub exit and read the VMM's report: the figures and its steps' times.
    fn finish(&mut self, timeout: Duration) -> Result<([u64; 4], String)> {
        self.send(b"q").context("releasing the guest")?;
        wait_readable(self.result.as_fd(), timeout)?;
        let mut res = Vec::new();
        std::fs::File::from(self.result.try_clone()?)
            .read_to_end(&mut res)
            .context("reading the VMM's report")?;
        if res.len() < 32 {
            bail!("the VMM did not report (died?)");
        }
        let mut v = [0u64; 4];
        for (o, c) in v.iter_mut().zip(res.chunks(8)) {
            *o = u64::from_le_bytes(c.try_into().unwrap_or_default());
        }
        if v[0] != 1 {
            bail!("the VMM did not end with the stub's debug exit");
        }
        Ok((v, String::from_utf8_lossy(&res[32..]).into_owned()))
    }

    /// Reap the process (killed first when `r` failed); `r` unless the process failed.
    fn reap<T>(self, r: Result<T>, timeout: Duration) -> Result<T> {
        if r.is_err() {
            // SAFETY: signal our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        let st = wait_child(self.pid, timeout);
        let run = r?;
        match st {
            Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(run),
            Some(st) => bail!("the VMM process ended with wait status {st:#x}"),
            None => Ok(run),
        }
    }
}

/// The forked VMM process: build the VM with `make`, run it; report (ok, to-first-exit ns,
/// build ns, fork RSS KiB).
fn child(
    make: impl FnOnce(Stdio) -> Result<Vmm>,
    serial_w: OwnedFd,
    input_r: OwnedFd,
    result_w: OwnedFd,
) -> ! {
    vmm_child_prologue();
    let fork_rss = self_rss_kib();
    let out = make(Stdio {
        input: Input::Fd(std::fs::File::from(input_r)),
        output: Output::Fd(std::fs::File::from(serial_w)),
    })
    .and_then(|v| v.run());
    let mut msg = [0u64; 4];
    let mut phases = String::new();
    if let Ok(o) = &out {
        phases = o.phases.describe();
        if o.exit == vmm::ExitReason::DebugExit(0) {
            msg = [
                1,
                o.to_first_exit.map_or(0, |d| d.as_nanos() as u64),
                o.build_time.as_nanos() as u64,
                fork_rss,
            ];
        }
    }
    let mut bytes: Vec<u8> = msg.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes.extend_from_slice(phases.as_bytes());
    let _ = std::fs::File::from(result_w).write_all(&bytes);
    // SAFETY: leave the child without running the parent's destructors.
    unsafe { libc::_exit(0) }
}

/// Reap `pid`; past `timeout` kill it first. None when it was not ours to reap (already gone).
fn wait_child(pid: libc::pid_t, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    let mut st = 0;
    loop {
        // SAFETY: waitpid on our own child.
        match unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } {
            0 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            0 => {
                // SAFETY: signal and reap our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut st, 0);
                }
                return Some(st);
            }
            r if r == pid => return Some(st),
            _ => return None,
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    // SAFETY: fresh descriptors owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn wait_readable(fd: BorrowedFd, timeout: Duration) -> Result<()> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut p, 1, ms) } {
        1 => Ok(()),
        0 => bail!("no answer from the VMM within {timeout:?}"),
        _ => Err(std::io::Error::last_os_error()).context("poll"),
    }
}

fn self_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One mapping of a file in a process, from its smaps (KiB): how much of it is resident, and
/// how much of that is shared with other mappings of the same pages (a restored VM's guest
/// memory against its template's file and the other copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMappingUse {
    /// `rw-p` for a private (copy-on-write) read-write mapping.
    pub perms: String,
    pub size_kib: u64,
    pub rss_kib: u64,
    /// Rss with each page divided by the number of mappings that share it.
    pub pss_kib: u64,
    pub shared_clean_kib: u64,
    /// Shared pages the page cache holds dirty (a memory file on tmpfs, or not yet written back).
    pub shared_dirty_kib: u64,
    /// This mapping's own copies of the pages it wrote.
    pub private_dirty_kib: u64,
}

/// The mappings of `file` (an absolute, canonical path) in `smaps` text.
pub fn file_mappings(smaps: &str, file: &Path) -> Vec<FileMappingUse> {
    let want = file.to_string_lossy();
    let mut out = Vec::new();
    let mut cur: Option<FileMappingUse> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let (Some(first), Some(second)) = (f.next(), f.next()) else {
            continue;
        };
        if first.contains('-') && second.len() == 4 && !first.ends_with(':') {
            // A mapping's header: range perms offset dev inode [path].
            out.extend(cur.take());
            let path = line.split_whitespace().nth(5).unwrap_or("");
            if path == want {
                cur = Some(FileMappingUse {
                    perms: second.to_string(),
                    size_kib: 0,
                    rss_kib: 0,
                    pss_kib: 0,
                    shared_clean_kib: 0,
                    shared_dirty_kib: 0,
                    private_dirty_kib: 0,
                });
            }
            continue;
        }
        let Some(m) = cur.as_mut() else { continue };
        let v: u64 = second.parse().unwrap_or(0);
        match first {
            "Size:" => m.size_kib = v,
            "Rss:" => m.rss_kib = v,
            "Pss:" => m.pss_kib = v,
            "Shared_Clean:" => m.shared_clean_kib = v,
            "Shared_Dirty:" => m.shared_dirty_kib = v,
            "Private_Dirty:" => m.private_dirty_kib = v,
            _ => {}
        }
    }
    out.extend(cur);
    out
}

/// The mappings of a snapshot's memory file in process `pid` (one per restored VM in it).
pub fn snapshot_memory_use(pid: i32, memory_file: &Path) -> Result<Vec<FileMappingUse>> {
    let file = memory_file
        .canonicalize()
        .with_context(|| format!("resolving {}", memory_file.display()))?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("reading /proc/{pid}/smaps"))?;
    Ok(file_mappings(&smaps, &file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_mappings_reads_each_mapping_of_the_file() {
        let smaps = "\
7f0000000000-7f0008000000 rw-p 00000000 fd:01 1234                       /s/snap/memory
Size:             131072 kB
Rss:                  64 kB
Pss:                  44 kB
Shared_Clean:         40 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:        24 kB
7f0008000000-7f0008001000 r--p 00000000 fd:01 99                         /usr/lib/libc.so.6
Size:                  4 kB
Rss:                   4 kB
Pss:                   1 kB
7f0010000000-7f0018000000 rw-p 00000000 fd:01 1234                       /s/snap/memory
Size:             131072 kB
Rss:                  48 kB
Pss:                  28 kB
Shared_Clean:         32 kB
Shared_Dirty:          8 kB
Private_Dirty:         8 kB
";
        let m = file_mappings(smaps, Path::new("/s/snap/memory"));
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            FileMappingUse {
                perms: "rw-p".into(),
                size_kib: 131072,
                rss_kib: 64,
                pss_kib: 44,
                shared_clean_kib: 40,
                shared_dirty_kib: 0,
                private_dirty_kib: 24,
            }
        );
        assert_eq!(
            (m[1].rss_kib, m[1].pss_kib, m[1].private_dirty_kib),
            (48, 28, 8)
        );
        assert!(file_mappings(smaps, Path::new("/s/snap/other")).is_empty());
    }
}
