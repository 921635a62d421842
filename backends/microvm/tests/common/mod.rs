//! Helpers the VMM tests share.
#![allow(dead_code)]

pub mod qemu;

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// Whether `/dev/kvm` opens; prints the skip reason when it does not.
pub fn kvm_usable() -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        eprintln!("SKIP: /dev/kvm cannot be opened here; hako's VMM tests need KVM");
        return false;
    }
    true
}

/// A pipe: (read end, write end), close-on-exec.
pub fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a 2-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (r.into(), w.into())
}

/// (median, min, max) in ms.
pub fn spread_ms(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1]))
}
