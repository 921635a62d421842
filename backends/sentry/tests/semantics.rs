//! Linux semantics the sentry must keep, each checked by a C program of tests/programs under
//! runc (where it runs here) and under the sentry on every platform this kernel has.

mod common;

/// Compile tests/programs/`name`.c into a busybox bundle and check that, run with `args`, it
/// prints `want` as Linux does, on every platform. Skips, saying why, without busybox, root or
/// gcc.
fn program_everywhere(name: &str, args: &[&str], want: &str) {
    let Some(b) = common::busybox_bundle() else {
        return;
    };
    let bin = format!("/bin/{name}");
    if common::compile_c(&format!("programs/{name}.c"), &b.rootfs().join(&bin[1..])).is_none() {
        return;
    }
    let args: Vec<&str> = std::iter::once(bin.as_str())
        .chain(args.iter().copied())
        .collect();
    common::same_as_linux_everywhere(
        &b,
        &args,
        want,
        serde_json::json!({}),
        serde_json::json!({}),
    );
}

/// "." relative to a removed cwd or directory descriptor is the directory itself, as Linux
/// finds it (stat, open, chdir), and never a new directory under its old name nor one named
/// as the host names a removed one; any other name in it is ENOENT (tests/programs/
/// removed_dot.c). The sentry once answered ENOENT for "." too, and failed every open relative
/// to a live directory descriptor while the cwd was removed.
#[test]
fn dot_of_a_removed_directory_is_the_directory_itself() {
    program_everywhere("removed_dot", &[], "dot ok\nnames ok\nopen ok\nchdir ok\n");
}

/// copy_file_range between the root and the /dev/shm tmpfs is EXDEV, as Linux 5.19 and later
/// answer it, after the argument checks and before the count and offsets; within one file
/// system it copies, and sendfile copies across (tests/programs/copy_xdev.c). The sentry once
/// copied across file systems.
#[test]
fn copy_file_range_between_file_systems_is_exdev() {
    program_everywhere(
        "copy_xdev",
        &[],
        "exdev ok\nchecks ok\nsame fs ok\nsendfile ok\n",
    );
}

/// /proc/thread-self/fd and /proc/<pid>/task/<tid>/fd are that thread's descriptors, which are
/// not the process's once the thread took its own table (close_range(CLOSE_RANGE_UNSHARE));
/// /proc/<pid>/task/<tid> is there only for a thread of <pid> (tests/programs/thread_fds.c).
/// The sentry once showed the process's table for every thread, and any task under task/.
#[test]
fn a_threads_proc_fd_is_its_own_table() {
    program_everywhere("thread_fds", &[], "unshare ok\ntasks ok\n");
}

/// In a tmpfs of the sandbox's own (/dev/shm), whose directories the sentry now caches and
/// whose held directories keep their path as the root's do (issue 17's follow-up), the cwd and
/// directory descriptors follow a rename, a new directory under an old name is not the held
/// one, and a removed one finds only itself and ".." (tests/programs/cwd_follow.c,
/// dirfd_walk.c and removed_dot.c, run in /dev/shm).
#[test]
fn held_directories_of_a_sandbox_tmpfs_follow_renames_and_removal() {
    program_everywhere(
        "cwd_follow",
        &["/dev/shm"],
        "rename ok\nmoved by another ok\nremoved ok\n",
    );
    program_everywhere(
        "dirfd_walk",
        &["/dev/shm"],
        "walk ok\nrename ok\nnew name ok\nfchdir ok\nremoved ok\n",
    );
    program_everywhere(
        "removed_dot",
        &["/dev/shm"],
        "dot ok\nnames ok\nopen ok\nchdir ok\n",
    );
}
