/* grpcwire - gRPC's conventions over HTTP/2, as pure functions of bytes. */
#include "transport/grpcwire.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first allocation for a message; it doubles from there as bytes arrive. */
#define DEFRAMER_FIRST_CAP (16 * 1024)

void keel_grpc_prefix(uint8_t out[KEEL_GRPC_PREFIX_BYTES], uint32_t length)
{
    out[0] = 0;
    out[1] = (uint8_t)(length >> 24);
    out[2] = (uint8_t)(length >> 16);
    out[3] = (uint8_t)(length >> 8);
    out[4] = (uint8_t)length;
}

/* Room for `want` bytes of the message, growing by doubling but never past its length. */
static int deframer_reserve(keel_grpc_deframer *d, size_t want, keel_error *err)
{
    if (want <= d->cap)
        return KEEL_OK;
    size_t cap = d->cap ? d->cap : DEFRAMER_FIRST_CAP;
    while (cap < want)
        cap *= 2;
    if (cap > d->length)
        cap = d->length;
    uint8_t *b = realloc(d->buf, cap ? cap : 1);
    if (b == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory for a %zu-byte response", d->length);
    d->buf = b;
    d->cap = cap;
    return KEEL_OK;
}

int keel_grpc_deframer_feed(keel_grpc_deframer *d, const uint8_t *data, size_t n, size_t max_bytes,
                            keel_error *err)
{
    while (n > 0) {
        if (d->prefix_have < KEEL_GRPC_PREFIX_BYTES) {
            size_t take = KEEL_GRPC_PREFIX_BYTES - d->prefix_have;
            if (take > n)
                take = n;
            memcpy(d->prefix + d->prefix_have, data, take);
            d->prefix_have += take;
            data += take;
            n -= take;
            if (d->prefix_have < KEEL_GRPC_PREFIX_BYTES)
                return KEEL_OK;
            if (d->messages > 0)
                return keel_error_set(err, KEEL_EPROTOCOL,
                                      "the server sent more than one message for a unary call");
            if (d->prefix[0] != 0)
                return keel_error_set(err, KEEL_EPROTOCOL,
                                      "the server sent a compressed message (flag %u) though keel "
                                      "offers no compression",
                                      d->prefix[0]);
            d->length = (size_t)d->prefix[1] << 24 | (size_t)d->prefix[2] << 16 |
                        (size_t)d->prefix[3] << 8 | d->prefix[4];
            if (d->length > max_bytes)
                return keel_error_set(err, KEEL_EEXHAUSTED,
                                      "the response is %zu bytes, more than the %zu accepted",
                                      d->length, max_bytes);
            d->have = 0;
        }
        size_t take = d->length - d->have;
        if (take > n)
            take = n;
        if (take > 0) {
            if (deframer_reserve(d, d->have + take, err) != KEEL_OK)
                return KEEL_ENOMEM;
            memcpy(d->buf + d->have, data, take);
            d->have += take;
            data += take;
            n -= take;
        }
        if (d->have == d->length) {
            d->messages++;
            /* Ready for a next prefix, which the check above refuses. */
            d->prefix_have = 0;
        }
    }
    return KEEL_OK;
}

int keel_grpc_deframer_take(keel_grpc_deframer *d, uint8_t **msg, size_t *len, keel_error *err)
{
    *msg = NULL;
    *len = 0;
    if (d->messages == 0 || d->prefix_have != 0) {
        /* Bytes after the message: the start of a second one, which feed() refuses once its
         * prefix is whole. */
        if (d->messages > 0)
            return keel_error_set(err, KEEL_EPROTOCOL,
                                  "the server sent more than one message for a unary call");
        if (d->prefix_have > 0 && d->prefix_have < KEEL_GRPC_PREFIX_BYTES)
            return keel_error_set(err, KEEL_EPROTOCOL,
                                  "the response ended inside a message's prefix (%zu of %d bytes)",
                                  d->prefix_have, KEEL_GRPC_PREFIX_BYTES);
        if (d->prefix_have > 0)
            return keel_error_set(err, KEEL_EPROTOCOL,
                                  "the response ended inside a message (%zu of %zu bytes)", d->have,
                                  d->length);
        return keel_error_set(err, KEEL_EPROTOCOL, "the server sent OK without a response");
    }
    if (d->buf == NULL && (d->buf = malloc(1)) == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory for the response");
    *msg = d->buf;
    *len = d->length;
    memset(d, 0, sizeof *d);
    return KEEL_OK;
}

void keel_grpc_deframer_free(keel_grpc_deframer *d)
{
    free(d->buf);
    memset(d, 0, sizeof *d);
}

void keel_grpc_timeout(int64_t ms, char out[16])
{
    if (ms < 1)
        ms = 1;
    /* At most 8 digits, in the finest unit that fits. */
    static const struct {
        uint64_t ms;
        char unit;
    } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        /* Rounded up, without ms + unit - 1, which overflows near INT64_MAX. */
        uint64_t n = (uint64_t)ms / units[i].ms + ((uint64_t)ms % units[i].ms != 0);
        if (n <= 99999999 || i == sizeof units / sizeof units[0] - 1) {
            if (n > 99999999)
                n = 99999999;
            snprintf(out, 16, "%llu%c", (unsigned long long)n, units[i].unit);
            return;
        }
    }
}

int keel_grpc_parse_status(const uint8_t *v, size_t n)
{
    if (n == 0 || n > 2)
        return -1;
    int s = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        s = s * 10 + (v[i] - '0');
    }
    return s;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t keel_grpc_percent_decode(const uint8_t *in, size_t n, char *out, size_t outsz)
{
    if (outsz == 0)
        return 0;
    size_t o = 0;
    bool cut = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        if (c == '%' && i + 2 < n && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            c = (uint8_t)(hexval(in[i + 1]) << 4 | hexval(in[i + 2]));
            i += 2;
        }
        if (o + 1 >= outsz) {
            cut = true;
            break;
        }
        /* UTF-8 and control bytes are kept out of keel's (ASCII) error messages. */
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (cut && outsz >= 4) {
        o = outsz - 1;
        memcpy(out + o - 3, "...", 3);
    }
    out[o] = '\0';
    return o;
}

static int b64val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int keel_grpc_base64_decode(const uint8_t *in, size_t n, uint8_t *out, size_t outsz, size_t *outlen)
{
    *outlen = 0;
    /* Padding only at the end, and only to a whole quantum. */
    size_t pad = 0;
    while (n > 0 && in[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (pad > 0 && (n + pad) % 4 != 0)
        return KEEL_EPROTOCOL;
    if (n % 4 == 1)
        return KEEL_EPROTOCOL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return KEEL_EPROTOCOL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outsz)
                return KEEL_EPROTOCOL;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *outlen = o;
    return KEEL_OK;
}

int keel_grpc_status_from_http(int http_status)
{
    switch (http_status) {
    case 400:
        return 13; /* INTERNAL */
    case 401:
        return 16; /* UNAUTHENTICATED */
    case 403:
        return 7; /* PERMISSION_DENIED */
    case 404:
        return 12; /* UNIMPLEMENTED */
    case 429:
    case 502:
    case 503:
    case 504:
        return 14; /* UNAVAILABLE */
    default:
        return 2; /* UNKNOWN */
    }
}

int keel_grpc_status_from_h2(uint32_t h2_error)
{
    switch (h2_error) {
    case 0x7: /* REFUSED_STREAM: the server never started it */
        return 14;
    case 0x8: /* CANCEL */
        return 1;
    case 0xb: /* ENHANCE_YOUR_CALM */
        return 8;
    case 0xc: /* INADEQUATE_SECURITY */
        return 7;
    default:
        return 13;
    }
}

static int copy_part(char *out, size_t outsz, const char *from, size_t n, const char *what,
                     const char *address, keel_error *err)
{
    if (n == 0)
        return keel_error_set(err, KEEL_EINVAL, "Temporal address '%s' has an empty %s", address,
                              what);
    if (n >= outsz)
        return keel_error_set(err, KEEL_EINVAL, "Temporal address '%s': the %s is longer than %zu",
                              address, what, outsz - 1);
    memcpy(out, from, n);
    out[n] = '\0';
    return KEEL_OK;
}

/* "host:port" or "[v6]:port" into out. */
static int parse_host_port(const char *hp, const char *address, keel_grpc_target *out,
                           keel_error *err)
{
    const char *host = hp, *colon;
    size_t hostlen;
    /* First: "a:1,b:1" is a list, whatever its parts look like. */
    if (strchr(hp, ',') != NULL)
        return keel_error_set(err, KEEL_EINVAL,
                              "Temporal address '%s' lists several addresses; keel connects to one",
                              address);
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (close == NULL || close[1] != ':')
            return keel_error_set(err, KEEL_EINVAL,
                                  "Temporal address '%s': expected [IPv6 address]:port", address);
        host = hp + 1;
        hostlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL)
            return keel_error_set(err, KEEL_EINVAL, "Temporal address '%s' has no port", address);
        hostlen = (size_t)(colon - hp);
        if (memchr(hp, ':', hostlen) != NULL)
            return keel_error_set(err, KEEL_EINVAL,
                                  "Temporal address '%s': an IPv6 address needs [brackets]",
                                  address);
    }
    int rc = copy_part(out->host, sizeof out->host, host, hostlen, "host", address, err);
    if (rc != KEEL_OK)
        return rc;
    const char *port = colon + 1;
    size_t plen = strlen(port);
    long p = 0;
    for (size_t i = 0; i < plen; i++) {
        if (!isdigit((unsigned char)port[i]) || i >= 5)
            return keel_error_set(err, KEEL_EINVAL, "Temporal address '%s' has a bad port",
                                  address);
        p = p * 10 + (port[i] - '0');
    }
    if (plen == 0 || p < 1 || p > 65535)
        return keel_error_set(err, KEEL_EINVAL, "Temporal address '%s' has a bad port (1-65535)",
                              address);
    memcpy(out->port, port, plen + 1);
    size_t alen = strlen(hp);
    if (alen >= sizeof out->authority)
        return keel_error_set(err, KEEL_EINVAL, "Temporal address '%s' is too long", address);
    memcpy(out->authority, hp, alen + 1);
    out->kind = KEEL_GRPC_TARGET_TCP;
    return KEEL_OK;
}

int keel_grpc_parse_target(const char *address, keel_grpc_target *out, keel_error *err)
{
    memset(out, 0, sizeof *out);
    if (address == NULL || address[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "the Temporal address is empty");
    if (strncmp(address, "unix-abstract:", 14) == 0 || strncmp(address, "unix:", 5) == 0) {
        bool abstract = address[4] == '-';
        const char *path = address + (abstract ? 14 : 5);
        if (!abstract && strncmp(path, "//", 2) == 0)
            path += 2; /* unix:///abs/path */
        out->kind = KEEL_GRPC_TARGET_UNIX;
        out->abstract = abstract;
        strcpy(out->authority, "localhost");
        /* sun_path holds 108 bytes, the abstract name's leading NUL included. */
        return copy_part(out->host, abstract ? 107 : 108, path, strlen(path), "socket path",
                         address, err);
    }
    const char *hp = address;
    if (strncmp(address, "dns:", 4) == 0) {
        hp = address + 4;
        if (strncmp(hp, "//", 2) == 0) {
            /* dns://[resolver]/host:port: keel uses the system's resolver. */
            const char *slash = strchr(hp + 2, '/');
            if (slash == NULL)
                return keel_error_set(err, KEEL_EINVAL,
                                      "Temporal address '%s': expected dns:///host:port", address);
            hp = slash + 1;
        }
    } else if (strncmp(address, "ipv4:", 5) == 0 || strncmp(address, "ipv6:", 5) == 0) {
        hp = address + 5;
    }
    return parse_host_port(hp, address, out, err);
}
