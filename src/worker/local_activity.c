/* local_activity - local activities: table, marker, retry rules, and the in-process driver. */
#include "worker/local_activity.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "converter/failure.h"
#include "converter/payload.h"
#include "keel/json.h"
#include "proto/proto.h"
#include "worker/activity.h"
#include "worker/engine.h"

#define FREE_PB(m)              protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)
#define HEARTBEAT_FRACTION      0.8
#define DEFAULT_WFT_TIMEOUT_MS  10000
#define DEFAULT_INITIAL_MS      1000
#define DEFAULT_COEFFICIENT     2.0
#define DEFAULT_MAX_INTERVAL_MS (100 * DEFAULT_INITIAL_MS)

typedef Temporal__Api__Workflowservice__V1__PollWorkflowTaskQueueResponse workflow_task;

/* ---- the table ---- */

static void la_dispose(keel_la *la)
{
    free(la->type);
    free(la->input);
    free(la->summary);
    for (size_t i = 0; i < la->retry.n_non_retryable_error_types; i++)
        free(la->non_retryable[i]);
    free(la->non_retryable);
}

void keel_la_table_free(keel_la_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        la_dispose(&t->v[i]);
    free(t->v);
    memset(t, 0, sizeof *t);
}

keel_la *keel_la_add(keel_la_table *t, uint32_t seq, const char *type, const char *input_json,
                     const keel_local_activity_options *o, int64_t wf_now_ms)
{
    if (t->n == t->cap) {
        size_t c = t->cap ? t->cap * 2 : 4;
        keel_la *v = realloc(t->v, c * sizeof *v);
        if (v == NULL)
            return NULL;
        t->v = v;
        t->cap = c;
    }
    keel_la *la = &t->v[t->n];
    memset(la, 0, sizeof *la);
    la->seq = seq;
    la->wire_seq = seq;
    la->type = strdup(type);
    la->input = strdup(input_json ? input_json : "null");
    la->summary = o->summary ? strdup(o->summary) : NULL;
    la->start_to_close_ms = o->start_to_close_ms;
    la->schedule_to_close_ms = o->schedule_to_close_ms;
    if (la->start_to_close_ms <= 0 ||
        (la->schedule_to_close_ms > 0 && la->start_to_close_ms > la->schedule_to_close_ms))
        la->start_to_close_ms = la->schedule_to_close_ms; /* clamped, as sdk-core does */
    la->threshold_ms =
        o->local_retry_threshold_ms > 0 ? o->local_retry_threshold_ms : KEEL_LA_LOCAL_RETRY_MS;
    bool ok = la->type && la->input && (o->summary == NULL || la->summary);
    if (o->retry) {
        la->retry = *o->retry;
        la->retry.non_retryable_error_types = NULL;
        la->retry.n_non_retryable_error_types = 0;
        size_t n = o->retry->n_non_retryable_error_types;
        if (ok && n > 0 && (la->non_retryable = calloc(n, sizeof *la->non_retryable)) == NULL)
            ok = false;
        for (size_t i = 0; ok && i < n; i++) {
            const char *s = o->retry->non_retryable_error_types[i];
            if ((la->non_retryable[i] = strdup(s ? s : "")) == NULL)
                ok = false;
            else
                la->retry.n_non_retryable_error_types++;
        }
    }
    if (!ok) {
        la_dispose(la);
        return NULL;
    }
    la->attempt = 1;
    la->sched_wf_ms = wf_now_ms;
    la->state = KEEL_LA_WAITING;
    t->n++;
    return la;
}

keel_la *keel_la_find(keel_la_table *t, uint32_t wire_seq)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].wire_seq == wire_seq)
            return &t->v[i];
    return NULL;
}

keel_la *keel_la_by_timer(keel_la_table *t, uint32_t timer_seq)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].state == KEEL_LA_BACKOFF && t->v[i].timer_seq == timer_seq)
            return &t->v[i];
    return NULL;
}

bool keel_la_outstanding(const keel_la_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].state == KEEL_LA_WAITING || t->v[i].state == KEEL_LA_RUNNING)
            return true;
    return false;
}

void keel_la_outcome_clear(keel_la_outcome *o)
{
    free(o->activity_id);
    free(o->activity_type);
    free(o->result_json);
    if (o->failure)
        FREE_PB(o->failure);
    memset(o, 0, sizeof *o);
}

/* ---- the marker ---- */

static Temporal__Api__Failure__V1__Failure *
copy_failure(const Temporal__Api__Failure__V1__Failure *f)
{
    if (f == NULL)
        return NULL;
    size_t len = protobuf_c_message_get_packed_size((const ProtobufCMessage *)f);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack((const ProtobufCMessage *)f, buf);
    Temporal__Api__Failure__V1__Failure *c =
        temporal__api__failure__v1__failure__unpack(NULL, len, buf);
    free(buf);
    return c;
}

static cJSON *time_json(int64_t ms)
{
    if (ms <= 0)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "seconds", (double)(ms / 1000));
        cJSON_AddNumberToObject(o, "nanos", (double)((ms % 1000) * 1000000));
    }
    return o;
}

static int64_t time_ms(const cJSON *o)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seconds");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "nanos");
    if (!cJSON_IsNumber(s))
        return 0;
    return (int64_t)s->valuedouble * 1000 +
           (cJSON_IsNumber(n) ? (int64_t)n->valuedouble / 1000000 : 0);
}

char *keel_la_marker_data_json(const keel_la_outcome *o)
{
    cJSON *d = cJSON_CreateObject();
    if (d == NULL)
        return NULL;
    cJSON_AddNumberToObject(d, "seq", o->seq);
    cJSON_AddNumberToObject(d, "attempt", o->attempt);
    cJSON_AddStringToObject(d, "activity_id", o->activity_id ? o->activity_id : "");
    cJSON_AddStringToObject(d, "activity_type", o->activity_type ? o->activity_type : "");
    cJSON_AddItemToObject(d, "complete_time", time_json(o->complete_ms));
    cJSON_AddItemToObject(d, "backoff",
                          o->backoff_ms > 0 ? time_json(o->backoff_ms) : cJSON_CreateNull());
    cJSON_AddItemToObject(d, "original_schedule_time", time_json(o->original_schedule_ms));
    char *s = keel_json_print(d);
    cJSON_Delete(d);
    return s;
}

int keel_la_marker_read(const Temporal__Api__History__V1__MarkerRecordedEventAttributes *a,
                        int64_t event_id, keel_la_outcome *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    char *data = NULL, *result = NULL;
    int rc = KEEL_OK;
    for (size_t i = 0; i < a->n_details && rc == KEEL_OK; i++) {
        if (strcmp(a->details[i]->key, "data") == 0 && a->details[i]->value &&
            a->details[i]->value->n_payloads > 0)
            rc = keel_payload_to_json(a->details[i]->value->payloads[0],
                                      "local activity marker data", &data, err);
        else if (strcmp(a->details[i]->key, "result") == 0 && a->details[i]->value &&
                 a->details[i]->value->n_payloads > 0)
            rc = keel_payload_to_json(a->details[i]->value->payloads[0],
                                      "local activity marker result", &result, err);
    }
    cJSON *j = rc == KEEL_OK && data ? keel_json_from(data) : NULL;
    free(data);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(j, "seq");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "activity_type");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "activity_id");
    const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(j, "attempt");
    if (rc == KEEL_OK && (!cJSON_IsNumber(seq) || seq->valuedouble < 1 ||
                          seq->valuedouble > UINT32_MAX || !cJSON_IsString(type)))
        rc = keel_error_set(err, KEEL_EINVAL,
                            "history event %lld is a %s marker without JSON data holding its "
                            "seq and activity_type",
                            (long long)event_id, KEEL_LA_MARKER);
    if (rc != KEEL_OK) {
        cJSON_Delete(j);
        free(result);
        return rc;
    }
    out->seq = (uint32_t)seq->valuedouble;
    out->attempt =
        cJSON_IsNumber(attempt) && attempt->valuedouble >= 1 ? (uint32_t)attempt->valuedouble : 1;
    out->activity_type = strdup(type->valuestring);
    out->activity_id = strdup(cJSON_IsString(id) ? id->valuestring : "");
    out->complete_ms = time_ms(cJSON_GetObjectItemCaseSensitive(j, "complete_time"));
    out->backoff_ms = time_ms(cJSON_GetObjectItemCaseSensitive(j, "backoff"));
    out->original_schedule_ms =
        time_ms(cJSON_GetObjectItemCaseSensitive(j, "original_schedule_time"));
    cJSON_Delete(j);
    out->ok = a->failure == NULL;
    out->result_json = result;
    out->failure = copy_failure(a->failure);
    if (out->activity_type == NULL || out->activity_id == NULL ||
        (a->failure && out->failure == NULL)) {
        keel_la_outcome_clear(out);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory reading a local activity marker");
    }
    return KEEL_OK;
}

static Temporal__Api__Command__V1__RecordMarkerCommandAttributes__DetailsEntry *
detail_entry(const char *key, keel_pb_payload *p)
{
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes__DetailsEntry *d = malloc(sizeof *d);
    keel_pb_payloads *ps = malloc(sizeof *ps);
    keel_pb_payload **v = malloc(sizeof *v);
    char *k = strdup(key);
    if (d == NULL || ps == NULL || v == NULL || k == NULL) {
        free(d);
        free(ps);
        free(v);
        free(k);
        FREE_PB(p);
        return NULL;
    }
    temporal__api__command__v1__record_marker_command_attributes__details_entry__init(d);
    temporal__api__common__v1__payloads__init(ps);
    v[0] = p;
    ps->payloads = v;
    ps->n_payloads = 1;
    d->key = k;
    d->value = ps;
    return d;
}

int keel_la_marker_command(const keel_la_outcome *o, Temporal__Api__Command__V1__Command **out,
                           keel_error *err)
{
    *out = NULL;
    Temporal__Api__Command__V1__Command *c = malloc(sizeof *c);
    Temporal__Api__Command__V1__RecordMarkerCommandAttributes *a = malloc(sizeof *a);
    if (c == NULL || a == NULL) {
        free(c);
        free(a);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory recording a local activity");
    }
    temporal__api__command__v1__command__init(c);
    temporal__api__command__v1__record_marker_command_attributes__init(a);
    c->command_type = TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_RECORD_MARKER;
    c->attributes_case =
        TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_RECORD_MARKER_COMMAND_ATTRIBUTES;
    c->record_marker_command_attributes = a;
    int rc = KEEL_OK;
    a->marker_name = strdup(KEEL_LA_MARKER);
    a->details = calloc(2, sizeof *a->details);
    char *data = keel_la_marker_data_json(o);
    keel_pb_payload *p = NULL;
    if (a->marker_name == NULL || a->details == NULL || data == NULL)
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory recording a local activity");
    if (rc == KEEL_OK)
        rc = keel_payload_new_json(data, strlen(data), "local activity marker data", &p, err);
    free(data);
    if (rc == KEEL_OK) {
        if ((a->details[a->n_details] = detail_entry("data", p)) == NULL)
            rc = keel_error_set(err, KEEL_ENOMEM, "out of memory recording a local activity");
        else
            a->n_details++;
    }
    if (rc == KEEL_OK && o->ok && o->result_json) {
        p = NULL;
        rc = keel_payload_new_json(o->result_json, strlen(o->result_json), "local activity result",
                                   &p, err);
        if (rc == KEEL_OK) {
            if ((a->details[a->n_details] = detail_entry("result", p)) == NULL)
                rc = keel_error_set(err, KEEL_ENOMEM, "out of memory recording a local activity");
            else
                a->n_details++;
        }
    }
    if (rc == KEEL_OK && !o->ok && (a->failure = copy_failure(o->failure)) == NULL &&
        o->failure != NULL)
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory recording a local activity");
    if (rc != KEEL_OK) {
        FREE_PB(c);
        return rc;
    }
    *out = c;
    return KEEL_OK;
}

/* ---- retries ---- */

int64_t keel_la_backoff(const keel_la *la, const char *failure_type, bool non_retryable,
                        int64_t next_retry_delay_ms, int64_t now_ms)
{
    if (non_retryable)
        return -1;
    for (size_t i = 0; failure_type && i < la->retry.n_non_retryable_error_types; i++)
        if (strcmp(la->non_retryable[i], failure_type) == 0)
            return -1;
    if (la->retry.maximum_attempts > 0 && la->attempt >= (uint32_t)la->retry.maximum_attempts)
        return -1;
    int64_t initial =
        la->retry.initial_interval_ms > 0 ? la->retry.initial_interval_ms : DEFAULT_INITIAL_MS;
    double coef =
        la->retry.backoff_coefficient >= 1 ? la->retry.backoff_coefficient : DEFAULT_COEFFICIENT;
    int64_t max = la->retry.maximum_interval_ms > 0 ? la->retry.maximum_interval_ms : 100 * initial;
    double d = (double)initial * pow(coef, (double)(la->attempt - 1));
    int64_t delay = d > (double)max ? max : (int64_t)d;
    if (next_retry_delay_ms > 0)
        delay = next_retry_delay_ms;
    if (la->schedule_to_close_ms > 0 && la->original_schedule_ms > 0 &&
        now_ms + delay >= la->original_schedule_ms + la->schedule_to_close_ms)
        return -1;
    return delay;
}

/* ---- the executor: a bounded number of attempts at once, each on its own thread ---- */

typedef struct job {
    keel_activity_fn fn;
    void *user_data;
    keel_activity_ctx *ctx;
    char *input;
    atomic_bool cancel;
    int64_t deadline_ms; /* start-to-close of this attempt (0: none) */
    /* under g_mu */
    bool done;
    int rc;
    char *result;
    int refs;
} job;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_busy;
static unsigned long g_gen; /* attempts ended so far: a wait misses none */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void job_unref_locked(job *j)
{
    if (--j->refs > 0)
        return;
    keel_activity_offline_free(j->ctx);
    free(j->input);
    free(j->result);
    free(j);
}

static void *job_thread(void *arg)
{
    job *j = arg;
    char *result = NULL;
    int rc = j->fn(j->ctx, j->input, &result, j->user_data);
    pthread_mutex_lock(&g_mu);
    j->done = true;
    j->rc = rc;
    j->result = result;
    g_busy--;
    g_gen++;
    pthread_cond_broadcast(&g_cv);
    job_unref_locked(j);
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

/* Abandon an attempt (timed out): it is told to stop and cleans up when it returns. */
static void job_abandon(job *j)
{
    atomic_store(&j->cancel, true);
    pthread_mutex_lock(&g_mu);
    job_unref_locked(j);
    pthread_mutex_unlock(&g_mu);
}

/* ---- the driver ---- */

static Temporal__Api__Failure__V1__Failure *timeout_failure(int type, const char *message)
{
    Temporal__Api__Failure__V1__Failure *f = malloc(sizeof *f);
    Temporal__Api__Failure__V1__TimeoutFailureInfo *t = malloc(sizeof *t);
    char *m = strdup(message), *src = strdup("keel");
    if (f == NULL || t == NULL || m == NULL || src == NULL) {
        free(f);
        free(t);
        free(m);
        free(src);
        return NULL;
    }
    temporal__api__failure__v1__failure__init(f);
    temporal__api__failure__v1__timeout_failure_info__init(t);
    t->timeout_type = (Temporal__Api__Enums__V1__TimeoutType)type;
    f->message = m;
    f->source = src;
    f->failure_info_case = TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_TIMEOUT_FAILURE_INFO;
    f->timeout_failure_info = t;
    return f;
}

typedef struct drive {
    const keel_la_env *env;
    keel_engine *e;
    const workflow_task *cur;
    workflow_task *owned;
    int64_t hb_deadline_ms;
} drive;

static int64_t heartbeat_deadline(keel_engine *e, const workflow_task *t)
{
    int64_t timeout = keel_engine_wft_timeout_ms(e);
    if (timeout <= 0)
        timeout = DEFAULT_WFT_TIMEOUT_MS;
    int64_t started = keel_proto_timestamp_ms(t->started_time);
    if (started <= 0)
        started = wall_ms();
    return started + (int64_t)(HEARTBEAT_FRACTION * (double)timeout);
}

/* Resolve la with an outcome built here (ownership of result/failure taken). */
static int resolve(drive *dv, keel_la *la, bool ok, char *result,
                   Temporal__Api__Failure__V1__Failure *failure, int64_t backoff_ms,
                   keel_error *err)
{
    char id[16];
    snprintf(id, sizeof id, "%u", la->wire_seq);
    keel_la_outcome o = {
        .seq = la->wire_seq,
        .attempt = la->attempt,
        .activity_id = strdup(id),
        .activity_type = strdup(la->type),
        .ok = ok,
        .result_json = result,
        .failure = failure,
        .complete_ms = la->sched_wf_ms + (la->run_began_ms > 0 ? wall_ms() - la->run_began_ms : 0),
        .backoff_ms = backoff_ms,
        .original_schedule_ms = la->original_schedule_ms,
    };
    /* complete_time = workflow time when scheduled (or when its backoff timer fired) + how
     * long it ran, sdk-core's rule. */
    int rc;
    if (o.activity_id == NULL || o.activity_type == NULL || (!ok && failure == NULL))
        rc = keel_error_set(err, KEEL_ENOMEM, "out of memory resolving a local activity");
    else
        rc = keel_engine_local_resolve(dv->e, &o, err);
    keel_la_outcome_clear(&o);
    return rc;
}

static const keel_activity_type *find_type(const keel_la_env *env, const char *name)
{
    for (size_t i = 0; i < env->n_types; i++)
        if (env->types[i].name && strcmp(env->types[i].name, name) == 0)
            return &env->types[i];
    return NULL;
}

/* Start la's next attempt if a slot is free. Returns false when no slot is. */
static bool start_attempt(drive *dv, keel_la_table *tab, keel_la *la, const keel_activity_type *at,
                          int64_t now)
{
    pthread_mutex_lock(&g_mu);
    bool free_slot = g_busy < KEEL_LA_SLOTS;
    if (free_slot)
        g_busy++;
    pthread_mutex_unlock(&g_mu);
    if (!free_slot)
        return false;
    job *j = calloc(1, sizeof *j);
    char id[16];
    snprintf(id, sizeof id, "%u", la->wire_seq);
    const Temporal__Api__Common__V1__WorkflowExecution *x = dv->cur->workflow_execution;
    if (j) {
        atomic_init(&j->cancel, false);
        j->fn = at->run;
        j->user_data = at->user_data;
        j->refs = 2;
        j->input = strdup(la->input);
        j->ctx = keel_activity_local_new(
            dv->env->namespace, dv->env->workflow_type ? dv->env->workflow_type : "",
            x && x->workflow_id ? x->workflow_id : "", x && x->run_id ? x->run_id : "", la->type,
            id, (int32_t)la->attempt, &j->cancel);
    }
    pthread_t th;
    if (j == NULL || j->input == NULL || j->ctx == NULL ||
        pthread_create(&th, NULL, job_thread, j) != 0) {
        if (j) {
            keel_activity_offline_free(j->ctx);
            free(j->input);
            free(j);
        }
        pthread_mutex_lock(&g_mu);
        g_busy--;
        pthread_mutex_unlock(&g_mu);
        return false;
    }
    pthread_detach(th);
    if (la->run_began_ms <= 0)
        la->run_began_ms = now;
    if (la->first_wft == 0)
        la->first_wft = tab->wft + 1;
    else if (la->first_wft != tab->wft + 1)
        tab->nonfirst_attempts++;
    int64_t limit = la->start_to_close_ms;
    if (la->schedule_to_close_ms > 0) {
        int64_t left = la->original_schedule_ms + la->schedule_to_close_ms - now;
        if (limit <= 0 || left < limit)
            limit = left;
    }
    j->deadline_ms = limit > 0 ? now + limit : 0;
    la->job = j;
    la->state = KEEL_LA_RUNNING;
    return true;
}

/* An attempt failed (or timed out): retry here, back off on a timer, or resolve as failed. */
static int after_failure(drive *dv, keel_la *la, const char *type, const char *message,
                         bool non_retryable, int64_t delay_ms,
                         Temporal__Api__Failure__V1__Failure *failure, int64_t now, keel_error *err)
{
    int64_t backoff = keel_la_backoff(la, type, non_retryable, delay_ms, now);
    if (failure == NULL) {
        keel_error ferr;
        failure = keel_failure_new_application(type, message, non_retryable, &ferr);
    }
    if (backoff >= 0 && backoff <= la->threshold_ms) {
        if (failure)
            FREE_PB(failure);
        la->attempt++;
        la->not_before_ms = now + backoff;
        la->state = KEEL_LA_WAITING;
        return KEEL_OK;
    }
    return resolve(dv, la, false, NULL, failure, backoff > 0 ? backoff : 0, err);
}

static int finish_job(drive *dv, keel_la *la, int64_t now, keel_error *err)
{
    job *j = la->job;
    la->job = NULL;
    int rc = KEEL_OK;
    if (j->rc == KEEL_OK) {
        char *result = j->result;
        j->result = NULL;
        pthread_mutex_lock(&g_mu);
        job_unref_locked(j);
        pthread_mutex_unlock(&g_mu);
        la->state = KEEL_LA_WAITING; /* resolve() marks it done */
        return resolve(dv, la, true, result, NULL, 0, err);
    }
    const char *message = NULL;
    bool non_retryable = false;
    int64_t delay = 0;
    const char *type = keel_activity_local_failure(j->ctx, &message, &non_retryable, &delay);
    char t[128], m[512];
    snprintf(t, sizeof t, "%s", type ? type : keel_error_code_name(j->rc));
    snprintf(m, sizeof m, "%s",
             type && message && message[0] ? message : "the local activity returned an error");
    pthread_mutex_lock(&g_mu);
    job_unref_locked(j);
    pthread_mutex_unlock(&g_mu);
    rc = after_failure(dv, la, t, m, non_retryable, delay, NULL, now, err);
    return rc;
}

/* Send the commands so far and ask for a new task to go on with (a workflow task heartbeat). */
static int heartbeat(drive *dv, keel_error *err)
{
    keel_engine *e = dv->e;
    keel_la_table *tab = keel_engine_local_activities(e);
    keel_pb_command *const *cmds;
    size_t n = keel_engine_commands(e, &cmds);
    keel_pb_message *const *msgs;
    size_t n_msgs = keel_engine_messages(e, &msgs);
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__RESPOND_WORKFLOW_TASK_COMPLETED_REQUEST__INIT;
    req.task_token = dv->cur->task_token;
    req.commands = (keel_pb_command **)cmds;
    req.n_commands = n;
    req.messages = (keel_pb_message **)msgs;
    req.n_messages = n_msgs;
    req.identity = (char *)dv->env->identity;
    req.namespace_ = (char *)dv->env->namespace;
    req.force_create_new_workflow_task = 1;
    req.return_new_workflow_task = 1;
    Temporal__Api__Common__V1__MeteringMetadata meter =
        TEMPORAL__API__COMMON__V1__METERING_METADATA__INIT;
    meter.nonfirst_local_activity_execution_attempts = (uint32_t)tab->nonfirst_attempts;
    req.metering_metadata = &meter;
    Temporal__Api__Taskqueue__V1__TaskQueue sticky = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    Temporal__Api__Taskqueue__V1__StickyExecutionAttributes attrs =
        TEMPORAL__API__TASKQUEUE__V1__STICKY_EXECUTION_ATTRIBUTES__INIT;
    Google__Protobuf__Duration timeout;
    if (dv->env->sticky_queue) {
        sticky.name = (char *)dv->env->sticky_queue;
        sticky.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_STICKY;
        sticky.normal_name = (char *)dv->env->task_queue;
        keel_proto_duration_set(&timeout, 5000);
        attrs.worker_task_queue = &sticky;
        attrs.schedule_to_start_timeout = &timeout;
        req.sticky_attributes = &attrs;
    }
    keel_call_options co = {.retry = true, .namespace = dv->env->namespace};
    Temporal__Api__Workflowservice__V1__RespondWorkflowTaskCompletedResponse *resp = NULL;
    int rc = keel_transport_call(
        dv->env->transport, (keel_rpc){KEEL_WORKFLOW_SERVICE, "RespondWorkflowTaskCompleted"},
        (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__respond_workflow_task_completed_response__descriptor,
        (ProtobufCMessage **)&resp, &co, err);
    if (rc != KEEL_OK)
        return rc;
    workflow_task *t = resp->workflow_task;
    resp->workflow_task = NULL;
    FREE_PB(resp);
    if (t == NULL || t->task_token.len == 0 || t->history == NULL || t->history->n_events == 0 ||
        t->history->events[0]->event_id != keel_engine_last_event_id(e) + 1 ||
        t->next_page_token.len > 0) {
        if (t)
            FREE_PB(t);
        return keel_error_set(err, KEEL_EPRECONDITION,
                              "a workflow task heartbeat got no new task to go on with");
    }
    rc = keel_engine_feed(e, t->history->events, t->history->n_events, err);
    if (rc == KEEL_OK)
        rc = keel_engine_take_messages(e, t->messages, t->n_messages, err);
    if (rc == KEEL_OK)
        rc = keel_engine_finish(e, err);
    if (dv->owned)
        FREE_PB(dv->owned);
    dv->owned = t;
    dv->cur = t;
    tab->wft++;
    tab->nonfirst_attempts = 0;
    dv->hb_deadline_ms = heartbeat_deadline(e, t);
    return rc;
}

/* One pass over the table: start, finish or time out what can be. Sets *acted when something
 * changed (the table may have moved: start over), *outstanding and *wake. */
static int pass(drive *dv, bool *acted, bool *outstanding, int64_t *wake, keel_error *err)
{
    keel_la_table *tab = keel_engine_local_activities(dv->e);
    int64_t now = wall_ms();
    *acted = false;
    *outstanding = false;
    for (size_t i = 0; i < tab->n; i++) {
        keel_la *la = &tab->v[i];
        if (la->state == KEEL_LA_WAITING) {
            *outstanding = true;
            if (la->original_schedule_ms <= 0)
                la->original_schedule_ms = now;
            if (la->schedule_to_close_ms > 0 &&
                now >= la->original_schedule_ms + la->schedule_to_close_ms) {
                *acted = true;
                return resolve(
                    dv, la, false, NULL,
                    timeout_failure(
                        TEMPORAL__API__ENUMS__V1__TIMEOUT_TYPE__TIMEOUT_TYPE_SCHEDULE_TO_CLOSE,
                        "local activity ScheduleToClose timeout"),
                    0, err);
            }
            if (now < la->not_before_ms) {
                if (la->not_before_ms < *wake)
                    *wake = la->not_before_ms;
                continue;
            }
            const keel_activity_type *at = find_type(dv->env, la->type);
            if (at == NULL) {
                char m[256];
                snprintf(m, sizeof m, "activity type %.100s is not registered on this worker",
                         la->type);
                keel_error ferr;
                *acted = true;
                return resolve(dv, la, false, NULL,
                               keel_failure_new_application("NotFound", m, true, &ferr), 0, err);
            }
            if (start_attempt(dv, tab, la, at, now))
                *acted = true;
            continue;
        }
        if (la->state != KEEL_LA_RUNNING)
            continue;
        *outstanding = true;
        job *j = la->job;
        pthread_mutex_lock(&g_mu);
        bool done = j->done;
        pthread_mutex_unlock(&g_mu);
        if (done) {
            *acted = true;
            return finish_job(dv, la, now, err);
        }
        if (j->deadline_ms > 0 && now >= j->deadline_ms) {
            la->job = NULL;
            job_abandon(j);
            *acted = true;
            bool s2c = la->schedule_to_close_ms > 0 &&
                       now >= la->original_schedule_ms + la->schedule_to_close_ms;
            int type = s2c ? TEMPORAL__API__ENUMS__V1__TIMEOUT_TYPE__TIMEOUT_TYPE_SCHEDULE_TO_CLOSE
                           : TEMPORAL__API__ENUMS__V1__TIMEOUT_TYPE__TIMEOUT_TYPE_START_TO_CLOSE;
            Temporal__Api__Failure__V1__Failure *f =
                timeout_failure(type, s2c ? "local activity ScheduleToClose timeout"
                                          : "local activity StartToClose timeout");
            if (s2c)
                return resolve(dv, la, false, NULL, f, 0, err);
            return after_failure(dv, la, "Timeout:START_TO_CLOSE", "StartToClose timeout", false, 0,
                                 f, now, err);
        }
        if (j->deadline_ms > 0 && j->deadline_ms < *wake)
            *wake = j->deadline_ms;
    }
    return KEEL_OK;
}

int keel_la_drive(const keel_la_env *env, keel_engine *e, const workflow_task *t,
                  workflow_task **task, keel_error *err)
{
    drive dv = {.env = env, .e = e, .cur = t, .hb_deadline_ms = heartbeat_deadline(e, t)};
    *task = NULL;
    int rc = KEEL_OK;
    while (rc == KEEL_OK && !keel_engine_closing(e)) {
        bool acted, outstanding;
        int64_t wake = dv.hb_deadline_ms;
        pthread_mutex_lock(&g_mu);
        unsigned long gen = g_gen;
        pthread_mutex_unlock(&g_mu);
        rc = pass(&dv, &acted, &outstanding, &wake, err);
        if (rc != KEEL_OK || acted)
            continue;
        if (!outstanding)
            break;
        if (dv.env->stopping && atomic_load(dv.env->stopping)) {
            rc = keel_error_set(err, KEEL_EPRECONDITION,
                                "the worker is stopping: the task running local activities is "
                                "left to time out and run again elsewhere");
            break;
        }
        if (wall_ms() >= dv.hb_deadline_ms) {
            rc = heartbeat(&dv, err);
            continue;
        }
        /* Wait for an attempt to end, a retry to be due, a timeout, or the heartbeat. */
        int64_t until = wake < wall_ms() + 1000 ? wake : wall_ms() + 1000;
        struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000};
        pthread_mutex_lock(&g_mu);
        while (g_gen == gen && wall_ms() < until)
            if (pthread_cond_timedwait(&g_cv, &g_mu, &ts) != 0)
                break;
        pthread_mutex_unlock(&g_mu);
    }
    /* On error or close, attempts still running are abandoned. */
    keel_la_table *tab = keel_engine_local_activities(e);
    for (size_t i = 0; i < tab->n; i++)
        if (tab->v[i].state == KEEL_LA_RUNNING && tab->v[i].job) {
            job_abandon(tab->v[i].job);
            tab->v[i].job = NULL;
            tab->v[i].state = KEEL_LA_WAITING;
        }
    *task = dv.owned;
    return rc;
}

uint64_t keel_la_nonfirst_attempts(keel_engine *e)
{
    return keel_engine_local_activities(e)->nonfirst_attempts;
}
