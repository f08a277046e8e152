/* src/transport/grpcwire.c: gRPC's conventions over HTTP/2 as pure functions of bytes. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/grpcwire.h"

/* The transport's cap on one answer (KEEL_MAX_RECEIVE_BYTES), written out so that this file
 * needs nothing but grpcwire.h. */
#define MAX_BYTES ((size_t)128 * 1024 * 1024)
#define MIB       ((size_t)1024 * 1024)

/* A deterministic xorshift, so that a failing split reproduces. */
static uint32_t next_random(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* One frame: the prefix, then len bytes of a pattern that differs at every offset mod 251. */
static uint8_t *frame(size_t len, size_t *total)
{
    uint8_t *f = malloc(KEEL_GRPC_PREFIX_BYTES + len);
    ck_assert_ptr_nonnull(f);
    keel_grpc_prefix(f, (uint32_t)len);
    for (size_t i = 0; i < len; i++)
        f[KEEL_GRPC_PREFIX_BYTES + i] = (uint8_t)(i % 251);
    *total = KEEL_GRPC_PREFIX_BYTES + len;
    return f;
}

/* Take the one message and check it is f's body. */
static void take_is_body(keel_grpc_deframer *d, const uint8_t *f, size_t total, const char *how)
{
    uint8_t *msg = NULL;
    size_t len = 12345;
    keel_error err;
    ck_assert_msg(keel_grpc_deframer_take(d, &msg, &len, &err) == KEEL_OK, "%s: %s", how,
                  err.message);
    ck_assert_ptr_nonnull(msg);
    ck_assert_uint_eq(len, total - KEEL_GRPC_PREFIX_BYTES);
    ck_assert_msg(memcmp(msg, f + KEEL_GRPC_PREFIX_BYTES, len) == 0, "%s: other bytes", how);
    /* take() empties the deframer. */
    ck_assert_ptr_null(d->buf);
    ck_assert_uint_eq(d->prefix_have, 0);
    ck_assert_int_eq(d->messages, 0);
    free(msg);
}

START_TEST(prefix_is_flag_then_big_endian_length)
{
    uint8_t p[KEEL_GRPC_PREFIX_BYTES];
    keel_grpc_prefix(p, 0x01020304u);
    const uint8_t want[] = {0, 1, 2, 3, 4};
    ck_assert_mem_eq(p, want, sizeof want);
    keel_grpc_prefix(p, 0);
    const uint8_t zero[] = {0, 0, 0, 0, 0};
    ck_assert_mem_eq(p, zero, sizeof zero);
    keel_grpc_prefix(p, 0xfffffffeu);
    const uint8_t big[] = {0, 0xff, 0xff, 0xff, 0xfe};
    ck_assert_mem_eq(p, big, sizeof big);
    keel_grpc_prefix(p, 300);
    const uint8_t small[] = {0, 0, 0, 1, 44};
    ck_assert_mem_eq(p, small, sizeof small);
}
END_TEST

START_TEST(deframer_whole_bytewise_and_random_splits_agree)
{
    /* 40000 bytes: more than the first allocation, so the buffer grows while bytes arrive. */
    const size_t sizes[] = {1, 7, 300, 40000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t total;
        uint8_t *f = frame(sizes[s], &total);
        keel_error err;

        keel_grpc_deframer d;
        memset(&d, 0, sizeof d);
        ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, total, MAX_BYTES, &err), KEEL_OK);
        take_is_body(&d, f, total, "whole");

        memset(&d, 0, sizeof d);
        for (size_t i = 0; i < total; i++)
            ck_assert_int_eq(keel_grpc_deframer_feed(&d, f + i, 1, MAX_BYTES, &err), KEEL_OK);
        take_is_body(&d, f, total, "byte by byte");

        uint32_t seed = 0x9e3779b9u + (uint32_t)s;
        for (int round = 0; round < 50; round++) {
            memset(&d, 0, sizeof d);
            size_t at = 0;
            while (at < total) {
                size_t n = next_random(&seed) % 20 == 0 ? 0 : next_random(&seed) % 2000 + 1;
                if (n > total - at)
                    n = total - at;
                ck_assert_int_eq(keel_grpc_deframer_feed(&d, f + at, n, MAX_BYTES, &err), KEEL_OK);
                at += n;
            }
            take_is_body(&d, f, total, "random splits");
        }
        free(f);
    }
}
END_TEST

START_TEST(deframer_reuse_after_take)
{
    /* take() leaves the deframer empty: the next call's answer can use it again. */
    size_t t1, t2;
    uint8_t *a = frame(10, &t1), *b = frame(20, &t2);
    keel_grpc_deframer d;
    memset(&d, 0, sizeof d);
    keel_error err;
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, a, t1, MAX_BYTES, &err), KEEL_OK);
    take_is_body(&d, a, t1, "first");
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, b, t2, MAX_BYTES, &err), KEEL_OK);
    take_is_body(&d, b, t2, "second");
    free(a);
    free(b);
}
END_TEST

START_TEST(deframer_empty_message)
{
    uint8_t p[KEEL_GRPC_PREFIX_BYTES];
    keel_grpc_prefix(p, 0);
    keel_grpc_deframer d;
    memset(&d, 0, sizeof d);
    keel_error err;
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, p, sizeof p, MAX_BYTES, &err), KEEL_OK);
    uint8_t *msg = NULL;
    size_t len = 99;
    ck_assert_int_eq(keel_grpc_deframer_take(&d, &msg, &len, &err), KEEL_OK);
    ck_assert_ptr_nonnull(msg); /* never NULL, also for an empty message */
    ck_assert_uint_eq(len, 0);
    free(msg);
    keel_grpc_deframer_free(&d);
}
END_TEST

START_TEST(deframer_refuses_compressed)
{
    const uint8_t f[] = {1, 0, 0, 0, 1, 'x'};
    keel_grpc_deframer d;
    memset(&d, 0, sizeof d);
    keel_error err;
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, sizeof f, MAX_BYTES, &err), KEEL_EPROTOCOL);
    ck_assert_int_eq(err.code, KEEL_EPROTOCOL);
    ck_assert_msg(strstr(err.message, "compressed") != NULL, "%s", err.message);
    keel_grpc_deframer_free(&d);

    /* Any flag but 0, also one that arrives alone. */
    memset(&d, 0, sizeof d);
    const uint8_t flag = 0x80;
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, &flag, 1, MAX_BYTES, &err), KEEL_OK);
    const uint8_t rest[] = {0, 0, 0, 0};
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, rest, sizeof rest, MAX_BYTES, &err),
                     KEEL_EPROTOCOL);
    ck_assert_msg(strstr(err.message, "flag 128") != NULL, "%s", err.message);
    keel_grpc_deframer_free(&d);
}
END_TEST

START_TEST(deframer_refuses_two_messages)
{
    size_t t;
    uint8_t *f = frame(3, &t);
    uint8_t two[2 * (KEEL_GRPC_PREFIX_BYTES + 3)];
    memcpy(two, f, t);
    memcpy(two + t, f, t);
    keel_error err;

    /* In one piece. */
    keel_grpc_deframer d;
    memset(&d, 0, sizeof d);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, two, 2 * t, MAX_BYTES, &err), KEEL_EPROTOCOL);
    ck_assert_msg(strstr(err.message, "more than one message") != NULL, "%s", err.message);
    keel_grpc_deframer_free(&d);

    /* In two DATA frames. */
    memset(&d, 0, sizeof d);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, t, MAX_BYTES, &err), KEEL_OK);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, t, MAX_BYTES, &err), KEEL_EPROTOCOL);
    keel_grpc_deframer_free(&d);

    /* A second empty message is a second message too. */
    memset(&d, 0, sizeof d);
    uint8_t empty[KEEL_GRPC_PREFIX_BYTES];
    keel_grpc_prefix(empty, 0);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, empty, sizeof empty, MAX_BYTES, &err), KEEL_OK);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, empty, sizeof empty, MAX_BYTES, &err),
                     KEEL_EPROTOCOL);
    keel_grpc_deframer_free(&d);

    /* Only the start of a second prefix: feed() cannot tell yet, take() refuses it. */
    memset(&d, 0, sizeof d);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, two, t + 2, MAX_BYTES, &err), KEEL_OK);
    uint8_t sentinel = 0;
    uint8_t *msg = &sentinel;
    size_t len = 7;
    ck_assert_int_eq(keel_grpc_deframer_take(&d, &msg, &len, &err), KEEL_EPROTOCOL);
    ck_assert_ptr_null(msg);
    ck_assert_uint_eq(len, 0);
    ck_assert_msg(strstr(err.message, "more than one message") != NULL, "%s", err.message);
    keel_grpc_deframer_free(&d);
    free(f);
}
END_TEST

START_TEST(deframer_refuses_too_long_from_its_prefix)
{
    keel_error err;
    keel_grpc_deframer d;

    /* Over the cap: refused from the prefix alone, before any byte is kept. */
    memset(&d, 0, sizeof d);
    uint8_t p[KEEL_GRPC_PREFIX_BYTES];
    keel_grpc_prefix(p, (uint32_t)(MAX_BYTES + 1));
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, p, sizeof p, MAX_BYTES, &err), KEEL_EEXHAUSTED);
    ck_assert_int_eq(err.code, KEEL_EEXHAUSTED);
    ck_assert_msg(strstr(err.message, "134217729") != NULL && strstr(err.message, "134217728"),
                  "%s", err.message);
    ck_assert_ptr_null(d.buf);
    ck_assert_uint_eq(d.cap, 0);
    keel_grpc_deframer_free(&d);

    /* The largest length a prefix can claim. */
    memset(&d, 0, sizeof d);
    keel_grpc_prefix(p, 0xffffffffu);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, p, sizeof p, MAX_BYTES, &err), KEEL_EEXHAUSTED);
    ck_assert_ptr_null(d.buf);
    keel_grpc_deframer_free(&d);

    /* Exactly the cap is allowed; a small cap is a cap too. */
    memset(&d, 0, sizeof d);
    keel_grpc_prefix(p, 10);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, p, sizeof p, 10, &err), KEEL_OK);
    keel_grpc_deframer_free(&d);
    memset(&d, 0, sizeof d);
    keel_grpc_prefix(p, 11);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, p, sizeof p, 10, &err), KEEL_EEXHAUSTED);
    keel_grpc_deframer_free(&d);
}
END_TEST

START_TEST(deframer_grows_by_arrival_not_by_claim)
{
    /* A prefix claiming 100 MiB, under the 128 MiB cap, then 10 bytes: what is held stays near
     * the 10 bytes (the first allocation is 16 KiB), not the 100 MiB claimed. */
    uint8_t f[KEEL_GRPC_PREFIX_BYTES + 10];
    keel_grpc_prefix(f, (uint32_t)(100 * MIB));
    memset(f + KEEL_GRPC_PREFIX_BYTES, 'a', 10);
    keel_grpc_deframer d;
    memset(&d, 0, sizeof d);
    keel_error err;
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, sizeof f, MAX_BYTES, &err), KEEL_OK);
    ck_assert_uint_eq(d.have, 10);
    ck_assert_uint_ge(d.cap, 10);
    ck_assert_msg(d.cap <= 64 * 1024, "holds %zu bytes for 10 that arrived", d.cap);

    /* 1 MiB more arrives: the buffer follows the bytes, not the claim. */
    uint8_t *mib = calloc(1, MIB);
    ck_assert_ptr_nonnull(mib);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, mib, MIB, MAX_BYTES, &err), KEEL_OK);
    ck_assert_uint_ge(d.cap, MIB + 10);
    ck_assert_msg(d.cap <= 4 * MIB, "holds %zu bytes for 1 MiB that arrived", d.cap);
    free(mib);

    /* The answer ends there: the message is cut, and take() says how much came. */
    uint8_t *msg;
    size_t len;
    ck_assert_int_eq(keel_grpc_deframer_take(&d, &msg, &len, &err), KEEL_EPROTOCOL);
    ck_assert_ptr_null(msg);
    ck_assert_msg(strstr(err.message, "(1048586 of 104857600 bytes)") != NULL, "%s", err.message);
    keel_grpc_deframer_free(&d);
    ck_assert_ptr_null(d.buf);
}
END_TEST

START_TEST(deframer_buffer_never_exceeds_the_message)
{
    /* 20000 bytes: the doubling from 16 KiB stops at the message's length. */
    size_t t;
    uint8_t *f = frame(20000, &t);
    keel_grpc_deframer d;
    memset(&d, 0, sizeof d);
    keel_error err;
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, t, MAX_BYTES, &err), KEEL_OK);
    ck_assert_uint_eq(d.cap, 20000);
    take_is_body(&d, f, t, "20000");
    free(f);
}
END_TEST

START_TEST(deframer_take_truncated)
{
    keel_error err;
    uint8_t *msg;
    size_t len;
    keel_grpc_deframer d;

    /* Nothing at all. */
    memset(&d, 0, sizeof d);
    ck_assert_int_eq(keel_grpc_deframer_take(&d, &msg, &len, &err), KEEL_EPROTOCOL);
    ck_assert_ptr_null(msg);
    ck_assert_msg(strstr(err.message, "OK without a response") != NULL, "%s", err.message);

    /* Nothing, fed as empty DATA. */
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, (const uint8_t *)"", 0, MAX_BYTES, &err), KEEL_OK);
    ck_assert_int_eq(keel_grpc_deframer_take(&d, &msg, &len, &err), KEEL_EPROTOCOL);
    ck_assert_msg(strstr(err.message, "OK without a response") != NULL, "%s", err.message);

    /* A cut prefix. */
    size_t t;
    uint8_t *f = frame(100, &t);
    memset(&d, 0, sizeof d);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, 3, MAX_BYTES, &err), KEEL_OK);
    ck_assert_int_eq(keel_grpc_deframer_take(&d, &msg, &len, &err), KEEL_EPROTOCOL);
    ck_assert_msg(strstr(err.message, "(3 of 5 bytes)") != NULL, "%s", err.message);
    keel_grpc_deframer_free(&d);

    /* A whole prefix, no body. */
    memset(&d, 0, sizeof d);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, 5, MAX_BYTES, &err), KEEL_OK);
    ck_assert_int_eq(keel_grpc_deframer_take(&d, &msg, &len, &err), KEEL_EPROTOCOL);
    ck_assert_msg(strstr(err.message, "(0 of 100 bytes)") != NULL, "%s", err.message);
    keel_grpc_deframer_free(&d);

    /* A cut body. */
    memset(&d, 0, sizeof d);
    ck_assert_int_eq(keel_grpc_deframer_feed(&d, f, t - 1, MAX_BYTES, &err), KEEL_OK);
    ck_assert_int_eq(keel_grpc_deframer_take(&d, &msg, &len, &err), KEEL_EPROTOCOL);
    ck_assert_ptr_null(msg);
    ck_assert_uint_eq(len, 0);
    ck_assert_msg(strstr(err.message, "ended inside a message (99 of 100 bytes)") != NULL, "%s",
                  err.message);
    keel_grpc_deframer_free(&d);
    free(f);
}
END_TEST

static const char *timeout(int64_t ms)
{
    static char out[16];
    memset(out, 'x', sizeof out);
    keel_grpc_timeout(ms, out);
    ck_assert_ptr_nonnull(memchr(out, '\0', sizeof out));
    return out;
}

START_TEST(timeout_units)
{
    ck_assert_str_eq(timeout(1), "1m");
    ck_assert_str_eq(timeout(0), "1m"); /* at least 1 */
    ck_assert_str_eq(timeout(-5), "1m");
    ck_assert_str_eq(timeout(INT64_MIN), "1m");
    ck_assert_str_eq(timeout(1500), "1500m");
    ck_assert_str_eq(timeout(99999999), "99999999m");
    ck_assert_str_eq(timeout(100000000), "100000S");
    ck_assert_str_eq(timeout(100000001), "100001S"); /* rounded up, never shorter */
    ck_assert_str_eq(timeout(99999999000LL), "99999999S");
    ck_assert_str_eq(timeout(99999999001LL), "1666667M");
    ck_assert_str_eq(timeout(99999999LL * 60000), "99999999M");
    ck_assert_str_eq(timeout(99999999LL * 60000 + 1), "1666667H");
    ck_assert_str_eq(timeout(99999999LL * 3600000), "99999999H");
    ck_assert_str_eq(timeout(99999999LL * 3600000 + 1), "99999999H"); /* capped */
    ck_assert_str_eq(timeout(INT64_MAX - 1), "99999999H");
    ck_assert_str_eq(timeout(INT64_MAX), "99999999H");
}
END_TEST

static int status(const char *s)
{
    return keel_grpc_parse_status((const uint8_t *)s, strlen(s));
}

START_TEST(grpc_status_values)
{
    ck_assert_int_eq(status("0"), 0);
    ck_assert_int_eq(status("16"), 16);
    ck_assert_int_eq(status("99"), 99);
    ck_assert_int_eq(status("07"), 7);
    ck_assert_int_eq(status(""), -1);
    ck_assert_int_eq(status("100"), -1);
    ck_assert_int_eq(status("1a"), -1);
    ck_assert_int_eq(status("-1"), -1);
    ck_assert_int_eq(status(" 1"), -1);
    ck_assert_int_eq(status("+1"), -1);
    /* Only n bytes are read: "12" of "123". */
    ck_assert_int_eq(keel_grpc_parse_status((const uint8_t *)"123", 2), 12);
    ck_assert_int_eq(keel_grpc_parse_status((const uint8_t *)"1\0", 2), -1);
}
END_TEST

static const char *pdecode(const char *in, size_t outsz, size_t *written)
{
    static char out[64];
    ck_assert_uint_le(outsz, sizeof out);
    memset(out, 'Z', sizeof out);
    *written = keel_grpc_percent_decode((const uint8_t *)in, strlen(in), out, outsz);
    ck_assert_uint_lt(*written, outsz);
    ck_assert_uint_eq(strlen(out), *written);
    if (outsz < sizeof out)
        ck_assert_int_eq(out[outsz], 'Z'); /* nothing past outsz */
    return out;
}

START_TEST(percent_decode)
{
    size_t n;
    ck_assert_str_eq(pdecode("a%20b", 64, &n), "a b");
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(pdecode("%41%42%43", 64, &n), "ABC");
    ck_assert_str_eq(pdecode("%7e%7E", 64, &n), "~~");
    ck_assert_str_eq(pdecode("100%25", 64, &n), "100%");
    /* A '%' without two hex digits stays as it is. */
    ck_assert_str_eq(pdecode("%zz", 64, &n), "%zz");
    ck_assert_str_eq(pdecode("%g1x", 64, &n), "%g1x");
    ck_assert_str_eq(pdecode("ab%4", 64, &n), "ab%4");
    ck_assert_str_eq(pdecode("ab%", 64, &n), "ab%");
    ck_assert_str_eq(pdecode("%%41", 64, &n), "%A");
    /* Outside printable ASCII: '?', encoded or not. */
    ck_assert_str_eq(pdecode("caf%C3%A9", 64, &n), "caf??");
    ck_assert_str_eq(pdecode("caf\xc3\xa9", 64, &n), "caf??");
    ck_assert_str_eq(pdecode("a%0Ab%00c%7f", 64, &n), "a?b?c?");
    ck_assert_str_eq(pdecode("tab\there", 64, &n), "tab?here");
    ck_assert_str_eq(pdecode("", 64, &n), "");
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(percent_decode_truncates)
{
    size_t n;
    /* Exactly fits: no dots. */
    ck_assert_str_eq(pdecode("abcdefg", 8, &n), "abcdefg");
    ck_assert_str_eq(pdecode("%41%42%43", 4, &n), "ABC");
    /* One byte more: cut, ending in "...". */
    ck_assert_str_eq(pdecode("abcdefgh", 8, &n), "abcd...");
    ck_assert_uint_eq(n, 7);
    ck_assert_str_eq(pdecode("a%20b%20c%20d%20e", 8, &n), "a b ...");
    ck_assert_str_eq(pdecode("abcd", 4, &n), "...");
    /* Too small for the dots: cut only. */
    ck_assert_str_eq(pdecode("abcd", 3, &n), "ab");
    ck_assert_str_eq(pdecode("abcd", 1, &n), "");

    /* outsz 0: nothing written. */
    char out[4] = {'Q', 'Q', 'Q', 'Q'};
    ck_assert_uint_eq(keel_grpc_percent_decode((const uint8_t *)"abc", 3, out, 0), 0);
    ck_assert_int_eq(out[0], 'Q');

    /* Bytes after n are not read. */
    ck_assert_uint_eq(keel_grpc_percent_decode((const uint8_t *)"%41%42", 4, out, sizeof out), 2);
    ck_assert_str_eq(out, "A%");
}
END_TEST

static int b64(const char *in, size_t outsz, uint8_t *out, size_t *outlen)
{
    return keel_grpc_base64_decode((const uint8_t *)in, strlen(in), out, outsz, outlen);
}

/* The test's own encoder, padded. */
static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

START_TEST(base64_decode)
{
    uint8_t out[512];
    size_t len;
    ck_assert_int_eq(b64("aGVsbG8=", sizeof out, out, &len), KEEL_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(out, "hello", 5);
    ck_assert_int_eq(b64("aGVsbG8", sizeof out, out, &len), KEEL_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(out, "hello", 5);
    ck_assert_int_eq(b64("aGVsbA==", sizeof out, out, &len), KEEL_OK);
    ck_assert_uint_eq(len, 4);
    ck_assert_mem_eq(out, "hell", 4);
    ck_assert_int_eq(b64("aGVsbA", sizeof out, out, &len), KEEL_OK);
    ck_assert_uint_eq(len, 4);
    ck_assert_int_eq(b64("aGVs", sizeof out, out, &len), KEEL_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert_mem_eq(out, "hel", 3);
    ck_assert_int_eq(b64("", sizeof out, out, &len), KEEL_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(b64("+/+/", sizeof out, out, &len), KEEL_OK);
    const uint8_t pp[] = {0xfb, 0xff, 0xbf};
    ck_assert_mem_eq(out, pp, 3);

    /* Every byte value, through the test's encoder and back. */
    uint8_t all[256];
    char text[400];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t n = 0; n <= 256; n += (n < 8 ? 1 : 61)) {
        size_t tl = b64_encode(all + 256 - n, n, text);
        ck_assert_int_eq(keel_grpc_base64_decode((const uint8_t *)text, tl, out, n, &len), KEEL_OK);
        ck_assert_uint_eq(len, n);
        ck_assert_int_eq(memcmp(out, all + 256 - n, n), 0);
        /* Unpadded too. */
        while (tl > 0 && text[tl - 1] == '=')
            tl--;
        ck_assert_int_eq(keel_grpc_base64_decode((const uint8_t *)text, tl, out, n, &len), KEEL_OK);
        ck_assert_uint_eq(len, n);
    }
}
END_TEST

START_TEST(base64_refuses)
{
    uint8_t out[64];
    size_t len = 77;
    const char *bad[] = {
        "aGV$bG8=",                        /* a character outside the alphabet */
        "aGVs bG8", "aGVs\nbG8", "aGVs-_", /* URL-safe base64 is another alphabet */
        "a===",                            /* three pads */
        "abc=d",                           /* padding inside */
        "ab=c",     "=",         "==",     "====", "a", "aGVsb", /* a lone 6 bits */
        "ab=",                                                   /* padding short of a quantum */
        "abc==",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        len = 77;
        ck_assert_msg(b64(bad[i], sizeof out, out, &len) == KEEL_EPROTOCOL, "accepted '%s'",
                      bad[i]);
        ck_assert_uint_eq(len, 0);
    }
    /* The result is longer than the room for it. */
    ck_assert_int_eq(b64("aGVsbG8=", 4, out, &len), KEEL_EPROTOCOL);
    ck_assert_int_eq(b64("aGVsbG8=", 5, out, &len), KEEL_OK);
    ck_assert_int_eq(b64("aGVs", 0, out, &len), KEEL_EPROTOCOL);
}
END_TEST

START_TEST(http_and_h2_status_maps)
{
    ck_assert_int_eq(keel_grpc_status_from_http(400), 13);
    ck_assert_int_eq(keel_grpc_status_from_http(401), 16);
    ck_assert_int_eq(keel_grpc_status_from_http(403), 7);
    ck_assert_int_eq(keel_grpc_status_from_http(404), 12);
    ck_assert_int_eq(keel_grpc_status_from_http(429), 14);
    ck_assert_int_eq(keel_grpc_status_from_http(502), 14);
    ck_assert_int_eq(keel_grpc_status_from_http(503), 14);
    ck_assert_int_eq(keel_grpc_status_from_http(504), 14);
    ck_assert_int_eq(keel_grpc_status_from_http(200), 2);
    ck_assert_int_eq(keel_grpc_status_from_http(500), 2);
    ck_assert_int_eq(keel_grpc_status_from_http(0), 2);
    ck_assert_int_eq(keel_grpc_status_from_http(-1), 2);

    ck_assert_int_eq(keel_grpc_status_from_h2(0x7), 14); /* REFUSED_STREAM: UNAVAILABLE */
    ck_assert_int_eq(keel_grpc_status_from_h2(0x8), 1);  /* CANCEL: CANCELLED */
    ck_assert_int_eq(keel_grpc_status_from_h2(0xb), 8);  /* ENHANCE_YOUR_CALM */
    ck_assert_int_eq(keel_grpc_status_from_h2(0xc), 7);  /* INADEQUATE_SECURITY */
    ck_assert_int_eq(keel_grpc_status_from_h2(0x0), 13); /* NO_ERROR before grpc-status */
    ck_assert_int_eq(keel_grpc_status_from_h2(0x1), 13); /* PROTOCOL_ERROR */
    ck_assert_int_eq(keel_grpc_status_from_h2(0x2), 13); /* INTERNAL_ERROR */
    ck_assert_int_eq(keel_grpc_status_from_h2(0xd), 13); /* HTTP_1_1_REQUIRED */
    ck_assert_int_eq(keel_grpc_status_from_h2(0xffffffffu), 13);
}
END_TEST

static void target_tcp(const char *address, const char *host, const char *port,
                       const char *authority)
{
    keel_grpc_target t;
    keel_error err;
    ck_assert_msg(keel_grpc_parse_target(address, &t, &err) == KEEL_OK, "%s: %s", address,
                  err.message);
    ck_assert_int_eq(t.kind, KEEL_GRPC_TARGET_TCP);
    ck_assert(!t.abstract);
    ck_assert_str_eq(t.host, host);
    ck_assert_str_eq(t.port, port);
    ck_assert_str_eq(t.authority, authority);
}

static void target_unix(const char *address, const char *path, bool abstract)
{
    keel_grpc_target t;
    keel_error err;
    ck_assert_msg(keel_grpc_parse_target(address, &t, &err) == KEEL_OK, "%s: %s", address,
                  err.message);
    ck_assert_int_eq(t.kind, KEEL_GRPC_TARGET_UNIX);
    ck_assert_int_eq(t.abstract, abstract);
    ck_assert_str_eq(t.host, path);
    ck_assert_str_eq(t.authority, "localhost");
}

START_TEST(targets)
{
    target_tcp("localhost:7233", "localhost", "7233", "localhost:7233");
    target_tcp("temporal.example.com:443", "temporal.example.com", "443",
               "temporal.example.com:443");
    target_tcp("127.0.0.1:1", "127.0.0.1", "1", "127.0.0.1:1");
    target_tcp("h:65535", "h", "65535", "h:65535");
    target_tcp("[::1]:7233", "::1", "7233", "[::1]:7233");
    target_tcp("[fe80::1%eth0]:7233", "fe80::1%eth0", "7233", "[fe80::1%eth0]:7233");
    target_tcp("dns:///h:1", "h", "1", "h:1");
    target_tcp("dns://8.8.8.8/h:1", "h", "1", "h:1");
    target_tcp("dns:h:1", "h", "1", "h:1");
    target_tcp("dns:///[::1]:5", "::1", "5", "[::1]:5");
    target_tcp("ipv4:1.2.3.4:5", "1.2.3.4", "5", "1.2.3.4:5");
    target_tcp("ipv6:[::1]:5", "::1", "5", "[::1]:5");
    target_unix("unix:/tmp/s", "/tmp/s", false);
    target_unix("unix:///tmp/s", "/tmp/s", false);
    target_unix("unix:relative/s", "relative/s", false);
    target_unix("unix-abstract:x", "x", true);

    /* The longest host and socket paths. */
    char a[400];
    memset(a, 'h', 255);
    strcpy(a + 255, ":7233");
    keel_grpc_target t;
    keel_error err;
    ck_assert_int_eq(keel_grpc_parse_target(a, &t, &err), KEEL_OK);
    ck_assert_uint_eq(strlen(t.host), 255);
    ck_assert_uint_eq(strlen(t.authority), 260);
    a[0] = '[';
    memset(a + 1, 'h', 255);
    strcpy(a + 256, "]:65535");
    ck_assert_int_eq(keel_grpc_parse_target(a, &t, &err), KEEL_OK);
    ck_assert_uint_eq(strlen(t.authority), 263);
    strcpy(a, "unix:");
    memset(a + 5, 'p', 107);
    a[5 + 107] = '\0';
    ck_assert_int_eq(keel_grpc_parse_target(a, &t, &err), KEEL_OK);
    ck_assert_uint_eq(strlen(t.host), 107);
    strcpy(a, "unix-abstract:");
    memset(a + 14, 'p', 106);
    a[14 + 106] = '\0';
    ck_assert_int_eq(keel_grpc_parse_target(a, &t, &err), KEEL_OK);
    ck_assert_uint_eq(strlen(t.host), 106);
}
END_TEST

static void target_bad(const char *address, const char *says)
{
    keel_grpc_target t;
    keel_error err;
    memset(&err, 0, sizeof err);
    ck_assert_msg(keel_grpc_parse_target(address, &t, &err) == KEEL_EINVAL, "accepted '%.60s'",
                  address ? address : "(null)");
    ck_assert_int_eq(err.code, KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, says) != NULL, "'%.60s': '%s' does not say '%s'",
                  address ? address : "(null)", err.message, says);
}

START_TEST(targets_refused)
{
    target_bad(NULL, "empty");
    target_bad("", "empty");
    target_bad("localhost", "no port");
    target_bad("localhost:", "bad port");
    target_bad("h:0", "bad port");
    target_bad("h:65536", "bad port");
    target_bad("h:123456", "bad port");
    target_bad("h:99999999999999999999", "bad port");
    target_bad("h:-1", "bad port");
    target_bad("h:1a", "bad port");
    target_bad("h: 1", "bad port");
    target_bad(":7233", "empty host");
    target_bad("[]:7233", "empty host");
    target_bad("dns:///:1", "empty host");
    target_bad("a,b:1", "several addresses");
    target_bad("dns:///a:1,b:1", "several addresses");
    target_bad("ipv4:1.2.3.4:5,5.6.7.8:5", "several addresses");
    target_bad("[::1]:1,[::2]:1", "several addresses");
    target_bad("[::1,::2]:1", "several addresses");
    target_bad("::1:7233", "[brackets]");
    target_bad("ipv6:::1:7233", "[brackets]");
    target_bad("[::1]", "expected [IPv6 address]:port");
    target_bad("[::1]7233", "expected [IPv6 address]:port");
    target_bad("[::1:7233", "expected [IPv6 address]:port");
    target_bad("dns://8.8.8.8", "expected dns:///host:port");
    target_bad("unix:", "empty socket path");
    target_bad("unix://", "empty socket path");
    target_bad("unix-abstract:", "empty socket path");

    char a[400];
    memset(a, 'h', 300);
    strcpy(a + 300, ":7233");
    target_bad(a, "longer than 255");
    memset(a, 'h', 256);
    strcpy(a + 256, ":7233");
    target_bad(a, "longer than 255");
    strcpy(a, "unix:");
    memset(a + 5, 'p', 108);
    a[5 + 108] = '\0';
    target_bad(a, "longer than 107");
    strcpy(a, "unix-abstract:");
    memset(a + 14, 'p', 107);
    a[14 + 107] = '\0';
    target_bad(a, "longer than 106");
}
END_TEST

Suite *grpcwire_suite(void)
{
    Suite *s = suite_create("grpcwire");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, prefix_is_flag_then_big_endian_length);
    tcase_add_test(tc, deframer_whole_bytewise_and_random_splits_agree);
    tcase_add_test(tc, deframer_reuse_after_take);
    tcase_add_test(tc, deframer_empty_message);
    tcase_add_test(tc, deframer_refuses_compressed);
    tcase_add_test(tc, deframer_refuses_two_messages);
    tcase_add_test(tc, deframer_refuses_too_long_from_its_prefix);
    tcase_add_test(tc, deframer_grows_by_arrival_not_by_claim);
    tcase_add_test(tc, deframer_buffer_never_exceeds_the_message);
    tcase_add_test(tc, deframer_take_truncated);
    tcase_add_test(tc, timeout_units);
    tcase_add_test(tc, grpc_status_values);
    tcase_add_test(tc, percent_decode);
    tcase_add_test(tc, percent_decode_truncates);
    tcase_add_test(tc, base64_decode);
    tcase_add_test(tc, base64_refuses);
    tcase_add_test(tc, http_and_h2_status_maps);
    tcase_add_test(tc, targets);
    tcase_add_test(tc, targets_refused);
    suite_add_tcase(s, tc);
    return s;
}
