/* src/schema/schema.c: focused tests, and the official JSON-Schema-Test-Suite (draft7 files). */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/schema.h"

static keel_schema *compile(const char *json)
{
    keel_schema *s = NULL;
    keel_error err;
    ck_assert_msg(keel_schema_new(&s, json, &err) == KEEL_OK, "%s: %s", json, err.message);
    return s;
}

/* Validate and return the result; the caller disposes it. */
static keel_schema_result check_ok(const char *schema, const char *instance)
{
    keel_schema *s = compile(schema);
    keel_schema_result r;
    keel_error err;
    ck_assert_msg(keel_schema_validate(s, instance, &r, &err) == KEEL_OK, "%s", err.message);
    keel_schema_free(s);
    return r;
}

static void expect_error(const keel_schema_result *r, size_t i, const char *pointer,
                         const char *keyword, const char *reason_part)
{
    ck_assert_msg(i < r->count, "only %zu errors", r->count);
    ck_assert_str_eq(r->errors[i].pointer, pointer);
    ck_assert_str_eq(r->errors[i].keyword, keyword);
    ck_assert_msg(strstr(r->errors[i].reason, reason_part), "reason '%s' lacks '%s'",
                  r->errors[i].reason, reason_part);
}

START_TEST(reports_pointer_keyword_and_reason)
{
    const char *schema = "{\"type\":\"object\",\"required\":[\"name\",\"qty\"],"
                         "\"properties\":{\"name\":{\"type\":\"string\"},\"qty\":{\"type\":"
                         "\"integer\",\"minimum\":1},"
                         "\"a/b~c\":{\"type\":\"string\",\"maxLength\":2},"
                         "\"lines\":{\"type\":\"array\",\"items\":{\"enum\":[1,2]}}},"
                         "\"additionalProperties\":false}";
    keel_schema_result r =
        check_ok(schema, "{\"qty\":0.5,\"a/b~c\":\"h\xc3\xa9llo\",\"lines\":[1,3],\"x\":1}");
    ck_assert(!r.valid);
    ck_assert_int_eq(r.count, 6);
    expect_error(&r, 0, "", "required", "missing required property 'name'");
    expect_error(&r, 1, "/qty", "type", "expected integer, got number");
    expect_error(&r, 2, "/qty", "minimum", "0.5 is less than the minimum 1");
    expect_error(&r, 3, "/a~1b~0c", "maxLength", "5 characters long, at most 2");
    expect_error(&r, 4, "/lines/1", "enum", "not one of the allowed values");
    expect_error(&r, 5, "/x", "additionalProperties", "property 'x' is not allowed");
    keel_schema_result_dispose(&r);
    ck_assert_int_eq(r.count, 0);

    r = check_ok(schema, "{\"name\":\"n\",\"qty\":3,\"lines\":[2]}");
    ck_assert(r.valid);
    ck_assert_int_eq(r.count, 0);
    keel_schema_result_dispose(&r);
}
END_TEST

START_TEST(combinators_and_refs)
{
    const char *schema = "{\"$defs\":{\"pos\":{\"type\":\"number\",\"exclusiveMinimum\":0}},"
                         "\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"}],"
                         "\"items\":{\"$ref\":\"#/$defs/pos\"},"
                         "\"contains\":{\"const\":2},\"uniqueItems\":true}";
    keel_schema_result r = check_ok(schema, "[\"a\",1,2]");
    ck_assert(r.valid);
    keel_schema_result_dispose(&r);
    r = check_ok(schema, "[3,-1,1,1]");
    ck_assert(!r.valid);
    expect_error(&r, 0, "/0", "type", "expected string, got integer");
    expect_error(&r, 1, "/1", "exclusiveMinimum", "-1 must be greater than 0");
    expect_error(&r, 2, "", "uniqueItems", "items 2 and 3 are equal");
    expect_error(&r, 3, "", "contains", "no item matches");
    keel_schema_result_dispose(&r);

    r = check_ok("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}", "5");
    ck_assert(!r.valid);
    expect_error(&r, 0, "", "oneOf", "schemas 0 and 1");
    keel_schema_result_dispose(&r);

    /* 2020-12: keywords next to $ref apply; in draft 7 they do not */
    r = check_ok("{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
                 "\"$defs\":{\"s\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/s\",\"minLength\":3}",
                 "\"ab\"");
    ck_assert(!r.valid);
    expect_error(&r, 0, "", "minLength", "at least 3");
    keel_schema_result_dispose(&r);
    r = check_ok("{\"definitions\":{\"s\":{\"type\":\"string\"}},\"$ref\":\"#/definitions/s\","
                 "\"minLength\":3}",
                 "\"ab\"");
    ck_assert(r.valid);
    keel_schema_result_dispose(&r);
}
END_TEST

START_TEST(rejects_bad_schemas)
{
    const char *bad[][2] = {
        {"{\"type\":", "not valid JSON"},
        {"{} junk", "not valid JSON"},
        {"42", "must be an object or a boolean"},
        {"{\"type\":\"float\"}", "'type' at # names an unknown type"},
        {"{\"properties\":{\"a\":{\"minLength\":\"3\"}}}",
         "'minLength' at #/properties/a must be a non-negative integer"},
        {"{\"required\":\"a\"}", "'required' at # must be an array of strings"},
        {"{\"anyOf\":[]}", "'anyOf' at # must be a non-empty array"},
        {"{\"items\":[{},3]}", "schema at #/items/1 must be an object or a boolean"},
        {"{\"pattern\":\"a(b\"}", "'pattern' at #"},
        {"{\"pattern\":\"(?=a)\"}", "lookaround"},
        {"{\"patternProperties\":{\"\\\\p{L}\":{}}}", "'patternProperties' at #"},
        {"{\"multipleOf\":0}", "greater than 0"},
        {"{\"$ref\":1}", "'$ref' at # must be a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_schema *s = (keel_schema *)1;
        keel_error err;
        ck_assert_msg(keel_schema_new(&s, bad[i][0], &err) == KEEL_EINVAL, "accepted %s",
                      bad[i][0]);
        ck_assert(s == NULL);
        ck_assert_msg(strstr(err.message, bad[i][1]), "%s: message '%s' lacks '%s'", bad[i][0],
                      err.message, bad[i][1]);
    }
    /* unknown keywords are ignored, whatever they hold */
    keel_schema_free(compile("{\"x-whatever\":{\"type\":7},\"description\":3}"));
}
END_TEST

START_TEST(rejects_bad_instances_and_refs)
{
    keel_schema *s = compile("{\"type\":\"object\"}");
    keel_schema_result r;
    keel_error err;
    const char *bad[] = {"", "{", "{\"a\":}", "[1,2", "nul", "{} {}", "\"\\u12\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(keel_schema_validate(s, bad[i], &r, &err), KEEL_EINVAL);
        ck_assert_msg(strstr(err.message, "instance: not valid JSON"), "%s", err.message);
        ck_assert_int_eq(r.count, 0);
        ck_assert_ptr_null(r.errors);
    }
    ck_assert_int_eq(keel_schema_validate(s, NULL, &r, &err), KEEL_EINVAL);
    keel_schema_free(s);

    s = compile("{\"properties\":{\"a\":{\"$ref\":\"http://example.com/s.json#/x\"}}}");
    ck_assert_int_eq(keel_schema_validate(s, "{\"b\":1}", &r, &err), KEEL_OK); /* not reached */
    ck_assert(r.valid);
    keel_schema_result_dispose(&r);
    ck_assert_int_eq(keel_schema_validate(s, "{\"a\":1}", &r, &err), KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "remote $ref 'http://example.com/s.json#/x'"), "%s",
                  err.message);
    keel_schema_free(s);

    s = compile("{\"$ref\":\"#/definitions/missing\"}");
    ck_assert_int_eq(keel_schema_validate(s, "1", &r, &err), KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "'#/definitions/missing' does not resolve"), "%s",
                  err.message);
    keel_schema_free(s);
}
END_TEST

START_TEST(caps_depth_and_error_count)
{
    /* a self-referencing schema against a 10000-deep instance: an error, not a stack overflow */
    size_t depth = 10000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    keel_schema *s = compile("{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}");
    keel_schema_result r;
    keel_error err;
    int rc = keel_schema_validate(s, deep, &r, &err);
    if (rc == KEEL_OK) {
        ck_assert(!r.valid);
        ck_assert_int_eq(r.count, 1);
        ck_assert_str_eq(r.errors[0].keyword, "depth");
        keel_schema_result_dispose(&r);
    } else { /* cJSON's own nesting limit refused the text */
        ck_assert_int_eq(rc, KEEL_EINVAL);
    }
    /* 100 levels: within cJSON's limit, beyond ours */
    deep[100] = '\0';
    memset(deep + 50, ']', 50);
    ck_assert_int_eq(keel_schema_validate(s, deep, &r, &err), KEEL_OK);
    ck_assert(!r.valid);
    ck_assert_str_eq(r.errors[0].keyword, "depth");
    keel_schema_result_dispose(&r);
    keel_schema_free(s);
    free(deep);

    /* a $ref cycle that never descends into the instance */
    s = compile("{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/a\"}},"
                "\"anyOf\":[{\"$ref\":\"#/definitions/a\"}]}");
    ck_assert_int_eq(keel_schema_validate(s, "1", &r, &err), KEEL_OK);
    ck_assert(!r.valid);
    ck_assert_str_eq(r.errors[0].keyword, "depth");
    keel_schema_result_dispose(&r);
    keel_schema_free(s);

    /* many errors: capped */
    s = compile("{\"items\":{\"type\":\"string\"}}");
    char big[4096] = "[";
    for (int i = 0; i < 200; i++)
        strcat(big, i ? ",1" : "1");
    strcat(big, "]");
    ck_assert_int_eq(keel_schema_validate(s, big, &r, &err), KEEL_OK);
    ck_assert(!r.valid);
    ck_assert_int_eq(r.count, KEEL_SCHEMA_MAX_ERRORS);
    ck_assert(r.truncated);
    ck_assert_str_eq(r.errors[63].pointer, "/63");
    keel_schema_result_dispose(&r);
    keel_schema_free(s);
}
END_TEST

START_TEST(numbers_strings_and_equality)
{
    struct {
        const char *schema, *instance;
        bool valid;
    } cases[] = {
        {"{\"type\":\"integer\"}", "1.0", true},
        {"{\"type\":\"integer\"}", "1e3", true},
        {"{\"type\":[\"string\",\"null\"]}", "null", true},
        {"{\"multipleOf\":0.01}", "19.99", true},
        {"{\"multipleOf\":0.01}", "19.995", false},
        {"{\"multipleOf\":0.1}", "0.3", true},
        {"{\"type\":\"integer\",\"multipleOf\":0.123456789}", "1e308", false},
        {"{\"minLength\":2,\"maxLength\":2}", "\"\xe2\x82\xac\xf0\x9f\x98\x80\"", true},
        {"{\"pattern\":\"^\\\\d{3}-\\\\w+$\"}", "\"123-ab_c\"", true},
        {"{\"pattern\":\"^\\\\d{3}-\\\\w+$\"}", "\"12-ab\"", false},
        {"{\"pattern\":\"b\"}", "\"abc\"", true},
        {"{\"const\":{\"a\":[1,{\"b\":2}],\"c\":null}}", "{\"c\":null,\"a\":[1.0,{\"b\":2e0}]}",
         true},
        {"{\"const\":{\"a\":1}}", "{\"a\":1,\"b\":1}", false},
        {"{\"enum\":[false]}", "0", false},
        {"{\"uniqueItems\":true}", "[{\"a\":1,\"b\":2},{\"b\":2,\"a\":1}]", false},
        {"{\"if\":{\"minimum\":10},\"then\":{\"multipleOf\":5},\"else\":{\"maximum\":3}}", "15",
         true},
        {"{\"if\":{\"minimum\":10},\"then\":{\"multipleOf\":5},\"else\":{\"maximum\":3}}", "4",
         false},
        {"{\"not\":{\"type\":\"string\"}}", "1", true},
        {"false", "1", false},
        {"true", "{\"anything\":[]}", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        keel_schema_result r = check_ok(cases[i].schema, cases[i].instance);
        ck_assert_msg(r.valid == cases[i].valid, "%s against %s: expected %s", cases[i].instance,
                      cases[i].schema, cases[i].valid ? "valid" : "invalid");
        keel_schema_result_dispose(&r);
    }
}
END_TEST

/* ---- the official test suite -------------------------------------------------------------- */

#define SUITE_DEFAULT "/usr/share/json-schema-test-suite/tests/draft7"

static const char *const suite_files[] = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "contains",
    "minProperties",
    "maxProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if-then-else",
    "definitions",
    "ref",
    "boolean_schema",
};

/* Cases keel does not run: file, group description, test description (NULL: the whole group). */
static const struct {
    const char *file, *group, *test, *why;
} skips[] = {
    {"definitions", "valid definition", NULL, "remote $ref to the draft-07 metaschema"},
    {"definitions", "invalid definition", NULL, "remote $ref to the draft-07 metaschema"},
    {"ref", "remote ref, containing refs itself", NULL, "remote $ref to the draft-07 metaschema"},
    {"ref", "Recursive references between schemas", NULL,
     "relative $ref ('tree', 'node') resolved against nested $id base URIs"},
};

static const char *skip_reason(const char *file, const char *group, const char *test)
{
    for (size_t i = 0; i < sizeof skips / sizeof skips[0]; i++)
        if (strcmp(skips[i].file, file) == 0 && strcmp(skips[i].group, group) == 0 &&
            (!skips[i].test || strcmp(skips[i].test, test) == 0))
            return skips[i].why;
    return NULL;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

typedef struct report {
    char text[16384];
    size_t len;
    int ran, passed, failed, skipped;
} report;

static void say(report *rep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(report *rep, const char *fmt, ...)
{
    if (rep->len >= sizeof rep->text - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rep->text + rep->len, sizeof rep->text - rep->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        rep->len +=
            (size_t)n < sizeof rep->text - rep->len ? (size_t)n : sizeof rep->text - rep->len - 1;
}

static void run_file(report *rep, const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    char *text = read_text(path);
    cJSON *groups = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cJSON_IsArray(groups)) {
        say(rep, "%s: cannot read or parse %s\n", name, path);
        rep->failed++;
        cJSON_Delete(groups);
        return;
    }
    int passed = 0, failed = 0, skipped = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, groups)
    {
        const char *gdesc = cJSON_GetObjectItem(g, "description")->valuestring;
        char *schema_text = cJSON_PrintUnformatted(cJSON_GetObjectItem(g, "schema"));
        keel_schema *s = NULL;
        keel_error err;
        int crc = KEEL_EINVAL;
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(g, "tests"))
        {
            const char *tdesc = cJSON_GetObjectItem(t, "description")->valuestring;
            if (skip_reason(name, gdesc, tdesc)) {
                skipped++;
                continue;
            }
            if (!s && crc == KEEL_EINVAL) {
                crc = keel_schema_new(&s, schema_text, &err);
                if (crc != KEEL_OK)
                    crc = -100; /* compiled once, failed */
            }
            bool expected = cJSON_IsTrue(cJSON_GetObjectItem(t, "valid"));
            if (!s) {
                failed++;
                say(rep, "  %s / %s / %s: schema refused: %s\n", name, gdesc, tdesc, err.message);
                continue;
            }
            char *inst = cJSON_PrintUnformatted(cJSON_GetObjectItem(t, "data"));
            keel_schema_result r;
            keel_error verr;
            int rc = keel_schema_validate(s, inst, &r, &verr);
            if (rc != KEEL_OK) {
                failed++;
                say(rep, "  %s / %s / %s: validation failed: %s\n", name, gdesc, tdesc,
                    verr.message);
            } else if (r.valid != expected) {
                failed++;
                say(rep, "  %s / %s / %s: expected %s, got %s%s%s\n", name, gdesc, tdesc,
                    expected ? "valid" : "invalid", r.valid ? "valid" : "invalid",
                    r.count ? ": " : "", r.count ? r.errors[0].reason : "");
            } else {
                passed++;
            }
            keel_schema_result_dispose(&r);
            free(inst);
        }
        keel_schema_free(s);
        free(schema_text);
    }
    cJSON_Delete(groups);
    say(rep, "%s: %d passed, %d failed, %d skipped\n", name, passed, failed, skipped);
    rep->ran += passed + failed;
    rep->passed += passed;
    rep->failed += failed;
    rep->skipped += skipped;
}

START_TEST(official_test_suite_draft7)
{
    const char *dir = getenv("KEEL_JSON_SCHEMA_SUITE");
    if (!dir || !*dir)
        dir = SUITE_DEFAULT;
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/type.json", dir);
    FILE *f = fopen(probe, "r");
    ck_assert_msg(f != NULL,
                  "JSON-Schema-Test-Suite not found at %s (apt-get install json-schema-test-suite "
                  "or set KEEL_JSON_SCHEMA_SUITE to its tests/draft7 directory)",
                  dir);
    fclose(f);
    static report rep;
    memset(&rep, 0, sizeof rep);
    for (size_t i = 0; i < sizeof suite_files / sizeof suite_files[0]; i++)
        run_file(&rep, dir, suite_files[i]);
    say(&rep, "total: %d ran, %d passed, %d failed, %d skipped\n", rep.ran, rep.passed, rep.failed,
        rep.skipped);
    if (getenv("KEEL_SCHEMA_SUITE_VERBOSE"))
        fputs(rep.text, stderr);
    ck_assert_msg(rep.failed == 0, "JSON-Schema-Test-Suite failures:\n%s", rep.text);
}
END_TEST

Suite *schema_suite(void)
{
    Suite *s = suite_create("schema");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, reports_pointer_keyword_and_reason);
    tcase_add_test(tc, combinators_and_refs);
    tcase_add_test(tc, rejects_bad_schemas);
    tcase_add_test(tc, rejects_bad_instances_and_refs);
    tcase_add_test(tc, caps_depth_and_error_count);
    tcase_add_test(tc, numbers_strings_and_equality);
    tcase_add_test(tc, official_test_suite_draft7);
    suite_add_tcase(s, tc);
    return s;
}
