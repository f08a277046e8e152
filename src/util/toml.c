/* toml - a strict reader for the TOML subset of Temporal's client configuration files. */
#include "util/toml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

typedef struct parser {
    const char *s; /* NUL-terminated copy of the text */
    size_t len, pos;
    int line;
    size_t line_start;
    size_t n_keys;
    keel_error *err;
} parser;

static int fail_at(parser *p, size_t pos, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* The line of pos: count from the line the parser is on (pos is never before it). */
    int line = p->line;
    size_t start = p->line_start;
    for (size_t i = start; i < pos && i < p->len; i++)
        if (p->s[i] == '\n') {
            line++;
            start = i + 1;
        }
    return keel_error_set(p->err, KEEL_EINVAL, "line %d, column %zu: %s", line, pos - start + 1,
                          what);
}

#define FAIL(p, ...) fail_at((p), (p)->pos, __VA_ARGS__)

static char peek(const parser *p, size_t ahead)
{
    return p->pos + ahead < p->len ? p->s[p->pos + ahead] : '\0';
}

static bool at_end(const parser *p)
{
    return p->pos >= p->len;
}

/* Step over one byte, keeping the line count. */
static void advance(parser *p)
{
    if (p->s[p->pos] == '\n') {
        p->line++;
        p->line_start = p->pos + 1;
    }
    p->pos++;
}

static void skip_ws(parser *p)
{
    while (!at_end(p) && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

static bool at_newline(const parser *p)
{
    return peek(p, 0) == '\n' || (peek(p, 0) == '\r' && peek(p, 1) == '\n');
}

static void skip_newline(parser *p)
{
    if (peek(p, 0) == '\r')
        p->pos++;
    advance(p);
}

/* After a key/value or a header: spaces, an optional comment, then the end of the line. */
static int end_of_line(parser *p)
{
    skip_ws(p);
    if (peek(p, 0) == '#')
        while (!at_end(p) && !at_newline(p))
            p->pos++;
    if (at_end(p))
        return KEEL_OK;
    if (!at_newline(p))
        return FAIL(p, "expected the end of the line but found '%c'", peek(p, 0));
    skip_newline(p);
    return KEEL_OK;
}

/* ---- the tree ---- */

static keel_toml_value *new_value(parser *p, keel_toml_type type, const char *key, size_t key_pos,
                                  int depth)
{
    if (p->n_keys >= KEEL_TOML_MAX_KEYS) {
        fail_at(p, key_pos, "more than %d keys and tables (keel's limit for a configuration file)",
                KEEL_TOML_MAX_KEYS);
        return NULL;
    }
    keel_toml_value *v = calloc(1, sizeof *v);
    char *k = strdup(key);
    if (v == NULL || k == NULL) {
        free(v);
        free(k);
        keel_error_set(p->err, KEEL_ENOMEM, "out of memory reading TOML");
        return NULL;
    }
    p->n_keys++;
    v->type = type;
    v->key = k;
    v->depth = depth;
    v->line = p->line;
    v->column = (int)(key_pos - p->line_start + 1);
    return v;
}

static int add_item(parser *p, keel_toml_value *t, keel_toml_value *v)
{
    if (t->n_items == t->cap_items) {
        size_t cap = t->cap_items ? t->cap_items * 2 : 4;
        keel_toml_value **items = realloc(t->items, cap * sizeof *items);
        if (items == NULL) {
            keel_toml_free(v);
            return keel_error_set(p->err, KEEL_ENOMEM, "out of memory reading TOML");
        }
        t->items = items;
        t->cap_items = cap;
    }
    t->items[t->n_items++] = v;
    return KEEL_OK;
}

const keel_toml_value *keel_toml_get(const keel_toml_value *t, const char *key)
{
    if (t == NULL || t->type != KEEL_TOML_TABLE)
        return NULL;
    for (size_t i = 0; i < t->n_items; i++)
        if (strcmp(t->items[i]->key, key) == 0)
            return t->items[i];
    return NULL;
}

static keel_toml_value *get_mut(keel_toml_value *t, const char *key)
{
    return (keel_toml_value *)keel_toml_get(t, key);
}

const char *keel_toml_type_name(keel_toml_type type)
{
    switch (type) {
    case KEEL_TOML_TABLE:
        return "table";
    case KEEL_TOML_STRING:
        return "string";
    case KEEL_TOML_BOOL:
        return "boolean";
    case KEEL_TOML_INT:
        return "integer";
    }
    return "value";
}

void keel_toml_free(keel_toml_value *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n_items; i++)
        keel_toml_free(v->items[i]);
    free(v->items);
    free(v->key);
    keel_secret_free(v->str); /* values may be API keys or private keys */
    free(v);
}

/* ---- strings ---- */

static bool is_control(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static void put_code_point(keel_strbuf *b, unsigned long cp)
{
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        out[0] = (char)(0xf0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    keel_strbuf_put(b, out, n);
}

/* One escape after a backslash in a basic string (p->pos is at the character after '\'). */
static int escape(parser *p, keel_strbuf *b)
{
    char c = peek(p, 0);
    const char *simple = strchr("btnfr\"\\", c);
    if (c != '\0' && simple) {
        static const char out[] = "\b\t\n\f\r\"\\";
        keel_strbuf_put(b, &out[simple - "btnfr\"\\"], 1);
        p->pos++;
        return KEEL_OK;
    }
    if (c == 'u' || c == 'U') {
        size_t n = c == 'u' ? 4 : 8;
        unsigned long cp = 0;
        for (size_t i = 1; i <= n; i++) {
            int d = keel_hex_digit(peek(p, i));
            if (d < 0)
                return FAIL(p, "\\%c needs %zu hex digits", c, n);
            cp = cp * 16 + (unsigned long)d;
        }
        if (cp == 0)
            return FAIL(p, "\\u0000 inside a string (a C string would end there)");
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return FAIL(p, "\\%c escape of U+%lX, which is not a Unicode scalar value", c, cp);
        put_code_point(b, cp);
        p->pos += n + 1;
        return KEEL_OK;
    }
    if (c == '\0' || is_control((unsigned char)c) || c == '\n')
        return FAIL(p, "a backslash with nothing escaped after it");
    return FAIL(p, "unknown escape '\\%c'", c);
}

static int finish_string(parser *p, keel_strbuf *b, char **out)
{
    if (b->p == NULL)
        keel_strbuf_put(b, "", 0);
    if (b->oom) {
        free(b->p);
        return keel_error_set(p->err, KEEL_ENOMEM, "out of memory reading TOML");
    }
    *out = b->p;
    return KEEL_OK;
}

static int fail_string(keel_strbuf *b, int rc)
{
    free(b->p);
    return rc;
}

/* A one-line "basic" or 'literal' string: p->pos is at its opening quote. */
static int single_line_string(parser *p, char **out)
{
    char quote = peek(p, 0);
    size_t open = p->pos;
    keel_strbuf b = {0};
    p->pos++;
    for (;;) {
        if (at_end(p) || at_newline(p) || peek(p, 0) == '\r')
            return fail_string(&b, fail_at(p, open, "a string that does not end on its line"));
        char c = peek(p, 0);
        if (c == quote) {
            p->pos++;
            return finish_string(p, &b, out);
        }
        if (is_control((unsigned char)c))
            return fail_string(&b, FAIL(p,
                                        "a control character (0x%02x) inside a string; "
                                        "write it as an escape",
                                        (unsigned char)c));
        if (c == '\\' && quote == '"') {
            p->pos++;
            int rc = escape(p, &b);
            if (rc != KEEL_OK)
                return fail_string(&b, rc);
            continue;
        }
        keel_strbuf_put(&b, &p->s[p->pos], 1);
        p->pos++;
    }
}

/* A """multi-line basic""" or '''multi-line literal''' string: p->pos is at its delimiter. */
static int multi_line_string(parser *p, char **out)
{
    char quote = peek(p, 0);
    size_t open = p->pos;
    keel_strbuf b = {0};
    p->pos += 3;
    if (at_newline(p)) /* a newline right after the opening delimiter is trimmed */
        skip_newline(p);
    for (;;) {
        if (at_end(p))
            return fail_string(&b, fail_at(p, open, "a multi-line string that never ends"));
        char c = peek(p, 0);
        if (c == quote && peek(p, 1) == quote && peek(p, 2) == quote) {
            size_t q = 3;
            while (peek(p, q) == quote)
                q++;
            if (q > 5)
                return fail_string(&b, FAIL(p, "too many quotes at the end of a string"));
            for (size_t i = 3; i < q; i++)
                keel_strbuf_put(&b, &quote, 1);
            p->pos += q;
            return finish_string(p, &b, out);
        }
        if (at_newline(p)) {
            skip_newline(p);
            keel_strbuf_put(&b, "\n", 1);
            continue;
        }
        if (is_control((unsigned char)c))
            return fail_string(
                &b, FAIL(p, "a control character (0x%02x) inside a string", (unsigned char)c));
        if (c == '\\' && quote == '"') {
            /* A backslash ending a line joins it to the next non-blank text. */
            size_t q = 1;
            while (peek(p, q) == ' ' || peek(p, q) == '\t')
                q++;
            if (peek(p, q) == '\n' || (peek(p, q) == '\r' && peek(p, q + 1) == '\n')) {
                p->pos += q;
                while (!at_end(p) && (at_newline(p) || peek(p, 0) == ' ' || peek(p, 0) == '\t')) {
                    if (at_newline(p))
                        skip_newline(p);
                    else
                        p->pos++;
                }
                continue;
            }
            p->pos++;
            int rc = escape(p, &b);
            if (rc != KEEL_OK)
                return fail_string(&b, rc);
            continue;
        }
        keel_strbuf_put(&b, &p->s[p->pos], 1);
        p->pos++;
    }
}

/* ---- keys ---- */

static bool is_bare(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

#define MAX_PATH KEEL_TOML_MAX_DEPTH

typedef struct key_path {
    char *seg[MAX_PATH + 1];
    size_t pos[MAX_PATH + 1];
    size_t n;
} key_path;

static void path_free(key_path *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->seg[i]);
    k->n = 0;
}

static int key_segment(parser *p, char **out)
{
    size_t start = p->pos;
    char c = peek(p, 0);
    int rc;
    if (c == '"' || c == '\'') {
        if (peek(p, 1) == c && peek(p, 2) == c)
            return FAIL(p, "a multi-line string cannot be a key");
        rc = single_line_string(p, out);
        if (rc != KEEL_OK)
            return rc;
    } else {
        while (is_bare(peek(p, 0)))
            p->pos++;
        if (p->pos == start) {
            if (at_end(p) || at_newline(p))
                return FAIL(p, "expected a key");
            return FAIL(p,
                        "expected a key but found '%c' (bare keys are A-Z a-z 0-9 _ -; "
                        "quote others)",
                        c);
        }
        *out = strndup(p->s + start, p->pos - start);
        if (*out == NULL)
            return keel_error_set(p->err, KEEL_ENOMEM, "out of memory reading TOML");
    }
    if (strlen(*out) > KEEL_TOML_MAX_KEY) {
        free(*out);
        return fail_at(p, start, "a key longer than %d bytes", KEEL_TOML_MAX_KEY);
    }
    return KEEL_OK;
}

/* key ( . key )*, spaces allowed around the dots. */
static int parse_key(parser *p, key_path *k)
{
    k->n = 0;
    for (;;) {
        skip_ws(p);
        if (k->n == MAX_PATH) {
            path_free(k);
            return FAIL(p, "a key with more than %d parts", MAX_PATH);
        }
        k->pos[k->n] = p->pos;
        int rc = key_segment(p, &k->seg[k->n]);
        if (rc != KEEL_OK) {
            path_free(k);
            return rc;
        }
        k->n++;
        skip_ws(p);
        if (peek(p, 0) != '.')
            return KEEL_OK;
        p->pos++;
    }
}

/* ---- values ---- */

static int parse_integer(parser *p, int64_t *out)
{
    size_t start = p->pos;
    size_t end = start;
    while (end < p->len && (is_bare(p->s[end]) || strchr("+.:", p->s[end])))
        end++;
    const char *t = p->s + start;
    size_t n = end - start;
    for (size_t i = 0; i < n; i++)
        if (t[i] == '.' || t[i] == ':' ||
            ((t[i] == 'e' || t[i] == 'E') && !(n > 1 && t[1] == 'x')) ||
            (i > 0 && (t[i] == '-' || t[i] == '+')) || strncmp(t + i, "inf", 3) == 0 ||
            strncmp(t + i, "nan", 3) == 0)
            return FAIL(p,
                        "'%.*s': floats, dates and times are not supported (no client setting "
                        "is one)",
                        (int)(n > 40 ? 40 : n), t);
    bool neg = false;
    size_t i = 0;
    if (n > 0 && (t[0] == '+' || t[0] == '-')) {
        neg = t[0] == '-';
        i = 1;
    }
    int base = 10;
    if (n - i >= 2 && t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'o' || t[i + 1] == 'b')) {
        if (i > 0)
            return FAIL(p, "a sign before a 0x, 0o or 0b integer");
        base = t[i + 1] == 'x' ? 16 : t[i + 1] == 'o' ? 8 : 2;
        i += 2;
    } else if (n - i >= 2 && t[i] == '0') {
        return FAIL(p, "'%.*s': an integer with a leading zero", (int)(n > 40 ? 40 : n), t);
    }
    if (i == n)
        return FAIL(p, "an integer with no digits");
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    bool prev_digit = false;
    for (; i < n; i++) {
        if (t[i] == '_') {
            if (!prev_digit || i + 1 == n || t[i + 1] == '_')
                return FAIL(p, "an underscore in an integer must sit between two digits");
            prev_digit = false;
            continue;
        }
        int d = keel_hex_digit(t[i]);
        if (d < 0 || d >= base)
            return FAIL(p, "'%.*s' is not an integer", (int)(n > 40 ? 40 : n), t);
        if (v > (limit - (uint64_t)d) / (uint64_t)base)
            return FAIL(p, "an integer out of the 64-bit range");
        v = v * (uint64_t)base + (uint64_t)d;
        prev_digit = true;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    p->pos = end;
    return KEEL_OK;
}

static int keyval(parser *p, keel_toml_value *table);

static int inline_table(parser *p, keel_toml_value *t)
{
    p->pos++; /* { */
    skip_ws(p);
    if (peek(p, 0) == '}') {
        p->pos++;
        t->sealed = true;
        return KEEL_OK;
    }
    for (;;) {
        int rc = keyval(p, t);
        if (rc != KEEL_OK)
            return rc;
        skip_ws(p);
        if (peek(p, 0) == '}') {
            p->pos++;
            t->sealed = true;
            return KEEL_OK;
        }
        if (peek(p, 0) != ',') {
            if (at_end(p) || at_newline(p))
                return FAIL(p, "an inline table must end with '}' on its own line");
            return FAIL(p, "expected ',' or '}' in an inline table but found '%c'", peek(p, 0));
        }
        p->pos++;
        skip_ws(p);
        if (peek(p, 0) == '}')
            return FAIL(p, "a trailing comma in an inline table");
    }
}

/* The value after '=' into v (whose type it sets). */
static int parse_value(parser *p, keel_toml_value *v)
{
    char c = peek(p, 0);
    if (c == '"' || c == '\'') {
        v->type = KEEL_TOML_STRING;
        if (peek(p, 1) == c && peek(p, 2) == c)
            return multi_line_string(p, &v->str);
        return single_line_string(p, &v->str);
    }
    if (strncmp(p->s + p->pos, "true", 4) == 0 && !is_bare(peek(p, 4))) {
        v->type = KEEL_TOML_BOOL;
        v->boolean = true;
        p->pos += 4;
        return KEEL_OK;
    }
    if (strncmp(p->s + p->pos, "false", 5) == 0 && !is_bare(peek(p, 5))) {
        v->type = KEEL_TOML_BOOL;
        p->pos += 5;
        return KEEL_OK;
    }
    if (c == '{') {
        if (v->depth >= KEEL_TOML_MAX_DEPTH)
            return FAIL(p, "tables nested deeper than %d", KEEL_TOML_MAX_DEPTH);
        v->type = KEEL_TOML_TABLE;
        return inline_table(p, v);
    }
    if (c == '[')
        return FAIL(p, "arrays are not supported (no client setting is a list)");
    if ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == 'i' || c == 'n') {
        v->type = KEEL_TOML_INT;
        return parse_integer(p, &v->integer);
    }
    if (at_end(p) || at_newline(p) || c == '#')
        return FAIL(p, "a key with no value after '='");
    return FAIL(p,
                "expected a value (a string, true, false, an integer or an inline table) but "
                "found '%c'",
                c);
}

/* Walk or make the tables of a dotted key's leading parts under t. */
static int dotted_tables(parser *p, keel_toml_value *t, const key_path *k, size_t n,
                         keel_toml_value **out)
{
    for (size_t i = 0; i < n; i++) {
        keel_toml_value *next = get_mut(t, k->seg[i]);
        if (next == NULL) {
            if (t->depth + 1 > KEEL_TOML_MAX_DEPTH)
                return fail_at(p, k->pos[i], "tables nested deeper than %d", KEEL_TOML_MAX_DEPTH);
            next = new_value(p, KEEL_TOML_TABLE, k->seg[i], k->pos[i], t->depth + 1);
            if (next == NULL)
                return p->err ? p->err->code : KEEL_EINVAL;
            next->dotted = true;
            int rc = add_item(p, t, next);
            if (rc != KEEL_OK)
                return rc;
        } else if (next->type != KEEL_TOML_TABLE || next->sealed || !next->dotted) {
            return fail_at(p, k->pos[i], "'%s' is defined already (line %d)", k->seg[i],
                           next->line);
        }
        t = next;
    }
    *out = t;
    return KEEL_OK;
}

static int keyval(parser *p, keel_toml_value *table)
{
    key_path k;
    int rc = parse_key(p, &k);
    if (rc != KEEL_OK)
        return rc;
    keel_toml_value *t = table;
    rc = dotted_tables(p, table, &k, k.n - 1, &t);
    if (rc == KEEL_OK) {
        skip_ws(p);
        if (peek(p, 0) != '=')
            rc = (at_end(p) || at_newline(p))
                     ? FAIL(p, "expected '=' after the key '%s'", k.seg[k.n - 1])
                     : FAIL(p, "expected '=' after the key '%s' but found '%c'", k.seg[k.n - 1],
                            peek(p, 0));
    }
    if (rc == KEEL_OK) {
        const keel_toml_value *old = keel_toml_get(t, k.seg[k.n - 1]);
        if (old)
            rc = fail_at(p, k.pos[k.n - 1], "'%s' is defined twice (first on line %d)",
                         k.seg[k.n - 1], old->line);
    }
    keel_toml_value *v = NULL;
    if (rc == KEEL_OK) {
        v = new_value(p, KEEL_TOML_STRING, k.seg[k.n - 1], k.pos[k.n - 1], t->depth + 1);
        if (v == NULL)
            rc = p->err ? p->err->code : KEEL_EINVAL;
    }
    if (rc == KEEL_OK) {
        p->pos++; /* = */
        skip_ws(p);
        rc = parse_value(p, v);
        v->sealed = true;
        if (rc == KEEL_OK)
            rc = add_item(p, t, v);
        else
            keel_toml_free(v);
    }
    path_free(&k);
    return rc;
}

/* [a.b.c]: p->pos at '['. *current becomes the table. */
static int header(parser *p, keel_toml_value *root, keel_toml_value **current)
{
    if (peek(p, 1) == '[')
        return FAIL(p, "arrays of tables ([[...]]) are not supported");
    p->pos++;
    key_path k;
    int rc = parse_key(p, &k);
    if (rc != KEEL_OK)
        return rc;
    if (peek(p, 0) != ']')
        rc = FAIL(p, "expected ']' to end the table header");
    keel_toml_value *t = root;
    for (size_t i = 0; rc == KEEL_OK && i < k.n; i++) {
        keel_toml_value *next = get_mut(t, k.seg[i]);
        bool last = i + 1 == k.n;
        if (next == NULL) {
            next = new_value(p, KEEL_TOML_TABLE, k.seg[i], k.pos[i], t->depth + 1);
            if (next == NULL) {
                rc = p->err ? p->err->code : KEEL_EINVAL;
                break;
            }
            next->explicit_header = last;
            rc = add_item(p, t, next);
        } else if (next->type != KEEL_TOML_TABLE || next->sealed) {
            rc = fail_at(p, k.pos[i], "'%s' is defined already as a value (line %d)", k.seg[i],
                         next->line);
        } else if (last && (next->explicit_header || next->dotted)) {
            rc = fail_at(p, k.pos[i], "the table '%s' is defined twice (first on line %d)",
                         k.seg[i], next->line);
        } else if (last) {
            next->explicit_header = true;
        }
        t = next;
    }
    path_free(&k);
    if (rc != KEEL_OK)
        return rc;
    p->pos++; /* ] */
    *current = t;
    return end_of_line(p);
}

/* Whole-text checks first: size, NUL bytes, UTF-8, control characters, line length. */
static int check_text(parser *p)
{
    size_t line_len = 0;
    for (size_t i = 0; i < p->len;) {
        unsigned char c = (unsigned char)p->s[i];
        if (c == '\n') {
            line_len = 0;
            i++;
            p->line++;
            p->line_start = i;
            continue;
        }
        if (++line_len > KEEL_TOML_MAX_LINE)
            return fail_at(p, i, "a line longer than %d bytes", KEEL_TOML_MAX_LINE);
        if (c == '\0')
            return fail_at(p, i, "a NUL byte");
        if (c == '\r' && (i + 1 >= p->len || p->s[i + 1] != '\n'))
            return fail_at(p, i, "a carriage return not followed by a line feed");
        if (c >= 0x80) {
            size_t n = keel_utf8_sequence((const unsigned char *)p->s + i);
            if (n == 0)
                return fail_at(p, i, "invalid UTF-8 (byte 0x%02x)", c);
            i += n;
            line_len += n - 1;
            continue;
        }
        if (is_control(c) && c != '\r')
            return fail_at(p, i, "a control character (0x%02x)", c);
        i++;
    }
    p->line = 1;
    p->line_start = 0;
    return KEEL_OK;
}

int keel_toml_parse(const char *text, size_t len, keel_toml_value **root, keel_error *err)
{
    *root = NULL;
    if (len > KEEL_TOML_MAX_BYTES)
        return keel_error_set(err, KEEL_EINVAL,
                              "the text is %zu bytes, over keel's limit of %d bytes", len,
                              KEEL_TOML_MAX_BYTES);
    keel_error local;
    parser p = {.len = len, .line = 1, .err = err ? err : &local};
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory reading TOML");
    if (len)
        memcpy(copy, text, len);
    copy[len] = '\0';
    p.s = copy;
    int rc = check_text(&p);
    keel_toml_value *top = NULL;
    if (rc == KEEL_OK) {
        top = calloc(1, sizeof *top);
        if (top == NULL)
            rc = keel_error_set(err, KEEL_ENOMEM, "out of memory reading TOML");
    }
    keel_toml_value *current = top;
    while (rc == KEEL_OK) {
        skip_ws(&p);
        if (at_end(&p))
            break;
        char c = peek(&p, 0);
        if (c == '#' || at_newline(&p))
            rc = end_of_line(&p);
        else if (c == '[')
            rc = header(&p, top, &current);
        else if ((rc = keyval(&p, current)) == KEEL_OK)
            rc = end_of_line(&p);
    }
    free(copy);
    if (rc != KEEL_OK) {
        keel_toml_free(top);
        return rc;
    }
    *root = top;
    return KEEL_OK;
}
