/*
 * fuzz_duration - durations as people and Temporal write them (keel_duration_parse/format,
 * include/keel/duration.h), the Retry-After and retry-after-ms headers of a provider's answer
 * (keel_llm_classify_status, activities/llm.h), and protobuf Durations and Timestamps
 * (src/proto/proto.h).
 *
 * Input: the text, also read as numbers (its first 8 bytes as milliseconds, its first 12 as a
 * Duration's seconds and nanos).
 *
 * Properties: a parsed duration formats to a text that parses to the same value, and so does
 * any number of milliseconds in parse's range (0 to INT64_MAX / 1000); a provider's delay is
 * never negative nor above the configured cap.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "activities/llm.h"
#include "fuzz.h"
#include "keel/duration.h"
#include "proto/proto.h"

#define MAX_LEN 4096

/* 2026-11-23T12:00:00Z */
#define NOW_MS 1795435200000LL

static void round_trip(int64_t ms)
{
    char buf[64];
    keel_duration_format(ms, buf, sizeof buf);
    int64_t back;
    keel_error err;
    if (keel_duration_parse(buf, &back, &err) != KEEL_OK)
        fuzz_fail("%" PRId64 " ms formats as '%s', which does not parse: %s", ms, buf, err.message);
    if (back != ms)
        fuzz_fail("%" PRId64 " ms formats as '%s', which parses as %" PRId64, ms, buf, back);
}

static void delay(const char *retry_after, const char *retry_after_ms, int64_t cap)
{
    keel_http_response r = {.status = 429,
                            .body = "{}",
                            .len = 2,
                            .retry_after = (char *)retry_after,
                            .retry_after_ms = (char *)retry_after_ms};
    keel_llm_failure f;
    keel_llm_classify_status(&r, NULL, cap, NOW_MS, &f);
    int64_t limit = cap > 0 ? cap : 1000000000000LL;
    if (f.next_retry_delay_ms < 0 || f.next_retry_delay_ms > limit)
        fuzz_fail("Retry-After '%s' / retry-after-ms '%s' gave a delay of %" PRId64
                  " ms (cap %" PRId64 ")",
                  retry_after ? retry_after : "", retry_after_ms ? retry_after_ms : "",
                  f.next_retry_delay_ms, cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    char *text = fuzz_strndup(data, size);
    int64_t ms;
    keel_error err;
    if (keel_duration_parse(text, &ms, &err) == KEEL_OK) {
        if (ms < 0)
            fuzz_fail("'%s' parsed as a negative duration", text);
        round_trip(ms);
    }

    delay(text, NULL, 120000);
    delay(NULL, text, 120000);
    delay(text, NULL, 0);

    if (size >= 8) {
        int64_t raw;
        memcpy(&raw, data, sizeof raw);
        if (raw >= 0 && raw <= INT64_MAX / 1000) /* parse's range: ~292,000 years */
            round_trip(raw);
        char small[8];
        keel_duration_format(raw, small, sizeof small); /* may be cut, never overrun */
        if (memchr(small, '\0', sizeof small) == NULL)
            fuzz_fail("keel_duration_format left its buffer without a NUL");
    }
    if (size >= 12) {
        Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        memcpy(&d.seconds, data, 8);
        memcpy(&d.nanos, data + 8, 4);
        ts.seconds = d.seconds;
        ts.nanos = d.nanos;
        (void)keel_proto_duration_ms(&d);
        (void)keel_proto_timestamp_ms(&ts);
        Google__Protobuf__Duration back = GOOGLE__PROTOBUF__DURATION__INIT;
        int64_t v;
        memcpy(&v, data, 8);
        keel_proto_duration_set(&back, v);
        if (keel_proto_duration_ms(&back) != v)
            fuzz_fail("keel_proto_duration_set(%" PRId64 ") reads back as %" PRId64, v,
                      keel_proto_duration_ms(&back));
    }
    free(text);
    return 0;
}
