/*
 * agent_task - a generic tool-using agent with guard rails ("keel.AgentTask"): a goal, the tools
 * this run may use, a model. The loop: a model turn (llm.chat) -> its tool calls, checked by the
 * activity against each tool's schema -> one tool.<name> activity per valid call -> the results
 * back to the model as tool messages, until the model answers without calling a tool.
 * docs/workflows/agent-task.md has the state diagram and the sandbox-request example.
 *
 * Input (JSON object; unknown fields are refused):
 *   goal                   what the agent is asked to do (required, 1-8000 bytes)
 *   system                 a system prompt (optional)
 *   tools                  [names]: the tools the model is offered (1-32; each must be granted to
 *                          keel.AgentTask in the worker, or llm.chat refuses the turn)
 *   approval_required      [names] of `tools` whose calls wait for a person (approve / reject)
 *   approvers              [names] who may decide on those calls (optional: anyone)
 *   model | model_tier     which model (optional; "small" | "strong": the worker's KEEL_MODEL /
 *                          KEEL_MODEL_STRONG)
 *   max_turns              model calls before the run hands off to a person (default 10)
 *   max_total_tokens       token budget for the whole task, all runs (optional)
 *   max_cost_usd           dollar budget (optional; models without a price count 0 and the
 *                          result says cost_known: false)
 *   max_tokens_per_turn    passed to llm.chat as max_tokens (optional)
 *   continue_as_new_after  model calls per run before it continues as new (default 20; 0: only
 *                          when the server suggests it). The conversation id, the counters and
 *                          the messages not yet sent travel in "carry", which only the workflow
 *                          itself writes.
 *
 * The conversation lives in the ledger as "agent/<workflow id>" (llm.chat's claim check): each
 * model call sends only the new messages.
 *
 * Signals:
 *   approve   {"by", "arguments"?: {...}, "comment"?}  run the gated call; "arguments" members
 *             replace those of the model's proposal (the tool activity validates the result
 *             again; refused arguments go back to the approver, the reason in the status,
 *             and the next approve starts again from the proposal)
 *   reject    {"by", "reason"?}  the model hears the call was rejected, and goes on
 *   resume    {"by", "turns"?, "message"?}  after the turn limit: grant more turns (default
 *             max_turns) and optionally add a person's message for the model
 *   take_over {"by", "answer"}  after the turn limit: a person answers; the run completes
 *
 * Query "status": where the run stands (JSON); the Web UI's stack trace shows the describe line.
 *
 * Result: {"outcome": "answered" | "taken_over", "answer", "taken_over_by", "turns", "runs",
 *          "tool_calls", "invalid_tool_calls", "approvals", "rejections",
 *          "usage": {"total_tokens", "cost_usd", "cost_known"}, "conversation"}
 * Failures: BadInput, BudgetExhausted, ModelFailed (all non-retryable).
 */
#ifndef KEEL_WORKFLOWS_AGENT_TASK_H
#define KEEL_WORKFLOWS_AGENT_TASK_H

#include "keel/workflow.h"

#define KEEL_AGENT_TASK_TYPE "keel.AgentTask"

extern const keel_workflow_type keel_agent_task_workflow;

#endif
