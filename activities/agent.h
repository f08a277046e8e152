/*
 * activities/agent.h - everything keel's agentic workflows call, as one set of activities:
 * `llm.chat` and one `tool.<name>` per registered tool, sharing the LLM configuration, the
 * ledger (PostgreSQL) and the toolbox.
 *
 * keel_agent_new reads the LLM settings from the environment (activities/llm.h), opens the
 * database and applies keel's migrations, and compiles the tools. Every tool activity checks its
 * input again before it runs (the tool exists, is granted to the calling workflow type, and the
 * arguments validate): a person editing a model's proposal, or a workflow bug, gets the same
 * structured error a model does, as a non-retryable ToolInvalidArguments failure whose details
 * are that error.
 */
#ifndef KEEL_ACTIVITIES_AGENT_H
#define KEEL_ACTIVITIES_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include "activities/ledger.h"
#include "activities/llm.h"
#include "activities/tools.h"
#include "keel/activity.h"
#include "keel/error.h"
#include "keel/metrics.h"

/* Which workflow types may use which tools in keel as shipped (NULL-terminated lists). */
extern const keel_tool_grant keel_default_grants[];
extern const size_t keel_default_grants_count;

/* The tools keel ships (the procurement tools, notify and the sandbox tools), by index; NULL
 * past the end. */
size_t keel_agent_tool_count(void);
const keel_tool *keel_agent_tool_at(size_t i);

typedef struct keel_agent_options {
    const char *database_url;       /* NULL: $DATABASE_URL (required one way or the other) */
    const char *notify_webhook_url; /* NULL: $KEEL_NOTIFY_WEBHOOK_URL (may stay unset) */
    const keel_tool_grant *grants;  /* NULL: keel_default_grants; borrowed */
    size_t n_grants;
    bool skip_migrations; /* the schema is someone else's job (tests that share a database) */
} keel_agent_options;

typedef struct keel_agent keel_agent;

/* Errors name what was wrong: a bad setting, an unreachable database (KEEL_EUNAVAILABLE), a
 * migration that failed, a tool whose schema does not compile. */
int keel_agent_new(keel_agent **out, const keel_agent_options *opts, keel_error *err);
void keel_agent_free(keel_agent *agent);

/* The activities to register on a worker (borrowed; valid until keel_agent_free). */
const keel_activity_type *keel_agent_activities(const keel_agent *agent, size_t *count);

/* Record keel's own metrics (activities/metrics.h) into m from now on; NULL: none. Call it
 * before the activities run; m must outlive the agent. */
void keel_agent_set_metrics(keel_agent *agent, keel_metrics *m);

/* Borrowed parts, for tests and keelctl. */
keel_ledger *keel_agent_ledger(const keel_agent *agent);
const keel_toolbox *keel_agent_toolbox(const keel_agent *agent);
const keel_llm_config *keel_agent_llm_config(const keel_agent *agent);

/* The tool.<name> activity; user_data is the keel_agent's per-tool binding. */
int keel_tool_activity(keel_activity_ctx *ctx, const char *input_json, char **result_json,
                       void *user_data);

#endif
