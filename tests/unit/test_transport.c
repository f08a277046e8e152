/* src/transport: backoff schedule and credential loading (no server needed). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/proto.h"
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

/* An async call to a port where nothing listens: the callback runs once, on the transport's
 * thread, with UNAVAILABLE; a blocking call from inside a callback is refused, not deadlocked. */
typedef struct unreachable_result {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int rc, nested_rc;
    int grpc_status;
    bool response_null;
} unreachable_result;

static keel_transport *unreachable_t;

static void on_unreachable(void *userdata, int rc, ProtobufCMessage *response,
                           ProtobufCMessage *partial, const keel_error *err)
{
    unreachable_result *r = userdata;
    (void)partial;
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    int nested = keel_transport_call(
        unreachable_t, (keel_rpc){KEEL_WORKFLOW_SERVICE, "GetSystemInfo"}, (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__get_system_info_response__descriptor, &resp, NULL,
        NULL);
    pthread_mutex_lock(&r->mu);
    r->calls++;
    r->rc = rc;
    r->nested_rc = nested;
    r->grpc_status = err->grpc_status;
    r->response_null = response == NULL;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

START_TEST(async_call_to_a_closed_port_reports_unavailable)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    o.address = "127.0.0.1:1";
    o.tls = KEEL_TLS_OFF;
    ck_assert_int_eq(keel_transport_new(&unreachable_t, &o, NULL), KEEL_OK);
    unreachable_result r = {.calls = 0};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    keel_call_options co = {.timeout_ms = 5000, .retry = false};
    keel_error err;
    ck_assert_int_eq(keel_transport_call_async(
                         unreachable_t, (keel_rpc){KEEL_WORKFLOW_SERVICE, "GetSystemInfo"},
                         (ProtobufCMessage *)&req,
                         &temporal__api__workflowservice__v1__get_system_info_response__descriptor,
                         &co, on_unreachable, &r, &err),
                     KEEL_OK);
    pthread_mutex_lock(&r.mu);
    while (r.calls == 0)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    ck_assert_int_eq(r.rc, KEEL_EUNAVAILABLE);
    ck_assert_int_eq(r.grpc_status, 14);
    ck_assert(r.response_null);
    ck_assert_int_eq(r.nested_rc, KEEL_EINTERNAL);
    /* A bad namespace is refused before anything starts: no callback. */
    co.namespace = "bad\nname";
    ck_assert_int_eq(keel_transport_call_async(
                         unreachable_t, (keel_rpc){KEEL_WORKFLOW_SERVICE, "GetSystemInfo"},
                         (ProtobufCMessage *)&req,
                         &temporal__api__workflowservice__v1__get_system_info_response__descriptor,
                         &co, on_unreachable, &r, &err),
                     KEEL_EINVAL);
    keel_transport_free(unreachable_t);
    ck_assert_int_eq(r.calls, 1);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
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
    tcase_add_test(tc, async_call_to_a_closed_port_reports_unavailable);
    suite_add_tcase(s, tc);
    return s;
}
