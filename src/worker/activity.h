/*
 * activity (internal) - the activity executor threads of a worker.
 *
 * Each thread polls the task queue only when it is free, runs what it gets and reports the
 * outcome, so max_concurrent_activities threads bound both the work in progress and the polls.
 */
#ifndef KEEL_WORKER_ACTIVITY_H
#define KEEL_WORKER_ACTIVITY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "keel/activity.h"
#include "proto/proto.h"
#include "transport/transport.h"
#include "worker/worker_metrics.h"

/* What one executor thread needs; shared read-only except the counters. */
typedef struct keel_activity_pool {
    keel_transport *transport;
    const char *namespace;
    const char *task_queue;
    const char *identity;
    const char *instance_key; /* the worker's, sent with polls (heartbeat.h) */
    const keel_activity_type *types;
    size_t n_types;
    atomic_bool *stopping;
    atomic_bool abandon; /* the shutdown grace is over: running activities hand back */
    atomic_int busy;     /* activities running now */
    atomic_uint_fast64_t completed, failed;
    atomic_int_fast64_t poll_ms; /* wall clock of the last poll that brought a task */
    keel_worker_metrics *wm;     /* NULL: metrics off */
    /* The worker's deployment version, sent with polls and answers (NULL: none). Borrowed. */
    Temporal__Api__Deployment__V1__WorkerDeploymentOptions *deployment_options;
} keel_activity_pool;

/* The thread's argument: the pool and the thread's own poll-cancel handle. */
typedef struct keel_activity_thread_arg {
    keel_activity_pool *pool;
    keel_call_cancel *cancel;
} keel_activity_thread_arg;

/* pthread entry: poll, run, report, until *pool->stopping. */
void *keel_activity_thread(void *arg);

/*
 * An activity context outside any worker, for tests and the fuzz targets (tests/fuzz/): an
 * activity function runs against it as it would in a worker, with the given workflow type and
 * activity id (copied; the other ids are ""), attempt 1. Heartbeats go nowhere and return
 * KEEL_OK. Free with keel_activity_offline_free (NULL is allowed); NULL when out of memory.
 */
keel_activity_ctx *keel_activity_offline_new(const char *workflow_type, const char *activity_id);
void keel_activity_offline_free(keel_activity_ctx *ctx);

/* The failure type the activity reported (keel_activity_fail*), or NULL when it reported none;
 * its retryability and next retry delay through the pointers (each may be NULL). Borrowed. */
const char *keel_activity_offline_failure(const keel_activity_ctx *ctx, bool *non_retryable,
                                          int64_t *next_retry_delay_ms);

/* A context for a local activity's attempt (local_activity.c): the run's ids, the attempt, and
 * a flag whose setting cancels it (keel_activity_cancel_requested and heartbeats report it). The
 * strings are copied; free with keel_activity_offline_free. NULL when out of memory. */
keel_activity_ctx *keel_activity_local_new(const char *namespace, const char *workflow_type,
                                           const char *workflow_id, const char *run_id,
                                           const char *activity_type, const char *activity_id,
                                           int32_t attempt, atomic_bool *cancel);

/* keel_activity_offline_failure() and the failure's message (borrowed). */
const char *keel_activity_local_failure(const keel_activity_ctx *ctx, const char **message,
                                        bool *non_retryable, int64_t *next_retry_delay_ms);

#endif
