#!/usr/bin/env python3
"""Write a JSON history of a chain of N activities (keel.ReplayBenchChain), for replay_bench.c.

Each step: ActivityTaskScheduled, -Started, -Completed, then a workflow task (scheduled, started,
completed); 300 activities give 1,805 events. Usage: gen_history.py N OUT.json
"""
import base64, json, sys

n, out = int(sys.argv[1]), sys.argv[2]
tq = {"name": "replay-bench", "kind": "TASK_QUEUE_KIND_NORMAL"}
def b64(s): return base64.b64encode(s.encode()).decode()
def payloads(obj):
    return {"payloads": [{"metadata": {"encoding": b64("json/plain")}, "data": b64(json.dumps(obj, separators=(",", ":")))}]}
events = []
def ev(kind, attrs_name, attrs):
    eid = len(events) + 1
    events.append({"eventId": str(eid), "eventTime": "2026-12-01T10:00:%02d.%09dZ" % (eid % 60, eid * 7919 % 10**9),
                   "eventType": "EVENT_TYPE_" + kind, "taskId": str(1048576 + eid), attrs_name: attrs})
    return eid
ev("WORKFLOW_EXECUTION_STARTED", "workflowExecutionStartedEventAttributes", {
    "workflowType": {"name": "keel.ReplayBenchChain"}, "taskQueue": tq, "input": payloads({"steps": n}),
    "workflowTaskTimeout": "10s", "originalExecutionRunId": "0193a0c1-2b3c-7d4e-8f90-123456789abc",
    "identity": "1@bench", "firstExecutionRunId": "0193a0c1-2b3c-7d4e-8f90-123456789abc", "attempt": 1,
    "firstWorkflowTaskBackoff": "0s", "workflowId": "replay-bench-chain"})
def wft():
    s = ev("WORKFLOW_TASK_SCHEDULED", "workflowTaskScheduledEventAttributes", {"taskQueue": tq, "startToCloseTimeout": "10s", "attempt": 1})
    t = ev("WORKFLOW_TASK_STARTED", "workflowTaskStartedEventAttributes", {"scheduledEventId": str(s), "identity": "1@bench", "requestId": "7433c6b8-3647-43a6-83fb-7d8fdd3d47d0", "historySizeBytes": str(400 * s)})
    return ev("WORKFLOW_TASK_COMPLETED", "workflowTaskCompletedEventAttributes", {"scheduledEventId": str(s), "startedEventId": str(t), "identity": "1@bench"})
done = wft()
for i in range(1, n + 1):
    s = ev("ACTIVITY_TASK_SCHEDULED", "activityTaskScheduledEventAttributes", {
        "activityId": str(i), "activityType": {"name": "bench.step"}, "taskQueue": tq, "input": payloads({"step": i, "note": "step input"}),
        "scheduleToCloseTimeout": "0s", "scheduleToStartTimeout": "0s", "startToCloseTimeout": "30s", "heartbeatTimeout": "0s",
        "workflowTaskCompletedEventId": str(done),
        "retryPolicy": {"initialInterval": "1s", "backoffCoefficient": 2, "maximumInterval": "100s", "maximumAttempts": 3}})
    t = ev("ACTIVITY_TASK_STARTED", "activityTaskStartedEventAttributes", {"scheduledEventId": str(s), "identity": "1@bench", "requestId": "7f95b652-96ec-42e2-9b46-bee7d1e9108d", "attempt": 1})
    ev("ACTIVITY_TASK_COMPLETED", "activityTaskCompletedEventAttributes", {"result": payloads({"step": i, "ok": True, "value": i * 3.5, "items": ["a", "b", "c"]}), "scheduledEventId": str(s), "startedEventId": str(t), "identity": "1@bench"})
    done = wft()
ev("WORKFLOW_EXECUTION_COMPLETED", "workflowExecutionCompletedEventAttributes", {"result": payloads({"steps": n}), "workflowTaskCompletedEventId": str(done)})
json.dump({"events": events}, open(out, "w"), indent=2)
print(out, len(events), "events")
