/*
 * keel-bench-peers - keel's worker in the peer benchmark (tools/bench-peers, docs/performance.md).
 *
 *   keel-bench-peers worker QUEUE      serve the benchmark's workflows on QUEUE until SIGTERM
 *   keel-bench-peers replay FILE N     replay the JSON history in FILE N times after a warm-up,
 *                                      print {"runs_ms":[...]}
 *
 * The same workflow types as the Go and TypeScript workers, through keel's public API only:
 *   BenchOneActivity   one activity "noop", complete with its result;
 *   BenchSignalWait    wait for signal "go", then complete with the input;
 *   BenchChain         {"n": N}: N activities "noop" one after the other, each given the
 *                      previous step's number ({"n": N, "step": i});
 *   BenchToolLoop      {"n": N}: N activities "toolstep" one after the other, each given the
 *                      previous one's result; completes with the last one's (the tool loop);
 *   BenchToolLoopLocal the same with the steps run as local activities.
 * "toolstep" stamps the wall clock (CLOCK_REALTIME, microseconds) at its start and end: given
 * {"end_us": E, "gaps_us": [...]} from the previous step, it returns {"end_us": its end,
 * "gaps_us": [..., its start - E]} (no gap in the first step, whose end_us is 0): the
 * orchestration between two steps, the steps' own run excluded (docs/performance.md).
 * The worker runs with keel's defaults, except the cache (KEEL_BENCH_CACHE, default 2000) so that
 * the 1,000 open runs of the signal burst all stay cached, as they do in the SDKs (Go: 10,000 by
 * default; the TypeScript worker is given 2,000). Connects with the TEMPORAL_* environment.
 */
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/keel.h"
#include "keel/process.h"

static int noop(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    (void)ctx;
    (void)user;
    *result = strdup(input);
    return *result ? KEEL_OK : KEEL_ENOMEM;
}

static long long realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* toolstep: reads only its own output's shape, {"end_us":E,"gaps_us":[g,...]}. */
static int toolstep(keel_activity_ctx *ctx, const char *input, char **result, void *user)
{
    long long start = realtime_us();
    (void)user;
    long long prev = 0;
    const char *p = strstr(input, "\"end_us\":");
    if (p != NULL)
        prev = strtoll(p + strlen("\"end_us\":"), NULL, 10);
    const char *gaps = "";
    size_t glen = 0;
    p = strstr(input, "\"gaps_us\":[");
    if (p != NULL) {
        gaps = p + strlen("\"gaps_us\":[");
        const char *end = strchr(gaps, ']');
        if (end == NULL)
            return keel_activity_fail(ctx, "BadInput", "gaps_us is not closed", false);
        glen = (size_t)(end - gaps);
    }
    size_t cap = glen + 96;
    char *out = malloc(cap);
    if (out == NULL)
        return KEEL_ENOMEM;
    char gap[32] = "";
    if (prev > 0)
        snprintf(gap, sizeof gap, "%s%lld", glen > 0 ? "," : "", start - prev);
    snprintf(out, cap, "{\"end_us\":%lld,\"gaps_us\":[%.*s%s]}", realtime_us(), (int)glen, gaps,
             gap);
    *result = out;
    return KEEL_OK;
}

static const keel_activity_options act_opts = {.start_to_close_ms = 10000};
static const keel_local_activity_options local_opts = {.start_to_close_ms = 10000};

/* ---- BenchOneActivity ---- */

static int one_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    return keel_workflow_activity(ctx, "noop", input, &act_opts) ? KEEL_OK : KEEL_EINVAL;
}

static int one_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_fail(ctx, "ActivityFailed", ev->failure_message, true);
    return keel_workflow_complete(ctx, ev->json);
}

static const keel_workflow_type one_type = {
    .name = "BenchOneActivity", .state_size = 1, .start = one_start, .on_event = one_event};

/* ---- BenchSignalWait ---- */

static int wait_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)ctx;
    (void)state;
    (void)input;
    return KEEL_OK;
}

static int wait_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    (void)state;
    if (ev->kind == KEEL_EVENT_SIGNAL && strcmp(ev->name, "go") == 0)
        return keel_workflow_complete(ctx, ev->json);
    return KEEL_OK;
}

static const char *const wait_signals[] = {"go", NULL};
static const keel_workflow_type wait_type = {.name = "BenchSignalWait",
                                             .state_size = 1,
                                             .start = wait_start,
                                             .on_event = wait_event,
                                             .signals = wait_signals};

/* ---- BenchChain ---- */

typedef struct chain_state {
    int n, step;
} chain_state;

static int chain_next(keel_workflow_ctx *ctx, chain_state *s)
{
    char arg[64];
    s->step++;
    snprintf(arg, sizeof arg, "{\"n\":%d,\"step\":%d}", s->n, s->step);
    return keel_workflow_activity(ctx, "noop", arg, &act_opts) ? KEEL_OK : KEEL_EINVAL;
}

static int chain_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    chain_state *s = state;
    const char *p = strstr(input, "\"n\"");
    if (p != NULL)
        p = strchr(p, ':');
    s->n = p != NULL ? atoi(p + 1) : 0;
    if (s->n <= 0)
        return keel_workflow_complete(ctx, "{\"n\":0,\"step\":0}");
    return chain_next(ctx, s);
}

static int chain_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    chain_state *s = state;
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_fail(ctx, "ActivityFailed", ev->failure_message, true);
    if (s->step >= s->n)
        return keel_workflow_complete(ctx, ev->json);
    return chain_next(ctx, s);
}

static const keel_workflow_type chain_type = {.name = "BenchChain",
                                              .state_size = sizeof(chain_state),
                                              .start = chain_start,
                                              .on_event = chain_event};

/* ---- BenchToolLoop, BenchToolLoopLocal ---- */

typedef struct tool_state {
    int n, step;
} tool_state;

static int tool_next(keel_workflow_ctx *ctx, tool_state *s, const char *arg, bool local)
{
    s->step++;
    uint32_t seq = local ? keel_workflow_local_activity(ctx, "toolstep", arg, &local_opts)
                         : keel_workflow_activity(ctx, "toolstep", arg, &act_opts);
    return seq ? KEEL_OK : KEEL_EINVAL;
}

static int tool_begin(keel_workflow_ctx *ctx, void *state, const char *input, bool local)
{
    tool_state *s = state;
    const char *p = strstr(input, "\"n\"");
    if (p != NULL)
        p = strchr(p, ':');
    s->n = p != NULL ? atoi(p + 1) : 0;
    if (s->n <= 0)
        return keel_workflow_complete(ctx, "{\"end_us\":0,\"gaps_us\":[]}");
    return tool_next(ctx, s, "{\"end_us\":0,\"gaps_us\":[]}", local);
}

static int tool_on(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev, bool local)
{
    tool_state *s = state;
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return keel_workflow_fail(ctx, "ActivityFailed", ev->failure_message, true);
    if (s->step >= s->n)
        return keel_workflow_complete(ctx, ev->json);
    return tool_next(ctx, s, ev->json, local);
}

static int tool_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    return tool_begin(ctx, state, input, false);
}

static int tool_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    return tool_on(ctx, state, ev, false);
}

static int tool_local_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    return tool_begin(ctx, state, input, true);
}

static int tool_local_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    return tool_on(ctx, state, ev, true);
}

static const keel_workflow_type tool_type = {.name = "BenchToolLoop",
                                             .state_size = sizeof(tool_state),
                                             .start = tool_start,
                                             .on_event = tool_event};
static const keel_workflow_type tool_local_type = {.name = "BenchToolLoopLocal",
                                                   .state_size = sizeof(tool_state),
                                                   .start = tool_local_start,
                                                   .on_event = tool_local_event};

static const keel_workflow_type *const workflows[] = {&one_type, &wait_type, &chain_type,
                                                      &tool_local_type, &tool_type};

/* ---- worker ---- */

static int run_worker(const char *queue)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop, NULL) != 0) {
        perror("keel-bench-peers: pthread_sigmask");
        return 1;
    }
    keel_error err;
    keel_connect_options copts;
    keel_connect_options_init(&copts, KEEL_CONNECT_OPTIONS_VERSION);
    if (keel_connect_options_from_env(&copts, &err) != KEEL_OK ||
        keel_connect_options_validate(&copts, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench-peers: %s\n", err.message);
        return 2;
    }
    keel_client *client;
    if (keel_client_new(&client, &copts, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench-peers: %s\n", err.message);
        return 1;
    }
    const keel_activity_type activities[] = {{"noop", noop, NULL}, {"toolstep", toolstep, NULL}};
    keel_worker_options wopts;
    keel_worker_options_init(&wopts, KEEL_WORKER_OPTIONS_VERSION);
    wopts.task_queue = queue;
    wopts.workflows = workflows;
    wopts.n_workflows = sizeof workflows / sizeof workflows[0];
    wopts.activities = activities;
    wopts.n_activities = sizeof activities / sizeof activities[0];
    const char *cache = getenv("KEEL_BENCH_CACHE");
    wopts.max_cached_workflows = cache != NULL && cache[0] != '\0' ? atoi(cache) : 2000;
    keel_worker *worker = NULL;
    if (keel_worker_new(&worker, client, &wopts, &err) != KEEL_OK ||
        keel_worker_start(worker, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench-peers: %s\n", err.message);
        keel_worker_free(worker);
        keel_client_free(client);
        return 1;
    }
    printf("bench-peers-worker: ready on task queue %s (keel %s)\n", queue, KEEL_VERSION);
    fflush(stdout);
    int sig = 0;
    if (sigwait(&stop, &sig) != 0)
        sig = SIGTERM;
    keel_worker_stop(worker);
    keel_worker_stats s;
    keel_worker_get_stats(worker, &s);
    keel_worker_free(worker);
    keel_client_free(client);
    printf("bench-peers-worker: stopped; workflow tasks: %llu completed, %llu failed; cache: %llu "
           "hits, %llu misses\n",
           (unsigned long long)s.workflow_tasks_completed,
           (unsigned long long)s.workflow_tasks_failed, (unsigned long long)s.cache_hits,
           (unsigned long long)s.cache_misses);
    fflush(stdout);
    return 0;
}

/* ---- replay ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const keel_workflow_type *type_of(const char *data)
{
    for (size_t i = 0; i < sizeof workflows / sizeof workflows[0]; i++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "\"%s\"", workflows[i]->name);
        if (strstr(data, quoted) != NULL)
            return workflows[i];
    }
    return NULL;
}

static int run_replay(const char *path, int n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    char *data = malloc(cap + 1);
    size_t got;
    while (data != NULL && (got = fread(data + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *bigger = realloc(data, 2 * cap + 1);
            if (bigger == NULL) {
                free(data);
                data = NULL;
                break;
            }
            data = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (data == NULL) {
        fprintf(stderr, "keel-bench-peers: out of memory reading %s\n", path);
        return 1;
    }
    data[len] = '\0';
    /* The type from the history's first event (the chain's history names only its own type). */
    const keel_workflow_type *type = type_of(data);
    if (type == NULL) {
        fprintf(stderr, "keel-bench-peers: %s is not a history of a benchmark workflow\n", path);
        free(data);
        return 1;
    }
    keel_error err;
    int rc = 0;
    printf("{\"runs_ms\":[");
    for (int i = 0; i <= n && rc == 0; i++) { /* i == 0: the warm-up */
        double t0 = now_ms();
        if (keel_replay(type, data, len, &err) != KEEL_OK) {
            fprintf(stderr, "keel-bench-peers: replay of %s: %s\n", path, err.message);
            rc = 1;
            break;
        }
        if (i > 0)
            printf("%s%.3f", i > 1 ? "," : "", now_ms() - t0);
    }
    printf("]}\n");
    free(data);
    return rc;
}

int main(int argc, char **argv)
{
    keel_process_memory_setup(); /* what keel-worker runs with (docs/operations.md, "Memory") */
    if (argc == 3 && strcmp(argv[1], "worker") == 0)
        return run_worker(argv[2]);
    if (argc == 4 && strcmp(argv[1], "replay") == 0 && atoi(argv[3]) > 0)
        return run_replay(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: keel-bench-peers worker QUEUE | replay FILE N\n");
    return 2;
}
