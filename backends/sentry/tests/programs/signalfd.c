/* signalfd as Linux has it: reads of the mask's pending signals (non-blocking: EAGAIN; blocking:
 * until a child signals), the mask (SIGKILL left out, an update through the same fd), the
 * siginfo of kill and of a child's exit, poll and epoll readiness, SFD_CLOEXEC, a blocking read
 * a handled signal interrupts (EINTR), and EINVAL for a
 * short buffer, unknown flags and a descriptor that is no signalfd. Prints "ok signalfd".
 * (The sender's pid of a kill(2) is not checked: the sentry sends those signals, from outside
 * the sandbox's pid namespace, so the receiver sees 0; docs/backends/sentry.md.) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

static int pending(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0);
}

int main(void) {
    sigset_t block, m;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGCHLD);
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "sigprocmask");

    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGKILL); /* ignored, as Linux does */
    int sfd = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    CHECK(sfd >= 0, "signalfd");
    CHECK(fcntl(sfd, F_GETFD) == FD_CLOEXEC, "SFD_CLOEXEC");
    CHECK(fcntl(sfd, F_GETFL) & O_NONBLOCK, "SFD_NONBLOCK");
    struct signalfd_siginfo si;
    CHECK(read(sfd, &si, sizeof si) < 0 && errno == EAGAIN, "empty read: EAGAIN");
    CHECK(pending(sfd) == 0, "nothing pending: not readable");

    char small[8];
    CHECK(kill(getpid(), SIGUSR1) == 0, "kill self");
    CHECK(pending(sfd) == 1, "SIGUSR1 pending: readable");
    CHECK(read(sfd, small, sizeof small) < 0 && errno == EINVAL, "short buffer: EINVAL");
    CHECK(read(sfd, &si, sizeof si) == sizeof si, "read SIGUSR1");
    CHECK(si.ssi_signo == SIGUSR1 && si.ssi_code == SI_USER, "SIGUSR1 siginfo");
    CHECK(read(sfd, &si, sizeof si) < 0 && errno == EAGAIN, "dequeued");

    /* SIGUSR2 is not in the mask until the mask is updated through the same fd. */
    CHECK(kill(getpid(), SIGUSR2) == 0, "kill self USR2");
    CHECK(pending(sfd) == 0, "USR2 outside the mask");
    sigaddset(&m, SIGUSR2);
    CHECK(signalfd(sfd, &m, 0) == sfd, "update the mask");
    CHECK(pending(sfd) == 1, "USR2 now in the mask");
    CHECK(read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR2, "read USR2");

    /* epoll: level-triggered readiness, then a wait a child's signal ends. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7}, out;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) == 0, "epoll_ctl");
    CHECK(epoll_wait(ep, &out, 1, 0) == 0, "epoll: nothing yet");
    CHECK(kill(getpid(), SIGUSR1) == 0, "kill self again");
    CHECK(epoll_wait(ep, &out, 1, 0) == 1 && out.data.u32 == 7, "epoll: readable");
    CHECK(epoll_wait(ep, &out, 1, 0) == 1, "epoll: still readable (level-triggered)");
    CHECK(read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1, "read after epoll");
    pid_t parent = getpid();
    pid_t c = fork();
    if (c == 0) {
        usleep(100 * 1000);
        _exit(kill(parent, SIGUSR2) == 0 ? 0 : 1);
    }
    CHECK(epoll_wait(ep, &out, 1, -1) == 1, "epoll_wait ended by the child's signal");
    CHECK(read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR2, "from the child");
    CHECK(waitpid(c, NULL, 0) == c, "waitpid");

    /* A blocking read, and a child's exit as SIGCHLD (the first child's, pending since, read
     * first). */
    sigemptyset(&m);
    sigaddset(&m, SIGCHLD);
    CHECK(signalfd(sfd, &m, 0) == sfd, "mask SIGCHLD");
    CHECK(read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGCHLD, "first SIGCHLD");
    CHECK(fcntl(sfd, F_SETFL, 0) == 0, "clear O_NONBLOCK");
    c = fork();
    if (c == 0) {
        usleep(100 * 1000);
        _exit(3);
    }
    CHECK(read(sfd, &si, sizeof si) == sizeof si, "blocking read");
    CHECK(si.ssi_signo == SIGCHLD && si.ssi_code == CLD_EXITED, "SIGCHLD siginfo");
    CHECK(si.ssi_pid == (unsigned)c && si.ssi_status == 3, "the child's pid and status");
    CHECK(waitpid(c, NULL, 0) == c, "waitpid 2");

    /* A blocking read still ends for a handled signal outside the mask (no SA_RESTART). */
    struct sigaction sa = {.sa_handler = on_alarm};
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
    alarm(1);
    CHECK(read(sfd, &si, sizeof si) < 0 && errno == EINTR && alarms == 1, "EINTR for SIGALRM");

    CHECK(signalfd(-1, &m, 0x4000) < 0 && errno == EINVAL, "unknown flag: EINVAL");
    CHECK(signalfd(ep, &m, 0) < 0 && errno == EINVAL, "not a signalfd: EINVAL");
    printf("ok signalfd\n");
    return 0;
}
