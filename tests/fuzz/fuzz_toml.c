/*
 * fuzz_toml - client configuration files: the TOML reader (src/util/toml.h) and the profile
 * loader on top of it (keel/profile.h), with the environment over the file and the result
 * applied to connect options and validated, as keelctl and keel-worker do.
 *
 * Input: the file's text.
 *
 * Properties: a parsed tree keeps the caps (tables nested at most KEEL_TOML_MAX_DEPTH deep, at
 * most KEEL_TOML_MAX_KEYS keys, keys at most KEEL_TOML_MAX_KEY bytes), every string in it is
 * valid UTF-8; a text the reader refuses is refused by the loader too, and a refusal names a line
 * and column; a strict load that succeeds means the lenient one does too, with the same address;
 * no error message carries the api_key's value (set by the environment) unless the text does.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "keel/keel.h"
#include "util/toml.h"

#define MAX_LEN (64 * 1024)

/* The api_key the environment sets: never in a message. */
#define SECRET "sk-fuzz-SECRET-0123456789"

static size_t check_tree(const keel_toml_value *v, int depth)
{
    if (depth > KEEL_TOML_MAX_DEPTH)
        fuzz_fail("a table nested %d deep (cap %d)", depth, KEEL_TOML_MAX_DEPTH);
    size_t n = 1;
    if (v->key && strlen(v->key) > KEEL_TOML_MAX_KEY)
        fuzz_fail("a key of %zu bytes (cap %d)", strlen(v->key), KEEL_TOML_MAX_KEY);
    if (v->key && !fuzz_valid_utf8(v->key, false))
        fuzz_fail("key '%s' is not valid UTF-8", v->key);
    if (v->type == KEEL_TOML_STRING && (v->str == NULL || !fuzz_valid_utf8(v->str, false)))
        fuzz_fail("the string of '%s' is not valid UTF-8", v->key);
    if (v->type == KEEL_TOML_TABLE)
        for (size_t i = 0; i < v->n_items; i++)
            n += check_tree(v->items[i], depth + (v->items[i]->type == KEEL_TOML_TABLE));
    return n;
}

/* Load with `strict`; the address on success (copied), NULL on failure. */
static char *load(const char *text, size_t len, bool strict, bool *ok, bool secret_in_text)
{
    static const char *const env[] = {"HOME=/nonexistent", "TEMPORAL_API_KEY=" SECRET,
                                      "TEMPORAL_GRPC_META_X_FUZZ=1", NULL};
    keel_profile_load_options lo = KEEL_PROFILE_LOAD_OPTIONS_INIT;
    lo.config_data = text;
    lo.config_data_len = len;
    lo.strict = strict;
    lo.environment = env;
    keel_connect_options o = KEEL_CONNECT_OPTIONS_INIT;
    keel_client_profile *p = NULL;
    keel_error err;
    *ok = keel_connect_options_from_profile(&o, &lo, &p, &err) == KEEL_OK;
    if (!*ok) {
        if (p != NULL)
            fuzz_fail("a failed load handed out a profile");
        if (!secret_in_text && strstr(err.message, SECRET))
            fuzz_fail("an error message carries the API key: %s", err.message);
        return NULL;
    }
    if (keel_connect_options_validate(&o, &err) != KEEL_OK && !secret_in_text &&
        strstr(err.message, SECRET))
        fuzz_fail("a validation message carries the API key: %s", err.message);
    char *address = strdup(o.address ? o.address : "");
    keel_client_profile_free(p);
    return address;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_LEN)
        return 0;
    const char *text = (const char *)data;
    keel_toml_value *root;
    keel_error err;
    bool parsed = keel_toml_parse(text, size, &root, &err) == KEEL_OK;
    if (parsed) {
        size_t n = check_tree(root, 0);
        if (n - 1 > KEEL_TOML_MAX_KEYS)
            fuzz_fail("%zu keys and tables (cap %d)", n - 1, KEEL_TOML_MAX_KEYS);
        keel_toml_free(root);
    } else if (strncmp(err.message, "line ", 5) != 0 &&
               strstr(err.message, "over keel's") == NULL && err.code != KEEL_ENOMEM) {
        fuzz_fail("a refusal that names no line: %s", err.message);
    }

    /* The key's value may be in the text itself (the fuzzer learns it from the comparisons):
     * then a message quoting the text is no leak. */
    bool secret_in_text = false;
    for (size_t i = 0; !secret_in_text && i + strlen(SECRET) <= size; i++)
        secret_in_text = memcmp(data + i, SECRET, strlen(SECRET)) == 0;
    bool lenient_ok, strict_ok;
    char *lenient = load(text, size, false, &lenient_ok, secret_in_text);
    char *strict = load(text, size, true, &strict_ok, secret_in_text);
    if (!parsed && (lenient_ok || strict_ok))
        fuzz_fail("the loader took a text the TOML reader refuses");
    if (strict_ok && !lenient_ok)
        fuzz_fail("a strict load succeeded where the lenient one failed");
    if (strict_ok && strcmp(strict, lenient) != 0)
        fuzz_fail("strict and lenient loads disagree on the address: '%s' vs '%s'", strict,
                  lenient);
    free(lenient);
    free(strict);
    return 0;
}
