#define _GNU_SOURCE
/* Calls Linux never interrupts never fail with EINTR, however signals land: a child sends the
 * parent SIGUSR1 (a handler without SA_RESTART) as fast as it can while the parent makes
 * pipes, dups, closes and writes a file many times. Under the sentry's notification platforms
 * a signal could end the wait of a call the sentry had not yet taken, which then failed with
 * EINTR: busybox sh lost the close of a pipe's write end that way and its reader hung.
 * Prints "eintr 0 of N rounds" (and how many signals the handler saw, at least one). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

static volatile sig_atomic_t seen;
static void on_usr1(int sig) { (void)sig; seen++; }

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    int file = open("/tmp/no_eintr", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(file >= 0, "open /tmp/no_eintr");
    pid_t parent = getpid();
    pid_t c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0) {
        for (;;)
            if (kill(parent, SIGUSR1) != 0)
                _exit(0);
    }
    int eintr = 0;
    for (int i = 0; i < rounds; i++) {
        int p[2];
        while (pipe2(p, 0) != 0) {
            CHECK(errno == EINTR, "pipe2");
            eintr++;
        }
        /* A close that failed leaves its descriptor open: say so before they pile up to 900. */
        CHECK(p[1] < 900, "descriptors leaked by failed closes");
        int d;
        while ((d = dup2(p[1], 900)) < 0) {
            CHECK(errno == EINTR, "dup2");
            eintr++;
        }
        int fds[3] = {p[0], p[1], d};
        for (int j = 0; j < 3; j++) {
            if (close(fds[j]) != 0) {
                CHECK(errno == EINTR, "close");
                eintr++;
            }
        }
        if (write(file, "x", 1) != 1) {
            CHECK(errno == EINTR, "write");
            eintr++;
        }
    }
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    printf("eintr %d of %d rounds%s\n", eintr, rounds, seen > 0 ? "" : " (no signal seen)");
    return 0;
}
