/*
 * The main() of every Check test binary: runs the suites the binary was linked with.
 *
 * Each test file defines `Suite *<name>_suite(void)` and lists itself in the binary's suite
 * table through KEEL_TEST_SUITES (tests/support/suites.h). Usage: <binary> [SUITE [TEST]]
 * to run one suite or one test; CK_FORK=no runs without forking (for a debugger).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"

int main(int argc, char **argv)
{
    SRunner *sr = srunner_create(NULL);
    size_t n = 0;
    for (const keel_test_suite *s = keel_test_suites(); s->name; s++) {
        if (argc > 1 && strcmp(argv[1], s->name) != 0)
            continue;
        srunner_add_suite(sr, s->make());
        n++;
    }
    if (n == 0) {
        srunner_free(sr);
        return 2;
    }
    srunner_run(sr, NULL, argc > 2 ? argv[2] : NULL, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
