/*
 * keel/client.h - a Temporal client: server info, namespaces, search attributes.
 *
 * A keel_client holds one connection (one gRPC channel) to a Temporal frontend. It is safe to use
 * from several threads at once. Results come back in caller-owned structs that own their strings;
 * release them with the matching `_dispose` function (which frees what the struct points to, not
 * the struct itself). On failure the out struct is left zeroed and needs no dispose. Every call
 * retries retryable failures within the client's RPC timeout; a call that does not change
 * anything on a second try (RegisterNamespace, AddSearchAttributes) may therefore report
 * KEEL_EEXISTS when its first attempt landed but the answer was lost.
 */
#ifndef KEEL_CLIENT_H
#define KEEL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"
#include "keel/options.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_client keel_client;

/*
 * Create a client. No connection is made yet: the first call connects, so an unreachable server
 * is reported by that call. On success the caller owns *out (free with keel_client_free()).
 */
int keel_client_new(keel_client **out, const keel_connect_options *opts, keel_error *err);

/* Close the connection and free the client. NULL is allowed. */
void keel_client_free(keel_client *client);

/* The address and namespace the client was created with. Borrowed: valid until free. */
const char *keel_client_address(const keel_client *client);
const char *keel_client_namespace(const keel_client *client);

/* ---- server ---- */

/* The server's capabilities beyond this many (the API defines 13 today) are dropped and
 * capabilities_truncated is set. */
#define KEEL_MAX_CAPABILITIES 64

typedef struct keel_capability {
    const char *name; /* the proto field name, e.g. "supports_schedules"; static storage */
    bool enabled;
} keel_capability;

typedef struct keel_system_info {
    char *server_version; /* owned */
    size_t n_capabilities;
    keel_capability capabilities[KEEL_MAX_CAPABILITIES];
    bool capabilities_truncated;
} keel_system_info;

/* GetSystemInfo: the server's version and capabilities. Release with keel_system_info_dispose. */
int keel_client_system_info(keel_client *client, keel_system_info *out, keel_error *err);
void keel_system_info_dispose(keel_system_info *info);

/* Whether the server reports a capability by its proto field name; false when unknown. */
bool keel_system_info_has(const keel_system_info *info, const char *capability);

/* ---- namespaces ---- */

typedef enum keel_namespace_state {
    KEEL_NAMESPACE_STATE_UNSPECIFIED = 0,
    KEEL_NAMESPACE_STATE_REGISTERED = 1,
    KEEL_NAMESPACE_STATE_DEPRECATED = 2,
    KEEL_NAMESPACE_STATE_DELETED = 3,
} keel_namespace_state;

/* "Unspecified", "Registered", "Deprecated", "Deleted"; "Unknown" for other values. Static. */
const char *keel_namespace_state_name(int state);

typedef struct keel_kv {
    char *key;
    char *value;
} keel_kv;

typedef struct keel_namespace_info {
    char *name;
    char *id;
    char *description;
    char *owner_email;
    int state;            /* keel_namespace_state; other values may come from newer servers */
    int64_t retention_ms; /* workflow execution retention */
    bool is_global;
    char *active_cluster;
    size_t n_data;
    keel_kv *data; /* the namespace's free-form data map */
} keel_namespace_info;

void keel_namespace_info_dispose(keel_namespace_info *info);

#define KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION 1

typedef struct keel_namespace_register_options {
    unsigned int version;
    const char *name; /* required */
    const char *description;
    const char *owner_email;
    int64_t retention_ms; /* must be positive; _init sets KEEL_DEFAULT_RETENTION_MS */
    size_t n_data;
    const keel_kv *data;
} keel_namespace_register_options;

#define KEEL_DEFAULT_RETENTION_MS (72LL * 3600 * 1000)
/* The defaults, as a static initializer: what keel_namespace_register_options_init() sets. */
#define KEEL_NAMESPACE_REGISTER_OPTIONS_INIT                                                       \
    {                                                                                              \
        .version = KEEL_NAMESPACE_REGISTER_OPTIONS_VERSION,                                        \
        .retention_ms = KEEL_DEFAULT_RETENTION_MS                                                  \
    }

int keel_namespace_register_options_init(keel_namespace_register_options *opts,
                                         unsigned int version);

/* RegisterNamespace. A namespace that exists already fails with KEEL_EEXISTS. */
int keel_client_namespace_register(keel_client *client, const keel_namespace_register_options *opts,
                                   keel_error *err);

/* DescribeNamespace. An unknown name fails with KEEL_ENOTFOUND. */
int keel_client_namespace_describe(keel_client *client, const char *name, keel_namespace_info *out,
                                   keel_error *err);

typedef struct keel_namespace_list {
    size_t count;
    keel_namespace_info *items;
} keel_namespace_list;

/* ListNamespaces, all pages. Release with keel_namespace_list_dispose. */
int keel_client_namespace_list(keel_client *client, keel_namespace_list *out, keel_error *err);
void keel_namespace_list_dispose(keel_namespace_list *list);

/* ---- search attributes ---- */

typedef enum keel_indexed_value_type {
    KEEL_INDEXED_VALUE_TYPE_UNSPECIFIED = 0,
    KEEL_INDEXED_VALUE_TYPE_TEXT = 1,
    KEEL_INDEXED_VALUE_TYPE_KEYWORD = 2,
    KEEL_INDEXED_VALUE_TYPE_INT = 3,
    KEEL_INDEXED_VALUE_TYPE_DOUBLE = 4,
    KEEL_INDEXED_VALUE_TYPE_BOOL = 5,
    KEEL_INDEXED_VALUE_TYPE_DATETIME = 6,
    KEEL_INDEXED_VALUE_TYPE_KEYWORD_LIST = 7,
} keel_indexed_value_type;

/* "Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList"; "Unspecified". */
const char *keel_indexed_value_type_name(int type);

/* Parse a type name, case-insensitively; also accepts "INDEXED_VALUE_TYPE_KEYWORD". */
int keel_indexed_value_type_parse(const char *s, keel_indexed_value_type *out, keel_error *err);

typedef struct keel_search_attribute {
    char *name;
    int type; /* keel_indexed_value_type */
    bool is_system;
} keel_search_attribute;

typedef struct keel_search_attribute_list {
    size_t count;
    keel_search_attribute *items; /* custom attributes first, then system ones, each by name */
} keel_search_attribute_list;

/* OperatorService.ListSearchAttributes for the client's namespace (or `ns` if not NULL). */
int keel_client_search_attributes_list(keel_client *client, const char *ns,
                                       keel_search_attribute_list *out, keel_error *err);
void keel_search_attribute_list_dispose(keel_search_attribute_list *list);

/* OperatorService.AddSearchAttributes in the client's namespace (or `ns` if not NULL).
 * Attributes that exist already fail with KEEL_EEXISTS. */
int keel_client_search_attributes_add(keel_client *client, const char *ns,
                                      const keel_search_attribute *attrs, size_t n,
                                      keel_error *err);

#ifdef __cplusplus
}
#endif

#endif
