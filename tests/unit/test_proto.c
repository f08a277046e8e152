/* src/proto and the generated code: round trips and hostile bytes. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "converter/protojson.h"
#include "proto/depth.h"
#include "proto/proto.h"

START_TEST(duration_conversions)
{
    Google__Protobuf__Duration d;
    keel_proto_duration_set(&d, 72LL * 3600 * 1000 + 250);
    ck_assert_int_eq(d.seconds, 259200);
    ck_assert_int_eq(d.nanos, 250000000);
    ck_assert_int_eq(keel_proto_duration_ms(&d), 72LL * 3600 * 1000 + 250);
    ck_assert_int_eq(keel_proto_duration_ms(NULL), 0);
    d.seconds = INT64_MAX;
    ck_assert_int_eq(keel_proto_duration_ms(&d), INT64_MAX);
    /* Hostile values at the edges saturate instead of overflowing (UBSan checks this). */
    d.seconds = INT64_MAX / 1000;
    d.nanos = 999999999;
    ck_assert_int_eq(keel_proto_duration_ms(&d), INT64_MAX);
    d.seconds = INT64_MIN / 1000;
    d.nanos = -999999999;
    ck_assert_int_eq(keel_proto_duration_ms(&d), INT64_MIN);
    d.seconds = 1;
    d.nanos = INT32_MAX; /* out of its documented range: still no overflow */
    ck_assert_int_eq(keel_proto_duration_ms(&d), 1000 + INT32_MAX / 1000000);
}
END_TEST

START_TEST(system_info_round_trip_skips_unknown_fields)
{
    Temporal__Api__Workflowservice__V1__GetSystemInfoResponse__Capabilities caps =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_RESPONSE__CAPABILITIES__INIT;
    caps.supports_schedules = 1;
    Temporal__Api__Workflowservice__V1__GetSystemInfoResponse r =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_RESPONSE__INIT;
    r.server_version = "1.31.2";
    r.capabilities = &caps;
    size_t n = temporal__api__workflowservice__v1__get_system_info_response__get_packed_size(&r);
    uint8_t *buf = malloc(n + 8);
    temporal__api__workflowservice__v1__get_system_info_response__pack(&r, buf);
    /* A newer server adds field 999 (varint 7): older readers must skip it. */
    size_t m = n;
    buf[m++] = 0xb8; /* (999 << 3 | 0) = 7992 -> varint b8 3e */
    buf[m++] = 0x3e;
    buf[m++] = 0x07;
    Temporal__Api__Workflowservice__V1__GetSystemInfoResponse *back =
        temporal__api__workflowservice__v1__get_system_info_response__unpack(NULL, m, buf);
    ck_assert_ptr_nonnull(back);
    ck_assert_str_eq(back->server_version, "1.31.2");
    ck_assert(back->capabilities->supports_schedules);
    temporal__api__workflowservice__v1__get_system_info_response__free_unpacked(back, NULL);

    /* Every truncation of the message either fails cleanly or decodes: never crashes. */
    for (size_t cut = 0; cut < n; cut++) {
        back = temporal__api__workflowservice__v1__get_system_info_response__unpack(NULL, cut, buf);
        if (back)
            temporal__api__workflowservice__v1__get_system_info_response__free_unpacked(back, NULL);
    }
    /* Cutting inside the version string must fail. */
    ck_assert_ptr_null(
        temporal__api__workflowservice__v1__get_system_info_response__unpack(NULL, 4, buf));
    free(buf);
}
END_TEST

START_TEST(enum_names_come_from_the_descriptor)
{
    ck_assert_str_eq(
        keel_proto_enum_name(&temporal__api__enums__v1__indexed_value_type__descriptor, 2),
        "INDEXED_VALUE_TYPE_KEYWORD");
    ck_assert_ptr_null(
        keel_proto_enum_name(&temporal__api__enums__v1__indexed_value_type__descriptor, 4242));
    char *s = keel_proto_strdup(NULL);
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

/* ---- the depth check before unpacking (proto/depth.h) ---- */

#define FAILURE &temporal__api__failure__v1__failure__descriptor
#define HISTORY &temporal__api__history__v1__history__descriptor

typedef struct bytes {
    uint8_t *data;
    size_t len;
} bytes;

static size_t varint_size(size_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

static uint8_t *put_varint(uint8_t *p, size_t v)
{
    for (; v >= 0x80; v >>= 7)
        *p++ = (uint8_t)(v | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

/* A Failure `depth` messages deep (message "x", then its cause), written without recursion. */
static bytes failure_chain(int depth)
{
    size_t *size = calloc((size_t)depth, sizeof *size);
    ck_assert_ptr_nonnull(size);
    for (int i = depth - 1; i >= 0; i--)
        size[i] = 3 + (i + 1 < depth ? 1 + varint_size(size[i + 1]) + size[i + 1] : 0);
    bytes b = {malloc(size[0]), size[0]};
    uint8_t *p = b.data;
    for (int i = 0; i < depth; i++) {
        *p++ = 0x0a; /* message = 1 */
        *p++ = 1;
        *p++ = 'x';
        if (i + 1 < depth) {
            *p++ = 0x22; /* cause = 4 */
            p = put_varint(p, size[i + 1]);
        }
    }
    ck_assert_uint_eq((size_t)(p - b.data), b.len);
    free(size);
    return b;
}

/* Field `field` of `name`'s descriptor holding inner (consumed): the bytes of one field. */
static bytes wrap(const ProtobufCMessageDescriptor *d, const char *name, bytes inner)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
    ck_assert_ptr_nonnull(f);
    bytes b = {malloc(5 + 10 + inner.len), 0};
    uint8_t *p = put_varint(b.data, (size_t)f->id << 3 | 2);
    p = put_varint(p, inner.len);
    memcpy(p, inner.data, inner.len);
    b.len = (size_t)(p - b.data) + inner.len;
    free(inner.data);
    return b;
}

/* A History of one ActivityTaskFailed event whose failure is `depth` messages deep: the whole
 * nests depth + 3. */
static bytes history_with_failure(int depth)
{
    bytes b = wrap(&temporal__api__history__v1__activity_task_failed_event_attributes__descriptor,
                   "failure", failure_chain(depth));
    b = wrap(&temporal__api__history__v1__history_event__descriptor,
             "activity_task_failed_event_attributes", b);
    return wrap(HISTORY, "events", b);
}

/* A copy in a buffer of exactly len bytes, so that ASan sees any read past it. */
static uint8_t *exact(const void *data, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    if (len)
        memcpy(p, data, len);
    return p;
}

START_TEST(nesting_at_the_limit_passes_and_one_more_is_refused)
{
    keel_error err;
    bool deep;
    bytes ok = failure_chain(KEEL_PROTO_MAX_DEPTH);
    ck_assert_int_eq(keel_proto_check(FAILURE, ok.data, ok.len, KEEL_PROTO_MAX_DEPTH, &deep, &err),
                     KEEL_OK);
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(keel_proto_unpack(FAILURE, ok.data, ok.len, &m, &err), KEEL_OK);
    int n = 0;
    for (const Temporal__Api__Failure__V1__Failure *f = (void *)m; f; f = f->cause)
        n++;
    ck_assert_int_eq(n, KEEL_PROTO_MAX_DEPTH);
    protobuf_c_message_free_unpacked(m, NULL);
    free(ok.data);

    bytes over = failure_chain(KEEL_PROTO_MAX_DEPTH + 1);
    ck_assert_int_eq(
        keel_proto_check(FAILURE, over.data, over.len, KEEL_PROTO_MAX_DEPTH, &deep, &err),
        KEEL_EINVAL);
    ck_assert(deep);
    ck_assert_str_eq(err.message, "temporal.api.failure.v1.Failure nested deeper than 100 "
                                  "messages (at cause.cause.cause.cause.cause.cause...)");
    m = (ProtobufCMessage *)&err; /* must be reset */
    ck_assert_int_eq(keel_proto_unpack(FAILURE, over.data, over.len, &m, &err), KEEL_EINVAL);
    ck_assert_ptr_null(m);
    free(over.data);

    /* A limit below the cap; and a cap above it is the cap. */
    bytes ten = failure_chain(10);
    ck_assert_int_eq(keel_proto_check(FAILURE, ten.data, ten.len, 10, NULL, &err), KEEL_OK);
    ck_assert_int_eq(keel_proto_check(FAILURE, ten.data, ten.len, 9, NULL, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "nested deeper than 9 messages"));
    free(ten.data);
    bytes cap = failure_chain(KEEL_PROTO_MAX_DEPTH + 1);
    ck_assert_int_eq(keel_proto_check(FAILURE, cap.data, cap.len, 1000000, NULL, &err),
                     KEEL_EINVAL);
    free(cap.data);

    /* Inside a history: the levels above the failure count, and the path says where. */
    bytes h = history_with_failure(KEEL_PROTO_MAX_DEPTH - 3);
    ck_assert_int_eq(keel_proto_unpack(HISTORY, h.data, h.len, &m, &err), KEEL_OK);
    protobuf_c_message_free_unpacked(m, NULL);
    free(h.data);
    h = history_with_failure(KEEL_PROTO_MAX_DEPTH - 2);
    ck_assert_int_eq(keel_proto_unpack(HISTORY, h.data, h.len, &m, &err), KEEL_EINVAL);
    ck_assert_str_eq(err.message,
                     "temporal.api.history.v1.History nested deeper than 100 messages (at "
                     "events[0].activity_task_failed_event_attributes.failure.cause.cause.cause..."
                     ")");
    free(h.data);

    /* What broke protobuf-c: 10,000 deep is one linear walk and an error. */
    h = history_with_failure(10000);
    ck_assert_int_eq(keel_proto_unpack(HISTORY, h.data, h.len, &m, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "nested deeper than 100 messages"));
    free(h.data);
}
END_TEST

START_TEST(maps_count_and_bytes_and_unknown_fields_are_not_entered)
{
    keel_error err;
    /* Memo -> map entry -> Payload: three levels. */
    Temporal__Api__Common__V1__Payload pl = TEMPORAL__API__COMMON__V1__PAYLOAD__INIT;
    Temporal__Api__Common__V1__Memo__FieldsEntry entry =
        TEMPORAL__API__COMMON__V1__MEMO__FIELDS_ENTRY__INIT;
    entry.key = "k";
    entry.value = &pl;
    Temporal__Api__Common__V1__Memo__FieldsEntry *entries[] = {&entry, &entry};
    Temporal__Api__Common__V1__Memo memo = TEMPORAL__API__COMMON__V1__MEMO__INIT;
    memo.n_fields = 2;
    memo.fields = entries;
    uint8_t buf[256];
    size_t n = protobuf_c_message_pack(&memo.base, buf);
    const ProtobufCMessageDescriptor *md = &temporal__api__common__v1__memo__descriptor;
    ck_assert_int_eq(keel_proto_check(md, buf, n, 3, NULL, &err), KEEL_OK);
    ck_assert_int_eq(keel_proto_check(md, buf, n, 2, NULL, &err), KEEL_EINVAL);
    ck_assert_str_eq(err.message, "temporal.api.common.v1.Memo nested deeper than 2 messages (at "
                                  "fields[0].value)");

    /* A payload's data and an Any's value are bytes: whatever they hold is not looked into. */
    bytes chain = failure_chain(5000);
    pl.data.data = chain.data;
    pl.data.len = chain.len;
    size_t pn = protobuf_c_message_get_packed_size(&pl.base);
    uint8_t *p = malloc(pn);
    protobuf_c_message_pack(&pl.base, p);
    ck_assert_int_eq(
        keel_proto_check(&temporal__api__common__v1__payload__descriptor, p, pn, 1, NULL, &err),
        KEEL_OK);
    free(p);
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/temporal.api.failure.v1.Failure";
    any.value.data = chain.data;
    any.value.len = chain.len;
    pn = protobuf_c_message_get_packed_size(&any.base);
    p = malloc(pn);
    protobuf_c_message_pack(&any.base, p);
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(keel_proto_unpack(&google__protobuf__any__descriptor, p, pn, &m, &err),
                     KEEL_OK);
    protobuf_c_message_free_unpacked(m, NULL);
    free(p);

    /* An unknown field (999) holding the same bytes: skipped, and kept as protobuf-c keeps it. */
    bytes one = failure_chain(1);
    size_t un = one.len + varint_size(999 << 3 | 2) + varint_size(chain.len) + chain.len;
    p = malloc(un);
    memcpy(p, one.data, one.len);
    uint8_t *q = put_varint(p + one.len, 999 << 3 | 2);
    q = put_varint(q, chain.len);
    memcpy(q, chain.data, chain.len);
    ck_assert_int_eq(keel_proto_unpack(FAILURE, p, un, &m, &err), KEEL_OK);
    ck_assert_uint_eq(m->n_unknown_fields, 1);
    protobuf_c_message_free_unpacked(m, NULL);
    free(p);
    free(one.data);
    free(chain.data);
}
END_TEST

START_TEST(malformed_bytes_are_refused_without_reading_past_them)
{
    static const struct {
        const char *what;
        uint8_t data[8];
        size_t len;
    } cases[] = {
        {"a length runs past the end", {0x0a, 0x05, 'a'}, 3},
        {"a varint is cut short", {0x10, 0x80}, 2},
        {"a field tag is cut short", {0x80}, 1},
        {"a field tag is cut short", {0x88, 0x80, 0x80, 0x80, 0x80, 0x00}, 6},
        {"a field number is 0", {0x02, 0x00}, 2},
        {"a field number is 0", {0x80, 0x80, 0x80, 0x80, 0x10, 0x00}, 6},
        {"groups", {0x0b}, 1},
        {"groups", {0x0c}, 1},
        {"unknown wire type", {0x0e}, 1},
        {"unknown wire type", {0x0f}, 1},
        {"a 64-bit value is cut short", {0x09, 1, 2, 3}, 4},
        {"a 32-bit value is cut short", {0x0d, 1}, 2},
        {"a length is cut short", {0x0a, 0x80, 0x80}, 3},
        /* The cause holds 2 bytes, its message field claims 5: past the cause, not the buffer. */
        {"a length runs past the end", {0x22, 0x02, 0x0a, 0x05, 'a', 'b', 'c', 'd'}, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *p = exact(cases[i].data, cases[i].len);
        keel_error err;
        bool deep = true;
        ck_assert_int_eq(keel_proto_check(FAILURE, p, cases[i].len, 100, &deep, &err), KEEL_EINVAL);
        ck_assert(!deep);
        ck_assert_msg(strstr(err.message, "not a valid temporal.api.failure.v1.Failure") &&
                          strstr(err.message, cases[i].what),
                      "case %zu: %s", i, err.message);
        ProtobufCMessage *m = NULL;
        ck_assert_int_eq(keel_proto_unpack_pruned(FAILURE, p, cases[i].len, &m, NULL, &err),
                         KEEL_EINVAL);
        ck_assert_ptr_null(m);
        free(p);
    }
    /* Nothing at all is an empty message. */
    ProtobufCMessage *m = NULL;
    keel_error err;
    ck_assert_int_eq(keel_proto_unpack(FAILURE, NULL, 0, &m, &err), KEEL_OK);
    protobuf_c_message_free_unpacked(m, NULL);

    /* Every cut of a history, and random bytes and random changes to it: an error or a
     * message, never a read past the buffer (ASan) or a crash. */
    bytes h = history_with_failure(20);
    for (size_t cut = 0; cut <= h.len; cut++) {
        uint8_t *p = exact(h.data, cut);
        if (keel_proto_unpack(HISTORY, p, cut, &m, &err) == KEEL_OK)
            protobuf_c_message_free_unpacked(m, NULL);
        if (keel_proto_unpack_pruned(HISTORY, p, cut, &m, NULL, &err) == KEEL_OK)
            protobuf_c_message_free_unpacked(m, NULL);
        free(p);
    }
    uint32_t x = 2463534242u;
    for (int round = 0; round < 20000; round++) {
        uint8_t junk[96];
        size_t len;
        if (round % 2 == 0) {
            len = x % sizeof junk;
            for (size_t i = 0; i < len; i++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                junk[i] = (uint8_t)x;
            }
        } else {
            len = h.len < sizeof junk ? h.len : sizeof junk;
            memcpy(junk, h.data, len);
            for (int k = 0; k < 3; k++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                junk[x % len] = (uint8_t)(x >> 8);
            }
        }
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        uint8_t *p = exact(junk, len);
        if (keel_proto_unpack(HISTORY, p, len, &m, &err) == KEEL_OK)
            protobuf_c_message_free_unpacked(m, NULL);
        if (keel_proto_unpack_pruned(HISTORY, p, len, &m, NULL, &err) == KEEL_OK)
            protobuf_c_message_free_unpacked(m, NULL);
        free(p);
    }
    free(h.data);
}
END_TEST

START_TEST(a_task_too_deep_still_gives_its_token)
{
    /* A poll response: token, run, attempt, then a history too deep. */
    Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse t =
        TEMPORAL__API__WORKFLOWSERVICE__V1__POLL_WORKFLOW_TASK_QUEUE_RESPONSE__INIT;
    Temporal__Api__Common__V1__WorkflowExecution x =
        TEMPORAL__API__COMMON__V1__WORKFLOW_EXECUTION__INIT;
    x.workflow_id = "wf";
    x.run_id = "run";
    t.workflow_execution = &x;
    t.task_token = (ProtobufCBinaryData){3, (uint8_t *)"tok"};
    t.attempt = 1;
    const ProtobufCMessageDescriptor *d =
        &temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor;
    size_t n = protobuf_c_message_get_packed_size(&t.base);
    bytes h = wrap(d, "history", history_with_failure(KEEL_PROTO_MAX_DEPTH));
    uint8_t *p = malloc(n + h.len);
    protobuf_c_message_pack(&t.base, p);
    memcpy(p + n, h.data, h.len);
    n += h.len;
    free(h.data);

    keel_error err;
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(keel_proto_unpack(d, p, n, &m, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "PollWorkflowTaskQueueResponse nested deeper than "
                                              "100 messages (at history.events[0]."));
    size_t pruned = 0;
    ck_assert_int_eq(keel_proto_unpack_pruned(d, p, n, &m, &pruned, &err), KEEL_OK);
    ck_assert_uint_eq(pruned, 1);
    Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse *back = (void *)m;
    ck_assert_uint_eq(back->task_token.len, 3);
    ck_assert_int_eq(memcmp(back->task_token.data, "tok", 3), 0);
    ck_assert_str_eq(back->workflow_execution->run_id, "run");
    ck_assert_int_eq(back->attempt, 1);
    ck_assert_ptr_null(back->history);
    protobuf_c_message_free_unpacked(m, NULL);

    /* Nothing too deep: all of it, nothing left out. */
    bytes shallow = wrap(d, "history", history_with_failure(3));
    ck_assert_int_eq(keel_proto_unpack_pruned(d, shallow.data, shallow.len, &m, &pruned, &err),
                     KEEL_OK);
    ck_assert_uint_eq(pruned, 0);
    ck_assert_ptr_nonnull(
        ((Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse *)m)->history);
    protobuf_c_message_free_unpacked(m, NULL);
    free(shallow.data);
    free(p);
}
END_TEST

START_TEST(an_any_too_deep_is_refused_by_protojson)
{
    /* An update rejection (which the JSON encoder unpacks from an Any) whose failure has
     * 10,000 nested causes: its one field is the whole message. */
    bytes r =
        wrap(&temporal__api__update__v1__rejection__descriptor, "failure", failure_chain(10000));
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/temporal.api.update.v1.Rejection";
    any.value.data = r.data;
    any.value.len = r.len;
    keel_error err;
    char *json = keel_protojson_encode(&any.base, false, &err);
    ck_assert_ptr_null(json);
    ck_assert_msg(strstr(err.message, "temporal.api.update.v1.Rejection nested deeper than 100 "
                                      "messages (at failure.cause.cause") != NULL,
                  "%s", err.message);
    free(r.data);
}
END_TEST

Suite *proto_suite(void)
{
    Suite *s = suite_create("proto");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, duration_conversions);
    tcase_add_test(tc, system_info_round_trip_skips_unknown_fields);
    tcase_add_test(tc, enum_names_come_from_the_descriptor);
    tcase_add_test(tc, nesting_at_the_limit_passes_and_one_more_is_refused);
    tcase_add_test(tc, maps_count_and_bytes_and_unknown_fields_are_not_entered);
    tcase_add_test(tc, malformed_bytes_are_refused_without_reading_past_them);
    tcase_add_test(tc, a_task_too_deep_still_gives_its_token);
    tcase_add_test(tc, an_any_too_deep_is_refused_by_protojson);
    suite_add_tcase(s, tc);
    return s;
}
