/* inotify (issue 12): a directory watch sees a file made, written and removed in it, a file
 * watch sees its writes, epoll sees the instance readable, a non-blocking read of an empty
 * one is EAGAIN, and inotify_rm_watch ends a watch with IN_IGNORED. One "ok" line. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

/* Read events until one with this wd, mask bit (and name, if given) arrives. */
static void expect(int in, int wd, unsigned mask, const char *name, const char *what) {
    for (int tries = 0; tries < 64; tries++) {
        ssize_t n = read(in, buf, sizeof buf);
        CHECK(n > 0, what);
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->wd == wd && (e->mask & mask) && (!name || (e->len && !strcmp(e->name, name))))
                return;
            p += sizeof *e + e->len;
        }
    }
    CHECK(0, what);
}

int main(void) {
    CHECK(mkdir("/tmp/watched", 0755) == 0, "mkdir");
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    CHECK(in >= 0, "inotify_init1");
    CHECK(read(in, buf, sizeof buf) < 0 && errno == EAGAIN, "empty: EAGAIN");
    int wd = inotify_add_watch(in, "/tmp/watched", IN_CREATE | IN_MODIFY | IN_DELETE);
    CHECK(wd >= 0, "inotify_add_watch on a directory");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, in, &ev) == 0, "epoll_ctl");
    int f = open("/tmp/watched/a", O_WRONLY | O_CREAT, 0644);
    CHECK(f >= 0, "create");
    CHECK(epoll_wait(ep, &ev, 1, -1) == 1, "epoll sees the event");
    expect(in, wd, IN_CREATE, "a", "IN_CREATE a");
    int fw = inotify_add_watch(in, "/tmp/watched/a", IN_MODIFY);
    CHECK(fw >= 0 && fw != wd, "inotify_add_watch on a file");
    CHECK(write(f, "x", 1) == 1, "write");
    expect(in, fw, IN_MODIFY, NULL, "IN_MODIFY on the file");
    CHECK(unlink("/tmp/watched/a") == 0, "unlink");
    expect(in, wd, IN_DELETE, "a", "IN_DELETE a");
    CHECK(inotify_rm_watch(in, wd) == 0, "inotify_rm_watch");
    expect(in, wd, IN_IGNORED, NULL, "IN_IGNORED");
    CHECK(inotify_add_watch(in, "/tmp/nowhere", IN_CREATE) < 0 && errno == ENOENT, "ENOENT");
    CHECK(inotify_rm_watch(in, 12345) < 0 && errno == EINVAL, "rm of no watch: EINVAL");
    printf("ok inotify\n");
    return 0;
}
