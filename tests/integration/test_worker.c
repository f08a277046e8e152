/*
 * keel's worker against the real server: workflows written against include/keel run end to end,
 * with activities, retries, timers, signals, queries, and non-determinism caught on replay.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "converter/payload.h"
#include "keel/keel.h"
#include "proto/proto.h"
#include "worker/engine.h"

#define WF(m) ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- activities ---- */

static int greet(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)ctx;
    (void)user;
    char buf[256];
    snprintf(buf, sizeof buf, "{\"greeting\":\"hello\",\"to\":%s}", input);
    *result = strdup(buf);
    return KEEL_OK;
}

/* Fails its first two attempts, then answers with the attempt number. */
static int flaky(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)input;
    (void)user;
    int attempt = keel_activity_attempt(ctx);
    if (attempt < 3)
        return keel_activity_fail(ctx, "Flaky", "not yet", false);
    char buf[64];
    snprintf(buf, sizeof buf, "{\"attempt\":%d}", attempt);
    *result = strdup(buf);
    return KEEL_OK;
}

static int refuse(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)input;
    (void)result;
    (void)user;
    return keel_activity_fail(ctx, "OutOfStock", "no laptops left", true);
}

/* Works for its argument in tenths of a second (default 20 s), heartbeating; stops when
 * cancellation comes back through a heartbeat. */
static atomic_int long_runs, long_saw_cancel;

static int long_work(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)user;
    atomic_fetch_add(&long_runs, 1);
    int steps = atoi(input);
    for (int i = 0; i < (steps > 0 ? steps : 200); i++) {
        if (keel_activity_heartbeat(ctx, "{\"step\":1}") == KEEL_ECANCELLED) {
            atomic_fetch_add(&long_saw_cancel, 1);
            return KEEL_ECANCELLED;
        }
        usleep(100 * 1000);
    }
    *result = strdup("\"finished\"");
    return KEEL_OK;
}

/* Leaves itself open for the test to complete by task token or id. */
static pthread_mutex_t async_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *async_token;
static size_t async_token_len;

static int async_task(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)input;
    (void)result;
    (void)user;
    uint8_t *token;
    size_t len;
    int rc = keel_activity_complete_async(ctx, &token, &len);
    if (rc != KEEL_OK)
        return rc;
    pthread_mutex_lock(&async_lock);
    free(async_token);
    async_token = token;
    async_token_len = len;
    pthread_mutex_unlock(&async_lock);
    return KEEL_OK;
}

/* The token the last async_task handed out (waits up to 10 s for one); caller frees. */
static uint8_t *take_async_token(size_t *len)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&async_lock);
        uint8_t *t = async_token;
        *len = async_token_len;
        async_token = NULL;
        pthread_mutex_unlock(&async_lock);
        if (t)
            return t;
        usleep(20 * 1000);
    }
    ck_abort_msg("async_task never ran");
    return NULL;
}

/* Rate limited on its first attempt: asks for the next one 1.5 s later, with details. */
static atomic_llong slow_first_ms, slow_gap_ms;

static int slow_down(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)input;
    (void)user;
    if (keel_activity_attempt(ctx) == 1) {
        atomic_store(&slow_first_ms, now_ms());
        keel_activity_failure f = {.type = "RateLimited",
                                   .message = "429 from the provider",
                                   .details_json = "{\"retry_after_ms\":1500}",
                                   .next_retry_delay_ms = 1500};
        return keel_activity_fail_with(ctx, &f);
    }
    atomic_store(&slow_gap_ms, now_ms() - atomic_load(&slow_first_ms));
    char buf[32];
    snprintf(buf, sizeof buf, "{\"attempt\":%d}", keel_activity_attempt(ctx));
    *result = strdup(buf);
    return KEEL_OK;
}

static const keel_activity_type activities[] = {
    {"greet", greet, NULL},    {"flaky", flaky, NULL},           {"refuse", refuse, NULL},
    {"long", long_work, NULL}, {"async_task", async_task, NULL}, {"slow_down", slow_down, NULL},
};

/* Runs "long"; on a cancel request cancels it and, once it is canceled, ends as Canceled. */
static int cancellable_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)input;
    uint32_t *seq = state;
    keel_activity_options o = {.start_to_close_ms = 30000, .heartbeat_ms = 5000};
    *seq = keel_workflow_activity(ctx, "long", input, &o);
    return *seq ? KEEL_OK : KEEL_EINVAL;
}

static int cancellable_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    uint32_t *seq = state;
    switch (ev->kind) {
    case KEEL_EVENT_CANCEL_REQUESTED:
        return keel_workflow_cancel_activity(ctx, *seq);
    case KEEL_EVENT_ACTIVITY_CANCELED:
        return keel_workflow_cancelled(ctx, "{\"wound_down\":true}");
    case KEEL_EVENT_ACTIVITY_COMPLETED:
        return keel_workflow_complete(ctx, ev->json);
    default:
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    }
}

static const keel_workflow_type cancellable_type = {.name = "Cancellable",
                                                    .state_size = sizeof(uint32_t),
                                                    .start = cancellable_start,
                                                    .on_event = cancellable_event};

/* ---- workflows ---- */

typedef struct chain {
    int done;
} chain;

/* greet, then flaky with retries; completes with both results; refuse fails the workflow. */
static int chain_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    keel_activity_options o = {.start_to_close_ms = 10000};
    const char *type = strstr(input, "refuse") ? "refuse" : "greet";
    return keel_workflow_activity(ctx, type, input, &o) ? KEEL_OK : KEEL_EINVAL;
}

static int chain_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    chain *c = state;
    if (ev->kind == KEEL_EVENT_ACTIVITY_FAILED)
        return keel_workflow_fail(ctx, ev->failure_type, ev->failure_message, true);
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    if (c->done++ == 0) {
        keel_retry_policy retry = {
            .initial_interval_ms = 100, .backoff_coefficient = 1.0, .maximum_attempts = 5};
        keel_activity_options o = {.start_to_close_ms = 10000, .retry = &retry};
        return keel_workflow_activity(ctx, "flaky", NULL, &o) ? KEEL_OK : KEEL_EINVAL;
    }
    return keel_workflow_complete(ctx, ev->json);
}

static const keel_workflow_type chain_type = {
    .name = "Chain", .state_size = sizeof(chain), .start = chain_start, .on_event = chain_event};

/* Sleeps 1 s on a durable timer. */
static int sleeper_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    (void)input;
    return keel_workflow_timer(ctx, 1000) ? KEEL_OK : KEEL_EINVAL;
}

static int sleeper_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind != KEEL_EVENT_TIMER_FIRED)
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    char buf[64];
    snprintf(buf, sizeof buf, "{\"woke_at\":%lld}", (long long)keel_workflow_now_ms(ctx));
    return keel_workflow_complete(ctx, buf);
}

static const keel_workflow_type sleeper_type = {
    .name = "Sleeper", .state_size = 1, .start = sleeper_start, .on_event = sleeper_event};

/* Waits for "approve"; answers the "status" query; can be made to change its mind (see
 * approval_v2) to provoke non-determinism. */
typedef struct approval {
    int notes;
    char last[128];
} approval;

static atomic_bool approval_v2; /* a "deploy" of changed workflow code, for the test */

static int approval_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    (void)input;
    if (atomic_load(&approval_v2)) {
        keel_activity_options o = {.start_to_close_ms = 10000};
        return keel_workflow_activity(ctx, "greet", NULL, &o) ? KEEL_OK : KEEL_EINVAL;
    }
    return KEEL_OK; /* v1 does nothing until a signal */
}

static int approval_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    approval *a = state;
    if (ev->kind != KEEL_EVENT_SIGNAL)
        return KEEL_OK;
    if (strcmp(ev->name, "note") == 0) {
        a->notes++;
        snprintf(a->last, sizeof a->last, "%s", ev->json);
        return KEEL_OK;
    }
    if (strcmp(ev->name, "approve") == 0)
        return keel_workflow_complete(ctx, ev->json);
    return keel_workflow_error(ctx, "unknown signal '%s'", ev->name);
}

static int approval_query(const void *state, const char *name, const char *args, char **result)
{
    (void)args;
    const approval *a = state;
    if (strcmp(name, "status") != 0)
        return KEEL_EINVAL;
    char buf[256];
    snprintf(buf, sizeof buf, "{\"notes\":%d,\"last\":%s}", a->notes,
             a->last[0] ? a->last : "null");
    *result = strdup(buf);
    return KEEL_OK;
}

static void approval_describe(const void *state, char *buf, size_t n)
{
    const approval *a = state;
    snprintf(buf, n, "waiting for approval (%d notes so far)", a->notes);
}

static const char *const approval_queries[] = {"status", NULL};
static const char *const approval_signals[] = {"note", "approve", NULL};
static const keel_workflow_type approval_type = {.name = "Approval",
                                                 .state_size = sizeof(approval),
                                                 .start = approval_start,
                                                 .on_event = approval_event,
                                                 .query = approval_query,
                                                 .describe = approval_describe,
                                                 .queries = approval_queries,
                                                 .signals = approval_signals};

/* Marks its stage for operators, then completes: what the Web UI filters on. */
static int stager_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    keel_search_attribute_value sa[] = {
        {"ProcurementStage", KEEL_INDEXED_VALUE_TYPE_KEYWORD, "\"approval\""},
        {"AmountUSD", KEEL_INDEXED_VALUE_TYPE_DOUBLE, input}};
    keel_kv memo[] = {{"note", "\"waiting for ana\""}};
    int rc = keel_workflow_upsert_search_attributes(ctx, sa, 2);
    if (rc == KEEL_OK)
        rc = keel_workflow_upsert_memo(ctx, memo, 1);
    if (rc == KEEL_OK)
        rc = keel_workflow_complete(ctx, NULL);
    return rc;
}

static const keel_workflow_type stager_type = {
    .name = "Stager", .state_size = 1, .start = stager_start, .on_event = sleeper_event};

/* Branches on a change with get_version, then completes with the version it got. */
static int versioned_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    (void)input;
    int v;
    int rc = keel_workflow_get_version(ctx, "greeting-v2", KEEL_DEFAULT_VERSION, 2, &v);
    if (rc != KEEL_OK)
        return rc;
    char buf[32];
    snprintf(buf, sizeof buf, "{\"version\":%d}", v);
    return keel_workflow_complete(ctx, buf);
}

static const keel_workflow_type versioned_type = {
    .name = "Versioned", .state_size = 1, .start = versioned_start, .on_event = sleeper_event};

/* Runs Chain as a child with its own input; completes with the child's result or fails with
 * the child's failure. */
static int parent_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    return keel_workflow_child(ctx, "Chain", input, NULL) ? KEEL_OK : KEEL_EINVAL;
}

static int parent_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind == KEEL_EVENT_CHILD_COMPLETED) {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"child\":%s,\"type\":\"%s\"}", ev->json, ev->name);
        return keel_workflow_complete(ctx, buf);
    }
    if (ev->kind == KEEL_EVENT_CHILD_FAILED)
        return keel_workflow_fail(ctx, ev->failure_type, ev->failure_message, true);
    return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
}

static const keel_workflow_type parent_type = {
    .name = "Parent", .state_size = 1, .start = parent_start, .on_event = parent_event};

/* Approves the workflow named by its input (a JSON string) with a signal. */
static int notifier_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    char target[200];
    if (sscanf(input, "\"%199[^\"]\"", target) != 1)
        return keel_workflow_error(ctx, "input %s is not a workflow id string", input);
    return keel_workflow_signal_external(ctx, target, NULL, "approve", "\"by notifier\"")
               ? KEEL_OK
               : KEEL_EINVAL;
}

static int notifier_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind == KEEL_EVENT_SIGNAL_DELIVERED)
        return keel_workflow_complete(ctx, "\"delivered\"");
    if (ev->kind == KEEL_EVENT_SIGNAL_FAILED)
        return keel_workflow_fail(ctx, ev->failure_type, ev->failure_message, true);
    return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
}

static const keel_workflow_type notifier_type = {
    .name = "Notifier", .state_size = 1, .start = notifier_start, .on_event = notifier_event};

/* Carries a count across runs: continues as new with n+1 until n reaches 3. */
static int counter_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    int n = 0;
    if (sscanf(input, "{\"n\":%d}", &n) != 1)
        return keel_workflow_error(ctx, "input %s has no n", input);
    char buf[64];
    if (n >= 3) {
        snprintf(buf, sizeof buf, "{\"n\":%d,\"run\":\"%s\"}", n, keel_workflow_run_id(ctx));
        return keel_workflow_complete(ctx, buf);
    }
    snprintf(buf, sizeof buf, "{\"n\":%d}", n + 1);
    return keel_workflow_continue_as_new(ctx, buf);
}

static const keel_workflow_type counter_type = {
    .name = "Counter", .state_size = 1, .start = counter_start, .on_event = sleeper_event};

/* Updates: "deposit" answers at once, "withdraw_later" after a timer, "refuse" fails in its
 * handler. The validator rejects amounts that are not positive, and withdrawals beyond the
 * balance; "close" (a signal) completes the run with the balance. */
typedef struct {
    long long balance, withdrawing;
    uint32_t withdraw_update, withdraw_timer;
} ledger;

static bool amount_of(const char *json, long long *amount)
{
    char *end;
    *amount = strtoll(json, &end, 10);
    return end != json && *end == '\0' && *amount > 0;
}

static int ledger_validate(const void *state, const char *name, const char *args, char *reason,
                           size_t n)
{
    const ledger *l = state;
    long long amount;
    if (strcmp(name, "refuse") == 0)
        return KEEL_OK;
    if (!amount_of(args, &amount)) {
        snprintf(reason, n, "the amount must be a positive whole number, not %s", args);
        return KEEL_EINVAL;
    }
    if (strcmp(name, "withdraw_later") == 0 && (amount > l->balance || l->withdraw_update)) {
        snprintf(reason, n, "cannot withdraw %lld from %lld now", amount, l->balance);
        return KEEL_EINVAL;
    }
    return KEEL_OK;
}

static int ledger_balance(keel_workflow_ctx *ctx, const ledger *l, uint32_t update)
{
    char buf[64];
    snprintf(buf, sizeof buf, "{\"balance\":%lld}", l->balance);
    return keel_workflow_update_complete(ctx, update, buf);
}

static int ledger_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)ctx;
    (void)state;
    (void)input;
    return KEEL_OK; /* a zero balance, waiting for updates */
}

static int ledger_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    ledger *l = state;
    long long amount = 0;
    if (ev->kind == KEEL_EVENT_UPDATE && strcmp(ev->name, "refuse") == 0)
        return keel_workflow_update_fail(ctx, ev->seq, "Nope", "this update is always refused");
    if (ev->kind == KEEL_EVENT_UPDATE && strcmp(ev->name, "deposit") == 0) {
        amount_of(ev->json, &amount);
        l->balance += amount;
        return ledger_balance(ctx, l, ev->seq);
    }
    if (ev->kind == KEEL_EVENT_UPDATE && strcmp(ev->name, "withdraw_later") == 0) {
        amount_of(ev->json, &amount);
        l->withdrawing = amount;
        l->withdraw_update = ev->seq;
        l->withdraw_timer = keel_workflow_timer(ctx, 500);
        return l->withdraw_timer ? KEEL_OK : KEEL_EINVAL;
    }
    if (ev->kind == KEEL_EVENT_TIMER_FIRED && ev->seq == l->withdraw_timer) {
        l->balance -= l->withdrawing;
        uint32_t update = l->withdraw_update;
        l->withdraw_update = 0;
        return ledger_balance(ctx, l, update);
    }
    if (ev->kind == KEEL_EVENT_SIGNAL && strcmp(ev->name, "close") == 0) {
        char buf[64];
        snprintf(buf, sizeof buf, "%lld", l->balance);
        return keel_workflow_complete(ctx, buf);
    }
    return keel_workflow_error(ctx, "Ledger does not expect event %d", (int)ev->kind);
}

static const char *const ledger_updates[] = {"deposit", "withdraw_later", "refuse", NULL};
static const char *const ledger_signals[] = {"close", NULL};
static const keel_workflow_type ledger_type = {.name = "Ledger",
                                               .state_size = sizeof(ledger),
                                               .start = ledger_start,
                                               .on_event = ledger_event,
                                               .signals = ledger_signals,
                                               .updates = ledger_updates,
                                               .validate_update = ledger_validate};

/* Runs the activity its input names ({"activity": name}) with quick retries (3 attempts);
 * completes with its result, or with {"failed": type, "message": ...}. */
static int run_one_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    char name[64];
    if (sscanf(input, "{\"activity\":\"%63[a-z_]\"}", name) != 1)
        return keel_workflow_error(ctx, "input %s names no activity", input);
    keel_retry_policy retry = {.initial_interval_ms = 100, .maximum_attempts = 3};
    keel_activity_options o = {.start_to_close_ms = 30000, .retry = &retry};
    return keel_workflow_activity(ctx, name, NULL, &o) ? KEEL_OK : KEEL_EINVAL;
}

static int run_one_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind == KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_complete(ctx, ev->json);
    if (ev->kind != KEEL_EVENT_ACTIVITY_FAILED)
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    char buf[512];
    snprintf(buf, sizeof buf, "{\"failed\":\"%.60s\",\"message\":\"%.300s\"}", ev->failure_type,
             ev->failure_message);
    return keel_workflow_complete(ctx, buf);
}

static const keel_workflow_type run_one_type = {
    .name = "RunOne", .state_size = 1, .start = run_one_start, .on_event = run_one_event};

static const keel_workflow_type *const workflows[] = {
    &chain_type,  &sleeper_type,  &approval_type, &cancellable_type, &stager_type, &versioned_type,
    &parent_type, &notifier_type, &counter_type,  &ledger_type,      &run_one_type};

/* ---- fixture: one worker on a fresh task queue per test ---- */

static keel_client *client;
static keel_worker *worker;
static char queue[96];

/* A worker on `queue` with a cache of `cached` runs. */
static void start_worker(int cached)
{
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.workflows = workflows;
    w.n_workflows = sizeof workflows / sizeof workflows[0];
    w.activities = activities;
    w.n_activities = sizeof activities / sizeof activities[0];
    w.max_concurrent_activities = 4;
    w.max_cached_workflows = cached;
    w.shutdown_grace_ms = 500;
    keel_error err;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);
}

/* What a deploy does: the old process goes (its cache with it), a new one starts. */
static void restart_worker(int cached)
{
    keel_worker_free(worker);
    start_worker(cached);
}

static void setup(void)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(queue, sizeof queue, "keel-worker-%ld-%ld", (long)getpid(), (long)ts.tv_nsec);
    atomic_store(&approval_v2, false);
    start_worker(256);
}

static void teardown(void)
{
    keel_worker_free(worker);
    keel_client_free(client);
}

static char *start(const char *type, const char *id_prefix, const char *input, char *id,
                   size_t idsz)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id, idsz, "%s-%ld-%ld", id_prefix, (long)getpid(), (long)ts.tv_nsec);
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = type;
    o.task_queue = queue;
    o.input_json = input;
    o.task_timeout_ms = 2000; /* a failed task is retried quickly */
    char *run = NULL;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(client, &o, &run, &err) == KEEL_OK, "%s", err.message);
    return run;
}

static keel_workflow_outcome wait_result(const char *id)
{
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(client, id, NULL, 30000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    return out;
}

START_TEST(an_activity_chain_with_retries_completes)
{
    char id[128];
    free(start("Chain", "keel-chain", "{\"name\":\"ana\"}", id, sizeof id));
    keel_workflow_outcome out = wait_result(id);
    ck_assert_msg(out.status == KEEL_WORKFLOW_STATUS_COMPLETED, "%s: %s",
                  keel_workflow_status_name(out.status),
                  out.failure_message ? out.failure_message : "");
    /* The workflow completes with the flaky activity's result: it took three attempts. */
    ck_assert_str_eq(out.result_json, "{\"attempt\":3}");
    keel_workflow_outcome_dispose(&out);
    /* The client can see the close event before the worker's answer returns: allow a moment. */
    keel_worker_stats s;
    keel_worker_get_stats(worker, &s);
    for (int i = 0; i < 100 && s.workflow_tasks_completed < 3; i++) {
        usleep(20 * 1000);
        keel_worker_get_stats(worker, &s);
    }
    ck_assert_uint_ge(s.activities_completed, 2);
    ck_assert_uint_ge(s.activities_failed, 2);
    ck_assert_uint_ge(s.workflow_tasks_completed, 3);
}
END_TEST

START_TEST(a_non_retryable_activity_failure_reaches_the_workflow)
{
    char id[128];
    free(start("Chain", "keel-refuse", "{\"refuse\":true}", id, sizeof id));
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_FAILED);
    ck_assert_str_eq(out.failure_type, "OutOfStock");
    ck_assert_ptr_nonnull(strstr(out.failure_message, "no laptops left"));
    keel_workflow_outcome_dispose(&out);
}
END_TEST

START_TEST(a_durable_timer_fires)
{
    char id[128];
    int64_t t0 = now_ms();
    free(start("Sleeper", "keel-sleep", NULL, id, sizeof id));
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_int_ge(now_ms() - t0, 1000);
    ck_assert_ptr_nonnull(strstr(out.result_json, "woke_at"));
    keel_workflow_outcome_dispose(&out);
}
END_TEST

START_TEST(signals_queries_and_the_stack_trace)
{
    char id[128];
    free(start("Approval", "keel-approval", NULL, id, sizeof id));
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal(client, id, NULL, "note", "\"budget ok\"", &err) ==
                      KEEL_OK,
                  "%s", err.message);
    /* The query replays the run on the worker: the note must be in the state. */
    char *status = NULL;
    for (int64_t until = now_ms() + 10000; now_ms() < until; usleep(100 * 1000)) {
        free(status);
        status = NULL;
        if (keel_client_workflow_query(client, id, NULL, "status", NULL, &status, &err) ==
                KEEL_OK &&
            strstr(status, "\"notes\":1"))
            break;
    }
    ck_assert_msg(status != NULL, "%s", err.message);
    ck_assert_str_eq(status, "{\"notes\":1,\"last\":\"budget ok\"}");
    free(status);
    char *trace = NULL;
    ck_assert_msg(keel_client_workflow_query(client, id, NULL, "__stack_trace", NULL, &trace,
                                             &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_str_eq(trace, "\"waiting for approval (1 notes so far)\"");
    free(trace);
    /* What the Web UI asks to list queries and signals and show the current details. */
    char *meta = NULL;
    ck_assert_msg(keel_client_workflow_query(client, id, NULL, "__temporal_workflow_metadata", NULL,
                                             &meta, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_ptr_nonnull(strstr(meta, "\"type\":\"Approval\""));
    ck_assert_ptr_nonnull(strstr(meta, "{\"name\":\"status\"}"));
    ck_assert_ptr_nonnull(strstr(meta, "{\"name\":\"approve\"}"));
    ck_assert_ptr_nonnull(strstr(meta, "\"currentDetails\":\"waiting for approval (1 notes"));
    free(meta);
    /* A query the workflow does not know is refused with a message, not a hang. */
    ck_assert_int_ne(keel_client_workflow_query(client, id, NULL, "nope", NULL, &trace, &err),
                     KEEL_OK);
    ck_assert_ptr_nonnull(strstr(err.message, "nope"));

    ck_assert_int_eq(
        keel_client_workflow_signal(client, id, NULL, "approve", "{\"by\":\"ana\"}", &err),
        KEEL_OK);
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "{\"by\":\"ana\"}");
    keel_workflow_outcome_dispose(&out);
}
END_TEST

/* Whether the run's history has a workflow task failure whose message contains `text`. */
static bool task_failed_with(const char *id, const char *text, int cause)
{
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
    Temporal__Api__Common__V1__WorkflowExecution e =
        TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    e.workflow_id = (char *)id;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.execution = &e;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    keel_error err;
    ck_assert_int_eq(
        keel_transport_call(
            t, WF("GetWorkflowExecutionHistory"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
            (ProtobufCMessage **)&resp, &co, &err),
        KEEL_OK);
    bool found = false;
    for (size_t i = 0; resp->history && i < resp->history->n_events; i++) {
        const Temporal__Api__History__V1__HistoryEvent *ev = resp->history->events[i];
        if (ev->attributes_case !=
            TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_TASK_FAILED_EVENT_ATTRIBUTES)
            continue;
        const Temporal__Api__History__V1__WorkflowTaskFailedEventAttributes *a =
            ev->workflow_task_failed_event_attributes;
        if ((int)a->cause == cause && a->failure && strstr(a->failure->message, text))
            found = true;
    }
    protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
    return found;
}

START_TEST(changed_workflow_code_is_caught_as_non_determinism)
{
    char id[128];
    free(start("Approval", "keel-nondet", NULL, id, sizeof id));
    keel_error err;
    /* v1 answers the first task with no commands; wait until that is recorded. */
    keel_workflow_info w;
    for (int64_t until = now_ms() + 10000; now_ms() < until; usleep(100 * 1000)) {
        ck_assert_int_eq(keel_client_workflow_describe(client, id, NULL, &w, &err), KEEL_OK);
        bool done = w.history_length >= 4;
        keel_workflow_info_dispose(&w);
        if (done)
            break;
    }
    /* "Deploy" v2, which schedules an activity at start, then wake the run up. */
    atomic_store(&approval_v2, true);
    restart_worker(256);
    ck_assert_int_eq(keel_client_workflow_signal(client, id, NULL, "note", "1", &err), KEEL_OK);
    bool seen = false;
    for (int64_t until = now_ms() + 15000; !seen && now_ms() < until; usleep(200 * 1000))
        seen = task_failed_with(
            id, "[TMPRL1100]",
            TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR);
    ck_assert_msg(seen, "no NON_DETERMINISTIC_ERROR task failure in the history of %s", id);
    ck_assert(task_failed_with(
        id, "ScheduleActivityTask (activity 1, type greet)",
        TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR));
    keel_worker_stats s;
    keel_worker_get_stats(worker, &s);
    ck_assert_uint_ge(s.workflow_tasks_failed, 1);

    /* Rolling the code back lets the run go on: the retried task replays cleanly. */
    atomic_store(&approval_v2, false);
    restart_worker(256);
    ck_assert_int_eq(keel_client_workflow_signal(client, id, NULL, "approve", "\"ok\"", &err),
                     KEEL_OK);
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "\"ok\"");
    keel_workflow_outcome_dispose(&out);
}
END_TEST

START_TEST(an_unregistered_workflow_type_fails_its_task_with_a_clear_message)
{
    char id[128];
    free(start("NoSuchWorkflow", "keel-unknown", NULL, id, sizeof id));
    bool seen = false;
    for (int64_t until = now_ms() + 10000; !seen && now_ms() < until; usleep(200 * 1000))
        seen = task_failed_with(
            id, "workflow type 'NoSuchWorkflow' is not registered",
            TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE);
    ck_assert(seen);
    keel_error err;
    keel_client_workflow_terminate(client, id, NULL, "test over", &err);
}
END_TEST

/* Signal a note and wait until the worker has answered the task it caused. */
static void note(const char *id, int expect_notes)
{
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_signal(client, id, NULL, "note", "\"n\"", &err), KEEL_OK);
    char want[32];
    snprintf(want, sizeof want, "\"notes\":%d", expect_notes);
    for (int64_t until = now_ms() + 10000; now_ms() < until; usleep(50 * 1000)) {
        char *status = NULL;
        if (keel_client_workflow_query(client, id, NULL, "status", NULL, &status, &err) ==
                KEEL_OK &&
            strstr(status, want)) {
            free(status);
            return;
        }
        free(status);
    }
    ck_abort_msg("workflow %s never saw note %d", id, expect_notes);
}

START_TEST(the_sticky_cache_serves_a_runs_next_tasks)
{
    char id[128];
    free(start("Approval", "keel-sticky", NULL, id, sizeof id));
    note(id, 1);
    note(id, 2);
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_signal(client, id, NULL, "approve", "1", &err), KEEL_OK);
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_outcome_dispose(&out);
    keel_worker_stats s;
    keel_worker_get_stats(worker, &s);
    /* The first task (the first note may ride along with it) replays from history; the
     * later signal tasks come from the cache. */
    ck_assert_msg(s.cache_hits >= 2 && s.cache_misses == 1, "hits %llu misses %llu completed %llu",
                  (unsigned long long)s.cache_hits, (unsigned long long)s.cache_misses,
                  (unsigned long long)s.workflow_tasks_completed);
    ck_assert_uint_eq(s.cached_runs, 0); /* a closed run leaves the cache */
}
END_TEST

START_TEST(a_cache_of_one_still_completes_interleaved_runs)
{
    restart_worker(1);
    char a[128], b[128];
    free(start("Approval", "keel-evict-a", NULL, a, sizeof a));
    free(start("Approval", "keel-evict-b", NULL, b, sizeof b));
    note(a, 1);
    note(b, 1);
    note(a, 2);
    note(b, 2);
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_signal(client, a, NULL, "approve", "\"a\"", &err),
                     KEEL_OK);
    ck_assert_int_eq(keel_client_workflow_signal(client, b, NULL, "approve", "\"b\"", &err),
                     KEEL_OK);
    keel_workflow_outcome out = wait_result(a);
    ck_assert_str_eq(out.result_json, "\"a\"");
    keel_workflow_outcome_dispose(&out);
    out = wait_result(b);
    ck_assert_str_eq(out.result_json, "\"b\"");
    keel_workflow_outcome_dispose(&out);
    keel_worker_stats s;
    keel_worker_get_stats(worker, &s);
    ck_assert_uint_ge(s.cache_evictions, 2); /* each run pushed the other out */
    ck_assert_uint_ge(s.cache_misses, 4);    /* and was rebuilt from its full history */
    ck_assert_uint_le(s.cached_runs, 1);
}
END_TEST

START_TEST(without_a_cache_every_task_replays)
{
    restart_worker(0);
    char id[128];
    free(start("Chain", "keel-nocache", "{\"name\":\"bo\"}", id, sizeof id));
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_outcome_dispose(&out);
    keel_worker_stats s;
    keel_worker_get_stats(worker, &s);
    ck_assert_uint_eq(s.cache_hits, 0);
    ck_assert_uint_ge(s.cache_misses, 3);
}
END_TEST

START_TEST(cancelling_a_run_reaches_its_running_activity)
{
    atomic_store(&long_runs, 0);
    atomic_store(&long_saw_cancel, 0);
    char id[128];
    free(start("Cancellable", "keel-cancel", NULL, id, sizeof id));
    for (int64_t until = now_ms() + 10000; atomic_load(&long_runs) == 0 && now_ms() < until;)
        usleep(50 * 1000);
    ck_assert_int_eq(atomic_load(&long_runs), 1);
    keel_error err;
    int64_t t0 = now_ms();
    ck_assert_int_eq(keel_client_workflow_cancel(client, id, NULL, "no longer needed", &err),
                     KEEL_OK);
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_CANCELED);
    keel_workflow_outcome_dispose(&out);
    ck_assert_int_eq(atomic_load(&long_saw_cancel), 1);
    /* It took a heartbeat or two, not the activity's 20 s. */
    ck_assert_int_lt(now_ms() - t0, 10000);
}
END_TEST

/* Chain with a change: the second activity is another one. Its history must not replay. */
static int chain_v2_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    chain *c = state;
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    if (c->done++ == 0) {
        keel_activity_options o = {.start_to_close_ms = 10000};
        return keel_workflow_activity(ctx, "greet", NULL, &o) ? KEEL_OK : KEEL_EINVAL;
    }
    return keel_workflow_complete(ctx, ev->json);
}

START_TEST(a_recorded_history_replays_and_catches_changed_code)
{
    char id[128];
    free(start("Chain", "keel-replay", "{\"name\":\"cy\"}", id, sizeof id));
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_outcome_dispose(&out);

    keel_error err;
    char *json = NULL, *bin = NULL;
    size_t json_len, bin_len;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json,
                                               &json_len, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_BINARY, &bin,
                                               &bin_len, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_ptr_nonnull(strstr(json, "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"));

    /* The same code replays both forms. */
    ck_assert_msg(keel_replay(&chain_type, json, json_len, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_replay(&chain_type, bin, bin_len, &err) == KEEL_OK, "%s", err.message);

    /* From a file, as `keelctl workflow history --output` writes it. */
    char path[] = "/tmp/keel-history-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_eq(write(fd, json, json_len), (ssize_t)json_len);
    close(fd);
    ck_assert_msg(keel_replay_file(&chain_type, path, &err) == KEEL_OK, "%s", err.message);
    unlink(path);

    /* Changed code is caught, naming what differs. */
    keel_workflow_type v2 = chain_type;
    v2.on_event = chain_v2_event;
    ck_assert_int_eq(keel_replay(&v2, json, json_len, &err), KEEL_ENONDETERMINISM);
    ck_assert_ptr_nonnull(strstr(err.message, "type greet"));
    ck_assert_ptr_nonnull(strstr(err.message, "type flaky"));

    /* Another type's history, and things that are not histories. */
    ck_assert_int_eq(keel_replay(&sleeper_type, json, json_len, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "'Chain', not 'Sleeper'"));
    ck_assert_int_eq(keel_replay(&chain_type, "{\"events\": 7}", 14, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_replay(&chain_type, "\x01\x02garbage", 9, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_replay_file(&chain_type, "/nonexistent/h.json", &err), KEEL_EIO);
    free(json);
    free(bin);
}
END_TEST

START_TEST(search_attributes_and_memo_reach_visibility)
{
    char id[128];
    free(start("Stager", "keel-stager", "1250.5", id, sizeof id));
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_outcome_dispose(&out);
    keel_workflow_info w;
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_describe(client, id, NULL, &w, &err), KEEL_OK);
    int seen = 0;
    for (size_t i = 0; i < w.n_search_attributes; i++) {
        if (strcmp(w.search_attributes[i].key, "ProcurementStage") == 0 &&
            strcmp(w.search_attributes[i].value, "\"approval\"") == 0)
            seen++;
        if (strcmp(w.search_attributes[i].key, "AmountUSD") == 0 &&
            atof(w.search_attributes[i].value) == 1250.5)
            seen++;
    }
    for (size_t i = 0; i < w.n_memo; i++)
        if (strcmp(w.memo[i].key, "note") == 0 &&
            strcmp(w.memo[i].value, "\"waiting for ana\"") == 0)
            seen++;
    keel_workflow_info_dispose(&w);
    ck_assert_int_eq(seen, 3);
    /* And the run replays: the upserts match their recorded events. */
    char *json;
    size_t len;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len, &err),
        KEEL_OK);
    ck_assert_msg(keel_replay(&stager_type, json, len, &err) == KEEL_OK, "%s", err.message);
    free(json);
}
END_TEST

START_TEST(get_version_markers_reach_the_server_and_replay)
{
    char id[128];
    free(start("Versioned", "keel-versioned", NULL, id, sizeof id));
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "{\"version\":2}");
    keel_workflow_outcome_dispose(&out);
    char *json;
    size_t len;
    keel_error err;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len, &err),
        KEEL_OK);
    ck_assert_ptr_nonnull(strstr(json, "EVENT_TYPE_MARKER_RECORDED"));
    ck_assert_msg(keel_replay(&versioned_type, json, len, &err) == KEEL_OK, "%s", err.message);
    free(json);
}
END_TEST

START_TEST(child_workflows_complete_and_fail_into_their_parent)
{
    char id[128];
    char *parent_run = start("Parent", "keel-parent", "{\"name\":\"kid\"}", id, sizeof id);
    keel_workflow_outcome out = wait_result(id);
    ck_assert_msg(out.status == KEEL_WORKFLOW_STATUS_COMPLETED, "%s",
                  out.failure_message ? out.failure_message : "");
    ck_assert_str_eq(out.result_json, "{\"child\":{\"attempt\":3},\"type\":\"Chain\"}");
    keel_workflow_outcome_dispose(&out);
    /* The child ran under its derived id, and the parent's history replays. */
    char child[160];
    snprintf(child, sizeof child, "%s-child-1-%.8s", id, parent_run);
    free(parent_run);
    keel_workflow_info w;
    keel_error err;
    ck_assert_int_eq(keel_client_workflow_describe(client, child, NULL, &w, &err), KEEL_OK);
    ck_assert_int_eq(w.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_info_dispose(&w);
    char *json;
    size_t len;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len, &err),
        KEEL_OK);
    ck_assert_msg(keel_replay(&parent_type, json, len, &err) == KEEL_OK, "%s", err.message);
    free(json);

    /* A child that fails: its failure reaches the parent. */
    free(start("Parent", "keel-parent-fail", "{\"refuse\":true}", id, sizeof id));
    out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_FAILED);
    ck_assert_str_eq(out.failure_type, "OutOfStock");
    ck_assert_ptr_nonnull(strstr(out.failure_message, "no laptops left"));
    keel_workflow_outcome_dispose(&out);
}
END_TEST

START_TEST(signal_with_start_starts_once_then_signals)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char id[128];
    snprintf(id, sizeof id, "keel-sws-%ld-%ld", (long)getpid(), (long)ts.tv_nsec);
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = "Approval";
    o.task_queue = queue;
    char *first = NULL, *second = NULL;
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal_with_start(client, &o, "note", "\"one\"", &first,
                                                         &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_msg(keel_client_workflow_signal_with_start(client, &o, "note", "\"two\"", &second,
                                                         &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_str_eq(first, second); /* the same run, signalled twice */
    free(first);
    free(second);
    ck_assert_int_eq(keel_client_workflow_signal(client, id, NULL, "approve", "\"done\"", &err),
                     KEEL_OK);
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_outcome_dispose(&out);
    /* Both notes were in the run before the approval. */
    char *json;
    size_t len;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len, &err),
        KEEL_OK);
    const char *p1 = strstr(json, "Im9uZSI="), *p2 = strstr(json, "InR3byI=");
    ck_assert_msg(p1 && p2 && p1 < p2, "signals missing or out of order");
    free(json);
}
END_TEST

START_TEST(a_workflow_signals_another)
{
    char target[128], notifier[128], input[160];
    free(start("Approval", "keel-target", NULL, target, sizeof target));
    snprintf(input, sizeof input, "\"%s\"", target);
    free(start("Notifier", "keel-notifier", input, notifier, sizeof notifier));
    keel_workflow_outcome out = wait_result(notifier);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "\"delivered\"");
    keel_workflow_outcome_dispose(&out);
    out = wait_result(target);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "\"by notifier\"");
    keel_workflow_outcome_dispose(&out);

    /* No such workflow: the sender hears it failed. */
    free(
        start("Notifier", "keel-notifier-lost", "\"keel-nobody-home\"", notifier, sizeof notifier));
    out = wait_result(notifier);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_FAILED);
    ck_assert_str_eq(out.failure_type, "SignalFailed");
    ck_assert_ptr_nonnull(strstr(out.failure_message, "NOT_FOUND"));
    keel_workflow_outcome_dispose(&out);
}
END_TEST

START_TEST(a_schedule_starts_runs_that_complete)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char id[128];
    snprintf(id, sizeof id, "keel-schedule-%ld-%ld", (long)getpid(), (long)ts.tv_nsec);
    keel_schedule_options o;
    keel_schedule_options_init(&o, KEEL_SCHEDULE_OPTIONS_VERSION);
    o.schedule_id = id;
    o.interval_ms = 3600 * 1000; /* not due during the test: the run comes from the trigger */
    o.workflow_type = "Stager";
    o.task_queue = queue;
    o.input_json = "99.5";
    o.note = "nightly batch";
    keel_error err;
    ck_assert_msg(keel_client_schedule_create(client, &o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(keel_client_schedule_create(client, &o, &err), KEEL_EEXISTS);
    ck_assert_msg(keel_client_schedule_trigger(client, id, &err) == KEEL_OK, "%s", err.message);

    keel_schedule_info info = {0};
    for (int64_t until = now_ms() + 15000; now_ms() < until; usleep(200 * 1000)) {
        keel_schedule_info_dispose(&info);
        ck_assert_int_eq(keel_client_schedule_describe(client, id, &info, &err), KEEL_OK);
        if (info.action_count >= 1 && info.n_running == 0)
            break; /* started, and already done */
    }
    ck_assert_int_eq(info.action_count, 1);
    ck_assert_uint_eq(info.n_running, 0);
    ck_assert_str_eq(info.spec, "every 1h");
    ck_assert_str_eq(info.workflow_type, "Stager");
    ck_assert_str_eq(info.note, "nightly batch");
    ck_assert_uint_ge(info.n_next, 1);
    keel_schedule_info_dispose(&info);

    /* The run it started carries the schedule's id in its search attributes. */
    char query[256];
    snprintf(query, sizeof query, "TemporalScheduledById = '%s'", id);
    keel_workflow_list l = {0};
    for (int64_t until = now_ms() + 10000; now_ms() < until; usleep(200 * 1000)) {
        ck_assert_int_eq(keel_client_workflow_list(client, query, 10, &l, &err), KEEL_OK);
        if (l.count == 1 && l.items[0].status == KEEL_WORKFLOW_STATUS_COMPLETED)
            break;
        keel_workflow_list_dispose(&l);
    }
    ck_assert_uint_eq(l.count, 1);
    ck_assert_int_eq(l.items[0].status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_list_dispose(&l);

    ck_assert_int_eq(keel_client_schedule_pause(client, id, true, "budget freeze", &err), KEEL_OK);
    ck_assert_int_eq(keel_client_schedule_describe(client, id, &info, &err), KEEL_OK);
    ck_assert(info.paused);
    ck_assert_str_eq(info.note, "budget freeze");
    keel_schedule_info_dispose(&info);

    bool listed = false;
    for (int64_t until = now_ms() + 10000; !listed && now_ms() < until; usleep(200 * 1000)) {
        keel_schedule_list sl;
        ck_assert_int_eq(keel_client_schedule_list(client, &sl, &err), KEEL_OK);
        for (size_t i = 0; i < sl.count; i++)
            listed |= strcmp(sl.ids[i], id) == 0;
        keel_schedule_list_dispose(&sl);
    }
    ck_assert(listed);
    ck_assert_int_eq(keel_client_schedule_delete(client, id, &err), KEEL_OK);
    ck_assert_int_eq(keel_client_schedule_describe(client, id, &info, &err), KEEL_ENOTFOUND);
    /* Bad options never reach the server. */
    o.cron = "0 9 * * *"; /* and an interval: one too many */
    ck_assert_int_eq(keel_client_schedule_create(client, &o, &err), KEEL_EINVAL);
}
END_TEST

START_TEST(continue_as_new_carries_state_across_runs)
{
    char id[128];
    char *first = start("Counter", "keel-counter", "{\"n\":0}", id, sizeof id);
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_ptr_nonnull(strstr(out.result_json, "\"n\":3"));
    ck_assert_str_ne(out.run_id, first); /* the fourth run, not the first */
    ck_assert_ptr_nonnull(strstr(out.result_json, out.run_id));
    keel_workflow_outcome_dispose(&out);
    /* Four runs share the id: three continued as new, one completed. */
    char query[200];
    snprintf(query, sizeof query, "WorkflowId = '%s'", id);
    keel_workflow_list l = {0};
    keel_error err;
    for (int64_t until = now_ms() + 10000; now_ms() < until; usleep(200 * 1000)) {
        ck_assert_int_eq(keel_client_workflow_list(client, query, 10, &l, &err), KEEL_OK);
        if (l.count == 4)
            break;
        keel_workflow_list_dispose(&l);
    }
    ck_assert_uint_eq(l.count, 4);
    int continued = 0;
    for (size_t i = 0; i < l.count; i++)
        continued += l.items[i].status == KEEL_WORKFLOW_STATUS_CONTINUED_AS_NEW;
    ck_assert_int_eq(continued, 3);
    keel_workflow_list_dispose(&l);
    free(first);
}
END_TEST

/* Send an update and check its answer: the result, or (expect_ok false) a failure holding
 * `text`. */
static void update(const char *id, const char *update_id, const char *name, const char *args,
                   bool expect_ok, const char *text)
{
    keel_update_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_update(client, id, NULL, update_id, name, args, 30000, &out,
                                              &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_msg(out.failed == !expect_ok, "update %s(%s): %s", name, args,
                  out.failed ? out.failure_message : out.result_json);
    const char *got = out.failed ? out.failure_message : out.result_json;
    ck_assert_msg(strstr(got, text) != NULL, "update %s(%s) answered %s, expected %s", name, args,
                  got, text);
    keel_update_outcome_dispose(&out);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* A changed Ledger that leaves deposits unanswered. */
static int ledger_forgetful_event(keel_workflow_ctx *ctx, void *state,
                                  const keel_workflow_event *ev)
{
    if (ev->kind == KEEL_EVENT_UPDATE && strcmp(ev->name, "deposit") == 0)
        return KEEL_OK;
    return ledger_event(ctx, state, ev);
}

START_TEST(updates_are_validated_accepted_answered_and_replayed)
{
    char id[128];
    free(start("Ledger", "keel-update", NULL, id, sizeof id));
    update(id, NULL, "deposit", "5", true, "{\"balance\":5}");
    /* Rejected by the validator, or undeclared: the client hears why; history keeps nothing. */
    update(id, NULL, "deposit", "-3", false, "must be a positive whole number, not -3");
    update(id, NULL, "withdraw_later", "50", false, "cannot withdraw 50 from 5");
    update(id, NULL, "bogus", "1", false, "takes no update named 'bogus'");
    /* Answered later, when a timer fires; and failed by its handler. */
    update(id, NULL, "withdraw_later", "2", true, "{\"balance\":3}");
    update(id, NULL, "refuse", NULL, false, "always refused");
    /* The same update id twice is one update. */
    update(id, "dep-once", "deposit", "4", true, "{\"balance\":7}");
    update(id, "dep-once", "deposit", "4", true, "{\"balance\":7}");

    /* A new worker without a cache replays the accepted updates from history. */
    restart_worker(0);
    update(id, NULL, "deposit", "1", true, "{\"balance\":8}");
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal(client, id, NULL, "close", NULL, &err) == KEEL_OK,
                  "%s", err.message);
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_str_eq(out.result_json, "8");
    keel_workflow_outcome_dispose(&out);

    char *json = NULL;
    size_t len;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_int_eq(count_of(json, "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED"), 5);
    ck_assert_int_eq(count_of(json, "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED"), 5);
    ck_assert_int_eq(count_of(json, "bogus"), 0);
    ck_assert_msg(keel_replay(&ledger_type, json, len, &err) == KEEL_OK, "%s", err.message);
    /* Code that answers an update differently no longer matches its history. */
    keel_workflow_type changed = ledger_type;
    changed.on_event = ledger_forgetful_event;
    ck_assert_int_eq(keel_replay(&changed, json, len, &err), KEEL_ENONDETERMINISM);
    free(json);
}
END_TEST

static keel_workflow_outcome completed_run(const char *id)
{
    keel_workflow_outcome out = wait_result(id);
    ck_assert_msg(out.status == KEEL_WORKFLOW_STATUS_COMPLETED, "%s: %s", id,
                  out.failure_message ? out.failure_message : "not completed");
    return out;
}

START_TEST(an_activity_completes_asynchronously_by_token_or_id)
{
    char id[128];
    keel_error err;
    size_t len;
    free(start("RunOne", "keel-async", "{\"activity\":\"async_task\"}", id, sizeof id));
    uint8_t *token = take_async_token(&len);
    keel_activity_ref by_token = {.token = token, .token_len = len};
    bool cancel = true;
    ck_assert_msg(keel_client_activity_heartbeat(client, &by_token, "{\"waiting\":true}", &cancel,
                                                 &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert(!cancel);
    ck_assert_msg(keel_client_activity_complete(client, &by_token, "{\"signed\":\"ana\"}", &err) ==
                      KEEL_OK,
                  "%s", err.message);
    keel_workflow_outcome out = completed_run(id);
    ck_assert_str_eq(out.result_json, "{\"signed\":\"ana\"}");
    keel_workflow_outcome_dispose(&out);
    /* Once answered, the token is spent. */
    ck_assert_int_eq(keel_client_activity_complete(client, &by_token, "1", &err), KEEL_ENOTFOUND);
    free(token);

    /* By workflow id and activity id (the first activity's id is "1"), failed for good. */
    free(start("RunOne", "keel-async-id", "{\"activity\":\"async_task\"}", id, sizeof id));
    free(take_async_token(&len));
    keel_activity_ref by_id = {.workflow_id = id, .activity_id = "1"};
    keel_activity_failure f = {
        .type = "Declined", .message = "the buyer said no", .non_retryable = true};
    ck_assert_msg(keel_client_activity_fail(client, &by_id, &f, &err) == KEEL_OK, "%s",
                  err.message);
    out = completed_run(id);
    ck_assert_ptr_nonnull(strstr(out.result_json, "\"failed\":\"Declined\""));
    ck_assert_ptr_nonnull(strstr(out.result_json, "the buyer said no"));
    keel_workflow_outcome_dispose(&out);
    keel_activity_ref nobody = {.workflow_id = id};
    ck_assert_int_eq(keel_client_activity_complete(client, &nobody, NULL, &err), KEEL_EINVAL);
}
END_TEST

START_TEST(a_failure_can_set_the_next_retry_delay)
{
    char id[128];
    free(start("RunOne", "keel-retry-delay", "{\"activity\":\"slow_down\"}", id, sizeof id));
    keel_workflow_outcome out = completed_run(id);
    ck_assert_str_eq(out.result_json, "{\"attempt\":2}");
    keel_workflow_outcome_dispose(&out);
    /* The policy says 100 ms; the failure asked for 1.5 s. */
    ck_assert_int_ge(atomic_load(&slow_gap_ms), 1400);
}
END_TEST

START_TEST(a_stopping_worker_hands_running_activities_back)
{
    char id[128];
    atomic_store(&long_runs, 0);
    free(start("Cancellable", "keel-handback", "30", id, sizeof id));
    for (int64_t until = now_ms() + 10000; atomic_load(&long_runs) == 0 && now_ms() < until;)
        usleep(20 * 1000);
    ck_assert_int_eq(atomic_load(&long_runs), 1);
    /* The 3 s activity does not hold the stop beyond the grace period (0.5 s)... */
    int64_t t0 = now_ms();
    keel_worker_stop(worker);
    ck_assert_int_lt(now_ms() - t0, 2500);
    /* ...and its attempt went back to the server, which retries it on the next worker. */
    restart_worker(256);
    keel_workflow_outcome out = completed_run(id);
    ck_assert_str_eq(out.result_json, "\"finished\"");
    keel_workflow_outcome_dispose(&out);
    ck_assert_int_eq(atomic_load(&long_runs), 2);
}
END_TEST

/* How many events of `type` the run's history holds. */
static int count_events(const char *id, Temporal__Api__Enums__V1__EventType type)
{
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Common__V1__WorkflowExecution x =
        TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    x.workflow_id = (char *)id;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.execution = &x;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *h = NULL;
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    keel_error err;
    ck_assert_msg(
        keel_transport_call(
            t, WF("GetWorkflowExecutionHistory"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
            (ProtobufCMessage **)&h, &co, &err) == KEEL_OK,
        "%s", err.message);
    int n = 0;
    for (size_t i = 0; h->history && i < h->history->n_events; i++)
        n += h->history->events[i]->event_type == type;
    protobuf_c_message_free_unpacked((ProtobufCMessage *)h, NULL);
    return n;
}

/* Found by tests/multiworker/run: a stopping worker gave its sticky queue up only after the
 * activities' grace period, so a run cached here whose activity completed during the grace (here,
 * the one this worker runs) had its next workflow task wait on a sticky queue nobody polled, for
 * the sticky schedule-to-start timeout (5 s), in every rolling restart. */
START_TEST(a_stopping_worker_gives_its_sticky_queue_up_before_the_grace)
{
    keel_worker_free(worker);
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.workflows = workflows;
    w.n_workflows = sizeof workflows / sizeof workflows[0];
    w.activities = activities;
    w.n_activities = sizeof activities / sizeof activities[0];
    w.max_concurrent_activities = 4;
    w.max_cached_workflows = 256;
    w.shutdown_grace_ms = 8000; /* the 1.5 s activity finishes within it */
    keel_error err;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);
    char id[128];
    atomic_store(&long_runs, 0);
    free(start("Cancellable", "keel-sticky-release", "15", id, sizeof id));
    for (int64_t until = now_ms() + 10000; atomic_load(&long_runs) == 0 && now_ms() < until;)
        usleep(20 * 1000);
    ck_assert_int_eq(atomic_load(&long_runs), 1);
    /* The run is cached here and its activity runs here: the stop waits for the activity... */
    int64_t t0 = now_ms();
    keel_worker_stop(worker);
    ck_assert_int_ge(now_ms() - t0, 500);
    /* ...whose completion must reach the next worker through the normal queue at once. */
    t0 = now_ms();
    restart_worker(256);
    keel_workflow_outcome out = completed_run(id);
    ck_assert_str_eq(out.result_json, "\"finished\"");
    keel_workflow_outcome_dispose(&out);
    ck_assert_int_eq(atomic_load(&long_runs), 1);
    ck_assert_int_eq(
        count_events(id, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT),
        0);
    ck_assert_int_lt(now_ms() - t0, 4000);
}
END_TEST

START_TEST(stop_returns_promptly_while_polls_wait)
{
    /* The fixture's worker has long polls in flight; stopping must cancel them, not wait 70 s. */
    int64_t t0 = now_ms();
    keel_worker_stop(worker);
    ck_assert_int_lt(now_ms() - t0, 5000);
    keel_worker_stop(worker); /* twice is fine */
}
END_TEST

/* ---- the server's view of the worker: heartbeats, ListWorkers, the SDK in history ---- */

typedef Temporal__Api__Workflowservice__V1__ListWorkersResponse list_workers_response;
typedef Temporal__Api__Workflowservice__V1__DescribeWorkerResponse describe_worker_response;

/* The server's list of workers on `queue` (ListWorkers, as the Web UI's Workers tab asks). */
static list_workers_response *list_workers(const char *q)
{
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__ListWorkersRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__LIST_WORKERS_REQUEST__INIT;
    char query[160];
    snprintf(query, sizeof query, "TaskQueue=\"%s\"", q);
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.page_size = 10;
    req.query = query;
    list_workers_response *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    keel_error err;
    ck_assert_msg(
        keel_transport_call(t, WF("ListWorkers"), (ProtobufCMessage *)&req,
                            &temporal__api__workflowservice__v1__list_workers_response__descriptor,
                            (ProtobufCMessage **)&resp, &co, &err) == KEEL_OK,
        "%s", err.message);
    return resp;
}

/* A worker's last heartbeat as the server keeps it (DescribeWorker); NULL when it has none. */
static describe_worker_response *describe_worker(const char *key)
{
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__DescribeWorkerRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_WORKER_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.worker_instance_key = (char *)key;
    describe_worker_response *resp = NULL;
    keel_call_options co = {.namespace = req.namespace_};
    keel_error err;
    if (keel_transport_call(
            t, WF("DescribeWorker"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__describe_worker_response__descriptor,
            (ProtobufCMessage **)&resp, &co, &err) != KEEL_OK)
        return NULL;
    if (resp->worker_info == NULL || resp->worker_info->worker_heartbeat == NULL) {
        protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
        return NULL;
    }
    return resp;
}

/* Describe the worker until `ready` holds for its heartbeat, within timeout_ms (NULL if not). */
static describe_worker_response *
described_when(const char *key, bool (*ready)(const Temporal__Api__Worker__V1__WorkerHeartbeat *),
               int64_t timeout_ms)
{
    for (int64_t until = now_ms() + timeout_ms; now_ms() < until; usleep(200 * 1000)) {
        describe_worker_response *d = describe_worker(key);
        if (d && ready(d->worker_info->worker_heartbeat))
            return d;
        if (d)
            protobuf_c_message_free_unpacked((ProtobufCMessage *)d, NULL);
    }
    return NULL;
}

/* A second heartbeat: it says how long since the first. */
static bool second(const Temporal__Api__Worker__V1__WorkerHeartbeat *hb)
{
    return hb->elapsed_since_last_heartbeat != NULL;
}

/* One that counts the workflow tasks of a run (two at least). */
static bool counted(const Temporal__Api__Worker__V1__WorkerHeartbeat *hb)
{
    return hb->workflow_task_slots_info && hb->workflow_task_slots_info->total_processed_tasks >= 2;
}

START_TEST(the_server_lists_the_worker_until_it_stops_and_history_names_keel)
{
    /* The fixture's worker, again with an identity of its own and a 1 s heartbeat. */
    keel_worker_free(worker);
    char identity[160];
    snprintf(identity, sizeof identity, "keel-test@%s", queue);
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.workflows = workflows;
    w.n_workflows = sizeof workflows / sizeof workflows[0];
    w.activities = activities;
    w.n_activities = sizeof activities / sizeof activities[0];
    w.max_concurrent_activities = 4;
    w.shutdown_grace_ms = 500;
    w.identity = identity;
    w.heartbeat_interval_ms = 1000;
    keel_error err;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);

    /* The first heartbeat goes out at start: ListWorkers lists the worker. */
    list_workers_response *resp = NULL;
    for (int64_t until = now_ms() + 10000; now_ms() < until; usleep(200 * 1000)) {
        resp = list_workers(queue);
        if (resp->n_workers > 0)
            break;
        protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
        resp = NULL;
    }
    ck_assert_msg(resp != NULL, "ListWorkers does not list the worker on %s", queue);
    ck_assert_uint_eq(resp->n_workers, 1);
    const Temporal__Api__Worker__V1__WorkerListInfo *li = resp->workers[0];
    ck_assert_str_eq(li->sdk_name, "keel");
    ck_assert_str_eq(li->sdk_version, KEEL_VERSION);
    ck_assert_str_eq(li->task_queue, queue);
    ck_assert_str_eq(li->worker_identity, identity);
    ck_assert_int_eq(li->status, TEMPORAL__API__ENUMS__V1__WORKER_STATUS__WORKER_STATUS_RUNNING);
    ck_assert_int_eq(strlen(li->worker_instance_key), 36);
    char pid[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    ck_assert_str_eq(li->process_id, pid);
    ck_assert_ptr_nonnull(li->start_time);
    char key[40];
    snprintf(key, sizeof key, "%s", li->worker_instance_key);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);

    /* The whole heartbeat: slots, pollers, and (from the second on) the interval. */
    describe_worker_response *d = described_when(key, second, 10000);
    ck_assert_msg(d != NULL, "no second heartbeat within 10 s");
    const Temporal__Api__Worker__V1__WorkerHeartbeat *hb = d->worker_info->worker_heartbeat;
    ck_assert_int_le(keel_proto_duration_ms(hb->elapsed_since_last_heartbeat), 5000);
    ck_assert_ptr_nonnull(hb->host_info);
    ck_assert_str_eq(hb->host_info->process_id, pid);
    ck_assert_ptr_nonnull(hb->heartbeat_time);
    ck_assert_ptr_nonnull(hb->workflow_task_slots_info);
    ck_assert_int_eq(hb->workflow_task_slots_info->current_available_slots +
                         hb->workflow_task_slots_info->current_used_slots,
                     KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS); /* slots, apart from pollers */
    ck_assert_ptr_nonnull(hb->activity_task_slots_info);
    ck_assert_int_eq(hb->activity_task_slots_info->current_available_slots +
                         hb->activity_task_slots_info->current_used_slots,
                     4);
    ck_assert_ptr_nonnull(hb->workflow_poller_info);
    ck_assert_ptr_nonnull(hb->workflow_sticky_poller_info);
    ck_assert_ptr_nonnull(hb->activity_poller_info);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)d, NULL);

    /* A run: its first task completion names the SDK; the second, already recorded, does not. */
    char id[128];
    free(start("Sleeper", "keel-sdk", NULL, id, sizeof id));
    keel_workflow_outcome out = wait_result(id);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    keel_workflow_outcome_dispose(&out);
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Common__V1__WorkflowExecution x =
        TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    x.workflow_id = id;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest hreq =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
    hreq.namespace_ = (char *)keel_transport_namespace(t);
    hreq.execution = &x;
    Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *h = NULL;
    keel_call_options co = {.retry = true, .namespace = hreq.namespace_};
    ck_assert_msg(
        keel_transport_call(
            t, WF("GetWorkflowExecutionHistory"), (ProtobufCMessage *)&hreq,
            &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
            (ProtobufCMessage **)&h, &co, &err) == KEEL_OK,
        "%s", err.message);
    int completed = 0;
    for (size_t i = 0; h->history && i < h->history->n_events; i++) {
        const keel_pb_event *ev = h->history->events[i];
        if (ev->event_type !=
            TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
            continue;
        const Temporal__Api__History__V1__WorkflowTaskCompletedEventAttributes *a =
            ev->workflow_task_completed_event_attributes;
        ck_assert_str_eq(a->identity, identity);
        const Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata *m = a->sdk_metadata;
        const char *name = m && m->sdk_name ? m->sdk_name : "";
        const char *version = m && m->sdk_version ? m->sdk_version : "";
        ck_assert_str_eq(name, completed == 0 ? "keel" : "");
        ck_assert_str_eq(version, completed == 0 ? KEEL_VERSION : "");
        completed++;
    }
    ck_assert_int_ge(completed, 2);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)h, NULL);

    /* The heartbeats count the work done. */
    d = described_when(key, counted, 5000);
    ck_assert_msg(d != NULL, "the heartbeats do not count the run's workflow tasks");
    protobuf_c_message_free_unpacked((ProtobufCMessage *)d, NULL);

    /* Stopped, it leaves the list at once (its last heartbeat, in ShutdownWorker, says so). */
    keel_worker_stop(worker);
    resp = list_workers(queue);
    ck_assert_uint_eq(resp->n_workers, 0);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
}
END_TEST

Suite *worker_suite(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("end-to-end");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, an_activity_chain_with_retries_completes);
    tcase_add_test(tc, a_non_retryable_activity_failure_reaches_the_workflow);
    tcase_add_test(tc, a_durable_timer_fires);
    tcase_add_test(tc, signals_queries_and_the_stack_trace);
    tcase_add_test(tc, changed_workflow_code_is_caught_as_non_determinism);
    tcase_add_test(tc, an_unregistered_workflow_type_fails_its_task_with_a_clear_message);
    tcase_add_test(tc, the_sticky_cache_serves_a_runs_next_tasks);
    tcase_add_test(tc, a_stopping_worker_gives_its_sticky_queue_up_before_the_grace);
    tcase_add_test(tc, a_cache_of_one_still_completes_interleaved_runs);
    tcase_add_test(tc, without_a_cache_every_task_replays);
    tcase_add_test(tc, cancelling_a_run_reaches_its_running_activity);
    tcase_add_test(tc, a_recorded_history_replays_and_catches_changed_code);
    tcase_add_test(tc, search_attributes_and_memo_reach_visibility);
    tcase_add_test(tc, get_version_markers_reach_the_server_and_replay);
    tcase_add_test(tc, child_workflows_complete_and_fail_into_their_parent);
    tcase_add_test(tc, signal_with_start_starts_once_then_signals);
    tcase_add_test(tc, a_workflow_signals_another);
    tcase_add_test(tc, a_schedule_starts_runs_that_complete);
    tcase_add_test(tc, continue_as_new_carries_state_across_runs);
    tcase_add_test(tc, updates_are_validated_accepted_answered_and_replayed);
    tcase_add_test(tc, an_activity_completes_asynchronously_by_token_or_id);
    tcase_add_test(tc, a_failure_can_set_the_next_retry_delay);
    tcase_add_test(tc, the_server_lists_the_worker_until_it_stops_and_history_names_keel);
    tcase_add_test(tc, a_stopping_worker_hands_running_activities_back);
    tcase_add_test(tc, stop_returns_promptly_while_polls_wait);
    suite_add_tcase(s, tc);
    return s;
}
