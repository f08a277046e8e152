/*
 * depth - unpacking protobuf bytes from outside (the network, a file) without trusting their
 * nesting.
 *
 * protobuf-c's unpack recurses once per nested message and has no limit, so bytes nested a few
 * thousand levels deep (a Failure whose `cause` has a `cause`, ...; the Temporal server accepts
 * 10,000) overflow the stack. Every unpack of outside bytes goes through keel_proto_unpack(): a
 * scan of the wire bytes first, in one linear pass without recursion or allocation, guided by the
 * message descriptors (a length-delimited field whose descriptor is a message - maps included -
 * is entered; unknown fields, strings and bytes are skipped, so a Payload's data or an Any's
 * value is never looked into), refuses messages nested deeper than KEEL_PROTO_MAX_DEPTH before
 * protobuf-c recurses. The scan also refuses wire data it cannot walk (a truncated varint or tag,
 * a length past the end of its message, field number 0 or above 2^29-1, group or unknown wire
 * types) without reading past the buffer; what it lets through, protobuf-c checks as usual.
 *
 * Depth counts messages: the message itself is level 1, each nested message one more (a map entry
 * is a message). Errors are KEEL_EINVAL, e.g.
 * "temporal.api.history.v1.History nested deeper than 100 messages (at
 *  events[1].activity_task_failed_event_attributes.failure.cause.cause...)".
 *
 * Thread safety: no state; any number of calls may run at once.
 */
#ifndef KEEL_PROTO_DEPTH_H
#define KEEL_PROTO_DEPTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "keel/error.h"

/* How deep messages from outside may nest (the same as the JSON path's
 * KEEL_PROTOJSON_MAX_DEPTH). */
#define KEEL_PROTO_MAX_DEPTH 100

/*
 * Walk data[0..len) as a `desc` without unpacking it. KEEL_OK when it nests at most max_depth
 * messages deep (max_depth is capped at KEEL_PROTO_MAX_DEPTH; below 1 it is 1) and every field
 * can be walked. Otherwise KEEL_EINVAL naming the message type and, for too deep a nesting, the
 * limit and the path; *too_deep (may be NULL) says which of the two it was.
 */
int keel_proto_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                     int max_depth, bool *too_deep, keel_error *err);

/*
 * Unpack outside bytes: keel_proto_check() with KEEL_PROTO_MAX_DEPTH, then
 * protobuf_c_message_unpack(). On success *out is a new message the caller frees with
 * protobuf_c_message_free_unpacked(*out, NULL); on failure *out is NULL and err says why
 * (KEEL_EINVAL; a refusal by protobuf-c itself reads "not a valid <type>").
 */
int keel_proto_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                      ProtobufCMessage **out, keel_error *err);

/*
 * What can still be read of bytes keel_proto_unpack() refused as too deep: the message without
 * its top-level fields whose values nest too deep (each such occurrence is left out, so those
 * fields keep their defaults). *pruned (may be NULL) counts the occurrences left out. For when
 * the rest of a message still matters - a workflow task's token, to fail the task. Bytes that
 * are malformed, rather than deep, still fail: KEEL_EINVAL. KEEL_ENOMEM when out of memory.
 */
int keel_proto_unpack_pruned(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                             size_t len, ProtobufCMessage **out, size_t *pruned, keel_error *err);

#endif
