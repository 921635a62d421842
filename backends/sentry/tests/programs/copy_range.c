/* copy_file_range between two regular files as Linux does it: with offset pointers the files'
 * own offsets stay and the pointers move; without them the offsets move; flags other than 0 are
 * EINVAL; an output offset pointer into an O_APPEND file is EBADF, and so is an input not open
 * for reading (copy_file_range and sendfile); a pipe at either end is EINVAL. One line per case. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "check.h"

static off_t cur(int fd) { return lseek(fd, 0, SEEK_CUR); }

static void contents(int fd, const char *want) {
    char got[64] = {0};
    size_t n = strlen(want);
    CHECK(pread(fd, got, sizeof got, 0) == (ssize_t)n, "the output's length");
    CHECK(memcmp(got, want, n) == 0, "the output's bytes");
}

int main(void) {
    int in = open("/tmp/cfr-in", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int out = open("/tmp/cfr-out", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(in >= 0 && out >= 0, "create the files");
    CHECK(write(in, "0123456789abcdef", 16) == 16, "write the input");
    CHECK(write(out, "xxxxxxxxxxxxxxxxxxxx", 20) == 20, "write the output");
    CHECK(lseek(in, 0, SEEK_SET) == 0 && lseek(out, 0, SEEK_SET) == 0, "rewind");

    loff_t oi = 2, oo = 5;
    CHECK(copy_file_range(in, &oi, out, &oo, 4, 0) == 4, "copy with both pointers");
    CHECK(oi == 6 && oo == 9, "both pointers moved by 4");
    CHECK(cur(in) == 0 && cur(out) == 0, "the files' own offsets stayed");
    contents(out, "xxxxx2345xxxxxxxxxxx");
    printf("pointers ok\n");

    CHECK(lseek(in, 10, SEEK_SET) == 10 && lseek(out, 1, SEEK_SET) == 1, "seek");
    CHECK(copy_file_range(in, NULL, out, NULL, 3, 0) == 3, "copy at the files' offsets");
    CHECK(cur(in) == 13 && cur(out) == 4, "both offsets moved by 3");
    contents(out, "xabcx2345xxxxxxxxxxx");
    printf("offsets ok\n");

    oo = 0;
    CHECK(copy_file_range(in, NULL, out, &oo, 2, 0) == 2, "copy at the input's offset");
    CHECK(cur(in) == 15 && cur(out) == 4 && oo == 2, "the input moved, the output stayed");
    contents(out, "debcx2345xxxxxxxxxxx");
    printf("mixed ok\n");

    oi = 0;
    errno = 0;
    CHECK(copy_file_range(in, &oi, out, NULL, 1, 1) == -1 && errno == EINVAL, "flags: EINVAL");
    int app = open("/tmp/cfr-out", O_WRONLY | O_APPEND);
    CHECK(app >= 0, "open O_APPEND");
    oo = 0;
    errno = 0;
    CHECK(copy_file_range(in, &oi, app, &oo, 1, 0) == -1 && errno == EBADF,
          "an output pointer into O_APPEND: EBADF");
    int wo = open("/tmp/cfr-in", O_WRONLY);
    CHECK(wo >= 0, "open the input write-only");
    errno = 0;
    CHECK(copy_file_range(wo, NULL, out, NULL, 1, 0) == -1 && errno == EBADF,
          "copy from a write-only input: EBADF");
    errno = 0;
    CHECK(sendfile(out, wo, NULL, 1) == -1 && errno == EBADF,
          "sendfile from a write-only input: EBADF");
    printf("errors ok\n");

    /* Regular files only (Linux 5.19 and later): a pipe at either end is EINVAL, a directory
     * EISDIR; sendfile still writes into a pipe. */
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    oi = 0;
    errno = 0;
    CHECK(copy_file_range(in, &oi, p[1], NULL, 4, 0) == -1 && errno == EINVAL,
          "copy into a pipe: EINVAL");
    CHECK(write(p[1], "pq", 2) == 2, "fill the pipe");
    errno = 0;
    CHECK(copy_file_range(p[0], NULL, out, NULL, 2, 0) == -1 && errno == EINVAL,
          "copy from a pipe: EINVAL");
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
    CHECK(dir >= 0, "open /tmp");
    errno = 0;
    CHECK(copy_file_range(dir, NULL, out, NULL, 1, 0) == -1 && errno == EISDIR,
          "copy from a directory: EISDIR");
    oi = 0;
    CHECK(sendfile(p[1], in, &oi, 2) == 2, "sendfile into a pipe");
    char got[4] = {0};
    CHECK(read(p[0], got, 4) == 4 && memcmp(got, "pq01", 4) == 0, "the pipe's bytes");
    printf("pipes ok\n");
    return 0;
}
