//! hako's own VMM on KVM.

pub mod boot;
pub mod cpu;
pub mod layout;
