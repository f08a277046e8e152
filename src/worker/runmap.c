/* runmap - a chained hash table over run ids with an insertion-order list (see runmap.h). */
#include "worker/runmap.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_BUCKETS 16

void keel_runmap_init(keel_runmap *m)
{
    memset(m, 0, sizeof *m);
}

void keel_runmap_clear(keel_runmap *m)
{
    for (keel_runmap_entry *en = m->oldest, *next; en != NULL; en = next) {
        next = en->newer;
        free(en);
    }
    free(m->buckets);
    keel_runmap_init(m);
}

uint64_t keel_runmap_hash(const char *run_id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)run_id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static keel_runmap_entry **bucket_of(const keel_runmap *m, uint64_t hash)
{
    return &m->buckets[hash & (m->n_buckets - 1)];
}

keel_runmap_entry *keel_runmap_find(const keel_runmap *m, const char *run_id)
{
    if (m->n == 0)
        return NULL;
    uint64_t h = keel_runmap_hash(run_id);
    for (keel_runmap_entry *en = *bucket_of(m, h); en != NULL; en = en->next)
        if (en->hash == h && strcmp(en->run_id, run_id) == 0)
            return en;
    return NULL;
}

/* Double the buckets (or make the first ones). False when out of memory: the old table stays. */
static bool grow(keel_runmap *m)
{
    size_t n = m->n_buckets ? m->n_buckets * 2 : FIRST_BUCKETS;
    keel_runmap_entry **b = calloc(n, sizeof *b);
    if (b == NULL)
        return false;
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    for (keel_runmap_entry *en = m->oldest; en != NULL; en = en->newer) {
        keel_runmap_entry **slot = bucket_of(m, en->hash);
        en->next = *slot;
        *slot = en;
    }
    return true;
}

keel_runmap_entry *keel_runmap_insert(keel_runmap *m, const char *run_id, void *value)
{
    /* Past one entry per bucket the chains get long: grow (a failed growth only costs speed). */
    if ((m->n_buckets == 0 || m->n >= m->n_buckets) && !grow(m) && m->n_buckets == 0)
        return NULL;
    size_t len = strlen(run_id);
    keel_runmap_entry *en = malloc(sizeof *en + len + 1);
    if (en == NULL)
        return NULL;
    memcpy(en->run_id, run_id, len + 1);
    en->value = value;
    en->pinned = false;
    en->hash = keel_runmap_hash(run_id);
    keel_runmap_entry **slot = bucket_of(m, en->hash);
    en->next = *slot;
    *slot = en;
    en->older = m->newest;
    en->newer = NULL;
    if (m->newest)
        m->newest->newer = en;
    else
        m->oldest = en;
    m->newest = en;
    m->n++;
    return en;
}

void *keel_runmap_remove(keel_runmap *m, keel_runmap_entry *en)
{
    keel_runmap_entry **p = bucket_of(m, en->hash);
    while (*p != en)
        p = &(*p)->next;
    *p = en->next;
    if (en->older)
        en->older->newer = en->newer;
    else
        m->oldest = en->newer;
    if (en->newer)
        en->newer->older = en->older;
    else
        m->newest = en->older;
    m->n--;
    void *value = en->value;
    free(en);
    return value;
}
