/*
 * activity (internal) - the activity executor threads of a worker.
 *
 * A poll (asynchronous: no thread waits on it) reserves a free thread, which decodes and runs what
 * it brings and reports the outcome, so max_concurrent_activities threads bound both the work in
 * progress and the polls. Only as many polls are in flight as the poll target says
 * (poll_scaler.h); the other free threads wait, free for
 * eager activities: a workflow task reserves one (keel_activity_try_reserve) before it asks the
 * server to start an activity at once, and hands the task the answer brings to it
 * (keel_activity_dispatch) or gives the reservation back (keel_activity_release).
 */
#ifndef KEEL_WORKER_ACTIVITY_H
#define KEEL_WORKER_ACTIVITY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "keel/activity.h"
#include "proto/proto.h"
#include "transport/transport.h"
#include "worker/poll_scaler.h"
#include "worker/worker_metrics.h"

typedef struct keel_activity_pool keel_activity_pool;

/* One activity poll: in flight (busy) or free; the cancel handle of the thread it is numbered
 * after (NULL while that thread is not running). */
typedef struct keel_activity_poll {
    keel_activity_pool *pool;
    keel_call_cancel *cancel;
    bool busy;
} keel_activity_poll;

/* What one executor thread needs; shared read-only except the counters. */
struct keel_activity_pool {
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
    /* Under lock: threads not running an activity (idle), how many of them are reserved for
     * eager tasks and for polls in flight (each poll reserves the thread that will run what it
     * brings), the eager tasks handed over and not yet taken, the poll answers not yet decoded,
     * the polls, the poll target, no new poll before backoff_until_ms (monotonic; 0: none). */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool locks_ready;
    int idle, reserved, polling;
    Temporal__Api__Workflowservice__V1__PollActivityTaskQueueResponse **eager;
    size_t n_eager, cap_eager;
    keel_transport_reply **replies;
    size_t n_replies;
    keel_activity_poll *polls; /* cap_eager, one per thread */
    int64_t backoff_until_ms;
    keel_poll_scaler scaler;
    atomic_uint_fast64_t eager_count, polls_count;
};

/* The lock, the eager queue (room for n_threads tasks) and the poll bounds; KEEL_ENOMEM. */
int keel_activity_pool_init(keel_activity_pool *p, int n_threads, int pollers_min,
                            int pollers_initial, int pollers_max);
/* Free what init made (after the threads are joined; eager tasks left are freed). */
void keel_activity_pool_destroy(keel_activity_pool *p);
/* Wake the waiting threads (to see *stopping). */
void keel_activity_pool_wake(keel_activity_pool *p);

/* Reserve a free thread for an eager activity without waiting; false when none is free. */
bool keel_activity_try_reserve(keel_activity_pool *p);
/* Give n unused reservations back. */
void keel_activity_release(keel_activity_pool *p, int n);
/* Run task (an eager activity; the pool owns it now) on the thread a reservation holds. */
void keel_activity_dispatch(
    keel_activity_pool *p, Temporal__Api__Workflowservice__V1__PollActivityTaskQueueResponse *task);

/* The thread's argument: the pool, the thread's own poll-cancel handle, its number. */
typedef struct keel_activity_thread_arg {
    keel_activity_pool *pool;
    keel_call_cancel *cancel;
    int index;
} keel_activity_thread_arg;

/* pthread entry: start polls (asynchronous, while the poll target allows), take an eager task or
 * a poll's answer, run, report, until *pool->stopping and nothing is reserved or waiting. */
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
