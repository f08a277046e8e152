/*
 * keel/workflow.h - writing a workflow: a deterministic state machine over Temporal's history.
 *
 * A workflow type is a table of callbacks over a state struct that the engine owns:
 *
 *   start(ctx, state, input_json)     the first activation, with the workflow's input;
 *   on_event(ctx, state, event)       an activity finished, a timer fired, a signal, an
 *                                     update or a cancellation request arrived;
 *   query(state, name, args, result)  read-only questions from clients and the Web UI.
 *
 * Callbacks act only through the context: schedule activities, start and cancel timers, complete,
 * fail or continue as new, read workflow time, draw deterministic random numbers. They must not
 * read the clock, draw real randomness, touch files, threads or the network, or keep pointers to
 * the strings an event carries: the engine replays the same callbacks over the recorded history
 * after a restart, and they must issue the same commands in the same order every time. A command
 * that differs from the history is reported as a non-determinism failure, naming both.
 *
 * The state is plain memory of `state_size` bytes, zeroed before start. Keep it self-contained
 * (fixed-size arrays, no heap pointers), or give the type a `dispose` callback that frees what
 * the state points to.
 *
 * A callback returns KEEL_OK, or a negative keel_error_code after calling keel_workflow_error():
 * that reports a bug (the workflow task fails and is retried, so fixed code can continue the run)
 * and never crashes the worker. A business failure is keel_workflow_fail() instead: the run ends
 * as Failed.
 */
#ifndef KEEL_WORKFLOW_H
#define KEEL_WORKFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/execution.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_workflow_ctx keel_workflow_ctx;

typedef enum keel_workflow_event_kind {
    KEEL_EVENT_ACTIVITY_COMPLETED = 1, /* json: the result */
    KEEL_EVENT_ACTIVITY_FAILED,        /* failure_*: after the server's retries gave up, or
                                          "BadResult": it completed with a result keel cannot
                                          read (keel/json.h's rules; the message says where) */
    KEEL_EVENT_ACTIVITY_CANCELED,      /* after keel_workflow_cancel_activity() */
    KEEL_EVENT_TIMER_FIRED,
    KEEL_EVENT_SIGNAL,           /* name, json: the signal and its argument. An argument keel
                                    cannot read (not JSON, a NUL, invalid UTF-8) comes as json
                                    "null" with failure_type "BadInput" and failure_message
                                    saying where: the workflow refuses it as it would any bad
                                    payload (a start input keel cannot read fails the run with
                                    BadInput before start is called) */
    KEEL_EVENT_CANCEL_REQUESTED, /* a client asked the run to cancel; json: the reason */
    KEEL_EVENT_CHILD_COMPLETED,  /* json: the child workflow's result */
    KEEL_EVENT_CHILD_FAILED,     /* the child failed, timed out, was canceled or terminated, or
                                    could not start (failure_type: its application type,
                                    "Timeout", "Canceled", "Terminated", "AlreadyStarted"), or
                                    its result cannot be read ("BadResult") */
    KEEL_EVENT_SIGNAL_DELIVERED, /* a signal this workflow sent has been delivered */
    KEEL_EVENT_SIGNAL_FAILED,    /* ...could not be (no such workflow, say): failure_message */
    KEEL_EVENT_UPDATE,           /* an update the type's validator accepted: name, json (its
                                    argument), seq (its number, for keel_workflow_update_complete
                                    or _fail, now or in a later event) */
} keel_workflow_event_kind;

/* What an on_event callback receives. Every pointer is borrowed for the callback's duration. */
typedef struct keel_workflow_event {
    keel_workflow_event_kind kind;
    uint32_t seq;                /* the activity's, timer's or child's sequence number */
    const char *name;            /* activity type, signal name, or child workflow type */
    const char *json;            /* result, signal argument or reason as JSON ("null": none) */
    const char *failure_message; /* *_FAILED: the failure and its causes; SIGNAL: see above */
    const char *failure_type;    /* *_FAILED: application type, "Timeout", ...; or "" */
} keel_workflow_event;

/* How a run of a workflow type moves between the versions of a Worker Deployment (Temporal's
 * Worker Versioning; docs/operations.md, "Rolling out new workflow code"). It matters only on a
 * worker with a deployment name and use_versioning (keel/worker.h); an unversioned worker sends
 * none. */
typedef enum keel_versioning_behavior {
    KEEL_VERSIONING_UNSPECIFIED = 0, /* the worker's default_versioning_behavior */
    /* The run stays on the version that started it until it closes: new code never replays
     * its history, so a change needs no keel_workflow_get_version branch. The old version's
     * workers must keep running until its runs drain. */
    KEEL_VERSIONING_PINNED = 1,
    /* The run moves to the deployment's current (or ramping) version at its next workflow task:
     * the new code replays the old history, so changes still need keel_workflow_get_version. */
    KEEL_VERSIONING_AUTO_UPGRADE = 2,
} keel_versioning_behavior;

typedef struct keel_workflow_type {
    const char *name; /* the workflow type clients start */
    size_t state_size;
    int (*start)(keel_workflow_ctx *ctx, void *state, const char *input_json);
    int (*on_event)(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *event);
    /* Optional. Answer `name` with JSON in a new string (*result_json, caller of the engine
     * frees). Return KEEL_EINVAL for an unknown query name. */
    int (*query)(const void *state, const char *name, const char *args_json, char **result_json);
    /* Optional. One line on where the state machine stands ("waiting for approval by ana"),
     * shown in the Web UI's stack trace view. Writes at most n bytes. */
    void (*describe)(const void *state, char *buf, size_t n);
    /* Optional. Free what the state points to. */
    void (*dispose)(void *state);
    /* Optional, NULL-terminated: the queries and signals the type answers, listed by the
     * built-in __temporal_workflow_metadata query (the Web UI's Queries view). */
    const char *const *queries;
    const char *const *signals;
    /* Optional, NULL-terminated: the updates the type takes. An update with another name is
     * rejected before it reaches history; so is every update when this is NULL. */
    const char *const *updates;
    /* Optional. Accept (KEEL_OK) or reject (any other value, with why in reason, at most n bytes)
     * a declared update before it is recorded: the client that sent it gets the reason, and
     * history keeps no trace of it. Read-only; it runs only for new updates, never on replay.
     * Without it, every declared update is accepted. */
    int (*validate_update)(const void *state, const char *name, const char *args_json, char *reason,
                           size_t n);
    /* On a versioned worker: pinned or auto-upgrade (UNSPECIFIED: the worker's default). The
     * worker's versioning_overrides, by type name, take precedence. */
    keel_versioning_behavior versioning_behavior;
} keel_workflow_type;

/* Summaries longer than this many bytes are cut (at a character boundary); invalid UTF-8 in
 * them becomes '?' and control characters spaces. The server takes at most 400 bytes of summary
 * payload by default (limit.userMetadataSummarySize). */
#define KEEL_SUMMARY_MAX 200

typedef struct keel_activity_options {
    const char *task_queue;       /* NULL: the workflow's own task queue */
    int64_t schedule_to_close_ms; /* this or start_to_close_ms must be set */
    int64_t start_to_close_ms;
    int64_t schedule_to_start_ms;
    int64_t heartbeat_ms;           /* 0: no heartbeat timeout */
    const keel_retry_policy *retry; /* NULL: the server's default (retry until timeouts) */
    /* Optional: what this activity is for, in one line ("quote from the strong model"), shown
     * with it in the Web UI (the command's user_metadata summary). Not part of replay matching:
     * it may change between versions of the code. See KEEL_SUMMARY_MAX. */
    const char *summary;
} keel_activity_options;

/*
 * Schedule activity `type` with one JSON argument (NULL: none). Returns its sequence number
 * (1, 2, ...; also its activity id), which the completion event carries; 0 on error (then the
 * callback should return the error: see keel_workflow_error()).
 */
uint32_t keel_workflow_activity(keel_workflow_ctx *ctx, const char *type, const char *input_json,
                                const keel_activity_options *opts);

/*
 * Local activities: a registered activity (keel/activity.h) run by this worker, in-process, while
 * the workflow task stays open, instead of being scheduled through the server. No
 * ActivityTaskScheduled/Started/Completed events and no extra workflow task: the outcome is
 * recorded once, as a MarkerRecorded event "core_local_activity" (the marker the core-based SDKs
 * write; docs/local-activities.md). For short reads (a database lookup): an effect may run more
 * than once, since the outcome is durable only when the task's completion reaches the server.
 */
typedef struct keel_local_activity_options {
    int64_t schedule_to_close_ms;   /* across attempts and backoff timers; this or ... */
    int64_t start_to_close_ms;      /* ... this (per attempt) must be set */
    const keel_retry_policy *retry; /* NULL: initial 1 s, coefficient 2, max 100 s, unlimited */
    /* A retry whose backoff is at most this long waits in the worker; a longer one records the
     * failure with its backoff and waits on a durable timer. <= 0: 60 s (KEEL_LA_LOCAL_RETRY_MS).
     */
    int64_t local_retry_threshold_ms;
    const char *summary; /* optional: shown with the marker in the Web UI (KEEL_SUMMARY_MAX) */
} keel_local_activity_options;

#define KEEL_LA_LOCAL_RETRY_MS 60000

/* Zero the options (no timeouts set: set one before use). */
void keel_local_activity_options_init(keel_local_activity_options *opts);

/*
 * Run activity `type` as a local activity with one JSON argument (NULL: none). Returns its
 * sequence number, from the same counter as keel_workflow_activity (so switching a call between
 * the two keeps the numbering); KEEL_EVENT_ACTIVITY_COMPLETED or _FAILED with it follows, as for a
 * regular activity (a timeout's failure_type is "Timeout:START_TO_CLOSE" or
 * "Timeout:SCHEDULE_TO_CLOSE"). Workflow time then reads the local activity's completion time. 0 on
 * error (then the callback should return the error: see keel_workflow_error()).
 */
uint32_t keel_workflow_local_activity(keel_workflow_ctx *ctx, const char *type,
                                      const char *input_json,
                                      const keel_local_activity_options *opts);

/* Ask the server to cancel a scheduled activity; a KEEL_EVENT_ACTIVITY_CANCELED (or its
 * completion, if it won the race) follows. */
int keel_workflow_cancel_activity(keel_workflow_ctx *ctx, uint32_t activity_seq);

typedef struct keel_child_options {
    /* NULL: "<this workflow's id>-child-<seq>-<first 8 characters of its run id>": unique per
     * run, the same on replay */
    const char *workflow_id;
    const char *task_queue; /* NULL: this workflow's task queue */
    int64_t execution_timeout_ms, run_timeout_ms;
    /* What happens to the child when this run closes first: 0 or 1 terminate it (the server's
     * default), 2 abandon it, 3 request its cancellation. */
    int parent_close_policy;
    /* Optional: what the child is for, shown in the Web UI (as keel_activity_options.summary). */
    const char *summary;
} keel_child_options;

/*
 * Start a child workflow of `type` with one JSON argument (NULL: none). Returns its sequence
 * number; KEEL_EVENT_CHILD_COMPLETED or KEEL_EVENT_CHILD_FAILED with it follows. 0 on error.
 * opts may be NULL.
 */
uint32_t keel_workflow_child(keel_workflow_ctx *ctx, const char *type, const char *input_json,
                             const keel_child_options *opts);

/* Signal another workflow (run_id NULL: its current run) with one JSON argument. Returns a
 * sequence number; KEEL_EVENT_SIGNAL_DELIVERED or KEEL_EVENT_SIGNAL_FAILED with it follows. */
uint32_t keel_workflow_signal_external(keel_workflow_ctx *ctx, const char *workflow_id,
                                       const char *run_id, const char *signal_name,
                                       const char *input_json);

/* Answer an update accepted earlier (KEEL_EVENT_UPDATE's seq): with a JSON result (NULL:
 * none), or with an application failure. The client waiting on it gets the answer. Each update is
 * answered once; one still open when the run closes is answered by the server with an error. */
int keel_workflow_update_complete(keel_workflow_ctx *ctx, uint32_t update_seq,
                                  const char *result_json);
int keel_workflow_update_fail(keel_workflow_ctx *ctx, uint32_t update_seq, const char *type,
                              const char *message);

/* Start a durable timer; KEEL_EVENT_TIMER_FIRED with the returned seq follows. 0 on error. */
uint32_t keel_workflow_timer(keel_workflow_ctx *ctx, int64_t duration_ms);

typedef struct keel_timer_options {
    /* Optional: what the timer is for ("reminder to ana@example.com"), shown in the Web UI in
     * place of the timer's number (as keel_activity_options.summary). */
    const char *summary;
} keel_timer_options;

/* keel_workflow_timer() with options (NULL: none). */
uint32_t keel_workflow_timer_with(keel_workflow_ctx *ctx, int64_t duration_ms,
                                  const keel_timer_options *opts);

/* Cancel a timer that has not fired; no event follows. */
int keel_workflow_cancel_timer(keel_workflow_ctx *ctx, uint32_t timer_seq);

/* End the run: completed with a JSON result (NULL: none), failed with an application failure,
 * or continued as a new run of the same type with new input. Nothing runs after these. */
int keel_workflow_complete(keel_workflow_ctx *ctx, const char *result_json);
int keel_workflow_fail(keel_workflow_ctx *ctx, const char *type, const char *message,
                       bool non_retryable);
int keel_workflow_continue_as_new(keel_workflow_ctx *ctx, const char *input_json);

/* End the run as Canceled, usually after KEEL_EVENT_CANCEL_REQUESTED once the work in flight is
 * wound down. details_json: what to record (NULL: nothing). */
int keel_workflow_cancelled(keel_workflow_ctx *ctx, const char *details_json);

/* Set search attributes on the run (registered ones: `keelctl search-attribute list`), so that
 * operators can filter runs by them in the Web UI and clients with visibility queries. A value of
 * "null" removes the attribute. */
int keel_workflow_upsert_search_attributes(keel_workflow_ctx *ctx,
                                           const keel_search_attribute_value *values, size_t n);

/* Set memo entries (JSON values), shown with the run in the Web UI and describe. */
int keel_workflow_upsert_memo(keel_workflow_ctx *ctx, const keel_kv *entries, size_t n);

/* What get_version() answers for a run that passed the change point before the change existed. */
#define KEEL_DEFAULT_VERSION (-1)

/*
 * Branch on a code change under runs that already exist ("patching"). A run that reaches this
 * point for the first time gets max_supported, recorded in its history (a Version marker); a run
 * replayed later gets what it recorded then, or KEEL_DEFAULT_VERSION if it passed this point
 * before the call existed. A recorded version outside [min_supported, max_supported] is a bug:
 * KEEL_EINVAL, and the workflow task fails naming it. Old branches can be dropped (raise
 * min_supported) once no run needs them; the call itself can go once no run has the marker.
 */
int keel_workflow_get_version(keel_workflow_ctx *ctx, const char *change_id, int min_supported,
                              int max_supported, int *version);

/* Compute a value in a new JSON string (*result_json, malloc'd; NULL means null). */
typedef int (*keel_side_effect_fn)(void *arg, char **result_json);

/*
 * A side effect: run fn once and record its value in history (a SideEffect marker); on replay
 * the recorded value comes back and fn is not called. For small non-deterministic values not
 * worth an activity, like an id from a library with its own randomness. fn must be quick and
 * must not fail for reasons that could change on a retry: its error fails the workflow task.
 * *result_json is a new string the workflow frees.
 */
int keel_workflow_side_effect(keel_workflow_ctx *ctx, keel_side_effect_fn fn, void *arg,
                              char **result_json);

/* Workflow time: when the current workflow task started, as recorded in history (ms since the
 * Unix epoch). The same on every replay. */
int64_t keel_workflow_now_ms(const keel_workflow_ctx *ctx);

/* True when the server suggested, in the current workflow task, that the run continue as new
 * (its history grew long or large). Recorded in history, so the same on every replay. */
bool keel_workflow_continue_as_new_suggested(const keel_workflow_ctx *ctx);

/* Deterministic randomness, seeded from the run: the same sequence on every replay. */
uint64_t keel_workflow_random(keel_workflow_ctx *ctx);
void keel_workflow_uuid(keel_workflow_ctx *ctx, char out[37]);

/* True while the engine replays history that already happened (for logging only). */
bool keel_workflow_is_replaying(const keel_workflow_ctx *ctx);

/* The run. Borrowed strings, valid for the callback. */
const char *keel_workflow_id(const keel_workflow_ctx *ctx);
const char *keel_workflow_run_id(const keel_workflow_ctx *ctx);
const char *keel_workflow_task_queue(const keel_workflow_ctx *ctx);

/* Describe the bug a callback is about to return; the message goes into the workflow task
 * failure. Returns KEEL_EINVAL so that callbacks can `return keel_workflow_error(ctx, ...)`. */
int keel_workflow_error(keel_workflow_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
