/*
 * transport - unary gRPC calls to a Temporal frontend, over HTTP/2 (nghttp2) and TLS (OpenSSL).
 *
 * A transport keeps one connection (opened on the first call, reopened when lost or when the
 * server sends GOAWAY) built from keel_connect_options (plaintext, TLS, mTLS, API key). Every
 * call carries the metadata the official SDKs send (client-name, client-version,
 * temporal-namespace, authorization) and a deadline (also sent as grpc-timeout), and maps the gRPC
 * status into a keel_error whose message names the RPC, the address and the status.
 *
 * Calls are asynchronous underneath: the thread that starts a call writes it to the socket
 * itself, and one thread per transport ("keel-net") reads every answer, keeps deadlines, retries
 * and keepalive pings, and runs the callbacks. keel_transport_call_async() starts a call and
 * returns; its callback runs later on the network thread. keel_transport_call() is the same call
 * waited for on a condition variable by the calling thread, which also decodes the answer (so
 * large answers are not decoded on the shared thread).
 *
 * Thread safety: a transport may be used by many threads at once. It must outlive every call
 * made on it; keel_transport_free() cancels calls still in flight (their callbacks run, with
 * KEEL_ECANCELLED) and waits for them.
 */
#ifndef KEEL_TRANSPORT_H
#define KEEL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "keel/error.h"
#include "keel/metrics.h"
#include "keel/options.h"

#define KEEL_WORKFLOW_SERVICE "temporal.api.workflowservice.v1.WorkflowService"
#define KEEL_OPERATOR_SERVICE "temporal.api.operatorservice.v1.OperatorService"

/* Responses up to this size are accepted: history pages can be large (the SDKs use the same). */
#define KEEL_MAX_RECEIVE_BYTES (128 * 1024 * 1024)

typedef struct keel_transport keel_transport;

/*
 * A way to abandon calls from another thread: keel_call_cancel_trigger() cancels the call in
 * flight (a long poll, say), or one waiting to retry, and every later call made with the same
 * handle fails at once with KEEL_ECANCELLED, retries included. A handle serves one call at a time.
 * Create with _new, free with _free after no call uses it.
 */
typedef struct keel_call_cancel keel_call_cancel;
keel_call_cancel *keel_call_cancel_new(void);
void keel_call_cancel_trigger(keel_call_cancel *c);
bool keel_call_cancel_triggered(keel_call_cancel *c);
void keel_call_cancel_free(keel_call_cancel *c);

/* One RPC: its service, its method name (for the path and for error messages). */
typedef struct keel_rpc {
    const char *service; /* KEEL_WORKFLOW_SERVICE, KEEL_OPERATOR_SERVICE */
    const char *method;  /* "GetSystemInfo" */
} keel_rpc;

typedef struct keel_call_options {
    /* Overall deadline for the call, retries included; 0 means the transport's rpc_timeout_ms. */
    int64_t timeout_ms;
    /* Retry retryable failures with exponential backoff until the deadline. */
    bool retry;
    /* Sent as the temporal-namespace header; NULL for calls that name no namespace. */
    const char *namespace;
    /* NULL, or a handle another thread may use to abandon the call. */
    keel_call_cancel *cancel;
    /* NULL, or where a response refused for nesting deeper than KEEL_PROTO_MAX_DEPTH
     * (proto/depth.h) is still delivered in part: without its top-level fields that nest too
     * deep, so that the caller can tell what it was about (a workflow task's token). The call
     * fails all the same (KEEL_EPROTOCOL naming the limit); *partial is NULL or a message the
     * caller frees with protobuf_c_message_free_unpacked(). */
    ProtobufCMessage **partial;
} keel_call_options;

/*
 * Create a transport. The channel connects lazily, on the first call, so an unreachable
 * server is reported by that call. Files named in opts (CA, client cert and key) are read now and
 * must be PEM. On success the caller owns *out and frees it with keel_transport_free().
 */
int keel_transport_new(keel_transport **out, const keel_connect_options *opts, keel_error *err);

/* Close the channel and free the transport. NULL is allowed. */
void keel_transport_free(keel_transport *t);

/*
 * Record temporal_request / temporal_long_request (Poll* methods) counts, failures and latency
 * for every call attempt into m, labelled by namespace and operation (the RPC's method name), as
 * the SDKs do; NULL stops. Call it before the transport is shared between threads; m must
 * outlive the transport or a later call with NULL.
 */
void keel_transport_set_metrics(keel_transport *t, keel_metrics *m);

/* The address the transport connects to. Borrowed: valid until keel_transport_free(). */
const char *keel_transport_address(const keel_transport *t);

/* The identity given in the options, or the default "<pid>@<hostname>". Borrowed. */
const char *keel_transport_identity(const keel_transport *t);

/* The namespace given in the options. Borrowed. */
const char *keel_transport_namespace(const keel_transport *t);

/*
 * Make a unary call: encode request, send it, decode the answer as response_type.
 * On success *response is a new message the caller frees with
 * protobuf_c_message_free_unpacked(*response, NULL). On failure *response is NULL and err says
 * what happened; a response the peer sent that does not decode, or that nests deeper than
 * KEEL_PROTO_MAX_DEPTH messages, is KEEL_EPROTOCOL (and is not retried).
 * opts may be NULL (defaults: transport timeout, retry on).
 * The calling thread waits; it must not be the transport's network thread (a callback of
 * keel_transport_call_async()): that is refused with KEEL_EINTERNAL.
 */
int keel_transport_call(keel_transport *t, keel_rpc rpc, const ProtobufCMessage *request,
                        const ProtobufCMessageDescriptor *response_type,
                        ProtobufCMessage **response, const keel_call_options *opts,
                        keel_error *err);

/*
 * The asynchronous form of keel_transport_call(): the request is encoded before the function
 * returns (the caller may free it at once), the call and its retries then run on the transport's
 * network thread, and `done` runs exactly once on that thread when the call is over:
 *
 *   rc        KEEL_OK, or the error code of err
 *   response  on KEEL_OK a new message of response_type, owned by the callback (free it with
 *             protobuf_c_message_free_unpacked()); NULL otherwise
 *   partial   NULL, or (only when opts->partial was non-NULL) what keel_call_options.partial
 *             describes, owned by the callback; opts->partial itself is not written
 *   err       what failed (rc != KEEL_OK), valid during the callback only
 *
 * Callbacks must be short and must not block (no keel_transport_call(), no waiting on locks held
 * across I/O, no keel_transport_free()): every call on the transport waits while one runs. The
 * answer is decoded on the network thread before the callback runs.
 *
 * Returns KEEL_OK when the call was started (done will run), or an error, with err set, when it
 * could not be (done will not run): bad input, an already triggered cancel handle, a transport
 * being freed, no memory. opts may be NULL; opts->cancel, when set, must outlive the call.
 */
typedef void (*keel_transport_done_fn)(void *userdata, int rc, ProtobufCMessage *response,
                                       ProtobufCMessage *partial, const keel_error *err);
int keel_transport_call_async(keel_transport *t, keel_rpc rpc, const ProtobufCMessage *request,
                              const ProtobufCMessageDescriptor *response_type,
                              const keel_call_options *opts, keel_transport_done_fn done,
                              void *userdata, keel_error *err);

/*
 * The same call, with the answer handed over undecoded, so that a large one (a workflow task's
 * history) is decoded on the caller's own thread rather than on the network thread that
 * every call shares. `done` runs as above; on KEEL_OK, reply is the callback's: pass it (from any
 * thread, later) to keel_transport_reply_decode(), or drop it with keel_transport_reply_free().
 * It must be used before the transport is freed. On failure reply is NULL.
 */
typedef struct keel_transport_reply keel_transport_reply;
typedef void (*keel_transport_reply_fn)(void *userdata, int rc, keel_transport_reply *reply,
                                        const keel_error *err);
int keel_transport_call_async_reply(keel_transport *t, keel_rpc rpc,
                                    const ProtobufCMessage *request, const keel_call_options *opts,
                                    keel_transport_reply_fn done, void *userdata, keel_error *err);

/*
 * Decode reply as response_type and free it (also on failure): as keel_transport_call() would
 * have (KEEL_EPROTOCOL for an answer that does not decode or nests too deep; partial as
 * keel_call_options.partial says, may be NULL). Records the attempt's metrics. On success *response
 * is a new message the caller frees with protobuf_c_message_free_unpacked().
 */
int keel_transport_reply_decode(keel_transport_reply *reply,
                                const ProtobufCMessageDescriptor *response_type,
                                ProtobufCMessage **response, ProtobufCMessage **partial,
                                keel_error *err);
void keel_transport_reply_free(keel_transport_reply *reply);
/* The answer's size in bytes (its message, without the gRPC frame). reply is borrowed. */
size_t keel_transport_reply_len(const keel_transport_reply *reply);

/*
 * The byte-level halves of a call, exposed for the fuzz targets (tests/fuzz/fuzz_transport.c,
 * tests/fuzz/fuzz_h2answer.c):
 *
 * keel_transport_decode() reads n bytes of a response as `type`: refused (KEEL_EPROTOCOL, the
 * message naming `what` and the reason) when they nest deeper than KEEL_PROTO_MAX_DEPTH or do
 * not decode; *partial as keel_call_options.partial says. On success *out is a new message the
 * caller frees with protobuf_c_message_free_unpacked().
 *
 * keel_transport_status_detail() reads grpc-status-details-bin (a google.rpc.Status) and puts
 * the short name of its first detail's type into err->failure_type ("NotFoundFailure"). A
 * detail that does not decode is ignored: the status code and message already say what failed.
 */
int keel_transport_decode(const uint8_t *data, size_t n, const ProtobufCMessageDescriptor *type,
                          ProtobufCMessage **out, ProtobufCMessage **partial, const char *what,
                          keel_error *err);
void keel_transport_status_detail(const uint8_t *data, size_t n, keel_error *err);

/*
 * The answer path of one call without a socket or a thread (tests/fuzz/fuzz_h2answer.c and the
 * unit tests): a client HTTP/2 session with the callbacks and settings every connection uses
 * sends one `rpc` request (an empty message) on stream 1, as a call's attempt does; then
 * server[0..n), what the server sent on the connection from its preface on, is fed to it in
 * pieces of `chunk` bytes (0: all at once), what the client would write back being dropped. The
 * attempt is then judged as a call's is, before any retry or decoding:
 *
 *   KEEL_OK    *msg (malloc'ed, the caller's to free; never NULL) and *len are the one message
 *              the answer's DATA carried, after its 5-byte prefix;
 *   an error   err as the call's callback would get it: the message names the RPC, grpc_status
 *              is the server's status or the one keel gives what happened (a reset stream, an
 *              HTTP error, a cut connection: UNAVAILABLE), failure_type the detail's type.
 *
 * An answer the bytes leave unfinished ends as its deadline would (DEADLINE_EXCEEDED). err may
 * be NULL. Nothing is kept between calls; any thread may call it.
 */
int keel_transport_answer_bytes(keel_rpc rpc, const uint8_t *server, size_t n, size_t chunk,
                                uint8_t **msg, size_t *len, keel_error *err);

/*
 * The delay before retry number `attempt` (1-based) with a budget of budget_ms: 200 ms doubling
 * up to a tenth of the budget (at least 200 ms), then jittered by +/-20 % using `random`
 * (any 32-bit value). Exposed for the unit tests.
 */
int64_t keel_transport_backoff_ms(int attempt, int64_t budget_ms, uint32_t random);

#endif
