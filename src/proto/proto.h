/*
 * proto - glue between keel and the protobuf-c code generated from the Temporal API (build/).
 *
 * Generated headers are included from here so that the rest of src/ names one header. Helpers
 * convert between well-known types and plain C values.
 */
#ifndef KEEL_PROTO_H
#define KEEL_PROTO_H

#include <stdint.h>

#include "keel/error.h"

#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "temporal/api/operatorservice/v1/request_response.pb-c.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

/* Fill a Duration from milliseconds (d is caller storage, typically on the stack). */
void keel_proto_duration_set(Google__Protobuf__Duration *d, int64_t ms);

/* Milliseconds in a Duration; 0 for NULL. Saturates instead of overflowing. */
int64_t keel_proto_duration_ms(const Google__Protobuf__Duration *d);

/* Unix milliseconds in a Timestamp; 0 for NULL. Saturates instead of overflowing. */
int64_t keel_proto_timestamp_ms(const Google__Protobuf__Timestamp *ts);

/* protobuf-c leaves absent strings as "" but a hand-built message may hold NULL: this treats both
 * the same. Returns a new heap copy (NULL only when out of memory). */
char *keel_proto_strdup(const char *s);

/*
 * A page token carried from one response to the next request. Responses are freed between pages,
 * so the bytes are copied. Zero-initialise; release with keel_page_token_free().
 */
typedef struct keel_page_token {
    uint8_t *data;
    size_t len;
} keel_page_token;

/* Take the response's next_page_token (len 0: no more pages). A token equal to the one just
 * sent means the server pages in place: KEEL_EPROTOCOL naming `what`, rather than a loop
 * without end. KEEL_ENOMEM when out of memory. */
int keel_page_token_next(keel_page_token *t, const ProtobufCBinaryData *next, const char *what,
                         keel_error *err);

/* The token for the next request (borrowed from t). */
ProtobufCBinaryData keel_page_token_get(const keel_page_token *t);

void keel_page_token_free(keel_page_token *t);

/* The name of an enum value as written in the .proto ("INDEXED_VALUE_TYPE_KEYWORD"), or NULL
 * for a value this build does not know. Static storage. */
const char *keel_proto_enum_name(const ProtobufCEnumDescriptor *desc, int value);

#endif
