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
#include "transport/transport.h"

/* What one executor thread needs; shared read-only except the counters. */
typedef struct keel_activity_pool {
    keel_transport *transport;
    const char *namespace;
    const char *task_queue;
    const char *identity;
    const keel_activity_type *types;
    size_t n_types;
    atomic_bool *stopping;
    atomic_bool abandon; /* the shutdown grace is over: running activities hand back */
    atomic_int busy;     /* activities running now */
    atomic_uint_fast64_t completed, failed;
} keel_activity_pool;

/* The thread's argument: the pool and the thread's own poll-cancel handle. */
typedef struct keel_activity_thread_arg {
    keel_activity_pool *pool;
    keel_call_cancel *cancel;
} keel_activity_thread_arg;

/* pthread entry: poll, run, report, until *pool->stopping. */
void *keel_activity_thread(void *arg);

#endif
