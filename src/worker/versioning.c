/*
 * versioning - a worker's versioning behaviours: names, the override list keel-worker reads
 * (KEEL_VERSIONING_BEHAVIOR_OVERRIDES), and which behaviour a workflow type gets.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keel/worker.h"

int keel_versioning_behavior_parse(const char *text, keel_versioning_behavior *out)
{
    if (text == NULL)
        return KEEL_EINVAL;
    if (strcasecmp(text, "pinned") == 0)
        *out = KEEL_VERSIONING_PINNED;
    else if (strcasecmp(text, "auto-upgrade") == 0 || strcasecmp(text, "auto_upgrade") == 0)
        *out = KEEL_VERSIONING_AUTO_UPGRADE;
    else if (strcasecmp(text, "unspecified") == 0)
        *out = KEEL_VERSIONING_UNSPECIFIED;
    else
        return KEEL_EINVAL;
    return KEEL_OK;
}

const char *keel_versioning_behavior_name(keel_versioning_behavior b)
{
    switch (b) {
    case KEEL_VERSIONING_PINNED:
        return "pinned";
    case KEEL_VERSIONING_AUTO_UPGRADE:
        return "auto-upgrade";
    default:
        return "unspecified";
    }
}

void keel_versioning_overrides_free(keel_versioning_override *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free((char *)list[i].workflow_type);
    free(list);
}

/* [s, e) without the spaces around it. */
static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

#define TYPE_NAME_MAX 255

int keel_versioning_overrides_parse(const char *text, keel_versioning_override **out, size_t *n,
                                    keel_error *err)
{
    *out = NULL;
    *n = 0;
    if (text == NULL)
        return KEEL_OK;
    keel_versioning_override *list = calloc(KEEL_MAX_VERSIONING_OVERRIDES, sizeof *list);
    if (list == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    size_t count = 0;
    int rc = KEEL_OK;
    for (const char *p = text; rc == KEEL_OK && *p;) {
        const char *end = p + strcspn(p, ",");
        const char *s = p, *e = end;
        p = *end ? end + 1 : end;
        trim(&s, &e);
        if (s == e)
            continue; /* "a=pinned," or an all-space text */
        const char *eq = memchr(s, '=', (size_t)(e - s));
        const char *ts = s, *te = eq ? eq : e, *bs = eq ? eq + 1 : e, *be = e;
        trim(&ts, &te);
        trim(&bs, &be);
        char behavior[32];
        keel_versioning_behavior b = KEEL_VERSIONING_UNSPECIFIED;
        size_t blen = (size_t)(be - bs);
        if (eq == NULL || ts == te || blen == 0 || blen >= sizeof behavior) {
            rc = keel_error_set(err, KEEL_EINVAL, "'%.*s' is not TYPE=pinned or TYPE=auto-upgrade",
                                (int)(e - s) > 80 ? 80 : (int)(e - s), s);
            break;
        }
        memcpy(behavior, bs, blen);
        behavior[blen] = '\0';
        if (keel_versioning_behavior_parse(behavior, &b) != KEEL_OK ||
            b == KEEL_VERSIONING_UNSPECIFIED) {
            rc = keel_error_set(err, KEEL_EINVAL,
                                "'%s' is not a versioning behaviour (pinned or auto-upgrade)",
                                behavior);
            break;
        }
        size_t tlen = (size_t)(te - ts);
        if (tlen > TYPE_NAME_MAX) {
            rc = keel_error_set(err, KEEL_EINVAL, "a workflow type name over %d bytes",
                                TYPE_NAME_MAX);
            break;
        }
        for (size_t i = 0; i < count; i++)
            if (strlen(list[i].workflow_type) == tlen &&
                memcmp(list[i].workflow_type, ts, tlen) == 0)
                rc = keel_error_set(err, KEEL_EINVAL, "workflow type %.*s is named twice",
                                    (int)tlen, ts);
        if (rc != KEEL_OK)
            break;
        if (count == KEEL_MAX_VERSIONING_OVERRIDES) {
            rc = keel_error_set(err, KEEL_EINVAL, "more than %d versioning overrides",
                                KEEL_MAX_VERSIONING_OVERRIDES);
            break;
        }
        char *name = strndup(ts, tlen);
        if (name == NULL) {
            rc = keel_error_set(err, KEEL_ENOMEM, "out of memory");
            break;
        }
        list[count].workflow_type = name;
        list[count].behavior = b;
        count++;
    }
    if (rc != KEEL_OK) {
        keel_versioning_overrides_free(list, count);
        return rc;
    }
    *out = list;
    *n = count;
    return KEEL_OK;
}

keel_versioning_behavior keel_worker_options_behavior(const keel_worker_options *opts,
                                                      const keel_workflow_type *t)
{
    if (opts == NULL || t == NULL || !opts->use_versioning || opts->deployment_name == NULL)
        return KEEL_VERSIONING_UNSPECIFIED;
    for (size_t i = 0; i < opts->n_versioning_overrides; i++)
        if (opts->versioning_overrides[i].workflow_type && t->name &&
            strcmp(opts->versioning_overrides[i].workflow_type, t->name) == 0)
            return opts->versioning_overrides[i].behavior;
    if (t->versioning_behavior != KEEL_VERSIONING_UNSPECIFIED)
        return t->versioning_behavior;
    return opts->default_versioning_behavior;
}
