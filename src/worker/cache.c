/* cache - runs kept between workflow tasks, least recently used out first. */
#include "worker/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long take() waits for a pinned run before treating it as a miss. */
#define PIN_WAIT_MS 2000

typedef struct entry {
    char *run_id;
    keel_engine *engine;
    uint64_t used; /* a tick: larger is more recent */
    bool pinned;
} entry;

struct keel_cache {
    pthread_mutex_t mu;
    pthread_cond_t unpinned;
    entry *v;
    size_t n, cap, capacity;
    uint64_t tick, evictions;
};

keel_cache *keel_cache_new(size_t capacity)
{
    keel_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->capacity = capacity;
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
    for (size_t i = 0; i < c->n; i++) {
        keel_engine_free(c->v[i].engine);
        free(c->v[i].run_id);
    }
    free(c->v);
    pthread_cond_destroy(&c->unpinned);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static entry *find(keel_cache *c, const char *run_id)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].run_id, run_id) == 0)
            return &c->v[i];
    return NULL;
}

/* Remove an entry, keeping the array dense. Returns its engine. */
static keel_engine *remove_entry(keel_cache *c, entry *en)
{
    keel_engine *e = en->engine;
    free(en->run_id);
    *en = c->v[--c->n];
    return e;
}

keel_engine *keel_cache_take(keel_cache *c, const char *run_id)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += PIN_WAIT_MS / 1000;
    pthread_mutex_lock(&c->mu);
    entry *en;
    while ((en = find(c, run_id)) != NULL && en->pinned)
        if (pthread_cond_timedwait(&c->unpinned, &c->mu, &until) == ETIMEDOUT)
            break;
    /* Other threads may have moved entries while we waited: look again, never reuse a slot. */
    en = find(c, run_id);
    keel_engine *e = en && !en->pinned ? remove_entry(c, en) : NULL;
    pthread_mutex_unlock(&c->mu);
    return e;
}

/* The least recently used unpinned entry, or NULL. */
static entry *lru(keel_cache *c)
{
    entry *best = NULL;
    for (size_t i = 0; i < c->n; i++)
        if (!c->v[i].pinned && (best == NULL || c->v[i].used < best->used))
            best = &c->v[i];
    return best;
}

bool keel_cache_put(keel_cache *c, const char *run_id, keel_engine *e, bool pinned)
{
    char *id = c->capacity ? strdup(run_id) : NULL;
    if (id == NULL) {
        keel_engine_free(e); /* no room at all, or no memory: the run is rebuilt next time */
        return false;
    }
    keel_engine *evicted = NULL, *replaced = NULL;
    pthread_mutex_lock(&c->mu);
    entry *old = find(c, run_id);
    if (old) {
        /* This state supersedes it. A pinned one is still its owner's to free (see unpin). */
        bool owned_elsewhere = old->pinned;
        keel_engine *gone = remove_entry(c, old);
        if (!owned_elsewhere)
            replaced = gone;
    }
    if (c->n >= c->capacity) {
        entry *victim = lru(c);
        if (victim) {
            evicted = remove_entry(c, victim);
            c->evictions++;
        }
    }
    bool ok = true;
    if (c->n == c->cap) {
        /* Room beyond the capacity only ever holds pinned runs. */
        size_t cap = c->cap ? c->cap * 2 : (c->capacity < 16 ? c->capacity + 1 : 16);
        entry *grown = realloc(c->v, cap * sizeof *grown);
        if (grown == NULL)
            ok = false;
        else {
            c->v = grown;
            c->cap = cap;
        }
    }
    if (ok)
        c->v[c->n++] = (entry){id, e, ++c->tick, pinned};
    pthread_mutex_unlock(&c->mu);
    /* Engines are freed outside the lock: a workflow's dispose may take its time. */
    keel_engine_free(replaced);
    keel_engine_free(evicted);
    if (!ok) {
        free(id);
        keel_engine_free(e);
    }
    return ok;
}

void keel_cache_unpin(keel_cache *c, const char *run_id, keel_engine *e)
{
    pthread_mutex_lock(&c->mu);
    entry *en = find(c, run_id);
    bool held = en && en->engine == e;
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
    entry *en = find(c, run_id);
    if (en && en->engine == e) {
        remove_entry(c, en);
        pthread_cond_broadcast(&c->unpinned);
    }
    pthread_mutex_unlock(&c->mu);
    keel_engine_free(e); /* dropped, or replaced while pinned: either way it is ours */
}

size_t keel_cache_size(keel_cache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
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
