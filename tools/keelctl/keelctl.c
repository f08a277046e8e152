/*
 * keelctl - keel's command-line client for a Temporal server.
 *
 *   keelctl [global options] system-info
 *   keelctl [global options] namespace register NAME [--retention D] [--description T]
 *                                                    [--owner-email E] [--if-not-exists]
 *   keelctl [global options] namespace describe NAME
 *   keelctl [global options] namespace list
 *   keelctl [global options] search-attribute add --name N --type T [--if-not-exists]
 *   keelctl [global options] search-attribute list
 *   keelctl [global options] workflow start|signal|describe|result|cancel|terminate|list ...
 *
 * Exit status: 0 success, 1 the call failed, 2 bad usage.
 */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keelctl.h"
#include "keel/json.h"

static const char usage[] =
    "usage: keelctl [global options] COMMAND\n"
    "\n"
    "Commands:\n"
    "  system-info                      the server's version and capabilities\n"
    "  namespace register NAME          register a namespace\n"
    "      --retention D (default 72h)  --description TEXT  --owner-email EMAIL\n"
    "      --if-not-exists              succeed if it exists already\n"
    "  namespace describe NAME          show one namespace\n"
    "  namespace list                   list all namespaces\n"
    "  search-attribute add --name N --type T [--if-not-exists]\n"
    "                                   register a custom search attribute (types: Text,\n"
    "                                   Keyword, Int, Double, Bool, Datetime, KeywordList)\n"
    "  search-attribute list            list the namespace's search attributes\n"
    "  workflow start --id ID --type T --task-queue Q [--input JSON] [--wait]\n"
    "      [--execution-timeout D] [--run-timeout D] [--task-timeout D] [--cron EXPR]\n"
    "      [--id-reuse-policy allow-duplicate|allow-duplicate-failed-only|reject-duplicate]\n"
    "      [--id-conflict-policy fail|use-existing|terminate-existing]\n"
    "      [--memo KEY=JSON]... [--search-attribute NAME=JSON]... [--request-id ID]\n"
    "  workflow signal --id ID [--run-id R] --name SIGNAL [--input JSON]\n"
    "  workflow signal-with-start (start options) --name SIGNAL [--signal-input JSON]\n"
    "  workflow query --id ID [--run-id R] --name QUERY [--input JSON]\n"
    "                                   e.g. --name __stack_trace: where the run stands\n"
    "  workflow update --id ID [--run-id R] --name UPDATE [--input JSON] [--update-id U]\n"
    "      [--wait-timeout D]           send an update and print its result (exit 1 when\n"
    "                                   the workflow rejects or fails it)\n"
    "  workflow describe --id ID [--run-id R]\n"
    "  workflow result --id ID [--run-id R] [--wait-timeout D]\n"
    "                                   wait for the result (exit 1 unless it completed)\n"
    "  workflow cancel|terminate --id ID [--run-id R] [--reason TEXT]\n"
    "  workflow list [--query VISIBILITY-QUERY] [--limit N]\n"
    "  schedule create --id ID (--cron EXPR | --every D) --type T --task-queue Q\n"
    "      [--input JSON] [--workflow-id BASE] [--paused] [--note TEXT]\n"
    "      [--overlap skip|buffer-one|buffer-all|cancel-other|terminate-other|allow-all]\n"
    "  schedule describe|trigger|delete --id ID    schedule list\n"
    "  schedule pause|unpause --id ID [--note TEXT]\n"
    "  deployment list                  the namespace's worker deployments\n"
    "  deployment describe NAME         a deployment's current and ramping version, and\n"
    "                                   each version's status and drainage\n"
    "  deployment set-current NAME BUILD_ID [--ignore-missing-task-queues]\n"
    "                                   new runs (and auto-upgrade runs) go to BUILD_ID\n"
    "  deployment set-ramping NAME BUILD_ID PERCENT [--ignore-missing-task-queues]\n"
    "                                   PERCENT (0-100) of new runs go to BUILD_ID\n"
    "  deployment unset-ramping NAME    end the ramp\n"
    "  workflow history --id ID [--run-id R] [--output FILE] [--binary]\n"
    "                                   the run's history as JSON (or binary protobuf)\n"
    "  activity complete --id ID [--run-id R] --activity-id A [--input RESULT-JSON]\n"
    "  activity fail --id ID [--run-id R] --activity-id A --reason TEXT [--type T]\n"
    "      [--input DETAILS-JSON] [--non-retryable]\n"
    "                                   answer for an activity completed asynchronously\n"
    "  replay --history FILE --workflow TYPE\n"
    "                                   replay a recorded history (JSON or binary) through\n"
    "                                   keel's code for TYPE, offline: exit 1 when it differs\n"
    "  schema validate --schema FILE --instance FILE\n"
    "                                   check a JSON document against a JSON Schema, offline:\n"
    "                                   exit 1 when invalid, printing \"POINTER: reason\" lines\n"
    "  db migrate                       apply keel's database migrations (DATABASE_URL)\n"
    "  db seed                          migrate, then load the procurement demo data\n"
    "  tool list                        the agent tools: risk, scopes, workflows granted\n"
    "  conversation show --id CONV      an agent conversation kept in the ledger, as JSON\n"
    "  effects list [unsent|claimed|released|abandoned|done|all] [--type KIND] [--limit N]\n"
    "                                   once-only effects (notifications); unsent: those that\n"
    "                                   may not have happened, with what they carried\n"
    "  effects sweep                    mark claims past their lease abandoned now\n"
    "\n"
    "Global options (override the client profile file and the TEMPORAL_* environment;\n"
    "docs/operations.md):\n"
    "  --address HOST:PORT   Temporal frontend (TEMPORAL_ADDRESS, default localhost:7233)\n"
    "  --namespace NAME      namespace (TEMPORAL_NAMESPACE, default 'default')\n"
    "  --timeout D           deadline of each call, retries included (default 10s)\n"
    "  --tls                 use TLS (TEMPORAL_TLS); TEMPORAL_API_KEY also turns it on\n"
    "  --tls-ca FILE --tls-cert FILE --tls-key FILE --tls-server-name NAME\n"
    "  --config-file FILE    client profile file (TEMPORAL_CONFIG_FILE, default\n"
    "                        $XDG_CONFIG_HOME or ~/.config, then temporalio/temporal.toml)\n"
    "  --profile NAME        profile in it (TEMPORAL_PROFILE, default 'default')\n"
    "  --disable-config-file, --disable-config-env\n"
    "                        read no profile file / apply no TEMPORAL_* settings\n"
    "  --json                print JSON instead of text\n"
    "  --help, --version\n";

int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "keelctl: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(keelctl --help for usage)\n");
    return EXIT_USAGE;
}

static const char **option_slot(cli *c, const char *name)
{
    static const struct {
        const char *name;
        size_t offset;
    } valued[] = {
        {"address", offsetof(cli, address)},
        {"namespace", offsetof(cli, namespace)},
        {"timeout", offsetof(cli, timeout)},
        {"tls-ca", offsetof(cli, tls_ca)},
        {"tls-cert", offsetof(cli, tls_cert)},
        {"tls-key", offsetof(cli, tls_key)},
        {"tls-server-name", offsetof(cli, tls_server_name)},
        {"profile", offsetof(cli, profile)},
        {"config-file", offsetof(cli, config_file)},
        {"retention", offsetof(cli, retention)},
        {"description", offsetof(cli, description)},
        {"owner-email", offsetof(cli, owner_email)},
        {"name", offsetof(cli, name)},
        {"type", offsetof(cli, type)},
        {"id", offsetof(cli, workflow_id)},
        {"run-id", offsetof(cli, run_id)},
        {"task-queue", offsetof(cli, task_queue)},
        {"input", offsetof(cli, input)},
        {"execution-timeout", offsetof(cli, execution_timeout)},
        {"run-timeout", offsetof(cli, run_timeout)},
        {"task-timeout", offsetof(cli, task_timeout)},
        {"id-reuse-policy", offsetof(cli, id_reuse_policy)},
        {"id-conflict-policy", offsetof(cli, id_conflict_policy)},
        {"cron", offsetof(cli, cron)},
        {"reason", offsetof(cli, reason)},
        {"query", offsetof(cli, query)},
        {"limit", offsetof(cli, limit)},
        {"wait-timeout", offsetof(cli, wait_timeout)},
        {"request-id", offsetof(cli, request_id)},
        {"output", offsetof(cli, output)},
        {"signal-input", offsetof(cli, signal_input)},
        {"every", offsetof(cli, every)},
        {"overlap", offsetof(cli, overlap)},
        {"note", offsetof(cli, note)},
        {"workflow-id", offsetof(cli, base_workflow_id)},
        {"update-id", offsetof(cli, update_id)},
        {"history", offsetof(cli, history)},
        {"workflow", offsetof(cli, workflow_type)},
        {"activity-id", offsetof(cli, activity_id)},
        {"schema", offsetof(cli, schema)},
        {"instance", offsetof(cli, instance)},
    };
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if (strcmp(name, valued[i].name) == 0)
            return (const char **)((char *)c + valued[i].offset);
    return NULL;
}

/* --memo and --search-attribute may be given many times. Returns -2 when it consumed one,
 * -1 when `name` is not one of them, or an exit status. */
static int parse_repeated(cli *c, const char *name, int argc, char **argv, int *i)
{
    const char **slots;
    int *count;
    const char *key = name;
    if (strncmp(name, "memo", 4) == 0 && (name[4] == '\0' || name[4] == '=')) {
        slots = c->memo;
        count = &c->n_memo;
        key = "--memo";
    } else if (strncmp(name, "search-attribute", 16) == 0 &&
               (name[16] == '\0' || name[16] == '=')) {
        slots = c->search_attributes;
        count = &c->n_search_attributes;
        key = "--search-attribute";
    } else {
        return -1;
    }
    const char *eq = strchr(name, '=');
    const char *value = eq ? eq + 1 : NULL;
    if (value == NULL) {
        if (*i + 1 >= argc)
            return usage_error("option '%s' needs a value", key);
        value = argv[++*i];
    }
    if (*count == KEELCTL_MAX_REPEATED)
        return usage_error("too many %s options", key);
    slots[(*count)++] = value;
    return -2;
}

/* Returns -1 to go on, or an exit status. */
static int parse(int argc, char **argv, cli *c)
{
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = true; /* everything after "--" is an argument */
            continue;
        }
        if (options_done || strncmp(a, "--", 2) != 0) {
            if (c->nargs == (int)(sizeof c->args / sizeof c->args[0]))
                return usage_error("too many arguments at '%s'", a);
            c->args[c->nargs++] = a;
            continue;
        }
        const char *name = a + 2;
        if (strcmp(name, "help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(name, "version") == 0) {
            printf("keelctl %s\n", KEEL_VERSION);
            return 0;
        }
        if (strcmp(name, "json") == 0) {
            c->json = true;
            continue;
        }
        if (strcmp(name, "tls") == 0) {
            c->tls = true;
            continue;
        }
        if (strcmp(name, "disable-config-file") == 0) {
            c->disable_config_file = true;
            continue;
        }
        if (strcmp(name, "disable-config-env") == 0) {
            c->disable_config_env = true;
            continue;
        }
        if (strcmp(name, "if-not-exists") == 0) {
            c->if_not_exists = true;
            continue;
        }
        if (strcmp(name, "wait") == 0) {
            c->wait = true;
            continue;
        }
        if (strcmp(name, "binary") == 0) {
            c->binary = true;
            continue;
        }
        if (strcmp(name, "paused") == 0) {
            c->paused = true;
            continue;
        }
        if (strcmp(name, "ignore-missing-task-queues") == 0) {
            c->ignore_missing_task_queues = true;
            continue;
        }
        if (strcmp(name, "non-retryable") == 0) {
            c->non_retryable = true;
            continue;
        }
        int rep = parse_repeated(c, name, argc, argv, &i);
        if (rep >= 0)
            return rep;
        if (rep == -2)
            continue;
        /* --key=value or --key value */
        char key[64];
        const char *eq = strchr(name, '=');
        size_t klen = eq ? (size_t)(eq - name) : strlen(name);
        if (klen >= sizeof key)
            return usage_error("unknown option '%s'", a);
        memcpy(key, name, klen);
        key[klen] = '\0';
        const char **slot = option_slot(c, key);
        if (slot == NULL)
            return usage_error("unknown option '%s'", a);
        if (eq) {
            *slot = eq + 1;
        } else {
            if (i + 1 >= argc)
                return usage_error("option '%s' needs a value", a);
            *slot = argv[++i];
        }
    }
    return -1;
}

int fail(const keel_error *err)
{
    if (err->failure_type[0])
        fprintf(stderr, "keelctl: %s [%s]\n", err->message, err->failure_type);
    else
        fprintf(stderr, "keelctl: %s\n", err->message);
    return EXIT_CALL;
}

int print_json(cJSON *j)
{
    char *s = j ? keel_json_print_pretty(j) : NULL;
    cJSON_Delete(j);
    if (s == NULL) {
        fprintf(stderr, "keelctl: out of memory printing JSON\n");
        return EXIT_CALL;
    }
    puts(s);
    free(s);
    return 0;
}

/* supports_schedules -> supportsSchedules, as protobuf's JSON mapping names fields. */
static void camel(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    for (bool up = false; *in && o + 1 < outsz; in++) {
        if (*in == '_') {
            up = true;
            continue;
        }
        out[o++] = up && *in >= 'a' && *in <= 'z' ? (char)(*in - 'a' + 'A') : *in;
        up = false;
    }
    out[o] = '\0';
}

/* ---- commands ---- */

static int cmd_system_info(keel_client *client, const cli *c)
{
    keel_system_info info;
    keel_error err;
    if (keel_client_system_info(client, &info, &err) != KEEL_OK)
        return fail(&err);
    int rc = 0;
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "address", keel_client_address(client));
        cJSON_AddStringToObject(j, "serverVersion", info.server_version);
        cJSON *caps = cJSON_AddObjectToObject(j, "capabilities");
        for (size_t i = 0; i < info.n_capabilities; i++) {
            char name[96];
            camel(info.capabilities[i].name, name, sizeof name);
            cJSON_AddBoolToObject(caps, name, info.capabilities[i].enabled);
        }
        rc = print_json(j);
    } else {
        printf("Address         %s\n", keel_client_address(client));
        printf("Server version  %s\n", info.server_version);
        printf("Capabilities   ");
        size_t shown = 0;
        for (size_t i = 0; i < info.n_capabilities; i++)
            if (info.capabilities[i].enabled)
                printf("%s %s", shown++ ? "," : "", info.capabilities[i].name);
        printf("%s\n", shown ? "" : " (none)");
    }
    keel_system_info_dispose(&info);
    return rc;
}

static cJSON *namespace_json(const keel_namespace_info *ns)
{
    char retention[64];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", ns->name);
    cJSON_AddStringToObject(j, "id", ns->id);
    cJSON_AddStringToObject(j, "state", keel_namespace_state_name(ns->state));
    cJSON_AddStringToObject(j, "description", ns->description);
    cJSON_AddStringToObject(j, "ownerEmail", ns->owner_email);
    cJSON_AddStringToObject(j, "retention",
                            keel_duration_format(ns->retention_ms, retention, sizeof retention));
    cJSON_AddBoolToObject(j, "isGlobalNamespace", ns->is_global);
    cJSON_AddStringToObject(j, "activeClusterName", ns->active_cluster);
    cJSON *data = cJSON_AddObjectToObject(j, "data");
    for (size_t i = 0; i < ns->n_data; i++)
        cJSON_AddStringToObject(data, ns->data[i].key, ns->data[i].value);
    return j;
}

static void namespace_text(const keel_namespace_info *ns)
{
    char retention[64];
    printf("Name            %s\n", ns->name);
    printf("Id              %s\n", ns->id);
    printf("State           %s\n", keel_namespace_state_name(ns->state));
    printf("Description     %s\n", ns->description);
    printf("Owner email     %s\n", ns->owner_email);
    printf("Retention       %s\n",
           keel_duration_format(ns->retention_ms, retention, sizeof retention));
    printf("Global          %s\n", ns->is_global ? "yes" : "no");
    printf("Active cluster  %s\n", ns->active_cluster);
    for (size_t i = 0; i < ns->n_data; i++)
        printf("Data            %s=%s\n", ns->data[i].key, ns->data[i].value);
}

static int cmd_namespace_register(keel_client *client, const cli *c)
{
    if (c->nargs != 3)
        return usage_error("%s", "namespace register needs exactly one NAME");
    keel_namespace_register_options o;
    keel_namespace_register_options_init(&o, KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION);
    o.name = c->args[2];
    o.description = c->description;
    o.owner_email = c->owner_email;
    keel_error err;
    if (c->retention && keel_duration_parse(c->retention, &o.retention_ms, &err) != KEEL_OK)
        return usage_error("--retention: %s", err.message);
    int rc = keel_client_namespace_register(client, &o, &err);
    bool existed = rc == KEEL_EEXISTS && c->if_not_exists;
    if (rc != KEEL_OK && !existed)
        return fail(&err);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "namespace", o.name);
        cJSON_AddBoolToObject(j, "created", !existed);
        return print_json(j);
    }
    printf("Namespace %s %s.\n", o.name, existed ? "already exists" : "registered");
    return 0;
}

static int cmd_namespace_describe(keel_client *client, const cli *c)
{
    if (c->nargs != 3)
        return usage_error("%s", "namespace describe needs exactly one NAME");
    keel_namespace_info ns;
    keel_error err;
    if (keel_client_namespace_describe(client, c->args[2], &ns, &err) != KEEL_OK)
        return fail(&err);
    int rc = 0;
    if (c->json)
        rc = print_json(namespace_json(&ns));
    else
        namespace_text(&ns);
    keel_namespace_info_dispose(&ns);
    return rc;
}

static int cmd_namespace_list(keel_client *client, const cli *c)
{
    keel_namespace_list list;
    keel_error err;
    if (keel_client_namespace_list(client, &list, &err) != KEEL_OK)
        return fail(&err);
    int rc = 0;
    if (c->json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < list.count; i++)
            cJSON_AddItemToArray(arr, namespace_json(&list.items[i]));
        rc = print_json(arr);
    } else {
        printf("%-32s %-11s %-10s %s\n", "NAME", "STATE", "RETENTION", "DESCRIPTION");
        for (size_t i = 0; i < list.count; i++) {
            char retention[64];
            const keel_namespace_info *ns = &list.items[i];
            printf("%-32s %-11s %-10s %s\n", ns->name, keel_namespace_state_name(ns->state),
                   keel_duration_format(ns->retention_ms, retention, sizeof retention),
                   ns->description);
        }
    }
    keel_namespace_list_dispose(&list);
    return rc;
}

/* Look an attribute up in a list; NULL when absent. */
const keel_search_attribute *find_attribute(const keel_search_attribute_list *l, const char *name)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    return NULL;
}

static int cmd_search_attribute_add(keel_client *client, const cli *c)
{
    if (c->nargs != 2)
        return usage_error("%s", "search-attribute add takes --name and --type, no arguments");
    if (c->name == NULL || c->type == NULL)
        return usage_error("%s", "search-attribute add needs --name and --type");
    keel_error err;
    keel_indexed_value_type type;
    if (keel_indexed_value_type_parse(c->type, &type, &err) != KEEL_OK)
        return usage_error("--type: %s", err.message);

    /* With --if-not-exists, look first: the server's answer to a duplicate differs between
     * visibility stores, and a duplicate with another type must still be an error. */
    bool existed = false;
    if (c->if_not_exists) {
        keel_search_attribute_list list;
        if (keel_client_search_attributes_list(client, NULL, &list, &err) != KEEL_OK)
            return fail(&err);
        const keel_search_attribute *have = find_attribute(&list, c->name);
        if (have && have->type != (int)type) {
            fprintf(stderr,
                    "keelctl: search attribute %s exists in namespace %s with type %s, not %s\n",
                    c->name, keel_client_namespace(client),
                    keel_indexed_value_type_name(have->type), keel_indexed_value_type_name(type));
            keel_search_attribute_list_dispose(&list);
            return EXIT_CALL;
        }
        existed = have != NULL;
        keel_search_attribute_list_dispose(&list);
    }
    if (!existed) {
        keel_search_attribute sa = {.name = (char *)c->name, .type = (int)type};
        int rc = keel_client_search_attributes_add(client, NULL, &sa, 1, &err);
        if (rc == KEEL_EEXISTS && c->if_not_exists)
            existed = true;
        else if (rc != KEEL_OK)
            return fail(&err);
    }
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "namespace", keel_client_namespace(client));
        cJSON_AddStringToObject(j, "name", c->name);
        cJSON_AddStringToObject(j, "type", keel_indexed_value_type_name(type));
        cJSON_AddBoolToObject(j, "added", !existed);
        return print_json(j);
    }
    printf("Search attribute %s (%s) %s in namespace %s.\n", c->name,
           keel_indexed_value_type_name(type), existed ? "already exists" : "added",
           keel_client_namespace(client));
    return 0;
}

static int cmd_search_attribute_list(keel_client *client, const cli *c)
{
    keel_search_attribute_list list;
    keel_error err;
    if (keel_client_search_attributes_list(client, NULL, &list, &err) != KEEL_OK)
        return fail(&err);
    int rc = 0;
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON *custom = cJSON_AddObjectToObject(j, "customAttributes");
        cJSON *system = cJSON_AddObjectToObject(j, "systemAttributes");
        for (size_t i = 0; i < list.count; i++)
            cJSON_AddStringToObject(list.items[i].is_system ? system : custom, list.items[i].name,
                                    keel_indexed_value_type_name(list.items[i].type));
        rc = print_json(j);
    } else {
        printf("%-36s %-12s %s\n", "NAME", "TYPE", "KIND");
        for (size_t i = 0; i < list.count; i++)
            printf("%-36s %-12s %s\n", list.items[i].name,
                   keel_indexed_value_type_name(list.items[i].type),
                   list.items[i].is_system ? "system" : "custom");
    }
    keel_search_attribute_list_dispose(&list);
    return rc;
}

static const struct command {
    const char *group, *verb;
    int (*run)(keel_client *, const cli *);
} commands[] = {
    {"system-info", NULL, cmd_system_info},
    {"namespace", "register", cmd_namespace_register},
    {"namespace", "describe", cmd_namespace_describe},
    {"namespace", "list", cmd_namespace_list},
    {"search-attribute", "add", cmd_search_attribute_add},
    {"search-attribute", "list", cmd_search_attribute_list},
    {"workflow", "start", keelctl_workflow_start},
    {"workflow", "signal", keelctl_workflow_signal},
    {"workflow", "describe", keelctl_workflow_describe},
    {"workflow", "result", keelctl_workflow_result},
    {"workflow", "cancel", keelctl_workflow_cancel},
    {"workflow", "terminate", keelctl_workflow_terminate},
    {"workflow", "list", keelctl_workflow_list},
    {"workflow", "history", keelctl_workflow_history},
    {"workflow", "query", keelctl_workflow_query},
    {"workflow", "update", keelctl_workflow_update},
    {"activity", "complete", keelctl_activity_complete},
    {"activity", "fail", keelctl_activity_fail},
    {"workflow", "signal-with-start", keelctl_workflow_signal_with_start},
    {"schedule", "create", keelctl_schedule_create},
    {"schedule", "describe", keelctl_schedule_describe},
    {"schedule", "list", keelctl_schedule_list},
    {"schedule", "pause", keelctl_schedule_pause},
    {"schedule", "unpause", keelctl_schedule_unpause},
    {"schedule", "trigger", keelctl_schedule_trigger},
    {"schedule", "delete", keelctl_schedule_delete},
    {"deployment", "describe", keelctl_deployment_describe},
    {"deployment", "list", keelctl_deployment_list},
    {"deployment", "set-current", keelctl_deployment_set_current},
    {"deployment", "set-ramping", keelctl_deployment_set_ramping},
    {"deployment", "unset-ramping", keelctl_deployment_unset_ramping},
};

/* The command named by the arguments, or NULL after saying what is wrong with them. */
static const struct command *find_command(const cli *c)
{
    bool group_known = false;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const struct command *cmd = &commands[i];
        if (strcmp(c->args[0], cmd->group) != 0)
            continue;
        group_known = true;
        if (cmd->verb == NULL || (c->nargs > 1 && strcmp(c->args[1], cmd->verb) == 0))
            return cmd;
    }
    if (!group_known)
        usage_error("unknown command '%s'", c->args[0]);
    else if (c->nargs < 2)
        usage_error("'%s' needs a subcommand", c->args[0]);
    else
        usage_error("unknown subcommand '%s'", c->args[1]);
    return NULL;
}

/* The profile file, then the environment, then the flags. *profile owns what o borrows. */
static int connect_options(const cli *c, keel_connect_options *o, keel_client_profile **profile,
                           keel_error *err)
{
    keel_connect_options_init(o, KEEL_CONNECT_OPTIONS_VERSION);
    keel_profile_load_options lo = KEEL_PROFILE_LOAD_OPTIONS_INIT;
    lo.config_file = c->config_file;
    lo.profile = c->profile;
    lo.disable_file = c->disable_config_file;
    lo.disable_env = c->disable_config_env;
    if (lo.disable_file && lo.disable_env) {
        keel_connect_options_init(o, KEEL_CONNECT_OPTIONS_VERSION); /* flags only */
    } else {
        int rc = keel_connect_options_from_profile(o, &lo, profile, err);
        if (rc != KEEL_OK)
            return rc;
    }
    if (c->address)
        o->address = c->address;
    if (c->namespace)
        o->namespace_ = c->namespace;
    if (c->tls)
        o->tls = KEEL_TLS_ON;
    /* A flag's path replaces the profile's path or inline data alike. */
    if (c->tls_ca) {
        o->tls_ca_path = c->tls_ca;
        o->tls_ca_data = NULL;
    }
    if (c->tls_cert) {
        o->tls_cert_path = c->tls_cert;
        o->tls_cert_data = NULL;
    }
    if (c->tls_key) {
        o->tls_key_path = c->tls_key;
        o->tls_key_data = NULL;
    }
    if (c->tls_server_name)
        o->tls_server_name = c->tls_server_name;
    if (c->timeout) {
        keel_error e;
        if (keel_duration_parse(c->timeout, &o->rpc_timeout_ms, &e) != KEEL_OK)
            return keel_error_set(err, KEEL_EINVAL, "--timeout: %s", e.message);
        if (o->rpc_timeout_ms <= 0)
            return keel_error_set(err, KEEL_EINVAL, "--timeout must be positive");
    }
    return keel_connect_options_validate(o, err);
}

/* Output that did not reach its file (a full disk, a closed pipe) is a failure. */
static int finish(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "keelctl: could not write the output\n");
        return rc == 0 ? EXIT_CALL : rc;
    }
    return rc;
}

int main(int argc, char **argv)
{
    cli c;
    memset(&c, 0, sizeof c);
    int rc = parse(argc, argv, &c);
    if (rc >= 0)
        return finish(rc);
    if (c.nargs == 0)
        return usage_error("%s", "no command given");
    if (strcmp(c.args[0], "replay") == 0)
        return finish(keelctl_replay(&c));
    if (strcmp(c.args[0], "schema") == 0)
        return finish(keelctl_schema(&c));
    if (strcmp(c.args[0], "effects") == 0)
        return finish(keelctl_effects(&c));
    if (strcmp(c.args[0], "db") == 0 || strcmp(c.args[0], "tool") == 0 ||
        strcmp(c.args[0], "conversation") == 0)
        return finish(keelctl_agent(&c));
    const struct command *cmd = find_command(&c);
    if (cmd == NULL)
        return EXIT_USAGE;
    if (cmd->verb == NULL && c.nargs > 1)
        return usage_error("%s takes no arguments", cmd->group);

    keel_connect_options o;
    keel_client_profile *profile = NULL;
    keel_error err;
    if (connect_options(&c, &o, &profile, &err) != KEEL_OK) {
        keel_client_profile_free(profile);
        return usage_error("%s", err.message);
    }
    keel_client *client;
    rc = keel_client_new(&client, &o, &err);
    keel_client_profile_free(profile); /* the client copied what it keeps */
    if (rc != KEEL_OK)
        return fail(&err);
    rc = cmd->run(client, &c);
    keel_client_free(client);
    return finish(rc);
}
