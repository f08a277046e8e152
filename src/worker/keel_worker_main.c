/*
 * keel-worker - the worker process.
 *
 * Registers every workflow in workflows/ (workflows/registry.h), connects to the Temporal
 * frontend named by the TEMPORAL_* environment, and polls its task queue until SIGINT or SIGTERM.
 * Then it shuts down gracefully: no new polls, workflow tasks in progress finish, running
 * activities get KEEL_SHUTDOWN_GRACE to finish before they are handed back to the server for
 * another worker, and the server is told that this process's sticky queue is gone. A second
 * signal during that wait exits at once. Everything it says goes to stderr as one-line logfmt
 * records (src/log/log.h). Settings: docs/operations.md.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "activities/agent.h"
#include "activities/http.h"
#include "keel/keel.h"
#include "keel/process.h"
#include "keel/trace.h"
#include "log/log.h"
#include "workflows/registry.h"

#define EXIT_FAILED 1
#define EXIT_CONFIG 2

typedef struct settings {
    const char *task_queue;
    const char *metrics_address; /* KEEL_METRICS_ADDRESS; NULL: no /metrics */
    int pollers, activities, cached;
    int wf_tasks, wf_threads, pollers_min, pollers_max, act_pollers, act_pollers_min,
        act_pollers_max;
    int64_t sticky_ms;
    bool no_eager;
    int64_t grace_ms;
    int64_t heartbeat_ms; /* 0: the default; negative: off */
    char identity[512];
    /* Worker Deployments: KEEL_DEPLOYMENT_NAME (NULL: unversioned), KEEL_BUILD_ID, and
     * KEEL_VERSIONING_BEHAVIOR_OVERRIDES (a list the settings own). */
    const char *deployment_name, *build_id;
    keel_versioning_override *overrides;
    size_t n_overrides;
} settings;

static int config_error(const char *what, const char *detail)
{
    keel_log(KEEL_LOG_ERROR, "main", "bad configuration", "setting", what, "error", detail, NULL);
    return EXIT_CONFIG;
}

/* An integer setting in [min, max], or its default when unset. */
static int env_int(const char *name, int min, int max, int *out)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || end == v || n < min || n > max) {
        char why[160];
        snprintf(why, sizeof why, "'%.60s' is not a whole number from %d to %d", v, min, max);
        return config_error(name, why);
    }
    *out = (int)n;
    return 0;
}

/* KEEL_IDENTITY, or what this worker is: "<pid>@<host>@<build id>", the build id being
 * KEEL_BUILD_ID or "keel-<version>". It names the worker in history events, in the Web UI's
 * Pollers and Workers tabs, and in its sticky queue's name. */
static int worker_identity(char *out, size_t n)
{
    const char *v = getenv("KEEL_IDENTITY");
    if (v && v[0]) {
        if (strlen(v) >= n || !keel_header_value_ok(v))
            return config_error("KEEL_IDENTITY",
                                "must be printable ASCII and shorter than 512 bytes");
        snprintf(out, n, "%s", v);
        return 0;
    }
    const char *build = getenv("KEEL_BUILD_ID");
    if (build && build[0] && (strlen(build) > 255 || !keel_header_value_ok(build)))
        return config_error("KEEL_BUILD_ID", "must be printable ASCII, at most 255 bytes");
    char host[256] = "unknown-host";
    if (gethostname(host, sizeof host - 1) != 0)
        strcpy(host, "unknown-host");
    host[sizeof host - 1] = '\0';
    if (build && build[0])
        snprintf(out, n, "%ld@%.200s@%s", (long)getpid(), host, build);
    else
        snprintf(out, n, "%ld@%.200s@%s-%s", (long)getpid(), host, KEEL_SDK_NAME, KEEL_VERSION);
    return 0;
}

/* KEEL_DEPLOYMENT_NAME makes this a versioned worker of that deployment, version KEEL_BUILD_ID
 * (then required); KEEL_VERSIONING_BEHAVIOR_OVERRIDES changes the registered types' behaviours.
 * Checked here so that a bad value stops the start with the variable's name. */
static int deployment_settings(settings *s)
{
    const char *name = getenv("KEEL_DEPLOYMENT_NAME");
    const char *build = getenv("KEEL_BUILD_ID");
    const char *over = getenv("KEEL_VERSIONING_BEHAVIOR_OVERRIDES");
    keel_error err;
    if (name == NULL || name[0] == '\0') {
        if (over && over[0])
            return config_error("KEEL_VERSIONING_BEHAVIOR_OVERRIDES",
                                "needs KEEL_DEPLOYMENT_NAME (an unversioned worker has no "
                                "versioning behaviours)");
        return 0;
    }
    if (keel_deployment_version_check(name, NULL, &err) != KEEL_OK)
        return config_error("KEEL_DEPLOYMENT_NAME", err.message);
    if (build == NULL || build[0] == '\0')
        return config_error("KEEL_BUILD_ID", "KEEL_DEPLOYMENT_NAME needs a build id too");
    if (keel_deployment_version_check(NULL, build, &err) != KEEL_OK)
        return config_error("KEEL_BUILD_ID", err.message);
    s->deployment_name = name;
    s->build_id = build;
    if (keel_versioning_overrides_parse(over, &s->overrides, &s->n_overrides, &err) != KEEL_OK)
        return config_error("KEEL_VERSIONING_BEHAVIOR_OVERRIDES", err.message);
    for (size_t i = 0; i < s->n_overrides; i++)
        if (keel_workflow_registry_find(s->overrides[i].workflow_type) == NULL) {
            char why[320];
            snprintf(why, sizeof why, "no workflow type %.200s on keel-worker",
                     s->overrides[i].workflow_type);
            return config_error("KEEL_VERSIONING_BEHAVIOR_OVERRIDES", why);
        }
    return 0;
}

static int read_settings(settings *s)
{
    *s = (settings){.task_queue = "keel", .pollers = 2, .activities = 8, .cached = 256};
    const char *q = getenv("KEEL_TASK_QUEUE");
    if (q && q[0])
        s->task_queue = q;
    int rc = env_int("KEEL_WORKFLOW_POLLERS", 1, 64, &s->pollers);
    if (rc == 0)
        rc = env_int("KEEL_MAX_CONCURRENT_ACTIVITIES", 1, 512, &s->activities);
    if (rc == 0)
        rc = env_int("KEEL_MAX_CACHED_WORKFLOWS", 0, 1000000, &s->cached);
    /* Slots and pollers: 0 (unset) takes the worker's default; keel_worker_new checks how the
     * bounds relate. */
    if (rc == 0)
        rc = env_int("KEEL_MAX_CONCURRENT_WORKFLOW_TASKS", 2, 512, &s->wf_tasks);
    if (rc == 0)
        rc = env_int("KEEL_WORKFLOW_TASK_THREADS", 1, 512, &s->wf_threads);
    if (rc == 0)
        rc = env_int("KEEL_WORKFLOW_POLLERS_MIN", 1, 64, &s->pollers_min);
    if (rc == 0)
        rc = env_int("KEEL_WORKFLOW_POLLERS_MAX", 1, 64, &s->pollers_max);
    if (rc == 0)
        rc = env_int("KEEL_ACTIVITY_POLLERS", 1, 512, &s->act_pollers);
    if (rc == 0)
        rc = env_int("KEEL_ACTIVITY_POLLERS_MIN", 1, 512, &s->act_pollers_min);
    if (rc == 0)
        rc = env_int("KEEL_ACTIVITY_POLLERS_MAX", 1, 512, &s->act_pollers_max);
    const char *eager = getenv("KEEL_EAGER_ACTIVITIES");
    if (rc == 0 && eager && eager[0]) {
        if (strcmp(eager, "0") == 0 || strcmp(eager, "false") == 0)
            s->no_eager = true;
        else if (strcmp(eager, "1") != 0 && strcmp(eager, "true") != 0)
            rc = config_error("KEEL_EAGER_ACTIVITIES", "must be 1, true, 0 or false");
    }
    const char *sticky = getenv("KEEL_STICKY_SCHEDULE_TO_START_TIMEOUT");
    keel_error serr;
    if (rc == 0 && sticky && sticky[0]) {
        if (keel_duration_parse(sticky, &s->sticky_ms, &serr) != KEEL_OK)
            rc = config_error("KEEL_STICKY_SCHEDULE_TO_START_TIMEOUT", serr.message);
        else if (s->sticky_ms < 1000 || s->sticky_ms > 60000)
            rc = config_error("KEEL_STICKY_SCHEDULE_TO_START_TIMEOUT", "must be from 1s to 60s");
    }
    const char *grace = getenv("KEEL_SHUTDOWN_GRACE");
    keel_error err;
    s->grace_ms = 10000;
    if (rc == 0 && grace && grace[0] && keel_duration_parse(grace, &s->grace_ms, &err) != KEEL_OK)
        rc = config_error("KEEL_SHUTDOWN_GRACE", err.message);
    const char *metrics = getenv("KEEL_METRICS_ADDRESS");
    s->metrics_address = metrics && metrics[0] ? metrics : NULL;
    if (rc == 0 && s->grace_ms == 0)
        s->grace_ms = 1; /* "0": hand activities back at once (0 in the options means default) */
    const char *hb = getenv("KEEL_WORKER_HEARTBEAT_INTERVAL");
    if (rc == 0 && hb && hb[0]) {
        if (keel_duration_parse(hb, &s->heartbeat_ms, &err) != KEEL_OK)
            rc = config_error("KEEL_WORKER_HEARTBEAT_INTERVAL", err.message);
        else if (s->heartbeat_ms == 0)
            s->heartbeat_ms = -1; /* "0": no heartbeats */
        else if (s->heartbeat_ms < 1000 || s->heartbeat_ms > 60000)
            rc = config_error("KEEL_WORKER_HEARTBEAT_INTERVAL",
                              "must be from 1s to 60s, or 0 for no worker heartbeats");
    }
    if (rc == 0)
        rc = worker_identity(s->identity, sizeof s->identity);
    if (rc == 0)
        rc = deployment_settings(s);
    return rc;
}

/* After the first stop signal: a second one ends the process without waiting. */
static void *second_signal(void *arg)
{
    sigset_t *stop = arg;
    int sig = 0;
    if (sigwait(stop, &sig) == 0) {
        keel_log(KEEL_LOG_WARN, "main", "second signal: exiting without waiting", NULL);
        _exit(EXIT_FAILED);
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: keel-worker [--help | --version]\n"
        "Runs keel's workflows on a Temporal task queue until SIGINT or SIGTERM.\n"
        "Settings come from the environment (docs/operations.md): TEMPORAL_ADDRESS,\n"
        "TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_GRPC_META_*, over the\n"
        "client profile file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE), KEEL_TASK_QUEUE (keel),\n"
        "KEEL_WORKFLOW_POLLERS (2), KEEL_MAX_CONCURRENT_ACTIVITIES (8),\n"
        "KEEL_MAX_CACHED_WORKFLOWS (256), KEEL_SHUTDOWN_GRACE (10s), KEEL_LOG_LEVEL (info),\n"
        "KEEL_MAX_CONCURRENT_WORKFLOW_TASKS (64), KEEL_WORKFLOW_TASK_THREADS (4),\n"
        "KEEL_WORKFLOW_POLLERS_MIN (2) and _MAX (4),\n"
        "KEEL_ACTIVITY_POLLERS (2), KEEL_ACTIVITY_POLLERS_MIN (1) and _MAX (activities),\n"
        "KEEL_STICKY_SCHEDULE_TO_START_TIMEOUT (10s), KEEL_EAGER_ACTIVITIES (1; 0: off),\n"
        "KEEL_IDENTITY (<pid>@<host>@<build id>), KEEL_BUILD_ID (keel-<version>),\n"
        "KEEL_WORKER_HEARTBEAT_INTERVAL (60s; 0: none).\n"
        "KEEL_DEPLOYMENT_NAME (unset: unversioned; set: a versioned worker of version\n"
        "KEEL_BUILD_ID), KEEL_VERSIONING_BEHAVIOR_OVERRIDES (TYPE=pinned|auto-upgrade,...).\n"
        "KEEL_METRICS_ADDRESS (host:port: Prometheus /metrics; unset: off).\n"
        "With DATABASE_URL it also runs the agent activities (llm.chat, tool.*): OPENAI_BASE_URL,\n"
        "OPENAI_API_KEY, KEEL_MODEL, KEEL_LLM_TIMEOUT, KEEL_PRICES, KEEL_NOTIFY_WEBHOOK_URL.\n");
}

static void log_stats(keel_worker *w)
{
    keel_worker_stats st;
    keel_worker_get_stats(w, &st);
    char v[8][24];
    snprintf(v[0], sizeof v[0], "%llu", (unsigned long long)st.workflow_tasks_completed);
    snprintf(v[1], sizeof v[1], "%llu", (unsigned long long)st.workflow_tasks_failed);
    snprintf(v[2], sizeof v[2], "%llu", (unsigned long long)st.activities_completed);
    snprintf(v[3], sizeof v[3], "%llu", (unsigned long long)st.activities_failed);
    snprintf(v[4], sizeof v[4], "%llu", (unsigned long long)st.cache_hits);
    snprintf(v[5], sizeof v[5], "%llu", (unsigned long long)st.cache_misses);
    snprintf(v[6], sizeof v[6], "%llu", (unsigned long long)st.activities_eager);
    snprintf(v[7], sizeof v[7], "%llu", (unsigned long long)st.workflow_tasks_inline);
    keel_log(KEEL_LOG_INFO, "main", "stopped", "workflow_tasks_completed", v[0],
             "workflow_tasks_failed", v[1], "activities_completed", v[2], "activities_failed", v[3],
             "cache_hits", v[4], "cache_misses", v[5], "activities_eager", v[6],
             "workflow_tasks_inline", v[7], NULL);
}

/* The agent activities, when there is a database for them. Their settings are checked and
 * keel's migrations applied before the worker polls, so a bad setting stops the start. */
static int start_agent(keel_agent **out)
{
    *out = NULL;
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url) {
        keel_log(KEEL_LOG_WARN, "main",
                 "DATABASE_URL is not set: no agent activities (llm.chat, "
                 "tool.*) on this worker",
                 NULL);
        return 0;
    }
    keel_error err;
    keel_error_clear(&err);
    int rc = keel_agent_new(out, NULL, &err);
    if (rc == KEEL_EINVAL)
        return config_error("agent activities", err.message);
    if (rc != KEEL_OK) {
        keel_log(KEEL_LOG_ERROR, "main", "cannot start the agent activities", "error", err.message,
                 NULL);
        return EXIT_FAILED;
    }
    const keel_llm_config *llm = keel_agent_llm_config(*out);
    char endpoint[512];
    keel_http_url_for_log(llm->base_url, endpoint, sizeof endpoint);
    keel_log(KEEL_LOG_INFO, "main", "agent activities ready", "model_endpoint", endpoint, "model",
             llm->model, "api_key", llm->api_key ? "set" : "unset", NULL);
    return 0;
}

/* The /metrics endpoint, when KEEL_METRICS_ADDRESS asks for one; a bad address stops the start. */
static int start_metrics(const settings *s, keel_metrics **reg, keel_metrics_server **srv)
{
    *reg = NULL;
    *srv = NULL;
    if (s->metrics_address == NULL)
        return 0;
    keel_error err;
    keel_error_clear(&err);
    if ((*reg = keel_metrics_new()) == NULL)
        return config_error("KEEL_METRICS_ADDRESS", "out of memory");
    if (keel_metrics_server_start(srv, *reg, s->metrics_address, &err) != KEEL_OK) {
        keel_metrics_free(*reg);
        *reg = NULL;
        return config_error("KEEL_METRICS_ADDRESS", err.message);
    }
    char port[16];
    snprintf(port, sizeof port, "%d", keel_metrics_server_port(*srv));
    keel_log(KEEL_LOG_INFO, "main", "serving metrics", "address", s->metrics_address, "port", port,
             "path", "/metrics", NULL);
    return 0;
}

/* Connect, start, wait for the stop signal, stop. */
static int serve(const settings *s, sigset_t *stop)
{
    keel_connect_options opts;
    keel_error err;
    keel_connect_options_init(&opts, KEEL_CONNECT_OPTIONS_VERSION);
    /* The client profile file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE), then TEMPORAL_*. */
    keel_client_profile *profile = NULL;
    if (keel_connect_options_from_profile(&opts, NULL, &profile, &err) != KEEL_OK ||
        keel_connect_options_validate(&opts, &err) != KEEL_OK) {
        keel_client_profile_free(profile);
        return config_error("TEMPORAL_*", err.message);
    }
    if (keel_client_profile_file(profile))
        keel_log(KEEL_LOG_INFO, "main", "client profile", "file", keel_client_profile_file(profile),
                 "profile", keel_client_profile_name(profile), NULL);
    keel_client *client;
    int client_rc = keel_client_new(&client, &opts, &err);
    keel_client_profile_free(profile); /* the client copied what it keeps */
    if (client_rc != KEEL_OK)
        return config_error("TEMPORAL_*", err.message);
    keel_system_info info;
    if (keel_client_system_info(client, &info, &err) != KEEL_OK) {
        keel_log(KEEL_LOG_ERROR, "main", "cannot reach the Temporal server", "address",
                 keel_client_address(client), "error", err.message, NULL);
        keel_client_free(client);
        return EXIT_FAILED;
    }
    keel_metrics *metrics = NULL;
    keel_metrics_server *metrics_server = NULL;
    keel_agent *agent = NULL;
    int agent_rc = start_metrics(s, &metrics, &metrics_server);
    if (agent_rc == 0)
        agent_rc = start_agent(&agent);
    if (agent_rc != 0) {
        keel_metrics_server_free(metrics_server);
        keel_metrics_free(metrics);
        keel_system_info_dispose(&info);
        keel_client_free(client);
        return agent_rc;
    }
    if (agent)
        keel_agent_set_metrics(agent, metrics);
    size_t n_types;
    const keel_workflow_type *const *types = keel_workflow_registry(&n_types);
    keel_worker_options w;
    keel_worker_options_init(&w, KEEL_WORKER_OPTIONS_VERSION);
    w.task_queue = s->task_queue;
    w.workflows = types;
    w.n_workflows = n_types;
    w.workflow_pollers = s->pollers;
    w.max_concurrent_activities = s->activities;
    w.max_cached_workflows = s->cached;
    w.max_concurrent_workflow_tasks = s->wf_tasks;
    w.workflow_task_threads = s->wf_threads;
    w.workflow_pollers_min = s->pollers_min;
    w.workflow_pollers_max = s->pollers_max;
    w.activity_pollers = s->act_pollers;
    w.activity_pollers_min = s->act_pollers_min;
    w.activity_pollers_max = s->act_pollers_max;
    w.sticky_schedule_to_start_timeout_ms = s->sticky_ms;
    w.disable_eager_activities = s->no_eager;
    w.shutdown_grace_ms = s->grace_ms;
    w.heartbeat_interval_ms = s->heartbeat_ms;
    w.identity = s->identity;
    w.metrics = metrics;
    w.deployment_name = s->deployment_name;
    w.build_id = s->build_id;
    w.use_versioning = s->deployment_name != NULL;
    w.versioning_overrides = s->overrides;
    w.n_versioning_overrides = s->n_overrides;
    if (agent)
        w.activities = keel_agent_activities(agent, &w.n_activities);
    keel_worker *worker = NULL;
    int rc = keel_worker_new(&worker, client, &w, &err);
    if (rc == KEEL_OK)
        rc = keel_worker_start(worker, &err);
    if (rc != KEEL_OK) {
        keel_log(KEEL_LOG_ERROR, "main", "cannot start the worker", "error", err.message, NULL);
        keel_worker_free(worker);
        keel_agent_free(agent);
        keel_system_info_dispose(&info);
        keel_client_free(client);
        keel_metrics_server_free(metrics_server);
        keel_metrics_free(metrics);
        return EXIT_FAILED;
    }
    char names[512] = "", count[24];
    for (size_t i = 0; i < n_types; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? "," : "",
                 types[i]->name);
    snprintf(count, sizeof count, "%zu", n_types);
    keel_log(KEEL_LOG_INFO, "main", "polling", "version", KEEL_VERSION, "server",
             info.server_version, "address", keel_client_address(client), "namespace",
             keel_client_namespace(client), "task_queue", s->task_queue, "identity", s->identity,
             "workflows", names, "workflow_types", count, NULL);
    if (s->deployment_name) {
        char behaviors[1024] = "";
        for (size_t i = 0; i < n_types; i++)
            snprintf(behaviors + strlen(behaviors), sizeof behaviors - strlen(behaviors), "%s%s=%s",
                     i ? "," : "", types[i]->name,
                     keel_versioning_behavior_name(keel_worker_options_behavior(&w, types[i])));
        keel_log(KEEL_LOG_INFO, "main", "versioned worker", "deployment", s->deployment_name,
                 "build_id", s->build_id, "behaviors", behaviors, NULL);
    }
    keel_system_info_dispose(&info);

    int sig = 0;
    if (sigwait(stop, &sig) != 0)
        sig = SIGTERM;
    keel_log(KEEL_LOG_INFO, "main", "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
             NULL);
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, second_signal, stop) == 0)
        pthread_detach(watchdog);
    keel_worker_stop(worker);
    log_stats(worker);
    keel_worker_free(worker);
    keel_agent_free(agent);
    keel_client_free(client);
    keel_metrics_server_free(metrics_server);
    keel_metrics_free(metrics);
    return 0;
}

/* OpenTelemetry traces from the OTEL_* variables (docs/observability.md); off without an
 * endpoint. The endpoint and the headers are not logged: they may hold credentials. */
static int start_tracing(void)
{
    keel_trace_config c;
    keel_error err;
    if (keel_trace_config_from_env(&c, "keel-worker", NULL, NULL, &err) != KEEL_OK)
        return config_error("OTEL_*", err.message);
    if (!c.enabled)
        return 0;
    int rc = keel_trace_start(&c, &err);
    const char *service = "";
    for (size_t i = 0; i < c.n_resource; i++)
        if (strcmp(c.resource[i].key, "service.name") == 0)
            service = c.resource[i].value;
    if (rc == KEEL_OK)
        keel_log(KEEL_LOG_INFO, "main", "tracing on (OTLP/HTTP)", "service", service, NULL);
    keel_trace_config_clear(&c);
    if (rc != KEEL_OK) {
        keel_log(KEEL_LOG_ERROR, "main", "cannot start tracing", "error", err.message, NULL);
        return EXIT_FAILED;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "--version") == 0) {
            printf("keel-worker %s\n", KEEL_VERSION);
            return 0;
        }
        usage(strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return strcmp(argv[1], "--help") == 0 ? 0 : EXIT_CONFIG;
    }
    keel_process_memory_setup(); /* before any thread: docs/operations.md, "Memory" */
    /* Block the stop signals first, in every thread to come, so that none is lost. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop, NULL) != 0) {
        perror("keel-worker: pthread_sigmask");
        return EXIT_FAILED;
    }
    settings s;
    int rc = read_settings(&s);
    if (rc == 0)
        rc = start_tracing();
    if (rc == 0)
        rc = serve(&s, &stop);
    keel_versioning_overrides_free(s.overrides, s.n_overrides);
    keel_trace_shutdown(5000); /* what is queued goes out, waiting at most 5 s */
    return rc;
}
