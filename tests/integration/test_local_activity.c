/*
 * Local activities against the real server: the marker history shape, replay, local retries,
 * timer backoff, timeouts, workflow task heartbeats, and a worker stopped mid-activity.
 * Task queues "la-...".
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "converter/payload.h"
#include "harness.h"
#include "keel/keel.h"
#include "temporal/api/history/v1/message.pb-c.h"

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* ---- the workflow: one local activity (or a regular one), configured by its input ---- */

typedef struct la_state {
    bool regular;
} la_state;

static int la_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    cJSON *in = cJSON_Parse(input);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(in, "type"));
    cJSON *arg = cJSON_GetObjectItem(in, "arg");
    char *arg_json = arg ? cJSON_PrintUnformatted(arg) : NULL;
    double stc = cJSON_GetNumberValue(cJSON_GetObjectItem(in, "stc"));
    double s2c = cJSON_GetNumberValue(cJSON_GetObjectItem(in, "s2c"));
    double threshold = cJSON_GetNumberValue(cJSON_GetObjectItem(in, "threshold"));
    double initial = cJSON_GetNumberValue(cJSON_GetObjectItem(in, "initial"));
    double max_attempts = cJSON_GetNumberValue(cJSON_GetObjectItem(in, "max_attempts"));
    ((la_state *)state)->regular = cJSON_IsTrue(cJSON_GetObjectItem(in, "regular"));
    keel_retry_policy rp = {0};
    rp.initial_interval_ms = initial == initial ? (int64_t)initial : 0;
    rp.backoff_coefficient = 2;
    rp.maximum_attempts = max_attempts == max_attempts ? (int32_t)max_attempts : 0;
    uint32_t seq;
    if (((la_state *)state)->regular) {
        keel_activity_options o = {0};
        o.start_to_close_ms = 10000;
        o.retry = &rp;
        seq = keel_workflow_activity(ctx, type, arg_json, &o);
    } else {
        keel_local_activity_options o;
        keel_local_activity_options_init(&o);
        o.start_to_close_ms = stc == stc ? (int64_t)stc : 0;
        o.schedule_to_close_ms = s2c == s2c ? (int64_t)s2c : 0;
        o.local_retry_threshold_ms = threshold == threshold ? (int64_t)threshold : 0;
        o.retry = &rp;
        o.summary = "look it up";
        seq = keel_workflow_local_activity(ctx, type, arg_json, &o);
    }
    free(arg_json);
    cJSON_Delete(in);
    return seq ? KEEL_OK : KEEL_EINVAL;
}

static int la_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    char buf[2048];
    if (ev->kind == KEEL_EVENT_ACTIVITY_COMPLETED) {
        snprintf(buf, sizeof buf, "{\"ok\":true,\"seq\":%u,\"result\":%s}", ev->seq, ev->json);
    } else if (ev->kind == KEEL_EVENT_ACTIVITY_FAILED) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddFalseToObject(o, "ok");
        cJSON_AddStringToObject(o, "type", ev->failure_type);
        cJSON_AddStringToObject(o, "message", ev->failure_message);
        char *s = cJSON_PrintUnformatted(o);
        snprintf(buf, sizeof buf, "%s", s);
        free(s);
        cJSON_Delete(o);
    } else {
        return KEEL_OK;
    }
    return keel_workflow_complete(ctx, buf);
}

static const keel_workflow_type la_type = {
    .name = "LocalActivityTest",
    .state_size = sizeof(la_state),
    .start = la_start,
    .on_event = la_event,
};

/* The same workflow with the activity type changed: a new version that no longer matches. */
static int la_start_changed(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)input;
    (void)state;
    keel_local_activity_options o;
    keel_local_activity_options_init(&o);
    o.start_to_close_ms = 5000;
    return keel_workflow_local_activity(ctx, "la.other", "{}", &o) ? KEEL_OK : KEEL_EINVAL;
}

/* ---- activities ---- */

static atomic_int block_starts;

static int act_echo(keel_activity_ctx *ctx, const char *input, char **result, void *u)
{
    (void)ctx;
    (void)u;
    *result = strdup(input);
    return KEEL_OK;
}

static int act_flaky(keel_activity_ctx *ctx, const char *input, char **result, void *u)
{
    (void)u;
    cJSON *in = cJSON_Parse(input);
    int until = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(in, "fail_until"));
    cJSON_Delete(in);
    int attempt = keel_activity_attempt(ctx);
    if (attempt < until) {
        char m[64];
        snprintf(m, sizeof m, "attempt %d failed", attempt);
        return keel_activity_fail(ctx, "Flaky", m, false);
    }
    char buf[64];
    snprintf(buf, sizeof buf, "{\"attempt\":%d}", attempt);
    *result = strdup(buf);
    return KEEL_OK;
}

static int act_sleep(keel_activity_ctx *ctx, const char *input, char **result, void *u)
{
    (void)u;
    int64_t until = keel_test_now_ms() + atoll(input);
    while (keel_test_now_ms() < until) {
        if (keel_activity_cancel_requested(ctx))
            return KEEL_ECANCELLED;
        usleep(20 * 1000);
    }
    *result = strdup("\"slept\"");
    return KEEL_OK;
}

/* Blocks until cancelled on its first start; returns at once after that. */
static int act_block(keel_activity_ctx *ctx, const char *input, char **result, void *u)
{
    (void)u;
    (void)input;
    if (atomic_fetch_add(&block_starts, 1) == 0) {
        while (!keel_activity_cancel_requested(ctx))
            usleep(20 * 1000);
        return KEEL_ECANCELLED;
    }
    *result = strdup("\"done\"");
    return KEEL_OK;
}

static const keel_activity_type activities[] = {
    {.name = "la.echo", .run = act_echo},
    {.name = "la.flaky", .run = act_flaky},
    {.name = "la.sleep", .run = act_sleep},
    {.name = "la.block", .run = act_block},
};

/* ---- helpers ---- */

static keel_client *client;

static void setup(void)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_env(&o, &err), KEEL_OK);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
}

static void teardown(void)
{
    keel_client_free(client);
    client = NULL;
}

static keel_worker *worker_on(char *queue, size_t n)
{
    keel_test_unique(queue, n, "la");
    static const keel_workflow_type *const types[] = {&la_type};
    return keel_test_start_worker(client, queue, types, 1, activities,
                                  sizeof activities / sizeof *activities);
}

static void start(const char *queue, const char *input, int64_t task_timeout_ms, char *id, size_t n)
{
    keel_test_unique(id, n, "la-run");
    keel_workflow_start_options so;
    keel_workflow_start_options_init(&so, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    so.workflow_id = id;
    so.workflow_type = la_type.name;
    so.task_queue = queue;
    so.input_json = input;
    so.task_timeout_ms = task_timeout_ms;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(client, &so, NULL, &err) == KEEL_OK, "%s",
                  err.message);
}

/* The run's result JSON (it must complete). Caller frees. */
static char *result_of(const char *id)
{
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(client, id, NULL, 60000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_msg(out.status == KEEL_WORKFLOW_STATUS_COMPLETED, "%s: %s", id,
                  out.failure_message ? out.failure_message : "not completed");
    char *r = strdup(out.result_json);
    keel_workflow_outcome_dispose(&out);
    return r;
}

static Temporal__Api__History__V1__History *history_of(const char *id)
{
    char *bin;
    size_t len;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_BINARY, &bin, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    Temporal__Api__History__V1__History *h =
        temporal__api__history__v1__history__unpack(NULL, len, (const uint8_t *)bin);
    free(bin);
    ck_assert_ptr_nonnull(h);
    return h;
}

static int count(const Temporal__Api__History__V1__History *h, int type)
{
    int n = 0;
    for (size_t i = 0; i < h->n_events; i++)
        n += (int)h->events[i]->event_type == type;
    return n;
}

/* The k-th (from 0) core_local_activity marker's data JSON, and whether it has a failure. */
static cJSON *marker_data(const Temporal__Api__History__V1__History *h, int k, bool *failed,
                          char **result)
{
    for (size_t i = 0; i < h->n_events; i++) {
        const Temporal__Api__History__V1__HistoryEvent *ev = h->events[i];
        if (ev->event_type != TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED)
            continue;
        const Temporal__Api__History__V1__MarkerRecordedEventAttributes *a =
            ev->marker_recorded_event_attributes;
        ck_assert_str_eq(a->marker_name, "core_local_activity");
        if (k-- > 0)
            continue;
        *failed = a->failure != NULL;
        if (result)
            *result = NULL;
        cJSON *data = NULL;
        for (size_t d = 0; d < a->n_details; d++) {
            char *json = NULL;
            keel_error err;
            ck_assert_int_eq(a->details[d]->value->n_payloads, 1);
            /* json/plain, as the UI and core read it */
            ck_assert(keel_payload_encoding_is(a->details[d]->value->payloads[0], "json/plain"));
            ck_assert_int_eq(keel_payloads_to_json(a->details[d]->value, "d", &json, &err),
                             KEEL_OK);
            if (strcmp(a->details[d]->key, "data") == 0)
                data = cJSON_Parse(json);
            else if (strcmp(a->details[d]->key, "result") == 0 && result)
                *result = strdup(json);
            free(json);
        }
        ck_assert_ptr_nonnull(data);
        return data;
    }
    ck_abort_msg("no such local activity marker");
    return NULL;
}

/* The data object has exactly sdk-core's keys, in its order. */
static void check_shape(const cJSON *data)
{
    static const char *const keys[] = {
        "seq",           "attempt", "activity_id",           "activity_type",
        "complete_time", "backoff", "original_schedule_time"};
    const cJSON *c = data->child;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++, c = c->next) {
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(c->string, keys[i]);
    }
    ck_assert_ptr_null(c);
    const cJSON *ct = cJSON_GetObjectItem(data, "complete_time");
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(ct, "seconds")));
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(ct, "nanos")));
    const cJSON *ost = cJSON_GetObjectItem(data, "original_schedule_time");
    ck_assert(cJSON_GetNumberValue(cJSON_GetObjectItem(ost, "seconds")) > 1.7e9);
}

/* Replay the run with keel's replayer; with KEEL_LA_HISTORY_DIR set, also keep its history
 * there as NAME.json for the TypeScript SDK's replayer (tests/interop/ts-replay/run). */
static void replay_ok(const char *id, const char *name)
{
    keel_test_replay_and_record(client, &la_type, id, NULL, NULL);
    const char *dir = getenv("KEEL_LA_HISTORY_DIR");
    if (name == NULL || dir == NULL || dir[0] == '\0')
        return;
    char *json;
    size_t len;
    keel_error err;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len, &err),
        KEEL_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(json, 1, len, f), len);
    fclose(f);
    free(json);
}

/* ---- tests ---- */

START_TEST(a_local_activity_result_reaches_the_workflow_as_a_marker)
{
    char queue[96], id[128];
    keel_worker *w = worker_on(queue, sizeof queue);
    start(queue, "{\"type\":\"la.echo\",\"arg\":{\"x\":42},\"stc\":5000}", 0, id, sizeof id);
    char *r = result_of(id);
    ck_assert_str_eq(r, "{\"ok\":true,\"seq\":1,\"result\":{\"x\":42}}");
    free(r);
    Temporal__Api__History__V1__History *h = history_of(id);
    ck_assert_int_eq(
        count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_SCHEDULED), 0);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED), 1);
    /* one workflow task: started, marker and completion in its answer */
    ck_assert_int_eq(
        count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_COMPLETED), 1);
    bool failed;
    char *result;
    cJSON *d = marker_data(h, 0, &failed, &result);
    check_shape(d);
    ck_assert(!failed);
    ck_assert_str_eq(result, "{\"x\":42}");
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "seq")), 1);
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "attempt")), 1);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(d, "activity_id")), "1");
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(d, "activity_type")), "la.echo");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "backoff")));
    /* the summary rides on the marker event (the Web UI shows it) */
    for (size_t i = 0; i < h->n_events; i++)
        if (h->events[i]->event_type ==
            TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED) {
            ck_assert_ptr_nonnull(h->events[i]->user_metadata);
            ck_assert_ptr_nonnull(h->events[i]->user_metadata->summary);
        }
    cJSON_Delete(d);
    free(result);
    FREE_PB(h);
    replay_ok(id, "success");
    /* Code that runs another activity type there no longer matches its history. */
    char *json;
    size_t len;
    keel_error err;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len, &err),
        KEEL_OK);
    ck_assert_ptr_nonnull(strstr(json, "core_local_activity"));
    keel_workflow_type changed = la_type;
    changed.start = la_start_changed;
    ck_assert_int_eq(keel_replay(&changed, json, len, &err), KEEL_ENONDETERMINISM);
    ck_assert_msg(strstr(err.message, "la.other") && strstr(err.message, "la.echo"), "%s",
                  err.message);
    free(json);
    keel_worker_free(w);
}
END_TEST

static int cmp_ms(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

START_TEST(switching_to_a_regular_activity_is_one_line)
{
    char queue[96], id[128];
    keel_worker *w = worker_on(queue, sizeof queue);
    start(queue, "{\"type\":\"la.echo\",\"arg\":{\"x\":42},\"regular\":true}", 0, id, sizeof id);
    char *r = result_of(id);
    ck_assert_str_eq(r, "{\"ok\":true,\"seq\":1,\"result\":{\"x\":42}}");
    free(r);
    Temporal__Api__History__V1__History *h = history_of(id);
    ck_assert_int_eq(
        count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_SCHEDULED), 1);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED), 0);
    size_t regular_events = h->n_events;
    FREE_PB(h);
    /* The same step both ways: fewer events and less time as a local activity. */
    enum { RUNS = 9 };
    int64_t ms[2][RUNS];
    size_t events[2] = {regular_events, 0};
    for (int k = 0; k < RUNS; k++)
        for (int local = 0; local < 2; local++) {
            int64_t began = keel_test_now_ms();
            start(queue,
                  local ? "{\"type\":\"la.echo\",\"arg\":1,\"stc\":5000}"
                        : "{\"type\":\"la.echo\",\"arg\":1,\"regular\":true}",
                  0, id, sizeof id);
            free(result_of(id));
            ms[local][k] = keel_test_now_ms() - began;
            if (local && k == 0) {
                h = history_of(id);
                events[1] = h->n_events;
                FREE_PB(h);
            }
        }
    qsort(ms[0], RUNS, sizeof ms[0][0], cmp_ms);
    qsort(ms[1], RUNS, sizeof ms[1][0], cmp_ms);
    fprintf(stderr,
            "one-step run, start to result, median of %d: regular activity %lld ms, %zu events; "
            "local activity %lld ms, %zu events\n",
            RUNS, (long long)ms[0][RUNS / 2], events[0], (long long)ms[1][RUNS / 2], events[1]);
    ck_assert_uint_eq(events[1], 6); /* started, task x3, marker, completed */
    ck_assert_uint_eq(events[0], 11);
    /* The times are printed, never asserted: speed is for make bench-peers (a loaded machine
     * once ran the local median slower than the regular one). */
    keel_worker_free(w);
}
END_TEST

START_TEST(a_failing_local_activity_is_retried_in_the_worker)
{
    char queue[96], id[128];
    keel_worker *w = worker_on(queue, sizeof queue);
    start(queue, "{\"type\":\"la.flaky\",\"arg\":{\"fail_until\":3},\"stc\":5000,\"initial\":100}",
          0, id, sizeof id);
    char *r = result_of(id);
    ck_assert_str_eq(r, "{\"ok\":true,\"seq\":1,\"result\":{\"attempt\":3}}");
    free(r);
    Temporal__Api__History__V1__History *h = history_of(id);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED), 1);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_TIMER_STARTED), 0);
    bool failed;
    cJSON *d = marker_data(h, 0, &failed, NULL);
    ck_assert(!failed);
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "attempt")), 3);
    cJSON_Delete(d);
    FREE_PB(h);
    replay_ok(id, "local-retry");
    /* Out of attempts: the failure reaches the workflow. */
    start(queue,
          "{\"type\":\"la.flaky\",\"arg\":{\"fail_until\":9},\"stc\":5000,\"initial\":50,"
          "\"max_attempts\":2}",
          0, id, sizeof id);
    r = result_of(id);
    ck_assert_msg(strstr(r, "\"ok\":false") && strstr(r, "\"type\":\"Flaky\"") &&
                      strstr(r, "attempt 2 failed"),
                  "%s", r);
    free(r);
    h = history_of(id);
    d = marker_data(h, 0, &failed, NULL);
    ck_assert(failed);
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "attempt")), 2);
    cJSON_Delete(d);
    FREE_PB(h);
    replay_ok(id, "out-of-attempts");
    keel_worker_free(w);
}
END_TEST

START_TEST(a_long_backoff_records_the_failure_and_waits_on_a_timer)
{
    char queue[96], id[128];
    keel_worker *w = worker_on(queue, sizeof queue);
    start(queue,
          "{\"type\":\"la.flaky\",\"arg\":{\"fail_until\":2},\"stc\":5000,\"initial\":1000,"
          "\"threshold\":500}",
          0, id, sizeof id);
    char *r = result_of(id);
    ck_assert_str_eq(r, "{\"ok\":true,\"seq\":1,\"result\":{\"attempt\":2}}");
    free(r);
    Temporal__Api__History__V1__History *h = history_of(id);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED), 2);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_TIMER_STARTED), 1);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_TIMER_FIRED), 1);
    bool failed;
    cJSON *d = marker_data(h, 0, &failed, NULL);
    check_shape(d);
    ck_assert(failed);
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "attempt")), 1);
    const cJSON *b = cJSON_GetObjectItem(d, "backoff");
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(b, "seconds")), 1);
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(b, "nanos")), 0);
    double first_sched = cJSON_GetNumberValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(d, "original_schedule_time"), "seconds"));
    cJSON_Delete(d);
    d = marker_data(h, 1, &failed, NULL);
    ck_assert(!failed);
    /* the retry after the timer is a new local activity on the wire (the SDKs' way), while the
     * workflow still hears seq 1 */
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "seq")), 2);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(d, "activity_id")), "2");
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "attempt")), 2);
    ck_assert(cJSON_GetNumberValue(cJSON_GetObjectItem(
                  cJSON_GetObjectItem(d, "original_schedule_time"), "seconds")) == first_sched);
    cJSON_Delete(d);
    FREE_PB(h);
    replay_ok(id, "timer-backoff");
    keel_worker_free(w);
}
END_TEST

START_TEST(a_local_activity_times_out_start_to_close)
{
    char queue[96], id[128];
    keel_worker *w = worker_on(queue, sizeof queue);
    start(queue, "{\"type\":\"la.sleep\",\"arg\":5000,\"stc\":300,\"max_attempts\":1}", 0, id,
          sizeof id);
    int64_t began = keel_test_now_ms();
    char *r = result_of(id);
    ck_assert_msg(strstr(r, "\"ok\":false") && strstr(r, "Timeout:START_TO_CLOSE"), "%s", r);
    ck_assert_int_lt(keel_test_now_ms() - began, 4000);
    free(r);
    replay_ok(id, "start-to-close");
    keel_worker_free(w);
}
END_TEST

START_TEST(a_long_local_activity_heartbeats_its_workflow_task)
{
    char queue[96], id[128];
    keel_worker *w = worker_on(queue, sizeof queue);
    /* 2 s task timeout: heartbeats at 1.6 s; the activity takes 3.5 s */
    start(queue, "{\"type\":\"la.sleep\",\"arg\":3500,\"stc\":10000}", 2000, id, sizeof id);
    char *r = result_of(id);
    ck_assert_str_eq(r, "{\"ok\":true,\"seq\":1,\"result\":\"slept\"}");
    free(r);
    Temporal__Api__History__V1__History *h = history_of(id);
    ck_assert_int_eq(
        count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT), 0);
    ck_assert_int_eq(
        count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_FAILED), 0);
    int completed =
        count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
    ck_assert_msg(completed >= 3, "%d workflow tasks completed: expected heartbeats", completed);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED), 1);
    FREE_PB(h);
    replay_ok(id, "wft-heartbeat");
    keel_worker_free(w);
}
END_TEST

START_TEST(a_local_activity_runs_again_after_its_worker_stops)
{
    char queue[96], id[128];
    atomic_store(&block_starts, 0);
    keel_worker *w = worker_on(queue, sizeof queue);
    start(queue, "{\"type\":\"la.block\",\"arg\":null,\"stc\":30000}", 2000, id, sizeof id);
    for (int64_t until = keel_test_now_ms() + 10000;
         atomic_load(&block_starts) == 0 && keel_test_now_ms() < until;)
        usleep(20 * 1000);
    ck_assert_int_eq(atomic_load(&block_starts), 1);
    keel_worker_free(w); /* mid-activity: its task is left to time out */
    static const keel_workflow_type *const types[] = {&la_type};
    w = keel_test_start_worker(client, queue, types, 1, activities,
                               sizeof activities / sizeof *activities);
    char *r = result_of(id);
    ck_assert_str_eq(r, "{\"ok\":true,\"seq\":1,\"result\":\"done\"}");
    free(r);
    ck_assert_int_eq(atomic_load(&block_starts), 2); /* at least once: it ran again */
    Temporal__Api__History__V1__History *h = history_of(id);
    ck_assert_int_eq(count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED), 1);
    ck_assert_int_ge(
        count(h, TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT), 1);
    FREE_PB(h);
    replay_ok(id, "worker-stopped");
    keel_worker_free(w);
}
END_TEST

Suite *local_activity_suite(void)
{
    Suite *s = suite_create("local-activity");
    TCase *tc = tcase_create("local");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, a_local_activity_result_reaches_the_workflow_as_a_marker);
    tcase_add_test(tc, switching_to_a_regular_activity_is_one_line);
    tcase_add_test(tc, a_failing_local_activity_is_retried_in_the_worker);
    tcase_add_test(tc, a_long_backoff_records_the_failure_and_waits_on_a_timer);
    tcase_add_test(tc, a_local_activity_times_out_start_to_close);
    tcase_add_test(tc, a_long_local_activity_heartbeats_its_workflow_task);
    tcase_add_test(tc, a_local_activity_runs_again_after_its_worker_stops);
    suite_add_tcase(s, tc);
    return s;
}
