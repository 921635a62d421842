//! Rootfs delivery: the bundle's rootfs as a read-only ext4 image, cached by content.
//!
//! The image is keyed by a digest of the tree: every entry's relative path, type, mode, owner,
//! device number, symlink target and file content. Two bundles with the same tree share one
//! image; a changed file makes a new one. Images are made with `mkfs.ext4 -d` (e2fsprogs), without
//! a journal (the guest mounts them read-only; writes go to an overlay on a guest tmpfs), and hold
//! the tree exactly: the `/lost+found` that mkfs.ext4 always makes is removed again (debugfs)
//! unless the tree has one of its own.
//!
//! Reading every file for the digest costs more than anything else in a `create` of a large
//! rootfs, so the digest is memoized (in `<cache>/memo`) by a stamp of the tree's
//! metadata: every entry's path, type, mode, owner, device, inode, size, mtime and ctime. A
//! write to a file changes its ctime, which no user can set back (git's index relies on the
//! same rule), so a changed tree never finds an old digest. A tree with an entry changed in
//! the last [`SETTLE`] is hashed but not memoized: a write in the same clock tick as the walk
//! might leave its ctime as it was.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn hex_digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a walk of the rootfs found.
#[derive(Debug, Default, Clone, Copy)]
pub struct TreeSize {
    pub entries: u64,
    /// Bytes of file data, each file rounded up to 4 KiB blocks.
    pub data: u64,
}

impl TreeSize {
    /// The size of the image that holds this tree, with room for ext4's own structures.
    pub fn image_bytes(&self) -> u64 {
        let inodes = self.entries + 64;
        let raw = self.data + self.data / 8 + inodes * 320 + (8 << 20);
        raw.div_ceil(1 << 20) << 20
    }

    pub fn inodes(&self) -> u64 {
        self.entries + 64
    }
}

/// Walk `root` without following symlinks, in name order; call `f` with each entry's path
/// relative to `root` ("" for the root) and its metadata.
fn walk(root: &Path, f: &mut dyn FnMut(&Path, &str, &fs::Metadata) -> Result<()>) -> Result<()> {
    fn go(
        root: &Path,
        rel: &str,
        f: &mut dyn FnMut(&Path, &str, &fs::Metadata) -> Result<()>,
    ) -> Result<()> {
        let p = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let md = fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        f(&p, rel, &md)?;
        if md.is_dir() {
            let mut names: Vec<String> = fs::read_dir(&p)
                .with_context(|| format!("reading {}", p.display()))?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("reading {}", p.display()))?;
            names.sort();
            for n in names {
                let child = if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                };
                go(root, &child, f)?;
            }
        }
        Ok(())
    }
    go(root, "", f)
}

/// Add one entry's share to the image size `t` (see [`TreeSize::data`]).
fn count(t: &mut TreeSize, md: &fs::Metadata) {
    t.entries += 1;
    if md.is_file() || md.is_dir() {
        t.data += md.len().div_ceil(4096) * 4096;
    } else if md.file_type().is_symlink() && md.len() >= 60 {
        t.data += 4096;
    }
}

pub fn tree_size(root: &Path) -> Result<TreeSize> {
    let mut t = TreeSize::default();
    walk(root, &mut |_, _, md| {
        count(&mut t, md);
        Ok(())
    })?;
    Ok(t)
}

/// How long ago a tree's last change must be before its digest is memoized (see the module
/// comment). Much longer than a filesystem timestamp's tick.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// What one walk of a rootfs finds: the image size it needs, the stamp of its metadata that
/// keys the digest memo (see the module comment), and whether every entry changed at least
/// `settle` before the walk. One walk, not two: the size is needed before any content is read
/// (the budget check), and the stamp comes from the same `lstat`s.
struct Survey {
    size: TreeSize,
    stamp: String,
    settled: bool,
}

fn survey(root: &Path, settle: std::time::Duration) -> Result<Survey> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(settle)
        .as_nanos() as i128;
    let mut h = Sha256::new();
    let mut settled = true;
    let mut size = TreeSize::default();
    walk(root, &mut |_, rel, md| {
        count(&mut size, md);
        let ctime_ns = md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128;
        let mtime_ns = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
        settled &= ctime_ns < since;
        h.update(
            format!(
                "{rel}\0{:o}:{}:{}:{}:{}:{}:{}:{mtime_ns}:{ctime_ns}\n",
                md.mode(),
                md.uid(),
                md.gid(),
                md.rdev(),
                md.dev(),
                md.ino(),
                md.size(),
            )
            .as_bytes(),
        );
        Ok(())
    })?;
    let stamp = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Survey {
        size,
        stamp,
        settled,
    })
}

/// The content digest of `root` ([`tree_digest`]), memoized in `memo` by the stamp of its
/// [`survey`].
fn memo_tree_digest(memo: &Path, root: &Path, s: &Survey) -> Result<String> {
    if !s.settled {
        return tree_digest(root);
    }
    crate::template::memo_by(memo, "tree", &s.stamp, || tree_digest(root))
}

/// The content digest of a tree (see the module comment).
pub fn tree_digest(root: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    walk(root, &mut |p, rel, md| {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        h.update(
            format!(
                "{rel}\0{kind}{:o}:{}:{}:{}\0",
                md.mode(),
                md.uid(),
                md.gid(),
                md.rdev()
            )
            .as_bytes(),
        );
        if ft.is_symlink() {
            let t = fs::read_link(p).with_context(|| format!("reading {}", p.display()))?;
            h.update(t.to_string_lossy().as_bytes());
        } else if ft.is_file() {
            let mut f = fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
            h.update(md.len().to_le_bytes());
            loop {
                let n = f
                    .read(&mut buf)
                    .with_context(|| format!("reading {}", p.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        h.update(b"\n");
        Ok(())
    })?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Part of every rootfs image's cache key: a change to how images are made (here: no
/// `/lost+found` of mkfs's own) must not reuse an image made the old way.
const IMAGE_FORMAT: &str = "ext4 -d, exact tree (no mkfs lost+found), v2";

/// Below the image cache: memoized digests (of rootfs trees, of the agent binary).
pub const MEMO: &str = "memo";

/// An e2fsprogs tool (`mkfs.ext4`, `debugfs`).
fn e2fs_binary(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{name} not found: the microvm backend needs e2fsprogs (apt-get install e2fsprogs)"
            )
        })
}

/// Run debugfs' request `req` on the image `img` (`-w`: writable). debugfs exits 0 whatever its
/// requests did, so callers check the result themselves.
fn debugfs(img: &Path, req: &str, write: bool) -> Result<String> {
    let mut c = Command::new(e2fs_binary("debugfs")?);
    if write {
        c.arg("-w");
    }
    let o = c
        .arg("-R")
        .arg(req)
        .arg(img)
        .output()
        .context("running debugfs")?;
    if !o.status.success() {
        bail!(
            "debugfs -R {req:?} {} failed ({}): {}",
            img.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The names in the image's root directory.
pub fn root_names(img: &Path) -> Result<Vec<String>> {
    // `ls -p`: one `/inode/mode/uid/gid/name/size/` line per entry.
    let out = debugfs(img, "ls -p /", false)?;
    Ok(out
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(str::to_string)
        .collect())
}

/// mkfs.ext4 makes `/lost+found` in every file system; a tree without one must not gain it.
fn remove_lost_found(img: &Path) -> Result<()> {
    debugfs(img, "rmdir lost+found", true)?;
    if root_names(img)?.iter().any(|n| n == "lost+found") {
        bail!(
            "debugfs could not remove mkfs's /lost+found from {}",
            img.display()
        );
    }
    Ok(())
}

/// Make an ext4 image of exactly `src` at `out` (atomically: a temporary file in the same
/// directory, renamed into place).
pub fn mkfs_into(src: &Path, out: &Path, size: u64, inodes: u64, label: &str) -> Result<()> {
    let dir = out.parent().context("image path has no parent")?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        out.file_name().unwrap().to_string_lossy()
    ));
    let result = (|| -> Result<()> {
        let f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.set_len(size)
            .with_context(|| format!("sizing {}", tmp.display()))?;
        drop(f);
        hako_contract::fault::point("create:image");
        let o = Command::new(e2fs_binary("mkfs.ext4")?)
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-O",
                "^has_journal",
                "-m",
                "0",
                "-b",
                "4096",
                "-I",
                "256",
            ])
            .arg("-N")
            .arg(inodes.to_string())
            .arg("-L")
            .arg(label)
            .arg("-E")
            .arg("root_owner=0:0")
            .arg("-d")
            .arg(src)
            .arg(&tmp)
            .output()
            .context("running mkfs.ext4")?;
        if !o.status.success() {
            bail!(
                "mkfs.ext4 -d {} failed ({}): {}",
                src.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        if fs::symlink_metadata(src.join("lost+found")).is_err() {
            remove_lost_found(&tmp)?;
        }
        fs::rename(&tmp, out).with_context(|| format!("renaming into {}", out.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Remove the half-made images in `dir` ([`mkfs_into`]'s `.tmp-<pid>-*`) of processes that are
/// gone: a `create` killed while it made one. A live pid's file is left alone.
pub fn sweep_half_made(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = half_made_pid(&name) {
            if !hako_contract::proc::is_alive(pid, None) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// The pid that makes the half-made image named `name` ([`mkfs_into`]'s `.tmp-<pid>-*`).
fn half_made_pid(name: &str) -> Option<i32> {
    name.strip_prefix(".tmp-")
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<i32>().ok())
}

/// The size of every rootfs image as a device: the file is extended (sparse: no blocks on the
/// host's disk) past the ext4 inside, which keeps its own smaller size. A template's placeholder
/// disk has the same size, so a guest restored from it finds the sandbox's image behind a
/// device the kernel already knows, and mounts it without probing it again (docs/backends/
/// microvm.md, "Snapshot boot"). Well above the default image budget; an image larger than
/// this (a raised budget) keeps its own size and boots cold.
pub const ROOTFS_DEVICE_BYTES: u64 = 4 << 30;

/// Extend the image `img` to [`ROOTFS_DEVICE_BYTES`] when it is smaller (a new image, or one
/// cached before images were device-sized). Idempotent, so concurrent creates may both do it.
fn size_as_device(img: &Path) -> Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(img)
        .with_context(|| format!("opening {}", img.display()))?;
    let len = f.metadata()?.len();
    if len < ROOTFS_DEVICE_BYTES {
        f.set_len(ROOTFS_DEVICE_BYTES)
            .with_context(|| format!("sizing {}", img.display()))?;
    }
    Ok(())
}

/// Whether the image `img` has the size a template's rootfs device has (see
/// [`ROOTFS_DEVICE_BYTES`]): only then may a restored guest use it.
pub fn is_device_sized(img: &Path) -> bool {
    fs::metadata(img).is_ok_and(|m| m.len() == ROOTFS_DEVICE_BYTES)
}

/// The lock file of the image cache: every create holds it shared from its image lookup until
/// its VM has the image open ([`Held`]); `hako microvm prune` removes images only under it
/// exclusively, so it never removes an image a create is about to attach.
pub const IMAGES_LOCK: &str = "images.lock";

/// A rootfs image and the create's shared hold on the image cache ([`IMAGES_LOCK`]): keep it
/// until the VM has opened the image (an open image outlives its removal; a path does not).
#[derive(Debug)]
pub struct Held {
    pub path: PathBuf,
    _hold: fs::File,
}

/// The cached image of `rootfs`, made when missing. Refuses a tree whose image would be larger
/// than `budget` bytes before reading any file content.
pub fn rootfs_image(cache: &Path, rootfs: &Path, budget: u64) -> Result<Held> {
    rootfs_image_settled(cache, rootfs, budget, SETTLE)
}

/// [`rootfs_image`] with the digest memo's settle time as a parameter (tests use zero).
fn rootfs_image_settled(
    cache: &Path,
    rootfs: &Path,
    budget: u64,
    settle: std::time::Duration,
) -> Result<Held> {
    let md = fs::metadata(rootfs).with_context(|| format!("bundle rootfs {}", rootfs.display()))?;
    if !md.is_dir() {
        bail!("bundle rootfs {} is not a directory", rootfs.display());
    }
    let survey = survey(rootfs, settle)?;
    let size = survey.size;
    let need = size.image_bytes();
    if need > budget {
        bail!(
            "the rootfs {} needs a {} MiB image, over the microvm image budget of {} MiB (set {} to raise it)",
            rootfs.display(),
            need >> 20,
            budget.div_ceil(1 << 20),
            crate::knobs::IMAGE_BUDGET
        );
    }
    let digest = memo_tree_digest(&cache.join(MEMO), rootfs, &survey)?;
    let out = cache.join(image_name(&digest));
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let hold = crate::template::flock_path(&cache.join(IMAGES_LOCK), true, true)?
        .context("a blocking flock returned busy")?;
    if !out.is_file() {
        mkfs_into(
            rootfs,
            &out,
            need,
            size.inodes(),
            hako_agent::proto::ROOTFS_LABEL,
        )?;
    }
    if need <= ROOTFS_DEVICE_BYTES {
        size_as_device(&out)?;
    }
    // For `hako microvm prune`: the atime only, so the mtime still says when it was made.
    crate::template::mark_used(&out, false);
    Ok(Held {
        path: out,
        _hold: hold,
    })
}

/// The file name of the image of a tree with content digest `digest`.
pub(crate) fn image_name(digest: &str) -> String {
    let key = hex_digest(&[IMAGE_FORMAT.as_bytes(), digest.as_bytes()]);
    format!("rootfs-{}.ext4", &key[..24])
}

/// The rootfs images in `cache` that `keep` does not keep, with what dead creates left
/// half-made, and (`memo`) the digests memoized for trees whose image is gone or goes now.
/// Removed unless `dry_run`. An image in use stays usable: a sandbox has it open, and the
/// kernel keeps its blocks until it is closed. Images (not the half-made ones of dead creates)
/// go only under an exclusive [`IMAGES_LOCK`], taken without waiting: while a create holds it
/// (between its image lookup and its VM's opening the image) no image goes.
pub fn prune(
    cache: &Path,
    keep: crate::template::Keep,
    dry_run: bool,
) -> Result<Vec<crate::template::Pruned>> {
    use crate::template::{disk_bytes, Pruned};
    let mut out = Vec::new();
    let mut names: Vec<String> = match fs::read_dir(cache) {
        Ok(e) => e
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", cache.display())),
    };
    names.sort();
    // Held by a create right now: its image must stay, and we cannot tell which it is.
    let lock = if dry_run {
        None
    } else {
        crate::template::flock_path(&cache.join(IMAGES_LOCK), false, false)?
    };
    let images_free = dry_run || lock.is_some();
    let mut gone = std::collections::BTreeSet::new();
    for name in names {
        let path = cache.join(&name);
        let why = if half_made_pid(&name).is_some_and(|p| !hako_contract::proc::is_alive(p, None)) {
            "half-made image (its create is gone)".to_string()
        } else if name.starts_with("rootfs-") && name.ends_with(".ext4") && images_free {
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            match keep.why_not(&md) {
                Some(w) => format!("rootfs image, {w}"),
                None => continue,
            }
        } else {
            continue;
        };
        let bytes = disk_bytes(&path);
        if !dry_run {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        gone.insert(name);
        out.push(Pruned { path, why, bytes });
    }
    // Memo entries: a tree's digest, named by a hash of its metadata; its image is known by the
    // digest. Entries of other kinds (the agent's) and entries being written stay.
    let memo = cache.join(MEMO);
    let mut entries: Vec<_> = fs::read_dir(&memo)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("tree-") {
            continue;
        }
        let Ok(digest) = fs::read_to_string(e.path()) else {
            continue;
        };
        let img = image_name(digest.trim());
        if !gone.contains(&img) && cache.join(&img).exists() {
            continue;
        }
        let bytes = disk_bytes(&e.path());
        if !dry_run {
            fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
        out.push(Pruned {
            path: e.path(),
            why: "memoized digest of a tree whose image is gone".into(),
            bytes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hako-img-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn digest_follows_content_and_metadata() {
        let d = tmp("digest");
        let r = d.join("rootfs");
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::write(r.join("bin/a"), b"one").unwrap();
        std::os::unix::fs::symlink("a", r.join("bin/b")).unwrap();
        let d1 = tree_digest(&r).unwrap();
        assert_eq!(d1, tree_digest(&r).unwrap());
        fs::write(r.join("bin/a"), b"two").unwrap();
        let d2 = tree_digest(&r).unwrap();
        assert_ne!(d1, d2);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(r.join("bin/a"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(d2, tree_digest(&r).unwrap());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn image_is_cached_and_budget_refused() {
        let d = tmp("cache");
        let r = d.join("rootfs");
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/hello"), b"hello\n").unwrap();
        let cache = d.join("cache");
        let img = rootfs_image(&cache, &r, 1 << 30).unwrap().path;
        // A device-sized file, sparse past its ext4.
        assert!(is_device_sized(&img));
        let md = fs::metadata(&img).unwrap();
        assert!(md.blocks() * 512 < 64 << 20, "{} blocks", md.blocks());
        // An ext4 superblock with our label.
        let mut data = vec![0u8; 4096];
        fs::File::open(&img).unwrap().read_exact(&mut data).unwrap();
        assert_eq!(&data[1024 + 56..1024 + 58], &[0x53, 0xef]);
        assert!(data[1024 + 120..].starts_with(hako_agent::proto::ROOTFS_LABEL.as_bytes()));
        let mtime = fs::metadata(&img).unwrap().modified().unwrap();
        assert_eq!(
            rootfs_image(&cache, &r, 1 << 30).unwrap().path,
            img,
            "same tree, same image"
        );
        assert_eq!(
            fs::metadata(&img).unwrap().modified().unwrap(),
            mtime,
            "reused, not rebuilt"
        );
        let e = format!("{:#}", rootfs_image(&cache, &r, 1 << 20).unwrap_err());
        assert!(e.contains("over the microvm image budget"), "{e}");
        // Exactly the tree: no lost+found of mkfs's own.
        assert_eq!(root_names(&img).unwrap(), vec!["etc".to_string()]);
        // Only the one image: no temporary files left.
        let names: Vec<String> = fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != IMAGES_LOCK)
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_changed_file_makes_a_new_image_even_with_its_mtime_restored() {
        let d = tmp("memo");
        let r = d.join("rootfs");
        fs::create_dir_all(r.join("etc")).unwrap();
        let f = r.join("etc/hello");
        fs::write(&f, b"hello\n").unwrap();
        let cache = d.join("cache");
        let settle = std::time::Duration::ZERO;
        let img1 = rootfs_image_settled(&cache, &r, 1 << 30, settle)
            .unwrap()
            .path;
        // The digest is memoized: unchanged, the tree's files are not read again.
        let memo = cache.join(MEMO);
        let entries: Vec<_> = fs::read_dir(&memo).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1);
        let entry = entries[0].path();
        assert_eq!(
            fs::read_to_string(&entry).unwrap(),
            tree_digest(&r).unwrap()
        );
        fs::write(&entry, "marker").unwrap();
        let s = survey(&r, settle).unwrap();
        assert_eq!(memo_tree_digest(&memo, &r, &s).unwrap(), "marker");
        fs::write(&entry, tree_digest(&r).unwrap()).unwrap();
        // Same size, mtime set back: only the ctime tells. Its clock ticks in milliseconds.
        let old = fs::metadata(&f).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&f, b"HELLO\n").unwrap();
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_times(
                fs::FileTimes::new()
                    .set_accessed(old.accessed().unwrap())
                    .set_modified(old.modified().unwrap()),
            )
            .unwrap();
        let new = fs::metadata(&f).unwrap();
        assert_eq!(
            (new.len(), new.modified().unwrap()),
            (old.len(), old.modified().unwrap())
        );
        let img2 = rootfs_image_settled(&cache, &r, 1 << 30, settle)
            .unwrap()
            .path;
        assert_ne!(img1, img2, "a changed file must make a new image");
        assert_eq!(debugfs(&img2, "cat /etc/hello", false).unwrap(), "HELLO\n");
        assert_eq!(debugfs(&img1, "cat /etc/hello", false).unwrap(), "hello\n");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn one_survey_sizes_and_stamps_the_tree() {
        let d = tmp("survey");
        let r = d.join("rootfs");
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/a"), vec![1u8; 5000]).unwrap();
        std::os::unix::fs::symlink("x".repeat(80), r.join("long")).unwrap();
        let s = survey(&r, std::time::Duration::ZERO).unwrap();
        let t = tree_size(&r).unwrap();
        assert_eq!((s.size.entries, s.size.data), (t.entries, t.data));
        // root, etc, etc/a, long; a's 5000 bytes in two blocks, the long symlink in one.
        assert_eq!(s.size.entries, 4);
        assert!(s.size.data >= 3 * 4096, "{}", s.size.data);
        assert!(s.settled, "settle 0: every entry is settled");
        assert_eq!(
            s.stamp,
            survey(&r, std::time::Duration::ZERO).unwrap().stamp
        );
        fs::write(r.join("etc/b"), b"").unwrap();
        let s2 = survey(&r, SETTLE).unwrap();
        assert_ne!(s.stamp, s2.stamp, "a new entry changes the stamp");
        assert!(!s2.settled, "an entry made just now is not settled");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_tree_changed_just_now_is_not_memoized() {
        let d = tmp("unsettled");
        let r = d.join("rootfs");
        fs::create_dir_all(&r).unwrap();
        fs::write(r.join("new"), b"x").unwrap();
        let memo = d.join("memo");
        let got = memo_tree_digest(&memo, &r, &survey(&r, SETTLE).unwrap()).unwrap();
        assert_eq!(got, tree_digest(&r).unwrap());
        assert!(
            !memo.exists(),
            "a tree changed within SETTLE must not be memoized"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn prune_leaves_every_image_while_a_create_holds_the_cache() {
        let d = tmp("hold");
        let r = d.join("rootfs");
        fs::create_dir_all(&r).unwrap();
        fs::write(r.join("f"), b"x").unwrap();
        let cache = d.join("cache");
        let held = rootfs_image(&cache, &r, 1 << 30).unwrap();
        // A create between its image lookup and its VM's open: prune --all removes no image.
        let gone = prune(&cache, crate::template::Keep::Nothing, false).unwrap();
        assert!(gone.is_empty(), "{gone:?}");
        assert!(held.path.is_file());
        // Dry, it still says what would go.
        let would = prune(&cache, crate::template::Keep::Nothing, true).unwrap();
        assert_eq!(would.len(), 1, "{would:?}");
        let path = held.path.clone();
        drop(held);
        let gone = prune(&cache, crate::template::Keep::Nothing, false).unwrap();
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert!(!path.exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_trees_own_lost_found_is_kept_with_its_content() {
        let d = tmp("lostfound");
        let r = d.join("rootfs");
        fs::create_dir_all(r.join("lost+found")).unwrap();
        fs::write(r.join("lost+found/kept"), b"mine\n").unwrap();
        let img = rootfs_image(&d.join("cache"), &r, 1 << 30).unwrap().path;
        assert_eq!(root_names(&img).unwrap(), vec!["lost+found".to_string()]);
        let out = debugfs(&img, "cat /lost+found/kept", false).unwrap();
        assert_eq!(out, "mine\n");
        fs::remove_dir_all(&d).unwrap();
    }
}
