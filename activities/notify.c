/*
 * activities/notify.c - the notify tool: a webhook post made once per idempotency key.
 */
#include "activities/notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/http.h"
#include "keel/json.h"

#define NOTIFY_LEASE_MS 30000

static const char notify_schema[] =
    "{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"text\",\"channel\"],"
    "\"properties\":{"
    "\"text\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":3000,"
    "\"description\":\"The message, plain text; Slack mrkdwn is allowed\"},"
    "\"channel\":{\"type\":[\"string\",\"null\"],\"maxLength\":80,"
    "\"description\":\"A channel name such as #procurement, or null for the webhook's default\"}"
    "}}";

static char *payload(const cJSON *args)
{
    cJSON *body = cJSON_CreateObject();
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "text"));
    const char *channel = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "channel"));
    cJSON_AddStringToObject(body, "text", text ? text : "");
    if (channel)
        cJSON_AddStringToObject(body, "channel", channel);
    char *out = keel_json_print(body);
    cJSON_Delete(body);
    return out;
}

/* Post. KEEL_OK with *status when the webhook answered at all (any status); a transport error
 * leaves *status 0: then nobody knows whether the message arrived. A long reply is cut, not an
 * error: the status is what counts. */
static int post(const keel_tool_call *call, const char *body, long *status, keel_error *err)
{
    keel_http_request req = {.url = call->notify_webhook_url,
                             .body = body,
                             .timeout_ms = 15000,
                             .max_body = 4096,
                             .truncate_body = true,
                             .activity = call->activity};
    keel_http_response resp;
    int rc = keel_http_post_json(&req, &resp, err);
    *status = rc == KEEL_OK ? resp.status : 0;
    if (rc == KEEL_OK && (resp.status < 200 || resp.status > 299)) {
        /* 429 and 5xx may pass; any other refusal will not. */
        bool retryable = resp.status == 429 || resp.status >= 500;
        rc = keel_error_set(err, retryable ? KEEL_EUNAVAILABLE : KEEL_EINVAL,
                            "the webhook answered HTTP %ld: %.200s", resp.status,
                            resp.body ? resp.body : "");
        if (err)
            err->retryable = retryable;
    }
    keel_http_response_dispose(&resp);
    return rc;
}

/* The effect was recorded already, or is being made by another attempt. */
static int settled(keel_effect_state state, char *recorded, char **result_json, keel_error *err)
{
    if (state == KEEL_EFFECT_DONE) {
        *result_json = recorded ? recorded : strdup("{\"delivered\":true}");
        return *result_json ? KEEL_OK : keel_error_set(err, KEEL_ENOMEM, "out of memory");
    }
    free(recorded);
    int rc = keel_error_set(err, KEEL_EUNAVAILABLE,
                            "notify: another attempt is delivering this message");
    if (err)
        err->retryable = true;
    return rc;
}

static int run_notify(const keel_tool_call *call, const cJSON *args, char **result_json,
                      keel_error *err)
{
    if (!call->notify_webhook_url || !*call->notify_webhook_url)
        return keel_error_set(err, KEEL_EINVAL,
                              "notify: no webhook is configured (KEEL_NOTIFY_WEBHOOK_URL)");
    keel_effect_state state;
    char *recorded = NULL, token[KEEL_EFFECT_TOKEN_MAX];
    int rc = keel_ledger_effect_claim(call->ledger, call->idempotency_key, "notify",
                                      NOTIFY_LEASE_MS, &state, &recorded, token, err);
    if (rc != KEEL_OK)
        return rc;
    if (state != KEEL_EFFECT_CLAIMED)
        return settled(state, recorded, result_json, err);
    char *body = payload(args);
    long status = 0;
    rc = body ? post(call, body, &status, err) : keel_error_set(err, KEEL_ENOMEM, "out of memory");
    free(body);
    if (rc != KEEL_OK) {
        /* A webhook that answered did not take the message: a retry may post. Without an answer
         * the message may have arrived, so the claim stays until its lease runs out. */
        if (status != 0) {
            keel_error ignored;
            keel_ledger_effect_release(call->ledger, call->idempotency_key, token, &ignored);
        }
        return rc;
    }
    char result[96];
    snprintf(result, sizeof result, "{\"delivered\":true,\"status\":%ld}", status);
    rc = keel_ledger_effect_done(call->ledger, call->idempotency_key, result, err);
    if (rc == KEEL_ENOTFOUND)
        rc = KEEL_OK; /* the claim row went away meanwhile; the message was delivered */
    if (rc == KEEL_OK && !(*result_json = strdup(result)))
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
    return rc;
}

const keel_tool keel_notify_tool = {
    .name = "notify",
    .description = "Post a message to the team's chat channel (a Slack-compatible webhook). "
                   "Use it to tell a requester or approver what happened; it is sent once.",
    .schema = notify_schema,
    .risk = KEEL_TOOL_WRITE, /* a message, not money: sent once, but no person gates it */
    .scopes = "notify:send",
    .run = run_notify,
};
