/*
 * strbuf - a growable NUL-terminated string, for the printers and translators that build text
 * piece by piece (the JSON printer, the schema validator's messages, the regex translator), and
 * the hex digits and UTF-8 sequences they read.
 *
 * A keel_strbuf starts zeroed ({0}). Appends grow it by doubling; when memory runs out the
 * buffer keeps what it had, sets `oom`, and every later append does nothing, so a caller checks
 * once at the end. The text in `p` is always NUL-terminated once anything was appended (p is
 * NULL before). The caller owns `p` and frees it with free() (or takes it as its result).
 */
#ifndef KEEL_UTIL_STRBUF_H
#define KEEL_UTIL_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct keel_strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} keel_strbuf;

/* Append n bytes of s (which may hold NULs). */
void keel_strbuf_put(keel_strbuf *b, const char *s, size_t n);

/* Append the NUL-terminated s. */
void keel_strbuf_puts(keel_strbuf *b, const char *s);

/* Cut the text back to its first len bytes (len <= b->len). */
void keel_strbuf_truncate(keel_strbuf *b, size_t len);

/* The value of one hex digit (0-9, a-f, A-F), or -1. */
int keel_hex_digit(char c);

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 when it is not one: overlong forms,
 * surrogates and code points past U+10FFFF are not. Reads at most up to the first byte that is
 * not a continuation byte, so a NUL-terminated s is never read past its end. */
size_t keel_utf8_sequence(const unsigned char *s);

/* Overwrite the NUL-terminated s with zeros, then free it (NULL: nothing). For key material
 * and API keys, which should not linger in freed heap memory. */
void keel_secret_free(char *s);

#endif
