/*
 * tracing - the worker's spans, shaped as the official SDKs' OpenTelemetry interceptors make
 * them (docs/observability.md, "Traces"), and the trace context in Temporal headers.
 *
 * Workflow spans come from what is new in a workflow task, never from replay, with ids derived
 * from the run id and the event or activity id, so that a retried task or another worker that
 * rebuilds the run makes the same spans:
 *   RunWorkflow:<type>         the run, from its start event to the command that closes it;
 *                              child of the start event's _tracer-data (a client's span)
 *   StartActivity:<type>       each ScheduleActivityTask; its context goes into the command's
 *                              header, so that RunActivity is its child
 *   StartChildWorkflow:<type>  each StartChildWorkflowExecution, into its header likewise
 *   ContinueAsNew:<type>       continue-as-new, into the new run's header likewise
 *   HandleSignal:<name>        each signal the task delivers; child of the signal's header or
 *                              of the run
 *   ValidateUpdate:<name>      an update the task accepted or rejected, and
 *   HandleUpdate:<name>        one it answered; children of the update's header or of the run
 *   HandleQuery:<name>         a query that carries a trace header
 * Activities: RunActivity:<type>, child of the task's header, current while the activity runs.
 * All of it is a no-op while tracing is off.
 */
#ifndef KEEL_WORKER_TRACING_H
#define KEEL_WORKER_TRACING_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/trace.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"
#include "worker/engine.h"

/* Before a workflow task's answer is sent: spans for what is new in it, and the trace context
 * in the headers of the commands that start activities, children and new runs. */
void keel_tracing_workflow_task(
    keel_engine *e, const Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse *t);

/* When a query task began (unix ns; 0 while tracing is off), for keel_tracing_query(). */
int64_t keel_tracing_query_begin(void);

/* A query task: a HandleQuery span from started_ns when the query carries a trace header. ok
 * says whether it was answered. */
void keel_tracing_query(const Temporal__Api__Query__V1__WorkflowQuery *q, const char *workflow_id,
                        const char *run_id, int64_t started_ns, bool ok, const char *error);

/* An activity task starts: its RunActivity span, made this thread's current span (NULL when
 * tracing is off). *saved receives what was current, for keel_tracing_activity_end(). */
keel_span *keel_tracing_activity_begin(
    const Temporal__Api__Workflowservice__V1__PollActivityTaskQueueResponse *t,
    keel_span_context *saved);

/* The activity ended: failure NULL for success, else the failure's message. */
void keel_tracing_activity_end(keel_span *s, const char *failure, const keel_span_context *saved);

#endif
