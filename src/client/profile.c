/* profile - Temporal client configuration profiles: the TOML file, then the environment. */
#include "keel/profile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "client/options.h"
#include "util/strbuf.h"
#include "util/toml.h"

extern char **environ;

typedef struct tls_settings {
    bool present;
    int disabled; /* -1 unset, 0, 1 */
    char *cert_path, *cert_data, *key_path, *key_data, *ca_path, *ca_data, *server_name;
    bool disable_host_verification;
} tls_settings;

struct keel_client_profile {
    char *file, *name;
    bool found;
    char *address, *namespace_, *api_key;
    tls_settings tls;
    keel_header *meta; /* names and values owned */
    size_t n_meta;
};

int keel_profile_load_options_init(keel_profile_load_options *opts, unsigned int version)
{
    if (opts == NULL || version != KEEL_PROFILE_LOAD_OPTIONS_VERSION)
        return KEEL_EINVAL;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    return KEEL_OK;
}

void keel_client_profile_free(keel_client_profile *p)
{
    if (p == NULL)
        return;
    free(p->file);
    free(p->name);
    free(p->address);
    free(p->namespace_);
    keel_secret_free(p->api_key);
    tls_settings *t = &p->tls;
    free(t->cert_path);
    free(t->cert_data);
    free(t->key_path);
    keel_secret_free(t->key_data);
    free(t->ca_path);
    free(t->ca_data);
    free(t->server_name);
    for (size_t i = 0; i < p->n_meta; i++) {
        free((char *)p->meta[i].name);
        keel_secret_free((char *)p->meta[i].value);
    }
    free(p->meta);
    free(p);
}

const char *keel_client_profile_file(const keel_client_profile *p)
{
    return p->file;
}

const char *keel_client_profile_name(const keel_client_profile *p)
{
    return p->name;
}

bool keel_client_profile_found(const keel_client_profile *p)
{
    return p->found;
}

/* ---- the environment ---- */

static const char *lookup(const char *const *env, const char *name)
{
    size_t n = strlen(name);
    for (; env && *env; env++)
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
            return *env + n + 1;
    return NULL;
}

static int oom(keel_error *err)
{
    return keel_error_set(err, KEEL_ENOMEM, "out of memory loading the client profile");
}

/* Replace *slot with a copy of v ("" clears it). */
static int set_str(char **slot, const char *v, keel_error *err)
{
    char *copy = NULL;
    if (v && v[0] != '\0' && (copy = strdup(v)) == NULL)
        return oom(err);
    keel_secret_free(*slot);
    *slot = copy;
    return KEEL_OK;
}

static int env_bool(const char *name, const char *v, int *out, keel_error *err)
{
    if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *out = 1;
    else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *out = 0;
    else
        return keel_error_set(err, KEEL_EINVAL, "%s='%s' is not a boolean (use true or false)",
                              name, v);
    return KEEL_OK;
}

/* "X_Y" or "x_Y" -> "x-y", as the SDKs normalise grpc_meta names. */
static char *normalize_header(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        out[i] = c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[n] = '\0';
    return out;
}

static int header_index(const keel_client_profile *p, const char *name)
{
    for (size_t i = 0; i < p->n_meta; i++)
        if (strcmp(p->meta[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Set (value non-empty) or remove (empty) a header; takes name. */
static int put_header(keel_client_profile *p, char *name, const char *value, keel_error *err)
{
    int i = header_index(p, name);
    if (value[0] == '\0') {
        if (i >= 0) {
            free((char *)p->meta[i].name);
            keel_secret_free((char *)p->meta[i].value);
            p->meta[i] = p->meta[--p->n_meta];
        }
        free(name);
        return KEEL_OK;
    }
    char *v = strdup(value);
    if (v == NULL) {
        free(name);
        return oom(err);
    }
    if (i >= 0) {
        free(name);
        keel_secret_free((char *)p->meta[i].value);
        p->meta[i].value = v;
        return KEEL_OK;
    }
    if (p->n_meta == KEEL_PROFILE_MAX_HEADERS) {
        int rc = keel_error_set(err, KEEL_EINVAL,
                                "more than %d grpc_meta headers (KEEL_PROFILE_MAX_HEADERS)",
                                KEEL_PROFILE_MAX_HEADERS);
        free(name);
        free(v);
        return rc;
    }
    keel_header *m = realloc(p->meta, (p->n_meta + 1) * sizeof *m);
    if (m == NULL) {
        free(name);
        free(v);
        return oom(err);
    }
    p->meta = m;
    m[p->n_meta].name = name;
    m[p->n_meta].value = v;
    p->n_meta++;
    return KEEL_OK;
}

static int apply_env(keel_client_profile *p, const char *const *env, keel_error *err)
{
    static const struct {
        const char *name;
        size_t offset; /* in keel_client_profile */
        bool tls;
    } strs[] = {
        {"TEMPORAL_ADDRESS", offsetof(keel_client_profile, address), false},
        {"TEMPORAL_NAMESPACE", offsetof(keel_client_profile, namespace_), false},
        {"TEMPORAL_API_KEY", offsetof(keel_client_profile, api_key), false},
        {"TEMPORAL_TLS_CLIENT_CERT_PATH", offsetof(keel_client_profile, tls.cert_path), true},
        {"TEMPORAL_TLS_CLIENT_CERT_DATA", offsetof(keel_client_profile, tls.cert_data), true},
        {"TEMPORAL_TLS_CLIENT_KEY_PATH", offsetof(keel_client_profile, tls.key_path), true},
        {"TEMPORAL_TLS_CLIENT_KEY_DATA", offsetof(keel_client_profile, tls.key_data), true},
        {"TEMPORAL_TLS_SERVER_CA_CERT_PATH", offsetof(keel_client_profile, tls.ca_path), true},
        {"TEMPORAL_TLS_SERVER_CA_CERT_DATA", offsetof(keel_client_profile, tls.ca_data), true},
        {"TEMPORAL_TLS_SERVER_NAME", offsetof(keel_client_profile, tls.server_name), true},
    };
    int rc;
    const char *v;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if ((v = lookup(env, strs[i].name)) == NULL)
            continue;
        if ((rc = set_str((char **)((char *)p + strs[i].offset), v, err)) != KEEL_OK)
            return rc;
        if (strs[i].tls && v[0] != '\0')
            p->tls.present = true;
    }
    if ((v = lookup(env, "TEMPORAL_TLS")) && v[0] != '\0') {
        int on;
        if ((rc = env_bool("TEMPORAL_TLS", v, &on, err)) != KEEL_OK)
            return rc;
        p->tls.present = true;
        p->tls.disabled = !on;
    }
    if ((v = lookup(env, "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION")) && v[0] != '\0') {
        int on;
        if ((rc = env_bool("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", v, &on, err)) != KEEL_OK)
            return rc;
        p->tls.present = true;
        p->tls.disable_host_verification = on;
    }
    static const char prefix[] = "TEMPORAL_GRPC_META_";
    for (const char *const *e = env; e && *e; e++) {
        if (strncmp(*e, prefix, sizeof prefix - 1) != 0)
            continue;
        const char *name = *e + sizeof prefix - 1;
        const char *eq = strchr(name, '=');
        if (eq == NULL || eq == name)
            continue;
        char *n = normalize_header(name, (size_t)(eq - name));
        if (n == NULL)
            return oom(err);
        if ((rc = put_header(p, n, eq + 1, err)) != KEEL_OK)
            return rc;
    }
    return KEEL_OK;
}

/* ---- the file ---- */

static int default_path(const char *const *env, char **out, keel_error *err)
{
    *out = NULL;
    const char *home = lookup(env, "HOME");
    char buf[4096];
    int n;
#ifdef __APPLE__
    if (home == NULL || home[0] == '\0')
        return KEEL_OK;
    n = snprintf(buf, sizeof buf, "%s/Library/Application Support/temporalio/temporal.toml", home);
#else
    const char *xdg = lookup(env, "XDG_CONFIG_HOME");
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, sizeof buf, "%s/temporalio/temporal.toml", xdg);
    else if (home && home[0] != '\0')
        n = snprintf(buf, sizeof buf, "%s/.config/temporalio/temporal.toml", home);
    else
        return KEEL_OK; /* no home: no default file */
#endif
    if (n < 0 || (size_t)n >= sizeof buf)
        return KEEL_OK;
    *out = strdup(buf);
    return *out ? KEEL_OK : oom(err);
}

/* Read the file; *text NULL when it does not exist and `named` is false. */
static int read_file(const char *path, bool named, const char *named_by, char **text, size_t *len,
                     keel_error *err)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT && !named)
            return KEEL_OK;
        if (errno == ENOENT)
            return keel_error_set(err, KEEL_ENOTFOUND,
                                  "the client configuration file '%s' (named by %s) does not exist",
                                  path, named_by);
        return keel_error_set(err, KEEL_EIO, "cannot open the client configuration file '%s': %s",
                              path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
        fclose(f);
        return keel_error_set(err, KEEL_EINVAL,
                              "the client configuration file '%s' is not a regular file", path);
    }
    char *buf = malloc(KEEL_TOML_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        return oom(err);
    }
    size_t n = fread(buf, 1, KEEL_TOML_MAX_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return keel_error_set(err, KEEL_EIO, "cannot read the client configuration file '%s'",
                              path);
    }
    if (n > KEEL_TOML_MAX_BYTES) {
        free(buf);
        return keel_error_set(err, KEEL_EINVAL,
                              "the client configuration file '%s' is larger than %d bytes", path,
                              KEEL_TOML_MAX_BYTES);
    }
    *text = buf;
    *len = n;
    return KEEL_OK;
}

/* The error for a key of the wrong type, or an unknown key in strict mode. */
static int key_error(const char *where, const char *prefix, const keel_toml_value *v,
                     const char *what, keel_error *err)
{
    return keel_error_set(err, KEEL_EINVAL, "%s: line %d, column %d: %s%s %s", where, v->line,
                          v->column, prefix, v->key, what);
}

static int want(const char *where, const char *prefix, const keel_toml_value *v,
                keel_toml_type type, keel_error *err)
{
    if (v->type == type)
        return KEEL_OK;
    char what[64];
    snprintf(what, sizeof what, "must be a %s, not a%s %s", keel_toml_type_name(type),
             v->type == KEEL_TOML_INT ? "n" : "", keel_toml_type_name(v->type));
    return key_error(where, prefix, v, what, err);
}

/* Read one [profile.NAME] table; into p when p is not NULL (else only checked). */
static int read_profile(const char *where, const keel_toml_value *t, bool strict,
                        keel_client_profile *p, keel_error *err)
{
    char prefix[320];
    snprintf(prefix, sizeof prefix, "profile.%s.", t->key);
    int rc = want(where, "profile.", t, KEEL_TOML_TABLE, err);
    for (size_t i = 0; rc == KEEL_OK && i < t->n_items; i++) {
        const keel_toml_value *v = t->items[i];
        char **slot = NULL;
        if (strcmp(v->key, "address") == 0)
            slot = p ? &p->address : NULL;
        else if (strcmp(v->key, "namespace") == 0)
            slot = p ? &p->namespace_ : NULL;
        else if (strcmp(v->key, "api_key") == 0)
            slot = p ? &p->api_key : NULL;
        if (strcmp(v->key, "address") == 0 || strcmp(v->key, "namespace") == 0 ||
            strcmp(v->key, "api_key") == 0 || strcmp(v->key, "authority") == 0) {
            rc = want(where, prefix, v, KEEL_TOML_STRING, err);
            if (rc == KEEL_OK && slot)
                rc = set_str(slot, v->str, err);
        } else if (strcmp(v->key, "codec") == 0) {
            rc = want(where, prefix, v, KEEL_TOML_TABLE, err);
            char sub[400];
            snprintf(sub, sizeof sub, "%scodec.", prefix);
            for (size_t j = 0; rc == KEEL_OK && j < v->n_items; j++) {
                const keel_toml_value *c = v->items[j];
                if (strcmp(c->key, "endpoint") == 0 || strcmp(c->key, "auth") == 0)
                    rc = want(where, sub, c, KEEL_TOML_STRING, err);
                else if (strict)
                    rc = key_error(where, sub, c, "is not a known key (strict mode)", err);
            }
        } else if (strcmp(v->key, "grpc_meta") == 0) {
            rc = want(where, prefix, v, KEEL_TOML_TABLE, err);
            char sub[400];
            snprintf(sub, sizeof sub, "%sgrpc_meta.", prefix);
            for (size_t j = 0; rc == KEEL_OK && j < v->n_items; j++) {
                const keel_toml_value *h = v->items[j];
                rc = want(where, sub, h, KEEL_TOML_STRING, err);
                if (rc != KEEL_OK || p == NULL)
                    continue;
                char *n = normalize_header(h->key, strlen(h->key));
                if (n == NULL)
                    return oom(err);
                if (header_index(p, n) >= 0) {
                    free(n);
                    return key_error(where, sub, h,
                                     "names a header given already (names are "
                                     "lowercased, '_' read as '-')",
                                     err);
                }
                rc = put_header(p, n, h->str, err);
            }
        } else if (strcmp(v->key, "tls") == 0) {
            rc = want(where, prefix, v, KEEL_TOML_TABLE, err);
            char sub[400];
            snprintf(sub, sizeof sub, "%stls.", prefix);
            if (p)
                p->tls.present = true;
            static const char *const tls_strs[] = {
                "client_cert_path",    "client_cert_data",    "client_key_path", "client_key_data",
                "server_ca_cert_path", "server_ca_cert_data", "server_name"};
            for (size_t j = 0; rc == KEEL_OK && j < v->n_items; j++) {
                const keel_toml_value *c = v->items[j];
                size_t k = 0;
                while (k < 7 && strcmp(c->key, tls_strs[k]) != 0)
                    k++;
                if (k < 7) {
                    rc = want(where, sub, c, KEEL_TOML_STRING, err);
                    if (rc == KEEL_OK && p) {
                        char **slots[] = {&p->tls.cert_path,  &p->tls.cert_data, &p->tls.key_path,
                                          &p->tls.key_data,   &p->tls.ca_path,   &p->tls.ca_data,
                                          &p->tls.server_name};
                        rc = set_str(slots[k], c->str, err);
                    }
                } else if (strcmp(c->key, "disabled") == 0 ||
                           strcmp(c->key, "disable_host_verification") == 0) {
                    rc = want(where, sub, c, KEEL_TOML_BOOL, err);
                    if (rc == KEEL_OK && p && c->key[7] == 'd')
                        p->tls.disabled = c->boolean;
                    else if (rc == KEEL_OK && p)
                        p->tls.disable_host_verification = c->boolean;
                } else if (strict) {
                    rc = key_error(where, sub, c, "is not a known key (strict mode)", err);
                }
            }
        } else if (strict) {
            rc = key_error(where, prefix, v, "is not a known key (strict mode)", err);
        }
    }
    return rc;
}

/* Check every profile, and read the one named into p. */
static int read_config(const char *where, const char *text, size_t len, bool strict,
                       keel_client_profile *p, keel_error *err)
{
    keel_toml_value *root;
    keel_error e;
    int rc = keel_toml_parse(text, len, &root, &e);
    if (rc != KEEL_OK)
        return keel_error_set(err, rc, "%s: %s", where, e.message);
    for (size_t i = 0; rc == KEEL_OK && i < root->n_items; i++) {
        const keel_toml_value *v = root->items[i];
        if (strcmp(v->key, "profile") != 0) {
            if (strict)
                rc = key_error(where, "", v, "is not a known key (strict mode)", err);
            continue;
        }
        rc = want(where, "", v, KEEL_TOML_TABLE, err);
        if (rc == KEEL_OK && v->n_items > KEEL_PROFILE_MAX_PROFILES)
            rc = keel_error_set(err, KEEL_EINVAL,
                                "%s: more than %d profiles (KEEL_PROFILE_MAX_PROFILES)", where,
                                KEEL_PROFILE_MAX_PROFILES);
        for (size_t j = 0; rc == KEEL_OK && j < v->n_items; j++) {
            bool mine = strcmp(v->items[j]->key, p->name) == 0;
            rc = read_profile(where, v->items[j], strict, mine ? p : NULL, err);
            if (mine)
                p->found = true;
        }
    }
    keel_toml_free(root);
    return rc;
}

/* ---- putting it together ---- */

static int check_profile(const keel_client_profile *p, keel_error *err)
{
    const tls_settings *t = &p->tls;
    static const char *const pairs[][2] = {{"client_cert_path", "client_cert_data"},
                                           {"client_key_path", "client_key_data"},
                                           {"server_ca_cert_path", "server_ca_cert_data"}};
    const char *vals[][2] = {
        {t->cert_path, t->cert_data}, {t->key_path, t->key_data}, {t->ca_path, t->ca_data}};
    if (t->present && t->disabled == 1)
        return KEEL_OK; /* the other TLS settings are ignored */
    for (size_t i = 0; i < 3; i++)
        if (vals[i][0] && vals[i][1])
            return keel_error_set(err, KEEL_EINVAL,
                                  "profile '%s': tls.%s and tls.%s are both set (from the file or "
                                  "the TEMPORAL_TLS_* variables): give one",
                                  p->name, pairs[i][0], pairs[i][1]);
    if (t->disable_host_verification)
        return keel_error_set(err, KEEL_EINVAL,
                              "profile '%s': tls.disable_host_verification = true is not "
                              "supported: keel always verifies the server (give its CA with "
                              "server_ca_cert_path or server_ca_cert_data, and server_name)",
                              p->name);
    return KEEL_OK;
}

int keel_client_profile_load(keel_client_profile **out, const keel_profile_load_options *o,
                             keel_error *err)
{
    *out = NULL;
    if (o == NULL || o->version != KEEL_PROFILE_LOAD_OPTIONS_VERSION)
        return keel_error_set(err, KEEL_EINVAL, "profile load options not initialised");
    if (o->disable_file && o->disable_env)
        return keel_error_set(err, KEEL_EINVAL,
                              "the profile file and the environment cannot both be disabled");
    if (o->config_data && o->config_file)
        return keel_error_set(err, KEEL_EINVAL,
                              "give the configuration as a file or as data, not both");
    const char *const *env = o->environment ? o->environment : (const char *const *)environ;
    keel_client_profile *p = calloc(1, sizeof *p);
    if (p == NULL)
        return oom(err);
    p->tls.disabled = -1;

    const char *name = o->profile;
    const char *v;
    if ((name == NULL || name[0] == '\0') && (v = lookup(env, "TEMPORAL_PROFILE")) && v[0])
        name = v;
    bool named = name != NULL && name[0] != '\0';
    p->name = strdup(named ? name : KEEL_DEFAULT_PROFILE);
    int rc = p->name ? KEEL_OK : oom(err);

    if (rc == KEEL_OK && !o->disable_file) {
        char *text = NULL;
        size_t len = 0;
        if (o->config_data) {
            rc = read_config("client configuration", o->config_data, o->config_data_len, o->strict,
                             p, err);
        } else {
            const char *path = o->config_file, *named_by = "the options";
            if ((path == NULL || path[0] == '\0') && (v = lookup(env, "TEMPORAL_CONFIG_FILE")) &&
                v[0]) {
                path = v;
                named_by = "TEMPORAL_CONFIG_FILE";
            }
            char *def = NULL;
            bool file_named = path != NULL && path[0] != '\0';
            if (!file_named && (rc = default_path(env, &def, err)) == KEEL_OK)
                path = def;
            if (rc == KEEL_OK && path)
                rc = read_file(path, file_named, named_by, &text, &len, err);
            if (rc == KEEL_OK && text) {
                rc = read_config(path, text, len, o->strict, p, err);
                if (rc == KEEL_OK && (p->file = strdup(path)) == NULL)
                    rc = oom(err);
            }
            if (text) {
                memset(text, 0, len); /* it may hold keys */
                free(text);
            }
            free(def);
        }
        if (rc == KEEL_OK && named && !p->found)
            rc =
                keel_error_set(err, KEEL_ENOTFOUND, "the client profile '%s' is not in %s", p->name,
                               p->file          ? p->file
                               : o->config_data ? "the configuration given"
                                                : "any configuration file (none was found)");
    }
    if (rc == KEEL_OK && !o->disable_env)
        rc = apply_env(p, env, err);
    if (rc == KEEL_OK)
        rc = check_profile(p, err);
    if (rc != KEEL_OK) {
        keel_client_profile_free(p);
        return rc;
    }
    *out = p;
    return KEEL_OK;
}

int keel_client_profile_apply(const keel_client_profile *p, keel_connect_options *opts,
                              keel_error *err)
{
    keel_connect_options o;
    if (p == NULL || !keel_connect_options_upgrade(opts, &o))
        return keel_error_set(err, KEEL_EINVAL, "connect options not initialised");
    const tls_settings *t = &p->tls;
    bool uses_v2 = p->n_meta > 0 ||
                   (t->present && t->disabled != 1 && (t->cert_data || t->key_data || t->ca_data));
    if (opts->version < 2 && uses_v2)
        return keel_error_set(err, KEEL_EINVAL,
                              "profile '%s' has PEM data or grpc_meta, which need version 2 "
                              "connect options (rebuild against the current keel/options.h)",
                              p->name);
    if (p->address)
        o.address = p->address;
    if (p->namespace_)
        o.namespace_ = p->namespace_;
    if (p->api_key)
        o.api_key = p->api_key;
    if (t->present && t->disabled == 1) {
        o.tls = KEEL_TLS_OFF;
    } else if (t->present) {
        o.tls = KEEL_TLS_ON;
        if (t->cert_path || t->cert_data) {
            o.tls_cert_path = t->cert_path;
            o.tls_cert_data = t->cert_data;
        }
        if (t->key_path || t->key_data) {
            o.tls_key_path = t->key_path;
            o.tls_key_data = t->key_data;
        }
        if (t->ca_path || t->ca_data) {
            o.tls_ca_path = t->ca_path;
            o.tls_ca_data = t->ca_data;
        }
        if (t->server_name)
            o.tls_server_name = t->server_name;
    }
    if (p->n_meta > 0) {
        o.headers = p->meta;
        o.n_headers = p->n_meta;
    }
    unsigned int version = opts->version;
    memcpy(opts, &o, version == 1 ? offsetof(keel_connect_options, tls_ca_data) : sizeof o);
    opts->version = version;
    return KEEL_OK;
}

int keel_connect_options_from_profile(keel_connect_options *opts,
                                      const keel_profile_load_options *load,
                                      keel_client_profile **profile, keel_error *err)
{
    *profile = NULL;
    keel_profile_load_options defaults = KEEL_PROFILE_LOAD_OPTIONS_INIT;
    keel_client_profile *p;
    int rc = keel_client_profile_load(&p, load ? load : &defaults, err);
    if (rc != KEEL_OK)
        return rc;
    rc = keel_client_profile_apply(p, opts, err);
    if (rc != KEEL_OK) {
        keel_client_profile_free(p);
        return rc;
    }
    *profile = p;
    return KEEL_OK;
}
