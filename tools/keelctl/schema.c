/*
 * keelctl schema validate - check a JSON document against a JSON Schema (draft 7 or 2020-12,
 * see keel/schema.h), offline. Exit 0 when it is valid, 1 when it is not (one "POINTER: reason"
 * line per error on stdout, the root shown as "(root)"; with --json one object:
 * {"valid": false, "errors": [{"pointer", "keyword", "reason"}], "truncated": false}), 2 when
 * the files cannot be read or are not JSON, the schema cannot be used, or a limit of keel/schema.h
 * stopped the validation (the message says which). References resolve inside the schema file
 * only: keelctl fetches nothing and reads no other file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/json.h"
#include "keel/schema.h"
#include "keelctl.h"

/* The whole file as a NUL-terminated string (malloc'd), or NULL with why set: it cannot be read,
 * it is larger than KEEL_JSON_MAX_TEXT, or it holds a NUL byte (the text would end there). */
static char *slurp(const char *path, const char **why)
{
    FILE *f = fopen(path, "rb");
    *why = "cannot be read";
    if (f == NULL)
        return NULL;
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (len > KEEL_JSON_MAX_TEXT) {
            *why = "is larger than KEEL_JSON_MAX_TEXT (256 MiB)";
            free(buf);
            buf = NULL;
        } else if (len + 1 == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    if (buf != NULL && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL) {
        buf[len] = '\0';
        if (strlen(buf) != len) {
            *why = "holds a NUL byte";
            free(buf);
            buf = NULL;
        }
    }
    return buf;
}

static int print_result(const cli *c, const keel_schema_result *r)
{
    if (c->json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddBoolToObject(out, "valid", r->valid);
        cJSON *list = cJSON_AddArrayToObject(out, "errors");
        for (size_t i = 0; i < r->count; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "pointer", r->errors[i].pointer);
            cJSON_AddStringToObject(e, "keyword", r->errors[i].keyword);
            cJSON_AddStringToObject(e, "reason", r->errors[i].reason);
            cJSON_AddItemToArray(list, e);
        }
        cJSON_AddBoolToObject(out, "truncated", r->truncated);
        if (print_json(out) != 0)
            return EXIT_USAGE;
    } else if (r->valid) {
        printf("%s is valid\n", c->instance);
    } else {
        for (size_t i = 0; i < r->count; i++)
            printf("%s: %s\n", r->errors[i].pointer[0] ? r->errors[i].pointer : "(root)",
                   r->errors[i].reason);
        if (r->truncated)
            printf("(more errors not shown)\n");
    }
    return r->valid ? 0 : EXIT_CALL;
}

int keelctl_schema(const cli *c)
{
    if (c->nargs != 2 || strcmp(c->args[1], "validate") != 0)
        return usage_error("%s",
                           "schema takes one command: validate --schema FILE --instance FILE");
    if (c->schema == NULL || c->instance == NULL)
        return usage_error("%s", "schema validate needs --schema FILE and --instance FILE");
    const char *why;
    char *schema_text = slurp(c->schema, &why);
    if (schema_text == NULL) {
        fprintf(stderr, "keelctl: %s %s\n", c->schema, why);
        return EXIT_USAGE;
    }
    char *instance_text = slurp(c->instance, &why);
    if (instance_text == NULL) {
        fprintf(stderr, "keelctl: %s %s\n", c->instance, why);
        free(schema_text);
        return EXIT_USAGE;
    }
    keel_error err;
    keel_schema *schema = NULL;
    keel_schema_result r;
    int rc = EXIT_USAGE;
    if (keel_schema_new(&schema, schema_text, &err) != KEEL_OK) {
        fprintf(stderr, "keelctl: %s: %s\n", c->schema, err.message);
    } else if (keel_schema_validate(schema, instance_text, &r, &err) != KEEL_OK) {
        fprintf(stderr, "keelctl: %s: %s\n", c->instance, err.message);
    } else {
        rc = print_result(c, &r);
        keel_schema_result_dispose(&r);
    }
    keel_schema_free(schema);
    free(schema_text);
    free(instance_text);
    return rc;
}
