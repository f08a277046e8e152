/*
 * interop-worker - a keel worker for the interop tests (tests/interop/run): the official
 * TypeScript and Go clients start, signal, query and update runs of InteropGreeting on it and read
 * their results.
 *
 *   interop-worker [TASK_QUEUE]      (default: $KEEL_TASK_QUEUE; one of them is required)
 *
 * The connection comes from the TEMPORAL_* environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, ...).
 * Once it polls, it prints "interop-worker: ready on task queue <name>" on stdout. SIGINT or
 * SIGTERM stops it: it finishes the tasks in progress, frees everything, prints its counters and
 * exits 0 - or 3 when any workflow task failed, since every run of InteropGreeting should go
 * through without one (a failed workflow task is a keel bug the clients would not see).
 *
 * Workflow "InteropGreeting" (one JSON argument: an object with a string "name"), by stage:
 *   waiting for approval: signal "approve" (an object with a string "by") schedules compose;
 *     signal "reject" (any JSON) fails the run: type "Rejected", non-retryable, message = the
 *     signal's argument as JSON text;
 *     update "rename" (an object with a string "name"): the name to greet from now on; the
 *     update's result is {"previous": <the name it replaces>, "name": <the new name>}, where the
 *     first rename's previous name is input.name (null when the input has no string name);
 *     a new name of NAME_JSON_MAX (512) bytes or more as JSON text fails the update (type
 *     "NameTooLong") and changes nothing;
 *   composing: compose completed: the run completes with the result below; compose failed: the
 *     run fails with type "ComposeFailed";
 *   query "stage": the stage as a JSON string ("waiting for approval", "composing", "done").
 *
 *   The validator of "rename" rejects (the client sees an update failure of type
 *   "UpdateRejected") an argument without a non-empty string "name" ("rename needs a non-empty
 *   string name, got ...") and any rename once the run is past "waiting for approval" ("too late
 *   to rename: the run is composing").
 *
 *   The result: {"greeting": "Hello, <name>!", "approvedBy": <approval.by>,
 *                "workflowId": "<id of the run>", "attempt": 1, "input": <input>,
 *                "approval": <approve argument>}
 *   where <name> is the last rename's name, or input.name without one; the first four fields
 *   come from the activity and the last two are the workflow's input (as started: a rename does
 *   not change it) and signal argument spliced in as the exact text keel received: no JSON
 *   library re-prints them (cJSON would print 9007199254740991 as 9007199254740990), so what the
 *   clients get back is what keel's payload path carried, byte for byte.
 *
 * Activity "compose" (argument {"input": <workflow input>, "approval": <approve argument>}, plus
 * "name": <the last rename's name> after a rename):
 *   {"greeting": "Hello, <name, or else input.name>!", "approvedBy": <approval.by>,
 *    "workflowId": "<id of the run>", "attempt": <attempt>}
 */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/keel.h"
#include "keel/json.h"

#define WORKFLOW_TYPE "InteropGreeting"
#define INPUT_MAX     8192 /* bytes of workflow input kept in the state */
#define APPROVAL_MAX  4096 /* bytes of the approve signal's argument */
#define NAME_JSON_MAX 512  /* bytes of a renamed name, as JSON text */

/* ---- the workflow ---- */

typedef enum { WAITING_FOR_APPROVAL, COMPOSING, DONE } stage;

static const char *const stage_names[] = {"waiting for approval", "composing", "done"};

typedef struct greeting {
    stage stage;
    uint32_t compose; /* sequence number of the compose activity */
    char input[INPUT_MAX];
    char approval[APPROVAL_MAX];
    char name[NAME_JSON_MAX]; /* after a rename: the name to greet, as JSON text; "" before */
} greeting;

static int greeting_start(keel_workflow_ctx *ctx, void *state, const char *input_json)
{
    greeting *g = state;
    size_t n = strlen(input_json);
    if (n >= sizeof g->input) {
        g->stage = DONE;
        return keel_workflow_fail(ctx, "InputTooLarge", "the input is larger than 8 KiB", true);
    }
    memcpy(g->input, input_json, n + 1);
    g->stage = WAITING_FOR_APPROVAL;
    return KEEL_OK;
}

/* Schedule compose({"input": <input>, "approval": <approval>[, "name": <renamed name>]}). */
static int schedule_compose(keel_workflow_ctx *ctx, greeting *g, const char *approval)
{
    size_t n = strlen(approval);
    if (n >= APPROVAL_MAX) {
        g->stage = DONE;
        return keel_workflow_fail(ctx, "ApprovalTooLarge", "the approval is larger than 4 KiB",
                                  true);
    }
    memcpy(g->approval, approval, n + 1);
    static const char fmt[] = "{\"input\":%s,\"approval\":%s%s%s}";
    const char *name_key = g->name[0] ? ",\"name\":" : "";
    size_t size = sizeof fmt + strlen(g->input) + n + strlen(name_key) + strlen(g->name);
    char *arg = malloc(size);
    if (arg == NULL)
        return keel_workflow_error(ctx, "out of memory building the compose argument");
    snprintf(arg, size, fmt, g->input, approval, name_key, g->name);
    keel_activity_options o = {.start_to_close_ms = 10000};
    g->compose = keel_workflow_activity(ctx, "compose", arg, &o);
    free(arg);
    if (g->compose == 0)
        return keel_workflow_error(ctx, "cannot schedule compose");
    g->stage = COMPOSING;
    return KEEL_OK;
}

/* Complete with the compose result plus "input" and "approval" as the text keel received. */
static int complete(keel_workflow_ctx *ctx, const greeting *g, const char *composed)
{
    /* composed is one JSON object (keel checked it is JSON): cut it before its closing brace. */
    size_t n = strlen(composed);
    while (n > 0 && composed[n - 1] != '}')
        n--;
    if (composed[0] != '{' || n < 2)
        return keel_workflow_error(ctx, "compose answered %.200s, not an object", composed);
    n--;
    const char *sep = strspn(composed + 1, " \t\r\n") == n - 1 ? "" : ",";
    static const char fmt[] = "%.*s%s\"input\":%s,\"approval\":%s}";
    size_t size = sizeof fmt + n + strlen(g->input) + strlen(g->approval);
    char *result = malloc(size);
    if (result == NULL)
        return keel_workflow_error(ctx, "out of memory building the result");
    snprintf(result, size, fmt, (int)n, composed, sep, g->input, g->approval);
    int rc = keel_workflow_complete(ctx, result);
    free(result);
    return rc;
}

/* The string "name" of a rename argument, or NULL. Borrowed from arg. */
static const cJSON *rename_name(const cJSON *arg)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(arg, "name");
    return cJSON_IsString(name) && name->valuestring[0] != '\0' ? name : NULL;
}

static int greeting_validate(const void *state, const char *name, const char *args_json,
                             char *reason, size_t n)
{
    const greeting *g = state;
    if (strcmp(name, "rename") != 0) { /* keel rejects undeclared updates before this */
        snprintf(reason, n, "InteropGreeting takes no update '%s'", name);
        return KEEL_EINVAL;
    }
    if (g->stage != WAITING_FOR_APPROVAL) {
        snprintf(reason, n, "too late to rename: the run is %s", stage_names[g->stage]);
        return KEEL_EINVAL;
    }
    cJSON *arg = keel_json_from(args_json);
    bool ok = rename_name(arg) != NULL;
    cJSON_Delete(arg);
    if (!ok) {
        snprintf(reason, n, "rename needs a non-empty string name, got %.200s", args_json);
        return KEEL_EINVAL;
    }
    return KEEL_OK;
}

/* Update "rename" (accepted by greeting_validate): greet the new name, answer
 * {"previous": <old name>, "name": <new name>}. */
static int greeting_rename(keel_workflow_ctx *ctx, greeting *g, const keel_workflow_event *ev)
{
    /* The validator admits renames only while the run waits; answer any other one all the same. */
    if (g->stage != WAITING_FOR_APPROVAL)
        return keel_workflow_update_fail(ctx, ev->seq, "TooLate", "the run is past approval");
    cJSON *arg = keel_json_from(ev->json);
    cJSON *input = g->name[0] ? NULL : keel_json_from(g->input);
    const cJSON *name = rename_name(arg);
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(input, "name");
    char *now = name ? keel_json_print(name) : NULL;
    char *before = cJSON_IsString(first) ? keel_json_print(first) : NULL;
    char *result = NULL;
    int rc = KEEL_OK;
    if (now == NULL) {
        rc = keel_workflow_error(ctx, "rename: cannot read or print the name in %.200s", ev->json);
    } else if (strlen(now) >= sizeof g->name) {
        char msg[128];
        snprintf(msg, sizeof msg, "the name is %zu bytes long as JSON, more than %d", strlen(now),
                 NAME_JSON_MAX - 1);
        rc = keel_workflow_update_fail(ctx, ev->seq, "NameTooLong", msg);
    } else {
        const char *previous = g->name[0] ? g->name : before ? before : "null";
        static const char fmt[] = "{\"previous\":%s,\"name\":%s}";
        size_t size = sizeof fmt + strlen(previous) + strlen(now);
        if ((result = malloc(size)) == NULL) {
            rc = keel_workflow_error(ctx, "out of memory answering rename");
        } else {
            snprintf(result, size, fmt, previous, now);
            memcpy(g->name, now, strlen(now) + 1);
            rc = keel_workflow_update_complete(ctx, ev->seq, result);
        }
    }
    free(result);
    cJSON_free(before);
    cJSON_free(now);
    cJSON_Delete(input);
    cJSON_Delete(arg);
    return rc;
}

static int greeting_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    greeting *g = state;
    if (ev->kind == KEEL_EVENT_UPDATE && strcmp(ev->name, "rename") == 0)
        return greeting_rename(ctx, g, ev);
    switch (g->stage) {
    case WAITING_FOR_APPROVAL:
        if (ev->kind == KEEL_EVENT_SIGNAL && strcmp(ev->name, "approve") == 0)
            return schedule_compose(ctx, g, ev->json);
        if (ev->kind == KEEL_EVENT_SIGNAL && strcmp(ev->name, "reject") == 0) {
            g->stage = DONE;
            return keel_workflow_fail(ctx, "Rejected", ev->json, true);
        }
        return KEEL_OK; /* other signals are not for this workflow */
    case COMPOSING:
        if (ev->kind == KEEL_EVENT_ACTIVITY_COMPLETED && ev->seq == g->compose) {
            g->stage = DONE;
            return complete(ctx, g, ev->json);
        }
        if (ev->kind == KEEL_EVENT_ACTIVITY_FAILED && ev->seq == g->compose) {
            g->stage = DONE;
            return keel_workflow_fail(ctx, "ComposeFailed", ev->failure_message, true);
        }
        return KEEL_OK; /* a second approve, a reject: too late */
    case DONE:
        return KEEL_OK;
    }
    return keel_workflow_error(ctx, "unknown stage %d", (int)g->stage);
}

static int greeting_query(const void *state, const char *name, const char *args_json,
                          char **result_json)
{
    (void)args_json;
    if (strcmp(name, "stage") != 0)
        return KEEL_EINVAL;
    const greeting *g = state;
    char buf[64];
    snprintf(buf, sizeof buf, "\"%s\"", stage_names[g->stage]);
    *result_json = strdup(buf);
    return *result_json ? KEEL_OK : KEEL_ENOMEM;
}

static void greeting_describe(const void *state, char *buf, size_t n)
{
    snprintf(buf, n, "%s", stage_names[((const greeting *)state)->stage]);
}

static const char *const greeting_updates[] = {"rename", NULL};

static const keel_workflow_type greeting_type = {
    .name = WORKFLOW_TYPE,
    .state_size = sizeof(greeting),
    .start = greeting_start,
    .on_event = greeting_event,
    .query = greeting_query,
    .describe = greeting_describe,
    .updates = greeting_updates,
    .validate_update = greeting_validate,
};

/* ---- the activity ---- */

static int compose(keel_activity_ctx *ctx, const char *arg_json, char **result_json, void *user)
{
    (void)user;
    cJSON *arg = keel_json_from(arg_json);
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(arg, "input");
    const cJSON *approval = cJSON_GetObjectItemCaseSensitive(arg, "approval");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(arg, "name"); /* after a rename */
    if (name == NULL)
        name = cJSON_GetObjectItemCaseSensitive(input, "name");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(approval, "by");
    if (!cJSON_IsString(name) || !cJSON_IsString(by)) {
        cJSON_Delete(arg);
        char msg[512];
        snprintf(msg, sizeof msg,
                 "compose needs a string name (or input.name) and a string approval.by, got %.380s",
                 arg_json);
        return keel_activity_fail(ctx, "BadArgument", msg, true);
    }

    size_t size = strlen(name->valuestring) + sizeof "Hello, !";
    char *hello = malloc(size);
    cJSON *out = cJSON_CreateObject();
    if (hello) {
        snprintf(hello, size, "Hello, %s!", name->valuestring);
        cJSON_AddStringToObject(out, "greeting", hello);
    }
    cJSON_AddStringToObject(out, "approvedBy", by->valuestring);
    cJSON_AddStringToObject(out, "workflowId", keel_activity_workflow_id(ctx));
    cJSON_AddNumberToObject(out, "attempt", keel_activity_attempt(ctx));
    *result_json = hello ? keel_json_print(out) : NULL;
    free(hello);
    cJSON_Delete(out);
    cJSON_Delete(arg);
    if (*result_json == NULL)
        return keel_activity_fail(ctx, "OutOfMemory", "cannot build the greeting", false);
    return KEEL_OK;
}

/* ---- the process ---- */

int main(int argc, char **argv)
{
    const char *task_queue = argc > 1 ? argv[1] : getenv("KEEL_TASK_QUEUE");
    if (argc > 2 || task_queue == NULL || task_queue[0] == '\0') {
        fprintf(stderr, "usage: interop-worker TASK_QUEUE (or set KEEL_TASK_QUEUE)\n");
        return 2;
    }

    /* Block the stop signals before any thread starts: the worker's threads inherit the mask,
     * and sigwait() below takes the signal whenever it comes. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop, NULL) != 0) {
        perror("interop-worker: pthread_sigmask");
        return 1;
    }

    keel_error err;
    keel_connect_options copts;
    keel_connect_options_init(&copts, KEEL_CONNECT_OPTIONS_VERSION);
    if (keel_connect_options_from_env(&copts, &err) != KEEL_OK ||
        keel_connect_options_validate(&copts, &err) != KEEL_OK) {
        fprintf(stderr, "interop-worker: %s\n", err.message);
        return 2;
    }
    keel_client *client;
    if (keel_client_new(&client, &copts, &err) != KEEL_OK) {
        fprintf(stderr, "interop-worker: %s\n", err.message);
        return 1;
    }

    const keel_workflow_type *workflows[] = {&greeting_type};
    const keel_activity_type activities[] = {{"compose", compose, NULL}};
    keel_worker_options wopts;
    keel_worker_options_init(&wopts, KEEL_WORKER_OPTIONS_VERSION);
    wopts.task_queue = task_queue;
    wopts.workflows = workflows;
    wopts.n_workflows = 1;
    wopts.activities = activities;
    wopts.n_activities = 1;
    keel_worker *worker = NULL;
    if (keel_worker_new(&worker, client, &wopts, &err) != KEEL_OK ||
        keel_worker_start(worker, &err) != KEEL_OK) {
        fprintf(stderr, "interop-worker: %s\n", err.message);
        keel_worker_free(worker);
        keel_client_free(client);
        return 1;
    }
    printf("interop-worker: ready on task queue %s (%s, namespace %s)\n", task_queue,
           keel_client_address(client), keel_client_namespace(client));
    fflush(stdout);

    int sig = 0;
    if (sigwait(&stop, &sig) != 0)
        sig = SIGTERM;
    printf("interop-worker: %s received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    fflush(stdout);
    keel_worker_stop(worker);
    keel_worker_stats s;
    keel_worker_get_stats(worker, &s);
    keel_worker_free(worker);
    keel_client_free(client);
    printf("interop-worker: stopped; workflow tasks: %llu completed, %llu failed; "
           "activities: %llu completed, %llu failed; cache: %llu hits, %llu misses\n",
           (unsigned long long)s.workflow_tasks_completed,
           (unsigned long long)s.workflow_tasks_failed, (unsigned long long)s.activities_completed,
           (unsigned long long)s.activities_failed, (unsigned long long)s.cache_hits,
           (unsigned long long)s.cache_misses);
    fflush(stdout); /* before LeakSanitizer's report and exit, which skip stdio's buffers */
    if (s.workflow_tasks_failed > 0) {
        fprintf(stderr, "interop-worker: %llu workflow task(s) failed (see the log above)\n",
                (unsigned long long)s.workflow_tasks_failed);
        return 3;
    }
    return 0;
}
