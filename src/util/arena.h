/*
 * arena - a bump allocator for data that is built piece by piece and released all at once: a
 * decoded history (the replayer's JSON and binary decodes) is thousands of small strings, arrays
 * and messages that would otherwise be one malloc and one free each.
 *
 * Memory comes from blocks taken with malloc: the first of KEEL_ARENA_FIRST_BLOCK bytes, each
 * next one twice the last, up to KEEL_ARENA_MAX_BLOCK; a request larger than half a block gets
 * a block of its own. Nothing is freed on its own: keel_arena_free() releases every block, and
 * with them everything allocated from the arena. Running out of memory returns NULL (callers
 * report KEEL_ENOMEM); it never aborts, and the arena stays usable.
 *
 * Each thread keeps one block (the largest of the last arena it freed, at most
 * KEEL_ARENA_MAX_BLOCK) for the next arena it fills, so that decoding one history after another
 * does not hand megabytes back to the kernel and fault them in again each time; the block is
 * freed when the thread exits.
 *
 * Not thread-safe: one arena belongs to one thread at a time (it may be freed by another).
 */
#ifndef KEEL_UTIL_ARENA_H
#define KEEL_UTIL_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* The first block's size, and the cap on a shared block's size (a larger single request gets a
 * block of exactly its size). */
#define KEEL_ARENA_FIRST_BLOCK ((size_t)64 * 1024)
#define KEEL_ARENA_MAX_BLOCK   ((size_t)4 * 1024 * 1024)

typedef struct keel_arena keel_arena;

/* A new empty arena (no block is taken until the first allocation), or NULL when out of memory.
 * The caller frees it with keel_arena_free. */
keel_arena *keel_arena_new(void);

/* Releases every block and the arena itself. NULL is allowed. */
void keel_arena_free(keel_arena *a);

/* size bytes aligned for any type (max_align_t), uninitialised; NULL when out of memory. A size
 * of 0 returns a valid unique-enough pointer that must not be read or written. */
void *keel_arena_alloc(keel_arena *a, size_t size);

/* n * size bytes aligned for any type, zeroed; NULL when out of memory or n * size overflows. */
void *keel_arena_calloc(keel_arena *a, size_t n, size_t size);

/* A copy of s[0..len) with a NUL after it (byte-aligned); NULL when out of memory. */
char *keel_arena_strndup(keel_arena *a, const char *s, size_t len);

/* Grows the allocation p of old_size bytes to new_size bytes, keeping its contents: in place
 * when p is the arena's latest allocation and its block has room, else by copying into a new
 * allocation (the old one stays allocated until the arena is freed). p may be NULL (old_size
 * 0). The added bytes are uninitialised. A new_size below old_size returns p. NULL when out of
 * memory; p is then unchanged. */
void *keel_arena_grow(keel_arena *a, void *p, size_t old_size, size_t new_size);

/* Bytes handed out so far, and bytes in the arena's blocks (for tests and profiling). */
size_t keel_arena_used(const keel_arena *a);
size_t keel_arena_reserved(const keel_arena *a);

/* A protobuf-c allocator drawing from a: its alloc is keel_arena_alloc, its free does nothing.
 * Messages unpacked with it (protobuf_c_message_unpack(desc, &alloc, ...)) live until the arena
 * is freed; passing it to protobuf_c_message_free_unpacked is harmless but frees nothing. */
ProtobufCAllocator keel_arena_protobuf_allocator(keel_arena *a);

#endif
