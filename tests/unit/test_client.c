/* src/client/client.c: the parts that need no server. */
#include <check.h>
#include <string.h>

#include "keel/client.h"

START_TEST(indexed_value_types_parse_both_spellings)
{
    keel_indexed_value_type t;
    keel_error err;
    ck_assert_int_eq(keel_indexed_value_type_parse("Keyword", &t, &err), KEEL_OK);
    ck_assert_int_eq(t, KEEL_INDEXED_VALUE_TYPE_KEYWORD);
    ck_assert_int_eq(keel_indexed_value_type_parse("double", &t, &err), KEEL_OK);
    ck_assert_int_eq(t, KEEL_INDEXED_VALUE_TYPE_DOUBLE);
    ck_assert_int_eq(keel_indexed_value_type_parse("KeywordList", &t, &err), KEEL_OK);
    ck_assert_int_eq(t, KEEL_INDEXED_VALUE_TYPE_KEYWORD_LIST);
    ck_assert_int_eq(keel_indexed_value_type_parse("INDEXED_VALUE_TYPE_KEYWORD_LIST", &t, &err),
                     KEEL_OK);
    ck_assert_int_eq(t, KEEL_INDEXED_VALUE_TYPE_KEYWORD_LIST);
    ck_assert_int_eq(keel_indexed_value_type_parse("Datetime", &t, &err), KEEL_OK);
    ck_assert_int_eq(t, KEEL_INDEXED_VALUE_TYPE_DATETIME);
    ck_assert_int_eq(keel_indexed_value_type_parse("Money", &t, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "Money"));
    ck_assert_int_eq(keel_indexed_value_type_parse("Unspecified", &t, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_indexed_value_type_parse(NULL, &t, &err), KEEL_EINVAL);
    ck_assert_str_eq(keel_indexed_value_type_name(KEEL_INDEXED_VALUE_TYPE_INT), "Int");
    ck_assert_str_eq(keel_indexed_value_type_name(77), "Unknown");
}
END_TEST

START_TEST(namespace_state_names)
{
    ck_assert_str_eq(keel_namespace_state_name(KEEL_NAMESPACE_STATE_REGISTERED), "Registered");
    ck_assert_str_eq(keel_namespace_state_name(KEEL_NAMESPACE_STATE_DELETED), "Deleted");
    ck_assert_str_eq(keel_namespace_state_name(12), "Unknown");
}
END_TEST

START_TEST(arguments_are_checked_before_any_call)
{
    /* Nothing listens on port 1; each of these must fail on its arguments, not the network. */
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    o.address = "127.0.0.1:1";
    keel_client *c;
    keel_error err;
    ck_assert_int_eq(keel_client_new(&c, &o, &err), KEEL_OK);

    keel_namespace_register_options r;
    keel_namespace_register_options_init(&r, KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION);
    ck_assert_int_eq(r.retention_ms, KEEL_DEFAULT_RETENTION_MS);
    ck_assert_int_eq(keel_client_namespace_register(c, &r, &err), KEEL_EINVAL);
    ck_assert_int_eq(err.grpc_status, KEEL_NO_GRPC_STATUS);
    r.name = "x";
    r.retention_ms = -1;
    ck_assert_int_eq(keel_client_namespace_register(c, &r, &err), KEEL_EINVAL);
    r.retention_ms = 0;
    ck_assert_int_eq(keel_client_namespace_register(c, &r, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "retention"));
    /* A namespace a header cannot carry is refused before any call. */
    keel_search_attribute_list l;
    ck_assert_int_eq(keel_client_search_attributes_list(c, "bad\nns", &l, &err), KEEL_EINVAL);
    ck_assert_int_eq(err.grpc_status, KEEL_NO_GRPC_STATUS);

    keel_namespace_info ns;
    ck_assert_int_eq(keel_client_namespace_describe(c, "", &ns, &err), KEEL_EINVAL);

    keel_search_attribute bad = {.name = "X", .type = 0};
    ck_assert_int_eq(keel_client_search_attributes_add(c, NULL, &bad, 1, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "X"));
    ck_assert_int_eq(keel_client_search_attributes_add(c, NULL, &bad, 0, &err), KEEL_EINVAL);
    keel_client_free(c);
}
END_TEST

Suite *client_suite(void)
{
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, indexed_value_types_parse_both_spellings);
    tcase_add_test(tc, namespace_state_names);
    tcase_add_test(tc, arguments_are_checked_before_any_call);
    suite_add_tcase(s, tc);
    return s;
}
