/* SO_RCVTIMEO and SO_SNDTIMEO end blocking socket calls with EAGAIN, as Linux's do: recv, read,
 * recvmsg and recvfrom on a quiet socket, accept with no client, send on a full socket. The
 * option reads back as set. Prints "ok timeouts". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "check.h"

static void timeout(int s, int opt) {
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200 * 1000}, got;
    socklen_t l = sizeof got;
    CHECK(setsockopt(s, SOL_SOCKET, opt, &tv, sizeof tv) == 0, "set timeout");
    CHECK(getsockopt(s, SOL_SOCKET, opt, &got, &l) == 0 && got.tv_sec == 0 &&
              got.tv_usec == 200 * 1000, "timeout reads back");
}

#define TIMES_OUT(call, what) CHECK((call) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), what)

int main(void) {
    char b[64];
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    timeout(sv[0], SO_RCVTIMEO);
    TIMES_OUT(recv(sv[0], b, sizeof b, 0), "recv times out");
    TIMES_OUT(read(sv[0], b, sizeof b), "read times out");
    struct iovec iov = {.iov_base = b, .iov_len = sizeof b};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    TIMES_OUT(recvmsg(sv[0], &m, 0), "recvmsg times out");
    CHECK(write(sv[1], "x", 1) == 1 && recv(sv[0], b, sizeof b, 0) == 1, "data still comes");

    /* A full socket: fill it without blocking, then a blocking send times out. */
    int fl = fcntl(sv[1], F_GETFL);
    CHECK(fcntl(sv[1], F_SETFL, fl | O_NONBLOCK) == 0, "O_NONBLOCK");
    static char big[65536];
    while (send(sv[1], big, sizeof big, 0) > 0) {
    }
    while (send(sv[1], big, 1, 0) > 0) {
    }
    CHECK(errno == EAGAIN, "socket full");
    CHECK(fcntl(sv[1], F_SETFL, fl) == 0, "blocking again");
    timeout(sv[1], SO_SNDTIMEO);
    TIMES_OUT(send(sv[1], big, 1, 0), "send times out");
    TIMES_OUT(write(sv[1], big, 1), "write times out");

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0, "listen");
    timeout(l, SO_RCVTIMEO);
    TIMES_OUT(accept(l, NULL, NULL), "accept times out");

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(u >= 0 && bind(u, (struct sockaddr *)&a, sizeof a) == 0, "udp bind");
    timeout(u, SO_RCVTIMEO);
    socklen_t al = sizeof a;
    TIMES_OUT(recvfrom(u, b, sizeof b, 0, (struct sockaddr *)&a, &al), "recvfrom times out");
    printf("ok timeouts\n");
    return 0;
}
