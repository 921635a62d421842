/* Attack: signal processes outside the sandbox. argv[1] is a host canary's pid, argv[2] the
 * signal for kill(-1): "KILL", or "CONT" for a first pass whose escape would be harmless to the
 * host (the canary records a SIGCONT; the test sends SIGKILL only once CONT held).
 * kill(canary, SIGKILL), kill(-canary, SIGKILL) (its process group), then kill(-1, sig) with a
 * sibling of ours alive, to show that kill(-1) did act, inside. Then show we are still alive. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t me;

static void on_cont(int sig) {
    (void)sig;
    if (getpid() != me) _exit(42); /* the sibling: show that the signal arrived */
}

static void say(const char *what, int rc) {
    if (rc == 0) printf("%s: ok\n", what);
    else printf("%s: errno %d\n", what, errno);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    pid_t canary = atoi(argv[1]);
    int sig = strcmp(argv[2], "CONT") == 0 ? SIGCONT : SIGKILL;
    say("kill canary", kill(canary, SIGKILL));
    say("kill -canary", kill(-canary, SIGKILL));
    me = getpid();
    signal(SIGCONT, on_cont); /* inherited by the sibling, so no race with its start */
    pid_t sib = fork();
    if (sib == 0) {
        for (int i = 0; i < 600; i++) sleep(1);
        _exit(0);
    }
    say("kill -1", kill(-1, sig));
    int st = 0;
    waitpid(sib, &st, 0);
    if (WIFSIGNALED(st)) printf("sibling: killed by signal %d\n", WTERMSIG(st));
    else printf("sibling: exited %d\n", WEXITSTATUS(st));
    printf("still here\n");
    return 0;
}
