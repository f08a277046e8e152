/* Helpers over the generated Temporal API code. */
#include "proto/proto.h"

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
    if (d->seconds > INT64_MAX / 1000)
        return INT64_MAX;
    if (d->seconds < INT64_MIN / 1000)
        return INT64_MIN;
    return d->seconds * 1000 + d->nanos / 1000000;
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
