/*
 * src/schema/schema.c and src/schema/regex.c: focused tests, the regressions of the hardening
 * issue, and the JSON-Schema-Test-Suite: Debian's draft7 (KEEL_JSON_SCHEMA_SUITE points
 * elsewhere), and 2020-12 cases keel's authors wrote in the suite's format
 * (tests/unit/schema/draft2020-12; KEEL_JSON_SCHEMA_SUITE_2020 points at the official files).
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "keel/json.h"
#include "keel/schema.h"
#include "schema/regex.h"

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

static bool is_valid(const char *schema, const char *instance)
{
    keel_schema_result r = check_ok(schema, instance);
    bool v = r.valid;
    ck_assert(v == (r.count == 0));
    keel_schema_result_dispose(&r);
    return v;
}

/* keel_schema_new must refuse schema with KEEL_EINVAL and a message holding part. */
static void expect_refused(const char *schema, const char *part)
{
    keel_schema *s = (keel_schema *)1;
    keel_error err;
    int rc = keel_schema_new(&s, schema, &err);
    ck_assert_msg(rc == KEEL_EINVAL, "accepted %s", schema);
    ck_assert(s == NULL);
    ck_assert_msg(strstr(err.message, part), "%s: message '%s' lacks '%s'", schema, err.message,
                  part);
}

/* Validation must stop with code and a message holding part. */
static void expect_stopped(const char *schema, const char *instance, int code, const char *part)
{
    keel_schema *s = compile(schema);
    keel_schema_result r;
    keel_error err;
    int rc = keel_schema_validate(s, instance, &r, &err);
    ck_assert_msg(rc == code, "%s against %.80s: rc %d (%s)", schema, instance, rc,
                  rc ? err.message : "validated");
    ck_assert_msg(strstr(err.message, part), "message '%s' lacks '%s'", err.message, part);
    ck_assert(!err.retryable);
    ck_assert_int_eq(r.count, 0);
    ck_assert_ptr_null(r.errors);
    keel_schema_free(s);
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

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
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

    /* 2020-12 (the default): keywords next to $ref apply; in draft 7 they do not */
    r = check_ok("{\"$defs\":{\"s\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/s\",\"minLength\":3}",
                 "\"ab\"");
    ck_assert(!r.valid);
    expect_error(&r, 0, "", "minLength", "at least 3");
    keel_schema_result_dispose(&r);
    ck_assert(is_valid("{\"$schema\":\"http://json-schema.org/draft-07/schema#\","
                       "\"definitions\":{\"s\":{\"type\":\"string\"}},\"$ref\":\"#/definitions/s\","
                       "\"minLength\":3}",
                       "\"ab\""));
    /* the dialect of a schema without $schema can be chosen */
    keel_schema_options o;
    ck_assert_int_eq(keel_schema_options_init(&o, KEEL_SCHEMA_OPTIONS_VERSION), KEEL_OK);
    o.dialect = KEEL_SCHEMA_DRAFT7;
    keel_schema *s = NULL;
    keel_error err;
    ck_assert_int_eq(keel_schema_new_with(&s,
                                          "{\"items\":[{\"type\":\"string\"}],"
                                          "\"additionalItems\":false}",
                                          &o, &err),
                     KEEL_OK);
    ck_assert_int_eq(keel_schema_validate(s, "[\"a\",1]", &r, &err), KEEL_OK);
    ck_assert(!r.valid);
    expect_error(&r, 0, "/1", "additionalItems", "no item is allowed at index 1");
    keel_schema_result_dispose(&r);
    keel_schema_free(s);
    ck_assert_int_eq(keel_schema_options_init(&o, 99), KEEL_EINVAL);
}
END_TEST

START_TEST(rejects_bad_schemas)
{
    const char *bad[][2] = {
        {"{\"type\":", "the schema is not valid JSON"},
        {"{} junk", "the schema is not valid JSON"},
        {"42", "must be an object or a boolean"},
        {"{\"type\":\"float\"}", "'type' at # names an unknown type"},
        {"{\"properties\":{\"a\":{\"minLength\":\"3\"}}}",
         "'minLength' at #/properties/a must be a non-negative integer"},
        {"{\"minLength\":1.5}", "must be a non-negative integer"},
        {"{\"required\":\"a\"}", "'required' at # must be an array of strings"},
        {"{\"anyOf\":[]}", "'anyOf' at # must be a non-empty array"},
        {"{\"prefixItems\":[{},3]}", "schema at #/prefixItems/1 must be an object or a boolean"},
        {"{\"items\":[{}]}", "'items' at # must be a schema in 2020-12"},
        {"{\"pattern\":\"a(b\"}", "'pattern' at # has a regular expression 'a(b'"},
        {"{\"patternProperties\":{\"\\\\a\":{}}}", "'patternProperties' at #"},
        {"{\"multipleOf\":0}", "greater than 0"},
        {"{\"$ref\":1}", "'$ref' at # must be a string"},
        {"{\"exclusiveMaximum\":true}", "draft 4"},
        {"{\"$recursiveRef\":\"#\"}", "2019-09 keyword"},
        {"{\"$schema\":\"http://json-schema.org/draft-07/"
         "schema#\",\"unevaluatedProperties\":false}",
         "is not a draft 7 keyword"},
        {"{\"$schema\":\"http://json-schema.org/draft-04/schema#\"}", "draft 7 and 2020-12 only"},
        {"{\"$schema\":\"https://example.com/my-meta\"}", "neither draft 7, 2020-12"},
        {"{\"$anchor\":\"1a\"}", "'$anchor' at # must be a name"},
        {"{\"$id\":\"https://example.com/a#frag\"}", "must not have a fragment"},
        {"{\"$defs\":{\"a\":{\"$anchor\":\"x\"},\"b\":{\"$anchor\":\"x\"}}}", "names anchor 'x'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(bad[i][0], bad[i][1]);
    /* unknown keywords are ignored, whatever they hold */
    keel_schema_free(
        compile("{\"x-whatever\":{\"type\":7},\"description\":3,\"format\":\"ipv4\"}"));
    /* U+0000 in a string is a character like any other (keel/json.h's KEEL_JSON_KEEP_NUL) */
    ck_assert(is_valid("{\"const\":\"a\\u0000b\"}", "\"a\\u0000b\""));
    ck_assert(!is_valid("{\"const\":\"a\\u0000b\"}", "\"a\""));
    ck_assert(!is_valid("{\"enum\":[\"a\"]}", "\"a\\u0000\""));
    ck_assert(is_valid("{\"minLength\":3,\"maxLength\":3}", "\"a\\u0000b\""));
    ck_assert(is_valid("{\"pattern\":\"^a.b$\"}", "\"a\\u0000b\""));
    ck_assert(is_valid("{\"pattern\":\"^a\\u0000b$\"}", "\"a\\u0000b\""));
    ck_assert(!is_valid("{\"pattern\":\"^a\\u0000b$\"}", "\"ab\""));
    ck_assert(is_valid("{\"pattern\":\"^a\\\\u0000b$\"}", "\"a\\u0000b\"")); /* a regex escape */
    ck_assert(!is_valid("{\"pattern\":\"^a\\\\u0000b$\"}", "\"ab\""));
    /* a repeated member name keeps its last value, as JSON.parse does */
    ck_assert(is_valid("{\"type\":\"string\",\"type\":\"integer\"}", "3"));
}
END_TEST

START_TEST(rejects_bad_instances_and_refs)
{
    keel_schema *s = compile("{\"type\":\"object\"}");
    keel_schema_result r;
    keel_error err;
    const char *bad[] = {"", "{", "{\"a\":}", "[1,2", "nul", "{} {}", "\"\\u12\"", "[1,]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(keel_schema_validate(s, bad[i], &r, &err), KEEL_EINVAL);
        ck_assert_msg(strstr(err.message, "the instance is not valid JSON"), "%s", err.message);
        ck_assert_int_eq(r.count, 0);
        ck_assert_ptr_null(r.errors);
    }
    ck_assert_int_eq(keel_schema_validate(s, NULL, &r, &err), KEEL_EINVAL);
    keel_schema_free(s);

    /* every reference resolves when the schema is compiled, reached or not */
    expect_refused("{\"properties\":{\"a\":{\"$ref\":\"http://example.com/s.json#/x\"}}}",
                   "'$ref' at #/properties/a 'http://example.com/s.json#/x' does not resolve");
    expect_refused("{\"$ref\":\"#/definitions/missing\"}",
                   "'#/definitions/missing' does not resolve");
    expect_refused("{\"$ref\":\"#nowhere\"}", "the schema has no anchor 'nowhere'");
    expect_refused("{\"$ref\":\"#/a~2b\"}", "does not resolve");
    expect_refused("{\"$ref\":\"#/a%zz\"}", "percent-encoded");
    expect_refused("{\"$ref\":\"other.json\"}",
                   "'other.json' does not resolve: the schema has no $id, so a relative reference");
    /* JSON Pointer array indices: strictly decimal, no leading zero, no wrap-around */
    expect_refused("{\"prefixItems\":[{},{}],\"$ref\":\"#/prefixItems/01\"}", "does not resolve");
    expect_refused("{\"prefixItems\":[{},{}],\"$ref\":\"#/prefixItems/-1\"}", "does not resolve");
    expect_refused("{\"prefixItems\":[{},{}],\"$ref\":\"#/prefixItems/18446744073709551617\"}",
                   "does not resolve");
    ck_assert(!is_valid("{\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"number\"}],"
                        "\"$ref\":\"#/prefixItems/1\"}",
                        "\"x\""));
}
END_TEST

/* ---- regressions: the inputs of /work/shared/repro (issue 10), each broke the old code ---- */

START_TEST(repro_stacked_plus_is_refused_quickly)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* glibc regcomp took 11 s and 3 GB on this; JavaScript refuses it ("nothing to repeat") */
    expect_refused("{\"type\": \"string\", \"pattern\": \"a++++++++++++++++++++++++\"}",
                   "nothing to repeat");
    /* valid in JavaScript, but too large to compile: refused, not gigabytes */
    expect_refused("{\"pattern\":\"((a{0,100}){0,100}){0,100}\"}",
                   "regular expression is too large");
    ck_assert(seconds_since(&t0) < 2.0);
}
END_TEST

START_TEST(repro_ref_loops_are_refused)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_refused("{\"anyOf\":[{\"$ref\":\"#\"},{\"$ref\":\"#\"}]}",
                   "never moving into the instance");
    expect_refused("{\"allOf\":[{\"$ref\":\"#\"},{\"$ref\":\"#\"}]}",
                   "never moving into the instance");
    expect_refused(
        "{\"$defs\":{\"a\":{\"not\":{\"$ref\":\"#/$defs/b\"}},\"b\":{\"$ref\":\"#/$defs/a\"}}}",
        "never moving into the instance");
    ck_assert(seconds_since(&t0) < 1.0);
    /* recursion that moves into the instance is fine */
    ck_assert(
        is_valid("{\"properties\":{\"a\":{\"$ref\":\"#\"}},\"anyOf\":[{\"type\":\"object\"}]}",
                 "{\"a\":{\"a\":{}}}"));
}
END_TEST

START_TEST(repro_enum_and_unique_items_equality)
{
    /* {"a":1,"a":1} reads as {"a":1}: not equal to {"a":1,"b":2} */
    ck_assert(!is_valid("{\"enum\":[{\"a\":1,\"a\":1}]}", "{\"a\":1,\"b\":2}"));
    ck_assert(is_valid("{\"enum\":[{\"a\":1,\"a\":1}]}", "{\"a\":1}"));
    /* [{"a":1},{"a":1,"b":1}] has distinct items */
    ck_assert(is_valid("{\"type\":\"array\",\"uniqueItems\":true}",
                       "[{\"a\":1,\"a\":1},{\"a\":1,\"b\":1}]"));
    ck_assert(
        !is_valid("{\"uniqueItems\":true}", "[{\"a\":1,\"b\":[1,2]},{\"b\":[1.0,2e0],\"a\":1}]"));
    ck_assert(is_valid("{\"uniqueItems\":true}", "[[1,2],[2,1],{\"a\":[1,2]},{\"a\":[2,1]}]"));
    /* numbers by value, exactly */
    ck_assert(is_valid("{\"const\":1}", "1.0"));
    ck_assert(is_valid("{\"const\":100}", "1e2"));
    ck_assert(!is_valid("{\"const\":9007199254740993}", "9007199254740992"));
    ck_assert(!is_valid("{\"uniqueItems\":true}", "[0,-0,0.0]"));
    ck_assert(is_valid("{\"uniqueItems\":true}", "[12345678901234567891,12345678901234567892]"));
    ck_assert(!is_valid("{\"enum\":[false]}", "0"));
    ck_assert(!is_valid("{\"enum\":[null]}", "false"));
}
END_TEST

START_TEST(repro_ref_array_index_does_not_wrap)
{
    /* #/items/4294967297 used to wrap to items[1]; in draft 7 items holds the array */
    expect_refused("{\"$schema\":\"http://json-schema.org/draft-07/schema#\","
                   "\"items\":[{\"type\":\"string\"},{\"type\":\"number\"}],"
                   "\"$ref\":\"#/items/4294967297\"}",
                   "index '4294967297' is not there");
    keel_schema_options o;
    keel_schema_options_init(&o, KEEL_SCHEMA_OPTIONS_VERSION);
    o.dialect = KEEL_SCHEMA_DRAFT7;
    keel_schema *s = (keel_schema *)1;
    keel_error err;
    ck_assert_int_eq(
        keel_schema_new_with(&s,
                             "{\"items\":[{\"type\":\"string\"},{\"type\":\"number\"}],"
                             "\"$ref\":\"#/items/4294967297\"}",
                             &o, &err),
        KEEL_EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.message, "'$ref' at #"), "%s", err.message);
}
END_TEST

START_TEST(repro_regex_matches_code_points)
{
    ck_assert(is_valid("{\"pattern\":\"^.$\"}", "\"\xc3\xa9\""));
    ck_assert(is_valid("{\"pattern\":\"^\xc3\xa9+$\"}", "\"\xc3\xa9\xc3\xa9\""));
    ck_assert(is_valid("{\"pattern\":\"^.{3}$\"}", "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\""));
    ck_assert(is_valid("{\"pattern\":\"^\\\\p{Letter}+$\"}", "\"\xc3\xa9t\xc3\xa9\""));
    ck_assert(is_valid("{\"pattern\":\"^\\\\u00e9$\"}", "\"\xc3\xa9\""));
    ck_assert(is_valid("{\"pattern\":\"\\\\bfoo\\\\b\"}", "\"a foo b\""));
    ck_assert(is_valid("{\"minLength\":2,\"maxLength\":2}", "\"\xe2\x82\xac\xf0\x9f\x98\x80\""));
    /* lazy quantifiers compile (the old header said they were refused) */
    ck_assert(is_valid("{\"pattern\":\"^a+?b*?$\"}", "\"aab\""));
}
END_TEST

/* ---- limits: work, depth, regex ----------------------------------------------------------- */

START_TEST(work_budget_stops_exponential_schemas)
{
    /* a chain of 40 definitions, each trying the next twice: 2^40 steps without a budget */
    char *schema = malloc(64 * 1024);
    strcpy(schema, "{\"$ref\":\"#/$defs/d0\",\"$defs\":{");
    for (int i = 0; i < 40; i++)
        sprintf(schema + strlen(schema),
                "\"d%d\":{\"anyOf\":[{\"$ref\":\"#/$defs/d%d\"},{\"$ref\":\"#/$defs/d%d\"}]},", i,
                i + 1, i + 1);
    strcat(schema, "\"d40\":false}}");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_stopped(schema, "1", KEEL_EEXHAUSTED, "validation stopped after 10000100 steps");
    ck_assert_msg(seconds_since(&t0) < 30.0, "took %.1f s", seconds_since(&t0));
    free(schema);
}
END_TEST

START_TEST(depth_limit_is_an_error_not_a_crash)
{
    /* an instance as deep as the reader allows, under a schema that recurses with it: fine */
    char deep[256];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    ck_assert(is_valid("{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}", deep));
    /* one level more is refused by the reader */
    keel_schema *s = compile("true");
    keel_schema_result r;
    keel_error err;
    char deeper[256];
    memset(deeper, '[', 101);
    memset(deeper + 101, ']', 101);
    deeper[202] = '\0';
    ck_assert_int_eq(keel_schema_validate(s, deeper, &r, &err), KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "nested deeper than 100"), "%s", err.message);
    keel_schema_free(s);
    /* a chain of 600 references is deeper than KEEL_SCHEMA_MAX_DEPTH: stopped, not crashed */
    char *schema = malloc(64 * 1024);
    strcpy(schema, "{\"$ref\":\"#/$defs/d0\",\"$defs\":{");
    for (int i = 0; i < 600; i++)
        sprintf(schema + strlen(schema), "\"d%d\":{\"$ref\":\"#/$defs/d%d\"},", i, i + 1);
    strcat(schema, "\"d600\":true}}");
    expect_stopped(schema, "1", KEEL_EEXHAUSTED, "nested deeper than 512 levels");
    free(schema);
    /* a recursive schema with a dynamic reference and an applicator per level, on an instance
     * nested 99 deep: about 300 levels, within the limit */
    char inst[1024] = "";
    for (int i = 0; i < 99; i++)
        strcat(inst, "{\"a\":");
    strcat(inst, "1");
    for (int i = 0; i < 99; i++)
        strcat(inst, "}");
    ck_assert(is_valid("{\"$dynamicAnchor\":\"n\",\"anyOf\":[{\"type\":\"integer\"},"
                       "{\"additionalProperties\":{\"$dynamicRef\":\"#n\"}}]}",
                       inst));
}
END_TEST

START_TEST(regex_limits_are_errors)
{
    char inst[128] = "\"";
    memset(inst + 1, 'a', 40);
    strcpy(inst + 41, "!\"");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_stopped("{\"pattern\":\"^(a+)+$\"}", inst, KEEL_EEXHAUSTED,
                   "the regular expression '^(a+)+$' of 'pattern' at #, searching the string at "
                   "the instance root: the search hit the match limit (1000000 steps");
    expect_stopped("{\"patternProperties\":{\"^(a|aa)+$\":true}}",
                   "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\":1}", KEEL_EEXHAUSTED,
                   "of 'patternProperties'");
    ck_assert(seconds_since(&t0) < 10.0);
    char *long_pattern = malloc(KEEL_SCHEMA_MAX_PATTERN + 64);
    strcpy(long_pattern, "{\"pattern\":\"");
    memset(long_pattern + 12, 'a', KEEL_SCHEMA_MAX_PATTERN + 1);
    strcpy(long_pattern + 13 + KEEL_SCHEMA_MAX_PATTERN, "\"}");
    expect_refused(long_pattern, "longer than 4096 bytes (KEEL_SCHEMA_MAX_PATTERN)");
    free(long_pattern);
}
END_TEST

START_TEST(dynamic_loops_stop)
{
    /* no static cycle (inner's $dynamicRef lands on its own $defs/x), but the dynamic scope sends
     * it back to the root, at the same value, forever */
    expect_stopped("{\"$id\":\"https://example.com/root\",\"$dynamicAnchor\":\"m\","
                   "\"allOf\":[{\"$ref\":\"inner\"}],\"$defs\":{\"i\":{\"$id\":\"inner\","
                   "\"$dynamicRef\":\"#m\",\"$defs\":{\"x\":{\"$dynamicAnchor\":\"m\"}}}}}",
                   "1", KEEL_EEXHAUSTED, "applies itself to the instance root again");
}
END_TEST

START_TEST(trees_built_in_code)
{
    keel_schema *s = compile("{\"type\":\"array\",\"items\":{\"type\":\"number\"}}");
    keel_schema_result r;
    keel_error err;
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(1.5));
    ck_assert_int_eq(keel_schema_validate_tree(s, a, &r, &err), KEEL_OK);
    ck_assert(r.valid);
    keel_schema_result_dispose(&r);
    cJSON_AddItemToArray(a, cJSON_CreateNumber(HUGE_VAL));
    ck_assert_int_eq(keel_schema_validate_tree(s, a, &r, &err), KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "a number that is not finite"), "%s", err.message);
    cJSON_Delete(a);
    ck_assert_int_eq(keel_schema_validate_tree(s, NULL, &r, &err), KEEL_EINVAL);
    keel_schema_free(s);
}
END_TEST

START_TEST(error_count_is_capped)
{
    keel_schema *s = compile("{\"items\":{\"type\":\"string\"}}");
    keel_schema_result r;
    keel_error err;
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

START_TEST(large_instances_pass_within_budget)
{
    /* 20000 objects, each through properties, patterns and enum: well within the budget */
    const char *schema = "{\"type\":\"array\",\"uniqueItems\":true,\"items\":{\"type\":\"object\","
                         "\"required\":[\"id\",\"sku\"],\"properties\":{\"id\":{\"type\":"
                         "\"integer\"},\"sku\":{\"pattern\":\"^[A-Z]{3}-\\\\d+$\"},\"kind\":"
                         "{\"enum\":[\"a\",\"b\",\"c\"]}},\"additionalProperties\":false}}";
    size_t n = 20000;
    char *inst = malloc(n * 64 + 8), *p = inst;
    *p++ = '[';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s{\"id\":%zu,\"sku\":\"ABC-%zu\",\"kind\":\"b\"}", i ? "," : "", i, i);
    strcpy(p, "]");
    ck_assert(is_valid(schema, inst));
    free(inst);
}
END_TEST

/* ---- numbers, strings, keywords ----------------------------------------------------------- */

START_TEST(numbers_strings_and_equality)
{
    struct {
        const char *schema, *instance;
        bool valid;
    } cases[] = {
        {"{\"type\":\"integer\"}", "1.0", true},
        {"{\"type\":\"integer\"}", "1e3", true},
        {"{\"type\":\"integer\"}", "1.5e1", true},
        {"{\"type\":\"integer\"}", "1.5e0", false},
        {"{\"type\":[\"string\",\"null\"]}", "null", true},
        {"{\"multipleOf\":0.01}", "19.99", true},
        {"{\"multipleOf\":0.01}", "19.995", false},
        {"{\"multipleOf\":0.1}", "0.3", true},
        {"{\"multipleOf\":0.0001}", "0.0075", true},
        {"{\"multipleOf\":3}", "12345678901234567891", false},
        {"{\"multipleOf\":3}", "12345678901234567893", true},
        {"{\"type\":\"integer\",\"multipleOf\":0.123456789}", "1e308", false},
        {"{\"maximum\":9007199254740992}", "9007199254740993", false},
        {"{\"exclusiveMinimum\":1e-400}", "0", false},
        {"{\"minimum\":-1.5}", "-1.49", true},
        {"{\"pattern\":\"^\\\\d{3}-\\\\w+$\"}", "\"123-ab_c\"", true},
        {"{\"pattern\":\"^\\\\d{3}-\\\\w+$\"}", "\"12-ab\"", false},
        {"{\"pattern\":\"b\"}", "\"abc\"", true},
        {"{\"const\":{\"a\":[1,{\"b\":2}],\"c\":null}}", "{\"c\":null,\"a\":[1.0,{\"b\":2e0}]}",
         true},
        {"{\"const\":{\"a\":1}}", "{\"a\":1,\"b\":1}", false},
        {"{\"if\":{\"minimum\":10},\"then\":{\"multipleOf\":5},\"else\":{\"maximum\":3}}", "15",
         true},
        {"{\"if\":{\"minimum\":10},\"then\":{\"multipleOf\":5},\"else\":{\"maximum\":3}}", "4",
         false},
        {"{\"not\":{\"type\":\"string\"}}", "1", true},
        {"false", "1", false},
        {"true", "{\"anything\":[]}", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(is_valid(cases[i].schema, cases[i].instance) == cases[i].valid,
                      "%s against %s: expected %s", cases[i].instance, cases[i].schema,
                      cases[i].valid ? "valid" : "invalid");
}
END_TEST

START_TEST(newer_keywords_assert)
{
    struct {
        const char *schema, *instance;
        bool valid;
    } cases[] = {
        {"{\"dependentRequired\":{\"a\":[\"b\"]}}", "{\"a\":1}", false},
        {"{\"dependentRequired\":{\"a\":[\"b\"]}}", "{\"a\":1,\"b\":2}", true},
        {"{\"dependentSchemas\":{\"a\":{\"required\":[\"c\"]}}}", "{\"a\":1}", false},
        {"{\"dependencies\":{\"a\":[\"b\"]}}", "{\"a\":1}", false},
        {"{\"$schema\":\"http://json-schema.org/draft-07/schema#\","
         "\"dependencies\":{\"a\":{\"maxProperties\":1}}}",
         "{\"a\":1,\"b\":2}", false},
        {"{\"propertyNames\":{\"maxLength\":2}}", "{\"abc\":1}", false},
        {"{\"propertyNames\":{\"pattern\":\"^x\"}}", "{\"xa\":1}", true},
        {"{\"contains\":{\"type\":\"string\"},\"minContains\":2}", "[\"a\",1]", false},
        {"{\"contains\":{\"type\":\"string\"},\"maxContains\":1}", "[\"a\",\"b\"]", false},
        {"{\"contains\":{\"type\":\"string\"},\"minContains\":0}", "[]", true},
        {"{\"properties\":{\"a\":true},\"unevaluatedProperties\":false}", "{\"a\":1,\"b\":2}",
         false},
        {"{\"allOf\":[{\"properties\":{\"b\":true}}],\"properties\":{\"a\":true},"
         "\"unevaluatedProperties\":false}",
         "{\"a\":1,\"b\":2}", true},
        {"{\"anyOf\":[{\"properties\":{\"b\":{\"type\":\"string\"}}},true],"
         "\"unevaluatedProperties\":false}",
         "{\"b\":2}", false},
        {"{\"prefixItems\":[true],\"unevaluatedItems\":false}", "[1,2]", false},
        {"{\"prefixItems\":[true],\"contains\":{\"type\":\"string\"},\"unevaluatedItems\":false}",
         "[1,\"x\"]", true},
        {"{\"$defs\":{\"x\":{\"$anchor\":\"pos\",\"minimum\":0}},\"$ref\":\"#pos\"}", "-1", false},
        {"{\"$id\":\"https://example.com/root.json\",\"$defs\":{\"a\":{\"$id\":\"sub/a.json\","
         "\"type\":\"string\"}},\"$ref\":\"https://example.com/sub/a.json\"}",
         "1", false},
        {"{\"format\":\"ipv4\",\"contentMediaType\":\"application/json\",\"contentEncoding\":"
         "\"base64\",\"contentSchema\":{\"type\":\"integer\"}}",
         "\"not an address {\"", true},
        {"{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"format\":\"regex\"}",
         "\"^a\\\\Z\"", false},
        {"{\"format\":\"regex\"}", "\"^a\\\\Z\"", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(is_valid(cases[i].schema, cases[i].instance) == cases[i].valid,
                      "%s against %s: expected %s", cases[i].instance, cases[i].schema,
                      cases[i].valid ? "valid" : "invalid");
    /* errors of the new keywords say where and why */
    keel_schema_result r = check_ok("{\"properties\":{\"a\":true},\"unevaluatedProperties\":false,"
                                    "\"dependentRequired\":{\"a\":[\"c\"]},"
                                    "\"propertyNames\":{\"maxLength\":1}}",
                                    "{\"a\":1,\"bb\":2}");
    ck_assert(!r.valid);
    expect_error(&r, 0, "/bb", "propertyNames", "property name 'bb' does not match");
    expect_error(&r, 1, "", "dependentRequired", "property 'c' is required when 'a' is present");
    expect_error(&r, 2, "/bb", "unevaluatedProperties", "property 'bb' is not allowed");
    keel_schema_result_dispose(&r);
}
END_TEST

START_TEST(dynamic_refs_follow_the_dynamic_scope)
{
    /* a generic list whose item type the referring schema chooses */
    const char *schema =
        "{\"$id\":\"https://example.com/strings\",\"$ref\":\"list\","
        "\"$defs\":{\"t\":{\"$dynamicAnchor\":\"item\",\"type\":\"string\"},"
        "\"list\":{\"$id\":\"list\",\"type\":\"array\",\"items\":{\"$dynamicRef\":\"#item\"},"
        "\"$defs\":{\"any\":{\"$dynamicAnchor\":\"item\"}}}}}";
    ck_assert(is_valid(schema, "[\"a\",\"b\"]"));
    ck_assert(!is_valid(schema, "[\"a\",2]"));
    /* the draft 2020-12 metaschema, built in, validates schemas through $dynamicRef */
    const char *meta = "{\"$ref\":\"https://json-schema.org/draft/2020-12/schema\"}";
    ck_assert(is_valid(meta, "{\"properties\":{\"a\":{\"minLength\":1}}}"));
    ck_assert(!is_valid(meta, "{\"properties\":{\"a\":{\"minLength\":-1}}}"));
    ck_assert(!is_valid(meta, "{\"$defs\":{\"a\":{\"type\":\"set\"}}}"));
    const char *meta7 = "{\"$ref\":\"http://json-schema.org/draft-07/schema#\"}";
    ck_assert(!is_valid(meta7, "{\"definitions\":{\"a\":{\"type\":1}}}"));
}
END_TEST

START_TEST(registered_resources_and_vocabularies)
{
    keel_schema_resource res[] = {
        {"https://example.com/money.json",
         "{\"$defs\":{\"usd\":{\"type\":\"number\",\"multipleOf\":0.01}}}"},
        {"https://example.com/meta-no-validation",
         "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
         "\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/vocab/core\":true,"
         "\"https://json-schema.org/draft/2020-12/vocab/applicator\":true,"
         "\"https://example.com/vocab/unknown-optional\":false}}"},
        {"https://example.com/meta-unknown",
         "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
         "\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/vocab/core\":true,"
         "\"https://example.com/vocab/unknown-required\":true}}"},
        {"https://example.com/broken.json", "{\"$ref\":\"#/nowhere\"}"},
        {"https://example.com/lib.json",
         "{\"$defs\":{\"p\":{\"$id\":\"https://example.com/parts/pos.json\",\"minimum\":0}}}"},
    };
    keel_schema_options o;
    keel_schema_options_init(&o, KEEL_SCHEMA_OPTIONS_VERSION);
    o.resources = res;
    o.nresources = sizeof res / sizeof res[0];
    o.base_uri = "https://example.com/order.json";
    keel_schema *s = NULL;
    keel_error err;
    keel_schema_result r;
    ck_assert_msg(keel_schema_new_with(&s,
                                       "{\"properties\":{\"total\":{\"$ref\":"
                                       "\"money.json#/$defs/usd\"}}}",
                                       &o, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_int_eq(keel_schema_validate(s, "{\"total\":12.345}", &r, &err), KEEL_OK);
    ck_assert(!r.valid);
    expect_error(&r, 0, "/total", "multipleOf", "12.345 is not a multiple of 0.01");
    keel_schema_result_dispose(&r);
    keel_schema_free(s);
    /* a schema known by an $id inside a registered document (and broken.json is not compiled) */
    ck_assert_msg(keel_schema_new_with(&s, "{\"$ref\":\"parts/pos.json\"}", &o, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_int_eq(keel_schema_validate(s, "-1", &r, &err), KEEL_OK);
    ck_assert(!r.valid);
    keel_schema_result_dispose(&r);
    keel_schema_free(s);
    /* a metaschema without the validation vocabulary: its keywords do not assert */
    ck_assert_int_eq(keel_schema_new_with(&s,
                                          "{\"$schema\":\"https://example.com/meta-no-validation\","
                                          "\"properties\":{\"a\":false},\"minimum\":10}",
                                          &o, &err),
                     KEEL_OK);
    ck_assert_int_eq(keel_schema_validate(s, "1", &r, &err), KEEL_OK);
    ck_assert(r.valid);
    keel_schema_result_dispose(&r);
    ck_assert_int_eq(keel_schema_validate(s, "{\"a\":1}", &r, &err), KEEL_OK);
    ck_assert(!r.valid);
    keel_schema_result_dispose(&r);
    keel_schema_free(s);
    /* an unknown vocabulary marked required is refused; so is a dangling $ref in a resource */
    ck_assert_int_eq(
        keel_schema_new_with(&s, "{\"$schema\":\"https://example.com/meta-unknown\"}", &o, &err),
        KEEL_EINVAL);
    ck_assert_msg(
        strstr(err.message, "requires vocabulary https://example.com/vocab/unknown-required"), "%s",
        err.message);
    ck_assert_int_eq(keel_schema_new_with(&s, "{\"$ref\":\"broken.json\"}", &o, &err), KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "'$ref' at https://example.com/broken.json#"), "%s",
                  err.message);
}
END_TEST

/* ---- regular expressions ------------------------------------------------------------------ */

static int search(const char *pattern, const char *subject)
{
    keel_regex *re = NULL;
    char why[300];
    ck_assert_msg(keel_regex_compile(&re, pattern, why, sizeof why) == KEEL_OK, "%s: %s", pattern,
                  why);
    keel_regex_scratch *scratch = NULL;
    int m = keel_regex_search(re, subject, strlen(subject), &scratch, why, sizeof why);
    keel_regex_scratch_free(scratch);
    keel_regex_free(re);
    return m;
}

START_TEST(regex_follows_ecma262)
{
    struct {
        const char *pattern, *subject;
        int match;
    } cases[] = {
        {"^.$", "\xc3\xa9", 1},
        {"^.{3}$", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 1},
        {"^.$", "\n", 0},
        {"^.$", "\xe2\x80\xa8", 0}, /* U+2028 */
        {"^[^]$", "\n", 1},
        {"^[]$", "a", 0},
        {"^\\p{Letter}$", "\xc3\xa9", 1},
        {"^\\p{L}$", "1", 0},
        {"^\\p{Lu}$", "A", 1},
        {"^\\P{Lu}$", "A", 0},
        {"^\\p{digit}+$", "\xe0\xa7\xaa\xe0\xa7\xa8", 1},
        {"^\\p{Script=Greek}$", "\xce\xb1", 1},
        {"^\\p{sc=Grek}$", "a", 0},
        {"^[\\p{L}\\d]+$", "a1\xc3\xa9", 1},
        {"^\\u00e9$", "\xc3\xa9", 1},
        {"^\\u{1F600}$", "\xf0\x9f\x98\x80", 1},
        {"^\\uD83D\\uDE00$", "\xf0\x9f\x98\x80", 1},
        {"^\\x41$", "A", 1},
        {"^\\cJ$", "\n", 1},
        {"^\\cj$", "\n", 1},
        {"^\\t\\n\\v\\f\\r$", "\t\n\v\f\r", 1},
        {"^\\d$", "\xe0\xa5\xa8", 0}, /* DEVANAGARI DIGIT TWO */
        {"^\\w$", "\xc3\xa9", 0},
        {"^\\W$", "\xc3\xa9", 1},
        {"\\bfoo\\b", "a foo.", 1},
        {"\\bfoo\\b", "afoo", 0},
        {"^\\s+$",
         " \t\v\f\xc2\xa0\xef\xbb\xbf\xe2\x80\xa8\xe2\x80\xa9\xe1\x9a\x80\xe2\x80\x8a"
         "\xe2\x80\xaf\xe2\x81\x9f\xe3\x80\x80\n\r",
         1},
        {"^\\s$", "\xe2\x80\x8b", 0}, /* ZERO WIDTH SPACE is not white space */
        {"^\\S$", "\xc2\xa0", 0},
        {"^[\\S]$", "a", 1},
        {"^[^\\S]$", " ", 1},
        {"^[^\\Sx]$", "x", 0},
        {"^[a\\S]$", " ", 0},
        /* PCRE2 10.42 would match these ([^\W\p{L}] is a digit or _) */
        {"^[^\\W\\p{L}]$", "\xf0\x9f\x98\x80", 0},
        {"^[^\\W\\p{L}]$", "5", 1},
        {"^[^\\D\\p{L}]$", "\xc3\xa9", 0},
        {"^abc$", "abc\n", 0},
        {"^a", "ba", 0},
        {"b", "abc", 1},
        {"^a+?$", "aaa", 1},
        {"^(?=a)a$", "a", 1},
        {"^(?!a).$", "a", 0},
        {"(?<=a)b", "ab", 1},
        {"(?<!a)b", "ab", 0},
        {"^(?<x>a)\\k<x>$", "aa", 1},
        {"^(a)\\1$", "aa", 1},
        {"^\\1(a)$", "a", 1}, /* a forward reference matches the empty string, as in JS */
        {"^[\\-]$", "-", 1},
        {"^[a-c-]$", "-", 1},
        {"^\\/\\.\\*$", "/.*", 1},
        {"^[\\b]$", "\b", 1},
        {"^a{2,3}$", "aaaa", 0},
        {"^# x$", "# x", 1}, /* PCRE2's extended-mode characters are plain here */
        /* lone surrogates are valid escapes that UTF-8 text can never match */
        {"\\uD800", "x", 0},
        {"^a\\uDE00?$", "a", 1},
        {"^[\\uD800a]$", "a", 1},
        {"^[\\uD800-\\uDFFF]$", "a", 0},
        {"^[^\\uD800-\\uDFFF]$", "a", 1},
        {"^[a-\\uFFFF]+$", "b\xef\xbf\xbf\xee\x80\x80", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(search(cases[i].pattern, cases[i].subject) == cases[i].match,
                      "/%s/ on '%s': expected %d", cases[i].pattern, cases[i].subject,
                      cases[i].match);
}
END_TEST

START_TEST(regex_refuses_what_javascript_refuses)
{
    const char *bad[][2] = {
        {"\\a", "invalid escape \\a"},
        {"a\\Z", "invalid escape \\Z"},
        {"\\A", "invalid escape \\A"},
        {"a++", "nothing to repeat"},
        {"a*+", "nothing to repeat"},
        {"a{2}{3}", "nothing to repeat"},
        {"*a", "nothing to repeat"},
        {"(?>a)", "unsupported group"},
        {"(?i)a", "unsupported group"},
        {"(?#c)a", "unsupported group"},
        {"(?=a)*", "nothing to repeat"},
        {"^*", "nothing to repeat"},
        {"\\b+", "nothing to repeat"},
        {"a{", "incomplete quantifier"},
        {"a}", "lone '}'"},
        {"]", "lone ']'"},
        {"a{3,2}", "out of order"},
        {"[z-a]", "out of order"},
        {"[\\d-z]", "class escape cannot bound a range"},
        {"\\2(a)", "backreference \\2 to a group that does not exist"},
        {"\\k<x>", "non-existent"},
        {"\\p{Foo}", "unknown Unicode property 'Foo'"},
        {"\\p{Script=Nope}", "unknown property"},
        {"\\cA\\c1", "\\c must be followed by a letter"},
        {"\\x4", "\\x needs two hex digits"},
        {"\\u12", "invalid \\u escape"},
        {"\\u{110000}", "above U+10FFFF"},
        {"\\01", "octal"},
        {"\\-", "\\- outside"},
        {"(a", "missing )"},
        {"a)", "unmatched )"},
        {"[a", "unterminated"},
        {"a{70000}", "above 65535"},
        {"(?<=a+)b", "lookbehind"},
        {"\\", "ends with a backslash"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_regex *re = (keel_regex *)1;
        char why[300];
        ck_assert_msg(keel_regex_compile(&re, bad[i][0], why, sizeof why) == KEEL_EINVAL,
                      "/%s/ compiled", bad[i][0]);
        ck_assert_ptr_null(re);
        ck_assert_msg(strstr(why, bad[i][1]), "/%s/: '%s' lacks '%s'", bad[i][0], why, bad[i][1]);
    }
}
END_TEST

/* ---- the JSON-Schema-Test-Suite ----------------------------------------------------------- */

#define SUITE_DRAFT7 "/usr/share/json-schema-test-suite/tests/draft7"
#define SUITE_2020   "tests/unit/schema/draft2020-12"
/* The optional files keel runs besides every required one. */
static const char *const optional_files[] = {"optional/ecmascript-regex.json",
                                             "optional/non-bmp-regex.json"};

/*
 * Cases keel does not run: file, group description, test description (NULL: the whole group).
 * There are none: the suite's remote references are to http://localhost:1234/, which is its
 * remotes/ directory, registered with keel_schema_new_with, and U+0000 in strings is read with
 * KEEL_JSON_KEEP_NUL. The table stays for a case that ever needs the network.
 */
static const struct {
    const char *file, *group, *test, *why;
} skips[] = {
    {"", "", NULL, ""},
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
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
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
    char text[32768];
    size_t len;
    int ran, passed, failed, skipped;
    keel_schema_resource *remotes;
    size_t nremotes, capremotes;
    keel_schema_dialect dialect;
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

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.json files of dir (or, with subdirs, every file below it), sorted; NULL-terminated. */
static char **list_json(const char *dir, const char *prefix, char **list, size_t *n, bool subdirs)
{
    DIR *d = opendir(dir);
    if (!d)
        return list;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[2048], rel[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(rel, sizeof rel, "%s%s", prefix, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            if (subdirs) {
                char sub[1100];
                snprintf(sub, sizeof sub, "%s/", rel);
                list = list_json(path, sub, list, n, true);
            }
            continue;
        }
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        list = realloc(list, (*n + 2) * sizeof *list);
        list[(*n)++] = strdup(rel);
        list[*n] = NULL;
    }
    closedir(d);
    if (list)
        qsort(list, *n, sizeof *list, name_cmp);
    return list;
}

/* The suite's remotes/ directory, served at http://localhost:1234/ in the suite's own runs. */
static void load_remotes(report *rep, const char *dir)
{
    size_t n = 0;
    char **files = list_json(dir, "", NULL, &n, true);
    for (size_t i = 0; i < n; i++) {
        char path[3100], uri[1100];
        snprintf(path, sizeof path, "%.2000s/%.1000s", dir, files[i]);
        snprintf(uri, sizeof uri, "http://localhost:1234/%.1000s", files[i]);
        char *text = read_text(path);
        if (text) {
            rep->remotes = realloc(rep->remotes, (rep->nremotes + 1) * sizeof *rep->remotes);
            rep->remotes[rep->nremotes++] = (keel_schema_resource){strdup(uri), text};
        }
        free(files[i]);
    }
    free(files);
}

static void free_remotes(report *rep)
{
    for (size_t i = 0; i < rep->nremotes; i++) {
        free((char *)rep->remotes[i].uri);
        free((char *)rep->remotes[i].json);
    }
    free(rep->remotes);
}

static void run_case(report *rep, const char *name, const char *gdesc, keel_schema *s,
                     const char *refused, const cJSON *t, int *passed, int *failed)
{
    const char *tdesc = cJSON_GetObjectItem(t, "description")->valuestring;
    bool expected = cJSON_IsTrue(cJSON_GetObjectItem(t, "valid"));
    if (!s) {
        (*failed)++;
        say(rep, "  %s / %s / %s: schema refused: %s\n", name, gdesc, tdesc, refused);
        return;
    }
    char *inst = keel_json_print(cJSON_GetObjectItem(t, "data"));
    keel_schema_result r;
    keel_error verr;
    int rc = keel_schema_validate(s, inst, &r, &verr);
    if (rc != KEEL_OK) {
        (*failed)++;
        say(rep, "  %s / %s / %s: validation failed: %s\n", name, gdesc, tdesc, verr.message);
    } else if (r.valid != expected) {
        (*failed)++;
        say(rep, "  %s / %s / %s: expected %s, got %s%s%s\n", name, gdesc, tdesc,
            expected ? "valid" : "invalid", r.valid ? "valid" : "invalid", r.count ? ": " : "",
            r.count ? r.errors[0].reason : "");
    } else {
        (*passed)++;
    }
    keel_schema_result_dispose(&r);
    cJSON_free(inst);
}

static void run_group(report *rep, const char *name, const cJSON *g, int *passed, int *failed,
                      int *skipped)
{
    const char *gdesc = cJSON_GetObjectItem(g, "description")->valuestring;
    char *schema_text = keel_json_print(cJSON_GetObjectItem(g, "schema"));
    keel_schema_options o;
    keel_schema_options_init(&o, KEEL_SCHEMA_OPTIONS_VERSION);
    o.dialect = rep->dialect;
    o.resources = rep->remotes;
    o.nresources = rep->nremotes;
    keel_schema *s = NULL;
    keel_error err;
    bool compiled = false;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(g, "tests"))
    {
        if (skip_reason(name, gdesc, cJSON_GetObjectItem(t, "description")->valuestring)) {
            (*skipped)++;
            continue;
        }
        if (!compiled) {
            compiled = true;
            keel_schema_new_with(&s, schema_text, &o, &err);
        }
        run_case(rep, name, gdesc, s, err.message, t, passed, failed);
    }
    keel_schema_free(s);
    cJSON_free(schema_text);
}

static void run_file(report *rep, const char *dir, const char *name)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = read_text(path);
    cJSON *groups = NULL;
    keel_error err;
    /* keel's reader keeps numbers exact; cJSON reads the files that hold U+0000 (see skips) */
    if (text && keel_json_parse_str(text, KEEL_JSON_STRICT, path, &groups, &err) != KEEL_OK)
        groups = cJSON_Parse(text);
    if (!text || !cJSON_IsArray(groups)) {
        say(rep, "%s: cannot read or parse %s\n", name, path);
        rep->failed++;
        free(text);
        cJSON_Delete(groups);
        return;
    }
    free(text);
    int passed = 0, failed = 0, skipped = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, groups) run_group(rep, name, g, &passed, &failed, &skipped);
    cJSON_Delete(groups);
    say(rep, "%s: %d passed, %d failed, %d skipped\n", name, passed, failed, skipped);
    rep->ran += passed + failed;
    rep->passed += passed;
    rep->failed += failed;
    rep->skipped += skipped;
}

/* Run every *.json in dir and the optional files named above when present, with the suite's
 * remotes/ registered: two levels above dir in the suite's layout, or own_remotes when dir is
 * keel's own. */
static void run_suite(const char *env, const char *own, const char *own_remotes,
                      keel_schema_dialect dialect, int min_tests)
{
    const char *dir = getenv(env);
    bool official = dir && *dir;
    if (!official)
        dir = own;
    static report rep;
    memset(&rep, 0, sizeof rep);
    rep.dialect = dialect;
    size_t n = 0;
    char **files = list_json(dir, "", NULL, &n, false);
    ck_assert_msg(n > 0,
                  "no JSON-Schema-Test-Suite files in %s (apt-get install json-schema-test-suite, "
                  "or set %s to a tests/<draft> directory of the suite)",
                  dir, env);
    char remotes[2048];
    snprintf(remotes, sizeof remotes, "%s/../../remotes", dir);
    load_remotes(&rep, official || !own_remotes ? remotes : own_remotes);
    for (size_t i = 0; i < n; i++) {
        run_file(&rep, dir, files[i]);
        free(files[i]);
    }
    free(files);
    for (size_t i = 0; i < sizeof optional_files / sizeof optional_files[0]; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, optional_files[i]);
        struct stat sb;
        if (stat(path, &sb) == 0)
            run_file(&rep, dir, optional_files[i]);
    }
    free_remotes(&rep);
    say(&rep, "total: %d ran, %d passed, %d failed, %d skipped (%s)\n", rep.ran, rep.passed,
        rep.failed, rep.skipped, dir);
    if (getenv("KEEL_SCHEMA_SUITE_VERBOSE"))
        fputs(rep.text, stderr);
    ck_assert_msg(rep.failed == 0, "JSON-Schema-Test-Suite failures:\n%s", rep.text);
    ck_assert_msg(rep.ran >= min_tests, "only %d tests ran:\n%s", rep.ran, rep.text);
}

START_TEST(official_test_suite_draft7)
{
    run_suite("KEEL_JSON_SCHEMA_SUITE", SUITE_DRAFT7, NULL, KEEL_SCHEMA_DRAFT7, 400);
}
END_TEST

START_TEST(test_suite_2020_12)
{
    run_suite("KEEL_JSON_SCHEMA_SUITE_2020", SUITE_2020, "tests/unit/schema/remotes",
              KEEL_SCHEMA_DRAFT2020_12, 200);
}
END_TEST

Suite *schema_suite(void)
{
    Suite *s = suite_create("schema");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, reports_pointer_keyword_and_reason);
    tcase_add_test(tc, combinators_and_refs);
    tcase_add_test(tc, rejects_bad_schemas);
    tcase_add_test(tc, rejects_bad_instances_and_refs);
    tcase_add_test(tc, repro_stacked_plus_is_refused_quickly);
    tcase_add_test(tc, repro_ref_loops_are_refused);
    tcase_add_test(tc, repro_enum_and_unique_items_equality);
    tcase_add_test(tc, repro_ref_array_index_does_not_wrap);
    tcase_add_test(tc, repro_regex_matches_code_points);
    tcase_add_test(tc, work_budget_stops_exponential_schemas);
    tcase_add_test(tc, depth_limit_is_an_error_not_a_crash);
    tcase_add_test(tc, regex_limits_are_errors);
    tcase_add_test(tc, dynamic_loops_stop);
    tcase_add_test(tc, trees_built_in_code);
    tcase_add_test(tc, error_count_is_capped);
    tcase_add_test(tc, large_instances_pass_within_budget);
    tcase_add_test(tc, numbers_strings_and_equality);
    tcase_add_test(tc, newer_keywords_assert);
    tcase_add_test(tc, dynamic_refs_follow_the_dynamic_scope);
    tcase_add_test(tc, registered_resources_and_vocabularies);
    tcase_add_test(tc, regex_follows_ecma262);
    tcase_add_test(tc, regex_refuses_what_javascript_refuses);
    tcase_add_test(tc, official_test_suite_draft7);
    tcase_add_test(tc, test_suite_2020_12);
    suite_add_tcase(s, tc);
    return s;
}
