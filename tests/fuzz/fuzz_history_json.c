/*
 * fuzz_history_json - a History from JSON text (src/converter/protojson.h), as `keelctl replay`
 * and the replay tests read recorded histories.
 *
 * Property: what decodes encodes, and decodes again to the same message (same packed bytes),
 * compact and indented alike; encoding that again gives the same text.
 */
#include <stdlib.h>
#include <string.h>

#include "converter/protojson.h"
#include "fuzz.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
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
