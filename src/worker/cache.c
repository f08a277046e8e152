/* cache - runs kept between workflow tasks, least recently used out first, found by run id in a
 * hash map (worker/runmap.h). */
#include "worker/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/runmap.h"

/* How long take() waits for a pinned run before treating it as a miss. */
#define PIN_WAIT_MS 2000

struct keel_cache {
    pthread_mutex_t mu;
    pthread_cond_t unpinned;
    keel_runmap runs; /* run id -> keel_engine *, oldest put first */
    size_t capacity;
    uint64_t evictions;
};

keel_cache *keel_cache_new(size_t capacity)
{
    keel_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->capacity = capacity;
    keel_runmap_init(&c->runs);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->unpinned, &attr);
    pthread_condattr_destroy(&attr);
    return c;
}

void keel_cache_free(keel_cache *c)
{
    if (c == NULL)
        return;
    for (keel_runmap_entry *en = c->runs.oldest; en != NULL; en = en->newer)
        keel_engine_free(en->value);
    keel_runmap_clear(&c->runs);
    pthread_cond_destroy(&c->unpinned);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

keel_engine *keel_cache_take(keel_cache *c, const char *run_id)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += PIN_WAIT_MS / 1000;
    pthread_mutex_lock(&c->mu);
    keel_runmap_entry *en;
    while ((en = keel_runmap_find(&c->runs, run_id)) != NULL && en->pinned)
        if (pthread_cond_timedwait(&c->unpinned, &c->mu, &until) == ETIMEDOUT)
            break;
    /* Other threads may have replaced the entry while we waited: look again. */
    en = keel_runmap_find(&c->runs, run_id);
    keel_engine *e = en && !en->pinned ? keel_runmap_remove(&c->runs, en) : NULL;
    pthread_mutex_unlock(&c->mu);
    return e;
}

/* The least recently put unpinned entry, or NULL. */
static keel_runmap_entry *lru(keel_cache *c)
{
    for (keel_runmap_entry *en = c->runs.oldest; en != NULL; en = en->newer)
        if (!en->pinned)
            return en;
    return NULL;
}

bool keel_cache_put(keel_cache *c, const char *run_id, keel_engine *e, bool pinned)
{
    if (c->capacity == 0) {
        keel_engine_free(e); /* no room at all: the run is rebuilt next time */
        return false;
    }
    keel_engine *evicted = NULL, *replaced = NULL;
    pthread_mutex_lock(&c->mu);
    keel_runmap_entry *old = keel_runmap_find(&c->runs, run_id);
    if (old) {
        /* This state supersedes it. A pinned one is still its owner's to free (see unpin). */
        bool owned_elsewhere = old->pinned;
        keel_engine *gone = keel_runmap_remove(&c->runs, old);
        if (!owned_elsewhere)
            replaced = gone;
    }
    if (c->runs.n >= c->capacity) {
        keel_runmap_entry *victim = lru(c);
        if (victim) {
            evicted = keel_runmap_remove(&c->runs, victim);
            c->evictions++;
        }
    }
    /* Room beyond the capacity only ever holds pinned runs. */
    keel_runmap_entry *en = keel_runmap_insert(&c->runs, run_id, e);
    if (en)
        en->pinned = pinned;
    pthread_mutex_unlock(&c->mu);
    /* Engines are freed outside the lock: a workflow's dispose may take its time. */
    keel_engine_free(replaced);
    keel_engine_free(evicted);
    if (en == NULL)
        keel_engine_free(e); /* no memory: the run is rebuilt next time */
    return en != NULL;
}

void keel_cache_unpin(keel_cache *c, const char *run_id, keel_engine *e)
{
    /* Still the pinner's alone (nobody takes a pinned run): trim it to what waiting needs. */
    keel_engine_compact(e);
    pthread_mutex_lock(&c->mu);
    keel_runmap_entry *en = keel_runmap_find(&c->runs, run_id);
    bool held = en && en->value == e;
    if (held) {
        en->pinned = false;
        pthread_cond_broadcast(&c->unpinned);
    }
    pthread_mutex_unlock(&c->mu);
    if (!held)
        keel_engine_free(e); /* replaced while pinned: nobody else will free it */
}

void keel_cache_drop(keel_cache *c, const char *run_id, keel_engine *e)
{
    pthread_mutex_lock(&c->mu);
    keel_runmap_entry *en = keel_runmap_find(&c->runs, run_id);
    if (en && en->value == e) {
        keel_runmap_remove(&c->runs, en);
        pthread_cond_broadcast(&c->unpinned);
    }
    pthread_mutex_unlock(&c->mu);
    keel_engine_free(e); /* dropped, or replaced while pinned: either way it is ours */
}

size_t keel_cache_size(keel_cache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->runs.n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

uint64_t keel_cache_evictions(keel_cache *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->evictions;
    pthread_mutex_unlock(&c->mu);
    return n;
}
