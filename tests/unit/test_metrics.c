/* src/metrics/metrics.c and server.c: rendering, escaping, buckets, caps, and /metrics over HTTP.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "activities/metrics.h"
#include "keel/metrics.h"
#include "temporal/api/enums/v1/command_type.pb-c.h"
#include "worker/worker_metrics.h"

static char *render(keel_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    keel_error err;
    ck_assert_msg(keel_metrics_render(m, &text, &len, &err) == KEEL_OK, "%s", err.message);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

static void expect_line(const char *text, const char *line)
{
    char want[1024];
    snprintf(want, sizeof want, "\n%s\n", line);
    /* The first line has no newline before it. */
    bool first = strncmp(text, line, strlen(line)) == 0 && text[strlen(line)] == '\n';
    /* The text may be long: the series' lines of the same name are what helps. */
    char near[2048] = "";
    const char *brace = strchr(line, '{');
    size_t stem = brace ? (size_t)(brace - line) : strlen(line);
    for (const char *p = text; p && *p && strlen(near) < sizeof near - 300;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (strncmp(p, line, stem) == 0 && n < 280)
            snprintf(near + strlen(near), sizeof near - strlen(near), "%.*s\n", (int)n, p);
        p = eol ? eol + 1 : NULL;
    }
    ck_assert_msg(first || strstr(text, want), "missing line '%s'; lines of that name:\n%s", line,
                  near);
}

static void expect_no(const char *text, const char *part)
{
    ck_assert_msg(strstr(text, part) == NULL, "unexpected '%s' in:\n%s", part, text);
}

START_TEST(counters_and_gauges_render_with_help_and_type)
{
    keel_metrics *m = keel_metrics_new();
    static const char *const labels[] = {"tool", "outcome"};
    keel_error err;
    keel_metric *c =
        keel_metrics_counter(m, "keel_tool_calls_total", "Tool calls.", labels, 2, &err);
    keel_metric *g = keel_metrics_gauge(m, "keel_waiting", "Waiting now.", NULL, 0, &err);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(g);
    const char *ok[] = {"notify", "ok"}, *bad[] = {"notify", "refused"};
    keel_metric_add(c, ok, 1);
    keel_metric_add(c, ok, 2);
    keel_metric_add(c, bad, 1);
    keel_metric_add(c, ok, -5);    /* a counter never goes down */
    keel_metric_add(c, ok, NAN);   /* nor becomes NaN */
    keel_metric_observe(c, ok, 1); /* the wrong kind: ignored */
    keel_metric_set(g, NULL, 7);
    keel_metric_add(g, NULL, -2.5);
    char *text = render(m);
    expect_line(text, "# HELP keel_tool_calls_total Tool calls.");
    expect_line(text, "# TYPE keel_tool_calls_total counter");
    expect_line(text, "keel_tool_calls_total{tool=\"notify\",outcome=\"ok\"} 3");
    expect_line(text, "keel_tool_calls_total{tool=\"notify\",outcome=\"refused\"} 1");
    expect_line(text, "# TYPE keel_waiting gauge");
    expect_line(text, "keel_waiting 4.5");
    expect_line(text, "keel_metrics_dropped_samples_total{metric=\"keel_tool_calls_total\"} 0");
    /* Series in the order they were made. */
    ck_assert(strstr(text, "outcome=\"ok\"") < strstr(text, "outcome=\"refused\""));
    free(text);
    keel_metrics_free(m);
}
END_TEST

START_TEST(label_values_and_help_are_escaped)
{
    keel_metrics *m = keel_metrics_new();
    static const char *const labels[] = {"model"};
    keel_error err;
    keel_metric *c =
        keel_metrics_counter(m, "x_total", "Line one\nback\\slash \"quoted\"", labels, 1, &err);
    const char *v[] = {"a\"b\\c\nd"};
    keel_metric_add(c, v, 1);
    const char *utf8[] = {"modèle-ü"};
    keel_metric_add(c, utf8, 1);
    char *text = render(m);
    expect_line(text, "# HELP x_total Line one\\nback\\\\slash \"quoted\"");
    expect_line(text, "x_total{model=\"a\\\"b\\\\c\\nd\"} 1");
    expect_line(text, "x_total{model=\"modèle-ü\"} 1");
    free(text);
    keel_metrics_free(m);
}
END_TEST

START_TEST(histogram_buckets_are_cumulative_with_inf_sum_and_count)
{
    keel_metrics *m = keel_metrics_new();
    static const char *const labels[] = {"op"};
    static const double bounds[] = {0.1, 1, 10};
    keel_error err;
    keel_metric *h =
        keel_metrics_histogram(m, "lat_seconds", "Latency.", labels, 1, bounds, 3, &err);
    ck_assert_ptr_nonnull(h);
    const char *v[] = {"Poll"};
    keel_metric_observe(h, v, 0.05);
    keel_metric_observe(h, v, 0.1); /* on the bound: le="0.1" (less than or equal) */
    keel_metric_observe(h, v, 5);
    keel_metric_observe(h, v, 100); /* only +Inf */
    keel_metric_observe(h, v, NAN); /* ignored */
    char *text = render(m);
    expect_line(text, "# TYPE lat_seconds histogram");
    expect_line(text, "lat_seconds_bucket{op=\"Poll\",le=\"0.1\"} 2");
    expect_line(text, "lat_seconds_bucket{op=\"Poll\",le=\"1\"} 2");
    expect_line(text, "lat_seconds_bucket{op=\"Poll\",le=\"10\"} 3");
    expect_line(text, "lat_seconds_bucket{op=\"Poll\",le=\"+Inf\"} 4");
    expect_line(text, "lat_seconds_sum{op=\"Poll\"} 105.15");
    expect_line(text, "lat_seconds_count{op=\"Poll\"} 4");
    free(text);
    keel_metrics_free(m);
}
END_TEST

START_TEST(label_combinations_are_capped_and_drops_counted)
{
    keel_metrics *m = keel_metrics_new();
    static const char *const labels[] = {"id"};
    keel_error err;
    keel_metric *c = keel_metrics_counter(m, "ids_total", "Ids.", labels, 1, &err);
    char id[32];
    const char *v[] = {id};
    for (int i = 0; i < KEEL_METRICS_MAX_SERIES + 10; i++) {
        snprintf(id, sizeof id, "wf-%d", i);
        keel_metric_add(c, v, 1);
    }
    /* An existing series still records past the cap. */
    snprintf(id, sizeof id, "wf-0");
    keel_metric_add(c, v, 1);
    char longv[KEEL_METRICS_MAX_LABEL_VALUE + 2];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    const char *too_long[] = {longv}, *not_utf8[] = {"\xff\xfe"};
    keel_metric_add(c, too_long, 1);
    keel_metric_add(c, not_utf8, 1);
    ck_assert_uint_eq(keel_metrics_dropped(m), 12);
    char *text = render(m);
    expect_line(text, "ids_total{id=\"wf-0\"} 2");
    char last[64];
    snprintf(last, sizeof last, "ids_total{id=\"wf-%d\"} 1", KEEL_METRICS_MAX_SERIES - 1);
    expect_line(text, last);
    snprintf(last, sizeof last, "id=\"wf-%d\"", KEEL_METRICS_MAX_SERIES);
    expect_no(text, last);
    expect_no(text, "\xff");
    expect_line(text, "keel_metrics_dropped_samples_total{metric=\"ids_total\"} 12");
    free(text);
    keel_metrics_free(m);
}
END_TEST

START_TEST(registration_checks_names_and_shapes)
{
    keel_metrics *m = keel_metrics_new();
    static const char *const a[] = {"a"}, *const b[] = {"b"}, *const le[] = {"le"},
                             *const dunder[] = {"__x"}, *const twice[] = {"a", "a"};
    static const double bounds[] = {1, 2}, unsorted[] = {2, 1};
    keel_error err;
    keel_metric *c = keel_metrics_counter(m, "c_total", "C.", a, 1, &err);
    ck_assert_ptr_nonnull(c);
    /* The same family again is the same family; another shape under its name is refused. */
    ck_assert_ptr_eq(keel_metrics_counter(m, "c_total", "C.", a, 1, &err), c);
    ck_assert_ptr_null(keel_metrics_counter(m, "c_total", "C.", b, 1, &err));
    ck_assert_int_eq(err.code, KEEL_EEXISTS);
    ck_assert_ptr_null(keel_metrics_gauge(m, "c_total", "C.", a, 1, &err));
    ck_assert_ptr_null(keel_metrics_counter(m, "9bad", "x", NULL, 0, &err));
    ck_assert_int_eq(err.code, KEEL_EINVAL);
    ck_assert_ptr_null(keel_metrics_counter(m, "bad-name", "x", NULL, 0, &err));
    ck_assert_ptr_null(keel_metrics_counter(m, "ok_total", "x", dunder, 1, &err));
    ck_assert_ptr_null(keel_metrics_counter(m, "ok_total", "x", twice, 2, &err));
    ck_assert_ptr_null(keel_metrics_histogram(m, "h", "x", le, 1, bounds, 2, &err));
    ck_assert_ptr_null(keel_metrics_histogram(m, "h", "x", a, 1, unsorted, 2, &err));
    /* Off: no registry, no family, and recording into NULL does nothing. */
    ck_assert_ptr_null(keel_metrics_counter(NULL, "c_total", "C.", a, 1, &err));
    keel_metric_add(NULL, NULL, 1);
    keel_metric_observe(NULL, NULL, 1);
    ck_assert_ptr_null(keel_agent_metrics_new(NULL));
    keel_metrics_free(m);
}
END_TEST

typedef struct hammer_arg {
    keel_metric *c, *h;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *a = p;
    const char *v[] = {"x"};
    for (int i = 0; i < 10000; i++) {
        keel_metric_add(a->c, v, 1);
        keel_metric_observe(a->h, v, 0.5);
    }
    return NULL;
}

START_TEST(recording_from_many_threads_loses_nothing)
{
    keel_metrics *m = keel_metrics_new();
    static const char *const l[] = {"k"};
    keel_error err;
    hammer_arg a = {keel_metrics_counter(m, "n_total", "N.", l, 1, &err),
                    keel_metrics_histogram(m, "t_seconds", "T.", l, 1, keel_metrics_latency_buckets,
                                           keel_metrics_n_latency_buckets, &err)};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, &a);
    for (int i = 0; i < 4; i++) {
        char *text = render(m); /* rendering while others record */
        free(text);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    char *text = render(m);
    expect_line(text, "n_total{k=\"x\"} 40000");
    expect_line(text, "t_seconds_count{k=\"x\"} 40000");
    expect_line(text, "t_seconds_sum{k=\"x\"} 20000");
    free(text);
    keel_metrics_free(m);
}
END_TEST

START_TEST(outcome_labels_come_from_failure_types)
{
    ck_assert_str_eq(keel_agent_metrics_model_outcome(NULL, false, false), "ok");
    ck_assert_str_eq(keel_agent_metrics_model_outcome(NULL, true, false), "refused");
    ck_assert_str_eq(keel_agent_metrics_model_outcome("LlmRateLimited", false, false),
                     "rate_limited");
    ck_assert_str_eq(keel_agent_metrics_model_outcome("LlmQuotaExhausted", false, false), "quota");
    ck_assert_str_eq(keel_agent_metrics_model_outcome("LlmTimeout", false, false), "timeout");
    ck_assert_str_eq(keel_agent_metrics_model_outcome("LlmMalformedResponse", false, false),
                     "malformed");
    ck_assert_str_eq(keel_agent_metrics_model_outcome("Whatever", false, false), "error");
    ck_assert_str_eq(keel_agent_metrics_model_outcome("LlmTimeout", false, true), "cancelled");
    ck_assert_str_eq(keel_agent_metrics_tool_outcome(NULL, NULL, false), "ok");
    ck_assert_str_eq(
        keel_agent_metrics_tool_outcome("ToolInvalidArguments", "invalid_arguments", false),
        "invalid_arguments");
    ck_assert_str_eq(
        keel_agent_metrics_tool_outcome("ToolInvalidArguments", "tool_not_allowed", false),
        "not_granted");
    ck_assert_str_eq(keel_agent_metrics_tool_outcome("ToolRefused", NULL, false), "refused");
    ck_assert_str_eq(keel_agent_metrics_tool_outcome("ToolUnavailable", NULL, false),
                     "unavailable");
}
END_TEST

START_TEST(worker_hooks_record_the_sdk_metrics)
{
    keel_metrics *m = keel_metrics_new();
    ck_assert_ptr_null(keel_worker_metrics_new(NULL, "default", "q"));
    keel_worker_metrics *wm = keel_worker_metrics_new(m, "default", "q");
    ck_assert_ptr_nonnull(wm);
    keel_wm_started(wm, 1, 1, 4, 2, 4);
    keel_wm_wf_poll(wm, true);
    keel_wm_wf_poll(wm, false);
    keel_wm_activity_poll(wm, false);
    keel_wm_wft_begin(wm, "keel.Procurement", 1000, 1250);
    keel_wm_wft_cache(wm, "keel.Procurement", false, 0.002);
    keel_wm_wft_end(wm, "keel.Procurement", 0.01, "NonDeterminismError", 3, 2);
    keel_wm_wft_begin(wm, "keel.Procurement", 0, 0);           /* no stamps: no schedule-to-start */
    keel_wm_wft_end(wm, "keel.Procurement", 0.01, NULL, 3, 2); /* no new evictions */
    keel_wm_workflow_closed(
        wm, "keel.Procurement",
        TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION,
        keel_wm_wall_ms() - 5000);
    keel_wm_workflow_closed(wm, "keel.Procurement",
                            TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_START_TIMER, 1);
    keel_wm_activity_begin(wm, "llm.chat", "keel.Procurement", 2000, 2100);
    char *text = render(m);
    expect_line(text, "temporal_worker_task_slots_used{namespace=\"default\",task_queue=\"q\","
                      "worker_type=\"ActivityWorker\"} 1");
    expect_line(text, "temporal_worker_task_slots_available{namespace=\"default\",task_queue="
                      "\"q\",worker_type=\"ActivityWorker\"} 3");
    free(text);
    keel_wm_activity_end(wm, "llm.chat", "keel.Procurement", 0.5, KEEL_WM_ACTIVITY_FAILED, 2000);
    text = render(m);
    const char *wf = "namespace=\"default\",task_queue=\"q\",worker_type=\"WorkflowWorker\"";
    char line[512];
#define EXPECT(fmt, ...)                                                                           \
    do {                                                                                           \
        snprintf(line, sizeof line, fmt, __VA_ARGS__);                                             \
        expect_line(text, line);                                                                   \
    } while (0)
    EXPECT("temporal_workflow_task_queue_poll_succeed_total{%s} 1", wf);
    EXPECT("temporal_workflow_task_queue_poll_empty_total{%s} 1", wf);
    EXPECT("temporal_workflow_task_schedule_to_start_latency_seconds_sum{%s,workflow_type="
           "\"keel.Procurement\"} 0.25",
           wf);
    EXPECT("temporal_workflow_task_replay_latency_seconds_count{%s,workflow_type="
           "\"keel.Procurement\"} 1",
           wf);
    EXPECT("temporal_workflow_task_execution_failed_total{%s,workflow_type=\"keel.Procurement\","
           "failure_reason=\"NonDeterminismError\"} 1",
           wf);
    EXPECT("temporal_workflow_task_execution_latency_seconds_count{%s,workflow_type="
           "\"keel.Procurement\"} 2",
           wf);
    EXPECT("temporal_sticky_cache_miss_total{%s} 1", wf);
    EXPECT("temporal_sticky_cache_size{%s} 3", wf);
    EXPECT("temporal_sticky_cache_total_forced_eviction_total{%s} 2", wf);
    EXPECT("temporal_workflow_continue_as_new_total{%s,workflow_type=\"keel.Procurement\"} 1", wf);
    EXPECT("temporal_workflow_endtoend_latency_seconds_bucket{%s,workflow_type="
           "\"keel.Procurement\",le=\"10\"} 1",
           wf);
    EXPECT("temporal_worker_task_slots_available{%s} 2", wf);
    EXPECT("temporal_num_pollers{namespace=\"default\",task_queue=\"q\",poller_type=%s} 1",
           "\"sticky_workflow_task\"");
    expect_no(text, "temporal_workflow_completed_total{");
    const char *act = "namespace=\"default\",task_queue=\"q\",worker_type=\"ActivityWorker\","
                      "workflow_type=\"keel.Procurement\",activity_type=\"llm.chat\"";
    EXPECT("temporal_activity_execution_failed_total{%s} 1", act);
    EXPECT("temporal_activity_schedule_to_start_latency_seconds_sum{%s} 0.1", act);
    EXPECT("temporal_worker_task_slots_used{%s} 0",
           "namespace=\"default\",task_queue=\"q\",worker_type=\"ActivityWorker\"");
    expect_no(text, "temporal_activity_succeed_endtoend_latency_seconds_count{");
#undef EXPECT
    free(text);
    keel_worker_metrics_free(wm);
    keel_metrics_free(m);
}
END_TEST

/* ---- the HTTP endpoint ---- */

typedef struct body {
    char *p;
    size_t n;
} body;

static size_t collect(char *data, size_t size, size_t nmemb, void *user)
{
    body *b = user;
    size_t n = size * nmemb;
    char *p = realloc(b->p, b->n + n + 1);
    if (p == NULL)
        return 0;
    memcpy(p + b->n, data, n);
    b->p = p;
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* One request; the status, the body (caller frees) and the Content-Type. */
static long request(int port, const char *method, const char *path, char **out, char *ctype,
                    size_t ctype_n)
{
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    body b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(c);
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ctype)
        snprintf(ctype, ctype_n, "%s", ct ? ct : "");
    curl_easy_cleanup(c);
    if (out)
        *out = b.p;
    else
        free(b.p);
    return status;
}

START_TEST(the_endpoint_serves_metrics_and_refuses_the_rest)
{
    keel_metrics *m = keel_metrics_new();
    keel_error err;
    keel_metric *c = keel_metrics_counter(m, "served_total", "Served.", NULL, 0, &err);
    keel_metric_add(c, NULL, 42);
    keel_metrics_server *s = NULL;
    ck_assert_msg(keel_metrics_server_start(&s, m, "127.0.0.1:0", &err) == KEEL_OK, "%s",
                  err.message);
    int port = keel_metrics_server_port(s);
    ck_assert_int_gt(port, 0);
    char *text = NULL, ctype[128];
    ck_assert_int_eq(request(port, "GET", "/metrics", &text, ctype, sizeof ctype), 200);
    ck_assert_str_eq(ctype, "text/plain; version=0.0.4; charset=utf-8");
    expect_line(text, "served_total 42");
    free(text);
    ck_assert_int_eq(request(port, "HEAD", "/metrics", NULL, NULL, 0), 200);
    ck_assert_int_eq(request(port, "GET", "/", NULL, NULL, 0), 404);
    ck_assert_int_eq(request(port, "GET", "/metrics/x", NULL, NULL, 0), 404);
    ck_assert_int_eq(request(port, "POST", "/metrics", NULL, NULL, 0), 405);
    ck_assert_int_eq(request(port, "DELETE", "/metrics", NULL, NULL, 0), 405);
    /* The port is taken now: a second server says so. */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    keel_metrics_server *again = NULL;
    ck_assert_int_eq(keel_metrics_server_start(&again, m, addr, &err), KEEL_EIO);
    ck_assert_msg(strstr(err.message, "in use"), "%s", err.message);
    keel_metrics_server_free(s);
    keel_metrics_free(m);
}
END_TEST

START_TEST(bad_addresses_are_refused_with_the_reason)
{
    keel_metrics *m = keel_metrics_new();
    keel_metrics_server *s = NULL;
    keel_error err;
    const char *bad[] = {"",
                         "9464",
                         "127.0.0.1:",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:94x",
                         "::1:9464",
                         "no-such-host.invalid:9464"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(keel_metrics_server_start(&s, m, bad[i], &err) == KEEL_EINVAL,
                      "'%s' was accepted", bad[i]);
        ck_assert_ptr_null(s);
        ck_assert_msg(strlen(err.message) > 10, "no reason for '%s'", bad[i]);
    }
    ck_assert_int_eq(keel_metrics_server_start(&s, NULL, "127.0.0.1:0", &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_metrics_server_start(&s, m, "[::1]:0", &err) == KEEL_OK ||
                         err.code == KEEL_EIO,
                     1); /* a machine without IPv6 cannot bind it, and says so */
    keel_metrics_server_free(s);
    keel_metrics_free(m);
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, counters_and_gauges_render_with_help_and_type);
    tcase_add_test(tc, label_values_and_help_are_escaped);
    tcase_add_test(tc, histogram_buckets_are_cumulative_with_inf_sum_and_count);
    tcase_add_test(tc, label_combinations_are_capped_and_drops_counted);
    tcase_add_test(tc, registration_checks_names_and_shapes);
    tcase_add_test(tc, recording_from_many_threads_loses_nothing);
    tcase_add_test(tc, outcome_labels_come_from_failure_types);
    tcase_add_test(tc, worker_hooks_record_the_sdk_metrics);
    tcase_add_test(tc, the_endpoint_serves_metrics_and_refuses_the_rest);
    tcase_add_test(tc, bad_addresses_are_refused_with_the_reason);
    suite_add_tcase(s, tc);
    return s;
}
