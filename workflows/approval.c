/*
 * approval - the human approval step (see approval.h for its contract).
 *
 * The state machine:
 *
 *   start --bad input--> REFUSED (the run fails with BadInput)
 *     |
 *     v
 *   WAITING --`required` approvals--> APPROVED  \
 *     |     --one rejection---------> REJECTED   } the run completes with the decision
 *     |     --expiry timer----------> EXPIRED   /
 *     |     --cancellation request--> CANCELLED   (the run ends as Canceled)
 *     +-- reminder timer: count it, start the next one; escalation timer: the delegate joins
 *
 * Every stage but WAITING closes the run in the activation that enters it, so the engine never
 * delivers another event to them. Each event kind has its own handler below; they share
 * read_decision() and may_decide(), which the update validator uses too, so that a signal and an
 * update are judged by the same rules.
 */
#include "workflows/approval.h"

#include "workflows/wfjson.h"
#include "keel/json.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#define MAX_APPROVERS KEEL_APPROVAL_MAX_APPROVERS
#define MAX_DECIDERS  (MAX_APPROVERS + 1) /* the approvers, and the delegate after escalation */
#define NAME_SIZE     64                  /* a person's name or id, with its NUL */
#define TEXT_SIZE     256                 /* the subject, a comment, a note */
#define REASON_SIZE   512                 /* why something was refused (the engine's size too) */

#define SECOND_MS   1000LL
#define HOUR_MS     (3600 * SECOND_MS)
#define DAY_MS      (24 * HOUR_MS)
#define MIN_WAIT_MS SECOND_MS
#define MAX_WAIT_MS (366 * DAY_MS)
/* Reminders repeat while the request waits; the cap keeps the history bounded when
 * remind_after is short next to expire_after. */
#define MAX_REMINDERS 50

typedef enum stage {
    WAITING,   /* for decisions; the timers run */
    APPROVED,  /* `required` approvals came in */
    REJECTED,  /* an approver rejected */
    EXPIRED,   /* expire_after passed first */
    CANCELLED, /* a client asked the run to cancel */
    REFUSED,   /* the input was bad; the run failed */
} stage;

typedef struct vote {
    char approver[NAME_SIZE];
    char comment[TEXT_SIZE];
} vote;

typedef struct approval {
    stage stage;
    /* The request, as the input gave it. */
    char subject[TEXT_SIZE], requester[NAME_SIZE], delegate[NAME_SIZE]; /* "": no delegate */
    char deciders[MAX_DECIDERS][NAME_SIZE]; /* the approvers; the delegate joins on escalation */
    int n_deciders, required;
    int64_t remind_after, escalate_after, expire_after;
    /* What happened since. */
    vote approvals[MAX_DECIDERS];
    int n_approvals;
    vote rejection; /* stage REJECTED: who rejected */
    int reminders;
    bool escalated;
    /* The timers still pending; 0 once fired or cancelled. */
    uint32_t remind_timer, escalate_timer, expire_timer;
    char last_problem[REASON_SIZE]; /* the last signal ignored and why, or the bad input */
} approval;

/* What a decision says, read from a signal or an update. */
typedef struct decision {
    bool approve;
    char approver[NAME_SIZE];
    char comment[TEXT_SIZE];
} decision;

/* The names the status and the search attribute use, by stage. */
static const char *const stage_names[] = {
    [WAITING] = "approval", [APPROVED] = "approved",   [REJECTED] = "rejected",
    [EXPIRED] = "expired",  [CANCELLED] = "cancelled", [REFUSED] = "refused",
};

static const char *const input_fields[] = {
    "subject",      "requester",      "approvers",    "required", "delegate",
    "remind_after", "escalate_after", "expire_after", NULL,
};
static const char *const signal_fields[] = {"approver", "comment", NULL};
static const char *const update_fields[] = {"approver", "decision", "comment", NULL};

/* ---- small helpers ---- */

static bool is_decider(const approval *a, const char *who)
{
    for (int i = 0; i < a->n_deciders; i++)
        if (strcmp(a->deciders[i], who) == 0)
            return true;
    return false;
}

/* Rejection ends the request, so anyone who already decided approved. */
static bool has_approved(const approval *a, const char *who)
{
    for (int i = 0; i < a->n_approvals; i++)
        if (strcmp(a->approvals[i].approver, who) == 0)
            return true;
    return false;
}

/* "ana, bo": the deciders (only those still undecided if `pending`). */
static void join_deciders(const approval *a, bool pending, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < a->n_deciders && len < n; i++) {
        if (pending && has_approved(a, a->deciders[i]))
            continue;
        int w = snprintf(buf + len, n - len, "%s%s", len ? ", " : "", a->deciders[i]);
        len += w > 0 ? (size_t)w : 0;
    }
}

/* ---- the input ---- */

static bool read_approvers(approval *a, const cJSON *in, char *why, size_t n)
{
    const cJSON *list = keel_wf_member(in, "approvers");
    int count = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    if (count < 1 || count > MAX_APPROVERS)
        return keel_wf_refuse(why, n, "\"approvers\" must be a list of 1 to %d names",
                              MAX_APPROVERS);
    const cJSON *v;
    cJSON_ArrayForEach(v, list)
    {
        const char *name = cJSON_GetStringValue(v);
        if (name == NULL || name[0] == '\0' || strlen(name) >= NAME_SIZE)
            return keel_wf_refuse(why, n, "each approver must be a name of 1 to %d bytes",
                                  NAME_SIZE - 1);
        if (is_decider(a, name))
            return keel_wf_refuse(why, n, "approver '%s' is listed twice", name);
        if (strcmp(name, a->requester) == 0)
            return keel_wf_refuse(why, n, "the requester '%s' cannot be one of the approvers",
                                  name);
        memcpy(a->deciders[a->n_deciders++], name, strlen(name) + 1);
    }
    return true;
}

static bool read_delegate(approval *a, const cJSON *in, char *why, size_t n)
{
    const cJSON *v = keel_wf_member(in, "delegate");
    if (v == NULL)
        return true;
    if (!keel_wf_take_text(v, "delegate", false, a->delegate, sizeof a->delegate, why, n))
        return false;
    if (strcmp(a->delegate, a->requester) == 0)
        return keel_wf_refuse(why, n, "the requester '%s' cannot be the delegate", a->delegate);
    if (is_decider(a, a->delegate))
        return keel_wf_refuse(why, n, "the delegate '%s' is already an approver", a->delegate);
    return true;
}

static bool read_times(approval *a, const cJSON *in, char *why, size_t n)
{
    const char *ms = "milliseconds";
    return keel_wf_take_whole(in, "remind_after", ms, DAY_MS, MIN_WAIT_MS, MAX_WAIT_MS,
                              &a->remind_after, why, n) &&
           keel_wf_take_whole(in, "escalate_after", ms, 2 * DAY_MS, MIN_WAIT_MS, MAX_WAIT_MS,
                              &a->escalate_after, why, n) &&
           keel_wf_take_whole(in, "expire_after", ms, 7 * DAY_MS, MIN_WAIT_MS, MAX_WAIT_MS,
                              &a->expire_after, why, n);
}

/* Fill the request part of the state from the input, or say what is wrong with it. */
static bool read_input(approval *a, const cJSON *in, char *why, size_t n)
{
    if (!cJSON_IsObject(in))
        return keel_wf_refuse(why, n, "the input must be a JSON object");
    int64_t required = 0;
    if (!keel_wf_only_known_fields(in, input_fields, why, n) ||
        !keel_wf_take_text(keel_wf_member(in, "subject"), "subject", false, a->subject,
                           sizeof a->subject, why, n) ||
        !keel_wf_take_text(keel_wf_member(in, "requester"), "requester", false, a->requester,
                           sizeof a->requester, why, n) ||
        !read_approvers(a, in, why, n) ||
        !keel_wf_take_whole(in, "required", "approvals", 1, 1, a->n_deciders, &required, why, n) ||
        !read_delegate(a, in, why, n) || !read_times(a, in, why, n))
        return false;
    a->required = (int)required;
    return true;
}

/* ---- decisions ---- */

/* The members of a decision: {"approver", "comment"} for a signal, whose name (`signal`) is the
 * verdict, or {"approver", "decision", "comment"} for the update (signal NULL). */
static bool decision_from(const cJSON *in, const char *signal, decision *d, char *why, size_t n)
{
    if (!cJSON_IsObject(in))
        return keel_wf_refuse(why, n,
                              "a decision must be a JSON object like {\"approver\": \"ana\"%s}",
                              signal ? "" : ", \"decision\": \"approve\"");
    if (!keel_wf_only_known_fields(in, signal ? signal_fields : update_fields, why, n) ||
        !keel_wf_take_text(keel_wf_member(in, "approver"), "approver", false, d->approver,
                           sizeof d->approver, why, n))
        return false;
    const cJSON *comment = keel_wf_member(in, "comment");
    if (comment &&
        !keel_wf_take_text(comment, "comment", true, d->comment, sizeof d->comment, why, n))
        return false;
    const char *verdict = signal ? signal : cJSON_GetStringValue(keel_wf_member(in, "decision"));
    if (verdict == NULL || (strcmp(verdict, "approve") != 0 && strcmp(verdict, "reject") != 0))
        return keel_wf_refuse(why, n, "\"decision\" must be \"approve\" or \"reject\"");
    d->approve = strcmp(verdict, "approve") == 0;
    return true;
}

static bool read_decision(const char *json, const char *signal, decision *d, char *why, size_t n)
{
    memset(d, 0, sizeof *d);
    cJSON *in = keel_json_from(json ? json : "");
    bool ok = decision_from(in, signal, d, why, n);
    cJSON_Delete(in);
    return ok;
}

/* Whether `who` may decide now, or why not. */
static bool may_decide(const approval *a, const char *who, char *why, size_t n)
{
    if (a->stage != WAITING)
        return keel_wf_refuse(why, n, "the request is already %s", stage_names[a->stage]);
    if (strcmp(who, a->requester) == 0)
        return keel_wf_refuse(why, n, "'%s' requested this approval and cannot decide on it", who);
    if (has_approved(a, who))
        return keel_wf_refuse(why, n, "'%s' already approved", who);
    if (is_decider(a, who))
        return true;
    if (a->delegate[0] && strcmp(who, a->delegate) == 0)
        return keel_wf_refuse(why, n, "'%s' is the delegate and may decide only after escalation",
                              who);
    char names[MAX_DECIDERS * NAME_SIZE];
    join_deciders(a, false, names, sizeof names);
    return keel_wf_refuse(why, n, "'%s' may not decide on this request (approvers: %s)", who,
                          names);
}

/* The update's payload, judged by the same rules as a signal. */
static bool check_update(const approval *a, const char *json, decision *d, char *why, size_t n)
{
    return read_decision(json, NULL, d, why, n) && may_decide(a, d->approver, why, n);
}

/* Count a decision that may_decide() accepted; the stage moves when it settles the request. */
static void record(approval *a, const decision *d)
{
    vote *v = d->approve ? &a->approvals[a->n_approvals++] : &a->rejection;
    memcpy(v->approver, d->approver, sizeof v->approver);
    memcpy(v->comment, d->comment, sizeof v->comment);
    if (!d->approve)
        a->stage = REJECTED;
    else if (a->n_approvals >= a->required)
        a->stage = APPROVED;
}

/* ---- JSON out ----
 * cJSON allocates, and each builder says whether everything went in, so that only a complete
 * document is printed: running out of memory fails the workflow task instead of giving a wrong
 * answer. */

static cJSON *vote_json(const vote *v)
{
    cJSON *o = cJSON_CreateObject();
    if (o && keel_wf_put(o, "approver", cJSON_CreateString(v->approver)) &&
        keel_wf_put(o, "comment", cJSON_CreateString(v->comment)))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static cJSON *approvals_json(const approval *a)
{
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; list && i < a->n_approvals; i++)
        if (!keel_wf_put(list, NULL, vote_json(&a->approvals[i]))) {
            cJSON_Delete(list);
            return NULL;
        }
    return list;
}

/* Who may still decide: none once the request is decided. */
static cJSON *pending_json(const approval *a)
{
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; list && a->stage == WAITING && i < a->n_deciders; i++)
        if (!has_approved(a, a->deciders[i]) &&
            !keel_wf_put(list, NULL, cJSON_CreateString(a->deciders[i]))) {
            cJSON_Delete(list);
            return NULL;
        }
    return list;
}

/* The members the result and the status share. */
static bool put_outcome(cJSON *o, const approval *a)
{
    return keel_wf_put(o, "approvals", approvals_json(a)) &&
           keel_wf_put(o, "rejected_by",
                       a->stage == REJECTED ? vote_json(&a->rejection) : cJSON_CreateNull()) &&
           keel_wf_put(o, "reminders", cJSON_CreateNumber(a->reminders)) &&
           keel_wf_put(o, "escalated", cJSON_CreateBool(a->escalated));
}

static bool decided(stage s)
{
    return s == APPROVED || s == REJECTED || s == EXPIRED;
}

static char *result_json(const approval *a)
{
    cJSON *o = cJSON_CreateObject();
    return keel_wf_print(
        o, o && keel_wf_put(o, "decision", cJSON_CreateString(stage_names[a->stage])) &&
               put_outcome(o, a));
}

static const char *state_name(stage s)
{
    return s == WAITING     ? "waiting"
           : s == CANCELLED ? "cancelled"
           : s == REFUSED   ? "failed"
                            : "decided";
}

static char *status_json(const approval *a)
{
    cJSON *o = cJSON_CreateObject();
    bool ok =
        o && keel_wf_put(o, "state", cJSON_CreateString(state_name(a->stage))) &&
        keel_wf_put(o, "decision",
                    keel_wf_string_or_null(decided(a->stage) ? stage_names[a->stage] : NULL)) &&
        keel_wf_put(o, "subject", cJSON_CreateString(a->subject)) &&
        keel_wf_put(o, "requester", cJSON_CreateString(a->requester)) &&
        keel_wf_put(o, "required", cJSON_CreateNumber(a->required)) && put_outcome(o, a) &&
        keel_wf_put(o, "may_decide", pending_json(a)) &&
        keel_wf_put(o, "delegate", keel_wf_string_or_null(a->delegate)) &&
        keel_wf_put(o, "last_problem", keel_wf_string_or_null(a->last_problem));
    return keel_wf_print(o, ok);
}

/* ---- commands ---- */

static int set_stage_attribute(keel_workflow_ctx *ctx, stage s)
{
    char value[32];
    snprintf(value, sizeof value, "\"%s\"", stage_names[s]);
    keel_search_attribute_value sa = {"ProcurementStage", KEEL_INDEXED_VALUE_TYPE_KEYWORD, value};
    return keel_workflow_upsert_search_attributes(ctx, &sa, 1);
}

/* Stop the clocks: a decided request needs no reminder, escalation or expiry. */
static int cancel_timers(keel_workflow_ctx *ctx, approval *a)
{
    uint32_t *timers[] = {&a->remind_timer, &a->escalate_timer, &a->expire_timer};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++) {
        int rc = *timers[i] ? keel_workflow_cancel_timer(ctx, *timers[i]) : KEEL_OK;
        if (rc != KEEL_OK)
            return rc;
        *timers[i] = 0;
    }
    return KEEL_OK;
}

/* The request is decided (approved, rejected or expired): complete with the result. */
static int finish(keel_workflow_ctx *ctx, approval *a)
{
    int rc = cancel_timers(ctx, a);
    if (rc == KEEL_OK)
        rc = set_stage_attribute(ctx, a->stage);
    if (rc != KEEL_OK)
        return rc;
    char *result = result_json(a);
    if (result == NULL)
        return keel_workflow_error(ctx, "out of memory writing the approval result");
    rc = keel_workflow_complete(ctx, result);
    cJSON_free(result);
    return rc;
}

/* Keep why a signal was ignored, for the status query. */
static int ignore_signal(approval *a, const char *signal, const char *why)
{
    snprintf(a->last_problem, sizeof a->last_problem, "ignored signal '%.40s': %.440s", signal,
             why);
    return KEEL_OK;
}

/* ---- the callbacks ---- */

/* The reminder clock, named for the Web UI (its timer summary) after the approvers it nudges. */
static uint32_t remind_timer(keel_workflow_ctx *ctx, const approval *a)
{
    char summary[160];
    snprintf(summary, sizeof summary, "reminder to %.100s%s", a->deciders[0],
             a->n_deciders > 1 ? " and the other approvers" : "");
    keel_timer_options o = {.summary = summary};
    return keel_workflow_timer_with(ctx, a->remind_after, &o);
}

static int approval_start(keel_workflow_ctx *ctx, void *state, const char *input_json)
{
    approval *a = state;
    char why[REASON_SIZE];
    cJSON *in = keel_json_from(input_json ? input_json : "");
    bool ok = read_input(a, in, why, sizeof why);
    cJSON_Delete(in);
    if (!ok) {
        a->stage = REFUSED;
        snprintf(a->last_problem, sizeof a->last_problem, "%s", why);
        return keel_workflow_fail(ctx, "BadInput", why, true);
    }
    a->stage = WAITING;
    a->remind_timer = remind_timer(ctx, a);
    char escalate[160];
    if (a->delegate[0])
        snprintf(escalate, sizeof escalate, "escalate to %.100s", a->delegate);
    else
        snprintf(escalate, sizeof escalate, "escalation (no delegate)");
    keel_timer_options eo = {.summary = escalate}, xo = {.summary = "request expires"};
    a->escalate_timer = keel_workflow_timer_with(ctx, a->escalate_after, &eo);
    a->expire_timer = keel_workflow_timer_with(ctx, a->expire_after, &xo);
    if (!a->remind_timer || !a->escalate_timer || !a->expire_timer)
        return KEEL_EINVAL; /* the engine said why */
    return set_stage_attribute(ctx, WAITING);
}

/* "approve" / "reject": a decision that cannot be answered, so a bad one is only noted. */
static int on_signal(keel_workflow_ctx *ctx, approval *a, const keel_workflow_event *ev)
{
    if (ev->failure_type[0]) /* an argument the worker could not read: the reason says where */
        return ignore_signal(a, ev->name, ev->failure_message);
    if (strcmp(ev->name, "approve") != 0 && strcmp(ev->name, "reject") != 0)
        return ignore_signal(a, ev->name, "this workflow takes only approve and reject");
    decision d;
    char why[REASON_SIZE];
    if (!read_decision(ev->json, ev->name, &d, why, sizeof why) ||
        !may_decide(a, d.approver, why, sizeof why))
        return ignore_signal(a, ev->name, why);
    record(a, &d);
    return a->stage == WAITING ? KEEL_OK : finish(ctx, a);
}

/* "decide": the validator accepted it against this very state, so the check below only guards
 * against histories recorded by other code. The answer goes out before the run closes. */
static int on_update(keel_workflow_ctx *ctx, approval *a, const keel_workflow_event *ev)
{
    decision d;
    char why[REASON_SIZE];
    if (strcmp(ev->name, "decide") != 0)
        return keel_workflow_update_fail(ctx, ev->seq, "UnknownUpdate", "only decide is taken");
    if (!check_update(a, ev->json, &d, why, sizeof why))
        return keel_workflow_update_fail(ctx, ev->seq, "InvalidDecision", why);
    record(a, &d);
    char *status = status_json(a);
    if (status == NULL)
        return keel_workflow_error(ctx, "out of memory writing the approval status");
    int rc = keel_workflow_update_complete(ctx, ev->seq, status);
    cJSON_free(status);
    if (rc != KEEL_OK || a->stage == WAITING)
        return rc;
    return finish(ctx, a);
}

/* Nudge the approvers again, and count it where operators look (the memo). */
static int remind(keel_workflow_ctx *ctx, approval *a)
{
    a->remind_timer = 0;
    a->reminders++;
    if (a->reminders < MAX_REMINDERS && (a->remind_timer = remind_timer(ctx, a)) == 0)
        return KEEL_EINVAL;
    char count[16];
    snprintf(count, sizeof count, "%d", a->reminders);
    keel_kv memo = {"reminders", count};
    return keel_workflow_upsert_memo(ctx, &memo, 1);
}

/* The approvers took too long: the delegate gets the decision rights too. Without a delegate
 * nothing changes, but the status says the request was escalated. */
static int escalate(approval *a)
{
    a->escalate_timer = 0;
    a->escalated = true;
    if (a->delegate[0])
        memcpy(a->deciders[a->n_deciders++], a->delegate, sizeof a->delegate);
    return KEEL_OK;
}

static int on_timer(keel_workflow_ctx *ctx, approval *a, uint32_t seq)
{
    if (seq == a->remind_timer)
        return remind(ctx, a);
    if (seq == a->escalate_timer)
        return escalate(a);
    if (seq == a->expire_timer) {
        a->expire_timer = 0;
        a->stage = EXPIRED; /* a business outcome: the run completes, it does not fail */
        return finish(ctx, a);
    }
    return keel_workflow_error(ctx, "timer %u is not one this run started", seq);
}

/* A client cancelled the request: stop the clocks and end as Canceled, recording where it
 * stood. */
static int on_cancel(keel_workflow_ctx *ctx, approval *a)
{
    a->stage = CANCELLED;
    int rc = cancel_timers(ctx, a);
    if (rc == KEEL_OK)
        rc = set_stage_attribute(ctx, CANCELLED);
    if (rc != KEEL_OK)
        return rc;
    char *status = status_json(a);
    if (status == NULL)
        return keel_workflow_error(ctx, "out of memory writing the approval status");
    rc = keel_workflow_cancelled(ctx, status);
    cJSON_free(status);
    return rc;
}

static int approval_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    approval *a = state;
    if (a->stage != WAITING)
        return keel_workflow_error(ctx, "event %d reached a run that is already %s", (int)ev->kind,
                                   stage_names[a->stage]);
    switch (ev->kind) {
    case KEEL_EVENT_SIGNAL:
        return on_signal(ctx, a, ev);
    case KEEL_EVENT_UPDATE:
        return on_update(ctx, a, ev);
    case KEEL_EVENT_TIMER_FIRED:
        return on_timer(ctx, a, ev->seq);
    case KEEL_EVENT_CANCEL_REQUESTED:
        return on_cancel(ctx, a);
    default: /* it starts no activities, children or external signals */
        return keel_workflow_error(ctx, "keel.Approval got unexpected event %d", (int)ev->kind);
    }
}

static int approval_validate(const void *state, const char *name, const char *args_json,
                             char *reason, size_t n)
{
    decision d;
    (void)name; /* the engine admits only the declared "decide" */
    return check_update(state, args_json, &d, reason, n) ? KEEL_OK : KEEL_EINVAL;
}

static int approval_query(const void *state, const char *name, const char *args_json,
                          char **result_json)
{
    (void)args_json;
    if (strcmp(name, "status") != 0)
        return KEEL_EINVAL;
    *result_json = status_json(state);
    return *result_json ? KEEL_OK : KEEL_ENOMEM;
}

/* "waiting for 1 more approval from ana, bo (reminded 1x)". */
static void describe_waiting(const approval *a, char *buf, size_t n)
{
    char names[MAX_DECIDERS * NAME_SIZE], notes[64] = "";
    join_deciders(a, true, names, sizeof names);
    if (a->reminders)
        snprintf(notes, sizeof notes, "reminded %dx", a->reminders);
    if (a->escalated)
        snprintf(notes + strlen(notes), sizeof notes - strlen(notes), "%sescalated%s",
                 notes[0] ? ", " : "", a->delegate[0] ? "" : " without a delegate");
    int more = a->required - a->n_approvals;
    snprintf(buf, n, "waiting for %d more approval%s from %s%s%s%s", more, more == 1 ? "" : "s",
             names, notes[0] ? " (" : "", notes, notes[0] ? ")" : "");
}

static void approval_describe(const void *state, char *buf, size_t n)
{
    const approval *a = state;
    switch (a->stage) {
    case WAITING:
        describe_waiting(a, buf, n);
        return;
    case APPROVED:
    case EXPIRED:
        snprintf(buf, n, "%s with %d of %d approvals", stage_names[a->stage], a->n_approvals,
                 a->required);
        return;
    case REJECTED:
        snprintf(buf, n, "rejected by %s", a->rejection.approver);
        return;
    case CANCELLED:
        snprintf(buf, n, "cancelled while waiting for %d more approval(s)",
                 a->required - a->n_approvals);
        return;
    case REFUSED:
        snprintf(buf, n, "failed: bad input: %s", a->last_problem);
        return;
    }
}

static const char *const approval_queries[] = {"status", NULL};
static const char *const approval_signals[] = {"approve", "reject", NULL};
static const char *const approval_updates[] = {"decide", NULL};

const keel_workflow_type keel_approval_workflow = {
    .name = KEEL_APPROVAL_TYPE,
    .state_size = sizeof(approval),
    .start = approval_start,
    .on_event = approval_event,
    .query = approval_query,
    .describe = approval_describe,
    .queries = approval_queries,
    .signals = approval_signals,
    .updates = approval_updates,
    .validate_update = approval_validate,
    /* Pinned: an approval waits on people for days and must finish on the code it began with. */
    .versioning_behavior = KEEL_VERSIONING_PINNED,
};
