/*
 * wfjson - the JSON chores every workflow in workflows/ shares: reading input strictly (unknown
 * or repeated fields refused, lengths and ranges named) and building answers that are printed
 * only when complete.
 *
 * The readers write why they refused into why[n] and return false, so that checks chain with
 * &&. Nothing here allocates except the builders, whose results the caller owns (cJSON_Delete;
 * printed text: cJSON_free).
 */
#ifndef KEEL_WORKFLOWS_WFJSON_H
#define KEEL_WORKFLOWS_WFJSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Say why into why[n]; false, so that checks can `return keel_wf_refuse(...)`. */
bool keel_wf_refuse(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The object member `field` (borrowed), or NULL when it is absent or JSON null. */
const cJSON *keel_wf_member(const cJSON *obj, const char *field);

/* Refuse members not in `known` (NULL-terminated) and repeated ones: a misspelt or doubled field
 * must not go unnoticed (cJSON reads the first of two and drops the other). */
bool keel_wf_only_known_fields(const cJSON *obj, const char *const *known, char *why, size_t n);

/* Copy string v (the member `field`) into dst[size]: non-empty unless may_be_empty, and short
 * enough to keep whole. */
bool keel_wf_take_text(const cJSON *v, const char *field, bool may_be_empty, char *dst, size_t size,
                       char *why, size_t n);

/* A whole number of `unit` in [min, max] from member `field` of obj, or dflt when absent. */
bool keel_wf_take_whole(const cJSON *obj, const char *field, const char *unit, int64_t dflt,
                        int64_t min, int64_t max, int64_t *out, char *why, size_t n);

/* Add item (NULL when its allocation failed) to object o under key, or to array o (key NULL).
 * False, with item freed, when it could not be added. */
bool keel_wf_put(cJSON *o, const char *key, cJSON *item);

/* A JSON string, or null for NULL or "". */
cJSON *keel_wf_string_or_null(const char *s);

/* Print o (compact) if `complete`, and free o either way. NULL when incomplete or out of
 * memory. The caller frees the text with cJSON_free. */
char *keel_wf_print(cJSON *o, bool complete);

/* "4,596.00": a dollar amount with thousands separators and cents, into buf[n]. */
void keel_wf_money(double usd, char *buf, size_t n);

/* Workflow time (ms since the epoch, UTC) as "YYYY-MM-DD" into buf[11]. Pure arithmetic. */
void keel_wf_date(int64_t ms, char buf[11]);

#endif
