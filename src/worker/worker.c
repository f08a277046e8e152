/*
 * worker - threads that poll a task queue: workflow pollers, the workflow task executors (slots)
 * that drive the engine, and the activity executors (activity.c).
 *
 * Slots: a workflow poller reserves a free slot before it polls (an empty poll gives it back),
 * hands the task it gets to the executors' queue and polls again only when another slot is
 * free; an executor takes the first queued task whose run no other task in hand is on (one run,
 * one task at a time: the cached engine is never shared), works on it and sends its answer
 * asynchronously (send_answer), then goes on to other work. The answer's callback queues it for
 * the executors like a poll's answer; an executor finishes the task (settle_answer: eager
 * activities, the run's next task when the server returned one, the cache), and only then are
 * the slot and the run's busy mark given back (a wf_job holds both meanwhile). So slots are
 * tasks in hand, apart from the executor threads, and no task waits in keel's memory while its
 * sticky schedule-to-start clock runs. Failures (respond_failed), legacy queries
 * (respond_query), history pages and local activities stay synchronous on the executor. The pollers
 * poll the sticky and the normal queue at once, at least one poll of each while runs are cached,
 * preferring the sticky queue while the server reports a backlog on it (choose_kind); how many
 * polls are in flight follows the server's poller scaling decisions within the configured bounds
 * (poll_scaler.h). Polls are asynchronous (keel_transport_call_async_reply): no thread waits on
 * one. pump_polls() starts them wherever a slot, a poll or the target changes; a poll's callback
 * (on the transport's network thread) queues the undecoded answer for the executors, which
 * decode it (finish_poll). One thread (poll_thread) only restarts polls after an error backoff and
 * waits for them at stop.
 *
 * A workflow task is answered from the run's full history (first page in the poll response,
 * the rest from GetWorkflowExecutionHistory). A task the engine cannot answer is failed with the
 * cause the SDKs use (NON_DETERMINISTIC_ERROR or WORKFLOW_WORKER_UNHANDLED_FAILURE), on its
 * first attempt only: the server retries with a growing timeout, and failing every retry would
 * just spin.
 */
#include "keel/worker.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "converter/failure.h"
#include "converter/payload.h"
#include "log/log.h"
#include "proto/proto.h"
#include "util/condwait.h"
#include "worker/activity.h"
#include "worker/cache.h"
#include "worker/engine.h"
#include "worker/heartbeat.h"
#include "worker/local_activity.h"
#include "worker/poll_scaler.h"
#include "worker/worker_metrics.h"
#include "worker/tracing.h"
#include "keel/json.h"
#include "keel/version.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

#define POLL_TIMEOUT_MS       70000
#define POLL_ERROR_BACKOFF_MS 1000
#define DEFAULT_GRACE_MS      10000
#define MIN_STICKY_TIMEOUT_MS 1000
#define MAX_STICKY_TIMEOUT_MS 60000
#define MAX_WORKFLOW_TASKS    512
#define MAX_POLLERS           64

typedef Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse workflow_task;

typedef struct keel_worker keel_worker;

/* One workflow poll: in flight (busy) or free to start; its own cancel handle. */
typedef struct wf_poll {
    keel_worker *w;
    keel_call_cancel *cancel;
    int kind; /* 0 normal, 1 sticky */
    bool busy;
} wf_poll;

/* A poll's answer, not decoded yet, waiting for an executor (it holds a slot). */
typedef struct wf_reply {
    keel_transport_reply *reply;
    int kind;
} wf_reply;

typedef Temporal__Api__Command__V1__ScheduleActivityTaskCommandAttributes schedule_attrs;

/*
 * A workflow task in hand, from the executor that takes it off the queue until its answer is
 * settled (and the run's next tasks the server returned inline): it holds a slot and the run's
 * busy mark. While the answer is in flight it holds everything the answer refers to and what
 * follows it needs. One per slot, allocated with the worker (no allocation per task).
 */
typedef struct wf_job {
    struct keel_worker *w;
    bool in_use;
    char *run;              /* the run's busy mark (NULL: unmarked; out of memory) */
    workflow_task *task;    /* as polled (owned) */
    workflow_task *la_task; /* the task local activities moved the work to (owned), or NULL */
    keel_engine *e;         /* the run's engine, while its answer is in flight */
    bool cached;            /* e is in the cache, pinned */
    bool want_next;         /* the answer asks for the run's next task inline */
    bool measured;          /* workflow task metrics: began */
    double began;
    /* The answer and what it points to (besides the engine's commands and messages). */
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest req;
    Temporal__Api__Taskqueue__V1__TaskQueue sticky;
    Temporal__Api__Taskqueue__V1__StickyExecutionAttributes attrs;
    Google__Protobuf__Duration timeout;
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest__Capabilities caps;
    Temporal__Api__Sdk__V1__WorkflowTaskCompletedMetadata sdk;
    Temporal__Api__Common__V1__MeteringMetadata meter;
    schedule_attrs *asked[KEEL_MAX_EAGER_ACTIVITIES_PER_TASK];
    int n_asked;
    /* The outcome, from the callback: the answer undecoded (reply), or decoded already on the
     * network thread (resp), or neither when rc says it failed. */
    int rc;
    keel_transport_reply *reply;
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedResponse *resp;
    keel_error err;
} wf_job;

struct keel_worker {
    keel_client *client;
    keel_transport *transport;
    const char *namespace;
    char *task_queue, *identity;
    char *sticky_queue; /* NULL when runs are not cached */
    keel_cache *cache;
    const keel_workflow_type *const *workflows;
    size_t n_workflows;
    int n_wf_pollers, n_activity_threads; /* the poll maximum, activity threads */
    int n_slots;                          /* workflow tasks in hand at once */
    int n_exec;                           /* workflow task executor threads */
    int64_t grace_ms;                     /* negative: no limit */
    int64_t sticky_timeout_ms;
    bool eager; /* ask for eager activity dispatch */

    /* Workflow task slots, under lock: free slots (neither polling nor holding a task), polls in
     * flight by kind (0 normal, 1 sticky), the sticky backlog the server last reported, the poll
     * target, the polled tasks waiting for an executor (each holds a slot), the tasks in hand
     * (jobs: each holds a slot and its run's busy mark) and their answers. */
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* the poll thread waits on it */
    pthread_cond_t exec_cond; /* executors wait on it */
    bool locks_ready;
    int slots_free;
    int polling[2];
    int64_t sticky_backlog;
    keel_poll_scaler scaler;
    workflow_task **queue;
    size_t n_queue;
    wf_reply *replies; /* poll answers to decode, oldest first */
    size_t n_replies;
    wf_poll *polls;           /* n_wf_pollers, while running */
    int64_t backoff_until_ms; /* no new poll before (monotonic; 0: none) */
    int gauge_target;         /* the poll target the pollers gauge shows */
    wf_job *jobs;             /* n_slots */
    int jobs_used;            /* tasks taken off the queue and not yet settled */
    wf_job **answers;         /* answers back from the server, to settle, oldest first */
    size_t n_answers;
    int answers_flying; /* answers on their way */
    int answers_peak;
    bool pollers_done;
    int eager_reserved; /* slots reserved by eager starts (client.h), not yet handed a task */
    bool eager_registered;
    atomic_uint_fast64_t wf_inline, wf_polls, wf_eager;

    atomic_bool stopping;
    bool running;
    pthread_t *threads;
    keel_call_cancel **cancels;
    size_t n_threads;
    keel_activity_pool pool;
    struct wf_thread_arg *wf_args;           /* one per workflow poller */
    keel_activity_thread_arg *activity_args; /* one per activity thread */
    atomic_uint_fast64_t wf_completed, wf_failed, cache_hits, cache_misses;
    keel_heartbeat *heartbeat;      /* worker heartbeats (heartbeat.h) */
    atomic_int wf_busy;             /* workflow tasks being worked on */
    atomic_int_fast64_t poll_ms[2]; /* last normal / sticky poll that brought a task */
    keel_worker_metrics *wm;        /* NULL: metrics off */
    /* Worker Deployments: what polls, answers and heartbeats carry (NULL: no deployment), and
     * the behaviour each registered type's completions declare (indexed as workflows). */
    char *deployment_name, *build_id;
    Temporal__Api__Deployment__V1__WorkerDeploymentOptions deployment;
    Temporal__Api__Deployment__V1__WorkerDeploymentOptions *deployment_options;
    keel_versioning_behavior *behaviors;
};

typedef struct wf_thread_arg {
    keel_worker *w;
    keel_call_cancel *cancel; /* pollers only */
    int index;                /* among the pollers, or among the executors */
} wf_thread_arg;

static void log_line(keel_log_level level, const char *msg, const char *error)
{
    keel_log(level, "worker", msg, "error", error, NULL);
}

/* A record about a workflow task: which run, which type, which attempt. */
static void log_task(keel_log_level level, const char *msg, const workflow_task *t,
                     const char *error)
{
    const Temporal__Api__Common__V1__WorkflowExecution *x = t->workflow_execution;
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", t->attempt);
    keel_log(level, "worker", msg, "workflow_id", x ? x->workflow_id : "", "run_id",
             x ? x->run_id : "", "workflow_type", t->workflow_type ? t->workflow_type->name : "",
             "attempt", attempt, "error", error, NULL);
}

/* ---- options and lifecycle ---- */

int keel_worker_options_init(keel_worker_options *opts, unsigned int version)
{
    if (opts == NULL || version != KEEL_WORKER_OPTIONS_VERSION)
        return KEEL_EINVAL;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    opts->workflow_pollers = KEEL_DEFAULT_WORKFLOW_POLLERS;
    opts->max_concurrent_activities = KEEL_DEFAULT_MAX_CONCURRENT_ACTIVITIES;
    opts->max_cached_workflows = KEEL_DEFAULT_MAX_CACHED_WORKFLOWS;
    opts->max_concurrent_workflow_tasks = KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS;
    opts->workflow_task_threads = 0; /* KEEL_DEFAULT_WORKFLOW_TASK_THREADS, at most the slots */
    return KEEL_OK;
}

/* The deployment settings: a valid version, overrides that name registered types, and a
 * behaviour for every type on a versioned worker (the SDKs refuse to start without one too). */
static int check_deployment(const keel_worker_options *o, keel_error *err)
{
    if (o->deployment_name == NULL) {
        if (o->use_versioning || o->build_id)
            return keel_error_set(err, KEEL_EINVAL,
                                  "use_versioning and build_id need a deployment_name");
        return KEEL_OK;
    }
    if (o->build_id == NULL)
        return keel_error_set(err, KEEL_EINVAL, "a worker in deployment %.100s needs a build_id",
                              o->deployment_name);
    int rc = keel_deployment_version_check(o->deployment_name, o->build_id, err);
    if (rc != KEEL_OK)
        return rc;
    if ((unsigned)o->default_versioning_behavior > KEEL_VERSIONING_AUTO_UPGRADE)
        return keel_error_set(err, KEEL_EINVAL, "default_versioning_behavior %d is not one",
                              (int)o->default_versioning_behavior);
    if (o->n_versioning_overrides > KEEL_MAX_VERSIONING_OVERRIDES ||
        (o->n_versioning_overrides > 0 && o->versioning_overrides == NULL))
        return keel_error_set(err, KEEL_EINVAL, "at most %d versioning overrides",
                              KEEL_MAX_VERSIONING_OVERRIDES);
    for (size_t i = 0; i < o->n_versioning_overrides; i++) {
        const keel_versioning_override *v = &o->versioning_overrides[i];
        bool known = false;
        for (size_t j = 0; v->workflow_type && j < o->n_workflows; j++)
            known = known || strcmp(o->workflows[j]->name, v->workflow_type) == 0;
        if (!known)
            return keel_error_set(err, KEEL_EINVAL,
                                  "versioning override for %.100s: no such workflow type on this "
                                  "worker",
                                  v->workflow_type ? v->workflow_type : "(null)");
        if (v->behavior != KEEL_VERSIONING_PINNED && v->behavior != KEEL_VERSIONING_AUTO_UPGRADE)
            return keel_error_set(err, KEEL_EINVAL,
                                  "versioning override for %.100s: pinned or auto-upgrade",
                                  v->workflow_type);
    }
    for (size_t i = 0; o->use_versioning && i < o->n_workflows; i++) {
        keel_versioning_behavior b = keel_worker_options_behavior(o, o->workflows[i]);
        if (b != KEEL_VERSIONING_PINNED && b != KEEL_VERSIONING_AUTO_UPGRADE)
            return keel_error_set(err, KEEL_EINVAL,
                                  "workflow type %.100s has no versioning behaviour (pinned or "
                                  "auto-upgrade): give it one, an override, or a default",
                                  o->workflows[i]->name);
    }
    return KEEL_OK;
}

static int check_options(const keel_worker_options *o, keel_error *err)
{
    if (o == NULL || o->version != KEEL_WORKER_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "worker options not initialised");
    if (o->task_queue == NULL || o->task_queue[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "a worker needs a task queue");
    if (o->n_workflows == 0 && o->n_activities == 0)
        return keel_error_set(err, KEEL_EINVAL,
                              "a worker needs at least one workflow or activity type");
    if (o->heartbeat_interval_ms > 0 && (o->heartbeat_interval_ms < KEEL_HEARTBEAT_MIN_MS ||
                                         o->heartbeat_interval_ms > KEEL_HEARTBEAT_MAX_MS))
        return keel_error_set(err, KEEL_EINVAL,
                              "heartbeat_interval_ms must be 1000-60000 (0: 60 s; negative: off)");
    if (o->workflow_pollers < 1 || o->workflow_pollers > 64 || o->max_concurrent_activities < 1 ||
        o->max_concurrent_activities > 512 || o->max_cached_workflows < 0 ||
        o->max_cached_workflows > 1000000)
        return keel_error_set(err, KEEL_EINVAL,
                              "workflow_pollers must be 1-64, max_concurrent_activities 1-512 "
                              "and max_cached_workflows 0-1000000");
    if (o->max_concurrent_workflow_tasks < 0 ||
        o->max_concurrent_workflow_tasks > MAX_WORKFLOW_TASKS ||
        o->max_concurrent_workflow_tasks == 1)
        return keel_error_set(err, KEEL_EINVAL,
                              "max_concurrent_workflow_tasks must be 2-%d (0: %d)",
                              MAX_WORKFLOW_TASKS, KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS);
    int slots = o->max_concurrent_workflow_tasks ? o->max_concurrent_workflow_tasks
                                                 : KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS;
    if (o->workflow_task_threads < 0 || o->workflow_task_threads > slots)
        return keel_error_set(err, KEEL_EINVAL,
                              "workflow_task_threads must be 1-max_concurrent_workflow_tasks "
                              "(%d; 0: %d or fewer)",
                              slots, KEEL_DEFAULT_WORKFLOW_TASK_THREADS);
    int wmin = o->workflow_pollers_min, wmax = o->workflow_pollers_max;
    if (wmin < 0 || wmax < 0 || wmin > MAX_POLLERS || wmax > MAX_POLLERS ||
        (wmin > 0 && wmin > o->workflow_pollers) || (wmax > 0 && wmax < o->workflow_pollers))
        return keel_error_set(err, KEEL_EINVAL,
                              "workflow pollers: min <= workflow_pollers (%d) <= max <= %d "
                              "(min %d, max %d given)",
                              o->workflow_pollers, MAX_POLLERS, wmin, wmax);
    int amin = o->activity_pollers_min, ainit = o->activity_pollers, amax = o->activity_pollers_max;
    if (amin < 0 || ainit < 0 || amax < 0 || amin > o->max_concurrent_activities ||
        ainit > o->max_concurrent_activities || amax > o->max_concurrent_activities ||
        (amin > 0 && ainit > 0 && amin > ainit) || (ainit > 0 && amax > 0 && ainit > amax) ||
        (amin > 0 && amax > 0 && amin > amax))
        return keel_error_set(err, KEEL_EINVAL,
                              "activity pollers: min <= activity_pollers <= max <= "
                              "max_concurrent_activities (%d)",
                              o->max_concurrent_activities);
    if (o->sticky_schedule_to_start_timeout_ms != 0 &&
        (o->sticky_schedule_to_start_timeout_ms < MIN_STICKY_TIMEOUT_MS ||
         o->sticky_schedule_to_start_timeout_ms > MAX_STICKY_TIMEOUT_MS))
        return keel_error_set(
            err, KEEL_EINVAL, "sticky_schedule_to_start_timeout_ms must be %d-%d (0: %d)",
            MIN_STICKY_TIMEOUT_MS, MAX_STICKY_TIMEOUT_MS, KEEL_DEFAULT_STICKY_TIMEOUT_MS);
    for (size_t i = 0; i < o->n_workflows; i++) {
        const keel_workflow_type *t = o->workflows[i];
        if (t == NULL || t->name == NULL || t->start == NULL || t->on_event == NULL)
            return keel_error_set(err, KEEL_EINVAL,
                                  "workflow type %zu needs a name, start and on_event", i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->workflows[j]->name, t->name) == 0)
                return keel_error_set(err, KEEL_EINVAL, "workflow type %s is registered twice",
                                      t->name);
    }
    for (size_t i = 0; i < o->n_activities; i++) {
        const keel_activity_type *t = &o->activities[i];
        if (t->name == NULL || t->run == NULL)
            return keel_error_set(err, KEEL_EINVAL, "activity type %zu needs a name and run",
                                  i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->activities[j].name, t->name) == 0)
                return keel_error_set(err, KEEL_EINVAL, "activity type %s is registered twice",
                                      t->name);
    }
    return check_deployment(o, err);
}

/* What the worker heartbeats report (heartbeat.h). */
static void worker_load(void *arg, keel_worker_load *l)
{
    keel_worker *w = arg;
    bool sticky = w->sticky_queue != NULL;
    l->wf_slots = w->n_wf_pollers ? w->n_slots : 0;
    l->wf_used = atomic_load(&w->wf_busy);
    l->wf_processed = atomic_load(&w->wf_completed) + atomic_load(&w->wf_failed);
    l->wf_failed = atomic_load(&w->wf_failed);
    /* The poll target split as choose_kind() splits it: one normal poll, the rest sticky. */
    int target = 0;
    if (w->locks_ready) {
        pthread_mutex_lock(&w->lock);
        target = w->n_wf_pollers ? w->scaler.target : 0;
        pthread_mutex_unlock(&w->lock);
    }
    l->wf_pollers = sticky && target > 1 ? target / 2 : target;
    l->sticky_pollers = sticky ? target - l->wf_pollers : 0;
    l->wf_poll_ms = atomic_load(&w->poll_ms[0]);
    l->sticky_poll_ms = atomic_load(&w->poll_ms[1]);
    l->activity_slots = w->n_activity_threads;
    l->activity_used = atomic_load(&w->pool.busy);
    l->activity_processed = atomic_load(&w->pool.completed) + atomic_load(&w->pool.failed);
    l->activity_failed = atomic_load(&w->pool.failed);
    int apoll = 0;
    if (w->pool.locks_ready) {
        pthread_mutex_lock(&w->pool.lock);
        apoll = w->pool.scaler.target;
        pthread_mutex_unlock(&w->pool.lock);
    }
    l->activity_pollers = w->n_activity_threads ? apoll : 0;
    l->activity_poll_ms = atomic_load(&w->pool.poll_ms);
    l->cache_hits = atomic_load(&w->cache_hits);
    l->cache_misses = atomic_load(&w->cache_misses);
    l->cache_size = keel_cache_size(w->cache);
}

int keel_worker_new(keel_worker **out, keel_client *client, const keel_worker_options *opts,
                    keel_error *err)
{
    *out = NULL;
    int rc = check_options(opts, err);
    if (rc != KEEL_OK)
        return rc;
    keel_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the worker");
    w->client = client;
    w->transport = keel_client_transport(client);
    w->namespace = keel_transport_namespace(w->transport);
    w->task_queue = strdup(opts->task_queue);
    w->identity = strdup(opts->identity ? opts->identity : keel_transport_identity(w->transport));
    w->workflows = opts->workflows;
    w->n_workflows = opts->n_workflows;
    bool cached = opts->max_cached_workflows > 0;
    int wmin = opts->workflow_pollers_min ? opts->workflow_pollers_min : cached ? 2 : 1;
    int wmax = opts->workflow_pollers_max ? opts->workflow_pollers_max
               : opts->workflow_pollers > KEEL_DEFAULT_WORKFLOW_POLLERS_MAX
                   ? opts->workflow_pollers
                   : KEEL_DEFAULT_WORKFLOW_POLLERS_MAX;
    if (wmin > wmax)
        wmin = wmax;
    w->n_slots = opts->max_concurrent_workflow_tasks ? opts->max_concurrent_workflow_tasks
                                                     : KEEL_DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS;
    if (wmax > w->n_slots)
        wmax = w->n_slots; /* every poll holds a slot */
    w->n_exec = opts->workflow_task_threads ? opts->workflow_task_threads
                                            : KEEL_DEFAULT_WORKFLOW_TASK_THREADS;
    if (w->n_exec > w->n_slots)
        w->n_exec = w->n_slots;
    w->n_wf_pollers = opts->n_workflows ? wmax : 0;
    w->n_activity_threads = opts->n_activities ? opts->max_concurrent_activities : 0;
    w->grace_ms = opts->shutdown_grace_ms ? opts->shutdown_grace_ms : DEFAULT_GRACE_MS;
    w->sticky_timeout_ms = opts->sticky_schedule_to_start_timeout_ms
                               ? opts->sticky_schedule_to_start_timeout_ms
                               : KEEL_DEFAULT_STICKY_TIMEOUT_MS;
    w->eager = !opts->disable_eager_activities && opts->n_activities > 0;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_cond_init(&w->exec_cond, NULL);
    w->locks_ready = true;
    w->slots_free = w->n_slots;
    keel_poll_scaler_init(&w->scaler, wmin, opts->workflow_pollers, wmax);
    atomic_init(&w->wf_inline, 0);
    atomic_init(&w->wf_polls, 0);
    atomic_init(&w->wf_eager, 0);
    w->queue = calloc((size_t)w->n_slots, sizeof *w->queue);
    w->replies = calloc((size_t)w->n_slots, sizeof *w->replies);
    w->jobs = calloc((size_t)w->n_slots, sizeof *w->jobs);
    w->answers = calloc((size_t)w->n_slots, sizeof *w->answers);
    for (int i = 0; w->jobs && i < w->n_slots; i++)
        w->jobs[i].w = w;
    int amax =
        opts->activity_pollers_max ? opts->activity_pollers_max : opts->max_concurrent_activities;
    int ainit = opts->activity_pollers ? opts->activity_pollers : KEEL_DEFAULT_ACTIVITY_POLLERS;
    if (ainit > amax)
        ainit = amax;
    int amin = opts->activity_pollers_min ? opts->activity_pollers_min : 1;
    atomic_init(&w->stopping, false);
    w->pool = (keel_activity_pool){.transport = w->transport,
                                   .namespace = w->namespace,
                                   .types = opts->activities,
                                   .n_types = opts->n_activities,
                                   .stopping = &w->stopping};
    atomic_init(&w->pool.completed, 0);
    atomic_init(&w->pool.failed, 0);
    atomic_init(&w->pool.abandon, false);
    atomic_init(&w->pool.busy, 0);
    if (w->queue == NULL || w->replies == NULL || w->jobs == NULL || w->answers == NULL ||
        keel_activity_pool_init(&w->pool, opts->max_concurrent_activities, amin, ainit, amax) !=
            KEEL_OK) {
        keel_worker_free(w);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the worker");
    }
    atomic_init(&w->wf_completed, 0);
    atomic_init(&w->wf_failed, 0);
    atomic_init(&w->cache_hits, 0);
    atomic_init(&w->cache_misses, 0);
    w->cache = keel_cache_new((size_t)opts->max_cached_workflows);
    if (w->cache && opts->max_cached_workflows > 0 && opts->n_workflows > 0) {
        /* The worker's own queue: the server sends a cached run's next task here. */
        char uuid[37];
        if (keel_client_uuid4(uuid, err) != KEEL_OK) {
            keel_worker_free(w);
            return err->code;
        }
        size_t n = strlen(w->identity ? w->identity : "") + sizeof uuid + 2;
        if ((w->sticky_queue = malloc(n)) != NULL)
            snprintf(w->sticky_queue, n, "%s:%s", w->identity ? w->identity : "", uuid);
    }
    if (w->task_queue == NULL || w->identity == NULL || w->cache == NULL ||
        (opts->max_cached_workflows > 0 && opts->n_workflows > 0 && w->sticky_queue == NULL)) {
        keel_worker_free(w);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the worker");
    }
    w->pool.task_queue = w->task_queue;
    w->pool.identity = w->identity;
    atomic_init(&w->wf_busy, 0);
    atomic_init(&w->poll_ms[0], 0);
    atomic_init(&w->poll_ms[1], 0);
    atomic_init(&w->pool.poll_ms, 0);
    w->heartbeat = keel_heartbeat_new(w->transport, w->namespace, w->task_queue, w->identity,
                                      opts->heartbeat_interval_ms, worker_load, w);
    if (w->heartbeat == NULL) {
        keel_worker_free(w);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the worker");
    }
    w->pool.instance_key = keel_heartbeat_instance_key(w->heartbeat);
    if (opts->deployment_name) {
        w->deployment_name = strdup(opts->deployment_name);
        w->build_id = strdup(opts->build_id);
        w->behaviors = calloc(opts->n_workflows + 1, sizeof *w->behaviors);
        if (!w->deployment_name || !w->build_id || !w->behaviors) {
            keel_worker_free(w);
            return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the worker");
        }
        for (size_t i = 0; i < opts->n_workflows; i++)
            w->behaviors[i] = keel_worker_options_behavior(opts, opts->workflows[i]);
        temporal__api__deployment__v1__worker_deployment_options__init(&w->deployment);
        w->deployment.deployment_name = w->deployment_name;
        w->deployment.build_id = w->build_id;
        w->deployment.worker_versioning_mode =
            opts->use_versioning
                ? TEMPORAL__API__ENUMS__V1__WORKER_VERSIONING_MODE__WORKER_VERSIONING_MODE_VERSIONED
                : TEMPORAL__API__ENUMS__V1__WORKER_VERSIONING_MODE__WORKER_VERSIONING_MODE_UNVERSIONED;
        w->deployment_options = &w->deployment;
        w->pool.deployment_options = w->deployment_options;
        keel_heartbeat_set_deployment(w->heartbeat, w->deployment_name, w->build_id);
    }
    if (opts->metrics) {
        keel_transport_set_metrics(w->transport, opts->metrics);
        w->pool.wm = w->wm = keel_worker_metrics_new(opts->metrics, w->namespace, w->task_queue);
    }
    *out = w;
    return KEEL_OK;
}

/* ---- workflow tasks ---- */

static const keel_workflow_type *find_workflow(const keel_worker *w, const char *name)
{
    for (size_t i = 0; i < w->n_workflows; i++)
        if (strcmp(w->workflows[i]->name, name) == 0)
            return w->workflows[i];
    return NULL;
}

static void respond_failed(keel_worker *w, const workflow_task *t, int code, const char *message)
{
    atomic_fetch_add(&w->wf_failed, 1);
    log_task(KEEL_LOG_WARN, "workflow task failed", t, message);
    if (t->attempt > 1)
        return; /* already reported on the first attempt; let the retries time out quietly */
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskFailedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_WORKFLOW_TASK_FAILED_REQUEST__INIT;
    req.task_token = t->task_token;
    req.cause =
        code == KEEL_ENONDETERMINISM
            ? TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
            : TEMPORAL__API__ENUMS__V1__WORKFLOW_TASK_FAILED_CAUSE__WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE;
    req.identity = w->identity;
    req.namespace_ = (char *)w->namespace;
    req.deployment_options = w->deployment_options;
    keel_error err;
    req.failure = keel_failure_new_application(
        code == KEEL_ENONDETERMINISM ? "NonDeterministicError" : "WorkflowTaskError", message,
        false, &err);
    if (req.failure == NULL)
        return;
    keel_call_options co = {.retry = true, .namespace = w->namespace};
    ProtobufCMessage *resp = NULL;
    if (keel_transport_call(
            w->transport, WF("RespondWorkflowTaskFailed"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__respond_workflow_task_failed_response__descriptor,
            &resp, &co, &err) != KEEL_OK)
        log_task(KEEL_LOG_WARN, "could not report the workflow task failure", t, err.message);
    if (resp)
        FREE_PB(resp);
    FREE_PB(req.failure);
}

/* Feed history pages from GetWorkflowExecutionHistory, starting at `token` (or at event 1 when
 * from_start), until the last page. A page past the task's start means the task went stale. */
static int feed_pages(keel_worker *w, keel_engine *e, const workflow_task *t,
                      ProtobufCBinaryData first, bool from_start, keel_error *err)
{
    keel_page_token token = {0};
    int rc = keel_page_token_next(&token, &first, "GetWorkflowExecutionHistory", err);
    while (rc == KEEL_OK && (from_start || token.len > 0)) {
        from_start = false;
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__GET_WORKFLOW_EXECUTION_HISTORY_REQUEST__INIT;
        req.namespace_ = (char *)w->namespace;
        req.execution = t->workflow_execution;
        req.next_page_token = keel_page_token_get(&token);
        Temporal__Api__Workflowservice__V1__GetWorkflowExecutionHistoryResponse *page = NULL;
        keel_call_options co = {.retry = true, .namespace = w->namespace};
        rc = keel_transport_call(
            w->transport, WF("GetWorkflowExecutionHistory"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__get_workflow_execution_history_response__descriptor,
            (ProtobufCMessage **)&page, &co, err);
        if (rc != KEEL_OK)
            break;
        if (page->history && page->history->n_events > 0) {
            int64_t last = page->history->events[page->history->n_events - 1]->event_id;
            if (t->started_event_id > 0 && last > t->started_event_id)
                /* The task timed out and was handed out again while we read: abandon it. */
                rc = keel_error_set(err, KEEL_EPRECONDITION,
                                    "stale workflow task: history moved past event %lld",
                                    (long long)t->started_event_id);
            else
                rc = keel_engine_feed(e, page->history->events, page->history->n_events, err);
        }
        if (rc == KEEL_OK)
            rc = keel_page_token_next(&token, &page->next_page_token, "GetWorkflowExecutionHistory",
                                      err);
        FREE_PB(page);
    }
    keel_page_token_free(&token);
    return rc;
}

/* Whether the task carries the run's history from its first event. */
static bool full_history(const workflow_task *t)
{
    return t->history && t->history->n_events > 0 && t->history->events[0]->event_id == 1;
}

/* Build the engine for the task's run from its whole history. */
static int replay(keel_worker *w, const workflow_task *t, keel_engine **out, keel_error *err)
{
    *out = NULL;
    const char *type_name = t->workflow_type ? t->workflow_type->name : "";
    const keel_workflow_type *type = find_workflow(w, type_name);
    if (type == NULL)
        return keel_error_set(err, KEEL_EINVAL,
                              "workflow type '%s' is not registered on this worker (task queue "
                              "%s)",
                              type_name, w->task_queue);
    const Temporal__Api__Common__V1__WorkflowExecution *x = t->workflow_execution;
    const char *queue = t->workflow_execution_task_queue && t->workflow_execution_task_queue->name
                            ? t->workflow_execution_task_queue->name
                            : w->task_queue;
    int rc = keel_engine_new(out, type, x ? x->workflow_id : "", x ? x->run_id : "", queue, err);
    if (rc != KEEL_OK)
        return rc;
    if (full_history(t)) {
        rc = keel_engine_feed(*out, t->history->events, t->history->n_events, err);
        if (rc == KEEL_OK)
            rc = feed_pages(w, *out, t, t->next_page_token, false, err);
    } else {
        /* Only new events, for a run this worker does not have: read it all from the start. */
        rc = feed_pages(w, *out, t, (ProtobufCBinaryData){0, NULL}, true, err);
    }
    if (rc == KEEL_OK && t->started_event_id > 0 &&
        keel_engine_last_event_id(*out) < t->started_event_id)
        /* Older servers leave a retried task's events out of a fresh history read. */
        rc = keel_error_set(
            err, KEEL_EPRECONDITION, "history ends at event %lld, before the task's start at %lld",
            (long long)keel_engine_last_event_id(*out), (long long)t->started_event_id);
    return rc;
}

static int answer_query(const keel_engine *e, const Temporal__Api__Query__V1__WorkflowQuery *q,
                        char **result, keel_error *err);

typedef Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest__QueryResultsEntry
    query_result_entry;

/* Answers to the queries the server attached to this task (it holds queries that arrive while a
 * task is outstanding and delivers them with the next one). Heap, unpack layout; NULL entries
 * array when there are none. */
static query_result_entry **answer_attached_queries(const workflow_task *t, const keel_engine *e,
                                                    size_t *n)
{
    *n = 0;
    if (t->n_queries == 0)
        return NULL;
    query_result_entry **v = calloc(t->n_queries, sizeof *v);
    for (size_t i = 0; v && i < t->n_queries; i++) {
        query_result_entry *entry = malloc(sizeof *entry);
        Temporal__Api__Query__V1__WorkflowQueryResult *r = malloc(sizeof *r);
        if (entry == NULL || r == NULL) {
            free(entry);
            free(r);
            break;
        }
        temporal__api__workflowservice__v1__respond_workflow_task_completed_request__query_results_entry__init(
            entry);
        temporal__api__query__v1__workflow_query_result__init(r);
        entry->key = strdup(t->queries[i]->key ? t->queries[i]->key : "");
        entry->value = r;
        v[(*n)++] = entry;
        char *json = NULL;
        keel_error err;
        int rc = t->queries[i]->value ? answer_query(e, t->queries[i]->value, &json, &err)
                                      : keel_error_set(&err, KEEL_EINVAL, "an empty query");
        if (rc == KEEL_OK &&
            keel_payloads_new_json(json, "query result", &r->answer, &err) == KEEL_OK) {
            r->result_type =
                TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_ANSWERED;
        } else {
            r->result_type = TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_FAILED;
            r->error_message = strdup(err.message);
        }
        free(json);
    }
    return v;
}

/* The versioning behaviour this worker declares for a type (UNSPECIFIED when unversioned). */
static keel_versioning_behavior behavior_of(const keel_worker *w, const char *type)
{
    for (size_t i = 0; w->behaviors && i < w->n_workflows; i++)
        if (strcmp(w->workflows[i]->name, type) == 0)
            return w->behaviors[i];
    return KEEL_VERSIONING_UNSPECIFIED;
}

/* Whether an activity type is registered on this worker. */
static bool serves_activity(const keel_worker *w, const char *name)
{
    for (size_t i = 0; name && i < w->pool.n_types; i++)
        if (strcmp(w->pool.types[i].name, name) == 0)
            return true;
    return false;
}

/* Eager activity dispatch: for each ScheduleActivityTask command on this worker's own queue for
 * an activity it runs, up to KEEL_MAX_EAGER_ACTIVITIES_PER_TASK, reserve a free activity thread
 * without waiting and ask the server to start the activity at once. The commands so marked go
 * to asked[]; their count is returned. */
static int ask_eager(keel_worker *w, keel_pb_command *const *cmds, size_t n,
                     schedule_attrs *asked[KEEL_MAX_EAGER_ACTIVITIES_PER_TASK])
{
    int k = 0;
    for (size_t i = 0; w->eager && i < n && k < KEEL_MAX_EAGER_ACTIVITIES_PER_TASK; i++) {
        if (cmds[i]->command_type !=
            TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK)
            continue;
        schedule_attrs *a = cmds[i]->schedule_activity_task_command_attributes;
        if (a == NULL || a->task_queue == NULL || a->task_queue->name == NULL ||
            strcmp(a->task_queue->name, w->task_queue) != 0 || a->activity_type == NULL ||
            !serves_activity(w, a->activity_type->name) || !keel_activity_try_reserve(&w->pool))
            continue;
        a->request_eager_execution = 1;
        asked[k++] = a;
    }
    return k;
}

static bool send_answer(keel_worker *w, wf_job *j);
static bool settle_answer(keel_worker *w, wf_job *j, workflow_task **next);

/* Build the task's answer in the job (t: the task answered, j->e its run's engine) and send it
 * (send_answer). Returns true while it is in flight: settle_answer() finishes the task when it
 * comes back. False: it could not be sent, and the task is settled already (*next as there). */
static bool start_answer(keel_worker *w, wf_job *j, const workflow_task *t, workflow_task **next)
{
    keel_engine *e = j->e;
    keel_tracing_workflow_task(e, t); /* spans for what is new; trace context into headers */
    keel_pb_command *const *cmds;
    size_t n = keel_engine_commands(e, &cmds);
    keel_pb_message *const *msgs;
    size_t n_msgs = keel_engine_messages(e, &msgs);
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest *req = &j->req;
    temporal__api__workflowservice__v1__respond_workflow_task_completed_request__init(req);
    req->task_token = t->task_token;
    req->commands = (keel_pb_command **)cmds;
    req->n_commands = n;
    req->messages = (keel_pb_message **)msgs;
    req->n_messages = n_msgs;
    req->identity = w->identity;
    req->namespace_ = (char *)w->namespace;
    /* Ask for this run's next task on our sticky queue, with only the new events. */
    if (w->sticky_queue) {
        temporal__api__taskqueue__v1__task_queue__init(&j->sticky);
        temporal__api__taskqueue__v1__sticky_execution_attributes__init(&j->attrs);
        j->sticky.name = w->sticky_queue;
        j->sticky.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_STICKY;
        j->sticky.normal_name = w->task_queue;
        keel_proto_duration_set(&j->timeout, w->sticky_timeout_ms);
        j->attrs.worker_task_queue = &j->sticky;
        j->attrs.schedule_to_start_timeout = &j->timeout;
        req->sticky_attributes = &j->attrs;
    }
    /* A speculative task (an update) that only rejected may be forgotten by the server even if
     * it carried events: the run is dropped from the cache then (reset_history_event_id), so
     * its next task rebuilds it, and history is not padded with empty tasks. */
    temporal__api__workflowservice__v1__respond_workflow_task_completed_request__capabilities__init(
        &j->caps);
    j->caps.discard_speculative_workflow_task_with_events = 1;
    req->capabilities = &j->caps;
    /* Which SDK answered (the Web UI's "Workflow SDK"): its name and version go only with a task
     * whose history does not already say them, as the official SDKs send them. keel uses no SDK
     * flags: its engine's behaviour does not branch on them. */
    temporal__api__sdk__v1__workflow_task_completed_metadata__init(&j->sdk);
    const char *sdk_name, *sdk_version;
    keel_engine_sdk_recorded(e, &sdk_name, &sdk_version);
    if (strcmp(sdk_name, KEEL_SDK_NAME) != 0)
        j->sdk.sdk_name = KEEL_SDK_NAME;
    if (strcmp(sdk_version, KEEL_VERSION) != 0)
        j->sdk.sdk_version = KEEL_VERSION;
    req->sdk_metadata = &j->sdk;
    /* The worker's version, and how this run moves between versions (versioned workers only;
     * the server records it on the run at its first task, then it follows the run). */
    req->deployment_options = w->deployment_options;
    req->versioning_behavior = (Temporal__Api__Enums__V1__VersioningBehavior)behavior_of(
        w, t->workflow_type ? t->workflow_type->name : "");
    req->query_results = answer_attached_queries(t, e, &req->n_query_results);
    temporal__api__common__v1__metering_metadata__init(&j->meter);
    j->meter.nonfirst_local_activity_execution_attempts = (uint32_t)keel_la_nonfirst_attempts(e);
    if (j->meter.nonfirst_local_activity_execution_attempts > 0)
        req->metering_metadata = &j->meter;
    /* The run's next task, when one is already due (a signal came while this one ran), comes
     * back in the answer instead of through a poll: *next. */
    req->return_new_workflow_task = j->want_next;
    j->n_asked = ask_eager(w, cmds, n, j->asked);
    if (send_answer(w, j))
        return true;
    return settle_answer(w, j, next);
}

static void answer_done(void *userdata, int rc, keel_transport_reply *reply, const keel_error *err);

/* Send the job's answer. An answer that asked for eager activities is never retried as it is: if
 * a first attempt reached the server and only its response was lost, a retry would be refused
 * (the task is completed) and the activities the server started for us would be gone, running
 * only after their start-to-close timeout. So it goes once; if that fails, settle_answer() gives
 * the reservations back and sends it again without the eager flags, with retries. Only when the
 * first attempt did reach the server are its eager activities lost (said in the log); its retry
 * is refused, the cached run dropped and rebuilt at its next task. Returns whether the call is
 * in flight (answer_done runs); false with j->rc and j->err set when it could not start. */
static bool send_answer(keel_worker *w, wf_job *j)
{
    keel_call_options co = {.retry = j->n_asked == 0, .namespace = w->namespace};
    pthread_mutex_lock(&w->lock);
    if (++w->answers_flying > w->answers_peak)
        w->answers_peak = w->answers_flying;
    pthread_mutex_unlock(&w->lock);
    j->reply = NULL;
    /* Nothing of j is written once the call started: answer_done may run at once. */
    keel_error err;
    int rc =
        keel_transport_call_async_reply(w->transport, WF("RespondWorkflowTaskCompleted"),
                                        (ProtobufCMessage *)&j->req, &co, answer_done, j, &err);
    if (rc == KEEL_OK)
        return true;
    j->rc = rc;
    j->err = err;
    pthread_mutex_lock(&w->lock);
    w->answers_flying--;
    pthread_mutex_unlock(&w->lock);
    return false;
}

static bool resume_job(keel_worker *w, wf_job *j);
static void job_release(keel_worker *w, wf_job *j);

/* An answer up to this size is decoded on the network thread, and settled there when it brings
 * no next task (settle_answer: the eager activities handed over, the run unpinned). A larger one
 * (eager activities with big inputs) goes to an executor undecoded, so that one answer does not
 * hold up every other call's. So does the answer to a task that brought more than
 * SETTLE_ON_NET_EVENTS events (a run rebuilt from its history): settling frees the task, and
 * freeing a long history is not for the network thread either. */
#define SETTLE_ON_NET_MAX    (64 * 1024)
#define SETTLE_ON_NET_EVENTS 64

/* Decode the answer's reply (consumed) into j->resp; on failure j->rc and j->err say why. */
static void answer_decode(wf_job *j)
{
    j->rc = keel_transport_reply_decode(
        j->reply,
        &temporal__api__workflowservice__v1__respond_workflow_task_completed_response__descriptor,
        (ProtobufCMessage **)&j->resp, NULL, &j->err);
    j->reply = NULL;
}

/* Whether the decoded answer hands back the run's next task (asked for, and a real one). */
static bool brings_next(const wf_job *j)
{
    const workflow_task *next = j->resp ? j->resp->workflow_task : NULL;
    return j->want_next && next && next->task_token.len > 0;
}

/* The events the job's task (and the task local activities moved it to) brought. */
static size_t job_events(const wf_job *j)
{
    size_t n = j->task && j->task->history ? j->task->history->n_events : 0;
    if (j->la_task && j->la_task->history)
        n += j->la_task->history->n_events;
    return n;
}

/* The answer came back (on the transport's network thread). Most answers bring no next task:
 * settled here, with no executor woken for them. One that brings the run's next task, a failure
 * and a large answer go to the executors, as a poll's answer goes (wf_poll_done). */
static void answer_done(void *userdata, int rc, keel_transport_reply *reply, const keel_error *err)
{
    wf_job *j = userdata;
    keel_worker *w = j->w;
    j->rc = rc;
    j->reply = reply;
    j->resp = NULL;
    if (rc != KEEL_OK) {
        j->err = *err;
    } else if (keel_transport_reply_len(reply) <= SETTLE_ON_NET_MAX &&
               job_events(j) <= SETTLE_ON_NET_EVENTS) {
        answer_decode(j);
        if (j->rc == KEEL_OK && !brings_next(j)) {
            /* No next task: nothing of the workflow's code runs, and nothing goes out again
             * (only a failed answer is sent again). */
            resume_job(w, j);
            pthread_mutex_lock(&w->lock);
            w->answers_flying--;
            job_release(w, j);
            pthread_mutex_unlock(&w->lock);
            return;
        }
    }
    pthread_mutex_lock(&w->lock);
    w->answers_flying--;
    w->answers[w->n_answers++] = j; /* at most one per job */
    /* Signalled under the lock: once it is released an executor may settle j, the worker stop
     * and w be gone. */
    pthread_cond_signal(&w->exec_cond);
    pthread_mutex_unlock(&w->lock);
}

/* On an executor: what follows the answer. Eager activities go to the activity threads, a
 * workflow task the server handed back with it (the run's next one, already started) to *next
 * (the caller frees it); the run stays cached if the server accepted the completion and the
 * run's state stays in step with it (a speculative task that only rejected updates is
 * discarded: the server forgets its events), else it is dropped. Returns true when the answer
 * went again (without eager flags) and is in flight once more. */
static bool settle_answer(keel_worker *w, wf_job *j, workflow_task **next)
{
    const workflow_task *t = j->la_task ? j->la_task : j->task;
    if (j->rc == KEEL_OK && j->resp == NULL)
        answer_decode(j);
    bool ok = j->rc == KEEL_OK;
    bool next_task = ok && brings_next(j);
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedResponse *resp = j->resp;
    j->resp = NULL;
    j->reply = NULL;
    if (!ok && j->n_asked > 0) {
        log_task(KEEL_LOG_WARN,
                 "a workflow task answer asking for eager activities failed; sending it again "
                 "without (if the first did arrive, its eager activities start only after their "
                 "start-to-close timeout)",
                 t, j->err.message);
        for (int i = 0; i < j->n_asked; i++)
            j->asked[i]->request_eager_execution = 0;
        keel_activity_release(&w->pool, j->n_asked);
        j->n_asked = 0;
        if (resp)
            FREE_PB(resp);
        resp = NULL;
        if (send_answer(w, j))
            return true;
    }
    int n_asked = j->n_asked;
    j->n_asked = 0;
    for (int i = 0; i < n_asked; i++)
        j->asked[i]->request_eager_execution = 0; /* the engine's commands, as they were */
    int dispatched = 0;
    if (ok) {
        /* Eager activities: each runs on a thread one of our reservations kept free. */
        for (size_t i = 0; i < resp->n_activity_tasks; i++) {
            if (dispatched < n_asked && resp->activity_tasks[i] &&
                resp->activity_tasks[i]->task_token.len > 0) {
                keel_activity_dispatch(&w->pool, resp->activity_tasks[i]);
                dispatched++;
            } else {
                log_task(KEEL_LOG_ERROR,
                         "the server started more eager activities than asked; the extra one "
                         "times out and is retried",
                         t, "");
                FREE_PB(resp->activity_tasks[i]);
            }
        }
        resp->n_activity_tasks = 0; /* handed over or freed; the array goes with resp */
        if (next_task) {
            *next = resp->workflow_task;
            resp->workflow_task = NULL;
        }
    }
    keel_activity_release(&w->pool, n_asked - dispatched);
    if (ok) {
        atomic_fetch_add(&w->wf_completed, 1);
        keel_pb_command *const *cmds;
        size_t n = keel_engine_commands(j->e, &cmds);
        if (n > 0 && keel_engine_closing(j->e))
            keel_wm_workflow_closed(w->wm, t->workflow_type ? t->workflow_type->name : "",
                                    (int)cmds[n - 1]->command_type,
                                    keel_engine_run_started_ms(j->e));
        if (resp->reset_history_event_id > 0)
            ok = false; /* discarded: the run's next task replays it from history */
    } else {
        atomic_fetch_add(&w->wf_failed, 1);
        log_task(KEEL_LOG_WARN, "the server refused a workflow task completion", t, j->err.message);
    }
    if (resp)
        FREE_PB(resp);
    for (size_t i = 0; i < j->req.n_query_results; i++)
        FREE_PB(j->req.query_results[i]);
    free(j->req.query_results);
    j->req.query_results = NULL;
    j->req.n_query_results = 0;
    /* The run: back in step in the cache, or dropped (out of step with the server: rebuilt at
     * its next task), or not cached at all. */
    const char *run_id = t->workflow_execution ? t->workflow_execution->run_id : "";
    if (!j->cached)
        keel_engine_free(j->e);
    else if (ok)
        keel_cache_unpin(w->cache, run_id, j->e);
    else
        keel_cache_drop(w->cache, run_id, j->e);
    j->e = NULL;
    j->cached = false;
    return false;
}

/* ---- queries (legacy query tasks: the Web UI's stack trace and user queries) ---- */

/* __temporal_workflow_metadata: temporal.api.sdk.v1.WorkflowMetadata as JSON, which the Web UI
 * reads to list a workflow's queries and signals and show its current details. */
static int workflow_metadata(const keel_engine *e, char **result, keel_error *err)
{
    const keel_workflow_type *type = keel_engine_type(e);
    cJSON *j = cJSON_CreateObject();
    cJSON *def = cJSON_AddObjectToObject(j, "definition");
    cJSON_AddStringToObject(def, "type", type->name);
    cJSON *queries = cJSON_AddArrayToObject(def, "queryDefinitions");
    static const char *const builtin[] = {"__stack_trace", "__temporal_workflow_metadata"};
    for (size_t i = 0; i < 2; i++) {
        cJSON *q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "name", builtin[i]);
        cJSON_AddItemToArray(queries, q);
    }
    for (const char *const *n = type->queries; n && *n; n++) {
        cJSON *q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "name", *n);
        cJSON_AddItemToArray(queries, q);
    }
    static const char *const lists[] = {"signalDefinitions", "updateDefinitions"};
    const char *const *names[] = {type->signals, type->updates};
    for (size_t l = 0; l < 2; l++) {
        cJSON *defs = cJSON_AddArrayToObject(def, lists[l]);
        for (const char *const *n = names[l]; n && *n; n++) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "name", *n);
            cJSON_AddItemToArray(defs, d);
        }
    }
    char line[1024] = "";
    if (type->describe)
        type->describe(keel_engine_state(e), line, sizeof line);
    cJSON_AddStringToObject(j, "currentDetails", line);
    *result = keel_json_print(j);
    cJSON_Delete(j);
    return *result ? KEEL_OK : keel_error_set(err, KEEL_ENOMEM, "out of memory");
}

static int answer_query(const keel_engine *e, const Temporal__Api__Query__V1__WorkflowQuery *q,
                        char **result, keel_error *err)
{
    const keel_workflow_type *type = keel_engine_type(e);
    const char *name = q->query_type ? q->query_type : "";
    if (strcmp(name, "__temporal_workflow_metadata") == 0)
        return workflow_metadata(e, result, err);
    if (strcmp(name, "__stack_trace") == 0) {
        char line[1024] = "";
        if (type->describe)
            type->describe(keel_engine_state(e), line, sizeof line);
        else
            snprintf(line, sizeof line, "workflow %s (no describe callback)", type->name);
        /* A JSON string: escape what JSON needs. */
        char buf[2200];
        size_t o = 0;
        buf[o++] = '"';
        for (const char *s = line; *s && o < sizeof buf - 3; s++) {
            if (*s == '"' || *s == '\\')
                buf[o++] = '\\';
            buf[o++] = (unsigned char)*s < 0x20 ? ' ' : *s;
        }
        buf[o++] = '"';
        buf[o] = '\0';
        *result = strdup(buf);
        return *result ? KEEL_OK : keel_error_set(err, KEEL_ENOMEM, "out of memory");
    }
    if (type->query == NULL)
        return keel_error_set(err, KEEL_EINVAL, "workflow %s answers no queries (asked '%s')",
                              type->name, name);
    char *args = NULL;
    int rc = keel_payloads_to_json(q->query_args, "query arguments", &args, err);
    if (rc != KEEL_OK)
        return rc;
    rc = type->query(keel_engine_state(e), name, args, result);
    free(args);
    if (rc != KEEL_OK)
        return keel_error_set(err, KEEL_EINVAL, "workflow %s cannot answer query '%s'", type->name,
                              name);
    if (*result == NULL)
        *result = strdup("null");
    return KEEL_OK;
}

static void respond_query(keel_worker *w, const workflow_task *t, const char *result,
                          const char *error)
{
    Temporal__Api__Workflowservice__V1__RespondQueryTaskCompletedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_QUERY_TASK_COMPLETED_REQUEST__INIT;
    req.task_token = t->task_token;
    req.namespace_ = (char *)w->namespace;
    keel_error err;
    if (result &&
        keel_payloads_new_json(result, "query result", &req.query_result, &err) != KEEL_OK) {
        error = err.message;
        result = NULL;
    }
    req.completed_type =
        result ? TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_ANSWERED
               : TEMPORAL__API__ENUMS__V1__QUERY_RESULT_TYPE__QUERY_RESULT_TYPE_FAILED;
    req.error_message = (char *)(error ? error : "");
    keel_call_options co = {.retry = true, .namespace = w->namespace};
    ProtobufCMessage *resp = NULL;
    if (keel_transport_call(
            w->transport, WF("RespondQueryTaskCompleted"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__respond_query_task_completed_response__descriptor,
            &resp, &co, &err) != KEEL_OK)
        log_task(KEEL_LOG_WARN, "could not answer a query", t, err.message);
    if (resp)
        FREE_PB(resp);
    if (req.query_result)
        FREE_PB(req.query_result);
}

/* The run's engine, up to date with this task's history: the cached run fed the new events, or
 * a new one replayed from the full history. *hit says which. */
static int engine_for(keel_worker *w, const workflow_task *t, keel_engine **out, bool *hit,
                      keel_error *err)
{
    const char *run_id = t->workflow_execution ? t->workflow_execution->run_id : "";
    keel_engine *e = keel_cache_take(w->cache, run_id);
    *hit = false;
    *out = NULL;
    if (e && !full_history(t) && t->history && t->history->n_events > 0 &&
        t->history->events[0]->event_id > 0 && /* the server's number: no INT64_MIN - 1 */
        keel_engine_last_event_id(e) == t->history->events[0]->event_id - 1) {
        int rc = keel_engine_feed(e, t->history->events, t->history->n_events, err);
        if (rc == KEEL_OK)
            rc = feed_pages(w, e, t, t->next_page_token, false, err);
        if (rc != KEEL_OK) {
            keel_engine_free(e);
            return rc;
        }
        *hit = true;
        *out = e;
        return KEEL_OK;
    }
    /* Not cached, or the cached state does not meet these events: start over. */
    keel_engine_free(e);
    return replay(w, t, out, err);
}

static void process_query(keel_worker *w, const workflow_task *t)
{
    /* Read-only: the state after the recorded history, from a fresh replay so that a cached
     * run is never moved by a question. */
    keel_engine *e = NULL;
    keel_error err;
    char *result = NULL;
    int64_t began = keel_tracing_query_begin();
    int rc = replay(w, t, &e, &err);
    if (rc == KEEL_OK)
        rc = keel_engine_settle(e, &err);
    if (rc == KEEL_OK)
        rc = answer_query(e, t->query, &result, &err);
    keel_tracing_query(t->query, t->workflow_execution ? t->workflow_execution->workflow_id : "",
                       t->workflow_execution ? t->workflow_execution->run_id : "", began,
                       rc == KEEL_OK, rc == KEEL_OK ? NULL : err.message);
    respond_query(w, t, rc == KEEL_OK ? result : NULL, rc == KEEL_OK ? NULL : err.message);
    free(result);
    keel_engine_free(e);
}

/* Work on the job's task. Returns true while its answer is in flight (settle_answer goes on);
 * false when the task is over here (*next: the run's next task, if its answer brought one). */
static bool process(keel_worker *w, wf_job *j, const char **failure, workflow_task **next)
{
    const workflow_task *t = j->task;
    if (t->query) {
        process_query(w, t);
        return false;
    }
    keel_engine *e = NULL;
    keel_error err;
    bool hit = false;
    double replay_from = keel_wm_now_s();
    int rc = engine_for(w, t, &e, &hit, &err);
    atomic_fetch_add(hit ? &w->cache_hits : &w->cache_misses, 1);
    keel_wm_wft_cache(w->wm, t->workflow_type ? t->workflow_type->name : "", hit,
                      hit ? -1 : keel_wm_now_s() - replay_from);
    if (rc == KEEL_OK)
        rc = keel_engine_take_messages(e, t->messages, t->n_messages, &err);
    if (rc == KEEL_OK)
        rc = keel_engine_finish(e, &err);
    /* Local activities: run them here, while the task stays open (local_activity.h); a
     * workflow task heartbeat moves the work onto a new task, answered below instead. This
     * holds the executor thread. */
    if (rc == KEEL_OK && keel_la_outstanding(keel_engine_local_activities(e))) {
        keel_la_env env = {w->transport,    w->namespace,
                           w->identity,     w->task_queue,
                           w->sticky_queue, w->pool.types,
                           w->pool.n_types, t->workflow_type ? t->workflow_type->name : "",
                           &w->stopping};
        rc = keel_la_drive(&env, e, t, &j->la_task, &err);
        if (j->la_task)
            t = j->la_task;
    }
    if (rc != KEEL_OK) {
        if (rc == KEEL_EPRECONDITION)
            log_task(KEEL_LOG_INFO, "workflow task abandoned", t, err.message); /* it returns */
        else
            respond_failed(w, t, rc, err.message);
        if (rc != KEEL_EPRECONDITION)
            *failure = rc == KEEL_ENONDETERMINISM ? "NonDeterminismError" : "WorkflowError";
        keel_engine_free(e);
        return false;
    }
    const char *run_id = t->workflow_execution ? t->workflow_execution->run_id : NULL;
    j->e = e;
    j->cached = false;
    if (!keel_engine_closing(e) && w->sticky_queue && run_id && run_id[0]) {
        /* Back in the cache before answering, pinned: the server may send the run's next task
         * to our sticky queue the moment it accepts the answer, and the executor that gets it
         * must find the run (it waits while this task holds the run's busy mark); pinned, no
         * other thread's eviction frees it while the answer is in flight. */
        if (!keel_cache_put(w->cache, run_id, e, true)) {
            /* Out of memory: the engine is gone. The task times out, retried from history. */
            log_task(KEEL_LOG_ERROR, "out of memory caching a run; its task will be retried", t,
                     "");
            j->e = NULL;
            return false;
        }
        j->cached = true;
    }
    return start_answer(w, j, t, next);
}

/* The task is over: its metrics, and it is freed. */
static void end_task(keel_worker *w, wf_job *j, const char *failure)
{
    if (j->measured)
        keel_wm_wft_end(w->wm, j->task->workflow_type ? j->task->workflow_type->name : "",
                        keel_wm_now_s() - j->began, failure, keel_cache_size(w->cache),
                        keel_cache_evictions(w->cache));
    if (j->la_task)
        FREE_PB(j->la_task);
    FREE_PB(j->task);
    j->task = j->la_task = NULL;
}

/* Start on task t (the job owns it now), with the workflow task metrics around it (not for
 * legacy query tasks). Returns true while its answer is in flight; false when it is over
 * (*next as process() says). */
static bool begin_task(keel_worker *w, wf_job *j, workflow_task *t, workflow_task **next)
{
    j->task = t;
    j->la_task = NULL;
    j->e = NULL;
    j->cached = false;
    j->want_next = t->query == NULL;
    j->measured = w->wm != NULL && t->query == NULL;
    if (j->measured) {
        j->began = keel_wm_now_s();
        keel_wm_wft_begin(w->wm, t->workflow_type ? t->workflow_type->name : "",
                          keel_proto_timestamp_ms(t->scheduled_time),
                          keel_proto_timestamp_ms(t->started_time));
    }
    const char *failure = NULL;
    if (process(w, j, &failure, next))
        return true;
    end_task(w, j, failure);
    return false;
}

/* A task whose poll response was refused for nesting too deep (proto/depth.h), as far as it
 * could still be read: without its history. Fail it with why, so that the run's owner sees the
 * cause; a cached state of the run is dropped, as its next task must start over. */
static void refuse_task(keel_worker *w, const workflow_task *t, const char *why)
{
    if (t->task_token.len == 0) {
        log_line(KEEL_LOG_WARN, "workflow poll failed", why);
        return;
    }
    const char *run_id = t->workflow_execution ? t->workflow_execution->run_id : "";
    if (run_id && run_id[0])
        keel_engine_free(keel_cache_take(w->cache, run_id));
    if (t->query)
        respond_query(w, t, NULL, why);
    else
        respond_failed(w, t, KEEL_EPROTOCOL, why);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- slots: pollers and executors ---- */

/*
 * Workflow task t on an executor thread, for job j (its slot and its run's busy mark), then each
 * task of the same run the server hands back with the answer (return_new_workflow_task), until
 * none comes. Returns true when an answer is in flight: the job goes on where the answer is
 * settled (executor_thread). This is the place a task that must stay open re-enters (local
 * activities: run them here, heartbeat the task with an answer that asks for the next one
 * inline, and go round again with it).
 */
static bool run_workflow_task(keel_worker *w, wf_job *j, workflow_task *t)
{
    while (t != NULL) {
        workflow_task *next = NULL;
        if (begin_task(w, j, t, &next))
            return true;
        t = next;
        if (t)
            atomic_fetch_add(&w->wf_inline, 1);
    }
    return false;
}

/* An answer is back: settle it, then go on with the run's next task if it brought one. Returns
 * true while an answer of the job is in flight again. */
static bool resume_job(keel_worker *w, wf_job *j)
{
    workflow_task *next = NULL;
    if (settle_answer(w, j, &next))
        return true;
    end_task(w, j, NULL);
    if (next)
        atomic_fetch_add(&w->wf_inline, 1);
    return run_workflow_task(w, j, next);
}

/* Which queue the next poll serves (0 normal, 1 sticky), under lock: at least one poll of each
 * while runs are cached, then the sticky queue while the server reports a backlog on it, else
 * the kind with fewer polls in flight (the sticky one on a tie), as the official SDKs balance. */
static int choose_kind(const keel_worker *w)
{
    if (w->sticky_queue == NULL)
        return 0;
    if (w->polling[1] == 0)
        return 1;
    if (w->polling[0] == 0)
        return 0;
    if (w->sticky_backlog > 0)
        return 1;
    return w->polling[0] < w->polling[1] ? 0 : 1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The gauge of workflow pollers: the poll target split as choose_kind() splits it (under
 * lock). */
static void pollers_gauge(keel_worker *w)
{
    int target = w->scaler.target;
    if (target == w->gauge_target)
        return;
    w->gauge_target = target;
    int sticky = w->sticky_queue ? target - target / 2 : 0;
    keel_wm_pollers(w->wm, target - sticky, sticky);
}

static void wf_poll_done(void *userdata, int rc, keel_transport_reply *reply,
                         const keel_error *err);

/* Start one long poll of the given kind on p (under lock); the answer comes to wf_poll_done on
 * the transport's network thread. */
static int poll_workflow(keel_worker *w, wf_poll *p, int kind, keel_error *err)
{
    Temporal__Api__Taskqueue__V1__TaskQueue tq = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    if (kind == 1) {
        tq.name = w->sticky_queue;
        tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_STICKY;
        tq.normal_name = w->task_queue;
    } else {
        tq.name = w->task_queue;
        tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    }
    Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__POLL_WORKFLOW_TASK_QUEUE_REQUEST__INIT;
    req.namespace_ = (char *)w->namespace;
    req.task_queue = &tq;
    req.identity = w->identity;
    req.worker_instance_key = (char *)keel_heartbeat_instance_key(w->heartbeat);
    req.deployment_options = w->deployment_options; /* sticky polls too */
    keel_call_options co = {
        .timeout_ms = POLL_TIMEOUT_MS, .namespace = w->namespace, .cancel = p->cancel};
    p->kind = kind;
    atomic_fetch_add(&w->wf_polls, 1);
    return keel_transport_call_async_reply(w->transport, WF("PollWorkflowTaskQueue"),
                                           (ProtobufCMessage *)&req, &co, wf_poll_done, p, err);
}

/* Under lock: start polls while a slot is free and the target allows, or a queue has no poll in
 * flight (the official SDKs' balancers do the same: a target lowered while the normal queue's
 * long polls wait must not leave a sticky backlog without a poller until its tasks time out).
 * Nothing starts while stopping or during the backoff after a failed poll. */
static void pump_polls(keel_worker *w)
{
    if (w->n_wf_pollers == 0 || !w->polls || atomic_load(&w->stopping))
        return;
    if (w->backoff_until_ms > 0) {
        if (mono_ms() < w->backoff_until_ms)
            return;
        w->backoff_until_ms = 0;
    }
    for (;;) {
        bool under = w->polling[0] + w->polling[1] < w->scaler.target;
        bool lacking = w->sticky_queue && (w->polling[0] == 0 || w->polling[1] == 0);
        if (w->slots_free <= 0 || (!under && !lacking))
            return;
        wf_poll *p = NULL;
        for (int i = 0; p == NULL && i < w->n_wf_pollers; i++)
            if (!w->polls[i].busy)
                p = &w->polls[i];
        if (p == NULL)
            return; /* as many in flight as the maximum */
        int kind = choose_kind(w);
        keel_error err;
        if (poll_workflow(w, p, kind, &err) != KEEL_OK) {
            if (err.code != KEEL_ECANCELLED) {
                log_line(KEEL_LOG_WARN, "workflow poll failed", err.message);
                w->backoff_until_ms = mono_ms() + POLL_ERROR_BACKOFF_MS;
                pthread_cond_broadcast(&w->cond);
            }
            return;
        }
        p->busy = true;
        w->slots_free--;
        w->polling[kind]++;
    }
}

/* A poll is over (on the transport's network thread: short, no I/O). An answer goes undecoded, with
 * its slot, to the executors, which decode it (finish_poll); a failed poll gives its slot back,
 * and an error holds new polls back for POLL_ERROR_BACKOFF_MS (no hot loop while the server is
 * down; the poll thread starts them again after it). */
static void wf_poll_done(void *userdata, int rc, keel_transport_reply *reply, const keel_error *err)
{
    wf_poll *p = userdata;
    keel_worker *w = p->w;
    bool failed = rc != KEEL_OK && rc != KEEL_ETIMEOUT && rc != KEEL_ECANCELLED;
    if (failed)
        log_line(KEEL_LOG_WARN, "workflow poll failed", err->message);
    if (rc == KEEL_ETIMEOUT)
        keel_wm_wf_poll(w->wm, false);
    pthread_mutex_lock(&w->lock);
    w->polling[p->kind]--;
    p->busy = false;
    if (rc == KEEL_OK && w->n_replies < (size_t)w->n_slots) {
        w->replies[w->n_replies++] = (wf_reply){reply, p->kind};
        reply = NULL;
        pthread_cond_signal(&w->exec_cond);
    } else {
        w->slots_free++;
        if (failed) {
            keel_poll_scaler_error(&w->scaler, rc);
            pollers_gauge(w);
            w->backoff_until_ms = mono_ms() + POLL_ERROR_BACKOFF_MS;
        }
    }
    pump_polls(w);
    if (failed || (atomic_load(&w->stopping) && w->polling[0] + w->polling[1] == 0))
        pthread_cond_broadcast(&w->cond); /* the poll thread: a backoff, or the last poll */
    pthread_mutex_unlock(&w->lock);
    if (reply)
        keel_transport_reply_free(reply); /* cannot happen: each reply holds a slot */
}

/* An executor decodes a poll's answer (without the lock). A task is queued with its slot (the
 * caller runs it, or another executor, one run on one thread); an empty poll gives the slot
 * back. Either way the poll scaler hears of it. */
static void finish_poll(keel_worker *w, wf_reply r)
{
    workflow_task *t = NULL, *partial = NULL;
    keel_error err;
    int rc = keel_transport_reply_decode(
        r.reply, &temporal__api__workflowservice__v1__poll_workflow_task_queue_response__descriptor,
        (ProtobufCMessage **)&t, (ProtobufCMessage **)&partial, &err);
    bool got = rc == KEEL_OK && t->task_token.len > 0;
    if (partial != NULL) {
        /* A task came, but it nests too deep to be read: fail it and poll on. */
        refuse_task(w, partial, err.message);
        FREE_PB(partial);
    } else if (rc == KEEL_OK) {
        keel_wm_wf_poll(w->wm, got);
    } else {
        log_line(KEEL_LOG_WARN, "workflow poll failed", err.message);
    }
    if (got)
        atomic_store(&w->poll_ms[r.kind], keel_heartbeat_clock_ms());
    pthread_mutex_lock(&w->lock);
    if (rc == KEEL_OK) {
        const Temporal__Api__Taskqueue__V1__PollerScalingDecision *d = t->poller_scaling_decision;
        keel_poll_scaler_result(&w->scaler, got, d != NULL,
                                d ? d->poll_request_delta_suggestion : 0, mono_ms());
        pollers_gauge(w);
        if (r.kind == 1)
            w->sticky_backlog = got ? t->backlog_count_hint : 0;
    } else if (partial == NULL) {
        keel_poll_scaler_error(&w->scaler, rc);
        pollers_gauge(w);
        w->backoff_until_ms = mono_ms() + POLL_ERROR_BACKOFF_MS;
        pthread_cond_broadcast(&w->cond);
    }
    if (got) {
        w->queue[w->n_queue++] = t; /* the slot goes with the task */
        t = NULL;
    } else {
        w->slots_free++;
    }
    pump_polls(w);
    pthread_mutex_unlock(&w->lock);
    if (t)
        FREE_PB(t);
}

/* The one thread behind the polls: starts them when a backoff after a failed poll is over (every
 * other change that allows a poll starts it where it happens), and at shutdown waits for the
 * cancelled polls to come back. */
static void *poll_thread(void *arg)
{
    wf_thread_arg *a = arg;
    keel_worker *w = a->w;
    pthread_mutex_lock(&w->lock);
    while (!atomic_load(&w->stopping)) {
        pump_polls(w);
        if (w->backoff_until_ms > 0) {
            keel_cond_wait_ms(&w->cond, &w->lock, w->backoff_until_ms - mono_ms());
        } else {
            pthread_cond_wait(&w->cond, &w->lock);
        }
    }
    while (w->polling[0] + w->polling[1] > 0)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static const char *run_of(const workflow_task *t)
{
    return t->workflow_execution && t->workflow_execution->run_id ? t->workflow_execution->run_id
                                                                  : "";
}

/* Under lock: the first queued task whose run no task in hand is on (-1: none). */
static ptrdiff_t next_runnable(const keel_worker *w)
{
    for (size_t i = 0; i < w->n_queue; i++) {
        const char *run = run_of(w->queue[i]);
        bool busy = false;
        for (int j = 0; run[0] && !busy && j < w->n_slots; j++)
            busy = w->jobs[j].run && strcmp(w->jobs[j].run, run) == 0;
        if (!busy)
            return (ptrdiff_t)i;
    }
    return -1;
}

/* Under lock: a job for task t, with the run's busy mark. There is always a free one: every job
 * in use holds a slot, and so does t. */
static wf_job *job_take(keel_worker *w, const workflow_task *t)
{
    wf_job *j = NULL;
    for (int i = 0; j == NULL && i < w->n_slots; i++)
        if (!w->jobs[i].in_use)
            j = &w->jobs[i];
    j->in_use = true;
    /* Out of memory: the run goes unmarked; its tasks still come one at a time. */
    j->run = run_of(t)[0] ? strdup(run_of(t)) : NULL;
    w->jobs_used++;
    atomic_fetch_add(&w->wf_busy, 1);
    return j;
}

/* Under lock: the job is over; its slot and its run go back. */
static void job_release(keel_worker *w, wf_job *j)
{
    free(j->run);
    j->run = NULL;
    j->in_use = false;
    w->jobs_used--;
    atomic_fetch_sub(&w->wf_busy, 1);
    w->slots_free++;
    pump_polls(w);
    /* A stopping executor waits for the last job: all of them go. A queued task may have
     * waited for this run: one executor is enough, and it takes every runnable task in turn. */
    if (w->pollers_done && w->jobs_used == 0)
        pthread_cond_broadcast(&w->exec_cond);
    else if (w->n_queue > 0)
        pthread_cond_signal(&w->exec_cond);
}

/* Executors settle answers first (so that a run's state is settled before its next task is
 * looked at), then decode poll answers, then work on queued tasks. */
static void *executor_thread(void *arg)
{
    wf_thread_arg *a = arg;
    keel_worker *w = a->w;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (w->n_answers > 0) {
            wf_job *j = w->answers[0];
            memmove(w->answers, w->answers + 1, (w->n_answers - 1) * sizeof *w->answers);
            w->n_answers--;
            pthread_mutex_unlock(&w->lock);
            bool flying = resume_job(w, j);
            pthread_mutex_lock(&w->lock);
            if (!flying)
                job_release(w, j);
            continue;
        }
        if (w->n_replies > 0) {
            wf_reply r = w->replies[0];
            memmove(w->replies, w->replies + 1, (w->n_replies - 1) * sizeof *w->replies);
            w->n_replies--;
            pthread_mutex_unlock(&w->lock);
            finish_poll(w, r);
            pthread_mutex_lock(&w->lock);
            continue;
        }
        ptrdiff_t i = next_runnable(w);
        if (i < 0) {
            if (w->pollers_done && w->n_queue == 0 && w->eager_reserved == 0 && w->jobs_used == 0)
                break; /* stopping, and every polled (or eager) task was answered and settled */
            pthread_cond_wait(&w->exec_cond, &w->lock);
            continue;
        }
        workflow_task *t = w->queue[i];
        memmove(w->queue + i, w->queue + i + 1, (w->n_queue - (size_t)i - 1) * sizeof *w->queue);
        w->n_queue--;
        wf_job *j = job_take(w, t);
        pthread_mutex_unlock(&w->lock);
        bool flying = run_workflow_task(w, j, t);
        pthread_mutex_lock(&w->lock);
        if (!flying)
            job_release(w, j);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- eager workflow start (client.h): the worker's side ---- */

/* A slot for an eager start, now or never: free, and the worker not stopping. */
static bool eager_try_reserve(void *ctx)
{
    keel_worker *w = ctx;
    pthread_mutex_lock(&w->lock);
    bool ok = !atomic_load(&w->stopping) && !w->pollers_done && w->slots_free > 0;
    if (ok) {
        w->slots_free--;
        w->eager_reserved++;
    }
    pthread_mutex_unlock(&w->lock);
    return ok;
}

/* The start's first workflow task, with the reserved slot: queued for the executors as a polled
 * normal-queue task is (its answer names the sticky queue, so later tasks go there). */
static void eager_deliver(void *ctx, ProtobufCMessage *task)
{
    keel_worker *w = ctx;
    atomic_fetch_add(&w->wf_eager, 1);
    pthread_mutex_lock(&w->lock);
    w->eager_reserved--;
    w->queue[w->n_queue++] = (workflow_task *)task;
    pthread_cond_signal(&w->exec_cond);
    pthread_mutex_unlock(&w->lock);
}

static void eager_release(void *ctx)
{
    keel_worker *w = ctx;
    pthread_mutex_lock(&w->lock);
    w->eager_reserved--;
    w->slots_free++;
    pump_polls(w);                         /* the slot goes back to polling */
    pthread_cond_broadcast(&w->cond);      /* the poll thread, when stopping */
    pthread_cond_broadcast(&w->exec_cond); /* a stopping executor may wait for this */
    pthread_mutex_unlock(&w->lock);
}

/* Offer the worker's slots to eager starts on its client (only a worker with workflows). An
 * out-of-memory failure only means starts are not eager. */
static void eager_register(keel_worker *w)
{
    if (w->n_wf_pollers == 0)
        return;
    keel_eager_target t = {.ctx = w,
                           .task_queue = w->task_queue,
                           .deployment_options = (const ProtobufCMessage *)w->deployment_options,
                           .try_reserve = eager_try_reserve,
                           .deliver = eager_deliver,
                           .release = eager_release};
    w->eager_registered = keel_client_eager_add(w->client, &t) == KEEL_OK;
}

static void eager_unregister(keel_worker *w)
{
    if (w->eager_registered)
        keel_client_eager_remove(w->client, w);
    w->eager_registered = false;
}

/* ---- starting and stopping ---- */

int keel_worker_start(keel_worker *w, keel_error *err)
{
    if (w->running)
        return KEEL_OK;
    /* One poll thread (backoffs, shutdown) and the executors; the polls themselves run on the
     * transport's network thread. */
    size_t n_poll = w->n_wf_pollers ? 1 : 0;
    size_t n_exec = w->n_wf_pollers ? (size_t)w->n_exec : 0;
    size_t n_wf = n_poll + n_exec;
    size_t n = n_wf + (size_t)w->n_activity_threads;
    w->threads = calloc(n, sizeof *w->threads);
    w->cancels = calloc(n, sizeof *w->cancels);
    w->wf_args = calloc(n, sizeof *w->wf_args);
    w->activity_args = calloc(n, sizeof *w->activity_args);
    w->polls = calloc((size_t)w->n_wf_pollers + 1, sizeof *w->polls);
    if (!w->threads || !w->cancels || !w->wf_args || !w->activity_args || !w->polls)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory starting the worker");
    for (int i = 0; i < w->n_wf_pollers; i++) {
        w->polls[i] = (wf_poll){.w = w, .cancel = keel_call_cancel_new()};
        if (w->polls[i].cancel == NULL)
            return keel_error_set(err, KEEL_ENOMEM, "out of memory starting the worker");
    }
    w->backoff_until_ms = 0;
    atomic_store(&w->stopping, false);
    w->pollers_done = false;
    w->running = true;
    int target = w->n_wf_pollers ? w->scaler.target : 0;
    int sticky_pollers = w->sticky_queue ? target - target / 2 : 0;
    w->gauge_target = target;
    keel_wm_started(w->wm, target - sticky_pollers, sticky_pollers,
                    w->n_activity_threads ? w->pool.scaler.target : 0,
                    w->n_wf_pollers ? w->n_slots : 0, w->n_activity_threads);
    for (size_t i = 0; i < n; i++) {
        if ((w->cancels[i] = keel_call_cancel_new()) == NULL) {
            keel_worker_stop(w);
            return keel_error_set(err, KEEL_ENOMEM, "out of memory starting the worker");
        }
        int rc;
        if (i < n_poll) {
            w->wf_args[i] = (wf_thread_arg){w, NULL, 0};
            rc = pthread_create(&w->threads[i], NULL, poll_thread, &w->wf_args[i]);
        } else if (i < n_wf) {
            w->wf_args[i] = (wf_thread_arg){w, NULL, (int)(i - n_poll)};
            rc = pthread_create(&w->threads[i], NULL, executor_thread, &w->wf_args[i]);
        } else {
            w->activity_args[i] =
                (keel_activity_thread_arg){&w->pool, w->cancels[i], (int)(i - n_wf)};
            rc = pthread_create(&w->threads[i], NULL, keel_activity_thread, &w->activity_args[i]);
        }
        if (rc != 0) {
            keel_call_cancel_free(w->cancels[i]);
            w->cancels[i] = NULL;
            keel_worker_stop(w);
            return keel_error_set(err, KEEL_EIO, "cannot start worker thread %zu: %s", i + 1,
                                  strerror(rc));
        }
        w->n_threads = i + 1;
    }
    int rc = keel_heartbeat_start(w->heartbeat, &w->stopping, err);
    if (rc != KEEL_OK)
        keel_worker_stop(w);
    else
        eager_register(w);
    return rc;
}

/* Tell the server this worker is going, so that it stops routing runs to our sticky queue and
 * hands them to the normal queue at once instead of after the sticky timeout, and drops the
 * worker from its list (the final heartbeat, status SHUTDOWN). */
static void shutdown_worker(keel_worker *w)
{
    Temporal__Api__Workflowservice__V1__ShutdownWorkerRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__SHUTDOWN_WORKER_REQUEST__INIT;
    req.namespace_ = (char *)w->namespace;
    req.sticky_task_queue = w->sticky_queue ? w->sticky_queue : "";
    req.identity = w->identity;
    req.reason = "graceful shutdown";
    req.task_queue = w->task_queue;
    req.worker_instance_key = (char *)keel_heartbeat_instance_key(w->heartbeat);
    Temporal__Api__Enums__V1__TaskQueueType types[2];
    if (w->n_wf_pollers > 0)
        types[req.n_task_queue_types++] =
            TEMPORAL__API__ENUMS__V1__TASK_QUEUE_TYPE__TASK_QUEUE_TYPE_WORKFLOW;
    if (w->n_activity_threads > 0)
        types[req.n_task_queue_types++] =
            TEMPORAL__API__ENUMS__V1__TASK_QUEUE_TYPE__TASK_QUEUE_TYPE_ACTIVITY;
    req.task_queue_types = types;
    req.worker_heartbeat = keel_heartbeat_build(
        w->heartbeat, TEMPORAL__API__ENUMS__V1__WORKER_STATUS__WORKER_STATUS_SHUTDOWN);
    keel_call_options co = {.timeout_ms = 5000, .namespace = w->namespace};
    ProtobufCMessage *resp = NULL;
    keel_error err;
    if (keel_transport_call(
            w->transport, WF("ShutdownWorker"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__shutdown_worker_response__descriptor, &resp, &co,
            &err) != KEEL_OK)
        log_line(w->sticky_queue ? KEEL_LOG_INFO : KEEL_LOG_DEBUG,
                 w->sticky_queue ? "ShutdownWorker failed; sticky tasks move after their timeout"
                                 : "ShutdownWorker failed",
                 err.message);
    if (resp)
        FREE_PB(resp);
    if (req.worker_heartbeat)
        FREE_PB(req.worker_heartbeat);
}

void keel_worker_stop(keel_worker *w)
{
    if (w == NULL || !w->running)
        return;
    eager_unregister(w);
    /* No new polls; polls in flight are cancelled; tasks being worked on finish first. */
    pthread_mutex_lock(&w->lock);
    atomic_store(&w->stopping, true);
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < w->n_threads; i++)
        keel_call_cancel_trigger(w->cancels[i]);
    for (int i = 0; w->polls && i < w->n_wf_pollers; i++)
        keel_call_cancel_trigger(w->polls[i].cancel);
    pthread_mutex_lock(&w->lock);
    pthread_cond_broadcast(&w->cond);
    pthread_cond_broadcast(&w->exec_cond);
    pthread_mutex_unlock(&w->lock);
    keel_activity_pool_wake(&w->pool);
    /* The polls stop (a task a poll brought meanwhile is queued), then the executors answer
     * every queued task, settle every answer in flight and stop. Then no answer of ours can name
     * the sticky queue again, so it goes now, before the activities' grace period: a run cached
     * here whose activity completes during the grace (often one this worker runs) goes to the
     * normal queue at once, instead of waiting on a sticky queue nobody polls for the sticky
     * schedule-to-start timeout. */
    size_t n_pollers = w->n_wf_pollers && w->n_threads > 0 ? 1 : 0;
    size_t n_wf = n_pollers + (w->n_wf_pollers ? (size_t)w->n_exec : 0);
    if (n_wf > w->n_threads)
        n_wf = w->n_threads;
    for (size_t i = 0; i < n_pollers; i++)
        pthread_join(w->threads[i], NULL);
    pthread_mutex_lock(&w->lock);
    w->pollers_done = true;
    pthread_cond_broadcast(&w->exec_cond);
    pthread_mutex_unlock(&w->lock);
    for (size_t i = n_pollers; i < n_wf; i++)
        pthread_join(w->threads[i], NULL);
    keel_heartbeat_stop(w->heartbeat);
    shutdown_worker(w);
    /* Activities get the grace period; then their heartbeats tell them to hand back. */
    for (int64_t waited = 0;
         atomic_load(&w->pool.busy) > 0 && (w->grace_ms < 0 || waited < w->grace_ms); waited += 20)
        sleep_ms(20);
    if (atomic_load(&w->pool.busy) > 0)
        keel_log(KEEL_LOG_WARN, "worker", "shutdown grace over: handing running activities back",
                 NULL);
    /* Also for a task whose poll returned just now and has not started running yet. */
    atomic_store(&w->pool.abandon, true);
    keel_activity_pool_wake(&w->pool);
    for (size_t i = n_wf; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    atomic_store(&w->pool.abandon, false);
    for (size_t i = 0; i < w->n_threads; i++)
        keel_call_cancel_free(w->cancels[i]);
    for (int i = 0; w->polls && i < w->n_wf_pollers; i++)
        keel_call_cancel_free(w->polls[i].cancel);
    free(w->polls);
    w->polls = NULL;
    free(w->threads);
    free(w->cancels);
    free(w->wf_args);
    free(w->activity_args);
    w->threads = NULL;
    w->cancels = NULL;
    w->wf_args = NULL;
    w->activity_args = NULL;
    w->n_threads = 0;
    w->running = false;
}

void keel_worker_free(keel_worker *w)
{
    if (w == NULL)
        return;
    keel_worker_stop(w);
    /* Left only by a start that failed before any thread ran (stop frees and clears them). */
    free(w->threads);
    free(w->cancels);
    free(w->wf_args);
    free(w->activity_args);
    for (int i = 0; w->polls && i < w->n_wf_pollers; i++)
        keel_call_cancel_free(w->polls[i].cancel);
    free(w->polls);
    keel_heartbeat_free(w->heartbeat);
    for (size_t i = 0; w->queue && i < w->n_queue; i++)
        FREE_PB(w->queue[i]);
    free(w->queue);
    for (size_t i = 0; w->replies && i < w->n_replies; i++)
        keel_transport_reply_free(w->replies[i].reply);
    free(w->replies);
    free(w->jobs);
    free(w->answers);
    keel_activity_pool_destroy(&w->pool);
    if (w->locks_ready) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        pthread_cond_destroy(&w->exec_cond);
    }
    keel_cache_free(w->cache);
    keel_worker_metrics_free(w->wm);
    free(w->deployment_name);
    free(w->build_id);
    free(w->behaviors);
    free(w->sticky_queue);
    free(w->task_queue);
    free(w->identity);
    free(w);
}

void keel_worker_get_stats(keel_worker *w, keel_worker_stats *out)
{
    out->workflow_tasks_completed = atomic_load(&w->wf_completed);
    out->workflow_tasks_failed = atomic_load(&w->wf_failed);
    out->activities_completed = atomic_load(&w->pool.completed);
    out->activities_failed = atomic_load(&w->pool.failed);
    out->cache_hits = atomic_load(&w->cache_hits);
    out->cache_misses = atomic_load(&w->cache_misses);
    out->cache_evictions = keel_cache_evictions(w->cache);
    out->cached_runs = keel_cache_size(w->cache);
    out->activities_eager = atomic_load(&w->pool.eager_count);
    out->workflow_tasks_inline = atomic_load(&w->wf_inline);
    out->workflow_polls = atomic_load(&w->wf_polls);
    out->workflow_tasks_eager = atomic_load(&w->wf_eager);
    out->activity_polls = atomic_load(&w->pool.polls_count);
    pthread_mutex_lock(&w->lock);
    out->workflow_pollers = w->n_wf_pollers ? w->scaler.target : 0;
    out->workflow_pollers_peak = w->n_wf_pollers ? w->scaler.peak : 0;
    out->workflow_answers_peak = w->answers_peak;
    out->workflow_task_threads = w->n_wf_pollers ? w->n_exec : 0;
    pthread_mutex_unlock(&w->lock);
    pthread_mutex_lock(&w->pool.lock);
    out->activity_pollers = w->n_activity_threads ? w->pool.scaler.target : 0;
    out->activity_pollers_peak = w->n_activity_threads ? w->pool.scaler.peak : 0;
    pthread_mutex_unlock(&w->pool.lock);
}
