//! `hako exec`'s side: ask the sentry for the process, then forward signals to it and exit as
//! it does.

use super::*;

/// Ask the sentry listening at `sock_path` to run `process`, with this process's stdio (or a
/// new pty whose master goes to `console_socket`). Once it runs, fork the exec client, which
/// forwards signals and exits as the process does. Returns the client's pid.
pub fn start(sock_path: &Path, process: &Process, console_socket: Option<&Path>) -> Result<i32> {
    let (p, _dir) = short_path(sock_path)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket")?;
    let addr = UnixAddr::new(&p).context("exec socket path")?;
    match nix::sys::socket::connect(sock.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => {
            bail!("the container's workload is not running (exec needs a started sandbox)")
        }
        Err(nix::errno::Errno::ECONNREFUSED) => {
            bail!("the container's workload has ended (its sentry no longer answers)")
        }
        Err(e) => return Err(e).context("connecting to the sandbox's sentry"),
    }
    let tty = process.terminal().unwrap_or(false);
    let slave = match (tty, console_socket) {
        (true, Some(c)) => Some(hako_contract::console::send_pty_master(c)?),
        (true, None) => bail!("exec with a terminal needs a console socket"),
        _ => None,
    };
    let stdio: Vec<RawFd> = match &slave {
        Some(s) => vec![s.as_raw_fd(); 3],
        None => vec![0, 1, 2],
    };
    for &fd in &stdio {
        // SAFETY: F_GETFD probe.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            bail!("stdio descriptor {fd} is not open");
        }
    }
    // The signals the client forwards are blocked from here on, in `hako exec` too (it blocks
    // them itself once this returns, to forward them to the client): one that comes as soon as
    // the process runs waits to be forwarded instead of killing `hako exec` or the client.
    // SAFETY: the signal mask of the single-threaded `hako exec`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in hako_contract::signal::forwarded() {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    send(
        sock.as_raw_fd(),
        &Msg::Exec {
            process: Box::new(process.clone()),
            tty,
        },
        &stdio,
    )
    .context("sending the exec request")?;
    drop(slave);
    match recv(sock.as_raw_fd(), false)? {
        Some((Msg::Started { .. }, _)) => {}
        Some((Msg::Error(e), _)) => bail!("{e}"),
        Some((m, _)) => bail!("unexpected answer from the sentry: {m:?}"),
        None => bail!("the sandbox ended before the process started"),
    }
    // SAFETY: `hako exec` is single-threaded; the child never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        let code = run_client(sock);
        // SAFETY: leaving the forked client.
        unsafe { libc::_exit(code) }
    }
    Ok(pid)
}

/// The exec client: forwards the signals it gets, and ends as the process ended (its exit code,
/// or the same signal).
fn run_client(sock: OwnedFd) -> i32 {
    // Nothing of `hako exec`'s but stdio and the socket: its state lock above all, which other
    // commands on the container wait for while it is held.
    let s = sock.as_raw_fd() as u32;
    // SAFETY: closing descriptors of this forked, single-threaded process.
    unsafe {
        if s > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, s - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, s + 1, u32::MAX, 0u32);
    }
    // SAFETY: signal set-up in the single-threaded client.
    let sigfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in hako_contract::signal::forwarded() {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    };
    loop {
        let mut p = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid pollfd array.
        if unsafe { libc::poll(p.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if p[1].revents & libc::POLLIN != 0 {
            // SAFETY: reading one siginfo from our signalfd.
            let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let n = unsafe {
                libc::read(
                    sigfd,
                    (&mut si as *mut libc::signalfd_siginfo).cast(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if n > 0 {
                let _ = send(sock.as_raw_fd(), &Msg::Signal(si.ssi_signo as i32), &[]);
            }
        }
        if p[0].revents != 0 {
            match recv(sock.as_raw_fd(), false) {
                Ok(Some((Msg::Exit { signaled, code }, _))) => {
                    if signaled {
                        return hako_contract::signal::die_like(code);
                    }
                    return code;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    eprintln!("hako: sentry: the sandbox ended before the exec'd process reported its exit status");
                    return 255;
                }
            }
        }
    }
}
