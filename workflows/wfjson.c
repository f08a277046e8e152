/*
 * wfjson - shared JSON chores of the workflows (see wfjson.h).
 */
#include "workflows/wfjson.h"
#include "keel/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool keel_wf_refuse(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return false;
}

const cJSON *keel_wf_member(const cJSON *obj, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    return cJSON_IsNull(v) ? NULL : v;
}

/* The loop stops at the first bad member, so it runs at most len(known) + 1 times whatever the
 * input's size. */
bool keel_wf_only_known_fields(const cJSON *obj, const char *const *known, char *why, size_t n)
{
    for (const cJSON *v = obj->child; v; v = v->next) {
        const char *const *k = known;
        while (*k && strcmp(*k, v->string) != 0)
            k++;
        if (*k == NULL)
            return keel_wf_refuse(why, n, "unknown field \"%.60s\"", v->string);
        for (const cJSON *u = obj->child; u != v; u = u->next)
            if (strcmp(u->string, v->string) == 0)
                return keel_wf_refuse(why, n, "field \"%s\" appears twice", v->string);
    }
    return true;
}

bool keel_wf_take_text(const cJSON *v, const char *field, bool may_be_empty, char *dst, size_t size,
                       char *why, size_t n)
{
    if (!cJSON_IsString(v) || (!may_be_empty && v->valuestring[0] == '\0'))
        return keel_wf_refuse(why, n, "\"%s\" must be a %sstring", field,
                              may_be_empty ? "" : "non-empty ");
    if (strlen(v->valuestring) >= size)
        return keel_wf_refuse(why, n, "\"%s\" is longer than %zu bytes", field, size - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return true;
}

bool keel_wf_take_whole(const cJSON *obj, const char *field, const char *unit, int64_t dflt,
                        int64_t min, int64_t max, int64_t *out, char *why, size_t n)
{
    const cJSON *v = keel_wf_member(obj, field);
    if (v == NULL) {
        *out = dflt;
        return true;
    }
    /* The range check comes first: only then is the cast to int64_t defined. */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)min && v->valuedouble <= (double)max) ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return keel_wf_refuse(why, n, "\"%s\" must be a whole number of %s from %lld to %lld",
                              field, unit, (long long)min, (long long)max);
    *out = (int64_t)v->valuedouble;
    return true;
}

bool keel_wf_put(cJSON *o, const char *key, cJSON *item)
{
    bool ok = item && (key ? cJSON_AddItemToObject(o, key, item) : cJSON_AddItemToArray(o, item));
    if (!ok)
        cJSON_Delete(item);
    return ok;
}

cJSON *keel_wf_string_or_null(const char *s)
{
    return s && s[0] ? cJSON_CreateString(s) : cJSON_CreateNull();
}

char *keel_wf_print(cJSON *o, bool complete)
{
    char *s = complete && o ? keel_json_print(o) : NULL;
    cJSON_Delete(o);
    return s;
}

void keel_wf_money(double usd, char *buf, size_t n)
{
    /* Whole cents first, so that 0.995 prints as 1.00 and the separators see the rounded value. */
    long long cents = llround(fabs(usd) * 100.0);
    char digits[32], grouped[48];
    int len = snprintf(digits, sizeof digits, "%lld", cents / 100);
    size_t g = 0;
    for (int i = 0; i < len && g + 2 < sizeof grouped; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            grouped[g++] = ',';
        grouped[g++] = digits[i];
    }
    grouped[g] = '\0';
    snprintf(buf, n, "%s%s.%02lld", usd < 0 ? "-" : "", grouped, cents % 100);
}

/* Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar), by 400-year eras. */
void keel_wf_date(int64_t ms, char buf[11])
{
    int64_t z = (ms >= 0 ? ms / 86400000 : (ms - 86399999) / 86400000) + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    char text[32];
    snprintf(text, sizeof text, "%04d-%02d-%02d", (int)(y % 10000), (int)(m % 100), (int)(d % 100));
    memcpy(buf, text, 10);
    buf[10] = '\0';
}
