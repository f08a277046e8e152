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
 *
 * Workflow tasks: up to max_concurrent_workflow_tasks of them are in the worker's hands at once
 * (slots: a poll in flight, a task waiting for an executor, a task being worked on, or its answer
 * on the way to the server), worked on by workflow_task_threads executor threads. A poller
 * reserves a free slot before it polls, so a task never waits in the worker while its
 * schedule-to-start clock runs, and one run is worked on by one thread at a time. An executor
 * sends a task's answer (RespondWorkflowTaskCompleted) and goes on at once to the next task; when
 * the answer comes back the task is finished (eager activities, the run's next task if the server
 * returned one, the cache: on the transport's network thread when the answer and the task were
 * small and the answer brings no next task, else on an executor) and only then are the slot and the
 * run given back. Failed tasks (RespondWorkflowTaskFailed), legacy query tasks, history pages and
 * local activities still hold an executor thread while they wait on the server or on the activity.
 * The number of polls in flight scales between the configured bounds with what the server suggests
 * (poller autoscaling, docs/operations.md). The sticky and normal queues are polled at once, the
 * sticky one preferred while it has a backlog. An activity the workflow schedules on the worker's
 * own queue is started at once on a free activity thread when the server allows it (eager activity
 * dispatch: the server's system.enableActivityEagerExecution).
 */
#ifndef KEEL_WORKER_H
#define KEEL_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/activity.h"
#include "keel/client.h"
#include "keel/deployment.h"
#include "keel/error.h"
#include "keel/metrics.h"
#include "keel/workflow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_worker keel_worker;

/* 2: the deployment fields (deployment_name ... n_versioning_overrides) were added.
 * 3: the slot, poller and eager fields (max_concurrent_workflow_tasks ... disable_eager_activities)
 *    were added.
 * 4: workflow_task_threads was added; max_concurrent_workflow_tasks now counts the tasks in hand
 *    (answers in flight included), no longer the executor threads, and its default went from 8
 *    to 64. */
#define KEEL_WORKER_OPTIONS_VERSION 4

#define KEEL_DEFAULT_WORKFLOW_POLLERS          2
#define KEEL_DEFAULT_MAX_CONCURRENT_ACTIVITIES 8
#define KEEL_DEFAULT_MAX_CACHED_WORKFLOWS      256
/* 64 tasks in hand: a burst of signals to cached runs finds a sticky poll for each while earlier
 * answers are still on their way (the official SDKs default to far more: 1000 in Go). Each slot
 * costs about 1.5 KB of memory, no thread. */
#define KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS 64
/* 4 executor threads: a task's own work takes well under a millisecond (the answer's round trip
 * is no longer on the thread), so a few threads keep up with many slots; more only help while
 * local activities or history pages hold threads. */
#define KEEL_DEFAULT_WORKFLOW_TASK_THREADS 4
#define KEEL_DEFAULT_WORKFLOW_POLLERS_MAX  4
#define KEEL_DEFAULT_ACTIVITY_POLLERS      2
#define KEEL_DEFAULT_STICKY_TIMEOUT_MS     10000
/* At most this many ScheduleActivityTask commands of one workflow task ask for eager dispatch
 * (the official SDKs' limit). */
#define KEEL_MAX_EAGER_ACTIVITIES_PER_TASK 3

/* At most this many versioning overrides (docs/limits.md). A deployment name and build id are
 * checked as keel_deployment_version_check() (keel/deployment.h) says. */
#define KEEL_MAX_VERSIONING_OVERRIDES 64

/* One workflow type's versioning behaviour, replacing the type's own. */
typedef struct keel_versioning_override {
    const char *workflow_type;
    keel_versioning_behavior behavior; /* PINNED or AUTO_UPGRADE */
} keel_versioning_override;

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
    /* Worker Deployments (Temporal's Worker Versioning; docs/operations.md, "Rolling out new
     * workflow code"). NULL deployment_name: an unversioned worker, as before. With a name, the
     * worker is version deployment_name + build_id (both required, see the caps above), sent
     * with every poll, answer and heartbeat. use_versioning makes it a versioned worker: the
     * server routes to it only what the deployment's current or ramping version (or a run pinned
     * to it) gets, and every workflow type then needs a behaviour: its own, an override, or
     * default_versioning_behavior. Without use_versioning the version is only reported. */
    const char *deployment_name;
    const char *build_id;
    bool use_versioning;
    keel_versioning_behavior default_versioning_behavior; /* UNSPECIFIED: none */
    /* Optional: behaviours by workflow type name, over the types' own (borrowed, like the
     * types; at most KEEL_MAX_VERSIONING_OVERRIDES, each naming a registered type). */
    const keel_versioning_override *versioning_overrides;
    size_t n_versioning_overrides;
    /* Version 3. Each 0 takes its default. */
    /* Workflow tasks in the worker's hands at once, 2-512 (the official SDKs'
     * MaxConcurrentWorkflowTaskExecutionSize / max_outstanding_workflow_tasks): polls in flight,
     * tasks waiting for an executor thread, being worked on, and answers on their way to the
     * server. KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS. (Up to version 3 this was also the
     * number of executor threads.) */
    int max_concurrent_workflow_tasks;
    /* Workflow polls in flight: workflow_pollers at the start, then between min and max as the
     * server's poller scaling decisions say, never more than the free slots. min default 2 (one
     * sticky and one normal poll when runs are cached), max default
     * max(KEEL_DEFAULT_WORKFLOW_POLLERS_MAX, workflow_pollers); min <= workflow_pollers <= max
     * <= 64. */
    int workflow_pollers_min, workflow_pollers_max;
    /* Activity polls in flight, the same way: initial KEEL_DEFAULT_ACTIVITY_POLLERS (at most
     * max_concurrent_activities), min 1, max max_concurrent_activities. Activity threads that do
     * not poll stay free for eager activities. */
    int activity_pollers, activity_pollers_min, activity_pollers_max;
    /* How long the server holds a cached run's task on this worker's sticky queue before it
     * hands it to the normal queue, where it is rebuilt from the full history, 1000-60000 ms:
     * KEEL_DEFAULT_STICKY_TIMEOUT_MS. */
    int64_t sticky_schedule_to_start_timeout_ms;
    /* Never ask for eager activity dispatch. */
    bool disable_eager_activities;
    /* Version 4. */
    /* Workflow task executor threads, 1-512 and at most max_concurrent_workflow_tasks (0:
     * KEEL_DEFAULT_WORKFLOW_TASK_THREADS, or max_concurrent_workflow_tasks when that is less).
     * They work on tasks, not on answers in flight: see the comment at the top. */
    int workflow_task_threads;
} keel_worker_options;

/* The defaults, as a static initializer: the same values keel_worker_options_init() sets. */
#define KEEL_WORKER_OPTIONS_INIT                                                                   \
    {                                                                                              \
        .version = KEEL_WORKER_OPTIONS_VERSION, .workflow_pollers = KEEL_DEFAULT_WORKFLOW_POLLERS, \
        .max_concurrent_activities = KEEL_DEFAULT_MAX_CONCURRENT_ACTIVITIES,                       \
        .max_cached_workflows = KEEL_DEFAULT_MAX_CACHED_WORKFLOWS,                                 \
        .max_concurrent_workflow_tasks = KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS,               \
        .default_versioning_behavior = KEEL_VERSIONING_UNSPECIFIED                                 \
    }

int keel_worker_options_init(keel_worker_options *opts, unsigned int version);

/* "pinned", "auto-upgrade" (or "auto_upgrade") and "unspecified", in any case, to the behaviour;
 * KEEL_EINVAL for anything else. */
int keel_versioning_behavior_parse(const char *text, keel_versioning_behavior *out);

/* "pinned", "auto-upgrade" or "unspecified" (static storage). */
const char *keel_versioning_behavior_name(keel_versioning_behavior b);

/* A list of overrides from text like "keel.Procurement=auto-upgrade,keel.Approval=pinned"
 * (spaces around the parts are ignored; an empty text is an empty list). On success *out is a
 * new array of *n entries whose strings it owns; free it with keel_versioning_overrides_free().
 * KEEL_EINVAL, with the part that is wrong, for a bad entry, a type named twice or more than
 * KEEL_MAX_VERSIONING_OVERRIDES entries. */
int keel_versioning_overrides_parse(const char *text, keel_versioning_override **out, size_t *n,
                                    keel_error *err);
void keel_versioning_overrides_free(keel_versioning_override *list, size_t n);

/* The behaviour a worker with these options sends for workflow type t: an override naming it,
 * else t's own, else the default; UNSPECIFIED on a worker without use_versioning. */
keel_versioning_behavior keel_worker_options_behavior(const keel_worker_options *opts,
                                                      const keel_workflow_type *t);

/* A worker on client (borrowed: it must outlive the worker). The types are borrowed too. */
int keel_worker_new(keel_worker **out, keel_client *client, const keel_worker_options *opts,
                    keel_error *err);

/* Start polling. Fails if the threads cannot be started. A started worker with workflows also
 * offers its free workflow-task slots to eager starts made on the same keel_client
 * (keel_workflow_start_options.eager) until keel_worker_stop(); the client borrows the worker for
 * that, so free the worker before the client. */
int keel_worker_start(keel_worker *w, keel_error *err);

/* Stop polling, let the workflow tasks in progress finish (their answers in flight included), tell
 * the server the sticky queue is gone (ShutdownWorker, with the final heartbeat), then let running
 * activities finish within shutdown_grace_ms, join the threads. Safe to call twice. */
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
    /* Slots and pollers: activities the server handed over in a workflow task's answer (eager),
     * workflow tasks that came in an answer instead of a poll, polls made, and the poll targets
     * now and at their highest (poller autoscaling). */
    uint64_t activities_eager;
    uint64_t workflow_tasks_inline;
    uint64_t workflow_polls, activity_polls;
    int workflow_pollers, workflow_pollers_peak;
    int activity_pollers, activity_pollers_peak;
    /* First workflow tasks that came in an eager start's answer (execution.h,
     * keel_workflow_start_options.eager) instead of a poll. */
    uint64_t workflow_tasks_eager;
    /* The most workflow task answers on their way to the server at once (asynchronous answers:
     * it can exceed the executor threads), and the executor threads. */
    int workflow_answers_peak;
    int workflow_task_threads;
} keel_worker_stats;

void keel_worker_get_stats(keel_worker *w, keel_worker_stats *out);

#ifdef __cplusplus
}
#endif

#endif
