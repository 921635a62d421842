/* "." relative to a removed directory is the directory itself, as Linux finds it: with the cwd
 * and with a held directory descriptor, stat and open of "." (and "./", "./.") reach the
 * removed directory, and nothing else: not a new directory made under its old name, nor one
 * named as the host names a removed one ("<path> (deleted)"). Any other name in it, "./x"
 * included, is ENOENT, to look up or to create. It works in a new directory /dXXXXXX of the
 * root (or of argv[1]). One line per case, "ok" or what went wrong. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "paths.h"

/* `rel` relative to `dfd` is the directory whose inode is `ino`, by stat and by open. */
static void is_dir(int dfd, const char *rel, ino_t ino, const char *what) {
    struct stat st;
    CHECK(fstatat(dfd, rel, &st, 0) == 0, what);
    CHECK(S_ISDIR(st.st_mode) && st.st_ino == ino, what);
    CHECK(fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == ino, what);
    int fd = openat(dfd, rel, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0, what);
    CHECK(fstat(fd, &st) == 0 && st.st_ino == ino, what);
    close(fd);
    fd = openat(dfd, rel, O_PATH);
    CHECK(fd >= 0, what);
    CHECK(fstat(fd, &st) == 0 && st.st_ino == ino, what);
    close(fd);
}

/* Nothing but the directory itself is found in removed directory `dfd`. */
static void finds_nothing(int dfd, const char *what) {
    static const char *names[] = {"f", "./f", "g", "./g", "h", "./h", ".//f"};
    struct stat st;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        errno = 0;
        CHECK(fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) == -1 && errno == ENOENT, what);
        errno = 0;
        CHECK(openat(dfd, names[i], O_RDONLY) == -1 && errno == ENOENT, what);
    }
    errno = 0;
    CHECK(openat(dfd, "./x", O_CREAT | O_WRONLY, 0644) == -1 && errno == ENOENT, what);
    errno = 0;
    CHECK(mkdirat(dfd, "./y", 0755) == -1 && errno == ENOENT, what);
    errno = 0;
    CHECK(mkdirat(dfd, "y", 0755) == -1 && errno == ENOENT, what);
}

int main(int argc, char **argv) {
    char top[PATH_MAX];
    snprintf(top, sizeof top, "%s/dXXXXXX", argc > 1 ? argv[1] : "");
    CHECK(mkdtemp(top) != NULL, "mkdtemp");
    char d[PATH_MAX], dead[PATH_MAX];
    snprintf(d, sizeof d, "%s/d", top);
    snprintf(dead, sizeof dead, "%s/d (deleted)", top);
    CHECK(mkdir(d, 0755) == 0, "mkdir d");
    struct stat st;
    CHECK(stat(d, &st) == 0, "stat d");
    ino_t ino = st.st_ino;
    CHECK(chdir(d) == 0, "chdir d");
    int dfd = open(d, O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0, "open d");
    int pfd = open(d, O_PATH | O_DIRECTORY);
    CHECK(pfd >= 0, "open d O_PATH");
    is_dir(AT_FDCWD, ".", ino, "'.' of the cwd before");
    CHECK(rmdir(d) == 0, "rmdir d");

    /* An attacker's stand-ins: a new directory under the old name and one named as the host
     * names a removed one, each with files the removed directory never had. */
    CHECK(mkdir(d, 0755) == 0, "mkdir d again");
    touch(at(d, "f"));
    CHECK(mkdir(dead, 0755) == 0, "mkdir 'd (deleted)'");
    touch(at(dead, "g"));
    CHECK(stat(d, &st) == 0 && st.st_ino != ino, "the new d is another directory");

    const char *dots[] = {".", "./", "./.", ".//."};
    for (size_t i = 0; i < sizeof dots / sizeof *dots; i++) {
        is_dir(AT_FDCWD, dots[i], ino, "'.' of the removed cwd");
        is_dir(dfd, dots[i], ino, "'.' of a removed directory descriptor");
        is_dir(pfd, dots[i], ino, "'.' of a removed O_PATH descriptor");
    }
    printf("dot ok\n");

    finds_nothing(AT_FDCWD, "a name in the removed cwd: ENOENT");
    finds_nothing(dfd, "a name in a removed directory descriptor: ENOENT");
    finds_nothing(pfd, "a name in a removed O_PATH descriptor: ENOENT");
    CHECK(access(at(d, "y"), F_OK) == -1 && access(at(dead, "y"), F_OK) == -1 &&
              access(at(d, "x"), F_OK) == -1 && access(at(dead, "x"), F_OK) == -1,
          "nothing made in the stand-ins");
    /* A live directory descriptor still finds its names while the cwd is removed. */
    int tfd = open(top, O_RDONLY | O_DIRECTORY);
    CHECK(tfd >= 0, "open the top");
    int f = openat(tfd, "d/f", O_RDONLY);
    CHECK(f >= 0, "d/f relative to a live directory descriptor, the cwd removed");
    close(f);
    CHECK(fstatat(tfd, "d (deleted)/g", &st, 0) == 0, "a stat relative to it too");
    close(tfd);
    printf("names ok\n");

    /* Opening "." for writing or to create is EISDIR, as for any directory. */
    errno = 0;
    CHECK(openat(dfd, ".", O_WRONLY) == -1 && errno == EISDIR, "'.' for writing: EISDIR");
    errno = 0;
    CHECK(openat(AT_FDCWD, ".", O_CREAT | O_WRONLY, 0644) == -1 && errno == EISDIR,
          "create '.': EISDIR");
    errno = 0;
    CHECK(open(top, O_CREAT | O_RDONLY, 0644) == -1 && errno == EISDIR,
          "O_CREAT of a live directory: EISDIR");
    /* A removed directory lists nothing: getdents is ENOENT. */
    int lfd = openat(AT_FDCWD, ".", O_RDONLY | O_DIRECTORY);
    CHECK(lfd >= 0, "open '.' to list");
    char buf[4096];
    errno = 0;
    CHECK(syscall(SYS_getdents64, lfd, buf, sizeof buf) == -1 && errno == ENOENT,
          "list a removed directory: ENOENT");
    close(lfd);
    CHECK(chmod(".", 0700) == 0 && stat(".", &st) == 0 && (st.st_mode & 0777) == 0700,
          "chmod '.' of the removed cwd");
    printf("open ok\n");

    /* chdir(".") and fchdir keep the removed directory; ".." still leads out of it. */
    CHECK(chdir(".") == 0, "chdir '.' in the removed cwd");
    is_dir(AT_FDCWD, ".", ino, "'.' after chdir '.'");
    CHECK(chdir(top) == 0 && fchdir(dfd) == 0, "fchdir into the removed directory");
    is_dir(AT_FDCWD, ".", ino, "'.' after fchdir");
    errno = 0;
    CHECK(getcwd(buf, sizeof buf) == NULL && errno == ENOENT, "getcwd: ENOENT");
    CHECK(fstatat(AT_FDCWD, "./../d/f", &st, 0) == 0, "./../d/f is the new d's");
    CHECK(chdir("./..") == 0 && getcwd(buf, sizeof buf) != NULL && strcmp(buf, top) == 0,
          "chdir ./.. from the removed directory");
    printf("chdir ok\n");
    return 0;
}
