/*
 * fuzz_history_bin - a binary temporal.api.history.v1.History through the replayer
 * (keel_replay, include/keel/replayer.h), as `keelctl replay --history F.bin` runs it: decoded,
 * its workflow type checked, and replayed through the engine with the type it names.
 *
 * Properties: a decoded history that encodes as JSON decodes back to the same JSON; what
 * keel_proto_unpack_pruned keeps of a history nested too deep passes the depth check.
 */
#include <stdlib.h>
#include <string.h>

#include "converter/protojson.h"
#include "fuzz.h"
#include "keel/replayer.h"
#include "proto/depth.h"
#include "temporal/api/history/v1/message.pb-c.h"

#define MAX_LEN (256 * 1024)

#define FREE_PB(m) protobuf_c_message_free_unpacked((ProtobufCMessage *)(m), NULL)

static const ProtobufCMessageDescriptor *const desc =
    &temporal__api__history__v1__history__descriptor;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    /* The replayer's own path, with each type: all but the one the history names refuse it
     * after decoding. */
    size_t n;
    const keel_workflow_type *const *types = fuzz_workflow_types(&n);
    for (size_t i = 0; i < n; i++) {
        keel_error err;
        (void)keel_replay(types[i], (const char *)data, size, &err);
    }
    keel_error err;
    ProtobufCMessage *m = NULL;
    bool too_deep = false;
    if (keel_proto_check(desc, data, size, KEEL_PROTO_MAX_DEPTH, &too_deep, &err) != KEEL_OK &&
        too_deep) {
        /* What the worker still reads of a task nested too deep: it must pass the check. */
        size_t pruned = 0;
        if (keel_proto_unpack_pruned(desc, data, size, &m, &pruned, &err) == KEEL_OK) {
            size_t len = protobuf_c_message_get_packed_size(m);
            uint8_t *bytes = malloc(len ? len : 1);
            if (bytes == NULL)
                abort();
            protobuf_c_message_pack(m, bytes);
            if (keel_proto_check(desc, bytes, len, KEEL_PROTO_MAX_DEPTH, NULL, &err) != KEEL_OK)
                fuzz_fail("keel_proto_unpack_pruned left %zu too deep: %s", pruned, err.message);
            free(bytes);
            FREE_PB(m);
        }
        return 0;
    }
    m = fuzz_pb_unpack(desc, data, size);
    if (m == NULL)
        return 0;
    char *text = keel_protojson_encode(m, false, &err); /* refused: a string that is not UTF-8 */
    if (text) {
        ProtobufCMessage *again;
        if (keel_protojson_decode(desc, text, strlen(text), &again, &err) != KEEL_OK)
            fuzz_fail("keel_protojson_decode refused what encode wrote: %s\n%s", err.message, text);
        char *text2 = keel_protojson_encode(again, false, &err);
        if (text2 == NULL || strcmp(text, text2) != 0)
            fuzz_fail("binary -> JSON -> message -> JSON changed the text:\n%s\n%s", text,
                      text2 ? text2 : err.message);
        free(text2);
        FREE_PB(again);
        free(text);
    }
    FREE_PB(m);
    return 0;
}
