/* Attack: signal processes outside the sandbox. argv[1] is a host canary's pid.
 * kill(canary, SIGKILL), kill(-canary, SIGKILL) (its process group), then kill(-1, SIGKILL)
 * (every process we may signal) with a sibling of ours alive, to show that kill(-1) did act,
 * inside. Then show we are still alive. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
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
    pid_t sib = fork();
    if (sib == 0) {
        for (int i = 0; i < 600; i++) sleep(1);
        _exit(0);
    }
    say("kill -1", kill(-1, SIGKILL));
    int st = 0;
    waitpid(sib, &st, 0);
    if (WIFSIGNALED(st)) printf("sibling: killed by signal %d\n", WTERMSIG(st));
    else printf("sibling: exited %d\n", WEXITSTATUS(st));
    printf("still here\n");
    return 0;
}
