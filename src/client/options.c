/* Connection options: defaults, the TEMPORAL_* environment, and consistency checks. */
#include "keel/options.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int keel_connect_options_init(keel_connect_options *opts, unsigned int version)
{
    if (opts == NULL || version != KEEL_CONNECT_OPTIONS_VERSION)
        return KEEL_EINVAL;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    opts->address = KEEL_DEFAULT_ADDRESS;
    opts->namespace_ = KEEL_DEFAULT_NAMESPACE;
    opts->tls = KEEL_TLS_AUTO;
    opts->rpc_timeout_ms = KEEL_DEFAULT_RPC_TIMEOUT_MS;
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
    if (opts == NULL || opts->version != KEEL_CONNECT_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "connect options not initialised");

    keel_connect_options o = *opts;
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

    *opts = o;
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
    return o->tls_ca_path || o->tls_cert_path || o->tls_key_path || o->tls_server_name;
}

bool keel_connect_options_use_tls(const keel_connect_options *opts)
{
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

int keel_connect_options_validate(const keel_connect_options *o, keel_error *err)
{
    if (o == NULL || o->version != KEEL_CONNECT_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "connect options not initialised");
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
    if ((o->tls_cert_path == NULL) != (o->tls_key_path == NULL))
        return keel_error_set(err, KEEL_EINVAL,
                              "mTLS needs both a client certificate and its key "
                              "(TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH)");
    if (o->tls == KEEL_TLS_OFF && any_tls_path(o))
        return keel_error_set(err, KEEL_EINVAL,
                              "TLS is switched off (TEMPORAL_TLS=false) but TLS files are set");
    if (o->rpc_timeout_ms <= 0)
        return keel_error_set(err, KEEL_EINVAL, "the RPC timeout must be positive, not %lld ms",
                              (long long)o->rpc_timeout_ms);
    return KEEL_OK;
}
