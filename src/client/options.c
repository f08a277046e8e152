/* Connection options: defaults, the TEMPORAL_* environment, and consistency checks. */
#include "client/options.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bytes of a struct of each version keel takes (0: not one). */
static size_t size_of_version(unsigned int version)
{
    switch (version) {
    case 1:
        return offsetof(keel_connect_options, tls_ca_data);
    case 2:
        return sizeof(keel_connect_options);
    default:
        return 0;
    }
}

bool keel_connect_options_upgrade(const keel_connect_options *in, keel_connect_options *out)
{
    memset(out, 0, sizeof *out);
    size_t n = in ? size_of_version(in->version) : 0;
    if (n == 0)
        return false;
    memcpy(out, in, n);
    out->version = KEEL_CONNECT_OPTIONS_VERSION;
    return true;
}

/* Write o (current version) back into the caller's struct of version `version`. */
static void store(keel_connect_options *opts, unsigned int version, const keel_connect_options *o)
{
    memcpy(opts, o, size_of_version(version));
    opts->version = version;
}

int keel_connect_options_init(keel_connect_options *opts, unsigned int version)
{
    if (opts == NULL || size_of_version(version) == 0)
        return KEEL_EINVAL;
    keel_connect_options o;
    memset(&o, 0, sizeof o);
    o.address = KEEL_DEFAULT_ADDRESS;
    o.namespace_ = KEEL_DEFAULT_NAMESPACE;
    o.tls = KEEL_TLS_AUTO;
    o.rpc_timeout_ms = KEEL_DEFAULT_RPC_TIMEOUT_MS;
    store(opts, version, &o);
    return KEEL_OK;
}

/* An unset or empty variable counts as absent, as in the official SDKs' env config. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

static int parse_bool(const char *name, const char *v, bool *out, keel_error *err)
{
    if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return KEEL_OK;
    }
    if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return KEEL_OK;
    }
    return keel_error_set(err, KEEL_EINVAL, "%s='%s' is not a boolean (use true or false)", name,
                          v);
}

int keel_connect_options_from_env(keel_connect_options *opts, keel_error *err)
{
    keel_connect_options o;
    if (!keel_connect_options_upgrade(opts, &o))
        return keel_error_set(err, KEEL_EINVAL, "connect options not initialised");

    const char *v;
    if ((v = env("TEMPORAL_ADDRESS")))
        o.address = v;
    if ((v = env("TEMPORAL_NAMESPACE")))
        o.namespace_ = v;
    if ((v = env("TEMPORAL_API_KEY")))
        o.api_key = v;
    if ((v = env("TEMPORAL_TLS"))) {
        bool on = false;
        int rc = parse_bool("TEMPORAL_TLS", v, &on, err);
        if (rc != KEEL_OK)
            return rc;
        o.tls = on ? KEEL_TLS_ON : KEEL_TLS_OFF;
    }
    if ((v = env("TEMPORAL_TLS_SERVER_CA_CERT_PATH")))
        o.tls_ca_path = v;
    if ((v = env("TEMPORAL_TLS_CLIENT_CERT_PATH")))
        o.tls_cert_path = v;
    if ((v = env("TEMPORAL_TLS_CLIENT_KEY_PATH")))
        o.tls_key_path = v;
    if ((v = env("TEMPORAL_TLS_SERVER_NAME")))
        o.tls_server_name = v;
    static const char *const data_vars[] = {"TEMPORAL_TLS_SERVER_CA_CERT_DATA",
                                            "TEMPORAL_TLS_CLIENT_CERT_DATA",
                                            "TEMPORAL_TLS_CLIENT_KEY_DATA"};
    const char **data_slots[] = {&o.tls_ca_data, &o.tls_cert_data, &o.tls_key_data};
    for (size_t i = 0; i < 3; i++) {
        if ((v = env(data_vars[i])) == NULL)
            continue;
        if (opts->version < 2)
            return keel_error_set(err, KEEL_EINVAL,
                                  "%s needs version 2 connect options (rebuild against the "
                                  "current keel/options.h)",
                                  data_vars[i]);
        *data_slots[i] = v;
    }

    store(opts, opts->version, &o);
    return KEEL_OK;
}

bool keel_header_value_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* gRPC target URI schemes passed through as they are. */
static bool is_target_uri(const char *a)
{
    static const char *const schemes[] = {"dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strncmp(a, schemes[i], strlen(schemes[i])) == 0)
            return true;
    return false;
}

/* host:port or [v6]:port with a port of 1-65535. */
static bool has_valid_port(const char *a)
{
    const char *colon = strrchr(a, ':');
    if (colon == NULL || colon == a || colon[1] == '\0' || strlen(colon + 1) > 5)
        return false;
    for (const char *p = colon + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    long port = strtol(colon + 1, NULL, 10);
    return port >= 1 && port <= 65535;
}

static bool any_tls_path(const keel_connect_options *o)
{
    return o->tls_ca_path || o->tls_cert_path || o->tls_key_path || o->tls_server_name ||
           o->tls_ca_data || o->tls_cert_data || o->tls_key_data;
}

bool keel_connect_options_use_tls(const keel_connect_options *in)
{
    keel_connect_options o;
    if (!keel_connect_options_upgrade(in, &o))
        return false;
    const keel_connect_options *opts = &o;
    switch (opts->tls) {
    case KEEL_TLS_ON:
        return true;
    case KEEL_TLS_OFF:
        return false;
    default:
        /* An API key travels in a header: sending it in cleartext is never what anyone wants. */
        return opts->api_key != NULL || any_tls_path(opts);
    }
}

/* gRPC metadata names: lowercase letters, digits, '-', '_', '.' (RFC 7540 and gRPC's spec). */
static bool header_name_ok(const char *n)
{
    if (n == NULL || n[0] == '\0' || strlen(n) > 255)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
              *p == '.'))
            return false;
    return true;
}

static bool header_reserved(const char *n)
{
    static const char *const own[] = {"authorization",  "temporal-namespace", "client-name",
                                      "client-version", "content-type",       "te",
                                      "user-agent"};
    if (strncmp(n, "grpc-", 5) == 0)
        return true;
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (strcmp(n, own[i]) == 0)
            return true;
    return false;
}

int keel_connect_options_validate(const keel_connect_options *in, keel_error *err)
{
    keel_connect_options copy;
    if (!keel_connect_options_upgrade(in, &copy))
        return keel_error_set(err, KEEL_EINVAL, "connect options not initialised");
    const keel_connect_options *o = &copy;
    if (o->address == NULL || o->address[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "the Temporal address is empty");
    if (!is_target_uri(o->address) && !has_valid_port(o->address))
        return keel_error_set(err, KEEL_EINVAL,
                              "Temporal address '%s' has no port (expected host:port, "
                              "port 1-65535)",
                              o->address);
    if (o->namespace_ == NULL || o->namespace_[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "the Temporal namespace is empty");
    if (!keel_header_value_ok(o->namespace_))
        return keel_error_set(err, KEEL_EINVAL,
                              "the Temporal namespace '%s' has a character a gRPC header cannot "
                              "carry (only printable ASCII)",
                              o->namespace_);
    /* Never echo the key: a control character here is usually a trailing newline from a file. */
    if (o->api_key && !keel_header_value_ok(o->api_key))
        return keel_error_set(err, KEEL_EINVAL,
                              "the API key has a control or non-ASCII character (a trailing "
                              "newline?); it cannot be sent in a gRPC header");
    if (o->tls_ca_path && o->tls_ca_data)
        return keel_error_set(err, KEEL_EINVAL,
                              "the server CA certificate is given both as a path and as data "
                              "(server_ca_cert_path and server_ca_cert_data): give one");
    if (o->tls_cert_path && o->tls_cert_data)
        return keel_error_set(err, KEEL_EINVAL,
                              "the client certificate is given both as a path and as data "
                              "(client_cert_path and client_cert_data): give one");
    if (o->tls_key_path && o->tls_key_data)
        return keel_error_set(err, KEEL_EINVAL,
                              "the client key is given both as a path and as data "
                              "(client_key_path and client_key_data): give one");
    if ((o->tls_cert_path == NULL && o->tls_cert_data == NULL) !=
        (o->tls_key_path == NULL && o->tls_key_data == NULL))
        return keel_error_set(err, KEEL_EINVAL,
                              "mTLS needs both a client certificate and its key "
                              "(TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH, "
                              "or their *_DATA)");
    if (o->n_headers > 0 && o->headers == NULL)
        return keel_error_set(err, KEEL_EINVAL, "n_headers is %zu but headers is NULL",
                              o->n_headers);
    for (size_t i = 0; i < o->n_headers; i++) {
        const keel_header *h = &o->headers[i];
        if (!header_name_ok(h->name))
            return keel_error_set(err, KEEL_EINVAL,
                                  "gRPC header name '%s' is not valid (lowercase a-z, 0-9, '-', "
                                  "'_', '.'; at most 255 bytes)",
                                  h->name ? h->name : "(null)");
        if (header_reserved(h->name))
            return keel_error_set(err, KEEL_EINVAL,
                                  "gRPC header '%s' is set by keel or gRPC itself and cannot be "
                                  "given in grpc_meta",
                                  h->name);
        if (h->value == NULL || !keel_header_value_ok(h->value))
            return keel_error_set(err, KEEL_EINVAL,
                                  "the value of gRPC header '%s' has a control or non-ASCII "
                                  "character",
                                  h->name);
    }
    if (o->tls == KEEL_TLS_OFF && any_tls_path(o))
        return keel_error_set(err, KEEL_EINVAL,
                              "TLS is switched off (TEMPORAL_TLS=false) but TLS files are set");
    if (o->rpc_timeout_ms <= 0)
        return keel_error_set(err, KEEL_EINVAL, "the RPC timeout must be positive, not %lld ms",
                              (long long)o->rpc_timeout_ms);
    return KEEL_OK;
}
