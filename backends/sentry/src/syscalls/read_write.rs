//! read, write and their vectored and positioned forms, lseek, sendfile and copy_file_range.
//! Stream reads and writes never block the sentry: an empty pipe or a full one parks the task
//! until its host descriptor is ready. On the notification platforms a pipe's reads and writes run
//! in the task instead (passthrough.rs).

use super::{err, errno, ready, Call, Outcome, CHUNK};
use crate::kernel::creds::FSETID;
use crate::kernel::{FileRef, Kernel};
use crate::platform::Platform;
use crate::vfs::{fstat_fd, DevKind, FileKind, HostKind, OpenFile, Pass};
use std::os::fd::{AsRawFd, RawFd};
use syscalls::Sysno;

/// At most this much per write to inherited stdio that is not non-blocking.
const STDIO_CHUNK: usize = 4096;

pub fn read<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let f = tri!(k.file(tid, a[0]));
    if matches!(f.borrow().kind, FileKind::Signal { .. }) {
        return super::signalfd::read(k, c, &f);
    }
    if let Some(native) = super::passthrough::read(k, c, &f) {
        return native;
    }
    do_read(k, c, &f, a[1], a[2] as usize, None)
}

pub fn pread64<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let f = tri!(k.file(tid, a[0]));
    if a[3] as i64 > 0 && f.borrow().is_stream() {
        return err(libc::ESPIPE);
    }
    do_read(k, c, &f, a[1], a[2] as usize, Some(a[3] as i64))
}

/// readv, preadv, preadv2.
pub fn readv<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let f = tri!(k.file(tid, a[0]));
    if s == readv {
        if let Some(native) = super::passthrough::read(k, c, &f) {
            return native;
        }
    }
    let iov = match iovecs(k, tid, a[1], a[2]) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    // Read into the first non-empty buffer (a short read is allowed).
    let Some(&(base, len)) = iov.iter().find(|v| v.1 > 0) else {
        return Outcome::Ret(0);
    };
    let off = if s == readv || a[3] as i64 == -1 {
        None
    } else {
        Some(a[3] as i64)
    };
    do_read(k, c, &f, base, len, off)
}

/// write, pwrite64.
pub fn write<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let f = tri!(k.file(tid, a[0]));
    if s == Sysno::write {
        if let Some(native) = super::passthrough::write(k, c, &f) {
            return native;
        }
    }
    let off = if s == pwrite64 {
        Some(a[3] as i64)
    } else {
        None
    };
    write_iov(k, c, &f, &[(a[1], a[2] as usize)], off)
}

/// writev, pwritev, pwritev2.
pub fn writev<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    let f = tri!(k.file(tid, a[0]));
    if s == writev {
        if let Some(native) = super::passthrough::write(k, c, &f) {
            return native;
        }
    }
    let iov = match iovecs(k, tid, a[1], a[2]) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let off = if s == writev || a[3] as i64 == -1 {
        None
    } else {
        Some(a[3] as i64)
    };
    write_iov(k, c, &f, &iov, off)
}

/// Write the tracee's buffers `iov` to `f`. Into a stream (a pipe, a socket) the workload has
/// not made non-blocking, the call ends only when every byte is written, as Linux's
/// ([`until_all`]); a reader closing a pipe gives the count, then EPIPE on the next write. Each
/// round copies from the tracee only what the pipe can take (`pipe_room_cap`). Any other file:
/// one write of at most [`CHUNK`], which may be short.
fn write_iov<P: Platform>(
    k: &mut Kernel<P>,
    c: &mut Call,
    f: &FileRef,
    iov: &[(u64, usize)],
    off: Option<i64>,
) -> Outcome {
    let total = iov.iter().fold(0usize, |t, v| t.saturating_add(v.1));
    let blocking_stream = off.is_none() && {
        let fb = f.borrow();
        fb.is_stream() && fb.flags & libc::O_NONBLOCK == 0
    };
    let mut round = |c: &Call, done: usize| {
        let want = pipe_room_cap(f, (total - done).min(CHUNK));
        match gather(k, c.tid, iov, done, want) {
            Ok(data) => do_write(k, c, f, &data, off),
            Err(e) => err(e),
        }
    };
    if !blocking_stream {
        return round(c, 0);
    }
    let h = f.borrow().host_fd().unwrap_or(-1);
    until_all(c, h, total, round)
}

/// The progress of a blocking write or send of `total` bytes to host fd `h`, which ends only
/// when every byte is moved, as Linux's does. `round(c, done)` moves some of the bytes from
/// byte `done` on. When `h` is full the call parks, keeping in `c.done` how many bytes it has
/// moved, and goes on from there when retried. A signal ends that wait with the count
/// (`EventLoop::interrupt_parked`); so does an error after some bytes (EPIPE, SO_SNDTIMEO's
/// EAGAIN, a fault in the tracee's buffer). After [`CHUNK`] bytes in one go it parks too, so
/// one huge write does not hold the sentry from its other tasks.
pub(crate) fn until_all(
    c: &mut Call,
    h: RawFd,
    total: usize,
    mut round: impl FnMut(&Call, usize) -> Outcome,
) -> Outcome {
    let mut done = c.done as usize;
    let start = done;
    loop {
        match round(c, done) {
            Outcome::Ret(n) if n >= 0 => {
                done += n as usize;
                if done >= total || n == 0 {
                    return Outcome::Ret(done as i64);
                }
                if done - start >= CHUNK {
                    // h is still writable, so the retry comes at once.
                    c.done = done as u64;
                    return Outcome::Park(vec![(h, libc::POLLOUT)], c.deadline);
                }
            }
            Outcome::Ret(_) if done > 0 => return Outcome::Ret(done as i64),
            Outcome::Park(fds, dl) => {
                c.done = done as u64;
                return Outcome::Park(fds, dl);
            }
            out => return out,
        }
    }
}

/// Up to `max` bytes of the tracee's buffers `iov`, from byte `skip` of their concatenation.
pub(crate) fn gather<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    iov: &[(u64, usize)],
    mut skip: usize,
    max: usize,
) -> Result<Vec<u8>, i32> {
    let mut data = Vec::with_capacity(max);
    for &(base, len) in iov {
        if data.len() >= max {
            break;
        }
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = (len - skip).min(max - data.len());
        data.extend_from_slice(&k.read_bytes(tid, base + skip as u64, n)?);
        skip = 0;
    }
    Ok(data)
}

/// How many bytes of a `count`-byte write to copy from the tracee. Into a pipe with less free
/// room than that, a write of more than `PIPE_BUF` (which may be partial) copies only what fits,
/// and never less than `PIPE_BUF`: otherwise `dd bs=1M` into a pipe whose reader takes 4 KiB at a
/// time had the whole MiB copied for each 4 KiB written (issue 17, docs/benchmarks.md). Writes of
/// `PIPE_BUF` or less are left whole, so they stay atomic. Anything but a pipe: `count`.
fn pipe_room_cap(f: &FileRef, count: usize) -> usize {
    if count <= libc::PIPE_BUF {
        return count;
    }
    let fb = f.borrow();
    let FileKind::Host {
        fd,
        kind: HostKind::Stream,
    } = &fb.kind
    else {
        return count;
    };
    let h = fd.as_raw_fd();
    // SAFETY: fcntl and ioctl queries on our own descriptor, into a local integer.
    let (size, queued) = unsafe {
        let size = libc::fcntl(h, libc::F_GETPIPE_SZ);
        let mut queued: libc::c_int = 0;
        if size <= 0 || libc::ioctl(h, libc::FIONREAD, &mut queued) != 0 {
            return count;
        }
        (size, queued)
    };
    let room = (size - queued).max(0) as usize;
    count.min(room.max(libc::PIPE_BUF))
}

pub fn lseek<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    let (a, tid) = (c.a, c.tid);
    let f = tri!(k.file(tid, a[0]));
    let mut fb = f.borrow_mut();
    match &mut fb.kind {
        FileKind::Signal { .. } => err(libc::ESPIPE),
        FileKind::Host { fd, kind } => {
            if *kind == HostKind::Stream {
                return err(libc::ESPIPE);
            }
            // SAFETY: lseek on our fd.
            let n = unsafe { libc::lseek(fd.as_raw_fd(), a[1] as i64, a[2] as i32) };
            if n < 0 {
                err(errno())
            } else {
                Outcome::Ret(n)
            }
        }
        FileKind::Synth { data, pos } => {
            let base = match a[2] as i32 {
                libc::SEEK_SET => 0,
                libc::SEEK_CUR => *pos as i64,
                libc::SEEK_END => data.len() as i64,
                _ => return err(libc::EINVAL),
            };
            let n = base + a[1] as i64;
            if n < 0 {
                return err(libc::EINVAL);
            }
            *pos = n as usize;
            Outcome::Ret(n)
        }
        FileKind::Dir { pos, .. } => {
            if a[2] as i32 == libc::SEEK_SET {
                *pos = a[1] as usize;
                Outcome::Ret(a[1] as i64)
            } else {
                err(libc::EINVAL)
            }
        }
        FileKind::Dev(_) => Outcome::Ret(0),
        FileKind::Epoll(_) => err(libc::ESPIPE),
    }
}

/// sendfile, copy_file_range.
pub fn sendfile<P: Platform>(k: &mut Kernel<P>, c: &mut Call) -> Outcome {
    use Sysno::*;
    let (a, tid, s) = (c.a, c.tid, c.s);
    // Copy through the sentry: read then write, at most one chunk. Stream inputs are
    // refused (EINVAL), as callers then fall back to read/write.
    let (out_fd, in_fd, off_ptr, count) = if s == sendfile {
        (a[0], a[1], a[2], a[3])
    } else {
        (a[2], a[0], a[1], a[4])
    };
    // copy_file_range's own: an output offset pointer (the output file's offset then stays)
    // and flags, of which Linux defines none.
    let out_ptr = if s == sendfile { 0 } else { a[3] };
    if s != sendfile && a[5] != 0 {
        return err(libc::EINVAL);
    }
    let fin = tri!(k.file(tid, in_fd));
    let fout = tri!(k.file(tid, out_fd));
    if s == copy_file_range {
        // Linux copies between regular files only: a directory at either end is EISDIR, a
        // pipe, socket or device EINVAL (before the access checks below).
        let mut devs = [0; 2];
        for (dev, f) in devs.iter_mut().zip([&fin, &fout]) {
            let st = tri!(super::stat::file_stat(&f.borrow()));
            let mode = st.st_mode & libc::S_IFMT;
            if mode == libc::S_IFDIR {
                return err(libc::EISDIR);
            }
            if mode != libc::S_IFREG {
                return err(libc::EINVAL);
            }
            *dev = st.st_dev;
        }
        // Then the input must be open for reading, the output for writing and not O_APPEND
        // (EBADF); then both must be on one file system, else EXDEV (Linux 5.19 and later, for
        // any count and offsets: they are looked at after).
        let out_flags = fout.borrow().flags;
        if fin.borrow().flags & libc::O_ACCMODE == libc::O_WRONLY
            || out_flags & libc::O_ACCMODE == libc::O_RDONLY
            || out_flags & libc::O_APPEND != 0
        {
            return err(libc::EBADF);
        }
        if devs[0] != devs[1] {
            return err(libc::EXDEV);
        }
    }
    if fin.borrow().flags & libc::O_ACCMODE == libc::O_WRONLY {
        return err(libc::EBADF);
    }
    if fin.borrow().is_stream() || fin.borrow().is_dir() {
        return err(libc::EINVAL);
    }
    let out_off = if out_ptr != 0 {
        if fout.borrow().flags & libc::O_APPEND != 0 {
            return err(libc::EBADF);
        }
        match k.read_val::<i64>(tid, out_ptr) {
            Ok(v) if v < 0 => return err(libc::EINVAL),
            Ok(v) => Some(v),
            Err(e) => return err(e),
        }
    } else {
        None
    };
    let h = fin.borrow().host_fd();
    let want = (count as usize).min(CHUNK);
    if off_ptr == 0 {
        if let Some(h) = h {
            return sendfile_at_offset(k, c, &fout, h, want, out_off, out_ptr);
        }
    }
    let pos = if off_ptr != 0 {
        match k.read_val::<i64>(tid, off_ptr) {
            Ok(v) => v,
            Err(e) => return err(e),
        }
    } else {
        match &fin.borrow().kind {
            FileKind::Synth { pos, .. } => *pos as i64,
            _ => 0,
        }
    };
    let data = fin.borrow().read_at(pos.max(0) as u64, want);
    if data.is_empty() {
        return Outcome::Ret(0);
    }
    let out = do_write(k, c, &fout, &data, out_off);
    if let Outcome::Ret(n) = &out {
        if *n > 0 {
            if off_ptr != 0 {
                let _ = k.write_val(tid, off_ptr, &(pos + *n));
            } else if let FileKind::Synth { pos: p, .. } = &mut fin.borrow_mut().kind {
                *p += *n as usize;
            }
            moved_out_offset(k, tid, out_off, out_ptr, *n);
        }
    }
    out
}

/// copy_file_range with an output offset pointer: the pointer moves by what was written.
fn moved_out_offset<P: Platform>(
    k: &mut Kernel<P>,
    tid: i32,
    out_off: Option<i64>,
    out_ptr: u64,
    n: i64,
) {
    if let Some(o) = out_off {
        let _ = k.write_val(tid, out_ptr, &(o + n));
    }
}

/// sendfile or copy_file_range of up to `want` bytes from host file `h` (a regular file) at its
/// own offset to `fout`. One `read` moves the offset; what the write does not take (a short
/// write, a parked one, an error) is given back with one `lseek`. Before, each call asked for the
/// offset, `pread` there and set the offset after: two `lseek`s per call, even in the common case
/// where the whole read is written (issue 17). A short read is the file's end, as `read_at`'s.
fn sendfile_at_offset<P: Platform>(
    k: &mut Kernel<P>,
    c: &Call,
    fout: &FileRef,
    h: RawFd,
    want: usize,
    out_off: Option<i64>,
    out_ptr: u64,
) -> Outcome {
    if out_off.is_none() {
        if let Some(out) = sendfile_to_pipe(k, c, fout, h, want) {
            return out;
        }
    }
    let mut buf: Vec<u8> = Vec::with_capacity(want);
    // SAFETY: read into the buffer's spare capacity (at least `want` bytes).
    let n = unsafe { libc::read(h, buf.as_mut_ptr().cast(), want) };
    if n <= 0 {
        // As `read_at`: an unreadable input copies nothing.
        return Outcome::Ret(0);
    }
    // SAFETY: the read wrote these `n` (≤ `want`) bytes.
    unsafe { buf.set_len(n as usize) };
    let out = do_write(k, c, fout, &buf, out_off);
    let taken = match out {
        Outcome::Ret(w) if w > 0 => w as usize,
        _ => 0,
    };
    if taken > 0 {
        moved_out_offset(k, c.tid, out_off, out_ptr, taken as i64);
    }
    if taken < buf.len() {
        let back = (buf.len() - taken) as i64;
        // SAFETY: move our own fd's offset back over the bytes not written.
        unsafe { libc::lseek(h, -back, libc::SEEK_CUR) };
    }
    out
}

/// sendfile of up to `want` bytes from host file `h` at its own offset into `fout` when that is
/// a pipe end the sandbox made and open for writing (`cat` into a pipe): one host `sendfile`
/// between the sentry's two descriptors, which moves `h`'s offset by exactly what the pipe took,
/// instead of a `read` into the sentry, a `write` and, for a short write, an `lseek` back (issue
/// 17). That pipe is non-blocking on the host (pipe.rs), so the call never waits in the sentry:
/// a full pipe is EAGAIN, which parks the task as `do_write` does (or is the answer, for
/// O_NONBLOCK), and a pipe with no reader is EPIPE with SIGPIPE, as there. None when the fast
/// path does not apply, or for any other host error (a file system without splice support):
/// the caller then copies through the sentry, which reports the error as before.
fn sendfile_to_pipe<P: Platform>(
    k: &mut Kernel<P>,
    c: &Call,
    fout: &FileRef,
    h: RawFd,
    want: usize,
) -> Option<Outcome> {
    let fb = fout.borrow();
    let FileKind::Host {
        fd,
        kind: HostKind::Stream,
    } = &fb.kind
    else {
        return None;
    };
    if matches!(fb.pass, Pass::No) || fb.flags & libc::O_ACCMODE == libc::O_RDONLY {
        return None;
    }
    let out = fd.as_raw_fd();
    // SAFETY: sendfile between two descriptors of ours, no offset pointer.
    let n = unsafe { libc::sendfile(out, h, std::ptr::null_mut(), want) };
    if n >= 0 {
        return Some(Outcome::Ret(n as i64));
    }
    match errno() {
        libc::EAGAIN if fb.flags & libc::O_NONBLOCK == 0 => Some(park(&fb, out, libc::POLLOUT, c)),
        libc::EAGAIN => Some(err(libc::EAGAIN)),
        libc::EPIPE => {
            sigpipe(k, c.tid);
            Some(err(libc::EPIPE))
        }
        _ => None,
    }
}

pub fn do_read<P: Platform>(
    k: &mut Kernel<P>,
    c: &Call,
    f: &FileRef,
    addr: u64,
    count: usize,
    off: Option<i64>,
) -> Outcome {
    let mut fb = f.borrow_mut();
    if fb.flags & libc::O_ACCMODE == libc::O_WRONLY {
        return err(libc::EBADF);
    }
    let count = count.min(CHUNK);
    let data: Vec<u8> = match &mut fb.kind {
        FileKind::Host { fd, kind } => {
            let h = fd.as_raw_fd();
            if *kind == HostKind::Dir {
                return err(libc::EISDIR);
            }
            if *kind == HostKind::Stream && off.is_none() && !ready(h, libc::POLLIN) {
                if fb.flags & libc::O_NONBLOCK != 0 {
                    return err(libc::EAGAIN);
                }
                return park(&fb, h, libc::POLLIN, c);
            }
            // Not zero-filled first (see `OpenFile::read_at`): callers ask for up to a chunk.
            let mut buf: Vec<u8> = Vec::with_capacity(count);
            // SAFETY: read into the buffer's spare capacity (at least `count` bytes).
            let n = unsafe {
                match off {
                    Some(o) => libc::pread(h, buf.as_mut_ptr().cast(), count, o),
                    None => libc::read(h, buf.as_mut_ptr().cast(), count),
                }
            };
            if n < 0 {
                let e = errno();
                if e == libc::EAGAIN && fb.flags & libc::O_NONBLOCK == 0 {
                    return park(&fb, h, libc::POLLIN, c);
                }
                return err(e);
            }
            // SAFETY: the read wrote these `n` (≤ `count`) bytes.
            unsafe { buf.set_len(n as usize) };
            buf
        }
        FileKind::Synth { data, pos } => {
            let start = off.map(|o| o as usize).unwrap_or(*pos).min(data.len());
            let end = (start + count).min(data.len());
            if off.is_none() {
                *pos = end;
            }
            data[start..end].to_vec()
        }
        FileKind::Dir { .. } => return err(libc::EISDIR),
        // read(2) of a signalfd is the task's own (signalfd.rs); the other forms: EINVAL.
        FileKind::Epoll(_) | FileKind::Signal { .. } => return err(libc::EINVAL),
        FileKind::Dev(DevKind::Null) => Vec::new(),
        FileKind::Dev(DevKind::Zero | DevKind::Full) => vec![0u8; count],
        FileKind::Dev(DevKind::Random) => {
            let mut b = vec![0u8; count.min(65536)];
            // SAFETY: getrandom into our buffer.
            unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
            b
        }
    };
    drop(fb);
    match k.write_bytes(c.tid, addr, &data) {
        Ok(()) => Outcome::Ret(data.len() as i64),
        Err(e) => err(e),
    }
}
pub fn do_write<P: Platform>(
    k: &mut Kernel<P>,
    c: &Call,
    f: &FileRef,
    data: &[u8],
    off: Option<i64>,
) -> Outcome {
    let fb = f.borrow();
    if fb.flags & libc::O_ACCMODE == libc::O_RDONLY && !matches!(fb.kind, FileKind::Dev(_)) {
        return err(libc::EBADF);
    }
    match &fb.kind {
        FileKind::Host { fd, kind } => {
            let h = fd.as_raw_fd();
            let mut len = data.len();
            if *kind == HostKind::Stream {
                // A netlink socket's writes are requests: only sendto/sendmsg filter them.
                if fb.path.starts_with("socket:") && super::socket::is_netlink(h) {
                    return err(libc::EOPNOTSUPP);
                }
                // A pipe end the sandbox made (pipe.rs) is non-blocking on the host, and nothing
                // changes that (F_SETFL changes only `flags`, fd.rs): its write goes at once,
                // and EAGAIN below parks it. Any other stream (inherited stdio, a socket, a tty)
                // may be blocking on the host, where anyone holding it can change that: ask
                // first, and never block.
                if matches!(fb.pass, Pass::No) {
                    if !ready(h, libc::POLLOUT) {
                        if fb.flags & libc::O_NONBLOCK != 0 {
                            return err(libc::EAGAIN);
                        }
                        return park(&fb, h, libc::POLLOUT, c);
                    }
                    // SAFETY: fcntl query.
                    let fl = unsafe { libc::fcntl(h, libc::F_GETFL) };
                    if fl & libc::O_NONBLOCK == 0 {
                        len = len.min(STDIO_CHUNK);
                    }
                }
            }
            if *kind == HostKind::Regular {
                kill_suid(k, c.tid, h);
            }
            // SAFETY: write from our buffer.
            let n = unsafe {
                match off {
                    Some(o) => libc::pwrite(h, data.as_ptr().cast(), len, o),
                    None => libc::write(h, data.as_ptr().cast(), len),
                }
            };
            if n < 0 {
                let e = errno();
                if e == libc::EAGAIN && fb.flags & libc::O_NONBLOCK == 0 {
                    return park(&fb, h, libc::POLLOUT, c);
                }
                if e == libc::EPIPE {
                    sigpipe(k, c.tid);
                }
                return err(e);
            }
            Outcome::Ret(n as i64)
        }
        FileKind::Dev(DevKind::Full) => err(libc::ENOSPC),
        FileKind::Dev(_) => Outcome::Ret(data.len() as i64),
        FileKind::Synth { .. } | FileKind::Dir { .. } => err(libc::EBADF),
        FileKind::Epoll(_) | FileKind::Signal { .. } => err(libc::EINVAL),
    }
}
/// SIGPIPE to task `tid`, as the kernel sends it to a writer into a pipe or stream socket with
/// no reader.
pub(crate) fn sigpipe<P: Platform>(k: &Kernel<P>, tid: i32) {
    let tg = k.proc_of(tid).borrow().host_pid;
    // SAFETY: signal our own tracee as the kernel would.
    unsafe { libc::syscall(libc::SYS_tgkill, tg, tid, libc::SIGPIPE) };
}

/// Park a blocking read or write of stream `fb` (host fd `h`) until `h` is ready for `ev`. Only
/// a socket can have a receive or send timeout, so only for one is the host asked
/// (`socket::park`, a `getsockopt`); a pipe, a tty or a FIFO waits for its descriptor alone,
/// which saves a `getsockopt` that fails with ENOTSOCK on every parked pipe call. Every socket
/// the sentry holds is named `socket:[inode]` (socket, accept, socketpair, SCM_RIGHTS, and
/// inherited stdio through its /proc link); a file of unknown name is asked too.
fn park(fb: &OpenFile, h: RawFd, ev: i16, c: &Call) -> Outcome {
    if c.deadline.is_some() || fb.path.is_empty() || fb.path.starts_with("socket:") {
        return super::socket::park(h, ev, c, libc::EAGAIN);
    }
    Outcome::Park(vec![(h, ev)], None)
}

pub(crate) fn iovecs<P: Platform>(
    k: &Kernel<P>,
    tid: i32,
    addr: u64,
    cnt: u64,
) -> Result<Vec<(u64, usize)>, i32> {
    if cnt > 1024 {
        return Err(libc::EINVAL);
    }
    let raw = k.read_bytes(tid, addr, cnt as usize * 16)?;
    Ok(raw
        .chunks(16)
        .map(|ch| {
            (
                u64::from_ne_bytes(ch[..8].try_into().unwrap()),
                u64::from_ne_bytes(ch[8..].try_into().unwrap()) as usize,
            )
        })
        .collect())
}
/// A write by a caller without CAP_FSETID clears the file's setuid bit (and setgid, if group
/// executable), as the kernel's `file_remove_privs`; the host would not, the sentry being
/// root with CAP_FSETID.
fn kill_suid<P: Platform>(k: &Kernel<P>, tid: i32, h: RawFd) {
    if k.creds(tid).capable(FSETID) {
        return;
    }
    let Ok(st) = fstat_fd(h) else { return };
    let mut kill = st.st_mode & libc::S_ISUID;
    if st.st_mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
        kill |= libc::S_ISGID;
    }
    if kill != 0 {
        // SAFETY: fchmod on our own fd.
        unsafe { libc::fchmod(h, st.st_mode & 0o7777 & !kill) };
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    /// `sendfile_to_pipe` needs the host's sendfile under the sentry's own filter; without it the
    /// call would fall back to the copy through the sentry without a word (it did, EPERM, until
    /// the filter allowed it).
    #[test]
    fn the_sentry_filter_lets_sendfile_into_a_pipe_through() {
        let prog = crate::filter::sentry_filter().unwrap();
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let mut p = [0i32; 2];
        // SAFETY: pipe2 into a local array.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK) }, 0);
        // SAFETY: the child only installs the filter built above and makes raw syscalls.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let ok = seccompiler::apply_filter(&prog).is_ok()
                // SAFETY: sendfile between descriptors of this process.
                && unsafe { libc::sendfile(p[1], file.as_raw_fd(), std::ptr::null_mut(), 100) }
                    == 100;
            // SAFETY: leave the forked child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut st = 0;
        // SAFETY: wait for our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut st, 0) }, child);
        // SAFETY: close our own descriptors.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "status {st}"
        );
    }
}
