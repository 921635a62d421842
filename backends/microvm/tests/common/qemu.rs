//! Helpers of the tests that boot real guests through the qemu engine: skip reasons, the agent
//! build, a busybox bundle, and `create` with the host process's stdio captured.

use hako_contract::{Backend, CreateRequest, GlobalOptions};
use hako_microvm::MicrovmBackend;
use oci_spec::runtime::Spec;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn skip_reason() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let k = hako_microvm::assets::default_kernel();
    if hako_microvm::assets::check_kernel(&k).is_err() {
        return Some(format!(
            "no guest kernel at {} (run kernels/build.sh)",
            k.display()
        ));
    }
    if hako_microvm::qemu::Qemu::find().is_err() {
        return Some("qemu-system-x86_64 is not installed".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("busybox-static is not installed".into());
    }
    None
}

pub fn build_agent() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/build.sh");
    let out = Command::new(&script)
        .output()
        .expect("running agent/build.sh");
    assert!(
        out.status.success(),
        "agent build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).unwrap();
    std::env::set_var("HAKO_AGENT", path.trim());
}

pub struct Env {
    pub dir: PathBuf,
    pub bundle: PathBuf,
    pub global: GlobalOptions,
}

impl Env {
    pub fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("hako-mvm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("bundle/rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for c in ["sh", "echo", "cat", "uname", "sleep", "id", "ls", "true"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(c)).unwrap();
        }
        std::fs::create_dir_all(dir.join("root")).unwrap();
        let global = GlobalOptions {
            root: dir.join("root"),
            ..Default::default()
        };
        Env {
            bundle: dir.join("bundle"),
            dir,
            global,
        }
    }

    /// A fresh state directory for sandbox `id`, with its start fifo: (state dir, fifo).
    pub fn sandbox_dir(&self, id: &str) -> (PathBuf, PathBuf) {
        let state = self.global.root.join(id);
        std::fs::create_dir_all(&state).unwrap();
        let fifo = state.join("start");
        hako_contract::start_gate::make(&fifo).unwrap();
        (state, fifo)
    }

    /// The create request of sandbox `id` of this bundle (no console, no preserved fds).
    pub fn request<'a>(
        &'a self,
        id: &'a str,
        spec: &'a Spec,
        state: &'a Path,
        fifo: &'a Path,
    ) -> CreateRequest<'a> {
        CreateRequest {
            id,
            bundle: &self.bundle,
            spec,
            state_dir: state,
            start_fifo: fifo,
            console_socket: None,
            preserve_fds: 0,
            no_pivot: false,
            no_new_keyring: false,
            global: &self.global,
        }
    }

    pub fn spec(&self, args: &[&str], ann: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        let mut p = s.process().clone().unwrap();
        p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        p.set_terminal(Some(false));
        p.set_env(Some(vec!["PATH=/bin".into(), "GREETING=hello".into()]));
        s.set_process(Some(p));
        let mut r = s.root().clone().unwrap();
        r.set_path(self.dir.join("bundle/rootfs"));
        s.set_root(Some(r));
        let mut a: std::collections::HashMap<String, String> = ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        a.insert("io.hako.backend".into(), "microvm".into());
        s.set_annotations(Some(a));
        s
    }
}

/// Run `create` with our stdout/stderr temporarily pointing at pipes, so the host process
/// inherits them. Returns the create result and the read ends.
pub fn create_captured(
    b: &MicrovmBackend,
    req: &CreateRequest,
) -> (anyhow::Result<hako_contract::Created>, OwnedFd, OwnedFd) {
    let mk = || {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    };
    let (out_r, out_w) = mk();
    let (err_r, err_w) = mk();
    let saved1 = unsafe { libc::dup(1) };
    let saved2 = unsafe { libc::dup(2) };
    unsafe {
        libc::dup2(out_w.as_raw_fd(), 1);
        libc::dup2(err_w.as_raw_fd(), 2);
    }
    let res = b.create(req);
    unsafe {
        libc::dup2(saved1, 1);
        libc::dup2(saved2, 2);
        libc::close(saved1);
        libc::close(saved2);
    }
    drop(out_w);
    drop(err_w);
    (res, out_r, err_r)
}

pub fn read_all(fd: OwnedFd) -> String {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

pub fn wait(pid: i32) -> i32 {
    let mut st = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    st
}

/// Processes whose command line mentions `needle` (a leftover qemu would).
pub fn procs_mentioning(needle: &str) -> Vec<i32> {
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&c).contains(needle) {
                v.push(pid);
            }
        }
    }
    v
}
