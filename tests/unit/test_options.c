/* src/client/options.c: defaults, the TEMPORAL_* environment, validation. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "keel/keel.h"

static const char *vars[] = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

static keel_connect_options defaults(void)
{
    keel_connect_options o;
    ck_assert_int_eq(keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION), KEEL_OK);
    return o;
}

START_TEST(defaults_are_local_plaintext)
{
    keel_connect_options o = defaults();
    ck_assert_str_eq(o.address, "localhost:7233");
    ck_assert_str_eq(o.namespace_, "default");
    ck_assert_int_eq(o.rpc_timeout_ms, 10000);
    ck_assert(!keel_connect_options_use_tls(&o));
    ck_assert_int_eq(keel_connect_options_validate(&o, NULL), KEEL_OK);
    ck_assert_int_eq(keel_connect_options_init(&o, 99), KEEL_EINVAL);
}
END_TEST

START_TEST(environment_overrides_defaults)
{
    clear_env();
    setenv("TEMPORAL_ADDRESS", "temporal.example:7233", 1);
    setenv("TEMPORAL_NAMESPACE", "procurement", 1);
    setenv("TEMPORAL_TLS_SERVER_NAME", "frontend.example", 1);
    keel_connect_options o = defaults();
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    ck_assert_str_eq(o.address, "temporal.example:7233");
    ck_assert_str_eq(o.namespace_, "procurement");
    ck_assert_str_eq(o.tls_server_name, "frontend.example");
    ck_assert(keel_connect_options_use_tls(&o)); /* a TLS setting implies TLS */
    clear_env();
}
END_TEST

START_TEST(empty_variables_count_as_unset)
{
    clear_env();
    setenv("TEMPORAL_ADDRESS", "", 1);
    keel_connect_options o = defaults();
    ck_assert_int_eq(keel_connect_options_from_env(&o, NULL), KEEL_OK);
    ck_assert_str_eq(o.address, "localhost:7233");
    clear_env();
}
END_TEST

START_TEST(api_key_turns_tls_on_unless_disabled)
{
    clear_env();
    setenv("TEMPORAL_API_KEY", "secret", 1);
    keel_connect_options o = defaults();
    ck_assert_int_eq(keel_connect_options_from_env(&o, NULL), KEEL_OK);
    ck_assert_str_eq(o.api_key, "secret");
    ck_assert(keel_connect_options_use_tls(&o));

    setenv("TEMPORAL_TLS", "false", 1);
    o = defaults();
    ck_assert_int_eq(keel_connect_options_from_env(&o, NULL), KEEL_OK);
    ck_assert(!keel_connect_options_use_tls(&o));
    clear_env();
}
END_TEST

START_TEST(bad_values_name_the_variable_and_change_nothing)
{
    clear_env();
    setenv("TEMPORAL_ADDRESS", "other:7233", 1);
    setenv("TEMPORAL_TLS", "maybe", 1);
    keel_connect_options o = defaults();
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "TEMPORAL_TLS"));
    ck_assert_ptr_nonnull(strstr(err.message, "maybe"));
    ck_assert_str_eq(o.address, "localhost:7233");

    /* A half mTLS pair is read as it is (a flag may complete it) and refused by validate. */
    setenv("TEMPORAL_TLS", "true", 1);
    setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", "/tmp/cert.pem", 1);
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "TEMPORAL_TLS_CLIENT_KEY_PATH"));
    o.tls_key_path = "/tmp/key.pem";
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_OK);

    /* PEM text in the environment: a path and data for the same thing is ambiguous. */
    clear_env();
    setenv("TEMPORAL_TLS_CLIENT_CERT_DATA", "-----BEGIN CERTIFICATE-----", 1);
    setenv("TEMPORAL_TLS_CLIENT_KEY_DATA", "-----BEGIN PRIVATE KEY-----", 1);
    o = defaults();
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    ck_assert_ptr_nonnull(o.tls_cert_data);
    ck_assert(keel_connect_options_use_tls(&o));
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_OK);
    o.tls_cert_path = "/tmp/cert.pem";
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "both as a path and as data"));
    clear_env();
}
END_TEST

START_TEST(validation_catches_contradictions)
{
    keel_connect_options o = defaults();
    keel_error err;
    o.address = "localhost";
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "no port"));
    o = defaults();
    o.tls = KEEL_TLS_OFF;
    o.tls_ca_path = "/tmp/ca.pem";
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    o = defaults();
    o.rpc_timeout_ms = 0;
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    o = defaults();
    o.namespace_ = "";
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_connect_options_validate(NULL, &err), KEEL_EINVAL);
}
END_TEST

START_TEST(addresses_need_a_real_port)
{
    const char *good[] = {"localhost:7233",
                          "127.0.0.1:1",
                          "[::1]:7233",
                          "h:65535",
                          "dns:///temporal.example:7233",
                          "unix:/run/temporal.sock"};
    const char *bad[] = {"localhost:abc", "localhost:", ":7233",     "h:0",
                         "h:65536",       "h:123456",   "[::1:7233x"};
    keel_error err;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        keel_connect_options o = defaults();
        o.address = good[i];
        ck_assert_msg(keel_connect_options_validate(&o, &err) == KEEL_OK, "%s: %s", good[i],
                      err.message);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_connect_options o = defaults();
        o.address = bad[i];
        ck_assert_msg(keel_connect_options_validate(&o, &err) == KEEL_EINVAL, "accepted %s",
                      bad[i]);
        ck_assert_ptr_nonnull(strstr(err.message, bad[i]));
    }
}
END_TEST

START_TEST(header_values_must_be_printable_ascii)
{
    keel_connect_options o = defaults();
    keel_error err;
    o.namespace_ = "caf\xc3\xa9";
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "namespace"));
    o = defaults();
    o.api_key = "sekrit-key\n";
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "API key"));
    ck_assert_ptr_null(strstr(err.message, "sekrit")); /* never echoed */
    ck_assert(keel_header_value_ok("Bearer abc-123_XYZ.~"));
    ck_assert(!keel_header_value_ok("a\tb"));
    ck_assert(!keel_header_value_ok("\x7f"));
}
END_TEST

/* Each options struct's *_INIT macro is its *_init() function as a static initializer: a program
 * that uses one gets what the other gives (the macros once set only the version, which left a
 * connection with no RPC timeout and a worker with no sticky cache). */
START_TEST(init_macros_match_init_functions)
{
    keel_connect_options c = KEEL_CONNECT_OPTIONS_INIT, ci;
    ck_assert_int_eq(keel_connect_options_init(&ci, KEEL_CONNECT_OPTIONS_VERSION), KEEL_OK);
    ck_assert_uint_eq(c.version, ci.version);
    ck_assert_str_eq(c.address, ci.address);
    ck_assert_str_eq(c.namespace_, ci.namespace_);
    ck_assert_ptr_eq(c.identity, ci.identity);
    ck_assert_int_eq(c.tls, ci.tls);
    ck_assert_ptr_eq(c.tls_ca_path, ci.tls_ca_path);
    ck_assert_ptr_eq(c.tls_cert_path, ci.tls_cert_path);
    ck_assert_ptr_eq(c.tls_key_path, ci.tls_key_path);
    ck_assert_ptr_eq(c.tls_server_name, ci.tls_server_name);
    ck_assert_ptr_eq(c.api_key, ci.api_key);
    ck_assert_int_eq(c.rpc_timeout_ms, ci.rpc_timeout_ms);
    keel_error err;
    ck_assert_int_eq(keel_connect_options_validate(&c, &err), KEEL_OK);

    keel_worker_options w = KEEL_WORKER_OPTIONS_INIT, wi;
    ck_assert_int_eq(keel_worker_options_init(&wi, KEEL_WORKER_OPTIONS_VERSION), KEEL_OK);
    ck_assert_uint_eq(w.version, wi.version);
    ck_assert_int_eq(w.workflow_pollers, wi.workflow_pollers);
    ck_assert_int_eq(w.max_concurrent_activities, wi.max_concurrent_activities);
    ck_assert_int_eq(w.max_cached_workflows, wi.max_cached_workflows);
    ck_assert_int_eq(w.shutdown_grace_ms, wi.shutdown_grace_ms);
    ck_assert_int_eq(w.heartbeat_interval_ms, wi.heartbeat_interval_ms);
    ck_assert_ptr_eq(w.identity, wi.identity);
    ck_assert_ptr_eq(w.task_queue, wi.task_queue);

    keel_namespace_register_options n = KEEL_NAMESPACE_REGISTER_OPTIONS_INIT, ni;
    ck_assert_int_eq(
        keel_namespace_register_options_init(&ni, KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION),
        KEEL_OK);
    ck_assert_uint_eq(n.version, ni.version);
    ck_assert_int_eq(n.retention_ms, ni.retention_ms);
    ck_assert_ptr_eq(n.name, ni.name);

    keel_workflow_start_options st = KEEL_WORKFLOW_START_OPTIONS_INIT, sti;
    ck_assert_int_eq(keel_workflow_start_options_init(&sti, KEEL_WORKFLOW_START_OPTIONS_VERSION),
                     KEEL_OK);
    ck_assert_uint_eq(st.version, sti.version);
    ck_assert_int_eq(st.execution_timeout_ms, sti.execution_timeout_ms);
    ck_assert_int_eq(st.id_reuse_policy, sti.id_reuse_policy);
    ck_assert_ptr_eq(st.request_id, sti.request_id);

    keel_schedule_options sc = KEEL_SCHEDULE_OPTIONS_INIT, sci;
    ck_assert_int_eq(keel_schedule_options_init(&sci, KEEL_SCHEDULE_OPTIONS_VERSION), KEEL_OK);
    ck_assert_uint_eq(sc.version, sci.version);
    ck_assert_int_eq(sc.interval_ms, sci.interval_ms);
    ck_assert_int_eq(sc.overlap_policy, sci.overlap_policy);
}
END_TEST

Suite *options_suite(void)
{
    Suite *s = suite_create("options");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults_are_local_plaintext);
    tcase_add_test(tc, environment_overrides_defaults);
    tcase_add_test(tc, empty_variables_count_as_unset);
    tcase_add_test(tc, api_key_turns_tls_on_unless_disabled);
    tcase_add_test(tc, bad_values_name_the_variable_and_change_nothing);
    tcase_add_test(tc, validation_catches_contradictions);
    tcase_add_test(tc, addresses_need_a_real_port);
    tcase_add_test(tc, header_values_must_be_printable_ascii);
    tcase_add_test(tc, init_macros_match_init_functions);
    suite_add_tcase(s, tc);
    return s;
}
