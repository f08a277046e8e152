/* Unit tests of the tracer: W3C trace context, OTEL_* configuration, sampling, the bounded
 * export queue, OTLP encoding (read back with protobuf-c) and the Temporal trace header. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/trace.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include <cjson/cJSON.h>

#include "converter/payload.h"
#include "log/log.h"
#include "trace/trace.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/* A tiny environment: NULL-terminated name/value pairs. */
static const char *table_get(const char *name, void *arg)
{
    const char *const *kv = arg;
    for (; kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static void start_with(const char *const *env)
{
    keel_trace_config c;
    keel_error err;
    ck_assert_int_eq(keel_trace_config_from_env(&c, "keel-test", table_get, (void *)env, &err),
                     KEEL_OK);
    ck_assert(c.enabled);
    ck_assert_int_eq(keel_trace_start(&c, &err), KEEL_OK);
    keel_trace_config_clear(&c);
}

START_TEST(traceparent_round_trips)
{
    keel_span_context c;
    ck_assert_int_eq(keel_traceparent_parse(TP, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", &c),
                     KEEL_OK);
    ck_assert(c.valid && c.remote);
    ck_assert_int_eq(c.flags, 1);
    ck_assert_int_eq(c.trace_id[0], 0x4b);
    ck_assert_int_eq(c.span_id[7], 0xb7);
    ck_assert_str_eq(c.tracestate, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    char out[KEEL_TRACEPARENT_LEN + 1];
    ck_assert_int_eq(keel_traceparent_format(&c, out), KEEL_OK);
    ck_assert_str_eq(out, TP);
    /* not sampled */
    ck_assert_int_eq(
        keel_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", NULL, &c),
        KEEL_OK);
    ck_assert_int_eq(c.flags, 0);
    /* a later version: read by its prefix, extra fields allowed after a '-' */
    ck_assert_int_eq(
        keel_traceparent_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the",
                               NULL, &c),
        KEEL_OK);
    ck_assert_int_eq(keel_traceparent_format(&c, out), KEEL_OK);
    ck_assert_str_eq(out, TP);
}
END_TEST

START_TEST(hostile_traceparents_are_refused)
{
    static const char *const bad[] = {
        "",
        "00",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",  /* long for 00 */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* 00 has no extra */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   /* zero span id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* version ff */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", /* not hex */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* space */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* v1, no '-' */
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    keel_span_context c;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(keel_traceparent_parse(bad[i], NULL, &c) == KEEL_EINVAL, "accepted '%s'",
                      bad[i]);
        ck_assert(!c.valid);
    }
    ck_assert_int_eq(keel_traceparent_parse(NULL, NULL, &c), KEEL_EINVAL);
    /* very long input: refused without reading past the cap */
    char *huge = malloc(100000);
    memset(huge, 'a', 99999);
    huge[99999] = '\0';
    memcpy(huge, TP, strlen(TP));
    huge[55] = '-';
    ck_assert_int_eq(keel_traceparent_parse(huge, NULL, &c), KEEL_EINVAL);
    free(huge);
    char out[KEEL_TRACEPARENT_LEN + 1];
    ck_assert_int_eq(keel_traceparent_format(&c, out), KEEL_EINVAL);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(bad_tracestate_is_dropped_not_the_parent)
{
    keel_span_context c;
    static const char *const bad[] = {
        "Upper=1", "k=", "=v", "k=v=w", "k=\x01", "a@b@c=1", "k@=1", "k=v,K=w",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(!keel_tracestate_valid(bad[i]), "valid: '%s'", bad[i]);
        ck_assert_int_eq(keel_traceparent_parse(TP, bad[i], &c), KEEL_OK);
        ck_assert_str_eq(c.tracestate, "");
    }
    ck_assert(keel_tracestate_valid("a=1, b=2,,tenant@sys=x y"));
    /* 33 members: one too many */
    char many[600] = "";
    for (int i = 0; i < 33; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sk%d=v", i ? "," : "", i);
    ck_assert(!keel_tracestate_valid(many));
    /* longer than the cap */
    char *longs = malloc(KEEL_TRACESTATE_MAX + 10);
    memset(longs, 'v', KEEL_TRACESTATE_MAX + 9);
    memcpy(longs, "k=", 2);
    longs[KEEL_TRACESTATE_MAX + 9] = '\0';
    ck_assert(!keel_tracestate_valid(longs));
    free(longs);
}
END_TEST

START_TEST(configuration_follows_the_otel_variables)
{
    keel_trace_config c;
    keel_error err;
    const char *off[] = {NULL};
    ck_assert_int_eq(keel_trace_config_from_env(&c, "x", table_get, (void *)off, &err), KEEL_OK);
    ck_assert(!c.enabled);
    const char *disabled[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318", "OTEL_SDK_DISABLED",
                              "TRUE", NULL};
    ck_assert_int_eq(keel_trace_config_from_env(&c, "x", table_get, (void *)disabled, &err),
                     KEEL_OK);
    ck_assert(!c.enabled);
    const char *base[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                          "http://h:4318/",
                          "OTEL_EXPORTER_OTLP_HEADERS",
                          "Authorization=Bearer%20abc, x-tenant = t1",
                          "OTEL_RESOURCE_ATTRIBUTES",
                          "deployment.environment=test,service.name=from-resource",
                          "OTEL_TRACES_SAMPLER",
                          "parentbased_traceidratio",
                          "OTEL_TRACES_SAMPLER_ARG",
                          "0.25",
                          NULL};
    ck_assert_int_eq(keel_trace_config_from_env(&c, "x", table_get, (void *)base, &err), KEEL_OK);
    ck_assert(c.enabled);
    ck_assert_str_eq(c.endpoint, "http://h:4318/v1/traces");
    ck_assert_uint_eq(c.n_headers, 2);
    ck_assert_str_eq(c.headers[0].key, "Authorization");
    ck_assert_str_eq(c.headers[0].value, "Bearer abc");
    ck_assert_str_eq(c.headers[1].key, "x-tenant");
    ck_assert_str_eq(c.headers[1].value, "t1");
    ck_assert_int_eq(c.sampler, KEEL_SAMPLER_PARENTBASED_TRACEIDRATIO);
    ck_assert(c.ratio == 0.25);
    bool svc = false;
    for (size_t i = 0; i < c.n_resource; i++)
        if (strcmp(c.resource[i].key, "service.name") == 0) {
            ck_assert_str_eq(c.resource[i].value, "from-resource");
            svc = true;
        }
    ck_assert(svc);
    keel_trace_config_clear(&c);
    /* the traces endpoint wins and is used as given; OTEL_SERVICE_NAME wins over the resource */
    const char *traces[] = {
        "OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "https://c:1/custom",          "OTEL_SERVICE_NAME",   "svc",
        "OTEL_RESOURCE_ATTRIBUTES",    "service.name=other",  NULL};
    ck_assert_int_eq(keel_trace_config_from_env(&c, "x", table_get, (void *)traces, &err), KEEL_OK);
    ck_assert_str_eq(c.endpoint, "https://c:1/custom");
    for (size_t i = 0; i < c.n_resource; i++)
        if (strcmp(c.resource[i].key, "service.name") == 0)
            ck_assert_str_eq(c.resource[i].value, "svc");
    keel_trace_config_clear(&c);
    /* errors name the variable */
    const char *const *const bad[] = {
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://h", NULL},
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h x", NULL},
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h", "OTEL_TRACES_SAMPLER",
                              "sometimes", NULL},
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h", "OTEL_TRACES_SAMPLER",
                              "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "1.5", NULL},
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h",
                              "OTEL_EXPORTER_OTLP_HEADERS", "bad key=v", NULL},
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h",
                              "OTEL_EXPORTER_OTLP_HEADERS", "k=line%0Abreak", NULL},
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h",
                              "OTEL_EXPORTER_OTLP_HEADERS", "novalue", NULL},
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h",
                              "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", NULL},
        (const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://h", "OTEL_BSP_MAX_QUEUE_SIZE",
                              "0", NULL},
    };
    static const char *const names[] = {
        "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",     "OTEL_EXPORTER_OTLP_HEADERS",  "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",  "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_BSP_MAX_QUEUE_SIZE",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(keel_trace_config_from_env(&c, "x", table_get, (void *)bad[i], &err),
                         KEEL_EINVAL);
        ck_assert_msg(strstr(err.message, names[i]) != NULL, "case %zu: %s", i, err.message);
        ck_assert(!c.enabled && c.endpoint == NULL && c.n_headers == 0);
    }
}
END_TEST

START_TEST(headers_are_capped)
{
    keel_trace_config c = {0};
    keel_error err;
    char many[1024] = "";
    for (int i = 0; i < KEEL_TRACE_HEADERS_MAX + 1; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sh%d=v", i ? "," : "", i);
    ck_assert_int_eq(keel_trace_parse_headers(many, &c, &err), KEEL_EINVAL);
    ck_assert_uint_eq(c.n_headers, 0);
    char *huge = malloc(9000);
    memset(huge, 'v', 8999);
    memcpy(huge, "k=", 2);
    huge[8999] = '\0';
    ck_assert_int_eq(keel_trace_parse_headers(huge, &c, &err), KEEL_EINVAL);
    free(huge);
    ck_assert_int_eq(keel_trace_parse_headers("a=1,A=2,%zz=3", &c, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_trace_parse_headers("a=1,A=2,,", &c, &err), KEEL_OK);
    ck_assert_uint_eq(c.n_headers, 1); /* names are case-insensitive: the later one wins */
    ck_assert_str_eq(c.headers[0].value, "2");
    keel_trace_config_clear(&c);
}
END_TEST

static const char *const QUIET[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                                    "http://127.0.0.1:1",
                                    "OTEL_BSP_SCHEDULE_DELAY",
                                    "600000",
                                    "OTEL_BSP_MAX_QUEUE_SIZE",
                                    "4",
                                    "OTEL_EXPORTER_OTLP_TIMEOUT",
                                    "200",
                                    NULL};

START_TEST(off_means_no_spans)
{
    ck_assert(!keel_trace_enabled());
    keel_span *s = keel_span_start("x", NULL);
    ck_assert_ptr_null(s);
    keel_span_set_str(s, "k", "v"); /* all no-ops on NULL */
    keel_span_add_event(s, "e", NULL, NULL);
    keel_span_set_status(s, KEEL_SPAN_ERROR, "m");
    ck_assert(!keel_span_get_context(s).valid);
    keel_span_end(s);
    keel_trace_shutdown(10);
}
END_TEST

START_TEST(samplers_decide_as_specified)
{
    const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                         "http://127.0.0.1:1",
                         "OTEL_TRACES_SAMPLER",
                         "parentbased_always_off",
                         "OTEL_BSP_SCHEDULE_DELAY",
                         "600000",
                         NULL};
    start_with(env);
    keel_span *root = keel_span_start("root", &(keel_span_options){.root = true});
    ck_assert_ptr_nonnull(root); /* made, to carry context, but not sampled */
    ck_assert_int_eq(keel_span_get_context(root).flags, 0);
    keel_span_context parent;
    ck_assert_int_eq(keel_traceparent_parse(TP, NULL, &parent), KEEL_OK);
    keel_span *child = keel_span_start("child", &(keel_span_options){.parent = &parent});
    keel_span_context cc = keel_span_get_context(child);
    ck_assert_int_eq(cc.flags, 1);
    ck_assert(memcmp(cc.trace_id, parent.trace_id, 16) == 0);
    /* the current span is the default parent */
    keel_span_context before = keel_trace_set_current(&cc);
    ck_assert(!before.valid);
    keel_span *grandchild = keel_span_start("grandchild", NULL);
    ck_assert(memcmp(keel_span_get_context(grandchild).trace_id, parent.trace_id, 16) == 0);
    keel_trace_set_current(NULL);
    ck_assert(!keel_trace_current()->valid);
    keel_span_end(grandchild);
    keel_span_end(child);
    keel_span_end(root);
    keel_trace_shutdown(10);

    /* traceidratio decides on the trace id alone: the same id, the same answer */
    const char *ratio[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                           "http://127.0.0.1:1",
                           "OTEL_TRACES_SAMPLER",
                           "traceidratio",
                           "OTEL_TRACES_SAMPLER_ARG",
                           "0.5",
                           "OTEL_BSP_SCHEDULE_DELAY",
                           "600000",
                           NULL};
    start_with(ratio);
    int sampled = 0;
    for (int i = 0; i < 400; i++) {
        uint8_t tid[16];
        char n[16];
        snprintf(n, sizeof n, "%d", i);
        const char *parts[] = {n};
        keel_trace_derive_id(tid, 16, parts, 1);
        keel_span *a = keel_span_start("a", &(keel_span_options){.root = true, .trace_id = tid});
        keel_span *b = keel_span_start("b", &(keel_span_options){.root = true, .trace_id = tid});
        ck_assert_int_eq(keel_span_get_context(a).flags, keel_span_get_context(b).flags);
        sampled += keel_span_get_context(a).flags;
        keel_trace_span_free(a);
        keel_trace_span_free(b);
    }
    ck_assert_msg(sampled > 140 && sampled < 260, "%d of 400 sampled at 0.5", sampled);
    keel_trace_shutdown(10);
}
END_TEST

START_TEST(a_full_queue_drops_and_counts)
{
    start_with(QUIET);
    for (int i = 0; i < 10; i++)
        keel_span_end(keel_span_start("s", NULL));
    /* the queue holds 4; the exporter waits 10 minutes before a partial batch */
    ck_assert_uint_eq(keel_trace_dropped_spans(), 6);
    /* shutdown tries to send the 4 to a port where nobody listens: dropped too */
    keel_trace_shutdown(200);
    ck_assert_uint_eq(keel_trace_dropped_spans(), 10);
    ck_assert_uint_eq(keel_trace_exported_spans(), 0);
    ck_assert(!keel_trace_enabled());
}
END_TEST

static const Opentelemetry__Proto__Common__V1__AnyValue *
find_attr(Opentelemetry__Proto__Common__V1__KeyValue **kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i]->key, key) == 0)
            return kv[i]->value;
    return NULL;
}

START_TEST(otlp_encoding_reads_back)
{
    start_with(QUIET);
    keel_span_context parent;
    ck_assert_int_eq(keel_traceparent_parse(TP, "a=b", &parent), KEEL_OK);
    uint8_t sid[8];
    const char *parts[] = {"run-1", "RunWorkflow"};
    keel_trace_derive_id(sid, 8, parts, 2);
    keel_span *s = keel_span_start("chat gpt-test", &(keel_span_options){.kind = KEEL_SPAN_CLIENT,
                                                                         .parent = &parent,
                                                                         .span_id = sid,
                                                                         .start_ns = 1000});
    keel_span_set_str(s, "gen_ai.request.model", "gpt-test");
    keel_span_set_int(s, "gen_ai.usage.input_tokens", 42);
    keel_span_set_double(s, "keel.cost_usd", 0.5);
    keel_span_set_bool(s, "keel.ledger.reused", true);
    keel_span_set_int(s, "gen_ai.usage.input_tokens", 43); /* replaces */
    const char *reasons[] = {"stop", "tool_calls"};
    keel_span_set_strs(s, "gen_ai.response.finish_reasons", reasons, 2);
    keel_span_add_event(s, "retry", "reason", "429");
    keel_span_set_status(s, KEEL_SPAN_ERROR, "boom");
    keel_trace_span_close(s, 5000);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(keel_trace_encode(&s, 1, &buf, &len), KEEL_OK);
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, len,
                                                                                         buf);
    ck_assert_ptr_nonnull(req);
    ck_assert_uint_eq(req->n_resource_spans, 1);
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[0];
    const Opentelemetry__Proto__Common__V1__AnyValue *svc =
        find_attr(rs->resource->attributes, rs->resource->n_attributes, "service.name");
    ck_assert_ptr_nonnull(svc);
    ck_assert_str_eq(svc->string_value, "keel-test");
    ck_assert_uint_eq(rs->n_scope_spans, 1);
    ck_assert_str_eq(rs->scope_spans[0]->scope->name, "keel");
    ck_assert_uint_eq(rs->scope_spans[0]->n_spans, 1);
    Opentelemetry__Proto__Trace__V1__Span *p = rs->scope_spans[0]->spans[0];
    ck_assert_str_eq(p->name, "chat gpt-test");
    ck_assert_int_eq(p->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
    ck_assert_uint_eq(p->trace_id.len, 16);
    ck_assert(memcmp(p->trace_id.data, parent.trace_id, 16) == 0);
    ck_assert(memcmp(p->span_id.data, sid, 8) == 0);
    ck_assert(memcmp(p->parent_span_id.data, parent.span_id, 8) == 0);
    ck_assert_str_eq(p->trace_state, "a=b");
    ck_assert_uint_eq(p->start_time_unix_nano, 1000);
    ck_assert_uint_eq(p->end_time_unix_nano, 5000);
    ck_assert_uint_eq(p->n_attributes, 5);
    ck_assert_str_eq(
        find_attr(p->attributes, p->n_attributes, "gen_ai.request.model")->string_value,
        "gpt-test");
    ck_assert_int_eq(
        find_attr(p->attributes, p->n_attributes, "gen_ai.usage.input_tokens")->int_value, 43);
    ck_assert(find_attr(p->attributes, p->n_attributes, "keel.cost_usd")->double_value == 0.5);
    ck_assert(find_attr(p->attributes, p->n_attributes, "keel.ledger.reused")->bool_value);
    const Opentelemetry__Proto__Common__V1__AnyValue *fr =
        find_attr(p->attributes, p->n_attributes, "gen_ai.response.finish_reasons");
    ck_assert_uint_eq(fr->array_value->n_values, 2);
    ck_assert_str_eq(fr->array_value->values[1]->string_value, "tool_calls");
    ck_assert_uint_eq(p->n_events, 1);
    ck_assert_str_eq(p->events[0]->name, "retry");
    ck_assert_str_eq(p->events[0]->attributes[0]->value->string_value, "429");
    ck_assert_int_eq(p->status->code,
                     OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
    ck_assert_str_eq(p->status->message, "boom");
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    free(buf);
    keel_trace_span_free(s);
    keel_trace_shutdown(10);
}
END_TEST

START_TEST(attributes_are_capped)
{
    start_with(QUIET);
    keel_span *s = keel_span_start("caps", NULL);
    for (int i = 0; i < 300; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        keel_span_set_int(s, k, i);
    }
    char *big = malloc(10000);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    keel_span_set_str(s, "k0", big); /* an existing key still takes a new value, cut */
    free(big);
    for (int i = 0; i < 300; i++)
        keel_span_add_event(s, "e", NULL, NULL);
    keel_trace_span_close(s, 0);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(keel_trace_encode(&s, 1, &buf, &len), KEEL_OK);
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, len,
                                                                                         buf);
    Opentelemetry__Proto__Trace__V1__Span *p = req->resource_spans[0]->scope_spans[0]->spans[0];
    ck_assert_uint_eq(p->n_attributes, 128);
    ck_assert_uint_eq(p->n_events, 128);
    ck_assert_uint_eq(strlen(find_attr(p->attributes, p->n_attributes, "k0")->string_value), 4096);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    free(buf);
    keel_trace_span_free(s);
    keel_trace_shutdown(10);
}
END_TEST

START_TEST(temporal_header_round_trips)
{
    keel_span_context c, back;
    ck_assert_int_eq(keel_traceparent_parse(TP, "k=v", &c), KEEL_OK);
    Temporal__Api__Common__V1__Header *h = NULL;
    ck_assert_int_eq(keel_trace_from_header(h, &back), KEEL_ENOTFOUND);
    ck_assert_int_eq(keel_trace_to_header(&h, &c), KEEL_OK);
    ck_assert_int_eq(keel_trace_to_header(&h, &c), KEEL_OK); /* replaces, does not add */
    ck_assert_uint_eq(h->n_fields, 1);
    ck_assert_str_eq(h->fields[0]->key, "_tracer-data");
    ck_assert_int_eq(keel_trace_from_header(h, &back), KEEL_OK);
    ck_assert(memcmp(back.trace_id, c.trace_id, 16) == 0);
    ck_assert(memcmp(back.span_id, c.span_id, 8) == 0);
    ck_assert_str_eq(back.tracestate, "k=v");
    /* the payload is the interceptors' json/plain map */
    char *data =
        strndup((const char *)h->fields[0]->value->data.data, h->fields[0]->value->data.len);
    ck_assert_ptr_nonnull(strstr(data, "\"traceparent\":\"" TP "\""));
    free(data);
    /* a header that is not the map, or holds a bad traceparent, is refused */
    protobuf_c_message_free_unpacked((ProtobufCMessage *)h->fields[0]->value, NULL);
    h->fields[0]->value = NULL;
    keel_error err;
    const char *junk[] = {"[1,2]", "{\"traceparent\":7}", "{\"traceparent\":\"00-xyz\"}", "\"s\""};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(
            keel_payload_new_json(junk[i], strlen(junk[i]), "t", &h->fields[0]->value, &err),
            KEEL_OK);
        ck_assert_int_eq(keel_trace_from_header(h, &back), KEEL_EINVAL);
        protobuf_c_message_free_unpacked((ProtobufCMessage *)h->fields[0]->value, NULL);
        h->fields[0]->value = NULL;
    }
    protobuf_c_message_free_unpacked((ProtobufCMessage *)h, NULL);
}
END_TEST

START_TEST(derived_ids_are_stable)
{
    uint8_t a[8], b[8], c[8];
    const char *p1[] = {"run", "7"}, *p2[] = {"run", "8"};
    keel_trace_derive_id(a, 8, p1, 2);
    keel_trace_derive_id(b, 8, p1, 2);
    keel_trace_derive_id(c, 8, p2, 2);
    ck_assert(memcmp(a, b, 8) == 0);
    ck_assert(memcmp(a, c, 8) != 0);
}
END_TEST

/* A one-request OTLP receiver on a loopback port: reads one POST, answers 200, keeps the body. */
typedef struct {
    int fd;
    char head[4096];
    uint8_t *body;
    size_t len;
} receiver;

static void *receive_one(void *arg)
{
    receiver *r = arg;
    int c = accept(r->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[65536];
    size_t n = 0;
    ssize_t got;
    char *end = NULL;
    while (n < sizeof buf - 1 && (got = read(c, buf + n, sizeof buf - 1 - n)) > 0) {
        n += (size_t)got;
        buf[n] = '\0';
        if ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strstr(buf, "Content-Length:");
            size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;
            size_t have = n - (size_t)(end + 4 - buf);
            if (have >= want) {
                snprintf(r->head, sizeof r->head, "%.*s", (int)(end - buf), buf);
                r->len = want;
                r->body = malloc(want ? want : 1);
                memcpy(r->body, end + 4, want);
                break;
            }
        }
    }
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n";
    ssize_t w = write(c, ok, strlen(ok));
    (void)w;
    close(c);
    return NULL;
}

START_TEST(spans_reach_a_collector)
{
    receiver r = {0};
    r.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(r.fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t alen = sizeof a;
    getsockname(r.fd, (struct sockaddr *)&a, &alen);
    ck_assert_int_eq(listen(r.fd, 4), 0);
    pthread_t t;
    pthread_create(&t, NULL, receive_one, &r);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                         url,
                         "OTEL_EXPORTER_OTLP_HEADERS",
                         "x-api-key=s3cret",
                         "OTEL_BSP_SCHEDULE_DELAY",
                         "600000",
                         NULL};
    start_with(env);
    keel_span *s = keel_span_start("exported", NULL);
    keel_span_end(s);
    keel_trace_shutdown(5000); /* sends the queued span */
    pthread_join(t, NULL);
    close(r.fd);
    ck_assert_uint_eq(keel_trace_exported_spans(), 1);
    ck_assert_uint_eq(keel_trace_dropped_spans(), 0);
    ck_assert_ptr_nonnull(strstr(r.head, "POST /v1/traces HTTP/1.1"));
    ck_assert_ptr_nonnull(strstr(r.head, "Content-Type: application/x-protobuf"));
    ck_assert_ptr_nonnull(strstr(r.head, "x-api-key: s3cret"));
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, r.len, r.body);
    ck_assert_ptr_nonnull(req);
    ck_assert_str_eq(req->resource_spans[0]->scope_spans[0]->spans[0]->name, "exported");
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    free(r.body);
}
END_TEST

/* Run keel_log with stderr on a pipe; the record, NUL-terminated, into out. */
static void capture_log(char *out, size_t n, const char *msg, const char *key, const char *value)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    keel_log(KEEL_LOG_WARN, "test", msg, key, value, NULL);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    ssize_t got = read(fds[0], out, n - 1);
    out[got > 0 ? got : 0] = '\0';
    close(fds[0]);
}

START_TEST(log_lines_carry_the_current_span)
{
    char line[8192];
    keel_span_context c;
    ck_assert_int_eq(keel_traceparent_parse(TP, NULL, &c), KEEL_OK);
    keel_log_set_json(false);
    capture_log(line, sizeof line, "no span", "k", "v");
    ck_assert_ptr_null(strstr(line, "trace_id"));
    keel_trace_set_current(&c);
    capture_log(line, sizeof line, "in a span", "k", "v");
    ck_assert_ptr_nonnull(strstr(line, " trace_id=4bf92f3577b34da6a3ce929d0e0e4736"));
    ck_assert_ptr_nonnull(strstr(line, " span_id=00f067aa0ba902b7"));
    keel_log_set_json(true);
    capture_log(line, sizeof line, "quote \" and\nnewline", "bad", "\xff\x01ok");
    keel_trace_set_current(NULL);
    keel_log_set_json(false);
    cJSON *o = cJSON_Parse(line);
    ck_assert_msg(cJSON_IsObject(o), "not JSON: %s", line);
    ck_assert_str_eq(cJSON_GetObjectItem(o, "level")->valuestring, "warn");
    ck_assert_str_eq(cJSON_GetObjectItem(o, "msg")->valuestring, "quote \" and\nnewline");
    ck_assert_str_eq(cJSON_GetObjectItem(o, "bad")->valuestring, "\xef\xbf\xbd\x01ok");
    ck_assert_str_eq(cJSON_GetObjectItem(o, "trace_id")->valuestring,
                     "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_str_eq(cJSON_GetObjectItem(o, "span_id")->valuestring, "00f067aa0ba902b7");
    cJSON_Delete(o);
    /* a record past the cap is cut, and still parses */
    char *big = malloc(10000);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    keel_log_set_json(true);
    capture_log(line, sizeof line, "big", "v", big);
    keel_log_set_json(false);
    free(big);
    ck_assert_uint_le(strlen(line), 4096);
    o = cJSON_Parse(line);
    ck_assert_msg(cJSON_IsObject(o), "not JSON: %.200s", line);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(o, "truncated")));
    cJSON_Delete(o);
}
END_TEST

Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, traceparent_round_trips);
    tcase_add_test(tc, hostile_traceparents_are_refused);
    tcase_add_test(tc, bad_tracestate_is_dropped_not_the_parent);
    tcase_add_test(tc, configuration_follows_the_otel_variables);
    tcase_add_test(tc, headers_are_capped);
    tcase_add_test(tc, off_means_no_spans);
    tcase_add_test(tc, samplers_decide_as_specified);
    tcase_add_test(tc, a_full_queue_drops_and_counts);
    tcase_add_test(tc, otlp_encoding_reads_back);
    tcase_add_test(tc, attributes_are_capped);
    tcase_add_test(tc, temporal_header_round_trips);
    tcase_add_test(tc, derived_ids_are_stable);
    tcase_add_test(tc, spans_reach_a_collector);
    tcase_add_test(tc, log_lines_carry_the_current_span);
    suite_add_tcase(s, tc);
    return s;
}
