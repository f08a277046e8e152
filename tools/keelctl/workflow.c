/* keelctl workflow start|signal|describe|result|cancel|terminate|list */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>

#include "keelctl.h"
#include "keel/json.h"

/* Parse an optional duration option into *ms; names the option on error. */
static int duration_option(const char *option, const char *text, int64_t *ms)
{
    *ms = 0;
    if (text == NULL)
        return 0;
    keel_error err;
    if (keel_duration_parse(text, ms, &err) != KEEL_OK) {
        fprintf(stderr, "keelctl: --%s: %s\n", option, err.message);
        return EXIT_USAGE;
    }
    return 0;
}

/* Look `text` up in names (index = enum value, 0 unused); EXIT_USAGE naming the option. */
static int enum_option(const char *option, const char *text, const char *const *names, int n,
                       int *out)
{
    *out = 0;
    if (text == NULL)
        return 0;
    for (int i = 1; i < n; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    fprintf(stderr, "keelctl: --%s: unknown value '%s' (use", option, text);
    for (int i = 1; i < n; i++)
        fprintf(stderr, "%s %s", i > 1 ? "," : "", names[i]);
    fprintf(stderr, ")\n");
    return EXIT_USAGE;
}

static int need_id(const cli *c, const char *command)
{
    if (c->workflow_id == NULL || c->workflow_id[0] == '\0') {
        fprintf(stderr, "keelctl: workflow %s needs --id\n", command);
        return EXIT_USAGE;
    }
    if (c->nargs != 2) {
        fprintf(stderr, "keelctl: workflow %s takes options only, not '%s'\n", command, c->args[2]);
        return EXIT_USAGE;
    }
    return 0;
}

/* need_id(), and --name, which `hint` describes ("" for none). */
static int need_id_and_name(const cli *c, const char *command, const char *hint)
{
    int rc = need_id(c, command);
    if (rc == 0 && c->name == NULL) {
        fprintf(stderr, "keelctl: workflow %s needs --name%s\n", command, hint);
        rc = EXIT_USAGE;
    }
    return rc;
}

/* "KEY=JSON" -> key (copied into buf) and the JSON part. */
static int split_assignment(const char *option, const char *text, char *key, size_t keysz,
                            const char **value)
{
    const char *eq = strchr(text, '=');
    if (eq == NULL || eq == text || (size_t)(eq - text) >= keysz) {
        fprintf(stderr, "keelctl: --%s '%s': expected KEY=JSON\n", option, text);
        return EXIT_USAGE;
    }
    memcpy(key, text, (size_t)(eq - text));
    key[eq - text] = '\0';
    *value = eq + 1;
    return 0;
}

typedef struct start_args {
    keel_workflow_start_options o;
    keel_kv memo[KEELCTL_MAX_REPEATED];
    char memo_keys[KEELCTL_MAX_REPEATED][256];
    keel_search_attribute_value sa[KEELCTL_MAX_REPEATED];
    char sa_names[KEELCTL_MAX_REPEATED][256];
} start_args;

/* Search attribute values need their registered type: look each name up on the server. */
static int resolve_search_attributes(keel_client *client, const cli *c, start_args *a)
{
    if (c->n_search_attributes == 0)
        return 0;
    keel_search_attribute_list list;
    keel_error err;
    if (keel_client_search_attributes_list(client, NULL, &list, &err) != KEEL_OK)
        return fail(&err);
    int rc = 0;
    for (int i = 0; rc == 0 && i < c->n_search_attributes; i++) {
        const char *json;
        rc = split_assignment("search-attribute", c->search_attributes[i], a->sa_names[i],
                              sizeof a->sa_names[i], &json);
        if (rc != 0)
            break;
        const keel_search_attribute *have = find_attribute(&list, a->sa_names[i]);
        if (have == NULL) {
            fprintf(stderr,
                    "keelctl: search attribute '%s' is not registered in namespace %s "
                    "(keelctl search-attribute add)\n",
                    a->sa_names[i], keel_client_namespace(client));
            rc = EXIT_USAGE;
            break;
        }
        a->sa[i] = (keel_search_attribute_value){a->sa_names[i], have->type, json};
    }
    keel_search_attribute_list_dispose(&list);
    a->o.search_attributes = a->sa;
    a->o.n_search_attributes = (size_t)c->n_search_attributes;
    return rc;
}

static int start_options(keel_client *client, const cli *c, start_args *a)
{
    static const char *const reuse[] = {"", "allow-duplicate", "allow-duplicate-failed-only",
                                        "reject-duplicate"};
    static const char *const conflict[] = {"", "fail", "use-existing", "terminate-existing"};
    keel_workflow_start_options_init(&a->o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    if (c->type == NULL || c->task_queue == NULL) {
        fprintf(stderr, "keelctl: workflow start needs --type and --task-queue\n");
        return EXIT_USAGE;
    }
    a->o.workflow_id = c->workflow_id;
    a->o.workflow_type = c->type;
    a->o.task_queue = c->task_queue;
    a->o.input_json = c->input;
    a->o.cron_schedule = c->cron;
    a->o.request_id = c->request_id;
    int reuse_v = 0, conflict_v = 0;
    int rc = duration_option("execution-timeout", c->execution_timeout, &a->o.execution_timeout_ms);
    if (rc == 0)
        rc = duration_option("run-timeout", c->run_timeout, &a->o.run_timeout_ms);
    if (rc == 0)
        rc = duration_option("task-timeout", c->task_timeout, &a->o.task_timeout_ms);
    if (rc == 0)
        rc = enum_option("id-reuse-policy", c->id_reuse_policy, reuse, 4, &reuse_v);
    if (rc == 0)
        rc = enum_option("id-conflict-policy", c->id_conflict_policy, conflict, 4, &conflict_v);
    a->o.id_reuse_policy = (keel_id_reuse_policy)reuse_v;
    a->o.id_conflict_policy = (keel_id_conflict_policy)conflict_v;
    for (int i = 0; rc == 0 && i < c->n_memo; i++) {
        rc = split_assignment("memo", c->memo[i], a->memo_keys[i], sizeof a->memo_keys[i],
                              (const char **)&a->memo[i].value);
        a->memo[i].key = a->memo_keys[i];
    }
    a->o.memo = a->memo;
    a->o.n_memo = (size_t)c->n_memo;
    if (rc == 0)
        rc = resolve_search_attributes(client, c, a);
    return rc;
}

/* Print a workflow's outcome; exit status 0 only if it completed. */
static int print_outcome(const char *workflow_id, const keel_workflow_outcome *out, bool json)
{
    bool completed = out->status == KEEL_WORKFLOW_STATUS_COMPLETED;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "workflowId", workflow_id);
        cJSON_AddStringToObject(j, "runId", out->run_id);
        cJSON_AddStringToObject(j, "status", keel_workflow_status_name(out->status));
        if (completed) {
            cJSON *r = keel_json_from(out->result_json);
            cJSON_AddItemToObject(j, "result", r ? r : cJSON_CreateNull());
        } else {
            cJSON *f = cJSON_AddObjectToObject(j, "failure");
            cJSON_AddStringToObject(f, "message", out->failure_message ? out->failure_message : "");
            if (out->failure_type)
                cJSON_AddStringToObject(f, "type", out->failure_type);
        }
        int rc = print_json(j);
        return rc ? rc : (completed ? 0 : EXIT_CALL);
    }
    if (completed) {
        printf("%s\n", out->result_json);
        return 0;
    }
    fprintf(stderr, "keelctl: workflow %s (run %s) %s: %s%s%s%s\n", workflow_id, out->run_id,
            keel_workflow_status_name(out->status),
            out->failure_message ? out->failure_message : "", out->failure_type ? " [" : "",
            out->failure_type ? out->failure_type : "", out->failure_type ? "]" : "");
    return EXIT_CALL;
}

static int wait_for_result(keel_client *client, const char *workflow_id, const char *run_id,
                           const char *wait_timeout, bool json)
{
    int64_t timeout_ms;
    int rc = duration_option("wait-timeout", wait_timeout, &timeout_ms);
    if (rc != 0)
        return rc;
    keel_workflow_outcome out;
    keel_error err;
    if (keel_client_workflow_result(client, workflow_id, run_id, timeout_ms, &out, &err) != KEEL_OK)
        return fail(&err);
    rc = print_outcome(workflow_id, &out, json);
    keel_workflow_outcome_dispose(&out);
    return rc;
}

int keelctl_workflow_start(keel_client *client, const cli *c)
{
    int rc = need_id(c, "start");
    if (rc != 0)
        return rc;
    start_args a;
    memset(&a, 0, sizeof a);
    if ((rc = start_options(client, c, &a)) != 0)
        return rc;
    char *run_id = NULL;
    keel_error err;
    if (keel_client_workflow_start(client, &a.o, &run_id, &err) != KEEL_OK)
        return fail(&err);
    if (c->wait) {
        /* The result is the whole answer; the start line would only get in the way of JSON. */
        if (!c->json)
            fprintf(stderr, "Started workflow %s, run %s; waiting for its result.\n",
                    c->workflow_id, run_id);
        rc = wait_for_result(client, c->workflow_id, run_id, c->wait_timeout, c->json);
    } else if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "workflowId", c->workflow_id);
        cJSON_AddStringToObject(j, "runId", run_id);
        rc = print_json(j);
    } else {
        printf("Started workflow %s, run %s.\n", c->workflow_id, run_id);
    }
    free(run_id);
    return rc;
}

int keelctl_workflow_signal(keel_client *client, const cli *c)
{
    int rc = need_id_and_name(c, "signal", "");
    if (rc != 0)
        return rc;
    keel_error err;
    if (keel_client_workflow_signal(client, c->workflow_id, c->run_id, c->name, c->input, &err) !=
        KEEL_OK)
        return err.code == KEEL_EINVAL && err.grpc_status == KEEL_NO_GRPC_STATUS
                   ? (fprintf(stderr, "keelctl: %s\n", err.message), EXIT_USAGE)
                   : fail(&err);
    if (!c->json)
        printf("Signal %s sent to workflow %s.\n", c->name, c->workflow_id);
    else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "workflowId", c->workflow_id);
        cJSON_AddStringToObject(j, "signal", c->name);
        return print_json(j);
    }
    return 0;
}

/* RFC 3339 UTC with milliseconds; "-" for 0. */
static const char *format_time(int64_t ms, char *buf, size_t n)
{
    if (ms == 0)
        return "-";
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL)
        return "-";
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03dZ", date, (int)(ms % 1000));
    return buf;
}

static cJSON *kv_json_object(const keel_kv *kv, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++) {
        cJSON *v = keel_json_from(kv[i].value);
        cJSON_AddItemToObject(o, kv[i].key, v ? v : cJSON_CreateString(kv[i].value));
    }
    return o;
}

static cJSON *info_json(const keel_workflow_info *w)
{
    char t[48];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "workflowId", w->workflow_id);
    cJSON_AddStringToObject(j, "runId", w->run_id);
    cJSON_AddStringToObject(j, "type", w->workflow_type);
    cJSON_AddStringToObject(j, "taskQueue", w->task_queue);
    cJSON_AddStringToObject(j, "status", keel_workflow_status_name(w->status));
    cJSON_AddStringToObject(j, "startTime", format_time(w->start_time_ms, t, sizeof t));
    if (w->close_time_ms)
        cJSON_AddStringToObject(j, "closeTime", format_time(w->close_time_ms, t, sizeof t));
    cJSON_AddNumberToObject(j, "historyLength", (double)w->history_length);
    cJSON_AddItemToObject(j, "memo", kv_json_object(w->memo, w->n_memo));
    cJSON_AddItemToObject(j, "searchAttributes",
                          kv_json_object(w->search_attributes, w->n_search_attributes));
    return j;
}

int keelctl_workflow_describe(keel_client *client, const cli *c)
{
    int rc = need_id(c, "describe");
    if (rc != 0)
        return rc;
    keel_workflow_info w;
    keel_error err;
    if (keel_client_workflow_describe(client, c->workflow_id, c->run_id, &w, &err) != KEEL_OK)
        return fail(&err);
    if (c->json) {
        rc = print_json(info_json(&w));
    } else {
        char t[48];
        printf("Workflow id     %s\n", w.workflow_id);
        printf("Run id          %s\n", w.run_id);
        printf("Type            %s\n", w.workflow_type);
        printf("Task queue      %s\n", w.task_queue);
        printf("Status          %s\n", keel_workflow_status_name(w.status));
        printf("Started         %s\n", format_time(w.start_time_ms, t, sizeof t));
        printf("Closed          %s\n", format_time(w.close_time_ms, t, sizeof t));
        printf("History length  %lld\n", (long long)w.history_length);
        for (size_t i = 0; i < w.n_memo; i++)
            printf("Memo            %s=%s\n", w.memo[i].key, w.memo[i].value);
        for (size_t i = 0; i < w.n_search_attributes; i++)
            printf("Search attr     %s=%s\n", w.search_attributes[i].key,
                   w.search_attributes[i].value);
    }
    keel_workflow_info_dispose(&w);
    return rc;
}

int keelctl_workflow_result(keel_client *client, const cli *c)
{
    int rc = need_id(c, "result");
    if (rc != 0)
        return rc;
    return wait_for_result(client, c->workflow_id, c->run_id, c->wait_timeout, c->json);
}

static int close_workflow(keel_client *client, const cli *c, bool terminate)
{
    const char *command = terminate ? "terminate" : "cancel";
    int rc = need_id(c, command);
    if (rc != 0)
        return rc;
    keel_error err;
    rc = terminate
             ? keel_client_workflow_terminate(client, c->workflow_id, c->run_id, c->reason, &err)
             : keel_client_workflow_cancel(client, c->workflow_id, c->run_id, c->reason, &err);
    if (rc != KEEL_OK)
        return fail(&err);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "workflowId", c->workflow_id);
        cJSON_AddStringToObject(j, terminate ? "terminated" : "cancelRequested", "true");
        return print_json(j);
    }
    printf(terminate ? "Workflow %s terminated.\n" : "Cancellation of workflow %s requested.\n",
           c->workflow_id);
    return 0;
}

int keelctl_workflow_cancel(keel_client *client, const cli *c)
{
    return close_workflow(client, c, false);
}

int keelctl_workflow_terminate(keel_client *client, const cli *c)
{
    return close_workflow(client, c, true);
}

int keelctl_workflow_list(keel_client *client, const cli *c)
{
    if (c->nargs != 2) {
        fprintf(stderr, "keelctl: workflow list takes options only\n");
        return EXIT_USAGE;
    }
    size_t limit = 0;
    if (c->limit) {
        char *end;
        long v = strtol(c->limit, &end, 10);
        if (*end != '\0' || v <= 0 || v > 100000) {
            fprintf(stderr, "keelctl: --limit '%s': expected a number from 1 to 100000\n",
                    c->limit);
            return EXIT_USAGE;
        }
        limit = (size_t)v;
    }
    keel_workflow_list list;
    keel_error err;
    if (keel_client_workflow_list(client, c->query, limit, &list, &err) != KEEL_OK)
        return fail(&err);
    int rc = 0;
    if (c->json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < list.count; i++)
            cJSON_AddItemToArray(arr, info_json(&list.items[i]));
        rc = print_json(arr);
    } else {
        char t[48];
        printf("%-40s %-24s %-14s %s\n", "WORKFLOW ID", "TYPE", "STATUS", "STARTED");
        for (size_t i = 0; i < list.count; i++) {
            const keel_workflow_info *w = &list.items[i];
            printf("%-40s %-24s %-14s %s\n", w->workflow_id, w->workflow_type,
                   keel_workflow_status_name(w->status),
                   format_time(w->start_time_ms, t, sizeof t));
        }
    }
    keel_workflow_list_dispose(&list);
    return rc;
}

int keelctl_workflow_history(keel_client *client, const cli *c)
{
    int rc = need_id(c, "history");
    if (rc != 0)
        return rc;
    if (c->binary && c->output == NULL) {
        fprintf(stderr,
                "keelctl: --binary needs --output FILE (binary does not go to a terminal)\n");
        return EXIT_USAGE;
    }
    char *data = NULL;
    size_t len = 0;
    keel_error err;
    if (keel_client_workflow_history(client, c->workflow_id, c->run_id,
                                     c->binary ? KEEL_HISTORY_BINARY : KEEL_HISTORY_JSON, &data,
                                     &len, &err) != KEEL_OK)
        return fail(&err);
    FILE *f = c->output ? fopen(c->output, "wb") : stdout;
    if (f == NULL) {
        fprintf(stderr, "keelctl: cannot write '%s': %s\n", c->output, strerror(errno));
        free(data);
        return EXIT_CALL;
    }
    bool ok = fwrite(data, 1, len, f) == len && (c->binary || fputc('\n', f) != EOF);
    if (c->output)
        ok = fclose(f) == 0 && ok;
    free(data);
    if (!ok) {
        fprintf(stderr, "keelctl: could not write the history%s%s\n", c->output ? " to " : "",
                c->output ? c->output : "");
        return EXIT_CALL;
    }
    if (c->output)
        fprintf(stderr, "History of workflow %s written to %s (%zu bytes).\n", c->workflow_id,
                c->output, len);
    return 0;
}

int keelctl_workflow_query(keel_client *client, const cli *c)
{
    int rc = need_id_and_name(c, "query", " (try __stack_trace)");
    if (rc != 0)
        return rc;
    char *result = NULL;
    keel_error err;
    if (keel_client_workflow_query(client, c->workflow_id, c->run_id, c->name, c->input, &result,
                                   &err) != KEEL_OK)
        return fail(&err);
    printf("%s\n", result);
    free(result);
    return 0;
}

int keelctl_workflow_update(keel_client *client, const cli *c)
{
    int rc = need_id_and_name(c, "update", "");
    if (rc != 0)
        return rc;
    int64_t timeout_ms = 0;
    if (c->wait_timeout && (rc = duration_option("--wait-timeout", c->wait_timeout, &timeout_ms)))
        return rc;
    keel_update_outcome out;
    keel_error err;
    if (keel_client_workflow_update(client, c->workflow_id, c->run_id, c->update_id, c->name,
                                    c->input, timeout_ms, &out, &err) != KEEL_OK)
        return fail(&err);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "updateId", out.update_id);
        cJSON_AddBoolToObject(j, "failed", out.failed);
        if (out.failed) {
            cJSON_AddStringToObject(j, "failure", out.failure_message);
            cJSON_AddStringToObject(j, "failureType", out.failure_type);
        } else {
            cJSON *r = keel_json_from(out.result_json);
            cJSON_AddItemToObject(j, "result", r ? r : cJSON_CreateString(out.result_json));
        }
        rc = print_json(j);
    } else if (out.failed) {
        fprintf(stderr, "Update %s of workflow %s failed%s%s%s: %s\n", out.update_id,
                c->workflow_id, out.failure_type[0] ? " (" : "", out.failure_type,
                out.failure_type[0] ? ")" : "", out.failure_message);
    } else {
        printf("%s\n", out.result_json);
    }
    if (out.failed && rc == 0)
        rc = EXIT_CALL;
    keel_update_outcome_dispose(&out);
    return rc;
}

int keelctl_workflow_signal_with_start(keel_client *client, const cli *c)
{
    int rc = need_id_and_name(c, "signal-with-start", " (the signal)");
    if (rc != 0)
        return rc;
    start_args a;
    memset(&a, 0, sizeof a);
    if ((rc = start_options(client, c, &a)) != 0)
        return rc;
    char *run_id = NULL;
    keel_error err;
    if (keel_client_workflow_signal_with_start(client, &a.o, c->name, c->signal_input, &run_id,
                                               &err) != KEEL_OK)
        return fail(&err);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "workflowId", c->workflow_id);
        cJSON_AddStringToObject(j, "runId", run_id);
        cJSON_AddStringToObject(j, "signal", c->name);
        rc = print_json(j);
    } else {
        printf("Signal %s sent to workflow %s, run %s.\n", c->name, c->workflow_id, run_id);
    }
    free(run_id);
    return rc;
}
