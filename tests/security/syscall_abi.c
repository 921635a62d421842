/* Attack: reach the host kernel through a syscall entry the sandbox's filter may not check.
 * - int 0x80: the i386 entry on x86_64, where syscall numbers differ (mkdir is 39, getuid 24);
 * - x32 numbers: the x86_64 number with bit 30 set (__X32_SYSCALL_BIT).
 * Each attempt runs in a child, so a kill by SIGSYS is reported rather than ending us.
 * Prints one line per attempt: "<name>: killed by signal N", "<name>: returned R".
 * Then whether the directories that the calls try to make exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define X32 0x40000000L

static long int80(long nr, long a, long b) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
    return r;
}

static long x32(long nr, long a, long b) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr | X32), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return r;
}

/* The path must live below 4 GiB for the i386 entry, which takes 32-bit pointers. */
static char *low_string(const char *s) {
    static char buf[64] __attribute__((aligned(16)));
    strcpy(buf, s);
    return buf; /* a static of a -static, non-PIE binary sits at a low address */
}

static void attempt(const char *name, long (*entry)(long, long, long), long nr, const char *path) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        long a = path ? (long)low_string(path) : 0;
        long r = entry(nr, a, 0755);
        printf("%s: returned %ld\n", name, r);
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (WIFSIGNALED(st)) printf("%s: killed by signal %d\n", name, WTERMSIG(st));
}

int main(void) {
    attempt("int80-mkdir", int80, 39, "/made-by-int80");
    attempt("int80-getuid", int80, 24, NULL);
    attempt("x32-mkdir", x32, 83, "/made-by-x32");
    attempt("x32-getuid", x32, 102, NULL);
    struct stat st;
    printf("made-by-int80: %s\n", stat("/made-by-int80", &st) == 0 ? "exists" : "absent");
    printf("made-by-x32: %s\n", stat("/made-by-x32", &st) == 0 ? "exists" : "absent");
    return 0;
}
