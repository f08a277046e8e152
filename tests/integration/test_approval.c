/*
 * keel.Approval (workflows/approval.c) on a keel worker against the real server: decisions by
 * signal and by validated update, rejection, reminders, escalation to a delegate, expiry, bad
 * input, the status query and cancellation. Every finished run's history is replayed through the
 * workflow again, so each scenario also checks that the workflow is deterministic.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/keel.h"
#include "harness.h"
#include "workflows/approval.h"
#include "workflows/registry.h"

/* The request most tests start from: cy asks ana and bo. */
#define REQUEST                                                                                    \
    "\"subject\":\"PO for 3 laptops, $4,200\",\"requester\":\"cy\",\"approvers\":[\"ana\",\"bo\"]"

static keel_client *client;
static keel_worker *worker;
static char queue[96];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- fixture: a worker with the registry's workflows on a fresh task queue ---- */

static void setup(void)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(queue, sizeof queue, "keel-approval-%ld-%ld", (long)getpid(), (long)ts.tv_nsec);
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.workflows = keel_workflow_registry(&w.n_workflows);
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);
}

static void teardown(void)
{
    keel_worker_free(worker);
    keel_client_free(client);
}

/* ---- helpers ---- */

/* Start a keel.Approval run with `input`; its id (from `prefix`) goes to id[ID_SIZE]. */
#define ID_SIZE 128
static void start(const char *prefix, const char *input, char *id)
{
    char full[64];
    snprintf(full, sizeof full, "keel-approval-%s", prefix);
    keel_test_start_run(client, KEEL_APPROVAL_TYPE, queue, full, input, id, ID_SIZE, NULL);
}

/* Wait for the run to close, check it closed with `status`, and replay its history through the
 * workflow: the same code must reproduce every command it recorded. */
static keel_workflow_outcome finish(const char *id, int status)
{
    char scenario[64];
    keel_test_scenario(id, "keel-approval-", scenario, sizeof scenario);
    return keel_test_finish(client, &keel_approval_workflow, id, NULL, status, scenario, 30000);
}

static void expect_in(const char *json, const char *text)
{
    ck_assert_msg(json && strstr(json, text), "expected %s in %s", text, json ? json : "(null)");
}

/* Finish the run and check that it completed and its result holds each of the texts. */
#define EXPECT_RESULT(id, ...)                                                                     \
    do {                                                                                           \
        keel_workflow_outcome out_ = finish(id, KEEL_WORKFLOW_STATUS_COMPLETED);                   \
        const char *texts_[] = {__VA_ARGS__};                                                      \
        for (size_t i_ = 0; i_ < sizeof texts_ / sizeof texts_[0]; i_++)                           \
            expect_in(out_.result_json, texts_[i_]);                                               \
        keel_workflow_outcome_dispose(&out_);                                                      \
    } while (0)

static void signal_run(const char *id, const char *name, const char *json)
{
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal(client, id, NULL, name, json, &err) == KEEL_OK, "%s",
                  err.message);
}

/* Send the "decide" update: accepted with an answer holding `text`, or (expect_ok false)
 * refused by the validator with a reason holding it. */
static void decide(const char *id, const char *json, bool expect_ok, const char *text)
{
    keel_update_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_update(client, id, NULL, NULL, "decide", json, 30000, &out,
                                              &err) == KEEL_OK,
                  "%s", err.message);
    const char *got = out.failed ? out.failure_message : out.result_json;
    ck_assert_msg(out.failed == !expect_ok, "decide(%s) %s: %s", json,
                  out.failed ? "was refused" : "was accepted", got);
    expect_in(got, text);
    if (out.failed) /* by the validator: the update never reached history */
        ck_assert_str_eq(out.failure_type, "UpdateRejected");
    keel_update_outcome_dispose(&out);
}

/* Query `name` until the answer holds `text` (the worker may not have seen the latest signal
 * yet); returns the answer (caller frees). */
static char *query_until(const char *id, const char *name, const char *text)
{
    return keel_test_query_until(client, id, name, text, 15000);
}

static void status_until(const char *id, const char *text)
{
    free(query_until(id, "status", text));
}

/* The run's search attribute or memo entry `key` as JSON, in value[size] ("unset" if absent). */
static void attribute(const char *id, bool memo, const char *key, char *value, size_t size)
{
    keel_workflow_info w;
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_describe(client, id, NULL, &w, &err), KEEL_OK);
    size_t n = memo ? w.n_memo : w.n_search_attributes;
    const keel_kv *kv = memo ? w.memo : w.search_attributes;
    snprintf(value, size, "unset");
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0)
            snprintf(value, size, "%s", kv[i].value);
    keel_workflow_info_dispose(&w);
}

/* The run's ProcurementStage must become `stage` (the first workflow task sets it a moment after
 * the start). */
static void expect_stage(const char *id, const char *stage)
{
    char want[64], value[64];
    snprintf(want, sizeof want, "\"%s\"", stage);
    for (int64_t until = now_ms() + 10000; now_ms() < until; usleep(100 * 1000)) {
        attribute(id, false, "ProcurementStage", value, sizeof value);
        if (strcmp(value, want) == 0)
            return;
    }
    ck_abort_msg("ProcurementStage of %s is %s, not %s", id, value, want);
}

/* The reminders the run counted in its memo. */
static int memo_reminders(const char *id)
{
    char value[64];
    attribute(id, true, "reminders", value, sizeof value);
    return atoi(value);
}

static int history_count(const char *id, const char *event_type)
{
    char *history;
    size_t len;
    keel_error err;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &history, &len, &err),
        KEEL_OK);
    int n = 0;
    for (const char *p = history; (p = strstr(p, event_type)) != NULL; p += strlen(event_type))
        n++;
    free(history);
    return n;
}

/* ---- tests ---- */

START_TEST(one_approval_by_signal_approves)
{
    char id[ID_SIZE];
    start("signal", "{" REQUEST "}", id);
    expect_stage(id, "approval");
    signal_run(id, "approve", "{\"approver\":\"bo\",\"comment\":\"within budget\"}");
    EXPECT_RESULT(id, "\"decision\":\"approved\"",
                  "\"approvals\":[{\"approver\":\"bo\",\"comment\":\"within budget\"}]",
                  "\"rejected_by\":null", "\"reminders\":0", "\"escalated\":false");
    expect_stage(id, "approved");
    /* Nothing is left ticking: reminder, escalation and expiry were cancelled. */
    ck_assert_int_eq(history_count(id, "EVENT_TYPE_TIMER_CANCELED"), 3);
}
END_TEST

START_TEST(two_approvals_by_update_approve)
{
    char id[ID_SIZE];
    start("update", "{" REQUEST ",\"required\":2}", id);
    /* The update answers with the status after the decision. */
    decide(id, "{\"approver\":\"ana\",\"decision\":\"approve\",\"comment\":\"ok\"}", true,
           "\"state\":\"waiting\"");
    status_until(id, "\"may_decide\":[\"bo\"]");
    decide(id, "{\"approver\":\"bo\",\"decision\":\"approve\"}", true,
           "\"state\":\"decided\",\"decision\":\"approved\"");
    EXPECT_RESULT(id, "\"decision\":\"approved\"",
                  "\"approvals\":[{\"approver\":\"ana\",\"comment\":\"ok\"},"
                  "{\"approver\":\"bo\",\"comment\":\"\"}]");
}
END_TEST

START_TEST(the_validator_refuses_bad_decisions_with_a_reason)
{
    char id[ID_SIZE];
    start("validator", "{" REQUEST ",\"required\":2,\"delegate\":\"dee\"}", id);
    decide(id, "{\"approver\":\"cy\",\"decision\":\"approve\"}", false,
           "'cy' requested this approval and cannot decide on it");
    decide(id, "{\"approver\":\"zed\",\"decision\":\"approve\"}", false,
           "'zed' may not decide on this request (approvers: ana, bo)");
    decide(id, "{\"approver\":\"dee\",\"decision\":\"approve\"}", false,
           "'dee' is the delegate and may decide only after escalation");
    decide(id, "{\"approver\":\"ana\",\"decision\":\"approve\"}", true, "\"may_decide\":[\"bo\"]");
    decide(id, "{\"approver\":\"ana\",\"decision\":\"reject\"}", false, "'ana' already approved");
    decide(id, "{\"approver\":\"bo\",\"decision\":\"maybe\"}", false,
           "\"decision\" must be \"approve\" or \"reject\"");
    decide(id, "{\"approver\":\"bo\",\"decison\":\"reject\"}", false, "unknown field \"decison\"");
    decide(id, "\"bo says no\"", false, "a decision must be a JSON object");
    decide(id, NULL, false, "a decision must be a JSON object");
    /* Refused updates never reach history: only ana's approval was accepted. */
    ck_assert_int_eq(history_count(id, "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED"), 1);
    decide(id, "{\"approver\":\"bo\",\"decision\":\"reject\",\"comment\":\"no budget\"}", true,
           "\"decision\":\"rejected\"");
    EXPECT_RESULT(id, "\"decision\":\"rejected\"",
                  "\"rejected_by\":{\"approver\":\"bo\",\"comment\":\"no budget\"}");
}
END_TEST

START_TEST(one_rejection_rejects)
{
    char id[ID_SIZE];
    start("reject", "{" REQUEST ",\"required\":2}", id);
    signal_run(id, "approve", "{\"approver\":\"ana\"}");
    signal_run(id, "reject", "{\"approver\":\"bo\",\"comment\":\"buy refurbished\"}");
    EXPECT_RESULT(id, "\"decision\":\"rejected\"", "\"approvals\":[{\"approver\":\"ana\"",
                  "\"rejected_by\":{\"approver\":\"bo\",\"comment\":\"buy refurbished\"}");
    expect_stage(id, "rejected");
}
END_TEST

START_TEST(after_escalation_the_delegate_decides)
{
    char id[ID_SIZE];
    start("escalate",
          "{" REQUEST ",\"delegate\":\"dee\",\"remind_after\":1000,\"escalate_after\":2000,"
          "\"expire_after\":60000}",
          id);
    /* Before escalation the delegate's signal is ignored, and the status says why. */
    signal_run(id, "approve", "{\"approver\":\"dee\"}");
    status_until(id, "may decide only after escalation");
    status_until(id, "\"escalated\":true");
    ck_assert_int_ge(memo_reminders(id), 1); /* the first came at 1 s */
    char *trace = query_until(id, "__stack_trace", "escalated");
    expect_in(trace, "from ana, bo, dee (reminded");
    free(trace);
    decide(id, "{\"approver\":\"dee\",\"decision\":\"approve\",\"comment\":\"covering for ana\"}",
           true, "\"decision\":\"approved\"");
    EXPECT_RESULT(id, "\"decision\":\"approved\"", "\"approver\":\"dee\"", "\"escalated\":true");
}
END_TEST

START_TEST(without_a_decision_the_request_expires)
{
    char id[ID_SIZE];
    int64_t t0 = now_ms();
    start("expire",
          "{" REQUEST ",\"remind_after\":1000,\"escalate_after\":2000,\"expire_after\":3000}", id);
    /* Expiry is a business outcome: the run completes. */
    EXPECT_RESULT(id, "\"decision\":\"expired\"", "\"approvals\":[]", "\"escalated\":true");
    ck_assert_int_ge(now_ms() - t0, 3000);
    expect_stage(id, "expired");
    /* Reminders at 1 s and 2 s (the one due at 3 s races the expiry). */
    ck_assert_int_ge(memo_reminders(id), 2);
    /* Escalated with no delegate to add: noted, nothing else changed. A closed run still answers
     * queries. */
    char *status = query_until(id, "status", "\"state\":\"decided\",\"decision\":\"expired\"");
    expect_in(status, "\"escalated\":true");
    expect_in(status, "\"may_decide\":[],\"delegate\":null");
    free(status);
}
END_TEST

START_TEST(bad_input_fails_the_run_with_bad_input)
{
    static const struct {
        const char *input, *message;
    } cases[] = {
        {"{\"subject\":\"x\",\"requester\":\"cy\",\"approvers\":[\"ana\",\"cy\"]}",
         "the requester 'cy' cannot be one of the approvers"},
        {"{" REQUEST ",\"required\":3}",
         "\"required\" must be a whole number of approvals from 1 to 2"},
        {"{" REQUEST ",\"remind_afer\":1000}", "unknown field \"remind_afer\""},
        {"{" REQUEST ",\"expire_after\":-5}", "\"expire_after\" must be a whole number"},
        {"{" REQUEST ",\"delegate\":\"ana\"}", "the delegate 'ana' is already an approver"},
        {"{\"subject\":\"x\",\"requester\":\"cy\",\"approvers\":[]}",
         "\"approvers\" must be a list of 1 to 8 names"},
        {"{\"requester\":\"cy\",\"approvers\":[\"ana\"]}",
         "\"subject\" must be a non-empty string"},
        {"[1,2]", "the input must be a JSON object"},
        {NULL, "the input must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[ID_SIZE];
        start("bad", cases[i].input, id);
        keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_FAILED);
        ck_assert_str_eq(out.failure_type, "BadInput");
        expect_in(out.failure_message, cases[i].message);
        keel_workflow_outcome_dispose(&out);
    }
    /* A repeated field never leaves keel's client (the worker refuses it too: keel/json.h). */
    keel_test_start_refused(client, KEEL_APPROVAL_TYPE, queue,
                            "{" REQUEST ",\"approvers\":[\"dee\"]}",
                            "the member name \"approvers\" appears twice");
}
END_TEST

START_TEST(the_status_query_says_where_it_stands)
{
    char id[ID_SIZE];
    start("status", "{" REQUEST ",\"required\":2}", id);
    char *status = query_until(id, "status", "\"state\":\"waiting\"");
    expect_in(status,
              "\"subject\":\"PO for 3 laptops, $4,200\",\"requester\":\"cy\",\"required\":2,"
              "\"approvals\":[],\"rejected_by\":null,\"reminders\":0,\"escalated\":false,"
              "\"may_decide\":[\"ana\",\"bo\"],\"delegate\":null,\"last_problem\":null");
    free(status);
    /* Bad signals are ignored and the last one is noted. */
    signal_run(id, "approve", "{\"approver\":\"zed\"}");
    status_until(id, "ignored signal 'approve': 'zed' may not decide on this request");
    signal_run(id, "approve", "{\"approver\":\"ana\",\"comment\":\"yes\"}");
    signal_run(id, "approve", "{\"approver\":\"ana\"}");
    status_until(id, "ignored signal 'approve': 'ana' already approved");
    signal_run(id, "approve", "\"not an object\"");
    status_until(id, "a decision must be a JSON object");
    signal_run(id, "ok", "{}");
    status = query_until(id, "status", "ignored signal 'ok'");
    expect_in(status, "\"approvals\":[{\"approver\":\"ana\",\"comment\":\"yes\"}]");
    expect_in(status, "\"may_decide\":[\"bo\"]");
    free(status);
    char *trace = query_until(id, "__stack_trace", "waiting for 1 more approval from bo");
    free(trace);
    char *meta = query_until(id, "__temporal_workflow_metadata", "\"type\":\"keel.Approval\"");
    expect_in(meta, "{\"name\":\"status\"}");
    expect_in(meta, "{\"name\":\"reject\"}");
    free(meta);
    signal_run(id, "approve", "{\"approver\":\"bo\"}");
    EXPECT_RESULT(id, "\"decision\":\"approved\"");
}
END_TEST

START_TEST(a_cancelled_request_ends_as_canceled)
{
    char id[ID_SIZE];
    start("cancel", "{" REQUEST ",\"required\":2}", id);
    decide(id, "{\"approver\":\"ana\",\"decision\":\"approve\"}", true, "\"state\":\"waiting\"");
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_cancel(client, id, NULL, "order withdrawn", &err),
                     KEEL_OK);
    keel_workflow_outcome out = finish(id, KEEL_WORKFLOW_STATUS_CANCELED);
    keel_workflow_outcome_dispose(&out);
    ck_assert_int_eq(history_count(id, "EVENT_TYPE_TIMER_CANCELED"), 3);
    expect_stage(id, "cancelled");
}
END_TEST

Suite *approval_suite(void)
{
    Suite *s = suite_create("approval");
    TCase *tc = tcase_create("keel.Approval");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, one_approval_by_signal_approves);
    tcase_add_test(tc, two_approvals_by_update_approve);
    tcase_add_test(tc, the_validator_refuses_bad_decisions_with_a_reason);
    tcase_add_test(tc, one_rejection_rejects);
    tcase_add_test(tc, after_escalation_the_delegate_decides);
    tcase_add_test(tc, without_a_decision_the_request_expires);
    tcase_add_test(tc, bad_input_fails_the_run_with_bad_input);
    tcase_add_test(tc, the_status_query_says_where_it_stands);
    tcase_add_test(tc, a_cancelled_request_ends_as_canceled);
    suite_add_tcase(s, tc);
    return s;
}
