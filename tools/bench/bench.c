/*
 * keel-bench - how fast one keel worker completes workflows on the dev stack, and what
 * observability costs.
 *
 *   keel-bench [--workflows N] [--concurrency C] [--cache N] [--pollers P]
 *              [--configs off,metrics,tracing,both] [--rounds R] [--eager-start]
 *
 * Runs a worker in this process with a one-activity workflow (schedule "noop", complete with its
 * result), starts N runs from C starter threads, waits until every run has completed, and
 * prints the throughput, the CPU time the process used per 1,000 workflows, and its peak RSS.
 * The starters and the worker share the process, so the RSS is an upper bound for the worker
 * alone and the CPU includes the starters' (the same in every configuration).
 *
 * --eager-start asks for an eager start on every start (keel_workflow_start_options.eager): the
 * worker shares the starters' client, so a start that finds a free workflow-task slot gets its
 * first task in the start's answer instead of through a poll. Each round prints how many starts
 * were eager and the first-task latency (from just before the start call to the moment the
 * workflow's start callback runs in the worker, p50/p99 over the round's runs).
 *
 * Each configuration in --configs (default "off,metrics") runs the same benchmark with a client
 * and worker of its own, one after the other, R rounds in turn (so that drift in the server
 * hits each alike); then one line compares each configuration's median CPU per 1,000 workflows with
 * the first one's. Configurations: "off" (nothing), "metrics" (a keel_metrics registry on the
 * worker, its /metrics served on a free port and scraped every second, as Prometheus would),
 * "tracing" (spans as keel-worker makes them, exported over OTLP/HTTP to the collector
 * OTEL_EXPORTER_OTLP_ENDPOINT names), "both". A new one is one more entry in the `configs`
 * table. Connects with the TEMPORAL_* environment, like every keel program.
 *
 * KEEL_BENCH_SERVER_PID_FILE names the Temporal server's pid file (make bench gives the dev
 * stack's <run>/pids/temporal.pid): each round then also prints the CPU seconds the server process
 * used during it (utime + stime from /proc/<pid>/stat, before and after), and the summary their
 * median per 1,000 workflows. Everything else the server does meanwhile counts too, so it is
 * meaningful on a stack that only the benchmark uses. KEEL_BENCH_DB_PID_FILE does the same for
 * the server's database when it is a process of its own (PostgreSQL's postmaster.pid: the
 * postmaster, its children and the children it has reaped), printed as db_cpu_seconds.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

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

/* First-task latency, per run index (the input's "n"): when its start call began and when its
 * start callback first ran. Measurement only, outside what the workflow decides; a bench
 * workflow, not one of workflows/. */
static _Atomic int64_t *start_at, *first_at;
static int latency_n;

static int one_start(keel_workflow_ctx *ctx, void *state, const char *input)
{
    (void)state;
    int n = -1;
    if (first_at && sscanf(input, "{\"n\":%d}", &n) == 1 && n >= 0 && n < latency_n) {
        int64_t zero = 0;
        atomic_compare_exchange_strong(&first_at[n], &zero, now_ms());
    }
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
    bool eager;
    atomic_int *failures, *eager_starts;
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
        o.eager = s->eager;
        keel_error err;
        bool eager = false;
        atomic_store(&start_at[i], now_ms());
        if (keel_client_workflow_start_ex(s->client, &o, NULL, &eager, &err) != KEEL_OK) {
            fprintf(stderr, "keel-bench: %s\n", err.message);
            atomic_fetch_add(s->failures, 1);
        }
        if (eager)
            atomic_fetch_add(s->eager_starts, 1);
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

/* ---- configurations ---- */

/* What one configuration sets up around its worker. */
typedef struct config_state {
    keel_metrics *metrics;
    keel_metrics_server *server;
    pthread_t scraper;
    bool scraping;
    atomic_bool stop;
    atomic_int scrapes;
    uint64_t spans_exported, spans_dropped; /* read after the exporter's last flush */
} config_state;

static size_t discard(char *p, size_t size, size_t n, void *user)
{
    (void)p;
    (void)user;
    return size * n;
}

/* GET /metrics every second, as a Prometheus server would. */
static void *scrape(void *arg)
{
    config_state *cs = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", keel_metrics_server_port(cs->server));
    CURL *c = curl_easy_init();
    if (c == NULL)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    while (!atomic_load(&cs->stop)) {
        if (curl_easy_perform(c) == CURLE_OK)
            atomic_fetch_add(&cs->scrapes, 1);
        for (int i = 0; i < 10 && !atomic_load(&cs->stop); i++)
            usleep(100 * 1000);
    }
    curl_easy_cleanup(c);
    return NULL;
}

static int metrics_setup(config_state *cs, keel_worker_options *wo, keel_error *err)
{
    if ((cs->metrics = keel_metrics_new()) == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    int rc = keel_metrics_server_start(&cs->server, cs->metrics, "127.0.0.1:0", err);
    if (rc != KEEL_OK)
        return rc;
    wo->metrics = cs->metrics;
    atomic_init(&cs->stop, false);
    atomic_init(&cs->scrapes, 0);
    cs->scraping = pthread_create(&cs->scraper, NULL, scrape, cs) == 0;
    return KEEL_OK;
}

/* After the worker is freed. */
static void metrics_teardown(config_state *cs)
{
    atomic_store(&cs->stop, true);
    if (cs->scraping)
        pthread_join(cs->scraper, NULL);
    keel_metrics_server_free(cs->server);
    keel_metrics_free(cs->metrics);
}

/* Traces as keel-worker makes them, exported to the collector OTEL_EXPORTER_OTLP_ENDPOINT names
 * (make bench starts Jaeger for it); each configuration starts and stops the exporter, so the
 * queue is flushed inside the configuration's own CPU time. */
static int tracing_setup(config_state *cs, keel_worker_options *wo, keel_error *err)
{
    (void)cs;
    (void)wo;
    keel_trace_config c;
    int rc = keel_trace_config_from_env(&c, "keel-bench", NULL, NULL, err);
    if (rc != KEEL_OK)
        return rc;
    if (!c.enabled) {
        keel_trace_config_clear(&c);
        return keel_error_set(err, KEEL_EINVAL,
                              "the tracing configurations need OTEL_EXPORTER_OTLP_ENDPOINT (a "
                              "collector: tools/devstack jaeger, then http://127.0.0.1:4318)");
    }
    rc = keel_trace_start(&c, err);
    keel_trace_config_clear(&c);
    return rc;
}

static void tracing_teardown(config_state *cs)
{
    keel_trace_shutdown(10000);
    cs->spans_exported = keel_trace_exported_spans();
    cs->spans_dropped = keel_trace_dropped_spans();
}

static int both_setup(config_state *cs, keel_worker_options *wo, keel_error *err)
{
    int rc = metrics_setup(cs, wo, err);
    return rc == KEEL_OK ? tracing_setup(cs, wo, err) : rc;
}

static void both_teardown(config_state *cs)
{
    tracing_teardown(cs);
    metrics_teardown(cs);
}

typedef struct config {
    const char *name;
    int (*setup)(config_state *cs, keel_worker_options *wo, keel_error *err); /* NULL: none */
    void (*teardown)(config_state *cs);
} config;

static const config configs[] = {
    {"off", NULL, NULL},
    {"metrics", metrics_setup, metrics_teardown},
    {"tracing", tracing_setup, tracing_teardown},
    {"both", both_setup, both_teardown},
};

static const config *find_config(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        if (strlen(configs[i].name) == len && strncmp(configs[i].name, name, len) == 0)
            return &configs[i];
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The CPU seconds (user + system) process pid has used, from /proc/<pid>/stat; -1 if unreadable.
 * With reaped, its waited-for children's too (cutime + cstime); *ppid gets its parent's pid. */
static double stat_cpu_seconds(long pid, bool reaped, long *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* pid (comm) state ppid ...: comm may hold spaces and parentheses, so start after the last
     * ')'; utime and stime are fields 14 and 15, the 12th and 13th after it. */
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long utime, stime;
    long long cutime, cstime, parent;
    if (sscanf(p + 1, " %*c %lld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &parent,
               &utime, &stime, &cutime, &cstime) != 5)
        return -1;
    if (ppid)
        *ppid = (long)parent;
    long tck = sysconf(_SC_CLK_TCK);
    double ticks = (double)(utime + stime) + (reaped ? (double)(cutime + cstime) : 0.0);
    return tck > 0 ? ticks / (double)tck : -1;
}

static double process_cpu_seconds(long pid)
{
    return stat_cpu_seconds(pid, false, NULL);
}

/* pid, its reaped children and its live children (PostgreSQL: the postmaster and its backends). */
static double tree_cpu_seconds(long pid)
{
    double total = stat_cpu_seconds(pid, true, NULL);
    if (total < 0)
        return -1;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return total;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long child = strtol(e->d_name, &end, 10);
        long parent = 0;
        if (*end != '\0' || child <= 0)
            continue;
        double c = stat_cpu_seconds(child, false, &parent);
        if (c >= 0 && parent == pid)
            total += c;
    }
    closedir(d);
    return total;
}

/* The pid on the first line of the file the environment variable var names: 0 when the variable is
 * unset, -1 (with a message) when it is set but names no running process. */
static long pid_from_file(const char *var)
{
    const char *file = getenv(var);
    if (file == NULL || file[0] == '\0')
        return 0;
    FILE *f = fopen(file, "r");
    long pid = 0;
    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 0 || process_cpu_seconds(pid) < 0) {
        fprintf(stderr, "keel-bench: %s=%s names no running process\n", var, file);
        pid = -1;
    }
    if (f != NULL)
        fclose(f);
    return pid;
}

static int arg_int(int argc, char **argv, const char *name, int dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return atoi(argv[i + 1]);
    return dflt;
}

static const char *arg_str(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return dflt;
}

/* The median of v[0..n), n <= 20; sorts v. */
static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

typedef struct params {
    int n, conc, cache, pollers;
    bool eager;
} params;

typedef struct measured {
    double seconds, cpu, server_cpu, db_cpu;
    double first_p50, first_p99; /* first-task latency, ms */
    int failures, scrapes, eager_starts;
    uint64_t spans_exported, spans_dropped;
    keel_worker_stats stats;
} measured;

/* One benchmark run under configuration c, with a client and worker of its own. */
static int run_one(const params *p, const config *c, int round, long spid, long dbpid, measured *m)
{
    memset(m, 0, sizeof *m);
    keel_connect_options co;
    keel_error err;
    keel_connect_options_init(&co, KEEL_CONNECT_OPTIONS_VERSION);
    keel_client_profile *profile;
    if (keel_connect_options_from_profile(&co, NULL, &profile, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench: %s\n", err.message);
        return 2;
    }
    keel_client *client;
    int client_rc = keel_client_new(&client, &co, &err);
    keel_client_profile_free(profile);
    if (client_rc != KEEL_OK) {
        fprintf(stderr, "keel-bench: %s\n", err.message);
        return 1;
    }
    char queue[96], prefix[96];
    snprintf(queue, sizeof queue, "keel-bench-%ld-%s-%d", (long)getpid(), c->name, round);
    snprintf(prefix, sizeof prefix, "keel-bench-%ld-%ld-%s-%d", (long)getpid(), (long)time(NULL),
             c->name, round);

    const keel_workflow_type *wfs[] = {&one_activity};
    keel_activity_type acts[] = {{"noop", noop, NULL}};
    keel_worker_options wo;
    keel_worker_options_init(&wo, KEEL_WORKER_OPTIONS_VERSION);
    wo.task_queue = queue;
    wo.workflows = wfs;
    wo.n_workflows = 1;
    wo.activities = acts;
    wo.n_activities = 1;
    wo.max_cached_workflows = p->cache;
    wo.workflow_pollers = p->pollers;
    config_state cs;
    memset(&cs, 0, sizeof cs);
    keel_worker *w = NULL;
    double cpu0 = cpu_seconds();
    double server0 = spid > 0 ? process_cpu_seconds(spid) : 0;
    double db0 = dbpid > 0 ? tree_cpu_seconds(dbpid) : 0;
    int64_t t0 = now_ms();
    if ((c->setup && c->setup(&cs, &wo, &err) != KEEL_OK) ||
        keel_worker_new(&w, client, &wo, &err) != KEEL_OK ||
        keel_worker_start(w, &err) != KEEL_OK) {
        fprintf(stderr, "keel-bench: %s: %s\n", c->name, err.message);
        keel_worker_free(w);
        if (c->teardown)
            c->teardown(&cs);
        keel_client_free(client);
        return 1;
    }

    atomic_int failures, eager_starts;
    atomic_init(&failures, 0);
    atomic_init(&eager_starts, 0);
    for (int i = 0; i < p->n; i++) {
        atomic_store(&start_at[i], 0);
        atomic_store(&first_at[i], 0);
    }
    pthread_t threads[256];
    starter st[256];
    for (int i = 0; i < p->conc; i++) {
        st[i] = (starter){
            client,   queue,     prefix,       p->n * i / p->conc, p->n * (i + 1) / p->conc,
            p->eager, &failures, &eager_starts};
        pthread_create(&threads[i], NULL, start_and_wait, &st[i]);
    }
    for (int i = 0; i < p->conc; i++)
        pthread_join(threads[i], NULL);
    m->seconds = (double)(now_ms() - t0) / 1000.0;
    m->eager_starts = atomic_load(&eager_starts);
    double *lat = malloc((size_t)p->n * sizeof *lat);
    int n_lat = 0;
    for (int i = 0; lat && i < p->n; i++)
        if (atomic_load(&first_at[i]) > 0)
            lat[n_lat++] = (double)(atomic_load(&first_at[i]) - atomic_load(&start_at[i]));
    if (n_lat > 0) {
        m->first_p50 = median(lat, n_lat); /* sorts lat */
        m->first_p99 = lat[(n_lat * 99 - 1) / 100];
    }
    free(lat);
    keel_worker_get_stats(w, &m->stats);
    keel_worker_free(w);
    keel_client_free(client);
    m->scrapes = atomic_load(&cs.scrapes);
    if (c->teardown)
        c->teardown(&cs);
    m->cpu = cpu_seconds() - cpu0;
    m->spans_exported = cs.spans_exported;
    m->spans_dropped = cs.spans_dropped;
    m->server_cpu = spid > 0 ? process_cpu_seconds(spid) - server0 : 0;
    m->db_cpu = dbpid > 0 ? tree_cpu_seconds(dbpid) - db0 : 0;
    m->failures = atomic_load(&failures);
    return 0;
}

int main(int argc, char **argv)
{
    params p = {.n = arg_int(argc, argv, "--workflows", 500),
                .conc = arg_int(argc, argv, "--concurrency", 8),
                .cache = arg_int(argc, argv, "--cache", 256),
                .pollers = arg_int(argc, argv, "--pollers", 2)};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--eager-start") == 0)
            p.eager = true;
    int rounds = arg_int(argc, argv, "--rounds", 1);
    const char *names = arg_str(argc, argv, "--configs", "off,metrics");
    const config *chosen[8];
    size_t n_chosen = 0;
    bool bad = false;
    for (const char *q = names; *q && !bad;) {
        size_t len = strcspn(q, ",");
        const config *c = find_config(q, len);
        if (c == NULL || n_chosen == sizeof chosen / sizeof chosen[0])
            bad = true;
        else
            chosen[n_chosen++] = c;
        q += len + (q[len] == ',');
    }
    if (bad || n_chosen == 0 || p.n < 1 || p.conc < 1 || p.conc > 256 || p.cache < 0 ||
        p.pollers < 1 || p.pollers > 64 || rounds < 1 || rounds > 20) {
        fprintf(stderr, "usage: keel-bench [--workflows N] [--concurrency 1-256] [--cache N] "
                        "[--pollers 1-64] [--configs off,metrics] [--rounds 1-20] "
                        "[--eager-start]\n"
                        "configurations:");
        for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
            fprintf(stderr, " %s", configs[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    long spid = pid_from_file("KEEL_BENCH_SERVER_PID_FILE");
    long dbpid = pid_from_file("KEEL_BENCH_DB_PID_FILE");
    if (spid < 0 || dbpid < 0)
        return 2;
    start_at = calloc((size_t)p.n, sizeof *start_at);
    first_at = calloc((size_t)p.n, sizeof *first_at);
    latency_n = p.n;
    if (start_at == NULL || first_at == NULL) {
        fprintf(stderr, "keel-bench: out of memory\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    double cpu[8] = {0}, secs[8] = {0}, per_round[8][20], server_round[8][20], db_round[8][20],
           wps_round[8][20];
    int failed = 0;
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0; i < n_chosen; i++) {
            measured m;
            int rc = run_one(&p, chosen[i], r, spid, dbpid, &m);
            if (rc != 0)
                return rc;
            cpu[i] += m.cpu;
            secs[i] += m.seconds;
            per_round[i][r] = m.cpu * 1000.0 / p.n;
            server_round[i][r] = m.server_cpu * 1000.0 / p.n;
            db_round[i][r] = m.db_cpu * 1000.0 / p.n;
            wps_round[i][r] = m.seconds > 0 ? p.n / m.seconds : 0.0;
            failed += m.failures;
            printf("config=%s round=%d workflows=%d concurrency=%d cache=%d pollers=%d failed=%d "
                   "seconds=%.2f workflows_per_second=%.1f cpu_seconds=%.2f "
                   "cpu_seconds_per_1000_workflows=%.2f workflow_tasks=%llu activities=%llu "
                   "cache_hits=%llu cache_misses=%llu scrapes=%d spans_exported=%llu "
                   "spans_dropped=%llu eager_start=%s eager_starts=%d "
                   "eager_workflow_tasks=%llu first_task_ms_p50=%.1f first_task_ms_p99=%.1f\n",
                   chosen[i]->name, r + 1, p.n, p.conc, p.cache, p.pollers, m.failures, m.seconds,
                   m.seconds > 0 ? p.n / m.seconds : 0.0, m.cpu, m.cpu * 1000.0 / p.n,
                   (unsigned long long)m.stats.workflow_tasks_completed,
                   (unsigned long long)m.stats.activities_completed,
                   (unsigned long long)m.stats.cache_hits, (unsigned long long)m.stats.cache_misses,
                   m.scrapes, (unsigned long long)m.spans_exported,
                   (unsigned long long)m.spans_dropped, p.eager ? "on" : "off", m.eager_starts,
                   (unsigned long long)m.stats.workflow_tasks_eager, m.first_p50, m.first_p99);
            if (spid > 0)
                printf("config=%s round=%d server_cpu_seconds=%.2f "
                       "server_cpu_seconds_per_1000_workflows=%.2f\n",
                       chosen[i]->name, r + 1, m.server_cpu, m.server_cpu * 1000.0 / p.n);
            if (dbpid > 0)
                printf("config=%s round=%d db_cpu_seconds=%.2f "
                       "db_cpu_seconds_per_1000_workflows=%.2f\n",
                       chosen[i]->name, r + 1, m.db_cpu, m.db_cpu * 1000.0 / p.n);
            fflush(stdout);
        }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* The median of the rounds is the figure compared: one round disturbed by something else
     * on the machine moves a mean by far more than the cost being measured. */
    double med[8];
    for (size_t i = 0; i < n_chosen; i++)
        med[i] = median(per_round[i], rounds);
    printf("summary (median of %d rounds):", rounds);
    for (size_t i = 0; i < n_chosen; i++) {
        printf(" %s=%.2f_cpu_s_per_1000_workflows", chosen[i]->name, med[i]);
        if (i > 0 && med[0] > 0)
            printf("(%+.1f%%)", (med[i] - med[0]) * 100.0 / med[0]);
    }
    printf(" mean:");
    for (size_t i = 0; i < n_chosen; i++)
        printf(" %s=%.2f", chosen[i]->name, cpu[i] * 1000.0 / ((double)p.n * rounds));
    printf(" peak_rss_mb=%.1f\n", (double)ru.ru_maxrss / 1024.0);
    printf("summary (median of %d rounds):", rounds);
    for (size_t i = 0; i < n_chosen; i++)
        printf(" %s=%.1f_workflows_per_second", chosen[i]->name, median(wps_round[i], rounds));
    if (spid > 0)
        for (size_t i = 0; i < n_chosen; i++)
            printf(" %s=%.2f_server_cpu_s_per_1000_workflows", chosen[i]->name,
                   median(server_round[i], rounds));
    if (dbpid > 0)
        for (size_t i = 0; i < n_chosen; i++)
            printf(" %s=%.2f_db_cpu_s_per_1000_workflows", chosen[i]->name,
                   median(db_round[i], rounds));
    printf("\n");
    curl_global_cleanup();
    free(start_at);
    free(first_at);
    return failed == 0 ? 0 : 1;
}
