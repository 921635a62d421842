/* asuser UID CMD ARGS...: run CMD as UID (uid, gid and no supplementary groups), for tests
 * that need two users in one sandbox (the sandbox's busybox has no su without a password file,
 * and its setpriv cannot change ids). Needs CAP_SETUID and CAP_SETGID. */
#include "check.h"
#include <grp.h>
#include <unistd.h>

int main(int argc, char **argv) {
    CHECK(argc >= 3, "usage: asuser UID CMD ARGS...");
    unsigned id = (unsigned)strtoul(argv[1], NULL, 10);
    CHECK(setgroups(0, NULL) == 0, "setgroups");
    CHECK(setresgid(id, id, id) == 0, "setresgid");
    CHECK(setresuid(id, id, id) == 0, "setresuid");
    execv(argv[2], argv + 2);
    CHECK(0, "execv");
}
