/*
 * fuzz_procurement_input - a workflow's input as a client sends it, through the public start
 * path: a new run's first workflow task (WorkflowExecutionStarted carrying the fuzzed bytes as a
 * json/plain payload, WorkflowTaskScheduled, WorkflowTaskStarted) given to the engine, which
 * hands the input to keel.Procurement's start (its strict input reader, workflows/procurement.c);
 * then the stack trace and every declared query on the state it built.
 *
 * The other registered types get the same input too: their readers are as exposed, and a
 * refusal costs little.
 */
#include "fuzz.h"

#define MAX_LEN (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    size_t n;
    const keel_workflow_type *const *types = fuzz_workflow_types(&n);
    for (size_t i = 0; i < n; i++) {
        fuzz_history h = {0};
        fuzz_history_start(&h, types[i]->name, data, size);
        fuzz_run_options opts = {.queries = true};
        fuzz_run(types[i], h.ev, h.n, &opts);
        fuzz_history_free(&h);
    }
    return 0;
}
