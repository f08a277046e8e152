/*
 * cache - the worker's sticky cache: workflow runs kept between tasks, so that a task for a
 * cached run replays only its new events.
 *
 * At most `capacity` runs, least recently used evicted first. A run taken out is the caller's
 * until it is put back: one thread works on a run at a time. A run can be put back pinned, while
 * its task's answer is still being sent: a pinned run is neither evicted nor taken (the cache may
 * exceed its capacity while every run is pinned). Thread-safe.
 */
#ifndef KEEL_WORKER_CACHE_H
#define KEEL_WORKER_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/engine.h"

typedef struct keel_cache keel_cache;

/* A cache of up to capacity runs (0: a cache that keeps nothing). NULL when out of memory. */
keel_cache *keel_cache_new(size_t capacity);

/* Free the cache and every run in it. */
void keel_cache_free(keel_cache *c);

/* Take the run out of the cache (NULL when it is not there); the caller owns it. A pinned run
 * is waited for, up to a bound: its next task can only come after its previous answer was
 * accepted, which is when the pin is about to be released. */
keel_engine *keel_cache_take(keel_cache *c, const char *run_id);

/* Put a run (back) in; the cache owns it now. Evicts the least recently used unpinned run when
 * full. Returns false, having freed e, when the cache keeps nothing (capacity 0) or is out of
 * memory. A pinned run stays until keel_cache_unpin() or keel_cache_drop(). */
bool keel_cache_put(keel_cache *c, const char *run_id, keel_engine *e, bool pinned);

/* Unpin the run's engine e, its task's answer sent: e is compacted first (keel_engine_compact:
 * a cached run keeps only what its next task needs). If another thread put a newer state of the
 * run meanwhile, e was left to its pinner: it is freed now. */
void keel_cache_unpin(keel_cache *c, const char *run_id, keel_engine *e);

/* Remove the run's engine e (its state no longer matches the server's) and free it. */
void keel_cache_drop(keel_cache *c, const char *run_id, keel_engine *e);

/* How many runs are cached; how many were evicted to make room since the start. */
size_t keel_cache_size(keel_cache *c);
uint64_t keel_cache_evictions(keel_cache *c);

#endif
