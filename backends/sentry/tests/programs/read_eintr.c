/* A signal with a handler still ends a read blocked on an empty pipe: SIGALRM without
 * SA_RESTART gives EINTR, and with SA_RESTART the read goes on and gets the byte a child writes
 * later. Prints "eintr ok" and "restart ok". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t fired;
static void on_alarm(int sig) { (void)sig; fired++; }

static void handler(int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = flags;
    sigaction(SIGALRM, &sa, NULL);
}

int main(void) {
    int p[2];
    char b;
    if (pipe(p)) return 2;
    handler(0);
    alarm(1);
    ssize_t n = read(p[0], &b, 1);
    printf("eintr %s\n", n < 0 && errno == EINTR && fired == 1 ? "ok" : "FAILED");
    handler(SA_RESTART);
    pid_t c = fork();
    if (c == 0) {
        sleep(2);
        _exit(write(p[1], "x", 1) == 1 ? 0 : 1);
    }
    alarm(1);
    n = read(p[0], &b, 1);
    printf("restart %s\n", n == 1 && b == 'x' && fired == 2 ? "ok" : "FAILED");
    waitpid(c, NULL, 0);
    return 0;
}
