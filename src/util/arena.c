/* arena - bump allocation from large blocks, released at once (see arena.h). */
#include "util/arena.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN alignof(max_align_t)

/* A block: its header, then its bytes (the header's size keeps them max_align_t aligned). */
typedef struct block {
    union {
        struct {
            struct block *prev;
            size_t size; /* bytes after the header */
        } h;
        max_align_t align;
    } u;
} block;

struct keel_arena {
    block *head;     /* the block being filled (own-size blocks are linked behind it) */
    char *cur, *end; /* the free bytes of head */
    char *last;      /* the latest allocation from head, for keel_arena_grow in place */
    size_t next;     /* the size of the next shared block */
    size_t used, reserved;
};

/* Each thread keeps the largest block of its last arena, up to KEEL_ARENA_MAX_BLOCK, for its
 * next arena: giving megabytes back to the C library on every free makes it return them to the
 * kernel (trimming the heap), and the next decode faults every page in again - which cost more
 * than all the mallocs the arena saves. The key's destructor frees it when the thread ends. */
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static bool cache_ok;

static void cache_init(void)
{
    cache_ok = pthread_key_create(&cache_key, free) == 0;
}

/* The thread's kept block, taken out of the cache; NULL when there is none. */
static block *cache_take(void)
{
    if (pthread_once(&cache_once, cache_init) != 0 || !cache_ok)
        return NULL;
    block *b = pthread_getspecific(cache_key);
    if (b != NULL)
        pthread_setspecific(cache_key, NULL);
    return b;
}

/* Keeps b for the thread's next arena when it is larger than the kept one; frees the other. */
static void cache_put(block *b)
{
    if (pthread_once(&cache_once, cache_init) != 0 || !cache_ok) {
        free(b);
        return;
    }
    block *kept = pthread_getspecific(cache_key);
    if (kept != NULL && kept->u.h.size >= b->u.h.size) {
        free(b);
        return;
    }
    if (pthread_setspecific(cache_key, b) != 0) {
        free(b);
        return;
    }
    free(kept);
}

keel_arena *keel_arena_new(void)
{
    keel_arena *a = calloc(1, sizeof *a);
    if (a != NULL)
        a->next = KEEL_ARENA_FIRST_BLOCK;
    return a;
}

void keel_arena_free(keel_arena *a)
{
    if (a == NULL)
        return;
    block *keep = NULL;
    for (block *b = a->head; b != NULL;) {
        block *prev = b->u.h.prev;
        if (b->u.h.size <= KEEL_ARENA_MAX_BLOCK && (keep == NULL || b->u.h.size > keep->u.h.size)) {
            free(keep);
            keep = b;
        } else {
            free(b);
        }
        b = prev;
    }
    if (keep != NULL)
        cache_put(keep);
    free(a);
}

static block *block_new(keel_arena *a, size_t size)
{
    if (size > SIZE_MAX - sizeof(block))
        return NULL;
    block *b = malloc(sizeof(block) + size);
    if (b == NULL)
        return NULL;
    b->u.h.size = size;
    a->reserved += sizeof(block) + size;
    return b;
}

/* size bytes at the given alignment (a power of two no larger than ALIGN). */
static void *take(keel_arena *a, size_t size, size_t align)
{
    if (a->head != NULL) {
        uintptr_t at = ((uintptr_t)a->cur + (align - 1)) & ~(uintptr_t)(align - 1);
        if (at <= (uintptr_t)a->end && size <= (size_t)((uintptr_t)a->end - at)) {
            a->last = (char *)at;
            a->cur = (char *)at + size;
            a->used += size;
            return a->last;
        }
    }
    if (size > a->next / 2) { /* a block of its own, behind the one being filled */
        block *b = block_new(a, size);
        if (b == NULL)
            return NULL;
        if (a->head != NULL) {
            b->u.h.prev = a->head->u.h.prev;
            a->head->u.h.prev = b;
        } else {
            b->u.h.prev = NULL;
            a->head = b;
            a->cur = a->end = (char *)(b + 1) + size;
            a->last = NULL;
        }
        a->used += size;
        return b + 1;
    }
    block *b = a->head == NULL ? cache_take() : NULL;
    if (b != NULL && b->u.h.size < a->next) { /* too small to start with: a fresh one */
        free(b);
        b = NULL;
    }
    if (b != NULL) {
        a->next = b->u.h.size;
        a->reserved += sizeof(block) + b->u.h.size;
    } else if ((b = block_new(a, a->next)) == NULL)
        return NULL;
    b->u.h.prev = a->head;
    a->head = b;
    a->cur = (char *)(b + 1);
    a->end = a->cur + b->u.h.size;
    if (a->next < KEEL_ARENA_MAX_BLOCK)
        a->next = a->next * 2 < KEEL_ARENA_MAX_BLOCK ? a->next * 2 : KEEL_ARENA_MAX_BLOCK;
    a->last = a->cur; /* a fresh block is aligned for anything */
    a->cur += size;
    a->used += size;
    return a->last;
}

void *keel_arena_alloc(keel_arena *a, size_t size)
{
    return take(a, size, ALIGN);
}

void *keel_arena_calloc(keel_arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *p = take(a, n * size, ALIGN);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

char *keel_arena_strndup(keel_arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = take(a, len + 1, 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *keel_arena_grow(keel_arena *a, void *p, size_t old_size, size_t new_size)
{
    if (p != NULL && new_size <= old_size)
        return p;
    if (p != NULL && p == a->last && (char *)p + old_size == a->cur &&
        new_size - old_size <= (size_t)(a->end - a->cur)) {
        a->cur += new_size - old_size;
        a->used += new_size - old_size;
        return p;
    }
    void *q = take(a, new_size, ALIGN);
    if (q != NULL && old_size > 0)
        memcpy(q, p, old_size);
    return q;
}

size_t keel_arena_used(const keel_arena *a)
{
    return a->used;
}

size_t keel_arena_reserved(const keel_arena *a)
{
    return a->reserved;
}

static void *pb_alloc(void *data, size_t size)
{
    return keel_arena_alloc(data, size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

ProtobufCAllocator keel_arena_protobuf_allocator(keel_arena *a)
{
    return (ProtobufCAllocator){.alloc = pb_alloc, .free = pb_free, .allocator_data = a};
}
