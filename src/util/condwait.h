/*
 * condwait - a condition variable wait bounded by a number of milliseconds.
 */
#ifndef KEEL_UTIL_CONDWAIT_H
#define KEEL_UTIL_CONDWAIT_H

#include <pthread.h>
#include <stdint.h>

/* pthread_cond_timedwait() on a condition variable with the default (realtime) clock, for at
 * most ms milliseconds (at least 1). The caller holds m, as for any wait. Returns what
 * pthread_cond_timedwait() returns (ETIMEDOUT when the time ran out). */
int keel_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, int64_t ms);

#endif
