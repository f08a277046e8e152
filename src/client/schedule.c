/* schedule - create, describe, list, pause, trigger and delete Temporal Schedules. */
#include "keel/schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "converter/payload.h"
#include "keel/duration.h"
#include "proto/proto.h"

#define WF(m)      ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)
#define LIST_MAX   10000

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

int keel_schedule_options_init(keel_schedule_options *opts, unsigned int version)
{
    if (opts == NULL || version != KEEL_SCHEDULE_OPTIONS_VERSION)
        return KEEL_EINVAL;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    return KEEL_OK;
}

static int check(const keel_schedule_options *o, keel_error *err)
{
    if (o == NULL || o->version != KEEL_SCHEDULE_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "schedule options not initialised");
    if (empty(o->schedule_id) || empty(o->workflow_type) || empty(o->task_queue))
        return keel_error_set(err, KEEL_EINVAL,
                              "a schedule needs an id, a workflow type and a task queue");
    if (empty(o->cron) == (o->interval_ms <= 0))
        return keel_error_set(err, KEEL_EINVAL,
                              "a schedule needs exactly one of a cron expression and an interval");
    if (o->overlap_policy < 0 || o->overlap_policy > 6)
        return keel_error_set(err, KEEL_EINVAL, "overlap policy %d is not 0-6", o->overlap_policy);
    return KEEL_OK;
}

/* Run one call with a request on the stack; the response is dropped. */
static int call(keel_client *client, const char *method, ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_type, keel_error *err)
{
    keel_transport *t = keel_client_transport(client);
    keel_call_options co = {.retry = true, .namespace = keel_transport_namespace(t)};
    ProtobufCMessage *resp = NULL;
    int rc = keel_transport_call(t, WF(method), req, resp_type, &resp, &co, err);
    if (resp)
        FREE_PB(resp);
    return rc;
}

int keel_client_schedule_create(keel_client *client, const keel_schedule_options *o,
                                keel_error *err)
{
    int rc = check(o, err);
    if (rc != KEEL_OK)
        return rc;
    keel_transport *t = keel_client_transport(client);
    char request_id[37];
    if ((rc = keel_client_uuid4(request_id, err)) != KEEL_OK)
        return rc;

    Temporal__Api__Common__V1__WorkflowType type = TEMPORAL__API__COMMON__V1__WORKFLOW_TYPE__INIT;
    type.name = (char *)o->workflow_type;
    Temporal__Api__Taskqueue__V1__TaskQueue tq = TEMPORAL__API__TASKQUEUE__V1__TASK_QUEUE__INIT;
    tq.name = (char *)o->task_queue;
    tq.kind = TEMPORAL__API__ENUMS__V1__TASK_QUEUE_KIND__TASK_QUEUE_KIND_NORMAL;
    Temporal__Api__Workflow__V1__NewWorkflowExecutionInfo run =
        TEMPORAL__API__WORKFLOW__V1__NEW_WORKFLOW_EXECUTION_INFO__INIT;
    run.workflow_id = (char *)(empty(o->workflow_id) ? o->schedule_id : o->workflow_id);
    run.workflow_type = &type;
    run.task_queue = &tq;
    if ((rc = keel_payloads_new_json(o->input_json, "schedule input", &run.input, err)) != KEEL_OK)
        return rc;
    Temporal__Api__Schedule__V1__ScheduleAction action =
        TEMPORAL__API__SCHEDULE__V1__SCHEDULE_ACTION__INIT;
    action.action_case = TEMPORAL__API__SCHEDULE__V1__SCHEDULE_ACTION__ACTION_START_WORKFLOW;
    action.start_workflow = &run;

    Temporal__Api__Schedule__V1__ScheduleSpec spec =
        TEMPORAL__API__SCHEDULE__V1__SCHEDULE_SPEC__INIT;
    char *cron[1] = {(char *)o->cron};
    Temporal__Api__Schedule__V1__IntervalSpec interval =
        TEMPORAL__API__SCHEDULE__V1__INTERVAL_SPEC__INIT;
    Temporal__Api__Schedule__V1__IntervalSpec *intervals[1] = {&interval};
    Google__Protobuf__Duration every;
    if (!empty(o->cron)) {
        spec.cron_string = cron;
        spec.n_cron_string = 1;
    } else {
        keel_proto_duration_set(&every, o->interval_ms);
        interval.interval = &every;
        spec.interval = intervals;
        spec.n_interval = 1;
    }
    Temporal__Api__Schedule__V1__SchedulePolicies policies =
        TEMPORAL__API__SCHEDULE__V1__SCHEDULE_POLICIES__INIT;
    policies.overlap_policy = (Temporal__Api__Enums__V1__ScheduleOverlapPolicy)o->overlap_policy;
    Temporal__Api__Schedule__V1__ScheduleState state =
        TEMPORAL__API__SCHEDULE__V1__SCHEDULE_STATE__INIT;
    state.paused = o->paused;
    state.notes = (char *)(o->note ? o->note : "");
    Temporal__Api__Schedule__V1__Schedule schedule = TEMPORAL__API__SCHEDULE__V1__SCHEDULE__INIT;
    schedule.spec = &spec;
    schedule.action = &action;
    schedule.policies = &policies;
    schedule.state = &state;

    Temporal__Api__Workflowservice__V1__CreateScheduleRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__CREATE_SCHEDULE_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.schedule_id = (char *)o->schedule_id;
    req.schedule = &schedule;
    req.identity = (char *)keel_transport_identity(t);
    req.request_id = request_id;
    rc = call(client, "CreateSchedule", (ProtobufCMessage *)&req,
              &temporal__api__workflowservice__v1__create_schedule_response__descriptor, err);
    if (run.input)
        FREE_PB(run.input);
    return rc;
}

void keel_schedule_info_dispose(keel_schedule_info *info)
{
    if (info == NULL)
        return;
    free(info->schedule_id);
    free(info->workflow_type);
    free(info->spec);
    free(info->note);
    memset(info, 0, sizeof *info);
}

/* The spec as a person would say it. */
static char *spec_text(const Temporal__Api__Schedule__V1__ScheduleSpec *s)
{
    char buf[256] = "";
    if (s && s->n_cron_string > 0) {
        snprintf(buf, sizeof buf, "cron %s", s->cron_string[0]);
    } else if (s && s->n_interval > 0 && s->interval[0]->interval) {
        char d[64];
        snprintf(
            buf, sizeof buf, "every %s",
            keel_duration_format(keel_proto_duration_ms(s->interval[0]->interval), d, sizeof d));
    } else if (s && (s->n_calendar > 0 || s->n_structured_calendar > 0)) {
        snprintf(buf, sizeof buf, "calendar");
    } else {
        snprintf(buf, sizeof buf, "(none)");
    }
    return strdup(buf);
}

int keel_client_schedule_describe(keel_client *client, const char *schedule_id,
                                  keel_schedule_info *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    if (empty(schedule_id))
        return keel_error_set(err, KEEL_EINVAL, "describe needs a schedule id");
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__DescribeScheduleRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_SCHEDULE_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.schedule_id = (char *)schedule_id;
    Temporal__Api__Workflowservice__V1__DescribeScheduleResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = req.namespace_};
    int rc = keel_transport_call(
        t, WF("DescribeSchedule"), (ProtobufCMessage *)&req,
        &temporal__api__workflowservice__v1__describe_schedule_response__descriptor,
        (ProtobufCMessage **)&resp, &co, err);
    if (rc != KEEL_OK)
        return rc;
    const Temporal__Api__Schedule__V1__Schedule *s = resp->schedule;
    const Temporal__Api__Schedule__V1__ScheduleAction *a = s ? s->action : NULL;
    const char *type =
        a &&
                a->action_case ==
                    TEMPORAL__API__SCHEDULE__V1__SCHEDULE_ACTION__ACTION_START_WORKFLOW &&
                a->start_workflow->workflow_type
            ? a->start_workflow->workflow_type->name
            : "";
    out->schedule_id = strdup(schedule_id);
    out->workflow_type = keel_proto_strdup(type);
    out->spec = spec_text(s ? s->spec : NULL);
    out->note = keel_proto_strdup(s && s->state ? s->state->notes : "");
    out->paused = s && s->state && s->state->paused;
    if (resp->info) {
        out->action_count = resp->info->action_count;
        out->n_running = resp->info->n_running_workflows;
        for (size_t i = 0; i < resp->info->n_future_action_times && i < KEEL_SCHEDULE_NEXT_MAX; i++)
            out->next_ms[out->n_next++] =
                keel_proto_timestamp_ms(resp->info->future_action_times[i]);
    }
    FREE_PB(resp);
    if (!out->schedule_id || !out->workflow_type || !out->spec || !out->note) {
        keel_schedule_info_dispose(out);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory describing a schedule");
    }
    return KEEL_OK;
}

void keel_schedule_list_dispose(keel_schedule_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->ids[i]);
    free(list->ids);
    memset(list, 0, sizeof *list);
}

int keel_client_schedule_list(keel_client *client, keel_schedule_list *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    keel_transport *t = keel_client_transport(client);
    const char *ns = keel_transport_namespace(t);
    keel_page_token token = {0};
    int rc = KEEL_OK;
    do {
        Temporal__Api__Workflowservice__V1__ListSchedulesRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__LIST_SCHEDULES_REQUEST__INIT;
        req.namespace_ = (char *)ns;
        req.maximum_page_size = 100;
        req.next_page_token = keel_page_token_get(&token);
        Temporal__Api__Workflowservice__V1__ListSchedulesResponse *resp = NULL;
        keel_call_options co = {.retry = true, .namespace = ns};
        rc = keel_transport_call(
            t, WF("ListSchedules"), (ProtobufCMessage *)&req,
            &temporal__api__workflowservice__v1__list_schedules_response__descriptor,
            (ProtobufCMessage **)&resp, &co, err);
        if (rc != KEEL_OK)
            break;
        char **grown = resp->n_schedules
                           ? realloc(out->ids, (out->count + resp->n_schedules) * sizeof *grown)
                           : out->ids;
        if (resp->n_schedules && grown == NULL)
            rc = keel_error_set(err, KEEL_ENOMEM, "out of memory listing schedules");
        else
            out->ids = grown;
        for (size_t i = 0; rc == KEEL_OK && i < resp->n_schedules; i++)
            if ((out->ids[out->count++] = keel_proto_strdup(resp->schedules[i]->schedule_id)) ==
                NULL)
                rc = keel_error_set(err, KEEL_ENOMEM, "out of memory listing schedules");
        if (rc == KEEL_OK)
            rc = keel_page_token_next(&token, &resp->next_page_token, "ListSchedules", err);
        FREE_PB(resp);
    } while (rc == KEEL_OK && token.len > 0 && out->count < LIST_MAX);
    keel_page_token_free(&token);
    if (rc != KEEL_OK)
        keel_schedule_list_dispose(out);
    return rc;
}

static int patch(keel_client *client, const char *schedule_id,
                 Temporal__Api__Schedule__V1__SchedulePatch *p, keel_error *err)
{
    if (empty(schedule_id))
        return keel_error_set(err, KEEL_EINVAL, "a schedule id is required");
    keel_transport *t = keel_client_transport(client);
    char request_id[37];
    int rc = keel_client_uuid4(request_id, err);
    if (rc != KEEL_OK)
        return rc;
    Temporal__Api__Workflowservice__V1__PatchScheduleRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__PATCH_SCHEDULE_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.schedule_id = (char *)schedule_id;
    req.patch = p;
    req.identity = (char *)keel_transport_identity(t);
    req.request_id = request_id;
    return call(client, "PatchSchedule", (ProtobufCMessage *)&req,
                &temporal__api__workflowservice__v1__patch_schedule_response__descriptor, err);
}

int keel_client_schedule_pause(keel_client *client, const char *schedule_id, bool pause,
                               const char *note, keel_error *err)
{
    Temporal__Api__Schedule__V1__SchedulePatch p =
        TEMPORAL__API__SCHEDULE__V1__SCHEDULE_PATCH__INIT;
    const char *why = empty(note) ? (pause ? "paused" : "unpaused") : note;
    if (pause)
        p.pause = (char *)why;
    else
        p.unpause = (char *)why;
    return patch(client, schedule_id, &p, err);
}

int keel_client_schedule_trigger(keel_client *client, const char *schedule_id, keel_error *err)
{
    Temporal__Api__Schedule__V1__TriggerImmediatelyRequest now =
        TEMPORAL__API__SCHEDULE__V1__TRIGGER_IMMEDIATELY_REQUEST__INIT;
    Temporal__Api__Schedule__V1__SchedulePatch p =
        TEMPORAL__API__SCHEDULE__V1__SCHEDULE_PATCH__INIT;
    p.trigger_immediately = &now;
    return patch(client, schedule_id, &p, err);
}

int keel_client_schedule_delete(keel_client *client, const char *schedule_id, keel_error *err)
{
    if (empty(schedule_id))
        return keel_error_set(err, KEEL_EINVAL, "a schedule id is required");
    keel_transport *t = keel_client_transport(client);
    Temporal__Api__Workflowservice__V1__DeleteScheduleRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DELETE_SCHEDULE_REQUEST__INIT;
    req.namespace_ = (char *)keel_transport_namespace(t);
    req.schedule_id = (char *)schedule_id;
    req.identity = (char *)keel_transport_identity(t);
    return call(client, "DeleteSchedule", (ProtobufCMessage *)&req,
                &temporal__api__workflowservice__v1__delete_schedule_response__descriptor, err);
}
