/*
 * harness - shared helpers of the integration suites (see harness.h).
 */
#include "harness.h"

#include <check.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keel/replayer.h"

int64_t keel_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void keel_test_unique(char *out, size_t n, const char *prefix)
{
    static int counter;
    snprintf(out, n, "%s-%ld-%lld-%d", prefix, (long)getpid(),
             (long long)(keel_test_now_ms() % 100000000), ++counter);
}

const char *keel_test_model_server(void)
{
    const char *url = getenv("KEEL_MODEL_SERVER_URL");
    ck_assert_msg(url != NULL, "KEEL_MODEL_SERVER_URL is not set (make test-integration sets it)");
    return url;
}

typedef struct buffer {
    char *data;
    size_t len;
} buffer;

static size_t collect(char *p, size_t size, size_t n, void *user)
{
    buffer *b = user;
    char *grown = realloc(b->data, b->len + size * n + 1);
    ck_assert_ptr_nonnull(grown);
    memcpy(grown + b->len, p, size * n);
    b->len += size * n;
    grown[b->len] = '\0';
    b->data = grown;
    return size * n;
}

cJSON *keel_test_model_server_json(const char *path)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", keel_test_model_server(), path);
    buffer b = {0};
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    cJSON *doc = cJSON_Parse(b.data ? b.data : "");
    ck_assert_msg(doc != NULL, "not JSON from %s: %s", path, b.data ? b.data : "");
    free(b.data);
    return doc;
}

int keel_test_requests_tagged(const char *tag)
{
    char path[256];
    snprintf(path, sizeof path, "/_keel/stats?tag=%s", tag);
    cJSON *doc = keel_test_model_server_json(path);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(doc, "requests");
    ck_assert_msg(cJSON_IsNumber(n), "no request count for tag %s", tag);
    int count = n->valueint;
    cJSON_Delete(doc);
    return count;
}

pid_t keel_test_spawn_worker(const char *queue, const char *failpoint, const char *log)
{
    const char *bin = getenv("KEEL_WORKER");
    ck_assert_msg(bin != NULL, "KEEL_WORKER is not set (make test-integration sets it)");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("KEEL_TASK_QUEUE", queue, 1);
        setenv("KEEL_SHUTDOWN_GRACE", "1s", 1);
        if (failpoint)
            setenv("KEEL_FAILPOINT", failpoint, 1);
        else
            unsetenv("KEEL_FAILPOINT");
        if (freopen(log, "a", stderr) == NULL)
            _exit(126);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    return pid;
}

int keel_test_wait_exit(pid_t pid, int seconds)
{
    int st = 0;
    for (int i = 0; i < seconds * 20; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

void keel_test_replay_and_record(keel_client *client, const keel_workflow_type *type,
                                 const char *id, const char *run, const char *scenario)
{
    char *history;
    size_t len;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, run, KEEL_HISTORY_JSON, &history, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_msg(keel_replay(type, history, len, &err) == KEEL_OK, "%s: %s", id, err.message);
    const char *dir = getenv("KEEL_RECORD_HISTORIES");
    if (scenario && dir && dir[0]) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s/%s.json", dir, type->name, scenario);
        FILE *f = fopen(path, "w");
        ck_assert_msg(f != NULL, "cannot write %s", path);
        ck_assert_uint_eq(fwrite(history, 1, len, f), len);
        fclose(f);
    }
    free(history);
}

void keel_test_scenario(const char *id, const char *prefix, char *out, size_t n)
{
    const char *p = strncmp(id, prefix, strlen(prefix)) == 0 ? id + strlen(prefix) : id;
    snprintf(out, n, "%.*s", (int)strcspn(p, "-"), p);
}

keel_worker *keel_test_start_worker(keel_client *client, const char *queue,
                                    const keel_workflow_type *const *types, size_t n_types,
                                    const keel_activity_type *activities, size_t n_activities)
{
    keel_error err;
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.workflows = types;
    w.n_workflows = n_types;
    w.activities = activities;
    w.n_activities = n_activities;
    w.shutdown_grace_ms = 500;
    keel_worker *worker = NULL;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);
    return worker;
}

char *keel_test_query_until(keel_client *client, const char *id, const char *name, const char *text,
                            int64_t timeout_ms)
{
    char *answer = NULL;
    keel_error err = {0};
    for (int64_t until = keel_test_now_ms() + timeout_ms; keel_test_now_ms() < until;
         usleep(100 * 1000)) {
        free(answer);
        answer = NULL;
        if (keel_client_workflow_query(client, id, NULL, name, NULL, &answer, &err) == KEEL_OK &&
            strstr(answer, text))
            return answer;
    }
    ck_abort_msg("query %s of %s never answered with %s: last %s (%s)", name, id, text,
                 answer ? answer : "nothing", err.message);
    return NULL;
}

/* Start a run; KEEL_OK or the client's error in *err. */
static int start_run(keel_client *client, const char *type, const char *queue, const char *id,
                     const char *input, char **run, keel_error *err)
{
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = type;
    o.task_queue = queue;
    o.input_json = input;
    return keel_client_workflow_start(client, &o, run, err);
}

void keel_test_start_run(keel_client *client, const char *type, const char *queue,
                         const char *prefix, const char *input, char *id, size_t n, char **run)
{
    keel_test_unique(id, n, prefix);
    keel_error err;
    ck_assert_msg(start_run(client, type, queue, id, input, run, &err) == KEEL_OK, "start %s: %s",
                  id, err.message);
}

void keel_test_start_refused(keel_client *client, const char *type, const char *queue,
                             const char *input, const char *part)
{
    char id[128];
    keel_test_unique(id, sizeof id, "keel-refused");
    keel_error err;
    char *run = NULL;
    ck_assert_msg(start_run(client, type, queue, id, input, &run, &err) == KEEL_EINVAL,
                  "started %s with %s", id, input);
    ck_assert_ptr_null(run);
    ck_assert_msg(strstr(err.message, part), "'%s' lacks '%s'", err.message, part);
}

keel_workflow_outcome keel_test_finish(keel_client *client, const keel_workflow_type *type,
                                       const char *id, const char *run, int status,
                                       const char *scenario, int64_t timeout_ms)
{
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(client, id, run, timeout_ms, &out, &err) == KEEL_OK,
                  "%s", err.message);
    ck_assert_msg(out.status == status, "%s closed %s, not %s: %s", id,
                  keel_workflow_status_name(out.status), keel_workflow_status_name(status),
                  out.failure_message ? out.failure_message : out.result_json);
    keel_test_replay_and_record(client, type, id, out.run_id, scenario);
    return out;
}

int keel_test_keelctl(const char *args, char *out, size_t n)
{
    const char *bin = getenv("KEELCTL");
    ck_assert_msg(bin != NULL, "KEELCTL is not set");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}
