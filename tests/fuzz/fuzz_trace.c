/*
 * fuzz_trace - the trace context keel reads from outside (include/keel/trace.h): a traceparent
 * and tracestate (W3C), the _tracer-data payload of a Temporal header (src/trace/trace.h), and
 * OTEL_EXPORTER_OTLP_HEADERS.
 *
 * Input: traceparent, NUL, tracestate (no NUL: the whole input is the traceparent, and also the
 * tracestate, the header payload's JSON and the OTLP headers).
 *
 * Properties: a parsed traceparent is valid, sampled-or-not only (flags 0 or 1), formats back to
 * a traceparent that parses to the same ids, and keeps a tracestate only when it is valid and
 * within KEEL_TRACESTATE_MAX; a context written into a header reads back equal; parsed OTLP
 * headers are HTTP tokens with values free of CR and LF, within the caps.
 */
#include <stdlib.h>
#include <string.h>

#include "converter/payload.h"
#include "fuzz.h"
#include "keel/trace.h"
#include "trace/trace.h"

#define MAX_LEN 16384

static void check_context(const char *tp, const char *ts)
{
    keel_span_context c;
    if (keel_traceparent_parse(tp, ts, &c) != KEEL_OK) {
        if (c.valid)
            fuzz_fail("a refused traceparent left a valid context");
        return;
    }
    if (!c.valid || c.flags > 1)
        fuzz_fail("traceparent '%.80s' parsed to an invalid context (flags %u)", tp, c.flags);
    if (strlen(c.tracestate) > KEEL_TRACESTATE_MAX ||
        (c.tracestate[0] && !keel_tracestate_valid(c.tracestate)))
        fuzz_fail("a tracestate past the checks was kept: '%.80s'", c.tracestate);
    char out[KEEL_TRACEPARENT_LEN + 1];
    if (keel_traceparent_format(&c, out) != KEEL_OK || strlen(out) != KEEL_TRACEPARENT_LEN)
        fuzz_fail("a parsed context does not format");
    keel_span_context back;
    if (keel_traceparent_parse(out, c.tracestate, &back) != KEEL_OK ||
        memcmp(back.trace_id, c.trace_id, 16) != 0 || memcmp(back.span_id, c.span_id, 8) != 0 ||
        back.flags != c.flags || strcmp(back.tracestate, c.tracestate) != 0)
        fuzz_fail("'%s' does not read back as the context it was formatted from", out);
    /* through a Temporal header and back */
    Temporal__Api__Common__V1__Header *h = NULL;
    if (keel_trace_to_header(&h, &c) != KEEL_OK)
        fuzz_fail("a valid context could not be written into a header");
    if (keel_trace_from_header(h, &back) != KEEL_OK || memcmp(back.trace_id, c.trace_id, 16) != 0 ||
        memcmp(back.span_id, c.span_id, 8) != 0 || strcmp(back.tracestate, c.tracestate) != 0)
        fuzz_fail("a context written into a header does not read back");
    protobuf_c_message_free_unpacked((ProtobufCMessage *)h, NULL);
}

/* The input as a _tracer-data payload (json/plain): must never crash, and a context read from
 * it is valid. */
static void check_header(const uint8_t *data, size_t size)
{
    Temporal__Api__Common__V1__Payload p = TEMPORAL__API__COMMON__V1__PAYLOAD__INIT;
    Temporal__Api__Common__V1__Payload__MetadataEntry enc =
        TEMPORAL__API__COMMON__V1__PAYLOAD__METADATA_ENTRY__INIT;
    Temporal__Api__Common__V1__Payload__MetadataEntry *encp = &enc;
    enc.key = "encoding";
    enc.value.data = (uint8_t *)"json/plain";
    enc.value.len = 10;
    p.metadata = &encp;
    p.n_metadata = 1;
    p.data.data = (uint8_t *)data;
    p.data.len = size;
    Temporal__Api__Common__V1__Header__FieldsEntry f =
        TEMPORAL__API__COMMON__V1__HEADER__FIELDS_ENTRY__INIT;
    Temporal__Api__Common__V1__Header__FieldsEntry *fp = &f;
    f.key = KEEL_TRACE_HEADER_KEY;
    f.value = &p;
    Temporal__Api__Common__V1__Header h = TEMPORAL__API__COMMON__V1__HEADER__INIT;
    h.fields = &fp;
    h.n_fields = 1;
    keel_span_context c;
    int rc = keel_trace_from_header(&h, &c);
    if ((rc == KEEL_OK) != c.valid)
        fuzz_fail("keel_trace_from_header returned %d with valid=%d", rc, c.valid);
}

static void check_headers(const char *s)
{
    keel_trace_config c = {0};
    keel_error err;
    if (keel_trace_parse_headers(s, &c, &err) != KEEL_OK) {
        if (c.n_headers != 0)
            fuzz_fail("refused OTLP headers left %zu entries", c.n_headers);
        return;
    }
    if (c.n_headers > KEEL_TRACE_HEADERS_MAX)
        fuzz_fail("%zu OTLP headers, over the cap", c.n_headers);
    for (size_t i = 0; i < c.n_headers; i++) {
        const char *k = c.headers[i].key, *v = c.headers[i].value;
        if (!k[0] || strpbrk(k, " \t\r\n:()<>@,;\\\"/[]?={}") || strpbrk(v, "\r\n"))
            fuzz_fail("OTLP header '%.60s: %.60s' would break the HTTP request", k, v);
    }
    keel_trace_config_clear(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    char *a, *b;
    if (fuzz_split(data, size, &a, &b)) {
        check_context(a, b);
        free(a);
        free(b);
        return 0;
    }
    free(a);
    char *text = fuzz_strndup(data, size);
    check_context(text, text);
    check_context(text, NULL);
    (void)keel_tracestate_valid(text);
    check_header(data, size);
    check_headers(text);
    free(text);
    return 0;
}
