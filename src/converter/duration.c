/* Durations: "72h", "1h30m", "250ms", "1.5s". */
#include "keel/duration.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const struct unit {
    const char *name;
    int64_t ms;
} units[] = {
    /* "ms" before "m" so that the longer match wins. */
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

int keel_duration_parse(const char *text, int64_t *out_ms, keel_error *err)
{
    if (text == NULL || text[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "empty duration");
    if (strcmp(text, "0") == 0) {
        *out_ms = 0;
        return KEEL_OK;
    }
    const int64_t max = INT64_MAX / 1000;
    int64_t total = 0;
    const char *p = text;
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return keel_error_set(err, KEEL_EINVAL, "bad duration '%s': expected a number at '%s'",
                                  text, p);
        /* Integer and fractional parts kept apart so "0.001s" stays exact. */
        int64_t whole = 0, frac = 0, scale = 1;
        bool digits = false;
        for (; isdigit((unsigned char)*p); p++, digits = true) {
            if (whole > max / 10)
                return keel_error_set(err, KEEL_EINVAL, "duration '%s' is too large", text);
            whole = whole * 10 + (*p - '0');
        }
        if (*p == '.') {
            for (p++; isdigit((unsigned char)*p); p++, digits = true) {
                if (scale < 1000000000) {
                    frac = frac * 10 + (*p - '0');
                    scale *= 10;
                }
            }
        }
        if (!digits)
            return keel_error_set(err, KEEL_EINVAL, "bad duration '%s': a number has no digits",
                                  text);
        const struct unit *u = NULL;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].name);
            if (strncmp(p, units[i].name, n) == 0 && !isalpha((unsigned char)p[n])) {
                u = &units[i];
                break;
            }
        }
        if (u == NULL)
            return keel_error_set(err, KEEL_EINVAL,
                                  "bad duration '%s': unit missing or unknown at '%s' "
                                  "(use ms, s, m, h or d)",
                                  text, p);
        p += strlen(u->name);
        if (whole > (max - total) / u->ms)
            return keel_error_set(err, KEEL_EINVAL, "duration '%s' is too large", text);
        int64_t part = whole * u->ms + frac * u->ms / scale;
        if (part == 0 && (whole != 0 || frac != 0))
            return keel_error_set(err, KEEL_EINVAL,
                                  "duration '%s' has a part shorter than a millisecond", text);
        total += part;
    }
    *out_ms = total;
    return KEEL_OK;
}

char *keel_duration_format(int64_t ms, char *buf, size_t bufsz)
{
    if (bufsz == 0)
        return buf;
    if (ms == 0) {
        snprintf(buf, bufsz, "0s");
        return buf;
    }
    char tmp[64] = "";
    size_t len = 0;
    const char *sign = "";
    uint64_t v = (uint64_t)ms;
    if (ms < 0) {
        sign = "-";
        v = (uint64_t)0 - (uint64_t)ms;
    }
    uint64_t h = v / 3600000, m = v / 60000 % 60, s = v / 1000 % 60, milli = v % 1000;
    if (h)
        len += snprintf(tmp + len, sizeof tmp - len, "%lluh", (unsigned long long)h);
    if (m)
        len += snprintf(tmp + len, sizeof tmp - len, "%llum", (unsigned long long)m);
    if (s && milli) {
        /* 1.500 -> 1.5: drop the fraction's trailing zeros. */
        unsigned long long f = milli;
        int digits = 3;
        while (f % 10 == 0) {
            f /= 10;
            digits--;
        }
        len +=
            snprintf(tmp + len, sizeof tmp - len, "%llu.%0*llus", (unsigned long long)s, digits, f);
    } else if (s)
        len += snprintf(tmp + len, sizeof tmp - len, "%llus", (unsigned long long)s);
    else if (milli)
        len += snprintf(tmp + len, sizeof tmp - len, "%llums", (unsigned long long)milli);
    snprintf(buf, bufsz, "%s%s", sign, tmp);
    return buf;
}
