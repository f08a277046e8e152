/*
 * src/schema/regex.c - ECMA-262 (u flag) patterns translated to PCRE2 and run with limits; see
 * regex.h.
 *
 * Why a translator: PCRE2 10.42 without PCRE2_UCP already has JavaScript's ASCII \d \w \b, but
 * its \s, `.`, \v, \p{..} names and escape rules differ, and it accepts much that JavaScript
 * refuses. So the pattern is read once with JavaScript's grammar, every construct is checked,
 * and PCRE2 gets an equivalent pattern in which every literal is spelled so that PCRE2 cannot
 * read it differently (ASCII punctuation as \x{..}).
 *
 * Why no JIT: the interpreter honours all three match limits (the JIT ignores the depth and heap
 * limits and needs executable memory per pattern); the patterns in tool schemas are short and
 * matched against short strings, so the interpreter's speed is enough.
 */
#include "schema/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/schema.h"
#include "util/strbuf.h"

/* Groups nested deeper than this are refused (PCRE2's own default limit is 250). */
#define MAX_GROUP_NESTING 250
/* PCRE2 stores quantifier bounds in 16 bits. */
#define MAX_QUANTIFIER 65535u
/* The translation of a pattern is at most ~45 times longer than the pattern (\s becomes a
 * class of 86 bytes); this bound is never reached by a pattern within the length cap. */
#define MAX_TRANSLATED_LENGTH ((size_t)KEEL_SCHEMA_MAX_PATTERN * 64)

/* JavaScript's WhiteSpace and LineTerminator code points, as PCRE2 class items. */
#define JS_SPACE                                                                                   \
    "\\t-\\r\\x{20}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}"        \
    "\\x{3000}\\x{feff}"
/* \D and \W as class items. PCRE2 10.42 mismatches code points above 255 in a negated class
 * that holds both \D, \W or \S and a \p{..} ([^\W\p{L}] matches U+1F600), so inside [...]
 * keel spells them as ranges. */
#define JS_NOT_DIGIT "\\x{0}-\\x{2f}\\x{3a}-\\x{10ffff}"
#define JS_NOT_WORD  "\\x{0}-\\x{2f}\\x{3a}-\\x{40}\\x{5b}-\\x{5e}\\x{60}\\x{7b}-\\x{10ffff}"
/* `.` without the s flag: any code point but a LineTerminator. */
#define JS_DOT "[^\\n\\r\\x{2028}\\x{2029}]"

/* ---- memory PCRE2 may use while compiling ------------------------------------------------- */

/* Every block PCRE2 allocates through the capped allocator carries its size in front. */
typedef union block_head {
    size_t size;
    max_align_t align;
} block_head;

typedef struct mem_budget {
    size_t used; /* bytes live now */
    size_t cap;
    bool exceeded;
} mem_budget;

static void *capped_malloc(PCRE2_SIZE size, void *data)
{
    mem_budget *b = data;
    if (size > b->cap - b->used) {
        b->exceeded = true;
        return NULL;
    }
    block_head *h = malloc(sizeof *h + size);
    if (!h)
        return NULL;
    h->size = size;
    b->used += size;
    return h + 1;
}

static void capped_free(void *p, void *data)
{
    if (!p)
        return;
    mem_budget *b = data;
    block_head *h = (block_head *)p - 1;
    b->used -= h->size;
    free(h);
}

struct keel_regex {
    pcre2_code *code;
    pcre2_match_context *mctx;
    mem_budget mem; /* outlives compiling: the code frees itself through it */
};

struct keel_regex_scratch {
    pcre2_match_data *md;
};

/* ---- the translator ----------------------------------------------------------------------- */

/* The translated pattern, built piece by piece. */
typedef keel_strbuf obuf;

static void put_hex(obuf *b, uint32_t cp)
{
    char tmp[16];
    snprintf(tmp, sizeof tmp, "\\x{%x}", (unsigned)cp);
    keel_strbuf_puts(b, tmp);
}

typedef struct xlat {
    const char *start, *p;
    obuf out;
    unsigned ngroups; /* capturing groups in the whole pattern (backreferences may point ahead) */
    char *why;
    size_t whysz;
} xlat;

static int xfail(xlat *x, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int xfail(xlat *x, const char *at, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(x->why, x->whysz, "%s at offset %td", msg, at - x->start);
    return -1;
}

/* Decode one UTF-8 code point at p; returns its length, 0 when the bytes are not UTF-8. */
static size_t utf8_decode(const char *s, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    size_t n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || p[0] > 0xF4)
        return 0;
    uint32_t v = p[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

static bool is_ascii_alnum(uint32_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* A lone surrogate (\uD800 with no pair) is a valid JavaScript escape, but keel's strings are
 * UTF-8 and never hold one, so it matches nothing: outside [...] it becomes a group that always
 * fails, inside it adds nothing. */
static bool is_surrogate(uint32_t cp)
{
    return cp >= 0xD800 && cp <= 0xDFFF;
}

/* A literal code point, spelled so that PCRE2 reads exactly that character in or out of []. */
static void put_literal(obuf *b, uint32_t cp)
{
    if (is_surrogate(cp)) {
        keel_strbuf_puts(b, "(?:(?!))");
    } else if (is_ascii_alnum(cp)) {
        char c = (char)cp;
        keel_strbuf_put(b, &c, 1);
    } else {
        put_hex(b, cp);
    }
}

/* n hex digits at p into *v; false when one is missing. */
static bool read_hex(const char *p, int n, uint32_t *v)
{
    uint32_t r = 0;
    for (int i = 0; i < n; i++) {
        int h = keel_hex_digit(p[i]);
        if (h < 0)
            return false;
        r = r * 16 + (uint32_t)h;
    }
    *v = r;
    return true;
}

/* What one escape (or class atom) stands for. */
typedef enum esc_kind {
    ESC_CHAR,  /* one code point: cp */
    ESC_CLASS, /* a set of code points: text (or \s / \S, see space) */
    ESC_OTHER, /* an assertion or a backreference: text */
} esc_kind;

typedef struct esc {
    esc_kind kind;
    uint32_t cp;
    int space; /* ESC_CLASS: 1 for \s, -1 for \S, 0 otherwise */
    bool quantifiable;
    char text[96];
} esc;

/* \u escapes: \uXXXX, a surrogate pair of two of them, or \u{X...}. x->p is after the 'u'. */
static int read_u_escape(xlat *x, esc *e)
{
    const char *at = x->p - 2;
    uint32_t v;
    if (*x->p == '{') {
        const char *q = x->p + 1;
        v = 0;
        int h, digits = 0;
        while ((h = keel_hex_digit(*q)) >= 0) {
            v = v * 16 + (uint32_t)h;
            if (v > 0x10FFFF)
                return xfail(x, at, "\\u{...} above U+10FFFF");
            q++;
            digits++;
        }
        if (*q != '}' || digits == 0)
            return xfail(x, at, "invalid \\u{...} escape");
        x->p = q + 1;
    } else {
        if (!read_hex(x->p, 4, &v))
            return xfail(x, at, "invalid \\u escape (four hex digits or \\u{...} needed)");
        x->p += 4;
        uint32_t lo;
        if (v >= 0xD800 && v <= 0xDBFF && x->p[0] == '\\' && x->p[1] == 'u' &&
            read_hex(x->p + 2, 4, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            x->p += 6;
        }
    }
    e->kind = ESC_CHAR; /* possibly a lone surrogate: see is_surrogate */
    e->cp = v;
    return 0;
}

/* ECMA-262's General_Category values: long name, short name, other alias. */
static const char *const gc_names[][3] = {
    {"Cased_Letter", "LC", NULL},
    {"Close_Punctuation", "Pe", NULL},
    {"Connector_Punctuation", "Pc", NULL},
    {"Control", "Cc", "cntrl"},
    {"Currency_Symbol", "Sc", NULL},
    {"Dash_Punctuation", "Pd", NULL},
    {"Decimal_Number", "Nd", "digit"},
    {"Enclosing_Mark", "Me", NULL},
    {"Final_Punctuation", "Pf", NULL},
    {"Format", "Cf", NULL},
    {"Initial_Punctuation", "Pi", NULL},
    {"Letter", "L", NULL},
    {"Letter_Number", "Nl", NULL},
    {"Line_Separator", "Zl", NULL},
    {"Lowercase_Letter", "Ll", NULL},
    {"Mark", "M", "Combining_Mark"},
    {"Math_Symbol", "Sm", NULL},
    {"Modifier_Letter", "Lm", NULL},
    {"Modifier_Symbol", "Sk", NULL},
    {"Nonspacing_Mark", "Mn", NULL},
    {"Number", "N", NULL},
    {"Open_Punctuation", "Ps", NULL},
    {"Other", "C", NULL},
    {"Other_Letter", "Lo", NULL},
    {"Other_Number", "No", NULL},
    {"Other_Punctuation", "Po", NULL},
    {"Other_Symbol", "So", NULL},
    {"Paragraph_Separator", "Zp", NULL},
    {"Private_Use", "Co", NULL},
    {"Punctuation", "P", "punct"},
    {"Separator", "Z", NULL},
    {"Space_Separator", "Zs", NULL},
    {"Spacing_Mark", "Mc", NULL},
    {"Surrogate", "Cs", NULL},
    {"Symbol", "S", NULL},
    {"Titlecase_Letter", "Lt", NULL},
    {"Unassigned", "Cn", NULL},
    {"Uppercase_Letter", "Lu", NULL},
};

/* ECMA-262's binary properties (table-binary-unicode-properties), long names and aliases. */
static const char *const binary_props[] = {
    "ASCII",
    "ASCII_Hex_Digit",
    "AHex",
    "Alphabetic",
    "Alpha",
    "Any",
    "Assigned",
    "Bidi_Control",
    "Bidi_C",
    "Bidi_Mirrored",
    "Bidi_M",
    "Case_Ignorable",
    "CI",
    "Cased",
    "Changes_When_Casefolded",
    "CWCF",
    "Changes_When_Casemapped",
    "CWCM",
    "Changes_When_Lowercased",
    "CWL",
    "Changes_When_NFKC_Casefolded",
    "CWKCF",
    "Changes_When_Titlecased",
    "CWT",
    "Changes_When_Uppercased",
    "CWU",
    "Dash",
    "Default_Ignorable_Code_Point",
    "DI",
    "Deprecated",
    "Dep",
    "Diacritic",
    "Dia",
    "Emoji",
    "Emoji_Component",
    "EComp",
    "Emoji_Modifier",
    "EMod",
    "Emoji_Modifier_Base",
    "EBase",
    "Emoji_Presentation",
    "EPres",
    "Extended_Pictographic",
    "ExtPict",
    "Extender",
    "Ext",
    "Grapheme_Base",
    "Gr_Base",
    "Grapheme_Extend",
    "Gr_Ext",
    "Hex_Digit",
    "Hex",
    "IDS_Binary_Operator",
    "IDSB",
    "IDS_Trinary_Operator",
    "IDST",
    "ID_Continue",
    "IDC",
    "ID_Start",
    "IDS",
    "Ideographic",
    "Ideo",
    "Join_Control",
    "Join_C",
    "Logical_Order_Exception",
    "LOE",
    "Lowercase",
    "Lower",
    "Math",
    "Noncharacter_Code_Point",
    "NChar",
    "Pattern_Syntax",
    "Pat_Syn",
    "Pattern_White_Space",
    "Pat_WS",
    "Quotation_Mark",
    "QMark",
    "Radical",
    "Regional_Indicator",
    "RI",
    "Sentence_Terminal",
    "STerm",
    "Soft_Dotted",
    "SD",
    "Terminal_Punctuation",
    "Term",
    "Unified_Ideograph",
    "UIdeo",
    "Uppercase",
    "Upper",
    "Variation_Selector",
    "VS",
    "White_Space",
    "space",
    "XID_Continue",
    "XIDC",
    "XID_Start",
    "XIDS",
};

static const char *gc_short(const char *name)
{
    for (size_t i = 0; i < sizeof gc_names / sizeof gc_names[0]; i++)
        for (int j = 0; j < 3; j++)
            if (gc_names[i][j] && strcmp(gc_names[i][j], name) == 0)
                return gc_names[i][1];
    return NULL;
}

static bool is_binary_prop(const char *name)
{
    for (size_t i = 0; i < sizeof binary_props / sizeof binary_props[0]; i++)
        if (strcmp(binary_props[i], name) == 0)
            return true;
    return false;
}

/* PCRE2 10.42 spells a few of JavaScript's names its own way. */
static void pcre2_prop(char *out, size_t n, bool neg, const char *value)
{
    if (strcmp(value, "LC") == 0)
        value = "L&";
    if (strcmp(value, "Assigned") == 0) { /* everything but Unassigned */
        snprintf(out, n, "\\%c{Cn}", neg ? 'p' : 'P');
        return;
    }
    if (strcmp(value, "Any") == 0) { /* PCRE2 has Any; keep the name unambiguous */
        snprintf(out, n, "\\%c{Any}", neg ? 'P' : 'p');
        return;
    }
    snprintf(out, n, "\\%c{%s}", neg ? 'P' : 'p', value);
}

/* \p{...} or \P{...}; x->p is after the 'p'. */
static int read_property(xlat *x, esc *e, bool neg)
{
    const char *at = x->p - 2;
    if (*x->p != '{')
        return xfail(x, at, "\\p and \\P need {Property} or {Property=Value}");
    const char *q = x->p + 1, *close = strchr(q, '}');
    char body[64];
    if (!close || (size_t)(close - q) >= sizeof body || close == q)
        return xfail(x, at, "invalid or too long \\p{...}");
    memcpy(body, q, (size_t)(close - q));
    body[close - q] = '\0';
    for (const char *c = body; *c; c++)
        if (!is_ascii_alnum((unsigned char)*c) && *c != '_' && *c != '=')
            return xfail(x, at, "invalid character in \\p{%s}", body);
    x->p = close + 1;
    e->kind = ESC_CLASS;
    e->space = 0;
    char *eq = strchr(body, '=');
    if (eq) {
        *eq = '\0';
        const char *name = body, *value = eq + 1, *gc;
        char spelled[80];
        if (strcmp(name, "General_Category") == 0 || strcmp(name, "gc") == 0) {
            if (!(gc = gc_short(value)))
                return xfail(x, at, "unknown General_Category value '%s'", value);
            pcre2_prop(e->text, sizeof e->text, neg, gc);
            return 0;
        }
        const char *key = strcmp(name, "Script") == 0 || strcmp(name, "sc") == 0 ? "sc"
                          : strcmp(name, "Script_Extensions") == 0 || strcmp(name, "scx") == 0
                              ? "scx"
                              : NULL;
        if (!key || !*value || strchr(value, '='))
            return xfail(x, at, "unknown Unicode property '%s'", name);
        /* PCRE2 checks the script name when it compiles the translation */
        snprintf(spelled, sizeof spelled, "%s=%s", key, value);
        pcre2_prop(e->text, sizeof e->text, neg, spelled);
        return 0;
    }
    const char *gc = gc_short(body);
    if (gc)
        pcre2_prop(e->text, sizeof e->text, neg, gc);
    else if (is_binary_prop(body))
        pcre2_prop(e->text, sizeof e->text, neg, body);
    else
        return xfail(x, at, "unknown Unicode property '%s'", body);
    return 0;
}

static bool is_syntax_char(char c)
{
    return c && strchr("^$\\.*+?()[]{}|/", c) != NULL;
}

/* A group name of a backreference or a named group: PCRE2 takes [A-Za-z_][A-Za-z0-9_]*. */
static int read_group_name(xlat *x, const char *at, char *name, size_t n)
{
    const char *q = x->p;
    size_t len = 0;
    while (q[len] && q[len] != '>')
        len++;
    if (q[len] != '>' || len == 0)
        return xfail(x, at, "a group name must be written <name>");
    if (len >= n)
        return xfail(x, at, "group name longer than %zu bytes", n - 1);
    for (size_t i = 0; i < len; i++) {
        char c = q[i];
        bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return xfail(x, at, "group names other than [A-Za-z_][A-Za-z0-9_]* are not supported");
    }
    memcpy(name, q, len);
    name[len] = '\0';
    x->p = q + len + 1;
    return 0;
}

/* A decimal escape \N outside a class: a backreference to group N, which must exist. */
static int read_backreference(xlat *x, esc *e, const char *at)
{
    unsigned long n = 0;
    while (*x->p >= '0' && *x->p <= '9') {
        n = n * 10 + (unsigned long)(*x->p - '0');
        if (n > 1000000)
            break;
        x->p++;
    }
    if (n == 0 || n > x->ngroups)
        return xfail(x, at, "backreference \\%lu to a group that does not exist", n);
    e->kind = ESC_OTHER;
    e->quantifiable = true;
    snprintf(e->text, sizeof e->text, "\\g{%lu}", n);
    return 0;
}

/* The escape after a backslash; x->p points after the backslash. */
static int read_escape(xlat *x, bool in_class, esc *e)
{
    const char *at = x->p - 1;
    char c = *x->p;
    if (c == '\0')
        return xfail(x, at, "the pattern ends with a backslash");
    x->p++;
    e->kind = ESC_CHAR;
    e->space = 0;
    e->quantifiable = false;
    switch (c) {
    case 'd':
    case 'D':
    case 'w':
    case 'W':
        e->kind = ESC_CLASS;
        snprintf(e->text, sizeof e->text, "\\%c", c);
        return 0;
    case 's':
    case 'S':
        e->kind = ESC_CLASS;
        e->space = c == 's' ? 1 : -1;
        return 0;
    case 'p':
    case 'P':
        return read_property(x, e, c == 'P');
    case 'b':
        if (in_class) {
            e->cp = 0x08;
            return 0;
        }
        e->kind = ESC_OTHER;
        strcpy(e->text, "\\b");
        return 0;
    case 'B':
        if (in_class)
            return xfail(x, at, "\\B inside [...]");
        e->kind = ESC_OTHER;
        strcpy(e->text, "\\B");
        return 0;
    case 'f':
        e->cp = 0x0C;
        return 0;
    case 'n':
        e->cp = 0x0A;
        return 0;
    case 'r':
        e->cp = 0x0D;
        return 0;
    case 't':
        e->cp = 0x09;
        return 0;
    case 'v':
        e->cp = 0x0B;
        return 0;
    case 'c': {
        char l = *x->p;
        if (!((l >= 'a' && l <= 'z') || (l >= 'A' && l <= 'Z')))
            return xfail(x, at, "\\c must be followed by a letter");
        x->p++;
        e->cp = (uint32_t)(l % 32);
        return 0;
    }
    case 'x':
        if (!read_hex(x->p, 2, &e->cp))
            return xfail(x, at, "\\x needs two hex digits");
        x->p += 2;
        return 0;
    case 'u':
        return read_u_escape(x, e);
    case '0':
        if (*x->p >= '0' && *x->p <= '9')
            return xfail(x, at, "octal escapes are not allowed");
        e->cp = 0;
        return 0;
    case 'k': {
        char name[40];
        if (in_class)
            return xfail(x, at, "\\k inside [...]");
        if (*x->p != '<')
            return xfail(x, at, "\\k must be followed by <name>");
        x->p++;
        if (read_group_name(x, at, name, sizeof name) != 0)
            return -1;
        e->kind = ESC_OTHER;
        e->quantifiable = true;
        snprintf(e->text, sizeof e->text, "\\k<%s>", name);
        return 0;
    }
    case '-':
        if (!in_class)
            return xfail(x, at, "\\- outside [...]");
        e->cp = '-';
        return 0;
    default:
        break;
    }
    if (c >= '1' && c <= '9') {
        if (in_class)
            return xfail(x, at, "a backreference inside [...]");
        x->p--;
        return read_backreference(x, e, at);
    }
    if (is_syntax_char(c)) {
        e->cp = (uint32_t)(unsigned char)c;
        return 0;
    }
    uint32_t cp = 0;
    size_t n = utf8_decode(at + 1, &cp);
    return xfail(x, at, "invalid escape \\%.*s", (int)(n ? n : 1), at + 1);
}

/* One atom inside [...]: a code point or a class escape. */
static int read_class_atom(xlat *x, esc *e)
{
    if (*x->p == '\\') {
        x->p++;
        return read_escape(x, true, e);
    }
    uint32_t cp;
    size_t n = utf8_decode(x->p, &cp);
    if (n == 0)
        return xfail(x, x->p, "the pattern is not UTF-8");
    x->p += n;
    e->kind = ESC_CHAR;
    e->cp = cp;
    return 0;
}

/* The range lo-hi as class items, without the surrogates (which UTF-8 text never holds). */
static void put_range(obuf *items, uint32_t lo, uint32_t hi)
{
    uint32_t parts[2][2] = {{lo, hi < 0xD800 ? hi : 0xD7FF}, {lo > 0xDFFF ? lo : 0xE000, hi}};
    for (int i = 0; i < 2; i++) {
        if (parts[i][0] > parts[i][1] || (i == 0 && lo >= 0xD800) || (i == 1 && hi <= 0xDFFF))
            continue;
        put_literal(items, parts[i][0]);
        keel_strbuf_puts(items, "-");
        put_literal(items, parts[i][1]);
    }
}

/* Add a class atom to the items of a PCRE2 class; \S is noted apart (PCRE2 has no class item
 * for "not JavaScript white space"). */
static void put_class_item(obuf *items, const esc *e, bool *has_not_space)
{
    if (e->kind == ESC_CHAR && is_surrogate(e->cp))
        return;
    if (e->kind == ESC_CHAR)
        put_literal(items, e->cp);
    else if (e->space > 0)
        keel_strbuf_puts(items, JS_SPACE);
    else if (e->space < 0)
        *has_not_space = true;
    else if (strcmp(e->text, "\\D") == 0)
        keel_strbuf_puts(items, JS_NOT_DIGIT);
    else if (strcmp(e->text, "\\W") == 0)
        keel_strbuf_puts(items, JS_NOT_WORD);
    else
        keel_strbuf_puts(items, e->text);
}

/* [...]; x->p is after the '['. */
static int translate_class(xlat *x)
{
    const char *at = x->p - 1;
    bool neg = *x->p == '^';
    if (neg)
        x->p++;
    obuf items = {0};
    bool has_not_space = false;
    int rc = 0;
    while (rc == 0 && *x->p != ']') {
        if (*x->p == '\0') {
            rc = xfail(x, at, "unterminated [...]");
            break;
        }
        esc a, b;
        if (read_class_atom(x, &a) != 0) {
            rc = -1;
            break;
        }
        if (x->p[0] == '-' && x->p[1] != ']' && x->p[1] != '\0') {
            const char *dash = x->p++;
            if (read_class_atom(x, &b) != 0) {
                rc = -1;
                break;
            }
            if (a.kind != ESC_CHAR || b.kind != ESC_CHAR) {
                rc = xfail(x, dash, "a class escape cannot bound a range");
                break;
            }
            if (a.cp > b.cp) {
                rc = xfail(x, dash, "range out of order in [...]");
                break;
            }
            put_range(&items, a.cp, b.cp);
            continue;
        }
        put_class_item(&items, &a, &has_not_space);
    }
    if (rc == 0) {
        x->p++; /* the ']' */
        const char *it = items.p ? items.p : "";
        if (!has_not_space && !*it) {
            keel_strbuf_puts(&x->out,
                             neg ? "(?s:.)" : "(?:(?!))"); /* [^] is any character, [] none */
        } else if (!has_not_space) {
            keel_strbuf_puts(&x->out, neg ? "[^" : "[");
            keel_strbuf_puts(&x->out, it);
            keel_strbuf_puts(&x->out, "]");
        } else if (!neg) { /* items or not-space */
            keel_strbuf_puts(&x->out, "(?:");
            if (*it) {
                keel_strbuf_puts(&x->out, "[");
                keel_strbuf_puts(&x->out, it);
                keel_strbuf_puts(&x->out, "]|");
            }
            keel_strbuf_puts(&x->out, "[^" JS_SPACE "])");
        } else { /* neither items nor not-space: space and not one of the items */
            keel_strbuf_puts(&x->out, "(?:");
            if (*it) {
                keel_strbuf_puts(&x->out, "(?![");
                keel_strbuf_puts(&x->out, it);
                keel_strbuf_puts(&x->out, "])");
            }
            keel_strbuf_puts(&x->out, "[" JS_SPACE "])");
        }
    }
    if (items.oom)
        x->out.oom = true;
    free(items.p);
    return rc;
}

/* {n}, {n,}, {n,m} at x->p (the '{'); false when the text there is not a quantifier. */
static bool read_braces(xlat *x, unsigned long *lo, unsigned long *hi, bool *has_hi)
{
    const char *q = x->p + 1;
    unsigned long a = 0, b = 0;
    int da = 0, db = 0;
    for (; *q >= '0' && *q <= '9'; q++, da++)
        a = a > MAX_QUANTIFIER ? a : a * 10 + (unsigned long)(*q - '0');
    if (da == 0)
        return false;
    *has_hi = true;
    if (*q == ',') {
        q++;
        for (; *q >= '0' && *q <= '9'; q++, db++)
            b = b > MAX_QUANTIFIER ? b : b * 10 + (unsigned long)(*q - '0');
        if (db == 0)
            *has_hi = false;
    } else {
        b = a;
    }
    if (*q != '}')
        return false;
    x->p = q + 1;
    *lo = a;
    *hi = b;
    return true;
}

/* A quantifier at x->p; can_repeat says whether the previous atom may be repeated. */
static int translate_quantifier(xlat *x, bool can_repeat)
{
    const char *at = x->p;
    if (!can_repeat)
        return xfail(x, at, "nothing to repeat");
    if (*x->p == '{') {
        unsigned long lo, hi;
        bool has_hi;
        if (!read_braces(x, &lo, &hi, &has_hi))
            return xfail(x, at, "incomplete quantifier {");
        if (lo > MAX_QUANTIFIER || (has_hi && hi > MAX_QUANTIFIER))
            return xfail(x, at, "quantifier bound above %u (PCRE2's limit)", MAX_QUANTIFIER);
        if (has_hi && lo > hi)
            return xfail(x, at, "numbers out of order in {} quantifier");
        char q[48];
        if (!has_hi)
            snprintf(q, sizeof q, "{%lu,}", lo);
        else if (lo == hi)
            snprintf(q, sizeof q, "{%lu}", lo);
        else
            snprintf(q, sizeof q, "{%lu,%lu}", lo, hi);
        keel_strbuf_puts(&x->out, q);
    } else {
        keel_strbuf_put(&x->out, x->p++, 1);
    }
    if (*x->p == '?')
        keel_strbuf_put(&x->out, x->p++, 1); /* lazy */
    if (*x->p && strchr("*+?{", *x->p))
        return xfail(x, x->p, "nothing to repeat");
    return 0;
}

typedef struct group_stack {
    bool repeatable[MAX_GROUP_NESTING]; /* per open group: may a quantifier follow its ')'? */
    int depth;
} group_stack;

/* "(" and what follows it; x->p is after the '('. */
static int translate_group_open(xlat *x, group_stack *g)
{
    const char *at = x->p - 1;
    if (g->depth == MAX_GROUP_NESTING)
        return xfail(x, at, "groups nested deeper than %d", MAX_GROUP_NESTING);
    bool repeatable = true;
    if (*x->p != '?') {
        keel_strbuf_puts(&x->out, "(");
    } else if (x->p[1] == ':') {
        keel_strbuf_puts(&x->out, "(?:");
        x->p += 2;
    } else if (x->p[1] == '=' || x->p[1] == '!') {
        keel_strbuf_put(&x->out, at, 3);
        x->p += 2;
        repeatable = false; /* JavaScript's u flag forbids quantified lookahead */
    } else if (x->p[1] == '<' && (x->p[2] == '=' || x->p[2] == '!')) {
        keel_strbuf_put(&x->out, at, 4);
        x->p += 3;
        repeatable = false;
    } else if (x->p[1] == '<') {
        char name[40], text[64];
        x->p += 2;
        if (read_group_name(x, at, name, sizeof name) != 0)
            return -1;
        snprintf(text, sizeof text, "(?<%s>", name);
        keel_strbuf_puts(&x->out, text);
    } else {
        return xfail(x, at, "unsupported group (?%c: JavaScript has (?: (?= (?! (?<= (?<! (?<name>",
                     x->p[1] ? x->p[1] : ' ');
    }
    g->repeatable[g->depth++] = repeatable;
    return 0;
}

/* The whole pattern, one token at a time. */
static int translate(xlat *x)
{
    group_stack g = {.depth = 0};
    bool can_repeat = false; /* may a quantifier follow what came last? */
    while (*x->p) {
        char c = *x->p;
        const char *at = x->p;
        esc e;
        int rc = 0;
        switch (c) {
        case '\\':
            x->p++;
            rc = read_escape(x, false, &e);
            if (rc != 0)
                break;
            if (e.kind == ESC_CHAR)
                put_literal(&x->out, e.cp);
            else if (e.kind == ESC_CLASS && e.space)
                keel_strbuf_puts(&x->out, e.space > 0 ? "[" JS_SPACE "]" : "[^" JS_SPACE "]");
            else
                keel_strbuf_puts(&x->out, e.text);
            can_repeat = e.kind != ESC_OTHER || e.quantifiable;
            break;
        case '[':
            x->p++;
            rc = translate_class(x);
            can_repeat = true;
            break;
        case '(':
            x->p++;
            rc = translate_group_open(x, &g);
            can_repeat = false;
            break;
        case ')':
            if (g.depth == 0)
                return xfail(x, at, "unmatched )");
            keel_strbuf_puts(&x->out, ")");
            x->p++;
            can_repeat = g.repeatable[--g.depth];
            break;
        case '|':
        case '^':
        case '$':
            keel_strbuf_put(&x->out, x->p++, 1);
            can_repeat = false;
            break;
        case '.':
            keel_strbuf_puts(&x->out, JS_DOT);
            x->p++;
            can_repeat = true;
            break;
        case '*':
        case '+':
        case '?':
        case '{':
            rc = translate_quantifier(x, can_repeat);
            can_repeat = false;
            break;
        case '}':
        case ']':
            return xfail(x, at, "lone '%c' (JavaScript's u flag wants it escaped)", c);
        default: {
            uint32_t cp;
            size_t n = utf8_decode(x->p, &cp);
            if (n == 0)
                return xfail(x, at, "the pattern is not UTF-8");
            x->p += n;
            put_literal(&x->out, cp);
            can_repeat = true;
        }
        }
        if (rc != 0)
            return rc;
    }
    if (g.depth > 0)
        return xfail(x, x->p, "missing )");
    return 0;
}

/* Capturing groups in the pattern: ( not followed by ?, and (?<name>. */
static unsigned count_groups(const char *p)
{
    unsigned n = 0;
    bool in_class = false;
    for (; *p; p++) {
        if (*p == '\\') {
            if (p[1])
                p++;
        } else if (in_class) {
            in_class = *p != ']';
        } else if (*p == '[') {
            in_class = true;
        } else if (*p == '(') {
            if (p[1] != '?' || (p[2] == '<' && p[3] != '=' && p[3] != '!'))
                n++;
        }
    }
    return n;
}

/* ---- compiling and searching -------------------------------------------------------------- */

static int compile_translated(keel_regex *re, const char *text, size_t len, char *why, size_t whysz)
{
    pcre2_general_context *gc = pcre2_general_context_create(capped_malloc, capped_free, &re->mem);
    pcre2_compile_context *cc = gc ? pcre2_compile_context_create(gc) : NULL;
    if (!cc) {
        pcre2_general_context_free(gc);
        snprintf(why, whysz, "out of memory");
        return KEEL_ENOMEM;
    }
    pcre2_set_max_pattern_length(cc, MAX_TRANSLATED_LENGTH);
    pcre2_set_parens_nest_limit(cc, MAX_GROUP_NESTING + 10);
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_MATCH_UNSET_BACKREF | PCRE2_NEVER_UCP |
                    PCRE2_NEVER_BACKSLASH_C;
    re->code = pcre2_compile((PCRE2_SPTR)text, len, opts, &code, &off, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(gc);
    if (re->code)
        return KEEL_OK;
    if (re->mem.exceeded) {
        snprintf(why, whysz,
                 "compiling it needs more than %zu bytes (KEEL_SCHEMA_REGEX_COMPILE_MEMORY)",
                 (size_t)KEEL_SCHEMA_REGEX_COMPILE_MEMORY);
        return KEEL_EINVAL;
    }
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(code, msg, sizeof msg);
    snprintf(why, whysz, "%s", (const char *)msg);
    return code == PCRE2_ERROR_NOMEMORY || code == PCRE2_ERROR_HEAP_FAILED ? KEEL_ENOMEM
                                                                           : KEEL_EINVAL;
}

static pcre2_match_context *make_match_context(void)
{
    pcre2_match_context *m = pcre2_match_context_create(NULL);
    if (!m)
        return NULL;
    pcre2_set_match_limit(m, KEEL_SCHEMA_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(m, KEEL_SCHEMA_REGEX_DEPTH_LIMIT);
    pcre2_set_heap_limit(m, KEEL_SCHEMA_REGEX_HEAP_LIMIT_KIB);
    return m;
}

int keel_regex_compile(keel_regex **out, const char *pattern, char *why, size_t whysz)
{
    *out = NULL;
    size_t len = strlen(pattern);
    if (len > KEEL_SCHEMA_MAX_PATTERN) {
        snprintf(why, whysz, "longer than %d bytes (KEEL_SCHEMA_MAX_PATTERN)",
                 KEEL_SCHEMA_MAX_PATTERN);
        return KEEL_EINVAL;
    }
    xlat x = {.start = pattern, .p = pattern, .why = why, .whysz = whysz};
    x.ngroups = count_groups(pattern);
    int rc = translate(&x) == 0 ? KEEL_OK : KEEL_EINVAL;
    if (rc == KEEL_OK && x.out.oom) {
        snprintf(why, whysz, "out of memory");
        rc = KEEL_ENOMEM;
    }
    keel_regex *re = NULL;
    if (rc == KEEL_OK && !(re = calloc(1, sizeof *re))) {
        snprintf(why, whysz, "out of memory");
        rc = KEEL_ENOMEM;
    }
    if (rc == KEEL_OK) {
        re->mem.cap = KEEL_SCHEMA_REGEX_COMPILE_MEMORY;
        rc = compile_translated(re, x.out.p ? x.out.p : "", x.out.len, why, whysz);
    }
    if (rc == KEEL_OK && !(re->mctx = make_match_context())) {
        snprintf(why, whysz, "out of memory");
        rc = KEEL_ENOMEM;
    }
    free(x.out.p);
    if (rc != KEEL_OK) {
        keel_regex_free(re);
        return rc;
    }
    *out = re;
    return KEEL_OK;
}

void keel_regex_free(keel_regex *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    pcre2_match_context_free(re->mctx);
    free(re);
}

/* The words for a limit PCRE2 stopped at; false for any other error. */
static bool describe_limit(int rc, char *why, size_t whysz)
{
    if (rc == PCRE2_ERROR_MATCHLIMIT)
        snprintf(why, whysz,
                 "the search hit the match limit (%u steps, KEEL_SCHEMA_REGEX_MATCH_LIMIT)",
                 (unsigned)KEEL_SCHEMA_REGEX_MATCH_LIMIT);
    else if (rc == PCRE2_ERROR_DEPTHLIMIT)
        snprintf(why, whysz,
                 "the search hit the backtracking depth limit (%u, KEEL_SCHEMA_REGEX_DEPTH_LIMIT)",
                 (unsigned)KEEL_SCHEMA_REGEX_DEPTH_LIMIT);
    else if (rc == PCRE2_ERROR_HEAPLIMIT)
        snprintf(why, whysz,
                 "the search hit the heap limit (%u KiB, KEEL_SCHEMA_REGEX_HEAP_LIMIT_KIB)",
                 (unsigned)KEEL_SCHEMA_REGEX_HEAP_LIMIT_KIB);
    else
        return false;
    return true;
}

int keel_regex_search(const keel_regex *re, const char *subject, size_t len,
                      keel_regex_scratch **scratch, char *why, size_t whysz)
{
    if (!*scratch) {
        keel_regex_scratch *s = calloc(1, sizeof *s);
        if (s && !(s->md = pcre2_match_data_create(1, NULL))) {
            free(s);
            s = NULL;
        }
        if (!s) {
            snprintf(why, whysz, "out of memory");
            return KEEL_ENOMEM;
        }
        *scratch = s;
    }
    int rc = pcre2_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, (*scratch)->md, re->mctx);
    if (rc >= 0)
        return 1;
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (describe_limit(rc, why, whysz))
        return KEEL_EEXHAUSTED;
    if (rc == PCRE2_ERROR_NOMEMORY) {
        snprintf(why, whysz, "out of memory");
        return KEEL_ENOMEM;
    }
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    snprintf(why, whysz, "the search failed: %s", (const char *)msg);
    return KEEL_EINVAL;
}

void keel_regex_scratch_free(keel_regex_scratch *scratch)
{
    if (!scratch)
        return;
    pcre2_match_data_free(scratch->md);
    free(scratch);
}
