/* proto3 JSON for protobuf-c messages, driven by descriptors (see protojson.h). */
#include "converter/protojson.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "converter/fieldnames.h"
#include "google/protobuf/any.pb-c.h"
#include "keel/json.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/field_mask.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "proto/depth.h"
#include "temporal/api/errordetails/v1/message.pb-c.h"
#include "temporal/api/update/v1/message.pb-c.h"
#include "util/arena.h"

#define MEMBER(m, off)  ((void *)((char *)(m) + (off)))
#define CMEMBER(m, off) ((const void *)((const char *)(m) + (off)))

/* The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z. */
#define TIMESTAMP_MIN_SECONDS (-62135596800LL)
#define TIMESTAMP_MAX_SECONDS 253402300799LL
/* The range of google.protobuf.Duration: about +-10000 years. */
#define DURATION_MAX_SECONDS 315576000000LL
/* Integers a double holds exactly: a JSON number beyond this may not be the integer written. */
#define EXACT_DOUBLE_LIMIT 9007199254740992.0

/* A decoder's "valid, but leave the field out" (an enum value name this build does not know). */
#define PJ_SKIP 1

/* ------------------------------------------------------------------------------------------ */
/* base64 */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_quad(uint32_t bits, size_t chars, char *out)
{
    for (size_t i = 0; i < 4; i++)
        out[i] = i < chars ? b64_alphabet[(bits >> (18 - 6 * i)) & 63] : '=';
}

char *keel_base64_encode(const uint8_t *data, size_t len)
{
    if (len / 3 >= (SIZE_MAX - 5) / 4)
        return NULL;
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3, o += 4) {
        size_t left = len - i;
        uint32_t bits = (uint32_t)data[i] << 16;
        if (left > 1)
            bits |= (uint32_t)data[i + 1] << 8;
        if (left > 2)
            bits |= data[i + 2];
        b64_quad(bits, left > 2 ? 4 : left + 1, out + o);
    }
    out[o] = '\0';
    return out;
}

/* The 6-bit value of a base64 character in either alphabet, or -1. */
static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* The characters of text[0..len) that carry data (*n, without the padding) and the bytes they
 * decode to (*bytes), or KEEL_EINVAL when no base64 text has that length. */
static int b64_measure(const char *text, size_t len, size_t *n, size_t *bytes, keel_error *err)
{
    *n = len;
    while (*n > 0 && len - *n < 2 && text[*n - 1] == '=')
        (*n)--;
    /* With padding the text is whole groups of four; without, a lone last character cannot
     * hold a byte. */
    if ((*n < len && len % 4 != 0) || *n % 4 == 1)
        return keel_error_set(err, KEEL_EINVAL, "not base64: %zu characters cannot be base64", len);
    *bytes = *n / 4 * 3 + (*n % 4 ? *n % 4 - 1 : 0);
    return KEEL_OK;
}

/* The n data characters of text into buf (b64_measure's byte count). */
static int b64_fill(const char *text, size_t n, uint8_t *buf, keel_error *err)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(text[i]);
        if (v < 0)
            return keel_error_set(err, KEEL_EINVAL, "not base64: bad character at offset %zu", i);
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    return KEEL_OK;
}

int keel_base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len,
                       keel_error *err)
{
    *out = NULL;
    *out_len = 0;
    size_t n, bytes;
    int rc = b64_measure(text, len, &n, &bytes, err);
    if (rc != KEEL_OK || n == 0)
        return rc;
    uint8_t *buf = malloc(bytes);
    if (buf == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory decoding base64");
    if ((rc = b64_fill(text, n, buf, err)) != KEEL_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = bytes;
    return KEEL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* small text helpers */

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static char ascii_upper(char ch)
{
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
}

static char ascii_lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Whether s is well-formed UTF-8: no stray continuation bytes, overlong forms, surrogates or
 * code points past U+10FFFF. proto3 strings must be; cJSON neither checks nor repairs it. */
static bool utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s, extra;
        uint32_t cp, min;
        if (c < 0x80) {
            s++;
            continue;
        }
        if ((c & 0xe0) == 0xc0)
            extra = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            extra = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            extra = 3, cp = c & 0x07, min = 0x10000;
        else
            return false;
        for (unsigned i = 1; i <= extra; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        s += extra + 1;
    }
    return true;
}

/* A JSON number's syntax (leading zeros tolerated), for numbers written as strings. */
static bool json_number_text(const char *s)
{
    if (*s == '-')
        s++;
    if (!is_digit(*s))
        return false;
    while (is_digit(*s))
        s++;
    if (*s == '.') {
        if (!is_digit(*++s))
            return false;
        while (is_digit(*s))
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!is_digit(*s))
            return false;
        while (is_digit(*s))
            s++;
    }
    return *s == '\0';
}

/* ------------------------------------------------------------------------------------------ */
/* one conversion's state: options, the error, the depth and the JSON path being worked on */

/* The path is kept as a stack of segments (a field name, a map key or a list index), borrowed
 * from the JSON or the descriptor for as long as they are on the stack, and written out as text
 * only when an error names it: the success path formats nothing. */
/* The longest path an error shows; longer ones end in "...". */
#define PATH_TEXT_MAX 640
/* Segments past this many are counted, not kept: the text is cut long before. */
#define PATH_SEGS_MAX 512

typedef enum { SEG_FIELD, SEG_INDEX, SEG_KEY } seg_kind;

typedef struct path_seg {
    seg_kind kind;
    const char *name; /* SEG_FIELD, SEG_KEY: len bytes, or up to its NUL when len is NAME_NUL */
    size_t len;
    size_t index; /* SEG_INDEX */
} path_seg;

#define NAME_NUL SIZE_MAX

typedef struct pj {
    keel_protojson_resolver resolve;
    void *resolve_ctx;
    keel_error *err;
    int code; /* the code of the last failure, for callers that passed err == NULL */
    int depth;
    bool utf8_checked;    /* the tree is keel_json_parse's: its strings are valid UTF-8 already */
    keel_json_reader *jr; /* decoding straight from text: the reader, and the text it reads */
    const char *text;
    keel_arena *arena; /* decoded messages are allocated here instead of with malloc */
    size_t n_segs;     /* segments pushed; the first PATH_SEGS_MAX are in segs */
    path_seg segs[PATH_SEGS_MAX];
} pj;

static void pj_init(pj *c, const keel_protojson_options *opts, keel_error *err)
{
    c->resolve = opts && opts->resolve ? opts->resolve : keel_protojson_resolve_builtin;
    c->resolve_ctx = opts ? opts->resolve_ctx : NULL;
    c->err = err;
    c->code = KEEL_OK;
    c->depth = 0;
    c->utf8_checked = false;
    c->jr = NULL;
    c->text = NULL;
    c->arena = NULL;
    c->n_segs = 0;
}

/* The decoded message's memory: from the arena when there is one, else malloc'd as
 * protobuf_c_message_unpack would. */
static void *pj_alloc(pj *c, size_t size)
{
    return c->arena ? keel_arena_alloc(c->arena, size) : malloc(size);
}

static void *pj_calloc(pj *c, size_t n, size_t size)
{
    return c->arena ? keel_arena_calloc(c->arena, n, size) : calloc(n, size);
}

static char *pj_strdup(pj *c, const char *s)
{
    return c->arena ? keel_arena_strndup(c->arena, s, strlen(s)) : strdup(s);
}

/* Drops a decoded message that will not be kept (arena messages go with the arena). */
static void pj_discard(pj *c, ProtobufCMessage *m)
{
    if (c->arena == NULL)
        protobuf_c_message_free_unpacked(m, NULL);
}

/* Push a segment; returns what to give path_pop. */
static size_t path_push(pj *c, seg_kind kind, const char *name, size_t len, size_t index)
{
    size_t saved = c->n_segs;
    if (saved < PATH_SEGS_MAX)
        c->segs[saved] = (path_seg){.kind = kind, .name = name, .len = len, .index = index};
    c->n_segs++;
    return saved;
}

static size_t path_field(pj *c, const char *name)
{
    return path_push(c, SEG_FIELD, name, NAME_NUL, 0);
}

static size_t path_index(pj *c, size_t i)
{
    return path_push(c, SEG_INDEX, NULL, 0, i);
}

static size_t path_key(pj *c, const char *key)
{
    return path_push(c, SEG_KEY, key, NAME_NUL, 0);
}

static void path_pop(pj *c, size_t saved)
{
    c->n_segs = saved;
}

/* The path as text ("events[3].activityTaskScheduledEventAttributes.input"), cut to fit buf;
 * returns its length (buf's size - 1 when it was cut or just fits). */
static size_t path_text(const pj *c, char *buf, size_t size)
{
    size_t len = 0, n = c->n_segs < PATH_SEGS_MAX ? c->n_segs : PATH_SEGS_MAX;
    buf[0] = '\0';
    for (size_t i = 0; i < n && len < size - 1; i++) {
        const path_seg *s = &c->segs[i];
        size_t room = size - len;
        size_t name_len = s->name == NULL ? 0 : s->len != NAME_NUL ? s->len : strlen(s->name);
        int nl = (int)(name_len < size ? name_len : size);
        int w = s->kind == SEG_INDEX ? snprintf(buf + len, room, "[%zu]", s->index)
                : s->kind == SEG_KEY
                    ? snprintf(buf + len, room, "[\"%.*s\"]", nl, s->name)
                    : snprintf(buf + len, room, len ? ".%.*s" : "%.*s", nl, s->name);
        if (w > 0)
            len = (size_t)w < room ? len + (size_t)w : size - 1;
    }
    return len;
}

/* Fail with "path: what". Returns code. */
__attribute__((format(printf, 3, 4))) static int fail(pj *c, keel_error_code code, const char *fmt,
                                                      ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    c->code = code;
    char path[PATH_TEXT_MAX];
    size_t len = path_text(c, path, sizeof path);
    if (len == 0)
        return keel_error_set(c->err, code, "%s", what);
    const char *cut = len >= sizeof path - 1 ? "..." : "";
    return keel_error_set(c->err, code, "%s%s: %s", path, cut, what);
}

static int nomem(pj *c)
{
    return fail(c, KEEL_ENOMEM, "out of memory");
}

/* cJSON's constructors return NULL when out of memory: record it. */
static cJSON *made(pj *c, cJSON *j)
{
    if (j == NULL)
        nomem(c);
    return j;
}

/* ------------------------------------------------------------------------------------------ */
/* descriptors: names, sizes, presence */

/* A field's JSON name (keel_fieldnames_json_name), kept on the stack when short. */
typedef struct jname {
    char small[96];
    char *heap;
} jname;

static const char *jname_make(jname *n, const char *proto_name)
{
    size_t len = strlen(proto_name);
    n->heap = len < sizeof n->small ? NULL : malloc(len + 1);
    char *dst = n->heap ? n->heap : n->small;
    if (len >= sizeof n->small && n->heap == NULL)
        return NULL;
    keel_fieldnames_json_name(proto_name, dst);
    return dst;
}

/* Whether key[0..len) is the JSON name of the field called proto_name, without building it. */
static bool json_name_equals(const char *proto_name, const char *key, size_t len)
{
    bool upper = false;
    const char *end = key + len;
    for (const char *p = proto_name; *p; p++) {
        if (*p == '_') {
            upper = true;
            continue;
        }
        if (key == end || *key++ != (upper ? ascii_upper(*p) : *p))
            return false;
        upper = false;
    }
    return key == end;
}

/* The index of the field whose JSON name is key, or -1. Writers put the members in field order,
 * so the field after the last one found is the likeliest: look from there, round the list once. */
static long find_json_name(const ProtobufCMessageDescriptor *d, const char *key, size_t len,
                           unsigned from)
{
    for (unsigned k = 0; k < d->n_fields; k++) {
        unsigned i = from + k < d->n_fields ? from + k : from + k - d->n_fields;
        if (json_name_equals(d->fields[i].name, key, len))
            return i;
    }
    return -1;
}

/* The size of one element of a repeated field, as protobuf-c lays out its arrays. */
static size_t elem_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(int64_t);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default: /* the 32-bit integers and enums */
        return sizeof(int32_t);
    }
}

static bool is_pointer_type(ProtobufCType type)
{
    return type == PROTOBUF_C_TYPE_STRING || type == PROTOBUF_C_TYPE_MESSAGE;
}

/* protobuf-c 1.4 has no map flag: a map is a repeated message field whose type is a generated
 * "...Entry" with exactly key = 1 and value = 2. */
static bool is_map_entry(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const ProtobufCMessageDescriptor *d = f->descriptor;
    size_t len = strlen(d->short_name);
    return d->n_fields == 2 && d->fields[0].id == 1 && strcmp(d->fields[0].name, "key") == 0 &&
           d->fields[1].id == 2 && strcmp(d->fields[1].name, "value") == 0 && len >= 5 &&
           strcmp(d->short_name + len - 5, "Entry") == 0;
}

static uint32_t oneof_case(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    uint32_t id;
    memcpy(&id, CMEMBER(m, f->quantifier_offset), sizeof id);
    return id;
}

/* A proto3 implicit-presence field at its default, by the test protobuf-c's packer uses. */
static bool is_zeroish(const ProtobufCFieldDescriptor *f, const void *member)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v;
        memcpy(&v, member, sizeof v);
        return v == 0;
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        float v;
        memcpy(&v, member, sizeof v);
        return v == 0;
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v;
        memcpy(&v, member, sizeof v);
        return v == 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s;
        memcpy(&s, member, sizeof s);
        return s == NULL || *s == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)member)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const void *p;
        memcpy(&p, member, sizeof p);
        return p == NULL;
    }
    default: { /* bool, enums and the 32-bit integers are all 4 bytes */
        uint32_t v;
        memcpy(&v, member, sizeof v);
        return v == 0;
    }
    }
}

/* Whether protobuf_c_message_pack() would write the field: JSON shows the same fields. */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *member = CMEMBER(m, f->offset);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n;
        memcpy(&n, CMEMBER(m, f->quantifier_offset), sizeof n);
        return n > 0;
    }
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    bool oneof = (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
    if (oneof && oneof_case(m, f) != f->id)
        return false;
    if (is_pointer_type(f->type) && (oneof || f->label == PROTOBUF_C_LABEL_OPTIONAL)) {
        const void *p;
        memcpy(&p, member, sizeof p);
        return p != NULL && p != f->default_value;
    }
    if (oneof)
        return true;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
        return *(const protobuf_c_boolean *)CMEMBER(m, f->quantifier_offset);
    return !is_zeroish(f, member);
}

/* Record that a singular field holds a value: the oneof case, or has_ of a proto2 optional. */
static void mark_present(const ProtobufCFieldDescriptor *f, ProtobufCMessage *m)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t id = f->id;
        memcpy(MEMBER(m, f->quantifier_offset), &id, sizeof id);
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && !is_pointer_type(f->type)) {
        protobuf_c_boolean has = 1;
        memcpy(MEMBER(m, f->quantifier_offset), &has, sizeof has);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* well-known types */

typedef cJSON *(*wkt_encoder)(pj *c, const ProtobufCMessage *m);
typedef int (*wkt_decoder)(pj *c, const cJSON *j, ProtobufCMessage *m);

typedef struct wkt {
    const char *name;
    wkt_encoder encode; /* NULL: as an ordinary message */
    wkt_decoder decode;
} wkt;

static cJSON *enc_timestamp(pj *c, const ProtobufCMessage *m);
static cJSON *enc_duration(pj *c, const ProtobufCMessage *m);
static cJSON *enc_wrapper(pj *c, const ProtobufCMessage *m);
static cJSON *enc_field_mask(pj *c, const ProtobufCMessage *m);
static cJSON *enc_any(pj *c, const ProtobufCMessage *m);
static int dec_timestamp(pj *c, const cJSON *j, ProtobufCMessage *m);
static int dec_duration(pj *c, const cJSON *j, ProtobufCMessage *m);
static int dec_wrapper(pj *c, const cJSON *j, ProtobufCMessage *m);
static int dec_field_mask(pj *c, const cJSON *j, ProtobufCMessage *m);
static int dec_any(pj *c, const cJSON *j, ProtobufCMessage *m);

/* Matched by name, so that descriptors generated elsewhere (the same protobuf-c) work too.
 * Timestamp and Duration stay first: wkt_find gives them by address before any name. */
static const wkt wkts[] = {
    {"google.protobuf.Timestamp", enc_timestamp, dec_timestamp},
    {"google.protobuf.Duration", enc_duration, dec_duration},
    {"google.protobuf.DoubleValue", enc_wrapper, dec_wrapper},
    {"google.protobuf.FloatValue", enc_wrapper, dec_wrapper},
    {"google.protobuf.Int64Value", enc_wrapper, dec_wrapper},
    {"google.protobuf.UInt64Value", enc_wrapper, dec_wrapper},
    {"google.protobuf.Int32Value", enc_wrapper, dec_wrapper},
    {"google.protobuf.UInt32Value", enc_wrapper, dec_wrapper},
    {"google.protobuf.BoolValue", enc_wrapper, dec_wrapper},
    {"google.protobuf.StringValue", enc_wrapper, dec_wrapper},
    {"google.protobuf.BytesValue", enc_wrapper, dec_wrapper},
    {"google.protobuf.FieldMask", enc_field_mask, dec_field_mask},
    {"google.protobuf.Any", enc_any, dec_any},
    {"google.protobuf.Empty", NULL, NULL},
};

static const wkt *wkt_find(const ProtobufCMessageDescriptor *d)
{
    /* Every history event has a Timestamp, many a Duration: those two by address first. */
    if (d == &google__protobuf__timestamp__descriptor)
        return &wkts[0];
    if (d == &google__protobuf__duration__descriptor)
        return &wkts[1];
    if (d->name[0] != 'g' || strncmp(d->name, "google.protobuf.", 16) != 0)
        return NULL;
    for (size_t i = 0; i < sizeof wkts / sizeof wkts[0]; i++)
        if (strcmp(d->name, wkts[i].name) == 0)
            return &wkts[i];
    return NULL;
}

static const ProtobufCMessageDescriptor *const builtin_types[] = {
    &google__protobuf__any__descriptor,
    &google__protobuf__duration__descriptor,
    &google__protobuf__empty__descriptor,
    &google__protobuf__field_mask__descriptor,
    &google__protobuf__timestamp__descriptor,
    &google__protobuf__double_value__descriptor,
    &google__protobuf__float_value__descriptor,
    &google__protobuf__int64_value__descriptor,
    &google__protobuf__uint64_value__descriptor,
    &google__protobuf__int32_value__descriptor,
    &google__protobuf__uint32_value__descriptor,
    &google__protobuf__bool_value__descriptor,
    &google__protobuf__string_value__descriptor,
    &google__protobuf__bytes_value__descriptor,
    &temporal__api__update__v1__request__descriptor,
    &temporal__api__update__v1__acceptance__descriptor,
    &temporal__api__update__v1__rejection__descriptor,
    &temporal__api__update__v1__response__descriptor,
    &temporal__api__update__v1__outcome__descriptor,
    &temporal__api__errordetails__v1__not_found_failure__descriptor,
    &temporal__api__errordetails__v1__workflow_execution_already_started_failure__descriptor,
    &temporal__api__errordetails__v1__namespace_not_active_failure__descriptor,
    &temporal__api__errordetails__v1__namespace_unavailable_failure__descriptor,
    &temporal__api__errordetails__v1__namespace_invalid_state_failure__descriptor,
    &temporal__api__errordetails__v1__namespace_not_found_failure__descriptor,
    &temporal__api__errordetails__v1__namespace_already_exists_failure__descriptor,
    &temporal__api__errordetails__v1__client_version_not_supported_failure__descriptor,
    &temporal__api__errordetails__v1__server_version_not_supported_failure__descriptor,
    &temporal__api__errordetails__v1__cancellation_already_requested_failure__descriptor,
    &temporal__api__errordetails__v1__query_failed_failure__descriptor,
    &temporal__api__errordetails__v1__permission_denied_failure__descriptor,
    &temporal__api__errordetails__v1__resource_exhausted_failure__descriptor,
    &temporal__api__errordetails__v1__system_workflow_failure__descriptor,
    &temporal__api__errordetails__v1__workflow_not_ready_failure__descriptor,
    &temporal__api__errordetails__v1__newer_build_exists_failure__descriptor,
    &temporal__api__errordetails__v1__multi_operation_execution_failure__descriptor,
    &temporal__api__errordetails__v1__activity_execution_already_started_failure__descriptor,
    &temporal__api__errordetails__v1__nexus_operation_execution_already_started_failure__descriptor,
    &temporal__api__errordetails__v1__workflow_task_completion_buffer_lost_failure__descriptor,
};

const ProtobufCMessageDescriptor *keel_protojson_resolve_builtin(const char *full_name, void *ctx)
{
    (void)ctx;
    for (size_t i = 0; i < sizeof builtin_types / sizeof builtin_types[0]; i++)
        if (strcmp(builtin_types[i]->name, full_name) == 0)
            return builtin_types[i];
    return NULL;
}

/* The descriptor for an Any's type URL: the full name is what follows the last '/'. */
static const ProtobufCMessageDescriptor *resolve_url(pj *c, const char *url)
{
    const char *slash = strrchr(url, '/');
    return c->resolve(slash ? slash + 1 : url, c->resolve_ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* calendar arithmetic for timestamps (proleptic Gregorian, UTC) */

static bool is_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d. Counting years from March puts the leap day at the end of the
 * year, so the day of the year follows from the month by one formula; 400-year eras of 146097
 * days make the rest division. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned year_of_era = (unsigned)(y - era * 400);
    unsigned day_of_year = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned day_of_era = (unsigned)(days - era * 146097);
    unsigned year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    unsigned day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    unsigned mp = (5 * day_of_year + 2) / 153;
    *d = day_of_year - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = era * 400 + year_of_era + (*m <= 2);
}

/* ".123", ".123456", ".123456789" or nothing: the shortest of 0, 3, 6 or 9 digits that is
 * exact, as the official encoders write it. ns is 0..999999999. */
static int format_fraction(char *out, size_t room, int32_t ns)
{
    if (ns == 0)
        return snprintf(out, room, "%s", "");
    if (ns % 1000000 == 0)
        return snprintf(out, room, ".%03" PRId32, ns / 1000000);
    if (ns % 1000 == 0)
        return snprintf(out, room, ".%06" PRId32, ns / 1000);
    return snprintf(out, room, ".%09" PRId32, ns);
}

/* Reads exactly n digits. */
static bool read_digits(const char **s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++, (*s)++) {
        if (!is_digit(**s))
            return false;
        v = v * 10 + (unsigned)(**s - '0');
    }
    *out = v;
    return true;
}

static bool read_char(const char **s, char ch)
{
    if (**s != ch)
        return false;
    (*s)++;
    return true;
}

/* Reads ".digits" (1 to 9 of them) when present, as nanoseconds. */
static bool read_fraction(const char **s, int32_t *ns)
{
    *ns = 0;
    if (!read_char(s, '.'))
        return true;
    int n = 0;
    int32_t v = 0;
    for (; is_digit(**s); (*s)++, n++) {
        if (n == 9)
            return false;
        v = v * 10 + (**s - '0');
    }
    for (int i = n; i < 9; i++)
        v *= 10;
    *ns = v;
    return n > 0;
}

/* "Z" or "+hh:mm" / "-hh:mm", as seconds east of UTC. */
static bool read_offset(const char **s, int64_t *offset)
{
    *offset = 0;
    if (read_char(s, 'Z') || read_char(s, 'z'))
        return true;
    int sign = read_char(s, '-') ? -1 : (read_char(s, '+') ? 1 : 0);
    unsigned h, m;
    if (sign == 0 || !read_digits(s, 2, &h) || !read_char(s, ':') || !read_digits(s, 2, &m) ||
        h > 23 || m > 59)
        return false;
    *offset = sign * (int64_t)(h * 3600 + m * 60);
    return true;
}

/* RFC 3339: yyyy-mm-ddThh:mm:ss[.f{1,9}](Z|+hh:mm|-hh:mm), within the Timestamp range. */
static bool parse_timestamp(const char *s, int64_t *seconds, int32_t *nanos)
{
    unsigned y, mo, d, h, mi, se;
    int64_t offset;
    if (!read_digits(&s, 4, &y) || !read_char(&s, '-') || !read_digits(&s, 2, &mo) ||
        !read_char(&s, '-') || !read_digits(&s, 2, &d) ||
        !(read_char(&s, 'T') || read_char(&s, 't')) || !read_digits(&s, 2, &h) ||
        !read_char(&s, ':') || !read_digits(&s, 2, &mi) || !read_char(&s, ':') ||
        !read_digits(&s, 2, &se) || !read_fraction(&s, nanos) || !read_offset(&s, &offset) ||
        *s != '\0')
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59)
        return false;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
    *seconds = t;
    return t >= TIMESTAMP_MIN_SECONDS && t <= TIMESTAMP_MAX_SECONDS;
}

/* "[-]seconds[.f{1,9}]s" within the Duration range. */
static bool parse_duration(const char *s, int64_t *seconds, int32_t *nanos)
{
    bool neg = read_char(&s, '-');
    int64_t v = 0;
    if (!is_digit(*s))
        return false;
    for (; is_digit(*s); s++) {
        v = v * 10 + (*s - '0');
        if (v > DURATION_MAX_SECONDS)
            return false;
    }
    int32_t ns;
    if (!read_fraction(&s, &ns) || !read_char(&s, 's') || *s != '\0')
        return false;
    *seconds = neg ? -v : v;
    *nanos = neg ? -ns : ns;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding */

static cJSON *enc_message(pj *c, const ProtobufCMessage *m);

/* Adds v (which may be NULL after a failure already recorded) to obj under key. */
static int add_item(pj *c, cJSON *obj, const char *key, cJSON *v)
{
    if (v == NULL)
        return c->code;
    if (!cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        return nomem(c);
    }
    return KEEL_OK;
}

static cJSON *enc_int64(pj *c, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return made(c, cJSON_CreateString(buf));
}

static cJSON *enc_uint64(pj *c, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return made(c, cJSON_CreateString(buf));
}

static cJSON *enc_double(pj *c, double v)
{
    if (isnan(v))
        return made(c, cJSON_CreateString("NaN"));
    if (isinf(v))
        return made(c, cJSON_CreateString(v > 0 ? "Infinity" : "-Infinity"));
    return made(c, cJSON_CreateNumber(v));
}

/* cJSON prints doubles: widen a float through the shortest decimal that reads back as the same
 * float, so that 0.1f reads "0.1" rather than "0.10000000149011612". */
static cJSON *enc_float(pj *c, float v)
{
    if (!isfinite(v))
        return enc_double(c, v);
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    return made(c, cJSON_CreateNumber(strtod(buf, NULL)));
}

static cJSON *enc_enum(pj *c, const ProtobufCEnumDescriptor *ed, int32_t v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
    return made(c, ev ? cJSON_CreateString(ev->name) : cJSON_CreateNumber(v));
}

static cJSON *enc_string(pj *c, const char *s)
{
    if (s == NULL)
        s = "";
    if (!utf8_valid(s)) {
        fail(c, KEEL_EINVAL, "string is not valid UTF-8 (proto3 JSON cannot carry it)");
        return NULL;
    }
    return made(c, cJSON_CreateString(s));
}

static cJSON *enc_bytes(pj *c, const ProtobufCBinaryData *b)
{
    char *text = keel_base64_encode(b->data, b->len);
    if (text == NULL) {
        nomem(c);
        return NULL;
    }
    cJSON *j = made(c, cJSON_CreateString(text));
    free(text);
    return j;
}

/* A submessage; a NULL element of a list or value of a map reads as the default message. */
static cJSON *enc_submessage(pj *c, const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m)
{
    if (m != NULL)
        return enc_message(c, m);
    ProtobufCMessage *def = malloc(d->sizeof_message);
    if (def == NULL) {
        nomem(c);
        return NULL;
    }
    d->message_init(def);
    cJSON *j = enc_message(c, def);
    free(def);
    return j;
}

/* One value of the given type at p (a struct member or an array element). */
static cJSON *enc_value(pj *c, ProtobufCType type, const void *tdesc, const void *p)
{
    int32_t i32;
    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f;
    double d;
    const void *ptr;
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        memcpy(&i32, p, sizeof i32);
        return made(c, cJSON_CreateNumber(i32));
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        memcpy(&u32, p, sizeof u32);
        return made(c, cJSON_CreateNumber(u32));
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        memcpy(&i64, p, sizeof i64);
        return enc_int64(c, i64);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        memcpy(&u64, p, sizeof u64);
        return enc_uint64(c, u64);
    case PROTOBUF_C_TYPE_FLOAT:
        memcpy(&f, p, sizeof f);
        return enc_float(c, f);
    case PROTOBUF_C_TYPE_DOUBLE:
        memcpy(&d, p, sizeof d);
        return enc_double(c, d);
    case PROTOBUF_C_TYPE_BOOL:
        return made(c, cJSON_CreateBool(*(const protobuf_c_boolean *)p));
    case PROTOBUF_C_TYPE_ENUM:
        memcpy(&i32, p, sizeof i32);
        return enc_enum(c, tdesc, i32);
    case PROTOBUF_C_TYPE_STRING:
        memcpy(&ptr, p, sizeof ptr);
        return enc_string(c, ptr);
    case PROTOBUF_C_TYPE_BYTES:
        return enc_bytes(c, p);
    case PROTOBUF_C_TYPE_MESSAGE:
        memcpy(&ptr, p, sizeof ptr);
        return enc_submessage(c, tdesc, ptr);
    }
    fail(c, KEEL_EINVAL, "unknown protobuf-c field type %d", (int)type);
    return NULL;
}

/* Appends v to list; on failure frees both and returns false. */
static bool append(pj *c, cJSON *list, cJSON *v)
{
    if (v != NULL && cJSON_AddItemToArray(list, v))
        return true;
    if (v != NULL) {
        cJSON_Delete(v);
        nomem(c);
    }
    cJSON_Delete(list);
    return false;
}

static cJSON *enc_list(pj *c, const ProtobufCFieldDescriptor *f, const char *arr, size_t n)
{
    cJSON *list = made(c, cJSON_CreateArray());
    size_t size = elem_size(f->type);
    for (size_t i = 0; list != NULL && i < n; i++) {
        size_t saved = path_index(c, i);
        cJSON *v = enc_value(c, f->type, f->descriptor, arr + i * size);
        path_pop(c, saved);
        if (!append(c, list, v))
            list = NULL;
    }
    return list;
}

/* A map key as JSON writes it: strings as they are, integers and bools in decimal / words. */
static const char *map_key_text(const ProtobufCFieldDescriptor *kf, const ProtobufCMessage *e,
                                char buf[24])
{
    const void *p = CMEMBER(e, kf->offset);
    int32_t i32;
    int64_t i64;
    const char *s;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING:
        memcpy(&s, p, sizeof s);
        return s ? s : "";
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p ? "true" : "false";
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        memcpy(&i32, p, sizeof i32);
        snprintf(buf, 24, "%" PRId32, i32);
        return buf;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        memcpy(&i32, p, sizeof i32);
        snprintf(buf, 24, "%" PRIu32, (uint32_t)i32);
        return buf;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        memcpy(&i64, p, sizeof i64);
        snprintf(buf, 24, "%" PRId64, i64);
        return buf;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        memcpy(&i64, p, sizeof i64);
        snprintf(buf, 24, "%" PRIu64, (uint64_t)i64);
        return buf;
    default:
        return NULL;
    }
}

static int enc_map_entry(pj *c, cJSON *obj, const ProtobufCMessage *e)
{
    const ProtobufCFieldDescriptor *kf = &e->descriptor->fields[0], *vf = &e->descriptor->fields[1];
    char buf[24];
    const char *key = map_key_text(kf, e, buf);
    if (key == NULL)
        return fail(c, KEEL_EINVAL, "map key of type %d is not allowed", (int)kf->type);
    if (!utf8_valid(key))
        return fail(c, KEEL_EINVAL, "map key is not valid UTF-8 (proto3 JSON cannot carry it)");
    size_t saved = path_key(c, key);
    int rc = add_item(c, obj, key, enc_value(c, vf->type, vf->descriptor, CMEMBER(e, vf->offset)));
    path_pop(c, saved);
    return rc;
}

/* The wire may repeat a map key, and protobuf's readers keep the last entry; JSON names each
 * member once (keel's reader refuses a repeat). Keep the last of each key: one pass from the end
 * with a hash of the names seen, so a hostile map of a million entries stays linear. */
static bool drop_repeated_keys(cJSON *obj, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    const cJSON **seen = calloc(cap, sizeof *seen);
    if (seen == NULL)
        return false;
    cJSON *item = obj->child ? obj->child->prev : NULL; /* the last member */
    while (item != NULL) {
        cJSON *before = item == obj->child ? NULL : item->prev;
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (const char *k = item->string; *k; k++)
            h = (h ^ (unsigned char)*k) * 1099511628211ull;
        size_t i = h & (cap - 1);
        while (seen[i] && strcmp(seen[i]->string, item->string) != 0)
            i = (i + 1) & (cap - 1);
        if (seen[i])
            cJSON_Delete(cJSON_DetachItemViaPointer(obj, item));
        else
            seen[i] = item;
        item = before;
    }
    free(seen);
    return true;
}

/* Entries stay in their order (of each key, the last); a NULL entry (never made by unpack) is
 * skipped. */
static cJSON *enc_map(pj *c, const ProtobufCMessage *const *entries, size_t n)
{
    cJSON *obj = made(c, cJSON_CreateObject());
    for (size_t i = 0; obj != NULL && i < n; i++) {
        if (entries[i] != NULL && enc_map_entry(c, obj, entries[i]) != KEEL_OK) {
            cJSON_Delete(obj);
            obj = NULL;
        }
    }
    if (obj != NULL && n > 1 && !drop_repeated_keys(obj, n)) {
        cJSON_Delete(obj);
        obj = made(c, NULL);
    }
    return obj;
}

static cJSON *enc_field(pj *c, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *member = CMEMBER(m, f->offset);
    if (f->label != PROTOBUF_C_LABEL_REPEATED)
        return enc_value(c, f->type, f->descriptor, member);
    size_t n;
    const void *arr;
    memcpy(&n, CMEMBER(m, f->quantifier_offset), sizeof n);
    memcpy(&arr, member, sizeof arr);
    return is_map_entry(f) ? enc_map(c, arr, n) : enc_list(c, f, arr, n);
}

static int enc_named_field(pj *c, cJSON *obj, const ProtobufCMessage *m,
                           const ProtobufCFieldDescriptor *f)
{
    jname n;
    const char *name = jname_make(&n, f->name);
    if (name == NULL)
        return nomem(c);
    size_t saved = path_field(c, name);
    int rc = add_item(c, obj, name, enc_field(c, m, f));
    path_pop(c, saved);
    free(n.heap);
    return rc;
}

static cJSON *enc_object(pj *c, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    cJSON *obj = made(c, cJSON_CreateObject());
    for (unsigned i = 0; obj != NULL && i < d->n_fields; i++) {
        if (field_present(m, &d->fields[i]) &&
            enc_named_field(c, obj, m, &d->fields[i]) != KEEL_OK) {
            cJSON_Delete(obj);
            obj = NULL;
        }
    }
    return obj;
}

static cJSON *enc_message(pj *c, const ProtobufCMessage *m)
{
    if (c->depth >= KEEL_PROTOJSON_MAX_DEPTH) {
        fail(c, KEEL_EINVAL, "messages nest deeper than %d levels", KEEL_PROTOJSON_MAX_DEPTH);
        return NULL;
    }
    const wkt *w = wkt_find(m->descriptor);
    c->depth++;
    cJSON *j = w && w->encode ? w->encode(c, m) : enc_object(c, m);
    c->depth--;
    return j;
}

static cJSON *enc_timestamp(pj *c, const ProtobufCMessage *m)
{
    const Google__Protobuf__Timestamp *t = (const Google__Protobuf__Timestamp *)m;
    if (t->seconds < TIMESTAMP_MIN_SECONDS || t->seconds > TIMESTAMP_MAX_SECONDS || t->nanos < 0 ||
        t->nanos > 999999999) {
        fail(c, KEEL_EINVAL, "timestamp %" PRId64 "s %" PRId32 "ns is outside years 1..9999",
             t->seconds, t->nanos);
        return NULL;
    }
    int64_t days = t->seconds / 86400, secs = t->seconds % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d", y, mo, d,
                     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    n += format_fraction(buf + n, sizeof buf - (size_t)n, t->nanos);
    snprintf(buf + n, sizeof buf - (size_t)n, "Z");
    return made(c, cJSON_CreateString(buf));
}

static cJSON *enc_duration(pj *c, const ProtobufCMessage *m)
{
    const Google__Protobuf__Duration *d = (const Google__Protobuf__Duration *)m;
    int64_t s = d->seconds;
    int32_t ns = d->nanos;
    if (s < -DURATION_MAX_SECONDS || s > DURATION_MAX_SECONDS || ns < -999999999 ||
        ns > 999999999 || (s > 0 && ns < 0) || (s < 0 && ns > 0)) {
        fail(c, KEEL_EINVAL, "duration %" PRId64 "s %" PRId32 "ns is out of range or mixes signs",
             s, ns);
        return NULL;
    }
    bool neg = s < 0 || ns < 0;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%s%" PRId64, neg ? "-" : "", neg ? -s : s);
    n += format_fraction(buf + n, sizeof buf - (size_t)n, neg ? -ns : ns);
    snprintf(buf + n, sizeof buf - (size_t)n, "s");
    return made(c, cJSON_CreateString(buf));
}

/* A wrapper is its single field "value", written even when it is the default. */
static cJSON *enc_wrapper(pj *c, const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f = &m->descriptor->fields[0];
    return enc_value(c, f->type, f->descriptor, CMEMBER(m, f->offset));
}

/* A FieldMask path in camelCase. Paths with upper-case letters could not be read back (the
 * reader turns every capital into "_" + lower case), so they are refused, as Go's encoder does. */
static bool mask_path_camel(const char *path, char *out)
{
    for (const char *p = path; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            return false;
        if (*p == '_' && p[1] >= 'a' && p[1] <= 'z')
            *out++ = ascii_upper(*++p);
        else
            *out++ = *p;
    }
    *out = '\0';
    return true;
}

static cJSON *enc_field_mask(pj *c, const ProtobufCMessage *m)
{
    const Google__Protobuf__FieldMask *fm = (const Google__Protobuf__FieldMask *)m;
    size_t total = 1;
    for (size_t i = 0; i < fm->n_paths; i++)
        total += strlen(fm->paths[i] ? fm->paths[i] : "") + 1;
    char *text = malloc(total), *o = text;
    if (text == NULL) {
        nomem(c);
        return NULL;
    }
    *o = '\0';
    for (size_t i = 0; i < fm->n_paths; i++) {
        if (i > 0)
            *o++ = ',';
        if (!mask_path_camel(fm->paths[i] ? fm->paths[i] : "", o)) {
            fail(c, KEEL_EINVAL, "path \"%s\" cannot be written in camelCase", fm->paths[i]);
            free(text);
            return NULL;
        }
        o += strlen(o);
    }
    cJSON *j = enc_string(c, text);
    free(text);
    return j;
}

/* {"@type": url} followed by the fields of body (an object, consumed), or, when value_form,
 * {"@type": url, "value": body} - the form for types whose JSON is not a plain object. */
static cJSON *any_wrap(pj *c, const char *url, cJSON *body, bool value_form)
{
    cJSON *obj = made(c, cJSON_CreateObject());
    if (obj == NULL || add_item(c, obj, "@type", enc_string(c, url)) != KEEL_OK) {
        cJSON_Delete(obj);
        cJSON_Delete(body);
        return NULL;
    }
    if (value_form)
        return add_item(c, obj, "value", body) == KEEL_OK ? obj : (cJSON_Delete(obj), NULL);
    while (body->child != NULL)
        cJSON_AddItemToArray(obj, cJSON_DetachItemViaPointer(body, body->child));
    cJSON_Delete(body);
    return obj;
}

static cJSON *enc_any(pj *c, const ProtobufCMessage *m)
{
    const Google__Protobuf__Any *a = (const Google__Protobuf__Any *)m;
    const char *url = a->type_url ? a->type_url : "";
    if (*url == '\0' && a->value.len == 0)
        return made(c, cJSON_CreateObject());
    const ProtobufCMessageDescriptor *d = resolve_url(c, url);
    if (d == NULL)
        return any_wrap(c, url, enc_bytes(c, &a->value), true);
    ProtobufCMessage *inner = NULL;
    keel_error why;
    if (keel_proto_unpack(d, a->value.data, a->value.len, &inner, &why) != KEEL_OK) {
        fail(c, KEEL_EINVAL, "value: %s", why.message);
        return NULL;
    }
    cJSON *body = enc_message(c, inner);
    protobuf_c_message_free_unpacked(inner, NULL);
    return body ? any_wrap(c, url, body, wkt_find(d) != NULL) : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* decoding */

static int dec_message(pj *c, const ProtobufCMessageDescriptor *d, const cJSON *j,
                       ProtobufCMessage **out);

/* Decodes one value into dst, from the tree (j) or from the text (c->jr; j unused): KEEL_OK,
 * PJ_SKIP (leave it out) or a failure; on failure dst is unchanged. */
typedef int (*value_decoder)(pj *c, ProtobufCType type, const void *tdesc, const cJSON *j,
                             void *dst, bool alloc_empty);

static const char *json_type_name(const cJSON *j)
{
    if (cJSON_IsNull(j))
        return "null";
    if (cJSON_IsBool(j))
        return "a boolean";
    if (cJSON_IsNumber(j))
        return "a number";
    if (cJSON_IsString(j))
        return "a string";
    if (cJSON_IsArray(j))
        return "an array";
    if (cJSON_IsObject(j))
        return "an object";
    return "an invalid value";
}

static int type_error(pj *c, const char *expected, const cJSON *j)
{
    return fail(c, KEEL_EINVAL, "expected %s, got %s", expected, json_type_name(j));
}

/* A string's text; "" for a string node a caller built without one. */
static const char *json_text(const cJSON *j)
{
    return j->valuestring ? j->valuestring : "";
}

static size_t count_children(const cJSON *j)
{
    size_t n = 0;
    for (const cJSON *item = j->child; item != NULL; item = item->next)
        n++;
    return n;
}

/* An integer written as text: -?digits, exactly (no double in between). */
static int parse_integer_text(pj *c, const char *s, bool *neg, uint64_t *mag)
{
    const char *p = s;
    *neg = read_char(&p, '-');
    uint64_t v = 0;
    if (!is_digit(*p))
        return fail(c, KEEL_EINVAL, "expected an integer, got \"%.40s\"", s);
    for (; is_digit(*p); p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return fail(c, KEEL_EINVAL, "integer %.40s is out of range", s);
        v = v * 10 + digit;
    }
    if (*p != '\0')
        return fail(c, KEEL_EINVAL, "expected an integer, got \"%.40s\"", s);
    *mag = v;
    return KEEL_OK;
}

/* An integer from a JSON number or string, as sign and magnitude. */
static int json_integer(pj *c, const cJSON *j, bool *neg, uint64_t *mag)
{
    if (cJSON_IsString(j))
        return parse_integer_text(c, json_text(j), neg, mag);
    if (!cJSON_IsNumber(j))
        return type_error(c, "an integer", j);
    double d = j->valuedouble;
    if (!(d > -EXACT_DOUBLE_LIMIT && d < EXACT_DOUBLE_LIMIT))
        return fail(c, KEEL_EINVAL,
                    "integer %.17g is too large for a JSON number (beyond 2^53); "
                    "write it as a string",
                    d);
    int64_t v = (int64_t)d;
    if ((double)v != d)
        return fail(c, KEEL_EINVAL, "expected an integer, got %.17g", d);
    *neg = v < 0;
    *mag = v < 0 ? (uint64_t)-v : (uint64_t)v;
    return KEEL_OK;
}

static const char *int_type_name(ProtobufCType type, bool *is_signed, bool *wide)
{
    *is_signed = true;
    *wide = false;
    switch (type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *wide = true;
        return "int64";
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *wide = true;
        *is_signed = false;
        return "uint64";
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *is_signed = false;
        return "uint32";
    case PROTOBUF_C_TYPE_ENUM:
        return "an enum";
    default:
        return "int32";
    }
}

/* Stores sign and magnitude into an integer member of the given type, range checked. */
static int store_integer(pj *c, ProtobufCType type, bool neg, uint64_t mag, void *dst)
{
    bool is_signed, wide;
    const char *name = int_type_name(type, &is_signed, &wide);
    uint64_t limit = is_signed ? (wide ? (uint64_t)INT64_MAX : (uint64_t)INT32_MAX)
                               : (wide ? UINT64_MAX : UINT32_MAX);
    if ((neg && !is_signed && mag != 0) || mag > limit + (neg && is_signed))
        return fail(c, KEEL_EINVAL, "%s%" PRIu64 " is out of range for %s", neg ? "-" : "", mag,
                    name);
    /* -(mag - 1) - 1 reaches INT64_MIN without overflowing. */
    int64_t sv = !neg || mag == 0 ? (int64_t)mag : -(int64_t)(mag - 1) - 1;
    if (wide && is_signed)
        memcpy(dst, &sv, sizeof sv);
    else if (wide)
        memcpy(dst, &mag, sizeof mag);
    else if (is_signed) {
        int32_t v = (int32_t)sv;
        memcpy(dst, &v, sizeof v);
    } else {
        uint32_t v = (uint32_t)mag;
        memcpy(dst, &v, sizeof v);
    }
    return KEEL_OK;
}

static int dec_integer(pj *c, ProtobufCType type, const cJSON *j, void *dst)
{
    bool neg;
    uint64_t mag;
    int rc = json_integer(c, j, &neg, &mag);
    return rc == KEEL_OK ? store_integer(c, type, neg, mag, dst) : rc;
}

/* A number, "NaN", "Infinity", "-Infinity", or a number written as a string. */
static int json_floating(pj *c, const cJSON *j, double *out)
{
    if (cJSON_IsNumber(j)) {
        *out = j->valuedouble;
        return isfinite(*out) ? KEEL_OK : fail(c, KEEL_EINVAL, "number out of range");
    }
    if (!cJSON_IsString(j))
        return type_error(c, "a number", j);
    const char *s = json_text(j);
    if (strcmp(s, "NaN") == 0)
        *out = NAN;
    else if (strcmp(s, "Infinity") == 0)
        *out = INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
        *out = -INFINITY;
    else if (!json_number_text(s))
        return fail(c, KEEL_EINVAL, "expected a number, got \"%.40s\"", s);
    else {
        *out = strtod(s, NULL);
        if (!isfinite(*out))
            return fail(c, KEEL_EINVAL, "number %.40s is out of range", s);
    }
    return KEEL_OK;
}

static int dec_floating(pj *c, ProtobufCType type, const cJSON *j, void *dst)
{
    double d = 0;
    int rc = json_floating(c, j, &d);
    if (rc != KEEL_OK)
        return rc;
    if (type == PROTOBUF_C_TYPE_DOUBLE) {
        memcpy(dst, &d, sizeof d);
        return KEEL_OK;
    }
    if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX))
        return fail(c, KEEL_EINVAL, "number %g is out of range for float", d);
    float f = (float)d;
    memcpy(dst, &f, sizeof f);
    return KEEL_OK;
}

/* Where value_name continues after the enum's type name in UPPER_SNAKE ("EVENT_TYPE_" of
 * EventType), matched without case and underscores; NULL when it does not start with it. */
static const char *after_type_prefix(const char *value_name, const char *type_name)
{
    const char *v = value_name;
    for (const char *t = type_name; *t; t++, v++) {
        while (*v == '_')
            v++;
        if (ascii_upper(*v) != ascii_upper(*t))
            return NULL;
    }
    return *v == '_' ? v + 1 : NULL;
}

/* a == b ignoring case and underscores. */
static bool loose_equal(const char *a, const char *b)
{
    for (;; a++, b++) {
        while (*a == '_')
            a++;
        while (*b == '_')
            b++;
        if (ascii_lower(*a) != ascii_lower(*b))
            return false;
        if (*a == '\0')
            return true;
    }
}

/* The short names older Temporal tools wrote: "WorkflowExecutionStarted" for
 * EVENT_TYPE_WORKFLOW_EXECUTION_STARTED (a linear scan: only reached when the full name failed). */
static const ProtobufCEnumValue *enum_by_short_name(const ProtobufCEnumDescriptor *ed,
                                                    const char *s)
{
    for (unsigned i = 0; i < ed->n_value_names; i++) {
        const char *name = ed->values_by_name[i].name;
        const char *rest = after_type_prefix(name, ed->short_name);
        if ((rest != NULL && loose_equal(rest, s)) || loose_equal(name, s))
            return &ed->values[ed->values_by_name[i].index];
    }
    return NULL;
}

static int dec_enum(pj *c, const ProtobufCEnumDescriptor *ed, const cJSON *j, void *dst)
{
    if (cJSON_IsNumber(j))
        return dec_integer(c, PROTOBUF_C_TYPE_ENUM, j, dst);
    if (!cJSON_IsString(j))
        return type_error(c, "an enum value name or number", j);
    const char *s = json_text(j);
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
    if (ev == NULL)
        ev = enum_by_short_name(ed, s);
    if (ev == NULL)
        return PJ_SKIP; /* a value newer than this build: treated like an unknown field */
    int32_t v = ev->value;
    memcpy(dst, &v, sizeof v);
    return KEEL_OK;
}

/* alloc_empty: whether "" needs its own allocation. Implicit-presence fields leave it at
 * protobuf_c_empty_string as unpack does; list elements are freed one by one and oneof or
 * proto2 optional members must read as set, so they get a copy. */
static int dec_string(pj *c, const cJSON *j, void *dst, bool alloc_empty)
{
    if (!cJSON_IsString(j))
        return type_error(c, "a string", j);
    const char *s = json_text(j);
    if (!c->utf8_checked && !utf8_valid(s))
        return fail(c, KEEL_EINVAL, "string is not valid UTF-8");
    if (*s == '\0' && !alloc_empty)
        return KEEL_OK;
    char *copy = pj_strdup(c, s);
    if (copy == NULL)
        return nomem(c);
    memcpy(dst, &copy, sizeof copy);
    return KEEL_OK;
}

static int dec_bytes(pj *c, const cJSON *j, ProtobufCBinaryData *dst)
{
    if (!cJSON_IsString(j))
        return type_error(c, "a base64 string", j);
    keel_error e;
    const char *s = json_text(j);
    if (c->arena == NULL) {
        int rc = keel_base64_decode(s, strlen(s), &dst->data, &dst->len, &e);
        return rc == KEEL_OK ? KEEL_OK : fail(c, rc, "%s", e.message);
    }
    size_t n, bytes;
    int rc = b64_measure(s, strlen(s), &n, &bytes, &e);
    if (rc != KEEL_OK || n == 0)
        return rc == KEEL_OK ? KEEL_OK : fail(c, rc, "%s", e.message);
    uint8_t *buf = keel_arena_alloc(c->arena, bytes);
    if (buf == NULL)
        return nomem(c);
    if ((rc = b64_fill(s, n, buf, &e)) != KEEL_OK)
        return fail(c, rc, "%s", e.message);
    dst->data = buf;
    dst->len = bytes;
    return KEEL_OK;
}

static int dec_submessage(pj *c, const ProtobufCMessageDescriptor *d, const cJSON *j, void *dst)
{
    ProtobufCMessage *sub;
    int rc = dec_message(c, d, j, &sub);
    if (rc == KEEL_OK)
        memcpy(dst, &sub, sizeof sub);
    return rc;
}

/* One value of the given type into dst (a struct member or array element). KEEL_OK, PJ_SKIP
 * (leave it out) or a failure; on failure dst is unchanged. */
static int dec_value(pj *c, ProtobufCType type, const void *tdesc, const cJSON *j, void *dst,
                     bool alloc_empty)
{
    switch (type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return dec_floating(c, type, j, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!cJSON_IsBool(j))
            return type_error(c, "true or false", j);
        *(protobuf_c_boolean *)dst = cJSON_IsTrue(j);
        return KEEL_OK;
    case PROTOBUF_C_TYPE_ENUM:
        return dec_enum(c, tdesc, j, dst);
    case PROTOBUF_C_TYPE_STRING:
        return dec_string(c, j, dst, alloc_empty);
    case PROTOBUF_C_TYPE_BYTES:
        return dec_bytes(c, j, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return dec_submessage(c, tdesc, j, dst);
    default:
        return dec_integer(c, type, j, dst);
    }
}

/* Element i of a list, null or decoded by `value`, into arr[*count]; the count is raised when
 * it was kept (not an unknown enum name). */
static int list_element(pj *c, const ProtobufCFieldDescriptor *f, size_t i, bool null,
                        value_decoder value, const cJSON *item, char *arr, size_t *count)
{
    size_t saved = path_index(c, i);
    int rc = null ? fail(c, KEEL_EINVAL, "null is not allowed in a list")
                  : value(c, f->type, f->descriptor, item, arr + *count * elem_size(f->type), true);
    path_pop(c, saved);
    if (rc == KEEL_OK)
        (*count)++;
    return rc < 0 ? rc : KEEL_OK;
}

/* A list: the array is allocated once at its full length and the count raised element by
 * element, so that the message can be freed at any point. */
static int dec_list(pj *c, const ProtobufCFieldDescriptor *f, const cJSON *j, ProtobufCMessage *m)
{
    if (!cJSON_IsArray(j))
        return type_error(c, "an array", j);
    size_t n = count_children(j), size = elem_size(f->type), i = 0;
    if (n == 0)
        return KEEL_OK;
    char *arr = pj_calloc(c, n, size);
    if (arr == NULL)
        return nomem(c);
    memcpy(MEMBER(m, f->offset), &arr, sizeof arr);
    size_t *count = MEMBER(m, f->quantifier_offset);
    for (const cJSON *item = j->child; item != NULL; item = item->next, i++) {
        int rc = list_element(c, f, i, cJSON_IsNull(item), dec_value, item, arr, count);
        if (rc != KEEL_OK)
            return rc;
    }
    return KEEL_OK;
}

/* A map key (always a JSON string) into the entry's key member. */
static int dec_map_key(pj *c, const ProtobufCFieldDescriptor *kf, const char *key, void *dst)
{
    bool neg;
    uint64_t mag;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: {
        cJSON node = {.type = cJSON_String, .valuestring = (char *)key};
        return dec_string(c, &node, dst, kf->label != PROTOBUF_C_LABEL_NONE);
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
            return fail(c, KEEL_EINVAL, "map key must be true or false");
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return KEEL_OK;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
    case PROTOBUF_C_TYPE_ENUM:
        return fail(c, KEEL_EINVAL, "map key of type %d is not allowed", (int)kf->type);
    default: {
        int rc = parse_integer_text(c, key, &neg, &mag);
        return rc == KEEL_OK ? store_integer(c, kf->type, neg, mag, dst) : rc;
    }
    }
}

/* One map entry whose value is null or is decoded by `value`; *out stays NULL when the value is
 * to be left out (an unknown enum name). */
static int map_entry(pj *c, const ProtobufCMessageDescriptor *ed, const char *key, bool null,
                     value_decoder value, const cJSON *item, ProtobufCMessage **out)
{
    *out = NULL;
    if (null)
        return fail(c, KEEL_EINVAL, "null is not allowed as a map value");
    ProtobufCMessage *e = pj_alloc(c, ed->sizeof_message);
    if (e == NULL)
        return nomem(c);
    ed->message_init(e);
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    int rc = dec_map_key(c, kf, key, MEMBER(e, kf->offset));
    if (rc == KEEL_OK) {
        mark_present(kf, e);
        rc = value(c, vf->type, vf->descriptor, item, MEMBER(e, vf->offset),
                   vf->label != PROTOBUF_C_LABEL_NONE);
    }
    if (rc != KEEL_OK) {
        pj_discard(c, e);
        return rc < 0 ? rc : KEEL_OK;
    }
    mark_present(vf, e);
    *out = e;
    return KEEL_OK;
}

static int dec_map(pj *c, const ProtobufCFieldDescriptor *f, const cJSON *j, ProtobufCMessage *m)
{
    if (!cJSON_IsObject(j))
        return type_error(c, "an object (a map)", j);
    size_t n = count_children(j);
    if (n == 0)
        return KEEL_OK;
    ProtobufCMessage **arr = pj_calloc(c, n, sizeof *arr);
    if (arr == NULL)
        return nomem(c);
    memcpy(MEMBER(m, f->offset), &arr, sizeof arr);
    size_t *count = MEMBER(m, f->quantifier_offset);
    for (const cJSON *item = j->child; item != NULL; item = item->next) {
        size_t saved = path_key(c, item->string ? item->string : "");
        ProtobufCMessage *e;
        int rc = map_entry(c, f->descriptor, item->string ? item->string : "", cJSON_IsNull(item),
                           dec_value, item, &e);
        path_pop(c, saved);
        if (rc != KEEL_OK)
            return rc;
        if (e != NULL)
            arr[(*count)++] = e;
    }
    return KEEL_OK;
}

/* A singular field's value, by `value`, marked present when it was set. */
static int singular_field(pj *c, const ProtobufCFieldDescriptor *f, value_decoder value,
                          const cJSON *j, ProtobufCMessage *m)
{
    bool implicit = f->label == PROTOBUF_C_LABEL_NONE && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
    int rc = value(c, f->type, f->descriptor, j, MEMBER(m, f->offset), !implicit);
    if (rc == KEEL_OK)
        mark_present(f, m);
    return rc == PJ_SKIP ? KEEL_OK : rc;
}

static int dec_field(pj *c, const ProtobufCFieldDescriptor *f, const cJSON *j, ProtobufCMessage *m)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return is_map_entry(f) ? dec_map(c, f, j, m) : dec_list(c, f, j, m);
    return singular_field(c, f, dec_value, j, m);
}

/* Before one JSON member naming field f (seen marks the fields already given): KEEL_OK when
 * its value is to be decoded, PJ_SKIP when it is null (the default), or a failure. */
static int member_check(pj *c, const ProtobufCFieldDescriptor *f, bool null,
                        const ProtobufCMessage *m, unsigned char *seen, unsigned char how)
{
    if (*seen)
        return fail(c, KEEL_EINVAL, "field given more than once");
    *seen = how;
    if (null)
        return PJ_SKIP;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && oneof_case(m, f) != 0)
        return fail(c, KEEL_EINVAL, "a second member of the same oneof (only one may be set)");
    return KEEL_OK;
}

static int dec_member(pj *c, const ProtobufCFieldDescriptor *f, const cJSON *item,
                      ProtobufCMessage *m, unsigned char *seen, unsigned char how)
{
    int rc = member_check(c, f, cJSON_IsNull(item), m, seen, how);
    return rc == KEEL_OK ? dec_field(c, f, item, m) : rc == PJ_SKIP ? KEEL_OK : rc;
}

/* The fields of one message's JSON object given so far, and where to look for the next. */
typedef struct fields_given {
    const ProtobufCMessageDescriptor *d;
    const keel_fieldnames *names;    /* NULL: compare names one by one */
    unsigned char small[128], *seen; /* seen[i]: fields[i] was given, by which name (SEEN_*) */
    unsigned next;                   /* where to look first: after the field found last */
} fields_given;

/* How a field was named: by its JSON name, or by its .proto name where that differs. */
enum { SEEN_JSON_NAME = 1, SEEN_PROTO_NAME = 2 };

static int fields_begin(pj *c, const ProtobufCMessageDescriptor *d, fields_given *g)
{
    g->d = d;
    g->names = keel_fieldnames_of(d);
    g->next = 0;
    g->seen = g->small;
    if (d->n_fields <= sizeof g->small)
        memset(g->small, 0, d->n_fields);
    else if ((g->seen = calloc(d->n_fields, 1)) == NULL)
        return nomem(c);
    return KEEL_OK;
}

/* The index of the field key[0..len) names by its JSON name, or -1. */
static long json_name_index(const fields_given *g, const char *key, size_t len)
{
    const keel_fieldnames *fn = g->names; /* the field after the last one found first, too */
    if (fn != NULL) {
        if (g->next < g->d->n_fields && keel_fieldnames_is(fn, g->next, key, len))
            return g->next;
        return keel_fieldnames_find(fn, key, len);
    }
    return find_json_name(g->d, key, len, g->next);
}

/* The field a member name key (NUL-terminated, len bytes) names (NULL: unknown), with its seen
 * mark in *seen and how it was named this time in *how (SEEN_*). */
static const ProtobufCFieldDescriptor *fields_find(fields_given *g, const char *key, size_t len,
                                                   unsigned char **seen, unsigned char *how)
{
    long i = json_name_index(g, key, len);
    *how = SEEN_JSON_NAME;
    if (i < 0) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(g->d, key);
        if (f == NULL)
            return NULL;
        i = f - g->d->fields;
        *how = SEEN_PROTO_NAME;
    }
    g->next = (unsigned)i + 1 < g->d->n_fields ? (unsigned)i + 1 : 0;
    *seen = &g->seen[i];
    return &g->d->fields[i];
}

static void fields_end(fields_given *g)
{
    if (g->seen != g->small)
        free(g->seen);
}

static int dec_object(pj *c, const cJSON *j, ProtobufCMessage *m)
{
    if (!cJSON_IsObject(j))
        return type_error(c, "an object", j);
    fields_given g;
    int rc = fields_begin(c, m->descriptor, &g);
    for (const cJSON *item = j->child; item != NULL && rc == KEEL_OK; item = item->next) {
        unsigned char *seen, how;
        const ProtobufCFieldDescriptor *f =
            item->string ? fields_find(&g, item->string, strlen(item->string), &seen, &how) : NULL;
        if (f == NULL)
            continue; /* a newer server's field, or an Any's "@type" */
        size_t saved = path_field(c, item->string);
        rc = dec_member(c, f, item, m, seen, how);
        path_pop(c, saved);
    }
    fields_end(&g);
    return rc;
}

static int s_body(pj *c, const struct wkt *w, ProtobufCMessage *m);

/* A new message of type d from j, or from the text when decoding straight from it (c->jr). On
 * failure *out is NULL and nothing is left allocated: the message is kept freeable at every step
 * and freed with protobuf-c's own free_unpacked. */
static int dec_message(pj *c, const ProtobufCMessageDescriptor *d, const cJSON *j,
                       ProtobufCMessage **out)
{
    *out = NULL;
    if (c->depth >= KEEL_PROTOJSON_MAX_DEPTH)
        return fail(c, KEEL_EINVAL, "messages nest deeper than %d levels",
                    KEEL_PROTOJSON_MAX_DEPTH);
    ProtobufCMessage *m = pj_alloc(c, d->sizeof_message);
    if (m == NULL)
        return nomem(c);
    d->message_init(m);
    const wkt *w = wkt_find(d);
    c->depth++;
    int rc = c->jr != NULL    ? s_body(c, w, m)
             : w && w->decode ? w->decode(c, j, m)
                              : dec_object(c, j, m);
    c->depth--;
    if (rc != KEEL_OK) {
        pj_discard(c, m);
        return rc;
    }
    *out = m;
    return KEEL_OK;
}

static int dec_timestamp(pj *c, const cJSON *j, ProtobufCMessage *m)
{
    Google__Protobuf__Timestamp *t = (Google__Protobuf__Timestamp *)m;
    if (!cJSON_IsString(j))
        return type_error(c, "an RFC 3339 timestamp string", j);
    if (!parse_timestamp(json_text(j), &t->seconds, &t->nanos))
        return fail(c, KEEL_EINVAL, "not an RFC 3339 timestamp in years 1..9999: \"%.64s\"",
                    json_text(j));
    return KEEL_OK;
}

static int dec_duration(pj *c, const cJSON *j, ProtobufCMessage *m)
{
    Google__Protobuf__Duration *d = (Google__Protobuf__Duration *)m;
    if (!cJSON_IsString(j))
        return type_error(c, "a duration string such as \"1.5s\"", j);
    if (!parse_duration(json_text(j), &d->seconds, &d->nanos))
        return fail(c, KEEL_EINVAL, "not a duration such as \"1.5s\" within 10000 years: \"%.64s\"",
                    json_text(j));
    return KEEL_OK;
}

static int dec_wrapper(pj *c, const cJSON *j, ProtobufCMessage *m)
{
    return dec_field(c, &m->descriptor->fields[0], j, m);
}

/* One camelCase path into a new snake_case string. */
static char *mask_path_snake(pj *c, const char *from, size_t len)
{
    char *out = pj_alloc(c, 2 * len + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (from[i] >= 'A' && from[i] <= 'Z') {
            *o++ = '_';
            *o++ = ascii_lower(from[i]);
        } else {
            *o++ = from[i];
        }
    }
    *o = '\0';
    return out;
}

static int dec_field_mask(pj *c, const cJSON *j, ProtobufCMessage *m)
{
    Google__Protobuf__FieldMask *fm = (Google__Protobuf__FieldMask *)m;
    if (!cJSON_IsString(j))
        return type_error(c, "a string of comma-separated paths", j);
    const char *s = json_text(j);
    if (!c->utf8_checked && !utf8_valid(s))
        return fail(c, KEEL_EINVAL, "string is not valid UTF-8");
    if (*s == '\0')
        return KEEL_OK;
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    if ((fm->paths = pj_calloc(c, n, sizeof *fm->paths)) == NULL)
        return nomem(c);
    for (const char *start = s;; start++) {
        size_t len = strcspn(start, ",");
        if ((fm->paths[fm->n_paths] = mask_path_snake(c, start, len)) == NULL)
            return nomem(c);
        fm->n_paths++;
        start += len;
        if (*start == '\0')
            return KEEL_OK;
    }
}

/* The packed bytes of msg, into a new buffer (left empty for an empty message). */
static int pack_into(pj *c, const ProtobufCMessage *msg, ProtobufCBinaryData *out)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n == 0)
        return KEEL_OK;
    if ((out->data = pj_alloc(c, n)) == NULL)
        return nomem(c);
    out->len = protobuf_c_message_pack(msg, out->data);
    return KEEL_OK;
}

/* An Any whose type resolves: its fields inline, or under "value" for a well-known type. */
static int dec_any_known(pj *c, const ProtobufCMessageDescriptor *d, const cJSON *j,
                         const cJSON *value, Google__Protobuf__Any *a)
{
    bool value_form = wkt_find(d) != NULL;
    if (value_form && value == NULL)
        return fail(c, KEEL_EINVAL, "missing \"value\" (the JSON of the %s)", d->name);
    size_t saved = value_form ? path_field(c, "value") : c->n_segs;
    ProtobufCMessage *inner;
    int rc = dec_message(c, d, value_form ? value : j, &inner);
    path_pop(c, saved);
    if (rc != KEEL_OK)
        return rc;
    rc = pack_into(c, inner, &a->value);
    pj_discard(c, inner);
    return rc;
}

static int dec_any(pj *c, const cJSON *j, ProtobufCMessage *m)
{
    Google__Protobuf__Any *a = (Google__Protobuf__Any *)m;
    if (!cJSON_IsObject(j))
        return type_error(c, "an object with \"@type\"", j);
    const cJSON *type = NULL, *value = NULL;
    bool others = false;
    for (const cJSON *item = j->child; item != NULL; item = item->next) {
        const char *key = item->string ? item->string : "";
        if (strcmp(key, "@type") == 0)
            type = item;
        else if (strcmp(key, "value") == 0)
            value = item;
        else
            others = true;
    }
    if (type == NULL)
        return j->child == NULL ? KEEL_OK : fail(c, KEEL_EINVAL, "missing \"@type\"");
    size_t saved = path_field(c, "@type");
    int rc = dec_string(c, type, &a->type_url, true);
    path_pop(c, saved);
    if (rc != KEEL_OK)
        return rc;
    const ProtobufCMessageDescriptor *d = resolve_url(c, a->type_url);
    if (d != NULL)
        return dec_any_known(c, d, j, value, a);
    if (others)
        return fail(c, KEEL_EINVAL,
                    "type \"%.200s\" is not known here, so only {\"@type\", "
                    "\"value\": base64} can be read for it",
                    a->type_url);
    if (value == NULL)
        return KEEL_OK;
    saved = path_field(c, "value");
    rc = dec_bytes(c, value, &a->value);
    path_pop(c, saved);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* decoding straight from the text (keel_protojson_decode): the reader (keel/json.h) checks the
 * JSON as keel_json_parse would, and every conversion rule above is applied to each scalar as it
 * is read, through a cJSON node on the stack that borrows the reader's text. Only an Any is read
 * twice: its span is checked, then parsed into a tree for dec_any ("@type" may come last). */

/* The reader failed: its message is in c->err already. */
static int s_failed(pj *c)
{
    c->code = keel_json_reader_code(c->jr);
    return c->code != KEEL_OK ? c->code : fail(c, KEEL_EINVAL, "the JSON reader lost its place");
}

/* The value at the reader as a node for the tree decoders: a scalar is read (a string's text
 * is borrowed from the reader until the next string); an object or array is read (checked) and
 * comes back as an empty node of its kind, for a decoder to refuse by its type. */
static int s_node(pj *c, cJSON *node)
{
    static const int types[] = {
        [KEEL_JSON_OBJECT] = cJSON_Object, [KEEL_JSON_ARRAY] = cJSON_Array,
        [KEEL_JSON_STRING] = cJSON_String, [KEEL_JSON_NUMBER] = cJSON_Number,
        [KEEL_JSON_TRUE] = cJSON_True,     [KEEL_JSON_FALSE] = cJSON_False,
        [KEEL_JSON_NULL] = cJSON_NULL,
    };
    memset(node, 0, sizeof *node);
    keel_json_kind kind = keel_json_peek(c->jr);
    if (kind == KEEL_JSON_BAD)
        return s_failed(c);
    node->type = types[kind];
    const char *text = NULL;
    size_t len;
    bool ok = kind == KEEL_JSON_STRING ? keel_json_read_string(c->jr, &text, &len)
              : kind == KEEL_JSON_NUMBER
                  ? keel_json_read_number(c->jr, &node->valuedouble, &text, &len)
                  : keel_json_skip(c->jr);
    if (kind == KEEL_JSON_STRING && ok)
        node->valuestring = (char *)text;
    return ok ? KEEL_OK : s_failed(c);
}

/* What a tree decoder said of a node from s_node: no decoder takes an empty object or array. */
static int s_decoded(pj *c, const cJSON *node, int rc)
{
    if (rc >= 0 && (cJSON_IsObject(node) || cJSON_IsArray(node)))
        return type_error(c, "a scalar", node);
    return rc;
}

/* Fails on the value at the reader, which is not of the kind `expected` names. */
static int s_type_error(pj *c, const char *expected)
{
    cJSON node;
    int rc = s_node(c, &node);
    return rc != KEEL_OK ? rc : type_error(c, expected, &node);
}

static int s_value(pj *c, ProtobufCType type, const void *tdesc, const cJSON *unused, void *dst,
                   bool alloc_empty)
{
    (void)unused;
    if (type == PROTOBUF_C_TYPE_MESSAGE)
        return dec_submessage(c, tdesc, NULL, dst);
    cJSON node;
    int rc = s_node(c, &node);
    return rc != KEEL_OK ? rc
                         : s_decoded(c, &node, dec_value(c, type, tdesc, &node, dst, alloc_empty));
}

/* Makes room for one more element of size `size` in the array at *arr (cap elements, count
 * used), kept in the message's member so that the message can be freed at any point. */
static int s_grow(pj *c, char **arr, size_t *cap, size_t count, size_t size, void *member)
{
    if (count < *cap)
        return KEEL_OK;
    size_t want = *cap ? *cap * 2 : 4;
    char *grown = want > SIZE_MAX / size ? NULL
                  : c->arena             ? keel_arena_grow(c->arena, *arr, *cap * size, want * size)
                                         : realloc(*arr, want * size);
    if (grown == NULL)
        return nomem(c);
    memset(grown + *cap * size, 0, (want - *cap) * size);
    *arr = grown;
    *cap = want;
    memcpy(member, &grown, sizeof grown);
    return KEEL_OK;
}

/* A list (a JSON array) or a map (a JSON object), element by element into the message's array. */
static int s_repeated(pj *c, const ProtobufCFieldDescriptor *f, ProtobufCMessage *m)
{
    bool map = is_map_entry(f);
    if (keel_json_peek(c->jr) != (map ? KEEL_JSON_OBJECT : KEEL_JSON_ARRAY))
        return s_type_error(c, map ? "an object (a map)" : "an array");
    if (!(map ? keel_json_enter_object(c->jr) : keel_json_enter_array(c->jr)))
        return s_failed(c);
    size_t size = map ? sizeof(ProtobufCMessage *) : elem_size(f->type), cap = 0;
    size_t *count = MEMBER(m, f->quantifier_offset), len, raw_len = 0;
    char *arr = NULL;
    const char *key = NULL, *raw = NULL;
    bool more;
    for (size_t i = 0;; i++) {
        if (!(map ? keel_json_next_member(c->jr, &more, &key, &len, &raw, &raw_len)
                  : keel_json_next_element(c->jr, &more)))
            return s_failed(c);
        if (!more)
            return KEEL_OK;
        int rc = s_grow(c, &arr, &cap, *count, size, MEMBER(m, f->offset));
        if (rc != KEEL_OK)
            return rc;
        bool null = keel_json_peek(c->jr) == KEEL_JSON_NULL;
        if (!map) {
            rc = list_element(c, f, i, null, s_value, NULL, arr, count);
            if (rc != KEEL_OK)
                return rc;
            continue;
        }
        size_t saved = path_push(c, SEG_KEY, raw, raw_len, 0);
        ProtobufCMessage *e;
        rc = map_entry(c, f->descriptor, key, null, s_value, NULL, &e);
        path_pop(c, saved);
        if (rc != KEEL_OK)
            return rc;
        if (e != NULL)
            memcpy(arr + (*count)++ * sizeof e, &e, sizeof e);
    }
}

static int s_member(pj *c, const ProtobufCFieldDescriptor *f, ProtobufCMessage *m,
                    unsigned char *seen, unsigned char how)
{
    int rc = member_check(c, f, keel_json_peek(c->jr) == KEEL_JSON_NULL, m, seen, how);
    if (rc == PJ_SKIP)
        return keel_json_skip(c->jr) ? KEEL_OK : s_failed(c);
    if (rc != KEEL_OK)
        return rc;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return s_repeated(c, f, m);
    return singular_field(c, f, s_value, NULL, m);
}

static int s_object(pj *c, ProtobufCMessage *m)
{
    if (keel_json_peek(c->jr) != KEEL_JSON_OBJECT)
        return s_type_error(c, "an object");
    if (!keel_json_enter_object_unchecked(c->jr))
        return s_failed(c);
    fields_given g;
    int rc = fields_begin(c, m->descriptor, &g);
    bool more;
    const char *key, *raw;
    size_t len, raw_len;
    while (rc == KEEL_OK) {
        if (!keel_json_next_member(c->jr, &more, &key, &len, &raw, &raw_len)) {
            rc = s_failed(c);
            break;
        }
        if (!more)
            break;
        unsigned char *seen, how;
        const ProtobufCFieldDescriptor *f = fields_find(&g, key, len, &seen, &how);
        if (f == NULL) { /* a newer server's field: checked and passed over */
            rc = keel_json_member_unclaimed(c->jr) && keel_json_skip(c->jr) ? KEEL_OK : s_failed(c);
            continue;
        }
        /* The reader leaves repeats to the seen marks: the same name twice is its own error,
         * a field named once by each name the mapping's. */
        if (*seen == how) {
            (void)keel_json_member_repeated(c->jr); /* fails the read */
            rc = s_failed(c);
            break;
        }
        size_t saved = path_push(c, SEG_FIELD, raw, raw_len, 0);
        rc = s_member(c, f, m, seen, how);
        path_pop(c, saved);
    }
    fields_end(&g);
    return rc;
}

/* An Any: its span is checked by the reader, then read as a tree by dec_any. */
static int s_any(pj *c, ProtobufCMessage *m)
{
    if (keel_json_peek(c->jr) == KEEL_JSON_BAD)
        return s_failed(c);
    size_t from = keel_json_reader_offset(c->jr);
    if (!keel_json_skip(c->jr))
        return s_failed(c);
    cJSON *tree;
    keel_error e;
    int rc = keel_json_parse(c->text + from, keel_json_reader_offset(c->jr) - from,
                             KEEL_JSON_STRICT, NULL, &tree, &e);
    if (rc != KEEL_OK) /* checked already: only memory can run out */
        return fail(c, rc, "%s", e.message);
    keel_json_reader *jr = c->jr;
    c->jr = NULL; /* the Any's own messages come from the tree */
    rc = dec_any(c, tree, m);
    c->jr = jr;
    cJSON_Delete(tree);
    return rc;
}

/* The body of message m of well-known type w (or NULL) from the text. */
static int s_body(pj *c, const wkt *w, ProtobufCMessage *m)
{
    if (w == NULL || w->decode == NULL)
        return s_object(c, m);
    if (w->decode == dec_any)
        return s_any(c, m);
    cJSON node; /* the well-known types written as one JSON scalar */
    int rc = s_node(c, &node);
    return rc != KEEL_OK ? rc : s_decoded(c, &node, w->decode(c, &node, m));
}

/* ------------------------------------------------------------------------------------------ */
/* the API */

cJSON *keel_protojson_to_cjson_with(const ProtobufCMessage *msg, const keel_protojson_options *opts,
                                    keel_error *err)
{
    if (msg == NULL) {
        keel_error_set(err, KEEL_EINVAL, "no message to encode as JSON");
        return NULL;
    }
    pj c;
    pj_init(&c, opts, err);
    return enc_message(&c, msg);
}

cJSON *keel_protojson_to_cjson(const ProtobufCMessage *msg, keel_error *err)
{
    return keel_protojson_to_cjson_with(msg, NULL, err);
}

char *keel_protojson_encode(const ProtobufCMessage *msg, bool pretty, keel_error *err)
{
    cJSON *j = keel_protojson_to_cjson(msg, err);
    if (j == NULL)
        return NULL;
    char *text = pretty ? keel_json_print_pretty(j) : keel_json_print(j);
    cJSON_Delete(j);
    if (text == NULL)
        keel_error_set(err, KEEL_ENOMEM, "out of memory printing JSON");
    return text;
}

int keel_protojson_from_cjson_with(const ProtobufCMessageDescriptor *desc, const cJSON *json,
                                   const keel_protojson_options *opts, ProtobufCMessage **out,
                                   keel_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (desc == NULL || json == NULL || out == NULL)
        return keel_error_set(err, KEEL_EINVAL, "protojson: missing descriptor, JSON or output");
    pj c;
    pj_init(&c, opts, err);
    return dec_message(&c, desc, json, out);
}

int keel_protojson_from_cjson(const ProtobufCMessageDescriptor *desc, const cJSON *json,
                              ProtobufCMessage **out, keel_error *err)
{
    return keel_protojson_from_cjson_with(desc, json, NULL, out, err);
}

static int decode_text(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                       keel_arena *arena, ProtobufCMessage **out, keel_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (desc == NULL || (json == NULL && len > 0) || out == NULL)
        return keel_error_set(err, KEEL_EINVAL, "protojson: missing descriptor, JSON or output");
    keel_json_reader *jr;
    const char *text = json ? json : "";
    int rc = keel_json_reader_open(text, len, "the JSON text", &jr, err);
    if (rc != KEEL_OK)
        return rc;
    pj c;
    pj_init(&c, NULL, err);
    c.utf8_checked = true;
    c.jr = jr;
    c.text = text;
    c.arena = arena;
    rc = dec_message(&c, desc, NULL, out);
    if (rc == KEEL_OK && !keel_json_reader_finish(jr)) {
        rc = s_failed(&c);
        pj_discard(&c, *out);
        *out = NULL;
    }
    keel_json_reader_close(jr);
    return rc;
}

int keel_protojson_decode(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                          ProtobufCMessage **out, keel_error *err)
{
    return decode_text(desc, json, len, NULL, out, err);
}

int keel_protojson_decode_arena(const ProtobufCMessageDescriptor *desc, const char *json,
                                size_t len, keel_arena *arena, ProtobufCMessage **out,
                                keel_error *err)
{
    if (arena == NULL) {
        if (out != NULL)
            *out = NULL;
        return keel_error_set(err, KEEL_EINVAL, "protojson: no arena to decode into");
    }
    return decode_text(desc, json, len, arena, out, err);
}
