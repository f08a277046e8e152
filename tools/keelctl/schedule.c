/* keelctl schedule create|describe|list|pause|unpause|trigger|delete */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keelctl.h"

static int need_schedule_id(const cli *c, const char *command)
{
    if (c->workflow_id == NULL || c->workflow_id[0] == '\0') {
        fprintf(stderr, "keelctl: schedule %s needs --id (the schedule's id)\n", command);
        return EXIT_USAGE;
    }
    return 0;
}

static int overlap_policy(const char *text, int *out)
{
    static const char *const names[] = {
        "", "skip", "buffer-one", "buffer-all", "cancel-other", "terminate-other", "allow-all"};
    *out = 0;
    if (text == NULL)
        return 0;
    for (int i = 1; i < 7; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    fprintf(stderr,
            "keelctl: --overlap '%s': use skip, buffer-one, buffer-all, cancel-other, "
            "terminate-other or allow-all\n",
            text);
    return EXIT_USAGE;
}

int keelctl_schedule_create(keel_client *client, const cli *c)
{
    int rc = need_schedule_id(c, "create");
    if (rc != 0)
        return rc;
    keel_schedule_options o;
    keel_schedule_options_init(&o, KEEL_SCHEDULE_OPTIONS_VERSION);
    o.schedule_id = c->workflow_id;
    o.cron = c->cron;
    o.workflow_id = c->base_workflow_id;
    o.workflow_type = c->type;
    o.task_queue = c->task_queue;
    o.input_json = c->input;
    o.paused = c->paused;
    o.note = c->note;
    keel_error err;
    if (c->every && keel_duration_parse(c->every, &o.interval_ms, &err) != KEEL_OK) {
        fprintf(stderr, "keelctl: --every: %s\n", err.message);
        return EXIT_USAGE;
    }
    if ((rc = overlap_policy(c->overlap, &o.overlap_policy)) != 0)
        return rc;
    rc = keel_client_schedule_create(client, &o, &err);
    if (rc == KEEL_EINVAL && err.grpc_status == KEEL_NO_GRPC_STATUS) {
        fprintf(stderr, "keelctl: %s\n", err.message);
        return EXIT_USAGE;
    }
    if (rc != KEEL_OK)
        return fail(&err);
    printf("Schedule %s created.\n", c->workflow_id);
    return 0;
}

int keelctl_schedule_describe(keel_client *client, const cli *c)
{
    int rc = need_schedule_id(c, "describe");
    if (rc != 0)
        return rc;
    keel_schedule_info s;
    keel_error err;
    if (keel_client_schedule_describe(client, c->workflow_id, &s, &err) != KEEL_OK)
        return fail(&err);
    char when[KEEL_SCHEDULE_NEXT_MAX][40];
    for (size_t i = 0; i < s.n_next; i++) {
        time_t t = (time_t)(s.next_ms[i] / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when[i], sizeof when[i], "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "scheduleId", s.schedule_id);
        cJSON_AddStringToObject(j, "workflowType", s.workflow_type);
        cJSON_AddStringToObject(j, "spec", s.spec);
        cJSON_AddBoolToObject(j, "paused", s.paused);
        cJSON_AddStringToObject(j, "note", s.note);
        cJSON_AddNumberToObject(j, "actionCount", (double)s.action_count);
        cJSON_AddNumberToObject(j, "running", (double)s.n_running);
        cJSON *next = cJSON_AddArrayToObject(j, "nextActionTimes");
        for (size_t i = 0; i < s.n_next; i++)
            cJSON_AddItemToArray(next, cJSON_CreateString(when[i]));
        rc = print_json(j);
    } else {
        printf("Schedule        %s\n", s.schedule_id);
        printf("Workflow type   %s\n", s.workflow_type);
        printf("Spec            %s\n", s.spec);
        printf("State           %s%s%s\n", s.paused ? "paused" : "active", s.note[0] ? ": " : "",
               s.note);
        printf("Runs started    %lld (%zu open)\n", (long long)s.action_count, s.n_running);
        for (size_t i = 0; i < s.n_next; i++)
            printf("Next            %s\n", when[i]);
    }
    keel_schedule_info_dispose(&s);
    return rc;
}

int keelctl_schedule_list(keel_client *client, const cli *c)
{
    keel_schedule_list l;
    keel_error err;
    if (keel_client_schedule_list(client, &l, &err) != KEEL_OK)
        return fail(&err);
    int rc = 0;
    if (c->json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < l.count; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(l.ids[i]));
        rc = print_json(arr);
    } else {
        for (size_t i = 0; i < l.count; i++)
            printf("%s\n", l.ids[i]);
    }
    keel_schedule_list_dispose(&l);
    return rc;
}

static int simple(keel_client *client, const cli *c, const char *command)
{
    int rc = need_schedule_id(c, command);
    if (rc != 0)
        return rc;
    keel_error err;
    if (strcmp(command, "pause") == 0)
        rc = keel_client_schedule_pause(client, c->workflow_id, true, c->note, &err);
    else if (strcmp(command, "unpause") == 0)
        rc = keel_client_schedule_pause(client, c->workflow_id, false, c->note, &err);
    else if (strcmp(command, "trigger") == 0)
        rc = keel_client_schedule_trigger(client, c->workflow_id, &err);
    else
        rc = keel_client_schedule_delete(client, c->workflow_id, &err);
    if (rc != KEEL_OK)
        return fail(&err);
    printf("Schedule %s: %s done.\n", c->workflow_id, command);
    return 0;
}

int keelctl_schedule_pause(keel_client *client, const cli *c)
{
    return simple(client, c, "pause");
}

int keelctl_schedule_unpause(keel_client *client, const cli *c)
{
    return simple(client, c, "unpause");
}

int keelctl_schedule_trigger(keel_client *client, const cli *c)
{
    return simple(client, c, "trigger");
}

int keelctl_schedule_delete(keel_client *client, const cli *c)
{
    return simple(client, c, "delete");
}
