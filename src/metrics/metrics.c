/* metrics - a registry of counters, gauges and histograms, rendered as Prometheus text. */
#include "keel/metrics.h"
#include "keel/trace.h"
#include "util/strbuf.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind;

/* One label combination. values: n_labels strings, each its own allocation; buckets: n_bounds + 1
 * non-cumulative counts (the last one is +Inf's share). */
typedef struct series {
    char **values;
    uint64_t hash;
    double value; /* counter / gauge */
    uint64_t *buckets;
    uint64_t count;
    double sum;
} series;

struct keel_metric {
    keel_metrics *owner;
    kind kind;
    char *name, *help;
    char *labels[KEEL_METRICS_MAX_LABELS];
    size_t n_labels;
    double bounds[KEEL_METRICS_MAX_BUCKETS];
    size_t n_bounds;
    pthread_mutex_t mu;
    series *series; /* in creation order */
    size_t n_series, cap_series;
    unsigned long long dropped;
};

struct keel_metrics {
    pthread_mutex_t mu; /* the family list */
    keel_metric *families[KEEL_METRICS_MAX_FAMILIES];
    size_t n_families;
};

const double keel_metrics_latency_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
const size_t keel_metrics_n_latency_buckets =
    sizeof keel_metrics_latency_buckets / sizeof keel_metrics_latency_buckets[0];
const double keel_metrics_long_latency_buckets[] = {0.01, 0.1,   0.5,   1,      5,      10,
                                                    30,   60,    300,   900,    1800,   3600,
                                                    7200, 21600, 86400, 259200, 604800, 2592000};
const size_t keel_metrics_n_long_latency_buckets =
    sizeof keel_metrics_long_latency_buckets / sizeof keel_metrics_long_latency_buckets[0];

/* ---- registry ---- */

keel_metrics *keel_metrics_new(void)
{
    keel_metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

static void family_free(keel_metric *f)
{
    for (size_t i = 0; i < f->n_series; i++) {
        for (size_t j = 0; j < f->n_labels; j++)
            free(f->series[i].values[j]);
        free(f->series[i].values);
        free(f->series[i].buckets);
    }
    free(f->series);
    for (size_t j = 0; j < f->n_labels; j++)
        free(f->labels[j]);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void keel_metrics_free(keel_metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_families; i++)
        family_free(m->families[i]);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static bool name_ok(const char *s, bool colon)
{
    if (s == NULL || s[0] == '\0')
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static const char *kind_name(kind k)
{
    return k == KIND_COUNTER ? "counter" : k == KIND_GAUGE ? "gauge" : "histogram";
}

static bool same_shape(const keel_metric *f, kind k, const char *const *labels, size_t n_labels,
                       const double *bounds, size_t n_bounds)
{
    if (f->kind != k || f->n_labels != n_labels || f->n_bounds != n_bounds)
        return false;
    for (size_t i = 0; i < n_labels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return false;
    for (size_t i = 0; i < n_bounds; i++)
        if (f->bounds[i] != bounds[i])
            return false;
    return true;
}

static keel_metric *reg(keel_metrics *m, kind k, const char *name, const char *help,
                        const char *const *labels, size_t n_labels, const double *bounds,
                        size_t n_bounds, keel_error *err)
{
    if (m == NULL)
        return NULL;
    if (!name_ok(name, true) || strncmp(name, "__", 2) == 0) {
        keel_error_set(err, KEEL_EINVAL, "metric name '%s' is not a Prometheus name",
                       name ? name : "(null)");
        return NULL;
    }
    if (n_labels > KEEL_METRICS_MAX_LABELS || n_bounds > KEEL_METRICS_MAX_BUCKETS) {
        keel_error_set(err, KEEL_EINVAL, "metric %s: more than %d labels or %d buckets", name,
                       KEEL_METRICS_MAX_LABELS, KEEL_METRICS_MAX_BUCKETS);
        return NULL;
    }
    for (size_t i = 0; i < n_labels; i++) {
        if (!name_ok(labels[i], false) || strncmp(labels[i], "__", 2) == 0 ||
            (k == KIND_HISTOGRAM && strcmp(labels[i], "le") == 0)) {
            keel_error_set(err, KEEL_EINVAL, "metric %s: '%s' is not a label name it may use", name,
                           labels[i] ? labels[i] : "(null)");
            return NULL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0) {
                keel_error_set(err, KEEL_EINVAL, "metric %s: label %s twice", name, labels[i]);
                return NULL;
            }
    }
    for (size_t i = 0; i < n_bounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
            keel_error_set(err, KEEL_EINVAL,
                           "metric %s: bucket bounds must be finite and strictly increasing", name);
            return NULL;
        }
    pthread_mutex_lock(&m->mu);
    keel_metric *f = NULL;
    for (size_t i = 0; i < m->n_families; i++)
        if (strcmp(m->families[i]->name, name) == 0) {
            f = m->families[i];
            break;
        }
    if (f) {
        pthread_mutex_unlock(&m->mu);
        if (same_shape(f, k, labels, n_labels, bounds, n_bounds))
            return f;
        keel_error_set(err, KEEL_EEXISTS,
                       "metric %s is registered already as a %s with other labels or buckets", name,
                       kind_name(f->kind));
        return NULL;
    }
    if (m->n_families == KEEL_METRICS_MAX_FAMILIES) {
        pthread_mutex_unlock(&m->mu);
        keel_error_set(err, KEEL_EEXHAUSTED, "metric %s: the registry holds %d families already",
                       name, KEEL_METRICS_MAX_FAMILIES);
        return NULL;
    }
    f = calloc(1, sizeof *f);
    bool ok = f != NULL;
    if (ok) {
        f->owner = m;
        f->kind = k;
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        pthread_mutex_init(&f->mu, NULL);
        ok = f->name && f->help;
        for (size_t i = 0; ok && i < n_labels; i++) {
            ok = (f->labels[i] = strdup(labels[i])) != NULL;
            f->n_labels = i + 1;
        }
        if (n_bounds)
            memcpy(f->bounds, bounds, n_bounds * sizeof *bounds);
        f->n_bounds = n_bounds;
    }
    if (!ok) {
        pthread_mutex_unlock(&m->mu);
        if (f)
            family_free(f);
        keel_error_set(err, KEEL_ENOMEM, "out of memory registering metric %s", name);
        return NULL;
    }
    m->families[m->n_families++] = f;
    pthread_mutex_unlock(&m->mu);
    return f;
}

keel_metric *keel_metrics_counter(keel_metrics *m, const char *name, const char *help,
                                  const char *const *labels, size_t n_labels, keel_error *err)
{
    return reg(m, KIND_COUNTER, name, help, labels, n_labels, NULL, 0, err);
}

keel_metric *keel_metrics_gauge(keel_metrics *m, const char *name, const char *help,
                                const char *const *labels, size_t n_labels, keel_error *err)
{
    return reg(m, KIND_GAUGE, name, help, labels, n_labels, NULL, 0, err);
}

keel_metric *keel_metrics_histogram(keel_metrics *m, const char *name, const char *help,
                                    const char *const *labels, size_t n_labels,
                                    const double *bounds, size_t n_bounds, keel_error *err)
{
    return reg(m, KIND_HISTOGRAM, name, help, labels, n_labels, bounds, n_bounds, err);
}

/* ---- recording ---- */

static bool utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static uint64_t hash_values(const keel_metric *f, const char *const *values)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values && values[i] ? values[i] : "";
        for (const unsigned char *p = (const unsigned char *)v; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xFF) * 1099511628211ULL; /* a separator no UTF-8 byte string contains */
    }
    return h;
}

static bool values_equal(const keel_metric *f, const series *s, const char *const *values)
{
    for (size_t i = 0; i < f->n_labels; i++)
        if (strcmp(s->values[i], values && values[i] ? values[i] : "") != 0)
            return false;
    return true;
}

/* The series for values, created when new; NULL (counted as dropped) past a cap. Under f->mu. */
static series *find_series(keel_metric *f, const char *const *values)
{
    uint64_t h = hash_values(f, values);
    for (size_t i = 0; i < f->n_series; i++)
        if (f->series[i].hash == h && values_equal(f, &f->series[i], values))
            return &f->series[i];
    if (f->n_series == KEEL_METRICS_MAX_SERIES)
        goto drop;
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values && values[i] ? values[i] : "";
        size_t n = strlen(v);
        if (n > KEEL_METRICS_MAX_LABEL_VALUE || !utf8_ok(v, n))
            goto drop;
    }
    if (f->n_series == f->cap_series) {
        size_t cap = f->cap_series ? f->cap_series * 2 : 4;
        if (cap > KEEL_METRICS_MAX_SERIES)
            cap = KEEL_METRICS_MAX_SERIES;
        series *p = realloc(f->series, cap * sizeof *p);
        if (p == NULL)
            goto drop;
        f->series = p;
        f->cap_series = cap;
    }
    series s = {.hash = h};
    s.values = calloc(f->n_labels ? f->n_labels : 1, sizeof *s.values);
    if (s.values == NULL)
        goto drop;
    if (f->kind == KIND_HISTOGRAM &&
        (s.buckets = calloc(f->n_bounds + 1, sizeof *s.buckets)) == NULL) {
        free(s.values);
        goto drop;
    }
    for (size_t i = 0; i < f->n_labels; i++) {
        if ((s.values[i] = strdup(values && values[i] ? values[i] : "")) == NULL) {
            for (size_t j = 0; j < i; j++)
                free(s.values[j]);
            free(s.values);
            free(s.buckets);
            goto drop;
        }
    }
    f->series[f->n_series] = s;
    return &f->series[f->n_series++];
drop:
    f->dropped++;
    return NULL;
}

void keel_metric_add(keel_metric *f, const char *const *values, double v)
{
    if (f == NULL || f->kind == KIND_HISTOGRAM || isnan(v) ||
        (f->kind == KIND_COUNTER && !(v >= 0)))
        return;
    pthread_mutex_lock(&f->mu);
    series *s = find_series(f, values);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&f->mu);
}

void keel_metric_set(keel_metric *f, const char *const *values, double v)
{
    if (f == NULL || f->kind != KIND_GAUGE)
        return;
    pthread_mutex_lock(&f->mu);
    series *s = find_series(f, values);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&f->mu);
}

void keel_metric_observe(keel_metric *f, const char *const *values, double v)
{
    if (f == NULL || f->kind != KIND_HISTOGRAM || isnan(v))
        return;
    /* The bucket: the first bound >= v (Prometheus buckets are "less than or equal"). */
    size_t b = 0;
    while (b < f->n_bounds && v > f->bounds[b])
        b++;
    pthread_mutex_lock(&f->mu);
    series *s = find_series(f, values);
    if (s) {
        s->buckets[b]++;
        s->count++;
        s->sum += v;
    }
    pthread_mutex_unlock(&f->mu);
}

unsigned long long keel_metrics_dropped(keel_metrics *m)
{
    if (m == NULL)
        return 0;
    unsigned long long n = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n_families; i++) {
        pthread_mutex_lock(&m->families[i]->mu);
        n += m->families[i]->dropped;
        pthread_mutex_unlock(&m->families[i]->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* ---- rendering ---- */

typedef keel_strbuf buf;

static void put(buf *b, const char *s, size_t n)
{
    keel_strbuf_put(b, s, n);
}

static void puts_(buf *b, const char *s)
{
    keel_strbuf_puts(b, s);
}

/* A short formatted piece (a number, a label): at most 127 bytes. */
static void putf(buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A number as Prometheus reads it: integers without a fraction, +Inf / -Inf / NaN, otherwise
 * the shorter of %.15g and %.17g that reads back as v (0.1, not 0.10000000000000001). */
static void format_number(char *out, size_t n, double v)
{
    if (isnan(v))
        snprintf(out, n, "NaN");
    else if (isinf(v))
        snprintf(out, n, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, n, "%.0f", v);
    else {
        snprintf(out, n, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, n, "%.17g", v);
    }
}

static void put_value(buf *b, double v)
{
    char tmp[40];
    format_number(tmp, sizeof tmp, v);
    puts_(b, tmp);
}

/* Help text: backslash and newline escaped. Label values: also the double quote. */
static void put_escaped(buf *b, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            puts_(b, "\\\\");
        else if (*p == '\n')
            puts_(b, "\\n");
        else if (quote && *p == '"')
            puts_(b, "\\\"");
        else
            put(b, p, 1);
    }
}

/* {a="x",b="y"[,le="..."]}, or nothing when there are no labels and no le. */
static void put_labels(buf *b, const keel_metric *f, char *const *values, const char *le)
{
    if (f->n_labels == 0 && le == NULL)
        return;
    puts_(b, "{");
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i)
            puts_(b, ",");
        puts_(b, f->labels[i]);
        puts_(b, "=\"");
        put_escaped(b, values[i], true);
        puts_(b, "\"");
    }
    if (le) {
        if (f->n_labels)
            puts_(b, ",");
        puts_(b, "le=\"");
        puts_(b, le);
        puts_(b, "\"");
    }
    puts_(b, "}");
}

static void render_family(buf *b, keel_metric *f)
{
    pthread_mutex_lock(&f->mu);
    puts_(b, "# HELP ");
    puts_(b, f->name);
    puts_(b, " ");
    put_escaped(b, f->help, false);
    puts_(b, "\n# TYPE ");
    puts_(b, f->name);
    puts_(b, " ");
    puts_(b, kind_name(f->kind));
    puts_(b, "\n");
    /* An unlabelled counter or gauge has its one series from the start. */
    if (f->n_series == 0 && f->n_labels == 0 && f->kind != KIND_HISTOGRAM) {
        puts_(b, f->name);
        puts_(b, " 0\n");
    }
    for (size_t i = 0; i < f->n_series; i++) {
        const series *s = &f->series[i];
        if (f->kind != KIND_HISTOGRAM) {
            puts_(b, f->name);
            put_labels(b, f, s->values, NULL);
            puts_(b, " ");
            put_value(b, s->value);
            puts_(b, "\n");
            continue;
        }
        uint64_t cum = 0;
        for (size_t k = 0; k <= f->n_bounds; k++) {
            char le[40];
            cum += s->buckets[k];
            if (k < f->n_bounds)
                format_number(le, sizeof le, f->bounds[k]);
            else
                snprintf(le, sizeof le, "+Inf");
            puts_(b, f->name);
            puts_(b, "_bucket");
            put_labels(b, f, s->values, le);
            putf(b, " %llu\n", (unsigned long long)cum);
        }
        puts_(b, f->name);
        puts_(b, "_sum");
        put_labels(b, f, s->values, NULL);
        puts_(b, " ");
        put_value(b, s->sum);
        puts_(b, "\n");
        puts_(b, f->name);
        puts_(b, "_count");
        put_labels(b, f, s->values, NULL);
        putf(b, " %llu\n", (unsigned long long)s->count);
    }
    pthread_mutex_unlock(&f->mu);
}

int keel_metrics_render(keel_metrics *m, char **out, size_t *len, keel_error *err)
{
    *out = NULL;
    if (len)
        *len = 0;
    if (m == NULL)
        return keel_error_set(err, KEEL_EINVAL, "no metrics registry");
    buf b = {0};
    puts_(&b, "");
    pthread_mutex_lock(&m->mu);
    size_t n = m->n_families;
    keel_metric *fams[KEEL_METRICS_MAX_FAMILIES];
    memcpy(fams, m->families, n * sizeof *fams);
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++)
        render_family(&b, fams[i]);
    /* What the caps dropped, per family (families live as long as the registry). */
    puts_(&b, "# HELP keel_metrics_dropped_samples_total Samples not recorded because a label "
              "value was too long, not UTF-8, or one label combination too many "
              "(KEEL_METRICS_MAX_SERIES per metric).\n"
              "# TYPE keel_metrics_dropped_samples_total counter\n");
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&fams[i]->mu);
        unsigned long long d = fams[i]->dropped;
        pthread_mutex_unlock(&fams[i]->mu);
        puts_(&b, "keel_metrics_dropped_samples_total{metric=\"");
        puts_(&b, fams[i]->name);
        putf(&b, "\"} %llu\n", d);
    }
    /* The trace exporter's counts are the process's (keel/trace.h), read at each scrape: the
     * dropped ones are the spans a full queue or a failed export lost. */
    if (keel_trace_enabled() || keel_trace_exported_spans() || keel_trace_dropped_spans()) {
        puts_(&b, "# HELP keel_trace_spans_exported_total Spans the OTLP exporter delivered.\n"
                  "# TYPE keel_trace_spans_exported_total counter\n");
        putf(&b, "keel_trace_spans_exported_total %llu\n",
             (unsigned long long)keel_trace_exported_spans());
        puts_(&b, "# HELP keel_trace_spans_dropped_total Spans lost: the export queue was full "
                  "(OTEL_BSP_MAX_QUEUE_SIZE) or the collector did not take them.\n"
                  "# TYPE keel_trace_spans_dropped_total counter\n");
        putf(&b, "keel_trace_spans_dropped_total %llu\n",
             (unsigned long long)keel_trace_dropped_spans());
    }
    if (b.oom) {
        free(b.p);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory rendering metrics");
    }
    *out = b.p;
    if (len)
        *len = b.len;
    return KEEL_OK;
}
