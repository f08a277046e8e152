/*
 * keel/completion.h - completing activities from outside the worker.
 *
 * An activity that called keel_activity_complete_async() stays open until someone answers for
 * it: a person through keelctl, a webhook handler, another service. They answer by the task token
 * the activity handed out, or by the activity's id within its workflow run. The activity's
 * timeouts still run on the server meanwhile; heartbeats keep a heartbeat timeout at bay.
 */
#ifndef KEEL_COMPLETION_H
#define KEEL_COMPLETION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/activity.h"
#include "keel/client.h"
#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which activity: its task token, or (token NULL) workflow id + activity id (run id NULL or
 * "": the current run). Borrowed. */
typedef struct keel_activity_ref {
    const uint8_t *token;
    size_t token_len;
    const char *workflow_id;
    const char *run_id;
    const char *activity_id;
} keel_activity_ref;

/* Complete it with a JSON result (NULL: none). An activity that is no longer open (completed,
 * timed out, its run closed) fails with KEEL_ENOTFOUND. */
int keel_client_activity_complete(keel_client *client, const keel_activity_ref *ref,
                                  const char *result_json, keel_error *err);

/* Fail it; the workflow's retry policy decides what follows, as for any failed attempt. */
int keel_client_activity_fail(keel_client *client, const keel_activity_ref *ref,
                              const keel_activity_failure *failure, keel_error *err);

/* Heartbeat for it with JSON details (NULL: none); *cancel_requested (if not NULL) says whether
 * the workflow asked for it to be cancelled. */
int keel_client_activity_heartbeat(keel_client *client, const keel_activity_ref *ref,
                                   const char *details_json, bool *cancel_requested,
                                   keel_error *err);

#ifdef __cplusplus
}
#endif

#endif
