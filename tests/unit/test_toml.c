/* src/util/toml.c: the TOML subset of client configuration files, and hostile input. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/toml.h"

static keel_toml_value *parse_ok(const char *text)
{
    keel_toml_value *root;
    keel_error err;
    int rc = keel_toml_parse(text, strlen(text), &root, &err);
    ck_assert_msg(rc == KEEL_OK, "%s: %s", text, err.message);
    return root;
}

/* Parsing fails and the message holds `want`. */
static void parse_bad(const char *text, size_t len, const char *want)
{
    keel_toml_value *root = (keel_toml_value *)1;
    keel_error err;
    ck_assert_msg(keel_toml_parse(text, len, &root, &err) != KEEL_OK, "accepted: %s", text);
    ck_assert_ptr_null(root);
    ck_assert_msg(strstr(err.message, want) != NULL, "'%s': got '%s', want '%s'", text, err.message,
                  want);
}

#define BAD(text, want) parse_bad((text), strlen(text), (want))

static const char *str_at(const keel_toml_value *root, const char *a, const char *b, const char *c)
{
    const keel_toml_value *v = keel_toml_get(keel_toml_get(keel_toml_get(root, a), b), c);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->type, KEEL_TOML_STRING);
    return v->str;
}

START_TEST(tables_keys_and_values)
{
    keel_toml_value *r = parse_ok("# top\n"
                                  "[profile.default]  # comment\n"
                                  "address = \"h:7233\"\n"
                                  "\"quoted key\" = 'lit\\eral'\n"
                                  "[ profile . 'dev' . tls ]\n"
                                  "disabled = false\n"
                                  "n = -1\r\n"
                                  "[profile.dev]\n"
                                  "grpc_meta = { a = \"1\", b.c = \"2\" }\n"
                                  "big = 9_223_372_036_854_775_807\n"
                                  "small = -9223372036854775808\n"
                                  "bits = 0b101\n"
                                  "oct = 0o17\n"
                                  "dotted.key = true\n");
    ck_assert_str_eq(str_at(r, "profile", "default", "address"), "h:7233");
    ck_assert_str_eq(str_at(r, "profile", "default", "quoted key"), "lit\\eral");
    const keel_toml_value *dev = keel_toml_get(keel_toml_get(r, "profile"), "dev");
    const keel_toml_value *tls = keel_toml_get(dev, "tls");
    ck_assert_int_eq(keel_toml_get(tls, "disabled")->type, KEEL_TOML_BOOL);
    ck_assert(!keel_toml_get(tls, "disabled")->boolean);
    ck_assert_int_eq(keel_toml_get(tls, "n")->integer, -1); /* CRLF line ends */
    ck_assert_str_eq(str_at(dev, "grpc_meta", "b", "c"), "2");
    ck_assert_int_eq(keel_toml_get(dev, "big")->integer, INT64_MAX);
    ck_assert_int_eq(keel_toml_get(dev, "small")->integer, INT64_MIN);
    ck_assert_int_eq(keel_toml_get(dev, "bits")->integer, 5);
    ck_assert_int_eq(keel_toml_get(dev, "oct")->integer, 15);
    ck_assert(keel_toml_get(keel_toml_get(dev, "dotted"), "key")->boolean);
    keel_toml_free(r);
}
END_TEST

START_TEST(strings_and_escapes)
{
    keel_toml_value *r = parse_ok("a = \"tab\\there \\\"q\\\" \\u00e9 \\U0001F600 \\\\\"\n"
                                  "pem = \"\"\"\n-----BEGIN CERTIFICATE-----\nMIIB\n"
                                  "-----END CERTIFICATE-----\n\"\"\"\n"
                                  "joined = \"\"\"one \\\n    two\"\"\"\n"
                                  "lit = '''\nC:\\path\n'''\n"
                                  "quotes = \"\"\"a\"\"\"\"\"\n"
                                  "empty = \"\"\n");
    ck_assert_str_eq(keel_toml_get(r, "a")->str, "tab\there \"q\" \xc3\xa9 \xf0\x9f\x98\x80 \\");
    ck_assert_str_eq(keel_toml_get(r, "pem")->str,
                     "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    ck_assert_str_eq(keel_toml_get(r, "joined")->str, "one two");
    ck_assert_str_eq(keel_toml_get(r, "lit")->str, "C:\\path\n");
    ck_assert_str_eq(keel_toml_get(r, "quotes")->str, "a\"\"");
    ck_assert_str_eq(keel_toml_get(r, "empty")->str, "");
    keel_toml_free(r);
}
END_TEST

START_TEST(errors_name_line_and_column)
{
    BAD("a = 1\nb = [1, 2]\n", "line 2, column 5: arrays are not supported");
    BAD("[[profile]]\n", "line 1, column 1: arrays of tables");
    BAD("a = 1.5\n", "floats, dates and times are not supported");
    BAD("a = 1979-05-27\n", "floats, dates and times");
    BAD("a = inf\n", "floats");
    BAD("a = 1\na = 2\n", "line 2, column 1: 'a' is defined twice (first on line 1)");
    BAD("[t]\n[t]\n", "line 2, column 2: the table 't' is defined twice");
    BAD("a.b = 1\n[a]\n", "the table 'a' is defined twice");
    BAD("a = 1\n[a]\n", "'a' is defined already as a value");
    BAD("a = 1\na.b = 2\n", "'a' is defined already");
    BAD("t = {}\n[t]\n", "defined already");
    BAD("a = \"open\n", "line 1, column 5: a string that does not end on its line");
    BAD("a = \"\"\"never\n", "a multi-line string that never ends");
    BAD("a = \"\\x41\"\n", "unknown escape '\\x'");
    BAD("a = \"\\u0000\"\n", "\\u0000 inside a string");
    BAD("a = \"\\ud800\"\n", "not a Unicode scalar value");
    BAD("a = \"\\u12\"\n", "needs 4 hex digits");
    BAD("a = 0123\n", "leading zero");
    BAD("a = 1__0\n", "underscore");
    BAD("a = 9223372036854775808\n", "out of the 64-bit range");
    BAD("a = +0x10\n", "a sign before");
    BAD("a = yes\n", "expected a value");
    BAD("a =\n", "a key with no value");
    BAD("a = 1 b = 2\n", "expected the end of the line");
    BAD("a b = 1\n", "expected '=' after the key 'a'");
    BAD("= 1\n", "expected a key");
    BAD("k\xc3\xa9 = 1\n", "expected '='");
    BAD("t = { a = 1,\n b = 2 }\n", "line 1");
    BAD("t = { a = 1, }\n", "trailing comma");
    BAD("[a\n", "expected ']'");
    BAD("a = 1\r\n\rb = 2\n", "line 2, column 1: a carriage return");
    BAD("a = \"\x01\"\n", "a control character (0x01)");
    BAD("# \x7f\n", "a control character (0x7f)");
    BAD("a = \"\xff\"\n", "invalid UTF-8 (byte 0xff)");
    BAD("a = \"\xed\xa0\x80\"\n", "invalid UTF-8"); /* an encoded surrogate */
    BAD("a = \"\"\"x\"\"\"\"\"\"\n", "too many quotes");
    parse_bad("a = \"x\0y\"\n", 10, "a NUL byte");
}
END_TEST

START_TEST(caps_are_enforced)
{
    /* the whole text */
    size_t n = KEEL_TOML_MAX_BYTES + 1;
    char *big = malloc(n + 1);
    memset(big, '#', n);
    big[n] = '\0';
    parse_bad(big, n, "over keel's limit of 1048576 bytes");
    /* one line */
    n = KEEL_TOML_MAX_LINE + 10;
    memset(big, 'x', n);
    memcpy(big, "# ", 2);
    big[n] = '\n';
    parse_bad(big, n + 1, "a line longer than 65536 bytes");
    /* a key */
    memset(big, 'k', 300);
    strcpy(big + 300, " = 1\n");
    BAD(big, "a key longer than 256 bytes");
    /* nesting: headers, dotted keys, inline tables */
    BAD("[a.b.c.d.e.f.g.h.i]\n", "more than 8 parts");
    BAD("a.b.c.d.e.f.g.h.i = 1\n", "more than 8 parts");
    BAD("[a.b.c.d.e.f.g.h]\ni.j = 1\n", "nested deeper than 8");
    BAD("a = {b = {c = {d = {e = {f = {g = {h = {i = 1}}}}}}}}\n", "nested deeper than 8");
    /* the number of keys */
    size_t keys = KEEL_TOML_MAX_KEYS + 1, off = 0;
    char *many = malloc(keys * 16);
    for (size_t i = 0; i < keys; i++)
        off += (size_t)sprintf(many + off, "k%zu = 1\n", i);
    parse_bad(many, off, "more than 4096 keys and tables");
    free(many);
    free(big);
}
END_TEST

START_TEST(empty_and_comment_only_texts_are_empty_tables)
{
    keel_toml_value *r = parse_ok("");
    ck_assert_int_eq(r->type, KEEL_TOML_TABLE);
    ck_assert_uint_eq(r->n_items, 0);
    keel_toml_free(r);
    r = parse_ok("# only\n\n   \t# comments\n");
    ck_assert_uint_eq(r->n_items, 0);
    ck_assert_ptr_null(keel_toml_get(r, "x"));
    ck_assert_ptr_null(keel_toml_get(NULL, "x"));
    keel_toml_free(r);
}
END_TEST

Suite *toml_suite(void)
{
    Suite *s = suite_create("toml");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, tables_keys_and_values);
    tcase_add_test(tc, strings_and_escapes);
    tcase_add_test(tc, errors_name_line_and_column);
    tcase_add_test(tc, caps_are_enforced);
    tcase_add_test(tc, empty_and_comment_only_texts_are_empty_tables);
    suite_add_tcase(s, tc);
    return s;
}
