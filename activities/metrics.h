/*
 * activities/metrics.h - keel's own metrics (keel_ prefix), recorded by the agent activities
 * through keel/metrics.h: model requests, tokens, cost, latency and ledger reuse (llm.chat), tool
 * calls and budget rejections (tool.*). The list, with labels and units, is in
 * docs/observability.md.
 *
 * The handles are registered once (keel_agent_metrics_new) and only read afterwards, so the
 * activities share them across threads. A NULL keel_agent_metrics (metrics off) is accepted
 * everywhere and records nothing.
 */
#ifndef KEEL_ACTIVITIES_METRICS_H
#define KEEL_ACTIVITIES_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/metrics.h"

typedef struct keel_agent_metrics {
    keel_metric *model_requests;      /* counter: model, tier, outcome */
    keel_metric *model_tokens;        /* counter: model, kind (prompt, cached, completion) */
    keel_metric *model_cost;          /* counter: model (USD) */
    keel_metric *model_latency;       /* histogram: model, tier (seconds) */
    keel_metric *ledger_reuse;        /* counter: model (responses reused from the ledger) */
    keel_metric *tool_calls;          /* counter: tool, outcome */
    keel_metric *budget_rejections;   /* counter: tool */
    keel_metric *approvals_requested; /* counter: level */
    keel_metric *approvals_decided;   /* counter: level, decision */
    keel_metric *approvals_waiting;   /* gauge: level */
} keel_agent_metrics;

/* Register the families in m; NULL when m is NULL or out of memory. Free with _free. */
keel_agent_metrics *keel_agent_metrics_new(keel_metrics *m);
void keel_agent_metrics_free(keel_agent_metrics *am);

/* Count the approval events a delivered notification tells of: its "approvals" argument, a list
 * of {"level", "event"} (requested, approved, rejected, expired, cancelled) that workflows set
 * (notify's schema bounds both). NULL am or list: nothing. */
struct cJSON;
void keel_agent_metrics_approvals(const keel_agent_metrics *am, const struct cJSON *list);

/* The outcome label of a finished llm.chat attempt from the failure type it reported (NULL: it
 * succeeded) and whether the model refused: ok, refused, rate_limited, quota, timeout,
 * malformed, invalid_request, unavailable, ledger_error, cancelled, error. */
const char *keel_agent_metrics_model_outcome(const char *failure_type, bool refused,
                                             bool cancelled);
/* The outcome label of a tool activity: ok, invalid_arguments, not_granted, refused,
 * unavailable, cancelled, error. */
const char *keel_agent_metrics_tool_outcome(const char *failure_type, const char *problem,
                                            bool cancelled);

#endif
