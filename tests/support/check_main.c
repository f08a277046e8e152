/*
 * The main() of every Check test binary: runs the suites the binary was linked with.
 *
 * Each test file defines `Suite *<name>_suite(void)` and lists itself in the binary's suite
 * table through KEEL_TEST_SUITES (tests/support/suites.h). Usage: <binary> [SUITE [TEST]]
 * to run one suite or one test; CK_FORK=no runs without forking (for a debugger).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "suites.h"

/* Tests never read the user's Temporal client configuration (~/.config/temporalio/temporal.toml,
 * TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE), nor do the keelctl and keel-worker processes they
 * start: the default profile file is looked for in an empty directory under build/. */
static void hermetic_client_config(void)
{
    char cwd[4096], dir[4200];
    if (getcwd(cwd, sizeof cwd) == NULL)
        snprintf(cwd, sizeof cwd, "/nonexistent");
    snprintf(dir, sizeof dir, "%s/build/tests/xdg-config", cwd);
    setenv("XDG_CONFIG_HOME", dir, 1);
    unsetenv("TEMPORAL_CONFIG_FILE");
    unsetenv("TEMPORAL_PROFILE");
}

int main(int argc, char **argv)
{
    hermetic_client_config();
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
