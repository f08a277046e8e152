/* replayer - a recorded history, offline, through the same engine the worker uses. */
#include "keel/replayer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converter/protojson.h"
#include "proto/depth.h"
#include "temporal/api/history/v1/message.pb-c.h"
#include "util/arena.h"
#include "worker/engine.h"

#define MAX_HISTORY_FILE (512L * 1024 * 1024)

typedef Temporal__Api__History__V1__History pb_history;

static bool looks_like_json(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')
            continue;
        return data[i] == '{';
    }
    return false;
}

/* The history, decoded into the arena: every event lives until the arena is freed, and all of
 * them go at once (no free per string and message). */
static int decode(const char *data, size_t len, keel_arena *arena, pb_history **out,
                  keel_error *err)
{
    *out = NULL;
    if (looks_like_json(data, len))
        return keel_protojson_decode_arena(&temporal__api__history__v1__history__descriptor, data,
                                           len, arena, (ProtobufCMessage **)out, err);
    keel_error why;
    bool too_deep = false;
    int rc = keel_proto_check(&temporal__api__history__v1__history__descriptor,
                              (const uint8_t *)data, len, KEEL_PROTO_MAX_DEPTH, &too_deep, &why);
    if (rc != KEEL_OK && too_deep)
        return keel_error_set(err, KEEL_EINVAL, "%s", why.message);
    ProtobufCAllocator alloc = keel_arena_protobuf_allocator(arena);
    if (rc == KEEL_OK)
        *out = temporal__api__history__v1__history__unpack(&alloc, len, (const uint8_t *)data);
    if (*out == NULL)
        return keel_error_set(err, KEEL_EINVAL,
                              "not a history: neither JSON nor a binary "
                              "temporal.api.history.v1.History (%zu bytes): %s",
                              len, rc != KEEL_OK ? why.message : "protobuf-c refused it");
    return KEEL_OK;
}

static int replay_history(const keel_workflow_type *type, const pb_history *h, keel_error *err);

int keel_replay(const keel_workflow_type *type, const char *data, size_t len, keel_error *err)
{
    if (type == NULL || data == NULL)
        return keel_error_set(err, KEEL_EINVAL, "replay needs a workflow type and a history");
    keel_arena *arena = keel_arena_new();
    if (arena == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory decoding the history");
    pb_history *h;
    int rc = decode(data, len, arena, &h, err);
    if (rc == KEEL_OK)
        rc = replay_history(type, h, err);
    keel_arena_free(arena); /* the history, after the engine that read it is gone */
    return rc;
}

static int replay_history(const keel_workflow_type *type, const pb_history *h, keel_error *err)
{
    int rc;
    if (h->n_events == 0 || h->events[0] == NULL ||
        h->events[0]->attributes_case !=
            TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_WORKFLOW_EXECUTION_STARTED_EVENT_ATTRIBUTES ||
        h->events[0]->workflow_execution_started_event_attributes == NULL) {
        return keel_error_set(err, KEEL_EINVAL,
                              "the history does not begin with WorkflowExecutionStarted");
    }
    const Temporal__Api__History__V1__WorkflowExecutionStartedEventAttributes *a =
        h->events[0]->workflow_execution_started_event_attributes;
    const char *recorded = a->workflow_type && a->workflow_type->name ? a->workflow_type->name : "";
    if (strcmp(recorded, type->name) != 0) {
        return keel_error_set(err, KEEL_EINVAL, "the history is of workflow type '%s', not '%s'",
                              recorded, type->name);
    }
    keel_engine *e;
    /* The run's own id: workflows derive ids (children's, say) from it. */
    const char *id = a->workflow_id && a->workflow_id[0] ? a->workflow_id : "replay";
    rc = keel_engine_new(&e, type, id, a->original_execution_run_id,
                         a->task_queue ? a->task_queue->name : "", err);
    if (rc == KEEL_OK)
        rc = keel_engine_feed(e, h->events, h->n_events, err);
    if (rc == KEEL_OK)
        rc = keel_engine_finish(e, err);
    keel_engine_free(e);
    return rc;
}

int keel_replay_file(const keel_workflow_type *type, const char *path, keel_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return keel_error_set(err, KEEL_EIO, "cannot open history file '%s': %s", path,
                              strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = KEEL_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= (size_t)MAX_HISTORY_FILE) {
                rc = keel_error_set(err, KEEL_EINVAL, "history file '%s' is larger than %ld bytes",
                                    path, MAX_HISTORY_FILE);
                break;
            }
            cap = cap ? cap * 2 : 65536;
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                rc = keel_error_set(err, KEEL_ENOMEM, "out of memory reading '%s'", path);
                break;
            }
            buf = grown;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                rc = keel_error_set(err, KEEL_EIO, "cannot read history file '%s'", path);
            break;
        }
    }
    fclose(f);
    if (rc == KEEL_OK)
        rc = keel_replay(type, buf, len, err);
    free(buf);
    return rc;
}
