/*
 * activities/sandbox.h - temporary cloud sandboxes as tools, for the sandbox-request example of
 * the agent workflow (keel.AgentTask; docs/workflows/agent-task.md).
 *
 * - get_sandbox_policy (read): what a cost centre's sandboxes must respect: allowed regions,
 *   required tags, the largest budget cap and the longest time to live.
 * - check_sandbox_budget (read): whether a budget cap fits what the cost centre has left for
 *   sandboxes (the caps of its live sandboxes count against its sandbox budget).
 * - deploy_sandbox (high-impact): create a sandbox, once per call->idempotency_key. A request
 *   the policy or the budget forbids is refused (KEEL_EINVAL, non-retryable ToolRefused, the
 *   message naming the rule). A region without capacity is an answer, not an error:
 *   {"deployed": false, "reason": "capacity", "region", "message", "alternatives": [...]}, so
 *   that the model can try another allowed region.
 *
 * Tables: activities/migrations/003_sandbox.sql; demo data at the end of activities/seed.sql
 * (us-east-1 is at capacity).
 */
#ifndef KEEL_ACTIVITIES_SANDBOX_H
#define KEEL_ACTIVITIES_SANDBOX_H

#include <stddef.h>

#include "activities/tools.h"

extern const keel_tool keel_sandbox_tools[];
extern const size_t keel_sandbox_tools_count;

#endif
