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

/* Report progress (JSON details, NULL: none) and learn whether the workflow wants the activity
 * cancelled: KEEL_ECANCELLED means stop and return KEEL_ECANCELLED; the worker then reports the
 * activity as canceled. Heartbeats are how cancellation reaches a running activity, and what a
 * heartbeat timeout watches. Call it as often as convenient: at most one heartbeat per 80 % of
 * the heartbeat timeout (30 s without one) is sent, and calls in between answer from the last. */
int keel_activity_heartbeat(keel_activity_ctx *ctx, const char *details_json);

/* Whether a heartbeat has learned of a cancellation request. */
bool keel_activity_cancel_requested(const keel_activity_ctx *ctx);

/* The attempt, 1 for the first try. */
int32_t keel_activity_attempt(const keel_activity_ctx *ctx);

/* Borrowed strings, valid during the run. */
const char *keel_activity_id(const keel_activity_ctx *ctx);
const char *keel_activity_type_name(const keel_activity_ctx *ctx);
const char *keel_activity_workflow_id(const keel_activity_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif
