/* keelctl as a user runs it: exit codes, text and JSON output, error messages. $KEELCTL names
 * the binary (the Makefile sets it). */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Run keelctl with args; return its exit status and what it printed (stdout then stderr). */
static int keelctl(const char *args, char *out, size_t outsz)
{
    const char *bin = getenv("KEELCTL");
    ck_assert_msg(bin != NULL, "KEELCTL is not set");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

START_TEST(system_info_json_names_the_version)
{
    char out[8192];
    ck_assert_int_eq(keelctl("--json system-info", out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    ck_assert_msg(j != NULL, "not JSON: %s", out);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "serverVersion");
    ck_assert(cJSON_IsString(v) && strlen(v->valuestring) >= 5);
    cJSON *caps = cJSON_GetObjectItemCaseSensitive(j, "capabilities");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(caps, "supportsSchedules")));
    cJSON_Delete(j);

    ck_assert_int_eq(keelctl("system-info", out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "Server version"));
}
END_TEST

START_TEST(namespace_describe_default)
{
    char out[8192];
    ck_assert_int_eq(keelctl("namespace describe default", out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "Name            default"));
    ck_assert_ptr_nonnull(strstr(out, "Registered"));

    ck_assert_int_eq(keelctl("--json namespace describe default", out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    ck_assert_msg(j != NULL, "not JSON: %s", out);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring, "default");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "state")->valuestring, "Registered");
    cJSON_Delete(j);
}
END_TEST

START_TEST(errors_name_address_rpc_and_status)
{
    char out[8192];
    ck_assert_int_eq(keelctl("namespace describe keel-no-such-namespace", out, sizeof out), 1);
    ck_assert_ptr_nonnull(strstr(out, "DescribeNamespace"));
    ck_assert_ptr_nonnull(strstr(out, "NOT_FOUND"));
    ck_assert_ptr_nonnull(strstr(out, ":7233"));

    ck_assert_int_eq(keelctl("--address 127.0.0.1:1 --timeout 1s system-info", out, sizeof out),
                     1);
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.1:1"));
    ck_assert_ptr_nonnull(strstr(out, "UNAVAILABLE"));
}
END_TEST

START_TEST(usage_errors_exit_2)
{
    char out[8192];
    ck_assert_int_eq(keelctl("", out, sizeof out), 2);
    ck_assert_int_eq(keelctl("frobnicate", out, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(out, "frobnicate"));
    ck_assert_int_eq(keelctl("--bogus system-info", out, sizeof out), 2);
    ck_assert_int_eq(keelctl("namespace register", out, sizeof out), 2);
    ck_assert_int_eq(keelctl("namespace register x --retention 5parsecs", out, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(out, "5parsecs"));
    ck_assert_int_eq(keelctl("search-attribute add --name X --type Money", out, sizeof out), 2);
    ck_assert_int_eq(keelctl("--timeout soon system-info", out, sizeof out), 2);
    ck_assert_int_eq(keelctl("--help", out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: keelctl"));
}
END_TEST

START_TEST(if_not_exists_makes_registration_idempotent)
{
    char out[8192];
    ck_assert_int_eq(keelctl("namespace register default --if-not-exists", out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "already exists"));
    ck_assert_int_eq(keelctl("namespace register default", out, sizeof out), 1);
    ck_assert_ptr_nonnull(strstr(out, "ALREADY_EXISTS"));
    ck_assert_int_eq(keelctl("--namespace default search-attribute add --name ProcurementStage "
                             "--type Keyword --if-not-exists",
                             out, sizeof out),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "already exists"));
    /* Same name, other type: an error even with --if-not-exists. */
    ck_assert_int_eq(keelctl("--namespace default search-attribute add --name ProcurementStage "
                             "--type Int --if-not-exists",
                             out, sizeof out),
                     1);
    ck_assert_ptr_nonnull(strstr(out, "Keyword"));
}
END_TEST

Suite *keelctl_suite(void)
{
    Suite *s = suite_create("keelctl");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, system_info_json_names_the_version);
    tcase_add_test(tc, namespace_describe_default);
    tcase_add_test(tc, errors_name_address_rpc_and_status);
    tcase_add_test(tc, usage_errors_exit_2);
    tcase_add_test(tc, if_not_exists_makes_registration_idempotent);
    suite_add_tcase(s, tc);
    return s;
}
