/*
 * worker - threads that poll a task queue: workflow pollers that drive the engine, and the
 * activity executors (activity.c).
 *
 * A workflow task is answered from the run's full history (first page in the poll response,
 * the rest from GetWorkflowExecutionHistory). A task the engine cannot answer is failed with the
 * cause the SDKs use (NON_DETERMINISTIC_ERROR or WORKFLOW_WORKER_UNHANDLED_FAILURE), on its
 * first attempt only: the server retries with a growing timeout, and failing every retry would
 * just spin.
 */
#include "keel/worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "converter/failure.h"
#include "converter/payload.h"
#include "proto/proto.h"
#include "worker/activity.h"
#include "worker/engine.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

#define POLL_TIMEOUT_MS       70000
#define POLL_ERROR_BACKOFF_MS 1000
#define DEFAULT_WF_POLLERS    2
#define DEFAULT_ACTIVITIES    8
#define MAX_THREADS           1024

typedef Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse workflow_task;

struct keel_worker {
    keel_client *client;
    keel_transport *transport;
    const char *namespace;
    char *task_queue, *identity;
    const keel_workflow_type *const *workflows;
    size_t n_workflows;
    int n_wf_pollers, n_activity_threads;

    atomic_bool stopping;
    bool running;
    pthread_t *threads;
    keel_call_cancel **cancels;
    size_t n_threads;
    keel_activity_pool pool;
    struct wf_thread_arg *wf_args;           /* one per workflow poller */
    keel_activity_thread_arg *activity_args; /* one per activity thread */
    atomic_uint_fast64_t wf_completed, wf_failed;
};

typedef struct wf_thread_arg {
    keel_worker *w;
    keel_call_cancel *cancel;
} wf_thread_arg;

static void log_line(const char *level, const char *msg, const char *detail)
{
    fprintf(stderr, "keel level=%s component=worker msg=\"%s\" detail=\"%s\"\n", level, msg,
            detail);
}

/* ---- options and lifecycle ---- */

int keel_worker_options_init(keel_worker_options *opts, unsigned int version)
{
    if (opts == NULL || version != KEEL_WORKER_OPTIONS_VERSION)
        return KEEL_EINVAL;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    opts->workflow_pollers = DEFAULT_WF_POLLERS;
    opts->max_concurrent_activities = DEFAULT_ACTIVITIES;
    return KEEL_OK;
}

static int check_options(const keel_worker_options *o, keel_error *err)
{
    if (o == NULL || o->version != KEEL_WORKER_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "worker options not initialised");
    if (o->task_queue == NULL || o->task_queue[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "a worker needs a task queue");
    if (o->n_workflows == 0 && o->n_activities == 0)
        return keel_error_set(err, KEEL_EINVAL,
                              "a worker needs at least one workflow or activity type");
    if (o->workflow_pollers < 1 || o->workflow_pollers > 64 || o->max_concurrent_activities < 1 ||
        o->max_concurrent_activities > 512)
        return keel_error_set(err, KEEL_EINVAL,
                              "workflow_pollers must be 1-64 and max_concurrent_activities 1-512");
    for (size_t i = 0; i < o->n_workflows; i++) {
        const keel_workflow_type *t = o->workflows[i];
        if (t == NULL || t->name == NULL || t->start == NULL || t->on_event == NULL)
            return keel_error_set(err, KEEL_EINVAL,
                                  "workflow type %zu needs a name, start and on_event", i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->workflows[j]->name, t->name) == 0)
                return keel_error_set(err, KEEL_EINVAL, "workflow type %s is registered twice",
                                      t->name);
    }
    for (size_t i = 0; i < o->n_activities; i++) {
        const keel_activity_type *t = &o->activities[i];
        if (t->name == NULL || t->run == NULL)
            return keel_error_set(err, KEEL_EINVAL, "activity type %zu needs a name and run",
                                  i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->activities[j].name, t->name) == 0)
                return keel_error_set(err, KEEL_EINVAL, "activity type %s is registered twice",
                                      t->name);
    }
    return KEEL_OK;
}

int keel_worker_new(keel_worker **out, keel_client *client, const keel_worker_options *opts,
                    keel_error *err)
{
    *out = NULL;
    int rc = check_options(opts, err);
    if (rc != KEEL_OK)
        return rc;
    keel_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the worker");
    w->client = client;
    w->transport = keel_client_transport(client);
    w->namespace = keel_transport_namespace(w->transport);
    w->task_queue = strdup(opts->task_queue);
    w->identity = strdup(opts->identity ? opts->identity : keel_transport_identity(w->transport));
    w->workflows = opts->workflows;
    w->n_workflows = opts->n_workflows;
    w->n_wf_pollers = opts->n_workflows ? opts->workflow_pollers : 0;
    w->n_activity_threads = opts->n_activities ? opts->max_concurrent_activities : 0;
    atomic_init(&w->stopping, false);
    w->pool = (keel_activity_pool){.transport = w->transport,
                                   .namespace = w->namespace,
                                   .types = opts->activities,
                                   .n_types = opts->n_activities,
                                   .stopping = &w->stopping};
    atomic_init(&w->pool.completed, 0);
    atomic_init(&w->pool.failed, 0);
    atomic_init(&w->wf_completed, 0);
    atomic_init(&w->wf_failed, 0);
    if (w->task_queue == NULL || w->identity == NULL) {
        keel_worker_free(w);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the worker");
    }
    w->pool.task_queue = w->task_queue;
    w->pool.identity = w->identity;
    *out = w;
    return KEEL_OK;
}

/* ---- workflow tasks ---- */

static const keel_workflow_type *find_workflow(const keel_worker *w, const char *name)
{
    for (size_t i = 0; i < w->n_workflows; i++)
        if (strcmp(w->workflows[i]->name, name) == 0)
            return w->workflows[i];
    return NULL;
}

static void respond_failed(keel_worker *w, const workflow_task *t, int code, const char *message)
{
    atomic_fetch_add(&w->wf_failed, 1);
    log_line("warn", "workflow task failed", message);
    if (t->attempt > 1)
        return; /* already reported on the first attempt; let the retries time out quietly */
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskFailedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_WORKFLOW_TASK_FAILED_REQUEST__INIT;
    req.task_token = t->task_token;
    req.cause =
        code == KEEL_ENONDETERMINISM
            ? TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
            : TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE;
    req.identity = w->identity;
    req.namespace_ = (char *)w->namespace;
    keel_error err;
    req.failure = keel_failure_new_application(
        code == KEEL_ENONDETERMINISM ? "NonDeterministicError" : "WorkflowTaskError", message,
        false, &err);
    if (req.failure == NULL)
        return;
    keel_call_options co = {.retry = true, .namespace = w->namespace};
    ProtobufCMessage *resp = NULL;
    if (keel_transport_call(
            w->transport, WF("RespondWorkflowTaskFailed"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__respond_workflow_task_failed_response__descriptor,
            &resp, &co, &err) != KEEL_OK)
        log_line("warn", "could not report the workflow task failure", err.message);
    if (resp)
        FREE_PB(resp);
    FREE_PB(req.failure);
}

/* Feed the rest of the history after the poll response's first page. */
static int feed_remaining_pages(keel_worker *w, keel_engine *e, const workflow_task *t,
                                keel_error *err)
{
    ProtobufCBinaryData token = t->next_page_token;
    uint8_t *owned = NULL;
    int rc = KEEL_OK;
    while (rc == KEEL_OK && token.len > 0) {
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
        req.namespace_ = (char *)w->namespace;
        req.execution = t->workflow_execution;
        req.next_page_token = token;
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *page = NULL;
        keel_call_options co = {.retry = true, .namespace = w->namespace};
        rc = keel_transport_call(
            w->transport, WF("GetWorkflowExecutionHistory"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
            (ProtobufCMessage **)&page, &co, err);
        if (rc != KEEL_OK)
            break;
        if (page->history && page->history->n_events > 0) {
            int64_t last = page->history->events[page->history->n_events - 1]->event_id;
            if (t->started_event_id > 0 && last > t->started_event_id)
                /* The task timed out and was handed out again while we read: abandon it. */
                rc = keel_error_set(err, KEEL_EPRECONDITION,
                                    "stale workflow task: history moved past event %lld",
                                    (long long)t->started_event_id);
            else
                rc = keel_engine_feed(e, page->history->events, page->history->n_events, err);
        }
        free(owned);
        owned = NULL;
        token.len = 0;
        if (rc == KEEL_OK && page->next_page_token.len > 0) {
            owned = malloc(page->next_page_token.len);
            if (owned == NULL)
                rc = keel_error_set(err, KEEL_ENOMEM, "out of memory reading history");
            else {
                memcpy(owned, page->next_page_token.data, page->next_page_token.len);
                token = (ProtobufCBinaryData){page->next_page_token.len, owned};
            }
        }
        FREE_PB(page);
    }
    free(owned);
    return rc;
}

/* Build the engine for the task's run and feed its whole history. */
static int replay(keel_worker *w, const workflow_task *t, keel_engine **out, keel_error *err)
{
    *out = NULL;
    const char *type_name = t->workflow_type ? t->workflow_type->name : "";
    const keel_workflow_type *type = find_workflow(w, type_name);
    if (type == NULL)
        return keel_error_set(err, KEEL_EINVAL,
                              "workflow type '%s' is not registered on this worker (task queue "
                              "%s)",
                              type_name, w->task_queue);
    const Temporal__Api__Common__V1__WorkflowExecution *x = t->workflow_execution;
    const char *queue = t->workflow_execution_task_queue && t->workflow_execution_task_queue->name
                            ? t->workflow_execution_task_queue->name
                            : w->task_queue;
    int rc = keel_engine_new(out, type, x ? x->workflow_id : "", x ? x->run_id : "", queue, err);
    if (rc == KEEL_OK && t->history)
        rc = keel_engine_feed(*out, t->history->events, t->history->n_events, err);
    if (rc == KEEL_OK)
        rc = feed_remaining_pages(w, *out, t, err);
    if (rc == KEEL_OK && t->started_event_id > 0 &&
        keel_engine_last_event_id(*out) < t->started_event_id)
        /* Older servers leave a retried task's events out of a fresh history read. */
        rc = keel_error_set(
            err, KEEL_EPRECONDITION, "history ends at event %lld, before the task's start at %lld",
            (long long)keel_engine_last_event_id(*out), (long long)t->started_event_id);
    return rc;
}

static void respond_completed(keel_worker *w, const workflow_task *t, keel_engine *e)
{
    keel_pb_command *const *cmds;
    size_t n = keel_engine_commands(e, &cmds);
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_WORKFLOW_TASK_COMPLETED_REQUEST__INIT;
    req.task_token = t->task_token;
    req.commands = (keel_pb_command **)cmds;
    req.n_commands = n;
    req.identity = w->identity;
    req.namespace_ = (char *)w->namespace;
    keel_call_options co = {.retry = true, .namespace = w->namespace};
    ProtobufCMessage *resp = NULL;
    keel_error err;
    if (keel_transport_call(
            w->transport, WF("RespondWorkflowTaskCompleted"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__respond_workflow_task_completed_response__descriptor,
            &resp, &co, &err) != KEEL_OK) {
        atomic_fetch_add(&w->wf_failed, 1);
        log_line("warn", "the server refused a workflow task completion", err.message);
    } else {
        atomic_fetch_add(&w->wf_completed, 1);
    }
    if (resp)
        FREE_PB(resp);
}

/* ---- queries (legacy query tasks: the Web UI's stack trace and user queries) ---- */

static int answer_query(const keel_engine *e, const Temporal__Api__Query__V1__WorkflowQuery *q,
                        char **result, keel_error *err)
{
    const keel_workflow_type *type = keel_engine_type(e);
    const char *name = q->query_type ? q->query_type : "";
    if (strcmp(name, "__stack_trace") == 0) {
        char line[1024] = "";
        if (type->describe)
            type->describe(keel_engine_state(e), line, sizeof line);
        else
            snprintf(line, sizeof line, "workflow %s (no describe callback)", type->name);
        /* A JSON string: escape what JSON needs. */
        char buf[2200];
        size_t o = 0;
        buf[o++] = '"';
        for (const char *s = line; *s && o < sizeof buf - 3; s++) {
            if (*s == '"' || *s == '\\')
                buf[o++] = '\\';
            buf[o++] = (unsigned char)*s < 0x20 ? ' ' : *s;
        }
        buf[o++] = '"';
        buf[o] = '\0';
        *result = strdup(buf);
        return *result ? KEEL_OK : keel_error_set(err, KEEL_ENOMEM, "out of memory");
    }
    if (type->query == NULL)
        return keel_error_set(err, KEEL_EINVAL, "workflow %s answers no queries (asked '%s')",
                              type->name, name);
    char *args = NULL;
    int rc = keel_payloads_to_json(q->query_args, "query arguments", &args, err);
    if (rc != KEEL_OK)
        return rc;
    rc = type->query(keel_engine_state(e), name, args, result);
    free(args);
    if (rc != KEEL_OK)
        return keel_error_set(err, KEEL_EINVAL, "workflow %s cannot answer query '%s'", type->name,
                              name);
    if (*result == NULL)
        *result = strdup("null");
    return KEEL_OK;
}

static void respond_query(keel_worker *w, const workflow_task *t, const char *result,
                          const char *error)
{
    Temporal__Api__Workflowservice__V1__RespondQueryTaskCompletedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_QUERY_TASK_COMPLETED_REQUEST__INIT;
    req.task_token = t->task_token;
    req.namespace_ = (char *)w->namespace;
    keel_error err;
    if (result &&
        keel_payloads_new_json(result, "query result", &req.query_result, &err) != KEEL_OK) {
        error = err.message;
        result = NULL;
    }
    req.completed_type =
        result ? TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_ANSWERED
               : TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_FAILED;
    req.error_message = (char *)(error ? error : "");
    keel_call_options co = {.retry = true, .namespace = w->namespace};
    ProtobufCMessage *resp = NULL;
    if (keel_transport_call(
            w->transport, WF("RespondQueryTaskCompleted"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__respond_query_task_completed_response__descriptor,
            &resp, &co, &err) != KEEL_OK)
        log_line("warn", "could not answer a query", err.message);
    if (resp)
        FREE_PB(resp);
    if (req.query_result)
        FREE_PB(req.query_result);
}

static void process(keel_worker *w, const workflow_task *t)
{
    keel_engine *e = NULL;
    keel_error err;
    int rc = replay(w, t, &e, &err);
    if (t->query) {
        /* Read-only: the state after the history, no commands. */
        char *result = NULL;
        if (rc == KEEL_OK)
            rc = answer_query(e, t->query, &result, &err);
        respond_query(w, t, rc == KEEL_OK ? result : NULL, rc == KEEL_OK ? NULL : err.message);
        free(result);
    } else {
        if (rc == KEEL_OK)
            rc = keel_engine_finish(e, &err);
        if (rc == KEEL_OK)
            respond_completed(w, t, e);
        else if (rc == KEEL_EPRECONDITION)
            log_line("info", "workflow task abandoned", err.message); /* it comes back */
        else
            respond_failed(w, t, rc, err.message);
    }
    keel_engine_free(e);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void *workflow_thread(void *arg)
{
    wf_thread_arg *a = arg;
    keel_worker *w = a->w;
    Temporal__Api__Taskqueue__V1__TaskQueue tq = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    tq.name = w->task_queue;
    tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    while (!atomic_load(&w->stopping)) {
        Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__POLL_WORKFLOW_TASK_QUEUE_REQUEST__INIT;
        req.namespace_ = (char *)w->namespace;
        req.task_queue = &tq;
        req.identity = w->identity;
        keel_call_options co = {
            .timeout_ms = POLL_TIMEOUT_MS, .namespace = w->namespace, .cancel = a->cancel};
        workflow_task *t = NULL;
        keel_error err;
        int rc = keel_transport_call(
            w->transport, WF("PollWorkflowTaskQueue"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor,
            (ProtobufCMessage **)&t, &co, &err);
        if (rc == KEEL_ECANCELLED)
            break;
        if (rc == KEEL_ETIMEOUT)
            continue;
        if (rc != KEEL_OK) {
            log_line("warn", "workflow poll failed", err.message);
            sleep_ms(POLL_ERROR_BACKOFF_MS);
            continue;
        }
        if (t->task_token.len > 0)
            process(w, t);
        FREE_PB(t);
    }
    return NULL;
}

/* ---- starting and stopping ---- */

int keel_worker_start(keel_worker *w, keel_error *err)
{
    if (w->running)
        return KEEL_OK;
    size_t n = (size_t)w->n_wf_pollers + (size_t)w->n_activity_threads;
    w->threads = calloc(n, sizeof *w->threads);
    w->cancels = calloc(n, sizeof *w->cancels);
    w->wf_args = calloc(n, sizeof *w->wf_args);
    w->activity_args = calloc(n, sizeof *w->activity_args);
    if (!w->threads || !w->cancels || !w->wf_args || !w->activity_args)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory starting the worker");
    atomic_store(&w->stopping, false);
    w->running = true;
    for (size_t i = 0; i < n; i++) {
        if ((w->cancels[i] = keel_call_cancel_new()) == NULL) {
            keel_worker_stop(w);
            return keel_error_set(err, KEEL_ENOMEM, "out of memory starting the worker");
        }
        int rc;
        if (i < (size_t)w->n_wf_pollers) {
            w->wf_args[i] = (wf_thread_arg){w, w->cancels[i]};
            rc = pthread_create(&w->threads[i], NULL, workflow_thread, &w->wf_args[i]);
        } else {
            w->activity_args[i] = (keel_activity_thread_arg){&w->pool, w->cancels[i]};
            rc = pthread_create(&w->threads[i], NULL, keel_activity_thread, &w->activity_args[i]);
        }
        if (rc != 0) {
            keel_call_cancel_free(w->cancels[i]);
            w->cancels[i] = NULL;
            keel_worker_stop(w);
            return keel_error_set(err, KEEL_EIO, "cannot start worker thread %zu: %s", i + 1,
                                  strerror(rc));
        }
        w->n_threads = i + 1;
    }
    return KEEL_OK;
}

void keel_worker_stop(keel_worker *w)
{
    if (w == NULL || !w->running)
        return;
    /* No new polls; polls in flight are cancelled; tasks being worked on finish first. */
    atomic_store(&w->stopping, true);
    for (size_t i = 0; i < w->n_threads; i++)
        keel_call_cancel_trigger(w->cancels[i]);
    for (size_t i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    for (size_t i = 0; i < w->n_threads; i++)
        keel_call_cancel_free(w->cancels[i]);
    free(w->threads);
    free(w->cancels);
    free(w->wf_args);
    free(w->activity_args);
    w->threads = NULL;
    w->cancels = NULL;
    w->wf_args = NULL;
    w->activity_args = NULL;
    w->n_threads = 0;
    w->running = false;
}

void keel_worker_free(keel_worker *w)
{
    if (w == NULL)
        return;
    keel_worker_stop(w);
    /* Left only by a start that failed before any thread ran (stop frees and clears them). */
    free(w->threads);
    free(w->cancels);
    free(w->wf_args);
    free(w->activity_args);
    free(w->task_queue);
    free(w->identity);
    free(w);
}

void keel_worker_get_stats(keel_worker *w, keel_worker_stats *out)
{
    out->workflow_tasks_completed = atomic_load(&w->wf_completed);
    out->workflow_tasks_failed = atomic_load(&w->wf_failed);
    out->activities_completed = atomic_load(&w->pool.completed);
    out->activities_failed = atomic_load(&w->pool.failed);
}
