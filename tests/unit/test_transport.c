/* src/transport: backoff schedule and credential loading (no server needed). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/transport.h"

START_TEST(backoff_doubles_to_a_tenth_of_the_budget_with_jitter)
{
    /* budget 10 s: 200, 400, 800, then capped at 1000 ms; +/-20 %. */
    int64_t expect[] = {200, 400, 800, 1000, 1000, 1000};
    for (int attempt = 1; attempt <= 6; attempt++) {
        int64_t base = expect[attempt - 1];
        for (uint32_t r = 0; r < 2000; r += 97) {
            int64_t d = keel_transport_backoff_ms(attempt, 10000, r * 2654435761u);
            ck_assert_int_ge(d, base - base / 5);
            ck_assert_int_le(d, base + base / 5);
        }
    }
    /* A tiny budget still waits the minimum rather than spinning. */
    ck_assert_int_ge(keel_transport_backoff_ms(5, 100, 0), 160);
    /* Many attempts do not overflow. */
    ck_assert_int_le(keel_transport_backoff_ms(1000, 60000, 7), 7200);
}
END_TEST

static keel_connect_options tls_options(void)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    o.address = "127.0.0.1:1";
    o.tls = KEEL_TLS_ON;
    return o;
}

START_TEST(missing_ca_file_is_named)
{
    keel_connect_options o = tls_options();
    o.tls_ca_path = "/nonexistent/keel-ca.pem";
    keel_transport *t = (keel_transport *)1;
    keel_error err;
    ck_assert_int_eq(keel_transport_new(&t, &o, &err), KEEL_EIO);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/keel-ca.pem"));
    ck_assert_ptr_nonnull(strstr(err.message, "server CA certificate"));
}
END_TEST

START_TEST(non_pem_file_is_rejected)
{
    char path[] = "/tmp/keel-test-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    keel_connect_options o = tls_options();
    o.tls_cert_path = path;
    o.tls_key_path = path;
    keel_transport *t;
    keel_error err;
    ck_assert_int_eq(keel_transport_new(&t, &o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "not a PEM file"));
    ck_assert_ptr_nonnull(strstr(err.message, path));
    unlink(path);
}
END_TEST

START_TEST(transport_keeps_its_settings)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    char address[] = "127.0.0.1:7233";
    o.address = address;
    o.namespace_ = "ns1";
    o.identity = "me@here";
    o.api_key = "k";
    o.tls = KEEL_TLS_OFF;
    keel_transport *t;
    ck_assert_int_eq(keel_transport_new(&t, &o, NULL), KEEL_OK);
    address[0] = 'X'; /* the transport keeps its own copy */
    ck_assert_str_eq(keel_transport_address(t), "127.0.0.1:7233");
    ck_assert_str_eq(keel_transport_namespace(t), "ns1");
    ck_assert_str_eq(keel_transport_identity(t), "me@here");
    keel_transport_free(t);

    o.identity = NULL;
    o.address = "127.0.0.1:7233";
    ck_assert_int_eq(keel_transport_new(&t, &o, NULL), KEEL_OK);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld@", (long)getpid());
    ck_assert_ptr_eq(strstr(keel_transport_identity(t), pid), keel_transport_identity(t));
    keel_transport_free(t);
    keel_transport_free(NULL);
}
END_TEST

Suite *transport_suite(void)
{
    Suite *s = suite_create("transport");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, backoff_doubles_to_a_tenth_of_the_budget_with_jitter);
    tcase_add_test(tc, missing_ca_file_is_named);
    tcase_add_test(tc, non_pem_file_is_rejected);
    tcase_add_test(tc, transport_keeps_its_settings);
    suite_add_tcase(s, tc);
    return s;
}
