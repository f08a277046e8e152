/* The suites a Check test binary runs: each binary's suites.c lists them. */
#ifndef KEEL_TEST_SUITES_H
#define KEEL_TEST_SUITES_H

#include <check.h>

typedef struct keel_test_suite {
    const char *name;
    Suite *(*make)(void);
} keel_test_suite;

/* The binary's suites, ending with {NULL, NULL}. */
const keel_test_suite *keel_test_suites(void);

#endif
