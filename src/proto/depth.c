/* depth - a bounded walk over protobuf wire bytes before protobuf-c unpacks them (see depth.h). */
#include "proto/depth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELD_NUMBER 536870911u /* 2^29 - 1 */
#define PATH_SHOWN       6          /* path components an error message names */

enum {
    WIRE_VARINT = 0,
    WIRE_64BIT = 1,
    WIRE_LENGTH = 2,
    WIRE_32BIT = 5,
};

/* A message being walked: its type, where its bytes end, and how it was reached. */
typedef struct frame {
    const ProtobufCMessageDescriptor *desc;
    size_t end;
    const ProtobufCFieldDescriptor *field; /* the parent's field holding it (NULL at the top) */
    uint32_t index;                        /* its element index, for a repeated field */
    uint32_t child_num, child_count;       /* the last nested message entered, and its count */
} frame;

/* A varint of at most max_bytes bytes at data[*pos..end). false when it does not end in time. */
static bool read_varint(const uint8_t *data, size_t end, size_t *pos, unsigned max_bytes,
                        uint64_t *out)
{
    uint64_t v = 0;
    size_t p = *pos;
    for (unsigned i = 0; i < max_bytes && p < end; i++, p++) {
        v |= (uint64_t)(data[p] & 0x7f) << (7 * i);
        if ((data[p] & 0x80) == 0) {
            *pos = p + 1;
            *out = v;
            return true;
        }
    }
    return false;
}

/* One field's header at data[*pos..end): field number and wire type. NULL on success, otherwise
 * what is wrong. Tags are at most 5 bytes, as protobuf-c reads them. */
static const char *read_tag(const uint8_t *data, size_t end, size_t *pos, uint32_t *num,
                            unsigned *wire)
{
    uint64_t tag;
    if (!read_varint(data, end, pos, 5, &tag))
        return "a field tag is cut short";
    if ((tag >> 3) == 0 || (tag >> 3) > MAX_FIELD_NUMBER)
        return "a field number is 0 or above 2^29-1";
    *num = (uint32_t)(tag >> 3);
    *wire = (unsigned)(tag & 7);
    return NULL;
}

/* Skip a value that is not length-delimited; *pos is at the value. */
static const char *skip_value(const uint8_t *data, size_t end, size_t *pos, unsigned wire)
{
    uint64_t v;
    switch (wire) {
    case WIRE_VARINT:
        return read_varint(data, end, pos, 10, &v) ? NULL : "a varint is cut short";
    case WIRE_64BIT:
        if (end - *pos < 8)
            return "a 64-bit value is cut short";
        *pos += 8;
        return NULL;
    case WIRE_32BIT:
        if (end - *pos < 4)
            return "a 32-bit value is cut short";
        *pos += 4;
        return NULL;
    default:
        return wire == 3 || wire == 4 ? "it uses groups, which keel does not read"
                                      : "a field has an unknown wire type";
    }
}

/* The length of a length-delimited value at data[*pos..end), which must fit before end.
 * Lengths are at most 5 bytes, as protobuf-c reads them. */
static const char *read_length(const uint8_t *data, size_t end, size_t *pos, size_t *len)
{
    uint64_t l;
    if (!read_varint(data, end, pos, 5, &l))
        return "a length is cut short";
    if (l > end - *pos)
        return "a length runs past the end of its message";
    *len = (size_t)l;
    return NULL;
}

/* "events[1].activity_task_failed_event_attributes.failure.cause..." for frames 1..n-1 and the
 * field that would have been level n+1. */
static void path_text(const frame *st, int n, const ProtobufCFieldDescriptor *deeper,
                      uint32_t deeper_index, char *out, size_t outsz)
{
    size_t o = 0;
    out[0] = '\0';
    int shown = 0;
    for (int i = 1; i <= n && o < outsz; i++) {
        const ProtobufCFieldDescriptor *f = i < n ? st[i].field : deeper;
        uint32_t index = i < n ? st[i].index : deeper_index;
        if (shown == PATH_SHOWN) {
            snprintf(out + o, outsz - o, "...");
            return;
        }
        int w = f->label == PROTOBUF_C_LABEL_REPEATED
                    ? snprintf(out + o, outsz - o, "%s%s[%u]", shown ? "." : "", f->name, index)
                    : snprintf(out + o, outsz - o, "%s%s", shown ? "." : "", f->name);
        if (w < 0)
            return;
        o += (size_t)w;
        shown++;
    }
}

int keel_proto_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                     int max_depth, bool *too_deep, keel_error *err)
{
    if (too_deep)
        *too_deep = false;
    if (max_depth > KEEL_PROTO_MAX_DEPTH)
        max_depth = KEEL_PROTO_MAX_DEPTH;
    if (max_depth < 1)
        max_depth = 1;
    if (data == NULL && len > 0)
        return keel_error_set(err, KEEL_EINVAL, "%s: no bytes to read", desc->name);
    frame st[KEEL_PROTO_MAX_DEPTH];
    int top = 0;
    st[0] = (frame){.desc = desc, .end = len};
    size_t pos = 0, at = 0;
    const char *bad = NULL;
    for (;;) {
        while (pos == st[top].end) {
            if (top == 0)
                return KEEL_OK;
            top--;
        }
        frame *fr = &st[top];
        at = pos;
        uint32_t num;
        unsigned wire;
        if ((bad = read_tag(data, fr->end, &pos, &num, &wire)) != NULL)
            break;
        if (wire != WIRE_LENGTH) {
            if ((bad = skip_value(data, fr->end, &pos, wire)) != NULL)
                break;
            continue;
        }
        size_t n;
        if ((bad = read_length(data, fr->end, &pos, &n)) != NULL)
            break;
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(fr->desc, num);
        if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE) {
            pos += n; /* a string, bytes, packed scalars or an unknown field: not entered */
            continue;
        }
        uint32_t index = num == fr->child_num ? fr->child_count + 1 : 0;
        fr->child_num = num;
        fr->child_count = index;
        if (top + 1 >= max_depth) {
            char path[256];
            path_text(st, top + 1, f, index, path, sizeof path);
            if (too_deep)
                *too_deep = true;
            return keel_error_set(err, KEEL_EINVAL, "%s nested deeper than %d messages (at %s)",
                                  desc->name, max_depth, path);
        }
        st[++top] = (frame){.desc = f->descriptor, .end = pos + n, .field = f, .index = index};
    }
    return keel_error_set(err, KEEL_EINVAL, "not a valid %s: %s (field at byte %zu of %zu)",
                          desc->name, bad, at, len);
}

int keel_proto_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                      ProtobufCMessage **out, keel_error *err)
{
    *out = NULL;
    int rc = keel_proto_check(desc, data, len, KEEL_PROTO_MAX_DEPTH, NULL, err);
    if (rc != KEEL_OK)
        return rc;
    *out = protobuf_c_message_unpack(desc, NULL, len, data);
    if (*out == NULL)
        return keel_error_set(err, KEEL_EINVAL, "not a valid %s (%zu bytes)", desc->name, len);
    return KEEL_OK;
}

int keel_proto_unpack_pruned(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                             size_t len, ProtobufCMessage **out, size_t *pruned, keel_error *err)
{
    *out = NULL;
    if (pruned)
        *pruned = 0;
    if (data == NULL && len > 0)
        return keel_error_set(err, KEEL_EINVAL, "%s: no bytes to read", desc->name);
    uint8_t *kept = malloc(len ? len : 1);
    if (kept == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory reading a %s", desc->name);
    size_t n_kept = 0, pos = 0, start = 0, left_out = 0;
    const char *bad = NULL;
    while (pos < len && bad == NULL) {
        start = pos;
        uint32_t num;
        unsigned wire;
        size_t n;
        if ((bad = read_tag(data, len, &pos, &num, &wire)) != NULL)
            break;
        if (wire != WIRE_LENGTH) {
            bad = skip_value(data, len, &pos, wire);
        } else if ((bad = read_length(data, len, &pos, &n)) == NULL) {
            const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, num);
            if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                bool deep;
                keel_error sub;
                if (keel_proto_check(f->descriptor, data + pos, n, KEEL_PROTO_MAX_DEPTH - 1, &deep,
                                     &sub) != KEEL_OK) {
                    if (!deep) {
                        free(kept);
                        return keel_error_set(err, KEEL_EINVAL, "not a valid %s: in %s: %s",
                                              desc->name, f->name, sub.message);
                    }
                    pos += n;
                    left_out++;
                    continue; /* this occurrence is left out */
                }
            }
            pos += n;
        }
        if (bad == NULL) {
            memcpy(kept + n_kept, data + start, pos - start);
            n_kept += pos - start;
        }
    }
    if (bad != NULL) {
        free(kept);
        return keel_error_set(err, KEEL_EINVAL, "not a valid %s: %s (field at byte %zu of %zu)",
                              desc->name, bad, start, len);
    }
    *out = protobuf_c_message_unpack(desc, NULL, n_kept, kept);
    free(kept);
    if (*out == NULL)
        return keel_error_set(err, KEEL_EINVAL, "not a valid %s (%zu bytes)", desc->name, len);
    if (pruned)
        *pruned = left_out;
    return KEEL_OK;
}
