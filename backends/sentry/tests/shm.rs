//! `/dev/shm` (issue 12): a tmpfs of the sandbox's own (nosuid, nodev), or the spec's mount there.
//!
//! Run: `cargo test -p hako-sentry --test shm` (as root; skips with a reason otherwise).

mod common;

use serde_json::json;

#[test]
fn dev_shm_is_a_tmpfs_of_the_sandbox() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let script = "echo shared > /dev/shm/f && cat /dev/shm/f && ls /dev | grep -x shm && \
                  stat -f -c %T /dev/shm && stat -c %a /dev/shm && ls -a /dev/shm/.. | grep -x null";
    let spec = b.spec(&["sh", "-c", script], json!({}));
    let mut mounts = String::new();
    let (code, out, err) = b.run_spec_with(
        &spec,
        |pid, _| {
            // The sentry's mount namespace, from the host: the tmpfs and its flags.
            mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        },
        |_| {},
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(out, "shared\nshm\ntmpfs\n1777\nnull\n", "stderr: {err}");
    let line = mounts
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|m| m.ends_with("/merged/dev/shm"))
        })
        .unwrap_or_else(|| panic!("no /dev/shm mount in the sentry's namespace:\n{mounts}"));
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    // Nothing of it lands in the bundle's rootfs.
    assert!(!b.rootfs().join("dev/shm/f").exists());
}

#[test]
fn the_specs_dev_shm_mount_is_used() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let shared = b.dir.path().join("pod-shm");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("from-the-pod"), "pod\n").unwrap();
    let spec = b.spec(
        &["sh", "-c", "cat /dev/shm/from-the-pod && echo back > /dev/shm/from-the-sandbox"],
        json!({"mounts": [{"destination": "/dev/shm", "type": "bind", "source": shared, "options": ["rbind", "nosuid", "nodev"]}]}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!((code, out.as_str()), (0, "pod\n"), "stderr: {err}");
    assert_eq!(
        std::fs::read_to_string(shared.join("from-the-sandbox")).unwrap(),
        "back\n"
    );
}
