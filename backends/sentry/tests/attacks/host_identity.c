/* What a workload can learn of its host identity through the calls that run natively.
 * Before the sandbox had a pid namespace, set_tid_address (native: glibc learns its tid from it)
 * returned the host tid, so every thread knew its host pid. Prints the virtual pid, what
 * set_tid_address says, the same in a forked child, and what fork and waitpid return; then, when
 * given a path, waits until it exists (the test looks at the host side meanwhile). */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int word;

int main(int argc, char **argv) {
    long t = syscall(SYS_set_tid_address, &word);
    printf("pid %d set_tid_address %ld\n", getpid(), t);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        long ct = syscall(SYS_set_tid_address, &word);
        printf("child %d set_tid_address %ld\n", getpid(), ct);
        fflush(stdout);
        _exit(0);
    }
    int st;
    pid_t w = waitpid(c, &st, 0);
    printf("fork %d waitpid %d\n", c, w);
    fflush(stdout);
    if (argc > 1) {
        struct stat s;
        while (stat(argv[1], &s) != 0)
            usleep(10000);
    }
    return 0;
}
