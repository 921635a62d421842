//! Socket addresses: the workload's, checked and rewritten for the host (AF_UNIX paths resolved
//! inside the sandbox's root and named through the sentry's own `/proc/self/fd`), and the host's
//! given back as the sandbox named them; the socket file a bind makes.

use super::*;

thread_local! {
    /// Host name of a bound AF_UNIX socket ("<fd>/<name>" under the sentry's /proc/self/fd) ->
    /// the sandbox's path, to give addresses back as the sandbox named them. A later bind
    /// through the same descriptor number and name replaces an entry: names only, never access.
    pub(super) static NAMES: RefCell<HashMap<Vec<u8>, Vec<u8>>> = RefCell::new(HashMap::new());
}

/// What a socket address is used for: a path is created by bind, opened by the others.
#[derive(PartialEq, Clone, Copy)]
pub(super) enum Use {
    Bind,
    Reach,
}

/// A socket address ready for the host, with the descriptors its path form needs alive.
pub(super) struct HostAddr {
    pub(super) bytes: Vec<u8>,
    /// An AF_UNIX path, relative to the sentry's /proc/self/fd (see `with_proc_cwd`).
    pub(super) path: bool,
    pub(super) _keep: Vec<OwnedFd>,
    /// For bind: (host name, the sandbox's path).
    pub(super) name: Option<(Vec<u8>, Vec<u8>)>,
}

/// Run `f` with the sentry's working directory at its own `/proc/self/fd` (opened beneath the
/// verified host procfs descriptor: `/proc` in the sentry's mount namespace is the sandbox's,
/// see hostproc), so that an AF_UNIX path "<fd>" or "<fd>/<name>" names, through the kernel's
/// link for descriptor <fd>, a socket file or directory the sentry resolved inside the root.
/// No host path is involved, and the workload cannot swap a component: the link is the
/// descriptor itself. The sentry is single-threaded, so nothing else sees the changed cwd.
pub(super) fn with_proc_cwd<R>(f: impl FnOnce() -> R) -> Result<R, i32> {
    let dir = crate::hostproc::open("self/fd", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    // SAFETY: open the current directory as an O_PATH descriptor.
    let cwd = unsafe { libc::open(c".".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if cwd < 0 {
        return Err(errno());
    }
    // SAFETY: a fresh descriptor.
    let cwd = unsafe { OwnedFd::from_raw_fd(cwd) };
    // SAFETY: fchdir to our own directory descriptor; the sentry is single-threaded.
    if unsafe { libc::fchdir(dir.as_raw_fd()) } != 0 {
        return Err(errno());
    }
    let r = f();
    // SAFETY: back to where we were.
    unsafe { libc::fchdir(cwd.as_raw_fd()) };
    Ok(r)
}

/// The workload's socket address at `addr` (`len` bytes), checked and rewritten for the host.
pub(super) fn host_addr<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    h: RawFd,
    addr: u64,
    len: usize,
    what: Use,
) -> Result<HostAddr, i32> {
    if !(2..=ADDR_MAX).contains(&len) {
        return Err(libc::EINVAL);
    }
    let b = k.read_bytes(tid, addr, len)?;
    let fam = u16::from_ne_bytes([b[0], b[1]]) as i32;
    let dom = sockopt_int(h, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if fam != dom && !(fam == libc::AF_UNSPEC && what == Use::Reach) {
        return Err(libc::EAFNOSUPPORT);
    }
    if fam != libc::AF_UNIX || len <= 2 || b[2] == 0 {
        // Inet addresses, unnamed and abstract AF_UNIX names: as given (the abstract namespace
        // is the network namespace's, which is the sandbox's).
        return Ok(HostAddr {
            bytes: b,
            path: false,
            _keep: Vec::new(),
            name: None,
        });
    }
    let raw = &b[2..];
    let path = &raw[..raw.iter().position(|&x| x == 0).unwrap_or(raw.len())];
    let path = std::str::from_utf8(path)
        .map_err(|_| libc::EINVAL)?
        .to_string();
    let creds = k.creds(tid);
    let (dirfd, tail, keep_name) = match what {
        Use::Bind => {
            let (pfd, name) = k.host_parent(tid, libc::AT_FDCWD, &path)?;
            crate::kernel::creds::may_entry(
                pfd.as_raw_fd(),
                &name,
                &creds,
                crate::kernel::creds::Entry::Create,
            )?;
            let n = name.to_bytes().to_vec();
            (pfd, n, true)
        }
        Use::Reach => {
            let rel = match k.lookup(tid, libc::AT_FDCWD, &path, true)? {
                Node::Host(rel) => rel,
                Node::Synth(_) | Node::Removed(_) => return Err(libc::ECONNREFUSED),
            };
            k.may_walk(tid, &rel)?;
            let fd = k.vfs.open(&rel, libc::O_PATH, 0)?;
            let st = fstat_fd(fd.as_raw_fd())?;
            if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
                return Err(libc::ECONNREFUSED);
            }
            if !may(&st, &creds, 2) {
                return Err(libc::EACCES);
            }
            (fd, Vec::new(), false)
        }
    };
    let mut host = format!("{}", dirfd.as_raw_fd()).into_bytes();
    if !tail.is_empty() {
        host.push(b'/');
        host.extend_from_slice(&tail);
    }
    if host.len() >= 108 {
        return Err(libc::ENAMETOOLONG);
    }
    let mut bytes = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    bytes.extend_from_slice(&host);
    bytes.push(0);
    Ok(HostAddr {
        bytes,
        path: true,
        _keep: vec![dirfd],
        // Linux gives a bound name back as bind was given it (relative or not).
        name: keep_name.then(|| (host, path.into_bytes())),
    })
}

/// A host socket address as the sandbox should see it (AF_UNIX names the sentry bound for the
/// sandbox are given back as the sandbox's paths).
pub(super) fn guest_addr(b: &[u8]) -> Vec<u8> {
    if b.len() > 2 && u16::from_ne_bytes([b[0], b[1]]) as i32 == libc::AF_UNIX && b[2] != 0 {
        let raw = &b[2..];
        let p = &raw[..raw.iter().position(|&x| x == 0).unwrap_or(raw.len())];
        if let Some(v) = NAMES.with(|m| m.borrow().get(p).cloned()) {
            let mut out = b[..2].to_vec();
            out.extend_from_slice(&v);
            out.push(0);
            return out;
        }
    }
    b.to_vec()
}

/// Give the workload a socket address: at most `*lenp` bytes at `addr`, the full length in
/// `*lenp`. Nothing when `addr` is null.
pub(super) fn put_addr<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    addr: u64,
    lenp: u64,
    host: &[u8],
) -> Result<(), i32> {
    if addr == 0 || lenp == 0 {
        return Ok(());
    }
    let g = guest_addr(host);
    let room = k.read_val::<u32>(tid, lenp)? as usize;
    k.write_bytes(tid, addr, &g[..g.len().min(room)])?;
    k.write_val(tid, lenp, &(g.len() as u32))
}

/// The socket file bind just made (`host`: "<dirfd>/<name>") gets the mode and owner Linux
/// gives it: 0777 less the caller's umask, the caller's virtual ids (the sentry made it). It
/// is reached through an O_PATH descriptor that does not follow a symlink, and only if it is a
/// socket: the sandbox may have replaced the name meanwhile.
pub(super) fn own_socket_file<P: Platform>(k: &Kernel<P>, tid: i32, dir: RawFd, host: &[u8]) {
    let Some(slash) = host.iter().position(|&b| b == b'/') else {
        return;
    };
    let Ok(name) = std::ffi::CString::new(&host[slash + 1..]) else {
        return;
    };
    let (um, cr) = (k.proc_of(tid).borrow().umask, k.creds(tid));
    // SAFETY: openat on our directory fd; the result is ours.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    // SAFETY: just opened, ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if !fstat_fd(fd.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK) {
        return;
    }
    // SAFETY: attribute changes on our O_PATH descriptor itself (AT_EMPTY_PATH).
    unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            0o777 & !um,
            libc::AT_EMPTY_PATH,
        );
        if cr.euid != 0 {
            libc::fchownat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                cr.euid,
                cr.egid,
                libc::AT_EMPTY_PATH,
            );
        }
    }
}
