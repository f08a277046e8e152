/*
 * fuzz_transport - what src/transport makes of an answer's parts once HTTP/2 and the gRPC
 * framing are read (fuzz_h2answer and fuzz_grpcwire feed those): a response's bytes
 * (keel_transport_decode: the depth check, protobuf-c's unpack, and the partial read of a response
 * nested too deep), the google.rpc.Status in grpc-status-details-bin
 * (keel_transport_status_detail), and a status message's text (keel_grpc_status_retryable reads it
 * for the server's "retry" hints).
 *
 * Input: one selector byte, then the body. selector % 4: 0 the body is grpc-status-details-bin;
 * 1 a PollWorkflowTaskQueueResponse; 2 a PollActivityTaskQueueResponse; 3 a status message, with
 * selector / 4 as the gRPC status code (0..63: past the last code, 16, too).
 *
 * Properties: a decoded response packs to bytes that pass the depth check again, and so does
 * what the partial read keeps of one refused for depth; the detail's type is a short name (no
 * '/' or '.'), NUL-terminated inside keel_error.failure_type.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto/depth.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"
#include "transport/transport.h"

#define MAX_LEN (256 * 1024)

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* m must pack to bytes the depth check passes: what keel keeps is what it may walk. */
static void packs_within_depth(const ProtobufCMessage *m, const char *how)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *bytes = malloc(len ? len : 1);
    if (bytes == NULL)
        abort();
    protobuf_c_message_pack(m, bytes);
    keel_error err;
    if (keel_proto_check(m->descriptor, bytes, len, KEEL_PROTO_MAX_DEPTH, NULL, &err) != KEEL_OK)
        fuzz_fail("%s %s packs to bytes the depth check refuses: %s", how, m->descriptor->name,
                  err.message);
    free(bytes);
}

static void response(const ProtobufCMessageDescriptor *type, const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = NULL, *partial = NULL;
    keel_error err;
    memset(&err, 0, sizeof err);
    int rc = keel_transport_decode(data, size, type, &m, &partial, "Poll", &err);
    if (rc == KEEL_OK) {
        if (m == NULL || partial != NULL)
            fuzz_fail("keel_transport_decode succeeded with message %p, partial %p", (void *)m,
                      (void *)partial);
        packs_within_depth(m, "a decoded");
        FREE_PB(m);
        return;
    }
    if (m != NULL)
        fuzz_fail("keel_transport_decode failed (%s) but left a message", err.message);
    if (rc != KEEL_EPROTOCOL || strstr(err.message, "Poll: the response") != err.message)
        fuzz_fail("a refused response gives code %d, message '%s'", rc, err.message);
    if (partial) {
        packs_within_depth(partial, "the partial read of a refused");
        FREE_PB(partial);
    }
}

static void status_detail(const uint8_t *data, size_t size)
{
    keel_error err;
    memset(&err, 0, sizeof err);
    memset(err.failure_type, 'x', sizeof err.failure_type);
    err.failure_type[0] = '\0';
    keel_transport_status_detail(data, size, &err);
    const char *end = memchr(err.failure_type, '\0', sizeof err.failure_type);
    if (end == NULL)
        fuzz_fail("the detail's type is not NUL-terminated inside failure_type");
    if (strpbrk(err.failure_type, "/.") != NULL)
        fuzz_fail("the detail's type '%s' is not a short name", err.failure_type);
}

static void status_message(int code, const uint8_t *data, size_t size)
{
    char *msg = fuzz_strndup(data, size);
    keel_error err;
    keel_error_code kc = keel_error_code_from_grpc(code);
    (void)keel_grpc_status_retryable(code, msg, false);
    (void)keel_grpc_status_retryable(code, msg, true);
    keel_error_set(&err, kc, "PollWorkflowTaskQueue failed: %s: %s", keel_grpc_status_name(code),
                   msg);
    if (memchr(err.message, '\0', sizeof err.message) == NULL)
        fuzz_fail("keel_error_set left the message unterminated");
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_LEN)
        return 0;
    unsigned sel = data[0];
    data++;
    size--;
    switch (sel % 4) {
    case 0:
        status_detail(data, size);
        break;
    case 1:
        response(&temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor,
                 data, size);
        break;
    case 2:
        response(&temporal__api__workflowservice__v1__poll_activity_task_queue_response__descriptor,
                 data, size);
        break;
    default:
        status_message((int)(sel / 4), data, size);
        break;
    }
    return 0;
}
