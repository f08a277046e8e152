/*
 * keel/activity.h - writing an activity: ordinary C code that does the I/O workflows may not.
 *
 * An activity runs on one of the worker's executor threads. It gets the workflow's JSON
 * argument and answers with a JSON result, or fails. The server retries failed activities under
 * the retry policy the workflow gave, so an activity should be idempotent: the same call twice
 * has the effect of one (keel_activity_attempt() says which try this is).
 */
#ifndef KEEL_ACTIVITY_H
#define KEEL_ACTIVITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_activity_ctx keel_activity_ctx;

/*
 * Run the activity on input_json ("null" when there is no argument). On success set
 * *result_json to a new malloc'd JSON string (or leave it NULL: no result) and return KEEL_OK;
 * the worker frees it. On failure call keel_activity_fail() (or not: a plain error code is
 * reported as a retryable failure) and return a negative keel_error_code.
 */
typedef int (*keel_activity_fn)(keel_activity_ctx *ctx, const char *input_json, char **result_json,
                                void *user_data);

typedef struct keel_activity_type {
    const char *name; /* what workflows schedule; the name the Web UI shows */
    keel_activity_fn run;
    void *user_data; /* passed to every run; must be safe to share across threads */
} keel_activity_type;

/* Describe the failure the activity is about to return. type names it for workflows and retry
 * policies (non_retryable_error_types); non_retryable stops the server's retries. Returns
 * KEEL_EINVAL so that activities can `return keel_activity_fail(...)`. */
int keel_activity_fail(keel_activity_ctx *ctx, const char *type, const char *message,
                       bool non_retryable);

/* A failure with everything Temporal carries for one. */
typedef struct keel_activity_failure {
    const char *type;            /* the application failure type ("" when NULL) */
    const char *message;         /* what went wrong, for people */
    bool non_retryable;          /* stop the server's retries */
    const char *details_json;    /* JSON the workflow can read (NULL: none) */
    int64_t next_retry_delay_ms; /* wait this long before the next attempt, overriding the retry
                                    policy's backoff (a provider's Retry-After); 0: the policy's */
} keel_activity_failure;

/* keel_activity_fail() with details and a retry delay. Returns KEEL_EINVAL, as that does. */
int keel_activity_fail_with(keel_activity_ctx *ctx, const keel_activity_failure *failure);

/*
 * Asynchronous completion: the activity will be completed later by someone else (a person, a
 * webhook) through keel_client_activity_complete() / _fail() with this task token. Copies the
 * token into a new buffer *token of *len bytes (caller frees); after it the function returns
 * KEEL_OK and the worker reports nothing. The activity's timeouts still run on the server.
 */
int keel_activity_complete_async(keel_activity_ctx *ctx, uint8_t **token, size_t *len);

/* Report progress (JSON details, NULL: none) and learn whether the workflow wants the activity
 * cancelled: KEEL_ECANCELLED means stop and return KEEL_ECANCELLED; the worker then reports the
 * activity as canceled. Heartbeats are how cancellation reaches a running activity, and what a
 * heartbeat timeout watches. Call it as often as convenient: at most one heartbeat per 80 % of
 * the heartbeat timeout (30 s without one) is sent, and calls in between answer from the last. */
int keel_activity_heartbeat(keel_activity_ctx *ctx, const char *details_json);

/* Whether a heartbeat has learned of a cancellation request, or that the worker is shutting
 * down past its grace period (then the attempt is reported as a retryable WorkerShutdown
 * failure, and the server retries it on another worker). */
bool keel_activity_cancel_requested(const keel_activity_ctx *ctx);

/* The failure type this attempt reported so far with keel_activity_fail*(), or NULL when it
 * reported none (for metrics and logs). Borrowed, valid during the run. */
const char *keel_activity_failure_type(const keel_activity_ctx *ctx);

/* The attempt, 1 for the first try. */
int32_t keel_activity_attempt(const keel_activity_ctx *ctx);

/* Borrowed strings, valid during the run. */
const char *keel_activity_id(const keel_activity_ctx *ctx);
const char *keel_activity_type_name(const keel_activity_ctx *ctx);
const char *keel_activity_workflow_id(const keel_activity_ctx *ctx);
const char *keel_activity_run_id(const keel_activity_ctx *ctx);
const char *keel_activity_workflow_type(const keel_activity_ctx *ctx); /* e.g. "keel.Approval" */
const char *keel_activity_namespace(const keel_activity_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif
