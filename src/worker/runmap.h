/*
 * runmap - the sticky cache's index: run id -> value, in a hash table (chained, doubled when it
 * holds more entries than buckets), with the entries also on a list from the least recently
 * inserted to the most, so that the cache finds a run in constant time and its eviction victim
 * from the old end. Not thread-safe: the cache holds its lock around every call.
 */
#ifndef KEEL_WORKER_RUNMAP_H
#define KEEL_WORKER_RUNMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct keel_runmap_entry {
    void *value;                    /* the caller's (the map never frees it) */
    bool pinned;                    /* the caller's flag, kept with the entry */
    uint64_t hash;                  /* of run_id */
    struct keel_runmap_entry *next; /* in the same bucket */
    struct keel_runmap_entry *older, *newer;
    char run_id[]; /* the key, a copy owned by the entry */
} keel_runmap_entry;

typedef struct keel_runmap {
    keel_runmap_entry **buckets; /* a power of two of them; NULL until the first insert */
    size_t n_buckets, n;
    keel_runmap_entry *oldest, *newest;
} keel_runmap;

/* An empty map: keel_runmap m = {0}; or this. */
void keel_runmap_init(keel_runmap *m);

/* Free the buckets and every entry (not their values: walk from oldest first to free those). */
void keel_runmap_clear(keel_runmap *m);

/* The hash of a run id (FNV-1a, 64 bits); exposed for the tests' collisions. */
uint64_t keel_runmap_hash(const char *run_id);

/* The entry for run_id, or NULL. */
keel_runmap_entry *keel_runmap_find(const keel_runmap *m, const char *run_id);

/* Add run_id -> value as the newest entry (run_id copied; the caller has checked it is not
 * there). NULL when out of memory (the map is unchanged). */
keel_runmap_entry *keel_runmap_insert(keel_runmap *m, const char *run_id, void *value);

/* Remove the entry (from a find or a walk) and free it; returns its value. */
void *keel_runmap_remove(keel_runmap *m, keel_runmap_entry *en);

#endif
