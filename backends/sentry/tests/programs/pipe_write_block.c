/* A blocking write into a pipe behaves as Linux's: it ends when every byte is written, when a
 * signal comes (with the count written so far, or EINTR / a restart if nothing was), or when the
 * reader goes (the count, then EPIPE). O_NONBLOCK still writes what fits, then EAGAIN.
 *
 * `pipe_write_block block`: the cases no signal takes part in; `pipe_write_block signal`: the
 * cases where a signal ends a blocked write. One line per case, "ok" or what went wrong. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MIB = 1 << 20 };
static unsigned char *buf;
static volatile sig_atomic_t fired;
static int go_fd = -1; /* the handler writes a byte here, when set */

static unsigned char pat(size_t i) { return (unsigned char)(i * 7 + i / 4099); }

static void on_alarm(int sig) {
    (void)sig;
    fired++;
    if (go_fd >= 0) {
        char c = 'g';
        (void)!write(go_fd, &c, 1);
    }
}

static void handler(int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = flags;
    sigaction(SIGALRM, &sa, NULL);
}

/* A child that reads `p` 4 KiB at a time (first waiting for a byte on `go`, if >= 0) until end
 * of file or `stop` bytes, checks the pattern from `from`, and exits 0 if it read `want`. */
static pid_t reader(int p[2], int go, size_t from, size_t stop, size_t want) {
    pid_t c = fork();
    if (c != 0) return c;
    close(p[1]);
    if (go >= 0) {
        char g;
        if (read(go, &g, 1) != 1) _exit(3);
    }
    static unsigned char b[4096];
    size_t at = 0;
    while (at < stop) {
        size_t n0 = stop - at < sizeof b ? stop - at : sizeof b;
        ssize_t n = read(p[0], b, n0);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++, at++)
            if (at >= from && b[i] != pat(at - from)) _exit(2);
    }
    _exit(at == want ? 0 : 1);
}

static int child_ok(pid_t c) {
    int st = 0;
    waitpid(c, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Fill `fd` (blocking) to the brim; returns how many bytes it took. */
static size_t fill(int fd) {
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t n = 0;
    ssize_t w;
    while ((w = write(fd, buf, 4096)) > 0) n += (size_t)w;
    fcntl(fd, F_SETFL, fl);
    return n;
}

static void block_cases(void) {
    int p[2];
    ssize_t n;

    /* 1 MiB in one write, a reader draining 4 KiB at a time. */
    if (pipe(p)) { perror("pipe"); exit(1); }
    pid_t c = reader(p, -1, 0, (size_t)-1, MIB);
    close(p[0]);
    n = write(p[1], buf, MIB);
    close(p[1]);
    int good = child_ok(c);
    if (n == MIB && good) printf("write whole ok\n");
    else printf("write whole FAILED: %zd, reader %s\n", n, good ? "ok" : "failed");

    /* The same with writev, three iovecs. */
    if (pipe(p)) { perror("pipe"); exit(1); }
    c = reader(p, -1, 0, (size_t)-1, MIB);
    close(p[0]);
    struct iovec v[3] = {{buf, 100000}, {buf + 100000, 700000}, {buf + 800000, MIB - 800000}};
    n = writev(p[1], v, 3);
    close(p[1]);
    good = child_ok(c);
    if (n == MIB && good) printf("writev whole ok\n");
    else printf("writev whole FAILED: %zd, reader %s\n", n, good ? "ok" : "failed");

    /* O_NONBLOCK: what fits, then EAGAIN. */
    if (pipe2(p, O_NONBLOCK)) { perror("pipe2"); exit(1); }
    int size = fcntl(p[1], F_GETPIPE_SZ);
    n = write(p[1], buf, MIB);
    errno = 0;
    ssize_t m = write(p[1], buf, MIB);
    if (n == size && m == -1 && errno == EAGAIN) printf("nonblock ok\n");
    else printf("nonblock FAILED: %zd of pipe size %d, then %zd (%s)\n", n, size, m, strerror(errno));
    close(p[0]);
    close(p[1]);

    /* The reader goes after 100000 bytes: the count written, then EPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if (pipe(p)) { perror("pipe"); exit(1); }
    c = reader(p, -1, 0, 100000, 100000);
    close(p[0]);
    n = write(p[1], buf, MIB);
    errno = 0;
    m = write(p[1], buf, MIB);
    int e = errno;
    close(p[1]);
    good = child_ok(c);
    if (n >= 100000 && n < MIB && m == -1 && e == EPIPE && good) printf("reader gone ok\n");
    else printf("reader gone FAILED: %zd, then %zd (%s)\n", n, m, strerror(e));
    signal(SIGPIPE, SIG_DFL);
}

static void signal_cases(void) {
    int p[2];
    ssize_t n;

    /* Nobody reads: the pipe takes its size, then a signal ends the write with that count,
     * with SA_RESTART or without (a partial count is never restarted). */
    for (int r = 0; r < 2; r++) {
        if (pipe(p)) { perror("pipe"); exit(1); }
        int size = fcntl(p[1], F_GETPIPE_SZ);
        handler(r ? SA_RESTART : 0);
        fired = 0;
        alarm(1);
        n = write(p[1], buf, MIB);
        const char *name = r ? "partial restart" : "partial";
        if (n == size && fired == 1) printf("%s ok\n", name);
        else printf("%s FAILED: %zd of pipe size %d, %d signals\n", name, n, size, (int)fired);
        close(p[0]);
        close(p[1]);
    }

    /* A full pipe: nothing written when the signal comes, so EINTR without SA_RESTART. */
    if (pipe(p)) { perror("pipe"); exit(1); }
    fill(p[1]);
    handler(0);
    fired = 0;
    alarm(1);
    errno = 0;
    n = write(p[1], buf, MIB);
    if (n == -1 && errno == EINTR && fired == 1) printf("eintr ok\n");
    else printf("eintr FAILED: %zd (%s), %d signals\n", n, strerror(errno), (int)fired);
    close(p[0]);
    close(p[1]);

    /* ... and with SA_RESTART the write starts again and writes it all: the handler lets a
     * reader start, which drains what filled the pipe and the whole MiB. */
    int go[2];
    if (pipe(p) || pipe(go)) { perror("pipe"); exit(1); }
    size_t filled = fill(p[1]);
    pid_t c = reader(p, go[0], filled, (size_t)-1, filled + MIB);
    close(p[0]);
    close(go[0]);
    go_fd = go[1];
    handler(SA_RESTART);
    fired = 0;
    alarm(1);
    n = write(p[1], buf, MIB);
    go_fd = -1;
    close(p[1]);
    close(go[1]);
    int good = child_ok(c);
    if (n == MIB && fired == 1 && good) printf("restart ok\n");
    else printf("restart FAILED: %zd, %d signals, reader %s\n", n, (int)fired, good ? "ok" : "failed");
}

int main(int argc, char **argv) {
    buf = malloc(MIB);
    if (!buf) return 1;
    for (size_t i = 0; i < MIB; i++) buf[i] = pat(i);
    if (argc > 1 && strcmp(argv[1], "signal") == 0) signal_cases();
    else block_cases();
    return 0;
}
