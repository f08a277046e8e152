/*
 * fuzz_schema - JSON Schema compile and validate (include/keel/schema.h): tools' argument
 * schemas, llm.chat's response_format.schema (a workflow's input) and what models answer.
 *
 * Input: the schema, a NUL byte, the instance. Without a NUL the schema is validated against
 * itself. (Make one with: printf '%s\0%s' "$(cat s.json)" "$(cat i.json)" > seed.)
 *
 * Properties: a result says valid exactly when it lists no errors, keeps at most
 * KEEL_SCHEMA_MAX_ERRORS, each with a pointer, keyword and reason; validating twice gives the
 * same result.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
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
    for (size_t i = 0; i < r->count; i++)
        if (!r->errors[i].pointer || !r->errors[i].keyword || !r->errors[i].reason)
            fuzz_fail("error %zu lacks a pointer, keyword or reason", i);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    char *schema_text, *instance;
    if (!fuzz_split(data, size, &schema_text, &instance))
        instance = strdup(schema_text);
    keel_schema *s;
    keel_error err;
    if (instance && keel_schema_new(&s, schema_text, &err) == KEEL_OK) {
        keel_schema_result r1 = {0}, r2 = {0};
        int rc1 = keel_schema_validate(s, instance, &r1, &err);
        if (rc1 == KEEL_OK)
            check(&r1);
        int rc2 = keel_schema_validate(s, instance, &r2, &err);
        if (rc1 != rc2 || (rc1 == KEEL_OK && !same(&r1, &r2)))
            fuzz_fail("two validations of one instance disagree");
        keel_schema_result_dispose(&r1);
        keel_schema_result_dispose(&r2);
        keel_schema_free(s);
    }
    free(schema_text);
    free(instance);
    return 0;
}
