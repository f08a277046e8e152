/*
 * activities/llm.c - the llm.chat activity: request, classification, ledger reuse, result.
 *
 * One attempt is: read the input; if the ledger holds this activity's response, answer from it;
 * otherwise append the new messages to the conversation, send the whole transcript once, turn a
 * failed exchange into a Temporal failure, store a good response in the ledger, and answer. The
 * answer is rebuilt from the stored response the same way in both cases, so a reused response is
 * indistinguishable from a fresh one except for "reused": true.
 */
#include "activities/llm.h"
#include "activities/llm_internal.h"

#include "activities/failpoint.h"
#include "activities/metrics.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "keel/duration.h"
#include "keel/schema.h"
#include "keel/json.h"
#include "keel/trace.h"

/* ---- configuration ---- */

static const struct {
    const char *model;
    double input, cached_input, output;
} builtin_prices[] = {
    /* keel's offline model server: priced like the small and large models it stands in for, so
     * that the demo's spend figures are realistic. */
    {"keel-scripted-small", 0.15, 0.075, 0.60}, {"keel-scripted-large", 2.50, 1.25, 10.00},
    {"gpt-4o-mini", 0.15, 0.075, 0.60},         {"gpt-4o", 2.50, 1.25, 10.00},
    {"gpt-4.1-mini", 0.40, 0.10, 1.60},         {"gpt-4.1", 2.00, 0.50, 8.00},
};

static void free_prices(keel_llm_config *cfg)
{
    for (size_t i = 0; i < cfg->n_prices; i++)
        free(cfg->prices[i].model);
    free(cfg->prices);
    cfg->prices = NULL;
    cfg->n_prices = 0;
}

static int builtin_price_table(keel_llm_config *cfg, keel_error *err)
{
    size_t n = sizeof builtin_prices / sizeof builtin_prices[0];
    cfg->prices = calloc(n, sizeof *cfg->prices);
    if (!cfg->prices)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        keel_llm_price *p = &cfg->prices[cfg->n_prices++];
        if (!(p->model = strdup(builtin_prices[i].model)))
            return keel_error_set(err, KEEL_ENOMEM, "out of memory");
        p->input = builtin_prices[i].input;
        p->cached_input = builtin_prices[i].cached_input;
        p->output = builtin_prices[i].output;
    }
    return KEEL_OK;
}

static int price_field(const cJSON *entry, const char *model, const char *name, bool required,
                       double fallback, double *out, keel_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, name);
    if (!v && !required) {
        *out = fallback;
        return KEEL_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || !isfinite(v->valuedouble))
        return keel_error_set(err, KEEL_EINVAL, "price of %s: \"%s\" must be a number >= 0", model,
                              name);
    *out = v->valuedouble;
    return KEEL_OK;
}

int keel_llm_config_set_prices(keel_llm_config *cfg, const char *json, keel_error *err)
{
    cJSON *root = keel_json_from(json ? json : "");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return keel_error_set(err, KEEL_EINVAL,
                              "the price table must be a JSON object of model -> prices");
    }
    keel_llm_config next = {0};
    size_t n = (size_t)cJSON_GetArraySize(root);
    next.prices = calloc(n ? n : 1, sizeof *next.prices);
    int rc = next.prices ? KEEL_OK : keel_error_set(err, KEEL_ENOMEM, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (rc != KEEL_OK)
            break;
        keel_llm_price *p = &next.prices[next.n_prices++];
        if (!(p->model = strdup(e->string))) {
            rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
            break;
        }
        rc = price_field(e, e->string, "input", true, 0, &p->input, err);
        if (rc == KEEL_OK)
            rc = price_field(e, e->string, "output", true, 0, &p->output, err);
        if (rc == KEEL_OK)
            rc = price_field(e, e->string, "cached_input", false, p->input, &p->cached_input, err);
    }
    cJSON_Delete(root);
    if (rc != KEEL_OK) {
        free_prices(&next);
        return rc;
    }
    free_prices(cfg);
    cfg->prices = next.prices;
    cfg->n_prices = next.n_prices;
    return KEEL_OK;
}

static char *read_small_file(const char *path, keel_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        keel_error_set(err, KEEL_EIO, "KEEL_PRICES: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (buf)
        n = fread(buf, 1, cap + 1, f);
    fclose(f);
    if (!buf || n > cap) {
        free(buf);
        keel_error_set(err, KEEL_EINVAL, "KEEL_PRICES: %s is larger than 1 MiB", path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int env_duration(const char *name, int64_t fallback, int64_t *out, keel_error *err)
{
    const char *v = getenv(name);
    *out = fallback;
    if (!v || !*v)
        return KEEL_OK;
    keel_error inner;
    if (keel_duration_parse(v, out, &inner) != KEEL_OK || *out <= 0)
        return keel_error_set(err, KEEL_EINVAL, "%s: '%s' is not a positive duration", name, v);
    return KEEL_OK;
}

static char *env_dup(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return strdup(v && *v ? v : fallback);
}

int keel_llm_config_from_env(keel_llm_config *cfg, keel_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->base_url = env_dup("OPENAI_BASE_URL", "https://api.openai.com/v1");
    cfg->model = env_dup("KEEL_MODEL", "gpt-4o-mini");
    cfg->strong_model = env_dup("KEEL_MODEL_STRONG", "gpt-4o");
    const char *key = getenv("OPENAI_API_KEY");
    cfg->api_key = key && *key ? strdup(key) : NULL;
    if (!cfg->base_url || !cfg->model || !cfg->strong_model || (key && *key && !cfg->api_key)) {
        keel_llm_config_dispose(cfg);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    }
    size_t len = strlen(cfg->base_url);
    while (len > 0 && cfg->base_url[len - 1] == '/')
        cfg->base_url[--len] = '\0';
    int64_t timeout;
    int rc = env_duration("KEEL_LLM_TIMEOUT", 120000, &timeout, err);
    if (rc == KEEL_OK)
        rc = env_duration("KEEL_LLM_MAX_RETRY_DELAY", 120000, &cfg->max_retry_delay_ms, err);
    cfg->timeout_ms = (long)timeout;
    const char *prices = getenv("KEEL_PRICES");
    if (rc == KEEL_OK && prices && *prices) {
        char *text = read_small_file(prices, err);
        rc = text ? keel_llm_config_set_prices(cfg, text, err) : KEEL_EINVAL;
        if (rc != KEEL_OK && text && err) {
            char inner[KEEL_ERROR_MESSAGE_MAX];
            snprintf(inner, sizeof inner, "%s", err->message);
            keel_error_set(err, KEEL_EINVAL, "KEEL_PRICES (%.200s): %.700s", prices, inner);
        }
        free(text);
    } else if (rc == KEEL_OK) {
        rc = builtin_price_table(cfg, err);
    }
    if (rc != KEEL_OK)
        keel_llm_config_dispose(cfg);
    return rc;
}

void keel_llm_config_dispose(keel_llm_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->base_url);
    if (cfg->api_key)
        memset(cfg->api_key, 0, strlen(cfg->api_key));
    free(cfg->api_key);
    free(cfg->model);
    free(cfg->strong_model);
    free_prices(cfg);
    memset(cfg, 0, sizeof *cfg);
}

bool keel_llm_cost(const keel_llm_config *cfg, const char *model, int64_t prompt_tokens,
                   int64_t cached_tokens, int64_t completion_tokens, double *usd)
{
    for (size_t i = 0; model && i < cfg->n_prices; i++) {
        const keel_llm_price *p = &cfg->prices[i];
        if (strcmp(p->model, model) != 0)
            continue;
        int64_t cached = cached_tokens > prompt_tokens ? prompt_tokens : cached_tokens;
        *usd = ((double)(prompt_tokens - cached) * p->input + (double)cached * p->cached_input +
                (double)completion_tokens * p->output) /
               1e6;
        return true;
    }
    return false;
}

/* ---- classification ---- */

/* A copy of the first len bytes of s with every occurrence of secret replaced by "[redacted]"
 * (caller frees). Done on whole texts, before anything cuts them, so that no part of a key
 * survives at a cut. */
static char *redacted_copy(const char *s, size_t len, const char *secret)
{
    static const char mark[] = "[redacted]";
    size_t n = secret ? strlen(secret) : 0;
    /* Each replaced byte grows to at most sizeof mark bytes. */
    char *out = malloc(len * (n > 0 && n < sizeof mark ? sizeof mark : 1) + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        if (n >= 4 && i + n <= len && memcmp(s + i, secret, n) == 0) {
            memcpy(o, mark, sizeof mark - 1);
            o += sizeof mark - 1;
            i += n;
        } else {
            *o++ = s[i++];
        }
    }
    *o = '\0';
    return out;
}

/* Cut s to at most max bytes without splitting a UTF-8 character. */
static void cut_utf8(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    s[max] = '\0';
}

/* The provider's error object: {"error": {"message", "type", "code"}} (or a bare string), or the
 * body's start when it is not that shape. *message is a new redacted string (caller frees). */
static char *provider_error(const keel_http_response *r, const char *api_key, char *type,
                            size_t tcap)
{
    type[0] = '\0';
    cJSON *body = r->body ? keel_json_from(r->body) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "error");
    const char *m = cJSON_IsString(e) ? e->valuestring : NULL;
    if (cJSON_IsObject(e)) {
        m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "type"));
        snprintf(type, tcap, "%.70s %.70s", code ? code : "", t ? t : "");
    }
    char *out = m ? redacted_copy(m, strlen(m), api_key)
                  : redacted_copy(r->body ? r->body : "", r->body ? r->len : 0, api_key);
    cJSON_Delete(body);
    if (out)
        cut_utf8(out, m ? 600 : 200);
    return out;
}

/* The delay the provider asked for, in ms, at most max_ms (when > 0); 0 when none. Computed in
 * floating point and clamped before converting, so absurd values cannot overflow. */
static int64_t parse_delay_ms(const keel_http_response *r, int64_t now_ms, int64_t max_ms)
{
    double cap = max_ms > 0 ? (double)max_ms : 1e12, ms = 0;
    char *end;
    if (r->retry_after_ms) {
        double v = strtod(r->retry_after_ms, &end);
        if (end != r->retry_after_ms && isfinite(v) && v > 0)
            ms = v;
    }
    if (ms == 0 && r->retry_after) {
        double v = strtod(r->retry_after, &end);
        if (end != r->retry_after && *end == '\0' && isfinite(v) && v > 0) {
            ms = v * 1000;
        } else {
            time_t at = curl_getdate(r->retry_after, NULL); /* an HTTP date */
            if (at > 0 && (double)at * 1000 > (double)now_ms)
                ms = (double)at * 1000 - (double)now_ms;
        }
    }
    return (int64_t)ceil(ms < cap ? ms : cap);
}

typedef struct status_rule {
    long status;
    const char *type;
    bool retryable;
} status_rule;

static const status_rule status_rules[] = {
    {400, "LlmInvalidRequest", false}, {401, "LlmAuth", false},
    {402, "LlmBilling", false},        {403, "LlmForbidden", false},
    {404, "LlmModelNotFound", false},  {408, "LlmTimeout", true},
    {409, "LlmConflict", true},        {413, "LlmRequestTooLarge", false},
    {422, "LlmUnprocessable", false},  {429, "LlmRateLimited", true},
};

static bool contains_ci(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (; *s; s++)
        if (strncasecmp(s, word, n) == 0)
            return true;
    return false;
}

static bool is_quota(const char *type, const char *message)
{
    return strstr(type, "insufficient_quota") || strstr(type, "billing") ||
           strstr(type, "spend_limit") || contains_ci(message, "exceeded your current quota");
}

void keel_llm_classify_status(const keel_http_response *resp, const char *api_key,
                              int64_t max_delay_ms, int64_t now_ms, keel_llm_failure *out)
{
    memset(out, 0, sizeof *out);
    char type[160];
    char *message = provider_error(resp, api_key, type, sizeof type);
    char *request_id = resp->request_id
                           ? redacted_copy(resp->request_id, strlen(resp->request_id), api_key)
                           : NULL;
    if (request_id)
        cut_utf8(request_id, 100);
    const char *name = resp->status >= 500 ? "LlmServerError" : "LlmHttpError";
    bool retryable = resp->status >= 500;
    for (size_t i = 0; i < sizeof status_rules / sizeof status_rules[0]; i++)
        if (status_rules[i].status == resp->status) {
            name = status_rules[i].type;
            retryable = status_rules[i].retryable;
        }
    if (resp->status == 429 && is_quota(type, message ? message : "")) {
        name = "LlmQuotaExhausted"; /* a rate limit passes; an exhausted quota does not */
        retryable = false;
    }
    if (resp->should_retry && strcasecmp(resp->should_retry, "true") == 0)
        retryable = true;
    else if (resp->should_retry && strcasecmp(resp->should_retry, "false") == 0)
        retryable = false;
    snprintf(out->type, sizeof out->type, "%s", name);
    out->non_retryable = !retryable;
    if (retryable)
        out->next_retry_delay_ms = parse_delay_ms(resp, now_ms, max_delay_ms);
    snprintf(out->message, sizeof out->message, "the model provider answered HTTP %ld: %s%s%s%s",
             resp->status, message && *message ? message : "(no message)",
             request_id ? " (request id " : "", request_id ? request_id : "",
             request_id ? ")" : "");
    free(message);
    free(request_id);
}

void keel_llm_classify_transport(int code, const keel_error *err, keel_llm_failure *out)
{
    memset(out, 0, sizeof *out);
    const char *type = "LlmUnavailable";
    out->non_retryable = false;
    if (code == KEEL_ETIMEOUT)
        type = "LlmTimeout";
    else if (code == KEEL_EPROTOCOL)
        type = "LlmMalformedResponse"; /* cut short: a new attempt may get it whole */
    else if (code == KEEL_EEXHAUSTED || code == KEEL_EINVAL) {
        type = code == KEEL_EINVAL ? "LlmBadConfiguration" : "LlmResponseTooLarge";
        out->non_retryable = true;
    }
    snprintf(out->type, sizeof out->type, "%s", type);
    snprintf(out->message, sizeof out->message, "the model provider could not be used: %.900s",
             err ? err->message : "unknown error");
}

/* ---- the activity ---- */

typedef struct chat_input {
    cJSON *root;              /* owns everything below */
    const char *model;        /* borrowed from root or the config */
    const char *conversation; /* NULL: inline messages */
    const cJSON *messages;    /* array (may be empty) */
    const cJSON *tools;       /* array of names, or NULL */
    const cJSON *response_format;
    keel_schema *output_schema; /* compiled response_format.schema, or NULL */
} chat_input;

static int fail(keel_activity_ctx *ctx, const char *type, bool non_retryable, int64_t delay_ms,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The chat span of the call this thread is making (NULL: none, or tracing is off). */
static _Thread_local keel_span *chat_span;

static int fail(keel_activity_ctx *ctx, const char *type, bool non_retryable, int64_t delay_ms,
                const char *fmt, ...)
{
    char message[KEEL_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    keel_span_set_str(chat_span, "error.type", type);
    keel_span_set_status(chat_span, KEEL_SPAN_ERROR, message);
    keel_activity_failure f = {.type = type,
                               .message = message,
                               .non_retryable = non_retryable,
                               .next_retry_delay_ms = delay_ms};
    return keel_activity_fail_with(ctx, &f);
}

/* A keel_error from the ledger: retryable when the database went away. */
static int fail_ledger(keel_activity_ctx *ctx, const char *what, const keel_error *err)
{
    return fail(ctx, err->retryable ? "LedgerUnavailable" : "LedgerError", !err->retryable, 0,
                "%s: %s", what, err->message);
}

static int read_input(const keel_llm *llm, const char *json, chat_input *in, char *why, size_t cap)
{
    memset(in, 0, sizeof *in);
    in->root = keel_json_from(json ? json : "");
    if (!cJSON_IsObject(in->root))
        return snprintf(why, cap, "the input must be a JSON object"), KEEL_EINVAL;
    const cJSON *r = in->root;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(r, "model");
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(r, "conversation");
    in->messages = cJSON_GetObjectItemCaseSensitive(r, "messages");
    in->tools = cJSON_GetObjectItemCaseSensitive(r, "tools");
    in->response_format = cJSON_GetObjectItemCaseSensitive(r, "response_format");
    const cJSON *tier = cJSON_GetObjectItemCaseSensitive(r, "model_tier");
    if (model && !cJSON_IsString(model))
        return snprintf(why, cap, "\"model\" must be a string"), KEEL_EINVAL;
    if (model && tier)
        return snprintf(why, cap, "give \"model\" or \"model_tier\", not both"), KEEL_EINVAL;
    if (tier && !cJSON_IsString(tier))
        return snprintf(why, cap, "\"model_tier\" must be \"small\" or \"strong\""), KEEL_EINVAL;
    if (tier && strcmp(tier->valuestring, "strong") == 0)
        in->model = llm->config->strong_model;
    else if (tier && strcmp(tier->valuestring, "small") != 0)
        return snprintf(why, cap, "\"model_tier\" must be \"small\" or \"strong\", not \"%.40s\"",
                        tier->valuestring),
               KEEL_EINVAL;
    else
        in->model = model ? model->valuestring : llm->config->model;
    if (conv && (!cJSON_IsString(conv) || !*conv->valuestring))
        return snprintf(why, cap, "\"conversation\" must be a non-empty string"), KEEL_EINVAL;
    in->conversation = conv ? conv->valuestring : NULL;
    if (in->conversation && !llm->ledger)
        return snprintf(why, cap, "conversations need the ledger database (DATABASE_URL)"),
               KEEL_EINVAL;
    if (in->messages && !cJSON_IsArray(in->messages))
        return snprintf(why, cap, "\"messages\" must be an array"), KEEL_EINVAL;
    if (!in->conversation && cJSON_GetArraySize(in->messages) == 0)
        return snprintf(why, cap, "there are no messages to send"), KEEL_EINVAL;
    const cJSON *m;
    cJSON_ArrayForEach(m, in->messages)
    {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "role")))
            return snprintf(why, cap, "every message needs a \"role\" string"), KEEL_EINVAL;
    }
    if (in->tools && !cJSON_IsArray(in->tools))
        return snprintf(why, cap, "\"tools\" must be an array of tool names"), KEEL_EINVAL;
    if (in->tools && cJSON_GetArraySize(in->tools) > 0 && !llm->tools)
        return snprintf(why, cap, "this worker has no tools registered"), KEEL_EINVAL;
    if (!in->response_format)
        return KEEL_OK;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in->response_format, "name");
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(in->response_format, "schema");
    if (!cJSON_IsString(name) || !cJSON_IsObject(schema))
        return snprintf(why, cap, "\"response_format\" needs a \"name\" and a \"schema\" object"),
               KEEL_EINVAL;
    char *text = keel_json_print(schema);
    keel_error err;
    int rc = text ? keel_schema_new(&in->output_schema, text, &err) : KEEL_ENOMEM;
    free(text);
    if (rc != KEEL_OK)
        return snprintf(why, cap, "response_format.schema: %.500s",
                        rc == KEEL_ENOMEM ? "out of memory" : err.message),
               KEEL_EINVAL;
    return KEEL_OK;
}

static void dispose_input(chat_input *in)
{
    cJSON_Delete(in->root);
    keel_schema_free(in->output_schema);
}

/* SHA-256 (hex) of the activity's input bytes: what "the same request" means for reuse. Temporal
 * hands every attempt the same bytes. The transcript is not hashed (it grows with this
 * activity's own answer) and neither is the configured default model (a worker deployed with
 * another KEEL_MODEL must still reuse an answer it has). */
static int request_hash(const char *input_json, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(input_json, strlen(input_json), md, &n, EVP_sha256(), NULL))
        return KEEL_EINTERNAL;
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return KEEL_OK;
}

static void copy_field(cJSON *to, const cJSON *from, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, name);
    if (v)
        cJSON_AddItemToObject(to, name, cJSON_Duplicate(v, true));
}

/* The Chat Completions request body. messages is consumed. */
static char *build_request(const keel_llm *llm, const chat_input *in, cJSON *messages,
                           const char *workflow_type, keel_error *err)
{
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "model", in->model);
    cJSON_AddItemToObject(req, "messages", messages);
    if (in->tools && cJSON_GetArraySize(in->tools) > 0) {
        cJSON *defs;
        if (keel_toolbox_definitions(llm->tools, workflow_type, in->tools, &defs, err) != KEEL_OK) {
            cJSON_Delete(req);
            return NULL;
        }
        cJSON_AddItemToObject(req, "tools", defs);
        copy_field(req, in->root, "tool_choice");
        copy_field(req, in->root, "parallel_tool_calls");
    }
    if (in->response_format) {
        cJSON *rf = cJSON_AddObjectToObject(req, "response_format");
        cJSON_AddStringToObject(rf, "type", "json_schema");
        cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
        copy_field(js, in->response_format, "name");
        copy_field(js, in->response_format, "schema");
        const cJSON *strict = cJSON_GetObjectItemCaseSensitive(in->response_format, "strict");
        cJSON_AddBoolToObject(js, "strict", strict ? cJSON_IsTrue(strict) : true);
    }
    copy_field(req, in->root, "max_tokens");
    copy_field(req, in->root, "temperature");
    copy_field(req, in->root, "seed");
    char *text = keel_json_print(req);
    cJSON_Delete(req);
    if (!text)
        keel_error_set(err, KEEL_ENOMEM, "out of memory");
    return text;
}

/* The message array to send: the stored conversation followed by this turn's messages, or the
 * inline messages. Nothing is appended here: the turn's messages join the conversation together
 * with the answer (finish()), so a call that fails leaves no half turn behind. */
static int gather_messages(const keel_llm *llm, const chat_input *in, cJSON **out, keel_error *err)
{
    *out = NULL;
    char *all = NULL;
    int rc = KEEL_OK;
    if (in->conversation)
        rc = keel_ledger_conversation_load(llm->ledger, in->conversation, &all, NULL, err);
    cJSON *list = rc == KEEL_OK ? (all ? keel_json_from(all) : cJSON_CreateArray()) : NULL;
    free(all);
    if (rc != KEEL_OK)
        return rc;
    if (!cJSON_IsArray(list)) {
        cJSON_Delete(list);
        return keel_error_set(err, KEEL_EINTERNAL, "conversation %s is not a JSON array",
                              in->conversation);
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, in->messages)
    {
        cJSON_AddItemToArray(list, cJSON_Duplicate(m, true));
    }
    *out = list;
    return KEEL_OK;
}

/* The response must at least have a first choice with a message object. */
static const cJSON *first_message(const cJSON *body, const cJSON **choice)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(body, "choices");
    *choice = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(*choice, "message");
    return cJSON_IsObject(msg) ? msg : NULL;
}

static const char *usable_response(const char *body_text)
{
    cJSON *body = keel_json_from(body_text);
    const cJSON *choice;
    const char *why = NULL;
    if (!cJSON_IsObject(body))
        why = "the response body is not a JSON object";
    else if (!first_message(body, &choice))
        why = "the response has no choices[0].message";
    cJSON_Delete(body);
    return why;
}

/* A token count: a number from 0 to 1e12 (more than any context holds), else 0, so that a
 * hostile usage object cannot overflow or turn the spend negative. */
static int64_t int_field(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 1e12)
        return 0;
    return (int64_t)v->valuedouble;
}

static cJSON *usage_of(const keel_llm *llm, const char *model, const cJSON *body)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(body, "usage");
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details");
    int64_t prompt = int_field(u, "prompt_tokens"), completion = int_field(u, "completion_tokens");
    int64_t cached = int_field(details, "cached_tokens");
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "prompt_tokens", (double)prompt);
    cJSON_AddNumberToObject(out, "cached_tokens", (double)cached);
    cJSON_AddNumberToObject(out, "completion_tokens", (double)completion);
    cJSON_AddNumberToObject(out, "total_tokens", (double)(prompt + completion));
    double usd;
    if (keel_llm_cost(llm->config, model, prompt, cached, completion, &usd))
        cJSON_AddNumberToObject(out, "cost_usd", round(usd * 1e6) / 1e6);
    else
        cJSON_AddNullToObject(out, "cost_usd");
    return out;
}

/* One tool call, normalised (id synthesised when missing, arguments as text) and checked. */
static cJSON *checked_call(const keel_llm *llm, const char *workflow_type, const cJSON *call,
                           int index, const char *activity_id, cJSON *stored_calls)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(call, "id"));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fn, "name"));
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    /* Missing or repeated ids would break the next turn (one tool message per id): make one. */
    char synth[96];
    bool repeated = false;
    const cJSON *earlier;
    cJSON_ArrayForEach(earlier, stored_calls)
    {
        const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(earlier, "id"));
        repeated = repeated || (id && eid && strcmp(id, eid) == 0);
    }
    if (!id || !*id || repeated) {
        snprintf(synth, sizeof synth, "call_keel_%.40s_%d", activity_id, index);
        id = synth;
    }
    /* Some servers send the arguments as an object: keep them as text, as OpenAI does. */
    char *printed = args && !cJSON_IsString(args) ? keel_json_print(args) : NULL;
    const char *text = printed ? printed : cJSON_IsString(args) ? args->valuestring : "";
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "id", id);
    cJSON_AddStringToObject(out, "name", name ? name : "");
    cJSON_AddStringToObject(out, "arguments", text);
    cJSON *parsed = NULL, *error = NULL;
    if (llm->tools)
        error = keel_toolbox_check(llm->tools, workflow_type, name ? name : "", text, &parsed);
    else
        error = keel_json_from("{\"error\":\"unknown_tool\",\"errors\":[{\"pointer\":\"\","
                               "\"reason\":\"this worker has no tools\"}]}");
    cJSON_AddBoolToObject(out, "valid", error == NULL);
    cJSON_AddItemToObject(out, error ? "error" : "args", error ? error : parsed);
    /* The transcript keeps the call exactly as the provider must see it again. */
    cJSON *stored = cJSON_CreateObject();
    cJSON_AddStringToObject(stored, "id", id);
    cJSON_AddStringToObject(stored, "type", "function");
    cJSON *sfn = cJSON_AddObjectToObject(stored, "function");
    cJSON_AddStringToObject(sfn, "name", name ? name : "");
    cJSON_AddStringToObject(sfn, "arguments", text);
    cJSON_AddItemToArray(stored_calls, stored);
    free(printed);
    return out;
}

/* An output_error of kind `error` in result, with one reason at the root when reason is set. */
static void output_error(cJSON *result, const char *error, const char *reason)
{
    cJSON *e = cJSON_AddObjectToObject(result, "output_error");
    cJSON_AddStringToObject(e, "error", error);
    cJSON *list = cJSON_AddArrayToObject(e, "errors");
    if (reason == NULL)
        return;
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "pointer", "");
    cJSON_AddStringToObject(item, "reason", reason);
    cJSON_AddItemToArray(list, item);
}

/* Structured output: the content must parse and validate against response_format.schema. The
 * model's text is read strictly (keel/json.h): a NUL, invalid UTF-8 or a repeated name is an
 * output error that says where, and numbers keep their text in `parsed`. */
static void check_output(const chat_input *in, const char *content, const char *finish,
                         cJSON *result)
{
    keel_error err;
    keel_error_clear(&err);
    cJSON *parsed = NULL;
    if (!content)
        return output_error(result, "no_content", NULL);
    if (finish && strcmp(finish, "length") == 0)
        return output_error(result, "truncated_output", NULL);
    if (keel_json_parse_str(content, KEEL_JSON_STRICT, "the model's output", &parsed, &err) !=
        KEEL_OK)
        return output_error(result, "output_not_json", err.message);
    keel_schema_result r;
    if (keel_schema_validate_tree(in->output_schema, parsed, &r, &err) != KEEL_OK) {
        /* Validation could not finish (a limit of keel/schema.h): say so, never "valid". */
        output_error(result, "output_not_checked", err.message);
        cJSON_Delete(parsed);
        return;
    }
    if (r.valid) {
        cJSON_AddItemToObject(result, "parsed", parsed);
    } else {
        cJSON *e = cJSON_AddObjectToObject(result, "output_error");
        cJSON_AddStringToObject(e, "error", "invalid_output");
        cJSON *list = cJSON_AddArrayToObject(e, "errors");
        for (size_t i = 0; i < r.count; i++) {
            cJSON *item = cJSON_CreateObject();
            cJSON_AddStringToObject(item, "pointer", r.errors[i].pointer);
            cJSON_AddStringToObject(item, "reason", r.errors[i].reason);
            cJSON_AddItemToArray(list, item);
        }
        cJSON_Delete(parsed);
    }
    keel_schema_result_dispose(&r);
}

/* Build the activity's result from a (stored) response body, and the assistant message to
 * append to the conversation (*assistant, caller frees). */
static cJSON *build_result(const keel_llm *llm, keel_activity_ctx *ctx, const chat_input *in,
                           const char *body_text, bool reused, cJSON **assistant)
{
    cJSON *body = keel_json_from(body_text);
    const cJSON *choice, *msg = first_message(body, &choice);
    const char *content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "content"));
    const char *refusal = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "refusal"));
    const char *finish =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(choice, "finish_reason"));
    const char *rid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "x_request_id"));
    cJSON *result = cJSON_CreateObject();
    copy_field(result, body, "id");
    copy_field(result, body, "model");
    if (rid)
        cJSON_AddStringToObject(result, "request_id", rid);
    cJSON_AddItemToObject(result, "finish_reason",
                          finish ? cJSON_CreateString(finish) : cJSON_CreateNull());
    cJSON_AddItemToObject(result, "content",
                          content ? cJSON_CreateString(content) : cJSON_CreateNull());
    cJSON_AddItemToObject(result, "refusal",
                          refusal ? cJSON_CreateString(refusal) : cJSON_CreateNull());
    cJSON *calls = cJSON_AddArrayToObject(result, "tool_calls");
    cJSON *stored_calls = cJSON_CreateArray();
    const cJSON *call;
    int i = 0;
    cJSON_ArrayForEach(call, cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"))
    {
        if (cJSON_IsObject(call))
            cJSON_AddItemToArray(calls, checked_call(llm, keel_activity_workflow_type(ctx), call,
                                                     i++, keel_activity_id(ctx), stored_calls));
    }
    /* The transcript keeps a message providers accept back: content may be null only beside
     * tool calls; a refusal or an empty answer is kept as text. */
    *assistant = cJSON_CreateObject();
    cJSON_AddStringToObject(*assistant, "role", "assistant");
    if (content || i > 0)
        cJSON_AddItemToObject(*assistant, "content",
                              content ? cJSON_CreateString(content) : cJSON_CreateNull());
    else
        cJSON_AddStringToObject(*assistant, "content", refusal ? refusal : "");
    if (i > 0)
        cJSON_AddItemToObject(*assistant, "tool_calls", stored_calls);
    else
        cJSON_Delete(stored_calls);
    if (in->output_schema && !refusal && i == 0)
        check_output(in, content, finish, result);
    cJSON_AddItemToObject(result, "usage", usage_of(llm, in->model, body));
    cJSON_AddBoolToObject(result, "reused", reused);
    if (in->conversation)
        cJSON_AddStringToObject(result, "conversation", in->conversation);
    cJSON_Delete(body);
    return result;
}

/* Keep x-request-id with the stored response (the body lacks it), for operators and logs. */
static char *annotate(const char *body_text, const char *request_id)
{
    cJSON *body = keel_json_from(body_text);
    if (request_id)
        cJSON_AddStringToObject(body, "x_request_id", request_id);
    char *text = keel_json_print(body);
    cJSON_Delete(body);
    return text;
}

typedef struct attempt {
    keel_activity_ctx *ctx;
    const keel_llm *llm;
    chat_input in;
    keel_ledger_key key;
    char *key_text; /* keel_ledger_key_text(&key) */
    char hash[65];
} attempt;

/* Call the model once. KEEL_OK: *body (caller frees) is a usable response, already in the
 * ledger when there is one (and possibly another attempt's, if it won a race). */
static int call_model(attempt *a, char **body)
{
    const keel_llm *llm = a->llm;
    keel_error err;
    keel_error_clear(&err);
    cJSON *messages;
    if (gather_messages(llm, &a->in, &messages, &err) != KEEL_OK)
        return fail_ledger(a->ctx, "loading the conversation", &err);
    char *request = build_request(llm, &a->in, messages, keel_activity_workflow_type(a->ctx), &err);
    if (!request)
        return fail(a->ctx, "LlmBadInput", true, 0, "%s", err.message);
    char url[1024];
    snprintf(url, sizeof url, "%s/chat/completions", llm->config->base_url);
    keel_http_request req = {.url = url,
                             .body = request,
                             .bearer_token = llm->config->api_key,
                             .timeout_ms = llm->config->timeout_ms,
                             .activity = a->ctx};
    keel_http_response resp;
    int rc = keel_http_post_json(&req, &resp, &err);
    free(request);
    keel_llm_failure f;
    if (rc == KEEL_ECANCELLED) {
        keel_http_response_dispose(&resp);
        return KEEL_ECANCELLED;
    }
    if (rc != KEEL_OK || resp.status < 200 || resp.status > 299) {
        if (rc != KEEL_OK)
            keel_llm_classify_transport(rc, &err, &f);
        else
            keel_llm_classify_status(&resp, llm->config->api_key, llm->config->max_retry_delay_ms,
                                     (int64_t)time(NULL) * 1000, &f);
        keel_http_response_dispose(&resp);
        return fail(a->ctx, f.type, f.non_retryable, f.next_retry_delay_ms, "%s", f.message);
    }
    const char *why = usable_response(resp.body);
    if (why) {
        keel_http_response_dispose(&resp);
        return fail(a->ctx, "LlmMalformedResponse", false, 0,
                    "the model provider answered HTTP 200 but %s", why);
    }
    char *annotated = annotate(resp.body, resp.request_id);
    keel_http_response_dispose(&resp);
    if (!annotated)
        return fail(a->ctx, "OutOfMemory", false, 0, "out of memory");
    if (!llm->ledger) {
        *body = annotated;
        return KEEL_OK;
    }
    rc =
        keel_ledger_response_put(llm->ledger, &a->key, a->hash, a->in.model, annotated, body, &err);
    free(annotated);
    if (rc == KEEL_EEXISTS)
        return fail(a->ctx, "LedgerConflict", true, 0, "%s", err.message);
    return rc == KEEL_OK ? KEEL_OK : fail_ledger(a->ctx, "storing the response", &err);
}

/* Append messages (a JSON array) to the conversation under "<activity key>/<part>", once. */
static int append_once(const attempt *a, const char *part, const cJSON *messages, keel_error *err)
{
    size_t n = strlen(a->key_text) + strlen(part) + 2;
    char *key = malloc(n);
    char *text = key ? keel_json_print(messages) : NULL;
    int rc = text ? KEEL_OK : keel_error_set(err, KEEL_ENOMEM, "out of memory");
    if (rc == KEEL_OK) {
        snprintf(key, n, "%s/%s", a->key_text, part);
        rc = keel_ledger_conversation_append(a->llm->ledger, a->in.conversation, key, text, err);
    }
    free(text);
    free(key);
    return rc;
}

/* A result larger than this cannot travel: Temporal refuses payloads over 2 MiB. */
#define MAX_RESULT_BYTES (1536 * 1024)

static int finish(attempt *a, const char *body, bool reused, char **result_json)
{
    cJSON *assistant = NULL;
    cJSON *result = build_result(a->llm, a->ctx, &a->in, body, reused, &assistant);
    int rc = KEEL_OK;
    if (a->in.conversation) {
        /* The turn's messages, then the answer: each once, also when this is a retry that
         * reuses a stored response after a crash between the two. */
        keel_error err;
        keel_error_clear(&err);
        cJSON *out = cJSON_CreateArray();
        cJSON_AddItemToArray(out, assistant);
        assistant = NULL;
        cJSON *in = a->in.messages ? cJSON_Duplicate(a->in.messages, true) : cJSON_CreateArray();
        rc = append_once(a, "in", in, &err);
        if (rc == KEEL_OK)
            rc = append_once(a, "out", out, &err);
        cJSON_Delete(in);
        cJSON_Delete(out);
        if (rc != KEEL_OK)
            rc = fail_ledger(a->ctx, "appending the turn to the conversation", &err);
    }
    cJSON_Delete(assistant);
    if (rc == KEEL_OK && !(*result_json = keel_json_print(result)))
        rc = fail(a->ctx, "OutOfMemory", false, 0, "out of memory");
    if (rc == KEEL_OK && strlen(*result_json) > MAX_RESULT_BYTES) {
        size_t n = strlen(*result_json);
        free(*result_json);
        *result_json = NULL;
        rc = fail(a->ctx, "LlmResultTooLarge", true, 0,
                  "the model's answer makes a %zu-byte result; Temporal carries at most 2 MiB "
                  "(lower max_tokens)",
                  n);
    }
    cJSON_Delete(result);
    return rc;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* keel_model_* and keel_ledger_reuse_total for one attempt (activities/metrics.h). Tokens and
 * cost count once, when the model was called: a reused response was paid for already. */
static void record_model(const attempt *a, int rc, bool reused, double latency_s,
                         const char *result_json)
{
    const keel_agent_metrics *am = a->llm->metrics;
    if (am == NULL)
        return;
    const keel_llm_config *c = a->llm->config;
    const char *model = a->in.model ? a->in.model : "";
    const char *tier = c->model && strcmp(model, c->model) == 0                 ? "small"
                       : c->strong_model && strcmp(model, c->strong_model) == 0 ? "strong"
                                                                                : "custom";
    cJSON *r = rc == KEEL_OK && result_json ? cJSON_Parse(result_json) : NULL;
    bool refused = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "refusal"));
    const char *v[] = {
        model, tier,
        keel_agent_metrics_model_outcome(rc == KEEL_OK ? NULL : keel_activity_failure_type(a->ctx),
                                         refused, rc == KEEL_ECANCELLED)};
    keel_metric_add(am->model_requests, v, 1);
    if (latency_s >= 0)
        keel_metric_observe(am->model_latency, v, latency_s);
    if (reused)
        keel_metric_add(am->ledger_reuse, v, 1);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "usage");
    if (u && !reused) {
        static const char *const kinds[][2] = {{"prompt_tokens", "prompt"},
                                               {"cached_tokens", "cached"},
                                               {"completion_tokens", "completion"}};
        for (size_t i = 0; i < 3; i++) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(u, kinds[i][0]);
            const char *kv[] = {model, kinds[i][1]};
            if (cJSON_IsNumber(n) && n->valuedouble > 0)
                keel_metric_add(am->model_tokens, kv, n->valuedouble);
        }
        const cJSON *cost = cJSON_GetObjectItemCaseSensitive(u, "cost_usd");
        if (cJSON_IsNumber(cost) && cost->valuedouble > 0)
            keel_metric_add(am->model_cost, v, cost->valuedouble);
    }
    cJSON_Delete(r);
}

/* ---- the chat span (OpenTelemetry GenAI semantic conventions; docs/observability.md) ---- */

/* host and port of the provider's base URL, for server.address / server.port. */
static void server_of(const char *url, char *host, size_t n, int64_t *port)
{
    const char *p = strstr(url ? url : "", "://");
    p = p ? p + 3 : url ? url : "";
    const char *at = strpbrk(p, "@/");
    if (at && *at == '@') /* user:password@ never goes into a span */
        p = at + 1;
    size_t len = strcspn(p, "/?#");
    const char *colon = memchr(p, ':', len);
    *port = strncmp(url ? url : "", "https", 5) == 0 ? 443 : 80;
    if (colon && p[0] != '[') {
        *port = strtoll(colon + 1, NULL, 10);
        len = (size_t)(colon - p);
    }
    snprintf(host, n, "%.*s", (int)len, p);
}

static keel_span *chat_span_start(const attempt *a, const char *input_json)
{
    if (!keel_trace_enabled())
        return NULL;
    char name[300], host[256];
    snprintf(name, sizeof name, "chat %s", a->in.model ? a->in.model : "");
    keel_span *s = keel_span_start(name, &(keel_span_options){.kind = KEEL_SPAN_CLIENT});
    keel_span_set_str(s, "gen_ai.operation.name", "chat");
    keel_span_set_str(s, "gen_ai.provider.name", "openai"); /* the protocol: OpenAI-compatible */
    keel_span_set_str(s, "gen_ai.request.model", a->in.model);
    int64_t port;
    server_of(a->llm->config->base_url, host, sizeof host, &port);
    keel_span_set_str(s, "server.address", host);
    keel_span_set_int(s, "server.port", port);
    const char *tier =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a->in.root, "model_tier"));
    keel_span_set_str(s, "keel.model.tier", tier ? tier : "default");
    keel_span_set_str(s, "keel.idempotency_key", a->key_text);
    if (a->in.conversation)
        keel_span_set_str(s, "gen_ai.conversation.id", a->in.conversation);
    if (keel_trace_capture_content() && a->in.messages) {
        char *m = keel_json_print(a->in.messages);
        keel_span_set_str(s, "gen_ai.input.messages", m);
        free(m);
    }
    (void)input_json;
    return s;
}

/* What the result says: the response, the usage, the checks. */
static void chat_span_result(keel_span *s, const char *result_json)
{
    cJSON *r = keel_json_from(result_json ? result_json : "");
    if (s == NULL || !cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return;
    }
    const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "model"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "id"));
    const char *finish = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "finish_reason"));
    if (model)
        keel_span_set_str(s, "gen_ai.response.model", model);
    if (id)
        keel_span_set_str(s, "gen_ai.response.id", id);
    if (finish)
        keel_span_set_strs(s, "gen_ai.response.finish_reasons", &finish, 1);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "usage");
    const cJSON *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens")))
        keel_span_set_int(s, "gen_ai.usage.input_tokens", (int64_t)v->valuedouble);
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")))
        keel_span_set_int(s, "gen_ai.usage.output_tokens", (int64_t)v->valuedouble);
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(u, "cached_tokens")))
        keel_span_set_int(s, "gen_ai.usage.cache_read.input_tokens", (int64_t)v->valuedouble);
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(u, "cost_usd")))
        keel_span_set_double(s, "keel.cost_usd", v->valuedouble);
    keel_span_set_bool(s, "keel.ledger.reused",
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "reused")));
    /* Proposed tool calls that failed their schema, and output that failed its own. */
    int calls = 0, invalid = 0;
    char errors[1024] = "";
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(r, "tool_calls"))
    {
        calls++;
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(c, "valid"))) {
            invalid++;
            const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(c, "error"), "error"));
            const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
            size_t used = strlen(errors);
            snprintf(errors + used, sizeof errors - used, "%s%s: %s", used ? "; " : "", n ? n : "?",
                     e ? e : "invalid");
        }
    }
    keel_span_set_int(s, "keel.tool_calls", calls);
    if (invalid) {
        keel_span_set_int(s, "keel.tool_calls.invalid", invalid);
        keel_span_set_str(s, "keel.validation_errors", errors);
    }
    const char *oe = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r, "output_error"), "error"));
    if (oe)
        keel_span_set_str(s, "keel.output_error", oe);
    if (keel_trace_capture_content()) {
        const char *content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "content"));
        if (content)
            keel_span_set_str(s, "gen_ai.output.messages", content);
    }
    cJSON_Delete(r);
}

int keel_llm_chat_activity(keel_activity_ctx *ctx, const char *input_json, char **result_json,
                           void *user_data)
{
    attempt a = {.ctx = ctx, .llm = user_data};
    char why[600];
    if (read_input(a.llm, input_json, &a.in, why, sizeof why) != KEEL_OK) {
        dispose_input(&a.in);
        return fail(ctx, "LlmBadInput", true, 0, "llm.chat input: %s", why);
    }
    a.key = (keel_ledger_key){keel_activity_namespace(ctx), keel_activity_workflow_id(ctx),
                              keel_activity_run_id(ctx), keel_activity_id(ctx)};
    a.key_text = keel_ledger_key_text(&a.key);
    chat_span = chat_span_start(&a, input_json);
    keel_span_context chat_ctx = keel_span_get_context(chat_span);
    keel_span_context outer = keel_trace_set_current(chat_span ? &chat_ctx : keel_trace_current());
    int rc = a.key_text ? request_hash(input_json, a.hash) : KEEL_ENOMEM;
    char *body = NULL;
    bool reused = false;
    keel_error err;
    keel_error_clear(&err);
    if (rc == KEEL_OK && a.llm->ledger) {
        rc = keel_ledger_response_get(a.llm->ledger, &a.key, a.hash, &body, &err);
        reused = rc == KEEL_OK;
        if (rc == KEEL_EEXISTS)
            rc = fail(ctx, "LedgerConflict", true, 0, "%s", err.message);
        else if (rc != KEEL_OK && rc != KEEL_ENOTFOUND)
            rc = fail_ledger(ctx, "reading the ledger", &err);
        else
            rc = KEEL_OK;
    } else if (rc != KEEL_OK) {
        rc = fail(ctx, "OutOfMemory", false, 0, "cannot hash the request");
    }
    double latency = -1;
    if (rc == KEEL_OK && !reused) {
        double began = mono_s();
        rc = call_model(&a, &body);
        latency = mono_s() - began;
        if (rc == KEEL_OK)
            keel_failpoint("llm.after_ledger_put");
    }
    if (rc == KEEL_OK)
        rc = finish(&a, body, reused, result_json);
    record_model(&a, rc, reused, latency, *result_json);
    if (rc == KEEL_OK)
        chat_span_result(chat_span, *result_json);
    else if (rc == KEEL_ECANCELLED)
        keel_span_add_event(chat_span, "cancelled", NULL, NULL);
    keel_trace_set_current(&outer);
    keel_span_end(chat_span);
    chat_span = NULL;
    free(body);
    free(a.key_text);
    dispose_input(&a.in);
    return rc;
}

/* ---- the answer path alone (activities/llm_internal.h) ---- */

int keel_llm_answer_from_body(const keel_llm *llm, keel_activity_ctx *ctx, const char *input_json,
                              const char *body, char **result_json)
{
    attempt a = {.ctx = ctx, .llm = llm};
    char why[600];
    const char *bad = NULL;
    char *kept = NULL;
    int rc = KEEL_OK;
    *result_json = NULL;
    if (llm->ledger || read_input(llm, input_json, &a.in, why, sizeof why) != KEEL_OK)
        rc = fail(ctx, "LlmBadInput", true, 0, "llm.chat input: %s",
                  llm->ledger ? "keel_llm_answer_from_body works without a ledger" : why);
    else if ((bad = usable_response(body)) != NULL)
        rc = fail(ctx, "LlmMalformedResponse", false, 0,
                  "the model provider answered HTTP 200 but %s", bad);
    else if ((kept = annotate(body, "req-offline")) == NULL)
        rc = fail(ctx, "OutOfMemory", false, 0, "out of memory");
    else
        rc = finish(&a, kept, false, result_json);
    free(kept);
    dispose_input(&a.in);
    return rc;
}
