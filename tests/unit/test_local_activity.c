/* The local activity marker's exact shape (sdk-core's dialect) and the retry rules. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "worker/local_activity.h"

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

START_TEST(the_marker_data_is_sdk_cores_json)
{
    keel_la_outcome o = {.seq = 3,
                         .attempt = 2,
                         .activity_id = "3",
                         .activity_type = "db.read",
                         .ok = true,
                         .result_json = "{\"rows\":1}",
                         .complete_ms = 1700000000250,
                         .original_schedule_ms = 1699999999000};
    char *json = keel_la_marker_data_json(&o);
    ck_assert_str_eq(json, "{\"seq\":3,\"attempt\":2,\"activity_id\":\"3\",\"activity_type\":"
                           "\"db.read\",\"complete_time\":{\"seconds\":1700000000,\"nanos\":"
                           "250000000},\"backoff\":null,\"original_schedule_time\":{\"seconds\":"
                           "1699999999,\"nanos\":0}}");
    free(json);
    o.backoff_ms = 90500;
    json = keel_la_marker_data_json(&o);
    ck_assert_ptr_nonnull(strstr(json, "\"backoff\":{\"seconds\":90,\"nanos\":500000000}"));
    free(json);
    o.backoff_ms = 0;

    /* The command's marker reads back as the event the server records from it. */
    Temporal__Api__Command__V1__Command *c = NULL;
    keel_error err;
    ck_assert_int_eq(keel_la_marker_command(&o, &c, &err), KEEL_OK);
    ck_assert_int_eq(c->command_type,
                     TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_RECORD_MARKER);
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes *a =
        c->record_marker_command_attributes;
    ck_assert_str_eq(a->marker_name, "core_local_activity");
    ck_assert_int_eq(a->n_details, 2);
    ck_assert_str_eq(a->details[0]->key, "data");
    ck_assert_str_eq(a->details[1]->key, "result");
    size_t len = protobuf_c_message_get_packed_size((ProtobufCMessage *)a);
    uint8_t *buf = malloc(len);
    protobuf_c_message_pack((ProtobufCMessage *)a, buf);
    Temporal__Api__History__V1__MarkerRecordedEventAttributes *ev =
        temporal__api__history__v1__marker_recorded_event_attributes__unpack(NULL, len, buf);
    free(buf);
    keel_la_outcome back;
    ck_assert_int_eq(keel_la_marker_read(ev, 7, &back, &err), KEEL_OK);
    ck_assert_uint_eq(back.seq, 3);
    ck_assert_uint_eq(back.attempt, 2);
    ck_assert_str_eq(back.activity_type, "db.read");
    ck_assert_str_eq(back.activity_id, "3");
    ck_assert(back.ok);
    ck_assert_str_eq(back.result_json, "{\"rows\":1}");
    ck_assert_int_eq(back.complete_ms, 1700000000250);
    ck_assert_int_eq(back.original_schedule_ms, 1699999999000);
    keel_la_outcome_clear(&back);
    FREE_PB(ev);
    FREE_PB(c);
}
END_TEST

START_TEST(a_marker_without_its_data_is_refused)
{
    Temporal__Api__History__V1__MarkerRecordedEventAttributes a =
        TEMPORAL__API__HISTORY__V1__MARKER_RECORDED_EVENT_ATTRIBUTES__INIT;
    a.marker_name = "core_local_activity";
    keel_la_outcome o;
    keel_error err;
    ck_assert_int_eq(keel_la_marker_read(&a, 12, &o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "history event 12"));
}
END_TEST

START_TEST(retries_follow_the_policy)
{
    keel_la_table t = {0};
    keel_local_activity_options o;
    keel_local_activity_options_init(&o);
    o.start_to_close_ms = 1000;
    keel_la *la = keel_la_add(&t, 1, "x", NULL, &o, 0);
    ck_assert_ptr_nonnull(la);
    ck_assert_int_eq(la->threshold_ms, KEEL_LA_LOCAL_RETRY_MS);
    /* defaults: 1 s, doubling, capped at 100 s, unlimited */
    ck_assert_int_eq(keel_la_backoff(la, "E", false, 0, 0), 1000);
    la->attempt = 3;
    ck_assert_int_eq(keel_la_backoff(la, "E", false, 0, 0), 4000);
    la->attempt = 30;
    ck_assert_int_eq(keel_la_backoff(la, "E", false, 0, 0), 100000);
    ck_assert_int_eq(keel_la_backoff(la, "E", true, 0, 0), -1);
    ck_assert_int_eq(keel_la_backoff(la, "E", false, 250, 0), 250); /* next_retry_delay */
    keel_la_table_free(&t);

    const char *const nr[] = {"Fatal"};
    keel_retry_policy p = {.initial_interval_ms = 100,
                           .backoff_coefficient = 2,
                           .maximum_attempts = 2,
                           .non_retryable_error_types = nr,
                           .n_non_retryable_error_types = 1};
    o.retry = &p;
    o.schedule_to_close_ms = 5000;
    la = keel_la_add(&t, 1, "x", NULL, &o, 0);
    ck_assert_int_eq(keel_la_backoff(la, "Fatal", false, 0, 0), -1);
    la->original_schedule_ms = 1000;
    ck_assert_int_eq(keel_la_backoff(la, "E", false, 0, 1000), 100);
    /* schedule-to-close would pass before the retry */
    ck_assert_int_eq(keel_la_backoff(la, "E", false, 0, 5950), -1);
    la->attempt = 2; /* out of attempts */
    ck_assert_int_eq(keel_la_backoff(la, "E", false, 0, 1000), -1);
    keel_la_table_free(&t);
}
END_TEST

Suite *local_activity_suite(void)
{
    Suite *s = suite_create("local-activity");
    TCase *tc = tcase_create("marker");
    tcase_add_test(tc, the_marker_data_is_sdk_cores_json);
    tcase_add_test(tc, a_marker_without_its_data_is_refused);
    tcase_add_test(tc, retries_follow_the_policy);
    suite_add_tcase(s, tc);
    return s;
}
