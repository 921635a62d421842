/* Lookups relative to a directory descriptor follow the directory itself, as Linux's: after the
 * directory is renamed, after a new directory takes its old name, and after it is removed.
 * A directory named as the host names a removed one ("<path> (deleted)") is not it.
 * The sentry keeps a directory's in-root path with its descriptor and must drop it when a name
 * in the root changes. It works in a new directory /wXXXXXX of the root (or of argv[1]: a tmpfs). One line per case, "ok"
 * or what went wrong. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"

/* Whether `rel` exists relative to `dfd` (no symlink followed). */
static int there(int dfd, const char *rel) {
    struct stat st;
    if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    CHECK(errno == ENOENT, "fstatat: ENOENT or found");
    return 0;
}

int main(int argc, char **argv) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/wXXXXXX", argc > 1 ? argv[1] : "");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char a[PATH_MAX], c[PATH_MAX];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    CHECK(mkdir(a, 0755) == 0, "mkdir a");
    CHECK(mkdir(at(a, "b"), 0755) == 0, "mkdir a/b");
    touch(at(a, "b/f"));

    int dfd = open(a, O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0, "open a");
    /* Many lookups through the descriptor (what a tree walk does). */
    for (int i = 0; i < 100; i++)
        CHECK(there(dfd, "b/f"), "b/f through the descriptor");
    CHECK(!there(dfd, "b/g"), "no b/g");
    printf("walk ok\n");

    /* Renamed: the descriptor still names the same directory. */
    CHECK(rename(a, c) == 0, "rename a c");
    CHECK(there(dfd, "b/f"), "b/f after the rename");
    CHECK(there(dfd, "../c/b/f"), "../c/b/f after the rename");
    CHECK(!there(dfd, "../a"), "no ../a after the rename");
    printf("rename ok\n");

    /* A new directory under the old name: lookups through the descriptor do not go there. */
    CHECK(mkdir(a, 0755) == 0, "mkdir a again");
    touch(at(a, "new"));
    CHECK(!there(dfd, "new"), "the new a's file is not in the renamed one");
    CHECK(there(dfd, "b/f"), "b/f with a new a");
    int nfd = openat(dfd, "b", O_RDONLY | O_DIRECTORY);
    CHECK(nfd >= 0, "openat b");
    CHECK(there(nfd, "f"), "f through b");
    CHECK(there(nfd, "../b/f"), "../b/f through b");
    printf("new name ok\n");

    /* fchdir follows the directory too, and getcwd says where it is now. */
    char cwd[PATH_MAX];
    CHECK(fchdir(dfd) == 0, "fchdir");
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    CHECK(strcmp(cwd, c) == 0, "getcwd after fchdir is the new name");
    CHECK(there(AT_FDCWD, "b/f"), "b/f from the cwd");
    CHECK(chdir("/") == 0, "chdir /");
    printf("fchdir ok\n");

    /* Removed: lookups through it find nothing, even once a new one has the name. */
    CHECK(unlink(at(c, "b/f")) == 0, "unlink f");
    CHECK(rmdir(at(c, "b")) == 0, "rmdir b");
    CHECK(!there(nfd, "f"), "f in the removed b");
    CHECK(mkdir(at(c, "b"), 0755) == 0, "mkdir b again");
    touch(at(c, "b/f"));
    CHECK(!there(nfd, "f"), "f of the new b is not in the removed one");
    /* The host names a removed directory "<path> (deleted)": a real directory of that name is
     * not the removed one either, and nothing is made in the removed one. */
    char dead[PATH_MAX];
    snprintf(dead, sizeof dead, "%s/b (deleted)", c);
    CHECK(mkdir(dead, 0755) == 0, "mkdir 'b (deleted)'");
    touch(at(dead, "g"));
    CHECK(!there(nfd, "g"), "g of 'b (deleted)' is not in the removed b");
    errno = 0;
    CHECK(openat(nfd, "h", O_CREAT | O_WRONLY, 0644) == -1 && errno == ENOENT,
          "create in the removed b: ENOENT");
    CHECK(!there(AT_FDCWD, at(dead, "h")), "nothing made in 'b (deleted)'");
    CHECK(there(nfd, "../b/f"), "../b/f through the removed b is the new b's");
    printf("removed ok\n");
    return 0;
}
