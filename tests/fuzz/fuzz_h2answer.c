/*
 * fuzz_h2answer - what a server sends over HTTP/2, as keel's transport reads it: the bytes go
 * through nghttp2 and keel's callbacks (headers, DATA, stream close, GOAWAY, PING) to one call's
 * outcome, by keel_transport_answer_bytes() (src/transport/transport.h), which sets the session
 * and the call up as a connection and an attempt do, without a socket or a thread.
 *
 * Input: the server's side of the connection from its first byte: its SETTINGS (the server's
 * connection preface), then frames for stream 1 (HEADERS, CONTINUATION, DATA, trailers,
 * RST_STREAM) and for the connection (SETTINGS, PING, GOAWAY, WINDOW_UPDATE). The same bytes are
 * fed twice: all at once, and in pieces of 1-16 bytes (1 + the last byte % 16).
 *
 * Properties: the outcome is the same both ways (code, message, status, failure type, bytes):
 * how reads split the bytes changes nothing (but two errors may race: may_race() below); it is
 * exactly one of KEEL_OK with a message, or an error with no message, whose code is the error's,
 * whose text starts with the RPC ("GetSystemInfo to the server"), whose grpc_status is none or
 * 1-99, and whose failure type is a short name (NUL-terminated, no '/' or '.'), set only with a
 * status. On KEEL_OK the bytes are what stream 1's DATA frames carried (padding removed) up to
 * the end of the stream, after the 5-byte prefix that announced them: a reference walk of the
 * frames here gives those; nothing over KEEL_MAX_RECEIVE_BYTES is kept. FUZZ_VERBOSE=1 prints
 * each outcome.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "transport/grpcwire.h"
#include "transport/transport.h"

#define MAX_LEN (64 * 1024)

#define WHAT "GetSystemInfo to the server"

static const keel_rpc RPC = {KEEL_WORKFLOW_SERVICE, "GetSystemInfo"};

enum { DATA = 0x0, HEADERS = 0x1, RST_STREAM = 0x3, GOAWAY = 0x7 };
enum { END_STREAM = 0x1, PADDED = 0x8 };

static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* What stream 1's DATA frames carried, padding removed, up to the frame that ends the stream
 * (END_STREAM, its RST_STREAM, a GOAWAY that leaves it out) or the last whole frame. Frames
 * nghttp2 refuses may be in it: a stream they break does not end in KEEL_OK. */
static uint8_t *reference(const uint8_t *s, size_t n, size_t *len)
{
    uint8_t *out = malloc(n ? n : 1);
    if (out == NULL)
        abort();
    *len = 0;
    for (size_t off = 0; off + 9 <= n;) {
        size_t flen = be(s + off, 3);
        uint8_t type = s[off + 3], flags = s[off + 4];
        uint32_t stream = be(s + off + 5, 4) & 0x7fffffffu;
        const uint8_t *p = s + off + 9;
        if (flen > n - off - 9)
            break;
        off += 9 + flen;
        if (type == GOAWAY && flen >= 8 && (be(p, 4) & 0x7fffffffu) < 1)
            break;
        if (stream != 1)
            continue;
        if (type == RST_STREAM)
            break;
        if (type == DATA) {
            size_t from = 0, to = flen;
            if (flags & PADDED) {
                if (flen < 1 || p[0] >= flen)
                    break;
                from = 1;
                to = flen - p[0];
            }
            memcpy(out + *len, p + from, to - from);
            *len += to - from;
        }
        if ((type == DATA || type == HEADERS) && (flags & END_STREAM))
            break;
    }
    return out;
}

typedef struct outcome {
    int rc;
    uint8_t *msg;
    size_t len;
    keel_error err;
} outcome;

static void run(const uint8_t *data, size_t size, size_t chunk, outcome *o)
{
    memset(&o->err, 0, sizeof o->err);
    memset(o->err.failure_type, 'x', sizeof o->err.failure_type);
    o->rc = keel_transport_answer_bytes(RPC, data, size, chunk, &o->msg, &o->len, &o->err);
    if (o->rc == KEEL_OK) {
        if (o->msg == NULL)
            fuzz_fail("KEEL_OK without a message");
        if (o->len > KEEL_MAX_RECEIVE_BYTES)
            fuzz_fail("KEEL_OK with %zu bytes, over KEEL_MAX_RECEIVE_BYTES", o->len);
        return;
    }
    keel_error *e = &o->err;
    if (o->msg != NULL || o->len != 0)
        fuzz_fail("an error (%s) left a message of %zu bytes", e->message, o->len);
    if (o->rc > 0 || (int)e->code != o->rc)
        fuzz_fail("returned %d but err.code is %d (%s)", o->rc, (int)e->code, e->message);
    if (memchr(e->message, '\0', sizeof e->message) == NULL)
        fuzz_fail("the error message is not NUL-terminated");
    if (strncmp(e->message, WHAT, strlen(WHAT)) != 0)
        fuzz_fail("the error message does not start with the RPC: '%s'", e->message);
    if (e->grpc_status != KEEL_NO_GRPC_STATUS && (e->grpc_status < 1 || e->grpc_status > 99))
        fuzz_fail("grpc_status %d (%s)", e->grpc_status, e->message);
    if (memchr(e->failure_type, '\0', sizeof e->failure_type) == NULL)
        fuzz_fail("failure_type is not NUL-terminated");
    if (strpbrk(e->failure_type, "/.") != NULL)
        fuzz_fail("failure_type '%s' is not a short name", e->failure_type);
    if (e->failure_type[0] != '\0' && e->grpc_status == KEEL_NO_GRPC_STATUS)
        fuzz_fail("failure_type '%s' without a grpc status (%s)", e->failure_type, e->message);
}

/* Where two errors in one broken answer race, the split may pick either: nghttp2 1.52 resets a
 * stream for some bad frames (DATA after a 1xx answer, say) without telling keel why until the
 * reset is sent, and a connection error, a GOAWAY or a stream error that come in the same read
 * overtake it when the bytes are fed whole; a header block with an invalid field over more than 8
 * CONTINUATION frames (nghttp2's flood limit) is refused for the one or the other. An error that
 * went through such a reset or the end of the connection may differ from its twin, as long as
 * both are errors. */
static bool may_race(const outcome *o)
{
    static const char *const marks[] = {
        "the server reset the stream (",
        ": the server broke the protocol; connection closed",
        "HTTP/2 from the server refused: ",
    };
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (strstr(o->err.message, marks[i]))
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    outcome whole, pieces;
    run(data, size, 0, &whole);
    size_t chunk = size ? 1 + data[size - 1] % 16u : 1;
    run(data, size, chunk, &pieces);
    bool same =
        whole.rc == pieces.rc && whole.len == pieces.len &&
        (whole.rc == KEEL_OK ? memcmp(whole.msg, pieces.msg, whole.len) == 0
                             : strcmp(whole.err.message, pieces.err.message) == 0 &&
                                   whole.err.grpc_status == pieces.err.grpc_status &&
                                   strcmp(whole.err.failure_type, pieces.err.failure_type) == 0 &&
                                   whole.err.retryable == pieces.err.retryable);
    if (!same &&
        !(whole.rc != KEEL_OK && pieces.rc != KEEL_OK && (may_race(&whole) || may_race(&pieces))))
        fuzz_fail("fed whole: %d, %zu bytes ('%s', %d, '%s'); in pieces of %zu: %d, %zu bytes "
                  "('%s', %d, '%s')",
                  whole.rc, whole.len, whole.rc ? whole.err.message : "ok", whole.err.grpc_status,
                  whole.rc ? whole.err.failure_type : "", chunk, pieces.rc, pieces.len,
                  pieces.rc ? pieces.err.message : "ok", pieces.err.grpc_status,
                  pieces.rc ? pieces.err.failure_type : "");
    if (whole.rc == KEEL_OK) {
        size_t rlen;
        uint8_t *ref = reference(data, size, &rlen);
        if (rlen != KEEL_GRPC_PREFIX_BYTES + whole.len || ref[0] != 0 ||
            be(ref + 1, 4) != whole.len ||
            memcmp(ref + KEEL_GRPC_PREFIX_BYTES, whole.msg, whole.len) != 0)
            fuzz_fail("KEEL_OK with %zu bytes, but stream 1's DATA carried %zu bytes that are not "
                      "one uncompressed message of them",
                      whole.len, rlen);
        free(ref);
    }
    const char *verbose = getenv("FUZZ_VERBOSE"); /* for triage: how the call ended */
    if (verbose && *verbose && strcmp(verbose, "0") != 0)
        fprintf(stderr, "fuzz_h2answer: %s (%zu bytes; grpc_status %d, failure_type '%s')\n",
                whole.rc == KEEL_OK ? "OK" : whole.err.message, whole.len, whole.err.grpc_status,
                whole.rc == KEEL_OK ? "" : whole.err.failure_type);
    free(whole.msg);
    free(pieces.msg);
    return 0;
}
