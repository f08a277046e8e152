/*
 * batch - scheduled batch procurement ("keel.BatchProcurement"): load the pending requisitions,
 * run one procurement child workflow for each with bounded concurrency, and return a report of
 * what became of them. A Temporal Schedule starts it (keelctl schedule create --cron ...
 * --overlap skip); docs/workflows/batch-procurement.md has the state diagram.
 *
 * Input (JSON object, every field optional; unknown fields are refused):
 *   {"limit": 50,                   requisitions one run loads, 1..500
 *    "max_concurrent": 3,           children running at once, 1..20
 *    "filter": {"cost_center": "CC-1001", "requester": "alex@example.com"},
 *                                   only these requisitions (either, both or neither member)
 *    "child_type": "keel.Procurement",   the child workflow type (tests use their own)
 *    "child_options": {...},        passed to every child as its "options"
 *    "carry": {...}}                the report of earlier runs: set by continue-as-new only
 * Bad input fails the run with type BadInput (non-retryable), naming the problem.
 *
 * What a run does:
 *   1. tool.list_pending_requisitions {"limit", "cost_center", "requester"}: oldest first.
 *   2. For each, at most max_concurrent at a time: tool.set_requisition_status in_progress (so
 *      that no later run lists it again), then the child "procurement-<requisition id>" (parent
 *      close policy abandon: a child waiting for people outlives the batch) with input
 *      {"requester", "cost_center", "requisition_id", "requisition": {"category", "items":
 *      [{"description", "quantity", "unit_price_usd"}], "needed_by", "justification"},
 *      "report_to": <this workflow's id>, "options": child_options}.
 *   3. A child that starts waiting for approvers signals "procurement_waiting" {"workflow_id",
 *      "requisition_id", "stage", "amount_usd"}: it counts as waiting and frees its slot (the
 *      batch never waits days for people). One that completes: outcome "ordered" is approved,
 *      "rejected" or "expired" rejected. One that fails, times out, is terminated or cancelled
 *      is failed (and its requisition set to status failed); one already running under that id
 *      (AlreadyStarted) is failed and left alone.
 *   4. When every requisition is settled: if the run loaded `limit` of them (there may be more)
 *      it continues as new, carrying the report; otherwise it completes with the report.
 *
 * Result (the report of every run of the batch):
 *   {"approved": [{"requisition_id", "workflow_id", "po_number", "amount_usd"}],
 *    "rejected": [{"requisition_id", "workflow_id", "reason", "amount_usd"}],
 *    "waiting":  [{"requisition_id", "workflow_id", "stage", "amount_usd"}],
 *    "failed":   [{"requisition_id", "workflow_id", "error", "amount_usd"}],
 *    "counts": {"approved", "rejected", "waiting", "failed", "total"},
 *    "runs": n, "omitted": n}
 * Lists hold at most KEEL_BATCH_MAX_REPORTED entries in all (the counts count every one;
 * "omitted" says how many were left out), so that the report stays a small payload.
 *
 * Query "status": {"stage", "run", "limit", "max_concurrent", "filter", "child_type", "listed",
 * "queued", "running": [workflow ids], "peak_running", "report", "last_problem"}. The Web UI's
 * stack trace shows where the run stands and what it waits on. A cancellation request ends the
 * run as Canceled with the status as details; children already started go on.
 */
#ifndef KEEL_WORKFLOWS_BATCH_H
#define KEEL_WORKFLOWS_BATCH_H

#include "keel/workflow.h"

#define KEEL_BATCH_TYPE           "keel.BatchProcurement"
#define KEEL_BATCH_MAX_LIMIT      500
#define KEEL_BATCH_MAX_CONCURRENT 20
#define KEEL_BATCH_MAX_REPORTED   2000

extern const keel_workflow_type keel_batch_workflow;

#endif
