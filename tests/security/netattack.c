/* Attack: reach the host's network from inside the sandbox, without CAP_NET_RAW or
 * CAP_NET_ADMIN. argv[1] is the port of a TCP listener the test holds on the host's 127.0.0.1;
 * the same number names a listener in the host's abstract AF_UNIX namespace ("hako-sec-PORT").
 * One line per step: "<what>: ok" when it got through, "<what>: errno N" when refused.
 *   connect host loopback / host abstract   the host's listeners (another network namespace)
 *   raw socket / packet socket              without CAP_NET_RAW
 *   scm_rights unowned                      SCM_RIGHTS of fd numbers 3-63 the sandbox does not
 *                                           own (a sentry holds host fds under such numbers)
 *   netlink newaddr / setlink               route netlink changes (an address on lo, lo down)
 *   netlink <proto> socket                  netlink beyond route: audit, uevent, netfilter,
 *                                           generic
 *   netlink route read                      what stays allowed: an RTM_GETLINK dump */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef AF_PACKET
#define AF_PACKET 17
#endif

static void say(const char *what, int rc, int err) {
    if (rc >= 0) printf("%s: ok\n", what);
    else printf("%s: errno %d\n", what, err);
    fflush(stdout);
}

/* A connect bounded by a 5 s poll, so that dropped traffic cannot hang the test. */
static int connect_bounded(int s, const void *addr, socklen_t len) {
    fcntl(s, F_SETFL, O_NONBLOCK);
    if (connect(s, addr, len) == 0) return 0;
    if (errno != EINPROGRESS) return -1;
    struct pollfd p = {.fd = s, .events = POLLOUT};
    if (poll(&p, 1, 5000) != 1) {
        errno = ETIMEDOUT;
        return -1;
    }
    int e = 0;
    socklen_t el = sizeof e;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el);
    errno = e;
    return e ? -1 : 0;
}

/* One request on a route netlink socket; the kernel's answer (0 or -errno), or -errno of the
 * send or socket call itself. */
static int netlink_request(void *msg, size_t len) {
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0) return -errno;
    struct sockaddr_nl k = {.nl_family = AF_NETLINK};
    struct iovec iov = {msg, len};
    struct msghdr m = {.msg_name = &k, .msg_namelen = sizeof k, .msg_iov = &iov, .msg_iovlen = 1};
    if (sendmsg(s, &m, 0) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    struct pollfd p = {.fd = s, .events = POLLIN};
    char buf[8192];
    int rc = -ETIMEDOUT;
    if (poll(&p, 1, 5000) == 1) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        if (n < 0) rc = -errno;
        else if (n >= (ssize_t)sizeof *h && h->nlmsg_type == NLMSG_ERROR)
            rc = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
        else rc = 0; /* a dump's first part */
    }
    close(s);
    return rc;
}

static void netlink_step(const char *what, void *msg, size_t len) {
    int rc = netlink_request(msg, len);
    say(what, rc, -rc);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int port = atoi(argv[1]);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int rc = connect_bounded(s, &a, sizeof a);
    say("connect host loopback", rc, errno);
    close(s);

    struct sockaddr_un u = {.sun_family = AF_UNIX};
    int ul = snprintf(u.sun_path + 1, sizeof u.sun_path - 1, "hako-sec-%d", port) + 1;
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    rc = connect_bounded(s, &u, sizeof u.sun_family + ul);
    say("connect host abstract", rc, errno);
    close(s);

    rc = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    say("raw socket", rc, errno);
    rc = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    say("packet socket", rc, errno);

    /* SCM_RIGHTS of numbers this process does not own. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 3;
    int sent = 0, other = 0;
    for (int fd = 3; fd < 64; fd++) {
        if (fd == sv[0] || fd == sv[1] || fcntl(fd, F_GETFD) >= 0) continue;
        char c = 'x';
        struct iovec iov = {&c, 1};
        char ctl[CMSG_SPACE(sizeof(int))] = {0};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
        if (sendmsg(sv[0], &m, 0) >= 0) sent++;
        else if (errno != EBADF) other = errno;
    }
    if (sent) printf("scm_rights unowned: ok (%d sent)\n", sent);
    else printf("scm_rights unowned: errno %d\n", other ? other : EBADF);

    /* Route netlink: what is allowed (a read), then changes. */
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } get = {
        .h = {.nlmsg_len = sizeof get, .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
        .i = {.ifi_family = AF_UNSPEC},
    };
    netlink_step("netlink route read", &get, sizeof get);
    struct {
        struct nlmsghdr h;
        struct ifaddrmsg i;
        struct rtattr ra;
        struct in_addr addr;
    } add = {
        .h = {.nlmsg_len = sizeof add, .nlmsg_type = RTM_NEWADDR, .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, .nlmsg_seq = 2},
        .i = {.ifa_family = AF_INET, .ifa_prefixlen = 24, .ifa_index = 1},
        .ra = {.rta_len = RTA_LENGTH(sizeof(struct in_addr)), .rta_type = IFA_LOCAL},
    };
    inet_pton(AF_INET, "10.213.213.1", &add.addr);
    netlink_step("netlink newaddr", &add, sizeof add);
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } down = {
        .h = {.nlmsg_len = sizeof down, .nlmsg_type = RTM_NEWLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK, .nlmsg_seq = 3},
        .i = {.ifi_family = AF_UNSPEC, .ifi_index = 1, .ifi_flags = 0, .ifi_change = IFF_UP},
    };
    netlink_step("netlink setlink", &down, sizeof down);

    static const struct {
        const char *what;
        int proto;
    } others[] = {
        {"netlink audit socket", NETLINK_AUDIT},
        {"netlink uevent socket", NETLINK_KOBJECT_UEVENT},
        {"netlink netfilter socket", NETLINK_NETFILTER},
        {"netlink generic socket", NETLINK_GENERIC},
    };
    for (unsigned i = 0; i < sizeof others / sizeof others[0]; i++) {
        rc = socket(AF_NETLINK, SOCK_RAW, others[i].proto);
        say(others[i].what, rc, errno);
        if (rc >= 0) close(rc);
    }
    printf("still here\n");
    return 0;
}
