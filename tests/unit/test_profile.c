/* src/client/profile.c: client configuration profiles, the file and the environment over it. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/keel.h"

/* Tests never read the real ~/.config: every load names its own environment. */
#define HOME_DIR "build/tests/profile-home"
static const char *const no_env[] = {"HOME=" HOME_DIR "/none", NULL};

static const char base[] = "[profile.default]\n"
                           "address = \"file-host:7233\"\n"
                           "namespace = \"file-ns\"\n"
                           "\n"
                           "[profile.cloud]\n"
                           "address = \"ns.acct.tmprl.cloud:7233\"\n"
                           "namespace = \"ns.acct\"\n"
                           "api_key = \"file-key\"\n"
                           "[profile.cloud.grpc_meta]\n"
                           "X_Custom_Header = \"v1\"\n"
                           "other = \"v2\"\n"
                           "\n"
                           "[profile.mtls.tls]\n"
                           "client_cert_data = \"\"\"\n-----BEGIN CERTIFICATE-----\nAAAA\n"
                           "-----END CERTIFICATE-----\n\"\"\"\n"
                           "client_key_path = \"/keys/client.key\"\n"
                           "server_name = \"frontend.example\"\n"
                           "\n"
                           "[profile.off]\n"
                           "api_key = \"k\"\n"
                           "tls = { disabled = true, server_name = \"ignored\" }\n";

static keel_profile_load_options data_opts(const char *text, const char *profile,
                                           const char *const *env)
{
    keel_profile_load_options lo;
    ck_assert_int_eq(keel_profile_load_options_init(&lo, KEEL_PROFILE_LOAD_OPTIONS_VERSION),
                     KEEL_OK);
    lo.config_data = text;
    lo.config_data_len = strlen(text);
    lo.profile = profile;
    lo.environment = env ? env : no_env;
    return lo;
}

/* Load and apply onto defaults; *p owns the strings. */
static keel_connect_options load(const keel_profile_load_options *lo, keel_client_profile **p)
{
    keel_connect_options o;
    keel_error err;
    ck_assert_int_eq(keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION), KEEL_OK);
    int rc = keel_connect_options_from_profile(&o, lo, p, &err);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_connect_options_validate(&o, &err) == KEEL_OK, "%s", err.message);
    return o;
}

static void load_fails(const keel_profile_load_options *lo, int code, const char *want)
{
    keel_client_profile *p = (keel_client_profile *)1;
    keel_error err;
    ck_assert_int_eq(keel_client_profile_load(&p, lo, &err), code);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err.message, want) != NULL, "got '%s', want '%s'", err.message, want);
}

static void write_file(const char *path, const char *text)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(dir, 0755);
            *s = '/';
        }
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

START_TEST(file_only)
{
    keel_profile_load_options lo = data_opts(base, NULL, NULL);
    keel_client_profile *p;
    keel_connect_options o = load(&lo, &p);
    ck_assert_str_eq(o.address, "file-host:7233");
    ck_assert_str_eq(o.namespace_, "file-ns");
    ck_assert_ptr_null(o.api_key);
    ck_assert(!keel_connect_options_use_tls(&o));
    ck_assert_str_eq(keel_client_profile_name(p), "default");
    ck_assert(keel_client_profile_found(p));
    ck_assert_ptr_null(keel_client_profile_file(p)); /* data, not a file */
    keel_client_profile_free(p);

    /* An API key turns TLS on; grpc_meta names are lowercased with '_' read as '-'. */
    lo = data_opts(base, "cloud", NULL);
    o = load(&lo, &p);
    ck_assert_str_eq(o.api_key, "file-key");
    ck_assert(keel_connect_options_use_tls(&o));
    ck_assert_uint_eq(o.n_headers, 2);
    ck_assert_str_eq(o.headers[0].name, "x-custom-header");
    ck_assert_str_eq(o.headers[0].value, "v1");
    ck_assert_str_eq(o.headers[1].name, "other");
    keel_client_profile_free(p);

    /* ... unless TLS is disabled, which also drops the table's other settings. */
    lo = data_opts(base, "off", NULL);
    o = load(&lo, &p);
    ck_assert(!keel_connect_options_use_tls(&o));
    ck_assert_ptr_null(o.tls_server_name);
    keel_client_profile_free(p);
}
END_TEST

START_TEST(environment_over_file)
{
    const char *const env[] = {"HOME=/nonexistent",
                               "TEMPORAL_ADDRESS=env-host:7233",
                               "TEMPORAL_NAMESPACE=",
                               "TEMPORAL_API_KEY=env-key",
                               "TEMPORAL_GRPC_META_OTHER=",
                               "TEMPORAL_GRPC_META_X_CUSTOM_HEADER=env-v1",
                               "TEMPORAL_GRPC_META_NEW_ONE=n",
                               NULL};
    keel_profile_load_options lo = data_opts(base, "cloud", env);
    keel_client_profile *p;
    keel_connect_options o = load(&lo, &p);
    ck_assert_str_eq(o.address, "env-host:7233");
    ck_assert_str_eq(o.namespace_, "default"); /* set and empty: the file's value is cleared */
    ck_assert_str_eq(o.api_key, "env-key");
    ck_assert_uint_eq(o.n_headers, 2); /* "other" removed by its empty variable */
    bool custom = false, added = false;
    for (size_t i = 0; i < o.n_headers; i++) {
        custom |= strcmp(o.headers[i].name, "x-custom-header") == 0 &&
                  strcmp(o.headers[i].value, "env-v1") == 0;
        added |= strcmp(o.headers[i].name, "new-one") == 0;
    }
    ck_assert(custom && added);
    keel_client_profile_free(p);

    /* disable_env: the file alone; TEMPORAL_PROFILE still picks the profile. */
    const char *const pick[] = {"TEMPORAL_PROFILE=cloud", "TEMPORAL_ADDRESS=env-host:7233", NULL};
    lo = data_opts(base, NULL, pick);
    lo.disable_env = true;
    o = load(&lo, &p);
    ck_assert_str_eq(o.address, "ns.acct.tmprl.cloud:7233");
    keel_client_profile_free(p);

    /* disable_file: the environment alone, and a named profile is not looked for. */
    lo = data_opts(base, "nope", pick);
    lo.disable_file = true;
    o = load(&lo, &p);
    ck_assert_str_eq(o.address, "env-host:7233");
    keel_client_profile_free(p);
    lo.disable_env = true;
    load_fails(&lo, KEEL_EINVAL, "cannot both be disabled");
}
END_TEST

START_TEST(flags_over_environment)
{
    /* What keelctl does: the profile (file + env), then its flags on the result. */
    const char *const env[] = {"TEMPORAL_ADDRESS=env-host:7233", NULL};
    keel_profile_load_options lo = data_opts(base, "mtls", env);
    keel_client_profile *p;
    keel_connect_options o = load(&lo, &p);
    ck_assert_str_eq(o.address, "env-host:7233");
    ck_assert_ptr_nonnull(o.tls_cert_data);
    o.address = "flag-host:7233";
    o.tls_cert_path = "/flag/cert.pem"; /* a flag's path replaces the profile's data */
    o.tls_cert_data = NULL;
    keel_error err;
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_OK);
    ck_assert_str_eq(o.address, "flag-host:7233");
    keel_client_profile_free(p);
}
END_TEST

START_TEST(missing_profile)
{
    keel_profile_load_options lo = data_opts(base, "staging", NULL);
    load_fails(&lo, KEEL_ENOTFOUND, "the client profile 'staging' is not in");
    const char *const env[] = {"TEMPORAL_PROFILE=staging", NULL};
    lo = data_opts(base, NULL, env);
    load_fails(&lo, KEEL_ENOTFOUND, "'staging'");

    /* "default" not named and not there: no settings, no error. */
    lo = data_opts("[profile.other]\naddress = \"x:1\"\n", NULL, NULL);
    keel_client_profile *p;
    keel_connect_options o = load(&lo, &p);
    ck_assert(!keel_client_profile_found(p));
    ck_assert_str_eq(o.address, KEEL_DEFAULT_ADDRESS);
    keel_client_profile_free(p);
}
END_TEST

START_TEST(missing_file_named_or_default)
{
    keel_profile_load_options lo = data_opts("", NULL, NULL);
    lo.config_data = NULL;
    keel_client_profile *p;

    /* The default path absent: nothing read. */
    keel_connect_options o = load(&lo, &p);
    ck_assert_ptr_null(keel_client_profile_file(p));
    ck_assert_str_eq(o.address, KEEL_DEFAULT_ADDRESS);
    keel_client_profile_free(p);

    /* Named and absent: an error, whoever named it. */
    lo.config_file = HOME_DIR "/missing.toml";
    load_fails(&lo, KEEL_ENOTFOUND, "'" HOME_DIR "/missing.toml' (named by the options) does not");
    lo.config_file = NULL;
    const char *const env[] = {"HOME=" HOME_DIR "/none",
                               "TEMPORAL_CONFIG_FILE=" HOME_DIR "/missing.toml", NULL};
    lo.environment = env;
    load_fails(&lo, KEEL_ENOTFOUND, "named by TEMPORAL_CONFIG_FILE");

    /* A directory is not a file. */
    mkdir("build/tests", 0755);
    mkdir(HOME_DIR, 0755);
    lo.environment = no_env;
    lo.config_file = HOME_DIR;
    load_fails(&lo, KEEL_EINVAL, "not a regular file");
}
END_TEST

START_TEST(default_path_follows_xdg)
{
    write_file(HOME_DIR "/h/.config/temporalio/temporal.toml",
               "[profile.default]\naddress = \"home:1\"\n");
    write_file(HOME_DIR "/xdg/temporalio/temporal.toml",
               "[profile.default]\naddress = \"xdg:1\"\n");
    char cwd[4096];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    char home[4200], xdg[4200];
    snprintf(home, sizeof home, "HOME=%s/" HOME_DIR "/h", cwd);
    snprintf(xdg, sizeof xdg, "XDG_CONFIG_HOME=%s/" HOME_DIR "/xdg", cwd);
    const char *const env_home[] = {home, NULL};
    const char *const env_xdg[] = {home, xdg, NULL};
    const char *const env_rel[] = {home, "XDG_CONFIG_HOME=relative/dir", NULL};

    keel_profile_load_options lo = data_opts("", NULL, env_home);
    lo.config_data = NULL;
    keel_client_profile *p;
    keel_connect_options o = load(&lo, &p);
    ck_assert_str_eq(o.address, "home:1");
    ck_assert_ptr_nonnull(strstr(keel_client_profile_file(p), "/h/.config/temporalio/"));
    keel_client_profile_free(p);
    lo.environment = env_xdg;
    o = load(&lo, &p);
    ck_assert_str_eq(o.address, "xdg:1");
    keel_client_profile_free(p);
    lo.environment = env_rel; /* a relative XDG_CONFIG_HOME is ignored, as the spec says */
    o = load(&lo, &p);
    ck_assert_str_eq(o.address, "home:1");
    keel_client_profile_free(p);
}
END_TEST

START_TEST(tls_data_and_paths)
{
    keel_profile_load_options lo = data_opts(base, "mtls", NULL);
    keel_client_profile *p;
    keel_connect_options o = load(&lo, &p);
    ck_assert(keel_connect_options_use_tls(&o));
    ck_assert_int_eq(o.tls, KEEL_TLS_ON);
    ck_assert_ptr_nonnull(strstr(o.tls_cert_data, "-----BEGIN CERTIFICATE-----\nAAAA\n"));
    ck_assert_ptr_null(o.tls_cert_path);
    ck_assert_str_eq(o.tls_key_path, "/keys/client.key");
    ck_assert_str_eq(o.tls_server_name, "frontend.example");
    keel_client_profile_free(p);

    /* An empty [tls] table turns TLS on; TEMPORAL_TLS=false turns it off again. */
    lo = data_opts("[profile.default.tls]\n", NULL, NULL);
    o = load(&lo, &p);
    ck_assert(keel_connect_options_use_tls(&o));
    keel_client_profile_free(p);
    const char *const off[] = {"TEMPORAL_TLS=false", NULL};
    lo = data_opts("[profile.default]\napi_key = \"k\"\n", NULL, off);
    o = load(&lo, &p);
    ck_assert(!keel_connect_options_use_tls(&o));
    keel_client_profile_free(p);
    const char *const bad[] = {"TEMPORAL_TLS=maybe", NULL};
    lo = data_opts(base, NULL, bad);
    load_fails(&lo, KEEL_EINVAL, "TEMPORAL_TLS='maybe' is not a boolean");

    /* A path and its data together: in the file, or the environment's path over the file's data. */
    lo = data_opts("[profile.default.tls]\nserver_ca_cert_path = \"/ca.pem\"\n"
                   "server_ca_cert_data = \"-----BEGIN CERTIFICATE-----\"\n",
                   NULL, NULL);
    load_fails(&lo, KEEL_EINVAL, "tls.server_ca_cert_path and tls.server_ca_cert_data");
    const char *const path[] = {"TEMPORAL_TLS_CLIENT_CERT_PATH=/env/cert.pem", NULL};
    lo = data_opts(base, "mtls", path);
    load_fails(&lo, KEEL_EINVAL, "tls.client_cert_path and tls.client_cert_data");

    /* Host verification cannot be switched off. */
    lo = data_opts("[profile.default.tls]\ndisable_host_verification = true\n", NULL, NULL);
    load_fails(&lo, KEEL_EINVAL, "disable_host_verification = true is not supported");

    /* Environment data: a key without its certificate is refused by validate. */
    const char *const half[] = {"TEMPORAL_TLS_CLIENT_KEY_DATA=-----BEGIN PRIVATE KEY-----", NULL};
    lo = data_opts("", NULL, half);
    ck_assert_int_eq(keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION), KEEL_OK);
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_profile(&o, &lo, &p, &err), KEEL_OK);
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "mTLS needs both"));
    keel_client_profile_free(p);
}
END_TEST

START_TEST(strict_mode_and_types)
{
    const char *unknown = "[profile.default]\naddress = \"a:1\"\nunrecognized_field = \"x\"\n"
                          "[profile.default.tls]\nflavour = 1\n[other]\nx = 1\n";
    keel_profile_load_options lo = data_opts(unknown, NULL, NULL);
    keel_client_profile *p;
    keel_connect_options o = load(&lo, &p); /* ignored by default */
    ck_assert_str_eq(o.address, "a:1");
    keel_client_profile_free(p);
    lo.strict = true;
    load_fails(&lo, KEEL_EINVAL,
               "line 3, column 1: profile.default.unrecognized_field is not a known key (strict");

    /* A wrong type is refused in every mode, in any profile. */
    lo =
        data_opts("[profile.default]\naddress = \"a:1\"\n[profile.x]\nnamespace = 5\n", NULL, NULL);
    load_fails(&lo, KEEL_EINVAL,
               "line 4, column 1: profile.x.namespace must be a string, not an "
               "integer");
    lo = data_opts("[profile.default.tls]\ndisabled = \"yes\"\n", NULL, NULL);
    load_fails(&lo, KEEL_EINVAL, "profile.default.tls.disabled must be a boolean");
    lo = data_opts("profile = 1\n", NULL, NULL);
    load_fails(&lo, KEEL_EINVAL, "profile must be a table");
    lo = data_opts("[profile.default.grpc_meta]\na_b = \"1\"\na-b = \"2\"\n", NULL, NULL);
    load_fails(&lo, KEEL_EINVAL, "names a header given already");

    /* TOML errors name the source, the line and the column. */
    lo = data_opts("[profile.default]\naddress = [\"a\"]\n", NULL, NULL);
    load_fails(&lo, KEEL_EINVAL, "client configuration: line 2, column 11: arrays are not");
    write_file(HOME_DIR "/bad.toml", "[profile.default]\naddress = 'x\n");
    lo = data_opts("", NULL, NULL);
    lo.config_data = NULL;
    lo.config_file = HOME_DIR "/bad.toml";
    load_fails(&lo, KEEL_EINVAL, HOME_DIR "/bad.toml: line 2, column 11: a string that does not");

    /* codec and authority are read and ignored. */
    lo = data_opts("[profile.default]\nauthority = \"x\"\n[profile.default.codec]\n"
                   "endpoint = \"http://codec\"\n",
                   NULL, NULL);
    lo.strict = true;
    o = load(&lo, &p);
    keel_client_profile_free(p);
}
END_TEST

START_TEST(headers_are_validated)
{
    const char *const env[] = {"TEMPORAL_GRPC_META_AUTHORIZATION=Bearer x", NULL};
    keel_profile_load_options lo = data_opts("", NULL, env);
    keel_connect_options o;
    keel_client_profile *p;
    keel_error err;
    ck_assert_int_eq(keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION), KEEL_OK);
    ck_assert_int_eq(keel_connect_options_from_profile(&o, &lo, &p, &err), KEEL_OK);
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "'authorization' is set by keel"));
    keel_client_profile_free(p);

    keel_header bad_name[] = {{"Upper", "v"}};
    keel_header bad_value[] = {{"x-ok", "line\nbreak"}};
    keel_header grpc[] = {{"grpc-timeout", "1S"}};
    ck_assert_int_eq(keel_connect_options_init(&o, KEEL_CONNECT_OPTIONS_VERSION), KEEL_OK);
    o.headers = bad_name;
    o.n_headers = 1;
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    o.headers = bad_value;
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    o.headers = grpc;
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
    o.headers = NULL;
    ck_assert_int_eq(keel_connect_options_validate(&o, &err), KEEL_EINVAL);
}
END_TEST

START_TEST(version_1_options_still_work)
{
    /* A program built against the version 1 header passes the shorter struct. */
    size_t v1 = offsetof(keel_connect_options, tls_ca_data);
    unsigned char *mem = malloc(v1); /* ASan catches a read or write past it */
    keel_connect_options *o = (keel_connect_options *)mem;
    keel_connect_options view; /* what the caller sees: its fields only */
    ck_assert_int_eq(keel_connect_options_init(o, 1), KEEL_OK);
    memcpy(&view, mem, v1);
    ck_assert_uint_eq(view.version, 1);
    ck_assert_str_eq(view.address, KEEL_DEFAULT_ADDRESS);
    ck_assert_int_eq(keel_connect_options_from_env(o, NULL), KEEL_OK);
    ck_assert_int_eq(keel_connect_options_validate(o, NULL), KEEL_OK);
    ck_assert(!keel_connect_options_use_tls(o));
    keel_profile_load_options lo = data_opts(base, NULL, NULL);
    keel_client_profile *p;
    keel_error err;
    ck_assert_int_eq(keel_connect_options_from_profile(o, &lo, &p, &err), KEEL_OK);
    memcpy(&view, mem, v1);
    ck_assert_str_eq(view.address, "file-host:7233");
    keel_client_profile_free(p);
    /* a profile that needs the version 2 fields says so */
    lo = data_opts(base, "mtls", NULL);
    ck_assert_int_eq(keel_connect_options_from_profile(o, &lo, &p, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "version 2"));
    ck_assert_int_eq(keel_connect_options_init(o, 3), KEEL_EINVAL);
    free(mem);
}
END_TEST

Suite *profile_suite(void)
{
    Suite *s = suite_create("profile");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, file_only);
    tcase_add_test(tc, environment_over_file);
    tcase_add_test(tc, flags_over_environment);
    tcase_add_test(tc, missing_profile);
    tcase_add_test(tc, missing_file_named_or_default);
    tcase_add_test(tc, default_path_follows_xdg);
    tcase_add_test(tc, tls_data_and_paths);
    tcase_add_test(tc, strict_mode_and_types);
    tcase_add_test(tc, headers_are_validated);
    tcase_add_test(tc, version_1_options_still_work);
    suite_add_tcase(s, tc);
    return s;
}
