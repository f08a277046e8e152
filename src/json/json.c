/*
 * json - the strict JSON reader and the exact printer (include/keel/json.h).
 *
 * Written here rather than taken from cJSON's parser because cJSON accepts what keel must refuse
 * (raw control characters, invalid UTF-8, "\u0000" that silently ends the string, repeated
 * names, any nesting depth) and forgets a number's text. The trees are ordinary cJSON trees, so
 * the rest of keel reads them as before; a number's text rides in its valuestring, which cJSON
 * frees and duplicates with the item.
 */
#include "keel/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "util/strbuf.h"

/* ---- reading ---- */

/* Where the reader is inside the tree, for error messages: the member name or the array index
 * of each level being read. Names are raw spans of the input (escapes not decoded). */
typedef struct frame {
    const char *name; /* NULL for an array level */
    size_t name_len;
    size_t index;
} frame;

typedef struct reader {
    const char *start, *p, *end;
    unsigned flags;
    const char *what;
    keel_error *err;
    int depth;
    bool failed;
    frame path[KEEL_JSON_MAX_DEPTH + 1];
} reader;

/* Append the JSON Pointer of the level being read to buf (RFC 6901: ~ and / escaped). */
static void pointer_of(const reader *r, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < r->depth && used + 8 < n; i++) {
        const frame *f = &r->path[i];
        if (f->name == NULL) {
            used += (size_t)snprintf(buf + used, n - used, "/%zu", f->index);
            continue;
        }
        buf[used++] = '/';
        for (size_t k = 0; k < f->name_len && used + 8 < n; k++) {
            char c = f->name[k];
            if (c == '~' || c == '/') {
                buf[used++] = '~';
                c = c == '~' ? '0' : '1';
            }
            buf[used++] = c;
        }
        buf[used] = '\0';
    }
    if (used + 8 >= n)
        snprintf(buf + (n > 4 ? n - 4 : 0), n > 4 ? 4 : n, "...");
}

static const char *what_of(const reader *r)
{
    return r->what ? r->what : "the JSON text";
}

/* Fail the read at byte `at` (an offset into the text), naming the place in the tree. */
__attribute__((format(printf, 3, 4))) static void fail_at(reader *r, const char *at,
                                                          const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = true;
    char why[256], where[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    pointer_of(r, where, sizeof where);
    keel_error_set(r->err, KEEL_EINVAL, "%s is not valid JSON: at byte %zu (%s): %s", what_of(r),
                   (size_t)(at - r->start), where[0] ? where : "the top level", why);
}

static void fail_oom(reader *r)
{
    if (!r->failed)
        keel_error_set(r->err, KEEL_ENOMEM, "out of memory reading %s", what_of(r));
    r->failed = true;
}

/* Eight bytes at p as one word, in memory order (p + 8 <= end checked by the caller). */
static uint64_t word_at(const char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

#define BYTES(b) (0x0101010101010101ull * (b))

static void skip_space_run(reader *r)
{
    for (;;) { /* indented texts have long runs of spaces: pass them eight at a time */
        while (r->end - r->p >= 8 && word_at(r->p) == BYTES(' '))
            r->p += 8;
        if (r->p >= r->end || (*r->p != ' ' && *r->p != '\t' && *r->p != '\n' && *r->p != '\r'))
            return;
        r->p++;
    }
}

/* Compact texts have no space at all: most calls find a token at once. */
static inline void skip_space(reader *r)
{
    if (r->p < r->end && (unsigned char)*r->p > ' ')
        return;
    skip_space_run(r);
}

/* The bytes of w that a string does not hold as they are (below 0x20, from 0x80, '"' and
 * '\\'), as the top bit of each such byte; 0 when all eight are plain printable ASCII. The
 * subtractions may also mark a byte after a marked one (a borrow), never one before it: the
 * lowest mark is always a real one. */
static uint64_t special_bytes(uint64_t w)
{
    uint64_t q = w ^ BYTES('"'), b = w ^ BYTES('\\');
    uint64_t special = ((w - BYTES(0x20)) & ~w) | ((q - BYTES(1)) & ~q) | ((b - BYTES(1)) & ~b);
    return (special | w) & BYTES(0x80);
}

/* How many plain bytes the word at p starts with (0..8): on a little-endian machine the lowest
 * mark is the first special byte in memory order; elsewhere only a whole plain word counts. */
static size_t plain_prefix(const char *p)
{
    uint64_t m = special_bytes(word_at(p));
    if (m == 0)
        return 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(m) >> 3;
#else
    return 0;
#endif
}

#if defined(__SSE2__)
/* How many plain bytes the 16 at p start with (0..16), as plain_prefix does for eight: a signed
 * compare below 0x20 also marks every byte from 0x80. */
static unsigned plain_prefix16(const char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i special = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    unsigned m = (unsigned)_mm_movemask_epi8(special);
    return m ? (unsigned)__builtin_ctz(m) : 16;
}
#endif

/* How many plain bytes start at p, looking at sixteen or eight at once (0 when fewer than eight
 * remain: the caller goes byte by byte). */
static size_t plain_run(const char *p, const char *end)
{
#if defined(__SSE2__)
    if (end - p >= 16)
        return plain_prefix16(p);
#endif
    return end - p >= 8 ? plain_prefix(p) : 0;
}

/* A short description of the byte at p, for "expected ... but found ...". */
static void describe_byte(const reader *r, const char *p, char buf[32])
{
    if (p >= r->end)
        snprintf(buf, 32, "the end of the text");
    else if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
        snprintf(buf, 32, "'%c'", *p);
    else
        snprintf(buf, 32, "byte 0x%02x", (unsigned char)*p);
}

/* Four hex digits at p (p + 4 <= end checked by the caller), or -1. */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = keel_hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The length of the valid UTF-8 sequence at p (1..4), or 0 when it is not one: overlong forms,
 * encoded surrogates and code points past U+10FFFF are not. */
static size_t utf8_length(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A \u escape at p (pointing at the backslash): the code point, with *len the escape's length
 * (6, or 12 for a surrogate pair); -1 after failing the read. */
static long read_u_escape(reader *r, const char *p, size_t *len)
{
    if (r->end - p < 6 || hex4(p + 2) < 0) {
        fail_at(r, p, "\\u must be followed by four hex digits");
        return -1;
    }
    long cp = hex4(p + 2);
    *len = 6;
    if (cp == 0 && (r->flags & KEEL_JSON_KEEP_NUL))
        return 0;
    if (cp == 0) {
        fail_at(r, p,
                "\\u0000 inside a string (keel refuses NUL characters: a C string would "
                "end there)");
        return -1;
    }
    if (cp >= 0xdc00 && cp <= 0xdfff) {
        fail_at(r, p, "\\u%04lx is a lone low surrogate, not a character", cp);
        return -1;
    }
    if (cp < 0xd800 || cp > 0xdbff)
        return cp;
    long lo = r->end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
    if (lo < 0xdc00 || lo > 0xdfff) {
        fail_at(r, p, "\\u%04lx is a high surrogate without its low surrogate", cp);
        return -1;
    }
    *len = 12;
    return 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
}

/* Check the string whose opening quote is at r->p (r->p stays there; *close is set to its
 * closing quote). Returns the decoded length, or -1 after failing the read. */
static long scan_string(reader *r, bool *has_escapes, const char **close)
{
    const char *p = r->p + 1;
    long out = 0;
    *has_escapes = false;
    while (p < r->end && *p != '"') {
        size_t k = plain_run(p, r->end); /* the common case, plain ASCII: a run at a time */
        if (k > 0) {
            out += (long)k;
            p += k;
            continue;
        }
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            out++;
            p++;
            continue;
        }
        if (c == '\\') {
            *has_escapes = true;
            if (p + 1 >= r->end) {
                fail_at(r, p, "the text ends inside an escape");
                return -1;
            }
            if (p[1] == 'u') {
                size_t len;
                long cp = read_u_escape(r, p, &len);
                if (cp < 0)
                    return -1;
                out += cp == 0 ? 2 : cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
                p += len;
                continue;
            }
            if (!strchr("\"\\/bfnrt", p[1]) || p[1] == '\0') {
                char b[32];
                describe_byte(r, p + 1, b);
                fail_at(r, p, "\\ followed by %s is not a JSON escape", b);
                return -1;
            }
            out++;
            p += 2;
            continue;
        }
        if (c < 0x20) {
            if (c == 0)
                fail_at(r, p, "a NUL character (0x00) inside a string");
            else
                fail_at(r, p,
                        "a raw control character (0x%02x) inside a string (JSON needs it "
                        "escaped)",
                        c);
            return -1;
        }
        size_t n = utf8_length((const unsigned char *)p, (const unsigned char *)r->end);
        if (n == 0) {
            fail_at(r, p, "invalid UTF-8 (byte 0x%02x) inside a string", c);
            return -1;
        }
        out += (long)n;
        p += n;
    }
    if (p >= r->end) {
        fail_at(r, r->p, "a string that is never closed");
        return -1;
    }
    *close = p;
    return out;
}

/* Decode the checked string at r->p (opening quote) into a new buffer; r->p moves past it. */
static char *read_string(reader *r)
{
    bool escapes;
    const char *open = r->p, *close;
    long n = scan_string(r, &escapes, &close);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL) {
        fail_oom(r);
        return NULL;
    }
    const char *p = open + 1;
    if (!escapes) {
        memcpy(s, p, (size_t)n);
        r->p = p + n + 1;
        s[n] = '\0';
        return s;
    }
    size_t o = 0;
    while (*p != '"') {
        if (*p != '\\') {
            s[o++] = *p++;
            continue;
        }
        if (p[1] == 'u') {
            size_t len;
            long cp = read_u_escape(r, p, &len); /* checked already: cannot fail */
            if (cp == 0) {                       /* KEEL_JSON_KEEP_NUL */
                memcpy(s + o, KEEL_JSON_NUL, 2);
                o += 2;
            } else {
                o += put_utf8(s + o, (uint32_t)cp);
            }
            p += len;
            continue;
        }
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        s[o++] = to[strchr(from, p[1]) - from];
        p += 2;
    }
    s[o] = '\0';
    r->p = p + 1;
    return s;
}

/* Whether text[0..n) is a JSON number, exactly (RFC 8259's grammar). */
static size_t number_length(const char *p, const char *end)
{
    const char *s = p;
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return 0;
    if (*p == '0')
        p++;
    else
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    if (p < end && *p == '.') {
        if (++p >= end || *p < '0' || *p > '9')
            return 0;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return 0;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return (size_t)(p - s);
}

/* A number item for text[0..n), keeping the text; NULL when out of memory. */
static cJSON *number_item(const char *text, size_t n, double *value)
{
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, text, n);
    copy[n] = '\0';
    *value = strtod(copy, NULL);
    cJSON *item = cJSON_CreateNumber(*value);
    if (item == NULL) {
        free(copy);
        return NULL;
    }
    item->valuestring = copy;
    return item;
}

/* The length of the number at r->p, or 0 after naming what is wrong with it (parse and check
 * refuse numbers in the same words). */
static size_t number_at(reader *r)
{
    size_t n = number_length(r->p, r->end);
    if (n == 0) {
        char b[32];
        describe_byte(r, r->p, b);
        fail_at(r, r->p, "a malformed number (starting with %s)", b);
        return 0;
    }
    /* A leading zero followed by digits ("012") reads as "0" then junk: name it plainly. */
    const char *digits = r->p + (*r->p == '-');
    if (digits[0] == '0' && digits + 1 < r->end && digits[1] >= '0' && digits[1] <= '9') {
        fail_at(r, r->p, "a number with a leading zero");
        return 0;
    }
    return n;
}

static cJSON *read_number(reader *r)
{
    size_t n = number_at(r);
    if (n == 0)
        return NULL;
    double v;
    cJSON *item = number_item(r->p, n, &v);
    if (item == NULL) {
        fail_oom(r);
        return NULL;
    }
    if (!isfinite(v)) {
        fail_at(r, r->p, "the number %.*s is out of range (beyond +-1.8e308)", n > 40 ? 40 : (int)n,
                r->p);
        cJSON_Delete(item);
        return NULL;
    }
    r->p += n;
    return item;
}

static cJSON *read_literal(reader *r)
{
    static const struct {
        const char *word;
        int type;
    } words[] = {{"true", cJSON_True}, {"false", cJSON_False}, {"null", cJSON_NULL}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].word);
        if ((size_t)(r->end - r->p) >= n && memcmp(r->p, words[i].word, n) == 0) {
            cJSON *item = words[i].type == cJSON_True    ? cJSON_CreateTrue()
                          : words[i].type == cJSON_False ? cJSON_CreateFalse()
                                                         : cJSON_CreateNull();
            if (item == NULL)
                fail_oom(r);
            r->p += n;
            return item;
        }
    }
    char b[32];
    describe_byte(r, r->p, b);
    fail_at(r, r->p, "expected a value but found %s", b);
    return NULL;
}

/* Append item to container's children (cJSON's invariant: the first child's prev is the last). */
static void append(cJSON *container, cJSON *item)
{
    cJSON *first = container->child;
    if (first == NULL) {
        container->child = item;
        item->prev = item;
        return;
    }
    cJSON *last = first->prev;
    last->next = item;
    item->prev = last;
    first->prev = item;
}

static void detach(cJSON *container, cJSON *item)
{
    cJSON *first = container->child;
    if (item == first) {
        container->child = item->next;
        if (item->next)
            item->next->prev = item->prev;
    } else {
        item->prev->next = item->next;
        if (item->next)
            item->next->prev = item->prev;
        else
            first->prev = item->prev;
    }
    item->next = item->prev = NULL;
}

/* ---- member names seen in one object: linear for small objects, hashed past that ---- */

#define NAMES_LINEAR 16

typedef struct names {
    cJSON **slot; /* open addressing over member items, by name; NULL while linear */
    size_t cap, count;
} names;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static bool names_grow(names *t, cJSON *object)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    cJSON **slot = calloc(cap, sizeof *slot);
    if (slot == NULL)
        return false;
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
    for (cJSON *m = object->child; m; m = m->next) {
        size_t i = name_hash(m->string) & (cap - 1);
        while (slot[i])
            i = (i + 1) & (cap - 1);
        slot[i] = m;
    }
    return true;
}

/* The member of object named `name` read so far, or NULL. */
static cJSON *names_find(names *t, cJSON *object, const char *name)
{
    if (t->slot == NULL) {
        for (cJSON *m = object->child; m; m = m->next)
            if (strcmp(m->string, name) == 0)
                return m;
        return NULL;
    }
    for (size_t i = name_hash(name) & (t->cap - 1); t->slot[i]; i = (i + 1) & (t->cap - 1))
        if (strcmp(t->slot[i]->string, name) == 0)
            return t->slot[i];
    return NULL;
}

/* Record that object's new last member was added (and `replaced` removed, or NULL). */
static bool names_add(names *t, cJSON *object, cJSON *member, cJSON *replaced)
{
    if (replaced) {
        if (t->slot == NULL)
            return true;
        size_t i = name_hash(replaced->string) & (t->cap - 1);
        while (t->slot[i] != replaced)
            i = (i + 1) & (t->cap - 1);
        t->slot[i] = member;
        return true;
    }
    t->count++;
    if (t->slot == NULL && t->count <= NAMES_LINEAR)
        return true;
    if (t->slot == NULL || t->count * 2 > t->cap)
        return names_grow(t, object);
    size_t i = name_hash(member->string) & (t->cap - 1);
    while (t->slot[i])
        i = (i + 1) & (t->cap - 1);
    t->slot[i] = member;
    return true;
}

static cJSON *read_value(reader *r);

static bool enter(reader *r, const char *name, size_t name_len)
{
    if (r->depth >= KEEL_JSON_MAX_DEPTH) {
        if (!r->failed) {
            char where[200];
            pointer_of(r, where, sizeof where);
            keel_error_set(r->err, KEEL_EINVAL,
                           "%s is nested deeper than %d levels (at byte %zu, %s): keel reads "
                           "JSON nested at most %d arrays and objects deep",
                           what_of(r), KEEL_JSON_MAX_DEPTH, (size_t)(r->p - r->start),
                           where[0] ? where : "the top level", KEEL_JSON_MAX_DEPTH);
        }
        r->failed = true;
        return false;
    }
    r->path[r->depth].name = name;
    r->path[r->depth].name_len = name_len;
    r->path[r->depth].index = 0;
    r->depth++;
    return true;
}

/* After a member or element: ',' (true, more follow) or the closing bracket (false). */
static bool next_or_close(reader *r, char close, bool *more)
{
    skip_space(r);
    if (r->p < r->end && *r->p == ',') {
        r->p++;
        *more = true;
        return true;
    }
    if (r->p < r->end && *r->p == close) {
        r->p++;
        *more = false;
        return true;
    }
    char b[32];
    describe_byte(r, r->p, b);
    fail_at(r, r->p, "expected ',' or '%c' but found %s", close, b);
    return false;
}

static cJSON *read_array(reader *r)
{
    cJSON *array = cJSON_CreateArray();
    if (array == NULL) {
        fail_oom(r);
        return NULL;
    }
    r->p++;
    if (!enter(r, NULL, 0)) {
        cJSON_Delete(array);
        return NULL;
    }
    skip_space(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        r->depth--;
        return array;
    }
    for (bool more = true; more;) {
        cJSON *item = read_value(r);
        if (item == NULL)
            break;
        append(array, item);
        r->path[r->depth - 1].index++;
        if (!next_or_close(r, ']', &more))
            break;
    }
    if (r->failed) {
        cJSON_Delete(array);
        return NULL;
    }
    r->depth--;
    return array;
}

/* After whitespace, the opening quote of a member name at r->p; false after failing. */
static bool at_member_name(reader *r)
{
    skip_space(r);
    if (r->p < r->end && *r->p == '"')
        return true;
    char b[32];
    describe_byte(r, r->p, b);
    fail_at(r, r->p, "expected a member name in double quotes but found %s", b);
    return false;
}

/* After the member name read from name_at (its opening quote) to r->p: name the level after it
 * and read the ':'; false after failing. */
static bool member_colon(reader *r, const char *name_at)
{
    frame *f = &r->path[r->depth - 1];
    f->name = name_at + 1;
    f->name_len = (size_t)(r->p - name_at - 2);
    skip_space(r);
    if (r->p < r->end && *r->p == ':') {
        r->p++;
        return true;
    }
    char b[32];
    describe_byte(r, r->p, b);
    fail_at(r, r->p, "expected ':' after the member name but found %s", b);
    return false;
}

/* One "name": value member of object; false when the read failed. */
static bool read_member(reader *r, cJSON *object, names *seen)
{
    if (!at_member_name(r))
        return false;
    const char *name_at = r->p;
    char *name = read_string(r);
    if (name == NULL)
        return false;
    if (!member_colon(r, name_at)) {
        free(name);
        return false;
    }
    cJSON *earlier = names_find(seen, object, name);
    if (earlier && !(r->flags & KEEL_JSON_LAST_WINS)) {
        fail_at(r, name_at, "the member name \"%.60s\" appears twice in one object", name);
        free(name);
        return false;
    }
    cJSON *item = read_value(r);
    if (item == NULL) {
        free(name);
        return false;
    }
    item->string = name;
    append(object, item);
    /* The table still names `earlier`: swap it for the new member before earlier is freed. */
    bool noted = names_add(seen, object, item, earlier);
    if (earlier) {
        detach(object, earlier);
        cJSON_Delete(earlier);
    }
    if (!noted)
        fail_oom(r);
    return noted;
}

static cJSON *read_object(reader *r)
{
    cJSON *object = cJSON_CreateObject();
    if (object == NULL) {
        fail_oom(r);
        return NULL;
    }
    r->p++;
    if (!enter(r, "", 0)) {
        cJSON_Delete(object);
        return NULL;
    }
    skip_space(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        r->depth--;
        return object;
    }
    names seen = {0};
    for (bool more = true; more;)
        if (!read_member(r, object, &seen) || !next_or_close(r, '}', &more))
            break;
    free(seen.slot);
    if (r->failed) {
        cJSON_Delete(object);
        return NULL;
    }
    r->depth--;
    return object;
}

/* After whitespace, whether a value can start at r->p (else the read fails). */
static bool at_value(reader *r)
{
    skip_space(r);
    if (r->p < r->end)
        return true;
    fail_at(r, r->p, "the text ends where a value should be");
    return false;
}

static cJSON *read_value(reader *r)
{
    if (!at_value(r))
        return NULL;
    switch (*r->p) {
    case '{':
        return read_object(r);
    case '[':
        return read_array(r);
    case '"': {
        char *s = read_string(r);
        if (s == NULL)
            return NULL;
        cJSON *item = cJSON_CreateNull();
        if (item == NULL) {
            free(s);
            fail_oom(r);
            return NULL;
        }
        item->type = cJSON_String;
        item->valuestring = s;
        return item;
    }
    default:
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
            return read_number(r);
        return read_literal(r);
    }
}

int keel_json_parse(const char *text, size_t len, unsigned flags, const char *what, cJSON **out,
                    keel_error *err)
{
    *out = NULL;
    reader r = {
        .start = text, .p = text, .end = text + len, .flags = flags, .what = what, .err = err};
    if (text == NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s is missing (no JSON text)", what_of(&r));
    if (len > KEEL_JSON_MAX_TEXT)
        return keel_error_set(err, KEEL_EINVAL, "%s is %zu bytes, over keel's limit of %zu bytes",
                              what_of(&r), len, KEEL_JSON_MAX_TEXT);
    cJSON *root = read_value(&r);
    if (root != NULL) {
        skip_space(&r);
        if (r.p < r.end) {
            char b[32];
            describe_byte(&r, r.p, b);
            fail_at(&r, r.p, "%s after the JSON value", b);
        }
    }
    if (r.failed) {
        cJSON_Delete(root);
        return err ? err->code : KEEL_EINVAL;
    }
    *out = root;
    return KEEL_OK;
}

int keel_json_parse_str(const char *text, unsigned flags, const char *what, cJSON **out,
                        keel_error *err)
{
    return keel_json_parse(text, text ? strlen(text) : 0, flags, what, out, err);
}

cJSON *keel_json_from(const char *text)
{
    cJSON *root = NULL;
    if (text)
        keel_json_parse(text, strlen(text), KEEL_JSON_STRICT, NULL, &root, NULL);
    return root;
}

/* ---- checking without a tree (keel_json_check): the same reads, the same errors ---- */

/* A member name seen in the object being checked: its raw span, or its decoded text when it has
 * escapes (then owned). */
typedef struct seen_name {
    const char *s;
    size_t n;
    char *owned;
} seen_name;

typedef struct seen_names {
    seen_name few[NAMES_LINEAR];
    seen_name *slot; /* open addressing once past NAMES_LINEAR; NULL before */
    size_t cap, count;
} seen_names;

static uint64_t span_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static bool seen_equal(const seen_name *a, const char *s, size_t n)
{
    return a->n == n && memcmp(a->s, s, n) == 0;
}

static void seen_put(seen_name *slot, size_t cap, seen_name nm)
{
    size_t i = span_hash(nm.s, nm.n) & (cap - 1);
    while (slot[i].s)
        i = (i + 1) & (cap - 1);
    slot[i] = nm;
}

static bool seen_find(const seen_names *t, const char *s, size_t n)
{
    if (t->slot == NULL) {
        for (size_t i = 0; i < t->count; i++)
            if (seen_equal(&t->few[i], s, n))
                return true;
        return false;
    }
    for (size_t i = span_hash(s, n) & (t->cap - 1); t->slot[i].s; i = (i + 1) & (t->cap - 1))
        if (seen_equal(&t->slot[i], s, n))
            return true;
    return false;
}

/* Add a name not seen yet; false when out of memory (nm.owned is then the caller's). */
static bool seen_add(seen_names *t, seen_name nm)
{
    if (t->slot == NULL && t->count < NAMES_LINEAR) {
        t->few[t->count++] = nm;
        return true;
    }
    if (t->slot == NULL || (t->count + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        seen_name *slot = calloc(cap, sizeof *slot);
        if (slot == NULL)
            return false;
        if (t->slot == NULL)
            for (size_t i = 0; i < t->count; i++)
                seen_put(slot, cap, t->few[i]);
        else
            for (size_t i = 0; i < t->cap; i++)
                if (t->slot[i].s)
                    seen_put(slot, cap, t->slot[i]);
        free(t->slot);
        t->slot = slot;
        t->cap = cap;
    }
    seen_put(t->slot, t->cap, nm);
    t->count++;
    return true;
}

static void seen_free(seen_names *t)
{
    if (t->slot == NULL)
        for (size_t i = 0; i < t->count; i++)
            free(t->few[i].owned);
    else
        for (size_t i = 0; i < t->cap; i++)
            free(t->slot[i].owned);
    free(t->slot);
}

static bool check_value(reader *r);

/* A string at r->p, moving past it; the decoded text in *owned when it has escapes and owned is
 * not NULL. */
static bool check_string(reader *r, seen_name *nm)
{
    bool escapes;
    const char *close;
    long n = scan_string(r, &escapes, &close);
    if (n < 0)
        return false;
    if (nm != NULL) {
        nm->owned = NULL;
        if (escapes) {
            if ((nm->owned = read_string(r)) == NULL)
                return false;
            nm->s = nm->owned;
            nm->n = (size_t)n;
            return true;
        }
        nm->s = r->p + 1;
        nm->n = (size_t)n;
    }
    r->p = close + 1;
    return true;
}

/* The value of a plain integer text of at most 15 digits (exact: below 2^53), else false. */
static bool small_integer(const char *p, size_t n, double *value)
{
    bool minus = *p == '-';
    if (n - minus > 15 || n == (size_t)minus)
        return false;
    uint64_t v = 0;
    for (size_t i = minus; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *value = minus ? -(double)v : (double)v; /* "-0" is -0.0, as strtod reads it */
    return true;
}

/* The number at r->p and its value; r->p moves past it. */
static bool number_value(reader *r, double *value)
{
    size_t n = number_at(r);
    if (n == 0)
        return false;
    if (small_integer(r->p, n, value)) { /* most numbers: counts, attempts, sizes */
        r->p += n;
        return true;
    }
    char small[64], *copy = n < sizeof small ? small : malloc(n + 1);
    if (copy == NULL) {
        fail_oom(r);
        return false;
    }
    memcpy(copy, r->p, n);
    copy[n] = '\0';
    *value = strtod(copy, NULL);
    if (copy != small)
        free(copy);
    if (!isfinite(*value)) {
        fail_at(r, r->p, "the number %.*s is out of range (beyond +-1.8e308)", n > 40 ? 40 : (int)n,
                r->p);
        return false;
    }
    r->p += n;
    return true;
}

static bool check_number(reader *r)
{
    double v;
    return number_value(r, &v);
}

static bool check_literal(reader *r)
{
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(r->end - r->p) >= n && memcmp(r->p, words[i], n) == 0) {
            r->p += n;
            return true;
        }
    }
    char b[32];
    describe_byte(r, r->p, b);
    fail_at(r, r->p, "expected a value but found %s", b);
    return false;
}

static bool check_array(reader *r)
{
    r->p++;
    if (!enter(r, NULL, 0))
        return false;
    skip_space(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        r->depth--;
        return true;
    }
    for (bool more = true; more;) {
        if (!check_value(r))
            return false;
        r->path[r->depth - 1].index++;
        if (!next_or_close(r, ']', &more))
            return false;
    }
    r->depth--;
    return true;
}

/* One "name": value member; names are kept (unless KEEL_JSON_LAST_WINS) to refuse a repeat. */
static bool check_member(reader *r, seen_names *seen)
{
    if (!at_member_name(r))
        return false;
    const char *name_at = r->p;
    bool keep = !(r->flags & KEEL_JSON_LAST_WINS);
    seen_name nm = {0};
    if (!check_string(r, keep ? &nm : NULL))
        return false;
    if (!member_colon(r, name_at)) {
        free(nm.owned);
        return false;
    }
    if (keep && seen_find(seen, nm.s, nm.n)) {
        fail_at(r, name_at, "the member name \"%.*s\" appears twice in one object",
                nm.n > 60 ? 60 : (int)nm.n, nm.s);
        free(nm.owned);
        return false;
    }
    if (!check_value(r)) {
        free(nm.owned);
        return false;
    }
    if (keep && !seen_add(seen, nm)) {
        free(nm.owned);
        fail_oom(r);
        return false;
    }
    return true;
}

static bool check_object(reader *r)
{
    r->p++;
    if (!enter(r, "", 0))
        return false;
    skip_space(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        r->depth--;
        return true;
    }
    seen_names seen;
    seen.slot = NULL;
    seen.cap = seen.count = 0;
    bool ok = true;
    for (bool more = true; more && ok;)
        ok = check_member(r, &seen) && next_or_close(r, '}', &more);
    seen_free(&seen);
    if (ok)
        r->depth--;
    return ok;
}

static bool check_value(reader *r)
{
    if (!at_value(r))
        return false;
    switch (*r->p) {
    case '{':
        return check_object(r);
    case '[':
        return check_array(r);
    case '"':
        return check_string(r, NULL);
    default:
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
            return check_number(r);
        return check_literal(r);
    }
}

int keel_json_check(const char *text, size_t len, unsigned flags, const char *what, keel_error *err)
{
    reader r = {
        .start = text, .p = text, .end = text + len, .flags = flags, .what = what, .err = err};
    if (text == NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s is missing (no JSON text)", what_of(&r));
    if (len > KEEL_JSON_MAX_TEXT)
        return keel_error_set(err, KEEL_EINVAL, "%s is %zu bytes, over keel's limit of %zu bytes",
                              what_of(&r), len, KEEL_JSON_MAX_TEXT);
    if (check_value(&r)) {
        skip_space(&r);
        if (r.p < r.end) {
            char b[32];
            describe_byte(&r, r.p, b);
            fail_at(&r, r.p, "%s after the JSON value", b);
        }
    }
    return r.failed ? (err ? err->code : KEEL_EINVAL) : KEEL_OK;
}

/* ---- reading piece by piece (keel_json_reader): the same reads, the same errors ---- */

/* One object or array the reader's caller has entered; objects keep their member names. */
typedef struct pull_level {
    bool object;
    bool started;   /* a member or element was read: the next one needs ',' first */
    bool unchecked; /* the caller refuses repeated names (keel_json_enter_object_unchecked) */
    seen_names seen;
} pull_level;

struct keel_json_reader {
    reader r;
    int levels; /* entered by the caller (the outermost of r's levels) */
    pull_level level[KEEL_JSON_MAX_DEPTH];
    char *buf; /* the last string value, decoded */
    size_t buf_cap;
    char *name; /* the last member name, decoded */
    size_t name_cap;
    size_t name_len;
    const char *value_at; /* where the last member's value starts, after the ':' */
};

int keel_json_reader_open(const char *text, size_t len, const char *what, keel_json_reader **out,
                          keel_error *err)
{
    *out = NULL;
    reader probe = {.what = what};
    if (text == NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s is missing (no JSON text)", what_of(&probe));
    if (len > KEEL_JSON_MAX_TEXT)
        return keel_error_set(err, KEEL_EINVAL, "%s is %zu bytes, over keel's limit of %zu bytes",
                              what_of(&probe), len, KEEL_JSON_MAX_TEXT);
    keel_json_reader *jr = malloc(sizeof *jr);
    if (jr == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory reading %s", what_of(&probe));
    jr->r = (reader){.start = text, .p = text, .end = text + len, .what = what, .err = err};
    jr->levels = 0;
    jr->buf = jr->name = NULL;
    jr->buf_cap = jr->name_cap = jr->name_len = 0;
    jr->value_at = NULL;
    *out = jr;
    return KEEL_OK;
}

void keel_json_reader_close(keel_json_reader *jr)
{
    if (jr == NULL)
        return;
    for (int i = 0; i < jr->levels; i++)
        if (jr->level[i].object)
            seen_free(&jr->level[i].seen);
    free(jr->buf);
    free(jr->name);
    free(jr);
}

int keel_json_reader_code(const keel_json_reader *jr)
{
    if (!jr->r.failed)
        return KEEL_OK;
    return jr->r.err && jr->r.err->code != KEEL_OK ? jr->r.err->code : KEEL_EINVAL;
}

size_t keel_json_reader_offset(const keel_json_reader *jr)
{
    return (size_t)(jr->r.p - jr->r.start);
}

keel_json_kind keel_json_peek(keel_json_reader *jr)
{
    reader *r = &jr->r;
    if (r->failed || !at_value(r))
        return KEEL_JSON_BAD;
    switch (*r->p) {
    case '{':
        return KEEL_JSON_OBJECT;
    case '[':
        return KEEL_JSON_ARRAY;
    case '"':
        return KEEL_JSON_STRING;
    case 't':
        if ((size_t)(r->end - r->p) >= 4 && memcmp(r->p, "true", 4) == 0)
            return KEEL_JSON_TRUE;
        break;
    case 'f':
        if ((size_t)(r->end - r->p) >= 5 && memcmp(r->p, "false", 5) == 0)
            return KEEL_JSON_FALSE;
        break;
    case 'n':
        if ((size_t)(r->end - r->p) >= 4 && memcmp(r->p, "null", 4) == 0)
            return KEEL_JSON_NULL;
        break;
    default:
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
            return KEEL_JSON_NUMBER;
    }
    check_literal(r); /* names what is there instead */
    return KEEL_JSON_BAD;
}

bool keel_json_skip(keel_json_reader *jr)
{
    return !jr->r.failed && check_value(&jr->r);
}

/* Room for n + 1 bytes in *buf; false after failing the read. */
static bool room(reader *r, char **buf, size_t *cap, size_t n)
{
    if (n + 1 <= *cap)
        return true;
    size_t want = *cap ? *cap : 256;
    while (want < n + 1)
        want *= 2;
    char *grown = realloc(*buf, want);
    if (grown == NULL) {
        fail_oom(r);
        return false;
    }
    *buf = grown;
    *cap = want;
    return true;
}

/* Decode the checked string at r->p into *buf (grown to fit); r->p moves past it. */
static bool pull_string(reader *r, char **buf, size_t *cap, size_t *len)
{
    bool escapes;
    const char *close;
    long n = scan_string(r, &escapes, &close);
    if (n < 0 || !room(r, buf, cap, (size_t)n))
        return false;
    if (!escapes) {
        memcpy(*buf, r->p + 1, (size_t)n);
        (*buf)[n] = '\0';
        r->p = close + 1;
    } else {
        char *s = read_string(r);
        if (s == NULL)
            return false;
        memcpy(*buf, s, (size_t)n + 1);
        free(s);
    }
    *len = (size_t)n;
    return true;
}

bool keel_json_read_string(keel_json_reader *jr, const char **s, size_t *len)
{
    if (keel_json_peek(jr) != KEEL_JSON_STRING) {
        if (!jr->r.failed)
            fail_at(&jr->r, jr->r.p, "expected a string");
        return false;
    }
    if (!pull_string(&jr->r, &jr->buf, &jr->buf_cap, len))
        return false;
    *s = jr->buf;
    return true;
}

bool keel_json_read_number(keel_json_reader *jr, double *value, const char **text, size_t *len)
{
    reader *r = &jr->r;
    if (keel_json_peek(jr) != KEEL_JSON_NUMBER) {
        if (!r->failed)
            fail_at(r, r->p, "expected a number");
        return false;
    }
    const char *at = r->p;
    if (!number_value(r, value))
        return false;
    size_t n = (size_t)(r->p - at);
    *text = at;
    *len = n;
    return true;
}

/* Enter the object or array at r->p (an object whose repeated names the caller refuses itself
 * when unchecked). */
static bool pull_enter(keel_json_reader *jr, bool object, bool unchecked)
{
    reader *r = &jr->r;
    if (keel_json_peek(jr) != (object ? KEEL_JSON_OBJECT : KEEL_JSON_ARRAY)) {
        if (!r->failed)
            fail_at(r, r->p, "expected %s", object ? "an object" : "an array");
        return false;
    }
    if (jr->levels != r->depth) {
        fail_at(r, r->p, "the reader's caller left a level unread");
        return false;
    }
    r->p++;
    if (!enter(r, object ? "" : NULL, 0))
        return false;
    pull_level *l = &jr->level[jr->levels++];
    l->object = object;
    l->started = false;
    l->unchecked = unchecked;
    if (object) {
        l->seen.slot = NULL;
        l->seen.cap = l->seen.count = 0;
    }
    return true;
}

bool keel_json_enter_object(keel_json_reader *jr)
{
    return pull_enter(jr, true, false);
}

bool keel_json_enter_object_unchecked(keel_json_reader *jr)
{
    return pull_enter(jr, true, true);
}

bool keel_json_enter_array(keel_json_reader *jr)
{
    return pull_enter(jr, false, false);
}

/* Before the next member or element of the innermost level: ',' or the close (then the level is
 * left and *more is false). */
static bool pull_next(keel_json_reader *jr, char close, bool *more)
{
    reader *r = &jr->r;
    pull_level *l = &jr->level[jr->levels - 1];
    if (r->failed || jr->levels != r->depth)
        return false;
    if (l->started) {
        if (!next_or_close(r, close, more))
            return false;
    } else {
        skip_space(r);
        *more = !(r->p < r->end && *r->p == close);
        if (!*more)
            r->p++;
        l->started = true;
    }
    if (!*more) {
        if (l->object)
            seen_free(&l->seen);
        jr->levels--;
        r->depth--;
    }
    return true;
}

bool keel_json_next_element(keel_json_reader *jr, bool *more)
{
    if (jr->levels == 0 || jr->level[jr->levels - 1].object)
        return false;
    bool first = !jr->level[jr->levels - 1].started;
    if (!pull_next(jr, ']', more))
        return false;
    if (*more && !first)
        jr->r.path[jr->r.depth - 1].index++;
    return true;
}

/* The member name just read (decoded in jr->name, its text in the innermost frame) against the
 * earlier names of its object: refused when it came before, else recorded. */
static bool check_name(keel_json_reader *jr)
{
    reader *r = &jr->r;
    const frame *f = &r->path[r->depth - 1];
    seen_names *seen = &jr->level[jr->levels - 1].seen;
    size_t n = jr->name_len;
    bool escaped = f->name_len != n; /* every escape is longer than what it stands for */
    if (seen_find(seen, escaped ? jr->name : f->name, n))
        return keel_json_member_repeated(jr);
    seen_name nm = {.s = f->name, .n = n, .owned = NULL};
    if (escaped) {
        if ((nm.owned = malloc(n + 1)) == NULL) {
            fail_oom(r);
            return false;
        }
        memcpy(nm.owned, jr->name, n + 1);
        nm.s = nm.owned;
    }
    if (!seen_add(seen, nm)) {
        free(nm.owned);
        fail_oom(r);
        return false;
    }
    return true;
}

bool keel_json_next_member(keel_json_reader *jr, bool *more, const char **name, size_t *len,
                           const char **raw, size_t *raw_len)
{
    if (jr->levels == 0 || !jr->level[jr->levels - 1].object || !pull_next(jr, '}', more))
        return false;
    if (!*more)
        return true;
    reader *r = &jr->r;
    if (!at_member_name(r))
        return false;
    const char *name_at = r->p;
    if (!pull_string(r, &jr->name, &jr->name_cap, &jr->name_len))
        return false;
    if (!member_colon(r, name_at))
        return false;
    jr->value_at = r->p;
    if (!jr->level[jr->levels - 1].unchecked && !check_name(jr))
        return false;
    const frame *f = &r->path[r->depth - 1];
    *name = jr->name;
    *len = jr->name_len;
    *raw = f->name;
    *raw_len = f->name_len;
    return true;
}

/* Nothing but whitespace was read since the last member name: the caller is still at that
 * member, in that object. */
static bool at_named_member(const keel_json_reader *jr)
{
    const reader *r = &jr->r;
    if (r->failed || jr->value_at == NULL || jr->levels == 0 || jr->levels != r->depth ||
        r->p < jr->value_at)
        return false;
    for (const char *p = jr->value_at; p < r->p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    return true;
}

/* False after failing the read unless the caller is at the member named last. */
static bool need_named_member(keel_json_reader *jr)
{
    if (at_named_member(jr))
        return true;
    if (!jr->r.failed)
        fail_at(&jr->r, jr->r.p, "the reader's caller is not at the member it names");
    return false;
}

bool keel_json_member_unclaimed(keel_json_reader *jr)
{
    return need_named_member(jr) && check_name(jr);
}

bool keel_json_member_repeated(keel_json_reader *jr)
{
    if (need_named_member(jr)) {
        const frame *f = &jr->r.path[jr->r.depth - 1];
        fail_at(&jr->r, f->name - 1, "the member name \"%.60s\" appears twice in one object",
                jr->name); /* at its opening quote */
    }
    return false;
}

bool keel_json_reader_finish(keel_json_reader *jr)
{
    reader *r = &jr->r;
    if (r->failed)
        return false;
    if (jr->levels != 0) {
        fail_at(r, r->p, "the reader's caller left a level unread");
        return false;
    }
    skip_space(r);
    if (r->p < r->end) {
        char b[32];
        describe_byte(r, r->p, b);
        fail_at(r, r->p, "%s after the JSON value", b);
        return false;
    }
    return true;
}

/* ---- numbers ---- */

/* The shortest text that reads back as d: integers plainly, others in as few digits as work. */
static void format_double(double d, char buf[32])
{
    if (!isfinite(d)) {
        strcpy(buf, "null");
        return;
    }
    if (d == trunc(d) && fabs(d) < 1e17) {
        snprintf(buf, 32, "%.0f", d);
        return;
    }
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, 32, "%.*g", digits, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

const char *keel_json_number_text(const cJSON *item, char buf[32])
{
    double d = item->valuedouble;
    /* The kept text counts only while it still denotes the value: code that changed the number
     * with cJSON_SetNumberValue gets its new value printed. */
    if (item->valuestring != NULL && strtod(item->valuestring, NULL) == d)
        return item->valuestring;
    format_double(d, buf);
    return buf;
}

cJSON *keel_json_number_from_text(const char *text)
{
    if (text == NULL)
        return NULL;
    size_t len = strlen(text);
    if (len == 0 || number_length(text, text + len) != len)
        return NULL;
    double v;
    cJSON *item = number_item(text, len, &v);
    if (item && !isfinite(v)) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

/* ---- printing ---- */

/* keel never installs cJSON hooks, so cJSON_free is free(): the buffer can be what is returned. */
typedef keel_strbuf out;

static void put(out *o, const char *s, size_t n)
{
    keel_strbuf_put(o, s, n);
}

static void puts_(out *o, const char *s)
{
    keel_strbuf_puts(o, s);
}

static void put_string(out *o, const char *s)
{
    put(o, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == 0xc0 && (unsigned char)s[1] == 0x80) { /* KEEL_JSON_KEEP_NUL's U+0000 */
            put(o, run, (size_t)(s - run));
            puts_(o, "\\u0000");
            run = ++s + 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(o, run, (size_t)(s - run));
        run = s + 1;
        char esc[8];
        switch (c) {
        case '"':
            puts_(o, "\\\"");
            break;
        case '\\':
            puts_(o, "\\\\");
            break;
        case '\b':
            puts_(o, "\\b");
            break;
        case '\f':
            puts_(o, "\\f");
            break;
        case '\n':
            puts_(o, "\\n");
            break;
        case '\r':
            puts_(o, "\\r");
            break;
        case '\t':
            puts_(o, "\\t");
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            puts_(o, esc);
        }
    }
    put(o, run, (size_t)(s - run));
    put(o, "\"", 1);
}

static void newline(out *o, int indent)
{
    put(o, "\n", 1);
    for (int i = 0; i < indent; i++)
        put(o, "  ", 2);
}

static void put_value(out *o, const cJSON *item, bool pretty, int indent);

static void put_children(out *o, const cJSON *item, bool object, bool pretty, int indent)
{
    put(o, object ? "{" : "[", 1);
    for (const cJSON *c = item->child; c; c = c->next) {
        if (pretty)
            newline(o, indent + 1);
        if (object) {
            put_string(o, c->string ? c->string : "");
            put(o, pretty ? ": " : ":", pretty ? 2 : 1);
        }
        put_value(o, c, pretty, indent + 1);
        if (c->next)
            put(o, ",", 1);
    }
    if (pretty && item->child)
        newline(o, indent);
    put(o, object ? "}" : "]", 1);
}

static void put_value(out *o, const cJSON *item, bool pretty, int indent)
{
    char buf[32];
    switch (item->type & 0xff) {
    case cJSON_False:
        puts_(o, "false");
        break;
    case cJSON_True:
        puts_(o, "true");
        break;
    case cJSON_NULL:
        puts_(o, "null");
        break;
    case cJSON_Number:
        puts_(o, keel_json_number_text(item, buf));
        break;
    case cJSON_String:
        put_string(o, item->valuestring ? item->valuestring : "");
        break;
    case cJSON_Raw:
        puts_(o, item->valuestring ? item->valuestring : "null");
        break;
    case cJSON_Array:
        put_children(o, item, false, pretty, indent);
        break;
    case cJSON_Object:
        put_children(o, item, true, pretty, indent);
        break;
    default:
        puts_(o, "null");
    }
}

static char *print(const cJSON *item, bool pretty)
{
    if (item == NULL)
        return NULL;
    out o = {0};
    put_value(&o, item, pretty, 0);
    if (o.oom || o.p == NULL) {
        free(o.p);
        return NULL;
    }
    return o.p;
}

char *keel_json_print(const cJSON *item)
{
    return print(item, false);
}

char *keel_json_print_pretty(const cJSON *item)
{
    return print(item, true);
}
