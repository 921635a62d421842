/* Inside a sandbox whose root is read-only: try every way of changing the root's files that the
 * sentry implements, and print "<operation> <errno>" for each (0 = it worked). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static void report(const char *what, int rc) {
    printf("%s %d\n", what, rc < 0 ? errno : 0);
}

int main(void) {
    report("open-trunc", open("/etc/data.txt", O_WRONLY | O_TRUNC));
    report("open-append", open("/etc/data.txt", O_WRONLY | O_APPEND));
    report("creat", open("/new", O_CREAT | O_WRONLY, 0644));
    report("tmpfile", open("/etc", O_TMPFILE | O_RDWR, 0600));
    report("mkdir", mkdir("/newdir", 0755));
    report("rename", rename("/etc/data.txt", "/etc/moved"));
    report("unlink", unlink("/etc/hostname"));
    report("rmdir", rmdir("/root"));
    report("symlink", symlink("x", "/sym"));
    report("link", link("/etc/data.txt", "/hard"));
    report("chmod", chmod("/bin/busybox", 04777));
    report("chown", chown("/etc/data.txt", 1, 1));
    report("truncate", truncate("/etc/data.txt", 0));
    report("utimes", utimes("/etc/data.txt", NULL));
    report("mkfifo", mkfifo("/fifo", 0644));
    fflush(stdout);
    return 0;
}
