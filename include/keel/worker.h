/*
 * keel/worker.h - a worker: polls a task queue and runs the workflows and activities registered
 * on it.
 *
 * Lifecycle: keel_worker_new() with the types to serve, keel_worker_start() starts its threads
 * and returns, keel_worker_stop() stops polling, lets running tasks finish and joins the threads,
 * keel_worker_free(). Runs stay cached between workflow tasks, and the server sends a cached
 * run's tasks to this worker's own sticky queue with only the new events; a run not in the cache
 * is rebuilt from its full history. Activities run on max_concurrent_activities threads, each
 * polling only when it is free to run what it gets.
 */
#ifndef KEEL_WORKER_H
#define KEEL_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "keel/activity.h"
#include "keel/client.h"
#include "keel/error.h"
#include "keel/metrics.h"
#include "keel/workflow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_worker keel_worker;

#define KEEL_WORKER_OPTIONS_VERSION 1

#define KEEL_DEFAULT_WORKFLOW_POLLERS          2
#define KEEL_DEFAULT_MAX_CONCURRENT_ACTIVITIES 8
#define KEEL_DEFAULT_MAX_CACHED_WORKFLOWS      256

typedef struct keel_worker_options {
    unsigned int version;
    const char *task_queue; /* required */
    const keel_workflow_type *const *workflows;
    size_t n_workflows;
    const keel_activity_type *activities;
    size_t n_activities;
    int workflow_pollers;          /* KEEL_DEFAULT_WORKFLOW_POLLERS */
    int max_concurrent_activities; /* KEEL_DEFAULT_MAX_CONCURRENT_ACTIVITIES */
    const char *identity;          /* default: the client's identity */
    /* Runs kept between tasks (sticky execution): a cached run's next task carries only new
     * events. KEEL_DEFAULT_MAX_CACHED_WORKFLOWS; 0 replays every task from the full history. */
    int max_cached_workflows;
    /* How long keel_worker_stop() lets running activities finish before it hands them back:
     * their heartbeats then answer KEEL_ECANCELLED and each attempt is reported as a retryable
     * WorkerShutdown failure, so the server retries it elsewhere. 0: 10 s; negative: no limit.
     * (Workflow tasks in progress always finish: they take milliseconds.) */
    int64_t shutdown_grace_ms;
    /* How often the worker tells the server it is alive and how loaded it is (worker heartbeats:
     * the Web UI's Workers pages, ListWorkers), 1000-60000 ms. 0: 60 s, the official SDKs'
     * default; negative: never (the final heartbeat at stop is still sent). */
    int64_t heartbeat_interval_ms;
    /* Where the worker records Temporal's SDK metrics (docs/observability.md), and its client's
     * transport its RPC metrics; NULL: none. Borrowed: it must outlive the worker and the client.
     * Set it before the client is used from other threads. */
    keel_metrics *metrics;
} keel_worker_options;

/* The defaults, as a static initializer: the same values keel_worker_options_init() sets. */
#define KEEL_WORKER_OPTIONS_INIT                                                                   \
    {                                                                                              \
        .version = KEEL_WORKER_OPTIONS_VERSION, .workflow_pollers = KEEL_DEFAULT_WORKFLOW_POLLERS, \
        .max_concurrent_activities = KEEL_DEFAULT_MAX_CONCURRENT_ACTIVITIES,                       \
        .max_cached_workflows = KEEL_DEFAULT_MAX_CACHED_WORKFLOWS                                  \
    }

int keel_worker_options_init(keel_worker_options *opts, unsigned int version);

/* A worker on client (borrowed: it must outlive the worker). The types are borrowed too. */
int keel_worker_new(keel_worker **out, keel_client *client, const keel_worker_options *opts,
                    keel_error *err);

/* Start polling. Fails if the threads cannot be started. */
int keel_worker_start(keel_worker *w, keel_error *err);

/* Stop polling, let the workflow tasks in progress finish, tell the server the sticky queue is
 * gone (ShutdownWorker, with the final heartbeat), then let running activities finish within
 * shutdown_grace_ms, join the threads. Safe to call twice. */
void keel_worker_stop(keel_worker *w);

/* Stop if running, then free. NULL is allowed. */
void keel_worker_free(keel_worker *w);

typedef struct keel_worker_stats {
    uint64_t workflow_tasks_completed;
    uint64_t workflow_tasks_failed;
    uint64_t activities_completed;
    uint64_t activities_failed;
    uint64_t cache_hits;      /* tasks answered from a cached run */
    uint64_t cache_misses;    /* tasks that rebuilt their run from the full history */
    uint64_t cache_evictions; /* runs pushed out of a full cache */
    uint64_t cached_runs;     /* runs in the cache now */
} keel_worker_stats;

void keel_worker_get_stats(keel_worker *w, keel_worker_stats *out);

#ifdef __cplusplus
}
#endif

#endif
