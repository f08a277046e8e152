/*
 * Credentials over real TLS: tests/support/tls-proxy puts nginx in front of the dev stack's
 * Temporal frontend (TLS on 7443, mutual TLS on 7444, TLS plus an API key check on 7445, TLS with
 * a GOAWAY after every third request on 7446), so a
 * call that gets through is answered by the real server. KEEL_TLS_PROXY_DIR names the proxy's
 * directory, which holds the certificates.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

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

/* A whole file into a new string. */
static char *slurp_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *buf = NULL;
    size_t n = 0, cap = 0, got;
    do {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Connect with a profile from `file` (no TEMPORAL_* environment at all, HOME under build/). */
static int system_info_with_profile(const char *file, const char *profile, keel_error *err)
{
    static const char *const env[] = {"HOME=build/tests/profile-it/home", NULL};
    keel_profile_load_options lo = KEEL_PROFILE_LOAD_OPTIONS_INIT;
    lo.config_file = file;
    lo.profile = profile;
    lo.environment = env;
    lo.strict = true;
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_client_profile *p;
    int rc = keel_connect_options_from_profile(&o, &lo, &p, err);
    ck_assert_msg(rc == KEEL_OK, "%s", err->message);
    o.rpc_timeout_ms = 1500;
    rc = system_info(&o, err);
    keel_client_profile_free(p);
    return rc;
}

START_TEST(profile_file_with_inline_pem_for_mtls_and_an_api_key)
{
    paths();
    mkdir("build/tests", 0755);
    mkdir("build/tests/profile-it", 0755);
    const char *file = "build/tests/profile-it/tls.toml";
    char *ca_pem = slurp_file(ca), *cert_pem = slurp_file(cert), *key_pem = slurp_file(key);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    /* PEM text inline in multi-line strings (basic and literal). */
    fprintf(f,
            "[profile.mtls]\naddress = \"127.0.0.1:7444\"\n"
            "[profile.mtls.tls]\nserver_name = \"" SERVER_NAME "\"\n"
            "server_ca_cert_data = \"\"\"\n%s\"\"\"\n"
            "client_cert_data = \"\"\"\n%s\"\"\"\n"
            "client_key_data = '''\n%s'''\n"
            "[profile.no_client_cert]\naddress = \"127.0.0.1:7444\"\n"
            "tls = { server_name = \"" SERVER_NAME "\", server_ca_cert_path = \"%s\" }\n"
            "[profile.api_key]\naddress = \"127.0.0.1:7445\"\napi_key = \"keel-test-key\"\n"
            "[profile.api_key.tls]\nserver_name = \"" SERVER_NAME "\"\n"
            "server_ca_cert_path = \"%s\"\n"
            "[profile.api_key.grpc_meta]\nx_keel_profile = \"tls-suite\"\n"
            "[profile.api_key_tls_off]\naddress = \"127.0.0.1:7445\"\napi_key = \"keel-test-key\"\n"
            "tls.disabled = true\n",
            ca_pem, cert_pem, key_pem, ca, ca);
    fclose(f);
    free(ca_pem);
    free(cert_pem);
    free(key_pem);

    keel_error err;
    ck_assert_msg(system_info_with_profile(file, "mtls", &err) == KEEL_OK, "%s", err.message);
    /* Without the client certificate the proxy refuses: the inline one was what got through. */
    ck_assert_int_ne(system_info_with_profile(file, "no_client_cert", &err), KEEL_OK);
    /* An API key turns TLS on by itself; grpc_meta headers travel along. */
    char log[600];
    snprintf(log, sizeof log, "%s/access.log", getenv("KEEL_TLS_PROXY_DIR"));
    char *before = slurp_file(log);
    size_t logged = strlen(before);
    free(before);
    ck_assert_msg(system_info_with_profile(file, "api_key", &err) == KEEL_OK, "%s", err.message);
    char *seen = slurp_file(log); /* the proxy logs the header's value; look at the new lines */
    ck_assert_msg(strstr(seen + logged, "x-keel-profile=\"tls-suite\"") != NULL,
                  "the grpc_meta header is not in the new lines of %s", log);
    free(seen);
    /* tls.disabled = true: plaintext to a TLS port fails. */
    ck_assert_int_ne(system_info_with_profile(file, "api_key_tls_off", &err), KEEL_OK);
}
END_TEST

/* ---- GOAWAY: nginx on 7446 ends every connection after its third request ---- */

typedef struct goaway_caller {
    keel_client *client;
    int ok, failed;
    keel_error last;
} goaway_caller;

static void *goaway_calls(void *arg)
{
    goaway_caller *g = arg;
    for (int i = 0; i < 5; i++) {
        keel_system_info info;
        if (keel_client_system_info(g->client, &info, &g->last) == KEEL_OK) {
            keel_system_info_dispose(&info);
            g->ok++;
        } else {
            g->failed++;
        }
    }
    return NULL;
}

/* The distinct connections the proxy's access log shows on port 7446 from line `from` on. */
static int connections_on_7446(long from)
{
    char path[600];
    snprintf(path, sizeof path, "%s/access.log", getenv("KEEL_TLS_PROXY_DIR"));
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    long seen[256];
    int n = 0;
    char line[2048];
    for (long i = 0; fgets(line, sizeof line, f); i++) {
        const char *p = strstr(line, "port=7446 conn=");
        if (i < from || p == NULL)
            continue;
        long id = atol(p + strlen("port=7446 conn="));
        bool dup = false;
        for (int j = 0; j < n; j++)
            dup |= seen[j] == id;
        if (!dup && n < 256)
            seen[n++] = id;
    }
    fclose(f);
    return n;
}

static long access_log_lines(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/access.log", getenv("KEEL_TLS_PROXY_DIR"));
    FILE *f = fopen(path, "r");
    long n = 0;
    int ch;
    while (f && (ch = fgetc(f)) != EOF)
        n += ch == '\n';
    if (f)
        fclose(f);
    return n;
}

START_TEST(calls_move_to_a_new_connection_after_goaway)
{
    keel_connect_options o = tls_to("127.0.0.1:7446");
    o.rpc_timeout_ms = 10000;
    long from = access_log_lines();
    keel_client *c;
    keel_error err;
    ck_assert_msg(keel_client_new(&c, &o, &err) == KEEL_OK, "%s", err.message);
    /* One after another: a GOAWAY after every third, each next call on a new connection. */
    goaway_caller one = {.client = c};
    goaway_calls(&one);
    goaway_calls(&one);
    ck_assert_msg(one.failed == 0, "%d calls failed: %s", one.failed, one.last.message);
    /* Eight threads at once: streams past a GOAWAY's last stream go to the next connection. */
    goaway_caller many[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        many[i] = (goaway_caller){.client = c};
        ck_assert_int_eq(pthread_create(&th[i], NULL, goaway_calls, &many[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(many[i].failed == 0, "%d calls failed: %s", many[i].failed,
                      many[i].last.message);
        ck_assert_int_eq(many[i].ok, 5);
    }
    keel_client_free(c);
    /* 50 calls, at most three per connection. */
    int conns = connections_on_7446(from);
    ck_assert_msg(conns >= 17, "50 calls used only %d connections", conns);
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
    tcase_add_test(tc, profile_file_with_inline_pem_for_mtls_and_an_api_key);
    tcase_add_test(tc, calls_move_to_a_new_connection_after_goaway);
    suite_add_tcase(s, tc);
    return s;
}
