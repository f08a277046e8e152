/*
 * payload - Temporal payloads in the standard converter's encodings.
 *
 * The official SDKs and the Web UI agree on a payload's `encoding` metadata: "json/plain" (the
 * data is JSON text), "binary/null" (no data: a null value), "binary/plain" (raw bytes). keel
 * writes and reads the same, so a value keel stores reads as JSON in the Web UI and a value an
 * official client sends reaches keel unchanged.
 *
 * Payloads built here live on the heap in the layout protobuf-c's unpack produces, so one call
 * frees them whether they were built or received: protobuf_c_message_free_unpacked(&p->base, NULL).
 */
#ifndef KEEL_CONVERTER_PAYLOAD_H
#define KEEL_CONVERTER_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/execution.h"
#include "temporal/api/common/v1/message.pb-c.h"

#define KEEL_ENCODING_JSON   "json/plain"
#define KEEL_ENCODING_NULL   "binary/null"
#define KEEL_ENCODING_BINARY "binary/plain"

typedef Temporal__Api__Common__V1__Payload keel_pb_payload;
typedef Temporal__Api__Common__V1__Payloads keel_pb_payloads;

/* A json/plain payload holding json[0..len). The text must be one valid JSON value (surrounding
 * whitespace allowed); it is stored as given. `what` names the value in errors ("input"). */
int keel_payload_new_json(const char *json, size_t len, const char *what, keel_pb_payload **out,
                          keel_error *err);

/* A binary/null payload (the null value). */
int keel_payload_new_null(keel_pb_payload **out, keel_error *err);

/* A binary/plain payload holding a copy of data[0..len). */
int keel_payload_new_bytes(const uint8_t *data, size_t len, keel_pb_payload **out, keel_error *err);

/* Add or replace a metadata entry (value copied). */
int keel_payload_set_metadata(keel_pb_payload *p, const char *key, const char *value,
                              keel_error *err);

/* Whether the payload's `encoding` metadata equals encoding exactly. */
bool keel_payload_encoding_is(const keel_pb_payload *p, const char *encoding);

/* The payload's value as JSON text, NUL-terminated, in a new buffer the caller frees:
 * json/plain as stored (checked to be JSON), binary/null as "null". Other encodings (binary,
 * protobuf, encrypted by a codec) fail with KEEL_EINVAL naming the encoding and `what`. */
int keel_payload_to_json(const keel_pb_payload *p, const char *what, char **json_out,
                         keel_error *err);

/* Payloads holding one json/plain payload: how keel passes a workflow's or activity's single
 * argument. json == NULL means no arguments: *out is NULL. */
int keel_payloads_new_json(const char *json, const char *what, keel_pb_payloads **out,
                           keel_error *err);

/* The first payload of a Payloads as JSON text (caller frees); "null" when there is none. */
int keel_payloads_to_json(const keel_pb_payloads *ps, const char *what, char **json_out,
                          keel_error *err);

/* A Memo whose values are the JSON texts in kv (each checked). Heap, unpack layout; NULL with err
 * set on bad JSON (naming the key) or no memory. */
Temporal__Api__Common__V1__Memo *keel_memo_new(const keel_kv *kv, size_t n, keel_error *err);

/* SearchAttributes from typed JSON values, each payload carrying its `type` metadata as the SDKs
 * send it. Heap, unpack layout; NULL with err set. */
Temporal__Api__Common__V1__SearchAttributes *
keel_search_attributes_new(const keel_search_attribute_value *v, size_t n, keel_error *err);

#endif
