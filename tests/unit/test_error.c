/* src/error.c: gRPC status mapping, retry classification, message handling. */
#include <check.h>
#include <string.h>

#include "keel/error.h"

START_TEST(grpc_status_maps_to_keel_codes)
{
    ck_assert_int_eq(keel_error_code_from_grpc(0), KEEL_OK);
    ck_assert_int_eq(keel_error_code_from_grpc(5), KEEL_ENOTFOUND);
    ck_assert_int_eq(keel_error_code_from_grpc(6), KEEL_EEXISTS);
    ck_assert_int_eq(keel_error_code_from_grpc(4), KEEL_ETIMEOUT);
    ck_assert_int_eq(keel_error_code_from_grpc(14), KEEL_EUNAVAILABLE);
    ck_assert_int_eq(keel_error_code_from_grpc(16), KEEL_EDENIED);
    ck_assert_int_eq(keel_error_code_from_grpc(7), KEEL_EDENIED);
    ck_assert_int_eq(keel_error_code_from_grpc(3), KEEL_EINVAL);
    ck_assert_int_eq(keel_error_code_from_grpc(12), KEEL_EUNIMPLEMENTED);
    ck_assert_int_eq(keel_error_code_from_grpc(13), KEEL_EINTERNAL);
    /* A status from a future gRPC is not OK and not a crash. */
    ck_assert_int_eq(keel_error_code_from_grpc(99), KEEL_EINTERNAL);
    ck_assert_int_eq(keel_error_code_from_grpc(-7), KEEL_EINTERNAL);
}
END_TEST

START_TEST(status_names)
{
    ck_assert_str_eq(keel_grpc_status_name(5), "NOT_FOUND");
    ck_assert_str_eq(keel_grpc_status_name(16), "UNAUTHENTICATED");
    ck_assert_str_eq(keel_grpc_status_name(17), "UNKNOWN_STATUS");
    ck_assert_str_eq(keel_grpc_status_name(-1), "UNKNOWN_STATUS");
    ck_assert_str_eq(keel_error_code_name(KEEL_ENOTFOUND), "ENOTFOUND");
    ck_assert_str_eq(keel_error_code_name(KEEL_EIO), "EIO");
    ck_assert_str_eq(keel_error_code_name(-100), "EUNKNOWN");
    ck_assert_str_eq(keel_error_code_name(3), "EUNKNOWN");
}
END_TEST

START_TEST(retry_classification_follows_the_sdks)
{
    ck_assert(keel_grpc_status_retryable(14, "", false)); /* UNAVAILABLE */
    ck_assert(keel_grpc_status_retryable(10, "", false)); /* ABORTED */
    ck_assert(keel_grpc_status_retryable(2, "", false));  /* UNKNOWN */
    ck_assert(keel_grpc_status_retryable(8, "busy", false));
    ck_assert(
        !keel_grpc_status_retryable(8, "grpc: received message larger than max (5 vs 4)", false));
    ck_assert(keel_grpc_status_retryable(13, "", false));
    ck_assert(!keel_grpc_status_retryable(13, "", true)); /* internal_error_differentiation */
    ck_assert(!keel_grpc_status_retryable(5, "", false));
    ck_assert(!keel_grpc_status_retryable(3, "", false));
    ck_assert(!keel_grpc_status_retryable(6, "", false));
    ck_assert(!keel_grpc_status_retryable(16, "", false));
    ck_assert(!keel_grpc_status_retryable(4, "", false));
}
END_TEST

START_TEST(set_returns_code_and_fills_error)
{
    keel_error err;
    int rc = keel_error_set(&err, KEEL_EINVAL, "bad %s", "thing");
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_int_eq(err.code, KEEL_EINVAL);
    ck_assert_int_eq(err.grpc_status, KEEL_NO_GRPC_STATUS);
    ck_assert(!err.retryable);
    ck_assert_str_eq(err.message, "bad thing");
    ck_assert_int_eq(keel_error_set(NULL, KEEL_EIO, "ignored"), KEEL_EIO);
}
END_TEST

START_TEST(long_messages_say_they_were_cut)
{
    keel_error err;
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    keel_error_set(&err, KEEL_EINVAL, "%s", big);
    size_t n = strlen(err.message);
    ck_assert_uint_eq(n, sizeof err.message - 1);
    ck_assert_str_eq(err.message + n - 3, "...");
}
END_TEST

Suite *error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, grpc_status_maps_to_keel_codes);
    tcase_add_test(tc, status_names);
    tcase_add_test(tc, retry_classification_follows_the_sdks);
    tcase_add_test(tc, set_returns_code_and_fills_error);
    tcase_add_test(tc, long_messages_say_they_were_cut);
    suite_add_tcase(s, tc);
    return s;
}
