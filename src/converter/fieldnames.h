/*
 * fieldnames - the proto3 JSON names of a message type's fields, worked out once per type and
 * looked up by hashing, for decoders that meet the same types over and over (protojson reads
 * every history event through HistoryEvent's 60-odd fields).
 *
 * A field's JSON name is its .proto name in lowerCamelCase ("event_id" -> "eventId"), which is
 * what protobuf-c's descriptors do not carry. The tables live for the whole process in one
 * fixed, lock-free table of KEEL_FIELDNAMES_TYPES types: the first thread to ask for a type builds
 * its entry, later ones read it. The types come from the compiled-in descriptors, never from the
 * input, so the table cannot be grown from outside; when it is full keel_fieldnames_of returns
 * NULL and callers fall back to comparing names one by one.
 *
 * Thread safety: every call may run concurrently with any other.
 */
#ifndef KEEL_CONVERTER_FIELDNAMES_H
#define KEEL_CONVERTER_FIELDNAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

/* How many message types the process-wide table holds (a power of two). */
#define KEEL_FIELDNAMES_TYPES 1024

typedef struct keel_fieldnames {
    const ProtobufCMessageDescriptor *d;
    const char **json;  /* json[i]: fields[i]'s JSON name, NUL-terminated */
    uint32_t *json_len; /* its length */
    uint32_t *slot;     /* hash slots: field index + 1, 0 = empty; mask + 1 of them */
    uint32_t mask;
} keel_fieldnames;

/* protoc's JSON name for the .proto field name proto (protobuf-c 1.4 does not record json_name):
 * each underscore dropped and the letter after it upper-cased, "event_id" -> "eventId". Written
 * to out (room for strlen(proto) + 1 bytes), NUL-terminated; returns its length. */
size_t keel_fieldnames_json_name(const char *proto, char *out);

/* The names of d's fields, built on first use and kept until the process ends (never free
 * them); NULL when memory ran out or the table is full. */
const keel_fieldnames *keel_fieldnames_of(const ProtobufCMessageDescriptor *d);

/* Whether key[0..len) is the JSON name of field i (names are short: compared in line). */
static inline bool keel_fieldnames_is(const keel_fieldnames *fn, size_t i, const char *key,
                                      size_t len)
{
    if (fn->json_len[i] != len)
        return false;
    const char *name = fn->json[i];
    for (; len >= 8; len -= 8, name += 8, key += 8) {
        uint64_t a, b;
        memcpy(&a, name, 8);
        memcpy(&b, key, 8);
        if (a != b)
            return false;
    }
    while (len-- > 0)
        if (*name++ != *key++)
            return false;
    return true;
}

/* The index into d->fields of the field whose JSON name is key[0..len), or -1. */
long keel_fieldnames_find(const keel_fieldnames *fn, const char *key, size_t len);

#endif
