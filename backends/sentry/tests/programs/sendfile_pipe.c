/* sendfile from a regular file into a pipe keeps the file offset as Linux's does: with an offset
 * pointer the file's own offset stays and the pointer moves; without one the file's offset moves
 * by exactly what was sent, after a short send into a nearly full O_NONBLOCK pipe, after an
 * EAGAIN into a full one, and after sends that wait for a reader; into a pipe with no reader
 * EPIPE, or death by SIGPIPE. The input is /bin/busybox.
 * One line per case, "ok" or what went wrong. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

enum { PAGE = 4096, COUNT = 3000, BIG = 20000 };
static char want[BIG], got[BIG];

static off_t cur(int fd) { return lseek(fd, 0, SEEK_CUR); }

/* Read exactly n bytes from pipe p (blocking or not: EAGAIN is retried). */
static void drain(int p, char *to, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(p, to + done, n - done);
        if (r < 0 && errno == EAGAIN)
            continue;
        CHECK(r > 0, "read from the pipe");
        done += (size_t)r;
    }
}

/* Fill pipe p (non-blocking) with whole pages until it is full; the byte count. */
static size_t fill(int p) {
    static char page[PAGE];
    size_t n = 0;
    for (;;) {
        ssize_t w = write(p, page, PAGE);
        if (w < 0) {
            CHECK(errno == EAGAIN, "fill: EAGAIN when full");
            return n;
        }
        n += (size_t)w;
    }
}

int main(void) {
    int fd = open("/bin/busybox", O_RDONLY);
    CHECK(fd >= 0, "open /bin/busybox");
    off_t size = lseek(fd, 0, SEEK_END);
    CHECK(size > 100000, "busybox size");
    int p[2];

    /* With an offset pointer: the pointer moves, the file's offset does not. */
    CHECK(pipe(p) == 0, "pipe");
    CHECK(lseek(fd, 100, SEEK_SET) == 100, "lseek");
    off_t off = 5000;
    CHECK(sendfile(p[1], fd, &off, COUNT) == COUNT, "sendfile with offset");
    CHECK(off == 5000 + COUNT, "offset pointer moved");
    CHECK(cur(fd) == 100, "file offset kept");
    drain(p[0], got, COUNT);
    CHECK(pread(fd, want, COUNT, 5000) == COUNT, "pread");
    CHECK(memcmp(got, want, COUNT) == 0, "bytes sent with offset");
    printf("offset ok\n");

    /* Without: from the file's offset, which moves by what was sent. */
    CHECK(lseek(fd, 200, SEEK_SET) == 200, "lseek");
    CHECK(sendfile(p[1], fd, NULL, COUNT) == COUNT, "sendfile without offset");
    CHECK(cur(fd) == 200 + COUNT, "file offset moved");
    drain(p[0], got, COUNT);
    CHECK(pread(fd, want, COUNT, 200) == COUNT, "pread");
    CHECK(memcmp(got, want, COUNT) == 0, "bytes sent without offset");
    printf("no offset ok\n");

    /* At the end: what is left, then 0. */
    CHECK(lseek(fd, size - 10, SEEK_SET) == size - 10, "lseek");
    CHECK(sendfile(p[1], fd, NULL, 100) == 10, "sendfile of the last bytes");
    CHECK(cur(fd) == size, "offset at the end");
    CHECK(sendfile(p[1], fd, NULL, 100) == 0, "sendfile at the end");
    drain(p[0], got, 10);
    printf("eof ok\n");
    close(p[0]);
    close(p[1]);

    /* A nearly full O_NONBLOCK pipe (one page free): a short send, the offset moved by its
     * count; then the pipe is full: EAGAIN, the offset where it was. */
    CHECK(pipe2(p, O_NONBLOCK) == 0, "pipe2");
    size_t filled = fill(p[1]);
    drain(p[0], got, PAGE);
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
    ssize_t n = sendfile(p[1], fd, NULL, BIG);
    CHECK(n > 0 && n < BIG, "a short sendfile into a nearly full pipe");
    CHECK(cur(fd) == n, "offset moved by the short count");
    errno = 0;
    CHECK(sendfile(p[1], fd, NULL, BIG) == -1 && errno == EAGAIN, "EAGAIN into a full pipe");
    CHECK(cur(fd) == n, "offset kept after EAGAIN");
    for (size_t left = filled - PAGE; left > 0;) {
        size_t k = left < sizeof got ? left : sizeof got;
        drain(p[0], got, k);
        left -= k;
    }
    drain(p[0], got, (size_t)n);
    CHECK(pread(fd, want, (size_t)n, 0) == n, "pread");
    CHECK(memcmp(got, want, (size_t)n) == 0, "bytes of the short send");
    printf("nonblock short ok\n");
    close(p[0]);
    close(p[1]);

    /* A blocking pipe, full: the sends wait for a reader (a child that starts late); every
     * byte arrives once, in order, and the offset ends at what was sent. */
    CHECK(pipe2(p, O_NONBLOCK) == 0, "pipe2");
    filled = fill(p[1]);
    CHECK(fcntl(p[1], F_SETFL, 0) == 0, "F_SETFL blocking");
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        close(p[1]);
        CHECK(fcntl(p[0], F_SETFL, 0) == 0, "F_SETFL blocking (reader)");
        usleep(50000); /* let the sender find the pipe full (not needed for the result) */
        for (size_t left = filled; left > 0;) {
            size_t k = left < sizeof got ? left : sizeof got;
            drain(p[0], got, k);
            left -= k;
        }
        drain(p[0], got, BIG);
        CHECK(pread(fd, want, BIG, 0) == BIG, "pread (reader)");
        CHECK(memcmp(got, want, BIG) == 0, "bytes of the blocking sends");
        CHECK(read(p[0], got, 1) == 0, "end of file after the sends");
        _exit(0);
    }
    close(p[0]);
    size_t sent = 0;
    while (sent < BIG) {
        n = sendfile(p[1], fd, NULL, BIG - sent);
        CHECK(n > 0, "blocking sendfile");
        sent += (size_t)n;
        CHECK(cur(fd) == (off_t)sent, "offset after a blocking send");
    }
    close(p[1]);
    int st;
    CHECK(waitpid(child, &st, 0) == child, "waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("FAIL the reader (status %d)\n", st);
        return 1;
    }
    printf("blocking ok\n");

    /* No reader: EPIPE with SIGPIPE ignored, the offset where it was; with SIGPIPE's default
     * action the sender dies of it. */
    CHECK(pipe(p) == 0, "pipe");
    close(p[0]);
    CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR, "ignore SIGPIPE");
    CHECK(lseek(fd, 300, SEEK_SET) == 300, "lseek");
    errno = 0;
    CHECK(sendfile(p[1], fd, NULL, COUNT) == -1 && errno == EPIPE, "EPIPE with no reader");
    CHECK(cur(fd) == 300, "offset kept after EPIPE");
    CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR, "default SIGPIPE");
    child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        sendfile(p[1], fd, NULL, COUNT);
        _exit(3);
    }
    CHECK(waitpid(child, &st, 0) == child, "waitpid");
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGPIPE) {
        printf("FAIL a sender with no reader was not killed by SIGPIPE (status %d)\n", st);
        return 1;
    }
    close(p[1]);
    printf("epipe ok\n");
    return 0;
}
