/*
 * log - logfmt records on stderr (see log.h).
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

#define RECORD_MAX 4096

static pthread_once_t once = PTHREAD_ONCE_INIT;
static keel_log_level threshold = KEEL_LOG_INFO; /* set once, from the environment */

static const char *const names[] = {"debug", "info", "warn", "error"};

static void read_level(void)
{
    const char *v = getenv("KEEL_LOG_LEVEL");
    for (int i = 0; v && i < 4; i++)
        if (strcmp(v, names[i]) == 0)
            threshold = (keel_log_level)i;
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

void keel_log(keel_log_level level, const char *component, const char *msg, ...)
{
    if (!keel_log_enabled(level))
        return;
    record r = {.n = 0};
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[40], ms[8];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ms, sizeof ms, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
    strncat(stamp, ms, sizeof stamp - strlen(stamp) - 1);
    put_str(&r, "ts=");
    put_str(&r, stamp);
    put_pair(&r, "level", names[level < 0 || level > KEEL_LOG_ERROR ? 1 : level]);
    put_pair(&r, "component", component);
    put_pair(&r, "msg", msg);
    va_list ap;
    va_start(ap, msg);
    for (const char *key; (key = va_arg(ap, const char *)) != NULL;)
        put_pair(&r, key, va_arg(ap, const char *));
    va_end(ap);
    if (r.n >= sizeof r.buf - 5) {
        memcpy(r.buf + r.n, "...", 3); /* the room put() kept */
        r.n += 3;
    }
    r.buf[r.n++] = '\n';
    /* One write per record: lines from different threads never interleave. */
    ssize_t ignored = write(STDERR_FILENO, r.buf, r.n);
    (void)ignored;
}
