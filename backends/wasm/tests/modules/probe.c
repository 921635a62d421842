/* A C program built with clang + wasi-libc: args, env, cwd-relative and absolute files,
 * a directory bind mount, a read-only one, and a file bind mount. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

static void cat(const char *path) {
    FILE *f = fopen(path, "r");
    char buf[256] = {0};
    if (!f) { printf("%s: cannot open: %s\n", path, strerror(errno)); return; }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    while (n && buf[n - 1] == '\n') buf[--n] = 0;
    printf("%s: %s\n", path, buf);
    fclose(f);
}

static void put(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) { printf("write %s: refused\n", path); return; }
    fputs("from wasm\n", f);
    printf("write %s: %s\n", path, fclose(f) == 0 ? "ok" : "failed");
}

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    const char *g = getenv("GREETING");
    printf("GREETING=%s\n", g ? g : "(unset)");
    cat("/in.txt");
    cat("rel.txt");
    cat("/etc/hostfile");
    put("/out.txt");
    put("/data/new.txt");
    put("/ro/new.txt");
    return argc > 1 ? atoi(argv[argc - 1]) : 0;
}
