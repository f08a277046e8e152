/*
 * activities/tools.c: a model's tool call is checked before anything runs, and every failed
 * check is a structured error (JSON pointer + reason) the workflow can hand back to the model.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "activities/tools.h"

static int never(const keel_tool_call *call, const cJSON *args, char **result, keel_error *err)
{
    (void)call, (void)args, (void)result;
    return keel_error_set(err, KEEL_EINTERNAL, "a tool ran during a check");
}

static const keel_tool tools[] = {
    {.name = "check_budget",
     .description = "Check a budget",
     .schema = "{\"type\":\"object\",\"additionalProperties\":false,"
               "\"required\":[\"cost_center\",\"amount_usd\"],\"properties\":{"
               "\"cost_center\":{\"type\":\"string\",\"pattern\":\"^CC-[0-9]{4}$\"},"
               "\"amount_usd\":{\"type\":\"number\",\"exclusiveMinimum\":0}}}",
     .risk = KEEL_TOOL_READ,
     .scopes = "budget:read",
     .run = never},
    {.name = "create_purchase_order",
     .description = "Create a PO",
     .schema = "{\"type\":\"object\"}",
     .risk = KEEL_TOOL_HIGH_IMPACT,
     .scopes = "po:write",
     .run = never},
};

static const char *const buyer_tools[] = {"check_budget", NULL};
static const keel_tool_grant grants[] = {{"Buyer", buyer_tools}};

static keel_toolbox *box;

static void setup(void)
{
    keel_error err;
    ck_assert_msg(keel_toolbox_new(&box, tools, 2, grants, 1, &err) == KEEL_OK, "%s", err.message);
}

static void teardown(void)
{
    keel_toolbox_free(box);
}

static const char *str(const cJSON *o, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

/* The error's kind, and its first entry's pointer. */
static void expect(cJSON *e, const char *kind, const char *pointer)
{
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(str(e, "error"), kind);
    cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "errors"), 0);
    ck_assert_ptr_nonnull(first);
    ck_assert_str_eq(str(first, "pointer"), pointer);
    ck_assert_ptr_nonnull(str(first, "reason"));
    cJSON_Delete(e);
}

START_TEST(a_valid_call_gives_its_arguments)
{
    cJSON *args = NULL;
    ck_assert_ptr_null(keel_toolbox_check(
        box, "Buyer", "check_budget", "{\"cost_center\":\"CC-1001\",\"amount_usd\":12.5}", &args));
    ck_assert_str_eq(str(args, "cost_center"), "CC-1001");
    cJSON_Delete(args);
}
END_TEST

START_TEST(each_check_fails_with_its_own_error)
{
    cJSON *args = (cJSON *)1;
    expect(keel_toolbox_check(box, "Buyer", "drop_tables", "{}", &args), "unknown_tool", "");
    ck_assert_ptr_null(args);
    expect(keel_toolbox_check(box, "Buyer", "create_purchase_order", "{}", NULL),
           "tool_not_allowed", "");
    expect(keel_toolbox_check(box, "Stranger", "check_budget", "{}", NULL), "tool_not_allowed", "");
    expect(keel_toolbox_check(box, "Buyer", "check_budget", "{\"cost_center\": ", NULL),
           "arguments_not_json", "");
    expect(keel_toolbox_check(box, "Buyer", "check_budget", "[1]", NULL), "invalid_arguments", "");
    expect(keel_toolbox_check(box, "Buyer", "check_budget",
                              "{\"cost_center\":\"CC-1001\",\"amount_usd\":\"12\"}", NULL),
           "invalid_arguments", "/amount_usd");
    expect(keel_toolbox_check(box, "Buyer", "check_budget",
                              "{\"cost_center\":\"1001\",\"amount_usd\":3}", NULL),
           "invalid_arguments", "/cost_center");
}
END_TEST

START_TEST(every_schema_violation_is_listed)
{
    cJSON *e = keel_toolbox_check(box, "Buyer", "check_budget",
                                  "{\"amount_usd\":-1,\"extra\":true}", NULL);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_ge(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "errors")), 3);
    ck_assert_str_eq(str(e, "tool"), "check_budget");
    cJSON_Delete(e);
}
END_TEST

START_TEST(empty_arguments_count_as_an_empty_object)
{
    expect(keel_toolbox_check(box, "Buyer", "check_budget", "", NULL), "invalid_arguments", "");
}
END_TEST

START_TEST(definitions_list_only_granted_tools)
{
    cJSON *defs;
    keel_error err;
    ck_assert_int_eq(keel_toolbox_definitions(box, "Buyer", NULL, &defs, &err), KEEL_OK);
    ck_assert_int_eq(cJSON_GetArraySize(defs), 1);
    cJSON *fn = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(defs, 0), "function");
    ck_assert_str_eq(str(fn, "name"), "check_budget");
    ck_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(fn, "parameters")));
    cJSON_Delete(defs);
    cJSON *names = cJSON_Parse("[\"create_purchase_order\"]");
    ck_assert_int_eq(keel_toolbox_definitions(box, "Buyer", names, &defs, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "not granted"));
    cJSON_Delete(names);
}
END_TEST

START_TEST(bad_tables_are_refused_naming_the_tool)
{
    keel_tool bad[] = {tools[0]};
    keel_toolbox *b;
    keel_error err;
    bad[0].schema = "{\"type\":\"objekt\"}";
    ck_assert_int_eq(keel_toolbox_new(&b, bad, 1, NULL, 0, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "check_budget"));
    bad[0] = tools[0];
    bad[0].name = "check budget";
    ck_assert_int_eq(keel_toolbox_new(&b, bad, 1, NULL, 0, &err), KEEL_EINVAL);
    static const char *const ghost[] = {"ghost", NULL};
    keel_tool_grant g = {"Buyer", ghost};
    ck_assert_int_eq(keel_toolbox_new(&b, tools, 2, &g, 1, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "ghost"));
    keel_tool twice[] = {tools[0], tools[0]};
    ck_assert_int_eq(keel_toolbox_new(&b, twice, 2, NULL, 0, &err), KEEL_EINVAL);
    ck_assert_str_eq(keel_tool_risk_name(KEEL_TOOL_HIGH_IMPACT), "high-impact");
}
END_TEST

Suite *tools_suite(void);

Suite *tools_suite(void)
{
    Suite *s = suite_create("tools");
    TCase *tc = tcase_create("check");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_valid_call_gives_its_arguments);
    tcase_add_test(tc, each_check_fails_with_its_own_error);
    tcase_add_test(tc, every_schema_violation_is_listed);
    tcase_add_test(tc, empty_arguments_count_as_an_empty_object);
    tcase_add_test(tc, definitions_list_only_granted_tools);
    tcase_add_test(tc, bad_tables_are_refused_naming_the_tool);
    suite_add_tcase(s, tc);
    return s;
}
