/*
 * keelctl schema validate - check a JSON document against a JSON Schema, offline. Exit 0 when it
 * is valid, 1 when it is not (one "POINTER: reason" line per error on stdout, the root
 * shown as "(root)"), 2 when the files
 * cannot be read or are not JSON, or the schema cannot be used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/schema.h"
#include "keelctl.h"

/* The whole file as a NUL-terminated string (malloc'd), or NULL with errno set. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (len + 1 == cap) {
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
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

int keelctl_schema(const cli *c)
{
    if (c->nargs != 2 || strcmp(c->args[1], "validate") != 0)
        return usage_error("%s",
                           "schema takes one command: validate --schema FILE --instance FILE");
    if (c->schema == NULL || c->instance == NULL)
        return usage_error("%s", "schema validate needs --schema FILE and --instance FILE");
    char *schema_text = slurp(c->schema);
    if (schema_text == NULL) {
        fprintf(stderr, "keelctl: cannot read %s\n", c->schema);
        return EXIT_USAGE;
    }
    char *instance_text = slurp(c->instance);
    if (instance_text == NULL) {
        fprintf(stderr, "keelctl: cannot read %s\n", c->instance);
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
        if (r.valid) {
            printf("%s is valid\n", c->instance);
            rc = 0;
        } else {
            for (size_t i = 0; i < r.count; i++)
                printf("%s: %s\n", r.errors[i].pointer[0] ? r.errors[i].pointer : "(root)",
                       r.errors[i].reason);
            if (r.truncated)
                printf("(more errors not shown)\n");
            rc = EXIT_CALL;
        }
        keel_schema_result_dispose(&r);
    }
    keel_schema_free(schema);
    free(schema_text);
    free(instance_text);
    return rc;
}
