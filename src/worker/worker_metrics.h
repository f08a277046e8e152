/*
 * worker_metrics (internal) - the worker's metrics, named, typed and labelled as Temporal's SDK
 * metrics reference has them (docs/observability.md), recorded through keel/metrics.h.
 *
 * A NULL keel_worker_metrics (metrics off) is accepted by every function, which then does
 * nothing. Everything is safe from any thread. Latencies are in seconds; time stamps in ms since
 * the epoch (0: unknown, nothing is observed).
 */
#ifndef KEEL_WORKER_METRICS_H
#define KEEL_WORKER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/metrics.h"

typedef struct keel_worker_metrics keel_worker_metrics;

/* NULL when m is NULL or out of memory. namespace and task_queue are copied. */
keel_worker_metrics *keel_worker_metrics_new(keel_metrics *m, const char *namespace,
                                             const char *task_queue);
void keel_worker_metrics_free(keel_worker_metrics *wm);

/* Seconds on a monotonic clock, for latencies; ms since the epoch, for the server's stamps. */
double keel_wm_now_s(void);
int64_t keel_wm_wall_ms(void);

/* Pollers and slots as the worker starts them. */
/* The workflow pollers gauge (temporal_num_pollers) now: the poll target split into normal and
 * sticky polls. */
void keel_wm_pollers(keel_worker_metrics *wm, int wf_pollers, int sticky_pollers);

/* Pollers (the initial poll targets) and slots (executor and activity threads) are separate:
 * a slot is free whether or not a poll waits for it. */
void keel_wm_started(keel_worker_metrics *wm, int wf_pollers, int sticky_pollers,
                     int activity_pollers, int wf_slots, int activity_slots);

/* A workflow poll's answer: a task, or an empty poll. */
void keel_wm_wf_poll(keel_worker_metrics *wm, bool got_task);
void keel_wm_activity_poll(keel_worker_metrics *wm, bool got_task);

/* A workflow task begins (slot taken; schedule-to-start from the server's stamps). */
void keel_wm_wft_begin(keel_worker_metrics *wm, const char *workflow_type, int64_t scheduled_ms,
                       int64_t started_ms);
/* Sticky cache lookup for the task; replay_s >= 0: the run was rebuilt from history in that
 * time. */
void keel_wm_wft_cache(keel_worker_metrics *wm, const char *workflow_type, bool hit,
                       double replay_s);
/* The task ends: its execution time; failure_reason NULL when it completed, else
 * "NonDeterminismError" or "WorkflowError". Updates the sticky cache gauges from the cache's
 * size and eviction count. */
void keel_wm_wft_end(keel_worker_metrics *wm, const char *workflow_type, double execution_s,
                     const char *failure_reason, size_t cache_size, uint64_t cache_evictions);
/* The run closed with this command type (temporal.api.enums.v1.CommandType): completed,
 * failed, canceled or continued as new; run_started_ms for the end-to-end latency. */
void keel_wm_workflow_closed(keel_worker_metrics *wm, const char *workflow_type, int command_type,
                             int64_t run_started_ms);

/* Activities: begin (slot taken, schedule-to-start of this attempt), end with the outcome. */
typedef enum keel_wm_activity_outcome {
    KEEL_WM_ACTIVITY_OK,
    KEEL_WM_ACTIVITY_FAILED,
    KEEL_WM_ACTIVITY_CANCELED,
    KEEL_WM_ACTIVITY_ASYNC, /* completed elsewhere: no outcome here */
} keel_wm_activity_outcome;
void keel_wm_activity_begin(keel_worker_metrics *wm, const char *activity_type,
                            const char *workflow_type, int64_t attempt_scheduled_ms,
                            int64_t started_ms);
void keel_wm_activity_end(keel_worker_metrics *wm, const char *activity_type,
                          const char *workflow_type, double execution_s,
                          keel_wm_activity_outcome outcome, int64_t first_scheduled_ms);

#endif
