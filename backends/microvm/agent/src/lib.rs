//! The protocol between hako's microvm backend (host) and the guest agent (`hako-agent`, the
//! guest's `/init`).
//!
//! Two channels, both provided by every VMM engine:
//! - the **config disk**: a raw virtio-blk device holding [`GuestConfig`] and the bytes it refers
//!   to (files carried in for bind mounts, the seccomp program), laid out by [`encode_config`];
//! - the **agent port**: the guest's first virtio-console port (`/dev/hvc0`), a byte stream of
//!   [`Frame`]s in both directions. The kernel log goes to the serial port instead, so nothing
//!   else ever writes to this stream and the host can parse it unambiguously.

pub mod proto;
