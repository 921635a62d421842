//! A cold-booted guest's two disks among its virtio disks: the config disk and the rootfs image
//! (a restored guest got its config from the host instead, and its rootfs image is
//! [`crate::restore::ROOTFS_DEV`]: it scans nothing).

use crate::sys::Res;
use hako_agent::proto::{self, ConfigDisk};
use std::fs;
use std::io::Read;

/// Find the config disk (by its magic) and the rootfs disk (by its ext4 label).
pub(crate) fn find_disks() -> Res<(ConfigDisk, String)> {
    let mut config = None;
    let mut rootfs = None;
    let mut seen = vec![];
    let entries = fs::read_dir("/sys/block").map_err(|e| format!("/sys/block: {e}"))?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        if !name.starts_with("vd") {
            continue;
        }
        let dev = format!("/dev/{name}");
        let mut f = match fs::File::open(&dev) {
            Ok(f) => f,
            Err(e) => return Err(format!("open {dev}: {e}")),
        };
        let mut head = vec![0u8; 2048];
        let n = read_full(&mut f, &mut head).map_err(|e| format!("read {dev}: {e}"))?;
        head.truncate(n);
        seen.push(name.clone());
        if head.starts_with(proto::CONFIG_MAGIC) {
            let mut all = head;
            f.read_to_end(&mut all)
                .map_err(|e| format!("read {dev}: {e}"))?;
            config = Some(ConfigDisk::parse(&all).map_err(|e| format!("{dev}: {e}"))?);
        } else if head.len() >= 1024 + 136 && head[1024 + 56..1024 + 58] == [0x53, 0xef] {
            let label = &head[1024 + 120..1024 + 136];
            let label = label.split(|&b| b == 0).next().unwrap_or_default();
            if label == proto::ROOTFS_LABEL.as_bytes() {
                rootfs = Some(dev);
            }
        }
    }
    match (config, rootfs) {
        (Some(c), Some(r)) => Ok((c, r)),
        (None, _) => Err(format!("no config disk among the virtio disks {seen:?}")),
        (_, None) => Err(format!(
            "no rootfs disk (ext4 labelled {}) among {seen:?}",
            proto::ROOTFS_LABEL
        )),
    }
}

pub(crate) fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
