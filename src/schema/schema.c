/* src/schema/schema.c - JSON Schema (draft 7 + 2020-12 spellings) validation; see keel/schema.h. */
#include "keel/schema.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Schemas nest at most this deep when compiled (cJSON itself stops at CJSON_NESTING_LIMIT). */
#define SCHEMA_COMPILE_MAX_DEPTH 256

typedef struct regex_entry {
    const cJSON *node; /* the "pattern" string, or the patternProperties member */
    regex_t re;
} regex_entry;

struct keel_schema {
    cJSON *root;
    bool ref_with_siblings; /* 2019-09 / 2020-12: keywords next to $ref apply too */
    regex_entry *regexes;
    size_t nregexes, capregexes;
};

/* ---- growable string ---------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_truncate(sbuf *b, size_t len)
{
    b->len = len;
    if (b->p)
        b->p[len] = '\0';
}

/* Append "/" and a reference token, escaping ~ and / as RFC 6901 says. */
static void sb_push_token(sbuf *b, const char *tok)
{
    sb_putn(b, "/", 1);
    for (const char *c = tok; *c; c++) {
        if (*c == '~')
            sb_putn(b, "~0", 2);
        else if (*c == '/')
            sb_putn(b, "~1", 2);
        else
            sb_putn(b, c, 1);
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

/* ---- small helpers ------------------------------------------------------------------------ */

static const char *fmt_num(double v, char *buf, size_t n)
{
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, n, "%.17g", v);
    return buf;
}

static bool is_integral(const cJSON *j)
{
    if (!cJSON_IsNumber(j))
        return false;
    double v = j->valuedouble;
    return isfinite(v) && floor(v) == v;
}

static const char *instance_type(const cJSON *j)
{
    if (cJSON_IsNull(j))
        return "null";
    if (cJSON_IsBool(j))
        return "boolean";
    if (cJSON_IsNumber(j))
        return is_integral(j) ? "integer" : "number";
    if (cJSON_IsString(j))
        return "string";
    if (cJSON_IsArray(j))
        return "array";
    return "object";
}

static bool type_matches(const cJSON *j, const char *t)
{
    if (strcmp(t, "integer") == 0)
        return is_integral(j);
    if (strcmp(t, "number") == 0)
        return cJSON_IsNumber(j);
    return strcmp(t, instance_type(j)) == 0;
}

static bool valid_type_name(const char *t)
{
    static const char *const names[] = {"null",   "boolean", "object", "array",
                                        "number", "string",  "integer"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(t, names[i]) == 0)
            return true;
    return false;
}

/* Deep JSON equality: numbers by value, objects regardless of key order. */
static bool json_equal(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsBool(a) || cJSON_IsBool(b))
        return cJSON_IsBool(a) && cJSON_IsBool(b) && cJSON_IsTrue(a) == cJSON_IsTrue(b);
    if ((a->type & 0xFF) != (b->type & 0xFF))
        return false;
    if (cJSON_IsNumber(a))
        return a->valuedouble == b->valuedouble;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
            return false;
        for (const cJSON *x = a->child, *y = b->child; x && y; x = x->next, y = y->next)
            if (!json_equal(x, y))
                return false;
        return true;
    }
    if (cJSON_IsObject(a)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
            return false;
        for (const cJSON *x = a->child; x; x = x->next) {
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            if (!y || !json_equal(x, y))
                return false;
        }
        return true;
    }
    return true; /* null */
}

static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if ((*c & 0xC0) != 0x80)
            n++;
    return n;
}

/* ---- regular expressions ------------------------------------------------------------------ */

/*
 * Translate an ECMA-262 pattern into a POSIX extended one: \d \w \s (and their negations) become
 * bracket expressions, escaped punctuation stays escaped, \n \t \r become the characters. Syntax
 * POSIX has no equivalent for (lookaround, non-capturing groups, \p{..}, backreferences) is
 * refused with a reason.
 */
static int ecma_to_posix(const char *src, sbuf *out, const char **why)
{
    bool in_bracket = false;
    for (const char *c = src; *c; c++) {
        if (!in_bracket && c[0] == '(' && c[1] == '?') {
            *why = "lookaround and (?...) groups are not supported";
            return -1;
        }
        if (c[0] == '[' && !in_bracket) {
            in_bracket = true;
            sb_putn(out, c, 1);
            if (c[1] == '^')
                sb_putn(out, ++c, 1);
            if (c[1] == ']')
                sb_putn(out, ++c, 1);
            continue;
        }
        if (c[0] == ']' && in_bracket) {
            in_bracket = false;
            sb_putn(out, c, 1);
            continue;
        }
        if (c[0] != '\\') {
            sb_putn(out, c, 1);
            continue;
        }
        char e = *++c;
        if (e == '\0') {
            *why = "trailing backslash";
            return -1;
        }
        const char *cls = NULL, *ncls = NULL;
        switch (e) {
        case 'd':
            cls = "0-9";
            break;
        case 'D':
            ncls = "0-9";
            break;
        case 'w':
            cls = "A-Za-z0-9_";
            break;
        case 'W':
            ncls = "A-Za-z0-9_";
            break;
        case 's':
            cls = "[:space:]";
            break;
        case 'S':
            ncls = "[:space:]";
            break;
        case 'n':
            sb_puts(out, "\n");
            continue;
        case 't':
            sb_puts(out, "\t");
            continue;
        case 'r':
            sb_puts(out, "\r");
            continue;
        case 'f':
            sb_puts(out, "\f");
            continue;
        case 'v':
            sb_puts(out, "\v");
            continue;
        default:
            break;
        }
        if (cls || ncls) {
            if (in_bracket) {
                if (ncls) {
                    *why = "negated class escapes inside [...] are not supported";
                    return -1;
                }
                sb_puts(out, cls);
            } else {
                sb_puts(out, cls ? "[" : "[^");
                sb_puts(out, cls ? cls : ncls);
                sb_puts(out, "]");
            }
            continue;
        }
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
            *why = "this escape (\\b, \\p{..}, \\u, backreference, ...) is not supported";
            return -1;
        }
        if (in_bracket) {
            if (e == ']') {
                *why = "\\] inside [...] is not supported";
                return -1;
            }
            sb_putn(out, &e, 1); /* a backslash is literal in a POSIX bracket expression */
        } else if (strchr(".[]()*+?{}|^$\\", e)) {
            sb_putn(out, c - 1, 2);
        } else {
            sb_putn(out, &e, 1);
        }
    }
    return 0;
}

/* Compile pattern into *re. On failure returns -1 with a reason in why[whysz]. */
static int regex_compile(regex_t *re, const char *pattern, char *why, size_t whysz)
{
    sbuf b = {0};
    const char *reason = NULL;
    if (ecma_to_posix(pattern, &b, &reason) != 0) {
        snprintf(why, whysz, "%s", reason);
        free(b.p);
        return -1;
    }
    if (b.oom) {
        snprintf(why, whysz, "out of memory");
        free(b.p);
        return -1;
    }
    int rc = regcomp(re, sb_str(&b), REG_EXTENDED | REG_NOSUB);
    free(b.p);
    if (rc != 0) {
        regerror(rc, re, why, whysz);
        return -1;
    }
    return 0;
}

static const regex_t *regex_find(const keel_schema *s, const cJSON *node)
{
    for (size_t i = 0; i < s->nregexes; i++)
        if (s->regexes[i].node == node)
            return &s->regexes[i].re;
    return NULL;
}

/* ---- compiling: checking keyword shapes --------------------------------------------------- */

typedef struct compiler {
    keel_schema *s;
    sbuf loc; /* JSON pointer of the current schema inside the document */
    keel_error *err;
    int rc;
} compiler;

static int cfail(compiler *c, const char *keyword, const char *what)
{
    if (c->rc == KEEL_OK)
        c->rc = keel_error_set(c->err, KEEL_EINVAL, "schema: '%s' at #%s %s", keyword,
                               sb_str(&c->loc), what);
    return c->rc;
}

static int add_regex(compiler *c, const cJSON *node, const char *pattern, const char *keyword)
{
    if (c->s->nregexes == c->s->capregexes) {
        size_t cap = c->s->capregexes ? c->s->capregexes * 2 : 8;
        regex_entry *r = realloc(c->s->regexes, cap * sizeof *r);
        if (!r)
            return c->rc = keel_error_set(c->err, KEEL_ENOMEM, "schema: out of memory");
        c->s->regexes = r;
        c->s->capregexes = cap;
    }
    char why[256];
    regex_entry *e = &c->s->regexes[c->s->nregexes];
    if (regex_compile(&e->re, pattern, why, sizeof why) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "has a regular expression '%.200s' that cannot be used: %s",
                 pattern, why);
        return cfail(c, keyword, msg);
    }
    e->node = node;
    c->s->nregexes++;
    return KEEL_OK;
}

static int check_schema(compiler *c, const cJSON *node, int depth);

static int check_sub(compiler *c, const cJSON *node, const char *tok, int depth)
{
    size_t len = c->loc.len;
    sb_push_token(&c->loc, tok);
    int rc = check_schema(c, node, depth);
    sb_truncate(&c->loc, len);
    return rc;
}

static int check_schema_map(compiler *c, const cJSON *kw, int depth, bool regex_keys)
{
    if (!cJSON_IsObject(kw))
        return cfail(c, kw->string, "must be an object");
    size_t len = c->loc.len;
    sb_push_token(&c->loc, kw->string);
    int rc = KEEL_OK;
    for (const cJSON *m = kw->child; m && rc == KEEL_OK; m = m->next) {
        if (regex_keys && add_regex(c, m, m->string, kw->string) != KEEL_OK)
            rc = c->rc;
        else
            rc = check_sub(c, m, m->string, depth + 1);
    }
    sb_truncate(&c->loc, len);
    return rc;
}

static int check_schema_array(compiler *c, const cJSON *kw, int depth, bool nonempty)
{
    if (!cJSON_IsArray(kw) || (nonempty && !kw->child))
        return cfail(c, kw->string,
                     nonempty ? "must be a non-empty array of schemas" : "must be an array");
    size_t len = c->loc.len;
    sb_push_token(&c->loc, kw->string);
    int rc = KEEL_OK;
    size_t i = 0;
    for (const cJSON *m = kw->child; m && rc == KEEL_OK; m = m->next, i++) {
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", i);
        rc = check_sub(c, m, idx, depth + 1);
    }
    sb_truncate(&c->loc, len);
    return rc;
}

static bool is_count(const cJSON *j)
{
    return is_integral(j) && j->valuedouble >= 0;
}

static int check_schema(compiler *c, const cJSON *node, int depth)
{
    if (c->rc != KEEL_OK)
        return c->rc;
    if (cJSON_IsBool(node))
        return KEEL_OK;
    if (!cJSON_IsObject(node)) {
        if (c->rc == KEEL_OK)
            c->rc = keel_error_set(c->err, KEEL_EINVAL,
                                   "schema: the schema at #%s must be an object or a boolean",
                                   sb_str(&c->loc));
        return c->rc;
    }
    if (depth > SCHEMA_COMPILE_MAX_DEPTH)
        return c->rc = keel_error_set(c->err, KEEL_EINVAL,
                                      "schema: nested deeper than %d subschemas at #%s",
                                      SCHEMA_COMPILE_MAX_DEPTH, sb_str(&c->loc));
    for (const cJSON *kw = node->child; kw && c->rc == KEEL_OK; kw = kw->next) {
        const char *k = kw->string;
        if (strcmp(k, "type") == 0) {
            if (cJSON_IsString(kw)) {
                if (!valid_type_name(kw->valuestring))
                    cfail(c, k, "names an unknown type");
            } else if (cJSON_IsArray(kw) && kw->child) {
                for (const cJSON *t = kw->child; t; t = t->next)
                    if (!cJSON_IsString(t) || !valid_type_name(t->valuestring)) {
                        cfail(c, k, "must list known type names");
                        break;
                    }
            } else {
                cfail(c, k, "must be a type name or a non-empty array of type names");
            }
        } else if (strcmp(k, "properties") == 0 || strcmp(k, "definitions") == 0 ||
                   strcmp(k, "$defs") == 0) {
            check_schema_map(c, kw, depth, false);
        } else if (strcmp(k, "patternProperties") == 0) {
            check_schema_map(c, kw, depth, true);
        } else if (strcmp(k, "additionalProperties") == 0 || strcmp(k, "additionalItems") == 0 ||
                   strcmp(k, "contains") == 0 || strcmp(k, "not") == 0 || strcmp(k, "if") == 0 ||
                   strcmp(k, "then") == 0 || strcmp(k, "else") == 0) {
            check_sub(c, kw, k, depth + 1);
        } else if (strcmp(k, "items") == 0) {
            if (cJSON_IsArray(kw))
                check_schema_array(c, kw, depth, false);
            else
                check_sub(c, kw, k, depth + 1);
        } else if (strcmp(k, "prefixItems") == 0) {
            check_schema_array(c, kw, depth, false);
        } else if (strcmp(k, "allOf") == 0 || strcmp(k, "anyOf") == 0 || strcmp(k, "oneOf") == 0) {
            check_schema_array(c, kw, depth, true);
        } else if (strcmp(k, "required") == 0) {
            bool ok = cJSON_IsArray(kw);
            for (const cJSON *t = ok ? kw->child : NULL; t; t = t->next)
                ok = ok && cJSON_IsString(t);
            if (!ok)
                cfail(c, k, "must be an array of strings");
        } else if (strcmp(k, "enum") == 0) {
            if (!cJSON_IsArray(kw))
                cfail(c, k, "must be an array");
        } else if (strcmp(k, "minimum") == 0 || strcmp(k, "maximum") == 0 ||
                   strcmp(k, "exclusiveMinimum") == 0 || strcmp(k, "exclusiveMaximum") == 0) {
            if (!cJSON_IsNumber(kw))
                cfail(c, k, "must be a number");
        } else if (strcmp(k, "multipleOf") == 0) {
            if (!cJSON_IsNumber(kw) || !(kw->valuedouble > 0) || !isfinite(kw->valuedouble))
                cfail(c, k, "must be a number greater than 0");
        } else if (strcmp(k, "minLength") == 0 || strcmp(k, "maxLength") == 0 ||
                   strcmp(k, "minItems") == 0 || strcmp(k, "maxItems") == 0 ||
                   strcmp(k, "minProperties") == 0 || strcmp(k, "maxProperties") == 0) {
            if (!is_count(kw))
                cfail(c, k, "must be a non-negative integer");
        } else if (strcmp(k, "uniqueItems") == 0) {
            if (!cJSON_IsBool(kw))
                cfail(c, k, "must be a boolean");
        } else if (strcmp(k, "pattern") == 0) {
            if (!cJSON_IsString(kw))
                cfail(c, k, "must be a string");
            else
                add_regex(c, kw, kw->valuestring, k);
        } else if (strcmp(k, "$ref") == 0) {
            if (!cJSON_IsString(kw))
                cfail(c, k, "must be a string");
        }
        /* anything else, const included, is not checked: unknown keywords are ignored */
    }
    return c->rc;
}

void keel_schema_free(keel_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nregexes; i++)
        regfree(&s->regexes[i].re);
    free(s->regexes);
    cJSON_Delete(s->root);
    free(s);
}

/* "at byte N near '...'" for a parse error at pos inside text. */
static void parse_error_where(const char *text, const char *pos, char *buf, size_t n)
{
    if (!pos || pos < text) {
        buf[0] = '\0';
        return;
    }
    if (*pos == '\0')
        snprintf(buf, n, " at byte %zu (unexpected end of input)", (size_t)(pos - text));
    else
        snprintf(buf, n, " at byte %zu near '%.20s'", (size_t)(pos - text), pos);
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
}

int keel_schema_new(keel_schema **out, const char *schema_json, keel_error *err)
{
    if (!out || !schema_json)
        return keel_error_set(err, KEEL_EINVAL, "schema: no schema text");
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(schema_json, &end, 1);
    if (!root) {
        char where[96];
        parse_error_where(schema_json, end, where, sizeof where);
        return keel_error_set(err, KEEL_EINVAL, "schema: not valid JSON%s", where);
    }
    keel_schema *s = calloc(1, sizeof *s);
    if (!s) {
        cJSON_Delete(root);
        return keel_error_set(err, KEEL_ENOMEM, "schema: out of memory");
    }
    s->root = root;
    const cJSON *dialect = cJSON_GetObjectItemCaseSensitive(root, "$schema");
    if (cJSON_IsString(dialect) &&
        (strstr(dialect->valuestring, "2020-12") || strstr(dialect->valuestring, "2019-09")))
        s->ref_with_siblings = true;
    compiler c = {.s = s, .err = err, .rc = KEEL_OK};
    int rc = check_schema(&c, root, 0);
    if (rc == KEEL_OK && c.loc.oom)
        rc = keel_error_set(err, KEEL_ENOMEM, "schema: out of memory");
    free(c.loc.p);
    if (rc != KEEL_OK) {
        keel_schema_free(s);
        return rc;
    }
    *out = s;
    return KEEL_OK;
}

/* ---- validating --------------------------------------------------------------------------- */

typedef struct vstate {
    const keel_schema *s;
    keel_schema_result *res;
    sbuf ptr; /* JSON pointer of the current instance location */
    bool oom;
    bool depth_hit;
    int fatal; /* KEEL_EINVAL once the schema turned out unusable; err is filled */
    keel_error *err;
} vstate;

static char *xstrdup(vstate *st, const char *s)
{
    char *d = strdup(s);
    if (!d)
        st->oom = true;
    return d;
}

static void add_error(vstate *st, bool collect, const char *keyword, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(vstate *st, bool collect, const char *keyword, const char *fmt, ...)
{
    if (!collect || st->oom)
        return;
    keel_schema_result *r = st->res;
    if (r->count >= KEEL_SCHEMA_MAX_ERRORS) {
        r->truncated = true;
        return;
    }
    if (!r->errors) {
        r->errors = calloc(KEEL_SCHEMA_MAX_ERRORS, sizeof *r->errors);
        if (!r->errors) {
            st->oom = true;
            return;
        }
    }
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    keel_schema_error *e = &r->errors[r->count++];
    e->pointer = xstrdup(st, sb_str(&st->ptr));
    e->keyword = xstrdup(st, keyword);
    e->reason = xstrdup(st, reason);
}

static bool stopped(const vstate *st)
{
    return st->oom || st->fatal != KEEL_OK || st->ptr.oom;
}

/* Resolve a local $ref ("#", "#/a/b~1c", percent-escapes allowed) against the root. */
static const cJSON *resolve_ref(vstate *st, const char *ref)
{
    if (ref[0] != '#') {
        st->fatal = keel_error_set(st->err, KEEL_EINVAL,
                                   "schema: remote $ref '%s' is not supported (only local refs "
                                   "starting with '#')",
                                   ref);
        return NULL;
    }
    const cJSON *cur = st->s->root;
    const char *p = ref + 1;
    if (*p != '\0' && *p != '/') {
        st->fatal = keel_error_set(st->err, KEEL_EINVAL,
                                   "schema: $ref '%s' is not supported (only JSON-pointer "
                                   "fragments such as '#/definitions/x')",
                                   ref);
        return NULL;
    }
    char tok[1024];
    while (cur && *p == '/') {
        p++;
        size_t n = 0;
        bool bad = false;
        for (; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '%' && p[1] && p[2]) {
                char hex[3] = {p[1], p[2], 0};
                char *e;
                long v = strtol(hex, &e, 16);
                if (*e == '\0' && v > 0) {
                    ch = (char)v;
                    p += 2;
                }
            }
            if (ch == '~') {
                char next = p[1];
                if (next == '0' || next == '1') {
                    ch = next == '0' ? '~' : '/';
                    p++;
                } else {
                    bad = true;
                }
            }
            if (n + 1 >= sizeof tok)
                bad = true;
            else
                tok[n++] = ch;
        }
        tok[n] = '\0';
        if (bad) {
            cur = NULL;
            break;
        }
        if (cJSON_IsObject(cur)) {
            cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
        } else if (cJSON_IsArray(cur)) {
            char *e;
            long i = strtol(tok, &e, 10);
            cur = (*tok && *e == '\0' && i >= 0) ? cJSON_GetArrayItem(cur, (int)i) : NULL;
        } else {
            cur = NULL;
        }
    }
    if (!cur || (!cJSON_IsObject(cur) && !cJSON_IsBool(cur))) {
        st->fatal = keel_error_set(st->err, KEEL_EINVAL,
                                   "schema: $ref '%s' does not resolve to a schema", ref);
        return NULL;
    }
    return cur;
}

/* Run a regex from the schema; one reached only through a $ref is compiled here. */
static bool regex_search(vstate *st, const cJSON *node, const char *pattern, const char *subject)
{
    const regex_t *re = regex_find(st->s, node);
    if (re)
        return regexec(re, subject, 0, NULL, 0) == 0;
    regex_t tmp;
    char why[256];
    if (regex_compile(&tmp, pattern, why, sizeof why) != 0) {
        st->fatal =
            keel_error_set(st->err, KEEL_EINVAL,
                           "schema: regular expression '%.200s' cannot be used: %s", pattern, why);
        return false;
    }
    bool m = regexec(&tmp, subject, 0, NULL, 0) == 0;
    regfree(&tmp);
    return m;
}

static bool validate(vstate *st, const cJSON *schema, const cJSON *inst, int depth, bool collect);

static bool validate_at_key(vstate *st, const cJSON *schema, const cJSON *inst, const char *key,
                            int depth, bool collect)
{
    size_t len = st->ptr.len;
    sb_push_token(&st->ptr, key);
    bool ok = validate(st, schema, inst, depth, collect);
    sb_truncate(&st->ptr, len);
    return ok;
}

static bool validate_at_index(vstate *st, const cJSON *schema, const cJSON *inst, size_t i,
                              int depth, bool collect)
{
    size_t len = st->ptr.len;
    sb_push_index(&st->ptr, i);
    bool ok = validate(st, schema, inst, depth, collect);
    sb_truncate(&st->ptr, len);
    return ok;
}

/* An item or property that a `false` additionalItems/additionalProperties/items forbids. */
static void add_error_at_index(vstate *st, bool collect, size_t i, const char *keyword,
                               const char *reason)
{
    size_t len = st->ptr.len;
    sb_push_index(&st->ptr, i);
    add_error(st, collect, keyword, "%s", reason);
    sb_truncate(&st->ptr, len);
}

#define FAIL()                                                                                     \
    do {                                                                                           \
        ok = false;                                                                                \
        if (!collect || stopped(st))                                                               \
            return false;                                                                          \
    } while (0)

static bool validate_number(vstate *st, const cJSON *schema, const cJSON *inst, bool collect)
{
    bool ok = true;
    double x = inst->valuedouble;
    char a[40], b[40];
    const cJSON *kw;
    if (cJSON_IsNumber(kw = cJSON_GetObjectItemCaseSensitive(schema, "minimum")) &&
        x < kw->valuedouble) {
        add_error(st, collect, "minimum", "%s is less than the minimum %s", fmt_num(x, a, 40),
                  fmt_num(kw->valuedouble, b, 40));
        FAIL();
    }
    if (cJSON_IsNumber(kw = cJSON_GetObjectItemCaseSensitive(schema, "maximum")) &&
        x > kw->valuedouble) {
        add_error(st, collect, "maximum", "%s is greater than the maximum %s", fmt_num(x, a, 40),
                  fmt_num(kw->valuedouble, b, 40));
        FAIL();
    }
    if (cJSON_IsNumber(kw = cJSON_GetObjectItemCaseSensitive(schema, "exclusiveMinimum")) &&
        x <= kw->valuedouble) {
        add_error(st, collect, "exclusiveMinimum", "%s must be greater than %s", fmt_num(x, a, 40),
                  fmt_num(kw->valuedouble, b, 40));
        FAIL();
    }
    if (cJSON_IsNumber(kw = cJSON_GetObjectItemCaseSensitive(schema, "exclusiveMaximum")) &&
        x >= kw->valuedouble) {
        add_error(st, collect, "exclusiveMaximum", "%s must be less than %s", fmt_num(x, a, 40),
                  fmt_num(kw->valuedouble, b, 40));
        FAIL();
    }
    if (cJSON_IsNumber(kw = cJSON_GetObjectItemCaseSensitive(schema, "multipleOf")) &&
        kw->valuedouble > 0) {
        double m = kw->valuedouble;
        double q = x / m;
        bool multiple;
        if (!isfinite(q))
            multiple = false;
        else if (fmod(x, m) == 0)
            multiple = true;
        else
            /* binary floats: 0.0075 / 0.0001 is 75.00000000000001 */
            multiple = fabs(q - nearbyint(q)) <= 1e-9 * fmax(1.0, fabs(q));
        if (!multiple) {
            add_error(st, collect, "multipleOf", "%s is not a multiple of %s", fmt_num(x, a, 40),
                      fmt_num(m, b, 40));
            FAIL();
        }
    }
    return ok;
}

static bool validate_string(vstate *st, const cJSON *schema, const cJSON *inst, bool collect)
{
    bool ok = true;
    const cJSON *kw;
    size_t n = utf8_length(inst->valuestring);
    if (is_count(kw = cJSON_GetObjectItemCaseSensitive(schema, "minLength")) &&
        (double)n < kw->valuedouble) {
        add_error(st, collect, "minLength", "string is %zu characters long, at least %.0f needed",
                  n, kw->valuedouble);
        FAIL();
    }
    if (is_count(kw = cJSON_GetObjectItemCaseSensitive(schema, "maxLength")) &&
        (double)n > kw->valuedouble) {
        add_error(st, collect, "maxLength", "string is %zu characters long, at most %.0f allowed",
                  n, kw->valuedouble);
        FAIL();
    }
    if (cJSON_IsString(kw = cJSON_GetObjectItemCaseSensitive(schema, "pattern"))) {
        bool m = regex_search(st, kw, kw->valuestring, inst->valuestring);
        if (stopped(st))
            return false;
        if (!m) {
            add_error(st, collect, "pattern", "string does not match the pattern '%.200s'",
                      kw->valuestring);
            FAIL();
        }
    }
    return ok;
}

static bool is_schema(const cJSON *j)
{
    return j && (cJSON_IsObject(j) || cJSON_IsBool(j));
}

static bool validate_array(vstate *st, const cJSON *schema, const cJSON *inst, int depth,
                           bool collect)
{
    bool ok = true;
    const cJSON *kw;
    size_t n = (size_t)cJSON_GetArraySize(inst);
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(schema, "prefixItems");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
    const cJSON *tuple = cJSON_IsArray(prefix) ? prefix : cJSON_IsArray(items) ? items : NULL;
    /* the schema for the items after the tuple: items (2020-12) or additionalItems (draft 7) */
    const cJSON *rest = NULL;
    const char *rest_kw = "items";
    if (cJSON_IsArray(prefix)) {
        rest = is_schema(items) ? items : NULL;
    } else if (cJSON_IsArray(items)) {
        rest = cJSON_GetObjectItemCaseSensitive(schema, "additionalItems");
        rest = is_schema(rest) ? rest : NULL;
        rest_kw = "additionalItems";
    } else if (is_schema(items)) {
        rest = items;
    }
    const cJSON *tsub = tuple ? tuple->child : NULL;
    size_t i = 0;
    for (const cJSON *it = inst->child; it; it = it->next, i++) {
        if (tsub) {
            if (!validate_at_index(st, tsub, it, i, depth + 1, collect))
                FAIL();
            tsub = tsub->next;
        } else if (tuple && !tsub && !rest) {
            break;
        } else if (rest) {
            if (cJSON_IsFalse(rest)) {
                char msg[96];
                snprintf(msg, sizeof msg, "no item is allowed at index %zu (at most %zu items)", i,
                         tuple ? (size_t)cJSON_GetArraySize(tuple) : (size_t)0);
                add_error_at_index(st, collect, i, rest_kw, msg);
                FAIL();
            } else if (!validate_at_index(st, rest, it, i, depth + 1, collect)) {
                FAIL();
            }
        }
    }
    if (is_count(kw = cJSON_GetObjectItemCaseSensitive(schema, "minItems")) &&
        (double)n < kw->valuedouble) {
        add_error(st, collect, "minItems", "array has %zu items, at least %.0f needed", n,
                  kw->valuedouble);
        FAIL();
    }
    if (is_count(kw = cJSON_GetObjectItemCaseSensitive(schema, "maxItems")) &&
        (double)n > kw->valuedouble) {
        add_error(st, collect, "maxItems", "array has %zu items, at most %.0f allowed", n,
                  kw->valuedouble);
        FAIL();
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(schema, "uniqueItems"))) {
        size_t a = 0;
        bool dup = false;
        for (const cJSON *x = inst->child; x && !dup; x = x->next, a++) {
            size_t b = a + 1;
            for (const cJSON *y = x->next; y; y = y->next, b++)
                if (json_equal(x, y)) {
                    add_error(st, collect, "uniqueItems", "items %zu and %zu are equal", a, b);
                    dup = true;
                    break;
                }
        }
        if (dup)
            FAIL();
    }
    if (is_schema(kw = cJSON_GetObjectItemCaseSensitive(schema, "contains"))) {
        bool found = false;
        for (const cJSON *it = inst->child; it && !found; it = it->next)
            found = validate(st, kw, it, depth + 1, false);
        if (stopped(st))
            return false;
        if (!found) {
            add_error(st, collect, "contains", "no item matches the 'contains' schema");
            FAIL();
        }
    }
    return ok;
}

static bool validate_object(vstate *st, const cJSON *schema, const cJSON *inst, int depth,
                            bool collect)
{
    bool ok = true;
    const cJSON *kw;
    size_t n = (size_t)cJSON_GetArraySize(inst);
    if (cJSON_IsArray(kw = cJSON_GetObjectItemCaseSensitive(schema, "required"))) {
        for (const cJSON *r = kw->child; r; r = r->next)
            if (cJSON_IsString(r) && !cJSON_GetObjectItemCaseSensitive(inst, r->valuestring)) {
                add_error(st, collect, "required", "missing required property '%.200s'",
                          r->valuestring);
                FAIL();
            }
    }
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(schema, "patternProperties");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
    for (const cJSON *m = inst->child; m; m = m->next) {
        bool known = false;
        const cJSON *ps =
            cJSON_IsObject(props) ? cJSON_GetObjectItemCaseSensitive(props, m->string) : NULL;
        if (ps) {
            known = true;
            if (!validate_at_key(st, ps, m, m->string, depth + 1, collect))
                FAIL();
        }
        if (cJSON_IsObject(pp)) {
            for (const cJSON *p = pp->child; p; p = p->next) {
                bool hit = regex_search(st, p, p->string, m->string);
                if (stopped(st))
                    return false;
                if (hit) {
                    known = true;
                    if (!validate_at_key(st, p, m, m->string, depth + 1, collect))
                        FAIL();
                }
            }
        }
        if (!known && is_schema(ap)) {
            if (cJSON_IsFalse(ap)) {
                size_t len = st->ptr.len;
                sb_push_token(&st->ptr, m->string);
                add_error(st, collect, "additionalProperties", "property '%.200s' is not allowed",
                          m->string);
                sb_truncate(&st->ptr, len);
                FAIL();
            } else if (!validate_at_key(st, ap, m, m->string, depth + 1, collect)) {
                FAIL();
            }
        }
    }
    if (is_count(kw = cJSON_GetObjectItemCaseSensitive(schema, "minProperties")) &&
        (double)n < kw->valuedouble) {
        add_error(st, collect, "minProperties", "object has %zu properties, at least %.0f needed",
                  n, kw->valuedouble);
        FAIL();
    }
    if (is_count(kw = cJSON_GetObjectItemCaseSensitive(schema, "maxProperties")) &&
        (double)n > kw->valuedouble) {
        add_error(st, collect, "maxProperties", "object has %zu properties, at most %.0f allowed",
                  n, kw->valuedouble);
        FAIL();
    }
    return ok;
}

static bool validate(vstate *st, const cJSON *schema, const cJSON *inst, int depth, bool collect)
{
    if (stopped(st))
        return false;
    if (cJSON_IsTrue(schema))
        return true;
    if (cJSON_IsFalse(schema)) {
        add_error(st, collect, "false", "no value is allowed here");
        return false;
    }
    if (!cJSON_IsObject(schema)) {
        st->fatal = keel_error_set(st->err, KEEL_EINVAL, "schema: a subschema is not an object");
        return false;
    }
    if (depth > KEEL_SCHEMA_MAX_DEPTH) {
        /* Always reported, even inside anyOf/not: the value was not fully checked. */
        if (!st->depth_hit)
            add_error(st, true, "depth",
                      "nesting deeper than %d levels of schemas (or a $ref cycle); not checked",
                      KEEL_SCHEMA_MAX_DEPTH);
        st->depth_hit = true;
        return false;
    }
    bool ok = true;
    const cJSON *kw;

    if (cJSON_IsString(kw = cJSON_GetObjectItemCaseSensitive(schema, "$ref"))) {
        const cJSON *target = resolve_ref(st, kw->valuestring);
        if (!target)
            return false;
        if (!validate(st, target, inst, depth + 1, collect))
            FAIL();
        if (!st->s->ref_with_siblings)
            return ok; /* draft 7: keywords next to $ref are ignored */
    }

    if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "type"))) {
        bool match = false;
        if (cJSON_IsString(kw)) {
            match = type_matches(inst, kw->valuestring);
            if (!match)
                add_error(st, collect, "type", "expected %s, got %s", kw->valuestring,
                          instance_type(inst));
        } else if (cJSON_IsArray(kw)) {
            char names[256] = "";
            for (const cJSON *t = kw->child; t; t = t->next) {
                if (!cJSON_IsString(t))
                    continue;
                match = match || type_matches(inst, t->valuestring);
                size_t l = strlen(names);
                snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", t->valuestring);
            }
            if (!match)
                add_error(st, collect, "type", "expected one of %s; got %s", names,
                          instance_type(inst));
        } else {
            match = true;
        }
        if (!match)
            FAIL();
    }
    if (cJSON_IsArray(kw = cJSON_GetObjectItemCaseSensitive(schema, "enum"))) {
        bool found = false;
        for (const cJSON *v = kw->child; v && !found; v = v->next)
            found = json_equal(v, inst);
        if (!found) {
            add_error(st, collect, "enum", "value is not one of the allowed values");
            FAIL();
        }
    }
    if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "const")) && !json_equal(kw, inst)) {
        add_error(st, collect, "const", "value is not the required constant");
        FAIL();
    }

    if (cJSON_IsNumber(inst) && !validate_number(st, schema, inst, collect))
        FAIL();
    else if (cJSON_IsString(inst) && !validate_string(st, schema, inst, collect))
        FAIL();
    else if (cJSON_IsArray(inst) && !validate_array(st, schema, inst, depth, collect))
        FAIL();
    else if (cJSON_IsObject(inst) && !validate_object(st, schema, inst, depth, collect))
        FAIL();

    if (cJSON_IsArray(kw = cJSON_GetObjectItemCaseSensitive(schema, "allOf"))) {
        for (const cJSON *sub = kw->child; sub; sub = sub->next)
            if (!validate(st, sub, inst, depth + 1, collect))
                FAIL();
    }
    if (cJSON_IsArray(kw = cJSON_GetObjectItemCaseSensitive(schema, "anyOf"))) {
        bool any = false;
        for (const cJSON *sub = kw->child; sub && !any; sub = sub->next)
            any = validate(st, sub, inst, depth + 1, false);
        if (stopped(st))
            return false;
        if (!any) {
            add_error(st, collect, "anyOf", "value matches none of the 'anyOf' schemas");
            FAIL();
        }
    }
    if (cJSON_IsArray(kw = cJSON_GetObjectItemCaseSensitive(schema, "oneOf"))) {
        int first = -1, second = -1, i = 0;
        for (const cJSON *sub = kw->child; sub && second < 0; sub = sub->next, i++)
            if (validate(st, sub, inst, depth + 1, false)) {
                if (first < 0)
                    first = i;
                else
                    second = i;
            }
        if (stopped(st))
            return false;
        if (first < 0) {
            add_error(st, collect, "oneOf", "value matches none of the 'oneOf' schemas");
            FAIL();
        } else if (second >= 0) {
            add_error(st, collect, "oneOf",
                      "value matches 'oneOf' schemas %d and %d; exactly one must match", first,
                      second);
            FAIL();
        }
    }
    if (is_schema(kw = cJSON_GetObjectItemCaseSensitive(schema, "not"))) {
        bool m = validate(st, kw, inst, depth + 1, false);
        if (stopped(st))
            return false;
        if (m) {
            add_error(st, collect, "not", "value must not match the 'not' schema");
            FAIL();
        }
    }
    if (is_schema(kw = cJSON_GetObjectItemCaseSensitive(schema, "if"))) {
        bool cond = validate(st, kw, inst, depth + 1, false);
        if (stopped(st))
            return false;
        const cJSON *branch = cJSON_GetObjectItemCaseSensitive(schema, cond ? "then" : "else");
        if (is_schema(branch) && !validate(st, branch, inst, depth + 1, collect))
            FAIL();
    }
    return ok;
}

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

int keel_schema_validate(const keel_schema *schema, const char *instance_json,
                         keel_schema_result *out, keel_error *err)
{
    if (!out)
        return keel_error_set(err, KEEL_EINVAL, "schema: no result to fill");
    memset(out, 0, sizeof *out);
    if (!schema || !instance_json)
        return keel_error_set(err, KEEL_EINVAL, "schema: no schema or no instance text");
    const char *end = NULL;
    cJSON *inst = cJSON_ParseWithOpts(instance_json, &end, 1);
    if (!inst) {
        char where[96];
        parse_error_where(instance_json, end, where, sizeof where);
        return keel_error_set(err, KEEL_EINVAL, "instance: not valid JSON%s", where);
    }
    vstate st = {.s = schema, .res = out, .err = err, .fatal = KEEL_OK};
    sb_puts(&st.ptr, "");
    bool ok = validate(&st, schema->root, inst, 0, true);
    cJSON_Delete(inst);
    free(st.ptr.p);
    if (st.fatal != KEEL_OK || st.oom || st.ptr.oom) {
        keel_schema_result_dispose(out);
        if (st.fatal != KEEL_OK)
            return st.fatal;
        return keel_error_set(err, KEEL_ENOMEM, "schema: out of memory");
    }
    out->valid = ok && !st.depth_hit && out->count == 0;
    return KEEL_OK;
}
