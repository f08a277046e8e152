/*
 * transport - unary gRPC calls to a Temporal frontend over HTTP/2 (nghttp2) and, when asked for,
 * TLS (OpenSSL), on one network thread per transport.
 *
 * Why not gRPC C core: keel makes only unary calls, and gRPC's machinery around them (its own
 * thread pools, timer threads, combiners, 40 abseil libraries) was most of a busy worker's CPU and
 * a third of its memory (issue 13's profile). What gRPC did is done here in the open:
 *
 *   - one connection at a time per transport, opened on demand. A connection the server sends
 *     GOAWAY on keeps finishing its streams while new calls go to a new one;
 *   - any thread writes its request to the socket itself (under t->mu), so a call costs no
 *     hand-over to the network thread; the network thread ("keel-net") reads every answer, runs
 *     deadlines, retries and keepalive pings, and runs the callbacks;
 *   - the gRPC conventions themselves (framing, grpc-timeout, grpc-status, grpc-message,
 *     -bin headers, target forms) are in grpcwire.h, as pure functions with their own fuzz target.
 */
#include "transport/transport.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client/options.h"
#include "google/rpc/status.pb-c.h"
#include "keel/version.h"
#include "proto/depth.h"
#include "transport/grpcwire.h"
#include "util/strbuf.h"

/* Keepalive as the Go SDK does it: a ping every 30 s of silence, 15 s to answer, also when idle.
 * The server sends GOAWAY to clients that ping more often than every 10 s. */
#define KEEPALIVE_TIME_MS    30000
#define KEEPALIVE_TIMEOUT_MS 15000

/* A connection (TCP and TLS handshake) that takes longer than this is given up. */
#define CONNECT_TIMEOUT_MS 20000

#define PEM_MAX_BYTES (1024 * 1024)

/* A retry is not started with less time than this left. */
#define MIN_ATTEMPT_MS 100

/* What one answer's headers and trailers may hold together (names and values); more resets the
 * stream. gRPC's own default is 16 KiB; Temporal's error details stay far below this. */
#define MAX_RESPONSE_HEADER_BYTES (256 * 1024)
/* grpc-status-details-bin, decoded. */
#define MAX_STATUS_DETAILS_BYTES (64 * 1024)
/* Flow-control windows keel grants the server: a history page of several MiB arrives without
 * waiting for window updates. They bound nothing keel allocates (answers are capped by
 * KEEL_MAX_RECEIVE_BYTES). */
#define STREAM_WINDOW_BYTES     (8 * 1024 * 1024)
#define CONNECTION_WINDOW_BYTES (32 * 1024 * 1024)

/* The network thread reads this much from the socket at a time. */
#define READ_CHUNK (64 * 1024)
/* Frames gathered before a write (conn_flush); what waits to be written is at most this plus one
 * frame. */
#define OUT_GATHER (32 * 1024)
#define READ_BURST (1024 * 1024)

typedef struct call_ctx call_ctx;
typedef struct conn conn;

typedef enum conn_state {
    CONN_RESOLVING, /* a name is being looked up, on a thread of its own */
    CONN_CONNECTING,
    CONN_HANDSHAKE,
    CONN_READY,
    CONN_DEAD
} conn_state;

/* One connection to the frontend. Everything in it is under t->mu; only the network thread frees
 * it (reap_conns), so that an epoll event naming it can never outlive it. */
struct conn {
    keel_transport *t;
    conn *next; /* in t->conns */
    conn_state state;
    int fd;
    SSL *ssl;
    nghttp2_session *session;
    bool goaway;         /* the server said GOAWAY, or stream ids ran out: no new streams here */
    bool resolving;      /* a resolver thread holds it: not freed until that thread is done */
    char tls_error[160]; /* OpenSSL's reason for the last failed read or write */
    bool want_out;       /* EPOLLOUT armed */
    struct addrinfo *addrs, *next_addr;
    int64_t connect_deadline_ms;
    int64_t last_read_ms, ping_sent_ms;
    bool ping_out;
    size_t streams; /* calls submitted here and not yet closed */
    uint8_t *out;   /* bytes nghttp2 produced that the socket did not take yet */
    size_t out_len, out_off, out_cap;
};

struct keel_transport {
    pthread_mutex_t mu;
    pthread_cond_t idle; /* outstanding dropped to 0 while closing */
    pthread_t loop_thread;
    bool loop_started;
    int epfd, evfd;
    SSL_CTX *tls; /* NULL: plaintext */
    keel_grpc_target target;
    char *tls_name;  /* the name the certificate must carry, and SNI (NULL: target's host) */
    char *authority; /* :authority */
    char scheme[6];  /* "http" or "https" */
    /* Under mu: */
    bool closing, stop;
    bool wake_pending;    /* an eventfd write not yet read */
    bool sleeping;        /* the network thread is in epoll_wait until sleep_until */
    bool unsent;          /* a live attempt lost its stream before the server saw it: place it */
    int resolvers;        /* resolver threads running */
    int64_t keepalive_ms; /* KEEPALIVE_TIME_MS, doubled each time the server says too many pings */
    int64_t sleep_until;
    size_t outstanding;    /* calls started whose callback has not yet returned */
    call_ctx *live;        /* attempts in flight: submitted to a connection, or waiting for one */
    call_ctx *waiting;     /* calls waiting to retry */
    call_ctx *done;        /* attempts over, for the network thread to finish (singly linked) */
    int64_t next_deadline; /* no live attempt's deadline is earlier (a hint: may be early) */
    conn *conns;           /* every connection not yet freed */
    conn *current;         /* where new calls go, or NULL */
    atomic_bool cancel_pending; /* a keel_call_cancel was triggered */
    /* Fixed at creation: the headers every call sends (a profile's grpc_meta first, then keel's
     * own), as nghttp2 wants them. */
    nghttp2_nv *meta;
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

struct keel_call_cancel {
    pthread_mutex_t mu;
    keel_transport *t; /* the transport of the attempt in flight, or NULL */
    bool triggered;
};

static void wake(keel_transport *t);

keel_call_cancel *keel_call_cancel_new(void)
{
    keel_call_cancel *c = calloc(1, sizeof *c);
    if (c)
        pthread_mutex_init(&c->mu, NULL);
    return c;
}

/* The network thread notices through cancel_pending. It is woken while c->mu is held, so that the
 * attempt (and with it the transport) cannot end meanwhile: cancel_detach() waits for c->mu. */
void keel_call_cancel_trigger(keel_call_cancel *c)
{
    pthread_mutex_lock(&c->mu);
    c->triggered = true;
    if (c->t) {
        atomic_store(&c->t->cancel_pending, true);
        uint64_t one = 1;
        ssize_t w = write(c->t->evfd, &one, sizeof one);
        (void)w; /* a full counter already wakes it */
    }
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

/* Register the attempt so that a trigger can reach it; false when already triggered. */
static bool cancel_attach(keel_call_cancel *c, keel_transport *t)
{
    if (c == NULL)
        return true;
    pthread_mutex_lock(&c->mu);
    bool ok = !c->triggered;
    if (ok)
        c->t = t;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void cancel_detach(keel_call_cancel *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->t = NULL;
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

/* The first reason OpenSSL has queued, as text ("" when none), and the queue emptied. */
static const char *ssl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    buf[0] = '\0';
    if (e != 0)
        ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

/* Every certificate in a PEM text into the store (server roots). */
static int load_roots(SSL_CTX *ctx, const char *pem, keel_error *err)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int added = 0;
    X509 *x;
    while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1)
            added++;
        X509_free(x);
    }
    BIO_free(bio);
    ERR_clear_error(); /* the end of the text reads as an error */
    if (added == 0)
        return keel_error_set(err, KEEL_EINVAL, "the server CA certificate holds no certificate");
    return KEEL_OK;
}

/* The client certificate (with any chain after it) and its key, for mTLS. */
static int load_client_pair(SSL_CTX *ctx, const char *cert, const char *key, keel_error *err)
{
    char why[256];
    BIO *bio = BIO_new_mem_buf(cert, -1);
    X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    int rc = KEEL_OK;
    if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1) {
        rc = keel_error_set(err, KEEL_EINVAL, "the client certificate cannot be used: %s",
                            ssl_reason(why, sizeof why));
    } else {
        X509 *extra;
        while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
            if (SSL_CTX_add0_chain_cert(ctx, extra) != 1)
                X509_free(extra);
        ERR_clear_error();
    }
    X509_free(leaf);
    BIO_free(bio);
    if (rc != KEEL_OK)
        return rc;
    bio = BIO_new_mem_buf(key, -1);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (pkey == NULL || SSL_CTX_use_PrivateKey(ctx, pkey) != 1)
        rc = keel_error_set(err, KEEL_EINVAL, "the client key cannot be used: %s",
                            ssl_reason(why, sizeof why));
    else if (SSL_CTX_check_private_key(ctx) != 1)
        rc = keel_error_set(err, KEEL_EINVAL,
                            "the client key does not belong to the client certificate");
    EVP_PKEY_free(pkey);
    return rc;
}

/* The TLS context of a transport: TLS 1.2 or later, the server verified against the given roots
 * (or the system's), HTTP/2 offered by ALPN, the client pair for mTLS. */
static int make_tls(const keel_connect_options *opts, SSL_CTX **out, keel_error *err)
{
    *out = NULL;
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
    SSL_CTX *ctx = NULL;
    if (rc == KEEL_OK && (ctx = SSL_CTX_new(TLS_client_method())) == NULL)
        rc = keel_error_set(err, KEEL_ENOMEM, "cannot create a TLS context");
    if (rc == KEEL_OK) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        /* A renegotiation would need reads and writes in directions keel's loop does not track. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
        static const unsigned char alpn[] = {2, 'h', '2'};
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
        if (ca)
            rc = load_roots(ctx, ca, err);
        else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
            rc = keel_error_set(err, KEEL_EIO, "cannot load the system's CA certificates");
    }
    if (rc == KEEL_OK && cert)
        rc = load_client_pair(ctx, cert, key, err);
    free(ca);
    free(cert);
    keel_secret_free(key);
    if (rc != KEEL_OK) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return KEEL_OK;
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

/* ---- calls ---- */

/* An answer handed over undecoded (keel_transport_call_async_reply). */
struct keel_transport_reply {
    keel_transport *t;
    uint8_t *bytes;
    size_t len;
    const char *method;
    char *namespace; /* owned, or NULL */
    double attempt_started;
    char what[256];
};

/* What keel_transport_call() waits on: the network thread fills it and signals. */
typedef struct sync_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    keel_error err;
    uint8_t *reply; /* on KEEL_OK: the undecoded answer, the waiter's to decode and free */
    size_t reply_len;
    double attempt_started; /* of the last attempt, for its metrics once decoded */
} sync_waiter;

/* How an attempt ended, before attempt_done() makes a keel_error of it. */
typedef enum attempt_end {
    END_STATUS, /* a gRPC status: the server's, or one standing for what happened on the way */
    END_LOCAL,  /* keel refused the answer (err says why, local_rc is the code) */
} attempt_end;

/* One call, from start_call() until its callback has run. Under t->mu while it is in t->live,
 * t->waiting or t->done; the network thread's alone in attempt_done(). */
struct call_ctx {
    keel_transport *t;
    call_ctx *prev, *next; /* in t->live or t->waiting; next alone in t->done */
    char path[192];
    char what[256];
    const char *method; /* rpc.method, for metrics: the caller's string (a literal) */
    char *namespace;    /* copied, or NULL */
    uint8_t *request;   /* the framed request (prefix and message), sent by every attempt */
    size_t request_len;
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
    bool namespace_owned_by_reply;
    /* The attempt in flight. */
    int64_t deadline_ms;
    conn *conn;        /* NULL until submitted */
    int32_t stream_id; /* 0 until submitted */
    size_t sent;       /* request bytes nghttp2 has taken */
    size_t header_bytes;
    int http_status;
    bool grpc_body;  /* content-type application/grpc: the body is gRPC messages */
    int grpc_status; /* -1 until one came */
    char grpc_message[512];
    uint8_t *details; /* grpc-status-details-bin, decoded */
    size_t details_len;
    keel_grpc_deframer deframer;
    attempt_end end;
    bool decided;   /* the outcome is set: what else arrives is ignored */
    bool no_retry;  /* its status is one a retry would not change (an answer over the cap) */
    bool replaced;  /* its stream was refused before the server saw it, and sent again once */
    bool abandoned; /* cancelled while waiting to retry: no attempt to judge */
    int local_rc;
    uint8_t *answer; /* on status 0: the message */
    size_t answer_len;
    keel_error err;
    ProtobufCMessage *response, *partial;
};

static void live_link(keel_transport *t, call_ctx *c)
{
    c->prev = NULL;
    c->next = t->live;
    if (t->live)
        t->live->prev = c;
    t->live = c;
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

/* Free what one attempt used. */
static void attempt_release(call_ctx *c)
{
    keel_grpc_deframer_free(&c->deframer);
    free(c->details);
    free(c->answer);
    c->details = c->answer = NULL;
    c->details_len = c->answer_len = 0;
}

static bool on_loop_thread(const keel_transport *t)
{
    return t->loop_started && pthread_equal(pthread_self(), t->loop_thread);
}

/* Wake the network thread (under t->mu): it recomputes its deadline and runs t->done. */
static void wake(keel_transport *t)
{
    if (t->wake_pending || on_loop_thread(t))
        return;
    t->wake_pending = true;
    uint64_t one = 1;
    ssize_t w = write(t->evfd, &one, sizeof one);
    (void)w;
}

/* The attempt is over (under t->mu): out of t->live, off its stream, onto t->done. */
static void end_attempt(call_ctx *c)
{
    keel_transport *t = c->t;
    if (c->conn && c->stream_id > 0) {
        conn *k = c->conn;
        if (k->state != CONN_DEAD) {
            nghttp2_session_set_stream_user_data(k->session, c->stream_id, NULL);
            k->streams--;
        }
    }
    c->conn = NULL;
    c->stream_id = 0;
    live_unlink(t, c);
    c->next = t->done;
    t->done = c;
    wake(t);
}

/* End an attempt with a gRPC status keel gives it itself (a deadline, a lost connection). */
static void end_with_status(call_ctx *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void end_with_status(call_ctx *c, int status, const char *fmt, ...)
{
    /* An answer keel already judged (refused, or too large) keeps that outcome: the stream it
     * reset may end with the connection or the deadline before the reset goes out. */
    if (!c->decided) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->grpc_message, sizeof c->grpc_message, fmt, ap);
        va_end(ap);
        c->end = END_STATUS;
        c->grpc_status = status;
    }
    end_attempt(c);
}

/* A stream's attempt that keel cut short: reset the stream, then end it. */
static void reset_stream(call_ctx *c)
{
    conn *k = c->conn;
    if (k && c->stream_id > 0 && k->state == CONN_READY)
        nghttp2_submit_rst_stream(k->session, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
}

/* ---- one connection ---- */

static void conn_flush(conn *k);

static void conn_watch(conn *k, bool out)
{
    if (k->fd < 0 || k->want_out == out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = k};
    epoll_ctl(k->t->epfd, EPOLL_CTL_MOD, k->fd, &ev);
    k->want_out = out;
}

/* The connection is lost (under t->mu): every attempt on it, and every one waiting for it while it
 * was the current one, ends UNAVAILABLE with why. The network thread frees it later. */
static void conn_fail(conn *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_fail(conn *k, const char *fmt, ...)
{
    keel_transport *t = k->t;
    if (k->state == CONN_DEAD)
        return;
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    bool was_current = t->current == k;
    k->state = CONN_DEAD;
    if (was_current)
        t->current = NULL;
    if (k->fd >= 0)
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, k->fd, NULL);
    call_ctx *c = t->live;
    while (c) {
        call_ctx *after = c->next;
        if (c->conn == k || (was_current && c->conn == NULL)) {
            c->stream_id = 0; /* the session goes with the connection */
            c->conn = NULL;
            end_with_status(c, 14, "%s", why);
        }
        c = after;
    }
    k->streams = 0;
}

/* The connection broke while reading or writing: errno_ is what the system (or OpenSSL) said. */
static void conn_lost(conn *k, int errno_)
{
    conn_fail(k, "connection to %s lost: %s%s%s", k->t->address,
              errno_ == 0 ? "the server closed it" : strerror(errno_), k->tls_error[0] ? ": " : "",
              k->tls_error);
}

static ssize_t io_read(conn *k, uint8_t *buf, size_t n)
{
    if (k->ssl == NULL) {
        ssize_t r = read(k->fd, buf, n);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return -EAGAIN;
        return r < 0 ? -errno : r;
    }
    ERR_clear_error();
    int r = SSL_read(k->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r > 0)
        return r;
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return -EAGAIN;
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    ssl_reason(k->tls_error, sizeof k->tls_error);
    return e == SSL_ERROR_SYSCALL && errno ? -errno : -EPROTO;
}

static ssize_t io_write(conn *k, const uint8_t *buf, size_t n)
{
    if (k->ssl == NULL) {
        ssize_t w = send(k->fd, buf, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return -EAGAIN;
        return w < 0 ? -errno : w;
    }
    ERR_clear_error();
    int w = SSL_write(k->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (w > 0)
        return w;
    int e = SSL_get_error(k->ssl, w);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return -EAGAIN;
    ssl_reason(k->tls_error, sizeof k->tls_error);
    return e == SSL_ERROR_SYSCALL && errno ? -errno : -EPIPE;
}

/* Append a frame nghttp2 serialised to what waits to be written (nghttp2's buffer is only valid
 * until its next call). What was written already is dropped first. */
static bool out_append(conn *k, const uint8_t *data, size_t n)
{
    if (k->out_off > 0) {
        memmove(k->out, k->out + k->out_off, k->out_len - k->out_off);
        k->out_len -= k->out_off;
        k->out_off = 0;
    }
    if (k->out_len + n > k->out_cap) {
        size_t cap = k->out_len + n;
        uint8_t *b = realloc(k->out, cap);
        if (b == NULL)
            return false;
        k->out = b;
        k->out_cap = cap;
    }
    memcpy(k->out + k->out_len, data, n);
    k->out_len += n;
    return true;
}

/* After a flush: a session that wants neither to read nor to write is over. A connection the
 * server is closing goes once its last stream has; one that nghttp2 ended because the server
 * broke HTTP/2 (it sent GOAWAY and reads nothing more) fails its calls now, not at their
 * deadlines, and new calls go to a new connection. */
static void conn_over(conn *k)
{
    if (k->state != CONN_READY || nghttp2_session_want_write(k->session))
        return;
    /* GOAWAY either way (the server's, or keel's own when stream ids ran out): nothing is left to
     * read for once the last stream is over. */
    if (k->goaway && k->streams == 0)
        k->state = CONN_DEAD;
    else if (!nghttp2_session_want_read(k->session))
        conn_fail(k, "HTTP/2 from %s refused: the server broke the protocol; connection closed",
                  k->t->address);
}

/* Write what nghttp2 has to send, until it has nothing more or the socket is full (then EPOLLOUT
 * brings the network thread back). Frames are gathered up to OUT_GATHER bytes and written with
 * one system call: a request's HEADERS and DATA go out together, not as two writes. Any thread,
 * under t->mu. */
static void conn_flush(conn *k)
{
    if (k->state != CONN_READY)
        return;
    for (;;) {
        while (k->out_len - k->out_off < OUT_GATHER) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(k->session, &data);
            if (n < 0) {
                conn_fail(k, "HTTP/2 session with %s failed: %s", k->t->address,
                          nghttp2_strerror((int)n));
                return;
            }
            if (n == 0)
                break;
            if (!out_append(k, data, (size_t)n)) {
                conn_fail(k, "out of memory writing to %s", k->t->address);
                return;
            }
        }
        if (k->out_off == k->out_len)
            break;
        ssize_t w = io_write(k, k->out + k->out_off, k->out_len - k->out_off);
        if (w == -EAGAIN) {
            conn_watch(k, true);
            return;
        }
        if (w < 0) {
            conn_lost(k, (int)-w);
            return;
        }
        k->out_off += (size_t)w;
        if (k->out_off == k->out_len)
            k->out_off = k->out_len = 0;
    }
    conn_watch(k, false);
    conn_over(k);
}

/* ---- nghttp2's callbacks (on the thread that feeds or drains the session, under t->mu) ---- */

static call_ctx *stream_call(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

/* Refuse the answer: the attempt ends with err, and the stream is reset. */
static int refuse(call_ctx *c, int rc)
{
    c->local_rc = rc;
    c->end = END_LOCAL;
    c->decided = true;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static bool name_is(const uint8_t *name, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(name, want, n) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    call_ctx *c = stream_call(s, frame->hd.stream_id);
    if (c == NULL || c->decided)
        return 0;
    c->header_bytes += namelen + valuelen;
    if (c->header_bytes > MAX_RESPONSE_HEADER_BYTES)
        return refuse(c, keel_error_set(&c->err, KEEL_EPROTOCOL,
                                        "%s: the answer's headers pass %d bytes", c->what,
                                        MAX_RESPONSE_HEADER_BYTES));
    if (name_is(name, namelen, ":status")) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
        c->http_status = st;
    } else if (name_is(name, namelen, "content-type")) {
        c->grpc_body = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                       (valuelen == 16 || value[16] == '+' || value[16] == ';');
    } else if (name_is(name, namelen, "grpc-status")) {
        int st = keel_grpc_parse_status(value, valuelen);
        if (st < 0)
            return refuse(c, keel_error_set(&c->err, KEEL_EPROTOCOL,
                                            "%s: the server sent a grpc-status that is not a "
                                            "number",
                                            c->what));
        c->grpc_status = st;
    } else if (name_is(name, namelen, "grpc-message")) {
        keel_grpc_percent_decode(value, valuelen, c->grpc_message, sizeof c->grpc_message);
    } else if (name_is(name, namelen, "grpc-status-details-bin") && c->details == NULL) {
        size_t cap = valuelen / 4 * 3 + 3;
        if (cap > MAX_STATUS_DETAILS_BYTES)
            cap = MAX_STATUS_DETAILS_BYTES;
        c->details = malloc(cap);
        if (c->details != NULL &&
            keel_grpc_base64_decode(value, valuelen, c->details, cap, &c->details_len) != KEEL_OK) {
            /* Ignored like an undecodable detail: the status already says what failed. */
            free(c->details);
            c->details = NULL;
        }
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
    (void)flags;
    (void)user;
    call_ctx *c = stream_call(s, id);
    /* The body of an answer that is not gRPC (an HTTP error page from a proxy) is not read. */
    if (c == NULL || c->decided || c->http_status != 200 || !c->grpc_body)
        return 0;
    keel_error why;
    int rc = keel_grpc_deframer_feed(&c->deframer, data, len, KEEL_MAX_RECEIVE_BYTES, &why);
    if (rc == KEEL_EEXHAUSTED) {
        /* As gRPC: RESOURCE_EXHAUSTED, which a retry would not change. */
        snprintf(c->grpc_message, sizeof c->grpc_message, "%.500s", why.message);
        c->grpc_status = 8;
        c->end = END_STATUS;
        c->decided = true;
        c->no_retry = true;
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        return 0;
    }
    if (rc != KEEL_OK) {
        /* nghttp2 ignores a failure returned from this callback: reset the stream here. */
        refuse(c, keel_error_set(&c->err, rc, "%s: %s", c->what, why.message));
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    }
    return 0;
}

/* How the stream's answer ended, from what came (under t->mu). */
static void judge_stream(call_ctx *c, uint32_t h2_error)
{
    if (c->decided)
        return; /* refused, or cut short, already */
    c->end = END_STATUS;
    if (c->grpc_status == 0) {
        keel_error why;
        int rc = keel_grpc_deframer_take(&c->deframer, &c->answer, &c->answer_len, &why);
        if (rc != KEEL_OK) {
            c->end = END_LOCAL;
            c->local_rc = keel_error_set(&c->err, rc, "%s: %s", c->what, why.message);
        }
    } else if (c->grpc_status > 0) {
        /* the server's status and message */
    } else if (h2_error != NGHTTP2_NO_ERROR) {
        c->grpc_status = keel_grpc_status_from_h2(h2_error);
        snprintf(c->grpc_message, sizeof c->grpc_message, "the server reset the stream (%s)",
                 nghttp2_http2_strerror(h2_error));
    } else if (c->http_status != 200) {
        c->grpc_status = keel_grpc_status_from_http(c->http_status);
        snprintf(c->grpc_message, sizeof c->grpc_message,
                 "the server answered HTTP status %d, not gRPC", c->http_status);
    } else if (!c->grpc_body) {
        c->grpc_status = 2; /* UNKNOWN */
        snprintf(c->grpc_message, sizeof c->grpc_message,
                 "the server's answer is not gRPC (its content-type is not application/grpc)");
    } else {
        c->grpc_status = 13;
        snprintf(c->grpc_message, sizeof c->grpc_message, "the answer ended without a grpc-status");
    }
}

/* The stream never reached the server's application (refused, or past a GOAWAY's last stream
 * id): take the attempt off it, to be sent again on the current connection without counting as an
 * attempt, as gRPC does. Once per attempt; then it ends like any other. */
static bool replace_stream(call_ctx *c, bool reset)
{
    conn *k = c->conn;
    if (c->replaced || c->http_status != 0 || k == NULL)
        return false;
    nghttp2_session_set_stream_user_data(k->session, c->stream_id, NULL);
    if (reset)
        nghttp2_submit_rst_stream(k->session, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
    k->streams--;
    c->conn = NULL;
    c->stream_id = 0;
    c->replaced = true;
    c->t->unsent = true;
    wake(c->t);
    return true;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
    (void)user;
    call_ctx *c = stream_call(s, id);
    if (c == NULL)
        return 0;
    if (error_code == NGHTTP2_REFUSED_STREAM && !c->decided && replace_stream(c, false))
        return 0;
    judge_stream(c, error_code);
    end_attempt(c);
    return 0;
}

/* GOAWAY: no new streams here. Those the server will not process (above its last stream id,
 * queued ones included: nghttp2 would hold those until a slot frees) go to the next connection. */
static void goaway(conn *k, const nghttp2_goaway *g)
{
    keel_transport *t = k->t;
    k->goaway = true;
    if (t->current == k)
        t->current = NULL;
    /* The server's complaint about keepalive pings: ping half as often from now on. */
    if (g->error_code == NGHTTP2_ENHANCE_YOUR_CALM && t->keepalive_ms < 3600 * 1000)
        t->keepalive_ms *= 2;
    for (call_ctx *c = t->live, *after; c; c = after) {
        after = c->next;
        if (c->conn == k && c->stream_id > g->last_stream_id && !replace_stream(c, true)) {
            nghttp2_session_set_stream_user_data(k->session, c->stream_id, NULL);
            nghttp2_submit_rst_stream(k->session, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
            k->streams--;
            c->conn = NULL;
            c->stream_id = 0;
            end_with_status(c, 14, "the server closed the connection (GOAWAY) before the call");
        }
    }
}

/* A request nghttp2 could not send at all (a header block too large, say): keel's own failure,
 * which a retry would repeat. */
static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *frame, int lib_error,
                             void *user)
{
    (void)user;
    call_ctx *c = frame->hd.type == NGHTTP2_HEADERS ? stream_call(s, frame->hd.stream_id) : NULL;
    if (c != NULL && !c->decided)
        refuse(c, keel_error_set(&c->err, KEEL_EINVAL, "%s: HTTP/2 could not send the request: %s",
                                 c->what, nghttp2_strerror(lib_error)));
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    conn *k = user;
    if (frame->hd.type == NGHTTP2_HEADERS && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        /* A final answer that is not gRPC (a proxy's error page) and carries no grpc-status is
         * judged by its headers alone: nothing in its body would change the verdict, so the
         * stream is reset rather than its body read to the end, however long it is. */
        call_ctx *c = stream_call(s, frame->hd.stream_id);
        if (c != NULL && !c->decided && c->http_status >= 200 && c->grpc_status < 0 &&
            (c->http_status != 200 || !c->grpc_body)) {
            judge_stream(c, NGHTTP2_NO_ERROR);
            c->decided = true;
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_CANCEL);
        }
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
        goaway(k, &frame->goaway);
    } else if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        k->ping_out = false;
    }
    return 0;
}

/* nghttp2 found a frame of the answer broken and resets the stream (or ends the connection): the
 * call ends with that reason, whether the reset or the end of the connection comes first. */
static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *frame, int lib_error,
                            void *user)
{
    (void)user;
    call_ctx *c = frame->hd.stream_id > 0 ? stream_call(s, frame->hd.stream_id) : NULL;
    if (c == NULL || c->decided)
        return 0;
    snprintf(c->grpc_message, sizeof c->grpc_message, "the server's answer broke HTTP/2: %s",
             nghttp2_strerror(lib_error));
    c->grpc_status = 13; /* INTERNAL, as for the reset it stands for */
    c->end = END_STATUS;
    c->decided = true;
    return 0;
}

/* The request body of a stream: the call's framed request, from where the last read stopped. */
static ssize_t read_request(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)src;
    (void)user;
    call_ctx *c = stream_call(s, id);
    if (c == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = c->request_len - c->sent;
    if (n > len)
        n = len;
    memcpy(buf, c->request + c->sent, n);
    c->sent += n;
    if (c->sent == c->request_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_session_callbacks *callbacks;

static void make_callbacks(void)
{
    if (nghttp2_session_callbacks_new(&callbacks) != 0)
        return;
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, on_frame_not_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, on_invalid_frame);
}

/* ---- opening a connection ---- */

static void conn_ready(conn *k);

/* Start a TCP connect to the next address (under t->mu). false when none is left. */
static bool connect_next(conn *k, int *last_errno)
{
    keel_transport *t = k->t;
    while (k->next_addr) {
        struct addrinfo *a = k->next_addr;
        k->next_addr = a->ai_next;
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            *last_errno = errno;
            continue;
        }
        if (a->ai_family != AF_UNIX) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            *last_errno = errno;
            close(fd);
            continue;
        }
        if (k->fd >= 0) {
            epoll_ctl(t->epfd, EPOLL_CTL_DEL, k->fd, NULL);
            close(k->fd);
        }
        k->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = k};
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            *last_errno = errno;
            close(fd);
            k->fd = -1;
            continue;
        }
        k->want_out = true;
        return true;
    }
    return false;
}

/* The addresses of the target, where no lookup is needed: sockaddr_un for a socket, the address
 * itself for a numeric host. EAI_NONAME for a name (resolve_main() looks it up). */
static int resolve(keel_transport *t, struct addrinfo **out, char *why, size_t whysz)
{
    *out = NULL;
    if (t->target.kind == KEEL_GRPC_TARGET_UNIX) {
        struct addrinfo *a = calloc(1, sizeof *a + sizeof(struct sockaddr_un));
        if (a == NULL) {
            snprintf(why, whysz, "out of memory");
            return EAI_MEMORY;
        }
        struct sockaddr_un *un = (struct sockaddr_un *)(a + 1);
        un->sun_family = AF_UNIX;
        size_t n = strlen(t->target.host);
        memcpy(un->sun_path + (t->target.abstract ? 1 : 0), t->target.host, n);
        a->ai_family = AF_UNIX;
        a->ai_addr = (struct sockaddr *)un;
        a->ai_addrlen =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (t->target.abstract ? 1 : 0));
        *out = a;
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    int rc = getaddrinfo(t->target.host, t->target.port, &hints, out);
    if (rc != 0 && rc != EAI_NONAME)
        snprintf(why, whysz, "bad address '%s': %s", t->target.host, gai_strerror(rc));
    return rc;
}

static void free_addrs(keel_transport *t, struct addrinfo *a)
{
    if (a == NULL)
        return;
    if (t->target.kind == KEEL_GRPC_TARGET_UNIX)
        free(a);
    else
        freeaddrinfo(a);
}

/* Connect to what the lookup found (under t->mu). */
static void connect_first(conn *k)
{
    k->next_addr = k->addrs;
    k->state = CONN_CONNECTING;
    int e = 0;
    if (!connect_next(k, &e))
        conn_fail(k, "cannot connect to %s: %s", k->t->address, strerror(e ? e : ECONNREFUSED));
}

/* A name's lookup, on a thread of its own: getaddrinfo() blocks (for seconds when DNS is slow or
 * down), and nothing may block under t->mu. The connection is not freed meanwhile (resolving),
 * and keel_transport_free() waits for this thread. */
static void *resolve_main(void *arg)
{
    conn *k = arg;
    keel_transport *t = k->t;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(t->target.host, t->target.port, &hints, &res);
    pthread_mutex_lock(&t->mu);
    k->resolving = false;
    if (k->state == CONN_DEAD) {
        if (rc == 0)
            freeaddrinfo(res);
    } else if (rc != 0) {
        conn_fail(k, "cannot connect to %s: cannot resolve '%s': %s", t->address, t->target.host,
                  gai_strerror(rc));
    } else {
        k->addrs = res;
        connect_first(k);
    }
    if (--t->resolvers == 0)
        pthread_cond_broadcast(&t->idle);
    wake(t);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* A new connection, made the current one (under t->mu). It may be dead at once (nothing to
 * connect to): the calls waiting for it have ended then. */
static conn *conn_open(keel_transport *t)
{
    conn *k = calloc(1, sizeof *k);
    if (k == NULL)
        return NULL;
    k->t = t;
    k->fd = -1;
    k->state = CONN_CONNECTING;
    k->connect_deadline_ms = now_ms() + CONNECT_TIMEOUT_MS;
    k->next = t->conns;
    t->conns = k;
    t->current = k;
    /* Its connect timeout must be in the network thread's reckoning. */
    wake(t);
    char why[300];
    int rc = resolve(t, &k->addrs, why, sizeof why);
    if (rc == EAI_NONAME) {
        k->state = CONN_RESOLVING;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t th;
        k->resolving = pthread_create(&th, &attr, resolve_main, k) == 0;
        pthread_attr_destroy(&attr);
        if (k->resolving)
            t->resolvers++;
        else
            conn_fail(k, "cannot connect to %s: cannot start a thread to resolve '%s'", t->address,
                      t->target.host);
        return k;
    }
    if (rc != 0) {
        conn_fail(k, "cannot connect to %s: %s", t->address, why);
        return k;
    }
    connect_first(k);
    return k;
}

/* The TCP connect finished: on to TLS, or straight to HTTP/2. */
static void connected(conn *k)
{
    keel_transport *t = k->t;
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        e = errno;
    if (e != 0) {
        int last = e;
        if (!connect_next(k, &last))
            conn_fail(k, "cannot connect to %s: %s", t->address, strerror(last));
        return;
    }
    if (t->tls == NULL) {
        conn_ready(k);
        return;
    }
    k->ssl = SSL_new(t->tls);
    if (k->ssl == NULL || SSL_set_fd(k->ssl, k->fd) != 1) {
        conn_fail(k, "cannot start TLS with %s", t->address);
        return;
    }
    SSL_set_connect_state(k->ssl);
    const char *name = t->tls_name                               ? t->tls_name
                       : t->target.kind == KEEL_GRPC_TARGET_UNIX ? "localhost"
                                                                 : t->target.host;
    struct in6_addr ip;
    bool literal = inet_pton(AF_INET, name, &ip) == 1 || inet_pton(AF_INET6, name, &ip) == 1;
    if (!literal)
        SSL_set_tlsext_host_name(k->ssl, name);
    if (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), name) != 1
                : SSL_set1_host(k->ssl, name) != 1) {
        conn_fail(k, "cannot check the name '%s' in %s's certificate", name, t->address);
        return;
    }
    k->state = CONN_HANDSHAKE;
}

static void handshake(conn *k)
{
    keel_transport *t = k->t;
    ERR_clear_error();
    int r = SSL_do_handshake(k->ssl);
    if (r == 1) {
        const unsigned char *proto = NULL;
        unsigned int plen = 0;
        SSL_get0_alpn_selected(k->ssl, &proto, &plen);
        if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
            conn_fail(k, "TLS with %s: the server did not agree to HTTP/2 (ALPN)", t->address);
            return;
        }
        conn_ready(k);
        return;
    }
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        conn_watch(k, false);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        conn_watch(k, true);
        return;
    }
    long verify = SSL_get_verify_result(k->ssl);
    char reason[256];
    ssl_reason(reason, sizeof reason);
    if (verify != X509_V_OK)
        conn_fail(k, "TLS handshake with %s failed: the peer certificate was refused: %s",
                  t->address, X509_verify_cert_error_string(verify));
    else
        conn_fail(k, "TLS handshake with %s failed: %s", t->address,
                  reason[0] ? reason : "the connection closed");
}

static void submit(call_ctx *c, conn *k);

/* k's client session with keel's callbacks, and keel's settings queued. NULL, or what failed
 * ("cannot start HTTP/2"; k->session may be set then, conn_free() frees it). */
static const char *session_new(conn *k)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_callbacks);
    if (callbacks == NULL || nghttp2_session_client_new(&k->session, callbacks, k) != 0) {
        k->session = NULL;
        return "out of memory starting HTTP/2";
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW_BYTES},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_RESPONSE_HEADER_BYTES},
    };
    if (nghttp2_submit_settings(k->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(k->session, NGHTTP2_FLAG_NONE, 0,
                                              CONNECTION_WINDOW_BYTES) != 0)
        return "cannot start HTTP/2";
    return NULL;
}

/* HTTP/2 is up: the session, keel's settings, then every call that waited for it. */
static void conn_ready(conn *k)
{
    keel_transport *t = k->t;
    const char *failed = session_new(k);
    if (failed) {
        conn_fail(k, "%s with %s", failed, t->address);
        return;
    }
    k->state = CONN_READY;
    k->last_read_ms = now_ms();
    if (t->current == k)
        for (call_ctx *c = t->live, *after; c; c = after) {
            after = c->next;
            if (c->conn == NULL)
                submit(c, k);
        }
    conn_flush(k);
}

/* Hand n bytes the server sent to nghttp2 (its callbacks run). false when k is over. */
static bool conn_feed(conn *k, const uint8_t *buf, size_t n)
{
    k->last_read_ms = now_ms();
    ssize_t used = nghttp2_session_mem_recv(k->session, buf, n);
    if (used < 0) {
        conn_fail(k, "HTTP/2 from %s refused: %s", k->t->address, nghttp2_strerror((int)used));
        return false;
    }
    return k->state == CONN_READY;
}

/* Read what the server sent and hand it to nghttp2. */
static void conn_read(conn *k)
{
    static _Thread_local uint8_t buf[READ_CHUNK];
    /* At most READ_BURST at a time: a large answer must not keep t->mu from callers, deadlines
     * and cancels for long; epoll (level-triggered) brings the thread back for the rest. */
    for (size_t got = 0; got < READ_BURST;) {
        ssize_t n = io_read(k, buf, sizeof buf);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            conn_lost(k, (int)-n);
            return;
        }
        got += (size_t)n;
        if (!conn_feed(k, buf, (size_t)n))
            return;
        /* A plain socket that gave less than asked for is empty: no read just to hear EAGAIN
         * (epoll is level-triggered). TLS gives a record at a time, so it reads on. */
        if (k->ssl == NULL && (size_t)n < sizeof buf)
            break;
    }
    conn_flush(k);
}

/* An epoll event for k (network thread, under t->mu). */
static void conn_event(conn *k, uint32_t events)
{
    if (k->state == CONN_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        connected(k);
    if (k->state == CONN_HANDSHAKE)
        handshake(k);
    else if (k->state == CONN_READY) {
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(k);
        if (k->state == CONN_READY && (events & EPOLLOUT))
            conn_flush(k);
    }
}

static void conn_free(conn *k)
{
    if (k->session)
        nghttp2_session_del(k->session);
    if (k->ssl)
        SSL_free(k->ssl);
    if (k->fd >= 0) {
        epoll_ctl(k->t->epfd, EPOLL_CTL_DEL, k->fd, NULL);
        close(k->fd);
    }
    free_addrs(k->t, k->addrs);
    free(k->out);
    free(k);
}

/* Free the connections that are over (network thread, under t->mu). */
static void reap_conns(keel_transport *t)
{
    conn **p = &t->conns;
    while (*p) {
        conn *k = *p;
        if (k->state == CONN_DEAD && !k->resolving) {
            *p = k->next;
            if (t->current == k)
                t->current = NULL;
            conn_free(k);
        } else {
            p = &k->next;
        }
    }
}

/* Keepalive pings and connect timeouts; the next time anything is due (network thread). */
static int64_t conn_timers(keel_transport *t, int64_t now)
{
    int64_t next = INT64_MAX;
    for (conn *k = t->conns; k; k = k->next) {
        if (k->state == CONN_RESOLVING || k->state == CONN_CONNECTING ||
            k->state == CONN_HANDSHAKE) {
            if (now >= k->connect_deadline_ms)
                conn_fail(k, "cannot connect to %s: no connection in %d ms", t->address,
                          CONNECT_TIMEOUT_MS);
            else if (k->connect_deadline_ms < next)
                next = k->connect_deadline_ms;
            continue;
        }
        if (k->state != CONN_READY)
            continue;
        if (k->ping_out) {
            if (now - k->ping_sent_ms >= KEEPALIVE_TIMEOUT_MS) {
                conn_fail(k, "connection to %s lost: no answer to a keepalive ping in %d ms",
                          t->address, KEEPALIVE_TIMEOUT_MS);
                continue;
            }
            if (k->ping_sent_ms + KEEPALIVE_TIMEOUT_MS < next)
                next = k->ping_sent_ms + KEEPALIVE_TIMEOUT_MS;
        } else if (now - k->last_read_ms >= t->keepalive_ms) {
            if (nghttp2_submit_ping(k->session, NGHTTP2_FLAG_NONE, NULL) == 0) {
                k->ping_out = true;
                k->ping_sent_ms = now;
                conn_flush(k);
            }
            if (now + KEEPALIVE_TIMEOUT_MS < next)
                next = now + KEEPALIVE_TIMEOUT_MS;
        } else if (k->last_read_ms + t->keepalive_ms < next) {
            next = k->last_read_ms + t->keepalive_ms;
        }
    }
    return next;
}

/* ---- attempts ---- */

/* Put the attempt's stream on k (under t->mu); it ends at once if nghttp2 refuses. */
static void submit(call_ctx *c, conn *k)
{
    keel_transport *t = c->t;
    char timeout[16];
    int64_t left = c->deadline_ms - now_ms();
    keel_grpc_timeout(left, timeout);
    size_t n = 0;
    nghttp2_nv nv[t->n_meta + 10];
#define NV(n_, v_)                                                                                 \
    ((nghttp2_nv){(uint8_t *)(n_), (uint8_t *)(v_), strlen(n_), strlen(v_), NGHTTP2_NV_FLAG_NONE})
    nv[n++] = NV(":method", "POST");
    nv[n++] = NV(":scheme", t->scheme);
    nv[n++] = NV(":path", c->path);
    nv[n++] = NV(":authority", t->authority);
    nv[n++] = NV("te", "trailers");
    nv[n++] = NV("content-type", "application/grpc");
    nv[n++] = NV("user-agent", KEEL_CLIENT_NAME "/" KEEL_VERSION);
    nv[n++] = NV("grpc-timeout", timeout);
    if (c->namespace)
        nv[n++] = NV("temporal-namespace", c->namespace);
#undef NV
    memcpy(nv + n, t->meta, t->n_meta * sizeof nv[0]);
    n += t->n_meta;
    nghttp2_data_provider body = {.read_callback = read_request};
    c->sent = 0;
    int32_t id = nghttp2_submit_request(k->session, NULL, nv, n, &body, c);
    if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
        /* This connection has used every stream id: the next one takes the call. */
        k->goaway = true;
        if (t->current == k)
            t->current = NULL;
        conn *fresh = conn_open(t);
        if (fresh == NULL)
            end_with_status(c, 14, "out of memory connecting to %s", t->address);
        else if (fresh->state == CONN_READY)
            submit(c, fresh);
        return;
    }
    if (id < 0) {
        end_with_status(c, 13, "HTTP/2 refused the request: %s", nghttp2_strerror(id));
        return;
    }
    c->conn = k;
    c->stream_id = id;
    k->streams++;
}

/* Nothing of an attempt's answer yet: no stream, no headers, no status. */
static void attempt_reset(call_ctx *c)
{
    c->conn = NULL;
    c->stream_id = 0;
    c->header_bytes = 0;
    c->http_status = 0;
    c->grpc_body = false;
    c->grpc_status = -1;
    c->grpc_message[0] = '\0';
    c->end = END_STATUS;
    c->decided = false;
    c->no_retry = false;
    c->replaced = false;
    c->local_rc = KEEL_OK;
    c->err.grpc_status = KEEL_NO_GRPC_STATUS;
}

/* Start the next attempt of c (under t->mu). It ends up in t->live, or (refused at once) on
 * t->done. */
static void start_attempt(call_ctx *c)
{
    keel_transport *t = c->t;
    int64_t now = now_ms();
    int64_t left = c->budget_ms - (now - c->start_ms);
    if (left < 1)
        left = 1;
    c->attempt++;
    c->attempt_started = mono_s();
    c->deadline_ms = now + left;
    attempt_reset(c);
    live_link(t, c);
    if (!cancel_attach(c->cancel, t)) {
        c->end = END_LOCAL;
        c->local_rc = keel_error_set(&c->err, KEEL_ECANCELLED, "%s: cancelled", c->what);
        end_attempt(c);
        return;
    }
    if (c->deadline_ms < t->next_deadline) {
        t->next_deadline = c->deadline_ms;
        if (t->sleeping && c->deadline_ms < t->sleep_until)
            wake(t);
    }
    conn *k = t->current;
    if (k == NULL || k->goaway || k->state == CONN_DEAD) {
        k = conn_open(t);
        if (k == NULL) {
            end_with_status(c, 14, "out of memory connecting to %s", t->address);
            return;
        }
    }
    if (k->state == CONN_READY) {
        submit(c, k);
        conn_flush(k);
    }
}

/* Live attempts past their deadline, or whose cancel handle fired (network thread, under t->mu).
 * Returns the earliest deadline still ahead. */
static int64_t run_deadlines(keel_transport *t, int64_t now, bool cancels)
{
    int64_t next = INT64_MAX;
    call_ctx *c = t->live;
    while (c) {
        call_ctx *after = c->next;
        if (cancels && c->cancel && keel_call_cancel_triggered(c->cancel)) {
            reset_stream(c);
            c->end = END_LOCAL;
            c->local_rc = keel_error_set(&c->err, KEEL_ECANCELLED, "%s: cancelled", c->what);
            end_attempt(c);
        } else if (now >= c->deadline_ms) {
            reset_stream(c);
            end_with_status(c, 4, "Deadline Exceeded");
        } else if (c->deadline_ms < next) {
            next = c->deadline_ms;
        }
        c = after;
    }
    return next;
}

/* While calls wait to retry, the network thread wakes at least this often to see whether one was
 * cancelled (a cancel handle reaches only an attempt in flight). */
#define WAITING_TICK_MS 20

/* Retry the calls whose backoff is over; end those cancelled meanwhile (under t->mu). The time of
 * the next look. */
static int64_t run_waiting(keel_transport *t, int64_t now)
{
    if (t->waiting == NULL)
        return INT64_MAX;
    int64_t next = now + WAITING_TICK_MS;
    call_ctx *c = t->waiting;
    while (c) {
        call_ctx *after = c->next;
        if (t->closing || (c->cancel && keel_call_cancel_triggered(c->cancel))) {
            /* Its error stays the last attempt's: what it was retrying for. */
            waiting_remove(t, c);
            c->abandoned = true;
            c->next = t->done;
            t->done = c;
        } else if (now >= c->retry_at_ms) {
            waiting_remove(t, c);
            start_attempt(c);
        } else if (c->retry_at_ms < next) {
            next = c->retry_at_ms;
        }
        c = after;
    }
    return next;
}

static void ctx_free(call_ctx *c)
{
    attempt_release(c);
    free(c->request);
    if (!c->namespace_owned_by_reply)
        free(c->namespace);
    free(c);
}

/* The call is over: hand the outcome over, then free the context (network thread, no lock). */
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
        w->reply = c->answer;
        w->reply_len = c->answer_len;
        c->answer = NULL;
        w->attempt_started = c->attempt_started;
        w->done = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu); /* w may be gone from here on */
        /* The waiting thread still reads t (the address, the metrics): it gives the call back to
         * t->outstanding itself, so that keel_transport_free() waits for it. */
        ctx_free(c);
        return;
    } else if (c->reply_done) {
        keel_transport_reply *r = NULL;
        if (rc == KEEL_OK && (r = calloc(1, sizeof *r)) != NULL) {
            r->t = t;
            r->bytes = c->answer;
            r->len = c->answer_len;
            c->answer = NULL;
            r->method = c->method;
            r->namespace = c->namespace; /* handed over */
            c->namespace_owned_by_reply = true;
            r->attempt_started = c->attempt_started;
            memcpy(r->what, c->what, sizeof r->what);
        } else if (rc == KEEL_OK) {
            rc = keel_error_set(&c->err, KEEL_ENOMEM, "%s: out of memory for the answer", c->what);
        }
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

/* What an attempt that is over came to: KEEL_OK with the message in c->answer, or the error,
 * in c->err (the server's status, or why keel refused the answer). */
static int attempt_outcome(call_ctx *c)
{
    keel_error *e = &c->err;
    if (c->end == END_LOCAL) {
        e->retryable = false;
        return c->local_rc;
    }
    if (c->grpc_status == 0)
        return KEEL_OK;
    const char *msg = c->grpc_message[0] ? c->grpc_message : "(no message)";
    int rc = keel_error_set(e, keel_error_code_from_grpc(c->grpc_status), "%s failed: %s: %s",
                            c->what, keel_grpc_status_name(c->grpc_status), msg);
    e->grpc_status = c->grpc_status;
    e->retryable =
        !c->no_retry && keel_grpc_status_retryable(c->grpc_status, c->grpc_message, false);
    if (c->details)
        keel_transport_status_detail(c->details, c->details_len, e);
    return rc;
}

/* An attempt is over (network thread, no lock): finish the call, or schedule its next attempt
 * after a backoff. */
static void attempt_done(call_ctx *c)
{
    keel_transport *t = c->t;
    cancel_detach(c->cancel);
    keel_error *e = &c->err;
    if (c->abandoned) {
        e->retryable = false;
        finish(c, KEEL_ECANCELLED);
        return;
    }
    int rc = attempt_outcome(c);
    /* finish() hands c->answer over undecoded */
    bool decode_later = rc == KEEL_OK && (c->waiter || c->reply_done);
    if (rc == KEEL_OK && !decode_later)
        rc = keel_transport_decode(c->answer, c->answer_len, c->response_type, &c->response,
                                   c->want_partial ? &c->partial : NULL, c->what, e);
    if (!decode_later)
        record_attempt(t, c->method, c->namespace, c->attempt_started, rc, e);
    if (rc == KEEL_OK) {
        finish(c, KEEL_OK);
        return;
    }
    attempt_release(c);
    if (c->cancel && keel_call_cancel_triggered(c->cancel)) {
        /* However the call ended, it ended because it was abandoned. */
        e->retryable = false;
        finish(c, KEEL_ECANCELLED);
        return;
    }
    pthread_mutex_lock(&t->mu);
    bool closing = t->closing;
    pthread_mutex_unlock(&t->mu);
    if (!c->retry || !e->retryable || closing) {
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
    pthread_mutex_lock(&t->mu);
    waiting_push(t, c);
    pthread_mutex_unlock(&t->mu);
}

/* Live attempts without a stream (refused before the server saw them): onto the current
 * connection, opened if there is none (network thread, under t->mu). Those waiting for a
 * connection that is still being made are placed by conn_ready(). */
static void place_unsent(keel_transport *t)
{
    conn *k = t->current;
    if (k == NULL || k->goaway || k->state == CONN_DEAD)
        k = conn_open(t);
    for (call_ctx *c = t->live, *after; c; c = after) {
        after = c->next;
        if (c->conn != NULL)
            continue;
        if (k == NULL)
            end_with_status(c, 14, "out of memory connecting to %s", t->address);
        else if (k->state == CONN_READY)
            submit(c, k);
    }
    if (k != NULL)
        conn_flush(k);
}

/* ---- the network thread ---- */

#define MAX_EVENTS 16

static void *loop_main(void *arg)
{
    keel_transport *t = arg;
    prctl(PR_SET_NAME, "keel-net", 0, 0, 0);
    struct epoll_event evs[MAX_EVENTS];
    pthread_mutex_lock(&t->mu);
    for (;;) {
        int64_t now = now_ms();
        bool cancels = atomic_exchange(&t->cancel_pending, false);
        if (cancels || now >= t->next_deadline) {
            t->next_deadline = run_deadlines(t, now, cancels);
            /* The resets of the calls it ended go out now, not with the next write. */
            for (conn *k = t->conns; k; k = k->next)
                conn_flush(k);
        }
        if (t->unsent) {
            t->unsent = false;
            place_unsent(t);
        }
        int64_t due = t->next_deadline;
        int64_t w = run_waiting(t, now);
        if (w < due)
            due = w;
        w = conn_timers(t, now);
        if (w < due)
            due = w;
        reap_conns(t);
        call_ctx *done = t->done;
        t->done = NULL;
        if (done) {
            pthread_mutex_unlock(&t->mu);
            while (done) {
                call_ctx *c = done;
                done = c->next;
                c->next = NULL;
                attempt_done(c);
            }
            pthread_mutex_lock(&t->mu);
            continue; /* callbacks may have started calls, with deadlines of their own */
        }
        if (t->stop)
            break;
        now = now_ms();
        int timeout = due == INT64_MAX ? -1
                      : due <= now     ? 0
                                       : (int)(due - now > 60000 ? 60000 : due - now);
        t->sleeping = true;
        t->sleep_until = due;
        pthread_mutex_unlock(&t->mu);
        int n = epoll_wait(t->epfd, evs, MAX_EVENTS, timeout);
        pthread_mutex_lock(&t->mu);
        t->sleeping = false;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t count;
                ssize_t r = read(t->evfd, &count, sizeof count);
                (void)r;
                t->wake_pending = false;
                continue;
            }
            conn *k = evs[i].data.ptr;
            if (k->state != CONN_DEAD)
                conn_event(k, evs[i].events);
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- the transport ---- */

static void process_setup(void)
{
    /* A peer that closes the connection must not kill the process with SIGPIPE: plain sockets
     * use MSG_NOSIGNAL, but OpenSSL writes with write(2). */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
}

static nghttp2_nv header_nv(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

int keel_transport_new(keel_transport **out, const keel_connect_options *given, keel_error *err)
{
    static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
    pthread_once(&setup_once, process_setup);
    *out = NULL;
    int rc = keel_connect_options_validate(given, err);
    if (rc != KEEL_OK)
        return rc;
    keel_connect_options copy;
    keel_connect_options_upgrade(given, &copy); /* validate accepted its version */
    const keel_connect_options *opts = &copy;

    keel_transport *t = calloc(1, sizeof *t);
    if (t == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the transport");
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->idle, NULL);
    t->epfd = t->evfd = -1;
    t->next_deadline = INT64_MAX;
    t->keepalive_ms = KEEPALIVE_TIME_MS;
    atomic_init(&t->cancel_pending, false);
    rc = keel_grpc_parse_target(opts->address, &t->target, err);
    if (rc != KEEL_OK) {
        keel_transport_free(t);
        return rc;
    }
    bool use_tls = keel_connect_options_use_tls(opts);
    strcpy(t->scheme, use_tls ? "https" : "http");
    t->address = strdup(opts->address);
    t->namespace = strdup(opts->namespace_);
    t->identity = opts->identity ? strdup(opts->identity) : default_identity();
    t->rpc_timeout_ms = opts->rpc_timeout_ms;
    /* As gRPC does with a target name override: it is the authority too. */
    t->authority =
        strdup(use_tls && opts->tls_server_name ? opts->tls_server_name : t->target.authority);
    if (use_tls && opts->tls_server_name)
        t->tls_name = strdup(opts->tls_server_name);
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
    t->meta = calloc(t->n_headers + 3, sizeof *t->meta);
    if (!t->address || !t->namespace || !t->identity || !t->authority ||
        (opts->api_key && !t->authorization) ||
        (use_tls && opts->tls_server_name && !t->tls_name) || !headers_ok || !t->meta) {
        keel_transport_free(t);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the transport");
    }
    for (size_t i = 0; i < t->n_headers; i++)
        t->meta[t->n_meta++] = header_nv(t->headers[i].name, t->headers[i].value);
    t->meta[t->n_meta++] = header_nv("client-name", KEEL_CLIENT_NAME);
    t->meta[t->n_meta++] = header_nv("client-version", KEEL_VERSION);
    if (t->authorization)
        t->meta[t->n_meta++] = header_nv("authorization", t->authorization);

    if (use_tls) {
        rc = make_tls(opts, &t->tls, err);
        if (rc != KEEL_OK) {
            keel_transport_free(t);
            return rc;
        }
    }
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (t->epfd < 0 || t->evfd < 0 || epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &ev) != 0) {
        rc = keel_error_set(err, KEEL_EIO, "cannot set up the transport's event loop: %s",
                            strerror(errno));
        keel_transport_free(t);
        return rc;
    }
    /* Under t->mu, which the thread takes first: it sees loop_thread and loop_started set. */
    pthread_mutex_lock(&t->mu);
    int prc = pthread_create(&t->loop_thread, NULL, loop_main, t);
    t->loop_started = prc == 0;
    pthread_mutex_unlock(&t->mu);
    if (prc != 0) {
        keel_transport_free(t);
        return keel_error_set(err, KEEL_EIO, "cannot start the transport's thread: %s",
                              strerror(prc));
    }
    *out = t;
    return KEEL_OK;
}

void keel_transport_free(keel_transport *t)
{
    if (t == NULL)
        return;
    if (t->loop_started) {
        pthread_mutex_lock(&t->mu);
        t->closing = true;
        for (call_ctx *c = t->live, *after; c; c = after) {
            after = c->next;
            reset_stream(c);
            c->end = END_LOCAL;
            c->local_rc = keel_error_set(&c->err, KEEL_ECANCELLED,
                                         "%s: cancelled: the transport is closing", c->what);
            end_attempt(c);
        }
        for (conn *k = t->conns; k; k = k->next)
            conn_flush(k);
        wake(t);
        while (t->outstanding > 0 || t->resolvers > 0)
            pthread_cond_wait(&t->idle, &t->mu);
        t->stop = true;
        wake(t);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->loop_thread, NULL);
    }
    while (t->conns) {
        conn *k = t->conns;
        t->conns = k->next;
        conn_free(k);
    }
    if (t->evfd >= 0)
        close(t->evfd);
    if (t->epfd >= 0)
        close(t->epfd);
    SSL_CTX_free(t->tls);
    pthread_cond_destroy(&t->idle);
    pthread_mutex_destroy(&t->mu);
    free(t->meta);
    free(t->address);
    free(t->namespace);
    free(t->identity);
    free(t->authority);
    free(t->tls_name);
    keel_secret_free(t->authorization);
    for (size_t i = 0; i < t->n_headers; i++) {
        free((char *)t->headers[i].name);
        free((char *)t->headers[i].value);
    }
    free(t->headers);
    free(t);
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

/* Set a call up and start its first attempt. */
static int start_call(keel_transport *t, keel_rpc rpc, const ProtobufCMessage *request,
                      const ProtobufCMessageDescriptor *response_type, const keel_call_options *o,
                      keel_transport_done_fn done, keel_transport_reply_fn reply_done,
                      void *userdata, sync_waiter *waiter, keel_error *err)
{
    call_ctx *c = calloc(1, sizeof *c);
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
    if (o->namespace && (c->namespace = strdup(o->namespace)) == NULL) {
        free(c);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory starting %s", rpc.method);
    }
    size_t len = protobuf_c_message_get_packed_size(request);
    if (len > UINT32_MAX - KEEL_GRPC_PREFIX_BYTES ||
        (c->request = malloc(KEEL_GRPC_PREFIX_BYTES + len)) == NULL) {
        int rc = keel_error_set(err, KEEL_ENOMEM, "out of memory for a %zu-byte %s request", len,
                                rpc.method);
        ctx_free(c);
        return rc;
    }
    keel_grpc_prefix(c->request, (uint32_t)len);
    protobuf_c_message_pack(request, c->request + KEEL_GRPC_PREFIX_BYTES);
    c->request_len = KEEL_GRPC_PREFIX_BYTES + len;

    pthread_mutex_lock(&t->mu);
    if (t->closing) {
        pthread_mutex_unlock(&t->mu);
        int rc = keel_error_set(err, KEEL_ECANCELLED, "%s: cancelled: the transport is closing",
                                c->what);
        ctx_free(c);
        return rc;
    }
    if (c->cancel && keel_call_cancel_triggered(c->cancel)) {
        pthread_mutex_unlock(&t->mu);
        int rc = keel_error_set(err, KEEL_ECANCELLED, "%s: cancelled", c->what);
        ctx_free(c);
        return rc;
    }
    t->outstanding++;
    start_attempt(c); /* c belongs to the network thread once it is on t->done */
    pthread_mutex_unlock(&t->mu);
    return KEEL_OK;
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
    int rc = keel_transport_decode(r->bytes, r->len, response_type, response, partial, r->what, e);
    record_attempt(r->t, r->method, r->namespace, r->attempt_started, rc, e);
    keel_transport_reply_free(r);
    return rc;
}

size_t keel_transport_reply_len(const keel_transport_reply *r)
{
    return r->len;
}

void keel_transport_reply_free(keel_transport_reply *r)
{
    if (r == NULL)
        return;
    free(r->bytes);
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
    if (on_loop_thread(t))
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
            rc = keel_transport_decode(w.reply, w.reply_len, response_type, response, o.partial,
                                       what, e);
            record_attempt(t, rpc.method, o.namespace, w.attempt_started, rc, e);
        }
        free(w.reply);
        pthread_mutex_lock(&t->mu);
        if (--t->outstanding == 0 && t->closing)
            pthread_cond_broadcast(&t->idle);
        pthread_mutex_unlock(&t->mu);
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

/* ---- the answer path without a socket (for the fuzz target and the unit tests) ---- */

/* Take what the session would write (discarded: nobody reads it), as conn_flush() does. */
static void drain_discard(conn *k)
{
    const uint8_t *data;
    ssize_t n;
    while (k->state == CONN_READY && (n = nghttp2_session_mem_send(k->session, &data)) != 0)
        if (n < 0)
            conn_fail(k, "HTTP/2 session with %s failed: %s", k->t->address,
                      nghttp2_strerror((int)n));
    conn_over(k);
}

int keel_transport_answer_bytes(keel_rpc rpc, const uint8_t *server, size_t n, size_t chunk,
                                uint8_t **msg, size_t *len, keel_error *err)
{
    *msg = NULL;
    *len = 0;
    keel_error local;
    if (err == NULL)
        err = &local;
    /* A transport with no network thread (wake() has nothing to wake) and a connection with no
     * socket (fd -1: nothing to unwatch). */
    char address[] = "the server", authority[] = "localhost:7233";
    keel_transport t;
    memset(&t, 0, sizeof t);
    nghttp2_nv meta[] = {header_nv("client-name", KEEL_CLIENT_NAME),
                         header_nv("client-version", KEEL_VERSION)};
    t.meta = meta;
    t.n_meta = sizeof meta / sizeof meta[0];
    t.address = address;
    t.authority = authority;
    strcpy(t.scheme, "http");
    t.wake_pending = true;
    t.next_deadline = INT64_MAX;
    conn k;
    memset(&k, 0, sizeof k);
    k.t = &t;
    k.fd = -1;
    t.conns = t.current = &k;
    call_ctx *c = calloc(1, sizeof *c);
    uint8_t *request = malloc(KEEL_GRPC_PREFIX_BYTES);
    const char *failed = c && request ? session_new(&k) : "out of memory";
    if (failed) {
        if (k.session)
            nghttp2_session_del(k.session);
        free(c);
        free(request);
        return keel_error_set(err, KEEL_ENOMEM, "%s: %s", rpc.method, failed);
    }
    k.state = CONN_READY;
    /* The call, as start_call() and start_attempt() set it up: an empty request. */
    snprintf(c->path, sizeof c->path, "/%s/%s", rpc.service, rpc.method);
    snprintf(c->what, sizeof c->what, "%s to %s", rpc.method, t.address);
    c->t = &t;
    c->method = rpc.method;
    keel_grpc_prefix(request, 0);
    c->request = request;
    c->request_len = KEEL_GRPC_PREFIX_BYTES;
    c->budget_ms = 60000;
    c->start_ms = now_ms();
    c->attempt = 1;
    c->deadline_ms = c->start_ms + c->budget_ms;
    attempt_reset(c);
    live_link(&t, c);
    submit(c, &k);
    drain_discard(&k);
    if (chunk == 0)
        chunk = n > 0 ? n : 1;
    for (size_t off = 0; off < n && k.state == CONN_READY; off += chunk) {
        if (conn_feed(&k, server + off, n - off < chunk ? n - off : chunk))
            drain_discard(&k);
    }
    /* An answer the bytes leave unfinished ends as its deadline would end it. */
    run_deadlines(&t, INT64_MAX, false);
    drain_discard(&k);
    int rc = attempt_outcome(c);
    if (rc == KEEL_OK) {
        *msg = c->answer;
        *len = c->answer_len;
        c->answer = NULL;
    } else {
        c->err.code = rc;
        *err = c->err;
    }
    nghttp2_session_del(k.session);
    ctx_free(c);
    return rc;
}
