/* support - the helpers every fuzz target shares (fuzz.h). */
#include "fuzz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converter/payload.h"
#include "proto/depth.h"
#include "worker/engine.h"
#include "workflows/registry.h"

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz property failed: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static void *must(void *p)
{
    if (p == NULL) {
        fprintf(stderr, "fuzz: out of memory\n");
        abort();
    }
    return p;
}

char *fuzz_strndup(const uint8_t *data, size_t len)
{
    char *s = must(malloc(len + 1));
    if (len)
        memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

bool fuzz_split(const uint8_t *data, size_t len, char **a, char **b)
{
    const uint8_t *nul = len ? memchr(data, 0, len) : NULL;
    if (nul == NULL) {
        *a = fuzz_strndup(data, len);
        *b = NULL;
        return false;
    }
    size_t n = (size_t)(nul - data);
    *a = fuzz_strndup(data, n);
    *b = fuzz_strndup(nul + 1, len - n - 1);
    return true;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80                    ? 1
                 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
                 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                                : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((len == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (len == 3 && s[0] == 0xED && s[1] >= 0xA0) ||
        (len == 4 && s[0] == 0xF0 && s[1] < 0x90) || (len == 4 && s[0] == 0xF4 && s[1] >= 0x90))
        return 0;
    return len;
}

bool fuzz_valid_utf8(const char *s, bool keep_nul)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k =
            keep_nul && i + 1 < n && p[i] == 0xC0 && p[i + 1] == 0x80 ? 2 : utf8_char(p + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* ---- protobuf bytes ---- */

ProtobufCMessage *fuzz_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                 size_t len)
{
    ProtobufCMessage *m = NULL;
    return keel_proto_unpack(desc, data, len, &m, NULL) == KEEL_OK ? m : NULL;
}

size_t fuzz_pb_touch(ProtobufCMessage *const *msgs, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (msgs[i])
            total += protobuf_c_message_get_packed_size(msgs[i]);
    return total;
}

const keel_workflow_type *const *fuzz_workflow_types(size_t *n)
{
    return keel_workflow_registry(n);
}

/* ---- hand-built histories ---- */

#define TYPE(x) TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_##x
#define ATTR(x) TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_##x##_EVENT_ATTRIBUTES

static Temporal__Api__History__V1__HistoryEvent *
add(fuzz_history *h, Temporal__Api__Enums__V1__EventType type,
    Temporal__Api__History__V1__HistoryEvent__AttributesCase which)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 8;
        h->ev = must(realloc(h->ev, h->cap * sizeof *h->ev));
    }
    Temporal__Api__History__V1__HistoryEvent *e = must(malloc(sizeof *e));
    temporal__api__history__v1__history_event__init(e);
    e->event_id = (int64_t)h->n + 1;
    e->event_type = type;
    e->attributes_case = which;
    e->event_time = must(malloc(sizeof *e->event_time));
    google__protobuf__timestamp__init(e->event_time);
    e->event_time->seconds = 1795435200 + e->event_id; /* 2026-11-23T12:00:00Z, then a second
                                                          per event */
    h->ev[h->n++] = e;
    return e;
}

void fuzz_history_start(fuzz_history *h, const char *type_name, const uint8_t *raw, size_t len)
{
    Temporal__Api__History__V1__HistoryEvent *e =
        add(h, TYPE(WORKFLOW_EXECUTION_STARTED), ATTR(WORKFLOW_EXECUTION_STARTED));
    Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a =
        must(malloc(sizeof *a));
    temporal__api__history__v1__workflow_execution_started_event_attributes__init(a);
    e->workflow_execution_started_event_attributes = a;
    a->workflow_type = must(malloc(sizeof *a->workflow_type));
    temporal__api__common__v1__workflow_type__init(a->workflow_type);
    a->workflow_type->name = must(strdup(type_name));
    a->task_queue = must(malloc(sizeof *a->task_queue));
    temporal__api__taskqueue__v1__task_queue__init(a->task_queue);
    a->task_queue->name = must(strdup("fuzz"));
    a->workflow_id = must(strdup("fuzz-workflow"));
    a->original_execution_run_id = must(strdup("0b3e1c64-5a2f-4d8e-9c71-000000000001"));
    a->input = must(malloc(sizeof *a->input));
    temporal__api__common__v1__payloads__init(a->input);
    a->input->payloads = must(malloc(sizeof *a->input->payloads));
    keel_pb_payload *p;
    if (keel_payload_new_bytes(raw, len, &p, NULL) != KEEL_OK ||
        keel_payload_set_metadata(p, "encoding", KEEL_ENCODING_JSON, NULL) != KEEL_OK)
        must(NULL);
    a->input->payloads[0] = p;
    a->input->n_payloads = 1;

    Temporal__Api__History__V1__HistoryEvent *s =
        add(h, TYPE(WORKFLOW_TASK_SCHEDULED), ATTR(WORKFLOW_TASK_SCHEDULED));
    s->workflow_task_scheduled_event_attributes =
        must(malloc(sizeof *s->workflow_task_scheduled_event_attributes));
    temporal__api__history__v1__workflow_task_scheduled_event_attributes__init(
        s->workflow_task_scheduled_event_attributes);
    Temporal__Api__History__V1__HistoryEvent *t =
        add(h, TYPE(WORKFLOW_TASK_STARTED), ATTR(WORKFLOW_TASK_STARTED));
    t->workflow_task_started_event_attributes =
        must(malloc(sizeof *t->workflow_task_started_event_attributes));
    temporal__api__history__v1__workflow_task_started_event_attributes__init(
        t->workflow_task_started_event_attributes);
    t->workflow_task_started_event_attributes->scheduled_event_id = s->event_id;
}

void fuzz_history_free(fuzz_history *h)
{
    for (size_t i = 0; i < h->n; i++)
        FREE_PB(h->ev[i]);
    free(h->ev);
    memset(h, 0, sizeof *h);
}

/* ---- a history through the engine, as keel-worker runs it ---- */

/* The index just past the k-th WorkflowTaskStarted that a WorkflowTaskCompleted follows; 0 when
 * there are fewer. */
static size_t split_point(Temporal__Api__History__V1__HistoryEvent *const *ev, size_t n, unsigned k)
{
    for (size_t i = 0; k > 0 && i + 1 < n; i++) {
        if (ev[i]->event_type == TYPE(WORKFLOW_TASK_STARTED) &&
            ev[i + 1]->event_type == TYPE(WORKFLOW_TASK_COMPLETED) && --k == 0)
            return i + 1;
    }
    return 0;
}

static int new_engine(keel_engine **e, const keel_workflow_type *type,
                      Temporal__Api__History__V1__HistoryEvent *const *ev, size_t n)
{
    const Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a =
        n > 0 && ev[0]->attributes_case == ATTR(WORKFLOW_EXECUTION_STARTED)
            ? ev[0]->workflow_execution_started_event_attributes
            : NULL;
    const char *id = a && a->workflow_id && a->workflow_id[0] ? a->workflow_id : "fuzz-workflow";
    const char *run = a && a->original_execution_run_id ? a->original_execution_run_id : "";
    const char *queue = a && a->task_queue && a->task_queue->name ? a->task_queue->name : "fuzz";
    return keel_engine_new(e, type, id, run, queue, NULL);
}

/* Read what the task produced, as the worker does when it answers. */
static void answer(keel_engine *e)
{
    keel_pb_command *const *cmds;
    size_t n = keel_engine_commands(e, &cmds);
    fuzz_pb_touch((ProtobufCMessage *const *)cmds, n);
    keel_pb_message *const *msgs;
    n = keel_engine_messages(e, &msgs);
    fuzz_pb_touch((ProtobufCMessage *const *)msgs, n);
    (void)keel_engine_closing(e);
    (void)keel_engine_last_event_id(e);
    (void)keel_engine_last_started_id(e);
}

static void describe(const keel_engine *e)
{
    const keel_workflow_type *type = keel_engine_type(e);
    if (type->describe == NULL)
        return;
    /* On the heap, exactly as large as promised, so that ASan sees a write past it. */
    size_t cap = 1024;
    char *line = must(malloc(cap));
    line[0] = '\0';
    type->describe(keel_engine_state(e), line, cap);
    if (memchr(line, '\0', cap) == NULL)
        fuzz_fail("%s's describe left its line without a NUL", type->name);
    free(line);
}

static void query(const keel_engine *e, const char *name, const char *args)
{
    const keel_workflow_type *type = keel_engine_type(e);
    char *result = NULL;
    if (type->query(keel_engine_state(e), name, args, &result) == KEEL_OK && result) {
        /* What the worker does with the answer. */
        keel_pb_payloads *ps = NULL;
        if (keel_payloads_new_json(result, "query result", &ps, NULL) == KEEL_OK)
            FREE_PB(ps);
    }
    free(result);
}

static void queries(const keel_workflow_type *type,
                    Temporal__Api__History__V1__HistoryEvent *const *ev, size_t n,
                    const fuzz_run_options *opts)
{
    keel_engine *e;
    if (new_engine(&e, type, ev, n) != KEEL_OK)
        return;
    if (keel_engine_feed(e, ev, n, NULL) == KEEL_OK && keel_engine_settle(e, NULL) == KEEL_OK) {
        describe(e);
        if (type->query && opts->query_name)
            query(e, opts->query_name, opts->query_args);
        for (const char *const *q = type->queries; type->query && !opts->query_name && q && *q; q++)
            query(e, *q, opts->query_args);
    }
    keel_engine_free(e);
}

/* FUZZ_VERBOSE=1 in the environment: say how each run went (for triage; read per call). */
static void report(const keel_workflow_type *type, const char *what, int rc, const keel_error *err)
{
    const char *v = getenv("FUZZ_VERBOSE");
    if (v && *v && strcmp(v, "0") != 0)
        fprintf(stderr, "fuzz: %s: %s: %s%s%s\n", type->name, what, keel_error_code_name(rc),
                rc == KEEL_OK ? "" : ": ", rc == KEEL_OK ? "" : err->message);
}

void fuzz_run(const keel_workflow_type *type, Temporal__Api__History__V1__HistoryEvent *const *ev,
              size_t n, const fuzz_run_options *opts)
{
    static const fuzz_run_options none;
    opts = opts ? opts : &none;
    keel_engine *e;
    keel_error err;
    keel_error_clear(&err);
    if (new_engine(&e, type, ev, n) != KEEL_OK)
        return;
    size_t cut = split_point(ev, n, opts->split);
    int rc = keel_engine_feed(e, ev, cut ? cut : n, &err);
    if (cut && rc == KEEL_OK) {
        /* The first task, answered and cached; the rest of the history is the next task. */
        rc = keel_engine_finish(e, &err);
        report(type, "first task", rc, &err);
        if (rc == KEEL_OK)
            answer(e);
        if (rc == KEEL_OK && !keel_engine_closing(e) && ev[cut]->event_id > INT64_MIN &&
            keel_engine_last_event_id(e) == ev[cut]->event_id - 1) {
            rc = keel_engine_feed(e, ev + cut, n - cut, &err);
        } else {
            /* Not something the worker would have cached: it replays from the start. */
            report(type, "not cached; replaying", rc, &err);
            keel_engine_free(e);
            if (new_engine(&e, type, ev, n) != KEEL_OK)
                return;
            rc = keel_engine_feed(e, ev, n, &err);
        }
    }
    if (rc == KEEL_OK && opts->n_messages)
        rc = keel_engine_take_messages(e, opts->messages, opts->n_messages, &err);
    if (rc == KEEL_OK)
        rc = keel_engine_finish(e, &err);
    report(type, "task", rc, &err);
    if (rc == KEEL_OK) {
        answer(e);
        describe(e);
    }
    keel_engine_free(e);
    if (opts->queries)
        queries(type, ev, n, opts);
}
