/* memfd_create (issue 12): write, truncate, a private mapping, fstat, the /proc/self/fd name,
 * a child reading the inherited fd, and seals. One "ok" line; a failure ends it with 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

int main(void) {
    int m = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    CHECK(m >= 0, "memfd_create");
    CHECK(fcntl(m, F_GETFD) & FD_CLOEXEC, "MFD_CLOEXEC");
    CHECK(write(m, "hello", 5) == 5, "write");
    CHECK(ftruncate(m, 8192) == 0, "ftruncate");
    struct stat st;
    CHECK(fstat(m, &st) == 0 && st.st_size == 8192 && S_ISREG(st.st_mode), "fstat");
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, m, 0);
    CHECK(p != MAP_FAILED && memcmp(p, "hello", 5) == 0 && p[8191] == 0, "private mapping");
    char link[64] = {0}, path[32];
    snprintf(path, sizeof path, "/proc/self/fd/%d", m);
    CHECK(readlink(path, link, sizeof link - 1) > 0 && strncmp(link, "/memfd:test", 11) == 0,
          "the fd's name");
    if (fork() == 0) {
        char b[5];
        _exit(pread(m, b, 5, 0) != 5 || memcmp(b, "hello", 5) != 0);
    }
    int ws;
    CHECK(wait(&ws) > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "a child reads it");
    CHECK(munmap(p, 8192) == 0, "munmap");
    CHECK(fcntl(m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK) == 0, "F_ADD_SEALS");
    CHECK(fcntl(m, F_GET_SEALS) == (F_SEAL_WRITE | F_SEAL_SHRINK), "F_GET_SEALS");
    CHECK(write(m, "x", 1) < 0 && errno == EPERM, "a sealed write: EPERM");
    CHECK(ftruncate(m, 10) < 0 && errno == EPERM, "a sealed shrink: EPERM");
    int n = memfd_create("plain", 0);
    CHECK(n >= 0 && fcntl(n, F_ADD_SEALS, F_SEAL_WRITE) < 0 && errno == EPERM,
          "no sealing without MFD_ALLOW_SEALING");
    CHECK(memfd_create("bad", 0x100000) < 0 && errno == EINVAL, "unknown flags: EINVAL");
    printf("ok memfd\n");
    return 0;
}
