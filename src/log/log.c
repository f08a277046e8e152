/*
 * log - logfmt or JSON records on stderr (see log.h).
 */
#include "log/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/trace.h"
#include "util/strbuf.h"

#define RECORD_MAX 4096

static pthread_once_t once = PTHREAD_ONCE_INIT;
static keel_log_level threshold = KEEL_LOG_INFO; /* set once, from the environment */
static bool json_format;                         /* KEEL_LOG_FORMAT=json */

static const char *const names[] = {"debug", "info", "warn", "error"};

static void read_level(void)
{
    const char *v = getenv("KEEL_LOG_LEVEL");
    for (int i = 0; v && i < 4; i++)
        if (strcmp(v, names[i]) == 0)
            threshold = (keel_log_level)i;
    const char *f = getenv("KEEL_LOG_FORMAT");
    json_format = f && strcmp(f, "json") == 0;
}

bool keel_log_json(void)
{
    pthread_once(&once, read_level);
    return json_format;
}

void keel_log_set_json(bool on)
{
    pthread_once(&once, read_level);
    json_format = on;
}

int keel_log_enabled(keel_log_level level)
{
    pthread_once(&once, read_level);
    return level >= threshold;
}

typedef struct {
    char buf[RECORD_MAX];
    size_t n;
} record;

static void put(record *r, const char *s, size_t len)
{
    /* Room is kept for "...\n" at the end: a record is cut, never split. */
    size_t room = sizeof r->buf - 5 - r->n;
    if (len > room)
        len = room;
    memcpy(r->buf + r->n, s, len);
    r->n += len;
}

static void put_str(record *r, const char *s)
{
    put(r, s, strlen(s));
}

/* A value: bare when it is a plain word, else quoted with escapes. */
static void put_value(record *r, const char *v)
{
    v = v ? v : "";
    bool plain = v[0] != '\0';
    for (const char *p = v; *p && plain; p++)
        plain = (unsigned char)*p > ' ' && *p != '"' && *p != '=' && *p != '\\' &&
                (unsigned char)*p < 0x7f;
    if (plain) {
        put_str(r, v);
        return;
    }
    put(r, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(r, esc, 2);
        } else if (*p == '\n') {
            put(r, "\\n", 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            put_str(r, esc);
        } else {
            put(r, (const char *)p, 1);
        }
    }
    put(r, "\"", 1);
}

static void put_pair(record *r, const char *key, const char *value)
{
    put(r, " ", 1);
    put_str(r, key);
    put(r, "=", 1);
    put_value(r, value);
}

/* ---- JSON records ---- */

/* Room kept at the end of a JSON record for ',"truncated":true}' and the newline. */
#define JSON_TAIL 24

/* A JSON string, escaped; bytes that are not UTF-8 become U+FFFD. false when it did not fit
 * (it is closed all the same). */
static bool put_json_string(record *r, const char *v)
{
    size_t limit = sizeof r->buf - JSON_TAIL;
    if (r->n + 2 > limit)
        return false;
    r->buf[r->n++] = '"';
    bool fits = true;
    for (const unsigned char *p = (const unsigned char *)(v ? v : ""); *p;) {
        char esc[8];
        size_t len = 0, adv = 1;
        const char *out = esc;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p, len = 2;
        } else if (*p == '\n') {
            memcpy(esc, "\\n", 2), len = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            len = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
        } else if ((adv = keel_utf8_sequence(p)) == 0) {
            memcpy(esc, "\\ufffd", 6), len = 6, adv = 1;
        } else {
            out = (const char *)p, len = adv;
        }
        if (r->n + len + 1 > limit) {
            fits = false;
            break;
        }
        memcpy(r->buf + r->n, out, len);
        r->n += len;
        p += adv;
    }
    r->buf[r->n++] = '"';
    return fits;
}

static bool put_json_pair(record *r, const char *key, const char *value)
{
    /* A pair that cannot be written whole is taken back; a value cut short is kept (closed). */
    size_t mark = r->n;
    if (r->n + 4 > sizeof r->buf - JSON_TAIL)
        return false;
    r->buf[r->n++] = ',';
    if (!put_json_string(r, key) || r->n + 3 > sizeof r->buf - JSON_TAIL) {
        r->n = mark;
        return false;
    }
    r->buf[r->n++] = ':';
    return put_json_string(r, value);
}

void keel_log(keel_log_level level, const char *component, const char *msg, ...)
{
    if (!keel_log_enabled(level))
        return;
    record r = {.n = 0};
    /* The span this thread works in, for joining logs to traces. */
    char trace_id[33] = "", span_id[17] = "";
    const keel_span_context *span = keel_trace_current();
    if (span->valid) {
        keel_trace_id_hex(span->trace_id, trace_id);
        keel_span_id_hex(span->span_id, span_id);
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[40], ms[8];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ms, sizeof ms, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
    strncat(stamp, ms, sizeof stamp - strlen(stamp) - 1);
    const char *lvl = names[level < 0 || level > KEEL_LOG_ERROR ? 1 : level];
    va_list ap;
    if (json_format) {
        r.buf[r.n++] = '{';
        put_json_string(&r, "ts");
        r.buf[r.n++] = ':';
        bool ok = put_json_string(&r, stamp) && put_json_pair(&r, "level", lvl) &&
                  put_json_pair(&r, "component", component) && put_json_pair(&r, "msg", msg);
        va_start(ap, msg);
        for (const char *key; ok && (key = va_arg(ap, const char *)) != NULL;)
            ok = put_json_pair(&r, key, va_arg(ap, const char *));
        va_end(ap);
        if (ok && trace_id[0])
            ok = put_json_pair(&r, "trace_id", trace_id) && put_json_pair(&r, "span_id", span_id);
        if (!ok) {
            memcpy(r.buf + r.n, ",\"truncated\":true", 17); /* the room JSON_TAIL kept */
            r.n += 17;
        }
        r.buf[r.n++] = '}';
        r.buf[r.n++] = '\n';
        ssize_t ignored = write(STDERR_FILENO, r.buf, r.n);
        (void)ignored;
        return;
    }
    put_str(&r, "ts=");
    put_str(&r, stamp);
    put_pair(&r, "level", lvl);
    put_pair(&r, "component", component);
    put_pair(&r, "msg", msg);
    va_start(ap, msg);
    for (const char *key; (key = va_arg(ap, const char *)) != NULL;)
        put_pair(&r, key, va_arg(ap, const char *));
    va_end(ap);
    if (trace_id[0]) {
        put_pair(&r, "trace_id", trace_id);
        put_pair(&r, "span_id", span_id);
    }
    if (r.n >= sizeof r.buf - 5) {
        memcpy(r.buf + r.n, "...", 3); /* the room put() kept */
        r.n += 3;
    }
    r.buf[r.n++] = '\n';
    /* One write per record: lines from different threads never interleave. */
    ssize_t ignored = write(STDERR_FILENO, r.buf, r.n);
    (void)ignored;
}
