/* src/transport: backoff schedule, credential loading, and the answer path of a call fed
 * hand-made HTTP/2 bytes (keel_transport_answer_bytes; no server needed). */
#include <check.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "google/rpc/status.pb-c.h"
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

/* ---- answers as a server sends them: a tiny HTTP/2 frame writer (RFC 9113 §4.1; HPACK literal
 * header fields without indexing, no Huffman: RFC 7541 §6.2.2) ---- */

typedef struct h2out {
    uint8_t b[4096];
    size_t n;
} h2out;

enum { H2_DATA = 0, H2_HEADERS = 1, H2_SETTINGS = 4 };
enum { H2_END_STREAM = 0x1, H2_END_HEADERS = 0x4 };

static void put(h2out *o, const void *p, size_t n)
{
    ck_assert_uint_le(o->n + n, sizeof o->b);
    if (n > 0)
        memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void h2_frame(h2out *o, uint8_t type, uint8_t flags, uint32_t stream, const void *payload,
                     size_t n)
{
    uint8_t hd[9] = {(uint8_t)(n >> 16),
                     (uint8_t)(n >> 8),
                     (uint8_t)n,
                     type,
                     flags,
                     (uint8_t)(stream >> 24),
                     (uint8_t)(stream >> 16),
                     (uint8_t)(stream >> 8),
                     (uint8_t)stream};
    put(o, hd, sizeof hd);
    put(o, payload, n);
}

/* A string with a 7-bit length prefix (RFC 7541 §5.1, §5.2). */
static void hpack_string(h2out *o, const char *s, size_t n)
{
    uint8_t b = n < 127 ? (uint8_t)n : 127;
    put(o, &b, 1);
    for (size_t rest = n - b; b == 127; rest >>= 7) {
        b = rest >= 128 ? (uint8_t)(0x80 | (rest & 0x7f)) : (uint8_t)rest;
        put(o, &b, 1);
        if (rest < 128)
            break;
    }
    put(o, s, n);
}

/* HEADERS on stream 1 with fields "name", "value", ..., NULL. */
static void h2_headers(h2out *o, uint8_t flags, ...)
{
    h2out block = {.n = 0};
    va_list ap;
    va_start(ap, flags);
    for (const char *name; (name = va_arg(ap, const char *)) != NULL;) {
        const char *value = va_arg(ap, const char *);
        uint8_t literal = 0x00;
        put(&block, &literal, 1);
        hpack_string(&block, name, strlen(name));
        hpack_string(&block, value, strlen(value));
    }
    va_end(ap);
    h2_frame(o, H2_HEADERS, flags | H2_END_HEADERS, 1, block.b, block.n);
}

/* DATA on stream 1 holding one gRPC message. */
static void h2_message(h2out *o, uint8_t flags, uint8_t compressed, const char *msg)
{
    h2out body = {.n = 0};
    size_t n = strlen(msg);
    uint8_t prefix[5] = {compressed, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                         (uint8_t)n};
    put(&body, prefix, sizeof prefix);
    put(&body, msg, n);
    h2_frame(o, H2_DATA, flags, 1, body.b, body.n);
}

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = '\0';
}

static const keel_rpc get_system_info = {KEEL_WORKFLOW_SERVICE, "GetSystemInfo"};

/* The answer's outcome fed at once, then fed a byte at a time: the same both ways. */
static int answer(const h2out *o, uint8_t **msg, size_t *len, keel_error *err)
{
    int rc = keel_transport_answer_bytes(get_system_info, o->b, o->n, 0, msg, len, err);
    uint8_t *msg1;
    size_t len1;
    keel_error err1;
    int rc1 = keel_transport_answer_bytes(get_system_info, o->b, o->n, 1, &msg1, &len1, &err1);
    ck_assert_int_eq(rc1, rc);
    ck_assert_uint_eq(len1, *len);
    if (rc == KEEL_OK) {
        ck_assert_mem_eq(msg1, *msg, *len);
    } else {
        ck_assert_ptr_null(*msg);
        ck_assert_ptr_null(msg1);
        ck_assert_str_eq(err1.message, err->message);
        ck_assert_int_eq(err1.grpc_status, err->grpc_status);
    }
    free(msg1);
    return rc;
}

START_TEST(answer_ok_gives_the_message)
{
    h2out o = {.n = 0};
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, 0, ":status", "200", "content-type", "application/grpc", NULL);
    h2_message(&o, 0, 0, "\x0a\x05hello");
    h2_headers(&o, H2_END_STREAM, "grpc-status", "0", NULL);
    uint8_t *msg;
    size_t len;
    keel_error err;
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_OK);
    ck_assert_uint_eq(len, 7);
    ck_assert_mem_eq(msg, "\x0a\x05hello", 7);
    free(msg);

    /* The same answer cut before its trailers: the deadline ends it. */
    o.n -= 9 + 1 + 1 + strlen("grpc-status") + 1 + 1;
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_ETIMEOUT);
    ck_assert_int_eq(err.grpc_status, 4);
    ck_assert_ptr_nonnull(strstr(err.message, "GetSystemInfo"));
}
END_TEST

START_TEST(answer_trailers_only_not_found_names_the_failure)
{
    Google__Protobuf__Any detail = GOOGLE__PROTOBUF__ANY__INIT;
    detail.type_url = "type.googleapis.com/temporal.api.errordetails.v1.NamespaceNotFoundFailure";
    Google__Protobuf__Any *details[] = {&detail};
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.code = 5;
    st.message = "Namespace nope is not found.";
    st.n_details = 1;
    st.details = details;
    uint8_t packed[256];
    size_t n = google__rpc__status__pack(&st, packed);
    ck_assert_uint_lt(n, 150);
    char b64[256];
    base64(packed, n, b64);
    h2out o = {.n = 0};
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, H2_END_STREAM, ":status", "200", "content-type", "application/grpc",
               "grpc-status", "5", "grpc-message", "Namespace%20nope%20is%20not%20found.",
               "grpc-status-details-bin", b64, NULL);
    uint8_t *msg;
    size_t len;
    keel_error err;
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_ENOTFOUND);
    ck_assert_int_eq(err.code, KEEL_ENOTFOUND);
    ck_assert_int_eq(err.grpc_status, 5);
    ck_assert_str_eq(err.failure_type, "NamespaceNotFoundFailure");
    ck_assert(!err.retryable);
    ck_assert_ptr_nonnull(strstr(err.message, "GetSystemInfo"));
    ck_assert_ptr_nonnull(strstr(err.message, "NOT_FOUND"));
    ck_assert_ptr_nonnull(strstr(err.message, "Namespace nope is not found."));
}
END_TEST

START_TEST(answer_http_401_page_is_unauthenticated)
{
    h2out o = {.n = 0};
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, 0, ":status", "401", "content-type", "text/html", NULL);
    const char *page = "<html><body><h1>401 Authorization Required</h1></body></html>";
    h2_frame(&o, H2_DATA, H2_END_STREAM, 1, page, strlen(page));
    uint8_t *msg;
    size_t len;
    keel_error err;
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_EDENIED);
    ck_assert_int_eq(err.grpc_status, 16);
    ck_assert_str_eq(err.failure_type, "");
    ck_assert_ptr_nonnull(strstr(err.message, "GetSystemInfo"));
    ck_assert_ptr_nonnull(strstr(err.message, "UNAUTHENTICATED"));
    ck_assert_ptr_nonnull(strstr(err.message, "HTTP status 401"));
}
END_TEST

/* A page that never ends (a body without END_STREAM) is not read to the end, nor waited for
 * until the deadline: the headers decide, and the stream is reset. */
START_TEST(answer_endless_error_page_is_judged_by_its_headers)
{
    h2out o = {.n = 0};
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, 0, ":status", "401", "content-type", "text/html", NULL);
    const char *page = "<html><body>";
    for (int i = 0; i < 4; i++)
        h2_frame(&o, H2_DATA, 0, 1, page, strlen(page));
    uint8_t *msg;
    size_t len;
    keel_error err;
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_EDENIED);
    ck_assert_int_eq(err.grpc_status, 16);
    ck_assert_ptr_nonnull(strstr(err.message, "HTTP status 401"));

    /* 200, but not gRPC: UNKNOWN, also without the rest of the body. */
    o.n = 0;
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, 0, ":status", "200", "content-type", "text/html", NULL);
    h2_frame(&o, H2_DATA, 0, 1, page, strlen(page));
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_EINTERNAL);
    ck_assert_int_eq(err.grpc_status, 2);
    ck_assert_ptr_nonnull(strstr(err.message, "not gRPC"));
}
END_TEST

START_TEST(answer_compressed_message_is_refused)
{
    h2out o = {.n = 0};
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, 0, ":status", "200", "content-type", "application/grpc+proto", NULL);
    h2_message(&o, 0, 1, "\x1f\x8b\x08\x00");
    h2_headers(&o, H2_END_STREAM, "grpc-status", "0", NULL);
    uint8_t *msg;
    size_t len;
    keel_error err;
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_EPROTOCOL);
    ck_assert_int_eq(err.grpc_status, KEEL_NO_GRPC_STATUS);
    ck_assert(!err.retryable);
    ck_assert_ptr_nonnull(strstr(err.message, "GetSystemInfo"));
    ck_assert_ptr_nonnull(strstr(err.message, "compress"));
}
END_TEST

/* A frame that breaks HTTP/2 (DATA on a stream nobody opened): nghttp2 answers GOAWAY and reads
 * no more, so the call in flight ends now, UNAVAILABLE (retried on a new connection), rather than
 * at its deadline. */
START_TEST(answer_broken_http2_ends_the_call_at_once)
{
    h2out o = {.n = 0};
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, 0, ":status", "200", "content-type", "application/grpc", NULL);
    h2_frame(&o, H2_DATA, 0, 2, "x", 1);
    uint8_t *msg;
    size_t len;
    keel_error err;
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_EUNAVAILABLE);
    ck_assert_int_eq(err.grpc_status, 14);
    ck_assert(err.retryable);
    ck_assert_ptr_nonnull(strstr(err.message, "GetSystemInfo"));
    ck_assert_ptr_nonnull(strstr(err.message, "HTTP/2"));

    /* A header field HTTP/2 forbids (an upper-case name): nghttp2 resets the stream, and the call
     * says why, also when the connection breaks in the same read. */
    o.n = 0;
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, 0, ":status", "200", "Content-Type", "application/grpc", NULL);
    h2_frame(&o, H2_DATA, 0, 2, "x", 1);
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_EINTERNAL);
    ck_assert_int_eq(err.grpc_status, 13);
    ck_assert_ptr_nonnull(strstr(err.message, "the server's answer broke HTTP/2"));

    /* An answer keel refused (a message over KEEL_MAX_RECEIVE_BYTES) stays refused when the
     * connection breaks before its reset goes out. */
    o.n = 0;
    h2_frame(&o, H2_SETTINGS, 0, 0, NULL, 0);
    h2_headers(&o, 0, ":status", "200", "content-type", "application/grpc", NULL);
    h2_frame(&o, H2_DATA, 0, 1,
             "\x00\x08\x00\x00\x01"
             "abc",
             8);
    h2_frame(&o, H2_DATA, 0, 2, "x", 1);
    ck_assert_int_eq(answer(&o, &msg, &len, &err), KEEL_EEXHAUSTED);
    ck_assert_int_eq(err.grpc_status, 8);
    ck_assert_ptr_nonnull(strstr(err.message, "134217729"));
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
    tcase_add_test(tc, answer_ok_gives_the_message);
    tcase_add_test(tc, answer_trailers_only_not_found_names_the_failure);
    tcase_add_test(tc, answer_http_401_page_is_unauthenticated);
    tcase_add_test(tc, answer_endless_error_page_is_judged_by_its_headers);
    tcase_add_test(tc, answer_compressed_message_is_refused);
    tcase_add_test(tc, answer_broken_http2_ends_the_call_at_once);
    suite_add_tcase(s, tc);
    return s;
}
