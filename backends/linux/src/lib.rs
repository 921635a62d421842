//! The Linux layer every hako backend shares. Backends depend on this crate and on
//! `hako-contract`, never on each other.
//!
//! - [`cgroups`]: cgroup v1, v2 and the devices controller, behind one [`CgroupManager`];
//! - [`seccomp`]: the OCI seccomp profile compiled with seccompiler;
//! - [`caps`]: capability sets from the spec;
//! - [`process`]: a fresh host process's hygiene (inherited descriptors, signal state) and the
//!   spec's rlimits through one typed table;
//! - [`inroot`]: paths resolved inside a root (openat2 `RESOLVE_IN_ROOT`);
//! - [`debug`]: `--debug` lines, to wherever the front end logs.
//!
//! Without the default `full` feature only [`inroot`] is built (libc and std only): that is what
//! the microvm guest agent, a static musl binary, links.

#[cfg(feature = "full")]
pub mod caps;
#[cfg(feature = "full")]
pub mod cgroups;
#[cfg(feature = "full")]
pub mod debug;
pub mod inroot;
#[cfg(feature = "full")]
pub mod process;
#[cfg(feature = "full")]
pub mod seccomp;

#[cfg(feature = "full")]
pub use cgroups::CgroupManager;
