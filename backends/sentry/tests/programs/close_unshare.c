/* close_range(CLOSE_RANGE_UNSHARE) first gives the caller its own copy of the descriptor table,
 * as Linux does: what it closes stays open for the threads and CLONE_FILES processes that
 * shared the table, and what they close later stays open for the caller. Pipes are used both
 * ways, so pipe ends the sandbox runs in the task itself are covered too. One line per case. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static int p[2], other;
static pthread_barrier_t step;

static int cr(unsigned lo, unsigned hi, unsigned flags) {
    return syscall(SYS_close_range, lo, hi, flags);
}

static int is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static void *thread(void *arg) {
    (void)arg;
    CHECK(cr(p[0], p[0], CLOSE_RANGE_UNSHARE) == 0, "close_range UNSHARE in a thread");
    CHECK(!is_open(p[0]), "the read end is closed for the thread");
    errno = 0;
    char c;
    CHECK(read(p[0], &c, 1) == -1 && errno == EBADF, "a read in the thread: EBADF");
    pthread_barrier_wait(&step); /* 1: the main thread checks its read end */
    pthread_barrier_wait(&step); /* 2: the main thread closed the write end and `other` */
    CHECK(is_open(other), "what the main thread closed stays open for the thread");
    CHECK(write(p[1], "t", 1) == 1, "the thread writes through its own write end");
    return NULL;
}

static char stack[64 * 1024];

static int child(void *arg) {
    (void)arg;
    if (cr(other, other, CLOSE_RANGE_UNSHARE) != 0 || is_open(other))
        return 1;
    return 0;
}

int main(void) {
    CHECK(pipe(p) == 0, "pipe");
    other = open("/", O_RDONLY | O_DIRECTORY);
    CHECK(other >= 0, "open /");
    /* A first write and read, so that the pipe may be handed to the task. */
    char c;
    CHECK(write(p[1], "a", 1) == 1 && read(p[0], &c, 1) == 1 && c == 'a', "first round");

    CHECK(pthread_barrier_init(&step, NULL, 2) == 0, "barrier");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread, NULL) == 0, "pthread_create");
    pthread_barrier_wait(&step);
    CHECK(is_open(p[0]), "the read end stays open for the main thread");
    CHECK(write(p[1], "b", 1) == 1 && read(p[0], &c, 1) == 1 && c == 'b', "the main thread reads");
    int w = p[1];
    CHECK(close(w) == 0 && close(other) == 0, "the main thread closes the write end and /");
    CHECK(!is_open(w), "closed for the main thread");
    pthread_barrier_wait(&step);
    CHECK(pthread_join(t, NULL) == 0, "join");
    CHECK(read(p[0], &c, 1) == 1 && c == 't', "the thread's write arrives");
    printf("thread ok\n");

    other = open("/", O_RDONLY | O_DIRECTORY);
    CHECK(other >= 0, "open / again");
    pid_t pid = clone(child, stack + sizeof stack, CLONE_FILES | SIGCHLD, NULL);
    CHECK(pid > 0, "clone CLONE_FILES");
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the child closed its own copy");
    CHECK(is_open(other), "open for the parent after the child's close_range UNSHARE");
    printf("clone_files ok\n");

    errno = 0;
    CHECK(cr(5, 4, 0) == -1 && errno == EINVAL, "lo > hi: EINVAL");
    errno = 0;
    CHECK(cr(0, 1, 8) == -1 && errno == EINVAL, "an unknown flag: EINVAL");
    printf("errors ok\n");
    return 0;
}
