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

size_t keel_utf8_sequence(const unsigned char *s)
{
    size_t n = s[0] < 0x80                    ? 1
               : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
               : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
               : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                              : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    /* overlong three- and four-byte forms, surrogates, and code points past U+10FFFF */
    if ((n == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (n == 3 && s[0] == 0xED && s[1] >= 0xA0) ||
        (n == 4 && s[0] == 0xF0 && s[1] < 0x90) || (n == 4 && s[0] == 0xF4 && s[1] >= 0x90))
        return 0;
    return n;
}

void keel_secret_free(char *s)
{
    if (s == NULL)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    free(s);
}
