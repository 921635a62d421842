//! The workloads and bundles the benchmark builds for itself: a busybox-static rootfs with
//! `/bin/true`, `sleep` and `httpd` (and a page in `/www` for it), a static C hello, a static
//! getpid/pread loop, a hello and an idle WASI module (from WAT, through the `wat` crate), and an
//! initramfs for plain qemu.

use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub const HELLO_C: &str = r#"#include <unistd.h>
int main(void) { static const char m[] = "hello\n"; return write(1, m, sizeof m - 1) == sizeof m - 1 ? 0 : 1; }
"#;

/// getpid round trip and a small pread, timed inside the sandbox (ns per call on stdout).
pub const SYSBENCH_C: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000;
    char b[64];
    for (int i = 0; i < 100; i++) syscall(SYS_getpid);
    double t0 = now();
    for (long i = 0; i < n; i++) syscall(SYS_getpid);
    double t1 = now();
    int fd = open("/bin/busybox", O_RDONLY);
    if (fd < 0) { perror("open /bin/busybox"); return 1; }
    double t2 = now();
    for (long i = 0; i < n; i++) if (pread(fd, b, sizeof b, 0) != sizeof b) { perror("pread"); return 1; }
    double t3 = now();
    printf("getpid_ns=%.1f read_ns=%.1f\n", (t1 - t0) / n, (t3 - t2) / n);
    return 0;
}
"#;

/// PID 1 of the plain-qemu guest: print the guest's uptime (CLOCK_BOOTTIME, which starts at the
/// kernel's timekeeping init: the kernel's boot time as the guest sees it), run /bin/true, report
/// with the uptime again, reboot (the kernel is booted with reboot=t and qemu with -no-reboot, so
/// reboot ends qemu). The harness timestamps both lines on qemu's stdout.
pub const INIT_C: &str = r#"#define _GNU_SOURCE
#include <stdio.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long long uptime_ns(void) { struct timespec t; clock_gettime(CLOCK_BOOTTIME, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(void) {
    printf("hako-bench-boot uptime_ns=%lld\n", uptime_ns());
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) { char *a[] = {"/bin/true", 0}; execv(a[0], a); _exit(127); }
    int st = 0;
    waitpid(p, &st, 0);
    printf("hako-bench-exit=%d uptime_ns=%lld\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128, uptime_ns());
    fflush(stdout);
    reboot(RB_AUTOBOOT);
    return 0;
}
"#;

pub const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// A WASI module that sleeps `nanos` with poll_oneoff on the monotonic clock, once, or again and
/// again (`forever`: the idle module for density sleeps an hour at a time).
pub fn sleep_wat(nanos: u64, forever: bool) -> String {
    let call = "(drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))";
    let body = if forever {
        format!("(loop $l\n      {call}\n      (br $l))")
    } else {
        call.to_string()
    };
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 0))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const {nanos}))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    {body}))
"#
    )
}

/// Idle module for density: sleeps an hour at a time.
pub fn sleep_forever_wat() -> String {
    sleep_wat(3_600_000_000_000, true)
}

/// Node's built-in WASI (preview 1) as a wasm CLI: `node run-wasi.js module.wasm`.
pub const NODE_WASI_JS: &str = r#"'use strict';
const fs = require('node:fs');
const { WASI } = require('node:wasi');
const file = process.argv[2];
const wasi = new WASI({ version: 'preview1', args: [file], env: {}, preopens: {} });
const mod = new WebAssembly.Module(fs.readFileSync(file));
const inst = new WebAssembly.Instance(mod, { wasi_snapshot_preview1: wasi.wasiImport });
process.exitCode = wasi.start(inst);
"#;

/// Everything built, or why it could not be.
pub struct Workloads {
    pub dir: PathBuf,
    /// A rootfs with busybox (+ true, sleep, sh) and, when cc worked, hello and sysbench.
    pub busybox_rootfs: Result<PathBuf, String>,
    pub hello: Result<PathBuf, String>,
    pub sysbench: Result<PathBuf, String>,
    pub wasm_rootfs: PathBuf,
    pub hello_wasm: PathBuf,
    pub node_wasi_js: PathBuf,
    pub initramfs: Result<PathBuf, String>,
}

impl Workloads {
    pub fn prepare(dir: &Path) -> Result<Workloads> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin)?;
        let hello = compile_static(&bin, "hello", HELLO_C);
        let sysbench = compile_static(&bin, "sysbench", SYSBENCH_C);
        let init = compile_static(&bin, "init", INIT_C);
        let busybox = find_static_busybox();

        let busybox_rootfs = busybox.clone().and_then(|bb| {
            let r = dir.join("rootfs-busybox");
            make_busybox_rootfs(&r, &bb, hello.as_ref().ok(), sysbench.as_ref().ok())
                .map_err(|e| format!("{e:#}"))?;
            Ok(r)
        });

        let wasm_rootfs = dir.join("rootfs-wasm");
        std::fs::create_dir_all(&wasm_rootfs)?;
        let hello_wasm = wasm_rootfs.join("hello.wasm");
        write_if_changed(
            &hello_wasm,
            &wat::parse_str(HELLO_WAT).context("assembling hello.wat")?,
        )?;
        write_if_changed(
            &wasm_rootfs.join("sleep.wasm"),
            &wat::parse_str(sleep_forever_wat()).context("assembling sleep.wat")?,
        )?;

        let node_wasi_js = dir.join("run-wasi.js");
        write_if_changed(&node_wasi_js, NODE_WASI_JS.as_bytes())?;
        let initramfs = match (&init, &busybox) {
            (Ok(init), Ok(bb)) => {
                let p = dir.join("initramfs.cpio");
                write_initramfs(&p, init, bb)
                    .map_err(|e| format!("{e:#}"))
                    .map(|_| p)
            }
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        Ok(Workloads {
            dir: dir.to_path_buf(),
            busybox_rootfs,
            hello,
            sysbench,
            wasm_rootfs,
            hello_wasm,
            node_wasi_js,
            initramfs,
        })
    }
}

fn write_if_changed(p: &Path, data: &[u8]) -> Result<()> {
    if std::fs::read(p).ok().as_deref() != Some(data) {
        std::fs::write(p, data).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `cc -static -O2` a C source into `dir/name`; reused when the source is unchanged.
pub fn compile_static(dir: &Path, name: &str, src: &str) -> Result<PathBuf, String> {
    let c = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    if std::fs::read_to_string(&c).ok().as_deref() == Some(src) && out.exists() {
        return Ok(out);
    }
    std::fs::write(&c, src).map_err(|e| format!("writing {}: {e}", c.display()))?;
    let cc = crate::procs::which("cc").ok_or("no C compiler (cc) on PATH")?;
    let o = Command::new(cc)
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&c)
        .output()
        .map_err(|e| format!("running cc: {e}"))?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&out);
        return Err(format!(
            "cc -static {name}.c failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(out)
}

/// Debian's busybox-static installs a static /bin/busybox; a dynamic one would need its
/// libraries in the rootfs, so it is refused.
pub fn find_static_busybox() -> Result<PathBuf, String> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = PathBuf::from(p);
        if p.exists() {
            return match is_static_elf(&p) {
                Ok(true) => Ok(p),
                Ok(false) => Err(format!(
                    "{} is dynamically linked (install busybox-static)",
                    p.display()
                )),
                Err(e) => Err(format!("{}: {e}", p.display())),
            };
        }
    }
    Err("busybox not found (apt-get install busybox-static)".into())
}

/// An ELF64 file without a PT_INTERP program header.
pub fn is_static_elf(p: &Path) -> Result<bool, String> {
    let b = std::fs::read(p).map_err(|e| e.to_string())?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return Err("not an ELF64 file".into());
    }
    let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16at(54), u16at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > b.len() {
            return Err("truncated program headers".into());
        }
        if u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn make_busybox_rootfs(
    r: &Path,
    busybox: &Path,
    hello: Option<&PathBuf>,
    sysbench: Option<&PathBuf>,
) -> Result<()> {
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(r.join(d))?;
    }
    copy_if_changed(busybox, &r.join("bin/busybox"))?;
    for applet in ["true", "sh", "sleep", "echo", "httpd"] {
        let l = r.join("bin").join(applet);
        if std::fs::symlink_metadata(&l).is_err() {
            symlink("busybox", &l)?;
        }
    }
    // The page the network workload's busybox httpd serves (see `crate::netbench`).
    std::fs::create_dir_all(r.join("www"))?;
    write_if_changed(&r.join("www/index.html"), crate::netbench::PAGE.as_bytes())?;
    for b in [hello, sysbench].into_iter().flatten() {
        copy_if_changed(b, &r.join("bin").join(b.file_name().unwrap()))?;
    }
    Ok(())
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let data = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_if_changed(to, &data)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// An OCI config.json like `runc spec`'s default (namespaces, capabilities, rlimits,
/// no_new_privileges, masked and read-only paths), minus the cgroup and mqueue mounts.
pub fn oci_config(
    rootfs: &Path,
    args: &[&str],
    cgroups_path: Option<&str>,
    annotations: &[(&str, &str)],
) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut linux = json!({
        "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    });
    if let Some(cg) = cgroups_path {
        linux["cgroupsPath"] = json!(cg);
    }
    let ann: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "hako-bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "annotations": ann,
        "linux": linux
    })
}

/// Write `bundle/config.json`.
pub fn write_bundle(bundle: &Path, config: &Value) -> Result<()> {
    std::fs::create_dir_all(bundle)?;
    let tmp = bundle.join("config.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(config)?)?;
    std::fs::rename(&tmp, bundle.join("config.json"))?;
    Ok(())
}

/// A newc cpio archive with /init, /bin/busybox, /bin/true and /dev/console.
pub fn write_initramfs(out: &Path, init: &Path, busybox: &Path) -> Result<()> {
    let mut w = Vec::new();
    let mut ino = 1;
    let mut entry = |name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| {
        cpio_entry(&mut w, ino, name, mode, rdev, data);
        ino += 1;
    };
    entry("dev", 0o040755, (0, 0), &[]);
    entry("dev/console", 0o020600, (5, 1), &[]);
    entry("bin", 0o040755, (0, 0), &[]);
    entry("proc", 0o040755, (0, 0), &[]);
    entry("init", 0o100755, (0, 0), &std::fs::read(init)?);
    entry("bin/busybox", 0o100755, (0, 0), &std::fs::read(busybox)?);
    entry("bin/true", 0o120777, (0, 0), b"busybox");
    entry("TRAILER!!!", 0, (0, 0), &[]);
    let mut f =
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    f.write_all(&w)?;
    Ok(())
}

fn cpio_entry(w: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let namesize = name.len() + 1;
    let hdr = format!(
        "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len(),
        0,
        0,
        rdev.0,
        rdev.1,
        namesize,
        0
    );
    w.extend_from_slice(hdr.as_bytes());
    w.extend_from_slice(name.as_bytes());
    w.push(0);
    while !w.len().is_multiple_of(4) {
        w.push(0);
    }
    w.extend_from_slice(data);
    while !w.len().is_multiple_of(4) {
        w.push(0);
    }
}

/// The guest kernel for the microvm peer: `--kernel`, else the microvm helper's cache.
pub fn find_kernel(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(k) = explicit {
        return if k.is_file() {
            Ok(k.to_path_buf())
        } else {
            Err(format!("kernel {} not found", k.display()))
        };
    }
    let cache = Path::new("/var/cache/hako/kernels");
    let direct = cache.join("vmlinux");
    if direct.is_file() {
        return Ok(direct);
    }
    // <cache>/<config hash>/vmlinux or <cache>/vmlinux-<hash>: take the newest.
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(cache) {
        for e in rd.flatten() {
            let p = e.path();
            let cand = if p.is_dir() {
                p.join("vmlinux")
            } else {
                p.clone()
            };
            let fname = cand.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if cand.is_file() && fname.starts_with("vmlinux") {
                let t = std::fs::metadata(&cand)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                found.push((t, cand));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, p)| p).ok_or_else(|| {
        "no guest kernel: /var/cache/hako/kernels/vmlinux not built yet (kernels/ build script), or pass --kernel".to_string()
    })
}

#[allow(dead_code)]
pub fn bail_if_missing(p: &Path) -> Result<()> {
    if !p.exists() {
        bail!("{} missing", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_init_compiles_and_prints_both_marks() {
        // Compiled only: running it outside a guest would reboot the host.
        let d = tempfile::tempdir().unwrap();
        match compile_static(d.path(), "init", INIT_C) {
            Ok(p) => assert!(is_static_elf(&p).unwrap()),
            Err(e) => eprintln!("no static C toolchain here: {e}"),
        }
        assert!(INIT_C.contains(&format!("{} uptime_ns=", crate::microvm::BOOT_MARK)));
        assert!(INIT_C.contains("hako-bench-exit=%d uptime_ns="));
    }

    #[test]
    fn wat_modules_assemble_to_wasm() {
        for src in [HELLO_WAT.to_string(), sleep_forever_wat()] {
            let b = wat::parse_str(src).unwrap();
            assert_eq!(&b[..4], b"\0asm");
        }
    }

    #[test]
    fn cpio_is_newc_and_aligned() {
        let mut w = Vec::new();
        cpio_entry(&mut w, 1, "init", 0o100755, (0, 0), b"abc");
        assert_eq!(&w[..6], b"070701");
        assert_eq!(w.len() % 4, 0);
        // header 110 bytes + "init\0" padded to 116, then 3 bytes padded to 4.
        assert_eq!(w.len(), 116 + 4);
        assert_eq!(&w[116..119], b"abc");
    }

    #[test]
    fn config_carries_args_cgroup_and_annotations() {
        let c = oci_config(
            Path::new("/r"),
            &["/bin/true"],
            Some("/hako-bench/x/c"),
            &[("io.hako.backend", "wasm")],
        );
        assert_eq!(c["process"]["args"][0], "/bin/true");
        assert_eq!(c["linux"]["cgroupsPath"], "/hako-bench/x/c");
        assert_eq!(c["annotations"]["io.hako.backend"], "wasm");
        assert_eq!(c["root"]["path"], "/r");
    }

    #[test]
    fn static_elf_detection() {
        if let Ok(bb) = find_static_busybox() {
            assert!(is_static_elf(&bb).unwrap());
        }
        // /bin/sh on Debian is dash, dynamically linked.
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        assert!(!is_static_elf(&sh).unwrap());
    }
}
