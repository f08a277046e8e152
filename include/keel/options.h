/*
 * keel/options.h - how to reach a Temporal frontend: address, namespace, TLS, API key.
 *
 * Options follow one pattern: a struct whose first field is `version`, a KEEL_..._INIT
 * initialiser, and an `_init` function that fills in the defaults. Unset string fields are NULL.
 * String fields are borrowed: keel copies what it keeps, so they only need to outlive the call
 * they are passed to.
 */
#ifndef KEEL_OPTIONS_H
#define KEEL_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_DEFAULT_ADDRESS        "localhost:7233"
#define KEEL_DEFAULT_NAMESPACE      "default"
#define KEEL_DEFAULT_RPC_TIMEOUT_MS 10000
/* 2 added the fields marked "version 2" at the end; keel still takes a version 1 struct (one
 * built against an older header) and reads and writes only the fields it has. */
#define KEEL_CONNECT_OPTIONS_VERSION 2

typedef enum keel_tls_mode {
    KEEL_TLS_AUTO = 0, /* TLS when an API key or any TLS path is set, plaintext otherwise */
    KEEL_TLS_OFF,
    KEEL_TLS_ON,
} keel_tls_mode;

/* One gRPC metadata entry (a header): a lowercase name and a printable-ASCII value. */
typedef struct keel_header {
    const char *name;
    const char *value;
} keel_header;

typedef struct keel_connect_options {
    unsigned int version;
    /* host:port of the frontend (or a gRPC target URI: dns:, ipv4:, ipv6:, unix:);
     * default KEEL_DEFAULT_ADDRESS */
    const char *address;
    const char *namespace_; /* default KEEL_DEFAULT_NAMESPACE (named so C++ can include this) */
    const char *identity;   /* recorded in history events; default "<pid>@<hostname>" */

    keel_tls_mode tls;
    const char *tls_ca_path;     /* PEM roots to verify the server; NULL: system roots */
    const char *tls_cert_path;   /* client certificate (PEM) for mTLS */
    const char *tls_key_path;    /* client private key (PEM) for mTLS */
    const char *tls_server_name; /* overrides the name checked in the server certificate */

    const char *api_key; /* sent as `authorization: Bearer <key>`; never logged */

    /* Deadline of one ordinary (non-long-poll) call attempt, and of its retries together. */
    int64_t rpc_timeout_ms;

    /* version 2: PEM text in memory, each instead of the matching *_path (setting both is an
     * error), as a client configuration profile's *_data settings give it (keel/profile.h). */
    const char *tls_ca_data;
    const char *tls_cert_data;
    const char *tls_key_data; /* never logged */
    /* version 2: extra gRPC metadata sent with every call (a profile's grpc_meta); names are
     * lowercase, and the ones keel sets itself (authorization, temporal-namespace, client-name,
     * client-version) and gRPC's own (grpc-*, :*) are refused by validate. */
    const keel_header *headers;
    size_t n_headers;
} keel_connect_options;

/* The defaults, as a static initializer: the same values keel_connect_options_init() sets. */
#define KEEL_CONNECT_OPTIONS_INIT                                                                  \
    {                                                                                              \
        .version = KEEL_CONNECT_OPTIONS_VERSION, .address = KEEL_DEFAULT_ADDRESS,                  \
        .namespace_ = KEEL_DEFAULT_NAMESPACE, .tls = KEEL_TLS_AUTO,                                \
        .rpc_timeout_ms = KEEL_DEFAULT_RPC_TIMEOUT_MS                                              \
    }

/* Fill *opts with the defaults. Always succeeds for a non-NULL opts and version 1 or 2 (a
 * version 1 struct is filled only as far as it goes). */
int keel_connect_options_init(keel_connect_options *opts, unsigned int version);

/*
 * Overlay the TEMPORAL_* environment variables on *opts:
 *   TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
 *   TEMPORAL_TLS (true/false/1/0), TEMPORAL_TLS_SERVER_CA_CERT_PATH,
 *   TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_NAME,
 *   and (version 2 options) TEMPORAL_TLS_SERVER_CA_CERT_DATA, TEMPORAL_TLS_CLIENT_CERT_DATA,
 *   TEMPORAL_TLS_CLIENT_KEY_DATA. An empty variable counts as unset. TEMPORAL_GRPC_META_* is read
 *   by keel_connect_options_from_profile() only.
 * The strings point into the environment (borrowed). Fails with KEEL_EINVAL naming the variable
 * when a value is malformed, leaving *opts as it was. It does not check that the settings fit
 * together, so that a caller can apply its own overrides (command-line flags) first: call
 * keel_connect_options_validate() last (keel_client_new() does too).
 *
 * This reads the environment only. Programs that should also read Temporal's client configuration
 * file (the profiles the official SDKs and CLI read) call keel_connect_options_from_profile()
 * (keel/profile.h) instead, which applies these variables on top of the file.
 */
int keel_connect_options_from_env(keel_connect_options *opts, keel_error *err);

/*
 * Check that the options make sense together: the address has a port (1-65535), a client
 * certificate needs its key and the other way round, a PEM given both as a path and as data is
 * ambiguous, extra headers have valid names and values, TLS paths with TLS switched off are a
 * contradiction, the namespace and API key can travel in a gRPC header, the timeout is positive.
 * Error messages never contain the API key.
 */
int keel_connect_options_validate(const keel_connect_options *opts, keel_error *err);

/* Whether s can be sent as a gRPC header value: printable ASCII only (0x20-0x7e). */
bool keel_header_value_ok(const char *s);

/* Whether these options connect with TLS (resolves KEEL_TLS_AUTO). */
bool keel_connect_options_use_tls(const keel_connect_options *opts);

#ifdef __cplusplus
}
#endif

#endif
