/*
 * approval - a human approval step ("keel.Approval"), which procurement starts as a child
 * workflow: named approvers decide, with durable timers that remind them, escalate to a delegate
 * and finally let the request expire.
 *
 * Input (JSON):
 *   {"subject": "PO for 3 laptops, $4,200",   what is approved (required)
 *    "requester": "cy",                       who asks; may not decide (required)
 *    "approvers": ["ana", "bo"],              who may decide, 1..8 distinct names (required)
 *    "required": 1,                           approvals needed, 1..len(approvers) (default 1)
 *    "delegate": "dee",                       joins the approvers on escalation (optional)
 *    "remind_after": 86400000,                ms between reminders (default 24 h)
 *    "escalate_after": 172800000,             ms until escalation (default 48 h)
 *    "expire_after": 604800000}               ms until the request expires (default 7 days)
 * Times are whole milliseconds from 1 s to 366 days, counted from the start of the run. Unknown
 * fields are refused (a misspelt "remind_afer" would otherwise silently take the default). Bad
 * input fails the run with type "BadInput" (non-retryable) and a message naming the problem.
 *
 * Decisions: signals "approve" / "reject" with {"approver": "ana", "comment": "ok"} (comment
 * optional), or update "decide" with {"approver": "ana", "decision": "approve"|"reject",
 * "comment": "..."}, whose result is the status after the decision (see the "status" query). The
 * update's validator refuses, with the reason, a decision by someone who may not decide (not an
 * approver; the delegate before escalation; the requester), a second decision by the same
 * approver, a malformed payload, or any decision once the request is decided. A signal refused
 * for the same reasons is ignored and noted as the status's "last_problem".
 *
 * One rejection rejects; `required` distinct approvals approve. A reminder every remind_after
 * while waiting (at most 50) counts in the status and the memo {"reminders": n}; escalation adds
 * the delegate to the approvers; expiry completes the run with decision "expired" (a business
 * outcome, not a failure). A cancellation request ends the run as Canceled.
 *
 * Result: {"decision": "approved"|"rejected"|"expired", "approvals": [{"approver", "comment"}],
 *          "rejected_by": {"approver", "comment"} | null, "reminders": n, "escalated": bool}
 *
 * Search attribute ProcurementStage (Keyword, registered by tools/devstack from
 * tools/search-attributes.txt; a namespace without it fails the run's workflow tasks):
 * "approval" while waiting, then "approved", "rejected", "expired" or "cancelled".
 */
#ifndef KEEL_WORKFLOWS_APPROVAL_H
#define KEEL_WORKFLOWS_APPROVAL_H

#include "keel/workflow.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_APPROVAL_TYPE          "keel.Approval"
#define KEEL_APPROVAL_MAX_APPROVERS 8

extern const keel_workflow_type keel_approval_workflow;

#ifdef __cplusplus
}
#endif

#endif
