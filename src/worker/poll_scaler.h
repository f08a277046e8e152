/*
 * poll_scaler (internal) - how many polls of one kind a worker keeps in flight (poller
 * autoscaling), between a minimum and a maximum.
 *
 * The server attaches a poller scaling decision to some poll responses (temporal.api.taskqueue.v1
 * PollerScalingDecision): a positive delta when the queue has a backlog, a negative one when the
 * poll waited long. A positive delta is applied only while the tasks taken in per 100 ms period
 * grow (at least 1.1 x the period before), so that more polls are added only when they bring more
 * tasks; an empty poll lowers the target by one once the server has ever sent a decision, a
 * RESOURCE_EXHAUSTED answer halves it. The official SDKs scale the same way.
 *
 * Not thread-safe: the caller holds its own lock around every call.
 */
#ifndef KEEL_WORKER_POLL_SCALER_H
#define KEEL_WORKER_POLL_SCALER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct keel_poll_scaler {
    int min, max, target, peak;
    bool seen_decision;    /* the server has sent a decision at least once */
    bool scale_up_allowed; /* the last period took in more tasks than the one before */
    int64_t period;        /* the current 100 ms period (monotonic ms / 100) */
    int ingested, prev_ingested;
} keel_poll_scaler;

/* Bounds 1 <= min <= initial <= max (clamped into them if not). */
void keel_poll_scaler_init(keel_poll_scaler *s, int min, int initial, int max);

/* A poll answered: whether it brought a task, and the server's suggestion (has_decision false:
 * none). now_ms is a monotonic clock. */
void keel_poll_scaler_result(keel_poll_scaler *s, bool got_task, bool has_decision, int delta,
                             int64_t now_ms);

/* A poll failed with a keel error code (KEEL_EEXHAUSTED halves the target, others lower it by
 * one). */
void keel_poll_scaler_error(keel_poll_scaler *s, int code);

#endif
