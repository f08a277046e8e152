/*
 * procurement - a purchase request from free text to purchase order ("keel.Procurement"); the
 * whole behaviour, with its state diagram, is in docs/workflows/procurement.md.
 *
 * Input (JSON; unknown fields are refused):
 *   {"request": "We need 4 laptops ...",   free text, 1..4000 bytes (required without
 *                                          "requisition")
 *    "requester": "alex@example.com",      who asks; never approves (required)
 *    "cost_center": "CC-1001",             whose budget pays (required)
 *    "requisition_id": "REQ-000001",       an existing pending requisition (needs
 *                                          "requisition"); without it the run records one
 *    "requisition": {"category", "items": [{"description", "quantity", "unit_price_usd"}],
 *                    "needed_by": "YYYY-MM-DD", "justification"},   skips the intake model
 *    "report_to": "batch-id",              a workflow to signal "procurement_waiting" when the
 *                                          run starts waiting for approvers
 *    "options": {"remind_after_ms", "escalate_after_ms", "expire_after_ms",
 *                "intake_retries"}}        defaults 24 h, 48 h, 7 days, 1
 *
 * Stages (the status query's "stage" and the ProcurementStage search attribute): intake,
 * intake_review (a human provides the requisition by the "requisition" signal), budget, sourcing,
 * recommendation, approval, ordering, then ordered | rejected | expired | cancelled | failed.
 * Search attributes AmountUSD, CostCenter and Requester are set as soon as they are known.
 *
 * Decisions: signals "approve" / "reject" {"approver", "comment", "accept_recommendation"}, or
 * the update "decide" {"approver", "decision": "approve"|"reject", "comment",
 * "accept_recommendation"}, whose validator refuses the requester, anyone the approval chain is
 * not waiting for, repeated decisions and malformed payloads; its result is the status.
 *
 * Result: {"outcome": "ordered"|"rejected"|"expired", "reason", "po_number", "vendor_id",
 *          "vendor_name", "amount_usd", "approvers", "requisition_id", "tokens", "cost_usd",
 *          "model_calls"}. A cancelled run ends Canceled; bad input fails with BadInput; tools
 * that fail for good fail the run with ProcurementFailed.
 *
 * Activities it schedules (on its own task queue): llm.chat (model_tier small, then strong),
 * tool.create_requisition, tool.set_requisition_status, tool.check_budget, tool.list_vendors,
 * tool.request_quotes, tool.get_approvers, tool.create_purchase_order, tool.notify.
 */
#ifndef KEEL_WORKFLOWS_PROCUREMENT_H
#define KEEL_WORKFLOWS_PROCUREMENT_H

#include "keel/workflow.h"

#define KEEL_PROCUREMENT_TYPE "keel.Procurement"

extern const keel_workflow_type keel_procurement_workflow;

#endif
