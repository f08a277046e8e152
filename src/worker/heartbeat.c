/*
 * heartbeat - RecordWorkerHeartbeat on a thread of its own (see heartbeat.h).
 */
#include "worker/heartbeat.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "keel/version.h"
#include "log/log.h"
#include "proto/proto.h"
#include "temporal/api/workflowservice/v1/request_response.pb-c.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

#define HEARTBEAT_RPC_TIMEOUT_MS 10000

struct keel_heartbeat {
    keel_transport *transport;
    char *namespace_, *task_queue, *identity;
    const char *deployment_name, *build_id; /* borrowed from the worker; NULL: none */
    char instance_key[37], grouping_key[37];
    char host[256], pid[24];
    int64_t interval_ms; /* negative: no thread */
    int64_t start_ms;
    keel_worker_load_fn load;
    void *arg;

    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t wake;
    bool stop, running;
    pthread_t thread;
    keel_call_cancel *cancel; /* ends a call in flight when the thread is stopped */
    atomic_bool *stopping;
    int64_t last_sent_ms;      /* wall clock of the last heartbeat built, 0 before the first */
    keel_worker_load previous; /* at the last heartbeat, for the per-interval counts */
    uint64_t cpu_busy, cpu_total;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t keel_heartbeat_clock_ms(void)
{
    return wall_ms();
}

keel_heartbeat *keel_heartbeat_new(keel_transport *t, const char *namespace_,
                                   const char *task_queue, const char *identity,
                                   int64_t interval_ms, keel_worker_load_fn load, void *arg)
{
    keel_heartbeat *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    keel_error err;
    h->transport = t;
    h->namespace_ = strdup(namespace_);
    h->task_queue = strdup(task_queue);
    h->identity = strdup(identity);
    h->interval_ms = interval_ms == 0 ? KEEL_HEARTBEAT_DEFAULT_MS : interval_ms;
    h->start_ms = wall_ms();
    h->load = load;
    h->arg = arg;
    if (gethostname(h->host, sizeof h->host - 1) != 0)
        strcpy(h->host, "unknown-host");
    snprintf(h->pid, sizeof h->pid, "%ld", (long)getpid());
    if (!h->namespace_ || !h->task_queue || !h->identity ||
        keel_client_uuid4(h->instance_key, &err) != KEEL_OK ||
        keel_client_uuid4(h->grouping_key, &err) != KEEL_OK) {
        free(h->namespace_);
        free(h->task_queue);
        free(h->identity);
        free(h);
        return NULL;
    }
    if ((h->cancel = keel_call_cancel_new()) == NULL) {
        free(h->namespace_);
        free(h->task_queue);
        free(h->identity);
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &ca);
    pthread_condattr_destroy(&ca);
    return h;
}

const char *keel_heartbeat_instance_key(const keel_heartbeat *h)
{
    return h->instance_key;
}

/* The host's CPU use since the last reading (0-1) from /proc/stat, and its memory use from
 * /proc/meminfo; 0 where they cannot be read. Called with mu held. */
static float host_cpu(keel_heartbeat *h)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return 0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return 0;
    uint64_t total = 0;
    for (int i = 0; i < 8; i++)
        total += v[i];
    uint64_t busy = total - v[3] - v[4]; /* not idle, not waiting for I/O */
    float use = 0;
    if (h->cpu_total > 0 && total > h->cpu_total)
        use = (float)(busy - h->cpu_busy) / (float)(total - h->cpu_total);
    h->cpu_busy = busy;
    h->cpu_total = total;
    return use < 0 ? 0 : use > 1 ? 1 : use;
}

static float host_mem(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL)
        return 0;
    char line[128];
    unsigned long long total = 0, avail = 0, kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
            total = kb;
        else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            avail = kb;
    }
    fclose(f);
    return total > 0 && avail <= total ? (float)(total - avail) / (float)total : 0;
}

static Google__Protobuf__Timestamp *new_timestamp(int64_t ms)
{
    Google__Protobuf__Timestamp *ts = malloc(sizeof *ts);
    if (ts) {
        google__protobuf__timestamp__init(ts);
        ts->seconds = ms / 1000;
        ts->nanos = (int32_t)(ms % 1000) * 1000000;
    }
    return ts;
}

static int32_t clamp32(uint64_t v)
{
    return v > INT32_MAX ? INT32_MAX : (int32_t)v;
}

static Temporal__Api__Worker__V1__WorkerSlotsInfo *new_slots(int slots, int used,
                                                             uint64_t processed, uint64_t failed,
                                                             uint64_t prev_processed,
                                                             uint64_t prev_failed)
{
    Temporal__Api__Worker__V1__WorkerSlotsInfo *s = malloc(sizeof *s);
    if (s == NULL)
        return NULL;
    temporal__api__worker__v1__worker_slots_info__init(s);
    s->current_used_slots = used < 0 ? 0 : used;
    s->current_available_slots = slots > used ? slots - used : 0;
    s->slot_supplier_kind = strdup("Fixed");
    s->total_processed_tasks = clamp32(processed);
    s->total_failed_tasks = clamp32(failed);
    s->last_interval_processed_tasks =
        clamp32(processed >= prev_processed ? processed - prev_processed : 0);
    s->last_interval_failure_tasks = clamp32(failed >= prev_failed ? failed - prev_failed : 0);
    return s;
}

static Temporal__Api__Worker__V1__WorkerPollerInfo *new_pollers(int n, int64_t last_ms)
{
    Temporal__Api__Worker__V1__WorkerPollerInfo *p = malloc(sizeof *p);
    if (p == NULL)
        return NULL;
    temporal__api__worker__v1__worker_poller_info__init(p);
    p->current_pollers = n;
    if (last_ms > 0)
        p->last_successful_poll_time = new_timestamp(last_ms);
    return p;
}

keel_pb_worker_heartbeat *keel_heartbeat_build(keel_heartbeat *h, int status)
{
    keel_worker_load l = {0};
    if (h->load)
        h->load(h->arg, &l);
    keel_pb_worker_heartbeat *hb = malloc(sizeof *hb);
    Temporal__Api__Worker__V1__WorkerHostInfo *host = malloc(sizeof *host);
    if (hb == NULL || host == NULL) {
        free(hb);
        free(host);
        return NULL;
    }
    temporal__api__worker__v1__worker_heartbeat__init(hb);
    temporal__api__worker__v1__worker_host_info__init(host);
    hb->host_info = host;
    pthread_mutex_lock(&h->mu);
    int64_t now = wall_ms();
    host->host_name = strdup(h->host);
    host->process_id = strdup(h->pid);
    host->worker_grouping_key = strdup(h->grouping_key);
    host->current_host_cpu_usage = host_cpu(h);
    host->current_host_mem_usage = host_mem();
    hb->worker_instance_key = strdup(h->instance_key);
    hb->worker_identity = strdup(h->identity);
    hb->task_queue = strdup(h->task_queue);
    hb->sdk_name = strdup(KEEL_SDK_NAME);
    hb->sdk_version = strdup(KEEL_VERSION);
    if (h->deployment_name && (hb->deployment_version = malloc(sizeof *hb->deployment_version))) {
        temporal__api__deployment__v1__worker_deployment_version__init(hb->deployment_version);
        hb->deployment_version->deployment_name = strdup(h->deployment_name);
        hb->deployment_version->build_id = strdup(h->build_id);
    }
    hb->status = (Temporal__Api__Enums__V1__WorkerStatus)status;
    hb->start_time = new_timestamp(h->start_ms);
    hb->heartbeat_time = new_timestamp(now);
    if (h->last_sent_ms > 0 && (hb->elapsed_since_last_heartbeat =
                                    malloc(sizeof(*hb->elapsed_since_last_heartbeat))) != NULL) {
        google__protobuf__duration__init(hb->elapsed_since_last_heartbeat);
        keel_proto_duration_set(hb->elapsed_since_last_heartbeat, now - h->last_sent_ms);
    }
    const keel_worker_load *p = &h->previous;
    if (l.wf_slots > 0) {
        hb->workflow_task_slots_info = new_slots(l.wf_slots, l.wf_used, l.wf_processed, l.wf_failed,
                                                 p->wf_processed, p->wf_failed);
        hb->workflow_poller_info = new_pollers(l.wf_pollers, l.wf_poll_ms);
        if (l.sticky_pollers > 0)
            hb->workflow_sticky_poller_info = new_pollers(l.sticky_pollers, l.sticky_poll_ms);
    }
    if (l.activity_slots > 0) {
        hb->activity_task_slots_info =
            new_slots(l.activity_slots, l.activity_used, l.activity_processed, l.activity_failed,
                      p->activity_processed, p->activity_failed);
        hb->activity_poller_info = new_pollers(l.activity_pollers, l.activity_poll_ms);
    }
    hb->total_sticky_cache_hit = clamp32(l.cache_hits);
    hb->total_sticky_cache_miss = clamp32(l.cache_misses);
    hb->current_sticky_cache_size = clamp32(l.cache_size);
    h->last_sent_ms = now;
    h->previous = l;
    pthread_mutex_unlock(&h->mu);
    if (!host->host_name || !host->process_id || !host->worker_grouping_key ||
        !hb->worker_instance_key || !hb->worker_identity || !hb->task_queue || !hb->sdk_name ||
        !hb->sdk_version || !hb->start_time || !hb->heartbeat_time ||
        (h->deployment_name &&
         (!hb->deployment_version || !hb->deployment_version->deployment_name ||
          !hb->deployment_version->build_id))) {
        FREE_PB(hb);
        return NULL;
    }
    return hb;
}

/* Whether the namespace takes worker heartbeats (its capabilities say so). */
static bool namespace_takes_heartbeats(keel_heartbeat *h)
{
    Temporal__Api__Workflowservice__V1__DescribeNamespaceRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_NAMESPACE_REQUEST__INIT;
    req.namespace_ = h->namespace_;
    Temporal__Api__Workflowservice__V1__DescribeNamespaceResponse *resp = NULL;
    keel_call_options co = {.timeout_ms = HEARTBEAT_RPC_TIMEOUT_MS,
                            .retry = true,
                            .namespace = h->namespace_,
                            .cancel = h->cancel};
    keel_error err;
    int rc = keel_transport_call(
        h->transport, WF("DescribeNamespace"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__describe_namespace_response__descriptor,
        (ProtobufCMessage **)&resp, &co, &err);
    if (rc == KEEL_ECANCELLED)
        return false;
    if (rc != KEEL_OK) {
        keel_log(KEEL_LOG_WARN, "worker", "no worker heartbeats: cannot describe the namespace",
                 "error", err.message, NULL);
        return false;
    }
    bool yes = resp->namespace_info && resp->namespace_info->capabilities &&
               resp->namespace_info->capabilities->worker_heartbeats;
    FREE_PB(resp);
    if (!yes)
        keel_log(KEEL_LOG_INFO, "worker",
                 "no worker heartbeats: the namespace does not take them "
                 "(frontend.WorkerHeartbeatsEnabled)",
                 "namespace", h->namespace_, NULL);
    return yes;
}

/* Send one heartbeat; false when the server does not have the call (stop sending). */
static bool send_one(keel_heartbeat *h)
{
    int status = atomic_load(h->stopping)
                     ? TEMPORAL__API__ENUMS__V1__WORKER_STATUS__WORKER_STATUS_SHUTTING_DOWN
                     : TEMPORAL__API__ENUMS__V1__WORKER_STATUS__WORKER_STATUS_RUNNING;
    keel_pb_worker_heartbeat *hb = keel_heartbeat_build(h, status);
    if (hb == NULL)
        return true; /* out of memory now; the next one may do */
    Temporal__Api__Workflowservice__V1__RecordWorkerHeartbeatRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RECORD_WORKER_HEARTBEAT_REQUEST__INIT;
    char resource[64];
    snprintf(resource, sizeof resource, "worker:%s", h->grouping_key);
    req.namespace_ = h->namespace_;
    req.identity = h->identity;
    req.worker_heartbeat = &hb;
    req.n_worker_heartbeat = 1;
    req.resource_id = resource;
    ProtobufCMessage *resp = NULL;
    keel_call_options co = {
        .timeout_ms = HEARTBEAT_RPC_TIMEOUT_MS, .namespace = h->namespace_, .cancel = h->cancel};
    keel_error err;
    int rc = keel_transport_call(
        h->transport, WF("RecordWorkerHeartbeat"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__record_worker_heartbeat_response__descriptor, &resp,
        &co, &err);
    if (resp)
        FREE_PB(resp);
    FREE_PB(hb);
    if (rc == KEEL_EUNIMPLEMENTED) {
        keel_log(KEEL_LOG_INFO, "worker", "no worker heartbeats: the server does not take them",
                 "error", err.message, NULL);
        return false;
    }
    if (rc == KEEL_ECANCELLED)
        return false;
    if (rc != KEEL_OK)
        keel_log(KEEL_LOG_WARN, "worker", "worker heartbeat failed", "error", err.message, NULL);
    return true;
}

static void *heartbeat_thread(void *arg)
{
    keel_heartbeat *h = arg;
    bool on = namespace_takes_heartbeats(h);
    pthread_mutex_lock(&h->mu);
    while (on && !h->stop) {
        pthread_mutex_unlock(&h->mu);
        on = send_one(h);
        pthread_mutex_lock(&h->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += h->interval_ms / 1000;
        until.tv_nsec += (h->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!h->stop && pthread_cond_timedwait(&h->wake, &h->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int keel_heartbeat_start(keel_heartbeat *h, atomic_bool *stopping, keel_error *err)
{
    h->stopping = stopping;
    if (h->interval_ms < 0 || h->running)
        return KEEL_OK;
    if (keel_call_cancel_triggered(h->cancel)) {
        /* Started again after a stop: the old handle cancels every call made with it. */
        keel_call_cancel *fresh = keel_call_cancel_new();
        if (fresh == NULL)
            return keel_error_set(err, KEEL_ENOMEM, "out of memory starting worker heartbeats");
        keel_call_cancel_free(h->cancel);
        h->cancel = fresh;
    }
    h->stop = false;
    int rc = pthread_create(&h->thread, NULL, heartbeat_thread, h);
    if (rc != 0)
        return keel_error_set(err, KEEL_EIO, "cannot start the worker heartbeat thread: %s",
                              strerror(rc));
    h->running = true;
    return KEEL_OK;
}

void keel_heartbeat_stop(keel_heartbeat *h)
{
    if (h == NULL || !h->running)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_broadcast(&h->wake);
    pthread_mutex_unlock(&h->mu);
    keel_call_cancel_trigger(h->cancel);
    pthread_join(h->thread, NULL);
    h->running = false;
}

void keel_heartbeat_set_deployment(keel_heartbeat *h, const char *deployment_name,
                                   const char *build_id)
{
    pthread_mutex_lock(&h->mu);
    h->deployment_name = deployment_name;
    h->build_id = build_id;
    pthread_mutex_unlock(&h->mu);
}

void keel_heartbeat_free(keel_heartbeat *h)
{
    if (h == NULL)
        return;
    keel_heartbeat_stop(h);
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->mu);
    keel_call_cancel_free(h->cancel);
    free(h->namespace_);
    free(h->task_queue);
    free(h->identity);
    free(h);
}
