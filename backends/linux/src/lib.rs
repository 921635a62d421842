//! The Linux layer every hako backend shares. Backends depend on this crate and on
//! `hako-contract`, never on each other.
//!
//! - [`cgroups`]: cgroup v1, v2 and the devices controller, behind one [`CgroupManager`];
//! - [`seccomp`]: the OCI seccomp profile compiled with seccompiler;
//! - [`caps`]: capability sets from the spec.

pub mod caps;
pub mod cgroups;
pub mod seccomp;

pub use cgroups::CgroupManager;
