/*
 * activities/agent.c - the agentic activities as one registrable set.
 */
#include "activities/agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/metrics.h"
#include "activities/notify.h"
#include "activities/procurement.h"
#include "activities/sandbox.h"
#include "keel/json.h"
#include "keel/trace.h"

static const char *const procurement_grant[] = {"get_budget",
                                                "check_budget",
                                                "list_vendors",
                                                "get_catalog_prices",
                                                "request_quotes",
                                                "create_requisition",
                                                "set_requisition_status",
                                                "get_approvers",
                                                "create_purchase_order",
                                                "notify",
                                                NULL};
static const char *const batch_grant[] = {"list_pending_requisitions", "set_requisition_status",
                                          NULL};
static const char *const agent_task_grant[] = {
    "get_budget",           "check_budget",   "list_vendors",
    "get_catalog_prices",   "notify",         "get_sandbox_policy",
    "check_sandbox_budget", "deploy_sandbox", NULL};

const keel_tool_grant keel_default_grants[] = {
    {"keel.Procurement", procurement_grant},
    {"keel.BatchProcurement", batch_grant},
    {"keel.AgentTask", agent_task_grant},
};
const size_t keel_default_grants_count = sizeof keel_default_grants / sizeof keel_default_grants[0];

/* One tool's activity: the agent and which tool. */
typedef struct tool_binding {
    const keel_agent *agent;
    const keel_tool *tool;
    char activity_name[80]; /* "tool.<name>" */
} tool_binding;

struct keel_agent {
    keel_llm_config config;
    keel_ledger *ledger;
    keel_toolbox *toolbox;
    keel_tool *tools; /* the procurement tools, notify and the sandbox tools, one table */
    size_t n_tools;
    keel_llm llm;
    tool_binding *bindings;
    keel_activity_type *activities;
    size_t n_activities;
    char *notify_webhook_url;
    keel_agent_metrics *metrics; /* NULL: metrics off */
};

size_t keel_agent_tool_count(void)
{
    return keel_procurement_tools_count + 1 + keel_sandbox_tools_count;
}

/* The procurement tools, notify, then the sandbox tools. */
const keel_tool *keel_agent_tool_at(size_t i)
{
    if (i < keel_procurement_tools_count)
        return &keel_procurement_tools[i];
    if (i == keel_procurement_tools_count)
        return &keel_notify_tool;
    i -= keel_procurement_tools_count + 1;
    return i < keel_sandbox_tools_count ? &keel_sandbox_tools[i] : NULL;
}

static int collect_tools(keel_agent *a, keel_error *err)
{
    a->n_tools = keel_agent_tool_count();
    a->tools = calloc(a->n_tools, sizeof *a->tools);
    if (!a->tools)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    for (size_t i = 0; i < a->n_tools; i++)
        a->tools[i] = *keel_agent_tool_at(i);
    return KEEL_OK;
}

static int make_activities(keel_agent *a, keel_error *err)
{
    a->bindings = calloc(a->n_tools, sizeof *a->bindings);
    a->activities = calloc(a->n_tools + 1, sizeof *a->activities);
    if (!a->bindings || !a->activities)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    a->llm = (keel_llm){.config = &a->config, .ledger = a->ledger, .tools = a->toolbox};
    a->activities[a->n_activities++] = (keel_activity_type){
        .name = "llm.chat", .run = keel_llm_chat_activity, .user_data = &a->llm};
    for (size_t i = 0; i < a->n_tools; i++) {
        tool_binding *b = &a->bindings[i];
        b->agent = a;
        b->tool = &a->tools[i];
        snprintf(b->activity_name, sizeof b->activity_name, "tool.%s", b->tool->name);
        a->activities[a->n_activities++] = (keel_activity_type){
            .name = b->activity_name, .run = keel_tool_activity, .user_data = b};
    }
    return KEEL_OK;
}

static int open_database(keel_agent *a, const keel_agent_options *opts, keel_error *err)
{
    const char *url = opts && opts->database_url ? opts->database_url : getenv("DATABASE_URL");
    if (!url || !*url)
        return keel_error_set(err, KEEL_EINVAL,
                              "DATABASE_URL is not set: the agent activities keep their ledger, "
                              "conversations and business data in PostgreSQL");
    int rc = keel_ledger_open(&a->ledger, url, 0, err);
    if (rc == KEEL_OK && !(opts && opts->skip_migrations))
        rc = keel_ledger_migrate(a->ledger, NULL, err);
    if (rc == KEEL_OK) /* no effect claim outlives its lease as 'claimed' (ledger.h) */
        rc = keel_ledger_effect_sweeper_start(a->ledger, 0, err);
    return rc;
}

int keel_agent_new(keel_agent **out, const keel_agent_options *opts, keel_error *err)
{
    *out = NULL;
    keel_agent *a = calloc(1, sizeof *a);
    if (!a)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    const char *hook = opts && opts->notify_webhook_url ? opts->notify_webhook_url
                                                        : getenv("KEEL_NOTIFY_WEBHOOK_URL");
    int rc = keel_http_global_init(err);
    if (rc == KEEL_OK && hook && *hook && !(a->notify_webhook_url = strdup(hook)))
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
    if (rc == KEEL_OK)
        rc = keel_llm_config_from_env(&a->config, err);
    if (rc == KEEL_OK)
        rc = collect_tools(a, err);
    if (rc == KEEL_OK) {
        const keel_tool_grant *grants = opts && opts->grants ? opts->grants : keel_default_grants;
        size_t n = opts && opts->grants ? opts->n_grants : keel_default_grants_count;
        rc = keel_toolbox_new(&a->toolbox, a->tools, a->n_tools, grants, n, err);
    }
    if (rc == KEEL_OK)
        rc = open_database(a, opts, err);
    if (rc == KEEL_OK)
        rc = make_activities(a, err);
    if (rc != KEEL_OK) {
        keel_agent_free(a);
        return rc;
    }
    *out = a;
    return KEEL_OK;
}

void keel_agent_free(keel_agent *a)
{
    if (!a)
        return;
    keel_ledger_close(a->ledger);
    keel_toolbox_free(a->toolbox);
    keel_llm_config_dispose(&a->config);
    free(a->tools);
    free(a->bindings);
    free(a->activities);
    free(a->notify_webhook_url);
    keel_agent_metrics_free(a->metrics);
    free(a);
}

const keel_activity_type *keel_agent_activities(const keel_agent *a, size_t *count)
{
    *count = a->n_activities;
    return a->activities;
}

keel_ledger *keel_agent_ledger(const keel_agent *a)
{
    return a->ledger;
}

const keel_toolbox *keel_agent_toolbox(const keel_agent *a)
{
    return a->toolbox;
}

const keel_llm_config *keel_agent_llm_config(const keel_agent *a)
{
    return &a->config;
}

/* The failure a tool's error becomes: retryable only when the cause may pass. A cancellation
 * is not a failure: the worker reports the activity canceled. */
static int tool_failure(keel_activity_ctx *ctx, const keel_tool *tool, int rc,
                        const keel_error *err, keel_span *span)
{
    if (rc == KEEL_ECANCELLED)
        return KEEL_ECANCELLED;
    const char *type = "ToolError";
    bool retryable = err->retryable;
    if (rc == KEEL_EUNAVAILABLE || rc == KEEL_ETIMEOUT || rc == KEEL_ENOMEM) {
        type = "ToolUnavailable";
        retryable = true;
    } else if (rc == KEEL_EINVAL || rc == KEEL_ENOTFOUND || rc == KEEL_EEXISTS) {
        type = "ToolRefused"; /* the request itself cannot succeed */
        retryable = false;
    }
    char message[KEEL_ERROR_MESSAGE_MAX];
    snprintf(message, sizeof message, "tool %s: %.900s", tool->name, err->message);
    keel_span_set_str(span, "error.type", type);
    keel_span_set_status(span, KEEL_SPAN_ERROR, message);
    keel_activity_failure f = {.type = type, .message = message, .non_retryable = !retryable};
    return keel_activity_fail_with(ctx, &f);
}

/* "the tool call was refused before it ran (invalid_arguments): /region: ...; /ttl_hours: ...":
 * the problems in the message too, because a workflow sees a failure's message but not its
 * details, and a person who edited the arguments must learn what was wrong. */
static void refusal_message(const cJSON *problem, char *buf, size_t n)
{
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(problem, "error"));
    int len =
        snprintf(buf, n, "the tool call was refused before it ran (%s)", kind ? kind : "invalid");
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(problem, "errors"))
    {
        const char *ptr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "pointer"));
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "reason"));
        if (len < 0 || (size_t)len >= n)
            break;
        len += snprintf(buf + len, n - (size_t)len, "%s%s: %s", i++ ? "; " : ": ",
                        ptr && ptr[0] ? ptr : "/", why ? why : "invalid");
    }
}

void keel_agent_set_metrics(keel_agent *agent, keel_metrics *m)
{
    keel_agent_metrics_free(agent->metrics);
    agent->metrics = keel_agent_metrics_new(m);
    agent->llm.metrics = agent->metrics;
}

/* A tool call's outcome: keel_tool_calls_total, and a budget check that did not fit. */
static void record_tool(const keel_agent *a, const keel_tool *tool, const char *outcome,
                        const char *result_json)
{
    if (a->metrics == NULL)
        return;
    const char *v[] = {tool->name, outcome};
    keel_metric_add(a->metrics->tool_calls, v, 1);
    if (result_json && strstr(tool->name, "budget") && strstr(result_json, "\"fits\"")) {
        cJSON *r = cJSON_Parse(result_json);
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "fits")))
            keel_metric_add(a->metrics->budget_rejections, v, 1);
        cJSON_Delete(r);
    }
}

static const char *tool_outcome(int rc)
{
    return rc == KEEL_ECANCELLED                                                 ? "cancelled"
           : rc == KEEL_EUNAVAILABLE || rc == KEEL_ETIMEOUT || rc == KEEL_ENOMEM ? "unavailable"
           : rc == KEEL_EINVAL || rc == KEEL_ENOTFOUND || rc == KEEL_EEXISTS     ? "refused"
                                                                                 : "error";
}
/* The execute_tool span (OpenTelemetry GenAI semantic conventions): the call's id is the
 * activity id, the same for every attempt; arguments and result only with KEEL_TRACE_CONTENT. */
static keel_span *tool_span_start(keel_activity_ctx *ctx, const keel_tool *tool,
                                  const char *input_json)
{
    if (!keel_trace_enabled())
        return NULL;
    char name[128];
    snprintf(name, sizeof name, "execute_tool %s", tool->name);
    keel_span *s = keel_span_start(name, NULL);
    keel_span_set_str(s, "gen_ai.operation.name", "execute_tool");
    keel_span_set_str(s, "gen_ai.tool.name", tool->name);
    keel_span_set_str(s, "gen_ai.tool.type", "function");
    keel_span_set_str(s, "gen_ai.tool.call.id", keel_activity_id(ctx));
    keel_span_set_str(s, "keel.tool.risk", keel_tool_risk_name(tool->risk));
    if (keel_trace_capture_content())
        keel_span_set_str(s, "gen_ai.tool.call.arguments", input_json);
    return s;
}

static int run_tool(keel_activity_ctx *ctx, const char *input_json, char **result_json,
                    const tool_binding *b, keel_span *span);

int keel_tool_activity(keel_activity_ctx *ctx, const char *input_json, char **result_json,
                       void *user_data)
{
    const tool_binding *b = user_data;
    keel_span *span = tool_span_start(ctx, b->tool, input_json);
    keel_span_context mine = keel_span_get_context(span);
    keel_span_context outer = keel_trace_set_current(span ? &mine : keel_trace_current());
    int rc = run_tool(ctx, input_json, result_json, b, span);
    if (rc == KEEL_OK && keel_trace_capture_content())
        keel_span_set_str(span, "gen_ai.tool.call.result", *result_json);
    keel_trace_set_current(&outer);
    keel_span_end(span);
    return rc;
}

static int run_tool(keel_activity_ctx *ctx, const char *input_json, char **result_json,
                    const tool_binding *b, keel_span *span)
{
    const keel_agent *a = b->agent;
    cJSON *args = NULL;
    cJSON *problem = keel_toolbox_check(a->toolbox, keel_activity_workflow_type(ctx), b->tool->name,
                                        input_json, &args);
    if (problem) {
        char *details = keel_json_print(problem);
        char message[KEEL_ERROR_MESSAGE_MAX];
        refusal_message(problem, message, sizeof message);
        record_tool(a, b->tool,
                    keel_agent_metrics_tool_outcome(
                        "ToolInvalidArguments",
                        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(problem, "error")),
                        false),
                    NULL);
        cJSON_Delete(problem);
        keel_span_set_str(span, "error.type", "ToolInvalidArguments");
        keel_span_set_str(span, "keel.validation_errors", message);
        keel_span_set_status(span, KEEL_SPAN_ERROR, message);
        keel_activity_failure f = {.type = "ToolInvalidArguments",
                                   .message = message,
                                   .non_retryable = true,
                                   .details_json = details};
        int rc = keel_activity_fail_with(ctx, &f);
        free(details);
        return rc;
    }
    keel_ledger_key lk = {keel_activity_namespace(ctx), keel_activity_workflow_id(ctx),
                          keel_activity_run_id(ctx), keel_activity_id(ctx)};
    char *key = keel_ledger_key_text(&lk);
    if (!key) {
        cJSON_Delete(args);
        keel_activity_failure f = {.type = "OutOfMemory", .message = "out of memory"};
        return keel_activity_fail_with(ctx, &f);
    }
    keel_span_set_str(span, "keel.idempotency_key", key);
    keel_tool_call call = {.activity = ctx,
                           .ledger = a->ledger,
                           .idempotency_key = key,
                           .workflow_id = keel_activity_workflow_id(ctx),
                           .notify_webhook_url = a->notify_webhook_url,
                           .metrics = a->metrics};
    keel_error err;
    keel_error_clear(&err);
    int rc = b->tool->run(&call, args, result_json, &err);
    cJSON_Delete(args);
    free(key);
    if (rc != KEEL_OK) {
        free(*result_json);
        *result_json = NULL;
        record_tool(a, b->tool, tool_outcome(rc), NULL);
        return tool_failure(ctx, b->tool, rc, &err, span);
    }
    record_tool(a, b->tool, "ok", *result_json);
    return KEEL_OK;
}
