/*
 * batch - scheduled batch procurement (see batch.h for its contract).
 *
 * The state machine of one run:
 *
 *   start --bad input--> REFUSED (the run fails with BadInput)
 *     |
 *     v
 *   LISTING --listing failed for good--> FAILED (the run fails with BatchFailed)
 *     |
 *     v
 *   WORKING: each requisition goes QUEUED -> CLAIMING -> RUNNING -> WAITING -> settled
 *     |      (approved | rejected | failed; WAITING may still settle while the run lasts)
 *     |      at most max_concurrent CLAIMING or RUNNING at once; a slot frees when its child
 *     |      settles or starts waiting for people
 *     +--every requisition settled or waiting, the listing was full--> CONTINUED (continue as new,
 *     |                                                                carrying the report)
 *     +--every requisition settled or waiting, fewer than limit------> COMPLETED (the report)
 *     +--cancellation request------------------------------------------> CANCELLED
 *
 * The run holds the listing (the requisitions as the tool returned them) and the carried report
 * on the heap, freed by batch_dispose; everything else is in the state struct. The report is
 * built from the state whenever it is needed (status query, continue-as-new, result), so there
 * is one source of truth for it.
 */
#include "workflows/batch.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workflows/procurement.h"
#include "workflows/wfjson.h"
#include "keel/json.h"

#define ID_SIZE     64  /* a requisition id or PO number, with its NUL */
#define FILTER_SIZE 128 /* a cost centre or person to select */
#define WFID_SIZE   96  /* "procurement-<requisition id>" */
#define TYPE_SIZE   128 /* a workflow type name */
#define TEXT_SIZE   256 /* a reason, waiting stage or error in the report */
#define REASON_SIZE 512 /* why something was refused or ignored (the engine's size too) */

#define DEFAULT_LIMIT      50
#define DEFAULT_CONCURRENT 3
#define MAX_RUNS           1000000 /* generations: a guard, far beyond any real batch */
#define MAX_COUNT          1000000000LL

#define CHILD_ID_PREFIX "procurement-"
#define ABANDON         2 /* parent close policy: the child outlives the batch */
#define WAITING_SIGNAL  "procurement_waiting"

typedef enum stage {
    LISTING,   /* loading the pending requisitions */
    WORKING,   /* claiming them and running their children */
    COMPLETED, /* the report is the result */
    CONTINUED, /* continued as new with the report so far */
    CANCELLED, /* a client asked the run to cancel */
    FAILED,    /* the listing failed for good */
    REFUSED,   /* the input was bad */
} stage;

/* What became of one requisition. The last four are the report's lists. */
typedef enum req_state {
    REQ_QUEUED,   /* listed, not started yet */
    REQ_CLAIMING, /* setting its status to in_progress (holds a slot) */
    REQ_RUNNING,  /* its child runs (holds a slot) */
    REQ_WAITING,  /* its child waits for people (slot freed); it may still settle */
    REQ_APPROVED, /* the child ordered it */
    REQ_REJECTED, /* the child rejected it, or its approval expired */
    REQ_FAILED,   /* no child, or the child failed */
} req_state;

#define N_LISTS 4
static const req_state listed_states[N_LISTS] = {REQ_APPROVED, REQ_REJECTED, REQ_WAITING,
                                                 REQ_FAILED};
static const char *const list_names[N_LISTS] = {"approved", "rejected", "waiting", "failed"};

typedef struct requisition {
    req_state state;
    int entry;                   /* its index in the listing; -1: the entry was unusable */
    uint32_t claim, child, mark; /* what is in flight for it (0: nothing) */
    bool has_amount;             /* amount_usd is known (listing, signal or result) */
    double amount_usd;
    char id[ID_SIZE];            /* REQ-000123 */
    char workflow_id[WFID_SIZE]; /* its child's id */
    bool child_started;          /* the child's start was asked for */
    char po_number[ID_SIZE];     /* approved: the order */
    char note[TEXT_SIZE];        /* rejected: the reason; waiting: the stage; failed: error */
} requisition;

typedef struct batch {
    stage stage;
    int runs; /* this run's generation: 1 + the runs carried */
    /* The input. */
    int64_t limit, max_concurrent;
    char cost_center[FILTER_SIZE], requester[FILTER_SIZE]; /* the filter; "": none */
    char child_type[TYPE_SIZE];
    cJSON *child_options; /* NULL: none */
    cJSON *carry;         /* the report of earlier runs; NULL on the first */
    int64_t carried[N_LISTS], carried_omitted;
    /* This run. */
    uint32_t list;  /* the listing activity while it runs */
    cJSON *listing; /* the requisitions array it returned */
    requisition *reqs;
    int n_reqs;
    int next;         /* the first requisition not yet claimed */
    int running;      /* slots taken: CLAIMING or RUNNING */
    int peak_running; /* the most slots ever taken at once (the status shows it) */
    int marks;        /* set_requisition_status(failed) calls in flight */
    int claimed;      /* requisitions whose claim succeeded */
    char last_problem[REASON_SIZE];
} batch;

static const char *const stage_names[] = {
    [LISTING] = "listing",     [WORKING] = "working",     [COMPLETED] = "completed",
    [CONTINUED] = "continued", [CANCELLED] = "cancelled", [FAILED] = "failed",
    [REFUSED] = "refused",
};

static const char *const input_fields[] = {
    "limit", "max_concurrent", "filter", "child_type", "child_options", "carry", NULL};
static const char *const filter_fields[] = {"cost_center", "requester", NULL};
static const char *const carry_fields[] = {"approved", "rejected", "waiting", "failed",
                                           "counts",   "runs",     "omitted", NULL};
static const char *const count_fields[] = {"approved", "rejected", "waiting",
                                           "failed",   "total",    NULL};

/* The tools are quick database calls: retry a passing outage for a while, then give up (a
 * refusal is non-retryable and fails at once). */
static const keel_retry_policy tool_retry = {
    .initial_interval_ms = 1000,
    .backoff_coefficient = 2,
    .maximum_interval_ms = 30000,
    .maximum_attempts = 8,
};
static const keel_activity_options tool_options = {.start_to_close_ms = 30000,
                                                   .retry = &tool_retry};

/* ---- the input ---- */

/* Check a nested object with keel_wf_only_known_fields, naming the object in the refusal. */
static bool only_known_in(const cJSON *obj, const char *name, const char *const *known, char *why,
                          size_t n)
{
    char inner[REASON_SIZE];
    if (keel_wf_only_known_fields(obj, known, inner, sizeof inner))
        return true;
    return keel_wf_refuse(why, n, "\"%s\": %s", name, inner);
}

static bool read_filter(batch *b, const cJSON *in, char *why, size_t n)
{
    const cJSON *f = keel_wf_member(in, "filter");
    if (f == NULL)
        return true;
    if (!cJSON_IsObject(f))
        return keel_wf_refuse(why, n,
                              "\"filter\" must be an object like {\"cost_center\": \"CC-1001\"} "
                              "or {\"requester\": \"alex.engineer@example.com\"}");
    if (!only_known_in(f, "filter", filter_fields, why, n))
        return false;
    const cJSON *cc = keel_wf_member(f, "cost_center"), *who = keel_wf_member(f, "requester");
    return (cc == NULL || keel_wf_take_text(cc, "filter.cost_center", false, b->cost_center,
                                            sizeof b->cost_center, why, n)) &&
           (who == NULL || keel_wf_take_text(who, "filter.requester", false, b->requester,
                                             sizeof b->requester, why, n));
}

static bool read_child(batch *b, const cJSON *in, char *why, size_t n)
{
    const cJSON *type = keel_wf_member(in, "child_type");
    if (type == NULL)
        snprintf(b->child_type, sizeof b->child_type, "%s", KEEL_PROCUREMENT_TYPE);
    else if (!keel_wf_take_text(type, "child_type", false, b->child_type, sizeof b->child_type, why,
                                n))
        return false;
    const cJSON *opts = keel_wf_member(in, "child_options");
    if (opts == NULL)
        return true;
    if (!cJSON_IsObject(opts))
        return keel_wf_refuse(why, n,
                              "\"child_options\" must be an object (the children's \"options\", "
                              "e.g. {\"expire_after_ms\": 604800000})");
    b->child_options = cJSON_Duplicate(opts, true);
    return b->child_options ? true : keel_wf_refuse(why, n, "out of memory reading the input");
}

/* The four lists of a carried report: arrays of objects. */
static bool read_carried_lists(const cJSON *c, char *why, size_t n)
{
    for (int k = 0; k < N_LISTS; k++) {
        const cJSON *list = keel_wf_member(c, list_names[k]), *e;
        if (!cJSON_IsArray(list))
            return keel_wf_refuse(why, n, "\"carry.%s\" must be a list", list_names[k]);
        cJSON_ArrayForEach(e, list)
        {
            if (!cJSON_IsObject(e))
                return keel_wf_refuse(why, n, "\"carry.%s\" must hold objects", list_names[k]);
        }
    }
    return true;
}

static bool read_carried_counts(batch *b, const cJSON *c, char *why, size_t n)
{
    const cJSON *counts = keel_wf_member(c, "counts");
    if (!cJSON_IsObject(counts))
        return keel_wf_refuse(why, n, "\"carry.counts\" must be an object");
    if (!only_known_in(counts, "carry.counts", count_fields, why, n))
        return false;
    for (int k = 0; k < N_LISTS; k++)
        if (!keel_wf_take_whole(counts, list_names[k], "requisitions", 0, 0, MAX_COUNT,
                                &b->carried[k], why, n))
            return false;
    return keel_wf_take_whole(c, "omitted", "requisitions", 0, 0, MAX_COUNT, &b->carried_omitted,
                              why, n);
}

/* "carry": the report of the earlier runs, as continue-as-new passes it on. */
static bool read_carry(batch *b, const cJSON *in, char *why, size_t n)
{
    const cJSON *c = keel_wf_member(in, "carry");
    b->runs = 1;
    if (c == NULL)
        return true;
    int64_t runs = 0;
    if (!cJSON_IsObject(c))
        return keel_wf_refuse(why, n, "\"carry\" must be the report of the earlier runs");
    if (!only_known_in(c, "carry", carry_fields, why, n) || !read_carried_lists(c, why, n) ||
        !read_carried_counts(b, c, why, n) ||
        !keel_wf_take_whole(c, "runs", "runs", 0, 1, MAX_RUNS - 1, &runs, why, n))
        return false;
    if (runs == 0)
        return keel_wf_refuse(why, n, "\"carry.runs\" is required");
    b->runs = (int)runs + 1;
    b->carry = cJSON_Duplicate(c, true);
    return b->carry ? true : keel_wf_refuse(why, n, "out of memory reading the input");
}

static bool read_input(batch *b, const cJSON *in, char *why, size_t n)
{
    if (!cJSON_IsObject(in))
        return keel_wf_refuse(why, n, "the input must be a JSON object (all fields optional)");
    return keel_wf_only_known_fields(in, input_fields, why, n) &&
           keel_wf_take_whole(in, "limit", "requisitions", DEFAULT_LIMIT, 1, KEEL_BATCH_MAX_LIMIT,
                              &b->limit, why, n) &&
           keel_wf_take_whole(in, "max_concurrent", "children", DEFAULT_CONCURRENT, 1,
                              KEEL_BATCH_MAX_CONCURRENT, &b->max_concurrent, why, n) &&
           read_filter(b, in, why, n) && read_child(b, in, why, n) && read_carry(b, in, why, n);
}

/* ---- JSON out ---- */

static cJSON *amount_json(const requisition *r)
{
    return r->has_amount ? cJSON_CreateNumber(r->amount_usd) : cJSON_CreateNull();
}

/* One line of the report. */
static cJSON *entry_json(const requisition *r)
{
    static const char *const detail[] = {[REQ_APPROVED] = "po_number",
                                         [REQ_REJECTED] = "reason",
                                         [REQ_WAITING] = "stage",
                                         [REQ_FAILED] = "error"};
    cJSON *o = cJSON_CreateObject();
    const char *value = r->state == REQ_APPROVED ? r->po_number : r->note;
    bool ok = o && keel_wf_put(o, "requisition_id", cJSON_CreateString(r->id)) &&
              keel_wf_put(o, "workflow_id",
                          keel_wf_string_or_null(r->child_started ? r->workflow_id : NULL)) &&
              keel_wf_put(o, detail[r->state], keel_wf_string_or_null(value)) &&
              keel_wf_put(o, "amount_usd", amount_json(r));
    if (ok)
        return o;
    cJSON_Delete(o);
    return NULL;
}

static int list_index(req_state s)
{
    for (int k = 0; k < N_LISTS; k++)
        if (listed_states[k] == s)
            return k;
    return -1;
}

/* The lists: the carried ones, then this run's requisitions that are settled or waiting, up to
 * KEEL_BATCH_MAX_REPORTED entries in all. counts[] gets how many there are of each, omitted how
 * many were not listed. */
static bool add_lists(const batch *b, cJSON *o, int64_t counts[N_LISTS], int64_t *omitted)
{
    cJSON *lists[N_LISTS];
    int64_t listed = 0;
    *omitted = b->carried_omitted;
    for (int k = 0; k < N_LISTS; k++) {
        const cJSON *old = b->carry ? keel_wf_member(b->carry, list_names[k]) : NULL;
        lists[k] = old ? cJSON_Duplicate(old, true) : cJSON_CreateArray();
        if (!keel_wf_put(o, list_names[k], lists[k]))
            return false;
        counts[k] = b->carried[k];
        listed += cJSON_GetArraySize(lists[k]);
    }
    for (int i = 0; i < b->n_reqs; i++) {
        int k = list_index(b->reqs[i].state);
        if (k < 0)
            continue;
        counts[k]++;
        if (listed >= KEEL_BATCH_MAX_REPORTED) {
            (*omitted)++;
            continue;
        }
        if (!keel_wf_put(lists[k], NULL, entry_json(&b->reqs[i])))
            return false;
        listed++;
    }
    return true;
}

/* The report: this run's and the carried one's, together. */
static cJSON *report_object(const batch *b)
{
    cJSON *o = cJSON_CreateObject(), *counts = cJSON_CreateObject();
    int64_t n[N_LISTS], omitted = 0, total = 0;
    bool ok = o && counts && add_lists(b, o, n, &omitted);
    for (int k = 0; ok && k < N_LISTS; k++) {
        ok = keel_wf_put(counts, list_names[k], cJSON_CreateNumber((double)n[k]));
        total += n[k];
    }
    ok = ok && keel_wf_put(counts, "total", cJSON_CreateNumber((double)total));
    if (ok) {
        ok = keel_wf_put(o, "counts", counts);
        counts = NULL; /* o owns it now, or put() freed it */
    }
    ok = ok && keel_wf_put(o, "runs", cJSON_CreateNumber(b->runs)) &&
         keel_wf_put(o, "omitted", cJSON_CreateNumber((double)omitted));
    cJSON_Delete(counts);
    if (ok)
        return o;
    cJSON_Delete(o);
    return NULL;
}

static cJSON *filter_object(const batch *b)
{
    cJSON *f = cJSON_CreateObject();
    if (f && keel_wf_put(f, "cost_center", keel_wf_string_or_null(b->cost_center)) &&
        keel_wf_put(f, "requester", keel_wf_string_or_null(b->requester)))
        return f;
    cJSON_Delete(f);
    return NULL;
}

/* The workflow ids of the requisitions in state s. */
static cJSON *ids_in(const batch *b, req_state s)
{
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; list && i < b->n_reqs; i++)
        if (b->reqs[i].state == s &&
            !keel_wf_put(list, NULL, cJSON_CreateString(b->reqs[i].workflow_id))) {
            cJSON_Delete(list);
            return NULL;
        }
    return list;
}

static char *status_json(const batch *b)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && keel_wf_put(o, "stage", cJSON_CreateString(stage_names[b->stage])) &&
              keel_wf_put(o, "run", cJSON_CreateNumber(b->runs)) &&
              keel_wf_put(o, "limit", cJSON_CreateNumber((double)b->limit)) &&
              keel_wf_put(o, "max_concurrent", cJSON_CreateNumber((double)b->max_concurrent)) &&
              keel_wf_put(o, "filter", filter_object(b)) &&
              keel_wf_put(o, "child_type", cJSON_CreateString(b->child_type)) &&
              keel_wf_put(o, "listed", cJSON_CreateNumber(b->n_reqs)) &&
              keel_wf_put(o, "queued", cJSON_CreateNumber(b->n_reqs - b->next)) &&
              keel_wf_put(o, "claiming", ids_in(b, REQ_CLAIMING)) &&
              keel_wf_put(o, "running", ids_in(b, REQ_RUNNING)) &&
              keel_wf_put(o, "peak_running", cJSON_CreateNumber(b->peak_running)) &&
              keel_wf_put(o, "report", report_object(b)) &&
              keel_wf_put(o, "last_problem", keel_wf_string_or_null(b->last_problem));
    return keel_wf_print(o, ok);
}

/* ---- commands ---- */

/* tool.set_requisition_status for r; returns the activity's seq (0: the engine said why). */
static uint32_t set_status(keel_workflow_ctx *ctx, const requisition *r, const char *status,
                           const char *note)
{
    cJSON *args = cJSON_CreateObject();
    bool ok = args && keel_wf_put(args, "requisition_id", cJSON_CreateString(r->id)) &&
              keel_wf_put(args, "status", cJSON_CreateString(status)) &&
              keel_wf_put(args, "note", cJSON_CreateString(note));
    char *text = keel_wf_print(args, ok);
    if (text == NULL) {
        keel_workflow_error(ctx, "out of memory writing the status of %s", r->id);
        return 0;
    }
    uint32_t seq = keel_workflow_activity(ctx, "tool.set_requisition_status", text, &tool_options);
    cJSON_free(text);
    return seq;
}

/* Take the requisition: its status becomes in_progress, so no later run lists it again. */
static int claim(keel_workflow_ctx *ctx, batch *b, requisition *r)
{
    char note[256];
    snprintf(note, sizeof note, "batch %.180s (run %d)", keel_workflow_id(ctx), b->runs);
    if ((r->claim = set_status(ctx, r, "in_progress", note)) == 0)
        return KEEL_EINVAL;
    r->state = REQ_CLAIMING;
    b->running++;
    if (b->running > b->peak_running)
        b->peak_running = b->running;
    return KEEL_OK;
}

/* Claim queued requisitions while slots are free. */
static int fill_slots(keel_workflow_ctx *ctx, batch *b)
{
    while (b->running < b->max_concurrent && b->next < b->n_reqs) {
        requisition *r = &b->reqs[b->next++];
        int rc = r->state == REQ_QUEUED ? claim(ctx, b, r) : KEEL_OK;
        if (rc != KEEL_OK)
            return rc;
    }
    return KEEL_OK;
}

/* Copy member `key` of src into dst (null when absent): the child judges what it gets. */
static bool copy_member(cJSON *dst, const cJSON *src, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    return keel_wf_put(dst, key, v ? cJSON_Duplicate(v, true) : cJSON_CreateNull());
}

/* The listing's lines without line_total_usd, which the child computes itself. */
static cJSON *items_json(const cJSON *listed)
{
    static const char *const fields[] = {"description", "quantity", "unit_price_usd"};
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(listed, "items"), *line;
    cJSON *out = cJSON_CreateArray();
    cJSON_ArrayForEach(line, items)
    {
        cJSON *o = cJSON_CreateObject();
        bool ok = o != NULL;
        for (size_t i = 0; ok && i < sizeof fields / sizeof fields[0]; i++)
            ok = copy_member(o, line, fields[i]);
        if (!keel_wf_put(out, NULL, ok ? o : NULL)) {
            if (!ok)
                cJSON_Delete(o);
            cJSON_Delete(out);
            return NULL;
        }
    }
    return out;
}

/* The child's input (see batch.h), from the requisition as listed. */
static char *child_input(keel_workflow_ctx *ctx, const batch *b, const requisition *r)
{
    const cJSON *listed = cJSON_GetArrayItem(b->listing, r->entry);
    cJSON *in = cJSON_CreateObject(), *req = cJSON_CreateObject();
    bool ok = in && req && copy_member(req, listed, "category") &&
              keel_wf_put(req, "items", items_json(listed)) &&
              copy_member(req, listed, "needed_by") && copy_member(req, listed, "justification") &&
              copy_member(in, listed, "requester") && copy_member(in, listed, "cost_center") &&
              keel_wf_put(in, "requisition_id", cJSON_CreateString(r->id));
    if (ok) {
        ok = keel_wf_put(in, "requisition", req);
        req = NULL; /* in owns it now, or put() freed it */
    }
    ok = ok && keel_wf_put(in, "report_to", cJSON_CreateString(keel_workflow_id(ctx))) &&
         (b->child_options == NULL ||
          keel_wf_put(in, "options", cJSON_Duplicate(b->child_options, true)));
    cJSON_Delete(req);
    return keel_wf_print(in, ok);
}

static int start_child(keel_workflow_ctx *ctx, batch *b, requisition *r)
{
    char *input = child_input(ctx, b, r);
    if (input == NULL)
        return keel_workflow_error(ctx, "out of memory writing the input of %s", r->workflow_id);
    keel_child_options o = {.workflow_id = r->workflow_id, .parent_close_policy = ABANDON};
    r->child = keel_workflow_child(ctx, b->child_type, input, &o);
    cJSON_free(input);
    if (r->child == 0)
        return KEEL_EINVAL;
    r->state = REQ_RUNNING;
    r->child_started = true;
    b->claimed++;
    return KEEL_OK;
}

/* The report of every run so far, as the result or the next run's carry. */
static char *report_json(const batch *b)
{
    cJSON *o = report_object(b);
    return keel_wf_print(o, o != NULL);
}

/* The listing was full, so more may be pending: the next run goes on with a fresh history. */
static int continue_batch(keel_workflow_ctx *ctx, batch *b)
{
    cJSON *next = cJSON_CreateObject();
    bool ok = next && keel_wf_put(next, "limit", cJSON_CreateNumber((double)b->limit)) &&
              keel_wf_put(next, "max_concurrent", cJSON_CreateNumber((double)b->max_concurrent)) &&
              (!(b->cost_center[0] || b->requester[0]) ||
               keel_wf_put(next, "filter", filter_object(b))) &&
              keel_wf_put(next, "child_type", cJSON_CreateString(b->child_type)) &&
              (b->child_options == NULL ||
               keel_wf_put(next, "child_options", cJSON_Duplicate(b->child_options, true))) &&
              keel_wf_put(next, "carry", report_object(b));
    char *text = keel_wf_print(next, ok);
    if (text == NULL)
        return keel_workflow_error(ctx, "out of memory writing the next run's input");
    b->stage = CONTINUED;
    int rc = keel_workflow_continue_as_new(ctx, text);
    cJSON_free(text);
    return rc;
}

static int complete_batch(keel_workflow_ctx *ctx, batch *b)
{
    char *report = report_json(b);
    if (report == NULL)
        return keel_workflow_error(ctx, "out of memory writing the report");
    b->stage = COMPLETED;
    int rc = keel_workflow_complete(ctx, report);
    cJSON_free(report);
    return rc;
}

/* Close the run once nothing holds it: every requisition claimed, no slot taken (children that
 * wait for people hold none), no status change in flight. */
static int settle(keel_workflow_ctx *ctx, batch *b)
{
    if (b->next < b->n_reqs || b->running > 0 || b->marks > 0)
        return KEEL_OK;
    /* A run that claimed nothing stops even with a full listing: the next run would list the
     * same requisitions again. */
    if (b->n_reqs >= b->limit && b->claimed > 0)
        return continue_batch(ctx, b);
    return complete_batch(ctx, b);
}

/* ---- what happens to a requisition ---- */

static requisition *find_seq(batch *b, uint32_t seq, bool child)
{
    for (int i = 0; i < b->n_reqs; i++) {
        requisition *r = &b->reqs[i];
        if (child ? r->child == seq : (r->claim == seq || r->mark == seq))
            return r;
    }
    return NULL;
}

static requisition *find_child(batch *b, const char *workflow_id, const char *requisition_id)
{
    for (int i = 0; i < b->n_reqs; i++) {
        requisition *r = &b->reqs[i];
        if ((workflow_id && r->child_started && strcmp(r->workflow_id, workflow_id) == 0) ||
            (!workflow_id && requisition_id && strcmp(r->id, requisition_id) == 0))
            return r;
    }
    return NULL;
}

/* A slot is free again: start the next, and close the run if that was the last. */
static int freed(keel_workflow_ctx *ctx, batch *b)
{
    b->running--;
    int rc = fill_slots(ctx, b);
    return rc == KEEL_OK ? settle(ctx, b) : rc;
}

/* "Type: message" of a failure, shortened to fit the report. */
static void failure_note(requisition *r, const char *prefix, const keel_workflow_event *ev)
{
    const char *type = ev->failure_type && ev->failure_type[0] ? ev->failure_type : "Failure";
    snprintf(r->note, sizeof r->note, "%s%s: %.200s", prefix, type,
             ev->failure_message ? ev->failure_message : "");
}

static int claim_failed(keel_workflow_ctx *ctx, batch *b, requisition *r,
                        const keel_workflow_event *ev)
{
    r->state = REQ_FAILED;
    failure_note(r, "could not claim the requisition: ", ev);
    return freed(ctx, b);
}

/* The child's result: ordered is approved; rejected or expired is rejected; anything else is a
 * child that does not keep the contract. */
static void classify(requisition *r, const char *json)
{
    cJSON *res = keel_json_from(json ? json : "");
    const char *outcome = cJSON_GetStringValue(keel_wf_member(res, "outcome"));
    const char *reason = cJSON_GetStringValue(keel_wf_member(res, "reason"));
    const cJSON *amount = keel_wf_member(res, "amount_usd");
    if (cJSON_IsNumber(amount)) {
        r->has_amount = true;
        r->amount_usd = amount->valuedouble;
    }
    if (outcome && strcmp(outcome, "ordered") == 0) {
        r->state = REQ_APPROVED;
        const char *po = cJSON_GetStringValue(keel_wf_member(res, "po_number"));
        snprintf(r->po_number, sizeof r->po_number, "%s", po ? po : "");
    } else if (outcome && (strcmp(outcome, "rejected") == 0 || strcmp(outcome, "expired") == 0)) {
        r->state = REQ_REJECTED;
        if (reason)
            snprintf(r->note, sizeof r->note, "%s", reason);
        else
            snprintf(r->note, sizeof r->note, "%s",
                     outcome[0] == 'e' ? "the approval expired" : "rejected");
    } else {
        r->state = REQ_FAILED;
        snprintf(r->note, sizeof r->note, "the child completed without a known outcome: %.180s",
                 json ? json : "null");
    }
    cJSON_Delete(res);
}

/* The child failed, timed out, was cancelled or terminated: the requisition is marked failed,
 * so that it does not sit in_progress with nothing behind it. One already running under that id
 * belongs to someone else and is left alone. */
static int child_failed(keel_workflow_ctx *ctx, batch *b, requisition *r,
                        const keel_workflow_event *ev)
{
    r->state = REQ_FAILED;
    if (ev->failure_type && strcmp(ev->failure_type, "AlreadyStarted") == 0) {
        r->child_started = false;
        snprintf(r->note, sizeof r->note,
                 "AlreadyStarted: workflow %.90s is already running (another batch or a person "
                 "started it); this batch left it alone",
                 r->workflow_id);
        return KEEL_OK;
    }
    failure_note(r, "", ev);
    char note[TEXT_SIZE + 64];
    snprintf(note, sizeof note, "%.60s: %s", r->workflow_id, r->note);
    if ((r->mark = set_status(ctx, r, "failed", note)) == 0)
        return KEEL_EINVAL;
    b->marks++;
    return KEEL_OK;
}

/* ---- the events ---- */

static int fail_batch(keel_workflow_ctx *ctx, batch *b, const char *type, const char *message)
{
    b->stage = strcmp(type, "BadInput") == 0 ? REFUSED : FAILED;
    snprintf(b->last_problem, sizeof b->last_problem, "%s", message);
    return keel_workflow_fail(ctx, type, message, true);
}

/* The listing failed for good: nothing was claimed, so the batch can simply run again. */
static int listing_failed(keel_workflow_ctx *ctx, batch *b, const keel_workflow_event *ev)
{
    char message[REASON_SIZE];
    snprintf(message, sizeof message,
             "could not list the pending requisitions in run %d: %.200s: %.200s", b->runs,
             ev->failure_type ? ev->failure_type : "",
             ev->failure_message ? ev->failure_message : "");
    return fail_batch(ctx, b, "BatchFailed", message);
}

/* Take each listed requisition; one without a usable id is reported failed. */
static void read_requisition(batch *b, int i)
{
    requisition *r = &b->reqs[i];
    const cJSON *e = cJSON_GetArrayItem(b->listing, i);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "requisition_id"));
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(e, "total_usd");
    if (id == NULL || id[0] == '\0' || strlen(id) >= sizeof r->id) {
        r->state = REQ_FAILED;
        r->entry = -1;
        snprintf(r->id, sizeof r->id, "(entry %d)", i);
        snprintf(r->note, sizeof r->note, "the listing's entry %d has no usable requisition_id", i);
        return;
    }
    r->entry = i;
    memcpy(r->id, id, strlen(id) + 1);
    snprintf(r->workflow_id, sizeof r->workflow_id, CHILD_ID_PREFIX "%s", id);
    if (cJSON_IsNumber(total)) {
        r->has_amount = true;
        r->amount_usd = total->valuedouble;
    }
}

static int on_listing(keel_workflow_ctx *ctx, batch *b, const char *json)
{
    cJSON *doc = keel_json_from(json ? json : "");
    b->listing = cJSON_DetachItemFromObjectCaseSensitive(doc, "requisitions");
    cJSON_Delete(doc);
    if (!cJSON_IsArray(b->listing))
        return fail_batch(ctx, b, "BatchFailed",
                          "list_pending_requisitions answered without a requisitions list");
    int n = cJSON_GetArraySize(b->listing);
    b->n_reqs = n < KEEL_BATCH_MAX_LIMIT ? n : KEEL_BATCH_MAX_LIMIT;
    b->reqs = calloc((size_t)b->n_reqs + 1, sizeof *b->reqs);
    if (b->reqs == NULL)
        return keel_workflow_error(ctx, "out of memory holding %d requisitions", b->n_reqs);
    for (int i = 0; i < b->n_reqs; i++)
        read_requisition(b, i);
    b->stage = WORKING;
    int rc = fill_slots(ctx, b);
    return rc == KEEL_OK ? settle(ctx, b) : rc;
}

static int on_activity(keel_workflow_ctx *ctx, batch *b, const keel_workflow_event *ev)
{
    bool ok = ev->kind == KEEL_EVENT_ACTIVITY_COMPLETED;
    if (b->stage == LISTING && ev->seq == b->list) {
        b->list = 0;
        return ok ? on_listing(ctx, b, ev->json) : listing_failed(ctx, b, ev);
    }
    requisition *r = find_seq(b, ev->seq, false);
    if (r == NULL)
        return keel_workflow_error(ctx, "activity %u is not one this run scheduled", ev->seq);
    if (r->claim == ev->seq) {
        r->claim = 0;
        if (!ok)
            return claim_failed(ctx, b, r, ev);
        return start_child(ctx, b, r);
    }
    /* Marking a failed requisition: if even that fails, the status says so. */
    r->mark = 0;
    b->marks--;
    if (!ok)
        snprintf(b->last_problem, sizeof b->last_problem,
                 "could not set %s to status failed: %.400s", r->id,
                 ev->failure_message ? ev->failure_message : "");
    return settle(ctx, b);
}

static int on_child(keel_workflow_ctx *ctx, batch *b, const keel_workflow_event *ev)
{
    requisition *r = find_seq(b, ev->seq, true);
    if (r == NULL)
        return keel_workflow_error(ctx, "child %u is not one this run started", ev->seq);
    r->child = 0;
    bool held_slot = r->state == REQ_RUNNING; /* a waiting child gave its slot back already */
    int rc = KEEL_OK;
    if (ev->kind == KEEL_EVENT_CHILD_COMPLETED)
        classify(r, ev->json);
    else
        rc = child_failed(ctx, b, r, ev);
    if (rc != KEEL_OK)
        return rc;
    return held_slot ? freed(ctx, b) : settle(ctx, b);
}

/* Keep why a signal was ignored, for the status query. */
static int ignore_signal(batch *b, const char *signal, const char *why)
{
    snprintf(b->last_problem, sizeof b->last_problem, "ignored signal '%.40s': %.440s", signal,
             why);
    return KEEL_OK;
}

/* "procurement_waiting": the child waits for people now, which can take days; it stops
 * counting against max_concurrent. */
static int on_signal(keel_workflow_ctx *ctx, batch *b, const keel_workflow_event *ev)
{
    if (ev->failure_type[0]) /* an argument the worker could not read: the reason says where */
        return ignore_signal(b, ev->name, ev->failure_message);
    if (strcmp(ev->name, WAITING_SIGNAL) != 0)
        return ignore_signal(b, ev->name, "this workflow takes only " WAITING_SIGNAL);
    cJSON *in = keel_json_from(ev->json ? ev->json : "");
    const char *wf = cJSON_GetStringValue(keel_wf_member(in, "workflow_id"));
    const char *req = cJSON_GetStringValue(keel_wf_member(in, "requisition_id"));
    const char *stage = cJSON_GetStringValue(keel_wf_member(in, "stage"));
    const cJSON *amount = keel_wf_member(in, "amount_usd");
    requisition *r = b->stage == WORKING ? find_child(b, wf, req) : NULL;
    char why[REASON_SIZE] = "";
    if (!cJSON_IsObject(in) || (wf == NULL && req == NULL))
        snprintf(why, sizeof why, "it needs {\"workflow_id\", \"requisition_id\", \"stage\"}");
    else if (r == NULL)
        snprintf(why, sizeof why, "%.100s is not a child of this run", wf ? wf : req);
    else if (r->state != REQ_RUNNING)
        snprintf(why, sizeof why, "%.100s is not running", r->workflow_id);
    if (why[0]) {
        cJSON_Delete(in);
        return ignore_signal(b, ev->name, why);
    }
    r->state = REQ_WAITING;
    snprintf(r->note, sizeof r->note, "%s", stage && stage[0] ? stage : "approval");
    if (cJSON_IsNumber(amount)) {
        r->has_amount = true;
        r->amount_usd = amount->valuedouble;
    }
    cJSON_Delete(in);
    return freed(ctx, b);
}

/* A client cancelled the batch: it ends now, with where it stood as details. Children already
 * started go on (they were started to outlive the batch). */
static int on_cancel(keel_workflow_ctx *ctx, batch *b)
{
    b->stage = CANCELLED;
    char *status = status_json(b);
    if (status == NULL)
        return keel_workflow_error(ctx, "out of memory writing the batch status");
    int rc = keel_workflow_cancelled(ctx, status);
    cJSON_free(status);
    return rc;
}

/* ---- the callbacks ---- */

static int batch_start(keel_workflow_ctx *ctx, void *state, const char *input_json)
{
    batch *b = state;
    char why[REASON_SIZE];
    cJSON *in = keel_json_from(input_json ? input_json : "");
    bool ok = read_input(b, in, why, sizeof why);
    cJSON_Delete(in);
    if (!ok)
        return fail_batch(ctx, b, "BadInput", why);
    cJSON *args = cJSON_CreateObject();
    ok = args && keel_wf_put(args, "limit", cJSON_CreateNumber((double)b->limit)) &&
         keel_wf_put(args, "cost_center", keel_wf_string_or_null(b->cost_center)) &&
         keel_wf_put(args, "requester", keel_wf_string_or_null(b->requester));
    char *text = keel_wf_print(args, ok);
    if (text == NULL)
        return keel_workflow_error(ctx, "out of memory writing the listing's arguments");
    b->stage = LISTING;
    b->list = keel_workflow_activity(ctx, "tool.list_pending_requisitions", text, &tool_options);
    cJSON_free(text);
    return b->list ? KEEL_OK : KEEL_EINVAL;
}

static int batch_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    batch *b = state;
    if (b->stage != LISTING && b->stage != WORKING)
        return keel_workflow_error(ctx, "event %d reached a run that is already %s", (int)ev->kind,
                                   stage_names[b->stage]);
    switch (ev->kind) {
    case KEEL_EVENT_ACTIVITY_COMPLETED:
    case KEEL_EVENT_ACTIVITY_FAILED:
        return on_activity(ctx, b, ev);
    case KEEL_EVENT_CHILD_COMPLETED:
    case KEEL_EVENT_CHILD_FAILED:
        return on_child(ctx, b, ev);
    case KEEL_EVENT_SIGNAL:
        return on_signal(ctx, b, ev);
    case KEEL_EVENT_CANCEL_REQUESTED:
        return on_cancel(ctx, b);
    default: /* it cancels nothing and starts no timers, updates or external signals */
        return keel_workflow_error(ctx, KEEL_BATCH_TYPE " got unexpected event %d", (int)ev->kind);
    }
}

static int batch_query(const void *state, const char *name, const char *args_json,
                       char **result_json)
{
    (void)args_json;
    if (strcmp(name, "status") != 0)
        return KEEL_EINVAL;
    *result_json = status_json(state);
    return *result_json ? KEEL_OK : KEEL_ENOMEM;
}

/* The counts of each list in this run and the carried ones, for the describe line. */
static void tally(const batch *b, int64_t n[N_LISTS])
{
    for (int k = 0; k < N_LISTS; k++)
        n[k] = b->carried[k];
    for (int i = 0; i < b->n_reqs; i++) {
        int k = list_index(b->reqs[i].state);
        if (k >= 0)
            n[k]++;
    }
}

/* "run 1: 3 of at most 3 children running (procurement-REQ-000101, ...), 4 queued, 1 waiting
 * for people". */
static void describe_working(const batch *b, char *buf, size_t n)
{
    char ids[256] = "";
    size_t len = 0;
    int children = 0, claiming = 0;
    for (int i = 0; i < b->n_reqs; i++) {
        const requisition *r = &b->reqs[i];
        claiming += r->state == REQ_CLAIMING;
        if (r->state != REQ_RUNNING)
            continue;
        if (children++ < 3 && len < sizeof ids) {
            int w = snprintf(ids + len, sizeof ids - len, "%s%s", len ? ", " : "", r->workflow_id);
            len += w > 0 ? (size_t)w : 0;
        }
    }
    char claims[64] = "";
    if (claiming)
        snprintf(claims, sizeof claims, " and %d requisition claim%s", claiming,
                 claiming == 1 ? "" : "s");
    int64_t t[N_LISTS];
    tally(b, t);
    snprintf(buf, n,
             "run %d: waiting on %d of at most %lld children (%s%s)%s, %d queued, %lld waiting "
             "for people, %lld approved, %lld rejected, %lld failed%s",
             b->runs, children, (long long)b->max_concurrent, children ? ids : "none",
             children > 3 ? ", ..." : "", claims, b->n_reqs - b->next, (long long)t[2],
             (long long)t[0], (long long)t[1], (long long)t[3],
             b->marks ? "; marking failed requisitions" : "");
}

static void batch_describe(const void *state, char *buf, size_t n)
{
    const batch *b = state;
    int64_t t[N_LISTS];
    tally(b, t);
    switch (b->stage) {
    case LISTING:
        snprintf(buf, n, "run %d: waiting for list_pending_requisitions (up to %lld%s%s%s%s)",
                 b->runs, (long long)b->limit, b->cost_center[0] ? ", cost centre " : "",
                 b->cost_center, b->requester[0] ? ", requester " : "", b->requester);
        return;
    case WORKING:
        describe_working(b, buf, n);
        return;
    case COMPLETED:
    case CONTINUED:
    case CANCELLED:
        snprintf(buf, n, "%s in run %d: %lld approved, %lld rejected, %lld waiting, %lld failed",
                 stage_names[b->stage], b->runs, (long long)t[0], (long long)t[1], (long long)t[2],
                 (long long)t[3]);
        return;
    case FAILED:
    case REFUSED:
        snprintf(buf, n, "failed: %s", b->last_problem);
        return;
    }
}

static void batch_dispose(void *state)
{
    batch *b = state;
    cJSON_Delete(b->child_options);
    cJSON_Delete(b->carry);
    cJSON_Delete(b->listing);
    free(b->reqs);
}

static const char *const batch_queries[] = {"status", NULL};
static const char *const batch_signals[] = {WAITING_SIGNAL, NULL};

const keel_workflow_type keel_batch_workflow = {
    .name = KEEL_BATCH_TYPE,
    .state_size = sizeof(batch),
    .start = batch_start,
    .on_event = batch_event,
    .query = batch_query,
    .describe = batch_describe,
    .dispose = batch_dispose,
    .queries = batch_queries,
    .signals = batch_signals,
    /* Auto-upgrade: a batch waits on its children (each its own pinned keel.Procurement run),
     * not on people, and goes on run after run by continue-as-new, which would carry a pinned
     * version along: it takes new code at its next task, its changes guarded by get_version. */
    .versioning_behavior = KEEL_VERSIONING_AUTO_UPGRADE,
};
