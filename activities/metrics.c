/* activities/metrics - keel's own metrics for the agent activities. */
#include "activities/metrics.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

keel_agent_metrics *keel_agent_metrics_new(keel_metrics *m)
{
    if (m == NULL)
        return NULL;
    keel_agent_metrics *am = calloc(1, sizeof *am);
    if (am == NULL)
        return NULL;
    static const char *const mto[] = {"model", "tier", "outcome"};
    static const char *const mk[] = {"model", "kind"};
    static const char *const mo[] = {"model"};
    static const char *const mt[] = {"model", "tier"};
    static const char *const to[] = {"tool", "outcome"};
    static const char *const t[] = {"tool"};
    keel_error e;
    am->model_requests = keel_metrics_counter(
        m, "keel_model_requests_total",
        "llm.chat attempts by model, tier (small, strong, custom) and outcome.", mto, 3, &e);
    am->model_tokens =
        keel_metrics_counter(m, "keel_model_tokens_total",
                             "Tokens the model provider reported, by kind (prompt, cached, "
                             "completion); cached tokens are part of prompt tokens.",
                             mk, 2, &e);
    am->model_cost = keel_metrics_counter(
        m, "keel_model_cost_usd_total",
        "What model calls cost in USD, from KEEL_PRICES (calls of unpriced models add nothing).",
        mo, 1, &e);
    am->model_latency = keel_metrics_histogram(
        m, "keel_model_latency_seconds",
        "Time of one call to the model provider (ledger reuses excluded), in seconds.", mt, 2,
        keel_metrics_latency_buckets, keel_metrics_n_latency_buckets, &e);
    am->ledger_reuse = keel_metrics_counter(
        m, "keel_ledger_reuse_total",
        "llm.chat attempts answered from the ledger instead of calling the model again.", mo, 1,
        &e);
    am->tool_calls = keel_metrics_counter(
        m, "keel_tool_calls_total",
        "Tool activity attempts by tool and outcome (ok, invalid_arguments, not_granted, "
        "refused, unavailable, cancelled, error).",
        to, 2, &e);
    am->budget_rejections = keel_metrics_counter(
        m, "keel_budget_rejections_total",
        "Budget checks whose answer was that the amount does not fit.", t, 1, &e);
    static const char *const lv[] = {"level"};
    static const char *const ld[] = {"level", "decision"};
    am->approvals_requested = keel_metrics_counter(
        m, "keel_approvals_requested_total",
        "Approvals asked of an approver (the notification to them delivered), by level.", lv, 1,
        &e);
    am->approvals_decided = keel_metrics_counter(
        m, "keel_approvals_decided_total",
        "Approvals that ended, by level and decision (approved, rejected, expired, cancelled).", ld,
        2, &e);
    am->approvals_waiting = keel_metrics_gauge(
        m, "keel_approvals_waiting",
        "Approvals requested and not yet decided, by level, as this worker process saw them.", lv,
        1, &e);
    return am;
}

void keel_agent_metrics_approvals(const keel_agent_metrics *am, const cJSON *list)
{
    if (am == NULL || !cJSON_IsArray(list))
        return;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        const char *level = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "level"));
        const char *event = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "event"));
        if (!level || !event)
            continue;
        const char *v[] = {level, event};
        if (strcmp(event, "requested") == 0) {
            keel_metric_add(am->approvals_requested, v, 1);
            keel_metric_add(am->approvals_waiting, v, 1);
        } else {
            keel_metric_add(am->approvals_decided, v, 1);
            keel_metric_add(am->approvals_waiting, v, -1);
        }
    }
}

void keel_agent_metrics_free(keel_agent_metrics *am)
{
    free(am);
}

const char *keel_agent_metrics_model_outcome(const char *failure_type, bool refused, bool cancelled)
{
    if (cancelled)
        return "cancelled";
    if (failure_type == NULL)
        return refused ? "refused" : "ok";
    static const struct {
        const char *type, *outcome;
    } map[] = {
        {"LlmRateLimited", "rate_limited"},
        {"LlmQuotaExhausted", "quota"},
        {"LlmBilling", "quota"},
        {"LlmTimeout", "timeout"},
        {"LlmMalformedResponse", "malformed"},
        {"LlmResponseTooLarge", "malformed"},
        {"LlmResultTooLarge", "malformed"},
        {"LlmBadInput", "invalid_request"},
        {"LlmInvalidRequest", "invalid_request"},
        {"LlmRequestTooLarge", "invalid_request"},
        {"LlmUnprocessable", "invalid_request"},
        {"LlmModelNotFound", "invalid_request"},
        {"LlmUnavailable", "unavailable"},
        {"LlmServerError", "unavailable"},
        {"LlmAuth", "denied"},
        {"LlmForbidden", "denied"},
        {"LedgerUnavailable", "ledger_error"},
        {"LedgerError", "ledger_error"},
        {"LedgerConflict", "ledger_error"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(failure_type, map[i].type) == 0)
            return map[i].outcome;
    return "error";
}

const char *keel_agent_metrics_tool_outcome(const char *failure_type, const char *problem,
                                            bool cancelled)
{
    if (cancelled)
        return "cancelled";
    if (failure_type == NULL)
        return "ok";
    if (strcmp(failure_type, "ToolInvalidArguments") == 0)
        return problem && (strcmp(problem, "tool_not_allowed") == 0 ||
                           strcmp(problem, "unknown_tool") == 0)
                   ? "not_granted"
                   : "invalid_arguments";
    if (strcmp(failure_type, "ToolRefused") == 0)
        return "refused";
    if (strcmp(failure_type, "ToolUnavailable") == 0)
        return "unavailable";
    return "error";
}
