/*
 * engine - a workflow run as a state machine over its history.
 *
 * Reading guide: keel_engine_feed() walks events. Events that carry news for the workflow
 * (started, activity results, timers, signals, cancel requests) become deliveries queued for the
 * next activation. A WorkflowTaskStarted followed by WorkflowTaskCompleted runs an activation in
 * replay; the command events that follow are matched against what it issued. keel_engine_finish()
 * runs the last, current activation.
 */
#include "worker/engine.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converter/failure.h"
#include "converter/payload.h"
#include "proto/proto.h"
#include "temporal/api/enums/v1/event_type.pb-c.h"
#include "worker/local_activity.h"
#include "worker/protocol.h"
#include "temporal/api/enums/v1/failed_cause.pb-c.h"
#include "keel/json.h"
#include "trace/trace.h"

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* ---- types ---- */

typedef enum { NOT_UPDATE, UPDATE_NEW, UPDATE_REPLAYED } update_kind;

typedef struct delivery {
    bool is_start;
    bool bad_input;          /* the start's input could not be read: the run fails with BadInput */
    update_kind update;      /* an update: new ones are validated first */
    keel_update_request req; /* ...and its request */
    keel_workflow_event ev;  /* its strings point at the owned copies below */
    char *name, *json, *failure_message, *failure_type;
} delivery;

typedef enum cmd_kind {
    CMD_ACTIVITY,
    CMD_CANCEL_ACTIVITY,
    CMD_TIMER,
    CMD_CANCEL_TIMER,
    CMD_COMPLETE,
    CMD_FAIL,
    CMD_CONTINUE_AS_NEW,
    CMD_CANCEL_WORKFLOW,
    CMD_UPSERT_SEARCH_ATTRIBUTES,
    CMD_MODIFY_PROPERTIES,
    CMD_VERSION_MARKER,
    CMD_CHILD,
    CMD_SIGNAL_EXTERNAL,
    CMD_UPDATE_ACCEPT,
    CMD_UPDATE_COMPLETE,
    CMD_SIDE_EFFECT,
    CMD_LOCAL_ACTIVITY, /* a core_local_activity marker (seq: the local activity's) */
} cmd_kind;

#define MAX_CHANGE_ID 128

typedef struct command {
    cmd_kind kind;
    uint32_t seq;            /* activity or timer sequence number */
    bool dropped;            /* cancelled in the activation that issued it: never sent */
    char key[MAX_CHANGE_ID]; /* a version marker's change id */
    char what[160];          /* for non-determinism messages; "" when command_what() builds it */
    keel_pb_command *pb;     /* what goes to the server */
} command;

typedef enum { OPEN_UNSENT, OPEN, CLOSED } item_state;

/* An activity or a timer the workflow created: sequence number <-> the event that recorded it. */
typedef struct item {
    uint32_t seq;
    int64_t event_id; /* ActivityTaskScheduled / TimerStarted; 0 until recorded */
    item_state state;
    bool cancel_requested; /* a cancel request was issued: the server refuses a second */
    char *type;            /* activity or child workflow type */
    char *id;              /* a child's workflow id, an update's id */
} item;

typedef struct item_list {
    item *v;
    size_t n, cap;
} item_list;

/* A command event as history recorded it, kept until the activation that issued it has run and
 * been matched. Only what matching and messages need. */
typedef struct recorded {
    int64_t event_id;
    int kind;        /* the event's attributes case */
    char *id;        /* activity id, timer id, a version marker's change id, a side effect's id */
    char *type;      /* activity type, or marker name */
    int64_t ref;     /* a cancel request's scheduled event id */
    int64_t version; /* a version marker's version */
    bool claimed;    /* a version marker get_version has already read */
    char *data;      /* a side effect's recorded value (JSON) */
    keel_la_outcome *la; /* a core_local_activity marker's content */
    int event_type;      /* how it reads in messages: recorded_seen() */
} recorded;

/* An ActivityTaskCanceled written among the command events: the server cancels an activity no
 * worker has started in the same breath as the cancel request. */
typedef struct deferred_cancel {
    int64_t event_id;
    int64_t scheduled_id;
} deferred_cancel;

/* The version each change id resolved to in this run. */
typedef struct version_entry {
    char *change_id;
    int version;
} version_entry;

#define VERSION_MARKER     "Version"
#define SIDE_EFFECT_MARKER "SideEffect"

struct keel_workflow_ctx {
    keel_engine *engine;
};

struct keel_engine {
    struct keel_workflow_ctx ctx;
    const keel_workflow_type *type;
    void *state;
    char *workflow_id, *run_id, *task_queue;
    char original_run[64]; /* the started event's original_execution_run_id: stable on replay */

    int64_t last_event_id;
    int64_t pending_started_id; /* a WorkflowTaskStarted not yet known to be completed */
    int64_t pending_started_ms;
    bool pending_started_suggest; /* its suggest_continue_as_new */
    int64_t last_started_id;
    int64_t answered_started_id; /* the task keel_engine_finish() produced commands for */
    int64_t last_completed_id;   /* the last WorkflowTaskCompleted */
    bool in_command_events;      /* right after a WorkflowTaskCompleted */

    delivery *deliveries;
    size_t n_deliveries, cap_deliveries;

    command *cmds; /* issued by the last activation */
    size_t n_cmds, cap_cmds, matched;
    recorded *rec; /* command events after the last WorkflowTaskCompleted */
    size_t n_rec, cap_rec;
    bool activation_pending; /* a replayed activation waits for its command events */
    int64_t activation_ms;
    bool activation_suggest;
    version_entry *versions;
    size_t n_versions, cap_versions;
    deferred_cancel *deferred; /* see defer_cancel() */
    size_t n_deferred, cap_deferred;
    keel_pb_command **out;
    size_t n_out;
    keel_pb_message **msgs; /* update answers of the last activation */
    size_t n_msgs, cap_msgs;
    keel_update_request *incoming; /* updates the current task brought, not yet delivered */
    size_t n_incoming, cap_incoming;
    keel_update_request *admitted; /* requests of UpdateAdmitted events, for their acceptance */
    size_t n_admitted, cap_admitted;

    item_list activities, timers, children, signals_out, updates;
    uint32_t next_activity_seq, next_timer_seq, next_child_seq, next_signal_seq, next_update_seq;
    uint32_t next_side_effect_seq;
    keel_la_table las;      /* local activities (local_activity.h) */
    int64_t wft_timeout_ms; /* the run's workflow task timeout (0: unknown) */

    /* The SDK name and version the history last recorded (WorkflowTaskCompleted's sdk_metadata):
     * the worker sends its own only when they differ, as the official SDKs do. */
    char sdk_name[64], sdk_version[64];

    uint64_t rng;
    int64_t now_ms;
    int64_t started_ms;           /* the run's WorkflowExecutionStarted time */
    bool suggest_continue_as_new; /* the current workflow task's, from history */
    bool replaying, closing;
    /* Set by keel_workflow_error() or API misuse during an activation (KEEL_ERROR_MESSAGE_MAX
     * bytes on the heap, or OOM_ERROR), NULL otherwise: a cached run holds no message. */
    const char *error;

    /* for the worker's tracing, only while tracing is on (keel_engine_trace_info) */
    keel_span_context *trace_parent; /* (and started_ms, above); NULL: none (540 bytes a run) */
    keel_engine_signal *trace_signals;
    size_t n_trace_signals, cap_trace_signals;
};

/* ---- small helpers ---- */

static int oom(keel_error *err)
{
    return keel_error_set(err, KEEL_ENOMEM, "out of memory in the workflow engine");
}

static bool grow(void **v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 8;
    while (c < need)
        c *= 2;
    void *p = realloc(*v, c * elem);
    if (p == NULL)
        return false;
    *v = p;
    *cap = c;
    return true;
}

static const char *event_type_name(int event_type)
{
    const char *n =
        keel_proto_enum_name(&temporal__api__enums__v1__event_type__descriptor, event_type);
    const char *prefix = "EVENT_TYPE_";
    return n ? (strncmp(n, prefix, strlen(prefix)) == 0 ? n + strlen(prefix) : n) : "UNKNOWN";
}

static const char *event_name(const keel_pb_event *ev)
{
    return event_type_name((int)ev->event_type);
}

/* What e->error says when there was no memory for the message itself. */
static const char OOM_ERROR[] = "out of memory recording the workflow's error";

/* Record the activation's error, keeping the first. */
static void set_error(keel_engine *e, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void set_error(keel_engine *e, const char *fmt, va_list ap)
{
    if (e->error != NULL)
        return; /* keep the first */
    char *m = malloc(KEEL_ERROR_MESSAGE_MAX);
    if (m == NULL) {
        e->error = OOM_ERROR;
        return;
    }
    vsnprintf(m, KEEL_ERROR_MESSAGE_MAX, fmt, ap);
    e->error = m;
}

/* The error recorded, for an out-of-memory path that may have recorded none. */
static const char *error_text(const keel_engine *e)
{
    return e->error ? e->error : "out of memory in the workflow engine";
}

static void clear_error(keel_engine *e)
{
    if (e->error != OOM_ERROR)
        free((char *)e->error);
    e->error = NULL;
}

/* The engine's own misuse messages go where keel_workflow_error() puts the workflow's. */
static void engine_error(keel_engine *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void engine_error(keel_engine *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error(e, fmt, ap);
    va_end(ap);
}

/* A string from a message that may have been built by hand (protobuf-c's own leave "", not
 * NULL), for printing. */
static const char *txt(const char *s)
{
    return s ? s : "";
}

static bool same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool is_version_marker(const recorded *r)
{
    return r->kind ==
               TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_MARKER_RECORDED_EVENT_ATTRIBUTES &&
           same(r->type, VERSION_MARKER);
}

/* splitmix64: small, fast, and fully determined by the seed. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t seed_from(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; s && *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* ---- lifecycle ---- */

int keel_engine_new(keel_engine **out, const keel_workflow_type *type, const char *workflow_id,
                    const char *run_id, const char *task_queue, keel_error *err)
{
    *out = NULL;
    if (type == NULL || type->start == NULL || type->on_event == NULL)
        return keel_error_set(err, KEEL_EINVAL, "a workflow type needs start and on_event");
    keel_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return oom(err);
    e->ctx.engine = e;
    e->type = type;
    e->state = calloc(1, type->state_size ? type->state_size : 1);
    e->workflow_id = strdup(workflow_id ? workflow_id : "");
    e->run_id = strdup(run_id ? run_id : "");
    e->task_queue = strdup(task_queue ? task_queue : "");
    e->next_activity_seq = 1;
    e->next_timer_seq = 1;
    e->next_child_seq = 1;
    e->next_signal_seq = 1;
    e->next_update_seq = 1;
    e->next_side_effect_seq = 1;
    e->rng = seed_from(run_id);
    if (!e->state || !e->workflow_id || !e->run_id || !e->task_queue) {
        keel_engine_free(e);
        return oom(err);
    }
    *out = e;
    return KEEL_OK;
}

static void free_deliveries(keel_engine *e)
{
    for (size_t i = 0; i < e->n_deliveries; i++) {
        delivery *d = &e->deliveries[i];
        free(d->name);
        free(d->json);
        free(d->failure_message);
        free(d->failure_type);
        keel_update_request_dispose(&d->req);
    }
    e->n_deliveries = 0;
}

/* The answer's part of the commands: their messages, the answer's array and the protocol
 * messages. What matching needs (kind, seq, key) stays. */
static void free_answer(keel_engine *e)
{
    for (size_t i = 0; i < e->n_cmds; i++)
        if (e->cmds[i].pb) {
            FREE_PB(e->cmds[i].pb);
            e->cmds[i].pb = NULL;
        }
    free(e->out);
    e->out = NULL;
    e->n_out = 0;
    for (size_t i = 0; i < e->n_msgs; i++)
        FREE_PB(e->msgs[i]);
    e->n_msgs = 0;
}

static void free_commands(keel_engine *e)
{
    free_answer(e);
    e->n_cmds = 0;
    e->matched = 0;
}

static void free_requests(keel_update_request *v, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        keel_update_request_dispose(&v[i]);
    *n = 0;
}

static void free_records(keel_engine *e)
{
    for (size_t i = 0; i < e->n_rec; i++) {
        free(e->rec[i].id);
        free(e->rec[i].type);
        free(e->rec[i].data);
        if (e->rec[i].la) {
            keel_la_outcome_clear(e->rec[i].la);
            free(e->rec[i].la);
        }
    }
    e->n_rec = 0;
}

static void free_items(item_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].type);
        free(l->v[i].id);
    }
    free(l->v);
}

void keel_engine_free(keel_engine *e)
{
    if (e == NULL)
        return;
    if (e->state && e->type && e->type->dispose)
        e->type->dispose(e->state);
    free(e->state);
    free(e->workflow_id);
    free(e->run_id);
    free(e->task_queue);
    free_deliveries(e);
    free(e->deliveries);
    free_commands(e);
    free(e->cmds);
    free_items(&e->activities);
    free_items(&e->timers);
    free_items(&e->children);
    free_items(&e->signals_out);
    free_items(&e->updates);
    free(e->msgs);
    free_requests(e->incoming, &e->n_incoming);
    free(e->incoming);
    free_requests(e->admitted, &e->n_admitted);
    free(e->admitted);
    free_records(e);
    free(e->rec);
    for (size_t i = 0; i < e->n_versions; i++)
        free(e->versions[i].change_id);
    free(e->versions);
    free(e->deferred);
    keel_la_table_free(&e->las);
    keel_engine_trace_clear_signals(e);
    free(e->trace_signals);
    free(e->trace_parent);
    clear_error(e);
    free(e);
}

/* ---- items: activities and timers ---- */

static item *add_item(item_list *l, uint32_t seq, const char *type)
{
    if (!grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v))
        return NULL;
    item *it = &l->v[l->n];
    memset(it, 0, sizeof *it);
    it->seq = seq;
    it->state = OPEN_UNSENT;
    if (type && (it->type = strdup(type)) == NULL)
        return NULL;
    l->n++;
    return it;
}

static item *find_seq(item_list *l, uint32_t seq)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].seq == seq)
            return &l->v[i];
    return NULL;
}

static item *find_event(item_list *l, int64_t event_id)
{
    if (event_id <= 0)
        return NULL; /* not recorded yet, or a malformed reference */
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].event_id == event_id)
            return &l->v[i];
    return NULL;
}

/* ---- commands the workflow issues ---- */

static keel_pb_command *new_pb_command(Temporal__Api__Enums__V1__CommandType type,
                                       Temporal__Api__Command__V1__Command__AttributesCase which)
{
    keel_pb_command *c = malloc(sizeof *c);
    if (c) {
        temporal__api__command__v1__command__init(c);
        c->command_type = type;
        c->attributes_case = which;
    }
    return c;
}

/* A command and its attributes, both on the heap, initialised and linked; pb is NULL (nothing
 * allocated) when out of memory. */
#define NEW_COMMAND(pb, a, type, which, member, init)                                              \
    do {                                                                                           \
        void *attrs_ = malloc(sizeof *(a));                                                        \
        (pb) = attrs_ ? new_pb_command(type, which) : NULL;                                        \
        if ((pb) == NULL) {                                                                        \
            free(attrs_);                                                                          \
        } else {                                                                                   \
            (a) = attrs_;                                                                          \
            init(a);                                                                               \
            (pb)->member = (a);                                                                    \
        }                                                                                          \
    } while (0)

/* Push a command that closes the run: nothing may be issued after it. */
static int push_closing(keel_engine *e, cmd_kind kind, keel_pb_command *pb, const char *what);

/* Append a command; takes pb (freed on failure). NULL when it cannot be added. */
static command *push_command(keel_engine *e, cmd_kind kind, uint32_t seq, keel_pb_command *pb)
{
    if (pb == NULL || !grow((void **)&e->cmds, &e->cap_cmds, e->n_cmds + 1, sizeof *e->cmds)) {
        if (pb)
            FREE_PB(pb);
        engine_error(e, "out of memory issuing a command");
        return NULL;
    }
    command *c = &e->cmds[e->n_cmds++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->seq = seq;
    c->pb = pb;
    return c;
}

/* Push a command and say what it is for non-determinism messages. KEEL_ENOMEM when it cannot be
 * added (pb is freed then). */
static int push_described(keel_engine *e, cmd_kind kind, uint32_t seq, keel_pb_command *pb,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int push_described(keel_engine *e, cmd_kind kind, uint32_t seq, keel_pb_command *pb,
                          const char *fmt, ...)
{
    command *c = push_command(e, kind, seq, pb);
    if (c == NULL)
        return KEEL_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->what, sizeof c->what, fmt, ap);
    va_end(ap);
    return KEEL_OK;
}

static int push_closing(keel_engine *e, cmd_kind kind, keel_pb_command *pb, const char *what)
{
    int rc = push_described(e, kind, 0, pb, "%s", what);
    if (rc == KEEL_OK)
        e->closing = true;
    return rc;
}

/* Commands after the run closed are a workflow bug: the server would reject the task. */
static bool may_issue(keel_engine *e, const char *what)
{
    if (e->closing) {
        engine_error(e, "the workflow issued %s after it had already closed the run", what);
        return false;
    }
    return true;
}

/* A command's input as payloads. Its description in an error message ("activity T input") is
 * written only when the input is refused: the message says `generic` in its place, which is
 * swapped for the description then, so that nothing is formatted for the inputs that are fine
 * (every command on every replay). false with the engine's error set. */
static bool input_payloads(keel_engine *e, const char *json, const char *generic,
                           keel_pb_payloads **out, const char *fmt, const char *name)
{
    keel_error perr;
    if (keel_payloads_new_json(json, generic, out, &perr) == KEEL_OK)
        return true;
    size_t n = strlen(generic);
    if (strncmp(perr.message, generic, n) != 0) {
        engine_error(e, "%s", perr.message);
        return false;
    }
    char what[160];
    snprintf(what, sizeof what, fmt, name);
    engine_error(e, "%s%s", what, perr.message + n);
    return false;
}

static char *seq_str(uint32_t seq)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%u", seq);
    return strdup(buf);
}

static Google__Protobuf__Duration *dur(int64_t ms)
{
    if (ms <= 0)
        return NULL;
    Google__Protobuf__Duration *d = malloc(sizeof *d);
    if (d)
        keel_proto_duration_set(d, ms);
    return d;
}

static Temporal__Api__Taskqueue__V1__TaskQueue *new_task_queue(const char *name)
{
    Temporal__Api__Taskqueue__V1__TaskQueue *q = malloc(sizeof *q);
    if (q) {
        temporal__api__taskqueue__v1__task_queue__init(q);
        q->name = strdup(name);
        q->kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
        if (q->name == NULL) {
            free(q);
            q = NULL;
        }
    }
    return q;
}

static Temporal__Api__Common__V1__RetryPolicy *new_retry(const keel_retry_policy *p)
{
    Temporal__Api__Common__V1__RetryPolicy *r = malloc(sizeof *r);
    if (r == NULL)
        return NULL;
    temporal__api__common__v1__retry_policy__init(r);
    r->initial_interval = dur(p->initial_interval_ms);
    r->maximum_interval = dur(p->maximum_interval_ms);
    r->backoff_coefficient = p->backoff_coefficient;
    r->maximum_attempts = p->maximum_attempts;
    if (p->n_non_retryable_error_types) {
        r->non_retryable_error_types = calloc(p->n_non_retryable_error_types, sizeof(char *));
        for (size_t i = 0; r->non_retryable_error_types && i < p->n_non_retryable_error_types;
             i++) {
            r->non_retryable_error_types[i] = strdup(p->non_retryable_error_types[i]);
            r->n_non_retryable_error_types = i + 1;
        }
    }
    return r;
}

/* ---- summaries (user_metadata): what the Web UI shows for a command ---- */

/* The summary as the Web UI reads it: a json/plain payload holding one JSON string. Cosmetic, so
 * never an error for what it says: invalid UTF-8 becomes '?', control characters spaces, and it
 * is cut at KEEL_SUMMARY_MAX bytes (on a character boundary). NULL: no summary, or out of
 * memory (then the command goes without one). */
static Temporal__Api__Sdk__V1__UserMetadata *new_summary(const char *summary)
{
    if (summary == NULL || summary[0] == '\0')
        return NULL;
    char text[KEEL_SUMMARY_MAX + 1];
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)summary;
    while (*s && o < KEEL_SUMMARY_MAX) {
        size_t len = *s < 0x80             ? 1
                     : (*s & 0xe0) == 0xc0 ? 2
                     : (*s & 0xf0) == 0xe0 ? 3
                     : (*s & 0xf8) == 0xf0 ? 4
                                           : 0;
        bool ok = len > 0 && !(len == 2 && *s < 0xc2) && !(len == 4 && *s > 0xf4);
        for (size_t k = 1; ok && k < len; k++)
            ok = (s[k] & 0xc0) == 0x80;
        if (ok && len == 3)
            ok = !(*s == 0xe0 && s[1] < 0xa0) && !(*s == 0xed && s[1] > 0x9f);
        if (ok && len == 4)
            ok = !(*s == 0xf0 && s[1] < 0x90) && !(*s == 0xf4 && s[1] > 0x8f);
        if (!ok) {
            text[o++] = '?';
            s++;
            continue;
        }
        if (o + len > KEEL_SUMMARY_MAX)
            break;
        if (len == 1)
            text[o++] = *s < 0x20 || *s == 0x7f ? ' ' : (char)*s;
        else
            memcpy(text + o, s, len), o += len;
        s += len;
    }
    text[o] = '\0';
    cJSON *str = cJSON_CreateString(text);
    char *json = str ? keel_json_print(str) : NULL;
    cJSON_Delete(str);
    Temporal__Api__Sdk__V1__UserMetadata *m = json ? malloc(sizeof *m) : NULL;
    if (m) {
        temporal__api__sdk__v1__user_metadata__init(m);
        keel_error err;
        if (keel_payload_new_json(json, strlen(json), "summary", &m->summary, &err) != KEEL_OK) {
            free(m);
            m = NULL;
        }
    }
    free(json);
    return m;
}

uint32_t keel_workflow_activity(keel_workflow_ctx *ctx, const char *type, const char *input_json,
                                const keel_activity_options *opts)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "ScheduleActivityTask"))
        return 0;
    if (type == NULL || type[0] == '\0' || opts == NULL) {
        engine_error(e, "keel_workflow_activity needs an activity type and options");
        return 0;
    }
    if (opts->schedule_to_close_ms <= 0 && opts->start_to_close_ms <= 0) {
        engine_error(e, "activity %s needs schedule_to_close_ms or start_to_close_ms", type);
        return 0;
    }
    uint32_t seq = e->next_activity_seq;
    Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_SCHEDULE_ACTIVITY_TASK_COMMAND_ATTRIBUTES,
        schedule_activity_task_command_attributes,
        temporal__api__command__v1__schedule_activity_task_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory scheduling activity %s", type);
        return 0;
    }
    a->activity_id = seq_str(seq);
    if ((a->activity_type = malloc(sizeof *a->activity_type)) != NULL) {
        temporal__api__common__v1__activity_type__init(a->activity_type);
        a->activity_type->name = strdup(type);
    }
    a->task_queue = new_task_queue(opts->task_queue ? opts->task_queue : e->task_queue);
    a->schedule_to_close_timeout = dur(opts->schedule_to_close_ms);
    a->start_to_close_timeout = dur(opts->start_to_close_ms);
    a->schedule_to_start_timeout = dur(opts->schedule_to_start_ms);
    a->heartbeat_timeout = dur(opts->heartbeat_ms);
    if (opts->retry)
        a->retry_policy = new_retry(opts->retry);
    pb->user_metadata = new_summary(opts->summary);
    if (!input_payloads(e, input_json, "activity input", &a->input, "activity %s input", type)) {
        FREE_PB(pb);
        return 0;
    }
    command *c = push_command(e, CMD_ACTIVITY, seq, pb);
    if (c == NULL || add_item(&e->activities, seq, type) == NULL) {
        engine_error(e, "out of memory scheduling activity %s", type);
        return 0;
    }
    e->next_activity_seq++;
    return seq;
}

uint32_t keel_workflow_child(keel_workflow_ctx *ctx, const char *type, const char *input_json,
                             const keel_child_options *opts)
{
    keel_engine *e = ctx->engine;
    keel_child_options none = {0};
    if (opts == NULL)
        opts = &none;
    if (!may_issue(e, "StartChildWorkflowExecution"))
        return 0;
    if (type == NULL || type[0] == '\0' || opts->parent_close_policy < 0 ||
        opts->parent_close_policy > 3) {
        engine_error(e, "keel_workflow_child needs a workflow type and a parent close policy "
                        "from 0 to 3");
        return 0;
    }
    uint32_t seq = e->next_child_seq;
    char id[512];
    if (opts->workflow_id)
        snprintf(id, sizeof id, "%s", opts->workflow_id);
    else
        /* Unique per run (continue-as-new and cron runs reuse the workflow id), the same on
         * replay: the original run id comes from history. */
        snprintf(id, sizeof id, "%s-child-%u-%.8s", e->workflow_id, seq, e->original_run);
    Temporal__Api__Command__V1__StartChildWorkflowExecutionCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_START_CHILD_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES,
        start_child_workflow_execution_command_attributes,
        temporal__api__command__v1__start_child_workflow_execution_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory starting child workflow %s", type);
        return 0;
    }
    a->workflow_id = strdup(id);
    if ((a->workflow_type = malloc(sizeof *a->workflow_type)) != NULL) {
        temporal__api__common__v1__workflow_type__init(a->workflow_type);
        a->workflow_type->name = strdup(type);
    }
    a->task_queue = new_task_queue(opts->task_queue ? opts->task_queue : e->task_queue);
    a->workflow_execution_timeout = dur(opts->execution_timeout_ms);
    a->workflow_run_timeout = dur(opts->run_timeout_ms);
    a->parent_close_policy = (Temporal__Api__Enums__V1__ParentClosePolicy)opts->parent_close_policy;
    pb->user_metadata = new_summary(opts->summary);
    if (!input_payloads(e, input_json, "child workflow input", &a->input, "child workflow %s input",
                        type)) {
        FREE_PB(pb);
        return 0;
    }
    command *c = push_command(e, CMD_CHILD, seq, pb);
    item *it = c ? add_item(&e->children, seq, type) : NULL;
    if (it == NULL || (it->id = strdup(id)) == NULL) {
        engine_error(e, "out of memory starting child workflow %s", type);
        return 0;
    }
    e->next_child_seq++;
    return seq;
}

uint32_t keel_workflow_signal_external(keel_workflow_ctx *ctx, const char *workflow_id,
                                       const char *run_id, const char *signal_name,
                                       const char *input_json)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "SignalExternalWorkflowExecution"))
        return 0;
    if (workflow_id == NULL || workflow_id[0] == '\0' || signal_name == NULL ||
        signal_name[0] == '\0') {
        engine_error(e, "keel_workflow_signal_external needs a workflow id and a signal name");
        return 0;
    }
    uint32_t seq = e->next_signal_seq;
    keel_pb_command *pb = new_pb_command(
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES);
    Temporal__Api__Command__V1__SignalExternalWorkflowExecutionCommandAttributes *a =
        malloc(sizeof *a);
    Temporal__Api__Common__V1__WorkflowExecution *x = malloc(sizeof *x);
    if (pb == NULL || a == NULL || x == NULL) {
        free(pb);
        free(a);
        free(x);
        engine_error(e, "out of memory signalling %s", workflow_id);
        return 0;
    }
    temporal__api__command__v1__signal_external_workflow_execution_command_attributes__init(a);
    temporal__api__common__v1__workflow_execution__init(x);
    pb->signal_external_workflow_execution_command_attributes = a;
    a->execution = x;
    x->workflow_id = strdup(workflow_id);
    x->run_id = strdup(run_id ? run_id : "");
    a->signal_name = strdup(signal_name);
    if (!input_payloads(e, input_json, "argument of signal", &a->input, "argument of signal %.60s",
                        signal_name)) {
        FREE_PB(pb);
        return 0;
    }
    command *c = push_command(e, CMD_SIGNAL_EXTERNAL, seq, pb);
    item *it = c ? add_item(&e->signals_out, seq, signal_name) : NULL;
    if (it == NULL || (it->id = strdup(workflow_id)) == NULL) {
        engine_error(e, "out of memory signalling %s", workflow_id);
        return 0;
    }
    e->next_signal_seq++;
    return seq;
}

/* Cancelling what the current activation issued: the command is never sent and nothing follows.
 * Returns whether that applied. */
static bool drop_unsent(keel_engine *e, item *it, cmd_kind kind)
{
    if (it->state != OPEN_UNSENT)
        return false;
    for (size_t i = 0; i < e->n_cmds; i++)
        if (e->cmds[i].kind == kind && e->cmds[i].seq == it->seq)
            e->cmds[i].dropped = true;
    it->state = CLOSED;
    return true;
}

int keel_workflow_cancel_activity(keel_workflow_ctx *ctx, uint32_t seq)
{
    keel_engine *e = ctx->engine;
    item *it = find_seq(&e->activities, seq);
    if (it == NULL || it->state == CLOSED || it->cancel_requested ||
        drop_unsent(e, it, CMD_ACTIVITY))
        return KEEL_OK; /* unknown, finished, asked already, or never sent: nothing to ask */
    if (!may_issue(e, "RequestCancelActivityTask"))
        return KEEL_EINVAL;
    Temporal__Api__Command__V1__RequestCancelActivityTaskCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_REQUEST_CANCEL_ACTIVITY_TASK_COMMAND_ATTRIBUTES,
        request_cancel_activity_task_command_attributes,
        temporal__api__command__v1__request_cancel_activity_task_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory cancelling activity %u", seq);
        return KEEL_ENOMEM;
    }
    a->scheduled_event_id = it->event_id;
    it->cancel_requested = true;
    return push_command(e, CMD_CANCEL_ACTIVITY, seq, pb) ? KEEL_OK : KEEL_ENOMEM;
}

uint32_t keel_workflow_timer(keel_workflow_ctx *ctx, int64_t duration_ms)
{
    return keel_workflow_timer_with(ctx, duration_ms, NULL);
}

uint32_t keel_workflow_timer_with(keel_workflow_ctx *ctx, int64_t duration_ms,
                                  const keel_timer_options *opts)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "StartTimer"))
        return 0;
    if (duration_ms <= 0) {
        engine_error(e, "a timer needs a positive duration, not %lld ms", (long long)duration_ms);
        return 0;
    }
    uint32_t seq = e->next_timer_seq;
    keel_pb_command *pb = new_pb_command(
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_START_TIMER,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_START_TIMER_COMMAND_ATTRIBUTES);
    Temporal__Api__Command__V1__StartTimerCommandAttributes *a = malloc(sizeof *a);
    if (pb == NULL || a == NULL) {
        free(pb);
        free(a);
        engine_error(e, "out of memory starting a timer");
        return 0;
    }
    temporal__api__command__v1__start_timer_command_attributes__init(a);
    a->timer_id = seq_str(seq);
    a->start_to_fire_timeout = dur(duration_ms);
    pb->start_timer_command_attributes = a;
    pb->user_metadata = new_summary(opts ? opts->summary : NULL);
    command *c = push_command(e, CMD_TIMER, seq, pb);
    if (c == NULL || add_item(&e->timers, seq, NULL) == NULL) {
        engine_error(e, "out of memory starting a timer");
        return 0;
    }
    e->next_timer_seq++;
    return seq;
}

int keel_workflow_cancel_timer(keel_workflow_ctx *ctx, uint32_t seq)
{
    keel_engine *e = ctx->engine;
    item *it = find_seq(&e->timers, seq);
    if (it == NULL || it->state == CLOSED || drop_unsent(e, it, CMD_TIMER))
        return KEEL_OK;
    if (!may_issue(e, "CancelTimer"))
        return KEEL_EINVAL;
    Temporal__Api__Command__V1__CancelTimerCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CANCEL_TIMER,
                TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_CANCEL_TIMER_COMMAND_ATTRIBUTES,
                cancel_timer_command_attributes,
                temporal__api__command__v1__cancel_timer_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory cancelling timer %u", seq);
        return KEEL_ENOMEM;
    }
    a->timer_id = seq_str(seq);
    command *c = push_command(e, CMD_CANCEL_TIMER, seq, pb);
    if (c == NULL)
        return KEEL_ENOMEM;
    it->state = CLOSED; /* no event will be delivered for it */
    return KEEL_OK;
}

/* ---- updates ---- */

static delivery *new_delivery(keel_engine *e, keel_error *err);
static int seal(delivery *d, keel_error *err);

/* Keep an answer message for the server. Takes m (NULL: it could not be built, err says why). */
static int push_message(keel_engine *e, keel_pb_message *m, const keel_error *merr)
{
    if (m == NULL || !grow((void **)&e->msgs, &e->cap_msgs, e->n_msgs + 1, sizeof *e->msgs)) {
        if (m)
            FREE_PB(m);
        engine_error(e, "%s", m ? "out of memory answering an update" : merr->message);
        return KEEL_ENOMEM;
    }
    e->msgs[e->n_msgs++] = m;
    return KEEL_OK;
}

/* A PROTOCOL_MESSAGE command: where among the commands the message `<update id>/<suffix>` is
 * recorded. */
static int push_protocol_command(keel_engine *e, cmd_kind kind, const item *u, const char *suffix)
{
    Temporal__Api__Command__V1__ProtocolMessageCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_PROTOCOL_MESSAGE,
                TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_PROTOCOL_MESSAGE_COMMAND_ATTRIBUTES,
                protocol_message_command_attributes,
                temporal__api__command__v1__protocol_message_command_attributes__init);
    if (pb != NULL && (a->message_id = keel_update_message_id(u->id, suffix)) == NULL) {
        FREE_PB(pb);
        pb = NULL;
    }
    return push_described(e, kind, u->seq, pb, "ProtocolMessage (update %.60s '%.40s' %s)", u->id,
                          u->type, suffix);
}

/* The open update numbered seq, or NULL after saying what is wrong. */
static item *open_update(keel_engine *e, uint32_t seq, const char *what)
{
    item *u = find_seq(&e->updates, seq);
    if (u == NULL || u->state == CLOSED) {
        engine_error(e, "%s: update %u %s", what, seq, u ? "was already answered" : "is unknown");
        return NULL;
    }
    return may_issue(e, what) ? u : NULL;
}

static int answer_update(keel_engine *e, item *u, const char *result_json, keel_pb_failure *f)
{
    keel_error merr;
    int rc = push_message(e, keel_update_respond(u->id, result_json, f, &merr), &merr);
    if (rc == KEEL_OK)
        rc = push_protocol_command(e, CMD_UPDATE_COMPLETE, u, "complete");
    if (rc == KEEL_OK)
        u->state = CLOSED;
    return rc;
}

int keel_workflow_update_complete(keel_workflow_ctx *ctx, uint32_t update_seq,
                                  const char *result_json)
{
    keel_engine *e = ctx->engine;
    item *u = open_update(e, update_seq, "keel_workflow_update_complete");
    return u ? answer_update(e, u, result_json, NULL) : KEEL_EINVAL;
}

int keel_workflow_update_fail(keel_workflow_ctx *ctx, uint32_t update_seq, const char *type,
                              const char *message)
{
    keel_engine *e = ctx->engine;
    item *u = open_update(e, update_seq, "keel_workflow_update_fail");
    if (u == NULL)
        return KEEL_EINVAL;
    keel_error ferr;
    keel_pb_failure *f = keel_failure_new_application(type, message, false, &ferr);
    if (f == NULL) {
        engine_error(e, "%s", ferr.message);
        return KEEL_ENOMEM;
    }
    return answer_update(e, u, NULL, f);
}

/* Whether a new update may go in; if not, why in reason. */
static bool admit_update(keel_engine *e, const keel_update_request *r, char *reason, size_t n)
{
    const keel_workflow_type *t = e->type;
    if (r->problem) {
        snprintf(reason, n, "update %s cannot be handled: %s", r->update_id, r->problem);
        return false;
    }
    bool declared = false;
    for (const char *const *u = t->updates; u && *u && !declared; u++)
        declared = strcmp(*u, r->name) == 0;
    if (!declared) {
        snprintf(reason, n, "workflow type %s takes no update named '%s'", t->name, r->name);
        return false;
    }
    if (e->closing) {
        snprintf(reason, n, "the workflow is closing");
        return false;
    }
    if (t->validate_update == NULL)
        return true;
    reason[0] = '\0';
    if (t->validate_update(e->state, r->name, r->args_json, reason, n) == KEEL_OK)
        return true;
    if (reason[0] == '\0')
        snprintf(reason, n, "update '%s' was rejected by the workflow's validator", r->name);
    return false;
}

/* Ready an update delivery: a new one is validated (accepted or rejected with a message), a
 * replayed one was accepted already. Then it becomes an open update and an accept command. Sets
 * *skip when it was rejected and the workflow never sees it. */
static int prepare_update(keel_engine *e, delivery *d, bool *skip, keel_error *err)
{
    *skip = false;
    if (d->update == UPDATE_NEW) {
        char reason[512];
        keel_error merr;
        if (!admit_update(e, &d->req, reason, sizeof reason)) {
            *skip = true;
            if (push_message(e, keel_update_reject(&d->req, reason, &merr), &merr) != KEEL_OK)
                return keel_error_set(err, KEEL_ENOMEM, "%s", error_text(e));
            return KEEL_OK;
        }
        if (push_message(e, keel_update_accept(&d->req, &merr), &merr) != KEEL_OK)
            return keel_error_set(err, KEEL_ENOMEM, "%s", error_text(e));
    }
    item *u = add_item(&e->updates, e->next_update_seq++, d->req.name);
    if (u == NULL || (u->id = strdup(d->req.update_id)) == NULL)
        return oom(err);
    u->state = OPEN;
    if (push_protocol_command(e, CMD_UPDATE_ACCEPT, u, "accept") != KEEL_OK)
        return oom(err);
    d->ev.kind = KEEL_EVENT_UPDATE;
    d->ev.seq = u->seq;
    free(d->name);
    free(d->json);
    d->name = strdup(d->req.name);
    d->json = strdup(d->req.args_json);
    if (d->name == NULL || d->json == NULL)
        return oom(err);
    return seal(d, err);
}

/* A delivery for an update; takes *r. */
static int deliver_update(keel_engine *e, update_kind kind, keel_update_request *r, keel_error *err)
{
    delivery *d = new_delivery(e, err);
    if (d == NULL) {
        keel_update_request_dispose(r);
        return KEEL_ENOMEM;
    }
    d->update = kind;
    d->req = *r;
    memset(r, 0, sizeof *r);
    return KEEL_OK;
}

/* Whether this update is already in hand: accepted earlier, or queued for the activation about
 * to run. */
static bool update_seen(const keel_engine *e, const char *update_id)
{
    for (size_t i = 0; i < e->updates.n; i++)
        if (same(e->updates.v[i].id, update_id))
            return true;
    for (size_t i = 0; i < e->n_deliveries; i++)
        if (e->deliveries[i].update != NOT_UPDATE &&
            same(e->deliveries[i].req.update_id, update_id))
            return true;
    return false;
}

int keel_workflow_complete(keel_workflow_ctx *ctx, const char *result_json)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "CompleteWorkflowExecution"))
        return KEEL_EINVAL;
    Temporal__Api__Command__V1__CompleteWorkflowExecutionCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_COMPLETE_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES,
        complete_workflow_execution_command_attributes,
        temporal__api__command__v1__complete_workflow_execution_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory completing the workflow");
        return KEEL_ENOMEM;
    }
    keel_error perr;
    if (keel_payloads_new_json(result_json, "workflow result", &a->result, &perr) != KEEL_OK) {
        FREE_PB(pb);
        engine_error(e, "%s", perr.message);
        return perr.code;
    }
    return push_closing(e, CMD_COMPLETE, pb, "CompleteWorkflowExecution");
}

int keel_workflow_fail(keel_workflow_ctx *ctx, const char *type, const char *message,
                       bool non_retryable)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "FailWorkflowExecution"))
        return KEEL_EINVAL;
    Temporal__Api__Command__V1__FailWorkflowExecutionCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_FAIL_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES,
        fail_workflow_execution_command_attributes,
        temporal__api__command__v1__fail_workflow_execution_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory failing the workflow");
        return KEEL_ENOMEM;
    }
    keel_error ferr;
    if ((a->failure = keel_failure_new_application(type, message, non_retryable, &ferr)) == NULL) {
        FREE_PB(pb);
        engine_error(e, "%s", ferr.message);
        return KEEL_ENOMEM;
    }
    return push_closing(e, CMD_FAIL, pb, "FailWorkflowExecution");
}

int keel_workflow_continue_as_new(keel_workflow_ctx *ctx, const char *input_json)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "ContinueAsNewWorkflowExecution"))
        return KEEL_EINVAL;
    Temporal__Api__Command__V1__ContinueAsNewWorkflowExecutionCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a,
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_CONTINUE_AS_NEW_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES,
        continue_as_new_workflow_execution_command_attributes,
        temporal__api__command__v1__continue_as_new_workflow_execution_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory continuing as new");
        return KEEL_ENOMEM;
    }
    if ((a->workflow_type = malloc(sizeof *a->workflow_type)) != NULL) {
        temporal__api__common__v1__workflow_type__init(a->workflow_type);
        a->workflow_type->name = strdup(e->type->name);
    }
    a->task_queue = new_task_queue(e->task_queue);
    keel_error perr;
    if (keel_payloads_new_json(input_json, "continue-as-new input", &a->input, &perr) != KEEL_OK) {
        FREE_PB(pb);
        engine_error(e, "%s", perr.message);
        return perr.code;
    }
    return push_closing(e, CMD_CONTINUE_AS_NEW, pb, "ContinueAsNewWorkflowExecution");
}

int keel_workflow_cancelled(keel_workflow_ctx *ctx, const char *details_json)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "CancelWorkflowExecution"))
        return KEEL_EINVAL;
    Temporal__Api__Command__V1__CancelWorkflowExecutionCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_CANCEL_WORKFLOW_EXECUTION_COMMAND_ATTRIBUTES,
        cancel_workflow_execution_command_attributes,
        temporal__api__command__v1__cancel_workflow_execution_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory cancelling the workflow");
        return KEEL_ENOMEM;
    }
    keel_error perr;
    if (keel_payloads_new_json(details_json, "cancellation details", &a->details, &perr) !=
        KEEL_OK) {
        FREE_PB(pb);
        engine_error(e, "%s", perr.message);
        return perr.code;
    }
    return push_closing(e, CMD_CANCEL_WORKFLOW, pb, "CancelWorkflowExecution");
}

int keel_workflow_upsert_search_attributes(keel_workflow_ctx *ctx,
                                           const keel_search_attribute_value *values, size_t n)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "UpsertWorkflowSearchAttributes"))
        return KEEL_EINVAL;
    if (values == NULL || n == 0) {
        engine_error(e, "keel_workflow_upsert_search_attributes needs at least one value");
        return KEEL_EINVAL;
    }
    Temporal__Api__Command__V1__UpsertWorkflowSearchAttributesCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a,
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES_COMMAND_ATTRIBUTES,
        upsert_workflow_search_attributes_command_attributes,
        temporal__api__command__v1__upsert_workflow_search_attributes_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory upserting search attributes");
        return KEEL_ENOMEM;
    }
    keel_error perr;
    if ((a->search_attributes = keel_search_attributes_new(values, n, &perr)) == NULL) {
        FREE_PB(pb);
        engine_error(e, "%s", perr.message);
        return perr.code;
    }
    return push_described(e, CMD_UPSERT_SEARCH_ATTRIBUTES, 0, pb,
                          "UpsertWorkflowSearchAttributes (%s%s)", values[0].name,
                          n > 1 ? ", ..." : "");
}

int keel_workflow_upsert_memo(keel_workflow_ctx *ctx, const keel_kv *entries, size_t n)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "ModifyWorkflowProperties"))
        return KEEL_EINVAL;
    if (entries == NULL || n == 0) {
        engine_error(e, "keel_workflow_upsert_memo needs at least one entry");
        return KEEL_EINVAL;
    }
    Temporal__Api__Command__V1__ModifyWorkflowPropertiesCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(
        pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_MODIFY_WORKFLOW_PROPERTIES,
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_MODIFY_WORKFLOW_PROPERTIES_COMMAND_ATTRIBUTES,
        modify_workflow_properties_command_attributes,
        temporal__api__command__v1__modify_workflow_properties_command_attributes__init);
    if (pb == NULL) {
        engine_error(e, "out of memory upserting the memo");
        return KEEL_ENOMEM;
    }
    keel_error perr;
    if ((a->upserted_memo = keel_memo_new(entries, n, &perr)) == NULL) {
        FREE_PB(pb);
        engine_error(e, "%s", perr.message);
        return perr.code;
    }
    return push_described(e, CMD_MODIFY_PROPERTIES, 0, pb, "ModifyWorkflowProperties (memo %s%s)",
                          entries[0].key, n > 1 ? ", ..." : "");
}

/* A marker detail: one JSON value under key. */
static Temporal__Api__Command__V1__RecordMarkerCommandAttributes__DetailsEntry *
detail(const char *key, const char *json, keel_error *err)
{
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes__DetailsEntry *d = malloc(sizeof *d);
    if (d == NULL) {
        oom(err);
        return NULL;
    }
    temporal__api__command__v1__record_marker_command_attributes__details_entry__init(d);
    if ((d->key = strdup(key)) == NULL ||
        keel_payloads_new_json(json, key, &d->value, err) != KEEL_OK) {
        FREE_PB(d);
        return NULL;
    }
    return d;
}

/* Record a marker `name` with two details (one JSON value each) as a command of `kind`, keyed
 * by `key` for matching its event. A detail that is not JSON is KEEL_EINVAL, saying which. */
static int record_marker(keel_engine *e, cmd_kind kind, const char *name, const char *const keys[2],
                         const char *const values[2], const char *key, const char *what)
{
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes *a = NULL;
    keel_pb_command *pb;
    NEW_COMMAND(pb, a, TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_RECORD_MARKER,
                TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_RECORD_MARKER_COMMAND_ATTRIBUTES,
                record_marker_command_attributes,
                temporal__api__command__v1__record_marker_command_attributes__init);
    keel_error err;
    keel_error_set(&err, KEEL_ENOMEM, "out of memory");
    bool ok = pb != NULL && (a->marker_name = strdup(name)) != NULL &&
              (a->details = calloc(2, sizeof *a->details)) != NULL;
    for (size_t i = 0; ok && i < 2; i++)
        if ((ok = (a->details[i] = detail(keys[i], values[i], &err)) != NULL))
            a->n_details++;
    if (!ok) {
        if (pb)
            FREE_PB(pb);
        engine_error(e, "cannot record %s: %s", what, err.message);
        return err.code;
    }
    command *c = push_command(e, kind, 0, pb);
    if (c == NULL)
        return KEEL_ENOMEM;
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->what, sizeof c->what, "%s", what);
    return KEEL_OK;
}

static int record_version_marker(keel_engine *e, const char *change_id, int version)
{
    cJSON *id = cJSON_CreateString(change_id);
    char *id_json = id ? keel_json_print(id) : NULL;
    cJSON_Delete(id);
    if (id_json == NULL) {
        engine_error(e, "out of memory recording version %d of %s", version, change_id);
        return KEEL_ENOMEM;
    }
    char v[32], what[sizeof((command *)0)->what];
    snprintf(v, sizeof v, "%d", version);
    snprintf(what, sizeof what, "RecordMarker (Version %s = %d)", change_id, version);
    const char *const keys[] = {"change-id", "version"}, *const values[] = {id_json, v};
    int rc = record_marker(e, CMD_VERSION_MARKER, VERSION_MARKER, keys, values, change_id, what);
    free(id_json);
    return rc;
}

int keel_workflow_get_version(keel_workflow_ctx *ctx, const char *change_id, int min_supported,
                              int max_supported, int *version)
{
    keel_engine *e = ctx->engine;
    *version = KEEL_DEFAULT_VERSION;
    if (change_id == NULL || change_id[0] == '\0' || strlen(change_id) >= MAX_CHANGE_ID ||
        min_supported > max_supported) {
        engine_error(e, "get_version needs a change id under %d bytes and min <= max",
                     MAX_CHANGE_ID);
        return KEEL_EINVAL;
    }
    /* Asked before in this run: the same answer, no new marker. */
    for (size_t i = 0; i < e->n_versions; i++)
        if (same(e->versions[i].change_id, change_id)) {
            *version = e->versions[i].version;
            return KEEL_OK;
        }
    int v = max_supported;
    bool record = true;
    if (e->replaying) {
        /* What this run recorded when it first came here, or "before the change". */
        v = KEEL_DEFAULT_VERSION;
        record = false;
        for (size_t i = 0; i < e->n_rec; i++)
            if (is_version_marker(&e->rec[i]) && !e->rec[i].claimed &&
                same(e->rec[i].id, change_id)) {
                e->rec[i].claimed = true;
                v = (int)e->rec[i].version;
                record = true;
                break;
            }
    }
    if (v < min_supported || v > max_supported) {
        engine_error(e,
                     "this code supports versions %d to %d of change %s, but the run recorded %d",
                     min_supported, max_supported, change_id, v);
        return KEEL_EINVAL;
    }
    if (record && !may_issue(e, "RecordMarker"))
        return KEEL_EINVAL;
    if (!grow((void **)&e->versions, &e->cap_versions, e->n_versions + 1, sizeof *e->versions) ||
        (e->versions[e->n_versions].change_id = strdup(change_id)) == NULL) {
        engine_error(e, "out of memory in get_version");
        return KEEL_ENOMEM;
    }
    e->versions[e->n_versions++].version = v;
    if (record) {
        int rc = record_version_marker(e, change_id, v);
        if (rc != KEEL_OK)
            return rc;
    }
    *version = v;
    return KEEL_OK;
}

/* The value a replayed side effect recorded, or NULL. */
static const char *recorded_side_effect(keel_engine *e, const char *id)
{
    for (size_t i = 0; i < e->n_rec; i++) {
        recorded *r = &e->rec[i];
        if (r->kind ==
                TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_MARKER_RECORDED_EVENT_ATTRIBUTES &&
            same(r->type, SIDE_EFFECT_MARKER) && same(r->id, id) && !r->claimed) {
            r->claimed = true;
            return r->data;
        }
    }
    return NULL;
}

static int record_side_effect(keel_engine *e, const char *id, const char *json)
{
    char what[sizeof((command *)0)->what];
    snprintf(what, sizeof what, "RecordMarker (SideEffect %s)", id);
    const char *const keys[] = {"side-effect-id", "data"}, *const values[] = {id, json};
    return record_marker(e, CMD_SIDE_EFFECT, SIDE_EFFECT_MARKER, keys, values, id, what);
}

int keel_workflow_side_effect(keel_workflow_ctx *ctx, keel_side_effect_fn fn, void *arg,
                              char **result_json)
{
    keel_engine *e = ctx->engine;
    *result_json = NULL;
    if (fn == NULL) {
        engine_error(e, "keel_workflow_side_effect needs a function");
        return KEEL_EINVAL;
    }
    if (!may_issue(e, "RecordMarker (SideEffect)"))
        return KEEL_EINVAL;
    char id[16];
    snprintf(id, sizeof id, "%u", e->next_side_effect_seq++);
    const char *seen = e->replaying ? recorded_side_effect(e, id) : NULL;
    char *value = NULL;
    if (seen) {
        value = strdup(seen);
    } else {
        /* First time here (or history lacks it, which matching reports). */
        int rc = fn(arg, &value);
        if (rc != KEEL_OK) {
            free(value);
            engine_error(e, "side effect %s failed (%s)", id, keel_error_code_name(rc));
            return rc;
        }
        if (value == NULL)
            value = strdup("null");
    }
    if (value == NULL) {
        engine_error(e, "out of memory in a side effect");
        return KEEL_ENOMEM;
    }
    int rc = record_side_effect(e, id, value);
    if (rc != KEEL_OK) {
        free(value);
        return rc;
    }
    *result_json = value;
    return KEEL_OK;
}

/* ---- local activities (local_activity.h has the rest) ---- */

static int nondeterminism(keel_engine *e, keel_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int run_round(keel_engine *e, bool replaying, keel_error *err);

void keel_local_activity_options_init(keel_local_activity_options *opts)
{
    memset(opts, 0, sizeof *opts);
}

uint32_t keel_workflow_local_activity(keel_workflow_ctx *ctx, const char *type,
                                      const char *input_json,
                                      const keel_local_activity_options *opts)
{
    keel_engine *e = ctx->engine;
    if (!may_issue(e, "a local activity"))
        return 0;
    if (type == NULL || type[0] == '\0' || opts == NULL) {
        engine_error(e, "keel_workflow_local_activity needs an activity type and options");
        return 0;
    }
    if (opts->schedule_to_close_ms <= 0 && opts->start_to_close_ms <= 0) {
        engine_error(e, "local activity %s needs schedule_to_close_ms or start_to_close_ms", type);
        return 0;
    }
    keel_pb_payloads *check = NULL;
    keel_error perr;
    if (keel_payloads_new_json(input_json, "local activity input", &check, &perr) != KEEL_OK) {
        engine_error(e, "%s", perr.message);
        return 0;
    }
    FREE_PB(check);
    uint32_t seq = e->next_activity_seq;
    keel_la *la = keel_la_add(&e->las, seq, type, input_json, opts, e->now_ms);
    if (la == NULL) {
        engine_error(e, "out of memory scheduling local activity %s", type);
        return 0;
    }
    e->next_activity_seq++;
    return seq;
}

/* Record a local activity's outcome: its marker (and the timer of a backoff), and, unless it
 * backs off, its result for the workflow's next round. */
static int resolve_local(keel_engine *e, keel_la *la, const keel_la_outcome *o, keel_error *err)
{
    keel_pb_command *pb = NULL;
    int rc = keel_la_marker_command(o, &pb, err);
    if (rc != KEEL_OK)
        return rc;
    pb->user_metadata = new_summary(la->summary);
    command *c = push_command(e, CMD_LOCAL_ACTIVITY, la->wire_seq, pb);
    if (c == NULL)
        return oom(err);
    snprintf(c->what, sizeof c->what, "RecordMarker (local activity %u, type %.100s)", la->wire_seq,
             la->type);
    if (o->complete_ms > 0)
        e->now_ms = o->complete_ms;
    if (o->backoff_ms > 0) {
        la->attempt = o->attempt + 1;
        la->original_schedule_ms = o->original_schedule_ms;
        bool was_closing = e->closing;
        e->closing = false;
        uint32_t t = keel_workflow_timer(&e->ctx, o->backoff_ms);
        e->closing = was_closing;
        if (t == 0)
            return keel_error_set(err, KEEL_ENOMEM, "%s", error_text(e));
        e->timers.v[e->timers.n - 1].state = OPEN;
        la->timer_seq = t;
        la->state = KEEL_LA_BACKOFF;
        return KEEL_OK;
    }
    la->state = KEEL_LA_DONE;
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->ev.seq = la->seq;
    d->name = strdup(la->type);
    if (o->ok) {
        d->ev.kind = KEEL_EVENT_ACTIVITY_COMPLETED;
        d->json = o->result_json ? strdup(o->result_json) : NULL;
        if (o->result_json && d->json == NULL)
            return oom(err);
    } else {
        d->ev.kind = KEEL_EVENT_ACTIVITY_FAILED;
        d->failure_message = keel_failure_text(o->failure);
        d->failure_type = keel_failure_type(o->failure);
        if (d->failure_message == NULL || d->failure_type == NULL)
            return oom(err);
    }
    return seal(d, err);
}

/* Replay: the first recorded local activity marker (in history order) for a local activity that
 * waits resolves it, as it did live. */
static int resolve_replayed_locals(keel_engine *e, bool *resolved, keel_error *err)
{
    *resolved = false;
    for (size_t i = 0; i < e->n_rec; i++) {
        recorded *r = &e->rec[i];
        if (r->la == NULL || r->claimed)
            continue;
        keel_la *la = keel_la_find(&e->las, r->la->seq);
        if (la == NULL || la->state != KEEL_LA_WAITING)
            continue; /* matching reports a marker nobody asked for */
        char want[16];
        snprintf(want, sizeof want, "%u", la->wire_seq);
        if (!same(r->la->activity_type, la->type) || !same(r->la->activity_id, want))
            return nondeterminism(e, err,
                                  "the workflow ran local activity %u of type %s, but history "
                                  "event %lld recorded local activity %s of type %s",
                                  la->wire_seq, la->type, (long long)r->event_id,
                                  txt(r->la->activity_id), txt(r->la->activity_type));
        r->claimed = true;
        *resolved = true;
        return resolve_local(e, la, r->la, err);
    }
    return KEEL_OK;
}

keel_la_table *keel_engine_local_activities(keel_engine *e)
{
    return &e->las;
}

int64_t keel_engine_wft_timeout_ms(const keel_engine *e)
{
    return e->wft_timeout_ms;
}

/* Rebuild the answer from the commands (after a live round). */
static int rebuild_out(keel_engine *e, keel_error *err)
{
    free(e->out);
    e->n_out = 0;
    e->out = calloc(e->n_cmds ? e->n_cmds : 1, sizeof *e->out);
    if (e->out == NULL)
        return oom(err);
    for (size_t i = 0; i < e->n_cmds; i++)
        if (!e->cmds[i].dropped)
            e->out[e->n_out++] = e->cmds[i].pb;
    return KEEL_OK;
}

int keel_engine_local_resolve(keel_engine *e, const keel_la_outcome *o, keel_error *err)
{
    keel_la *la = keel_la_find(&e->las, o->seq);
    if (la == NULL)
        return keel_error_set(err, KEEL_EINVAL, "no local activity %u in this run", o->seq);
    int rc = resolve_local(e, la, o, err);
    if (rc == KEEL_OK && e->n_deliveries > 0)
        rc = run_round(e, false, err);
    if (rc == KEEL_OK)
        rc = rebuild_out(e, err);
    return rc;
}

/* ---- the rest of the context ---- */

int64_t keel_engine_run_started_ms(const keel_engine *e)
{
    return e->started_ms;
}

int64_t keel_workflow_now_ms(const keel_workflow_ctx *ctx)
{
    return ctx->engine->now_ms;
}

bool keel_workflow_continue_as_new_suggested(const keel_workflow_ctx *ctx)
{
    return ctx->engine->suggest_continue_as_new;
}

uint64_t keel_workflow_random(keel_workflow_ctx *ctx)
{
    return next_random(&ctx->engine->rng);
}

void keel_workflow_uuid(keel_workflow_ctx *ctx, char out[37])
{
    uint64_t a = keel_workflow_random(ctx), b = keel_workflow_random(ctx);
    uint8_t x[16];
    for (int i = 0; i < 8; i++) {
        x[i] = (uint8_t)(a >> (8 * i));
        x[8 + i] = (uint8_t)(b >> (8 * i));
    }
    x[6] = (uint8_t)((x[6] & 0x0f) | 0x40);
    x[8] = (uint8_t)((x[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", x[0],
             x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11], x[12], x[13],
             x[14], x[15]);
}

bool keel_workflow_is_replaying(const keel_workflow_ctx *ctx)
{
    return ctx->engine->replaying;
}

const char *keel_workflow_id(const keel_workflow_ctx *ctx)
{
    return ctx->engine->workflow_id;
}

const char *keel_workflow_run_id(const keel_workflow_ctx *ctx)
{
    return ctx->engine->run_id;
}

const char *keel_workflow_task_queue(const keel_workflow_ctx *ctx)
{
    return ctx->engine->task_queue;
}

int keel_workflow_error(keel_workflow_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error(ctx->engine, fmt, ap);
    va_end(ap);
    return KEEL_EINVAL;
}

/* ---- activations ---- */

static int nondeterminism(keel_engine *e, keel_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int nondeterminism(keel_engine *e, keel_error *err, const char *fmt, ...)
{
    char msg[KEEL_ERROR_MESSAGE_MAX - 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return keel_error_set(err, KEEL_ENONDETERMINISM,
                          "[TMPRL1100] non-deterministic workflow %s (%s): %s", e->type->name,
                          e->workflow_id, msg);
}

static int run_callback(keel_engine *e, delivery *d, keel_error *err)
{
    if (d->update != NOT_UPDATE) {
        bool skip;
        int urc = prepare_update(e, d, &skip, err);
        if (urc != KEEL_OK || skip)
            return urc;
    }
    int rc;
    if (d->is_start && d->bad_input) /* the run cannot begin: say why, once, for good */
        rc = keel_workflow_fail(&e->ctx, "BadInput", d->failure_message, true);
    else if (d->is_start)
        rc = e->type->start(&e->ctx, e->state, d->json);
    else
        rc = e->type->on_event(&e->ctx, e->state, &d->ev);
    if (rc == KEEL_OK && e->error == NULL)
        return KEEL_OK;
    return keel_error_set(err, KEEL_EINVAL, "workflow %s (%s) %s: %s", e->type->name,
                          e->workflow_id, d->is_start ? "start" : "on_event",
                          e->error ? e->error
                                   : "the callback failed without saying why "
                                     "(use keel_workflow_error)");
}

/* Run the workflow over the queued deliveries. Its commands replace the previous activation's
 * (which have all met their events by now). */
static int resolve_replayed_locals(keel_engine *e, bool *resolved, keel_error *err);

static int run_round(keel_engine *e, bool replaying, keel_error *err)
{
    e->replaying = replaying;
    clear_error(e);
    int rc = KEEL_OK;
    for (size_t i = 0; i < e->n_deliveries && rc == KEEL_OK; i++) {
        delivery *d = &e->deliveries[i];
        if (!e->closing) {
            rc = run_callback(e, d, err);
        } else if (d->update == UPDATE_NEW) {
            /* The run is over: a new update is rejected, so that its client hears why. */
            bool skip;
            rc = prepare_update(e, d, &skip, err);
        }
        /* (other news after the close has nobody to go to) */
    }
    free_deliveries(e);
    if (replaying) /* their spans were made when they were new */
        keel_engine_trace_clear_signals(e);
    /* Timers and activities issued now are open once sent (or recorded, in replay). */
    for (size_t i = 0; i < e->activities.n; i++)
        if (e->activities.v[i].state == OPEN_UNSENT)
            e->activities.v[i].state = OPEN;
    for (size_t i = 0; i < e->timers.n; i++)
        if (e->timers.v[i].state == OPEN_UNSENT)
            e->timers.v[i].state = OPEN;
    for (size_t i = 0; i < e->children.n; i++)
        if (e->children.v[i].state == OPEN_UNSENT)
            e->children.v[i].state = OPEN;
    for (size_t i = 0; i < e->signals_out.n; i++)
        if (e->signals_out.v[i].state == OPEN_UNSENT)
            e->signals_out.v[i].state = OPEN;
    return rc;
}

static int activate(keel_engine *e, int64_t now_ms, bool replaying, keel_error *err)
{
    free_commands(e);
    e->now_ms = now_ms;
    int rc = run_round(e, replaying, err);
    /* Local activities the recorded markers resolve, one per round, as they resolved live. */
    bool resolved = replaying;
    while (rc == KEEL_OK && resolved) {
        rc = resolve_replayed_locals(e, &resolved, err);
        if (rc == KEEL_OK && resolved && e->n_deliveries > 0)
            rc = run_round(e, true, err);
    }
    return rc;
}

/* The request an UpdateAccepted event records: in the event, or in the UpdateAdmitted event
 * that came before it (updates admitted durably, as after a reset). */
static int accepted_request(keel_engine *e, const keel_pb_event *ev, keel_update_request *out,
                            keel_error *err)
{
    const Temporal__Api__History__V1__WorkflowExecutionUpdateAcceptedEventAttributes *a =
        ev->workflow_execution_update_accepted_event_attributes;
    if (a->accepted_request)
        return keel_update_request_from_pb(a->accepted_request, out, err);
    for (size_t i = 0; i < e->n_admitted; i++)
        if (same(e->admitted[i].update_id, a->protocol_instance_id)) {
            *out = e->admitted[i];
            e->admitted[i] = e->admitted[--e->n_admitted];
            return KEEL_OK;
        }
    return keel_error_set(
        err, KEEL_EINVAL, "history event %lld accepts update %s, but its request is not recorded",
        (long long)ev->event_id, a->protocol_instance_id ? a->protocol_instance_id : "");
}

static int on_update_admitted(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    if (!grow((void **)&e->admitted, &e->cap_admitted, e->n_admitted + 1, sizeof *e->admitted))
        return oom(err);
    keel_update_request *r = &e->admitted[e->n_admitted];
    int rc = keel_update_request_from_pb(
        ev->workflow_execution_update_admitted_event_attributes->request, r, err);
    if (rc != KEEL_OK)
        return rc;
    /* If no task has handled it by the time the current one runs, that task handles it, as if
     * the request had come as a message sequenced at this event. */
    r->sequencing_event_id = ev->event_id;
    free(r->message_id);
    if ((r->message_id = keel_update_message_id(r->update_id, "request")) == NULL) {
        keel_update_request_dispose(r);
        return oom(err);
    }
    e->n_admitted++;
    return KEEL_OK;
}

static delivery *new_delivery(keel_engine *e, keel_error *err)
{
    if (!grow((void **)&e->deliveries, &e->cap_deliveries, e->n_deliveries + 1,
              sizeof *e->deliveries)) {
        oom(err);
        return NULL;
    }
    delivery *d = &e->deliveries[e->n_deliveries++];
    memset(d, 0, sizeof *d);
    return d;
}

/* Point the event's strings at the delivery's owned copies; fill absent ones. */
static int seal(delivery *d, keel_error *err)
{
    if ((d->name == NULL && (d->name = strdup("")) == NULL) ||
        (d->json == NULL && (d->json = strdup("null")) == NULL) ||
        (d->failure_message == NULL && (d->failure_message = strdup("")) == NULL) ||
        (d->failure_type == NULL && (d->failure_type = strdup("")) == NULL))
        return oom(err);
    d->ev.name = d->name;
    d->ev.json = d->json;
    d->ev.failure_message = d->failure_message;
    d->ev.failure_type = d->failure_type;
    return KEEL_OK;
}

/*
 * The delivery's JSON from payloads that came from outside (a client's input or signal, another
 * worker's result). A json/plain payload keel cannot read (not JSON, a NUL, invalid UTF-8) must
 * not fail the workflow task: the history holds it for good, so every
 * retry would fail again and the run would be stuck. Instead the delivery carries "null" and
 * the reason, and the caller decides what the workflow sees. Returns whether the payload was
 * read; when it was not, *rc is KEEL_OK if the reason is in the delivery, else the error (*err:
 * no memory, or an encoding keel does not read).
 */
static bool read_outside(delivery *d, const keel_pb_payloads *p, const char *what,
                         const char *failure_type, int *rc, keel_error *err)
{
    keel_error why;
    *rc = keel_payloads_to_json(p, what, &d->json, &why);
    if (*rc == KEEL_OK)
        return true;
    /* An encoding keel does not decode (a codec's, say) is the deployment's to fix: the task
     * fails until a worker that reads it comes, as the SDKs do. Bad json/plain data is final. */
    bool json =
        p && p->n_payloads > 0 && keel_payload_encoding_is(p->payloads[0], KEEL_ENCODING_JSON);
    if (*rc == KEEL_ENOMEM || !json) {
        keel_error_set(err, *rc, "%s", why.message);
        return false;
    }
    *rc = KEEL_OK;
    if ((d->failure_message = strdup(why.message)) == NULL ||
        (d->failure_type = strdup(failure_type)) == NULL)
        *rc = oom(err);
    return false;
}

/* ---- matching command events ----
 *
 * The command events after a WorkflowTaskCompleted are collected first (as `recorded`); the
 * replayed activation runs once they end, so that get_version() can see the markers it recorded,
 * and then its commands are matched against them in order. */

/* A JSON string or integer in the first payload of a marker detail, as text without quotes. */
static char *
marker_detail(Temporal__Api__History__V1__MarkerRecordedEventAttributes__DetailsEntry *const *d,
              size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (!same(d[i]->key, key))
            continue;
        char *json = NULL;
        keel_error err;
        if (keel_payloads_to_json(d[i]->value, key, &json, &err) != KEEL_OK)
            return NULL;
        cJSON *j = keel_json_from(json);
        free(json);
        char *out = NULL;
        if (cJSON_IsString(j))
            out = strdup(j->valuestring);
        else if (cJSON_IsNumber(j)) {
            /* As written: a version that is not a plain integer does not parse as one. */
            char buf[32];
            out = strdup(keel_json_number_text(j, buf));
        }
        cJSON_Delete(j);
        return out;
    }
    return NULL;
}

/* How a recorded command event reads in a non-determinism message, from what collect() kept:
 * written only when a message needs it. */
static const char *recorded_seen(const recorded *r, char buf[200])
{
    const char *id = r->id ? r->id : "", *type = r->type ? r->type : "";
    switch (r->kind) {
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_SCHEDULED_EVENT_ATTRIBUTES:
        snprintf(buf, 200, "ActivityTaskScheduled (activity %s, type %s)", id, type);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_START_CHILD_WORKFLOW_EXECUTION_INITIATED_EVENT_ATTRIBUTES:
        snprintf(buf, 200, "StartChildWorkflowExecutionInitiated (workflow %s, type %s)", id, type);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED_EVENT_ATTRIBUTES:
        snprintf(buf, 200, "SignalExternalWorkflowExecutionInitiated (%.60s to %.80s)", type, id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_STARTED_EVENT_ATTRIBUTES:
        snprintf(buf, 200, "TimerStarted (timer %s)", id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_CANCELED_EVENT_ATTRIBUTES:
        snprintf(buf, 200, "TimerCanceled (timer %s)", id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_MARKER_RECORDED_EVENT_ATTRIBUTES:
        snprintf(buf, 200, "MarkerRecorded (%s%s%s)", type, r->id ? " " : "", id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_UPDATE_ACCEPTED_EVENT_ATTRIBUTES:
        snprintf(buf, 200, "WorkflowExecutionUpdateAccepted (update %.80s)", id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_UPDATE_COMPLETED_EVENT_ATTRIBUTES:
        snprintf(buf, 200, "WorkflowExecutionUpdateCompleted (update %.80s)", id);
        break;
    default:
        snprintf(buf, 200, "%s", event_type_name(r->event_type));
        break;
    }
    return buf;
}

/* Keep what matching needs from a command event. */
static int collect(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    if (!grow((void **)&e->rec, &e->cap_rec, e->n_rec + 1, sizeof *e->rec))
        return oom(err);
    recorded *r = &e->rec[e->n_rec];
    memset(r, 0, sizeof *r);
    r->event_id = ev->event_id;
    r->kind = (int)ev->attributes_case;
    r->event_type = (int)ev->event_type;
    const char *id = NULL, *type = NULL;
    switch (ev->attributes_case) {
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_SCHEDULED_EVENT_ATTRIBUTES: {
        const Temporal__Api__History__V1__ActivityTaskScheduledEventAttributes *a =
            ev->activity_task_scheduled_event_attributes;
        id = txt(a->activity_id);
        type = a->activity_type ? txt(a->activity_type->name) : "";
        break;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_CANCEL_REQUESTED_EVENT_ATTRIBUTES:
        r->ref = ev->activity_task_cancel_requested_event_attributes->scheduled_event_id;
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_START_CHILD_WORKFLOW_EXECUTION_INITIATED_EVENT_ATTRIBUTES: {
        const Temporal__Api__History__V1__StartChildWorkflowExecutionInitiatedEventAttributes *a =
            ev->start_child_workflow_execution_initiated_event_attributes;
        id = txt(a->workflow_id);
        type = a->workflow_type ? txt(a->workflow_type->name) : "";
        break;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED_EVENT_ATTRIBUTES: {
        const Temporal__Api__History__V1__SignalExternalWorkflowExecutionInitiatedEventAttributes
            *a = ev->signal_external_workflow_execution_initiated_event_attributes;
        id = a->workflow_execution ? txt(a->workflow_execution->workflow_id) : "";
        type = txt(a->signal_name);
        break;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_STARTED_EVENT_ATTRIBUTES:
        id = txt(ev->timer_started_event_attributes->timer_id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_CANCELED_EVENT_ATTRIBUTES:
        id = txt(ev->timer_canceled_event_attributes->timer_id);
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_MARKER_RECORDED_EVENT_ATTRIBUTES: {
        const Temporal__Api__History__V1__MarkerRecordedEventAttributes *a =
            ev->marker_recorded_event_attributes;
        type = a->marker_name;
        if (same(type, SIDE_EFFECT_MARKER)) {
            r->id = marker_detail(a->details, a->n_details, "side-effect-id");
            for (size_t i = 0; i < a->n_details && r->id; i++)
                if (same(a->details[i]->key, "data") &&
                    keel_payloads_to_json(a->details[i]->value, "side effect", &r->data, err) !=
                        KEEL_OK) {
                    free(r->id);
                    return err ? err->code : KEEL_EINVAL;
                }
            if (r->id == NULL || r->data == NULL) {
                free(r->id);
                free(r->data);
                return keel_error_set(err, KEEL_EINVAL,
                                      "history event %lld is a SideEffect marker without its id "
                                      "or data",
                                      (long long)ev->event_id);
            }
        }
        if (same(type, KEEL_LA_MARKER)) {
            if ((r->la = calloc(1, sizeof *r->la)) == NULL)
                return oom(err);
            int lrc = keel_la_marker_read(a, ev->event_id, r->la, err);
            char sq[16];
            snprintf(sq, sizeof sq, "%u", r->la->seq);
            if (lrc != KEEL_OK || (r->id = strdup(sq)) == NULL) {
                keel_la_outcome_clear(r->la);
                free(r->la);
                r->la = NULL;
                return lrc != KEEL_OK ? lrc : oom(err);
            }
        }
        if (same(type, VERSION_MARKER)) {
            r->id = marker_detail(a->details, a->n_details, "change-id");
            char *v = marker_detail(a->details, a->n_details, "version");
            char *end = NULL;
            errno = 0;
            r->version = v ? strtoll(v, &end, 10) : 0;
            /* get_version() hands it on as an int: a version that is not one is refused. */
            bool in_range = v == NULL || (end != v && *end == '\0' && errno == 0 &&
                                          r->version >= INT_MIN && r->version <= INT_MAX);
            free(v);
            if (r->id == NULL || !in_range) {
                free(r->id);
                return keel_error_set(err, KEEL_EINVAL, "history event %lld is a Version marker %s",
                                      (long long)ev->event_id,
                                      in_range ? "without a change-id"
                                               : "whose version is not an integer an int holds");
            }
        }
        break;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_UPDATE_ACCEPTED_EVENT_ATTRIBUTES: {
        id = ev->workflow_execution_update_accepted_event_attributes->protocol_instance_id;
        if (e->activation_pending) {
            /* The replayed activation handles it: its request is only here. */
            keel_update_request req;
            int rc = accepted_request(e, ev, &req, err);
            if (rc == KEEL_OK)
                rc = deliver_update(e, UPDATE_REPLAYED, &req, err);
            if (rc != KEEL_OK)
                return rc;
        }
        break;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_UPDATE_COMPLETED_EVENT_ATTRIBUTES: {
        const Temporal__Api__Update__V1__Meta *m =
            ev->workflow_execution_update_completed_event_attributes->meta;
        id = m && m->update_id ? m->update_id : "";
        break;
    }
    default:
        break;
    }
    if ((id && r->id == NULL && (r->id = strdup(id)) == NULL) ||
        (type && (r->type = strdup(type)) == NULL)) {
        free(r->id);
        return oom(err);
    }
    e->n_rec++;
    return KEEL_OK;
}

/* Whether the recorded event is the one command c produced. */
static bool matches(keel_engine *e, const command *c, const recorded *r)
{
    char want[16];
    snprintf(want, sizeof want, "%u", c->seq);
    switch (r->kind) {
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_SCHEDULED_EVENT_ATTRIBUTES: {
        const item *it = find_seq(&e->activities, c->seq);
        return c->kind == CMD_ACTIVITY && same(r->id, want) && it && same(it->type, r->type);
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_CANCEL_REQUESTED_EVENT_ATTRIBUTES: {
        const item *it = find_seq(&e->activities, c->seq);
        return c->kind == CMD_CANCEL_ACTIVITY && it && it->event_id == r->ref;
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_STARTED_EVENT_ATTRIBUTES:
        return c->kind == CMD_TIMER && same(r->id, want);
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_START_CHILD_WORKFLOW_EXECUTION_INITIATED_EVENT_ATTRIBUTES: {
        const item *it = find_seq(&e->children, c->seq);
        return c->kind == CMD_CHILD && it && same(it->type, r->type) && same(it->id, r->id);
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED_EVENT_ATTRIBUTES: {
        const item *it = find_seq(&e->signals_out, c->seq);
        return c->kind == CMD_SIGNAL_EXTERNAL && it && same(it->type, r->type) &&
               same(it->id, r->id);
    }
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_TIMER_CANCELED_EVENT_ATTRIBUTES:
        return c->kind == CMD_CANCEL_TIMER && same(r->id, want);
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_MARKER_RECORDED_EVENT_ATTRIBUTES:
        return (c->kind == CMD_VERSION_MARKER && same(r->type, VERSION_MARKER) &&
                same(r->id, c->key)) ||
               (c->kind == CMD_SIDE_EFFECT && same(r->type, SIDE_EFFECT_MARKER) &&
                same(r->id, c->key)) ||
               (c->kind == CMD_LOCAL_ACTIVITY && same(r->type, KEEL_LA_MARKER) &&
                same(r->id, want));
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_COMPLETED_EVENT_ATTRIBUTES:
        return c->kind == CMD_COMPLETE;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_FAILED_EVENT_ATTRIBUTES:
        return c->kind == CMD_FAIL;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_CONTINUED_AS_NEW_EVENT_ATTRIBUTES:
        return c->kind == CMD_CONTINUE_AS_NEW;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_CANCELED_EVENT_ATTRIBUTES:
        return c->kind == CMD_CANCEL_WORKFLOW;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES_EVENT_ATTRIBUTES:
        return c->kind == CMD_UPSERT_SEARCH_ATTRIBUTES;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_PROPERTIES_MODIFIED_EVENT_ATTRIBUTES:
        return c->kind == CMD_MODIFY_PROPERTIES;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_UPDATE_ACCEPTED_EVENT_ATTRIBUTES:
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_UPDATE_COMPLETED_EVENT_ATTRIBUTES: {
        const item *u = find_seq(&e->updates, c->seq);
        cmd_kind want_kind =
            r->kind ==
                    TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_UPDATE_ACCEPTED_EVENT_ATTRIBUTES
                ? CMD_UPDATE_ACCEPT
                : CMD_UPDATE_COMPLETE;
        return c->kind == want_kind && u && same(u->id, r->id);
    }
    default:
        return false; /* a command event keel workflows cannot issue yet */
    }
}

/* Remember which event recorded the command, so that its results find their way back. */
static void note_event(keel_engine *e, const command *c, int64_t event_id)
{
    item *it = NULL;
    if (c->kind == CMD_ACTIVITY)
        it = find_seq(&e->activities, c->seq);
    else if (c->kind == CMD_TIMER)
        it = find_seq(&e->timers, c->seq);
    else if (c->kind == CMD_CHILD)
        it = find_seq(&e->children, c->seq);
    else if (c->kind == CMD_SIGNAL_EXTERNAL)
        it = find_seq(&e->signals_out, c->seq);
    if (it)
        it->event_id = event_id;
}

/* How command c reads in a non-determinism message. The frequent kinds are described here, from
 * what the engine keeps of them, only when a message needs it; the rest were described when
 * issued (c->what). */
static const char *command_what(keel_engine *e, const command *c, char buf[160])
{
    const item *it;
    switch (c->kind) {
    case CMD_ACTIVITY:
        it = find_seq(&e->activities, c->seq);
        snprintf(buf, 160, "ScheduleActivityTask (activity %u, type %s)", c->seq,
                 it && it->type ? it->type : "");
        return buf;
    case CMD_CANCEL_ACTIVITY:
        snprintf(buf, 160, "RequestCancelActivityTask (activity %u)", c->seq);
        return buf;
    case CMD_CHILD:
        it = find_seq(&e->children, c->seq);
        snprintf(buf, 160, "StartChildWorkflowExecution (workflow %.50s, type %.50s)",
                 it && it->id ? it->id : "", it && it->type ? it->type : "");
        return buf;
    case CMD_SIGNAL_EXTERNAL:
        it = find_seq(&e->signals_out, c->seq);
        snprintf(buf, 160, "SignalExternalWorkflowExecution (%.50s to %.60s)",
                 it && it->type ? it->type : "", it && it->id ? it->id : "");
        return buf;
    case CMD_TIMER:
        snprintf(buf, 160, "StartTimer (timer %u)", c->seq);
        return buf;
    case CMD_CANCEL_TIMER:
        snprintf(buf, 160, "CancelTimer (timer %u)", c->seq);
        return buf;
    default:
        return c->what;
    }
}

/* Pair the last activation's commands with the recorded command events, in order. A version
 * marker the code no longer asks for is passed over: removing a get_version() once no run needs
 * the old branch must not break replay. */
static int match_recorded(keel_engine *e, keel_error *err)
{
    size_t i = 0;
    for (size_t j = 0; j < e->n_rec; j++) {
        const recorded *r = &e->rec[j];
        while (i < e->n_cmds && e->cmds[i].dropped)
            i++;
        command *c = i < e->n_cmds ? &e->cmds[i] : NULL;
        if (c && matches(e, c, r)) {
            note_event(e, c, r->event_id);
            i++;
            continue;
        }
        if (is_version_marker(r))
            continue;
        char what[160], seen[200];
        if (c == NULL)
            return nondeterminism(e, err,
                                  "history event %lld is %s, but the workflow issued no command "
                                  "for it",
                                  (long long)r->event_id, recorded_seen(r, seen));
        return nondeterminism(e, err, "the workflow issued %s where history event %lld is %s",
                              command_what(e, c, what), (long long)r->event_id,
                              recorded_seen(r, seen));
    }
    while (i < e->n_cmds && e->cmds[i].dropped)
        i++;
    char what[160];
    if (i < e->n_cmds)
        return nondeterminism(
            e, err, "the workflow issued %s, but its history has no such command%s%lld",
            command_what(e, &e->cmds[i], what), e->n_rec ? " after event " : " after event ",
            (long long)(e->n_rec ? e->rec[e->n_rec - 1].event_id : e->last_event_id));
    return KEEL_OK;
}

static int deliver_canceled(keel_engine *e, const deferred_cancel *dc, keel_error *err);

/* The command events of the last completed task are all in: run its activation if it is a
 * replayed one, and match. */
static int settle(keel_engine *e, keel_error *err)
{
    if (!e->in_command_events)
        return KEEL_OK;
    e->in_command_events = false;
    int rc = KEEL_OK;
    if (e->activation_pending) {
        e->activation_pending = false;
        e->suggest_continue_as_new = e->activation_suggest;
        rc = activate(e, e->activation_ms, true, err);
    }
    if (rc == KEEL_OK)
        rc = match_recorded(e, err);
    for (size_t i = 0; rc == KEEL_OK && i < e->n_deferred; i++)
        rc = deliver_canceled(e, &e->deferred[i], err);
    e->n_deferred = 0;
    free_records(e);
    return rc;
}

static int match_command_event(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    if (!e->in_command_events) {
        char seen[64];
        snprintf(seen, sizeof seen, "%s", event_name(ev));
        return nondeterminism(e, err,
                              "history event %lld is %s, but no workflow task completed just "
                              "before it",
                              (long long)ev->event_id, seen);
    }
    return collect(e, ev, err);
}

static bool is_command_event(const keel_pb_event *ev)
{
    switch (ev->event_type) {
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_TIMER_STARTED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_TIMER_CANCELED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_MARKER_RECORDED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
        return true;
    default:
        return false;
    }
}

/* ---- events that bring news ---- */

static int64_t event_ms(const keel_pb_event *ev)
{
    return keel_proto_timestamp_ms(ev->event_time);
}

static int on_started(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    const Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a =
        ev->workflow_execution_started_event_attributes;
    if (ev->event_id != 1)
        return keel_error_set(err, KEEL_EINVAL, "WorkflowExecutionStarted is event %lld, not 1",
                              (long long)ev->event_id);
    /* Randomness follows the first run of a retry/cron chain, as the SDKs seed it. */
    const char *seed = a->original_execution_run_id && a->original_execution_run_id[0]
                           ? a->original_execution_run_id
                           : e->run_id;
    e->rng = seed_from(seed);
    snprintf(e->original_run, sizeof e->original_run, "%s", seed);
    e->now_ms = event_ms(ev);
    e->started_ms = e->now_ms;
    e->wft_timeout_ms = keel_proto_duration_ms(a->workflow_task_timeout);
    if (keel_trace_enabled() && e->trace_parent == NULL) {
        keel_span_context parent = {0};
        keel_trace_from_header(a->header, &parent); /* a bad one: no parent */
        if (parent.valid && (e->trace_parent = malloc(sizeof parent)) != NULL)
            *e->trace_parent = parent; /* (out of memory: the run's spans have no parent) */
    }
    if (e->task_queue[0] == '\0' && a->task_queue && a->task_queue->name) {
        char *q = strdup(a->task_queue->name);
        if (q == NULL)
            return oom(err);
        free(e->task_queue);
        e->task_queue = q;
    }
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->is_start = true;
    int rc;
    d->bad_input =
        !read_outside(d, a->input, "workflow input", "BadInput", &rc, err) && rc == KEEL_OK;
    return rc == KEEL_OK ? seal(d, err) : rc;
}

static item *activity_for(keel_engine *e, int64_t event_id, const char *event, int64_t scheduled_id,
                          keel_error *err)
{
    item *it = find_event(&e->activities, scheduled_id);
    if (it == NULL || it->state == CLOSED)
        nondeterminism(e, err,
                       "history event %lld (%s) is for the activity scheduled at event %lld, "
                       "which the workflow did not schedule or already saw finish",
                       (long long)event_id, event, (long long)scheduled_id);
    return it && it->state != CLOSED ? it : NULL;
}

/* An ActivityTaskCanceled written among the command events is delivered once the activation
 * that asked has run and been matched (see deferred_cancel). */
static int defer_cancel(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    if (!grow((void **)&e->deferred, &e->cap_deferred, e->n_deferred + 1, sizeof *e->deferred))
        return oom(err);
    e->deferred[e->n_deferred++] = (deferred_cancel){
        ev->event_id, ev->activity_task_canceled_event_attributes->scheduled_event_id};
    return KEEL_OK;
}

static int deliver_canceled(keel_engine *e, const deferred_cancel *dc, keel_error *err)
{
    item *it = activity_for(e, dc->event_id, "ACTIVITY_TASK_CANCELED", dc->scheduled_id, err);
    if (it == NULL)
        return KEEL_ENONDETERMINISM;
    it->state = CLOSED;
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->ev.kind = KEEL_EVENT_ACTIVITY_CANCELED;
    d->ev.seq = it->seq;
    d->name = strdup(it->type ? it->type : "");
    return seal(d, err);
}

static int on_activity_closed(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    int64_t scheduled = 0;
    const Temporal__Api__Failure__V1__Failure *failure = NULL;
    const Temporal__Api__Common__V1__Payloads *result = NULL;
    keel_workflow_event_kind kind;
    switch (ev->attributes_case) {
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_COMPLETED_EVENT_ATTRIBUTES:
        scheduled = ev->activity_task_completed_event_attributes->scheduled_event_id;
        result = ev->activity_task_completed_event_attributes->result;
        kind = KEEL_EVENT_ACTIVITY_COMPLETED;
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_FAILED_EVENT_ATTRIBUTES:
        scheduled = ev->activity_task_failed_event_attributes->scheduled_event_id;
        failure = ev->activity_task_failed_event_attributes->failure;
        kind = KEEL_EVENT_ACTIVITY_FAILED;
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_ACTIVITY_TASK_TIMED_OUT_EVENT_ATTRIBUTES:
        scheduled = ev->activity_task_timed_out_event_attributes->scheduled_event_id;
        failure = ev->activity_task_timed_out_event_attributes->failure;
        kind = KEEL_EVENT_ACTIVITY_FAILED;
        break;
    default: /* canceled */
        scheduled = ev->activity_task_canceled_event_attributes->scheduled_event_id;
        kind = KEEL_EVENT_ACTIVITY_CANCELED;
        break;
    }
    item *it = activity_for(e, ev->event_id, event_name(ev), scheduled, err);
    if (it == NULL)
        return KEEL_ENONDETERMINISM;
    it->state = CLOSED;
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->ev.kind = kind;
    d->ev.seq = it->seq;
    d->name = strdup(it->type ? it->type : "");
    if (kind == KEEL_EVENT_ACTIVITY_COMPLETED) {
        char what[160];
        snprintf(what, sizeof what, "result of activity %u (%.100s)", it->seq, it->type);
        int rc;
        if (!read_outside(d, result, what, "BadResult", &rc, err) && rc == KEEL_OK)
            d->ev.kind = KEEL_EVENT_ACTIVITY_FAILED; /* a result nobody can read is a failure */
        if (rc != KEEL_OK)
            return rc;
    } else if (kind == KEEL_EVENT_ACTIVITY_FAILED) {
        d->failure_message = keel_failure_text(failure);
        d->failure_type = keel_failure_type(failure);
        if (d->failure_message == NULL || d->failure_type == NULL)
            return oom(err);
    }
    return seal(d, err);
}

static int on_timer_fired(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    int64_t started = ev->timer_fired_event_attributes->started_event_id;
    item *it = find_event(&e->timers, started);
    if (it == NULL || it->state == CLOSED)
        return nondeterminism(e, err,
                              "history event %lld fires the timer started at event %lld, which "
                              "the workflow did not start or already cancelled",
                              (long long)ev->event_id, (long long)started);
    it->state = CLOSED;
    keel_la *la = keel_la_by_timer(&e->las, it->seq);
    if (la) { /* a local activity's backoff is over: its next attempt runs (or replays) */
        la->state = KEEL_LA_WAITING;
        la->timer_seq = 0;
        la->sched_wf_ms = event_ms(ev);
        la->run_began_ms = 0;
        la->wire_seq = e->next_activity_seq++; /* the retry is a new local activity on the wire */
        return KEEL_OK;
    }
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->ev.kind = KEEL_EVENT_TIMER_FIRED;
    d->ev.seq = it->seq;
    return seal(d, err);
}

static int on_signal(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    const Temporal__Api__History__V1__WorkflowExecutionSignaledEventAttributes *a =
        ev->workflow_execution_signaled_event_attributes;
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->ev.kind = KEEL_EVENT_SIGNAL;
    d->name = strdup(a->signal_name ? a->signal_name : "");
    if (keel_trace_enabled() && grow((void **)&e->trace_signals, &e->cap_trace_signals,
                                     e->n_trace_signals + 1, sizeof *e->trace_signals)) {
        keel_engine_signal *s = &e->trace_signals[e->n_trace_signals];
        s->name = strdup(txt(a->signal_name));
        s->event_id = ev->event_id;
        s->time_ms = event_ms(ev);
        keel_trace_from_header(a->header, &s->parent);
        if (s->name)
            e->n_trace_signals++;
    }
    char what[160];
    snprintf(what, sizeof what, "argument of signal '%.100s'", txt(a->signal_name));
    int rc;
    read_outside(d, a->input, what, "BadInput", &rc, err);
    return rc == KEEL_OK ? seal(d, err) : rc;
}

static int on_cancel_requested(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    const char *cause = ev->workflow_execution_cancel_requested_event_attributes->cause;
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->ev.kind = KEEL_EVENT_CANCEL_REQUESTED;
    /* The reason as a JSON string; cJSON would be heavier than escaping these few cases. */
    size_t n = strlen(cause ? cause : "");
    if ((d->json = malloc(2 * n + 3)) == NULL)
        return oom(err);
    char *p = d->json;
    *p++ = '"';
    for (const char *s = cause ? cause : ""; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            *p++ = '\\';
        *p++ = ch < 0x20 ? ' ' : (char)ch;
    }
    *p++ = '"';
    *p = '\0';
    return seal(d, err);
}

/* A child's news, found by the event that initiated it. Started is bookkeeping only. */
static int on_child_event(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    int64_t initiated = 0;
    const Temporal__Api__Common__V1__Payloads *result = NULL;
    const Temporal__Api__Failure__V1__Failure *failure = NULL;
    const char *type = NULL; /* the failure type when there is no Failure to read it from */
    keel_workflow_event_kind kind = KEEL_EVENT_CHILD_FAILED;
    switch (ev->attributes_case) {
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_CHILD_WORKFLOW_EXECUTION_STARTED_EVENT_ATTRIBUTES:
        initiated = ev->child_workflow_execution_started_event_attributes->initiated_event_id;
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_START_CHILD_WORKFLOW_EXECUTION_FAILED_EVENT_ATTRIBUTES:
        initiated = ev->start_child_workflow_execution_failed_event_attributes->initiated_event_id;
        type = "AlreadyStarted";
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_CHILD_WORKFLOW_EXECUTION_COMPLETED_EVENT_ATTRIBUTES:
        initiated = ev->child_workflow_execution_completed_event_attributes->initiated_event_id;
        result = ev->child_workflow_execution_completed_event_attributes->result;
        kind = KEEL_EVENT_CHILD_COMPLETED;
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_CHILD_WORKFLOW_EXECUTION_FAILED_EVENT_ATTRIBUTES:
        initiated = ev->child_workflow_execution_failed_event_attributes->initiated_event_id;
        failure = ev->child_workflow_execution_failed_event_attributes->failure;
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_CHILD_WORKFLOW_EXECUTION_CANCELED_EVENT_ATTRIBUTES:
        initiated = ev->child_workflow_execution_canceled_event_attributes->initiated_event_id;
        type = "Canceled";
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_CHILD_WORKFLOW_EXECUTION_TIMED_OUT_EVENT_ATTRIBUTES:
        initiated = ev->child_workflow_execution_timed_out_event_attributes->initiated_event_id;
        type = "Timeout";
        break;
    case TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_CHILD_WORKFLOW_EXECUTION_TERMINATED_EVENT_ATTRIBUTES:
        initiated = ev->child_workflow_execution_terminated_event_attributes->initiated_event_id;
        type = "Terminated";
        break;
    default:
        return keel_error_set(err, KEEL_EINVAL, "history event %lld is %s without attributes",
                              (long long)ev->event_id, event_name(ev));
    }
    item *it = find_event(&e->children, initiated);
    if (it == NULL || it->state == CLOSED)
        return nondeterminism(e, err,
                              "history event %lld (%s) is for the child initiated at event %lld, "
                              "which the workflow did not start or already saw finish",
                              (long long)ev->event_id, event_name(ev), (long long)initiated);
    if (ev->event_type ==
        TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED)
        return KEEL_OK;
    it->state = CLOSED;
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->ev.kind = kind;
    d->ev.seq = it->seq;
    d->name = strdup(it->type ? it->type : "");
    if (kind == KEEL_EVENT_CHILD_COMPLETED) {
        char what[160];
        snprintf(what, sizeof what, "result of child workflow %.100s", it->id);
        int rc;
        if (!read_outside(d, result, what, "BadResult", &rc, err) && rc == KEEL_OK)
            d->ev.kind = KEEL_EVENT_CHILD_FAILED;
        if (rc != KEEL_OK)
            return rc;
    } else if (failure) {
        d->failure_message = keel_failure_text(failure);
        d->failure_type = keel_failure_type(failure);
    } else {
        char msg[300];
        snprintf(msg, sizeof msg, "child workflow %.200s: %s", it->id, event_name(ev));
        d->failure_message = strdup(msg);
        /* A failed child whose event carries no Failure has no type to give. */
        d->failure_type = strdup(type ? type : "");
    }
    if (kind == KEEL_EVENT_CHILD_FAILED && (!d->failure_message || !d->failure_type))
        return oom(err);
    return seal(d, err);
}

/* The outcome of a signal this workflow sent to another. */
static int on_signal_outcome(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    bool delivered =
        ev->attributes_case ==
        TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED_EVENT_ATTRIBUTES;
    int64_t initiated =
        delivered
            ? ev->external_workflow_execution_signaled_event_attributes->initiated_event_id
            : ev->signal_external_workflow_execution_failed_event_attributes->initiated_event_id;
    item *it = find_event(&e->signals_out, initiated);
    if (it == NULL || it->state == CLOSED)
        return nondeterminism(e, err,
                              "history event %lld (%s) is for the signal sent at event %lld, "
                              "which the workflow did not send",
                              (long long)ev->event_id, event_name(ev), (long long)initiated);
    it->state = CLOSED;
    delivery *d = new_delivery(e, err);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->ev.kind = delivered ? KEEL_EVENT_SIGNAL_DELIVERED : KEEL_EVENT_SIGNAL_FAILED;
    d->ev.seq = it->seq;
    d->name = strdup(it->type ? it->type : "");
    if (!delivered) {
        const char *cause = keel_proto_enum_name(
            &temporal__api__enums__v1__signal_external_workflow_execution_failed_cause__descriptor,
            (int)ev->signal_external_workflow_execution_failed_event_attributes->cause);
        char msg[300];
        snprintf(msg, sizeof msg, "signal %.60s to workflow %.100s failed: %s", it->type, it->id,
                 cause ? cause : "unknown cause");
        d->failure_message = strdup(msg);
        d->failure_type = strdup("SignalFailed");
        if (d->failure_message == NULL || d->failure_type == NULL)
            return oom(err);
    }
    return seal(d, err);
}

/* ---- feeding ---- */

#define EVENT_WITH(x)                                                                              \
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_##x:                                     \
        return TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_##x##_EVENT_ATTRIBUTES

/* The attributes an event that keel reads must carry (0: keel reads none, but see
 * is_command_event: those need theirs too). A history from a file or an odd server may leave
 * them out; that is an error, not a crash. */
static int expected_attributes(Temporal__Api__Enums__V1__EventType type)
{
    switch (type) {
        EVENT_WITH(WORKFLOW_EXECUTION_STARTED);
        EVENT_WITH(WORKFLOW_TASK_COMPLETED);
        EVENT_WITH(ACTIVITY_TASK_COMPLETED);
        EVENT_WITH(ACTIVITY_TASK_FAILED);
        EVENT_WITH(ACTIVITY_TASK_TIMED_OUT);
        EVENT_WITH(ACTIVITY_TASK_CANCELED);
        EVENT_WITH(TIMER_FIRED);
        EVENT_WITH(WORKFLOW_EXECUTION_SIGNALED);
        EVENT_WITH(WORKFLOW_EXECUTION_CANCEL_REQUESTED);
        EVENT_WITH(EXTERNAL_WORKFLOW_EXECUTION_SIGNALED);
        EVENT_WITH(SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED);
        EVENT_WITH(START_CHILD_WORKFLOW_EXECUTION_FAILED);
        EVENT_WITH(CHILD_WORKFLOW_EXECUTION_STARTED);
        EVENT_WITH(CHILD_WORKFLOW_EXECUTION_COMPLETED);
        EVENT_WITH(CHILD_WORKFLOW_EXECUTION_FAILED);
        EVENT_WITH(CHILD_WORKFLOW_EXECUTION_CANCELED);
        EVENT_WITH(CHILD_WORKFLOW_EXECUTION_TIMED_OUT);
        EVENT_WITH(CHILD_WORKFLOW_EXECUTION_TERMINATED);
        EVENT_WITH(WORKFLOW_EXECUTION_UPDATE_ACCEPTED);
        EVENT_WITH(WORKFLOW_EXECUTION_UPDATE_COMPLETED);
        EVENT_WITH(WORKFLOW_EXECUTION_UPDATE_ADMITTED);
    default:
        return 0;
    }
}

/* Whether the attributes field `field` ("timer_fired_event_attributes") is the one of event type
 * `type` (TIMER_FIRED, the enum name without its prefix): the Temporal API names them alike. */
static bool attributes_fit(const char *type, const char *field)
{
    static const char suffix[] = "_event_attributes";
    for (; *type; type++, field++)
        if (*field == '\0' || (*type >= 'A' && *type <= 'Z' ? *type - 'A' + 'a' : *type) != *field)
            return false;
    return strcmp(field, suffix) == 0;
}

/* The attributes an event carries must be its own type's, and there: the oneof's members share
 * one pointer, so reading a WorkflowTaskStarted's attributes out of a timer's would read past
 * them. After this, every attributes pointer the handlers below read is the right one. */
static int check_attributes(const keel_pb_event *ev, keel_error *err)
{
    if (ev->attributes_case == TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES__NOT_SET) {
        if (expected_attributes(ev->event_type) || is_command_event(ev))
            return keel_error_set(err, KEEL_EINVAL,
                                  "history event %lld is %s without its attributes",
                                  (long long)ev->event_id, event_name(ev));
        return KEEL_OK;
    }
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &temporal__api__history__v1__history_event__descriptor, (unsigned)ev->attributes_case);
    if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return keel_error_set(err, KEEL_EINVAL,
                              "history event %lld (%s) carries attributes of unknown field %d",
                              (long long)ev->event_id, event_name(ev), (int)ev->attributes_case);
    const char *type = keel_proto_enum_name(&temporal__api__enums__v1__event_type__descriptor,
                                            (int)ev->event_type);
    /* A type this build does not know is never read: see the default case in feed_one. */
    if (type != NULL && !attributes_fit(event_name(ev), f->name)) {
        size_t n = strlen(f->name);
        size_t cut = n > strlen("_event_attributes") ? n - strlen("_event_attributes") : n;
        return keel_error_set(err, KEEL_EINVAL, "history event %lld (%s) carries %.*s attributes",
                              (long long)ev->event_id, event_name(ev), (int)cut, f->name);
    }
    if (*(void *const *)((const char *)ev + f->offset) == NULL)
        return keel_error_set(err, KEEL_EINVAL,
                              "history event %lld (%s) names its attributes but has none",
                              (long long)ev->event_id, event_name(ev));
    return KEEL_OK;
}

/* Workflow time comes from event times, and workflows do date arithmetic on it: a time outside
 * what google.protobuf.Timestamp allows (years 1 to 9999) is refused here, once, rather than
 * overflowing in every workflow that adds a day to it. */
#define TIMESTAMP_MIN_SECONDS (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define TIMESTAMP_MAX_SECONDS 253402300799LL   /* 9999-12-31T23:59:59Z */

static int check_time(const keel_pb_event *ev, keel_error *err)
{
    const Google__Protobuf__Timestamp *t = ev->event_time;
    if (t == NULL || (t->seconds >= TIMESTAMP_MIN_SECONDS && t->seconds <= TIMESTAMP_MAX_SECONDS &&
                      t->nanos >= 0 && t->nanos <= 999999999))
        return KEEL_OK;
    return keel_error_set(err, KEEL_EINVAL,
                          "history event %lld (%s) has a time outside the years 1 to 9999 "
                          "(%lld s, %d ns)",
                          (long long)ev->event_id, event_name(ev), (long long)t->seconds,
                          (int)t->nanos);
}

/* Keep the SDK name and version a completed task recorded (empty: unchanged since the last). */
static void note_sdk(keel_engine *e, const Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata *m)
{
    if (m == NULL)
        return;
    if (m->sdk_name && m->sdk_name[0])
        snprintf(e->sdk_name, sizeof e->sdk_name, "%s", m->sdk_name);
    if (m->sdk_version && m->sdk_version[0])
        snprintf(e->sdk_version, sizeof e->sdk_version, "%s", m->sdk_version);
}

static int feed_one(keel_engine *e, const keel_pb_event *ev, keel_error *err)
{
    if (ev->event_id != e->last_event_id + 1)
        return keel_error_set(err, KEEL_EINVAL,
                              "history is not contiguous: event %lld follows event %lld",
                              (long long)ev->event_id, (long long)e->last_event_id);
    int rc = check_attributes(ev, err);
    if (rc == KEEL_OK)
        rc = check_time(ev, err);
    if (rc != KEEL_OK)
        return rc;
    e->last_event_id = ev->event_id;

    if (is_command_event(ev))
        return match_command_event(e, ev, err);
    if (e->in_command_events &&
        ev->event_type == TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_CANCELED)
        return defer_cancel(e, ev, err);
    if (ev->event_type ==
        TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED)
        return KEEL_OK; /* older servers recorded rejections among the commands' events; the
                           run was not changed by them */
    rc = settle(e, err);
    if (rc != KEEL_OK)
        return rc;

    switch (ev->event_type) {
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        return on_started(e, ev, err);
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_STARTED:
        e->pending_started_id = ev->event_id;
        e->pending_started_ms = event_ms(ev);
        /* Its attributes are optional here (keel reads only this flag), and checked above. */
        e->pending_started_suggest =
            ev->attributes_case ==
                TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_TASK_STARTED_EVENT_ATTRIBUTES &&
            ev->workflow_task_started_event_attributes->suggest_continue_as_new;
        e->last_started_id = ev->event_id;
        return KEEL_OK;
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_COMPLETED: {
        note_sdk(e, ev->workflow_task_completed_event_attributes->sdk_metadata);
        int64_t started = ev->workflow_task_completed_event_attributes->started_event_id;
        if (e->answered_started_id != 0 && started == e->answered_started_id) {
            /* The task this engine answered live: its commands follow now. */
            e->answered_started_id = 0;
            e->last_completed_id = ev->event_id;
            e->in_command_events = true;
            return KEEL_OK;
        }
        if (e->pending_started_id == 0 || started != e->pending_started_id)
            return keel_error_set(err, KEEL_EINVAL,
                                  "history event %lld completes workflow task %lld, which is not "
                                  "the one that started",
                                  (long long)ev->event_id, (long long)started);
        /* Replayed: it runs once its command events are in (see settle()). */
        e->last_completed_id = ev->event_id;
        e->pending_started_id = 0;
        e->activation_pending = true;
        e->activation_ms = e->pending_started_ms;
        e->activation_suggest = e->pending_started_suggest;
        e->in_command_events = true;
        return KEEL_OK;
    }
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_FAILED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
        /* That attempt never happened for the workflow: its news goes to the next one. */
        e->pending_started_id = 0;
        return KEEL_OK;
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_STARTED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return KEEL_OK;
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_FAILED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_ACTIVITY_TASK_CANCELED:
        return on_activity_closed(e, ev, err);
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_TIMER_FIRED:
        return on_timer_fired(e, ev, err);
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        return on_signal(e, ev, err);
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
        return on_cancel_requested(e, ev, err);
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED:
        return on_child_event(e, ev, err);
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED:
        return on_signal_outcome(e, ev, err);
    case TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED:
        return on_update_admitted(e, ev, err);
    default:
        if (ev->worker_may_ignore)
            return KEEL_OK;
        return keel_error_set(err, KEEL_EUNIMPLEMENTED,
                              "history event %lld is %s, which keel cannot handle yet",
                              (long long)ev->event_id, event_name(ev));
    }
}

int keel_engine_feed(keel_engine *e, keel_pb_event *const *events, size_t n, keel_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (events[i] == NULL)
            return keel_error_set(err, KEEL_EINVAL, "history holds an empty event");
        int rc = feed_one(e, events[i], err);
        if (rc != KEEL_OK)
            return rc;
    }
    return KEEL_OK;
}

int keel_engine_settle(keel_engine *e, keel_error *err)
{
    return settle(e, err);
}

int keel_engine_finish(keel_engine *e, keel_error *err)
{
    /* The last completed task's command events end here too. */
    int rc = settle(e, err);
    if (rc != KEEL_OK)
        return rc;
    if (e->pending_started_id == 0) {
        /* No task to work on: a closed run, or a replay that ends between tasks. */
        free_commands(e);
        return KEEL_OK;
    }
    /* Updates admitted durably since the last completed task (after a reset, say) and those
     * the task brought go last, after the news in its events; an update id is handled once. */
    for (size_t i = 0; rc == KEEL_OK && i < e->n_admitted;) {
        keel_update_request *r = &e->admitted[i];
        if (r->sequencing_event_id > e->last_completed_id && !update_seen(e, r->update_id)) {
            keel_update_request taken = *r;
            e->admitted[i] = e->admitted[--e->n_admitted];
            rc = deliver_update(e, UPDATE_NEW, &taken, err);
        } else {
            i++;
        }
    }
    for (size_t i = 0; rc == KEEL_OK && i < e->n_incoming; i++)
        if (!update_seen(e, e->incoming[i].update_id))
            rc = deliver_update(e, UPDATE_NEW, &e->incoming[i], err);
    free_requests(e->incoming, &e->n_incoming);
    e->suggest_continue_as_new = e->pending_started_suggest;
    if (rc == KEEL_OK)
        rc = activate(e, e->pending_started_ms, false, err);
    e->pending_started_id = 0;
    if (rc != KEEL_OK)
        return rc;
    /* The answer: what was issued and not cancelled before it was sent. */
    e->out = calloc(e->n_cmds ? e->n_cmds : 1, sizeof *e->out);
    if (e->out == NULL)
        return oom(err);
    for (size_t i = 0; i < e->n_cmds; i++)
        if (!e->cmds[i].dropped)
            e->out[e->n_out++] = e->cmds[i].pb;
    /* The server records them right after this task's WorkflowTaskCompleted: match them then. */
    e->answered_started_id = e->last_started_id;
    return KEEL_OK;
}

int keel_engine_take_messages(keel_engine *e, keel_pb_message *const *msgs, size_t n,
                              keel_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!grow((void **)&e->incoming, &e->cap_incoming, e->n_incoming + 1, sizeof *e->incoming))
            return oom(err);
        int rc = keel_update_request_read(msgs[i], &e->incoming[e->n_incoming], err);
        if (rc == KEEL_EUNIMPLEMENTED)
            continue; /* another protocol's message: not for keel */
        if (rc != KEEL_OK)
            return rc;
        e->n_incoming++;
    }
    return KEEL_OK;
}

size_t keel_engine_messages(const keel_engine *e, keel_pb_message *const **out)
{
    *out = e->msgs;
    return e->n_msgs;
}

size_t keel_engine_commands(const keel_engine *e, keel_pb_command *const **out)
{
    *out = e->out;
    return e->n_out;
}

/* An emptied array's room, given back. */
static void release(void **v, size_t n, size_t *cap)
{
    if (n == 0 && *cap > 0) {
        free(*v);
        *v = NULL;
        *cap = 0;
    }
}

void keel_engine_compact(keel_engine *e)
{
    /* The answer is the server's now: the commands' messages, the answer's arrays and the
     * update answers go. Matching the command events later needs only kind, seq and key. */
    free_answer(e);
    release((void **)&e->msgs, e->n_msgs, &e->cap_msgs);
    /* Arrays that only fill and empty within a task. */
    release((void **)&e->deliveries, e->n_deliveries, &e->cap_deliveries);
    release((void **)&e->incoming, e->n_incoming, &e->cap_incoming);
    release((void **)&e->rec, e->n_rec, &e->cap_rec);
    release((void **)&e->deferred, e->n_deferred, &e->cap_deferred);
    release((void **)&e->trace_signals, e->n_trace_signals, &e->cap_trace_signals);
    clear_error(e);
}

int64_t keel_engine_last_event_id(const keel_engine *e)
{
    return e->last_event_id;
}

int64_t keel_engine_last_started_id(const keel_engine *e)
{
    return e->last_started_id;
}

bool keel_engine_closing(const keel_engine *e)
{
    return e->closing;
}

const void *keel_engine_state(const keel_engine *e)
{
    return e->state;
}

const keel_workflow_type *keel_engine_type(const keel_engine *e)
{
    return e->type;
}

void keel_engine_sdk_recorded(const keel_engine *e, const char **name, const char **version)
{
    *name = e->sdk_name;
    *version = e->sdk_version;
}

keel_engine_trace keel_engine_trace_info(const keel_engine *e)
{
    static const keel_span_context none = {0};
    keel_engine_trace t = {.parent = e->trace_parent ? *e->trace_parent : none,
                           .started_ms = e->started_ms,
                           .original_run_id = e->original_run[0] ? e->original_run : e->run_id,
                           .signals = e->trace_signals,
                           .n_signals = e->n_trace_signals};
    return t;
}

void keel_engine_trace_clear_signals(keel_engine *e)
{
    for (size_t i = 0; i < e->n_trace_signals; i++)
        free(e->trace_signals[i].name);
    e->n_trace_signals = 0;
}
