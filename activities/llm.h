/*
 * activities/llm.h - LLM inference: the `llm.chat` activity over an OpenAI-compatible Chat
 * Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server, keel's offline model server).
 *
 * keel is the only retry owner: the activity makes one HTTP request per attempt and turns the
 * answer into a Temporal failure the server's retry policy acts on (429 and 5xx retryable, with
 * Retry-After as the next retry delay; quota, 400, 401, 403, 404, 422 non-retryable with the
 * provider's message). A response is stored in the ledger before the activity returns it, so a
 * retry of the same activity reuses it instead of calling (and paying) the model again.
 *
 * Input (JSON):
 *   {"model": "gpt-4o-mini",             optional; the configured model by default
 *    "model_tier": "small" | "strong",   or instead: KEEL_MODEL or KEEL_MODEL_STRONG, so that a
 *                                        workflow tiers deterministically and the deployment
 *                                        names the models
 *    "conversation": "conv-id",          optional: the transcript lives in the ledger
 *    "messages": [ {role, content}, ...],  appended to the conversation once, or sent as is
 *    "tools": ["check_budget", ...],     optional; granted to the calling workflow type
 *    "tool_choice": "auto" | ...,        optional, passed through
 *    "response_format": {"name": "requisition", "schema": {...}, "strict": true},  optional
 *    "max_tokens": 800, "temperature": 0.2, "seed": 7}   optional
 * Result (JSON): {"id", "model", "request_id", "finish_reason", "content", "refusal",
 *   "tool_calls": [{"id", "name", "arguments" (text), "valid": true, "args": {...}} |
 *                  {..., "valid": false, "error": {"error", "tool", "errors": [...]}}],
 *   "parsed": {...} | "output_error": {"error", "errors": [...]}   (with response_format)
 *   "usage": {"prompt_tokens", "cached_tokens", "completion_tokens", "total_tokens",
 *             "cost_usd" (null when the model has no price)},
 *   "reused": false, "conversation": "conv-id"}
 * With a conversation, the assistant's message is appended to it too, so the workflow passes
 * only new messages (tool results, a correction) on the next turn.
 */
#ifndef KEEL_ACTIVITIES_LLM_H
#define KEEL_ACTIVITIES_LLM_H

#include <stdbool.h>
#include <stdint.h>

#include "activities/http.h"
#include "activities/ledger.h"
#include "activities/tools.h"
#include "keel/activity.h"
#include "keel/error.h"

/* USD per million tokens. */
typedef struct keel_llm_price {
    char *model;
    double input, cached_input, output;
} keel_llm_price;

typedef struct keel_llm_config {
    char *base_url;             /* ".../v1"; "/chat/completions" is appended */
    char *api_key;              /* may be NULL for local servers; never logged */
    char *model;                /* the default model, also the "small" tier */
    char *strong_model;         /* the "strong" tier, for escalations */
    long timeout_ms;            /* one HTTP exchange */
    int64_t max_retry_delay_ms; /* Retry-After is honoured up to this */
    keel_llm_price *prices;
    size_t n_prices;
} keel_llm_config;

/*
 * From the environment: OPENAI_BASE_URL (default https://api.openai.com/v1), OPENAI_API_KEY,
 * KEEL_MODEL (default gpt-4o-mini), KEEL_MODEL_STRONG (default gpt-4o), KEEL_LLM_TIMEOUT (duration,
 * default 120s), KEEL_LLM_MAX_RETRY_DELAY (default 2m), KEEL_PRICES (a JSON file of prices,
 * replacing the built-in table: {"model": {"input": 0.15, "cached_input": 0.075, "output": 0.6},
 * ...}). A bad value is KEEL_EINVAL naming the variable. Dispose with keel_llm_config_dispose.
 */
int keel_llm_config_from_env(keel_llm_config *cfg, keel_error *err);
void keel_llm_config_dispose(keel_llm_config *cfg);

/* Replace the price table with the one in json (the KEEL_PRICES format). */
int keel_llm_config_set_prices(keel_llm_config *cfg, const char *json, keel_error *err);

/* The cost of one call in USD; false when the model has no price. cached tokens are part of
 * prompt tokens (OpenAI's convention) and are priced at the cached rate. */
bool keel_llm_cost(const keel_llm_config *cfg, const char *model, int64_t prompt_tokens,
                   int64_t cached_tokens, int64_t completion_tokens, double *usd);

/* How a failed exchange becomes a Temporal failure. */
typedef struct keel_llm_failure {
    char type[48]; /* LlmRateLimited, LlmServerError, LlmQuotaExhausted, LlmInvalidRequest, ... */
    char message[KEEL_ERROR_MESSAGE_MAX];
    bool non_retryable;
    int64_t next_retry_delay_ms; /* 0: the retry policy's backoff */
} keel_llm_failure;

/*
 * Classify an HTTP answer that is not 2xx: x-should-retry overrides the status; the delay comes
 * from retry-after-ms, else Retry-After (seconds or an HTTP date, now_ms being the Unix time in
 * ms), clamped to max_delay_ms. api_key (may be NULL) is removed from the provider's message.
 */
void keel_llm_classify_status(const keel_http_response *resp, const char *api_key,
                              int64_t max_delay_ms, int64_t now_ms, keel_llm_failure *out);

/* Classify a transport error from keel_http_post_json (code and err as it returned them). */
void keel_llm_classify_transport(int code, const keel_error *err, keel_llm_failure *out);

/* Everything llm.chat needs, shared by all executor threads (all borrowed). */
typedef struct keel_llm {
    const keel_llm_config *config;
    keel_ledger *ledger;       /* NULL: no reuse and no conversations */
    const keel_toolbox *tools; /* checks the model's tool calls; may be NULL (no tools) */
    const struct keel_agent_metrics *metrics; /* NULL: metrics off (activities/metrics.h) */
} keel_llm;

/* The llm.chat activity; user_data is a keel_llm *. */
int keel_llm_chat_activity(keel_activity_ctx *ctx, const char *input_json, char **result_json,
                           void *user_data);

#endif
