mod common;

#[test]
fn echo_cat_ls_and_exit_code() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let (code, out, err) = b.run(&["sh", "-c", "echo hi; cat /etc/hostname; ls /"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.starts_with("hi\nsentry-box\n"),
        "stdout: {out:?} stderr: {err}"
    );
    for d in ["bin", "etc", "tmp"] {
        assert!(out.lines().any(|l| l == d), "ls / lacks {d}: {out:?}");
    }
    let (code, _, _) = b.run(&["sh", "-c", "exit 42"]);
    assert_eq!(code, 42);
}
