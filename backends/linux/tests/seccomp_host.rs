//! seccomp profiles compiled and loaded for real: each test forks a child that loads the filters
//! and reports what its system calls returned through its exit status.

use hako_linux::seccomp::{self, Compiled};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

fn profile(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).unwrap()
}

/// Fork; the child loads `c` and exits with `body()`. Returns (exited normally?, code or signal).
fn run(c: &Compiled, body: fn() -> i32) -> (bool, i32) {
    // SAFETY: the child only makes raw system calls (no allocation) before _exit/execve.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            if seccomp::try_apply(c).is_err() {
                libc::_exit(200);
            }
            libc::_exit(body());
        }
        let mut st = 0;
        assert_eq!(libc::waitpid(pid, &mut st, 0), pid);
        if libc::WIFEXITED(st) {
            (true, libc::WEXITSTATUS(st))
        } else {
            (false, libc::WTERMSIG(st))
        }
    }
}

/// A raw syscall with two arguments: 0 on success, else errno.
fn sys(nr: libc::c_long, a0: u64, a1: u64) -> i32 {
    // SAFETY: only used with syscalls that take integers (or ignore their arguments).
    let r = unsafe { libc::syscall(nr, a0, a1, 0u64) };
    if r < 0 {
        // SAFETY: reading this thread's errno.
        unsafe { *libc::__errno_location() }
    } else {
        0
    }
}

/// Step `n` failed unless `got == want`.
macro_rules! expect {
    ($n:expr, $got:expr, $want:expr) => {
        if ($got) != ($want) {
            return $n;
        }
    };
}

#[test]
fn errno_rules_and_allowed_calls() {
    let c = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ]
    })))
    .unwrap();
    fn body() -> i32 {
        let path = c"/nonexistent-hako-dir/x".as_ptr() as u64;
        // Without the filter this would be ENOENT.
        expect!(1, sys(libc::SYS_mkdir, path, 0o755), libc::EPERM);
        let mut buf = [0u8; 64];
        expect!(
            2,
            sys(libc::SYS_getcwd, buf.as_mut_ptr() as u64, 64),
            libc::ENOSYS
        );
        expect!(3, sys(libc::SYS_getpid, 0, 0), 0);
        expect!(4, sys(libc::SYS_umask, 0o22, 0), 0);
        0
    }
    assert_eq!(run(&c, body), (true, 0));
}

#[test]
fn argument_condition_on_allow_list() {
    let c = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
        ]
    })))
    .unwrap();
    fn body() -> i32 {
        expect!(1, sys(libc::SYS_personality, 0xffff_ffff, 0), 0);
        expect!(2, sys(libc::SYS_personality, 0, 0), 0);
        expect!(3, sys(libc::SYS_personality, 8, 0), libc::EPERM);
        // Not listed: the default action.
        expect!(4, sys(libc::SYS_getpid, 0, 0), libc::EPERM);
        0
    }
    assert_eq!(run(&c, body), (true, 0));
}

#[test]
fn every_operator_with_64_bit_values() {
    let rule = |name: &str, errno: u32, args: Value| json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": args});
    let arg = |i: u32, op: &str, v: u64| json!({"index": i, "value": v, "op": op});
    let c = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            rule("getpid", 10, json!([arg(0, "SCMP_CMP_LT", 100)])),
            rule("getppid", 11, json!([arg(0, "SCMP_CMP_GT", 0x1_0000_0000)])),
            rule("gettid", 12, json!([arg(0, "SCMP_CMP_LE", 5)])),
            rule("getuid", 13, json!([arg(0, "SCMP_CMP_GE", 0x1_0000_0005)])),
            rule("getgid", 14, json!([arg(0, "SCMP_CMP_NE", 7)])),
            rule("geteuid", 15, json!([arg(0, "SCMP_CMP_EQ", 0x2_0000_0003)])),
            rule("getegid", 16, json!([{"index": 0, "value": 0xff00, "valueTwo": 0x0100, "op": "SCMP_CMP_MASKED_EQ"}])),
            // Two args in one rule: AND.
            rule("getpgrp", 17, json!([arg(0, "SCMP_CMP_EQ", 1), arg(1, "SCMP_CMP_EQ", 2)])),
            // Two rules: OR.
            rule("sched_yield", 18, json!([arg(0, "SCMP_CMP_EQ", 1)])),
            rule("sched_yield", 18, json!([arg(0, "SCMP_CMP_EQ", 2)])),
        ]
    })))
    .unwrap();
    fn body() -> i32 {
        use libc::*;
        expect!(1, sys(SYS_getpid, 50, 0), 10);
        expect!(2, sys(SYS_getpid, 100, 0), 0);
        expect!(3, sys(SYS_getpid, 0x1_0000_0005, 0), 0);
        expect!(4, sys(SYS_getppid, 0x1_0000_0001, 0), 11);
        expect!(5, sys(SYS_getppid, 0x1_0000_0000, 0), 0);
        expect!(6, sys(SYS_getppid, 0xffff_ffff, 0), 0);
        expect!(7, sys(SYS_gettid, 5, 0), 12);
        expect!(8, sys(SYS_gettid, 6, 0), 0);
        expect!(9, sys(SYS_getuid, 0x1_0000_0005, 0), 13);
        expect!(10, sys(SYS_getuid, 0x1_0000_0004, 0), 0);
        expect!(11, sys(SYS_getuid, 0x2_0000_0000, 0), 13);
        expect!(12, sys(SYS_getgid, 7, 0), 0);
        expect!(13, sys(SYS_getgid, 8, 0), 14);
        expect!(14, sys(SYS_getgid, 0x1_0000_0007, 0), 14);
        expect!(15, sys(SYS_geteuid, 0x2_0000_0003, 0), 15);
        expect!(16, sys(SYS_geteuid, 3, 0), 0);
        expect!(17, sys(SYS_getegid, 0x01ff, 0), 16);
        expect!(18, sys(SYS_getegid, 0x0200, 0), 0);
        expect!(19, sys(SYS_getegid, 0x1_0000_0100, 0), 16);
        expect!(20, sys(SYS_getpgrp, 1, 2), 17);
        expect!(21, sys(SYS_getpgrp, 1, 3), 0);
        expect!(22, sys(SYS_getpgrp, 0, 2), 0);
        expect!(23, sys(SYS_sched_yield, 1, 0), 18);
        expect!(24, sys(SYS_sched_yield, 2, 0), 18);
        expect!(25, sys(SYS_sched_yield, 3, 0), 0);
        0
    }
    assert_eq!(run(&c, body), (true, 0));
}

fn call_getppid() -> i32 {
    sys(libc::SYS_getppid, 0, 0);
    0
}

#[test]
fn kill_trap_and_kill_process_end_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let c = seccomp::compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]
        })))
        .unwrap();
        assert_eq!(run(&c, call_getppid), (false, libc::SIGSYS), "{action}");
    }
    // A kill rule inside an allow-list profile: the default filter allows the call, the
    // action filter kills.
    let c = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
        ]
    })))
    .unwrap();
    assert_eq!(run(&c, call_getppid), (false, libc::SIGSYS));
}

#[test]
fn log_trace_and_flags() {
    let c = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            {"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ]
    })))
    .unwrap();
    assert_eq!(
        c.flags,
        (libc::SECCOMP_FILTER_FLAG_TSYNC
            | libc::SECCOMP_FILTER_FLAG_LOG
            | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW)
    );
    fn body() -> i32 {
        expect!(1, sys(libc::SYS_getpid, 0, 0), 0); // LOG allows
        expect!(2, sys(libc::SYS_getppid, 0, 0), libc::ENOSYS); // TRACE with no tracer
        let mut buf = [0u8; 64];
        expect!(
            3,
            sys(libc::SYS_getcwd, buf.as_mut_ptr() as u64, 64),
            libc::ENOSYS
        );
        0
    }
    assert_eq!(run(&c, body), (true, 0));
}

#[test]
fn most_restrictive_match_wins() {
    // podman's socket rules: ERRNO for (AF_NETLINK, NETLINK_AUDIT), ALLOW when either differs.
    let c = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["exit_group", "close"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [
                {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_NE"}]},
        ]
    })))
    .unwrap();
    fn body() -> i32 {
        // SAFETY: plain socket(2) calls.
        let audit = unsafe { libc::syscall(libc::SYS_socket, 16, libc::SOCK_RAW, 9) };
        // SAFETY: reading errno.
        expect!(
            1,
            (audit, unsafe { *libc::__errno_location() }),
            (-1, libc::EPERM)
        );
        // SAFETY: plain socket(2) call.
        let unix = unsafe { libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0) };
        expect!(2, unix >= 0, true);
        expect!(3, sys(libc::SYS_getpid, 0, 0), libc::ENOSYS);
        0
    }
    assert_eq!(run(&c, body), (true, 0));
}

/// podman's default profile as podman hands it to the runtime for a default container: rules
/// filtered by podman's default capabilities and by architecture (amd64), x86_64 arch map.
fn podman_profile() -> Option<LinuxSeccomp> {
    let raw = match std::fs::read_to_string("/usr/share/containers/seccomp.json") {
        Ok(r) => r,
        Err(_) => {
            eprintln!("skipped: /usr/share/containers/seccomp.json is missing (apt-get install golang-github-containers-common)");
            return None;
        }
    };
    let v: Value = serde_json::from_str(&raw).unwrap();
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    ];
    let list = |x: &Value, k: &str| -> Vec<String> {
        x.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut syscalls = Vec::new();
    for s in v["syscalls"].as_array().unwrap() {
        let inc = &s["includes"];
        let exc = &s["excludes"];
        if !list(inc, "caps").iter().all(|c| caps.contains(&c.as_str())) {
            continue;
        }
        let arches = list(inc, "arches");
        if !arches.is_empty() && !arches.iter().any(|a| a == "amd64") {
            continue;
        }
        if list(exc, "caps").iter().any(|c| caps.contains(&c.as_str()))
            || list(exc, "arches").iter().any(|a| a == "amd64")
        {
            continue;
        }
        let mut rule = json!({"names": s["names"], "action": s["action"]});
        if let Some(e) = s.get("errnoRet") {
            rule["errnoRet"] = e.clone();
        }
        if let Some(a) = s.get("args").filter(|a| !a.is_null()) {
            rule["args"] = a.clone();
        }
        syscalls.push(rule);
    }
    let mut p = json!({
        "defaultAction": v["defaultAction"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    });
    if let Some(e) = v.get("defaultErrnoRet") {
        p["defaultErrnoRet"] = e.clone();
    }
    Some(profile(p))
}

#[test]
fn podman_default_profile_runs_real_programs() {
    let Some(p) = podman_profile() else { return };
    seccomp::check(&p).unwrap();
    let c = seccomp::compile(&p).unwrap();
    eprintln!(
        "podman profile: {} filters, {} BPF instructions",
        c.filters.len(),
        c.instructions()
    );
    fn body() -> i32 {
        use libc::*;
        expect!(1, sys(SYS_acct, 0, 0), EPERM); // needs CAP_SYS_PACCT: ERRNO(1)
        expect!(2, sys(SYS_add_key, 0, 0), ENOSYS); // not listed: default ERRNO(38)
        expect!(6, sys(SYS_kexec_load, 0, 0), EPERM); // listed as ERRNO(1)
                                                      // setns is listed as ALLOW, then ERRNO(1) without CAP_SYS_ADMIN: libseccomp keeps the
                                                      // first, so the kernel sees the call (bad fd).
        expect!(7, sys(SYS_setns, u64::MAX, 0), EBADF);
        expect!(3, sys(SYS_personality, 0xffff_ffff, 0), 0);
        expect!(4, sys(SYS_personality, 1, 0), ENOSYS);
        // NETLINK_AUDIT without CAP_AUDIT_WRITE: ERRNO(22).
        // SAFETY: plain socket(2) call.
        let audit = unsafe { syscall(SYS_socket, 16, SOCK_RAW, 9) };
        // SAFETY: reading errno.
        expect!(5, (audit, unsafe { *__errno_location() }), (-1, EINVAL));
        let sh = c"/bin/sh".as_ptr();
        let script =
            b"ls / >/dev/null && cat /proc/self/status | grep -q '^Seccomp:.*2' && /bin/true\0";
        let argv = [
            sh,
            c"-c".as_ptr(),
            script.as_ptr() as *const c_char,
            std::ptr::null(),
        ];
        // SAFETY: NUL-terminated strings and a NULL-terminated argv.
        unsafe { execv(sh, argv.as_ptr()) };
        127
    }
    assert_eq!(run(&c, body), (true, 0));
}

#[test]
fn compile_errors_are_clear() {
    let e = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap_err();
    assert!(
        format!("{e}").contains("SCMP_ACT_NOTIFY is not supported")
            || format!("{e}").contains("SCMP_ACT_NOTIFY"),
        "{e}"
    );
    let bad: Result<LinuxSeccomp, _> =
        serde_json::from_value(json!({"defaultAction": "SCMP_ACT_EXPLODE"}));
    assert!(bad.is_err());
}

#[test]
fn profile_that_denies_seccomp_itself_still_loads() {
    // Every filter after the first is loaded through seccomp(2): the ones that would refuse
    // that call (the default filter, a rule on seccomp) must be loaded last.
    let c = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["seccomp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7},
            {"names": ["getppid"], "action": "SCMP_ACT_TRAP"},
        ]
    })))
    .unwrap();
    assert_eq!(c.filters.len(), 4);
    fn body() -> i32 {
        expect!(1, sys(libc::SYS_getpid, 0, 0), libc::E2BIG);
        expect!(2, sys(libc::SYS_seccomp, 0, 0), libc::EIO);
        expect!(3, sys(libc::SYS_getuid, 0, 0), libc::EPERM);
        0
    }
    assert_eq!(run(&c, body), (true, 0));
    assert_eq!(run(&c, call_getppid), (false, libc::SIGSYS));
}

#[test]
fn first_unconditional_rule_decides_like_libseccomp() {
    // libseccomp 2.5: for one syscall, the first unconditional rule wins and overrides any
    // conditional rule (podman's profile lists setns as ALLOW and, later, as ERRNO(1)).
    let c = seccomp::compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getuid"], "action": "SCMP_ACT_ALLOW"},
        ]
    })))
    .unwrap();
    fn body() -> i32 {
        expect!(1, sys(libc::SYS_getpid, 0, 0), 0);
        expect!(2, sys(libc::SYS_getppid, 0, 0), libc::EPERM);
        expect!(3, sys(libc::SYS_getuid, 1, 0), 0);
        expect!(4, sys(libc::SYS_getgid, 0, 0), libc::ENOSYS);
        0
    }
    assert_eq!(run(&c, body), (true, 0));
}

/// Cost of a cheap syscall under podman's profile (prints figures; no assertion on time).
/// `cargo test -p hako-linux --test seccomp_host -- --ignored --nocapture syscall_cost`
#[test]
#[ignore]
fn syscall_cost_under_podman_profile() {
    let Some(p) = podman_profile() else { return };
    let c = seccomp::compile(&p).unwrap();
    fn measure() -> i32 {
        let mut best = u64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..200_000 {
                sys(libc::SYS_getppid, 0, 0);
                sys(libc::SYS_openat, u64::MAX, 0); // high number, EBADF
            }
            best = best.min(t.elapsed().as_nanos() as u64 / 400_000);
        }
        (best / 10).min(255) as i32 // in units of 10 ns
    }
    let empty = Compiled {
        filters: vec![],
        flags: 0,
    };
    let (_, base) = run(&empty, measure);
    let (_, filtered) = run(&c, measure);
    let (base, filtered) = (base * 10, filtered * 10);
    eprintln!(
        "ns per syscall (getppid/openat mix): no filter {base}, podman profile ({} filters, {} insns) {filtered}",
        c.filters.len(),
        c.instructions()
    );
}
