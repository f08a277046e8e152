/* cache - runs kept between workflow tasks, least recently used out first. */
#include "worker/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *run_id;
    keel_engine *engine;
    uint64_t used; /* a tick: larger is more recent */
} entry;

struct keel_cache {
    pthread_mutex_t mu;
    entry *v;
    size_t n, capacity;
    uint64_t tick, evictions;
};

keel_cache *keel_cache_new(size_t capacity)
{
    keel_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    if (capacity && (c->v = calloc(capacity, sizeof *c->v)) == NULL) {
        free(c);
        return NULL;
    }
    c->capacity = capacity;
    pthread_mutex_init(&c->mu, NULL);
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
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Remove entry i, keeping the array dense. Returns its engine. */
static keel_engine *remove_at(keel_cache *c, size_t i)
{
    keel_engine *e = c->v[i].engine;
    free(c->v[i].run_id);
    c->v[i] = c->v[--c->n];
    return e;
}

keel_engine *keel_cache_take(keel_cache *c, const char *run_id)
{
    keel_engine *e = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].run_id, run_id) == 0) {
            e = remove_at(c, i);
            break;
        }
    pthread_mutex_unlock(&c->mu);
    return e;
}

void keel_cache_put(keel_cache *c, const char *run_id, keel_engine *e)
{
    keel_engine *evicted = NULL, *duplicate = NULL;
    char *id = c->capacity ? strdup(run_id) : NULL;
    if (id == NULL) {
        keel_engine_free(e); /* no room at all, or no memory: the run is rebuilt next time */
        return;
    }
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].run_id, run_id) == 0) {
            duplicate = remove_at(c, i); /* a newer state of the same run replaces it */
            break;
        }
    if (c->n == c->capacity) {
        size_t lru = 0;
        for (size_t i = 1; i < c->n; i++)
            if (c->v[i].used < c->v[lru].used)
                lru = i;
        evicted = remove_at(c, lru);
        c->evictions++;
    }
    c->v[c->n++] = (entry){id, e, ++c->tick};
    pthread_mutex_unlock(&c->mu);
    keel_engine_free(duplicate); /* engines are freed outside the lock: dispose may be slow */
    keel_engine_free(evicted);
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
