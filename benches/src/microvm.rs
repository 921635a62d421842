//! The microvm create-to-exit split: where a microVM's time goes (VMM start, kernel boot, agent
//! setup, start → exit) and what the VMM costs in memory beyond the guest's RAM, for
//!
//! - `hako-microvm`: read from the `microvm-timings.json` its host process writes into the
//!   sandbox's state directory (see `hako_microvm::timings`, docs/backends/microvm.md);
//! - `qemu-microvm`: the plain-qemu peer; its `/init` prints the guest's `CLOCK_BOOTTIME` when it
//!   starts, the harness timestamps that line on qemu's stdout and samples qemu's smaps then;
//! - hako's own VMM with a synthetic guest ([`measure_synthetic`], when the `vmm` feature is
//!   built and `/dev/kvm` opens): `Vmm::new` → the guest's first instruction, and the forked
//!   VMM process's memory beyond guest RAM while that guest waits. Where KVM cannot boot Linux
//!   (this project's machines: `kvm_pvm`) that is all hako's VMM can show.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::Report;
use crate::stats::{ratio, summarize};
use crate::subjects::Category;

/// The file the microvm backend's host process writes into the sandbox's state directory.
pub const TIMINGS_FILE: &str = "microvm-timings.json";
/// Guest RAM of the plain-qemu peer (`-m`) and of the synthetic VMM guest; hako-microvm's default.
pub const GUEST_MIB: u64 = 128;
/// The line the plain-qemu peer's `/init` prints first: `hako-bench-boot uptime_ns=<N>`.
pub const BOOT_MARK: &str = "hako-bench-boot";
/// The brief's goals where hardware virtualization exists (Firecracker promises ≤ 125 ms to
/// /sbin/init and ≤ 5 MiB).
pub const GOAL_BOOT_TO_EXIT_MS: f64 = 100.0;
pub const GOAL_VMM_MIB: f64 = 5.0;
/// Name of the synthetic hako VMM row.
pub const SYNTHETIC_NAME: &str = "hako-vmm-synthetic";

/// One sample's split. Times in ms (host clock unless said otherwise), memory in KiB. Read from
/// the backend's timings file, whose field names these are (unknown fields are ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MicrovmSplit {
    /// `qemu` or `hako`.
    pub engine: String,
    /// `tcg` or `kvm`.
    pub accel: String,
    pub guest_mib: u64,
    /// Before the guest's clock started: the VMM's own start, firmware, the kernel's first
    /// instructions (host spawn → ready minus guest uptime at ready). For the synthetic guest:
    /// `Vmm::new` → the guest's first instruction.
    pub vmm_start_ms: Option<f64>,
    /// Guest `CLOCK_BOOTTIME` when the agent (or the peer's `/init`) started.
    pub kernel_boot_ms: Option<f64>,
    /// Agent start → Ready (guest clock); none for the peer, whose `/init` is the workload's parent.
    pub agent_setup_ms: Option<f64>,
    /// Host: VM spawn → ready (the agent's Ready frame, the peer's first `/init` line).
    pub ready_ms: Option<f64>,
    /// Host: Start sent → Exit frame (the peer: first → last `/init` line).
    pub run_ms: Option<f64>,
    /// VM process Rss outside the guest-RAM mapping, once the guest is up.
    pub vmm_rss_kib: Option<u64>,
    /// Rss of the guest-RAM mapping at the same moment.
    pub guest_rss_kib: Option<u64>,
    /// Synthetic guest only: Rss of the forked VMM process before `Vmm::new` (inherited at fork).
    pub fork_rss_kib: Option<u64>,
    /// Synthetic guest only: `Vmm::new` start → `run` start.
    pub vmm_build_ms: Option<f64>,
}

impl MicrovmSplit {
    /// VM spawn → workload exit, host clock.
    pub fn boot_to_exit_ms(&self) -> Option<f64> {
        Some(self.ready_ms? + self.run_ms?)
    }

    pub fn engine_label(&self) -> String {
        format!("{}/{}", self.engine, self.accel)
    }
}

/// Read the backend's timings file.
pub fn read_timings(path: &Path) -> Result<MicrovmSplit, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))
}

/// The guest uptime in a `hako-bench-boot uptime_ns=<N>` (or `hako-bench-exit=0
/// uptime_ns=<N>`) line.
pub fn parse_uptime_ns(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix("uptime_ns="))
        .and_then(|v| v.trim().parse().ok())
}

/// The plain-qemu peer's split from what the harness saw on its stdout: when (since spawn) the
/// boot line came, with which guest uptime, and when the exit line came.
pub fn qemu_peer_split(
    boot_line_at: Duration,
    uptime_ns: u64,
    exit_line_at: Option<Duration>,
    rss: Option<hako_contract::proc::VmRss>,
) -> MicrovmSplit {
    let ready = boot_line_at.as_secs_f64() * 1e3;
    let kernel = uptime_ns as f64 / 1e6;
    MicrovmSplit {
        engine: "qemu".into(),
        accel: "tcg".into(),
        guest_mib: GUEST_MIB,
        vmm_start_ms: Some(ready - kernel),
        kernel_boot_ms: Some(kernel),
        agent_setup_ms: None,
        ready_ms: Some(ready),
        run_ms: exit_line_at.map(|e| e.saturating_sub(boot_line_at).as_secs_f64() * 1e3),
        vmm_rss_kib: rss.map(|r| r.vmm_kib),
        guest_rss_kib: rss.map(|r| r.guest_kib),
        ..Default::default()
    }
}

/// hako's VMM with a synthetic guest, measured where `/dev/kvm` opens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SyntheticVmm {
    /// Whether the VMM's KVM probe says this host's KVM boots Linux, and its reason.
    pub runs_linux: bool,
    pub probe: String,
    pub samples: Vec<MicrovmSplit>,
    /// Why nothing (or not everything) was measured.
    pub error: Option<String>,
}

impl SyntheticVmm {
    /// The row's label in the table's note.
    pub fn label(&self) -> String {
        if self.runs_linux {
            "hako VMM (synthetic guest)".into()
        } else {
            format!(
                "hako VMM (synthetic guest; Linux cannot boot on this host's KVM: {})",
                self.probe
            )
        }
    }
}

/// One row of the split table: medians over a subject's counted samples of one engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRow {
    pub subject: String,
    /// engine/accel, e.g. `qemu/tcg`.
    pub engine: String,
    /// Samples with a split.
    pub n: usize,
    pub vmm_start_ms: Option<f64>,
    pub kernel_boot_ms: Option<f64>,
    pub agent_setup_ms: Option<f64>,
    pub run_ms: Option<f64>,
    pub boot_to_exit_ms: Option<f64>,
    pub vmm_rss_mib: Option<f64>,
    pub guest_rss_mib: Option<f64>,
    /// boot → exit against the qemu-microvm peer's.
    pub boot_to_exit_ratio: Option<f64>,
    /// VMM Rss beyond guest RAM against the qemu-microvm peer's.
    pub vmm_rss_ratio: Option<f64>,
}

fn median(v: impl Iterator<Item = f64>) -> Option<f64> {
    summarize(&v.collect::<Vec<_>>()).map(|s| s.median)
}

fn row(subject: &str, engine: String, xs: &[&MicrovmSplit]) -> SplitRow {
    let kib = |k: u64| k as f64 / 1024.0;
    SplitRow {
        subject: subject.to_string(),
        engine,
        n: xs.len(),
        vmm_start_ms: median(xs.iter().filter_map(|s| s.vmm_start_ms)),
        kernel_boot_ms: median(xs.iter().filter_map(|s| s.kernel_boot_ms)),
        agent_setup_ms: median(xs.iter().filter_map(|s| s.agent_setup_ms)),
        run_ms: median(xs.iter().filter_map(|s| s.run_ms)),
        boot_to_exit_ms: median(xs.iter().filter_map(|s| s.boot_to_exit_ms())),
        vmm_rss_mib: median(xs.iter().filter_map(|s| s.vmm_rss_kib).map(kib)),
        guest_rss_mib: median(xs.iter().filter_map(|s| s.guest_rss_kib).map(kib)),
        boot_to_exit_ratio: None,
        vmm_rss_ratio: None,
    }
}

/// The split rows of a report: each microvm subject per engine (counted samples only), then
/// the synthetic hako VMM; ratios against the qemu-microvm peer (not for the synthetic row).
pub fn split_rows(r: &Report) -> Vec<SplitRow> {
    let mut rows = Vec::new();
    for s in r
        .subjects
        .iter()
        .filter(|s| s.category == Category::Microvm)
    {
        let good: Vec<&MicrovmSplit> = s
            .samples
            .iter()
            .filter(|x| !x.warmup && x.error.is_none())
            .filter_map(|x| x.microvm.as_ref())
            .collect();
        let mut engines: Vec<String> = good.iter().map(|x| x.engine_label()).collect();
        engines.sort();
        engines.dedup();
        for e in engines {
            let xs: Vec<&MicrovmSplit> = good
                .iter()
                .copied()
                .filter(|x| x.engine_label() == e)
                .collect();
            rows.push(row(&s.name, e, &xs));
        }
    }
    if let Some(v) = &r.vmm_synthetic {
        if !v.samples.is_empty() {
            let xs: Vec<&MicrovmSplit> = v.samples.iter().collect();
            rows.push(row(SYNTHETIC_NAME, "hako/kvm".into(), &xs));
        }
    }
    let peer = rows
        .iter()
        .find(|x| x.subject == Category::Microvm.baseline())
        .cloned();
    if let Some(p) = peer {
        // Not for the synthetic guest: a stub against a booting Linux compares nothing alike.
        for x in rows.iter_mut().filter(|x| x.subject != SYNTHETIC_NAME) {
            x.boot_to_exit_ratio = ratio(x.boot_to_exit_ms, p.boot_to_exit_ms);
            x.vmm_rss_ratio = ratio(x.vmm_rss_mib, p.vmm_rss_mib);
        }
    }
    rows
}

/// The "microvm create-to-exit split" table (empty when there is nothing to show).
pub fn split_table(r: &Report) -> String {
    let rows = split_rows(r);
    let mut o = String::new();
    let synthetic = r.vmm_synthetic.as_ref();
    if rows.is_empty() && synthetic.and_then(|v| v.error.as_ref()).is_none() {
        return o;
    }
    let f1 = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    let f2 = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    let rx = |v: Option<f64>| v.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        o,
        "\nmicrovm create-to-exit split (medians; ms, VMM RSS = VM process RSS beyond guest RAM, MiB; ratio vs {})",
        Category::Microvm.baseline()
    );
    let _ = writeln!(
        o,
        "{:<19} {:<9} {:>3} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "subject",
        "engine",
        "n",
        "vmm-start",
        "kernel",
        "agent",
        "start→exit",
        "boot→exit",
        "b→e-rat",
        "vmm-rss",
        "rss-rat",
        "guest-rss",
    );
    for x in &rows {
        let _ = writeln!(
            o,
            "{:<19} {:<9} {:>3} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
            x.subject,
            x.engine,
            x.n,
            f1(x.vmm_start_ms),
            f1(x.kernel_boot_ms),
            f1(x.agent_setup_ms),
            f1(x.run_ms),
            f1(x.boot_to_exit_ms),
            rx(x.boot_to_exit_ratio),
            f2(x.vmm_rss_mib),
            rx(x.vmm_rss_ratio),
            f2(x.guest_rss_mib),
        );
    }
    let _ = writeln!(
        o,
        "{:<19} {:<9} {:>3} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8} {:>8}",
        "goal (brief §4)",
        "hw virt",
        "",
        "",
        "",
        "",
        "",
        format!("≤{GOAL_BOOT_TO_EXIT_MS:.0}"),
        "",
        format!("≤{GOAL_VMM_MIB:.0}"),
    );
    let _ = writeln!(
        o,
        "  vmm-start = VM spawn → ready minus the guest's uptime then (VMM start, firmware, the kernel before its clock starts); kernel = guest CLOCK_BOOTTIME at agent/init start; agent = agent start → Ready (guest clock); boot→exit = VM spawn → workload exit (host clock). Under TCG the guest clock is emulated time."
    );
    if let Some(v) = synthetic {
        if !v.samples.is_empty() {
            let _ = writeln!(
                o,
                "  {} = {}; vmm-start = Vmm::new → the guest's first instruction; fork-inherited RSS median {} MiB",
                SYNTHETIC_NAME,
                v.label(),
                f2(median(
                    v.samples
                        .iter()
                        .filter_map(|s| s.fork_rss_kib)
                        .map(|k| k as f64 / 1024.0)
                ))
            );
        }
        if let Some(e) = &v.error {
            let _ = writeln!(o, "  {SYNTHETIC_NAME}: {e}");
        }
    }
    o
}

#[cfg(feature = "vmm")]
mod synthetic {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use hako_microvm::vmm::{self, Input, Output, Stdio, VmConfig, Vmm};

    /// 64-bit stub: announce itself on the 8250, wait for one byte of host input, then exit
    /// through the debug port:
    /// ```text
    ///   mov dx, 0x3f8 ; mov al, 'r' ; out dx, al
    ///   mov dx, 0x3fd
    /// wait: in al, dx ; test al, 1 ; jz wait
    ///   mov dx, 0xf4 ; mov al, 0 ; out dx, al ; hlt
    /// ```
    const STUB: &[u8] = &[
        0x66, 0xba, 0xf8, 0x03, 0xb0, 0x72, 0xee, 0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74,
        0xfb, 0x66, 0xba, 0xf4, 0x00, 0xb0, 0x00, 0xee, 0xf4,
    ];

    fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 into a 2-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptors owned here.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }

    fn wait_readable(fd: &OwnedFd, timeout: Duration) -> Result<(), String> {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            1 => Ok(()),
            0 => Err(format!("no answer from the VMM within {timeout:?}")),
            _ => Err(format!("poll: {}", std::io::Error::last_os_error())),
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

    /// The forked VMM process: build and run the stub VM, jailed and under the seccomp filters
    /// like the backend's hako engine; report (ok, to-first-exit ns, build ns, fork RSS KiB).
    fn child(kernel: &Path, serial_w: OwnedFd, input_r: OwnedFd, result_w: OwnedFd) -> ! {
        hako_microvm::hako_engine::vmm_child_prologue();
        let fork_rss = self_rss_kib();
        let out = Vmm::new(VmConfig {
            memory_mib: GUEST_MIB as u32,
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

    fn one(kernel: &Path, timeout: Duration) -> Result<MicrovmSplit, String> {
        let (serial_r, serial_w) = pipe()?;
        let (input_r, input_w) = pipe()?;
        let (result_r, result_w) = pipe()?;
        // SAFETY: the child only builds and runs a VM (as the backend's hako engine does in its
        // forked child) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            drop((serial_r, input_w, result_r));
            child(kernel, serial_w, input_r, result_w);
        }
        drop((serial_w, input_r, result_w));
        crate::procs::protect(pid);
        let r = (|| {
            wait_readable(&serial_r, timeout)?;
            let mut b = [0u8; 1];
            let mut serial = std::fs::File::from(serial_r);
            serial
                .read_exact(&mut b)
                .map_err(|e| format!("reading the guest's serial output: {e}"))?;
            if b[0] != b'r' {
                return Err(format!("unexpected guest output {:?}", b[0] as char));
            }
            // The guest runs (its first instruction is done) and waits: measure the VMM now.
            let rss = hako_contract::proc::vm_rss(pid, GUEST_MIB << 20);
            std::fs::File::from(input_w)
                .write_all(b"x")
                .map_err(|e| format!("releasing the guest: {e}"))?;
            wait_readable(&result_r, timeout)?;
            let mut res = [0u8; 32];
            std::fs::File::from(result_r)
                .read_exact(&mut res)
                .map_err(|e| format!("the VMM did not report (died?): {e}"))?;
            let v: Vec<u64> = res
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            if v[0] != 1 {
                return Err("the VMM did not end with the stub's debug exit".into());
            }
            Ok(MicrovmSplit {
                engine: "hako".into(),
                accel: "kvm".into(),
                guest_mib: GUEST_MIB,
                vmm_start_ms: (v[1] > 0).then(|| v[1] as f64 / 1e6),
                vmm_build_ms: Some(v[2] as f64 / 1e6),
                fork_rss_kib: Some(v[3]),
                vmm_rss_kib: rss.map(|r| r.vmm_kib),
                guest_rss_kib: rss.map(|r| r.guest_kib),
                ..Default::default()
            })
        })();
        if r.is_err() {
            crate::procs::kill(pid, libc::SIGKILL);
        }
        let waited = crate::procs::wait_pid(pid, timeout);
        crate::procs::unprotect(pid);
        let split = r?;
        match waited {
            Ok(Some((st, _, _))) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(split),
            Ok(Some((st, _, _))) => Err(format!("the VMM process ended with wait status {st:#x}")),
            Ok(None) => Ok(split),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// Run `warmup + runs` synthetic VMs one after another (warm-up ones not kept).
    pub fn measure_synthetic(
        scratch: &Path,
        cache: &Path,
        runs: usize,
        warmup: usize,
        timeout: Duration,
    ) -> SyntheticVmm {
        let mut out = SyntheticVmm::default();
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            out.error = Some(format!("not measured: /dev/kvm cannot be opened ({e})"));
            return out;
        }
        let _ = std::fs::create_dir_all(cache);
        let (runs_linux, why) = hako_microvm::hako_engine::probe(cache);
        out.runs_linux = runs_linux;
        out.probe = why;
        let kernel = scratch.join("hako-vmm-synthetic.elf");
        let elf = vmm::boot::synthetic_elf(STUB, 0x100_0000, 0x100_0000, 0x100_0000, None);
        if let Err(e) = std::fs::write(&kernel, elf) {
            out.error = Some(format!("writing {}: {e}", kernel.display()));
            return out;
        }
        let mut errors = 0;
        for i in 0..warmup + runs {
            if crate::procs::interrupted() {
                break;
            }
            match one(&kernel, timeout) {
                Ok(s) if i >= warmup => out.samples.push(s),
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    out.error = Some(format!("{errors} failed run(s), last: {e}"));
                    if errors >= 3 && out.samples.is_empty() {
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&kernel);
        out
    }
}

#[cfg(feature = "vmm")]
pub use synthetic::measure_synthetic;

/// Without the `vmm` feature hako's VMM is not in this binary.
#[cfg(not(feature = "vmm"))]
pub fn measure_synthetic(
    _scratch: &Path,
    _cache: &Path,
    _runs: usize,
    _warmup: usize,
    _timeout: Duration,
) -> SyntheticVmm {
    SyntheticVmm {
        error: Some(
            "not measured: hako-bench was built without the \"vmm\" feature (hako's VMM)".into(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_lines_parse() {
        assert_eq!(
            parse_uptime_ns("hako-bench-boot uptime_ns=1234567\r"),
            Some(1234567)
        );
        assert_eq!(parse_uptime_ns("hako-bench-exit=0 uptime_ns=99"), Some(99));
        assert_eq!(parse_uptime_ns("hako-bench-boot"), None);
        assert_eq!(parse_uptime_ns("uptime_ns=x"), None);
    }

    #[test]
    fn peer_split_arithmetic() {
        let rss = hako_contract::proc::VmRss {
            vmm_kib: 2048,
            guest_kib: 512,
            guest_mapping_kib: 131072,
        };
        let s = qemu_peer_split(
            Duration::from_millis(1500),
            1_200_000_000,
            Some(Duration::from_millis(1540)),
            Some(rss),
        );
        assert!((s.vmm_start_ms.unwrap() - 300.0).abs() < 1e-9);
        assert_eq!(s.kernel_boot_ms, Some(1200.0));
        assert_eq!(s.agent_setup_ms, None);
        assert!((s.run_ms.unwrap() - 40.0).abs() < 1e-9);
        assert!((s.boot_to_exit_ms().unwrap() - 1540.0).abs() < 1e-9);
        assert_eq!((s.vmm_rss_kib, s.guest_rss_kib), (Some(2048), Some(512)));
        assert_eq!(s.engine_label(), "qemu/tcg");
        // No exit line: no run time, so no boot→exit either.
        let s = qemu_peer_split(Duration::from_millis(10), 5_000_000, None, None);
        assert_eq!(
            (s.run_ms, s.boot_to_exit_ms(), s.vmm_rss_kib),
            (None, None, None)
        );
    }

    #[test]
    fn backend_timings_file_reads_into_the_split() {
        // The fields hako_microvm::timings::Timings writes (extra ones are ignored).
        let d = std::env::temp_dir().join(format!("hako-bench-split-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(TIMINGS_FILE);
        std::fs::write(
            &p,
            r#"{"engine":"qemu","accel":"tcg","guest_mib":128,"host_setup_ms":8.2,"spawn_ms":5.7,
               "ready_ms":1381.6,"agent_start_ns":1003874830,"ready_ns":1112922923,
               "vmm_start_ms":268.7,"kernel_boot_ms":1003.8,"agent_setup_ms":109.0,
               "vmm_rss_kib":76280,"guest_rss_kib":32768,"run_ms":144.8,"vm_exit_ms":15.8}"#,
        )
        .unwrap();
        let s = read_timings(&p).unwrap();
        assert_eq!(s.engine_label(), "qemu/tcg");
        assert_eq!(s.kernel_boot_ms, Some(1003.8));
        assert_eq!(s.vmm_rss_kib, Some(76280));
        assert!((s.boot_to_exit_ms().unwrap() - (1381.6 + 144.8)).abs() < 1e-9);
        std::fs::write(&p, "{not json").unwrap();
        assert!(read_timings(&p).unwrap_err().contains(TIMINGS_FILE));
        std::fs::remove_dir_all(&d).unwrap();
        assert!(read_timings(&p).is_err());
    }
}
