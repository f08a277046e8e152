/*
 * The client against the real Temporal server started by tools/devstack (TEMPORAL_ADDRESS,
 * default 127.0.0.1:7233), plus failure cases on loopback addresses where nothing answers.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "keel/keel.h"
#include "proto/proto.h"
#include "transport/transport.h"

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

/* ---- the transport's asynchronous calls (one network thread per transport) ---- */

#define WF(m) ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})

static keel_transport *transport_to(const char *address, int64_t timeout_ms)
{
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_error err;
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    if (address)
        o.address = address;
    if (timeout_ms)
        o.rpc_timeout_ms = timeout_ms;
    keel_transport *t = NULL;
    ck_assert_msg(keel_transport_new(&t, &o, &err) == KEEL_OK, "%s", err.message);
    return t;
}

/* Threads of this process, or those of them named `name`. */
static int count_threads(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (name == NULL) {
            n++;
            continue;
        }
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* the thread just ended */
        if (fgets(comm, sizeof comm, f))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
        n += strcmp(comm, name) == 0;
    }
    closedir(d);
    return n;
}

/* Async callbacks write here; the test thread waits on `cv`. */
#define N_ASYNC 200
typedef struct async_slot {
    int rc;
    bool done;
    bool on_net_thread;
    char name[128];                       /* the namespace DescribeNamespace answered with */
    char message[KEEL_ERROR_MESSAGE_MAX]; /* the error */
    int64_t done_ms;
} async_slot;

static pthread_mutex_t async_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t async_cv = PTHREAD_COND_INITIALIZER;
static int async_done;

static void async_reset(void)
{
    pthread_mutex_lock(&async_mu);
    async_done = 0;
    pthread_mutex_unlock(&async_mu);
}

static bool thread_is_net(void)
{
    char comm[32] = "";
    FILE *f = fopen("/proc/thread-self/comm", "r");
    if (f) {
        if (fgets(comm, sizeof comm, f))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
    }
    return strcmp(comm, "keel-net") == 0;
}

static void on_describe(void *userdata, int rc, ProtobufCMessage *response,
                        ProtobufCMessage *partial, const keel_error *err)
{
    async_slot *s = userdata;
    s->rc = rc;
    s->on_net_thread = thread_is_net();
    s->done_ms = now_ms();
    if (rc == KEEL_OK) {
        Temporal__Api__Workflowservice__V1__DescribeNamespaceResponse *r = (void *)response;
        snprintf(s->name, sizeof s->name, "%s",
                 r->namespace_info && r->namespace_info->name ? r->namespace_info->name : "");
        protobuf_c_message_free_unpacked(response, NULL);
    } else {
        snprintf(s->message, sizeof s->message, "%s", err->message);
    }
    ck_assert_ptr_null(partial);
    pthread_mutex_lock(&async_mu);
    s->done = true;
    async_done++;
    pthread_cond_broadcast(&async_cv);
    pthread_mutex_unlock(&async_mu);
}

/* Wait until `n` callbacks have run, for at most timeout_ms; how many ran. */
static int async_wait(int n, int64_t timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;
    pthread_mutex_lock(&async_mu);
    while (async_done < n && now_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&async_cv, &async_mu, &ts);
    }
    int done = async_done;
    pthread_mutex_unlock(&async_mu);
    return done;
}

START_TEST(many_concurrent_async_calls_get_their_own_replies)
{
    keel_transport *t = transport_to(NULL, 0);
    int threads_before = count_threads(NULL);
    static async_slot slots[N_ASYNC];
    memset(slots, 0, sizeof slots);
    async_reset();
    /* Even calls ask for "default" (answered), odd ones for a namespace of their own that does
     * not exist (NOT_FOUND naming it): every callback must get its own call's answer. */
    char names[N_ASYNC][64];
    for (int i = 0; i < N_ASYNC; i++) {
        if (i % 2 == 0)
            snprintf(names[i], sizeof names[i], "default");
        else
            snprintf(names[i], sizeof names[i], "rpc-async-missing-%d-%d", (int)getpid(), i);
        Temporal__Api__Workflowservice__V1__DescribeNamespaceRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_NAMESPACE_REQUEST__INIT;
        req.namespace_ = names[i];
        keel_call_options co = {.retry = true, .timeout_ms = 20000};
        keel_error err;
        ck_assert_msg(
            keel_transport_call_async(
                t, WF("DescribeNamespace"), (ProtobufCMessage *)&req,
                &temporal__api__workflowservice__v1__describe_namespace_response__descriptor, &co,
                on_describe, &slots[i], &err) == KEEL_OK,
            "%s", err.message);
    }
    /* 200 calls in flight, no thread per call. */
    int threads_during = count_threads(NULL);
    ck_assert_int_eq(async_wait(N_ASYNC, 20000), N_ASYNC);
    for (int i = 0; i < N_ASYNC; i++) {
        ck_assert(slots[i].done);
        ck_assert(slots[i].on_net_thread);
        if (i % 2 == 0) {
            ck_assert_msg(slots[i].rc == KEEL_OK, "%d: %s", i, slots[i].message);
            ck_assert_str_eq(slots[i].name, "default");
        } else {
            ck_assert_int_eq(slots[i].rc, KEEL_ENOTFOUND);
            ck_assert_msg(strstr(slots[i].message, names[i]) != NULL, "%d: %s", i,
                          slots[i].message);
        }
    }
    ck_assert_msg(threads_during <= threads_before + 4, "threads %d -> %d", threads_before,
                  threads_during);
    keel_transport_free(t);
}
END_TEST

/* Named threads, once the count settles at `want` (a new thread names itself). */
static int named_threads(const char *name, int want)
{
    int n = count_threads(name);
    for (int i = 0; i < 100 && n != want; i++) {
        usleep(10 * 1000);
        n = count_threads(name);
    }
    return n;
}

/* Undecoded answers, decoded on the test's thread. */
static keel_transport_reply *replies[20];
static int reply_rcs[20];

static void on_reply(void *userdata, int rc, keel_transport_reply *reply, const keel_error *err)
{
    int i = (int)(intptr_t)userdata;
    (void)err;
    pthread_mutex_lock(&async_mu);
    replies[i] = reply;
    reply_rcs[i] = rc;
    async_done++;
    pthread_cond_broadcast(&async_cv);
    pthread_mutex_unlock(&async_mu);
}

START_TEST(undecoded_answers_are_decoded_by_the_caller)
{
    keel_transport *t = transport_to(NULL, 0);
    async_reset();
    memset(replies, 0, sizeof replies);
    Temporal__Api__Workflowservice__V1__DescribeNamespaceRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_NAMESPACE_REQUEST__INIT;
    req.namespace_ = "default";
    keel_error err;
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(keel_transport_call_async_reply(t, WF("DescribeNamespace"),
                                                         (ProtobufCMessage *)&req, NULL, on_reply,
                                                         (void *)(intptr_t)i, &err),
                         KEEL_OK);
    ck_assert_int_eq(async_wait(20, 20000), 20);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(reply_rcs[i], KEEL_OK);
        ck_assert_ptr_nonnull(replies[i]);
        ProtobufCMessage *m = NULL;
        if (i == 19) {
            keel_transport_reply_free(replies[i]); /* dropped unread */
            continue;
        }
        /* Decoded as the wrong type: refused, and the reply is freed all the same. */
        const ProtobufCMessageDescriptor *type =
            i == 18 ? &temporal__api__workflowservice__v1__get_system_info_response__descriptor
                    : &temporal__api__workflowservice__v1__describe_namespace_response__descriptor;
        int rc = keel_transport_reply_decode(replies[i], type, &m, NULL, &err);
        if (i == 18) {
            if (rc == KEEL_OK)
                protobuf_c_message_free_unpacked(m, NULL);
            continue;
        }
        ck_assert_msg(rc == KEEL_OK, "%s", err.message);
        Temporal__Api__Workflowservice__V1__DescribeNamespaceResponse *r = (void *)m;
        ck_assert_str_eq(r->namespace_info->name, "default");
        protobuf_c_message_free_unpacked(m, NULL);
    }
    keel_transport_free(t);
}
END_TEST

START_TEST(each_transport_has_exactly_one_network_thread)
{
    int before = count_threads("keel-net");
    keel_transport *a = transport_to(NULL, 0);
    ck_assert_int_eq(named_threads("keel-net", before + 1), before + 1);
    keel_transport *b = transport_to(NULL, 0);
    ck_assert_int_eq(named_threads("keel-net", before + 2), before + 2);
    /* Calls from many threads at once add none. */
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    keel_error err;
    ck_assert_msg(keel_transport_call(
                      a, WF("GetSystemInfo"), (ProtobufCMessage *)&req,
                      &temporal__api__workflowservice__v1__get_system_info_response__descriptor,
                      &resp, NULL, &err) == KEEL_OK,
                  "%s", err.message);
    protobuf_c_message_free_unpacked(resp, NULL);
    ck_assert_int_eq(named_threads("keel-net", before + 2), before + 2);
    keel_transport_free(a);
    ck_assert_int_eq(named_threads("keel-net", before + 1), before + 1);
    keel_transport_free(b);
    ck_assert_int_eq(named_threads("keel-net", before), before);
}
END_TEST

/* A long poll on a queue nobody feeds: the server holds it for up to a minute. */
static Temporal__Api__Workflowservice__V1__PollActivityTaskQueueRequest *
long_poll_request(keel_transport *t, char *queue, size_t n)
{
    static Temporal__Api__Workflowservice__V1__PollActivityTaskQueueRequest req;
    static Temporal__Api__Taskqueue__V1__TaskQueue tq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(queue, n, "rpc-idle-%d-%ld", (int)getpid(), (long)ts.tv_nsec);
    temporal__api__workflowservice__v1__poll_activity_task_queue_request__init(&req);
    temporal__api__taskqueue__v1__task_queue__init(&tq);
    tq.name = queue;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.task_queue = &tq;
    req.identity = "rpc-test";
    return &req;
}

static void on_poll(void *userdata, int rc, ProtobufCMessage *response, ProtobufCMessage *partial,
                    const keel_error *err)
{
    async_slot *s = userdata;
    (void)partial;
    s->rc = rc;
    s->done_ms = now_ms();
    if (response)
        protobuf_c_message_free_unpacked(response, NULL);
    if (rc != KEEL_OK)
        snprintf(s->message, sizeof s->message, "%s", err->message);
    pthread_mutex_lock(&async_mu);
    s->done = true;
    async_done++;
    pthread_cond_broadcast(&async_cv);
    pthread_mutex_unlock(&async_mu);
}

/* A loopback socket that accepts connections and never speaks: its address. */
static int silent_server(char *address, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 64), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    snprintf(address, n, "127.0.0.1:%d", ntohs(a.sin_port));
    return fd;
}

START_TEST(a_call_past_its_deadline_fails_with_deadline_exceeded)
{
    /* The frontend answers a long poll early, and refuses a short one, so the peer here never
     * answers at all. */
    char address[64];
    int fd = silent_server(address, sizeof address);
    keel_transport *t = transport_to(address, 0);
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest sreq =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    const ProtobufCMessage *req = (ProtobufCMessage *)&sreq;
    const ProtobufCMessageDescriptor *type =
        &temporal__api__workflowservice__v1__get_system_info_response__descriptor;
    keel_call_options co = {.timeout_ms = 1000, .retry = false};
    /* Blocking. */
    ProtobufCMessage *resp = NULL;
    keel_error err;
    int64_t t0 = now_ms();
    int rc = keel_transport_call(t, WF("GetSystemInfo"), req, type, &resp, &co, &err);
    int64_t took = now_ms() - t0;
    ck_assert_msg(rc == KEEL_ETIMEOUT, "rc=%d %s", rc, err.message);
    ck_assert_int_eq(err.grpc_status, 4);
    ck_assert_ptr_nonnull(strstr(err.message, "DEADLINE_EXCEEDED"));
    ck_assert_ptr_null(resp);
    ck_assert_msg(took >= 950 && took < 2500, "took %lld ms", (long long)took);
    /* Asynchronous, several at once, each with its own deadline. */
    static async_slot slots[4];
    memset(slots, 0, sizeof slots);
    async_reset();
    t0 = now_ms();
    for (int i = 0; i < 4; i++) {
        keel_call_options c = co;
        c.timeout_ms = 500 + 500 * i;
        ck_assert_int_eq(keel_transport_call_async(t, WF("GetSystemInfo"), req, type, &c, on_poll,
                                                   &slots[i], &err),
                         KEEL_OK);
    }
    ck_assert_int_eq(async_wait(4, 10000), 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(slots[i].rc == KEEL_ETIMEOUT, "%d: rc=%d %s", i, slots[i].rc,
                      slots[i].message);
        ck_assert_ptr_nonnull(strstr(slots[i].message, "DEADLINE_EXCEEDED"));
        int64_t after = slots[i].done_ms - t0;
        ck_assert_msg(after >= 450 + 500 * i && after < 1500 + 500 * i, "%d after %lld ms", i,
                      (long long)after);
    }
    keel_transport_free(t);
    close(fd);
}
END_TEST

typedef struct blocking_poll {
    keel_transport *t;
    const ProtobufCMessage *req;
    int rc;
    int64_t done_ms;
} blocking_poll;

static void *poll_blocking(void *arg)
{
    blocking_poll *b = arg;
    keel_call_options co = {.timeout_ms = 60000, .retry = true};
    ProtobufCMessage *resp = NULL;
    keel_error err;
    b->rc = keel_transport_call(
        b->t, WF("PollActivityTaskQueue"), b->req,
        &temporal__api__workflowservice__v1__poll_activity_task_queue_response__descriptor, &resp,
        &co, &err);
    b->done_ms = now_ms();
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return NULL;
}

START_TEST(freeing_the_transport_cancels_long_polls_at_once)
{
    keel_transport *t = transport_to(NULL, 0);
    char queue[96];
    const ProtobufCMessage *req = (ProtobufCMessage *)long_poll_request(t, queue, sizeof queue);
    static async_slot slots[8];
    memset(slots, 0, sizeof slots);
    async_reset();
    keel_error err;
    for (int i = 0; i < 8; i++) {
        keel_call_options co = {.timeout_ms = 60000, .retry = true};
        ck_assert_int_eq(
            keel_transport_call_async(
                t, WF("PollActivityTaskQueue"), req,
                &temporal__api__workflowservice__v1__poll_activity_task_queue_response__descriptor,
                &co, on_poll, &slots[i], &err),
            KEEL_OK);
    }
    /* A cancel handle ends one call (and only it) at once. */
    keel_call_cancel *cancel = keel_call_cancel_new();
    static async_slot one;
    memset(&one, 0, sizeof one);
    keel_call_options cco = {.timeout_ms = 60000, .retry = true, .cancel = cancel};
    ck_assert_int_eq(
        keel_transport_call_async(
            t, WF("PollActivityTaskQueue"), req,
            &temporal__api__workflowservice__v1__poll_activity_task_queue_response__descriptor,
            &cco, on_poll, &one, &err),
        KEEL_OK);
    blocking_poll b = {.t = t, .req = req};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, poll_blocking, &b), 0);
    usleep(500 * 1000); /* the polls reach the server */
    int64_t t0 = now_ms();
    keel_call_cancel_trigger(cancel);
    ck_assert_int_eq(async_wait(1, 3000), 1);
    ck_assert(one.done);
    ck_assert_int_eq(one.rc, KEEL_ECANCELLED);
    ck_assert_msg(one.done_ms - t0 < 1000, "cancel took %lld ms", (long long)(one.done_ms - t0));
    for (int i = 0; i < 8; i++)
        ck_assert(!slots[i].done);
    /* Now the transport goes, with nine polls in flight. */
    t0 = now_ms();
    keel_transport_free(t);
    int64_t took = now_ms() - t0;
    ck_assert_msg(took < 1000, "free took %lld ms", (long long)took);
    pthread_join(th, NULL);
    ck_assert_int_eq(b.rc, KEEL_ECANCELLED);
    ck_assert_int_lt(b.done_ms - t0, 1000);
    for (int i = 0; i < 8; i++) {
        ck_assert(slots[i].done);
        ck_assert_int_eq(slots[i].rc, KEEL_ECANCELLED);
    }
    keel_call_cancel_free(cancel);
}
END_TEST

START_TEST(a_call_waiting_to_retry_is_cancelled_at_once)
{
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", closed_port());
    keel_transport *t = transport_to(address, 0);
    keel_call_cancel *cancel = keel_call_cancel_new();
    static async_slot s;
    memset(&s, 0, sizeof s);
    async_reset();
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    /* A 60 s budget: backoffs grow to 6 s; UNAVAILABLE comes back at once each time. */
    keel_call_options co = {.timeout_ms = 60000, .retry = true, .cancel = cancel};
    keel_error err;
    ck_assert_int_eq(keel_transport_call_async(
                         t, WF("GetSystemInfo"), (ProtobufCMessage *)&req,
                         &temporal__api__workflowservice__v1__get_system_info_response__descriptor,
                         &co, on_poll, &s, &err),
                     KEEL_OK);
    usleep(1500 * 1000); /* a few attempts, then a backoff of ~800 ms to 1.6 s */
    ck_assert(!s.done);
    int64_t t0 = now_ms();
    keel_call_cancel_trigger(cancel);
    ck_assert_int_eq(async_wait(1, 3000), 1);
    ck_assert_int_eq(s.rc, KEEL_ECANCELLED);
    ck_assert_msg(s.done_ms - t0 < 200, "cancel took %lld ms", (long long)(s.done_ms - t0));
    ck_assert_ptr_nonnull(strstr(s.message, "UNAVAILABLE"));
    /* The handle refuses later calls at once. */
    ck_assert_int_eq(keel_transport_call_async(
                         t, WF("GetSystemInfo"), (ProtobufCMessage *)&req,
                         &temporal__api__workflowservice__v1__get_system_info_response__descriptor,
                         &co, on_poll, &s, &err),
                     KEEL_ECANCELLED);
    keel_transport_free(t);
    keel_call_cancel_free(cancel);
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
    TCase *async = tcase_create("async");
    tcase_set_timeout(async, 60);
    tcase_add_test(async, many_concurrent_async_calls_get_their_own_replies);
    tcase_add_test(async, each_transport_has_exactly_one_network_thread);
    tcase_add_test(async, undecoded_answers_are_decoded_by_the_caller);
    tcase_add_test(async, a_call_past_its_deadline_fails_with_deadline_exceeded);
    tcase_add_test(async, freeing_the_transport_cancels_long_polls_at_once);
    tcase_add_test(async, a_call_waiting_to_retry_is_cancelled_at_once);
    suite_add_tcase(s, async);
    return s;
}
