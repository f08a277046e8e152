/*
 * keel/profile.h - Temporal's client configuration profiles ("environment configuration"), read
 * as the official SDKs and the temporal CLI read them.
 *
 * A TOML file holds [profile.NAME] tables with address, namespace, api_key, a [profile.NAME.tls]
 * table (disabled, client_cert_path / client_cert_data, client_key_path / client_key_data,
 * server_ca_cert_path / server_ca_cert_data, server_name, disable_host_verification) and a
 * [profile.NAME.grpc_meta] table of extra gRPC headers. The file is the one named by the options,
 * else by TEMPORAL_CONFIG_FILE, else $XDG_CONFIG_HOME/temporalio/temporal.toml (an absolute
 * XDG_CONFIG_HOME; otherwise ~/.config/temporalio/temporal.toml; on macOS
 * ~/Library/Application Support/temporalio/temporal.toml). The profile is the one named by the
 * options, else by TEMPORAL_PROFILE, else "default". Then the TEMPORAL_* environment variables
 * (keel/options.h, plus TEMPORAL_TLS_*_DATA, TEMPORAL_TLS_DISABLE_HOST_VERIFICATION and
 * TEMPORAL_GRPC_META_*) override the file's values. docs/operations.md has the whole table.
 *
 * Edge rules (as in the SDKs unless marked):
 *  - the default file missing, or the "default" profile missing from it: no error, no settings;
 *  - a profile named (options or TEMPORAL_PROFILE) and missing: KEEL_ENOTFOUND;
 *  - a file named (options or TEMPORAL_CONFIG_FILE) and missing: KEEL_ENOTFOUND (keel; the SDKs
 *    carry on without it, which turns a typo into a connection to localhost);
 *  - an api_key turns TLS on unless tls.disabled is true; a [tls] table turns it on unless
 *    disabled; with disabled = true the table's other settings are ignored;
 *  - a *_path and its *_data both set: KEEL_EINVAL;
 *  - grpc_meta names are lowercased with '_' turned into '-'; TEMPORAL_GRPC_META_X_Y=v sets
 *    x-y, an empty value removes it;
 *  - a value variable set to "" clears the file's value; a boolean variable set to something
 *    other than true/false/1/0 is KEEL_EINVAL (keel; the SDKs ignore it);
 *  - unknown keys are ignored, or refused when `strict` is set; keys of the wrong type are
 *    always refused; `codec` and `authority` are read and ignored (keel has no remote codec and
 *    no authority override) and disable_host_verification = true is refused: keel always
 *    verifies the server.
 * File format and caps: src/util/toml.h, docs/limits.md.
 */
#ifndef KEEL_PROFILE_H
#define KEEL_PROFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/error.h"
#include "keel/options.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_PROFILE_LOAD_OPTIONS_VERSION 1
#define KEEL_DEFAULT_PROFILE              "default"
#define KEEL_PROFILE_MAX_PROFILES         256 /* profiles in one file */
#define KEEL_PROFILE_MAX_HEADERS          64  /* grpc_meta entries, file and environment */

typedef struct keel_profile_load_options {
    unsigned int version;
    /* The file to read; NULL: TEMPORAL_CONFIG_FILE, else the default path. */
    const char *config_file;
    /* TOML text to read instead of any file (config_file must then be NULL). Borrowed. */
    const char *config_data;
    size_t config_data_len;
    /* The profile; NULL: TEMPORAL_PROFILE, else "default". */
    const char *profile;
    bool strict;       /* unknown keys are errors */
    bool disable_file; /* read no file: the environment only */
    bool disable_env;  /* do not apply TEMPORAL_* values (TEMPORAL_CONFIG_FILE and
                          TEMPORAL_PROFILE still choose the file and profile) */
    /* "NAME=value" strings ending with NULL, read instead of the process environment (for
     * tests, and for HOME / XDG_CONFIG_HOME too); NULL: the process environment. Borrowed. */
    const char *const *environment;
} keel_profile_load_options;

#define KEEL_PROFILE_LOAD_OPTIONS_INIT                                                             \
    {                                                                                              \
        .version = KEEL_PROFILE_LOAD_OPTIONS_VERSION                                               \
    }

/* Fill *opts with the defaults (everything NULL/false). */
int keel_profile_load_options_init(keel_profile_load_options *opts, unsigned int version);

/* One loaded profile, file and environment together. Owns every string it hands out. */
typedef struct keel_client_profile keel_client_profile;

/*
 * Load the profile as the header comment says. On success the caller owns *out and frees it
 * with keel_client_profile_free(); on failure *out is NULL and err names the file, line and
 * column, the key or the variable (never an API key's or private key's value).
 */
int keel_client_profile_load(keel_client_profile **out, const keel_profile_load_options *opts,
                             keel_error *err);

/*
 * Overlay the profile's settings on *opts (keel_connect_options_init() first): the values it
 * has replace those in opts, the others stay. The strings set in opts are borrowed from p and
 * valid until keel_client_profile_free(p). Call keel_connect_options_validate() after any
 * overrides of your own (command-line flags); keel_client_new() validates too.
 */
int keel_client_profile_apply(const keel_client_profile *p, keel_connect_options *opts,
                              keel_error *err);

/* The file that was read, or NULL (none found, data given, or disable_file). Borrowed from p. */
const char *keel_client_profile_file(const keel_client_profile *p);

/* The profile's name ("default" when none was named). Borrowed from p. */
const char *keel_client_profile_name(const keel_client_profile *p);

/* Whether the file had that profile. */
bool keel_client_profile_found(const keel_client_profile *p);

void keel_client_profile_free(keel_client_profile *p);

/*
 * Both steps at once, what keelctl, keel-worker and keel-bench do: load with `load` (NULL: the
 * defaults) and apply to *opts. On success the caller owns *profile (which the strings in opts
 * borrow from) and frees it with keel_client_profile_free() after the last use of opts (after
 * keel_client_new(), which copies what it keeps). On failure *profile is NULL and opts is as it
 * was.
 */
int keel_connect_options_from_profile(keel_connect_options *opts,
                                      const keel_profile_load_options *load,
                                      keel_client_profile **profile, keel_error *err);

#ifdef __cplusplus
}
#endif

#endif
