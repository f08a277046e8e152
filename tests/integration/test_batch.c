/*
 * keel.BatchProcurement (workflows/batch.c) on a keel worker with the agent activities, against
 * the real server, the dev stack's PostgreSQL and the offline model server: bounded concurrency,
 * the report's classification, continue-as-new, a Temporal Schedule made with keelctl (overlap
 * skip), cancellation, bad input, and a batch of real keel.Procurement children.
 *
 * Each test makes its own requisitions under a requester no other test or run uses, and gives the
 * batch that requester as its filter, so that it never takes anyone else's rows. Most tests run
 * a test-only child type (BatchTestChild, registered in this worker only) that behaves as its
 * requisition's justification says. Every finished batch's history is replayed through the
 * workflow, and with KEEL_RECORD_HISTORIES=DIR kept as DIR/keel.BatchProcurement/<scenario>.json.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "activities/agent.h"
#include "harness.h"
#include "activities/procurement.h"
#include "keel/keel.h"
#include "workflows/batch.h"
#include "workflows/registry.h"

#define TEST_API_KEY "sk-keel-test-0123456789abcdef"
#define CHILD_TYPE   "BatchTestChild"
#define ID_SIZE      160

/* ---- the test-only child ----
 * It checks that its input has the contract's shape (else it fails with BadInput), then acts on
 * the requisition's justification: "approve" orders, "reject" and "expire" complete so,
 * "fail" fails, "hold" waits for a "finish" signal and completes with its argument, "wait" first
 * signals the batch "procurement_waiting" and then does the same. Results carry the input back
 * as "input", so that tests can read what the batch passed. */

typedef struct test_child {
    char input[4096];
} test_child;

static double child_amount(const cJSON *in)
{
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(in, "requisition"), *line;
    double total = 0;
    cJSON_ArrayForEach(line, cJSON_GetObjectItemCaseSensitive(req, "items"))
    {
        total += cJSON_GetObjectItemCaseSensitive(line, "quantity")->valuedouble *
                 cJSON_GetObjectItemCaseSensitive(line, "unit_price_usd")->valuedouble;
    }
    return total;
}

/* The contract's shape: the fields the batch must pass, and lines without line_total_usd. */
static const char *child_input_problem(const cJSON *in)
{
    static const char *const top[] = {"requester", "cost_center", "requisition_id", "report_to"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(in, top[i])))
            return top[i];
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(in, "requisition"), *line;
    static const char *const fields[] = {"category", "needed_by", "justification"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(req, fields[i])))
            return fields[i];
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(req, "items");
    if (!cJSON_IsArray(items) || cJSON_GetArraySize(items) == 0)
        return "items";
    cJSON_ArrayForEach(line, items)
    {
        if (cJSON_GetArraySize(line) != 3 ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(line, "description")) ||
            !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(line, "quantity")) ||
            !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(line, "unit_price_usd")))
            return "items[]";
    }
    return NULL;
}

static int child_complete(keel_workflow_ctx *ctx, const test_child *c, const char *outcome,
                          const char *reason, const char *po)
{
    cJSON *in = cJSON_Parse(c->input);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "outcome", outcome);
    cJSON_AddItemToObject(out, "reason", reason ? cJSON_CreateString(reason) : cJSON_CreateNull());
    cJSON_AddItemToObject(out, "po_number", po ? cJSON_CreateString(po) : cJSON_CreateNull());
    cJSON_AddNumberToObject(out, "amount_usd", child_amount(in));
    cJSON_AddItemToObject(out, "input", in);
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    int rc = keel_workflow_complete(ctx, text);
    free(text);
    return rc;
}

static int child_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    test_child *c = state;
    snprintf(c->input, sizeof c->input, "%s", input ? input : "null");
    cJSON *in = cJSON_Parse(c->input);
    const char *problem = in ? child_input_problem(in) : "everything";
    if (problem) {
        cJSON_Delete(in);
        return keel_workflow_fail(ctx, "BadInput", problem, true);
    }
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(in, "requisition");
    char what[32], po[96];
    snprintf(what, sizeof what, "%s",
             cJSON_GetObjectItemCaseSensitive(req, "justification")->valuestring);
    snprintf(po, sizeof po, "PO-TEST-%s",
             cJSON_GetObjectItemCaseSensitive(in, "requisition_id")->valuestring);
    int rc = KEEL_OK;
    if (strcmp(what, "approve") == 0)
        rc = child_complete(ctx, c, "ordered", NULL, po);
    else if (strcmp(what, "reject") == 0)
        rc = child_complete(ctx, c, "rejected", "over budget: USD 2,000.00 available", NULL);
    else if (strcmp(what, "expire") == 0)
        rc = child_complete(ctx, c, "expired", NULL, NULL);
    else if (strcmp(what, "fail") == 0)
        rc = keel_workflow_fail(ctx, "ProcurementFailed", "the vendor API is down", true);
    else if (strcmp(what, "wait") == 0) {
        cJSON *sig = cJSON_CreateObject();
        cJSON_AddStringToObject(sig, "workflow_id", keel_workflow_id(ctx));
        cJSON_AddStringToObject(
            sig, "requisition_id",
            cJSON_GetObjectItemCaseSensitive(in, "requisition_id")->valuestring);
        cJSON_AddStringToObject(sig, "stage", "approval");
        cJSON_AddNumberToObject(sig, "amount_usd", child_amount(in));
        char *text = cJSON_PrintUnformatted(sig);
        cJSON_Delete(sig);
        const char *to = cJSON_GetObjectItemCaseSensitive(in, "report_to")->valuestring;
        rc = keel_workflow_signal_external(ctx, to, NULL, "procurement_waiting", text)
                 ? KEEL_OK
                 : KEEL_EINVAL;
        free(text);
    }
    cJSON_Delete(in);
    return rc; /* "hold": nothing until "finish" */
}

static int child_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind == KEEL_EVENT_SIGNAL_DELIVERED || ev->kind == KEEL_EVENT_SIGNAL_FAILED)
        return KEEL_OK;
    if (ev->kind == KEEL_EVENT_CANCEL_REQUESTED)
        return keel_workflow_cancelled(ctx, NULL);
    if (ev->kind == KEEL_EVENT_SIGNAL && strcmp(ev->name, "finish") == 0)
        return keel_workflow_complete(ctx, ev->json);
    return keel_workflow_error(ctx, "BatchTestChild got unexpected event %d", (int)ev->kind);
}

static const keel_workflow_type test_child_type = {
    .name = CHILD_TYPE,
    .state_size = sizeof(test_child),
    .start = child_start,
    .on_event = child_event,
};

/* ---- fixture: a worker with the registry's workflows, the test child and the agent
 * activities, on a fresh task queue ---- */

static keel_client *client;
static keel_agent *agent;
static keel_worker *worker;
static char queue[96];
static char requester[96]; /* this test's requisitions are this person's */
static const keel_workflow_type *types[16];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void setup(void)
{
    char base[256], hook[256];
    snprintf(base, sizeof base, "%s/v1", keel_test_model_server());
    setenv("OPENAI_BASE_URL", base, 1);
    setenv("OPENAI_API_KEY", TEST_API_KEY, 1);
    setenv("KEEL_MODEL", "keel-scripted-small", 1);
    setenv("KEEL_MODEL_STRONG", "keel-scripted-large", 1);
    keel_test_unique(queue, sizeof queue, "keel-batch");
    keel_test_unique(requester, sizeof requester, "batch");
    strcat(requester, "@example.com");
    snprintf(hook, sizeof hook, "%s/hooks/procurement", keel_test_model_server());
    keel_agent_options ao = {.notify_webhook_url = hook};
    keel_error err;
    ck_assert_msg(keel_agent_new(&agent, &ao, &err) == KEEL_OK, "%s", err.message);
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
    size_t n;
    const keel_workflow_type *const *registered = keel_workflow_registry(&n);
    ck_assert_uint_lt(n, sizeof types / sizeof types[0]);
    for (size_t i = 0; i < n; i++)
        types[i] = registered[i];
    types[n] = &test_child_type;
    size_t n_acts;
    const keel_activity_type *acts = keel_agent_activities(agent, &n_acts);
    worker = keel_test_start_worker(client, queue, types, n + 1, acts, n_acts);
}

static void teardown(void)
{
    keel_worker_free(worker);
    keel_client_free(client);
    keel_agent_free(agent);
}

/* ---- the database ---- */

/* The first value of a query with one parameter, as a new string (NULL for SQL NULL). */
static char *sql_value(const char *sql, const char *param)
{
    PGconn *conn;
    keel_error err;
    keel_ledger *ledger = keel_agent_ledger(agent);
    ck_assert_msg(keel_ledger_acquire(ledger, &conn, &err) == KEEL_OK, "%s", err.message);
    const char *p[] = {param};
    PGresult *r = PQexecParams(conn, sql, param ? 1 : 0, NULL, p, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    char *value =
        ok && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    char problem[512];
    snprintf(problem, sizeof problem, "%s", ok ? "" : PQresultErrorMessage(r));
    PQclear(r);
    keel_ledger_release(ledger, conn, false);
    ck_assert_msg(ok, "%s: %s", sql, problem);
    return value;
}

static void expect_status(const char *requisition_id, const char *status)
{
    char *v = sql_value("SELECT status FROM requisitions WHERE id = $1", requisition_id);
    ck_assert_msg(v && strcmp(v, status) == 0, "%s has status %s, not %s", requisition_id,
                  v ? v : "(none)", status);
    free(v);
}

static const keel_tool *tool(const char *name)
{
    for (size_t i = 0; i < keel_procurement_tools_count; i++)
        if (strcmp(keel_procurement_tools[i].name, name) == 0)
            return &keel_procurement_tools[i];
    ck_abort_msg("no tool %s", name);
    return NULL;
}

/* Run a procurement tool directly, as a worker would; the result (caller frees). */
static cJSON *run_tool(const char *name, const char *args_json)
{
    char key[128];
    keel_test_unique(key, sizeof key, "batch-test");
    keel_tool_call call = {
        .ledger = keel_agent_ledger(agent), .idempotency_key = key, .workflow_id = "test"};
    cJSON *args = cJSON_Parse(args_json);
    ck_assert_msg(args != NULL, "bad test arguments %s", args_json);
    char *result = NULL;
    keel_error err;
    keel_error_clear(&err);
    int rc = tool(name)->run(&call, args, &result, &err);
    cJSON_Delete(args);
    ck_assert_msg(rc == KEEL_OK, "%s(%s): %s", name, args_json, err.message);
    cJSON *parsed = cJSON_Parse(result);
    free(result);
    ck_assert_ptr_nonnull(parsed);
    return parsed;
}

/* A pending requisition of this test's requester: `what` is its justification (what the test
 * child does), items a JSON array of priced lines. Its id into id[32]. */
static void requisition_in(const char *cost_center, const char *category, const char *items,
                           const char *what, char *id)
{
    char *date =
        sql_value("SELECT to_char((now() AT TIME ZONE 'UTC')::date + 30, 'YYYY-MM-DD')", NULL);
    char args[2048];
    snprintf(args, sizeof args,
             "{\"requester\":\"%s\",\"cost_center\":\"%s\",\"category\":\"%s\",\"items\":%s,"
             "\"needed_by\":\"%s\",\"justification\":\"%s\"}",
             requester, cost_center, category, items, date, what);
    free(date);
    cJSON *r = run_tool("create_requisition", args);
    snprintf(id, 32, "%s", cJSON_GetObjectItemCaseSensitive(r, "requisition_id")->valuestring);
    cJSON_Delete(r);
}

static void requisition(const char *what, char *id)
{
    requisition_in("CC-1001", "office-supplies",
                   "[{\"description\":\"A4 paper\",\"quantity\":10,\"unit_price_usd\":4.5}]", what,
                   id);
}

/* ---- runs ---- */

/* The batch's input for this test: its own requisitions, the test child. `more` (may be "")
 * adds fields. */
static void batch_input(char *buf, size_t n, const char *more)
{
    snprintf(buf, n, "{\"filter\":{\"requester\":\"%s\"},\"child_type\":\"" CHILD_TYPE "\"%s%s}",
             requester, more[0] ? "," : "", more);
}

/* Start a batch; its id (keel-batch-<scenario>-...) into id, its run id into run (may be NULL,
 * caller frees). */
static void start_batch(const char *scenario, const char *input, char *id, char **run)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "keel-batch-%s", scenario);
    keel_test_start_run(client, KEEL_BATCH_TYPE, queue, prefix, input, id, ID_SIZE, run);
}

/* Wait for the workflow to close (following continue-as-new), check how, replay its last run.
 * The outcome's result is parsed into *result when it completed (caller frees). */
static keel_workflow_outcome finish_run(const char *id, const char *run, int status,
                                        const char *scenario, cJSON **result)
{
    keel_workflow_outcome out =
        keel_test_finish(client, &keel_batch_workflow, id, run, status, scenario, 90000);
    if (result) {
        *result = cJSON_Parse(out.result_json);
        ck_assert_msg(*result != NULL, "not JSON: %s", out.result_json);
    }
    return out;
}

static keel_workflow_outcome finish(const char *id, int status, const char *scenario,
                                    cJSON **result)
{
    return finish_run(id, NULL, status, scenario, result);
}

static void signal_run(const char *id, const char *name, const char *json)
{
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal(client, id, NULL, name, json, &err) == KEEL_OK,
                  "signal %s to %s: %s", name, id, err.message);
}

/* Complete a holding or waiting test child with `outcome`. */
static void finish_child(const char *requisition_id, const char *outcome)
{
    char id[ID_SIZE + 16], json[256];
    snprintf(id, sizeof id, "procurement-%.31s", requisition_id);
    snprintf(json, sizeof json,
             "{\"outcome\":\"%s\",\"reason\":null,\"po_number\":\"PO-HELD-%s\",\"amount_usd\":45}",
             outcome, requisition_id);
    signal_run(id, "finish", json);
}

/* The status of workflow id's current run, or 0 when there is no such workflow. */
static int run_status(const char *id)
{
    keel_workflow_info w;
    keel_error err;
    int rc = keel_client_workflow_describe(client, id, NULL, &w, &err);
    if (rc == KEEL_ENOTFOUND)
        return 0;
    ck_assert_msg(rc == KEEL_OK, "describe %s: %s", id, err.message);
    int status = w.status;
    keel_workflow_info_dispose(&w);
    return status;
}

static int child_status(const char *requisition_id)
{
    char id[64];
    snprintf(id, sizeof id, "procurement-%.31s", requisition_id);
    return run_status(id);
}

/* A child the batch asked for starts a moment later (the server starts it). */
static void child_until(const char *requisition_id, int status)
{
    int st = -1;
    for (int64_t until = now_ms() + 30000; now_ms() < until; usleep(100 * 1000))
        if ((st = child_status(requisition_id)) == status)
            return;
    ck_abort_msg("the child of %s is %s, not %s", requisition_id, keel_workflow_status_name(st),
                 keel_workflow_status_name(status));
}

/* Query `name` until the answer holds every text (the worker may not have seen the latest news
 * yet); returns the answer (caller frees). */
static char *query_until(const char *id, const char *name, const char *text, const char *also)
{
    char *answer = NULL;
    keel_error err = {0};
    for (int64_t until = now_ms() + 30000; now_ms() < until; usleep(100 * 1000)) {
        free(answer);
        answer = NULL;
        if (keel_client_workflow_query(client, id, NULL, name, NULL, &answer, &err) == KEEL_OK &&
            strstr(answer, text) && (also == NULL || strstr(answer, also)))
            return answer;
    }
    ck_abort_msg("query %s of %s never answered with %s %s: last %s (%s)", name, id, text,
                 also ? also : "", answer ? answer : "nothing", err.message);
    return NULL;
}

static void expect_in(const char *json, const char *text)
{
    ck_assert_msg(json && strstr(json, text), "expected %s in %s", text, json ? json : "(null)");
}

static const cJSON *get(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(v != NULL, "no %s in %s", key, cJSON_PrintUnformatted(o));
    return v;
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    ck_assert_msg(cJSON_IsString(v), "%s is not a string", key);
    return v->valuestring;
}

static int count(const cJSON *report, const char *list)
{
    return (int)get(get(report, "counts"), list)->valuedouble;
}

/* The entry of report list `list` for requisition id, which must be there. */
static const cJSON *entry(const cJSON *report, const char *list, const char *id)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, get(report, list))
    {
        if (strcmp(str(e, "requisition_id"), id) == 0)
            return e;
    }
    ck_abort_msg("%s is not in the report's %s list", id, list);
    return NULL;
}

/* ---- tests ---- */

START_TEST(bad_input_fails_the_batch_with_bad_input)
{
    static const struct {
        const char *input, *message;
    } cases[] = {
        {"{\"limit\":0}", "\"limit\" must be a whole number of requisitions from 1 to 500"},
        {"{\"limit\":501}", "\"limit\" must be a whole number of requisitions from 1 to 500"},
        {"{\"max_concurrent\":21}", "\"max_concurrent\" must be a whole number of children from 1 "
                                    "to 20"},
        {"{\"max_concurent\":2}", "unknown field \"max_concurent\""},
        {"{\"filter\":{\"cost_centre\":\"CC-1001\"}}", "\"filter\": unknown field \"cost_centre\""},
        {"{\"filter\":\"CC-1001\"}", "\"filter\" must be an object"},
        {"{\"filter\":{\"requester\":\"\"}}", "\"filter.requester\" must be a non-empty string"},
        {"{\"child_type\":7}", "\"child_type\" must be a non-empty string"},
        {"{\"child_options\":[1]}", "\"child_options\" must be an object"},
        {"{\"carry\":{\"approved\":[]}}", "\"carry.rejected\" must be a list"},
        {"[]", "the input must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[ID_SIZE];
        start_batch("bad", cases[i].input, id, NULL);
        keel_workflow_outcome out =
            finish(id, KEEL_WORKFLOW_STATUS_FAILED, i == 0 ? "bad" : NULL, NULL);
        ck_assert_str_eq(out.failure_type, "BadInput");
        expect_in(out.failure_message, cases[i].message);
        keel_workflow_outcome_dispose(&out);
    }
    keel_test_start_refused(client, KEEL_BATCH_TYPE, queue, "{\"limit\":2,\"limit\":3}",
                            "the member name \"limit\" appears twice");
}
END_TEST

/* Wait until the batch has `queued` requisitions left, `running` children and no claim in
 * flight. */
static void running_until(const char *id, int queued, int running)
{
    char *answer = NULL;
    keel_error err = {0};
    for (int64_t until = now_ms() + 30000; now_ms() < until; usleep(100 * 1000)) {
        free(answer);
        answer = NULL;
        if (keel_client_workflow_query(client, id, NULL, "status", NULL, &answer, &err) != KEEL_OK)
            continue;
        cJSON *s = cJSON_Parse(answer);
        bool there =
            s && cJSON_GetObjectItemCaseSensitive(s, "queued")->valuedouble == queued &&
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "running")) == running &&
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "claiming")) == 0 &&
            strcmp(cJSON_GetObjectItemCaseSensitive(s, "stage")->valuestring, "working") == 0;
        cJSON_Delete(s);
        if (there) {
            free(answer);
            return;
        }
    }
    ck_abort_msg("%s never had %d queued and %d running: last %s (%s)", id, queued, running,
                 answer ? answer : "nothing", err.message);
}

START_TEST(no_more_than_max_concurrent_children_run_at_once)
{
    enum { N = 5, MAX = 2 };
    char reqs[N][32], input[512], id[ID_SIZE];
    for (int i = 0; i < N; i++)
        requisition("hold", reqs[i]);
    batch_input(input, sizeof input, "\"max_concurrent\":2");
    start_batch("concurrency", input, id, NULL);
    /* Children start oldest first, MAX at a time; each one finished lets the next start. The
     * batch's children are the only ones with these ids, so the server's word is the count. */
    for (int done = 0; done < N; done++) {
        int expect_running = N - done < MAX ? N - done : MAX;
        running_until(id, N - done - expect_running, expect_running);
        for (int i = 0; i < N; i++) {
            if (i < done)
                ck_assert_int_eq(child_status(reqs[i]), KEEL_WORKFLOW_STATUS_COMPLETED);
            else if (i < done + expect_running)
                child_until(reqs[i], KEEL_WORKFLOW_STATUS_RUNNING);
            else
                ck_assert_msg(child_status(reqs[i]) == 0, "child of %s started while %d others ran",
                              reqs[i], MAX);
        }
        if (done == 0) {
            char *trace =
                query_until(id, "__stack_trace", "waiting on 2 of at most 2 children", "3 queued");
            char child[128];
            snprintf(child, sizeof child, "(procurement-%s, procurement-%s)", reqs[0], reqs[1]);
            expect_in(trace, child);
            free(trace);
        }
        finish_child(reqs[done], "ordered");
    }
    cJSON *report;
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED, "concurrency", &report);
    ck_assert_int_eq(count(report, "approved"), N);
    ck_assert_int_eq(count(report, "total"), N);
    ck_assert_int_eq((int)get(report, "runs")->valuedouble, 1);
    for (int i = 0; i < N; i++) {
        const cJSON *e = cJSON_GetArrayItem(get(report, "approved"), i);
        ck_assert_str_eq(str(e, "requisition_id"), reqs[i]); /* in the order they finished */
        char po[64];
        snprintf(po, sizeof po, "PO-HELD-%.31s", reqs[i]);
        ck_assert_str_eq(str(e, "po_number"), po);
        expect_status(reqs[i], "in_progress"); /* claimed; the test child sets nothing */
    }
    /* A closed run still answers: the peak never passed max_concurrent. */
    char *status = query_until(id, "status", "\"stage\":\"completed\"", "\"peak_running\":2");
    free(status);
    cJSON_Delete(report);
    keel_workflow_outcome_dispose(&out);
}
END_TEST

START_TEST(the_report_sorts_requisitions_by_outcome)
{
    char approve[32], reject[32], expire[32], wait[32], fail[32], taken[32], input[512];
    char id[ID_SIZE];
    requisition("approve", approve);
    requisition("reject", reject);
    requisition("expire", expire);
    requisition("wait", wait);
    requisition("fail", fail);
    requisition("hold", taken);
    /* Someone already runs the procurement of `taken`: the batch must not start a second. */
    char taken_id[64];
    snprintf(taken_id, sizeof taken_id, "procurement-%s", taken);
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = taken_id;
    o.workflow_type = CHILD_TYPE;
    o.task_queue = queue;
    o.input_json = "{\"requester\":\"x\",\"cost_center\":\"CC-1001\",\"requisition_id\":\"x\","
                   "\"report_to\":\"nobody\",\"requisition\":{\"category\":\"x\",\"needed_by\":"
                   "\"x\",\"justification\":\"hold\",\"items\":[{\"description\":\"x\","
                   "\"quantity\":1,\"unit_price_usd\":1}]}}";
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(client, &o, NULL, &err) == KEEL_OK, "%s", err.message);

    batch_input(input, sizeof input,
                "\"max_concurrent\":3,\"child_options\":{\"expire_after_ms\":60000}");
    start_batch("classify", input, id, NULL);
    cJSON *report;
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED, "classify", &report);
    ck_assert_int_eq(count(report, "approved"), 1);
    ck_assert_int_eq(count(report, "rejected"), 2);
    ck_assert_int_eq(count(report, "waiting"), 1);
    ck_assert_int_eq(count(report, "failed"), 2);
    ck_assert_int_eq(count(report, "total"), 6);
    ck_assert_int_eq((int)get(report, "omitted")->valuedouble, 0);

    const cJSON *e = entry(report, "approved", approve);
    char want[96];
    snprintf(want, sizeof want, "PO-TEST-%s", approve);
    ck_assert_str_eq(str(e, "po_number"), want);
    snprintf(want, sizeof want, "procurement-%s", approve);
    ck_assert_str_eq(str(e, "workflow_id"), want);
    ck_assert_double_eq_tol(get(e, "amount_usd")->valuedouble, 45, 0.001);
    ck_assert_str_eq(str(entry(report, "rejected", reject), "reason"),
                     "over budget: USD 2,000.00 available");
    ck_assert_str_eq(str(entry(report, "rejected", expire), "reason"), "the approval expired");
    ck_assert_str_eq(str(entry(report, "waiting", wait), "stage"), "approval");
    expect_in(str(entry(report, "failed", fail), "error"),
              "ProcurementFailed: the vendor API is down");
    e = entry(report, "failed", taken);
    expect_in(str(e, "error"), "AlreadyStarted");
    ck_assert(cJSON_IsNull(get(e, "workflow_id"))); /* not this batch's child */

    /* The requisitions: claimed, and the failed one marked failed. */
    expect_status(fail, "failed");
    expect_status(wait, "in_progress");
    expect_status(taken, "in_progress");
    /* The child got the requisition as the contract says (the test child checked the shape and
     * echoes it back): lines without line_total_usd, report_to this batch, the options. */
    keel_workflow_outcome child;
    snprintf(want, sizeof want, "procurement-%s", approve);
    ck_assert_int_eq(keel_client_workflow_result(client, want, NULL, 10000, &child, &err), KEEL_OK);
    cJSON *r = cJSON_Parse(child.result_json);
    const cJSON *in = get(r, "input");
    ck_assert_str_eq(str(in, "requisition_id"), approve);
    ck_assert_str_eq(str(in, "requester"), requester);
    ck_assert_str_eq(str(in, "cost_center"), "CC-1001");
    ck_assert_str_eq(str(in, "report_to"), id);
    ck_assert_str_eq(str(get(in, "requisition"), "category"), "office-supplies");
    ck_assert_int_eq((int)get(get(in, "options"), "expire_after_ms")->valuedouble, 60000);
    cJSON_Delete(r);
    keel_workflow_outcome_dispose(&child);

    /* The waiting child outlives the batch (parent close policy abandon). */
    ck_assert_int_eq(child_status(wait), KEEL_WORKFLOW_STATUS_RUNNING);
    finish_child(wait, "ordered");
    finish_child(taken, "ordered");
    cJSON_Delete(report);
    keel_workflow_outcome_dispose(&out);
}
END_TEST

START_TEST(a_batch_larger_than_its_limit_continues_as_new)
{
    enum { N = 5 };
    char reqs[N][32], input[512], id[ID_SIZE], *first_run = NULL;
    for (int i = 0; i < N; i++)
        requisition("approve", reqs[i]);
    batch_input(input, sizeof input, "\"limit\":2,\"max_concurrent\":2");
    start_batch("continue", input, id, &first_run);
    cJSON *report;
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED, "continue", &report);
    /* Runs of 2, 2 and 1 requisitions: the report of all three. */
    ck_assert_int_eq((int)get(report, "runs")->valuedouble, 3);
    ck_assert_int_eq(count(report, "approved"), N);
    ck_assert_int_eq(count(report, "total"), N);
    for (int i = 0; i < N; i++)
        ck_assert_str_eq(str(cJSON_GetArrayItem(get(report, "approved"), i), "requisition_id"),
                         reqs[i]);
    ck_assert_str_ne(out.run_id, first_run);
    /* The first run continued as new, carrying its report. */
    keel_workflow_info w;
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_describe(client, id, first_run, &w, &err), KEEL_OK);
    ck_assert_int_eq(w.status, KEEL_WORKFLOW_STATUS_CONTINUED_AS_NEW);
    keel_workflow_info_dispose(&w);
    keel_test_replay_and_record(client, &keel_batch_workflow, id, first_run, "continue-first");
    char *trace = query_until(id, "__stack_trace", "completed in run 3: 5 approved", NULL);
    free(trace);
    free(first_run);
    cJSON_Delete(report);
    keel_workflow_outcome_dispose(&out);
}
END_TEST

/* The schedule's "actionCount" and "running" (keelctl --json schedule describe). */
static void schedule_counts(const char *schedule, int *actions, int *running)
{
    char args[256], out[8192];
    snprintf(args, sizeof args, "--json schedule describe --id %s", schedule);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    cJSON *j = cJSON_Parse(out);
    ck_assert_msg(j != NULL, "not JSON: %s", out);
    *actions = (int)get(j, "actionCount")->valuedouble;
    *running = (int)get(j, "running")->valuedouble;
    cJSON_Delete(j);
}

static void schedule_until(const char *schedule, int actions, int running)
{
    int a = -1, r = -1;
    for (int64_t until = now_ms() + 30000; now_ms() < until; usleep(200 * 1000)) {
        schedule_counts(schedule, &a, &r);
        if (a == actions && r == running)
            return;
    }
    ck_abort_msg("schedule %s: %d actions, %d running; expected %d and %d", schedule, a, r, actions,
                 running);
}

/* Wait until keelctl shows the schedule paused with `note`. */
static void paused_until(const char *schedule, const char *note)
{
    char args[256], out[8192];
    snprintf(args, sizeof args, "--json schedule describe --id %s", schedule);
    for (int64_t until = now_ms() + 30000; now_ms() < until; usleep(200 * 1000)) {
        ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
        cJSON *j = cJSON_Parse(out);
        bool there =
            j && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "paused")) &&
            strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "note")), note) == 0;
        cJSON_Delete(j);
        if (there)
            return;
    }
    ck_abort_msg("schedule %s never showed paused with note %s: %s", schedule, note, out);
}

START_TEST(a_schedule_starts_the_batch_and_skips_overlapping_runs)
{
    char held[32], schedule[96], input[512], args[2048], out[4096];
    requisition("hold", held);
    keel_test_unique(schedule, sizeof schedule, "keel-batch-schedule");
    batch_input(input, sizeof input, "\"max_concurrent\":1");
    /* The cron time is far away: the test triggers the runs itself. */
    snprintf(args, sizeof args,
             "schedule create --id %s --cron '0 0 1 1 *' --type " KEEL_BATCH_TYPE
             " --task-queue %s --input '%s' --overlap skip --note 'batch test'",
             schedule, queue, input);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    snprintf(args, sizeof args, "schedule trigger --id %s", schedule);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    schedule_until(schedule, 1, 1);
    /* The first batch runs (its child holds); a second trigger now is skipped. The schedule
     * handles its changes in order, so once the pause that follows the trigger shows, the
     * trigger has been dealt with, while the first run was still open. */
    child_until(held, KEEL_WORKFLOW_STATUS_RUNNING);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    char trigger[256];
    snprintf(trigger, sizeof trigger, "schedule trigger --id %s", schedule);
    snprintf(args, sizeof args, "schedule pause --id %s --note after-the-second-trigger", schedule);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    paused_until(schedule, "after-the-second-trigger");
    snprintf(args, sizeof args, "schedule unpause --id %s", schedule);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    schedule_until(schedule, 1, 1); /* skipped: still one run */
    finish_child(held, "ordered");
    schedule_until(schedule, 1, 0);
    /* A trigger after the first run closed starts a second run (which finds nothing left). */
    ck_assert_msg(keel_test_keelctl(trigger, out, sizeof out) == 0, "%s", out);
    schedule_until(schedule, 2, 0);
    int actions, running;
    schedule_counts(schedule, &actions, &running);
    ck_assert_int_eq(actions, 2);

    char child_id[64];
    snprintf(child_id, sizeof child_id, "procurement-%s", held);
    keel_error err;
    char query[256];
    snprintf(query, sizeof query, "TemporalScheduledById = '%s'", schedule);
    keel_workflow_list list = {0};
    for (int64_t until = now_ms() + 30000; list.count < 2; usleep(200 * 1000)) {
        keel_workflow_list_dispose(&list);
        ck_assert_msg(now_ms() < until, "the schedule's runs are not listed");
        ck_assert_int_eq(keel_client_workflow_list(client, query, 10, &list, &err), KEEL_OK);
    }
    ck_assert_uint_eq(list.count, 2);
    /* The second run found nothing; the first ordered the held requisition. (Two runs started
     * within a second share a workflow id, the trigger's time: the run ids tell them apart.) */
    const keel_workflow_info *first = &list.items[0], *second = &list.items[1];
    if (first->start_time_ms > second->start_time_ms) {
        first = &list.items[1];
        second = &list.items[0];
    }
    cJSON *report;
    keel_workflow_outcome o2 = finish_run(second->workflow_id, second->run_id,
                                          KEEL_WORKFLOW_STATUS_COMPLETED, NULL, &report);
    ck_assert_int_eq(count(report, "total"), 0);
    cJSON_Delete(report);
    keel_workflow_outcome o1 = finish_run(first->workflow_id, first->run_id,
                                          KEEL_WORKFLOW_STATUS_COMPLETED, "schedule", &report);
    ck_assert_int_eq(count(report, "approved"), 1);
    ck_assert_str_eq(str(entry(report, "approved", held), "workflow_id"), child_id);
    ck_assert_ptr_nonnull(strstr(first->workflow_id, schedule));
    cJSON_Delete(report);
    keel_workflow_outcome_dispose(&o1);
    keel_workflow_outcome_dispose(&o2);
    keel_workflow_list_dispose(&list);
    snprintf(args, sizeof args, "schedule delete --id %s", schedule);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
}
END_TEST

START_TEST(a_cancelled_batch_ends_as_canceled_and_its_children_go_on)
{
    char first[32], second[32], input[512], id[ID_SIZE];
    requisition("hold", first);
    requisition("hold", second);
    batch_input(input, sizeof input, "\"max_concurrent\":1");
    start_batch("cancel", input, id, NULL);
    char *status = query_until(id, "status", "\"queued\":1", "\"claiming\":[]");
    free(status);
    /* A stray signal is ignored, and the status says why. */
    signal_run(id, "procurement_waiting", "{\"workflow_id\":\"procurement-REQ-0\"}");
    status = query_until(id, "status", "procurement-REQ-0 is not a child of this run", NULL);
    free(status);
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_cancel(client, id, NULL, "stop the batch", &err),
                     KEEL_OK);
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_CANCELED, "cancel", NULL);
    keel_workflow_outcome_dispose(&out);
    /* The child already started goes on; the queued requisition was never taken. */
    ck_assert_int_eq(child_status(first), KEEL_WORKFLOW_STATUS_RUNNING);
    ck_assert_int_eq(child_status(second), 0);
    expect_status(second, "pending");
    finish_child(first, "ordered");
    char args[256];
    snprintf(args, sizeof args,
             "{\"requisition_id\":\"%s\",\"status\":\"rejected\",\"note\":\"test done\"}", second);
    cJSON_Delete(run_tool("set_requisition_status", args));
}
END_TEST

START_TEST(a_child_waiting_for_people_frees_its_slot_and_may_still_finish)
{
    char wait[32], held[32], input[512], id[ID_SIZE];
    requisition("wait", wait);
    requisition("hold", held);
    batch_input(input, sizeof input, "\"max_concurrent\":1");
    start_batch("waiting", input, id, NULL);
    /* One slot: the second child starts only because the first waits for people. */
    running_until(id, 0, 1);
    child_until(held, KEEL_WORKFLOW_STATUS_RUNNING);
    ck_assert_int_eq(child_status(wait), KEEL_WORKFLOW_STATUS_RUNNING);
    char *trace = query_until(id, "__stack_trace", "1 waiting for people", NULL);
    free(trace);
    /* The waiting child finishes while the batch still runs: the report says how. */
    finish_child(wait, "rejected");
    char *status =
        query_until(id, "status", "\"counts\":{\"approved\":0,\"rejected\":1,\"waiting\":0", NULL);
    free(status);
    finish_child(held, "ordered");
    cJSON *report;
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED, "waiting", &report);
    ck_assert_int_eq(count(report, "rejected"), 1);
    ck_assert_int_eq(count(report, "approved"), 1);
    ck_assert_int_eq(count(report, "waiting"), 0);
    ck_assert_str_eq(str(entry(report, "rejected", wait), "reason"), "rejected");
    cJSON_Delete(report);
    keel_workflow_outcome_dispose(&out);
}
END_TEST

/* A second worker on a queue of its own whose agent grants keel.BatchProcurement only `tools`
 * (NULL-terminated): a tool the batch may not use fails for good, as any tool could. */
typedef struct restricted {
    keel_tool_grant grant; /* the toolbox borrows it */
    keel_agent *agent;
    keel_worker *worker;
    char queue[96];
} restricted;

static void restricted_start(restricted *r, const char *const *tools)
{
    keel_test_unique(r->queue, sizeof r->queue, "keel-batch-restricted");
    r->grant = (keel_tool_grant){KEEL_BATCH_TYPE, tools};
    keel_agent_options ao = {.grants = &r->grant, .n_grants = 1};
    keel_error err;
    ck_assert_msg(keel_agent_new(&r->agent, &ao, &err) == KEEL_OK, "%s", err.message);
    size_t n;
    keel_workflow_registry(&n);
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = r->queue;
    w.workflows = types;
    w.n_workflows = n + 1;
    w.activities = keel_agent_activities(r->agent, &w.n_activities);
    w.shutdown_grace_ms = 500;
    ck_assert_msg(keel_worker_new(&r->worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(r->worker, &err) == KEEL_OK, "%s", err.message);
}

static void restricted_stop(restricted *r)
{
    keel_worker_free(r->worker);
    keel_agent_free(r->agent);
}

/* Start a batch on another task queue. */
static void start_batch_on(const char *task_queue, const char *scenario, const char *input,
                           char *id)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "keel-batch-%s", scenario);
    keel_test_start_run(client, KEEL_BATCH_TYPE, task_queue, prefix, input, id, ID_SIZE, NULL);
}

START_TEST(a_listing_that_fails_for_good_fails_the_batch)
{
    static const char *const no_listing[] = {"set_requisition_status", NULL};
    restricted r;
    restricted_start(&r, no_listing);
    char input[512], id[ID_SIZE];
    batch_input(input, sizeof input, "\"limit\":5");
    start_batch_on(r.queue, "listing", input, id);
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_FAILED, "listing-failed", NULL);
    ck_assert_str_eq(out.failure_type, "BatchFailed");
    expect_in(out.failure_message, "could not list the pending requisitions in run 1");
    expect_in(out.failure_message, "ToolInvalidArguments");
    char *trace = query_until(id, "__stack_trace", "failed: could not list", NULL);
    free(trace);
    keel_workflow_outcome_dispose(&out);
    restricted_stop(&r);
}
END_TEST

START_TEST(requisitions_that_cannot_be_claimed_are_failed_and_the_batch_stops)
{
    static const char *const no_claims[] = {"list_pending_requisitions", NULL};
    restricted r;
    restricted_start(&r, no_claims);
    char a[32], b[32], input[512], id[ID_SIZE];
    requisition("approve", a);
    requisition("approve", b);
    /* The listing is full (2 of limit 2), but nothing could be claimed: a next run would list
     * the same two again, so the batch completes instead of continuing. */
    batch_input(input, sizeof input, "\"limit\":2");
    start_batch_on(r.queue, "claim", input, id);
    cJSON *report;
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED, "claim-failed", &report);
    ck_assert_int_eq((int)get(report, "runs")->valuedouble, 1);
    ck_assert_int_eq(count(report, "failed"), 2);
    ck_assert_int_eq(count(report, "total"), 2);
    const char *ids[] = {a, b};
    for (int i = 0; i < 2; i++) {
        const cJSON *e = entry(report, "failed", ids[i]);
        expect_in(str(e, "error"), "could not claim the requisition: ToolInvalidArguments");
        ck_assert(cJSON_IsNull(get(e, "workflow_id")));
        ck_assert_int_eq(child_status(ids[i]), 0);
        expect_status(ids[i], "pending");
        char args[256];
        snprintf(args, sizeof args,
                 "{\"requisition_id\":\"%s\",\"status\":\"rejected\",\"note\":\"test done\"}",
                 ids[i]);
        cJSON_Delete(run_tool("set_requisition_status", args));
    }
    cJSON_Delete(report);
    keel_workflow_outcome_dispose(&out);
    restricted_stop(&r);
}
END_TEST

/* A cost centre of the test's own with a budget (USD) for the current quarter, a manager
 * m-<cc>@example.com and a director d-<cc>@example.com: orders commit to it, not to the seeded
 * cost centres other tests read. */
static void own_cost_center(char *cc, size_t n, const char *budget)
{
    char sql[1024];
    keel_test_unique(cc, n, "CC-B");
    snprintf(sql, sizeof sql,
             "WITH c AS (INSERT INTO cost_centers (id, name, owner) VALUES ($1, 'Batch test',"
             "   'd-' || $1 || '@example.com') RETURNING id),"
             " b AS (INSERT INTO budgets (cost_center, period, amount_usd)"
             "   SELECT id, proc_current_period(), %s FROM c RETURNING cost_center),"
             " d AS (INSERT INTO approvers (person, name, role, cost_center, limit_usd, delegate)"
             "   SELECT 'd-' || id || '@example.com', 'Test Director', 'director', id, 50000,"
             "   'chloe.cfo@example.com' FROM c RETURNING person)"
             " INSERT INTO approvers (person, name, role, cost_center, limit_usd, delegate)"
             " SELECT 'm-' || id || '@example.com', 'Test Manager', 'manager', id, 10000,"
             " 'd-' || id || '@example.com' FROM c, d RETURNING person",
             budget);
    free(sql_value(sql, cc));
}

START_TEST(real_procurement_children_order_reject_and_wait)
{
    char cc[64], paper[32], laptops5[32], laptops4[32], input[512], id[ID_SIZE];
    keel_error err;
    ck_assert_msg(keel_ledger_seed(keel_agent_ledger(agent), &err) == KEEL_OK, "%s", err.message);
    own_cost_center(cc, sizeof cc, "20000");
    /* The sample requests as requisitions: paper and toner under USD 1,000 (auto-approved),
     * 5 laptops for Marketing (USD 2,000 left: over budget), 4 laptops (a manager decides). */
    requisition_in(cc, "office-supplies",
                   "[{\"description\":\"A4 copy paper\",\"quantity\":10,\"unit_price_usd\":32},"
                   "{\"description\":\"Black toner cartridge\",\"quantity\":2,"
                   "\"unit_price_usd\":89}]",
                   "Paper and toner for the Berlin office printers.", paper);
    requisition_in("CC-2001", "it-hardware",
                   "[{\"description\":\"14-inch business laptop, 16 GB RAM, 512 GB SSD\","
                   "\"quantity\":5,\"unit_price_usd\":1199}]",
                   "Laptops for the five new members of the events team.", laptops5);
    requisition_in(cc, "it-hardware",
                   "[{\"description\":\"14-inch business laptop, 16 GB RAM, 512 GB SSD\","
                   "\"quantity\":4,\"unit_price_usd\":1199}]",
                   "Laptops for the four engineers joining in January.", laptops4);
    snprintf(input, sizeof input, "{\"filter\":{\"requester\":\"%s\"},\"max_concurrent\":3}",
             requester);
    start_batch("real", input, id, NULL);
    cJSON *report;
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED, "real", &report);
    ck_assert_int_eq(count(report, "approved"), 1);
    ck_assert_int_eq(count(report, "rejected"), 1);
    ck_assert_int_eq(count(report, "waiting"), 1);
    ck_assert_int_eq(count(report, "failed"), 0);
    const cJSON *e = entry(report, "approved", paper);
    ck_assert_msg(strncmp(str(e, "po_number"), "PO-", 3) == 0, "%s", str(e, "po_number"));
    ck_assert(get(e, "amount_usd")->valuedouble < 1000);
    expect_in(str(entry(report, "rejected", laptops5), "reason"), "budget");
    e = entry(report, "waiting", laptops4);
    ck_assert_str_eq(str(e, "stage"), "approval");
    ck_assert(get(e, "amount_usd")->valuedouble > 1000);
    expect_status(paper, "ordered");
    expect_status(laptops5, "rejected");
    /* The waiting run outlived the batch and waits for the cost centre's manager. */
    char child[64], manager[128];
    snprintf(child, sizeof child, "procurement-%.31s", laptops4);
    snprintf(manager, sizeof manager, "m-%s@example.com", cc);
    char *status = query_until(child, "status", "\"stage\":\"approval\"", manager);
    free(status);
    ck_assert_int_eq(keel_client_workflow_cancel(client, child, NULL, "batch test done", &err),
                     KEEL_OK);
    keel_workflow_outcome c;
    ck_assert_int_eq(keel_client_workflow_result(client, child, NULL, 30000, &c, &err), KEEL_OK);
    ck_assert_int_eq(c.status, KEEL_WORKFLOW_STATUS_CANCELED);
    keel_workflow_outcome_dispose(&c);
    cJSON_Delete(report);
    keel_workflow_outcome_dispose(&out);
}
END_TEST

Suite *batch_suite(void);

Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("keel.BatchProcurement");
    tcase_set_timeout(tc, 180);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, bad_input_fails_the_batch_with_bad_input);
    tcase_add_test(tc, no_more_than_max_concurrent_children_run_at_once);
    tcase_add_test(tc, the_report_sorts_requisitions_by_outcome);
    tcase_add_test(tc, a_batch_larger_than_its_limit_continues_as_new);
    tcase_add_test(tc, a_schedule_starts_the_batch_and_skips_overlapping_runs);
    tcase_add_test(tc, a_cancelled_batch_ends_as_canceled_and_its_children_go_on);
    tcase_add_test(tc, a_child_waiting_for_people_frees_its_slot_and_may_still_finish);
    tcase_add_test(tc, a_listing_that_fails_for_good_fails_the_batch);
    tcase_add_test(tc, requisitions_that_cannot_be_claimed_are_failed_and_the_batch_stops);
    tcase_add_test(tc, real_procurement_children_order_reject_and_wait);
    suite_add_tcase(s, tc);
    return s;
}
