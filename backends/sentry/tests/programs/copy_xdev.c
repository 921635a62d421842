/* copy_file_range between two file systems (a file of the root and one of the /dev/shm tmpfs)
 * is EXDEV, as Linux 5.19 and later answer it, and moves no offset. The argument checks
 * (flags, access, O_APPEND) come before it; the count and the offsets after (a count of 0 is
 * EXDEV too). Within one file system it copies, and sendfile copies across. One line per case,
 * "ok" or what went wrong. Its files are argv[1] (default /cxd-root) and argv[2] (default
 * /dev/shm/cxd-shm). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static off_t cur(int fd) { return lseek(fd, 0, SEEK_CUR); }

static int make(const char *p, const char *data) {
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, p);
    CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data), p);
    CHECK(lseek(fd, 0, SEEK_SET) == 0, p);
    return fd;
}

static void contents(int fd, const char *want) {
    char got[64] = {0};
    size_t n = strlen(want);
    CHECK(pread(fd, got, sizeof got, 0) == (ssize_t)n, "the output's length");
    CHECK(memcmp(got, want, n) == 0, "the output's bytes");
}

int main(int argc, char **argv) {
    const char *rp = argc > 2 ? argv[1] : "/cxd-root";
    const char *sp = argc > 2 ? argv[2] : "/dev/shm/cxd-shm";
    char sp2[256];
    snprintf(sp2, sizeof sp2, "%s-2", sp);
    int r = make(rp, "0123456789");
    int s = make(sp, "abcdefghij");
    struct stat rs, ss;
    CHECK(fstat(r, &rs) == 0 && fstat(s, &ss) == 0 && rs.st_dev != ss.st_dev,
          "the two files are on two file systems");

    errno = 0;
    CHECK(copy_file_range(r, NULL, s, NULL, 4, 0) == -1 && errno == EXDEV,
          "root to tmpfs: EXDEV");
    errno = 0;
    CHECK(copy_file_range(s, NULL, r, NULL, 4, 0) == -1 && errno == EXDEV,
          "tmpfs to root: EXDEV");
    loff_t oi = 1, oo = 2;
    errno = 0;
    CHECK(copy_file_range(r, &oi, s, &oo, 4, 0) == -1 && errno == EXDEV,
          "with offset pointers: EXDEV");
    CHECK(oi == 1 && oo == 2 && cur(r) == 0 && cur(s) == 0, "no offset moved");
    contents(s, "abcdefghij");
    contents(r, "0123456789");
    printf("exdev ok\n");

    /* The argument checks come first; then EXDEV, before the count and offsets are looked at. */
    errno = 0;
    CHECK(copy_file_range(r, NULL, s, NULL, 4, 1) == -1 && errno == EINVAL, "flags: EINVAL");
    int wo = open(rp, O_WRONLY);
    CHECK(wo >= 0, "open the root file write-only");
    errno = 0;
    CHECK(copy_file_range(wo, NULL, s, NULL, 4, 0) == -1 && errno == EBADF,
          "an input not open for reading: EBADF");
    int ro = open(sp, O_RDONLY);
    CHECK(ro >= 0, "open the tmpfs file read-only");
    errno = 0;
    CHECK(copy_file_range(r, NULL, ro, NULL, 4, 0) == -1 && errno == EBADF,
          "an output not open for writing: EBADF");
    int app = open(sp, O_WRONLY | O_APPEND);
    CHECK(app >= 0, "open the tmpfs file O_APPEND");
    errno = 0;
    CHECK(copy_file_range(r, NULL, app, NULL, 4, 0) == -1 && errno == EBADF,
          "an O_APPEND output: EBADF");
    oo = 0;
    errno = 0;
    CHECK(copy_file_range(r, NULL, app, &oo, 4, 0) == -1 && errno == EBADF,
          "an output pointer into O_APPEND: EBADF");
    errno = 0;
    CHECK(copy_file_range(r, NULL, s, NULL, 0, 0) == -1 && errno == EXDEV, "a count of 0: EXDEV");
    oi = 10;
    errno = 0;
    CHECK(copy_file_range(r, &oi, s, NULL, 4, 0) == -1 && errno == EXDEV && oi == 10,
          "at the input's end: EXDEV");
    oi = -1;
    errno = 0;
    CHECK(copy_file_range(r, &oi, s, NULL, 4, 0) == -1 && errno == EXDEV,
          "a negative offset: EXDEV");
    printf("checks ok\n");

    int s2 = make(sp2, "xxxxxxxxxx");
    CHECK(copy_file_range(s, NULL, s2, NULL, 3, 0) == 3, "tmpfs to tmpfs");
    CHECK(cur(s) == 3 && cur(s2) == 3, "both offsets moved");
    contents(s2, "abcxxxxxxx");
    int r2 = open(rp, O_RDWR);
    CHECK(r2 >= 0, "open the root file again");
    oi = 0;
    oo = 5;
    CHECK(copy_file_range(r, &oi, r2, &oo, 2, 0) == 2 && oi == 2 && oo == 7,
          "root to root");
    contents(r, "0123401789");
    printf("same fs ok\n");

    CHECK(lseek(r, 0, SEEK_SET) == 0 && lseek(s, 0, SEEK_SET) == 0, "rewind");
    CHECK(sendfile(s, r, NULL, 4) == 4 && cur(r) == 4 && cur(s) == 4, "sendfile across");
    contents(s, "0123efghij");
    printf("sendfile ok\n");
    unlink(rp);
    unlink(sp);
    unlink(sp2);
    return 0;
}
