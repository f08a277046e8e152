/*
 * fuzz_llm_response - what a model provider answers llm.chat (activities/llm.c): an HTTP 200
 * body turned into the activity's result (choices[0].message, content, refusal, tool calls
 * checked against keel's tools, structured output validated against response_format.schema,
 * usage and cost), and an error body turned into a Temporal failure (the provider's message,
 * with the API key removed).
 *
 * Input: the activity's input JSON, a NUL byte, the response body. Without a NUL the whole input
 * is the body, answered for two fixed inputs (plain messages, and a response_format schema).
 * The run's workflow type is keel.AgentTask, whose grants cover keel's tools.
 *
 * Properties: an answer is strict JSON whose "parsed" (structured output) is the model's content
 * as written, numbers' text included; a refused answer reports a failure type; no failure message
 * carries the API key.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "activities/agent.h"
#include "activities/llm.h"
#include "activities/llm_internal.h"
#include "fuzz.h"
#include "keel/json.h"
#include "worker/activity.h"

#define MAX_LEN (128 * 1024)
#define API_KEY "sk-fuzz-0123456789abcdef"

/* Read-only after LLVMFuzzerInitialize: nothing an input does survives it. */
static keel_llm_config config;
static keel_toolbox *toolbox;
static keel_llm llm;

static const char plain_input[] =
    "{\"messages\":[{\"role\":\"user\",\"content\":\"Buy 3 laptops\"}]}";
static const char structured_input[] =
    "{\"model_tier\":\"strong\",\"messages\":[{\"role\":\"user\",\"content\":\"Buy 3 laptops\"}],"
    "\"response_format\":{\"name\":\"requisition\",\"strict\":true,\"schema\":{"
    "\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"item\",\"quantity\"],"
    "\"properties\":{\"item\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":200},"
    "\"quantity\":{\"type\":\"integer\",\"minimum\":1},"
    "\"unit_price_usd\":{\"type\":[\"number\",\"null\"],\"exclusiveMinimum\":0},"
    "\"category\":{\"enum\":[\"hardware\",\"software\",\"services\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"pattern\":\"^[a-z]+$\"},"
    "\"uniqueItems\":true}}}}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char base_url[] = "http://127.0.0.1:9/v1", model[] = "gpt-4o-mini", strong[] = "gpt-4o",
                key[] = API_KEY;
    config.base_url = base_url;
    config.api_key = key;
    config.model = model;
    config.strong_model = strong;
    config.timeout_ms = 1000;
    config.max_retry_delay_ms = 120000;
    keel_error err;
    if (keel_llm_config_set_prices(&config,
                                   "{\"gpt-4o-mini\":{\"input\":0.15,\"cached_input\":0.075,"
                                   "\"output\":0.6},\"gpt-4o\":{\"input\":2.5,\"output\":10}}",
                                   &err) != KEEL_OK)
        fuzz_fail("prices: %s", err.message);
    size_t n = keel_agent_tool_count();
    static keel_tool tools[64];
    if (n > sizeof tools / sizeof tools[0])
        fuzz_fail("more tools than this target has room for");
    for (size_t i = 0; i < n; i++)
        tools[i] = *keel_agent_tool_at(i);
    if (keel_toolbox_new(&toolbox, tools, n, keel_default_grants, keel_default_grants_count,
                         &err) != KEEL_OK)
        fuzz_fail("toolbox: %s", err.message);
    llm = (keel_llm){.config = &config, .ledger = NULL, .tools = toolbox};
    return 0;
}

/* Structured output: "parsed" is the model's content as it was, numbers' text included. */
static void same_output(const cJSON *result)
{
    const cJSON *parsed = cJSON_GetObjectItemCaseSensitive(result, "parsed");
    const char *content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(result, "content"));
    if (parsed == NULL)
        return;
    cJSON *original = NULL;
    if (content == NULL ||
        keel_json_parse_str(content, KEEL_JSON_STRICT, "content", &original, NULL) != KEEL_OK)
        fuzz_fail("a result has \"parsed\" but its content is not JSON");
    char *a = keel_json_print(parsed), *b = keel_json_print(original);
    if (a == NULL || b == NULL || strcmp(a, b) != 0)
        fuzz_fail("\"parsed\" differs from the model's content:\n%s\n%s", a ? a : "", b ? b : "");
    cJSON_free(a);
    cJSON_free(b);
    cJSON_Delete(original);
}

static void answer(const char *input, const char *body)
{
    keel_activity_ctx *ctx = keel_activity_offline_new("keel.AgentTask", "7");
    if (ctx == NULL)
        abort();
    char *result = NULL;
    int rc = keel_llm_answer_from_body(&llm, ctx, input, body, &result);
    if (rc == KEEL_OK) {
        cJSON *r = NULL;
        keel_error err;
        if (result == NULL ||
            keel_json_parse_str(result, KEEL_JSON_STRICT, "the result", &r, &err) != KEEL_OK ||
            !cJSON_IsObject(r))
            fuzz_fail("llm.chat's result is not a strict JSON object (%s): %s",
                      result ? err.message : "none", result ? result : "(null)");
        same_output(r);
        cJSON_Delete(r);
    } else if (keel_activity_offline_failure(ctx, NULL, NULL) == NULL) {
        fuzz_fail("llm.chat refused an answer (%d) without reporting a failure", rc);
    }
    free(result);
    keel_activity_offline_free(ctx);
}

static void error_body(const char *body, size_t len)
{
    static const long statuses[] = {400, 429, 500};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        keel_http_response r = {.status = statuses[i], .body = (char *)body, .len = len};
        keel_llm_failure f;
        keel_llm_classify_status(&r, API_KEY, 120000, 1795435200000LL, &f);
        if (strstr(f.message, API_KEY) != NULL)
            fuzz_fail("the API key reached a failure message: %s", f.message);
        if (f.type[0] == '\0')
            fuzz_fail("HTTP %ld classified without a failure type", statuses[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    char *input, *body;
    if (fuzz_split(data, size, &input, &body)) {
        answer(input, body);
        error_body(body, strlen(body));
    } else {
        answer(plain_input, input);
        answer(structured_input, input);
        error_body(input, strlen(input));
    }
    free(input);
    free(body);
    return 0;
}
