/*
 * Workflow executions from the client, against the real server. No worker is running: where a
 * run must close, the test answers its workflow task itself at the protocol level (poll the task
 * queue, respond with a Complete / Fail / ContinueAsNew command), as any worker would.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "converter/payload.h"
#include "keel/keel.h"
#include "proto/proto.h"

#define WF(m) ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})

typedef Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse poll_response;
typedef Temporal__Api__Command__V1__Command command;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static keel_client *client(void)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    keel_client *c = NULL;
    ck_assert_msg(keel_client_new(&c, &o, &err) == KEEL_OK, "%s", err.message);
    return c;
}

/* A name no other test or earlier run used. */
static void unique(char *buf, size_t n, const char *prefix)
{
    static int seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, n, "%s-%ld-%ld-%d", prefix, (long)getpid(), (long)ts.tv_nsec, ++seq);
}

static char *start(keel_client *c, const char *id, const char *queue, const char *input)
{
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = "KeelTestWorkflow";
    o.task_queue = queue;
    o.input_json = input;
    char *run = NULL;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(c, &o, &run, &err) == KEEL_OK, "%s", err.message);
    ck_assert_uint_gt(strlen(run), 0);
    return run;
}

/* Poll one workflow task from queue; fails the test if none arrives. Caller frees. */
static poll_response *poll_task(keel_client *c, const char *queue)
{
    keel_transport *t = keel_client_transport(c);
    Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__POLL_WORKFLOW_TASK_QUEUE_REQUEST__INIT;
    Temporal__Api__Taskqueue__V1__TaskQueue tq = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    tq.name = (char *)queue;
    tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.task_queue = &tq;
    req.identity = "keel-test-poller";
    keel_call_options co = {.timeout_ms = 30000, .namespace = req.namespace_};
    poll_response *resp = NULL;
    keel_error err;
    int rc = keel_transport_call(
        t, WF("PollWorkflowTaskQueue"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor,
        (ProtobufCMessage **)&resp, &co, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    ck_assert_msg(resp->task_token.len > 0, "no workflow task on %s", queue);
    return resp;
}

static void respond(keel_client *c, const poll_response *task, command *cmd)
{
    keel_transport *t = keel_client_transport(c);
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_WORKFLOW_TASK_COMPLETED_REQUEST__INIT;
    req.task_token = task->task_token;
    req.commands = &cmd;
    req.n_commands = 1;
    req.identity = "keel-test-poller";
    req.namespace_ = (char *)keel_transport_namespace(t);
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    ProtobufCMessage *resp = NULL;
    keel_error err;
    int rc = keel_transport_call(
        t, WF("RespondWorkflowTaskCompleted"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__respond_workflow_task_completed_response__descriptor,
        &resp, &co, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* Answer the next task on queue by completing the run with result_json. */
static void complete_next(keel_client *c, const char *queue, const char *result_json)
{
    poll_response *task = poll_task(c, queue);
    Temporal__Api__Common__V1__Payloads *result;
    keel_error err;
    ck_assert_int_eq(keel_payloads_new_json(result_json, "result", &result, &err), KEEL_OK);
    Temporal__Api__Command__V1__CompleteWorkflowExecutionCommandAttributes a =
        TEMPORAL__API__COMMAND__V1__COMPLETE_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES__INIT;
    a.result = result;
    command cmd = TEMPORAL__API__COMMAND__V1__COMMAND__INIT;
    cmd.command_type =
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION;
    cmd.attributes_case =
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_COMPLETE_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES;
    cmd.complete_workflow_execution_command_attributes = &a;
    respond(c, task, &cmd);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)result, NULL);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)task, NULL);
}

START_TEST(start_then_describe_round_trips)
{
    keel_client *c = client();
    char id[128], queue[128];
    unique(id, sizeof id, "keel-exec");
    unique(queue, sizeof queue, "keel-q");
    keel_kv memo[] = {{"requester", "\"ana@example.com\""}, {"lines", "[1,2,3]"}};
    keel_search_attribute_value sa[] = {
        {"ProcurementStage", KEEL_INDEXED_VALUE_TYPE_KEYWORD, "\"intake\""},
        {"AmountUSD", KEEL_INDEXED_VALUE_TYPE_DOUBLE, "1200.5"}};
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = "Procurement";
    o.task_queue = queue;
    o.input_json = "{\"item\":\"laptop\"}";
    o.memo = memo;
    o.n_memo = 2;
    o.search_attributes = sa;
    o.n_search_attributes = 2;
    o.execution_timeout_ms = 3600 * 1000;
    char *run = NULL;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(c, &o, &run, &err) == KEEL_OK, "%s", err.message);

    keel_workflow_info w;
    ck_assert_msg(keel_client_workflow_describe(c, id, NULL, &w, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_str_eq(w.workflow_id, id);
    ck_assert_str_eq(w.run_id, run);
    ck_assert_str_eq(w.workflow_type, "Procurement");
    ck_assert_str_eq(w.task_queue, queue);
    ck_assert_int_eq(w.status, KEEL_WORKFLOW_STATUS_RUNNING);
    ck_assert_int_gt(w.start_time_ms, 1700000000000LL);
    ck_assert_int_eq(w.close_time_ms, 0);
    ck_assert_uint_eq(w.n_memo, 2);
    for (size_t i = 0; i < w.n_memo; i++)
        ck_assert_str_eq(w.memo[i].value,
                         strcmp(w.memo[i].key, "lines") == 0 ? "[1,2,3]" : "\"ana@example.com\"");
    int seen = 0;
    for (size_t i = 0; i < w.n_search_attributes; i++) {
        if (strcmp(w.search_attributes[i].key, "ProcurementStage") == 0) {
            ck_assert_str_eq(w.search_attributes[i].value, "\"intake\"");
            seen++;
        }
        if (strcmp(w.search_attributes[i].key, "AmountUSD") == 0) {
            ck_assert_double_eq_tol(atof(w.search_attributes[i].value), 1200.5, 1e-9);
            seen++;
        }
    }
    ck_assert_int_eq(seen, 2);
    keel_workflow_info_dispose(&w);

    /* A second start of a running id fails, naming the run that holds it. */
    char *again = NULL;
    ck_assert_int_eq(keel_client_workflow_start(c, &o, &again, &err), KEEL_EEXISTS);
    ck_assert_str_eq(err.failure_type, "WorkflowExecutionAlreadyStartedFailure");
    ck_assert_ptr_nonnull(strstr(err.message, run));
    ck_assert_ptr_null(again);
    /* ...unless the conflict policy says to use the running one. */
    o.id_conflict_policy = KEEL_ID_CONFLICT_USE_EXISTING;
    ck_assert_msg(keel_client_workflow_start(c, &o, &again, &err) == KEEL_OK, "%s", err.message);
    ck_assert_str_eq(again, run);
    free(again);
    free(run);
    keel_client_workflow_terminate(c, id, NULL, "test over", &err);
    keel_client_free(c);
}
END_TEST

/* The history's events, via the raw RPC (first page is enough for these short runs). */
static Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *
history(keel_client *c, const char *id)
{
    keel_transport *t = keel_client_transport(c);
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
    Temporal__Api__Common__V1__WorkflowExecution e =
        TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    e.workflow_id = (char *)id;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.execution = &e;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *resp = NULL;
    keel_error err;
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    ck_assert_msg(
        keel_transport_call(
            t, WF("GetWorkflowExecutionHistory"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
            (ProtobufCMessage **)&resp, &co, &err) == KEEL_OK,
        "%s", err.message);
    return resp;
}

START_TEST(signal_and_cancel_reach_the_history_as_json)
{
    keel_client *c = client();
    char id[128], queue[128];
    unique(id, sizeof id, "keel-signal");
    unique(queue, sizeof queue, "keel-q");
    char *run = start(c, id, queue, "{\"n\":1}");
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal(c, id, run, "approve", "{\"by\":\"ana\"}", &err) ==
                      KEEL_OK,
                  "%s", err.message);
    ck_assert_msg(keel_client_workflow_cancel(c, id, NULL, "not needed", &err) == KEEL_OK, "%s",
                  err.message);
    /* Bad JSON never leaves the process. */
    ck_assert_int_eq(keel_client_workflow_signal(c, id, run, "approve", "{by:ana}", &err),
                     KEEL_EINVAL);
    ck_assert_int_eq(err.grpc_status, KEEL_NO_GRPC_STATUS);
    ck_assert_ptr_nonnull(strstr(err.message, "signal 'approve' argument"));

    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *h = history(c, id);
    bool signaled = false, cancel_requested = false, started = false;
    for (size_t i = 0; i < h->history->n_events; i++) {
        const Temporal__Api__History__V1__HistoryEvent *e = h->history->events[i];
        char *json = NULL;
        switch (e->attributes_case) {
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_STARTED_EVENT_ATTRIBUTES: {
            const Temporal__Api__Common__V1__Payloads *in =
                e->workflow_execution_started_event_attributes->input;
            ck_assert(keel_payload_encoding_is(in->payloads[0], KEEL_ENCODING_JSON));
            ck_assert_int_eq(keel_payloads_to_json(in, "input", &json, &err), KEEL_OK);
            ck_assert_str_eq(json, "{\"n\":1}");
            started = true;
            break;
        }
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_SIGNALED_EVENT_ATTRIBUTES: {
            const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
                e->workflow_execution_signaled_event_attributes;
            ck_assert_str_eq(a->signal_name, "approve");
            ck_assert_int_eq(keel_payloads_to_json(a->input, "signal", &json, &err), KEEL_OK);
            ck_assert_str_eq(json, "{\"by\":\"ana\"}");
            signaled = true;
            break;
        }
        case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_CANCEL_REQUESTED_EVENT_ATTRIBUTES:
            ck_assert_str_eq(e->workflow_execution_cancel_requested_event_attributes->cause,
                             "not needed");
            cancel_requested = true;
            break;
        default:
            break;
        }
        free(json);
    }
    ck_assert(started && signaled && cancel_requested);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)h, NULL);
    free(run);
    keel_client_workflow_terminate(c, id, NULL, "test over", &err);
    keel_client_free(c);
}
END_TEST

START_TEST(result_of_a_completed_workflow)
{
    keel_client *c = client();
    char id[128], queue[128];
    unique(id, sizeof id, "keel-result");
    unique(queue, sizeof queue, "keel-q");
    char *run = start(c, id, queue, NULL);
    complete_next(c, queue, "{\"po\":\"PO-1\",\"total\":1200.5}");
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(c, id, NULL, 20000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "{\"po\":\"PO-1\",\"total\":1200.5}");
    ck_assert_str_eq(out.run_id, run);
    ck_assert_ptr_null(out.failure_message);
    keel_workflow_outcome_dispose(&out);
    free(run);
    keel_client_free(c);
}
END_TEST

START_TEST(result_follows_continue_as_new)
{
    keel_client *c = client();
    char id[128], queue[128];
    unique(id, sizeof id, "keel-can");
    unique(queue, sizeof queue, "keel-q");
    char *first = start(c, id, queue, "{\"round\":1}");

    poll_response *task = poll_task(c, queue);
    Temporal__Api__Common__V1__Payloads *input;
    keel_error err;
    ck_assert_int_eq(keel_payloads_new_json("{\"round\":2}", "input", &input, &err), KEEL_OK);
    Temporal__Api__Common__V1__WorkflowType type = TEMPORAL__API__COMMON__V1__WORKFLOW_TYPE__INIT;
    type.name = "KeelTestWorkflow";
    Temporal__Api__Taskqueue__V1__TaskQueue tq = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    tq.name = queue;
    Temporal__Api__Command__V1__ContinueAsNewWorkflowExecutionCommandAttributes a =
        TEMPORAL__API__COMMAND__V1__CONTINUE_AS_NEW_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES__INIT;
    a.workflow_type = &type;
    a.task_queue = &tq;
    a.input = input;
    command cmd = TEMPORAL__API__COMMAND__V1__COMMAND__INIT;
    cmd.command_type =
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION;
    cmd.attributes_case =
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_CONTINUE_AS_NEW_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES;
    cmd.continue_as_new_workflow_execution_command_attributes = &a;
    respond(c, task, &cmd);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)input, NULL);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)task, NULL);

    complete_next(c, queue, "\"done in round 2\"");

    /* Asked about the first run, the result comes from the run the chain ended in. */
    keel_workflow_outcome out;
    ck_assert_msg(keel_client_workflow_result(c, id, first, 20000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "\"done in round 2\"");
    ck_assert_str_ne(out.run_id, first);
    keel_workflow_info w;
    ck_assert_int_eq(keel_client_workflow_describe(c, id, NULL, &w, &err), KEEL_OK);
    ck_assert_str_eq(w.run_id, out.run_id);
    keel_workflow_info_dispose(&w);
    keel_workflow_outcome_dispose(&out);
    free(first);
    keel_client_free(c);
}
END_TEST

START_TEST(result_of_a_failed_workflow_carries_type_and_causes)
{
    keel_client *c = client();
    char id[128], queue[128];
    unique(id, sizeof id, "keel-fail");
    unique(queue, sizeof queue, "keel-q");
    char *run = start(c, id, queue, NULL);
    poll_response *task = poll_task(c, queue);
    Temporal__Api__Failure__V1__Failure cause = TEMPORAL__API__FAILURE__V1__FAILURE__INIT;
    cause.message = "cost center CC-7 has 300 USD left";
    Temporal__Api__Failure__V1__ApplicationFailureInfo info =
        TEMPORAL__API__FAILURE__V1__APPLICATION_FAILURE_INFO__INIT;
    info.type = "BudgetExceeded";
    info.non_retryable = 1;
    Temporal__Api__Failure__V1__Failure f = TEMPORAL__API__FAILURE__V1__FAILURE__INIT;
    f.message = "purchase of 1200 USD refused";
    f.cause = &cause;
    f.failure_info_case =
        TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO;
    f.application_failure_info = &info;
    Temporal__Api__Command__V1__FailWorkflowExecutionCommandAttributes a =
        TEMPORAL__API__COMMAND__V1__FAIL_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES__INIT;
    a.failure = &f;
    command cmd = TEMPORAL__API__COMMAND__V1__COMMAND__INIT;
    cmd.command_type = TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION;
    cmd.attributes_case =
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_FAIL_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES;
    cmd.fail_workflow_execution_command_attributes = &a;
    respond(c, task, &cmd);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)task, NULL);

    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(c, id, run, 20000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_FAILED);
    ck_assert_str_eq(out.failure_type, "BudgetExceeded");
    ck_assert_str_eq(out.failure_message,
                     "purchase of 1200 USD refused: cost center CC-7 has 300 USD left");
    ck_assert_ptr_null(out.result_json);
    keel_workflow_outcome_dispose(&out);
    free(run);
    keel_client_free(c);
}
END_TEST

START_TEST(result_of_a_terminated_workflow_and_waiting_bounds)
{
    keel_client *c = client();
    char id[128], queue[128];
    unique(id, sizeof id, "keel-term");
    unique(queue, sizeof queue, "keel-q");
    char *run = start(c, id, queue, NULL);
    keel_workflow_outcome out;
    keel_error err;
    int64_t t0 = now_ms();
    ck_assert_int_eq(keel_client_workflow_result(c, id, run, 1000, &out, &err), KEEL_ETIMEOUT);
    int64_t took = now_ms() - t0;
    ck_assert_msg(took >= 900 && took < 3000, "waited %lld ms", (long long)took);
    ck_assert_ptr_nonnull(strstr(err.message, id));

    ck_assert_int_eq(keel_client_workflow_terminate(c, id, run, "budget frozen", &err), KEEL_OK);
    ck_assert_msg(keel_client_workflow_result(c, id, run, 20000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_TERMINATED);
    ck_assert_str_eq(out.failure_message, "budget frozen");
    keel_workflow_outcome_dispose(&out);

    /* A closed run cannot be signalled; an unknown one cannot be described. */
    ck_assert_int_eq(keel_client_workflow_signal(c, id, run, "approve", NULL, &err),
                     KEEL_ENOTFOUND);
    keel_workflow_info w;
    ck_assert_int_eq(keel_client_workflow_describe(c, "keel-no-such-workflow", NULL, &w, &err),
                     KEEL_ENOTFOUND);
    free(run);
    keel_client_free(c);
}
END_TEST

START_TEST(list_finds_runs_by_search_attribute)
{
    keel_client *c = client();
    char id[128], queue[128], stage[160], query[256];
    unique(id, sizeof id, "keel-list");
    unique(queue, sizeof queue, "keel-q");
    snprintf(stage, sizeof stage, "\"%s\"", id); /* a stage value only this run has */
    keel_search_attribute_value sa[] = {
        {"ProcurementStage", KEEL_INDEXED_VALUE_TYPE_KEYWORD, stage}};
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = "Procurement";
    o.task_queue = queue;
    o.search_attributes = sa;
    o.n_search_attributes = 1;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(c, &o, NULL, &err) == KEEL_OK, "%s", err.message);
    snprintf(query, sizeof query, "ProcurementStage='%s' AND ExecutionStatus='Running'", id);
    /* Visibility is eventually consistent: give it a few seconds. */
    keel_workflow_list l = {0};
    for (int64_t until = now_ms() + 10000; now_ms() < until; usleep(200 * 1000)) {
        ck_assert_msg(keel_client_workflow_list(c, query, 10, &l, &err) == KEEL_OK, "%s",
                      err.message);
        if (l.count > 0)
            break;
        keel_workflow_list_dispose(&l);
    }
    ck_assert_uint_eq(l.count, 1);
    ck_assert_str_eq(l.items[0].workflow_id, id);
    ck_assert_str_eq(l.items[0].workflow_type, "Procurement");
    keel_workflow_list_dispose(&l);
    /* A query naming an unknown attribute is the server's INVALID_ARGUMENT, passed through. */
    ck_assert_int_eq(keel_client_workflow_list(c, "NoSuchAttribute='x'", 10, &l, &err),
                     KEEL_EINVAL);
    ck_assert_int_eq(err.grpc_status, 3);
    keel_client_workflow_terminate(c, id, NULL, "test over", &err);
    keel_client_free(c);
}
END_TEST

START_TEST(bad_start_options_are_refused_locally)
{
    keel_client *c = client();
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_start(c, &o, NULL, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "workflow id"));
    o.workflow_id = "x";
    o.workflow_type = "T";
    o.task_queue = "q";
    o.input_json = "{\"unterminated\": ";
    ck_assert_int_eq(keel_client_workflow_start(c, &o, NULL, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "workflow input is not valid JSON"));
    o.input_json = NULL;
    keel_kv memo[] = {{"k", "not json"}};
    o.memo = memo;
    o.n_memo = 1;
    ck_assert_int_eq(keel_client_workflow_start(c, &o, NULL, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "memo 'k'"));
    o.n_memo = 0;
    keel_search_attribute_value sa[] = {{"AmountUSD", 99, "1"}};
    o.search_attributes = sa;
    o.n_search_attributes = 1;
    ck_assert_int_eq(keel_client_workflow_start(c, &o, NULL, &err), KEEL_EINVAL);
    ck_assert_int_eq(err.grpc_status, KEEL_NO_GRPC_STATUS);
    keel_client_free(c);
}
END_TEST

Suite *execution_suite(void)
{
    Suite *s = suite_create("execution");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, start_then_describe_round_trips);
    tcase_add_test(tc, signal_and_cancel_reach_the_history_as_json);
    tcase_add_test(tc, result_of_a_completed_workflow);
    tcase_add_test(tc, result_follows_continue_as_new);
    tcase_add_test(tc, result_of_a_failed_workflow_carries_type_and_causes);
    tcase_add_test(tc, result_of_a_terminated_workflow_and_waiting_bounds);
    tcase_add_test(tc, list_finds_runs_by_search_attribute);
    tcase_add_test(tc, bad_start_options_are_refused_locally);
    suite_add_tcase(s, tc);
    return s;
}
