/*
 * trace - spans, W3C trace context, the OTEL_* configuration and the OTLP/HTTP exporter
 * (include/keel/trace.h, src/trace/trace.h).
 */
#include "trace/trace.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "converter/payload.h"
#include "keel/version.h"
#include "log/log.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#define NAME_MAX_BYTES         256
#define ATTRS_MAX              128
#define EVENTS_MAX             128
#define VALUE_MAX_BYTES        4096
#define STATUS_MAX_BYTES       1024
#define HEADERS_MAX_BYTES      8192
#define RESOURCE_MAX_BYTES     8192
#define URL_MAX_BYTES          2048
#define TRACESTATE_MEMBERS_MAX 32

/* ---- hex and ids ---- */

static const char hexdigits[] = "0123456789abcdef";

static void to_hex(const uint8_t *v, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[v[i] >> 4];
        out[2 * i + 1] = hexdigits[v[i] & 15];
    }
    out[2 * n] = '\0';
}

void keel_trace_id_hex(const uint8_t id[16], char out[33])
{
    to_hex(id, 16, out);
}

void keel_span_id_hex(const uint8_t id[8], char out[17])
{
    to_hex(id, 8, out);
}

static int lower_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* n bytes from 2n lower-case hex digits; false on anything else. */
static bool from_hex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = lower_hex(s[2 * i]), lo = hi < 0 ? -1 : lower_hex(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i])
            return false;
    return true;
}

void keel_trace_derive_id(uint8_t *out, size_t n, const char *const *parts, size_t n_parts)
{
    uint8_t md[32] = {0};
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1) {
        for (size_t i = 0; i < n_parts; i++) {
            if (i)
                EVP_DigestUpdate(c, "\n", 1);
            const char *p = parts[i] ? parts[i] : "";
            EVP_DigestUpdate(c, p, strlen(p));
        }
        EVP_DigestFinal_ex(c, md, NULL);
    }
    EVP_MD_CTX_free(c);
    memcpy(out, md, n > sizeof md ? sizeof md : n);
    if (all_zero(out, n)) /* an id of zeros is invalid; vanishingly rare, made valid */
        out[n - 1] = 1;
}

static void random_bytes(uint8_t *out, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) { /* no entropy source: a clock-seeded fallback, never all zeros */
            uint64_t x = (uint64_t)keel_trace_now_ns() ^ (uint64_t)(uintptr_t)out;
            for (; got < n; got++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                out[got] = (uint8_t)x;
            }
            break;
        }
        got += (size_t)r;
    }
    if (all_zero(out, n))
        out[n - 1] = 1;
}

int64_t keel_trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- W3C trace context ---- */

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' ||
           c == '/' || c == '@';
}

/* One tracestate list-member "key=value" in s[0..n), optional surrounding spaces/tabs. */
static bool tracestate_member(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    const char *eq = memchr(s, '=', n);
    if (eq == NULL)
        return false;
    size_t klen = (size_t)(eq - s), vlen = n - klen - 1;
    if (klen == 0 || klen > 256 || vlen == 0 || vlen > 256)
        return false;
    /* key: simple-key, or tenant-id@system-id; lower-case letters, digits, _-*\/ and one '@' */
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return false;
    int ats = 0;
    for (size_t i = 0; i < klen; i++) {
        if (!key_char(s[i]))
            return false;
        ats += s[i] == '@';
    }
    if (ats > 1 || s[klen - 1] == '@')
        return false;
    /* value: printable ASCII 0x20-0x7e except ',' and '=', not ending in a space */
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)eq[1 + i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return false;
    }
    return true;
}

bool keel_tracestate_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t len = strlen(s);
    if (len > KEEL_TRACESTATE_MAX)
        return false;
    int members = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        /* empty members (",,") are allowed by the grammar; spaces-only too */
        bool blank = true;
        for (size_t i = 0; i < n; i++)
            blank = blank && (p[i] == ' ' || p[i] == '\t');
        if (!blank) {
            if (!tracestate_member(p, n) || ++members > TRACESTATE_MEMBERS_MAX)
                return false;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return true;
}

int keel_traceparent_parse(const char *tp, const char *tracestate, keel_span_context *out)
{
    memset(out, 0, sizeof *out);
    if (tp == NULL)
        return KEEL_EINVAL;
    size_t len = strnlen(tp, 1024);
    if (len < KEEL_TRACEPARENT_LEN || len >= 1024)
        return KEEL_EINVAL;
    uint8_t version;
    if (!from_hex(tp, &version, 1) || version == 0xff || tp[2] != '-' || tp[35] != '-' ||
        tp[52] != '-')
        return KEEL_EINVAL;
    /* version 00 is exactly 55 characters; a later version may add fields after a '-' */
    if (version == 0 ? len != KEEL_TRACEPARENT_LEN
                     : len > KEEL_TRACEPARENT_LEN && tp[KEEL_TRACEPARENT_LEN] != '-')
        return KEEL_EINVAL;
    keel_span_context c = {0};
    if (!from_hex(tp + 3, c.trace_id, 16) || !from_hex(tp + 36, c.span_id, 8) ||
        !from_hex(tp + 53, &c.flags, 1))
        return KEEL_EINVAL;
    if (all_zero(c.trace_id, 16) || all_zero(c.span_id, 8))
        return KEEL_EINVAL;
    if (version == 0)
        c.flags &= 0x01; /* only "sampled" is defined; unknown flags are not passed on */
    c.flags &= 0x01;
    c.valid = true;
    c.remote = true;
    if (tracestate && keel_tracestate_valid(tracestate))
        snprintf(c.tracestate, sizeof c.tracestate, "%s", tracestate);
    *out = c;
    return KEEL_OK;
}

int keel_traceparent_format(const keel_span_context *ctx, char out[KEEL_TRACEPARENT_LEN + 1])
{
    if (ctx == NULL || !ctx->valid) {
        out[0] = '\0';
        return KEEL_EINVAL;
    }
    memcpy(out, "00-", 3);
    to_hex(ctx->trace_id, 16, out + 3);
    out[35] = '-';
    to_hex(ctx->span_id, 8, out + 36);
    out[52] = '-';
    uint8_t f = ctx->flags & 0x01;
    to_hex(&f, 1, out + 53);
    return KEEL_OK;
}

/* ---- configuration ---- */

static const char *env_get(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

static bool blank(const char *s)
{
    return s == NULL || s[0] == '\0';
}

static char *trim_dup(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return strndup(s, n);
}

/* Percent-decode s in place; false on a bad escape or a decoded NUL. */
static bool percent_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '%') {
            int hi = isxdigit((unsigned char)r[1]) ? r[1] : -1;
            int lo = hi >= 0 && isxdigit((unsigned char)r[2]) ? r[2] : -1;
            if (lo < 0)
                return false;
            char hex[3] = {(char)hi, (char)lo, 0};
            long v = strtol(hex, NULL, 16);
            if (v == 0)
                return false;
            *w++ = (char)v;
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return true;
}

static bool http_token(const char *s)
{
    if (s[0] == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", *p))
            return false;
    return true;
}

static bool header_value_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return false;
    return true;
}

static void kv_clear(keel_trace_kv *v, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
    *n = 0;
}

/* "k1=v1,k2=v2" with percent-decoded values (and keys) into v; check says whether a pair is
 * allowed. A later key replaces an earlier one. */
static int parse_pairs(const char *s, const char *var, size_t max_bytes, keel_trace_kv *v,
                       size_t *n, size_t cap, bool headers, keel_error *err)
{
    if (strlen(s) > max_bytes)
        return keel_error_set(err, KEEL_EINVAL, "%s is longer than %zu bytes", var, max_bytes);
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char *key = NULL, *value = NULL;
        bool only_space = true;
        for (size_t i = 0; i < len; i++)
            only_space = only_space && isspace((unsigned char)p[i]);
        if (!only_space) {
            if (eq == NULL)
                return keel_error_set(err, KEEL_EINVAL, "%s: entry %zu has no '=' (want key=value)",
                                      var, *n + 1);
            key = trim_dup(p, (size_t)(eq - p));
            value = trim_dup(eq + 1, len - (size_t)(eq - p) - 1);
            if (key == NULL || value == NULL) {
                free(key);
                free(value);
                return keel_error_set(err, KEEL_ENOMEM, "out of memory");
            }
            bool ok = percent_decode(key) && percent_decode(value) && key[0] != '\0';
            if (ok && headers)
                ok = http_token(key) && header_value_ok(value);
            if (!ok) {
                free(key);
                free(value);
                return keel_error_set(err, KEEL_EINVAL,
                                      "%s: entry %zu is not a valid key=value (%s)", var, *n + 1,
                                      headers ? "an HTTP header name and a value without control "
                                                "characters, percent-encoded"
                                              : "percent-encoded, non-empty key");
            }
            size_t i = 0;
            while (i < *n && strcasecmp(v[i].key, key) != 0)
                i++;
            if (i == *n && *n == cap) {
                free(key);
                free(value);
                return keel_error_set(err, KEEL_EINVAL, "%s has more than %zu entries", var, cap);
            }
            if (i < *n) {
                free(v[i].key);
                free(v[i].value);
            } else {
                (*n)++;
            }
            v[i].key = key;
            v[i].value = value;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return KEEL_OK;
}

int keel_trace_parse_headers(const char *s, keel_trace_config *cfg, keel_error *err)
{
    int rc = parse_pairs(s ? s : "", "OTEL_EXPORTER_OTLP_HEADERS", HEADERS_MAX_BYTES, cfg->headers,
                         &cfg->n_headers, KEEL_TRACE_HEADERS_MAX, true, err);
    if (rc != KEEL_OK)
        kv_clear(cfg->headers, &cfg->n_headers);
    return rc;
}

static int read_int(const char *(*get)(const char *, void *), void *arg, const char *name,
                    int64_t def, int64_t min, int64_t max, int64_t *out, keel_error *err)
{
    const char *v = get(name, arg);
    *out = def;
    if (blank(v))
        return KEEL_OK;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < min || x > max)
        return keel_error_set(err, KEEL_EINVAL, "%s must be a whole number from %lld to %lld", name,
                              (long long)min, (long long)max);
    *out = x;
    return KEEL_OK;
}

static bool is_true(const char *v)
{
    return v && strcasecmp(v, "true") == 0;
}

static int set_resource(keel_trace_config *c, const char *key, const char *value, keel_error *err)
{
    for (size_t i = 0; i < c->n_resource; i++)
        if (strcmp(c->resource[i].key, key) == 0) {
            char *v = strdup(value);
            if (v == NULL)
                return keel_error_set(err, KEEL_ENOMEM, "out of memory");
            free(c->resource[i].value);
            c->resource[i].value = v;
            return KEEL_OK;
        }
    if (c->n_resource == KEEL_TRACE_RESOURCE_MAX)
        return keel_error_set(err, KEEL_EINVAL, "OTEL_RESOURCE_ATTRIBUTES has more than %d entries",
                              KEEL_TRACE_RESOURCE_MAX);
    keel_trace_kv *kv = &c->resource[c->n_resource];
    kv->key = strdup(key);
    kv->value = strdup(value);
    if (kv->key == NULL || kv->value == NULL) {
        free(kv->key);
        free(kv->value);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    }
    c->n_resource++;
    return KEEL_OK;
}

static bool has_resource(const keel_trace_config *c, const char *key)
{
    for (size_t i = 0; i < c->n_resource; i++)
        if (strcmp(c->resource[i].key, key) == 0)
            return true;
    return false;
}

static int read_sampler(keel_trace_config *c, const char *(*get)(const char *, void *), void *arg,
                        keel_error *err)
{
    static const struct {
        const char *name;
        keel_sampler s;
    } names[] = {
        {"always_on", KEEL_SAMPLER_ALWAYS_ON},
        {"always_off", KEEL_SAMPLER_ALWAYS_OFF},
        {"traceidratio", KEEL_SAMPLER_TRACEIDRATIO},
        {"parentbased_always_on", KEEL_SAMPLER_PARENTBASED_ALWAYS_ON},
        {"parentbased_always_off", KEEL_SAMPLER_PARENTBASED_ALWAYS_OFF},
        {"parentbased_traceidratio", KEEL_SAMPLER_PARENTBASED_TRACEIDRATIO},
    };
    const char *v = get("OTEL_TRACES_SAMPLER", arg);
    c->sampler = KEEL_SAMPLER_PARENTBASED_ALWAYS_ON;
    c->ratio = 1.0;
    if (!blank(v)) {
        size_t i = 0;
        while (i < sizeof names / sizeof names[0] && strcmp(names[i].name, v) != 0)
            i++;
        if (i == sizeof names / sizeof names[0])
            return keel_error_set(err, KEEL_EINVAL,
                                  "OTEL_TRACES_SAMPLER '%.64s' is not one keel knows (always_on, "
                                  "always_off, traceidratio, parentbased_always_on, "
                                  "parentbased_always_off, parentbased_traceidratio)",
                                  v);
        c->sampler = names[i].s;
    }
    const char *a = get("OTEL_TRACES_SAMPLER_ARG", arg);
    if ((c->sampler == KEEL_SAMPLER_TRACEIDRATIO ||
         c->sampler == KEEL_SAMPLER_PARENTBASED_TRACEIDRATIO) &&
        !blank(a)) {
        char *end;
        errno = 0;
        double r = strtod(a, &end);
        if (errno || *end || end == a || !(r >= 0.0 && r <= 1.0))
            return keel_error_set(err, KEEL_EINVAL,
                                  "OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1");
        c->ratio = r;
    }
    return KEEL_OK;
}

static bool http_url(const char *u)
{
    return (strncmp(u, "http://", 7) == 0 && u[7]) || (strncmp(u, "https://", 8) == 0 && u[8]);
}

int keel_trace_config_from_env(keel_trace_config *c, const char *service_default,
                               const char *(*get)(const char *, void *), void *arg, keel_error *err)
{
    memset(c, 0, sizeof *c);
    if (get == NULL)
        get = env_get;
    c->max_queue = 2048;
    c->max_batch = 512;
    c->delay_ms = 5000;
    c->timeout_ms = 10000;
    c->sampler = KEEL_SAMPLER_PARENTBASED_ALWAYS_ON;
    c->ratio = 1.0;
    const char *traces = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", arg);
    const char *base = get("OTEL_EXPORTER_OTLP_ENDPOINT", arg);
    if (is_true(get("OTEL_SDK_DISABLED", arg)) || (blank(traces) && blank(base)))
        return KEEL_OK; /* off */
    int rc = KEEL_OK;
    const char *var =
        !blank(traces) ? "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" : "OTEL_EXPORTER_OTLP_ENDPOINT";
    const char *url = !blank(traces) ? traces : base;
    if (strlen(url) > URL_MAX_BYTES || !http_url(url)) {
        rc = keel_error_set(err, KEEL_EINVAL,
                            "%s must be an http:// or https:// URL of at most %d "
                            "bytes",
                            var, URL_MAX_BYTES);
        goto fail;
    }
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f) {
            rc = keel_error_set(err, KEEL_EINVAL, "%s holds a space or a control character", var);
            goto fail;
        }
    if (!blank(traces)) {
        c->endpoint = strdup(url); /* used as given */
    } else {
        size_t n = strlen(url);
        c->endpoint = malloc(n + sizeof "/v1/traces");
        if (c->endpoint)
            snprintf(c->endpoint, n + sizeof "/v1/traces", "%.*s/v1/traces",
                     (int)(url[n - 1] == '/' ? n - 1 : n), url);
    }
    if (c->endpoint == NULL) {
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
        goto fail;
    }
    const char *h = get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", arg);
    if (blank(h))
        h = get("OTEL_EXPORTER_OTLP_HEADERS", arg);
    if (!blank(h) && (rc = keel_trace_parse_headers(h, c, err)) != KEEL_OK)
        goto fail;
    const char *ra = get("OTEL_RESOURCE_ATTRIBUTES", arg);
    if (!blank(ra) &&
        (rc = parse_pairs(ra, "OTEL_RESOURCE_ATTRIBUTES", RESOURCE_MAX_BYTES, c->resource,
                          &c->n_resource, KEEL_TRACE_RESOURCE_MAX - 4, false, err)) != KEEL_OK)
        goto fail;
    const char *svc = get("OTEL_SERVICE_NAME", arg);
    if (!blank(svc) && strlen(svc) > VALUE_MAX_BYTES) {
        rc = keel_error_set(err, KEEL_EINVAL, "OTEL_SERVICE_NAME is longer than %d bytes",
                            VALUE_MAX_BYTES);
        goto fail;
    }
    if (!blank(svc))
        rc = set_resource(c, "service.name", svc, err);
    else if (!has_resource(c, "service.name"))
        rc = set_resource(c, "service.name", service_default ? service_default : "keel", err);
    if (rc == KEEL_OK)
        rc = set_resource(c, "telemetry.sdk.name", "keel", err);
    if (rc == KEEL_OK)
        rc = set_resource(c, "telemetry.sdk.version", KEEL_VERSION, err);
    if (rc != KEEL_OK)
        goto fail;
    if ((rc = read_sampler(c, get, arg, err)) != KEEL_OK)
        goto fail;
    int64_t v;
    if ((rc = read_int(get, arg, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1, 1 << 20, &v, err)) != KEEL_OK)
        goto fail;
    c->max_queue = (size_t)v;
    if ((rc = read_int(get, arg, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1, 1 << 16, &v, err)) !=
        KEEL_OK)
        goto fail;
    c->max_batch = (size_t)v;
    if ((rc = read_int(get, arg, "OTEL_BSP_SCHEDULE_DELAY", 5000, 1, 3600000, &c->delay_ms, err)) !=
        KEEL_OK)
        goto fail;
    const char *tvar = !blank(get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", arg))
                           ? "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
                           : "OTEL_EXPORTER_OTLP_TIMEOUT";
    if ((rc = read_int(get, arg, tvar, 10000, 1, 600000, &c->timeout_ms, err)) != KEEL_OK)
        goto fail;
    const char *proto = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", arg);
    if (blank(proto))
        proto = get("OTEL_EXPORTER_OTLP_PROTOCOL", arg);
    if (!blank(proto) && strcmp(proto, "http/protobuf") != 0) {
        rc = keel_error_set(err, KEEL_EINVAL,
                            "OTEL_EXPORTER_OTLP_PROTOCOL '%.32s': keel exports http/protobuf only",
                            proto);
        goto fail;
    }
    c->capture_content = is_true(get("KEEL_TRACE_CONTENT", arg));
    c->enabled = true;
    return KEEL_OK;
fail:
    keel_trace_config_clear(c);
    return rc;
}

void keel_trace_config_clear(keel_trace_config *c)
{
    free(c->endpoint);
    c->endpoint = NULL;
    kv_clear(c->headers, &c->n_headers);
    kv_clear(c->resource, &c->n_resource);
    c->enabled = false;
}

/* ---- spans ---- */

typedef enum { A_STR, A_INT, A_DOUBLE, A_BOOL, A_STRS } attr_type;

typedef struct {
    char *key;
    attr_type type;
    union {
        char *s;
        int64_t i;
        double d;
        bool b;
        struct {
            char **v;
            size_t n;
        } a;
    } u;
} attr;

typedef struct {
    char *name;
    int64_t ns;
    char *key, *value;
} event;

struct keel_span {
    char name[NAME_MAX_BYTES + 1];
    keel_span_kind kind;
    keel_span_context ctx;
    uint8_t parent_id[8];
    bool has_parent;
    bool recording;
    int64_t start_ns, end_ns;
    attr *attrs;
    size_t n_attrs, cap_attrs;
    event *events;
    size_t n_events, cap_events;
    keel_span_status status;
    char *status_msg;
};

/* The tracer: set by keel_trace_start, read by everyone. */
static struct {
    atomic_bool on;
    keel_trace_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    keel_span **queue;
    size_t head, count;
    bool stop, flush, exporting;
    pthread_t thread;
    bool thread_started;
    atomic_uint_fast64_t dropped, exported;
    /* libcurl's functions, loaded by the first keel_trace_start() (load_curl) */
    struct {
        void *lib;
        CURLcode (*global_init)(long flags);
        CURL *(*easy_init)(void);
        CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
        CURLcode (*easy_perform)(CURL *curl);
        CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
        const char *(*easy_strerror)(CURLcode code);
        void (*easy_cleanup)(CURL *curl);
        struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
        void (*slist_free_all)(struct curl_slist *list);
    } http;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .wake = PTHREAD_COND_INITIALIZER,
       .idle = PTHREAD_COND_INITIALIZER};

static _Thread_local keel_span_context current;

bool keel_trace_enabled(void)
{
    return atomic_load_explicit(&T.on, memory_order_acquire);
}

bool keel_trace_capture_content(void)
{
    return keel_trace_enabled() && T.cfg.capture_content;
}

uint64_t keel_trace_dropped_spans(void)
{
    return atomic_load(&T.dropped);
}

uint64_t keel_trace_exported_spans(void)
{
    return atomic_load(&T.exported);
}

keel_span_context keel_trace_set_current(const keel_span_context *ctx)
{
    keel_span_context before = current;
    if (ctx && ctx->valid)
        current = *ctx;
    else
        memset(&current, 0, sizeof current);
    return before;
}

const keel_span_context *keel_trace_current(void)
{
    return &current;
}

/* The ratio samplers decide on the trace id's last 8 bytes, as the OTel SDKs do, so that every
 * process that sees a trace decides alike. */
static bool ratio_sample(const uint8_t tid[16], double ratio)
{
    if (ratio >= 1.0)
        return true;
    if (ratio <= 0.0)
        return false;
    uint64_t x = 0;
    for (int i = 8; i < 16; i++)
        x = x << 8 | tid[i];
    return (x >> 1) < (uint64_t)(ratio * 9223372036854775808.0); /* 2^63 */
}

static bool sample(const keel_span_context *parent, const uint8_t tid[16])
{
    keel_sampler s = T.cfg.sampler;
    bool has_parent = parent && parent->valid;
    switch (s) {
    case KEEL_SAMPLER_ALWAYS_ON:
        return true;
    case KEEL_SAMPLER_ALWAYS_OFF:
        return false;
    case KEEL_SAMPLER_TRACEIDRATIO:
        return ratio_sample(tid, T.cfg.ratio);
    case KEEL_SAMPLER_PARENTBASED_ALWAYS_OFF:
        return has_parent ? (parent->flags & 1) != 0 : false;
    case KEEL_SAMPLER_PARENTBASED_TRACEIDRATIO:
        return has_parent ? (parent->flags & 1) != 0 : ratio_sample(tid, T.cfg.ratio);
    case KEEL_SAMPLER_PARENTBASED_ALWAYS_ON:
    default:
        return has_parent ? (parent->flags & 1) != 0 : true;
    }
}

keel_span *keel_span_start(const char *name, const keel_span_options *opts)
{
    if (!keel_trace_enabled())
        return NULL;
    keel_span_options none = {0};
    if (opts == NULL)
        opts = &none;
    keel_span *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    s->kind = opts->kind ? opts->kind : KEEL_SPAN_INTERNAL;
    const keel_span_context *parent = opts->parent;
    if (parent == NULL && !opts->root)
        parent = &current;
    if (parent && !parent->valid)
        parent = NULL;
    if (parent) {
        memcpy(s->ctx.trace_id, parent->trace_id, 16);
        memcpy(s->parent_id, parent->span_id, 8);
        s->has_parent = true;
        memcpy(s->ctx.tracestate, parent->tracestate, sizeof s->ctx.tracestate);
    } else if (opts->trace_id && !all_zero(opts->trace_id, 16)) {
        memcpy(s->ctx.trace_id, opts->trace_id, 16);
    } else {
        random_bytes(s->ctx.trace_id, 16);
    }
    if (opts->span_id && !all_zero(opts->span_id, 8))
        memcpy(s->ctx.span_id, opts->span_id, 8);
    else
        random_bytes(s->ctx.span_id, 8);
    s->recording = sample(parent, s->ctx.trace_id);
    s->ctx.flags = s->recording ? 1 : 0;
    s->ctx.valid = true;
    s->start_ns = opts->start_ns > 0 ? opts->start_ns : keel_trace_now_ns();
    return s;
}

keel_span_context keel_span_get_context(const keel_span *s)
{
    keel_span_context c = {0};
    if (s)
        c = s->ctx;
    return c;
}

static char *cut_dup(const char *v, size_t max)
{
    v = v ? v : "";
    size_t n = strnlen(v, max + 1);
    if (n > max) { /* never cut inside a UTF-8 sequence */
        n = max;
        while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
            n--;
    }
    return strndup(v, n);
}

static void attr_free(attr *a)
{
    free(a->key);
    if (a->type == A_STR)
        free(a->u.s);
    if (a->type == A_STRS) {
        for (size_t i = 0; i < a->u.a.n; i++)
            free(a->u.a.v[i]);
        free(a->u.a.v);
    }
}

/* The slot for key: the one it has, or a new one (NULL past the cap or without memory). */
static attr *slot(keel_span *s, const char *key)
{
    if (s == NULL || !s->recording || key == NULL || key[0] == '\0')
        return NULL;
    for (size_t i = 0; i < s->n_attrs; i++)
        if (strcmp(s->attrs[i].key, key) == 0) {
            char *k = s->attrs[i].key;
            s->attrs[i].key = NULL;
            attr_free(&s->attrs[i]);
            s->attrs[i].key = k;
            return &s->attrs[i];
        }
    if (s->n_attrs == ATTRS_MAX)
        return NULL;
    if (s->n_attrs == s->cap_attrs) {
        size_t cap = s->cap_attrs ? s->cap_attrs * 2 : 8;
        attr *v = realloc(s->attrs, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        s->attrs = v;
        s->cap_attrs = cap;
    }
    attr *a = &s->attrs[s->n_attrs];
    a->key = cut_dup(key, NAME_MAX_BYTES);
    if (a->key == NULL)
        return NULL;
    s->n_attrs++;
    return a;
}

void keel_span_set_str(keel_span *s, const char *key, const char *value)
{
    attr *a = slot(s, key);
    if (a == NULL)
        return;
    a->type = A_STR;
    a->u.s = cut_dup(value, VALUE_MAX_BYTES);
    if (a->u.s == NULL) {
        a->type = A_BOOL; /* out of memory: a harmless value */
        a->u.b = false;
    }
}

void keel_span_set_int(keel_span *s, const char *key, int64_t value)
{
    attr *a = slot(s, key);
    if (a) {
        a->type = A_INT;
        a->u.i = value;
    }
}

void keel_span_set_double(keel_span *s, const char *key, double value)
{
    attr *a = slot(s, key);
    if (a) {
        a->type = A_DOUBLE;
        a->u.d = value;
    }
}

void keel_span_set_bool(keel_span *s, const char *key, bool value)
{
    attr *a = slot(s, key);
    if (a) {
        a->type = A_BOOL;
        a->u.b = value;
    }
}

void keel_span_set_strs(keel_span *s, const char *key, const char *const *values, size_t n)
{
    attr *a = slot(s, key);
    if (a == NULL)
        return;
    if (n > ATTRS_MAX)
        n = ATTRS_MAX;
    a->type = A_STRS;
    a->u.a.n = 0;
    a->u.a.v = calloc(n ? n : 1, sizeof *a->u.a.v);
    for (size_t i = 0; a->u.a.v && i < n; i++) {
        char *v = cut_dup(values[i], VALUE_MAX_BYTES);
        if (v == NULL)
            break;
        a->u.a.v[a->u.a.n++] = v;
    }
}

void keel_span_add_event(keel_span *s, const char *name, const char *key, const char *value)
{
    if (s == NULL || !s->recording || s->n_events == EVENTS_MAX)
        return;
    if (s->n_events == s->cap_events) {
        size_t cap = s->cap_events ? s->cap_events * 2 : 4;
        event *v = realloc(s->events, cap * sizeof *v);
        if (v == NULL)
            return;
        s->events = v;
        s->cap_events = cap;
    }
    event *e = &s->events[s->n_events];
    e->name = cut_dup(name, NAME_MAX_BYTES);
    e->ns = keel_trace_now_ns();
    e->key = key ? cut_dup(key, NAME_MAX_BYTES) : NULL;
    e->value = key ? cut_dup(value, VALUE_MAX_BYTES) : NULL;
    if (e->name == NULL || (key && (e->key == NULL || e->value == NULL))) {
        free(e->name);
        free(e->key);
        free(e->value);
        return;
    }
    s->n_events++;
}

void keel_span_set_status(keel_span *s, keel_span_status status, const char *message)
{
    if (s == NULL)
        return;
    s->status = status;
    free(s->status_msg);
    s->status_msg =
        status == KEEL_SPAN_ERROR && message ? cut_dup(message, STATUS_MAX_BYTES) : NULL;
}

void keel_trace_span_free(keel_span *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_attrs; i++)
        attr_free(&s->attrs[i]);
    free(s->attrs);
    for (size_t i = 0; i < s->n_events; i++) {
        free(s->events[i].name);
        free(s->events[i].key);
        free(s->events[i].value);
    }
    free(s->events);
    free(s->status_msg);
    free(s);
}

void keel_trace_span_close(keel_span *s, int64_t end_ns)
{
    if (s)
        s->end_ns = end_ns > 0 ? end_ns : keel_trace_now_ns();
    if (s && s->end_ns < s->start_ns)
        s->end_ns = s->start_ns;
}

void keel_span_end_at(keel_span *s, int64_t end_ns)
{
    if (s == NULL)
        return;
    keel_trace_span_close(s, end_ns);
    if (!s->recording || !keel_trace_enabled()) {
        keel_trace_span_free(s);
        return;
    }
    pthread_mutex_lock(&T.mu);
    if (T.queue == NULL || T.stop || T.count == T.cfg.max_queue) {
        pthread_mutex_unlock(&T.mu);
        atomic_fetch_add(&T.dropped, 1);
        keel_trace_span_free(s);
        return;
    }
    T.queue[(T.head + T.count) % T.cfg.max_queue] = s;
    T.count++;
    if (T.count >= T.cfg.max_batch)
        pthread_cond_signal(&T.wake);
    pthread_mutex_unlock(&T.mu);
}

void keel_span_end(keel_span *s)
{
    keel_span_end_at(s, 0);
}

/* ---- OTLP encoding ---- */

typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

/* Fills kv/any (arrays the caller owns) for a; strs gets the array values. */
static void encode_attr(const attr *a, pb_kv *kv, pb_any *any, pb_any *strs, pb_any **strp,
                        Opentelemetry__Proto__Common__V1__ArrayValue *arr)
{
    opentelemetry__proto__common__v1__key_value__init(kv);
    opentelemetry__proto__common__v1__any_value__init(any);
    kv->key = a->key;
    kv->value = any;
    switch (a->type) {
    case A_STR:
        any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        any->string_value = a->u.s;
        break;
    case A_INT:
        any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        any->int_value = a->u.i;
        break;
    case A_DOUBLE:
        any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        any->double_value = a->u.d;
        break;
    case A_BOOL:
        any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
        any->bool_value = a->u.b;
        break;
    case A_STRS:
        opentelemetry__proto__common__v1__array_value__init(arr);
        for (size_t i = 0; i < a->u.a.n; i++) {
            opentelemetry__proto__common__v1__any_value__init(&strs[i]);
            strs[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
            strs[i].string_value = a->u.a.v[i];
            strp[i] = &strs[i];
        }
        arr->values = strp;
        arr->n_values = a->u.a.n;
        any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
        any->array_value = arr;
        break;
    }
}

/* Everything one span's message points to, in one allocation's worth of arrays. */
typedef struct {
    Opentelemetry__Proto__Trace__V1__Span span;
    Opentelemetry__Proto__Trace__V1__Status status;
    pb_kv *kvs;
    pb_kv **kvp;
    pb_any *anys;
    pb_any **strp;
    pb_any *strs;
    Opentelemetry__Proto__Common__V1__ArrayValue *arrs;
    Opentelemetry__Proto__Trace__V1__Span__Event *events;
    Opentelemetry__Proto__Trace__V1__Span__Event **evp;
    pb_kv *ekv;
    pb_kv **ekvp;
    pb_any *eany;
} span_msg;

static void span_msg_free(span_msg *m)
{
    free(m->kvs);
    free(m->kvp);
    free(m->anys);
    free(m->strp);
    free(m->strs);
    free(m->arrs);
    free(m->events);
    free(m->evp);
    free(m->ekv);
    free(m->ekvp);
    free(m->eany);
}

static bool span_msg_fill(span_msg *m, const keel_span *s)
{
    memset(m, 0, sizeof *m);
    Opentelemetry__Proto__Trace__V1__Span *p = &m->span;
    opentelemetry__proto__trace__v1__span__init(p);
    p->trace_id = (ProtobufCBinaryData){16, (uint8_t *)s->ctx.trace_id};
    p->span_id = (ProtobufCBinaryData){8, (uint8_t *)s->ctx.span_id};
    if (s->has_parent)
        p->parent_span_id = (ProtobufCBinaryData){8, (uint8_t *)s->parent_id};
    p->trace_state = (char *)s->ctx.tracestate;
    p->name = (char *)s->name;
    p->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
    p->start_time_unix_nano = (uint64_t)s->start_ns;
    p->end_time_unix_nano = (uint64_t)s->end_ns;
    size_t n_strs = 0;
    for (size_t i = 0; i < s->n_attrs; i++)
        if (s->attrs[i].type == A_STRS)
            n_strs += s->attrs[i].u.a.n;
    size_t na = s->n_attrs ? s->n_attrs : 1, ns = n_strs ? n_strs : 1,
           ne = s->n_events ? s->n_events : 1;
    m->kvs = calloc(na, sizeof *m->kvs);
    m->kvp = calloc(na, sizeof *m->kvp);
    m->anys = calloc(na, sizeof *m->anys);
    m->arrs = calloc(na, sizeof *m->arrs);
    m->strs = calloc(ns, sizeof *m->strs);
    m->strp = calloc(ns, sizeof *m->strp);
    m->events = calloc(ne, sizeof *m->events);
    m->evp = calloc(ne, sizeof *m->evp);
    m->ekv = calloc(ne, sizeof *m->ekv);
    m->ekvp = calloc(ne, sizeof *m->ekvp);
    m->eany = calloc(ne, sizeof *m->eany);
    if (!m->kvs || !m->kvp || !m->anys || !m->arrs || !m->strs || !m->strp || !m->events ||
        !m->evp || !m->ekv || !m->ekvp || !m->eany)
        return false;
    size_t used = 0;
    for (size_t i = 0; i < s->n_attrs; i++) {
        encode_attr(&s->attrs[i], &m->kvs[i], &m->anys[i], m->strs + used, m->strp + used,
                    &m->arrs[i]);
        if (s->attrs[i].type == A_STRS)
            used += s->attrs[i].u.a.n;
        m->kvp[i] = &m->kvs[i];
    }
    p->attributes = m->kvp;
    p->n_attributes = s->n_attrs;
    for (size_t i = 0; i < s->n_events; i++) {
        Opentelemetry__Proto__Trace__V1__Span__Event *e = &m->events[i];
        opentelemetry__proto__trace__v1__span__event__init(e);
        e->name = s->events[i].name;
        e->time_unix_nano = (uint64_t)s->events[i].ns;
        if (s->events[i].key) {
            attr a = {.key = s->events[i].key, .type = A_STR, .u.s = s->events[i].value};
            encode_attr(&a, &m->ekv[i], &m->eany[i], NULL, NULL, NULL);
            m->ekvp[i] = &m->ekv[i];
            e->attributes = &m->ekvp[i];
            e->n_attributes = 1;
        }
        m->evp[i] = e;
    }
    p->events = m->evp;
    p->n_events = s->n_events;
    opentelemetry__proto__trace__v1__status__init(&m->status);
    m->status.code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)s->status;
    if (s->status_msg)
        m->status.message = s->status_msg;
    p->status = &m->status;
    return true;
}

int keel_trace_encode(keel_span *const *spans, size_t n, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int rc = KEEL_ENOMEM;
    span_msg *msgs = calloc(n ? n : 1, sizeof *msgs);
    Opentelemetry__Proto__Trace__V1__Span **sp = calloc(n ? n : 1, sizeof *sp);
    size_t nr = T.cfg.n_resource;
    pb_kv *rkv = calloc(nr ? nr : 1, sizeof *rkv);
    pb_kv **rkvp = calloc(nr ? nr : 1, sizeof *rkvp);
    pb_any *rany = calloc(nr ? nr : 1, sizeof *rany);
    size_t filled = 0;
    if (!msgs || !sp || !rkv || !rkvp || !rany)
        goto done;
    for (; filled < n; filled++) {
        if (!span_msg_fill(&msgs[filled], spans[filled])) {
            filled++;
            goto done;
        }
        sp[filled] = &msgs[filled].span;
    }
    for (size_t i = 0; i < nr; i++) {
        attr a = {.key = T.cfg.resource[i].key, .type = A_STR, .u.s = T.cfg.resource[i].value};
        encode_attr(&a, &rkv[i], &rany[i], NULL, NULL, NULL);
        rkvp[i] = &rkv[i];
    }
    Opentelemetry__Proto__Resource__V1__Resource res =
        OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    res.attributes = rkvp;
    res.n_attributes = nr;
    Opentelemetry__Proto__Common__V1__InstrumentationScope scope =
        OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
    scope.name = "keel";
    scope.version = KEEL_VERSION;
    Opentelemetry__Proto__Trace__V1__ScopeSpans ss =
        OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    ss.scope = &scope;
    ss.spans = sp;
    ss.n_spans = n;
    Opentelemetry__Proto__Trace__V1__ScopeSpans *ssp = &ss;
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs =
        OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    rs.resource = &res;
    rs.scope_spans = &ssp;
    rs.n_scope_spans = 1;
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rsp = &rs;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.resource_spans = &rsp;
    req.n_resource_spans = 1;
    size_t size =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    *out = malloc(size ? size : 1);
    if (*out == NULL)
        goto done;
    *len =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, *out);
    rc = KEEL_OK;
done:
    for (size_t i = 0; msgs && i < filled; i++)
        span_msg_free(&msgs[i]);
    free(msgs);
    free(sp);
    free(rkv);
    free(rkvp);
    free(rany);
    return rc;
}

/* ---- the exporter thread ---- */

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* POST one batch; true when the collector took it (2xx). */
static bool post(CURL *curl, struct curl_slist *headers, const uint8_t *body, size_t len, char *why,
                 size_t why_len)
{
    T.http.easy_setopt(curl, CURLOPT_URL, T.cfg.endpoint);
    T.http.easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    T.http.easy_setopt(curl, CURLOPT_POSTFIELDS, (const char *)body);
    T.http.easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    T.http.easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)T.cfg.timeout_ms);
    T.http.easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)T.cfg.timeout_ms);
    T.http.easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    T.http.easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    T.http.easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cc = T.http.easy_perform(curl);
    long status = 0;
    T.http.easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
        snprintf(why, why_len, "%s", T.http.easy_strerror(cc));
        return false;
    }
    if (status < 200 || status > 299) {
        snprintf(why, why_len, "HTTP status %ld", status);
        return false;
    }
    return true;
}

/* The endpoint as logs may show it: without credentials (user:password@) or a query. */
static void redact_url(const char *url, char *out, size_t n)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    size_t scheme = (size_t)(host - url);
    if (at && (slash == NULL || at < slash))
        snprintf(out, n, "%.*s(credentials)@%s", (int)scheme, url, at + 1);
    else
        snprintf(out, n, "%s", url);
    char *q = strpbrk(out, "?#");
    if (q)
        *q = '\0';
}

static void *exporter(void *arg)
{
    (void)arg;
    CURL *curl = T.http.easy_init();
    struct curl_slist *headers = T.http.slist_append(NULL, "Content-Type: application/x-protobuf");
    for (size_t i = 0; i < T.cfg.n_headers && headers; i++) {
        size_t n = strlen(T.cfg.headers[i].key) + strlen(T.cfg.headers[i].value) + 3;
        char *line = malloc(n);
        if (line == NULL)
            continue;
        snprintf(line, n, "%s: %s", T.cfg.headers[i].key, T.cfg.headers[i].value);
        struct curl_slist *h = T.http.slist_append(headers, line);
        free(line);
        if (h)
            headers = h;
    }
    keel_span **batch = calloc(T.cfg.max_batch, sizeof *batch);
    int64_t last_warn = 0;
    pthread_mutex_lock(&T.mu);
    for (;;) {
        if (T.count < T.cfg.max_batch && !T.stop && !T.flush) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            int64_t ns = until.tv_nsec + (T.cfg.delay_ms % 1000) * 1000000;
            until.tv_sec += (time_t)(T.cfg.delay_ms / 1000 + ns / 1000000000);
            until.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&T.wake, &T.mu, &until);
        }
        if (T.count == 0) {
            T.flush = false;
            pthread_cond_broadcast(&T.idle);
            if (T.stop)
                break;
            continue;
        }
        size_t n = 0;
        while (n < T.cfg.max_batch && T.count > 0) {
            batch[n++] = T.queue[T.head];
            T.head = (T.head + 1) % T.cfg.max_queue;
            T.count--;
        }
        T.exporting = true;
        pthread_mutex_unlock(&T.mu);
        uint8_t *body = NULL;
        size_t len = 0;
        char why[256] = "out of memory";
        bool ok = curl && headers && batch && keel_trace_encode(batch, n, &body, &len) == KEEL_OK &&
                  post(curl, headers, body, len, why, sizeof why);
        free(body);
        for (size_t i = 0; i < n; i++)
            keel_trace_span_free(batch[i]);
        if (ok) {
            atomic_fetch_add(&T.exported, n);
        } else {
            atomic_fetch_add(&T.dropped, n);
            int64_t now = keel_trace_now_ns();
            if (now - last_warn > 60 * (int64_t)1000000000) { /* once a minute at most */
                last_warn = now;
                char count[32], shown[512];
                snprintf(count, sizeof count, "%zu", n);
                redact_url(T.cfg.endpoint, shown, sizeof shown);
                keel_log(KEEL_LOG_WARN, "trace", "could not export spans; they are dropped",
                         "spans", count, "endpoint", shown, "error", why, NULL);
            }
        }
        pthread_mutex_lock(&T.mu);
        T.exporting = false;
    }
    pthread_mutex_unlock(&T.mu);
    free(batch);
    T.http.slist_free_all(headers);
    if (curl)
        T.http.easy_cleanup(curl);
    return NULL;
}

static int copy_kvs(keel_trace_kv *dst, const keel_trace_kv *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i].key = strdup(src[i].key);
        dst[i].value = strdup(src[i].value);
        if (dst[i].key == NULL || dst[i].value == NULL)
            return KEEL_ENOMEM;
    }
    return KEEL_OK;
}

/* One of libcurl's functions into *fn (a function pointer's address). */
static bool curl_symbol(void *lib, const char *name, void *fn)
{
    void *p = dlsym(lib, name);
    memcpy(fn, &p, sizeof p);
    return p != NULL;
}

/* libcurl, loaded the first time tracing starts: only the exporter needs HTTP, so a program that
 * never traces never maps libcurl and the twenty-odd libraries it pulls in (about 4 MiB of a
 * worker's RSS; docs/performance.md, "Memory"). Kept loaded once loaded. */
static int load_curl(keel_error *err)
{
    if (T.http.lib != NULL)
        return KEEL_OK;
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return keel_error_set(err, KEEL_EUNAVAILABLE, "tracing needs libcurl (libcurl.so.4): %s",
                              dlerror());
    if (!curl_symbol(lib, "curl_global_init", &T.http.global_init) ||
        !curl_symbol(lib, "curl_easy_init", &T.http.easy_init) ||
        !curl_symbol(lib, "curl_easy_setopt", &T.http.easy_setopt) ||
        !curl_symbol(lib, "curl_easy_perform", &T.http.easy_perform) ||
        !curl_symbol(lib, "curl_easy_getinfo", &T.http.easy_getinfo) ||
        !curl_symbol(lib, "curl_easy_strerror", &T.http.easy_strerror) ||
        !curl_symbol(lib, "curl_easy_cleanup", &T.http.easy_cleanup) ||
        !curl_symbol(lib, "curl_slist_append", &T.http.slist_append) ||
        !curl_symbol(lib, "curl_slist_free_all", &T.http.slist_free_all)) {
        dlclose(lib);
        return keel_error_set(err, KEEL_EUNAVAILABLE, "libcurl.so.4 lacks a function tracing uses");
    }
    T.http.lib = lib;
    return KEEL_OK;
}

int keel_trace_start(const keel_trace_config *cfg, keel_error *err)
{
    if (cfg == NULL || !cfg->enabled)
        return KEEL_OK;
    if (keel_trace_enabled() || T.thread_started)
        return keel_error_set(err, KEEL_EPRECONDITION, "tracing is already started");
    if (cfg->endpoint == NULL || cfg->max_queue == 0 || cfg->max_batch == 0)
        return keel_error_set(err, KEEL_EINVAL, "a trace configuration without an endpoint");
    int lrc = load_curl(err);
    if (lrc != KEEL_OK)
        return lrc;
    if (T.http.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return keel_error_set(err, KEEL_EUNAVAILABLE, "libcurl could not start");
    keel_trace_config c = *cfg;
    c.endpoint = strdup(cfg->endpoint);
    c.n_headers = cfg->n_headers;
    c.n_resource = cfg->n_resource;
    memset(c.headers, 0, sizeof c.headers);
    memset(c.resource, 0, sizeof c.resource);
    if (c.endpoint == NULL || copy_kvs(c.headers, cfg->headers, cfg->n_headers) != KEEL_OK ||
        copy_kvs(c.resource, cfg->resource, cfg->n_resource) != KEEL_OK) {
        keel_trace_config_clear(&c);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&T.mu);
    T.cfg = c;
    T.queue = calloc(c.max_queue, sizeof *T.queue);
    T.head = T.count = 0;
    T.stop = T.flush = T.exporting = false;
    pthread_mutex_unlock(&T.mu);
    if (T.queue == NULL || pthread_create(&T.thread, NULL, exporter, NULL) != 0) {
        free(T.queue);
        T.queue = NULL;
        keel_trace_config_clear(&T.cfg);
        return keel_error_set(err, KEEL_ENOMEM, "could not start the trace exporter thread");
    }
    T.thread_started = true;
    atomic_store(&T.dropped, 0);
    atomic_store(&T.exported, 0);
    atomic_store_explicit(&T.on, true, memory_order_release);
    return KEEL_OK;
}

void keel_trace_shutdown(int64_t timeout_ms)
{
    if (!T.thread_started)
        return;
    atomic_store_explicit(&T.on, false, memory_order_release);
    pthread_mutex_lock(&T.mu);
    /* Export what is queued, with at most timeout_ms for each request. */
    if (timeout_ms > 0 && timeout_ms < T.cfg.timeout_ms)
        T.cfg.timeout_ms = timeout_ms;
    T.stop = true;
    pthread_cond_signal(&T.wake);
    pthread_mutex_unlock(&T.mu);
    pthread_join(T.thread, NULL);
    T.thread_started = false;
    pthread_mutex_lock(&T.mu);
    for (; T.count > 0; T.count--) { /* nothing is left, unless the thread failed early */
        keel_trace_span_free(T.queue[T.head]);
        T.head = (T.head + 1) % T.cfg.max_queue;
        atomic_fetch_add(&T.dropped, 1);
    }
    free(T.queue);
    T.queue = NULL;
    keel_trace_config_clear(&T.cfg);
    pthread_mutex_unlock(&T.mu);
}

/* ---- Temporal headers ---- */

int keel_trace_from_header(const Temporal__Api__Common__V1__Header *h, keel_span_context *out)
{
    memset(out, 0, sizeof *out);
    const Temporal__Api__Common__V1__Payload *p = NULL;
    for (size_t i = 0; h && i < h->n_fields; i++)
        if (h->fields[i] && h->fields[i]->key &&
            strcmp(h->fields[i]->key, KEEL_TRACE_HEADER_KEY) == 0)
            p = h->fields[i]->value;
    if (p == NULL)
        return KEEL_ENOTFOUND;
    if (p->data.len > KEEL_TRACE_HEADER_MAX)
        return KEEL_EINVAL;
    char *json = NULL;
    keel_error err;
    if (keel_payload_to_json(p, "trace header", &json, &err) != KEEL_OK)
        return KEEL_EINVAL;
    cJSON *o = cJSON_Parse(json);
    free(json);
    int rc = KEEL_EINVAL;
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(o, "traceparent");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "tracestate");
    if (cJSON_IsObject(o) && cJSON_IsString(tp))
        rc = keel_traceparent_parse(tp->valuestring, cJSON_IsString(ts) ? ts->valuestring : NULL,
                                    out);
    cJSON_Delete(o);
    return rc;
}

int keel_trace_to_header(Temporal__Api__Common__V1__Header **hp, const keel_span_context *ctx)
{
    char tp[KEEL_TRACEPARENT_LEN + 1];
    if (keel_traceparent_format(ctx, tp) != KEEL_OK)
        return KEEL_EINVAL;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || !cJSON_AddStringToObject(o, "traceparent", tp) ||
        (ctx->tracestate[0] && !cJSON_AddStringToObject(o, "tracestate", ctx->tracestate))) {
        cJSON_Delete(o);
        return KEEL_ENOMEM;
    }
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (json == NULL)
        return KEEL_ENOMEM;
    keel_pb_payload *p = NULL;
    keel_error err;
    int rc = keel_payload_new_json(json, strlen(json), "trace header", &p, &err);
    free(json);
    if (rc != KEEL_OK)
        return rc;
    Temporal__Api__Common__V1__Header *h = *hp;
    if (h == NULL) {
        h = malloc(sizeof *h);
        if (h == NULL) {
            protobuf_c_message_free_unpacked((ProtobufCMessage *)p, NULL);
            return KEEL_ENOMEM;
        }
        temporal__api__common__v1__header__init(h);
        *hp = h;
    }
    for (size_t i = 0; i < h->n_fields; i++)
        if (h->fields[i]->key && strcmp(h->fields[i]->key, KEEL_TRACE_HEADER_KEY) == 0) {
            if (h->fields[i]->value)
                protobuf_c_message_free_unpacked((ProtobufCMessage *)h->fields[i]->value, NULL);
            h->fields[i]->value = p;
            return KEEL_OK;
        }
    Temporal__Api__Common__V1__Header__FieldsEntry **v =
        realloc(h->fields, (h->n_fields + 1) * sizeof *v);
    Temporal__Api__Common__V1__Header__FieldsEntry *e = malloc(sizeof *e);
    char *key = strdup(KEEL_TRACE_HEADER_KEY);
    if (v)
        h->fields = v;
    if (v == NULL || e == NULL || key == NULL) {
        free(e);
        free(key);
        protobuf_c_message_free_unpacked((ProtobufCMessage *)p, NULL);
        return KEEL_ENOMEM;
    }
    temporal__api__common__v1__header__fields_entry__init(e);
    e->key = key;
    e->value = p;
    h->fields[h->n_fields++] = e;
    return KEEL_OK;
}
