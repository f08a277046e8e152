/* src/client/options.c: defaults, the TEMPORAL_* environment, validation. */
#include <check.h>
#include <stdio.h>
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
    ck_assert_ptr_eq(w.deployment_name, wi.deployment_name);
    ck_assert_ptr_eq(w.build_id, wi.build_id);
    ck_assert(w.use_versioning == wi.use_versioning && !w.use_versioning);
    ck_assert_int_eq(w.default_versioning_behavior, wi.default_versioning_behavior);
    ck_assert_int_eq(w.default_versioning_behavior, KEEL_VERSIONING_UNSPECIFIED);
    ck_assert_ptr_eq(w.versioning_overrides, wi.versioning_overrides);
    ck_assert_uint_eq(w.n_versioning_overrides, wi.n_versioning_overrides);
    /* A program built against the options before the deployment fields is refused, not read
     * past its smaller struct. */
    ck_assert_int_eq(keel_worker_options_init(&wi, 1), KEEL_EINVAL);

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

/* ---- Worker Deployment settings ---- */

static int dummy_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)ctx, (void)state, (void)input;
    return KEEL_OK;
}

static int dummy_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)ctx, (void)state, (void)ev;
    return KEEL_OK;
}

START_TEST(versioning_overrides_parse_and_refuse)
{
    keel_versioning_override *o;
    size_t n;
    keel_error err;
    ck_assert_int_eq(keel_versioning_overrides_parse(
                         " keel.Procurement = auto-upgrade , keel.Approval=PINNED,", &o, &n, &err),
                     KEEL_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(o[0].workflow_type, "keel.Procurement");
    ck_assert_int_eq(o[0].behavior, KEEL_VERSIONING_AUTO_UPGRADE);
    ck_assert_str_eq(o[1].workflow_type, "keel.Approval");
    ck_assert_int_eq(o[1].behavior, KEEL_VERSIONING_PINNED);
    keel_versioning_overrides_free(o, n);
    ck_assert_int_eq(keel_versioning_overrides_parse("", &o, &n, &err), KEEL_OK);
    ck_assert_uint_eq(n, 0);
    keel_versioning_overrides_free(o, n);
    ck_assert_int_eq(keel_versioning_overrides_parse(NULL, &o, &n, &err), KEEL_OK);
    ck_assert_ptr_null(o);
    static const struct {
        const char *text, *part;
    } bad[] = {
        {"keel.Approval", "is not TYPE=pinned"},
        {"=pinned", "is not TYPE=pinned"},
        {"keel.Approval=", "is not TYPE=pinned"},
        {"keel.Approval=sometimes", "'sometimes' is not a versioning behaviour"},
        {"keel.Approval=unspecified", "'unspecified' is not a versioning behaviour"},
        {"a=pinned,a=auto-upgrade", "named twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_error_clear(&err);
        ck_assert_int_eq(keel_versioning_overrides_parse(bad[i].text, &o, &n, &err), KEEL_EINVAL);
        ck_assert_msg(strstr(err.message, bad[i].part) != NULL, "%s: %s", bad[i].text, err.message);
        ck_assert_ptr_null(o);
        ck_assert_uint_eq(n, 0);
    }
    /* The cap: KEEL_MAX_VERSIONING_OVERRIDES entries and no more. */
    char text[4096] = "";
    for (int i = 0; i <= KEEL_MAX_VERSIONING_OVERRIDES; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "%st%d=pinned", i ? "," : "", i);
    ck_assert_int_eq(keel_versioning_overrides_parse(text, &o, &n, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "more than 64"));
    *strrchr(text, ',') = '\0';
    ck_assert_int_eq(keel_versioning_overrides_parse(text, &o, &n, &err), KEEL_OK);
    ck_assert_uint_eq(n, KEEL_MAX_VERSIONING_OVERRIDES);
    keel_versioning_overrides_free(o, n);
    keel_versioning_behavior b;
    ck_assert_int_eq(keel_versioning_behavior_parse("auto_upgrade", &b), KEEL_OK);
    ck_assert_int_eq(b, KEEL_VERSIONING_AUTO_UPGRADE);
    ck_assert_str_eq(keel_versioning_behavior_name(b), "auto-upgrade");
    ck_assert_str_eq(keel_versioning_behavior_name(KEEL_VERSIONING_PINNED), "pinned");
}
END_TEST

START_TEST(deployment_names_follow_the_servers_rules)
{
    keel_error err;
    ck_assert_int_eq(keel_deployment_version_check("shop-eu_1", "2026-12-03+abc", &err), KEEL_OK);
    ck_assert_int_eq(keel_deployment_version_check(NULL, NULL, &err), KEEL_OK);
    static const struct {
        const char *name, *build, *part;
    } bad[] = {
        {"shop.eu", "v1", "'.' or ':'"},     {"shop:eu", "v1", "'.' or ':'"},
        {"__shop", "v1", "\"__\""},          {"shop", "__v1", "build id must not start"},
        {"", "v1", "1-255 bytes"},           {"shop", "", "build id must be 1-255"},
        {"sh\top", "v1", "printable ASCII"}, {"shop", "v\xc3\xa9", "printable ASCII"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(keel_deployment_version_check(bad[i].name, bad[i].build, &err),
                         KEEL_EINVAL);
        ck_assert_msg(strstr(err.message, bad[i].part) != NULL, "%zu: %s", i, err.message);
    }
    char long_id[300];
    memset(long_id, 'b', 256);
    long_id[256] = '\0';
    ck_assert_int_eq(keel_deployment_version_check("shop", long_id, &err), KEEL_EINVAL);
    long_id[255] = '\0';
    ck_assert_int_eq(keel_deployment_version_check("shop", long_id, &err), KEEL_OK);
}
END_TEST

START_TEST(a_versioned_worker_resolves_and_needs_a_behaviour_per_type)
{
    keel_workflow_type plain = {.name = "t.Plain", .start = dummy_start, .on_event = dummy_event};
    keel_workflow_type pinned = plain, upgrading = plain;
    pinned.name = "t.Pinned";
    pinned.versioning_behavior = KEEL_VERSIONING_PINNED;
    upgrading.name = "t.Upgrading";
    upgrading.versioning_behavior = KEEL_VERSIONING_AUTO_UPGRADE;
    const keel_workflow_type *const types[] = {&plain, &pinned, &upgrading};
    keel_versioning_override over[] = {{"t.Pinned", KEEL_VERSIONING_AUTO_UPGRADE}};
    keel_worker_options w = KEEL_WORKER_OPTIONS_INIT;
    w.task_queue = "q";
    w.workflows = types;
    w.n_workflows = 3;
    /* Unversioned: nothing is declared. */
    ck_assert_int_eq(keel_worker_options_behavior(&w, &pinned), KEEL_VERSIONING_UNSPECIFIED);
    w.deployment_name = "shop";
    w.build_id = "v1";
    w.use_versioning = true;
    ck_assert_int_eq(keel_worker_options_behavior(&w, &plain), KEEL_VERSIONING_UNSPECIFIED);
    ck_assert_int_eq(keel_worker_options_behavior(&w, &pinned), KEEL_VERSIONING_PINNED);
    w.default_versioning_behavior = KEEL_VERSIONING_PINNED;
    ck_assert_int_eq(keel_worker_options_behavior(&w, &plain), KEEL_VERSIONING_PINNED);
    ck_assert_int_eq(keel_worker_options_behavior(&w, &upgrading), KEEL_VERSIONING_AUTO_UPGRADE);
    w.versioning_overrides = over;
    w.n_versioning_overrides = 1;
    ck_assert_int_eq(keel_worker_options_behavior(&w, &pinned), KEEL_VERSIONING_AUTO_UPGRADE);

    /* keel_worker_new refuses what the server would, before any call. */
    keel_connect_options co;
    keel_connect_options_init(&co, KEEL_CONNECT_OPTIONS_VERSION);
    keel_client *client;
    keel_error err;
    ck_assert_int_eq(keel_client_new(&client, &co, &err), KEEL_OK);
    keel_worker *worker = NULL;
    w.default_versioning_behavior = KEEL_VERSIONING_UNSPECIFIED;
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "t.Plain has no versioning behaviour"), "%s", err.message);
    w.default_versioning_behavior = KEEL_VERSIONING_AUTO_UPGRADE;
    over[0].workflow_type = "t.Missing";
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "t.Missing: no such workflow type"));
    over[0].workflow_type = "t.Pinned";
    w.build_id = NULL;
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "needs a build_id"));
    w.build_id = "v1";
    w.deployment_name = "shop.eu";
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    w.deployment_name = NULL;
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "need a deployment_name"));
    /* Reported only (no use_versioning): no behaviour is needed. */
    w.deployment_name = "shop";
    w.use_versioning = false;
    w.default_versioning_behavior = KEEL_VERSIONING_UNSPECIFIED;
    w.n_versioning_overrides = 0;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    keel_worker_free(worker);
    keel_client_free(client);
}
END_TEST

/* Slots (tasks in hand) and executor threads are apart (options version 4): threads default to
 * KEEL_DEFAULT_WORKFLOW_TASK_THREADS, at most the slots, and more threads than slots are
 * refused. */
START_TEST(workflow_task_threads_are_bounded_by_the_slots)
{
    keel_workflow_type plain = {.name = "t.Plain", .start = dummy_start, .on_event = dummy_event};
    const keel_workflow_type *const types[] = {&plain};
    keel_worker_options w;
    ck_assert_int_eq(keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION), KEEL_OK);
    ck_assert_int_eq(KEEL_WORKER_OPTIONS_VERSION, 4);
    /* A program built against version 3 (slots were threads) is refused. */
    keel_worker_options old;
    ck_assert_int_eq(keel_worker_options_init(&old, 3), KEEL_EINVAL);
    ck_assert_int_eq(w.max_concurrent_workflow_tasks, KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS);
    ck_assert_int_eq(w.workflow_task_threads, 0);
    ck_assert_int_lt(KEEL_DEFAULT_WORKFLOW_TASK_THREADS,
                     KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS);
    w.task_queue = "q";
    w.workflows = types;
    w.n_workflows = 1;
    keel_connect_options co;
    keel_connect_options_init(&co, KEEL_CONNECT_OPTIONS_VERSION);
    keel_client *client;
    keel_error err;
    ck_assert_int_eq(keel_client_new(&client, &co, &err), KEEL_OK);
    keel_worker *worker = NULL;
    keel_worker_stats st;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    keel_worker_get_stats(worker, &st);
    ck_assert_int_eq(st.workflow_task_threads, KEEL_DEFAULT_WORKFLOW_TASK_THREADS);
    ck_assert_int_eq(st.workflow_answers_peak, 0);
    keel_worker_free(worker);
    /* Fewer slots than the default threads: as many threads as slots. */
    w.max_concurrent_workflow_tasks = 2;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    keel_worker_get_stats(worker, &st);
    ck_assert_int_eq(st.workflow_task_threads, 2);
    keel_worker_free(worker);
    w.workflow_task_threads = 3; /* over the slots */
    worker = NULL;
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    ck_assert_ptr_null(worker);
    ck_assert_msg(strstr(err.message, "workflow_task_threads must be 1-max_concurrent_workflow_"
                                      "tasks (2;"),
                  "%s", err.message);
    w.workflow_task_threads = -1;
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    w.max_concurrent_workflow_tasks = 0; /* the default, 64 */
    w.workflow_task_threads = 65;
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    w.max_concurrent_workflow_tasks = 16;
    w.workflow_task_threads = 2;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    keel_worker_get_stats(worker, &st);
    ck_assert_int_eq(st.workflow_task_threads, 2);
    keel_worker_free(worker);
    keel_client_free(client);
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
    tcase_add_test(tc, versioning_overrides_parse_and_refuse);
    tcase_add_test(tc, deployment_names_follow_the_servers_rules);
    tcase_add_test(tc, a_versioned_worker_resolves_and_needs_a_behaviour_per_type);
    tcase_add_test(tc, workflow_task_threads_are_bounded_by_the_slots);
    suite_add_tcase(s, tc);
    return s;
}
