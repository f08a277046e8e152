/*
 * keel.Procurement end to end: the workflow and the agent activities on a real worker, against
 * the real Temporal server, the dev stack's PostgreSQL and keel's offline model server
 * ($KEEL_MODEL_SERVER_URL), whose scripted answers for the sample requests are in
 * tools/model-server/scenarios/10-procurement.json.
 *
 * Every test that may order works on a cost centre of its own (a budget and a manager and
 * director made for it), so that tests and repeated runs never drain each other's budget. The
 * crash tests run keel-worker ($KEEL_WORKER) as a process and SIGKILL it.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "activities/agent.h"
#include "harness.h"
#include "activities/ledger.h"
#include "converter/payload.h"
#include "keel/keel.h"
#include "keel/replayer.h"
#include "temporal/api/history/v1/message.pb-c.h"
#include "workflows/procurement.h"

#define TEST_API_KEY "sk-keel-test-0123456789abcdef"
#define REQUESTER    "alex.engineer@example.com"

#define LAPTOPS_4  "Please order 4 laptops (14-inch, 16 GB RAM) for the new engineers."
#define LAPTOPS_10 "We need 10 laptops (14-inch, 16 GB RAM) for the contractors."
#define PAPER      "We need 10 boxes of A4 copy paper and 2 black toner cartridges."

static keel_client *client;
static keel_agent *agent;
static keel_worker *worker;
static keel_ledger *ledger;
static char queue[96];

/* ---- helpers ---- */

static const char *str(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "\"%s\" is not a number", key);
    return v->valuedouble;
}

static void expect_in(const char *json, const char *text)
{
    ck_assert_msg(json && strstr(json, text), "expected '%s' in %s", text, json ? json : "(null)");
}

/* The first value of a query with up to two parameters (a new string; NULL for no row). */
static char *sql(const char *query, const char *a, const char *b)
{
    const char *p[] = {a, b};
    PGconn *conn;
    keel_error err;
    ck_assert_msg(keel_ledger_acquire(ledger, &conn, &err) == KEEL_OK, "%s", err.message);
    PGresult *r = PQexecParams(conn, query, b ? 2 : a ? 1 : 0, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    char *value = ok && st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                      ? strdup(PQgetvalue(r, 0, 0))
                      : NULL;
    char problem[512];
    snprintf(problem, sizeof problem, "%s", ok ? "" : PQresultErrorMessage(r));
    PQclear(r);
    keel_ledger_release(ledger, conn, false);
    ck_assert_msg(ok, "%s: %s", query, problem);
    return value;
}

static void expect_sql(const char *want, const char *query, const char *a)
{
    char *v = sql(query, a, NULL);
    ck_assert_msg(v && strcmp(v, want) == 0, "%s [%s] gave %s, not %s", query, a, v ? v : "NULL",
                  want);
    free(v);
}

/* A cost centre of the test's own: a budget (USD) for the current quarter, a manager
 * (m-<cc>@example.com, inactive if asked, delegating to the director) and a director
 * (d-<cc>@example.com). The CFO is the company's (chloe.cfo@example.com). */
typedef struct org {
    char cc[64], mgr[160], dir[160];
} org;

static void make_org(org *o, const char *budget, bool manager_away)
{
    keel_test_unique(o->cc, sizeof o->cc, "CC-P");
    snprintf(o->mgr, sizeof o->mgr, "m-%s@example.com", o->cc);
    snprintf(o->dir, sizeof o->dir, "d-%s@example.com", o->cc);
    free(sql("INSERT INTO cost_centers (id, name, owner) VALUES ($1, 'Procurement test', $2)",
             o->cc, o->dir));
    free(sql("INSERT INTO budgets (cost_center, period, amount_usd) VALUES ($1, "
             "proc_current_period(), $2::numeric)",
             o->cc, budget));
    free(sql("INSERT INTO approvers (person, name, role, cost_center, limit_usd, delegate) VALUES "
             "($1, 'Test Director', 'director', $2, 50000, 'chloe.cfo@example.com')",
             o->dir, o->cc));
    free(sql(manager_away ? "INSERT INTO approvers (person, name, role, cost_center, limit_usd, "
                            "delegate, active) VALUES ($1, 'Test Manager', 'manager', $2, 10000, "
                            "'d-' || $2 || '@example.com', false)"
                          : "INSERT INTO approvers (person, name, role, cost_center, limit_usd, "
                            "delegate) VALUES ($1, 'Test Manager', 'manager', $2, 10000, "
                            "'d-' || $2 || '@example.com')",
             o->mgr, o->cc));
}

/* Who the status says the approval waits for. */
static const char *pending(const cJSON *status)
{
    return str(cJSON_GetObjectItemCaseSensitive(status, "approval"), "pending");
}

/* ---- fixture ---- */

static void model_env(void)
{
    char base[256];
    snprintf(base, sizeof base, "%s/v1", keel_test_model_server());
    setenv("OPENAI_BASE_URL", base, 1);
    setenv("OPENAI_API_KEY", TEST_API_KEY, 1);
    setenv("KEEL_MODEL", "keel-scripted-small", 1);
    setenv("KEEL_MODEL_STRONG", "keel-scripted-large", 1);
}

static void setup(void)
{
    keel_error err;
    model_env();
    keel_test_unique(queue, sizeof queue, "keel-procurement");
    char hook[256];
    snprintf(hook, sizeof hook, "%s/hooks/%s", keel_test_model_server(), queue);
    setenv("KEEL_NOTIFY_WEBHOOK_URL", hook, 1);
    keel_agent_options ao = {.notify_webhook_url = hook};
    ck_assert_msg(keel_agent_new(&agent, &ao, &err) == KEEL_OK, "%s", err.message);
    const char *url = getenv("DATABASE_URL");
    ck_assert_msg(url && url[0], "DATABASE_URL is not set: eval \"$(tools/devstack env)\"");
    ck_assert_msg(keel_ledger_open(&ledger, url, 2, &err) == KEEL_OK, "%s", err.message);
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
}

static void start_worker(void)
{
    static const keel_workflow_type *const types[] = {&keel_procurement_workflow};
    size_t n_acts;
    const keel_activity_type *acts = keel_agent_activities(agent, &n_acts);
    worker = keel_test_start_worker(client, queue, types, 1, acts, n_acts);
}

static void setup_with_worker(void)
{
    setup();
    start_worker();
}

static void teardown(void)
{
    keel_worker_free(worker);
    worker = NULL;
    keel_client_free(client);
    keel_agent_free(agent);
    keel_ledger_close(ledger);
}

/* ---- runs ---- */

/* Start keel.Procurement with `request` for cost centre cc (options: JSON object text or
 * NULL); the id goes into id. */
static void start_run(char *id, size_t n, const char *scenario, const char *request,
                      const char *requester, const char *cc, const char *options)
{
    char prefix[96];
    snprintf(prefix, sizeof prefix, "keel-procurement-%s", scenario);
    cJSON *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "request", request);
    cJSON_AddStringToObject(in, "requester", requester);
    cJSON_AddStringToObject(in, "cost_center", cc);
    if (options)
        cJSON_AddItemToObject(in, "options", cJSON_Parse(options));
    char *input = cJSON_PrintUnformatted(in);
    cJSON_Delete(in);
    keel_test_start_run(client, KEEL_PROCUREMENT_TYPE, queue, prefix, input, id, n, NULL);
    free(input);
}

/* Wait for the run to close with `status`; replay its history through today's code; the
 * result (or failure message) as a new object {"result": ..., "failure": ...}. */
static cJSON *finish(const char *id, int status)
{
    char scenario[64];
    keel_test_scenario(id, "keel-procurement-", scenario, sizeof scenario);
    keel_workflow_outcome out =
        keel_test_finish(client, &keel_procurement_workflow, id, NULL, status, scenario, 90000);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "result",
                          out.result_json ? cJSON_Parse(out.result_json) : cJSON_CreateNull());
    cJSON_AddStringToObject(r, "failure", out.failure_message ? out.failure_message : "");
    cJSON_AddStringToObject(r, "failure_type", out.failure_type ? out.failure_type : "");
    keel_workflow_outcome_dispose(&out);
    return r;
}

/* The completed run's result (a new object). */
static cJSON *result_of(const char *id)
{
    cJSON *f = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED);
    cJSON *r = cJSON_DetachItemFromObjectCaseSensitive(f, "result");
    cJSON_Delete(f);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* Query status until it holds `text`; the answer (a new object). */
static cJSON *status_until(const char *id, const char *text)
{
    char *answer = NULL;
    keel_error err = {0};
    for (int64_t until = keel_test_now_ms() + 60000; keel_test_now_ms() < until;
         usleep(200 * 1000)) {
        free(answer);
        answer = NULL;
        if (keel_client_workflow_query(client, id, NULL, "status", NULL, &answer, &err) ==
                KEEL_OK &&
            strstr(answer, text)) {
            cJSON *s = cJSON_Parse(answer);
            free(answer);
            return s;
        }
    }
    ck_abort_msg("status of %s never held %s: last %s (%s)", id, text, answer ? answer : "none",
                 err.message);
    return NULL;
}

static cJSON *wait_stage(const char *id, const char *stage)
{
    char text[64];
    snprintf(text, sizeof text, "{\"stage\":\"%s\"", stage);
    return status_until(id, text);
}

static void signal_run(const char *id, const char *name, const char *json)
{
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal(client, id, NULL, name, json, &err) == KEEL_OK, "%s",
                  err.message);
}

static void approve(const char *id, const char *who, const char *extra)
{
    char json[512];
    snprintf(json, sizeof json, "{\"approver\":\"%s\",\"comment\":\"ok\"%s}", who,
             extra ? extra : "");
    signal_run(id, "approve", json);
}

/* The "decide" update: accepted (its answer holding text) or refused by the validator. */
static void decide(const char *id, const char *who, const char *verdict, bool expect_ok,
                   const char *text)
{
    char json[512];
    snprintf(json, sizeof json, "{\"approver\":\"%s\",\"decision\":\"%s\"}", who, verdict);
    keel_update_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_update(client, id, NULL, NULL, "decide", json, 30000, &out,
                                              &err) == KEEL_OK,
                  "%s", err.message);
    const char *got = out.failed ? out.failure_message : out.result_json;
    ck_assert_msg(out.failed == !expect_ok, "decide(%s) %s: %s", json,
                  out.failed ? "was refused" : "was accepted", got);
    expect_in(got, text);
    if (out.failed)
        ck_assert_str_eq(out.failure_type, "UpdateRejected");
    keel_update_outcome_dispose(&out);
}

/* How many purchase orders the requisition has (the exactly-once check). */
static void expect_pos(const char *requisition, const char *count)
{
    expect_sql(count, "SELECT count(*) FROM purchase_orders WHERE requisition_id = $1",
               requisition);
}

/* The run's history as a new object. */
static cJSON *history_of(const char *id)
{
    char *history;
    size_t len;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &history, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    cJSON *h = cJSON_ParseWithLength(history, len);
    free(history);
    ck_assert_ptr_nonnull(h);
    return h;
}

/* How many activities of type a the run scheduled; with b, how many of them went out in the
 * same workflow task as an activity of type b (the steps that run in parallel). */
static int scheduled(const char *id, const char *a, const char *b)
{
    cJSON *h = history_of(id);
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(h, "events"), *e, *f;
    int n = 0;
    cJSON_ArrayForEach(e, events)
    {
        const cJSON *at =
            cJSON_GetObjectItemCaseSensitive(e, "activityTaskScheduledEventAttributes");
        if (at == NULL ||
            strcmp(str(cJSON_GetObjectItemCaseSensitive(at, "activityType"), "name"), a) != 0)
            continue;
        if (b == NULL) {
            n++;
            continue;
        }
        const char *task = str(at, "workflowTaskCompletedEventId");
        cJSON_ArrayForEach(f, events)
        {
            const cJSON *bt =
                cJSON_GetObjectItemCaseSensitive(f, "activityTaskScheduledEventAttributes");
            if (f != e && bt &&
                strcmp(str(cJSON_GetObjectItemCaseSensitive(bt, "activityType"), "name"), b) == 0 &&
                strcmp(str(bt, "workflowTaskCompletedEventId"), task) == 0) {
                n++;
                break;
            }
        }
    }
    cJSON_Delete(h);
    return n;
}

/* How many reads of type a the run made as local activities (core_local_activity markers,
 * procurement.local-reads); with b, how many of them were recorded in the same workflow task as a
 * local activity of type b. */
static int ran_locally(const char *id, const char *a, const char *b)
{
    char *bin;
    size_t len;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_BINARY, &bin, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    Temporal__Api__History__V1__History *h =
        temporal__api__history__v1__history__unpack(NULL, len, (const uint8_t *)bin);
    free(bin);
    ck_assert_ptr_nonnull(h);
    /* Each marker's activity type and task, in history order. */
    char types[64][64];
    int64_t tasks[64];
    int n = 0;
    for (size_t i = 0; i < h->n_events && n < 64; i++) {
        const Temporal__Api__History__V1__HistoryEvent *ev = h->events[i];
        if (ev->event_type != TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED ||
            strcmp(ev->marker_recorded_event_attributes->marker_name, "core_local_activity") != 0)
            continue;
        const Temporal__Api__History__V1__MarkerRecordedEventAttributes *m =
            ev->marker_recorded_event_attributes;
        for (size_t d = 0; d < m->n_details; d++) {
            if (strcmp(m->details[d]->key, "data") != 0)
                continue;
            char *json = NULL;
            ck_assert_int_eq(keel_payloads_to_json(m->details[d]->value, "d", &json, &err),
                             KEEL_OK);
            cJSON *data = cJSON_Parse(json);
            free(json);
            snprintf(types[n], sizeof types[n], "%s", str(data, "activity_type"));
            tasks[n++] = m->workflow_task_completed_event_id;
            cJSON_Delete(data);
        }
    }
    temporal__api__history__v1__history__free_unpacked(h, NULL);
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(types[i], a) != 0)
            continue;
        bool with = b == NULL;
        for (int j = 0; j < n && !with; j++)
            with = j != i && strcmp(types[j], b) == 0 && tasks[j] == tasks[i];
        count += with;
    }
    return count;
}

/* ---- the happy paths ---- */

START_TEST(under_1000_is_auto_approved_and_ordered_once)
{
    char id[160];
    org o;
    make_org(&o, "10000", false);
    start_run(id, sizeof id, "auto", PAPER, REQUESTER, o.cc, NULL);
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    ck_assert_str_eq(str(r, "vendor_id"), "V-QUILL"); /* the lowest compliant quote */
    ck_assert_double_eq_tol(num(r, "amount_usd"), 438.00, 0.001);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "approvers")), 0);
    ck_assert_msg(strncmp(str(r, "po_number"), "PO-", 3) == 0, "%s", str(r, "po_number"));
    ck_assert_int_eq((int)num(r, "model_calls"), 2); /* intake and recommendation */
    ck_assert_int_gt((int)num(r, "tokens"), 0);
    ck_assert(num(r, "cost_usd") > 0);
    const char *req = str(r, "requisition_id");
    expect_pos(req, "1");
    expect_sql("ordered", "SELECT status FROM requisitions WHERE id = $1", req);
    expect_sql("438.00",
               "SELECT committed_usd FROM budgets WHERE cost_center = $1 AND period = "
               "proc_current_period()",
               o.cc);
    /* What operators filter on and read. */
    keel_workflow_info info;
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_describe(client, id, NULL, &info, &err), KEEL_OK);
    char sa[1024] = "";
    for (size_t i = 0; i < info.n_search_attributes; i++)
        snprintf(sa + strlen(sa), sizeof sa - strlen(sa), "%s=%s;", info.search_attributes[i].key,
                 info.search_attributes[i].value);
    keel_workflow_info_dispose(&info);
    expect_in(sa, "ProcurementStage=\"ordered\"");
    expect_in(sa, "AmountUSD=438");
    expect_in(sa, "Requester=\"" REQUESTER "\"");
    expect_in(sa, o.cc);
    char *history;
    size_t len;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &history, &len, &err),
        KEEL_OK);
    const char *types[] = {"\"llm.chat\"",
                           "\"tool.create_requisition\"",
                           "\"tool.request_quotes\"",
                           "\"tool.create_purchase_order\"",
                           "\"tool.notify\"",
                           "\"core_local_activity\""};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        expect_in(history, types[i]);
    free(history);
    /* The vendor list goes out with the budget check, both reads run as local activities in the
     * same workflow task; under USD 1,000 nobody approves, so the approvers are never looked up.
     * The effects and the quote request stay regular activities. */
    ck_assert_int_eq(ran_locally(id, "tool.check_budget", "tool.list_vendors"), 1);
    ck_assert_int_eq(ran_locally(id, "tool.check_budget", NULL), 2);
    ck_assert_int_eq(ran_locally(id, "tool.list_vendors", NULL), 1);
    ck_assert_int_eq(ran_locally(id, "tool.get_approvers", NULL), 0);
    const char *reads[] = {"tool.check_budget", "tool.list_vendors", "tool.get_approvers"};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
        ck_assert_msg(scheduled(id, reads[i], NULL) == 0, "%s was scheduled", reads[i]);
    const char *effects[] = {"tool.create_requisition", "tool.set_requisition_status",
                             "tool.request_quotes", "tool.create_purchase_order", "tool.notify"};
    for (size_t i = 0; i < sizeof effects / sizeof effects[0]; i++)
        ck_assert_msg(scheduled(id, effects[i], NULL) >= 1, "%s was not scheduled", effects[i]);
    ck_assert_int_eq(scheduled(id, "tool.create_purchase_order", NULL), 1);
    ck_assert_int_eq(scheduled(id, "llm.chat", NULL), 2);
    ck_assert_int_eq(ran_locally(id, "tool.request_quotes", NULL), 0);
    ck_assert_int_eq(ran_locally(id, "tool.notify", NULL), 0);
    cJSON_Delete(r);
}
END_TEST

START_TEST(a_manager_approves_by_signal_and_others_are_ignored)
{
    char id[160];
    org o;
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "manager", LAPTOPS_4, REQUESTER, o.cc, NULL);
    cJSON *s = wait_stage(id, "approval");
    ck_assert_str_eq(pending(s), o.mgr);
    ck_assert_double_eq_tol(num(s, "amount_usd"), 4596.00, 0.001); /* Contoso */
    expect_in(str(s, "waiting_for"), "waiting for approval by");
    cJSON_Delete(s);
    /* The Web UI's stack trace shows the state machine's state. */
    char *trace = NULL;
    keel_error err;
    ck_assert_int_eq(
        keel_client_workflow_query(client, id, NULL, "__stack_trace", NULL, &trace, &err), KEEL_OK);
    expect_in(trace, "stage approval: waiting for approval by m-");
    free(trace);
    approve(id, REQUESTER, NULL);
    cJSON_Delete(status_until(id, "cannot decide on it"));
    approve(id, o.dir, NULL);
    cJSON_Delete(status_until(id, "has no authority"));
    approve(id, o.mgr, NULL);
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    ck_assert_str_eq(str(r, "vendor_id"), "V-CONTOSO");
    ck_assert_str_eq(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "approvers"), 0)->valuestring,
        o.mgr);
    expect_pos(str(r, "requisition_id"), "1");
    /* In parallel: the budget check and the vendors, the recheck and the approvers. */
    ck_assert_int_eq(ran_locally(id, "tool.check_budget", "tool.list_vendors"), 1);
    ck_assert_int_eq(ran_locally(id, "tool.check_budget", "tool.get_approvers"), 1);
    ck_assert_int_eq(ran_locally(id, "tool.get_approvers", NULL), 1);
    ck_assert_int_eq(scheduled(id, "tool.get_approvers", NULL), 0);
    ck_assert_int_eq(scheduled(id, "tool.check_budget", NULL), 0);
    cJSON_Delete(r);
}
END_TEST

START_TEST(three_quotes_a_director_and_the_update_validator)
{
    char id[160];
    org o;
    make_org(&o, "50000", false);
    start_run(id, sizeof id, "director", LAPTOPS_10, REQUESTER, o.cc, NULL);
    cJSON *s = wait_stage(id, "approval");
    /* From USD 5,000: quotes from every listed vendor, ByteBridge left out for its missing
     * certification although it is the cheapest, and the model's pick of it ignored. */
    char *text = cJSON_PrintUnformatted(s);
    expect_in(text, "\"vendor_id\":\"V-BYTEBRIDGE\"");
    expect_in(text, "not certified for it-hardware");
    expect_in(text, "ignored: V-BYTEBRIDGE is not compliant");
    free(text);
    ck_assert_int_ge(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "quotes")), 3);
    ck_assert_double_eq_tol(num(s, "amount_usd"), 11490.00, 0.001);
    cJSON_Delete(s);
    decide(id, REQUESTER, "approve", false, "cannot decide on it");
    decide(id, o.dir, "approve", false, "has no authority to decide now: waiting for m-");
    decide(id, "someone@example.com", "approve", false, "has no authority");
    decide(id, o.mgr, "approve", true, "\"pending\":\"d-");
    decide(id, o.mgr, "approve", false, "already approved");
    decide(id, o.dir, "approve", true, "\"stage\":\"ordering\"");
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    ck_assert_str_eq(str(r, "vendor_id"), "V-CONTOSO");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "approvers")), 2);
    cJSON_Delete(r);
}
END_TEST

START_TEST(the_cfo_joins_above_50000)
{
    char id[160];
    org o;
    make_org(&o, "500000", false);
    start_run(id, sizeof id, "cfo", "Order 150 laptops for the new site.", REQUESTER, o.cc, NULL);
    cJSON_Delete(wait_stage(id, "approval"));
    decide(id, o.mgr, "approve", true, "\"pending\":\"d-");
    decide(id, o.dir, "approve", true, "\"pending\":\"chloe.cfo@example.com\"");
    decide(id, "chloe.cfo@example.com", "approve", true, "ordering");
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "approvers")), 3);
    ck_assert_double_eq_tol(num(r, "amount_usd"), 172350.00, 0.001);
    cJSON_Delete(r);
}
END_TEST

/* ---- the rules that say no ---- */

START_TEST(an_approver_rejects_with_a_comment)
{
    char id[160];
    org o;
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "rejected", LAPTOPS_4, REQUESTER, o.cc, NULL);
    cJSON_Delete(wait_stage(id, "approval"));
    char json[256];
    snprintf(json, sizeof json, "{\"approver\":\"%s\",\"comment\":\"reuse the old ones\"}", o.mgr);
    signal_run(id, "reject", json);
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "rejected");
    expect_in(str(r, "reason"), "reuse the old ones");
    ck_assert_ptr_null(str(r, "po_number"));
    expect_pos(str(r, "requisition_id"), "0");
    expect_sql("rejected", "SELECT status FROM requisitions WHERE id = $1",
               str(r, "requisition_id"));
    cJSON_Delete(r);
}
END_TEST

START_TEST(a_request_over_budget_is_rejected_with_the_reason)
{
    char id[160];
    org o;
    make_org(&o, "2000", false);
    start_run(id, sizeof id, "budget", "Buy 5 laptops for the events team.", REQUESTER, o.cc, NULL);
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "rejected");
    expect_in(str(r, "reason"), "budget: USD 5,995.00 exceeds the USD 2,000.00 available");
    ck_assert_int_eq((int)num(r, "model_calls"), 1); /* no recommendation was needed */
    /* The vendors were listed beside the budget check, but none was asked for a quote; the
     * requisition is closed and the requester told at once. */
    ck_assert_int_eq(ran_locally(id, "tool.list_vendors", NULL), 1);
    ck_assert_int_eq(scheduled(id, "tool.request_quotes", NULL), 0);
    ck_assert_int_eq(scheduled(id, "tool.set_requisition_status", "tool.notify"), 1);
    cJSON_Delete(r);
}
END_TEST

START_TEST(above_250000_is_out_of_scope)
{
    char id[160];
    org o;
    make_org(&o, "1000000", false);
    start_run(id, sizeof id, "scope", "Order 300 laptops for the support centre.", REQUESTER, o.cc,
              NULL);
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "rejected");
    expect_in(str(r, "reason"), "above USD 250,000.00");
    cJSON_Delete(r);
}
END_TEST

START_TEST(the_requester_never_approves_and_an_absent_manager_has_a_delegate)
{
    char id[160];
    org o;
    /* The manager asks: the manager level goes to their delegate, the director. */
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "self", LAPTOPS_4, o.mgr, o.cc, NULL);
    cJSON *s = wait_stage(id, "approval");
    ck_assert_str_eq(pending(s), o.dir);
    cJSON_Delete(s);
    decide(id, o.mgr, "approve", false, "cannot decide on it");
    decide(id, o.dir, "approve", true, "ordering");
    cJSON_Delete(result_of(id));
    /* The manager is away: their delegate decides. */
    make_org(&o, "20000", true);
    start_run(id, sizeof id, "delegate", LAPTOPS_4, REQUESTER, o.cc, NULL);
    s = wait_stage(id, "approval");
    ck_assert_str_eq(pending(s), o.dir);
    char *text = cJSON_PrintUnformatted(s);
    expect_in(text, "inactive");
    free(text);
    cJSON_Delete(s);
    decide(id, o.mgr, "approve", false, "has no authority");
    approve(id, o.dir, NULL);
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    cJSON_Delete(r);
}
END_TEST

START_TEST(nobody_decides_at_two_levels)
{
    char id[160];
    org o;
    /* The manager is away and their delegate is the director, who holds level 2 too: level 2
     * goes to the director's delegate, the CFO. */
    make_org(&o, "50000", true);
    start_run(id, sizeof id, "twolevels", LAPTOPS_10, REQUESTER, o.cc, NULL);
    cJSON *s = wait_stage(id, "approval");
    ck_assert_str_eq(pending(s), o.dir);
    char *text = cJSON_PrintUnformatted(s);
    expect_in(text, "approves at a lower level already");
    free(text);
    cJSON_Delete(s);
    decide(id, o.dir, "approve", true, "\"pending\":\"chloe.cfo@example.com\"");
    decide(id, o.dir, "approve", false, "already approved");
    decide(id, "Chloe.CFO@example.com", "approve", true, "ordering"); /* any case */
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    cJSON_Delete(r);
}
END_TEST

START_TEST(each_level_has_its_own_escalation_clock)
{
    char id[160];
    org o;
    make_org(&o, "50000", false);
    start_run(id, sizeof id, "levelclock", LAPTOPS_10, REQUESTER, o.cc,
              "{\"remind_after_ms\":1000,\"escalate_after_ms\":2500,\"expire_after_ms\":120000}");
    cJSON_Delete(status_until(id, "\"escalated\":true"));
    decide(id, o.mgr, "approve", true, "\"escalated\":false"); /* the director's clock starts */
    /* The director's delegate (the CFO) waits for the director's own escalation. */
    decide(id, "chloe.cfo@example.com", "approve", false, "joins after escalation");
    cJSON_Delete(status_until(id, "\"escalated\":true"));
    decide(id, "chloe.cfo@example.com", "approve", true, "ordering");
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    cJSON_Delete(r);
}
END_TEST

START_TEST(reminders_escalation_to_the_delegate_and_expiry)
{
    char id[160];
    org o;
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "escalated", LAPTOPS_4, REQUESTER, o.cc,
              "{\"remind_after_ms\":1000,\"escalate_after_ms\":2500,\"expire_after_ms\":120000}");
    cJSON *s = status_until(id, "\"escalated\":true");
    ck_assert_int_ge((int)num(cJSON_GetObjectItemCaseSensitive(s, "approval"), "reminders"), 1);
    cJSON_Delete(s);
    decide(id, o.dir, "approve", true, "ordering"); /* the manager's delegate, after escalation */
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    cJSON_Delete(r);

    start_run(id, sizeof id, "expired", LAPTOPS_4, REQUESTER, o.cc,
              "{\"remind_after_ms\":60000,\"escalate_after_ms\":60000,\"expire_after_ms\":2000}");
    r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "expired");
    expect_sql("rejected", "SELECT status FROM requisitions WHERE id = $1",
               str(r, "requisition_id"));
    cJSON_Delete(r);
}
END_TEST

START_TEST(a_cancelled_request_closes_its_requisition)
{
    char id[160];
    org o;
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "cancelled", LAPTOPS_4, REQUESTER, o.cc, NULL);
    cJSON *s = wait_stage(id, "approval");
    char req[32];
    snprintf(req, sizeof req, "%s", str(s, "requisition_id"));
    cJSON_Delete(s);
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_cancel(client, id, NULL, "changed plans", &err), KEEL_OK);
    cJSON_Delete(finish(id, KEEL_WORKFLOW_STATUS_CANCELED));
    expect_sql("rejected", "SELECT status FROM requisitions WHERE id = $1", req);
    expect_pos(req, "0");
}
END_TEST

START_TEST(a_cancel_while_the_requisition_is_recorded_closes_it)
{
    char id[160];
    org o;
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "cancelrecord", LAPTOPS_4, REQUESTER, o.cc, NULL);
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_cancel(client, id, NULL, "changed plans", &err), KEEL_OK);
    cJSON_Delete(finish(id, KEEL_WORKFLOW_STATUS_CANCELED));
    /* Whatever step the cancel met, no requisition is left for a batch to buy. */
    expect_sql("0",
               "SELECT count(*) FROM requisitions WHERE cost_center = $1 AND status IN "
               "('pending', 'in_progress', 'approved', 'ordered')",
               o.cc);
}
END_TEST

START_TEST(bad_input_fails_naming_the_problem)
{
    char id[160];
    keel_test_start_run(client, KEEL_PROCUREMENT_TYPE, queue, "keel-procurement-badinput",
                        "{\"request\":\"paper\",\"cost_center\":\"CC-1001\",\"requestor\":\"x\"}",
                        id, sizeof id, NULL);
    cJSON *f = finish(id, KEEL_WORKFLOW_STATUS_FAILED);
    expect_in(str(f, "failure"), "unknown field \"requestor\"");
    cJSON_Delete(f);
}
END_TEST

/* ---- the models ---- */

START_TEST(invalid_output_goes_back_then_to_the_strong_model)
{
    char id[160], tag[64], text[256];
    org o;
    make_org(&o, "20000", false);
    keel_test_unique(tag, sizeof tag, "tier");
    snprintf(text, sizeof text, "Need the garbled thing for the desks, asap. [[keel:tag=%s]]", tag);
    start_run(id, sizeof id, "tiering", text, REQUESTER, o.cc, NULL);
    cJSON *s = wait_stage(id, "approval");
    /* Small, small again with what was wrong, then strong: only the strong model's scripted
     * answer is furniture (tools/model-server/scenarios/10-procurement.json). */
    ck_assert_int_eq((int)num(s, "intake_attempts"), 3);
    ck_assert_str_eq(str(cJSON_GetObjectItemCaseSensitive(s, "requisition"), "category"),
                     "furniture");
    ck_assert_int_eq((int)num(cJSON_GetObjectItemCaseSensitive(s, "spend"), "model_calls"), 4);
    cJSON_Delete(s);
    ck_assert_int_eq(keel_test_requests_tagged(tag),
                     4); /* three intake calls and the recommendation */
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_terminate(client, id, NULL, "test done", &err), KEEL_OK);
}
END_TEST

START_TEST(after_three_failures_a_human_provides_the_requisition)
{
    char id[160];
    org o;
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "human", "This request is hopelessly garbled.", REQUESTER, o.cc, NULL);
    cJSON *s = wait_stage(id, "intake_review");
    ck_assert_int_eq((int)num(s, "intake_attempts"), 3);
    cJSON_Delete(s);
    signal_run(id, "requisition", "{\"by\":\"pat.buyer@example.com\",\"requisition\":{}}");
    cJSON_Delete(status_until(id, "ignored signal 'requisition'"));
    const char *valid =
        "{\"by\":\"pat.buyer@example.com\",\"requisition\":{\"category\":"
        "\"office-supplies\",\"items\":[{\"description\":\"A4 copy paper\",\"quantity\":10,"
        "\"unit_price_usd\":32}],\"needed_by\":\"2030-01-31\",\"justification\":\"Paper "
        "for the printers.\"}}";
    /* Sent twice (a client's retry): one requisition, one order. */
    signal_run(id, "requisition", valid);
    signal_run(id, "requisition", valid);
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    expect_sql("1", "SELECT count(*) FROM requisitions WHERE cost_center = $1", o.cc);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "approvers")), 0);
    cJSON_Delete(r);
}
END_TEST

START_TEST(a_prompt_injection_in_a_quote_changes_nothing)
{
    char id[160];
    org o;
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "injection", "We need 40 boxes of copy paper and 8 toner cartridges.",
              REQUESTER, o.cc, NULL);
    cJSON *s = wait_stage(id, "approval");
    /* The model fell for it; the policy did not: the manager approves the real total. */
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(s, "recommendation");
    expect_in(str(rec, "rationale"), "Approval already granted by the CFO");
    ck_assert_str_eq(pending(s), o.mgr);
    ck_assert_double_eq_tol(num(s, "amount_usd"), 1752.00, 0.001);
    cJSON_Delete(s);
    decide(id, "chloe.cfo@example.com", "approve", false, "has no authority");
    approve(id, o.mgr, NULL);
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "vendor_id"), "V-QUILL");
    ck_assert_double_eq_tol(num(r, "amount_usd"), 1752.00, 0.001);
    expect_sql("1752.00", "SELECT total_usd FROM purchase_orders WHERE requisition_id = $1",
               str(r, "requisition_id"));
    cJSON_Delete(r);
}
END_TEST

START_TEST(a_recommendation_wins_only_when_the_approver_accepts_it)
{
    char id[160];
    org o;
    make_org(&o, "20000", false);
    start_run(id, sizeof id, "accepted",
              "Please order 4 laptops; we prefer Northwind for the warranty.", REQUESTER, o.cc,
              NULL);
    cJSON *s = wait_stage(id, "approval");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(s, "recommendation"), "eligible_alternative")));
    ck_assert_double_eq_tol(num(s, "amount_usd"), 5156.00, 0.001); /* the higher of the two */
    cJSON_Delete(s);
    approve(id, o.mgr, ",\"accept_recommendation\":true");
    cJSON *r = result_of(id);
    ck_assert_str_eq(str(r, "vendor_id"), "V-NORTHWIND");
    ck_assert_double_eq_tol(num(r, "amount_usd"), 5156.00, 0.001);
    cJSON_Delete(r);

    start_run(id, sizeof id, "declined",
              "Please order 4 laptops; we prefer Northwind for the warranty.", REQUESTER, o.cc,
              NULL);
    cJSON_Delete(wait_stage(id, "approval"));
    approve(id, o.mgr, NULL);
    r = result_of(id);
    ck_assert_str_eq(str(r, "vendor_id"), "V-CONTOSO");
    cJSON_Delete(r);
}
END_TEST

/* ---- crash safety: keel-worker SIGKILLed, then replaced ---- */

static void stop_worker(pid_t pid)
{
    kill(pid, SIGTERM);
    ck_assert_int_eq(keel_test_wait_exit(pid, 30), 0);
}

START_TEST(killed_during_a_model_call)
{
    char id[160], tag[64], text[512], log[] = "/tmp/keel-procurement-log-XXXXXX";
    org o;
    close(mkstemp(log));
    make_org(&o, "10000", false);
    keel_test_unique(tag, sizeof tag, "crash");
    /* The first intake call hangs at the model; the worker dies while it waits. */
    snprintf(text, sizeof text, "%s [[keel:tag=%s]] [[keel:fault=slow delay=20 times=1 id=%s]]",
             PAPER, tag, tag);
    pid_t first = keel_test_spawn_worker(queue, NULL, log);
    start_run(id, sizeof id, "crashmodel", text, REQUESTER, o.cc, NULL);
    for (int64_t until = keel_test_now_ms() + 30000;
         keel_test_requests_tagged(tag) < 1 && keel_test_now_ms() < until;)
        usleep(100 * 1000);
    ck_assert_int_eq(keel_test_requests_tagged(tag), 1);
    kill(first, SIGKILL);
    waitpid(first, NULL, 0);
    pid_t second = keel_test_spawn_worker(queue, NULL, log);
    cJSON *r = result_of(id);
    stop_worker(second);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    expect_pos(str(r, "requisition_id"), "1");
    /* The slow call, its retry after the heartbeat timeout, and the recommendation. */
    ck_assert_int_eq(keel_test_requests_tagged(tag), 3);
    cJSON_Delete(r);
    unlink(log);
}
END_TEST

START_TEST(killed_while_waiting_for_approval)
{
    char id[160], log[] = "/tmp/keel-procurement-log-XXXXXX";
    org o;
    close(mkstemp(log));
    make_org(&o, "20000", false);
    pid_t first = keel_test_spawn_worker(queue, NULL, log);
    start_run(id, sizeof id, "crashwait", LAPTOPS_4, REQUESTER, o.cc, NULL);
    cJSON_Delete(wait_stage(id, "approval"));
    kill(first, SIGKILL);
    waitpid(first, NULL, 0);
    approve(id, o.mgr, NULL); /* recorded by the server while no worker runs */
    pid_t second = keel_test_spawn_worker(queue, NULL, log);
    cJSON *r = result_of(id);
    stop_worker(second);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    expect_pos(str(r, "requisition_id"), "1");
    cJSON_Delete(r);
    unlink(log);
}
END_TEST

START_TEST(killed_between_the_order_and_its_report)
{
    char id[160], log[] = "/tmp/keel-procurement-log-XXXXXX";
    org o;
    close(mkstemp(log));
    make_org(&o, "10000", false);
    /* The first worker dies right after the purchase order is committed. */
    pid_t first = keel_test_spawn_worker(queue, "procurement.after_po_commit", log);
    start_run(id, sizeof id, "crashorder", PAPER, REQUESTER, o.cc, NULL);
    ck_assert_int_eq(keel_test_wait_exit(first, 60), 137);
    pid_t second = keel_test_spawn_worker(queue, NULL, log);
    cJSON *r = result_of(id);
    stop_worker(second);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    const char *req = str(r, "requisition_id");
    expect_pos(req, "1");
    char *po = sql("SELECT po_number FROM purchase_orders WHERE requisition_id = $1", req, NULL);
    ck_assert_str_eq(po, str(r, "po_number")); /* the retry answered with the same order */
    free(po);
    expect_sql("438.00",
               "SELECT committed_usd FROM budgets WHERE cost_center = $1 AND period = "
               "proc_current_period()",
               o.cc);
    cJSON_Delete(r);
    unlink(log);
}
END_TEST

/* How many posts the test's webhook received whose text holds `a` and `b` (b may be NULL). */
static int posts_with(const char *a, const char *b)
{
    char path[256];
    snprintf(path, sizeof path, "/_keel/hooks/%s", queue);
    cJSON *doc = keel_test_model_server_json(path);
    int n = 0;
    const cJSON *post;
    cJSON_ArrayForEach(post, cJSON_GetObjectItemCaseSensitive(doc, "posts"))
    {
        const char *text = str(post, "text");
        n += text && strstr(text, a) && (!b || strstr(text, b));
    }
    cJSON_Delete(doc);
    return n;
}

/* Wait up to 30 s for the webhook to have `want` posts holding a and b. */
static void expect_posts(int want, const char *a, const char *b)
{
    for (int64_t until = keel_test_now_ms() + 30000;
         posts_with(a, b) < want && keel_test_now_ms() < until;)
        usleep(100 * 1000);
    ck_assert_int_eq(posts_with(a, b), want);
}

/* The run's effect claims (notifications): how many are in `state` ("!done": not done). */
static char *effects_of(const char *id, const char *state)
{
    char like[256];
    snprintf(like, sizeof like, "default/%s/%%", id);
    return sql(strcmp(state, "!done") == 0
                   ? "SELECT count(*) FROM keel_effects WHERE key LIKE $1 AND state <> 'done'"
                   : "SELECT count(*) FROM keel_effects WHERE key LIKE $1 AND state = $2",
               like, strcmp(state, "!done") == 0 ? NULL : state);
}

static void expect_effects(const char *id, const char *state, const char *count)
{
    char *n = effects_of(id, state);
    ck_assert_msg(n && strcmp(n, count) == 0, "%s of %s's claims are %s, not %s", n ? n : "NULL",
                  id, state, count);
    free(n);
}

/*
 * The incident: keel-worker dies right after claiming the director's "approval needed"
 * notification, before posting it, and the director approves by signal long before the
 * notification's retry (its 20 s start-to-close timeout, then the claim's 30 s lease). The run
 * orders, tells the requester, and then waits for the notification: its retry takes the dead
 * worker's claim over and posts it, once; only then does the run complete, and no claim is left.
 */
START_TEST(killed_after_claiming_a_notification_the_run_waits_for_its_retry)
{
    char id[160], director[200], log[] = "/tmp/keel-procurement-log-XXXXXX";
    org o;
    close(mkstemp(log));
    make_org(&o, "50000", false);
    snprintf(director, sizeof director, "%s (director) is asked to approve", o.dir);
    pid_t first = keel_test_spawn_worker(queue, NULL, log);
    start_run(id, sizeof id, "crashnotify", LAPTOPS_10, REQUESTER, o.cc, NULL);
    cJSON_Delete(wait_stage(id, "approval"));
    expect_posts(1, "Approval needed for", o.mgr);
    stop_worker(first);
    /* The next worker dies as soon as it has claimed a notification: the director's. */
    pid_t second = keel_test_spawn_worker(queue, "notify.after_claim", log);
    approve(id, o.mgr, NULL);
    ck_assert_int_eq(keel_test_wait_exit(second, 60), 137);
    expect_effects(id, "claimed", "1");
    approve(id, o.dir, NULL); /* recorded while no worker runs */
    pid_t third = keel_test_spawn_worker(queue, NULL, log);
    /* Ordered and the requester told, the run waits for the director's notification. */
    bool waited = false;
    for (int64_t until = keel_test_now_ms() + 60000; !waited && keel_test_now_ms() < until;
         usleep(200 * 1000)) {
        char *answer = NULL;
        keel_error err;
        if (keel_client_workflow_query(client, id, NULL, "status", NULL, &answer, &err) != KEEL_OK)
            continue;
        waited = strstr(answer, "closing once its 1 notification(s) in flight are delivered") &&
                 strstr(answer, "\"notifications_in_flight\":1") && posts_with(director, NULL) == 0;
        free(answer);
        keel_workflow_info info;
        if (keel_client_workflow_describe(client, id, NULL, &info, &err) == KEEL_OK) {
            bool closed = info.status != KEEL_WORKFLOW_STATUS_RUNNING;
            keel_workflow_info_dispose(&info);
            if (closed)
                break; /* it did not wait (the defect) */
        }
    }
    cJSON *r = result_of(id);
    stop_worker(third);
    ck_assert_str_eq(str(r, "outcome"), "ordered");
    expect_pos(str(r, "requisition_id"), "1");
    /* Posted exactly once, by the retry that took the claim over; every claim ended done. */
    ck_assert_int_eq(posts_with("Approval needed for", director), 1);
    ck_assert_int_eq(posts_with("Approval needed for", o.mgr), 1);
    ck_assert_int_eq(posts_with(REQUESTER ": your", "is ordered as"), 1);
    expect_effects(id, "!done", "0");
    char like[256];
    snprintf(like, sizeof like, "default/%s/%%", id);
    expect_sql("1", "SELECT count(*) FROM keel_effects WHERE key LIKE $1 AND takeovers = 1", like);
    ck_assert_msg(waited, "the run never showed that it waited for the notification");
    cJSON_Delete(r);
    unlink(log);
}
END_TEST

/*
 * A run that closes without its notification (terminated: no workflow code runs) leaves the dead
 * worker's claim to nobody. keel-worker's sweep marks it abandoned once its lease is over, and
 * `keelctl effects list` shows the operator the message that may not have been sent.
 */
START_TEST(a_claim_whose_run_closed_is_abandoned_for_operators_to_see)
{
    char id[160], log[] = "/tmp/keel-procurement-log-XXXXXX";
    org o;
    close(mkstemp(log));
    make_org(&o, "20000", false);
    pid_t first = keel_test_spawn_worker(queue, "notify.after_claim", log);
    start_run(id, sizeof id, "abandoned", LAPTOPS_4, REQUESTER, o.cc, NULL);
    ck_assert_int_eq(keel_test_wait_exit(first, 60), 137); /* the manager's notification */
    expect_effects(id, "claimed", "1");
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_terminate(client, id, NULL, "test: gone", &err), KEEL_OK);
    setenv("KEEL_EFFECT_SWEEP_INTERVAL", "1s", 1);
    pid_t sweeper = keel_test_spawn_worker(queue, NULL, log);
    unsetenv("KEEL_EFFECT_SWEEP_INTERVAL");
    char *n = NULL;
    for (int64_t until = keel_test_now_ms() + 60000; keel_test_now_ms() < until; usleep(250000)) {
        free(n);
        n = effects_of(id, "abandoned");
        if (n && strcmp(n, "1") == 0)
            break;
    }
    stop_worker(sweeper);
    ck_assert_str_eq(n ? n : "NULL", "1");
    free(n);
    expect_effects(id, "claimed", "0");
    ck_assert_int_eq(posts_with("Approval needed for", o.mgr), 0);
    /* What the operator reads. */
    const char *keelctl = getenv("KEELCTL");
    ck_assert_msg(keelctl != NULL, "KEELCTL is not set (make test-integration sets it)");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s effects list abandoned --type notify --limit 100000", keelctl);
    FILE *f = popen(cmd, "r");
    size_t len = 0, cap = 1 << 16;
    char *out = malloc(cap);
    for (size_t got; (got = fread(out + len, 1, cap - len - 1, f)) > 0;)
        if ((len += got) + 1 == cap)
            out = realloc(out, cap *= 2);
    out[len] = '\0';
    ck_assert_int_eq(pclose(f), 0);
    char *at = strstr(out, id);
    ck_assert_msg(at, "%s not in:\n%s", id, out);
    expect_in(at, "did not finish within its lease of 30000 ms");
    expect_in(at, "attempt 1");
    expect_in(at, "Approval needed for");
    free(out);
    unlink(log);
}
END_TEST

Suite *procurement_suite(void);

Suite *procurement_suite(void)
{
    Suite *s = suite_create("procurement");
    TCase *flows = tcase_create("flows");
    tcase_add_checked_fixture(flows, setup_with_worker, teardown);
    tcase_set_timeout(flows, 240);
    tcase_add_test(flows, under_1000_is_auto_approved_and_ordered_once);
    tcase_add_test(flows, a_manager_approves_by_signal_and_others_are_ignored);
    tcase_add_test(flows, three_quotes_a_director_and_the_update_validator);
    tcase_add_test(flows, the_cfo_joins_above_50000);
    tcase_add_test(flows, an_approver_rejects_with_a_comment);
    tcase_add_test(flows, a_request_over_budget_is_rejected_with_the_reason);
    tcase_add_test(flows, above_250000_is_out_of_scope);
    tcase_add_test(flows, the_requester_never_approves_and_an_absent_manager_has_a_delegate);
    tcase_add_test(flows, nobody_decides_at_two_levels);
    tcase_add_test(flows, reminders_escalation_to_the_delegate_and_expiry);
    tcase_add_test(flows, each_level_has_its_own_escalation_clock);
    tcase_add_test(flows, a_cancelled_request_closes_its_requisition);
    tcase_add_test(flows, a_cancel_while_the_requisition_is_recorded_closes_it);
    tcase_add_test(flows, bad_input_fails_naming_the_problem);
    tcase_add_test(flows, invalid_output_goes_back_then_to_the_strong_model);
    tcase_add_test(flows, after_three_failures_a_human_provides_the_requisition);
    tcase_add_test(flows, a_prompt_injection_in_a_quote_changes_nothing);
    tcase_add_test(flows, a_recommendation_wins_only_when_the_approver_accepts_it);
    suite_add_tcase(s, flows);
    TCase *crash = tcase_create("crash");
    tcase_add_checked_fixture(crash, setup, teardown);
    tcase_set_timeout(crash, 240);
    tcase_add_test(crash, killed_during_a_model_call);
    tcase_add_test(crash, killed_while_waiting_for_approval);
    tcase_add_test(crash, killed_between_the_order_and_its_report);
    tcase_add_test(crash, killed_after_claiming_a_notification_the_run_waits_for_its_retry);
    tcase_add_test(crash, a_claim_whose_run_closed_is_abandoned_for_operators_to_see);
    suite_add_tcase(s, crash);
    return s;
}
