//! Blocking in `SECCOMP_IOCTL_NOTIF_RECV` without going deaf to the sentry's other event sources.
//!
//! The event loop waits for the next trap in the RECV of one seccomp listener (the one the last
//! trap came from) instead of a `poll` over every source followed by RECV: one syscall less per
//! trap, and no wait-queue set-up over several fds (issue 17, docs/backends/sentry.md "Syscall
//! cost"). The other sources (the SIGCHLD signalfd, `hako exec`'s sockets, parked calls' fds and
//! deadlines, the other listeners of a sandbox with `hako exec`'d processes, that listener's
//! HUP) are watched by a [`Waker`] thread: it polls them and, when one is ready, sets a flag and
//! interrupts the main thread's RECV with a thread-directed signal. To the waker another
//! listener is one more fd: the race argument below does not depend on what the fds are. The
//! sentry's state stays single-threaded: the waker touches only descriptors, a copy of the fd
//! set and atomics.
//!
//! The race between "the main thread is about to enter RECV" and "the waker signals it" is closed
//! without a mask change per trap: RECV is made from a few instructions of our own
//! ([`recv_interruptible`]) that look at the flag right before the `syscall` instruction, and the
//! signal handler, when it finds the main thread between that look and the `syscall` (or inside
//! the call, which the kernel rewinds to the `syscall` instruction for a restart), moves it past
//! the call with -EINTR. A signal landing anywhere else does nothing: the flag is set, and the
//! main thread sees it before its next RECV. Hand-written because no crate offers an
//! interruptible syscall of this shape (Go's runtime and gVisor use the same trick).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

std::arch::global_asm!(
    // fn(fd: i32, arg: *mut seccomp_notif, flag: *const u8, request: u64) -> i64
    ".globl hako_sentry_recv_intr",
    ".type hako_sentry_recv_intr,@function",
    "hako_sentry_recv_intr:",
    "    mov r8, rdx",
    "    mov rdx, rsi",
    "    mov rsi, rcx",
    "    mov eax, 16", // SYS_ioctl
    ".globl hako_sentry_recv_check",
    "hako_sentry_recv_check:",
    "    cmp byte ptr [r8], 0",
    "    jne 2f",
    ".globl hako_sentry_recv_syscall",
    "hako_sentry_recv_syscall:",
    "    syscall",
    ".globl hako_sentry_recv_end",
    "hako_sentry_recv_end:",
    "    ret",
    "2:",
    "    mov rax, -4", // -EINTR
    "    ret",
    ".size hako_sentry_recv_intr, .-hako_sentry_recv_intr",
);

extern "C" {
    fn hako_sentry_recv_intr(fd: i32, arg: *mut libc::c_void, flag: *const u8, req: u64) -> i64;
    static hako_sentry_recv_check: u8;
    static hako_sentry_recv_syscall: u8;
    static hako_sentry_recv_end: u8;
}

/// The signal that interrupts RECV. Every signal is forwarded to the workload's init
/// (hako_contract::signal), so the handler tells ours (sent by the waker, a thread of this
/// process) from one sent from outside, which goes on to the handler that was there before.
fn wake_signal() -> i32 {
    libc::SIGRTMAX()
}

/// The handler that was installed for [`wake_signal`] before ours (the forwarder), if any.
static PREVIOUS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn on_wake(sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid siginfo and ucontext to an SA_SIGINFO handler; getpid is
    // async-signal-safe.
    unsafe {
        let ours = (*info).si_code == libc::SI_TKILL && (*info).si_pid() == libc::getpid();
        if !ours {
            let prev = PREVIOUS.load(SeqCst);
            if prev != 0 && prev != libc::SIG_IGN && prev != libc::SIG_DFL {
                let f: extern "C" fn(i32) = std::mem::transmute(prev);
                f(sig);
            }
            return;
        }
        let uc = uc as *mut libc::ucontext_t;
        let rip = &mut (*uc).uc_mcontext.gregs[libc::REG_RIP as usize];
        let check = std::ptr::addr_of!(hako_sentry_recv_check) as i64;
        let call = std::ptr::addr_of!(hako_sentry_recv_syscall) as i64;
        if (check..=call).contains(rip) {
            *rip = std::ptr::addr_of!(hako_sentry_recv_end) as i64;
            (*uc).uc_mcontext.gregs[libc::REG_RAX as usize] = -(libc::EINTR as i64);
        }
    }
}

/// `ioctl(fd, request, arg)` that returns -EINTR, without blocking, once `flag` is non-zero and
/// the waker's signal reaches this thread. Returns the raw result (negative: -errno).
///
/// # Safety
/// `arg` must be valid for the ioctl `request`.
pub unsafe fn recv_interruptible(
    fd: RawFd,
    request: u64,
    arg: *mut libc::c_void,
    flag: &AtomicU8,
) -> i64 {
    hako_sentry_recv_intr(fd, arg, flag.as_ptr(), request)
}

/// `poll`'s timeout for `deadline`, in ms (-1: none). Rounded up: a poll that ends before the
/// deadline would only come back at once and be handed the same deadline again.
pub(crate) fn poll_timeout_ms(deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(d) => d
            .saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000)
            .min(i32::MAX as u128) as i32,
    }
}

/// What the waker is asked to watch.
struct Watch {
    fds: Vec<libc::pollfd>,
    deadline: Option<Instant>,
    /// The waker polls `fds` (cleared by the waker when it reports, by the main thread to stop it).
    armed: bool,
    quit: bool,
}

struct Shared {
    /// Set by the waker when something it watches is ready (or the deadline passed).
    event: AtomicU8,
    /// The main thread is in (or about to enter) [`recv_interruptible`].
    in_recv: AtomicBool,
    watch: Mutex<Watch>,
    cv: Condvar,
}

type ConfineChannel = (mpsc::Sender<()>, mpsc::Receiver<std::io::Result<()>>);

/// The main thread's handle on the waker thread.
pub struct Waker {
    shared: Arc<Shared>,
    /// Wakes the waker's poll when the main thread changes what it watches.
    kick: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Until [`Waker::confine`]: the word that confines the thread, and its answers.
    confine: Option<ConfineChannel>,
    /// What the waker was last given, and whether the main thread believes it polls it.
    given: Vec<libc::pollfd>,
    given_deadline: Option<Instant>,
    armed: bool,
}

impl Waker {
    /// Install the signal handler and start the thread. Call while the sentry is still alone in
    /// its pid namespace (a thread cannot be made once `unshare(CLONE_NEWPID)` gave its children
    /// another one), before it forks the workload: the thread then waits, in a futex, for
    /// [`Waker::confine`].
    pub fn start() -> std::io::Result<Waker> {
        let main = gettid();
        // SAFETY: eventfd makes a new descriptor we own.
        let kick = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if kick < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just made, owned here.
        let kick = Arc::new(unsafe { OwnedFd::from_raw_fd(kick) });
        let shared = Arc::new(Shared {
            event: AtomicU8::new(0),
            in_recv: AtomicBool::new(false),
            watch: Mutex::new(Watch {
                fds: Vec::new(),
                deadline: None,
                armed: false,
                quit: false,
            }),
            cv: Condvar::new(),
        });
        let (s, k) = (shared.clone(), kick.clone());
        let (to_waker, confine) = mpsc::channel::<()>();
        let (to_main, replies) = mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("hako-waker".into())
            .spawn(move || {
                block_signals();
                let _ = to_main.send(Ok(()));
                // Confined on the main thread's word, once that has dropped its own privileges.
                if confine.recv().is_err() {
                    return;
                }
                let _ = to_main.send(drop_privileges());
                waker_thread(&s, k.as_raw_fd(), main)
            })?;
        replies.recv().map_err(std::io::Error::other)??;
        Ok(Waker {
            shared,
            kick,
            thread: Some(thread),
            confine: Some((to_waker, replies)),
            given: Vec::new(),
            given_deadline: None,
            armed: false,
        })
    }

    /// Install the signal handler; have the thread drop every capability it still has (the main thread keeps some; the
    /// waker needs none) and start serving. Call after the main thread dropped its own, before
    /// the sentry's filter goes on every thread (that also gives this one no_new_privs).
    pub fn confine(&mut self) -> std::io::Result<()> {
        let Some((go, replies)) = self.confine.take() else {
            return Ok(());
        };
        // Now, after the sentry installed its signal forwarders: ours goes over the one for
        // this signal and hands it signals that are not ours.
        // SAFETY: an SA_SIGINFO handler that only reads its arguments and edits the ucontext.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_wake as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(wake_signal(), &sa, &mut old) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if old.sa_flags & libc::SA_SIGINFO == 0 {
                PREVIOUS.store(old.sa_sigaction, SeqCst);
            }
        }
        block_wake_in_other_handlers();
        go.send(()).map_err(std::io::Error::other)?;
        replies.recv().map_err(std::io::Error::other)?
    }

    /// Have the waker watch `fds` until `deadline`. Cheap when nothing changed since the last
    /// call (the common case: one compare, no syscall).
    pub fn watch(&mut self, fds: &[libc::pollfd], deadline: Option<Instant>) {
        let same = self.given.len() == fds.len()
            && self
                .given
                .iter()
                .zip(fds)
                .all(|(a, b)| a.fd == b.fd && a.events == b.events);
        if self.armed && same && self.given_deadline == deadline {
            return;
        }
        self.given.clear();
        self.given.extend_from_slice(fds);
        self.given_deadline = deadline;
        self.armed = true;
        let mut w = self.shared.watch.lock().unwrap_or_else(|e| e.into_inner());
        w.fds.clear();
        w.fds.extend_from_slice(fds);
        w.deadline = deadline;
        let was = std::mem::replace(&mut w.armed, true);
        drop(w);
        if was {
            self.kick();
        } else {
            self.shared.cv.notify_one();
        }
    }

    /// Stop watching (the event loop polls everything itself for a while).
    pub fn disarm(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let mut w = self.shared.watch.lock().unwrap_or_else(|e| e.into_inner());
        let was = std::mem::replace(&mut w.armed, false);
        drop(w);
        if was {
            self.kick();
        }
    }

    fn kick(&self) {
        let one = 1u64;
        // SAFETY: an 8-byte write to our eventfd.
        unsafe { libc::write(self.kick.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Receive on `fd` (`request`, `arg` as for `ioctl`) unless the waker has an event or
    /// reports one meanwhile: then -EINTR.
    ///
    /// # Safety
    /// `arg` must be valid for the ioctl `request`.
    pub unsafe fn recv(&self, fd: RawFd, request: u64, arg: *mut libc::c_void) -> i64 {
        self.shared.in_recv.store(true, SeqCst);
        let r = recv_interruptible(fd, request, arg, &self.shared.event);
        self.shared.in_recv.store(false, SeqCst);
        r
    }

    /// Whether the waker reported an event since the last call; it then watches nothing until
    /// the next [`Waker::watch`].
    pub fn take_event(&mut self) -> bool {
        if self.shared.event.load(SeqCst) == 0 {
            return false;
        }
        self.shared.event.store(0, SeqCst);
        self.armed = false;
        true
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        // Not confined yet: dropping the channel ends the thread.
        self.confine = None;
        self.shared
            .watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .quit = true;
        self.shared.cv.notify_one();
        self.kick();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The waker: wait to be armed, poll what it was given (plus the kick fd) until one is ready or
/// the deadline passes, report, and wait to be armed again. It sleeps in `poll` or on the
/// condition variable: nothing spins.
/// Every other handler (the forwarders) runs with the wake signal blocked. A handler that
/// interrupts RECV returns straight to its `syscall` instruction (the kernel rewinds it for the
/// restart), past the flag's check; a wake signal handled on top of it would find the thread in
/// that handler and do nothing, and RECV would block again with the flag set. Blocked there, the
/// wake signal waits until that handler returns and then finds the thread on the `syscall`
/// instruction. The sentry installs no handler after [`Waker::confine`].
fn block_wake_in_other_handlers() {
    let wake = wake_signal();
    for sig in 1..=libc::SIGRTMAX() {
        if sig == wake || sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: read and re-install a signal's own disposition, with one more blocked signal.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut sa) != 0
                || sa.sa_sigaction == libc::SIG_DFL
                || sa.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            libc::sigaddset(&mut sa.sa_mask, wake);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Every signal goes to the main thread (the forwarder, SIGCHLD's signalfd...). glibc keeps
/// its own set-id signal open: the main thread's setresuid still reaches this thread.
fn block_signals() {
    // SAFETY: masking signals on this thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// No capability in any set. The bounding set too where this thread may still change it (it
/// could not exec anyway: the sentry's filter has no execve).
fn drop_privileges() -> std::io::Result<()> {
    // Best effort: without CAP_SETPCAP (gone with the uid change) it cannot, and needs not.
    let _ = crate::identity::limit_bounding(0);
    crate::identity::set_caps(0, 0, 0)
}

fn waker_thread(s: &Shared, kick: RawFd, main: i32) {
    let pid = std::process::id() as i32;
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        let deadline = {
            let mut w = s.watch.lock().unwrap_or_else(|e| e.into_inner());
            while !w.armed && !w.quit {
                w = s.cv.wait(w).unwrap_or_else(|e| e.into_inner());
            }
            if w.quit {
                return;
            }
            fds.clear();
            fds.push(libc::pollfd {
                fd: kick,
                events: libc::POLLIN,
                revents: 0,
            });
            fds.extend_from_slice(&w.fds);
            w.deadline
        };
        let timeout = poll_timeout_ms(deadline);
        // SAFETY: a valid pollfd array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue; // glibc's set-id signal
        }
        if fds[0].revents != 0 {
            let mut v = 0u64;
            // SAFETY: an 8-byte read from our eventfd.
            unsafe { libc::read(kick, (&mut v as *mut u64).cast(), 8) };
            if n == 1 {
                continue; // the main thread changed the set (or stopped it): look again
            }
        }
        {
            let mut w = s.watch.lock().unwrap_or_else(|e| e.into_inner());
            if !w.armed {
                continue; // disarmed meanwhile: the main thread polls by itself
            }
            w.armed = false;
        }
        s.event.store(1, SeqCst);
        if s.in_recv.load(SeqCst) {
            // SAFETY: a signal to our own main thread, whose handler is installed.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, main, wake_signal()) };
        }
    }
}
