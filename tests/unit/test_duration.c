/* src/converter/duration.c */
#include <check.h>
#include <string.h>

#include "keel/duration.h"

static int64_t parse_ok(const char *s)
{
    int64_t ms = -1;
    keel_error err;
    ck_assert_msg(keel_duration_parse(s, &ms, &err) == KEEL_OK, "%s: %s", s, err.message);
    return ms;
}

START_TEST(parses_units_and_sums)
{
    ck_assert_int_eq(parse_ok("0"), 0);
    ck_assert_int_eq(parse_ok("250ms"), 250);
    ck_assert_int_eq(parse_ok("10s"), 10000);
    ck_assert_int_eq(parse_ok("1.5s"), 1500);
    ck_assert_int_eq(parse_ok("0.001s"), 1);
    ck_assert_int_eq(parse_ok("72h"), 72LL * 3600 * 1000);
    ck_assert_int_eq(parse_ok("1h30m"), 90LL * 60 * 1000);
    ck_assert_int_eq(parse_ok("2d"), 48LL * 3600 * 1000);
    ck_assert_int_eq(parse_ok("1m1s1ms"), 61001);
}
END_TEST

START_TEST(rejects_malformed_text)
{
    const char *bad[] = {"",
                         "10",
                         "s",
                         "-5s",
                         "1x",
                         "1.5",
                         "5 s",
                         "1h junk",
                         ".s",
                         "10sm",
                         "99999999999999999999h",
                         "0.5ms",
                         "0.0001s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 42;
        keel_error err;
        ck_assert_msg(keel_duration_parse(bad[i], &ms, &err) == KEEL_EINVAL, "accepted '%s'",
                      bad[i]);
        ck_assert_int_eq(ms, 42);
        ck_assert(strlen(err.message) > 0);
    }
    keel_error err;
    int64_t ms;
    ck_assert_int_eq(keel_duration_parse(NULL, &ms, &err), KEEL_EINVAL);
}
END_TEST

START_TEST(formats_shortest_exact_form)
{
    char buf[32];
    ck_assert_str_eq(keel_duration_format(0, buf, sizeof buf), "0s");
    ck_assert_str_eq(keel_duration_format(72LL * 3600 * 1000, buf, sizeof buf), "72h");
    ck_assert_str_eq(keel_duration_format(5400000, buf, sizeof buf), "1h30m");
    ck_assert_str_eq(keel_duration_format(1500, buf, sizeof buf), "1.5s");
    ck_assert_str_eq(keel_duration_format(1020, buf, sizeof buf), "1.02s");
    ck_assert_str_eq(keel_duration_format(250, buf, sizeof buf), "250ms");
    ck_assert_str_eq(keel_duration_format(-2000, buf, sizeof buf), "-2s");
    /* format then parse gives the same value back */
    int64_t values[] = {1, 999, 1000, 61001, 3600000, 86400000LL * 400};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        ck_assert_int_eq(parse_ok(keel_duration_format(values[i], buf, sizeof buf)), values[i]);
}
END_TEST

Suite *duration_suite(void)
{
    Suite *s = suite_create("duration");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, parses_units_and_sums);
    tcase_add_test(tc, rejects_malformed_text);
    tcase_add_test(tc, formats_shortest_exact_form);
    suite_add_tcase(s, tc);
    return s;
}
