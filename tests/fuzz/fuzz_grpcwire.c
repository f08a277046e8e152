/*
 * fuzz_grpcwire - gRPC's conventions over HTTP/2 as keel's own transport reads them
 * (src/transport/grpcwire.h): the deframer of a unary answer, grpc-message's percent-decoding,
 * base64 "-bin" values, grpc-status, the status maps, target addresses and grpc-timeout.
 *
 * Input: one selector byte, then the body. selector % 6 picks the function, selector / 6 (p) a
 * parameter:
 *   0  the deframer. max_bytes is MAXES[p % 8]; p & 8: the body is wrapped in a well-formed
 *      prefix first. body[0] % 8 is a count k of chunk-size bytes that follow; the rest is fed in
 *      chunks of those sizes in turn (a byte b: b bytes, 0 an empty feed; b >= 128: (b - 128) *
 *      512 bytes), whole when k is 0.
 *   1  keel_grpc_percent_decode into an out buffer of body[0] bytes (0-255), the rest the value.
 *   2  keel_grpc_base64_decode into body[0] | body[1] << 8 bytes (0-65535), the rest the value;
 *      also the base64 of the rest (this target's encoder) decoded back.
 *   3  keel_grpc_parse_status of the body; the two status maps of its first four bytes.
 *   4  keel_grpc_parse_target of the body (to its first NUL).
 *   5  keel_grpc_timeout of the body's first eight bytes (a little-endian int64).
 *
 * Properties: the deframer accepts exactly the streams that are one uncompressed message of at
 * most max_bytes, gives back the bytes after its prefix, refuses the rest with the code a model
 * here predicts, and never holds more than the message's length nor much more than what
 * arrived; percent-decoding equals a plain model (cut to the buffer, "..." at the end), is
 * NUL-terminated and printable ASCII; decoding the base64 of what base64 decoded gives the same
 * bytes; a status is 0-99 exactly for one or two digits; a parsed TCP target has a host, a
 * 1-65535 decimal port and an authority ending in ":port" that parses again (after "dns:///")
 * to the same target; a socket path fits sun_path; a grpc-timeout is 1-8 digits and a unit, the
 * smallest count of that unit not shorter than the milliseconds (or 99999999H).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "transport/grpcwire.h"

#define MAX_LEN (256 * 1024)

static const size_t MAXES[8] = {0, 1, 5, 100, 4096, 16384, 70000, (size_t)128 * 1024 * 1024};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* What the deframer must answer for a whole stream: KEEL_OK, or the code of the first refusal,
 * and whether that refusal comes from feed() (true) or only from take(). */
static int deframer_model(const uint8_t *s, size_t n, size_t max, bool *at_feed)
{
    *at_feed = false;
    if (n < KEEL_GRPC_PREFIX_BYTES)
        return KEEL_EPROTOCOL; /* nothing, or a cut prefix */
    *at_feed = true;
    if (s[0] != 0)
        return KEEL_EPROTOCOL;
    size_t len = be32(s + 1);
    if (len > max)
        return KEEL_EEXHAUSTED;
    size_t after = n - KEEL_GRPC_PREFIX_BYTES;
    if (after >= len + KEEL_GRPC_PREFIX_BYTES)
        return KEEL_EPROTOCOL; /* a second prefix, whole */
    *at_feed = false;
    if (after != len)
        return KEEL_EPROTOCOL; /* a cut message, or the start of a second prefix */
    return KEEL_OK;
}

/* A chunk-size byte: b bytes, or (b - 128) * 512 from 128 on. */
static size_t chunk_of(uint8_t b)
{
    return b >= 128 ? (size_t)(b - 128) * 512 : b;
}

static void deframer(unsigned p, const uint8_t *data, size_t size)
{
    size_t max = MAXES[p % 8];
    if (size < 1)
        return;
    size_t k = data[0] % 8;
    if (size < 1 + k)
        return;
    const uint8_t *sizes = data + 1;
    const uint8_t *body = data + 1 + k;
    size_t blen = size - 1 - k;

    uint8_t *stream = malloc(blen + KEEL_GRPC_PREFIX_BYTES);
    if (stream == NULL)
        abort();
    size_t n = blen;
    if (p & 8) {
        keel_grpc_prefix(stream, (uint32_t)blen);
        n += KEEL_GRPC_PREFIX_BYTES;
        memcpy(stream + KEEL_GRPC_PREFIX_BYTES, body, blen);
    } else {
        memcpy(stream, body, blen);
    }

    bool any = false;
    for (size_t i = 0; i < k; i++)
        any = any || chunk_of(sizes[i]) != 0;

    keel_grpc_deframer d;
    memset(&d, 0, sizeof d);
    keel_error err;
    int rc = KEEL_OK;
    size_t at = 0;
    for (size_t i = 0; rc == KEEL_OK && (at < n || i == 0); i++) {
        size_t chunk = n - at;
        if (k > 0 && any) {
            chunk = chunk_of(sizes[i % k]);
            if (chunk > n - at)
                chunk = n - at;
        }
        rc = keel_grpc_deframer_feed(&d, stream + at, chunk, max, &err);
        at += chunk;
        if (rc != KEEL_OK)
            break;
        /* What it holds: never past the message's length, and grown by what arrived. */
        if (d.length > max)
            fuzz_fail("the deframer accepted a %zu-byte message over max %zu", d.length, max);
        if (d.cap > d.length && !(d.cap == 1 && d.length == 0))
            fuzz_fail("the deframer holds %zu bytes for a %zu-byte message", d.cap, d.length);
        if (d.cap > 64 * 1024 && d.cap > 2 * d.have)
            fuzz_fail("the deframer holds %zu bytes for %zu that arrived", d.cap, d.have);
        if ((d.buf == NULL) != (d.cap == 0))
            fuzz_fail("the deframer's buffer %p and its size %zu disagree", (void *)d.buf, d.cap);
    }

    bool model_at_feed;
    int want = deframer_model(stream, n, max, &model_at_feed);
    if (rc != KEEL_OK) {
        if (!model_at_feed || rc != want)
            fuzz_fail("feed() refused a %zu-byte stream (max %zu) with %d (%s); the model says "
                      "%d %s",
                      n, max, rc, err.message, want, model_at_feed ? "at feed" : "at take");
        if (err.code != rc || err.message[0] == '\0')
            fuzz_fail("feed() returned %d but err says %d '%s'", rc, err.code, err.message);
        keel_grpc_deframer_free(&d);
        free(stream);
        return;
    }
    if (model_at_feed)
        fuzz_fail("feed() took a %zu-byte stream (max %zu) the model refuses with %d", n, max,
                  want);

    uint8_t *msg = NULL;
    size_t len = 0;
    rc = keel_grpc_deframer_take(&d, &msg, &len, &err);
    if (rc != want)
        fuzz_fail("take() gives %d (%s) for a %zu-byte stream (max %zu); the model says %d", rc,
                  rc == KEEL_OK ? "" : err.message, n, max, want);
    if (rc == KEEL_OK) {
        if (msg == NULL)
            fuzz_fail("take() succeeded with a NULL message");
        if (len != n - KEEL_GRPC_PREFIX_BYTES ||
            memcmp(msg, stream + KEEL_GRPC_PREFIX_BYTES, len) != 0)
            fuzz_fail("take() gives %zu bytes that are not the %zu after the prefix", len,
                      n - KEEL_GRPC_PREFIX_BYTES);
        if (d.buf != NULL || d.prefix_have != 0 || d.messages != 0)
            fuzz_fail("take() did not empty the deframer");
        free(msg);
    } else {
        if (msg != NULL || len != 0)
            fuzz_fail("take() failed but gave a message");
        if (err.message[0] == '\0')
            fuzz_fail("take() failed without a message");
    }
    keel_grpc_deframer_free(&d);
    if (d.buf != NULL)
        fuzz_fail("keel_grpc_deframer_free left a buffer");
    free(stream);
}

static int hex(uint8_t c)
{
    const char *digits = "0123456789abcdef";
    if (c >= 'A' && c <= 'F')
        c = (uint8_t)(c - 'A' + 'a');
    const char *at = c ? strchr(digits, c) : NULL;
    return at ? (int)(at - digits) : -1;
}

static void percent(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    size_t outsz = data[0];
    data++;
    size--;
    /* The model: every byte decoded in full, then cut. */
    char *full = malloc(size + 1);
    char *out = malloc(outsz ? outsz : 1);
    if (full == NULL || out == NULL)
        abort();
    size_t fl = 0;
    for (size_t i = 0; i < size; i++) {
        uint8_t c = data[i];
        if (c == '%' && size - i >= 3 && hex(data[i + 1]) >= 0 && hex(data[i + 2]) >= 0) {
            c = (uint8_t)(hex(data[i + 1]) * 16 + hex(data[i + 2]));
            i += 2;
        }
        full[fl++] = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
    }
    full[fl] = '\0';

    memset(out, 'Z', outsz ? outsz : 1);
    size_t got = keel_grpc_percent_decode(data, size, out, outsz);
    if (outsz == 0) {
        if (got != 0 || out[0] != 'Z')
            fuzz_fail("percent_decode wrote into a 0-byte buffer");
        goto done;
    }
    if (got >= outsz || memchr(out, '\0', outsz) != out + got)
        fuzz_fail("percent_decode returned %zu, not the NUL-terminated length within %zu", got,
                  outsz);
    for (size_t i = 0; i < got; i++)
        if (out[i] < 0x20 || out[i] > 0x7e)
            fuzz_fail("percent_decode wrote byte 0x%02x", (unsigned char)out[i]);
    if (fl < outsz) {
        if (got != fl || memcmp(out, full, fl) != 0)
            fuzz_fail("percent_decode gives '%s', the model '%s'", out, full);
    } else {
        if (got != outsz - 1)
            fuzz_fail("percent_decode cut to %zu bytes, not %zu", got, outsz - 1);
        size_t keep = outsz >= 4 ? got - 3 : got;
        if (memcmp(out, full, keep) != 0 || (outsz >= 4 && memcmp(out + keep, "...", 3) != 0))
            fuzz_fail("percent_decode cut to '%s'; the model '%.*s...'", out, (int)keep, full);
    }
done:
    free(full);
    free(out);
}

static size_t b64_encode(const uint8_t *in, size_t n, char *out, bool pad)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = abc[v >> 6 & 63];
        else if (pad)
            out[o++] = '=';
        if (i + 2 < n)
            out[o++] = abc[v & 63];
        else if (pad)
            out[o++] = '=';
    }
    return o;
}

/* Decode text, which must succeed with exactly n bytes equal to want. */
static void decodes_to(const char *text, size_t tl, const uint8_t *want, size_t n, const char *what)
{
    uint8_t *back = malloc(n ? n : 1);
    if (back == NULL)
        abort();
    size_t bl = 99;
    int rc = keel_grpc_base64_decode((const uint8_t *)text, tl, back, n, &bl);
    if (rc != KEEL_OK || bl != n || memcmp(back, want, n) != 0)
        fuzz_fail("%s: %zu bytes encoded as %zu characters decode to rc %d, %zu bytes", what, n, tl,
                  rc, bl);
    free(back);
}

static void base64(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t outsz = data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    uint8_t *out = malloc(outsz ? outsz : 1);
    char *text = malloc(size / 3 * 4 + 5); /* what is decoded is shorter than its text */
    if (out == NULL || text == NULL)
        abort();
    size_t ol = 99;
    int rc = keel_grpc_base64_decode(data, size, out, outsz, &ol);
    if (rc == KEEL_OK) {
        if (ol > outsz)
            fuzz_fail("base64_decode wrote %zu bytes into %zu", ol, outsz);
        /* Without its padding, n characters carry n * 6 / 8 bytes. */
        size_t chars = size;
        while (chars > 0 && data[chars - 1] == '=')
            chars--;
        if (ol != chars * 6 / 8)
            fuzz_fail("base64_decode gives %zu bytes for %zu characters", ol, chars);
        decodes_to(text, b64_encode(out, ol, text, true), out, ol, "padded re-encoding");
        decodes_to(text, b64_encode(out, ol, text, false), out, ol, "unpadded re-encoding");
    } else if (rc != KEEL_EPROTOCOL || ol != 0) {
        fuzz_fail("base64_decode refused with %d and length %zu", rc, ol);
    }
    free(text);
    /* Any bytes, encoded, decode back. */
    text = malloc(size / 3 * 4 + 5);
    if (text == NULL)
        abort();
    decodes_to(text, b64_encode(data, size, text, true), data, size, "padded encoding");
    decodes_to(text, b64_encode(data, size, text, false), data, size, "unpadded encoding");
    free(text);
    free(out);
}

static void status(const uint8_t *data, size_t size)
{
    int s = keel_grpc_parse_status(data, size);
    int want = -1;
    if (size >= 1 && size <= 2) {
        want = 0;
        for (size_t i = 0; i < size && want >= 0; i++)
            want = data[i] >= '0' && data[i] <= '9' ? want * 10 + (data[i] - '0') : -1;
    }
    if (s != want)
        fuzz_fail("grpc-status of %zu bytes parses to %d, not %d", size, s, want);
    if (size >= 4) {
        int h = keel_grpc_status_from_http((int)be32(data));
        int h2 = keel_grpc_status_from_h2(be32(data));
        if (h < 0 || h > 16 || h2 < 0 || h2 > 16)
            fuzz_fail("status maps give %d and %d", h, h2);
    }
}

static void target_ok(const char *addr, const keel_grpc_target *t)
{
    if (memchr(t->host, '\0', sizeof t->host) == NULL ||
        memchr(t->port, '\0', sizeof t->port) == NULL ||
        memchr(t->authority, '\0', sizeof t->authority) == NULL)
        fuzz_fail("'%s': a target's field is not NUL-terminated", addr);
    if (t->host[0] == '\0')
        fuzz_fail("'%s': an empty host or path", addr);
    if (t->kind == KEEL_GRPC_TARGET_UNIX) {
        if (strlen(t->host) > (t->abstract ? 106u : 107u) || strcmp(t->authority, "localhost"))
            fuzz_fail("'%s': a socket path of %zu bytes, authority '%s'", addr, strlen(t->host),
                      t->authority);
        return;
    }
    if (t->kind != KEEL_GRPC_TARGET_TCP || t->abstract)
        fuzz_fail("'%s': kind %d, abstract %d", addr, (int)t->kind, (int)t->abstract);
    size_t pl = strlen(t->port);
    long port = 0;
    for (size_t i = 0; i < pl; i++) {
        if (t->port[i] < '0' || t->port[i] > '9')
            fuzz_fail("'%s': port '%s'", addr, t->port);
        port = port * 10 + (t->port[i] - '0');
    }
    if (pl < 1 || pl > 5 || port < 1 || port > 65535)
        fuzz_fail("'%s': port '%s'", addr, t->port);
    if (strchr(t->host, ',') != NULL)
        fuzz_fail("'%s': a list of hosts '%s' was accepted", addr, t->host);
    size_t al = strlen(t->authority);
    if (al < pl + 2 || t->authority[al - pl - 1] != ':' || strcmp(t->authority + al - pl, t->port))
        fuzz_fail("'%s': authority '%s' does not end in ':%s'", addr, t->authority, t->port);
    if (strstr(t->authority, t->host) == NULL)
        fuzz_fail("'%s': authority '%s' does not hold host '%s'", addr, t->authority, t->host);
}

static void target(const uint8_t *data, size_t size)
{
    char *addr = fuzz_strndup(data, size);
    keel_grpc_target t;
    keel_error err;
    memset(&err, 0, sizeof err);
    int rc = keel_grpc_parse_target(addr, &t, &err);
    if (rc != KEEL_OK) {
        if (rc != KEEL_EINVAL || err.code != KEEL_EINVAL || err.message[0] == '\0')
            fuzz_fail("'%s' refused with %d, err %d '%s'", addr, rc, err.code, err.message);
        free(addr);
        return;
    }
    target_ok(addr, &t);
    if (t.kind == KEEL_GRPC_TARGET_TCP) {
        /* The authority names the same target. */
        char again[sizeof t.authority + 8];
        snprintf(again, sizeof again, "dns:///%s", t.authority);
        keel_grpc_target u;
        if (keel_grpc_parse_target(again, &u, &err) != KEEL_OK)
            fuzz_fail("'%s': its authority '%s' is refused: %s", addr, again, err.message);
        target_ok(again, &u);
        if (u.kind != t.kind || strcmp(u.host, t.host) || strcmp(u.port, t.port) ||
            strcmp(u.authority, t.authority))
            fuzz_fail("'%s' and its authority '%s' name different targets", addr, again);
    }
    free(addr);
}

static void timeout(const uint8_t *data, size_t size)
{
    uint8_t b[8] = {0};
    memcpy(b, data, size < 8 ? size : 8);
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | b[i];
    int64_t ms;
    memcpy(&ms, &u, sizeof ms);
    char out[16];
    memset(out, 'x', sizeof out);
    keel_grpc_timeout(ms, out);
    size_t len = strnlen(out, sizeof out);
    if (len < 2 || len > 9 || strspn(out, "0123456789") != len - 1 ||
        strchr("mSMH", out[len - 1]) == NULL)
        fuzz_fail("grpc-timeout '%.16s' for %lld ms", out, (long long)ms);
    int64_t count = strtoll(out, NULL, 10);
    int64_t unit = out[len - 1] == 'm'   ? 1
                   : out[len - 1] == 'S' ? 1000
                   : out[len - 1] == 'M' ? 60000
                                         : 3600000;
    int64_t want = ms < 1 ? 1 : ms;
    bool capped = count == 99999999 && unit == 3600000;
    /* Not shorter than asked (unless capped), and the smallest such count of its unit. */
    if ((!capped && count * unit < want) || (count - 1) * unit >= want || count < 1)
        fuzz_fail("grpc-timeout '%s' for %lld ms", out, (long long)ms);
    /* The finest unit whose count fits 8 digits. */
    if (unit > 1) {
        int64_t finer = unit == 1000 ? 1 : unit == 60000 ? 1000 : 60000;
        if (want / finer + (want % finer != 0) <= 99999999)
            fuzz_fail("grpc-timeout '%s' for %lld ms: a finer unit fits", out, (long long)ms);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_LEN)
        return 0;
    unsigned sel = data[0];
    data++;
    size--;
    switch (sel % 6) {
    case 0:
        deframer(sel / 6, data, size);
        break;
    case 1:
        percent(data, size);
        break;
    case 2:
        base64(data, size);
        break;
    case 3:
        status(data, size);
        break;
    case 4:
        target(data, size);
        break;
    default:
        timeout(data, size);
        break;
    }
    return 0;
}
