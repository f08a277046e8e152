/*
 * Eager workflow start against the real server (keel_workflow_start_options.eager):
 *
 * - with a worker of the same client on the queue and a free slot, the start's answer carries
 *   the first workflow task and that worker runs it: the start says it was eager, the worker
 *   counts it (workflow_tasks_eager), and the history's first WorkflowTaskStarted names the
 *   starter's identity, not the worker's (the server starts the task inside the start call);
 *   the answer names the sticky queue, so the next task goes there;
 * - no worker of this client on the queue (one of another client serves it): a normal start;
 * - the worker's slots all taken: a normal start;
 * - a start delay: a normal start (the first task waits for the delay).
 *
 * Task queues are named estart-... so that nothing else polls them.
 */
#include <check.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
static char worker_identity[96];

static keel_client *new_client(void)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    keel_client *c = NULL;
    ck_assert_msg(keel_client_new(&c, &o, &err) == KEEL_OK, "%s", err.message);
    return c;
}

static void setup(void)
{
    client = new_client();
    keel_test_unique(queue, sizeof queue, "estart");
    snprintf(worker_identity, sizeof worker_identity, "worker@%s", queue);
}

static void teardown(void)
{
    keel_client_free(client);
}

/* ---- the workflow: an activity (polled), then complete with its result ---- */

/* While set, a run's first task blocks its executor until it is cleared: slots held busy. */
static atomic_bool hold_tasks;
static atomic_int tasks_held;

static int echo(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)ctx;
    (void)user;
    *result = strdup(input);
    return KEEL_OK;
}

static const keel_activity_type activities[] = {{.name = "estart.echo", .run = echo}};

static int one_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    if (atomic_load(&hold_tasks)) {
        atomic_fetch_add(&tasks_held, 1);
        while (atomic_load(&hold_tasks))
            sleep_ms(20);
    }
    keel_activity_options o = {.start_to_close_ms = 10000};
    return keel_workflow_activity(ctx, "estart.echo", input, &o) ? KEEL_OK : KEEL_EINVAL;
}

static int one_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    return keel_workflow_complete(ctx, ev->json);
}

static const keel_workflow_type one_type = {
    .name = "EagerStartOne", .state_size = 1, .start = one_start, .on_event = one_event};
static const keel_workflow_type *const workflows[] = {&one_type};

static keel_worker *start_worker(keel_client *c, int slots, int pollers)
{
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.identity = worker_identity;
    w.workflows = workflows;
    w.n_workflows = 1;
    w.activities = activities;
    w.n_activities = 1;
    w.disable_eager_activities = true; /* the second workflow task then comes on its own */
    w.shutdown_grace_ms = 500;
    if (slots) {
        w.max_concurrent_workflow_tasks = slots;
        w.max_cached_workflows = 0; /* one poll (the normal queue) */
        w.workflow_pollers = w.workflow_pollers_min = w.workflow_pollers_max = pollers;
    }
    keel_worker *worker = NULL;
    keel_error err;
    ck_assert_msg(keel_worker_new(&worker, c, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);
    return worker;
}

/* Start id with eager asked for; returns whether it was eager. */
static bool start_eager(const char *id, int64_t delay_ms)
{
    keel_workflow_start_options o;
    ck_assert_int_eq(keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION),
                     KEEL_OK);
    o.workflow_id = id;
    o.workflow_type = "EagerStartOne";
    o.task_queue = queue;
    o.input_json = "{\"n\":1}";
    o.start_delay_ms = delay_ms;
    o.eager = true;
    char *run_id = NULL;
    bool eager = true;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start_ex(client, &o, &run_id, &eager, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_ptr_nonnull(run_id);
    ck_assert_int_eq((int)strlen(run_id), 36);
    free(run_id);
    return eager;
}

static void expect_completed(const char *id)
{
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(client, id, NULL, 60000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "{\"n\":1}");
    keel_workflow_outcome_dispose(&out);
}

/* The identity of the run's first WorkflowTaskStarted event, from its JSON history (caller
 * frees), and whether a later workflow task was scheduled on a sticky queue. */
static char *first_task_identity(const char *id, bool *sticky_later)
{
    char *json = NULL;
    size_t len = 0;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    const char *started = strstr(json, "workflowTaskStartedEventAttributes");
    ck_assert_msg(started != NULL, "no WorkflowTaskStarted in %s", id);
    const char *ident = strstr(started, "\"identity\"");
    ck_assert_ptr_nonnull(ident);
    ident = strchr(ident + 10, '"');
    ck_assert_ptr_nonnull(ident);
    const char *end = strchr(ident + 1, '"');
    char *out = strndup(ident + 1, (size_t)(end - ident - 1));
    *sticky_later = strstr(started, "TASK_QUEUE_KIND_STICKY") != NULL;
    free(json);
    return out;
}

START_TEST(eager_start_runs_the_first_task_without_a_poll)
{
    keel_worker *worker = start_worker(client, 0, 0);
    char id[160];
    int eager = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "%s-eager-%d", queue, i);
        eager += start_eager(id, 0);
        expect_completed(id);
    }
    keel_worker_stats st;
    keel_worker_stop(worker); /* every answer went out */
    keel_worker_get_stats(worker, &st);
    keel_worker_free(worker);
    bool sticky = false;
    char *ident = first_task_identity(id, &sticky);
    printf("estart: %d of 3 starts eager; worker took %llu eager tasks; first task started by "
           "'%s'; next task on the sticky queue: %s\n",
           eager, (unsigned long long)st.workflow_tasks_eager, ident, sticky ? "yes" : "no");
    fflush(stdout);
    ck_assert_int_eq(eager, 3);
    ck_assert_uint_eq(st.workflow_tasks_eager, 3);
    /* Started inside the start call, under the starter's identity: no poll of this worker. */
    ck_assert_str_ne(ident, worker_identity);
    free(ident);
    /* Answered like a polled task: with sticky attributes, and the run stayed cached. */
    ck_assert(sticky);
    ck_assert_uint_ge(st.cache_hits, 3);
    ck_assert_uint_eq(st.workflow_tasks_completed, 6);
}
END_TEST

START_TEST(without_a_local_worker_the_start_is_normal)
{
    /* A worker of another client (another connection) serves the queue; none of ours does. */
    keel_client *other = new_client();
    keel_worker *worker = start_worker(other, 0, 0);
    char id[160];
    snprintf(id, sizeof id, "%s-remote", queue);
    bool eager = start_eager(id, 0);
    expect_completed(id);
    keel_worker_stats st;
    keel_worker_stop(worker); /* every answer went out */
    keel_worker_get_stats(worker, &st);
    keel_worker_free(worker);
    keel_client_free(other);
    ck_assert(!eager);
    ck_assert_uint_eq(st.workflow_tasks_eager, 0);
    bool sticky;
    char *ident = first_task_identity(id, &sticky);
    ck_assert_str_eq(ident, worker_identity); /* polled */
    free(ident);
}
END_TEST

START_TEST(with_every_slot_busy_the_start_is_normal)
{
    /* Two slots: one holds a blocked task, the other the poll. */
    keel_worker *worker = start_worker(client, 2, 1);
    atomic_store(&tasks_held, 0);
    atomic_store(&hold_tasks, true);
    char busy[160], id[160];
    snprintf(busy, sizeof busy, "%s-busy", queue);
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = busy;
    o.workflow_type = "EagerStartOne";
    o.task_queue = queue;
    o.input_json = "{\"n\":1}";
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(client, &o, NULL, &err) == KEEL_OK, "%s", err.message);
    int64_t deadline = mono_ms() + 30000;
    while (atomic_load(&tasks_held) == 0 && mono_ms() < deadline)
        sleep_ms(20);
    ck_assert_int_eq(atomic_load(&tasks_held), 1);
    sleep_ms(500); /* the poller took the other slot again */
    snprintf(id, sizeof id, "%s-full", queue);
    bool eager = start_eager(id, 0);
    atomic_store(&hold_tasks, false);
    expect_completed(busy);
    expect_completed(id);
    keel_worker_stats st;
    keel_worker_stop(worker); /* every answer went out */
    keel_worker_get_stats(worker, &st);
    keel_worker_free(worker);
    ck_assert(!eager);
    ck_assert_uint_eq(st.workflow_tasks_eager, 0);
}
END_TEST

START_TEST(a_start_delay_is_never_eager)
{
    keel_worker *worker = start_worker(client, 0, 0);
    char id[160];
    snprintf(id, sizeof id, "%s-delay", queue);
    int64_t began = mono_ms();
    bool eager = start_eager(id, 1500);
    expect_completed(id);
    int64_t took = mono_ms() - began;
    keel_worker_stats st;
    keel_worker_stop(worker); /* every answer went out */
    keel_worker_get_stats(worker, &st);
    keel_worker_free(worker);
    ck_assert(!eager);
    ck_assert_uint_eq(st.workflow_tasks_eager, 0);
    ck_assert_int_ge(took, 1400); /* the delay held the first task back */
    /* A delay with a cron schedule is refused before any call. */
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = "EagerStartOne";
    o.task_queue = queue;
    o.cron_schedule = "* * * * *";
    o.start_delay_ms = 1000;
    o.eager = true;
    bool flag = true;
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_start_ex(client, &o, NULL, &flag, &err), KEEL_EINVAL);
    ck_assert(!flag);
    o.cron_schedule = NULL;
    o.start_delay_ms = -1;
    ck_assert_int_eq(keel_client_workflow_start_ex(client, &o, NULL, &flag, &err), KEEL_EINVAL);
}
END_TEST

Suite *eager_start_suite(void)
{
    Suite *s = suite_create("eager-start");
    TCase *tc = tcase_create("eager-start");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, eager_start_runs_the_first_task_without_a_poll);
    tcase_add_test(tc, without_a_local_worker_the_start_is_normal);
    tcase_add_test(tc, with_every_slot_busy_the_start_is_normal);
    tcase_add_test(tc, a_start_delay_is_never_eager);
    suite_add_tcase(s, tc);
    return s;
}
