/*
 * The procurement tools (activities/procurement.c) against the dev stack's real PostgreSQL
 * (DATABASE_URL), on the seeded demo data: every tool's answers and refusals, idempotent writes
 * (also with eight threads racing on one key), the prompt injection in a vendor's quote notes
 * returned as data, and a seed that changes nothing the second time.
 *
 * Check forks every test and several runs share the database: keys carry the pid and a counter,
 * and tests that commit money do it on a cost centre of their own, never on the seeded ones.
 */
#include <cjson/cJSON.h>
#include <check.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "activities/ledger.h"
#include "activities/procurement.h"
#include "keel/schema.h"

#define RACERS 8

static keel_ledger *ledger;

static void setup(void)
{
    const char *url = getenv("DATABASE_URL");
    ck_assert_msg(url && url[0], "DATABASE_URL is not set: eval \"$(tools/devstack env)\"");
    keel_error err;
    ck_assert_msg(keel_ledger_open(&ledger, url, RACERS + 2, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_ledger_migrate(ledger, NULL, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_ledger_seed(ledger, &err) == KEEL_OK, "%s", err.message);
}

static void teardown(void)
{
    keel_ledger_close(ledger);
    ledger = NULL;
}

/* ---- helpers ---- */

/* A name no other test or run uses: prefix-pid-counter-nanoseconds. */
static void unique(char *buf, size_t cap, const char *prefix)
{
    static int counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, cap, "%s-%ld-%d-%ld", prefix, (long)getpid(), ++counter, (long)ts.tv_nsec);
}

static const keel_tool *tool(const char *name)
{
    for (size_t i = 0; i < keel_procurement_tools_count; i++)
        if (strcmp(keel_procurement_tools[i].name, name) == 0)
            return &keel_procurement_tools[i];
    ck_abort_msg("no tool %s", name);
    return NULL;
}

/* Run a tool as a worker would, after the toolbox validated the arguments. *text (may be NULL)
 * gets the result's JSON text (caller frees). */
static int call_tool(const char *name, const char *key, const char *args_json, char **text,
                     keel_error *err)
{
    keel_tool_call call = {.ledger = ledger, .idempotency_key = key, .workflow_id = "test"};
    cJSON *args = cJSON_Parse(args_json);
    ck_assert_msg(args != NULL, "bad test arguments %s", args_json);
    char *result = NULL;
    keel_error_clear(err);
    int rc = tool(name)->run(&call, args, &result, err);
    cJSON_Delete(args);
    if (rc != KEEL_OK)
        ck_assert_ptr_null(result);
    if (text)
        *text = result;
    else
        free(result);
    return rc;
}

/* The result of a call that must succeed; *text (may be NULL) gets its JSON text. */
static cJSON *run_ok_text(const char *name, const char *key, const char *args_json, char **text)
{
    keel_error err;
    char *result = NULL;
    int rc = call_tool(name, key, args_json, &result, &err);
    ck_assert_msg(rc == KEEL_OK, "%s(%s): %s", name, args_json, err.message);
    ck_assert_msg(strchr(result, '\n') == NULL, "not compact: %s", result);
    cJSON *parsed = cJSON_Parse(result);
    ck_assert_msg(parsed != NULL, "%s returned no JSON: %s", name, result);
    if (text)
        *text = result;
    else
        free(result);
    return parsed;
}

static cJSON *run_ok(const char *name, const char *key, const char *args_json)
{
    return run_ok_text(name, key, args_json, NULL);
}

/* A call that must fail with code and a message containing part. */
static void run_fails(const char *name, const char *key, const char *args_json, int code,
                      const char *part)
{
    keel_error err;
    int rc = call_tool(name, key, args_json, NULL, &err);
    ck_assert_msg(rc == code, "%s(%s) gave %s (%s), not %s", name, args_json,
                  keel_error_code_name(rc), err.message, keel_error_code_name(code));
    ck_assert_msg(strstr(err.message, part), "'%s' not in '%s'", part, err.message);
    ck_assert_msg(!err.retryable, "a refusal is not retryable: %s", err.message);
}

/* The first value of a query with up to three parameters, as a new string (NULL for SQL NULL). */
static char *sql_value(const char *sql, const char *a, const char *b, const char *c)
{
    const char *p[] = {a, b, c};
    int n = c ? 3 : b ? 2 : a ? 1 : 0;
    PGconn *conn;
    keel_error err;
    ck_assert_msg(keel_ledger_acquire(ledger, &conn, &err) == KEEL_OK, "%s", err.message);
    PGresult *r = PQexecParams(conn, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    char *value = NULL;
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    if (ok && st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        value = strdup(PQgetvalue(r, 0, 0));
    char problem[512];
    snprintf(problem, sizeof problem, "%s", ok ? "" : PQresultErrorMessage(r));
    PQclear(r);
    keel_ledger_release(ledger, conn, false);
    ck_assert_msg(ok, "%s: %s", sql, problem);
    return value;
}

static void expect_sql(const char *expected, const char *sql, const char *a, const char *b)
{
    char *v = sql_value(sql, a, b, NULL);
    ck_assert_msg(v && strcmp(v, expected) == 0, "%s gave %s, not %s", sql, v ? v : "NULL",
                  expected);
    free(v);
}

/* A cost centre of the test's own with a budget of amount_usd for the current quarter. */
static void fresh_cost_center(char *id, size_t cap, const char *amount_usd)
{
    unique(id, cap, "CC-T");
    free(sql_value("INSERT INTO cost_centers (id, name, owner) VALUES ($1, 'Test', 'test')", id,
                   NULL, NULL));
    free(sql_value("INSERT INTO budgets (cost_center, period, amount_usd)"
                   " VALUES ($1, proc_current_period(), $2::numeric)",
                   id, amount_usd, NULL));
}

static char *committed(const char *cost_center)
{
    return sql_value("SELECT committed_usd FROM budgets WHERE cost_center = $1"
                     " AND period = proc_current_period()",
                     cost_center, NULL, NULL);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", key);
    return v->valuedouble;
}

static bool flag(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsBool(v), "%s is not a boolean", key);
    return cJSON_IsTrue(v);
}

static bool is_null(const cJSON *o, const char *key)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, key));
}

static const cJSON *arr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsArray(v), "%s is not an array", key);
    return v;
}

/* The element of array a whose field key equals value, or NULL. */
static const cJSON *find(const cJSON *a, const char *key, const char *value)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        const char *s = str(e, key);
        if (s && strcmp(s, value) == 0)
            return e;
    }
    return NULL;
}

static bool has_string(const cJSON *a, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0)
            return true;
    }
    return false;
}

static void expect_str(const cJSON *o, const char *key, const char *expected)
{
    const char *s = str(o, key);
    ck_assert_msg(s && strcmp(s, expected) == 0, "%s is %s, not %s", key, s ? s : "(none)",
                  expected);
}

static void expect_in(const char *text, const char *part)
{
    ck_assert_msg(text && strstr(text, part), "'%s' not in %s", part, text ? text : "(null)");
}

static void expect_money(const cJSON *o, const char *key, double expected)
{
    ck_assert_msg(fabs(num(o, key) - expected) < 0.001, "%s is %.2f, not %.2f", key, num(o, key),
                  expected);
}

static bool matches(const char *s, const char *pattern)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = s && regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* A date n days from today (the database's clock, UTC) as YYYY-MM-DD, into buf[16]. */
static void date_in(int days, char *buf)
{
    char n[16];
    snprintf(n, sizeof n, "%d", days);
    char *v = sql_value("SELECT to_char((now() AT TIME ZONE 'UTC')::date + $1::int, 'YYYY-MM-DD')",
                        n, NULL, NULL);
    snprintf(buf, 16, "%s", v);
    free(v);
}

/* ---- the tool table ---- */

/* Arguments a model might send, one per tool: each must pass the tool's own schema. */
static const struct {
    const char *tool, *args;
} examples[] = {
    {"get_budget", "{\"cost_center\":\"CC-1001\",\"period\":null}"},
    {"check_budget", "{\"cost_center\":\"CC-1001\",\"amount_usd\":4796,\"period\":\"2026-Q4\"}"},
    {"list_vendors", "{\"category\":\"it-hardware\"}"},
    {"get_catalog_prices", "{\"category\":\"it-hardware\",\"query\":\"laptop\"}"},
    {"request_quotes", "{\"category\":\"office-supplies\",\"items\":[{\"description\":\"A4 "
                       "paper\",\"quantity\":10}],\"vendor_ids\":[\"V-ACME\",\"V-QUILL\"]}"},
    {"create_requisition",
     "{\"requester\":\"alex.engineer@example.com\",\"cost_center\":\"CC-1001\",\"category\":"
     "\"it-hardware\",\"items\":[{\"description\":\"Laptop\",\"quantity\":4,\"unit_price_usd\":"
     "1199}],\"needed_by\":\"2030-01-15\",\"justification\":\"New hires\"}"},
    {"list_pending_requisitions", "{\"limit\":50,\"cost_center\":null,\"requester\":null}"},
    {"set_requisition_status",
     "{\"requisition_id\":\"REQ-000001\",\"status\":\"in_progress\",\"note\":null}"},
    {"get_approvers", "{\"cost_center\":\"CC-3001\"}"},
    {"create_purchase_order",
     "{\"requisition_id\":null,\"vendor_id\":\"V-ACME\",\"cost_center\":\"CC-1001\",\"items\":[{"
     "\"description\":\"Laptop\",\"quantity\":4,\"unit_price_usd\":1199}],\"total_usd\":4796,"
     "\"approvers\":[\"maria.manager@example.com\"]}"},
};

static const char *example(const char *tool_name)
{
    for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++)
        if (strcmp(examples[i].tool, tool_name) == 0)
            return examples[i].args;
    ck_abort_msg("no example for %s", tool_name);
    return NULL;
}

/* Strict mode: an object schema whose properties are all required and nothing else allowed. */
static void expect_strict(const char *name, const cJSON *schema)
{
    expect_str(schema, "type", "object");
    ck_assert_msg(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties")),
                  "%s allows additional properties", name);
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    const cJSON *required = arr(schema, "required");
    ck_assert_int_eq(cJSON_GetArraySize(props), cJSON_GetArraySize(required));
    const cJSON *p;
    cJSON_ArrayForEach(p, props)
    {
        bool listed = false;
        const cJSON *r;
        cJSON_ArrayForEach(r, required) listed = listed || strcmp(r->valuestring, p->string) == 0;
        ck_assert_msg(listed, "%s: property %s is not required", name, p->string);
        ck_assert_msg(cJSON_GetObjectItemCaseSensitive(p, "type"), "%s.%s has no type", name,
                      p->string);
    }
}

START_TEST(tools_are_described_for_models_in_strict_mode)
{
    static const char *const names[] = {"get_budget",
                                        "check_budget",
                                        "list_vendors",
                                        "get_catalog_prices",
                                        "request_quotes",
                                        "create_requisition",
                                        "list_pending_requisitions",
                                        "set_requisition_status",
                                        "get_approvers",
                                        "create_purchase_order"};
    ck_assert_uint_eq(keel_procurement_tools_count, sizeof names / sizeof names[0]);
    for (size_t i = 0; i < keel_procurement_tools_count; i++) {
        const keel_tool *t = &keel_procurement_tools[i];
        ck_assert_str_eq(t->name, names[i]);
        ck_assert_msg(t->description && strlen(t->description) > 80, "%s: description", t->name);
        ck_assert_msg(t->scopes && t->scopes[0] && t->run, "%s: scopes or function", t->name);
        cJSON *schema = cJSON_Parse(t->schema);
        ck_assert_msg(schema != NULL, "%s: schema is not JSON", t->name);
        expect_strict(t->name, schema);
        cJSON_Delete(schema);
    }
    ck_assert_int_eq(tool("get_budget")->risk, KEEL_TOOL_READ);
    ck_assert_int_eq(tool("get_approvers")->risk, KEEL_TOOL_READ);
    ck_assert_int_eq(tool("request_quotes")->risk, KEEL_TOOL_WRITE);
    ck_assert_int_eq(tool("create_requisition")->risk, KEEL_TOOL_WRITE);
    ck_assert_int_eq(tool("set_requisition_status")->risk, KEEL_TOOL_WRITE);
    ck_assert_int_eq(tool("create_purchase_order")->risk, KEEL_TOOL_HIGH_IMPACT);
    expect_in(tool("create_purchase_order")->scopes, "po:write");
    expect_in(tool("list_vendors")->scopes, "vendors:read");
    for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) {
        keel_schema *s;
        keel_schema_result res;
        keel_error err;
        ck_assert_msg(keel_schema_new(&s, tool(examples[i].tool)->schema, &err) == KEEL_OK,
                      "%s: %s", examples[i].tool, err.message);
        ck_assert_int_eq(keel_schema_validate(s, examples[i].args, &res, &err), KEEL_OK);
        ck_assert_msg(res.valid, "%s: %s at %s", examples[i].tool,
                      res.count ? res.errors[0].reason : "",
                      res.count ? res.errors[0].pointer : "");
        keel_schema_result_dispose(&res);
        /* An unexpected property is refused. */
        char extra[1024];
        snprintf(extra, sizeof extra, "{\"extra\":1,%s", examples[i].args + 1);
        ck_assert_int_eq(keel_schema_validate(s, extra, &res, &err), KEEL_OK);
        ck_assert_msg(!res.valid, "%s accepted an extra property", examples[i].tool);
        keel_schema_result_dispose(&res);
        keel_schema_free(s);
    }
}
END_TEST

START_TEST(tools_refuse_calls_they_cannot_serve)
{
    keel_error err;
    char *result = NULL;
    cJSON *args = cJSON_Parse("{\"cost_center\":\"CC-1001\",\"period\":null}");
    keel_tool_call no_db = {.idempotency_key = "k"};
    ck_assert_int_eq(tool("get_budget")->run(&no_db, args, &result, &err), KEEL_EINVAL);
    ck_assert_int_eq(tool("get_budget")->run(NULL, args, &result, &err), KEEL_EINVAL);
    ck_assert_ptr_null(result);
    cJSON_Delete(args);
    /* Shapes the schema would have refused still do no harm. */
    run_fails("get_budget", NULL, "[]", KEEL_EINVAL, "cost_center");
    run_fails("get_budget", NULL, "{\"cost_center\":7,\"period\":null}", KEEL_EINVAL,
              "cost_center");
    run_fails("check_budget", NULL,
              "{\"cost_center\":\"CC-1001\",\"amount_usd\":-5,\"period\":null}", KEEL_EINVAL,
              "amount_usd");
    run_fails("list_pending_requisitions", NULL, "{\"limit\":\"all\"}", KEEL_EINVAL, "limit");
    run_fails("request_quotes", "k",
              "{\"category\":\"office-supplies\",\"items\":[{\"description\":\"x\",\"quantity\":"
              "\"two\"}],\"vendor_ids\":[\"V-ACME\"]}",
              KEEL_EINVAL, "item 0");
    run_fails("request_quotes", "k",
              "{\"category\":\"office-supplies\",\"items\":[{\"description\":\"x\",\"quantity\":"
              "1.5}],\"vendor_ids\":[\"V-ACME\"]}",
              KEEL_EINVAL, "whole quantity");
    run_fails("create_purchase_order", "k",
              "{\"requisition_id\":null,\"vendor_id\":\"V-ACME\",\"cost_center\":\"CC-1001\","
              "\"items\":{},\"total_usd\":1,\"approvers\":[]}",
              KEEL_EINVAL, "items");
    /* Writes need the activity's idempotency key. */
    run_fails("request_quotes", NULL,
              "{\"category\":\"office-supplies\",\"items\":[{\"description\":\"x\",\"quantity\":1}"
              "],\"vendor_ids\":[\"V-ACME\"]}",
              KEEL_EINVAL, "idempotency key");
    run_fails("create_purchase_order", "", example("create_purchase_order"), KEEL_EINVAL,
              "idempotency key");
}
END_TEST

START_TEST(a_lost_connection_is_retryable_and_the_pool_recovers)
{
    /* A pool of one connection, killed by the server while idle: the next call meets it. */
    keel_ledger *small;
    keel_error err;
    ck_assert_msg(keel_ledger_open(&small, getenv("DATABASE_URL"), 1, &err) == KEEL_OK, "%s",
                  err.message);
    PGconn *conn;
    ck_assert_int_eq(keel_ledger_acquire(small, &conn, &err), KEEL_OK);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(conn));
    keel_ledger_release(small, conn, false);
    expect_sql("t", "SELECT pg_terminate_backend($1::int)", pid, NULL);

    keel_tool_call call = {.ledger = small, .idempotency_key = "unused"};
    cJSON *args = cJSON_Parse("{\"cost_center\":\"CC-1001\",\"period\":null}");
    char *result = NULL;
    int rc = tool("get_budget")->run(&call, args, &result, &err);
    ck_assert_msg(rc == KEEL_EUNAVAILABLE, "%s", err.message);
    ck_assert(err.retryable);
    ck_assert_ptr_null(result);
    /* The broken connection was dropped: the retry dials a new one. */
    ck_assert_msg(tool("get_budget")->run(&call, args, &result, &err) == KEEL_OK, "%s",
                  err.message);
    expect_in(result, "\"found\":true");
    free(result);
    cJSON_Delete(args);
    keel_ledger_close(small);
}
END_TEST

/* ---- budgets ---- */

START_TEST(get_budget_reads_the_current_quarter_or_the_one_asked)
{
    char *period = sql_value("SELECT proc_current_period()", NULL, NULL, NULL);
    char *text;
    cJSON *b =
        run_ok_text("get_budget", NULL, "{\"cost_center\":\"CC-1001\",\"period\":null}", &text);
    expect_str(b, "cost_center", "CC-1001");
    expect_str(b, "period", period);
    ck_assert(flag(b, "found"));
    ck_assert(is_null(b, "reason"));
    expect_money(b, "amount_usd", 120000.00);
    expect_money(b, "available_usd", num(b, "amount_usd") - num(b, "committed_usd"));
    expect_in(text, "\"amount_usd\":120000.00"); /* money with its two decimals */
    char *c = committed("CC-1001");
    expect_money(b, "committed_usd", strtod(c, NULL));
    free(c);
    free(text);
    cJSON_Delete(b);

    b = run_ok("get_budget", NULL, "{\"cost_center\":\"CC-2001\",\"period\":\"2027-Q1\"}");
    expect_str(b, "period", "2027-Q1");
    ck_assert(flag(b, "found"));
    expect_money(b, "amount_usd", 20000.00);
    cJSON_Delete(b);

    b = run_ok("get_budget", NULL, "{\"cost_center\":\"CC-9\",\"period\":null}");
    ck_assert(!flag(b, "found"));
    expect_str(b, "reason", "unknown cost centre CC-9");
    ck_assert(is_null(b, "available_usd"));
    cJSON_Delete(b);

    b = run_ok("get_budget", NULL, "{\"cost_center\":\"CC-1001\",\"period\":\"2031-Q2\"}");
    ck_assert(!flag(b, "found"));
    expect_str(b, "reason", "CC-1001 has no budget for 2031-Q2");
    cJSON_Delete(b);
    free(period);
}
END_TEST

START_TEST(check_budget_says_whether_an_amount_fits_and_why)
{
    char cc[64], args[256], reason[256];
    fresh_cost_center(cc, sizeof cc, "8000.00");
    char *period = sql_value("SELECT proc_current_period()", NULL, NULL, NULL);

    snprintf(args, sizeof args, "{\"cost_center\":\"%s\",\"amount_usd\":12400,\"period\":null}",
             cc);
    char *text;
    cJSON *r = run_ok_text("check_budget", NULL, args, &text);
    ck_assert(!flag(r, "fits"));
    expect_money(r, "available_usd", 8000.00);
    expect_money(r, "amount_usd", 12400.00);
    snprintf(reason, sizeof reason,
             "USD 12,400.00 exceeds the USD 8,000.00 available in %s for %s by USD 4,400.00", cc,
             period);
    expect_str(r, "reason", reason);
    expect_in(text, "\"available_usd\":8000.00");
    free(text);
    cJSON_Delete(r);

    snprintf(args, sizeof args, "{\"cost_center\":\"%s\",\"amount_usd\":450,\"period\":null}", cc);
    r = run_ok("check_budget", NULL, args);
    ck_assert(flag(r, "fits"));
    snprintf(reason, sizeof reason,
             "USD 450.00 fits within the USD 8,000.00 available in %s for %s", cc, period);
    expect_str(r, "reason", reason);
    cJSON_Delete(r);

    /* Exactly what is left fits; a cent more does not. */
    snprintf(args, sizeof args, "{\"cost_center\":\"%s\",\"amount_usd\":8000,\"period\":null}", cc);
    r = run_ok("check_budget", NULL, args);
    ck_assert(flag(r, "fits"));
    cJSON_Delete(r);
    snprintf(args, sizeof args, "{\"cost_center\":\"%s\",\"amount_usd\":8000.01,\"period\":null}",
             cc);
    r = run_ok("check_budget", NULL, args);
    ck_assert(!flag(r, "fits"));
    cJSON_Delete(r);

    /* Unknown cost centres and missing budgets are answers, not errors. */
    r = run_ok("check_budget", NULL,
               "{\"cost_center\":\"CC-9\",\"amount_usd\":100,\"period\":null}");
    ck_assert(!flag(r, "fits"));
    expect_str(r, "reason", "unknown cost centre CC-9");
    ck_assert(is_null(r, "available_usd"));
    cJSON_Delete(r);
    r = run_ok("check_budget", NULL,
               "{\"cost_center\":\"CC-1001\",\"amount_usd\":100,\"period\":\"2031-Q2\"}");
    ck_assert(!flag(r, "fits"));
    expect_str(r, "reason", "CC-1001 has no budget for 2031-Q2");
    cJSON_Delete(r);

    /* The demo's Marketing budget is nearly spent. */
    r = run_ok("check_budget", NULL,
               "{\"cost_center\":\"CC-2001\",\"amount_usd\":6000,\"period\":null}");
    ck_assert_int_eq(flag(r, "fits"), num(r, "available_usd") >= 6000);
    cJSON_Delete(r);
    free(period);
}
END_TEST

/* ---- vendors, catalog, quotes ---- */

START_TEST(list_vendors_gives_the_approved_vendors_of_a_category)
{
    cJSON *r = run_ok("list_vendors", NULL, "{\"category\":\"it-hardware\"}");
    const cJSON *vendors = arr(r, "vendors"), *v;
    const char *expected[] = {"V-ACME", "V-BYTEBRIDGE", "V-CONTOSO", "V-NORTHWIND"};
    for (size_t i = 0; i < 4; i++)
        ck_assert_msg(find(vendors, "id", expected[i]), "%s missing", expected[i]);
    ck_assert_ptr_null(find(vendors, "id", "V-BARGAIN"));   /* suspended */
    ck_assert_ptr_null(find(vendors, "id", "V-PAPERLINE")); /* another category */
    cJSON_ArrayForEach(v, vendors)
    {
        expect_str(v, "status", "approved");
        ck_assert_msg(has_string(arr(v, "categories"), "it-hardware"), "%s", str(v, "id"));
    }
    ck_assert_str_eq(cJSON_GetArrayItem(arr(r, "required_certifications"), 0)->valuestring,
                     "ISO27001");
    /* ByteBridge is approved for IT hardware but lacks the ISO27001 it requires. */
    const cJSON *bb = find(vendors, "id", "V-BYTEBRIDGE");
    ck_assert(!flag(bb, "certified"));
    ck_assert_int_eq(cJSON_GetArraySize(arr(bb, "missing_certifications")), 1);
    ck_assert_str_eq(cJSON_GetArrayItem(arr(bb, "missing_certifications"), 0)->valuestring,
                     "ISO27001");
    const cJSON *acme = find(vendors, "id", "V-ACME");
    ck_assert(flag(acme, "certified"));
    ck_assert_int_eq(cJSON_GetArraySize(arr(acme, "missing_certifications")), 0);
    cJSON_Delete(r);

    r = run_ok("list_vendors", NULL, "{\"category\":\"office-supplies\"}");
    vendors = arr(r, "vendors");
    ck_assert_ptr_nonnull(find(vendors, "id", "V-QUILL"));
    ck_assert_ptr_nonnull(find(vendors, "id", "V-PAPERLINE"));
    ck_assert_ptr_null(find(vendors, "id", "V-BARGAIN"));
    cJSON_Delete(r);

    r = run_ok("list_vendors", NULL, "{\"category\":\"software\"}");
    ck_assert_ptr_null(find(arr(r, "vendors"), "id", "V-LUMEN")); /* pending */
    ck_assert_ptr_nonnull(find(arr(r, "vendors"), "id", "V-CLOUDNINE"));
    cJSON_Delete(r);

    r = run_ok("list_vendors", NULL, "{\"category\":\"spaceships\"}");
    ck_assert_int_eq(cJSON_GetArraySize(arr(r, "vendors")), 0);
    expect_in(str(r, "reason"), "unknown category 'spaceships'");
    expect_in(str(r, "reason"), "it-hardware");
    cJSON_Delete(r);
}
END_TEST

START_TEST(get_catalog_prices_searches_approved_vendors_cheapest_first)
{
    cJSON *all =
        run_ok("get_catalog_prices", NULL, "{\"category\":\"it-hardware\",\"query\":null}");
    cJSON *r =
        run_ok("get_catalog_prices", NULL, "{\"category\":\"it-hardware\",\"query\":\"Laptop\"}");
    const cJSON *prices = arr(r, "prices"), *p;
    ck_assert_int_ge(cJSON_GetArraySize(prices), 4);
    ck_assert_int_gt(cJSON_GetArraySize(arr(all, "prices")), cJSON_GetArraySize(prices));
    double last = 0;
    cJSON_ArrayForEach(p, prices)
    {
        expect_in(str(p, "description"), "laptop");
        ck_assert_str_ne(str(p, "vendor_id"), "V-BARGAIN");
        ck_assert(num(p, "unit_price_usd") >= last);
        last = num(p, "unit_price_usd");
    }
    const cJSON *bb = find(prices, "sku", "BB-LAP14");
    ck_assert(bb && !flag(bb, "certified"));
    expect_money(bb, "unit_price_usd", 999.00);
    ck_assert(flag(find(prices, "sku", "ACME-LT14"), "certified"));
    cJSON_Delete(r);
    cJSON_Delete(all);

    /* Every word must appear. */
    r = run_ok("get_catalog_prices", NULL,
               "{\"category\":\"it-hardware\",\"query\":\"27 4K monitor\"}");
    prices = arr(r, "prices");
    ck_assert_int_eq(cJSON_GetArraySize(prices), 3);
    cJSON_ArrayForEach(p, prices) expect_in(str(p, "description"), "4K");
    cJSON_Delete(r);

    r = run_ok("get_catalog_prices", NULL, "{\"category\":\"boats\",\"query\":null}");
    ck_assert_int_eq(cJSON_GetArraySize(arr(r, "prices")), 0);
    expect_in(str(r, "reason"), "unknown category 'boats'");
    cJSON_Delete(r);
}
END_TEST

#define OFFICE_QUOTE                                                                               \
    "{\"category\":\"office-supplies\",\"items\":[{\"description\":\"A4 copy paper, box of 5 "     \
    "reams\",\"quantity\":10},{\"description\":\"Black toner cartridge\",\"quantity\":2}],"        \
    "\"vendor_ids\":[\"V-ACME\",\"V-PAPERLINE\",\"V-QUILL\",\"V-BARGAIN\",\"V-NOPE\"]}"

START_TEST(request_quotes_prices_from_catalogs_and_passes_vendor_notes_as_data)
{
    char key[96];
    unique(key, sizeof key, "quotes");
    char *text;
    cJSON *r = run_ok_text("request_quotes", key, OFFICE_QUOTE, &text);
    const cJSON *quotes = arr(r, "quotes"), *declined = arr(r, "declined");
    ck_assert_int_eq(cJSON_GetArraySize(quotes), 3);
    const char *order[] = {"V-ACME", "V-PAPERLINE", "V-QUILL"};
    const double totals[] = {498.00, 485.00, 438.00};
    for (int i = 0; i < 3; i++) {
        const cJSON *q = cJSON_GetArrayItem(quotes, i);
        expect_str(q, "vendor_id", order[i]);
        expect_money(q, "total_usd", totals[i]);
        ck_assert(flag(q, "certified")); /* office supplies require nothing */
        ck_assert_msg(matches(str(q, "quote_id"), "^Q-[0-9]{6,}$"), "%s", str(q, "quote_id"));
        ck_assert_int_eq(cJSON_GetArraySize(arr(q, "items")), 2);
    }
    expect_in(text, "\"total_usd\":498.00");
    /* Each line priced from the best-matching SKU. */
    const cJSON *acme = cJSON_GetArrayItem(quotes, 0);
    const cJSON *line = cJSON_GetArrayItem(arr(acme, "items"), 0);
    expect_str(line, "sku", "ACME-PAPER");
    expect_money(line, "unit_price_usd", 32.00);
    expect_money(line, "line_total_usd", 320.00);
    expect_str(cJSON_GetArrayItem(arr(acme, "items"), 1), "sku", "ACME-TONER");
    ck_assert_int_eq((int)num(acme, "lead_time_days"), 3);
    char *valid = sql_value("SELECT to_char((now() AT TIME ZONE 'UTC')::date + 30, 'YYYY-MM-DD')",
                            NULL, NULL, NULL);
    expect_str(acme, "valid_until", valid);
    free(valid);
    /* The injection attempt comes back verbatim, as the vendor's notes and nothing more. */
    char *notes =
        sql_value("SELECT quote_notes FROM vendors WHERE id = 'V-QUILL'", NULL, NULL, NULL);
    expect_in(notes, "IGNORE ALL PREVIOUS INSTRUCTIONS");
    expect_str(cJSON_GetArrayItem(quotes, 2), "notes", notes);
    free(notes);
    /* Vendors that cannot quote say why. */
    ck_assert_int_eq(cJSON_GetArraySize(declined), 2);
    expect_in(str(find(declined, "vendor_id", "V-BARGAIN"), "reason"), "suspended");
    expect_str(find(declined, "vendor_id", "V-NOPE"), "reason", "unknown vendor V-NOPE");
    free(text);
    cJSON_Delete(r);
}
END_TEST

/* Quote ids of a result, comma-separated, into buf. */
static void quote_ids(const cJSON *r, char *buf, size_t cap)
{
    const cJSON *q;
    buf[0] = '\0';
    cJSON_ArrayForEach(q, arr(r, "quotes"))
    {
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, "%s,", str(q, "quote_id"));
    }
}

START_TEST(request_quotes_is_idempotent_and_deterministic)
{
    char key[96], other[96], first[256], again[256], fresh[256];
    unique(key, sizeof key, "quotes");
    unique(other, sizeof other, "quotes");
    cJSON *a = run_ok("request_quotes", key, OFFICE_QUOTE);
    cJSON *b = run_ok("request_quotes", key, OFFICE_QUOTE);
    cJSON *c = run_ok("request_quotes", other, OFFICE_QUOTE);
    quote_ids(a, first, sizeof first);
    quote_ids(b, again, sizeof again);
    quote_ids(c, fresh, sizeof fresh);
    ck_assert_str_eq(first, again); /* a retry returns the same quotes */
    ck_assert_str_ne(first, fresh); /* another activity gets its own */
    char *ta = cJSON_PrintUnformatted(arr(a, "quotes")),
         *tb = cJSON_PrintUnformatted(arr(b, "quotes"));
    ck_assert_str_eq(ta, tb);
    for (int i = 0; i < 3; i++) /* ... at the same prices */
        expect_money(cJSON_GetArrayItem(arr(c, "quotes"), i), "total_usd",
                     num(cJSON_GetArrayItem(arr(a, "quotes"), i), "total_usd"));
    free(ta);
    free(tb);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    char *n = sql_value("SELECT count(*) FROM quotes WHERE idempotency_key = $1", key, NULL, NULL);
    ck_assert_str_eq(n, "3");
    free(n);

    /* IT hardware: the cheapest quote comes from the vendor without ISO27001. */
    unique(key, sizeof key, "quotes");
    cJSON *r = run_ok("request_quotes", key,
                      "{\"category\":\"it-hardware\",\"items\":[{\"description\":\"14-inch laptop "
                      "16 GB\",\"quantity\":4}],\"vendor_ids\":[\"V-ACME\",\"V-BYTEBRIDGE\"]}");
    const cJSON *quotes = arr(r, "quotes");
    expect_money(find(quotes, "vendor_id", "V-ACME"), "total_usd", 4796.00);
    ck_assert(flag(find(quotes, "vendor_id", "V-ACME"), "certified"));
    expect_money(find(quotes, "vendor_id", "V-BYTEBRIDGE"), "total_usd", 3996.00);
    ck_assert(!flag(find(quotes, "vendor_id", "V-BYTEBRIDGE"), "certified"));
    cJSON_Delete(r);

    /* A line no SKU matches is priced at the vendor's average for the category; a vendor of
     * another category declines. */
    unique(key, sizeof key, "quotes");
    r = run_ok("request_quotes", key,
               "{\"category\":\"office-supplies\",\"items\":[{\"description\":\"Desk lamp\","
               "\"quantity\":2}],\"vendor_ids\":[\"V-ACME\",\"V-ERGOWORKS\"]}");
    const cJSON *q = find(arr(r, "quotes"), "vendor_id", "V-ACME");
    expect_money(q, "total_usd", 121.00); /* 2 x (32.00 + 89.00) / 2 */
    ck_assert(is_null(cJSON_GetArrayItem(arr(q, "items"), 0), "sku"));
    expect_in(str(find(arr(r, "declined"), "vendor_id", "V-ERGOWORKS"), "reason"),
              "not approved for office-supplies");
    cJSON_Delete(r);

    run_fails("request_quotes", key,
              "{\"category\":\"boats\",\"items\":[{\"description\":\"x\",\"quantity\":1}],"
              "\"vendor_ids\":[\"V-ACME\"]}",
              KEEL_EINVAL, "unknown category 'boats'");
}
END_TEST

/* ---- requisitions ---- */

static void requisition_args(char *buf, size_t cap, const char *cc, const char *needed_by)
{
    snprintf(buf, cap,
             "{\"requester\":\"alex.engineer@example.com\",\"cost_center\":\"%s\",\"category\":"
             "\"it-hardware\",\"items\":[{\"description\":\"14-inch laptop\",\"quantity\":2,"
             "\"unit_price_usd\":1199},{\"description\":\"27-inch monitor\",\"quantity\":3,"
             "\"unit_price_usd\":349.5}],\"needed_by\":\"%s\",\"justification\":\"Two new "
             "engineers start next month.\"}",
             cc, needed_by);
}

/* Create a requisition in cost centre cc; its id into id[32]. */
static void new_requisition(const char *cc, char *id)
{
    char key[96], date[16], args[1024];
    unique(key, sizeof key, "req");
    date_in(30, date);
    requisition_args(args, sizeof args, cc, date);
    cJSON *r = run_ok("create_requisition", key, args);
    snprintf(id, 32, "%s", str(r, "requisition_id"));
    cJSON_Delete(r);
}

/* Take a test's requisition out of the pending list. */
static void retire(const char *id)
{
    char args[256];
    snprintf(args, sizeof args,
             "{\"requisition_id\":\"%s\",\"status\":\"rejected\",\"note\":\"test done\"}", id);
    cJSON_Delete(run_ok("set_requisition_status", NULL, args));
}

START_TEST(create_requisition_computes_the_total_once_per_key)
{
    char key[96], other[96], date[16], args[1024];
    unique(key, sizeof key, "req");
    unique(other, sizeof other, "req");
    date_in(30, date);
    requisition_args(args, sizeof args, "CC-1001", date);
    char *text;
    cJSON *a = run_ok_text("create_requisition", key, args, &text);
    ck_assert_msg(matches(str(a, "requisition_id"), "^REQ-[0-9]{6,}$"), "%s",
                  str(a, "requisition_id"));
    expect_money(a, "total_usd", 3446.50); /* 2 x 1,199.00 + 3 x 349.50 */
    expect_in(text, "\"total_usd\":3446.50");
    expect_str(a, "status", "pending");
    ck_assert(flag(a, "created"));
    cJSON *b = run_ok("create_requisition", key, args);
    expect_str(b, "requisition_id", str(a, "requisition_id"));
    ck_assert(!flag(b, "created"));
    cJSON *c = run_ok("create_requisition", other, args);
    ck_assert_str_ne(str(c, "requisition_id"), str(a, "requisition_id"));
    expect_sql("2", "SELECT jsonb_array_length(items) FROM requisitions WHERE id = $1",
               str(a, "requisition_id"), NULL);
    retire(str(a, "requisition_id"));
    retire(str(c, "requisition_id"));
    free(text);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);

    unique(key, sizeof key, "req");
    requisition_args(args, sizeof args, "CC-9", date);
    run_fails("create_requisition", key, args, KEEL_EINVAL, "unknown cost centre CC-9");
    requisition_args(args, sizeof args, "CC-1001", "2027-02-30");
    run_fails("create_requisition", key, args, KEEL_EINVAL, "date");
    requisition_args(args, sizeof args, "CC-1001", "tomorrow");
    run_fails("create_requisition", key, args, KEEL_EINVAL, "YYYY-MM-DD");
    requisition_args(args, sizeof args, "CC-1001", "2020-01-01");
    run_fails("create_requisition", key, args, KEEL_EINVAL, "is in the past");
    expect_sql("0", "SELECT count(*) FROM requisitions WHERE idempotency_key = $1", key, NULL);
}
END_TEST

START_TEST(pending_requisitions_come_oldest_first_and_statuses_change)
{
    char id[32], args[256];
    new_requisition("CC-1001", id);
    cJSON *r = run_ok("list_pending_requisitions", NULL, "{\"limit\":500}");
    const cJSON *list = arr(r, "requisitions"), *q;
    const char *last = "";
    cJSON_ArrayForEach(q, list)
    {
        expect_str(q, "status", "pending");
        ck_assert_msg(strcmp(str(q, "created_at"), last) >= 0, "not oldest first");
        last = str(q, "created_at");
    }
    if (cJSON_GetArraySize(list) < 500) {
        const cJSON *mine = find(list, "requisition_id", id);
        ck_assert_msg(mine != NULL, "%s not listed", id);
        expect_money(mine, "total_usd", 3446.50);
        ck_assert_int_eq(cJSON_GetArraySize(arr(mine, "items")), 2);
        expect_money(cJSON_GetArrayItem(arr(mine, "items"), 1), "line_total_usd", 1048.50);
    }
    cJSON_Delete(r);
    r = run_ok("list_pending_requisitions", NULL, "{\"limit\":1}");
    ck_assert_int_eq(cJSON_GetArraySize(arr(r, "requisitions")), 1);
    cJSON_Delete(r);

    snprintf(args, sizeof args,
             "{\"requisition_id\":\"%s\",\"status\":\"in_progress\",\"note\":\"batch run 7\"}", id);
    for (int i = 0; i < 2; i++) { /* the same change twice is one change */
        r = run_ok("set_requisition_status", NULL, args);
        expect_str(r, "requisition_id", id);
        expect_str(r, "status", "in_progress");
        expect_str(r, "note", "batch run 7");
        cJSON_Delete(r);
    }
    r = run_ok("list_pending_requisitions", NULL, "{\"limit\":500}");
    ck_assert_ptr_null(find(arr(r, "requisitions"), "requisition_id", id));
    cJSON_Delete(r);

    run_fails("set_requisition_status", NULL,
              "{\"requisition_id\":\"REQ-999999999\",\"status\":\"approved\",\"note\":null}",
              KEEL_EINVAL, "unknown requisition REQ-999999999");
    snprintf(args, sizeof args, "{\"requisition_id\":\"%s\",\"status\":\"ordered\",\"note\":null}",
             id);
    run_fails("set_requisition_status", NULL, args, KEEL_EINVAL, "purchase order");
    retire(id);
}
END_TEST

/* A requisition by requester in cost centre cc; its id into id[32]. */
static void new_requisition_by(const char *requester, const char *cc, char *id)
{
    char key[96], date[16], args[1024];
    unique(key, sizeof key, "req");
    date_in(30, date);
    snprintf(args, sizeof args,
             "{\"requester\":\"%s\",\"cost_center\":\"%s\",\"category\":\"office-supplies\","
             "\"items\":[{\"description\":\"A4 paper\",\"quantity\":1,\"unit_price_usd\":5}],"
             "\"needed_by\":\"%s\",\"justification\":\"Filter test.\"}",
             requester, cc, date);
    cJSON *r = run_ok("create_requisition", key, args);
    snprintf(id, 32, "%s", str(r, "requisition_id"));
    cJSON_Delete(r);
}

/* The ids listed for these arguments, as one comma-separated string (caller frees). */
static char *listed_ids(const char *args)
{
    cJSON *r = run_ok("list_pending_requisitions", NULL, args);
    char *ids = calloc(1, 4096);
    const cJSON *q;
    cJSON_ArrayForEach(q, arr(r, "requisitions"))
    {
        size_t len = strlen(ids);
        snprintf(ids + len, 4096 - len, "%s%s", len ? "," : "", str(q, "requisition_id"));
    }
    cJSON_Delete(r);
    return ids;
}

START_TEST(pending_requisitions_can_be_filtered_by_cost_centre_and_requester)
{
    char cc[64], other_cc[64], who[96], other[96], a[32], b[32], c[32], args[512];
    fresh_cost_center(cc, sizeof cc, "1000");
    fresh_cost_center(other_cc, sizeof other_cc, "1000");
    unique(who, sizeof who, "filter");
    unique(other, sizeof other, "filter");
    new_requisition_by(who, cc, a);
    new_requisition_by(other, cc, b);
    new_requisition_by(who, other_cc, c);
    char want[128];

    snprintf(args, sizeof args, "{\"limit\":10,\"cost_center\":\"%s\",\"requester\":null}", cc);
    char *ids = listed_ids(args);
    snprintf(want, sizeof want, "%s,%s", a, b); /* oldest first */
    ck_assert_str_eq(ids, want);
    free(ids);

    snprintf(args, sizeof args, "{\"limit\":10,\"cost_center\":null,\"requester\":\"%s\"}", who);
    ids = listed_ids(args);
    snprintf(want, sizeof want, "%s,%s", a, c);
    ck_assert_str_eq(ids, want);
    free(ids);

    /* Both filters: the requisitions that pass both. Absent filters are null. */
    snprintf(args, sizeof args, "{\"limit\":10,\"cost_center\":\"%s\",\"requester\":\"%s\"}",
             other_cc, who);
    ids = listed_ids(args);
    ck_assert_str_eq(ids, c);
    free(ids);
    snprintf(args, sizeof args, "{\"limit\":1,\"cost_center\":\"%s\"}", cc);
    ids = listed_ids(args);
    ck_assert_str_eq(ids, a);
    free(ids);
    ids = listed_ids("{\"limit\":10,\"cost_center\":\"CC-NOBODY\",\"requester\":null}");
    ck_assert_str_eq(ids, "");
    free(ids);

    /* Only pending ones are listed, filter or not. */
    retire(a);
    snprintf(args, sizeof args, "{\"limit\":10,\"cost_center\":\"%s\",\"requester\":null}", cc);
    ids = listed_ids(args);
    ck_assert_str_eq(ids, b);
    free(ids);

    /* The schema takes strings or null, nothing else. */
    keel_schema *s;
    keel_schema_result res;
    keel_error err;
    ck_assert_int_eq(keel_schema_new(&s, tool("list_pending_requisitions")->schema, &err), KEEL_OK);
    ck_assert_int_eq(
        keel_schema_validate(s, "{\"limit\":5,\"cost_center\":7,\"requester\":null}", &res, &err),
        KEEL_OK);
    ck_assert(!res.valid);
    keel_schema_result_dispose(&res);
    ck_assert_int_eq(keel_schema_validate(s, "{\"limit\":5}", &res, &err), KEEL_OK);
    ck_assert_msg(!res.valid, "strict mode: the filters must be given, as null for none");
    keel_schema_result_dispose(&res);
    keel_schema_free(s);
    run_fails("list_pending_requisitions", NULL,
              "{\"limit\":5,\"cost_center\":[\"CC-1001\"],\"requester\":null}", KEEL_EINVAL,
              "cost_center");
    retire(b);
    retire(c);
}
END_TEST

/* ---- approvers ---- */

START_TEST(get_approvers_names_the_chain_and_the_delegates)
{
    char *text;
    cJSON *r = run_ok_text("get_approvers", NULL, "{\"cost_center\":\"CC-1001\"}", &text);
    const cJSON *list = arr(r, "approvers");
    ck_assert_int_eq(cJSON_GetArraySize(list), 3);
    const char *roles[] = {"manager", "director", "cfo"};
    const char *people[] = {"maria.manager@example.com", "daniel.director@example.com",
                            "chloe.cfo@example.com"};
    const double limits[] = {10000, 50000, 250000};
    for (int i = 0; i < 3; i++) {
        const cJSON *a = cJSON_GetArrayItem(list, i);
        expect_str(a, "role", roles[i]);
        expect_str(a, "person", people[i]);
        expect_str(a, "acting_approver", people[i]);
        expect_money(a, "limit_usd", limits[i]);
        ck_assert(flag(a, "active"));
        ck_assert_ptr_nonnull(str(a, "delegate"));
        ck_assert(is_null(a, "note"));
    }
    expect_in(text, "\"limit_usd\":10000.00");
    ck_assert(is_null(cJSON_GetArrayItem(list, 2), "cost_center")); /* company-wide */
    free(text);
    cJSON_Delete(r);

    /* Operations' manager is on leave: the delegate decides. */
    r = run_ok("get_approvers", NULL, "{\"cost_center\":\"CC-3001\"}");
    const cJSON *m = cJSON_GetArrayItem(arr(r, "approvers"), 0);
    expect_str(m, "person", "oliver.manager@example.com");
    ck_assert(!flag(m, "active"));
    expect_str(m, "delegate", "priya.manager@example.com");
    expect_str(m, "delegate_name", "Priya Nair");
    expect_str(m, "acting_approver", "priya.manager@example.com");
    expect_in(str(m, "note"), "inactive");
    expect_in(str(m, "note"), "Priya Nair");
    cJSON_Delete(r);

    r = run_ok("get_approvers", NULL, "{\"cost_center\":\"CC-9\"}");
    ck_assert_int_eq(cJSON_GetArraySize(arr(r, "approvers")), 0);
    expect_str(r, "reason", "unknown cost centre CC-9");
    cJSON_Delete(r);
}
END_TEST

/* ---- purchase orders ---- */

static void po_args(char *buf, size_t cap, const char *requisition, const char *vendor,
                    const char *cc, int quantity, const char *price, const char *total)
{
    char req[64];
    snprintf(req, sizeof req, requisition ? "\"%s\"" : "null", requisition);
    snprintf(buf, cap,
             "{\"requisition_id\":%s,\"vendor_id\":\"%s\",\"cost_center\":\"%s\",\"items\":[{"
             "\"description\":\"14-inch business laptop\",\"quantity\":%d,\"unit_price_usd\":%s}"
             "],\"total_usd\":%s,\"approvers\":[\"maria.manager@example.com\"]}",
             req, vendor, cc, quantity, price, total);
}

START_TEST(create_purchase_order_commits_once_per_key)
{
    char cc[64], key[96], args[1024];
    fresh_cost_center(cc, sizeof cc, "50000.00");
    unique(key, sizeof key, "po");
    po_args(args, sizeof args, NULL, "V-ACME", cc, 2, "1199", "2398");
    char *text;
    cJSON *a = run_ok_text("create_purchase_order", key, args, &text);
    char *year = sql_value("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY')", NULL, NULL, NULL);
    char pattern[64];
    snprintf(pattern, sizeof pattern, "^PO-%s-[0-9]{6,}$", year);
    ck_assert_msg(matches(str(a, "po_number"), pattern), "%s", str(a, "po_number"));
    ck_assert(flag(a, "created"));
    expect_money(a, "total_usd", 2398.00);
    expect_str(a, "vendor_id", "V-ACME");
    expect_in(text, "\"total_usd\":2398.00");
    char *c = committed(cc);
    ck_assert_str_eq(c, "2398.00");
    free(c);

    /* The retry finds the order and commits nothing more. */
    cJSON *b = run_ok("create_purchase_order", key, args);
    expect_str(b, "po_number", str(a, "po_number"));
    ck_assert(!flag(b, "created"));
    c = committed(cc);
    ck_assert_str_eq(c, "2398.00");
    free(c);
    snprintf(args, sizeof args, "{\"cost_center\":\"%s\",\"period\":null}", cc);
    cJSON *budget = run_ok("get_budget", NULL, args);
    expect_money(budget, "available_usd", 50000.00 - 2398.00);
    cJSON_Delete(budget);
    free(year);
    free(text);
    cJSON_Delete(a);
    cJSON_Delete(b);

    /* With a requisition: it becomes ordered, and a second order for it is refused. */
    char id[32];
    new_requisition(cc, id);
    unique(key, sizeof key, "po");
    po_args(args, sizeof args, id, "V-ACME", cc, 1, "1199", "1199");
    a = run_ok("create_purchase_order", key, args);
    expect_str(a, "requisition_id", id);
    expect_sql("ordered", "SELECT status FROM requisitions WHERE id = $1", id, NULL);
    unique(key, sizeof key, "po");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL, "already ordered as");
    snprintf(args, sizeof args, "{\"requisition_id\":\"%s\",\"status\":\"approved\",\"note\":null}",
             id);
    run_fails("set_requisition_status", NULL, args, KEEL_EINVAL, str(a, "po_number"));
    c = committed(cc);
    ck_assert_str_eq(c, "3597.00");
    free(c);
    cJSON_Delete(a);
}
END_TEST

typedef struct racer {
    const char *key;
    const char *args;
    int rc;
    char message[KEEL_ERROR_MESSAGE_MAX];
    cJSON *result;
} racer;

static void *race_po(void *arg)
{
    racer *r = arg;
    keel_tool_call call = {.ledger = ledger, .idempotency_key = r->key};
    cJSON *args = cJSON_Parse(r->args);
    char *text = NULL;
    keel_error err;
    r->rc = tool("create_purchase_order")->run(&call, args, &text, &err);
    snprintf(r->message, sizeof r->message, "%s", r->rc == KEEL_OK ? "" : err.message);
    r->result = text ? cJSON_Parse(text) : NULL;
    free(text);
    cJSON_Delete(args);
    return NULL;
}

/* Run create_purchase_order on RACERS threads at once, racer i with keys[i]. */
static void race(racer *racers, const char *const *keys, const char *args)
{
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer){.key = keys[i], .args = args};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, race_po, &racers[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(threads[i], NULL);
}

/* How many racers created their order; every successful racer must name po_number. */
static int created_orders(const racer *racers, const char *po_number)
{
    int created = 0;
    for (int i = 0; i < RACERS; i++) {
        if (racers[i].rc != KEEL_OK)
            continue;
        created += flag(racers[i].result, "created");
        expect_str(racers[i].result, "po_number", po_number);
    }
    return created;
}

static const char *first_po_number(const racer *racers)
{
    for (int i = 0; i < RACERS; i++)
        if (racers[i].rc == KEEL_OK)
            return str(racers[i].result, "po_number");
    ck_abort_msg("no racer placed the order: %s", racers[0].message);
    return NULL;
}

static void free_racers(racer *racers)
{
    for (int i = 0; i < RACERS; i++)
        cJSON_Delete(racers[i].result);
}

START_TEST(racing_attempts_create_one_purchase_order)
{
    char cc[64], key[96], args[1024], id[32];
    const char *keys[RACERS];
    racer racers[RACERS];
    fresh_cost_center(cc, sizeof cc, "50000.00");
    unique(key, sizeof key, "po-race");
    for (int i = 0; i < RACERS; i++)
        keys[i] = key;

    /* One key: one order and one commitment, whoever wins. */
    po_args(args, sizeof args, NULL, "V-CONTOSO", cc, 3, "1149", "3447");
    race(racers, keys, args);
    for (int i = 0; i < RACERS; i++)
        ck_assert_msg(racers[i].rc == KEEL_OK, "racer %d: %s", i, racers[i].message);
    ck_assert_int_eq(created_orders(racers, first_po_number(racers)), 1);
    expect_sql("1", "SELECT count(*) FROM purchase_orders WHERE idempotency_key = $1", key, NULL);
    char *c = committed(cc);
    ck_assert_str_eq(c, "3447.00");
    free(c);
    free_racers(racers);

    /* The same with a requisition, whose lock the attempts queue on. */
    new_requisition(cc, id);
    unique(key, sizeof key, "po-race");
    po_args(args, sizeof args, id, "V-CONTOSO", cc, 1, "1149", "1149");
    race(racers, keys, args);
    for (int i = 0; i < RACERS; i++)
        ck_assert_msg(racers[i].rc == KEEL_OK, "racer %d: %s", i, racers[i].message);
    ck_assert_int_eq(created_orders(racers, first_po_number(racers)), 1);
    expect_sql("ordered", "SELECT status FROM requisitions WHERE id = $1", id, NULL);
    free_racers(racers);

    /* Different keys for one requisition: one order, the others refused. */
    char distinct[RACERS][96];
    for (int i = 0; i < RACERS; i++) {
        unique(distinct[i], sizeof distinct[i], "po-race");
        keys[i] = distinct[i];
    }
    new_requisition(cc, id);
    po_args(args, sizeof args, id, "V-CONTOSO", cc, 1, "1149", "1149");
    race(racers, keys, args);
    int refused = 0;
    for (int i = 0; i < RACERS; i++) {
        if (racers[i].rc != KEEL_OK) {
            ck_assert_int_eq(racers[i].rc, KEEL_EINVAL);
            expect_in(racers[i].message, "already ordered as");
            refused++;
        }
    }
    ck_assert_int_eq(refused, RACERS - 1);
    ck_assert_int_eq(created_orders(racers, first_po_number(racers)), 1);
    c = committed(cc);
    ck_assert_str_eq(c, "5745.00"); /* 3,447.00 + 1,149.00 + 1,149.00 */
    free(c);
    free_racers(racers);
}
END_TEST

START_TEST(create_purchase_order_refuses_what_policy_forbids)
{
    char cc[64], key[96], args[1024];
    fresh_cost_center(cc, sizeof cc, "1000.00");
    unique(key, sizeof key, "po");
    po_args(args, sizeof args, NULL, "V-BARGAIN", cc, 1, "699", "699");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL,
              "is suspended, not on the approved vendor list");
    po_args(args, sizeof args, NULL, "V-LUMEN", cc, 1, "180", "180");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL, "is pending");
    po_args(args, sizeof args, NULL, "V-NOPE", cc, 1, "180", "180");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL, "unknown vendor V-NOPE");
    po_args(args, sizeof args, NULL, "V-ACME", "CC-9", 1, "180", "180");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL, "unknown cost centre CC-9");
    po_args(args, sizeof args, NULL, "V-ACME", cc, 2, "100", "250");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL,
              "total_usd USD 250.00 does not match the items, which add up to USD 200.00");
    po_args(args, sizeof args, NULL, "V-ACME", cc, 1, "1199", "1199");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL,
              "exceeds the USD 1,000.00 available");
    po_args(args, sizeof args, "REQ-999999999", "V-ACME", cc, 1, "100", "100");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL, "unknown requisition");
    /* A requisition of another cost centre, and a rejected one. */
    char id[32];
    new_requisition("CC-1001", id);
    po_args(args, sizeof args, id, "V-ACME", cc, 1, "100", "100");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL, "belongs to CC-1001");
    char other[64], rejected[32];
    fresh_cost_center(other, sizeof other, "1000.00");
    new_requisition(other, rejected);
    retire(rejected);
    po_args(args, sizeof args, rejected, "V-ACME", other, 1, "100", "100");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL, "is rejected");
    /* With a requisition, the vendor must be approved and certified for its category. */
    char hardware[32];
    new_requisition(cc, hardware); /* it-hardware, which requires ISO27001 */
    po_args(args, sizeof args, hardware, "V-BYTEBRIDGE", cc, 1, "100", "100");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL,
              "vendor V-BYTEBRIDGE (ByteBridge Hardware) lacks the certifications it-hardware "
              "requires: ISO27001");
    po_args(args, sizeof args, hardware, "V-PAPERLINE", cc, 1, "100", "100");
    run_fails("create_purchase_order", key, args, KEEL_EINVAL, "is not approved for it-hardware");
    retire(hardware);
    retire(id);
    /* Nothing was ordered or committed. */
    expect_sql("0", "SELECT count(*) FROM purchase_orders WHERE idempotency_key = $1", key, NULL);
    char *c = committed(cc);
    ck_assert_str_eq(c, "0.00");
    free(c);
}
END_TEST

/* ---- the seed ---- */

/* A digest of what the seed writes, except what the workflows change afterwards (committed
 * amounts, requisition statuses). */
static char *seed_digest(void)
{
    return sql_value(
        "SELECT md5(concat_ws('|',"
        " (SELECT string_agg(concat_ws(',', id, name, owner), ';' ORDER BY id) FROM cost_centers"
        "   WHERE id LIKE 'CC-_001'),"
        " (SELECT string_agg(concat_ws(',', cost_center, period, amount_usd), ';'"
        "   ORDER BY cost_center, period) FROM budgets WHERE cost_center LIKE 'CC-_001'),"
        " (SELECT string_agg(concat_ws(',', id, name, required_certifications), ';' ORDER BY id)"
        "   FROM categories),"
        " (SELECT string_agg(concat_ws(',', id, name, status, certifications, categories,"
        "   quote_notes), ';' ORDER BY id) FROM vendors),"
        " (SELECT string_agg(concat_ws(',', vendor_id, sku, category, description,"
        "   unit_price_usd, lead_time_days), ';' ORDER BY vendor_id, sku) FROM catalog_items),"
        " (SELECT string_agg(concat_ws(',', person, name, role, cost_center, limit_usd, delegate,"
        "   active), ';' ORDER BY person) FROM approvers),"
        " (SELECT string_agg(concat_ws(',', id, idempotency_key, total_usd), ';' ORDER BY id)"
        "   FROM requisitions WHERE idempotency_key LIKE 'seed/%')))",
        NULL, NULL, NULL);
}

START_TEST(seeding_again_changes_nothing)
{
    keel_error err;
    int applied = -1;
    ck_assert_msg(keel_ledger_migrate(ledger, &applied, &err) == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(applied, 0);
    expect_sql("3", "SELECT count(*) FROM requisitions WHERE idempotency_key LIKE 'seed/%'", NULL,
               NULL);
    char *before = seed_digest();
    for (int i = 0; i < 2; i++)
        ck_assert_msg(keel_ledger_seed(ledger, &err) == KEEL_OK, "%s", err.message);
    char *after = seed_digest();
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    /* The demo's story is in place. */
    expect_sql("14", "SELECT count(*) FROM vendors", NULL, NULL);
    expect_sql("8", "SELECT count(*) FROM categories", NULL, NULL);
    expect_sql("f", "SELECT active FROM approvers WHERE person = 'oliver.manager@example.com'",
               NULL, NULL);
    expect_sql("20000.00",
               "SELECT amount_usd FROM budgets WHERE cost_center = 'CC-2001'"
               " AND period = proc_current_period()",
               NULL, NULL);
}
END_TEST

Suite *procurement_tools_suite(void);

Suite *procurement_tools_suite(void)
{
    Suite *s = suite_create("procurement-tools");
    TCase *tc = tcase_create("tools");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tools_are_described_for_models_in_strict_mode);
    tcase_add_test(tc, tools_refuse_calls_they_cannot_serve);
    tcase_add_test(tc, a_lost_connection_is_retryable_and_the_pool_recovers);
    tcase_add_test(tc, get_budget_reads_the_current_quarter_or_the_one_asked);
    tcase_add_test(tc, check_budget_says_whether_an_amount_fits_and_why);
    tcase_add_test(tc, list_vendors_gives_the_approved_vendors_of_a_category);
    tcase_add_test(tc, get_catalog_prices_searches_approved_vendors_cheapest_first);
    tcase_add_test(tc, request_quotes_prices_from_catalogs_and_passes_vendor_notes_as_data);
    tcase_add_test(tc, request_quotes_is_idempotent_and_deterministic);
    tcase_add_test(tc, create_requisition_computes_the_total_once_per_key);
    tcase_add_test(tc, pending_requisitions_come_oldest_first_and_statuses_change);
    tcase_add_test(tc, pending_requisitions_can_be_filtered_by_cost_centre_and_requester);
    tcase_add_test(tc, get_approvers_names_the_chain_and_the_delegates);
    tcase_add_test(tc, create_purchase_order_commits_once_per_key);
    tcase_add_test(tc, racing_attempts_create_one_purchase_order);
    tcase_add_test(tc, create_purchase_order_refuses_what_policy_forbids);
    tcase_add_test(tc, seeding_again_changes_nothing);
    suite_add_tcase(s, tc);
    return s;
}
