/* Payloads: the standard converter's json/plain, binary/null and binary/plain. */
#include "converter/payload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/client.h"
#include "keel/json.h"

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

int keel_payload_new_json(const char *json, size_t len, const char *what, keel_pb_payload **out,
                          keel_error *err)
{
    *out = NULL;
    int rc = keel_json_check(json, len, KEEL_JSON_STRICT, what, err);
    if (rc != KEEL_OK)
        return rc;
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
    if (p->data.len == 0 || text == NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s is marked json/plain but is empty", what);
    int rc = keel_json_check(text, p->data.len, KEEL_JSON_STRICT, what, err);
    if (rc != KEEL_OK)
        return rc;
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

/* ---- memo and search attributes: maps of payloads ---- */

Temporal__Api__Common__V1__Memo *keel_memo_new(const keel_kv *kv, size_t n, keel_error *err)
{
    Temporal__Api__Common__V1__Memo *m = malloc(sizeof *m);
    if (m == NULL)
        return oom(err), NULL;
    temporal__api__common__v1__memo__init(m);
    m->fields = calloc(n ? n : 1, sizeof *m->fields);
    if (m->fields == NULL) {
        PAYLOAD_FREE(m);
        return oom(err), NULL;
    }
    for (size_t i = 0; i < n; i++) {
        Temporal__Api__Common__V1__Memo__FieldsEntry *e = malloc(sizeof *e);
        if (e == NULL) {
            PAYLOAD_FREE(m);
            return oom(err), NULL;
        }
        temporal__api__common__v1__memo__fields_entry__init(e);
        m->fields[m->n_fields++] = e;
        char what[160];
        const char *key = kv[i].key ? kv[i].key : "";
        snprintf(what, sizeof what, "memo '%s'", key);
        const char *v = kv[i].value ? kv[i].value : "";
        int rc = (e->key = strdup(key)) == NULL
                     ? oom(err)
                     : keel_payload_new_json(v, strlen(v), what, &e->value, err);
        if (rc != KEEL_OK) {
            PAYLOAD_FREE(m);
            return NULL;
        }
    }
    return m;
}

Temporal__Api__Common__V1__SearchAttributes *
keel_search_attributes_new(const keel_search_attribute_value *v, size_t n, keel_error *err)
{
    Temporal__Api__Common__V1__SearchAttributes *sa = malloc(sizeof *sa);
    if (sa == NULL)
        return oom(err), NULL;
    temporal__api__common__v1__search_attributes__init(sa);
    sa->indexed_fields = calloc(n ? n : 1, sizeof *sa->indexed_fields);
    if (sa->indexed_fields == NULL) {
        PAYLOAD_FREE(sa);
        return oom(err), NULL;
    }
    for (size_t i = 0; i < n; i++) {
        Temporal__Api__Common__V1__SearchAttributes__IndexedFieldsEntry *e = malloc(sizeof *e);
        if (e == NULL) {
            PAYLOAD_FREE(sa);
            return oom(err), NULL;
        }
        temporal__api__common__v1__search_attributes__indexed_fields_entry__init(e);
        sa->indexed_fields[sa->n_indexed_fields++] = e;
        char what[160];
        snprintf(what, sizeof what, "search attribute '%s'", v[i].name ? v[i].name : "");
        const char *json = v[i].json ? v[i].json : "";
        int rc = (e->key = strdup(v[i].name ? v[i].name : "")) == NULL
                     ? oom(err)
                     : keel_payload_new_json(json, strlen(json), what, &e->value, err);
        /* The indexed type travels in the payload's metadata, as the SDKs send it. */
        if (rc == KEEL_OK)
            rc = keel_payload_set_metadata(e->value, "type",
                                           keel_indexed_value_type_name(v[i].type), err);
        if (rc != KEEL_OK) {
            PAYLOAD_FREE(sa);
            return NULL;
        }
    }
    return sa;
}
