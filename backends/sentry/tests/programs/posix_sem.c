/* POSIX named semaphores and shared memory (issue 12) across fork: sem_open (a file in
 * /dev/shm mapped shared, futexes in it), sem_wait/sem_post/sem_trywait/sem_getvalue between
 * processes, 4 children incrementing a counter in a shm_open segment under the semaphore,
 * sem_unlink and shm_unlink. Prints "ok sem_open" and "ok shm_open"; a failure ends it with 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define KIDS 4
#define ROUNDS 500

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    sem_unlink("/hako-sem");
    sem_unlink("/hako-go");
    shm_unlink("/hako-shm");
    sem_t *lock = sem_open("/hako-sem", O_CREAT | O_EXCL, 0600, 1);
    sem_t *go = sem_open("/hako-go", O_CREAT | O_EXCL, 0600, 0);
    CHECK(lock != SEM_FAILED && go != SEM_FAILED, "sem_open");
    struct stat st;
    CHECK(stat("/dev/shm/sem.hako-sem", &st) == 0, "the semaphore is a file of /dev/shm");
    int fd = shm_open("/hako-shm", O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 4096) == 0, "shm_open");
    volatile long *n = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(n != MAP_FAILED, "mmap the segment");
    close(fd);

    pid_t kids[KIDS];
    for (int i = 0; i < KIDS; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0, "fork");
        if (kids[i] == 0) {
            /* A child opens the semaphores by name, as an unrelated process would. */
            sem_t *l = sem_open("/hako-sem", 0);
            sem_t *g = sem_open("/hako-go", 0);
            if (l == SEM_FAILED || g == SEM_FAILED || sem_wait(g) != 0)
                _exit(10);
            for (int r = 0; r < ROUNDS; r++) {
                if (sem_wait(l) != 0)
                    _exit(11);
                long v = *n;
                if (r % 100 == 0)
                    sched_yield();
                *n = v + 1;
                sem_post(l);
            }
            _exit(0);
        }
    }
    CHECK(sem_trywait(go) == -1 && errno == EAGAIN, "sem_trywait on 0");
    for (int i = 0; i < KIDS; i++)
        CHECK(sem_post(go) == 0, "sem_post");
    for (int i = 0; i < KIDS; i++) {
        int s;
        CHECK(waitpid(kids[i], &s, 0) == kids[i] && WIFEXITED(s) && WEXITSTATUS(s) == 0,
              "child");
    }
    int v;
    CHECK(sem_getvalue(lock, &v) == 0 && v == 1, "sem_getvalue");
    CHECK(*n == KIDS * ROUNDS, "every increment under the semaphore");
    CHECK(sem_close(lock) == 0 && sem_close(go) == 0, "sem_close");
    CHECK(sem_unlink("/hako-sem") == 0 && sem_unlink("/hako-go") == 0, "sem_unlink");
    CHECK(stat("/dev/shm/sem.hako-sem", &st) == -1 && errno == ENOENT, "unlinked");
    printf("ok sem_open\n");
    CHECK(shm_unlink("/hako-shm") == 0, "shm_unlink");
    CHECK(shm_open("/hako-shm", O_RDWR, 0) == -1 && errno == ENOENT, "shm gone");
    printf("ok shm_open\n");
    return 0;
}
