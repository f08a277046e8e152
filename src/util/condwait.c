#include "util/condwait.h"

#include <time.h>

int keel_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, int64_t ms)
{
    if (ms < 1)
        ms = 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return pthread_cond_timedwait(c, m, &ts);
}
