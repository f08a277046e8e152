/* src/proto and the generated code: round trips and hostile bytes. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

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

Suite *proto_suite(void)
{
    Suite *s = suite_create("proto");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, duration_conversions);
    tcase_add_test(tc, system_info_round_trip_skips_unknown_fields);
    tcase_add_test(tc, enum_names_come_from_the_descriptor);
    suite_add_tcase(s, tc);
    return s;
}
