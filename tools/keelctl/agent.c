/*
 * keelctl db / tool / conversation - the agent activities' side of keel, without a Temporal
 * server: apply the database migrations or load the demo data (DATABASE_URL), list the tools
 * with their risk and who may use them, print a conversation kept in the ledger.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/agent.h"
#include "keelctl.h"
#include "keel/json.h"

static int open_ledger(keel_ledger **ledger)
{
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url) {
        fprintf(stderr, "keelctl: DATABASE_URL is not set (eval \"$(tools/devstack env)\")\n");
        return EXIT_USAGE;
    }
    keel_error err;
    if (keel_ledger_open(ledger, url, 1, &err) != KEEL_OK)
        return fail(&err);
    return 0;
}

static int db(const cli *c)
{
    bool seed = c->nargs == 2 && strcmp(c->args[1], "seed") == 0;
    if (c->nargs != 2 || (!seed && strcmp(c->args[1], "migrate") != 0))
        return usage_error("%s", "db takes one command: migrate or seed");
    keel_ledger *ledger;
    int rc = open_ledger(&ledger);
    if (rc != 0)
        return rc;
    keel_error err;
    int applied = 0;
    if (keel_ledger_migrate(ledger, &applied, &err) != KEEL_OK ||
        (seed && keel_ledger_seed(ledger, &err) != KEEL_OK)) {
        keel_ledger_close(ledger);
        return fail(&err);
    }
    keel_ledger_close(ledger);
    printf("%d migration%s applied%s\n", applied, applied == 1 ? "" : "s",
           seed ? "; demo data loaded" : "");
    return 0;
}

/* The workflow types granted a tool, comma-separated, in keel as shipped. */
static void granted_to(const char *tool, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t g = 0; g < keel_default_grants_count; g++)
        for (const char *const *t = keel_default_grants[g].tools; *t; t++)
            if (strcmp(*t, tool) == 0)
                snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "",
                         keel_default_grants[g].workflow_type);
}

static int tool_list(const cli *c)
{
    if (c->nargs != 2 || strcmp(c->args[1], "list") != 0)
        return usage_error("%s", "tool takes one command: list");
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < keel_agent_tool_count(); i++) {
        const keel_tool *t = keel_agent_tool_at(i);
        char grants[256];
        granted_to(t->name, grants, sizeof grants);
        if (!c->json) {
            printf("%-26s %-12s %-22s %s\n", t->name, keel_tool_risk_name(t->risk), t->scopes,
                   grants[0] ? grants : "-");
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        char activity[80];
        snprintf(activity, sizeof activity, "tool.%s", t->name);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "activity_type", activity);
        cJSON_AddStringToObject(o, "description", t->description);
        cJSON_AddStringToObject(o, "risk", keel_tool_risk_name(t->risk));
        cJSON_AddStringToObject(o, "scopes", t->scopes);
        cJSON_AddItemToObject(o, "parameters", keel_json_from(t->schema));
        cJSON_AddStringToObject(o, "granted_to", grants);
        cJSON_AddItemToArray(list, o);
    }
    if (c->json)
        return print_json(list);
    cJSON_Delete(list);
    return 0;
}

static int conversation_show(const cli *c)
{
    if (c->nargs != 2 || strcmp(c->args[1], "show") != 0 || !c->workflow_id)
        return usage_error("%s", "conversation takes one command: show --id CONVERSATION");
    keel_ledger *ledger;
    int rc = open_ledger(&ledger);
    if (rc != 0)
        return rc;
    char *messages = NULL;
    size_t count = 0;
    keel_error err;
    rc = keel_ledger_conversation_load(ledger, c->workflow_id, &messages, &count, &err);
    keel_ledger_close(ledger);
    if (rc != KEEL_OK)
        return fail(&err);
    cJSON *doc = keel_json_from(messages);
    free(messages);
    if (!doc) {
        fprintf(stderr, "keelctl: conversation %s is not JSON\n", c->workflow_id);
        return EXIT_CALL;
    }
    return print_json(doc);
}

int keelctl_agent(const cli *c)
{
    if (strcmp(c->args[0], "db") == 0)
        return db(c);
    if (strcmp(c->args[0], "tool") == 0)
        return tool_list(c);
    return conversation_show(c);
}
