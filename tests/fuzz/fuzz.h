/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz/ share: size caps, NUL-terminated copies,
 * splitting an input in two, protobuf bytes unpacked as keel unpacks them, hand-built histories,
 * and a way to run a history through one workflow type the way keel-worker does.
 *
 * Nothing here keeps state between inputs: every helper allocates what it returns and the
 * caller frees it before LLVMFuzzerTestOneInput returns, so a crash reproduces from its input
 * alone.
 */
#ifndef KEEL_FUZZ_H
#define KEEL_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "keel/workflow.h"
#include "temporal/api/history/v1/message.pb-c.h"
#include "temporal/api/protocol/v1/message.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

/* Stop the process with a message and abort(), so that libFuzzer saves the input: for a
 * property (round trip, invariant) that does not hold. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A NUL-terminated heap copy of data[0..len) (abort()s when out of memory: a fuzz run has no
 * use for a half-run input). Bytes after an embedded NUL stay in the buffer, so code that reads
 * to the first NUL sees what a C caller would. */
char *fuzz_strndup(const uint8_t *data, size_t len);

/* Split data at its first NUL byte: *a is what comes before it, *b what comes after (both new
 * NUL-terminated copies). Returns false, with *b NULL, when there is no NUL. */
bool fuzz_split(const uint8_t *data, size_t len, char **a, char **b);

/* Whether s is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF);
 * keep_nul: also C0 80, KEEL_JSON_KEEP_NUL's spelling of U+0000. */
bool fuzz_valid_utf8(const char *s, bool keep_nul);

/* Outside protobuf bytes unpacked as keel unpacks them (keel_proto_unpack, src/proto/depth.h:
 * nesting checked before protobuf-c recurses); NULL when refused. */
ProtobufCMessage *fuzz_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                 size_t len);

/* The sum of packed sizes of n messages: reads every field a command or message carries, so
 * that ASan sees a dangling or uninitialised pointer in what keel would send. */
size_t fuzz_pb_touch(ProtobufCMessage *const *msgs, size_t n);

/* Every registered workflow type (workflows/registry.h). */
const keel_workflow_type *const *fuzz_workflow_types(size_t *n);

/* A history in the making: events on the heap in the unpack layout (free with
 * fuzz_history_free). */
typedef struct fuzz_history {
    Temporal__Api__History__V1__HistoryEvent **ev;
    size_t n, cap;
} fuzz_history;

/* WorkflowExecutionStarted of type_name with input raw[0..len) as a json/plain payload (the
 * bytes as they are, not checked: the server passes them on unchecked), then
 * WorkflowTaskScheduled and WorkflowTaskStarted: the first workflow task of a new run. */
void fuzz_history_start(fuzz_history *h, const char *type_name, const uint8_t *raw, size_t len);
void fuzz_history_free(fuzz_history *h);

/* How fuzz_run drives the engine. */
typedef struct fuzz_run_options {
    /* Split the history after its split-th WorkflowTaskStarted that a WorkflowTaskCompleted
     * follows: the first part is one workflow task (replay and answer), the rest a second task
     * on the cached run, as keel-worker's sticky cache does. 0: one task. */
    unsigned split;
    /* Protocol messages (updates) the last task brings. */
    Temporal__Api__Protocol__V1__Message *const *messages;
    size_t n_messages;
    /* Also answer queries after the task: the type's own (with query_args, JSON or NULL) and
     * the stack trace, on a fresh replay brought up to date, as keel-worker answers them. */
    bool queries;
    const char *query_name; /* NULL: each of the type's declared queries */
    const char *query_args;
} fuzz_run_options;

/* Run events[0..n) through `type` as keel-worker would: a new engine fed the history, the
 * task's messages taken, the task finished, its commands and messages read; then the queries.
 * Errors are the workflow task failing, which is fine; what the fuzzer looks for is a crash, a
 * leak, a hang or undefined behaviour on the way. */
void fuzz_run(const keel_workflow_type *type, Temporal__Api__History__V1__HistoryEvent *const *ev,
              size_t n, const fuzz_run_options *opts);

#endif
