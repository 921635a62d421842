/* System V IPC (issue 12) across fork: a shared memory segment, a semaphore set and a message
 * queue made by the parent and used by a child; IPC_STAT's ids, mode and pids; IPC_SET to
 * another owner; a child that setuid()s to a stranger is refused as Linux refuses it. Run as
 * root with CAP_SETUID, CAP_SETGID. One "ok" line per part; a failure ends it with 1.
 *
 * With argv[1] = "find KEY": print what shmget(KEY, 0, 0) says (an attacker probing for an
 * object of another IPC namespace), and if it is found, read its first bytes. With "give KEY":
 * make a segment KEY and IPC_SET it to uid and gid 0, mode 0666, and leave it. */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define KEY 0x48414b4f

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

/* Run f in a child; its exit status. */
static int in_child(int (*f)(int), int arg) {
    pid_t c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0)
        _exit(f(arg));
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st), "child");
    return WEXITSTATUS(st);
}

static int shm_child(int id) {
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        return 10;
    strcpy(p, "from the child");
    return shmdt(p) == 0 ? 0 : 11;
}

/* A stranger: uid 2000, in group 1000 (the segment's group after IPC_SET), nothing else. */
static int shm_stranger(int id) {
    gid_t g = 1000;
    if (setgroups(1, &g) != 0 || setgid(1000) != 0 || setuid(2000) != 0)
        return 20;
    if (shmat(id, NULL, 0) != (void *)-1 || errno != EACCES)
        return 21; /* group bits are r-- */
    char *p = shmat(id, NULL, SHM_RDONLY);
    if (p == (void *)-1 || strcmp(p, "from the child") != 0)
        return 22;
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) != 0 || ds.shm_perm.uid != 1000)
        return 23;
    ds.shm_perm.uid = 2000;
    if (shmctl(id, IPC_SET, &ds) == 0 || errno != EPERM)
        return 24;
    if (shmctl(id, IPC_RMID, NULL) == 0 || errno != EPERM)
        return 25;
    if (shmget(KEY, 0, 0600) != -1 || errno != EACCES)
        return 26;
    if (shmget(KEY, 0, 0400) != id)
        return 27;
    return 0;
}

static void shm(void) {
    shmctl(shmget(KEY, 0, 0), IPC_RMID, NULL); /* a leftover of an earlier run (runc) */
    int id = shmget(KEY, 8192, IPC_CREAT | IPC_EXCL | 0640);
    CHECK(id >= 0, "shmget");
    CHECK(shmget(KEY, 8192, IPC_CREAT | IPC_EXCL | 0640) == -1 && errno == EEXIST, "EEXIST");
    CHECK(shmget(KEY, 4096, IPC_CREAT | 0640) == id, "shmget of the existing key");
    CHECK(shmget(KEY, 1 << 20, 0) == -1 && errno == EINVAL, "shmget larger");
    CHECK(shmget(KEY + 1, 4096, 0) == -1 && errno == ENOENT, "ENOENT");
    CHECK(in_child(shm_child, id) == 0, "the child writes the segment");
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1 && strcmp(p, "from the child") == 0, "the parent reads it");
    struct shmid_ds ds;
    CHECK(shmctl(id, IPC_STAT, &ds) == 0, "IPC_STAT");
    CHECK(ds.shm_perm.uid == 0 && ds.shm_perm.cuid == 0 && ds.shm_perm.gid == 0, "owner root");
    CHECK((ds.shm_perm.mode & 0777) == 0640 && ds.shm_segsz == 8192, "mode and size");
    CHECK(ds.shm_cpid == getpid() && ds.shm_lpid == getpid() && ds.shm_nattch == 1, "pids");
    ds.shm_perm.uid = 1000;
    ds.shm_perm.gid = 1000;
    ds.shm_perm.mode = 0640;
    CHECK(shmctl(id, IPC_SET, &ds) == 0, "IPC_SET");
    CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_perm.uid == 1000 && ds.shm_perm.gid == 1000 &&
              ds.shm_perm.cuid == 0 && (ds.shm_perm.mode & 0777) == 0640,
          "IPC_STAT after IPC_SET");
    int r = in_child(shm_stranger, id);
    if (r != 0)
        printf("stranger: %d\n", r);
    CHECK(r == 0, "a stranger is refused");
    struct shm_info info;
    CHECK(shmctl(0, SHM_INFO, (struct shmid_ds *)&info) >= 0 && info.used_ids >= 1, "SHM_INFO");
    CHECK(shmdt(p) == 0, "shmdt");
    CHECK(shmctl(id, IPC_RMID, NULL) == 0, "IPC_RMID");
    CHECK(shmget(KEY, 0, 0) == -1 && errno == ENOENT, "gone");
    printf("ok shm\n");
}

static int sem_child(int id) {
    struct sembuf wait0 = {0, -1, 0}, post1 = {1, 1, 0};
    if (semop(id, &wait0, 1) != 0)
        return 30;
    return semop(id, &post1, 1) == 0 ? 0 : 31;
}

static void sem(void) {
    int id = semget(IPC_PRIVATE, 2, 0600);
    CHECK(id >= 0, "semget");
    pid_t c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0)
        _exit(sem_child(id));
    /* The child blocks in the host kernel until the parent posts. */
    union semun u = {.val = 1};
    CHECK(semctl(id, 0, SETVAL, u) == 0, "SETVAL");
    struct sembuf wait1 = {1, -1, 0};
    struct timespec ts = {10, 0};
    CHECK(semtimedop(id, &wait1, 1, &ts) == 0, "semtimedop");
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "sem child");
    CHECK(semctl(id, 0, GETPID) == c && semctl(id, 1, GETPID) == getpid(), "GETPID");
    unsigned short vals[2] = {7, 9};
    u.array = vals;
    CHECK(semctl(id, 0, SETALL, u) == 0 && semctl(id, 1, GETVAL) == 9, "SETALL/GETVAL");
    struct sembuf nowait = {0, -8, IPC_NOWAIT};
    CHECK(semop(id, &nowait, 1) == -1 && errno == EAGAIN, "IPC_NOWAIT");
    struct semid_ds ds;
    u.buf = &ds;
    CHECK(semctl(id, 0, IPC_STAT, u) == 0 && ds.sem_nsems == 2 && ds.sem_perm.uid == 0 &&
              (ds.sem_perm.mode & 0777) == 0600,
          "sem IPC_STAT");
    CHECK(semctl(id, 0, IPC_RMID) == 0, "sem IPC_RMID");
    CHECK(semctl(id, 0, GETVAL) == -1 && (errno == EINVAL || errno == EIDRM), "sem gone");
    printf("ok sem\n");
}

struct msg {
    long type;
    char text[32];
};

static int msg_child(int id) {
    struct msg m;
    /* Blocks until the parent sends type 2. */
    if (msgrcv(id, &m, sizeof m.text, 2, 0) < 0 || strcmp(m.text, "two") != 0)
        return 40;
    m.type = 3;
    strcpy(m.text, "three");
    return msgsnd(id, &m, sizeof m.text, 0) == 0 ? 0 : 41;
}

static void msg(void) {
    int id = msgget(IPC_PRIVATE, 0600);
    CHECK(id >= 0, "msgget");
    pid_t c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0)
        _exit(msg_child(id));
    struct msg m = {1, "one"};
    CHECK(msgsnd(id, &m, sizeof m.text, 0) == 0, "msgsnd 1");
    m.type = 2;
    strcpy(m.text, "two");
    CHECK(msgsnd(id, &m, sizeof m.text, 0) == 0, "msgsnd 2");
    CHECK(msgrcv(id, &m, sizeof m.text, 3, 0) >= 0 && strcmp(m.text, "three") == 0, "msgrcv 3");
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "msg child");
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0 && ds.msg_qnum == 1 && ds.msg_lspid == c &&
              ds.msg_lrpid == getpid() && ds.msg_perm.uid == 0,
          "msg IPC_STAT");
    CHECK(msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT) >= 0 && m.type == 1, "msgrcv 1");
    CHECK(msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT) == -1 && errno == ENOMSG, "ENOMSG");
    CHECK(msgctl(id, IPC_RMID, NULL) == 0, "msg IPC_RMID");
    printf("ok msg\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 2 && strcmp(argv[1], "find") == 0) {
        int id = shmget((key_t)strtol(argv[2], NULL, 0), 0, 0);
        if (id < 0) {
            printf("shmget: errno %d\n", errno);
            return 0;
        }
        char *p = shmat(id, NULL, SHM_RDONLY);
        printf("found: %s\n", p == (void *)-1 ? "(no attach)" : p);
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "give") == 0) {
        int id = shmget((key_t)strtol(argv[2], NULL, 0), 4096, IPC_CREAT | 0600);
        struct shmid_ds ds;
        CHECK(id >= 0 && shmctl(id, IPC_STAT, &ds) == 0, "shmget/IPC_STAT");
        ds.shm_perm.uid = 0;
        ds.shm_perm.gid = 0;
        ds.shm_perm.mode = 0666;
        CHECK(shmctl(id, IPC_SET, &ds) == 0, "IPC_SET");
        CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_perm.uid == 0, "IPC_STAT");
        printf("given\n");
        return 0;
    }
    shm();
    sem();
    msg();
    return 0;
}
