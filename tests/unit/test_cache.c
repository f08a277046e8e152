/* src/worker/cache.c: LRU order, pinning, and who frees what. ASan checks the last. */
#include <check.h>
#include <pthread.h>
#include <unistd.h>

#include "worker/cache.h"

static int start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)ctx;
    (void)state;
    (void)input;
    return KEEL_OK;
}

static int event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)ctx;
    (void)state;
    (void)ev;
    return KEEL_OK;
}

static const keel_workflow_type type = {
    .name = "T", .state_size = 1, .start = start, .on_event = event};

static keel_engine *engine(void)
{
    keel_engine *e;
    ck_assert_int_eq(keel_engine_new(&e, &type, "wf", "run", "q", NULL), KEEL_OK);
    return e;
}

START_TEST(least_recently_used_goes_first)
{
    keel_cache *c = keel_cache_new(2);
    keel_engine *a = engine(), *b = engine();
    ck_assert(keel_cache_put(c, "a", a, false));
    ck_assert(keel_cache_put(c, "b", b, false));
    ck_assert_ptr_eq(keel_cache_take(c, "a"), a); /* a is used again: b is now the oldest */
    ck_assert(keel_cache_put(c, "a", a, false));
    ck_assert(keel_cache_put(c, "c", engine(), false));
    ck_assert_ptr_null(keel_cache_take(c, "b"));
    ck_assert_uint_eq(keel_cache_evictions(c), 1);
    ck_assert_uint_eq(keel_cache_size(c), 2);
    keel_cache_free(c);
}
END_TEST

START_TEST(pinned_runs_are_never_evicted)
{
    keel_cache *c = keel_cache_new(1);
    keel_engine *a = engine(), *b = engine();
    ck_assert(keel_cache_put(c, "a", a, true));
    ck_assert(keel_cache_put(c, "b", b, true)); /* full of pinned runs: it grows */
    ck_assert_uint_eq(keel_cache_size(c), 2);
    ck_assert_uint_eq(keel_cache_evictions(c), 0);
    keel_cache_unpin(c, "a", a);
    keel_cache_unpin(c, "b", b);
    ck_assert(keel_cache_put(c, "c", engine(), false)); /* now the oldest can go */
    ck_assert_uint_eq(keel_cache_evictions(c), 1);
    keel_cache_free(c);
}
END_TEST

START_TEST(a_pinned_run_replaced_stays_its_pinners)
{
    keel_cache *c = keel_cache_new(4);
    keel_engine *old = engine(), *newer = engine();
    ck_assert(keel_cache_put(c, "r", old, true));
    ck_assert(keel_cache_put(c, "r", newer, false)); /* another thread's newer state */
    ck_assert_ptr_eq(keel_cache_take(c, "r"), newer);
    keel_cache_unpin(c, "r", old); /* not held any more: the pinner frees it */
    keel_engine_free(newer);

    keel_engine *d = engine();
    ck_assert(keel_cache_put(c, "d", d, true));
    keel_cache_drop(c, "d", d);
    ck_assert_ptr_null(keel_cache_take(c, "d"));
    keel_cache_free(c);
}
END_TEST

START_TEST(a_cache_of_nothing_frees_at_once)
{
    keel_cache *c = keel_cache_new(0);
    ck_assert(!keel_cache_put(c, "a", engine(), false));
    ck_assert_uint_eq(keel_cache_size(c), 0);
    ck_assert_ptr_null(keel_cache_take(c, "a"));
    keel_cache_free(c);
}
END_TEST

static void *take_r(void *arg)
{
    return keel_cache_take(arg, "r");
}

START_TEST(a_wait_for_a_pinned_run_never_returns_another)
{
    /* While a take waits for pinned "r", other threads move entries around; when the wait
     * times out the answer must still be about "r" (pinned: nothing), not whatever now sits in
     * the slot it looked at first. */
    keel_cache *c = keel_cache_new(4);
    keel_engine *a = engine(), *r = engine();
    ck_assert(keel_cache_put(c, "a", a, false));
    ck_assert(keel_cache_put(c, "r", r, true));
    pthread_t t;
    pthread_create(&t, NULL, take_r, c);
    usleep(100 * 1000);
    ck_assert_ptr_eq(keel_cache_take(c, "a"), a); /* "r" moves into a's slot */
    ck_assert(keel_cache_put(c, "z", engine(), false));
    void *got = (void *)1;
    pthread_join(t, &got);
    ck_assert_ptr_null(got);
    keel_engine_free(a);
    keel_cache_unpin(c, "r", r);
    ck_assert_ptr_eq(keel_cache_take(c, "r"), r); /* unpinned: now it can be taken */
    keel_engine_free(r);
    keel_cache_free(c);
}
END_TEST

Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, least_recently_used_goes_first);
    tcase_add_test(tc, pinned_runs_are_never_evicted);
    tcase_add_test(tc, a_pinned_run_replaced_stays_its_pinners);
    tcase_add_test(tc, a_cache_of_nothing_frees_at_once);
    tcase_add_test(tc, a_wait_for_a_pinned_run_never_returns_another);
    suite_add_tcase(s, tc);
    return s;
}
