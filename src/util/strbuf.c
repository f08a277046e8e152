/*
 * strbuf - a growable NUL-terminated string (strbuf.h).
 */
#include "util/strbuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void keel_strbuf_put(keel_strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->p == NULL || n >= b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap - b->len <= n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void keel_strbuf_puts(keel_strbuf *b, const char *s)
{
    keel_strbuf_put(b, s, strlen(s));
}

void keel_strbuf_truncate(keel_strbuf *b, size_t len)
{
    if (len > b->len)
        return;
    b->len = len;
    if (b->p)
        b->p[len] = '\0';
}

int keel_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
