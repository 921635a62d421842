/* A blocking send on a stream socket behaves as Linux's: it ends when every byte is sent, when a
 * signal comes (with the count sent so far), when SO_SNDTIMEO runs out (the count, or EAGAIN if
 * nothing was sent), or when the peer goes (the count and no SIGPIPE, then EPIPE and SIGPIPE).
 * MSG_DONTWAIT still sends what fits, then EAGAIN.
 *
 * `send_block block`: the cases no signal takes part in; `send_block signal`: the cases where a
 * signal ends a blocked send. One line per case, "ok" or what went wrong. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum { SIZE = 4 << 20 };
static unsigned char *buf;
static volatile sig_atomic_t fired, piped;

static unsigned char pat(size_t i) { return (unsigned char)(i * 7 + i / 4099); }

static void on_alarm(int sig) { (void)sig; fired++; }
static void on_pipe(int sig) { (void)sig; piped++; }

static void handler(int sig, void (*fn)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
}

/* A connected pair: AF_UNIX stream (`tcp` 0) or TCP over loopback (`tcp` 1). */
static void pair(int tcp, int sv[2]) {
    if (!tcp) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) { perror("socketpair"); exit(1); }
        return;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) ||
        getsockname(ls, (struct sockaddr *)&a, &l)) { perror("listen"); exit(1); }
    sv[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (sv[0] < 0 || connect(sv[0], (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(1); }
    sv[1] = accept(ls, NULL, NULL);
    if (sv[1] < 0) { perror("accept"); exit(1); }
    close(ls);
}

/* A child that reads `s` 4 KiB at a time until end of file or `stop` bytes, checks the pattern,
 * and exits 0 if it read `want`. */
static pid_t reader(int s, int other, size_t stop, size_t want) {
    pid_t c = fork();
    if (c != 0) return c;
    close(other);
    static unsigned char b[4096];
    size_t at = 0;
    while (at < stop) {
        size_t n0 = stop - at < sizeof b ? stop - at : sizeof b;
        ssize_t n = read(s, b, n0);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++, at++)
            if (b[i] != pat(at)) _exit(2);
    }
    _exit(at == want ? 0 : 1);
}

static int child_ok(pid_t c) {
    int st = 0;
    waitpid(c, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* 4 MiB in one call, to a reader draining 4 KiB at a time: send, sendto, sendmsg (3 iovecs). */
static void whole(int tcp, int how) {
    static const char *names[] = {"send", "sendto", "sendmsg"};
    int sv[2];
    pair(tcp, sv);
    pid_t c = reader(sv[1], sv[0], (size_t)-1, SIZE);
    close(sv[1]);
    ssize_t n;
    if (how == 0) {
        n = send(sv[0], buf, SIZE, 0);
    } else if (how == 1) {
        n = sendto(sv[0], buf, SIZE, 0, NULL, 0);
    } else {
        struct iovec v[3] = {{buf, 100000}, {buf + 100000, 1900000}, {buf + 2000000, SIZE - 2000000}};
        struct msghdr m = {.msg_iov = v, .msg_iovlen = 3};
        n = sendmsg(sv[0], &m, 0);
    }
    close(sv[0]);
    int good = child_ok(c);
    const char *fam = tcp ? "tcp" : "unix";
    if (n == SIZE && good) printf("%s %s whole ok\n", fam, names[how]);
    else printf("%s %s whole FAILED: %zd, reader %s\n", fam, names[how], n, good ? "ok" : "failed");
}

static void block_cases(void) {
    for (int tcp = 0; tcp < 2; tcp++)
        for (int how = 0; how < 3; how++) whole(tcp, how);

    /* MSG_DONTWAIT: what fits, then EAGAIN. */
    int sv[2];
    pair(0, sv);
    ssize_t n = send(sv[0], buf, SIZE, MSG_DONTWAIT);
    errno = 0;
    ssize_t m = send(sv[0], buf, SIZE, MSG_DONTWAIT);
    if (n > 0 && n < SIZE && m == -1 && errno == EAGAIN) printf("dontwait ok\n");
    else printf("dontwait FAILED: %zd, then %zd (%s)\n", n, m, strerror(errno));
    close(sv[0]);
    close(sv[1]);

    /* SO_SNDTIMEO, nobody reading: the count sent, then EAGAIN. */
    pair(0, sv);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200 * 1000};
    if (setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv)) { perror("SO_SNDTIMEO"); exit(1); }
    n = send(sv[0], buf, SIZE, 0);
    errno = 0;
    m = send(sv[0], buf, SIZE, 0);
    if (n > 0 && n < SIZE && m == -1 && errno == EAGAIN) printf("timeout ok\n");
    else printf("timeout FAILED: %zd, then %zd (%s)\n", n, m, strerror(errno));
    close(sv[0]);
    close(sv[1]);

    /* The peer goes after 100000 bytes: the count sent and no SIGPIPE, then EPIPE and SIGPIPE. */
    handler(SIGPIPE, on_pipe, 0);
    pair(0, sv);
    pid_t c = reader(sv[1], sv[0], 100000, 100000);
    close(sv[1]);
    piped = 0;
    n = send(sv[0], buf, SIZE, 0);
    int after_first = piped;
    errno = 0;
    m = send(sv[0], buf, SIZE, 0);
    int e = errno;
    close(sv[0]);
    int good = child_ok(c);
    if (n >= 100000 && n < SIZE && after_first == 0 && m == -1 && e == EPIPE && piped == 1 && good)
        printf("peer gone ok\n");
    else
        printf("peer gone FAILED: %zd (%d SIGPIPE), then %zd (%s, %d SIGPIPE)\n", n, after_first,
               m, strerror(e), (int)piped);
    signal(SIGPIPE, SIG_DFL);
}

/* Nobody reads: the socket takes what fits, then a signal ends the send with that count, with
 * SA_RESTART or without (a partial count is never restarted). */
static void signal_cases(void) {
    for (int tcp = 0; tcp < 2; tcp++) {
        for (int r = 0; r < 2; r++) {
            int sv[2];
            pair(tcp, sv);
            handler(SIGALRM, on_alarm, r ? SA_RESTART : 0);
            fired = 0;
            alarm(1);
            ssize_t n = send(sv[0], buf, SIZE, 0);
            const char *fam = tcp ? "tcp" : "unix";
            const char *name = r ? "partial restart" : "partial";
            if (n > 0 && n < SIZE && fired == 1) printf("%s %s ok\n", fam, name);
            else printf("%s %s FAILED: %zd, %d signals\n", fam, name, n, (int)fired);
            close(sv[0]);
            close(sv[1]);
        }
    }
}

int main(int argc, char **argv) {
    buf = malloc(SIZE);
    if (!buf) return 1;
    for (size_t i = 0; i < SIZE; i++) buf[i] = pat(i);
    if (argc > 1 && strcmp(argv[1], "signal") == 0) signal_cases();
    else block_cases();
    return 0;
}
