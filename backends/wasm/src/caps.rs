//! process.capabilities applied to the wasm host process. The module itself makes no system
//! calls, but the host process opens files in the rootfs on its behalf: with the spec's
//! capabilities (and user) applied, a root-owned 0600 file in the rootfs stays closed to a
//! module whose spec drops CAP_DAC_OVERRIDE, exactly as for a container. The sets are parsed and
//! applied by the shared code (hako_linux::caps), so the container and wasm backends read a
//! spec the same way.

use anyhow::Result;
use hako_linux::caps;

pub use caps::Sets as CapSets;

/// Drop what is not in the bounding set (needs CAP_SETPCAP: before changing user).
pub fn drop_bounding(c: &CapSets) -> Result<()> {
    caps::drop_bounding(c)
}

/// Set effective, permitted, inheritable and ambient for the calling thread (the host
/// process's main thread, which does the module's file I/O).
pub fn set(c: &CapSets) -> Result<()> {
    caps::set_process_sets(c)
}
