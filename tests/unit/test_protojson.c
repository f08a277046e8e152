/*
 * src/converter/protojson.c: proto3 JSON for protobuf-c messages.
 *
 * Fixtures are read from tests/fixtures/protojson/ relative to the working directory: run the
 * unit binary from the repository root, as `make test-unit` does.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converter/failure.h"
#include "converter/payload.h"
#include "converter/protojson.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/field_mask.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "keel/json.h"
#include "temporal/api/errordetails/v1/message.pb-c.h"
#include "temporal/api/history/v1/message.pb-c.h"
#include "temporal/api/protocol/v1/message.pb-c.h"
#include "temporal/api/taskqueue/v1/message.pb-c.h"
#include "temporal/api/update/v1/message.pb-c.h"

typedef Temporal__Api__History__V1__History pb_history;
typedef Temporal__Api__History__V1__HistoryEvent pb_event;
typedef Google__Protobuf__Duration pb_duration;
typedef Google__Protobuf__Timestamp pb_timestamp;

#define HISTORY    (&temporal__api__history__v1__history__descriptor)
#define FAILURE    (&temporal__api__failure__v1__failure__descriptor)
#define TIMESTAMP  (&google__protobuf__timestamp__descriptor)
#define DURATION   (&google__protobuf__duration__descriptor)
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)
#define ENUM(name) TEMPORAL__API__ENUMS__V1__##name
#define EVENT_CASE(name)                                                                           \
    TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_##name##_EVENT_ATTRIBUTES

/* 2026-11-23T09:42:09Z */
#define T0 1795426929LL

/* Appends item to a protobuf-c repeated field (arr, n). */
#define PUSH(arr, n, item)                                                                         \
    do {                                                                                           \
        (arr) = realloc((arr), ((n) + 1) * sizeof *(arr));                                         \
        ck_assert_ptr_nonnull(arr);                                                                \
        (arr)[(n)++] = (item);                                                                     \
    } while (0)

/* ---- building messages in unpack layout ---- */

static void *mk(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    ck_assert_ptr_nonnull(m);
    d->message_init(m);
    return m;
}

static char *dup(const char *s)
{
    char *p = strdup(s);
    ck_assert_ptr_nonnull(p);
    return p;
}

static pb_duration *dur(int64_t s, int32_t ns)
{
    pb_duration *d = mk(DURATION);
    d->seconds = s;
    d->nanos = ns;
    return d;
}

static pb_timestamp *ts(int64_t s, int32_t ns)
{
    pb_timestamp *t = mk(TIMESTAMP);
    t->seconds = s;
    t->nanos = ns;
    return t;
}

static keel_pb_payload *payload(const char *json)
{
    keel_pb_payload *p;
    ck_assert_int_eq(keel_payload_new_json(json, strlen(json), "test", &p, NULL), KEEL_OK);
    return p;
}

static keel_pb_payloads *payloads(const char *json)
{
    keel_pb_payloads *ps;
    ck_assert_int_eq(keel_payloads_new_json(json, "test", &ps, NULL), KEEL_OK);
    return ps;
}

static Temporal__Api__Common__V1__Memo__FieldsEntry *memo_entry(const char *key, const char *json)
{
    Temporal__Api__Common__V1__Memo__FieldsEntry *e =
        mk(&temporal__api__common__v1__memo__fields_entry__descriptor);
    e->key = dup(key);
    e->value = payload(json);
    return e;
}

static Temporal__Api__Common__V1__SearchAttributes__IndexedFieldsEntry *
search_attribute(const char *key, const char *json, const char *type)
{
    Temporal__Api__Common__V1__SearchAttributes__IndexedFieldsEntry *e =
        mk(&temporal__api__common__v1__search_attributes__indexed_fields_entry__descriptor);
    e->key = dup(key);
    e->value = payload(json);
    ck_assert_int_eq(keel_payload_set_metadata(e->value, "type", type, NULL), KEEL_OK);
    return e;
}

static Temporal__Api__Taskqueue__V1__TaskQueue *task_queue(const char *name)
{
    Temporal__Api__Taskqueue__V1__TaskQueue *q =
        mk(&temporal__api__taskqueue__v1__task_queue__descriptor);
    q->name = dup(name);
    q->kind = ENUM(TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL);
    return q;
}

static Temporal__Api__Common__V1__RetryPolicy *retry_policy(void)
{
    Temporal__Api__Common__V1__RetryPolicy *r =
        mk(&temporal__api__common__v1__retry_policy__descriptor);
    r->initial_interval = dur(1, 0);
    r->backoff_coefficient = 2.5;
    r->maximum_interval = dur(100, 0);
    r->maximum_attempts = 3;
    PUSH(r->non_retryable_error_types, r->n_non_retryable_error_types, dup("InvalidVendor"));
    PUSH(r->non_retryable_error_types, r->n_non_retryable_error_types, dup(""));
    return r;
}

static pb_event *event(int64_t id, int64_t seconds, int32_t nanos, int type)
{
    pb_event *e = mk(&temporal__api__history__v1__history_event__descriptor);
    e->event_id = id;
    e->event_time = ts(seconds, nanos);
    e->event_type = type;
    e->task_id = 1048576 + id;
    return e;
}

static pb_event *started_event(void)
{
    pb_event *e = event(1, T0, 123456789, ENUM(EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_STARTED));
    e->task_id = INT64_MAX;
    e->version = -7;
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a =
        mk(&temporal__api__history__v1__workflow_execution_started_event_attributes__descriptor);
    a->workflow_type = mk(&temporal__api__common__v1__workflow_type__descriptor);
    a->workflow_type->name = dup("procurement");
    a->task_queue = task_queue("keel");
    a->input = payloads("{\"item\":\"laptop\",\"qty\":2}");
    a->workflow_execution_timeout = dur(0, 0); /* present though zero: "0s" */
    a->workflow_run_timeout = dur(86400, 0);
    a->workflow_task_timeout = dur(10, 0);
    a->first_workflow_task_backoff = dur(1, 500000000);
    a->workflow_execution_expiration_time = ts(T0 + 86400, 123000000);
    a->attempt = 1;
    a->identity = dup("42@buyer-laptop");
    a->workflow_id = dup("po-1001");
    a->original_execution_run_id = dup("0193a4b6-7c1e-7d2f-9a3b-5c6d7e8f9a0b");
    a->memo = mk(&temporal__api__common__v1__memo__descriptor);
    PUSH(a->memo->fields, a->memo->n_fields, memo_entry("requester", "\"alice\""));
    PUSH(a->memo->fields, a->memo->n_fields, memo_entry("budget", "{\"eur\":1200.5}"));
    a->search_attributes = mk(&temporal__api__common__v1__search_attributes__descriptor);
    PUSH(a->search_attributes->indexed_fields, a->search_attributes->n_indexed_fields,
         search_attribute("PurchaseOrder", "\"PO-1001\"", "Keyword"));
    a->header = mk(&temporal__api__common__v1__header__descriptor); /* empty, still present */
    a->retry_policy = retry_policy();
    e->attributes_case = EVENT_CASE(WORKFLOW_EXECUTION_STARTED);
    e->workflow_execution_started_event_attributes = a;
    return e;
}

static pb_event *activity_scheduled_event(void)
{
    pb_event *e = event(5, T0 + 1, 0, ENUM(EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_SCHEDULED));
    Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *a =
        mk(&temporal__api__history__v1__activity_task_scheduled_event_attributes__descriptor);
    a->activity_id = dup("1");
    a->activity_type = mk(&temporal__api__common__v1__activity_type__descriptor);
    a->activity_type->name = dup("vendor-quote");
    a->task_queue = task_queue("keel");
    a->input = payloads("{\"vendor\":\"acme\"}");
    a->schedule_to_close_timeout = dur(300, 0);
    a->start_to_close_timeout = dur(60, 500000000);
    a->heartbeat_timeout = dur(0, 1000);
    a->workflow_task_completed_event_id = 4;
    a->retry_policy = retry_policy();
    e->attributes_case = EVENT_CASE(ACTIVITY_TASK_SCHEDULED);
    e->activity_task_scheduled_event_attributes = a;
    return e;
}

static pb_event *timer_started_event(void)
{
    pb_event *e = event(8, T0 + 2, 999999999, ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_STARTED));
    Temporal__Api__History__V1__TimerStartedEventAttributes *a =
        mk(&temporal__api__history__v1__timer_started_event_attributes__descriptor);
    a->timer_id = dup("approval-reminder \xe2\x8f\xb0"); /* UTF-8 passes through */
    a->start_to_fire_timeout = dur(3600, 0);
    a->workflow_task_completed_event_id = 4;
    e->attributes_case = EVENT_CASE(TIMER_STARTED);
    e->timer_started_event_attributes = a;
    return e;
}

/* quote rejected <- vendor blocked <- heartbeat timeout <- canceled (empty info) */
static keel_pb_failure *failure_chain(void)
{
    keel_pb_failure *top =
        keel_failure_new_application("QuoteRejected", "quote rejected", true, NULL);
    top->stack_trace = dup("vendor_quote()\n\tactivities/vendor.c:88");
    top->application_failure_info->details = payloads("[\"acme\"]");
    top->application_failure_info->next_retry_delay = dur(0, -500000000);
    top->cause =
        keel_failure_new_application("InvalidVendor", "vendor acme is blocked", false, NULL);
    keel_pb_failure *timeout = mk(FAILURE);
    timeout->message = dup("activity heartbeat timeout");
    timeout->failure_info_case =
        TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_TIMEOUT_FAILURE_INFO;
    timeout->timeout_failure_info =
        mk(&temporal__api__failure__v1__timeout_failure_info__descriptor);
    timeout->timeout_failure_info->timeout_type = ENUM(TIMEOUT_TYPE__TIMEOUT_TYPE_HEARTBEAT);
    top->cause->cause = timeout;
    keel_pb_failure *canceled = mk(FAILURE);
    canceled->failure_info_case =
        TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_CANCELED_FAILURE_INFO;
    canceled->canceled_failure_info =
        mk(&temporal__api__failure__v1__canceled_failure_info__descriptor);
    timeout->cause = canceled;
    return top;
}

static pb_event *activity_failed_event(void)
{
    pb_event *e = event(7, T0 + 3, 500000, ENUM(EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_FAILED));
    Temporal__Api__History__V1__ActivityTaskFailedEventAttributes *a =
        mk(&temporal__api__history__v1__activity_task_failed_event_attributes__descriptor);
    a->failure = failure_chain();
    a->scheduled_event_id = 5;
    a->started_event_id = 6;
    a->identity = dup("keel-worker@host-1");
    a->retry_state = ENUM(RETRY_STATE__RETRY_STATE_NON_RETRYABLE_FAILURE);
    e->attributes_case = EVENT_CASE(ACTIVITY_TASK_FAILED);
    e->activity_task_failed_event_attributes = a;
    return e;
}

static pb_history *rich_history(void)
{
    pb_history *h = mk(HISTORY);
    PUSH(h->events, h->n_events, started_event());
    PUSH(h->events, h->n_events, activity_scheduled_event());
    PUSH(h->events, h->n_events, activity_failed_event());
    PUSH(h->events, h->n_events, timer_started_event());
    /* An event type this build does not know: kept as its number. */
    pb_event *future = event(9, -1, 1, 9999);
    future->worker_may_ignore = 1;
    PUSH(h->events, h->n_events, future);
    return h;
}

/* ---- checking ---- */

static uint8_t *packed(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static void assert_same_bytes(const void *a, const void *b)
{
    size_t na, nb;
    uint8_t *pa = packed(a, &na), *pb = packed(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(pa, pb, na), 0);
    free(pa);
    free(pb);
}

static ProtobufCMessage *decode_ok(const ProtobufCMessageDescriptor *d, const char *json)
{
    ProtobufCMessage *m = NULL;
    keel_error err;
    int rc = keel_protojson_decode(d, json, strlen(json), &m, &err);
    ck_assert_msg(rc == KEEL_OK, "decoding %.200s: %s", json, err.message);
    ck_assert_ptr_nonnull(m);
    return m;
}

static char *encode_ok(const void *m)
{
    keel_error err;
    char *json = keel_protojson_encode(m, false, &err);
    ck_assert_msg(json != NULL, "encoding: %s", err.message);
    return json;
}

/* Encode, decode, and check that the wire bytes did not change. Returns the JSON. */
static char *assert_round_trip(const void *m)
{
    char *json = encode_ok(m);
    ProtobufCMessage *back = decode_ok(((const ProtobufCMessage *)m)->descriptor, json);
    assert_same_bytes(m, back);
    char *again = encode_ok(back);
    ck_assert_str_eq(again, json);
    free(again);
    FREE_PB(back);
    return json;
}

static void assert_decode_fails(const ProtobufCMessageDescriptor *d, const char *json,
                                const char *message_start)
{
    ProtobufCMessage *m = (ProtobufCMessage *)&m;
    keel_error err;
    int rc = keel_protojson_decode(d, json, strlen(json), &m, &err);
    ck_assert_msg(rc == KEEL_EINVAL, "accepted %.200s", json);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(err.code, KEEL_EINVAL);
    ck_assert_msg(strncmp(err.message, message_start, strlen(message_start)) == 0,
                  "decoding %.200s\n  said: %s\n  want: %s...", json, err.message, message_start);
}

static void assert_encode_fails(const void *m, const char *message_start)
{
    keel_error err;
    char *json = keel_protojson_encode(m, false, &err);
    ck_assert_msg(json == NULL, "encoded %s", json ? json : "");
    ck_assert_int_eq(err.code, KEEL_EINVAL);
    ck_assert_msg(strncmp(err.message, message_start, strlen(message_start)) == 0,
                  "said: %s\nwant: %s...", err.message, message_start);
}

static char *read_fixture(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/protojson/%s", name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (run from the repository root)", path);
    char *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static pb_history *decode_fixture(const char *name)
{
    size_t len;
    char *text = read_fixture(name, &len);
    ProtobufCMessage *m = NULL;
    keel_error err;
    ck_assert_msg(keel_protojson_decode(HISTORY, text, len, &m, &err) == KEEL_OK, "%s: %s", name,
                  err.message);
    /* Decoded into an arena (as the replayer does), it is the same message. */
    keel_arena *arena = keel_arena_new();
    ProtobufCMessage *am = NULL;
    ck_assert_msg(keel_protojson_decode_arena(HISTORY, text, len, arena, &am, &err) == KEEL_OK,
                  "%s (arena): %s", name, err.message);
    size_t n1, n2;
    uint8_t *p1 = packed(m, &n1), *p2 = packed(am, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(p1, p2, n1);
    free(p1);
    free(p2);
    keel_arena_free(arena);
    free(text);
    return (pb_history *)m;
}

static void assert_payload(const keel_pb_payload *p, const char *data)
{
    ck_assert_uint_eq(p->data.len, strlen(data));
    ck_assert_int_eq(memcmp(p->data.data, data, p->data.len), 0);
    ck_assert(keel_payload_encoding_is(p, KEEL_ENCODING_JSON));
}

/* ---- tests ---- */

START_TEST(rich_history_round_trips_byte_for_byte)
{
    pb_history *h = rich_history();
    char *json = assert_round_trip(h);
    /* The text is what Temporal's tools write. */
    const char *expect[] = {
        "\"eventId\":\"1\"",
        "\"eventTime\":\"2026-11-23T09:42:09.123456789Z\"",
        "\"eventType\":\"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\"",
        "\"version\":\"-7\"",
        "\"taskId\":\"9223372036854775807\"",
        "\"workflowExecutionStartedEventAttributes\":{\"workflowType\":{\"name\":\"procurement\"}",
        "\"kind\":\"TASK_QUEUE_KIND_NORMAL\"",
        "\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\"}",
        "\"data\":\"eyJpdGVtIjoibGFwdG9wIiwicXR5IjoyfQ==\"",
        "\"workflowExecutionTimeout\":\"0s\"",
        "\"firstWorkflowTaskBackoff\":\"1.500s\"",
        "\"workflowExecutionExpirationTime\":\"2026-11-24T09:42:09.123Z\"",
        "\"memo\":{\"fields\":{\"requester\":{",
        "\"indexedFields\":{\"PurchaseOrder\":{\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\","
        "\"type\":\"S2V5d29yZA==\"}",
        "\"header\":{}",
        "\"backoffCoefficient\":2.5",
        "\"nonRetryableErrorTypes\":[\"InvalidVendor\",\"\"]",
        "\"startToCloseTimeout\":\"60.500s\"",
        "\"heartbeatTimeout\":\"0.000001s\"",
        "\"nextRetryDelay\":\"-0.500s\"",
        "\"timeoutFailureInfo\":{\"timeoutType\":\"TIMEOUT_TYPE_HEARTBEAT\"}",
        "\"canceledFailureInfo\":{}",
        "\"retryState\":\"RETRY_STATE_NON_RETRYABLE_FAILURE\"",
        "\"eventTime\":\"2026-11-23T09:42:11.999999999Z\"",
        "\"eventTime\":\"2026-11-23T09:42:12.000500Z\"",
        "\"eventTime\":\"1969-12-31T23:59:59.000000001Z\"",
        "\"eventType\":9999",
        "\"workerMayIgnore\":true",
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        ck_assert_msg(strstr(json, expect[i]) != NULL, "missing %s in\n%s", expect[i], json);
    /* Defaults stay out. */
    ck_assert_ptr_null(strstr(json, "parentWorkflowNamespace"));
    ck_assert_ptr_null(strstr(json, "\"attempt\":0"));
    ck_assert_ptr_null(strstr(json, "workerMayIgnore\":false"));
    free(json);
    FREE_PB(h);
}
END_TEST

START_TEST(pretty_output_is_the_same_json)
{
    pb_history *h = rich_history();
    keel_error err;
    char *flat = keel_protojson_encode(&h->base, false, &err);
    char *pretty = keel_protojson_encode(&h->base, true, &err);
    ck_assert_ptr_nonnull(strchr(pretty, '\n'));
    ck_assert_ptr_null(strchr(flat, '\n'));
    cJSON *a = cJSON_Parse(flat), *b = cJSON_Parse(pretty);
    ck_assert(cJSON_Compare(a, b, true));
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(flat);
    free(pretty);
    FREE_PB(h);
}
END_TEST

START_TEST(cli_history_fixture_decodes)
{
    pb_history *h = decode_fixture("history_cli.json");
    ck_assert_uint_eq(h->n_events, 10);

    pb_event *e = h->events[0];
    ck_assert_int_eq(e->event_id, 1);
    ck_assert_int_eq(e->task_id, 1048576);
    ck_assert_int_eq(e->event_time->seconds, T0);
    ck_assert_int_eq(e->event_time->nanos, 123456000);
    ck_assert_int_eq(e->event_type, ENUM(EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_STARTED));
    ck_assert_int_eq(e->attributes_case, EVENT_CASE(WORKFLOW_EXECUTION_STARTED));
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *s =
        e->workflow_execution_started_event_attributes;
    ck_assert_str_eq(s->workflow_type->name, "procurement");
    ck_assert_str_eq(s->workflow_id, "po-1001");
    ck_assert_int_eq(s->task_queue->kind, ENUM(TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL));
    ck_assert_uint_eq(s->input->n_payloads, 1);
    assert_payload(s->input->payloads[0], "{\"item\":\"laptop\",\"qty\":2}");
    ck_assert_ptr_nonnull(s->workflow_execution_timeout); /* "0s": present */
    ck_assert_int_eq(s->workflow_execution_timeout->seconds, 0);
    ck_assert_int_eq(s->workflow_run_timeout->seconds, 86400);
    ck_assert_int_eq(s->workflow_execution_expiration_time->seconds, T0 + 86400);
    ck_assert_int_eq(s->workflow_execution_expiration_time->nanos, 123000000);
    ck_assert_uint_eq(s->memo->n_fields, 1);
    ck_assert_str_eq(s->memo->fields[0]->key, "requester");
    assert_payload(s->memo->fields[0]->value, "\"alice\"");
    Temporal__Api__Common__V1__SearchAttributes__IndexedFieldsEntry *sa =
        s->search_attributes->indexed_fields[0];
    ck_assert_str_eq(sa->key, "PurchaseOrder");
    ck_assert_uint_eq(sa->value->n_metadata, 2);
    ck_assert_str_eq(sa->value->metadata[1]->key, "type");
    ck_assert_int_eq(memcmp(sa->value->metadata[1]->value.data, "Keyword", 7), 0);
    ck_assert_ptr_nonnull(s->header);
    ck_assert_uint_eq(s->header->n_fields, 0);
    ck_assert_ptr_null(s->parent_workflow_execution);
    ck_assert_str_eq(s->parent_workflow_namespace, "");

    ck_assert_uint_eq(
        h->events[3]->workflow_task_completed_event_attributes->sdk_metadata->lang_used_flags[1],
        2);
    Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *as =
        h->events[4]->activity_task_scheduled_event_attributes;
    ck_assert_str_eq(as->activity_type->name, "vendor-quote");
    ck_assert_int_eq(as->start_to_close_timeout->seconds, 60);
    ck_assert_int_eq(as->start_to_close_timeout->nanos, 500000000);
    ck_assert(as->retry_policy->backoff_coefficient == 2.0);
    ck_assert_str_eq(as->retry_policy->non_retryable_error_types[0], "InvalidVendor");

    Temporal__Api__History__V1__ActivityTaskFailedEventAttributes *af =
        h->events[6]->activity_task_failed_event_attributes;
    ck_assert_int_eq(af->retry_state, ENUM(RETRY_STATE__RETRY_STATE_NON_RETRYABLE_FAILURE));
    ck_assert_str_eq(af->failure->application_failure_info->type, "QuoteRejected");
    ck_assert_int_eq(af->failure->application_failure_info->next_retry_delay->seconds, -1);
    ck_assert_int_eq(af->failure->application_failure_info->next_retry_delay->nanos, -250000000);
    ck_assert_str_eq(af->failure->cause->message, "vendor acme is blocked");
    ck_assert(af->failure->cause->application_failure_info->non_retryable);
    ck_assert_ptr_nonnull(strchr(af->failure->stack_trace, '\n'));

    ck_assert_int_eq(h->events[8]->event_time->nanos, 600000001);
    ck_assert_str_eq(h->events[8]->timer_fired_event_attributes->timer_id, "approval-reminder");
    ck_assert_str_eq(h->events[9]->workflow_execution_signaled_event_attributes->signal_name,
                     "approve");

    /* Written back, it is the same JSON as the CLI's. */
    size_t len;
    char *text = read_fixture("history_cli.json", &len);
    cJSON *fixture = cJSON_ParseWithLength(text, len);
    keel_error err;
    cJSON *ours = keel_protojson_to_cjson(&h->base, &err);
    ck_assert_ptr_nonnull(ours);
    ck_assert(cJSON_Compare(fixture, ours, true));
    cJSON_Delete(fixture);
    cJSON_Delete(ours);
    free(text);
    FREE_PB(h);
}
END_TEST

START_TEST(short_enum_name_fixture_decodes)
{
    pb_history *h = decode_fixture("history_short_enums.json");
    ck_assert_uint_eq(h->n_events, 9);
    static const int types[] = {
        ENUM(EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        ENUM(EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        ENUM(EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_STARTED),
        ENUM(EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        ENUM(EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        ENUM(EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT),
        ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_STARTED),
        ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_FIRED),
        ENUM(EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
    };
    for (size_t i = 0; i < h->n_events; i++) {
        ck_assert_int_eq(h->events[i]->event_type, types[i]);
        ck_assert_int_eq(h->events[i]->event_id, (int64_t)i + 1);
    }
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *s =
        h->events[0]->workflow_execution_started_event_attributes;
    ck_assert_int_eq(h->events[0]->event_time->seconds, 1677657600);
    ck_assert_int_eq(s->task_queue->kind, ENUM(TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL));
    ck_assert_int_eq(s->initiator, 0);
    assert_payload(s->input->payloads[0], "\"procurement\""); /* unpadded base64 */
    /* null and "" are defaults */
    ck_assert_ptr_null(s->parent_workflow_execution);
    ck_assert_ptr_null(s->memo);
    ck_assert_ptr_null(s->continued_failure);
    ck_assert_str_eq(s->cron_schedule, "");
    ck_assert_ptr_nonnull(s->header);

    Temporal__Api__History__V1__ActivityTaskTimedOutEventAttributes *t =
        h->events[5]->activity_task_timed_out_event_attributes;
    ck_assert_int_eq(t->retry_state, ENUM(RETRY_STATE__RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED));
    ck_assert_int_eq(t->failure->timeout_failure_info->timeout_type,
                     ENUM(TIMEOUT_TYPE__TIMEOUT_TYPE_START_TO_CLOSE));
    ck_assert_ptr_null(t->failure->cause);
    ck_assert_uint_eq(
        h->events[4]
            ->activity_task_scheduled_event_attributes->retry_policy->n_non_retryable_error_types,
        0);
    assert_payload(h->events[8]->workflow_execution_completed_event_attributes->result->payloads[0],
                   "\"po-1001 accepted\"");
    /* And it now writes in the current form, and reads back the same. */
    char *json = assert_round_trip(h);
    ck_assert_ptr_nonnull(strstr(json, "\"eventType\":\"EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT\""));
    ck_assert_ptr_null(strstr(json, "\"version\""));
    free(json);
    FREE_PB(h);
}
END_TEST

START_TEST(decode_errors_name_the_json_path)
{
    static const struct {
        const char *json, *error;
    } cases[] = {
        {"{\"events\":[{},{},{},{\"eventTime\":\"yesterday\"}]}",
         "events[3].eventTime: not an RFC 3339 timestamp"},
        {"{\"events\":{}}", "events: expected an array, got an object"},
        {"{\"events\":[null]}", "events[0]: null is not allowed in a list"},
        {"{\"events\":[{\"eventId\":\"12x\"}]}", "events[0].eventId: expected an integer"},
        {"{\"events\":[{\"eventId\":1.5}]}", "events[0].eventId: expected an integer, got 1.5"},
        {"{\"events\":[{\"eventId\":\"9223372036854775808\"}]}",
         "events[0].eventId: 9223372036854775808 is out of range for int64"},
        {"{\"events\":[{\"eventId\":\"99999999999999999999999\"}]}",
         "events[0].eventId: integer 99999999999999999999999 is out of range"},
        {"{\"events\":[{\"eventId\":12345678901234567890}]}",
         "events[0].eventId: integer 1.2345678901234567e+19 is too large for a JSON number"},
        {"{\"events\":[{\"eventId\":{}}]}",
         "events[0].eventId: expected an integer, got an object"},
        {"{\"events\":[{\"workflowTaskScheduledEventAttributes\":{\"attempt\":2147483648}}]}",
         "events[0].workflowTaskScheduledEventAttributes.attempt: 2147483648 is out of range for "
         "int32"},
        {"{\"events\":[{\"eventType\":true}]}",
         "events[0].eventType: expected an enum value name or number, got a boolean"},
        {"{\"events\":[{\"eventType\":4294967296}]}",
         "events[0].eventType: 4294967296 is out of range for an enum"},
        {"{\"events\":[{\"workerMayIgnore\":\"yes\"}]}",
         "events[0].workerMayIgnore: expected true or false, got a string"},
        {"{\"events\":[{\"workflowExecutionSignaledEventAttributes\":{\"input\":{\"payloads\":[{}"
         ",{\"data\":\"!!!!\"}]}}}]}",
         "events[0].workflowExecutionSignaledEventAttributes.input.payloads[1].data: not base64"},
        {"{\"events\":[{\"workflowExecutionSignaledEventAttributes\":{\"input\":{\"payloads\":[{"
         "\"metadata\":{\"encoding\":5}}]}}}]}",
         "events[0].workflowExecutionSignaledEventAttributes.input.payloads[0].metadata["
         "\"encoding\"]: expected a base64 string, got a number"},
        {"{\"events\":[{\"workflowExecutionSignaledEventAttributes\":{\"input\":{\"payloads\":[{"
         "\"metadata\":[]}]}}}]}",
         "events[0].workflowExecutionSignaledEventAttributes.input.payloads[0].metadata: expected "
         "an object (a map), got an array"},
        {"{\"events\":[{\"timerStartedEventAttributes\":{\"startToFireTimeout\":\"5m\"}}]}",
         "events[0].timerStartedEventAttributes.startToFireTimeout: not a duration"},
        {"{\"events\":[{\"timerStartedEventAttributes\":{\"startToFireTimeout\":300}}]}",
         "events[0].timerStartedEventAttributes.startToFireTimeout: expected a duration string"},
        {"{\"events\":[{\"timerStartedEventAttributes\":{\"timerId\":7}}]}",
         "events[0].timerStartedEventAttributes.timerId: expected a string, got a number"},
        {"{\"events\":[{\"timerStartedEventAttributes\":{\"timerId\":\"\xff\"}}]}",
         "the JSON text is not valid JSON: at byte 54 "
         "(/events/0/timerStartedEventAttributes/timerId): invalid UTF-8"},
        /* "\u0000" would end the C string: keel.Procurement\0-v2 must not read as keel.Procurement
         */
        {"{\"events\":[{\"workflowExecutionStartedEventAttributes\":{\"workflowType\":{\"name\":"
         "\"keel.Procurement\\u0000-v2\"}}}]}",
         "the JSON text is not valid JSON: at byte 95 "
         "(/events/0/workflowExecutionStartedEventAttributes/workflowType/name): \\u0000 inside a "
         "string"},
        {"{\"events\":[{\"timerStartedEventAttributes\":{},\"timerFiredEventAttributes\":{}}]}",
         "events[0].timerFiredEventAttributes: a second member of the same oneof"},
        {"{\"events\":[{\"eventId\":\"1\",\"event_id\":\"2\"}]}",
         "events[0].event_id: field given more than once"},
        {"{\"events\":[{\"event_id\":\"1\",\"eventId\":\"2\"}]}",
         "events[0].eventId: field given more than once"},
        /* The same name twice is the JSON reader's error, whether the field is known, named by
         * its .proto name, written with an escape, or unknown (a newer server's). */
        {"{\"events\":[{\"eventId\":\"1\",\"version\":\"1\",\"eventId\":\"2\"}]}",
         "the JSON text is not valid JSON: at byte 40 (/events/0/eventId): the member name "
         "\"eventId\" appears twice in one object"},
        {"{\"events\":[{\"event_id\":\"1\",\"event_id\":\"2\"}]}",
         "the JSON text is not valid JSON: at byte 27 (/events/0/event_id): the member name "
         "\"event_id\" appears twice"},
        {"{\"events\":[{\"eventId\":\"1\",\"\\u0065ventId\":\"2\"}]}",
         "the JSON text is not valid JSON: at byte 26 (/events/0/\\u0065ventId): the member name "
         "\"eventId\" appears twice"},
        {"{\"events\":[{\"newField\":1,\"eventId\":\"1\",\"newField\":{}}]}",
         "the JSON text is not valid JSON: at byte 39 (/events/0/newField): the member name "
         "\"newField\" appears twice"},
        {"{\"events\":[],\"events\":[]}",
         "the JSON text is not valid JSON: at byte 13 (/events): the member name \"events\" "
         "appears twice"},
        {"{\"events\":[{\"timerStartedEventAttributes\":[]}]}",
         "events[0].timerStartedEventAttributes: expected an object, got an array"},
        {"[]", "expected an object, got an array"},
        {"null", "expected an object, got null"},
        {"{\"events\":[}",
         "the JSON text is not valid JSON: at byte 11 (/events/0): expected a value but found '}'"},
        {"{} {}", "the JSON text is not valid JSON: at byte 3 (the top level): '{' after the JSON "
                  "value"},
        {"", "the JSON text is not valid JSON: at byte 0 (the top level): the text ends where a "
             "value should be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_decode_fails(HISTORY, cases[i].json, cases[i].error);
}
END_TEST

/* A path longer than an error shows is cut at 639 characters and marked with "...". */
START_TEST(long_paths_are_cut)
{
    char key[701], json[1024], want[700];
    memset(key, 'k', 700);
    key[700] = '\0';
    snprintf(json, sizeof json,
             "{\"events\":[{},{\"workflowExecutionStartedEventAttributes\":{\"memo\":{"
             "\"fields\":{\"a\":{},\"%s\":5}}}}]}",
             key);
    int n = snprintf(want, sizeof want,
                     "events[1].workflowExecutionStartedEventAttributes.memo.fields[\"%s", key);
    ck_assert_int_gt(n, 639);
    snprintf(want + 639, sizeof want - 639, "...: expected an object, got a number");
    assert_decode_fails(HISTORY, json, want);
    /* A short one is whole, with the index and the key. */
    assert_decode_fails(HISTORY,
                        "{\"events\":[{},{\"workflowExecutionStartedEventAttributes\":{\"memo\":{"
                        "\"fields\":{\"a\":{},\"b\":5}}}}]}",
                        "events[1].workflowExecutionStartedEventAttributes.memo.fields[\"b\"]: "
                        "expected an object, got a number");
}
END_TEST

START_TEST(encode_errors_name_the_field)
{
    pb_history *h = rich_history();
    pb_event *timer = h->events[3];
    char *good = timer->timer_started_event_attributes->timer_id;
    timer->timer_started_event_attributes->timer_id = "bad \xc3\x28 utf-8";
    assert_encode_fails(h, "events[3].timerStartedEventAttributes.timerId: string is not valid "
                           "UTF-8");
    timer->timer_started_event_attributes->timer_id = good;

    h->events[1]->event_time->seconds = 253402300800; /* 10000-01-01 */
    assert_encode_fails(h, "events[1].eventTime: timestamp 253402300800s 0ns is outside years");
    h->events[1]->event_time->seconds = T0;

    h->events[0]->workflow_execution_started_event_attributes->workflow_run_timeout->nanos = -1;
    assert_encode_fails(h, "events[0].workflowExecutionStartedEventAttributes.workflowRunTimeout: "
                           "duration 86400s -1ns is out of range or mixes signs");
    h->events[0]->workflow_execution_started_event_attributes->workflow_run_timeout->nanos = 0;

    Temporal__Api__Common__V1__Memo *memo =
        h->events[0]->workflow_execution_started_event_attributes->memo;
    char *key = memo->fields[1]->key;
    memo->fields[1]->key = "\xed\xa0\x80"; /* a UTF-16 surrogate */
    assert_encode_fails(h, "events[0].workflowExecutionStartedEventAttributes.memo.fields: map key "
                           "is not valid UTF-8");
    memo->fields[1]->key = key;

    char *json = encode_ok(h); /* all repaired */
    free(json);
    FREE_PB(h);
}
END_TEST

/* A failure whose cause chain is n deep, as JSON. */
static char *deep_failure_json(int n)
{
    size_t cap = (size_t)n * 40 + 64, len = 0;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "{\"message\":\"%d\",\"cause\":", i);
    len += (size_t)snprintf(s + len, cap - len, "null");
    for (int i = 0; i < n; i++)
        s[len++] = '}';
    s[len] = '\0';
    return s;
}

static char *nested_arrays(size_t n)
{
    char *s = malloc(2 * n + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, '[', n);
    memset(s + n, ']', n);
    s[2 * n] = '\0';
    return s;
}

START_TEST(nesting_is_limited_both_ways)
{
    /* 100 levels read and write. */
    char *ok = deep_failure_json(KEEL_PROTOJSON_MAX_DEPTH);
    ProtobufCMessage *f = decode_ok(FAILURE, ok);
    char *back = encode_ok(f);
    FREE_PB(f);
    free(back);
    free(ok);

    /* 101 fail, naming the path: the 101st message is refused before its object is entered (the
     * tree decoder's reader refuses the 101st object first). */
    char *deep = deep_failure_json(KEEL_PROTOJSON_MAX_DEPTH + 1);
    assert_decode_fails(FAILURE, deep, "cause.cause.cause.");
    ProtobufCMessage *m = (ProtobufCMessage *)1;
    keel_error err;
    ck_assert_int_eq(keel_protojson_decode(FAILURE, deep, strlen(deep), &m, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "messages nest deeper than 100 levels"));
    cJSON *tree = NULL;
    ck_assert_int_eq(keel_json_parse(deep, strlen(deep), 0, NULL, &tree, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(
        strstr(err.message, "nested deeper than 100 levels (at byte 2391, /cause/cause"));
    free(deep);

    keel_pb_failure *chain = keel_failure_new_application("T", "0", false, NULL), *last = chain;
    for (int i = 1; i <= KEEL_PROTOJSON_MAX_DEPTH; i++)
        last = last->cause = keel_failure_new_application("T", "n", false, NULL);
    ck_assert_ptr_null(keel_protojson_encode(&chain->base, false, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "messages nest deeper than 100 levels"));
    ck_assert_int_eq(strncmp(err.message, "cause.cause.", 12), 0);
    FREE_PB(chain);

    /* JSON nested past the reader's limit is refused as such, without a crash; within it, the
     * wrong type is found at the top. */
    char *arrays = nested_arrays(20000);
    assert_decode_fails(HISTORY, arrays, "the JSON text is nested deeper than 100 levels");
    free(arrays);
    arrays = nested_arrays(50);
    assert_decode_fails(HISTORY, arrays, "expected an object, got an array");
    free(arrays);
}
END_TEST

static void assert_timestamp(const char *text, int64_t seconds, int32_t nanos)
{
    pb_timestamp *t = (pb_timestamp *)decode_ok(TIMESTAMP, text);
    ck_assert_msg(t->seconds == seconds && t->nanos == nanos, "%s read as %lld s %d ns", text,
                  (long long)t->seconds, t->nanos);
    FREE_PB(t);
}

static void assert_timestamp_text(int64_t seconds, int32_t nanos, const char *text)
{
    pb_timestamp *t = ts(seconds, nanos);
    char *json = encode_ok(t);
    ck_assert_str_eq(json, text);
    free(json);
    FREE_PB(t);
}

START_TEST(timestamps)
{
    assert_timestamp("\"1970-01-01T00:00:00Z\"", 0, 0);
    assert_timestamp("\"2026-11-23T09:42:09.123Z\"", T0, 123000000);
    assert_timestamp("\"2026-11-23T11:42:09.123456789+02:00\"", T0, 123456789);
    assert_timestamp("\"2026-11-23T04:12:09.5-05:30\"", T0, 500000000);
    assert_timestamp("\"2026-11-23t09:42:09z\"", T0, 0);
    assert_timestamp("\"2026-11-23T00:30:00-23:59\"", T0 - 9 * 3600 - 42 * 60 - 9 + 86340 + 1800,
                     0);
    assert_timestamp("\"1969-12-31T23:59:59.5Z\"", -1, 500000000);
    assert_timestamp("\"2024-02-29T00:00:00Z\"", 1709164800, 0);
    assert_timestamp("\"2000-03-01T00:00:00Z\"", 951868800, 0);
    assert_timestamp("\"0001-01-01T00:00:00Z\"", -62135596800LL, 0);
    assert_timestamp("\"9999-12-31T23:59:59.999999999Z\"", 253402300799LL, 999999999);

    static const char *bad[] = {
        "\"2023-02-29T00:00:00Z\"",
        "\"2026-13-01T00:00:00Z\"",
        "\"2026-11-31T00:00:00Z\"",
        "\"2026-11-23T24:00:00Z\"",
        "\"2026-11-23T09:60:00Z\"",
        "\"2026-11-23T09:42:60Z\"",
        "\"2026-11-23T09:42:09.1234567890Z\"",
        "\"2026-11-23T09:42:09.Z\"",
        "\"2026-11-23 09:42:09Z\"",
        "\"2026-11-23T09:42:09\"",
        "\"2026-11-23T09:42:09+0200\"",
        "\"2026-11-23T09:42:09+24:00\"",
        "\"2026-11-23T09:42:09Z \"",
        "\"26-11-23T09:42:09Z\"",
        "\"10000-01-01T00:00:00Z\"",
        "\"0000-12-31T23:59:59Z\"",
        "\"0001-01-01T00:00:00+00:01\"",
        "\"\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_decode_fails(TIMESTAMP, bad[i], "not an RFC 3339 timestamp");
    assert_decode_fails(TIMESTAMP, "1795426929", "expected an RFC 3339 timestamp string");

    assert_timestamp_text(0, 0, "\"1970-01-01T00:00:00Z\"");
    assert_timestamp_text(T0, 123000000, "\"2026-11-23T09:42:09.123Z\"");
    assert_timestamp_text(T0, 123456000, "\"2026-11-23T09:42:09.123456Z\"");
    assert_timestamp_text(T0, 1, "\"2026-11-23T09:42:09.000000001Z\"");
    assert_timestamp_text(-1, 500000000, "\"1969-12-31T23:59:59.500Z\"");
    assert_timestamp_text(951782400, 0, "\"2000-02-29T00:00:00Z\"");
    assert_timestamp_text(-62135596800LL, 0, "\"0001-01-01T00:00:00Z\"");
    assert_timestamp_text(253402300799LL, 999999999, "\"9999-12-31T23:59:59.999999999Z\"");

    pb_timestamp *t = ts(0, 1000000000);
    assert_encode_fails(t, "timestamp 0s 1000000000ns is outside years 1..9999");
    t->nanos = -1;
    assert_encode_fails(t, "timestamp 0s -1ns");
    FREE_PB(t);
}
END_TEST

static void assert_duration(const char *text, int64_t seconds, int32_t nanos)
{
    pb_duration *d = (pb_duration *)decode_ok(DURATION, text);
    ck_assert_msg(d->seconds == seconds && d->nanos == nanos, "%s read as %lld s %d ns", text,
                  (long long)d->seconds, d->nanos);
    FREE_PB(d);
}

static void assert_duration_text(int64_t seconds, int32_t nanos, const char *text)
{
    pb_duration *d = dur(seconds, nanos);
    char *json = encode_ok(d);
    ck_assert_str_eq(json, text);
    free(json);
    FREE_PB(d);
}

START_TEST(durations)
{
    assert_duration("\"0s\"", 0, 0);
    assert_duration("\"1.5s\"", 1, 500000000);
    assert_duration("\"-1.5s\"", -1, -500000000);
    assert_duration("\"-0.000000001s\"", 0, -1);
    assert_duration("\"0.123456789s\"", 0, 123456789);
    assert_duration("\"3600s\"", 3600, 0);
    assert_duration("\"315576000000s\"", 315576000000LL, 0);
    assert_duration("\"-315576000000.999999999s\"", -315576000000LL, -999999999);
    static const char *bad[] = {
        "\"1m\"",   "\"s\"",   "\"1.s\"", "\"-s\"",  "\"1.0000000001s\"",
        "\"1\"",    "\"+1s\"", "\".5s\"", "\"1s \"", "\"315576000001s\"",
        "\"1e3s\"", "\"\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_decode_fails(DURATION, bad[i], "not a duration");

    assert_duration_text(0, 0, "\"0s\"");
    assert_duration_text(1, 500000000, "\"1.500s\"");
    assert_duration_text(-1, -500000000, "\"-1.500s\"");
    assert_duration_text(0, -1, "\"-0.000000001s\"");
    assert_duration_text(-3, -250000, "\"-3.000250s\"");
    assert_duration_text(90, 0, "\"90s\"");
    assert_duration_text(315576000000LL, 999999999, "\"315576000000.999999999s\"");

    pb_duration *d = dur(1, -1);
    assert_encode_fails(d, "duration 1s -1ns is out of range or mixes signs");
    d->seconds = 315576000001LL;
    d->nanos = 0;
    assert_encode_fails(d, "duration 315576000001s 0ns");
    FREE_PB(d);
}
END_TEST

static void assert_bytes(const char *b64, const char *expect, size_t len)
{
    uint8_t *out;
    size_t n;
    keel_error err;
    ck_assert_msg(keel_base64_decode(b64, strlen(b64), &out, &n, &err) == KEEL_OK, "%s: %s", b64,
                  err.message);
    ck_assert_uint_eq(n, len);
    ck_assert(len == 0 ? out == NULL : memcmp(out, expect, len) == 0);
    free(out);
}

START_TEST(base64_variants)
{
    /* RFC 4648 section 10 */
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *b = keel_base64_encode((const uint8_t *)plain[i], strlen(plain[i]));
        ck_assert_str_eq(b, coded[i]);
        free(b);
        assert_bytes(coded[i], plain[i], strlen(plain[i]));
    }
    assert_bytes("Zg", "f", 1);
    assert_bytes("Zm8", "fo", 2);
    assert_bytes("Zm9vYg", "foob", 4);
    assert_bytes("+/+/", "\xfb\xff\xbf", 3);
    assert_bytes("-_-_", "\xfb\xff\xbf", 3);
    assert_bytes("-_8", "\xfb\xff", 2);
    assert_bytes("-_8=", "\xfb\xff", 2);

    static const char *bad[] = {"Z", "Zg=", "Zg===", "Zm9v!", "Zg==Zg==", "Zm 9v", "=", "Zm9vY"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *out = (uint8_t *)1;
        size_t n = 99;
        keel_error err;
        ck_assert_msg(keel_base64_decode(bad[i], strlen(bad[i]), &out, &n, &err) == KEEL_EINVAL,
                      "accepted %s", bad[i]);
        ck_assert_ptr_null(out);
        ck_assert_uint_eq(n, 0);
        ck_assert_ptr_nonnull(strstr(err.message, "not base64"));
    }

    /* Through protojson: a BytesValue is its base64; every byte value survives. */
    Google__Protobuf__BytesValue *v = mk(&google__protobuf__bytes_value__descriptor);
    v->value.len = 256;
    v->value.data = malloc(256);
    for (int i = 0; i < 256; i++)
        v->value.data[i] = (uint8_t)i;
    free(assert_round_trip(v));
    FREE_PB(v);
    Google__Protobuf__BytesValue *u = (Google__Protobuf__BytesValue *)decode_ok(
        &google__protobuf__bytes_value__descriptor, "\"-_-_\"");
    ck_assert_uint_eq(u->value.len, 3);
    ck_assert_int_eq(u->value.data[0], 0xfb);
    FREE_PB(u);
}
END_TEST

static int64_t int64_of(const char *json)
{
    Google__Protobuf__Int64Value *v =
        (Google__Protobuf__Int64Value *)decode_ok(&google__protobuf__int64_value__descriptor, json);
    int64_t x = v->value;
    char *back = encode_ok(v);
    char expect[32];
    snprintf(expect, sizeof expect, "\"%lld\"", (long long)x);
    ck_assert_str_eq(back, expect); /* always written as a string */
    free(back);
    FREE_PB(v);
    return x;
}

START_TEST(integers_at_their_limits)
{
    ck_assert_int_eq(int64_of("\"-9223372036854775808\""), INT64_MIN);
    ck_assert_int_eq(int64_of("\"9223372036854775807\""), INT64_MAX);
    ck_assert_int_eq(int64_of("\"-0\""), 0);
    ck_assert_int_eq(int64_of("42"), 42);
    ck_assert_int_eq(int64_of("-9007199254740991"), -9007199254740991LL);
    ck_assert_int_eq(int64_of("1e3"), 1000);
    const ProtobufCMessageDescriptor *i64 = &google__protobuf__int64_value__descriptor;
    assert_decode_fails(i64, "\"9223372036854775808\"", "9223372036854775808 is out of range");
    assert_decode_fails(i64, "\"-9223372036854775809\"", "-9223372036854775809 is out of range");
    assert_decode_fails(i64, "9007199254740993", "integer 9007199254740992 is too large");
    assert_decode_fails(i64, "\"1e3\"", "expected an integer, got \"1e3\"");
    assert_decode_fails(i64, "\" 1\"", "expected an integer");
    assert_decode_fails(i64, "\"1.0\"", "expected an integer");
    assert_decode_fails(i64, "\"\"", "expected an integer");
    assert_decode_fails(i64, "true", "expected an integer, got a boolean");

    Google__Protobuf__UInt64Value *u = (Google__Protobuf__UInt64Value *)decode_ok(
        &google__protobuf__uint64_value__descriptor, "\"18446744073709551615\"");
    ck_assert_uint_eq(u->value, UINT64_MAX);
    char *json = encode_ok(u);
    ck_assert_str_eq(json, "\"18446744073709551615\"");
    free(json);
    FREE_PB(u);
    const ProtobufCMessageDescriptor *u64 = &google__protobuf__uint64_value__descriptor;
    assert_decode_fails(u64, "\"18446744073709551616\"", "integer 18446744073709551616 is out");
    assert_decode_fails(u64, "-1", "-1 is out of range for uint64");

    const ProtobufCMessageDescriptor *i32 = &google__protobuf__int32_value__descriptor;
    Google__Protobuf__Int32Value *v =
        (Google__Protobuf__Int32Value *)decode_ok(i32, "\"-2147483648\"");
    ck_assert_int_eq(v->value, INT32_MIN);
    json = encode_ok(v);
    ck_assert_str_eq(json, "-2147483648"); /* 32-bit integers are numbers */
    free(json);
    FREE_PB(v);
    assert_decode_fails(i32, "2147483648", "2147483648 is out of range for int32");
    assert_decode_fails(&google__protobuf__uint32_value__descriptor, "4294967296",
                        "4294967296 is out of range for uint32");
    Google__Protobuf__UInt32Value *w = (Google__Protobuf__UInt32Value *)decode_ok(
        &google__protobuf__uint32_value__descriptor, "4294967295");
    ck_assert_uint_eq(w->value, UINT32_MAX);
    FREE_PB(w);
}
END_TEST

START_TEST(floats_and_their_special_values)
{
    const ProtobufCMessageDescriptor *dd = &google__protobuf__double_value__descriptor;
    const ProtobufCMessageDescriptor *fd = &google__protobuf__float_value__descriptor;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"1.5", "1.5"},
        {"\"2.5\"", "2.5"},
        {"\"NaN\"", "\"NaN\""},
        {"\"Infinity\"", "\"Infinity\""},
        {"\"-Infinity\"", "\"-Infinity\""},
        {"-0.1", "-0.1"},
        {"1e300", "1e+300"},
        {"0.30000000000000004", "0.30000000000000004"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ProtobufCMessage *m = decode_ok(dd, cases[i].in);
        char *json = encode_ok(m);
        ck_assert_str_eq(json, cases[i].out);
        free(json);
        FREE_PB(m);
    }
    Google__Protobuf__FloatValue *f = (Google__Protobuf__FloatValue *)decode_ok(fd, "0.1");
    ck_assert(f->value == 0.1f);
    char *json = encode_ok(f);
    ck_assert_str_eq(json, "0.1"); /* not 0.10000000149011612 */
    free(json);
    FREE_PB(f);
    assert_decode_fails(fd, "1e39", "number 1e+39 is out of range for float");
    assert_decode_fails(dd, "1e999",
                        "the JSON text is not valid JSON: at byte 0 (the top level): the number "
                        "1e999 is out of range");
    assert_decode_fails(dd, "\"nan\"", "expected a number, got \"nan\"");
    assert_decode_fails(dd, "\"0x10\"", "expected a number");
    assert_decode_fails(dd, "\"1e999\"", "number 1e999 is out of range");
    assert_decode_fails(dd, "[]", "expected a number, got an array");
}
END_TEST

START_TEST(enums_by_name_short_name_and_number)
{
    static const struct {
        const char *json;
        int type;
    } cases[] = {
        {"\"EVENT_TYPE_TIMER_FIRED\"", ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_FIRED)},
        {"\"TimerFired\"", ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_FIRED)},
        {"\"timerFired\"", ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_FIRED)},
        {"\"TIMER_FIRED\"", ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_FIRED)},
        {"\"WorkflowExecutionStarted\"", ENUM(EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)},
        {"\"Unspecified\"", 0},
        {"18", ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_FIRED)},
        {"\"EVENT_TYPE_FROM_A_NEWER_SERVER\"", 0}, /* unknown names are ignored */
        {"\"\"", 0},
        {"-5", -5}, /* unknown numbers are kept */
        {"2147483647", 2147483647},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"eventType\":%s,\"eventId\":\"3\"}", cases[i].json);
        pb_event *e =
            (pb_event *)decode_ok(&temporal__api__history__v1__history_event__descriptor, json);
        ck_assert_msg((int)e->event_type == cases[i].type, "%s read as %d", cases[i].json,
                      (int)e->event_type);
        ck_assert_int_eq(e->event_id, 3);
        FREE_PB(e);
    }
    /* Short names of other enums: the prefix is each enum's own type name. */
    pb_history *h = (pb_history *)decode_ok(
        HISTORY, "{\"events\":[{\"activityTaskFailedEventAttributes\":{\"retryState\":"
                 "\"RetryPolicyNotSet\",\"failure\":{\"timeoutFailureInfo\":{\"timeoutType\":"
                 "\"ScheduleToStart\"}}}}]}");
    Temporal__Api__History__V1__ActivityTaskFailedEventAttributes *a =
        h->events[0]->activity_task_failed_event_attributes;
    ck_assert_int_eq(a->retry_state, ENUM(RETRY_STATE__RETRY_STATE_RETRY_POLICY_NOT_SET));
    ck_assert_int_eq(a->failure->timeout_failure_info->timeout_type,
                     ENUM(TIMEOUT_TYPE__TIMEOUT_TYPE_SCHEDULE_TO_START));
    FREE_PB(h);

    /* In a list, an unknown name drops that element only. */
    Temporal__Api__History__V1__WorkflowTaskStartedEventAttributes *w =
        (Temporal__Api__History__V1__WorkflowTaskStartedEventAttributes *)decode_ok(
            &temporal__api__history__v1__workflow_task_started_event_attributes__descriptor,
            "{\"suggestContinueAsNewReasons\":[\"SUGGEST_CONTINUE_AS_NEW_REASON_FROM_THE_FUTURE\","
            "\"HistorySizeTooLarge\",7]}");
    ck_assert_uint_eq(w->n_suggest_continue_as_new_reasons, 2);
    ck_assert_int_eq(
        w->suggest_continue_as_new_reasons[0],
        ENUM(
            SUGGEST_CONTINUE_AS_NEW_REASON__SUGGEST_CONTINUE_AS_NEW_REASON_HISTORY_SIZE_TOO_LARGE));
    ck_assert_int_eq(w->suggest_continue_as_new_reasons[1], 7);
    char *json = assert_round_trip(w);
    ck_assert_str_eq(json, "{\"suggestContinueAsNewReasons\":[\"SUGGEST_CONTINUE_AS_NEW_REASON_"
                           "HISTORY_SIZE_TOO_LARGE\",7]}");
    free(json);
    FREE_PB(w);
}
END_TEST

START_TEST(unknown_fields_are_ignored_and_proto_names_accepted)
{
    pb_history *h = (pb_history *)decode_ok(
        HISTORY,
        "{\"nextPageToken\":\"abc\",\"events\":[{\"event_id\":\"4\",\"futureScalar\":1,"
        "\"futureObject\":{\"a\":[1,{\"b\":null}]},\"futureList\":[[],{}],\"event_type\":"
        "\"EVENT_TYPE_TIMER_STARTED\",\"timer_started_event_attributes\":{\"timer_id\":\"t\","
        "\"startToFireTimeout\":\"2s\",\"unknown\":\"x\"},\"eventTime\":null}],\"x\":null}");
    ck_assert_uint_eq(h->n_events, 1);
    pb_event *e = h->events[0];
    ck_assert_int_eq(e->event_id, 4);
    ck_assert_int_eq(e->event_type, ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_STARTED));
    ck_assert_str_eq(e->timer_started_event_attributes->timer_id, "t");
    ck_assert_int_eq(e->timer_started_event_attributes->start_to_fire_timeout->seconds, 2);
    ck_assert_ptr_null(e->event_time);
    ck_assert_uint_eq(e->base.n_unknown_fields, 0);
    FREE_PB(h);
}
END_TEST

START_TEST(field_names_follow_the_protos)
{
    /* `namespace` is namespace_ in C, "namespace" in the descriptor and in JSON. */
    Temporal__Api__Errordetails__V1__NamespaceNotFoundFailure *nf =
        mk(&temporal__api__errordetails__v1__namespace_not_found_failure__descriptor);
    nf->namespace_ = dup("procurement");
    char *json = assert_round_trip(nf);
    ck_assert_str_eq(json, "{\"namespace\":\"procurement\"}");
    free(json);
    FREE_PB(nf);

    /* Every field of the history's messages gets protoc's JSON name, which reads back to it. */
    pb_history *h = rich_history();
    cJSON *j = keel_protojson_to_cjson(&h->base, NULL);
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "events"), 0),
        "workflowExecutionStartedEventAttributes");
    ck_assert_ptr_nonnull(attrs);
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(attrs, "originalExecutionRunId"));
    ck_assert_ptr_nonnull(
        cJSON_GetObjectItemCaseSensitive(attrs, "workflowExecutionExpirationTime"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(attrs, "original_execution_run_id"));
    cJSON_Delete(j);
    FREE_PB(h);
}
END_TEST

START_TEST(presence_follows_the_wire)
{
    /* A oneof member at its default is still set: written, read back, packed the same. */
    Temporal__Api__Common__V1__ResetOptions *r =
        mk(&temporal__api__common__v1__reset_options__descriptor);
    r->target_case = TEMPORAL__API__COMMON__V1__RESET_OPTIONS__TARGET_WORKFLOW_TASK_ID;
    r->workflow_task_id = 0;
    char *json = assert_round_trip(r);
    ck_assert_str_eq(json, "{\"workflowTaskId\":\"0\"}");
    free(json);
    r->target_case = TEMPORAL__API__COMMON__V1__RESET_OPTIONS__TARGET_FIRST_WORKFLOW_TASK;
    r->first_workflow_task = mk(&google__protobuf__empty__descriptor);
    json = assert_round_trip(r);
    ck_assert_str_eq(json, "{\"firstWorkflowTask\":{}}");
    free(json);
    FREE_PB(r);

    Temporal__Api__Common__V1__WorkerSelector *w =
        mk(&temporal__api__common__v1__worker_selector__descriptor);
    w->selector_case = TEMPORAL__API__COMMON__V1__WORKER_SELECTOR__SELECTOR_WORKER_INSTANCE_KEY;
    w->worker_instance_key = dup("");
    json = assert_round_trip(w);
    ck_assert_str_eq(json, "{\"workerInstanceKey\":\"\"}");
    free(json);
    FREE_PB(w);

    /* Defaults are left out; an empty message that is there is {}. */
    pb_event *e = mk(&temporal__api__history__v1__history_event__descriptor);
    json = assert_round_trip(e);
    ck_assert_str_eq(json, "{}");
    free(json);
    e->event_time = ts(0, 0);
    json = assert_round_trip(e);
    ck_assert_str_eq(json, "{\"eventTime\":\"1970-01-01T00:00:00Z\"}");
    free(json);
    FREE_PB(e);
}
END_TEST

START_TEST(maps_with_integer_keys)
{
    Temporal__Api__Taskqueue__V1__TaskQueueVersionInfo *v =
        (Temporal__Api__Taskqueue__V1__TaskQueueVersionInfo *)decode_ok(
            &temporal__api__taskqueue__v1__task_queue_version_info__descriptor,
            "{\"typesInfo\":{\"1\":{\"pollers\":[{\"identity\":\"w1\"}]},\"-2\":{}}}");
    ck_assert_uint_eq(v->n_types_info, 2);
    ck_assert_int_eq(v->types_info[0]->key, 1);
    ck_assert_str_eq(v->types_info[0]->value->pollers[0]->identity, "w1");
    ck_assert_int_eq(v->types_info[1]->key, -2);
    char *json = assert_round_trip(v);
    ck_assert_str_eq(json,
                     "{\"typesInfo\":{\"1\":{\"pollers\":[{\"identity\":\"w1\"}]},\"-2\":{}}}");
    free(json);
    FREE_PB(v);
    const ProtobufCMessageDescriptor *d =
        &temporal__api__taskqueue__v1__task_queue_version_info__descriptor;
    assert_decode_fails(d, "{\"typesInfo\":{\"one\":{}}}",
                        "typesInfo[\"one\"]: expected an integer, got \"one\"");
    assert_decode_fails(d, "{\"typesInfo\":{\"3000000000\":{}}}",
                        "typesInfo[\"3000000000\"]: 3000000000 is out of range for int32");
    assert_decode_fails(d, "{\"typesInfo\":{\"1\":null}}",
                        "typesInfo[\"1\"]: null is not allowed as a map value");

    /* The wire may repeat a key (found by fuzz_history_bin): JSON names it once, the last. */
    v = (Temporal__Api__Taskqueue__V1__TaskQueueVersionInfo *)decode_ok(
        d, "{\"typesInfo\":{\"1\":{\"pollers\":[{\"identity\":\"first\"}]},\"2\":{},"
           "\"3\":{\"pollers\":[{\"identity\":\"last\"}]}}}");
    v->types_info[2]->key = 1;
    keel_error err;
    char *text = keel_protojson_encode(&v->base, false, &err);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text,
                     "{\"typesInfo\":{\"2\":{},\"1\":{\"pollers\":[{\"identity\":\"last\"}]}}}");
    free(text);
    FREE_PB(v);
}
END_TEST

static Google__Protobuf__Any *any_of(const char *url, const ProtobufCMessage *m)
{
    Google__Protobuf__Any *a = mk(&google__protobuf__any__descriptor);
    a->type_url = dup(url);
    a->value.len = protobuf_c_message_get_packed_size(m);
    a->value.data = malloc(a->value.len + 1);
    protobuf_c_message_pack(m, a->value.data);
    return a;
}

static const ProtobufCMessageDescriptor *resolve_nothing(const char *name, void *ctx)
{
    (void)name;
    (*(int *)ctx)++;
    return NULL;
}

START_TEST(any_inline_value_form_and_opaque)
{
    /* A type the built-in resolver knows: its fields inline after "@type". */
    Temporal__Api__Errordetails__V1__NamespaceNotFoundFailure *nf =
        mk(&temporal__api__errordetails__v1__namespace_not_found_failure__descriptor);
    nf->namespace_ = dup("default");
    Google__Protobuf__Any *a = any_of(
        "type.googleapis.com/temporal.api.errordetails.v1.NamespaceNotFoundFailure", &nf->base);
    char *json = assert_round_trip(a);
    ck_assert_str_eq(json, "{\"@type\":\"type.googleapis.com/temporal.api.errordetails.v1."
                           "NamespaceNotFoundFailure\",\"namespace\":\"default\"}");
    free(json);

    /* A custom resolver that knows nothing: the same Any is opaque, and still round trips. */
    int calls = 0;
    keel_protojson_options opts = {.resolve = resolve_nothing, .resolve_ctx = &calls};
    keel_error err;
    cJSON *j = keel_protojson_to_cjson_with(&a->base, &opts, &err);
    ck_assert_int_eq(calls, 1);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "value")->valuestring, "Cgdk"
                                                                                "ZWZhdWx0");
    ProtobufCMessage *back;
    ck_assert_int_eq(
        keel_protojson_from_cjson_with(&google__protobuf__any__descriptor, j, &opts, &back, &err),
        KEEL_OK);
    assert_same_bytes(a, back);
    FREE_PB(back);
    cJSON_Delete(j);
    FREE_PB(a);
    FREE_PB(nf);

    /* A well-known type: {"@type", "value": its JSON}. */
    pb_duration *d = dur(1, 500000000);
    a = any_of("type.googleapis.com/google.protobuf.Duration", &d->base);
    json = assert_round_trip(a);
    ck_assert_str_eq(json, "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\","
                           "\"value\":\"1.500s\"}");
    free(json);
    FREE_PB(a);
    FREE_PB(d);

    /* A type nobody here knows: {"@type", "value": base64}. */
    a = mk(&google__protobuf__any__descriptor);
    a->type_url = dup("type.googleapis.com/acme.procurement.v1.Secret");
    a->value.len = 3;
    a->value.data = malloc(3);
    memcpy(a->value.data, "\x01\x02\x03", 3);
    json = assert_round_trip(a);
    ck_assert_str_eq(json, "{\"@type\":\"type.googleapis.com/acme.procurement.v1.Secret\","
                           "\"value\":\"AQID\"}");
    free(json);
    FREE_PB(a);

    const ProtobufCMessageDescriptor *ad = &google__protobuf__any__descriptor;
    ProtobufCMessage *empty = decode_ok(ad, "{}");
    free(assert_round_trip(empty));
    FREE_PB(empty);
    assert_decode_fails(ad, "{\"@type\":\"type.googleapis.com/acme.X\",\"field\":1}",
                        "type \"type.googleapis.com/acme.X\" is not known here");
    assert_decode_fails(ad, "{\"namespace\":\"x\"}", "missing \"@type\"");
    assert_decode_fails(ad, "{\"@type\":7}", "@type: expected a string, got a number");
    assert_decode_fails(ad, "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\"}",
                        "missing \"value\"");
    assert_decode_fails(ad,
                        "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":1}",
                        "value: expected a duration string");
}
END_TEST

START_TEST(protocol_message_carries_an_update_request)
{
    Temporal__Api__Update__V1__Request *req = mk(&temporal__api__update__v1__request__descriptor);
    req->meta = mk(&temporal__api__update__v1__meta__descriptor);
    req->meta->update_id = dup("u-1");
    req->input = mk(&temporal__api__update__v1__input__descriptor);
    req->input->name = dup("approve");
    req->input->args = payloads("{\"by\":\"alice\"}");
    Temporal__Api__Protocol__V1__Message *pm =
        mk(&temporal__api__protocol__v1__message__descriptor);
    pm->id = dup("u-1/request");
    pm->protocol_instance_id = dup("u-1");
    pm->sequencing_id_case = TEMPORAL__API__PROTOCOL__V1__MESSAGE__SEQUENCING_ID_EVENT_ID;
    pm->event_id = 5;
    pm->body = any_of("type.googleapis.com/temporal.api.update.v1.Request", &req->base);
    char *json = assert_round_trip(pm);
    ck_assert_str_eq(json, "{\"id\":\"u-1/request\",\"protocolInstanceId\":\"u-1\",\"eventId\":"
                           "\"5\",\"body\":{\"@type\":\"type.googleapis.com/temporal.api.update."
                           "v1.Request\",\"meta\":{\"updateId\":\"u-1\"},\"input\":{\"name\":"
                           "\"approve\",\"args\":{\"payloads\":[{\"metadata\":{\"encoding\":"
                           "\"anNvbi9wbGFpbg==\"},\"data\":\"eyJieSI6ImFsaWNlIn0=\"}]}}}}");
    free(json);
    FREE_PB(pm);
    FREE_PB(req);
}
END_TEST

/* keel_protojson_decode reads the text straight into the message; keel_json_parse +
 * keel_protojson_from_cjson go through a tree. Both take the same texts, with the same result,
 * and refuse the same ones (fuzz_history_json checks the same on random inputs). */
static void decoders_agree(const ProtobufCMessageDescriptor *d, const char *json, bool ok)
{
    ProtobufCMessage *a = NULL, *b = NULL;
    keel_error e1, e2;
    int rc1 = keel_protojson_decode(d, json, strlen(json), &a, &e1);
    cJSON *tree = NULL;
    int rc2 = keel_json_parse(json, strlen(json), 0, NULL, &tree, &e2);
    if (rc2 == KEEL_OK)
        rc2 = keel_protojson_from_cjson(d, tree, &b, &e2);
    cJSON_Delete(tree);
    ck_assert_msg((rc1 == KEEL_OK) == ok, "%s: streaming %s (%s)", json, rc1 ? "refused" : "took",
                  rc1 ? e1.message : "");
    ck_assert_msg((rc2 == KEEL_OK) == ok, "%s: tree %s (%s)", json, rc2 ? "refused" : "took",
                  rc2 ? e2.message : "");
    /* The arena decode: the same answer, the same error text, the same message. */
    keel_arena *arena = keel_arena_new();
    ck_assert_ptr_nonnull(arena);
    ProtobufCMessage *c = (ProtobufCMessage *)1;
    keel_error e3;
    int rc3 = keel_protojson_decode_arena(d, json, strlen(json), arena, &c, &e3);
    ck_assert_int_eq(rc3, rc1);
    if (rc1 != KEEL_OK) {
        ck_assert_ptr_null(c);
        ck_assert_str_eq(e3.message, e1.message);
    }
    if (!ok) {
        keel_arena_free(arena);
        return;
    }
    size_t n1, n2, n3;
    uint8_t *p1 = packed(a, &n1), *p2 = packed(b, &n2), *p3 = packed(c, &n3);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(p1, p2, n1);
    ck_assert_uint_eq(n1, n3);
    ck_assert_mem_eq(p1, p3, n1);
    free(p1);
    free(p2);
    free(p3);
    FREE_PB(a);
    FREE_PB(b);
    keel_arena_free(arena);
}

START_TEST(streaming_decoder_matches_the_tree)
{
    static const struct {
        const char *json;
        bool ok;
    } cases[] = {
        {"  {\"events\":[{\"eventId\":\"1\"},{\"eventId\":2,\"eventType\":\"TimerFired\"}]} ",
         true},
        {"{\"events\":[{\"\\u0065ventId\":\"5\"}]}", true},
        {"{\"events\":[{\"eventId\":\"1\",\"\\u0065ventId\":\"2\"}]}", false},
        {"{\"events\":[{\"eventId\":\"1\",\"event_id\":\"2\"}]}", false},
        {"{\"events\":[{\"newField\":{\"a\":1,\"b\":[true,null,{\"c\":\"d\"}]}}]}", true},
        {"{\"events\":[{\"newField\":{\"a\":1,\"a\":2}}]}", false},
        {"{\"events\":[{\"newField\":{\"a\":1,\"\\u0061\":2}}]}", false},
        {"{\"events\":[{\"newField\":[1,2,\"\\ud800\"]}]}", false},
        {"{\"events\":[{\"newField\":01}]}", false},
        {"{\"events\":[{\"newField\":1,\"newField\":1}]}", false},
        {"{\"events\":null}", true},
        {"{\"events\":[null]}", false},
        {"{\"events\":[{\"eventType\":\"EVENT_TYPE_FROM_THE_FUTURE\",\"eventId\":\"3\"}]}", true},
        {"{\"events\":[{\"eventId\":1e2,\"eventTime\":\"2026-11-23T09:42:09.123Z\"}]}", true},
        {"{\"events\":[{\"workflowExecutionSignaledEventAttributes\":{\"input\":{\"payloads\":[{"
         "\"metadata\":{\"encoding\":\"YQ==\",\"e\":\"\"},\"data\":\"e30=\"}]}}}]}",
         true},
        {"{\"events\":[{\"workflowExecutionSignaledEventAttributes\":{\"input\":{\"payloads\":[{"
         "\"metadata\":{\"encoding\":\"YQ==\",\"\\u0065ncoding\":\"\"}}]}}}]}",
         false},
        {"{\"events\":[{\"timerStartedEventAttributes\":{\"startToFireTimeout\":\"1.5s\"}}]}",
         true},
        {"{\"events\":[{\"timerStartedEventAttributes\":{\"startToFireTimeout\":[1]}}]}", false},
        {"{\"events\":[{\"timerStartedEventAttributes\":{\"startToFireTimeout\":[}}]}", false},
        {"{\"events\":[]}x", false},
        {"{\"events\":[],}", false},
        {"{\"events\":[1,]}", false},
        {"[", false},
        {"{\"events\":[{}]", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        decoders_agree(HISTORY, cases[i].json, cases[i].ok);

    /* An Any's "@type" may come after its fields, and its span is checked like the rest. */
    const ProtobufCMessageDescriptor *pm = &temporal__api__protocol__v1__message__descriptor;
    decoders_agree(
        pm,
        "{\"protocolInstanceId\":\"u1\",\"body\":{\"meta\":{\"updateId\":\"u1\"},"
        "\"@type\":\"type.googleapis.com/temporal.api.update.v1.Request\"},\"id\":\"m\"}",
        true);
    decoders_agree(pm,
                   "{\"body\":{\"meta\":{\"updateId\":\"u1\",\"updateId\":\"u2\"},"
                   "\"@type\":\"type.googleapis.com/temporal.api.update.v1.Request\"}}",
                   false);
    decoders_agree(&google__protobuf__any__descriptor,
                   "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"2s\"}",
                   true);
    decoders_agree(TIMESTAMP, "\"2026-11-23T09:42:09Z\"", true);
    decoders_agree(TIMESTAMP, "{}", false);
    decoders_agree(&google__protobuf__int64_value__descriptor, "\"-9\"", true);
    decoders_agree(&google__protobuf__int64_value__descriptor, "null", false);
}
END_TEST

/* Every prefix of a valid history fails cleanly (no crash, no leak under ASan), and large
 * inputs take linear time. */
START_TEST(truncated_and_large_inputs)
{
    size_t len;
    char *text = read_fixture("history_cli.json", &len);
    for (size_t n = 0; n < len - 2; n++) {
        ProtobufCMessage *m = (ProtobufCMessage *)&m;
        keel_error err;
        ck_assert_msg(keel_protojson_decode(HISTORY, text, n, &m, &err) == KEEL_EINVAL,
                      "a %zu-byte prefix decoded", n);
        ck_assert_ptr_null(m);
    }
    free(text);

    size_t events = 200000, cap = events * 64 + 32, o = 0;
    char *big = malloc(cap);
    o += (size_t)snprintf(big + o, cap - o, "{\"events\":[");
    for (size_t i = 0; i < events; i++)
        o += (size_t)snprintf(big + o, cap - o,
                              "%s{\"eventId\":\"%zu\",\"eventType\":\"TimerFired\"}", i ? "," : "",
                              i + 1);
    snprintf(big + o, cap - o, "]}");
    pb_history *h = (pb_history *)decode_ok(HISTORY, big);
    ck_assert_uint_eq(h->n_events, events);
    ck_assert_int_eq(h->events[events - 1]->event_id, (int64_t)events);
    ck_assert_int_eq(h->events[events - 1]->event_type, ENUM(EVENT_TYPE__EVENT_TYPE_TIMER_FIRED));
    char *json = encode_ok(h);
    ck_assert_uint_gt(strlen(json), events * 40);
    free(json);
    FREE_PB(h);

    o = (size_t)snprintf(big, cap, "{\"fields\":{");
    for (size_t i = 0; i < events; i++)
        o += (size_t)snprintf(big + o, cap - o, "%s\"k%zu\":{\"data\":\"AQID\"}", i ? "," : "", i);
    snprintf(big + o, cap - o, "}}");
    Temporal__Api__Common__V1__Memo *memo = (Temporal__Api__Common__V1__Memo *)decode_ok(
        &temporal__api__common__v1__memo__descriptor, big);
    ck_assert_uint_eq(memo->n_fields, events);
    ck_assert_str_eq(memo->fields[events - 1]->key, "k199999");
    FREE_PB(memo);
    free(big);
}
END_TEST

Suite *protojson_suite(void)
{
    Suite *s = suite_create("protojson");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rich_history_round_trips_byte_for_byte);
    tcase_add_test(tc, pretty_output_is_the_same_json);
    tcase_add_test(tc, cli_history_fixture_decodes);
    tcase_add_test(tc, short_enum_name_fixture_decodes);
    tcase_add_test(tc, decode_errors_name_the_json_path);
    tcase_add_test(tc, encode_errors_name_the_field);
    tcase_add_test(tc, long_paths_are_cut);
    tcase_add_test(tc, nesting_is_limited_both_ways);
    tcase_add_test(tc, timestamps);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, base64_variants);
    tcase_add_test(tc, integers_at_their_limits);
    tcase_add_test(tc, floats_and_their_special_values);
    tcase_add_test(tc, enums_by_name_short_name_and_number);
    tcase_add_test(tc, unknown_fields_are_ignored_and_proto_names_accepted);
    tcase_add_test(tc, field_names_follow_the_protos);
    tcase_add_test(tc, presence_follows_the_wire);
    tcase_add_test(tc, maps_with_integer_keys);
    tcase_add_test(tc, any_inline_value_form_and_opaque);
    tcase_add_test(tc, protocol_message_carries_an_update_request);
    tcase_add_test(tc, streaming_decoder_matches_the_tree);
    tcase_add_test(tc, truncated_and_large_inputs);
    suite_add_tcase(s, tc);
    return s;
}
