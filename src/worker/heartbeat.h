/*
 * heartbeat (internal) - the worker heartbeats that Temporal server 1.31 takes: who this worker
 * is (instance key, identity, host, process, SDK, task queue), how loaded it is (slots, sticky
 * cache, pollers) and whether it is running, sent with RecordWorkerHeartbeat on a thread of its
 * own. The server lists them (ListWorkers; the Web UI's Workers pages) and drops a worker whose
 * last heartbeat says SHUTDOWN, which keel_worker_stop() sends with ShutdownWorker.
 *
 * The interval is the official SDKs' (60 s by default, 1-60 s); the first heartbeat goes out at
 * start. A namespace whose capabilities do not list worker heartbeats (the server's
 * frontend.WorkerHeartbeatsEnabled switched off), or a server without the call, gets none.
 */
#ifndef KEEL_WORKER_HEARTBEAT_H
#define KEEL_WORKER_HEARTBEAT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/error.h"
#include "temporal/api/worker/v1/message.pb-c.h"
#include "transport/transport.h"

#define KEEL_HEARTBEAT_DEFAULT_MS 60000
#define KEEL_HEARTBEAT_MIN_MS     1000
#define KEEL_HEARTBEAT_MAX_MS     60000

typedef Temporal__Api__Worker__V1__WorkerHeartbeat keel_pb_worker_heartbeat;

/* The worker's load at one moment, as the worker counts it. */
typedef struct keel_worker_load {
    int wf_slots, wf_used;
    uint64_t wf_processed, wf_failed;
    int activity_slots, activity_used;
    uint64_t activity_processed, activity_failed;
    int wf_pollers, sticky_pollers, activity_pollers;
    int64_t wf_poll_ms, sticky_poll_ms, activity_poll_ms; /* last poll that brought a task (0) */
    uint64_t cache_hits, cache_misses, cache_size;
} keel_worker_load;

typedef void (*keel_worker_load_fn)(void *arg, keel_worker_load *out);

typedef struct keel_heartbeat keel_heartbeat;

/* A heartbeat sender for a worker on task_queue (the strings are copied; transport and the
 * load callback's arg are borrowed and must outlive it). interval_ms: 0 for the default,
 * negative for none (keel_heartbeat_start() then starts nothing; the final heartbeat is still
 * built). NULL when out of memory. */
keel_heartbeat *keel_heartbeat_new(keel_transport *t, const char *namespace_,
                                   const char *task_queue, const char *identity,
                                   int64_t interval_ms, keel_worker_load_fn load, void *arg);

/* This worker's instance key (a UUID, for polls and ShutdownWorker). Borrowed. */
const char *keel_heartbeat_instance_key(const keel_heartbeat *h);

/* The worker's deployment version, reported in every heartbeat from now (before start). Both
 * borrowed: they must outlive h. */
void keel_heartbeat_set_deployment(keel_heartbeat *h, const char *deployment_name,
                                   const char *build_id);

/* Start the heartbeat thread (stopping, borrowed, makes its heartbeats say SHUTTING_DOWN). */
int keel_heartbeat_start(keel_heartbeat *h, atomic_bool *stopping, keel_error *err);

/* Stop the thread and wait for it. Safe to call when it was never started. */
void keel_heartbeat_stop(keel_heartbeat *h);

/* One heartbeat with the given status (TEMPORAL__API__ENUMS__V1__WORKER_STATUS__*), on the heap
 * (free with protobuf_c_message_free_unpacked). NULL when out of memory. */
keel_pb_worker_heartbeat *keel_heartbeat_build(keel_heartbeat *h, int status);

/* The wall clock in ms since the Unix epoch, for the poll times in keel_worker_load. */
int64_t keel_heartbeat_clock_ms(void);

/* Stop, then free. NULL is allowed. */
void keel_heartbeat_free(keel_heartbeat *h);

#endif
