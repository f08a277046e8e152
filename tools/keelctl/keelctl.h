/* keelctl - what the command files share: the parsed command line and output helpers. */
#ifndef KEELCTL_H
#define KEELCTL_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "keel/keel.h"

#define EXIT_CALL  1 /* the call failed, or the workflow did not complete */
#define EXIT_USAGE 2

#define KEELCTL_MAX_REPEATED 32

/* Parsed command line. Strings point into argv. */
typedef struct cli {
    const char *address, *namespace, *timeout;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    const char *profile, *config_file;
    bool disable_config_file, disable_config_env;
    bool tls, json, if_not_exists, wait, binary, paused;
    const char *retention, *description, *owner_email;
    const char *name, *type;
    const char *workflow_id, *run_id, *task_queue, *input, *request_id, *signal_input;
    const char *every, *overlap, *note, *base_workflow_id, *update_id;
    const char *history, *workflow_type, *activity_id;
    const char *schema, *instance;
    bool non_retryable, ignore_missing_task_queues;
    const char *execution_timeout, *run_timeout, *task_timeout, *wait_timeout;
    const char *id_reuse_policy, *id_conflict_policy, *cron, *reason, *query, *limit, *output;
    const char *memo[KEELCTL_MAX_REPEATED];
    int n_memo;
    const char *search_attributes[KEELCTL_MAX_REPEATED];
    int n_search_attributes;
    const char *args[5];
    int nargs;
} cli;

/* Print "keelctl: <fmt with what>" and the usage hint to stderr; returns EXIT_USAGE. */
int usage_error(const char *fmt, const char *what);

/* Print the error to stderr; returns EXIT_CALL. */
int fail(const keel_error *err);

/* Print j to stdout and delete it; returns 0, or EXIT_CALL when it cannot be printed. */
int print_json(cJSON *j);

/* The attribute named name in l, or NULL. Borrowed from l. */
const keel_search_attribute *find_attribute(const keel_search_attribute_list *l, const char *name);

/* The workflow commands (workflow.c). */
int keelctl_workflow_start(keel_client *client, const cli *c);
int keelctl_workflow_signal(keel_client *client, const cli *c);
int keelctl_workflow_describe(keel_client *client, const cli *c);
int keelctl_workflow_result(keel_client *client, const cli *c);
int keelctl_workflow_cancel(keel_client *client, const cli *c);
int keelctl_workflow_terminate(keel_client *client, const cli *c);
int keelctl_workflow_list(keel_client *client, const cli *c);
int keelctl_workflow_history(keel_client *client, const cli *c);
int keelctl_workflow_query(keel_client *client, const cli *c);
int keelctl_workflow_update(keel_client *client, const cli *c);

int keelctl_activity_complete(keel_client *client, const cli *c);
int keelctl_activity_fail(keel_client *client, const cli *c);

/* Offline: no client. */
int keelctl_replay(const cli *c);
int keelctl_schema(const cli *c);
int keelctl_agent(const cli *c);   /* db, tool, conversation: no Temporal server */
int keelctl_effects(const cli *c); /* effects list|sweep (effects.c): no Temporal server */
int keelctl_workflow_signal_with_start(keel_client *client, const cli *c);

/* The schedule commands (schedule.c). */
int keelctl_schedule_create(keel_client *client, const cli *c);
int keelctl_schedule_describe(keel_client *client, const cli *c);
int keelctl_schedule_list(keel_client *client, const cli *c);
int keelctl_schedule_pause(keel_client *client, const cli *c);
int keelctl_schedule_unpause(keel_client *client, const cli *c);
int keelctl_schedule_trigger(keel_client *client, const cli *c);
int keelctl_schedule_delete(keel_client *client, const cli *c);

/* The worker deployment commands (deployment.c). */
int keelctl_deployment_describe(keel_client *client, const cli *c);
int keelctl_deployment_list(keel_client *client, const cli *c);
int keelctl_deployment_set_current(keel_client *client, const cli *c);
int keelctl_deployment_set_ramping(keel_client *client, const cli *c);
int keelctl_deployment_unset_ramping(keel_client *client, const cli *c);

#endif
