//! Containers without a mount namespace of their own (issue 13), side by side with runc where it
//! is installed: a config that lists no `mount` namespace runs in the caller's mount namespace,
//! and `{"type": "mount", "path": ...}` joins an existing one.
//!
//! runc does its rootfs set-up inside that shared namespace (its mounts stay there, and it
//! pivot_roots or chroots there); hako builds the tree in a private copy and hands the workload a
//! detached clone of it, so each test also checks what the shared namespace looks like before,
//! during and after. runc's half runs in a throwaway mount namespace (`unshare -m`) where it
//! would otherwise change the host's own: it makes `/` a slave mount and leaves its mounts
//! behind.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The pid a runtime's `state` reports for `id`.
fn pid_of(rt: &Hako, id: &str) -> i32 {
    rt.state(id)["pid"].as_i64().unwrap() as i32
}

fn readlink(p: &str) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("readlink {p}: {e}"))
        .to_string_lossy()
        .into_owned()
}

fn mountinfo(of: &str) -> String {
    std::fs::read_to_string(format!("/proc/{of}/mountinfo")).unwrap()
}

/// Mount points (mountinfo's fifth field) at or below `dir`.
fn mounts_below(info: &str, dir: &Path) -> Vec<String> {
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| Path::new(mp).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// The line of `/` itself, propagation fields included.
fn root_line(info: &str) -> String {
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_default()
        .to_string()
}

/// What `ls -a /` prints for a root that is exactly this directory.
fn listing_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut all = vec![".".to_string(), "..".to_string()];
    all.extend(names);
    all
}

/// The busybox bundle without any mount namespace. Its masked and read-only paths are dropped
/// for the side-by-side runs: runc refuses them there ("unable to restrict sys entries without a
/// private MNT namespace"); hako honours them (see `root_readonly_and_masked_paths_hold`).
fn no_mount_ns_bundle(args: &[&str]) -> Bundle {
    let mut b = Bundle::busybox(args);
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "mount");
        let l = c["linux"].as_object_mut().unwrap();
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    });
    b
}

/// Split the probe's output: the `ls -a /` lines, then the lines from the first `mnt:[` on.
fn split_listing(out: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<String> = out.lines().map(str::to_string).collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("mnt:["))
        .unwrap_or_else(|| panic!("no mnt:[ line in {out}"));
    (lines[..at].to_vec(), lines[at..].to_vec())
}

const PROBE: &str = "ls -a /; readlink /proc/self/ns/mnt; cut -d' ' -f6 /proc/self/stat";

#[test]
fn without_a_mount_namespace_the_workload_shares_the_callers_and_sees_only_its_bundle() {
    skip_unless!(need_root());
    let b = no_mount_ns_bundle(&["sh", "-c", PROBE]);
    let want = listing_of(&b.rootfs());
    let host_ns = readlink("/proc/self/ns/mnt");
    let before = mountinfo("self");
    let h = Hako::new();

    // Created: the init has built the whole tree and is back in the caller's namespace.
    let id = unique("nomnt");
    h.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    let pid = pid_of(&h, &id);
    assert_eq!(readlink(&format!("/proc/{pid}/ns/mnt")), host_ns);
    assert_eq!(
        listing_of(Path::new(&format!("/proc/{pid}/root"))),
        want,
        "the created init's root is not the bundle's rootfs"
    );
    let during = mountinfo("self");
    assert_eq!(
        mounts_below(&during, &b.dir),
        Vec::<String>::new(),
        "the container's mounts show in the host's mount namespace"
    );
    assert_eq!(
        root_line(&during),
        root_line(&before),
        "the host's / changed"
    );
    // exec enters the same tree (through the init's /proc/<pid>/root).
    let ls = h.ok(&["exec", &id, "ls", "-a", "/"]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        want,
        "exec's / is not the bundle's rootfs"
    );
    h.ok(&["delete", "--force", &id]);

    let id = unique("nomnt");
    let out = h.ok(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    let (ls, rest) = split_listing(&out);
    assert_eq!(
        ls, want,
        "hako: the workload's / is not the bundle's rootfs"
    );
    assert_eq!(
        rest[0], host_ns,
        "hako: the workload is not in the host's mount namespace"
    );
    // setsid still: the init (pid 1 of its pid namespace) leads its own session.
    assert_eq!(rest[1], "1", "hako: the workload's session: {out}");
    let after = mountinfo("self");
    assert_eq!(mounts_below(&after, &b.dir), Vec::<String>::new());
    assert_eq!(
        root_line(&after),
        root_line(&before),
        "the host's / changed"
    );

    let rc = match Hako::peer("runc") {
        Ok(r) => r,
        Err(why) => return eprintln!("SKIPPED (peer): {why}"),
    };
    let script = format!(
        "readlink /proc/self/ns/mnt; {} --root {} run --bundle {} {} && echo LEFT $(grep -c ' {}' /proc/self/mountinfo)",
        rc.bin.display(),
        rc.root.display(),
        b.dir.display(),
        unique("nomnt"),
        b.rootfs().display()
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    let text = stdout(&o);
    assert!(
        o.status.success() && text.contains("LEFT "),
        "runc failed: {text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (first, rest) = text.split_once('\n').unwrap();
    let (ls, rest) = split_listing(rest);
    assert_eq!(
        ls, want,
        "runc: the workload's / is not the bundle's rootfs"
    );
    assert_eq!(
        rest[0], first,
        "runc: the workload is not in the caller's mount namespace"
    );
    eprintln!(
        "PEER runc: same root and namespace; it left {} mounts below the rootfs in the namespace it shared (hako: none)",
        rest.last().unwrap().trim_start_matches("LEFT ")
    );
}

#[test]
fn without_a_mount_namespace_root_readonly_and_masked_paths_hold() {
    skip_unless!(need_root());
    // runc refuses masked and read-only paths without a mount namespace and silently leaves
    // root.readonly unapplied; hako applies all three in the tree before handing it over.
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "touch /written 2>&1; cat /proc/kcore | wc -c; touch /proc/sys/kernel/hostname 2>&1; echo done",
    ]);
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "mount");
        c["root"]["readonly"] = json!(true);
    });
    let h = Hako::new();
    let out = h.ok(&["run", "--bundle", b.dir.to_str().unwrap(), &unique("ro")]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("Read-only file system"),
        "root.readonly: {out}"
    );
    assert_eq!(lines[1].trim(), "0", "/proc/kcore is not masked: {out}");
    assert!(
        lines[2].contains("Read-only file system"),
        "/proc/sys: {out}"
    );
    assert_eq!(lines[3], "done");
    assert!(!b.rootfs().join("written").exists());
}

/// The static attacker of `tests/security/chroot_escape.c`, or why it cannot be built.
fn chroot_escape() -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/security/chroot_escape.c");
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("chroot-escape"));
    let o = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| format!("gcc is not installed ({e})"))?;
    if !o.status.success() {
        return Err(format!(
            "gcc -static cannot build the attacker here: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(bin)
}

#[test]
fn without_a_mount_namespace_a_chroot_escape_stays_in_the_container() {
    skip_unless!(need_root());
    let attacker = match chroot_escape() {
        Ok(p) => p,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let canary = std::env::temp_dir().join(unique("host-canary"));
    std::fs::write(&canary, "host-canary\n").unwrap();
    let mut b = no_mount_ns_bundle(&["/attack", canary.to_str().unwrap()]);
    std::fs::copy(&attacker, b.rootfs().join("attack")).unwrap();
    b.edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = json!(["CAP_SYS_CHROOT"]);
        }
    });
    let h = Hako::new();
    let out = h.ok(&["run", "--bundle", b.dir.to_str().unwrap(), &unique("esc")]);
    // The climb ends at the top of the container's tree, where the canary's path does not
    // exist (ENOENT); joining its own mount namespace needs CAP_SYS_ADMIN (EPERM).
    assert_eq!(
        out.trim(),
        format!("HELD chroot {} setns {}", libc::ENOENT, libc::EPERM),
        "hako: the workload reached the host's files"
    );
    match Hako::peer("runc") {
        Err(why) => eprintln!("SKIPPED (peer): {why}"),
        Ok(rc) => {
            let script = format!(
                "{} --root {} run --bundle {} {}",
                rc.bin.display(),
                rc.root.display(),
                b.dir.display(),
                unique("esc")
            );
            let o = Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c", &script])
                .stdin(Stdio::null())
                .output()
                .expect("unshare");
            // Printed, not asserted: runc chroots inside the shared namespace, where `..` leads
            // back to the host's tree.
            eprintln!(
                "PEER runc: {} {}",
                stdout(&o).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    let _ = std::fs::remove_file(&canary);
    let _ = std::fs::remove_file(&attacker);
}

#[test]
fn a_config_that_cannot_be_honoured_without_its_own_mount_namespace_is_refused() {
    let h = Hako::new();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Edit, &str); 3] = [
        (
            "new user namespace",
            Box::new(|c: &mut Value| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
                c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
            }),
            "needs a new mount namespace too",
        ),
        (
            "unbindable root",
            Box::new(|c: &mut Value| c["linux"]["rootfsPropagation"] = json!("runbindable")),
            "unbindable",
        ),
        (
            "unbindable mount",
            Box::new(|c: &mut Value| {
                c["mounts"].as_array_mut().unwrap().push(
                    json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["unbindable"]}),
                )
            }),
            "unbindable mount",
        ),
    ];
    for (what, edit, want) in cases {
        let mut b = no_mount_ns_bundle(&["true"]);
        b.edit(|c| edit(c));
        let o = h.run(&["create", "--bundle", b.dir.to_str().unwrap(), &unique("no")]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
    }
}

/// What joining a first container's mount namespace by path did.
struct Joined {
    /// `ls -a /` of the joining container, and what its bundle's rootfs holds.
    listing: Vec<String>,
    want: Vec<String>,
    /// The joiner's mount namespace and the first container's.
    ns: String,
    first_ns: String,
    /// The first container's mount table and `ls -a /`, before and after.
    first_info: (String, String),
    first_ls: (String, Result<String, String>),
}

/// Container A (with a bind of B's bundle at the same path, so that B's rootfs resolves there as
/// on the host) runs `sleep`; container B joins A's mount namespace by path.
/// `first_pid_ns`: A has a pid namespace of its own, so the /proc of the joined namespace is not
/// the host pid namespace's (runc 1.1's set-up then fails: it reads /proc/self there).
fn join_first_containers_namespace(rt: &Hako, first_pid_ns: bool) -> Joined {
    let mut b = Bundle::busybox(&["sh", "-c", PROBE]);
    std::fs::create_dir(b.rootfs().join("only-in-b")).unwrap();
    let mut a = Bundle::busybox(&["sleep", "1000"]);
    let bdir = b.dir.to_str().unwrap().to_string();
    a.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| first_pid_ns || n["type"] != "pid");
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": bdir, "source": bdir, "type": "bind", "options": ["rbind"]}),
        );
    });
    let ida = unique("first");
    rt.ok(&["run", "--detach", "--bundle", a.dir.to_str().unwrap(), &ida]);
    let pid = pid_of(rt, &ida);
    let first_ns = readlink(&format!("/proc/{pid}/ns/mnt"));
    let info_before = mountinfo(&pid.to_string());
    let ls_before = rt.ok(&["exec", &ida, "ls", "-a", "/"]);
    let rootfs = b.rootfs().to_str().unwrap().to_string();
    b.edit(|c| {
        c["root"]["path"] = json!(rootfs);
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "mount");
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "mount", "path": format!("/proc/{pid}/ns/mnt")}));
    });
    let out = rt.ok(&[
        "run",
        "--bundle",
        b.dir.to_str().unwrap(),
        &unique("joiner"),
    ]);
    let (listing, rest) = split_listing(&out);
    let info_after = mountinfo(&pid.to_string());
    let o = rt.run(&["exec", &ida, "ls", "-a", "/"]);
    let ls_after = if o.status.success() {
        Ok(stdout(&o))
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    };
    rt.ok(&["delete", "--force", &ida]);
    Joined {
        listing,
        want: listing_of(&b.rootfs()),
        ns: rest[0].clone(),
        first_ns,
        first_info: (info_before, info_after),
        first_ls: (ls_before, ls_after),
    }
}

#[test]
fn joining_a_first_containers_mount_namespace_by_path() {
    skip_unless!(need_root());
    for first_pid_ns in [false, true] {
        let j = join_first_containers_namespace(&Hako::new(), first_pid_ns);
        let what = format!("hako (first container with a pid namespace: {first_pid_ns})");
        assert_eq!(
            j.listing, j.want,
            "{what}: the joiner's / is not its bundle's rootfs"
        );
        assert!(j.listing.contains(&"only-in-b".to_string()));
        assert_eq!(
            j.ns, j.first_ns,
            "{what}: the joiner is not in the joined namespace"
        );
        // The first container is left exactly as it was.
        assert_eq!(
            j.first_info.0, j.first_info.1,
            "{what}: the joined namespace's mounts changed"
        );
        assert_eq!(Ok(j.first_ls.0.clone()), j.first_ls.1, "{what}");
    }

    let rc = match Hako::peer("runc") {
        Ok(r) => r,
        Err(why) => return eprintln!("SKIPPED (peer): {why}"),
    };
    let j = join_first_containers_namespace(&rc, false);
    assert_eq!(
        j.listing, j.want,
        "runc: the joiner's / is not its bundle's rootfs"
    );
    assert_eq!(
        j.ns, j.first_ns,
        "runc: the joiner is not in the joined namespace"
    );
    // Printed, not asserted: runc sets the rootfs up inside the joined namespace and
    // pivot_roots there, which moves the first container's processes into the joiner's root.
    eprintln!(
        "PEER runc: same root and namespace; the first container's mount table {}, its exec afterwards: {:?}",
        if j.first_info.0 == j.first_info.1 {
            "unchanged"
        } else {
            "changed"
        },
        j.first_ls.1.as_ref().map(|_| "ok")
    );
}
