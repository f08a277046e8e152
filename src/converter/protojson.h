/*
 * protojson - the proto3 JSON mapping for protobuf-c messages, both directions, driven by the
 * messages' descriptors.
 *
 * The JSON is what Temporal's own tools read and write: the Web UI's history download,
 * `temporal workflow show -o json`, the server's HTTP API. Field names are lowerCamelCase
 * (decoding also takes the .proto names), fields at their default are left out, 64-bit integers
 * are strings, bytes are base64, enums are their value names, maps are objects, and the
 * well-known types have their special forms: Timestamp "2026-11-23T09:42:09.123Z", Duration
 * "1.500s", wrappers as their plain value, FieldMask "a.b,cD", Empty {}, Any
 * {"@type": url, ...}. Struct, Value and ListValue are not supported (the Temporal API does not
 * use them).
 *
 * Decoding is tolerant where newer servers differ and strict where the input is wrong:
 * - unknown JSON fields are ignored, and so are unknown enum value names (the field keeps its
 *   default; an unknown name in a list or map drops that element) - a newer server may add both;
 * - enums also take numbers (unknown numbers are kept) and the short PascalCase names older
 *   Temporal tools wrote ("WorkflowExecutionStarted" for EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
 *   matched without case and underscores;
 * - integers take JSON numbers or strings; a JSON number for a 64-bit field must be below 2^53
 *   in magnitude (beyond that a double cannot tell neighbouring integers apart - write a string);
 * - `null` means "default"; a field given twice (also once by each name), two members of one
 *   oneof, a wrong JSON type, a value out of range and strings that are not UTF-8 are errors.
 * Errors are KEEL_EINVAL with the JSON path in the message, e.g.
 * "events[3].eventTime: not an RFC 3339 timestamp", or KEEL_ENOMEM.
 *
 * Encoding emits exactly the fields protobuf_c_message_pack() would put on the wire, so
 * encode -> decode -> pack gives the same bytes as pack. A string field that is not valid UTF-8
 * fails the encoding with an error naming the field (proto3 JSON has no way to carry it). Unknown
 * protobuf fields the message kept from the wire are dropped.
 *
 * Any: the packed message is written inline when its type resolves through the options'
 * resolver (keel_protojson_resolve_builtin by default: the well-known types, the Temporal update
 * messages and error details). A type that does not resolve is written as
 * {"@type": url, "value": "<base64 of the packed bytes>"} and decodes back from the same form,
 * so it survives a round trip unchanged.
 *
 * Messages nest at most KEEL_PROTOJSON_MAX_DEPTH deep, in both directions (a failure's cause chain
 * counts one level per cause); deeper input is an error naming the path.
 *
 * Decoded messages are laid out as protobuf_c_message_unpack() lays them out: every string,
 * bytes buffer, repeated array and submessage on the heap (malloc), strings at their default left
 * pointing at protobuf_c_empty_string. One call frees them:
 * protobuf_c_message_free_unpacked(msg, NULL). As protobuf-c strings are NUL-terminated, a string
 * holding "\u0000" ends there.
 *
 * Thread safety: calls on different messages may run concurrently. The only shared state is
 * fieldnames' process-wide table of JSON field names per message type, which is lock-free.
 */
#ifndef KEEL_CONVERTER_PROTOJSON_H
#define KEEL_CONVERTER_PROTOJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <protobuf-c/protobuf-c.h>

#include "keel/error.h"
#include "util/arena.h"

/* How deep messages may nest, in JSON and in protobuf messages being encoded. */
#define KEEL_PROTOJSON_MAX_DEPTH 100

/* Finds the descriptor of a message type by its full name ("temporal.api.update.v1.Request"),
 * for google.protobuf.Any. Returns NULL for a type it does not know. */
typedef const ProtobufCMessageDescriptor *(*keel_protojson_resolver)(const char *full_name,
                                                                     void *ctx);

typedef struct keel_protojson_options {
    keel_protojson_resolver resolve; /* NULL: keel_protojson_resolve_builtin */
    void *resolve_ctx;               /* passed to resolve */
} keel_protojson_options;

/* The default resolver: the protobuf well-known types, temporal.api.update.v1 messages (the
 * bodies of protocol messages) and temporal.api.errordetails.v1 messages (gRPC status details).
 * ctx is unused. A caller's resolver may fall back to this one. */
const ProtobufCMessageDescriptor *keel_protojson_resolve_builtin(const char *full_name, void *ctx);

/* Encode msg as proto3 JSON. Returns a new NUL-terminated string the caller frees with free()
 * (cJSON's allocator; keel does not replace its hooks), or NULL with err set. pretty: indented
 * by two spaces, one field a line. Doubles print exactly (keel_json_print). */
char *keel_protojson_encode(const ProtobufCMessage *msg, bool pretty, keel_error *err);

/* Same, as a cJSON tree the caller owns (cJSON_Delete). opts may be NULL (defaults). Numbers
 * hold their exact values; print the tree with keel_json_print (cJSON_Print would round some
 * doubles to 15 significant digits: 0.30000000000000004 as 0.3). */
cJSON *keel_protojson_to_cjson(const ProtobufCMessage *msg, keel_error *err);
cJSON *keel_protojson_to_cjson_with(const ProtobufCMessage *msg, const keel_protojson_options *opts,
                                    keel_error *err);

/* Decode one JSON value json[0..len) (surrounding whitespace allowed, nothing else) into a new
 * message of type desc. On success *out is a message the caller frees with
 * protobuf_c_message_free_unpacked(*out, NULL); on failure *out is NULL and err names the JSON
 * path that was wrong. The text is read by keel_json_parse's strict rules (keel/json.h): no NUL
 * characters, valid UTF-8, no repeated field names, at most KEEL_JSON_MAX_DEPTH nested - by
 * keel_json_reader, straight into the message without a cJSON tree (an Any's own span is read
 * twice: checked, then parsed as a tree, since its "@type" may come last). It accepts exactly the
 * texts keel_json_parse + keel_protojson_from_cjson accept, with the same result. */
int keel_protojson_decode(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                          ProtobufCMessage **out, keel_error *err);

/* Same, but every string, bytes buffer, array and submessage of the result (and anything a
 * failed decode left behind) is allocated from `arena`: the message is owned by the arena and
 * lives until keel_arena_free(arena). It must NOT be passed to
 * protobuf_c_message_free_unpacked (that would free() arena memory). Accepts exactly the texts
 * keel_protojson_decode accepts, with the same message (same layout: strings at their default
 * still point at protobuf_c_empty_string) and the same errors; only where the memory comes from
 * differs. For the replayer, which decodes a whole history and drops it at once. A NULL arena
 * is KEEL_EINVAL. */
int keel_protojson_decode_arena(const ProtobufCMessageDescriptor *desc, const char *json,
                                size_t len, keel_arena *arena, ProtobufCMessage **out,
                                keel_error *err);

/* Same, from a parsed cJSON tree (borrowed; not modified). opts may be NULL (defaults). */
int keel_protojson_from_cjson(const ProtobufCMessageDescriptor *desc, const cJSON *json,
                              ProtobufCMessage **out, keel_error *err);
int keel_protojson_from_cjson_with(const ProtobufCMessageDescriptor *desc, const cJSON *json,
                                   const keel_protojson_options *opts, ProtobufCMessage **out,
                                   keel_error *err);

/* Standard base64 (RFC 4648 section 4) of data[0..len), with padding, in a new NUL-terminated
 * string the caller frees; NULL when out of memory. data may be NULL when len is 0. */
char *keel_base64_encode(const uint8_t *data, size_t len);

/* Decode text[0..len) written in the standard or the URL-safe alphabet, with or without padding
 * (no whitespace). On success *out is a new buffer of *out_len bytes the caller frees (NULL when
 * the text is empty). KEEL_EINVAL with the offending offset in err, or KEEL_ENOMEM. */
int keel_base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len,
                       keel_error *err);

#endif
