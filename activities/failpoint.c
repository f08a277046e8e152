/*
 * activities/failpoint.c - test-only crash points (see failpoint.h).
 */
#include "activities/failpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void keel_failpoint(const char *name)
{
    const char *fp = getenv("KEEL_FAILPOINT");
    if (fp && strcmp(fp, name) == 0) {
        fprintf(stderr, "keel: failpoint %s: exiting as if killed\n", name);
        _exit(137);
    }
}
