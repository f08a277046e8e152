/* client - system info, namespaces and search attributes over the transport. */
#include "client/client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/proto.h"
#include "transport/transport.h"

struct keel_client {
    keel_transport *transport;
    /* Workers that take eager workflow starts (client.h), under eager_lock. */
    pthread_mutex_t eager_lock;
    keel_eager_target *eager;
    size_t n_eager, cap_eager, eager_next;
};

#define WF(m)  ((keel_rpc){KEEL_WORKFLOW_SERVICE, m})
#define OP(m)  ((keel_rpc){KEEL_OPERATOR_SERVICE, m})
#define MSG(p) ((const ProtobufCMessage *)(p))

/* ListNamespaces page size; the server caps it anyway. */
#define NAMESPACE_PAGE_SIZE 100
/* A listing longer than this many pages is taken for a server that never stops paging. */
#define MAX_NAMESPACE_PAGES 1000

int keel_client_new(keel_client **out, const keel_connect_options *opts, keel_error *err)
{
    *out = NULL;
    keel_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory creating the client");
    int rc = keel_transport_new(&c->transport, opts, err);
    if (rc != KEEL_OK) {
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->eager_lock, NULL);
    *out = c;
    return KEEL_OK;
}

void keel_client_free(keel_client *client)
{
    if (client == NULL)
        return;
    keel_transport_free(client->transport);
    pthread_mutex_destroy(&client->eager_lock);
    free(client->eager);
    free(client);
}

/* ---- eager workflow start: the workers on this client ---- */

int keel_client_eager_add(keel_client *client, const keel_eager_target *target)
{
    pthread_mutex_lock(&client->eager_lock);
    if (client->n_eager == client->cap_eager) {
        size_t cap = client->cap_eager ? client->cap_eager * 2 : 4;
        keel_eager_target *t = realloc(client->eager, cap * sizeof *t);
        if (t == NULL) {
            pthread_mutex_unlock(&client->eager_lock);
            return KEEL_ENOMEM;
        }
        client->eager = t;
        client->cap_eager = cap;
    }
    client->eager[client->n_eager++] = *target;
    pthread_mutex_unlock(&client->eager_lock);
    return KEEL_OK;
}

void keel_client_eager_remove(keel_client *client, void *ctx)
{
    pthread_mutex_lock(&client->eager_lock);
    for (size_t i = 0; i < client->n_eager; i++)
        if (client->eager[i].ctx == ctx) {
            client->eager[i] = client->eager[--client->n_eager];
            break;
        }
    pthread_mutex_unlock(&client->eager_lock);
}

bool keel_client_eager_reserve(keel_client *client, const char *task_queue, keel_eager_target *out)
{
    bool found = false;
    pthread_mutex_lock(&client->eager_lock);
    size_t n = client->n_eager;
    for (size_t k = 0; k < n && !found; k++) {
        size_t i = (client->eager_next + k) % n;
        const keel_eager_target *t = &client->eager[i];
        if (strcmp(t->task_queue, task_queue) == 0 && t->try_reserve(t->ctx)) {
            *out = *t;
            client->eager_next = i + 1;
            found = true;
        }
    }
    pthread_mutex_unlock(&client->eager_lock);
    return found;
}

keel_transport *keel_client_transport(const keel_client *client)
{
    return client->transport;
}

const char *keel_client_address(const keel_client *client)
{
    return keel_transport_address(client->transport);
}

const char *keel_client_namespace(const keel_client *client)
{
    return keel_transport_namespace(client->transport);
}

static int oom(keel_error *err, const char *what)
{
    return keel_error_set(err, KEEL_ENOMEM, "out of memory reading %s", what);
}

/* ---- system info ---- */

/* Read every boolean field of the Capabilities message through its descriptor, so capabilities a
 * newer API adds show up without code changes here. */
static void read_capabilities(const ProtobufCMessage *caps, keel_system_info *out)
{
    if (caps == NULL)
        return;
    const ProtobufCMessageDescriptor *d = caps->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_BOOL || f->label == PROTOBUF_C_LABEL_REPEATED)
            continue;
        if (out->n_capabilities == KEEL_MAX_CAPABILITIES) {
            out->capabilities_truncated = true;
            break;
        }
        const protobuf_c_boolean *v = (const protobuf_c_boolean *)((const char *)caps + f->offset);
        out->capabilities[out->n_capabilities].name = f->name;
        out->capabilities[out->n_capabilities].enabled = *v != 0;
        out->n_capabilities++;
    }
}

int keel_client_system_info(keel_client *client, keel_system_info *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    Temporal__Api__Workflowservice__V1__GetSystemInfoRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__GET_SYSTEM_INFO_REQUEST__INIT;
    Temporal__Api__Workflowservice__V1__GetSystemInfoResponse *resp = NULL;
    int rc = keel_transport_call(
        client->transport, WF("GetSystemInfo"), MSG(&req),
        &temporal__api__workflowservice__v1__get_system_info_response__descriptor,
        (ProtobufCMessage **)&resp, NULL, err);
    if (rc != KEEL_OK)
        return rc;
    out->server_version = keel_proto_strdup(resp->server_version);
    read_capabilities(MSG(resp->capabilities), out);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
    if (out->server_version == NULL)
        return oom(err, "GetSystemInfo");
    return KEEL_OK;
}

void keel_system_info_dispose(keel_system_info *info)
{
    if (info == NULL)
        return;
    free(info->server_version);
    memset(info, 0, sizeof *info);
}

bool keel_system_info_has(const keel_system_info *info, const char *capability)
{
    for (size_t i = 0; i < info->n_capabilities; i++)
        if (strcmp(info->capabilities[i].name, capability) == 0)
            return info->capabilities[i].enabled;
    return false;
}

/* ---- namespaces ---- */

const char *keel_namespace_state_name(int state)
{
    switch (state) {
    case KEEL_NAMESPACE_STATE_UNSPECIFIED:
        return "Unspecified";
    case KEEL_NAMESPACE_STATE_REGISTERED:
        return "Registered";
    case KEEL_NAMESPACE_STATE_DEPRECATED:
        return "Deprecated";
    case KEEL_NAMESPACE_STATE_DELETED:
        return "Deleted";
    default:
        return "Unknown";
    }
}

void keel_namespace_info_dispose(keel_namespace_info *info)
{
    if (info == NULL)
        return;
    free(info->name);
    free(info->id);
    free(info->description);
    free(info->owner_email);
    free(info->active_cluster);
    for (size_t i = 0; i < info->n_data; i++) {
        free(info->data[i].key);
        free(info->data[i].value);
    }
    free(info->data);
    memset(info, 0, sizeof *info);
}

static int read_namespace(const Temporal__Api__Workflowservice__V1__DescribeNamespaceResponse *r,
                          keel_namespace_info *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    const Temporal__Api__Namespace__V1__NamespaceInfo *ni = r->namespace_info;
    if (ni == NULL)
        return keel_error_set(err, KEEL_EPROTOCOL,
                              "the server described a namespace without namespace_info");
    out->name = keel_proto_strdup(ni->name);
    out->id = keel_proto_strdup(ni->id);
    out->description = keel_proto_strdup(ni->description);
    out->owner_email = keel_proto_strdup(ni->owner_email);
    out->state = (int)ni->state;
    out->is_global = r->is_global_namespace != 0;
    out->active_cluster = keel_proto_strdup(
        r->replication_config ? r->replication_config->active_cluster_name : NULL);
    if (r->config)
        out->retention_ms = keel_proto_duration_ms(r->config->workflow_execution_retention_ttl);
    bool ok = out->name && out->id && out->description && out->owner_email && out->active_cluster;
    if (ok && ni->n_data > 0) {
        out->data = calloc(ni->n_data, sizeof *out->data);
        ok = out->data != NULL;
        for (size_t i = 0; ok && i < ni->n_data; i++) {
            out->data[i].key = keel_proto_strdup(ni->data[i]->key);
            out->data[i].value = keel_proto_strdup(ni->data[i]->value);
            out->n_data = i + 1;
            ok = out->data[i].key && out->data[i].value;
        }
    }
    if (!ok) {
        keel_namespace_info_dispose(out);
        return oom(err, "a namespace description");
    }
    return KEEL_OK;
}

int keel_namespace_register_options_init(keel_namespace_register_options *opts,
                                         unsigned int version)
{
    if (opts == NULL || version != KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION)
        return KEEL_EINVAL;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    opts->retention_ms = KEEL_DEFAULT_RETENTION_MS;
    return KEEL_OK;
}

int keel_client_namespace_register(keel_client *client, const keel_namespace_register_options *opts,
                                   keel_error *err)
{
    if (opts == NULL || opts->version != KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "namespace register options not initialised");
    if (opts->name == NULL || opts->name[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "a namespace needs a name");
    if (opts->retention_ms <= 0)
        return keel_error_set(err, KEEL_EINVAL, "namespace retention must be positive, not %lld ms",
                              (long long)opts->retention_ms);

    Temporal__Api__Workflowservice__V1__RegisterNamespaceRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__REGISTER_NAMESPACE_REQUEST__INIT;
    Google__Protobuf__Duration retention;
    keel_proto_duration_set(&retention, opts->retention_ms);
    req.namespace_ = (char *)opts->name;
    req.description = (char *)(opts->description ? opts->description : "");
    req.owner_email = (char *)(opts->owner_email ? opts->owner_email : "");
    req.workflow_execution_retention_period = &retention;

    Temporal__Api__Workflowservice__V1__RegisterNamespaceRequest__DataEntry *entries = NULL;
    Temporal__Api__Workflowservice__V1__RegisterNamespaceRequest__DataEntry **ptrs = NULL;
    if (opts->n_data > 0) {
        entries = calloc(opts->n_data, sizeof *entries);
        ptrs = calloc(opts->n_data, sizeof *ptrs);
        if (entries == NULL || ptrs == NULL) {
            free(entries);
            free(ptrs);
            return keel_error_set(err, KEEL_ENOMEM, "out of memory registering a namespace");
        }
        for (size_t i = 0; i < opts->n_data; i++) {
            temporal__api__workflowservice__v1__register_namespace_request__data_entry__init(
                &entries[i]);
            entries[i].key = opts->data[i].key;
            entries[i].value = opts->data[i].value;
            ptrs[i] = &entries[i];
        }
        req.n_data = opts->n_data;
        req.data = ptrs;
    }

    ProtobufCMessage *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = opts->name};
    int rc = keel_transport_call(
        client->transport, WF("RegisterNamespace"), MSG(&req),
        &temporal__api__workflowservice__v1__register_namespace_response__descriptor, &resp, &co,
        err);
    free(entries);
    free(ptrs);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

int keel_client_namespace_describe(keel_client *client, const char *name, keel_namespace_info *out,
                                   keel_error *err)
{
    memset(out, 0, sizeof *out);
    if (name == NULL || name[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "describe needs a namespace name");
    Temporal__Api__Workflowservice__V1__DescribeNamespaceRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_NAMESPACE_REQUEST__INIT;
    req.namespace_ = (char *)name;
    Temporal__Api__Workflowservice__V1__DescribeNamespaceResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = name};
    int rc = keel_transport_call(
        client->transport, WF("DescribeNamespace"), MSG(&req),
        &temporal__api__workflowservice__v1__describe_namespace_response__descriptor,
        (ProtobufCMessage **)&resp, &co, err);
    if (rc != KEEL_OK)
        return rc;
    rc = read_namespace(resp, out, err);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
    return rc;
}

void keel_namespace_list_dispose(keel_namespace_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        keel_namespace_info_dispose(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

static int append_namespaces(keel_namespace_list *out,
                             const Temporal__Api__Workflowservice__V1__ListNamespacesResponse *r,
                             keel_error *err)
{
    if (r->n_namespaces == 0)
        return KEEL_OK;
    keel_namespace_info *items =
        realloc(out->items, (out->count + r->n_namespaces) * sizeof *items);
    if (items == NULL)
        return oom(err, "the namespace list");
    out->items = items;
    for (size_t i = 0; i < r->n_namespaces; i++) {
        int rc = read_namespace(r->namespaces[i], &out->items[out->count], err);
        if (rc != KEEL_OK)
            return rc;
        out->count++;
    }
    return KEEL_OK;
}

int keel_client_namespace_list(keel_client *client, keel_namespace_list *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    keel_page_token token = {0};
    int rc = KEEL_OK;
    int pages = 0;
    do {
        if (++pages > MAX_NAMESPACE_PAGES) {
            rc = keel_error_set(err, KEEL_EPROTOCOL,
                                "ListNamespaces to %s: still paging after %d pages; giving up",
                                keel_transport_address(client->transport), MAX_NAMESPACE_PAGES);
            break;
        }
        Temporal__Api__Workflowservice__V1__ListNamespacesRequest req =
            TEMPORAL__API__WORKFLOWSERVICE__V1__LIST_NAMESPACES_REQUEST__INIT;
        req.page_size = NAMESPACE_PAGE_SIZE;
        req.next_page_token = keel_page_token_get(&token);
        Temporal__Api__Workflowservice__V1__ListNamespacesResponse *resp = NULL;
        rc = keel_transport_call(
            client->transport, WF("ListNamespaces"), MSG(&req),
            &temporal__api__workflowservice__v1__list_namespaces_response__descriptor,
            (ProtobufCMessage **)&resp, NULL, err);
        if (rc != KEEL_OK)
            break;
        rc = append_namespaces(out, resp, err);
        if (rc == KEEL_OK)
            rc = keel_page_token_next(&token, &resp->next_page_token, "ListNamespaces", err);
        protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
    } while (rc == KEEL_OK && token.len > 0);
    keel_page_token_free(&token);
    if (rc != KEEL_OK)
        keel_namespace_list_dispose(out);
    return rc;
}

/* ---- search attributes ---- */

static const char *const indexed_type_names[] = {
    "Unspecified", "Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList",
};
#define N_INDEXED_TYPES ((int)(sizeof indexed_type_names / sizeof indexed_type_names[0]))

const char *keel_indexed_value_type_name(int type)
{
    if (type < 0 || type >= N_INDEXED_TYPES)
        return "Unknown";
    return indexed_type_names[type];
}

int keel_indexed_value_type_parse(const char *s, keel_indexed_value_type *out, keel_error *err)
{
    const char *prefix = "INDEXED_VALUE_TYPE_";
    if (s == NULL)
        s = "";
    const char *name = strncasecmp(s, prefix, strlen(prefix)) == 0 ? s + strlen(prefix) : s;
    for (int i = 1; i < N_INDEXED_TYPES; i++) {
        /* "KEYWORD_LIST" (proto spelling) and "KeywordList" both name type 7. */
        char proto[32];
        const char *pn =
            keel_proto_enum_name(&temporal__api__enums__v1__indexed_value_type__descriptor, i);
        snprintf(proto, sizeof proto, "%s", pn ? pn + strlen(prefix) : "");
        if (strcasecmp(name, indexed_type_names[i]) == 0 || strcasecmp(name, proto) == 0) {
            *out = (keel_indexed_value_type)i;
            return KEEL_OK;
        }
    }
    return keel_error_set(err, KEEL_EINVAL,
                          "unknown search attribute type '%s' (use Text, Keyword, Int, Double, "
                          "Bool, Datetime or KeywordList)",
                          s);
}

void keel_search_attribute_list_dispose(keel_search_attribute_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].name);
    free(list->items);
    memset(list, 0, sizeof *list);
}

static int cmp_attribute(const void *a, const void *b)
{
    const keel_search_attribute *x = a, *y = b;
    if (x->is_system != y->is_system)
        return x->is_system ? 1 : -1;
    return strcmp(x->name, y->name);
}

static int append_attribute(keel_search_attribute_list *out, const char *name, int type,
                            bool is_system)
{
    keel_search_attribute *a = &out->items[out->count];
    a->name = keel_proto_strdup(name);
    if (a->name == NULL)
        return KEEL_ENOMEM;
    a->type = type;
    a->is_system = is_system;
    out->count++;
    return KEEL_OK;
}

int keel_client_search_attributes_list(keel_client *client, const char *ns_arg,
                                       keel_search_attribute_list *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    const char *ns = ns_arg ? ns_arg : keel_transport_namespace(client->transport);
    Temporal__Api__Operatorservice__V1__ListSearchAttributesRequest req =
        TEMPORAL__API__OPERATORSERVICE__V1__LIST_SEARCH_ATTRIBUTES_REQUEST__INIT;
    req.namespace_ = (char *)ns;
    Temporal__Api__Operatorservice__V1__ListSearchAttributesResponse *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = ns};
    int rc = keel_transport_call(
        client->transport, OP("ListSearchAttributes"), MSG(&req),
        &temporal__api__operatorservice__v1__list_search_attributes_response__descriptor,
        (ProtobufCMessage **)&resp, &co, err);
    if (rc != KEEL_OK)
        return rc;
    size_t total = resp->n_custom_attributes + resp->n_system_attributes;
    out->items = total ? calloc(total, sizeof *out->items) : NULL;
    if (total && out->items == NULL)
        rc = KEEL_ENOMEM;
    for (size_t i = 0; rc == KEEL_OK && i < resp->n_custom_attributes; i++)
        rc = append_attribute(out, resp->custom_attributes[i]->key,
                              (int)resp->custom_attributes[i]->value, false);
    for (size_t i = 0; rc == KEEL_OK && i < resp->n_system_attributes; i++)
        rc = append_attribute(out, resp->system_attributes[i]->key,
                              (int)resp->system_attributes[i]->value, true);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
    if (rc != KEEL_OK) {
        keel_search_attribute_list_dispose(out);
        return oom(err, "the search attribute list");
    }
    if (out->count > 1)
        qsort(out->items, out->count, sizeof *out->items, cmp_attribute);
    return KEEL_OK;
}

int keel_client_search_attributes_add(keel_client *client, const char *ns_arg,
                                      const keel_search_attribute *attrs, size_t n, keel_error *err)
{
    if (n == 0)
        return keel_error_set(err, KEEL_EINVAL, "no search attributes to add");
    for (size_t i = 0; i < n; i++) {
        if (attrs[i].name == NULL || attrs[i].name[0] == '\0')
            return keel_error_set(err, KEEL_EINVAL, "search attribute %zu has no name", i + 1);
        if (attrs[i].type <= KEEL_INDEXED_VALUE_TYPE_UNSPECIFIED ||
            attrs[i].type >= N_INDEXED_TYPES)
            return keel_error_set(err, KEEL_EINVAL, "search attribute '%s' has no valid type",
                                  attrs[i].name);
    }
    const char *ns = ns_arg ? ns_arg : keel_transport_namespace(client->transport);
    Temporal__Api__Operatorservice__V1__AddSearchAttributesRequest__SearchAttributesEntry *entries =
        calloc(n, sizeof *entries);
    Temporal__Api__Operatorservice__V1__AddSearchAttributesRequest__SearchAttributesEntry **ptrs =
        calloc(n, sizeof *ptrs);
    if (entries == NULL || ptrs == NULL) {
        free(entries);
        free(ptrs);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory adding search attributes");
    }
    for (size_t i = 0; i < n; i++) {
        temporal__api__operatorservice__v1__add_search_attributes_request__search_attributes_entry__init(
            &entries[i]);
        entries[i].key = attrs[i].name;
        entries[i].value = (Temporal__Api__Enums__V1__IndexedValueType)attrs[i].type;
        ptrs[i] = &entries[i];
    }
    Temporal__Api__Operatorservice__V1__AddSearchAttributesRequest req =
        TEMPORAL__API__OPERATORSERVICE__V1__ADD_SEARCH_ATTRIBUTES_REQUEST__INIT;
    req.namespace_ = (char *)ns;
    req.n_search_attributes = n;
    req.search_attributes = ptrs;
    ProtobufCMessage *resp = NULL;
    keel_call_options co = {.retry = true, .namespace = ns};
    int rc = keel_transport_call(
        client->transport, OP("AddSearchAttributes"), MSG(&req),
        &temporal__api__operatorservice__v1__add_search_attributes_response__descriptor, &resp, &co,
        err);
    free(entries);
    free(ptrs);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}
