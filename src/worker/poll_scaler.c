/* poll_scaler - the poll target between its bounds, from the server's scaling decisions. */
#include "worker/poll_scaler.h"

#include "keel/error.h"

#define PERIOD_MS 100

static void clamp(keel_poll_scaler *s)
{
    if (s->target < s->min)
        s->target = s->min;
    if (s->target > s->max)
        s->target = s->max;
    if (s->target > s->peak)
        s->peak = s->target;
}

void keel_poll_scaler_init(keel_poll_scaler *s, int min, int initial, int max)
{
    *s = (keel_poll_scaler){0};
    s->min = min < 1 ? 1 : min;
    s->max = max < s->min ? s->min : max;
    s->target = initial;
    clamp(s);
}

/* Count a task into its 100 ms period; at a period's end, decide whether scaling up helps. */
static void ingest(keel_poll_scaler *s, int64_t now_ms)
{
    int64_t period = now_ms / PERIOD_MS;
    if (period != s->period) {
        int ended = period == s->period + 1 ? s->ingested : 0;
        int before = period == s->period + 1 ? s->prev_ingested : s->ingested;
        s->scale_up_allowed = ended > 0 && ended * 10 >= before * 11;
        s->prev_ingested = ended;
        s->ingested = 0;
        s->period = period;
    }
    s->ingested++;
}

void keel_poll_scaler_result(keel_poll_scaler *s, bool got_task, bool has_decision, int delta,
                             int64_t now_ms)
{
    if (got_task)
        ingest(s, now_ms);
    if (has_decision) {
        s->seen_decision = true;
        if (delta > 0 && s->scale_up_allowed)
            s->target += delta;
        else if (delta < 0)
            s->target += delta;
    } else if (!got_task && s->seen_decision) {
        s->target--;
    }
    clamp(s);
}

void keel_poll_scaler_error(keel_poll_scaler *s, int code)
{
    if (code == KEEL_EEXHAUSTED)
        s->target /= 2;
    else
        s->target--;
    clamp(s);
}
