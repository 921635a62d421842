/* Attack: signal processes outside the sandbox. argv[1] is a host canary's pid.
 * kill(-1, SIGKILL) (every process we may signal), kill(canary, SIGKILL), and
 * kill(-canary, SIGKILL) (its process group). Then show we are still alive. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void say(const char *what, int rc) {
    if (rc == 0) printf("%s: ok\n", what);
    else printf("%s: errno %d\n", what, errno);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t canary = atoi(argv[1]);
    say("kill canary", kill(canary, SIGKILL));
    say("kill -canary", kill(-canary, SIGKILL));
    say("kill -1", kill(-1, SIGKILL));
    printf("still here\n");
    return 0;
}
