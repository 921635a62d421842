//! The container backend: Linux namespaces, cgroups, seccomp — runc's model.

pub mod cgroups;
pub mod seccomp;
