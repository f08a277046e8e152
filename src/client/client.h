/* client (internal) - what other client modules need from a keel_client. */
#ifndef KEEL_CLIENT_INTERNAL_H
#define KEEL_CLIENT_INTERNAL_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "keel/client.h"
#include "transport/transport.h"

/* The client's transport. Borrowed: lives as long as the client. */
keel_transport *keel_client_transport(const keel_client *client);

/* A random (version 4) UUID from the system's randomness, for request ids and queue names. */
int keel_client_uuid4(char out[37], keel_error *err);

/*
 * Eager workflow start (execution.c, worker.c). A keel_worker started on this client registers
 * itself here for its task queue while it runs; a start that asks for eager execution reserves
 * a workflow-task slot on one of them without blocking and hands it the first task the server
 * returns, or releases the slot. The registry is per client object (one connection, one
 * namespace), as the Go SDK keys it on its client: a worker on another client, or in another
 * process, is never used.
 */
typedef struct keel_eager_target {
    void *ctx;                                  /* the worker */
    const char *task_queue;                     /* borrowed from the worker */
    const ProtobufCMessage *deployment_options; /* WorkerDeploymentOptions or NULL; borrowed */
    bool (*try_reserve)(void *ctx);             /* take a free slot now, or false */
    void (*deliver)(void *ctx, ProtobufCMessage *task); /* takes the task and the slot */
    void (*release)(void *ctx);                         /* gives the slot back */
} keel_eager_target;

/* Register / unregister a worker (by ctx). add fails only out of memory (KEEL_ENOMEM). */
int keel_client_eager_add(keel_client *client, const keel_eager_target *target);
void keel_client_eager_remove(keel_client *client, void *ctx);

/* Reserve a slot on a registered worker serving task_queue (rotating among several); on success
 * *out is a copy of its target, valid until deliver or release (a worker with a reservation
 * cannot finish stopping). false: none serves the queue or none has a free slot. */
bool keel_client_eager_reserve(keel_client *client, const char *task_queue, keel_eager_target *out);

#endif
