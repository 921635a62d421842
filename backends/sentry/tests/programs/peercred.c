/* Socket credentials as the sandbox sees them.
 *   peercred          SO_PEERCRED of a socketpair (the caller itself), of a Unix server and
 *                     client in two processes (each names the other), and SCM_CREDENTIALS with
 *                     SO_PASSCRED (the sender's pid and ids). Prints "ok peercred".
 *   peercred PATH     connect to PATH (a server outside the sandbox), print its SO_PEERCRED and
 *                     the SCM_CREDENTIALS of the one byte it sends once it got one: "outside
 *                     pid=P uid=U gid=G,
 *                     message pid=P uid=U gid=G". */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

static struct ucred peer(int s) {
    struct ucred c;
    socklen_t l = sizeof c;
    CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &c, &l) == 0 && l == sizeof c, "SO_PEERCRED");
    return c;
}

/* Receive one byte with its SCM_CREDENTIALS. */
static struct ucred recv_creds(int s) {
    char b, ctl[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {.iov_base = &b, .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof ctl};
    CHECK(recvmsg(s, &m, 0) == 1, "recvmsg");
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    CHECK(c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS, "SCM_CREDENTIALS");
    struct ucred u;
    memcpy(&u, CMSG_DATA(c), sizeof u);
    return u;
}

static int outside(const char *path) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0), on = 1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    CHECK(s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0, "connect outside");
    CHECK(setsockopt(s, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0, "SO_PASSCRED");
    CHECK(write(s, "g", 1) == 1, "go"); /* the server sends once SO_PASSCRED is on */
    struct ucred p = peer(s), m = recv_creds(s);
    printf("outside pid=%d uid=%u gid=%u, message pid=%d uid=%u gid=%u\n", p.pid, p.uid, p.gid,
           m.pid, m.uid, m.gid);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1)
        return outside(argv[1]);
    pid_t me = getpid();
    uid_t uid = geteuid();
    gid_t gid = getegid();

    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    struct ucred c = peer(sv[0]);
    CHECK(c.pid == me && c.uid == uid && c.gid == gid, "socketpair: the caller itself");

    /* A server in a child, a client here; each names the other. */
    int ready[2];
    CHECK(pipe(ready) == 0, "pipe");
    const char *path = "/tmp/peercred.sock";
    unlink(path);
    pid_t child = fork();
    if (child == 0) {
        int l = socket(AF_UNIX, SOCK_STREAM, 0), on = 1;
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strcpy(a.sun_path, path);
        CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0, "listen");
        CHECK(write(ready[1], "r", 1) == 1, "ready");
        int s = accept(l, NULL, NULL);
        CHECK(s >= 0, "accept");
        struct ucred p = peer(s);
        CHECK(p.pid == me && p.uid == uid && p.gid == gid, "server: the client's credentials");
        CHECK(setsockopt(s, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0, "SO_PASSCRED");
        CHECK(write(s, "a", 1) == 1, "accepted");
        struct ucred m = recv_creds(s);
        CHECK(m.pid == me && m.uid == getuid() && m.gid == getgid(), "SCM_CREDENTIALS: the client");
        CHECK(write(s, "d", 1) == 1, "done");
        _exit(0);
    }
    char b;
    CHECK(read(ready[0], &b, 1) == 1, "wait for the server");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    CHECK(connect(s, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    CHECK(read(s, &b, 1) == 1 && b == 'a', "wait for accept");
    c = peer(s);
    CHECK(c.pid == child && c.uid == uid && c.gid == gid, "client: the server's credentials");
    CHECK(write(s, "m", 1) == 1, "message");
    CHECK(read(s, &b, 1) == 1 && b == 'd', "server done");
    int st;
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "server");
    printf("ok peercred\n");
    return 0;
}
