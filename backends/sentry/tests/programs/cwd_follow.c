/* The current directory is the directory itself, as Linux keeps it: after it is renamed (by the
 * process itself or by a child), getcwd gives the new name, relative lookups and creations land
 * in it, and /proc/self/cwd says where it is; once it is removed, getcwd and relative lookups
 * fail with ENOENT while stat of the cwd itself and ".." still work. It works in a new directory
 * /cXXXXXX of the root (or of argv[1]: a tmpfs). One line per case, "ok" or what went wrong. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "paths.h"

static void cwd_is(const char *want, const char *what) {
    char cwd[PATH_MAX], link[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, what);
    CHECK(strcmp(cwd, want) == 0, what);
    ssize_t n = readlink("/proc/self/cwd", link, sizeof link - 1);
    CHECK(n > 0, "readlink /proc/self/cwd");
    link[n] = 0;
    CHECK(strcmp(link, want) == 0, "/proc/self/cwd");
}

int main(int argc, char **argv) {
    char top[PATH_MAX];
    snprintf(top, sizeof top, "%s/cXXXXXX", argc > 1 ? argv[1] : "");
    CHECK(mkdtemp(top) != NULL, "mkdtemp");
    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
    snprintf(a, sizeof a, "%s/a", top);
    snprintf(b, sizeof b, "%s/b", top);
    snprintf(c, sizeof c, "%s/c", top);
    CHECK(mkdir(a, 0755) == 0, "mkdir a");
    CHECK(chdir(a) == 0, "chdir a");
    int fd = open("f", O_CREAT | O_WRONLY | O_EXCL, 0644);
    CHECK(fd >= 0, "create f in a");
    close(fd);
    cwd_is(a, "getcwd in a");

    /* Renamed by the process itself. */
    CHECK(rename(a, b) == 0, "rename a b");
    cwd_is(b, "getcwd after the rename is b");
    CHECK(access("f", F_OK) == 0, "f relative to the moved cwd");
    fd = open("g", O_CREAT | O_WRONLY | O_EXCL, 0644);
    CHECK(fd >= 0, "create g in the moved cwd");
    close(fd);
    CHECK(access(at(b, "g"), F_OK) == 0, "g is in b");
    /* A new directory under the old name is not the cwd. */
    CHECK(mkdir(a, 0755) == 0, "mkdir a again");
    CHECK(access(at(a, "f"), F_OK) == -1 && errno == ENOENT, "the new a is empty");
    CHECK(access("f", F_OK) == 0, "f still relative to the cwd");
    printf("rename ok\n");

    /* Renamed by a child: the parent's cwd moves too. */
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        _exit(rename(b, c) == 0 ? 0 : 1);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the child renamed b to c");
    cwd_is(c, "getcwd after the child's rename is c");
    CHECK(access("f", F_OK) == 0 && access("g", F_OK) == 0, "f and g relative to the cwd");
    printf("moved by another ok\n");

    /* Removed: no path, no lookups in it; the directory itself still stats. */
    CHECK(unlink("f") == 0 && unlink("g") == 0, "empty the cwd");
    CHECK(rmdir(c) == 0, "rmdir the cwd");
    char cwd[PATH_MAX];
    errno = 0;
    CHECK(getcwd(cwd, sizeof cwd) == NULL && errno == ENOENT, "getcwd of a removed cwd: ENOENT");
    CHECK(mkdir(c, 0755) == 0, "mkdir c again");
    CHECK(close(open(at(c, "f"), O_CREAT | O_WRONLY, 0644)) == 0, "create f in the new c");
    errno = 0;
    CHECK(access("f", F_OK) == -1 && errno == ENOENT, "f relative to a removed cwd: ENOENT");
    errno = 0;
    CHECK(open("h", O_CREAT | O_WRONLY, 0644) == -1 && errno == ENOENT,
          "create relative to a removed cwd: ENOENT");
    struct stat st;
    CHECK(fstatat(AT_FDCWD, "", &st, AT_EMPTY_PATH) == 0 && S_ISDIR(st.st_mode),
          "stat of the removed cwd itself");
    /* ".." still leads to where it was removed from. */
    CHECK(access("../c/f", F_OK) == 0, "../c/f from the removed cwd is the new c's");
    CHECK(chdir("..") == 0, "chdir .. from the removed cwd");
    cwd_is(top, "getcwd after chdir .. is the top");
    printf("removed ok\n");
    return 0;
}
