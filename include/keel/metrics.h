/*
 * keel/metrics.h - counters, gauges and histograms, rendered as Prometheus text, and the HTTP
 * endpoint that serves them.
 *
 * A registry (keel_metrics) holds metric families. A family has a name, a help text, a fixed list
 * of label names and, for histograms, fixed bucket bounds. Each distinct combination of label
 * values is a series, created on first use; a family holds at most KEEL_METRICS_MAX_SERIES of
 * them. A value that would make one more, a label value longer than
 * KEEL_METRICS_MAX_LABEL_VALUE bytes or not UTF-8, is dropped and counted in
 * keel_metrics_dropped_samples_total{metric="..."}: label values must come from a bounded set
 * (types, outcomes, models), never from ids.
 *
 * Recording takes the family's own mutex for a lookup among its series and an addition, never
 * anything longer; rendering copies one family at a time. Every recording function accepts a
 * NULL family and then does nothing, so code records unconditionally and metrics cost nothing
 * when they are off (no registry: every family pointer is NULL).
 *
 * Ownership: the registry owns its families; a family pointer is valid until keel_metrics_free().
 * Names and help texts are copied. Thread safety: everything here may be called from any thread.
 */
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <stddef.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caps (docs/limits.md). */
#define KEEL_METRICS_MAX_SERIES      256 /* label combinations per family */
#define KEEL_METRICS_MAX_LABELS      8   /* label names per family */
#define KEEL_METRICS_MAX_BUCKETS     32  /* histogram bounds, +Inf excluded */
#define KEEL_METRICS_MAX_FAMILIES    256 /* families per registry */
#define KEEL_METRICS_MAX_LABEL_VALUE 128 /* bytes */

typedef struct keel_metrics keel_metrics;
typedef struct keel_metric keel_metric;

/* A new, empty registry (NULL when out of memory). Free with keel_metrics_free(). */
keel_metrics *keel_metrics_new(void);
void keel_metrics_free(keel_metrics *m);

/*
 * Register a family, or find the one registered under the same name with the same type and
 * label names (so independent modules may both ask for it). name follows Prometheus
 * ([a-zA-Z_:][a-zA-Z0-9_:]*); a counter's name ends in _total. labels are n_labels label names
 * (borrowed during the call). Returns NULL, with err set, for a bad name, a clash with a family
 * of another shape, too many families or out of memory; with m NULL it returns NULL and sets
 * nothing (metrics off).
 */
keel_metric *keel_metrics_counter(keel_metrics *m, const char *name, const char *help,
                                  const char *const *labels, size_t n_labels, keel_error *err);
keel_metric *keel_metrics_gauge(keel_metrics *m, const char *name, const char *help,
                                const char *const *labels, size_t n_labels, keel_error *err);
/* bounds: n_bounds strictly increasing finite upper bounds; the +Inf bucket is implicit. */
keel_metric *keel_metrics_histogram(keel_metrics *m, const char *name, const char *help,
                                    const char *const *labels, size_t n_labels,
                                    const double *bounds, size_t n_bounds, keel_error *err);

/*
 * Record. values holds one label value per label name, in the family's order (NULL when the
 * family has no labels; a NULL value is ""). keel_metric_add: a counter grows by v (v >= 0,
 * anything else is ignored) or a gauge moves by v; keel_metric_set: a gauge becomes v;
 * keel_metric_observe: a histogram gets one observation. A call of the wrong kind for the family
 * does nothing.
 */
void keel_metric_add(keel_metric *f, const char *const *values, double v);
void keel_metric_set(keel_metric *f, const char *const *values, double v);
void keel_metric_observe(keel_metric *f, const char *const *values, double v);

/* Samples dropped by the caps so far, over all families. */
unsigned long long keel_metrics_dropped(keel_metrics *m);

/*
 * The registry in Prometheus text exposition format 0.0.4: HELP and TYPE per family, series in
 * the order they were created, histograms as cumulative _bucket lines (le="+Inf" last), _sum and
 * _count. *out is a new NUL-terminated string of *len bytes the caller frees.
 */
int keel_metrics_render(keel_metrics *m, char **out, size_t *len, keel_error *err);

/* Bucket bounds keel uses for latencies in seconds: short (RPCs, tasks, model calls: 1 ms to
 * 10 min) and long (end-to-end: 10 ms to 30 days). */
extern const double keel_metrics_latency_buckets[];
extern const size_t keel_metrics_n_latency_buckets;
extern const double keel_metrics_long_latency_buckets[];
extern const size_t keel_metrics_n_long_latency_buckets;

/*
 * The /metrics endpoint: an HTTP server (libmicrohttpd) on its own thread that answers
 * GET and HEAD /metrics with the registry's text; other paths get 404, other methods 405.
 * It serves at most KEEL_METRICS_HTTP_MAX_CONNECTIONS connections at once and closes a
 * connection idle for KEEL_METRICS_HTTP_TIMEOUT_S seconds.
 *
 * address is "host:port" ("127.0.0.1:9464", "[::1]:9464", "localhost:9464", ":9464" for every
 * interface); port 1-65535, or 0 for any free one (keel_metrics_server_port() says which). A bad
 * address or a port that cannot be bound is KEEL_EINVAL / KEEL_EIO
 * with the reason. The server borrows m, which must outlive it. Stop and free with
 * keel_metrics_server_free() (NULL is allowed).
 */
#define KEEL_METRICS_HTTP_MAX_CONNECTIONS 16
#define KEEL_METRICS_HTTP_TIMEOUT_S       10

typedef struct keel_metrics_server keel_metrics_server;
int keel_metrics_server_start(keel_metrics_server **out, keel_metrics *m, const char *address,
                              keel_error *err);
/* The port the server listens on (the one chosen for port 0). */
int keel_metrics_server_port(const keel_metrics_server *s);
void keel_metrics_server_free(keel_metrics_server *s);

#ifdef __cplusplus
}
#endif

#endif
