/*
 * keel/replayer.h - replay a recorded history offline through the workflow engine.
 *
 * Every recorded history is a regression test: replaying it through today's workflow code must
 * issue the commands that were recorded. The history is Temporal's JSON ({"events": [...]}, as
 * `keelctl workflow history`, the Web UI's download and `temporal workflow show -o json` write
 * it, enum names long or short) or a binary temporal.api.history.v1.History.
 */
#ifndef KEEL_REPLAYER_H
#define KEEL_REPLAYER_H

#include <stddef.h>

#include "keel/error.h"
#include "keel/workflow.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Replay data[0..len) with `type`. KEEL_OK when the code reproduces the history (a history that
 * ends inside a workflow task replays up to it); KEEL_ENONDETERMINISM naming the first command
 * that differs; KEEL_EINVAL when the data is not a history, or is a history of another workflow
 * type; the callbacks' own errors as they report them. data is borrowed and not kept. The
 * decoded history is held in an arena and released when the call returns; the calling thread
 * keeps one block of it (at most 4 MiB) for its next replay, freed when the thread exits.
 */
int keel_replay(const keel_workflow_type *type, const char *data, size_t len, keel_error *err);

/* The same, from a file (KEEL_EIO naming the path when it cannot be read). */
int keel_replay_file(const keel_workflow_type *type, const char *path, keel_error *err);

#ifdef __cplusplus
}
#endif

#endif
