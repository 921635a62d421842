//! Link-time settings for the `hako` binary only (backends and tests are untouched).
//!
//! `-z pack-relative-relocs` stores the binary's ~57k relative relocations as DT_RELR (a few
//! bitmaps, 14 KiB) instead of RELA entries (24 bytes each, 1.3 MiB). The dynamic loader reads
//! every entry at start, so with RELA each `hako` process starts with 1.3 MiB more resident:
//! `hako run` of a busybox `true` peaks at 8.1 MiB with RELA and 6.9 MiB with RELR (ru_maxrss;
//! docs/benchmarks.md). The binary stays position-independent (ASLR kept). glibc reads DT_RELR
//! since 2.36 (Debian bookworm); the linker records the `GLIBC_ABI_DT_RELR` version need, so an
//! older glibc refuses the binary at load with a clear message instead of misrunning it.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-changed=build.rs");
}
