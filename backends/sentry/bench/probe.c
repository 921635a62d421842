/* Benchmark probe for the sentry (static): probe getpid N | probe read N PATH | probe true */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) return 0;
    long n = argc > 2 ? atol(argv[2]) : 10000;
    char buf[4096];
    double t0 = now();
    if (!strcmp(argv[1], "getpid")) {
        for (long i = 0; i < n; i++) syscall(SYS_getpid);
    } else if (!strcmp(argv[1], "read")) {
        int fd = open(argc > 3 ? argv[3] : "/etc/hostname", O_RDONLY);
        if (fd < 0) { perror("open"); return 1; }
        for (long i = 0; i < n; i++) pread(fd, buf, sizeof buf, 0);
    } else {
        return 0;
    }
    double ns = (now() - t0) / n;
    printf("%s %.0f ns/call\n", argv[1], ns);
    return 0;
}
