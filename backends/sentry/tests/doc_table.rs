//! docs/backends/sentry.md carries the syscall table generated from the code; keep it current
//! (`cargo run -p hako-sentry --example syscall_table`, or HAKO_BLESS=1 cargo test).

#[test]
fn compatibility_table_is_up_to_date() {
    let doc =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/backends/sentry.md");
    let text = std::fs::read_to_string(&doc).expect("docs/backends/sentry.md");
    let (begin, end) = (
        "<!-- syscall-table:begin -->\n",
        "<!-- syscall-table:end -->",
    );
    let b = text.find(begin).expect("begin marker") + begin.len();
    let e = text.find(end).expect("end marker");
    let want = hako_sentry::syscalls::table_markdown();
    if text[b..e] != want {
        if std::env::var_os("HAKO_BLESS").is_some() {
            std::fs::write(&doc, format!("{}{}{}", &text[..b], want, &text[e..])).unwrap();
            return;
        }
        panic!("the syscall table in docs/backends/sentry.md is stale: run HAKO_BLESS=1 cargo test -p hako-sentry --test doc_table");
    }
}

#[test]
fn every_x86_64_syscall_has_a_disposition_and_the_filter_compiles() {
    let rows = hako_sentry::syscalls::table();
    assert!(rows.len() > 330, "{} rows", rows.len());
    let native: Vec<_> = rows
        .iter()
        .filter(|r| matches!(r.2, hako_sentry::syscalls::Disp::Native(_)))
        .map(|r| r.1)
        .collect();
    // Nothing that touches files, pids or the network may be on the native allowlist.
    for bad in [
        "open", "openat", "read", "write", "execve", "kill", "socket", "connect", "mount",
        "ptrace", "clone", "getpid", "uname",
    ] {
        assert!(!native.contains(&bad), "{bad} must not run natively");
    }
    assert!(hako_sentry::syscalls::trap_filter(true).len() < 4096);
    assert!(hako_sentry::syscalls::trap_filter(false).len() < 4096);
    hako_sentry::filter::sentry_filter().unwrap();
}
