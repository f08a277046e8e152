/*
 * trace - internals of the tracer (include/keel/trace.h is the API), for the worker's hooks and
 * the tests: OTLP encoding of ended spans, and the Temporal header that carries the context.
 */
#ifndef KEEL_TRACE_INTERNAL_H
#define KEEL_TRACE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "keel/trace.h"
#include "temporal/api/common/v1/message.pb-c.h"

/* The Temporal header field the official SDKs' OpenTelemetry interceptors use. Its payload is a
 * json/plain map of the W3C propagator's fields: {"traceparent": "...", "tracestate": "..."}. */
#define KEEL_TRACE_HEADER_KEY "_tracer-data"
/* A _tracer-data payload longer than this is not read. */
#define KEEL_TRACE_HEADER_MAX 4096

/* Encode ended spans as one OTLP ExportTraceServiceRequest with this process's resource into a
 * new buffer *out of *len bytes (caller frees). The spans stay the caller's. KEEL_ENOMEM. */
int keel_trace_encode(keel_span *const *spans, size_t n, uint8_t **out, size_t *len);

/* Like keel_span_end_at() without handing the span to the exporter: for tests of the encoding,
 * which then free it with keel_trace_span_free(). */
void keel_trace_span_close(keel_span *s, int64_t end_ns);
void keel_trace_span_free(keel_span *s);

/* Read the trace context from a Temporal header (NULL: none). KEEL_OK with out valid, or
 * KEEL_ENOTFOUND (no field) / KEEL_EINVAL (a field that does not parse; out invalid). */
int keel_trace_from_header(const Temporal__Api__Common__V1__Header *h, keel_span_context *out);

/* Set the _tracer-data field of *h (created when NULL) to ctx, replacing one that is there.
 * The header and the payload are allocated the way protobuf-c frees them
 * (protobuf_c_message_free_unpacked with the default allocator). KEEL_ENOMEM, KEEL_EINVAL. */
int keel_trace_to_header(Temporal__Api__Common__V1__Header **h, const keel_span_context *ctx);

/* Unix time now, in nanoseconds. */
int64_t keel_trace_now_ns(void);

#endif
