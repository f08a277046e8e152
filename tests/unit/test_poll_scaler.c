/* src/worker/poll_scaler.c: the poll target moves with the server's decisions, within bounds. */
#include <check.h>

#include "keel/error.h"
#include "worker/poll_scaler.h"

START_TEST(initial_is_clamped_into_the_bounds)
{
    keel_poll_scaler s;
    keel_poll_scaler_init(&s, 2, 1, 6);
    ck_assert_int_eq(s.target, 2);
    keel_poll_scaler_init(&s, 2, 9, 6);
    ck_assert_int_eq(s.target, 6);
    keel_poll_scaler_init(&s, 0, 0, 0); /* never below one poll */
    ck_assert_int_eq(s.target, 1);
    ck_assert_int_eq(s.max, 1);
}
END_TEST

START_TEST(growth_needs_growing_intake)
{
    keel_poll_scaler s;
    keel_poll_scaler_init(&s, 1, 2, 10);
    /* The first period: no period before it to compare with yet. */
    keel_poll_scaler_result(&s, true, true, 1, 1000);
    ck_assert_int_eq(s.target, 2);
    /* The period before took in more than its own predecessor (1 > 0): growth is allowed
     * throughout this one. */
    keel_poll_scaler_result(&s, true, true, 1, 1100);
    ck_assert_int_eq(s.target, 3);
    keel_poll_scaler_result(&s, true, true, 1, 1150);
    ck_assert_int_eq(s.target, 4);
    keel_poll_scaler_result(&s, true, true, 1, 1200); /* 2 after 1: still growing */
    ck_assert_int_eq(s.target, 5);
    /* 1 after 2: the intake no longer grows, so suggestions to grow are ignored. */
    keel_poll_scaler_result(&s, true, true, 1, 1300);
    ck_assert_int_eq(s.target, 5);
    /* Shrinking is always taken; never below min. */
    keel_poll_scaler_result(&s, true, true, -9, 1310);
    ck_assert_int_eq(s.target, 1);
    ck_assert_int_eq(s.peak, 5);
}
END_TEST

START_TEST(growth_stops_at_max)
{
    keel_poll_scaler s;
    keel_poll_scaler_init(&s, 1, 4, 5);
    s.scale_up_allowed = true;
    s.period = 10;
    keel_poll_scaler_result(&s, true, true, 3, 1050);
    ck_assert_int_eq(s.target, 5);
}
END_TEST

START_TEST(empty_polls_and_errors_lower_the_target)
{
    keel_poll_scaler s;
    keel_poll_scaler_init(&s, 1, 8, 10);
    keel_poll_scaler_result(&s, false, false, 0, 1000); /* no decision ever seen: kept */
    ck_assert_int_eq(s.target, 8);
    keel_poll_scaler_result(&s, true, true, -1, 1000);
    ck_assert_int_eq(s.target, 7);
    keel_poll_scaler_result(&s, false, false, 0, 2000); /* empty poll: one fewer */
    ck_assert_int_eq(s.target, 6);
    keel_poll_scaler_error(&s, KEEL_EEXHAUSTED); /* halved */
    ck_assert_int_eq(s.target, 3);
    keel_poll_scaler_error(&s, KEEL_EUNAVAILABLE);
    ck_assert_int_eq(s.target, 2);
    keel_poll_scaler_error(&s, KEEL_EEXHAUSTED);
    keel_poll_scaler_error(&s, KEEL_EEXHAUSTED);
    ck_assert_int_eq(s.target, 1);
}
END_TEST

Suite *poll_scaler_suite(void)
{
    Suite *s = suite_create("poll_scaler");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, initial_is_clamped_into_the_bounds);
    tcase_add_test(tc, growth_needs_growing_intake);
    tcase_add_test(tc, growth_stops_at_max);
    tcase_add_test(tc, empty_polls_and_errors_lower_the_target);
    suite_add_tcase(s, tc);
    return s;
}
