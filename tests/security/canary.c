/* A host process for the sandbox to attack: it keeps a known string at a known address,
 * writes "<pid> <address>" to argv[1], and sleeps until killed. The test reads the string
 * back through /proc/<pid>/mem to see whether anyone wrote into it; a SIGCONT that reaches it
 * (a kill(-1, SIGCONT) from a sandbox whose scope regressed) overwrites the string too. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

char secret[64] = "CANARY-INTACT";

static void on_cont(int sig) {
    (void)sig;
    memcpy(secret, "CANARY-SIGNAL", 13);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    signal(SIGCONT, on_cont);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *f = fopen(tmp, "w");
    if (!f) return 1;
    fprintf(f, "%d %lu\n", getpid(), (unsigned long)secret);
    fclose(f);
    rename(tmp, argv[1]);
    for (int i = 0; i < 600; i++) sleep(1);
    return 0;
}
