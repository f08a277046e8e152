/*
 * keel.AgentTask (workflows/agent_task.c) on a keel worker with the agent activities, against the
 * real Temporal server, the dev stack's PostgreSQL and keel's offline model server
 * ($KEEL_MODEL_SERVER_URL; the conversations are scripted in
 * tools/model-server/scenarios/30-sandbox.json). Every state and guard rail: the final answer
 * with its usage, an invalid tool call answered to the model, the turn limit and the hand-off,
 * the token and dollar budgets, approval with edited (and re-validated) arguments, rejection,
 * continue-as-new with the same conversation, bad input, cancellation, and the sandbox-request
 * example end to end. Every finished run's history is replayed through the workflow, and with
 * KEEL_RECORD_HISTORIES=DIR kept as DIR/keel.AgentTask/<scenario>.json.
 */
#include <check.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "activities/agent.h"
#include "harness.h"
#include "activities/ledger.h"
#include "keel/keel.h"
#include "workflows/agent_task.h"
#include "workflows/registry.h"

#define TEST_API_KEY "sk-keel-test-0123456789abcdef"
#define ID_SIZE      160
#define APPROVER     "platform.lead@example.com"

/* The sandbox request without the example's system prompt and limits. */
#define SANDBOX_GOAL                                                                               \
    "\"goal\":\"Please set up a temporary cloud sandbox for the atlas team on CC-1001.\","         \
    "\"tools\":[\"get_sandbox_policy\",\"check_sandbox_budget\",\"deploy_sandbox\"],"              \
    "\"approval_required\":[\"deploy_sandbox\"],\"approvers\":[\"" APPROVER "\"]"
#define LOOP_GOAL                                                                                  \
    "\"goal\":\"Watch the sandbox policy of CC-1001 until told to stop.\","                        \
    "\"tools\":[\"get_sandbox_policy\"]"

static keel_client *client;
static keel_agent *agent;
static keel_worker *worker;
static char queue[96];

/* ---- fixture: a worker with the registry's workflows and the agent activities ---- */

static void setup(void)
{
    const char *url = getenv("KEEL_MODEL_SERVER_URL");
    ck_assert_msg(url != NULL, "KEEL_MODEL_SERVER_URL is not set (make test-integration sets it)");
    char base[256];
    snprintf(base, sizeof base, "%s/v1", url);
    setenv("OPENAI_BASE_URL", base, 1);
    setenv("OPENAI_API_KEY", TEST_API_KEY, 1);
    setenv("KEEL_MODEL", "keel-scripted-small", 1);
    setenv("KEEL_MODEL_STRONG", "keel-scripted-large", 1);
    setenv("KEEL_LLM_TIMEOUT", "10s", 1);
    keel_test_unique(queue, sizeof queue, "keel-agent-task");
    keel_error err;
    ck_assert_msg(keel_agent_new(&agent, NULL, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_ledger_seed(keel_agent_ledger(agent), &err) == KEEL_OK, "%s", err.message);
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
    size_t n_types, n_acts;
    const keel_workflow_type *const *types = keel_workflow_registry(&n_types);
    const keel_activity_type *acts = keel_agent_activities(agent, &n_acts);
    worker = keel_test_start_worker(client, queue, types, n_types, acts, n_acts);
}

static void teardown(void)
{
    keel_worker_free(worker);
    keel_client_free(client);
    keel_agent_free(agent);
}

/* ---- helpers ---- */

/* Start a run with `input`; its id goes to id[ID_SIZE], its run id to run[ID_SIZE] (may be
 * NULL). The scenario name is the id's second part, for record(). */
static void start(const char *scenario, const char *input, char *id, char *run)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "keel-agent-task-%s", scenario);
    char *run_id = NULL;
    keel_test_start_run(client, KEEL_AGENT_TASK_TYPE, queue, prefix, input, id, ID_SIZE, &run_id);
    if (run)
        snprintf(run, ID_SIZE, "%s", run_id);
    free(run_id);
}

/* Wait for the run to close with `status`; replay and record it; returns the result or failure
 * (a new object: {"result": ..., "failure_type", "failure_message"}). */
static cJSON *finish(const char *id, int status, const char *scenario)
{
    keel_workflow_outcome out =
        keel_test_finish(client, &keel_agent_task_workflow, id, NULL, status, scenario, 60000);
    cJSON *o = cJSON_CreateObject();
    if (out.result_json)
        cJSON_AddItemToObject(o, "result", cJSON_Parse(out.result_json));
    if (out.failure_type)
        cJSON_AddStringToObject(o, "failure_type", out.failure_type);
    if (out.failure_message)
        cJSON_AddStringToObject(o, "failure_message", out.failure_message);
    keel_workflow_outcome_dispose(&out);
    return o;
}

static cJSON *finish_ok(const char *id, const char *scenario)
{
    cJSON *o = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED, scenario);
    cJSON *r = cJSON_DetachItemFromObject(o, "result");
    cJSON_Delete(o);
    ck_assert_ptr_nonnull(r);
    return r;
}

static void expect_in(const char *json, const char *text)
{
    ck_assert_msg(json && strstr(json, text), "expected %s in %s", text, json ? json : "(null)");
}

/* Query `name` until the answer holds `text`; returns the answer (caller frees). */
static char *query_until(const char *id, const char *name, const char *text)
{
    return keel_test_query_until(client, id, name, text, 30000);
}

static void status_until(const char *id, const char *text)
{
    free(query_until(id, "status", text));
}

static void signal_run(const char *id, const char *name, const char *json)
{
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal(client, id, NULL, name, json, &err) == KEEL_OK, "%s",
                  err.message);
}

static const char *str(const cJSON *o, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

static double num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    ck_assert_msg(cJSON_IsNumber(v), "no number %s in %s", name, cJSON_PrintUnformatted(o));
    return v->valuedouble;
}

/* One value of a query with one parameter, as a new string (NULL for no row or SQL NULL). */
static char *sql_value(const char *sql, const char *param)
{
    keel_ledger *ledger = keel_agent_ledger(agent);
    PGconn *conn;
    keel_error err;
    ck_assert_msg(keel_ledger_acquire(ledger, &conn, &err) == KEEL_OK, "%s", err.message);
    const char *p[] = {param};
    PGresult *r = PQexecParams(conn, sql, 1, NULL, p, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
    char *value = NULL;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        value = strdup(PQgetvalue(r, 0, 0));
    char problem[512];
    snprintf(problem, sizeof problem, "%s", ok ? "" : PQresultErrorMessage(r));
    PQclear(r);
    keel_ledger_release(ledger, conn, false);
    ck_assert_msg(ok, "%s: %s", sql, problem);
    return value;
}

/* The sandboxes the run created, as "region cap" lines joined by '|' ("" for none); they are
 * deleted afterwards so that the demo budget is not used up by tests. */
static char *take_sandboxes(const char *id)
{
    char like[ID_SIZE + 8];
    snprintf(like, sizeof like, "%%/%s/%%", id);
    char *rows = sql_value("SELECT coalesce(string_agg(region || ' ' || budget_cap_usd::text, '|'"
                           " ORDER BY id), '') FROM sandboxes WHERE idempotency_key LIKE $1",
                           like);
    free(sql_value("DELETE FROM sandboxes WHERE idempotency_key LIKE $1", like));
    return rows;
}

/* The run's conversation from the ledger (a new array). */
static cJSON *transcript(const char *id)
{
    char conv[ID_SIZE + 8], *all = NULL;
    snprintf(conv, sizeof conv, "agent/%s", id);
    keel_error err;
    ck_assert_int_eq(
        keel_ledger_conversation_load(keel_agent_ledger(agent), conv, &all, NULL, &err), KEEL_OK);
    cJSON *msgs = cJSON_Parse(all);
    free(all);
    ck_assert_ptr_nonnull(msgs);
    return msgs;
}

/* How many activities of `type` the run (its last run) scheduled. */
static int scheduled(const char *id, const char *type)
{
    char *json;
    size_t len;
    keel_error err;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len, &err),
        KEEL_OK);
    cJSON *h = cJSON_Parse(json);
    free(json);
    int n = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(h, "events"))
    {
        const cJSON *a =
            cJSON_GetObjectItemCaseSensitive(ev, "activityTaskScheduledEventAttributes");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(a, "activityType");
        if (t && strcmp(str(t, "name"), type) == 0)
            n++;
    }
    cJSON_Delete(h);
    return n;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s (the tests run from the repository's root)", path);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- the sandbox request, end to end ---- */

START_TEST(the_sandbox_request_runs_end_to_end)
{
    char id[ID_SIZE];
    char *input = read_text("examples/sandbox-request.json");
    start("sandbox", input, id, NULL);
    free(input);
    /* Turn 2 proposes us-east-1: a person approves it as proposed. */
    char *status = query_until(id, "status", "\"state\":\"awaiting_approval\"");
    expect_in(status, "\"tool\":\"deploy_sandbox\"");
    expect_in(status, "\"region\":\"us-east-1\"");
    expect_in(status, "\"approvers\":[\"" APPROVER "\"]");
    expect_in(status, "\"tool_calls\":2"); /* the policy and the budget, no approval needed */
    free(status);
    char *trace = query_until(id, "__stack_trace",
                              "waiting for a person to approve or reject "
                              "deploy_sandbox");
    expect_in(trace, "us-east-1");
    free(trace);
    signal_run(id, "approve", "{\"by\":\"" APPROVER "\"}");
    /* No capacity there: the model tries eu-west-1, which needs approval again. */
    status = query_until(id, "status", "\"region\":\"eu-west-1\"");
    expect_in(status, "\"state\":\"awaiting_approval\"");
    free(status);
    signal_run(id, "approve", "{\"by\":\"" APPROVER "\",\"comment\":\"ok\"}");
    cJSON *r = finish_ok(id, "sandbox");
    ck_assert_str_eq(str(r, "outcome"), "answered");
    expect_in(str(r, "answer"), "sandbox is deployed");
    ck_assert_int_eq((int)num(r, "turns"), 4);
    ck_assert_int_eq((int)num(r, "tool_calls"), 4);
    ck_assert_int_eq((int)num(r, "approvals"), 2);
    cJSON *usage = cJSON_GetObjectItemCaseSensitive(r, "usage");
    ck_assert_int_gt((int)num(usage, "total_tokens"), 0);
    ck_assert(num(usage, "cost_usd") > 0);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(usage, "cost_known")));
    char conv[ID_SIZE + 8];
    snprintf(conv, sizeof conv, "agent/%s", id);
    ck_assert_str_eq(str(r, "conversation"), conv);
    cJSON_Delete(r);
    /* One sandbox, in the region with capacity. */
    char *rows = take_sandboxes(id);
    ck_assert_str_eq(rows, "eu-west-1 150.00");
    free(rows);
    /* The model saw the capacity answer and the deployment, each as the answer to its call. */
    cJSON *msgs = transcript(id);
    char *text = cJSON_PrintUnformatted(msgs);
    expect_in(text, "\\\"reason\\\":\\\"capacity\\\"");
    expect_in(text, "\\\"approved_by\\\":\\\"" APPROVER "\\\"");
    free(text);
    /* system, user, then 4 assistant turns and 4 tool results */
    ck_assert_int_eq(cJSON_GetArraySize(msgs), 2 + 4 + 4);
    cJSON_Delete(msgs);
}
END_TEST

/* ---- guard rails ---- */

START_TEST(an_invalid_tool_call_goes_back_to_the_model)
{
    char id[ID_SIZE], input[512], mark[64];
    keel_test_unique(mark, sizeof mark, "t");
    snprintf(input, sizeof input,
             "{\"goal\":\"Look up the sandbox policy of CC-1001 once. [[keel:fault=invalid-args "
             "times=1 id=%s]]\",\"tools\":[\"get_sandbox_policy\"]}",
             mark);
    start("invalid", input, id, NULL);
    cJSON *r = finish_ok(id, "invalid");
    ck_assert_int_eq((int)num(r, "invalid_tool_calls"), 1);
    ck_assert_int_eq((int)num(r, "tool_calls"), 0);
    ck_assert_int_eq((int)num(r, "turns"), 2);
    expect_in(str(r, "answer"), "once");
    cJSON_Delete(r);
    /* No tool activity ran; the model got the structured error as the call's result. */
    ck_assert_int_eq(scheduled(id, "tool.get_sandbox_policy"), 0);
    ck_assert_int_eq(scheduled(id, "llm.chat"), 2);
    cJSON *msgs = transcript(id);
    cJSON *tool = cJSON_GetArrayItem(msgs, 2);
    ck_assert_str_eq(str(tool, "role"), "tool");
    expect_in(str(tool, "content"), "\"error\":\"invalid_arguments\"");
    expect_in(str(tool, "content"), "\"pointer\":");
    cJSON_Delete(msgs);
}
END_TEST

START_TEST(a_tool_the_task_was_not_given_does_not_run)
{
    /* get_budget is granted to keel.AgentTask, so llm.chat finds the call valid; this task was
     * given get_sandbox_policy only. */
    char id[ID_SIZE];
    start("not-offered",
          "{\"goal\":\"Try to call a tool you were not given.\","
          "\"tools\":[\"get_sandbox_policy\"]}",
          id, NULL);
    cJSON *r = finish_ok(id, "not-offered");
    ck_assert_int_eq((int)num(r, "invalid_tool_calls"), 1);
    ck_assert_int_eq((int)num(r, "tool_calls"), 0);
    cJSON_Delete(r);
    ck_assert_int_eq(scheduled(id, "tool.get_budget"), 0);
    cJSON *msgs = transcript(id);
    expect_in(str(cJSON_GetArrayItem(msgs, 2), "content"), "\"error\":\"tool_not_offered\"");
    cJSON_Delete(msgs);
}
END_TEST

START_TEST(the_turn_limit_hands_off_to_a_person)
{
    char id[ID_SIZE];
    start("handoff", "{" LOOP_GOAL ",\"max_turns\":2}", id, NULL);
    char *status = query_until(id, "status", "\"state\":\"awaiting_handoff\"");
    expect_in(status, "\"turns\":2");
    expect_in(status, "\"tool_calls\":2");
    free(status);
    free(query_until(id, "__stack_trace", "the turn limit (2) is reached"));
    /* Signals that do not fit the state are noted, not obeyed. */
    signal_run(id, "approve", "{\"by\":\"ana\"}");
    status_until(id, "ignored signal 'approve': no tool call is waiting for approval");
    signal_run(id, "resume", "{\"turns\":1}");
    status_until(id, "ignored signal 'resume': \\\"by\\\" must name who decides");
    /* One more turn, and a person's message: the model wraps up. */
    signal_run(id, "resume", "{\"by\":\"ana\",\"turns\":1,\"message\":\"Please wrap up now.\"}");
    cJSON *r = finish_ok(id, "handoff");
    ck_assert_str_eq(str(r, "outcome"), "answered");
    expect_in(str(r, "answer"), "Stopping as asked");
    ck_assert_int_eq((int)num(r, "turns"), 3);
    ck_assert_int_eq((int)num(r, "handoffs"), 1);
    cJSON_Delete(r);
    cJSON *msgs = transcript(id);
    /* user, 2 x (assistant, tool), the person's message, the answer */
    ck_assert_int_eq(cJSON_GetArraySize(msgs), 7);
    ck_assert_str_eq(str(cJSON_GetArrayItem(msgs, 5), "content"),
                     "Message from ana: Please wrap up now.");
    cJSON_Delete(msgs);
}
END_TEST

START_TEST(a_person_can_take_over_at_the_turn_limit)
{
    char id[ID_SIZE];
    start("takeover", "{" LOOP_GOAL ",\"max_turns\":1}", id, NULL);
    status_until(id, "\"state\":\"awaiting_handoff\"");
    signal_run(id, "take_over", "{\"by\":\"ana\"}");
    status_until(id, "take_over needs the person's \\\"answer\\\"");
    signal_run(id, "take_over", "{\"by\":\"ana\",\"answer\":\"The policy is stable.\"}");
    cJSON *r = finish_ok(id, "takeover");
    ck_assert_str_eq(str(r, "outcome"), "taken_over");
    ck_assert_str_eq(str(r, "taken_over_by"), "ana");
    ck_assert_str_eq(str(r, "answer"), "The policy is stable.");
    ck_assert_int_eq((int)num(r, "turns"), 1);
    cJSON_Delete(r);
}
END_TEST

START_TEST(token_and_dollar_budgets_stop_the_task)
{
    char id[ID_SIZE];
    start("budget", "{" LOOP_GOAL ",\"max_total_tokens\":1}", id, NULL);
    cJSON *o = finish(id, KEEL_WORKFLOW_STATUS_FAILED, "budget");
    ck_assert_str_eq(str(o, "failure_type"), "BudgetExhausted");
    expect_in(str(o, "failure_message"), "the token budget is spent");
    cJSON_Delete(o);
    /* Stopped before the tool the model asked for ran. */
    ck_assert_int_eq(scheduled(id, "tool.get_sandbox_policy"), 0);

    start("budget", "{" LOOP_GOAL ",\"max_cost_usd\":0.000001}", id, NULL);
    o = finish(id, KEEL_WORKFLOW_STATUS_FAILED, "budget-usd");
    ck_assert_str_eq(str(o, "failure_type"), "BudgetExhausted");
    expect_in(str(o, "failure_message"), "the dollar budget is spent");
    cJSON_Delete(o);
    char *status = query_until(id, "status", "\"state\":\"failed\"");
    expect_in(status, "dollar budget");
    free(status);
}
END_TEST

START_TEST(an_approver_may_edit_the_arguments_which_are_validated_again)
{
    char id[ID_SIZE];
    start("edit", "{" SANDBOX_GOAL "}", id, NULL);
    status_until(id, "\"state\":\"awaiting_approval\"");
    /* Only the approvers decide. */
    signal_run(id, "approve", "{\"by\":\"mallory\"}");
    status_until(id, "'mallory' is not one of the approvers");
    /* An edit that breaks the schema comes back to the approver with the reason. */
    signal_run(id, "approve",
               "{\"by\":\"" APPROVER "\",\"arguments\":{\"budget_cap_usd\":\"lots\"}}");
    char *status = query_until(id, "status", "the edited arguments were refused");
    expect_in(status, "/budget_cap_usd");
    expect_in(status, "\"state\":\"awaiting_approval\"");
    expect_in(status, "\"budget_cap_usd\":150"); /* back to the proposal */
    free(status);
    free(query_until(id, "__stack_trace", "the edited arguments were refused"));
    /* A valid edit runs with the edited arguments. */
    signal_run(id, "approve",
               "{\"by\":\"" APPROVER "\",\"arguments\":{\"region\":\"us-west-2\","
               "\"budget_cap_usd\":120}}");
    cJSON *r = finish_ok(id, "edit");
    ck_assert_str_eq(str(r, "outcome"), "answered");
    /* Only the approval that stood counts: the refused edit went back to the approver. */
    ck_assert_int_eq((int)num(r, "approvals"), 1);
    ck_assert_int_eq((int)num(r, "turns"), 3);
    cJSON_Delete(r);
    ck_assert_int_eq(scheduled(id, "tool.deploy_sandbox"), 2);
    char *rows = take_sandboxes(id);
    ck_assert_str_eq(rows, "us-west-2 120.00");
    free(rows);
}
END_TEST

START_TEST(a_tool_that_refuses_is_reported_to_the_model)
{
    char id[ID_SIZE];
    start("refused", "{" SANDBOX_GOAL "}", id, NULL);
    status_until(id, "\"state\":\"awaiting_approval\"");
    /* Valid by the schema, but not a region the policy of CC-1001 allows. */
    signal_run(id, "approve",
               "{\"by\":\"" APPROVER "\",\"arguments\":{\"region\":\"ap-south-1\"}}");
    cJSON *r = finish_ok(id, "refused");
    expect_in(str(r, "answer"), "refused");
    ck_assert_int_eq((int)num(r, "tool_calls"), 3);
    cJSON_Delete(r);
    char *rows = take_sandboxes(id);
    ck_assert_str_eq(rows, "");
    free(rows);
    cJSON *msgs = transcript(id);
    char *text = cJSON_PrintUnformatted(msgs);
    expect_in(text, "ToolRefused");
    expect_in(text, "region ap-south-1 is not allowed for sandboxes of CC-1001");
    free(text);
    cJSON_Delete(msgs);
}
END_TEST

START_TEST(a_model_that_keeps_failing_fails_the_task)
{
    char id[ID_SIZE];
    start("model-failed",
          "{\"goal\":\"Look up the sandbox policy of CC-1001 once. [[keel:fault=401]]\","
          "\"tools\":[\"get_sandbox_policy\"]}",
          id, NULL);
    cJSON *o = finish(id, KEEL_WORKFLOW_STATUS_FAILED, "model-failed");
    ck_assert_str_eq(str(o, "failure_type"), "ModelFailed");
    expect_in(str(o, "failure_message"), "llm.chat failed after its retries: LlmAuth");
    cJSON_Delete(o);
}
END_TEST

START_TEST(a_rejected_call_is_reported_to_the_model)
{
    char id[ID_SIZE];
    start("reject", "{" SANDBOX_GOAL "}", id, NULL);
    status_until(id, "\"state\":\"awaiting_approval\"");
    signal_run(id, "reject", "{\"by\":\"" APPROVER "\",\"reason\":\"use the shared sandbox\"}");
    cJSON *r = finish_ok(id, "reject");
    expect_in(str(r, "answer"), "rejected by the approver");
    ck_assert_int_eq((int)num(r, "rejections"), 1);
    ck_assert_int_eq((int)num(r, "approvals"), 0);
    cJSON_Delete(r);
    ck_assert_int_eq(scheduled(id, "tool.deploy_sandbox"), 0);
    char *rows = take_sandboxes(id);
    ck_assert_str_eq(rows, "");
    free(rows);
    cJSON *msgs = transcript(id);
    char *text = cJSON_PrintUnformatted(msgs);
    expect_in(text, "use the shared sandbox");
    free(text);
    cJSON_Delete(msgs);
}
END_TEST

START_TEST(long_tasks_continue_as_new_with_the_same_conversation)
{
    char id[ID_SIZE], first[ID_SIZE];
    start("continue", "{" LOOP_GOAL ",\"max_turns\":5,\"continue_as_new_after\":2}", id, first);
    char *status = query_until(id, "status", "\"state\":\"awaiting_handoff\"");
    expect_in(status, "\"runs\":3");
    expect_in(status, "\"run_turns\":1");
    free(status);
    signal_run(id, "take_over", "{\"by\":\"ana\",\"answer\":\"Enough watching.\"}");
    cJSON *r = finish_ok(id, "continue-last");
    ck_assert_int_eq((int)num(r, "runs"), 3);
    ck_assert_int_eq((int)num(r, "turns"), 5);
    ck_assert_int_eq((int)num(r, "tool_calls"), 5);
    char conv[ID_SIZE + 8];
    snprintf(conv, sizeof conv, "agent/%s", id);
    ck_assert_str_eq(str(r, "conversation"), conv);
    cJSON_Delete(r);
    keel_test_replay_and_record(client, &keel_agent_task_workflow, id, first, "continue-first");
    /* One transcript across the three runs: the goal, 5 assistant turns and the 4 tool results
     * the model was sent (the fifth waited for the hand-off, and the person answered). */
    cJSON *msgs = transcript(id);
    ck_assert_int_eq(cJSON_GetArraySize(msgs), 10);
    ck_assert_str_eq(str(cJSON_GetArrayItem(msgs, 9), "role"), "assistant");
    cJSON_Delete(msgs);
}
END_TEST

START_TEST(bad_input_is_refused_by_name)
{
    static const struct {
        const char *input, *why;
    } cases[] = {
        {"{\"tools\":[\"get_sandbox_policy\"]}", "\"goal\" must be a non-empty string"},
        {"{\"goal\":\"x\",\"tools\":[]}", "\"tools\" must be a list of 1 to 32 names"},
        {"{\"goal\":\"x\",\"tools\":[\"a\"],\"approval_required\":[\"b\"]}",
         "names 'b', which is not in \"tools\""},
        {"{\"goal\":\"x\",\"tools\":[\"a\"],\"max_turns\":0}", "\"max_turns\" must be"},
        {"{\"goal\":\"x\",\"tools\":[\"a\"],\"model\":\"m\",\"model_tier\":\"small\"}", "not both"},
        {"{\"goal\":\"x\",\"tools\":[\"a\"],\"colour\":1}", "unknown field \"colour\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[ID_SIZE];
        start("bad", cases[i].input, id, NULL);
        cJSON *o = finish(id, KEEL_WORKFLOW_STATUS_FAILED, "bad");
        ck_assert_str_eq(str(o, "failure_type"), "BadInput");
        expect_in(str(o, "failure_message"), cases[i].why);
        cJSON_Delete(o);
    }
}
END_TEST

START_TEST(a_task_cancelled_while_the_model_thinks_cancels_the_call)
{
    char id[ID_SIZE];
    start("cancel-thinking",
          "{\"goal\":\"Look up the sandbox policy of CC-1001 once. [[keel:fault=slow delay=3]]\","
          "\"tools\":[\"get_sandbox_policy\"]}",
          id, NULL);
    free(
        query_until(id, "__stack_trace", "waiting for the model (llm.chat): turn 1 of at most 10"));
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_cancel(client, id, NULL, "not needed", &err), KEEL_OK);
    cJSON_Delete(finish(id, KEEL_WORKFLOW_STATUS_CANCELED, "cancel-thinking"));
    ck_assert_int_eq(scheduled(id, "llm.chat"), 1);
}
END_TEST

START_TEST(a_cancelled_task_ends_where_it_stood)
{
    char id[ID_SIZE];
    start("cancel", "{" SANDBOX_GOAL "}", id, NULL);
    status_until(id, "\"state\":\"awaiting_approval\"");
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_cancel(client, id, NULL, "not needed", &err), KEEL_OK);
    cJSON *o = finish(id, KEEL_WORKFLOW_STATUS_CANCELED, "cancel");
    cJSON_Delete(o);
    char *rows = take_sandboxes(id);
    ck_assert_str_eq(rows, "");
    free(rows);
}
END_TEST

/* ---- the sandbox tools on their own ---- */

/* Run a sandbox tool with key; its result (a new object), or NULL with *err filled. */
static cJSON *sandbox_tool(const char *name, const char *key, const char *args_json,
                           keel_error *err)
{
    const keel_toolbox *box = keel_agent_toolbox(agent);
    cJSON *args = NULL,
          *problem = keel_toolbox_check(box, KEEL_AGENT_TASK_TYPE, name, args_json, &args);
    ck_assert_msg(problem == NULL, "%s(%s) is invalid: %s", name, args_json,
                  cJSON_PrintUnformatted(problem));
    keel_tool_call call = {.ledger = keel_agent_ledger(agent), .idempotency_key = key};
    char *text = NULL;
    keel_error_clear(err);
    int rc = keel_toolbox_find(box, name)->run(&call, args, &text, err);
    cJSON_Delete(args);
    cJSON *r = rc == KEEL_OK ? cJSON_Parse(text) : NULL;
    ck_assert_msg(rc != KEEL_OK || (r && !strstr(text, "\" : ")), "not compact JSON: %s",
                  text ? text : "");
    free(text);
    return r;
}

#define DEPLOY(region, cap, ttl, tags)                                                             \
    "{\"cost_center\":\"CC-1001\",\"owner\":\"alex@example.com\",\"purpose\":\"tests\","           \
    "\"region\":\"" region "\",\"ttl_hours\":" ttl ",\"budget_cap_usd\":" cap ",\"tags\":" tags    \
    "}"
#define TAGS "[{\"key\":\"project\",\"value\":\"atlas\"},{\"key\":\"owner\",\"value\":\"alex\"}]"

START_TEST(deploy_sandbox_creates_once_per_key_and_enforces_the_policy)
{
    char key[ID_SIZE + 32], id[ID_SIZE];
    keel_test_unique(id, sizeof id, "keel-sandbox-tool");
    snprintf(key, sizeof key, "default/%s/run/1", id);
    keel_error err;
    cJSON *first =
        sandbox_tool("deploy_sandbox", key, DEPLOY("us-west-2", "99.5", "8", TAGS), &err);
    ck_assert_msg(first != NULL, "%s", err.message);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(first, "created")));
    cJSON *again =
        sandbox_tool("deploy_sandbox", key, DEPLOY("us-west-2", "99.5", "8", TAGS), &err);
    ck_assert_msg(again != NULL, "%s", err.message);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(again, "created")));
    ck_assert_str_eq(str(again, "sandbox_id"), str(first, "sandbox_id"));
    expect_in(str(first, "sandbox_id"), "SBX-");
    cJSON_Delete(first);
    cJSON_Delete(again);
    static const struct {
        const char *args, *why;
    } refused[] = {
        {DEPLOY("ap-south-1", "10", "8", TAGS), "region ap-south-1 is not allowed"},
        {DEPLOY("eu-west-1", "10", "500", TAGS), "ttl_hours 500 exceeds the 168 hours"},
        {DEPLOY("eu-west-1", "600", "8", TAGS), "exceeds the USD 500.00 the sandbox policy"},
        {DEPLOY("eu-west-1", "10", "8", "[{\"key\":\"project\",\"value\":\"atlas\"}]"),
         "missing required tags: owner"},
        {DEPLOY("eu-west-1", "10", "8",
                "[{\"key\":\"owner\",\"value\":\"a\"},"
                "{\"key\":\"owner\",\"value\":\"b\"}]"),
         "tag 'owner' is given twice"},
        {"{\"cost_center\":\"CC-9999\",\"owner\":\"a\",\"purpose\":\"b\",\"region\":\"eu-west-1\","
         "\"ttl_hours\":1,\"budget_cap_usd\":1,\"tags\":[]}",
         "unknown cost centre CC-9999"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char k[ID_SIZE + 48];
        snprintf(k, sizeof k, "%s-%zu", key, i);
        ck_assert_ptr_null(sandbox_tool("deploy_sandbox", k, refused[i].args, &err));
        ck_assert_int_eq(err.code, KEEL_EINVAL);
        expect_in(err.message, refused[i].why);
    }
    /* A region at capacity is an answer, and creates nothing. */
    cJSON *full = sandbox_tool("deploy_sandbox", "default/x/capacity/1",
                               DEPLOY("us-east-1", "10", "8", TAGS), &err);
    ck_assert_msg(full != NULL, "%s", err.message);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(full, "deployed")));
    ck_assert_str_eq(str(full, "reason"), "capacity");
    cJSON_Delete(full);
    /* The live sandbox's cap counts against the budget until it is gone. */
    cJSON *b = sandbox_tool("check_sandbox_budget", NULL,
                            "{\"cost_center\":\"CC-2001\",\"budget_cap_usd\":1000}", &err);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(b, "fits")));
    expect_in(str(b, "reason"), "exceeds the USD");
    cJSON_Delete(b);
    cJSON *p = sandbox_tool("get_sandbox_policy", NULL, "{\"cost_center\":\"CC-4001\"}", &err);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "found")));
    expect_in(str(p, "reason"), "CC-4001 has no sandbox policy");
    cJSON_Delete(p);
    char *rows = take_sandboxes(id);
    ck_assert_str_eq(rows, "us-west-2 99.50");
    free(rows);
}
END_TEST

Suite *agent_task_suite(void);

Suite *agent_task_suite(void)
{
    Suite *s = suite_create("agent-task");
    TCase *tc = tcase_create("agent-task");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, the_sandbox_request_runs_end_to_end);
    tcase_add_test(tc, an_invalid_tool_call_goes_back_to_the_model);
    tcase_add_test(tc, a_tool_the_task_was_not_given_does_not_run);
    tcase_add_test(tc, the_turn_limit_hands_off_to_a_person);
    tcase_add_test(tc, a_person_can_take_over_at_the_turn_limit);
    tcase_add_test(tc, token_and_dollar_budgets_stop_the_task);
    tcase_add_test(tc, an_approver_may_edit_the_arguments_which_are_validated_again);
    tcase_add_test(tc, a_rejected_call_is_reported_to_the_model);
    tcase_add_test(tc, a_tool_that_refuses_is_reported_to_the_model);
    tcase_add_test(tc, a_model_that_keeps_failing_fails_the_task);
    tcase_add_test(tc, long_tasks_continue_as_new_with_the_same_conversation);
    tcase_add_test(tc, bad_input_is_refused_by_name);
    tcase_add_test(tc, a_cancelled_task_ends_where_it_stood);
    tcase_add_test(tc, a_task_cancelled_while_the_model_thinks_cancels_the_call);
    tcase_add_test(tc, deploy_sandbox_creates_once_per_key_and_enforces_the_policy);
    suite_add_tcase(s, tc);
    return s;
}
