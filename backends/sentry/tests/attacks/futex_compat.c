/* What refusing PI futexes costs, seen from glibc: a PRIO_INHERIT mutex cannot be made; plain
 * and robust mutexes across threads keep working (robust owner-died detection relies on the
 * host kernel's view of the tid glibc stores in the futex word), and so do pthread_kill and
 * pthread_getcpuclockid, which hand that same tid to tgkill and clock_gettime. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

static pthread_mutex_t plain = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t robust;
static long counter;

static void *adder(void *arg) {
    for (int i = 0; i < 100000; i++) {
        pthread_mutex_lock(&plain);
        counter++;
        pthread_mutex_unlock(&plain);
    }
    return arg;
}

static volatile int got_usr1;
static void on_usr1(int sig) { got_usr1 = sig; }
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static volatile int queued_value, queued_pid;
static void on_usr2(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)ctx;
    queued_value = si->si_value.sival_int;
    queued_pid = si->si_pid;
}

static void *wait_gate(void *arg) {
    pthread_mutex_lock(&gate); /* held by main until it has signalled this thread */
    pthread_mutex_unlock(&gate);
    return arg;
}

static void *die_holding(void *arg) {
    pthread_mutex_lock(&robust);
    return arg; /* exits with the robust mutex held */
}

static const char *name(int e) {
    return e == 0 ? "ok" : e == ENOTSUP ? "ENOTSUP" : e == EOWNERDEAD ? "EOWNERDEAD" : strerror(e);
}

int main(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_t pi;
    printf("pi_mutex_init=%s\n", name(pthread_mutex_init(&pi, &a)));

    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, adder, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("plain_counter=%ld\n", counter);

    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &a);
    pthread_create(&t[0], NULL, die_holding, NULL);
    pthread_join(t[0], NULL);
    printf("robust_after_owner_died=%s\n", name(pthread_mutex_lock(&robust)));

    /* pthread_kill and CPU clocks of another thread use the tid glibc keeps for it. */
    signal(SIGUSR1, on_usr1);
    pthread_mutex_lock(&gate);
    pthread_create(&t[0], NULL, wait_gate, NULL);
    printf("pthread_kill_other=%s\n", name(pthread_kill(t[0], SIGUSR1)));
    clockid_t cid;
    struct timespec ts;
    int rc = pthread_getcpuclockid(t[0], &cid);
    printf("thread_cpu_clock=%s\n", name(rc ? rc : clock_gettime(cid, &ts) ? errno : 0));
    pthread_mutex_unlock(&gate);
    pthread_join(t[0], NULL);
    printf("usr1_delivered=%d\n", got_usr1 == SIGUSR1);

    /* sigqueue to itself: the value and the sender's (virtual) pid arrive. */
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR2, &sa, NULL);
    printf("sigqueue_self=%s\n", name(sigqueue(getpid(), SIGUSR2, (union sigval){.sival_int = 42}) ? errno : 0));
    printf("sigqueue_value=%d from_self=%d\n", queued_value, queued_pid == getpid());
    return 0;
}
