/* Large writev calls into a pipe whose reader is slower arrive whole and in order: the writer
 * sends 20 rounds of three iovecs (100 KB, 700 KB, 300 KB) of a known pattern, resuming after
 * short writes; the reader checks every byte. Prints "ok BYTES" or what went wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const size_t sizes[3] = {100000, 700000, 300000};
enum { ROUNDS = 20 };

static unsigned char pat(unsigned long long i) { return (unsigned char)(i * 7 + i / 4099); }

int main(void) {
    int p[2];
    if (pipe(p)) { perror("pipe"); return 1; }
    pid_t c = fork();
    if (c < 0) { perror("fork"); return 1; }
    if (c == 0) {
        close(p[1]);
        unsigned long long at = 0;
        static unsigned char b[4096];
        ssize_t n;
        while ((n = read(p[0], b, sizeof b)) > 0) {
            for (ssize_t i = 0; i < n; i++, at++)
                if (b[i] != pat(at)) { printf("bad byte at %llu\n", at); fflush(stdout); _exit(1); }
        }
        unsigned long long want = (unsigned long long)ROUNDS * (sizes[0] + sizes[1] + sizes[2]);
        if (n < 0) { perror("read"); fflush(stdout); _exit(1); }
        if (at != want) { printf("got %llu bytes of %llu\n", at, want); fflush(stdout); _exit(1); }
        printf("ok %llu\n", at);
        fflush(stdout);
        _exit(0);
    }
    close(p[0]);
    size_t total = sizes[0] + sizes[1] + sizes[2];
    unsigned char *buf = malloc(total);
    if (!buf) return 1;
    unsigned long long at = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < total; i++) buf[i] = pat(at + i);
        struct iovec v[3] = {{buf, sizes[0]}, {buf + sizes[0], sizes[1]}, {buf + sizes[0] + sizes[1], sizes[2]}};
        struct iovec *cur = v;
        int cnt = 3;
        while (cnt > 0) {
            ssize_t n = writev(p[1], cur, cnt);
            if (n < 0) { perror("writev"); return 1; }
            while (cnt > 0 && (size_t)n >= cur->iov_len) { n -= cur->iov_len; cur++; cnt--; }
            if (cnt > 0) { cur->iov_base = (char *)cur->iov_base + n; cur->iov_len -= n; }
        }
        at += total;
    }
    close(p[1]);
    int st = 0;
    waitpid(c, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
