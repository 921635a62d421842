/* Attacker's probe of the capability model: what may uid 0 do with the capability sets it was
 * given? Prints one "name=result" line per attempt (result: ok, a value, or the errno name) so
 * the same program's output under the sentry and under runc can be compared line by line.
 * Expected rootfs: /secret (root, mode 000), /other (uid 1000, 0644), /otherdir (uid 1000, 0755),
 * /closed (uid 1000, 0700) holding inside (0644), /tmp/rootfile (root, 0666, in the sticky /tmp). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ESRCH: return "ESRCH";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case ENOSYS: return "ENOSYS";
    case EEXIST: return "EEXIST";
    }
    static char b[32];
    snprintf(b, sizeof b, "errno%d", e);
    return b;
}

static void rep(const char *what, long rc) {
    if (rc < 0)
        printf("%s=%s\n", what, ename(errno));
    else
        printf("%s=ok\n", what);
    fflush(stdout);
}

static void caps_status(const char *tag) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    if (!f) {
        printf("%s.status=%s\n", tag, ename(errno));
        return;
    }
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Cap", 3) == 0)
            printf("%s.%s", tag, line);
    fclose(f);
    fflush(stdout);
}

static struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};

int main(int argc, char **argv) {
    if (argc > 1) {
        /* Re-executed: show the sets execve left. */
        caps_status(argv[1]);
        return 0;
    }
    /* Keep SIGCHLD pending rather than delivered: this probe is about permissions, and a signal
     * that interrupts a syscall the sentry already ran would only add noise (a traced task never
     * ignores a signal, so the dying children's SIGCHLD would interrupt). */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    caps_status("start");
    printf("capbset_read_kill=%d\n", prctl(PR_CAPBSET_READ, CAP_KILL, 0, 0, 0));
    printf("ambient_is_set_chown=%d\n", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_CHOWN, 0, 0));
    printf("keepcaps=%d\n", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));

    /* DAC_OVERRIDE / DAC_READ_SEARCH: a root-only mode-000 file, another user's file and dir. */
    int fd = open("/secret", O_RDONLY);
    rep("read_secret", fd);
    if (fd >= 0)
        close(fd);
    fd = open("/other", O_WRONLY);
    rep("write_other", fd);
    if (fd >= 0)
        close(fd);
    rep("mkdir_in_otherdir", mkdir("/otherdir/mine", 0755));
    rep("chdir_closed_dir", chdir("/closed"));
    /* A world-readable file inside another user's 0700 directory: the walk needs search. */
    fd = open("/closed/inside", O_RDONLY);
    rep("read_inside_closed_dir", fd);
    if (fd >= 0)
        close(fd);
    struct stat sb;
    rep("stat_inside_closed_dir", stat("/closed/inside", &sb));
    chdir("/");
    /* CHOWN, FOWNER */
    rep("chown_secret", chown("/secret", 1000, 1000));
    rep("chmod_other", chmod("/other", 0777));
    rep("chmod_secret_setuid", chmod("/secret", 04777));
    rep("unlink_etc_data", unlink("/etc/data.txt"));
    /* Sticky /tmp: only the owner of an entry (or of /tmp, or CAP_FOWNER) removes it. */
    rep("unlink_roots_file_in_sticky_tmp", unlink("/tmp/rootfile"));
    /* Lookup errors come before permission errors (mkdir -p relies on EEXIST). */
    rep("mkdir_existing_etc", mkdir("/etc", 0755));
    rep("unlink_missing_in_etc", unlink("/etc/no-such-file"));
    rep("creat_excl_existing_passwd", open("/etc/passwd", O_CREAT | O_EXCL | O_WRONLY, 0644));

    /* KILL: a child that becomes uid 1000 (needs SETUID), then signal it without CAP_KILL. */
    int p[2];
    if (pipe(p) < 0)
        return 2;
    pid_t child = fork();
    if (child == 0) {
        char r = setresuid(1000, 1000, 1000) == 0 ? 'y' : 'n';
        write(p[1], &r, 1);
        for (;;)
            pause();
    }
    char r = 0;
    read(p[0], &r, 1);
    printf("child_setresuid=%s\n", r == 'y' ? "ok" : "EPERM");
    struct __user_cap_data_struct data[2], saved[2];
    rep("capget", syscall(SYS_capget, &hdr, saved));
    memcpy(data, saved, sizeof data);
    data[0].effective &= ~(1u << CAP_KILL);
    rep("capset_drop_kill_eff", syscall(SYS_capset, &hdr, data));
    rep("kill_other_uid", kill(child, 0));
    rep("capset_restore", syscall(SYS_capset, &hdr, saved));
    rep("kill_after_restore", kill(child, SIGKILL));
    waitpid(child, NULL, 0);
    /* capset may not raise what the permitted set does not hold. */
    memcpy(data, saved, sizeof data);
    data[0].permitted |= 1u << CAP_SYS_ADMIN;
    data[0].effective |= 1u << CAP_SYS_ADMIN;
    rep("capset_raise_sys_admin", syscall(SYS_capset, &hdr, data));

    /* keepcaps: setuid(1000) in a child keeps the permitted set, clears the effective one. */
    child = fork();
    if (child == 0) {
        prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
        rep("keepcaps_setuid", setuid(1000));
        caps_status("keepcaps");
        exit(0);
    }
    waitpid(child, NULL, 0);

    /* The non-root-with-capabilities recipe: drop one capability from the bounding set, keep
     * caps across setuid(1000), raise CAP_CHOWN into the ambient set, execve: the new image has
     * exactly the ambient capability. */
    child = fork();
    if (child == 0) {
        rep("bset_drop_sys_chroot", prctl(PR_CAPBSET_DROP, CAP_SYS_CHROOT, 0, 0, 0));
        prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
        rep("setresuid_1000_keepcaps", setresuid(1000, 1000, 1000));
        caps_status("kept");
        rep("ambient_raise_chown", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_CHOWN, 0, 0));
        execl("/probe", "/probe", "exec", (char *)NULL);
        rep("execl", -1);
        exit(1);
    }
    waitpid(child, NULL, 0);

    /* SETUID: become 1000, then try to come back. */
    rep("setuid_1000", setuid(1000));
    rep("setuid_back_to_0", setuid(0));
    printf("uid=%d euid=%d\n", getuid(), geteuid());
    caps_status("end");
    return 0;
}
