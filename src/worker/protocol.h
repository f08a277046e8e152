/*
 * protocol - the workflow-update protocol messages that travel with workflow tasks.
 *
 * The server hands an update to the worker as a protocol.v1.Message whose body is an
 * update.v1.Request; the worker answers in the same task completion with an Acceptance or a
 * Rejection, and later (same or another task) a Response with the outcome. Acceptances and
 * responses are ordered among the commands by PROTOCOL_MESSAGE commands naming their message id,
 * and history records them as WorkflowExecutionUpdateAccepted / ...Completed events.
 *
 * Message ids follow the official SDKs' convention: "<update id>/accept", "/reject", "/complete".
 */
#ifndef KEEL_WORKER_PROTOCOL_H
#define KEEL_WORKER_PROTOCOL_H

#include <stdint.h>

#include "converter/failure.h"
#include "keel/error.h"
#include "temporal/api/protocol/v1/message.pb-c.h"
#include "temporal/api/update/v1/message.pb-c.h"

typedef Temporal__Api__Protocol__V1__Message keel_pb_message;
typedef Temporal__Api__Update__V1__Request keel_pb_update_request;

/* An update request, read off the wire or out of history. Every string is owned. */
typedef struct keel_update_request {
    char *message_id; /* the request message's id ("" when read from history) */
    char *update_id;
    char *name;
    char *args_json;             /* the first argument as JSON ("null": none) */
    int64_t sequencing_event_id; /* handle it after the events up to this one */
    uint8_t *raw;                /* the packed update.v1.Request, echoed back when answering */
    size_t raw_len;
    char *problem; /* why the request is unusable (it is rejected with this), or NULL */
} keel_update_request;

/*
 * Read an update request from a task's message. KEEL_EUNIMPLEMENTED when the message is some
 * other protocol's. A malformed request that still names its update (the message's protocol
 * instance id) is KEEL_OK with out->problem saying what is wrong, so that it can be rejected
 * and its client told why; one that names no update is KEEL_EINVAL. The caller disposes *out.
 */
int keel_update_request_read(const keel_pb_message *m, keel_update_request *out, keel_error *err);

/* Take a request recorded in history (UpdateAccepted / UpdateAdmitted). */
int keel_update_request_from_pb(const keel_pb_update_request *r, keel_update_request *out,
                                keel_error *err);

void keel_update_request_dispose(keel_update_request *r);

/* The answers, as new messages on the heap (free with protobuf_c_message_free_unpacked); NULL
 * with err set on failure. */
keel_pb_message *keel_update_accept(const keel_update_request *r, keel_error *err);
keel_pb_message *keel_update_reject(const keel_update_request *r, const char *reason,
                                    keel_error *err);

/* The outcome: result_json when failure is NULL; otherwise the failure, which the message takes
 * (it is freed on error too). */
keel_pb_message *keel_update_respond(const char *update_id, const char *result_json,
                                     keel_pb_failure *failure, keel_error *err);

/* "<update id>/<suffix>" in a new string (caller frees; NULL: out of memory). */
char *keel_update_message_id(const char *update_id, const char *suffix);

#endif
