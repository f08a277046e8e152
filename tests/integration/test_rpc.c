/*
 * The client against the real Temporal server started by tools/devstack (TEMPORAL_ADDRESS,
 * default 127.0.0.1:7233), plus failure cases on loopback addresses where nothing answers.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "keel/keel.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static keel_client *connect_to(const char *address, int64_t timeout_ms)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    if (address)
        o.address = address;
    if (timeout_ms)
        o.rpc_timeout_ms = timeout_ms;
    keel_client *c = NULL;
    ck_assert_msg(keel_client_new(&c, &o, &err) == KEEL_OK, "%s", err.message);
    return c;
}

/* A namespace name no earlier run used. */
static void fresh_name(char *buf, size_t n, const char *prefix)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, n, "%s-%ld-%ld", prefix, (long)getpid(), (long)(ts.tv_nsec ^ ts.tv_sec));
}

START_TEST(system_info_returns_the_server_version)
{
    keel_client *c = connect_to(NULL, 0);
    keel_system_info info;
    keel_error err;
    ck_assert_msg(keel_client_system_info(c, &info, &err) == KEEL_OK, "%s", err.message);
    int major = -1, minor = -1, patch = -1;
    ck_assert_msg(sscanf(info.server_version, "%d.%d.%d", &major, &minor, &patch) == 3,
                  "not a version: '%s'", info.server_version);
    ck_assert_int_ge(major, 1);
    ck_assert_uint_gt(info.n_capabilities, 5);
    /* The official server of 1.31 supports schedules and sync updates' prerequisites. */
    ck_assert(keel_system_info_has(&info, "supports_schedules"));
    ck_assert(keel_system_info_has(&info, "signal_and_query_header"));
    ck_assert(!keel_system_info_has(&info, "no_such_capability"));
    keel_system_info_dispose(&info);
    keel_client_free(c);
}
END_TEST

START_TEST(namespace_register_then_describe_round_trips)
{
    keel_client *c = connect_to(NULL, 0);
    char name[96];
    fresh_name(name, sizeof name, "keel-test");
    keel_kv data[] = {{"team", "procurement"}, {"tier", "gold"}};
    keel_namespace_register_options r;
    keel_namespace_register_options_init(&r, KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION);
    r.name = name;
    r.description = "keel integration test";
    r.owner_email = "ops@keel.test";
    r.retention_ms = 48LL * 3600 * 1000;
    r.data = data;
    r.n_data = 2;
    keel_error err;
    ck_assert_msg(keel_client_namespace_register(c, &r, &err) == KEEL_OK, "%s", err.message);

    keel_namespace_info ns;
    ck_assert_msg(keel_client_namespace_describe(c, name, &ns, &err) == KEEL_OK, "%s", err.message);
    ck_assert_str_eq(ns.name, name);
    ck_assert_str_eq(ns.description, "keel integration test");
    ck_assert_str_eq(ns.owner_email, "ops@keel.test");
    ck_assert_int_eq(ns.retention_ms, 48LL * 3600 * 1000);
    ck_assert_int_eq(ns.state, KEEL_NAMESPACE_STATE_REGISTERED);
    ck_assert_uint_gt(strlen(ns.id), 0);
    ck_assert_uint_eq(ns.n_data, 2);
    for (size_t i = 0; i < ns.n_data; i++) {
        const char *want = strcmp(ns.data[i].key, "team") == 0 ? "procurement" : "gold";
        ck_assert_str_eq(ns.data[i].value, want);
    }
    keel_namespace_info_dispose(&ns);

    /* A second registration is refused as ALREADY_EXISTS, not retried. */
    ck_assert_int_eq(keel_client_namespace_register(c, &r, &err), KEEL_EEXISTS);
    ck_assert_int_eq(err.grpc_status, 6);
    ck_assert(!err.retryable);

    keel_namespace_list list;
    ck_assert_msg(keel_client_namespace_list(c, &list, &err) == KEEL_OK, "%s", err.message);
    bool saw_new = false, saw_default = false;
    for (size_t i = 0; i < list.count; i++) {
        saw_new |= strcmp(list.items[i].name, name) == 0;
        saw_default |= strcmp(list.items[i].name, "default") == 0;
    }
    ck_assert(saw_new);
    ck_assert(saw_default);
    keel_namespace_list_dispose(&list);
    keel_client_free(c);
}
END_TEST

START_TEST(unknown_namespace_is_not_found)
{
    keel_client *c = connect_to(NULL, 0);
    keel_namespace_info ns;
    keel_error err;
    int64_t t0 = now_ms();
    ck_assert_int_eq(keel_client_namespace_describe(c, "keel-no-such-namespace", &ns, &err),
                     KEEL_ENOTFOUND);
    ck_assert_int_eq(err.grpc_status, 5);
    ck_assert(!err.retryable);
    ck_assert_ptr_nonnull(strstr(err.message, "DescribeNamespace"));
    ck_assert_ptr_nonnull(strstr(err.message, "NOT_FOUND"));
    ck_assert_ptr_nonnull(strstr(err.message, keel_client_address(c)));
    ck_assert_ptr_nonnull(strstr(err.message, "keel-no-such-namespace"));
    ck_assert_str_eq(err.failure_type, "NamespaceNotFoundFailure");
    /* Not retried: a final answer comes back at once. */
    ck_assert_int_lt(now_ms() - t0, 2000);

    /* A namespaced call through the operator service also surfaces NOT_FOUND. */
    keel_search_attribute_list l;
    ck_assert_int_eq(keel_client_search_attributes_list(c, "keel-no-such-namespace", &l, &err),
                     KEEL_ENOTFOUND);
    ck_assert_int_eq(err.grpc_status, 5);
    keel_client_free(c);
}
END_TEST

/* A loopback port with nothing listening. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

START_TEST(unreachable_address_fails_within_its_deadline)
{
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", closed_port());
    keel_client *c = connect_to(address, 1500);
    keel_system_info info;
    keel_error err;
    int64_t t0 = now_ms();
    int rc = keel_client_system_info(c, &info, &err);
    int64_t took = now_ms() - t0;
    ck_assert_int_eq(rc, KEEL_EUNAVAILABLE);
    ck_assert_int_eq(err.grpc_status, 14);
    ck_assert(err.retryable);
    ck_assert_msg(took < 1500 + 1000, "took %lld ms", (long long)took);
    ck_assert_ptr_nonnull(strstr(err.message, address));
    ck_assert_ptr_nonnull(strstr(err.message, "GetSystemInfo"));
    ck_assert_ptr_nonnull(strstr(err.message, "UNAVAILABLE"));
    ck_assert_ptr_nonnull(strstr(err.message, "gave up after"));
    keel_client_free(c);
}
END_TEST

START_TEST(silent_server_times_out_at_the_deadline)
{
    /* A socket that listens but never speaks: the kernel completes the TCP handshake, then the
     * HTTP/2 preface gets no answer. The call must end at its deadline, not hang. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", ntohs(a.sin_port));

    keel_client *c = connect_to(address, 1000);
    keel_system_info info;
    keel_error err;
    int64_t t0 = now_ms();
    int rc = keel_client_system_info(c, &info, &err);
    int64_t took = now_ms() - t0;
    ck_assert_msg(rc == KEEL_ETIMEOUT || rc == KEEL_EUNAVAILABLE, "rc=%d %s", rc, err.message);
    ck_assert_msg(took >= 900 && took < 1000 + 1500, "took %lld ms", (long long)took);
    ck_assert_ptr_nonnull(strstr(err.message, address));
    keel_client_free(c);
    close(fd);
}
END_TEST

START_TEST(search_attributes_from_the_dev_stack_are_registered)
{
    keel_client *c = connect_to(NULL, 0);
    keel_search_attribute_list l;
    keel_error err;
    ck_assert_msg(keel_client_search_attributes_list(c, "default", &l, &err) == KEEL_OK, "%s",
                  err.message);
    struct {
        const char *name;
        int type;
        bool seen;
    } want[] = {{"ProcurementStage", KEEL_INDEXED_VALUE_TYPE_KEYWORD, false},
                {"AmountUSD", KEEL_INDEXED_VALUE_TYPE_DOUBLE, false},
                {"CostCenter", KEEL_INDEXED_VALUE_TYPE_KEYWORD, false},
                {"Requester", KEEL_INDEXED_VALUE_TYPE_KEYWORD, false},
                {"WorkflowType", KEEL_INDEXED_VALUE_TYPE_KEYWORD, false}};
    for (size_t i = 0; i < l.count; i++)
        for (size_t j = 0; j < sizeof want / sizeof want[0]; j++)
            if (strcmp(l.items[i].name, want[j].name) == 0) {
                ck_assert_int_eq(l.items[i].type, want[j].type);
                ck_assert(l.items[i].is_system == (j == 4));
                want[j].seen = true;
            }
    for (size_t j = 0; j < sizeof want / sizeof want[0]; j++)
        ck_assert_msg(want[j].seen, "%s missing", want[j].name);
    keel_search_attribute_list_dispose(&l);
    keel_client_free(c);
}
END_TEST

START_TEST(search_attribute_add_to_a_new_namespace)
{
    keel_client *c = connect_to(NULL, 0);
    char name[96];
    fresh_name(name, sizeof name, "keel-sa");
    keel_namespace_register_options r;
    keel_namespace_register_options_init(&r, KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION);
    r.name = name;
    keel_error err;
    ck_assert_msg(keel_client_namespace_register(c, &r, &err) == KEEL_OK, "%s", err.message);

    keel_search_attribute sa = {.name = "KeelTestScore", .type = KEEL_INDEXED_VALUE_TYPE_INT};
    /* The frontend learns of a new namespace when its registry refreshes: retry NOT_FOUND. */
    int rc;
    int64_t until = now_ms() + 30000;
    while ((rc = keel_client_search_attributes_add(c, name, &sa, 1, &err)) == KEEL_ENOTFOUND &&
           now_ms() < until)
        usleep(250 * 1000);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);

    keel_search_attribute_list l;
    ck_assert_msg(keel_client_search_attributes_list(c, name, &l, &err) == KEEL_OK, "%s",
                  err.message);
    bool found = false;
    for (size_t i = 0; i < l.count; i++)
        if (strcmp(l.items[i].name, "KeelTestScore") == 0) {
            found = true;
            ck_assert_int_eq(l.items[i].type, KEEL_INDEXED_VALUE_TYPE_INT);
            ck_assert(!l.items[i].is_system);
        }
    ck_assert(found);
    keel_search_attribute_list_dispose(&l);
    keel_client_free(c);
}
END_TEST

Suite *rpc_suite(void)
{
    Suite *s = suite_create("rpc");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, system_info_returns_the_server_version);
    tcase_add_test(tc, namespace_register_then_describe_round_trips);
    tcase_add_test(tc, unknown_namespace_is_not_found);
    tcase_add_test(tc, unreachable_address_fails_within_its_deadline);
    tcase_add_test(tc, silent_server_times_out_at_the_deadline);
    tcase_add_test(tc, search_attributes_from_the_dev_stack_are_registered);
    tcase_add_test(tc, search_attribute_add_to_a_new_namespace);
    suite_add_tcase(s, tc);
    return s;
}
