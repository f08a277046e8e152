/* src/util/arena.c: bump allocation from blocks, growth, the protobuf-c allocator, and the
 * block a thread keeps between arenas. */
#include <check.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "temporal/api/common/v1/message.pb-c.h"
#include "util/arena.h"

static bool aligned(const void *p)
{
    return (uintptr_t)p % alignof(max_align_t) == 0;
}

START_TEST(allocations_are_aligned_distinct_and_kept)
{
    keel_arena *a = keel_arena_new();
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(keel_arena_used(a), 0);
    /* Enough small pieces to fill several blocks; each keeps its own bytes. */
    enum { N = 20000 };
    unsigned char **p = malloc(N * sizeof *p);
    ck_assert_ptr_nonnull(p);
    size_t total = 0;
    for (size_t i = 0; i < N; i++) {
        size_t size = 1 + i % 300;
        p[i] = keel_arena_alloc(a, size);
        ck_assert_ptr_nonnull(p[i]);
        ck_assert(aligned(p[i]));
        memset(p[i], (int)(i & 0xff), size);
        total += size;
    }
    size_t wrong = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < 1 + i % 300; k++)
            wrong += p[i][k] != (i & 0xff);
    ck_assert_uint_eq(wrong, 0);
    ck_assert_uint_eq(keel_arena_used(a), total);
    ck_assert_uint_ge(keel_arena_reserved(a), total);
    ck_assert_uint_gt(keel_arena_reserved(a), KEEL_ARENA_FIRST_BLOCK); /* more than one block */
    free(p);
    keel_arena_free(a);
    keel_arena_free(NULL);
}
END_TEST

START_TEST(calloc_strndup_and_overflow)
{
    keel_arena *a = keel_arena_new();
    unsigned char *z = keel_arena_calloc(a, 1000, 7);
    ck_assert_ptr_nonnull(z);
    for (size_t i = 0; i < 7000; i++)
        ck_assert_uint_eq(z[i], 0);
    ck_assert_ptr_null(keel_arena_calloc(a, SIZE_MAX / 2, 3));
    ck_assert_ptr_null(keel_arena_alloc(a, SIZE_MAX - 8));
    ck_assert_ptr_null(keel_arena_strndup(a, "x", SIZE_MAX));
    char *s = keel_arena_strndup(a, "hello, arena", 5);
    ck_assert_str_eq(s, "hello");
    char *e = keel_arena_strndup(a, "", 0);
    ck_assert_str_eq(e, "");
    ck_assert_ptr_nonnull(keel_arena_alloc(a, 0));
    /* Still usable after refusing. */
    ck_assert_ptr_nonnull(keel_arena_alloc(a, 64));
    keel_arena_free(a);
}
END_TEST

START_TEST(large_requests_get_their_own_block)
{
    keel_arena *a = keel_arena_new();
    char *small = keel_arena_alloc(a, 16);
    size_t before = keel_arena_reserved(a);
    size_t size = KEEL_ARENA_MAX_BLOCK + 1; /* fits no shared block */
    char *big = keel_arena_alloc(a, size);
    ck_assert_ptr_nonnull(big);
    ck_assert(aligned(big));
    memset(big, 'b', size);
    ck_assert_uint_ge(keel_arena_reserved(a), before + size);
    /* The block being filled goes on right after the small piece. */
    char *next = keel_arena_alloc(a, 16);
    ck_assert_ptr_eq(next, small + 16);
    keel_arena_free(a);
}
END_TEST

START_TEST(grow_in_place_or_by_copy)
{
    keel_arena *a = keel_arena_new();
    int *arr = keel_arena_grow(a, NULL, 0, 4 * sizeof *arr);
    ck_assert_ptr_nonnull(arr);
    for (int i = 0; i < 4; i++)
        arr[i] = i;
    /* The latest allocation grows where it is. */
    int *same = keel_arena_grow(a, arr, 4 * sizeof *arr, 8 * sizeof *arr);
    ck_assert_ptr_eq(same, arr);
    for (int i = 4; i < 8; i++)
        arr[i] = i;
    /* After another allocation it is copied. */
    char *other = keel_arena_alloc(a, 10);
    memset(other, 'x', 10);
    int *moved = keel_arena_grow(a, arr, 8 * sizeof *arr, 16 * sizeof *arr);
    ck_assert_ptr_nonnull(moved);
    ck_assert_ptr_ne(moved, arr);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(moved[i], i);
    ck_assert_int_eq(other[9], 'x');
    /* Shrinking keeps the pointer; growing past a block copies everything. */
    ck_assert_ptr_eq(keel_arena_grow(a, moved, 16 * sizeof *arr, 2), moved);
    size_t big = 2 * KEEL_ARENA_MAX_BLOCK;
    int *huge = keel_arena_grow(a, moved, 16 * sizeof *arr, big);
    ck_assert_ptr_nonnull(huge);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(huge[i], i);
    memset((char *)huge + 16 * sizeof *arr, 0, big - 16 * sizeof *arr);
    keel_arena_free(a);
}
END_TEST

START_TEST(protobuf_allocator_unpacks_into_the_arena)
{
    Temporal__Api__Common__V1__Payloads in = TEMPORAL__API__COMMON__V1__PAYLOADS__INIT;
    Temporal__Api__Common__V1__Payload p1 = TEMPORAL__API__COMMON__V1__PAYLOAD__INIT,
                                       p2 = TEMPORAL__API__COMMON__V1__PAYLOAD__INIT;
    Temporal__Api__Common__V1__Payload *list[] = {&p1, &p2};
    p1.data = (ProtobufCBinaryData){.data = (uint8_t *)"{\"a\":1}", .len = 7};
    p2.data = (ProtobufCBinaryData){.data = (uint8_t *)"\"b\"", .len = 3};
    in.payloads = list;
    in.n_payloads = 2;
    size_t n = protobuf_c_message_get_packed_size(&in.base);
    uint8_t *wire = malloc(n);
    ck_assert_uint_eq(protobuf_c_message_pack(&in.base, wire), n);

    keel_arena *a = keel_arena_new();
    ProtobufCAllocator alloc = keel_arena_protobuf_allocator(a);
    Temporal__Api__Common__V1__Payloads *out =
        temporal__api__common__v1__payloads__unpack(&alloc, n, wire);
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_gt(keel_arena_used(a), 0);
    ck_assert_uint_eq(out->n_payloads, 2);
    ck_assert_mem_eq(out->payloads[0]->data.data, "{\"a\":1}", 7);
    ck_assert_mem_eq(out->payloads[1]->data.data, "\"b\"", 3);
    /* Harmless: its free does nothing. */
    protobuf_c_message_free_unpacked(&out->base, &alloc);
    /* Bad bytes: protobuf-c fails and frees through the allocator, which does nothing. */
    uint8_t bad[] = {0x0a, 0x7f, 0x01};
    ck_assert_ptr_null(temporal__api__common__v1__payloads__unpack(&alloc, sizeof bad, bad));
    keel_arena_free(a);
    free(wire);
}
END_TEST

START_TEST(a_thread_keeps_its_largest_block)
{
    keel_arena *a = keel_arena_new();
    for (int i = 0; i < 4000; i++)
        ck_assert_ptr_nonnull(keel_arena_alloc(a, 1000)); /* several growing blocks */
    size_t reserved = keel_arena_reserved(a);
    ck_assert_uint_gt(reserved, 2 * KEEL_ARENA_FIRST_BLOCK);
    keel_arena_free(a);
    /* The next arena starts in the largest of them: more than a first block at once. */
    keel_arena *b = keel_arena_new();
    ck_assert_ptr_nonnull(keel_arena_alloc(b, 8));
    ck_assert_uint_gt(keel_arena_reserved(b), KEEL_ARENA_FIRST_BLOCK);
    ck_assert_uint_le(keel_arena_reserved(b), reserved);
    keel_arena_free(b);
}
END_TEST

Suite *arena_suite(void)
{
    Suite *s = suite_create("arena");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, allocations_are_aligned_distinct_and_kept);
    tcase_add_test(tc, calloc_strndup_and_overflow);
    tcase_add_test(tc, large_requests_get_their_own_block);
    tcase_add_test(tc, grow_in_place_or_by_copy);
    tcase_add_test(tc, protobuf_allocator_unpacks_into_the_arena);
    tcase_add_test(tc, a_thread_keeps_its_largest_block);
    suite_add_tcase(s, tc);
    return s;
}
