/*
 * Workflow task slots, poller autoscaling and eager activities against the real server:
 *
 * - a signal burst: 200 keel.Approval runs on keel-worker ($KEEL_WORKER, a process of its own),
 *   cached after their first task, all signalled at once; at least 95 % of them must be answered
 *   from the cache (no WorkflowTaskTimedOut SCHEDULE_TO_START in their history: a sticky task
 *   that waited out its timeout and was rebuilt from the full history). It prints the hit rate
 *   and the burst time, so the same test run against an older keel-worker measures that one.
 * - eager activities: an activity scheduled on the worker's own queue is started by the server
 *   at once and handed back with the workflow task's answer; never polled. This needs the
 *   server's system.enableActivityEagerExecution (the dev stack sets it).
 * - poller autoscaling: a backlog raises the poll target above where it started, within the
 *   bounds; a trickle of tasks that each waited for a poll lowers it again.
 *
 * - asynchronous answers: with 16 slots and 2 executor threads more answers are in flight at
 *   once than there are threads (an answer no longer holds its thread).
 *
 * Task queues are named slots-... (async-... for the last) so that nothing else polls them.
 */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "keel/keel.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static keel_client *client;
static char queue[64];

static void setup(void)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
    keel_test_unique(queue, sizeof queue, "slots");
}

static void teardown(void)
{
    keel_client_free(client);
}

/* The run's history as JSON (caller frees). */
static char *history_of(const char *id)
{
    char *json = NULL;
    size_t len = 0;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len,
                                               &err) == KEEL_OK,
                  "%s: %s", id, err.message);
    return json;
}

static void start_one(const char *type, const char *id, const char *input)
{
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = type;
    o.task_queue = queue;
    o.input_json = input;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(client, &o, NULL, &err) == KEEL_OK, "%s", err.message);
}

/* ---- the signal burst (keel-worker) ---- */

/* KEEL_SLOTS_BURST_RUNS (1-1000) measures a bigger burst; the test asserts the same rate. */
#define BURST_RUNS     200
#define BURST_RUNS_MAX 1000
#define BURST_THREADS  8

static char burst_ids[BURST_RUNS_MAX][160];
static int burst_runs = BURST_RUNS;
static atomic_int burst_next, burst_errors;

/* Signal every run once, BURST_THREADS at a time. */
static void *burst_signaller(void *arg)
{
    (void)arg;
    for (int i; (i = atomic_fetch_add(&burst_next, 1)) < burst_runs;) {
        keel_error err;
        if (keel_client_workflow_signal(client, burst_ids[i], NULL, "approve",
                                        "{\"approver\":\"ana\",\"comment\":\"burst\"}",
                                        &err) != KEEL_OK)
            atomic_fetch_add(&burst_errors, 1);
    }
    return NULL;
}

START_TEST(signal_burst_is_answered_from_the_cache)
{
    const char *n = getenv("KEEL_SLOTS_BURST_RUNS");
    burst_runs = n && atoi(n) > 0 && atoi(n) <= BURST_RUNS_MAX ? atoi(n) : BURST_RUNS;
    char log[256];
    snprintf(log, sizeof log, "build/slots-burst-%ld.log", (long)getpid());
    pid_t worker = keel_test_spawn_worker(queue, NULL, log);
    const char *input = "{\"subject\":\"burst\",\"requester\":\"cy\",\"approvers\":[\"ana\"]}";
    for (int i = 0; i < burst_runs; i++) {
        snprintf(burst_ids[i], sizeof burst_ids[i], "%s-%d", queue, i);
        start_one("keel.Approval", burst_ids[i], input);
    }
    /* Every run answered its first task (so it is cached on the worker) before the burst. */
    int64_t deadline = mono_ms() + 120000;
    for (int i = 0; i < burst_runs; i++) {
        for (;;) {
            char *h = history_of(burst_ids[i]);
            bool done = strstr(h, "EVENT_TYPE_WORKFLOW_TASK_COMPLETED") != NULL;
            free(h);
            if (done)
                break;
            ck_assert_msg(mono_ms() < deadline, "run %d never answered its first task", i);
            sleep_ms(200);
        }
    }
    atomic_store(&burst_next, 0);
    atomic_store(&burst_errors, 0);
    int64_t began = mono_ms();
    pthread_t th[BURST_THREADS];
    for (int i = 0; i < BURST_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, burst_signaller, NULL), 0);
    for (int i = 0; i < BURST_THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&burst_errors), 0);
    for (int i = 0; i < burst_runs; i++) {
        keel_workflow_outcome out;
        keel_error err;
        ck_assert_msg(keel_client_workflow_result(client, burst_ids[i], NULL, 120000, &out, &err) ==
                          KEEL_OK,
                      "%s", err.message);
        ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
        keel_workflow_outcome_dispose(&out);
    }
    int64_t took = mono_ms() - began;
    /* A sticky task that waited out its schedule-to-start timeout went to the normal queue and
     * was rebuilt from the full history: that run missed the cache. */
    int misses = 0;
    for (int i = 0; i < burst_runs; i++) {
        char *h = history_of(burst_ids[i]);
        if (strstr(h, "TIMEOUT_TYPE_SCHEDULE_TO_START"))
            misses++;
        free(h);
    }
    kill(worker, SIGTERM);
    ck_assert_int_eq(keel_test_wait_exit(worker, 30), 0);
    double hit = 100.0 * (burst_runs - misses) / burst_runs;
    printf("slots: signal burst of %d cached runs: sticky hits %.1f %% (%d rebuilt), %.2f s\n",
           burst_runs, hit, misses, took / 1000.0);
    fflush(stdout);
    ck_assert_msg(misses * 100 <= burst_runs * 5, "%d of %d runs rebuilt from history", misses,
                  burst_runs);
}
END_TEST

/* ---- eager activities (a worker in this process) ---- */

static int echo(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)ctx;
    (void)user;
    *result = strdup(input);
    return KEEL_OK;
}

static const keel_activity_type activities[] = {{.name = "slots.echo", .run = echo}};

/* One activity on the run's own queue, then complete with its result. */
static int one_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    keel_activity_options o = {.start_to_close_ms = 10000};
    return keel_workflow_activity(ctx, "slots.echo", input, &o) ? KEEL_OK : KEEL_EINVAL;
}

static int one_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    return keel_workflow_complete(ctx, ev->json);
}

static const keel_workflow_type one_type = {
    .name = "SlotsOne", .state_size = 1, .start = one_start, .on_event = one_event};
static const keel_workflow_type *const workflows[] = {&one_type};

static keel_worker *start_worker(void (*tune)(keel_worker_options *))
{
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.workflows = workflows;
    w.n_workflows = 1;
    w.activities = activities;
    w.n_activities = 1;
    w.shutdown_grace_ms = 500;
    if (tune)
        tune(&w);
    keel_worker *worker = NULL;
    keel_error err;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);
    return worker;
}

/* Wait for a SlotsOne run started with {"n":1}: completed, with its input as result. */
static void expect_one(const char *id, int64_t timeout_ms)
{
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(client, id, NULL, timeout_ms, &out, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "{\"n\":1}");
    keel_workflow_outcome_dispose(&out);
}

/* n runs of SlotsOne, one after the other: each workflow task finds the activity threads
 * free (not taken by another run's activity at the same moment). */
static void run_ones(int n, const char *prefix)
{
    char ids[16][160];
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "%s-%s-%d", queue, prefix, i);
        start_one("SlotsOne", ids[i], "{\"n\":1}");
        expect_one(ids[i], 60000);
    }
}

static void four_activities(keel_worker_options *w)
{
    w->max_concurrent_activities = 4;
}

static void no_eager(keel_worker_options *w)
{
    w->max_concurrent_activities = 4;
    w->disable_eager_activities = true;
}

START_TEST(activities_on_the_own_queue_start_eagerly)
{
    keel_worker *worker = start_worker(four_activities);
    run_ones(5, "eager");
    keel_worker_stats st;
    keel_worker_get_stats(worker, &st);
    keel_worker_free(worker);
    printf("slots: eager: %llu of %llu activities handed over with the answer\n",
           (unsigned long long)st.activities_eager, (unsigned long long)st.activities_completed);
    fflush(stdout);
    /* Every activity came with its workflow task's answer: none was polled. */
    ck_assert_uint_eq(st.activities_completed, 5);
    ck_assert_uint_eq(st.activities_eager, 5);
}
END_TEST

START_TEST(without_eager_activities_are_polled)
{
    keel_worker *worker = start_worker(no_eager);
    run_ones(3, "polled");
    keel_worker_stats st;
    keel_worker_get_stats(worker, &st);
    keel_worker_free(worker);
    ck_assert_uint_eq(st.activities_completed, 3);
    ck_assert_uint_eq(st.activities_eager, 0);
}
END_TEST

/* ---- poller autoscaling ---- */

static void scaling(keel_worker_options *w)
{
    w->max_concurrent_workflow_tasks = 8;
    w->workflow_pollers = 2;
    w->workflow_pollers_min = 2;
    w->workflow_pollers_max = 6;
    w->max_cached_workflows = 0; /* the normal queue only: its backlog is what the server sees */
    w->max_concurrent_activities = 8;
    w->activity_pollers = 1;
    w->activity_pollers_min = 1;
    w->activity_pollers_max = 6;
    w->disable_eager_activities = true; /* activities through polls: they make a backlog */
}

#define BACKLOG_RUNS 150

START_TEST(pollers_scale_with_the_backlog_within_bounds)
{
    /* A backlog before the worker starts: the server suggests more polls while it lasts. */
    static char ids[BACKLOG_RUNS][160];
    for (int i = 0; i < BACKLOG_RUNS; i++) {
        snprintf(ids[i], sizeof ids[i], "%s-backlog-%d", queue, i);
        start_one("SlotsOne", ids[i], "{\"n\":1}");
    }
    sleep_ms(1000); /* older than the server's minimum backlog age (200 ms) */
    keel_worker *worker = start_worker(scaling);
    for (int i = 0; i < BACKLOG_RUNS; i++) {
        keel_workflow_outcome out;
        keel_error err;
        ck_assert_msg(keel_client_workflow_result(client, ids[i], NULL, 120000, &out, &err) ==
                          KEEL_OK,
                      "%s", err.message);
        ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
        keel_workflow_outcome_dispose(&out);
    }
    keel_worker_stats st;
    keel_worker_get_stats(worker, &st);
    printf("slots: autoscaling under a backlog: workflow pollers peak %d (now %d), activity "
           "pollers peak %d (now %d)\n",
           st.workflow_pollers_peak, st.workflow_pollers, st.activity_pollers_peak,
           st.activity_pollers);
    ck_assert_int_gt(st.workflow_pollers_peak, 2);
    ck_assert_int_le(st.workflow_pollers_peak, 6);
    ck_assert_int_gt(st.activity_pollers_peak, 1);
    ck_assert_int_le(st.activity_pollers_peak, 6);
    /* Idle: tasks that each waited over a second for a poll bring the server's "fewer polls". */
    int64_t deadline = mono_ms() + 60000;
    for (int i = 0; mono_ms() < deadline; i++) {
        keel_worker_get_stats(worker, &st);
        if (st.workflow_pollers == 2 && st.activity_pollers == 1)
            break;
        sleep_ms(1500);
        char id[160];
        snprintf(id, sizeof id, "%s-idle-%d", queue, i);
        start_one("SlotsOne", id, "{\"n\":1}");
        keel_workflow_outcome out;
        keel_error err;
        ck_assert_msg(keel_client_workflow_result(client, id, NULL, 60000, &out, &err) == KEEL_OK,
                      "%s", err.message);
        keel_workflow_outcome_dispose(&out);
    }
    keel_worker_get_stats(worker, &st);
    printf("slots: autoscaling when idle: workflow pollers %d, activity pollers %d\n",
           st.workflow_pollers, st.activity_pollers);
    fflush(stdout);
    keel_worker_free(worker);
    ck_assert_int_eq(st.workflow_pollers, 2);
    ck_assert_int_eq(st.activity_pollers, 1);
}
END_TEST

/* ---- threads and shutdown ---- */

/* The threads of this process now (/proc/self/task). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

#define MANY_POLLS 16

static void many_polls(keel_worker_options *w)
{
    w->workflow_pollers = MANY_POLLS;
    w->workflow_pollers_min = MANY_POLLS;
    w->workflow_pollers_max = MANY_POLLS;
    w->max_concurrent_workflow_tasks = MANY_POLLS;
    w->max_concurrent_activities = 2;
    w->activity_pollers = 1;
}

/* Polls run on the transport's completion-queue thread, not on threads of their own: with 16
 * workflow polls in flight the worker adds its executors (4, not one per slot), its activity
 * threads, one poll thread and the heartbeat thread (8), where a thread per poll made 35; some room
 * is left for threads gRPC starts by itself. keel_worker_stop cancels the polls in flight at once.
 */
START_TEST(polls_take_no_threads_and_stop_at_once)
{
    keel_test_unique(queue, sizeof queue, "apoll");
    char warm[160];
    snprintf(warm, sizeof warm, "%s-warm-up", queue);
    start_one("SlotsOne", warm, "{\"n\":1}"); /* the channel is up; the worker runs it */
    int before = thread_count();
    keel_worker *worker = start_worker(many_polls);
    run_ones(1, "threads");
    sleep_ms(1000); /* every poll is in flight, waiting on an empty queue */
    int during = thread_count();
    keel_worker_stats st;
    keel_worker_get_stats(worker, &st);
    int64_t began = mono_ms();
    keel_worker_stop(worker);
    int64_t stop_ms = mono_ms() - began;
    int after = thread_count();
    keel_worker_free(worker);
    printf("slots: threads %d before the worker, %d with %d workflow polls in flight (+%d), %d "
           "after stop; stop took %lld ms\n",
           before, during, MANY_POLLS, during - before, after, (long long)stop_ms);
    fflush(stdout);
    ck_assert_uint_ge(st.workflow_polls, MANY_POLLS); /* the polls were out */
    int bound = KEEL_DEFAULT_WORKFLOW_TASK_THREADS /* executors */ + 2 /* activities */ + 2 +
                6 /* gRPC's own */;
    ck_assert_int_le(during - before, bound);
    ck_assert_int_lt(bound, MANY_POLLS + 3); /* a thread per poll or per slot would exceed it */
    ck_assert_int_lt(stop_ms, 2000);
    ck_assert_int_le(after, before + 6);
}
END_TEST

/* ---- asynchronous answers: slots apart from executor threads ---- */

#define ASYNC_RUNS 32

static void two_threads(keel_worker_options *w)
{
    w->max_concurrent_workflow_tasks = 16;
    w->workflow_task_threads = 2;
    w->workflow_pollers = 8;
    w->workflow_pollers_min = 8;
    w->workflow_pollers_max = 8;
    w->max_concurrent_activities = 8;
}

/* A worker with 16 slots and 2 executor threads: an executor sends a task's answer and goes on,
 * so more answers are in flight at once than there are threads (with an answer waited for on
 * its thread, as before, there could never be more than 2). A backlog of 32 runs (64 tasks)
 * waits before the worker starts, and 8 polls bring it in; every run completes. */
START_TEST(answers_in_flight_exceed_the_executor_threads)
{
    keel_test_unique(queue, sizeof queue, "async");
    static char ids[ASYNC_RUNS][160];
    for (int i = 0; i < ASYNC_RUNS; i++) {
        snprintf(ids[i], sizeof ids[i], "%s-%d", queue, i);
        start_one("SlotsOne", ids[i], "{\"n\":1}");
    }
    int before = thread_count();
    keel_worker *worker = start_worker(two_threads);
    int during = thread_count();
    for (int i = 0; i < ASYNC_RUNS; i++) {
        expect_one(ids[i], 120000);
    }
    keel_worker_stats st;
    keel_worker_get_stats(worker, &st);
    keel_worker_free(worker);
    printf("slots: asynchronous answers: %d at most in flight with %d executor threads and 16 "
           "slots; %llu workflow tasks completed; worker threads +%d\n",
           st.workflow_answers_peak, st.workflow_task_threads,
           (unsigned long long)st.workflow_tasks_completed, during - before);
    fflush(stdout);
    ck_assert_int_eq(st.workflow_task_threads, 2);
    ck_assert_uint_ge(st.workflow_tasks_completed, 2 * ASYNC_RUNS);
    ck_assert_int_gt(st.workflow_answers_peak, st.workflow_task_threads);
    ck_assert_int_le(st.workflow_answers_peak, 16);
    /* 2 executors, 8 activity threads, the poll thread, the heartbeat thread: not one per slot. */
    ck_assert_int_le(during - before, 2 + 8 + 2 + 6);
}
END_TEST

/* ---- options ---- */

START_TEST(bad_bounds_are_refused)
{
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.workflows = workflows;
    w.n_workflows = 1;
    keel_worker *worker = NULL;
    keel_error err;
    w.workflow_pollers_min = 3; /* over workflow_pollers (2) */
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "workflow pollers"));
    w.workflow_pollers_min = 0;
    w.max_concurrent_workflow_tasks = 1;
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    w.max_concurrent_workflow_tasks = 0;
    w.sticky_schedule_to_start_timeout_ms = 500;
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "sticky_schedule_to_start_timeout_ms"));
    w.sticky_schedule_to_start_timeout_ms = 0;
    w.activity_pollers = 9; /* over max_concurrent_activities (8) */
    ck_assert_int_eq(keel_worker_new(&worker, client, &w, &err), KEEL_EINVAL);
    ck_assert_ptr_null(worker);
}
END_TEST

Suite *slots_suite(void)
{
    Suite *s = suite_create("slots");
    TCase *tc = tcase_create("slots");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, bad_bounds_are_refused);
    tcase_add_test(tc, activities_on_the_own_queue_start_eagerly);
    tcase_add_test(tc, without_eager_activities_are_polled);
    tcase_add_test(tc, pollers_scale_with_the_backlog_within_bounds);
    tcase_add_test(tc, polls_take_no_threads_and_stop_at_once);
    tcase_add_test(tc, answers_in_flight_exceed_the_executor_threads);
    tcase_add_test(tc, signal_burst_is_answered_from_the_cache);
    suite_add_tcase(s, tc);
    return s;
}
