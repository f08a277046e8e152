/*
 * src/worker/engine.c over hand-built histories: batching, replay, command matching, the
 * non-determinism checks, and what the workflow sees.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converter/payload.h"
#include "worker/engine.h"

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* ---- a history builder ---- */

typedef struct history {
    keel_pb_event *ev[64];
    size_t n;
} history;

static keel_pb_event *add(history *h, Temporal__Api__Enums__V1__EventType type,
                          Temporal__Api__History__V1__HistoryEvent__AttributesCase which)
{
    ck_assert_uint_lt(h->n, 64);
    keel_pb_event *e = calloc(1, sizeof *e);
    temporal__api__history__v1__history_event__init(e);
    e->event_id = (int64_t)h->n + 1;
    e->event_type = type;
    e->attributes_case = which;
    e->event_time = malloc(sizeof *e->event_time);
    google__protobuf__timestamp__init(e->event_time);
    e->event_time->seconds = 1800000000 + e->event_id; /* one second per event */
    h->ev[h->n++] = e;
    return e;
}

#define ATTR(x) TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_##x##_EVENT_ATTRIBUTES
#define TYPE(x) TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_##x
#define NEW(var, T, init)                                                                          \
    T *var = malloc(sizeof *var);                                                                  \
    init(var)

static Temporal__Api__Common__V1__Payloads *json(const char *s)
{
    Temporal__Api__Common__V1__Payloads *p = NULL;
    ck_assert_int_eq(keel_payloads_new_json(s, "test", &p, NULL), KEEL_OK);
    return p;
}

static void started(history *h, const char *input)
{
    keel_pb_event *e = add(h, TYPE(WORKFLOW_EXECUTION_STARTED), ATTR(WORKFLOW_EXECUTION_STARTED));
    NEW(a, Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes,
        temporal__api__history__v1__workflow_execution_started_event_attributes__init);
    a->input = json(input);
    a->original_execution_run_id = strdup("run-1");
    e->workflow_execution_started_event_attributes = a;
}

/* WorkflowTaskScheduled + WorkflowTaskStarted, and Completed unless open. */
static void task(history *h, bool complete)
{
    add(h, TYPE(WORKFLOW_TASK_SCHEDULED), 0);
    keel_pb_event *s = add(h, TYPE(WORKFLOW_TASK_STARTED), 0);
    if (!complete)
        return;
    keel_pb_event *e = add(h, TYPE(WORKFLOW_TASK_COMPLETED), ATTR(WORKFLOW_TASK_COMPLETED));
    NEW(a, Temporal__Api__History__V1__WorkflowTaskCompletedEventAttributes,
        temporal__api__history__v1__workflow_task_completed_event_attributes__init);
    a->started_event_id = s->event_id;
    e->workflow_task_completed_event_attributes = a;
}

static void task_failed(history *h)
{
    add(h, TYPE(WORKFLOW_TASK_SCHEDULED), 0);
    add(h, TYPE(WORKFLOW_TASK_STARTED), 0);
    add(h, TYPE(WORKFLOW_TASK_FAILED), 0);
}

static int64_t activity_scheduled(history *h, const char *id, const char *type)
{
    keel_pb_event *e = add(h, TYPE(ACTIVITY_TASK_SCHEDULED), ATTR(ACTIVITY_TASK_SCHEDULED));
    NEW(a, Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes,
        temporal__api__history__v1__activity_task_scheduled_event_attributes__init);
    a->activity_id = strdup(id);
    NEW(t, Temporal__Api__Common__V1__ActivityType, temporal__api__common__v1__activity_type__init);
    t->name = strdup(type);
    a->activity_type = t;
    e->activity_task_scheduled_event_attributes = a;
    return e->event_id;
}

static void activity_completed(history *h, int64_t scheduled, const char *result)
{
    add(h, TYPE(ACTIVITY_TASK_STARTED), 0);
    keel_pb_event *e = add(h, TYPE(ACTIVITY_TASK_COMPLETED), ATTR(ACTIVITY_TASK_COMPLETED));
    NEW(a, Temporal__Api__History__V1__ActivityTaskCompletedEventAttributes,
        temporal__api__history__v1__activity_task_completed_event_attributes__init);
    a->scheduled_event_id = scheduled;
    a->result = json(result);
    e->activity_task_completed_event_attributes = a;
}

static int64_t timer_started(history *h, const char *id)
{
    keel_pb_event *e = add(h, TYPE(TIMER_STARTED), ATTR(TIMER_STARTED));
    NEW(a, Temporal__Api__History__V1__TimerStartedEventAttributes,
        temporal__api__history__v1__timer_started_event_attributes__init);
    a->timer_id = strdup(id);
    e->timer_started_event_attributes = a;
    return e->event_id;
}

static void timer_fired(history *h, const char *id, int64_t started_id)
{
    keel_pb_event *e = add(h, TYPE(TIMER_FIRED), ATTR(TIMER_FIRED));
    NEW(a, Temporal__Api__History__V1__TimerFiredEventAttributes,
        temporal__api__history__v1__timer_fired_event_attributes__init);
    a->timer_id = strdup(id);
    a->started_event_id = started_id;
    e->timer_fired_event_attributes = a;
}

static void signaled(history *h, const char *name, const char *arg)
{
    keel_pb_event *e = add(h, TYPE(WORKFLOW_EXECUTION_SIGNALED), ATTR(WORKFLOW_EXECUTION_SIGNALED));
    NEW(a, Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes,
        temporal__api__history__v1__workflow_execution_signaled_event_attributes__init);
    a->signal_name = strdup(name);
    a->input = json(arg);
    e->workflow_execution_signaled_event_attributes = a;
}

static void completed(history *h)
{
    keel_pb_event *e =
        add(h, TYPE(WORKFLOW_EXECUTION_COMPLETED), ATTR(WORKFLOW_EXECUTION_COMPLETED));
    NEW(a, Temporal__Api__History__V1__WorkflowExecutionCompletedEventAttributes,
        temporal__api__history__v1__workflow_execution_completed_event_attributes__init);
    e->workflow_execution_completed_event_attributes = a;
}

/* A marker with two details, each one JSON value. */
static void marker(history *h, const char *name, const char *const keys[2],
                   const char *const vals[2])
{
    keel_pb_event *e = add(h, TYPE(MARKER_RECORDED), ATTR(MARKER_RECORDED));
    NEW(a, Temporal__Api__History__V1__MarkerRecordedEventAttributes,
        temporal__api__history__v1__marker_recorded_event_attributes__init);
    a->marker_name = strdup(name);
    a->details = calloc(2, sizeof *a->details);
    for (int i = 0; i < 2; i++) {
        NEW(d, Temporal__Api__History__V1__MarkerRecordedEventAttributes__DetailsEntry,
            temporal__api__history__v1__marker_recorded_event_attributes__details_entry__init);
        d->key = strdup(keys[i]);
        d->value = json(vals[i]);
        a->details[a->n_details++] = d;
    }
    e->marker_recorded_event_attributes = a;
}

static void version_marker(history *h, const char *change_id, int version)
{
    char id[160], v[32];
    snprintf(id, sizeof id, "\"%s\"", change_id);
    snprintf(v, sizeof v, "%d", version);
    const char *const keys[] = {"change-id", "version"}, *const vals[] = {id, v};
    marker(h, "Version", keys, vals);
}

static void side_effect_marker(history *h, const char *id, const char *data)
{
    const char *const keys[] = {"side-effect-id", "data"}, *const vals[] = {id, data};
    marker(h, "SideEffect", keys, vals);
}

static void cancel_requested(history *h, int64_t scheduled)
{
    keel_pb_event *e =
        add(h, TYPE(ACTIVITY_TASK_CANCEL_REQUESTED), ATTR(ACTIVITY_TASK_CANCEL_REQUESTED));
    NEW(a, Temporal__Api__History__V1__ActivityTaskCancelRequestedEventAttributes,
        temporal__api__history__v1__activity_task_cancel_requested_event_attributes__init);
    a->scheduled_event_id = scheduled;
    e->activity_task_cancel_requested_event_attributes = a;
}

static void activity_canceled(history *h, int64_t scheduled)
{
    keel_pb_event *e = add(h, TYPE(ACTIVITY_TASK_CANCELED), ATTR(ACTIVITY_TASK_CANCELED));
    NEW(a, Temporal__Api__History__V1__ActivityTaskCanceledEventAttributes,
        temporal__api__history__v1__activity_task_canceled_event_attributes__init);
    a->scheduled_event_id = scheduled;
    e->activity_task_canceled_event_attributes = a;
}

static void free_history(history *h)
{
    for (size_t i = 0; i < h->n; i++)
        FREE_PB(h->ev[i]);
}

/* ---- the workflow under test: charge, wait a second, complete; a "stop" signal fails it ---- */

typedef struct order {
    int step;
    uint32_t charge, pause;
    char charged[64];
    uint64_t random;
    int64_t started_at;
    int signals;
} order;

static int order_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    order *o = state;
    if (strstr(input, "\"bad\""))
        return keel_workflow_error(ctx, "input %s is bad", input);
    o->random = keel_workflow_random(ctx);
    o->started_at = keel_workflow_now_ms(ctx);
    keel_activity_options opts = {.start_to_close_ms = 10000};
    o->charge =
        keel_workflow_activity(ctx, strstr(input, "refund") ? "refund" : "charge", input, &opts);
    o->step = 1;
    return o->charge ? KEEL_OK : KEEL_EINVAL;
}

static int order_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    order *o = state;
    switch (ev->kind) {
    case KEEL_EVENT_ACTIVITY_COMPLETED:
        ck_assert_uint_eq(ev->seq, o->charge);
        snprintf(o->charged, sizeof o->charged, "%s", ev->json);
        o->pause = keel_workflow_timer(ctx, 1000);
        o->step = 2;
        return KEEL_OK;
    case KEEL_EVENT_TIMER_FIRED:
        ck_assert_uint_eq(ev->seq, o->pause);
        o->step = 3;
        return keel_workflow_complete(ctx, o->charged);
    case KEEL_EVENT_SIGNAL:
        o->signals++;
        if (ev->failure_type[0]) /* an argument the engine could not read */
            return keel_workflow_fail(ctx, ev->failure_type, ev->failure_message, true);
        if (strcmp(ev->name, "stop") == 0)
            return keel_workflow_fail(ctx, "Stopped", ev->json, true);
        return KEEL_OK;
    case KEEL_EVENT_ACTIVITY_FAILED:
        return keel_workflow_fail(ctx, ev->failure_type, ev->failure_message, true);
    default:
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    }
}

static const keel_workflow_type order_type = {
    .name = "Order",
    .state_size = sizeof(order),
    .start = order_start,
    .on_event = order_event,
};

/* Feed h and finish; returns the engine (caller frees) and the outcome. */
static keel_engine *run(history *h, int *rc, keel_error *err)
{
    keel_engine *e;
    ck_assert_int_eq(keel_engine_new(&e, &order_type, "wf-1", "run-1", "q", err), KEEL_OK);
    *rc = keel_engine_feed(e, h->ev, h->n, err);
    if (*rc == KEEL_OK)
        *rc = keel_engine_finish(e, err);
    return e;
}

static const keel_pb_command *only_command(keel_engine *e)
{
    keel_pb_command *const *cmds;
    ck_assert_uint_eq(keel_engine_commands(e, &cmds), 1);
    return cmds[0];
}

START_TEST(first_task_schedules_the_activity)
{
    history h = {0};
    started(&h, "{\"amount\":10}");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    const keel_pb_command *c = only_command(e);
    ck_assert_int_eq(c->command_type,
                     TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
    const Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a =
        c->schedule_activity_task_command_attributes;
    ck_assert_str_eq(a->activity_id, "1");
    ck_assert_str_eq(a->activity_type->name, "charge");
    ck_assert_str_eq(a->task_queue->name, "q");
    ck_assert_int_eq(a->start_to_close_timeout->seconds, 10);
    ck_assert_uint_eq(a->input->payloads[0]->data.len, strlen("{\"amount\":10}"));
    /* Workflow time is the task's start, from history. */
    const order *o = keel_engine_state(e);
    ck_assert_int_eq(o->started_at, (1800000000LL + 3) * 1000);
    keel_engine_free(e);
    free_history(&h);
}
END_TEST

/* The whole happy path, built up task by task. */
static void happy(history *h, bool close)
{
    started(h, "{\"amount\":10}");
    task(h, true);
    int64_t s = activity_scheduled(h, "1", "charge");
    activity_completed(h, s, "{\"receipt\":\"r-9\"}");
    task(h, true);
    int64_t t = timer_started(h, "1");
    timer_fired(h, "1", t);
    task(h, close);
    if (close)
        completed(h);
}

START_TEST(replay_then_work_on_the_current_task)
{
    history h = {0};
    started(&h, "{\"amount\":10}");
    task(&h, true);
    int64_t s = activity_scheduled(&h, "1", "charge");
    activity_completed(&h, s, "{\"receipt\":\"r-9\"}");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    const keel_pb_command *c = only_command(e);
    ck_assert_int_eq(c->command_type,
                     TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_START_TIMER);
    ck_assert_str_eq(c->start_timer_command_attributes->timer_id, "1");
    ck_assert_int_eq(c->start_timer_command_attributes->start_to_fire_timeout->seconds, 1);
    const order *o = keel_engine_state(e);
    ck_assert_str_eq(o->charged, "{\"receipt\":\"r-9\"}");
    keel_engine_free(e);
    free_history(&h);

    /* One step further: the timer fired, the workflow completes with the receipt. */
    history h2 = {0};
    happy(&h2, false);
    e = run(&h2, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    c = only_command(e);
    ck_assert_int_eq(
        c->command_type,
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
    const Temporal__Api__Common__V1__Payloads *r =
        c->complete_workflow_execution_command_attributes->result;
    ck_assert_int_eq(memcmp(r->payloads[0]->data.data, "{\"receipt\":\"r-9\"}", 17), 0);
    ck_assert(keel_engine_closing(e));
    keel_engine_free(e);
    free_history(&h2);
}
END_TEST

START_TEST(a_closed_run_replays_with_nothing_to_send)
{
    history h = {0};
    happy(&h, true);
    int rc;
    keel_error err;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_pb_command *const *cmds;
    ck_assert_uint_eq(keel_engine_commands(e, &cmds), 0);
    ck_assert_int_eq(((const order *)keel_engine_state(e))->step, 3);
    keel_engine_free(e);
    free_history(&h);
}
END_TEST

START_TEST(feeding_in_pieces_is_the_same_as_at_once)
{
    /* As a worker with a cached run sees it: the first task answered live, then new events. */
    history h = {0};
    happy(&h, false);
    keel_engine *e;
    keel_error err;
    ck_assert_int_eq(keel_engine_new(&e, &order_type, "wf-1", "run-1", "q", &err), KEEL_OK);
    size_t cut[] = {3, 8, h.n};
    size_t from = 0;
    for (size_t i = 0; i < 3; i++) {
        ck_assert_msg(keel_engine_feed(e, h.ev + from, cut[i] - from, &err) == KEEL_OK, "%s",
                      err.message);
        ck_assert_msg(keel_engine_finish(e, &err) == KEEL_OK, "%s", err.message);
        from = cut[i];
    }
    const keel_pb_command *c = only_command(e);
    ck_assert_int_eq(
        c->command_type,
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
    keel_engine_free(e);
    free_history(&h);
}
END_TEST

START_TEST(a_compacted_run_goes_on_and_still_catches_non_determinism)
{
    /* As a cached run lives: each answer sent, then compacted (keel_cache_unpin does it). */
    history h = {0};
    happy(&h, false);
    keel_engine *e;
    keel_error err;
    ck_assert_int_eq(keel_engine_new(&e, &order_type, "wf-1", "run-1", "q", &err), KEEL_OK);
    size_t cut[] = {3, 8, h.n};
    size_t from = 0;
    keel_pb_command *const *cmds;
    keel_pb_message *const *msgs;
    for (size_t i = 0; i < 3; i++) {
        ck_assert_msg(keel_engine_feed(e, h.ev + from, cut[i] - from, &err) == KEEL_OK, "%s",
                      err.message);
        ck_assert_msg(keel_engine_finish(e, &err) == KEEL_OK, "%s", err.message);
        if (i == 0) /* the first task's ScheduleActivityTask; the second cut ends between tasks */
            ck_assert_uint_eq(keel_engine_commands(e, &cmds), 1);
        if (i < 2) {
            keel_engine_compact(e);
            ck_assert_uint_eq(keel_engine_commands(e, &cmds), 0);
            ck_assert_uint_eq(keel_engine_messages(e, &msgs), 0);
            keel_engine_compact(e); /* twice is harmless */
        }
        from = cut[i];
    }
    const keel_pb_command *c = only_command(e);
    ck_assert_int_eq(
        c->command_type,
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
    const order *o = keel_engine_state(e);
    ck_assert_str_eq(o->charged, "{\"receipt\":\"r-9\"}");
    keel_engine_free(e);
    free_history(&h);

    /* The compacted run's command (ScheduleActivityTask, its message gone) is still matched:
     * history that recorded a timer instead is non-determinism, named as before. */
    history h2 = {0};
    started(&h2, "{\"amount\":10}");
    task(&h2, true);
    timer_started(&h2, "1");
    task(&h2, false);
    ck_assert_int_eq(keel_engine_new(&e, &order_type, "wf-1", "run-1", "q", &err), KEEL_OK);
    ck_assert_int_eq(keel_engine_feed(e, h2.ev, 3, &err), KEEL_OK);
    ck_assert_int_eq(keel_engine_finish(e, &err), KEEL_OK);
    keel_engine_compact(e);
    int rc = keel_engine_feed(e, h2.ev + 3, h2.n - 3, &err);
    if (rc == KEEL_OK)
        rc = keel_engine_finish(e, &err);
    ck_assert_int_eq(rc, KEEL_ENONDETERMINISM);
    ck_assert_ptr_nonnull(strstr(err.message, "ScheduleActivityTask (activity 1, type charge)"));
    ck_assert_ptr_nonnull(strstr(err.message, "TimerStarted (timer 1)"));
    keel_engine_free(e);
    free_history(&h2);
}
END_TEST

START_TEST(a_different_command_is_non_determinism)
{
    /* History says the first task started a timer; the code schedules an activity. */
    history h = {0};
    started(&h, "{\"amount\":10}");
    task(&h, true);
    timer_started(&h, "1");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_int_eq(rc, KEEL_ENONDETERMINISM);
    ck_assert_ptr_nonnull(strstr(err.message, "[TMPRL1100]"));
    ck_assert_ptr_nonnull(strstr(err.message, "ScheduleActivityTask (activity 1, type charge)"));
    ck_assert_ptr_nonnull(strstr(err.message, "event 5 is TimerStarted (timer 1)"));
    keel_engine_free(e);
    free_history(&h);

    /* Same activity id, another type: the code changed what it runs. */
    history h2 = {0};
    started(&h2, "{\"refund\":true}");
    task(&h2, true);
    activity_scheduled(&h2, "1", "charge");
    task(&h2, false);
    e = run(&h2, &rc, &err);
    ck_assert_int_eq(rc, KEEL_ENONDETERMINISM);
    ck_assert_ptr_nonnull(strstr(err.message, "type refund"));
    ck_assert_ptr_nonnull(strstr(err.message, "type charge"));
    keel_engine_free(e);
    free_history(&h2);
}
END_TEST

START_TEST(missing_and_extra_commands_are_non_determinism)
{
    /* History has a second command the code does not issue. */
    history h = {0};
    started(&h, "{}");
    task(&h, true);
    activity_scheduled(&h, "1", "charge");
    timer_started(&h, "1");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_int_eq(rc, KEEL_ENONDETERMINISM);
    ck_assert_ptr_nonnull(strstr(err.message, "issued no command"));
    keel_engine_free(e);
    free_history(&h);

    /* The code issues a command the completed task never recorded. */
    history h2 = {0};
    started(&h2, "{}");
    task(&h2, true);
    task(&h2, false);
    e = run(&h2, &rc, &err);
    ck_assert_int_eq(rc, KEEL_ENONDETERMINISM);
    ck_assert_ptr_nonnull(strstr(err.message, "no such command"));
    ck_assert_ptr_nonnull(strstr(err.message, "ScheduleActivityTask"));
    keel_engine_free(e);
    free_history(&h2);

    /* A result for an activity the code never scheduled. */
    history h3 = {0};
    started(&h3, "{}");
    task(&h3, true);
    activity_scheduled(&h3, "1", "charge");
    activity_completed(&h3, 99, "1");
    task(&h3, false);
    e = run(&h3, &rc, &err);
    ck_assert_int_eq(rc, KEEL_ENONDETERMINISM);
    ck_assert_ptr_nonnull(strstr(err.message, "scheduled at event 99"));
    keel_engine_free(e);
    free_history(&h3);
}
END_TEST

START_TEST(a_failed_task_attempt_is_folded_into_the_next)
{
    history h = {0};
    started(&h, "{}");
    task_failed(&h);
    signaled(&h, "note", "\"hello\"");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    const order *o = keel_engine_state(e);
    ck_assert_int_eq(o->step, 1);    /* start ran once */
    ck_assert_int_eq(o->signals, 1); /* and the signal came with it */
    ck_assert_int_eq(only_command(e)->command_type,
                     TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
    /* Time is the last (successful) attempt's. */
    ck_assert_int_eq(o->started_at, (1800000000LL + 7) * 1000);
    keel_engine_free(e);
    free_history(&h);
}
END_TEST

START_TEST(a_signal_can_fail_the_workflow_with_its_argument)
{
    history h = {0};
    started(&h, "{}");
    task(&h, true);
    activity_scheduled(&h, "1", "charge");
    signaled(&h, "stop", "\"customer asked\"");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    const keel_pb_command *c = only_command(e);
    ck_assert_int_eq(c->command_type,
                     TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION);
    const Temporal__Api__Failure__V1__Failure *f =
        c->fail_workflow_execution_command_attributes->failure;
    ck_assert_str_eq(f->message, "\"customer asked\"");
    ck_assert_str_eq(f->application_failure_info->type, "Stopped");
    ck_assert(f->application_failure_info->non_retryable);
    keel_engine_free(e);
    free_history(&h);
}
END_TEST

/* Make the first payload of p hold data[0..len) as json/plain, whatever it is. */
static void raw_json(Temporal__Api__Common__V1__Payloads *p, const char *data, size_t len)
{
    free(p->payloads[0]->data.data);
    p->payloads[0]->data.data = malloc(len);
    memcpy(p->payloads[0]->data.data, data, len);
    p->payloads[0]->data.len = len;
}

/* The failure the run's only command fails it with. */
static const Temporal__Api__Failure__V1__Failure *failed_with(keel_engine *e, const char *type)
{
    const keel_pb_command *c = only_command(e);
    ck_assert_int_eq(c->command_type,
                     TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION);
    const Temporal__Api__Failure__V1__Failure *f =
        c->fail_workflow_execution_command_attributes->failure;
    ck_assert_str_eq(f->application_failure_info->type, type);
    return f;
}

/* A json/plain payload that is not JSON keel reads stays in the history for good: failing the
 * task would fail every retry. The run hears of it instead, once, with the reason. */
START_TEST(unreadable_payloads_reach_the_workflow_as_bad_input)
{
    int rc;
    keel_error err;
    /* The start input: the run fails with BadInput before start is called. */
    history h = {0};
    started(&h, "{}");
    raw_json(h.ev[0]->workflow_execution_started_event_attributes->input,
             "{\"approver\":\"boss\0evil\"}", 24);
    task(&h, false);
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    const Temporal__Api__Failure__V1__Failure *f = failed_with(e, "BadInput");
    ck_assert_msg(strstr(f->message, "workflow input is not valid JSON: at byte 17 (/approver): a "
                                     "NUL character"),
                  "%s", f->message);
    ck_assert_int_eq(((const order *)keel_engine_state(e))->step, 0);
    keel_engine_free(e);
    free_history(&h);

    /* A signal's argument: delivered as "null" with BadInput and the reason. */
    history h2 = {0};
    started(&h2, "{}");
    task(&h2, true);
    activity_scheduled(&h2, "1", "charge");
    signaled(&h2, "go", "\"x\"");
    raw_json(h2.ev[h2.n - 1]->workflow_execution_signaled_event_attributes->input, "\"\xff\xfe\"",
             4);
    task(&h2, false);
    e = run(&h2, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    f = failed_with(e, "BadInput");
    ck_assert_msg(strstr(f->message,
                         "argument of signal 'go' is not valid JSON: at byte 1 (the top "
                         "level): invalid UTF-8 (byte 0xff)"),
                  "%s", f->message);
    keel_engine_free(e);
    free_history(&h2);

    /* An activity's result: a failure of that activity, BadResult. */
    history h3 = {0};
    started(&h3, "{}");
    task(&h3, true);
    int64_t s = activity_scheduled(&h3, "1", "charge");
    activity_completed(&h3, s, "{}");
    raw_json(h3.ev[h3.n - 1]->activity_task_completed_event_attributes->result, "{\"a\":1,\"a\":2}",
             13);
    task(&h3, false);
    e = run(&h3, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    f = failed_with(e, "BadResult");
    ck_assert_msg(strstr(f->message, "result of activity 1 (charge) is not valid JSON: at byte 7 "
                                     "(/a): the member name \"a\" appears twice"),
                  "%s", f->message);
    keel_engine_free(e);
    free_history(&h3);
}
END_TEST

START_TEST(bugs_and_bad_histories_are_errors_not_crashes)
{
    int rc;
    keel_error err;
    history h = {0};
    started(&h, "{\"bad\":1}");
    task(&h, false);
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "Order (wf-1) start: input"));
    keel_engine_free(e);
    free_history(&h);

    /* A gap in event ids. */
    history h2 = {0};
    started(&h2, "{}");
    task(&h2, false);
    h2.ev[2]->event_id = 7;
    e = run(&h2, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "not contiguous"));
    keel_engine_free(e);
    free_history(&h2);

    /* An event type keel does not handle, and one the server says may be ignored. */
    history h3 = {0};
    started(&h3, "{}");
    add(&h3, TYPE(WORKFLOW_EXECUTION_OPTIONS_UPDATED), 0);
    task(&h3, false);
    e = run(&h3, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EUNIMPLEMENTED);
    ck_assert_ptr_nonnull(strstr(err.message, "WORKFLOW_EXECUTION_OPTIONS_UPDATED"));
    keel_engine_free(e);
    h3.ev[1]->worker_may_ignore = 1;
    e = run(&h3, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_engine_free(e);
    free_history(&h3);

    /* A time no Timestamp can hold: refused before a workflow adds a day to it. */
    history h5 = {0};
    started(&h5, "{}");
    task(&h5, false);
    h5.ev[2]->event_time->seconds = INT64_MIN;
    e = run(&h5, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "history event 3 (WORKFLOW_TASK_STARTED) has a time outside "
                                      "the years 1 to 9999"),
                  "%s", err.message);
    keel_engine_free(e);
    free_history(&h5);

    /* Input that is not JSON. */
    history h4 = {0};
    started(&h4, "{}");
    keel_payload_set_metadata(
        h4.ev[0]->workflow_execution_started_event_attributes->input->payloads[0], "encoding",
        "binary/encrypted", NULL);
    task(&h4, false);
    e = run(&h4, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "binary/encrypted"));
    keel_engine_free(e);
    free_history(&h4);
}
END_TEST

START_TEST(randomness_and_time_replay_identically)
{
    history h = {0};
    happy(&h, false);
    int rc;
    keel_error err;
    keel_engine *a = run(&h, &rc, &err);
    ck_assert_int_eq(rc, KEEL_OK);
    keel_engine *b = run(&h, &rc, &err);
    ck_assert_int_eq(rc, KEEL_OK);
    const order *oa = keel_engine_state(a), *ob = keel_engine_state(b);
    ck_assert_uint_eq(oa->random, ob->random);
    ck_assert_uint_ne(oa->random, 0);
    keel_engine_free(a);
    keel_engine_free(b);
    free_history(&h);
}
END_TEST

/* A workflow that starts a timer and cancels it at once: nothing reaches the server. */
static int cancel_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    (void)input;
    uint32_t t = keel_workflow_timer(ctx, 5000);
    keel_workflow_cancel_timer(ctx, t);
    keel_activity_options none = {0};
    if (strcmp(input, "\"misuse\"") == 0)
        keel_workflow_activity(ctx, "x", NULL, &none); /* no timeouts: refused */
    if (strcmp(input, "\"twice\"") == 0) {
        keel_workflow_complete(ctx, NULL);
        keel_workflow_complete(ctx, NULL);
    }
    return KEEL_OK;
}

static int no_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)ctx;
    (void)state;
    (void)ev;
    return KEEL_OK;
}

START_TEST(cancelled_before_sent_and_misuse)
{
    static const keel_workflow_type t = {
        .name = "Canceller", .state_size = 1, .start = cancel_start, .on_event = no_event};
    const char *inputs[] = {"\"plain\"", "\"misuse\"", "\"twice\""};
    for (size_t i = 0; i < 3; i++) {
        history h = {0};
        started(&h, inputs[i]);
        task(&h, false);
        keel_engine *e;
        keel_error err;
        ck_assert_int_eq(keel_engine_new(&e, &t, "wf", "run", "q", &err), KEEL_OK);
        ck_assert_int_eq(keel_engine_feed(e, h.ev, h.n, &err), KEEL_OK);
        int rc = keel_engine_finish(e, &err);
        if (i == 0) {
            ck_assert_int_eq(rc, KEEL_OK);
            keel_pb_command *const *cmds;
            ck_assert_uint_eq(keel_engine_commands(e, &cmds), 0);
        } else {
            ck_assert_int_eq(rc, KEEL_EINVAL);
            ck_assert_ptr_nonnull(
                strstr(err.message, i == 1 ? "start_to_close_ms" : "already closed the run"));
        }
        keel_engine_free(e);
        free_history(&h);
    }
}
END_TEST

/* Version 1 of "pay-v2" pays with pay_v2; runs from before the change keep paying with pay. */
static int supported_min = KEEL_DEFAULT_VERSION;
static int patched_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)input;
    int *version = state;
    int rc = keel_workflow_get_version(ctx, "pay-v2", supported_min, 1, version);
    if (rc != KEEL_OK)
        return rc;
    /* Asking again gives the same answer and records nothing more. */
    int again = -7;
    keel_workflow_get_version(ctx, "pay-v2", supported_min, 1, &again);
    ck_assert_int_eq(again, *version);
    keel_activity_options o = {.start_to_close_ms = 1000};
    return keel_workflow_activity(ctx, *version == 1 ? "pay_v2" : "pay", NULL, &o) ? KEEL_OK
                                                                                   : KEEL_EINVAL;
}

static const keel_workflow_type patched_type = {
    .name = "Patched", .state_size = sizeof(int), .start = patched_start, .on_event = no_event};

static keel_engine *run_type(const keel_workflow_type *t, history *h, int *rc, keel_error *err)
{
    keel_engine *e;
    ck_assert_int_eq(keel_engine_new(&e, t, "wf", "run", "q", err), KEEL_OK);
    *rc = keel_engine_feed(e, h->ev, h->n, err);
    if (*rc == KEEL_OK)
        *rc = keel_engine_finish(e, err);
    return e;
}

START_TEST(get_version_records_new_runs_and_replays_old_ones)
{
    supported_min = KEEL_DEFAULT_VERSION;
    int rc;
    keel_error err;
    /* A new run: the newest version, recorded before the activity. */
    history h = {0};
    started(&h, "{}");
    task(&h, false);
    keel_engine *e = run_type(&patched_type, &h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_pb_command *const *cmds;
    ck_assert_uint_eq(keel_engine_commands(e, &cmds), 2);
    ck_assert_int_eq(cmds[0]->command_type,
                     TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_RECORD_MARKER);
    ck_assert_str_eq(cmds[0]->record_marker_command_attributes->marker_name, "Version");
    ck_assert_str_eq(cmds[1]->schedule_activity_task_command_attributes->activity_type->name,
                     "pay_v2");
    ck_assert_int_eq(*(const int *)keel_engine_state(e), 1);
    keel_engine_free(e);
    free_history(&h);

    /* A run that passed this point with version 1 replays it. */
    history h2 = {0};
    started(&h2, "{}");
    task(&h2, true);
    version_marker(&h2, "pay-v2", 1);
    activity_scheduled(&h2, "1", "pay_v2");
    task(&h2, false);
    e = run_type(&patched_type, &h2, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(*(const int *)keel_engine_state(e), 1);
    keel_engine_free(e);
    free_history(&h2);

    /* A run from before the change has no marker: the old branch, and no marker now. */
    history h3 = {0};
    started(&h3, "{}");
    task(&h3, true);
    activity_scheduled(&h3, "1", "pay");
    task(&h3, false);
    e = run_type(&patched_type, &h3, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(*(const int *)keel_engine_state(e), KEEL_DEFAULT_VERSION);
    keel_engine_free(e);
    free_history(&h3);
}
END_TEST

START_TEST(get_version_limits_and_removal)
{
    int rc;
    keel_error err;
    /* Code that dropped the old branch cannot replay a run that needs it. */
    supported_min = 1;
    history h = {0};
    started(&h, "{}");
    task(&h, true);
    activity_scheduled(&h, "1", "pay");
    task(&h, false);
    keel_engine *e = run_type(&patched_type, &h, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "supports versions 1 to 1 of change pay-v2"));
    keel_engine_free(e);
    free_history(&h);
    supported_min = KEEL_DEFAULT_VERSION;

    /* Code that no longer asks (the call was removed): the recorded marker is passed over. */
    history h2 = {0};
    started(&h2, "{\"amount\":1}");
    task(&h2, true);
    version_marker(&h2, "pay-v2", 1);
    activity_scheduled(&h2, "1", "charge");
    task(&h2, false);
    e = run(&h2, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_engine_free(e);
    free_history(&h2);

    /* A marker for another change where the code asks: that change reads as not recorded,
     * and the extra marker is passed over; the commands still have to line up. */
    history h3 = {0};
    started(&h3, "{}");
    task(&h3, true);
    version_marker(&h3, "other-change", 3);
    activity_scheduled(&h3, "1", "pay");
    task(&h3, false);
    e = run_type(&patched_type, &h3, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(*(const int *)keel_engine_state(e), KEEL_DEFAULT_VERSION);
    keel_engine_free(e);
    free_history(&h3);
}
END_TEST

/* Schedules "work"; a "halt" signal cancels it (twice, by mistake) and starts a timer. */
typedef struct halter {
    uint32_t work;
    int canceled;
} halter;

static int halter_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)input;
    halter *h = state;
    keel_activity_options o = {.start_to_close_ms = 1000};
    h->work = keel_workflow_activity(ctx, "work", NULL, &o);
    return KEEL_OK;
}

static int halter_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    halter *h = state;
    if (ev->kind == KEEL_EVENT_SIGNAL) {
        keel_workflow_cancel_activity(ctx, h->work);
        keel_workflow_cancel_activity(ctx, h->work); /* the server refuses a second request */
        keel_workflow_timer(ctx, 1000);
    } else if (ev->kind == KEEL_EVENT_ACTIVITY_CANCELED) {
        ck_assert_uint_eq(ev->seq, h->work);
        h->canceled++;
    }
    return KEEL_OK;
}

static const keel_workflow_type halter_type = {.name = "Halter",
                                               .state_size = sizeof(halter),
                                               .start = halter_start,
                                               .on_event = halter_event};

START_TEST(a_cancel_the_server_grants_at_once_replays)
{
    /* The activity had not started: the server wrote Canceled right after CancelRequested, among
     * the task's command events, before the timer. */
    history h = {0};
    started(&h, "{}");
    task(&h, true);
    int64_t s = activity_scheduled(&h, "1", "work");
    signaled(&h, "halt", "null");
    task(&h, true);
    cancel_requested(&h, s);
    activity_canceled(&h, s);
    timer_started(&h, "1");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run_type(&halter_type, &h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(((const halter *)keel_engine_state(e))->canceled, 1);
    keel_engine_free(e);
    free_history(&h);

    /* Live: the second cancel asks nothing more of the server. */
    history h2 = {0};
    started(&h2, "{}");
    task(&h2, true);
    activity_scheduled(&h2, "1", "work");
    signaled(&h2, "halt", "null");
    task(&h2, false);
    e = run_type(&halter_type, &h2, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_pb_command *const *cmds;
    ck_assert_uint_eq(keel_engine_commands(e, &cmds), 2);
    ck_assert_int_eq(
        cmds[0]->command_type,
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK);
    ck_assert_int_eq(cmds[1]->command_type,
                     TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_START_TIMER);
    keel_engine_free(e);
    free_history(&h2);
}
END_TEST

START_TEST(events_without_their_attributes_are_errors)
{
    history h = {0};
    started(&h, "{}");
    task(&h, true);
    /* Strip the WorkflowTaskCompleted of its attributes, as a broken file might. */
    keel_pb_event *done = h.ev[3];
    FREE_PB(done->workflow_task_completed_event_attributes);
    done->workflow_task_completed_event_attributes = NULL;
    done->attributes_case = TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES__NOT_SET;
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "WORKFLOW_TASK_COMPLETED without its attributes"));
    keel_engine_free(e);
    free_history(&h);
}
END_TEST

/* A protocol message carrying `type_url` with `value` bytes. */
static keel_pb_message *message(const char *id, const char *type_url, const void *value, size_t len)
{
    keel_pb_message *m = malloc(sizeof *m);
    temporal__api__protocol__v1__message__init(m);
    m->id = strdup(id);
    m->protocol_instance_id = strdup(id);
    m->body = malloc(sizeof *m->body);
    google__protobuf__any__init(m->body);
    m->body->type_url = strdup(type_url);
    m->body->value.data = malloc(len ? len : 1);
    memcpy(m->body->value.data, value, len);
    m->body->value.len = len;
    return m;
}

START_TEST(update_messages_that_are_not_usable_are_rejected)
{
    history h = {0};
    started(&h, "{}");
    task(&h, false);
    keel_error err;
    keel_engine *e;
    ck_assert_int_eq(keel_engine_new(&e, &order_type, "wf-1", "run-1", "q", &err), KEEL_OK);
    ck_assert_int_eq(keel_engine_feed(e, h.ev, h.n, &err), KEEL_OK);

    /* Another protocol's message is not for keel: passed over. */
    keel_pb_message *other =
        message("m1", "type.googleapis.com/temporal.api.other.v1.Thing", "", 0);
    ck_assert_int_eq(keel_engine_take_messages(e, &other, 1, &err), KEEL_OK);
    /* Requests that do not decode, or lack an update id, are rejected naming the problem. */
    keel_pb_message *garbage =
        message("m2", "type.googleapis.com/temporal.api.update.v1.Request", "\xff\xff\xff", 3);
    ck_assert_int_eq(keel_engine_take_messages(e, &garbage, 1, &err), KEEL_OK);
    Temporal__Api__Update__V1__Request req = TEMPORAL__API__UPDATE__V1__REQUEST__INIT;
    uint8_t buf[64];
    size_t len = protobuf_c_message_pack(&req.base, buf);
    keel_pb_message *anon =
        message("m3", "type.googleapis.com/temporal.api.update.v1.Request", buf, len);
    ck_assert_int_eq(keel_engine_take_messages(e, &anon, 1, &err), KEEL_OK);
    /* Order declares no updates: a proper request is rejected too. */
    Temporal__Api__Update__V1__Meta meta = TEMPORAL__API__UPDATE__V1__META__INIT;
    Temporal__Api__Update__V1__Input input = TEMPORAL__API__UPDATE__V1__INPUT__INIT;
    meta.update_id = "u-1";
    input.name = "rename";
    req.meta = &meta;
    req.input = &input;
    len = protobuf_c_message_pack(&req.base, buf);
    keel_pb_message *good =
        message("u-1/request", "type.googleapis.com/temporal.api.update.v1.Request", buf, len);
    ck_assert_int_eq(keel_engine_take_messages(e, &good, 1, &err), KEEL_OK);
    ck_assert_int_eq(keel_engine_finish(e, &err), KEEL_OK);

    keel_pb_message *const *out;
    ck_assert_uint_eq(keel_engine_messages(e, &out), 3);
    const char *ids[] = {"m2/reject", "m3/reject", "u-1/reject"};
    const char *why[] = {"does not decode", "without an update id", "takes no update"};
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(out[i]->id, ids[i]);
        ck_assert_ptr_nonnull(strstr(out[i]->body->type_url, "Rejection"));
        Temporal__Api__Update__V1__Rejection *r = temporal__api__update__v1__rejection__unpack(
            NULL, out[i]->body->value.len, out[i]->body->value.data);
        ck_assert_ptr_nonnull(r);
        ck_assert_msg(strstr(r->failure->message, why[i]) != NULL, "%s", r->failure->message);
        FREE_PB(r);
    }
    keel_pb_command *const *cmds;
    size_t n = keel_engine_commands(e, &cmds);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ne(cmds[i]->command_type,
                         TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_PROTOCOL_MESSAGE);
    keel_engine_free(e);

    /* One that does not even name its update cannot be answered: an error. */
    ck_assert_int_eq(keel_engine_new(&e, &order_type, "wf-1", "run-1", "q", &err), KEEL_OK);
    free(garbage->protocol_instance_id);
    garbage->protocol_instance_id = strdup("");
    ck_assert_int_eq(keel_engine_take_messages(e, &garbage, 1, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "does not decode"));
    keel_engine_free(e);
    FREE_PB(other);
    FREE_PB(garbage);
    FREE_PB(anon);
    FREE_PB(good);
    free_history(&h);
}
END_TEST

/* A side effect whose function counts its calls and answers with the count. */
static int side_effect_calls;

static int count_call(void *arg, char **result)
{
    (void)arg;
    char buf[16];
    snprintf(buf, sizeof buf, "%d", 40 + ++side_effect_calls);
    *result = strdup(buf);
    return KEEL_OK;
}

static int drawing_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)input;
    char *value = NULL;
    int rc = keel_workflow_side_effect(ctx, count_call, NULL, &value);
    if (rc != KEEL_OK)
        return rc;
    keel_activity_options o = {.start_to_close_ms = 1000};
    snprintf(state, 16, "%s", value);
    rc = keel_workflow_activity(ctx, "use", value, &o) ? KEEL_OK : KEEL_EINVAL;
    free(value);
    return rc;
}

static const keel_workflow_type drawing_type = {
    .name = "Drawing", .state_size = 16, .start = drawing_start, .on_event = no_event};

START_TEST(side_effects_run_once_and_replay_their_value)
{
    side_effect_calls = 0;
    int rc;
    keel_error err;
    history h = {0};
    started(&h, "{}");
    task(&h, false);
    keel_engine *e = run_type(&drawing_type, &h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_pb_command *const *cmds;
    ck_assert_uint_eq(keel_engine_commands(e, &cmds), 2);
    ck_assert_str_eq(cmds[0]->record_marker_command_attributes->marker_name, "SideEffect");
    ck_assert_str_eq(keel_engine_state(e), "41");
    ck_assert_int_eq(side_effect_calls, 1);
    keel_engine_free(e);
    free_history(&h);

    /* Replayed: the recorded value, and the function is not called. */
    history h2 = {0};
    started(&h2, "{}");
    task(&h2, true);
    side_effect_marker(&h2, "1", "7");
    activity_scheduled(&h2, "1", "use");
    task(&h2, false);
    e = run_type(&drawing_type, &h2, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    ck_assert_str_eq(keel_engine_state(e), "7");
    ck_assert_int_eq(side_effect_calls, 1);
    keel_engine_free(e);
    free_history(&h2);

    /* History without the marker: the code's side effect is a command history lacks. */
    history h3 = {0};
    started(&h3, "{}");
    task(&h3, true);
    activity_scheduled(&h3, "1", "use");
    task(&h3, false);
    e = run_type(&drawing_type, &h3, &rc, &err);
    ck_assert_int_eq(rc, KEEL_ENONDETERMINISM);
    ck_assert_ptr_nonnull(strstr(err.message, "SideEffect 1"));
    keel_engine_free(e);
    free_history(&h3);
}
END_TEST

/* A command input that is not JSON: the task fails, and the message names the command's type
 * (the description is written only then). */
static int bad_input_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    (void)input;
    keel_activity_options o = {.start_to_close_ms = 1000};
    return keel_workflow_activity(ctx, "use", "{bad", &o) ? KEEL_OK : KEEL_EINVAL;
}

static const keel_workflow_type bad_input_type = {
    .name = "BadInput", .state_size = 16, .start = bad_input_start, .on_event = no_event};

START_TEST(a_command_input_that_is_not_json_names_the_command)
{
    int rc;
    keel_error err;
    history h = {0};
    started(&h, "{}");
    task(&h, false);
    keel_engine *e = run_type(&bad_input_type, &h, &rc, &err);
    ck_assert_int_ne(rc, KEEL_OK);
    ck_assert_msg(strstr(err.message, "activity use input is not valid JSON: at byte ") != NULL,
                  "%s", err.message);
    keel_engine_free(e);
    free_history(&h);
}
END_TEST

/* ---- the server's continue-as-new suggestion ---- */

/* Notes what keel_workflow_continue_as_new_suggested() said at start and at each signal. */
typedef struct suggested {
    int seen;
    bool at[4];
} suggested;

static int suggested_note(keel_workflow_ctx *ctx, void *state)
{
    suggested *s = state;
    if (s->seen < 4)
        s->at[s->seen++] = keel_workflow_continue_as_new_suggested(ctx);
    return KEEL_OK;
}

static int suggested_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)input;
    return suggested_note(ctx, state);
}

static int suggested_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)ev;
    return suggested_note(ctx, state);
}

static const keel_workflow_type suggested_type = {.name = "Suggested",
                                                  .state_size = sizeof(suggested),
                                                  .start = suggested_start,
                                                  .on_event = suggested_event};

/* A WorkflowTaskStarted event that carries the suggestion. */
static void task_suggesting(history *h, bool complete)
{
    task(h, complete);
    keel_pb_event *s = h->ev[h->n - (complete ? 2 : 1)];
    NEW(a, Temporal__Api__History__V1__WorkflowTaskStartedEventAttributes,
        temporal__api__history__v1__workflow_task_started_event_attributes__init);
    a->suggest_continue_as_new = true;
    s->attributes_case = ATTR(WORKFLOW_TASK_STARTED);
    s->workflow_task_started_event_attributes = a;
}

START_TEST(the_continue_as_new_suggestion_comes_from_each_task)
{
    /* Replayed: a task without the suggestion, then one with it; live: one without. */
    history h = {0};
    started(&h, "{}");
    task(&h, true);
    signaled(&h, "more", "{}");
    task_suggesting(&h, true);
    signaled(&h, "more", "{}");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run_type(&suggested_type, &h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    const suggested *s = keel_engine_state(e);
    ck_assert_int_eq(s->seen, 3);
    ck_assert(!s->at[0]);
    ck_assert(s->at[1]);
    ck_assert(!s->at[2]);
    keel_engine_free(e);
    free_history(&h);

    /* Live: the current task suggests it. */
    history l = {0};
    started(&l, "{}");
    task_suggesting(&l, false);
    e = run_type(&suggested_type, &l, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    s = keel_engine_state(e);
    ck_assert_int_eq(s->seen, 1);
    ck_assert(s->at[0]);
    keel_engine_free(e);
    free_history(&l);
}
END_TEST

/* ---- attributes and fields the engine must not trust ---- */

/* Every event type, carrying another type's attributes (a timer's, 40 bytes, or for
 * TIMER_FIRED a task's): refused by name before anything reads them. Under ASan, a read of the
 * wrong attributes past their end would fail the test. */
START_TEST(every_event_type_with_another_types_attributes_is_refused)
{
    const ProtobufCEnumDescriptor *types = &temporal__api__enums__v1__event_type__descriptor;
    for (unsigned i = 0; i < types->n_values; i++) {
        int type = types->values[i].value;
        bool timer = type == TYPE(TIMER_FIRED);
        history h = {0};
        started(&h, "{}");
        keel_pb_event *ev = add(&h, (Temporal__Api__Enums__V1__EventType)type,
                                timer ? ATTR(WORKFLOW_TASK_SCHEDULED) : ATTR(TIMER_FIRED));
        if (timer) {
            NEW(a, Temporal__Api__History__V1__WorkflowTaskScheduledEventAttributes,
                temporal__api__history__v1__workflow_task_scheduled_event_attributes__init);
            ev->workflow_task_scheduled_event_attributes = a;
        } else {
            NEW(a, Temporal__Api__History__V1__TimerFiredEventAttributes,
                temporal__api__history__v1__timer_fired_event_attributes__init);
            a->timer_id = strdup("1");
            a->started_event_id = 1;
            ev->timer_fired_event_attributes = a;
        }
        int rc;
        keel_error err;
        keel_engine *e = run(&h, &rc, &err);
        char want[160];
        snprintf(want, sizeof want, "history event 2 (%s) carries %s attributes",
                 types->values[i].name + strlen("EVENT_TYPE_"),
                 timer ? "workflow_task_scheduled" : "timer_fired");
        ck_assert_msg(rc == KEEL_EINVAL && strstr(err.message, want) != NULL, "%s: %s (%s)",
                      types->values[i].name, keel_error_code_name(rc), err.message);
        keel_engine_free(e);
        /* Free the attributes as what they are, not as what the event type says. */
        if (timer)
            FREE_PB(ev->workflow_task_scheduled_event_attributes);
        else
            FREE_PB(ev->timer_fired_event_attributes);
        ev->attributes_case = TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES__NOT_SET;
        free_history(&h);
    }
}
END_TEST

START_TEST(attributes_named_but_missing_or_left_out_are_refused)
{
    int rc;
    keel_error err;
    /* The oneof names timer_fired, but there is nothing behind it (the happy path otherwise,
     * so that the timer's firing is what gets read). */
    history h = {0};
    happy(&h, false);
    keel_pb_event *fired = h.ev[11];
    ck_assert_int_eq(fired->event_type, TYPE(TIMER_FIRED));
    FREE_PB(fired->timer_fired_event_attributes);
    fired->timer_fired_event_attributes = NULL;
    keel_engine *e = run(&h, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "history event 12 (TIMER_FIRED) names its attributes but "
                                      "has none") != NULL,
                  "%s", err.message);
    keel_engine_free(e);
    fired->attributes_case = TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES__NOT_SET;
    free_history(&h);

    /* A command event without attributes: an error saying so, not a mismatch. */
    history h2 = {0};
    started(&h2, "{}");
    task(&h2, true);
    add(&h2, TYPE(ACTIVITY_TASK_SCHEDULED), 0);
    task(&h2, false);
    e = run(&h2, &rc, &err);
    ck_assert_int_eq(rc, KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "history event 5 is ACTIVITY_TASK_SCHEDULED without its "
                                      "attributes") != NULL,
                  "%s", err.message);
    keel_engine_free(e);
    free_history(&h2);

    /* A WorkflowTaskStarted without attributes is fine (keel reads only an optional flag). */
    history h3 = {0};
    started(&h3, "{}");
    task(&h3, false);
    e = run(&h3, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_engine_free(e);
    free_history(&h3);
}
END_TEST

START_TEST(a_version_marker_an_int_cannot_hold_is_refused)
{
    static const char *const bad[] = {"4294967297", "1.5", "1e300", "-2147483649"};
    supported_min = KEEL_DEFAULT_VERSION;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        history h = {0};
        started(&h, "{}");
        task(&h, true);
        const char *const keys[] = {"change-id", "version"}, *const vals[] = {"\"pay-v2\"", bad[i]};
        marker(&h, "Version", keys, vals);
        activity_scheduled(&h, "1", "pay_v2");
        task(&h, false);
        int rc;
        keel_error err;
        keel_engine *e = run_type(&patched_type, &h, &rc, &err);
        ck_assert_msg(rc == KEEL_EINVAL &&
                          strstr(err.message, "history event 5 is a Version marker whose version "
                                              "is not an integer an int holds") != NULL,
                      "version %s: %s (%s)", bad[i], keel_error_code_name(rc), err.message);
        keel_engine_free(e);
        free_history(&h);
    }
}
END_TEST

/* ---- summaries (user_metadata) and the SDK history recorded ---- */

static int named_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    keel_activity_options ao = {.start_to_close_ms = 1000, .summary = "small model: read it"};
    keel_timer_options plain = {.summary = "reminder to ana@example.com"};
    /* invalid UTF-8 (a lone continuation byte, an overlong form) and control characters */
    keel_timer_options odd = {.summary = "bad \x80 byte\tand \xc0\xaf overlong\n"};
    char longer[400] = "";
    for (int i = 0; i < 150; i++)
        strcat(longer, "\xc3\xa9"); /* 300 bytes of e-acute */
    keel_timer_options cut = {.summary = longer};
    if (keel_workflow_activity(ctx, "llm.chat", NULL, &ao) == 0 ||
        keel_workflow_timer_with(ctx, 1000, &plain) == 0 ||
        keel_workflow_timer_with(ctx, 1000, &odd) == 0 ||
        keel_workflow_timer_with(ctx, 1000, &cut) == 0 ||
        keel_workflow_timer_with(ctx, 1000, NULL) == 0 || keel_workflow_timer(ctx, 1000) == 0)
        return KEEL_EINVAL;
    if (strstr(input, "child")) {
        keel_child_options co = {.summary = "order for CC-1001"};
        if (keel_workflow_child(ctx, "Child", NULL, &co) == 0)
            return KEEL_EINVAL;
    }
    return KEEL_OK;
}

static const keel_workflow_type named_type = {
    .name = "Named", .state_size = 8, .start = named_start, .on_event = no_event};

/* The summary a command carries, as the text of its json/plain payload ("" when none). */
static const char *summary_of(const keel_pb_command *c, char *buf, size_t n)
{
    buf[0] = '\0';
    if (c->user_metadata == NULL)
        return buf;
    const Temporal__Api__Common__V1__Payload *p = c->user_metadata->summary;
    ck_assert_ptr_nonnull(p);
    ck_assert(keel_payload_encoding_is(p, "json/plain"));
    ck_assert_uint_lt(p->data.len, n);
    memcpy(buf, p->data.data, p->data.len);
    buf[p->data.len] = '\0';
    return buf;
}

START_TEST(commands_carry_their_summaries_as_json_payloads)
{
    history h = {0};
    started(&h, "\"child\"");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run_type(&named_type, &h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_pb_command *const *cmds;
    ck_assert_uint_eq(keel_engine_commands(e, &cmds), 7);
    char buf[1024];
    ck_assert_str_eq(summary_of(cmds[0], buf, sizeof buf), "\"small model: read it\"");
    ck_assert_str_eq(summary_of(cmds[1], buf, sizeof buf), "\"reminder to ana@example.com\"");
    ck_assert_str_eq(summary_of(cmds[2], buf, sizeof buf), "\"bad ? byte and ?? overlong \"");
    /* 200 bytes: 100 whole characters, none cut in half */
    summary_of(cmds[3], buf, sizeof buf);
    ck_assert_uint_eq(strlen(buf), KEEL_SUMMARY_MAX + 2);
    ck_assert_str_eq(buf + strlen(buf) - 3, "\xc3\xa9\"");
    ck_assert_str_eq(summary_of(cmds[4], buf, sizeof buf), "");
    ck_assert_ptr_null(cmds[5]->user_metadata);
    ck_assert_int_eq(
        cmds[6]->command_type,
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION);
    ck_assert_str_eq(summary_of(cmds[6], buf, sizeof buf), "\"order for CC-1001\"");
    keel_engine_free(e);
    free_history(&h);
}
END_TEST

/* Summaries are not matched on replay (the SDKs do not either): history recorded without them,
 * or with other ones, replays. The SDK name and version history last recorded are kept. */
START_TEST(summaries_do_not_affect_replay_and_the_recorded_sdk_is_kept)
{
    history h = {0};
    started(&h, "\"plain\"");
    task(&h, true);
    Temporal__Api__History__V1__WorkflowTaskCompletedEventAttributes *done =
        h.ev[h.n - 1]->workflow_task_completed_event_attributes;
    NEW(m, Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata,
        temporal__api__sdk__v1__workflow_task_completed_metadata__init);
    m->sdk_name = strdup("keel");
    m->sdk_version = strdup("0.0.9");
    done->sdk_metadata = m;
    activity_scheduled(&h, "1", "llm.chat");
    for (int i = 1; i <= 5; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        timer_started(&h, id);
    }
    signaled(&h, "poke", "null");
    task(&h, true); /* records nothing new: the name and version stay */
    NEW(m2, Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata,
        temporal__api__sdk__v1__workflow_task_completed_metadata__init);
    h.ev[h.n - 1]->workflow_task_completed_event_attributes->sdk_metadata = m2;
    signaled(&h, "poke", "null");
    task(&h, false);
    int rc;
    keel_error err;
    keel_engine *e = run_type(&named_type, &h, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    const char *name, *version;
    keel_engine_sdk_recorded(e, &name, &version);
    ck_assert_str_eq(name, "keel");
    ck_assert_str_eq(version, "0.0.9");
    keel_engine_free(e);
    free_history(&h);

    /* A history no SDK name was recorded in says "". */
    history f = {0};
    started(&f, "\"plain\"");
    task(&f, false);
    e = run_type(&named_type, &f, &rc, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    keel_engine_sdk_recorded(e, &name, &version);
    ck_assert_str_eq(name, "");
    ck_assert_str_eq(version, "");
    keel_engine_free(e);
    free_history(&f);
}
END_TEST

Suite *engine_suite(void)
{

    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, first_task_schedules_the_activity);
    tcase_add_test(tc, replay_then_work_on_the_current_task);
    tcase_add_test(tc, a_closed_run_replays_with_nothing_to_send);
    tcase_add_test(tc, feeding_in_pieces_is_the_same_as_at_once);
    tcase_add_test(tc, a_compacted_run_goes_on_and_still_catches_non_determinism);
    tcase_add_test(tc, a_different_command_is_non_determinism);
    tcase_add_test(tc, missing_and_extra_commands_are_non_determinism);
    tcase_add_test(tc, a_failed_task_attempt_is_folded_into_the_next);
    tcase_add_test(tc, a_signal_can_fail_the_workflow_with_its_argument);
    tcase_add_test(tc, bugs_and_bad_histories_are_errors_not_crashes);
    tcase_add_test(tc, unreadable_payloads_reach_the_workflow_as_bad_input);
    tcase_add_test(tc, randomness_and_time_replay_identically);
    tcase_add_test(tc, cancelled_before_sent_and_misuse);
    tcase_add_test(tc, get_version_records_new_runs_and_replays_old_ones);
    tcase_add_test(tc, get_version_limits_and_removal);
    tcase_add_test(tc, a_cancel_the_server_grants_at_once_replays);
    tcase_add_test(tc, events_without_their_attributes_are_errors);
    tcase_add_test(tc, update_messages_that_are_not_usable_are_rejected);
    tcase_add_test(tc, side_effects_run_once_and_replay_their_value);
    tcase_add_test(tc, a_command_input_that_is_not_json_names_the_command);
    tcase_add_test(tc, the_continue_as_new_suggestion_comes_from_each_task);
    tcase_add_test(tc, every_event_type_with_another_types_attributes_is_refused);
    tcase_add_test(tc, attributes_named_but_missing_or_left_out_are_refused);
    tcase_add_test(tc, a_version_marker_an_int_cannot_hold_is_refused);
    tcase_add_test(tc, commands_carry_their_summaries_as_json_payloads);
    tcase_add_test(tc, summaries_do_not_affect_replay_and_the_recorded_sdk_is_kept);
    suite_add_tcase(s, tc);
    return s;
}
