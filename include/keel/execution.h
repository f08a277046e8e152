/*
 * keel/execution.h - workflow executions from the client side: start, signal, describe, cancel,
 * terminate, list, and wait for the result.
 *
 * Values cross this API as JSON text: a workflow's input, a signal's argument, memo values and
 * search attribute values are JSON, stored as json/plain payloads so that every official
 * client and the Web UI read them as JSON too. A workflow gets one argument (the input JSON),
 * or none when input_json is NULL.
 *
 * run_id may be NULL (or "") wherever it is taken: the call then addresses the workflow id's
 * current run. Results are caller-owned structs released with their `_dispose` function; on
 * failure they are left zeroed and need no dispose.
 */
#ifndef KEEL_EXECUTION_H
#define KEEL_EXECUTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/client.h"
#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Numbered as Temporal's WorkflowIdReusePolicy; UNSPECIFIED lets the server choose
 * (ALLOW_DUPLICATE). */
typedef enum keel_id_reuse_policy {
    KEEL_ID_REUSE_UNSPECIFIED = 0,
    KEEL_ID_REUSE_ALLOW_DUPLICATE = 1,
    KEEL_ID_REUSE_ALLOW_DUPLICATE_FAILED_ONLY = 2,
    KEEL_ID_REUSE_REJECT_DUPLICATE = 3,
} keel_id_reuse_policy;

/* Numbered as Temporal's WorkflowIdConflictPolicy: what happens when a run with the id is still
 * open. UNSPECIFIED means FAIL for a start. */
typedef enum keel_id_conflict_policy {
    KEEL_ID_CONFLICT_UNSPECIFIED = 0,
    KEEL_ID_CONFLICT_FAIL = 1,
    KEEL_ID_CONFLICT_USE_EXISTING = 2,
    KEEL_ID_CONFLICT_TERMINATE_EXISTING = 3,
} keel_id_conflict_policy;

/* Server-side retries of a whole workflow (rarely wanted) or of an activity. Zero fields take
 * the server's defaults. */
typedef struct keel_retry_policy {
    int64_t initial_interval_ms;
    double backoff_coefficient;
    int64_t maximum_interval_ms;
    int32_t maximum_attempts; /* 0: unlimited */
    const char *const *non_retryable_error_types;
    size_t n_non_retryable_error_types;
} keel_retry_policy;

/* A search attribute's value as JSON text: "\"approval\"", "1200.5", "[\"a\",\"b\"]",
 * "\"2026-11-23T09:00:00Z\"" (Datetime). type is a keel_indexed_value_type. */
typedef struct keel_search_attribute_value {
    const char *name;
    int type;
    const char *json;
} keel_search_attribute_value;

#define KEEL_WORKFLOW_START_OPTIONS_VERSION 2

typedef struct keel_workflow_start_options {
    unsigned int version;
    const char *workflow_id;   /* required */
    const char *workflow_type; /* required */
    const char *task_queue;    /* required */
    const char *input_json;    /* the argument, JSON; NULL: no argument */
    int64_t execution_timeout_ms, run_timeout_ms, task_timeout_ms; /* 0: server default */
    keel_id_reuse_policy id_reuse_policy;
    keel_id_conflict_policy id_conflict_policy;
    const char *cron_schedule; /* NULL: none */
    const keel_kv *memo;       /* values are JSON */
    size_t n_memo;
    const keel_search_attribute_value *search_attributes;
    size_t n_search_attributes;
    const keel_retry_policy *retry_policy; /* NULL: none (a workflow runs once) */
    const char *request_id;                /* idempotency key; NULL: a new UUID */
    /* Version 2. Wait this long before the first workflow task (0: none; not with cron). */
    int64_t start_delay_ms;
    /* Version 2. Eager start: ask the server to return the first workflow task in the start's
     * answer and run it on a keel_worker of THIS client (same keel_client object) that serves
     * task_queue, skipping the poll. Used only when such a worker is running and one of its
     * workflow-task slots is free at that moment (never waits for one); otherwise, and always
     * with start_delay_ms or cron_schedule, the start is a normal one. Ignored by
     * signal-with-start. keel_client_workflow_start_ex() says whether it happened. */
    bool eager;
} keel_workflow_start_options;

#define KEEL_WORKFLOW_START_OPTIONS_INIT                                                           \
    {                                                                                              \
        .version = KEEL_WORKFLOW_START_OPTIONS_VERSION                                             \
    }

int keel_workflow_start_options_init(keel_workflow_start_options *opts, unsigned int version);

/*
 * StartWorkflowExecution. On success *run_id_out (if not NULL) is the new run's id, or the open
 * run's id when the conflict policy is USE_EXISTING; the caller frees it. A running workflow with
 * the same id fails with KEEL_EEXISTS (failure_type WorkflowExecutionAlreadyStartedFailure).
 */
int keel_client_workflow_start(keel_client *client, const keel_workflow_start_options *opts,
                               char **run_id_out, keel_error *err);

/*
 * keel_client_workflow_start, and *eager_out (if not NULL) tells whether the start was eager: the
 * server handed the first workflow task back in its answer and a local worker (opts->eager) took
 * it, with the slot reserved for it, so no poll carried it. false: a normal start (no worker of
 * this client serves the queue, none had a free slot, a start delay or cron schedule, the
 * namespace has eager start off, or the run existed already).
 */
int keel_client_workflow_start_ex(keel_client *client, const keel_workflow_start_options *opts,
                                  char **run_id_out, bool *eager_out, keel_error *err);

/*
 * SignalWithStartWorkflowExecution: signal the workflow id's open run, or start it (with opts)
 * and deliver the signal as its first news. The conflict policy defaults to USE_EXISTING. On
 * success *run_id_out (if not NULL) names the run signalled; the caller frees it.
 */
int keel_client_workflow_signal_with_start(keel_client *client,
                                           const keel_workflow_start_options *opts,
                                           const char *signal_name, const char *signal_input_json,
                                           char **run_id_out, keel_error *err);

/* SignalWorkflowExecution: deliver signal_name with one JSON argument (NULL: none). */
int keel_client_workflow_signal(keel_client *client, const char *workflow_id, const char *run_id,
                                const char *signal_name, const char *input_json, keel_error *err);

/* RequestCancelWorkflowExecution: ask the workflow to cancel itself; it decides how. */
int keel_client_workflow_cancel(keel_client *client, const char *workflow_id, const char *run_id,
                                const char *reason, keel_error *err);

/* TerminateWorkflowExecution: end the run now, without running any workflow code. */
int keel_client_workflow_terminate(keel_client *client, const char *workflow_id, const char *run_id,
                                   const char *reason, keel_error *err);

/* Numbered as Temporal's WorkflowExecutionStatus. */
typedef enum keel_workflow_status {
    KEEL_WORKFLOW_STATUS_UNSPECIFIED = 0,
    KEEL_WORKFLOW_STATUS_RUNNING = 1,
    KEEL_WORKFLOW_STATUS_COMPLETED = 2,
    KEEL_WORKFLOW_STATUS_FAILED = 3,
    KEEL_WORKFLOW_STATUS_CANCELED = 4,
    KEEL_WORKFLOW_STATUS_TERMINATED = 5,
    KEEL_WORKFLOW_STATUS_CONTINUED_AS_NEW = 6,
    KEEL_WORKFLOW_STATUS_TIMED_OUT = 7,
    KEEL_WORKFLOW_STATUS_PAUSED = 8,
} keel_workflow_status;

/* "Running", "Completed", ... as the Web UI shows them; "Unknown" otherwise. Static storage. */
const char *keel_workflow_status_name(int status);

typedef struct keel_workflow_info {
    char *workflow_id;
    char *run_id;
    char *workflow_type;
    char *task_queue;
    int status;             /* keel_workflow_status */
    int64_t start_time_ms;  /* Unix time in ms */
    int64_t close_time_ms;  /* 0 while open */
    int64_t history_length; /* events */
    size_t n_memo;
    keel_kv *memo; /* values as JSON text (or a note when not JSON) */
    size_t n_search_attributes;
    keel_kv *search_attributes; /* values as JSON text */
} keel_workflow_info;

void keel_workflow_info_dispose(keel_workflow_info *info);

/* DescribeWorkflowExecution. An unknown workflow fails with KEEL_ENOTFOUND. */
int keel_client_workflow_describe(keel_client *client, const char *workflow_id, const char *run_id,
                                  keel_workflow_info *out, keel_error *err);

typedef struct keel_workflow_list {
    size_t count;
    keel_workflow_info *items;
} keel_workflow_list;

void keel_workflow_list_dispose(keel_workflow_list *list);

/*
 * ListWorkflowExecutions with a visibility query ("WorkflowType='x' AND
 * ExecutionStatus='Running'"; NULL or "": all), newest first, at most `limit` runs (0: 1000).
 * Visibility is eventually consistent: a run started a moment ago may not be listed yet.
 */
int keel_client_workflow_list(keel_client *client, const char *query, size_t limit,
                              keel_workflow_list *out, keel_error *err);

typedef struct keel_workflow_outcome {
    int status;            /* how the last run closed: COMPLETED, FAILED, ... */
    char *run_id;          /* the run that closed (after following continue-as-new/retries) */
    char *result_json;     /* COMPLETED: the result as JSON ("null" when none) */
    char *failure_message; /* FAILED: the failure's message with its causes; TERMINATED: the
                              reason; TIMED_OUT/CANCELED: a description */
    char *failure_type;    /* FAILED with an application failure: its type; else NULL */
} keel_workflow_outcome;

void keel_workflow_outcome_dispose(keel_workflow_outcome *outcome);

/*
 * Wait until the workflow closes and report how (GetWorkflowExecutionHistory long polls on the
 * close event). A run that continued as new, or was retried, or is a cron run, is followed to the
 * run that closes for good, as the official SDKs do. A failed, canceled, terminated or timed-out
 * workflow is a successful call: see out->status. Waits at most timeout_ms (0: no limit), then
 * fails with KEEL_ETIMEOUT.
 */
int keel_client_workflow_result(keel_client *client, const char *workflow_id, const char *run_id,
                                int64_t timeout_ms, keel_workflow_outcome *out, keel_error *err);

typedef enum keel_history_format {
    KEEL_HISTORY_JSON = 1,   /* {"events": [...]}: proto3 JSON, as Temporal's tools write it */
    KEEL_HISTORY_BINARY = 2, /* a serialized temporal.api.history.v1.History */
} keel_history_format;

/*
 * The run's whole history (every page), as JSON or binary, in a new buffer *out of *len bytes
 * (JSON is also NUL-terminated); the caller frees it. Input for keel_replay().
 */
int keel_client_workflow_history(keel_client *client, const char *workflow_id, const char *run_id,
                                 keel_history_format format, char **out, size_t *len,
                                 keel_error *err);

/*
 * QueryWorkflow: ask a run a read-only question; a worker replays the run and answers. The answer
 * is JSON in *result_json (caller frees). "__stack_trace" is answered for every keel workflow
 * with where its state machine stands. A query the workflow refuses fails with KEEL_EINVAL and
 * the workflow's message.
 */
int keel_client_workflow_query(keel_client *client, const char *workflow_id, const char *run_id,
                               const char *query_type, const char *args_json, char **result_json,
                               keel_error *err);

typedef struct keel_update_outcome {
    char *update_id;       /* the update's id (the one given, or the UUID chosen) */
    bool failed;           /* the validator rejected it, or the handler failed it */
    char *result_json;     /* !failed: the result as JSON ("null" when none) */
    char *failure_message; /* failed: the failure's message with its causes */
    char *failure_type;    /* failed: the application failure type ("UpdateRejected" when a keel
                              workflow's validator refused) */
} keel_update_outcome;

void keel_update_outcome_dispose(keel_update_outcome *outcome);

/*
 * UpdateWorkflowExecution: ask the run to handle update `name` with one JSON argument (NULL:
 * none) and wait for its answer, polling past the server's own wait (PollWorkflowExecutionUpdate)
 * for at most timeout_ms (0: no limit; then KEEL_ETIMEOUT). update_id NULL: a new UUID; sending
 * the same id again returns the first answer instead of a second update. A rejected or failed
 * update is a successful call: see out->failed. A run that is not open fails with
 * KEEL_ENOTFOUND.
 */
int keel_client_workflow_update(keel_client *client, const char *workflow_id, const char *run_id,
                                const char *update_id, const char *name, const char *args_json,
                                int64_t timeout_ms, keel_update_outcome *out, keel_error *err);

#ifdef __cplusplus
}
#endif

#endif
