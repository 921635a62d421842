//! The interception platform a sandbox gets: `io.hako.sentry.platform`, else
//! `HAKO_SENTRY_PLATFORM` (how `scripts/test` runs this suite on each platform), else samecpu
//! where the kernel has it; the platform in use is in the stats account. And a workload whose
//! threads and processes trap at once, on every platform.
//!
//! Run: `cargo test -p hako-sentry --test platform` (as root; skips with a reason otherwise).

mod common;

use hako_sentry::platform::kind::{Kind, ENV};
use serde_json::json;

/// The platform the stats account of a run of `sh -c true` names, with these annotations.
fn platform_of(b: &common::Bundle, annotations: serde_json::Value) -> String {
    let mut a = annotations;
    a["io.hako.sentry.stats"] = json!("true");
    let spec = b.spec(&["sh", "-c", "true"], json!({ "annotations": a }));
    let mut stats = Vec::new();
    let (code, _, err) = b.run_spec_with(
        &spec,
        |_, _| {},
        |state| stats = std::fs::read(state.join("sentry/stats.json")).unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    v["platform"].as_str().unwrap().to_string()
}

#[test]
fn the_annotation_the_environment_and_the_default_choose() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    // The default, or what the environment of this test run asks for.
    let expected = Kind::choose(None).unwrap();
    match std::env::var(ENV) {
        Ok(v) if !v.is_empty() => assert_eq!(expected.name(), v),
        _ => assert_eq!(expected, Kind::best()),
    }
    assert_eq!(platform_of(&b, json!({})), expected.name());
    // The annotation wins over the environment.
    for k in ["hybrid", "ptrace"] {
        assert_eq!(platform_of(&b, json!({"io.hako.sentry.platform": k})), k);
    }
    if Kind::best() == Kind::SameCpu {
        assert_eq!(
            platform_of(&b, json!({"io.hako.sentry.platform": "samecpu"})),
            "samecpu"
        );
    }
    // An unknown one is refused at create, not run on some other platform.
    let e = b.create_error(&b.spec(
        &["true"],
        json!({"annotations": {"io.hako.sentry.platform": "systrap"}}),
    ));
    assert!(
        e.contains("io.hako.sentry.platform") && e.contains("unknown sentry platform \"systrap\""),
        "{e}"
    );
}

/// Four processes of four threads each, every thread making trapped calls at once
/// (`attacks/trap_storm.c`), on each platform: every answer is right.
#[test]
fn many_tasks_trapping_at_once_on_each_platform() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if common::compile_attack("trap_storm", &b.rootfs().join("storm")).is_none() {
        return;
    }
    std::fs::write(b.rootfs().join("etc/word"), "w\n").unwrap();
    let mut kinds = vec!["hybrid", "ptrace"];
    if Kind::best() == Kind::SameCpu {
        kinds.push("samecpu");
    }
    for k in kinds {
        let spec = b.spec(
            &["/storm"],
            json!({"annotations": {"io.hako.sentry.platform": k}}),
        );
        let (code, out, err) = b.run_spec(&spec);
        assert_eq!((code, out.as_str()), (0, "storm ok\n"), "{k}: {err}");
    }
}

/// A process that SIGKILLs itself ends alone, on every platform: the sentry answering the kill
/// finds the task gone (on the ptrace platform that once ended the whole sandbox).
#[test]
fn a_process_killing_itself_ends_alone_on_each_platform() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let mut kinds = vec!["hybrid", "ptrace"];
    if Kind::best() == Kind::SameCpu {
        kinds.push("samecpu");
    }
    for k in kinds {
        let spec = b.spec(
            &["sh", "-c", "sh -c 'kill -9 $$'; echo \"alive $?\""],
            json!({"annotations": {"io.hako.sentry.platform": k}}),
        );
        let (code, out, err) = b.run_spec(&spec);
        assert_eq!((code, out.as_str()), (0, "alive 137\n"), "{k}: {err}");
    }
}

/// On the notification platforms the sentry waits for traps in RECV itself while a waker thread
/// watches its other event sources (platform/waker.rs). None of them may starve, whether the
/// workload traps without pause or not at all: a poll parked on a pipe that another process
/// writes, a poll with a deadline alone, a child's fork, execve and exit, with 0, 1 and 2
/// threads looping on getppid meanwhile (`programs/trap_events.c`), on every platform.
#[test]
fn no_event_source_starves_while_tasks_trap() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if common::compile_c("programs/trap_events.c", &b.rootfs().join("trap_events")).is_none() {
        return;
    }
    common::same_as_linux_everywhere(&b, &["/trap_events"], "events ok\n", json!({}), json!({}));
}

/// Start `/two <init...>` (`programs/two_listeners.c`) on platform `name`, run `execs` one after
/// the other through `hako exec` while it runs (each must exit 0), and check init ends printing
/// `want`; a hang is killed after `common::HANG` and fails.
fn init_and_execs(b: &common::Bundle, name: &str, init: &[&str], execs: &[&[&str]], want: &str) {
    let spec = b.spec(
        init,
        json!({"annotations": {hako_sentry::PLATFORM_ANNOTATION: name}}),
    );
    let r = b
        .start(&spec)
        .unwrap_or_else(|e| panic!("{name}: create: {e}"));
    let watchdog = r.watchdog(common::HANG);
    let codes: Vec<_> = execs.iter().map(|args| r.exec(args)).collect();
    let (code, out, err) = r.wait_and_delete(|_| {});
    let hung = watchdog.finish();
    assert!(!hung, "{name}: still running after {:?}", common::HANG);
    for (args, c) in execs.iter().zip(&codes) {
        assert_eq!(
            c,
            &Ok(0),
            "{name}: exec {args:?}; init printed {out:?}, {err}"
        );
    }
    assert_eq!((code, out.as_str()), (0, want), "{name}: {err}");
}

/// Each `hako exec`'d process has its own seccomp listener. With several, the sentry blocks in
/// the RECV of the one its traps came from last and the waker watches the others, or polls them
/// all while several are busy (event_loop.rs, `CALM`). Init and an exec'd process each wait in a
/// read of a FIFO that the other one writes, then trap a burst of getpid (each answer checked
/// against the caller's own pid): alone first, then with a thread of each process trapping
/// without pause. On every platform.
#[test]
fn an_execd_process_and_init_trap_at_once_on_each_platform() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if common::compile_c("programs/two_listeners.c", &b.rootfs().join("two")).is_none() {
        return;
    }
    for name in common::platforms() {
        init_and_execs(
            &b,
            name,
            &["/two", "ping", "20"],
            &[&["/two", "pong", "20"]],
            "ping ok\n",
        );
    }
}

/// Exec'd processes that end while init traps: their listeners hang up and are dropped, and
/// init is still served, both while a thread of init traps without pause and while init waits
/// idle (the sentry then blocks in the RECV of the exec'd process's listener when it ends). On
/// every platform.
#[test]
fn an_execd_process_ends_while_init_traps_on_each_platform() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if common::compile_c("programs/two_listeners.c", &b.rootfs().join("two")).is_none() {
        return;
    }
    let short: &[&str] = &["/two", "short"];
    for name in common::platforms() {
        init_and_execs(
            &b,
            name,
            &["/two", "spin"],
            &[
                short,
                short,
                short,
                &["/two", "send", "a"],
                short,
                short,
                &["/two", "send", "b"],
            ],
            "spin ok\n",
        );
    }
}
