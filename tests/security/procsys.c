/* Attack: change host-global kernel state through /proc and /sys. Each file is written back
 * with the value just read from it (so a write that gets through changes nothing, but is
 * seen), except /proc/sysrq-trigger, which gets 'h' (print help to the kernel log).
 * Also tries to remount /proc/sys and /sys read-write. Prints one line per target. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static void writeback(const char *path) {
    char cur[512] = {0};
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, cur, sizeof cur - 1) : 0;
    if (fd >= 0) close(fd);
    if (n <= 0) { cur[0] = '\n'; n = 1; }
    if (strcmp(path, "/proc/sysrq-trigger") == 0) { strcpy(cur, "h"); n = 1; }
    fd = open(path, O_WRONLY);
    if (fd < 0) { printf("write %s: errno %d\n", path, errno); return; }
    ssize_t w = write(fd, cur, n);
    if (w >= 0) printf("write %s: ok\n", path);
    else printf("write %s: errno %d\n", path, errno);
    close(fd);
}

int main(void) {
    const char *targets[] = {
        "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
        "/proc/sys/kernel/hostname", "/proc/sys/vm/overcommit_memory",
        "/proc/sysrq-trigger", "/sys/kernel/rcu_expedited", "/sys/kernel/reboot/mode",
    };
    for (unsigned i = 0; i < sizeof targets / sizeof *targets; i++) writeback(targets[i]);
    if (mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND, NULL) == 0) printf("remount /proc/sys: ok\n");
    else printf("remount /proc/sys: errno %d\n", errno);
    if (mount(NULL, "/sys", NULL, MS_REMOUNT, NULL) == 0) printf("remount /sys: ok\n");
    else printf("remount /sys: errno %d\n", errno);
    fflush(stdout);
    return 0;
}
