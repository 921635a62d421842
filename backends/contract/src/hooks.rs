//! Running OCI hooks (runtime-spec "POSIX-platform Hooks"): each hook is a program with its
//! args and env, gets the container state as JSON on stdin, and fails the operation when it exits
//! non-zero or outlives its `timeout`.

use crate::state::OciState;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `hooks` in order; the first failure stops the rest and is returned.
pub fn run(kind: &str, hooks: &[Hook], state: &OciState) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state)?;
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, &json).with_context(|| format!("{kind} hook #{i} ({})", h.path().display()))?;
    }
    Ok(())
}

fn run_one(h: &Hook, state_json: &[u8]) -> Result<()> {
    let mut cmd = Command::new(h.path());
    match h.args() {
        // args[0] is the program's own name, as execve takes it.
        Some(args) if !args.is_empty() => {
            cmd.arg0(&args[0]).args(&args[1..]);
        }
        _ => {}
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("cannot start hook")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("hook failed: {status}");
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                let _ = child.kill();
                let _ = child.wait();
                bail!("hook timed out after {}s", h.timeout().unwrap_or(0));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Status;
    use oci_spec::runtime::HookBuilder;

    fn state() -> OciState {
        OciState {
            oci_version: "1.2.0".into(),
            id: "x".into(),
            status: Status::Created,
            pid: Some(1),
            bundle: "/b".into(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn hook_gets_state_on_stdin_and_failures_stop() {
        let out = std::env::temp_dir().join(format!("hako-hook-{}", std::process::id()));
        let script = format!("cat > {}", out.display());
        let ok = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".into(), "-c".into(), script])
            .build()
            .unwrap();
        run("prestart", &[ok], &state()).unwrap();
        let got: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(got["id"], "x");
        assert_eq!(got["status"], "created");
        std::fs::remove_file(&out).unwrap();

        let bad = HookBuilder::default().path("/bin/false").build().unwrap();
        let e = run("poststart", &[bad], &state()).unwrap_err();
        assert!(format!("{e:#}").contains("poststart hook #0"), "{e:#}");

        let slow = HookBuilder::default()
            .path("/bin/sleep")
            .args(vec!["sleep".into(), "5".into()])
            .timeout(1)
            .build()
            .unwrap();
        let e = run("createRuntime", &[slow], &state()).unwrap_err();
        assert!(format!("{e:#}").contains("timed out"), "{e:#}");
    }
}
