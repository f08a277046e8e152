/*
 * completion - answering for an activity from outside the worker, by task token or by id (see
 * keel/completion.h). Each operation has a token RPC and a ById RPC with the same payload.
 */
#include "keel/completion.h"

#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "converter/failure.h"
#include "converter/payload.h"
#include "proto/proto.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

#define REQ(x) Temporal__Api__Workflowservice__V1__##x

static int check_ref(const keel_activity_ref *ref, keel_error *err)
{
    if (ref == NULL)
        return keel_error_set(err, KEEL_EINVAL, "no activity named");
    if (ref->token != NULL)
        return ref->token_len > 0 ? KEEL_OK
                                  : keel_error_set(err, KEEL_EINVAL, "an empty task token");
    if (ref->workflow_id == NULL || ref->workflow_id[0] == '\0' || ref->activity_id == NULL ||
        ref->activity_id[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL,
                              "an activity is named by its task token, or by workflow id and "
                              "activity id");
    return KEEL_OK;
}

/* Make the call and drop the response; *resp_out (if not NULL) keeps it instead. */
static int call(keel_client *client, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_type, ProtobufCMessage **resp_out,
                keel_error *err)
{
    keel_transport *t = keel_client_transport(client);
    keel_call_options co = {.retry = true, .namespace = keel_transport_namespace(t)};
    ProtobufCMessage *resp = NULL;
    int rc =
        keel_transport_call(t, WF(method), (ProtobufCMessage *)req, resp_type, &resp, &co, err);
    if (rc == KEEL_OK && resp_out)
        *resp_out = resp;
    else if (resp)
        FREE_PB(resp);
    return rc;
}

/* Fill the common fields of a token request (T) or a ById request (B). */
#define FILL_TOKEN(r, ref, t)                                                                      \
    do {                                                                                           \
        (r).namespace_ = (char *)keel_transport_namespace(t);                                      \
        (r).identity = (char *)keel_transport_identity(t);                                         \
        (r).task_token = (ProtobufCBinaryData){(ref)->token_len, (uint8_t *)(ref)->token};         \
    } while (0)
#define FILL_ID(r, ref, t)                                                                         \
    do {                                                                                           \
        (r).namespace_ = (char *)keel_transport_namespace(t);                                      \
        (r).identity = (char *)keel_transport_identity(t);                                         \
        (r).workflow_id = (char *)(ref)->workflow_id;                                              \
        (r).run_id = (char *)((ref)->run_id ? (ref)->run_id : "");                                 \
        (r).activity_id = (char *)(ref)->activity_id;                                              \
    } while (0)

int keel_client_activity_complete(keel_client *client, const keel_activity_ref *ref,
                                  const char *result_json, keel_error *err)
{
    if (check_ref(ref, err) != KEEL_OK)
        return err ? err->code : KEEL_EINVAL;
    keel_transport *t = keel_client_transport(client);
    keel_pb_payloads *result = NULL;
    int rc = keel_payloads_new_json(result_json, "activity result", &result, err);
    if (rc != KEEL_OK)
        return rc;
    if (ref->token) {
        REQ(RespondActivityTaskCompletedRequest)
        r = TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_COMPLETED_REQUEST__INIT;
        FILL_TOKEN(r, ref, t);
        r.result = result;
        rc = call(
            client, "RespondActivityTaskCompleted", &r.base,
            &temporal__api__workflowservice__v1__respond_activity_task_completed_response__descriptor,
            NULL, err);
    } else {
        REQ(RespondActivityTaskCompletedByIdRequest)
        r = TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_COMPLETED_BY_ID_REQUEST__INIT;
        FILL_ID(r, ref, t);
        r.result = result;
        rc = call(
            client, "RespondActivityTaskCompletedById", &r.base,
            &temporal__api__workflowservice__v1__respond_activity_task_completed_by_id_response__descriptor,
            NULL, err);
    }
    if (result)
        FREE_PB(result);
    return rc;
}

int keel_client_activity_fail(keel_client *client, const keel_activity_ref *ref,
                              const keel_activity_failure *f, keel_error *err)
{
    if (check_ref(ref, err) != KEEL_OK)
        return err ? err->code : KEEL_EINVAL;
    if (f == NULL)
        return keel_error_set(err, KEEL_EINVAL, "no failure given");
    keel_transport *t = keel_client_transport(client);
    keel_pb_failure *failure = keel_failure_new_application_with(
        f->type, f->message, f->non_retryable, f->details_json, f->next_retry_delay_ms, err);
    if (failure == NULL)
        return err ? err->code : KEEL_EINVAL;
    int rc;
    if (ref->token) {
        REQ(RespondActivityTaskFailedRequest)
        r = TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_FAILED_REQUEST__INIT;
        FILL_TOKEN(r, ref, t);
        r.failure = failure;
        rc = call(
            client, "RespondActivityTaskFailed", &r.base,
            &temporal__api__workflowservice__v1__respond_activity_task_failed_response__descriptor,
            NULL, err);
    } else {
        REQ(RespondActivityTaskFailedByIdRequest)
        r = TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_ACTIVITY_TASK_FAILED_BY_ID_REQUEST__INIT;
        FILL_ID(r, ref, t);
        r.failure = failure;
        rc = call(
            client, "RespondActivityTaskFailedById", &r.base,
            &temporal__api__workflowservice__v1__respond_activity_task_failed_by_id_response__descriptor,
            NULL, err);
    }
    FREE_PB(failure);
    return rc;
}

int keel_client_activity_heartbeat(keel_client *client, const keel_activity_ref *ref,
                                   const char *details_json, bool *cancel_requested,
                                   keel_error *err)
{
    if (cancel_requested)
        *cancel_requested = false;
    if (check_ref(ref, err) != KEEL_OK)
        return err ? err->code : KEEL_EINVAL;
    keel_transport *t = keel_client_transport(client);
    keel_pb_payloads *details = NULL;
    int rc = keel_payloads_new_json(details_json, "heartbeat details", &details, err);
    if (rc != KEEL_OK)
        return rc;
    ProtobufCMessage *resp = NULL;
    bool cancel = false;
    if (ref->token) {
        REQ(RecordActivityTaskHeartbeatRequest)
        r = TEMPORAL__API__WORKFLOWSERVICE__V1__RECORD_ACTIVITY_TASK_HEARTBEAT_REQUEST__INIT;
        FILL_TOKEN(r, ref, t);
        r.details = details;
        rc = call(
            client, "RecordActivityTaskHeartbeat", &r.base,
            &temporal__api__workflowservice__v1__record_activity_task_heartbeat_response__descriptor,
            &resp, err);
        if (rc == KEEL_OK)
            cancel = ((REQ(RecordActivityTaskHeartbeatResponse) *)resp)->cancel_requested;
    } else {
        REQ(RecordActivityTaskHeartbeatByIdRequest)
        r = TEMPORAL__API__WORKFLOWSERVICE__V1__RECORD_ACTIVITY_TASK_HEARTBEAT_BY_ID_REQUEST__INIT;
        FILL_ID(r, ref, t);
        r.details = details;
        rc = call(
            client, "RecordActivityTaskHeartbeatById", &r.base,
            &temporal__api__workflowservice__v1__record_activity_task_heartbeat_by_id_response__descriptor,
            &resp, err);
        if (rc == KEEL_OK)
            cancel = ((REQ(RecordActivityTaskHeartbeatByIdResponse) *)resp)->cancel_requested;
    }
    if (resp)
        FREE_PB(resp);
    if (details)
        FREE_PB(details);
    if (cancel_requested)
        *cancel_requested = cancel;
    return rc;
}
