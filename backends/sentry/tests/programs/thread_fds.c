/* /proc/thread-self/fd and /proc/<pid>/task/<tid>/fd are the descriptors of that thread, as
 * Linux shows them: a thread that took its own table (close_range(CLOSE_RANGE_UNSHARE)) and
 * closed or opened descriptors in it sees them there, while /proc/self/fd and the main thread's
 * task/<tid>/fd keep the process's. A thread of another process is no task of this one. One
 * line per case, "ok" or what went wrong. Its files are /tmp/tfd-a and /tmp/tfd-b. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static int a, z;
static pid_t main_tid;

/* The target of link `fmt` (with one number), or "" when it cannot be read. */
static const char *link_of(const char *fmt, int n, int m) {
    static char buf[PATH_MAX];
    char p[128];
    snprintf(p, sizeof p, fmt, n, m);
    ssize_t len = readlink(p, buf, sizeof buf - 1);
    buf[len < 0 ? 0 : len] = 0;
    return buf;
}

/* Whether directory `path` lists the name `n`. */
static int lists(const char *path, int n) {
    char want[16];
    snprintf(want, sizeof want, "%d", n);
    DIR *d = opendir(path);
    CHECK(d != NULL, path);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        found |= strcmp(e->d_name, want) == 0;
    closedir(d);
    return found;
}

static void *thread(void *arg) {
    (void)arg;
    pid_t me = gettid();
    char task[64];
    snprintf(task, sizeof task, "/proc/self/task/%d/fd", me);
    CHECK(strcmp(link_of("/proc/thread-self/fd/%d", a, 0), "/tmp/tfd-a") == 0,
          "the thread sees the shared table's a");
    CHECK(syscall(SYS_close_range, a, a, CLOSE_RANGE_UNSHARE) == 0, "close_range UNSHARE");
    CHECK(close(z) == 0, "close z in the thread's own table");
    int b = open("/tmp/tfd-b", O_RDONLY);
    CHECK(b == a, "b takes a's number in the thread's table");

    CHECK(strcmp(link_of("/proc/thread-self/fd/%d", b, 0), "/tmp/tfd-b") == 0,
          "/proc/thread-self/fd is the thread's");
    CHECK(strcmp(link_of("/proc/self/task/%d/fd/%d", me, b), "/tmp/tfd-b") == 0,
          "task/<the thread>/fd is the thread's");
    CHECK(strcmp(link_of("/proc/self/fd/%d", a, 0), "/tmp/tfd-a") == 0,
          "/proc/self/fd is the process's");
    CHECK(strcmp(link_of("/proc/self/task/%d/fd/%d", main_tid, a), "/tmp/tfd-a") == 0,
          "task/<the main thread>/fd is the process's");
    CHECK(!lists("/proc/thread-self/fd", z) && !lists(task, z), "z is gone from the thread's");
    CHECK(lists("/proc/self/fd", z), "z is still the process's");
    char zp[64];
    snprintf(zp, sizeof zp, "/proc/thread-self/fd/%d", z);
    errno = 0;
    CHECK(open(zp, O_RDONLY) == -1 && errno == ENOENT, "z cannot be opened through the thread's");
    int again = open("/proc/thread-self/fd/0", O_RDONLY);
    CHECK(again >= 0, "open through the thread's own fd");
    close(again);
    return NULL;
}

int main(void) {
    main_tid = gettid();
    a = open("/tmp/tfd-a", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(a >= 0, "create a");
    int b = open("/tmp/tfd-b", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(b >= 0 && close(b) == 0, "create b");
    /* A high number, which no opendir below takes once it is closed. */
    z = dup2(a, 50);
    CHECK(z == 50, "dup z");
    CHECK(strcmp(link_of("/proc/thread-self/fd/%d", a, 0), "/tmp/tfd-a") == 0,
          "the main thread's /proc/thread-self/fd");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread, NULL) == 0 && pthread_join(t, NULL) == 0, "thread");
    CHECK(strcmp(link_of("/proc/thread-self/fd/%d", a, 0), "/tmp/tfd-a") == 0, "a stays");
    CHECK(fcntl(z, F_GETFD) != -1, "z stays open for the process");
    printf("unshare ok\n");

    /* Another process's thread is no task of this one. */
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        pause();
        _exit(0);
    }
    char p[64];
    snprintf(p, sizeof p, "/proc/self/task/%d/fd", pid);
    struct stat st;
    errno = 0;
    CHECK(stat(p, &st) == -1 && errno == ENOENT, "task/<another process> of self: ENOENT");
    snprintf(p, sizeof p, "/proc/%d/task/%d", pid, main_tid);
    errno = 0;
    CHECK(stat(p, &st) == -1 && errno == ENOENT, "task/<this process> of the child: ENOENT");
    snprintf(p, sizeof p, "/proc/%d/task/%d/fd", pid, pid);
    CHECK(stat(p, &st) == 0, "the child's own task/<pid>/fd");
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, NULL, 0) == pid, "waitpid");
    printf("tasks ok\n");
    unlink("/tmp/tfd-a");
    unlink("/tmp/tfd-b");
    return 0;
}
