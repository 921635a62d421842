//! The microvm backend: a Linux guest per sandbox (placeholder).

pub mod vmm;
