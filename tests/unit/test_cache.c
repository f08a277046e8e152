/* src/worker/cache.c: LRU order, pinning, and who frees what (ASan checks the last); the hash
 * map under it (src/worker/runmap.c). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "worker/cache.h"
#include "worker/runmap.h"

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

/* ---- the map under the cache ---- */

/* The map's entries from oldest to newest, as "a,b,c", and checks the list both ways. */
static void assert_order(const keel_runmap *m, const char *want)
{
    char got[256] = "";
    size_t n = 0;
    const keel_runmap_entry *last = NULL;
    for (const keel_runmap_entry *en = m->oldest; en != NULL; last = en, en = en->newer, n++) {
        ck_assert_ptr_eq(en->older, last);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", n ? "," : "", en->run_id);
    }
    ck_assert_ptr_eq(m->newest, last);
    ck_assert_uint_eq(n, m->n);
    ck_assert_str_eq(got, want);
}

START_TEST(runmap_inserts_finds_and_removes)
{
    keel_runmap m;
    keel_runmap_init(&m);
    ck_assert_ptr_null(keel_runmap_find(&m, "a"));
    int va = 1, vb = 2, vc = 3;
    ck_assert_ptr_nonnull(keel_runmap_insert(&m, "a", &va));
    ck_assert_ptr_nonnull(keel_runmap_insert(&m, "b", &vb));
    ck_assert_ptr_nonnull(keel_runmap_insert(&m, "c", &vc));
    assert_order(&m, "a,b,c");
    ck_assert_ptr_eq(keel_runmap_find(&m, "b")->value, &vb);
    ck_assert_ptr_null(keel_runmap_find(&m, "d"));
    ck_assert_ptr_null(keel_runmap_find(&m, "")); /* a prefix or an empty key is not a key */
    ck_assert_ptr_null(keel_runmap_find(&m, "bb"));
    ck_assert_ptr_eq(keel_runmap_remove(&m, keel_runmap_find(&m, "b")), &vb); /* the middle */
    assert_order(&m, "a,c");
    ck_assert_ptr_null(keel_runmap_find(&m, "b"));
    ck_assert_ptr_nonnull(keel_runmap_insert(&m, "b", &vb)); /* back in: now the newest */
    assert_order(&m, "a,c,b");
    ck_assert_ptr_eq(keel_runmap_remove(&m, m.oldest), &va);
    ck_assert_ptr_eq(keel_runmap_remove(&m, m.newest), &vb);
    assert_order(&m, "c");
    ck_assert_ptr_eq(keel_runmap_remove(&m, m.oldest), &vc);
    assert_order(&m, "");
    ck_assert_ptr_null(m.oldest);
    keel_runmap_clear(&m);
}
END_TEST

START_TEST(runmap_keys_in_one_bucket_stay_apart)
{
    /* Three ids whose hashes land in the same bucket of the first table (16 buckets). */
    char ids[3][32];
    int found = 0;
    uint64_t want = 0;
    for (int i = 0; found < 3 && i < 100000; i++) {
        char id[32];
        snprintf(id, sizeof id, "run-%d", i);
        uint64_t h = keel_runmap_hash(id) & 15;
        if (found == 0)
            want = h;
        if (h == want)
            snprintf(ids[found++], sizeof ids[0], "%s", id);
    }
    ck_assert_int_eq(found, 3);
    keel_runmap m = {0};
    int v[3];
    for (int i = 0; i < 3; i++)
        ck_assert_ptr_nonnull(keel_runmap_insert(&m, ids[i], &v[i]));
    ck_assert_uint_eq(m.n_buckets, 16);
    ck_assert_ptr_nonnull(m.buckets[want]->next); /* a real chain */
    for (int i = 0; i < 3; i++)
        ck_assert_ptr_eq(keel_runmap_find(&m, ids[i])->value, &v[i]);
    ck_assert_ptr_eq(keel_runmap_remove(&m, keel_runmap_find(&m, ids[1])), &v[1]);
    ck_assert_ptr_null(keel_runmap_find(&m, ids[1]));
    ck_assert_ptr_eq(keel_runmap_find(&m, ids[0])->value, &v[0]);
    ck_assert_ptr_eq(keel_runmap_find(&m, ids[2])->value, &v[2]);
    keel_runmap_clear(&m);
}
END_TEST

START_TEST(runmap_grows_and_keeps_every_key_and_the_order)
{
    keel_runmap m = {0};
    enum { N = 5000 };
    static int v[N];
    char id[64];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "0193a0c1-2b3c-7d4e-8f90-%012d", i);
        ck_assert_ptr_nonnull(keel_runmap_insert(&m, id, &v[i]));
    }
    ck_assert_uint_eq(m.n, N);
    ck_assert_uint_ge(m.n_buckets, N); /* doubled as it filled: at most one entry per bucket */
    ck_assert_uint_eq(m.n_buckets & (m.n_buckets - 1), 0);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "0193a0c1-2b3c-7d4e-8f90-%012d", i);
        keel_runmap_entry *en = keel_runmap_find(&m, id);
        ck_assert_ptr_nonnull(en);
        ck_assert_ptr_eq(en->value, &v[i]);
    }
    int i = 0;
    for (keel_runmap_entry *en = m.oldest; en != NULL; en = en->newer, i++)
        ck_assert_ptr_eq(en->value, &v[i]);
    ck_assert_int_eq(i, N);
    /* Remove every other one; the rest are still found. */
    for (i = 0; i < N; i += 2) {
        snprintf(id, sizeof id, "0193a0c1-2b3c-7d4e-8f90-%012d", i);
        ck_assert_ptr_eq(keel_runmap_remove(&m, keel_runmap_find(&m, id)), &v[i]);
    }
    ck_assert_uint_eq(m.n, N / 2);
    for (i = 0; i < N; i++) {
        snprintf(id, sizeof id, "0193a0c1-2b3c-7d4e-8f90-%012d", i);
        ck_assert(i % 2 ? keel_runmap_find(&m, id) != NULL : keel_runmap_find(&m, id) == NULL);
    }
    keel_runmap_clear(&m);
    ck_assert_uint_eq(m.n, 0);
    ck_assert_ptr_null(m.buckets);
}
END_TEST

START_TEST(the_cache_evicts_in_put_order_past_its_capacity)
{
    keel_cache *c = keel_cache_new(3);
    keel_engine *a = engine(), *b = engine(), *d = engine(), *x = engine();
    ck_assert(keel_cache_put(c, "a", a, false));
    ck_assert(keel_cache_put(c, "b", b, false));
    ck_assert(keel_cache_put(c, "x", x, false));
    ck_assert_ptr_eq(keel_cache_take(c, "a"), a);
    ck_assert(keel_cache_put(c, "a", a, false)); /* order now b, x, a */
    ck_assert(keel_cache_put(c, "d", d, false)); /* b goes */
    ck_assert_uint_eq(keel_cache_evictions(c), 1);
    ck_assert_uint_eq(keel_cache_size(c), 3);
    ck_assert_ptr_null(keel_cache_take(c, "b"));
    ck_assert_ptr_eq(keel_cache_take(c, "x"), x);
    ck_assert_ptr_eq(keel_cache_take(c, "a"), a);
    ck_assert_ptr_eq(keel_cache_take(c, "d"), d);
    ck_assert_uint_eq(keel_cache_size(c), 0);
    keel_engine_free(x);
    keel_engine_free(a);
    keel_engine_free(d);
    keel_cache_free(c);
}
END_TEST

START_TEST(a_thousand_runs_are_found_by_id)
{
    keel_cache *c = keel_cache_new(1000);
    static keel_engine *e[1001];
    char id[64];
    for (int i = 0; i <= 1000; i++) {
        e[i] = engine();
        snprintf(id, sizeof id, "run-%d", i);
        ck_assert(keel_cache_put(c, id, e[i], false));
    }
    ck_assert_uint_eq(keel_cache_size(c), 1000);
    ck_assert_uint_eq(keel_cache_evictions(c), 1);
    ck_assert_ptr_null(keel_cache_take(c, "run-0")); /* the oldest went */
    for (int i = 1000; i >= 1; i--) {
        snprintf(id, sizeof id, "run-%d", i);
        ck_assert_ptr_eq(keel_cache_take(c, id), e[i]);
        keel_engine_free(e[i]);
    }
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
    tcase_add_test(tc, runmap_inserts_finds_and_removes);
    tcase_add_test(tc, runmap_keys_in_one_bucket_stay_apart);
    tcase_add_test(tc, runmap_grows_and_keeps_every_key_and_the_order);
    tcase_add_test(tc, the_cache_evicts_in_put_order_past_its_capacity);
    tcase_add_test(tc, a_thousand_runs_are_found_by_id);
    suite_add_tcase(s, tc);
    return s;
}
