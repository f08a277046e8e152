/* worker_metrics - Temporal's SDK worker metrics, recorded by the worker's hooks. */
#include "worker/worker_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "temporal/api/enums/v1/command_type.pb-c.h"

#define WORKFLOW_WORKER "WorkflowWorker"
#define ACTIVITY_WORKER "ActivityWorker"

struct keel_worker_metrics {
    char *namespace, *task_queue;
    /* polls */
    keel_metric *wf_poll_succeed, *wf_poll_empty, *act_poll_no_task;
    /* workflow tasks */
    keel_metric *wft_schedule_to_start, *wft_execution, *wft_replay, *wft_failed;
    keel_metric *wf_completed, *wf_failed, *wf_canceled, *wf_continue_as_new, *wf_endtoend;
    /* activities */
    keel_metric *act_schedule_to_start, *act_execution, *act_endtoend, *act_failed, *act_cancelled;
    /* cache, slots, pollers */
    keel_metric *cache_size, *cache_hit, *cache_miss, *cache_evicted;
    keel_metric *slots_available, *slots_used, *num_pollers, *worker_start, *poller_start;
    int wf_slots, act_slots;
    atomic_int wf_used, act_used;
    pthread_mutex_t slots_lock; /* the two slot gauges are written from the count at the time */
    atomic_uint_fast64_t evictions_seen;
};

double keel_wm_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t keel_wm_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const TQ[] = {"namespace", "task_queue", "worker_type"};
static const char *const WF[] = {"namespace", "task_queue", "worker_type", "workflow_type"};
static const char *const WF_FAIL[] = {"namespace", "task_queue", "worker_type", "workflow_type",
                                      "failure_reason"};
static const char *const ACT[] = {"namespace", "task_queue", "worker_type", "workflow_type",
                                  "activity_type"};
static const char *const POLLERS[] = {"namespace", "task_queue", "poller_type"};
#define N(a) (sizeof(a) / sizeof((a)[0]))

keel_worker_metrics *keel_worker_metrics_new(keel_metrics *m, const char *namespace,
                                             const char *task_queue)
{
    if (m == NULL)
        return NULL;
    keel_worker_metrics *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->namespace = strdup(namespace ? namespace : "");
    w->task_queue = strdup(task_queue ? task_queue : "");
    if (!w->namespace || !w->task_queue) {
        keel_worker_metrics_free(w);
        return NULL;
    }
    const double *lb = keel_metrics_latency_buckets, *llb = keel_metrics_long_latency_buckets;
    size_t nlb = keel_metrics_n_latency_buckets, nllb = keel_metrics_n_long_latency_buckets;
    keel_error e;
    /* A family that cannot be registered (out of memory) stays NULL: recording it is a no-op. */
    w->wf_poll_succeed =
        keel_metrics_counter(m, "temporal_workflow_task_queue_poll_succeed_total",
                             "Workflow task polls that returned a task.", TQ, N(TQ), &e);
    w->wf_poll_empty =
        keel_metrics_counter(m, "temporal_workflow_task_queue_poll_empty_total",
                             "Workflow task polls that ended without a task.", TQ, N(TQ), &e);
    w->act_poll_no_task =
        keel_metrics_counter(m, "temporal_activity_poll_no_task_total",
                             "Activity task polls that ended without a task.", TQ, N(TQ), &e);
    w->wft_schedule_to_start = keel_metrics_histogram(
        m, "temporal_workflow_task_schedule_to_start_latency_seconds",
        "Time from a workflow task's scheduling to its start by a poller, in seconds.", WF, N(WF),
        lb, nlb, &e);
    w->wft_execution = keel_metrics_histogram(
        m, "temporal_workflow_task_execution_latency_seconds",
        "Time this worker spent on a workflow task, from poll to answer, in seconds.", WF, N(WF),
        lb, nlb, &e);
    w->wft_replay = keel_metrics_histogram(
        m, "temporal_workflow_task_replay_latency_seconds",
        "Time spent rebuilding a run from its history (sticky cache miss), in seconds.", WF, N(WF),
        lb, nlb, &e);
    w->wft_failed = keel_metrics_counter(
        m, "temporal_workflow_task_execution_failed_total",
        "Workflow tasks that failed (failure_reason: NonDeterminismError or WorkflowError).",
        WF_FAIL, N(WF_FAIL), &e);
    w->wf_completed = keel_metrics_counter(m, "temporal_workflow_completed_total",
                                           "Workflow runs that completed.", WF, N(WF), &e);
    w->wf_failed = keel_metrics_counter(m, "temporal_workflow_failed_total",
                                        "Workflow runs that failed.", WF, N(WF), &e);
    w->wf_canceled = keel_metrics_counter(m, "temporal_workflow_canceled_total",
                                          "Workflow runs that ended cancelled.", WF, N(WF), &e);
    w->wf_continue_as_new =
        keel_metrics_counter(m, "temporal_workflow_continue_as_new_total",
                             "Workflow runs that continued as new.", WF, N(WF), &e);
    w->wf_endtoend = keel_metrics_histogram(m, "temporal_workflow_endtoend_latency_seconds",
                                            "Time from a run's start to its close, in seconds.", WF,
                                            N(WF), llb, nllb, &e);
    w->act_schedule_to_start = keel_metrics_histogram(
        m, "temporal_activity_schedule_to_start_latency_seconds",
        "Time from an activity attempt's scheduling to its start, in seconds.", ACT, N(ACT), lb,
        nlb, &e);
    w->act_execution = keel_metrics_histogram(
        m, "temporal_activity_execution_latency_seconds",
        "Time an activity attempt ran on this worker, whatever its outcome, in seconds.", ACT,
        N(ACT), lb, nlb, &e);
    w->act_endtoend = keel_metrics_histogram(
        m, "temporal_activity_succeed_endtoend_latency_seconds",
        "Time from an activity's first scheduling to its success, retries included, in seconds.",
        ACT, N(ACT), llb, nllb, &e);
    w->act_failed = keel_metrics_counter(m, "temporal_activity_execution_failed_total",
                                         "Activity attempts that failed.", ACT, N(ACT), &e);
    w->act_cancelled =
        keel_metrics_counter(m, "temporal_activity_execution_cancelled_total",
                             "Activity attempts that ended cancelled.", ACT, N(ACT), &e);
    w->cache_size = keel_metrics_gauge(m, "temporal_sticky_cache_size", "Runs in the sticky cache.",
                                       TQ, N(TQ), &e);
    w->cache_hit =
        keel_metrics_counter(m, "temporal_sticky_cache_hit_total",
                             "Workflow tasks answered from a cached run.", TQ, N(TQ), &e);
    w->cache_miss = keel_metrics_counter(
        m, "temporal_sticky_cache_miss_total",
        "Workflow tasks whose run was not cached and was rebuilt from history.", TQ, N(TQ), &e);
    w->cache_evicted =
        keel_metrics_counter(m, "temporal_sticky_cache_total_forced_eviction_total",
                             "Runs pushed out of a full sticky cache.", TQ, N(TQ), &e);
    w->slots_available = keel_metrics_gauge(
        m, "temporal_worker_task_slots_available",
        "Task slots free now (workflow pollers or activity executors).", TQ, N(TQ), &e);
    w->slots_used = keel_metrics_gauge(m, "temporal_worker_task_slots_used", "Task slots busy now.",
                                       TQ, N(TQ), &e);
    w->num_pollers = keel_metrics_gauge(m, "temporal_num_pollers", "Pollers running, by type.",
                                        POLLERS, N(POLLERS), &e);
    w->worker_start =
        keel_metrics_counter(m, "temporal_worker_start_total", "Workers started.", TQ, N(TQ), &e);
    w->poller_start =
        keel_metrics_counter(m, "temporal_poller_start_total", "Pollers started.", TQ, N(TQ), &e);
    atomic_init(&w->wf_used, 0);
    atomic_init(&w->act_used, 0);
    pthread_mutex_init(&w->slots_lock, NULL);
    atomic_init(&w->evictions_seen, 0);
    return w;
}

void keel_worker_metrics_free(keel_worker_metrics *wm)
{
    if (wm == NULL)
        return;
    pthread_mutex_destroy(&wm->slots_lock);
    free(wm->namespace);
    free(wm->task_queue);
    free(wm);
}

static const char *str(const char *s)
{
    return s ? s : "";
}

/* The count is read again under the lock rather than taken from the caller's atomic update: two
 * tasks ending at once could otherwise write their values in the wrong order and leave the gauges
 * showing a busy slot after every task has ended. */
static void slots(keel_worker_metrics *wm, bool workflow, int used)
{
    const char *v[] = {wm->namespace, wm->task_queue, workflow ? WORKFLOW_WORKER : ACTIVITY_WORKER};
    int total = workflow ? wm->wf_slots : wm->act_slots;
    pthread_mutex_lock(&wm->slots_lock);
    (void)used;
    used = atomic_load(workflow ? &wm->wf_used : &wm->act_used);
    keel_metric_set(wm->slots_used, v, used);
    keel_metric_set(wm->slots_available, v, total - used > 0 ? total - used : 0);
    pthread_mutex_unlock(&wm->slots_lock);
}

void keel_wm_pollers(keel_worker_metrics *wm, int wf_pollers, int sticky_pollers)
{
    if (wm == NULL)
        return;
    const char *types[] = {"workflow_task", "sticky_workflow_task"};
    int counts[] = {wf_pollers, sticky_pollers};
    for (int i = 0; i < 2; i++) {
        const char *v[] = {wm->namespace, wm->task_queue, types[i]};
        keel_metric_set(wm->num_pollers, v, counts[i]);
    }
}

void keel_wm_started(keel_worker_metrics *wm, int wf_pollers, int sticky_pollers,
                     int activity_pollers, int wf_slots, int activity_slots)
{
    if (wm == NULL)
        return;
    wm->wf_slots = wf_slots;
    wm->act_slots = activity_slots;
    const char *types[] = {"workflow_task", "sticky_workflow_task", "activity_task"};
    int counts[] = {wf_pollers, sticky_pollers, activity_pollers};
    for (int i = 0; i < 3; i++) {
        const char *v[] = {wm->namespace, wm->task_queue, types[i]};
        keel_metric_set(wm->num_pollers, v, counts[i]);
    }
    if (wf_slots > 0) {
        const char *v[] = {wm->namespace, wm->task_queue, WORKFLOW_WORKER};
        keel_metric_add(wm->worker_start, v, 1);
        keel_metric_add(wm->poller_start, v, wf_pollers + sticky_pollers);
        slots(wm, true, 0);
        keel_metric_set(wm->cache_size, v, 0);
    }
    if (activity_slots > 0) {
        const char *v[] = {wm->namespace, wm->task_queue, ACTIVITY_WORKER};
        keel_metric_add(wm->worker_start, v, 1);
        keel_metric_add(wm->poller_start, v, activity_pollers);
        slots(wm, false, 0);
    }
}

void keel_wm_wf_poll(keel_worker_metrics *wm, bool got_task)
{
    if (wm == NULL)
        return;
    const char *v[] = {wm->namespace, wm->task_queue, WORKFLOW_WORKER};
    keel_metric_add(got_task ? wm->wf_poll_succeed : wm->wf_poll_empty, v, 1);
}

void keel_wm_activity_poll(keel_worker_metrics *wm, bool got_task)
{
    if (wm == NULL || got_task)
        return;
    const char *v[] = {wm->namespace, wm->task_queue, ACTIVITY_WORKER};
    keel_metric_add(wm->act_poll_no_task, v, 1);
}

static void observe_since(keel_metric *h, const char *const *v, int64_t from_ms, int64_t to_ms)
{
    if (from_ms > 0 && to_ms >= from_ms)
        keel_metric_observe(h, v, (double)(to_ms - from_ms) / 1000.0);
}

void keel_wm_wft_begin(keel_worker_metrics *wm, const char *workflow_type, int64_t scheduled_ms,
                       int64_t started_ms)
{
    if (wm == NULL)
        return;
    const char *v[] = {wm->namespace, wm->task_queue, WORKFLOW_WORKER, str(workflow_type)};
    observe_since(wm->wft_schedule_to_start, v, scheduled_ms, started_ms);
    slots(wm, true, atomic_fetch_add(&wm->wf_used, 1) + 1);
}

void keel_wm_wft_cache(keel_worker_metrics *wm, const char *workflow_type, bool hit,
                       double replay_s)
{
    if (wm == NULL)
        return;
    const char *v[] = {wm->namespace, wm->task_queue, WORKFLOW_WORKER, str(workflow_type)};
    keel_metric_add(hit ? wm->cache_hit : wm->cache_miss, v, 1);
    if (replay_s >= 0)
        keel_metric_observe(wm->wft_replay, v, replay_s);
}

void keel_wm_wft_end(keel_worker_metrics *wm, const char *workflow_type, double execution_s,
                     const char *failure_reason, size_t cache_size, uint64_t cache_evictions)
{
    if (wm == NULL)
        return;
    const char *v[] = {wm->namespace, wm->task_queue, WORKFLOW_WORKER, str(workflow_type),
                       str(failure_reason)};
    keel_metric_observe(wm->wft_execution, v, execution_s);
    if (failure_reason)
        keel_metric_add(wm->wft_failed, v, 1);
    slots(wm, true, atomic_fetch_sub(&wm->wf_used, 1) - 1);
    keel_metric_set(wm->cache_size, v, (double)cache_size);
    /* The cache counts its evictions; the counter moves by what is new since the last look. */
    uint64_t seen = atomic_load(&wm->evictions_seen);
    while (cache_evictions > seen &&
           !atomic_compare_exchange_weak(&wm->evictions_seen, &seen, cache_evictions))
        ;
    if (cache_evictions > seen)
        keel_metric_add(wm->cache_evicted, v, (double)(cache_evictions - seen));
}

void keel_wm_workflow_closed(keel_worker_metrics *wm, const char *workflow_type, int command_type,
                             int64_t run_started_ms)
{
    if (wm == NULL)
        return;
    keel_metric *c = NULL;
    switch (command_type) {
    case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION:
        c = wm->wf_completed;
        break;
    case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION:
        c = wm->wf_failed;
        break;
    case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION:
        c = wm->wf_canceled;
        break;
    case TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION:
        c = wm->wf_continue_as_new;
        break;
    default:
        return;
    }
    const char *v[] = {wm->namespace, wm->task_queue, WORKFLOW_WORKER, str(workflow_type)};
    keel_metric_add(c, v, 1);
    observe_since(wm->wf_endtoend, v, run_started_ms, keel_wm_wall_ms());
}

void keel_wm_activity_begin(keel_worker_metrics *wm, const char *activity_type,
                            const char *workflow_type, int64_t attempt_scheduled_ms,
                            int64_t started_ms)
{
    if (wm == NULL)
        return;
    const char *v[] = {wm->namespace, wm->task_queue, ACTIVITY_WORKER, str(workflow_type),
                       str(activity_type)};
    observe_since(wm->act_schedule_to_start, v, attempt_scheduled_ms, started_ms);
    slots(wm, false, atomic_fetch_add(&wm->act_used, 1) + 1);
}

void keel_wm_activity_end(keel_worker_metrics *wm, const char *activity_type,
                          const char *workflow_type, double execution_s,
                          keel_wm_activity_outcome outcome, int64_t first_scheduled_ms)
{
    if (wm == NULL)
        return;
    const char *v[] = {wm->namespace, wm->task_queue, ACTIVITY_WORKER, str(workflow_type),
                       str(activity_type)};
    keel_metric_observe(wm->act_execution, v, execution_s);
    if (outcome == KEEL_WM_ACTIVITY_OK)
        observe_since(wm->act_endtoend, v, first_scheduled_ms, keel_wm_wall_ms());
    else if (outcome == KEEL_WM_ACTIVITY_FAILED)
        keel_metric_add(wm->act_failed, v, 1);
    else if (outcome == KEEL_WM_ACTIVITY_CANCELED)
        keel_metric_add(wm->act_cancelled, v, 1);
    slots(wm, false, atomic_fetch_sub(&wm->act_used, 1) - 1);
}
