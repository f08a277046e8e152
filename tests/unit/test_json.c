/* src/json/json.c: what the strict reader refuses, and numbers that print back as they came. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/json.h"

/* Parse text (of length len) and expect a refusal whose message contains part. */
static void refuses_n(const char *text, size_t len, unsigned flags, const char *part)
{
    cJSON *j = (cJSON *)1;
    keel_error err;
    keel_error_clear(&err);
    int rc = keel_json_parse(text, len, flags, "input", &j, &err);
    ck_assert_msg(rc == KEEL_EINVAL, "accepted %.*s", (int)len, text);
    ck_assert_ptr_null(j);
    ck_assert_msg(strstr(err.message, part), "message '%s' lacks '%s'", err.message, part);
    /* keel_json_check, which builds no tree, refuses it with the same words. */
    keel_error cerr;
    keel_error_clear(&cerr);
    ck_assert_int_eq(keel_json_check(text, len, flags, "input", &cerr), KEEL_EINVAL);
    ck_assert_str_eq(cerr.message, err.message);
}

static void refuses(const char *text, const char *part)
{
    refuses_n(text, strlen(text), 0, part);
}

/* Parse text and print it compactly: the caller frees the result. */
static char *round_trip(const char *text, unsigned flags)
{
    cJSON *j = NULL;
    keel_error err;
    ck_assert_msg(keel_json_parse_str(text, flags, "input", &j, &err) == KEEL_OK, "%s: %s", text,
                  err.message);
    char *s = keel_json_print(j);
    ck_assert_ptr_nonnull(s);
    cJSON_Delete(j);
    return s;
}

static void prints_back(const char *text)
{
    char *s = round_trip(text, 0);
    ck_assert_str_eq(s, text);
    cJSON_free(s);
}

START_TEST(numbers_keep_their_text)
{
    prints_back("9007199254740993");
    prints_back("9007199254740991");
    prints_back("12345678901234567891");
    prints_back("0.30000000000000004");
    prints_back("[1.0,1e2,-0,1E+2,0.1e-7,123456789012345678901234567890]");
    prints_back("{\"amount\":4596.00,\"n\":-12.50}");
    /* A tree nested in another keeps the text through cJSON_Duplicate too. */
    cJSON *j = NULL;
    ck_assert_int_eq(keel_json_parse_str("{\"a\":9007199254740993}", 0, NULL, &j, NULL), KEEL_OK);
    cJSON *copy = cJSON_Duplicate(j, true);
    char *s = keel_json_print(copy);
    ck_assert_str_eq(s, "{\"a\":9007199254740993}");
    cJSON_free(s);
    cJSON_Delete(copy);
    cJSON_Delete(j);
}
END_TEST

START_TEST(changed_and_made_numbers_print_their_value)
{
    cJSON *j = NULL;
    ck_assert_int_eq(keel_json_parse_str("{\"a\":1.50}", 0, NULL, &j, NULL), KEEL_OK);
    cJSON_SetNumberValue(cJSON_GetObjectItem(j, "a"), 2.25);
    cJSON_AddNumberToObject(j, "b", 9007199254740991.0);
    cJSON_AddNumberToObject(j, "c", 0.1 + 0.2);
    cJSON_AddNumberToObject(j, "d", 1e300);
    cJSON_AddNumberToObject(j, "e", 3);
    char *s = keel_json_print(j);
    ck_assert_str_eq(s, "{\"a\":2.25,\"b\":9007199254740991,\"c\":0.30000000000000004,"
                        "\"d\":1e+300,\"e\":3}");
    cJSON_free(s);
    cJSON_Delete(j);

    cJSON *n = keel_json_number_from_text("12345678901234567891");
    ck_assert_ptr_nonnull(n);
    s = keel_json_print(n);
    ck_assert_str_eq(s, "12345678901234567891");
    cJSON_free(s);
    cJSON_Delete(n);
    ck_assert_ptr_null(keel_json_number_from_text("12a"));
    ck_assert_ptr_null(keel_json_number_from_text("1e999"));
    ck_assert_ptr_null(keel_json_number_from_text(""));
}
END_TEST

START_TEST(refuses_nul_and_bad_utf8)
{
    refuses_n("{\"approver\":\"boss@corp.example\0evil\"}", 36, 0,
              "at byte 30 (/approver): a NUL character (0x00) inside a string");
    refuses("\"keel.Procurement\\u0000-v2\"", "\\u0000 inside a string");
    refuses("\"\xff\xfe\"", "at byte 1 (the top level): invalid UTF-8 (byte 0xff)");
    refuses("{\"a\":[\"ok\",\"\xc3\"]}", "(/a/1): invalid UTF-8");
    refuses("\"\xc0\xaf\"", "invalid UTF-8");         /* overlong '/' */
    refuses("\"\xed\xa0\x80\"", "invalid UTF-8");     /* an encoded surrogate */
    refuses("\"\xf4\x90\x80\x80\"", "invalid UTF-8"); /* past U+10FFFF */
    refuses("\"\\ud800\"", "high surrogate without its low surrogate");
    refuses("\"\\udc00x\"", "lone low surrogate");
    refuses("\"tab\there\"", "raw control character (0x09)");
    refuses("\"\\x41\"", "not a JSON escape");
    refuses("\"\\u12g4\"", "four hex digits");
}
END_TEST

/* For the schema validator only: U+0000 kept as C0 80 and printed back as \u0000. */
START_TEST(keep_nul_reads_and_prints_u0000)
{
    cJSON *j = NULL;
    keel_error err;
    ck_assert_int_eq(
        keel_json_parse_str("[\"a\\u0000b\",\"a\"]", KEEL_JSON_KEEP_NUL, NULL, &j, &err), KEEL_OK);
    ck_assert_str_eq(cJSON_GetArrayItem(j, 0)->valuestring, "a" KEEL_JSON_NUL "b");
    ck_assert_str_ne(cJSON_GetArrayItem(j, 0)->valuestring, cJSON_GetArrayItem(j, 1)->valuestring);
    char *s = keel_json_print(j);
    ck_assert_str_eq(s, "[\"a\\u0000b\",\"a\"]");
    cJSON_free(s);
    cJSON_Delete(j);
    refuses_n("\"a\0b\"", 5, KEEL_JSON_KEEP_NUL, "a NUL character (0x00)");
}
END_TEST

START_TEST(reads_escapes_and_utf8)
{
    cJSON *j = NULL;
    keel_error err;
    ck_assert_int_eq(
        keel_json_parse_str("[\"\\u00e9\\ud83d\\ude00\\n\\/\", \"日本語\"]", 0, NULL, &j, &err),
        KEEL_OK);
    ck_assert_str_eq(cJSON_GetArrayItem(j, 0)->valuestring, "é😀\n/");
    ck_assert_str_eq(cJSON_GetArrayItem(j, 1)->valuestring, "日本語");
    char *s = keel_json_print(j);
    ck_assert_str_eq(s, "[\"é😀\\n/\",\"日本語\"]");
    cJSON_free(s);
    cJSON_Delete(j);
}
END_TEST

/* Strings are scanned a word (eight bytes) at a time up to the first special byte: an escape,
 * a UTF-8 sequence, a refused byte and the closing quote at every offset in a word read the same
 * as at the start, and a refusal names the right byte. */
START_TEST(special_bytes_at_every_offset_in_a_word)
{
    static const struct {
        const char *tail, *value;
    } ok[] = {{"\\n\"", "\n"}, {"\xc3\xa9\"", "\xc3\xa9"}, {"\\u00e9\"", "\xc3\xa9"},
              {"\"", ""},      {"\\\"x\"", "\"x"},         {"\xe6\x97\xa5z\"", "\xe6\x97\xa5z"}};
    /* Trailing spaces leave room for the sixteen-byte look-ahead; without, the string's end is
     * near the text's and the eight-byte and byte-by-byte paths read it. */
    for (int pad = 0; pad <= 24; pad += 24) {
        for (size_t k = 0; k < 34; k++) {
            for (size_t t = 0; t < sizeof ok / sizeof ok[0]; t++) {
                char text[128], want[64];
                memset(want, 'a', k);
                snprintf(want + k, sizeof want - k, "%s", ok[t].value);
                text[0] = '"';
                memset(text + 1, 'a', k);
                snprintf(text + 1 + k, sizeof text - 1 - k, "%s%*s", ok[t].tail, pad, "");
                cJSON *j = NULL;
                keel_error err;
                ck_assert_msg(keel_json_parse_str(text, 0, NULL, &j, &err) == KEEL_OK, "%s: %s",
                              text, err.message);
                ck_assert_str_eq(j->valuestring, want);
                cJSON_Delete(j);
            }
            static const struct {
                char byte;
                const char *why;
            } refused[] = {{'\x01', "a raw control character (0x01)"},
                           {'\xff', "invalid UTF-8 (byte 0xff)"},
                           {'\x80', "invalid UTF-8 (byte 0x80)"},
                           {'\x1f', "a raw control character (0x1f)"}};
            for (size_t b = 0; b < sizeof refused / sizeof refused[0]; b++) {
                char bad[128], part[96];
                bad[0] = '"';
                memset(bad + 1, 'a', k);
                snprintf(bad + 1 + k, sizeof bad - 1 - k, "%caaaaaaaaa\"%*s", refused[b].byte, pad,
                         "");
                snprintf(part, sizeof part, "at byte %zu (the top level): %s", k + 1,
                         refused[b].why);
                refuses(bad, part);
            }
        }
    }
}
END_TEST

START_TEST(refuses_what_rfc8259_refuses)
{
    refuses("", "the text ends where a value should be");
    refuses("   ", "the text ends where a value should be");
    refuses("{\"a\":1,}", "expected a member name");
    refuses("[1,]", "expected a value");
    refuses("[1 2]", "expected ',' or ']'");
    refuses("012", "leading zero");
    refuses("-", "malformed number");
    refuses("1.", "malformed number");
    refuses("NaN", "expected a value");
    refuses("1e400", "out of range");
    refuses("{\"a\":1} x", "'x' after the JSON value");
    refuses("\"open", "never closed");
    refuses("// c\n1", "expected a value");
    refuses("{'a':1}", "expected a member name in double quotes");
}
END_TEST

START_TEST(names_once_unless_last_wins)
{
    refuses("{\"a\":1,\"b\":{\"c\":1,\"c\":2}}", "(/b/c): the member name \"c\" appears twice");
    char *s = round_trip("{\"a\":1,\"b\":2,\"a\":3}", KEEL_JSON_LAST_WINS);
    ck_assert_str_eq(s, "{\"b\":2,\"a\":3}");
    cJSON_free(s);

    /* Past the linear scan, names are hashed: a repeat among many is still found. */
    char big[8192];
    size_t n = 0;
    n += (size_t)snprintf(big + n, sizeof big - n, "{");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "\"k%d\":%d,", i, i);
    snprintf(big + n, sizeof big - n, "\"k123\":0}");
    refuses(big, "\"k123\" appears twice");
    s = round_trip(big, KEEL_JSON_LAST_WINS);
    cJSON *j = NULL;
    ck_assert_int_eq(keel_json_parse_str(s, 0, NULL, &j, NULL), KEEL_OK);
    ck_assert_int_eq(cJSON_GetArraySize(j), 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "k123")->valueint, 0);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "k199")->valueint, 199);
    cJSON_Delete(j);
    cJSON_free(s);

    /* A name written with escapes is the same name. */
    refuses("{\"ab\":1,\"\\u0061b\":2}", "(/\\u0061b): the member name \"ab\" appears twice");
    refuses("{\"a\\/\":1,\"x\":[],\"a/\":2}", "the member name \"a/\" appears twice");
    char esc[1024];
    n = (size_t)snprintf(esc, sizeof esc, "{\"k\\u00e9\":0,");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(esc + n, sizeof esc - n, "\"k%d\":%d,", i, i);
    snprintf(esc + n, sizeof esc - n, "\"k\xc3\xa9\":1}");
    refuses(esc, "the member name \"k\xc3\xa9\" appears twice");
    ck_assert_int_eq(keel_json_check(esc, strlen(esc), KEEL_JSON_LAST_WINS, NULL, NULL), KEEL_OK);
}
END_TEST

/* Read {"a":..,"b":..,...} with the pull reader's unchecked objects: names the "caller" keeps marks
 * for (those in `marked`) are refused by hand when repeated, the rest handed back to the reader.
 * Returns the error message (empty when the read succeeded). */
static const char *pull_unchecked(const char *text, const char *marked, keel_error *err)
{
    keel_json_reader *jr;
    keel_error_clear(err);
    ck_assert_int_eq(keel_json_reader_open(text, strlen(text), "input", &jr, err), KEEL_OK);
    bool ok = keel_json_enter_object_unchecked(jr), more = true;
    char given[16] = "";
    while (ok) {
        const char *name, *raw;
        size_t len, raw_len;
        ok = keel_json_next_member(jr, &more, &name, &len, &raw, &raw_len);
        if (!ok || !more)
            break;
        if (len == 1 && strchr(marked, name[0])) {
            if (strchr(given, name[0])) {
                ck_assert(!keel_json_member_repeated(jr));
                ok = false;
                break;
            }
            strncat(given, name, 1);
        } else {
            ok = keel_json_member_unclaimed(jr);
        }
        ok = ok && keel_json_skip(jr);
    }
    ok = ok && keel_json_reader_finish(jr);
    ck_assert_int_eq(ok, keel_json_reader_code(jr) == KEEL_OK);
    keel_json_reader_close(jr);
    return ok ? "" : err->message;
}

START_TEST(unchecked_objects_leave_repeats_to_the_caller)
{
    keel_error err;
    ck_assert_str_eq(pull_unchecked("{\"a\":1,\"b\":[],\"x\":{\"a\":1}}", "ab", &err), "");
    /* A value skipped whole is checked whole, its objects' names too. */
    ck_assert_str_eq(pull_unchecked("{\"a\":1,\"x\":{\"a\":1,\"a\":2}}", "ab", &err),
                     "input is not valid JSON: at byte 18 (/x/a): the member name \"a\" appears "
                     "twice in one object");
    /* A marked name the caller sees again fails with the reader's own words and place. */
    ck_assert_str_eq(pull_unchecked("{\"a\":1,\"b\":2,\"a\":3}", "ab", &err),
                     "input is not valid JSON: at byte 13 (/a): the member name \"a\" appears "
                     "twice in one object");
    /* Names handed back are checked by the reader, escapes decoded, among many. */
    ck_assert_str_eq(pull_unchecked("{\"xy\":1,\"a\":2,\"x\\u0079\":3}", "a", &err),
                     "input is not valid JSON: at byte 14 (/x\\u0079): the member name \"xy\" "
                     "appears twice in one object");
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof big, "{");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "\"k%d\":%d,", i, i);
    snprintf(big + n, sizeof big - n, "\"k7\":0}");
    ck_assert_ptr_nonnull(strstr(pull_unchecked(big, "", &err), "\"k7\" appears twice"));

    /* Once past the member's value, the caller can no longer speak for its name. */
    keel_json_reader *jr;
    const char *text = "{\"a\":1,\"b\":2}", *name, *raw;
    size_t len, raw_len;
    bool more;
    ck_assert_int_eq(keel_json_reader_open(text, strlen(text), "input", &jr, &err), KEEL_OK);
    ck_assert(keel_json_enter_object_unchecked(jr));
    ck_assert(keel_json_next_member(jr, &more, &name, &len, &raw, &raw_len) && more);
    ck_assert(keel_json_skip(jr));
    ck_assert(!keel_json_member_unclaimed(jr));
    ck_assert_int_eq(keel_json_reader_code(jr), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "the reader's caller is not at the member it names"));
    keel_json_reader_close(jr);
}
END_TEST

START_TEST(nesting_is_capped_and_named)
{
    char deep[2 * KEEL_JSON_MAX_DEPTH + 8];
    size_t n = 0;
    for (int i = 0; i < KEEL_JSON_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i < KEEL_JSON_MAX_DEPTH; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    cJSON *j = NULL;
    ck_assert_int_eq(keel_json_parse_str(deep, 0, NULL, &j, NULL), KEEL_OK);
    cJSON_Delete(j);

    char deeper[2 * KEEL_JSON_MAX_DEPTH + 16];
    snprintf(deeper, sizeof deeper, "[%s]", deep);
    refuses(deeper, "is nested deeper than 100 levels");
    /* A million brackets: refused at the cap, without recursing a million deep. */
    size_t big = 1000000;
    char *flood = malloc(big + 1);
    memset(flood, '[', big);
    flood[big] = '\0';
    refuses(flood, "nested deeper than 100 levels");
    free(flood);
}
END_TEST

START_TEST(pretty_print_and_check)
{
    cJSON *j = NULL;
    ck_assert_int_eq(keel_json_parse_str("{\"a\":[1,{}],\"b\":{\"c\":\"\\\"q\\\"\"},\"e\":[]}", 0,
                                         NULL, &j, NULL),
                     KEEL_OK);
    char *s = keel_json_print_pretty(j);
    ck_assert_str_eq(s, "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": {\n    \"c\": "
                        "\"\\\"q\\\"\"\n  },\n  \"e\": []\n}");
    cJSON_free(s);
    cJSON_Delete(j);
    ck_assert_int_eq(keel_json_check(" {\"a\" : true} \n", 15, 0, NULL, NULL), KEEL_OK);
    keel_error err;
    ck_assert_int_eq(keel_json_check("{\"a\":tru}", 9, 0, NULL, &err), KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "the JSON text is not valid JSON: at byte 5 (/a)"), "%s",
                  err.message);
    ck_assert_int_eq(keel_json_parse_str(NULL, 0, "input", &j, &err), KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "input is missing"), "%s", err.message);
}
END_TEST

Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *t = tcase_create("json");
    tcase_add_test(t, numbers_keep_their_text);
    tcase_add_test(t, changed_and_made_numbers_print_their_value);
    tcase_add_test(t, refuses_nul_and_bad_utf8);
    tcase_add_test(t, reads_escapes_and_utf8);
    tcase_add_test(t, special_bytes_at_every_offset_in_a_word);
    tcase_add_test(t, keep_nul_reads_and_prints_u0000);
    tcase_add_test(t, refuses_what_rfc8259_refuses);
    tcase_add_test(t, names_once_unless_last_wins);
    tcase_add_test(t, unchecked_objects_leave_repeats_to_the_caller);
    tcase_add_test(t, nesting_is_capped_and_named);
    tcase_add_test(t, pretty_print_and_check);
    suite_add_tcase(s, t);
    return s;
}
