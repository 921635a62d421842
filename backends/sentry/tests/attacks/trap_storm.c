/* Many tasks trapping at once: 4 processes of 4 threads, each thread making trapped calls
 * (getppid, open/read/close of a file) in a loop and checking every answer. Prints "storm ok"
 * and exits 0 when every answer was right. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t parent;
static volatile int bad;

static void *worker(void *arg) {
    (void)arg;
    char b[16];
    for (int i = 0; i < 500; i++) {
        if (syscall(SYS_getppid) != parent) bad = 1;
        int fd = open("/etc/word", O_RDONLY);
        if (fd < 0) { bad = 2; break; }
        ssize_t n = read(fd, b, sizeof b);
        close(fd);
        if (n != 2 || memcmp(b, "w\n", 2) != 0) bad = 3;
    }
    return 0;
}

int main(void) {
    pid_t kids[4];
    for (int p = 0; p < 4; p++) {
        kids[p] = fork();
        if (kids[p] < 0) { perror("fork"); return 1; }
        if (kids[p] == 0) {
            parent = getppid();
            pthread_t t[4];
            for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, worker, 0);
            for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
            _exit(bad);
        }
    }
    int fails = 0;
    for (int p = 0; p < 4; p++) {
        int st = 0;
        if (waitpid(kids[p], &st, 0) != kids[p] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "process %d: status %#x\n", p, st);
            fails++;
        }
    }
    if (fails) return 1;
    printf("storm ok\n");
    return 0;
}
