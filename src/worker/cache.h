/*
 * cache - the worker's sticky cache: workflow runs kept between tasks, so that a task for a
 * cached run replays only its new events.
 *
 * At most `capacity` runs, least recently used evicted first. A run taken out is the caller's
 * until it is put back or dropped: one thread works on a run at a time. Thread-safe.
 */
#ifndef KEEL_WORKER_CACHE_H
#define KEEL_WORKER_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "worker/engine.h"

typedef struct keel_cache keel_cache;

/* A cache of up to capacity runs (0: a cache that keeps nothing). NULL when out of memory. */
keel_cache *keel_cache_new(size_t capacity);

/* Free the cache and every run in it. */
void keel_cache_free(keel_cache *c);

/* Take the run out of the cache (NULL when it is not there). The caller owns the engine. */
keel_engine *keel_cache_take(keel_cache *c, const char *run_id);

/* Put a run (back) in; the cache owns it now. Evicts the least recently used run when full, and
 * frees e at once when the capacity is 0. */
void keel_cache_put(keel_cache *c, const char *run_id, keel_engine *e);

/* How many runs are cached; how many were evicted to make room since the start. */
size_t keel_cache_size(keel_cache *c);
uint64_t keel_cache_evictions(keel_cache *c);

#endif
