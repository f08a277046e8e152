/*
 * Credentials over real TLS: tests/support/tls-proxy puts nginx in front of the dev stack's
 * Temporal frontend (TLS on 7443, mutual TLS on 7444, TLS plus an API key check on 7445), so a
 * call that gets through is answered by the real server. KEEL_TLS_PROXY_DIR names the proxy's
 * directory, which holds the certificates.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/keel.h"

#define SERVER_NAME "keel-test.local"

static char ca[512], other_ca[512], cert[512], key[512], other_cert[512], other_key[512];

static void paths(void)
{
    const char *dir = getenv("KEEL_TLS_PROXY_DIR");
    ck_assert_msg(dir != NULL, "KEEL_TLS_PROXY_DIR is not set (make test-integration sets it)");
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(other_ca, sizeof other_ca, "%s/other-ca.pem", dir);
    snprintf(cert, sizeof cert, "%s/client.pem", dir);
    snprintf(key, sizeof key, "%s/client-key.pem", dir);
    snprintf(other_cert, sizeof other_cert, "%s/other-client.pem", dir);
    snprintf(other_key, sizeof other_key, "%s/other-client-key.pem", dir);
}

static keel_connect_options tls_to(const char *address)
{
    paths();
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    o.address = address;
    o.tls = KEEL_TLS_ON;
    o.tls_ca_path = ca;
    o.tls_server_name = SERVER_NAME;
    o.rpc_timeout_ms = 1500;
    return o;
}

/* GetSystemInfo with these options; returns the keel code, fills err. */
static int system_info(const keel_connect_options *o, keel_error *err)
{
    keel_client *c;
    int rc = keel_client_new(&c, o, err);
    if (rc != KEEL_OK)
        return rc;
    keel_system_info info;
    rc = keel_client_system_info(c, &info, err);
    if (rc == KEEL_OK) {
        ck_assert_uint_gt(strlen(info.server_version), 0);
        keel_system_info_dispose(&info);
    }
    keel_client_free(c);
    return rc;
}

START_TEST(tls_with_the_right_ca_and_name)
{
    keel_connect_options o = tls_to("127.0.0.1:7443");
    keel_error err;
    ck_assert_msg(system_info(&o, &err) == KEEL_OK, "%s", err.message);
}
END_TEST

START_TEST(tls_checks_the_server_name)
{
    /* The certificate names only keel-test.local, not the address we dial. */
    keel_connect_options o = tls_to("127.0.0.1:7443");
    o.tls_server_name = NULL;
    keel_error err;
    ck_assert_int_eq(system_info(&o, &err), KEEL_EUNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err.message, "127.0.0.1:7443"));
    ck_assert_msg(strstr(err.message, "peer certificate") != NULL, "%s", err.message);
}
END_TEST

START_TEST(tls_rejects_a_server_signed_by_another_ca)
{
    keel_connect_options o = tls_to("127.0.0.1:7443");
    o.tls_ca_path = other_ca;
    keel_error err;
    ck_assert_int_eq(system_info(&o, &err), KEEL_EUNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err.message, "GetSystemInfo"));
}
END_TEST

START_TEST(plaintext_to_a_tls_port_fails)
{
    keel_connect_options o = tls_to("127.0.0.1:7443");
    o.tls = KEEL_TLS_OFF;
    o.tls_ca_path = NULL;
    o.tls_server_name = NULL;
    keel_error err;
    ck_assert_int_ne(system_info(&o, &err), KEEL_OK);
    ck_assert_ptr_nonnull(strstr(err.message, "127.0.0.1:7443"));
}
END_TEST

START_TEST(mtls_with_a_trusted_client_certificate)
{
    keel_connect_options o = tls_to("127.0.0.1:7444");
    o.tls_cert_path = cert;
    o.tls_key_path = key;
    keel_error err;
    ck_assert_msg(system_info(&o, &err) == KEEL_OK, "%s", err.message);
}
END_TEST

START_TEST(mtls_refuses_no_or_untrusted_client_certificates)
{
    keel_connect_options o = tls_to("127.0.0.1:7444");
    keel_error err;
    ck_assert_int_ne(system_info(&o, &err), KEEL_OK);
    ck_assert_ptr_nonnull(strstr(err.message, "127.0.0.1:7444"));

    o.tls_cert_path = other_cert;
    o.tls_key_path = other_key;
    ck_assert_int_ne(system_info(&o, &err), KEEL_OK);
    ck_assert_ptr_nonnull(strstr(err.message, "127.0.0.1:7444"));
}
END_TEST

START_TEST(api_key_is_sent_as_a_bearer_token)
{
    keel_connect_options o = tls_to("127.0.0.1:7445");
    o.api_key = "keel-test-key";
    keel_error err;
    ck_assert_msg(system_info(&o, &err) == KEEL_OK, "%s", err.message);
}
END_TEST

START_TEST(wrong_or_missing_api_key_is_unauthenticated)
{
    keel_connect_options o = tls_to("127.0.0.1:7445");
    o.api_key = "not-the-key";
    keel_error err;
    ck_assert_int_eq(system_info(&o, &err), KEEL_EDENIED);
    ck_assert_int_eq(err.grpc_status, 16);
    ck_assert(!err.retryable);
    ck_assert_ptr_nonnull(strstr(err.message, "UNAUTHENTICATED"));
    ck_assert_ptr_null(strstr(err.message, "not-the-key")); /* the key is never echoed */

    o.api_key = NULL;
    ck_assert_int_eq(system_info(&o, &err), KEEL_EDENIED);
}
END_TEST

START_TEST(environment_configures_api_key_and_tls)
{
    paths();
    /* TLS is not switched on explicitly: the API key implies it. */
    setenv("TEMPORAL_ADDRESS", "127.0.0.1:7445", 1);
    setenv("TEMPORAL_API_KEY", "keel-test-key", 1);
    setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", ca, 1);
    setenv("TEMPORAL_TLS_SERVER_NAME", SERVER_NAME, 1);
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    ck_assert(keel_connect_options_use_tls(&o));
    ck_assert_msg(system_info(&o, &err) == KEEL_OK, "%s", err.message);
    unsetenv("TEMPORAL_ADDRESS");
    unsetenv("TEMPORAL_API_KEY");
    unsetenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH");
    unsetenv("TEMPORAL_TLS_SERVER_NAME");
}
END_TEST

Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("credentials");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, tls_with_the_right_ca_and_name);
    tcase_add_test(tc, tls_checks_the_server_name);
    tcase_add_test(tc, tls_rejects_a_server_signed_by_another_ca);
    tcase_add_test(tc, plaintext_to_a_tls_port_fails);
    tcase_add_test(tc, mtls_with_a_trusted_client_certificate);
    tcase_add_test(tc, mtls_refuses_no_or_untrusted_client_certificates);
    tcase_add_test(tc, api_key_is_sent_as_a_bearer_token);
    tcase_add_test(tc, wrong_or_missing_api_key_is_unauthenticated);
    tcase_add_test(tc, environment_configures_api_key_and_tls);
    suite_add_tcase(s, tc);
    return s;
}
