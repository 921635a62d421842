/* The test programs' one check: on failure, say what and where, and end with 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c, what)                                                      \
    do {                                                                    \
        if (!(c)) {                                                         \
            printf("FAIL %s (line %d, errno %d)\n", what, __LINE__, errno); \
            exit(1);                                                        \
        }                                                                   \
    } while (0)
