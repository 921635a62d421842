/* While other threads trap without pause (getppid in a loop), every other event source of the
 * sentry is still served: a poll parked on a pipe, woken by another process's write; a poll with
 * a deadline alone; a child's fork, execve and exit (ptrace stops, SIGCHLD). With no spinner
 * first, then one, then two. Prints "events ok". */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;

static void *spin(void *arg) {
    (void)arg;
    while (!stop)
        syscall(SYS_getppid);
    return NULL;
}

static int one_round(void) {
    int p[2];
    if (pipe(p))
        return 1;
    pid_t c = fork();
    if (c < 0)
        return 2;
    if (c == 0) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (write(p[1], "x", 1) != 1)
            _exit(4);
        execl("/bin/true", "true", (char *)NULL);
        _exit(5);
    }
    close(p[1]);
    struct pollfd pf = {p[0], POLLIN, 0};
    if (poll(&pf, 1, -1) != 1)
        return 3;
    char b;
    if (read(p[0], &b, 1) != 1)
        return 4;
    int st;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 5;
    if (poll(NULL, 0, 30) != 0)
        return 6;
    close(p[0]);
    return 0;
}

int main(void) {
    pthread_t t[2];
    for (int spinners = 0; spinners <= 2; spinners++) {
        stop = 0;
        for (int i = 0; i < spinners; i++)
            pthread_create(&t[i], NULL, spin, NULL);
        for (int r = 0; r < 5; r++) {
            int e = one_round();
            if (e) {
                printf("%d spinners, round %d: step %d failed\n", spinners, r, e);
                return 1;
            }
        }
        stop = 1;
        for (int i = 0; i < spinners; i++)
            pthread_join(t[i], NULL);
    }
    printf("events ok\n");
    return 0;
}
