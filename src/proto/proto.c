/* Helpers over the generated Temporal API code. */
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

void keel_proto_duration_set(Google__Protobuf__Duration *d, int64_t ms)
{
    google__protobuf__duration__init(d);
    d->seconds = ms / 1000;
    d->nanos = (int32_t)(ms % 1000) * 1000000;
}

int64_t keel_proto_duration_ms(const Google__Protobuf__Duration *d)
{
    if (d == NULL)
        return 0;
    /* Both fields come off the wire: nanos may be out of its documented range, and seconds may
     * be anything. */
    int64_t ms;
    if (__builtin_mul_overflow(d->seconds, (int64_t)1000, &ms) ||
        __builtin_add_overflow(ms, (int64_t)(d->nanos / 1000000), &ms))
        return d->seconds < 0 ? INT64_MIN : INT64_MAX;
    return ms;
}

int64_t keel_proto_timestamp_ms(const Google__Protobuf__Timestamp *ts)
{
    if (ts == NULL)
        return 0;
    int64_t ms;
    if (__builtin_mul_overflow(ts->seconds, (int64_t)1000, &ms) ||
        __builtin_add_overflow(ms, (int64_t)(ts->nanos / 1000000), &ms))
        return ts->seconds < 0 ? INT64_MIN : INT64_MAX;
    return ms;
}

char *keel_proto_strdup(const char *s)
{
    return strdup(s ? s : "");
}

const char *keel_proto_enum_name(const ProtobufCEnumDescriptor *desc, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
    return v ? v->name : NULL;
}

int keel_page_token_next(keel_page_token *t, const ProtobufCBinaryData *next, const char *what,
                         keel_error *err)
{
    if (next->len > 0 && next->len == t->len && memcmp(next->data, t->data, t->len) == 0)
        return keel_error_set(err, KEEL_EPROTOCOL,
                              "%s: the server returned the same page token twice", what);
    uint8_t *copy = NULL;
    if (next->len > 0) {
        if ((copy = malloc(next->len)) == NULL)
            return keel_error_set(err, KEEL_ENOMEM, "%s: out of memory for a page token", what);
        memcpy(copy, next->data, next->len);
    }
    free(t->data);
    t->data = copy;
    t->len = next->len;
    return KEEL_OK;
}

ProtobufCBinaryData keel_page_token_get(const keel_page_token *t)
{
    return (ProtobufCBinaryData){t->len, t->data};
}

void keel_page_token_free(keel_page_token *t)
{
    free(t->data);
    t->data = NULL;
    t->len = 0;
}
