/* src/converter/payload.c: the standard converter's encodings. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "converter/payload.h"

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

START_TEST(json_payload_keeps_the_text_and_says_json_plain)
{
    const char *json = " {\"item\": \"laptop\", \"qty\": 2} \n";
    keel_pb_payload *p;
    keel_error err;
    ck_assert_int_eq(keel_payload_new_json(json, strlen(json), "input", &p, &err), KEEL_OK);
    ck_assert(keel_payload_encoding_is(p, KEEL_ENCODING_JSON));
    ck_assert(!keel_payload_encoding_is(p, KEEL_ENCODING_NULL));
    ck_assert_uint_eq(p->data.len, strlen(json));
    ck_assert_int_eq(memcmp(p->data.data, json, p->data.len), 0);
    char *back;
    ck_assert_int_eq(keel_payload_to_json(p, "input", &back, &err), KEEL_OK);
    ck_assert_str_eq(back, json);
    free(back);

    /* Survives the wire: pack, unpack, read again. */
    size_t n = protobuf_c_message_get_packed_size(&p->base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&p->base, buf);
    keel_pb_payload *q = temporal__api__common__v1__payload__unpack(NULL, n, buf);
    ck_assert_ptr_nonnull(q);
    ck_assert(keel_payload_encoding_is(q, KEEL_ENCODING_JSON));
    FREE_PB(q);
    free(buf);
    FREE_PB(p);
}
END_TEST

START_TEST(invalid_json_is_refused_naming_the_value)
{
    const char *bad[] = {"", "{", "{\"a\":1} trailing", "nul", "[1,2,]", "{'a':1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_pb_payload *p = (keel_pb_payload *)1;
        keel_error err;
        ck_assert_msg(keel_payload_new_json(bad[i], strlen(bad[i]), "workflow input", &p, &err) ==
                          KEEL_EINVAL,
                      "accepted '%s'", bad[i]);
        ck_assert_ptr_null(p);
        ck_assert_ptr_nonnull(strstr(err.message, "workflow input"));
    }
    /* Only len bytes count: a valid prefix of a longer buffer is fine. */
    keel_pb_payload *p;
    ck_assert_int_eq(keel_payload_new_json("42garbage", 2, "x", &p, NULL), KEEL_OK);
    FREE_PB(p);
}
END_TEST

/* A NUL or invalid UTF-8 would be cut or passed on raw: both are refused where they stand, in
 * either direction (a payload keel builds, and one an official client sent). */
START_TEST(nul_bytes_and_invalid_utf8_are_refused_naming_where)
{
    static const struct {
        const char *json;
        size_t len;
        const char *says;
    } bad[] = {
        {"{\"approver\":\"boss@corp.example\0evil\"}", 36,
         "signal argument is not valid JSON: at byte 30 (/approver): a NUL character (0x00)"},
        {"{\"approver\":\"\\u0000\"}", 21, "(/approver): \\u0000 inside a string"},
        {"{\"note\":\"\xff\xfe\"}", 13, "at byte 9 (/note): invalid UTF-8 (byte 0xff)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_pb_payload *p = (keel_pb_payload *)1;
        keel_error err;
        ck_assert_int_eq(
            keel_payload_new_json(bad[i].json, bad[i].len, "signal argument", &p, &err),
            KEEL_EINVAL);
        ck_assert_ptr_null(p);
        ck_assert_msg(strstr(err.message, bad[i].says), "'%s' lacks '%s'", err.message,
                      bad[i].says);

        /* The same bytes from the wire. */
        ck_assert_int_eq(keel_payload_new_json("{}", 2, "x", &p, NULL), KEEL_OK);
        free(p->data.data);
        p->data.data = malloc(bad[i].len);
        memcpy(p->data.data, bad[i].json, bad[i].len);
        p->data.len = bad[i].len;
        char *json = (char *)1;
        ck_assert_int_eq(keel_payload_to_json(p, "signal argument", &json, &err), KEEL_EINVAL);
        ck_assert_ptr_null(json);
        ck_assert_msg(strstr(err.message, bad[i].says), "'%s' lacks '%s'", err.message,
                      bad[i].says);
        FREE_PB(p);
    }
}
END_TEST

START_TEST(null_and_binary_payloads)
{
    keel_pb_payload *p;
    keel_error err;
    ck_assert_int_eq(keel_payload_new_null(&p, &err), KEEL_OK);
    ck_assert(keel_payload_encoding_is(p, KEEL_ENCODING_NULL));
    ck_assert_uint_eq(p->data.len, 0);
    char *json;
    ck_assert_int_eq(keel_payload_to_json(p, "x", &json, &err), KEEL_OK);
    ck_assert_str_eq(json, "null");
    free(json);
    FREE_PB(p);

    const uint8_t bytes[] = {0, 1, 2, 255};
    ck_assert_int_eq(keel_payload_new_bytes(bytes, sizeof bytes, &p, &err), KEEL_OK);
    ck_assert(keel_payload_encoding_is(p, KEEL_ENCODING_BINARY));
    ck_assert_int_eq(memcmp(p->data.data, bytes, sizeof bytes), 0);
    ck_assert_int_eq(keel_payload_to_json(p, "attachment", &json, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "binary/plain"));
    ck_assert_ptr_nonnull(strstr(err.message, "attachment"));
    FREE_PB(p);
}
END_TEST

START_TEST(metadata_is_replaced_not_duplicated)
{
    keel_pb_payload *p;
    ck_assert_int_eq(keel_payload_new_json("1", 1, "x", &p, NULL), KEEL_OK);
    ck_assert_int_eq(keel_payload_set_metadata(p, "type", "Int", NULL), KEEL_OK);
    ck_assert_int_eq(keel_payload_set_metadata(p, "type", "Double", NULL), KEEL_OK);
    ck_assert_uint_eq(p->n_metadata, 2);
    ck_assert_int_eq(keel_payload_set_metadata(p, "encoding", "json/protobuf", NULL), KEEL_OK);
    ck_assert(keel_payload_encoding_is(p, "json/protobuf"));
    keel_error err;
    char *json;
    ck_assert_int_eq(keel_payload_to_json(p, "value", &json, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "json/protobuf"));
    FREE_PB(p);
}
END_TEST

START_TEST(payloads_from_the_wire_are_checked)
{
    /* A payload that claims json/plain but holds garbage, or has no encoding at all. */
    keel_pb_payload *p;
    ck_assert_int_eq(keel_payload_new_bytes((const uint8_t *)"{oops", 5, &p, NULL), KEEL_OK);
    ck_assert_int_eq(keel_payload_set_metadata(p, "encoding", KEEL_ENCODING_JSON, NULL), KEEL_OK);
    keel_error err;
    char *json;
    ck_assert_int_eq(keel_payload_to_json(p, "result", &json, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "not valid JSON"));
    FREE_PB(p);

    keel_pb_payload bare = TEMPORAL__API__COMMON__V1__PAYLOAD__INIT;
    ck_assert_int_eq(keel_payload_to_json(&bare, "result", &json, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "'none'"));

    keel_pb_payloads *ps;
    ck_assert_int_eq(keel_payloads_new_json(NULL, "x", &ps, NULL), KEEL_OK);
    ck_assert_ptr_null(ps);
    ck_assert_int_eq(keel_payloads_to_json(NULL, "x", &json, NULL), KEEL_OK);
    ck_assert_str_eq(json, "null");
    free(json);
    ck_assert_int_eq(keel_payloads_new_json("[1,{\"a\":null}]", "x", &ps, NULL), KEEL_OK);
    ck_assert_uint_eq(ps->n_payloads, 1);
    ck_assert_int_eq(keel_payloads_to_json(ps, "x", &json, NULL), KEEL_OK);
    ck_assert_str_eq(json, "[1,{\"a\":null}]");
    free(json);
    FREE_PB(ps);
}
END_TEST

Suite *payload_suite(void)
{
    Suite *s = suite_create("payload");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, json_payload_keeps_the_text_and_says_json_plain);
    tcase_add_test(tc, invalid_json_is_refused_naming_the_value);
    tcase_add_test(tc, nul_bytes_and_invalid_utf8_are_refused_naming_where);
    tcase_add_test(tc, null_and_binary_payloads);
    tcase_add_test(tc, metadata_is_replaced_not_duplicated);
    tcase_add_test(tc, payloads_from_the_wire_are_checked);
    suite_add_tcase(s, tc);
    return s;
}
