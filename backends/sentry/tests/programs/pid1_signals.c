/* The sandbox's init (pid 1) and signals sent from inside and outside the sandbox (issue 12).
 * `pid1_signals none|handler [wait]`: with `handler`, pid 1 handles SIGTERM. A child sends pid 1
 * SIGTERM, SIGKILL and SIGSTOP through kill(2), tkill(2) and tgkill(2); a second child sends
 * SIGKILL to its process group, which holds pid 1. Linux delivers to a pid namespace's init
 * only the signals it handles: the init survives them all and says whether its handler ran. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void on_term(int s) { (void)s; handled++; }
static void exit_term(int s) { (void)s; write(1, "term\n", 5); _exit(7); }
static void exit_winch(int s) { (void)s; write(1, "winch\n", 6); _exit(3); }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "handler") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGTERM, &sa, NULL);
    }
    setsid(); /* a group of its own (EPERM where it leads one already) */
    if (getpid() != 1) {
        printf("not pid 1: %d\n", getpid());
        return 1;
    }
    pid_t c = fork();
    if (c == 0) {
        int bad = 0;
        bad |= kill(1, SIGTERM) != 0;
        bad |= kill(1, SIGKILL) != 0;
        bad |= kill(1, SIGSTOP) != 0;
        bad |= syscall(SYS_tkill, 1, SIGKILL) != 0;
        bad |= syscall(SYS_tgkill, 1, 1, SIGSTOP) != 0;
        _exit(bad);
    }
    int st;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("a kill(2) failed\n");
        return 1;
    }
    c = fork();
    if (c == 0) {
        kill(0, SIGKILL); /* pid 1's group: this child dies, pid 1 does not */
        _exit(1);
    }
    if (waitpid(c, &st, 0) != c || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
        printf("the group kill did not end its sender\n");
        return 1;
    }
    /* Pending signals are acted on before a syscall returns: one more to be sure. */
    getppid();
    printf("alive handled=%d\n", handled > 0);
    if (argc > 2 && strcmp(argv[2], "wait") == 0) {
        /* Then from outside: the test sends SIGTERM, then SIGWINCH (which pid 1 always
         * handles). Without a SIGTERM handler only the second ends it; with one the test
         * sends SIGTERM alone. */
        if (handled)
            signal(SIGTERM, exit_term);
        signal(SIGWINCH, exit_winch);
        printf("ready\n");
        fflush(stdout);
        for (;;)
            pause();
    }
    return 0;
}
