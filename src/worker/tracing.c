/* tracing - the worker's spans and the trace context in Temporal headers (see tracing.h). */
#include "worker/tracing.h"

#include <stdio.h>
#include <string.h>

#include "temporal/api/update/v1/message.pb-c.h"
#include "trace/trace.h"

/* The attribute keys of the TypeScript SDK's interceptor (@temporalio/interceptors-opentelemetry),
 * the client keel's tests trace from. */
#define ATTR_WORKFLOW_ID "temporalWorkflowId"
#define ATTR_RUN_ID      "run_id"
#define ATTR_ACTIVITY_ID "temporalActivityId"

#define NS_PER_MS 1000000LL

static const char *txt(const char *s)
{
    return s ? s : "";
}

static void span_name(char *out, size_t n, const char *what, const char *name)
{
    snprintf(out, n, "%s:%s", what, txt(name));
}

/* A span whose id is derived from the run and what it is for (a workflow span). */
static keel_span *derived_span(const char *name, keel_span_kind kind,
                               const keel_span_context *parent, const char *run_id,
                               const char *what, const char *id, int64_t start_ns)
{
    uint8_t sid[8];
    const char *parts[] = {run_id, what, id};
    keel_trace_derive_id(sid, sizeof sid, parts, 3);
    keel_span_options o = {
        .kind = kind, .parent = parent, .root = true, .span_id = sid, .start_ns = start_ns};
    return keel_span_start(name, &o);
}

static void workflow_attrs(keel_span *s, const char *workflow_id, const char *run_id)
{
    keel_span_set_str(s, ATTR_WORKFLOW_ID, workflow_id);
    keel_span_set_str(s, ATTR_RUN_ID, run_id);
}

/* A child-starting command's span, its context written into the command's header. */
static void start_span(const char *what, const char *type, const char *id,
                       Temporal__Api__Common__V1__Header **header, const keel_span_context *run,
                       const char *workflow_id, const char *run_id)
{
    char name[300];
    span_name(name, sizeof name, what, type);
    keel_span *s = derived_span(name, KEEL_SPAN_CLIENT, run, run_id, what, id, 0);
    workflow_attrs(s, workflow_id, run_id);
    if (strcmp(what, "StartActivity") == 0)
        keel_span_set_str(s, ATTR_ACTIVITY_ID, id);
    keel_span_context c = keel_span_get_context(s);
    if (keel_trace_to_header(header, &c) != KEEL_OK)
        keel_span_add_event(s, "the trace context could not be written into the header", NULL,
                            NULL);
    keel_span_end(s);
}

/* The update request the task brought for update_id (unpacked; caller frees), or NULL. */
static Temporal__Api__Update__V1__Request *
update_request(const Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse *t,
               const char *update_id)
{
    for (size_t i = 0; i < t->n_messages; i++) {
        const Temporal__Api__Protocol__V1__Message *m = t->messages[i];
        if (m && m->body && m->protocol_instance_id &&
            strcmp(m->protocol_instance_id, update_id) == 0 && m->body->type_url &&
            strstr(m->body->type_url, "temporal.api.update.v1.Request"))
            return temporal__api__update__v1__request__unpack(NULL, m->body->value.len,
                                                              m->body->value.data);
    }
    return NULL;
}

/* ValidateUpdate:<name> for an acceptance or a rejection, HandleUpdate:<name> for a response,
 * when the request came with this task (a response to an update accepted in an earlier task has
 * no name here, and no span). */
static void update_spans(keel_engine *e,
                         const Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse *t,
                         const keel_span_context *run, const char *workflow_id, const char *run_id)
{
    keel_pb_message *const *msgs;
    size_t n = keel_engine_messages(e, &msgs);
    for (size_t i = 0; i < n; i++) {
        const char *id = txt(msgs[i]->id), *slash = strrchr(id, '/');
        if (slash == NULL)
            continue;
        bool handle = strcmp(slash, "/complete") == 0;
        if (!handle && strcmp(slash, "/accept") != 0 && strcmp(slash, "/reject") != 0)
            continue;
        char update_id[256];
        snprintf(update_id, sizeof update_id, "%.*s", (int)(slash - id), id);
        Temporal__Api__Update__V1__Request *r = update_request(t, update_id);
        if (r == NULL)
            continue;
        keel_span_context parent;
        bool has = r->input && keel_trace_from_header(r->input->header, &parent) == KEEL_OK;
        const char *what = handle ? "HandleUpdate" : "ValidateUpdate";
        char name[300];
        span_name(name, sizeof name, what, r->input ? r->input->name : "");
        keel_span *s =
            derived_span(name, KEEL_SPAN_SERVER, has ? &parent : run, run_id, what, update_id, 0);
        workflow_attrs(s, workflow_id, run_id);
        keel_span_set_str(s, "temporalUpdateId", update_id);
        if (strcmp(slash, "/reject") == 0)
            keel_span_set_status(s, KEEL_SPAN_ERROR, "the update was rejected");
        keel_span_end(s);
        temporal__api__update__v1__request__free_unpacked(r, NULL);
    }
}

void keel_tracing_workflow_task(
    keel_engine *e, const Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse *t)
{
    if (!keel_trace_enabled()) {
        keel_engine_trace_clear_signals(e);
        return;
    }
    keel_engine_trace info = keel_engine_trace_info(e);
    const char *workflow_id = t->workflow_execution ? txt(t->workflow_execution->workflow_id) : "";
    const char *run_id = t->workflow_execution ? txt(t->workflow_execution->run_id) : "";
    const char *type = keel_engine_type(e) ? keel_engine_type(e)->name : "";
    /* The run's span: made again for every task (the same ids each time), sent once, when a
     * command closes the run. Without a client's context the trace id comes from the first run
     * of the chain, so that every run of a retry or cron chain shares it. */
    uint8_t tid[16];
    const char *tparts[] = {"keel-trace", info.original_run_id};
    keel_trace_derive_id(tid, sizeof tid, tparts, 2);
    char name[300];
    span_name(name, sizeof name, "RunWorkflow", type);
    uint8_t sid[8];
    const char *sparts[] = {run_id, "RunWorkflow", ""};
    keel_trace_derive_id(sid, sizeof sid, sparts, 3);
    keel_span_options o = {.kind = KEEL_SPAN_SERVER,
                           .parent = info.parent.valid ? &info.parent : NULL,
                           .root = true,
                           .trace_id = tid,
                           .span_id = sid,
                           .start_ns = info.started_ms * NS_PER_MS};
    keel_span *run_span = keel_span_start(name, &o);
    keel_span_context run = keel_span_get_context(run_span);
    workflow_attrs(run_span, workflow_id, run_id);

    for (size_t i = 0; i < info.n_signals; i++) {
        const keel_engine_signal *sg = &info.signals[i];
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)sg->event_id);
        span_name(name, sizeof name, "HandleSignal", sg->name);
        keel_span *s = derived_span(name, KEEL_SPAN_SERVER, sg->parent.valid ? &sg->parent : &run,
                                    run_id, "HandleSignal", id, sg->time_ms * NS_PER_MS);
        workflow_attrs(s, workflow_id, run_id);
        keel_span_end(s);
    }
    keel_engine_trace_clear_signals(e);
    update_spans(e, t, &run, workflow_id, run_id);

    keel_pb_command *const *cmds;
    size_t n = keel_engine_commands(e, &cmds);
    bool closed = false;
    for (size_t i = 0; i < n; i++) {
        keel_pb_command *c = cmds[i];
        switch (c->command_type) {
        case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK: {
            Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a =
                c->schedule_activity_task_command_attributes;
            if (a)
                start_span("StartActivity", a->activity_type ? a->activity_type->name : "",
                           txt(a->activity_id), &a->header, &run, workflow_id, run_id);
            break;
        }
        case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION: {
            Temporal__Api__Command__V1__StartChildWorkflowExecutionCommandAttributes *a =
                c->start_child_workflow_execution_command_attributes;
            if (a)
                start_span("StartChildWorkflow", a->workflow_type ? a->workflow_type->name : "",
                           txt(a->workflow_id), &a->header, &run, workflow_id, run_id);
            break;
        }
        case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION: {
            Temporal__Api__Command__V1__ContinueAsNewWorkflowExecutionCommandAttributes *a =
                c->continue_as_new_workflow_execution_command_attributes;
            if (a)
                start_span("ContinueAsNew",
                           a->workflow_type && a->workflow_type->name ? a->workflow_type->name
                                                                      : type,
                           "", &a->header, &run, workflow_id, run_id);
            closed = true;
            break;
        }
        case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION:
            keel_span_set_status(run_span, KEEL_SPAN_OK, NULL);
            closed = true;
            break;
        case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION: {
            Temporal__Api__Command__V1__FailWorkflowExecutionCommandAttributes *a =
                c->fail_workflow_execution_command_attributes;
            keel_span_set_status(run_span, KEEL_SPAN_ERROR,
                                 a && a->failure ? txt(a->failure->message) : "failed");
            closed = true;
            break;
        }
        case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION:
            keel_span_add_event(run_span, "canceled", NULL, NULL);
            closed = true;
            break;
        default:
            break;
        }
    }
    if (closed)
        keel_span_end(run_span);
    else
        keel_trace_span_free(run_span); /* not over yet: its context served the children */
}

int64_t keel_tracing_query_begin(void)
{
    return keel_trace_enabled() ? keel_trace_now_ns() : 0;
}

void keel_tracing_query(const Temporal__Api__Query__V1__WorkflowQuery *q, const char *workflow_id,
                        const char *run_id, int64_t started_ns, bool ok, const char *error)
{
    if (!keel_trace_enabled() || q == NULL)
        return;
    keel_span_context parent;
    if (keel_trace_from_header(q->header, &parent) != KEEL_OK)
        return; /* the Web UI's stack-trace polls carry none: no trace of each */
    char name[300];
    span_name(name, sizeof name, "HandleQuery", q->query_type);
    keel_span *s = keel_span_start(
        name,
        &(keel_span_options){.kind = KEEL_SPAN_SERVER, .parent = &parent, .start_ns = started_ns});
    keel_span_set_str(s, ATTR_WORKFLOW_ID, workflow_id);
    keel_span_set_str(s, ATTR_RUN_ID, run_id);
    keel_span_set_status(s, ok ? KEEL_SPAN_OK : KEEL_SPAN_ERROR, error);
    keel_span_end(s);
}

keel_span *keel_tracing_activity_begin(
    const Temporal__Api__Workflowservice__V1__PollActivityTaskQueueResponse *t,
    keel_span_context *saved)
{
    memset(saved, 0, sizeof *saved);
    if (!keel_trace_enabled())
        return NULL;
    keel_span_context parent;
    bool has = keel_trace_from_header(t->header, &parent) == KEEL_OK;
    char name[300];
    span_name(name, sizeof name, "RunActivity", t->activity_type ? t->activity_type->name : "");
    keel_span *s = keel_span_start(name, &(keel_span_options){.kind = KEEL_SPAN_SERVER,
                                                              .parent = has ? &parent : NULL,
                                                              .root = true});
    keel_span_set_str(s, ATTR_ACTIVITY_ID, t->activity_id);
    if (t->workflow_execution) {
        keel_span_set_str(s, ATTR_WORKFLOW_ID, t->workflow_execution->workflow_id);
        keel_span_set_str(s, ATTR_RUN_ID, t->workflow_execution->run_id);
    }
    keel_span_set_int(s, "temporalActivityAttempt", t->attempt);
    keel_span_context c = keel_span_get_context(s);
    *saved = keel_trace_set_current(&c);
    return s;
}

void keel_tracing_activity_end(keel_span *s, const char *failure, const keel_span_context *saved)
{
    if (s == NULL)
        return;
    keel_span_set_status(s, failure ? KEEL_SPAN_ERROR : KEEL_SPAN_OK, failure);
    keel_trace_set_current(saved);
    keel_span_end(s);
}
