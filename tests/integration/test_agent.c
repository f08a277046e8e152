/*
 * The agent activities end to end: llm.chat and tool.* on a real worker, against the real
 * Temporal server, the dev stack's PostgreSQL and keel's offline model server
 * ($KEEL_MODEL_SERVER_URL, started by the Makefile). Faults are asked of the model server with
 * [[keel:...]] directives in the messages (tools/model-server/README.md), and every test tags its
 * requests so that it can count exactly the model calls it caused.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#include "activities/agent.h"
#include "harness.h"
#include "activities/ledger.h"
#include "keel/keel.h"

#define TEST_API_KEY "sk-keel-test-0123456789abcdef"

/* ---- test workflows ---- */

/* LlmProbe: runs llm.chat once per input ({"chat": {...}, "attempts": n, "queue": q}) and
 * completes with its result, or with {"failed": type, "message": ...} when it failed. */
static int probe_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    cJSON *in = cJSON_Parse(input);
    cJSON *chat = cJSON_GetObjectItemCaseSensitive(in, "chat");
    const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(in, "attempts");
    const char *activity = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(in, "activity"));
    const char *queue = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(in, "queue"));
    char *chat_text = chat ? cJSON_PrintUnformatted(chat) : NULL;
    keel_retry_policy retry = {.initial_interval_ms = 200,
                               .maximum_attempts =
                                   cJSON_IsNumber(attempts) ? attempts->valueint : 1};
    keel_activity_options o = {
        .start_to_close_ms = 30000, .heartbeat_ms = 3000, .retry = &retry, .task_queue = queue};
    uint32_t seq = keel_workflow_activity(ctx, activity ? activity : "llm.chat", chat_text, &o);
    free(chat_text);
    cJSON_Delete(in);
    return seq ? KEEL_OK : KEEL_EINVAL;
}

static int probe_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind == KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_complete(ctx, ev->json);
    if (ev->kind == KEEL_EVENT_CANCEL_REQUESTED)
        return keel_workflow_cancel_activity(ctx, 1);
    if (ev->kind == KEEL_EVENT_ACTIVITY_CANCELED)
        return keel_workflow_cancelled(ctx, NULL);
    if (ev->kind != KEEL_EVENT_ACTIVITY_FAILED)
        return keel_workflow_error(ctx, "unexpected event %d", (int)ev->kind);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "failed", ev->failure_type ? ev->failure_type : "");
    cJSON_AddStringToObject(out, "message", ev->failure_message ? ev->failure_message : "");
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    int rc = keel_workflow_complete(ctx, text);
    free(text);
    return rc;
}

static const keel_workflow_type probe_type = {
    .name = "LlmProbe", .state_size = 1, .start = probe_start, .on_event = probe_event};
static const keel_workflow_type *const workflows[] = {&probe_type};

static const char *const probe_tools[] = {"check_budget", "get_budget", "list_vendors", "notify",
                                          NULL};
static const keel_tool_grant grants[] = {{"LlmProbe", probe_tools}};

/* ---- fixture ---- */

static keel_client *client;
static keel_agent *agent;
static keel_worker *worker;
static char queue[96];
static char hook_url[256];

static void setup(void)
{
    char base[256];
    snprintf(base, sizeof base, "%s/v1", keel_test_model_server());
    setenv("OPENAI_BASE_URL", base, 1);
    setenv("OPENAI_API_KEY", TEST_API_KEY, 1);
    setenv("KEEL_MODEL", "keel-scripted-small", 1);
    setenv("KEEL_LLM_TIMEOUT", "3s", 1);
    keel_test_unique(queue, sizeof queue, "keel-agent");
    snprintf(hook_url, sizeof hook_url, "%s/hooks/%s", keel_test_model_server(), queue);
    keel_agent_options ao = {.grants = grants,
                             .n_grants = sizeof grants / sizeof grants[0],
                             .notify_webhook_url = hook_url};
    keel_error err;
    ck_assert_msg(keel_agent_new(&agent, &ao, &err) == KEEL_OK, "%s", err.message);
    keel_connect_options o;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = queue;
    w.workflows = workflows;
    w.n_workflows = 1;
    w.activities = keel_agent_activities(agent, &w.n_activities);
    w.shutdown_grace_ms = 500;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);
}

static void teardown(void)
{
    keel_worker_free(worker);
    keel_client_free(client);
    keel_agent_free(agent);
}

/* ---- helpers ---- */

/* Start LlmProbe with input; its id (prefix + something unique) goes into id. */
static void start_probe(const char *input, const char *prefix, char *id, size_t idsz)
{
    keel_test_unique(id, idsz, prefix);
    keel_workflow_start_options o;
    keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    o.workflow_id = id;
    o.workflow_type = "LlmProbe";
    o.task_queue = queue;
    o.input_json = input;
    keel_error err;
    char *run = NULL;
    ck_assert_msg(keel_client_workflow_start(client, &o, &run, &err) == KEEL_OK, "%s", err.message);
    free(run);
}

/* Start LlmProbe, wait until it completes and return its result (a new object). */
static cJSON *run_probe(const char *input, const char *prefix, char *id, size_t idsz)
{
    start_probe(input, prefix, id, idsz);
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(client, id, NULL, 60000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_msg(out.status == KEEL_WORKFLOW_STATUS_COMPLETED, "%s",
                  out.failure_message ? out.failure_message : "");
    cJSON *result = cJSON_Parse(out.result_json);
    keel_workflow_outcome_dispose(&out);
    ck_assert_ptr_nonnull(result);
    return result;
}

/* run_probe() with input as cJSON, which it consumes. */
static cJSON *run_probe_json(cJSON *input, const char *prefix, char *id, size_t idsz)
{
    char *text = cJSON_PrintUnformatted(input);
    cJSON_Delete(input);
    cJSON *result = run_probe(text, prefix, id, idsz);
    free(text);
    return result;
}

/* {"chat": {"messages": [{"role": "user", "content": text}]}}; *chat (may be NULL) gets the
 * chat object, for the caller to add to. */
static cJSON *chat_input(const char *text, cJSON **chat)
{
    cJSON *in = cJSON_CreateObject();
    cJSON *c = cJSON_AddObjectToObject(in, "chat");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", text);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "messages"), m);
    if (chat)
        *chat = c;
    return in;
}

/* LlmProbe with one user message `text` and `attempts` attempts; its result. */
static cJSON *probe(const char *text, int attempts, char *id, size_t idsz)
{
    cJSON *in = chat_input(text, NULL);
    cJSON_AddNumberToObject(in, "attempts", attempts);
    return run_probe_json(in, "keel-llm", id, idsz);
}

/* The applicationFailureInfo of the run's last ActivityTaskFailed event (a new object). */
static cJSON *activity_failure(const char *id)
{
    char *json = NULL;
    size_t len = 0;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    cJSON *history = cJSON_Parse(json);
    free(json);
    cJSON *found = NULL, *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(history, "events"))
    {
        cJSON *a = cJSON_GetObjectItemCaseSensitive(ev, "activityTaskFailedEventAttributes");
        cJSON *f = cJSON_GetObjectItemCaseSensitive(a, "failure");
        if (f) {
            cJSON_Delete(found);
            found = cJSON_Duplicate(f, true);
        }
    }
    cJSON_Delete(history);
    ck_assert_msg(found != NULL, "run %s has no ActivityTaskFailed event", id);
    return found;
}

static const char *str(const cJSON *obj, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, name));
}

/* Run a fault once (one attempt) and check the failure's type, retryability and delay. */
static void expect_failure(const char *fault, const char *type, bool non_retryable,
                           const char *delay)
{
    char tag[96], text[256], id[128];
    keel_test_unique(tag, sizeof tag, "t");
    snprintf(text, sizeof text, "Hello. [[keel:tag=%s]] [[keel:%s]]", tag, fault);
    cJSON *result = probe(text, 1, id, sizeof id);
    ck_assert_msg(str(result, "failed") != NULL, "%s did not fail: %s", fault,
                  cJSON_PrintUnformatted(result));
    ck_assert_str_eq(str(result, "failed"), type);
    cJSON_Delete(result);
    cJSON *f = activity_failure(id);
    cJSON *info = cJSON_GetObjectItemCaseSensitive(f, "applicationFailureInfo");
    ck_assert_str_eq(str(info, "type"), type);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(info, "nonRetryable")) ==
                      non_retryable,
                  "%s: nonRetryable should be %d", fault, non_retryable);
    const char *got = str(info, "nextRetryDelay");
    if (delay)
        ck_assert_msg(got && strcmp(got, delay) == 0, "%s: nextRetryDelay %s, want %s", fault,
                      got ? got : "(none)", delay);
    else
        ck_assert_msg(got == NULL, "%s: unexpected nextRetryDelay %s", fault, got);
    /* The key never travels: not in the failure the history keeps. */
    char *text_f = cJSON_PrintUnformatted(f);
    ck_assert_ptr_null(strstr(text_f, TEST_API_KEY));
    free(text_f);
    cJSON_Delete(f);
    ck_assert_int_eq(keel_test_requests_tagged(tag), 1);
}

/* ---- llm.chat ---- */

START_TEST(chat_answers_with_usage_and_cost)
{
    char tag[96], text[256], id[128];
    keel_test_unique(tag, sizeof tag, "t");
    snprintf(text, sizeof text, "Say hello to the procurement team. [[keel:tag=%s]]", tag);
    cJSON *r = probe(text, 1, id, sizeof id);
    ck_assert_msg(str(r, "failed") == NULL, "%s", str(r, "message"));
    ck_assert_str_eq(str(r, "model"), "scripted:keel-scripted-small");
    ck_assert_ptr_nonnull(str(r, "content"));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "reused")));
    cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "usage");
    ck_assert_int_gt(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens")->valueint, 0);
    ck_assert_int_gt(cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valueint, 0);
    double cost = cJSON_GetObjectItemCaseSensitive(u, "cost_usd")->valuedouble;
    int64_t p = (int64_t)cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens")->valuedouble;
    int64_t c = (int64_t)cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valuedouble;
    /* keel-scripted-small is priced at USD 0.15 in / 0.60 out per million tokens. */
    ck_assert_double_eq_tol(cost, (p * 0.15 + c * 0.60) / 1e6, 1e-6);
    ck_assert_int_eq(keel_test_requests_tagged(tag), 1);
    cJSON_Delete(r);
}
END_TEST

START_TEST(rate_limits_are_retryable_with_the_providers_delay)
{
    expect_failure("fault=429 retry_after=3", "LlmRateLimited", false, "3s");
    expect_failure("fault=429 retry_after=9 retry_after_ms=1500", "LlmRateLimited", false,
                   "1.500s");
}
END_TEST

START_TEST(a_rate_limit_passes_on_the_next_attempt)
{
    char tag[96], text[256], id[128];
    keel_test_unique(tag, sizeof tag, "t");
    snprintf(text, sizeof text, "Hi [[keel:tag=%s]] [[keel:fault=429 retry_after=1 times=1 id=%s]]",
             tag, tag);
    cJSON *r = probe(text, 3, id, sizeof id);
    ck_assert_msg(str(r, "failed") == NULL, "%s", str(r, "message"));
    ck_assert_int_eq(keel_test_requests_tagged(tag), 2);
    cJSON_Delete(r);
}
END_TEST

START_TEST(quota_and_client_errors_are_not_retried)
{
    expect_failure("fault=429-quota", "LlmQuotaExhausted", true, NULL);
    expect_failure("fault=400", "LlmInvalidRequest", true, NULL);
    expect_failure("fault=401", "LlmAuth", true, NULL);
    expect_failure("fault=403", "LlmForbidden", true, NULL);
    expect_failure("fault=404", "LlmModelNotFound", true, NULL);
    expect_failure("fault=422", "LlmUnprocessable", true, NULL);
}
END_TEST

START_TEST(server_errors_and_broken_bodies_are_retryable)
{
    expect_failure("fault=500", "LlmServerError", false, NULL);
    expect_failure("fault=503", "LlmServerError", false, NULL);
    expect_failure("fault=malformed", "LlmMalformedResponse", false, NULL);
    expect_failure("fault=truncated", "LlmMalformedResponse", false, NULL);
    expect_failure("fault=empty-choices", "LlmMalformedResponse", false, NULL);
}
END_TEST

START_TEST(a_slow_provider_times_out_retryably)
{
    /* KEEL_LLM_TIMEOUT is 3 s in this suite. */
    expect_failure("fault=slow delay=20", "LlmTimeout", false, NULL);
}
END_TEST

START_TEST(bad_tool_calls_come_back_as_structured_errors)
{
    static const struct {
        const char *fault, *error;
    } cases[] = {{"unknown-tool", "unknown_tool"},
                 {"invalid-args", "invalid_arguments"},
                 {"bad-json-args", "arguments_not_json"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char tag[96], id[128];
        keel_test_unique(tag, sizeof tag, "t");
        char text[256];
        snprintf(text, sizeof text, "Check the budget. [[keel:tag=%s]] [[keel:fault=%s]]", tag,
                 cases[i].fault);
        cJSON *chat, *in = chat_input(text, &chat);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(chat, "tools"),
                             cJSON_CreateString("check_budget"));
        cJSON *r = run_probe_json(in, "keel-tools", id, sizeof id);
        cJSON *call = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "tool_calls"), 0);
        ck_assert_msg(call != NULL, "%s: no tool call in %s", cases[i].fault,
                      cJSON_PrintUnformatted(r));
        ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(call, "valid")));
        cJSON *e = cJSON_GetObjectItemCaseSensitive(call, "error");
        ck_assert_str_eq(str(e, "error"), cases[i].error);
        cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "errors"), 0);
        ck_assert_ptr_nonnull(str(first, "pointer"));
        ck_assert_ptr_nonnull(str(first, "reason"));
        cJSON_Delete(r);
    }
}
END_TEST

START_TEST(structured_output_is_parsed_and_validated)
{
    char tag[96], id[128], text[256];
    keel_test_unique(tag, sizeof tag, "t");
    snprintf(text, sizeof text, "Extract the requisition. [[keel:tag=%s]]", tag);
    cJSON *chat, *in = chat_input(text, &chat);
    cJSON_AddItemToObject(
        chat, "response_format",
        cJSON_Parse("{\"name\":\"requisition\",\"schema\":{\"type\":\"object\","
                    "\"additionalProperties\":false,\"required\":[\"item\",\"quantity\"],"
                    "\"properties\":{\"item\":{\"type\":\"string\",\"minLength\":3},"
                    "\"quantity\":{\"type\":\"integer\",\"minimum\":1}}}}"));
    cJSON *r = run_probe_json(in, "keel-structured", id, sizeof id);
    /* The offline server answers a schema it has no script for with an instance of it. */
    cJSON *parsed = cJSON_GetObjectItemCaseSensitive(r, "parsed");
    ck_assert_msg(parsed != NULL, "no parsed output: %s", cJSON_PrintUnformatted(r));
    ck_assert_int_ge(cJSON_GetObjectItemCaseSensitive(parsed, "quantity")->valueint, 1);
    cJSON_Delete(r);
}
END_TEST

/* The numbers of the keel_numbers scenario, as the model wrote them. */
static const char *const exact_numbers[] = {
    "\"id\":9007199254740993", "\"max_safe\":9007199254740991", "\"big\":12345678901234567891",
    "\"sum\":0.30000000000000004", "\"price\":4596.00"};

static void has_exact_numbers(const char *where, const char *text, bool pretty)
{
    for (size_t i = 0; i < sizeof exact_numbers / sizeof exact_numbers[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s", exact_numbers[i]);
        if (pretty) /* "name": value */
            snprintf(want, sizeof want, "%.*s %s",
                     (int)(strchr(exact_numbers[i], ':') - exact_numbers[i] + 1), exact_numbers[i],
                     strchr(exact_numbers[i], ':') + 1);
        ck_assert_msg(strstr(text, want), "%s lacks %s: %s", where, want, text);
    }
}

/* A number keel parses and prints again keeps its text: in llm.chat's `parsed`, in the response
 * the ledger stores, in the workflow's result and in keelctl --json. */
START_TEST(numbers_come_out_exactly_as_the_model_wrote_them)
{
    char id[128], text[256];
    snprintf(text, sizeof text, "Give the numbers.");
    cJSON *chat, *in = chat_input(text, &chat);
    cJSON_AddItemToObject(chat, "response_format",
                          keel_json_from("{\"name\":\"keel_numbers\",\"schema\":{\"type\":"
                                         "\"object\",\"required\":[\"big\"]}}"));
    char *input = keel_json_print(in);
    cJSON_Delete(in);
    start_probe(input, "keel-numbers", id, sizeof id);
    free(input);
    keel_workflow_outcome out;
    keel_error err;
    ck_assert_msg(keel_client_workflow_result(client, id, NULL, 60000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_msg(out.status == KEEL_WORKFLOW_STATUS_COMPLETED, "%s",
                  out.failure_message ? out.failure_message : "");
    /* The workflow result holds llm.chat's result, `parsed` included, as the worker printed it. */
    cJSON *r = keel_json_from(out.result_json);
    ck_assert_ptr_nonnull(r);
    char *parsed = keel_json_print(cJSON_GetObjectItemCaseSensitive(r, "parsed"));
    ck_assert_ptr_nonnull(parsed);
    has_exact_numbers("parsed", parsed, false);
    has_exact_numbers("the workflow result", out.result_json, false);
    cJSON_free(parsed);
    cJSON_Delete(r);
    keel_workflow_outcome_dispose(&out);

    static char shown[65536];
    char args[256];
    snprintf(args, sizeof args, "--json workflow result --id %s", id);
    ck_assert_msg(keel_test_keelctl(args, shown, sizeof shown) == 0, "%s", shown);
    has_exact_numbers("keelctl --json workflow result", shown, true);

    /* The stored response: the content string carries the text, escaped. */
    PGconn *db = PQconnectdb(getenv("DATABASE_URL"));
    ck_assert_int_eq(PQstatus(db), CONNECTION_OK);
    const char *p[] = {id};
    PGresult *res =
        PQexecParams(db, "SELECT response FROM keel_llm_responses WHERE workflow_id = $1", 1, NULL,
                     p, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(res), 1);
    cJSON *stored = keel_json_from(PQgetvalue(res, 0, 0));
    ck_assert_ptr_nonnull(stored);
    const cJSON *choice =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(stored, "choices"), 0);
    const char *content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(choice, "message"), "content"));
    ck_assert_ptr_nonnull(content);
    has_exact_numbers("the stored response", content, false);
    cJSON_Delete(stored);
    PQclear(res);
    PQfinish(db);
}
END_TEST

START_TEST(the_api_key_never_reaches_history_or_failures)
{
    /* expect_failure checks each failure's text; here the whole history of a call that
     * succeeded and one the provider refused (401 echoes part of a key on OpenAI). */
    char tag[96], id[128], text[256];
    keel_test_unique(tag, sizeof tag, "t");
    snprintf(text, sizeof text, "Hello [[keel:tag=%s]]", tag);
    cJSON_Delete(probe(text, 1, id, sizeof id));
    char *json = NULL;
    size_t len;
    keel_error err;
    ck_assert_int_eq(
        keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &json, &len, &err),
        KEEL_OK);
    ck_assert_ptr_null(strstr(json, TEST_API_KEY));
    ck_assert_ptr_null(strstr(json, "0123456789abcdef"));
    free(json);
}
END_TEST

/* ---- idempotency across a crash: keel-worker killed after the ledger stored the answer ---- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(a_worker_killed_after_the_answer_does_not_call_the_model_again)
{
    char tag[96], id[128], aq[128], log[] = "/tmp/keel-agent-log-XXXXXX";
    close(mkstemp(log));
    keel_test_unique(tag, sizeof tag, "t");
    keel_test_unique(aq, sizeof aq, "keel-agent-activities");
    /* The first keel-worker dies right after the ledger stored the model's answer. */
    pid_t first = keel_test_spawn_worker(aq, "llm.after_ledger_put", log);

    char input[512];
    snprintf(input, sizeof input,
             "{\"queue\":\"%s\",\"attempts\":5,\"chat\":{\"messages\":[{\"role\":\"user\","
             "\"content\":\"Summarize the quote. [[keel:tag=%s]]\"}]}}",
             aq, tag);
    start_probe(input, "keel-crash", id, sizeof id);
    ck_assert_int_eq(keel_test_wait_exit(first, 60), 137);
    ck_assert_int_eq(keel_test_requests_tagged(tag), 1);

    /* A new process: the server retries the attempt after its heartbeat timeout (3 s). */
    pid_t second = keel_test_spawn_worker(aq, NULL, log);
    keel_workflow_outcome out;
    keel_error err;
    int rc = keel_client_workflow_result(client, id, NULL, 60000, &out, &err);
    kill(second, SIGTERM);
    keel_test_wait_exit(second, 20);
    ck_assert_int_eq(rc, KEEL_OK);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    cJSON *r = cJSON_Parse(out.result_json);
    keel_workflow_outcome_dispose(&out);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "reused")), "%s",
                  cJSON_PrintUnformatted(r));
    cJSON_Delete(r);
    ck_assert_int_eq(keel_test_requests_tagged(tag), 1); /* the model was called once */
    char *logged = read_file(log);
    ck_assert_ptr_null(strstr(logged, TEST_API_KEY));
    free(logged);
    unlink(log);
}
END_TEST

/* ---- conversations (claim check) ---- */

static cJSON *chat_turn(const char *conversation, const char *content)
{
    char id[128];
    cJSON *chat, *in = chat_input(content, &chat);
    cJSON_AddStringToObject(chat, "conversation", conversation);
    cJSON *r = run_probe_json(in, "keel-conv", id, sizeof id);
    ck_assert_msg(str(r, "failed") == NULL, "%s", str(r, "message"));
    return r;
}

START_TEST(a_conversation_lives_in_the_ledger_and_turns_send_only_new_messages)
{
    char conv[96];
    keel_test_unique(conv, sizeof conv, "conv");
    cJSON_Delete(chat_turn(conv, "First question about laptops."));
    cJSON *r = chat_turn(conv, "Second question about monitors.");
    ck_assert_str_eq(str(r, "conversation"), conv);
    /* The second prompt held the whole transcript: more tokens than its own message. */
    int prompt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "usage"),
                                                  "prompt_tokens")
                     ->valueint;
    ck_assert_int_gt(prompt, (int)strlen("Second question about monitors.") / 4 + 2);
    cJSON_Delete(r);
    char *all = NULL;
    size_t count = 0;
    keel_error err;
    ck_assert_int_eq(
        keel_ledger_conversation_load(keel_agent_ledger(agent), conv, &all, &count, &err), KEEL_OK);
    ck_assert_int_eq(count, 4); /* user, assistant, user, assistant */
    cJSON *msgs = cJSON_Parse(all);
    ck_assert_str_eq(str(cJSON_GetArrayItem(msgs, 0), "role"), "user");
    ck_assert_str_eq(str(cJSON_GetArrayItem(msgs, 1), "role"), "assistant");
    ck_assert_str_eq(str(cJSON_GetArrayItem(msgs, 2), "content"),
                     "Second question about monitors.");
    cJSON_Delete(msgs);
    free(all);
}
END_TEST

/* ---- tool activities ---- */

static cJSON *tool_probe(const char *tool, const char *args_json)
{
    char input[1024], id[128];
    snprintf(input, sizeof input, "{\"activity\":\"tool.%s\",\"attempts\":3,\"chat\":%s}", tool,
             args_json);
    return run_probe(input, "keel-tool", id, sizeof id);
}

START_TEST(tool_activities_check_their_arguments_before_running)
{
    cJSON *ok = tool_probe("check_budget",
                           "{\"cost_center\":\"CC-1001\",\"amount_usd\":100,\"period\":null}");
    ck_assert_msg(str(ok, "failed") == NULL, "%s", str(ok, "message"));
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(ok, "fits"));
    cJSON_Delete(ok);

    cJSON *bad = tool_probe(
        "check_budget", "{\"cost_center\":\"CC-1001\",\"amount_usd\":\"lots\",\"period\":null}");
    ck_assert_str_eq(str(bad, "failed"), "ToolInvalidArguments");
    cJSON_Delete(bad);

    /* Registered, but not granted to LlmProbe. */
    cJSON *denied = tool_probe("create_purchase_order", "{}");
    ck_assert_str_eq(str(denied, "failed"), "ToolInvalidArguments");
    cJSON_Delete(denied);
}
END_TEST

/* ---- notify: one post per key, also when two attempts race ---- */

typedef struct racer {
    keel_ledger *ledger;
    const char *key;
    int rc;
} racer;

static void *race_notify(void *arg)
{
    racer *r = arg;
    keel_tool_call call = {
        .ledger = r->ledger, .idempotency_key = r->key, .notify_webhook_url = hook_url};
    cJSON *args = cJSON_Parse("{\"text\":\"PO-1 created\",\"channel\":\"#procurement\"}");
    char *result = NULL;
    keel_error err;
    r->rc = keel_toolbox_find(keel_agent_toolbox(agent), "notify")->run(&call, args, &result, &err);
    free(result);
    cJSON_Delete(args);
    return NULL;
}

START_TEST(notify_posts_once_per_key_even_when_attempts_race)
{
    char key[128];
    keel_test_unique(key, sizeof key, "notify");
    pthread_t t[6];
    racer r[6];
    for (int i = 0; i < 6; i++) {
        r[i] = (racer){.ledger = keel_agent_ledger(agent), .key = key};
        pthread_create(&t[i], NULL, race_notify, &r[i]);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    /* Losers of the race see the claim and fail retryably; a retry then reads the record. */
    for (int i = 0; i < 6; i++)
        if (r[i].rc != KEEL_OK) {
            ck_assert_int_eq(r[i].rc, KEEL_EUNAVAILABLE);
            race_notify(&r[i]);
            ck_assert_int_eq(r[i].rc, KEEL_OK);
        }
    char path[256];
    snprintf(path, sizeof path, "/_keel/hooks/%s", queue);
    cJSON *posts = keel_test_model_server_json(path);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(posts, "posts")), 1);
    /* ...with the call's idempotency key, for a receiver to de-duplicate by. */
    const char *sent = cJSON_GetStringValue(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(posts, "keys"), 0));
    ck_assert_ptr_nonnull(sent);
    ck_assert_str_eq(sent, key);
    cJSON_Delete(posts);
}
END_TEST

Suite *agent_suite(void);

Suite *agent_suite(void)
{
    Suite *s = suite_create("agent");
    TCase *llm = tcase_create("llm");
    tcase_add_checked_fixture(llm, setup, teardown);
    tcase_set_timeout(llm, 180);
    tcase_add_test(llm, chat_answers_with_usage_and_cost);
    tcase_add_test(llm, numbers_come_out_exactly_as_the_model_wrote_them);
    tcase_add_test(llm, rate_limits_are_retryable_with_the_providers_delay);
    tcase_add_test(llm, a_rate_limit_passes_on_the_next_attempt);
    tcase_add_test(llm, quota_and_client_errors_are_not_retried);
    tcase_add_test(llm, server_errors_and_broken_bodies_are_retryable);
    tcase_add_test(llm, a_slow_provider_times_out_retryably);
    tcase_add_test(llm, bad_tool_calls_come_back_as_structured_errors);
    tcase_add_test(llm, structured_output_is_parsed_and_validated);
    tcase_add_test(llm, the_api_key_never_reaches_history_or_failures);
    tcase_add_test(llm, a_worker_killed_after_the_answer_does_not_call_the_model_again);
    tcase_add_test(llm, a_conversation_lives_in_the_ledger_and_turns_send_only_new_messages);
    suite_add_tcase(s, llm);
    TCase *tools = tcase_create("tools");
    tcase_add_checked_fixture(tools, setup, teardown);
    tcase_set_timeout(tools, 120);
    tcase_add_test(tools, tool_activities_check_their_arguments_before_running);
    tcase_add_test(tools, notify_posts_once_per_key_even_when_attempts_race);
    suite_add_tcase(s, tools);
    return s;
}
