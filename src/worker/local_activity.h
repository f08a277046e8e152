/*
 * local_activity (internal) - local activities: the table of a run's local activities, the
 * "core_local_activity" marker (written and read), the retry rules, and the worker-side driver
 * that runs them in-process while the workflow task stays open (heartbeating that task at 80 % of
 * its timeout).
 *
 * The engine (engine.c) owns one table per run and calls the marker and retry helpers; the worker
 * (worker.c) calls keel_la_drive() after keel_engine_finish(). Marker format (the sdk-core
 * dialect, readable by the Web UI and core-based SDKs): details "data" = one json/plain payload
 * {"seq","attempt","activity_id","activity_type","complete_time","backoff",
 * "original_schedule_time"} with {seconds,nanos} objects (or null), details "result" = the result
 * payload (success only), and the marker's failure (failure only).
 */
#ifndef KEEL_WORKER_LOCAL_ACTIVITY_H
#define KEEL_WORKER_LOCAL_ACTIVITY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/activity.h"
#include "keel/error.h"
#include "keel/workflow.h"
#include "temporal/api/command/v1/message.pb-c.h"
#include "temporal/api/failure/v1/message.pb-c.h"
#include "temporal/api/history/v1/message.pb-c.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"
#include "transport/transport.h"

#define KEEL_LA_MARKER "core_local_activity"
/* Local activity attempts running at once in a worker process; more wait for a slot. */
#define KEEL_LA_SLOTS 64

typedef enum { KEEL_LA_WAITING, KEEL_LA_RUNNING, KEEL_LA_BACKOFF, KEEL_LA_DONE } keel_la_state;

/* One local activity of a run. */
typedef struct keel_la {
    uint32_t seq;      /* the workflow's number for it (its result's event.seq) */
    uint32_t wire_seq; /* the marker's seq and activity id: seq, and after a timer backoff a new
                          number from the activity counter, as the SDKs schedule a new one */
    char *type, *input, *summary;
    int64_t start_to_close_ms, schedule_to_close_ms, threshold_ms;
    keel_retry_policy retry; /* copied; non_retryable types owned below */
    char **non_retryable;
    uint32_t attempt;             /* of the next (or running) attempt, from 1 */
    int64_t original_schedule_ms; /* wall clock of the first scheduling (0: not yet known) */
    int64_t sched_wf_ms;          /* workflow time when (re)scheduled: complete_time's base */
    uint32_t timer_seq;           /* KEEL_LA_BACKOFF: the timer it waits on */
    uint32_t first_wft;           /* the live task index its first attempt ran in (0: none) */
    int64_t not_before_ms;        /* a local retry waits until this wall clock */
    int64_t run_began_ms;         /* wall clock of this scheduling's first attempt (0: none) */
    keel_la_state state;
    void *job; /* the running attempt (driver's) */
} keel_la;

typedef struct keel_la_table {
    keel_la *v;
    size_t n, cap;
    uint32_t wft;               /* live task index, bumped by each heartbeat */
    uint64_t nonfirst_attempts; /* this task's attempts of LAs first tried in an earlier one */
} keel_la_table;

void keel_la_table_free(keel_la_table *t);
/* Add a local activity (options copied). NULL when out of memory. */
keel_la *keel_la_add(keel_la_table *t, uint32_t seq, const char *type, const char *input_json,
                     const keel_local_activity_options *o, int64_t wf_now_ms);
/* By the marker's seq (wire_seq). */
keel_la *keel_la_find(keel_la_table *t, uint32_t wire_seq);
keel_la *keel_la_by_timer(keel_la_table *t, uint32_t timer_seq);
/* Whether any local activity is waiting, running or due to run in this task. */
bool keel_la_outstanding(const keel_la_table *t);

/* What an attempt series came to (live), or what a marker recorded (replay). */
typedef struct keel_la_outcome {
    uint32_t seq, attempt;
    char *activity_id, *activity_type;
    bool ok;
    char *result_json;                            /* ok: the result (NULL: none) */
    Temporal__Api__Failure__V1__Failure *failure; /* !ok: the raw failure */
    int64_t complete_ms;                          /* workflow time at completion (0: unknown) */
    int64_t backoff_ms;                           /* > 0: retry after a timer */
    int64_t original_schedule_ms;
} keel_la_outcome;

void keel_la_outcome_clear(keel_la_outcome *o);

/* Read a core_local_activity marker event. KEEL_EINVAL (naming the event) when its data is not
 * the marker's shape. */
int keel_la_marker_read(const Temporal__Api__History__V1__MarkerRecordedEventAttributes *a,
                        int64_t event_id, keel_la_outcome *out, keel_error *err);

/* The RecordMarker command for an outcome (summary: user_metadata, may be NULL, taken). */
int keel_la_marker_command(const keel_la_outcome *o, Temporal__Api__Command__V1__Command **out,
                           keel_error *err);

/* The marker's "data" JSON (for tests). New string. */
char *keel_la_marker_data_json(const keel_la_outcome *o);

/* The retry decision after a failed attempt (attempt = the one that failed): the delay before
 * the next one, or -1 when no retry (non-retryable, attempts used up, schedule-to-close would
 * pass). next_retry_delay_ms > 0 overrides the policy's interval. */
int64_t keel_la_backoff(const keel_la *la, const char *failure_type, bool non_retryable,
                        int64_t next_retry_delay_ms, int64_t now_ms);

/* ---- the worker side ---- */

struct keel_engine;

typedef struct keel_la_env {
    keel_transport *transport;
    const char *namespace, *identity, *task_queue, *sticky_queue;
    const keel_activity_type *types;
    size_t n_types;
    const char *workflow_type;
    atomic_bool *stopping; /* the worker's: set, the task is left (KEEL_EPRECONDITION) */
} keel_la_env;

/*
 * Run the run's outstanding local activities to their outcomes, resolving each into the engine
 * (a marker command and a delivery; the workflow runs and may start more), until none is
 * outstanding. At 80 % of the workflow task timeout, counted from the task's start, the commands
 * so far go to the server with a request for a new task (a workflow task heartbeat), and the work
 * continues on it: *task is then the new task, owned by the caller (free it after answering; NULL
 * when no heartbeat happened). Errors: those of the engine, or of the heartbeat call (then the
 * task is lost; the server times it out and another attempt reruns the local activities).
 */
int keel_la_drive(const keel_la_env *env, struct keel_engine *e,
                  const Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse *t,
                  Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse **task,
                  keel_error *err);

/* nonfirst_local_activity_execution_attempts for the completion of the current task. */
uint64_t keel_la_nonfirst_attempts(struct keel_engine *e);

#endif
