/*
 * keel-fuzz-seed - seeds in the fuzz targets' binary formats, made from the project's own JSON
 * fixtures (tests/fuzz/seed-corpus runs it). Writes the seed to stdout.
 *
 *   keel-fuzz-seed history HISTORY.json
 *       a binary temporal.api.history.v1.History (fuzz_history_bin)
 *   keel-fuzz-seed engine FLAGS HISTORY.json [update NAME ARGS_JSON | query NAME ARGS_JSON]
 *       FLAGS (a number, see fuzz_engine.c) then a binary PollWorkflowTaskQueueResponse holding
 *       the history, and an update request for the run or a query (fuzz_engine). FLAGS:K keeps
 *       the history only up to its Kth WorkflowTaskStarted: the task the worker is to answer,
 *       so that the workflow issues new commands instead of replaying recorded ones
 *   keel-fuzz-seed tool-schemas
 *       each of keel's tools as a line: its name, a tab, its JSON Schema (fuzz_schema,
 *       fuzz_llm_response)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/agent.h"
#include "converter/payload.h"
#include "converter/protojson.h"
#include "temporal/api/history/v1/message.pb-c.h"
#include "temporal/api/update/v1/message.pb-c.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

static int usage(void)
{
    fprintf(stderr, "usage: keel-fuzz-seed history HISTORY.json\n"
                    "       keel-fuzz-seed engine FLAGS HISTORY.json "
                    "[update NAME ARGS_JSON | query NAME ARGS_JSON]\n"
                    "       keel-fuzz-seed tool-schemas\n");
    return 2;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "keel-fuzz-seed: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    return buf;
}

static Temporal__Api__History__V1__History *history(const char *path)
{
    size_t len;
    char *text = slurp(path, &len);
    if (text == NULL)
        return NULL;
    ProtobufCMessage *m = NULL;
    keel_error err;
    if (keel_protojson_decode(&temporal__api__history__v1__history__descriptor, text, len, &m,
                              &err) != KEEL_OK)
        fprintf(stderr, "keel-fuzz-seed: %s: %s\n", path, err.message);
    free(text);
    return (Temporal__Api__History__V1__History *)m;
}

static int emit(uint8_t flags, bool with_flags, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return 1;
    protobuf_c_message_pack(m, buf);
    int rc = (with_flags && fwrite(&flags, 1, 1, stdout) != 1) ||
             fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0;
    free(buf);
    return rc;
}

static Temporal__Api__Common__V1__Payloads *json_payloads(const char *json)
{
    keel_pb_payloads *p = NULL;
    keel_error err;
    if (keel_payloads_new_json(json, "seed arguments", &p, &err) != KEEL_OK) {
        fprintf(stderr, "keel-fuzz-seed: %s\n", err.message);
        return NULL;
    }
    return p;
}

/* An update request for the run, as a protocol message. */
static Temporal__Api__Protocol__V1__Message *update(const char *name, const char *args,
                                                    int64_t event_id)
{
    Temporal__Api__Update__V1__Meta meta = TEMPORAL__API__UPDATE__V1__META__INIT;
    Temporal__Api__Update__V1__Input input = TEMPORAL__API__UPDATE__V1__INPUT__INIT;
    Temporal__Api__Update__V1__Request req = TEMPORAL__API__UPDATE__V1__REQUEST__INIT;
    meta.update_id = "update-1";
    meta.identity = "keel-fuzz-seed";
    input.name = (char *)name;
    input.args = json_payloads(args);
    if (input.args == NULL)
        return NULL;
    req.meta = &meta;
    req.input = &input;
    Temporal__Api__Protocol__V1__Message *m = malloc(sizeof *m);
    Google__Protobuf__Any *any = malloc(sizeof *any);
    size_t len = protobuf_c_message_get_packed_size(&req.base);
    uint8_t *body = malloc(len ? len : 1);
    if (m == NULL || any == NULL || body == NULL)
        abort();
    protobuf_c_message_pack(&req.base, body);
    FREE_PB(input.args);
    temporal__api__protocol__v1__message__init(m);
    google__protobuf__any__init(any);
    any->type_url = strdup("type.googleapis.com/temporal.api.update.v1.Request");
    any->value.data = body;
    any->value.len = len;
    m->id = strdup("update-1/request");
    m->protocol_instance_id = strdup("update-1");
    m->sequencing_id_case = TEMPORAL__API__PROTOCOL__V1__MESSAGE__SEQUENCING_ID_EVENT_ID;
    m->event_id = event_id;
    m->body = any;
    return m;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "tool-schemas") == 0) {
        for (size_t i = 0; i < keel_agent_tool_count(); i++) {
            const char *schema = keel_agent_tool_at(i)->schema;
            printf("%s\t", keel_agent_tool_at(i)->name);
            for (const char *c = schema; *c; c++) /* one a line */
                putchar(*c == '\n' ? ' ' : *c);
            putchar('\n');
        }
        return fflush(stdout) != 0;
    }
    if (argc == 3 && strcmp(argv[1], "history") == 0) {
        Temporal__Api__History__V1__History *h = history(argv[2]);
        int rc = h ? emit(0, false, &h->base) : 1;
        if (h)
            FREE_PB(h);
        return rc;
    }
    if ((argc != 4 && argc != 7) || strcmp(argv[1], "engine") != 0)
        return usage();
    char *end;
    long flags = strtol(argv[2], &end, 0), upto = 0;
    if (*end == ':')
        upto = strtol(end + 1, &end, 10);
    if (*end || flags < 0 || flags > 255 || upto < 0)
        return usage();
    Temporal__Api__History__V1__History *h = history(argv[3]);
    if (h == NULL)
        return 1;
    for (size_t i = 0; upto > 0 && i < h->n_events; i++) {
        if (h->events[i]->event_type ==
                TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_TASK_STARTED &&
            --upto == 0) {
            for (size_t j = i + 1; j < h->n_events; j++)
                FREE_PB(h->events[j]);
            h->n_events = i + 1;
        }
    }
    if (upto > 0) {
        fprintf(stderr, "keel-fuzz-seed: %s has fewer workflow tasks\n", argv[3]);
        FREE_PB(h);
        return 1;
    }
    Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse t =
        TEMPORAL__API__WORKFLOWSERVICE__V1__POLL_WORKFLOW_TASK_QUEUE_RESPONSE__INIT;
    t.history = h;
    Temporal__Api__Protocol__V1__Message *msg = NULL;
    Temporal__Api__Query__V1__WorkflowQuery q = TEMPORAL__API__QUERY__V1__WORKFLOW_QUERY__INIT;
    int rc = 0;
    if (argc == 7 && strcmp(argv[4], "update") == 0) {
        int64_t last = h->n_events ? h->events[h->n_events - 1]->event_id : 0;
        msg = update(argv[5], argv[6], last);
        rc = msg == NULL;
        t.messages = &msg;
        t.n_messages = 1;
    } else if (argc == 7 && strcmp(argv[4], "query") == 0) {
        q.query_type = argv[5];
        q.query_args = json_payloads(argv[6]);
        rc = q.query_args == NULL;
        t.query = &q;
    } else if (argc == 7) {
        rc = usage();
    }
    if (rc == 0)
        rc = emit((uint8_t)flags, true, &t.base);
    if (msg)
        FREE_PB(msg);
    if (q.query_args)
        FREE_PB(q.query_args);
    FREE_PB(h);
    return rc;
}
