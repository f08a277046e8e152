/*
 * fuzz_history_json - a History from JSON text (src/converter/protojson.h), as `keelctl replay`
 * and the replay tests read recorded histories.
 *
 * Properties: what decodes encodes, and decodes again to the same message (same packed bytes),
 * compact and indented alike; encoding that again gives the same text. And the two decoders
 * agree: keel_protojson_decode (reading the text straight into the message) and keel_json_parse
 * + keel_protojson_from_cjson (through a tree) both refuse the input or both give the same packed
 * bytes - as a History and as a few other types (Any, Failure with its cause chain, a Timestamp
 * alone). The arena decode (keel_protojson_decode_arena, what the replayer uses) agrees with
 * keel_protojson_decode too: the same return code, the same error text, the same packed bytes;
 * one arena takes every decode of an input, failed ones included.
 */
#include <stdlib.h>
#include <string.h>

#include "converter/protojson.h"
#include "fuzz.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "keel/json.h"
#include "temporal/api/failure/v1/message.pb-c.h"
#include "temporal/api/history/v1/message.pb-c.h"

#define MAX_LEN (256 * 1024)

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

static const ProtobufCMessageDescriptor *const desc =
    &temporal__api__history__v1__history__descriptor;

static uint8_t *packed(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf == NULL)
        abort();
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* text must decode to a message that packs to want[0..want_len); returns that message. */
static ProtobufCMessage *same(const char *text, const uint8_t *want, size_t want_len,
                              const char *how)
{
    ProtobufCMessage *m;
    keel_error err;
    if (keel_protojson_decode(desc, text, strlen(text), &m, &err) != KEEL_OK)
        fuzz_fail("keel_protojson_decode refused its own %s encoding: %s\n%s", how, err.message,
                  text);
    size_t len;
    uint8_t *got = packed(m, &len);
    if (len != want_len || memcmp(got, want, len) != 0)
        fuzz_fail("the %s JSON round trip changed the message (%zu bytes, then %zu)\n%s", how,
                  want_len, len, text);
    free(got);
    return m;
}

/* The streaming decoder, the tree decoder and the arena decoder (into arena) agree on text as
 * type d. */
static void decoders_agree(const ProtobufCMessageDescriptor *d, const char *text, size_t size,
                           keel_arena *arena)
{
    ProtobufCMessage *streamed = NULL, *treed = NULL, *arenaed = NULL;
    keel_error e1, e2, e3;
    if (text == NULL)
        text = "";
    int rc1 = keel_protojson_decode(d, text, size, &streamed, &e1);
    int rc3 = keel_protojson_decode_arena(d, text, size, arena, &arenaed, &e3);
    if (rc3 != rc1 || (rc3 == KEEL_OK) != (arenaed != NULL))
        fuzz_fail("as %s the arena decoder returned %d, the streaming decoder %d\n%.*s", d->name,
                  rc3, rc1, (int)(size < 4096 ? size : 4096), text);
    if (rc1 != KEEL_OK && strcmp(e1.message, e3.message) != 0)
        fuzz_fail("as %s the arena decoder said '%s', the streaming decoder '%s'", d->name,
                  e3.message, e1.message);
    cJSON *tree = NULL;
    int rc2 = keel_json_parse(text, size, KEEL_JSON_STRICT, NULL, &tree, &e2);
    if (rc2 == KEEL_OK) {
        rc2 = keel_protojson_from_cjson(d, tree, &treed, &e2);
        cJSON_Delete(tree);
    }
    if ((rc1 == KEEL_OK) != (rc2 == KEEL_OK))
        fuzz_fail("as %s the streaming decoder %s but the tree decoder %s: %s\n%.*s", d->name,
                  rc1 == KEEL_OK ? "took it" : "refused it",
                  rc2 == KEEL_OK ? "took it" : "refused it",
                  rc1 == KEEL_OK ? e2.message : e1.message, (int)(size < 4096 ? size : 4096), text);
    if ((rc1 == KEEL_OK) != (streamed != NULL) || (rc2 == KEEL_OK) != (treed != NULL))
        fuzz_fail("as %s a decoder's result does not match its return code", d->name);
    if (rc1 == KEEL_OK) {
        size_t n1, n2;
        uint8_t *b1 = packed(streamed, &n1), *b2 = packed(treed, &n2);
        if (n1 != n2 || memcmp(b1, b2, n1) != 0)
            fuzz_fail("as %s the two decoders gave different messages (%zu and %zu bytes)\n%.*s",
                      d->name, n1, n2, (int)(size < 4096 ? size : 4096), text);
        size_t n3;
        uint8_t *b3 = packed(arenaed, &n3);
        if (n1 != n3 || memcmp(b1, b3, n1) != 0)
            fuzz_fail("as %s the arena decoder gave a different message (%zu and %zu bytes)\n%.*s",
                      d->name, n1, n3, (int)(size < 4096 ? size : 4096), text);
        free(b1);
        free(b2);
        free(b3);
        FREE_PB(streamed);
        FREE_PB(treed);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    keel_arena *arena = keel_arena_new();
    if (arena == NULL)
        abort();
    decoders_agree(desc, (const char *)data, size, arena);
    decoders_agree(&google__protobuf__any__descriptor, (const char *)data, size, arena);
    decoders_agree(&temporal__api__failure__v1__failure__descriptor, (const char *)data, size,
                   arena);
    decoders_agree(&google__protobuf__timestamp__descriptor, (const char *)data, size, arena);
    keel_arena_free(arena);
    ProtobufCMessage *m;
    keel_error err;
    if (keel_protojson_decode(desc, (const char *)data, size, &m, &err) != KEEL_OK)
        return 0;
    size_t len;
    uint8_t *bytes = packed(m, &len);
    char *text = keel_protojson_encode(m, false, &err);
    if (text == NULL)
        fuzz_fail("a decoded history does not encode: %s", err.message);
    char *pretty = keel_protojson_encode(m, true, &err);
    if (pretty == NULL)
        fuzz_fail("a decoded history does not encode indented: %s", err.message);
    ProtobufCMessage *again = same(text, bytes, len, "compact");
    FREE_PB(same(pretty, bytes, len, "indented"));
    char *text2 = keel_protojson_encode(again, false, &err);
    if (text2 == NULL || strcmp(text, text2) != 0)
        fuzz_fail("encoding is not stable:\n%s\n%s", text, text2 ? text2 : err.message);
    free(text2);
    FREE_PB(again);
    free(pretty);
    free(text);
    free(bytes);
    FREE_PB(m);
    return 0;
}
