/* POSIX message queues (issue 12) across fork: a child blocked in mq_receive until the parent
 * sends, an answer on a second queue, priorities, mq_getattr/mq_setattr (O_NONBLOCK), a timed
 * receive that times out, EMSGSIZE, EEXIST, poll readiness, the queue in /dev/mqueue, a
 * stranger (uid 2000) refused, mq_unlink. Run as root with CAP_SETUID, CAP_SETGID. Prints
 * "ok mqueue"; a failure ends it with 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int child(void) {
    mqd_t in = mq_open("/hako-ping", O_RDONLY);
    mqd_t out = mq_open("/hako-pong", O_WRONLY);
    if (in == (mqd_t)-1 || out == (mqd_t)-1)
        return 10;
    char buf[64];
    unsigned prio;
    /* Blocks until the parent sends. */
    if (mq_receive(in, buf, sizeof buf, &prio) != 5 || strcmp(buf, "ping") != 0 || prio != 3)
        return 11;
    return mq_send(out, "pong", 5, 7) == 0 ? 0 : 12;
}

static int stranger(void) {
    if (setgid(2000) != 0 || setuid(2000) != 0)
        return 20;
    if (mq_open("/hako-ping", O_RDONLY) != (mqd_t)-1 || errno != EACCES)
        return 21;
    if (mq_unlink("/hako-ping") != -1 || errno != EACCES)
        return 22;
    return 0;
}

static int run(int (*f)(void)) {
    pid_t c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0)
        _exit(f());
    return c;
}

static int status(pid_t c) {
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st), "child");
    return WEXITSTATUS(st);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    mq_unlink("/hako-ping");
    mq_unlink("/hako-pong");
    struct mq_attr a = {.mq_maxmsg = 4, .mq_msgsize = 64};
    mqd_t ping = mq_open("/hako-ping", O_CREAT | O_EXCL | O_WRONLY, 0600, &a);
    mqd_t pong = mq_open("/hako-pong", O_CREAT | O_RDWR, 0600, &a);
    CHECK(ping != (mqd_t)-1 && pong != (mqd_t)-1, "mq_open O_CREAT");
    CHECK(mq_open("/hako-ping", O_CREAT | O_EXCL | O_RDWR, 0600, &a) == (mqd_t)-1 &&
              errno == EEXIST,
          "EEXIST");
    CHECK(mq_open("/hako-none", O_RDONLY) == (mqd_t)-1 && errno == ENOENT, "ENOENT");

    pid_t c = run(child);
    usleep(100 * 1000); /* let the child block (either order works) */
    CHECK(mq_send(ping, "ping", 5, 3) == 0, "mq_send");
    char buf[64];
    unsigned prio;
    CHECK(mq_receive(pong, buf, sizeof buf, &prio) == 5 && strcmp(buf, "pong") == 0 && prio == 7,
          "mq_receive");
    CHECK(status(c) == 0, "the child got ping");

    /* Priorities: the highest first. */
    CHECK(mq_send(pong, "low", 4, 1) == 0 && mq_send(pong, "high", 5, 9) == 0, "send two");
    struct mq_attr g;
    CHECK(mq_getattr(pong, &g) == 0 && g.mq_curmsgs == 2 && g.mq_maxmsg == 4 &&
              g.mq_msgsize == 64 && g.mq_flags == 0,
          "mq_getattr");
    struct pollfd p = {.fd = pong, .events = POLLIN};
    CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN), "poll POLLIN");
    CHECK(mq_receive(pong, buf, sizeof buf, &prio) == 5 && prio == 9 && !strcmp(buf, "high"),
          "priority order");
    CHECK(mq_receive(pong, buf, 10, &prio) == -1 && errno == EMSGSIZE, "EMSGSIZE");
    CHECK(mq_receive(pong, buf, sizeof buf, NULL) == 4 && !strcmp(buf, "low"), "low");

    /* Empty: a timed receive times out; a non-blocking one says EAGAIN. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    CHECK(mq_timedreceive(pong, buf, sizeof buf, NULL, &ts) == -1 && errno == ETIMEDOUT,
          "ETIMEDOUT");
    struct mq_attr nb = {.mq_flags = O_NONBLOCK}, old;
    CHECK(mq_setattr(pong, &nb, &old) == 0 && old.mq_flags == 0, "mq_setattr");
    CHECK(mq_receive(pong, buf, sizeof buf, NULL) == -1 && errno == EAGAIN, "EAGAIN");
    CHECK(mq_getattr(pong, &g) == 0 && g.mq_flags == O_NONBLOCK, "O_NONBLOCK set");
    for (int i = 0; i < 4; i++)
        CHECK(mq_send(pong, "x", 1, 0) == 0, "fill");
    CHECK(mq_send(pong, "x", 1, 0) == -1 && errno == EAGAIN, "full");

    /* The queues are files of /dev/mqueue. */
    struct stat st;
    CHECK(stat("/dev/mqueue/hako-ping", &st) == 0 && (st.st_mode & 0777) == 0600 &&
              st.st_uid == 0,
          "/dev/mqueue/hako-ping");
    int fd = open("/dev/mqueue/hako-pong", O_RDONLY);
    CHECK(fd >= 0, "open /dev/mqueue/hako-pong");
    int n = read(fd, buf, sizeof buf - 1);
    CHECK(n > 0 && strncmp(buf, "QSIZE:4", 7) == 0, "the queue's status line");
    close(fd);

    CHECK(status(run(stranger)) == 0, "a stranger is refused");
    struct sigevent ev = {.sigev_notify = SIGEV_NONE};
    CHECK(mq_notify(ping, &ev) == 0 && mq_notify(ping, NULL) == 0, "mq_notify SIGEV_NONE");
    CHECK(mq_close(ping) == 0 && mq_close(pong) == 0, "mq_close");
    CHECK(mq_unlink("/hako-ping") == 0 && mq_unlink("/hako-pong") == 0, "mq_unlink");
    CHECK(stat("/dev/mqueue/hako-ping", &st) == -1 && errno == ENOENT, "gone");
    printf("ok mqueue\n");
    return 0;
}
