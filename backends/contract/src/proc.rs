//! Small facts about host processes, read from /proc.

use std::fs;

/// Set by the front end when it re-executes itself from a sealed view of its binary (see
/// `src/exe.rs`): the path the binary was run from.
pub const EXE_ENV: &str = "HAKO_EXE_PATH";

/// The path of the running hako binary as installed: `current_exe`, unless the front end
/// re-executed from a sealed view, whose /proc/self/exe names no usable path.
pub fn self_exe() -> std::io::Result<std::path::PathBuf> {
    match std::env::var_os(EXE_ENV).map(std::path::PathBuf::from) {
        Some(p) if p.is_absolute() => Ok(p),
        _ => std::env::current_exe(),
    }
}

/// The start time of `pid` (field 22 of /proc/PID/stat, in clock ticks since boot). Together
/// with the pid it names a process uniquely, so a recycled pid is never taken for ours.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The one-letter state of `pid` (R, S, D, Z, T, ...).
pub fn state_letter(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// True when `pid` is alive, not a zombie, and started at `start` (when given).
pub fn is_alive(pid: i32, start: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match state_letter(pid) {
        None | Some('Z') | Some('X') => false,
        Some(_) => start.is_none() || start_time(pid) == start,
    }
}

/// Resident memory of a VM process (qemu, or hako's VMM) split into the guest's RAM and the rest,
/// from `/proc/PID/smaps`. KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmRss {
    /// Rss of every mapping but the guest RAM: the VMM's own overhead (its code and libraries'
    /// resident pages, heap, thread stacks, device buffers; for qemu under TCG also the
    /// translation cache and the kernel image it keeps mapped).
    pub vmm_kib: u64,
    /// Rss of the guest-RAM mapping: the guest memory touched so far.
    pub guest_kib: u64,
    /// Size of the mapping taken as guest RAM.
    pub guest_mapping_kib: u64,
    /// Pss of the guest-RAM mapping: its resident pages, each divided by the number of
    /// processes mapping it (a microVM restored from a template shares its unwritten pages
    /// with every other copy through the page cache of the template's RAM file).
    pub guest_pss_kib: u64,
}

/// Allowance above the guest's size for the guest-RAM mapping (alignment, a merged neighbour).
pub const GUEST_MAPPING_SLACK: u64 = 4 << 20;

/// Split an smaps text (see [`VmRss`]). The guest RAM is the **anonymous** (inode 0, no path or
/// an `[anon:...]` name), **private read-write, not executable** (`rw-p`) mapping whose size is
/// at least `guest_bytes` and at most `guest_bytes` + [`GUEST_MAPPING_SLACK`]; when several
/// qualify, the one with the most resident pages. That is how both engines allocate it (qemu's
/// RAM block, vm-memory's single region for guests below 3 GiB); qemu's TCG translation buffer
/// (1 GiB here) is `rwxp` and so never taken for it. None when no mapping qualifies (a guest
/// of 3 GiB or more on hako's VMM, which splits its RAM around the MMIO hole).
pub fn split_vm_rss(smaps: &str, guest_bytes: u64) -> Option<VmRss> {
    split_vm_rss_file(smaps, guest_bytes, None)
}

/// [`split_vm_rss`], where a private read-write mapping of `ram_file` (the RAM file of a
/// microVM template, mapped copy-on-write by a restored VM) also qualifies as the guest RAM.
pub fn split_vm_rss_file(smaps: &str, guest_bytes: u64, ram_file: Option<&str>) -> Option<VmRss> {
    struct Map {
        size: u64,
        candidate: bool,
        rss: u64,
        pss: u64,
    }
    let mut maps: Vec<Map> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = f.next().unwrap_or("");
                let inode = f.nth(2).unwrap_or("");
                let path: Vec<&str> = f.collect();
                let path = path.join(" ");
                let size = b.saturating_sub(a);
                let anon = inode == "0" && (path.is_empty() || path.starts_with("[anon:"));
                let ram = ram_file.is_some_and(|r| r == path);
                maps.push(Map {
                    size,
                    pss: 0,
                    candidate: (anon || ram)
                        && perms == "rw-p"
                        && size >= guest_bytes
                        && size <= guest_bytes + GUEST_MAPPING_SLACK,
                    rss: 0,
                });
                continue;
            }
        }
        if first == "Rss:" {
            let kib = f.next().and_then(|v| v.parse::<u64>().ok())?;
            maps.last_mut()?.rss += kib;
        }
        if first == "Pss:" {
            let kib = f.next().and_then(|v| v.parse::<u64>().ok())?;
            maps.last_mut()?.pss += kib;
        }
    }
    let guest = maps
        .iter()
        .enumerate()
        .filter(|(_, m)| m.candidate)
        .max_by_key(|(_, m)| m.rss)
        .map(|(i, _)| i)?;
    let total: u64 = maps.iter().map(|m| m.rss).sum();
    Some(VmRss {
        vmm_kib: total - maps[guest].rss,
        guest_kib: maps[guest].rss,
        guest_mapping_kib: maps[guest].size / 1024,
        guest_pss_kib: maps[guest].pss,
    })
}

/// [`split_vm_rss`] of a live process.
pub fn vm_rss(pid: i32, guest_bytes: u64) -> Option<VmRss> {
    vm_rss_file(pid, guest_bytes, None)
}

/// [`split_vm_rss_file`] of a live process.
pub fn vm_rss_file(
    pid: i32,
    guest_bytes: u64,
    ram_file: Option<&std::path::Path>,
) -> Option<VmRss> {
    let ram = ram_file.map(|p| p.to_string_lossy().into_owned());
    split_vm_rss_file(
        &fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?,
        guest_bytes,
        ram.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Excerpt of a real qemu 7.2 `-M microvm -accel tcg -m 128` smaps (fields trimmed): its
    /// binary, the 128 MiB RAM block, the 1 GiB rwx TCG buffer, a kernel file mapping, a
    /// smaller anonymous area, a stack.
    const QEMU_SMAPS: &str = "\
556425dd9000-5564261e0000 r--p 00000000 fe:01 1234  /usr/bin/qemu-system-x86_64
Size:               4124 kB
Rss:                4124 kB
Pss:                4124 kB
VmFlags: rd mr mw me sd
55645a2cc000-55645a93c000 rw-p 00000000 00:00 0  [heap]
Size:               6592 kB
Rss:                3704 kB
VmFlags: rd wr mr mw me ac sd
7fb223e00000-7fb22be00000 rw-p 00000000 00:00 0
Size:             131072 kB
KernelPageSize:        4 kB
Rss:               24576 kB
VmFlags: rd wr mr mw me nr sd
7fb22c000000-7fb26bfff000 rwxp 00000000 00:00 0
Size:            1048572 kB
Rss:               14336 kB
VmFlags: rd wr ex mr mw me nr sd
7fb271600000-7fb272688000 rw-p 00000000 fe:01 5678 /var/cache/hako/kernels/vmlinux-aedfe4a4b5dee2ad
Size:              16928 kB
Rss:               10304 kB
7fb270aff000-7fb270c00000 rw-p 00000000 00:00 0
Size:               1028 kB
Rss:                1028 kB
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0  [stack]
Size:                132 kB
Rss:                  20 kB
";

    #[test]
    fn qemu_smaps_split_takes_the_ram_block_only() {
        let r = split_vm_rss(QEMU_SMAPS, 128 << 20).unwrap();
        assert_eq!(r.guest_kib, 24576);
        assert_eq!(r.guest_mapping_kib, 131072);
        assert_eq!(r.vmm_kib, 4124 + 3704 + 14336 + 10304 + 1028 + 20);
    }

    #[test]
    fn no_mapping_of_the_guest_size_is_none() {
        // 256 MiB asked: nothing that size (the 1 GiB buffer is executable and too big anyway).
        assert_eq!(split_vm_rss(QEMU_SMAPS, 256 << 20), None);
        assert_eq!(split_vm_rss("", 128 << 20), None);
        // A file mapping of the right size is not guest RAM.
        let file = "7f0000000000-7f0008000000 rw-p 00000000 fe:01 99 /tmp/ram\nRss: 10 kB\n";
        assert_eq!(split_vm_rss(file, 128 << 20), None);
    }

    #[test]
    fn slack_and_named_anonymous_mappings() {
        // 128 MiB + 2 MiB (an aligned RAM block), named; and a second candidate with fewer
        // resident pages, which stays on the VMM's side.
        let s = "\
7f0000000000-7f0008200000 rw-p 00000000 00:00 0 [anon:guest-ram]
Rss:                 900 kB
7f1000000000-7f1008000000 rw-p 00000000 00:00 0
Rss:                  12 kB
7f2000000000-7f2000001000 r-xp 00000000 fe:01 7 /usr/lib/libc.so.6
Rss:                   4 kB
";
        let r = split_vm_rss(s, 128 << 20).unwrap();
        assert_eq!(
            (r.guest_kib, r.guest_mapping_kib, r.vmm_kib),
            (900, 133120, 16)
        );
        // A mapping over the slack does not count.
        assert_eq!(split_vm_rss(s, 120 << 20), None);
    }

    #[test]
    fn live_process_mapping_is_found_and_touched_pages_counted() {
        // A 77 MiB anonymous rw mapping between two PROT_NONE guard pages (so it cannot merge
        // with a neighbour), 1 MiB of it touched: this process seen as a "VM" with 77 MiB RAM.
        const SIZE: usize = 77 << 20;
        let page = 4096;
        // SAFETY: a fresh private anonymous mapping, only touched within its bounds, unmapped
        // at the end.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                SIZE + 2 * page,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            let ram = base.cast::<u8>().add(page);
            assert_eq!(
                libc::mprotect(ram.cast(), SIZE, libc::PROT_READ | libc::PROT_WRITE),
                0
            );
            std::ptr::write_bytes(ram, 1, 1 << 20);
            let r = vm_rss(std::process::id() as i32, SIZE as u64).expect("mapping found");
            libc::munmap(base, SIZE + 2 * page);
            assert_eq!(r.guest_mapping_kib, (SIZE / 1024) as u64);
            assert!(r.guest_kib >= 1024, "{r:?}");
            assert!(r.vmm_kib > 0, "{r:?}");
        }
        assert_eq!(vm_rss(0, 128 << 20), None);
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let me = std::process::id() as i32;
        let st = start_time(me).expect("own start time");
        assert!(is_alive(me, Some(st)));
        assert!(!is_alive(me, Some(st + 1)));
        assert!(!is_alive(0, None));
    }
}
