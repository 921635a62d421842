/* A pipe's reads and writes may run in the task itself (the sentry hands it the pipe, issue
 * 17). Whatever the task does to the number afterwards, the pipe must behave as Linux's: once
 * no number reads it, a writer gets EPIPE; once no number writes it, a reader gets end of file;
 * flags are shared by dups; fork copies and exec keeps what is not close-on-exec. Each case
 * prints "<case> ok". */
#define _GNU_SOURCE
#include "check.h"
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void mk(int p[2]) { CHECK(pipe(p) == 0, "pipe"); }

static void put(int fd, const char *s) {
    CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s), "write");
}

/* Read what is there (or wait for it); it must be `want`. */
static void get(int fd, const char *want) {
    char b[64];
    ssize_t n = read(fd, b, strlen(want) ? strlen(want) : sizeof b);
    CHECK(n == (ssize_t)strlen(want) && memcmp(b, want, n) == 0, want);
}

static void epipe(int wfd) {
    errno = 0;
    CHECK(write(wfd, "x", 1) == -1 && errno == EPIPE, "EPIPE once no one reads");
}

static void on_alarm(int s) { (void)s; }

int main(int argc, char **argv) {
    int p[2], q[2], s[2], t[2];
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && strcmp(argv[1], "exec") == 0) {
        /* The new image: the read end it inherited still reads, and its close still counts. */
        int r = atoi(argv[2]), w = atoi(argv[3]);
        get(r, "b");
        CHECK(close(r) == 0, "close after exec");
        epipe(w);
        printf("exec ok\n");
        return 0;
    }

    /* close: the reader's close reaches the pipe. */
    mk(p);
    put(p[1], "a");
    get(p[0], "a");
    CHECK(close(p[0]) == 0, "close");
    epipe(p[1]);
    close(p[1]);
    printf("close ok\n");

    /* eof: the last writer's close ends the reader's read, also one waiting in the pipe. */
    mk(p);
    put(p[1], "ab");
    get(p[0], "a");
    pid_t c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0) {
        close(p[0]);
        put(p[1], "c");
        _exit(0);
    }
    close(p[1]);
    get(p[0], "b");
    get(p[0], "c");
    get(p[0], "");
    CHECK(waitpid(c, NULL, 0) == c, "waitpid");
    close(p[0]);
    printf("eof ok\n");

    /* dup2: onto a number that reads a pipe, another pipe's read end and then a file. */
    mk(p);
    mk(q);
    put(p[1], "a");
    get(p[0], "a");
    put(q[1], "q");
    CHECK(dup2(q[0], p[0]) == p[0], "dup2 a pipe");
    epipe(p[1]);
    get(p[0], "q");
    int n = open("/dev/null", O_RDONLY);
    CHECK(n >= 0, "open /dev/null");
    CHECK(dup2(n, p[0]) == p[0], "dup2 a file");
    CHECK(close(q[0]) == 0, "close q");
    epipe(q[1]);
    get(p[0], "");
    close(p[0]);
    close(p[1]);
    close(q[1]);
    close(n);
    /* ... and a file onto a number that writes a pipe: the reader then sees its end. */
    mk(p);
    put(p[1], "a");
    n = open("/dev/null", O_WRONLY);
    CHECK(n >= 0, "open /dev/null");
    CHECK(dup2(n, p[1]) == p[1], "dup2 onto a write end");
    get(p[0], "a");
    get(p[0], "");
    close(p[0]);
    close(p[1]);
    close(n);
    printf("dup2 ok\n");

    /* close_range over a number that reads a pipe. */
    mk(p);
    put(p[1], "a");
    get(p[0], "a");
    CHECK(syscall(SYS_close_range, p[0], p[0], 0) == 0, "close_range");
    epipe(p[1]);
    close(p[1]);
    printf("close_range ok\n");

    /* fork: the child reads through its copy and closes it while it keeps running; once the
     * parent closes its own, no one reads. */
    mk(p);
    mk(s);
    mk(t);
    put(p[1], "ab");
    get(p[0], "a");
    c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0) {
        close(t[1]);
        get(p[0], "b");
        CHECK(close(p[0]) == 0, "close in the child");
        put(s[1], "k");
        get(t[0], ""); /* until the parent is done */
        _exit(0);
    }
    close(t[0]);
    get(s[0], "k");
    CHECK(close(p[0]) == 0, "close in the parent");
    epipe(p[1]);
    close(t[1]);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child");
    close(p[1]);
    close(s[0]);
    close(s[1]);
    printf("fork ok\n");

    /* nonblock: a dup's F_SETFL reaches the reads of the original; FIONBIO turns it back. */
    mk(p);
    put(p[1], "a");
    get(p[0], "a");
    int d = dup(p[0]);
    CHECK(d >= 0, "dup");
    CHECK(fcntl(d, F_SETFL, O_NONBLOCK) == 0, "F_SETFL");
    char b;
    errno = 0;
    CHECK(read(p[0], &b, 1) == -1 && errno == EAGAIN, "EAGAIN through the dup's flag");
    int off = 0;
    CHECK(ioctl(p[0], FIONBIO, &off) == 0, "FIONBIO");
    if (argc < 2 || strcmp(argv[1], "no-signal") != 0) {
        /* Not on the ptrace platform, whose blocked calls no signal reaches (a known limit). */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm; /* no SA_RESTART */
        sigaction(SIGALRM, &sa, NULL);
        alarm(1);
        errno = 0;
        CHECK(read(d, &b, 1) == -1 && errno == EINTR, "a blocking read again, ended by a signal");
    }
    close(d);
    close(p[0]);
    epipe(p[1]);
    close(p[1]);
    printf("nonblock ok\n");

    /* exec: a read end that is not close-on-exec goes on reading in the new image. */
    mk(p);
    put(p[1], "ab");
    get(p[0], "a");
    char rs[16], ws[16];
    snprintf(rs, sizeof rs, "%d", p[0]);
    snprintf(ws, sizeof ws, "%d", p[1]);
    execl(argv[0], argv[0], "exec", rs, ws, (char *)NULL);
    CHECK(0, "execl");
}
