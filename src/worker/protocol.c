/*
 * protocol - reading update requests and writing the worker's answers (see protocol.h).
 */
#include "worker/protocol.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converter/payload.h"
#include "proto/depth.h"

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

#define TYPE_URL_PREFIX "type.googleapis.com/"
#define REQUEST_TYPE    "temporal.api.update.v1.Request"

static int oom(keel_error *err)
{
    return keel_error_set(err, KEEL_ENOMEM, "out of memory handling an update message");
}

void keel_update_request_dispose(keel_update_request *r)
{
    if (r == NULL)
        return;
    free(r->message_id);
    free(r->update_id);
    free(r->name);
    free(r->args_json);
    free(r->raw);
    free(r->problem);
    memset(r, 0, sizeof *r);
}

char *keel_update_message_id(const char *update_id, const char *suffix)
{
    size_t n = strlen(update_id) + strlen(suffix) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", update_id, suffix);
    return s;
}

/* Fill out from a request, keeping its packed form. */
static int take(const keel_pb_update_request *r, keel_update_request *out, keel_error *err)
{
    if (r->meta == NULL || r->meta->update_id == NULL || r->meta->update_id[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "an update request without an update id");
    if (r->input == NULL || r->input->name == NULL || r->input->name[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "update %s names no handler", r->meta->update_id);
    if ((out->update_id = strdup(r->meta->update_id)) == NULL ||
        (out->name = strdup(r->input->name)) == NULL)
        return oom(err);
    char what[96];
    snprintf(what, sizeof what, "arguments of update '%.60s'", r->input->name);
    int rc = keel_payloads_to_json(r->input->args, what, &out->args_json, err);
    if (rc != KEEL_OK)
        return rc;
    out->raw_len = protobuf_c_message_get_packed_size(&r->base);
    if ((out->raw = malloc(out->raw_len ? out->raw_len : 1)) == NULL)
        return oom(err);
    protobuf_c_message_pack(&r->base, out->raw);
    return KEEL_OK;
}

int keel_update_request_from_pb(const keel_pb_update_request *r, keel_update_request *out,
                                keel_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = r ? take(r, out, err)
               : keel_error_set(err, KEEL_EINVAL, "history records an update without its request");
    if (rc == KEEL_OK && (out->message_id = strdup("")) == NULL)
        rc = oom(err);
    if (rc != KEEL_OK)
        keel_update_request_dispose(out);
    return rc;
}

int keel_update_request_read(const keel_pb_message *m, keel_update_request *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    const char *id = m && m->id ? m->id : "";
    if (m == NULL || m->body == NULL || m->body->type_url == NULL)
        return keel_error_set(err, KEEL_EINVAL, "protocol message '%s' has no body", id);
    const char *type = m->body->type_url;
    const char *slash = strrchr(type, '/');
    if (strcmp(slash ? slash + 1 : type, REQUEST_TYPE) != 0)
        return keel_error_set(err, KEEL_EUNIMPLEMENTED,
                              "protocol message '%s' carries %s, which keel does not handle", id,
                              type);
    keel_pb_update_request *r = NULL;
    keel_error why;
    int rc = keel_proto_unpack(&temporal__api__update__v1__request__descriptor, m->body->value.data,
                               m->body->value.len, (ProtobufCMessage **)&r, &why);
    rc = rc == KEEL_OK ? take(r, out, err)
                       : keel_error_set(err, KEEL_EINVAL,
                                        "protocol message '%s': its update request does not "
                                        "decode: %s",
                                        id, why.message);
    if (r)
        FREE_PB(r);
    if (rc == KEEL_EINVAL && m->protocol_instance_id && m->protocol_instance_id[0]) {
        /* Unusable, but it names its update: keep what is needed to reject it. */
        keel_update_request_dispose(out);
        if ((out->update_id = strdup(m->protocol_instance_id)) == NULL ||
            (out->name = strdup("")) == NULL || (out->args_json = strdup("null")) == NULL ||
            (out->problem = strdup(err ? err->message : "malformed update request")) == NULL)
            rc = oom(err);
        else
            rc = KEEL_OK;
    }
    if (rc == KEEL_OK && (out->message_id = strdup(id)) == NULL)
        rc = oom(err);
    if (rc == KEEL_OK &&
        m->sequencing_id_case == TEMPORAL__API__PROTOCOL__V1__MESSAGE__SEQUENCING_ID_EVENT_ID)
        out->sequencing_event_id = m->event_id;
    if (rc != KEEL_OK)
        keel_update_request_dispose(out);
    return rc;
}

/* A message for update_id with `suffix` as its id and `body` (of type_name) packed into it.
 * body is only read. */
static keel_pb_message *new_message(const char *update_id, const char *suffix,
                                    const char *type_name, const ProtobufCMessage *body,
                                    keel_error *err)
{
    keel_pb_message *m = malloc(sizeof *m);
    Google__Protobuf__Any *any = malloc(sizeof *any);
    if (m == NULL || any == NULL) {
        free(m);
        free(any);
        oom(err);
        return NULL;
    }
    temporal__api__protocol__v1__message__init(m);
    google__protobuf__any__init(any);
    m->body = any;
    size_t n = protobuf_c_message_get_packed_size(body);
    size_t tn = strlen(TYPE_URL_PREFIX) + strlen(type_name) + 1;
    m->id = keel_update_message_id(update_id, suffix);
    m->protocol_instance_id = strdup(update_id);
    any->type_url = malloc(tn);
    any->value.data = malloc(n ? n : 1);
    if (!m->id || !m->protocol_instance_id || !any->type_url || !any->value.data) {
        FREE_PB(m);
        oom(err);
        return NULL;
    }
    snprintf(any->type_url, tn, "%s%s", TYPE_URL_PREFIX, type_name);
    any->value.len = protobuf_c_message_pack(body, any->value.data);
    return m;
}

/* The request to echo back; NULL with *failed false when there is none to echo (an unusable
 * one). */
static keel_pb_update_request *unpack_request(const keel_update_request *r, bool *failed,
                                              keel_error *err)
{
    *failed = false;
    if (r->raw == NULL)
        return NULL;
    keel_pb_update_request *req = NULL;
    /* The bytes came off the wire (and decoded once already): only memory can fail here. */
    if (keel_proto_unpack(&temporal__api__update__v1__request__descriptor, r->raw, r->raw_len,
                          (ProtobufCMessage **)&req, NULL) != KEEL_OK) {
        *failed = true;
        oom(err);
    }
    return req;
}

keel_pb_message *keel_update_accept(const keel_update_request *r, keel_error *err)
{
    Temporal__Api__Update__V1__Acceptance a = TEMPORAL__API__UPDATE__V1__ACCEPTANCE__INIT;
    bool failed;
    if ((a.accepted_request = unpack_request(r, &failed, err)) == NULL) {
        if (!failed)
            keel_error_set(err, KEEL_EINVAL, "update %s has no request to accept", r->update_id);
        return NULL;
    }
    a.accepted_request_message_id = r->message_id;
    a.accepted_request_sequencing_event_id = r->sequencing_event_id;
    keel_pb_message *m =
        new_message(r->update_id, "accept", "temporal.api.update.v1.Acceptance", &a.base, err);
    FREE_PB(a.accepted_request);
    return m;
}

keel_pb_message *keel_update_reject(const keel_update_request *r, const char *reason,
                                    keel_error *err)
{
    Temporal__Api__Update__V1__Rejection j = TEMPORAL__API__UPDATE__V1__REJECTION__INIT;
    bool failed;
    j.rejected_request = unpack_request(r, &failed, err);
    if (failed)
        return NULL;
    j.rejected_request_message_id = r->message_id;
    j.rejected_request_sequencing_event_id = r->sequencing_event_id;
    j.failure = keel_failure_new_application("UpdateRejected", reason, true, err);
    keel_pb_message *m = j.failure ? new_message(r->update_id, "reject",
                                                 "temporal.api.update.v1.Rejection", &j.base, err)
                                   : NULL;
    if (j.rejected_request)
        FREE_PB(j.rejected_request);
    if (j.failure)
        FREE_PB(j.failure);
    return m;
}

keel_pb_message *keel_update_respond(const char *update_id, const char *result_json,
                                     keel_pb_failure *failure, keel_error *err)
{
    Temporal__Api__Update__V1__Response resp = TEMPORAL__API__UPDATE__V1__RESPONSE__INIT;
    Temporal__Api__Update__V1__Meta meta = TEMPORAL__API__UPDATE__V1__META__INIT;
    Temporal__Api__Update__V1__Outcome outcome = TEMPORAL__API__UPDATE__V1__OUTCOME__INIT;
    meta.update_id = (char *)update_id;
    resp.meta = &meta;
    resp.outcome = &outcome;
    keel_pb_payloads *result = NULL;
    if (failure) {
        outcome.value_case = TEMPORAL__API__UPDATE__V1__OUTCOME__VALUE_FAILURE;
        outcome.failure = failure;
    } else {
        /* An outcome must say success even when the result is empty: the json/plain null. */
        if (keel_payloads_new_json(result_json ? result_json : "null", "update result", &result,
                                   err) != KEEL_OK)
            return NULL;
        outcome.value_case = TEMPORAL__API__UPDATE__V1__OUTCOME__VALUE_SUCCESS;
        outcome.success = result;
    }
    keel_pb_message *m =
        new_message(update_id, "complete", "temporal.api.update.v1.Response", &resp.base, err);
    if (result)
        FREE_PB(result);
    if (failure)
        FREE_PB(failure);
    return m;
}
