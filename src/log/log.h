/*
 * log - the process's one-line structured log (logfmt, or JSON), on stderr.
 *
 *   ts=2026-11-23T10:04:05.123Z level=warn component=worker msg="workflow task failed"
 *   workflow_id=po-17 error="[TMPRL1100] ..."
 *
 * KEEL_LOG_FORMAT=json writes each record as one JSON object instead (for log shippers):
 *
 *   {"ts":"2026-11-23T10:04:05.123Z","level":"warn","component":"worker","msg":"...",...}
 *
 * with strings escaped and bytes that are not UTF-8 replaced, so that every line parses; a
 * record cut at the 4 KiB cap ends with "truncated":true. While a span is current on the
 * thread (keel/trace.h: an activity runs), records carry its trace_id and span_id.
 *
 * Values are quoted when they need it, with quotes, backslashes and control characters escaped,
 * so that every record is exactly one line whatever a workflow id or an error message holds.
 * KEEL_LOG_LEVEL (debug, info, warn, error; default info) sets what is written. Secrets never go
 * to the log: callers pass ids, types and error messages, never credentials or payloads.
 */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <stdbool.h>

typedef enum keel_log_level {
    KEEL_LOG_DEBUG = 0,
    KEEL_LOG_INFO,
    KEEL_LOG_WARN,
    KEEL_LOG_ERROR,
} keel_log_level;

/*
 * Write one record: the message, then key/value string pairs ending with a NULL key. A NULL
 * value is written as an empty one. Thread-safe; each record is a single write.
 */
void keel_log(keel_log_level level, const char *component, const char *msg, ...);

/* Whether records at `level` are written (to skip building expensive values). */
int keel_log_enabled(keel_log_level level);

/* Whether records are JSON (KEEL_LOG_FORMAT=json); set it otherwise (tests). */
bool keel_log_json(void);
void keel_log_set_json(bool on);

#endif
