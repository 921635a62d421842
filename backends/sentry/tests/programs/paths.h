/* Path helpers of the test programs that work in a directory of their own. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"

/* "dir/rel", in a buffer the next call reuses. */
static inline const char *at(const char *dir, const char *rel) {
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return path;
}

/* Create the empty file `p`, which must not exist yet. */
static inline void touch(const char *p) {
    int fd = open(p, O_CREAT | O_WRONLY | O_EXCL, 0644);
    CHECK(fd >= 0, p);
    close(fd);
}
