/*
 * activities/sandbox.c - temporary cloud sandboxes as tools (see sandbox.h), over the tables of
 * activities/migrations/003_sandbox.sql.
 *
 * Every query builds its answer as one JSON text in SQL (json_build_object), so the SQL is where
 * each result's shape is defined and money keeps its two decimals (numeric(14,2) prints as such).
 * The policy and budget rules live in one refusal query that deploy_sandbox runs under a lock on
 * the cost centre's sandbox budget, so two deployments of one cost centre take turns and cannot
 * both spend the last of it.
 */
#include "activities/sandbox.h"
#include "keel/json.h"

#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT     2000 /* an owner, a purpose */
#define MAX_CAP_USD  1000000
#define MAX_TTL      720 /* hours: 30 days */
#define MAX_TAGS     20
#define MAX_TAG_TEXT 256

/* ---- one tool call's database session ---- */

typedef keel_ledger_session db;

static int db_open(db *d, const keel_tool_call *call, keel_error *err)
{
    return keel_ledger_session_open(d, call ? call->ledger : NULL, err);
}

/* Run one statement; the first column of its first row as a new string in *out (may be NULL
 * to not ask; NULL when there is no row or the value is SQL NULL). Data the database refuses
 * for what it was asked (classes 22 and 23) is the caller's error: KEEL_EINVAL. */
static int db_value(db *d, const char *what, const char *sql, int n, const char *const *params,
                    char **out)
{
    if (out)
        *out = NULL;
    PGresult *r = PQexecParams(d->conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    int rc = KEEL_OK;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        if (state && msg && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0))
            rc = keel_error_set(d->err, KEEL_EINVAL, "%s: %s", what, msg);
        else
            rc = keel_ledger_pq_error(d->conn, r, what, &d->broken, d->err);
    } else if (out && st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) &&
               !(*out = strdup(PQgetvalue(r, 0, 0)))) {
        rc = keel_error_set(d->err, KEEL_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

static int db_tx(db *d, const char *sql)
{
    int rc = db_value(d, sql, sql, 0, NULL, NULL);
    d->in_tx = rc == KEEL_OK && strcmp(sql, "BEGIN") == 0;
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Money (numbers under keys ending in _usd) with exactly two decimals, as numeric(14,2) gave
 * it; the values are far inside the range where "%.2f" of a double gives back the cents. */
static void money_two_decimals(cJSON *node)
{
    for (cJSON *c = node ? node->child : NULL, *next; c; c = next) {
        next = c->next;
        if (cJSON_IsNumber(c) && c->string && ends_with(c->string, "_usd")) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.2f", c->valuedouble);
            cJSON *raw = cJSON_CreateRaw(buf);
            if (raw && !cJSON_ReplaceItemInObjectCaseSensitive(node, c->string, raw))
                cJSON_Delete(raw);
        } else {
            money_two_decimals(c);
        }
    }
}

/* PostgreSQL's JSON text ({"a" : 1}) as compact JSON ({"a":1.00}) in a new string. */
static int compact(char **json, keel_error *err)
{
    cJSON *o = keel_json_from(*json);
    money_two_decimals(o);
    char *text = o ? keel_json_print(o) : NULL;
    cJSON_Delete(o);
    free(*json);
    *json = text;
    return text ? KEEL_OK : keel_error_set(err, KEEL_ENOMEM, "out of memory building the result");
}

/* A read tool: one query whose single value is the whole answer. */
static int answer(const keel_tool_call *call, const char *what, const char *sql, int n,
                  const char *const *params, char **result_json, keel_error *err)
{
    db d;
    int rc = db_open(&d, call, err);
    if (rc == KEEL_OK)
        rc = db_value(&d, what, sql, n, params, result_json);
    keel_ledger_session_close(&d);
    if (rc == KEEL_OK && !*result_json)
        rc = keel_error_set(err, KEEL_EINTERNAL, "%s gave no answer", what);
    return rc == KEEL_OK ? compact(result_json, err) : rc;
}

/* ---- arguments (validated against the schema already; checked again here) ---- */

static int arg_text(const cJSON *args, const char *name, const char **out, keel_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, name);
    *out = NULL;
    if (!cJSON_IsString(v) || strspn(v->valuestring, " \t\r\n") == strlen(v->valuestring))
        return keel_error_set(err, KEEL_EINVAL, "argument '%s' must be a non-empty string", name);
    if (strlen(v->valuestring) > MAX_TEXT)
        return keel_error_set(err, KEEL_EINVAL, "argument '%s' is longer than %d characters", name,
                              MAX_TEXT);
    *out = v->valuestring;
    return KEEL_OK;
}

/* A number in [min, max] (whole if `whole`) as text for SQL. */
static int arg_number(const cJSON *args, const char *name, double min, double max, bool whole,
                      char buf[64], keel_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, name);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max || (whole && v->valuedouble != floor(v->valuedouble)))
        return keel_error_set(err, KEEL_EINVAL, "argument '%s' must be a %s from %g to %g", name,
                              whole ? "whole number" : "number", min, max);
    snprintf(buf, 64, whole ? "%.0f" : "%.17g", v->valuedouble);
    return KEEL_OK;
}

/* The tags [{key, value}] as a JSON object text {"key": "value"} (caller frees). */
static int arg_tags(const cJSON *args, char **out, keel_error *err)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(args, "tags");
    *out = NULL;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > MAX_TAGS)
        return keel_error_set(err, KEEL_EINVAL, "argument 'tags' must be an array of at most %d",
                              MAX_TAGS);
    cJSON *tags = cJSON_CreateObject();
    int rc = tags ? KEEL_OK : keel_error_set(err, KEEL_ENOMEM, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, list)
    {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "key"));
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "value"));
        if (rc != KEEL_OK)
            break;
        if (!k || !v || !k[0] || !v[0] || strlen(k) > MAX_TAG_TEXT || strlen(v) > MAX_TAG_TEXT)
            rc = keel_error_set(err, KEEL_EINVAL,
                                "each tag needs a key and a value of 1 to %d characters",
                                MAX_TAG_TEXT);
        else if (cJSON_GetObjectItemCaseSensitive(tags, k))
            rc = keel_error_set(err, KEEL_EINVAL, "tag '%s' is given twice", k);
        else if (!cJSON_AddStringToObject(tags, k, v))
            rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
    }
    if (rc == KEEL_OK && !(*out = keel_json_print(tags)))
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
    cJSON_Delete(tags);
    return rc;
}

/* ---- get_sandbox_policy, check_sandbox_budget ---- */

static int tool_get_sandbox_policy(const keel_tool_call *call, const cJSON *args,
                                   char **result_json, keel_error *err)
{
    static const char sql[] =
        "SELECT json_build_object('cost_center', a.cc, 'found', p.cost_center IS NOT NULL,"
        " 'allowed_regions', coalesce(to_json(p.allowed_regions), '[]'::json),"
        " 'required_tags', coalesce(to_json(p.required_tags), '[]'::json),"
        " 'max_budget_cap_usd', p.max_budget_cap_usd, 'max_ttl_hours', p.max_ttl_hours,"
        " 'reason', CASE WHEN c.id IS NULL THEN 'unknown cost centre ' || a.cc"
        "  WHEN p.cost_center IS NULL THEN a.cc || ' has no sandbox policy: no sandbox can be'"
        "  || ' deployed for it' END)::text"
        " FROM (SELECT $1::text AS cc) a LEFT JOIN cost_centers c ON c.id = a.cc"
        " LEFT JOIN sandbox_policies p ON p.cost_center = a.cc";
    const char *p[1];
    if (arg_text(args, "cost_center", &p[0], err) != KEEL_OK)
        return err->code;
    return answer(call, "read sandbox policy", sql, 1, p, result_json, err);
}

/* The sandbox budget of cost centre a.cc: amount, committed (the caps of its live sandboxes)
 * and available. */
#define BUDGET_JOIN                                                                                \
    " LEFT JOIN LATERAL (SELECT s.amount_usd, l.committed, s.amount_usd - l.committed AS "         \
    "available"                                                                                    \
    "  FROM sandbox_budgets s CROSS JOIN LATERAL (SELECT coalesce(sum(x.budget_cap_usd), 0)"       \
    "   ::numeric(14, 2) AS committed FROM sandboxes x WHERE x.cost_center = s.cost_center"        \
    "   AND x.expires_at > now()) l WHERE s.cost_center = a.cc) b ON true"

static int tool_check_sandbox_budget(const keel_tool_call *call, const cJSON *args,
                                     char **result_json, keel_error *err)
{
    static const char sql[] =
        "SELECT json_build_object('cost_center', a.cc, 'budget_cap_usd', a.cap,"
        " 'fits', coalesce(a.cap <= b.available, false), 'amount_usd', b.amount_usd,"
        " 'committed_usd', b.committed, 'available_usd', b.available,"
        " 'reason', CASE WHEN c.id IS NULL THEN 'unknown cost centre ' || a.cc"
        "  WHEN b.amount_usd IS NULL THEN a.cc || ' has no sandbox budget'"
        "  WHEN a.cap <= b.available THEN proc_usd(a.cap) || ' fits within the '"
        "   || proc_usd(b.available) || ' left for sandboxes of ' || a.cc"
        "  ELSE proc_usd(a.cap) || ' exceeds the ' || proc_usd(b.available)"
        "   || ' left for sandboxes of ' || a.cc || ' by ' || proc_usd(a.cap - b.available)"
        " END)::text"
        " FROM (SELECT $1::text AS cc, round($2::numeric, 2) AS cap) a"
        " LEFT JOIN cost_centers c ON c.id = a.cc" BUDGET_JOIN;
    const char *p[2];
    char cap[64];
    if (arg_text(args, "cost_center", &p[0], err) != KEEL_OK ||
        arg_number(args, "budget_cap_usd", 0.01, MAX_CAP_USD, false, cap, err) != KEEL_OK)
        return err->code;
    p[1] = cap;
    return answer(call, "check sandbox budget", sql, 2, p, result_json, err);
}

/* ---- deploy_sandbox ---- */

#define SANDBOX_OUT(created)                                                                       \
    "json_build_object('deployed', true, 'sandbox_id', id, 'region', region, 'cost_center',"       \
    " cost_center, 'owner', owner, 'purpose', purpose, 'budget_cap_usd', budget_cap_usd,"          \
    " 'ttl_hours', ttl_hours, 'tags', tags, 'expires_at',"                                         \
    " to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "                  \
    "'created', " created ")::text"

/* $1 key */
static const char sandbox_select_sql[] =
    "SELECT " SANDBOX_OUT("false") " FROM sandboxes WHERE idempotency_key = $1";

/* $1 cost centre: deployments for one cost centre take turns from here to the commit. */
static const char lock_sql[] = "SELECT 1 FROM sandbox_budgets WHERE cost_center = $1 FOR UPDATE";

/* $1 cost centre, $2 region, $3 ttl hours, $4 cap, $5 tags: NULL when the policy and the budget
 * allow the sandbox, else the sentence saying which rule forbids it. */
static const char refusal_sql[] =
    "SELECT CASE WHEN c.id IS NULL THEN 'unknown cost centre ' || a.cc"
    " WHEN p.cost_center IS NULL THEN a.cc || ' has no sandbox policy: no sandbox can be deployed'"
    "  || ' for it'"
    " WHEN NOT a.region = ANY (p.allowed_regions) THEN 'region ' || a.region || ' is not allowed'"
    "  || ' for sandboxes of ' || a.cc || ' (allowed: ' || array_to_string(p.allowed_regions,"
    "  ', ') || ')'"
    " WHEN a.ttl > p.max_ttl_hours THEN 'ttl_hours ' || a.ttl || ' exceeds the '"
    "  || p.max_ttl_hours || ' hours the sandbox policy of ' || a.cc || ' allows'"
    " WHEN a.cap > p.max_budget_cap_usd THEN 'a budget cap of ' || proc_usd(a.cap)"
    "  || ' exceeds the ' || proc_usd(p.max_budget_cap_usd) || ' the sandbox policy of ' || a.cc"
    "  || ' allows for one sandbox'"
    " WHEN m.missing IS NOT NULL THEN 'missing required tags: ' || m.missing"
    "  || ' (the sandbox policy of ' || a.cc || ' requires '"
    "  || array_to_string(p.required_tags, ', ') || ')'"
    " WHEN b.amount_usd IS NULL THEN a.cc || ' has no sandbox budget'"
    " WHEN a.cap > b.available THEN 'a budget cap of ' || proc_usd(a.cap) || ' exceeds the '"
    "  || proc_usd(b.available) || ' left for sandboxes of ' || a.cc END"
    " FROM (SELECT $1::text AS cc, $2::text AS region, $3::integer AS ttl,"
    "   round($4::numeric, 2) AS cap, $5::jsonb AS tags) a"
    " LEFT JOIN cost_centers c ON c.id = a.cc"
    " LEFT JOIN sandbox_policies p ON p.cost_center = a.cc"
    " LEFT JOIN LATERAL (SELECT string_agg(t, ', ' ORDER BY t) AS missing"
    "   FROM unnest(p.required_tags) t WHERE coalesce(a.tags ->> t, '') = '') m ON "
    "true" BUDGET_JOIN;

/* $1 cost centre, $2 region: the answer for a region without capacity, NULL when it has room. */
static const char capacity_sql[] =
    "SELECT json_build_object('deployed', false, 'reason', 'capacity', 'region', r.id,"
    " 'message', r.id || ', ' || r.name || ', has no capacity for new sandboxes right now;'"
    "  || ' nothing was created. Try another allowed region.',"
    " 'alternatives', coalesce((SELECT json_agg(o.id ORDER BY o.id) FROM sandbox_regions o"
    "   WHERE o.id = ANY (p.allowed_regions) AND NOT o.at_capacity), '[]'::json))::text"
    " FROM sandbox_regions r LEFT JOIN sandbox_policies p ON p.cost_center = $1"
    " WHERE r.id = $2 AND r.at_capacity";

/* $1 key, $2 cost centre, $3 owner, $4 purpose, $5 region, $6 cap, $7 ttl, $8 tags */
static const char insert_sql[] =
    "INSERT INTO sandboxes (idempotency_key, cost_center, owner, purpose, region, budget_cap_usd,"
    " ttl_hours, tags, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, round($6::numeric, 2), $7::integer, $8::jsonb,"
    "  now() + $7::integer * interval '1 hour')"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING " SANDBOX_OUT("true");

typedef struct deploy_args {
    const char *key, *cost_center, *owner, *purpose, *region;
    char cap[64], ttl[64];
    char *tags; /* JSON object text */
} deploy_args;

/* Check the request under the budget lock, then create the sandbox; *out gets the answer. */
static int deploy_checked(db *d, const deploy_args *a, char **out)
{
    const char *cc[] = {a->cost_center}, *key[] = {a->key};
    const char *checked[] = {a->cost_center, a->region, a->ttl, a->cap, a->tags};
    const char *where[] = {a->cost_center, a->region};
    const char *row[] = {a->key,    a->cost_center, a->owner, a->purpose,
                         a->region, a->cap,         a->ttl,   a->tags};
    char *why = NULL;
    int rc = db_value(d, "lock sandbox budget", lock_sql, 1, cc, NULL);
    /* After the lock: an attempt of this key that deployed first has committed by now. */
    if (rc == KEEL_OK)
        rc = db_value(d, "read sandbox", sandbox_select_sql, 1, key, out);
    if (rc != KEEL_OK || *out)
        return rc;
    rc = db_value(d, "check sandbox request", refusal_sql, 5, checked, &why);
    if (rc == KEEL_OK && why)
        rc = keel_error_set(d->err, KEEL_EINVAL, "%s", why);
    free(why);
    if (rc == KEEL_OK)
        rc = db_value(d, "check region capacity", capacity_sql, 2, where, out);
    if (rc != KEEL_OK || *out)
        return rc; /* no capacity: an answer, and nothing to commit */
    rc = db_value(d, "insert sandbox", insert_sql, 8, row, out);
    if (rc == KEEL_OK && !*out)
        rc = keel_error_set(d->err, KEEL_EINTERNAL,
                            "insert sandbox: the key is taken by a row "
                            "that was not visible under the lock");
    return rc;
}

static int tool_deploy_sandbox(const keel_tool_call *call, const cJSON *args, char **result_json,
                               keel_error *err)
{
    deploy_args a = {.key = call ? call->idempotency_key : NULL};
    const char *key[] = {a.key};
    db d = {0};
    *result_json = NULL;
    if (!a.key || !a.key[0])
        return keel_error_set(err, KEEL_EINVAL, "deploy_sandbox needs an idempotency key");
    int rc = KEEL_OK;
    if ((rc = arg_text(args, "cost_center", &a.cost_center, err)) ||
        (rc = arg_text(args, "owner", &a.owner, err)) ||
        (rc = arg_text(args, "purpose", &a.purpose, err)) ||
        (rc = arg_text(args, "region", &a.region, err)) ||
        (rc = arg_number(args, "ttl_hours", 1, MAX_TTL, true, a.ttl, err)) ||
        (rc = arg_number(args, "budget_cap_usd", 0.01, MAX_CAP_USD, false, a.cap, err)) ||
        (rc = arg_tags(args, &a.tags, err)) || (rc = db_open(&d, call, err)))
        goto out;
    /* A retry finds its sandbox before the checks, which might answer differently now. */
    if ((rc = db_value(&d, "read sandbox", sandbox_select_sql, 1, key, result_json)) ||
        *result_json)
        goto out;
    if ((rc = db_tx(&d, "BEGIN")) == KEEL_OK)
        rc = deploy_checked(&d, &a, result_json);
    if (rc == KEEL_OK)
        rc = db_tx(&d, "COMMIT");
out:
    keel_ledger_session_close(&d);
    free(a.tags);
    if (rc == KEEL_OK)
        rc = compact(result_json, err);
    if (rc != KEEL_OK) {
        free(*result_json);
        *result_json = NULL;
    }
    return rc;
}

/* ---- the tools ---- */

/* Schemas in OpenAI's strict subset: every property required, no additional properties. */
#define COST_CENTER_PROP                                                                           \
    "\"cost_center\":{\"type\":\"string\",\"pattern\":\"\\\\S\","                                  \
    "\"description\":\"Cost centre id, e.g. CC-1001\"}"
#define CAP_PROP                                                                                   \
    "\"budget_cap_usd\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1000000,"          \
    "\"description\":\"The most the sandbox may spend before it is stopped, in US dollars\"}"

static const char policy_schema[] = "{\"type\":\"object\",\"additionalProperties\":false,"
                                    "\"required\":[\"cost_center\"],"
                                    "\"properties\":{" COST_CENTER_PROP "}}";

static const char budget_schema[] = "{\"type\":\"object\",\"additionalProperties\":false,"
                                    "\"required\":[\"cost_center\",\"budget_cap_usd\"],"
                                    "\"properties\":{" COST_CENTER_PROP "," CAP_PROP "}}";

static const char deploy_schema[] =
    "{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"cost_center\",\"owner\",\"purpose\",\"region\",\"ttl_hours\","
    "\"budget_cap_usd\",\"tags\"],"
    "\"properties\":{" COST_CENTER_PROP ","
    "\"owner\":{\"type\":\"string\",\"pattern\":\"\\\\S\","
    "\"description\":\"Who the sandbox is for, e.g. alex.engineer@example.com\"},"
    "\"purpose\":{\"type\":\"string\",\"pattern\":\"\\\\S\",\"maxLength\":2000,"
    "\"description\":\"What the sandbox is for\"},"
    "\"region\":{\"type\":\"string\",\"pattern\":\"^[a-z]{2}-[a-z]+-[0-9]$\","
    "\"description\":\"A region the cost centre's policy allows, e.g. eu-west-1\"},"
    "\"ttl_hours\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":720,"
    "\"description\":\"Hours until the sandbox is deleted\"}," CAP_PROP ","
    "\"tags\":{\"type\":\"array\",\"maxItems\":20,\"description\":\"Tags on every resource; the "
    "policy names the required keys\",\"items\":{\"type\":\"object\",\"additionalProperties\":"
    "false,\"required\":[\"key\",\"value\"],\"properties\":{"
    "\"key\":{\"type\":\"string\",\"pattern\":\"^[a-z][a-z0-9_-]{0,62}$\"},"
    "\"value\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":256}}}}}}";

const keel_tool keel_sandbox_tools[] = {
    {
        .name = "get_sandbox_policy",
        .description =
            "Read the sandbox policy of a cost centre: allowed_regions, required_tags (tag keys "
            "every sandbox must carry), max_budget_cap_usd for one sandbox and max_ttl_hours. "
            "An unknown cost centre, or one without a policy, gives found:false and a reason.",
        .schema = policy_schema,
        .risk = KEEL_TOOL_READ,
        .scopes = "sandbox:read",
        .run = tool_get_sandbox_policy,
    },
    {
        .name = "check_sandbox_budget",
        .description =
            "Check whether a sandbox budget cap fits what a cost centre has left for sandboxes "
            "(the caps of its live sandboxes count against its sandbox budget). Returns fits, "
            "available_usd and a reason sentence.",
        .schema = budget_schema,
        .risk = KEEL_TOOL_READ,
        .scopes = "sandbox:read budget:read",
        .run = tool_check_sandbox_budget,
    },
    {
        .name = "deploy_sandbox",
        .description =
            "Deploy a temporary cloud sandbox for a cost centre in a region its policy allows, "
            "with the required tags, a budget cap and a time to live. Returns deployed:true with "
            "sandbox_id (SBX-000123) and expires_at; repeating the call returns the same sandbox "
            "with created:false. A region without capacity answers deployed:false, reason "
            "capacity, with the alternatives: try one of them. A request the policy or the "
            "budget forbids is refused with the rule it breaks.",
        .schema = deploy_schema,
        .risk = KEEL_TOOL_HIGH_IMPACT,
        .scopes = "sandbox:write budget:write",
        .run = tool_deploy_sandbox,
    },
};

const size_t keel_sandbox_tools_count = sizeof keel_sandbox_tools / sizeof keel_sandbox_tools[0];
