/*
 * activities/notify.c - the notify tool: a webhook post made once per idempotency key.
 */
#include "activities/notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "activities/failpoint.h"
#include "activities/http.h"
#include "activities/metrics.h"
#include "keel/json.h"

/* How long a claim on a message is its attempt's: longer than the start-to-close timeout the
 * workflows give tool.notify (keel.Procurement: 20 s), and than a post (below) with the margin. */
#define NOTIFY_LEASE_MS 30000
/* A post's longest exchange, and how long before the lease's end it must be over at the latest;
 * with less than MIN_POST_MS of the lease left the attempt gives its claim back unposted. */
#define POST_TIMEOUT_MS 15000
#define LEASE_MARGIN_MS 5000
#define MIN_POST_MS     1000

static const char notify_schema[] =
    "{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"text\",\"channel\"],"
    "\"properties\":{"
    "\"text\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":3000,"
    "\"description\":\"The message, plain text; Slack mrkdwn is allowed\"},"
    "\"channel\":{\"type\":[\"string\",\"null\"],\"maxLength\":80,"
    "\"description\":\"A channel name such as #procurement, or null for the webhook's default\"},"
    "\"approvals\":{\"type\":\"array\",\"maxItems\":4,"
    "\"description\":\"Set by workflows, not models: which approval events the message tells of "
    "(counted in keel's approval metrics when it is delivered)\","
    "\"items\":{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"level\",\"event\"],\"properties\":{"
    "\"level\":{\"enum\":[\"manager\",\"director\",\"cfo\"]},"
    "\"event\":{\"enum\":[\"requested\",\"approved\",\"rejected\",\"expired\","
    "\"cancelled\"]}}}}"
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
static int post(const keel_tool_call *call, const char *body, int64_t timeout_ms, long *status,
                keel_error *err)
{
    keel_http_request req = {.url = call->notify_webhook_url,
                             .body = body,
                             .timeout_ms = (long)timeout_ms,
                             .max_body = 4096,
                             .truncate_body = true,
                             /* The same key on every attempt: a receiver that honours it takes
                              * a message once even when a worker died between its post and
                              * the record of it (the one window keel cannot close itself). */
                             .idempotency_key = call->idempotency_key,
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

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Who claims, for operators: this process; the attempt goes into its own column. */
static void owner_of(char *out, size_t n)
{
    char host[128] = "";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown-host");
    host[sizeof host - 1] = '\0';
    snprintf(out, n, "keel-worker %s:%ld", host, (long)getpid());
}

/* Mark err retryable (the server tries the activity again) and pass rc through. */
static int retryable(keel_error *err, int rc)
{
    if (err)
        err->retryable = true;
    return rc;
}

/* Post the claimed message, within what is left of the claim's lease; record the outcome. */
static int deliver(const keel_tool_call *call, const char *body, const char *token,
                   int64_t claim_started, char **result_json, keel_error *err)
{
    /* The crash tests' point: claimed, not yet posted. */
    keel_failpoint("notify.after_claim");
    /* The post must end before the lease does, so that an attempt taking the claim over after
     * the lease never posts while this one still might. Time counts from before the claim was
     * asked for, which is earlier than the lease's start. */
    int64_t budget = NOTIFY_LEASE_MS - LEASE_MARGIN_MS - (monotonic_ms() - claim_started);
    if (budget < MIN_POST_MS) {
        keel_error ignored;
        keel_ledger_effect_release(call->ledger, call->idempotency_key, token,
                                   "the claim took so long that too little of its lease was left "
                                   "to post",
                                   &ignored);
        return retryable(err, keel_error_set(err, KEEL_EUNAVAILABLE,
                                             "notify: claiming the message took %lld ms, too "
                                             "much of its lease to post; a retry tries again",
                                             (long long)(monotonic_ms() - claim_started)));
    }
    long status = 0;
    int rc = post(call, body, budget < POST_TIMEOUT_MS ? budget : POST_TIMEOUT_MS, &status, err);
    if (rc != KEEL_OK) {
        /* A webhook that answered did not take the message: release the claim, saying why, so
         * that a retry may post. Without an answer the message may have arrived, so the claim
         * stays until its lease runs out. */
        if (status != 0) {
            keel_error ignored;
            keel_ledger_effect_release(call->ledger, call->idempotency_key, token,
                                       err ? err->message : "the webhook refused the message",
                                       &ignored);
        }
        return rc;
    }
    char result[96];
    snprintf(result, sizeof result, "{\"delivered\":true,\"status\":%ld}", status);
    /* The message is out: whatever happens to the record, answer that it was delivered. Failing
     * here would make a retry post it again; an unrecorded claim is marked abandoned by the
     * sweep instead, for an operator to see. */
    keel_error ignored;
    keel_ledger_effect_done(call->ledger, call->idempotency_key, result, &ignored);
    if (!(*result_json = strdup(result)))
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    return KEEL_OK;
}

static int run_notify(const keel_tool_call *call, const cJSON *args, char **result_json,
                      keel_error *err)
{
    if (!call->notify_webhook_url || !*call->notify_webhook_url)
        return keel_error_set(err, KEEL_EINVAL,
                              "notify: no webhook is configured (KEEL_NOTIFY_WEBHOOK_URL)");
    char *body = payload(args);
    if (!body)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    char owner[200];
    owner_of(owner, sizeof owner);
    keel_effect_request req = {.key = call->idempotency_key,
                               .kind = "notify",
                               .lease_ms = NOTIFY_LEASE_MS,
                               .owner = owner,
                               .attempt =
                                   call->activity ? keel_activity_attempt(call->activity) : 0,
                               .payload_json = body};
    keel_effect_claim claim;
    int64_t started = monotonic_ms();
    int rc = keel_ledger_effect_claim(call->ledger, &req, &claim, err);
    if (rc == KEEL_OK && claim.state == KEEL_EFFECT_CLAIMED) {
        rc = deliver(call, body, claim.token, started, result_json, err);
        /* Counted by the attempt that posted it, so once per message. */
        if (rc == KEEL_OK)
            keel_agent_metrics_approvals(call->metrics,
                                         cJSON_GetObjectItemCaseSensitive(args, "approvals"));
    } else if (rc == KEEL_OK && claim.state == KEEL_EFFECT_DONE) {
        /* Posted by an earlier attempt: its record is the answer. */
        *result_json = claim.result_json ? claim.result_json : strdup("{\"delivered\":true}");
        claim.result_json = NULL;
        if (!*result_json)
            rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
    } else if (rc == KEEL_OK) {
        rc = retryable(err, keel_error_set(err, KEEL_EUNAVAILABLE,
                                           "notify: %s is delivering this message; its claim's "
                                           "lease runs %lld ms more, then a retry takes it over",
                                           claim.holder, (long long)claim.busy_ms));
    }
    keel_effect_claim_dispose(&claim);
    free(body);
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
