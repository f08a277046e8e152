/*
 * keel/trace.h - OpenTelemetry traces: spans, W3C trace context, OTLP/HTTP export.
 *
 * Off unless the process called keel_trace_start() with an endpoint (keel-worker does, from the
 * standard OTEL_* variables: docs/observability.md). While off, keel_span_start() returns NULL
 * and every other call takes NULL and does nothing: tracing costs a branch.
 *
 * A span is owned by whoever started it until keel_span_end(), which hands it to the exporter
 * (when sampled) or frees it: the pointer is invalid after that call. Spans are not shared
 * between threads while open. keel_span_end() never blocks on the network: ended spans go into
 * a bounded queue that one exporter thread sends in batches (OTLP/HTTP protobuf, libcurl); when
 * the queue is full the span is dropped and counted (keel_trace_dropped_spans()).
 *
 * Activities make child spans of the current span (keel_trace_current()), which the worker sets
 * to the RunActivity span while an activity runs. Caps on outside input: docs/limits.md.
 */
#ifndef KEEL_TRACE_H
#define KEEL_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest tracestate keel reads or carries (W3C: 32 members; 512 bytes is what
 * implementations must at least propagate). A longer one is dropped, the traceparent kept. */
#define KEEL_TRACESTATE_MAX 512
/* A traceparent is exactly 55 characters (version 00); keel formats no other. */
#define KEEL_TRACEPARENT_LEN 55

/* Where a span sits in a trace. Zero-initialised: invalid (no parent). */
typedef struct keel_span_context {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; /* bit 0: sampled */
    bool valid;
    bool remote; /* came from a header, not from a span of this process */
    char tracestate[KEEL_TRACESTATE_MAX + 1];
} keel_span_context;

typedef enum keel_span_kind {
    KEEL_SPAN_INTERNAL = 1,
    KEEL_SPAN_SERVER = 2,
    KEEL_SPAN_CLIENT = 3,
} keel_span_kind;

typedef enum keel_span_status {
    KEEL_SPAN_UNSET = 0,
    KEEL_SPAN_OK = 1,
    KEEL_SPAN_ERROR = 2,
} keel_span_status;

typedef struct keel_span keel_span;

/* ---- W3C trace context (strict: anything else than the spec's grammar is refused) ---- */

/* Parse a traceparent header: "00-<32 hex>-<16 hex>-<2 hex>", lower-case hex, ids not all zero;
 * versions above 00 are read by the same prefix (and may carry "-..." after it), version ff is
 * refused. A tracestate that is not valid (list-members of the W3C grammar, at most 32, at most
 * KEEL_TRACESTATE_MAX bytes) is dropped. KEEL_OK or KEEL_EINVAL (out untouched but invalid). */
int keel_traceparent_parse(const char *traceparent, const char *tracestate, keel_span_context *out);

/* Format ctx as a version 00 traceparent into out (KEEL_TRACEPARENT_LEN + 1 bytes).
 * KEEL_EINVAL for an invalid context. */
int keel_traceparent_format(const keel_span_context *ctx, char out[KEEL_TRACEPARENT_LEN + 1]);

/* Whether s is a tracestate keel carries (see keel_traceparent_parse). */
bool keel_tracestate_valid(const char *s);

/* Lower-case hex of the ids: 33 and 17 bytes with the terminator. */
void keel_trace_id_hex(const uint8_t id[16], char out[33]);
void keel_span_id_hex(const uint8_t id[8], char out[17]);

/* ---- the process's tracer ---- */

typedef enum keel_sampler {
    KEEL_SAMPLER_PARENTBASED_ALWAYS_ON = 0, /* the OTel default */
    KEEL_SAMPLER_PARENTBASED_ALWAYS_OFF,
    KEEL_SAMPLER_PARENTBASED_TRACEIDRATIO,
    KEEL_SAMPLER_ALWAYS_ON,
    KEEL_SAMPLER_ALWAYS_OFF,
    KEEL_SAMPLER_TRACEIDRATIO,
} keel_sampler;

#define KEEL_TRACE_HEADERS_MAX  32 /* OTEL_EXPORTER_OTLP_HEADERS entries */
#define KEEL_TRACE_RESOURCE_MAX 64 /* OTEL_RESOURCE_ATTRIBUTES entries */

typedef struct keel_trace_kv {
    char *key;
    char *value;
} keel_trace_kv;

/* What keel_trace_config_from_env() reads. Strings are owned (keel_trace_config_clear). */
typedef struct keel_trace_config {
    bool enabled;   /* an endpoint is set and OTEL_SDK_DISABLED is not true */
    char *endpoint; /* the full URL spans are POSTed to (.../v1/traces) */
    keel_trace_kv headers[KEEL_TRACE_HEADERS_MAX];
    size_t n_headers;
    keel_trace_kv resource[KEEL_TRACE_RESOURCE_MAX]; /* includes service.name */
    size_t n_resource;
    keel_sampler sampler;
    double ratio;         /* for the traceidratio samplers, 0..1 */
    size_t max_queue;     /* OTEL_BSP_MAX_QUEUE_SIZE (2048) */
    size_t max_batch;     /* OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512) */
    int64_t delay_ms;     /* OTEL_BSP_SCHEDULE_DELAY (5000) */
    int64_t timeout_ms;   /* OTEL_EXPORTER_OTLP_TRACES_TIMEOUT / _TIMEOUT (10000) */
    bool capture_content; /* KEEL_TRACE_CONTENT=true: message content and tool arguments */
} keel_trace_config;

/* Read the OTEL_* variables (through get, e.g. a wrapper of getenv; NULL: the environment).
 * service_default names the service when OTEL_SERVICE_NAME and the resource do not. Bad values
 * are errors that name the variable (a misconfigured exporter should not start silently);
 * an unset endpoint is not an error: enabled stays false. */
int keel_trace_config_from_env(keel_trace_config *out, const char *service_default,
                               const char *(*get)(const char *name, void *arg), void *arg,
                               keel_error *err);
void keel_trace_config_clear(keel_trace_config *cfg);

/* Parse OTEL_EXPORTER_OTLP_HEADERS ("k1=v1,k2=v2", values percent-decoded) into cfg->headers.
 * Keys must be HTTP tokens, values may not hold control characters; at most
 * KEEL_TRACE_HEADERS_MAX entries and 8 KiB. Exposed for tests and fuzzing. */
int keel_trace_parse_headers(const char *s, keel_trace_config *cfg, keel_error *err);

/* Start the tracer with cfg (copied): the exporter thread, the queue. A disabled cfg leaves
 * tracing off and returns KEEL_OK. Call once, before spans; not thread-safe with itself. */
int keel_trace_start(const keel_trace_config *cfg, keel_error *err);

/* Send what is queued (waiting up to timeout_ms for the collector), stop the exporter thread,
 * turn tracing off. Safe when tracing never started. */
void keel_trace_shutdown(int64_t timeout_ms);

/* Whether spans are being made. */
bool keel_trace_enabled(void);
/* Whether message content and tool arguments may go into spans (KEEL_TRACE_CONTENT). */
bool keel_trace_capture_content(void);

/* Spans that were ended but never reached the collector: queue full, or the export failed. */
uint64_t keel_trace_dropped_spans(void);
/* Spans the collector accepted. */
uint64_t keel_trace_exported_spans(void);

/* ---- spans ---- */

typedef struct keel_span_options {
    keel_span_kind kind;             /* 0: internal */
    const keel_span_context *parent; /* NULL: the current span of this thread (or a root) */
    bool root;                       /* ignore the current span: a new trace unless parent set */
    const uint8_t *span_id;  /* 8 bytes: a deterministic id (workflow spans); NULL: random */
    const uint8_t *trace_id; /* 16 bytes for a root span; NULL: random */
    int64_t start_ns;        /* unix time; 0: now */
} keel_span_options;

/* Start a span named name (copied; cut at 256 bytes). NULL when tracing is off or out of
 * memory; all span functions accept NULL. */
keel_span *keel_span_start(const char *name, const keel_span_options *opts);

/* Attributes (key and value copied; at most 128 a span, string values cut at 4 KiB; a later
 * value for a key already set replaces it). Nothing is kept for a span that is not sampled. */
void keel_span_set_str(keel_span *s, const char *key, const char *value);
void keel_span_set_int(keel_span *s, const char *key, int64_t value);
void keel_span_set_double(keel_span *s, const char *key, double value);
void keel_span_set_bool(keel_span *s, const char *key, bool value);
/* A string array attribute (e.g. gen_ai.response.finish_reasons). */
void keel_span_set_strs(keel_span *s, const char *key, const char *const *values, size_t n);

/* An event at now (at most 128 a span), with an optional string attribute (key NULL: none). */
void keel_span_add_event(keel_span *s, const char *name, const char *key, const char *value);

/* Set the status; message only counts for KEEL_SPAN_ERROR (cut at 1 KiB). */
void keel_span_set_status(keel_span *s, keel_span_status status, const char *message);

/* The span's context, for children and for headers (invalid for NULL). */
keel_span_context keel_span_get_context(const keel_span *s);

/* End the span (at end_ns, 0: now) and hand it to the exporter. s is invalid after the call. */
void keel_span_end_at(keel_span *s, int64_t end_ns);
void keel_span_end(keel_span *s);

/* ---- the current span of this thread (what children and log lines refer to) ---- */

/* Make ctx this thread's current span context (NULL or invalid: none) and return what was
 * current before, to restore with a second call. */
keel_span_context keel_trace_set_current(const keel_span_context *ctx);
/* This thread's current span context (invalid when none). Borrowed, thread-local. */
const keel_span_context *keel_trace_current(void);

/* A deterministic id: the first n bytes (n <= 32) of SHA-256 over the parts joined by '\n'.
 * Workflow spans use it (run id + event or activity id) so that a retried workflow task makes
 * the same spans, and a worker that rebuilds the run agrees with the one before it. */
void keel_trace_derive_id(uint8_t *out, size_t n, const char *const *parts, size_t n_parts);

#ifdef __cplusplus
}
#endif

#endif
