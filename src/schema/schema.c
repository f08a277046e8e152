/*
 * src/schema/schema.c - JSON Schema draft 7 and 2020-12, compiled once and validated many times;
 * see keel/schema.h for what is supported and every limit.
 *
 * Compiling walks the schema document and turns every subschema into an `snode` whose keywords
 * are already checked, parsed and linked: numbers as exact decimals, regexes compiled, $ref and
 * $dynamicRef pointing at their target snodes. Documents a reference names (the resources the
 * caller registered, keel's copies of the metaschemas) are parsed and compiled when first named.
 * Validating then only walks snodes and the instance; it counts its steps against a budget,
 * bounds its depth, and collects the annotations unevaluatedProperties/unevaluatedItems need
 * (which members or items some keyword evaluated) only where such a keyword is in play.
 */
#include "keel/schema.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/json.h"
#include "schema/regex.h"
#include "util/strbuf.h"

/* The base URI of a root document that has none of its own (no $id, no options.base_uri). */
#define DEFAULT_BASE_URI "keel:///schema.json"
#define STR(x)           #x
#define XSTR(x)          STR(x)

/* A metaschema's $schema may name another metaschema; this many hops at most. */
#define MAX_METASCHEMA_HOPS 8

/* ---- memory for a compiled schema: one arena, freed at once ------------------------------- */

#define ARENA_BLOCK ((size_t)64 << 10)

typedef union arena_head {
    struct {
        union arena_head *next;
        size_t used, cap;
    } h;
    max_align_t align;
} arena_head;

typedef struct arena {
    arena_head *blocks;
} arena;

/* n zeroed bytes that live until arena_free, or NULL when out of memory. */
static void *arena_alloc(arena *a, size_t n)
{
    const size_t al = _Alignof(max_align_t);
    n = n ? (n + al - 1) & ~(al - 1) : al;
    arena_head *b = a->blocks;
    if (!b || b->h.cap - b->h.used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->h.next = a->blocks;
        b->h.used = 0;
        b->h.cap = cap;
        a->blocks = b;
    }
    void *p = (unsigned char *)(b + 1) + b->h.used;
    b->h.used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

static char *arena_strdup(arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

static void arena_free(arena *a)
{
    for (arena_head *b = a->blocks, *next; b; b = next) {
        next = b->h.next;
        free(b);
    }
    a->blocks = NULL;
}

/* ---- growable string ---------------------------------------------------------------------- */

typedef keel_strbuf sbuf;

/* Append "/" and a reference token, escaping ~ and / as RFC 6901 says. */
static void sb_push_token(sbuf *b, const char *tok)
{
    keel_strbuf_put(b, "/", 1);
    for (const char *c = tok; *c; c++) {
        if (*c == '~')
            keel_strbuf_put(b, "~0", 2);
        else if (*c == '/')
            keel_strbuf_put(b, "~1", 2);
        else
            keel_strbuf_put(b, c, 1);
    }
}

static void sb_push_index(sbuf *b, size_t i)
{
    char num[32];
    snprintf(num, sizeof num, "%zu", i);
    sb_push_token(b, num);
}

static const char *sb_str(const sbuf *b)
{
    return b->p ? b->p : "";
}

/* ---- exact decimal numbers ---------------------------------------------------------------- */

/*
 * A JSON number read from its text: the value is sign x 0.DIGITS x 10^exp10, where DIGITS are
 * the significant digits (no leading or trailing zeros) found in `text` from `first` on,
 * skipping the decimal point. Comparing these is exact whatever the number's size, which
 * doubles are not (9007199254740993, 1e400).
 */
typedef struct decnum {
    const char *text;
    size_t first;   /* offset of the first significant digit */
    size_t dot;     /* offset of the '.', or SIZE_MAX */
    size_t ndigits; /* significant digits */
    int64_t exp10;
    int sign; /* -1, 0 (zero) or 1 */
} decnum;

/* Exponents are read up to this size; beyond it they saturate (no JSON number gets there). */
#define EXP_CAP ((int64_t)1 << 50)

static char dec_digit(const decnum *d, size_t i)
{
    size_t pos = d->first + i;
    if (d->dot != SIZE_MAX && d->first < d->dot && pos >= d->dot)
        pos++;
    return d->text[pos];
}

/* Read a JSON number's text; false when it is not one. */
static bool dec_parse(const char *t, decnum *d)
{
    memset(d, 0, sizeof *d);
    d->text = t;
    d->dot = SIZE_MAX;
    size_t i = 0, first = SIZE_MAX, last = SIZE_MAX;
    int sign = 1;
    int64_t int_digits = 0, index = 0, first_index = 0;
    if (t[i] == '-') {
        sign = -1;
        i++;
    }
    bool any = false;
    for (;; i++) {
        char c = t[i];
        if (c == '.' && d->dot == SIZE_MAX && any) {
            d->dot = i;
            continue;
        }
        if (c < '0' || c > '9')
            break;
        any = true;
        if (d->dot == SIZE_MAX)
            int_digits++;
        if (c != '0') {
            if (first == SIZE_MAX) {
                first = i;
                first_index = index;
            }
            last = i;
        }
        index++;
    }
    if (!any)
        return false;
    int64_t e = 0;
    if (t[i] == 'e' || t[i] == 'E') {
        int es = 1;
        i++;
        if (t[i] == '+' || t[i] == '-')
            es = t[i++] == '-' ? -1 : 1;
        if (t[i] < '0' || t[i] > '9')
            return false;
        for (; t[i] >= '0' && t[i] <= '9'; i++)
            if (e < EXP_CAP)
                e = e * 10 + (t[i] - '0');
        e *= es;
    }
    if (t[i] != '\0')
        return false;
    if (first == SIZE_MAX)
        return true; /* zero, of either sign */
    d->sign = sign;
    d->first = first;
    d->ndigits = last - first + 1 - (d->dot != SIZE_MAX && d->dot > first && d->dot < last);
    d->exp10 = int_digits - first_index + e;
    return true;
}

/* The decimal of a number item; text_buf holds its text when the item keeps none. */
static void dec_of(const cJSON *j, decnum *d, char text_buf[32])
{
    const char *t = keel_json_number_text(j, text_buf);
    if (!dec_parse(t, d)) { /* not finite: only from trees built in code, refused earlier */
        memset(d, 0, sizeof *d);
        d->text = "0";
    }
}

static int dec_cmp(const decnum *a, const decnum *b)
{
    if (a->sign != b->sign)
        return a->sign < b->sign ? -1 : 1;
    if (a->sign == 0)
        return 0;
    int mag = 0;
    if (a->exp10 != b->exp10) {
        mag = a->exp10 < b->exp10 ? -1 : 1;
    } else {
        size_t n = a->ndigits < b->ndigits ? a->ndigits : b->ndigits;
        for (size_t i = 0; i < n && mag == 0; i++) {
            char x = dec_digit(a, i), y = dec_digit(b, i);
            if (x != y)
                mag = x < y ? -1 : 1;
        }
        if (mag == 0 && a->ndigits != b->ndigits)
            mag = a->ndigits < b->ndigits ? -1 : 1;
    }
    return a->sign * mag;
}

static bool dec_is_integer(const decnum *d)
{
    return d->sign == 0 || d->exp10 >= (int64_t)d->ndigits;
}

/* a * b mod m without overflow, for a, b < m < 2^62. */
static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m)
{
    uint64_t r = 0;
    a %= m;
    while (b) {
        if (b & 1) {
            r += a;
            if (r >= m)
                r -= m;
        }
        a += a;
        if (a >= m)
            a -= m;
        b >>= 1;
    }
    return r;
}

static uint64_t powmod10(uint64_t e, uint64_t m)
{
    uint64_t r = 1 % m, base = 10 % m;
    while (e) {
        if (e & 1)
            r = mulmod(r, base, m);
        base = mulmod(base, base, m);
        e >>= 1;
    }
    return r;
}

/* Whether x is an integer multiple of m (m > 0): exact when m has at most 18 significant
 * digits, which every multipleOf people write has; otherwise by doubles. */
static bool dec_multiple_of(const decnum *x, const decnum *m)
{
    if (x->sign == 0)
        return true;
    if (m->ndigits > 18) {
        double xv = strtod(x->text, NULL), mv = strtod(m->text, NULL), q = xv / mv;
        if (!isfinite(q))
            return false;
        return fabs(q - nearbyint(q)) <= 1e-9 * fmax(1.0, fabs(q));
    }
    /* x = X * 10^ex and m = M * 10^em with X, M integers not ending in 0 */
    int64_t ex = x->exp10 - (int64_t)x->ndigits, em = m->exp10 - (int64_t)m->ndigits;
    if (ex < em)
        return false; /* X / (M * 10^k) would need X to end in k zeros */
    uint64_t M = 0, r = 0;
    for (size_t i = 0; i < m->ndigits; i++)
        M = M * 10 + (uint64_t)(dec_digit(m, i) - '0');
    for (size_t i = 0; i < x->ndigits; i++)
        r = (r * 10 + (uint64_t)(dec_digit(x, i) - '0')) % M;
    return mulmod(r, powmod10((uint64_t)(ex - em), M), M) == 0;
}

/* A count keyword's value (a non-negative integer), saturated at UINT64_MAX. */
static uint64_t dec_to_count(const decnum *d)
{
    if (d->sign <= 0)
        return 0;
    if (d->exp10 > 19)
        return UINT64_MAX;
    uint64_t v = 0;
    for (int64_t i = 0; i < d->exp10; i++) {
        uint64_t digit = (size_t)i < d->ndigits ? (uint64_t)(dec_digit(d, (size_t)i) - '0') : 0;
        if (v > (UINT64_MAX - digit) / 10)
            return UINT64_MAX;
        v = v * 10 + digit;
    }
    return v;
}

static bool is_integral(const cJSON *j)
{
    char buf[32];
    decnum d;
    if (!cJSON_IsNumber(j))
        return false;
    dec_of(j, &d, buf);
    return dec_is_integer(&d);
}

/* ---- JSON equality and hashing (enum, const, uniqueItems) --------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    return h * 0xFF51AFD7ED558CCDull;
}

static uint64_t hash_bytes(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001B3ull;
    return h;
}

static uint64_t hash_number(const cJSON *j)
{
    char buf[32];
    decnum d;
    dec_of(j, &d, buf);
    uint64_t h = mix(3, (uint64_t)(d.sign + 1));
    h = mix(h, (uint64_t)d.exp10);
    for (size_t i = 0; i < d.ndigits; i++)
        h = (h ^ (unsigned char)dec_digit(&d, i)) * 0x100000001B3ull;
    return h;
}

/* A hash equal for equal values (objects: whatever the member order; numbers: by value). The
 * number of nodes hashed is added to *work. */
static uint64_t json_hash(const cJSON *j, uint64_t *work)
{
    (*work)++;
    if (cJSON_IsNull(j))
        return 1;
    if (cJSON_IsBool(j))
        return cJSON_IsTrue(j) ? 2 : 5;
    if (cJSON_IsNumber(j))
        return hash_number(j);
    if (cJSON_IsString(j))
        return hash_bytes(0xCBF29CE484222325ull, j->valuestring, strlen(j->valuestring));
    uint64_t h = cJSON_IsArray(j) ? 7 : 11, sum = 0;
    for (const cJSON *c = j->child; c; c = c->next) {
        uint64_t v = json_hash(c, work);
        if (cJSON_IsArray(j))
            h = mix(h, v);
        else /* order-free: a sum of the members' hashes */
            sum += mix(hash_bytes(0xCBF29CE484222325ull, c->string, strlen(c->string)), v);
    }
    return mix(h, sum);
}

/* Deep equality: numbers by value, arrays in order, objects as sets of members. */
static bool json_equal(const cJSON *a, const cJSON *b, uint64_t *work)
{
    (*work)++;
    if (cJSON_IsBool(a) || cJSON_IsBool(b))
        return cJSON_IsBool(a) && cJSON_IsBool(b) && cJSON_IsTrue(a) == cJSON_IsTrue(b);
    if ((a->type & 0xFF) != (b->type & 0xFF))
        return false;
    if (cJSON_IsNumber(a)) {
        char ba[32], bb[32];
        decnum x, y;
        dec_of(a, &x, ba);
        dec_of(b, &y, bb);
        return dec_cmp(&x, &y) == 0;
    }
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsNull(a))
        return true;
    size_t na = 0, nb = 0;
    for (const cJSON *x = a->child; x; x = x->next)
        na++;
    for (const cJSON *y = b->child; y; y = y->next)
        nb++;
    if (na != nb)
        return false;
    if (cJSON_IsArray(a)) {
        for (const cJSON *x = a->child, *y = b->child; x && y; x = x->next, y = y->next)
            if (!json_equal(x, y, work))
                return false;
        return true;
    }
    for (const cJSON *x = a->child; x; x = x->next) {
        *work += nb; /* the lookup below is linear */
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
        if (!y || !json_equal(x, y, work))
            return false;
    }
    return true;
}

/* Code points of s; KEEL_JSON_KEEP_NUL's C0 80 counts once, as the U+0000 it stands for. */
static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if ((*c & 0xC0) != 0x80)
            n++;
    return n;
}

/*
 * Strings are read with KEEL_JSON_KEEP_NUL, so U+0000 is the two bytes C0 80 (keel/json.h). PCRE2
 * in UTF mode refuses those bytes: a subject gets its real NULs back (PCRE2 takes a length), a
 * pattern gets the JavaScript escape \x00. Both return NULL when s holds no U+0000 (use s) or
 * memory ran out (*oom).
 */
static char *subject_with_nuls(const char *s, size_t *len, bool *oom)
{
    *oom = false;
    if (!strstr(s, KEEL_JSON_NUL))
        return NULL;
    char *out = malloc(*len + 1);
    if (!out)
        return *oom = true, NULL;
    size_t o = 0;
    for (size_t i = 0; i < *len; i++) {
        bool nul = (unsigned char)s[i] == 0xC0 && (unsigned char)s[i + 1] == 0x80;
        out[o++] = nul ? '\0' : s[i];
        i += nul;
    }
    *len = o;
    return out;
}

static char *pattern_with_nuls(const char *s, bool *oom)
{
    *oom = false;
    if (!strstr(s, KEEL_JSON_NUL))
        return NULL;
    char *out = malloc(2 * strlen(s) + 1); /* C0 80 (2 bytes) becomes \x00 (4) */
    if (!out)
        return *oom = true, NULL;
    size_t o = 0;
    for (const char *p = s; *p; p++) {
        if ((unsigned char)p[0] == 0xC0 && (unsigned char)p[1] == 0x80) {
            memcpy(out + o, "\\x00", 4);
            o += 4;
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    return out;
}

/* keel_regex_compile of a pattern that may hold KEEL_JSON_KEEP_NUL's U+0000. */
static int compile_regex(keel_regex **re, const char *source, char *why, size_t whysz)
{
    bool oom;
    char *escaped = pattern_with_nuls(source, &oom);
    if (oom)
        return KEEL_ENOMEM;
    int rc = keel_regex_compile(re, escaped ? escaped : source, why, whysz);
    free(escaped);
    return rc;
}

/* ---- URIs (RFC 3986) ---------------------------------------------------------------------- */

typedef struct span {
    const char *p;
    size_t n;
    bool present;
} span;

typedef struct uri_parts {
    span scheme, authority, path, query, fragment;
} uri_parts;

static void uri_split(const char *s, uri_parts *u)
{
    memset(u, 0, sizeof *u);
    const char *p = s;
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) {
        const char *q = p;
        while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') ||
               *q == '+' || *q == '-' || *q == '.')
            q++;
        if (*q == ':') {
            u->scheme = (span){p, (size_t)(q - p), true};
            p = q + 1;
        }
    }
    if (p[0] == '/' && p[1] == '/') {
        p += 2;
        size_t n = strcspn(p, "/?#");
        u->authority = (span){p, n, true};
        p += n;
    }
    size_t n = strcspn(p, "?#");
    u->path = (span){p, n, true};
    p += n;
    if (*p == '?') {
        p++;
        n = strcspn(p, "#");
        u->query = (span){p, n, true};
        p += n;
    }
    if (*p == '#')
        u->fragment = (span){p + 1, strlen(p + 1), true};
}

/* RFC 3986 5.2.4: remove "." and ".." segments from path[0..n) into out. */
static void remove_dots(sbuf *out, const char *path, size_t n)
{
    size_t start = out->len;
    const char *p = path, *end = path + n;
    while (p < end) {
        size_t left = (size_t)(end - p);
        if (left >= 3 && strncmp(p, "../", 3) == 0) {
            p += 3;
        } else if (left >= 2 && strncmp(p, "./", 2) == 0) {
            p += 2;
        } else if ((left >= 3 && strncmp(p, "/./", 3) == 0) ||
                   (left == 2 && strncmp(p, "/.", 2) == 0)) {
            p += 2;
            if (left == 2) {
                keel_strbuf_put(out, "/", 1);
                break;
            }
        } else if ((left >= 4 && strncmp(p, "/../", 4) == 0) ||
                   (left == 3 && strncmp(p, "/..", 3) == 0)) {
            p += 3;
            while (out->len > start && out->p[out->len - 1] != '/')
                out->len--;
            if (out->len > start)
                out->len--;
            keel_strbuf_truncate(out, out->len);
            if (left == 3) {
                keel_strbuf_put(out, "/", 1);
                break;
            }
        } else if ((left == 1 && *p == '.') || (left == 2 && strncmp(p, "..", 2) == 0)) {
            break;
        } else {
            const char *q = p + 1;
            while (q < end && *q != '/')
                q++;
            keel_strbuf_put(out, p, (size_t)(q - p));
            p = q;
        }
    }
}

/* The reference ref resolved against the absolute URI base (RFC 3986 5.2.2), malloc'd. */
static char *uri_resolve(const char *base, const char *ref)
{
    uri_parts b, r;
    uri_split(base, &b);
    uri_split(ref, &r);
    sbuf out = {0}, path = {0};
    const uri_parts *auth = &r, *query = &r;
    if (r.scheme.present) {
        remove_dots(&path, r.path.p, r.path.n);
    } else if (r.authority.present) {
        remove_dots(&path, r.path.p, r.path.n);
    } else if (r.path.n == 0) {
        keel_strbuf_put(&path, b.path.p, b.path.n);
        auth = &b;
        query = r.query.present ? &r : &b;
    } else {
        sbuf merged = {0};
        if (r.path.p[0] == '/') {
            keel_strbuf_put(&merged, r.path.p, r.path.n);
        } else if (b.authority.present && b.path.n == 0) {
            keel_strbuf_puts(&merged, "/");
            keel_strbuf_put(&merged, r.path.p, r.path.n);
        } else {
            const char *slash = NULL;
            for (size_t i = 0; i < b.path.n; i++)
                if (b.path.p[i] == '/')
                    slash = b.path.p + i;
            if (slash)
                keel_strbuf_put(&merged, b.path.p, (size_t)(slash - b.path.p) + 1);
            keel_strbuf_put(&merged, r.path.p, r.path.n);
        }
        remove_dots(&path, sb_str(&merged), merged.len);
        free(merged.p);
        auth = &b;
    }
    const uri_parts *scheme = r.scheme.present ? &r : &b;
    if (scheme->scheme.present) {
        keel_strbuf_put(&out, scheme->scheme.p, scheme->scheme.n);
        keel_strbuf_puts(&out, ":");
    }
    if (auth->authority.present) {
        keel_strbuf_puts(&out, "//");
        keel_strbuf_put(&out, auth->authority.p, auth->authority.n);
    }
    keel_strbuf_puts(&out, sb_str(&path));
    if (query->query.present) {
        keel_strbuf_puts(&out, "?");
        keel_strbuf_put(&out, query->query.p, query->query.n);
    }
    if (r.fragment.present) {
        keel_strbuf_puts(&out, "#");
        keel_strbuf_put(&out, r.fragment.p, r.fragment.n);
    }
    free(path.p);
    if (out.oom || path.oom) {
        free(out.p);
        return NULL;
    }
    return out.p ? out.p : calloc(1, 1);
}

/* Percent-decode s into a new string; NULL when a % is not followed by two hex digits (or out
 * of memory, or the result would hold a NUL). */
static char *percent_decode(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (*p != '%') {
            *o++ = *p;
            continue;
        }
        int v = 0;
        for (int i = 1; i <= 2; i++) {
            int h = keel_hex_digit(p[i]);
            if (h < 0) {
                free(out);
                return NULL;
            }
            v = v * 16 + h;
        }
        if (v == 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)v;
        p += 2;
    }
    *o = '\0';
    return out;
}

/* A JSON Pointer array index: "0" or digits without a leading zero, no overflow. */
static bool parse_index(const char *t, size_t *out)
{
    if (!*t || (t[0] == '0' && t[1]))
        return false;
    size_t v = 0;
    for (; *t; t++) {
        if (*t < '0' || *t > '9' || v > (SIZE_MAX - 9) / 10)
            return false;
        v = v * 10 + (size_t)(*t - '0');
    }
    *out = v;
    return true;
}

/* ---- maps used while compiling ------------------------------------------------------------ */

/* Open addressing; keys are pointers (pmap) or strings (smap). */
typedef struct map {
    const void **keys;
    void **vals;
    size_t cap, n;
    bool strings;
} map;

static uint64_t map_hash(const map *m, const void *key)
{
    if (m->strings)
        return hash_bytes(0xCBF29CE484222325ull, key, strlen(key));
    return mix(0, (uint64_t)(uintptr_t)key);
}

static bool map_same(const map *m, const void *a, const void *b)
{
    return m->strings ? strcmp(a, b) == 0 : a == b;
}

static void *map_get(const map *m, const void *key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = map_hash(m, key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return NULL;
        if (map_same(m, m->keys[i], key))
            return m->vals[i];
    }
}

static bool map_grow(map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    map bigger = {.keys = calloc(cap, sizeof *m->keys),
                  .vals = calloc(cap, sizeof *m->vals),
                  .cap = cap,
                  .strings = m->strings};
    if (!bigger.keys || !bigger.vals) {
        free(bigger.keys);
        free(bigger.vals);
        return false;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = map_hash(&bigger, m->keys[i]) & (cap - 1);
        while (bigger.keys[j])
            j = (j + 1) & (cap - 1);
        bigger.keys[j] = m->keys[i];
        bigger.vals[j] = m->vals[i];
        bigger.n++;
    }
    free(m->keys);
    free(m->vals);
    *m = bigger;
    return true;
}

/* Set key (which must outlive the map) to val, replacing an earlier value; false when OOM. */
static bool map_put(map *m, const void *key, void *val)
{
    if ((m->n + 1) * 2 > m->cap && !map_grow(m))
        return false;
    size_t i = map_hash(m, key) & (m->cap - 1);
    while (m->keys[i] && !map_same(m, m->keys[i], key))
        i = (i + 1) & (m->cap - 1);
    if (!m->keys[i])
        m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
    return true;
}

static void map_free(map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- the compiled form -------------------------------------------------------------------- */

enum draft { D7 = 1, D2020 = 2 };

/* 2020-12 vocabularies (draft 7 has all of them). */
enum vocab {
    V_CORE = 1 << 0,
    V_APPLICATOR = 1 << 1,
    V_UNEVALUATED = 1 << 2,
    V_VALIDATION = 1 << 3,
    V_METADATA = 1 << 4,
    V_FORMAT = 1 << 5,
    V_CONTENT = 1 << 6,
    V_ALL = (1 << 7) - 1,
};

typedef struct dialect {
    unsigned draft; /* D7 or D2020 */
    unsigned vocab; /* V_* bits */
} dialect;

/* Instance types, as bits of snode.types. */
enum {
    T_NULL = 1,
    T_BOOLEAN = 2,
    T_OBJECT = 4,
    T_ARRAY = 8,
    T_NUMBER = 16,
    T_STRING = 32,
    T_INTEGER = 64
};

typedef struct snode snode;

typedef struct anchor {
    const char *name;
    snode *node;
    bool dynamic; /* $dynamicAnchor (also usable as a plain anchor) */
} anchor;

/* A schema resource: a document root or a subschema with its own $id. */
typedef struct resource {
    const char *uri;   /* absolute, without fragment: the base URI inside it */
    const cJSON *json; /* its root: JSON Pointer fragments start here */
    snode *root;
    dialect d;
    size_t doc; /* which document it is in */
    anchor *anchors;
    size_t nanchors, capanchors;
} resource;

typedef struct sprop {
    const char *name;
    snode *schema;
} sprop;

typedef struct spattern {
    const keel_regex *re;
    const char *source;
    snode *schema;
} spattern;

typedef struct sdeps {
    const char *keyword; /* dependentRequired or dependencies, for messages */
    const char *name;
    const char **names;
    size_t nnames;
} sdeps;

typedef struct slist {
    snode **v;
    size_t n;
} slist;

/* A missing maximum; a missing minimum is 0. */
#define NO_MAX UINT64_MAX

struct snode {
    const cJSON *json;
    resource *res;   /* the resource it belongs to: its dynamic scope */
    const char *loc; /* where it is, for messages: "#/properties/a" */
    size_t id;
    unsigned draft;
    int boolean; /* -1: an object schema; 0: false; 1: true */

    /* validation vocabulary */
    unsigned types;
    const cJSON *type_kw;
    const cJSON *enum_values;
    uint64_t *enum_hashes;
    const cJSON *const_value;
    decnum *multiple_of, *minimum, *maximum, *exclusive_minimum, *exclusive_maximum;
    uint64_t min_length, max_length, min_items, max_items, min_properties, max_properties;
    uint64_t min_contains, max_contains;
    bool has_min_contains;
    const keel_regex *pattern;
    const char *pattern_source;
    bool format_regex; /* draft 7's "format": "regex", asserted */
    bool unique_items;
    const char **required;
    size_t nrequired;
    sdeps *dep_required;
    size_t ndep_required;

    /* applicators */
    sprop *props; /* sorted by name */
    size_t nprops;
    spattern *pattern_props;
    size_t npattern_props;
    snode *additional_props, *property_names;
    sprop *dep_schemas;
    size_t ndep_schemas;
    slist prefix; /* prefixItems, or draft 7's array form of items */
    snode *rest;  /* what applies to the items after the prefix */
    const char *prefix_kw, *rest_kw;
    snode *items_kw, *additional_items_kw; /* as written, before finish_items */
    bool items_is_array;
    snode *contains;
    slist all_of, any_of, one_of;
    snode *not_schema, *if_schema, *then_schema, *else_schema;
    snode *unevaluated_props, *unevaluated_items;

    /* references */
    snode *ref;
    const char *ref_text;
    snode *dynref;
    const char *dynref_text;
    const char *dyn_anchor; /* set when $dynamicRef resolves through the dynamic scope */
};

struct keel_schema {
    arena mem;
    snode *root;
    cJSON **docs;
    size_t ndocs, capdocs;
    keel_regex **regexes;
    size_t nregexes, capregexes;
    resource **resources;
    size_t nresources, capresources;
    snode **nodes;
    size_t nnodes, capnodes;
    bool has_dynamic_refs; /* if not, check_loops proved no subschema can re-enter itself */
};

/* Append p to a malloc'd array of pointers; false when out of memory. */
static bool push_ptr(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        void **a = realloc(*arr, c * sizeof *a);
        if (!a)
            return false;
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = p;
    return true;
}

void keel_schema_free(keel_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ndocs; i++)
        cJSON_Delete(s->docs[i]);
    for (size_t i = 0; i < s->nregexes; i++)
        keel_regex_free(s->regexes[i]);
    for (size_t i = 0; i < s->nresources; i++)
        free(s->resources[i]->anchors);
    free(s->docs);
    free(s->regexes);
    free(s->resources);
    free(s->nodes);
    arena_free(&s->mem);
    free(s);
}

/* ---- built-in metaschemas ----------------------------------------------------------------- */

/*
 * The draft 7 and 2020-12 metaschemas, written for keel from the specifications (the keywords,
 * their URIs and what each value may be); annotation-only parts (titles, defaults) are left out
 * since they never affect validation. A schema may $ref them, or name them in $schema.
 */
#define META_2020 "https://json-schema.org/draft/2020-12/"
#define META_HEAD(name)                                                                            \
    "{\"$schema\":\"" META_2020 "schema\",\"$id\":\"" META_2020 name                               \
    "\",\"$dynamicAnchor\":\"meta\","
#define DYN "{\"$dynamicRef\":\"#meta\"}"

static const struct builtin {
    const char *uri, *json;
} builtins[] = {
    {"http://json-schema.org/draft-07/schema",
     "{\"$schema\":\"http://json-schema.org/draft-07/schema#\","
     "\"$id\":\"http://json-schema.org/draft-07/schema#\","
     "\"definitions\":{\"schemaArray\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"$ref\":\"#"
     "\"}},"
     "\"count\":{\"type\":\"integer\",\"minimum\":0},"
     "\"simpleTypes\":{\"enum\":[\"array\",\"boolean\",\"integer\",\"null\",\"number\",\"object\","
     "\"string\"]},"
     "\"stringArray\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"uniqueItems\":true},"
     "\"schemaMap\":{\"type\":\"object\",\"additionalProperties\":{\"$ref\":\"#\"}}},"
     "\"type\":[\"object\",\"boolean\"],"
     "\"properties\":{\"$id\":{\"type\":\"string\"},\"$schema\":{\"type\":\"string\"},"
     "\"$ref\":{\"type\":\"string\"},\"$comment\":{\"type\":\"string\"},"
     "\"title\":{\"type\":\"string\"},\"description\":{\"type\":\"string\"},"
     "\"readOnly\":{\"type\":\"boolean\"},\"writeOnly\":{\"type\":\"boolean\"},"
     "\"examples\":{\"type\":\"array\"},"
     "\"multipleOf\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
     "\"maximum\":{\"type\":\"number\"},\"exclusiveMaximum\":{\"type\":\"number\"},"
     "\"minimum\":{\"type\":\"number\"},\"exclusiveMinimum\":{\"type\":\"number\"},"
     "\"maxLength\":{\"$ref\":\"#/definitions/count\"},"
     "\"minLength\":{\"$ref\":\"#/definitions/count\"},"
     "\"pattern\":{\"type\":\"string\",\"format\":\"regex\"},"
     "\"additionalItems\":{\"$ref\":\"#\"},"
     "\"items\":{\"anyOf\":[{\"$ref\":\"#\"},{\"$ref\":\"#/definitions/schemaArray\"}]},"
     "\"maxItems\":{\"$ref\":\"#/definitions/count\"},"
     "\"minItems\":{\"$ref\":\"#/definitions/count\"},"
     "\"uniqueItems\":{\"type\":\"boolean\"},\"contains\":{\"$ref\":\"#\"},"
     "\"maxProperties\":{\"$ref\":\"#/definitions/count\"},"
     "\"minProperties\":{\"$ref\":\"#/definitions/count\"},"
     "\"required\":{\"$ref\":\"#/definitions/stringArray\"},"
     "\"additionalProperties\":{\"$ref\":\"#\"},"
     "\"definitions\":{\"$ref\":\"#/definitions/schemaMap\"},"
     "\"properties\":{\"$ref\":\"#/definitions/schemaMap\"},"
     "\"patternProperties\":{\"$ref\":\"#/definitions/schemaMap\","
     "\"propertyNames\":{\"format\":\"regex\"}},"
     "\"dependencies\":{\"type\":\"object\",\"additionalProperties\":{\"anyOf\":[{\"$ref\":\"#\"},"
     "{\"$ref\":\"#/definitions/stringArray\"}]}},"
     "\"propertyNames\":{\"$ref\":\"#\"},\"const\":true,"
     "\"enum\":{\"type\":\"array\"},"
     "\"type\":{\"anyOf\":[{\"$ref\":\"#/definitions/simpleTypes\"},{\"type\":\"array\","
     "\"items\":{\"$ref\":\"#/definitions/simpleTypes\"},\"minItems\":1,\"uniqueItems\":true}]},"
     "\"format\":{\"type\":\"string\"},\"contentMediaType\":{\"type\":\"string\"},"
     "\"contentEncoding\":{\"type\":\"string\"},"
     "\"if\":{\"$ref\":\"#\"},\"then\":{\"$ref\":\"#\"},\"else\":{\"$ref\":\"#\"},"
     "\"allOf\":{\"$ref\":\"#/definitions/schemaArray\"},"
     "\"anyOf\":{\"$ref\":\"#/definitions/schemaArray\"},"
     "\"oneOf\":{\"$ref\":\"#/definitions/schemaArray\"},\"not\":{\"$ref\":\"#\"}}}"},
    {META_2020 "schema",
     META_HEAD(
         "schema") "\"$vocabulary\":{\"" META_2020 "vocab/core\":true,\"" META_2020
                   "vocab/applicator\":true,\"" META_2020 "vocab/unevaluated\":true,\"" META_2020
                   "vocab/validation\":true,\"" META_2020 "vocab/meta-data\":true,\"" META_2020
                   "vocab/format-annotation\":true,\"" META_2020 "vocab/content\":true},"
                   "\"allOf\":[{\"$ref\":\"meta/core\"},{\"$ref\":\"meta/applicator\"},"
                   "{\"$ref\":\"meta/unevaluated\"},{\"$ref\":\"meta/validation\"},"
                   "{\"$ref\":\"meta/meta-data\"},{\"$ref\":\"meta/format-annotation\"},"
                   "{\"$ref\":\"meta/content\"}],"
                   "\"type\":[\"object\",\"boolean\"],"
                   "\"properties\":{\"definitions\":{\"type\":\"object\","
                   "\"additionalProperties\":" DYN "},"
                   "\"dependencies\":{\"type\":\"object\",\"additionalProperties\":{\"anyOf\":[" DYN
                   ",{\"$ref\":\"meta/validation#/$defs/stringArray\"}]}}}}"},
    {META_2020 "meta/core",
     META_HEAD("meta/core") "\"type\":[\"object\",\"boolean\"],"
                            "\"properties\":{\"$id\":{\"$ref\":\"#/$defs/uriReference\","
                            "\"pattern\":\"^[^#]*#?$\"},\"$schema\":{\"type\":\"string\"},"
                            "\"$ref\":{\"$ref\":\"#/$defs/uriReference\"},"
                            "\"$anchor\":{\"$ref\":\"#/$defs/anchor\"},"
                            "\"$dynamicRef\":{\"$ref\":\"#/$defs/uriReference\"},"
                            "\"$dynamicAnchor\":{\"$ref\":\"#/$defs/anchor\"},"
                            "\"$vocabulary\":{\"type\":\"object\","
                            "\"additionalProperties\":{\"type\":\"boolean\"}},"
                            "\"$comment\":{\"type\":\"string\"},"
                            "\"$defs\":{\"type\":\"object\",\"additionalProperties\":" DYN "}},"
                            "\"$defs\":{\"anchor\":{\"type\":\"string\","
                            "\"pattern\":\"^[A-Za-z_][-A-Za-z0-9._]*$\"},"
                            "\"uriReference\":{\"type\":\"string\"}}}"},
    {META_2020 "meta/applicator",
     META_HEAD(
         "meta/applicator") "\"type\":[\"object\",\"boolean\"],"
                            "\"properties\":{\"prefixItems\":{\"$ref\":\"#/$defs/schemaArray\"},"
                            "\"items\":" DYN ",\"contains\":" DYN ","
                            "\"additionalProperties\":" DYN ","
                            "\"properties\":{\"type\":\"object\",\"additionalProperties\":" DYN "},"
                            "\"patternProperties\":{\"type\":\"object\","
                            "\"additionalProperties\":" DYN ","
                            "\"propertyNames\":{\"format\":\"regex\"}},"
                            "\"dependentSchemas\":{\"type\":\"object\","
                            "\"additionalProperties\":" DYN "},"
                            "\"propertyNames\":" DYN ",\"if\":" DYN ",\"then\":" DYN
                            ",\"else\":" DYN ",\"allOf\":{\"$ref\":\"#/$defs/schemaArray\"},"
                            "\"anyOf\":{\"$ref\":\"#/$defs/schemaArray\"},"
                            "\"oneOf\":{\"$ref\":\"#/$defs/schemaArray\"},\"not\":" DYN "},"
                            "\"$defs\":{\"schemaArray\":{\"type\":\"array\",\"minItems\":1,"
                            "\"items\":" DYN "}}}"},
    {META_2020 "meta/unevaluated",
     META_HEAD("meta/unevaluated") "\"type\":[\"object\",\"boolean\"],"
                                   "\"properties\":{\"unevaluatedItems\":" DYN
                                   ",\"unevaluatedProperties\":" DYN "}}"},
    {META_2020 "meta/validation",
     META_HEAD(
         "meta/validation") "\"type\":[\"object\",\"boolean\"],"
                            "\"properties\":{\"type\":{\"anyOf\":[{\"$ref\":\"#/$defs/"
                            "simpleTypes\"},"
                            "{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/simpleTypes\"},"
                            "\"minItems\":1,\"uniqueItems\":true}]},"
                            "\"const\":true,\"enum\":{\"type\":\"array\"},"
                            "\"multipleOf\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
                            "\"maximum\":{\"type\":\"number\"},"
                            "\"exclusiveMaximum\":{\"type\":\"number\"},"
                            "\"minimum\":{\"type\":\"number\"},"
                            "\"exclusiveMinimum\":{\"type\":\"number\"},"
                            "\"maxLength\":{\"$ref\":\"#/$defs/count\"},"
                            "\"minLength\":{\"$ref\":\"#/$defs/count\"},"
                            "\"pattern\":{\"type\":\"string\",\"format\":\"regex\"},"
                            "\"maxItems\":{\"$ref\":\"#/$defs/count\"},"
                            "\"minItems\":{\"$ref\":\"#/$defs/count\"},"
                            "\"uniqueItems\":{\"type\":\"boolean\"},"
                            "\"maxContains\":{\"$ref\":\"#/$defs/count\"},"
                            "\"minContains\":{\"$ref\":\"#/$defs/count\"},"
                            "\"maxProperties\":{\"$ref\":\"#/$defs/count\"},"
                            "\"minProperties\":{\"$ref\":\"#/$defs/count\"},"
                            "\"required\":{\"$ref\":\"#/$defs/stringArray\"},"
                            "\"dependentRequired\":{\"type\":\"object\","
                            "\"additionalProperties\":{\"$ref\":\"#/$defs/stringArray\"}}},"
                            "\"$defs\":{\"count\":{\"type\":\"integer\",\"minimum\":0},"
                            "\"simpleTypes\":{\"enum\":[\"array\",\"boolean\",\"integer\","
                            "\"null\",\"number\",\"object\",\"string\"]},"
                            "\"stringArray\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
                            "\"uniqueItems\":true}}}"},
    {META_2020 "meta/meta-data",
     META_HEAD("meta/meta-data") "\"type\":[\"object\",\"boolean\"],"
                                 "\"properties\":{\"title\":{\"type\":\"string\"},"
                                 "\"description\":{\"type\":\"string\"},\"default\":true,"
                                 "\"deprecated\":{\"type\":\"boolean\"},"
                                 "\"readOnly\":{\"type\":\"boolean\"},"
                                 "\"writeOnly\":{\"type\":\"boolean\"},"
                                 "\"examples\":{\"type\":\"array\"}}}"},
    {META_2020 "meta/format-annotation",
     META_HEAD("meta/format-annotation") "\"type\":[\"object\",\"boolean\"],"
                                         "\"properties\":{\"format\":{\"type\":\"string\"}}}"},
    {META_2020 "meta/format-assertion",
     META_HEAD("meta/format-assertion") "\"type\":[\"object\",\"boolean\"],"
                                        "\"properties\":{\"format\":{\"type\":\"string\"}}}"},
    {META_2020 "meta/content",
     META_HEAD("meta/content") "\"type\":[\"object\",\"boolean\"],"
                               "\"properties\":{\"contentEncoding\":{\"type\":\"string\"},"
                               "\"contentMediaType\":{\"type\":\"string\"},"
                               "\"contentSchema\":" DYN "}}"},
};

/* ---- compiling ---------------------------------------------------------------------------- */

/* A document a reference may name: registered by the caller, or built in. */
typedef struct regdoc {
    char *uri; /* absolute, without fragment */
    const char *text;
    cJSON *tree; /* once parsed (then owned by the schema's docs) */
    size_t doc;  /* its index in the schema's docs, once parsed */
    bool compiled;
} regdoc;

/* A $ref or $dynamicRef waiting for its target. */
typedef struct pending {
    snode *s;
    char *uri; /* absolute, with the fragment */
    bool dynamic;
} pending;

typedef struct cc {
    keel_schema *s;
    keel_error *err;
    int rc;
    sbuf loc;             /* JSON Pointer of the schema being compiled, inside doc_name */
    const char *doc_name; /* "" for the root document, else a URI */
    const char **doc_names;
    size_t capdoc_names;
    map nodes;    /* const cJSON * -> snode * */
    map names;    /* absolute URI -> resource * */
    map patterns; /* regex source -> keel_regex * */
    pending *links;
    size_t nlinks, caplinks;
    regdoc *docs;
    size_t ndocs;
    dialect root_dialect;
} cc;

static int cfail(cc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cfail(cc *c, const char *fmt, ...)
{
    if (c->rc != KEEL_OK)
        return c->rc;
    char msg[KEEL_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return c->rc = keel_error_set(c->err, KEEL_EINVAL, "schema: %s", msg);
}

static int coom(cc *c)
{
    if (c->rc == KEEL_OK)
        c->rc = keel_error_set(c->err, KEEL_ENOMEM, "schema: out of memory");
    return c->rc;
}

/* "'keyword' at #/where <what>", the shape of every message about one keyword. */
static int kfail(cc *c, const snode *s, const char *keyword, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int kfail(cc *c, const snode *s, const char *keyword, const char *fmt, ...)
{
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cfail(c, "'%s' at %s %s", keyword, s->loc, msg);
}

static void *calloc_in(cc *c, size_t n)
{
    void *p = arena_alloc(&c->s->mem, n);
    if (!p)
        coom(c);
    return p;
}

static const char *strdup_in(cc *c, const char *s)
{
    char *p = arena_strdup(&c->s->mem, s);
    if (!p)
        coom(c);
    return p;
}

/* Take ownership of a parsed document; returns its index. */
static bool own_doc(cc *c, cJSON *tree, const char *name, size_t *index)
{
    keel_schema *s = c->s;
    if (!push_ptr((void ***)&s->docs, &s->ndocs, &s->capdocs, tree)) {
        cJSON_Delete(tree);
        return coom(c), false;
    }
    if (c->capdoc_names < s->capdocs) {
        const char **n = realloc(c->doc_names, s->capdocs * sizeof *n);
        if (!n)
            return coom(c), false;
        c->doc_names = n;
        c->capdoc_names = s->capdocs;
    }
    c->doc_names[s->ndocs - 1] = name;
    *index = s->ndocs - 1;
    return true;
}

static resource *new_resource(cc *c, const char *uri, const cJSON *json, dialect d, size_t doc)
{
    resource *r = calloc_in(c, sizeof *r);
    if (!r || !(r->uri = strdup_in(c, uri)))
        return NULL;
    r->json = json;
    r->d = d;
    r->doc = doc;
    keel_schema *s = c->s;
    if (!push_ptr((void ***)&s->resources, &s->nresources, &s->capresources, r)) {
        coom(c);
        return NULL;
    }
    return r;
}

/* Give resource r the name uri (a document's retrieval URI, an $id). The first holder of a
 * name keeps it across documents; within one document a name given twice is an error. */
static int name_resource(cc *c, const snode *s, resource *r, const char *uri)
{
    resource *other = map_get(&c->names, uri);
    if (other && other != r && other->doc == r->doc && s)
        return kfail(c, s, "$id", "names '%.300s', which another schema in it has already", uri);
    if (other)
        return KEEL_OK;
    const char *key = strdup_in(c, uri);
    if (!key || !map_put(&c->names, key, r))
        return coom(c);
    return KEEL_OK;
}

static int add_anchor(cc *c, snode *s, const char *kw, const char *name, bool dynamic)
{
    resource *r = s->res;
    for (size_t i = 0; i < r->nanchors; i++) {
        if (strcmp(r->anchors[i].name, name) != 0)
            continue;
        if (r->anchors[i].node != s)
            return kfail(c, s, kw, "names anchor '%.200s', which %s already has in %.300s", name,
                         r->anchors[i].node->loc, r->uri);
        r->anchors[i].dynamic |= dynamic;
        return KEEL_OK;
    }
    if (r->nanchors == r->capanchors) {
        size_t cap = r->capanchors ? r->capanchors * 2 : 4;
        anchor *a = realloc(r->anchors, cap * sizeof *a);
        if (!a)
            return coom(c);
        r->anchors = a;
        r->capanchors = cap;
    }
    const char *copy = strdup_in(c, name);
    if (!copy)
        return c->rc;
    r->anchors[r->nanchors++] = (anchor){copy, s, dynamic};
    return KEEL_OK;
}

static snode *new_node(cc *c, const cJSON *j, resource *res, dialect d)
{
    snode *s = calloc_in(c, sizeof *s);
    if (!s)
        return NULL;
    size_t dn = strlen(c->doc_name);
    char *loc = calloc_in(c, dn + c->loc.len + 2);
    if (!loc)
        return NULL;
    memcpy(loc, c->doc_name, dn);
    loc[dn] = '#';
    memcpy(loc + dn + 1, sb_str(&c->loc), c->loc.len);
    s->json = j;
    s->res = res;
    s->loc = loc;
    s->draft = d.draft;
    s->boolean = -1;
    s->max_length = s->max_items = s->max_properties = s->max_contains = NO_MAX;
    s->id = c->s->nnodes;
    if (!push_ptr((void ***)&c->s->nodes, &c->s->nnodes, &c->s->capnodes, s) ||
        !map_put(&c->nodes, j, s)) {
        coom(c);
        return NULL;
    }
    return s;
}

/* ---- dialects: $schema and $vocabulary ---------------------------------------------------- */

static const char *const vocab_names[] = {
    META_2020 "vocab/core",       META_2020 "vocab/applicator", META_2020 "vocab/unevaluated",
    META_2020 "vocab/validation", META_2020 "vocab/meta-data",  META_2020 "vocab/format-annotation",
    META_2020 "vocab/content",
};

static bool parse_regdoc(cc *c, regdoc *rd)
{
    if (rd->tree)
        return true;
    cJSON *tree = NULL;
    keel_error inner;
    if (keel_json_parse(rd->text, strlen(rd->text), KEEL_JSON_LAST_WINS | KEEL_JSON_KEEP_NUL,
                        rd->uri, &tree, &inner) != KEEL_OK) {
        if (inner.code == KEEL_ENOMEM)
            return coom(c), false;
        cfail(c, "the registered schema %s", inner.message);
        return false;
    }
    if (!own_doc(c, tree, rd->uri, &rd->doc))
        return false;
    rd->tree = tree;
    return true;
}

/* The root $id of a parsed document, resolved against its URI (malloc'd), or NULL. */
static char *root_id(const regdoc *rd)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(rd->tree, "$id");
    if (!cJSON_IsString(id))
        return NULL;
    char *abs = uri_resolve(rd->uri, id->valuestring);
    if (abs)
        abs[strcspn(abs, "#")] = '\0';
    return abs;
}

/* The JSON of the document a $schema names, or NULL. */
static const cJSON *find_metaschema(cc *c, const char *uri)
{
    resource *r = map_get(&c->names, uri);
    if (r)
        return r->json;
    for (size_t i = 0; i < c->ndocs; i++)
        if (strcmp(c->docs[i].uri, uri) == 0)
            return parse_regdoc(c, &c->docs[i]) ? c->docs[i].tree : NULL;
    for (size_t i = 0; i < c->ndocs && c->rc == KEEL_OK; i++) {
        if (!parse_regdoc(c, &c->docs[i]))
            return NULL;
        char *id = root_id(&c->docs[i]);
        bool same = id && strcmp(id, uri) == 0;
        free(id);
        if (same)
            return c->docs[i].tree;
    }
    return NULL;
}

static int schema_dialect(cc *c, const snode *s, const char *uri, dialect *d, int hops);

/* A metaschema with $vocabulary: the vocabularies it turns on. */
static int vocabulary_dialect(cc *c, const snode *s, const cJSON *meta, const char *uri, dialect *d,
                              int hops)
{
    const cJSON *voc = cJSON_GetObjectItemCaseSensitive(meta, "$vocabulary");
    const cJSON *sch = cJSON_GetObjectItemCaseSensitive(meta, "$schema");
    dialect own;
    if (!cJSON_IsString(sch))
        return kfail(c, s, "$schema", "names %.300s, a metaschema without $schema", uri);
    if (schema_dialect(c, s, sch->valuestring, &own, hops + 1) != KEEL_OK)
        return c->rc;
    if (own.draft != D2020 || !cJSON_IsObject(voc))
        return kfail(c, s, "$schema", "names %.300s, whose $vocabulary keel cannot read", uri);
    d->draft = D2020;
    d->vocab = V_CORE;
    for (const cJSON *v = voc->child; v; v = v->next) {
        size_t k = 0;
        while (k < sizeof vocab_names / sizeof vocab_names[0] && strcmp(vocab_names[k], v->string))
            k++;
        if (k < sizeof vocab_names / sizeof vocab_names[0])
            d->vocab |= cJSON_IsTrue(v) || cJSON_IsFalse(v) ? 1u << k : 0;
        else if (cJSON_IsTrue(v))
            return kfail(c, s, "$schema",
                         "names %.300s, which requires vocabulary %.200s; keel does not know it%s",
                         uri, v->string,
                         strstr(v->string, "format-assertion") ? " (keel treats format as an "
                                                                 "annotation)"
                                                               : "");
    }
    return KEEL_OK;
}

static int schema_dialect(cc *c, const snode *s, const char *uri_in, dialect *d, int hops)
{
    char uri[512];
    snprintf(uri, sizeof uri, "%s", uri_in);
    size_t n = strlen(uri);
    if (n && uri[n - 1] == '#')
        uri[n - 1] = '\0';
    if (strcmp(uri, "http://json-schema.org/draft-07/schema") == 0 ||
        strcmp(uri, "https://json-schema.org/draft-07/schema") == 0) {
        *d = (dialect){D7, V_ALL};
        return KEEL_OK;
    }
    if (strcmp(uri, META_2020 "schema") == 0) {
        *d = (dialect){D2020, V_ALL};
        return KEEL_OK;
    }
    if (strstr(uri, "json-schema.org/draft-0") || strstr(uri, "json-schema.org/schema") ||
        strstr(uri, "json-schema.org/draft/2019-09/") || strstr(uri, "json-schema.org/draft-03"))
        return kfail(c, s, "$schema", "names %.300s; keel validates draft 7 and 2020-12 only", uri);
    if (hops >= MAX_METASCHEMA_HOPS)
        return kfail(c, s, "$schema", "leads through more than %d metaschemas",
                     MAX_METASCHEMA_HOPS);
    const cJSON *meta = find_metaschema(c, uri);
    if (c->rc != KEEL_OK)
        return c->rc;
    if (!meta)
        return kfail(c, s, "$schema",
                     "names %.300s, which is neither draft 7, 2020-12 nor a registered metaschema",
                     uri);
    if (cJSON_GetObjectItemCaseSensitive(meta, "$vocabulary"))
        return vocabulary_dialect(c, s, meta, uri, d, hops);
    const cJSON *sch = cJSON_GetObjectItemCaseSensitive(meta, "$schema");
    if (!cJSON_IsString(sch) || strcmp(sch->valuestring, uri_in) == 0)
        return kfail(c, s, "$schema", "names %.300s, a metaschema keel cannot place", uri);
    return schema_dialect(c, s, sch->valuestring, d, hops + 1);
}

/* ---- identifiers: $id, $anchor, $dynamicAnchor, $schema ----------------------------------- */

static bool is_anchor_name(const char *a)
{
    if (!((*a >= 'A' && *a <= 'Z') || (*a >= 'a' && *a <= 'z') || *a == '_'))
        return false;
    for (a++; *a; a++)
        if (!((*a >= 'A' && *a <= 'Z') || (*a >= 'a' && *a <= 'z') || (*a >= '0' && *a <= '9') ||
              *a == '-' || *a == '_' || *a == '.'))
            return false;
    return true;
}

/* $id: a new base URI, and so a new resource (or, at a document root, a second name for it).
 * Draft 7 also writes anchors as "$id": "#name". */
static int apply_id(cc *c, snode *s, const cJSON *id, dialect d)
{
    if (!cJSON_IsString(id))
        return kfail(c, s, "$id", "must be a string");
    char *abs = uri_resolve(s->res->uri, id->valuestring);
    if (!abs)
        return coom(c);
    char *hash = strchr(abs, '#');
    const char *frag = hash ? hash + 1 : "";
    if (hash)
        *hash = '\0';
    int rc = KEEL_OK;
    if (d.draft == D2020 && *frag)
        rc = kfail(c, s, "$id", "must not have a fragment ('%.200s'); $anchor names places",
                   id->valuestring);
    else if (strcmp(abs, s->res->uri) != 0 && s->res->root == s) {
        resource *r = s->res;
        rc = name_resource(c, s, r, abs);
        if (rc == KEEL_OK && !(r->uri = strdup_in(c, abs)))
            rc = c->rc;
    } else if (strcmp(abs, s->res->uri) != 0) {
        resource *r = new_resource(c, abs, s->json, d, s->res->doc);
        if (!r)
            rc = c->rc;
        else {
            r->root = s;
            s->res = r;
            rc = name_resource(c, s, r, abs);
        }
    }
    if (rc == KEEL_OK && d.draft == D7 && *frag) {
        if (frag[0] == '/')
            rc = kfail(c, s, "$id", "has a JSON Pointer fragment; only a plain name may follow #");
        else
            rc = add_anchor(c, s, "$id", frag, false);
    }
    free(abs);
    return rc;
}

static int apply_anchors(cc *c, snode *s)
{
    static const char *const kws[] = {"$anchor", "$dynamicAnchor"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(s->json, kws[i]);
        if (!a)
            continue;
        if (!cJSON_IsString(a) || !is_anchor_name(a->valuestring))
            return kfail(c, s, kws[i],
                         "must be a name: a letter or _, then letters, digits, - _ .");
        if (add_anchor(c, s, kws[i], a->valuestring, i == 1) != KEEL_OK)
            return c->rc;
    }
    return KEEL_OK;
}

/* Everything about where s is and in which dialect: $schema, $id, anchors. Updates *d. */
static int enter_resource(cc *c, snode *s, dialect *d)
{
    const cJSON *j = s->json;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "$id");
    const cJSON *sch = cJSON_GetObjectItemCaseSensitive(j, "$schema");
    bool doc_root = s->res->root == s;
    if (sch && (doc_root || id)) {
        if (!cJSON_IsString(sch))
            return kfail(c, s, "$schema", "must be a string");
        if (schema_dialect(c, s, sch->valuestring, d, 0) != KEEL_OK)
            return c->rc;
        s->draft = d->draft;
    }
    /* draft 7: "$ref" makes every other keyword ignored, $id included */
    if (d->draft == D7 && cJSON_GetObjectItemCaseSensitive(j, "$ref"))
        id = NULL;
    if (!(d->vocab & V_CORE))
        return KEEL_OK;
    if (id && apply_id(c, s, id, *d) != KEEL_OK)
        return c->rc;
    if (s->res->root == s)
        s->res->d = *d;
    if (d->draft == D2020 && apply_anchors(c, s) != KEEL_OK)
        return c->rc;
    return KEEL_OK;
}

/* ---- keywords ----------------------------------------------------------------------------- */

static snode *compile_schema(cc *c, const cJSON *j, resource *res, dialect d);

/* Compile the subschema j found at /tok1[/tok2] below s. */
static snode *sub(cc *c, snode *s, const cJSON *j, const char *tok1, const char *tok2, dialect d)
{
    size_t len = c->loc.len;
    sb_push_token(&c->loc, tok1);
    if (tok2)
        sb_push_token(&c->loc, tok2);
    snode *r = compile_schema(c, j, s->res, d);
    keel_strbuf_truncate(&c->loc, len);
    return r;
}

static bool is_number(const cJSON *j)
{
    return cJSON_IsNumber(j);
}

static decnum *schema_number(cc *c, const cJSON *kw)
{
    char buf[32];
    const char *t = keel_json_number_text(kw, buf);
    decnum *d = calloc_in(c, sizeof *d);
    const char *copy = d ? strdup_in(c, t) : NULL;
    if (!copy)
        return NULL;
    if (!dec_parse(copy, d)) {
        cfail(c, "'%s' is not a finite number", kw->string);
        return NULL;
    }
    return d;
}

static unsigned type_bit(const char *t)
{
    static const char *const names[] = {"null",   "boolean", "object", "array",
                                        "number", "string",  "integer"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(t, names[i]) == 0)
            return 1u << i;
    return 0;
}

static void kw_type(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    s->type_kw = kw;
    if (cJSON_IsString(kw)) {
        if (!(s->types = type_bit(kw->valuestring)))
            kfail(c, s, "type", "names an unknown type");
        return;
    }
    if (!cJSON_IsArray(kw) || !kw->child) {
        kfail(c, s, "type", "must be a type name or a non-empty array of type names");
        return;
    }
    for (const cJSON *t = kw->child; t; t = t->next) {
        unsigned bit = cJSON_IsString(t) ? type_bit(t->valuestring) : 0;
        if (!bit) {
            kfail(c, s, "type", "must list known type names");
            return;
        }
        s->types |= bit;
    }
}

static void kw_enum(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    if (!cJSON_IsArray(kw)) {
        kfail(c, s, "enum", "must be an array");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(kw), i = 0;
    uint64_t work = 0;
    s->enum_values = kw;
    if (!(s->enum_hashes = calloc_in(c, (n ? n : 1) * sizeof *s->enum_hashes)))
        return;
    for (const cJSON *v = kw->child; v; v = v->next)
        s->enum_hashes[i++] = json_hash(v, &work);
}

static void kw_const(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)c, (void)d;
    s->const_value = kw;
}

static void kw_multiple_of(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    if (!is_number(kw)) {
        kfail(c, s, "multipleOf", "must be a number");
        return;
    }
    s->multiple_of = schema_number(c, kw);
    if (s->multiple_of && s->multiple_of->sign <= 0)
        kfail(c, s, "multipleOf", "must be greater than 0");
}

static void kw_bound(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    const char *k = kw->string;
    if (!is_number(kw)) {
        kfail(c, s, k, "must be a number%s",
              cJSON_IsBool(kw) ? " (the boolean form is draft 4's; keel does not read draft 4)"
                               : "");
        return;
    }
    decnum *v = schema_number(c, kw);
    if (strcmp(k, "minimum") == 0)
        s->minimum = v;
    else if (strcmp(k, "maximum") == 0)
        s->maximum = v;
    else if (strcmp(k, "exclusiveMinimum") == 0)
        s->exclusive_minimum = v;
    else
        s->exclusive_maximum = v;
}

static uint64_t *count_field(snode *s, const char *k)
{
    static const char *const names[] = {"minLength",   "maxLength",     "minItems",
                                        "maxItems",    "minProperties", "maxProperties",
                                        "minContains", "maxContains"};
    uint64_t *fields[] = {&s->min_length,   &s->max_length,     &s->min_items,
                          &s->max_items,    &s->min_properties, &s->max_properties,
                          &s->min_contains, &s->max_contains};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(k, names[i]) == 0)
            return fields[i];
    return NULL;
}

static void kw_count(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    decnum *v = is_number(kw) ? schema_number(c, kw) : NULL;
    if (c->rc != KEEL_OK)
        return;
    if (!v || v->sign < 0 || !dec_is_integer(v)) {
        kfail(c, s, kw->string, "must be a non-negative integer");
        return;
    }
    *count_field(s, kw->string) = dec_to_count(v);
    if (strcmp(kw->string, "minContains") == 0)
        s->has_min_contains = true;
}

/* The compiled regex for source (compiled once per schema however often it appears). */
static const keel_regex *get_regex(cc *c, const snode *s, const char *keyword, const char *source)
{
    keel_regex *re = map_get(&c->patterns, source);
    if (re)
        return re;
    if (c->s->nregexes >= KEEL_SCHEMA_MAX_PATTERNS) {
        cfail(c, "more than %d regular expressions (KEEL_SCHEMA_MAX_PATTERNS)",
              KEEL_SCHEMA_MAX_PATTERNS);
        return NULL;
    }
    char why[300];
    int rc = compile_regex(&re, source, why, sizeof why);
    if (rc == KEEL_ENOMEM) {
        coom(c);
        return NULL;
    }
    if (rc != KEEL_OK) {
        kfail(c, s, keyword, "has a regular expression '%.200s' that cannot be used: %s", source,
              why);
        return NULL;
    }
    if (!push_ptr((void ***)&c->s->regexes, &c->s->nregexes, &c->s->capregexes, re)) {
        keel_regex_free(re);
        coom(c);
        return NULL;
    }
    if (!map_put(&c->patterns, source, re)) {
        coom(c);
        return NULL;
    }
    return re;
}

static void kw_pattern(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    if (!cJSON_IsString(kw)) {
        kfail(c, s, "pattern", "must be a string");
        return;
    }
    s->pattern_source = kw->valuestring;
    s->pattern = get_regex(c, s, "pattern", kw->valuestring);
}

/* Draft 7 leaves format to the implementation; keel asserts "regex" there (a string that names
 * a regex must be one JavaScript accepts) and treats every other format as an annotation.
 * 2020-12's format-annotation vocabulary never asserts. */
static void kw_format(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)c, (void)d;
    s->format_regex = cJSON_IsString(kw) && strcmp(kw->valuestring, "regex") == 0;
}

static void kw_unique(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    if (!cJSON_IsBool(kw))
        kfail(c, s, "uniqueItems", "must be a boolean");
    s->unique_items = cJSON_IsTrue(kw);
}

/* An array of strings into *names (arena); false after reporting it. */
static bool string_array(cc *c, const snode *s, const cJSON *kw, const char *keyword,
                         const char ***names, size_t *n)
{
    bool ok = cJSON_IsArray(kw);
    size_t count = 0;
    for (const cJSON *t = ok ? kw->child : NULL; t; t = t->next, count++)
        ok = ok && cJSON_IsString(t);
    if (!ok) {
        kfail(c, s, keyword, "must be an array of strings");
        return false;
    }
    if (!(*names = calloc_in(c, (count ? count : 1) * sizeof **names)))
        return false;
    *n = 0;
    for (const cJSON *t = kw->child; t; t = t->next)
        (*names)[(*n)++] = t->valuestring;
    return true;
}

static void kw_required(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    string_array(c, s, kw, "required", &s->required, &s->nrequired);
}

/* Room for n more entries in a dependency list that may already hold some (dependencies and
 * dependentRequired, or dependencies and dependentSchemas, add to the same list). */
static void *grow_list(cc *c, void *old, size_t have, size_t more, size_t size)
{
    void *p = calloc_in(c, (have + more + 1) * size);
    if (p && have)
        memcpy(p, old, have * size);
    return p;
}

static void kw_dep_required(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    if (!cJSON_IsObject(kw)) {
        kfail(c, s, kw->string, "must be an object of string arrays");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(kw);
    sdeps *list = grow_list(c, s->dep_required, s->ndep_required, n, sizeof *list);
    if (!list)
        return;
    s->dep_required = list;
    for (const cJSON *m = kw->child; m && c->rc == KEEL_OK; m = m->next) {
        sdeps *e = &list[s->ndep_required];
        e->keyword = "dependentRequired";
        e->name = m->string;
        if (string_array(c, s, m, kw->string, &e->names, &e->nnames))
            s->ndep_required++;
    }
}

/* An object of subschemas, compiled into a list of (name, schema) pairs (NULL: compile only). */
static sprop *schema_map(cc *c, snode *s, const cJSON *kw, dialect d, size_t *n)
{
    if (!cJSON_IsObject(kw)) {
        kfail(c, s, kw->string, "must be an object");
        return NULL;
    }
    sprop *list = calloc_in(c, ((size_t)cJSON_GetArraySize(kw) + 1) * sizeof *list);
    if (!list)
        return NULL;
    *n = 0;
    for (const cJSON *m = kw->child; m && c->rc == KEEL_OK; m = m->next) {
        snode *sn = sub(c, s, m, kw->string, m->string, d);
        list[(*n)++] = (sprop){m->string, sn};
    }
    return c->rc == KEEL_OK ? list : NULL;
}

static int prop_cmp(const void *a, const void *b)
{
    return strcmp(((const sprop *)a)->name, ((const sprop *)b)->name);
}

static void kw_properties(cc *c, snode *s, const cJSON *kw, dialect d)
{
    s->props = schema_map(c, s, kw, d, &s->nprops);
    if (s->props)
        qsort(s->props, s->nprops, sizeof *s->props, prop_cmp);
}

static void kw_defs(cc *c, snode *s, const cJSON *kw, dialect d)
{
    size_t n;
    schema_map(c, s, kw, d, &n);
}

static void kw_dep_schemas(cc *c, snode *s, const cJSON *kw, dialect d)
{
    size_t n = 0;
    sprop *more = schema_map(c, s, kw, d, &n);
    sprop *list = more ? grow_list(c, s->dep_schemas, s->ndep_schemas, n, sizeof *list) : NULL;
    if (!list)
        return;
    memcpy(list + s->ndep_schemas, more, n * sizeof *list);
    s->dep_schemas = list;
    s->ndep_schemas += n;
}

/* draft 7's dependencies (also read in 2020-12): a string array, or a schema, per name. */
static void kw_dependencies(cc *c, snode *s, const cJSON *kw, dialect d)
{
    if (!cJSON_IsObject(kw)) {
        kfail(c, s, "dependencies", "must be an object");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(kw);
    sdeps *req = grow_list(c, s->dep_required, s->ndep_required, n, sizeof *req);
    sprop *sch = grow_list(c, s->dep_schemas, s->ndep_schemas, n, sizeof *sch);
    if (!req || !sch)
        return;
    s->dep_required = req;
    s->dep_schemas = sch;
    for (const cJSON *m = kw->child; m && c->rc == KEEL_OK; m = m->next) {
        if (cJSON_IsArray(m)) {
            sdeps *e = &req[s->ndep_required];
            e->keyword = "dependencies";
            e->name = m->string;
            if (string_array(c, s, m, "dependencies", &e->names, &e->nnames))
                s->ndep_required++;
        } else {
            snode *sn = sub(c, s, m, "dependencies", m->string, d);
            sch[s->ndep_schemas++] = (sprop){m->string, sn};
        }
    }
}

static void kw_pattern_props(cc *c, snode *s, const cJSON *kw, dialect d)
{
    if (!cJSON_IsObject(kw)) {
        kfail(c, s, "patternProperties", "must be an object");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(kw);
    if (!(s->pattern_props = calloc_in(c, (n ? n : 1) * sizeof *s->pattern_props)))
        return;
    for (const cJSON *m = kw->child; m && c->rc == KEEL_OK; m = m->next) {
        spattern *p = &s->pattern_props[s->npattern_props++];
        p->source = m->string;
        p->re = get_regex(c, s, "patternProperties", m->string);
        p->schema = c->rc == KEEL_OK ? sub(c, s, m, "patternProperties", m->string, d) : NULL;
    }
}

static snode **one_field(snode *s, const char *k)
{
    static const char *const names[] = {
        "additionalProperties",
        "propertyNames",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "unevaluatedProperties",
        "unevaluatedItems",
        "additionalItems",
        "items",
    };
    snode **fields[] = {
        &s->additional_props,  &s->property_names,      &s->contains,    &s->not_schema,
        &s->if_schema,         &s->then_schema,         &s->else_schema, &s->unevaluated_props,
        &s->unevaluated_items, &s->additional_items_kw, &s->items_kw,
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(k, names[i]) == 0)
            return fields[i];
    return NULL; /* contentSchema: compiled (it may hold identifiers), never applied */
}

static void kw_one(cc *c, snode *s, const cJSON *kw, dialect d)
{
    snode *sn = sub(c, s, kw, kw->string, NULL, d);
    snode **field = one_field(s, kw->string);
    if (field)
        *field = sn;
}

static void schema_list(cc *c, snode *s, const cJSON *kw, dialect d, slist *out)
{
    if (!cJSON_IsArray(kw) || !kw->child) {
        kfail(c, s, kw->string, "must be a non-empty array of schemas");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(kw);
    if (!(out->v = calloc_in(c, n * sizeof *out->v)))
        return;
    out->n = 0;
    for (const cJSON *m = kw->child; m && c->rc == KEEL_OK; m = m->next) {
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", out->n);
        out->v[out->n++] = sub(c, s, m, kw->string, idx, d);
    }
}

static void kw_many(cc *c, snode *s, const cJSON *kw, dialect d)
{
    const char *k = kw->string;
    slist *l = strcmp(k, "allOf") == 0   ? &s->all_of
               : strcmp(k, "anyOf") == 0 ? &s->any_of
               : strcmp(k, "oneOf") == 0 ? &s->one_of
                                         : &s->prefix;
    schema_list(c, s, kw, d, l);
}

static void kw_items(cc *c, snode *s, const cJSON *kw, dialect d)
{
    if (cJSON_IsArray(kw) && d.draft == D7) {
        s->items_is_array = true;
        if (kw->child)
            schema_list(c, s, kw, d, &s->prefix);
        return;
    }
    if (cJSON_IsArray(kw)) {
        kfail(c, s, "items", "must be a schema in 2020-12 (prefixItems takes the array form)");
        return;
    }
    kw_one(c, s, kw, d);
}

static void add_link(cc *c, snode *s, const char *keyword, const char *ref, bool dynamic)
{
    char *abs = uri_resolve(s->res->uri, ref);
    if (!abs) {
        coom(c);
        return;
    }
    if (c->nlinks == c->caplinks) {
        size_t cap = c->caplinks ? c->caplinks * 2 : 16;
        pending *p = realloc(c->links, cap * sizeof *p);
        if (!p) {
            free(abs);
            coom(c);
            return;
        }
        c->links = p;
        c->caplinks = cap;
    }
    c->links[c->nlinks++] = (pending){s, abs, dynamic};
    (void)keyword;
}

static void kw_ref(cc *c, snode *s, const cJSON *kw, dialect d)
{
    (void)d;
    if (!cJSON_IsString(kw)) {
        kfail(c, s, kw->string, "must be a string");
        return;
    }
    bool dynamic = strcmp(kw->string, "$dynamicRef") == 0;
    if (dynamic) {
        s->dynref_text = kw->valuestring;
        c->s->has_dynamic_refs = true;
    } else {
        s->ref_text = kw->valuestring;
    }
    add_link(c, s, kw->string, kw->valuestring, dynamic);
}

static void kw_refuse(cc *c, snode *s, const cJSON *kw, dialect d)
{
    if (kw->string[0] == '$' && strstr(kw->string, "recursive"))
        kfail(c, s, kw->string,
              "is a 2019-09 keyword; keel evaluates draft 7 and 2020-12 "
              "($dynamicRef and $dynamicAnchor replace it)");
    else if (d.draft == D7)
        kfail(c, s, kw->string,
              "is not a draft 7 keyword; keel refuses it rather than ignore an assertion its "
              "author meant (use $schema 2020-12)");
    else
        kfail(c, s, kw->string, "is not supported");
}

typedef void (*kw_fn)(cc *c, snode *s, const cJSON *kw, dialect d);

/* The keywords keel knows: in which drafts, in which 2020-12 vocabulary. */
static const struct kwdef {
    const char *name;
    unsigned drafts;
    unsigned vocab; /* 0: whatever the vocabularies */
    kw_fn fn;
} kwdefs[] = {
    {"$ref", D7 | D2020, V_CORE, kw_ref},
    {"$dynamicRef", D2020, V_CORE, kw_ref},
    {"$defs", D2020, V_CORE, kw_defs},
    {"definitions", D7 | D2020, V_CORE, kw_defs},
    {"$recursiveRef", D7 | D2020, 0, kw_refuse},
    {"$recursiveAnchor", D7 | D2020, 0, kw_refuse},
    {"type", D7 | D2020, V_VALIDATION, kw_type},
    {"enum", D7 | D2020, V_VALIDATION, kw_enum},
    {"const", D7 | D2020, V_VALIDATION, kw_const},
    {"multipleOf", D7 | D2020, V_VALIDATION, kw_multiple_of},
    {"maximum", D7 | D2020, V_VALIDATION, kw_bound},
    {"exclusiveMaximum", D7 | D2020, V_VALIDATION, kw_bound},
    {"minimum", D7 | D2020, V_VALIDATION, kw_bound},
    {"exclusiveMinimum", D7 | D2020, V_VALIDATION, kw_bound},
    {"maxLength", D7 | D2020, V_VALIDATION, kw_count},
    {"minLength", D7 | D2020, V_VALIDATION, kw_count},
    {"pattern", D7 | D2020, V_VALIDATION, kw_pattern},
    {"maxItems", D7 | D2020, V_VALIDATION, kw_count},
    {"minItems", D7 | D2020, V_VALIDATION, kw_count},
    {"uniqueItems", D7 | D2020, V_VALIDATION, kw_unique},
    {"maxContains", D2020, V_VALIDATION, kw_count},
    {"minContains", D2020, V_VALIDATION, kw_count},
    {"maxProperties", D7 | D2020, V_VALIDATION, kw_count},
    {"minProperties", D7 | D2020, V_VALIDATION, kw_count},
    {"required", D7 | D2020, V_VALIDATION, kw_required},
    {"dependentRequired", D2020, V_VALIDATION, kw_dep_required},
    {"prefixItems", D2020, V_APPLICATOR, kw_many},
    {"items", D7 | D2020, V_APPLICATOR, kw_items},
    {"additionalItems", D7, V_APPLICATOR, kw_one},
    {"contains", D7 | D2020, V_APPLICATOR, kw_one},
    {"properties", D7 | D2020, V_APPLICATOR, kw_properties},
    {"patternProperties", D7 | D2020, V_APPLICATOR, kw_pattern_props},
    {"additionalProperties", D7 | D2020, V_APPLICATOR, kw_one},
    {"propertyNames", D7 | D2020, V_APPLICATOR, kw_one},
    {"dependentSchemas", D2020, V_APPLICATOR, kw_dep_schemas},
    {"dependencies", D7 | D2020, V_APPLICATOR, kw_dependencies},
    {"if", D7 | D2020, V_APPLICATOR, kw_one},
    {"then", D7 | D2020, V_APPLICATOR, kw_one},
    {"else", D7 | D2020, V_APPLICATOR, kw_one},
    {"allOf", D7 | D2020, V_APPLICATOR, kw_many},
    {"anyOf", D7 | D2020, V_APPLICATOR, kw_many},
    {"oneOf", D7 | D2020, V_APPLICATOR, kw_many},
    {"not", D7 | D2020, V_APPLICATOR, kw_one},
    {"unevaluatedItems", D2020, V_UNEVALUATED, kw_one},
    {"unevaluatedProperties", D2020, V_UNEVALUATED, kw_one},
    {"contentSchema", D2020, V_CONTENT, kw_one},
    {"format", D7, 0, kw_format},
    /* 2019+ keywords in a draft 7 schema: their author expects them to assert */
    {"prefixItems", D7, 0, kw_refuse},
    {"unevaluatedItems", D7, 0, kw_refuse},
    {"unevaluatedProperties", D7, 0, kw_refuse},
    {"dependentRequired", D7, 0, kw_refuse},
    {"dependentSchemas", D7, 0, kw_refuse},
    {"minContains", D7, 0, kw_refuse},
    {"maxContains", D7, 0, kw_refuse},
    {"$dynamicRef", D7, 0, kw_refuse},
};

static void compile_keywords(cc *c, snode *s, dialect d)
{
    /* draft 7: "$ref" makes every other keyword ignored */
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s->json, "$ref");
    bool ref_only = d.draft == D7 && ref;
    for (const cJSON *kw = s->json->child; kw && c->rc == KEEL_OK; kw = kw->next) {
        if (ref_only && kw != ref)
            continue;
        for (size_t i = 0; i < sizeof kwdefs / sizeof kwdefs[0]; i++) {
            const struct kwdef *k = &kwdefs[i];
            if ((k->drafts & d.draft) && strcmp(k->name, kw->string) == 0) {
                if (!k->vocab || (k->vocab & d.vocab))
                    k->fn(c, s, kw, d);
                break;
            }
        }
    }
}

/* Which keywords apply to the items after the prefix, now that all are read. */
static void finish_items(snode *s)
{
    if (s->draft == D2020) {
        s->prefix_kw = "prefixItems";
        s->rest = s->items_kw;
        s->rest_kw = "items";
    } else if (s->items_is_array) {
        s->prefix_kw = "items";
        s->rest = s->additional_items_kw;
        s->rest_kw = "additionalItems";
    } else {
        s->prefix_kw = "items";
        s->rest = s->items_kw;
        s->rest_kw = "items";
    }
}

static snode *compile_schema(cc *c, const cJSON *j, resource *res, dialect d)
{
    if (c->rc != KEEL_OK)
        return NULL;
    snode *s = map_get(&c->nodes, j);
    if (s)
        return s;
    if (!(s = new_node(c, j, res, d)))
        return NULL;
    if (res->json == j && !res->root)
        res->root = s;
    if (cJSON_IsBool(j)) {
        s->boolean = cJSON_IsTrue(j);
        return s;
    }
    if (!cJSON_IsObject(j)) {
        cfail(c, "the schema at %s must be an object or a boolean", s->loc);
        return NULL;
    }
    if (enter_resource(c, s, &d) != KEEL_OK)
        return NULL;
    compile_keywords(c, s, d);
    finish_items(s);
    return c->rc == KEEL_OK ? s : NULL;
}

/* ---- references --------------------------------------------------------------------------- */

/* Parse (if need be) and compile a registered document. */
static bool compile_regdoc(cc *c, regdoc *rd, dialect d)
{
    if (rd->compiled)
        return true;
    rd->compiled = true;
    if (!parse_regdoc(c, rd))
        return false;
    resource *r = new_resource(c, rd->uri, rd->tree, d, rd->doc);
    if (!r || name_resource(c, NULL, r, rd->uri) != KEEL_OK)
        return false;
    const char *saved_doc = c->doc_name;
    size_t saved_len = c->loc.len;
    c->doc_name = rd->uri;
    keel_strbuf_truncate(&c->loc, 0);
    compile_schema(c, rd->tree, r, d);
    c->doc_name = saved_doc;
    keel_strbuf_truncate(&c->loc, saved_len);
    return c->rc == KEEL_OK;
}

/* Whether some $id in the JSON j (read with base URI base) names uri. Only a hint of which
 * registered document to compile: compiling it decides whether that $id names a schema. */
static bool mentions_id(const cJSON *j, const char *base, const char *uri)
{
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
        return false;
    const cJSON *id = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "$id") : NULL;
    char *own = cJSON_IsString(id) ? uri_resolve(base, id->valuestring) : NULL;
    if (own)
        own[strcspn(own, "#")] = '\0';
    bool found = own && strcmp(own, uri) == 0;
    for (const cJSON *c = j->child; c && !found; c = c->next)
        found = mentions_id(c, own ? own : base, uri);
    free(own);
    return found;
}

/* The resource named uri: compiled already, or a registered document (by its URI, else the one
 * with an $id that names it). */
static resource *find_resource(cc *c, const char *uri, dialect d)
{
    resource *r = map_get(&c->names, uri);
    for (size_t i = 0; !r && i < c->ndocs && c->rc == KEEL_OK; i++)
        if (strcmp(c->docs[i].uri, uri) == 0 && compile_regdoc(c, &c->docs[i], d))
            r = map_get(&c->names, uri);
    for (size_t i = 0; !r && i < c->ndocs && c->rc == KEEL_OK; i++) {
        regdoc *rd = &c->docs[i];
        if (!rd->compiled && parse_regdoc(c, rd) && mentions_id(rd->tree, rd->uri, uri) &&
            compile_regdoc(c, rd, d))
            r = map_get(&c->names, uri);
    }
    return c->rc == KEEL_OK ? r : NULL;
}

/* The next reference token of a JSON Pointer at *p (unescaped into a new string), or NULL. */
static char *next_token(const char **p, bool *bad)
{
    const char *start = *p + 1, *end = start;
    while (*end && *end != '/')
        end++;
    char *tok = malloc((size_t)(end - start) + 1), *o = tok;
    if (!tok)
        return NULL;
    for (const char *q = start; q < end; q++) {
        if (*q != '~') {
            *o++ = *q;
        } else if (q + 1 < end && (q[1] == '0' || q[1] == '1')) {
            *o++ = q[1] == '0' ? '~' : '/';
            q++;
        } else {
            *bad = true;
        }
    }
    *o = '\0';
    *p = end;
    return tok;
}

/* The member or item tok names in j, or NULL. Array indices are read strictly (RFC 6901: no
 * leading zeros, no sign), and without wrapping: 4294967297 is not 1. */
static const cJSON *step(const cJSON *j, const char *tok)
{
    if (cJSON_IsObject(j))
        return cJSON_GetObjectItemCaseSensitive(j, tok);
    size_t index;
    if (!cJSON_IsArray(j) || !parse_index(tok, &index))
        return NULL;
    const cJSON *item = j->child;
    for (size_t i = 0; item && i < index; i++)
        item = item->next;
    return item;
}

/* Where a compiled-on-demand target is named in messages: its document and pointer. */
static void pointer_location(cc *c, const resource *r, const char *pointer)
{
    bool doc_root = c->s->docs[r->doc] == r->json;
    c->doc_name = doc_root ? c->doc_names[r->doc] : r->uri;
    keel_strbuf_truncate(&c->loc, 0);
    keel_strbuf_puts(&c->loc, pointer);
}

/* A JSON Pointer fragment inside resource r. A target that no keyword made a subschema (inside
 * an unknown keyword, say) is compiled now, in the resource that encloses it. */
static snode *resolve_pointer(cc *c, resource *r, const char *fragment, char *why, size_t whysz)
{
    char *pointer = percent_decode(fragment);
    if (!pointer) {
        snprintf(why, whysz, "its fragment is not well percent-encoded");
        return NULL;
    }
    const cJSON *j = r->json;
    resource *enclosing = r;
    bool bad = false;
    for (const char *p = pointer; j && *p;) {
        char *tok = next_token(&p, &bad);
        if (!tok) {
            free(pointer);
            coom(c);
            return NULL;
        }
        const cJSON *next = bad ? NULL : step(j, tok);
        if (!next)
            snprintf(why, whysz, "%s '%.100s' is not there", cJSON_IsArray(j) ? "index" : "member",
                     tok);
        free(tok);
        j = next;
        snode *known = j ? map_get(&c->nodes, j) : NULL;
        if (known)
            enclosing = known->res;
    }
    snode *t = j ? map_get(&c->nodes, j) : NULL;
    if (j && !t) {
        const char *saved_doc = c->doc_name;
        pointer_location(c, enclosing, pointer);
        t = compile_schema(c, j, enclosing, enclosing->d);
        c->doc_name = saved_doc;
    }
    free(pointer);
    return t;
}

static snode *resolve(cc *c, const char *uri, dialect d, const char **anchor_name, char *why,
                      size_t whysz)
{
    const char *hash = strchr(uri, '#');
    size_t n = hash ? (size_t)(hash - uri) : strlen(uri);
    char *base = malloc(n + 1);
    if (!base) {
        coom(c);
        return NULL;
    }
    memcpy(base, uri, n);
    base[n] = '\0';
    resource *r = find_resource(c, base, d);
    free(base);
    const char *frag = hash ? hash + 1 : "";
    *anchor_name = NULL;
    if (!r) {
        if (strncmp(uri, DEFAULT_BASE_URI, 8) == 0) /* "keel:///": relative to a root with no URI */
            snprintf(why, whysz, "the schema has no $id, so a relative reference names nothing");
        else
            snprintf(why, whysz, "no schema keel was given has the URI %.*s",
                     (int)(n > 300 ? 300 : n), uri);
        return NULL;
    }
    if (!*frag)
        return r->root;
    if (*frag == '/')
        return resolve_pointer(c, r, frag, why, whysz);
    for (size_t i = 0; i < r->nanchors; i++)
        if (strcmp(r->anchors[i].name, frag) == 0) {
            *anchor_name = r->anchors[i].name;
            return r->anchors[i].node;
        }
    snprintf(why, whysz, "%.300s has no anchor '%.100s'",
             strcmp(r->uri, DEFAULT_BASE_URI) == 0 ? "the schema" : r->uri, frag);
    return NULL;
}

/* Link every $ref and $dynamicRef to its target; compiling a target may add more to link. */
static int link_all(cc *c)
{
    for (size_t i = 0; i < c->nlinks && c->rc == KEEL_OK; i++) {
        pending p = c->links[i];
        const char *anchor_name;
        char why[512] = "";
        dialect d = {p.s->draft, p.s->res->d.vocab};
        snode *t = resolve(c, p.uri, d, &anchor_name, why, sizeof why);
        if (c->rc != KEEL_OK)
            break;
        const char *kw = p.dynamic ? "$dynamicRef" : "$ref";
        if (!t)
            return kfail(c, p.s, kw,
                         "'%.300s' does not resolve: %s (keel fetches nothing; "
                         "register the schema it names with keel_schema_new_with)",
                         p.dynamic ? p.s->dynref_text : p.s->ref_text, why);
        if (!p.dynamic) {
            p.s->ref = t;
            continue;
        }
        p.s->dynref = t;
        /* it goes through the dynamic scope only if it lands on a $dynamicAnchor of that name */
        const cJSON *da = cJSON_GetObjectItemCaseSensitive(t->json, "$dynamicAnchor");
        if (anchor_name && cJSON_IsString(da) && strcmp(da->valuestring, anchor_name) == 0)
            p.s->dyn_anchor = anchor_name;
    }
    return c->rc;
}

/* ---- loops that never reach the instance -------------------------------------------------- */

/* How many in-place slots s has: subschemas it applies to the same instance value. */
static size_t in_place_count(const snode *s)
{
    return 6 + s->all_of.n + s->any_of.n + s->one_of.n + s->ndep_schemas;
}

/* The k-th in-place slot of s (NULL when that keyword is absent). */
static const snode *in_place(const snode *s, size_t k)
{
    const snode *one[] = {s->ref,       s->dynref,      s->not_schema,
                          s->if_schema, s->then_schema, s->else_schema};
    const slist *lists[] = {&s->all_of, &s->any_of, &s->one_of};
    if (k < 6)
        return one[k];
    k -= 6;
    for (int i = 0; i < 3; i++) {
        if (k < lists[i]->n)
            return lists[i]->v[k];
        k -= lists[i]->n;
    }
    return k < s->ndep_schemas ? s->dep_schemas[k].schema : NULL;
}

/*
 * Refuse a cycle of in-place subschemas ({"anyOf":[{"$ref":"#"}]}): applying it would apply
 * itself to the same value forever. Depth-first over all snodes, without recursion.
 */
static int check_loops(cc *c)
{
    size_t n = c->s->nnodes;
    unsigned char *color = calloc(n ? n : 1, 1); /* 0 new, 1 on the path, 2 done */
    struct frame {
        const snode *s;
        size_t k;
    } *stack = malloc((n ? n : 1) * sizeof *stack);
    if (!color || !stack) {
        free(color);
        free(stack);
        return coom(c);
    }
    for (size_t i = 0; i < n && c->rc == KEEL_OK; i++) {
        if (color[i])
            continue;
        size_t top = 0;
        stack[top++] = (struct frame){c->s->nodes[i], 0};
        color[i] = 1;
        while (top && c->rc == KEEL_OK) {
            struct frame *f = &stack[top - 1];
            if (f->k == in_place_count(f->s)) {
                color[f->s->id] = 2;
                top--;
                continue;
            }
            const snode *next = in_place(f->s, f->k++);
            if (!next || color[next->id] == 2)
                continue;
            if (color[next->id] == 1)
                cfail(c,
                      "the subschema at %s applies %s to the same value again, never moving "
                      "into the instance: validation would never end",
                      f->s->loc, next->loc);
            else {
                color[next->id] = 1;
                stack[top++] = (struct frame){next, 0};
            }
        }
    }
    free(color);
    free(stack);
    return c->rc;
}

/* ---- the public compile API --------------------------------------------------------------- */

int keel_schema_options_init(keel_schema_options *opts, unsigned version)
{
    if (!opts || version != KEEL_SCHEMA_OPTIONS_VERSION)
        return KEEL_EINVAL;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    return KEEL_OK;
}

/* A copy of uri without its fragment. */
static char *without_fragment(const char *uri)
{
    size_t n = strcspn(uri, "#");
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, uri, n);
        p[n] = '\0';
    }
    return p;
}

static int register_docs(cc *c, const keel_schema_options *opts)
{
    size_t nb = sizeof builtins / sizeof builtins[0];
    c->docs = calloc(opts->nresources + nb, sizeof *c->docs);
    if (!c->docs)
        return coom(c);
    for (size_t i = 0; i < opts->nresources + nb; i++) {
        bool mine = i >= opts->nresources;
        const char *uri = mine ? builtins[i - opts->nresources].uri : opts->resources[i].uri;
        const char *text = mine ? builtins[i - opts->nresources].json : opts->resources[i].json;
        if (!uri || !text)
            return cfail(c, "registered resource %zu has no URI or no text", i);
        uri_parts u;
        uri_split(uri, &u);
        if (!u.scheme.present)
            return cfail(c, "registered resource '%.300s' needs an absolute URI", uri);
        if (!(c->docs[i].uri = without_fragment(uri)))
            return coom(c);
        c->docs[i].text = text;
        c->ndocs++;
    }
    return KEEL_OK;
}

static void cc_dispose(cc *c)
{
    for (size_t i = 0; i < c->nlinks; i++)
        free(c->links[i].uri);
    for (size_t i = 0; i < c->ndocs; i++)
        free(c->docs[i].uri);
    free(c->links);
    free(c->docs);
    free(c->doc_names);
    free(c->loc.p);
    map_free(&c->nodes);
    map_free(&c->names);
    map_free(&c->patterns);
}

static int compile_root(cc *c, cJSON *root, const keel_schema_options *opts)
{
    size_t doc;
    if (!own_doc(c, root, "", &doc) || register_docs(c, opts) != KEEL_OK)
        return c->rc;
    c->root_dialect =
        opts->dialect == KEEL_SCHEMA_DRAFT7 ? (dialect){D7, V_ALL} : (dialect){D2020, V_ALL};
    char *base = without_fragment(opts->base_uri ? opts->base_uri : DEFAULT_BASE_URI);
    resource *r = base ? new_resource(c, base, root, c->root_dialect, doc) : NULL;
    if (!base)
        coom(c);
    if (r && name_resource(c, NULL, r, base) == KEEL_OK)
        c->s->root = compile_schema(c, root, r, c->root_dialect);
    free(base);
    if (c->rc == KEEL_OK)
        link_all(c);
    if (c->rc == KEEL_OK)
        check_loops(c);
    return c->rc;
}

int keel_schema_new_with(keel_schema **out, const char *schema_json,
                         const keel_schema_options *opts, keel_error *err)
{
    if (!out)
        return keel_error_set(err, KEEL_EINVAL, "schema: nowhere to put the schema");
    *out = NULL;
    keel_schema_options defaults;
    keel_schema_options_init(&defaults, KEEL_SCHEMA_OPTIONS_VERSION);
    if (!opts)
        opts = &defaults;
    if (opts->version != KEEL_SCHEMA_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "schema: options of unknown version %u",
                              opts->version);
    if (opts->dialect != KEEL_SCHEMA_DIALECT_DEFAULT && opts->dialect != KEEL_SCHEMA_DRAFT7 &&
        opts->dialect != KEEL_SCHEMA_DRAFT2020_12)
        return keel_error_set(err, KEEL_EINVAL, "schema: unknown dialect %d", (int)opts->dialect);
    if (!schema_json)
        return keel_error_set(err, KEEL_EINVAL, "schema: no schema text");
    cJSON *root = NULL;
    int rc = keel_json_parse(schema_json, strlen(schema_json),
                             KEEL_JSON_LAST_WINS | KEEL_JSON_KEEP_NUL, "the schema", &root, err);
    if (rc != KEEL_OK)
        return rc;
    keel_schema *s = calloc(1, sizeof *s);
    if (!s) {
        cJSON_Delete(root);
        return keel_error_set(err, KEEL_ENOMEM, "schema: out of memory");
    }
    cc c = {.s = s, .err = err, .doc_name = ""};
    c.names.strings = c.patterns.strings = true;
    rc = compile_root(&c, root, opts);
    cc_dispose(&c);
    if (rc != KEEL_OK) {
        keel_schema_free(s);
        return rc;
    }
    *out = s;
    return KEEL_OK;
}

int keel_schema_new(keel_schema **out, const char *schema_json, keel_error *err)
{
    return keel_schema_new_with(out, schema_json, NULL, err);
}

/* ---- validating: state, errors, limits ---------------------------------------------------- */

/* The members or items some keyword evaluated (bit i: the i-th child of the instance value). */
typedef struct ann {
    uint64_t *bits;
    size_t n;
    uint64_t small[2];
} ann;

static bool ann_init(ann *a, size_t n)
{
    size_t words = (n + 63) / 64;
    a->n = n;
    memset(a->small, 0, sizeof a->small);
    a->bits = words <= 2 ? a->small : calloc(words, sizeof *a->bits);
    return a->bits != NULL;
}

static void ann_free(ann *a)
{
    if (a->bits != a->small)
        free(a->bits);
    a->bits = NULL;
}

static void ann_set(ann *a, size_t i)
{
    if (a)
        a->bits[i / 64] |= (uint64_t)1 << (i % 64);
}

static bool ann_has(const ann *a, size_t i)
{
    return (a->bits[i / 64] >> (i % 64)) & 1;
}

static void ann_merge(ann *to, const ann *from)
{
    for (size_t i = 0; i < (to->n + 63) / 64; i++)
        to->bits[i] |= from->bits[i];
}

typedef struct frame {
    const snode *s;
    const cJSON *inst;
    bool pushed_scope;
} frame;

typedef struct vstate {
    const keel_schema *schema;
    keel_schema_result *res;
    keel_error *err;
    int fatal; /* not KEEL_OK once validation had to stop */
    sbuf ptr;  /* JSON Pointer of the instance value at hand */
    uint64_t work, budget;
    size_t depth;
    frame frames[KEEL_SCHEMA_MAX_DEPTH];
    /* the dynamic scope: the resources evaluation went through, outermost first */
    const resource *scope[KEEL_SCHEMA_MAX_DEPTH];
    size_t nscope;
    keel_regex_scratch *scratch;
} vstate;

static bool vstop(vstate *st, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool vstop(vstate *st, int code, const char *fmt, ...)
{
    if (st->fatal != KEEL_OK)
        return false;
    char msg[KEEL_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    st->fatal = keel_error_set(st->err, code, "schema: %s", msg);
    return false;
}

static bool voom(vstate *st)
{
    return vstop(st, KEEL_ENOMEM, "out of memory");
}

/* The instance location for messages. */
static const char *where(const vstate *st)
{
    return st->ptr.len ? sb_str(&st->ptr) : "the instance root";
}

static bool charge(vstate *st, uint64_t steps)
{
    st->work += steps;
    if (st->work <= st->budget)
        return true;
    return vstop(st, KEEL_EEXHAUSTED,
                 "validation stopped after %llu steps (KEEL_SCHEMA_MAX_WORK %d plus "
                 "KEEL_SCHEMA_WORK_PER_VALUE %d per instance value) at %s: the schema asks too "
                 "much work of this instance",
                 (unsigned long long)st->budget, KEEL_SCHEMA_MAX_WORK, KEEL_SCHEMA_WORK_PER_VALUE,
                 where(st));
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* Drop the bytes of any character that a "%.200s" or the buffer's end cut in two: a reason goes
 * into llm.chat's result, which must stay valid UTF-8 (found by fuzz_schema). KEEL_JSON_KEEP_NUL's
 * C0 80 is kept: keel_json_print writes it as \u0000. */
static void whole_characters(char *s)
{
    unsigned char *r = (unsigned char *)s, *w = r;
    while (*r) {
        size_t n = *r < 0x80             ? 1
                   : (*r & 0xE0) == 0xC0 ? 2
                   : (*r & 0xF0) == 0xE0 ? 3
                   : (*r & 0xF8) == 0xF0 ? 4
                                         : 0;
        bool ok = n > 0;
        for (size_t i = 1; ok && i < n; i++)
            ok = (r[i] & 0xC0) == 0x80;
        if (ok && n == 2 && r[0] < 0xC2)
            ok = r[0] == 0xC0 && r[1] == 0x80;
        if (!ok) {
            r++;
            continue;
        }
        memmove(w, r, n);
        w += n;
        r += n;
    }
    *w = '\0';
}

static void add_error(vstate *st, bool collect, const char *keyword, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_error(vstate *st, bool collect, const char *keyword, const char *fmt, ...)
{
    if (!collect || st->fatal != KEEL_OK)
        return;
    keel_schema_result *r = st->res;
    if (r->count == KEEL_SCHEMA_MAX_ERRORS) {
        r->truncated = true;
        return;
    }
    if (!r->errors && !(r->errors = calloc(KEEL_SCHEMA_MAX_ERRORS, sizeof *r->errors))) {
        voom(st);
        return;
    }
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    whole_characters(reason);
    keel_schema_error *e = &r->errors[r->count];
    e->pointer = dup_str(sb_str(&st->ptr));
    e->keyword = dup_str(keyword);
    e->reason = dup_str(reason);
    r->count++;
    if (!e->pointer || !e->keyword || !e->reason)
        voom(st);
}

static size_t push_key(vstate *st, const char *key)
{
    size_t len = st->ptr.len;
    sb_push_token(&st->ptr, key);
    return len;
}

static size_t push_index(vstate *st, size_t i)
{
    size_t len = st->ptr.len;
    sb_push_index(&st->ptr, i);
    return len;
}

static void pop(vstate *st, size_t len)
{
    keel_strbuf_truncate(&st->ptr, len);
}

/* Enter s at inst: bounded depth, no loop, s's resource on the dynamic scope. */
static bool enter(vstate *st, const snode *s, const cJSON *inst)
{
    if (st->depth == KEEL_SCHEMA_MAX_DEPTH)
        return vstop(st, KEEL_EEXHAUSTED,
                     "validation stopped: subschemas nested deeper than %d levels "
                     "(KEEL_SCHEMA_MAX_DEPTH) at %s on %s",
                     KEEL_SCHEMA_MAX_DEPTH, s->loc, where(st));
    /* the same subschema again on the same value with nothing in between moving into it: only
     * $dynamicRef can get here (check_loops refused the static cycles), and it would never end */
    size_t scanned = 0;
    for (size_t i = st->depth;
         st->schema->has_dynamic_refs && i-- > 0 && st->frames[i].inst == inst; scanned++)
        if (st->frames[i].s == s)
            return vstop(st, KEEL_EEXHAUSTED,
                         "validation stopped: the subschema at %s applies itself to %s again "
                         "without moving into the instance",
                         s->loc, where(st));
    if (!charge(st, scanned / 16))
        return false;
    frame *f = &st->frames[st->depth++];
    f->s = s;
    f->inst = inst;
    f->pushed_scope = st->nscope == 0 || st->scope[st->nscope - 1] != s->res;
    if (f->pushed_scope)
        st->scope[st->nscope++] = s->res;
    return true;
}

static void leave(vstate *st)
{
    frame *f = &st->frames[--st->depth];
    if (f->pushed_scope)
        st->nscope--;
}

static size_t children(const cJSON *j)
{
    size_t n = 0;
    for (const cJSON *c = j->child; c; c = c->next)
        n++;
    return n;
}

/* Search subject for re: 1 or 0, or -1 when validation had to stop. */
static int search(vstate *st, const keel_regex *re, const char *source, const snode *s,
                  const char *keyword, const char *subject)
{
    size_t len = strlen(subject);
    if (!charge(st, 1 + len / 64))
        return -1;
    char why[300];
    bool oom;
    char *restored = subject_with_nuls(subject, &len, &oom);
    int rc = oom ? KEEL_ENOMEM
                 : keel_regex_search(re, restored ? restored : subject, len, &st->scratch, why,
                                     sizeof why);
    free(restored);
    if (rc == KEEL_ENOMEM)
        snprintf(why, sizeof why, "out of memory");
    if (rc >= 0)
        return rc;
    vstop(st, rc,
          "validation stopped: the regular expression '%.200s' of '%s' at %s, searching the "
          "string at %s: %s",
          source, keyword, s->loc, where(st), why);
    return -1;
}

static bool eval(vstate *st, const snode *s, const cJSON *inst, ann *out, bool collect);

/* Every keyword check in the evaluators below: after a failure, go on only to collect errors. */
#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            ok = false;                                                                            \
            if (!collect || st->fatal != KEEL_OK)                                                  \
                return false;                                                                      \
        }                                                                                          \
    } while (0)

/* ---- validating: keywords for any value --------------------------------------------------- */

static unsigned instance_types(const cJSON *j)
{
    if (cJSON_IsNull(j))
        return T_NULL;
    if (cJSON_IsBool(j))
        return T_BOOLEAN;
    if (cJSON_IsNumber(j))
        return T_NUMBER | (is_integral(j) ? T_INTEGER : 0);
    if (cJSON_IsString(j))
        return T_STRING;
    return cJSON_IsArray(j) ? T_ARRAY : T_OBJECT;
}

static const char *type_name(const cJSON *j)
{
    unsigned t = instance_types(j);
    return t & T_INTEGER   ? "integer"
           : t & T_NUMBER  ? "number"
           : t & T_NULL    ? "null"
           : t & T_BOOLEAN ? "boolean"
           : t & T_STRING  ? "string"
           : t & T_ARRAY   ? "array"
                           : "object";
}

static bool eval_type(vstate *st, const snode *s, const cJSON *inst, bool collect)
{
    if (s->types & instance_types(inst))
        return true;
    if (cJSON_IsString(s->type_kw)) {
        add_error(st, collect, "type", "expected %s, got %s", s->type_kw->valuestring,
                  type_name(inst));
        return false;
    }
    char names[256] = "";
    for (const cJSON *t = s->type_kw->child; t; t = t->next) {
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", t->valuestring);
    }
    add_error(st, collect, "type", "expected one of %s; got %s", names, type_name(inst));
    return false;
}

static bool eval_enum(vstate *st, const snode *s, const cJSON *inst, bool collect)
{
    uint64_t h = json_hash(inst, &st->work);
    size_t i = 0;
    for (const cJSON *v = s->enum_values->child; v; v = v->next, i++)
        if (s->enum_hashes[i] == h && json_equal(v, inst, &st->work))
            return charge(st, i);
    if (!charge(st, i))
        return false;
    add_error(st, collect, "enum", "value is not one of the allowed values");
    return false;
}

static bool eval_generic(vstate *st, const snode *s, const cJSON *inst, bool collect)
{
    bool ok = true;
    if (s->types)
        CHECK(eval_type(st, s, inst, collect));
    if (s->enum_values)
        CHECK(eval_enum(st, s, inst, collect));
    if (s->const_value) {
        bool same = json_equal(s->const_value, inst, &st->work);
        if (!charge(st, 0))
            return false;
        if (!same)
            add_error(st, collect, "const", "value is not the required constant");
        CHECK(same);
    }
    return ok;
}

/* ---- numbers and strings ------------------------------------------------------------------ */

static bool eval_number(vstate *st, const snode *s, const cJSON *inst, bool collect)
{
    bool ok = true;
    char buf[32];
    decnum x;
    dec_of(inst, &x, buf);
    const char *xs = x.text;
    if (s->minimum && dec_cmp(&x, s->minimum) < 0) {
        add_error(st, collect, "minimum", "%.60s is less than the minimum %.60s", xs,
                  s->minimum->text);
        CHECK(false);
    }
    if (s->exclusive_minimum && dec_cmp(&x, s->exclusive_minimum) <= 0) {
        add_error(st, collect, "exclusiveMinimum", "%.60s must be greater than %.60s", xs,
                  s->exclusive_minimum->text);
        CHECK(false);
    }
    if (s->maximum && dec_cmp(&x, s->maximum) > 0) {
        add_error(st, collect, "maximum", "%.60s is greater than the maximum %.60s", xs,
                  s->maximum->text);
        CHECK(false);
    }
    if (s->exclusive_maximum && dec_cmp(&x, s->exclusive_maximum) >= 0) {
        add_error(st, collect, "exclusiveMaximum", "%.60s must be less than %.60s", xs,
                  s->exclusive_maximum->text);
        CHECK(false);
    }
    if (s->multiple_of && !dec_multiple_of(&x, s->multiple_of)) {
        add_error(st, collect, "multipleOf", "%.60s is not a multiple of %.60s", xs,
                  s->multiple_of->text);
        CHECK(false);
    }
    return ok;
}

static bool eval_format_regex(vstate *st, const cJSON *inst, bool collect)
{
    keel_regex *re = NULL;
    char why[300];
    if (!charge(st, 1 + strlen(inst->valuestring) / 16))
        return false;
    int rc = compile_regex(&re, inst->valuestring, why, sizeof why);
    keel_regex_free(re);
    if (rc == KEEL_ENOMEM)
        return voom(st);
    if (rc != KEEL_OK)
        add_error(st, collect, "format", "string is not a regular expression: %s", why);
    return rc == KEEL_OK;
}

static bool eval_string(vstate *st, const snode *s, const cJSON *inst, bool collect)
{
    bool ok = true;
    if (s->min_length || s->max_length != NO_MAX) {
        size_t n = utf8_length(inst->valuestring);
        if (!charge(st, n / 64))
            return false;
        if (n < s->min_length) {
            add_error(st, collect, "minLength",
                      "string is %zu characters long, at least %llu needed", n,
                      (unsigned long long)s->min_length);
            CHECK(false);
        }
        if (n > s->max_length) {
            add_error(st, collect, "maxLength",
                      "string is %zu characters long, at most %llu allowed", n,
                      (unsigned long long)s->max_length);
            CHECK(false);
        }
    }
    if (s->format_regex)
        CHECK(eval_format_regex(st, inst, collect));
    if (s->pattern) {
        int m = search(st, s->pattern, s->pattern_source, s, "pattern", inst->valuestring);
        if (m < 0)
            return false;
        if (!m)
            add_error(st, collect, "pattern", "string does not match the pattern '%.200s'",
                      s->pattern_source);
        CHECK(m);
    }
    return ok;
}

/* ---- arrays ------------------------------------------------------------------------------- */

static bool eval_items(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    bool ok = true;
    size_t i = 0;
    for (const cJSON *it = inst->child; it; it = it->next, i++) {
        bool in_prefix = i < s->prefix.n;
        const snode *sub = in_prefix ? s->prefix.v[i] : s->rest;
        if (!sub)
            break;
        size_t len = push_index(st, i);
        bool good;
        if (!in_prefix && sub->boolean == 0) {
            add_error(st, collect, s->rest_kw,
                      "no item is allowed at index %zu (at most %zu items)", i, s->prefix.n);
            good = false;
        } else {
            good = eval(st, sub, it, NULL, collect);
        }
        pop(st, len);
        ann_set(a, i);
        CHECK(good);
    }
    return ok;
}

static bool eval_contains(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    bool ok = true;
    bool d7 = s->draft == D7;
    uint64_t min = d7 || !s->has_min_contains ? 1 : s->min_contains;
    uint64_t max = d7 ? NO_MAX : s->max_contains;
    size_t found = 0, i = 0;
    for (const cJSON *it = inst->child; it; it = it->next, i++) {
        size_t len = push_index(st, i);
        bool m = eval(st, s->contains, it, NULL, false);
        pop(st, len);
        if (st->fatal != KEEL_OK)
            return false;
        if (m) {
            found++;
            ann_set(a, i);
        }
        if (!a && max == NO_MAX && found >= min)
            break; /* nothing more to learn */
    }
    if (found < min) {
        if (min == 1)
            add_error(st, collect, "contains", "no item matches the 'contains' schema");
        else
            add_error(st, collect, "minContains",
                      "%zu items match the 'contains' schema, at least %llu needed", found,
                      (unsigned long long)min);
        CHECK(false);
    }
    if (found > max) {
        add_error(st, collect, "maxContains",
                  "%zu items match the 'contains' schema, at most %llu allowed", found,
                  (unsigned long long)max);
        CHECK(false);
    }
    return ok;
}

/* uniqueItems by hashing: linear for distinct items; equal hashes are compared in full. */
static bool eval_unique(vstate *st, const cJSON *inst, size_t n, bool collect)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint64_t *h = malloc(n * sizeof *h);
    const cJSON **items = malloc(n * sizeof *items);
    size_t *table = malloc(cap * sizeof *table);
    if (!h || !items || !table) {
        free(h), free(items), free(table);
        return voom(st);
    }
    memset(table, 0xFF, cap * sizeof *table);
    size_t i = 0, dup_a = 0, dup_b = 0;
    bool dup = false;
    for (const cJSON *it = inst->child; it && !dup; it = it->next, i++) {
        h[i] = json_hash(it, &st->work);
        items[i] = it;
        size_t j = h[i] & (cap - 1);
        for (; table[j] != SIZE_MAX && !dup; j = (j + 1) & (cap - 1)) {
            size_t k = table[j];
            if (h[k] == h[i] && json_equal(items[k], it, &st->work)) {
                dup = true;
                dup_a = k;
                dup_b = i;
            }
        }
        table[j] = i;
        if (!charge(st, 1))
            break;
    }
    free(h), free(items), free(table);
    if (st->fatal != KEEL_OK)
        return false;
    if (dup)
        add_error(st, collect, "uniqueItems", "items %zu and %zu are equal", dup_a, dup_b);
    return !dup;
}

static bool eval_array(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    bool ok = true;
    size_t n = children(inst);
    if (!charge(st, n / 16))
        return false;
    if (s->prefix.n || s->rest)
        CHECK(eval_items(st, s, inst, a, collect));
    if (n < s->min_items) {
        add_error(st, collect, "minItems", "array has %zu items, at least %llu needed", n,
                  (unsigned long long)s->min_items);
        CHECK(false);
    }
    if (n > s->max_items) {
        add_error(st, collect, "maxItems", "array has %zu items, at most %llu allowed", n,
                  (unsigned long long)s->max_items);
        CHECK(false);
    }
    if (s->unique_items && n > 1)
        CHECK(eval_unique(st, inst, n, collect));
    if (s->contains)
        CHECK(eval_contains(st, s, inst, a, collect));
    return ok;
}

/* ---- objects ------------------------------------------------------------------------------ */

static const sprop *find_prop(const sprop *list, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, list[mid].name);
        if (c == 0)
            return &list[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* properties, patternProperties and additionalProperties for one member. */
static bool eval_member(vstate *st, const snode *s, const cJSON *m, size_t i, ann *a, bool collect)
{
    bool ok = true, known = false;
    const sprop *p = find_prop(s->props, s->nprops, m->string);
    if (p) {
        known = true;
        ann_set(a, i);
        CHECK(eval(st, p->schema, m, NULL, collect));
    }
    for (size_t k = 0; k < s->npattern_props; k++) {
        const spattern *pp = &s->pattern_props[k];
        int hit = search(st, pp->re, pp->source, s, "patternProperties", m->string);
        if (hit < 0)
            return false;
        if (hit) {
            known = true;
            ann_set(a, i);
            CHECK(eval(st, pp->schema, m, NULL, collect));
        }
    }
    if (!known && s->additional_props) {
        ann_set(a, i);
        if (s->additional_props->boolean == 0) {
            add_error(st, collect, "additionalProperties", "property '%.200s' is not allowed",
                      m->string);
            CHECK(false);
        } else {
            CHECK(eval(st, s->additional_props, m, NULL, collect));
        }
    }
    if (s->property_names) {
        cJSON name;
        memset(&name, 0, sizeof name);
        name.type = cJSON_String;
        name.valuestring = m->string;
        bool good = eval(st, s->property_names, &name, NULL, false);
        if (st->fatal != KEEL_OK)
            return false;
        if (!good)
            add_error(st, collect, "propertyNames",
                      "property name '%.200s' does not match the 'propertyNames' schema",
                      m->string);
        CHECK(good);
    }
    return ok;
}

static bool eval_members(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    bool ok = true;
    size_t i = 0;
    for (const cJSON *m = inst->child; m; m = m->next, i++) {
        size_t len = push_key(st, m->string);
        bool good = charge(st, 1) && eval_member(st, s, m, i, a, collect);
        pop(st, len);
        CHECK(good);
    }
    return ok;
}

static bool eval_dependencies(vstate *st, const snode *s, const cJSON *inst, size_t n, ann *a,
                              bool collect)
{
    bool ok = true;
    for (size_t k = 0; k < s->ndep_required; k++) {
        const sdeps *d = &s->dep_required[k];
        if (!charge(st, n))
            return false;
        if (!cJSON_GetObjectItemCaseSensitive(inst, d->name))
            continue;
        for (size_t r = 0; r < d->nnames; r++) {
            if (!charge(st, n))
                return false;
            if (cJSON_GetObjectItemCaseSensitive(inst, d->names[r]))
                continue;
            add_error(st, collect, d->keyword,
                      "property '%.200s' is required when '%.200s' is present", d->names[r],
                      d->name);
            CHECK(false);
        }
    }
    for (size_t k = 0; k < s->ndep_schemas; k++) {
        const sprop *d = &s->dep_schemas[k];
        if (!charge(st, n))
            return false;
        if (cJSON_GetObjectItemCaseSensitive(inst, d->name))
            CHECK(eval(st, d->schema, inst, a, collect));
    }
    return ok;
}

static bool eval_object(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    bool ok = true;
    size_t n = children(inst);
    for (size_t r = 0; r < s->nrequired; r++) {
        if (!charge(st, 1 + n / 8))
            return false;
        if (cJSON_GetObjectItemCaseSensitive(inst, s->required[r]))
            continue;
        add_error(st, collect, "required", "missing required property '%.200s'", s->required[r]);
        CHECK(false);
    }
    if (s->nprops || s->npattern_props || s->additional_props || s->property_names)
        CHECK(eval_members(st, s, inst, a, collect));
    if (s->ndep_required || s->ndep_schemas)
        CHECK(eval_dependencies(st, s, inst, n, a, collect));
    if (n < s->min_properties) {
        add_error(st, collect, "minProperties", "object has %zu properties, at least %llu needed",
                  n, (unsigned long long)s->min_properties);
        CHECK(false);
    }
    if (n > s->max_properties) {
        add_error(st, collect, "maxProperties", "object has %zu properties, at most %llu allowed",
                  n, (unsigned long long)s->max_properties);
        CHECK(false);
    }
    return ok;
}

/* ---- in-place applicators ----------------------------------------------------------------- */

/*
 * Apply sub to inst without collecting errors (anyOf, oneOf, if): its annotations go into
 * *tmp (made here when a, the caller's, is not NULL) only if it passes.
 */
static int try_sub(vstate *st, const snode *sub, const cJSON *inst, const ann *a, ann *tmp)
{
    if (a && !ann_init(tmp, a->n))
        return voom(st), -1;
    bool m = eval(st, sub, inst, a ? tmp : NULL, false);
    if (st->fatal != KEEL_OK) {
        if (a)
            ann_free(tmp);
        return -1;
    }
    return m;
}

static bool eval_any_of(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    bool any = false;
    for (size_t i = 0; i < s->any_of.n; i++) {
        ann tmp;
        int m = try_sub(st, s->any_of.v[i], inst, a, &tmp);
        if (m < 0)
            return false;
        if (a) { /* every passing branch adds its annotations, so all are tried */
            if (m)
                ann_merge(a, &tmp);
            ann_free(&tmp);
        }
        any = any || m;
        if (any && !a)
            break;
    }
    if (!any)
        add_error(st, collect, "anyOf", "value matches none of the 'anyOf' schemas");
    return any;
}

static bool eval_one_of(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    size_t first = SIZE_MAX, second = SIZE_MAX;
    ann keep;
    if (a && !ann_init(&keep, a->n))
        return voom(st);
    for (size_t i = 0; i < s->one_of.n && second == SIZE_MAX; i++) {
        ann tmp;
        int m = try_sub(st, s->one_of.v[i], inst, a, &tmp);
        if (m < 0)
            break;
        if (m && first == SIZE_MAX)
            first = i;
        else if (m)
            second = i;
        if (a) {
            if (m)
                ann_merge(&keep, &tmp);
            ann_free(&tmp);
        }
    }
    bool ok = st->fatal == KEEL_OK && first != SIZE_MAX && second == SIZE_MAX;
    if (ok && a)
        ann_merge(a, &keep);
    if (a)
        ann_free(&keep);
    if (st->fatal != KEEL_OK)
        return false;
    if (first == SIZE_MAX)
        add_error(st, collect, "oneOf", "value matches none of the 'oneOf' schemas");
    else if (second != SIZE_MAX)
        add_error(st, collect, "oneOf",
                  "value matches 'oneOf' schemas %zu and %zu; exactly one must match", first,
                  second);
    return ok;
}

static bool eval_if(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    ann tmp;
    int cond = try_sub(st, s->if_schema, inst, a, &tmp);
    if (cond < 0)
        return false;
    if (a) {
        if (cond)
            ann_merge(a, &tmp);
        ann_free(&tmp);
    }
    const snode *branch = cond ? s->then_schema : s->else_schema;
    return !branch || eval(st, branch, inst, a, collect);
}

static bool eval_logic(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    bool ok = true;
    for (size_t i = 0; i < s->all_of.n; i++)
        CHECK(eval(st, s->all_of.v[i], inst, a, collect));
    if (s->any_of.n)
        CHECK(eval_any_of(st, s, inst, a, collect));
    if (s->one_of.n)
        CHECK(eval_one_of(st, s, inst, a, collect));
    if (s->not_schema) {
        bool m = eval(st, s->not_schema, inst, NULL, false);
        if (st->fatal != KEEL_OK)
            return false;
        if (m)
            add_error(st, collect, "not", "value must not match the 'not' schema");
        CHECK(!m);
    }
    if (s->if_schema)
        CHECK(eval_if(st, s, inst, a, collect));
    return ok;
}

/* unevaluatedItems / unevaluatedProperties: sub applies to the children no keyword evaluated. */
static bool eval_unevaluated(vstate *st, const snode *sub, const cJSON *inst, ann *a, bool collect)
{
    bool ok = true, object = cJSON_IsObject(inst);
    const char *kw = object ? "unevaluatedProperties" : "unevaluatedItems";
    size_t i = 0;
    for (const cJSON *c = inst->child; c; c = c->next, i++) {
        if (ann_has(a, i))
            continue;
        size_t len = object ? push_key(st, c->string) : push_index(st, i);
        bool good;
        if (sub->boolean == 0) {
            if (object)
                add_error(st, collect, kw,
                          "property '%.200s' is not allowed (no keyword evaluated it)", c->string);
            else
                add_error(st, collect, kw, "item %zu is not allowed (no keyword evaluated it)", i);
            good = false;
        } else {
            good = eval(st, sub, c, NULL, collect);
        }
        pop(st, len);
        ann_set(a, i);
        CHECK(good);
    }
    return ok;
}

/* $dynamicRef: the outermost resource in the dynamic scope with a matching $dynamicAnchor. */
static const snode *dynamic_target(const vstate *st, const snode *s)
{
    if (!s->dyn_anchor)
        return s->dynref;
    for (size_t i = 0; i < st->nscope; i++) {
        const resource *r = st->scope[i];
        for (size_t k = 0; k < r->nanchors; k++)
            if (r->anchors[k].dynamic && strcmp(r->anchors[k].name, s->dyn_anchor) == 0)
                return r->anchors[k].node;
    }
    return s->dynref;
}

static bool eval_keywords(vstate *st, const snode *s, const cJSON *inst, ann *a, bool collect)
{
    bool ok = true;
    if (s->ref)
        CHECK(eval(st, s->ref, inst, a, collect));
    if (s->dynref)
        CHECK(eval(st, dynamic_target(st, s), inst, a, collect));
    CHECK(eval_generic(st, s, inst, collect));
    if (cJSON_IsNumber(inst))
        CHECK(eval_number(st, s, inst, collect));
    else if (cJSON_IsString(inst))
        CHECK(eval_string(st, s, inst, collect));
    else if (cJSON_IsArray(inst))
        CHECK(eval_array(st, s, inst, a, collect));
    else if (cJSON_IsObject(inst))
        CHECK(eval_object(st, s, inst, a, collect));
    CHECK(eval_logic(st, s, inst, a, collect));
    /* last: they see what every other keyword evaluated */
    if (s->unevaluated_items && cJSON_IsArray(inst))
        CHECK(eval_unevaluated(st, s->unevaluated_items, inst, a, collect));
    if (s->unevaluated_props && cJSON_IsObject(inst))
        CHECK(eval_unevaluated(st, s->unevaluated_props, inst, a, collect));
    return ok;
}

/*
 * Apply s to inst. out, when not NULL, receives the children of inst that s evaluated (if s
 * passes). Errors are recorded only when collect is true.
 */
static bool eval(vstate *st, const snode *s, const cJSON *inst, ann *out, bool collect)
{
    if (st->fatal != KEEL_OK || !charge(st, 1))
        return false;
    if (s->boolean >= 0) {
        if (!s->boolean)
            add_error(st, collect, "false", "no value is allowed here");
        return s->boolean;
    }
    if (!enter(st, s, inst))
        return false;
    bool container = cJSON_IsArray(inst) || cJSON_IsObject(inst);
    bool track = container && (out || s->unevaluated_props || s->unevaluated_items);
    ann mine;
    bool ok;
    if (track && !ann_init(&mine, children(inst)))
        ok = voom(st);
    else
        ok = eval_keywords(st, s, inst, track ? &mine : NULL, collect);
    if (track) {
        if (ok && out)
            ann_merge(out, &mine);
        ann_free(&mine);
    }
    leave(st);
    return ok && st->fatal == KEEL_OK;
}

/* ---- the public validation API ------------------------------------------------------------ */

void keel_schema_result_dispose(keel_schema_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++) {
        free(r->errors[i].pointer);
        free(r->errors[i].keyword);
        free(r->errors[i].reason);
    }
    free(r->errors);
    memset(r, 0, sizeof *r);
}

/* Count the values of a tree and check it is JSON keel can read: nested at most
 * KEEL_JSON_MAX_DEPTH deep, finite numbers, no raw items. Returns NULL or what is wrong. */
static const char *survey(const cJSON *j, int depth, uint64_t *count)
{
    (*count)++;
    int t = j->type & 0xFF;
    if (t == cJSON_Number) {
        char buf[32];
        decnum d;
        return dec_parse(keel_json_number_text(j, buf), &d) ? NULL : "a number that is not finite";
    }
    if (t == cJSON_NULL || t == cJSON_True || t == cJSON_False)
        return NULL;
    if (t == cJSON_String)
        return j->valuestring ? NULL : "a string without text";
    if (t != cJSON_Array && t != cJSON_Object)
        return "a value that is not JSON";
    if (depth == KEEL_JSON_MAX_DEPTH)
        return "arrays and objects nested deeper than " XSTR(KEEL_JSON_MAX_DEPTH) " levels";
    for (const cJSON *c = j->child; c; c = c->next) {
        if (t == cJSON_Object && !c->string)
            return "a member without a name";
        const char *why = survey(c, depth + 1, count);
        if (why)
            return why;
    }
    return NULL;
}

int keel_schema_validate_tree(const keel_schema *schema, const cJSON *instance,
                              keel_schema_result *out, keel_error *err)
{
    if (!out)
        return keel_error_set(err, KEEL_EINVAL, "schema: no result to fill");
    memset(out, 0, sizeof *out);
    if (!schema || !instance)
        return keel_error_set(err, KEEL_EINVAL, "schema: no schema or no instance");
    uint64_t values = 0;
    const char *bad = survey(instance, 0, &values);
    if (bad)
        return keel_error_set(err, KEEL_EINVAL, "schema: the instance holds %s", bad);
    vstate *st = calloc(1, sizeof *st);
    if (!st)
        return keel_error_set(err, KEEL_ENOMEM, "schema: out of memory");
    st->schema = schema;
    st->res = out;
    st->err = err;
    st->budget = KEEL_SCHEMA_MAX_WORK + (uint64_t)KEEL_SCHEMA_WORK_PER_VALUE * values;
    bool ok = eval(st, schema->root, instance, NULL, true);
    if (st->fatal == KEEL_OK && st->ptr.oom)
        voom(st);
    int rc = st->fatal;
    keel_regex_scratch_free(st->scratch);
    free(st->ptr.p);
    free(st);
    if (rc != KEEL_OK) {
        keel_schema_result_dispose(out);
        return rc;
    }
    out->valid = ok;
    return KEEL_OK;
}

int keel_schema_validate(const keel_schema *schema, const char *instance_json,
                         keel_schema_result *out, keel_error *err)
{
    if (!out)
        return keel_error_set(err, KEEL_EINVAL, "schema: no result to fill");
    memset(out, 0, sizeof *out);
    if (!schema || !instance_json)
        return keel_error_set(err, KEEL_EINVAL, "schema: no schema or no instance text");
    cJSON *inst = NULL;
    int rc = keel_json_parse(instance_json, strlen(instance_json),
                             KEEL_JSON_LAST_WINS | KEEL_JSON_KEEP_NUL, "the instance", &inst, err);
    if (rc != KEEL_OK)
        return rc;
    rc = keel_schema_validate_tree(schema, inst, out, err);
    cJSON_Delete(inst);
    return rc;
}
