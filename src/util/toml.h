/*
 * toml - a small strict reader for the part of TOML v1.0 that Temporal's client configuration
 * files use (keel/profile.h reads them).
 *
 * Supported: comments, [table] and [dotted."quoted".table] headers, key = value lines with bare,
 * "basic" and 'literal' keys and dotted keys, inline tables ({ k = "v", ... }), basic and literal
 * strings and their multi-line forms (PEM text may be inline), booleans, and integers (decimal
 * with _ separators, 0x, 0o, 0b). Refused with an error naming the line and column: arrays,
 * arrays of tables, floats, dates and times, a key or table defined twice, invalid UTF-8, NUL and
 * other control characters outside comments, and anything past the caps below.
 *
 * A parsed document is a tree of keel_toml_value; the caller owns the root and frees it with
 * keel_toml_free(). Every string is NUL-terminated; a string holding a NUL (\u0000) is refused,
 * since a C string would end there.
 */
#ifndef KEEL_UTIL_TOML_H
#define KEEL_UTIL_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"

#define KEEL_TOML_MAX_BYTES (1024 * 1024) /* the whole text */
#define KEEL_TOML_MAX_LINE  (64 * 1024)   /* one physical line */
#define KEEL_TOML_MAX_DEPTH 8             /* tables inside tables */
#define KEEL_TOML_MAX_KEYS  4096          /* keys and tables in one document */
#define KEEL_TOML_MAX_KEY   256           /* bytes in one key */

typedef enum keel_toml_type {
    KEEL_TOML_TABLE = 0,
    KEEL_TOML_STRING,
    KEEL_TOML_BOOL,
    KEEL_TOML_INT,
} keel_toml_type;

typedef struct keel_toml_value keel_toml_value;
struct keel_toml_value {
    keel_toml_type type;
    char *key;        /* NULL for the root */
    int line, column; /* where the key was written (1-based) */
    char *str;        /* KEEL_TOML_STRING */
    bool boolean;     /* KEEL_TOML_BOOL */
    int64_t integer;  /* KEEL_TOML_INT */
    /* KEEL_TOML_TABLE: its entries in the order written */
    keel_toml_value **items;
    size_t n_items, cap_items;
    /* parser bookkeeping: a table made by a [header] (explicit), by a dotted key, or sealed
     * (an inline table, or a value) */
    bool explicit_header, dotted, sealed;
    int depth; /* tables above this one: 0 for the root */
};

/* Parse len bytes. On success *root is a table the caller frees with keel_toml_free(). On
 * failure *root is NULL and err says "line L, column C: what is wrong". */
int keel_toml_parse(const char *text, size_t len, keel_toml_value **root, keel_error *err);

/* The entry named key in table t, or NULL (also when t is NULL or not a table). */
const keel_toml_value *keel_toml_get(const keel_toml_value *t, const char *key);

/* "table", "string", "boolean", "integer". */
const char *keel_toml_type_name(keel_toml_type type);

void keel_toml_free(keel_toml_value *v);

#endif
