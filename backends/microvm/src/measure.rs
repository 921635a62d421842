//! What `hako bench` measures of hako's own VMM where KVM cannot boot Linux: a synthetic guest
//! run the way the backend's `hako` engine runs a VM (a forked child, jailed, under the seccomp
//! filters). It gives `Vmm::new` → the guest's first instruction and the VMM process's memory
//! beyond guest RAM while that guest waits. (With a real guest the host process writes
//! [`crate::timings::Timings`] instead.)

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::hako_engine::vmm_child_prologue;
use crate::vmm::{self, Input, Output, Stdio, VmConfig, Vmm};

/// 64-bit stub: announce itself on the 8250, wait for one byte of host input, then exit
/// through the debug port:
/// ```text
///   mov dx, 0x3f8 ; mov al, 'r' ; out dx, al
///   mov dx, 0x3fd
/// wait: in al, dx ; test al, 1 ; jz wait
///   mov dx, 0xf4 ; mov al, 0 ; out dx, al ; hlt
/// ```
const STUB: &[u8] = &[
    0x66, 0xba, 0xf8, 0x03, 0xb0, 0x72, 0xee, 0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb,
    0x66, 0xba, 0xf4, 0x00, 0xb0, 0x00, 0xee, 0xf4,
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

/// The stub guest, written as a kernel ELF into a scratch directory (removed on drop).
pub struct SyntheticGuest {
    kernel: PathBuf,
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
        Ok(SyntheticGuest { kernel, guest_mib })
    }

    /// Fork a VMM process, run the stub in it, measure it while the stub waits, release it.
    pub fn measure(&self, timeout: Duration) -> Result<SyntheticRun> {
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
            child(&self.kernel, self.guest_mib, serial_w, input_r, result_w);
        }
        drop((serial_w, input_r, result_w));
        let r = (|| {
            wait_readable(&serial_r, timeout)?;
            let mut b = [0u8; 1];
            let mut serial = std::fs::File::from(serial_r);
            serial
                .read_exact(&mut b)
                .context("reading the guest's serial output")?;
            if b[0] != b'r' {
                bail!("unexpected guest output {:?}", b[0] as char);
            }
            // The guest runs (its first instruction is done) and waits: measure the VMM now.
            let rss = hako_contract::proc::vm_rss(pid, self.guest_mib << 20);
            std::fs::File::from(input_w)
                .write_all(b"x")
                .context("releasing the guest")?;
            wait_readable(&result_r, timeout)?;
            let mut res = [0u8; 32];
            std::fs::File::from(result_r)
                .read_exact(&mut res)
                .context("the VMM did not report (died?)")?;
            let v: Vec<u64> = res
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            if v[0] != 1 {
                bail!("the VMM did not end with the stub's debug exit");
            }
            Ok(SyntheticRun {
                vmm_start: (v[1] > 0).then(|| Duration::from_nanos(v[1])),
                vmm_build: Duration::from_nanos(v[2]),
                fork_rss_kib: v[3],
                rss,
            })
        })();
        if r.is_err() {
            // SAFETY: signal our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let st = wait_child(pid, timeout);
        let run = r?;
        match st {
            Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(run),
            Some(st) => bail!("the VMM process ended with wait status {st:#x}"),
            None => Ok(run),
        }
    }
}

impl Drop for SyntheticGuest {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kernel);
    }
}

/// The forked VMM process: build and run the stub VM, jailed and under the seccomp filters
/// like the backend's hako engine; report (ok, to-first-exit ns, build ns, fork RSS KiB).
fn child(
    kernel: &Path,
    guest_mib: u64,
    serial_w: OwnedFd,
    input_r: OwnedFd,
    result_w: OwnedFd,
) -> ! {
    vmm_child_prologue();
    let fork_rss = self_rss_kib();
    let out = Vmm::new(VmConfig {
        memory_mib: guest_mib as u32,
        vcpus: 1,
        kernel: kernel.to_path_buf(),
        serial: Stdio {
            input: Input::Fd(std::fs::File::from(input_r)),
            output: Output::Fd(std::fs::File::from(serial_w)),
        },
        jail: Some(vmm::JailConfig::default()),
        seccomp: true,
        ..Default::default()
    })
    .and_then(|v| v.run());
    let mut msg = [0u64; 4];
    if let Ok(o) = &out {
        if o.exit == vmm::ExitReason::DebugExit(0) {
            msg = [
                1,
                o.to_first_exit.map_or(0, |d| d.as_nanos() as u64),
                o.build_time.as_nanos() as u64,
                fork_rss,
            ];
        }
    }
    let bytes: Vec<u8> = msg.iter().flat_map(|v| v.to_le_bytes()).collect();
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

fn wait_readable(fd: &OwnedFd, timeout: Duration) -> Result<()> {
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
Shared_Clean:         40 kB
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
