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
 */
#include <stdlib.h>
#include <string.h>

#include "converter/payload.h"
#include "fuzz.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

#define MAX_LEN (256 * 1024)

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

typedef Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse workflow_task;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_LEN)
        return 0;
    uint8_t flags = data[0];
    workflow_task *t = (workflow_task *)fuzz_pb_unpack(
        &temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor,
        data + 1, size - 1);
    if (t == NULL)
        return 0;
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
