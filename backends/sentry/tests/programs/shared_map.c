/* Writable shared mappings (issue 12): of a file in DIR (argv[1], /dev/shm: also nosuid and
 * nodev), of a memfd and of /dev/zero, shared between a parent and its child, coherent with
 * read(2) and write(2) of the file, a process-shared semaphore in each. One "ok" line per
 * kind; a failure ends it with 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* A child writes through the mapping and posts a semaphore that lives in it. */
static void share(char *p, const char *what) {
    sem_t *s = (sem_t *)(p + 2048);
    CHECK(sem_init(s, 1, 0) == 0, "sem_init");
    pid_t c = fork();
    if (c == 0) {
        strcpy(p, "from the child");
        sem_post(s);
        _exit(0);
    }
    CHECK(sem_wait(s) == 0 && strcmp(p, "from the child") == 0, what);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child");
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    if (strcmp(dir, "/dev/shm") == 0) {
        struct statvfs v;
        CHECK(statvfs(dir, &v) == 0 && (v.f_flag & ST_NOSUID) && (v.f_flag & ST_NODEV),
              "/dev/shm is nosuid,nodev");
    }
    char path[256];
    snprintf(path, sizeof path, "%s/shared_map.%d", dir, getpid());
    int f = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    CHECK(f >= 0, "open");
    CHECK(ftruncate(f, 4096) == 0, "ftruncate");
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    CHECK(p != MAP_FAILED, "mmap MAP_SHARED of a file");
    share(p, "a file mapping shared with a child");
    char b[16] = {0};
    CHECK(pread(f, b, 14, 0) == 14 && memcmp(b, "from the child", 14) == 0,
          "the mapping's writes reach the file");
    CHECK(pwrite(f, "FROM", 4, 0) == 4 && memcmp(p, "FROM", 4) == 0,
          "the file's writes reach the mapping");
    /* Another process maps the same file by name. */
    if (fork() == 0) {
        int g = open(path, O_RDWR);
        char *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0);
        _exit(q == MAP_FAILED || memcmp(q, "FROM", 4) != 0 || (memcpy(q, "again", 5), 0));
    }
    int st;
    CHECK(wait(&st) > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && memcmp(p, "again", 5) == 0,
          "a second process maps it by name");
    CHECK(unlink(path) == 0, "unlink");
    int ro = open("/etc/passwd", O_RDONLY);
    CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED &&
              errno == EACCES,
          "a read-only fd: EACCES");
    printf("ok file\n");

    int m = memfd_create("shared", MFD_CLOEXEC);
    CHECK(m >= 0 && ftruncate(m, 4096) == 0, "memfd");
    p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    CHECK(p != MAP_FAILED, "mmap MAP_SHARED of a memfd");
    share(p, "a memfd mapping shared with a child");
    printf("ok memfd\n");

    int z = open("/dev/zero", O_RDWR);
    p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, z, 0);
    CHECK(p != MAP_FAILED && p[0] == 0, "mmap MAP_SHARED of /dev/zero");
    share(p, "a /dev/zero mapping shared with a child");
    printf("ok /dev/zero\n");
    return 0;
}
