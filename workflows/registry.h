/*
 * registry - every workflow type in workflows/: what keel-worker registers, what
 * `keelctl replay --workflow TYPE` finds, and what the replay tests walk.
 */
#ifndef KEEL_WORKFLOWS_REGISTRY_H
#define KEEL_WORKFLOWS_REGISTRY_H

#include <stddef.h>

#include "keel/workflow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The types, in a static array of *n entries (static storage: nothing to free). */
const keel_workflow_type *const *keel_workflow_registry(size_t *n);

/* The type named `name`, or NULL. */
const keel_workflow_type *keel_workflow_registry_find(const char *name);

#ifdef __cplusplus
}
#endif

#endif
