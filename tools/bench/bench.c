/*
 * keel-bench - how fast one keel worker completes workflows on the dev stack.
 *
 *   keel-bench [--workflows N] [--concurrency C] [--cache N] [--pollers P]
 *
 * Runs a worker in this process with a one-activity workflow (schedule "noop", complete with its
 * result), starts N runs from C starter threads, waits until every run has completed, and
 * prints the throughput, the CPU time it took (user + system, per 1,000 workflows) and this
 * process's peak RSS. The starters and the worker share the process (and one gRPC channel), so
 * the RSS and the CPU time are upper bounds for the worker alone. Connects with the TEMPORAL_*
 * environment, like every keel program; with OTEL_EXPORTER_OTLP_ENDPOINT set it traces as
 * keel-worker does (docs/observability.md), to measure what tracing costs.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "keel/keel.h"
#include "keel/trace.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int noop(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)ctx;
    (void)user;
    *result = strdup(input);
    return *result ? KEEL_OK : KEEL_ENOMEM;
}

static int one_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    keel_activity_options o = {.start_to_close_ms = 10000};
    return keel_workflow_activity(ctx, "noop", input, &o) ? KEEL_OK : KEEL_EINVAL;
}

static int one_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_fail(ctx, "ActivityFailed", ev->failure_message, true);
    return keel_workflow_complete(ctx, ev->json);
}

static const keel_workflow_type one_activity = {
    .name = "BenchOneActivity", .state_size = 1, .start = one_start, .on_event = one_event};

typedef struct starter {
    keel_client *client;
    const char *queue;
    const char *prefix;
    int from, to;
    atomic_int *failures;
} starter;

/* Start runs [from, to) and wait for each to complete. */
static void *start_and_wait(void *arg)
{
    starter *s = arg;
    for (int i = s->from; i < s->to; i++) {
        char id[128], input[64];
        snprintf(id, sizeof id, "%s-%d", s->prefix, i);
        snprintf(input, sizeof input, "{\"n\":%d}", i);
        keel_workflow_start_options o;
        keel_workflow_start_options_init(&o, KEEL_WORKFLOW_START_OPTIONS_VERSION);
        o.workflow_id = id;
        o.workflow_type = one_activity.name;
        o.task_queue = s->queue;
        o.input_json = input;
        keel_error err;
        if (keel_client_workflow_start(s->client, &o, NULL, &err) != KEEL_OK) {
            fprintf(stderr, "keel-bench: %s\n", err.message);
            atomic_fetch_add(s->failures, 1);
        }
    }
    for (int i = s->from; i < s->to; i++) {
        char id[128];
        snprintf(id, sizeof id, "%s-%d", s->prefix, i);
        keel_workflow_outcome out;
        keel_error err;
        if (keel_client_workflow_result(s->client, id, NULL, 120000, &out, &err) != KEEL_OK ||
            out.status != KEEL_WORKFLOW_STATUS_COMPLETED) {
            atomic_fetch_add(s->failures, 1);
        }
        keel_workflow_outcome_dispose(&out);
    }
    return NULL;
}

static int arg_int(int argc, char **argv, const char *name, int dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return atoi(argv[i + 1]);
    return dflt;
}

int main(int argc, char **argv)
{
    int n = arg_int(argc, argv, "--workflows", 500);
    int conc = arg_int(argc, argv, "--concurrency", 8);
    int cache = arg_int(argc, argv, "--cache", 256);
    int pollers = arg_int(argc, argv, "--pollers", 2);
    if (n < 1 || conc < 1 || conc > 256 || cache < 0 || pollers < 1 || pollers > 64) {
        fprintf(stderr, "usage: keel-bench [--workflows N] [--concurrency 1-256] [--cache N] "
                        "[--pollers 1-64]\n");
        return 2;
    }
    keel_connect_options co;
    keel_error err;
    keel_connect_options_init(&co, KEEL_CONNECT_OPTIONS_VERSION);
    if (keel_connect_options_from_env(&co, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench: %s\n", err.message);
        return 2;
    }
    keel_trace_config tc;
    if (keel_trace_config_from_env(&tc, "keel-bench", NULL, NULL, &err) != KEEL_OK ||
        keel_trace_start(&tc, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench: %s\n", err.message);
        return 2;
    }
    keel_trace_config_clear(&tc);
    keel_client *client;
    if (keel_client_new(&client, &co, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench: %s\n", err.message);
        return 1;
    }
    char queue[64], prefix[64];
    snprintf(queue, sizeof queue, "keel-bench-%ld", (long)getpid());
    snprintf(prefix, sizeof prefix, "keel-bench-%ld-%ld", (long)getpid(), (long)time(NULL));

    const keel_workflow_type *wfs[] = {&one_activity};
    keel_activity_type acts[] = {{"noop", noop, NULL}};
    keel_worker_options wo;
    keel_worker_options_init(&wo, KEEL_WORKER_OPTIONS_VERSION);
    wo.task_queue = queue;
    wo.workflows = wfs;
    wo.n_workflows = 1;
    wo.activities = acts;
    wo.n_activities = 1;
    wo.max_cached_workflows = cache;
    wo.workflow_pollers = pollers;
    keel_worker *w;
    if (keel_worker_new(&w, client, &wo, &err) != KEEL_OK ||
        keel_worker_start(w, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench: %s\n", err.message);
        return 1;
    }

    atomic_int failures;
    atomic_init(&failures, 0);
    pthread_t threads[256];
    starter st[256];
    int64_t t0 = now_ms();
    for (int i = 0; i < conc; i++) {
        st[i] = (starter){client, queue, prefix, n * i / conc, n * (i + 1) / conc, &failures};
        pthread_create(&threads[i], NULL, start_and_wait, &st[i]);
    }
    for (int i = 0; i < conc; i++)
        pthread_join(threads[i], NULL);
    int64_t ms = now_ms() - t0;
    keel_worker_stats s;
    keel_worker_get_stats(w, &s);
    keel_worker_free(w);
    keel_client_free(client);
    bool tracing = keel_trace_enabled();
    keel_trace_shutdown(5000);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("workflows=%d concurrency=%d cache=%d pollers=%d failed=%d seconds=%.2f "
           "workflows_per_second=%.1f cpu_seconds=%.2f cpu_seconds_per_1000_workflows=%.2f "
           "peak_rss_mb=%.1f workflow_tasks=%llu activities=%llu cache_hits=%llu "
           "cache_misses=%llu tracing=%s spans_exported=%llu spans_dropped=%llu\n",
           n, conc, cache, pollers, atomic_load(&failures), (double)ms / 1000.0,
           ms > 0 ? n * 1000.0 / (double)ms : 0.0, cpu, cpu * 1000.0 / n,
           (double)ru.ru_maxrss / 1024.0, (unsigned long long)s.workflow_tasks_completed,
           (unsigned long long)s.activities_completed, (unsigned long long)s.cache_hits,
           (unsigned long long)s.cache_misses, tracing ? "on" : "off",
           (unsigned long long)keel_trace_exported_spans(),
           (unsigned long long)keel_trace_dropped_spans());
    return atomic_load(&failures) == 0 ? 0 : 1;
}
