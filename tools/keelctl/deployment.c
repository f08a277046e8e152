/* keelctl deployment list|describe|set-current|set-ramping|unset-ramping */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keelctl.h"

/* NAME (and BUILD_ID, PERCENT): exactly `want` arguments after "deployment VERB", each name
 * checked before any call. */
static int need_args(const cli *c, int want, const char *shape)
{
    if (c->nargs != 2 + want) {
        fprintf(stderr, "keelctl: usage: keelctl deployment %s %s\n", c->args[1], shape);
        return EXIT_USAGE;
    }
    keel_error err;
    if (keel_deployment_version_check(c->args[2], want >= 2 ? c->args[3] : NULL, &err) != KEEL_OK) {
        fprintf(stderr, "keelctl: %s\n", err.message);
        return EXIT_USAGE;
    }
    return 0;
}

static void when(int64_t ms, char *out, size_t n)
{
    if (ms <= 0) {
        snprintf(out, n, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static cJSON *routing_json(const keel_deployment_info *d)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", d->name);
    char t[40];
    when(d->create_time_ms, t, sizeof t);
    cJSON_AddStringToObject(j, "createTime", t);
    if (d->current_build_id)
        cJSON_AddStringToObject(j, "currentBuildId", d->current_build_id);
    else
        cJSON_AddNullToObject(j, "currentBuildId");
    if (d->ramping_build_id)
        cJSON_AddStringToObject(j, "rampingBuildId", d->ramping_build_id);
    else
        cJSON_AddNullToObject(j, "rampingBuildId");
    cJSON_AddNumberToObject(j, "rampingPercentage", d->ramping_percentage);
    return j;
}

int keelctl_deployment_describe(keel_client *client, const cli *c)
{
    int rc = need_args(c, 1, "NAME");
    if (rc != 0)
        return rc;
    keel_deployment_info d;
    keel_error err;
    if (keel_client_deployment_describe(client, c->args[2], &d, &err) != KEEL_OK)
        return fail(&err);
    if (c->json) {
        cJSON *j = routing_json(&d);
        cJSON_AddStringToObject(j, "lastModifierIdentity", d.last_modifier_identity);
        cJSON *vs = cJSON_AddArrayToObject(j, "versions");
        for (size_t i = 0; i < d.n_versions; i++) {
            const keel_deployment_version *v = &d.versions[i];
            cJSON *o = cJSON_CreateObject();
            char t[40];
            cJSON_AddStringToObject(o, "buildId", v->build_id);
            cJSON_AddStringToObject(o, "status", v->status);
            cJSON_AddStringToObject(o, "drainage", v->drainage);
            when(v->create_time_ms, t, sizeof t);
            cJSON_AddStringToObject(o, "createTime", t);
            when(v->drainage_checked_ms, t, sizeof t);
            cJSON_AddStringToObject(o, "drainageCheckedTime", t);
            cJSON_AddItemToArray(vs, o);
        }
        rc = print_json(j);
    } else {
        char t[40];
        when(d.create_time_ms, t, sizeof t);
        printf("Deployment      %s (created %s)\n", d.name, t);
        printf("Current         %s\n", d.current_build_id ? d.current_build_id : "(unversioned)");
        if (d.ramping_build_id)
            printf("Ramping         %s at %g%%\n", d.ramping_build_id, d.ramping_percentage);
        else
            printf("Ramping         -\n");
        if (d.last_modifier_identity[0])
            printf("Last changed by %s\n", d.last_modifier_identity);
        printf("%-24s %-10s %-10s %s\n", "BUILD ID", "STATUS", "DRAINAGE", "CREATED");
        for (size_t i = 0; i < d.n_versions; i++) {
            const keel_deployment_version *v = &d.versions[i];
            when(v->create_time_ms, t, sizeof t);
            printf("%-24s %-10s %-10s %s\n", v->build_id, v->status[0] ? v->status : "-",
                   v->drainage[0] ? v->drainage : "-", t);
        }
    }
    keel_deployment_info_dispose(&d);
    return rc;
}

int keelctl_deployment_list(keel_client *client, const cli *c)
{
    if (c->nargs != 2)
        return usage_error("%s", "deployment list takes no arguments");
    keel_deployment_info *list;
    size_t n;
    keel_error err;
    if (keel_client_deployment_list(client, &list, &n, &err) != KEEL_OK)
        return fail(&err);
    int rc = 0;
    if (c->json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, routing_json(&list[i]));
        rc = print_json(arr);
    } else {
        for (size_t i = 0; i < n; i++) {
            printf("%s current=%s", list[i].name,
                   list[i].current_build_id ? list[i].current_build_id : "(unversioned)");
            if (list[i].ramping_build_id)
                printf(" ramping=%s@%g%%", list[i].ramping_build_id, list[i].ramping_percentage);
            printf("\n");
        }
    }
    keel_deployment_list_free(list, n);
    return rc;
}

int keelctl_deployment_set_current(keel_client *client, const cli *c)
{
    int rc = need_args(c, 2, "NAME BUILD_ID [--ignore-missing-task-queues]");
    if (rc != 0)
        return rc;
    keel_error err;
    if (keel_client_deployment_set_current(client, c->args[2], c->args[3],
                                           c->ignore_missing_task_queues, &err) != KEEL_OK)
        return fail(&err);
    printf("Deployment %s: %s is current.\n", c->args[2], c->args[3]);
    return 0;
}

/* PERCENT: a number from 0 to 100 (a fraction allowed), nothing else. */
static int read_percent(const char *text, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !(v >= 0 && v <= 100)) {
        fprintf(stderr, "keelctl: PERCENT '%s' must be a number from 0 to 100\n", text);
        return EXIT_USAGE;
    }
    *out = v;
    return 0;
}

int keelctl_deployment_set_ramping(keel_client *client, const cli *c)
{
    int rc = need_args(c, 3, "NAME BUILD_ID PERCENT [--ignore-missing-task-queues]");
    double pct = 0;
    if (rc == 0)
        rc = read_percent(c->args[4], &pct);
    if (rc != 0)
        return rc;
    keel_error err;
    if (keel_client_deployment_set_ramping(client, c->args[2], c->args[3], pct,
                                           c->ignore_missing_task_queues, &err) != KEEL_OK)
        return fail(&err);
    printf("Deployment %s: %s ramps at %g%%.\n", c->args[2], c->args[3], pct);
    return 0;
}

int keelctl_deployment_unset_ramping(keel_client *client, const cli *c)
{
    int rc = need_args(c, 1, "NAME");
    if (rc != 0)
        return rc;
    keel_error err;
    if (keel_client_deployment_set_ramping(client, c->args[2], NULL, 0, false, &err) != KEEL_OK)
        return fail(&err);
    printf("Deployment %s: no version ramps.\n", c->args[2]);
    return 0;
}
