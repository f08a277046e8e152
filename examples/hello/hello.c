/*
 * hello - the smallest program built on an installed libkeel: a workflow, an activity, a worker
 * that serves them, and a client that runs the workflow once and prints its result.
 *
 *   hello TASK_QUEUE NAME
 *
 * The connection comes from the client profile file and the TEMPORAL_* environment over it
 * (TEMPORAL_ADDRESS, default localhost:7233; TEMPORAL_NAMESPACE, default "default"; TLS and API
 * key as keel-worker takes them; keel/profile.h). It starts a worker on TASK_QUEUE, starts workflow
 * "example.Hello" with {"name": NAME}, waits for it (30 s at most), prints the result on stdout and
 * exits 0; or prints why not on stderr and exits 1.
 *
 * The workflow schedules activity "example.greet" with its input and completes with what the
 * activity returns: {"greeting": "Hello, NAME!", "attempt": 1}. The workflow only acts through
 * its context (keel/workflow.h); the activity may do anything, and here builds a string.
 *
 * Build it out of tree against the installed library (examples/hello/Makefile):
 *   cc -std=c11 $(pkg-config --cflags keel) -o hello hello.c $(pkg-config --libs keel)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>

/* ---- the workflow: a state machine over the state struct ---- */

typedef struct hello_state {
    uint32_t greet; /* the activity's sequence number */
} hello_state;

static int hello_start(keel_workflow_ctx *ctx, void *state, const char *input_json)
{
    hello_state *s = state;
    keel_activity_options opts = {.start_to_close_ms = 10000};
    s->greet = keel_workflow_activity(ctx, "example.greet", input_json, &opts);
    return s->greet ? KEEL_OK : keel_workflow_error(ctx, "cannot schedule example.greet");
}

static int hello_on_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *event)
{
    const hello_state *s = state;
    if (event->seq != s->greet)
        return KEEL_OK;
    if (event->kind == KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_complete(ctx, event->json);
    if (event->kind == KEEL_EVENT_ACTIVITY_FAILED)
        return keel_workflow_fail(ctx, "GreetFailed", event->failure_message, true);
    return KEEL_OK;
}

static const keel_workflow_type hello_workflow = {
    .name = "example.Hello",
    .state_size = sizeof(hello_state),
    .start = hello_start,
    .on_event = hello_on_event,
};

/* ---- the activity: ordinary C ---- */

static int greet(keel_activity_ctx *ctx, const char *input_json, char **result_json, void *data)
{
    (void)data;
    cJSON *input = NULL;
    keel_error err;
    if (keel_json_parse(input_json, strlen(input_json), 0, "the input", &input, &err) != KEEL_OK)
        return keel_activity_fail(ctx, "BadInput", err.message, true);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(input, "name");
    if (!cJSON_IsString(name)) {
        cJSON_Delete(input);
        return keel_activity_fail(ctx, "BadInput", "the input needs a string \"name\"", true);
    }
    cJSON *out = cJSON_CreateObject();
    char greeting[256];
    snprintf(greeting, sizeof greeting, "Hello, %s!", name->valuestring);
    cJSON_AddStringToObject(out, "greeting", greeting);
    cJSON_AddNumberToObject(out, "attempt", keel_activity_attempt(ctx));
    *result_json = keel_json_print(out);
    cJSON_Delete(out);
    cJSON_Delete(input);
    return *result_json ? KEEL_OK : KEEL_ENOMEM;
}

/* ---- the program: a worker and a client on one connection ---- */

static int run(const char *queue, const char *name)
{
    keel_error err;
    keel_connect_options copts = KEEL_CONNECT_OPTIONS_INIT;
    keel_client *client = NULL;
    keel_worker *worker = NULL;
    char *input = NULL;
    int rc = 1;
    keel_client_profile *profile = NULL; /* owns the strings copts borrows */
    if (keel_connect_options_from_profile(&copts, NULL, &profile, &err) != KEEL_OK ||
        keel_client_new(&client, &copts, &err) != KEEL_OK) {
        keel_client_profile_free(profile);
        goto out;
    }
    keel_client_profile_free(profile); /* the client copied what it keeps */

    const keel_workflow_type *workflows[] = {&hello_workflow};
    keel_activity_type activities[] = {{.name = "example.greet", .run = greet}};
    keel_worker_options wopts = KEEL_WORKER_OPTIONS_INIT;
    wopts.task_queue = queue;
    wopts.workflows = workflows;
    wopts.n_workflows = 1;
    wopts.activities = activities;
    wopts.n_activities = 1;
    if (keel_worker_new(&worker, client, &wopts, &err) != KEEL_OK ||
        keel_worker_start(worker, &err) != KEEL_OK)
        goto out;

    cJSON *arg = cJSON_CreateObject();
    cJSON_AddStringToObject(arg, "name", name);
    input = keel_json_print(arg);
    cJSON_Delete(arg);
    char id[256];
    snprintf(id, sizeof id, "hello-%s", queue);
    keel_workflow_start_options sopts = KEEL_WORKFLOW_START_OPTIONS_INIT;
    sopts.workflow_id = id;
    sopts.workflow_type = hello_workflow.name;
    sopts.task_queue = queue;
    sopts.input_json = input;
    keel_workflow_outcome outcome;
    memset(&outcome, 0, sizeof outcome);
    if (keel_client_workflow_start(client, &sopts, NULL, &err) != KEEL_OK ||
        keel_client_workflow_result(client, id, NULL, 30000, &outcome, &err) != KEEL_OK)
        goto out;
    if (outcome.status == KEEL_WORKFLOW_STATUS_COMPLETED) {
        printf("%s\n", outcome.result_json);
        rc = 0;
    } else {
        snprintf(err.message, sizeof err.message, "the run ended %s: %s",
                 keel_workflow_status_name(outcome.status),
                 outcome.failure_message ? outcome.failure_message : "");
    }
    keel_workflow_outcome_dispose(&outcome);
out:
    if (rc != 0)
        fprintf(stderr, "hello: %s\n", err.message);
    keel_worker_free(worker); /* stops it first: polls end, tasks in progress finish */
    keel_client_free(client);
    free(input);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: hello TASK_QUEUE NAME\n");
        return 2;
    }
    return run(argv[1], argv[2]);
}
