/* The workload's init and `hako exec`'d processes trapping at once, each process behind its own
 * seccomp listener (tests/platform.rs). Every getpid answer is checked against the caller's own
 * pid. The processes meet on two FIFOs in /tmp: a read parked in one is woken by the other's
 * write.
 *
 *   ping ROUNDS   (init) 2 phases of ROUNDS rounds: wait in a read for the exec'd `pong`'s byte,
 *                 trap a burst, answer; in the second phase a thread of each process traps
 *                 without pause meanwhile. Prints "ping ok".
 *   pong ROUNDS   (exec'd) the other side: trap a burst, write, wait in a read for the answer.
 *                 Silent; exit status 0 when every answer was right.
 *   spin          (init) a thread traps without pause until the byte 'a' comes; then wait,
 *                 idle, for 'b'; trap a burst; print "spin ok".
 *   short         (exec'd) trap a burst and exit.
 *   send C        (exec'd) write the byte C to init.
 * Init ends only once the exec'd process that wrote to it last is gone.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define TO_INIT "/tmp/to_init"
#define TO_EXEC "/tmp/to_exec"
#define BURST 200

static pid_t me;
static volatile int stop;

static void burst(void) {
    for (int i = 0; i < BURST; i++)
        CHECK(syscall(SYS_getpid) == me, "getpid answered another process's pid");
}

static void *spin(void *arg) {
    (void)arg;
    while (!stop)
        CHECK(syscall(SYS_getpid) == me, "getpid answered another process's pid (spinner)");
    return NULL;
}

static void start_spinner(pthread_t *t) {
    stop = 0;
    CHECK(pthread_create(t, NULL, spin, NULL) == 0, "pthread_create");
}

static void stop_spinner(pthread_t t) {
    stop = 1;
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
}

static void make_fifo(const char *path) {
    CHECK(mkfifo(path, 0600) == 0 || errno == EEXIST, "mkfifo");
}

/* Open a FIFO init makes, waiting for init to have made and opened it (ENXIO: a write-only
 * open with no reader yet, which the sentry answers at once where Linux would wait). */
static int open_made(const char *path, int flags) {
    for (int i = 0; i < 3000; i++) {
        int fd = open(path, flags);
        if (fd >= 0)
            return fd;
        CHECK(errno == ENOENT || errno == ENXIO, "open a FIFO");
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(0, "init never made its FIFO");
    return -1;
}

static void put(int fd, char c) {
    CHECK(write(fd, &c, 1) == 1, "write a byte");
}

static char get(int fd) {
    char c;
    CHECK(read(fd, &c, 1) == 1, "read a byte");
    return c;
}

/* An exec'd process's last message: 'Z' and its pid. Init waits for that process to be gone
 * before it ends: the sandbox's end kills what is left. */
static void bye(int fd) {
    char m[5] = {'Z'};
    memcpy(m + 1, &me, 4);
    CHECK(write(fd, m, 5) == 5, "write the last message");
}

static void wait_gone(int fd) {
    char m[5];
    pid_t p;
    CHECK(read(fd, m, 5) == 5 && m[0] == 'Z', "read the last message");
    memcpy(&p, m + 1, 4);
    while (kill(p, 0) == 0) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(errno == ESRCH, "kill(exec'd process, 0)");
}

static int ping(int rounds) {
    CHECK(me == 1, "init is not pid 1");
    make_fifo(TO_INIT);
    make_fifo(TO_EXEC);
    /* O_RDWR: neither open waits for the other side. */
    int in = open(TO_INIT, O_RDWR), out = open(TO_EXEC, O_RDWR);
    CHECK(in >= 0 && out >= 0, "open the FIFOs");
    for (int phase = 0; phase < 2; phase++) {
        pthread_t t;
        if (phase == 1)
            start_spinner(&t);
        for (int r = 0; r < rounds; r++) {
            CHECK(get(in) == (char)('A' + r % 26), "the exec'd process's byte");
            burst();
            put(out, (char)('a' + r % 26));
        }
        if (phase == 1)
            stop_spinner(t);
    }
    wait_gone(in);
    printf("ping ok\n");
    return 0;
}

static int pong(int rounds) {
    CHECK(me != 1, "an exec'd process is pid 1");
    int out = open_made(TO_INIT, O_WRONLY), in = open_made(TO_EXEC, O_RDONLY);
    for (int phase = 0; phase < 2; phase++) {
        pthread_t t;
        if (phase == 1)
            start_spinner(&t);
        for (int r = 0; r < rounds; r++) {
            burst();
            put(out, (char)('A' + r % 26));
            CHECK(get(in) == (char)('a' + r % 26), "init's answer");
        }
        if (phase == 1)
            stop_spinner(t);
    }
    bye(out);
    return 0;
}

static int spin_init(void) {
    CHECK(me == 1, "init is not pid 1");
    make_fifo(TO_INIT);
    int in = open(TO_INIT, O_RDWR);
    CHECK(in >= 0, "open the FIFO");
    pthread_t t;
    start_spinner(&t);
    CHECK(get(in) == 'a', "the first byte");
    wait_gone(in);
    stop_spinner(t);
    CHECK(get(in) == 'b', "the second byte");
    wait_gone(in);
    burst();
    printf("spin ok\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    me = syscall(SYS_getpid);
    CHECK(argc >= 2, "usage: two_listeners ping|pong ROUNDS | spin | short | send C");
    if (!strcmp(argv[1], "ping") && argc == 3)
        return ping(atoi(argv[2]));
    if (!strcmp(argv[1], "pong") && argc == 3)
        return pong(atoi(argv[2]));
    if (!strcmp(argv[1], "spin"))
        return spin_init();
    if (!strcmp(argv[1], "short")) {
        CHECK(me != 1, "an exec'd process is pid 1");
        burst();
        return 0;
    }
    if (!strcmp(argv[1], "send") && argc == 3) {
        int out = open_made(TO_INIT, O_WRONLY);
        put(out, argv[2][0]);
        bye(out);
        return 0;
    }
    CHECK(0, "unknown mode");
    return 1;
}
