/*
 * Worker Deployments on the real server: keel-worker processes ($KEEL_WORKER) of one deployment
 * in two versions, v1 and v2, made current with keelctl ($KEELCTL). A pinned keel.Approval run
 * started on v1 stays on v1 after v2 becomes current and completes there, while new runs go to
 * v2; then v1 drains and its worker stops. A keel.Procurement run waiting for its manager (the
 * agent activities against the dev stack's PostgreSQL and the offline model server) stays on v1
 * too and orders there. An auto-upgrade run (keel.Approval with a versioning
 * override, on workers embedded in the test, as a program built on libkeel runs them) moves to
 * v2 at its next workflow task. Every deployment name is unique to the run; logs go under
 * build/test-deployment/.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "client/client.h"
#include "harness.h"
#include "keel/keel.h"
#include "proto/proto.h"
#include "transport/transport.h"
#include "workflows/approval.h"

#define LOG_DIR      "build/test-deployment"
#define APPROVAL_IN  "{\"subject\":\"3 desks\",\"requester\":\"rita\",\"approvers\":[\"ana\"]}"
#define APPROVE_JSON "{\"approver\":\"ana\",\"comment\":\"fine\"}"

static keel_client *client;

static void setup(void)
{
    keel_connect_options o;
    keel_error err;
    keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION);
    ck_assert_msg(keel_connect_options_from_env(&o, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_client_new(&client, &o, &err) == KEEL_OK, "%s", err.message);
    mkdir("build", 0755);
    mkdir(LOG_DIR, 0755);
}

static void teardown(void)
{
    keel_client_free(client);
    client = NULL;
}

/* keel-worker as version build_id of deployment (NULL: none) on queue, with more settings as
 * NAME=VALUE pairs (NULL-terminated), stderr to log. No DATABASE_URL (keel.Approval needs no
 * activities) unless the settings name it. */
static pid_t spawn(const char *queue, const char *deployment, const char *build_id, const char *log,
                   const char *const *extra)
{
    const char *bin = getenv("KEEL_WORKER");
    ck_assert_msg(bin != NULL, "KEEL_WORKER is not set (make test-integration sets it)");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("KEEL_TASK_QUEUE", queue, 1);
        setenv("KEEL_SHUTDOWN_GRACE", "2s", 1);
        unsetenv("DATABASE_URL");
        unsetenv("KEEL_NOTIFY_WEBHOOK_URL");
        unsetenv("KEEL_VERSIONING_BEHAVIOR_OVERRIDES");
        if (deployment)
            setenv("KEEL_DEPLOYMENT_NAME", deployment, 1);
        else
            unsetenv("KEEL_DEPLOYMENT_NAME");
        if (build_id)
            setenv("KEEL_BUILD_ID", build_id, 1);
        else
            unsetenv("KEEL_BUILD_ID");
        for (const char *const *e = extra; e && *e; e += 2)
            setenv(e[0], e[1], 1);
        if (freopen(log, "w", stderr) == NULL)
            _exit(126);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static const char *read_log(const char *log)
{
    static char buf[65536];
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

/* The version build_id of deployment as the server describes it (a copy into out), waiting up to
 * timeout_ms for it to appear (the server registers a version when its workers first poll) and,
 * when status is not NULL, for its status (or drainage, with drainage) to read so. */
static void wait_version(const char *deployment, const char *build_id, const char *status,
                         bool drainage, int64_t timeout_ms, keel_deployment_version *out)
{
    keel_error err = {0};
    char last[1100] = "not described yet";
    for (int64_t until = keel_test_now_ms() + timeout_ms; keel_test_now_ms() < until;
         usleep(250 * 1000)) {
        keel_deployment_info d;
        if (keel_client_deployment_describe(client, deployment, &d, &err) != KEEL_OK) {
            snprintf(last, sizeof last, "%s", err.message);
            continue;
        }
        for (size_t i = 0; i < d.n_versions; i++) {
            const keel_deployment_version *v = &d.versions[i];
            if (strcmp(v->build_id, build_id) != 0)
                continue;
            snprintf(last, sizeof last, "status %s, drainage %s", v->status, v->drainage);
            if (status == NULL || strcmp(drainage ? v->drainage : v->status, status) == 0) {
                *out = *v;
                out->build_id = NULL; /* freed with d */
                keel_deployment_info_dispose(&d);
                return;
            }
        }
        keel_deployment_info_dispose(&d);
    }
    ck_abort_msg("version %s of %s never had %s %s within %lld ms: %s", build_id, deployment,
                 drainage ? "drainage" : "status", status ? status : "(any)", (long long)timeout_ms,
                 last);
}

/* The build ids and identities of the run's WorkflowTaskCompleted events, in order, as
 * "v1@identity v1@identity ..." into out; their versioning behaviours must all be `behavior`. */
static void task_versions(const char *id, const char *behavior, char *out, size_t n)
{
    char *history;
    size_t len;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &history, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    cJSON *h = cJSON_ParseWithLength(history, len);
    free(history);
    ck_assert_ptr_nonnull(h);
    out[0] = '\0';
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(h, "events"))
    {
        const cJSON *a =
            cJSON_GetObjectItemCaseSensitive(e, "workflowTaskCompletedEventAttributes");
        if (a == NULL)
            continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, "deploymentVersion");
        const char *build = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "buildId"));
        const char *who = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "identity"));
        const char *b =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "versioningBehavior"));
        ck_assert_msg(b && strcmp(b, behavior) == 0, "%s: a task completed with behaviour %s", id,
                      b ? b : "(none)");
        snprintf(out + strlen(out), n - strlen(out), "%s%s@%s", out[0] ? " " : "",
                 build ? build : "-", who ? who : "-");
    }
    cJSON_Delete(h);
}

static void start_run(const char *type, const char *queue, const char *id, const char *input)
{
    keel_workflow_start_options so;
    keel_workflow_start_options_init(&so, KEEL_WORKFLOW_START_OPTIONS_VERSION);
    so.workflow_id = id;
    so.workflow_type = type;
    so.task_queue = queue;
    so.input_json = input;
    keel_error err;
    ck_assert_msg(keel_client_workflow_start(client, &so, NULL, &err) == KEEL_OK, "%s",
                  err.message);
}

static void start_approval(const char *queue, const char *id)
{
    start_run("keel.Approval", queue, id, APPROVAL_IN);
}

/* Wait until the run has had `tasks` workflow tasks completed (it waits for approval then). */
static void wait_tasks(const char *id, int tasks, const char *behavior)
{
    char seen[1024] = "";
    for (int64_t until = keel_test_now_ms() + 30000; keel_test_now_ms() < until;
         usleep(200 * 1000)) {
        task_versions(id, behavior, seen, sizeof seen);
        int n = seen[0] ? 1 : 0;
        for (const char *p = seen; (p = strchr(p, ' ')) != NULL; p++)
            n++;
        if (n >= tasks)
            return;
    }
    ck_abort_msg("%s: fewer than %d workflow tasks completed: %s", id, tasks, seen);
}

static void approve_and_finish(const char *id)
{
    keel_error err;
    ck_assert_msg(keel_client_workflow_signal(client, id, NULL, "approve", APPROVE_JSON, &err) ==
                      KEEL_OK,
                  "%s", err.message);
    keel_workflow_outcome out;
    ck_assert_msg(keel_client_workflow_result(client, id, NULL, 30000, &out, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(out.status, KEEL_WORKFLOW_STATUS_COMPLETED);
    ck_assert_ptr_nonnull(strstr(out.result_json, "\"approved\""));
    keel_workflow_outcome_dispose(&out);
}

/* Every completed task of the run on version `build` ("v1"), by a worker whose identity ends in
 * "@<build>" (keel-worker names itself <pid>@<host>@<KEEL_BUILD_ID>). */
static void expect_all_on(const char *id, const char *behavior, const char *build)
{
    char seen[1024];
    task_versions(id, behavior, seen, sizeof seen);
    ck_assert_msg(seen[0], "%s: no completed workflow task", id);
    char head[64], tail[64];
    snprintf(head, sizeof head, "%s@", build);
    snprintf(tail, sizeof tail, "@%s", build);
    size_t bl = strlen(build);
    for (char *p = seen; p;) {
        char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        ck_assert_msg(len > 2 * bl + 1 && strncmp(p, head, bl + 1) == 0 &&
                          strncmp(p + len - bl - 1, tail, bl + 1) == 0,
                      "%s: a task completed off %s: %s", id, build, seen);
        p = end ? end + 1 : NULL;
    }
}

/* SetWorkerDeploymentCurrentVersion returns once the deployment records the change; the task
 * queue's partitions learn it a moment later. Start short probe runs (terminated after their
 * first task) until one starts on `build`, for at most 30 s; how long it took goes to stderr. */
static void wait_routing(const char *queue, const char *deployment, const char *behavior,
                         const char *build)
{
    int64_t began = keel_test_now_ms();
    char seen[1024] = "";
    for (int i = 0; keel_test_now_ms() < began + 30000; i++) {
        char probe[192];
        snprintf(probe, sizeof probe, "%s-probe-%d", deployment, i);
        start_approval(queue, probe);
        wait_tasks(probe, 1, behavior);
        task_versions(probe, behavior, seen, sizeof seen);
        keel_error err;
        ck_assert_msg(keel_client_workflow_terminate(client, probe, NULL, "routing probe", &err) ==
                          KEEL_OK,
                      "%s", err.message);
        if (strncmp(seen, build, strlen(build)) == 0 && seen[strlen(build)] == '@') {
            fprintf(stderr, "deployment: new runs reached %s %lld ms after set-current\n", build,
                    (long long)(keel_test_now_ms() - began));
            return;
        }
        usleep(200 * 1000);
    }
    ck_abort_msg("new runs of %s never started on %s within 30 s: last %s", queue, build, seen);
}

/* keelctl `args` (a set-current or set-ramping), repeated for at most 30 s while the server
 * refuses it because the version's workers have not yet polled every task queue (workflow and
 * activity) that the current version's do: the server learns of each queue type at that type's
 * first poll, which on a busy machine or PostgreSQL can come seconds after the version exists. */
static void keelctl_when_queues_known(const char *args, char *out, size_t n)
{
    int64_t until = keel_test_now_ms() + 30000;
    while (keel_test_keelctl(args, out, n) != 0) {
        ck_assert_msg(strstr(out, "missing active task queues") != NULL &&
                          keel_test_now_ms() < until,
                      "keelctl %s: %s", args, out);
        usleep(250 * 1000);
    }
}

/* ---- a procurement run (the agent activities: PostgreSQL and the offline model server) ---- */

#define REQUESTER "alex.engineer@example.com"
#define LAPTOPS_4 "Please order 4 laptops (14-inch, 16 GB RAM) for the new engineers."

/* The first value of a query with up to two parameters (a new string; NULL for no row). */
static char *sql(const char *query, const char *a, const char *b)
{
    const char *url = getenv("DATABASE_URL");
    ck_assert_msg(url && url[0], "DATABASE_URL is not set: eval \"$(tools/devstack env)\"");
    PGconn *conn = PQconnectdb(url);
    ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
    const char *p[] = {a, b};
    PGresult *r = PQexecParams(conn, query, b ? 2 : a ? 1 : 0, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    char *value = ok && st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                      ? strdup(PQgetvalue(r, 0, 0))
                      : NULL;
    char problem[512];
    snprintf(problem, sizeof problem, "%s", ok ? "" : PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(conn);
    ck_assert_msg(ok, "%s: %s", query, problem);
    return value;
}

/* A cost centre of the run's own with a budget, a manager m-<cc> and a director d-<cc>, as
 * tests/integration/test_procurement.c makes them. The manager's address into mgr. */
static void make_org(char *cc, size_t ncc, char *mgr, size_t nmgr)
{
    char dir[160];
    keel_test_unique(cc, ncc, "CC-D");
    snprintf(mgr, nmgr, "m-%s@example.com", cc);
    snprintf(dir, sizeof dir, "d-%s@example.com", cc);
    free(sql("INSERT INTO cost_centers (id, name, owner) VALUES ($1, 'Deployment test', $2)", cc,
             dir));
    free(sql("INSERT INTO budgets (cost_center, period, amount_usd) VALUES ($1, "
             "proc_current_period(), 20000)",
             cc, NULL));
    free(sql("INSERT INTO approvers (person, name, role, cost_center, limit_usd, delegate) VALUES "
             "($1, 'Test Director', 'director', $2, 50000, 'chloe.cfo@example.com')",
             dir, cc));
    free(sql("INSERT INTO approvers (person, name, role, cost_center, limit_usd, delegate) VALUES "
             "($1, 'Test Manager', 'manager', $2, 10000, 'd-' || $2 || '@example.com')",
             mgr, cc));
}

/* The settings a keel-worker needs for the agent activities (static storage). */
static const char *const *agent_settings(void)
{
    static char base[300];
    snprintf(base, sizeof base, "%s/v1", keel_test_model_server());
    static const char *settings[] = {"DATABASE_URL",
                                     NULL,
                                     "OPENAI_BASE_URL",
                                     base,
                                     "OPENAI_API_KEY",
                                     "sk-keel-test-0123456789abcdef",
                                     "KEEL_MODEL",
                                     "keel-scripted-small",
                                     "KEEL_MODEL_STRONG",
                                     "keel-scripted-large",
                                     NULL};
    settings[1] = getenv("DATABASE_URL");
    ck_assert_msg(settings[1] && settings[1][0], "DATABASE_URL is not set");
    return settings;
}

/* Query the run's status until it holds text, within 60 s. */
static void status_until(const char *id, const char *text)
{
    char *answer = keel_test_query_until(client, id, "status", text, 60000);
    ck_assert_msg(answer != NULL, "status of %s never held %s", id, text);
    free(answer);
}

/* Every activity of the run was started by a worker whose identity ends in "@<build>". */
static void activities_on(const char *id, const char *build)
{
    char *history;
    size_t len;
    keel_error err;
    ck_assert_msg(keel_client_workflow_history(client, id, NULL, KEEL_HISTORY_JSON, &history, &len,
                                               &err) == KEEL_OK,
                  "%s", err.message);
    cJSON *h = cJSON_ParseWithLength(history, len);
    free(history);
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(h, "events"))
    {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "activityTaskStartedEventAttributes");
        if (a == NULL)
            continue;
        const char *who = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "identity"));
        size_t wl = who ? strlen(who) : 0, bl = strlen(build);
        ck_assert_msg(wl > bl && who[wl - bl - 1] == '@' && strcmp(who + wl - bl, build) == 0,
                      "%s: an activity ran on %s, not %s", id, who ? who : "?", build);
        n++;
    }
    cJSON_Delete(h);
    ck_assert_msg(n > 0, "%s ran no activity", id);
}

START_TEST(a_pinned_run_finishes_on_v1_while_new_runs_go_to_v2_then_v1_drains)
{
    char deployment[96], queue[128], log1[160], log2[160], out[4096], args[512];
    keel_test_unique(deployment, sizeof deployment, "keel-deploy");
    snprintf(queue, sizeof queue, "%s-q", deployment);
    snprintf(log1, sizeof log1, LOG_DIR "/%s-v1.log", deployment);
    snprintf(log2, sizeof log2, LOG_DIR "/%s-v2.log", deployment);

    /* v1 polls (with the agent activities); once the server knows it, it becomes current. */
    ck_assert_msg(keel_test_keelctl("db seed", out, sizeof out) == 0, "%s", out);
    const char *const *agent = agent_settings();
    pid_t v1 = spawn(queue, deployment, "v1", log1, agent);
    keel_deployment_version v;
    wait_version(deployment, "v1", NULL, false, 20000, &v);
    ck_assert_msg(strstr(read_log(log1), "msg=\"versioned worker\"") != NULL, "%s", read_log(log1));
    ck_assert_ptr_nonnull(strstr(read_log(log1), "keel.Approval=pinned"));
    ck_assert_ptr_nonnull(strstr(read_log(log1), "keel.BatchProcurement=auto-upgrade"));
    snprintf(args, sizeof args, "deployment set-current %s v1", deployment);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    wait_version(deployment, "v1", "current", false, 10000, &v);

    /* The pinned run starts on v1 and waits for approval there. */
    char pinned[160], fresh[160];
    snprintf(pinned, sizeof pinned, "%s-pinned", deployment);
    snprintf(fresh, sizeof fresh, "%s-fresh", deployment);
    start_approval(queue, pinned);
    wait_tasks(pinned, 1, "VERSIONING_BEHAVIOR_PINNED");
    expect_all_on(pinned, "VERSIONING_BEHAVIOR_PINNED", "v1");
    /* So does a procurement run: its agent picks a quote on v1 and it waits for the manager. */
    char cc[64], mgr[160], order[160];
    make_org(cc, sizeof cc, mgr, sizeof mgr);
    snprintf(order, sizeof order, "%s-order", deployment);
    cJSON *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "request", LAPTOPS_4);
    cJSON_AddStringToObject(in, "requester", REQUESTER);
    cJSON_AddStringToObject(in, "cost_center", cc);
    char *input = cJSON_PrintUnformatted(in);
    cJSON_Delete(in);
    start_run("keel.Procurement", queue, order, input);
    free(input);
    keel_error err;
    status_until(order, "{\"stage\":\"approval\"");
    expect_all_on(order, "VERSIONING_BEHAVIOR_PINNED", "v1");

    /* v2 comes up; ramping first (and ended), then current, all through keelctl. */
    pid_t v2 = spawn(queue, deployment, "v2", log2, agent);
    wait_version(deployment, "v2", NULL, false, 20000, &v);
    snprintf(args, sizeof args, "deployment set-ramping %s v2 25", deployment);
    keelctl_when_queues_known(args, out, sizeof out);
    snprintf(args, sizeof args, "--json deployment describe %s", deployment);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"rampingBuildId\": \"v2\"") &&
                      strstr(out, "\"rampingPercentage\": 25"),
                  "%s", out);
    snprintf(args, sizeof args, "deployment unset-ramping %s", deployment);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    snprintf(args, sizeof args, "deployment set-current %s v2", deployment);
    keelctl_when_queues_known(args, out, sizeof out);
    snprintf(args, sizeof args, "deployment describe %s", deployment);
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "Current         v2") && strstr(out, "Ramping         -"), "%s", out);
    snprintf(args, sizeof args, "deployment list");
    ck_assert_msg(keel_test_keelctl(args, out, sizeof out) == 0, "%s", out);
    char line[256];
    snprintf(line, sizeof line, "%s current=v2", deployment);
    ck_assert_msg(strstr(out, line) != NULL, "%s not in %s", line, out);
    /* v1 still has an open pinned run: it is draining, not drained. */
    wait_version(deployment, "v1", "draining", false, 20000, &v);

    /* New runs go to v2; the pinned run's remaining tasks stay on v1, and it completes. */
    wait_routing(queue, deployment, "VERSIONING_BEHAVIOR_PINNED", "v2");
    start_approval(queue, fresh);
    wait_tasks(fresh, 1, "VERSIONING_BEHAVIOR_PINNED");
    expect_all_on(fresh, "VERSIONING_BEHAVIOR_PINNED", "v2");
    approve_and_finish(pinned);
    expect_all_on(pinned, "VERSIONING_BEHAVIOR_PINNED", "v1");
    wait_tasks(pinned, 2, "VERSIONING_BEHAVIOR_PINNED");
    /* The manager approves the procurement run: it orders, every task and activity on v1. */
    char approval[256];
    snprintf(approval, sizeof approval, "{\"approver\":\"%s\",\"comment\":\"ok\"}", mgr);
    ck_assert_msg(keel_client_workflow_signal(client, order, NULL, "approve", approval, &err) ==
                      KEEL_OK,
                  "%s", err.message);
    keel_workflow_outcome outcome;
    ck_assert_msg(keel_client_workflow_result(client, order, NULL, 90000, &outcome, &err) ==
                      KEEL_OK,
                  "%s", err.message);
    ck_assert_msg(outcome.status == KEEL_WORKFLOW_STATUS_COMPLETED && outcome.result_json &&
                      strstr(outcome.result_json, "\"outcome\":\"ordered\""),
                  "%s", outcome.result_json ? outcome.result_json : outcome.failure_message);
    keel_workflow_outcome_dispose(&outcome);
    expect_all_on(order, "VERSIONING_BEHAVIOR_PINNED", "v1");
    activities_on(order, "v1");
    char *pos = sql("SELECT count(*) FROM purchase_orders WHERE cost_center = $1", cc, NULL);
    ck_assert_msg(pos && strcmp(pos, "1") == 0, "purchase orders for %s: %s", cc, pos);
    free(pos);

    /* No pinned run is open on v1 any more: the server reports it drained, and its worker stops
     * cleanly. The dev stack's dynamic config has the server count every 5 s, after a 5 s grace
     * (tools/devstack.d/dynamicconfig.yaml); a server with the defaults (3 minutes each) takes up
     * to about 6 minutes, which the wait allows rather than fail on a slower but correct server. */
    int64_t began = keel_test_now_ms();
    wait_version(deployment, "v1", "drained", false, 420000, &v);
    ck_assert_str_eq(v.drainage, "drained");
    fprintf(stderr, "deployment: v1 reported drained %lld ms after its last run closed\n",
            (long long)(keel_test_now_ms() - began));
    ck_assert_int_eq(kill(v1, SIGTERM), 0);
    ck_assert_int_eq(keel_test_wait_exit(v1, 20), 0);
    ck_assert_ptr_nonnull(strstr(read_log(log1), "workflow_tasks_failed=0"));

    approve_and_finish(fresh);
    expect_all_on(fresh, "VERSIONING_BEHAVIOR_PINNED", "v2");
    ck_assert_int_eq(kill(v2, SIGTERM), 0);
    ck_assert_int_eq(keel_test_wait_exit(v2, 20), 0);
    ck_assert_ptr_nonnull(strstr(read_log(log2), "workflow_tasks_failed=0"));
}
END_TEST

/* A worker embedded in the test, version build of deployment, serving keel.Approval with an
 * override that makes it auto-upgrade. */
static keel_worker *embedded(const char *queue, const char *deployment, const char *build)
{
    static const keel_workflow_type *const types[] = {&keel_approval_workflow};
    static const keel_versioning_override over[] = {
        {"keel.Approval", KEEL_VERSIONING_AUTO_UPGRADE}};
    keel_worker_options w = KEEL_WORKER_OPTIONS_INIT;
    w.task_queue = queue;
    w.workflows = types;
    w.n_workflows = 1;
    w.shutdown_grace_ms = 500;
    w.heartbeat_interval_ms = 1000;
    w.identity = build; /* the history says which version answered */
    w.deployment_name = deployment;
    w.build_id = build;
    w.use_versioning = true;
    w.versioning_overrides = over;
    w.n_versioning_overrides = 1;
    keel_worker *worker = NULL;
    keel_error err;
    ck_assert_msg(keel_worker_new(&worker, client, &w, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_worker_start(worker, &err) == KEEL_OK, "%s", err.message);
    return worker;
}

/* Wait until the server's list of workers on queue (ListWorkers: their heartbeats) has one of
 * identity `build` reporting deployment version deployment/build. */
static void heartbeat_reports(const char *queue, const char *deployment, const char *build)
{
    keel_transport *t = keel_client_transport(client);
    char query[256], last[256] = "no worker listed";
    snprintf(query, sizeof query, "TaskQueue=\"%s\"", queue);
    for (int64_t until = keel_test_now_ms() + 15000; keel_test_now_ms() < until;
         usleep(250 * 1000)) {
        Temporal__Api__Workflowservice__V1__ListWorkersRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__LIST_WORKERS_REQUEST__INIT;
        req.namespace_ = (char *)keel_transport_namespace(t);
        req.page_size = 10;
        req.query = query;
        Temporal__Api__Workflowservice__V1__ListWorkersResponse *resp = NULL;
        keel_call_options co = {.retry = true, .namespace = req.namespace_};
        keel_error err;
        ck_assert_msg(keel_transport_call(
                          t, ((keel_rpc){KEEL_WORKFLOW_SERVICE, "ListWorkers"}),
                          (ProtobufCMessage *)&req,
                          &temporal__api__workflowservice__v1__list_workers_response__descriptor,
                          (ProtobufCMessage **)&resp, &co, &err) == KEEL_OK,
                      "%s", err.message);
        bool found = false;
        for (size_t i = 0; i < resp->n_workers; i++) {
            const Temporal__Api__Worker__V1__WorkerListInfo *hb = resp->workers[i];
            if (hb == NULL || strcmp(hb->worker_identity, build) != 0)
                continue;
            const Temporal__Api__Deployment__V1__WorkerDeploymentVersion *v =
                hb->deployment_version;
            snprintf(last, sizeof last, "%s reports %s/%s", build,
                     v ? v->deployment_name : "(none)", v ? v->build_id : "(none)");
            found =
                v && strcmp(v->deployment_name, deployment) == 0 && strcmp(v->build_id, build) == 0;
        }
        protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
        if (found)
            return;
    }
    ck_abort_msg("no heartbeat of %s on %s reported version %s/%s: %s", build, queue, deployment,
                 build, last);
}

START_TEST(an_auto_upgrade_run_moves_to_v2_at_its_next_task)
{
    char deployment[96], queue[128], id[160];
    keel_test_unique(deployment, sizeof deployment, "keel-deploy-auto");
    snprintf(queue, sizeof queue, "%s-q", deployment);
    snprintf(id, sizeof id, "%s-run", deployment);
    keel_worker *v1 = embedded(queue, deployment, "v1");
    keel_deployment_version v;
    keel_error err;
    wait_version(deployment, "v1", NULL, false, 20000, &v);
    ck_assert_msg(keel_client_deployment_set_current(client, deployment, "v1", false, &err) ==
                      KEEL_OK,
                  "%s", err.message);
    start_approval(queue, id);
    wait_tasks(id, 1, "VERSIONING_BEHAVIOR_AUTO_UPGRADE");
    char seen[1024];
    task_versions(id, "VERSIONING_BEHAVIOR_AUTO_UPGRADE", seen, sizeof seen);
    ck_assert_str_eq(seen, "v1@v1");

    keel_worker *v2 = embedded(queue, deployment, "v2");
    wait_version(deployment, "v2", NULL, false, 20000, &v);
    heartbeat_reports(queue, deployment, "v1");
    heartbeat_reports(queue, deployment, "v2");
    ck_assert_msg(keel_client_deployment_set_current(client, deployment, "v2", false, &err) ==
                      KEEL_OK,
                  "%s", err.message);
    wait_version(deployment, "v2", "current", false, 10000, &v);
    wait_routing(queue, deployment, "VERSIONING_BEHAVIOR_AUTO_UPGRADE", "v2");
    /* v1 keeps polling. The run is cached on v1's sticky queue, whose partition learns the new
     * current version a moment after the normal queue does (until then the server may hand it
     * one more task there). Signals that the approval only notes (no such approver) make tasks
     * until one runs on v2, within 30 s; from then on every task is v2's. */
    int64_t began = keel_test_now_ms(), tasks = 1;
    while (strstr(seen, "v2@v2") == NULL) {
        ck_assert_msg(keel_test_now_ms() < began + 30000, "never moved to v2: %s", seen);
        ck_assert_msg(keel_client_workflow_signal(client, id, NULL, "approve",
                                                  "{\"approver\":\"mallory\"}", &err) == KEEL_OK,
                      "%s", err.message);
        wait_tasks(id, (int)++tasks, "VERSIONING_BEHAVIOR_AUTO_UPGRADE");
        task_versions(id, "VERSIONING_BEHAVIOR_AUTO_UPGRADE", seen, sizeof seen);
    }
    fprintf(stderr,
            "deployment: the auto-upgrade run moved to v2 at task %lld (%lld ms after "
            "new runs did): %s\n",
            (long long)tasks, (long long)(keel_test_now_ms() - began), seen);
    approve_and_finish(id);
    task_versions(id, "VERSIONING_BEHAVIOR_AUTO_UPGRADE", seen, sizeof seen);
    const char *first_v2 = strstr(seen, "v2@v2");
    ck_assert_msg(strncmp(seen, "v1@v1 ", 6) == 0 && first_v2 && strstr(first_v2, "v1@") == NULL,
                  "tasks: %s", seen);
    keel_worker_free(v1);
    keel_worker_free(v2);
}
END_TEST

START_TEST(bad_deployment_settings_stop_keel_worker_and_keelctl)
{
    char log[160], out[2048];
    snprintf(log, sizeof log, LOG_DIR "/bad-settings-%ld.log", (long)getpid());
    static const struct {
        const char *name, *build, *extra_name, *extra_value, *setting, *text;
    } cases[] = {
        {"a.b", "v1", NULL, NULL, "KEEL_DEPLOYMENT_NAME", "'.' or ':'"},
        {"shop", NULL, NULL, NULL, "KEEL_BUILD_ID", "needs a build id"},
        {"shop", "__v1", NULL, NULL, "KEEL_BUILD_ID", "must not start with"},
        {"shop", "v1", "KEEL_VERSIONING_BEHAVIOR_OVERRIDES", "keel.Approval=sometimes",
         "KEEL_VERSIONING_BEHAVIOR_OVERRIDES", "'sometimes'"},
        {"shop", "v1", "KEEL_VERSIONING_BEHAVIOR_OVERRIDES", "keel.Nope=pinned",
         "KEEL_VERSIONING_BEHAVIOR_OVERRIDES", "keel.Nope"},
        {NULL, NULL, "KEEL_VERSIONING_BEHAVIOR_OVERRIDES", "keel.Approval=pinned",
         "KEEL_VERSIONING_BEHAVIOR_OVERRIDES", "needs KEEL_DEPLOYMENT_NAME"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *extra[] = {cases[i].extra_name, cases[i].extra_value, NULL};
        pid_t pid =
            spawn("q", cases[i].name, cases[i].build, log, cases[i].extra_name ? extra : NULL);
        ck_assert_int_eq(keel_test_wait_exit(pid, 15), 2);
        char setting[128];
        snprintf(setting, sizeof setting, "setting=%s", cases[i].setting);
        ck_assert_msg(strstr(read_log(log), setting) && strstr(read_log(log), cases[i].text),
                      "case %zu: %s", i, read_log(log));
    }
    unlink(log);
    static const struct {
        const char *args, *text;
    } bad[] = {
        {"deployment set-ramping shop v2 101", "from 0 to 100"},
        {"deployment set-ramping shop v2 ten", "from 0 to 100"},
        {"deployment set-ramping shop v2", "usage"},
        {"deployment set-current a:b v2", "'.' or ':'"},
        {"deployment set-current shop __x", "\"__\""},
        {"deployment describe", "usage"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(keel_test_keelctl(bad[i].args, out, sizeof out), 2);
        ck_assert_msg(strstr(out, bad[i].text) != NULL, "%s: %s", bad[i].args, out);
    }
    /* A deployment the server does not know. */
    ck_assert_int_eq(
        keel_test_keelctl("deployment describe keel-no-such-deployment-x", out, sizeof out), 1);
}
END_TEST

Suite *deployment_suite(void)
{
    Suite *s = suite_create("deployment");
    TCase *tc = tcase_create("versions");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, bad_deployment_settings_stop_keel_worker_and_keelctl);
    tcase_add_test(tc, an_auto_upgrade_run_moves_to_v2_at_its_next_task);
    tcase_add_test(tc, a_pinned_run_finishes_on_v1_while_new_runs_go_to_v2_then_v1_drains);
    suite_add_tcase(s, tc);
    return s;
}
