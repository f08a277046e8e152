/*
 * engine - one workflow run: history in, commands out. No I/O.
 *
 * Feed the run's history events in order. The engine groups them into workflow-task batches the
 * way the official SDKs do (a batch ends at a WorkflowTaskStarted that is followed by
 * WorkflowTaskCompleted, or that ends the history; a started attempt that failed or timed out is
 * folded into the next), and runs the workflow's callbacks once per batch:
 *
 * - for a batch whose task completed (replay), the commands the callbacks issue are matched one
 *   by one against the command events recorded after that WorkflowTaskCompleted; any difference
 *   is KEEL_ENONDETERMINISM with a message naming the command and the event;
 * - for the last batch (the task being worked on), the commands are the answer to send:
 *   keel_engine_commands() after keel_engine_finish().
 *
 * The same engine serves the worker (history from the server) and the offline replayer (history
 * from a file). It is not thread-safe: one thread drives one run at a time.
 */
#ifndef KEEL_ENGINE_H
#define KEEL_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/trace.h"
#include "keel/workflow.h"
#include "temporal/api/command/v1/message.pb-c.h"
#include "temporal/api/history/v1/message.pb-c.h"
#include "worker/protocol.h"

typedef Temporal__Api__History__V1__HistoryEvent keel_pb_event;
typedef Temporal__Api__Command__V1__Command keel_pb_command;

typedef struct keel_engine keel_engine;

/* A run of `type`. The strings are copied. On success the caller owns *out. */
int keel_engine_new(keel_engine **out, const keel_workflow_type *type, const char *workflow_id,
                    const char *run_id, const char *task_queue, keel_error *err);

/* Free the run: the state (through the type's dispose), pending commands, everything. */
void keel_engine_free(keel_engine *e);

/*
 * Feed events, in history order, continuing from the last one fed (ids must be consecutive).
 * Replayed batches run as their boundaries appear. The events are only read during the call.
 * Errors: KEEL_ENONDETERMINISM, KEEL_EINVAL (a callback reported a bug, or the history is
 * malformed), KEEL_EUNIMPLEMENTED (an event type keel cannot handle yet).
 */
int keel_engine_feed(keel_engine *e, keel_pb_event *const *events, size_t n, keel_error *err);

/*
 * The history fed so far is all there is. If it ends in a WorkflowTaskStarted, run that batch
 * (not replaying): its commands become keel_engine_commands(). Otherwise nothing runs and there
 * are no commands (an offline replay of a closed run ends here).
 */
int keel_engine_finish(keel_engine *e, keel_error *err);

/*
 * Bring the state up to date with the history fed so far without working on the current task:
 * the last replayed task runs (its command events are taken to be complete). For answering
 * queries, which read the state the recorded history implies.
 */
int keel_engine_settle(keel_engine *e, keel_error *err);

/*
 * The protocol messages (workflow updates) the current task brought, before keel_engine_finish():
 * finish delivers them after the task's events. The messages are only read during the call.
 * KEEL_EUNIMPLEMENTED for a protocol keel does not speak, KEEL_EINVAL for a malformed request.
 */
int keel_engine_take_messages(keel_engine *e, keel_pb_message *const *msgs, size_t n,
                              keel_error *err);

/* The answers to send with the commands: update acceptances, rejections and responses.
 * Borrowed like the commands. */
size_t keel_engine_messages(const keel_engine *e, keel_pb_message *const **out);

/* The commands of the current task, in the order the server must record them. Borrowed:
 * valid until the next feed, finish or free. */
size_t keel_engine_commands(const keel_engine *e, keel_pb_command *const **out);

/*
 * The current task's answer has been sent (or will not be): free what only the answer needed
 * (the commands' messages, the answer's arrays, the update answers) and the room of arrays that
 * are empty between tasks, so that a run waiting in the cache holds only its state. After it,
 * keel_engine_commands() and keel_engine_messages() are empty until the next finish.
 */
void keel_engine_compact(keel_engine *e);

/* Id of the last event fed; of the last WorkflowTaskStarted fed. */
int64_t keel_engine_last_event_id(const keel_engine *e);
int64_t keel_engine_last_started_id(const keel_engine *e);

/* When the run started (its WorkflowExecutionStarted event), ms since the epoch; 0: unknown. */
int64_t keel_engine_run_started_ms(const keel_engine *e);

/* Local activities (local_activity.h): the run's table; its workflow task timeout (0: unknown);
 * resolve one live (its marker command, then a round of the workflow over its result, whose
 * commands join the answer). */
struct keel_la_table *keel_engine_local_activities(keel_engine *e);
int64_t keel_engine_wft_timeout_ms(const keel_engine *e);
struct keel_la_outcome;
int keel_engine_local_resolve(keel_engine *e, const struct keel_la_outcome *o, keel_error *err);

/* Whether the workflow issued a command that closes the run. */
bool keel_engine_closing(const keel_engine *e);

/* The SDK name and version the history fed so far last recorded in a WorkflowTaskCompleted
 * event's sdk_metadata ("" when none). Borrowed, valid until the next feed or free. */
void keel_engine_sdk_recorded(const keel_engine *e, const char **name, const char **version);

/* The workflow's state (for queries and the stack trace view). Borrowed. */
const void *keel_engine_state(const keel_engine *e);
const keel_workflow_type *keel_engine_type(const keel_engine *e);

/* What the worker's tracing (worker/tracing.h) needs from the history, kept only while tracing
 * is on: the trace context of the start event's header, the run's first run id and start time,
 * and the signals of the task being worked on (not those replayed: a replayed batch clears
 * them; keel_engine_trace_clear_signals() after they are reported). */
typedef struct keel_engine_signal {
    char *name;
    int64_t event_id;
    int64_t time_ms;
    keel_span_context parent; /* from the signal's header; invalid when none */
} keel_engine_signal;

typedef struct keel_engine_trace {
    keel_span_context parent; /* from the start event's header; invalid when none */
    int64_t started_ms;
    const char *original_run_id;
    const keel_engine_signal *signals;
    size_t n_signals;
} keel_engine_trace;

keel_engine_trace keel_engine_trace_info(const keel_engine *e);
void keel_engine_trace_clear_signals(keel_engine *e);

#endif
