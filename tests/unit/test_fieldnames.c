/* src/converter/fieldnames.c: protoc's JSON names for every field, found by hashing, one table
 * per message type however many threads ask for it at once. */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "converter/fieldnames.h"
#include "temporal/api/history/v1/message.pb-c.h"

static const ProtobufCMessageDescriptor *const event =
    &temporal__api__history__v1__history_event__descriptor;

/* The field of d whose .proto name is proto_name. */
static long field_index(const ProtobufCMessageDescriptor *d, const char *proto_name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(d, proto_name);
    ck_assert_ptr_nonnull(f);
    return f - d->fields;
}

START_TEST(json_names_are_lower_camel_case)
{
    const keel_fieldnames *fn = keel_fieldnames_of(event);
    ck_assert_ptr_nonnull(fn);
    ck_assert_ptr_eq(fn->d, event);
    long id = field_index(event, "event_id");
    ck_assert_str_eq(fn->json[id], "eventId");
    ck_assert_uint_eq(fn->json_len[id], 7);
    long attrs = field_index(event, "workflow_execution_started_event_attributes");
    ck_assert_str_eq(fn->json[attrs], "workflowExecutionStartedEventAttributes");
    /* A name without underscores is its own JSON name. */
    long version = field_index(event, "version");
    ck_assert_str_eq(fn->json[version], "version");
}
END_TEST

START_TEST(every_field_is_found_by_its_json_name_only)
{
    const keel_fieldnames *fn = keel_fieldnames_of(event);
    ck_assert_ptr_nonnull(fn);
    for (unsigned i = 0; i < event->n_fields; i++) {
        ck_assert_int_eq(keel_fieldnames_find(fn, fn->json[i], fn->json_len[i]), i);
        /* By length, not by the NUL: a prefix or a longer name is another name. */
        ck_assert_int_eq(keel_fieldnames_find(fn, fn->json[i], fn->json_len[i] - 1), -1);
        char longer[128];
        snprintf(longer, sizeof longer, "%sX", fn->json[i]);
        ck_assert_int_eq(keel_fieldnames_find(fn, longer, fn->json_len[i] + 1), -1);
    }
    ck_assert_int_eq(keel_fieldnames_find(fn, "event_id", 8), -1); /* the .proto name */
    ck_assert_int_eq(keel_fieldnames_find(fn, "", 0), -1);
    ck_assert_int_eq(keel_fieldnames_find(fn, "eventid", 7), -1);
}
END_TEST

/* Every message type a history event holds, asked for by several threads at once. */
enum { THREADS = 8 };

typedef struct asked {
    const keel_fieldnames *got[128];
    size_t n;
} asked;

static void *ask_all(void *arg)
{
    asked *a = arg;
    for (unsigned i = 0; i < event->n_fields && a->n < 128; i++)
        if (event->fields[i].type == PROTOBUF_C_TYPE_MESSAGE)
            a->got[a->n++] = keel_fieldnames_of(event->fields[i].descriptor);
    return NULL;
}

START_TEST(one_table_per_type_across_threads)
{
    static asked a[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, ask_all, &a[i]), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    ck_assert_uint_gt(a[0].n, 40);
    for (int i = 1; i < THREADS; i++) {
        ck_assert_uint_eq(a[i].n, a[0].n);
        for (size_t k = 0; k < a[0].n; k++)
            ck_assert_ptr_eq(a[i].got[k], a[0].got[k]);
    }
    /* Each is its own type's, and stays the one handed out. */
    size_t k = 0;
    for (unsigned i = 0; i < event->n_fields; i++) {
        if (event->fields[i].type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        ck_assert_ptr_nonnull(a[0].got[k]);
        ck_assert_ptr_eq(a[0].got[k]->d, event->fields[i].descriptor);
        ck_assert_ptr_eq(keel_fieldnames_of(event->fields[i].descriptor), a[0].got[k]);
        k++;
    }
}
END_TEST

Suite *fieldnames_suite(void)
{
    Suite *s = suite_create("fieldnames");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, json_names_are_lower_camel_case);
    tcase_add_test(tc, every_field_is_found_by_its_json_name_only);
    tcase_add_test(tc, one_table_per_type_across_threads);
    suite_add_tcase(s, tc);
    return s;
}
