/* A confused or compromised sentry: this program takes the credentials a root sentry runs with
 * once its sandbox is started (identity::sentry_becomes + drop_sentry_caps: the sandbox's host
 * id as real, effective and saved uid and gid, fsuid/fsgid 0, no supplementary group, only
 * CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, in the bounding set too, not dumpable,
 * a session of its own)
 * and goes for what the sentry's own seccomp filter still lets it call: signals, ptrace,
 * process_vm_readv and /proc of processes that are not its sandbox's.
 * argv: host-id own-workload-pid other-sentry-pid host-root-process-pid */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define TRY(name, expr)                                                                        \
    do {                                                                                       \
        errno = 0;                                                                             \
        long r_ = (long)(expr);                                                                \
        printf("%s %d\n", name, r_ < 0 ? errno : 0);                                           \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 5)
        return 2;
    unsigned id = strtoul(argv[1], 0, 10);
    pid_t own = atoi(argv[2]), other = atoi(argv[3]), root = atoi(argv[4]);
    if (setsid() < 0)
        return 5;
    for (int c = 5; c < 64; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno == EINVAL)
            break;
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{0xdf, 0xdf, 0}, {0, 0, 0}}; /* + SETUID, SETGID */
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) || setgroups(0, 0) || setresgid(id, id, id) ||
        setresuid(id, id, id) || syscall(SYS_capset, &h, d))
        return 3;
    setfsuid(0);
    setfsgid(0);
    d[0].effective = d[0].permitted = 0x1f;
    if (syscall(SYS_capset, &h, d) || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))
        return 4;
    TRY("kill-own-workload", kill(own, 0));
    TRY("kill-host-root-process", kill(root, SIGCONT));
    TRY("kill-other-sentry", kill(other, SIGCONT));
    TRY("ptrace-other-sentry", ptrace(PTRACE_SEIZE, other, 0, 0));
    char buf[8];
    struct iovec l = {buf, sizeof buf}, r = {(void *)0x10000, sizeof buf};
    TRY("vm-read-other-sentry", process_vm_readv(other, &l, 1, &r, 1, 0));
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/environ", other);
    TRY("environ-other-sentry", open(p, O_RDONLY));
    snprintf(p, sizeof p, "/proc/%d/environ", root);
    TRY("environ-host-root-process", open(p, O_RDONLY));
    return 0;
}
