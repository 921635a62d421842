//! hako side by side with runc where the runtime-spec or runc's behaviour is what engines and
//! validation suites check (issue 13): the state's annotations, `memory.kernel`, a bare command
//! with no PATH, output into a closed pipe, and the error of a create that fails inside the
//! container. Each test runs the same bundle or command on hako and, where runc is installed,
//! on runc in the same run, and asserts both behave alike (the runc half is skipped with a
//! printed reason when runc is missing).

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;

/// runc, or None with the reason printed.
fn runc() -> Option<Hako> {
    match Hako::peer("runc") {
        Ok(r) => Some(r),
        Err(why) => {
            eprintln!("SKIPPED (runc half): {why}");
            None
        }
    }
}

fn name(rt: &Hako) -> String {
    rt.bin.file_name().unwrap().to_string_lossy().into_owned()
}

/// Hooks that append the state they read on stdin to `log`, one JSON line each: the ones that
/// run on the host, and createContainer (which sees the host's paths from inside the
/// container's mount namespace, before pivot_root, on runc and on hako).
fn state_hooks(log: &Path) -> Value {
    let hook = |kind: &str| json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("read -r s; echo \"{kind} $s\" >> {}", log.display())]}]);
    json!({
        "createRuntime": hook("createRuntime"),
        "createContainer": hook("createContainer"),
        "poststart": hook("poststart"),
        "poststop": hook("poststop"),
    })
}

/// The runtime-spec's State fields; what a hook may be given.
const STATE_FIELDS: &[&str] = &["ociVersion", "id", "status", "pid", "bundle", "annotations"];

/// create, state, start, wait for stopped, delete; returns `state` as it was when created and
/// every (hook kind, state) the hooks logged.
fn lifecycle_with_hooks(rt: &Hako, b: &Bundle, log: &Path) -> (Value, Vec<(String, Value)>) {
    let _ = std::fs::remove_file(log);
    let id = unique("conf-state");
    rt.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    let st = rt.state(&id);
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let hooks = text
        .lines()
        .map(|l| {
            let (k, s) = l.split_once(' ').unwrap();
            (k.to_string(), serde_json::from_str(s).unwrap())
        })
        .collect();
    (st, hooks)
}

/// The annotations of a state, `{}` when the field is left out (runc omits it when empty).
fn annotations(st: &Value) -> Value {
    st.get("annotations").cloned().unwrap_or(json!({}))
}

/// The state's annotations are config.json's and nothing else, in `state` and on every hook's
/// stdin; hako names its backend in a field of its own. runc: the same annotations.
#[test]
fn state_annotations_are_exactly_config_jsons() {
    skip_unless!(need_root());
    let mut b = Bundle::busybox(&["true"]);
    let log = b.dir.join("hooks.log");
    for ann in [
        json!({"org.example.conformance": "yes", "x": ""}),
        json!({}),
    ] {
        b.edit(|c| {
            c["annotations"] = ann.clone();
            c["hooks"] = state_hooks(&log);
        });
        let mut runtimes = vec![Hako::new()];
        runtimes.extend(runc());
        for rt in &runtimes {
            let who = name(rt);
            let (st, hooks) = lifecycle_with_hooks(rt, &b, &log);
            assert_eq!(annotations(&st), ann, "{who}: state {st}");
            if who == "hako" {
                assert_eq!(st["backend"], "container", "{st}");
            }
            let kinds: Vec<&str> = hooks.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                kinds,
                ["createRuntime", "createContainer", "poststart", "poststop"],
                "{who}"
            );
            for (kind, hs) in &hooks {
                assert_eq!(annotations(hs), ann, "{who}: {kind} hook got {hs}");
                for k in hs.as_object().unwrap().keys() {
                    assert!(
                        STATE_FIELDS.contains(&k.as_str()),
                        "{who}: {kind} hook got a field the spec's State has not: {k} in {hs}"
                    );
                }
            }
        }
    }
}
