//! The network workload: requests per second of a small HTTP server inside each OCI subject,
//! with the client in the bench process, outside the sandbox.
//!
//! For every subject the bench makes its own network namespace (`ip netns add`) with one veth
//! pair: the host end keeps `10.A.B.1/24`, the end moved into the namespace gets `10.A.B.2/24`.
//! The namespace's path goes into the spec's `linux.namespaces` network entry, so the runtime
//! joins it instead of making an empty one. Inside, busybox `httpd -f` serves `/www/index.html`
//! from the bench's busybox rootfs. Once it answers, the client makes one HTTP/1.0 request per
//! TCP connection (std `TcpStream`) for `--net-secs` seconds, bounded to [`MAX_REQUESTS`], and
//! times each. Then the sandbox is killed and deleted and the namespace removed (which takes
//! the veth pair with it), on every path out, errors included. Traffic only goes to the
//! namespace the bench made.
//!
//! A subject whose server does not come up gets a one-line reason in its row; the rest of the
//! bench goes on.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{Category, SubjectReport};
use crate::procs::{self, Io};
use crate::stats::{ratio, summarize, Stats};
use crate::subjects::{Ctx, Driver, Subject};
use crate::workloads;

/// The page the server hands out; its last line proves the whole body came back.
pub const PAGE: &str =
    "<html><body>hako-bench network workload\n<p>hako-bench-page-end</p></body></html>\n";
const PAGE_END: &str = "hako-bench-page-end";
/// The port busybox httpd listens on inside the sandbox.
pub const PORT: u16 = 8080;
/// Upper bound on requests per subject, whatever `--net-secs` says.
pub const MAX_REQUESTS: u64 = 50_000;
/// Per-request connect and read timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What one subject's network run measured, or why it was not run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NetReport {
    /// The server's address inside the sandbox.
    pub address: String,
    /// Requests answered with 200 and the whole page.
    pub requests: u64,
    /// Requests that failed (connect, timeout, short or wrong answer).
    pub failed: u64,
    /// Time the client spent sending requests, s.
    pub secs: f64,
    pub rps: Option<f64>,
    /// Per-request latency (connect → last byte), ms.
    pub latency_ms: Option<Stats>,
    /// Sandbox create → first answered request, ms.
    pub up_ms: Option<f64>,
    /// The subject the ratio is against (`None`: no peer runs this workload in the category).
    pub peer: Option<String>,
    /// rps / the peer's rps (higher is better).
    pub rps_ratio: Option<f64>,
    /// Why the workload did not run, or stopped (one line).
    pub skipped: Option<String>,
}

/// The peer a subject's requests per second are compared with.
fn peer_of(c: Category) -> Option<&'static str> {
    match c {
        Category::Container => Some("crun"),
        Category::Sentry => Some("runsc"),
        // Neither the plain-qemu peer nor any installed runtime boots a VM that serves HTTP:
        // the microvm's figures are documented as they are.
        Category::Microvm | Category::Wasm => None,
    }
}

/// Why this subject cannot run the network workload, if it cannot.
fn unsupported(s: &Subject) -> Option<String> {
    match &s.driver {
        Driver::Direct { .. } => Some("runs a command to completion: no server to start".into()),
        Driver::Oci { .. } if s.name == "hako-container-hello" => Some(
            "the wasm baseline's static hello; the container backend's row is hako-container"
                .into(),
        ),
        Driver::Oci { .. } if s.category == Category::Wasm => {
            Some("WASI preview 1 has no sockets: no server to run".into())
        }
        Driver::Oci { rootfs, .. } if !rootfs.join("www/index.html").is_file() => {
            Some(format!("no /www/index.html in {}", rootfs.display()))
        }
        Driver::Oci { .. } => None,
    }
}

/// How many steps [`measure`] reports (for the progress bar).
pub fn planned(active: &[(Subject, SubjectReport)], secs: u64) -> usize {
    if secs == 0 {
        return 0;
    }
    active
        .iter()
        .filter(|(s, _)| unsupported(s).is_none())
        .count()
}

/// Run the workload for every subject (`secs` 0: skipped), then set the ratios.
pub fn measure(
    active: &mut [(Subject, SubjectReport)],
    ctx: &Ctx,
    secs: u64,
    progress: &dyn Fn(String),
) {
    if secs == 0 {
        return;
    }
    for (i, (s, rep)) in active.iter_mut().enumerate() {
        if procs::interrupted() {
            break;
        }
        if let Some(why) = unsupported(s) {
            if matches!(s.driver, Driver::Oci { .. }) {
                rep.net = Some(NetReport {
                    skipped: Some(why),
                    ..Default::default()
                });
            }
            continue;
        }
        progress(format!("{}: HTTP server for {secs} s", s.name));
        rep.net = Some(run_one(s, ctx, i, Duration::from_secs(secs)));
    }
    set_ratios(active.iter_mut().map(|(_, r)| r));
}

/// Fill `peer` and `rps_ratio` of every report that has a network run.
pub fn set_ratios<'a>(reps: impl Iterator<Item = &'a mut SubjectReport>) {
    let reps: Vec<&mut SubjectReport> = reps.collect();
    let rps_of = |name: &str| {
        reps.iter()
            .find(|r| r.name == name)
            .and_then(|r| r.net.as_ref())
            .and_then(|n| n.rps)
    };
    let ratios: Vec<(Option<String>, Option<f64>)> = reps
        .iter()
        .map(|r| {
            let peer = peer_of(r.category).map(String::from);
            let x = ratio(
                r.net.as_ref().and_then(|n| n.rps),
                peer.as_deref().and_then(rps_of),
            );
            (peer, x)
        })
        .collect();
    for (r, (peer, x)) in reps.into_iter().zip(ratios) {
        if let Some(n) = r.net.as_mut() {
            if n.skipped.is_none() || n.rps.is_some() {
                n.peer = peer;
                n.rps_ratio = x;
            }
        }
    }
}

/// One subject: namespace, server, client, clean-up.
fn run_one(s: &Subject, ctx: &Ctx, index: usize, secs: Duration) -> NetReport {
    let mut rep = NetReport::default();
    let ns = match NetNs::create(&ctx.tag, index) {
        Ok(ns) => ns,
        Err(e) => {
            rep.skipped = Some(one_line(&format!("network namespace: {e:#}")));
            return rep;
        }
    };
    rep.address = format!("{}:{PORT}", ns.sandbox_ip);
    let r = serve_and_measure(s, ctx, &ns, secs, &mut rep);
    drop(ns);
    if let Err(e) = r {
        rep.skipped = Some(one_line(&format!("{e:#}")));
    }
    rep
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The subject as it runs the server: runsc gets `--network=host` instead of the startup runs'
/// `--network=none`. That is runsc's "hostinet": the host kernel's stack serves the sandbox, in the
/// network namespace the spec names (runsc joins it), the model the sentry's sockets follow. Its
/// own stack (`--network=sandbox`) cannot run here: the installed runsc decides it is in the
/// root namespace when `/proc/sys/net/core/rmem_default` exists, and this kernel has that file
/// in every namespace, so it refuses all of them.
fn server_subject(s: &Subject) -> Subject {
    let mut me = s.clone();
    if let Driver::Oci { globals, .. } = &mut me.driver {
        for g in globals.iter_mut() {
            if g == "--network=none" {
                *g = "--network=host".into();
            }
        }
    }
    me
}

fn serve_and_measure(
    s: &Subject,
    ctx: &Ctx,
    ns: &NetNs,
    secs: Duration,
    rep: &mut NetReport,
) -> Result<()> {
    let me = server_subject(s);
    let Driver::Oci {
        rootfs,
        annotations,
        ..
    } = &me.driver
    else {
        bail!("not an OCI subject");
    };
    let id = format!("hb{}-{}-net", ctx.tag, me.slug());
    let root = me.oci_root(ctx, &id);
    std::fs::create_dir_all(&root)?;
    let bundle = ctx.dir.join("bundles").join(format!("{}-net", me.slug()));
    let port = PORT.to_string();
    let args = ["/bin/httpd", "-f", "-p", &port, "-h", "/www"];
    let ann: Vec<(&str, &str)> = annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut config = workloads::oci_config(rootfs, &args, None, &ann);
    join_netns(&mut config, &ns.path)?;
    workloads::write_bundle(&bundle, &config)?;
    let pidfile = bundle.join("pid");
    let _ = std::fs::remove_file(&pidfile);
    let err = ctx.scratch(&format!("{}-net.err", me.slug()));
    let io = Io {
        stdout: None,
        stderr: err.clone(),
    };
    let t0 = Instant::now();
    let mut pid = 0;
    let r = (|| -> Result<()> {
        let (b, p) = (bundle.display().to_string(), pidfile.display().to_string());
        let c = procs::run(
            &me.oci_cmd(&root, &["create", "--bundle", &b, "--pid-file", &p, &id]),
            &io,
            &[],
            ctx.timeout,
        )?;
        if !c.success() {
            bail!("create: {} ({})", c.describe(), procs::tail(&err, 2));
        }
        pid = std::fs::read_to_string(&pidfile)
            .with_context(|| format!("reading {}", pidfile.display()))?
            .trim()
            .parse()
            .context("pid file content")?;
        procs::protect(pid);
        let st = procs::run(&me.oci_cmd(&root, &["start", &id]), &io, &[], ctx.timeout)?;
        if !st.success() {
            bail!("start: {} ({})", st.describe(), procs::tail(&err, 2));
        }
        let addr = SocketAddr::V4(SocketAddrV4::new(ns.sandbox_ip, PORT));
        wait_until_up(addr, pid, ctx.timeout).map_err(|e| {
            anyhow::anyhow!("server did not come up: {e} ({})", procs::tail(&err, 2))
        })?;
        rep.up_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
        let (lat, failed, took) = client(addr, secs, MAX_REQUESTS);
        rep.requests = lat.len() as u64;
        rep.failed = failed;
        rep.secs = took.as_secs_f64();
        rep.latency_ms = summarize(&lat);
        if rep.requests == 0 {
            bail!("no request answered ({failed} failed)");
        }
        rep.rps = Some(rep.requests as f64 / rep.secs);
        Ok(())
    })();
    // Clean-up, whatever happened: kill, reap, delete, forget the bundle.
    if pid > 0 {
        let _ = procs::run(
            &me.oci_cmd(&root, &["kill", &id, "9"]),
            &io,
            &[],
            Duration::from_secs(20),
        );
        if procs::wait_pid(pid, Duration::from_secs(20)).is_err() {
            procs::kill(pid, libc::SIGKILL);
            let _ = procs::wait_pid(pid, Duration::from_secs(5));
        }
        procs::unprotect(pid);
    }
    let d = procs::run(
        &me.oci_cmd(&root, &["delete", "--force", &id]),
        &io,
        &[],
        Duration::from_secs(20),
    );
    procs::reap_zombies();
    let _ = std::fs::remove_dir_all(&bundle);
    if let Driver::Oci {
        fresh_root: true, ..
    } = &me.driver
    {
        let _ = std::fs::remove_dir_all(&root);
    }
    r?;
    match d {
        Ok(f) if f.success() => Ok(()),
        Ok(f) => bail!("delete: {} ({})", f.describe(), procs::tail(&err, 2)),
        Err(e) => Err(e.context("delete")),
    }
}

/// Put the namespace's path into the spec's network namespace entry.
pub fn join_netns(config: &mut serde_json::Value, path: &Path) -> Result<()> {
    let nss = config["linux"]["namespaces"]
        .as_array_mut()
        .context("config has no linux.namespaces")?;
    nss.retain(|n| n["type"] != "network");
    nss.push(json!({"type": "network", "path": path}));
    Ok(())
}

/// Poll until one request is answered, the sandbox's process exits, or `timeout` passes.
fn wait_until_up(addr: SocketAddr, pid: i32, timeout: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let last = match request(addr, Duration::from_millis(500)) {
            Ok(()) => return Ok(()),
            Err(e) => format!("{e:#}"),
        };
        // Exited: gone, or a zombie nobody reaps while the bench protects it.
        if !hako_contract::proc::is_alive(pid, None) {
            return Err(format!("the sandbox exited (last try: {last})"));
        }
        if t0.elapsed() > timeout || procs::interrupted() {
            return Err(format!("no answer after {timeout:?} (last try: {last})"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Requests one after the other for `secs` (at most `max`): latencies of the answered ones
/// (ms), the number that failed, and the time taken.
pub fn client(addr: SocketAddr, secs: Duration, max: u64) -> (Vec<f64>, u64, Duration) {
    let mut lat = Vec::new();
    let mut failed = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < secs && (lat.len() as u64 + failed) < max {
        let t = Instant::now();
        match request(addr, REQUEST_TIMEOUT) {
            Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1e3),
            Err(_) => failed += 1,
        }
        // A server that died does not get another 5-s timeout per request.
        if failed >= 20 && failed as usize > lat.len() || procs::interrupted() {
            break;
        }
    }
    (lat, failed, t0.elapsed())
}

/// One HTTP/1.0 GET on its own connection; Ok when the status is 200 and the whole page came.
pub fn request(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let mut c = TcpStream::connect_timeout(&addr, timeout).context("connect")?;
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    c.write_all(b"GET /index.html HTTP/1.0\r\nHost: hako-bench\r\n\r\n")
        .context("send")?;
    let mut buf = Vec::with_capacity(512);
    c.take(64 * 1024).read_to_end(&mut buf).context("receive")?;
    check_answer(&buf)
}

/// A 200 status line and the page's end marker.
pub fn check_answer(buf: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(buf);
    let status = text.lines().next().unwrap_or("");
    let mut f = status.split_whitespace();
    if !(f.next().is_some_and(|v| v.starts_with("HTTP/1.")) && f.next() == Some("200")) {
        bail!("answer {:?}", status.chars().take(80).collect::<String>());
    }
    if !text.contains(PAGE_END) {
        bail!("short answer ({} bytes)", buf.len());
    }
    Ok(())
}

/// A network namespace the bench made, with one veth pair; removed on drop.
///
/// Made with iproute2's `ip`, which every host the runtimes run on has: a netlink crate would
/// add an async runtime for five commands run once per subject.
pub struct NetNs {
    pub name: String,
    pub path: PathBuf,
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub sandbox_ip: Ipv4Addr,
}

/// The names and addresses for run `tag` (the bench's pid), subject `index`: interface names
/// fit IFNAMSIZ, and the subnet `10.(200+index%50).(tag%250).0/24` differs per subject and
/// (mostly) per concurrent bench run.
pub fn names(tag: &str, index: usize) -> (String, String, String, Ipv4Addr, Ipv4Addr) {
    let t: u64 = tag.parse().unwrap_or(0);
    let ns = format!("hako-bench-{tag}-{index}");
    let host_if = format!("hbh{}x{index}", t % 10_000_000);
    let sb_if = format!("hbs{}x{index}", t % 10_000_000);
    let (a, b) = (200 + (index % 50) as u8, (t % 250) as u8);
    (
        ns,
        host_if,
        sb_if,
        Ipv4Addr::new(10, a, b, 1),
        Ipv4Addr::new(10, a, b, 2),
    )
}

fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

impl NetNs {
    pub fn create(tag: &str, index: usize) -> Result<NetNs> {
        let (name, host_if, sb_if, host_ip, sandbox_ip) = names(tag, index);
        // Left over by a killed earlier run with the same pid: start clean.
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &host_if]);
        ip(&["netns", "add", &name])?;
        let ns = NetNs {
            path: PathBuf::from("/run/netns").join(&name),
            name,
            host_if,
            host_ip,
            sandbox_ip,
        };
        let (h, s) = (format!("{host_ip}/24"), format!("{sandbox_ip}/24"));
        let n = ns.name.as_str();
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &sb_if,
            "netns",
            n,
        ])?;
        ip(&["addr", "add", &h, "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&["-n", n, "addr", "add", &s, "dev", &sb_if])?;
        ip(&["-n", n, "link", "set", &sb_if, "up"])?;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end and so the pair; the host end is
        // deleted by name too, in case something still held the namespace open.
        let _ = ip(&["netns", "del", &self.name]);
        if Path::new("/sys/class/net").join(&self.host_if).exists() {
            let _ = ip(&["link", "del", &self.host_if]);
        }
    }
}

/// The table of the text report.
pub fn table(subjects: &[SubjectReport]) -> String {
    let rows: Vec<(&SubjectReport, &NetReport)> = subjects
        .iter()
        .filter_map(|s| s.net.as_ref().map(|n| (s, n)))
        .collect();
    let mut o = String::new();
    if rows.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\nHTTP: busybox httpd in the sandbox, client in the bench (HTTP/1.0, one connection per request, one at a time); ratio = req/s / peer's (higher is better)"
    );
    let _ = writeln!(
        o,
        "{:<10} {:<21} {:>9} {:>8} {:>6} {:>8} {:>8} {:>9} {:>7}  peer / note",
        "category",
        "subject",
        "req/s",
        "requests",
        "failed",
        "lat-med",
        "lat-p90",
        "up-ms",
        "ratio"
    );
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    for (s, n) in rows {
        let note = match (&n.skipped, &n.peer) {
            (Some(why), _) => why.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => "no peer: documented".into(),
        };
        let _ = writeln!(
            o,
            "{:<10} {:<21} {:>9} {:>8} {:>6} {:>8} {:>8} {:>9} {:>7}  {note}",
            s.category.name(),
            s.name,
            f(n.rps, 1),
            n.requests,
            n.failed,
            f(n.latency_ms.map(|l| l.median), 3),
            f(n.latency_ms.map(|l| l.p90), 3),
            f(n.up_ms, 0),
            n.rps_ratio.map_or("-".to_string(), |r| format!("{r:.2}x")),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let ok = format!("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n{PAGE}");
        check_answer(ok.as_bytes()).unwrap();
        let e = check_answer(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap_err();
        assert!(format!("{e}").contains("404"), "{e}");
        let short = format!("HTTP/1.0 200 OK\r\n\r\n{}", &PAGE[..10]);
        assert!(check_answer(short.as_bytes()).is_err());
        assert!(check_answer(b"").is_err());
    }

    #[test]
    fn names_fit_and_differ_per_subject() {
        let (ns, h, s, hip, sip) = names("4194304", 7);
        assert_eq!(ns, "hako-bench-4194304-7");
        assert!(h.len() <= 15 && s.len() <= 15, "{h} {s}");
        assert_ne!(h, s);
        assert_eq!(hip.octets()[..3], sip.octets()[..3]);
        assert_eq!((hip.octets()[3], sip.octets()[3]), (1, 2));
        assert_ne!(names("4194304", 6).3, hip);
    }

    #[test]
    fn the_network_entry_gets_the_path() {
        let mut c = workloads::oci_config(Path::new("/r"), &["/bin/httpd"], None, &[]);
        join_netns(&mut c, Path::new("/run/netns/x")).unwrap();
        let nets: Vec<_> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "network")
            .collect();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0]["path"], "/run/netns/x");
    }

    /// The client against a server on loopback that answers like busybox httpd.
    #[test]
    fn client_counts_answered_requests_on_loopback() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            for (i, c) in l.incoming().enumerate().take(6) {
                let mut c = c.unwrap();
                let mut req = [0u8; 256];
                let _ = c.read(&mut req);
                let ans = if i == 2 {
                    "HTTP/1.0 500 Oops\r\n\r\n".to_string()
                } else {
                    format!("HTTP/1.0 200 OK\r\n\r\n{PAGE}")
                };
                let _ = c.write_all(ans.as_bytes());
            }
        });
        let (lat, failed, _) = client(addr, Duration::from_secs(30), 6);
        srv.join().unwrap();
        assert_eq!((lat.len(), failed), (5, 1));
        assert!(lat.iter().all(|x| *x >= 0.0));
    }
}
