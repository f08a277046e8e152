/*
 * registry - the list of workflow types in workflows/. A new workflow is added here, and a
 * recorded history of it goes to tests/replay/<its type name>/ (the replay tests insist).
 */
#include "workflows/registry.h"

#include <string.h>

#include "workflows/agent_task.h"
#include "workflows/approval.h"
#include "workflows/batch.h"
#include "workflows/procurement.h"

static const keel_workflow_type *const types[] = {
    &keel_approval_workflow,
    &keel_procurement_workflow,
    &keel_agent_task_workflow,
    &keel_batch_workflow,
    NULL, /* keeps the array non-empty; not counted */
};

const keel_workflow_type *const *keel_workflow_registry(size_t *n)
{
    *n = sizeof types / sizeof types[0] - 1;
    return types;
}

const keel_workflow_type *keel_workflow_registry_find(const char *name)
{
    size_t n;
    const keel_workflow_type *const *t = keel_workflow_registry(&n);
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(t[i]->name, name) == 0)
            return t[i];
    return NULL;
}
