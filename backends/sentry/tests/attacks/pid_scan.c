/* Attacker's scan for host pids: ask every pid-taking call about pids 1..32768 and count the
 * pids it answers differently for than for most pids (on a host: success or EPERM where most
 * pids give ESRCH; a call that gives every pid the same answer tells nothing). A sandbox that
 * hides the host answers only for its own pids. Prints "self=<pid> child=<pid> tids=<a> <b>",
 * then "<call> <count> <pids...>" per call. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXPID 32768
static int code[MAXPID + 1];
static int hits[MAXPID + 1];

static void report(const char *name) {
    /* The most common answer is "no such pid"; every other answer reveals a pid. */
    int best = 0, bestn = 0;
    for (int p = 1; p <= MAXPID; p++) {
        int n = 0;
        for (int q = 1; q <= MAXPID && n <= MAXPID / 2; q++)
            n += code[q] == code[p];
        if (n > bestn) {
            best = code[p];
            bestn = n;
        }
        if (bestn > MAXPID / 2)
            break;
    }
    for (int p = 1; p <= MAXPID; p++)
        hits[p] = code[p] != best;
    int n = 0;
    for (int p = 1; p <= MAXPID; p++)
        n += hits[p];
    printf("%s %d", name, n);
    int shown = 0;
    for (int p = 1; p <= MAXPID && shown < 64; p++)
        if (hits[p]) {
            printf(" %d", p);
            shown++;
        }
    printf("\n");
    fflush(stdout);
}

int main(void) {
    /* The ids this sandbox's tasks know themselves by: their pids, and the tids the kernel
     * hands out through set_tid_address (what glibc keeps as a thread's tid). */
    int p[2];
    if (pipe(p) < 0)
        return 2;
    pid_t child = fork();
    if (child == 0) {
        int tid = syscall(SYS_set_tid_address, NULL);
        write(p[1], &tid, sizeof tid);
        for (;;)
            pause();
    }
    int child_tid = 0;
    read(p[0], &child_tid, sizeof child_tid);
    printf("self=%d child=%d tids=%ld %d\n", getpid(), child, syscall(SYS_set_tid_address, NULL),
           child_tid);
    static const char *names[] = {"getsid", "getpgid", "sched_getparam", "prlimit", "kill0",
                                  "futex_trylock_pi", "futex_lock_pi", "clock_cpu", "sigqueue0"};
    for (int call = 0; call < 9; call++) {
        for (int p = 1; p <= MAXPID; p++) {
            long rc;
            struct sched_param sp;
            struct rlimit rl;
            uint32_t word = (uint32_t)p;
            struct timespec ts = {0, 0}; /* absolute time 0: already past, never blocks */
            errno = 0;
            switch (call) {
            case 0: rc = getsid(p); break;
            case 1: rc = getpgid(p); break;
            case 2: rc = sched_getparam(p, &sp); break;
            case 3: rc = prlimit(p, RLIMIT_NOFILE, NULL, &rl); break;
            case 4: rc = kill(p, 0); break;
            case 5: rc = syscall(SYS_futex, &word, FUTEX_TRYLOCK_PI, 0, NULL, NULL, 0); break;
            case 6: rc = syscall(SYS_futex, &word, FUTEX_LOCK_PI, 0, &ts, NULL, 0); break;
            /* A CPU-time clock id names a pid: ((~pid) << 3) | CPUCLOCK_SCHED. */
            case 7: rc = clock_gettime((clockid_t)((~(unsigned)p) << 3 | 2), &ts); break;
            default: rc = sigqueue(p, 0, (union sigval){0}); break;
            }
            /* The PI calls on a word naming a live owner answer EAGAIN/ETIMEDOUT/EDEADLK. */
            code[p] = rc >= 0 ? 0 : errno;
        }
        report(names[call]);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 0;
}
