//! The benchmark's data: what one run of a subject measured, the report that gathers them (and
//! its JSON form), and the microvm split. Only types and their accessors live here; running
//! (`subjects`, `microvm`), summarizing and printing (`report`, `plot`) use them.

use serde::{Deserialize, Serialize};

use crate::stats::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Container,
    Sentry,
    Microvm,
    Wasm,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Container => "container",
            Category::Sentry => "sentry",
            Category::Microvm => "microvm",
            Category::Wasm => "wasm",
        }
    }
    /// The subject every other subject of the category is compared with.
    pub fn baseline(self) -> &'static str {
        match self {
            Category::Container => "crun",
            Category::Sentry => "runsc",
            Category::Microvm => "qemu-microvm",
            Category::Wasm => "hako-container-hello",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Backend,
    Peer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub name: String,
    pub kind: Kind,
    pub category: Category,
    pub reason: String,
}

/// One create→start→exit→delete (or one direct run).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Sample {
    pub iteration: usize,
    pub warmup: bool,
    pub total_ms: f64,
    pub create_ms: Option<f64>,
    pub start_ms: Option<f64>,
    pub wait_ms: Option<f64>,
    pub delete_ms: Option<f64>,
    /// Largest ru_maxrss among the runtime CLI processes (create, start, delete), KiB.
    pub runtime_maxrss_kb: u64,
    /// ru_maxrss of the sandbox's host process (reaped by us as subreaper), KiB.
    pub sandbox_maxrss_kb: Option<u64>,
    /// User + system CPU time of the runtime CLI processes (and what they reaped), ms.
    pub runtime_cpu_ms: f64,
    /// User + system CPU time of the sandbox's host process, ms (OCI subjects).
    pub sandbox_cpu_ms: Option<f64>,
    /// memory cgroup peak of the whole tree, KiB.
    pub cgroup_peak_kb: Option<u64>,
    pub error: Option<String>,
    /// microvm subjects: where the create-to-exit time went and the VMM's memory beyond guest
    /// RAM (see [`crate::microvm`]).
    #[serde(default)]
    pub microvm: Option<MicrovmSplit>,
}

impl Sample {
    /// CPU time of everything we reaped for this sample: far steadier than wall time on a
    /// loaded machine.
    pub fn cpu_ms(&self) -> f64 {
        self.runtime_cpu_ms + self.sandbox_cpu_ms.unwrap_or(0.0)
    }

    /// The memory figure compared across subjects: the cgroup peak of the whole tree when
    /// known, else the larger of the runtime's and the sandbox's peak RSS.
    pub fn peak_kb(&self) -> u64 {
        self.cgroup_peak_kb.unwrap_or_else(|| {
            self.runtime_maxrss_kb
                .max(self.sandbox_maxrss_kb.unwrap_or(0))
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Density {
    pub requested: usize,
    pub started: usize,
    pub total_ms: f64,
    /// Memory charged to the cgroup holding all of them once they are all idle, KiB.
    pub cgroup_usage_kb: Option<u64>,
    /// microVMs: the guest-RAM mappings of all their VM processes once idle, Rss and Pss
    /// summed, KiB (Pss below Rss: pages shared, as a template's RAM file is by its copies).
    #[serde(default)]
    pub guest_rss_kb: Option<u64>,
    #[serde(default)]
    pub guest_pss_kb: Option<u64>,
    /// Killing, waiting for and deleting all of them.
    pub cleanup_ms: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyscallSample {
    pub getpid_ns: f64,
    pub read_ns: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub mem_total_mib: u64,
    pub cgroup_memory: String,
}

impl Machine {
    pub fn detect(cgroup_memory: String) -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        Machine {
            kernel,
            cpu,
            cpus,
            mem_total_mib,
            cgroup_memory,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Settings {
    pub runs: usize,
    pub warmup: usize,
    pub density: usize,
    pub density_vm: usize,
    pub syscall_runs: usize,
    pub syscall_loops: u64,
    #[serde(default)]
    pub net_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubjectReport {
    pub name: String,
    pub kind: Kind,
    pub category: Category,
    pub workload: String,
    pub version: Option<String>,
    /// The subject this one's ratios are against.
    pub baseline: String,
    /// The probe run: for hako-wasm-cold and a fresh cache this is a cold start.
    pub first_run_ms: Option<f64>,
    pub samples: Vec<Sample>,
    /// Over non-warm-up samples without error.
    pub startup_ms: Option<Stats>,
    /// CPU time (user + system) of runtime and sandbox per run.
    pub cpu_ms: Option<Stats>,
    pub runtime_rss_mib: Option<Stats>,
    pub sandbox_rss_mib: Option<Stats>,
    pub cgroup_peak_mib: Option<Stats>,
    /// The memory figure compared (cgroup peak, else max(runtime, sandbox) RSS).
    pub peak_mib: Option<Stats>,
    pub startup_ratio: Option<f64>,
    pub cpu_ratio: Option<f64>,
    pub memory_ratio: Option<f64>,
    pub failed_samples: usize,
    pub syscall: Vec<SyscallSample>,
    pub getpid_ns: Option<Stats>,
    pub read_ns: Option<Stats>,
    pub getpid_ratio: Option<f64>,
    pub density: Option<Density>,
    pub density_note: Option<String>,
    /// Set when the subject failed three runs in a row and was not run any more.
    pub gave_up: Option<String>,
    /// Traps from several threads, and the CPU while idle (see `crate::trapcost`).
    #[serde(default)]
    pub trap: Option<crate::trapcost::TrapReport>,
    /// Requests per second of an HTTP server in the sandbox (see `crate::netbench`).
    #[serde(default)]
    pub net: Option<crate::netbench::NetReport>,
    /// find | xargs cat and dd | sha256sum (see `crate::shellwork`).
    #[serde(default)]
    pub shell: Option<crate::shellwork::ShellReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub command: Vec<String>,
    pub started_unix: u64,
    pub duration_s: f64,
    pub machine: Machine,
    pub settings: Settings,
    pub subjects: Vec<SubjectReport>,
    pub skipped: Vec<Skipped>,
    /// hako's own VMM with a synthetic guest (when the microvm backend was asked for).
    #[serde(default)]
    pub vmm_synthetic: Option<SyntheticVmm>,
    /// The microvm create-to-exit split, summarized (medians per subject and engine).
    #[serde(default)]
    pub microvm_split: Vec<SplitRow>,
    /// What the bare interception mechanisms cost on this machine, measured once when sentry
    /// subjects ran the syscall loops (see `crate::floor`).
    #[serde(default)]
    pub trap_floor: Option<crate::floor::TrapFloor>,
}

/// One sample's split. Times in ms (host clock unless said otherwise), memory in KiB. Read from
/// the backend's timings file, whose field names these are (unknown fields are ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MicrovmSplit {
    /// `qemu` or `hako`.
    pub engine: String,
    /// `snapshot` (restored from a template) or `cold`; empty for the peer and older reports.
    #[serde(default)]
    pub boot: String,
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
        match self.boot.as_str() {
            "snapshot" => format!("{}/{}+snap", self.engine, self.accel),
            _ => format!("{}/{}", self.engine, self.accel),
        }
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
    /// The same guest restored from a snapshot (see `crate::vmmrestore`).
    pub restore: Option<crate::vmmrestore::VmmRestore>,
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
