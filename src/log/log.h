/*
 * log - the process's one-line structured log (logfmt), on stderr.
 *
 *   ts=2026-11-23T10:04:05.123Z level=warn component=worker msg="workflow task failed"
 *   workflow_id=po-17 error="[TMPRL1100] ..."
 *
 * Values are quoted when they need it, with quotes, backslashes and control characters escaped,
 * so that every record is exactly one line whatever a workflow id or an error message holds.
 * KEEL_LOG_LEVEL (debug, info, warn, error; default info) sets what is written. Secrets never go
 * to the log: callers pass ids, types and error messages, never credentials or payloads.
 */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

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

#endif
