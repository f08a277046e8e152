/* Payloads: the standard converter's json/plain, binary/null and binary/plain. */
#include "converter/payload.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAYLOAD_FREE(p) protobuf_c_message_free_unpacked(&(p)->base, NULL)

static int oom(keel_error *err)
{
    return keel_error_set(err, KEEL_ENOMEM, "out of memory building a payload");
}

static keel_pb_payload *payload_alloc(void)
{
    keel_pb_payload *p = malloc(sizeof *p);
    if (p)
        temporal__api__common__v1__payload__init(p);
    return p;
}

/* A malloc'd copy of n bytes (at least one byte allocated, so an empty copy is not NULL). */
static uint8_t *copy_bytes(const void *src, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (d && n)
        memcpy(d, src, n);
    return d;
}

int keel_payload_set_metadata(keel_pb_payload *p, const char *key, const char *value,
                              keel_error *err)
{
    size_t vlen = strlen(value);
    for (size_t i = 0; i < p->n_metadata; i++) {
        Temporal__Api__Common__V1__Payload__MetadataEntry *e = p->metadata[i];
        if (strcmp(e->key, key) != 0)
            continue;
        uint8_t *v = copy_bytes(value, vlen);
        if (v == NULL)
            return oom(err);
        free(e->value.data);
        e->value.data = v;
        e->value.len = vlen;
        return KEEL_OK;
    }
    Temporal__Api__Common__V1__Payload__MetadataEntry **grown =
        realloc(p->metadata, (p->n_metadata + 1) * sizeof *grown);
    if (grown == NULL)
        return oom(err);
    p->metadata = grown;
    Temporal__Api__Common__V1__Payload__MetadataEntry *e = malloc(sizeof *e);
    if (e == NULL)
        return oom(err);
    temporal__api__common__v1__payload__metadata_entry__init(e);
    e->key = strdup(key);
    e->value.data = copy_bytes(value, vlen);
    e->value.len = vlen;
    if (e->key == NULL || e->value.data == NULL) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return oom(err);
    }
    p->metadata[p->n_metadata++] = e;
    return KEEL_OK;
}

/* Whether text[0..len) is exactly one JSON value (whitespace around it allowed). */
static bool is_json(const char *text, size_t len)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (j == NULL)
        return false;
    cJSON_Delete(j);
    while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    return end == text + len;
}

int keel_payload_new_json(const char *json, size_t len, const char *what, keel_pb_payload **out,
                          keel_error *err)
{
    *out = NULL;
    if (json == NULL || !is_json(json, len))
        return keel_error_set(err, KEEL_EINVAL, "%s is not valid JSON: %.80s%s", what,
                              json ? json : "(null)", json && len > 80 ? "..." : "");
    keel_pb_payload *p = payload_alloc();
    if (p == NULL)
        return oom(err);
    p->data.data = copy_bytes(json, len);
    p->data.len = len;
    if (p->data.data == NULL ||
        keel_payload_set_metadata(p, "encoding", KEEL_ENCODING_JSON, err) != KEEL_OK) {
        PAYLOAD_FREE(p);
        return oom(err);
    }
    *out = p;
    return KEEL_OK;
}

int keel_payload_new_null(keel_pb_payload **out, keel_error *err)
{
    *out = payload_alloc();
    if (*out == NULL)
        return oom(err);
    if (keel_payload_set_metadata(*out, "encoding", KEEL_ENCODING_NULL, err) != KEEL_OK) {
        PAYLOAD_FREE(*out);
        *out = NULL;
        return KEEL_ENOMEM;
    }
    return KEEL_OK;
}

int keel_payload_new_bytes(const uint8_t *data, size_t len, keel_pb_payload **out, keel_error *err)
{
    keel_pb_payload *p = payload_alloc();
    if (p == NULL)
        return oom(err);
    p->data.data = copy_bytes(data, len);
    p->data.len = len;
    if (p->data.data == NULL ||
        keel_payload_set_metadata(p, "encoding", KEEL_ENCODING_BINARY, err) != KEEL_OK) {
        PAYLOAD_FREE(p);
        return oom(err);
    }
    *out = p;
    return KEEL_OK;
}

/* The encoding metadata value, or NULL when there is none. Not NUL-terminated: see *len. */
static const uint8_t *encoding_of(const keel_pb_payload *p, size_t *len)
{
    for (size_t i = 0; i < p->n_metadata; i++)
        if (p->metadata[i]->key && strcmp(p->metadata[i]->key, "encoding") == 0) {
            *len = p->metadata[i]->value.len;
            return p->metadata[i]->value.data;
        }
    return NULL;
}

bool keel_payload_encoding_is(const keel_pb_payload *p, const char *encoding)
{
    size_t len = 0;
    const uint8_t *e = encoding_of(p, &len);
    return e != NULL && len == strlen(encoding) && memcmp(e, encoding, len) == 0;
}

int keel_payload_to_json(const keel_pb_payload *p, const char *what, char **json_out,
                         keel_error *err)
{
    *json_out = NULL;
    if (keel_payload_encoding_is(p, KEEL_ENCODING_NULL)) {
        *json_out = strdup("null");
        return *json_out ? KEEL_OK : oom(err);
    }
    if (!keel_payload_encoding_is(p, KEEL_ENCODING_JSON)) {
        size_t len = 0;
        const uint8_t *e = encoding_of(p, &len);
        char name[64] = "none";
        if (e)
            snprintf(name, sizeof name, "%.*s", (int)(len < 60 ? len : 60), (const char *)e);
        return keel_error_set(err, KEEL_EINVAL,
                              "%s has encoding '%s', not json/plain: keel reads JSON payloads "
                              "(a codec, e.g. encryption, must decode it first)",
                              what, name);
    }
    const char *text = (const char *)p->data.data;
    if (p->data.len == 0 || text == NULL || !is_json(text, p->data.len))
        return keel_error_set(err, KEEL_EINVAL, "%s is marked json/plain but is not valid JSON",
                              what);
    char *s = malloc(p->data.len + 1);
    if (s == NULL)
        return oom(err);
    memcpy(s, text, p->data.len);
    s[p->data.len] = '\0';
    *json_out = s;
    return KEEL_OK;
}

int keel_payloads_new_json(const char *json, const char *what, keel_pb_payloads **out,
                           keel_error *err)
{
    *out = NULL;
    if (json == NULL)
        return KEEL_OK;
    keel_pb_payload *p;
    int rc = keel_payload_new_json(json, strlen(json), what, &p, err);
    if (rc != KEEL_OK)
        return rc;
    keel_pb_payloads *ps = malloc(sizeof *ps);
    keel_pb_payload **arr = malloc(sizeof *arr);
    if (ps == NULL || arr == NULL) {
        free(ps);
        free(arr);
        PAYLOAD_FREE(p);
        return oom(err);
    }
    temporal__api__common__v1__payloads__init(ps);
    arr[0] = p;
    ps->payloads = arr;
    ps->n_payloads = 1;
    *out = ps;
    return KEEL_OK;
}

int keel_payloads_to_json(const keel_pb_payloads *ps, const char *what, char **json_out,
                          keel_error *err)
{
    if (ps == NULL || ps->n_payloads == 0) {
        *json_out = strdup("null");
        return *json_out ? KEEL_OK : oom(err);
    }
    return keel_payload_to_json(ps->payloads[0], what, json_out, err);
}
