/* replay_bench - replay a chain-of-activities history (gen_history.py) N times with keel's
 * replayer and print the median, fastest and slowest run in wall time and in the thread's CPU
 * time (steadier on a busy machine), in ms. Not part of the build:
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -Ibuild/proto/gen \
 *      tools/replay-bench/replay_bench.c build/libkeel.a -o build/replay-bench \
 *      $(pkg-config --libs libnghttp2 libssl libcrypto libprotobuf-c libcjson libpcre2-8 \
 *      libmicrohttpd libcurl) -lm -lpthread
 *   python3 tools/replay-bench/gen_history.py 300 build/chain300.json
 *   build/replay-bench build/chain300.json 15 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/replayer.h"
#include "keel/workflow.h"

typedef struct chain {
    int steps, done;
} chain;

static int next(keel_workflow_ctx *ctx, chain *s)
{
    if (s->done >= s->steps)
        return keel_workflow_complete(ctx, "{\"steps\":300}") == KEEL_OK ? KEEL_OK : KEEL_EINVAL;
    char in[64];
    snprintf(in, sizeof in, "{\"step\":%d,\"note\":\"step input\"}", s->done + 1);
    keel_activity_options o = {.start_to_close_ms = 30000};
    return keel_workflow_activity(ctx, "bench.step", in, &o) ? KEEL_OK : KEEL_EINVAL;
}

static int start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    chain *s = state;
    s->steps = 300;
    const char *p = input ? strstr(input, "\"steps\":") : NULL;
    if (p)
        s->steps = atoi(p + 8);
    return next(ctx, s);
}

static int on_event(keel_workflow_ctx *ctx, void *state, const keel_workflow_event *ev)
{
    chain *s = state;
    if (ev->kind != KEEL_EVENT_ACTIVITY_COMPLETED)
        return KEEL_EINVAL;
    s->done++;
    return next(ctx, s);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int runs = argc > 2 ? atoi(argv[2]) : 15;
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return 1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)len);
    if (fread(data, 1, (size_t)len, f) != (size_t)len)
        return 1;
    fclose(f);
    keel_workflow_type t = {.name = "keel.ReplayBenchChain",
                            .state_size = sizeof(chain),
                            .start = start,
                            .on_event = on_event};
    static double ms[1000], cpu[1000];
    if (runs < 1 || runs > 1000)
        runs = 1000;
    for (int i = 0; i < runs; i++) {
        struct timespec a, b, ca, cb;
        keel_error err;
        clock_gettime(CLOCK_MONOTONIC, &a);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
        int rc = keel_replay(&t, data, (size_t)len, &err);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (rc != KEEL_OK) {
            fprintf(stderr, "replay: %s\n", err.message);
            return 1;
        }
        ms[i] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
        cpu[i] = (double)(cb.tv_sec - ca.tv_sec) * 1e3 + (double)(cb.tv_nsec - ca.tv_nsec) / 1e6;
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp);
    qsort(cpu, (size_t)runs, sizeof *cpu, cmp);
    printf("%s: %d runs, wall median %.3f ms (%.3f..%.3f), cpu median %.3f ms (%.3f..%.3f)\n",
           argv[1], runs, ms[runs / 2], ms[0], ms[runs - 1], cpu[runs / 2], cpu[0], cpu[runs - 1]);
    free(data);
    return 0;
}
