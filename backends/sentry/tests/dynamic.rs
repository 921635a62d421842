mod common;

#[test]
fn debian_ls_dynamic() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if !std::path::Path::new("/usr/bin/ls").exists() {
        eprintln!("SKIP: no /usr/bin/ls");
        return;
    }
    common::copy_dynamic(&b.rootfs(), "/usr/bin/ls");
    let (code, out, err) = b.run(&["/usr/bin/ls", "-l", "/etc"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("hostname"), "stdout: {out} stderr: {err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("-rw-r--r--") && l.ends_with("passwd")),
        "{out}"
    );
}

#[test]
fn python3_json_getpid() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let py = "/usr/bin/python3";
    let stdlib = std::path::Path::new("/usr/lib/python3.11");
    if !std::path::Path::new(py).exists() || !stdlib.is_dir() {
        eprintln!("SKIP: no Debian python3.11");
        return;
    }
    common::copy_dynamic(&b.rootfs(), py);
    // The standard library comes in read-only through a bind mount (mounts of the spec).
    let spec = b.spec(
        &[py, "-c", "import json,os; print(os.getpid()); print(json.dumps({'uname': os.uname().release}))"],
        serde_json::json!({"mounts": [{"destination": "/usr/lib/python3.11", "type": "bind", "source": stdlib, "options": ["rbind", "ro"]}]}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out, "1\n{\"uname\": \"4.4.0-hako-sentry\"}\n",
        "stderr: {err}"
    );
}

#[test]
fn python3_threads_subprocess_and_files() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let py = "/usr/bin/python3";
    let stdlib = std::path::Path::new("/usr/lib/python3.11");
    if !std::path::Path::new(py).exists() || !stdlib.is_dir() {
        eprintln!("SKIP: no Debian python3.11");
        return;
    }
    common::copy_dynamic(&b.rootfs(), py);
    let code = r#"
import threading, os, subprocess, tempfile
out = []
def work(i):
    out.append(i * i)
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sorted(out))
r = subprocess.run(["/bin/sh", "-c", "echo child $$"], capture_output=True, text=True)
print(r.stdout.strip().startswith("child"), r.returncode)
with tempfile.NamedTemporaryFile("w+", dir="/tmp") as f:
    f.write("data"); f.flush(); f.seek(0); print(f.read())
print(len(os.listdir("/proc/self/fd")) > 2)
"#;
    let spec = b.spec(
        &[py, "-c", code],
        serde_json::json!({"mounts": [{"destination": "/usr/lib/python3.11", "type": "bind", "source": stdlib, "options": ["rbind", "ro"]}]}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "[0, 1, 4, 9]\nTrue 0\ndata\nTrue\n", "stderr: {err}");
}

#[test]
fn python3_asyncio_epoll_and_socketpair() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let py = "/usr/bin/python3";
    let stdlib = std::path::Path::new("/usr/lib/python3.11");
    if !std::path::Path::new(py).exists() || !stdlib.is_dir() {
        eprintln!("SKIP: no Debian python3.11");
        return;
    }
    common::copy_dynamic(&b.rootfs(), py);
    let code = r#"
import asyncio, os
async def main():
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    fut = loop.create_future()
    loop.add_reader(r, lambda: fut.set_result(os.read(r, 100)))
    loop.call_later(0.05, os.write, w, b"via epoll")
    print((await fut).decode())
    await asyncio.sleep(0.01)
    print(type(loop._selector).__name__)
asyncio.run(main())
"#;
    let spec = b.spec(
        &[py, "-c", code],
        serde_json::json!({"mounts": [{"destination": "/usr/lib/python3.11", "type": "bind", "source": stdlib, "options": ["rbind", "ro"]}]}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "via epoll\nEpollSelector\n", "stderr: {err}");
}
