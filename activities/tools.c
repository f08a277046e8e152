/*
 * activities/tools.c - the toolbox: compiled tool schemas, grants, and the check of a proposed
 * call. See tools.h for the order of the checks and the shape of their errors.
 */
#include "activities/tools.h"

#include <stdlib.h>
#include <string.h>

#include "keel/schema.h"
#include "keel/json.h"

struct keel_toolbox {
    const keel_tool *tools;
    keel_schema **schemas; /* one per tool, same index */
    size_t n_tools;
    const keel_tool_grant *grants;
    size_t n_grants;
};

const char *keel_tool_risk_name(keel_tool_risk risk)
{
    switch (risk) {
    case KEEL_TOOL_READ:
        return "read";
    case KEEL_TOOL_WRITE:
        return "write";
    case KEEL_TOOL_HIGH_IMPACT:
        return "high-impact";
    }
    return "unknown";
}

/* Chat Completions accepts function names of [A-Za-z0-9_-]{1,64}. */
static bool valid_tool_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static ptrdiff_t tool_index(const keel_toolbox *box, const char *name)
{
    for (size_t i = 0; name && i < box->n_tools; i++)
        if (strcmp(box->tools[i].name, name) == 0)
            return (ptrdiff_t)i;
    return -1;
}

static int check_grants(const keel_toolbox *box, keel_error *err)
{
    for (size_t g = 0; g < box->n_grants; g++) {
        const keel_tool_grant *grant = &box->grants[g];
        if (!grant->workflow_type || !grant->tools)
            return keel_error_set(err, KEEL_EINVAL, "tool grant %zu has no workflow type or tools",
                                  g);
        for (const char *const *t = grant->tools; *t; t++)
            if (tool_index(box, *t) < 0)
                return keel_error_set(err, KEEL_EINVAL,
                                      "the grant for %s names tool '%s', which is not registered",
                                      grant->workflow_type, *t);
    }
    return KEEL_OK;
}

static int compile_tool(keel_toolbox *box, size_t i, keel_error *err)
{
    const keel_tool *t = &box->tools[i];
    if (!valid_tool_name(t->name))
        return keel_error_set(err, KEEL_EINVAL, "tool name '%s' is not 1 to 64 of [A-Za-z0-9_-]",
                              t->name ? t->name : "(null)");
    for (size_t j = 0; j < i; j++)
        if (strcmp(box->tools[j].name, t->name) == 0)
            return keel_error_set(err, KEEL_EINVAL, "tool '%s' is registered twice", t->name);
    if (!t->run || !t->description || !t->schema)
        return keel_error_set(err, KEEL_EINVAL, "tool '%s' lacks a description, schema or function",
                              t->name);
    keel_error inner;
    keel_error_clear(&inner);
    if (keel_schema_new(&box->schemas[i], t->schema, &inner) != KEEL_OK)
        return keel_error_set(err, KEEL_EINVAL, "tool '%s' has a bad schema: %s", t->name,
                              inner.message);
    return KEEL_OK;
}

int keel_toolbox_new(keel_toolbox **out, const keel_tool *tools, size_t n_tools,
                     const keel_tool_grant *grants, size_t n_grants, keel_error *err)
{
    *out = NULL;
    keel_toolbox *box = calloc(1, sizeof *box);
    if (!box || !(box->schemas = calloc(n_tools ? n_tools : 1, sizeof *box->schemas))) {
        free(box);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory for a toolbox");
    }
    box->tools = tools;
    box->n_tools = n_tools;
    box->grants = grants;
    box->n_grants = n_grants;
    int rc = KEEL_OK;
    for (size_t i = 0; rc == KEEL_OK && i < n_tools; i++)
        rc = compile_tool(box, i, err);
    if (rc == KEEL_OK)
        rc = check_grants(box, err);
    if (rc != KEEL_OK) {
        keel_toolbox_free(box);
        return rc;
    }
    *out = box;
    return KEEL_OK;
}

void keel_toolbox_free(keel_toolbox *box)
{
    if (!box)
        return;
    for (size_t i = 0; i < box->n_tools; i++)
        keel_schema_free(box->schemas[i]);
    free(box->schemas);
    free(box);
}

size_t keel_toolbox_count(const keel_toolbox *box)
{
    return box->n_tools;
}

const keel_tool *keel_toolbox_at(const keel_toolbox *box, size_t i)
{
    return i < box->n_tools ? &box->tools[i] : NULL;
}

const keel_tool *keel_toolbox_find(const keel_toolbox *box, const char *name)
{
    ptrdiff_t i = tool_index(box, name);
    return i < 0 ? NULL : &box->tools[i];
}

bool keel_toolbox_allowed(const keel_toolbox *box, const char *workflow_type, const char *name)
{
    for (size_t g = 0; workflow_type && g < box->n_grants; g++) {
        if (strcmp(box->grants[g].workflow_type, workflow_type) != 0)
            continue;
        for (const char *const *t = box->grants[g].tools; *t; t++)
            if (name && strcmp(*t, name) == 0)
                return true;
    }
    return false;
}

/* {"error": kind, "tool": name, "errors": [{"pointer": p, "reason": r}, ...]} */
static cJSON *call_error(const char *kind, const char *tool, const char *pointer,
                         const char *reason)
{
    cJSON *e = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(e, "errors");
    cJSON_AddStringToObject(e, "error", kind);
    cJSON_AddStringToObject(e, "tool", tool ? tool : "");
    if (reason) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "pointer", pointer ? pointer : "");
        cJSON_AddStringToObject(item, "reason", reason);
        cJSON_AddItemToArray(list, item);
    }
    return e;
}

static cJSON *schema_errors(const char *tool, const keel_schema_result *r)
{
    cJSON *e = call_error("invalid_arguments", tool, NULL, NULL);
    cJSON *list = cJSON_GetObjectItemCaseSensitive(e, "errors");
    for (size_t i = 0; i < r->count; i++) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "pointer", r->errors[i].pointer);
        cJSON_AddStringToObject(item, "reason", r->errors[i].reason);
        cJSON_AddItemToArray(list, item);
    }
    if (r->truncated)
        cJSON_AddBoolToObject(e, "truncated", true);
    return e;
}

cJSON *keel_toolbox_check(const keel_toolbox *box, const char *workflow_type, const char *name,
                          const char *arguments, cJSON **args)
{
    if (args)
        *args = NULL;
    ptrdiff_t i = tool_index(box, name);
    if (i < 0)
        return call_error("unknown_tool", name, "", "there is no tool of this name");
    if (!keel_toolbox_allowed(box, workflow_type, name))
        return call_error("tool_not_allowed", name, "", "this workflow may not use this tool");
    const char *text = arguments && *arguments ? arguments : "{}";
    cJSON *parsed = NULL;
    keel_error err;
    keel_error_clear(&err);
    if (keel_json_parse_str(text, KEEL_JSON_STRICT, "the arguments", &parsed, &err) != KEEL_OK)
        return call_error("arguments_not_json", name, "", err.message);
    if (!cJSON_IsObject(parsed)) {
        cJSON_Delete(parsed);
        return call_error("invalid_arguments", name, "", "the arguments must be a JSON object");
    }
    keel_schema_result r;
    if (keel_schema_validate_tree(box->schemas[i], parsed, &r, &err) != KEEL_OK) {
        cJSON_Delete(parsed);
        return call_error("invalid_arguments", name, "", err.message);
    }
    cJSON *e = r.valid ? NULL : schema_errors(name, &r);
    keel_schema_result_dispose(&r);
    if (e || !args)
        cJSON_Delete(parsed);
    else
        *args = parsed;
    return e;
}

static cJSON *definition(const keel_tool *t)
{
    cJSON *def = cJSON_CreateObject();
    cJSON_AddStringToObject(def, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(def, "function");
    cJSON_AddStringToObject(fn, "name", t->name);
    cJSON_AddStringToObject(fn, "description", t->description);
    /* The schema compiled when the toolbox was made, so it parses. */
    cJSON_AddItemToObject(fn, "parameters", keel_json_from(t->schema));
    return def;
}

int keel_toolbox_definitions(const keel_toolbox *box, const char *workflow_type, const cJSON *names,
                             cJSON **out, keel_error *err)
{
    *out = NULL;
    if (names && !cJSON_IsArray(names))
        return keel_error_set(err, KEEL_EINVAL, "tools must be an array of tool names");
    cJSON *defs = cJSON_CreateArray();
    if (!defs)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory");
    for (size_t i = 0; !names && i < box->n_tools; i++)
        if (keel_toolbox_allowed(box, workflow_type, box->tools[i].name))
            cJSON_AddItemToArray(defs, definition(&box->tools[i]));
    const cJSON *n;
    cJSON_ArrayForEach(n, names)
    {
        const char *name = cJSON_GetStringValue(n);
        const keel_tool *t = keel_toolbox_find(box, name);
        if (!t || !keel_toolbox_allowed(box, workflow_type, name)) {
            cJSON_Delete(defs);
            return keel_error_set(err, KEEL_EINVAL, "tool '%s' is %s for %s",
                                  name ? name : "(not a string)",
                                  t ? "not granted" : "not registered", workflow_type);
        }
        cJSON_AddItemToArray(defs, definition(t));
    }
    *out = defs;
    return KEEL_OK;
}
