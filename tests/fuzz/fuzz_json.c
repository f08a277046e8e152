/*
 * fuzz_json - keel's strict JSON reader and exact printer (include/keel/json.h, src/json/json.c).
 *
 * Properties, for strict parsing, KEEL_JSON_LAST_WINS and KEEL_JSON_KEEP_NUL:
 *   - keel_json_check accepts exactly what keel_json_parse accepts, and refuses the rest with
 *     the same message;
 *   - every string in an accepted tree is valid UTF-8 (no NUL, no surrogates, nothing overlong;
 *     with KEEL_JSON_KEEP_NUL, C0 80 stands for U+0000);
 *   - no container nests deeper than KEEL_JSON_MAX_DEPTH;
 *   - parse -> print -> parse gives an equal tree (same types, member names in the same order,
 *     same strings, and numbers with the same text), compact and indented alike, and printing
 *     that tree again gives the same text;
 *   - a number's text is a JSON number (keel_json_number_from_text takes it).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "keel/json.h"

#define MAX_LEN (256 * 1024)

/* Check what keel_json_parse promises of a tree; returns its depth. */
static int inspect(const cJSON *item, bool keep_nul)
{
    if (item->string && !fuzz_valid_utf8(item->string, keep_nul))
        fuzz_fail("a member name is not valid UTF-8");
    if (cJSON_IsString(item) && !fuzz_valid_utf8(item->valuestring, keep_nul))
        fuzz_fail("a string is not valid UTF-8");
    if (cJSON_IsNumber(item)) {
        char buf[32];
        const char *text = keel_json_number_text(item, buf);
        cJSON *n = text ? keel_json_number_from_text(text) : NULL;
        if (n == NULL)
            fuzz_fail("a number's text '%s' is not a JSON number", text ? text : "(null)");
        cJSON_Delete(n);
    }
    int deepest = 0;
    for (const cJSON *c = item->child; c; c = c->next) {
        int d = inspect(c, keep_nul);
        deepest = d > deepest ? d : deepest;
    }
    return cJSON_IsArray(item) || cJSON_IsObject(item) ? deepest + 1 : 0;
}

static bool equal(const cJSON *a, const cJSON *b)
{
    if ((a->type & 0xff) != (b->type & 0xff))
        return false;
    if ((a->string == NULL) != (b->string == NULL) ||
        (a->string && strcmp(a->string, b->string) != 0))
        return false;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsNumber(a)) {
        char ba[32], bb[32];
        const char *ta = keel_json_number_text(a, ba), *tb = keel_json_number_text(b, bb);
        return ta && tb && strcmp(ta, tb) == 0;
    }
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next)
        if (!equal(x, y))
            return false;
    return x == NULL && y == NULL;
}

/* text (printed by keel_json_print*) must parse back to a tree equal to `tree`. */
static cJSON *reparse(const char *text, const cJSON *tree, unsigned flags, const char *how)
{
    cJSON *again;
    keel_error err;
    if (keel_json_parse_str(text, flags & KEEL_JSON_KEEP_NUL, "printed", &again, &err) != KEEL_OK)
        fuzz_fail("keel_json_parse refused what keel_json_print%s wrote: %s\n%s", how, err.message,
                  text);
    if (!equal(tree, again))
        fuzz_fail("parse -> print%s -> parse changed the tree:\n%s", how, text);
    return again;
}

static void one(const uint8_t *data, size_t size, unsigned flags)
{
    cJSON *tree;
    keel_error err, cerr;
    int rc = keel_json_parse((const char *)data, size, flags, "fuzz", &tree, &err);
    int checked = keel_json_check((const char *)data, size, flags, "fuzz", &cerr);
    if (rc != checked)
        fuzz_fail("keel_json_parse says %d, keel_json_check says %d (flags %u)", rc, checked,
                  flags);
    if (rc != KEEL_OK && strcmp(err.message, cerr.message) != 0)
        fuzz_fail("keel_json_parse says '%s', keel_json_check says '%s' (flags %u)", err.message,
                  cerr.message, flags);
    if (rc != KEEL_OK)
        return;
    if (inspect(tree, flags & KEEL_JSON_KEEP_NUL) > KEEL_JSON_MAX_DEPTH)
        fuzz_fail("a tree nested deeper than %d was accepted", KEEL_JSON_MAX_DEPTH);
    char *text = keel_json_print(tree);
    char *pretty = keel_json_print_pretty(tree);
    if (text == NULL || pretty == NULL)
        abort();
    cJSON *again = reparse(text, tree, flags, "");
    cJSON_Delete(reparse(pretty, tree, flags, "_pretty"));
    char *text2 = keel_json_print(again);
    if (text2 == NULL || strcmp(text, text2) != 0)
        fuzz_fail("printing is not stable:\n%s\n%s", text, text2 ? text2 : "(null)");
    cJSON_free(text2);
    cJSON_free(pretty);
    cJSON_free(text);
    cJSON_Delete(again);
    cJSON_Delete(tree);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    one(data, size, KEEL_JSON_STRICT);
    one(data, size, KEEL_JSON_LAST_WINS);
    one(data, size, KEEL_JSON_KEEP_NUL);
    return 0;
}
