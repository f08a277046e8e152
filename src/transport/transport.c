/* transport - unary gRPC calls to a Temporal frontend over gRPC C core. */
#include "transport/transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "client/options.h"
#include "google/rpc/status.pb-c.h"
#include "keel/version.h"
#include "proto/depth.h"
#include "util/strbuf.h"

struct keel_transport {
    grpc_channel *channel;
    char *address;
    char *namespace;
    char *identity;
    char *authorization;  /* "Bearer <key>", or NULL */
    keel_header *headers; /* a profile's grpc_meta: names and values owned */
    size_t n_headers;
    int64_t rpc_timeout_ms;
    /* temporal_request*, temporal_long_request* (NULL: metrics off) */
    keel_metric *requests, *failures, *latency, *long_requests, *long_failures, *long_latency;
};

/* Backoff jitter: an xorshift state per thread, so that threads sharing a transport need no lock.
 * Seeded lazily from the clock, the pid and the state's own address (which differs per thread). */
static _Thread_local uint32_t jitter_state;

/* Keepalive as the Go SDK does it: a ping every 30 s, 15 s to answer, also when idle. The server
 * sends GOAWAY to clients that ping more often than every 10 s. */
#define KEEPALIVE_TIME_MS    30000
#define KEEPALIVE_TIMEOUT_MS 15000

#define PEM_MAX_BYTES (1024 * 1024)

/* A retry is not started with less time than this left. */
#define MIN_ATTEMPT_MS 100

struct keel_call_cancel {
    pthread_mutex_t mu;
    grpc_call *call; /* the call in flight, or NULL */
    bool triggered;
};

keel_call_cancel *keel_call_cancel_new(void)
{
    keel_call_cancel *c = calloc(1, sizeof *c);
    if (c)
        pthread_mutex_init(&c->mu, NULL);
    return c;
}

void keel_call_cancel_trigger(keel_call_cancel *c)
{
    pthread_mutex_lock(&c->mu);
    c->triggered = true;
    if (c->call)
        grpc_call_cancel(c->call, NULL);
    pthread_mutex_unlock(&c->mu);
}

bool keel_call_cancel_triggered(keel_call_cancel *c)
{
    pthread_mutex_lock(&c->mu);
    bool t = c->triggered;
    pthread_mutex_unlock(&c->mu);
    return t;
}

void keel_call_cancel_free(keel_call_cancel *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Register the call so that a trigger can reach it; false when already triggered. */
static bool cancel_attach(keel_call_cancel *c, grpc_call *call)
{
    if (c == NULL)
        return true;
    pthread_mutex_lock(&c->mu);
    bool ok = !c->triggered;
    if (ok)
        c->call = call;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void cancel_detach(keel_call_cancel *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->call = NULL;
    pthread_mutex_unlock(&c->mu);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* PEM text given in memory (a profile's *_data): copied, and checked like a file's. */
static int copy_pem(const char *data, const char *what, char **out, keel_error *err)
{
    *out = NULL;
    size_t n = strlen(data);
    if (n > PEM_MAX_BYTES)
        return keel_error_set(err, KEEL_EINVAL, "%s data is larger than %d bytes", what,
                              PEM_MAX_BYTES);
    if (strstr(data, "-----BEGIN ") == NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s data is not PEM text", what);
    *out = strdup(data);
    if (*out == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory copying %s", what);
    return KEEL_OK;
}

/* Read a PEM file named by an option. `what` names the option in the error. */
static int read_pem(const char *path, const char *what, char **out, keel_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return keel_error_set(err, KEEL_EIO, "cannot open %s '%s': %s", what, path,
                              strerror(errno));
    char *buf = malloc(PEM_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory reading %s", what);
    }
    size_t n = fread(buf, 1, PEM_MAX_BYTES + 1, f);
    int read_failed = ferror(f);
    fclose(f);
    if (read_failed) {
        free(buf);
        return keel_error_set(err, KEEL_EIO, "cannot read %s '%s'", what, path);
    }
    if (n > PEM_MAX_BYTES) {
        free(buf);
        return keel_error_set(err, KEEL_EINVAL, "%s '%s' is larger than %d bytes", what, path,
                              PEM_MAX_BYTES);
    }
    buf[n] = '\0';
    if (strlen(buf) != n || strstr(buf, "-----BEGIN ") == NULL) {
        free(buf);
        return keel_error_set(err, KEEL_EINVAL, "%s '%s' is not a PEM file", what, path);
    }
    *out = buf;
    return KEEL_OK;
}

static int make_credentials(const keel_connect_options *opts, grpc_channel_credentials **out,
                            keel_error *err)
{
    if (!keel_connect_options_use_tls(opts)) {
        *out = grpc_insecure_credentials_create();
        return KEEL_OK;
    }
    char *ca = NULL, *cert = NULL, *key = NULL;
    int rc = KEEL_OK;
    if (opts->tls_ca_path)
        rc = read_pem(opts->tls_ca_path, "server CA certificate", &ca, err);
    else if (opts->tls_ca_data)
        rc = copy_pem(opts->tls_ca_data, "server CA certificate", &ca, err);
    if (rc == KEEL_OK && opts->tls_cert_path)
        rc = read_pem(opts->tls_cert_path, "client certificate", &cert, err);
    else if (rc == KEEL_OK && opts->tls_cert_data)
        rc = copy_pem(opts->tls_cert_data, "client certificate", &cert, err);
    if (rc == KEEL_OK && opts->tls_key_path)
        rc = read_pem(opts->tls_key_path, "client key", &key, err);
    else if (rc == KEEL_OK && opts->tls_key_data)
        rc = copy_pem(opts->tls_key_data, "client key", &key, err);
    if (rc == KEEL_OK) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
        /* NULL roots: gRPC's default roots (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH or its bundle). */
        *out = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
        if (*out == NULL)
            rc = keel_error_set(err, KEEL_EINVAL, "gRPC refused the TLS credentials");
    }
    free(ca);
    free(cert);
    keel_secret_free(key);
    return rc;
}

static char *default_identity(void)
{
    char host[256] = "unknown-host";
    if (gethostname(host, sizeof host - 1) != 0)
        strcpy(host, "unknown-host");
    host[sizeof host - 1] = '\0';
    char buf[300];
    snprintf(buf, sizeof buf, "%ld@%s", (long)getpid(), host);
    return strdup(buf);
}

/* gRPC core logs connection trouble to stderr on its own (hpack errors, handshake failures).
 * keel reports the outcome of every call in its keel_error, so that output is noise to a user of
 * keelctl or the worker; it stays on when the user asked gRPC for it (GRPC_VERBOSITY or
 * GRPC_TRACE). The log function is process-wide, so it is installed once. */
static void drop_grpc_log(gpr_log_func_args *args)
{
    (void)args;
}

static void quiet_grpc_logs(void)
{
    if (getenv("GRPC_VERBOSITY") == NULL && getenv("GRPC_TRACE") == NULL)
        gpr_set_log_function(drop_grpc_log);
}

int keel_transport_new(keel_transport **out, const keel_connect_options *given, keel_error *err)
{
    static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;
    pthread_once(&quiet_once, quiet_grpc_logs);
    *out = NULL;
    int rc = keel_connect_options_validate(given, err);
    if (rc != KEEL_OK)
        return rc;
    keel_connect_options copy;
    keel_connect_options_upgrade(given, &copy); /* validate accepted its version */
    const keel_connect_options *opts = &copy;

    grpc_init();
    keel_transport *t = calloc(1, sizeof *t);
    if (t == NULL) {
        grpc_shutdown();
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the transport");
    }
    t->address = strdup(opts->address);
    t->namespace = strdup(opts->namespace_);
    t->identity = opts->identity ? strdup(opts->identity) : default_identity();
    t->rpc_timeout_ms = opts->rpc_timeout_ms;
    if (opts->api_key) {
        size_t n = strlen(opts->api_key) + sizeof "Bearer ";
        t->authorization = malloc(n);
        if (t->authorization)
            snprintf(t->authorization, n, "Bearer %s", opts->api_key);
    }
    bool headers_ok = true;
    if (opts->n_headers > 0) {
        t->headers = calloc(opts->n_headers, sizeof *t->headers);
        headers_ok = t->headers != NULL;
        for (size_t i = 0; headers_ok && i < opts->n_headers; i++) {
            t->headers[i].name = strdup(opts->headers[i].name);
            t->headers[i].value = strdup(opts->headers[i].value);
            t->n_headers = i + 1;
            headers_ok = t->headers[i].name && t->headers[i].value;
        }
    }
    if (!t->address || !t->namespace || !t->identity || (opts->api_key && !t->authorization) ||
        !headers_ok) {
        keel_transport_free(t);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the transport");
    }

    grpc_channel_credentials *creds = NULL;
    rc = make_credentials(opts, &creds, err);
    if (rc != KEEL_OK) {
        keel_transport_free(t);
        return rc;
    }

    char user_agent[] = KEEL_CLIENT_NAME "/" KEEL_VERSION;
    grpc_arg args[6];
    size_t nargs = 0;
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                               .value.integer = KEEL_MAX_RECEIVE_BYTES};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = GRPC_ARG_KEEPALIVE_TIME_MS,
                               .value.integer = KEEPALIVE_TIME_MS};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               .value.integer = KEEPALIVE_TIMEOUT_MS};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                               .value.integer = 1};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_STRING,
                               .key = GRPC_ARG_PRIMARY_USER_AGENT_STRING,
                               .value.string = user_agent};
    if (opts->tls_server_name && keel_connect_options_use_tls(opts))
        args[nargs++] = (grpc_arg){.type = GRPC_ARG_STRING,
                                   .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                                   .value.string = (char *)opts->tls_server_name};
    grpc_channel_args channel_args = {.num_args = nargs, .args = args};

    t->channel = grpc_channel_create(t->address, creds, &channel_args);
    grpc_channel_credentials_release(creds);
    if (t->channel == NULL) {
        keel_transport_free(t);
        return keel_error_set(err, KEEL_EINVAL, "cannot create a gRPC channel to '%s'",
                              opts->address);
    }
    *out = t;
    return KEEL_OK;
}

void keel_transport_free(keel_transport *t)
{
    if (t == NULL)
        return;
    if (t->channel)
        grpc_channel_destroy(t->channel);
    free(t->address);
    free(t->namespace);
    free(t->identity);
    keel_secret_free(t->authorization);
    for (size_t i = 0; i < t->n_headers; i++) {
        free((char *)t->headers[i].name);
        keel_secret_free((char *)t->headers[i].value);
    }
    free(t->headers);
    free(t);
    grpc_shutdown();
}

const char *keel_transport_address(const keel_transport *t)
{
    return t->address;
}

const char *keel_transport_identity(const keel_transport *t)
{
    return t->identity;
}

const char *keel_transport_namespace(const keel_transport *t)
{
    return t->namespace;
}

void keel_transport_set_metrics(keel_transport *t, keel_metrics *m)
{
    static const char *const labels[] = {"namespace", "operation"};
    static const char *const fail_labels[] = {"namespace", "operation", "status_code"};
    keel_error e;
    t->requests = keel_metrics_counter(m, "temporal_request_total",
                                       "RPCs made to the Temporal frontend (long polls apart).",
                                       labels, 2, &e);
    t->failures =
        keel_metrics_counter(m, "temporal_request_failure_total",
                             "RPCs that failed, by gRPC status code.", fail_labels, 3, &e);
    t->latency = keel_metrics_histogram(
        m, "temporal_request_latency_seconds", "RPC latency, per attempt, in seconds.", labels, 2,
        keel_metrics_latency_buckets, keel_metrics_n_latency_buckets, &e);
    t->long_requests =
        keel_metrics_counter(m, "temporal_long_request_total",
                             "Long polls made to the Temporal frontend.", labels, 2, &e);
    t->long_failures =
        keel_metrics_counter(m, "temporal_long_request_failure_total",
                             "Long polls that failed, by gRPC status code.", fail_labels, 3, &e);
    t->long_latency = keel_metrics_histogram(
        m, "temporal_long_request_latency_seconds", "Long poll latency, in seconds.", labels, 2,
        keel_metrics_latency_buckets, keel_metrics_n_latency_buckets, &e);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One attempt's metrics. The status code is gRPC's name for it ("UNAVAILABLE"); failures that
 * are not the server's (an undecodable answer, a cancelled call) count under their keel code. */
static void record_attempt(const keel_transport *t, const char *method, const char *namespace,
                           double started, int rc, const keel_error *e)
{
    if (t->requests == NULL && t->long_requests == NULL)
        return;
    bool poll = strncmp(method, "Poll", 4) == 0;
    const char *v[] = {namespace ? namespace : t->namespace, method, NULL};
    keel_metric_add(poll ? t->long_requests : t->requests, v, 1);
    keel_metric_observe(poll ? t->long_latency : t->latency, v, mono_s() - started);
    if (rc != KEEL_OK) {
        v[2] =
            e->grpc_status > 0 ? keel_grpc_status_name(e->grpc_status) : keel_error_code_name(rc);
        keel_metric_add(poll ? t->long_failures : t->failures, v, 1);
    }
}

int64_t keel_transport_backoff_ms(int attempt, int64_t budget_ms, uint32_t random)
{
    int64_t cap = budget_ms / 10;
    if (cap < 200)
        cap = 200;
    int64_t d = 200;
    for (int i = 1; i < attempt && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    /* +/-20 %: random maps onto [-d/5, +d/5]. */
    int64_t span = d / 5;
    return d - span + (int64_t)(random % (uint32_t)(2 * span + 1));
}

static uint32_t next_jitter(void)
{
    uint32_t x = jitter_state;
    if (x == 0)
        x = ((uint32_t)now_ms() ^ ((uint32_t)getpid() << 16) ^ (uint32_t)(uintptr_t)&jitter_state) |
            1u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    jitter_state = x;
    return x;
}

/* ---- one attempt ---- */

static grpc_metadata md(const char *key, const char *value)
{
    grpc_metadata m;
    memset(&m, 0, sizeof m);
    m.key = grpc_slice_from_static_string(key);
    m.value = grpc_slice_from_copied_string(value);
    return m;
}

/* The short name of a typed error detail: "type.googleapis.com/a.b.NotFoundFailure" ->
 * "NotFoundFailure". */
static void detail_type(const char *type_url, char *out, size_t outsz)
{
    const char *slash = strrchr(type_url, '/');
    const char *full = slash ? slash + 1 : type_url;
    const char *dot = strrchr(full, '.');
    snprintf(out, outsz, "%s", dot ? dot + 1 : full);
}

void keel_transport_status_detail(const uint8_t *data, size_t n, keel_error *err)
{
    Google__Rpc__Status *st = NULL;
    if (keel_proto_unpack(&google__rpc__status__descriptor, data, n, (ProtobufCMessage **)&st,
                          NULL) != KEEL_OK)
        return;
    if (st->n_details > 0 && st->details[0]->type_url)
        detail_type(st->details[0]->type_url, err->failure_type, sizeof err->failure_type);
    google__rpc__status__free_unpacked(st, NULL);
}

/* Pull the typed error detail out of grpc-status-details-bin, if the server sent one. */
static void read_status_details(const grpc_metadata_array *trailers, keel_error *err)
{
    for (size_t i = 0; i < trailers->count; i++) {
        const grpc_metadata *m = &trailers->metadata[i];
        if (grpc_slice_str_cmp(m->key, "grpc-status-details-bin") != 0)
            continue;
        keel_transport_status_detail(GRPC_SLICE_START_PTR(m->value), GRPC_SLICE_LENGTH(m->value),
                                     err);
        return;
    }
}

static grpc_byte_buffer *encode(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

int keel_transport_decode(const uint8_t *data, size_t n, const ProtobufCMessageDescriptor *type,
                          ProtobufCMessage **out, ProtobufCMessage **partial, const char *what,
                          keel_error *err)
{
    keel_error why;
    bool too_deep = false;
    *out = NULL;
    int rc = keel_proto_check(type, data, n, KEEL_PROTO_MAX_DEPTH, &too_deep, &why);
    if (rc == KEEL_OK && (*out = protobuf_c_message_unpack(type, NULL, n, data)) == NULL)
        rc = keel_error_set(&why, KEEL_EINVAL, "not a valid %s", type->name);
    if (rc != KEEL_OK && too_deep && partial != NULL &&
        keel_proto_unpack_pruned(type, data, n, partial, NULL, NULL) != KEEL_OK)
        *partial = NULL;
    if (rc != KEEL_OK)
        return keel_error_set(err, KEEL_EPROTOCOL, "%s: the response (%zu bytes) is refused: %s",
                              what, n, why.message);
    return KEEL_OK;
}

/* The response's bytes, through keel_transport_decode(). */
static int decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *type,
                  ProtobufCMessage **out, ProtobufCMessage **partial, const char *what,
                  keel_error *err)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return keel_error_set(err, KEEL_EPROTOCOL, "%s: cannot read the response", what);
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    int rc = keel_transport_decode(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), type, out,
                                   partial, what, err);
    grpc_slice_unref(s);
    return rc;
}

/* One attempt. err is never NULL here: keel_transport_call() supplies its own when needed. */
static int call_once(keel_transport *t, const char *path, const char *what,
                     const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                     ProtobufCMessage **partial, int64_t timeout_ms, const char *namespace,
                     keel_call_cancel *cancel, keel_error *err)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice method = grpc_slice_from_copied_string(path);
    grpc_call *call = grpc_channel_create_call(t->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               method, NULL, deadline, NULL);
    grpc_slice_unref(method);

    grpc_metadata stack_meta[8];
    grpc_metadata *meta = stack_meta;
    if (t->n_headers + 4 > sizeof stack_meta / sizeof stack_meta[0]) {
        meta = calloc(t->n_headers + 4, sizeof *meta);
        if (meta == NULL) {
            grpc_call_unref(call);
            grpc_completion_queue_shutdown(cq);
            while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
            grpc_completion_queue_destroy(cq);
            return keel_error_set(err, KEEL_ENOMEM, "out of memory for %s's headers", what);
        }
    }
    size_t nmeta = 0;
    /* A profile's grpc_meta first; keel's own headers (which validate keeps out of it) after. */
    for (size_t i = 0; i < t->n_headers; i++)
        meta[nmeta++] = md(t->headers[i].name, t->headers[i].value);
    meta[nmeta++] = md("client-name", KEEL_CLIENT_NAME);
    meta[nmeta++] = md("client-version", KEEL_VERSION);
    if (namespace)
        meta[nmeta++] = md("temporal-namespace", namespace);
    if (t->authorization)
        meta[nmeta++] = md("authorization", t->authorization);

    grpc_byte_buffer *req = encode(request);
    grpc_byte_buffer *resp = NULL;
    grpc_metadata_array initial, trailers;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailers);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = nmeta;
    ops[0].data.send_initial_metadata.metadata = meta;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailers;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    int rc = KEEL_OK;
    void *tag = (void *)call;
    grpc_call_error ce;
    if (!cancel_attach(cancel, call)) {
        rc = keel_error_set(err, KEEL_ECANCELLED, "%s: cancelled", what);
    } else if ((ce = grpc_call_start_batch(call, ops, 6, tag, NULL)) != GRPC_CALL_OK) {
        rc = keel_error_set(err, KEEL_EINTERNAL, "%s: gRPC refused to start the call (error %d)",
                            what, (int)ce);
    } else {
        grpc_event ev =
            grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
            rc = keel_error_set(err, KEEL_EINTERNAL, "%s: the gRPC batch did not complete", what);
        } else if (status != GRPC_STATUS_OK) {
            char *msg = grpc_slice_to_c_string(details);
            rc = keel_error_set(err, keel_error_code_from_grpc(status), "%s failed: %s: %s", what,
                                keel_grpc_status_name(status),
                                msg[0] ? msg : (error_string ? error_string : "(no message)"));
            err->grpc_status = status;
            err->retryable = keel_grpc_status_retryable(status, msg, false);
            read_status_details(&trailers, err);
            gpr_free(msg);
        } else if (resp == NULL) {
            rc = keel_error_set(err, KEEL_EPROTOCOL, "%s: the server sent OK without a response",
                                what);
        } else {
            rc = decode(resp, response_type, response, partial, what, err);
        }
    }

    cancel_detach(cancel);
    for (size_t i = 0; i < nmeta; i++)
        grpc_slice_unref(meta[i].value);
    if (meta != stack_meta)
        free(meta);
    grpc_byte_buffer_destroy(req);
    if (resp)
        grpc_byte_buffer_destroy(resp);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailers);
    grpc_slice_unref(details);
    if (error_string)
        gpr_free((void *)error_string);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return rc;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int keel_transport_call(keel_transport *t, keel_rpc rpc, const ProtobufCMessage *request,
                        const ProtobufCMessageDescriptor *response_type,
                        ProtobufCMessage **response, const keel_call_options *opts, keel_error *err)
{
    *response = NULL;
    keel_call_options o = {.retry = true};
    if (opts)
        o = *opts;
    if (o.partial)
        *o.partial = NULL;
    int64_t budget = o.timeout_ms > 0 ? o.timeout_ms : t->rpc_timeout_ms;

    char path[256], what[256];
    int n = snprintf(path, sizeof path, "/%s/%s", rpc.service, rpc.method);
    if (n < 0 || (size_t)n >= sizeof path)
        return keel_error_set(err, KEEL_EINVAL, "RPC name too long: %s", rpc.method);
    snprintf(what, sizeof what, "%s to %s", rpc.method, t->address);
    if (o.namespace && !keel_header_value_ok(o.namespace))
        return keel_error_set(err, KEEL_EINVAL,
                              "%s: namespace '%s' has a character a gRPC header cannot carry "
                              "(only printable ASCII)",
                              what, o.namespace);

    int64_t start = now_ms();
    keel_error local;
    keel_error *e = err ? err : &local;
    for (int attempt = 1;; attempt++) {
        int64_t left = budget - (now_ms() - start);
        if (left < 1)
            left = 1;
        double started = mono_s();
        e->grpc_status = KEEL_NO_GRPC_STATUS;
        int rc = call_once(t, path, what, request, response_type, response, o.partial, left,
                           o.namespace, o.cancel, e);
        record_attempt(t, rpc.method, o.namespace, started, rc, e);
        if (rc == KEEL_OK)
            return KEEL_OK;
        if (o.cancel && keel_call_cancel_triggered(o.cancel)) {
            /* However the call ended, it ended because it was abandoned. */
            e->code = KEEL_ECANCELLED;
            e->retryable = false;
            return KEEL_ECANCELLED;
        }
        if (!o.retry || !e->retryable)
            return rc;
        int64_t delay = keel_transport_backoff_ms(attempt, budget, next_jitter());
        /* An attempt with almost no time left can only end in DEADLINE_EXCEEDED, which would
         * hide the real cause: give up with the last real error instead. */
        if (now_ms() + delay - start >= budget - MIN_ATTEMPT_MS) {
            /* Out of time: say so, keeping the last status for the caller. */
            size_t len = strlen(e->message);
            snprintf(e->message + len, sizeof e->message - len,
                     " (gave up after %d attempts in %lld ms)", attempt,
                     (long long)(now_ms() - start));
            return rc;
        }
        sleep_ms(delay);
    }
}
