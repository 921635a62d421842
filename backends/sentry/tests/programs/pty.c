/* Ptys (issue 12): posix_openpt/grantpt/unlockpt/ptsname and an open of the slave by name,
 * openpty (TIOCGPTPEER), data both ways with the line discipline in between, termios on the
 * slave, /dev/ptmx and /dev/pts/N as character devices, and /dev/tty without a controlling
 * terminal. One "ok" line per check group. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "check.h"

/* Read from fd until `want` has arrived (the master side sees the line discipline's output). */
static void expect(int fd, const char *want, const char *what) {
    char buf[64] = {0};
    size_t got = 0, n = strlen(want);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        CHECK(r > 0, what);
        got += r;
    }
    CHECK(memcmp(buf, want, n) == 0, what);
}

int main(void) {
    struct stat st;
    CHECK(stat("/dev/ptmx", &st) == 0 && S_ISCHR(st.st_mode), "/dev/ptmx is a device");
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(m >= 0, "posix_openpt");
    CHECK(grantpt(m) == 0 && unlockpt(m) == 0, "grantpt, unlockpt");
    char *name = ptsname(m);
    CHECK(name && strncmp(name, "/dev/pts/", 9) == 0, "ptsname");
    CHECK(stat(name, &st) == 0 && S_ISCHR(st.st_mode), "the slave is a device");
    int s = open(name, O_RDWR | O_NOCTTY);
    CHECK(s >= 0 && isatty(s), "open the slave by name");
    CHECK(write(s, "hi\n", 3) == 3, "slave write");
    expect(m, "hi\r\n", "the master reads it (onlcr)");
    CHECK(write(m, "yo\n", 3) == 3, "master write");
    expect(s, "yo\n", "the slave reads a line");
    printf("ok posix_openpt\n");

    int am, as;
    CHECK(openpty(&am, &as, NULL, NULL, NULL) == 0, "openpty");
    struct termios t;
    CHECK(tcgetattr(as, &t) == 0, "tcgetattr");
    cfmakeraw(&t);
    CHECK(tcsetattr(as, TCSANOW, &t) == 0, "tcsetattr raw");
    CHECK(write(as, "a\n", 2) == 2, "raw write");
    expect(am, "a\n", "raw: no \\r added");
    char *tn = ttyname(as);
    CHECK(tn && strncmp(tn, "/dev/pts/", 9) == 0, "ttyname");
    printf("ok openpty\n");
    /* No controlling terminal (the spec asks for none): /dev/tty is ENXIO. */
    CHECK(open("/dev/tty", O_RDWR) < 0 && errno == ENXIO, "/dev/tty without a terminal");
    printf("ok /dev/tty\n");
    return 0;
}
