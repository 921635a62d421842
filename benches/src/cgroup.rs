//! A fresh memory cgroup per sample, so the peak of the whole tree (runtime, shims, sandbox)
//! can be read afterwards: v1 `memory.max_usage_in_bytes`, or v2 `memory.peak`.
//!
//! Each run of `hako bench` has its own sub-tree, `/hako-bench/run-<pid>-<start time>`, so runs
//! at the same time never touch each other's cgroups (the cleanup SIGKILLs what it finds). Each
//! sample gets `<run>/<name>` in the memory hierarchy; the runtimes under test are started
//! inside it and told to put the container at `cgroupsPath=/hako-bench/<run>/<name>/<child>`,
//! so the container's own cgroups nest below it (v1 memory is always hierarchical on current
//! kernels). Afterwards everything below `<run>/<name>` is removed in every mounted hierarchy,
//! since runtimes create the path in all of them; at the end of the run, the run's sub-tree.
//! A run's sub-tree left by a run that died is removed by the next run, once no process with
//! that pid and start time is alive.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub const TOP: &str = "hako-bench";

/// This run's sub-tree below [`TOP`]: `run-<pid>-<start time>` (the pair names one process).
pub fn run_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let pid = std::process::id() as i32;
        let start = hako_contract::proc::start_time(pid).unwrap_or(0);
        format!("run-{pid}-{start}")
    })
}

/// The harness (pid, start time) a run sub-tree's name holds.
fn run_owner(name: &str) -> Option<(i32, u64)> {
    let (pid, start) = name.strip_prefix("run-")?.split_once('-')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

#[derive(Debug, Clone)]
pub enum Memory {
    V1(PathBuf),
    V2(PathBuf),
}

/// Where the memory controller lives, if anywhere usable.
pub fn detect() -> Result<Memory, String> {
    let mounts = hierarchies();
    for (fstype, opts, mnt) in &mounts {
        if fstype == "cgroup" && opts.split(',').any(|o| o == "memory") {
            return Ok(Memory::V1(mnt.clone()));
        }
    }
    for (fstype, _, mnt) in &mounts {
        if fstype == "cgroup2" {
            let c = std::fs::read_to_string(mnt.join("cgroup.controllers")).unwrap_or_default();
            if c.split_whitespace().any(|x| x == "memory") {
                return Ok(Memory::V2(mnt.clone()));
            }
        }
    }
    Err("no cgroup memory controller mounted".into())
}

/// (fstype, super options, mount point) of every cgroup mount.
fn hierarchies() -> Vec<(String, String, PathBuf)> {
    let s = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v = Vec::new();
    for line in s.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split_whitespace().collect();
        let post: Vec<&str> = post.split_whitespace().collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        if post[0] == "cgroup" || post[0] == "cgroup2" {
            v.push((
                post[0].to_string(),
                post[2].to_string(),
                PathBuf::from(pre[4]),
            ));
        }
    }
    v
}

pub struct SampleCgroup {
    name: String,
    mem: Memory,
    dir: PathBuf,
}

impl SampleCgroup {
    pub fn create(mem: &Memory, name: &str) -> Result<Self> {
        let root = match mem {
            Memory::V1(p) | Memory::V2(p) => p,
        };
        let top = root.join(TOP);
        let run = top.join(run_name());
        if let Memory::V2(_) = mem {
            // Another run's end may remove an empty /hako-bench between the two steps: again.
            if std::fs::create_dir_all(&run).is_err() {
                std::fs::create_dir_all(&run).ok();
            }
            // Delegate memory to the children of /hako-bench and of this run's sub-tree.
            std::fs::write(root.join("cgroup.subtree_control"), "+memory").ok();
            std::fs::write(top.join("cgroup.subtree_control"), "+memory").ok();
            std::fs::write(run.join("cgroup.subtree_control"), "+memory").ok();
        }
        let dir = run.join(name);
        if dir.exists() {
            destroy_named(name);
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating cgroup {}", dir.display()))?;
        Ok(SampleCgroup {
            name: name.to_string(),
            mem: mem.clone(),
            dir,
        })
    }

    /// The `cgroup.procs` file a child writes itself into.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// `cgroupsPath` for a container nested in this sample's cgroup.
    pub fn cgroups_path(&self, child: &str) -> String {
        format!("/{TOP}/{}/{}/{child}", run_name(), self.name)
    }

    /// Peak memory charged to the whole tree since creation, bytes.
    pub fn peak_bytes(&self) -> Option<u64> {
        let f = match self.mem {
            Memory::V1(_) => "memory.max_usage_in_bytes",
            Memory::V2(_) => "memory.peak",
        };
        read_u64(&self.dir.join(f))
    }

    /// Memory charged now, bytes.
    pub fn usage_bytes(&self) -> Option<u64> {
        let f = match self.mem {
            Memory::V1(_) => "memory.usage_in_bytes",
            Memory::V2(_) => "memory.current",
        };
        read_u64(&self.dir.join(f))
    }

    pub fn destroy(self) {
        destroy_named(&self.name);
    }
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Kill whatever is left below `/hako-bench/<run>/<name>` (this run's) in every hierarchy and
/// remove the dirs.
pub fn destroy_named(name: &str) {
    for (_, _, mnt) in hierarchies() {
        let dir = mnt.join(TOP).join(run_name()).join(name);
        if dir.exists() {
            let _ = remove_tree(&dir);
        }
    }
}

/// Remove what an interrupted earlier run left: a `/hako-bench/run-<pid>-<start>` sub-tree
/// whose harness (that pid with that start time) is gone, and the samples of the layout before
/// run sub-trees, `/hako-bench/hb<pid>-*`, whose harness `<pid>` is gone. A live run's
/// sub-tree is never touched.
pub fn remove_stale() {
    for (_, _, mnt) in hierarchies() {
        let Ok(rd) = std::fs::read_dir(mnt.join(TOP)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some((pid, start)) = run_owner(&name) {
                if e.path().is_dir() && !hako_contract::proc::is_alive(pid, Some(start)) {
                    let _ = remove_tree(&e.path());
                }
                continue;
            }
            let Some(pid) = name
                .strip_prefix("hb")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if e.path().is_dir() && !crate::procs::alive(pid) {
                destroy_named(&name);
            }
        }
    }
}

/// Remove this run's sub-tree, and `/hako-bench` itself where it is then empty (end of a run:
/// another run's sub-tree keeps it).
pub fn remove_top() {
    for (_, _, mnt) in hierarchies() {
        let run = mnt.join(TOP).join(run_name());
        if run.exists() {
            let _ = remove_tree(&run);
        }
        let _ = std::fs::remove_dir(mnt.join(TOP));
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs);
    // Deepest first.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for attempt in 0..50 {
        let mut left = false;
        for d in &dirs {
            if !d.exists() {
                continue;
            }
            if let Ok(p) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in p.split_whitespace().filter_map(|x| x.parse::<i32>().ok()) {
                    crate::procs::kill(pid, libc::SIGKILL);
                }
            }
            if std::fs::remove_dir(d).is_err() {
                left = true;
            }
        }
        if !left {
            return Ok(());
        }
        crate::procs::reap_zombies();
        std::thread::sleep(Duration::from_millis(10 + attempt * 5));
    }
    bail!("could not remove {}", dir.display())
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_sub_tree_is_named_by_its_harness() {
        let name = run_name();
        let (pid, start) = run_owner(name).unwrap();
        assert_eq!(pid, std::process::id() as i32);
        assert!(hako_contract::proc::is_alive(pid, Some(start)), "{name}");
        // Ours is alive; a name with another start time is another (gone) process.
        assert!(!hako_contract::proc::is_alive(pid, Some(start + 1)));
        assert_eq!(run_owner("run-12-345"), Some((12, 345)));
        assert_eq!(run_owner("hb12-x"), None);
        assert_eq!(run_owner("run-x-1"), None);
    }

    #[test]
    fn samples_nest_below_this_runs_sub_tree() {
        let c = SampleCgroup {
            name: "hb1-s".into(),
            mem: Memory::V2(PathBuf::from("/nonexistent")),
            dir: PathBuf::new(),
        };
        assert_eq!(
            c.cgroups_path("ctr"),
            format!("/{TOP}/{}/hb1-s/ctr", run_name())
        );
    }
}
