/*
 * execution - workflow executions from the client: start, signal, cancel, terminate, describe,
 * list, result.
 *
 * Requests are built on the heap in the layout protobuf-c's unpack produces, so that a single
 * protobuf_c_message_free_unpacked() releases a request however far its building got.
 */
#include "keel/execution.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "client/client.h"
#include "converter/failure.h"
#include "converter/payload.h"
#include "converter/protojson.h"
#include "proto/proto.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* The server holds a close-event long poll about 20 s; each attempt waits a little longer. */
#define RESULT_POLL_MS 65000
/* Continue-as-new chains longer than this are taken for a loop. */
#define MAX_FOLLOWED_RUNS 10000
#define LIST_PAGE_SIZE    100
#define LIST_DEFAULT_MAX  1000

typedef Temporal__Api__Common__V1__WorkflowExecution pb_execution;

static int oom(keel_error *err)
{
    return keel_error_set(err, KEEL_ENOMEM, "out of memory");
}

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* Request ids make a retried start or signal idempotent. */
int keel_client_uuid4(char out[37], keel_error *err)
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return keel_error_set(err, KEEL_EIO, "cannot read random bytes for a request id");
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return KEEL_OK;
}

/* ---- heap builders (NULL on failure; err says why) ---- */

static char *dup_str(const char *s, bool *ok)
{
    char *d = strdup(s ? s : "");
    if (d == NULL)
        *ok = false;
    return d;
}

static Google__Protobuf__Duration *new_duration(int64_t ms, bool *ok)
{
    if (ms <= 0)
        return NULL;
    Google__Protobuf__Duration *d = malloc(sizeof *d);
    if (d == NULL) {
        *ok = false;
        return NULL;
    }
    keel_proto_duration_set(d, ms);
    return d;
}

static pb_execution *new_execution(const char *workflow_id, const char *run_id, bool *ok)
{
    pb_execution *e = malloc(sizeof *e);
    if (e == NULL) {
        *ok = false;
        return NULL;
    }
    temporal__api__common__v1__workflow_execution__init(e);
    e->workflow_id = dup_str(workflow_id, ok);
    e->run_id = dup_str(run_id, ok);
    return e;
}

static Temporal__Api__Common__V1__RetryPolicy *new_retry(const keel_retry_policy *p,
                                                         keel_error *err)
{
    Temporal__Api__Common__V1__RetryPolicy *r = malloc(sizeof *r);
    if (r == NULL)
        return oom(err), NULL;
    temporal__api__common__v1__retry_policy__init(r);
    bool ok = true;
    r->initial_interval = new_duration(p->initial_interval_ms, &ok);
    r->maximum_interval = new_duration(p->maximum_interval_ms, &ok);
    r->backoff_coefficient = p->backoff_coefficient;
    r->maximum_attempts = p->maximum_attempts;
    if (p->n_non_retryable_error_types > 0) {
        r->non_retryable_error_types = calloc(p->n_non_retryable_error_types, sizeof(char *));
        ok = ok && r->non_retryable_error_types != NULL;
        for (size_t i = 0; ok && i < p->n_non_retryable_error_types; i++) {
            r->non_retryable_error_types[i] = dup_str(p->non_retryable_error_types[i], &ok);
            r->n_non_retryable_error_types = i + 1;
        }
    }
    if (!ok) {
        FREE_PB(r);
        return oom(err), NULL;
    }
    return r;
}

/* ---- start ---- */

int keel_workflow_start_options_init(keel_workflow_start_options *opts, unsigned int version)
{
    if (opts == NULL || version != KEEL_WORKFLOW_START_OPTIONS_VERSION)
        return KEEL_EINVAL;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    return KEEL_OK;
}

static int check_start(const keel_workflow_start_options *o, keel_error *err)
{
    if (o == NULL || o->version != KEEL_WORKFLOW_START_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "workflow start options not initialised");
    if (empty(o->workflow_id))
        return keel_error_set(err, KEEL_EINVAL, "a workflow start needs a workflow id");
    if (empty(o->workflow_type))
        return keel_error_set(err, KEEL_EINVAL, "a workflow start needs a workflow type");
    if (empty(o->task_queue))
        return keel_error_set(err, KEEL_EINVAL, "a workflow start needs a task queue");
    if (o->execution_timeout_ms < 0 || o->run_timeout_ms < 0 || o->task_timeout_ms < 0)
        return keel_error_set(err, KEEL_EINVAL, "workflow timeouts cannot be negative");
    if (o->start_delay_ms < 0)
        return keel_error_set(err, KEEL_EINVAL, "a workflow start delay cannot be negative");
    if (o->start_delay_ms > 0 && !empty(o->cron_schedule))
        return keel_error_set(err, KEEL_EINVAL, "a start delay cannot go with a cron schedule");
    for (size_t i = 0; i < o->n_memo; i++)
        if (empty(o->memo[i].key))
            return keel_error_set(err, KEEL_EINVAL, "memo entry %zu has no key", i + 1);
    for (size_t i = 0; i < o->n_search_attributes; i++)
        if (empty(o->search_attributes[i].name) || o->search_attributes[i].type <= 0 ||
            o->search_attributes[i].type > KEEL_INDEXED_VALUE_TYPE_KEYWORD_LIST)
            return keel_error_set(err, KEEL_EINVAL,
                                  "search attribute %zu needs a name and a valid type", i + 1);
    return KEEL_OK;
}

typedef Temporal__Api__Workflowservice__V1__StartWorkflowExecutionRequest start_request;

static int build_start(keel_transport *t, const char *ns, const keel_workflow_start_options *o,
                       start_request **out, keel_error *err)
{
    char request_id[37];
    if (o->request_id == NULL && keel_client_uuid4(request_id, err) != KEEL_OK)
        return err->code;
    start_request *r = malloc(sizeof *r);
    if (r == NULL)
        return oom(err);
    temporal__api__workflowservice__v1__start_workflow_execution_request__init(r);
    *out = r;
    bool ok = true;
    r->namespace_ = dup_str(ns, &ok);
    r->workflow_id = dup_str(o->workflow_id, &ok);
    r->identity = dup_str(keel_transport_identity(t), &ok);
    r->request_id = dup_str(o->request_id ? o->request_id : request_id, &ok);
    r->cron_schedule = dup_str(o->cron_schedule, &ok);
    r->workflow_id_reuse_policy =
        (Temporal__Api__Enums__V1__WorkflowIdReusePolicy)o->id_reuse_policy;
    r->workflow_id_conflict_policy =
        (Temporal__Api__Enums__V1__WorkflowIdConflictPolicy)o->id_conflict_policy;
    if ((r->workflow_type = malloc(sizeof *r->workflow_type)) != NULL) {
        temporal__api__common__v1__workflow_type__init(r->workflow_type);
        r->workflow_type->name = dup_str(o->workflow_type, &ok);
    }
    if ((r->task_queue = malloc(sizeof *r->task_queue)) != NULL) {
        temporal__api__taskqueue__v1__task_queue__init(r->task_queue);
        r->task_queue->name = dup_str(o->task_queue, &ok);
        r->task_queue->kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    }
    r->workflow_execution_timeout = new_duration(o->execution_timeout_ms, &ok);
    r->workflow_run_timeout = new_duration(o->run_timeout_ms, &ok);
    r->workflow_task_timeout = new_duration(o->task_timeout_ms, &ok);
    r->workflow_start_delay = new_duration(o->start_delay_ms, &ok);
    if (!ok || r->workflow_type == NULL || r->task_queue == NULL)
        return oom(err);
    int rc = keel_payloads_new_json(o->input_json, "workflow input", &r->input, err);
    if (rc == KEEL_OK && o->n_memo > 0 &&
        (r->memo = keel_memo_new(o->memo, o->n_memo, err)) == NULL)
        rc = err->code;
    if (rc == KEEL_OK && o->n_search_attributes > 0 &&
        (r->search_attributes =
             keel_search_attributes_new(o->search_attributes, o->n_search_attributes, err)) == NULL)
        rc = err->code;
    if (rc == KEEL_OK && o->retry_policy &&
        (r->retry_policy = new_retry(o->retry_policy, err)) == NULL)
        rc = err->code;
    return rc;
}

int keel_client_workflow_start(keel_client *client, const keel_workflow_start_options *opts,
                               char **run_id_out, keel_error *err)
{
    return keel_client_workflow_start_ex(client, opts, run_id_out, NULL, err);
}

typedef Temporal__Api__Deployment__V1__WorkerDeploymentOptions pb_deployment_options;

int keel_client_workflow_start_ex(keel_client *client, const keel_workflow_start_options *opts,
                                  char **run_id_out, bool *eager_out, keel_error *err)
{
    if (run_id_out)
        *run_id_out = NULL;
    if (eager_out)
        *eager_out = false;
    keel_error local;
    err = err ? err : &local;
    int rc = check_start(opts, err);
    if (rc != KEEL_OK)
        return rc;
    keel_transport *t = keel_client_transport(client);
    const char *ns = keel_transport_namespace(t);
    start_request *req = NULL;
    rc = build_start(t, ns, opts, &req, err);
    /* Eager: only with a slot reserved now on a worker of this client that serves the queue;
     * the server would drop the request with a delay or cron anyway (first task backs off). */
    keel_eager_target eager;
    bool reserved = rc == KEEL_OK && opts->eager && opts->start_delay_ms == 0 &&
                    empty(opts->cron_schedule) &&
                    keel_client_eager_reserve(client, opts->task_queue, &eager);
    if (reserved) {
        req->request_eager_execution = true;
        /* Borrowed from the worker (alive while it holds our reservation); unset before free. */
        req->eager_worker_deployment_options = (pb_deployment_options *)eager.deployment_options;
    }
    Temporal__Api__Workflowservice__V1__StartWorkflowExecutionResponse *resp = NULL;
    if (rc == KEEL_OK) {
        keel_call_options co = {.retry = true, .namespace = ns};
        rc = keel_transport_call(
            t, WF("StartWorkflowExecution"), (ProtobufCMessage *)req,
            &temporal__api__workflowservice__v1__start_workflow_execution_response__descriptor,
            (ProtobufCMessage **)&resp, &co, err);
    }
    if (req) {
        req->eager_worker_deployment_options = NULL;
        FREE_PB(req);
    }
    if (reserved) {
        /* The task (already started server-side) goes to the worker with the slot, as a polled
         * one would; without one, the slot goes back and a poll brings the first task. */
        if (rc == KEEL_OK && resp->eager_workflow_task != NULL &&
            resp->eager_workflow_task->task_token.len > 0) {
            eager.deliver(eager.ctx, (ProtobufCMessage *)resp->eager_workflow_task);
            resp->eager_workflow_task = NULL;
            if (eager_out)
                *eager_out = true;
        } else {
            eager.release(eager.ctx);
        }
    }
    if (rc != KEEL_OK)
        return rc;
    if (run_id_out && (*run_id_out = keel_proto_strdup(resp->run_id)) == NULL)
        rc = oom(err);
    FREE_PB(resp);
    return rc;
}

/* Signal-with-start takes everything a start takes: build the start request and move its parts
 * across, so that both are built by the same code. */
typedef Temporal__Api__Workflowservice__V1__SignalWithStartWorkflowExecutionRequest swS_request;

#define MOVE(to, from, field, empty)                                                               \
    do {                                                                                           \
        (to)->field = (from)->field;                                                               \
        (from)->field = empty;                                                                     \
    } while (0)

static void move_start(swS_request *to, start_request *from)
{
    MOVE(to, from, namespace_, NULL);
    MOVE(to, from, workflow_id, NULL);
    MOVE(to, from, workflow_type, NULL);
    MOVE(to, from, task_queue, NULL);
    MOVE(to, from, input, NULL);
    MOVE(to, from, workflow_execution_timeout, NULL);
    MOVE(to, from, workflow_run_timeout, NULL);
    MOVE(to, from, workflow_task_timeout, NULL);
    MOVE(to, from, identity, NULL);
    MOVE(to, from, request_id, NULL);
    MOVE(to, from, retry_policy, NULL);
    MOVE(to, from, cron_schedule, NULL);
    MOVE(to, from, memo, NULL);
    MOVE(to, from, search_attributes, NULL);
    MOVE(to, from, workflow_start_delay, NULL);
    to->workflow_id_reuse_policy = from->workflow_id_reuse_policy;
    to->workflow_id_conflict_policy = from->workflow_id_conflict_policy;
}

int keel_client_workflow_signal_with_start(keel_client *client,
                                           const keel_workflow_start_options *opts,
                                           const char *signal_name, const char *signal_input_json,
                                           char **run_id_out, keel_error *err)
{
    if (run_id_out)
        *run_id_out = NULL;
    keel_error local;
    err = err ? err : &local;
    int rc = check_start(opts, err);
    if (rc != KEEL_OK)
        return rc;
    if (empty(signal_name))
        return keel_error_set(err, KEEL_EINVAL, "signal-with-start needs a signal name");
    keel_transport *t = keel_client_transport(client);
    const char *ns = keel_transport_namespace(t);
    start_request *start = NULL;
    swS_request *req = malloc(sizeof *req);
    if (req == NULL)
        return oom(err);
    temporal__api__workflowservice__v1__signal_with_start_workflow_execution_request__init(req);
    rc = build_start(t, ns, opts, &start, err);
    if (start)
        move_start(req, start);
    if (rc == KEEL_OK && (req->signal_name = strdup(signal_name)) == NULL)
        rc = oom(err);
    char what[160];
    snprintf(what, sizeof what, "signal '%s' argument", signal_name);
    if (rc == KEEL_OK)
        rc = keel_payloads_new_json(signal_input_json, what, &req->signal_input, err);
    Temporal__Api__Workflowservice__V1__SignalWithStartWorkflowExecutionResponse *resp = NULL;
    if (rc == KEEL_OK) {
        keel_call_options co = {.retry = true, .namespace = ns};
        rc = keel_transport_call(
            t, WF("SignalWithStartWorkflowExecution"), (ProtobufCMessage *)req,
            &temporal__api__workflowservice__v1__signal_with_start_workflow_execution_response__descriptor,
            (ProtobufCMessage **)&resp, &co, err);
    }
    if (start)
        FREE_PB(start);
    FREE_PB(req);
    if (rc != KEEL_OK)
        return rc;
    if (run_id_out && (*run_id_out = keel_proto_strdup(resp->run_id)) == NULL)
        rc = oom(err);
    FREE_PB(resp);
    return rc;
}

/* ---- signal, cancel, terminate ---- */

static int check_target(const char *workflow_id, keel_error *err)
{
    if (empty(workflow_id))
        return keel_error_set(err, KEEL_EINVAL, "a workflow id is required");
    return KEEL_OK;
}

/* Send req (built on the heap) and free it; the response is dropped. */
static int send_and_free(keel_client *client, const char *method, ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_type, keel_error *err)
{
    keel_transport *t = keel_client_transport(client);
    keel_call_options co = {.retry = true, .namespace = keel_transport_namespace(t)};
    ProtobufCMessage *resp = NULL;
    int rc = keel_transport_call(t, WF(method), req, resp_type, &resp, &co, err);
    FREE_PB(req);
    if (resp)
        FREE_PB(resp);
    return rc;
}

int keel_client_workflow_signal(keel_client *client, const char *workflow_id, const char *run_id,
                                const char *signal_name, const char *input_json, keel_error *err)
{
    keel_error local;
    err = err ? err : &local;
    if (check_target(workflow_id, err) != KEEL_OK)
        return err->code;
    if (empty(signal_name))
        return keel_error_set(err, KEEL_EINVAL, "a signal needs a name");
    char request_id[37];
    if (keel_client_uuid4(request_id, err) != KEEL_OK)
        return err->code;
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__SignalWorkflowExecutionRequest *r = malloc(sizeof *r);
    if (r == NULL)
        return oom(err);
    temporal__api__workflowservice__v1__signal_workflow_execution_request__init(r);
    bool ok = true;
    r->namespace_ = dup_str(keel_transport_namespace(t), &ok);
    r->workflow_execution = new_execution(workflow_id, run_id, &ok);
    r->signal_name = dup_str(signal_name, &ok);
    r->identity = dup_str(keel_transport_identity(t), &ok);
    r->request_id = dup_str(request_id, &ok);
    char what[160];
    snprintf(what, sizeof what, "signal '%s' argument", signal_name);
    int rc = ok ? keel_payloads_new_json(input_json, what, &r->input, err) : oom(err);
    if (rc != KEEL_OK) {
        FREE_PB(r);
        return rc;
    }
    return send_and_free(
        client, "SignalWorkflowExecution", (ProtobufCMessage *)r,
        &temporal__api__workflowservice__v1__signal_workflow_execution_response__descriptor, err);
}

int keel_client_workflow_cancel(keel_client *client, const char *workflow_id, const char *run_id,
                                const char *reason, keel_error *err)
{
    keel_error local;
    err = err ? err : &local;
    if (check_target(workflow_id, err) != KEEL_OK)
        return err->code;
    char request_id[37];
    if (keel_client_uuid4(request_id, err) != KEEL_OK)
        return err->code;
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__RequestCancelWorkflowExecutionRequest *r =
        malloc(sizeof *r);
    if (r == NULL)
        return oom(err);
    temporal__api__workflowservice__v1__request_cancel_workflow_execution_request__init(r);
    bool ok = true;
    r->namespace_ = dup_str(keel_transport_namespace(t), &ok);
    r->workflow_execution = new_execution(workflow_id, run_id, &ok);
    r->identity = dup_str(keel_transport_identity(t), &ok);
    r->request_id = dup_str(request_id, &ok);
    r->reason = dup_str(reason, &ok);
    if (!ok) {
        FREE_PB(r);
        return oom(err);
    }
    return send_and_free(
        client, "RequestCancelWorkflowExecution", (ProtobufCMessage *)r,
        &temporal__api__workflowservice__v1__request_cancel_workflow_execution_response__descriptor,
        err);
}

int keel_client_workflow_terminate(keel_client *client, const char *workflow_id, const char *run_id,
                                   const char *reason, keel_error *err)
{
    keel_error local;
    err = err ? err : &local;
    if (check_target(workflow_id, err) != KEEL_OK)
        return err->code;
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__TerminateWorkflowExecutionRequest *r = malloc(sizeof *r);
    if (r == NULL)
        return oom(err);
    temporal__api__workflowservice__v1__terminate_workflow_execution_request__init(r);
    bool ok = true;
    r->namespace_ = dup_str(keel_transport_namespace(t), &ok);
    r->workflow_execution = new_execution(workflow_id, run_id, &ok);
    r->identity = dup_str(keel_transport_identity(t), &ok);
    r->reason = dup_str(reason, &ok);
    if (!ok) {
        FREE_PB(r);
        return oom(err);
    }
    return send_and_free(
        client, "TerminateWorkflowExecution", (ProtobufCMessage *)r,
        &temporal__api__workflowservice__v1__terminate_workflow_execution_response__descriptor,
        err);
}

/* ---- describe and list ---- */

const char *keel_workflow_status_name(int status)
{
    static const char *const names[] = {"Unspecified",    "Running",  "Completed",
                                        "Failed",         "Canceled", "Terminated",
                                        "ContinuedAsNew", "TimedOut", "Paused"};
    if (status < 0 || status >= (int)(sizeof names / sizeof names[0]))
        return "Unknown";
    return names[status];
}

void keel_workflow_info_dispose(keel_workflow_info *info)
{
    if (info == NULL)
        return;
    free(info->workflow_id);
    free(info->run_id);
    free(info->workflow_type);
    free(info->task_queue);
    for (size_t i = 0; i < info->n_memo; i++) {
        free(info->memo[i].key);
        free(info->memo[i].value);
    }
    free(info->memo);
    for (size_t i = 0; i < info->n_search_attributes; i++) {
        free(info->search_attributes[i].key);
        free(info->search_attributes[i].value);
    }
    free(info->search_attributes);
    memset(info, 0, sizeof *info);
}

/* A payload as JSON for display; a payload that is not JSON becomes a JSON string saying so,
 * rather than failing the whole describe. */
static char *display_json(const Temporal__Api__Common__V1__Payload *p, const char *what)
{
    char *json = NULL;
    keel_error e;
    if (p && keel_payload_to_json(p, what, &json, &e) == KEEL_OK)
        return json;
    return strdup("\"(not JSON)\"");
}

/* Copy a map of payloads (memo fields, search attributes: same entry layout, key + Payload) into
 * keel_kv with JSON values. */
#define COPY_PAYLOAD_MAP(entries, n, out, n_out, what)                                             \
    do {                                                                                           \
        if ((n) > 0 && ((out) = calloc((n), sizeof *(out))) == NULL)                               \
            return false;                                                                          \
        for (size_t i_ = 0; i_ < (n); i_++) {                                                      \
            (out)[i_].key = keel_proto_strdup((entries)[i_]->key);                                 \
            (out)[i_].value = display_json((entries)[i_]->value, what);                            \
            (n_out) = i_ + 1;                                                                      \
            if ((out)[i_].key == NULL || (out)[i_].value == NULL)                                  \
                return false;                                                                      \
        }                                                                                          \
    } while (0)

static bool read_info(const Temporal__Api__Workflow__V1__WorkflowExecutionInfo *w,
                      keel_workflow_info *out)
{
    out->workflow_id = keel_proto_strdup(w->execution ? w->execution->workflow_id : NULL);
    out->run_id = keel_proto_strdup(w->execution ? w->execution->run_id : NULL);
    out->workflow_type = keel_proto_strdup(w->type ? w->type->name : NULL);
    out->task_queue = keel_proto_strdup(w->task_queue);
    out->status = (int)w->status;
    out->start_time_ms = keel_proto_timestamp_ms(w->start_time);
    out->close_time_ms = keel_proto_timestamp_ms(w->close_time);
    out->history_length = w->history_length;
    if (!out->workflow_id || !out->run_id || !out->workflow_type || !out->task_queue)
        return false;
    if (w->memo)
        COPY_PAYLOAD_MAP(w->memo->fields, w->memo->n_fields, out->memo, out->n_memo, "memo");
    if (w->search_attributes)
        COPY_PAYLOAD_MAP(w->search_attributes->indexed_fields,
                         w->search_attributes->n_indexed_fields, out->search_attributes,
                         out->n_search_attributes, "search attribute");
    return true;
}

int keel_client_workflow_describe(keel_client *client, const char *workflow_id, const char *run_id,
                                  keel_workflow_info *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    keel_error local;
    err = err ? err : &local;
    if (check_target(workflow_id, err) != KEEL_OK)
        return err->code;
    keel_transport *t = keel_client_transport(client);
    const char *ns = keel_transport_namespace(t);
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_WORKFLOW_EXECUTION_REQUEST__INIT;
    pb_execution exec = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    exec.workflow_id = (char *)workflow_id;
    exec.run_id = (char *)(run_id ? run_id : "");
    req.namespace_ = (char *)ns;
    req.execution = &exec;
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = ns};
    int rc = keel_transport_call(
        t, WF("DescribeWorkflowExecution"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__describe_workflow_execution_response__descriptor,
        (ProtobufCMessage **)&resp, &co, err);
    if (rc != KEEL_OK)
        return rc;
    if (resp->workflow_execution_info == NULL)
        rc = keel_error_set(err, KEEL_EPROTOCOL,
                            "DescribeWorkflowExecution answered without workflow_execution_info");
    else if (!read_info(resp->workflow_execution_info, out))
        rc = oom(err);
    FREE_PB(resp);
    if (rc != KEEL_OK)
        keel_workflow_info_dispose(out);
    return rc;
}

void keel_workflow_list_dispose(keel_workflow_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        keel_workflow_info_dispose(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

static int append_page(keel_workflow_list *out, size_t limit,
                       const Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *r,
                       keel_error *err)
{
    size_t take = r->n_executions;
    if (take > limit - out->count)
        take = limit - out->count;
    if (take == 0)
        return KEEL_OK;
    keel_workflow_info *items = realloc(out->items, (out->count + take) * sizeof *items);
    if (items == NULL)
        return oom(err);
    out->items = items;
    for (size_t i = 0; i < take; i++) {
        keel_workflow_info *info = &out->items[out->count];
        memset(info, 0, sizeof *info);
        out->count++;
        if (!read_info(r->executions[i], info))
            return oom(err);
    }
    return KEEL_OK;
}

int keel_client_workflow_list(keel_client *client, const char *query, size_t limit,
                              keel_workflow_list *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    keel_error local;
    err = err ? err : &local;
    if (limit == 0)
        limit = LIST_DEFAULT_MAX;
    keel_transport *t = keel_client_transport(client);
    const char *ns = keel_transport_namespace(t);
    keel_call_options co = {.retry = true, .namespace = ns};
    keel_page_token token = {0};
    int rc = KEEL_OK;
    while (rc == KEEL_OK && out->count < limit) {
        Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__LIST_WORKFLOW_EXECUTIONS_REQUEST__INIT;
        req.namespace_ = (char *)ns;
        req.page_size = LIST_PAGE_SIZE;
        req.query = (char *)(query ? query : "");
        req.next_page_token = keel_page_token_get(&token);
        Temporal__Api__Workflowservice__V1__ListWorkflowExecutionsResponse *resp = NULL;
        rc = keel_transport_call(
            t, WF("ListWorkflowExecutions"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__list_workflow_executions_response__descriptor,
            (ProtobufCMessage **)&resp, &co, err);
        if (rc != KEEL_OK)
            break;
        rc = append_page(out, limit, resp, err);
        if (rc == KEEL_OK)
            rc =
                keel_page_token_next(&token, &resp->next_page_token, "ListWorkflowExecutions", err);
        FREE_PB(resp);
        if (token.len == 0)
            break;
    }
    keel_page_token_free(&token);
    if (rc != KEEL_OK)
        keel_workflow_list_dispose(out);
    return rc;
}

/* ---- history ---- */

typedef Temporal__Api__History__V1__History pb_history;

/* Move a page's events onto the end of all (the page keeps an empty list). */
static int take_events(pb_history *all, Temporal__Api__History__V1__History *page, keel_error *err)
{
    if (page == NULL || page->n_events == 0)
        return KEEL_OK;
    Temporal__Api__History__V1__HistoryEvent **grown =
        realloc(all->events, (all->n_events + page->n_events) * sizeof *grown);
    if (grown == NULL)
        return oom(err);
    all->events = grown;
    memcpy(all->events + all->n_events, page->events, page->n_events * sizeof *grown);
    all->n_events += page->n_events;
    free(page->events);
    page->events = NULL;
    page->n_events = 0;
    return KEEL_OK;
}

int keel_client_workflow_history(keel_client *client, const char *workflow_id, const char *run_id,
                                 keel_history_format format, char **out, size_t *len,
                                 keel_error *err)
{
    *out = NULL;
    *len = 0;
    keel_error local;
    err = err ? err : &local;
    if (check_target(workflow_id, err) != KEEL_OK)
        return err->code;
    if (format != KEEL_HISTORY_JSON && format != KEEL_HISTORY_BINARY)
        return keel_error_set(err, KEEL_EINVAL, "unknown history format %d", (int)format);
    keel_transport *t = keel_client_transport(client);
    const char *ns = keel_transport_namespace(t);
    pb_history *all = malloc(sizeof *all);
    if (all == NULL)
        return oom(err);
    temporal__api__history__v1__history__init(all);
    keel_page_token token = {0};
    int rc = KEEL_OK;
    do {
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
        pb_execution exec = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
        exec.workflow_id = (char *)workflow_id;
        exec.run_id = (char *)(run_id ? run_id : "");
        req.namespace_ = (char *)ns;
        req.execution = &exec;
        req.next_page_token = keel_page_token_get(&token);
        req.skip_archival = 1;
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *resp = NULL;
        keel_call_options co = {.retry = true, .namespace = ns};
        rc = keel_transport_call(
            t, WF("GetWorkflowExecutionHistory"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
            (ProtobufCMessage **)&resp, &co, err);
        if (rc != KEEL_OK)
            break;
        rc = take_events(all, resp->history, err);
        if (rc == KEEL_OK)
            rc = keel_page_token_next(&token, &resp->next_page_token, "GetWorkflowExecutionHistory",
                                      err);
        FREE_PB(resp);
    } while (rc == KEEL_OK && token.len > 0);
    keel_page_token_free(&token);
    if (rc == KEEL_OK && format == KEEL_HISTORY_JSON) {
        *out = keel_protojson_encode(&all->base, true, err);
        if (*out == NULL)
            rc = err->code ? err->code : oom(err);
        else
            *len = strlen(*out);
    } else if (rc == KEEL_OK) {
        *len = protobuf_c_message_get_packed_size(&all->base);
        if ((*out = malloc(*len ? *len : 1)) == NULL)
            rc = oom(err);
        else
            protobuf_c_message_pack(&all->base, (uint8_t *)*out);
    }
    FREE_PB(all);
    if (rc != KEEL_OK) {
        free(*out);
        *out = NULL;
        *len = 0;
    }
    return rc;
}

/* ---- query ---- */

int keel_client_workflow_query(keel_client *client, const char *workflow_id, const char *run_id,
                               const char *query_type, const char *args_json, char **result_json,
                               keel_error *err)
{
    *result_json = NULL;
    keel_error local;
    err = err ? err : &local;
    if (check_target(workflow_id, err) != KEEL_OK)
        return err->code;
    if (empty(query_type))
        return keel_error_set(err, KEEL_EINVAL, "a query needs a name");
    keel_transport *t = keel_client_transport(client);
    const char *ns = keel_transport_namespace(t);
    Temporal__Api__Workflowservice__V1__QueryWorkflowRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__QUERY_WORKFLOW_REQUEST__INIT;
    pb_execution exec = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    exec.workflow_id = (char *)workflow_id;
    exec.run_id = (char *)(run_id ? run_id : "");
    Temporal__Api__Query__V1__WorkflowQuery q = TEMPORAL__API__QUERY__V1__WORKFLOW_QUERY__INIT;
    q.query_type = (char *)query_type;
    char what[160];
    snprintf(what, sizeof what, "arguments of query '%s'", query_type);
    int rc = keel_payloads_new_json(args_json, what, &q.query_args, err);
    if (rc != KEEL_OK)
        return rc;
    req.namespace_ = (char *)ns;
    req.execution = &exec;
    req.query = &q;
    Temporal__Api__Workflowservice__V1__QueryWorkflowResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = ns};
    rc = keel_transport_call(
        t, WF("QueryWorkflow"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__query_workflow_response__descriptor,
        (ProtobufCMessage **)&resp, &co, err);
    if (q.query_args)
        FREE_PB(q.query_args);
    if (rc != KEEL_OK)
        return rc;
    if (resp->query_rejected)
        rc = keel_error_set(err, KEEL_EPRECONDITION, "query '%s' was rejected: the run is closed",
                            query_type);
    else
        rc = keel_payloads_to_json(resp->query_result, "query result", result_json, err);
    FREE_PB(resp);
    return rc;
}

/* ---- result ---- */

void keel_workflow_outcome_dispose(keel_workflow_outcome *o)
{
    if (o == NULL)
        return;
    free(o->run_id);
    free(o->result_json);
    free(o->failure_message);
    free(o->failure_type);
    memset(o, 0, sizeof *o);
}

typedef Temporal__Api__History__V1__HistoryEvent pb_event;

/* Read the close event into *out. Sets *next_run to the run to follow (or NULL: done). */
static int read_close_event(const pb_event *e, keel_workflow_outcome *out, const char **next_run,
                            keel_error *err)
{
    *next_run = NULL;
    const char *follow = NULL;
    bool ok = true;
    switch (e->attributes_case) {
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_COMPLETED_EVENT_ATTRIBUTES: {
        const Temporal__Api__History__V1__WorkflowExecutionCompletedEventAttributes *a =
            e->workflow_execution_completed_event_attributes;
        follow = a->new_execution_run_id;
        out->status = KEEL_WORKFLOW_STATUS_COMPLETED;
        if (empty(follow)) {
            int rc = keel_payloads_to_json(a->result, "workflow result", &out->result_json, err);
            if (rc != KEEL_OK)
                return rc;
        }
        break;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_FAILED_EVENT_ATTRIBUTES: {
        const Temporal__Api__History__V1__WorkflowExecutionFailedEventAttributes *a =
            e->workflow_execution_failed_event_attributes;
        follow = a->new_execution_run_id;
        out->status = KEEL_WORKFLOW_STATUS_FAILED;
        out->failure_message = keel_failure_text(a->failure);
        ok = out->failure_message != NULL;
        if (a->failure &&
            a->failure->failure_info_case ==
                TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_APPLICATION_FAILURE_INFO &&
            !empty(a->failure->application_failure_info->type))
            ok = ok && (out->failure_type = strdup(a->failure->application_failure_info->type));
        break;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_TIMED_OUT_EVENT_ATTRIBUTES:
        follow = e->workflow_execution_timed_out_event_attributes->new_execution_run_id;
        out->status = KEEL_WORKFLOW_STATUS_TIMED_OUT;
        ok = (out->failure_message = strdup("the workflow timed out")) != NULL;
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_CANCELED_EVENT_ATTRIBUTES:
        out->status = KEEL_WORKFLOW_STATUS_CANCELED;
        ok = (out->failure_message = strdup("the workflow was canceled")) != NULL;
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_TERMINATED_EVENT_ATTRIBUTES: {
        const char *reason = e->workflow_execution_terminated_event_attributes->reason;
        out->status = KEEL_WORKFLOW_STATUS_TERMINATED;
        ok = (out->failure_message = strdup(empty(reason) ? "terminated" : reason)) != NULL;
        break;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_CONTINUED_AS_NEW_EVENT_ATTRIBUTES:
        follow = e->workflow_execution_continued_as_new_event_attributes->new_execution_run_id;
        out->status = KEEL_WORKFLOW_STATUS_CONTINUED_AS_NEW;
        if (empty(follow))
            return keel_error_set(err, KEEL_EPROTOCOL, "a ContinuedAsNew event names no new run");
        break;
    default:
        return keel_error_set(err, KEEL_EPROTOCOL,
                              "the server answered a close-event poll with event %lld of type %d, "
                              "which does not close a workflow",
                              (long long)e->event_id, (int)e->event_type);
    }
    if (!ok)
        return oom(err);
    *next_run = empty(follow) ? NULL : follow;
    return KEEL_OK;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long the next long poll may wait: RESULT_POLL_MS, less if the caller's deadline (0: none)
 * comes sooner; 0 once the deadline has passed. */
static int64_t poll_wait(int64_t deadline)
{
    if (deadline == 0)
        return RESULT_POLL_MS;
    int64_t left = deadline - mono_ms();
    return left <= 0 ? 0 : left < RESULT_POLL_MS ? left : RESULT_POLL_MS;
}

/* One long poll for the close event of (workflow_id, *run). Returns KEEL_OK with *event set (the
 * caller frees *resp) or with *event NULL when the poll ended without one (poll again). */
static int
poll_close(keel_transport *t, const char *workflow_id, const char *run, ProtobufCBinaryData token,
           int64_t wait_ms,
           Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse **resp,
           keel_error *err)
{
    const char *ns = keel_transport_namespace(t);
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
    pb_execution exec = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    exec.workflow_id = (char *)workflow_id;
    exec.run_id = (char *)run;
    req.namespace_ = (char *)ns;
    req.execution = &exec;
    req.wait_new_event = 1;
    req.history_event_filter_type =
        TEMPORAL__API__ENUMS__V1__HISTORY_EVENT_FILTER_TYPE__HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT;
    req.skip_archival = 1;
    req.next_page_token = token;
    keel_call_options co = {.retry = true, .namespace = ns, .timeout_ms = wait_ms};
    return keel_transport_call(
        t, WF("GetWorkflowExecutionHistory"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
        (ProtobufCMessage **)resp, &co, err);
}

int keel_client_workflow_result(keel_client *client, const char *workflow_id, const char *run_id,
                                int64_t timeout_ms, keel_workflow_outcome *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    keel_error local;
    err = err ? err : &local;
    if (check_target(workflow_id, err) != KEEL_OK)
        return err->code;
    keel_transport *t = keel_client_transport(client);
    int64_t deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : 0;
    /* No run id: pin the run that is current now, so the answer names a run and a later run
     * reusing the workflow id is not mistaken for this one. */
    char *run = NULL;
    if (empty(run_id)) {
        keel_workflow_info info;
        int rc = keel_client_workflow_describe(client, workflow_id, NULL, &info, err);
        if (rc != KEEL_OK)
            return rc;
        run = info.run_id;
        info.run_id = NULL;
        keel_workflow_info_dispose(&info);
    } else {
        run = strdup(run_id);
    }
    uint8_t *token = NULL;
    size_t token_len = 0;
    int rc = run ? KEEL_OK : oom(err);
    for (int runs = 0; rc == KEEL_OK;) {
        int64_t wait = poll_wait(deadline);
        if (wait == 0) {
            rc = keel_error_set(err, KEEL_ETIMEOUT, "workflow %s did not close within %lld ms",
                                workflow_id, (long long)timeout_ms);
            break;
        }
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *resp = NULL;
        rc = poll_close(t, workflow_id, run, (ProtobufCBinaryData){token_len, token}, wait, &resp,
                        err);
        if (rc == KEEL_ETIMEOUT) {
            if (!deadline || mono_ms() < deadline) {
                rc = KEEL_OK; /* this poll's deadline, not ours: poll again */
                continue;
            }
            rc = keel_error_set(err, KEEL_ETIMEOUT, "workflow %s did not close within %lld ms",
                                workflow_id, (long long)timeout_ms);
            break;
        }
        if (rc != KEEL_OK)
            break;
        free(token);
        token = NULL;
        token_len = 0;
        const pb_event *close = resp->history && resp->history->n_events > 0
                                    ? resp->history->events[resp->history->n_events - 1]
                                    : NULL;
        if (close == NULL) {
            /* The server's long poll ended without the event: continue from its token. This
             * token is a continuation of the wait, which may come back unchanged, so it is
             * copied here rather than through keel_page_token (which refuses repeats). */
            if (resp->next_page_token.len > 0) {
                token = malloc(resp->next_page_token.len);
                if (token == NULL)
                    rc = oom(err);
                else {
                    memcpy(token, resp->next_page_token.data, resp->next_page_token.len);
                    token_len = resp->next_page_token.len;
                }
            }
            FREE_PB(resp);
            continue;
        }
        const char *next = NULL;
        keel_workflow_outcome_dispose(out);
        rc = read_close_event(close, out, &next, err);
        if (rc == KEEL_OK && next) {
            if (++runs > MAX_FOLLOWED_RUNS)
                rc = keel_error_set(err, KEEL_EPROTOCOL,
                                    "workflow %s continued through more than %d runs", workflow_id,
                                    MAX_FOLLOWED_RUNS);
            else {
                free(run);
                run = strdup(next);
                rc = run ? KEEL_OK : oom(err);
            }
            FREE_PB(resp);
            continue;
        }
        /* Done: report the run that closed. An empty run_id asked for the current run. */
        if (rc == KEEL_OK && (out->run_id = strdup(run)) == NULL)
            rc = oom(err);
        FREE_PB(resp);
        break;
    }
    free(token);
    free(run);
    if (rc != KEEL_OK)
        keel_workflow_outcome_dispose(out);
    return rc;
}

/* ---- update ---- */

typedef Temporal__Api__Update__V1__Outcome pb_update_outcome;

void keel_update_outcome_dispose(keel_update_outcome *o)
{
    if (o == NULL)
        return;
    free(o->update_id);
    free(o->result_json);
    free(o->failure_message);
    free(o->failure_type);
    memset(o, 0, sizeof *o);
}

static int read_update_outcome(const pb_update_outcome *oc, keel_update_outcome *out,
                               keel_error *err)
{
    if (oc->value_case == TEMPORAL__API__UPDATE__V1__OUTCOME__VALUE_FAILURE) {
        out->failed = true;
        out->failure_message = keel_failure_text(oc->failure);
        out->failure_type = keel_failure_type(oc->failure);
        return out->failure_message && out->failure_type ? KEEL_OK : oom(err);
    }
    if (oc->value_case != TEMPORAL__API__UPDATE__V1__OUTCOME__VALUE_SUCCESS)
        return keel_error_set(err, KEEL_EPROTOCOL,
                              "update %s: the server sent an outcome that is neither a result nor "
                              "a failure",
                              out->update_id);
    return keel_payloads_to_json(oc->success, "update result", &out->result_json, err);
}

/* Wait on an update that the server has not answered yet (its own wait ran out first). Returns
 * KEEL_OK with *oc set (owned by *resp) once it has an outcome. */
static int
poll_update(keel_transport *t, Temporal__Api__Update__V1__UpdateRef *ref, int64_t wait_ms,
            Temporal__Api__Workflowservice__V1__PollWorkflowExecutionUpdateResponse **resp,
            keel_error *err)
{
    const char *ns = keel_transport_namespace(t);
    Temporal__Api__Workflowservice__V1__PollWorkflowExecutionUpdateRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__POLL_WORKFLOW_EXECUTION_UPDATE_REQUEST__INIT;
    Temporal__Api__Update__V1__WaitPolicy wait = TEMPORAL__API__UPDATE__V1__WAIT_POLICY__INIT;
    wait.lifecycle_stage =
        TEMPORAL__API__ENUMS__V1__UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE__UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED;
    req.namespace_ = (char *)ns;
    req.update_ref = ref;
    req.identity = (char *)keel_transport_identity(t);
    req.wait_policy = &wait;
    keel_call_options co = {.retry = true, .namespace = ns, .timeout_ms = wait_ms};
    return keel_transport_call(
        t, WF("PollWorkflowExecutionUpdate"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__poll_workflow_execution_update_response__descriptor,
        (ProtobufCMessage **)resp, &co, err);
}

int keel_client_workflow_update(keel_client *client, const char *workflow_id, const char *run_id,
                                const char *update_id, const char *name, const char *args_json,
                                int64_t timeout_ms, keel_update_outcome *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    keel_error local;
    err = err ? err : &local;
    if (check_target(workflow_id, err) != KEEL_OK)
        return err->code;
    if (empty(name))
        return keel_error_set(err, KEEL_EINVAL, "an update needs a name");
    char uuid[37];
    if (empty(update_id)) {
        if (keel_client_uuid4(uuid, err) != KEEL_OK)
            return err->code;
        update_id = uuid;
    }
    if ((out->update_id = strdup(update_id)) == NULL)
        return oom(err);
    keel_transport *t = keel_client_transport(client);
    const char *ns = keel_transport_namespace(t);
    int64_t deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : 0;

    Temporal__Api__Workflowservice__V1__UpdateWorkflowExecutionRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__UPDATE_WORKFLOW_EXECUTION_REQUEST__INIT;
    pb_execution exec = TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    exec.workflow_id = (char *)workflow_id;
    exec.run_id = (char *)(run_id ? run_id : "");
    Temporal__Api__Update__V1__WaitPolicy wait = TEMPORAL__API__UPDATE__V1__WAIT_POLICY__INIT;
    wait.lifecycle_stage =
        TEMPORAL__API__ENUMS__V1__UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE__UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED;
    Temporal__Api__Update__V1__Request request = TEMPORAL__API__UPDATE__V1__REQUEST__INIT;
    Temporal__Api__Update__V1__Meta meta = TEMPORAL__API__UPDATE__V1__META__INIT;
    Temporal__Api__Update__V1__Input input = TEMPORAL__API__UPDATE__V1__INPUT__INIT;
    meta.update_id = (char *)update_id;
    meta.identity = (char *)keel_transport_identity(t);
    input.name = (char *)name;
    char what[160];
    snprintf(what, sizeof what, "arguments of update '%.100s'", name);
    int rc = keel_payloads_new_json(args_json, what, &input.args, err);
    if (rc != KEEL_OK)
        return rc;
    request.meta = &meta;
    request.input = &input;
    req.namespace_ = (char *)ns;
    req.workflow_execution = &exec;
    req.wait_policy = &wait;
    req.request = &request;

    /* The server answers when the update completes or its own wait ends (then stage says how far
     * it got); the same update id makes a repeated call safe. */
    Temporal__Api__Workflowservice__V1__UpdateWorkflowExecutionResponse *resp = NULL;
    do {
        keel_call_options co = {.retry = true, .namespace = ns, .timeout_ms = poll_wait(deadline)};
        if (co.timeout_ms == 0) {
            rc = keel_error_set(err, KEEL_ETIMEOUT,
                                "update %s of workflow %s was not answered within %lld ms",
                                update_id, workflow_id, (long long)timeout_ms);
            break;
        }
        rc = keel_transport_call(
            t, WF("UpdateWorkflowExecution"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__update_workflow_execution_response__descriptor,
            (ProtobufCMessage **)&resp, &co, err);
    } while (rc == KEEL_ETIMEOUT);
    if (input.args)
        FREE_PB(input.args);
    if (rc != KEEL_OK) {
        keel_update_outcome_dispose(out);
        return rc;
    }
    if (resp->outcome) {
        rc = read_update_outcome(resp->outcome, out, err);
        FREE_PB(resp);
        if (rc != KEEL_OK)
            keel_update_outcome_dispose(out);
        return rc;
    }
    Temporal__Api__Update__V1__UpdateRef *ref = resp->update_ref;
    if (ref == NULL) {
        FREE_PB(resp);
        keel_error_set(err, KEEL_EPROTOCOL,
                       "update %s: the server sent neither an outcome nor a reference",
                       out->update_id);
        keel_update_outcome_dispose(out);
        return KEEL_EPROTOCOL;
    }
    for (;;) {
        int64_t wait_ms = poll_wait(deadline);
        if (wait_ms == 0) {
            rc = keel_error_set(err, KEEL_ETIMEOUT,
                                "update %s of workflow %s was not answered within %lld ms",
                                update_id, workflow_id, (long long)timeout_ms);
            break;
        }
        Temporal__Api__Workflowservice__V1__PollWorkflowExecutionUpdateResponse *p = NULL;
        rc = poll_update(t, ref, wait_ms, &p, err);
        if (rc == KEEL_ETIMEOUT)
            continue; /* this poll's deadline; the loop checks ours */
        if (rc != KEEL_OK)
            break;
        bool done = p->outcome != NULL;
        if (done)
            rc = read_update_outcome(p->outcome, out, err);
        FREE_PB(p);
        if (done)
            break;
    }
    FREE_PB(resp);
    if (rc != KEEL_OK)
        keel_update_outcome_dispose(out);
    return rc;
}
