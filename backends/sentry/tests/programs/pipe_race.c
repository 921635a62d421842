/* A child writes to a pipe and exits while its parent reads the pipe to end of file, ROUNDS
 * times: the pattern of `subprocess.run(..., capture_output=True)`. Both sides move one byte per
 * call under an interval timer (SIGALRM every 200 us), so signals keep landing while the sentry is
 * carrying out a call: a traced task's wait for the sentry's answer is interruptible, and the
 * kernel then restarts the call (even rounds: SA_RESTART) or the program retries it after EINTR
 * (odd rounds). Each byte must arrive once. Prints "lost N of ROUNDS" (N: rounds whose output
 * came back short, long or out of order). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define BYTES 64

static void tick(int sig) { (void)sig; }

static void timer(int restart) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tick;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static ssize_t retry(ssize_t (*f)(int, void *, size_t), int fd, void *b) {
    ssize_t n;
    while ((n = f(fd, b, 1)) < 0 && errno == EINTR) {}
    return n;
}

static ssize_t wr(int fd, void *b, size_t n) { return write(fd, b, n); }

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 300, lost = 0;
    for (int i = 0; i < rounds; i++) {
        int p[2];
        if (pipe(p)) return 2;
        pid_t c = fork();
        if (c < 0) return 2;
        if (c == 0) {
            close(p[0]);
            timer(i % 2 == 0);
            for (int k = 0; k < BYTES; k++) {
                char b = 'A' + k % 26;
                if (retry(wr, p[1], &b) != 1) _exit(1);
            }
            _exit(0);
        }
        close(p[1]);
        timer(i % 2 == 0);
        char got[BYTES * 2];
        size_t n = 0;
        char b;
        while (n < sizeof got && retry(read, p[0], &b) == 1) got[n++] = b;
        struct itimerval off = {{0, 0}, {0, 0}};
        setitimer(ITIMER_REAL, &off, NULL);
        close(p[0]);
        while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {}
        int ok = n == BYTES;
        for (size_t k = 0; ok && k < n; k++) ok = got[k] == 'A' + (int)(k % 26);
        if (!ok) lost++;
    }
    printf("lost %d of %d\n", lost, rounds);
    return 0;
}
