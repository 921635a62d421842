//! The host process's exec socket: `hako exec` clients connect there once the workload runs, and
//! the [`Hub`] multiplexes their frames onto the agent port by id (see [`crate::exec`]).

use anyhow::{Context, Result};
use hako_agent::proto::{Frame, FrameReader};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host process's exec socket, in the sandbox's state directory.
pub const EXEC_SOCK: &str = "microvm-exec.sock";

/// A client that does not read its output for this long is dropped (and its process killed)
/// rather than stall the whole sandbox.
pub(crate) const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A socket path that fits in `sun_path` (108 bytes): the path itself when short enough, else
/// the same file reached through an `O_PATH` fd of its directory (`/proc/self/fd/N/name`); the
/// fd must stay open while the path is used.
pub(crate) fn short_path(path: &Path) -> Result<(PathBuf, Option<std::fs::File>)> {
    if path.as_os_str().len() < 100 {
        return Ok((path.to_path_buf(), None));
    }
    let dir = path.parent().context("exec socket path has no directory")?;
    let name = path.file_name().context("exec socket path has no name")?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .with_context(|| format!("opening {}", dir.display()))?;
    let p = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())).join(name);
    Ok((p, Some(f)))
}

/// One connected `hako exec` client.
pub(crate) struct Client {
    id: u32,
    sock: UnixStream,
    reader: FrameReader,
    /// The Exec frame went to the guest.
    requested: bool,
}

/// The host process's side: the listening socket and the clients, multiplexed onto the agent
/// port by id.
pub struct Hub {
    listener: UnixListener,
    clients: Vec<Client>,
    next_id: u32,
    buf: Vec<u8>,
}

impl Hub {
    /// Listen on `path` (made once the workload runs: before that, a client's connect fails and
    /// `hako exec` says the sandbox is not started).
    pub fn bind(path: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        let (p, _dir) = short_path(path)?;
        let listener =
            UnixListener::bind(&p).with_context(|| format!("binding {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            clients: vec![],
            next_id: 1,
            buf: vec![0u8; 32 * 1024],
        })
    }

    /// The fds to poll for reading: the listener, then each client.
    pub fn poll_fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.iter().map(|c| c.sock.as_raw_fd()))
            .collect()
    }

    /// Handle the fds of the last [`Hub::poll_fds`] that poll found readable. Matched by fd,
    /// not position: frames from the guest may have removed clients since the poll.
    pub fn service(&mut self, ready: &[RawFd], port: &mut impl Write) -> Result<()> {
        if ready.contains(&self.listener.as_raw_fd()) {
            while let Ok((sock, _)) = self.listener.accept() {
                sock.set_nonblocking(false)?;
                sock.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))?;
                let id = self.next_id;
                self.next_id += 1;
                self.clients.push(Client {
                    id,
                    sock,
                    reader: FrameReader::new(),
                    requested: false,
                });
            }
        }
        let mut gone = vec![];
        for c in self.clients.iter_mut() {
            if !ready.contains(&c.sock.as_raw_fd()) {
                continue;
            }
            // Never block here: the socket stays blocking for writes (with a timeout).
            // SAFETY: recv into our buffer.
            let n = unsafe {
                libc::recv(
                    c.sock.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            let open = match n {
                0 => false,
                n if n > 0 => {
                    c.reader.push(&self.buf[..n as usize]);
                    true
                }
                _ => matches!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR)
                ),
            };
            loop {
                match c.reader.next_frame() {
                    Ok(Some(f)) => {
                        let f = match f {
                            Frame::Exec(_) if !c.requested => {
                                c.requested = true;
                                f
                            }
                            Frame::Stdin(_)
                            | Frame::StdinEof
                            | Frame::Signal(_)
                            | Frame::Winsize(..)
                                if c.requested =>
                            {
                                f
                            }
                            _ => continue,
                        };
                        port.write_all(&Frame::Tagged(c.id, Box::new(f)).encode())
                            .context("writing the agent port")?;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        gone.push(c.id);
                        break;
                    }
                }
            }
            if !open {
                gone.push(c.id);
            }
        }
        for id in gone {
            self.drop_client(id, port)?;
        }
        Ok(())
    }

    /// A client went away before its process ended: the process goes too (as when the pid an
    /// engine holds for an exec is killed).
    fn drop_client(&mut self, id: u32, port: &mut impl Write) -> Result<()> {
        if let Some(i) = self.clients.iter().position(|c| c.id == id) {
            let c = self.clients.remove(i);
            if c.requested {
                port.write_all(&Frame::Tagged(id, Box::new(Frame::Signal(libc::SIGKILL))).encode())
                    .context("writing the agent port")?;
            }
        }
        Ok(())
    }

    /// A frame from the guest about exec `id`: to its client. Exit and Error are its last.
    pub fn from_guest(&mut self, id: u32, f: Frame, port: &mut impl Write) -> Result<()> {
        let Some(i) = self.clients.iter().position(|c| c.id == id) else {
            return Ok(());
        };
        let last = matches!(f, Frame::Exit(_) | Frame::Error(_));
        if self.clients[i].sock.write_all(&f.encode()).is_err() {
            return self.drop_client(id, port);
        }
        if last {
            self.clients.remove(i);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn frames(bytes: &[u8]) -> Vec<Frame> {
        let mut r = FrameReader::new();
        r.push(bytes);
        let mut v = vec![];
        while let Some(f) = r.next_frame().unwrap() {
            v.push(f);
        }
        v
    }

    /// Poll the hub's fds once (short timeout) and service what is ready, as the host does.
    fn turn(hub: &mut Hub, port: &mut Vec<u8>) {
        let fds = hub.poll_fds();
        let mut p: Vec<libc::pollfd> = fds
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid pollfd array.
        unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, 200) };
        let ready: Vec<RawFd> = p.iter().filter(|f| f.revents != 0).map(|f| f.fd).collect();
        hub.service(&ready, port).unwrap();
    }

    fn read_frame(c: &mut UnixStream, r: &mut FrameReader) -> Frame {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = r.next_frame().unwrap() {
                return f;
            }
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "client socket closed");
            r.push(&buf[..n]);
        }
    }

    #[test]
    fn hub_tags_clients_frames_and_routes_the_guests() {
        let dir = std::env::temp_dir().join(format!("hako-exec-hub-{}", std::process::id()));
        // A path over sun_path's limit goes through /proc/self/fd.
        let deep = dir.join("d".repeat(100));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join(EXEC_SOCK);
        assert!(path.as_os_str().len() > 108);
        let mut hub = Hub::bind(&path).unwrap();
        let mut port = vec![];

        let connect = || {
            let (p, _dir) = short_path(&path).unwrap();
            UnixStream::connect(p).unwrap()
        };
        let mut a = connect();
        let mut b = connect();
        a.write_all(&Frame::Exec(r#"{"args":["a"]}"#.into()).encode())
            .unwrap();
        // Frames before the Exec request are dropped.
        b.write_all(&Frame::Stdin(b"too early".to_vec()).encode())
            .unwrap();
        b.write_all(&Frame::Exec(r#"{"args":["b"]}"#.into()).encode())
            .unwrap();
        b.write_all(&Frame::Stdin(b"input".to_vec()).encode())
            .unwrap();
        // A client may not signal every guest process.
        b.write_all(&Frame::SignalAll(9).encode()).unwrap();
        for _ in 0..4 {
            turn(&mut hub, &mut port);
        }
        let got = frames(&port);
        assert_eq!(
            got,
            vec![
                Frame::Tagged(1, Box::new(Frame::Exec(r#"{"args":["a"]}"#.into()))),
                Frame::Tagged(2, Box::new(Frame::Exec(r#"{"args":["b"]}"#.into()))),
                Frame::Tagged(2, Box::new(Frame::Stdin(b"input".to_vec()))),
            ]
        );
        port.clear();

        // Guest frames reach the right client; Exit is a client's last.
        let (mut ra, mut rb) = (FrameReader::new(), FrameReader::new());
        hub.from_guest(2, Frame::Ready, &mut port).unwrap();
        hub.from_guest(1, Frame::Error("exec \"a\": not found".into()), &mut port)
            .unwrap();
        hub.from_guest(2, Frame::Stdout(b"out".to_vec()), &mut port)
            .unwrap();
        hub.from_guest(
            2,
            Frame::Exit(hako_agent::proto::ExitStatus::Exited(3)),
            &mut port,
        )
        .unwrap();
        assert_eq!(
            read_frame(&mut a, &mut ra),
            Frame::Error("exec \"a\": not found".into())
        );
        assert_eq!(read_frame(&mut b, &mut rb), Frame::Ready);
        assert_eq!(read_frame(&mut b, &mut rb), Frame::Stdout(b"out".to_vec()));
        assert_eq!(
            read_frame(&mut b, &mut rb),
            Frame::Exit(hako_agent::proto::ExitStatus::Exited(3))
        );
        assert!(hub.clients.is_empty(), "both clients are done");
        assert!(port.is_empty());

        // A client that goes away while its process runs gets that process killed.
        let mut c = connect();
        c.write_all(&Frame::Exec(r#"{"args":["c"]}"#.into()).encode())
            .unwrap();
        turn(&mut hub, &mut port);
        turn(&mut hub, &mut port);
        port.clear();
        drop(c);
        turn(&mut hub, &mut port);
        assert_eq!(
            frames(&port),
            vec![Frame::Tagged(3, Box::new(Frame::Signal(libc::SIGKILL)))]
        );
        assert!(hub.clients.is_empty());
        // A frame for an exec that is gone goes nowhere.
        hub.from_guest(3, Frame::Stdout(b"late".to_vec()), &mut port)
            .unwrap();
        drop(hub);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
