/* eventfd in each mode, edge-triggered and one-shot epoll, epoll_pwait2, nested epoll and
 * timerfd (issue 12). Prints one "ok" line per check; the first failure ends it with 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int wait0(int ep) {
    struct epoll_event ev[8];
    return epoll_wait(ep, ev, 8, 0);
}

static void add(int ep, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u64 = 1000 + fd};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl add");
}

static void put(int fd) { CHECK(write(fd, "x", 1) == 1, "write"); }

int main(void) {
    uint64_t v;
    /* eventfd: a counter, a semaphore, non-blocking, and a blocking read a child wakes. */
    int e = eventfd(0, EFD_NONBLOCK);
    CHECK(e >= 0, "eventfd");
    CHECK(read(e, &v, 8) < 0 && errno == EAGAIN, "eventfd empty: EAGAIN");
    v = 3;
    CHECK(write(e, &v, 8) == 8, "eventfd write");
    CHECK(read(e, &v, 8) == 8 && v == 3, "eventfd counter read");
    close(e);
    e = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK(e >= 0 && (fcntl(e, F_GETFD) & FD_CLOEXEC), "eventfd semaphore");
    CHECK(read(e, &v, 8) == 8 && v == 1, "semaphore read 1");
    CHECK(read(e, &v, 8) == 8 && v == 1, "semaphore read 2");
    CHECK(read(e, &v, 8) < 0 && errno == EAGAIN, "semaphore empty");
    close(e);
    e = eventfd(0, 0);
    if (fork() == 0) {
        v = 5;
        _exit(write(e, &v, 8) != 8);
    }
    CHECK(read(e, &v, 8) == 8 && v == 5, "eventfd blocking read");
    wait(NULL);
    close(e);
    printf("ok eventfd\n");

    /* Edge-triggered: one report per edge. Level-triggered beside it: a report per wait. */
    int p[2], q[2];
    CHECK(pipe(p) == 0 && pipe(q) == 0, "pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1");
    add(ep, p[0], EPOLLIN | EPOLLET);
    CHECK(wait0(ep) == 0, "ET: nothing yet");
    put(p[1]);
    struct epoll_event ev[4];
    CHECK(epoll_wait(ep, ev, 4, -1) == 1 && ev[0].data.u64 == 1000 + (uint64_t)p[0] &&
              (ev[0].events & EPOLLIN),
          "ET: first edge");
    CHECK(wait0(ep) == 0, "ET: no second report without a new edge");
    put(p[1]);
    CHECK(wait0(ep) == 1, "ET: a new edge");
    add(ep, q[0], EPOLLIN);
    put(q[1]);
    CHECK(wait0(ep) == 1 && wait0(ep) == 1, "LT: reported at each wait");
    close(ep);
    printf("ok epoll edge-triggered\n");

    /* One-shot: one report, then none until EPOLL_CTL_MOD re-arms it. */
    ep = epoll_create1(0);
    add(ep, p[0], EPOLLIN | EPOLLONESHOT);
    CHECK(wait0(ep) == 1, "oneshot: first report");
    CHECK(wait0(ep) == 0, "oneshot: disarmed");
    struct epoll_event re = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 7};
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &re) == 0, "oneshot: re-arm");
    CHECK(epoll_wait(ep, ev, 4, 0) == 1 && ev[0].data.u64 == 7, "oneshot: re-armed report");
    /* The same pipe under two fds: two registrations, both reported. */
    int d = dup(q[0]);
    add(ep, q[0], EPOLLIN);
    add(ep, d, EPOLLIN);
    CHECK(wait0(ep) == 2, "a file under two fds");
    close(ep);
    close(d);
    printf("ok epoll one-shot\n");

    /* epoll_pwait2: a timespec timeout, and NULL (forever) ended by a child's write. */
    int r[2];
    CHECK(pipe(r) == 0, "pipe");
    ep = epoll_create1(0);
    add(ep, r[0], EPOLLIN);
    struct timespec ts = {0, 1000000};
    CHECK(syscall(SYS_epoll_pwait2, ep, ev, 4, &ts, NULL, 8) == 0, "pwait2 times out");
    if (fork() == 0)
        _exit(write(r[1], "y", 1) != 1);
    CHECK(syscall(SYS_epoll_pwait2, ep, ev, 4, NULL, NULL, 8) == 1, "pwait2 woken");
    wait(NULL);
    /* Nested: an epoll instance watching another. */
    int outer = epoll_create1(0), inner = epoll_create1(0);
    add(inner, p[0], EPOLLIN);
    add(outer, inner, EPOLLIN);
    CHECK(epoll_wait(outer, ev, 4, -1) == 1 && ev[0].data.u64 == 1000 + (uint64_t)inner,
          "nested epoll");
    printf("ok epoll_pwait2 and nested epoll\n");

    /* timerfd: settime/gettime, non-blocking and blocking reads, readiness in epoll. */
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK(t >= 0, "timerfd_create");
    CHECK(read(t, &v, 8) < 0 && errno == EAGAIN, "timerfd unarmed: EAGAIN");
    struct itimerspec its = {{0, 0}, {0, 20000000}}, cur, old;
    CHECK(timerfd_settime(t, 0, &its, NULL) == 0, "timerfd_settime");
    CHECK(timerfd_gettime(t, &cur) == 0 && (cur.it_value.tv_sec || cur.it_value.tv_nsec),
          "timerfd_gettime armed");
    ep = epoll_create1(0);
    add(ep, t, EPOLLIN | EPOLLET);
    CHECK(epoll_wait(ep, ev, 4, -1) == 1, "timerfd in epoll");
    CHECK(read(t, &v, 8) == 8 && v == 1, "timerfd one expiry");
    struct itimerspec per = {{0, 1000000}, {0, 1000000}};
    CHECK(timerfd_settime(t, 0, &per, &old) == 0 && old.it_value.tv_sec == 0 &&
              old.it_value.tv_nsec == 0,
          "timerfd old value");
    int b = timerfd_create(CLOCK_REALTIME, 0);
    CHECK(b >= 0 && timerfd_settime(b, 0, &its, NULL) == 0, "blocking timerfd");
    CHECK(read(b, &v, 8) == 8 && v >= 1, "blocking timerfd read");
    CHECK(read(t, &v, 8) == 8 && v >= 1, "periodic timerfd");
    CHECK(timerfd_gettime(p[0], &cur) < 0 && errno == EINVAL, "gettime of a pipe: EINVAL");
    printf("ok timerfd\n");
    return 0;
}
