/*
 * The worst inputs, through real keel workers and the real server: histories whose failures nest
 * 9,000 messages deep (the server takes up to 10,000; protobuf-c would recurse once per level and
 * overflow the stack). The worker must fail that workflow task with a cause naming
 * KEEL_PROTO_MAX_DEPTH, stay up, and go on serving other runs on the same queue.
 *
 * Two ways in: a start request's continued_failure (event 1 of the run's first task, to
 * keel-worker as operators run it), and an activity failure that comes to a run the worker holds
 * in its cache (the run's next task comes on the worker's sticky queue). What the server takes
 * was tried: StartWorkflowExecution and RespondActivityTaskFailed both accept a failure 9,990
 * deep and refuse one 10,010 deep ("exceeded maximum recursion depth").
 *
 * And llm.chat on keel-worker handed the schemas and model answers that broke it before: a
 * pattern that ate gigabytes, a schema that took 2^32 steps, a remote $ref, an answer holding
 * \u0000, a string that makes a backtracking pattern work exponentially. Each is a clear error,
 * and the same process then answers an ordinary request.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client.h"
#include "converter/payload.h"
#include "harness.h"
#include "keel/keel.h"
#include "proto/proto.h"
#include "temporal/api/enums/v1/failed_cause.pb-c.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* How deep the failures go: past what protobuf-c survives, under what the server refuses. */
#define DEEP 9000

#define LIMIT_TEXT "nested deeper than 100 messages"

/* ---- a failure too deep to build as structs ---- */

static size_t varint_size(size_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

static uint8_t *put_varint(uint8_t *p, size_t v)
{
    for (; v >= 0x80; v >>= 7)
        *p++ = (uint8_t)(v | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

/* A temporal.api.failure.v1.Failure `depth` messages deep (each one's cause the next), as wire
 * bytes written without recursion; the outermost one is a non-retryable application failure.
 * *len is their size; the caller frees them. */
static uint8_t *deep_failure(int depth, size_t *len)
{
    const ProtobufCMessageDescriptor *d = &temporal__api__failure__v1__failure__descriptor;
    const ProtobufCFieldDescriptor *message =
        protobuf_c_message_descriptor_get_field_by_name(d, "message");
    const ProtobufCFieldDescriptor *cause =
        protobuf_c_message_descriptor_get_field_by_name(d, "cause");
    const ProtobufCFieldDescriptor *info =
        protobuf_c_message_descriptor_get_field_by_name(d, "application_failure_info");
    ck_assert(message && cause && info && message->id < 16 && cause->id < 16 && info->id < 16);
    /* The outermost: message "deep", application_failure_info {type "Deep", non_retryable}. */
    static const uint8_t app_info[] = {0x0a, 4, 'D', 'e', 'e', 'p', 0x10, 1};
    size_t head = 2 + 4 + 2 + sizeof app_info;
    size_t *size = calloc((size_t)depth, sizeof *size); /* size[i]: the message at level i+1 */
    ck_assert_ptr_nonnull(size);
    for (int i = depth - 1; i >= 0; i--) {
        size[i] = i == 0 ? head : 3; /* message "x" */
        if (i + 1 < depth)
            size[i] += 1 + varint_size(size[i + 1]) + size[i + 1];
    }
    *len = size[0];
    uint8_t *buf = malloc(*len), *p = buf;
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < depth; i++) {
        *p++ = (uint8_t)(message->id << 3 | 2);
        if (i == 0) {
            *p++ = 4;
            memcpy(p, "deep", 4);
            p += 4;
            *p++ = (uint8_t)(info->id << 3 | 2);
            *p++ = (uint8_t)sizeof app_info;
            memcpy(p, app_info, sizeof app_info);
            p += sizeof app_info;
        } else {
            *p++ = 1;
            *p++ = 'x';
        }
        if (i + 1 < depth) {
            *p++ = (uint8_t)(cause->id << 3 | 2);
            p = put_varint(p, size[i + 1]);
        }
    }
    ck_assert_uint_eq((size_t)(p - buf), *len);
    free(size);
    return buf;
}

/* Send `bytes` as message field `name` of m: protobuf-c packs unknown fields as they are (after
 * their tag: the length prefix is part of the data), so the request carries a value no struct
 * could be packed from. u is the caller's storage; returns the buffer to free after the call. */
static uint8_t *attach(ProtobufCMessage *m, ProtobufCMessageUnknownField *u, const char *name,
                       const uint8_t *bytes, size_t len)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    ck_assert_msg(f && f->type == PROTOBUF_C_TYPE_MESSAGE, "%s has no message field %s",
                  m->descriptor->name, name);
    uint8_t *data = malloc(varint_size(len) + len);
    ck_assert_ptr_nonnull(data);
    uint8_t *p = put_varint(data, len);
    memcpy(p, bytes, len);
    u->tag = f->id;
    u->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    u->len = (size_t)(p - data) + len;
    u->data = data;
    m->n_unknown_fields = 1;
    m->unknown_fields = u;
    return data;
}

/* ---- reading what the server recorded ---- */

static keel_client *connect_client(void)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    keel_client *c;
    ck_assert_msg(keel_client_new(&c, &o, &err) == KEEL_OK, "%s", err.message);
    return c;
}

/* The run's last event, read backwards so that the deep one is not in the answer once newer
 * events follow it (the server answers with whole batches of events: while the deep one is in
 * the last batch, keel refuses the answer, as it should, and this returns NULL). Caller frees
 * the response; *ev points into it. */
static Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryReverseResponse *
last_event(keel_client *c, const char *id, const char *run,
           Temporal__Api__History__V1__HistoryEvent **ev)
{
    keel_transport *t = keel_client_transport(c);
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryReverseRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REVERSE_REQUEST__INIT;
    Temporal__Api__Common__V1__WorkflowExecution x =
        TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    x.workflow_id = (char *)id;
    x.run_id = (char *)(run ? run : "");
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.execution = &x;
    req.maximum_page_size = 1;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryReverseResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = keel_transport_namespace(t)};
    keel_error err;
    int rc = keel_transport_call(
        t, WF("GetWorkflowExecutionHistoryReverse"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__get_workflow_execution_history_reverse_response__descriptor,
        (ProtobufCMessage **)&resp, &co, &err);
    *ev = NULL;
    if (rc != KEEL_OK) {
        ck_assert_msg(rc == KEEL_EPROTOCOL && strstr(err.message, LIMIT_TEXT), "%s", err.message);
        return NULL;
    }
    *ev = resp->history && resp->history->n_events > 0 ? resp->history->events[0] : NULL;
    return resp;
}

/* Wait until the run's last event is a workflow task failure; check it names the limit and was
 * reported as the worker's unhandled failure. */
static void expect_task_failed_for_depth(keel_client *c, const char *id, const char *run)
{
    Temporal__Api__History__V1__HistoryEvent *ev = NULL;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryReverseResponse *resp = NULL;
    for (int64_t until = keel_test_now_ms() + 30000; keel_test_now_ms() < until;
         usleep(200 * 1000)) {
        if (resp)
            FREE_PB(resp);
        resp = last_event(c, id, run, &ev);
        if (ev &&
            ev->event_type == TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_FAILED)
            break;
    }
    ck_assert_msg(ev && ev->event_type ==
                            TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_FAILED,
                  "run %s: no workflow task failure recorded (last event %lld)", id,
                  ev ? (long long)ev->event_id : 0LL);
    ck_assert_ptr_nonnull(resp);
    ck_assert_int_eq(
        ev->attributes_case,
        TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_TASK_FAILED_EVENT_ATTRIBUTES);
    const Temporal__Api__History__V1__WorkflowTaskFailedEventAttributes *a =
        ev->workflow_task_failed_event_attributes;
    ck_assert_int_eq(
        a->cause,
        TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE);
    ck_assert_ptr_nonnull(a->failure);
    ck_assert_msg(strstr(a->failure->message, LIMIT_TEXT) != NULL, "failure: %s",
                  a->failure->message);
    FREE_PB(resp);
}

/* ---- keel-worker, started with a failure 9,000 deep ---- */

static const char *read_log(const char *log)
{
    static char buf[1 << 20];
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

#define APPROVAL_INPUT "{\"subject\":\"3 desks\",\"requester\":\"rita\",\"approvers\":[\"ana\"]}"

/* StartWorkflowExecution of keel.Approval whose continued_failure nests DEEP messages. */
static char *start_deep(keel_client *c, const char *id, const char *queue)
{
    keel_transport *t = keel_client_transport(c);
    keel_error err;
    char request_id[37];
    ck_assert_int_eq(keel_client_uuid4(request_id, &err), KEEL_OK);
    Temporal__Api__Workflowservice__V1__StartWorkflowExecutionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__START_WORKFLOW_EXECUTION_REQUEST__INIT;
    Temporal__Api__Common__V1__WorkflowType type = TEMPORAL__API__COMMON__V1__WORKFLOW_TYPE__INIT;
    Temporal__Api__Taskqueue__V1__TaskQueue q = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    type.name = "keel.Approval";
    q.name = (char *)queue;
    q.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.workflow_id = (char *)id;
    req.workflow_type = &type;
    req.task_queue = &q;
    req.identity = "hostile-test";
    req.request_id = request_id;
    ck_assert_int_eq(keel_payloads_new_json(APPROVAL_INPUT, "input", &req.input, &err), KEEL_OK);
    size_t len;
    uint8_t *deep = deep_failure(DEEP, &len);
    ProtobufCMessageUnknownField u;
    uint8_t *field = attach(&req.base, &u, "continued_failure", deep, len);
    Temporal__Api__Workflowservice__V1__StartWorkflowExecutionResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = keel_transport_namespace(t)};
    int rc = keel_transport_call(
        t, WF("StartWorkflowExecution"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__start_workflow_execution_response__descriptor,
        (ProtobufCMessage **)&resp, &co, &err);
    ck_assert_msg(rc == KEEL_OK, "the server refused a failure %d deep: %s", DEEP, err.message);
    char *run = strdup(resp->run_id);
    FREE_PB(resp);
    FREE_PB(req.input);
    free(field);
    free(deep);
    return run;
}

START_TEST(keel_worker_fails_a_task_too_deep_and_serves_on)
{
    char queue[96], deep_id[128], plain_id[128], log[] = "/tmp/keel-hostile-log-XXXXXX";
    close(mkstemp(log));
    keel_test_unique(queue, sizeof queue, "keel-hostile");
    snprintf(deep_id, sizeof deep_id, "%s-deep", queue);
    snprintf(plain_id, sizeof plain_id, "%s-plain", queue);
    pid_t pid = keel_test_spawn_worker(queue, NULL, log);
    for (int i = 0; i < 600 && !strstr(read_log(log), "msg=polling"); i++)
        usleep(50 * 1000);
    ck_assert_msg(strstr(read_log(log), "msg=polling") != NULL, "not polling: %s", read_log(log));

    keel_client *c = connect_client();
    char *run = start_deep(c, deep_id, queue);
    expect_task_failed_for_depth(c, deep_id, run);
    ck_assert_msg(strstr(read_log(log), LIMIT_TEXT) != NULL, "%s", read_log(log));
    ck_assert_int_eq(kill(pid, 0), 0);

    /* An ordinary run on the same queue, served by the same process. */
    keel_workflow_start_options so;
    keel_workflow_start_options_init(&so, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    so.workflow_id = plain_id;
    so.workflow_type = "keel.Approval";
    so.task_queue = queue;
    so.input_json = APPROVAL_INPUT;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(c, &so, NULL, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_workflow_signal(c, plain_id, NULL, "approve",
                                              "{\"approver\":\"ana\",\"comment\":\"fine\"}",
                                              &err) == KEEL_OK,
                  "%s", err.message);
    keel_workflow_outcome out;
    ck_assert_msg(keel_client_workflow_result(c, plain_id, NULL, 30000, &out, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_outcome_dispose(&out);

    ck_assert_int_eq(keel_client_workflow_terminate(c, deep_id, run, "hostile test done", &err),
                     KEEL_OK);
    free(run);
    keel_client_free(c);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(keel_test_wait_exit(pid, 15), 0);
    unlink(log);
}
END_TEST

/* ---- a cached run whose activity fails 9,000 deep ---- */

/* Runs one activity on the queue its input names ({"queue", "activity": default hostile.act,
 * "args": default {}}), with one attempt, and ends as the activity did: completed with its
 * result, or failed with its failure type and message. */
typedef struct caller {
    char queue[128];
} caller;

static int caller_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    caller *s = state;
    cJSON *in = cJSON_Parse(input);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(in, "queue");
    if (!cJSON_IsString(q)) {
        cJSON_Delete(in);
        return keel_workflow_error(ctx, "input needs a queue");
    }
    snprintf(s->queue, sizeof s->queue, "%s", q->valuestring);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(in, "activity"));
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(in, "args");
    char *args_json = args ? keel_json_print(args) : NULL;
    keel_retry_policy once = {.maximum_attempts = 1};
    keel_activity_options o = {.task_queue = s->queue, .start_to_close_ms = 60000, .retry = &once};
    uint32_t seq =
        keel_workflow_activity(ctx, type ? type : "hostile.act", args_json ? args_json : "{}", &o);
    free(args_json);
    cJSON_Delete(in);
    return seq ? KEEL_OK : KEEL_EINVAL;
}

static int caller_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind == KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_complete(ctx, ev->json);
    if (ev->kind == KEEL_EVENT_ACTIVITY_FAILED)
        return keel_workflow_fail(ctx, ev->failure_type[0] ? ev->failure_type : "ActivityFailed",
                                  ev->failure_message, true);
    return KEEL_OK;
}

static const keel_workflow_type caller_type = {.name = "hostile.Caller",
                                               .state_size = sizeof(caller),
                                               .start = caller_start,
                                               .on_event = caller_event};

/* Take the next activity task from queue (by hand, as a worker would): its token. */
static ProtobufCBinaryData poll_activity(keel_client *c, const char *queue)
{
    keel_transport *t = keel_client_transport(c);
    Temporal__Api__Workflowservice__V1__PollActivityTaskQueueRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__POLL_ACTIVITY_TASK_QUEUE_REQUEST__INIT;
    Temporal__Api__Taskqueue__V1__TaskQueue q = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    q.name = (char *)queue;
    q.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.task_queue = &q;
    req.identity = "hostile-test";
    Temporal__Api__Workflowservice__V1__PollActivityTaskQueueResponse *resp = NULL;
    keel_call_options co = {.timeout_ms = 70000, .namespace = keel_transport_namespace(t)};
    keel_error err;
    ck_assert_msg(
        keel_transport_call(
            t, WF("PollActivityTaskQueue"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__poll_activity_task_queue_response__descriptor,
            (ProtobufCMessage **)&resp, &co, &err) == KEEL_OK,
        "%s", err.message);
    ck_assert_uint_gt(resp->task_token.len, 0);
    ProtobufCBinaryData token = {resp->task_token.len, malloc(resp->task_token.len)};
    memcpy(token.data, resp->task_token.data, token.len);
    FREE_PB(resp);
    return token;
}

static void fail_activity_deep(keel_client *c, ProtobufCBinaryData token)
{
    keel_transport *t = keel_client_transport(c);
    Temporal__Api__Workflowservice__V1__RespondActivityTaskFailedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_FAILED_REQUEST__INIT;
    req.task_token = token;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.identity = "hostile-test";
    size_t len;
    uint8_t *deep = deep_failure(DEEP, &len);
    ProtobufCMessageUnknownField u;
    uint8_t *field = attach(&req.base, &u, "failure", deep, len);
    ProtobufCMessage *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = keel_transport_namespace(t)};
    keel_error err;
    ck_assert_msg(
        keel_transport_call(
            t, WF("RespondActivityTaskFailed"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__respond_activity_task_failed_response__descriptor,
            &resp, &co, &err) == KEEL_OK,
        "the server refused an activity failure %d deep: %s", DEEP, err.message);
    FREE_PB(resp);
    free(field);
    free(deep);
}

static void complete_activity(keel_client *c, ProtobufCBinaryData token, const char *json)
{
    keel_transport *t = keel_client_transport(c);
    Temporal__Api__Workflowservice__V1__RespondActivityTaskCompletedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_COMPLETED_REQUEST__INIT;
    req.task_token = token;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.identity = "hostile-test";
    keel_error err;
    ck_assert_int_eq(keel_payloads_new_json(json, "result", &req.result, &err), KEEL_OK);
    ProtobufCMessage *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = keel_transport_namespace(t)};
    ck_assert_msg(
        keel_transport_call(
            t, WF("RespondActivityTaskCompleted"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__respond_activity_task_completed_response__descriptor,
            &resp, &co, &err) == KEEL_OK,
        "%s", err.message);
    FREE_PB(resp);
    FREE_PB(req.result);
}

START_TEST(a_cached_run_gets_a_failure_too_deep_and_the_worker_serves_on)
{
    keel_client *c = connect_client();
    char queue[96], act_queue[128], input[256], deep_id[128], plain_id[128];
    keel_test_unique(queue, sizeof queue, "keel-hostile-sticky");
    snprintf(act_queue, sizeof act_queue, "%s-act", queue);
    snprintf(input, sizeof input, "{\"queue\":\"%s\"}", act_queue);
    const keel_workflow_type *types[] = {&caller_type};
    keel_worker *w = keel_test_start_worker(c, queue, types, 1, NULL, 0);

    /* The first task runs and the run is cached; its activity then fails 9,000 deep, and the
     * run's next task carries that failure. */
    char *run = NULL;
    keel_test_start_run(c, caller_type.name, queue, "deep", input, deep_id, sizeof deep_id, &run);
    ProtobufCBinaryData token = poll_activity(c, act_queue);
    fail_activity_deep(c, token);
    free(token.data);
    expect_task_failed_for_depth(c, deep_id, run);
    keel_worker_stats st;
    keel_worker_get_stats(w, &st);
    ck_assert_uint_ge(st.workflow_tasks_failed, 1);

    /* The same worker runs an ordinary one to the end. */
    keel_test_start_run(c, caller_type.name, queue, "plain", input, plain_id, sizeof plain_id,
                        NULL);
    token = poll_activity(c, act_queue);
    complete_activity(c, token, "{\"done\":true}");
    free(token.data);
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(c, plain_id, NULL, 30000, &out, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "{\"done\":true}");
    keel_workflow_outcome_dispose(&out);

    ck_assert_int_eq(keel_client_workflow_terminate(c, deep_id, run, "hostile test done", &err),
                     KEEL_OK);
    free(run);
    keel_worker_free(w);
    keel_client_free(c);
}
END_TEST

/* ---- llm.chat on keel-worker, fed hostile schemas and hostile answers ---- */

/* llm.chat's input for one user message and a response_format named name with schema. */
static char *chat_args(const char *text, const char *name, const char *schema)
{
    char *s = malloc(1024);
    snprintf(s, 1024, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]%s%s%s%s%s}", text,
             name ? ",\"response_format\":{\"name\":\"" : "", name ? name : "",
             name ? "\",\"schema\":" : "", name ? schema : "", name ? "}" : "");
    return s;
}

/* Run llm.chat with args on keel-worker's queue through hostile.Caller; its outcome. */
static keel_workflow_outcome llm_once(keel_client *c, const char *queue, const char *llm_queue,
                                      const char *args)
{
    char input[2048], id[128];
    snprintf(input, sizeof input, "{\"queue\":\"%s\",\"activity\":\"llm.chat\",\"args\":%s}",
             llm_queue, args);
    keel_test_start_run(c, caller_type.name, queue, "keel-hostile-llm", input, id, sizeof id, NULL);
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(c, id, NULL, 60000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    return out;
}

START_TEST(keel_worker_refuses_hostile_schemas_and_answers_and_serves_on)
{
    char base[256], queue[96], llm_queue[128], log[] = "/tmp/keel-hostile-llm-log-XXXXXX";
    close(mkstemp(log));
    snprintf(base, sizeof base, "%s/v1", keel_test_model_server());
    setenv("OPENAI_BASE_URL", base, 1);
    setenv("OPENAI_API_KEY", "sk-keel-test-0123456789abcdef", 1);
    setenv("KEEL_MODEL", "keel-scripted-small", 1);
    keel_test_unique(queue, sizeof queue, "keel-hostile-llm");
    snprintf(llm_queue, sizeof llm_queue, "%s-act", queue);
    pid_t pid = keel_test_spawn_worker(llm_queue, NULL, log);
    keel_client *c = connect_client();
    const keel_workflow_type *types[] = {&caller_type};
    keel_worker *w = keel_test_start_worker(c, queue, types, 1, NULL, 0);

    /* Schemas a workflow may hand llm.chat: each refused when compiled, in well under a second
     * (on 01cbd3e: 11 s and 3 GB, or 2^32 steps), naming what is wrong. */
    static const struct {
        const char *schema, *says;
    } bad[] = {
        {"{\"type\":\"string\",\"pattern\":\"a++++++++++++++++++++++++\"}", "cannot be used"},
        {"{\"type\":\"string\",\"pattern\":\"((a{0,100}){0,100}){0,100}\"}", "cannot be used"},
        {"{\"anyOf\":[{\"$ref\":\"#\"},{\"$ref\":\"#\"}]}", "never moving into the instance"},
        {"{\"$ref\":\"https://elsewhere.example/s.json\"}", "https://elsewhere.example/s.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *args = chat_args("Extract it.", "keel_bad_schema", bad[i].schema);
        keel_workflow_outcome out = llm_once(c, queue, llm_queue, args);
        ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_FAILED);
        ck_assert_str_eq(out.failure_type, "LlmBadInput");
        ck_assert_msg(strstr(out.failure_message, bad[i].says), "%s", out.failure_message);
        keel_workflow_outcome_dispose(&out);
        free(args);
    }

    /* Answers that must come back as output errors, not as cut strings or a hung search. */
    static const struct {
        const char *name, *schema, *error, *says;
    } answers[] = {
        {"keel_nul", "{\"type\":\"object\"}", "output_not_json", "\\u0000 inside a string"},
        {"keel_redos",
         "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\",\"pattern\":"
         "\"^(a+)+$\"}}}",
         "output_not_checked", "match limit"},
    };
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        char *args = chat_args("Answer.", answers[i].name, answers[i].schema);
        keel_workflow_outcome out = llm_once(c, queue, llm_queue, args);
        ck_assert_msg(out.status == KEEL_WORKFLOW_STATUS_COMPLETED, "%s",
                      out.failure_message ? out.failure_message : "");
        cJSON *r = keel_json_from(out.result_json);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "output_error");
        ck_assert_msg(e != NULL, "no output_error: %s", out.result_json);
        ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "error")),
                         answers[i].error);
        ck_assert_msg(strstr(out.result_json, answers[i].says), "%s", out.result_json);
        ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(r, "parsed"));
        cJSON_Delete(r);
        keel_workflow_outcome_dispose(&out);
        free(args);
    }

    /* The same process answers an ordinary request. */
    char *args = chat_args("Reply with the single word pong.", NULL, NULL);
    keel_workflow_outcome out = llm_once(c, queue, llm_queue, args);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_msg(strstr(out.result_json, "\"content\":\"pong\""), "%s", out.result_json);
    keel_workflow_outcome_dispose(&out);
    free(args);
    ck_assert_int_eq(kill(pid, 0), 0);

    keel_worker_free(w);
    keel_client_free(c);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(keel_test_wait_exit(pid, 15), 0);
    unlink(log);
}
END_TEST

Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("deep");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, keel_worker_fails_a_task_too_deep_and_serves_on);
    tcase_add_test(tc, a_cached_run_gets_a_failure_too_deep_and_the_worker_serves_on);
    tcase_add_test(tc, keel_worker_refuses_hostile_schemas_and_answers_and_serves_on);
    suite_add_tcase(s, tc);
    return s;
}
