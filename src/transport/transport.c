/* transport - unary gRPC calls to a Temporal frontend over gRPC C core. */
#include "transport/transport.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

/* Methods registered with the channel (grpc_channel_register_call) at most; calls to others name
 * their method each time. keel uses about 40. */
#define KEEL_TRANSPORT_MAX_METHODS 128

typedef struct call_ctx call_ctx;

struct registered_method {
    uint32_t hash;
    char *path;
    void *handle;
};

struct keel_transport {
    grpc_channel *channel;
    grpc_completion_queue *cq; /* one for every call, driven by cq_thread */
    pthread_t cq_thread;
    bool cq_thread_started;
    pthread_mutex_t mu;
    pthread_cond_t idle; /* outstanding dropped to 0 while closing */
    /* Under mu: */
    bool closing;
    size_t outstanding; /* calls started whose callback has not yet returned */
    call_ctx *live;     /* attempts with a batch in flight (or about to be) */
    struct registered_method methods[KEEL_TRANSPORT_MAX_METHODS];
    size_t n_methods;
    /* The completion-queue thread's alone: calls waiting to retry. */
    call_ctx *waiting;
    /* The headers every call sends, built once: a profile's grpc_meta first, then keel's own
     * (client-name, client-version, authorization), which validate keeps out of it. */
    grpc_metadata *meta;
    size_t n_meta;
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

/* Debian builds abseil without NDEBUG, so absl::Mutex (which gRPC's locks are) starts in deadlock
 * detection mode kAbort and keeps a lock-order graph up to date on every Lock and Unlock: about 3 %
 * of a busy worker's CPU (issue 13's profile), for a check meant for debugging. No environment
 * variable turns it off; absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore) is the
 * supported switch. It is C++ (and keel has no C++ in its build), so it is found by its mangled
 * name, Debian's inline namespace debian3 included, among the libraries already loaded (gRPC pulls
 * libabsl_synchronization in), and called with kIgnore (0; the enum class is int-sized). Another
 * abseil build names it otherwise: then nothing is done. It runs once, before the first
 * grpc_init(), so that no lock is tracked at all. */
#define ABSL_SET_DEADLOCK_MODE                                                                     \
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE"
static bool deadlock_detector_off;

static void absl_deadlock_detection_off(void)
{
    void *self = dlopen(NULL, RTLD_LAZY);
    void *sym = self ? dlsym(self, ABSL_SET_DEADLOCK_MODE) : NULL;
    if (sym == NULL) {
        /* keel loaded with RTLD_LOCAL (a language binding): look in gRPC's abseil itself. */
        void *lib = dlopen("libabsl_synchronization.so.20220623", RTLD_LAZY | RTLD_NOLOAD);
        if (lib) {
            sym = dlsym(lib, ABSL_SET_DEADLOCK_MODE);
            dlclose(lib);
        }
    }
    if (sym) {
        void (*set_mode)(int);
        memcpy(&set_mode, &sym, sizeof set_mode);
        set_mode(0); /* absl::OnDeadlockCycle::kIgnore */
        deadlock_detector_off = true;
    }
    if (self)
        dlclose(self);
}

bool keel_transport_deadlock_detector_off(void)
{
    return deadlock_detector_off;
}

static void *cq_main(void *arg);
static void cancel_live(keel_transport *t);
static grpc_metadata md(const char *key, const char *value);

static void process_setup(void)
{
    quiet_grpc_logs();
    absl_deadlock_detection_off();
}

int keel_transport_new(keel_transport **out, const keel_connect_options *given, keel_error *err)
{
    /* Before the first grpc_init(): see absl_deadlock_detection_off(). */
    static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
    pthread_once(&setup_once, process_setup);
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
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->idle, NULL);
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
    grpc_arg args[8];
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
    /* keel retries by itself (keel_transport_call's backoff): gRPC's retry filter would only
     * buffer every request (up to 256 KiB) in case it retries. Channelz bookkeeping is unused. */
    args[nargs++] =
        (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0};
    args[nargs++] =
        (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_CHANNELZ, .value.integer = 0};
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
    t->meta = calloc(t->n_headers + 3, sizeof *t->meta);
    if (t->meta == NULL) {
        keel_transport_free(t);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the transport");
    }
    for (size_t i = 0; i < t->n_headers; i++)
        t->meta[t->n_meta++] = md(t->headers[i].name, t->headers[i].value);
    t->meta[t->n_meta++] = md("client-name", KEEL_CLIENT_NAME);
    t->meta[t->n_meta++] = md("client-version", KEEL_VERSION);
    if (t->authorization)
        t->meta[t->n_meta++] = md("authorization", t->authorization);
    t->cq = grpc_completion_queue_create_for_next(NULL);
    int prc = pthread_create(&t->cq_thread, NULL, cq_main, t);
    if (prc != 0) {
        keel_transport_free(t);
        return keel_error_set(err, KEEL_EIO, "cannot start the transport's thread: %s",
                              strerror(prc));
    }
    t->cq_thread_started = true;
    *out = t;
    return KEEL_OK;
}

void keel_transport_free(keel_transport *t)
{
    if (t == NULL)
        return;
    if (t->cq) {
        /* Cancel what is in flight; calls waiting to retry end on the thread's next look; then
         * every callback has run and nothing more can post to the queue. */
        pthread_mutex_lock(&t->mu);
        t->closing = true;
        cancel_live(t);
        while (t->outstanding > 0)
            pthread_cond_wait(&t->idle, &t->mu);
        pthread_mutex_unlock(&t->mu);
        grpc_completion_queue_shutdown(t->cq);
        if (t->cq_thread_started)
            pthread_join(t->cq_thread, NULL);
        else /* no thread: drain here */
            while (
                grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
                GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(t->cq);
    }
    for (size_t i = 0; i < t->n_meta; i++)
        grpc_slice_unref(t->meta[i].value);
    free(t->meta);
    for (size_t i = 0; i < t->n_methods; i++)
        free(t->methods[i].path);
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
    pthread_cond_destroy(&t->idle);
    pthread_mutex_destroy(&t->mu);
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

/* The response's bytes, through keel_transport_decode(). A response that arrived as one slice (an
 * uncompressed message read in one piece) is decoded where it lies; only a message in several
 * slices is first copied into one. */
static int decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *type,
                  ProtobufCMessage **out, ProtobufCMessage **partial, const char *what,
                  keel_error *err)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return keel_error_set(err, KEEL_EPROTOCOL, "%s: cannot read the response", what);
    int rc;
    grpc_slice *first = NULL;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1 && grpc_byte_buffer_reader_peek(&reader, &first)) {
        rc = keel_transport_decode(GRPC_SLICE_START_PTR(*first), GRPC_SLICE_LENGTH(*first), type,
                                   out, partial, what, err);
    } else {
        grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
        rc = keel_transport_decode(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), type, out,
                                   partial, what, err);
        grpc_slice_unref(s);
    }
    grpc_byte_buffer_reader_destroy(&reader);
    return rc;
}

/* ---- calls on the completion-queue thread ---- */

/* An answer handed over undecoded (keel_transport_call_async_reply). */
struct keel_transport_reply {
    keel_transport *t;
    grpc_byte_buffer *bb;
    const char *method;
    char *namespace; /* owned, or NULL */
    double attempt_started;
    char what[256];
};

/* What keel_transport_call() waits on: the completion-queue thread fills it and signals. */
typedef struct sync_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    keel_error err;
    grpc_byte_buffer *reply; /* on KEEL_OK: the undecoded answer, the waiter's to decode */
    double attempt_started;  /* of the last attempt, for its metrics once decoded */
} sync_waiter;

/* One call, from keel_transport_call_async() until its callback has run: the tag of its batches.
 * Owned by the caller's thread until its first batch starts, then by the completion-queue
 * thread. */
struct call_ctx {
    keel_transport *t;
    call_ctx *prev, *next; /* in t->live (under t->mu) or t->waiting (CQ thread only) */
    void *registered;      /* the channel's handle for the method, or NULL */
    char path[192];
    char what[256];
    const char *method; /* rpc.method, for metrics: the caller's string (a literal) */
    char *namespace;    /* copied, or NULL */
    grpc_slice request; /* encoded once, sent by every attempt */
    const ProtobufCMessageDescriptor *response_type;
    bool want_partial;
    bool retry;
    keel_call_cancel *cancel;
    keel_transport_done_fn done;
    keel_transport_reply_fn reply_done; /* instead of done: the answer undecoded */
    void *userdata;
    sync_waiter *waiter; /* keel_transport_call(): decode on the waiting thread */
    int64_t start_ms, budget_ms, retry_at_ms;
    int attempt;
    double attempt_started;
    /* The attempt in flight. */
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array initial, trailers;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    keel_error err;
    ProtobufCMessage *response, *partial;
    bool namespace_owned_by_reply;
    size_t nmeta;
    grpc_metadata meta[]; /* the transport's headers, then temporal-namespace */
};

static void live_link(keel_transport *t, call_ctx *c)
{
    c->prev = NULL;
    c->next = t->live;
    if (t->live)
        t->live->prev = c;
    t->live = c;
}

/* Cancel every attempt in flight (under t->mu). */
static void cancel_live(keel_transport *t)
{
    for (call_ctx *c = t->live; c; c = c->next)
        grpc_call_cancel(c->call, NULL);
}

static void live_unlink(keel_transport *t, call_ctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        t->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Free what one attempt used; the call is out of t->live already. */
static void attempt_release(call_ctx *c)
{
    if (c->send)
        grpc_byte_buffer_destroy(c->send);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    c->send = c->recv = NULL;
    grpc_metadata_array_destroy(&c->initial);
    grpc_metadata_array_destroy(&c->trailers);
    grpc_slice_unref(c->details);
    c->details = grpc_empty_slice();
    if (c->error_string)
        gpr_free((void *)c->error_string);
    c->error_string = NULL;
    if (c->call)
        grpc_call_unref(c->call);
    c->call = NULL;
}

static void ctx_free(call_ctx *c)
{
    grpc_slice_unref(c->request);
    if (c->namespace)
        grpc_slice_unref(c->meta[c->nmeta - 1].value);
    if (!c->namespace_owned_by_reply)
        free(c->namespace);
    free(c);
}

/* The call is over: hand the outcome over, then free the context. */
static void finish(call_ctx *c, int rc)
{
    keel_transport *t = c->t;
    if (rc != KEEL_OK)
        c->err.code = rc;
    if (c->waiter) {
        sync_waiter *w = c->waiter;
        pthread_mutex_lock(&w->mu);
        w->rc = rc;
        if (rc != KEEL_OK)
            w->err = c->err;
        w->attempt_started = c->attempt_started;
        w->done = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu); /* w may be gone from here on */
    } else if (c->reply_done) {
        keel_transport_reply *r = NULL;
        if (rc == KEEL_OK && (r = calloc(1, sizeof *r)) != NULL) {
            r->t = t;
            r->bb = c->recv;
            r->method = c->method;
            r->namespace = c->namespace; /* handed over */
            c->namespace_owned_by_reply = true;
            r->attempt_started = c->attempt_started;
            memcpy(r->what, c->what, sizeof r->what);
            c->recv = NULL;
        } else if (rc == KEEL_OK) {
            rc = keel_error_set(&c->err, KEEL_ENOMEM, "%s: out of memory for the answer", c->what);
        }
        if (c->recv)
            grpc_byte_buffer_destroy(c->recv);
        c->recv = NULL;
        c->reply_done(c->userdata, rc, r, &c->err);
    } else {
        c->done(c->userdata, rc, rc == KEEL_OK ? c->response : NULL, c->partial, &c->err);
    }
    ctx_free(c);
    pthread_mutex_lock(&t->mu);
    if (--t->outstanding == 0 && t->closing)
        pthread_cond_broadcast(&t->idle);
    pthread_mutex_unlock(&t->mu);
}

/* Start one attempt. On failure nothing of the attempt is left and c->err says why. Once the
 * batch has started, the completion-queue thread may finish and free c at any moment. */
static int start_attempt(call_ctx *c)
{
    keel_transport *t = c->t;
    int64_t left = c->budget_ms - (now_ms() - c->start_ms);
    if (left < 1)
        left = 1;
    c->attempt++;
    c->attempt_started = mono_s();
    c->err.grpc_status = KEEL_NO_GRPC_STATUS;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(left, GPR_TIMESPAN));
    grpc_call *call;
    if (c->registered) {
        call = grpc_channel_create_registered_call(t->channel, NULL, GRPC_PROPAGATE_DEFAULTS, t->cq,
                                                   c->registered, deadline, NULL);
    } else {
        grpc_slice method = grpc_slice_from_copied_string(c->path);
        call = grpc_channel_create_call(t->channel, NULL, GRPC_PROPAGATE_DEFAULTS, t->cq, method,
                                        NULL, deadline, NULL);
        grpc_slice_unref(method);
    }
    c->send = grpc_raw_byte_buffer_create(&c->request, 1);
    c->recv = NULL;
    grpc_metadata_array_init(&c->initial);
    grpc_metadata_array_init(&c->trailers);
    c->status = GRPC_STATUS_UNKNOWN;
    c->details = grpc_empty_slice();
    c->error_string = NULL;

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->nmeta;
    ops[0].data.send_initial_metadata.metadata = c->meta;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailers;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    ops[5].data.recv_status_on_client.error_string = &c->error_string;

    /* In t->live before anything can cancel it, so that keel_transport_free() reaches it. */
    pthread_mutex_lock(&t->mu);
    bool closing = t->closing;
    if (!closing) {
        c->call = call;
        live_link(t, c);
    }
    pthread_mutex_unlock(&t->mu);
    if (closing) {
        grpc_call_unref(call);
        attempt_release(c);
        return keel_error_set(&c->err, KEEL_ECANCELLED, "%s: cancelled: the transport is closing",
                              c->what);
    }
    int rc = KEEL_OK;
    grpc_call_error ce = GRPC_CALL_OK;
    if (!cancel_attach(c->cancel, call))
        rc = keel_error_set(&c->err, KEEL_ECANCELLED, "%s: cancelled", c->what);
    else if ((ce = grpc_call_start_batch(call, ops, 6, c, NULL)) != GRPC_CALL_OK) {
        cancel_detach(c->cancel);
        rc = keel_error_set(&c->err, KEEL_EINTERNAL,
                            "%s: gRPC refused to start the call (error %d)", c->what, (int)ce);
    }
    if (rc != KEEL_OK) {
        pthread_mutex_lock(&t->mu);
        live_unlink(t, c);
        pthread_mutex_unlock(&t->mu);
        attempt_release(c);
    }
    return rc;
}

static void waiting_push(keel_transport *t, call_ctx *c)
{
    c->prev = NULL;
    c->next = t->waiting;
    if (t->waiting)
        t->waiting->prev = c;
    t->waiting = c;
}

static void waiting_remove(keel_transport *t, call_ctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        t->waiting = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static bool transport_closing(keel_transport *t)
{
    pthread_mutex_lock(&t->mu);
    bool closing = t->closing;
    pthread_mutex_unlock(&t->mu);
    return closing;
}

/* An attempt's batch completed (on the completion-queue thread): finish the call, or schedule the
 * next attempt after a backoff. */
static void attempt_done(call_ctx *c, bool success)
{
    keel_transport *t = c->t;
    cancel_detach(c->cancel);
    pthread_mutex_lock(&t->mu);
    live_unlink(t, c);
    pthread_mutex_unlock(&t->mu);

    keel_error *e = &c->err;
    int rc = KEEL_OK;
    bool decode_later = false;
    if (!success) {
        rc = keel_error_set(e, KEEL_EINTERNAL, "%s: the gRPC batch did not complete", c->what);
    } else if (c->status != GRPC_STATUS_OK) {
        char *msg = grpc_slice_to_c_string(c->details);
        rc = keel_error_set(e, keel_error_code_from_grpc(c->status), "%s failed: %s: %s", c->what,
                            keel_grpc_status_name(c->status),
                            msg[0] ? msg : (c->error_string ? c->error_string : "(no message)"));
        e->grpc_status = c->status;
        e->retryable = keel_grpc_status_retryable(c->status, msg, false);
        read_status_details(&c->trailers, e);
        gpr_free(msg);
    } else if (c->recv == NULL) {
        rc =
            keel_error_set(e, KEEL_EPROTOCOL, "%s: the server sent OK without a response", c->what);
    } else if (c->waiter) {
        /* keel_transport_call() decodes on its own thread, and records the attempt then. */
        c->waiter->reply = c->recv;
        c->recv = NULL;
        decode_later = true;
    } else if (c->reply_done) {
        decode_later = true; /* finish() hands c->recv over */
    } else {
        rc = decode(c->recv, c->response_type, &c->response, c->want_partial ? &c->partial : NULL,
                    c->what, e);
    }
    if (!decode_later)
        record_attempt(t, c->method, c->namespace, c->attempt_started, rc, e);
    grpc_byte_buffer *answer = NULL;
    if (decode_later && c->reply_done) {
        answer = c->recv;
        c->recv = NULL;
    }
    attempt_release(c);
    if (answer) {
        c->recv = answer; /* for finish(), which hands it to the callback */
        finish(c, KEEL_OK);
        return;
    }
    if (rc == KEEL_OK) {
        finish(c, KEEL_OK);
        return;
    }
    if (c->cancel && keel_call_cancel_triggered(c->cancel)) {
        /* However the call ended, it ended because it was abandoned. */
        e->retryable = false;
        finish(c, KEEL_ECANCELLED);
        return;
    }
    if (!c->retry || !e->retryable || transport_closing(t)) {
        finish(c, rc);
        return;
    }
    int64_t delay = keel_transport_backoff_ms(c->attempt, c->budget_ms, next_jitter());
    /* An attempt with almost no time left can only end in DEADLINE_EXCEEDED, which would hide
     * the real cause: give up with the last real error instead. */
    if (now_ms() + delay - c->start_ms >= c->budget_ms - MIN_ATTEMPT_MS) {
        size_t len = strlen(e->message);
        snprintf(e->message + len, sizeof e->message - len,
                 " (gave up after %d attempts in %lld ms)", c->attempt,
                 (long long)(now_ms() - c->start_ms));
        finish(c, rc);
        return;
    }
    c->retry_at_ms = now_ms() + delay;
    waiting_push(t, c);
}

/* While calls wait to retry, the completion-queue thread wakes at least this often to see whether
 * one was cancelled or the transport is closing (a cancel trigger cannot post to the queue). */
#define WAITING_TICK_MS 20

/* Retry the calls whose backoff is over; end those cancelled meanwhile. The delay until the next
 * look, in ms. */
static int64_t run_waiting(keel_transport *t)
{
    int64_t next = WAITING_TICK_MS;
    bool closing = transport_closing(t);
    call_ctx *c = t->waiting;
    while (c) {
        call_ctx *after = c->next;
        int64_t now = now_ms();
        if (closing || (c->cancel && keel_call_cancel_triggered(c->cancel))) {
            waiting_remove(t, c);
            c->err.retryable = false;
            finish(c, KEEL_ECANCELLED);
        } else if (now >= c->retry_at_ms) {
            waiting_remove(t, c);
            int rc = start_attempt(c);
            if (rc != KEEL_OK) {
                record_attempt(t, c->method, c->namespace, c->attempt_started, rc, &c->err);
                finish(c, rc);
            }
        } else if (c->retry_at_ms - now < next) {
            next = c->retry_at_ms - now;
        }
        c = after;
    }
    return next;
}

static void *cq_main(void *arg)
{
    keel_transport *t = arg;
    prctl(PR_SET_NAME, "keel-cq", 0, 0, 0);
    for (;;) {
        gpr_timespec until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
        if (t->waiting) {
            int64_t ms = run_waiting(t);
            if (t->waiting)
                until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                     gpr_time_from_millis(ms > 0 ? ms : 1, GPR_TIMESPAN));
        }
        grpc_event ev = grpc_completion_queue_next(t->cq, until, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            attempt_done(ev.tag, ev.success != 0);
    }
    return NULL;
}

/* The channel's handle for a method, registered on first use (under t->mu). NULL past
 * KEEL_TRANSPORT_MAX_METHODS methods: calls to more name their method each time. */
static void *registered_method(keel_transport *t, const char *path)
{
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (const char *p = path; *p; p++)
        hash = (hash ^ (uint8_t)*p) * 16777619u;
    for (size_t i = 0; i < t->n_methods; i++)
        if (t->methods[i].hash == hash && strcmp(t->methods[i].path, path) == 0)
            return t->methods[i].handle;
    if (t->n_methods == KEEL_TRANSPORT_MAX_METHODS)
        return NULL;
    char *copy = strdup(path);
    if (copy == NULL)
        return NULL;
    void *h = grpc_channel_register_call(t->channel, copy, NULL, NULL);
    t->methods[t->n_methods++] = (struct registered_method){hash, copy, h};
    return h;
}

/* Set a call up and start its first attempt. */
static int start_call(keel_transport *t, keel_rpc rpc, const ProtobufCMessage *request,
                      const ProtobufCMessageDescriptor *response_type, const keel_call_options *o,
                      keel_transport_done_fn done, keel_transport_reply_fn reply_done,
                      void *userdata, sync_waiter *waiter, keel_error *err)
{
    call_ctx *c = calloc(1, sizeof *c + (t->n_meta + 1) * sizeof c->meta[0]);
    if (c == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory starting %s", rpc.method);
    int n = snprintf(c->path, sizeof c->path, "/%s/%s", rpc.service, rpc.method);
    if (n < 0 || (size_t)n >= sizeof c->path) {
        free(c);
        return keel_error_set(err, KEEL_EINVAL, "RPC name too long: %s", rpc.method);
    }
    snprintf(c->what, sizeof c->what, "%s to %s", rpc.method, t->address);
    if (o->namespace && !keel_header_value_ok(o->namespace)) {
        int rc = keel_error_set(err, KEEL_EINVAL,
                                "%s: namespace '%s' has a character a gRPC header cannot carry "
                                "(only printable ASCII)",
                                c->what, o->namespace);
        free(c);
        return rc;
    }
    c->t = t;
    c->method = rpc.method;
    c->response_type = response_type;
    c->want_partial = o->partial != NULL;
    c->retry = o->retry;
    c->cancel = o->cancel;
    c->done = done;
    c->reply_done = reply_done;
    c->userdata = userdata;
    c->waiter = waiter;
    c->budget_ms = o->timeout_ms > 0 ? o->timeout_ms : t->rpc_timeout_ms;
    c->start_ms = now_ms();
    c->details = grpc_empty_slice();
    memcpy(c->meta, t->meta, t->n_meta * sizeof c->meta[0]);
    c->nmeta = t->n_meta;
    if (o->namespace) {
        if ((c->namespace = strdup(o->namespace)) == NULL) {
            free(c);
            return keel_error_set(err, KEEL_ENOMEM, "out of memory starting %s", rpc.method);
        }
        c->meta[c->nmeta++] = md("temporal-namespace", c->namespace);
    }
    size_t len = protobuf_c_message_get_packed_size(request);
    c->request = grpc_slice_malloc(len);
    protobuf_c_message_pack(request, GRPC_SLICE_START_PTR(c->request));

    pthread_mutex_lock(&t->mu);
    bool closing = t->closing;
    if (!closing) {
        c->registered = registered_method(t, c->path);
        t->outstanding++;
    }
    pthread_mutex_unlock(&t->mu);
    if (closing) {
        int rc = keel_error_set(err, KEEL_ECANCELLED, "%s: cancelled: the transport is closing",
                                c->what);
        ctx_free(c);
        return rc;
    }
    int rc = start_attempt(c);
    if (rc == KEEL_OK)
        return KEEL_OK; /* c belongs to the completion-queue thread now */
    record_attempt(t, c->method, c->namespace, c->attempt_started, rc, &c->err);
    if (err)
        *err = c->err;
    ctx_free(c);
    pthread_mutex_lock(&t->mu);
    if (--t->outstanding == 0 && t->closing)
        pthread_cond_broadcast(&t->idle);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int keel_transport_call_async(keel_transport *t, keel_rpc rpc, const ProtobufCMessage *request,
                              const ProtobufCMessageDescriptor *response_type,
                              const keel_call_options *opts, keel_transport_done_fn done,
                              void *userdata, keel_error *err)
{
    keel_call_options o = {.retry = true};
    if (opts)
        o = *opts;
    if (done == NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s: no callback", rpc.method);
    return start_call(t, rpc, request, response_type, &o, done, NULL, userdata, NULL, err);
}

int keel_transport_call_async_reply(keel_transport *t, keel_rpc rpc,
                                    const ProtobufCMessage *request, const keel_call_options *opts,
                                    keel_transport_reply_fn done, void *userdata, keel_error *err)
{
    keel_call_options o = {.retry = true};
    if (opts)
        o = *opts;
    o.partial = NULL;
    if (done == NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s: no callback", rpc.method);
    return start_call(t, rpc, request, NULL, &o, NULL, done, userdata, NULL, err);
}

int keel_transport_reply_decode(keel_transport_reply *r,
                                const ProtobufCMessageDescriptor *response_type,
                                ProtobufCMessage **response, ProtobufCMessage **partial,
                                keel_error *err)
{
    *response = NULL;
    if (partial)
        *partial = NULL;
    keel_error local;
    keel_error *e = err ? err : &local;
    int rc = decode(r->bb, response_type, response, partial, r->what, e);
    record_attempt(r->t, r->method, r->namespace, r->attempt_started, rc, e);
    keel_transport_reply_free(r);
    return rc;
}

void keel_transport_reply_free(keel_transport_reply *r)
{
    if (r == NULL)
        return;
    grpc_byte_buffer_destroy(r->bb);
    free(r->namespace);
    free(r);
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
    if (pthread_equal(pthread_self(), t->cq_thread))
        return keel_error_set(err, KEEL_EINTERNAL,
                              "%s: a blocking call from the transport's own thread (a callback) "
                              "would never return",
                              rpc.method);
    sync_waiter w = {.rc = KEEL_OK};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = start_call(t, rpc, request, response_type, &o, NULL, NULL, NULL, &w, err);
    if (rc == KEEL_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.rc;
        if (rc != KEEL_OK) {
            if (err)
                *err = w.err;
        } else {
            char what[256];
            snprintf(what, sizeof what, "%s to %s", rpc.method, t->address);
            keel_error local;
            keel_error *e = err ? err : &local;
            rc = decode(w.reply, response_type, response, o.partial, what, e);
            record_attempt(t, rpc.method, o.namespace, w.attempt_started, rc, e);
            grpc_byte_buffer_destroy(w.reply);
        }
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}
