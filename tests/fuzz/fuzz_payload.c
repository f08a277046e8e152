/*
 * fuzz_payload - payload conversion (src/converter/payload.h): JSON text -> json/plain payload
 * (a workflow's or activity's argument, a result), payload -> JSON (what a client or the server
 * sent keel, in any encoding), and memo and search attributes built from JSON values.
 *
 * Input: one selector byte, then the body. The selector picks the encoding the body is marked
 * with (json/plain, binary/null, binary/plain, none, or bytes of the body) and the search
 * attributes' indexed type. For memo and search attributes the body splits at NUL bytes into
 * key, value, key, value, ...
 *
 * Properties: a payload made from JSON text gives back exactly that text; a payload marked
 * json/plain is given back exactly as it came, or refused.
 */
#include <stdlib.h>
#include <string.h>

#include "converter/payload.h"
#include "fuzz.h"
#include "keel/client.h"

#define MAX_LEN   (64 * 1024)
#define MAX_PAIRS 16

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

/* json[0..len) (not NUL-terminated: the payload holds bytes) must be the payload's JSON. */
static void gives_back(const keel_pb_payload *p, const uint8_t *json, size_t len, const char *how)
{
    char *out;
    keel_error err;
    if (keel_payload_to_json(p, "fuzz", &out, &err) != KEEL_OK)
        fuzz_fail("%s: a json/plain payload of accepted JSON is refused: %s", how, err.message);
    if (strlen(out) != len || memcmp(out, json, len) != 0)
        fuzz_fail("%s: %zu bytes of JSON came back as %zu: '%s'", how, len, strlen(out), out);
    free(out);
}

static void json_to_payload(const uint8_t *body, size_t len)
{
    keel_pb_payload *p;
    keel_error err;
    /* Exactly len bytes: the text need not end in a NUL. */
    if (keel_payload_new_json((const char *)body, len, "fuzz", &p, &err) == KEEL_OK) {
        if (!keel_payload_encoding_is(p, KEEL_ENCODING_JSON))
            fuzz_fail("keel_payload_new_json made a payload that is not json/plain");
        gives_back(p, body, len, "keel_payload_new_json");
        FREE_PB(p);
    }
    char *text = fuzz_strndup(body, len);
    keel_pb_payloads *ps;
    if (keel_payloads_new_json(text, "fuzz", &ps, &err) == KEEL_OK) {
        char *out;
        if (keel_payloads_to_json(ps, "fuzz", &out, &err) != KEEL_OK)
            fuzz_fail("keel_payloads_to_json refused keel_payloads_new_json's payloads: %s",
                      err.message);
        if (strcmp(out, text) != 0)
            fuzz_fail("keel_payloads_new_json('%s') came back as '%s'", text, out);
        free(out);
        FREE_PB(ps);
    }
    free(text);
}

static void payload_to_json(uint8_t selector, const uint8_t *body, size_t len)
{
    static const char *const encodings[] = {KEEL_ENCODING_JSON, KEEL_ENCODING_NULL,
                                            KEEL_ENCODING_BINARY, "json/protobuf", NULL};
    keel_pb_payload *p;
    if (keel_payload_new_bytes(body, len, &p, NULL) != KEEL_OK)
        abort();
    size_t which = selector % 6;
    char *custom = NULL;
    if (which < 4) {
        keel_payload_set_metadata(p, "encoding", encodings[which], NULL);
    } else if (which == 5) { /* the encoding is the body's first line */
        const uint8_t *nl = memchr(body, '\n', len);
        custom = fuzz_strndup(body, nl ? (size_t)(nl - body) : len);
        keel_payload_set_metadata(p, "encoding", custom, NULL);
    } else { /* none at all */
        for (size_t i = 0; i < p->n_metadata; i++)
            FREE_PB(p->metadata[i]);
        free(p->metadata);
        p->metadata = NULL;
        p->n_metadata = 0;
    }
    char *out;
    keel_error err;
    if (keel_payload_to_json(p, "fuzz", &out, &err) == KEEL_OK) {
        if (keel_payload_encoding_is(p, KEEL_ENCODING_NULL)) {
            if (strcmp(out, "null") != 0)
                fuzz_fail("a binary/null payload reads as '%s'", out);
        } else if (!keel_payload_encoding_is(p, KEEL_ENCODING_JSON)) {
            fuzz_fail("a payload that is neither json/plain nor binary/null read as JSON");
        } else if (strlen(out) != len || memcmp(out, body, len) != 0) {
            fuzz_fail("a json/plain payload of %zu bytes read as %zu: '%s'", len, strlen(out), out);
        }
        free(out);
    }
    free(custom);
    FREE_PB(p);
}

static void maps(uint8_t selector, const uint8_t *body, size_t len)
{
    char *piece[2 * MAX_PAIRS];
    size_t n = 0;
    for (size_t at = 0; at <= len && n < 2 * MAX_PAIRS;) {
        const uint8_t *nul = memchr(body + at, 0, len - at);
        size_t end = nul ? (size_t)(nul - body) : len;
        piece[n++] = fuzz_strndup(body + at, end - at);
        at = end + 1;
    }
    size_t pairs = n / 2;
    keel_kv kv[MAX_PAIRS];
    keel_search_attribute_value sa[MAX_PAIRS];
    for (size_t i = 0; i < pairs; i++) {
        kv[i] = (keel_kv){.key = piece[2 * i], .value = piece[2 * i + 1]};
        sa[i] = (keel_search_attribute_value){.name = piece[2 * i],
                                              .type = (int)((selector >> 4) + i) % 9 - 1,
                                              .json = piece[2 * i + 1]};
    }
    keel_error err;
    Temporal__Api__Common__V1__Memo *memo = keel_memo_new(kv, pairs, &err);
    if (memo) {
        fuzz_pb_touch((ProtobufCMessage *const *)&memo, 1);
        FREE_PB(memo);
    }
    Temporal__Api__Common__V1__SearchAttributes *attrs =
        keel_search_attributes_new(sa, pairs, &err);
    if (attrs) {
        fuzz_pb_touch((ProtobufCMessage *const *)&attrs, 1);
        FREE_PB(attrs);
    }
    for (size_t i = 0; i < n; i++)
        free(piece[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_LEN)
        return 0;
    /* A copy of exactly the body's length, so that ASan sees a read past its end. */
    size_t len = size - 1;
    uint8_t *body = malloc(len ? len : 1);
    if (body == NULL)
        abort();
    memcpy(body, data + 1, len);
    json_to_payload(body, len);
    payload_to_json(data[0], body, len);
    maps(data[0], body, len);
    free(body);
    return 0;
}
