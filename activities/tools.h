/*
 * activities/tools.h - tools as data, and the check every model-proposed tool call passes before
 * anything runs.
 *
 * A tool is a name, a description for the model, a JSON Schema for its arguments, a risk level
 * and the scopes it needs, plus the C function that does it. A toolbox compiles the schemas once
 * and holds the grants: which workflow types may use which tools (least privilege). The worker
 * registers each tool as the activity "tool.<name>" (activities/agent.h).
 *
 * A call is checked in this order: the tool exists, it is granted to the calling workflow type,
 * the arguments are JSON text of an object, and they validate against the schema. A failed check
 * is a structured error the workflow sends back to the model as the tool's result:
 *   {"error":"invalid_arguments","tool":"check_budget",
 *    "errors":[{"pointer":"/amount_usd","reason":"expected number, got string"}]}
 * with "error" one of unknown_tool, tool_not_allowed, arguments_not_json, invalid_arguments.
 */
#ifndef KEEL_ACTIVITIES_TOOLS_H
#define KEEL_ACTIVITIES_TOOLS_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "activities/ledger.h"
#include "keel/activity.h"
#include "keel/error.h"

typedef enum keel_tool_risk {
    KEEL_TOOL_READ,        /* looks things up */
    KEEL_TOOL_WRITE,       /* changes business data; idempotent by key */
    KEEL_TOOL_HIGH_IMPACT, /* spends money or reaches outside: workflows gate it on a person */
} keel_tool_risk;

const char *keel_tool_risk_name(keel_tool_risk risk); /* "read", "write", "high-impact" */

/* What a tool's function gets besides its arguments. Everything is borrowed for the call. */
typedef struct keel_tool_call {
    keel_activity_ctx *activity; /* heartbeat, attempt, ids; NULL when called outside a worker */
    keel_ledger *ledger;         /* the database */
    /* The effect's identity: "<namespace>/<workflow id>/<run id>/<activity id>", the same for
     * every attempt of one activity. Write tools make their effect once per key. */
    const char *idempotency_key;
    const char *workflow_id;
    const char *notify_webhook_url; /* the notify tool's target (NULL: notify fails clearly) */
    const struct keel_agent_metrics *metrics; /* NULL: none (activities/metrics.h) */
} keel_tool_call;

/*
 * Do the tool on validated arguments. On success set *result_json to a new malloc'd JSON text
 * and return KEEL_OK. A business answer ("the budget does not fit") is a result, not an error.
 * Errors: KEEL_EUNAVAILABLE (retryable, e.g. the database went away), KEEL_EINVAL (the request
 * cannot succeed: unknown cost centre; non-retryable), others as their codes say.
 */
typedef int (*keel_tool_fn)(const keel_tool_call *call, const cJSON *args, char **result_json,
                            keel_error *err);

typedef struct keel_tool {
    const char *name;        /* [A-Za-z0-9_-]{1,64}, as Chat Completions requires */
    const char *description; /* what the model reads */
    const char *schema;      /* JSON Schema of the arguments object */
    keel_tool_risk risk;
    const char *scopes; /* space-separated, e.g. "budget:read" */
    keel_tool_fn run;
} keel_tool;

/* Which tools a workflow type may use: names, NULL-terminated. */
typedef struct keel_tool_grant {
    const char *workflow_type;
    const char *const *tools;
} keel_tool_grant;

typedef struct keel_toolbox keel_toolbox;

/* Compile every tool's schema and check the grants name real tools. The tables are borrowed
 * and must outlive the toolbox. A bad schema or name is KEEL_EINVAL naming the tool. */
int keel_toolbox_new(keel_toolbox **out, const keel_tool *tools, size_t n_tools,
                     const keel_tool_grant *grants, size_t n_grants, keel_error *err);
void keel_toolbox_free(keel_toolbox *box);

size_t keel_toolbox_count(const keel_toolbox *box);
const keel_tool *keel_toolbox_at(const keel_toolbox *box, size_t i);

/* Borrowed; NULL when there is no such tool. */
const keel_tool *keel_toolbox_find(const keel_toolbox *box, const char *name);

bool keel_toolbox_allowed(const keel_toolbox *box, const char *workflow_type, const char *name);

/*
 * Check one proposed call. arguments is the model's argument text (NULL or "" count as "{}").
 * Valid: returns NULL and sets *args (may be NULL) to the parsed arguments (caller frees with
 * cJSON_Delete). Invalid: returns the structured error above as a new cJSON object (caller
 * frees) and leaves *args NULL.
 */
cJSON *keel_toolbox_check(const keel_toolbox *box, const char *workflow_type, const char *name,
                          const char *arguments, cJSON **args);

/*
 * The Chat Completions "tools" array for a workflow type: the named tools (names: a JSON array
 * of strings, or NULL for every granted tool), each {"type":"function","function":{name,
 * description, parameters}}. A name that is unknown or not granted is KEEL_EINVAL naming it.
 */
int keel_toolbox_definitions(const keel_toolbox *box, const char *workflow_type, const cJSON *names,
                             cJSON **out, keel_error *err);

#endif
