/*
 * fieldnames - see fieldnames.h.
 */
#include "converter/fieldnames.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic(keel_fieldnames *) types[KEEL_FIELDNAMES_TYPES];

static uint64_t word(const char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* A few loads, not a pass over every byte: names are short, and a miss only costs a probe. The
 * first, middle and last eight bytes and the length tell apart names that share a prefix and a
 * suffix ("activityTaskCanceledEventAttributes", "activityTaskTimedOutEventAttributes"). */
static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = n * 0x9e3779b97f4a7c15ull;
    if (n >= 8) {
        h ^= word(s) * 0xc2b2ae3d27d4eb4full;
        h ^= word(s + n / 2 - 4) * 0x165667b19e3779f9ull;
        h ^= word(s + n - 8) * 0xd6e8feb86659fd93ull;
    } else {
        for (size_t i = 0; i < n; i++)
            h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

size_t keel_fieldnames_json_name(const char *proto, char *out)
{
    size_t n = 0;
    int upper = 0;
    for (const char *p = proto; *p; p++) {
        if (*p == '_') {
            upper = 1;
            continue;
        }
        out[n++] = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        upper = 0;
    }
    out[n] = '\0';
    return n;
}

/* One allocation: the struct, then the name pointers, lengths, hash slots and the names. */
static keel_fieldnames *build(const ProtobufCMessageDescriptor *d)
{
    size_t n = d->n_fields, chars = 0, slots = 8;
    while (slots < 2 * n)
        slots *= 2;
    for (size_t i = 0; i < n; i++)
        chars += strlen(d->fields[i].name) + 1;
    size_t size = sizeof(keel_fieldnames) + n * sizeof(char *) + n * sizeof(uint32_t) +
                  slots * sizeof(uint32_t) + chars;
    keel_fieldnames *fn = calloc(1, size);
    if (fn == NULL)
        return NULL;
    fn->d = d;
    fn->json = (const char **)(fn + 1);
    fn->json_len = (uint32_t *)(fn->json + n);
    fn->slot = fn->json_len + n;
    fn->mask = (uint32_t)(slots - 1);
    char *text = (char *)(fn->slot + slots);
    for (size_t i = 0; i < n; i++) {
        size_t len = keel_fieldnames_json_name(d->fields[i].name, text);
        fn->json[i] = text;
        fn->json_len[i] = (uint32_t)len;
        text += len + 1;
        size_t s = name_hash(fn->json[i], len) & fn->mask;
        while (fn->slot[s] != 0)
            s = (s + 1) & fn->mask;
        fn->slot[s] = (uint32_t)i + 1;
    }
    return fn;
}

const keel_fieldnames *keel_fieldnames_of(const ProtobufCMessageDescriptor *d)
{
    /* Descriptors are static data a few hundred bytes apart: the address's middle bits hash. */
    size_t at = (size_t)(((uintptr_t)d >> 4) * 0x9e3779b97f4a7c15ull >> 32);
    keel_fieldnames *made = NULL;
    for (size_t probe = 0; probe < KEEL_FIELDNAMES_TYPES; probe++) {
        _Atomic(keel_fieldnames *) *slot = &types[(at + probe) & (KEEL_FIELDNAMES_TYPES - 1)];
        keel_fieldnames *fn = atomic_load_explicit(slot, memory_order_acquire);
        if (fn == NULL) {
            if (made == NULL && (made = build(d)) == NULL)
                return NULL;
            if (atomic_compare_exchange_strong_explicit(slot, &fn, made, memory_order_acq_rel,
                                                        memory_order_acquire))
                return made;
            /* Another thread filled this slot first; fn is what it put there. */
        }
        if (fn->d == d) {
            free(made);
            return fn;
        }
    }
    free(made);
    return NULL;
}

long keel_fieldnames_find(const keel_fieldnames *fn, const char *key, size_t len)
{
    for (size_t s = name_hash(key, len) & fn->mask; fn->slot[s] != 0; s = (s + 1) & fn->mask) {
        uint32_t i = fn->slot[s] - 1;
        if (keel_fieldnames_is(fn, i, key, len))
            return (long)i;
    }
    return -1;
}
