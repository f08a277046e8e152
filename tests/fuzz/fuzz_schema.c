/*
 * fuzz_schema - JSON Schema compile and validate (include/keel/schema.h): tools' argument
 * schemas, llm.chat's response_format.schema (a workflow's input) and what models answer.
 *
 * Input: the schema, a NUL byte, the instance. Without a NUL the schema is validated against
 * itself. (Make one with: printf '%s\0%s' "$(cat s.json)" "$(cat i.json)" > seed.)
 *
 * Each schema is compiled as 2020-12 and as draft 7 (for a root without `$schema`).
 *
 * Properties: a result says valid exactly when it lists no errors, keeps at most
 * KEEL_SCHEMA_MAX_ERRORS, each with a pointer, keyword and reason in valid UTF-8; validating the
 * text and validating its tree (keel_schema_validate_tree) give the same result.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "keel/json.h"
#include "keel/schema.h"

#define MAX_LEN (64 * 1024)

static void check(const keel_schema_result *r)
{
    if (r->valid != (r->count == 0))
        fuzz_fail("valid=%d with %zu errors", r->valid, r->count);
    if (r->count > KEEL_SCHEMA_MAX_ERRORS || (r->count > 0) != (r->errors != NULL))
        fuzz_fail("%zu errors kept (limit %d)", r->count, KEEL_SCHEMA_MAX_ERRORS);
    if (r->truncated && r->count != KEEL_SCHEMA_MAX_ERRORS)
        fuzz_fail("truncated with only %zu errors", r->count);
    for (size_t i = 0; i < r->count; i++) {
        const keel_schema_error *e = &r->errors[i];
        if (!e->pointer || !e->keyword || !e->reason)
            fuzz_fail("error %zu lacks a pointer, keyword or reason", i);
        /* They travel in JSON (tool errors, llm.chat's output_error) and Temporal payloads. */
        if (!fuzz_valid_utf8(e->pointer, true) || !fuzz_valid_utf8(e->keyword, false) ||
            !fuzz_valid_utf8(e->reason, true))
            fuzz_fail("error %zu is not valid UTF-8: %s: %s", i, e->pointer, e->reason);
    }
}

static bool same(const keel_schema_result *a, const keel_schema_result *b)
{
    if (a->valid != b->valid || a->count != b->count || a->truncated != b->truncated)
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->errors[i].pointer, b->errors[i].pointer) != 0 ||
            strcmp(a->errors[i].keyword, b->errors[i].keyword) != 0 ||
            strcmp(a->errors[i].reason, b->errors[i].reason) != 0)
            return false;
    return true;
}

/* Compile under one dialect and validate, by text and by tree. */
static void run(const char *schema_text, const char *instance, keel_schema_dialect dialect)
{
    keel_schema_options opts;
    if (keel_schema_options_init(&opts, KEEL_SCHEMA_OPTIONS_VERSION) != KEEL_OK)
        abort();
    opts.dialect = dialect;
    keel_schema *s;
    keel_error err;
    if (keel_schema_new_with(&s, schema_text, &opts, &err) != KEEL_OK)
        return;
    keel_schema_result r1 = {0}, r2 = {0};
    int rc1 = keel_schema_validate(s, instance, &r1, &err);
    if (rc1 == KEEL_OK)
        check(&r1);
    /* The same instance as a tree, read the way keel_schema_validate reads it. */
    cJSON *tree = NULL;
    int rc2 = keel_json_parse_str(instance, KEEL_JSON_LAST_WINS | KEEL_JSON_KEEP_NUL, "instance",
                                  &tree, NULL);
    if (rc2 == KEEL_OK)
        rc2 = keel_schema_validate_tree(s, tree, &r2, &err);
    if (rc1 != rc2 || (rc1 == KEEL_OK && !same(&r1, &r2)))
        fuzz_fail("validating the text and its tree disagree (%d, %d)", rc1, rc2);
    cJSON_Delete(tree);
    keel_schema_result_dispose(&r1);
    keel_schema_result_dispose(&r2);
    keel_schema_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    char *schema_text, *instance;
    if (!fuzz_split(data, size, &schema_text, &instance))
        instance = fuzz_strndup((const uint8_t *)schema_text, strlen(schema_text));
    run(schema_text, instance, KEEL_SCHEMA_DRAFT2020_12);
    run(schema_text, instance, KEEL_SCHEMA_DRAFT7);
    free(schema_text);
    free(instance);
    return 0;
}
