/*
 * agent_task - a generic tool-using agent with guard rails (see agent_task.h for its contract).
 *
 * The state machine:
 *
 *   start --bad input--> FAILED (BadInput)
 *     |
 *     v
 *   next_turn: turn limit reached? --> AWAITING_HANDOFF --resume--> next_turn
 *     |        continue as new?   --> CONTINUED          --take_over--> TAKEN_OVER
 *     v
 *   THINKING (llm.chat) --no tool calls--> ANSWERED
 *     |                 --over budget----> FAILED (BudgetExhausted)
 *     |                 --failed---------> FAILED (ModelFailed)
 *     v
 *   next_call, for each tool call of the turn, in order:
 *     invalid (the activity's schema check) or not offered -> an error tool message, no activity
 *     gated -> AWAITING_APPROVAL --approve--> RUNNING_TOOL (refused edited arguments: back here)
 *                                --reject---> a "rejected" tool message
 *     other -> RUNNING_TOOL --done or failed--> a tool message
 *   ... and when the turn's calls are all answered, next_turn again.
 *
 *   Any waiting stage --cancellation request--> CANCELLED
 *
 * Every guard rail is decided here, in deterministic code: the counters (turns, tokens, dollars)
 * come from activity results in history. The calls of one turn run one after another, so a
 * gated call waits for its approver without other calls racing past it, and the tool messages
 * go back in the order the model made the calls.
 *
 * The state holds cJSON trees (the configuration, the turn's calls, the messages for the next
 * model call), freed by agent_dispose.
 */
#include "workflows/agent_task.h"

#include "workflows/wfjson.h"
#include "keel/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_SIZE     64   /* a person's name, a tool's name */
#define ID_SIZE       256  /* the conversation id */
#define REASON_SIZE   512  /* why something was refused or ignored */
#define MAX_GOAL      8000 /* bytes of the goal and of the system prompt */
#define MAX_TOOLS     32
#define MAX_APPROVERS 10
#define MAX_TURNS     200

typedef enum stage {
    THINKING,          /* llm.chat is running */
    RUNNING_TOOL,      /* a tool.<name> activity is running */
    AWAITING_APPROVAL, /* a gated call waits for approve or reject */
    AWAITING_HANDOFF,  /* the turn limit is reached: resume or take_over */
    ANSWERED,          /* the model answered: completed */
    TAKEN_OVER,        /* a person answered: completed */
    FAILED,            /* bad input, budget exhausted, the model failed */
    CANCELLED,         /* a client cancelled the run */
    CONTINUED,         /* continued as a new run */
} stage;

static const char *const stage_names[] = {
    [THINKING] = "thinking",
    [RUNNING_TOOL] = "running_tool",
    [AWAITING_APPROVAL] = "awaiting_approval",
    [AWAITING_HANDOFF] = "awaiting_handoff",
    [ANSWERED] = "answered",
    [TAKEN_OVER] = "taken_over",
    [FAILED] = "failed",
    [CANCELLED] = "cancelled",
    [CONTINUED] = "continued",
};

/* What travels from run to run in "carry" (counters first, then the rest). */
typedef struct counters {
    int turns;     /* model calls, all runs */
    int max_turns; /* the limit, raised by resume */
    int runs;      /* this run's number: 1, 2, ... */
    int tool_runs; /* tool activities run */
    int invalid;   /* calls answered with an error, no activity */
    int approvals, rejections, handoffs;
    double tokens;   /* total tokens, all runs (a double: JSON numbers are) */
    double cost_usd; /* what the priced models cost */
    bool cost_known; /* false once a model without a price answered */
} counters;

typedef struct agent {
    stage stage;
    cJSON *config; /* the input without "carry" (owned): what a continuation starts from */
    char conversation[ID_SIZE];
    int continue_after; /* model calls per run; 0: only when the server suggests it */
    int grant;          /* turns a resume grants by default: the configured max_turns */
    double max_total_tokens, max_cost_usd; /* 0: no budget */
    counters n;
    int run_turns; /* model calls in this run */
    /* The turn in progress. */
    cJSON *calls;  /* the model's tool calls (owned), or NULL */
    int call;      /* the call being handled */
    cJSON *outbox; /* messages for the next model call (owned) */
    cJSON *args;   /* the gated call's arguments, as proposed or edited (owned) */
    bool edited, approved;
    char approver[NAME_SIZE];
    uint32_t model_seq, tool_seq;
    /* How it ended, and what went wrong on the way. */
    char *answer; /* owned */
    char taken_over_by[NAME_SIZE];
    char failure[REASON_SIZE];
    char problem[REASON_SIZE]; /* the last signal ignored, or edited arguments refused */
} agent;

static const char *const input_fields[] = {
    "goal",
    "system",
    "tools",
    "approval_required",
    "approvers",
    "model",
    "model_tier",
    "max_turns",
    "max_total_tokens",
    "max_cost_usd",
    "max_tokens_per_turn",
    "continue_as_new_after",
    "carry",
    NULL,
};

/* ---- small helpers ---- */

static const char *text_of(const cJSON *obj, const char *field)
{
    return cJSON_GetStringValue(keel_wf_member(obj, field));
}

static bool in_list(const cJSON *list, const char *name)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, list)
    {
        const char *s = cJSON_GetStringValue(v);
        if (s && name && strcmp(s, name) == 0)
            return true;
    }
    return false;
}

/* A whole number in [min, max] from member `field`, or dflt when it is absent. */
static bool take_int(const cJSON *obj, const char *field, double dflt, double min, double max,
                     double *out, char *why, size_t n)
{
    const cJSON *v = keel_wf_member(obj, field);
    if (v == NULL) {
        *out = dflt;
        return true;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max) ||
        v->valuedouble != floor(v->valuedouble))
        return keel_wf_refuse(why, n, "\"%s\" must be a whole number from %.0f to %.0f", field, min,
                              max);
    *out = v->valuedouble;
    return true;
}

/* A string member: required unless `optional`, at most max bytes, not blank. */
static bool check_text(const cJSON *obj, const char *field, bool optional, size_t max, char *why,
                       size_t n)
{
    const cJSON *v = keel_wf_member(obj, field);
    if (v == NULL && optional)
        return true;
    if (!cJSON_IsString(v) || strspn(v->valuestring, " \t\r\n") == strlen(v->valuestring))
        return keel_wf_refuse(why, n, "\"%s\" must be a non-empty string", field);
    if (strlen(v->valuestring) > max)
        return keel_wf_refuse(why, n, "\"%s\" is longer than %zu bytes", field, max);
    return true;
}

/* A list of distinct names: [min, max] of them, each 1-63 bytes of [A-Za-z0-9_-] when
 * `tool_like`, any text otherwise. */
static bool check_names(const cJSON *obj, const char *field, int min, int max, bool tool_like,
                        char *why, size_t n)
{
    const cJSON *list = keel_wf_member(obj, field);
    if (list == NULL && min == 0)
        return true;
    int count = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (count < min || count > max)
        return keel_wf_refuse(why, n, "\"%s\" must be a list of %d to %d names", field, min, max);
    const cJSON *v;
    cJSON_ArrayForEach(v, list)
    {
        const char *s = cJSON_GetStringValue(v);
        size_t len = s ? strlen(s) : 0;
        if (len == 0 || len >= NAME_SIZE ||
            (tool_like && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789_-") != len))
            return keel_wf_refuse(why, n, "each of \"%s\" must be a name of 1 to %d %s", field,
                                  NAME_SIZE - 1, tool_like ? "letters, digits, _ or -" : "bytes");
        for (const cJSON *u = list->child; u != v; u = u->next)
            if (strcmp(u->valuestring, s) == 0)
                return keel_wf_refuse(why, n, "\"%s\" lists '%s' twice", field, s);
    }
    return true;
}

/* ---- the input ---- */

static bool read_model(const cJSON *in, char *why, size_t n)
{
    const cJSON *tier = keel_wf_member(in, "model_tier");
    if (keel_wf_member(in, "model") && tier)
        return keel_wf_refuse(why, n, "give \"model\" or \"model_tier\", not both");
    if (!check_text(in, "model", true, 200, why, n))
        return false;
    if (tier && !(cJSON_IsString(tier) && (strcmp(tier->valuestring, "small") == 0 ||
                                           strcmp(tier->valuestring, "strong") == 0)))
        return keel_wf_refuse(why, n, "\"model_tier\" must be \"small\" or \"strong\"");
    return true;
}

static bool read_tools(const cJSON *in, char *why, size_t n)
{
    if (!check_names(in, "tools", 1, MAX_TOOLS, true, why, n) ||
        !check_names(in, "approval_required", 0, MAX_TOOLS, true, why, n))
        return false;
    const cJSON *v;
    cJSON_ArrayForEach(v, keel_wf_member(in, "approval_required"))
    {
        if (!in_list(keel_wf_member(in, "tools"), v->valuestring))
            return keel_wf_refuse(why, n,
                                  "\"approval_required\" names '%s', which is not in \"tools\"",
                                  v->valuestring);
    }
    return check_names(in, "approvers", 0, MAX_APPROVERS, false, why, n);
}

static bool read_limits(agent *a, const cJSON *in, char *why, size_t n)
{
    double max_turns, cont, per_turn;
    if (!take_int(in, "max_turns", 10, 1, MAX_TURNS, &max_turns, why, n) ||
        !take_int(in, "continue_as_new_after", 20, 0, 1000, &cont, why, n) ||
        !take_int(in, "max_total_tokens", 0, 1, 1e12, &a->max_total_tokens, why, n) ||
        !take_int(in, "max_tokens_per_turn", 0, 1, 1000000, &per_turn, why, n))
        return false;
    const cJSON *usd = keel_wf_member(in, "max_cost_usd");
    if (usd && !(cJSON_IsNumber(usd) && usd->valuedouble > 0 && usd->valuedouble <= 1e9))
        return keel_wf_refuse(why, n, "\"max_cost_usd\" must be a number above 0");
    a->max_cost_usd = usd ? usd->valuedouble : 0;
    a->n.max_turns = a->grant = (int)max_turns;
    a->continue_after = (int)cont;
    return true;
}

/* What an earlier run of this task handed on. Only the workflow writes it, but it is input,
 * so its shape is checked like the rest. */
static bool read_carry(agent *a, const cJSON *carry, char *why, size_t n)
{
    if (!cJSON_IsObject(carry))
        return keel_wf_refuse(why, n, "\"carry\" must be an object");
    const char *conv = text_of(carry, "conversation");
    const cJSON *outbox = keel_wf_member(carry, "outbox");
    if (!conv || !conv[0] || strlen(conv) >= sizeof a->conversation)
        return keel_wf_refuse(why, n, "\"carry\" needs the conversation id");
    if (!cJSON_IsArray(outbox))
        return keel_wf_refuse(why, n, "\"carry\" needs the outbox, a list of messages");
    snprintf(a->conversation, sizeof a->conversation, "%s", conv);
    struct {
        const char *name;
        int *field;
    } ints[] = {{"turns", &a->n.turns},
                {"max_turns", &a->n.max_turns},
                {"runs", &a->n.runs},
                {"tool_calls", &a->n.tool_runs},
                {"invalid_tool_calls", &a->n.invalid},
                {"approvals", &a->n.approvals},
                {"rejections", &a->n.rejections},
                {"handoffs", &a->n.handoffs}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        double v;
        if (!take_int(carry, ints[i].name, *ints[i].field, 0, 1e6, &v, why, n))
            return false;
        *ints[i].field = (int)v;
    }
    const cJSON *tokens = keel_wf_member(carry, "tokens"),
                *cost = keel_wf_member(carry, "cost_usd");
    if (!cJSON_IsNumber(tokens) || !cJSON_IsNumber(cost) ||
        !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(carry, "cost_known")))
        return keel_wf_refuse(why, n, "\"carry\" needs tokens, cost_usd and cost_known");
    a->n.tokens = tokens->valuedouble;
    a->n.cost_usd = cost->valuedouble;
    a->n.cost_known = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(carry, "cost_known"));
    a->n.runs++;
    return (a->outbox = cJSON_Duplicate(outbox, true)) != NULL ||
           keel_wf_refuse(why, n, "out of memory reading the carry");
}

/* The first messages of a new task: the system prompt (if any) and the goal. */
static bool first_messages(agent *a, const cJSON *in, char *why, size_t n)
{
    a->outbox = cJSON_CreateArray();
    const char *roles[] = {"system", "user"},
               *texts[] = {text_of(in, "system"), text_of(in, "goal")};
    for (int i = 0; a->outbox && i < 2; i++) {
        cJSON *m = texts[i] ? cJSON_CreateObject() : NULL;
        if (texts[i] && !(m && cJSON_AddStringToObject(m, "role", roles[i]) &&
                          cJSON_AddStringToObject(m, "content", texts[i]) &&
                          cJSON_AddItemToArray(a->outbox, m))) {
            cJSON_Delete(m);
            return keel_wf_refuse(why, n, "out of memory");
        }
    }
    return a->outbox != NULL || keel_wf_refuse(why, n, "out of memory");
}

static bool read_input(keel_workflow_ctx *ctx, agent *a, const cJSON *in, char *why, size_t n)
{
    if (!cJSON_IsObject(in))
        return keel_wf_refuse(why, n, "the input must be a JSON object");
    if (!keel_wf_only_known_fields(in, input_fields, why, n) ||
        !check_text(in, "goal", false, MAX_GOAL, why, n) ||
        !check_text(in, "system", true, MAX_GOAL, why, n) || !read_model(in, why, n) ||
        !read_tools(in, why, n) || !read_limits(a, in, why, n))
        return false;
    a->n.runs = 1;
    a->n.cost_known = true;
    const cJSON *carry = keel_wf_member(in, "carry");
    if (carry)
        return read_carry(a, carry, why, n);
    snprintf(a->conversation, sizeof a->conversation, "agent/%.240s", keel_workflow_id(ctx));
    return first_messages(a, in, why, n);
}

/* ---- JSON out ---- */

static cJSON *usage_json(const agent *a)
{
    cJSON *u = cJSON_CreateObject();
    if (u && keel_wf_put(u, "total_tokens", cJSON_CreateNumber(a->n.tokens)) &&
        keel_wf_put(u, "cost_usd", cJSON_CreateNumber(a->n.cost_usd)) &&
        keel_wf_put(u, "cost_known", cJSON_CreateBool(a->n.cost_known)))
        return u;
    cJSON_Delete(u);
    return NULL;
}

/* The counters the result, the status and the carry share. */
static bool put_counts(cJSON *o, const agent *a)
{
    return keel_wf_put(o, "turns", cJSON_CreateNumber(a->n.turns)) &&
           keel_wf_put(o, "runs", cJSON_CreateNumber(a->n.runs)) &&
           keel_wf_put(o, "tool_calls", cJSON_CreateNumber(a->n.tool_runs)) &&
           keel_wf_put(o, "invalid_tool_calls", cJSON_CreateNumber(a->n.invalid)) &&
           keel_wf_put(o, "approvals", cJSON_CreateNumber(a->n.approvals)) &&
           keel_wf_put(o, "rejections", cJSON_CreateNumber(a->n.rejections)) &&
           keel_wf_put(o, "handoffs", cJSON_CreateNumber(a->n.handoffs));
}

static char *result_json(const agent *a)
{
    cJSON *o = cJSON_CreateObject();
    return keel_wf_print(
        o, o && keel_wf_put(o, "outcome", cJSON_CreateString(stage_names[a->stage])) &&
               keel_wf_put(o, "answer", cJSON_CreateString(a->answer ? a->answer : "")) &&
               keel_wf_put(o, "taken_over_by", keel_wf_string_or_null(a->taken_over_by)) &&
               put_counts(o, a) && keel_wf_put(o, "usage", usage_json(a)) &&
               keel_wf_put(o, "conversation", cJSON_CreateString(a->conversation)));
}

/* The call being handled (NULL between turns). */
static const cJSON *current_call(const agent *a)
{
    return a->calls ? cJSON_GetArrayItem(a->calls, a->call) : NULL;
}

static const char *call_name(const agent *a)
{
    const char *name = text_of(current_call(a), "name");
    return name ? name : "?";
}

static cJSON *pending_json(const agent *a)
{
    if (a->stage != AWAITING_APPROVAL && !(a->stage == RUNNING_TOOL && a->args))
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    const cJSON *approvers = keel_wf_member(a->config, "approvers");
    if (o && keel_wf_put(o, "tool", cJSON_CreateString(call_name(a))) &&
        keel_wf_put(o, "call_id", keel_wf_string_or_null(text_of(current_call(a), "id"))) &&
        keel_wf_put(o, "arguments", cJSON_Duplicate(a->args, true)) &&
        keel_wf_put(o, "edited", cJSON_CreateBool(a->edited)) &&
        keel_wf_put(o, "approved_by", keel_wf_string_or_null(a->approved ? a->approver : NULL)) &&
        keel_wf_put(o, "approvers",
                    approvers ? cJSON_Duplicate(approvers, true) : cJSON_CreateString("anyone")))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static cJSON *limits_json(const agent *a)
{
    cJSON *o = cJSON_CreateObject();
    if (o && keel_wf_put(o, "max_turns", cJSON_CreateNumber(a->n.max_turns)) &&
        keel_wf_put(o, "max_total_tokens",
                    a->max_total_tokens ? cJSON_CreateNumber(a->max_total_tokens)
                                        : cJSON_CreateNull()) &&
        keel_wf_put(o, "max_cost_usd",
                    a->max_cost_usd ? cJSON_CreateNumber(a->max_cost_usd) : cJSON_CreateNull()) &&
        keel_wf_put(o, "continue_as_new_after", cJSON_CreateNumber(a->continue_after)))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static void describe(const agent *a, char *buf, size_t n);

static char *status_json(const agent *a)
{
    char line[1024];
    describe(a, line, sizeof line);
    cJSON *o = cJSON_CreateObject();
    bool ok = o && keel_wf_put(o, "state", cJSON_CreateString(stage_names[a->stage])) &&
              keel_wf_put(o, "waiting_for", cJSON_CreateString(line)) &&
              keel_wf_put(o, "goal", keel_wf_string_or_null(text_of(a->config, "goal"))) &&
              keel_wf_put(o, "conversation", cJSON_CreateString(a->conversation)) &&
              put_counts(o, a) && keel_wf_put(o, "run_turns", cJSON_CreateNumber(a->run_turns)) &&
              keel_wf_put(o, "limits", limits_json(a)) && keel_wf_put(o, "usage", usage_json(a)) &&
              keel_wf_put(o, "pending_approval", pending_json(a)) &&
              keel_wf_put(o, "answer", keel_wf_string_or_null(a->answer)) &&
              keel_wf_put(o, "failure", keel_wf_string_or_null(a->failure)) &&
              keel_wf_put(o, "last_problem", keel_wf_string_or_null(a->problem));
    return keel_wf_print(o, ok);
}

/* ---- the conversation ---- */

/* Queue a message for the next model call; content is text. */
static bool queue_message(agent *a, const char *role, const char *tool_call_id, const char *content)
{
    cJSON *m = cJSON_CreateObject();
    bool ok = m && keel_wf_put(m, "role", cJSON_CreateString(role)) &&
              (!tool_call_id || keel_wf_put(m, "tool_call_id", cJSON_CreateString(tool_call_id))) &&
              keel_wf_put(m, "content", cJSON_CreateString(content));
    if (ok)
        return keel_wf_put(a->outbox, NULL, m);
    cJSON_Delete(m);
    return false;
}

/* Answer the current call with the JSON object o (consumed). */
static int answer_call(keel_workflow_ctx *ctx, agent *a, cJSON *o)
{
    char *text = keel_wf_print(o, o != NULL);
    bool ok = text && queue_message(a, "tool", text_of(current_call(a), "id"), text);
    cJSON_free(text);
    return ok ? KEEL_OK : keel_workflow_error(ctx, "out of memory answering a tool call");
}

/* {"error": kind, "tool": name, "message": text}: a call that did not run. */
static int answer_error(keel_workflow_ctx *ctx, agent *a, const char *kind, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    if (o && !(keel_wf_put(o, "error", cJSON_CreateString(kind)) &&
               keel_wf_put(o, "tool", cJSON_CreateString(call_name(a))) &&
               keel_wf_put(o, "message", cJSON_CreateString(message)))) {
        cJSON_Delete(o);
        o = NULL;
    }
    return answer_call(ctx, a, o);
}

/* ---- commands ---- */

static int next_call(keel_workflow_ctx *ctx, agent *a);

static int fail_run(keel_workflow_ctx *ctx, agent *a, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_run(keel_workflow_ctx *ctx, agent *a, const char *type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->failure, sizeof a->failure, fmt, ap);
    va_end(ap);
    a->stage = FAILED;
    return keel_workflow_fail(ctx, type, a->failure, true);
}

static int finish(keel_workflow_ctx *ctx, agent *a, stage s)
{
    a->stage = s;
    char *result = result_json(a);
    if (result == NULL)
        return keel_workflow_error(ctx, "out of memory writing the agent's result");
    int rc = keel_workflow_complete(ctx, result);
    cJSON_free(result);
    return rc;
}

/* The input of the next run: the configuration, and what this run hands on. */
static int continue_as_new(keel_workflow_ctx *ctx, agent *a)
{
    cJSON *in = cJSON_Duplicate(a->config, true), *carry = cJSON_CreateObject();
    bool ok = carry && keel_wf_put(carry, "conversation", cJSON_CreateString(a->conversation)) &&
              put_counts(carry, a) &&
              keel_wf_put(carry, "max_turns", cJSON_CreateNumber(a->n.max_turns)) &&
              keel_wf_put(carry, "tokens", cJSON_CreateNumber(a->n.tokens)) &&
              keel_wf_put(carry, "cost_usd", cJSON_CreateNumber(a->n.cost_usd)) &&
              keel_wf_put(carry, "cost_known", cJSON_CreateBool(a->n.cost_known)) &&
              keel_wf_put(carry, "outbox", cJSON_Duplicate(a->outbox, true));
    if (!ok || !in)
        cJSON_Delete(carry);
    ok = ok && in && keel_wf_put(in, "carry", carry); /* put frees carry if it fails */
    char *text = keel_wf_print(in, ok);
    if (text == NULL)
        return keel_workflow_error(ctx, "out of memory writing the continuation's input");
    a->stage = CONTINUED;
    int rc = keel_workflow_continue_as_new(ctx, text);
    cJSON_free(text);
    return rc;
}

static int call_model(keel_workflow_ctx *ctx, agent *a)
{
    static const char *const copied[] = {"model", "model_tier", NULL};
    cJSON *in = cJSON_CreateObject(), *messages = a->outbox;
    a->outbox = NULL; /* the messages go out now; the next turn's start here */
    bool ok = in && keel_wf_put(in, "conversation", cJSON_CreateString(a->conversation)) &&
              keel_wf_put(in, "messages", messages) &&
              keel_wf_put(in, "tools", cJSON_Duplicate(keel_wf_member(a->config, "tools"), true)) &&
              keel_wf_put(in, "tool_choice", cJSON_CreateString("auto"));
    for (int i = 0; ok && copied[i]; i++)
        if (keel_wf_member(a->config, copied[i]))
            ok = keel_wf_put(in, copied[i],
                             cJSON_Duplicate(keel_wf_member(a->config, copied[i]), true));
    const cJSON *per_turn = keel_wf_member(a->config, "max_tokens_per_turn");
    if (ok && per_turn)
        ok = keel_wf_put(in, "max_tokens", cJSON_Duplicate(per_turn, true));
    a->outbox = cJSON_CreateArray();
    char *text = keel_wf_print(in, ok && a->outbox);
    if (text == NULL)
        return keel_workflow_error(ctx, "out of memory writing the llm.chat input");
    keel_retry_policy retry = {.initial_interval_ms = 1000,
                               .backoff_coefficient = 2,
                               .maximum_interval_ms = 60000,
                               .maximum_attempts = 6};
    /* The Web UI shows the model tier and the turn with the activity. */
    const cJSON *tier = keel_wf_member(a->config, "model_tier");
    const cJSON *model = keel_wf_member(a->config, "model");
    char summary[160];
    snprintf(summary, sizeof summary, "%.40s model: agent turn %d",
             cJSON_IsString(tier)    ? tier->valuestring
             : cJSON_IsString(model) ? model->valuestring
                                     : "default",
             a->n.turns + 1);
    keel_activity_options o = {.start_to_close_ms = 300000, .retry = &retry, .summary = summary};
    a->model_seq = keel_workflow_activity(ctx, "llm.chat", text, &o);
    cJSON_free(text);
    a->stage = THINKING;
    return a->model_seq ? KEEL_OK : KEEL_EINVAL;
}

/* Between turns: hand off at the turn limit, continue as new when due, else ask the model. */
static int next_turn(keel_workflow_ctx *ctx, agent *a)
{
    cJSON_Delete(a->calls);
    a->calls = NULL;
    a->call = 0;
    if (a->n.turns >= a->n.max_turns) {
        a->stage = AWAITING_HANDOFF;
        return KEEL_OK;
    }
    if (a->run_turns > 0 && ((a->continue_after && a->run_turns >= a->continue_after) ||
                             keel_workflow_continue_as_new_suggested(ctx)))
        return continue_as_new(ctx, a);
    return call_model(ctx, a);
}

static int run_tool(keel_workflow_ctx *ctx, agent *a, const cJSON *args)
{
    static const char *const final[] = {"ToolInvalidArguments", "ToolRefused"};
    char type[NAME_SIZE + 8];
    snprintf(type, sizeof type, "tool.%s", call_name(a));
    char *text = args ? keel_json_print(args) : strdup("{}");
    if (text == NULL)
        return keel_workflow_error(ctx, "out of memory writing the arguments of %s", type);
    keel_retry_policy retry = {.initial_interval_ms = 1000,
                               .backoff_coefficient = 2,
                               .maximum_interval_ms = 30000,
                               .maximum_attempts = 5,
                               .non_retryable_error_types = final,
                               .n_non_retryable_error_types = 2};
    char summary[160];
    snprintf(summary, sizeof summary, "tool call %.60s asked for by the model in turn %d",
             text_of(current_call(a), "id"), a->n.turns);
    keel_activity_options o = {.start_to_close_ms = 120000, .retry = &retry, .summary = summary};
    a->tool_seq = keel_workflow_activity(ctx, type, text, &o);
    cJSON_free(text);
    a->stage = RUNNING_TOOL;
    return a->tool_seq ? KEEL_OK : KEEL_EINVAL;
}

/* Handle the turn's calls from a->call on: answer the ones that cannot run, start the next one
 * that can (or wait for its approver), and go to the next turn when all are answered. */
static int next_call(keel_workflow_ctx *ctx, agent *a)
{
    for (const cJSON *c; (c = current_call(a)) != NULL; a->call++) {
        const char *name = text_of(c, "name");
        int rc;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "valid"))) {
            /* The activity's check found it wrong: the model gets its structured error. */
            a->n.invalid++;
            const cJSON *error = keel_wf_member(c, "error");
            rc = error ? answer_call(ctx, a, cJSON_Duplicate(error, true))
                       : answer_error(ctx, a, "invalid_arguments", "the call was refused");
        } else if (!in_list(keel_wf_member(a->config, "tools"), name)) {
            a->n.invalid++;
            rc = answer_error(ctx, a, "tool_not_offered",
                              "this task may use only the tools it was given");
        } else if (in_list(keel_wf_member(a->config, "approval_required"), name)) {
            cJSON_Delete(a->args);
            a->args = cJSON_Duplicate(keel_wf_member(c, "args"), true);
            a->edited = a->approved = false;
            a->approver[0] = '\0';
            a->stage = AWAITING_APPROVAL;
            return a->args ? KEEL_OK : keel_workflow_error(ctx, "the call to %s has no args", name);
        } else {
            return run_tool(ctx, a, keel_wf_member(c, "args"));
        }
        if (rc != KEEL_OK)
            return rc;
    }
    return next_turn(ctx, a);
}

/* ---- events ---- */

static int on_model_answer(keel_workflow_ctx *ctx, agent *a, const char *json)
{
    cJSON *r = keel_json_from(json);
    const cJSON *usage = keel_wf_member(r, "usage"), *calls = keel_wf_member(r, "tool_calls");
    const cJSON *tokens = keel_wf_member(usage, "total_tokens"),
                *cost = keel_wf_member(usage, "cost_usd");
    a->n.turns++;
    a->run_turns++;
    a->n.tokens += cJSON_IsNumber(tokens) ? tokens->valuedouble : 0;
    if (cJSON_IsNumber(cost))
        a->n.cost_usd += cost->valuedouble;
    else
        a->n.cost_known = false;
    if (cJSON_GetArraySize(calls) == 0) {
        const char *content = text_of(r, "content");
        a->answer = strdup(content ? content : "");
        cJSON_Delete(r);
        if (a->answer == NULL)
            return keel_workflow_error(ctx, "out of memory keeping the answer");
        return finish(ctx, a, ANSWERED);
    }
    a->calls = cJSON_Duplicate(calls, true);
    a->call = 0;
    cJSON_Delete(r);
    if (a->calls == NULL)
        return keel_workflow_error(ctx, "out of memory keeping the tool calls");
    /* The budget stops the task before anything the model asked for runs. */
    if (a->max_total_tokens && a->n.tokens >= a->max_total_tokens)
        return fail_run(ctx, a, "BudgetExhausted",
                        "the token budget is spent: %.0f tokens used of %.0f after %d turns",
                        a->n.tokens, a->max_total_tokens, a->n.turns);
    if (a->max_cost_usd && a->n.cost_usd >= a->max_cost_usd)
        return fail_run(ctx, a, "BudgetExhausted",
                        "the dollar budget is spent: USD %.6f used of %.6f after %d turns",
                        a->n.cost_usd, a->max_cost_usd, a->n.turns);
    return next_call(ctx, a);
}

/* A gated call's result says who approved it and whether they changed the arguments. result is
 * the tool's JSON text, kept byte for byte (money keeps its two decimals). */
static cJSON *approved_result(const agent *a, const char *json)
{
    cJSON *result = cJSON_CreateRaw(json);
    cJSON *o = cJSON_CreateObject();
    bool ok = o && keel_wf_put(o, "approved_by", cJSON_CreateString(a->approver)) &&
              keel_wf_put(o, "edited", cJSON_CreateBool(a->edited)) &&
              (!a->edited || keel_wf_put(o, "arguments", cJSON_Duplicate(a->args, true)));
    if (!ok)
        cJSON_Delete(result);
    if (ok && keel_wf_put(o, "result", result)) /* put frees result if it fails */
        return o;
    cJSON_Delete(o);
    return NULL;
}

static int on_tool_done(keel_workflow_ctx *ctx, agent *a, const keel_workflow_event *ev)
{
    /* A canceled activity only follows a cancellation, which ends the run first. */
    a->tool_seq = 0;
    bool failed = ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED;
    if (failed && a->edited && strcmp(ev->failure_type, "ToolInvalidArguments") == 0) {
        /* The approver's edit broke the schema: back to them, with the reason. */
        snprintf(a->problem, sizeof a->problem, "the edited arguments were refused: %.440s",
                 ev->failure_message);
        /* The next decision starts again from the model's proposal. */
        cJSON_Delete(a->args);
        a->args = cJSON_Duplicate(keel_wf_member(current_call(a), "args"), true);
        a->edited = a->approved = false;
        a->n.approvals--; /* that approval did not stand: the call goes back to the approver */
        if (a->args == NULL)
            return keel_workflow_error(ctx, "out of memory keeping the proposal");
        a->stage = AWAITING_APPROVAL;
        return KEEL_OK;
    }
    a->n.tool_runs++;
    cJSON *o;
    if (failed) {
        o = cJSON_CreateObject();
        if (o && !(keel_wf_put(o, "error", cJSON_CreateString("tool_failed")) &&
                   keel_wf_put(o, "tool", cJSON_CreateString(call_name(a))) &&
                   keel_wf_put(o, "type", cJSON_CreateString(ev->failure_type)) &&
                   keel_wf_put(o, "message", cJSON_CreateString(ev->failure_message)))) {
            cJSON_Delete(o);
            o = NULL;
        }
    } else if (a->args) {
        o = approved_result(a, ev->json);
    } else {
        o = NULL; /* the tool's result goes to the model as it is */
    }
    int rc = o || failed ? answer_call(ctx, a, o)
             : queue_message(a, "tool", text_of(current_call(a), "id"), ev->json)
                 ? KEEL_OK
                 : keel_workflow_error(ctx, "out of memory answering a tool call");
    cJSON_Delete(a->args);
    a->args = NULL;
    a->call++;
    return rc == KEEL_OK ? next_call(ctx, a) : rc;
}

static int ignore_signal(agent *a, const char *signal, const char *why)
{
    snprintf(a->problem, sizeof a->problem, "ignored signal '%.40s': %.440s", signal, why);
    return KEEL_OK;
}

/* Who signs a decision: "by", a name the approvers list (if any) holds. */
static bool signer(const agent *a, const cJSON *in, bool must_approve, char *by, char *why,
                   size_t n)
{
    const char *who = text_of(in, "by");
    if (!who || !who[0] || strlen(who) >= NAME_SIZE)
        return keel_wf_refuse(why, n, "\"by\" must name who decides (1 to %d bytes)",
                              NAME_SIZE - 1);
    const cJSON *approvers = keel_wf_member(a->config, "approvers");
    if (must_approve && approvers && !in_list(approvers, who))
        return keel_wf_refuse(why, n, "'%s' is not one of the approvers of this task", who);
    snprintf(by, NAME_SIZE, "%s", who);
    return true;
}

/* "arguments" members replace the proposal's; the tool activity validates the result. */
static bool edit_arguments(agent *a, const cJSON *edits, char *why, size_t n)
{
    if (!cJSON_IsObject(edits))
        return keel_wf_refuse(why, n, "\"arguments\" must be an object of the arguments to change");
    for (const cJSON *e = edits->child; e; e = e->next) {
        cJSON *copy = cJSON_Duplicate(e, true);
        if (!copy)
            return keel_wf_refuse(why, n, "out of memory");
        if (cJSON_GetObjectItemCaseSensitive(a->args, e->string))
            cJSON_ReplaceItemInObjectCaseSensitive(a->args, e->string, copy);
        else
            cJSON_AddItemToObject(a->args, e->string, copy);
    }
    a->edited = true;
    return true;
}

static int on_decision(keel_workflow_ctx *ctx, agent *a, const keel_workflow_event *ev,
                       const cJSON *in)
{
    bool approve = strcmp(ev->name, "approve") == 0;
    char by[NAME_SIZE], why[REASON_SIZE];
    if (!cJSON_IsObject(in) || !signer(a, in, true, by, why, sizeof why))
        return ignore_signal(a, ev->name,
                             cJSON_IsObject(in) ? why : "the signal needs {\"by\": \"name\"}");
    if (approve && keel_wf_member(in, "arguments") &&
        !edit_arguments(a, keel_wf_member(in, "arguments"), why, sizeof why))
        return ignore_signal(a, ev->name, why);
    snprintf(a->approver, sizeof a->approver, "%s", by);
    if (approve) {
        a->n.approvals++;
        a->approved = true;
        a->problem[0] = '\0';
        return run_tool(ctx, a, a->args);
    }
    a->n.rejections++;
    const char *reason = text_of(in, "reason");
    cJSON *o = cJSON_CreateObject();
    if (o && !(keel_wf_put(o, "error", cJSON_CreateString("rejected_by_approver")) &&
               keel_wf_put(o, "tool", cJSON_CreateString(call_name(a))) &&
               keel_wf_put(o, "by", cJSON_CreateString(by)) &&
               keel_wf_put(o, "reason", keel_wf_string_or_null(reason)))) {
        cJSON_Delete(o);
        o = NULL;
    }
    int rc = answer_call(ctx, a, o);
    cJSON_Delete(a->args);
    a->args = NULL;
    a->call++;
    return rc == KEEL_OK ? next_call(ctx, a) : rc;
}

static int on_handoff(keel_workflow_ctx *ctx, agent *a, const keel_workflow_event *ev,
                      const cJSON *in)
{
    char by[NAME_SIZE], why[REASON_SIZE];
    if (!cJSON_IsObject(in) || !signer(a, in, false, by, why, sizeof why))
        return ignore_signal(a, ev->name,
                             cJSON_IsObject(in) ? why : "the signal needs {\"by\": \"name\"}");
    if (strcmp(ev->name, "take_over") == 0) {
        const char *answer = text_of(in, "answer");
        if (!answer || !answer[0])
            return ignore_signal(a, ev->name, "take_over needs the person's \"answer\"");
        snprintf(a->taken_over_by, sizeof a->taken_over_by, "%s", by);
        if ((a->answer = strdup(answer)) == NULL)
            return keel_workflow_error(ctx, "out of memory keeping the answer");
        return finish(ctx, a, TAKEN_OVER);
    }
    double more;
    if (!take_int(in, "turns", a->grant, 1, MAX_TURNS, &more, why, sizeof why))
        return ignore_signal(a, ev->name, why);
    const char *message = text_of(in, "message");
    if (message && strlen(message) > 8000)
        return ignore_signal(a, ev->name, "\"message\" is longer than 8000 bytes");
    if (message && message[0]) {
        char text[MAX_GOAL + 128];
        snprintf(text, sizeof text, "Message from %s: %.8000s", by, message);
        if (!queue_message(a, "user", NULL, text))
            return keel_workflow_error(ctx, "out of memory queueing the message");
    }
    a->n.handoffs++;
    a->n.max_turns = a->n.turns + (int)more;
    a->problem[0] = '\0';
    return next_turn(ctx, a);
}

static int on_signal(keel_workflow_ctx *ctx, agent *a, const keel_workflow_event *ev)
{
    if (ev->failure_type[0]) /* an argument the worker could not read: the reason says where */
        return ignore_signal(a, ev->name, ev->failure_message);
    bool decision = strcmp(ev->name, "approve") == 0 || strcmp(ev->name, "reject") == 0;
    bool handoff = strcmp(ev->name, "resume") == 0 || strcmp(ev->name, "take_over") == 0;
    if (!decision && !handoff)
        return ignore_signal(a, ev->name,
                             "this workflow takes approve, reject, resume and "
                             "take_over");
    if (decision && a->stage != AWAITING_APPROVAL)
        return ignore_signal(a, ev->name, "no tool call is waiting for approval");
    if (handoff && a->stage != AWAITING_HANDOFF)
        return ignore_signal(a, ev->name, "the task is not waiting for a hand-off");
    cJSON *in = keel_json_from(ev->json ? ev->json : "");
    int rc = decision ? on_decision(ctx, a, ev, in) : on_handoff(ctx, a, ev, in);
    cJSON_Delete(in);
    return rc;
}

/* A client cancelled the task: ask the server to cancel what runs (a model call or a tool: its
 * result would go nowhere) and end as Canceled, recording where the task stood. */
static int on_cancel(keel_workflow_ctx *ctx, agent *a)
{
    uint32_t running = a->stage == THINKING       ? a->model_seq
                       : a->stage == RUNNING_TOOL ? a->tool_seq
                                                  : 0;
    if (running && keel_workflow_cancel_activity(ctx, running) != KEEL_OK)
        return KEEL_EINVAL; /* the engine said why */
    a->stage = CANCELLED;
    char *status = status_json(a);
    if (status == NULL)
        return keel_workflow_error(ctx, "out of memory writing the agent's status");
    int rc = keel_workflow_cancelled(ctx, status);
    cJSON_free(status);
    return rc;
}

static int on_activity(keel_workflow_ctx *ctx, agent *a, const keel_workflow_event *ev)
{
    if (a->stage == THINKING && ev->seq == a->model_seq) {
        a->model_seq = 0;
        if (ev->kind == KEEL_EVENT_ACTIVITY_COMPLETED)
            return on_model_answer(ctx, a, ev->json);
        return fail_run(ctx, a, "ModelFailed", "llm.chat failed after its retries: %s: %.400s",
                        ev->failure_type, ev->failure_message);
    }
    if (a->stage == RUNNING_TOOL && ev->seq == a->tool_seq)
        return on_tool_done(ctx, a, ev);
    return keel_workflow_error(ctx, "activity %u (%s) finished, but the run is %s", ev->seq,
                               ev->name, stage_names[a->stage]);
}

/* ---- the callbacks ---- */

static int agent_start(keel_workflow_ctx *ctx, void *state, const char *input_json)
{
    agent *a = state;
    char why[REASON_SIZE];
    cJSON *in = keel_json_from(input_json ? input_json : "");
    bool ok = read_input(ctx, a, in, why, sizeof why);
    if (ok) {
        cJSON_DeleteItemFromObjectCaseSensitive(in, "carry");
        a->config = in;
    } else {
        cJSON_Delete(in);
    }
    if (!ok)
        return fail_run(ctx, a, "BadInput", "%s", why);
    return next_turn(ctx, a);
}

static int agent_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    agent *a = state;
    if (a->stage > AWAITING_HANDOFF)
        return keel_workflow_error(ctx, "event %d reached a run that is already %s", (int)ev->kind,
                                   stage_names[a->stage]);
    switch (ev->kind) {
    case KEEL_EVENT_ACTIVITY_COMPLETED:
    case KEEL_EVENT_ACTIVITY_FAILED:
    case KEEL_EVENT_ACTIVITY_CANCELED:
        return on_activity(ctx, a, ev);
    case KEEL_EVENT_SIGNAL:
        return on_signal(ctx, a, ev);
    case KEEL_EVENT_CANCEL_REQUESTED:
        return on_cancel(ctx, a);
    default: /* it starts no timers, children or external signals, and takes no updates */
        return keel_workflow_error(ctx, "keel.AgentTask got unexpected event %d", (int)ev->kind);
    }
}

static int agent_query(const void *state, const char *name, const char *args_json,
                       char **result_json)
{
    (void)args_json;
    if (strcmp(name, "status") != 0)
        return KEEL_EINVAL;
    *result_json = status_json(state);
    return *result_json ? KEEL_OK : KEEL_ENOMEM;
}

/* "USD 0.0012, 1234 tokens" of what the task spent so far. */
static void spent(const agent *a, char *buf, size_t n)
{
    snprintf(buf, n, "%.0f tokens, USD %.4f%s", a->n.tokens, a->n.cost_usd,
             a->n.cost_known ? "" : " (some models unpriced)");
}

static void describe(const agent *a, char *buf, size_t n)
{
    char money[96], args[160] = "";
    spent(a, money, sizeof money);
    int calls = a->calls ? cJSON_GetArraySize(a->calls) : 0;
    switch (a->stage) {
    case THINKING:
        snprintf(buf, n, "waiting for the model (llm.chat): turn %d of at most %d; %s so far",
                 a->n.turns + 1, a->n.max_turns, money);
        return;
    case RUNNING_TOOL:
        snprintf(buf, n, "waiting for tool.%s: call %d of %d of turn %d%s%s", call_name(a),
                 a->call + 1, calls, a->n.turns, a->approved ? ", approved by " : "",
                 a->approved ? a->approver : "");
        return;
    case AWAITING_APPROVAL: {
        char *text = a->args ? keel_json_print(a->args) : NULL;
        snprintf(args, sizeof args, "%.150s%s", text ? text : "{}",
                 text && strlen(text) > 150 ? "..." : "");
        cJSON_free(text);
        snprintf(buf, n,
                 "waiting for a person to approve or reject %s %s (signal approve, optionally "
                 "with edited arguments, or reject)%s%.300s",
                 call_name(a), args, a->problem[0] ? "; " : "", a->problem);
        return;
    }
    case AWAITING_HANDOFF:
        snprintf(buf, n,
                 "waiting for a person: the turn limit (%d) is reached; signal resume for more "
                 "turns or take_over to answer; %s so far",
                 a->n.max_turns, money);
        return;
    case ANSWERED:
        snprintf(buf, n, "answered after %d turns; %s", a->n.turns, money);
        return;
    case TAKEN_OVER:
        snprintf(buf, n, "answered by %s after %d turns; %s", a->taken_over_by, a->n.turns, money);
        return;
    case FAILED:
        snprintf(buf, n, "failed: %s", a->failure);
        return;
    case CANCELLED:
        snprintf(buf, n, "cancelled after %d turns", a->n.turns);
        return;
    case CONTINUED:
        snprintf(buf, n, "continued as new after %d turns (conversation %s)", a->n.turns,
                 a->conversation);
        return;
    }
}

static void agent_describe(const void *state, char *buf, size_t n)
{
    describe(state, buf, n);
}

static void agent_dispose(void *state)
{
    agent *a = state;
    cJSON_Delete(a->config);
    cJSON_Delete(a->calls);
    cJSON_Delete(a->outbox);
    cJSON_Delete(a->args);
    free(a->answer);
    a->config = a->calls = a->outbox = a->args = NULL;
    a->answer = NULL;
}

static const char *const agent_queries[] = {"status", NULL};
static const char *const agent_signals[] = {"approve", "reject", "resume", "take_over", NULL};

const keel_workflow_type keel_agent_task_workflow = {
    .name = KEEL_AGENT_TASK_TYPE,
    .state_size = sizeof(agent),
    .start = agent_start,
    .on_event = agent_event,
    .query = agent_query,
    .describe = agent_describe,
    .dispose = agent_dispose,
    .queries = agent_queries,
    .signals = agent_signals,
    /* Pinned: the conversation, prompts and tool grants stay those of the version it began on. */
    .versioning_behavior = KEEL_VERSIONING_PINNED,
};
