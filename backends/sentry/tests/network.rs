//! The sentry's sockets (issue 12): hostinet sockets in the sandbox's own network namespace.
//! - `local`: TCP, UDP, AF_UNIX (path and abstract; stream, dgram, seqpacket), SCM_RIGHTS,
//!   SCM_CREDENTIALS, netlink route reads and edge-triggered epoll, server and client both in
//!   the sandbox;
//! - `attacks`: the host's loopback stays unreached, raw/packet sockets are refused, SCM_RIGHTS
//!   cannot pass a descriptor the sandbox does not own, a socket path cannot leave the root
//!   or reach the host's abstract Unix namespace (and the same bundle under runsc, where
//!   installed);
//! - `echo_across_a_veth`: a TCP and UDP echo server in the sandbox, reached from the host
//!   through a network namespace and veth pair the test makes and hands over by path (the
//!   sentry joins it);
//! - `socket_credentials_are_virtual`: SO_PEERCRED and SCM_CREDENTIALS name virtual tasks;
//! - `socket_timeouts_end_blocking_calls`: SO_RCVTIMEO/SO_SNDTIMEO give EAGAIN;
//! - a blocking send on a stream socket sends every byte, or the count when a signal,
//!   SO_SNDTIMEO or the peer going ends it (programs/send_block.c);
//! - a namespace path the sentry cannot honour is refused.
//!
//! Run: `cargo test -p hako-sentry --test network` (as root; skips with a reason otherwise).

mod common;

use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A busybox bundle with the network probe at /probe.
fn probe_bundle() -> Option<common::Bundle> {
    let b = common::busybox_bundle()?;
    common::compile_attack("net_probe", &b.rootfs().join("probe"))?;
    Some(b)
}

fn assert_all_ok(what: &str, code: i32, out: &str, err: &str) {
    assert!(
        code == 0 && !out.contains("FAIL"),
        "{what}: exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    );
}

#[test]
fn local() {
    let Some(b) = probe_bundle() else { return };
    let (code, out, err) = b.run(&["/probe", "local"]);
    assert_all_ok("net_probe local", code, &out, &err);
    for line in [
        "ok tcp client (connect, send, recv) in a child",
        "ok udp6 recvfrom with source",
        "ok unix stream path: getsockname gives the sandbox's name",
        "ok unix seqpacket relative path: data from a client",
        "ok unix dgram path: data from a client",
        "ok unix stream abstract: data from a client",
        "ok SCM_RIGHTS recvmsg: a new fd for the same file",
        "ok received memfd reads the same data",
        "ok SCM_CREDENTIALS received with the sender's virtual pid and ids",
        "ok SCM_CREDENTIALS naming another pid refused",
        "ok netlink RTM_NEWLINK refused",
        "ok EPOLLET: no second event while still readable",
        "ok EPOLLET: a new event for more data",
        "ok EPOLLET: a blocking wait wakes on the next edge",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // The socket file was made inside the sandbox's root (its upper layer), not on the host.
    assert!(!Path::new("/tmp/stream.sock").exists());
}

/// Host-side traps: a TCP listener on the host's 127.0.0.1 and a Unix listener in a host
/// directory. Returns (port, dir, tcp listener, unix listener).
fn host_traps() -> (
    u16,
    tempfile::TempDir,
    std::net::TcpListener,
    [std::os::unix::net::UnixListener; 2],
) {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let dir = tempfile::Builder::new()
        .prefix("hako-net-host-")
        .tempdir()
        .unwrap();
    let unix = std::os::unix::net::UnixListener::bind(dir.path().join("host.sock")).unwrap();
    unix.set_nonblocking(true).unwrap();
    // The same name in the host's abstract namespace as the probe tries ("hako-host-<port>").
    use std::os::linux::net::SocketAddrExt;
    let name = format!("hako-host-{port}");
    let abs = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let abstract_ = std::os::unix::net::UnixListener::bind_addr(&abs).unwrap();
    abstract_.set_nonblocking(true).unwrap();
    (port, dir, tcp, [unix, abstract_])
}

fn traps_untouched(
    who: &str,
    dir: &Path,
    tcp: &std::net::TcpListener,
    unix: &[std::os::unix::net::UnixListener; 2],
) {
    assert_eq!(
        tcp.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "{who}: the host's loopback listener was reached"
    );
    for u in unix {
        assert_eq!(
            u.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "{who}: the host's Unix socket was reached"
        );
    }
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names,
        ["host.sock"],
        "{who}: a socket was planted in a host dir"
    );
}

#[test]
fn attacks() {
    let Some(b) = probe_bundle() else { return };
    let (port, dir, tcp, unix) = host_traps();
    let port_s = port.to_string();
    let dir_s = dir.path().to_str().unwrap();
    // runc's default capability set without NET_BIND_SERVICE: no NET_RAW either.
    let caps = json!([
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_SETUID",
        "CAP_SETGID"
    ]);
    let spec = b.spec(
        &["/probe", "attack", &port_s, dir_s],
        json!({"process": {"capabilities": {"bounding": caps, "effective": caps, "permitted": caps}}}),
    );
    let (code, out, err) = b.run_spec(&spec);
    print!("{out}");
    assert_all_ok("net_probe attack", code, &out, &err);
    traps_untouched("sentry", dir.path(), &tcp, &unix);
    // The same hostile bundle under runsc (its own network: --network=none, see run_peer).
    match common::run_peer(
        "runsc",
        &b.rootfs(),
        &["/probe", "attack", &port_s, dir_s],
        json!({}),
    ) {
        Ok((code, out, _)) => {
            println!("runsc (exit {code}):\n{out}");
            traps_untouched("runsc", dir.path(), &tcp, &unix);
        }
        Err(e) => eprintln!("SKIP runsc: {e}"),
    }
}

/// A peer outside the sandbox, listening on a socket file bind-mounted into the sandbox, sends the workload the
/// host's `/` (a directory: must not arrive; the workload would `openat` out of its root through
/// it) and then a regular file (may arrive: it names no other file).
/// SO_PEERCRED and SCM_CREDENTIALS name the sandbox's tasks by their virtual pids and ids
/// (programs/peercred.c: a socketpair, a server and a client in two processes, as runc runs it
/// and with a non-root user), and a peer outside the sandbox (a host server on a bind-mounted
/// socket) as pid 0 with the overflow ids, on each platform this kernel has.
#[test]
fn socket_credentials_are_virtual() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if common::compile_c("programs/peercred.c", &b.rootfs().join("bin/peercred")).is_none() {
        return;
    }
    match common::run_peer("runc", &b.rootfs(), &["/bin/peercred"], json!({})) {
        Ok((code, out, err)) => {
            assert_eq!((code, out.as_str()), (0, "ok peercred\n"), "runc: {err}")
        }
        Err(why) => eprintln!("SKIP the runc comparison: {why}"),
    }
    let ext = b.dir.path().join("ext");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::create_dir_all(b.rootfs().join("ext")).unwrap();
    for name in common::platforms() {
        let platform = json!({hako_sentry::PLATFORM_ANNOTATION: name});
        for user in [
            json!({"uid": 0, "gid": 0}),
            json!({"uid": 1000, "gid": 1000}),
        ] {
            let spec = b.spec(
                &["/bin/peercred"],
                json!({"annotations": platform, "process": {"user": user}}),
            );
            let (code, out, err) = b.run_spec(&spec);
            assert_eq!(
                (code, out.as_str()),
                (0, "ok peercred\n"),
                "{name} {user}: {err}"
            );
        }
        let _ = std::fs::remove_file(ext.join("s"));
        let listener = std::os::unix::net::UnixListener::bind(ext.join("s")).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut go = [0u8; 1];
            s.read_exact(&mut go).unwrap();
            s.write_all(b"h").unwrap();
            let _ = s.read(&mut go); // until the workload is done
        });
        let spec = b.spec(
            &["/bin/peercred", "/ext/s"],
            json!({"annotations": platform,
                   "mounts": [{"destination": "/ext", "type": "bind", "source": ext, "options": ["rbind"]}]}),
        );
        let (code, out, err) = b.run_spec(&spec);
        assert_eq!(
            (code, out.as_str()),
            (
                0,
                "outside pid=0 uid=65534 gid=65534, message pid=0 uid=65534 gid=65534\n"
            ),
            "{name}: {err}"
        );
        server.join().unwrap();
    }
}

/// SO_RCVTIMEO and SO_SNDTIMEO end parked socket calls with EAGAIN (programs/sock_timeout.c:
/// recv, read, recvmsg, recvfrom, accept, send and write), as runc runs it and on each platform.
/// They used to park for ever: each run is bounded so that fails instead of hanging.
#[test]
fn socket_timeouts_end_blocking_calls() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    if common::compile_c(
        "programs/sock_timeout.c",
        &b.rootfs().join("bin/sock_timeout"),
    )
    .is_none()
    {
        return;
    }
    common::same_as_linux_everywhere(
        &b,
        &["/bin/sock_timeout"],
        "ok timeouts\n",
        json!({}),
        json!({}),
    );
}

/// A 4 MiB blocking send, sendto and sendmsg over an AF_UNIX stream pair and a TCP loopback
/// connection to a reader draining 4 KiB at a time return 4 MiB from one call, as Linux's do
/// (they used to return after one short send when the socket filled); MSG_DONTWAIT still sends
/// what fits, then EAGAIN; SO_SNDTIMEO gives the count sent, then EAGAIN; a peer that goes
/// gives the count without SIGPIPE, then EPIPE with it. Same lines as runc, where installed.
#[test]
fn a_blocking_stream_send_completes_in_one_call() {
    common::program_as_linux_runs_it(
        "send_block",
        &["block"],
        "unix send whole ok\nunix sendto whole ok\nunix sendmsg whole ok\n\
         tcp send whole ok\ntcp sendto whole ok\ntcp sendmsg whole ok\n\
         dontwait ok\ntimeout ok\npeer gone ok\n",
    );
}

/// A signal during a blocked 4 MiB send nobody reads ends it with the count sent so far, with
/// SA_RESTART or without. Not on the ptrace platform: it holds a blocked call at a ptrace stop,
/// where no signal reaches the task until the call completes (docs/backends/sentry.md).
#[test]
fn a_signal_ends_a_blocked_stream_send_with_its_count() {
    let platform = hako_sentry::platform::kind::Kind::choose(None).unwrap();
    if platform == hako_sentry::platform::kind::Kind::Ptrace {
        eprintln!("SKIP: the ptrace platform delivers no signal during a blocked call");
        return;
    }
    common::program_as_linux_runs_it(
        "send_block",
        &["signal"],
        "unix partial ok\nunix partial restart ok\ntcp partial ok\ntcp partial restart ok\n",
    );
}

#[test]
fn a_host_directory_cannot_come_in_through_scm_rights() {
    let Some(b) = probe_bundle() else { return };
    // The socket reaches the sandbox as engines hand one in: a bind mount of a host directory.
    let peer_dir = b.dir.path().join("peer");
    std::fs::create_dir_all(&peer_dir).unwrap();
    std::fs::create_dir_all(b.rootfs().join("mnt/peer")).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(peer_dir.join("peer.sock")).unwrap();
    let file = b.dir.path().join("peer-file");
    std::fs::write(&file, "peer-file").unwrap();
    let peer = std::thread::spawn(move || {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::os::fd::AsRawFd;
        let (s, _) = listener.accept().unwrap();
        let root = std::fs::File::open("/").unwrap();
        let f = std::fs::File::open(&file).unwrap();
        for fd in [root.as_raw_fd(), f.as_raw_fd()] {
            let iov = [std::io::IoSlice::new(b"x")];
            let fds = [fd];
            sendmsg::<()>(
                s.as_raw_fd(),
                &iov,
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
        }
        // Hold the connection until the workload has read both.
        let mut buf = [0u8; 1];
        let _ = (&s).read(&mut buf);
    });
    let spec = b.spec(
        &["/probe", "recvdir", "/mnt/peer/peer.sock"],
        json!({"mounts": [{"destination": "/mnt/peer", "type": "bind", "source": peer_dir, "options": ["rbind"]}]}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_all_ok("net_probe recvdir", code, &out, &err);
    peer.join().unwrap();
}

/// `ip` with these arguments; panics with its error.
fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A network namespace with one end of a veth pair (10.213.N.2/30), the other end on the host
/// (10.213.N.1/30); removed on drop.
struct TestNet {
    name: String,
    host_if: String,
    sandbox_ip: String,
    host_ip: String,
}

impl TestNet {
    fn new() -> Option<TestNet> {
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("SKIP: no ip(8) (iproute2)");
            return None;
        }
        let n = std::process::id() % 250;
        let t = TestNet {
            name: format!("hako-net-{}", std::process::id()),
            host_if: format!("hkh{}", std::process::id() % 100_000),
            sandbox_ip: format!("10.213.{n}.2"),
            host_ip: format!("10.213.{n}.1"),
        };
        let peer = format!("hks{}", std::process::id() % 100_000);
        ip(&["netns", "add", &t.name]);
        ip(&[
            "link", "add", &t.host_if, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &t.name]);
        ip(&[
            "addr",
            "add",
            &format!("10.213.{n}.1/30"),
            "dev",
            &t.host_if,
        ]);
        ip(&["link", "set", &t.host_if, "up"]);
        let inns = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &t.name, "ip"];
            a.extend_from_slice(args);
            ip(&a);
        };
        inns(&["addr", "add", &format!("{}/30", t.sandbox_ip), "dev", &peer]);
        inns(&["link", "set", &peer, "up"]);
        inns(&["link", "set", "lo", "up"]);
        Some(t)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn echo_across_a_veth() {
    let Some(b) = probe_bundle() else { return };
    let Some(net) = TestNet::new() else { return };
    let port = 7000 + (std::process::id() % 1000) as u16;
    // A port on the host's side of the veth that is closed (bound, then released).
    let closed = std::net::TcpListener::bind((net.host_ip.as_str(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let spec = b.spec(
        &["/probe", "serve", &port.to_string(), &net.host_ip, &closed],
        json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
            {"type": "network", "path": format!("/run/netns/{}", net.name)}]}}),
    );
    let run = b.start(&spec).unwrap();
    let addr: std::net::SocketAddr = format!("{}:{port}", net.sandbox_ip).parse().unwrap();
    // The server comes up when it comes up: retry until it answers (or give up after a minute,
    // which only bounds a broken run; nothing here measures time).
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut s = loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < give_up => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("connecting to the sandbox's server at {addr}: {e}"),
        }
    };
    s.write_all(b"across tcp").unwrap();
    let mut got = [0u8; 10];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"across tcp");
    drop(s);
    let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 32];
    let n = loop {
        u.send_to(b"across udp", addr).unwrap();
        match u.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, addr);
                break n;
            }
            Err(_) if Instant::now() < give_up => continue,
            Err(e) => panic!("udp echo from {addr}: {e}"),
        }
    };
    assert_eq!(&buf[..n], b"across udp");
    let (code, out, err) = run.wait_and_delete(|_| {});
    assert_all_ok("net_probe serve", code, &out, &err);
}

#[test]
fn namespace_paths_it_cannot_join_are_refused() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let spec = b.spec(
        &["/bin/true"],
        json!({"linux": {"namespaces": [{"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "mount"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}]}}),
    );
    let e = b.create_error(&spec);
    assert!(
        e.contains("cannot join the pid namespace at /proc/1/ns/pid"),
        "{e}"
    );
    let spec = b.spec(
        &["/bin/true"],
        json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": "/nonexistent/netns"}, {"type": "ipc"}, {"type": "uts"}]}}),
    );
    let e = b.create_error(&spec);
    assert!(
        e.contains("opening the network namespace /nonexistent/netns"),
        "{e}"
    );
}

/// Real servers under the sentry (issue 12's targets, inside one sandbox): python3's
/// `http.server` on 127.0.0.1 fetched with `urllib`, a Unix-socket server and its client
/// (`socketserver`), and an asyncio TCP echo (epoll readiness on sockets).
#[test]
fn python3_http_server_unix_server_and_asyncio() {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let py = "/usr/bin/python3";
    let stdlib = Path::new("/usr/lib/python3.11");
    if !Path::new(py).exists() || !stdlib.is_dir() {
        eprintln!("SKIP: no Debian python3.11");
        return;
    }
    common::copy_dynamic(&b.rootfs(), py);
    std::fs::write(b.rootfs().join("tmp/index.html"), "hello over http\n").unwrap();
    let code = r#"
import asyncio, http.server, functools, os, socketserver, threading, urllib.request
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/tmp")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
threading.Thread(target=srv.serve_forever, daemon=True).start()
print(urllib.request.urlopen("http://127.0.0.1:%d/index.html" % srv.server_address[1]).read().decode(), end="")
srv.shutdown()

class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline().upper())
u = socketserver.ThreadingUnixStreamServer("/tmp/py.sock", Echo)
threading.Thread(target=u.serve_forever, daemon=True).start()
import socket
c = socket.socket(socket.AF_UNIX)
c.connect("/tmp/py.sock")
c.sendall(b"unix ok\n")
print(c.makefile().readline(), end="")
u.shutdown()

async def main():
    async def echo(r, w):
        w.write(await r.readline()); await w.drain(); w.close()
    s = await asyncio.start_server(echo, "127.0.0.1", 0)
    r, w = await asyncio.open_connection("127.0.0.1", s.sockets[0].getsockname()[1])
    w.write(b"asyncio ok\n"); await w.drain()
    print((await r.readline()).decode(), end="")
    s.close()
asyncio.run(main())
"#;
    let spec = b.spec(
        &[py, "-c", code],
        json!({"mounts": [{"destination": "/usr/lib/python3.11", "type": "bind", "source": stdlib, "options": ["rbind", "ro"]}]}),
    );
    let (code, out, err) = b.run_spec(&spec);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(
        out, "hello over http\nUNIX OK\nasyncio ok\n",
        "stderr: {err}"
    );
}
