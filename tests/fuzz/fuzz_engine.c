/*
 * fuzz_engine - the workflow engine (src/worker/engine.c) and keel's workflows driven by hostile
 * workflow tasks, as keel-worker gets them from the server.
 *
 * Input: one flags byte, then a binary temporal.api.workflowservice.v1.
 * PollWorkflowTaskQueueResponse (what the server answers a poll with): its history, its protocol
 * messages (updates) and its query. Every registered workflow type (keel.Procurement,
 * keel.AgentTask, keel.BatchProcurement, keel.Approval) gets the task in turn, whatever type the
 * history names, so that each type's code meets every event sequence.
 *
 * flags: bit 0: run the history as two workflow tasks on one cached run (the sticky queue),
 *               split after the Nth completed task, N = 1 + (flags >> 4);
 *        bit 1: also answer the type's declared queries (with the task's query arguments).
 * A task with a `query` is a query task: the answer comes from a fresh replay, as the worker
 * does it.
 *
 * The custom mutator knows this format: half of the time it decodes the task and changes one
 * thing about its history (drops, repeats, swaps or retypes an event, cuts the history short,
 * renumbers it, or changes one field somewhere in an event: an id, a reference, a string, a
 * payload's bytes, a submessage dropped), so that mutations keep producing histories rather than
 * bytes protobuf-c refuses; the other half it leaves to libFuzzer's byte mutations.
 */
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "converter/payload.h"
#include "fuzz.h"
#include "proto/depth.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

#define MAX_LEN (256 * 1024)

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

typedef Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse workflow_task;
typedef Temporal__Api__History__V1__HistoryEvent event;

static const ProtobufCMessageDescriptor *const task_desc =
    &temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_LEN)
        return 0;
    uint8_t flags = data[0];
    workflow_task *t = (workflow_task *)fuzz_pb_unpack(task_desc, data + 1, size - 1);
    if (t == NULL) {
        /* Too deep: the worker reads what it can (the token) to fail the task. */
        ProtobufCMessage *pruned = NULL;
        if (keel_proto_unpack_pruned(task_desc, data + 1, size - 1, &pruned, NULL, NULL) ==
            KEEL_OK) {
            fuzz_pb_touch(&pruned, 1);
            FREE_PB(pruned);
        }
        return 0;
    }
    if (t->history && t->history->n_events > 0) {
        char *args = NULL;
        if (t->query &&
            keel_payloads_to_json(t->query->query_args, "query arguments", &args, NULL) != KEEL_OK)
            args = NULL;
        fuzz_run_options opts = {
            .split = flags & 1 ? 1u + (flags >> 4) : 0,
            .messages = t->messages,
            .n_messages = t->n_messages,
            .queries = t->query != NULL || (flags & 2),
            .query_name = t->query ? t->query->query_type : NULL,
            .query_args = args,
        };
        size_t n;
        const keel_workflow_type *const *types = fuzz_workflow_types(&n);
        for (size_t i = 0; i < n; i++)
            fuzz_run(types[i], t->history->events, t->history->n_events, &opts);
        free(args);
    }
    FREE_PB(t);
    return 0;
}

/* ---- the structure-aware mutator ---- */

/* A deterministic generator: the same seed gives the same mutation. */
static uint64_t next(uint64_t *r)
{
    *r ^= *r << 13;
    *r ^= *r >> 7;
    *r ^= *r << 17;
    return *r;
}

static size_t below(uint64_t *r, size_t n)
{
    return n ? (size_t)(next(r) % n) : 0;
}

/* One field of one message somewhere in an event: where its value lives. */
typedef struct slot {
    ProtobufCMessage *msg;
    const ProtobufCFieldDescriptor *f;
    void *value; /* the scalar, the char *, the ProtobufCBinaryData or the submessage pointer */
} slot;

#define MAX_SLOTS 512

static void collect(ProtobufCMessage *m, slot *slots, size_t *n, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields && *n < MAX_SLOTS && depth < 12; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *base = (char *)m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(uint32_t *)((char *)m + f->quantifier_offset) != f->id)
                continue;
        }
        size_t count = 1, elem = 0;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            count = *(size_t *)((char *)m + f->quantifier_offset);
            base = *(char **)base;
            switch (f->type) {
            case PROTOBUF_C_TYPE_MESSAGE:
            case PROTOBUF_C_TYPE_STRING:
                elem = sizeof(void *);
                break;
            case PROTOBUF_C_TYPE_BYTES:
                elem = sizeof(ProtobufCBinaryData);
                break;
            case PROTOBUF_C_TYPE_INT64:
            case PROTOBUF_C_TYPE_SINT64:
            case PROTOBUF_C_TYPE_SFIXED64:
            case PROTOBUF_C_TYPE_UINT64:
            case PROTOBUF_C_TYPE_FIXED64:
            case PROTOBUF_C_TYPE_DOUBLE:
                elem = 8;
                break;
            case PROTOBUF_C_TYPE_BOOL:
                elem = sizeof(protobuf_c_boolean);
                break;
            default:
                elem = 4;
            }
        }
        for (size_t k = 0; k < count && *n < MAX_SLOTS; k++) {
            void *v = base + k * elem;
            slots[(*n)++] = (slot){m, f, v};
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(ProtobufCMessage **)v)
                collect(*(ProtobufCMessage **)v, slots, n, depth + 1);
        }
    }
}

static void set_int(const slot *s, int64_t v)
{
    switch (s->f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        memcpy(s->value, &v, 8);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)s->value = (protobuf_c_boolean)(v & 1);
        break;
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = (double)v;
        memcpy(s->value, &d, 8);
        break;
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        float x = (float)v;
        memcpy(s->value, &x, 4);
        break;
    }
    default: {
        int32_t x = (int32_t)v;
        memcpy(s->value, &x, 4);
    }
    }
}

/* Bytes through libFuzzer's own mutations, into a new heap buffer of *len bytes. */
static uint8_t *mutated(const uint8_t *old, size_t *len)
{
    size_t cap = *len * 2 + 16;
    uint8_t *buf = malloc(cap + 1);
    if (buf == NULL)
        abort();
    if (*len)
        memcpy(buf, old, *len);
    *len = LLVMFuzzerMutate(buf, *len, cap);
    buf[*len] = 0;
    return buf;
}

/* Change one field somewhere in e. */
static void mutate_field(event *e, size_t n_events, uint64_t *r)
{
    slot slots[MAX_SLOTS];
    size_t n = 0;
    collect(&e->base, slots, &n, 0);
    if (n == 0)
        return;
    const slot *s = &slots[below(r, n)];
    switch (s->f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        char **p = s->value;
        size_t len = *p ? strlen(*p) : 0;
        char *fresh = (char *)mutated((const uint8_t *)*p, &len);
        if (*p && *p != protobuf_c_empty_string && *p != s->f->default_value)
            free(*p);
        *p = fresh;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = s->value;
        size_t len = b->len;
        uint8_t *fresh = mutated(b->data, &len);
        free(b->data);
        b->data = fresh;
        b->len = len;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        /* Drop it: a missing submessage (attributes, payloads, failure, ...). */
        ProtobufCMessage **p = s->value;
        if (*p && s->f->label != PROTOBUF_C_LABEL_REPEATED) {
            protobuf_c_message_free_unpacked(*p, NULL);
            *p = NULL;
            if (s->f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                *(uint32_t *)((char *)s->msg + s->f->quantifier_offset) = 0;
        }
        break;
    }
    default: {
        static const int64_t interesting[] = {0, 1, -1,  2,         3,         4,
                                              5, 7, 100, INT32_MAX, INT64_MAX, INT64_MIN};
        size_t pick = below(r, 3);
        set_int(s, pick == 0   ? interesting[below(r, sizeof interesting / sizeof *interesting)]
                   : pick == 1 ? (int64_t)below(r, n_events + 3)
                               : (int64_t)next(r));
    }
    }
}

static event *clone(const event *e)
{
    size_t len = protobuf_c_message_get_packed_size(&e->base);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        abort();
    protobuf_c_message_pack(&e->base, buf);
    event *c = temporal__api__history__v1__history_event__unpack(NULL, len, buf);
    free(buf);
    return c;
}

static void mutate_history(Temporal__Api__History__V1__History *h, uint8_t *flags, uint64_t *r)
{
    size_t n = h->n_events, i = below(r, n), j = below(r, n);
    switch (below(r, 9)) {
    case 0: /* drop an event */
        FREE_PB(h->events[i]);
        memmove(h->events + i, h->events + i + 1, (n - i - 1) * sizeof *h->events);
        h->n_events--;
        break;
    case 1: { /* repeat an event somewhere */
        event *c = clone(h->events[i]);
        event **grown = c ? realloc(h->events, (n + 1) * sizeof *grown) : NULL;
        if (grown == NULL) {
            if (c)
                FREE_PB(c);
            break;
        }
        h->events = grown;
        memmove(h->events + j + 1, h->events + j, (n - j) * sizeof *h->events);
        h->events[j] = c;
        h->n_events++;
        break;
    }
    case 2: { /* swap two */
        event *x = h->events[i];
        h->events[i] = h->events[j];
        h->events[j] = x;
        break;
    }
    case 3: /* an event type its attributes do not belong to */
        h->events[i]->event_type = h->events[j]->event_type;
        break;
    case 4: /* the history cut short */
        for (size_t k = i + 1; k < n; k++)
            FREE_PB(h->events[k]);
        h->n_events = i + 1;
        break;
    case 5:
        *flags ^= (uint8_t)(1u << below(r, 8));
        break;
    default:
        mutate_field(h->events[i], n, r);
    }
    if (below(r, 2)) /* usually the ids stay consecutive, as the server writes them */
        for (size_t k = 0; k < h->n_events; k++)
            h->events[k]->event_id = (int64_t)k + 1;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    uint64_t r = (uint64_t)seed * 0x9E3779B97F4A7C15ULL | 1;
    if (size < 2 || below(&r, 2) == 0)
        return LLVMFuzzerMutate(data, size, max_size);
    workflow_task *t = (workflow_task *)fuzz_pb_unpack(task_desc, data + 1, size - 1);
    if (t == NULL || t->history == NULL || t->history->n_events == 0) {
        if (t)
            FREE_PB(t);
        return LLVMFuzzerMutate(data, size, max_size);
    }
    uint8_t flags = data[0];
    mutate_history(t->history, &flags, &r);
    size_t len = protobuf_c_message_get_packed_size(&t->base);
    if (len + 1 > max_size) {
        FREE_PB(t);
        return LLVMFuzzerMutate(data, size, max_size);
    }
    data[0] = flags;
    protobuf_c_message_pack(&t->base, data + 1);
    FREE_PB(t);
    return len + 1;
}
