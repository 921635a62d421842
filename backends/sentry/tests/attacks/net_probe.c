/* Network probe for the sentry's sockets (tests/network.rs). One mode per run; each prints
 * one line per check, "ok <what>" or "FAIL <what>: <why>", and exits 0 only if all passed.
 *   local                 TCP, UDP, AF_UNIX (path, abstract; stream, dgram, seqpacket),
 *                         SCM_RIGHTS, SCM_CREDENTIALS, netlink reads, all inside the sandbox
 *   attack HOSTPORT DIR   host loopback, raw/packet sockets, SCM_RIGHTS of fds the sandbox
 *                         does not own, socket paths through a symlink to host DIR
 *   recvdir PATH          receive fds from a host peer at PATH (see recvdir)
 *   serve PORT [IP PORT2] (a connect to IP:PORT2 must be refused first) TCP echo of one connection, then UDP echo of one datagram, on
 *                         0.0.0.0:PORT (the test's client is outside the sandbox)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int failed;

static void check(int cond, const char *what) {
    if (cond)
        printf("ok %s\n", what);
    else {
        printf("FAIL %s: errno %d (%s)\n", what, errno, strerror(errno));
        failed = 1;
    }
    fflush(stdout);
}

static struct sockaddr_in in4(const char *ip, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

/* A TCP server on 127.0.0.1 and a client (a child process) in the same sandbox. The parent
 * waits in epoll (accept readiness) and then in a blocking recv: both park in the sentry while
 * the child runs. */
static void tcp_local(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    check(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "tcp setsockopt SO_REUSEADDR");
    struct sockaddr_in a = in4("127.0.0.1", 0);
    check(bind(l, (void *)&a, sizeof a) == 0, "tcp bind 127.0.0.1:0");
    socklen_t al = sizeof a;
    check(getsockname(l, (void *)&a, &al) == 0 && a.sin_port != 0, "tcp getsockname");
    check(listen(l, 4) == 0, "tcp listen");
    pid_t c = fork();
    if (c == 0) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(s, (void *)&a, sizeof a) != 0) _exit(2);
        int nd = 1;
        if (setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &nd, sizeof nd) != 0) _exit(3);
        if (send(s, "ping", 4, 0) != 4) _exit(4);
        char b[8] = {0};
        if (recv(s, b, 4, MSG_WAITALL) != 4 || memcmp(b, "pong", 4)) _exit(5);
        _exit(0);
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    check(epoll_wait(ep, &ev, 1, -1) == 1 && ev.data.fd == l, "tcp epoll: listener readable");
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    int s = accept4(l, (void *)&peer, &pl, SOCK_CLOEXEC);
    check(s >= 0 && peer.sin_family == AF_INET && peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "tcp accept4 with peer address");
    char b[8] = {0};
    check(recv(s, b, 4, 0) == 4 && !memcmp(b, "ping", 4), "tcp recv");
    check(send(s, "pong", 4, 0) == 4, "tcp send");
    int st;
    waitpid(c, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tcp client (connect, send, recv) in a child");
    int err = -1;
    socklen_t el = sizeof err;
    check(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0, "tcp getsockopt SO_ERROR");
    check(shutdown(s, SHUT_WR) == 0, "tcp shutdown");
    check(setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) < 0 && (errno == ENOPROTOOPT), "tcp SO_BINDTODEVICE refused");
    int p80 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a80 = in4("127.0.0.1", 80);
    check(bind(p80, (void *)&a80, sizeof a80) == 0, "tcp bind port 80 with CAP_NET_BIND_SERVICE");
    close(p80);
    close(s);
    close(l);
    close(ep);
}

static void udp_local(void) {
    int a = socket(AF_INET6, SOCK_DGRAM, 0), b = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 x = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    check(bind(a, (void *)&x, sizeof x) == 0, "udp6 bind ::1");
    socklen_t xl = sizeof x;
    getsockname(a, (void *)&x, &xl);
    check(sendto(b, "dgram", 5, 0, (void *)&x, sizeof x) == 5, "udp6 sendto");
    char buf[16] = {0};
    struct sockaddr_in6 from;
    socklen_t fl = sizeof from;
    struct pollfd p = {.fd = a, .events = POLLIN};
    check(poll(&p, 1, -1) == 1 && (p.revents & POLLIN), "udp6 poll readable");
    check(recvfrom(a, buf, sizeof buf, 0, (void *)&from, &fl) == 5 && !memcmp(buf, "dgram", 5) && from.sin6_family == AF_INET6, "udp6 recvfrom with source");
    close(a);
    close(b);
}

/* A server and a client over AF_UNIX of `type` at `addr`. */
static void unix_pair(int type, struct sockaddr_un *addr, socklen_t len, const char *what) {
    char w[96];
    int l = socket(AF_UNIX, type, 0);
    snprintf(w, sizeof w, "%s bind", what);
    check(bind(l, (void *)addr, len) == 0, w);
    if (type != SOCK_DGRAM) listen(l, 2);
    pid_t c = fork();
    if (c == 0) {
        int s = socket(AF_UNIX, type, 0);
        if (type == SOCK_DGRAM) {
            if (sendto(s, "hello", 5, 0, (void *)addr, len) != 5) _exit(2);
            _exit(0);
        }
        if (connect(s, (void *)addr, len) != 0) _exit(3);
        if (write(s, "hello", 5) != 5) _exit(4);
        _exit(0);
    }
    int s = type == SOCK_DGRAM ? l : accept(l, NULL, NULL);
    char b[8] = {0};
    snprintf(w, sizeof w, "%s: data from a client", what);
    check(s >= 0 && read(s, b, 5) == 5 && !memcmp(b, "hello", 5), w);
    int st;
    waitpid(c, &st, 0);
    snprintf(w, sizeof w, "%s: client", what);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, w);
    struct sockaddr_un got;
    socklen_t gl = sizeof got;
    snprintf(w, sizeof w, "%s: getsockname gives the sandbox's name", what);
    check(getsockname(l, (void *)&got, &gl) == 0 && gl == len && !memcmp(got.sun_path, addr->sun_path, len - 2), w);
    if (s != l) close(s);
    close(l);
}

static void unix_local(void) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "/tmp/stream.sock");
    unix_pair(SOCK_STREAM, &a, sizeof a.sun_family + strlen(a.sun_path) + 1, "unix stream path");
    struct stat st;
    check(stat("/tmp/stream.sock", &st) == 0 && S_ISSOCK(st.st_mode), "unix socket file in the sandbox's /tmp");
    chdir("/tmp");
    strcpy(a.sun_path, "rel.sock");
    unix_pair(SOCK_SEQPACKET, &a, sizeof a.sun_family + strlen(a.sun_path) + 1, "unix seqpacket relative path");
    strcpy(a.sun_path, "/tmp/dgram.sock");
    unix_pair(SOCK_DGRAM, &a, sizeof a.sun_family + strlen(a.sun_path) + 1, "unix dgram path");
    memset(a.sun_path, 0, sizeof a.sun_path);
    memcpy(a.sun_path, "\0hako-abstract", 14);
    unix_pair(SOCK_STREAM, &a, sizeof a.sun_family + 14, "unix stream abstract");
}

static int send_fds(int s, int *fds, int n) {
    char c[CMSG_SPACE(sizeof(int) * 4)] = {0};
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(h), fds, sizeof(int) * n);
    return sendmsg(s, &m, 0);
}

/* Receive one message; the fds it carried (at most 4) into fds; returns how many. */
static int recv_fds(int s, int *fds, int *flags) {
    char c[CMSG_SPACE(sizeof(int) * 4)];
    char d[4];
    struct iovec iov = {.iov_base = d, .iov_len = sizeof d};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c};
    if (recvmsg(s, &m, 0) < 0) return -1;
    *flags = m.msg_flags;
    int n = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
            n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds, CMSG_DATA(h), n * sizeof(int));
        }
    return n;
}

static void scm_local(void) {
    int sv[2];
    check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    int f = open("/etc/data.txt", O_RDONLY);
    int fds[4];
    int flags = 0;
    check(send_fds(sv[0], &f, 1) == 1, "SCM_RIGHTS sendmsg of an open file");
    int n = recv_fds(sv[1], fds, &flags);
    char b[16] = {0};
    check(n == 1 && fds[0] != f && pread(fds[0], b, 8, 0) == 8 && !memcmp(b, "original", 8), "SCM_RIGHTS recvmsg: a new fd for the same file");
    int mf = memfd_create("probe", MFD_CLOEXEC);
    check(mf >= 0 && write(mf, "in-memfd", 8) == 8 && ftruncate(mf, 4096) == 0, "memfd_create, write, ftruncate");
    check(send_fds(sv[0], &mf, 1) == 1, "SCM_RIGHTS of a memfd");
    n = recv_fds(sv[1], fds, &flags);
    memset(b, 0, sizeof b);
    struct stat mst;
    check(n == 1 && pread(fds[0], b, 8, 0) == 8 && !memcmp(b, "in-memfd", 8) && fstat(fds[0], &mst) == 0 && mst.st_size == 4096, "received memfd reads the same data");
    int p[2];
    pipe(p);
    check(send_fds(sv[0], p, 2) == 1, "SCM_RIGHTS of a pipe's two ends");
    n = recv_fds(sv[1], fds, &flags);
    check(n == 2 && write(fds[1], "via", 3) == 3 && read(p[0], b, 3) == 3 && !memcmp(b, "via", 3), "received pipe end writes into the original pipe");
    /* SCM_CREDENTIALS with our own (virtual) ids; the receiver sees our virtual pid. */
    int one = 1;
    setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    struct ucred cr = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
    char c[CMSG_SPACE(sizeof cr)] = {0};
    struct iovec iov = {.iov_base = "y", .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_CREDENTIALS;
    h->cmsg_len = CMSG_LEN(sizeof cr);
    memcpy(CMSG_DATA(h), &cr, sizeof cr);
    check(sendmsg(sv[0], &m, 0) == 1, "SCM_CREDENTIALS with our own ids");
    char rc[CMSG_SPACE(sizeof cr)];
    char d;
    struct iovec riov = {.iov_base = &d, .iov_len = 1};
    struct msghdr r = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rc, .msg_controllen = sizeof rc};
    struct ucred got = {0};
    int have = 0;
    got.pid = -1;
    if (recvmsg(sv[1], &r, MSG_DONTWAIT) == 1 && CMSG_FIRSTHDR(&r) && CMSG_FIRSTHDR(&r)->cmsg_type == SCM_CREDENTIALS) {
        memcpy(&got, CMSG_DATA(CMSG_FIRSTHDR(&r)), sizeof got);
        have = 1;
    }
    /* The sender reaches the host as the sentry: the receiver sees the sender's virtual pid
     * and ids (the task that made the sending socket), never a host one. */
    check(have && got.pid == getpid() && got.uid == getuid() && got.gid == getgid(), "SCM_CREDENTIALS received with the sender's virtual pid and ids");
    cr.pid = 1;
    memcpy(CMSG_DATA(h), &cr, sizeof cr);
    errno = 0;
    check(getpid() == 1 || (sendmsg(sv[0], &m, 0) < 0 && errno == EPERM), "SCM_CREDENTIALS naming another pid refused");
}

static void netlink_local(void) {
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    check(s >= 0, "netlink route socket");
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req = {.h = {.nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1}};
    check(send(s, &req, sizeof req, 0) == sizeof req, "netlink RTM_GETLINK request");
    char buf[8192];
    int n = recv(s, buf, sizeof buf, 0);
    check(n > (int)sizeof(struct nlmsghdr) && ((struct nlmsghdr *)buf)->nlmsg_type == RTM_NEWLINK, "netlink link dump answered");
    req.h.nlmsg_type = RTM_NEWLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE;
    errno = 0;
    check(send(s, &req, sizeof req, 0) < 0 && errno == EPERM, "netlink RTM_NEWLINK refused");
    errno = 0;
    check(socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT) < 0, "netlink audit socket refused");
    close(s);
}

/* EPOLLET: one event per edge, none while the socket just stays readable. */
static void epollet_local(void) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 7}, got[2];
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev);
    check(epoll_wait(ep, got, 2, 0) == 0, "EPOLLET: nothing before data");
    write(sv[0], "a", 1);
    check(epoll_wait(ep, got, 2, 0) == 1 && got[0].data.u64 == 7, "EPOLLET: one event for new data");
    check(epoll_wait(ep, got, 2, 0) == 0, "EPOLLET: no second event while still readable");
    write(sv[0], "b", 1);
    check(epoll_wait(ep, got, 2, 0) == 1, "EPOLLET: a new event for more data");
    char b[4];
    check(read(sv[1], b, sizeof b) == 2, "EPOLLET: both bytes read");
    pid_t c = fork();
    if (c == 0) {
        usleep(1000);
        write(sv[0], "c", 1);
        _exit(0);
    }
    check(epoll_wait(ep, got, 2, -1) == 1, "EPOLLET: a blocking wait wakes on the next edge");
    waitpid(c, NULL, 0);
    close(ep);
    close(sv[0]);
    close(sv[1]);
}

static void attack(int hostport, const char *hostdir) {
    /* The host's loopback: the sandbox has its own network namespace. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = in4("127.0.0.1", hostport);
    errno = 0;
    int r = connect(s, (void *)&a, sizeof a);
    check(r < 0 && errno == ECONNREFUSED, "host loopback listener unreachable (ECONNREFUSED)");
    close(s);
    int p80 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a80 = in4("127.0.0.1", 80);
    errno = 0;
    check(bind(p80, (void *)&a80, sizeof a80) < 0 && errno == EACCES, "bind port 80 without CAP_NET_BIND_SERVICE: EACCES");
    close(p80);
    /* The host's abstract AF_UNIX namespace: it is per network namespace. */
    struct sockaddr_un ab = {.sun_family = AF_UNIX};
    int abl = snprintf(ab.sun_path + 1, sizeof ab.sun_path - 1, "hako-host-%d", hostport) + 1;
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    errno = 0;
    check(connect(s, (void *)&ab, sizeof ab.sun_family + abl) < 0 && errno == ECONNREFUSED, "host abstract socket unreachable (ECONNREFUSED)");
    close(s);
    errno = 0;
    check(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) < 0 && errno == EPERM, "raw socket refused (EPERM)");
    errno = 0;
    check(socket(AF_PACKET, SOCK_RAW, htons(3)) < 0 && errno == EPERM, "packet socket refused (EPERM)");
    errno = 0;
    check(socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) < 0, "ping socket refused");
    errno = 0;
    check(socket(AF_BLUETOOTH, SOCK_STREAM, 0) < 0 && errno == EAFNOSUPPORT, "unknown family EAFNOSUPPORT");
    /* SCM_RIGHTS of descriptor numbers the sandbox does not own (the sentry holds host fds
     * with small numbers; the sandbox has 0-2 and the socketpair). */
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    int bad = 0;
    for (int fd = 3; fd < 64; fd++) {
        if (fd == sv[0] || fd == sv[1]) continue;
        errno = 0;
        if (send_fds(sv[0], &fd, 1) >= 0 || errno != EBADF) {
            printf("FAIL SCM_RIGHTS of fd %d not owned by the sandbox: sent (errno %d)\n", fd, errno);
            bad = 1;
        }
    }
    if (!bad) printf("ok SCM_RIGHTS of fds 3-63 the sandbox does not own: all EBADF\n");
    failed |= bad;
    /* Socket paths through symlinks to a host directory stay in the root. */
    char link[256];
    snprintf(link, sizeof link, "%s/host.sock", hostdir);
    symlink(hostdir, "/tmp/hostdir");
    symlink(link, "/tmp/hostsock");
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    strcpy(u.sun_path, "/tmp/hostdir/planted.sock");
    int us = socket(AF_UNIX, SOCK_STREAM, 0);
    errno = 0;
    check(bind(us, (void *)&u, sizeof u) < 0 && errno == ENOENT, "bind through a symlink to a host dir: ENOENT");
    strcpy(u.sun_path, "/tmp/hostsock");
    errno = 0;
    check(connect(us, (void *)&u, sizeof u) < 0 && errno == ENOENT, "connect through a symlink to a host socket: ENOENT");
    snprintf(u.sun_path, sizeof u.sun_path, "%s", link);
    errno = 0;
    check(connect(us, (void *)&u, sizeof u) < 0 && errno == ENOENT, "connect to the host socket's own path: ENOENT");
    strcpy(u.sun_path, "/proc/self/fd/0");
    errno = 0;
    check(connect(us, (void *)&u, sizeof u) < 0, "connect to /proc/self/fd/0 refused");
}

/* A peer outside the sandbox (the test, through a socket file in the rootfs) sends a host
 * directory and then a host regular file: the directory must not arrive. */
static void recvdir(const char *path) {
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    strcpy(u.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    check(connect(s, (void *)&u, sizeof u) == 0, "recvdir: connect to the host peer");
    int fds[4], flags = 0;
    int n = recv_fds(s, fds, &flags);
    check(n == 0 && (flags & MSG_CTRUNC), "recvdir: a host directory is not received (MSG_CTRUNC)");
    for (int i = 0; i < n; i++) {
        char b[64] = {0};
        int f = openat(fds[i], "etc/hostname", O_RDONLY);
        if (f >= 0 && read(f, b, sizeof b - 1) > 0) printf("FAIL read the host's etc/hostname: %s\n", b);
    }
    n = recv_fds(s, fds, &flags);
    char b[16] = {0};
    check(n == 1 && read(fds[0], b, 9) == 9 && !memcmp(b, "peer-file", 9), "recvdir: a regular file from the peer is received");
}

static void serve(int port, const char *refuse_ip, int refuse_port) {
    if (refuse_ip) {
        /* A blocking connect the peer refuses across the veth: the refusal, not a hang. */
        int r = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in ra = in4(refuse_ip, refuse_port);
        errno = 0;
        check(connect(r, (void *)&ra, sizeof ra) < 0 && errno == ECONNREFUSED, "serve: a refused connect across the veth: ECONNREFUSED");
        close(r);
    }
    int l = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = in4("0.0.0.0", port);
    check(bind(l, (void *)&a, sizeof a) == 0 && listen(l, 4) == 0, "serve: tcp listen");
    check(bind(u, (void *)&a, sizeof a) == 0, "serve: udp bind");
    int s = accept(l, NULL, NULL);
    char b[64];
    int n = read(s, b, sizeof b);
    check(n > 0 && write(s, b, n) == n, "serve: tcp echo");
    close(s);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    n = recvfrom(u, b, sizeof b, 0, (void *)&from, &fl);
    check(n > 0 && sendto(u, b, n, 0, (void *)&from, fl) == n, "serve: udp echo");
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "local")) {
        tcp_local();
        udp_local();
        unix_local();
        scm_local();
        netlink_local();
        epollet_local();
    } else if (argc > 3 && !strcmp(argv[1], "attack")) {
        attack(atoi(argv[2]), argv[3]);
    } else if (argc > 2 && !strcmp(argv[1], "recvdir")) {
        recvdir(argv[2]);
    } else if (argc > 2 && !strcmp(argv[1], "serve")) {
        serve(atoi(argv[2]), argc > 4 ? argv[3] : NULL, argc > 4 ? atoi(argv[4]) : 0);
    } else {
        fprintf(stderr, "usage: net_probe local | attack HOSTPORT HOSTDIR | serve PORT\n");
        return 2;
    }
    return failed;
}
