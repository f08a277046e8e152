/* activity - run activity tasks: poll, call the function, report completion or failure. */
#include "util/condwait.h"
#include "worker/activity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "converter/failure.h"
#include "converter/payload.h"
#include "log/log.h"
#include "proto/proto.h"
#include "worker/heartbeat.h"
#include "worker/tracing.h"
#include "util/strbuf.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* The server holds an empty poll for 60 s; wait a little longer. */
#define POLL_TIMEOUT_MS 70000
/* After a failed poll, wait before the next one so that an outage is not a hot loop. */
#define POLL_ERROR_BACKOFF_MS 1000

typedef Temporal__Api__Workflowservice__V1__PollActivityTaskQueueResponse activity_task;

/* Heartbeats go out at most once per this fraction of the heartbeat timeout (the SDKs' rule),
 * and at most every DEFAULT_HEARTBEAT_GAP_MS when the activity has no heartbeat timeout. */
#define HEARTBEAT_GAP_PERCENT    80
#define DEFAULT_HEARTBEAT_GAP_MS 30000

struct keel_activity_ctx {
    keel_activity_pool *pool;
    const activity_task *task;
    int64_t last_heartbeat_ms; /* 0: none sent yet */
    int64_t heartbeat_gap_ms;
    bool cancel_requested;
    bool worker_stopping; /* the shutdown grace ran out while this ran */
    bool async;           /* someone else completes it (keel_activity_complete_async) */
    char fail_type[128];
    char fail_message[KEEL_ERROR_MESSAGE_MAX];
    char *fail_details; /* JSON, or NULL */
    int64_t next_retry_delay_ms;
    bool non_retryable;
    bool failed;
    atomic_bool *local_cancel; /* a local activity's: set when its attempt timed out */
};

/* Failure texts are proto3 strings, which the server refuses unless they are UTF-8: replace each
 * byte that does not start a valid sequence (a cut character, a peer's Latin-1) by '?'. */
static void scrub_utf8(char *text)
{
    unsigned char *s = (unsigned char *)text;
    while (*s) {
        size_t n = keel_utf8_sequence(s);
        if (n == 0)
            *s++ = '?';
        else
            s += n;
    }
}

int keel_activity_fail_with(keel_activity_ctx *ctx, const keel_activity_failure *f)
{
    static const keel_activity_failure none = {.message = "keel_activity_fail_with without a "
                                                          "failure"};
    f = f ? f : &none;
    snprintf(ctx->fail_type, sizeof ctx->fail_type, "%s", f->type ? f->type : "");
    snprintf(ctx->fail_message, sizeof ctx->fail_message, "%s", f->message ? f->message : "");
    scrub_utf8(ctx->fail_type);
    scrub_utf8(ctx->fail_message);
    ctx->non_retryable = f->non_retryable;
    free(ctx->fail_details);
    ctx->fail_details = f->details_json ? strdup(f->details_json) : NULL;
    if (f->details_json && ctx->fail_details == NULL)
        /* Out of memory: the details cannot travel, and must not vanish silently. */
        snprintf(ctx->fail_type, sizeof ctx->fail_type, "%s", "OutOfMemory");
    ctx->next_retry_delay_ms = f->next_retry_delay_ms > 0 ? f->next_retry_delay_ms : 0;
    ctx->failed = true;
    return KEEL_EINVAL;
}

int keel_activity_fail(keel_activity_ctx *ctx, const char *type, const char *message,
                       bool non_retryable)
{
    keel_activity_failure f = {.type = type, .message = message, .non_retryable = non_retryable};
    return keel_activity_fail_with(ctx, &f);
}

int keel_activity_complete_async(keel_activity_ctx *ctx, uint8_t **token, size_t *len)
{
    const ProtobufCBinaryData *t = &ctx->task->task_token;
    *token = malloc(t->len ? t->len : 1);
    if (*token == NULL)
        return KEEL_ENOMEM;
    memcpy(*token, t->data, t->len);
    *len = t->len;
    ctx->async = true;
    return KEEL_OK;
}

bool keel_activity_cancel_requested(const keel_activity_ctx *ctx)
{
    if (ctx->local_cancel && atomic_load(ctx->local_cancel))
        return true;
    return ctx->cancel_requested || ctx->worker_stopping;
}

const char *keel_activity_failure_type(const keel_activity_ctx *ctx)
{
    return ctx->failed ? ctx->fail_type : NULL;
}

int32_t keel_activity_attempt(const keel_activity_ctx *ctx)
{
    return ctx->task->attempt > 0 ? ctx->task->attempt : 1;
}

const char *keel_activity_id(const keel_activity_ctx *ctx)
{
    return ctx->task->activity_id ? ctx->task->activity_id : "";
}

const char *keel_activity_type_name(const keel_activity_ctx *ctx)
{
    return ctx->task->activity_type && ctx->task->activity_type->name
               ? ctx->task->activity_type->name
               : "";
}

const char *keel_activity_workflow_id(const keel_activity_ctx *ctx)
{
    return ctx->task->workflow_execution && ctx->task->workflow_execution->workflow_id
               ? ctx->task->workflow_execution->workflow_id
               : "";
}

const char *keel_activity_run_id(const keel_activity_ctx *ctx)
{
    return ctx->task->workflow_execution && ctx->task->workflow_execution->run_id
               ? ctx->task->workflow_execution->run_id
               : "";
}

const char *keel_activity_workflow_type(const keel_activity_ctx *ctx)
{
    return ctx->task->workflow_type && ctx->task->workflow_type->name
               ? ctx->task->workflow_type->name
               : "";
}

const char *keel_activity_namespace(const keel_activity_ctx *ctx)
{
    return ctx->task->workflow_namespace ? ctx->task->workflow_namespace : "";
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int keel_activity_heartbeat(keel_activity_ctx *ctx, const char *details_json)
{
    keel_activity_pool *p = ctx->pool;
    if (p == NULL) /* an offline or local context: nobody to tell */
        return keel_activity_cancel_requested(ctx) ? KEEL_ECANCELLED : KEEL_OK;
    if (atomic_load(&p->abandon)) {
        ctx->worker_stopping = true; /* the worker is going: hand the attempt back */
        return KEEL_ECANCELLED;
    }
    /* Throttled: between sends, answer from what the last heartbeat learned. */
    int64_t now = mono_ms();
    if (ctx->last_heartbeat_ms && now - ctx->last_heartbeat_ms < ctx->heartbeat_gap_ms)
        return ctx->cancel_requested ? KEEL_ECANCELLED : KEEL_OK;
    ctx->last_heartbeat_ms = now;
    Temporal__Api__Workflowservice__V1__RecordActivityTaskHeartbeatRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RECORD_ACTIVITY_TASK_HEARTBEAT_REQUEST__INIT;
    req.task_token = ctx->task->task_token;
    req.identity = (char *)p->identity;
    req.namespace_ = (char *)p->namespace;
    keel_error err;
    if (keel_payloads_new_json(details_json, "heartbeat details", &req.details, &err) != KEEL_OK)
        return err.code;
    Temporal__Api__Workflowservice__V1__RecordActivityTaskHeartbeatResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = p->namespace};
    int rc = keel_transport_call(
        p->transport, WF("RecordActivityTaskHeartbeat"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__record_activity_task_heartbeat_response__descriptor,
        (ProtobufCMessage **)&resp, &co, &err);
    if (req.details)
        FREE_PB(req.details);
    if (rc == KEEL_ENOTFOUND) {
        /* The server no longer knows the task (timed out, workflow closed): stop working. */
        ctx->cancel_requested = true;
        return KEEL_ECANCELLED;
    }
    if (rc != KEEL_OK)
        return rc;
    if (resp->cancel_requested)
        ctx->cancel_requested = true;
    FREE_PB(resp);
    return ctx->cancel_requested ? KEEL_ECANCELLED : KEEL_OK;
}

static void log_line(keel_log_level level, const char *msg, const char *error)
{
    keel_log(level, "activity", msg, "error", error, NULL);
}

static const keel_activity_type *find_type(const keel_activity_pool *p, const char *name)
{
    for (size_t i = 0; i < p->n_types; i++)
        if (strcmp(p->types[i].name, name) == 0)
            return &p->types[i];
    return NULL;
}

/* Report through RPC `method` and log when the server refuses. */
static void report(keel_activity_pool *p, const char *method, ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_type)
{
    keel_call_options co = {.retry = true, .namespace = p->namespace};
    ProtobufCMessage *resp = NULL;
    keel_error err;
    if (keel_transport_call(p->transport, WF(method), req, resp_type, &resp, &co, &err) != KEEL_OK)
        /* NOT_FOUND: the activity timed out or the run closed meanwhile; nothing to undo. */
        log_line(err.code == KEEL_ENOTFOUND ? KEEL_LOG_INFO : KEEL_LOG_WARN,
                 "could not report activity", err.message);
    if (resp)
        FREE_PB(resp);
}

/* Report success; a result that is not JSON cannot be stored: KEEL_EINVAL, nothing sent. */
static int report_completed(keel_activity_pool *p, const activity_task *t, const char *result,
                            keel_error *err)
{
    Temporal__Api__Workflowservice__V1__RespondActivityTaskCompletedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_COMPLETED_REQUEST__INIT;
    req.task_token = t->task_token;
    req.identity = (char *)p->identity;
    req.namespace_ = (char *)p->namespace;
    req.deployment_options = p->deployment_options;
    int rc = keel_payloads_new_json(result, "activity result", &req.result, err);
    if (rc != KEEL_OK)
        return rc;
    report(
        p, "RespondActivityTaskCompleted", (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__respond_activity_task_completed_response__descriptor);
    if (req.result)
        FREE_PB(req.result);
    atomic_fetch_add(&p->completed, 1);
    return KEEL_OK;
}

static void report_failed_with(keel_activity_pool *p, const activity_task *t,
                               const keel_activity_failure *f)
{
    Temporal__Api__Workflowservice__V1__RespondActivityTaskFailedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_FAILED_REQUEST__INIT;
    req.task_token = t->task_token;
    req.identity = (char *)p->identity;
    req.namespace_ = (char *)p->namespace;
    req.deployment_options = p->deployment_options;
    keel_error err;
    req.failure = keel_failure_new_application_with(f->type, f->message, f->non_retryable,
                                                    f->details_json, f->next_retry_delay_ms, &err);
    if (req.failure == NULL) {
        log_line(KEEL_LOG_ERROR, "could not build an activity failure", err.message);
        return;
    }
    report(p, "RespondActivityTaskFailed", (ProtobufCMessage *)&req,
           &temporal__api__workflowservice__v1__respond_activity_task_failed_response__descriptor);
    FREE_PB(req.failure);
    atomic_fetch_add(&p->failed, 1);
}

static void report_failed(keel_activity_pool *p, const activity_task *t, const char *type,
                          const char *message, bool non_retryable)
{
    keel_activity_failure f = {.type = type, .message = message, .non_retryable = non_retryable};
    report_failed_with(p, t, &f);
}

/* The activity stopped because the workflow asked it to. */
static void report_canceled(keel_activity_pool *p, const activity_task *t)
{
    Temporal__Api__Workflowservice__V1__RespondActivityTaskCanceledRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_CANCELED_REQUEST__INIT;
    req.task_token = t->task_token;
    req.identity = (char *)p->identity;
    req.namespace_ = (char *)p->namespace;
    req.deployment_options = p->deployment_options;
    report(
        p, "RespondActivityTaskCanceled", (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__respond_activity_task_canceled_response__descriptor);
    atomic_fetch_add(&p->failed, 1);
}

static keel_wm_activity_outcome run_task(keel_activity_pool *p, const activity_task *t);

/* run_task() with the activity metrics around it. */
static void run_measured(keel_activity_pool *p, const activity_task *t)
{
    if (p->wm == NULL) {
        run_task(p, t);
        return;
    }
    const char *type = t->activity_type && t->activity_type->name ? t->activity_type->name : "";
    const char *wf_type = t->workflow_type && t->workflow_type->name ? t->workflow_type->name : "";
    keel_wm_activity_begin(p->wm, type, wf_type,
                           keel_proto_timestamp_ms(t->current_attempt_scheduled_time),
                           keel_proto_timestamp_ms(t->started_time));
    double began = keel_wm_now_s();
    keel_wm_activity_outcome outcome = run_task(p, t);
    keel_wm_activity_end(p->wm, type, wf_type, keel_wm_now_s() - began, outcome,
                         keel_proto_timestamp_ms(t->scheduled_time));
}

static keel_wm_activity_outcome run_task(keel_activity_pool *p, const activity_task *t)
{
    const char *name = t->activity_type && t->activity_type->name ? t->activity_type->name : "";
    const keel_activity_type *type = find_type(p, name);
    char msg[512];
    if (type == NULL) {
        snprintf(msg, sizeof msg,
                 "activity type '%s' is not registered on this worker (task queue %s)", name,
                 p->task_queue);
        report_failed(p, t, "ActivityTypeNotRegistered", msg, false);
        return KEEL_WM_ACTIVITY_FAILED;
    }
    char *input = NULL;
    keel_error err;
    if (keel_payloads_to_json(t->input, "activity input", &input, &err) != KEEL_OK) {
        report_failed(p, t, "BadActivityInput", err.message, true);
        return KEEL_WM_ACTIVITY_FAILED;
    }
    keel_activity_ctx ctx = {.pool = p, .task = t};
    int64_t timeout = keel_proto_duration_ms(t->heartbeat_timeout);
    ctx.heartbeat_gap_ms =
        timeout > 0 ? timeout * HEARTBEAT_GAP_PERCENT / 100 : DEFAULT_HEARTBEAT_GAP_MS;
    char *result = NULL;
    atomic_fetch_add(&p->busy, 1);
    keel_span_context saved;
    keel_span *span = keel_tracing_activity_begin(t, &saved);
    int rc = type->run(&ctx, input, &result, type->user_data);
    keel_log(KEEL_LOG_DEBUG, "activity", "activity ran", "activity_type", name, "activity_id",
             t->activity_id, "outcome", rc == KEEL_OK ? "ok" : keel_error_code_name(rc), NULL);
    keel_tracing_activity_end(span,
                              rc == KEEL_OK ? NULL
                              : ctx.failed  ? ctx.fail_message
                                            : keel_error_code_name(rc),
                              &saved);
    atomic_fetch_sub(&p->busy, 1);
    free(input);
    keel_wm_activity_outcome outcome = KEEL_WM_ACTIVITY_FAILED;
    if (rc == KEEL_OK && ctx.async) {
        /* Completed elsewhere, by task token. */
        outcome = KEEL_WM_ACTIVITY_ASYNC;
    } else if (rc == KEEL_OK) {
        if (report_completed(p, t, result, &err) != KEEL_OK)
            report_failed(p, t, "BadActivityResult", err.message, true);
        else
            outcome = KEEL_WM_ACTIVITY_OK;
    } else if (ctx.cancel_requested && !ctx.failed) {
        report_canceled(p, t);
        outcome = KEEL_WM_ACTIVITY_CANCELED;
    } else if (ctx.failed) {
        keel_activity_failure f = {.type = ctx.fail_type,
                                   .message = ctx.fail_message,
                                   .non_retryable = ctx.non_retryable,
                                   .details_json = ctx.fail_details,
                                   .next_retry_delay_ms = ctx.next_retry_delay_ms};
        report_failed_with(p, t, &f);
    } else if (ctx.worker_stopping) {
        report_failed(p, t, "WorkerShutdown",
                      "the worker shut down while the activity ran; another attempt follows",
                      false);
    } else {
        snprintf(msg, sizeof msg,
                 "activity %s failed with %s and no message (use keel_activity_fail)", name,
                 keel_error_code_name(rc));
        report_failed(p, t, keel_error_code_name(rc), msg, false);
    }
    free(result);
    free(ctx.fail_details);
    return outcome;
}

int keel_activity_pool_init(keel_activity_pool *p, int n_threads, int pollers_min,
                            int pollers_initial, int pollers_max)
{
    p->cap_eager = n_threads > 0 ? (size_t)n_threads : 1;
    p->eager = calloc(p->cap_eager, sizeof *p->eager);
    p->replies = calloc(p->cap_eager, sizeof *p->replies);
    p->polls = calloc(p->cap_eager, sizeof *p->polls);
    if (p->eager == NULL || p->replies == NULL || p->polls == NULL)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < p->cap_eager; i++)
        p->polls[i].pool = p;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->locks_ready = true;
    keel_poll_scaler_init(&p->scaler, pollers_min, pollers_initial, pollers_max);
    atomic_init(&p->eager_count, 0);
    atomic_init(&p->polls_count, 0);
    return KEEL_OK;
}

void keel_activity_pool_destroy(keel_activity_pool *p)
{
    for (size_t i = 0; i < p->n_eager; i++)
        FREE_PB(p->eager[i]);
    free(p->eager);
    p->eager = NULL;
    p->n_eager = 0;
    for (size_t i = 0; p->replies && i < p->n_replies; i++)
        keel_transport_reply_free(p->replies[i]);
    free(p->replies);
    p->replies = NULL;
    p->n_replies = 0;
    free(p->polls);
    p->polls = NULL;
    if (p->locks_ready) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        p->locks_ready = false;
    }
}

void keel_activity_pool_wake(keel_activity_pool *p)
{
    if (!p->locks_ready)
        return;
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void pump_polls(keel_activity_pool *p);

bool keel_activity_try_reserve(keel_activity_pool *p)
{
    if (!p->locks_ready)
        return false;
    pthread_mutex_lock(&p->lock);
    bool ok = !atomic_load(p->stopping) && p->idle - p->reserved > 0;
    if (ok)
        p->reserved++;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

void keel_activity_release(keel_activity_pool *p, int n)
{
    if (n <= 0)
        return;
    pthread_mutex_lock(&p->lock);
    p->reserved -= n;
    pump_polls(p); /* the threads given back may poll */
    if (atomic_load(p->stopping))
        pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void keel_activity_dispatch(keel_activity_pool *p, activity_task *task)
{
    pthread_mutex_lock(&p->lock);
    /* Room is certain: every queued task holds a reservation, and reservations never exceed
     * the threads. */
    if (p->n_eager < p->cap_eager) {
        p->eager[p->n_eager++] = task;
        task = NULL;
    }
    atomic_fetch_add(&p->eager_count, 1);
    /* One task, one thread: every waiter on p->cond is an activity thread in the same loop,
     * and any of them takes it. A broadcast woke all the idle ones for each eager activity. */
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (task != NULL) {
        log_line(KEEL_LOG_ERROR, "no room for an eager activity; it times out and is retried", "");
        FREE_PB(task);
        keel_activity_release(p, 1);
    }
}

static void poll_done(void *userdata, int rc, keel_transport_reply *reply, const keel_error *err);

/* Under lock: start polls (on the transport's network thread, none on a thread of its
 * own) while the poll target allows and a thread is free for what each brings: the poll reserves
 * it. Nothing starts while stopping or during the backoff after a failed poll. */
static void pump_polls(keel_activity_pool *p)
{
    if (atomic_load(p->stopping))
        return;
    if (p->backoff_until_ms > 0) {
        if (mono_ms() < p->backoff_until_ms)
            return;
        p->backoff_until_ms = 0;
    }
    while (p->polling < p->scaler.target && p->idle - p->reserved > 0) {
        keel_activity_poll *slot = NULL;
        for (size_t i = 0; slot == NULL && i < p->cap_eager; i++)
            if (!p->polls[i].busy && p->polls[i].cancel)
                slot = &p->polls[i];
        if (slot == NULL)
            return;
        Temporal__Api__Taskqueue__V1__TaskQueue tq = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
        tq.name = (char *)p->task_queue;
        tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
        Temporal__Api__Workflowservice__V1__PollActivityTaskQueueRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__POLL_ACTIVITY_TASK_QUEUE_REQUEST__INIT;
        req.namespace_ = (char *)p->namespace;
        req.task_queue = &tq;
        req.identity = (char *)p->identity;
        req.worker_instance_key = (char *)(p->instance_key ? p->instance_key : "");
        req.deployment_options = p->deployment_options;
        keel_call_options co = {
            .timeout_ms = POLL_TIMEOUT_MS, .namespace = p->namespace, .cancel = slot->cancel};
        keel_error err;
        atomic_fetch_add(&p->polls_count, 1);
        if (keel_transport_call_async_reply(p->transport, WF("PollActivityTaskQueue"),
                                            (ProtobufCMessage *)&req, &co, poll_done, slot,
                                            &err) != KEEL_OK) {
            if (err.code != KEEL_ECANCELLED) {
                log_line(KEEL_LOG_WARN, "activity poll failed", err.message);
                p->backoff_until_ms = mono_ms() + POLL_ERROR_BACKOFF_MS;
                pthread_cond_broadcast(&p->cond);
            }
            return;
        }
        slot->busy = true;
        p->polling++;
        p->reserved++;
    }
}

/* A poll is over (on the transport's network thread: short, no I/O): its answer goes undecoded to
 * the thread it reserved; a failed poll gives the reservation back, and an error holds new polls
 * back for POLL_ERROR_BACKOFF_MS (an idle thread starts them after it). */
static void poll_done(void *userdata, int rc, keel_transport_reply *reply, const keel_error *err)
{
    keel_activity_poll *slot = userdata;
    keel_activity_pool *p = slot->pool;
    bool failed = rc != KEEL_OK && rc != KEEL_ECANCELLED && rc != KEEL_ETIMEOUT;
    if (failed)
        log_line(KEEL_LOG_WARN, "activity poll failed", err->message);
    if (rc == KEEL_ETIMEOUT)
        keel_wm_activity_poll(p->wm, false);
    pthread_mutex_lock(&p->lock);
    slot->busy = false;
    p->polling--;
    if (rc == KEEL_OK && p->n_replies < p->cap_eager) {
        p->replies[p->n_replies++] = reply; /* the reservation goes with it */
        reply = NULL;
        pthread_cond_signal(&p->cond);
    } else {
        p->reserved--;
        if (failed) {
            keel_poll_scaler_error(&p->scaler, rc);
            p->backoff_until_ms = mono_ms() + POLL_ERROR_BACKOFF_MS;
        }
        pump_polls(p);
        /* Threads waiting for the reservations to go at shutdown, or one to time the backoff;
         * otherwise nobody waits for a reservation given back. */
        if (atomic_load(p->stopping))
            pthread_cond_broadcast(&p->cond);
        else if (failed)
            pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    if (reply)
        keel_transport_reply_free(reply); /* cannot happen: each reply holds a reservation */
}

/* Wait on the pool's condition (under lock), until a backoff after a failed poll is over when one
 * is on. */
static void wait_pool(keel_activity_pool *p)
{
    if (p->backoff_until_ms <= 0 || atomic_load(p->stopping)) {
        pthread_cond_wait(&p->cond, &p->lock);
        return;
    }
    keel_cond_wait_ms(&p->cond, &p->lock, p->backoff_until_ms - mono_ms());
}

void *keel_activity_thread(void *arg)
{
    keel_activity_thread_arg *a = arg;
    keel_activity_pool *p = a->pool;
    pthread_mutex_lock(&p->lock);
    p->polls[a->index].cancel = a->cancel; /* the polls' handles: one per thread */
    p->idle++;
    pthread_cond_broadcast(&p->cond);
    for (;;) {
        if (p->n_eager > 0 || p->n_replies > 0) {
            /* An eager task or a poll's answer: a reservation kept this thread (or another)
             * free for it. */
            bool eager = p->n_eager > 0;
            activity_task *task = NULL;
            keel_transport_reply *reply = NULL;
            if (eager) {
                task = p->eager[0];
                memmove(p->eager, p->eager + 1, (p->n_eager - 1) * sizeof *p->eager);
                p->n_eager--;
            } else {
                reply = p->replies[0];
                memmove(p->replies, p->replies + 1, (p->n_replies - 1) * sizeof *p->replies);
                p->n_replies--;
            }
            p->reserved--;
            p->idle--;
            pthread_mutex_unlock(&p->lock);
            bool got = eager;
            if (!eager) {
                keel_error err;
                int rc = keel_transport_reply_decode(
                    reply,
                    &temporal__api__workflowservice__v1__poll_activity_task_queue_response__descriptor,
                    (ProtobufCMessage **)&task, NULL, &err);
                got = rc == KEEL_OK && task->task_token.len > 0;
                if (rc != KEEL_OK)
                    log_line(KEEL_LOG_WARN, "activity poll failed", err.message);
                else
                    keel_wm_activity_poll(p->wm, got);
                pthread_mutex_lock(&p->lock);
                if (rc == KEEL_OK) {
                    const Temporal__Api__Taskqueue__V1__PollerScalingDecision *d =
                        task->poller_scaling_decision;
                    keel_poll_scaler_result(&p->scaler, got, d != NULL,
                                            d ? d->poll_request_delta_suggestion : 0, mono_ms());
                } else {
                    keel_poll_scaler_error(&p->scaler, rc);
                    p->backoff_until_ms = mono_ms() + POLL_ERROR_BACKOFF_MS;
                }
                if (got) /* another poll while this one runs */
                    pump_polls(p);
                pthread_mutex_unlock(&p->lock);
            }
            if (got) {
                atomic_store(&p->poll_ms, keel_heartbeat_clock_ms());
                run_measured(p, task);
            }
            if (task)
                FREE_PB(task);
            pthread_mutex_lock(&p->lock);
            p->idle++;
            pump_polls(p); /* this thread starts the polls its being free allows: no wake-ups */
            continue;
        }
        if (atomic_load(p->stopping)) {
            if (p->reserved <= 0)
                break; /* nothing more can come to this pool */
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        pump_polls(p);
        wait_pool(p);
    }
    p->idle--;
    p->polls[a->index].cancel = NULL;
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- offline contexts (tests, fuzz targets) ---- */

keel_activity_ctx *keel_activity_offline_new(const char *workflow_type, const char *activity_id)
{
    keel_activity_ctx *ctx = calloc(1, sizeof *ctx);
    activity_task *t = malloc(sizeof *t);
    Temporal__Api__Common__V1__WorkflowType *wt = malloc(sizeof *wt);
    char *name = strdup(workflow_type ? workflow_type : "");
    char *id = strdup(activity_id ? activity_id : "");
    if (ctx == NULL || t == NULL || wt == NULL || name == NULL || id == NULL) {
        free(ctx);
        free(t);
        free(wt);
        free(name);
        free(id);
        return NULL;
    }
    temporal__api__workflowservice__v1__poll_activity_task_queue_response__init(t);
    temporal__api__common__v1__workflow_type__init(wt);
    wt->name = name;
    t->workflow_type = wt;
    t->activity_id = id;
    ctx->task = t;
    return ctx;
}

void keel_activity_offline_free(keel_activity_ctx *ctx)
{
    if (ctx == NULL)
        return;
    FREE_PB(ctx->task);
    free(ctx->fail_details);
    free(ctx);
}

const char *keel_activity_offline_failure(const keel_activity_ctx *ctx, bool *non_retryable,
                                          int64_t *next_retry_delay_ms)
{
    if (non_retryable)
        *non_retryable = ctx->non_retryable;
    if (next_retry_delay_ms)
        *next_retry_delay_ms = ctx->next_retry_delay_ms;
    return ctx->failed ? ctx->fail_type : NULL;
}

keel_activity_ctx *keel_activity_local_new(const char *namespace, const char *workflow_type,
                                           const char *workflow_id, const char *run_id,
                                           const char *activity_type, const char *activity_id,
                                           int32_t attempt, atomic_bool *cancel)
{
    keel_activity_ctx *ctx = keel_activity_offline_new(workflow_type, activity_id);
    if (ctx == NULL)
        return NULL;
    activity_task *t = (activity_task *)ctx->task;
    t->attempt = attempt;
    ctx->local_cancel = cancel;
    Temporal__Api__Common__V1__WorkflowExecution *x = malloc(sizeof *x);
    Temporal__Api__Common__V1__ActivityType *at = malloc(sizeof *at);
    if (x)
        temporal__api__common__v1__workflow_execution__init(x);
    if (at)
        temporal__api__common__v1__activity_type__init(at);
    t->workflow_execution = x;
    t->activity_type = at;
    if (x == NULL || at == NULL || (x->workflow_id = strdup(workflow_id)) == NULL ||
        (x->run_id = strdup(run_id)) == NULL || (at->name = strdup(activity_type)) == NULL ||
        (t->workflow_namespace = strdup(namespace)) == NULL) {
        keel_activity_offline_free(ctx);
        return NULL;
    }
    return ctx;
}

const char *keel_activity_local_failure(const keel_activity_ctx *ctx, const char **message,
                                        bool *non_retryable, int64_t *next_retry_delay_ms)
{
    *message = ctx->fail_message;
    return keel_activity_offline_failure(ctx, non_retryable, next_retry_delay_ms);
}
